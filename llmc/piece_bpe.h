/*
 The parts the SentencePiece (llmc/sentencepiece.h) and Hugging Face (llmc/hf_tokenizer.h) readers
 share: a vocabulary of byte-string pieces with a hash map piece -> id, BPE by priority queue, where text
 can be cut into words that encode independently (JoinedPairs), and the per-thread word cache around
 the BPE of one word (encode_word_cached).

 BPE here starts from a word cut into symbols (spans of the word, each with a token id), and repeatedly
 merges the adjacent pair of best priority (smallest key) until no adjacent pair can merge. Equal
 priorities merge left to right (smaller left position first). Both reference implementations work this
 way; they differ only in what a pair's priority is, which BpeRules says:
   - SentencePiece: a pair can merge iff the concatenated string is a piece; priority = higher score.
   - Hugging Face: a pair can merge iff (left id, right id) is in the merges list; priority = its rank.
 A heap of candidate pairs with lazy deletion (a popped pair is skipped if either side has changed
 since it was pushed) makes one word O(n log n), so long runs without spaces (CJK text) stay cheap.
*/
#ifndef LLMC_PIECE_BPE_H
#define LLMC_PIECE_BPE_H

#include <stdint.h>
#include "unicode.h"  // utf8_valid_len
#include "tokenizer.h"

// ----------------------------------------------------------------------------
// Pieces: piece i is bytes[off[i] .. off[i+1]); find() maps a byte string to its id.

typedef struct {
    uint32_t n;
    uint32_t *off;
    unsigned char *bytes;
    uint32_t *slots;       // open addressing, piece id or UINT32_MAX
    uint64_t mask;
} PieceTable;

static inline const unsigned char *piece_bytes(const PieceTable *pt, uint32_t id, size_t *len) {
    *len = pt->off[id + 1] - pt->off[id];
    return pt->bytes + pt->off[id];
}

// Id of the piece s[0..n), or UINT32_MAX.
static inline uint32_t piece_find(const PieceTable *pt, const unsigned char *s, size_t n) {
    for (uint64_t h = tok_hash_bytes(s, n) & pt->mask;; h = (h + 1) & pt->mask) {
        uint32_t id = pt->slots[h];
        if (id == UINT32_MAX) { return UINT32_MAX; }
        if (pt->off[id + 1] - pt->off[id] == n && memcmp(pt->bytes + pt->off[id], s, n) == 0) { return id; }
    }
}

// Builds the table from n strings (copied). in_map[i] == 0 keeps piece i out of the map (it still has
// bytes); in_map may be NULL (all in). Dies naming `where` on a duplicate mapped string.
static inline void piece_table_build(PieceTable *pt, uint32_t n, const unsigned char *const *strs, const uint32_t *lens,
                                     const unsigned char *in_map, const char *where) {
    memset(pt, 0, sizeof(*pt));
    pt->n = n;
    pt->off = (uint32_t *)malloc_check(((size_t)n + 1) * sizeof(uint32_t));
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; i++) { total += lens[i]; }
    if (total > UINT32_MAX) { die("%s: the pieces total %llu bytes, too many", where, (unsigned long long)total); }
    pt->bytes = (unsigned char *)malloc_check((size_t)total);
    uint32_t at = 0;
    for (uint32_t i = 0; i < n; i++) { pt->off[i] = at; memcpy(pt->bytes + at, strs[i], lens[i]); at += lens[i]; }
    pt->off[n] = at;
    uint64_t cap = 1024;
    while (cap < 2 * (uint64_t)n) { cap *= 2; }
    pt->mask = cap - 1;
    pt->slots = (uint32_t *)malloc_check(cap * sizeof(uint32_t));
    memset(pt->slots, 0xFF, cap * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++) {
        if (in_map && !in_map[i]) { continue; }
        uint64_t h = tok_hash_bytes(strs[i], lens[i]) & pt->mask;
        for (; pt->slots[h] != UINT32_MAX; h = (h + 1) & pt->mask) {
            uint32_t j = pt->slots[h];
            if (lens[j] == lens[i] && memcmp(strs[j], strs[i], lens[i]) == 0) {
                die("%s: piece %u '%.*s' duplicates piece %u", where, i, (int)lens[i], (const char *)strs[i], j);
            }
        }
        pt->slots[h] = i;
    }
}

static inline void piece_table_free(PieceTable *pt) {
    free(pt->off); free(pt->bytes); free(pt->slots);
    memset(pt, 0, sizeof(*pt));
}

// <0xNN> -> NN, or -1.
static inline int piece_byte_value(const unsigned char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') { return -1; }
    int v = 0;
    for (int k = 3; k < 5; k++) {
        int c = s[k], d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) { return -1; }
        v = 16 * v + d;
    }
    return v;
}

// ----------------------------------------------------------------------------
// Merge rules

// A Hugging Face merge in an open-addressing table: key = left << 32 | right (UINT64_MAX: empty slot).
typedef struct { uint64_t key; uint32_t rank, result; } MergeSlot;

typedef struct {
    const PieceTable *pieces;
    const float *scores;             // SentencePiece: score per piece (merges == NULL)
    const unsigned char *mergeable;  // SentencePiece: may piece i result from a merge (NORMAL, USER_DEFINED)
    const MergeSlot *merges;         // Hugging Face: the merges (NULL for SentencePiece)
    uint64_t merge_mask;
} BpeRules;

// A symbol: the span word[start .. start+len), token id (UINT32_MAX: not a piece), neighbours, and
// frozen (never merges: a user-defined piece matched whole).
typedef struct { uint32_t start, len, id; int32_t prev, next; uint8_t frozen; } BpeSym;
typedef struct { uint64_t key; uint32_t right, size, result; } BpeCand;  // key = priority << 32 | left

// Hugging Face merge (a, b): its rank and result id, or 0 if (a, b) is not a merge.
static inline int bpe_merge_lookup(const BpeRules *r, uint32_t a, uint32_t b, uint32_t *rank, uint32_t *result) {
    uint64_t key = tok_pair_key(a, b);
    for (uint64_t h = tok_hash64(key) & r->merge_mask;; h = (h + 1) & r->merge_mask) {
        const MergeSlot *m = &r->merges[h];
        if (m->key == key) { *rank = m->rank; *result = m->result; return 1; }
        if (m->key == UINT64_MAX) { return 0; }
    }
}

// Larger float -> smaller uint32 (an order-reversing map of the IEEE bits).
static inline uint32_t bpe_score_priority(float s) {
    uint32_t u;
    memcpy(&u, &s, 4);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}

// Pushes the candidate (left, right) if the pair can merge.
static inline void bpe_consider(const BpeRules *r, const unsigned char *word, BpeSym *sym, int32_t left, int32_t right,
                                BpeCand *heap, size_t *nheap) {
    if (left < 0 || right < 0 || sym[left].frozen || sym[right].frozen) { return; }
    uint32_t prio, result, size = sym[left].len + sym[right].len;
    if (r->merges) {
        if (sym[left].id == UINT32_MAX || sym[right].id == UINT32_MAX) { return; }
        if (!bpe_merge_lookup(r, sym[left].id, sym[right].id, &prio, &result)) { return; }
    } else {
        result = piece_find(r->pieces, word + sym[left].start, size);
        if (result == UINT32_MAX || !r->mergeable[result]) { return; }
        prio = bpe_score_priority(r->scores[result]);
    }
    BpeCand c = {((uint64_t)prio << 32) | (uint32_t)left, (uint32_t)right, size, result};
    size_t i = (*nheap)++;  // sift up
    while (i > 0 && heap[(i - 1) / 2].key > c.key) { heap[i] = heap[(i - 1) / 2]; i = (i - 1) / 2; }
    heap[i] = c;
}

static inline BpeCand bpe_pop(BpeCand *heap, size_t *nheap) {
    BpeCand top = heap[0], last = heap[--*nheap];
    size_t i = 0, n = *nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) { break; }
        if (c + 1 < n && heap[c + 1].key < heap[c].key) { c++; }
        if (heap[c].key >= last.key) { break; }
        heap[i] = heap[c]; i = c;
    }
    if (n > 0) { heap[i] = last; }
    return top;
}

// Runs BPE over the nsym symbols (linked in order, sym[i].prev = i-1, next = i+1, -1 at the ends).
// Returns the index of the first remaining symbol (-1 if none); follow .next. heap needs room for
// 3 * nsym entries (nsym - 1 initial pairs, then at most two per merge).
static inline int32_t bpe_merge_symbols(const BpeRules *r, const unsigned char *word, BpeSym *sym, size_t nsym, BpeCand *heap) {
    size_t nheap = 0;
    for (size_t i = 0; i + 1 < nsym; i++) { bpe_consider(r, word, sym, (int32_t)i, (int32_t)i + 1, heap, &nheap); }
    while (nheap > 0) {
        BpeCand c = bpe_pop(heap, &nheap);
        int32_t left = (int32_t)(uint32_t)c.key, right = (int32_t)c.right;
        if (sym[left].len == 0 || sym[right].len == 0 || sym[left].len + sym[right].len != c.size) { continue; }  // stale
        sym[left].len = c.size;
        sym[left].id = c.result;
        sym[left].next = sym[right].next;
        if (sym[right].next >= 0) { sym[sym[right].next].prev = left; }
        sym[right].len = 0;
        bpe_consider(r, word, sym, sym[left].prev, left, heap, &nheap);
        bpe_consider(r, word, sym, left, sym[left].next, heap, &nheap);
    }
    return nsym ? 0 : -1;
}

// Growable per-call scratch for the symbols and the heap of one word.
typedef struct {
    BpeSym *sym; BpeCand *heap; size_t cap;
    uint32_t *toks; size_t toks_cap;   // a word's tokens when the caller's buffer has no room left
} BpeScratch;

static inline void bpe_scratch_free(BpeScratch *b) { free(b->sym); free(b->heap); free(b->toks); memset(b, 0, sizeof(*b)); }

static inline void bpe_scratch_reserve(BpeScratch *b, size_t nsym) {
    if (nsym <= b->cap) { return; }
    free(b->sym); free(b->heap);
    b->cap = nsym < 256 ? 256 : 2 * nsym;
    b->sym = (BpeSym *)malloc_check(b->cap * sizeof(BpeSym));
    b->heap = (BpeCand *)malloc_check(3 * b->cap * sizeof(BpeCand));
}

// ----------------------------------------------------------------------------
// Where text can be cut into words that BPE may encode one at a time (with a cache): between two
// characters that are adjacent inside no mergeable piece. No merge can then join the two sides, and
// merges on one side never change the candidates on the other, so encoding the words one by one gives
// exactly the tokens of encoding the whole text. Pairs of ASCII characters live in a bitmap, the rest
// in a hash set of (code point << 21 | code point).

typedef struct {
    uint64_t ascii[128 * 128 / 64];
    uint64_t *keys;      // open addressing; empty = UINT64_MAX
    uint64_t mask;
} JoinedPairs;

// The code point of the UTF-8 character at s[i] and its length; a byte that is not valid UTF-8 is
// one character 0x110000 + byte, which no piece holds.
static inline uint32_t piece_char(const unsigned char *s, size_t n, size_t i, size_t *len) {
    unsigned char c = s[i];
    if (c < 0x80) { *len = 1; return c; }
    int k = utf8_valid_len(s, n, i);
    if (k == 0) { *len = 1; return 0x110000u + c; }
    uint32_t cp = (uint32_t)(c & (0x7F >> k));
    for (int j = 1; j < k; j++) { cp = (cp << 6) | (s[i + j] & 0x3F); }
    *len = (size_t)k;
    return cp;
}

static inline int joined_has(const JoinedPairs *jp, uint32_t a, uint32_t b) {
    if (a < 128 && b < 128) { uint32_t bit = a * 128 + b; return (int)((jp->ascii[bit / 64] >> (bit % 64)) & 1); }
    uint64_t key = ((uint64_t)a << 21) | b;
    for (uint64_t h = tok_hash64(key) & jp->mask;; h = (h + 1) & jp->mask) {
        if (jp->keys[h] == key) { return 1; }
        if (jp->keys[h] == UINT64_MAX) { return 0; }
    }
}

// Collects the adjacent character pairs of every piece with mergeable[id] set.
static inline void joined_build(JoinedPairs *jp, const PieceTable *pt, const unsigned char *mergeable) {
    memset(jp, 0, sizeof(*jp));
    uint64_t cap = 1024;
    while (cap < 2 * (uint64_t)pt->off[pt->n]) { cap *= 2; }  // at most one pair per byte
    jp->mask = cap - 1;
    jp->keys = (uint64_t *)malloc_check(cap * sizeof(uint64_t));
    memset(jp->keys, 0xFF, cap * sizeof(uint64_t));
    for (uint32_t id = 0; id < pt->n; id++) {
        if (!mergeable[id]) { continue; }
        size_t n, l;
        const unsigned char *s = piece_bytes(pt, id, &n);
        uint32_t prev = UINT32_MAX;
        for (size_t i = 0; i < n; i += l) {
            uint32_t cp = piece_char(s, n, i, &l);
            if (prev != UINT32_MAX && !joined_has(jp, prev, cp)) {
                if (prev < 128 && cp < 128) { uint32_t bit = prev * 128 + cp; jp->ascii[bit / 64] |= 1ull << (bit % 64); }
                else {
                    uint64_t key = ((uint64_t)prev << 21) | cp, h = tok_hash64(key) & jp->mask;
                    while (jp->keys[h] != UINT64_MAX) { h = (h + 1) & jp->mask; }
                    jp->keys[h] = key;
                }
            }
            prev = cp;
        }
    }
}

// End of the word that starts at s[i]: the first cut after i, or n.
static inline size_t joined_word_end(const JoinedPairs *jp, const unsigned char *s, size_t n, size_t i) {
    size_t l;
    uint32_t prev = piece_char(s, n, i, &l);
    for (size_t e = i + l; e < n; e += l) {
        uint32_t cp = piece_char(s, n, e, &l);
        if (!joined_has(jp, prev, cp)) { return e; }
        prev = cp;
    }
    return n;
}

static inline void joined_free(JoinedPairs *jp) { free(jp->keys); memset(jp, 0, sizeof(*jp)); }

// Appends k tokens to out[*count..], keeping only what fits below cap (the count always advances).
static inline void emit_tokens(uint32_t *out, size_t cap, size_t *count, const uint32_t *toks, size_t k) {
    for (size_t j = 0; j < k; j++, (*count)++) { if (*count < cap) { out[*count] = toks[j]; } }
}

// Encodes one word of a tokenizer into out (room for wn tokens, the most a word gives); returns how many.
typedef size_t (*WordEncoder)(const void *tokenizer, BpeScratch *b, const unsigned char *w, size_t wn, uint32_t *out);

// Appends the tokens of the word w[0..wn) to out[*count..] (cap as in emit_tokens): from the per-thread
// cache (may be NULL) when it holds the word, else from encode_word, whose short results are cached.
// A word of one character skips the cache: encoding it is cheaper than a probe that misses the CPU cache.
static inline void encode_word_cached(WordEncoder encode_word, const void *tokenizer, TokenCache *cache, BpeScratch *b,
                                      const unsigned char *w, size_t wn, uint32_t *out, size_t cap, size_t *count) {
    TokenCacheEntry *ce = NULL;
    size_t first_len;
    piece_char(w, wn, 0, &first_len);
    if (cache && wn <= TOKCACHE_KEY && wn > first_len) {
        ce = &cache->e[tok_hash_bytes(w, wn) & ((1u << TOKCACHE_BITS) - 1)];
        if (ce->len == wn && memcmp(ce->key, w, wn) == 0) { emit_tokens(out, cap, count, ce->tok, ce->ntok); return; }
    }
    int direct = *count <= cap && cap - *count >= wn;
    if (!direct && b->toks_cap < wn) {
        free(b->toks);
        b->toks_cap = 2 * wn;
        b->toks = (uint32_t *)malloc_check(b->toks_cap * sizeof(uint32_t));
    }
    uint32_t *dst = direct ? out + *count : b->toks;
    size_t k = encode_word(tokenizer, b, w, wn, dst);
    if (ce && k <= TOKCACHE_TOKS) {
        ce->len = (uint8_t)wn; ce->ntok = (uint8_t)k;
        memcpy(ce->key, w, wn); memcpy(ce->tok, dst, k * sizeof(uint32_t));
    }
    if (direct) { *count += k; } else { emit_tokens(out, cap, count, dst, k); }
}

#endif // LLMC_PIECE_BPE_H
