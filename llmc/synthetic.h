/*
 The built-in synthetic corpus, so the main job trains offline: a learnable "language" with planted
 key -> value facts that are recalled later in the same document. Dense attention can answer a recall
 by looking back to the fact; attention that cannot see that far back (a local window shorter than the
 distance) can only guess, so recall accuracy separates the attention variants.

 Vocabulary (V >= 256; V <= 65536 for the 2-byte shards written here):
   0 SYN_EOT (end of document), 1 SYN_STORE, 2 SYN_RECALL,
   keys   [3, 3 + V/16),  values [3 + V/16, 3 + V/8),  words: the rest.
 Text: a first-order Markov chain over the words. Word w has 3 successors drawn from a Zipf(1)
 distribution over words (word 0 most frequent); the next word is successor 0, 1, 2 with probability
 0.60, 0.25, 0.10, else (0.05) a fresh Zipf draw. So frequencies are Zipf-like and the next word is
 well predicted by the current one (bigram structure a small model picks up quickly). The chain (the
 "language") depends only on V, never on the seed: train and val text come from the same language.
 Documents: length uniform in [256, 3072] text positions, then SYN_EOT. Each holds 4..12 facts with
 distinct keys and uniform random values; fact i appears as "STORE k v" at a random position and as
 "RECALL k v" d text positions later (d log-uniform in [16, 1536), capped at length - 16), so the token
 distance is d plus 3 per fact in between. Facts are inserted into the running text and the chain
 resumes after them. Only the value after "RECALL k" is unpredictable from local context.
 Training windows are T-token chunks not aligned to documents, so a recall whose STORE lies before the
 window start cannot be answered: measured on 20M tokens, 39% / 54% / 70% / 85% of the values scored by
 synthetic_is_recall_value are answerable at T = 256 / 512 / 1024 / 2048 (the ceiling on recall accuracy
 beyond chance, 16/V). 72% of recalls are over 64 tokens back, 40% over 256, 23% over 512.
 Speed: about one Rng draw per token; 24-47 M tokens/s (48-95 MB/s of 2-byte tokens) on one core of
 the 2-core CI box, depending on load.
*/
#ifndef LLMC_SYNTHETIC_H
#define LLMC_SYNTHETIC_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include "utils.h"
#include "rng.h"
#include "shard.h"

#define SYN_EOT 0
#define SYN_STORE 1
#define SYN_RECALL 2
#define SYN_LANGUAGE_SEED 0x6D6F62612E63ull  // fixes the word chain for a given vocab size
#define SYN_SUCC 3
#define SYN_MAX_FACTS 12

typedef struct {
    uint32_t key_base, num_keys, value_base, num_values, word_base, num_words;
    uint32_t *succ;      // num_words x SYN_SUCC successor words
    uint64_t *zipf_cdf;  // num_words; cumulative Zipf weights scaled to 2^32 (last entry = 2^32)
    uint32_t *key_perm;  // scratch for drawing distinct keys
} SynLanguage;

typedef struct { uint64_t pos; uint32_t kind, key, value; } SynEvent;

static inline uint32_t syn_zipf(const SynLanguage *L, Rng *r) {
    uint64_t u = rng_u32(r);
    uint32_t lo = 0, hi = L->num_words - 1;  // first index with u < cdf[index]
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (u < L->zipf_cdf[mid]) { hi = mid; } else { lo = mid + 1; }
    }
    return lo;
}

static inline void syn_language_init(SynLanguage *L, uint32_t vocab_size) {
    if (vocab_size < 256) { die("synthetic corpus needs vocab_size >= 256 (got %u)", vocab_size); }
    L->num_keys = L->num_values = vocab_size / 16;
    L->key_base = 3;
    L->value_base = L->key_base + L->num_keys;
    L->word_base = L->value_base + L->num_values;
    L->num_words = vocab_size - L->word_base;
    L->zipf_cdf = (uint64_t *)malloc_check(L->num_words * sizeof(uint64_t));
    double total = 0.0;
    for (uint32_t w = 0; w < L->num_words; w++) { total += 1.0 / (w + 1.0); }
    double cum = 0.0;
    for (uint32_t w = 0; w < L->num_words; w++) {
        cum += 1.0 / (w + 1.0);
        L->zipf_cdf[w] = (uint64_t)(cum / total * 4294967296.0);
    }
    L->zipf_cdf[L->num_words - 1] = 4294967296ull;
    Rng r;
    rng_init(&r, SYN_LANGUAGE_SEED);
    L->succ = (uint32_t *)malloc_check((size_t)L->num_words * SYN_SUCC * sizeof(uint32_t));
    for (size_t i = 0; i < (size_t)L->num_words * SYN_SUCC; i++) { L->succ[i] = syn_zipf(L, &r); }
    L->key_perm = (uint32_t *)malloc_check(L->num_keys * sizeof(uint32_t));
    for (uint32_t k = 0; k < L->num_keys; k++) { L->key_perm[k] = k; }
}

static inline void syn_language_free(SynLanguage *L) {
    free(L->succ);
    free(L->zipf_cdf);
    free(L->key_perm);
}

static inline uint32_t syn_next_word(const SynLanguage *L, Rng *r, uint32_t w) {
    uint32_t u = rng_below(r, 100);
    if (u < 60) { return L->succ[(size_t)w * SYN_SUCC + 0]; }
    if (u < 85) { return L->succ[(size_t)w * SYN_SUCC + 1]; }
    if (u < 95) { return L->succ[(size_t)w * SYN_SUCC + 2]; }
    return syn_zipf(L, r);
}

// Plans one document: its text length and its STORE/RECALL events sorted by text position.
static inline int syn_plan_document(SynLanguage *L, Rng *r, uint64_t *len, SynEvent *ev) {
    *len = 256 + rng_below(r, 3072 - 256 + 1);
    uint32_t nf = 4 + rng_below(r, SYN_MAX_FACTS - 4 + 1);
    if (nf > L->num_keys) { nf = L->num_keys; }
    for (uint32_t i = 0; i < nf; i++) {
        // partial Fisher-Yates over key_perm: distinct keys, uniform whatever order it was left in
        uint32_t j = i + rng_below(r, L->num_keys - i);
        uint32_t k = L->key_perm[j]; L->key_perm[j] = L->key_perm[i]; L->key_perm[i] = k;
        uint32_t value = L->value_base + rng_below(r, L->num_values);
        uint64_t d = (uint64_t)(16.0 * exp(rng_uniform(r) * log(1536.0 / 16.0)));
        if (d > *len - 16) { d = *len - 16; }  // short documents get shorter distances
        uint64_t store = rng_below(r, (uint32_t)(*len - d));
        SynEvent s = {store, SYN_STORE, L->key_base + k, value};
        SynEvent q = {store + d, SYN_RECALL, L->key_base + k, value};
        ev[2 * i] = s;
        ev[2 * i + 1] = q;
    }
    int ne = 2 * (int)nf;
    for (int i = 1; i < ne; i++) {  // insertion sort: stable, so a fact's STORE stays before its RECALL
        SynEvent e = ev[i];
        int j = i - 1;
        while (j >= 0 && ev[j].pos > e.pos) { ev[j + 1] = ev[j]; j--; }
        ev[j + 1] = e;
    }
    return ne;
}

// Fills tokens[0..n) with documents drawn from `seed` (the last one cut off at n).
static inline void synthetic_generate(uint32_t *tokens, uint64_t n, uint32_t vocab_size, uint64_t seed) {
    SynLanguage L;
    syn_language_init(&L, vocab_size);
    Rng r;
    rng_init(&r, seed);
    SynEvent ev[2 * SYN_MAX_FACTS];
    uint64_t out = 0;
    while (out < n) {
        uint64_t len;
        int ne = syn_plan_document(&L, &r, &len, ev);
        uint32_t w = syn_zipf(&L, &r);
        uint64_t text = 0;  // text positions emitted in this document
        for (int e = 0; e <= ne && out < n; e++) {
            uint64_t until = e < ne ? ev[e].pos : len;
            for (; text < until && out < n; text++) {
                tokens[out++] = L.word_base + w;
                w = syn_next_word(&L, &r, w);
            }
            if (e < ne) {
                uint32_t fact[3] = {ev[e].kind, ev[e].key, ev[e].value};
                for (int i = 0; i < 3 && out < n; i++) { tokens[out++] = fact[i]; }
            }
        }
        if (out < n) { tokens[out++] = SYN_EOT; }
    }
    syn_language_free(&L);
}

static inline int synthetic_is_recall_value(const int32_t *inputs, int t) {
    return t >= 1 && inputs[t - 1] == SYN_RECALL;
}

// A readable name of a token of the vocab_size corpus: EOT, STORE, RECALL, k<i> (key i), v<i> (value i), w<i> (word i).
static inline void synthetic_token_name(char *buf, size_t cap, uint32_t tok, uint32_t vocab_size) {
    uint32_t key_base = 3, value_base = 3 + vocab_size / 16, word_base = 3 + vocab_size / 8;
    if (tok == SYN_EOT) { snprintf(buf, cap, "EOT"); }
    else if (tok == SYN_STORE) { snprintf(buf, cap, "STORE"); }
    else if (tok == SYN_RECALL) { snprintf(buf, cap, "RECALL"); }
    else if (tok < value_base) { snprintf(buf, cap, "k%u", tok - key_base); }
    else if (tok < word_base) { snprintf(buf, cap, "v%u", tok - value_base); }
    else { snprintf(buf, cap, "w%u", tok - word_base); }
}

static inline void syn_mkdir_p(const char *dir) {
    size_t n = strlen(dir);
    char *p = (char *)malloc_check(n + 1);
    strcpy(p, dir);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') { continue; }
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) { die("cannot create directory '%s': %s", p, strerror(errno)); }
        p[i] = c;
    }
    free(p);
}

// Writes dir/train_000.bin (tokens from seed) and dir/val_000.bin (from ~seed), 2-byte shards.
// Holds one split in memory as uint32 while writing (4 bytes per token).
static inline void synthetic_write_dataset(const char *dir, uint32_t vocab_size, uint64_t train_tokens,
                                           uint64_t val_tokens, uint64_t seed) {
    if (vocab_size > 65536) { die("synthetic corpus writes 2-byte shards: vocab_size %u > 65536", vocab_size); }
    if (dir[0] == '\0') { die("synthetic corpus: empty output directory"); }
    syn_mkdir_p(dir);
    const char *names[2] = {"train_000.bin", "val_000.bin"};
    uint64_t counts[2] = {train_tokens, val_tokens};
    uint64_t seeds[2] = {seed, ~seed};
    for (int split = 0; split < 2; split++) {
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/%s", dir, names[split]) >= (int)sizeof(path)) { die("path too long: '%s'", dir); }
        uint32_t *tokens = (uint32_t *)malloc_check(counts[split] * sizeof(uint32_t));
        synthetic_generate(tokens, counts[split], vocab_size, seeds[split]);
        shard_write(path, tokens, counts[split], 2, vocab_size);
        free(tokens);
    }
}

#endif // LLMC_SYNTHETIC_H
