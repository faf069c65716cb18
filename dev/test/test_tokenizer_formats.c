/*
 Tests of the SentencePiece and tokenizer.json readers (llmc/sentencepiece.h, llmc/hf_tokenizer.h) and
 of llmc/text_tokenizer.h, on small files written here with hand-derived token ids: score-ordered
 merges with left-first ties, byte fallback, user-defined pieces, the normalizer, decode; the GPT-2 and
 Llama-3 pre-tokenizer regexes; merges by rank and added tokens; every malformed-file error (truncated,
 wrong types, pieces out of range, unsupported settings); and build/prepare -T writing shards whose
 header carries the vocabulary size and whose documents start with <s>. The cross-checks against
 SentencePiece itself and other implementations are dev/test/tokenizer_crosscheck.sh.
*/
#include <sys/stat.h>
#include "llmc/text_tokenizer.h"
#include "llmc/shard.h"
#include "dev/test/testing.h"

static char tmpdir[256];

// ----------------------------------------------------------------------------
// A protobuf writer for hand-made tokenizer.model files

typedef struct { unsigned char b[65536]; size_t n; } Buf;

static void put_varint(Buf *b, uint64_t v) { while (v >= 0x80) { b->b[b->n++] = (unsigned char)(v | 0x80); v >>= 7; } b->b[b->n++] = (unsigned char)v; }
static void put_tag(Buf *b, uint32_t field, uint32_t wire) { put_varint(b, (uint64_t)field << 3 | wire); }
static void put_bytes(Buf *b, uint32_t field, const void *data, size_t n) { put_tag(b, field, 2); put_varint(b, n); memcpy(b->b + b->n, data, n); b->n += n; }
static void put_uint(Buf *b, uint32_t field, uint64_t v) { put_tag(b, field, 0); put_varint(b, v); }

typedef struct { const char *piece; float score; int type; } Piece;

// What to break in the model (0: nothing).
enum { BREAK_NONE, BREAK_WIRE_TYPE, BREAK_PIECE_TYPE, BREAK_BOS_RANGE, BREAK_BYTE_NAME, BREAK_NO_UNK, BREAK_UNIGRAM, BREAK_CHARSMAP };

// The hand-made model: ids 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then the pieces below.
static const Piece model_pieces[] = {
    {"\xE2\x96\x81", -10, 1}, {"a", -10, 1}, {"b", -10, 1}, {"c", -10, 1},  // 259 ▁, 260 a, 261 b, 262 c
    {"ab", -1, 1}, {"bc", -2, 1}, {"\xE2\x96\x81" "a", -3, 1},              // 263 ab, 264 bc, 265 ▁a
    {"\xE2\x96\x81" "ab", -4, 1}, {"abc", -0.5f, 1}, {"aa", -1, 1},          // 266 ▁ab, 267 abc, 268 aa
    {"<t>", 0, 4},                                                            // 269 user-defined
};
#define NUM_MODEL_PIECES (259 + (int)(sizeof(model_pieces) / sizeof(model_pieces[0])))

static size_t write_model(const char *path, int breakage, size_t *piece_265_at) {
    static Buf b;
    b.n = 0;
    for (int id = 0; id < NUM_MODEL_PIECES; id++) {
        char name[16];
        Piece p;
        if (id == 0) { p = (Piece){"<unk>", 0, breakage == BREAK_NO_UNK ? 3 : 2}; }
        else if (id <= 2) { p = (Piece){id == 1 ? "<s>" : "</s>", 0, 3}; }
        else if (id < 259) { snprintf(name, sizeof(name), breakage == BREAK_BYTE_NAME && id == 100 ? "<0xZZ>" : "<0x%02X>", id - 3); p = (Piece){name, 0, 6}; }
        else { p = model_pieces[id - 259]; }
        if (breakage == BREAK_PIECE_TYPE && id == 262) { p.type = 9; }
        Buf sub = {.n = 0};
        if (breakage == BREAK_WIRE_TYPE && id == 261) { put_uint(&sub, 1, 7); }  // the piece string as a number
        else { put_bytes(&sub, 1, p.piece, strlen(p.piece)); }
        put_tag(&sub, 2, 5); memcpy(sub.b + sub.n, &p.score, 4); sub.n += 4;
        put_uint(&sub, 3, (uint64_t)p.type);
        if (id == 265 && piece_265_at) { *piece_265_at = b.n; }
        put_bytes(&b, 1, sub.b, sub.n);
    }
    Buf trainer = {.n = 0};
    put_uint(&trainer, 3, breakage == BREAK_UNIGRAM ? 1 : 2);
    put_uint(&trainer, 4, NUM_MODEL_PIECES);
    put_uint(&trainer, 35, 1);
    if (breakage == BREAK_BOS_RANGE) { put_uint(&trainer, 41, 99999); }
    put_bytes(&b, 2, trainer.b, trainer.n);
    Buf norm = {.n = 0};
    put_bytes(&norm, 1, "identity", 8);
    if (breakage == BREAK_CHARSMAP) { put_bytes(&norm, 2, "\x01\x02\x03", 3); }
    put_uint(&norm, 4, 0);  // keep extra spaces, as Llama-2
    put_bytes(&b, 3, norm.b, norm.n);
    FILE *f = fopen_check(path, "wb");
    fwrite_check(b.b, 1, b.n, f, path);
    fclose(f);
    return b.n;
}

static int ids_equal(const TextTokenizer *t, const char *text, const uint32_t *want, size_t nwant) {
    size_t n = strlen(text), cap = text_tokenizer_max_tokens(t, n);
    uint32_t got[256];
    size_t m = text_tokenizer_encode(t, NULL, (const unsigned char *)text, n, got, cap < 256 ? cap : 256);
    int ok = m == nwant && (m == 0 || memcmp(got, want, m * sizeof(uint32_t)) == 0);  // want may be NULL when empty
    if (!ok) {
        printf("  '%s': got", text);
        for (size_t i = 0; i < m && i < 256; i++) { printf(" %u", got[i]); }
        printf("\n");
    }
    return ok;
}

static int decodes_to(const TextTokenizer *t, const uint32_t *ids, size_t n, const char *want) {
    unsigned char out[256];
    size_t m = text_tokenizer_decode(t, ids, n, out, sizeof(out));
    return m == strlen(want) && memcmp(out, want, m) == 0;
}

#define IDS(...) ((const uint32_t[]){__VA_ARGS__}), sizeof((const uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t)
#define B(x) (3 + (x))  // the <0xNN> piece of byte x

static void test_sentencepiece(void) {
    char path[300];
    snprintf(path, sizeof(path), "%s/hand.model", tmpdir);
    write_model(path, BREAK_NONE, NULL);
    TextTokenizer t;
    text_tokenizer_load(&t, path);
    CHECK(t.format == TOKFMT_SENTENCEPIECE && t.vocab_size == (uint32_t)NUM_MODEL_PIECES && t.doc_token == 1, "hand model: format %d vocab %u doc token %u", t.format, t.vocab_size, t.doc_token);
    // "▁abc": ab (-1) first, then abc (-0.5) beats ▁ab (-4)
    CHECK(ids_equal(&t, "abc", IDS(259, 267)), "highest score merges first");
    CHECK(ids_equal(&t, "bc a", IDS(259, 264, 265)), "words and spaces");
    CHECK(ids_equal(&t, "aaa", IDS(259, 268, 260)), "equal scores merge left first");
    CHECK(ids_equal(&t, "x\xC3\xA9", IDS(259, B('x'), B(0xC3), B(0xA9))), "characters outside the vocabulary fall back to bytes");
    CHECK(ids_equal(&t, "a<t>b", IDS(265, 269, 261)), "a user-defined piece is one token and never merges");
    CHECK(ids_equal(&t, "\xFF", IDS(259, B(0xEF), B(0xBF), B(0xBD))), "an invalid UTF-8 byte becomes U+FFFD");
    CHECK(ids_equal(&t, "  a", IDS(259, 259, 265)), "extra spaces kept (remove_extra_whitespaces off)");
    CHECK(ids_equal(&t, "", NULL, 0), "empty text gives no tokens");
    CHECK(ids_equal(&t, "<s>", IDS(259, B('<'), B('s'), B('>'))), "text that spells <s> is not the control piece");
    CHECK(decodes_to(&t, IDS(1, 265, 269, 261), "a<t>b"), "decode: control piece empty, dummy-prefix space dropped");
    CHECK(decodes_to(&t, IDS(259, 264, 265), "bc a"), "decode: a lone leading '\xE2\x96\x81' is the dropped space");
    CHECK(decodes_to(&t, IDS(0, B(0xC3), B(0xA9)), " \xE2\x81\x87 \xC3\xA9"), "decode: <unk> and byte pieces");
    size_t len;
    const unsigned char *bytes = text_tokenizer_token_bytes(&t, 265, &len);
    CHECK(len == 2 && memcmp(bytes, " a", 2) == 0, "token bytes of '\xE2\x96\x81" "a' are ' a'");
    text_tokenizer_free(&t);
}

static char badpath[300];
static void load_bad(void *arg) { TextTokenizer t; text_tokenizer_load(&t, badpath); }

static void test_sentencepiece_errors(void) {
    snprintf(badpath, sizeof(badpath), "%s/bad.model", tmpdir);
    size_t at = 0, size = write_model(badpath, BREAK_NONE, &at);
    if (truncate(badpath, (off_t)(at + 5)) != 0) { die("truncate failed"); }
    expect_failure("model cut inside a piece", load_bad, NULL, "is truncated");
    write_model(badpath, BREAK_NONE, NULL);
    if (truncate(badpath, (off_t)(size - 2)) != 0) { die("truncate failed"); }
    expect_failure("model cut inside normalizer_spec", load_bad, NULL, "is truncated");
    static const struct { int breakage; const char *what, *expect; } cases[] = {
        {BREAK_WIRE_TYPE, "piece string written as a number", "field pieces.piece has wire type 0 (varint), expected length-delimited"},
        {BREAK_PIECE_TYPE, "piece type 9", "piece 262 has type 9, out of range (1..6)"},
        {BREAK_BOS_RANGE, "bos_id beyond the pieces", "bos_id 99999 or eos_id 2 is out of range (270 pieces)"},
        {BREAK_BYTE_NAME, "byte piece named <0xZZ>", "piece 100 '<0xZZ>' is of type BYTE but is not <0xNN>"},
        {BREAK_NO_UNK, "no <unk> piece", "has no piece of type UNKNOWN"},
        {BREAK_UNIGRAM, "unigram model", "is a UNIGRAM model (trainer_spec.model_type = 1); only BPE models are supported"},
        {BREAK_CHARSMAP, "normalization character map", "has a normalization character map"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        write_model(badpath, cases[k].breakage, NULL);
        expect_failure(cases[k].what, load_bad, NULL, cases[k].expect);
    }
    FILE *f = fopen_check(badpath, "wb");
    fputs("this is a text file, not a model", f);
    fclose(f);
    expect_failure("a text file", load_bad, NULL, "sentencepiece model");
    f = fopen_check(badpath, "wb");
    fclose(f);
    expect_failure("an empty file", load_bad, NULL, "is empty");
}

// ----------------------------------------------------------------------------
// tokenizer.json

static int pretokens_are(size_t (*end)(const unsigned char *, size_t, size_t), const char *text, const char *const *want, int nwant) {
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text), i = 0;
    int k = 0;
    for (; i < n && k < nwant; k++) {
        size_t e = end(s, n, i);
        if (e - i != strlen(want[k]) || memcmp(s + i, want[k], e - i) != 0) { printf("  '%s': piece %d is '%.*s'\n", text, k, (int)(e - i), text + i); return 0; }
        i = e;
    }
    return i == n && k == nwant;
}

static void test_regexes(void) {
    { const char *w[] = {"Hello", " world", "'s", " ", " 123", "\n\n", " x"};
      CHECK(pretokens_are(hf_gpt2_end, "Hello world's  123\n\n x", w, 7), "GPT-2 regex: words, contraction, spaces, digits, newlines"); }
    { const char *w[] = {"Hello", " world", "'s", " ", " ", "123", "456", "\n\n", " x"};
      CHECK(pretokens_are(hf_llama3_end, "Hello world's  123456\n\n x", w, 9), "Llama-3 regex: digits in threes, newline runs"); }
    { const char *w[] = {"IT", "'", "S", "!", "x", " \xE4\xBD\xA0\xE5\xA5\xBD", " \xF0\x9F\xA6\x99", "  ", "\t", "end"};
      CHECK(pretokens_are(hf_gpt2_end, "IT'S!x \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\xA6\x99  \tend", w, 10), "GPT-2 regex: case-sensitive contractions, CJK letters, emoji"); }
    { const char *w[] = {"IT", "'S", "!x", " \xE4\xBD\xA0\xE5\xA5\xBD", " \xF0\x9F\xA6\x99", "  ", "\tend"};
      CHECK(pretokens_are(hf_llama3_end, "IT'S!x \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\xA6\x99  \tend", w, 7), "Llama-3 regex: any-case contractions, a symbol or tab before letters"); }
    { const char *w[] = {"a", " ...\r\n\r\n", "b", "\n \n", "  ", " c"};
      CHECK(pretokens_are(hf_llama3_end, "a ...\r\n\r\nb\n \n   c", w, 6), "Llama-3 regex: punctuation takes the newlines after it; whitespace up to the last newline"); }
}

// Writes a GPT-2-style tokenizer.json: the 256 byte characters as ids 0..255 (id = byte), merges
// he, ll, hell, hello, Ġw, or (ids 256..261), <|endoftext|> 262 special and <tool> 263 not special.
// `patch` replaces the first occurrence of `from` with `to` to break the file.
static void write_json(const char *path, const char *from, const char *to) {
    static char buf[32768];
    size_t n = 0;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{\"version\": \"1.0\", \"added_tokens\": ["
                          "{\"id\": 262, \"content\": \"<|endoftext|>\", \"special\": true},"
                          "{\"id\": 263, \"content\": \"<tool>\", \"special\": false}],\n"
                          "\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},\n"
                          "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"vocab\": {");
    uint32_t byte_to_char[256];
    hf_byte_chars(byte_to_char);
    for (int b = 0; b < 256; b++) {
        uint32_t c = byte_to_char[b];
        char ch[8];
        if (c == '"' || c == '\\') { snprintf(ch, sizeof(ch), "\\%c", (char)c); }
        else if (c < 0x80) { snprintf(ch, sizeof(ch), "%c", (char)c); }
        else { snprintf(ch, sizeof(ch), "%c%c", (char)(0xC0 | (c >> 6)), (char)(0x80 | (c & 0x3F))); }
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\"%s\": %d, ", ch, b);
    }
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\"he\": 256, \"ll\": 257, \"hell\": 258, \"hello\": 259, \"\xC4\xA0w\": 260, \"or\": 261, \"<|endoftext|>\": 262},\n"
                          "\"merges\": [\"h e\", \"l l\", \"he ll\", \"hell o\", \"\xC4\xA0 w\", [\"o\", \"r\"]]}}\n");
    if (from) {
        char *p = strstr(buf, from);
        if (!p) { die("test: '%s' not in the tokenizer.json", from); }
        size_t lf = strlen(from), lt = strlen(to);
        memmove(p + lt, p + lf, strlen(p + lf) + 1);
        memcpy(p, to, lt);
        n = strlen(buf);
    }
    FILE *f = fopen_check(path, "wb");
    fwrite_check(buf, 1, n, f, path);
    fclose(f);
}

static void test_hf_json(void) {
    char path[300];
    snprintf(path, sizeof(path), "%s/tokenizer.json", tmpdir);
    write_json(path, NULL, NULL);
    TextTokenizer t;
    text_tokenizer_load(&t, path);
    CHECK(t.format == TOKFMT_HF_JSON && t.vocab_size == 264 && t.doc_token == 262, "tokenizer.json: format %d vocab %u doc token %u", t.format, t.vocab_size, t.doc_token);
    CHECK(ids_equal(&t, "hello world", IDS(259, 260, 261, 'l', 'd')), "merges by rank within pre-tokens");
    CHECK(ids_equal(&t, "a<tool>b", IDS('a', 263, 'b')), "a non-special added token is matched in the text");
    CHECK(ids_equal(&t, "<|endoftext|>", IDS('<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|', '>')), "a special token is never matched in the text");
    CHECK(ids_equal(&t, "\xFF\xC3 ", IDS(0xFF, 0xC3, ' ')), "invalid UTF-8 encodes as its bytes");
    CHECK(decodes_to(&t, IDS(259, 260, 261, 'l', 'd', 262), "hello world<|endoftext|>"), "decode: bytes and added tokens");
    text_tokenizer_free(&t);
    write_json(path, "{\"version\"", "\n{\"version\"");  // starts with a newline, like a protobuf
    text_tokenizer_load(&t, path);
    CHECK(t.format == TOKFMT_HF_JSON, "a tokenizer.json that starts with a newline is still JSON");
    text_tokenizer_free(&t);

    snprintf(badpath, sizeof(badpath), "%s/bad.json", tmpdir);
    static const struct { const char *from, *to, *what, *expect; } cases[] = {
        {"]]}}", "]]", "truncated JSON", "malformed JSON"},
        {"\"vocab\": {", "\"vocab\": [], \"x\": {", "vocab not an object", "model.vocab must be an object of token -> id"},
        {"\"he\": 256", "\"he\": \"256\"", "an id that is a string", "model.vocab['he'] must be an integer id in 0..2^30, got another type"},
        {"\"he\": 256", "\"he\": -1", "a negative id", "must be an integer id in 0..2^30, got a number out of range"},
        {"[\"o\", \"r\"]", "7", "a merge that is a number", "model.merges[5] must be a string \"a b\" or an array of two strings"},
        {"\"h e\"", "\"h q\xC3\x84\"", "a merge of a token not in the vocab", "model.merges[0]: part 2 is not in the vocab"},
        {"\"hello\": 259", "\"hellp\": 259", "a merge whose result is not in the vocab", "model.merges[3]: the merged token is not in the vocab"},
        {"\"type\": \"BPE\"", "\"type\": \"Unigram\"", "a unigram model", "model type 'Unigram' is not supported (only BPE)"},
        {"\"normalizer\": null", "\"normalizer\": {\"type\": \"NFC\"}", "an NFC normalizer", "normalizer 'NFC' is not supported"},
        {"\"type\": \"ByteLevel\"", "\"type\": \"Whitespace\"", "a Whitespace pre-tokenizer", "pre_tokenizer 'Whitespace' is not supported"},
        {"\"dropout\": null", "\"dropout\": 0.1", "BPE dropout", "model.dropout is not supported"},
        {"\"or\": 261", "\"o\\u0001\": 261", "a character outside the byte alphabet", "model.vocab token 261 'o\x01' has a character outside the byte-level alphabet"},
        {"\"special\": true", "\"special\": false", "no special token to mark documents", "has no special added token to mark documents"},
        {"\"!\": 33, ", "", "a byte missing from the vocab", "the vocab has no token for byte 0x21"},
        {"\"id\": 263", "\"id\": 261", "an added token reusing a vocab id", "added_tokens[1] '<tool>' reuses id 261"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        write_json(badpath, cases[k].from, cases[k].to);
        expect_failure(cases[k].what, load_bad, NULL, cases[k].expect);
    }
    // the Split + ByteLevel layout: the Llama-3 regex is accepted, any other regex is refused by name
    char split[600];
    snprintf(split, sizeof(split), "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, "
             "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}", "\\\\w+|\\\\s+");
    write_json(badpath, "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}", split);
    expect_failure("an unknown pre-tokenizer regex", load_bad, NULL, "pre-tokenizer regex \\w+|\\s+ is not supported");
}

// ----------------------------------------------------------------------------
// build/prepare -T

static void test_prepare(void) {
    char model[300], corpus[300], out[300], cmd[2048], path[400];
    snprintf(model, sizeof(model), "%s/hand.model", tmpdir);
    snprintf(corpus, sizeof(corpus), "%s/corpus.txt", tmpdir);
    snprintf(out, sizeof(out), "%s/prepared", tmpdir);
    const char *doc = "abc bc a aaa x\xC3\xA9 a<t>b";
    FILE *f = fopen_check(corpus, "wb");
    fputs(doc, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s -T %s -V 0 -j 2 %s > %s/prepare.log 2>&1", out, model, corpus, tmpdir);
    int rc = system(cmd);
    snprintf(path, sizeof(path), "%s/train_000000.bin", out);
    f = fopen(path, "rb");
    CHECK(rc == 0 && f != NULL, "build/prepare -T %s exits 0 and writes %s", model, path);
    if (!f) { return; }
    ShardHeader h = shard_read_header(f, path);
    uint32_t tokens[64] = {0};
    uint16_t t16[64];
    size_t n = fread(t16, 2, 64, f);
    fclose(f);
    for (size_t i = 0; i < n; i++) { tokens[i] = t16[i]; }
    CHECK(h.vocab_size == (uint32_t)NUM_MODEL_PIECES && h.token_bytes == 2, "shard header: vocab size %u (the model's %d), %u-byte tokens", h.vocab_size, NUM_MODEL_PIECES, h.token_bytes);
    TextTokenizer t;
    text_tokenizer_load(&t, model);
    unsigned char text[128];
    size_t len = n > 1 ? text_tokenizer_decode(&t, tokens + 1, n - 1, text, sizeof(text)) : 0;
    CHECK(n > 1 && tokens[0] == 1 && len == strlen(doc) && memcmp(text, doc, len) == 0, "the document starts with <s> and decodes back to its text");
    text_tokenizer_free(&t);
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s/p2 -T %s/missing.model %s > /dev/null 2>&1", tmpdir, tmpdir, corpus);
    CHECK(system(cmd) != 0, "build/prepare -T with a missing file fails");
}

int main(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_tokenizer_formats_XXXXXX");
    if (!mkdtemp(tmpdir)) { die("mkdtemp failed"); }
    test_sentencepiece();
    test_sentencepiece_errors();
    test_regexes();
    test_hf_json();
    test_prepare();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0) { printf("could not remove %s\n", tmpdir); }
    return test_summary();
}
