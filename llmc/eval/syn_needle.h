/*
 RULER-style needle tasks written directly in the synthetic corpus's token ids (llmc/synthetic.h), for
 models trained on that corpus, which has no tokenizer. A sample is a document of the synthetic
 language (SYN_EOT, then Markov-chain words) of exactly `length` tokens with facts "STORE k v" planted at
 uniformly random depths, ending in queries "RECALL k": the model must produce v next.
   syn_single      1 fact, 1 query                 (RULER niah_single)
   syn_multikey    4 facts with distinct keys, 1 asked (niah_multikey: the others are distractors)
   syn_multiquery  4 facts, all 4 asked one after the other; after each query the true value is fed
                   (teacher forcing), so each answer is scored on its own (niah_multiquery)
 Score per sample: the fraction of queries answered exactly (all-match); chance is 1/num_values.
*/
#ifndef LLMC_SYN_NEEDLE_H
#define LLMC_SYN_NEEDLE_H

#include "../rng.h"
#include "../synthetic.h"
#include "../utils.h"

#define SYN_NEEDLE_MAX 4

typedef struct { const char *name; int facts, queries; } SynNeedleTask;

static const SynNeedleTask syn_needle_tasks[] = {
    {"syn_single", 1, 1},
    {"syn_multikey", 4, 1},
    {"syn_multiquery", 4, 4},
};
#define NUM_SYN_NEEDLE_TASKS ((int)(sizeof(syn_needle_tasks) / sizeof(syn_needle_tasks[0])))

typedef struct {
    int *tokens, length;                   // the whole sample, teacher-forced answers included
    int num_queries;
    int query_end[SYN_NEEDLE_MAX];         // the answer to query q is tokens[query_end[q]], predicted from the prefix before it
    int fact_depth[SYN_NEEDLE_MAX];        // token position of each STORE
} SynNeedleSample;

static inline const SynNeedleTask *syn_needle_task(const char *name) {
    for (int i = 0; i < NUM_SYN_NEEDLE_TASKS; i++) { if (strcmp(syn_needle_tasks[i].name, name) == 0) { return &syn_needle_tasks[i]; } }
    die("unknown synthetic needle task '%s' (syn_single, syn_multikey, syn_multiquery)", name);
    return NULL;
}

// Sample `index` of task t at `length` tokens, deterministic in (seed, task, length, index).
static inline SynNeedleSample syn_needle_generate(SynLanguage *L, const SynNeedleTask *t, int length, int index, uint64_t seed) {
    int text = length - 1 - 3 * t->facts - 3 * t->queries;  // EOT, facts, "RECALL k v" per query
    if (text < t->facts) { die("synthetic needle task %s needs more than %d tokens", t->name, length); }
    Rng r;
    rng_init(&r, seed ^ ((uint64_t)length << 24) ^ ((uint64_t)index * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(t - syn_needle_tasks) << 52));
    uint32_t keys[SYN_NEEDLE_MAX], vals[SYN_NEEDLE_MAX];
    int at[SYN_NEEDLE_MAX];  // text position before which fact f is inserted, ascending
    for (int f = 0; f < t->facts; f++) {
        int dup;
        do { keys[f] = L->key_base + rng_below(&r, L->num_keys); dup = 0; for (int g = 0; g < f; g++) { dup |= keys[g] == keys[f]; } } while (dup);
        vals[f] = L->value_base + rng_below(&r, L->num_values);
        at[f] = (int)rng_below(&r, (uint32_t)text);
    }
    for (int i = 1; i < t->facts; i++) { int v = at[i], j = i - 1; while (j >= 0 && at[j] > v) { at[j + 1] = at[j]; j--; } at[j + 1] = v; }
    SynNeedleSample s;
    memset(&s, 0, sizeof(s));
    s.tokens = (int *)malloc_check((size_t)length * sizeof(int));
    s.length = length;
    int n = 0, f = 0;
    s.tokens[n++] = SYN_EOT;
    uint32_t w = syn_zipf(L, &r);
    for (int i = 0; i <= text; i++) {
        while (f < t->facts && at[f] == i) {
            s.fact_depth[f] = n;
            s.tokens[n++] = SYN_STORE; s.tokens[n++] = (int)keys[f]; s.tokens[n++] = (int)vals[f];
            f++;
        }
        if (i == text) { break; }
        s.tokens[n++] = (int)(L->word_base + w);
        w = syn_next_word(L, &r, w);
    }
    // queries: which facts, in random order without repeats
    int order[SYN_NEEDLE_MAX];
    for (int i = 0; i < t->facts; i++) { order[i] = i; }
    for (int i = t->facts; i > 1; i--) { int j = (int)rng_below(&r, (uint32_t)i), x = order[i - 1]; order[i - 1] = order[j]; order[j] = x; }
    for (int q = 0; q < t->queries; q++) {
        s.tokens[n++] = SYN_RECALL; s.tokens[n++] = (int)keys[order[q]];
        s.query_end[q] = n;
        s.tokens[n++] = (int)vals[order[q]];
    }
    s.num_queries = t->queries;
    if (n != length) { die("syn_needle_generate: built %d tokens for a %d-token sample", n, length); }
    return s;
}

#endif // LLMC_SYN_NEEDLE_H
