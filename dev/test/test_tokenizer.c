/*
 Tests of the tokenizer (llmc/tokenizer.h, data/bpe_train.h), the JSONL reader (llmc/jsonl.h) and
 data/prepare (build/prepare, run as a program): pre-token rules, merges on hand-checked corpora, BPE
 encode against a naive apply-merges-in-order reference, round trips on random bytes and real text (this
 repository's own sources), file save/load and every malformed-file error, every malformed-JSON error,
 and prepare end to end: shards read back by the DataLoader equal the tokens, bad lines stop it or are
 skipped with -k, a killed run resumes without redoing finished shards, synthetic long-context documents.
*/
#include <glob.h>
#include <sys/stat.h>
#include "data/bpe_train.h"
#include "llmc/dataloader.h"
#include "llmc/eval/lm_tasks.h"
#include "llmc/rng.h"
#include "dev/test/testing.h"

static char tmpdir[256];

static Tokenizer train_on(const char *text, uint32_t vocab) {
    BpeCounter c;
    bpe_counter_init(&c);
    bpe_counter_add_text(&c, (const unsigned char *)text, strlen(text));
    Tokenizer t;
    bpe_train_tokenizer(&t, &c, vocab, 0);
    bpe_counter_free(&c);
    return t;
}

// Reference BPE: apply every merge in training order to each pre-token, left to right, no overlap.
static size_t naive_encode(const Tokenizer *t, const unsigned char *s, size_t n, uint32_t *out) {
    size_t count = 0;
    for (size_t i = 0; i < n;) {
        size_t e = pretoken_end(s, n, i), m = e - i;
        uint32_t *w = out + count;
        for (size_t k = 0; k < m; k++) { w[k] = s[i + k]; }
        for (uint32_t r = 0; r < t->num_merges && m > 1; r++) {
            size_t o = 0;
            for (size_t k = 0; k < m; k++) {
                if (k + 1 < m && w[k] == t->merges[2 * r] && w[k + 1] == t->merges[2 * r + 1]) { w[o++] = 256 + r; k++; }
                else { w[o++] = w[k]; }
            }
            m = o;
        }
        count += m;
        i = e;
    }
    return count;
}

static void check_pretokens(const char *text, const char *const *want, int nwant) {
    const unsigned char *s = (const unsigned char *)text;
    size_t n = strlen(text), i = 0;
    int k = 0, ok = 1;
    for (; i < n && k < nwant; k++) {
        size_t e = pretoken_end(s, n, i);
        if (e - i != strlen(want[k]) || memcmp(s + i, want[k], e - i) != 0) { ok = 0; break; }
        i = e;
    }
    CHECK(ok && i == n && k == nwant, "pre-tokens of '%s': piece %d differs", text, k);
}

static void test_pretokenizer(void) {
    { const char *w[] = {"Hello", ",", " world", "!"}; check_pretokens("Hello, world!", w, 4); }
    { const char *w[] = {"I", "'m", " don", "'t", " know", "'LL"}; check_pretokens("I'm don't know'LL", w, 6); }
    { const char *w[] = {"123", "45", " 678", "9"}; check_pretokens("12345 6789", w, 4); }
    { const char *w[] = {"a", "\n\n", "b", "  ", " c", " \t", "d", "  "}; check_pretokens("a\n\nb   c \td  ", w, 8); }
    { const char *w[] = {"caf\xC3\xA9", " \xE2\x80\x9C", "na\xC3\xAFve", "\xE2\x80\x9D", " \xE2\x80\x94", "x"};
      check_pretokens("caf\xC3\xA9 \xE2\x80\x9Cna\xC3\xAFve\xE2\x80\x9D \xE2\x80\x94x", w, 6); }
    { const char *w[] = {"a\xFF\xC3", "...", " (", "b", ")"}; check_pretokens("a\xFF\xC3... (b)", w, 5); }
    // any bytes: pieces tile the input, are non-empty and at most PRETOKEN_MAX_BYTES long
    Rng rng;
    rng_init(&rng, 7);
    unsigned char buf[4096];
    int ok = 1;
    for (int trial = 0; trial < 200; trial++) {
        size_t n = 1 + rng_below(&rng, sizeof(buf));
        for (size_t i = 0; i < n; i++) { buf[i] = trial % 2 ? (unsigned char)rng_u32(&rng) : (unsigned char)" aZ9.\n\xC3\xA9'"[rng_below(&rng, 10)]; }
        for (size_t i = 0; i < n;) {
            size_t e = pretoken_end(buf, n, i);
            if (e <= i || e > n || e - i > PRETOKEN_MAX_BYTES) { ok = 0; break; }
            i = e;
        }
    }
    CHECK(ok, "pre-tokens must tile any input with 1..%d-byte pieces", PRETOKEN_MAX_BYTES);
    memset(buf, 'a', 300);
    CHECK(pretoken_end(buf, 300, 0) == PRETOKEN_MAX_BYTES, "a 300-letter word is cut at %d bytes", PRETOKEN_MAX_BYTES);
}

static void test_hand_merges(void) {
    // "aaabdaaabac" (one pre-token): aa=4 -> Z; then Za=2, ab=2 tie -> smaller pair (a,b) -> Y; ZY=2 -> X;
    // word X d X a c: all pairs 1 -> smallest (a,c); then (d,X); then (X, dX); then the last pair.
    Tokenizer t = train_on("aaabdaaabac", 1000);
    uint32_t want[] = {97, 97, 97, 98, 256, 257, 97, 99, 100, 258, 258, 260, 261, 259};
    CHECK(t.num_merges == 7 && memcmp(t.merges, want, sizeof(want)) == 0, "merges of aaabdaaabac: got %u merges", t.num_merges);
    uint32_t ids[16];
    size_t n = tokenizer_encode(&t, (const unsigned char *)"aaabdaaabac", 11, ids, 16);
    CHECK(n == 1 && ids[0] == 262, "aaabdaaabac encodes to the last merge (got %zu tokens)", n);
    tokenizer_free(&t);
    // "ab ab ab cb": words ab x1, " ab" x2, " cb" x1. (a,b)=3 -> 256; (' ',256)=2 -> 257; then (' ',c) -> 258; (258,b) -> 259
    t = train_on("ab ab ab cb", 1000);
    uint32_t want2[] = {97, 98, 32, 256, 32, 99, 258, 98};
    CHECK(t.num_merges == 4 && memcmp(t.merges, want2, sizeof(want2)) == 0, "merges of 'ab ab ab cb': got %u merges", t.num_merges);
    n = tokenizer_encode(&t, (const unsigned char *)"ab ab cb", 8, ids, 16);
    CHECK(n == 3 && ids[0] == 256 && ids[1] == 257 && ids[2] == 259, "'ab ab cb' -> [256 257 259] (got %zu tokens)", n);
    CHECK(t.vocab_size == 256 + 4 + 1 && tokenizer_eot(&t) == 260, "vocab %u eot %u after 4 merges", t.vocab_size, tokenizer_eot(&t));
    size_t len;
    const unsigned char *b = tokenizer_token_bytes(&t, 259, &len);
    CHECK(len == 3 && memcmp(b, " cb", 3) == 0, "token 259 is ' cb'");
    b = tokenizer_token_bytes(&t, 260, &len);
    CHECK(len == 13 && memcmp(b, "<|endoftext|>", 13) == 0, "token 260 is <|endoftext|>");
    tokenizer_free(&t);
}

// All *.h, *.c and *.md text of this repository, concatenated.
static unsigned char *repo_text(size_t *n) {
    const char *pats[] = {"llmc/*.h", "doc/*.md", "data/*.c", "dev/test/*.c", "*.c"};
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = (unsigned char *)malloc_check(cap);
    for (int p = 0; p < 5; p++) {
        glob_t g;
        if (glob(pats[p], 0, NULL, &g) != 0) { continue; }
        for (size_t k = 0; k < g.gl_pathc; k++) {
            FILE *f = fopen_check(g.gl_pathv[k], "rb");
            long long sz = file_size_check(f, g.gl_pathv[k]);
            while (len + (size_t)sz > cap) { cap *= 2; buf = (unsigned char *)realloc(buf, cap); }
            fread_check(buf + len, 1, (size_t)sz, f, g.gl_pathv[k]);
            len += (size_t)sz;
            fclose(f);
        }
        globfree(&g);
    }
    *n = len;
    return buf;
}

static int roundtrip(const Tokenizer *t, TokenCache *cache, const unsigned char *s, size_t n) {
    uint32_t *ids = (uint32_t *)malloc_check((n + 1) * sizeof(uint32_t));
    unsigned char *back = (unsigned char *)malloc_check(n + 1);
    size_t m = tokenizer_encode_cached(t, cache, s, n, ids, n);
    size_t k = m <= n ? tokenizer_decode(t, ids, m, back, n) : 0;
    int ok = m <= n && k == n && memcmp(back, s, n) == 0;
    free(ids); free(back);
    return ok;
}

static Tokenizer real;  // trained on the repository text, used by the rest of the tests
static unsigned char *text; static size_t text_len;

static void test_encode_roundtrip(void) {
    text = repo_text(&text_len);
    CHECK(text_len > 50000, "repository text for training: %zu bytes", text_len);
    real = train_on((const char *)text, 2000);  // text has no NULs: it is source and markdown
    CHECK(real.num_merges == 2000 - 257, "trained %u merges on the repository text", real.num_merges);
    TokenCache *cache = token_cache_new();
    uint32_t *a = (uint32_t *)malloc_check(text_len * sizeof(uint32_t)), *b = (uint32_t *)malloc_check(text_len * sizeof(uint32_t));
    size_t na = tokenizer_encode_cached(&real, cache, text, text_len, a, text_len);
    size_t na2 = tokenizer_encode_cached(&real, cache, text, text_len, b, text_len);  // cache warm now
    CHECK(na == na2 && memcmp(a, b, na * 4) == 0, "cached encode is stable");
    size_t nu = tokenizer_encode(&real, text, text_len, b, text_len);
    CHECK(nu == na && memcmp(a, b, na * 4) == 0, "cached and uncached encode agree");
    size_t ref_len = text_len < 200000 ? text_len : 200000;
    size_t nr = naive_encode(&real, text, ref_len, b);
    size_t nq = tokenizer_encode(&real, text, ref_len, a, text_len);
    CHECK(nr == nq && memcmp(a, b, nr * 4) == 0, "encode equals applying merges in order (%zu vs %zu tokens)", nq, nr);
    printf("repo text: %zu bytes -> %zu tokens (%.2f bytes/token)\n", text_len, na, (double)text_len / na);
    CHECK((double)text_len / na > 2.5, "compression on the training text: %.2f bytes/token", (double)text_len / na);
    CHECK(roundtrip(&real, cache, text, text_len), "round trip of the repository text");
    // a cap smaller than needed writes nothing past cap and returns the full count
    a[3] = 0xDEADBEEF;
    CHECK(tokenizer_encode(&real, text, 1000, a, 3) == tokenizer_encode(&real, text, 1000, b, 1000) && a[3] == 0xDEADBEEF,
          "encode honours cap and returns the needed count");
    Rng rng;
    rng_init(&rng, 1234);
    unsigned char buf[8192];
    int ok = 1;
    for (int trial = 0; trial < 300 && ok; trial++) {
        size_t n = rng_below(&rng, sizeof(buf));
        int mode = trial % 3;  // uniform bytes, UTF-8-ish text with invalid bytes, slices of real text
        for (size_t i = 0; i < n; i++) {
            if (mode == 0) { buf[i] = (unsigned char)rng_u32(&rng); }
            else if (mode == 1) { buf[i] = (unsigned char)"the \xC3\xA9\xE2\x80\x9C\xF0\x9F\x98\x80 9\n\x80\xFF'"[rng_below(&rng, 20)]; }
            else { buf[i] = text[(trial * 7919 + i) % text_len]; }
        }
        ok = roundtrip(&real, trial % 2 ? cache : NULL, buf, n);
    }
    CHECK(ok, "round trip of random byte strings (incl. invalid UTF-8)");
    CHECK(roundtrip(&real, cache, (const unsigned char *)"", 0), "round trip of the empty string");
    const char *spelled = "x<|endoftext|>y";
    size_t ns = tokenizer_encode(&real, (const unsigned char *)spelled, strlen(spelled), a, 64);
    int has_eot = 0;
    for (size_t i = 0; i < ns; i++) { has_eot |= a[i] == tokenizer_eot(&real); }
    CHECK(!has_eot && roundtrip(&real, NULL, (const unsigned char *)spelled, strlen(spelled)), "text spelling <|endoftext|> is plain bytes");
    free(a); free(b); free(cache);
}

// ---------------------------------------------------------------------------- tokenizer files

static char badfile[300];
static void load_badfile(void *arg) { Tokenizer t; tokenizer_load(&t, badfile); }

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen_check(path, "wb");
    fwrite_check(data, 1, n, f, path);
    fclose(f);
}

static void test_files(void) {
    char path[300];
    snprintf(path, sizeof(path), "%s/tok.bin", tmpdir);
    tokenizer_save(&real, path);
    Tokenizer t;
    tokenizer_load(&t, path);
    CHECK(t.vocab_size == real.vocab_size && t.eot == real.eot && memcmp(t.merges, real.merges, 8 * (size_t)t.num_merges) == 0 &&
          t.tok_off[t.vocab_size] == real.tok_off[real.vocab_size] && memcmp(t.tok_bytes, real.tok_bytes, t.tok_off[t.vocab_size]) == 0,
          "save/load round trip");
    tokenizer_free(&t);
    FILE *f = fopen_check(path, "rb");
    long long size = file_size_check(f, path);
    unsigned char *good = (unsigned char *)malloc_check((size_t)size + 8), *bad = (unsigned char *)malloc_check((size_t)size + 8);
    fread_check(good, 1, (size_t)size, f, path);
    fclose(f);
    snprintf(badfile, sizeof(badfile), "%s/bad.bin", tmpdir);
    struct { const char *what; long long off; uint32_t val; long long len; const char *expect; } cases[] = {
        {"bad magic", 0, 0x12345678, size, "bad magic"},
        {"wrong version", 4, 2, size, "version 2"},
        {"vocab size mismatch", 8, 5000, size, "vocab_size 5000"},
        {"eot not first special", 20, 7, size, "eot id 7"},
        {"unknown pre-tokenizer", 24, 9, size, "pre-tokenizer 9"},
        {"merge uses a later token", 64 + 8 * 10, 1000, size, "does not exist yet"},
        {"duplicate merge", 64 + 8 * 1, 0, size, "duplicates merge"},
        {"truncated header", -1, 0, 40, "smaller than the 64-byte header"},
        {"truncated merges", -1, 0, 64 + 100, "truncated"},
        {"truncated special", -1, 0, size - 3, "truncated inside special token"},
        {"trailing bytes", -1, 0, size + 5, "after the last special token"},
        {"zero-length special", size - 17, 0, size, "special token 0 has length 0"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        memcpy(bad, good, (size_t)size);
        memset(bad + size, 0, 8);
        if (cases[k].off >= 0) { memcpy(bad + cases[k].off, &cases[k].val, 4); }
        if (k == 6) { memcpy(bad + 64 + 8, good + 64, 8); }  // merge 1 := merge 0
        write_bytes(badfile, bad, (size_t)cases[k].len);
        expect_failure(cases[k].what, load_badfile, NULL, cases[k].expect);
    }
    snprintf(badfile, sizeof(badfile), "%s/missing.bin", tmpdir);
    expect_failure("missing tokenizer file", load_badfile, NULL, "cannot open");
    snprintf(badfile, sizeof(badfile), "%s", tmpdir);
    expect_failure("a directory as the tokenizer file", load_badfile, NULL, "is a directory");
    // 64 merges each doubling the previous token: token 256+r is 2^(r+1) bytes, so the 64-bit sum of
    // the token lengths wraps to a few hundred bytes; the loader must refuse, not build into a tiny buffer
    uint32_t wrap[16 + 2 * 64 + 5] = {TOKENIZER_MAGIC, TOKENIZER_VERSION, 256 + 64 + 1, 64, 1, 256 + 64, TOKENIZER_PRETOKENIZER};
    for (uint32_t r = 0; r < 64; r++) { wrap[16 + 2 * r] = wrap[16 + 2 * r + 1] = r == 0 ? 'a' : 256 + r - 1; }
    wrap[16 + 128] = 13;
    memcpy(&wrap[16 + 129], TOKENIZER_EOT_NAME, 13);
    snprintf(badfile, sizeof(badfile), "%s/wrap.bin", tmpdir);
    write_bytes(badfile, wrap, 4 * (16 + 128 + 1) + 13);
    expect_failure("token lengths that wrap 64 bits", load_badfile, NULL, "too long");
    free(good); free(bad);
}

// ---------------------------------------------------------------------------- JSON

static void check_json(const char *line, const char *want, size_t want_len) {
    unsigned char out[512];
    const char *err = NULL;
    size_t col = 0;
    long long n = json_string_field((const unsigned char *)line, strlen(line), "text", out, &err, &col);
    CHECK(n == (long long)want_len && memcmp(out, want, want_len) == 0, "json %s: got %lld (%s)", line, n, err ? err : "");
}

static void check_json_error(const char *line, const char *expect) {
    unsigned char out[512];
    const char *err = NULL;
    size_t col = 0;
    long long n = json_string_field((const unsigned char *)line, strlen(line), "text", out, &err, &col);
    CHECK(n == -1 && err && strstr(err, expect), "json %s: expected error '%s', got %lld (%s)", line, expect, n, err ? err : "none");
}

static void test_json(void) {
    check_json("{\"text\": \"hi\"}", "hi", 2);
    check_json(" { \"id\": 3, \"meta\": {\"a\": [1, -2.5e+3, true, null, {\"text\": \"no\"}]}, \"text\" : \"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\" } ",
               "a\"b\\c/d\b\f\n\r\t", 12);
    check_json("{\"text\": \"caf\\u00e9 \\u20AC \\ud83d\\ude00 \\u0041\"}", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 A", 16);
    check_json("{\"text\": \"raw \xC3\xA9 and \xFF bytes\"}", "raw \xC3\xA9 and \xFF bytes", 18);
    check_json("{\"text\": \"first\", \"text\": \"last\"}", "last", 4);
    check_json("{\"text\": \"\"}", "", 0);
    check_json("{\"text\": \"\\u0000\"}", "\0", 1);
    check_json_error("[\"text\"]", "not a JSON object");
    check_json_error("{\"text\": \"abc", "unterminated string");
    check_json_error("{\"text\": \"a\\qb\"}", "invalid escape");
    check_json_error("{\"text\": \"\\u12G4\"}", "bad hex digit");
    check_json_error("{\"text\": \"\\u12\"}", "bad hex digit");
    check_json_error("{\"text\": \"\\ud83d\"}", "unpaired high surrogate");
    check_json_error("{\"text\": \"\\ud83d\\u0041\"}", "high surrogate not followed by a low surrogate");
    check_json_error("{\"text\": \"\\ude00\"}", "unpaired low surrogate");
    check_json_error("{\"text\": \"a\tb\"}", "raw control character");
    check_json_error("{\"id\": 1}", "the field is missing");
    check_json_error("{\"text\": 5}", "the field is not a string");
    check_json_error("{\"text\": \"a\"} x", "trailing characters");
    check_json_error("{\"text\": \"a\", \"x\": tru}", "invalid value");
    check_json_error("{\"x\": 01, \"text\": \"a\"}", "invalid number");
    check_json_error("{\"x\": 1., \"text\": \"a\"}", "no digits after");
    check_json_error("{\"text\" \"a\"}", "expected ':'");
    check_json_error("{\"text\": \"a\" \"b\": 1}", "expected ',' or '}'");
    check_json_error("{\"x\": [1 2], \"text\": \"a\"}", "expected ',' or ']'");
    check_json_error("{text: \"a\"}", "expected a string key");
    char deep[600] = "{\"x\": ";
    for (int k = 0; k < 200; k++) { strcat(deep, "["); }
    check_json_error(deep, "nesting deeper");
}

// ---------------------------------------------------------------------------- prepare end to end

static int run_cmd(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) { return -1; }
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// The tokens of every val_*/train_* shard (prefix) of dir, concatenated.
static uint32_t *read_shards(const char *dir, const char *prefix, size_t *n) {
    char pat[400];
    snprintf(pat, sizeof(pat), "%s/%s_*.bin", dir, prefix);
    glob_t g;
    *n = 0;
    uint32_t *all = NULL;
    if (glob(pat, 0, NULL, &g) != 0) { return (uint32_t *)malloc_check(4); }
    for (size_t k = 0; k < g.gl_pathc; k++) {
        FILE *f = fopen_check(g.gl_pathv[k], "rb");
        ShardHeader h = shard_read_header(f, g.gl_pathv[k]);
        all = (uint32_t *)realloc(all, (*n + h.num_tokens) * sizeof(uint32_t));
        for (uint64_t i = 0; i < h.num_tokens; i++) {
            uint32_t v = 0;
            fread_check(&v, h.token_bytes, 1, f, g.gl_pathv[k]);
            all[(*n)++] = v;
        }
        fclose(f);
    }
    globfree(&g);
    return all;
}

static void test_prepare(void) {
    char corpus[300], cmd[2048], out[8192], path[400];
    snprintf(corpus, sizeof(corpus), "%s/corpus", tmpdir);
    mkdir(corpus, 0755);
    // documents: slices of the repository text, as JSONL (escaped with \uXXXX for quotes and controls) and .txt
    enum { NDOC = 60 };
    size_t doc_off[NDOC], doc_len[NDOC];
    snprintf(path, sizeof(path), "%s/a.jsonl", corpus);
    FILE *f = fopen_check(path, "wb");
    for (int d = 0; d < NDOC - 1; d++) {
        doc_off[d] = (size_t)d * 2003 % (text_len - 3000); doc_len[d] = 500 + (size_t)d * 37;
        fprintf(f, "{\"id\": %d, \"text\": \"", d);
        for (size_t i = 0; i < doc_len[d]; i++) {
            unsigned char c = text[doc_off[d] + i];
            if (c < 0x20 || c == '"' || c == '\\') { fprintf(f, "\\u%04x", c); } else { fputc(c, f); }
        }
        fprintf(f, "\", \"meta\": {\"n\": [1, 2]}}\n%s", d == 10 ? "\n" : "");  // one blank line: skipped silently
    }
    fclose(f);
    doc_off[NDOC - 1] = 1000; doc_len[NDOC - 1] = 20000;
    snprintf(path, sizeof(path), "%s/b.txt", corpus);
    write_bytes(path, text + 1000, 20000);
    char tok[300];
    snprintf(tok, sizeof(tok), "%s/tok.bin", tmpdir);  // saved by test_files
    Tokenizer t;
    tokenizer_load(&t, tok);
    size_t nexp = 0;
    uint32_t *expect = (uint32_t *)malloc_check(200000 * sizeof(uint32_t));
    for (int d = 0; d < NDOC; d++) {
        expect[nexp++] = tokenizer_eot(&t);
        nexp += tokenizer_encode(&t, text + doc_off[d], doc_len[d], expect + nexp, doc_len[d]);
    }
    // a killed run (after its 3rd shard) resumes without rewriting finished shards
    char outdir[300];
    snprintf(outdir, sizeof(outdir), "%s/out", tmpdir);
    snprintf(cmd, sizeof(cmd), "PREPARE_TEST_KILL_AFTER=3 build/prepare -o %s -t %s -s 1000 -V 2500 -j 2 %s 2>&1", outdir, tok, corpus);
    int rc = run_cmd(cmd, out, sizeof(out));
    CHECK(rc != 0 && strstr(out, "val_000001.bin") && !strstr(out, "train_000000.bin"), "killed run stopped after 3 shards (rc %d): %s", rc, out);
    struct stat s0, s1;
    snprintf(path, sizeof(path), "%s/val_000000.bin", outdir);
    CHECK(stat(path, &s0) == 0, "first shard exists after the kill");
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s -t %s -s 1000 -V 2500 -j 1 %s 2>&1", outdir, tok, corpus);
    rc = run_cmd(cmd, out, sizeof(out));
    CHECK(rc == 0 && strstr(out, "resuming") && !strstr(out, "val_000000.bin") && !strstr(out, "val_000001.bin"), "resumed run (rc %d): %s", rc, out);
    CHECK(stat(path, &s1) == 0 && s1.st_mtim.tv_sec == s0.st_mtim.tv_sec && s1.st_mtim.tv_nsec == s0.st_mtim.tv_nsec, "finished shard not rewritten");
    size_t nval, ntrain;
    uint32_t *val = read_shards(outdir, "val", &nval), *train = read_shards(outdir, "train", &ntrain);
    CHECK(nval == 2500 && nval + ntrain == nexp && memcmp(val, expect, nval * 4) == 0 && memcmp(train, expect + nval, ntrain * 4) == 0,
          "shards hold EOT + tokens of every document in order (%zu + %zu vs %zu tokens)", nval, ntrain, nexp);
    rc = run_cmd(cmd, out, sizeof(out));
    CHECK(rc == 0 && strstr(out, "already complete"), "a rerun of a finished prepare does nothing: %s", out);
    // the DataLoader reads the same tokens back
    char pat[400];
    snprintf(pat, sizeof(pat), "%s/train_*.bin", outdir);
    int B = 2, T = 64;
    DataLoader dl;
    dataloader_init(&dl, pat, B, T, 0, 1, 0, 0, t.vocab_size);
    int ok = 1;
    for (int b = 0; b < 5; b++) {
        dataloader_next_batch(&dl);
        for (int i = 0; i < B * T; i++) {  // without shuffle, batch b of shard 0 holds samples 2b, 2b+1
            size_t at = (size_t)(b * B + i / T) * T + i % T;
            ok &= (uint32_t)dl.inputs[i] == train[at] && (uint32_t)dl.targets[i] == train[at + 1];
        }
    }
    CHECK(ok, "DataLoader batches equal the shard tokens");
    dataloader_free(&dl);
    // a different setting on the same folder is refused
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s -t %s -s 999 -V 2500 %s 2>&1", outdir, tok, corpus);
    rc = run_cmd(cmd, out, sizeof(out));
    CHECK(rc != 0 && strstr(out, "other inputs, tokenizer or settings"), "changed settings refused: %s", out);
    // malformed lines: an error naming file:line:column, or skipped with -k
    snprintf(path, sizeof(path), "%s/c.jsonl", corpus);
    write_bytes(path, "{\"text\": \"ok\"}\n{\"text\": \"bad\\x\"}\n{\"text\": \"fine\"}\n", 50);
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s/out2 -t %s -s 1000 -V 0 %s 2>&1", tmpdir, tok, corpus);
    rc = run_cmd(cmd, out, sizeof(out));
    CHECK(rc != 0 && strstr(out, "c.jsonl:2:15: malformed JSONL line") && strstr(out, "invalid escape"), "malformed line stops prepare: %s", out);
    snprintf(cmd, sizeof(cmd), "build/prepare -k -o %s/out3 -t %s -s 100000 -V 0 %s 2>&1", tmpdir, tok, corpus);
    rc = run_cmd(cmd, out, sizeof(out));
    CHECK(rc == 0 && strstr(out, "warning: ") && strstr(out, "c.jsonl:2:15") && strstr(out, "62 documents"), "-k skips the bad line: %s", out);
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s/out4 -t %s %s/nope 2>&1", tmpdir, tok, tmpdir);
    rc = run_cmd(cmd, out, sizeof(out));
    CHECK(rc != 0 && strstr(out, "does not exist"), "missing input: %s", out);
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s/out4 -s 0 %s 2>&1", tmpdir, corpus);
    rc = run_cmd(cmd, out, sizeof(out));
    CHECK(rc != 0 && strstr(out, "-s 0: expected an integer"), "bad flag value: %s", out);
    remove(path);
    // synthetic long-context documents: exactly L tokens, each planted fact recalled with the same number
    int L = 400;
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s/syn -t %s -s 100000 -V 0 -L %d -F 4 %s 2>&1", tmpdir, tok, L, corpus);
    rc = run_cmd(cmd, out, sizeof(out));
    snprintf(path, sizeof(path), "%s/syn", tmpdir);
    size_t nsyn;
    uint32_t *syn = read_shards(path, "train", &nsyn);
    CHECK(rc == 0 && nsyn > 0 && nsyn % L == 0, "synthetic stream of whole %d-token documents (%zu tokens): %s", L, nsyn, out);
    ok = nsyn > 0;
    unsigned char *doc = (unsigned char *)malloc_check(64 * (size_t)L);
    for (size_t d = 0; d < nsyn / L && ok; d++) {
        ok &= syn[d * L] == tokenizer_eot(&t);
        for (int i = 1; i < L; i++) { ok &= syn[d * L + i] != tokenizer_eot(&t); }
        size_t n = tokenizer_decode(&t, syn + d * L + 1, L - 1, doc, 64 * (size_t)L - 1);
        doc[n] = '\0';
        char *recall = strstr((char *)doc, "\n\nRecall the secret numbers:");
        ok &= recall != NULL;
        if (!recall) { break; }
        int facts = 0;
        for (char *p = recall; (p = strstr(p, " The secret number of ")) != NULL; p++, facts++) {
            char fact[64];
            char *end = strchr(p, '.');
            if (!end || end - p >= 63) { ok = 0; break; }
            memcpy(fact, p, (size_t)(end - p + 1)); fact[end - p + 1] = '\0';
            char *planted = strstr((char *)doc, fact);
            ok &= planted != NULL && planted < recall;
        }
        ok &= facts == 4;
    }
    CHECK(ok, "every synthetic document: EOT, filler with 4 planted facts, recall of the same 4 facts");
    free(syn);
    // -Q magic: RULER's needle sentence planted, RULER's question and answer prefix asking for each, with the
    // needle's value
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s/magic -t %s -s 100000 -V 0 -L %d -F 4 -Q magic %s 2>&1", tmpdir, tok, L, corpus);
    rc = run_cmd(cmd, out, sizeof(out));
    snprintf(path, sizeof(path), "%s/magic", tmpdir);
    syn = read_shards(path, "train", &nsyn);
    CHECK(rc == 0 && nsyn > 0 && nsyn % L == 0, "magic synthetic stream of whole %d-token documents (%zu tokens): %s", L, nsyn, out);
    ok = nsyn > 0;
    static const char *question = " What is the special magic number for ";
    for (size_t d = 0; d < nsyn / L && ok; d++) {
        size_t n = tokenizer_decode(&t, syn + d * L + 1, L - 1, doc, 64 * (size_t)L - 1);
        doc[n] = '\0';
        char *first_question = strstr((char *)doc, question);
        int asked = 0;
        for (char *p = first_question; p && (p = strstr(p, question)) != NULL; p++, asked++) {
            char key[32], needle[96], answer[192];
            unsigned value;
            const char *k = p + strlen(question), *sp = strchr(k, ' ');
            if (!sp || sp - k >= 31) { ok = 0; break; }
            memcpy(key, k, (size_t)(sp - k)); key[sp - k] = '\0';
            snprintf(needle, sizeof(needle), " One of the special magic numbers for %s is: ", key);
            char *planted = strstr((char *)doc, needle);
            ok &= planted != NULL && planted < first_question && sscanf(planted + strlen(needle), "%7u.", &value) == 1 && value >= 1000000;
            if (!ok) { break; }
            snprintf(answer, sizeof(answer), "%s mentioned in the provided text? The special magic number for %s mentioned in the provided text is %u.",
                     key, key, value);
            ok &= strncmp(k, answer, strlen(answer)) == 0;
        }
        ok &= asked == 4;
    }
    CHECK(ok, "every magic document: 4 RULER needles, then 4 RULER questions each answered with its needle's value");
    // -P: one probe per document, the document up to its first question, answered (last word) by that key's needle
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s/probed -t %s -s 100000 -V 0 -L %d -F 4 -Q magic -P %s/probes.jsonl %s 2>&1", tmpdir, tok, L,
             tmpdir, corpus);
    rc = run_cmd(cmd, out, sizeof(out));
    snprintf(path, sizeof(path), "%s/probes.jsonl", tmpdir);
    TextSet probes = text_load(path, "text");
    ok = rc == 0 && probes.n == (int)(nsyn / L);
    for (int d = 0; d < probes.n && ok; d++) {
        const char *q = strstr(probes.s[d], question), *last = strrchr(probes.s[d], ' ');
        char key[32], needle[96];
        const char *k = q ? q + strlen(question) : NULL, *sp = k ? strchr(k, ' ') : NULL;
        ok &= q && sp && sp - k < 31 && strstr(q + 1, question) == NULL;  // exactly one question, the last thing
        if (!ok) { break; }
        memcpy(key, k, (size_t)(sp - k)); key[sp - k] = '\0';
        snprintf(needle, sizeof(needle), " One of the special magic numbers for %s is:%s.", key, last);
        ok &= strstr(probes.s[d], needle) != NULL && strlen(last + 1) == 7;
    }
    CHECK(ok, "-P: one probe per document (%d for %zu), each ending in its key's planted value", probes.n, nsyn / L);
    text_free(&probes);
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s/probed2 -t %s -P %s/p.jsonl %s 2>&1", tmpdir, tok, tmpdir, corpus);
    rc = run_cmd(cmd, out, sizeof(out));
    CHECK(rc != 0 && strstr(out, "give -L too"), "-P without -L is refused: %s", out);
    snprintf(cmd, sizeof(cmd), "build/prepare -o %s/magic2 -t %s -L %d -Q ruler %s 2>&1", tmpdir, tok, L, corpus);
    rc = run_cmd(cmd, out, sizeof(out));
    CHECK(rc != 0 && strstr(out, "-Q ruler: expected secret or magic"), "unknown -Q style: %s", out);
    free(doc); free(syn); free(val); free(train); free(expect);
    tokenizer_free(&t);
}

int main(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_tokenizer_XXXXXX");
    if (!mkdtemp(tmpdir)) { die("mkdtemp failed"); }
    test_pretokenizer();
    test_hand_merges();
    test_encode_roundtrip();
    test_files();
    test_json();
    test_prepare();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0) { printf("could not remove %s\n", tmpdir); }
    tokenizer_free(&real);
    free(text);
    return test_summary();
}
