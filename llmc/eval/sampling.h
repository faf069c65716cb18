/*
 Token sampling and the generation loop, shared by the CPU KV cache (llmc/eval/kv_cache.h) and the GPU one
 (llmc/eval/kv_cache.cuh): greedy or temperature + top-p sampling from fp32 logits, stop sequences, a stop
 token, a token budget and a minimum length before which the stop token and one-token stop sequences
 cannot be chosen (Hugging Face's min_length, which LongBench's pred.py sets for samsum). The model is reached through two callbacks (prefill a prompt, append one
 token), each returning the V logits of the next position.
*/
#ifndef LLMC_SAMPLING_H
#define LLMC_SAMPLING_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../rng.h"
#include "../utils.h"

typedef struct {
    int max_new_tokens;
    float temperature;           // <= 0: greedy
    float top_p;                 // nucleus mass in (0, 1]; 1 = no cut
    uint64_t seed;
    int eot;                     // stop token (not emitted); -1: none
    const int *const *stops;     // stop sequences of token ids (emitted, then generation ends)
    const int *stop_lens;
    int num_stops;
    int min_new_tokens;          // the first min_new_tokens tokens are never eot or a one-token stop
} GenConfig;

// Index of the largest logit, ties to the lower index.
static inline int argmax_logits(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) { if (x[i] > x[best]) { best = i; } }
    return best;
}

static const float *sample_probs_sort;  // qsort comparator data (one sampler at a time)
static inline int sample_cmp(const void *a, const void *b) {
    float pa = sample_probs_sort[*(const int *)a], pb = sample_probs_sort[*(const int *)b];
    return pa < pb ? 1 : pa > pb ? -1 : (*(const int *)a - *(const int *)b);
}

// Greedy when temperature <= 0; else softmax(logits / temperature) restricted to the smallest set of
// most likely tokens whose mass reaches top_p, renormalised, one uniform draw.
static inline int sample_token(const float *logits, int V, float temperature, float top_p, Rng *rng) {
    if (temperature <= 0) { return argmax_logits(logits, V); }
    float *p = (float *)malloc_check((size_t)V * sizeof(float));
    int *idx = (int *)malloc_check((size_t)V * sizeof(int));
    float mx = logits[argmax_logits(logits, V)], sum = 0;
    for (int i = 0; i < V; i++) { p[i] = expf((logits[i] - mx) / temperature); sum += p[i]; idx[i] = i; }
    for (int i = 0; i < V; i++) { p[i] /= sum; }
    sample_probs_sort = p;
    qsort(idx, (size_t)V, sizeof(int), sample_cmp);
    int n = 0;
    float mass = 0;
    while (n < V && (n == 0 || mass < top_p)) { mass += p[idx[n++]]; }
    float u = rng_uniform(rng) * mass, acc = 0;
    int pick = idx[n - 1];
    for (int i = 0; i < n; i++) { acc += p[idx[i]]; if (u < acc) { pick = idx[i]; break; } }
    free(p); free(idx);
    return pick;
}

static inline int ends_with_stop(const int *out, int n, const GenConfig *g) {
    for (int s = 0; s < g->num_stops; s++) {
        int k = g->stop_lens[s];
        if (k > 0 && n >= k && memcmp(out + n - k, g->stops[s], (size_t)k * sizeof(int)) == 0) { return 1; }
    }
    return 0;
}

// Model access for generation: prefill resets the cache to tokens[0..n), step appends one token; both
// return the V logits of the next position (valid until the next call).
typedef const float *(*PrefillFn)(void *ctx, const int *tokens, int n);
typedef const float *(*StepFn)(void *ctx, int token);

// Generates after prompt[0..n) into out (room for g->max_new_tokens); returns the number generated.
// capacity: the most tokens the model's cache holds (prompt + generated).
static inline int generate_tokens(void *ctx, PrefillFn prefill, StepFn step, int V, int capacity, const int *prompt,
                                  int n, const GenConfig *g, int *out) {
    if (n + g->max_new_tokens > capacity) { die("prompt %d + %d new tokens exceeds the cache capacity %d", n, g->max_new_tokens, capacity); }
    Rng rng;
    rng_init(&rng, g->seed);
    const float *logits = prefill(ctx, prompt, n);
    float *masked = g->min_new_tokens > 0 ? (float *)malloc_check((size_t)V * sizeof(float)) : NULL;
    int count = 0;
    while (count < g->max_new_tokens) {
        if (count < g->min_new_tokens) {  // the stop tokens' logits to -inf, as Hugging Face's MinLengthLogitsProcessor
            memcpy(masked, logits, (size_t)V * sizeof(float));
            if (g->eot >= 0 && g->eot < V) { masked[g->eot] = -INFINITY; }
            for (int s = 0; s < g->num_stops; s++) { if (g->stop_lens[s] == 1 && g->stops[s][0] >= 0 && g->stops[s][0] < V) { masked[g->stops[s][0]] = -INFINITY; } }
            logits = masked;
        }
        int tok = sample_token(logits, V, g->temperature, g->top_p, &rng);
        if (tok == g->eot) { break; }
        out[count++] = tok;
        if (ends_with_stop(out, count, g) || count == g->max_new_tokens) { break; }
        logits = step(ctx, tok);
    }
    free(masked);
    return count;
}

#endif // LLMC_SAMPLING_H
