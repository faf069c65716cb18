/*
 SwiGLU activation of the MLP.
   forward:  h (N, F) = silu(gate) * up,  gate = gu[:, :F], up = gu[:, F:],  gu (N, 2F) floatX
   backward: dgu[:, :F] = dh * up * silu'(gate),  dgu[:, F:] = dh * silu(gate)
             silu(z) = z * s, s = 1 / (1 + e^-z), silu'(z) = s * (1 + z * (1 - s))
 Elementwise and memory-bound: forward reads 2NF and writes NF elements, backward reads 3NF and writes
 2NF. One thread per 128-bit vector of F; requires F % x128::size == 0.
*/
#ifndef LLMC_SWIGLU_CUH
#define LLMC_SWIGLU_CUH

#include "llmc/cuda_common.cuh"
#include "llmc/cuda_utils.cuh"
#include "llmc/utils.h"

__device__ inline float sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }

__global__ void swiglu_forward_kernel(floatX *h, const floatX *gu, int N, int F) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size; // index into h
    if (i >= (size_t)N * F) { return; }
    const size_t n = i / F, f = i % F;
    const x128 gate = load128cs(gu + n * 2 * F + f), up = load128cs(gu + n * 2 * F + F + f);
    x128 out;
    for (int j = 0; j < x128::size; j++) {
        const float z = to_float(gate[j]);
        out[j] = from_float<floatX>(z * sigmoidf(z) * to_float(up[j]));
    }
    store128(h + i, out);
}

__global__ void swiglu_backward_kernel(floatX *dgu, const floatX *dh, const floatX *gu, int N, int F) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (i >= (size_t)N * F) { return; }
    const size_t n = i / F, f = i % F;
    const x128 gate = load128cs(gu + n * 2 * F + f), up = load128cs(gu + n * 2 * F + F + f), g = load128cs(dh + i);
    x128 dgate, dup;
    for (int j = 0; j < x128::size; j++) {
        const float z = to_float(gate[j]), s = sigmoidf(z), d = to_float(g[j]);
        dgate[j] = from_float<floatX>(d * to_float(up[j]) * s * (1.0f + z * (1.0f - s)));
        dup[j] = from_float<floatX>(d * z * s);
    }
    store128(dgu + n * 2 * F + f, dgate);
    store128(dgu + n * 2 * F + F + f, dup);
}

static inline void swiglu_check_shape(int N, int F, const char *where) {
    if (N <= 0 || F <= 0 || F % x128::size != 0) {
        die("%s: unsupported shape N=%d F=%d (need F a multiple of %d)", where, N, F, x128::size);
    }
}

static inline int swiglu_blocks(int N, int F) { return (int)CEIL_DIV((size_t)N * F / x128::size, (size_t)256); }

// h (N, F) = silu(gu[:, :F]) * gu[:, F:]
static inline void swiglu_forward(floatX *h, const floatX *gu, int N, int F, cudaStream_t stream) {
    swiglu_check_shape(N, F, "swiglu_forward");
    swiglu_forward_kernel<<<swiglu_blocks(N, F), 256, 0, stream>>>(h, gu, N, F);
    cudaCheckLaunch();
}

// dgu (N, 2F) = gradient of swiglu_forward at gu given dh (N, F); overwrites dgu, which may alias gu
// (each thread reads its gate/up elements before writing the same positions).
static inline void swiglu_backward(floatX *dgu, const floatX *dh, const floatX *gu, int N, int F, cudaStream_t stream) {
    swiglu_check_shape(N, F, "swiglu_backward");
    swiglu_backward_kernel<<<swiglu_blocks(N, F), 256, 0, stream>>>(dgu, dh, gu, N, F);
    cudaCheckLaunch();
}

#endif // LLMC_SWIGLU_CUH
