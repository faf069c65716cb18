/*
 RMSNorm, optionally fused with the residual add that precedes it.
   forward:  y = x * rstd * w,  rstd = 1 / sqrt(mean(x^2) + 1e-5)            x, y: (N, C) floatX; w: (C)
             rstd (N) fp32 is saved for the backward pass.
   fused:    residual_out = a + b (rounded to floatX), then y = rmsnorm(residual_out)
   backward: dinp += rstd * (w*dy - xhat * mean(w*dy*xhat)),  xhat = x * rstd  (added to an existing
             residual-stream gradient), dw += sum_n dy * xhat.
 One CTA per row (forward) keeps the row in registers: one read of x (a, b), one write of y
 (+ residual_out). The backward reads x, dy, dinp and writes dinp once; dw is reduced deterministically:
 each CTA sums a fixed range of rows into its own fp32 partial row of `scratch`, then a second kernel adds
 the partial rows in block order. Requires C % x128::size == 0 and C <= RMSNORM_MAX_C.
*/
#ifndef LLMC_RMSNORM_CUH
#define LLMC_RMSNORM_CUH

#include <type_traits>
#include "llmc/cuda_common.cuh"
#include "llmc/cuda_utils.cuh"
#include "llmc/utils.h"

#define RMSNORM_EPS 1e-5f
#define RMSNORM_THREADS 256
#define RMSNORM_MAX_VEC 4 // 128-bit vectors per thread: bounds C; kernels are instantiated for 1..4
#define RMSNORM_MAX_C (RMSNORM_THREADS * RMSNORM_MAX_VEC * x128::size)
#define RMSNORM_BWD_BLOCKS 1024 // fixed CTA count of the backward, so dw partials have a fixed shape

// Each thread owns the vectors threadIdx.x + k * blockDim.x, k < VECS (the fewest that cover C, so a row
// stays in registers without wasting them: 168 registers at VECS = 4 against 56 at VECS = 1).
template <bool RESIDUAL, int VECS>
__global__ void rmsnorm_forward_kernel(floatX *residual_out, floatX *out, float *rstd, const floatX *a,
                                       const floatX *b, const floatX *weight, int C) {
    const size_t row = (size_t)blockIdx.x * C;
    x128 x[VECS];
    float sumsq = 0.0f;
#pragma unroll
    for (int k = 0; k < VECS; k++) {
        const int c = (threadIdx.x + k * blockDim.x) * x128::size;
        if (c >= C) { continue; }
        x[k] = load128cs(a + row + c);
        if (RESIDUAL) {
            const x128 bk = load128cs(b + row + c);
            for (int j = 0; j < x128::size; j++) { x[k][j] = from_float<floatX>(to_float(x[k][j]) + to_float(bk[j])); }
            store128(residual_out + row + c, x[k]);
        }
        for (int j = 0; j < x128::size; j++) { float v = to_float(x[k][j]); sumsq += v * v; }
    }
    sumsq = block_reduce_sum(sumsq);
    const float r = rsqrtf(sumsq / C + RMSNORM_EPS);
    if (threadIdx.x == 0) { rstd[blockIdx.x] = r; }
#pragma unroll
    for (int k = 0; k < VECS; k++) {
        const int c = (threadIdx.x + k * blockDim.x) * x128::size;
        if (c >= C) { continue; }
        const x128 w = load128(weight + c);
        x128 y;
        for (int j = 0; j < x128::size; j++) { y[j] = from_float<floatX>(to_float(x[k][j]) * r * to_float(w[j])); }
        store128(out + row + c, y);
    }
}

template <int VECS>
__global__ void rmsnorm_backward_kernel(floatX *dinp, float *partials, const floatX *dout, const floatX *inp,
                                        const floatX *weight, const float *rstd, int N, int C, int rows_per_block) {
    x128 w[VECS];
    float dw[VECS][x128::size];
#pragma unroll
    for (int k = 0; k < VECS; k++) {
        const int c = (threadIdx.x + k * blockDim.x) * x128::size;
        if (c < C) { w[k] = load128(weight + c); }
        for (int j = 0; j < x128::size; j++) { dw[k][j] = 0.0f; }
    }
    const int n_end = min(N, (blockIdx.x + 1) * rows_per_block);
    for (int n = blockIdx.x * rows_per_block; n < n_end; n++) {
        const size_t row = (size_t)n * C;
        const float r = rstd[n];
        x128 x[VECS], dy[VECS];
        float dot = 0.0f; // sum_c w*dy*xhat
#pragma unroll
        for (int k = 0; k < VECS; k++) {
            const int c = (threadIdx.x + k * blockDim.x) * x128::size;
            if (c >= C) { continue; }
            x[k] = load128cs(inp + row + c);
            dy[k] = load128cs(dout + row + c);
            for (int j = 0; j < x128::size; j++) { dot += to_float(w[k][j]) * to_float(dy[k][j]) * to_float(x[k][j]) * r; }
        }
        const float mean_dot = block_reduce_sum(dot) / C;
#pragma unroll
        for (int k = 0; k < VECS; k++) {
            const int c = (threadIdx.x + k * blockDim.x) * x128::size;
            if (c >= C) { continue; }
            x128 d = load128(dinp + row + c);
            for (int j = 0; j < x128::size; j++) {
                const float xhat = to_float(x[k][j]) * r, g = to_float(dy[k][j]);
                d[j] = from_float<floatX>(to_float(d[j]) + r * (to_float(w[k][j]) * g - xhat * mean_dot));
                dw[k][j] += g * xhat;
            }
            store128(dinp + row + c, d);
        }
    }
#pragma unroll
    for (int k = 0; k < VECS; k++) {
        const int c = (threadIdx.x + k * blockDim.x) * x128::size;
        if (c >= C) { continue; }
        float *dst = partials + (size_t)blockIdx.x * C + c;
        for (int j = 0; j < x128::size; j++) { dst[j] = dw[k][j]; }
    }
}

// dweight[c] += sum over CTAs (in CTA order) of partials[cta][c].
__global__ void rmsnorm_dweight_reduce_kernel(floatX *dweight, const float *partials, int num_blocks, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) { return; }
    float sum = 0.0f;
    for (int b = 0; b < num_blocks; b++) { sum += partials[(size_t)b * C + c]; }
    dweight[c] = from_float<floatX>(to_float(dweight[c]) + sum);
}

static inline void rmsnorm_check_shape(int N, int C, const char *where) {
    if (N <= 0 || C <= 0 || C % x128::size != 0 || C > RMSNORM_MAX_C) {
        die("%s: unsupported shape N=%d C=%d (need C a multiple of %d and at most %d)", where, N, C,
            x128::size, RMSNORM_MAX_C);
    }
}

static inline int rmsnorm_threads(int C) {
    const int warps = CEIL_DIV(C / x128::size, 32);
    return 32 * min(warps, RMSNORM_THREADS / 32);
}

// Calls launch(std::integral_constant<int, VECS>) with the VECS that covers a row of C with the CTA.
template <typename Launch> static inline void rmsnorm_dispatch(int C, Launch launch) {
    switch (CEIL_DIV(C / x128::size, RMSNORM_THREADS)) {
    case 1: launch(std::integral_constant<int, 1>()); break;
    case 2: launch(std::integral_constant<int, 2>()); break;
    case 3: launch(std::integral_constant<int, 3>()); break;
    default: launch(std::integral_constant<int, 4>()); break;
    }
    cudaCheckLaunch();
}

// Bytes of fp32 scratch rmsnorm_backward needs for width C.
static inline size_t rmsnorm_backward_scratch_bytes(int C) { return (size_t)RMSNORM_BWD_BLOCKS * C * sizeof(float); }

// out (N, C) = rmsnorm(inp) * weight; rstd (N) saved.
static inline void rmsnorm_forward(floatX *out, float *rstd, const floatX *inp, const floatX *weight, int N, int C,
                                   cudaStream_t stream) {
    rmsnorm_check_shape(N, C, "rmsnorm_forward");
    rmsnorm_dispatch(C, [&](auto vecs) {
        rmsnorm_forward_kernel<false, vecs><<<N, rmsnorm_threads(C), 0, stream>>>(NULL, out, rstd, inp, NULL, weight, C);
    });
}

// residual_out (N, C) = a + b; out = rmsnorm(residual_out) * weight; rstd (N) saved. residual_out may alias a.
static inline void fused_residual_rmsnorm_forward(floatX *residual_out, floatX *out, float *rstd, const floatX *a,
                                                  const floatX *b, const floatX *weight, int N, int C,
                                                  cudaStream_t stream) {
    rmsnorm_check_shape(N, C, "fused_residual_rmsnorm_forward");
    rmsnorm_dispatch(C, [&](auto vecs) {
        rmsnorm_forward_kernel<true, vecs><<<N, rmsnorm_threads(C), 0, stream>>>(residual_out, out, rstd, a, b, weight, C);
    });
}

// dinp (N, C) += d(rmsnorm)/d(inp); dweight (C) += its gradient. scratch: rmsnorm_backward_scratch_bytes(C).
// dinp must not alias dout or inp.
static inline void rmsnorm_backward(floatX *dinp, floatX *dweight, float *scratch, const floatX *dout,
                                    const floatX *inp, const floatX *weight, const float *rstd, int N, int C,
                                    cudaStream_t stream) {
    rmsnorm_check_shape(N, C, "rmsnorm_backward");
    const int rows_per_block = CEIL_DIV(N, RMSNORM_BWD_BLOCKS);
    const int num_blocks = CEIL_DIV(N, rows_per_block);
    rmsnorm_dispatch(C, [&](auto vecs) {
        rmsnorm_backward_kernel<vecs><<<num_blocks, rmsnorm_threads(C), 0, stream>>>(dinp, scratch, dout, inp, weight,
                                                                                   rstd, N, C, rows_per_block);
    });
    rmsnorm_dweight_reduce_kernel<<<CEIL_DIV(C, 256), 256, 0, stream>>>(dweight, scratch, num_blocks, C);
    cudaCheckLaunch();
}

#endif // LLMC_RMSNORM_CUH
