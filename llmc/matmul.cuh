/*
 Matrix multiplies of the linear layers through cuBLASLt (floatX operands, fp32 accumulation; fp32
 operands without TF32 under ENABLE_FP32). Weights are (OC, C) row-major, applied as y = x W^T:
   forward:  out (N, OC)  = inp (N, C) W^T
   backward: dinp (N, C) (+)= dout (N, OC) W,    dweight (OC, C) (+)= dout^T inp
 matmul_init() creates the one cuBLASLt handle and workspace, matmul_free() releases them. Row-major
 (N, C) is column-major (C, N) to cuBLAS, so every product is stated column-major below.
 Deterministic: cuBLASLt's algorithms give bit-identical results for the same shapes on the same GPU.
*/
#ifndef LLMC_MATMUL_CUH
#define LLMC_MATMUL_CUH

#include <stdint.h>
#include <cublasLt.h>
#include "llmc/cuda_common.cuh"
#include "llmc/utils.h"

static cublasLtHandle_t matmul_handle = NULL;
static void *matmul_workspace = NULL;
static const size_t matmul_workspace_bytes = 32 * 1024 * 1024; // cuBLASLt's recommendation for Hopper

#if defined(ENABLE_FP32)
static const cudaDataType_t matmul_dtype = CUDA_R_32F;
#else
static const cudaDataType_t matmul_dtype = CUDA_R_16BF;
#endif

static inline void cublas_check(cublasStatus_t status, const char *file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "error: cuBLAS status %d at %s:%d\n", (int)status, file, line);
        exit(1);
    }
}
#define cublasCheck(status) (cublas_check((status), __FILE__, __LINE__))

static inline void matmul_init(void) {
    cublasCheck(cublasLtCreate(&matmul_handle));
    cudaCheck(cudaMalloc(&matmul_workspace, matmul_workspace_bytes));
}

static inline void matmul_free(void) {
    cudaCheck(cudaFree(matmul_workspace));
    cublasCheck(cublasLtDestroy(matmul_handle));
    matmul_workspace = NULL;
    matmul_handle = NULL;
}

// Largest power of two (at most 256) dividing the address: the heuristic otherwise assumes 256-byte
// alignment and may pick a kernel that faults on a pointer into the middle of a buffer.
static inline uint32_t matmul_alignment(const void *p) {
    uint32_t align = 256;
    while (align > 1 && (uintptr_t)p % align != 0) { align /= 2; }
    return align;
}

// Column-major d (m, n) (+)= op(a) (m, k) op(b) (k, n), where op transposes when asked; a is stored
// (k, m) if trans_a else (m, k), b is stored (n, k) if trans_b else (k, n).
static inline void matmul_cublaslt(floatX *d, const floatX *a, const floatX *b, int m, int n, int k, bool trans_a,
                                   bool trans_b, bool accumulate, cudaStream_t stream) {
    if (matmul_handle == NULL) { die("matmul: matmul_init() was not called"); }
    if (m <= 0 || n <= 0 || k <= 0) { die("matmul: bad shape m=%d n=%d k=%d", m, n, k); }
    cublasLtMatmulDesc_t desc;
    cublasCheck(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
    cublasLtMatrixLayout_t layout_a, layout_b, layout_d;
    cublasCheck(trans_a ? cublasLtMatrixLayoutCreate(&layout_a, matmul_dtype, k, m, k)
                        : cublasLtMatrixLayoutCreate(&layout_a, matmul_dtype, m, k, m));
    cublasCheck(trans_b ? cublasLtMatrixLayoutCreate(&layout_b, matmul_dtype, n, k, n)
                        : cublasLtMatrixLayoutCreate(&layout_b, matmul_dtype, k, n, k));
    cublasCheck(cublasLtMatrixLayoutCreate(&layout_d, matmul_dtype, m, n, m));

    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &matmul_workspace_bytes, sizeof(matmul_workspace_bytes)));
    const uint32_t align_a = matmul_alignment(a), align_b = matmul_alignment(b), align_d = matmul_alignment(d);
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof(align_d)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof(align_d)));
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(matmul_handle, desc, layout_a, layout_b, layout_d, layout_d, pref, 1,
                                               &heuristic, &found));
    if (found == 0) { die("matmul: no cuBLASLt algorithm for m=%d n=%d k=%d trans_a=%d trans_b=%d", m, n, k, trans_a, trans_b); }

    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublasCheck(cublasLtMatmul(matmul_handle, desc, &alpha, a, layout_a, b, layout_b, &beta, d, layout_d, d, layout_d,
                               &heuristic.algo, matmul_workspace, matmul_workspace_bytes, stream));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    cublasCheck(cublasLtMatrixLayoutDestroy(layout_a));
    cublasCheck(cublasLtMatrixLayoutDestroy(layout_b));
    cublasCheck(cublasLtMatrixLayoutDestroy(layout_d));
    cublasCheck(cublasLtMatmulDescDestroy(desc));
}

// out (N, OC) = inp (N, C) weight^T, weight (OC, C). Column-major: out (OC, N) = weight^T (OC, C) inp (C, N).
static inline void matmul_forward(floatX *out, const floatX *inp, const floatX *weight, int N, int C, int OC,
                                  cudaStream_t stream) {
    matmul_cublaslt(out, weight, inp, OC, N, C, true, false, false, stream);
}

// dinp (N, C) (+)= dout (N, OC) weight, and dweight (OC, C) (+)= dout^T inp; each overwrites or accumulates by
// its flag (accumulate for gradient accumulation across micro-steps, or a gradient with two sources).
static inline void matmul_backward(floatX *dinp, floatX *dweight, const floatX *dout, const floatX *inp,
                                   const floatX *weight, int N, int C, int OC, bool accumulate_dinp,
                                   bool accumulate_dweight, cudaStream_t stream) {
    // column-major dinp (C, N) = weight (C, OC) dout (OC, N)
    matmul_cublaslt(dinp, weight, dout, C, N, OC, false, false, accumulate_dinp, stream);
    // column-major dweight (C, OC) = inp (C, N) dout^T (N, OC)
    matmul_cublaslt(dweight, inp, dout, C, OC, N, false, true, accumulate_dweight, stream);
}

#endif // LLMC_MATMUL_CUH
