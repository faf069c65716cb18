/*
 Deterministic random numbers shared by CPU and GPU host code (init, data shuffling, synthetic data,
 sampling). xorshift64* for 32-bit words; uniforms from the top 24 bits; normals by Box-Muller (one
 normal per pair of uniforms, the sine branch discarded, so the stream is easy to reproduce elsewhere).
*/
#ifndef LLMC_RNG_H
#define LLMC_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct { uint64_t state; } Rng;

static inline void rng_init(Rng *r, uint64_t seed) {
    // splitmix64 scrambles small seeds; the state must never be 0 for xorshift.
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    r->state = (z ^ (z >> 31)) | 1ull;
}

static inline uint32_t rng_u32(Rng *r) {
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return (uint32_t)((r->state * 0x2545F4914F6CDD1Dull) >> 32);
}

// uniform in [0, 1)
static inline float rng_uniform(Rng *r) { return (rng_u32(r) >> 8) / 16777216.0f; }

// uniform integer in [0, n); n > 0
static inline uint32_t rng_below(Rng *r, uint32_t n) { return (uint32_t)(((uint64_t)rng_u32(r) * n) >> 32); }

static inline float rng_normal(Rng *r, float mean, float std) {
    float u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-7f) { u1 = 1e-7f; }
    return mean + std * sqrtf(-2.0f * logf(u1)) * cosf(2.0f * (float)M_PI * u2);
}

// Fisher-Yates shuffle of idx[0..n)
static inline void rng_permute(Rng *r, uint32_t *idx, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) { idx[i] = i; }
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = rng_below(r, i);
        uint32_t t = idx[i - 1]; idx[i - 1] = idx[j]; idx[j] = t;
    }
}

#endif // LLMC_RNG_H
