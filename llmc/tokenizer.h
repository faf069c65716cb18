/*
 Byte-level BPE tokenizer: pre-tokenizer, tokenizer file load/save, encode and decode.
 Full description (file format byte by byte, pre-tokenization rules, commands) in doc/tokenizer.md.

 Vocabulary. Token ids 0..255 are the 256 single bytes; id 256+r is merge r, the concatenation of the
 two earlier tokens merges[r] = (left, right); the last num_special ids are special tokens (at least
 <|endoftext|>), which encode never produces and decode turns back into their names. Because every byte
 is a token and decode is plain concatenation, decode(encode(x)) == x for any byte string, valid UTF-8
 or not.

 Encoding. The text is cut into pre-tokens (pretoken_end below, GPT-style: words, digit groups,
 punctuation runs, whitespace), then each pre-token independently goes through BPE: start from its bytes
 and repeatedly merge the adjacent pair of lowest merge rank (a hash map pair -> rank), which gives the
 same result as applying the merges in training order. Frequent pre-tokens are answered from a small
 per-thread cache (TokenCache); a NULL cache encodes without one.

 File (little-endian; doc/tokenizer.md):
   offset  0  u32  magic        0x4B4F544D ("MTOK" on disk: bytes 4D 54 4F 4B)
   offset  4  u32  version      1
   offset  8  u32  vocab_size   = 256 + num_merges + num_special
   offset 12  u32  num_merges
   offset 16  u32  num_special
   offset 20  u32  eot          id of <|endoftext|>
   offset 24  u32  pretokenizer 1 (the rules of pretoken_end)
   offset 28  ..   zero up to byte 64
   then num_merges x (u32 left, u32 right)          merge r makes token 256+r; left, right < 256+r
   then num_special x (u32 len, len bytes of name)  1 <= len <= 256
 and nothing after. tokenizer_load dies naming the file and the first problem it finds.
*/
#ifndef LLMC_TOKENIZER_H
#define LLMC_TOKENIZER_H

#include <stdint.h>
#include "utils.h"

#define TOKENIZER_MAGIC 0x4B4F544Du
#define TOKENIZER_VERSION 1u
#define TOKENIZER_HEADER_BYTES 64
#define TOKENIZER_PRETOKENIZER 1u
#define TOKENIZER_EOT_NAME "<|endoftext|>"
#define TOKENIZER_MAX_SPECIAL_LEN 256
#define PRETOKEN_MAX_BYTES 128  // longer letter/punctuation/space runs are cut, keeping BPE per pre-token cheap

// ----------------------------------------------------------------------------
// Pre-tokenizer. Characters fall into four classes: whitespace (ASCII space, \t \n \v \f \r), digits
// (ASCII 0-9), punctuation (other ASCII, and the non-ASCII punctuation blocks listed in
// utf8_is_punct), letters (everything else: ASCII letters, other valid UTF-8 characters, and every
// byte of invalid UTF-8, taken one byte at a time).

enum { PT_LETTER, PT_DIGIT, PT_SPACE, PT_PUNCT };

static const unsigned char pt_ascii_class[128] = {
    // 0x00-0x1f: controls are punctuation except \t \n \v \f \r
    3,3,3,3,3,3,3,3,3,2,2,2,2,2,3,3, 3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,
    // ' ' ! " # $ % & ' ( ) * + , - . /   0-9   : ; < = > ? @
    2,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3, 1,1,1,1,1,1,1,1,1,1,3,3,3,3,3,3,
    3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,3,3,3,3,3,  // @ A-Z [ \ ] ^ _
    3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,3,3,3,3,3,  // ` a-z { | } ~ DEL
};

// Unicode punctuation that is common in web text: Latin-1 punctuation/symbols (U+00A0-U+00BF, incl.
// no-break space, guillemets, degree), x and / signs, General Punctuation (dashes, curly quotes,
// ellipsis, U+2000-U+206F), and CJK symbols and punctuation (U+3000-U+303F).
static inline int utf8_is_punct(uint32_t cp) {
    return (cp >= 0xA0 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x206F) ||
           (cp >= 0x3000 && cp <= 0x303F);
}

// Class of the character at s[i] and its length in bytes (1 for a byte of invalid UTF-8).
static inline int pt_class(const unsigned char *s, size_t n, size_t i, size_t *len) {
    unsigned char c = s[i];
    *len = 1;
    if (c < 0x80) { return pt_ascii_class[c]; }
    size_t k; uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) { k = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { k = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { k = 4; cp = c & 0x07; min = 0x10000; }
    else { return PT_LETTER; }
    if (i + k > n) { return PT_LETTER; }
    for (size_t j = 1; j < k; j++) {
        if ((s[i + j] & 0xC0) != 0x80) { return PT_LETTER; }
        cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { return PT_LETTER; }
    *len = k;
    return utf8_is_punct(cp) ? PT_PUNCT : PT_LETTER;
}

// 's 't 'm 'd 're 've 'll (any case) right after an apostrophe: the length of the suffix, else 0.
static inline size_t pt_contraction(const unsigned char *s, size_t n, size_t i) {
    if (i >= n) { return 0; }
    int a = s[i] | 0x20, b = i + 1 < n ? (s[i + 1] | 0x20) : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') { return 1; }
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) { return 2; }
    return 0;
}

// End (exclusive) of the pre-token that starts at s[i], i < n. Rules, first match wins:
//   1. an apostrophe starting a contraction: "'s", "'ll", ...
//   2. an optional single ' ' then: a run of letters, or 1-3 digits, or a run of punctuation
//   3. a run of whitespace; if it is followed by a non-space and ends in ' ', that last ' ' is left to
//      start the next pre-token (rule 2)
// Runs stop at PRETOKEN_MAX_BYTES bytes, on a character boundary.
static inline size_t pretoken_end(const unsigned char *s, size_t n, size_t i) {
    size_t len, j = i;
    if (s[i] == '\'') {
        size_t c = pt_contraction(s, n, i + 1);
        if (c) { return i + 1 + c; }
    }
    if (s[i] == ' ' && i + 1 < n && pt_class(s, n, i + 1, &len) != PT_SPACE) { j = i + 1; }
    int cls = pt_class(s, n, j, &len);
    size_t limit = i + PRETOKEN_MAX_BYTES < n ? i + PRETOKEN_MAX_BYTES : n;
    if (cls == PT_DIGIT) {
        size_t e = j;
        while (e < limit && e < j + 3 && s[e] >= '0' && s[e] <= '9') { e++; }
        return e;
    }
    size_t e = j + len;  // the first character is always taken, even at the cap, so progress is made
    while (e < limit) {
        size_t l;
        if (pt_class(s, n, e, &l) != cls || e + l > limit) { break; }
        e += l;
    }
    if (cls == PT_SPACE && e < n && e < limit && e - i >= 2 && s[e - 1] == ' ') { return e - 1; }
    return e;
}

// ----------------------------------------------------------------------------
// The tokenizer

typedef struct {
    uint32_t vocab_size, num_merges, num_special, eot;
    uint32_t *merges;          // 2 * num_merges: (left, right) of merge r
    uint32_t *tok_off;         // vocab_size + 1: token t is tok_bytes[tok_off[t] .. tok_off[t+1])
    unsigned char *tok_bytes;
    uint64_t *map_keys;        // open-addressing map (left << 32 | right) -> merge rank; empty = UINT64_MAX
    uint32_t *map_ranks;
    uint64_t map_mask;
} Tokenizer;

static inline uint64_t tok_pair_key(uint32_t a, uint32_t b) { return ((uint64_t)a << 32) | b; }
static inline uint64_t tok_hash64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

// Rank of merge (a, b), or UINT32_MAX if the pair is not a merge.
static inline uint32_t tokenizer_merge_rank(const Tokenizer *t, uint32_t a, uint32_t b) {
    uint64_t key = tok_pair_key(a, b);
    for (uint64_t h = tok_hash64(key) & t->map_mask;; h = (h + 1) & t->map_mask) {
        if (t->map_keys[h] == key) { return t->map_ranks[h]; }
        if (t->map_keys[h] == UINT64_MAX) { return UINT32_MAX; }
    }
}

// Builds a tokenizer from merges (copied) and special-token names; `where` names the source in errors.
// The first special token must be <|endoftext|>.
static inline void tokenizer_build(Tokenizer *t, const uint32_t *merges, uint32_t num_merges,
                                   const char *const *specials, const uint32_t *special_lens,
                                   uint32_t num_special, const char *where) {
    if (num_special < 1 || special_lens[0] != strlen(TOKENIZER_EOT_NAME) ||
        memcmp(specials[0], TOKENIZER_EOT_NAME, special_lens[0]) != 0) {
        die("tokenizer '%s': the first special token must be %s", where, TOKENIZER_EOT_NAME);
    }
    memset(t, 0, sizeof(*t));
    t->num_merges = num_merges;
    t->num_special = num_special;
    t->vocab_size = 256 + num_merges + num_special;
    t->eot = 256 + num_merges;
    t->merges = (uint32_t *)malloc_check(2 * (size_t)num_merges * sizeof(uint32_t));
    memcpy(t->merges, merges, 2 * (size_t)num_merges * sizeof(uint32_t));
    uint64_t cap = 1024;
    while (cap < 2 * (uint64_t)num_merges) { cap *= 2; }
    t->map_mask = cap - 1;
    t->map_keys = (uint64_t *)malloc_check(cap * sizeof(uint64_t));
    t->map_ranks = (uint32_t *)malloc_check(cap * sizeof(uint32_t));
    memset(t->map_keys, 0xFF, cap * sizeof(uint64_t));
    // token byte strings: a merge's bytes are its two parts' bytes, which come earlier
    t->tok_off = (uint32_t *)malloc_check(((size_t)t->vocab_size + 1) * sizeof(uint32_t));
    uint64_t total = 256;
    uint64_t *lens = (uint64_t *)malloc_check((size_t)t->vocab_size * sizeof(uint64_t));
    for (uint32_t i = 0; i < 256; i++) { lens[i] = 1; }
    for (uint32_t r = 0; r < num_merges; r++) {
        uint32_t a = merges[2 * r], b = merges[2 * r + 1];
        if (a >= 256 + r || b >= 256 + r) {
            die("tokenizer '%s': merge %u = (%u, %u) uses a token that does not exist yet (ids must be < %u)",
                where, r, a, b, 256 + r);
        }
        uint64_t key = tok_pair_key(a, b), h = tok_hash64(key) & t->map_mask;
        while (t->map_keys[h] != UINT64_MAX && t->map_keys[h] != key) { h = (h + 1) & t->map_mask; }
        if (t->map_keys[h] == key) { die("tokenizer '%s': merge %u = (%u, %u) duplicates merge %u", where, r, a, b, t->map_ranks[h]); }
        t->map_keys[h] = key; t->map_ranks[h] = r;
        lens[256 + r] = lens[a] + lens[b];  // both <= total <= UINT32_MAX: no wrap
        total += lens[256 + r];
        if (total > UINT32_MAX) { die("tokenizer '%s': token strings total more than %u bytes by merge %u, too long", where, UINT32_MAX, r); }
    }
    for (uint32_t s = 0; s < num_special; s++) {
        if (special_lens[s] < 1 || special_lens[s] > TOKENIZER_MAX_SPECIAL_LEN) {
            die("tokenizer '%s': special token %u has length %u (must be 1..%d)", where, s, special_lens[s], TOKENIZER_MAX_SPECIAL_LEN);
        }
        lens[t->eot + s] = special_lens[s];
        total += special_lens[s];
    }
    if (total > UINT32_MAX) { die("tokenizer '%s': token strings total %llu bytes, too long", where, (unsigned long long)total); }
    t->tok_bytes = (unsigned char *)malloc_check(total);
    uint32_t off = 0;
    for (uint32_t id = 0; id < t->vocab_size; id++) {
        t->tok_off[id] = off;
        if (id < 256) { t->tok_bytes[off] = (unsigned char)id; }
        else if (id < t->eot) {
            uint32_t a = merges[2 * (id - 256)], b = merges[2 * (id - 256) + 1];
            memcpy(t->tok_bytes + off, t->tok_bytes + t->tok_off[a], lens[a]);
            memcpy(t->tok_bytes + off + lens[a], t->tok_bytes + t->tok_off[b], lens[b]);
        } else { memcpy(t->tok_bytes + off, specials[id - t->eot], lens[id]); }
        off += (uint32_t)lens[id];
    }
    t->tok_off[t->vocab_size] = off;
    free(lens);
}

static inline void tokenizer_free(Tokenizer *t) {
    free(t->merges); free(t->tok_off); free(t->tok_bytes); free(t->map_keys); free(t->map_ranks);
    memset(t, 0, sizeof(*t));
}

static inline uint32_t tokenizer_eot(const Tokenizer *t) { return t->eot; }

static inline const unsigned char *tokenizer_token_bytes(const Tokenizer *t, uint32_t id, size_t *len) {
    if (id >= t->vocab_size) { die("token id %u is out of range (vocab size %u)", id, t->vocab_size); }
    *len = t->tok_off[id + 1] - t->tok_off[id];
    return t->tok_bytes + t->tok_off[id];
}

static inline void tokenizer_save(const Tokenizer *t, const char *path) {
    uint32_t header[TOKENIZER_HEADER_BYTES / 4] = {0};
    header[0] = TOKENIZER_MAGIC; header[1] = TOKENIZER_VERSION; header[2] = t->vocab_size;
    header[3] = t->num_merges; header[4] = t->num_special; header[5] = t->eot; header[6] = TOKENIZER_PRETOKENIZER;
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, header, sizeof(header), 1);
    atomic_write(&af, t->merges, sizeof(uint32_t), 2 * (size_t)t->num_merges);
    for (uint32_t s = 0; s < t->num_special; s++) {
        size_t len;
        const unsigned char *name = tokenizer_token_bytes(t, t->eot + s, &len);
        uint32_t len32 = (uint32_t)len;
        atomic_write(&af, &len32, sizeof(len32), 1);
        atomic_write(&af, name, 1, len);
    }
    atomic_close(&af);
}

// Loads a tokenizer file; dies with one line naming the file and the problem if it is malformed.
static inline int tokenizer_load(Tokenizer *t, const char *path) {
    FILE *f = fopen_check(path, "rb");
    long long size = file_size_check(f, path);
    if (size < TOKENIZER_HEADER_BYTES) { die("tokenizer '%s' is truncated: %lld bytes, smaller than the %d-byte header", path, size, TOKENIZER_HEADER_BYTES); }
    uint32_t h[TOKENIZER_HEADER_BYTES / 4];
    fread_check(h, sizeof(h), 1, f, path);
    if (h[0] != TOKENIZER_MAGIC) { die("tokenizer '%s' has bad magic 0x%08X (expected 0x%08X): not a moba.c tokenizer file", path, h[0], TOKENIZER_MAGIC); }
    if (h[1] != TOKENIZER_VERSION) { die("tokenizer '%s' has version %u; this build reads version %u", path, h[1], TOKENIZER_VERSION); }
    if (h[6] != TOKENIZER_PRETOKENIZER) { die("tokenizer '%s' uses pre-tokenizer %u; this build has pre-tokenizer %u", path, h[6], TOKENIZER_PRETOKENIZER); }
    uint32_t num_merges = h[3], num_special = h[4];
    if ((uint64_t)256 + num_merges + num_special != h[2]) {
        die("tokenizer '%s': vocab_size %u != 256 + num_merges %u + num_special %u", path, h[2], num_merges, num_special);
    }
    if (num_special < 1 || h[5] != 256 + num_merges) { die("tokenizer '%s': eot id %u must be the first special token, id %u", path, h[5], 256 + num_merges); }
    if ((long long)8 * num_merges + 5LL * num_special > size - TOKENIZER_HEADER_BYTES) {  // a special token takes >= 5 bytes
        die("tokenizer '%s' is truncated: header says %u merges and %u special tokens but the file has %lld bytes", path, num_merges, num_special, size);
    }
    uint32_t *merges = (uint32_t *)malloc_check(2 * (size_t)num_merges * sizeof(uint32_t));
    fread_check(merges, sizeof(uint32_t), 2 * (size_t)num_merges, f, path);
    char **names = (char **)malloc_check(num_special * sizeof(char *));
    uint32_t *lens = (uint32_t *)malloc_check(num_special * sizeof(uint32_t));
    long long pos = TOKENIZER_HEADER_BYTES + 8LL * num_merges;
    for (uint32_t s = 0; s < num_special; s++) {
        if (pos + 4 > size) { die("tokenizer '%s' is truncated: special token %u of %u is missing", path, s, num_special); }
        fread_check(&lens[s], sizeof(uint32_t), 1, f, path);
        if (lens[s] < 1 || lens[s] > TOKENIZER_MAX_SPECIAL_LEN) { die("tokenizer '%s': special token %u has length %u (must be 1..%d)", path, s, lens[s], TOKENIZER_MAX_SPECIAL_LEN); }
        if (pos + 4 + lens[s] > size) { die("tokenizer '%s' is truncated inside special token %u", path, s); }
        names[s] = (char *)malloc_check(lens[s]);
        fread_check(names[s], 1, lens[s], f, path);
        pos += 4 + lens[s];
    }
    if (pos != size) { die("tokenizer '%s' has %lld bytes after the last special token (expected end of file)", path, size - pos); }
    fclose(f);
    tokenizer_build(t, merges, num_merges, (const char *const *)names, lens, num_special, path);
    for (uint32_t s = 0; s < num_special; s++) { free(names[s]); }
    free(names); free(lens); free(merges);
    return 0;
}

// ----------------------------------------------------------------------------
// Encoding

// BPE of one pre-token (n <= PRETOKEN_MAX_BYTES): writes its tokens to out, returns how many.
static inline size_t tokenizer_bpe_word(const Tokenizer *t, const unsigned char *w, size_t n, uint32_t *out) {
    uint32_t rank[PRETOKEN_MAX_BYTES];  // rank[i]: merge rank of (out[i], out[i+1])
    for (size_t i = 0; i < n; i++) { out[i] = w[i]; }
    for (size_t i = 0; i + 1 < n; i++) { rank[i] = tokenizer_merge_rank(t, out[i], out[i + 1]); }
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++) { if (rank[i] < rank[best]) { best = i; } }
        if (rank[best] == UINT32_MAX) { break; }
        out[best] = 256 + rank[best];
        memmove(out + best + 1, out + best + 2, (n - best - 2) * sizeof(uint32_t));
        memmove(rank + best, rank + best + 1, (n - best - 2) * sizeof(uint32_t));
        n--;
        if (best > 0) { rank[best - 1] = tokenizer_merge_rank(t, out[best - 1], out[best]); }
        if (best + 1 < n) { rank[best] = tokenizer_merge_rank(t, out[best], out[best + 1]); }
    }
    return n;
}

// Direct-mapped cache pre-token -> tokens for short pre-tokens; one per thread (not shared).
#define TOKCACHE_KEY 22
#define TOKCACHE_TOKS 11
#define TOKCACHE_BITS 16
typedef struct {
    uint8_t len, ntok;
    unsigned char key[TOKCACHE_KEY];
    uint32_t tok[TOKCACHE_TOKS];
} TokenCacheEntry;
typedef struct { TokenCacheEntry e[1 << TOKCACHE_BITS]; } TokenCache;

static inline TokenCache *token_cache_new(void) { return (TokenCache *)calloc_check(1, sizeof(TokenCache)); }

static inline uint64_t tok_hash_bytes(const unsigned char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { uint64_t x; memcpy(&x, s + i, 8); h = (h ^ x) * 0x100000001B3ULL; h ^= h >> 29; }
    uint64_t x = 0;
    memcpy(&x, s + i, n - i);
    return tok_hash64(h ^ x);
}

// Encodes n bytes into token ids. Writes at most cap ids to out and returns the number the whole text
// needs (never more than n), so cap = n always suffices; a return above cap means out was too small.
// cache may be NULL. Never emits special tokens: text that spells "<|endoftext|>" is encoded as bytes.
static inline size_t tokenizer_encode_cached(const Tokenizer *t, TokenCache *cache, const unsigned char *s,
                                             size_t n, uint32_t *out, size_t cap) {
    size_t count = 0;
    uint32_t buf[PRETOKEN_MAX_BYTES];
    for (size_t i = 0; i < n;) {
        size_t e = pretoken_end(s, n, i), wn = e - i, m;
        const uint32_t *toks = buf;
        TokenCacheEntry *ce = NULL;
        if (cache && wn <= TOKCACHE_KEY) {
            ce = &cache->e[tok_hash_bytes(s + i, wn) & ((1u << TOKCACHE_BITS) - 1)];
            if (ce->len == wn && memcmp(ce->key, s + i, wn) == 0) { toks = ce->tok; m = ce->ntok; goto emit; }
        }
        m = tokenizer_bpe_word(t, s + i, wn, buf);
        if (ce && m <= TOKCACHE_TOKS) {
            ce->len = (uint8_t)wn; ce->ntok = (uint8_t)m;
            memcpy(ce->key, s + i, wn); memcpy(ce->tok, buf, m * sizeof(uint32_t));
        }
    emit:
        for (size_t k = 0; k < m; k++, count++) { if (count < cap) { out[count] = toks[k]; } }
        i = e;
    }
    return count;
}

static inline size_t tokenizer_encode(const Tokenizer *t, const unsigned char *bytes, size_t n, uint32_t *out, size_t cap) {
    return tokenizer_encode_cached(t, NULL, bytes, n, out, cap);
}

// Decodes ids into bytes: writes at most cap bytes, returns the number the whole decoding needs.
// Dies on an id >= vocab_size.
static inline size_t tokenizer_decode(const Tokenizer *t, const uint32_t *ids, size_t n, unsigned char *out, size_t cap) {
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const unsigned char *b = tokenizer_token_bytes(t, ids[i], &len);
        if (count + len <= cap) { memcpy(out + count, b, len); }
        else if (count < cap) { memcpy(out + count, b, cap - count); }
        count += len;
    }
    return count;
}

#endif // LLMC_TOKENIZER_H
