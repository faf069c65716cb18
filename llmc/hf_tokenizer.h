/*
 Hugging Face tokenizer.json reader, encoder and decoder for the BPE model type, in the two layouts
 that cover GPT-2, Llama-3, Qwen-style and Llama-2-style files (doc/tokenizer.md):
   - byte-level: pre_tokenizer ByteLevel (the GPT-2 regex), or a Sequence of a Split by the GPT-2 or
     Llama-3 regex (behavior Isolated) and a ByteLevel without regex. Vocabulary strings are in the
     GPT-2 byte-to-character alphabet, which the reader undoes, so pieces are raw bytes.
   - Metaspace (Llama-2 converted to tokenizer.json): normalizer Prepend("▁") + Replace(" ", "▁"), or
     pre_tokenizer Metaspace; characters not in the vocabulary fall back to <0xNN> pieces
     (model.byte_fallback) or <unk>.
 Encoding: pre-tokens (regex pieces, or the Metaspace words) go through BPE by merge rank
 (llmc/piece_bpe.h); with model.ignore_merges a pre-token that is itself in the vocabulary is one
 token. Added tokens that are not special are matched in the text first (leftmost, longest) and become
 their id; special added tokens are never matched, so text that spells "<|endoftext|>" stays text.
 Anything else (another model type, normalizer, pre-tokenizer or regex, dropout, subword prefixes)
 is refused with an error naming the unsupported part. The regexes run as hand-written scanners
 (hf_gpt2_end, hf_llama3_end); bytes that are not valid UTF-8 count as symbols ([^\s\p{L}\p{N}]).
*/
#ifndef LLMC_HF_TOKENIZER_H
#define LLMC_HF_TOKENIZER_H

#include "json_value.h"
#include "piece_bpe.h"
#include "unicode.h"

#define HF_GPT2_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define HF_LLAMA3_REGEX "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define HF_METASPACE "\xE2\x96\x81"  // "▁"
#define HF_MAX_ADDED 4096

enum { HF_PRE_GPT2, HF_PRE_LLAMA3, HF_PRE_METASPACE };
// Where a "▁" is prepended: never; every stretch of text between added tokens (the Prepend
// normalizer); Metaspace's "first" (the first stretch) and "always" (every one), both only when the
// stretch does not start with a space already.
enum { HF_PREPEND_NEVER, HF_PREPEND_EVERY, HF_PREPEND_FIRST_UNLESS_SPACE, HF_PREPEND_EVERY_UNLESS_SPACE };

typedef struct {
    PieceTable vocab;          // id -> raw bytes (byte-level alphabet undone); map over the model's vocab
    PieceTable surface;        // id -> what it decodes to
    uint32_t vocab_size, doc_token, unk;
    int pretok, prepend, split_metaspace, ignore_merges, byte_fallback, fuse_unk;
    uint32_t byte_id[256];     // byte-level: the token of each byte; Metaspace: <0xNN> (UINT32_MAX if none)
    uint32_t ascii_id[128];    // Metaspace: the token of each ASCII character (UINT32_MAX: none), saves a lookup
    MergeSlot *merges; uint64_t merge_mask;
    uint32_t *added; int nadded;  // non-special added tokens, matched in the text
    JoinedPairs joined;        // Metaspace: where the text can be cut into words (cut_words)
    int cut_words;
    unsigned char added_first[256];
    BpeRules rules;
} HfTokenizer;

// ----------------------------------------------------------------------------
// Character classes of the regexes

enum { UC_LETTER, UC_NUMBER, UC_SPACE, UC_OTHER };

// Class of the character at s[i], its length and code point (an invalid byte: UC_OTHER, length 1).
static inline int hf_char(const unsigned char *s, size_t n, size_t i, size_t *len, uint32_t *cp) {
    unsigned char c = s[i];
    if (c < 0x80) {
        *len = 1; *cp = c;
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') { return UC_LETTER; }
        if (c >= '0' && c <= '9') { return UC_NUMBER; }
        return c == ' ' || (c >= 9 && c <= 13) ? UC_SPACE : UC_OTHER;
    }
    uint32_t v;
    int prefix, k = utf8_sequence(s + i, n - i, &v, &prefix);
    if (k == 0) { *len = 1; *cp = 0xFFFD; return UC_OTHER; }
    *len = (size_t)k; *cp = v;
    if (v == 0x85 || v == 0xA0 || v == 0x1680 || (v >= 0x2000 && v <= 0x200A) || v == 0x2028 || v == 0x2029 ||
        v == 0x202F || v == 0x205F || v == 0x3000) { return UC_SPACE; }  // Unicode White_Space
    if (uc_is_letter(v)) { return UC_LETTER; }
    if (uc_is_number(v)) { return UC_NUMBER; }
    return UC_OTHER;
}

static inline int hf_class(const unsigned char *s, size_t n, size_t i) { size_t l; uint32_t cp; return hf_char(s, n, i, &l, &cp); }

// End of the run of characters of class cls that starts at s[i].
static inline size_t hf_run(const unsigned char *s, size_t n, size_t i, int cls) {
    size_t l; uint32_t cp;
    while (i < n && hf_char(s, n, i, &l, &cp) == cls) { i += l; }
    return i;
}

// 's 't 're 've 'm 'll 'd at s[i] (an apostrophe): the end of the contraction, or 0.
static inline size_t hf_contraction(const unsigned char *s, size_t n, size_t i, int any_case) {
    if (i + 1 >= n) { return 0; }
    int fold = any_case ? 0x20 : 0;
    int a = s[i + 1] | fold, b = i + 2 < n ? (s[i + 2] | fold) : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') { return i + 2; }
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) { return i + 3; }
    return 0;
}

// The whitespace alternatives shared by both regexes: "\s+(?!\S)|\s+" for the run at s[i].
static inline size_t hf_space_end(const unsigned char *s, size_t n, size_t i) {
    size_t e = hf_run(s, n, i, UC_SPACE), last = i, l; uint32_t cp;
    if (e == n) { return e; }
    for (size_t j = i; j < e; j += l) { hf_char(s, n, j, &l, &cp); last = j; }
    return last > i ? last : e;  // leave the last space to the next pre-token
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
static inline size_t hf_gpt2_end(const unsigned char *s, size_t n, size_t i) {
    if (s[i] == '\'') { size_t c = hf_contraction(s, n, i, 0); if (c) { return c; } }
    size_t j = s[i] == ' ' && i + 1 < n ? i + 1 : i;
    int cls = hf_class(s, n, j);
    if (cls != UC_SPACE) { return hf_run(s, n, j, cls); }
    return hf_space_end(s, n, i);
}

// Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//          \s*[\r\n]+|\s+(?!\S)|\s+
static inline size_t hf_llama3_end(const unsigned char *s, size_t n, size_t i) {
    if (s[i] == '\'') { size_t c = hf_contraction(s, n, i, 1); if (c) { return c; } }
    size_t l; uint32_t cp;
    int cls = hf_char(s, n, i, &l, &cp);
    if (cls == UC_LETTER) { return hf_run(s, n, i, UC_LETTER); }
    if (cls != UC_NUMBER && cp != '\r' && cp != '\n' && i + l < n && hf_class(s, n, i + l) == UC_LETTER) { return hf_run(s, n, i + l, UC_LETTER); }
    if (cls == UC_NUMBER) {
        size_t e = i;
        for (int k = 0; k < 3 && e < n && hf_char(s, n, e, &l, &cp) == UC_NUMBER; k++) { e += l; }
        return e;
    }
    size_t j = s[i] == ' ' && i + 1 < n ? i + 1 : i;
    if (hf_class(s, n, j) == UC_OTHER) {
        size_t e = hf_run(s, n, j, UC_OTHER);
        while (e < n && (s[e] == '\r' || s[e] == '\n')) { e++; }
        return e;
    }
    size_t e = hf_run(s, n, i, UC_SPACE), nl = 0;
    for (size_t k = i; k < e; k++) { if (s[k] == '\r' || s[k] == '\n') { nl = k + 1; } }
    return nl ? nl : hf_space_end(s, n, i);
}

// ----------------------------------------------------------------------------
// Loading

// GPT-2's byte -> character map: printable Latin-1 bytes are themselves, the rest become 256 + k.
static inline void hf_byte_chars(uint32_t *byte_to_char) {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_to_char[b] = printable ? b : next++;
    }
}

// Undoes the byte-level alphabet in place; returns the new length, or -1 if a character is outside it.
static inline long hf_unmap_bytes(unsigned char *s, size_t n, const int *char_to_byte) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t l; uint32_t cp;
        hf_char(s, n, i, &l, &cp);
        if (utf8_valid_len(s, n, i) == 0 || cp >= 324 || char_to_byte[cp] < 0) { return -1; }
        s[o++] = (unsigned char)char_to_byte[cp];
        i += l;
    }
    return (long)o;
}

static inline const char *hf_type(const JValue *obj) {
    const JValue *t = obj && obj->kind == JV_OBJ ? jv_get(obj, "type") : NULL;
    return t && t->kind == JV_STR ? t->str : NULL;
}

static inline int hf_flag(const JValue *obj, const char *key, int def) {
    const JValue *v = jv_get(obj, key);
    return v && v->kind == JV_BOOL ? (int)v->num : def;
}

static inline int hf_str_is(const JValue *obj, const char *key, const char *want) {
    const JValue *v = obj && obj->kind == JV_OBJ ? jv_get(obj, key) : NULL;
    return v && v->kind == JV_STR && strcmp(v->str, want) == 0;
}

// Reads the normalizer and pre_tokenizer into t->pretok / prepend / split_metaspace, or dies.
static inline void hf_read_layout(HfTokenizer *t, const JValue *root, const char *path) {
    const JValue *norm = jv_get(root, "normalizer"), *pre = jv_get(root, "pre_tokenizer");
    const char *nt = hf_type(norm), *pt = hf_type(pre);
    if (norm && norm->kind != JV_NULL) {  // only Llama-2's Prepend("▁") + Replace(" " -> "▁")
        const JValue *seq = jv_get(norm, "normalizers");
        int ok = nt && strcmp(nt, "Sequence") == 0 && seq && seq->kind == JV_ARR && seq->n == 2 &&
                 hf_str_is(&seq->items[0], "type", "Prepend") && hf_str_is(&seq->items[0], "prepend", HF_METASPACE) &&
                 hf_str_is(&seq->items[1], "type", "Replace") && hf_str_is(&seq->items[1], "content", HF_METASPACE);
        const JValue *pat = ok ? jv_get(&seq->items[1], "pattern") : NULL;
        if (!ok || !hf_str_is(pat, "String", " ")) {
            die("tokenizer.json '%s': normalizer '%s' is not supported (only none, or Llama-2's Prepend(\"\xE2\x96\x81\") + Replace(\" \", \"\xE2\x96\x81\"))", path, nt ? nt : "?");
        }
        if (pre && pre->kind != JV_NULL) { die("tokenizer.json '%s': a pre_tokenizer ('%s') after the Metaspace normalizer is not supported", path, pt ? pt : "?"); }
        t->pretok = HF_PRE_METASPACE; t->prepend = HF_PREPEND_EVERY;
        return;
    }
    if (!pre || pre->kind == JV_NULL) { die("tokenizer.json '%s' has neither a normalizer nor a pre_tokenizer; only byte-level and Metaspace layouts are supported", path); }
    if (pt && strcmp(pt, "Metaspace") == 0) {
        if (!hf_str_is(pre, "replacement", HF_METASPACE)) { die("tokenizer.json '%s': Metaspace replacement must be \"\xE2\x96\x81\"", path); }
        const JValue *scheme = jv_get(pre, "prepend_scheme");
        t->prepend = hf_flag(pre, "add_prefix_space", 1) ? HF_PREPEND_EVERY_UNLESS_SPACE : HF_PREPEND_NEVER;
        if (scheme && scheme->kind == JV_STR) {
            if (strcmp(scheme->str, "never") == 0) { t->prepend = HF_PREPEND_NEVER; }
            else if (strcmp(scheme->str, "first") == 0) { t->prepend = HF_PREPEND_FIRST_UNLESS_SPACE; }
            else if (strcmp(scheme->str, "always") != 0) { die("tokenizer.json '%s': Metaspace prepend_scheme '%s' is not supported", path, scheme->str); }
        }
        t->pretok = HF_PRE_METASPACE;
        t->split_metaspace = hf_flag(pre, "split", 1);
        return;
    }
    const JValue *byte_level = pre;
    const char *regex = HF_GPT2_REGEX;
    if (pt && strcmp(pt, "Sequence") == 0) {  // Split(regex, Isolated) then ByteLevel without its own regex
        const JValue *seq = jv_get(pre, "pretokenizers");
        if (!seq || seq->kind != JV_ARR || seq->n != 2 || !hf_str_is(&seq->items[0], "type", "Split") ||
            !hf_str_is(&seq->items[0], "behavior", "Isolated") || hf_flag(&seq->items[0], "invert", 0)) {
            die("tokenizer.json '%s': pre_tokenizer Sequence is supported only as [Split(regex, Isolated), ByteLevel]", path);
        }
        const JValue *pat = jv_get(&seq->items[0], "pattern"), *re = pat && pat->kind == JV_OBJ ? jv_get(pat, "Regex") : NULL;
        if (!re || re->kind != JV_STR) { die("tokenizer.json '%s': the Split pre-tokenizer has no pattern.Regex", path); }
        regex = re->str;
        byte_level = &seq->items[1];
        if (hf_flag(byte_level, "use_regex", 1)) { die("tokenizer.json '%s': the ByteLevel after Split must have use_regex false", path); }
    } else if (!hf_flag(pre, "use_regex", 1)) { die("tokenizer.json '%s': ByteLevel with use_regex false and no Split is not supported", path); }
    const char *bt = hf_type(byte_level);
    if (!bt || strcmp(bt, "ByteLevel") != 0) { die("tokenizer.json '%s': pre_tokenizer '%s' is not supported (ByteLevel, Split+ByteLevel or Metaspace)", path, bt ? bt : "?"); }
    if (hf_flag(byte_level, "add_prefix_space", 0)) { die("tokenizer.json '%s': ByteLevel add_prefix_space true is not supported", path); }
    if (strcmp(regex, HF_GPT2_REGEX) == 0) { t->pretok = HF_PRE_GPT2; }
    else if (strcmp(regex, HF_LLAMA3_REGEX) == 0) { t->pretok = HF_PRE_LLAMA3; }
    else { die("tokenizer.json '%s': pre-tokenizer regex %s is not supported (only the GPT-2 and Llama-3 ones)", path, regex); }
}

static inline void hf_free(HfTokenizer *t) {
    piece_table_free(&t->vocab); piece_table_free(&t->surface); joined_free(&t->joined);
    free(t->merges); free(t->added);
    memset(t, 0, sizeof(*t));
}

static inline void hf_load(HfTokenizer *t, const char *path) {
    memset(t, 0, sizeof(*t));
    JValue root;
    jv_parse_file(&root, path);
    if (root.kind != JV_OBJ) { die("tokenizer.json '%s': the top level is not a JSON object", path); }
    const JValue *model = jv_get(&root, "model");
    if (!model || model->kind != JV_OBJ) { die("tokenizer.json '%s': field 'model' is missing or not an object", path); }
    const char *mt = hf_type(model);
    if (mt && strcmp(mt, "BPE") != 0) { die("tokenizer.json '%s': model type '%s' is not supported (only BPE)", path, mt); }
    const JValue *vocab = jv_get(model, "vocab"), *merges = jv_get(model, "merges"), *added = jv_get(&root, "added_tokens");
    if (!vocab || vocab->kind != JV_OBJ) { die("tokenizer.json '%s': model.vocab must be an object of token -> id", path); }
    if (!merges || merges->kind != JV_ARR) { die("tokenizer.json '%s': model.merges must be an array", path); }
    if (added && added->kind != JV_ARR && added->kind != JV_NULL) { die("tokenizer.json '%s': added_tokens must be an array", path); }
    const JValue *dropout = jv_get(model, "dropout");
    if (dropout && dropout->kind != JV_NULL) { die("tokenizer.json '%s': model.dropout is not supported", path); }
    static const char *affixes[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const JValue *a = jv_get(model, affixes[k]);
        if (a && a->kind == JV_STR && a->len > 0) { die("tokenizer.json '%s': model.%s '%s' is not supported", path, affixes[k], a->str); }
    }
    hf_read_layout(t, &root, path);
    t->ignore_merges = hf_flag(model, "ignore_merges", 0);
    t->byte_fallback = hf_flag(model, "byte_fallback", 0);
    t->fuse_unk = hf_flag(model, "fuse_unk", 0);
    int byte_level = t->pretok != HF_PRE_METASPACE;
    // ids: the vocab, then the added tokens (which may repeat a vocab entry with the same id)
    int nadded = added && added->kind == JV_ARR ? added->n : 0;
    uint64_t size = 0;
    for (int i = 0; i < vocab->n; i++) {
        const JValue *v = &vocab->items[i];
        if (v->kind != JV_NUM || v->num < 0 || v->num >= (1u << 30) || v->num != (double)(uint32_t)v->num) {
            die("tokenizer.json '%s': model.vocab['%s'] must be an integer id in 0..2^30, got %s", path, vocab->keys[i], v->kind == JV_NUM ? "a number out of range" : "another type");
        }
        if ((uint64_t)v->num + 1 > size) { size = (uint64_t)v->num + 1; }
    }
    for (int i = 0; i < nadded; i++) {
        const JValue *a = &added->items[i], *id = jv_get(a, "id"), *content = jv_get(a, "content");
        if (a->kind != JV_OBJ || !id || id->kind != JV_NUM || id->num < 0 || id->num >= (1u << 30) || !content || content->kind != JV_STR || content->len == 0) {
            die("tokenizer.json '%s': added_tokens[%d] needs an integer 'id' in 0..2^30 and a non-empty string 'content'", path, i);
        }
        if ((uint64_t)id->num + 1 > size) { size = (uint64_t)id->num + 1; }
    }
    t->vocab_size = (uint32_t)size;
    const unsigned char **strs = (const unsigned char **)calloc_check(size, sizeof(*strs));
    uint32_t *lens = (uint32_t *)calloc_check(size, sizeof(uint32_t));
    unsigned char *in_map = (unsigned char *)calloc_check(size, 1);
    uint32_t byte_to_char[256];
    int char_to_byte[324];
    hf_byte_chars(byte_to_char);
    for (int c = 0; c < 324; c++) { char_to_byte[c] = -1; }
    for (int b = 0; b < 256; b++) { char_to_byte[byte_to_char[b]] = b; }
    for (int i = 0; i < vocab->n; i++) {
        uint32_t id = (uint32_t)vocab->items[i].num;
        if (strs[id]) { die("tokenizer.json '%s': model.vocab gives id %u to both '%s' and another token", path, id, vocab->keys[i]); }
        unsigned char *s = (unsigned char *)vocab->keys[i];
        long len = (long)strlen(vocab->keys[i]);
        if (byte_level && (len = hf_unmap_bytes(s, (size_t)len, char_to_byte)) < 0) {
            die("tokenizer.json '%s': model.vocab token %u '%s' has a character outside the byte-level alphabet", path, id, vocab->keys[i]);
        }
        if (len == 0) { die("tokenizer.json '%s': model.vocab token %u is empty", path, id); }
        strs[id] = s; lens[id] = (uint32_t)len; in_map[id] = 1;
    }
    t->added = (uint32_t *)malloc_check((size_t)(nadded ? nadded : 1) * sizeof(uint32_t));
    for (int i = 0; i < nadded; i++) {
        const JValue *a = &added->items[i], *content = jv_get(a, "content");
        uint32_t id = (uint32_t)jv_get(a, "id")->num;
        if (strs[id] && (lens[id] != content->len || memcmp(strs[id], content->str, content->len) != 0)) {
            die("tokenizer.json '%s': added_tokens[%d] '%s' reuses id %u", path, i, content->str, id);
        }
        if (!in_map[id]) { strs[id] = (const unsigned char *)content->str; lens[id] = (uint32_t)content->len; }  // else the same string
        if (!hf_flag(a, "special", 0)) {
            static const char *flags[3] = {"lstrip", "rstrip", "single_word"};
            for (int k = 0; k < 3; k++) { if (hf_flag(a, flags[k], 0)) { die("tokenizer.json '%s': added_tokens[%d] '%s' sets %s, which is not supported", path, i, content->str, flags[k]); } }
            if (t->nadded >= HF_MAX_ADDED) { die("tokenizer.json '%s' has more than %d non-special added tokens", path, HF_MAX_ADDED); }
            t->added[t->nadded++] = id;
            t->added_first[content->str[0] & 0xFF] = 1;
        }
    }
    for (uint64_t id = 0; id < size; id++) { if (!strs[id]) { strs[id] = (const unsigned char *)""; } }  // an unused id: empty, never produced
    piece_table_build(&t->vocab, (uint32_t)size, strs, lens, in_map, path);
    // the document token: BOS names first, then EOS names, among the special added tokens
    static const char *doc_names[7] = {"<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"};
    t->doc_token = UINT32_MAX;
    for (int k = 0; k < 7 && t->doc_token == UINT32_MAX; k++) {
        for (int i = 0; i < nadded; i++) {
            const JValue *a = &added->items[i];
            if (hf_flag(a, "special", 0) && strcmp(jv_get(a, "content")->str, doc_names[k]) == 0) { t->doc_token = (uint32_t)jv_get(a, "id")->num; break; }
        }
    }
    if (t->doc_token == UINT32_MAX) { die("tokenizer.json '%s' has no special added token to mark documents (looked for <s>, <|begin_of_text|>, <bos>, <|endoftext|>, </s>, <|end_of_text|>, <eos>)", path); }
    // bytes and unk
    t->unk = UINT32_MAX;
    const JValue *unk = jv_get(model, "unk_token");
    if (unk && unk->kind == JV_STR) {
        t->unk = piece_find(&t->vocab, (const unsigned char *)unk->str, unk->len);
        if (t->unk == UINT32_MAX) { die("tokenizer.json '%s': model.unk_token '%s' is not in the vocab", path, unk->str); }
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof(name), "<0x%02X>", b);
        unsigned char raw = (unsigned char)b;
        t->byte_id[b] = byte_level ? piece_find(&t->vocab, &raw, 1) : piece_find(&t->vocab, (const unsigned char *)name, 6);
        if (b < 128) { t->ascii_id[b] = piece_find(&t->vocab, &raw, 1); }
        if (t->byte_id[b] == UINT32_MAX && (byte_level || t->byte_fallback)) {
            die("tokenizer.json '%s': the vocab has no token for byte 0x%02X (%s)", path, b, byte_level ? "byte-level" : "byte_fallback");
        }
    }
    // merges: "left right" strings or [left, right] pairs; rank = position
    uint64_t cap = 1024;
    while (cap < 2 * (uint64_t)merges->n) { cap *= 2; }
    t->merge_mask = cap - 1;
    t->merges = (MergeSlot *)malloc_check(cap * sizeof(MergeSlot));
    for (uint64_t h = 0; h < cap; h++) { t->merges[h].key = UINT64_MAX; }
    unsigned char *joined = (unsigned char *)malloc_check(1);
    t->cut_words = !byte_level;  // unless a merge takes a byte-fallback token (then the text is one word)
    for (int r = 0; r < merges->n; r++) {
        const JValue *m = &merges->items[r];
        unsigned char *part[2]; size_t plen[2];
        char *copy = NULL;
        if (m->kind == JV_STR) {
            copy = (char *)malloc_check(m->len + 1);
            memcpy(copy, m->str, m->len + 1);
            char *sp = strchr(copy, ' ');
            if (!sp || strchr(sp + 1, ' ')) { die("tokenizer.json '%s': model.merges[%d] '%s' is not two tokens separated by one space", path, r, m->str); }
            *sp = '\0';
            part[0] = (unsigned char *)copy; part[1] = (unsigned char *)sp + 1;
        } else if (m->kind == JV_ARR && m->n == 2 && m->items[0].kind == JV_STR && m->items[1].kind == JV_STR) {
            part[0] = (unsigned char *)m->items[0].str; part[1] = (unsigned char *)m->items[1].str;
        } else { die("tokenizer.json '%s': model.merges[%d] must be a string \"a b\" or an array of two strings", path, r); }
        uint32_t ids[2];
        for (int k = 0; k < 2; k++) {
            long len = (long)strlen((char *)part[k]);
            if (byte_level && (len = hf_unmap_bytes(part[k], (size_t)len, char_to_byte)) < 0) { die("tokenizer.json '%s': model.merges[%d] has a character outside the byte-level alphabet", path, r); }
            plen[k] = (size_t)len;
            ids[k] = piece_find(&t->vocab, part[k], plen[k]);
            if (ids[k] == UINT32_MAX) { die("tokenizer.json '%s': model.merges[%d]: part %d is not in the vocab", path, r, k + 1); }
            if (piece_byte_value(part[k], plen[k]) >= 0) { t->cut_words = 0; }
        }
        joined = (unsigned char *)realloc(joined, plen[0] + plen[1] + 1);
        if (!joined) { die("out of host memory reading '%s'", path); }
        memcpy(joined, part[0], plen[0]); memcpy(joined + plen[0], part[1], plen[1]);
        uint32_t result = piece_find(&t->vocab, joined, plen[0] + plen[1]);
        if (result == UINT32_MAX) { die("tokenizer.json '%s': model.merges[%d]: the merged token is not in the vocab", path, r); }
        uint64_t key = tok_pair_key(ids[0], ids[1]), h = tok_hash64(key) & t->merge_mask;
        while (t->merges[h].key != UINT64_MAX && t->merges[h].key != key) { h = (h + 1) & t->merge_mask; }
        t->merges[h] = (MergeSlot){key, (uint32_t)r, result};  // a repeated pair: the last rank wins, as in tokenizers
        free(copy);
    }
    free(joined);
    // surfaces: byte-level tokens are raw bytes already; Metaspace: "▁" -> ' ', <0xNN> -> the byte
    unsigned char **owned = (unsigned char **)calloc_check(size, sizeof(*owned));
    for (uint64_t id = 0; id < size && !byte_level; id++) {
        if (!in_map[id]) { continue; }
        unsigned char *o = owned[id] = (unsigned char *)malloc_check(lens[id]);
        uint32_t k = 0;
        int b = piece_byte_value(strs[id], lens[id]);
        if (b >= 0) { o[k++] = (unsigned char)b; }
        else {
            for (uint32_t j = 0; j < lens[id];) {
                if (j + 3 <= lens[id] && memcmp(strs[id] + j, HF_METASPACE, 3) == 0) { o[k++] = ' '; j += 3; } else { o[k++] = strs[id][j++]; }
            }
        }
        strs[id] = o; lens[id] = k;
    }
    memset(in_map, 0, size);
    piece_table_build(&t->surface, (uint32_t)size, strs, lens, in_map, path);
    for (uint64_t id = 0; id < size; id++) { free(owned[id]); }
    free(owned); free(strs); free(lens); free(in_map);
    jv_free(&root);
    t->rules = (BpeRules){&t->vocab, NULL, NULL, t->merges, t->merge_mask};
    if (t->cut_words) {
        unsigned char *all = (unsigned char *)malloc_check(size);
        memset(all, 1, size);
        joined_build(&t->joined, &t->vocab, all);
        free(all);
    }
}

// ----------------------------------------------------------------------------
// Encoding

static inline size_t hf_max_tokens(const HfTokenizer *t, size_t n) { return t->pretok == HF_PRE_METASPACE ? 3 * n + 3 : n; }

// BPE of one pre-token w[0..wn) (raw bytes for byte-level, normalized text for Metaspace); writes at
// most wn tokens to out and returns how many.
static inline size_t hf_encode_word(const void *tokenizer, BpeScratch *b, const unsigned char *w, size_t wn, uint32_t *out) {
    const HfTokenizer *t = (const HfTokenizer *)tokenizer;
    if (t->ignore_merges) {
        uint32_t id = piece_find(&t->vocab, w, wn);
        if (id != UINT32_MAX) { out[0] = id; return 1; }
    }
    bpe_scratch_reserve(b, wn);
    size_t ns = 0;
    for (size_t i = 0; i < wn;) {
        size_t len = 1;
        uint32_t id;
        if (t->pretok == HF_PRE_METASPACE) {
            int k = w[i] < 0x80 ? 1 : utf8_valid_len(w, wn, i);
            len = k ? (size_t)k : 1;
            id = w[i] < 0x80 ? t->ascii_id[w[i]] : piece_find(&t->vocab, w + i, len);
            if (id == UINT32_MAX && t->byte_fallback) {  // one symbol per byte
                for (size_t j = 0; j < len; j++, ns++) { b->sym[ns] = (BpeSym){(uint32_t)(i + j), 1, t->byte_id[w[i + j]], (int32_t)ns - 1, (int32_t)ns + 1, 0}; }
                i += len;
                continue;
            }
            if (id == UINT32_MAX) {
                if (t->unk == UINT32_MAX) { die("tokenizer.json: a character is not in the vocab and the model has neither byte_fallback nor unk_token"); }
                if (t->fuse_unk && ns > 0 && b->sym[ns - 1].id == t->unk) { b->sym[ns - 1].len += (uint32_t)len; i += len; continue; }
                id = t->unk;
            }
        } else { id = t->byte_id[w[i]]; }
        b->sym[ns] = (BpeSym){(uint32_t)i, (uint32_t)len, id, (int32_t)ns - 1, (int32_t)ns + 1, 0};
        ns++; i += len;
    }
    if (ns == 0) { return 0; }
    b->sym[ns - 1].next = -1;
    size_t count = 0;
    for (int32_t k = bpe_merge_symbols(&t->rules, w, b->sym, ns, b->heap); k >= 0; k = b->sym[k].next) { out[count++] = b->sym[k].id; }
    return count;
}

// End of the pre-token at text[i] (Metaspace: words start at each "▁" when split, and are cut where
// no merge can cross).
static inline size_t hf_pretoken_end(const HfTokenizer *t, const unsigned char *s, size_t n, size_t i) {
    if (t->pretok == HF_PRE_GPT2) { return hf_gpt2_end(s, n, i); }
    if (t->pretok == HF_PRE_LLAMA3) { return hf_llama3_end(s, n, i); }
    size_t end = t->cut_words ? joined_word_end(&t->joined, s, n, i) : n, e = i + 1;
    if (!t->split_metaspace) { return end; }
    while (e < end && !(e + 3 <= n && memcmp(s + e, HF_METASPACE, 3) == 0)) { e++; }
    return e;
}

// Encodes one stretch of text without added tokens, appending to out (count so far in *count).
static inline void hf_encode_text(const HfTokenizer *t, TokenCache *cache, BpeScratch *b, const unsigned char *s, size_t n,
                                  int first, uint32_t *out, size_t cap, size_t *count) {
    unsigned char *norm = NULL;
    if (t->pretok == HF_PRE_METASPACE) {  // spaces -> "▁", and the prefix
        norm = (unsigned char *)malloc_check(3 * n + 3);
        size_t k = 0;
        int p = t->prepend, unless_space = p == HF_PREPEND_FIRST_UNLESS_SPACE || p == HF_PREPEND_EVERY_UNLESS_SPACE;
        if (n > 0 && p != HF_PREPEND_NEVER && (first || p != HF_PREPEND_FIRST_UNLESS_SPACE) && !(unless_space && s[0] == ' ')) {
            memcpy(norm, HF_METASPACE, 3); k = 3;
        }
        for (size_t i = 0; i < n; i++) { if (s[i] == ' ') { memcpy(norm + k, HF_METASPACE, 3); k += 3; } else { norm[k++] = s[i]; } }
        s = norm; n = k;
    }
    for (size_t i = 0; i < n;) {
        size_t e = hf_pretoken_end(t, s, n, i);
        encode_word_cached(hf_encode_word, t, cache, b, s + i, e - i, out, cap, count);
        i = e;
    }
    free(norm);
}

// The longest non-special added token at s[i], or UINT32_MAX.
static inline uint32_t hf_added_at(const HfTokenizer *t, const unsigned char *s, size_t n, size_t i) {
    uint32_t best = UINT32_MAX;
    size_t best_len = 0;
    for (int k = 0; k < t->nadded; k++) {
        size_t len;
        const unsigned char *a = piece_bytes(&t->surface, t->added[k], &len);
        if (len > best_len && i + len <= n && memcmp(s + i, a, len) == 0) { best = t->added[k]; best_len = len; }
    }
    return best;
}

// Encodes n bytes; same contract as tokenizer_encode_cached (llmc/tokenizer.h), with the bound
// hf_max_tokens(t, n).
static inline size_t hf_encode(const HfTokenizer *t, TokenCache *cache, const unsigned char *s, size_t n, uint32_t *out, size_t cap) {
    size_t count = 0, from = 0;
    BpeScratch b = {0};
    for (size_t i = 0; i < n && t->nadded; i++) {
        if (!t->added_first[s[i]]) { continue; }
        uint32_t id = hf_added_at(t, s, n, i);
        if (id == UINT32_MAX) { continue; }
        hf_encode_text(t, cache, &b, s + from, i - from, from == 0, out, cap, &count);
        emit_tokens(out, cap, &count, &id, 1);
        size_t len;
        piece_bytes(&t->surface, id, &len);
        i += len - 1; from = i + 1;
    }
    hf_encode_text(t, cache, &b, s + from, n - from, from == 0, out, cap, &count);
    bpe_scratch_free(&b);
    return count;
}

// Decodes ids: byte-level tokens give their bytes, Metaspace tokens their text with "▁" as ' ' (less
// the prefix space at the start), added tokens their content. Dies on an id out of range.
static inline size_t hf_decode(const HfTokenizer *t, const uint32_t *ids, size_t n, unsigned char *out, size_t cap) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= t->vocab_size) { die("token id %u is out of range (vocab size %u)", ids[i], t->vocab_size); }
        size_t len;
        const unsigned char *b = piece_bytes(&t->surface, ids[i], &len);
        if (i == 0 && len > 0 && b[0] == ' ' && t->pretok == HF_PRE_METASPACE && t->prepend != HF_PREPEND_NEVER) { b++; len--; }
        for (size_t j = 0; j < len; j++, count++) { if (count < cap) { out[count] = b[j]; } }
    }
    return count;
}

#endif // LLMC_HF_TOKENIZER_H
