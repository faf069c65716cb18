/*
 Squared L2 norm of the gradients, for gradient clipping, deterministic:
   global_norm_squared(partials, g, n, reset)   partials[b] (+)= sum of g^2 over the elements of block b
   global_norm_reduce(out, partials)            *out = sum_b partials[b]   (the caller takes sqrt)
 Every call uses the same fixed grid of GLOBAL_NORM_BLOCKS CTAs and each CTA owns one fp32 partial, so the
 summation order depends only on n: calling global_norm_squared once per gradient tensor (reset on the
 first) accumulates the whole model into the partials without atomics, then one reduce gives the total.
 Traffic: one read of each gradient tensor (128-bit on the aligned body).
*/
#ifndef LLMC_GLOBAL_NORM_CUH
#define LLMC_GLOBAL_NORM_CUH

#include "llmc/cuda_common.cuh"
#include "llmc/cuda_utils.cuh"

#define GLOBAL_NORM_BLOCKS 1024 // also the length of the partials array, and the reduce's block size
#define GLOBAL_NORM_THREADS 256

__global__ void global_norm_squared_kernel(float *partials, const floatX *g, size_t n, bool reset) {
    float sum = 0.0f;
    foreach128<false>(g, n, (size_t)blockIdx.x * blockDim.x + threadIdx.x, (size_t)gridDim.x * blockDim.x,
                      [&](size_t i, float x) { sum += x * x; return x; });
    sum = block_reduce_sum(sum);
    if (threadIdx.x == 0) { partials[blockIdx.x] = reset ? sum : partials[blockIdx.x] + sum; }
}

__global__ void global_norm_reduce_kernel(float *out, const float *partials) {
    const float sum = block_reduce_sum(partials[threadIdx.x]);
    if (threadIdx.x == 0) { *out = sum; }
}

// partials (GLOBAL_NORM_BLOCKS floats) = (reset ? 0 : partials) + per-block sums of g (n) squared.
static inline void global_norm_squared(float *partials, const floatX *g, size_t n, bool reset, cudaStream_t stream) {
    global_norm_squared_kernel<<<GLOBAL_NORM_BLOCKS, GLOBAL_NORM_THREADS, 0, stream>>>(partials, g, n, reset);
    cudaCheckLaunch();
}

// *out (one fp32 on the device) = sum of the partials: the squared norm of everything accumulated.
static inline void global_norm_reduce(float *out, const float *partials, cudaStream_t stream) {
    global_norm_reduce_kernel<<<1, GLOBAL_NORM_BLOCKS, 0, stream>>>(out, partials);
    cudaCheckLaunch();
}

#endif // LLMC_GLOBAL_NORM_CUH
