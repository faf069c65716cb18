/*
 Shared checking glue for the layer kernel dev programs (embedding, rmsnorm, swiglu, classifier, adamw,
 global_norm, matmul, qkv_prep): counts failed comparisons, checks that a rerun is bit-identical
 (every product kernel is deterministic), and prints the one-line summary run_layers.sh collects.
*/
#ifndef DEV_CUDA_LAYER_CHECK_H
#define DEV_CUDA_LAYER_CHECK_H

#include <stdio.h>
#include <string.h>
#include <vector>
#include "dev/cuda/common.h"

// fp32 builds must match a double-precision CPU reference to rounding; bf16 to its 8-bit mantissa.
static const double LAYER_TOL = sizeof(floatX) == 4 ? 1e-5 : 1e-2;

static int layer_failures = 0;
static double layer_max_err = 0.0;

static inline double check(const char *name, const std::vector<float> &out, const std::vector<float> &ref,
                           double tol = LAYER_TOL) {
    const double err = compare(name, out, ref, tol);
    if (!(err <= tol)) { layer_failures++; }
    layer_max_err = std::max(layer_max_err, err);
    return err;
}

// Two device buffers written by two runs of the same computation must hold the same bytes.
static inline void check_bit_identical(const char *name, const void *a, const void *b, size_t bytes) {
    std::vector<unsigned char> ha(bytes), hb(bytes);
    cudaCheck(cudaMemcpy(ha.data(), a, bytes, cudaMemcpyDeviceToHost));
    cudaCheck(cudaMemcpy(hb.data(), b, bytes, cudaMemcpyDeviceToHost));
    const bool same = memcmp(ha.data(), hb.data(), bytes) == 0;
    printf("  %-14s rerun bit-identical: %s\n", name, same ? "yes" : "NO (FAIL)");
    if (!same) { layer_failures++; }
}

template <typename T> T *device_copy(const T *src, size_t n) {
    T *d;
    cudaCheck(cudaMalloc(&d, n * sizeof(T)));
    cudaCheck(cudaMemcpy(d, src, n * sizeof(T), cudaMemcpyDeviceToDevice));
    return d;
}

// n random values on the device for timing runs: a 2^20-element random pattern tiled (quick to make for
// hundreds of millions of elements; timing on zeros would flatter the kernels).
template <typename T> T *random_device(size_t n, Rng *rng, float std = 1.0f) {
    const std::vector<float> pattern = random_vector((size_t)1 << 20, rng, std);
    std::vector<T> h(n);
    for (size_t i = 0; i < n; i++) { h[i] = from_float<T>(pattern[i & (pattern.size() - 1)]); }
    T *d;
    cudaCheck(cudaMalloc(&d, n * sizeof(T)));
    cudaCheck(cudaMemcpy(d, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

// Final line of every layer program; run_layers.sh greps "^TABLE". Rates are GB/s of the minimal
// traffic (or TFLOP/s for matmul); the exit code is non-zero when any check failed.
static inline int layer_finish(const char *kernel, const char *shape, float fwd_ms, double fwd_rate, float bwd_ms,
                               double bwd_rate, const char *unit) {
    printf("TABLE | %-11s | %-26s | %8.4f | %7.1f | %8.4f | %7.1f | %-7s | %.1e | %s |\n", kernel, shape, fwd_ms,
           fwd_rate, bwd_ms, bwd_rate, unit, layer_max_err, layer_failures ? "FAIL" : "ok");
    return layer_failures ? 1 : 0;
}

static inline double gbps(double bytes, float ms) { return bytes / (ms * 1e-3) / 1e9; }

#endif // DEV_CUDA_LAYER_CHECK_H
