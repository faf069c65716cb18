/*
 Shared CUDA definitions for the trainer and every kernel file: error checking, the working precision
 type floatX (bf16 by default, fp32 with -DENABLE_FP32 as llm.c's PRECISION=FP32), and small helpers.
*/
#ifndef LLMC_CUDA_COMMON_CUH
#define LLMC_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>

#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

static inline void cuda_check(cudaError_t err, const char *file, int line) {
    if (err != cudaSuccess) {
        fprintf(stderr, "error: CUDA %s at %s:%d\n", cudaGetErrorString(err), file, line);
        exit(1);
    }
}
#define cudaCheck(err) (cuda_check((err), __FILE__, __LINE__))
// After every kernel launch: catches bad launch configurations at the launch site.
#define cudaCheckLaunch() (cuda_check(cudaGetLastError(), __FILE__, __LINE__))

// Streaming multiprocessors of the current device (launch-size decisions; queried once per process).
static inline int cuda_num_sms(void) {
    static int sms = 0;
    if (sms == 0) {
        int device;
        cudaCheck(cudaGetDevice(&device));
        cudaCheck(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    }
    return sms;
}

// Device memory that is never NULL (a size of 0 still gets a buffer); the bytes are added to *total when given.
static inline void *cuda_alloc(size_t bytes, size_t *total) {
    void *p = NULL;
    cudaCheck(cudaMalloc(&p, bytes > 0 ? bytes : 16));
    if (total) { *total += bytes; }
    return p;
}

#if defined(ENABLE_FP32)
typedef float floatX;
#define PRECISION_NAME "fp32"
#else
typedef __nv_bfloat16 floatX;
#define PRECISION_NAME "bf16"
#endif

__device__ __host__ inline float to_float(float x) { return x; }
__device__ __host__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __host__ inline T from_float(float x);
template <> __device__ __host__ inline float from_float<float>(float x) { return x; }
template <> __device__ __host__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

#endif // LLMC_CUDA_COMMON_CUH
