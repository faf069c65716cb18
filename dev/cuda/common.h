/*
 Helpers for the kernel development programs in dev/cuda/: random host data, poisoned device buffers,
 comparison against a CPU reference (relative L2 error and max abs error) and event-based timing
 (warm-up, then the median of repeated runs).
*/
#ifndef DEV_CUDA_COMMON_H
#define DEV_CUDA_COMMON_H

#include <algorithm>
#include <math.h>
#include <string.h>
#include <vector>
#include "llmc/cuda_common.cuh"
#include "llmc/rng.h"

static inline std::vector<float> random_vector(size_t n, Rng *rng, float std = 1.0f) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) { v[i] = rng_normal(rng, 0.0f, std); }
    return v;
}

// Device copy of host fp32 data in type T (rounded the same way the comparison rounds).
template <typename T> T *to_device(const std::vector<float> &h) {
    std::vector<T> tmp(h.size());
    for (size_t i = 0; i < h.size(); i++) { tmp[i] = from_float<T>(h[i]); }
    T *d;
    cudaCheck(cudaMalloc(&d, h.size() * sizeof(T)));
    cudaCheck(cudaMemcpy(d, tmp.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

// Round host data through T, so a CPU reference sees exactly the inputs the GPU sees.
template <typename T> std::vector<float> round_through(const std::vector<float> &h) {
    std::vector<float> r(h.size());
    for (size_t i = 0; i < h.size(); i++) { r[i] = to_float(from_float<T>(h[i])); }
    return r;
}

// Fill with NaN (0xFF bytes are NaN in fp32 and bf16) so unwritten outputs fail the comparison.
static inline void poison(void *d, size_t bytes) { cudaCheck(cudaMemset(d, 0xFF, bytes)); }

template <typename T> std::vector<float> from_device(const T *d, size_t n) {
    std::vector<T> tmp(n);
    cudaCheck(cudaMemcpy(tmp.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<float> out(n);
    for (size_t i = 0; i < n; i++) { out[i] = to_float(tmp[i]); }
    return out;
}

// Prints and returns the relative L2 error; any NaN/inf in the output fails (returns INFINITY).
static inline double compare(const char *name, const std::vector<float> &out, const std::vector<float> &ref, double tol) {
    double num = 0.0, den = 0.0, maxabs = 0.0;
    size_t bad = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        if (!isfinite(out[i])) { bad++; continue; }
        double d = (double)out[i] - ref[i];
        num += d * d; den += (double)ref[i] * ref[i];
        maxabs = std::max(maxabs, fabs(d));
    }
    double rel = bad ? INFINITY : sqrt(num / (den > 0 ? den : 1e-30));
    printf("  %-14s rel_l2 %.3e  max_abs %.3e  non-finite %zu  %s\n", name, rel, maxabs, bad, rel <= tol ? "OK" : "FAIL");
    return rel;
}

// Median milliseconds of `repeats` runs of fn() after `warmup` runs, timed with CUDA events.
template <typename F> float time_ms(F fn, int warmup = 3, int repeats = 20) {
    for (int i = 0; i < warmup; i++) { fn(); }
    cudaCheck(cudaDeviceSynchronize());
    std::vector<float> times(repeats);
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start)); cudaCheck(cudaEventCreate(&stop));
    for (int i = 0; i < repeats; i++) {
        cudaCheck(cudaEventRecord(start));
        fn();
        cudaCheck(cudaEventRecord(stop));
        cudaCheck(cudaEventSynchronize(stop));
        cudaCheck(cudaEventElapsedTime(&times[i], start, stop));
    }
    cudaCheck(cudaEventDestroy(start)); cudaCheck(cudaEventDestroy(stop));
    std::sort(times.begin(), times.end());
    return times[repeats / 2];
}

#endif // DEV_CUDA_COMMON_H
