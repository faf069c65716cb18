/*
 Device-side building blocks shared by the layer kernels (as llm.c's cuda_utils.cuh):
 - Packed128: 16 bytes of floatX (8 bf16 or 4 fp32) moved with one 128-bit load/store, so memory-bound
   kernels use full-width accesses. Callers guarantee 16-byte alignment.
 - foreach128: a walk over an arbitrary (unaligned, any length) floatX array with 128-bit accesses.
 - warp and block sum/max reductions with a fixed combination order (deterministic results).
*/
#ifndef LLMC_CUDA_UTILS_CUH
#define LLMC_CUDA_UTILS_CUH

#include <stdint.h>
#include "llmc/cuda_common.cuh"

template <typename T> struct alignas(16) Packed128 {
    static constexpr int size = 16 / sizeof(T);
    T payload[size];
    __device__ T &operator[](int i) { return payload[i]; }
    __device__ const T &operator[](int i) const { return payload[i]; }
};
typedef Packed128<floatX> x128;
typedef Packed128<float> f128;

template <typename T> __device__ inline Packed128<T> load128(const T *p) {
    return *reinterpret_cast<const Packed128<T> *>(p);
}
// Streaming load: data read once, kept out of L1 so it does not evict data that is reused.
template <typename T> __device__ inline Packed128<T> load128cs(const T *p) {
    Packed128<T> out;
    *reinterpret_cast<int4 *>(&out) = __ldcs(reinterpret_cast<const int4 *>(p));
    return out;
}
template <typename T> __device__ inline void store128(T *p, Packed128<T> v) {
    *reinterpret_cast<Packed128<T> *>(p) = v;
}
// Streaming store: data not read again soon, kept out of the caches' way.
template <typename T> __device__ inline void store128cs(T *p, Packed128<T> v) {
    __stcs(reinterpret_cast<int4 *>(p), *reinterpret_cast<int4 *>(&v));
}

// Calls y = f(i, x) once for every element i of p[0, n) that falls to this thread (elements first,
// first + stride, ... counted in 128-bit vectors on the aligned body), reading the 16-byte-aligned body with
// 128-bit loads and the unaligned head and tail element by element; with WRITE, stores y back in place.
// T is floatX, or const floatX for a read-only walk.
template <bool WRITE, typename T, typename Fn>
__device__ inline void foreach128(T *p, size_t n, size_t first, size_t stride, Fn f) {
    const size_t misaligned = ((uintptr_t)p % 16) / sizeof(floatX);
    const size_t head = min(n, misaligned ? x128::size - misaligned : (size_t)0);
    const size_t nvec = (n - head) / x128::size;
    const size_t tail = head + nvec * x128::size;
    for (size_t i = first; i < head; i += stride) {
        const float y = f(i, to_float(p[i]));
        if constexpr (WRITE) { p[i] = from_float<floatX>(y); }
    }
    for (size_t k = first; k < nvec; k += stride) {
        const size_t i0 = head + k * x128::size;
        const x128 x = load128((const floatX *)p + i0);
        x128 y;
        for (int j = 0; j < x128::size; j++) { y[j] = from_float<floatX>(f(i0 + j, to_float(x[j]))); }
        if constexpr (WRITE) { store128(p + i0, y); }
    }
    for (size_t i = tail + first; i < n; i += stride) {
        const float y = f(i, to_float(p[i]));
        if constexpr (WRITE) { p[i] = from_float<floatX>(y); }
    }
}

__device__ inline float warp_reduce_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) { v += __shfl_xor_sync(0xffffffff, v, offset); }
    return v;
}
__device__ inline float warp_reduce_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) { v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, offset)); }
    return v;
}

// Sum (or max) over the whole block, returned to every thread. blockDim.x must be a multiple of 32
// (at most 1024). Contains __syncthreads: every thread of the block must call it.
template <float (*warp_reduce)(float)> __device__ inline float block_reduce(float v, float identity) {
    __shared__ float shared[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, num_warps = blockDim.x / 32;
    v = warp_reduce(v);
    __syncthreads(); // the previous call's readers are done with shared[]
    if (lane == 0) { shared[warp] = v; }
    __syncthreads();
    v = (lane < num_warps) ? shared[lane] : identity;
    return warp_reduce(v);
}

__device__ inline float block_reduce_sum(float v) { return block_reduce<warp_reduce_sum>(v, 0.0f); }
__device__ inline float block_reduce_max(float v) { return block_reduce<warp_reduce_max>(v, -INFINITY); }

#endif // LLMC_CUDA_UTILS_CUH
