/*
 Fused softmax cross-entropy on the LM-head logits, without an (N, V) fp32 probability tensor.
   losses[n]  = logsumexp(logits[n, :]) - logits[n, target[n]]                (fp32, N; 0 where target = -1)
   logits[n, v] <- (softmax(logits[n, :])[v] - [v == target[n]]) * dloss / loss_count   (in place, floatX)
 Rows with target -1 are ignored (loss 0, gradient row 0); a target outside [-1, V) yields a NaN loss so
 bad data cannot pass unnoticed. One CTA per row: pass 1 reads the row once (online max and sum of
 exponentials), pass 2 re-reads it from L2 and writes the gradient. Traffic: N*V read + N*V written
 (N*V read only in forward-only mode). Any V: rows need not be 16-byte aligned, so each row is walked as an
 unaligned head, a 128-bit-aligned body and a tail.
*/
#ifndef LLMC_CLASSIFIER_CUH
#define LLMC_CLASSIFIER_CUH

#include "llmc/cuda_common.cuh"
#include "llmc/cuda_utils.cuh"
#include "llmc/utils.h"

#define CLASSIFIER_THREADS 1024

__global__ void fused_classifier_kernel(floatX *logits, float *losses, const int *targets, float grad_scale, int V,
                                        bool write_dlogits) {
    floatX *row = logits + (size_t)blockIdx.x * V;
    const int target = targets[blockIdx.x];
    if (target == -1) {
        if (threadIdx.x == 0) { losses[blockIdx.x] = 0.0f; }
        if (write_dlogits) { foreach128<true>(row, V, threadIdx.x, blockDim.x, [](size_t v, float x) { return 0.0f; }); }
        return;
    }
    float m = -INFINITY, s = 0.0f; // this thread's running max and sum of exp(x - m)
    foreach128<false>(row, V, threadIdx.x, blockDim.x, [&](size_t v, float x) {
        if (x > m) { s = s * expf(m - x) + 1.0f; m = x; } else { s += expf(x - m); }
        return x;
    });
    const float row_max = block_reduce_max(m);
    const float sum = block_reduce_sum(m == -INFINITY ? 0.0f : s * expf(m - row_max));
    if (threadIdx.x == 0) {
        losses[blockIdx.x] = (target >= 0 && target < V) ? logf(sum) + row_max - to_float(row[target]) : NAN;
    }
    if (write_dlogits) {
        __syncthreads(); // row[target] is read above before pass 2 overwrites it
        const float inv_sum = 1.0f / sum;
        foreach128<true>(row, V, threadIdx.x, blockDim.x, [&](size_t v, float x) {
            return (expf(x - row_max) * inv_sum - (v == (size_t)target ? 1.0f : 0.0f)) * grad_scale;
        });
    }
}

// losses (N) = per-row cross-entropy of logits (N, V) against targets (N, -1 = ignore). With write_dlogits,
// logits are overwritten by the gradient of dloss * sum(losses) / loss_count (the caller folds
// 1/grad_accum_steps into dloss; loss_count = number of non-ignored targets of the whole batch).
static inline void fused_classifier(floatX *logits, float *losses, const int *targets, float dloss, int loss_count,
                                    int N, int V, bool write_dlogits, cudaStream_t stream) {
    if (N <= 0 || V <= 0) { die("fused_classifier: bad shape N=%d V=%d", N, V); }
    if (write_dlogits && loss_count <= 0) { die("fused_classifier: loss_count %d must be positive", loss_count); }
    const float grad_scale = write_dlogits ? dloss / loss_count : 0.0f;
    fused_classifier_kernel<<<N, CLASSIFIER_THREADS, 0, stream>>>(logits, losses, targets, grad_scale, V, write_dlogits);
    cudaCheckLaunch();
}

#endif // LLMC_CLASSIFIER_CUH
