/*
 Fused softmax cross-entropy on the LM-head logits, without an (N, V) fp32 probability tensor.
   losses[n]  = logsumexp(logits[n, :]) - logits[n, target[n]]                (fp32, N; 0 where target = -1)
   logits[n, v] <- (softmax(logits[n, :])[v] - [v == target[n]]) * dloss / loss_count   (in place, floatX)
 Rows with target -1 are ignored (loss 0, gradient row 0); a target outside [-1, V) yields a NaN loss so
 bad data cannot pass unnoticed. One CTA of 1024 threads per row, two ways:
 - the row fits in registers (V a multiple of 8, at most 1024 x 8 x CLASSIFIER_MAX_CHUNKS = 32,768: the
   presets' vocabularies): each thread loads its 128-bit chunks once, then max, sum of
   exponentials and the gradient come from registers. Traffic: N*V read + N*V written, each once.
 - any other V (rows need not be 16-byte aligned: each row is walked as an unaligned head, a 128-bit-aligned
   body and a tail): pass 1 reads the row (online max and sum), pass 2 re-reads it from L2 and writes.
 Forward-only mode (no gradient) reads N*V only.
*/
#ifndef LLMC_CLASSIFIER_CUH
#define LLMC_CLASSIFIER_CUH

#include "llmc/cuda_common.cuh"
#include "llmc/cuda_utils.cuh"
#include "llmc/utils.h"

#define CLASSIFIER_THREADS 1024

#define CLASSIFIER_MAX_CHUNKS 4  // 32 fp32 values per thread: within the 64 registers of a 1024-thread CTA

// The loss of a row from its max, sum of exp(x - max) and target logit; NaN for a target outside [0, V).
__device__ inline float row_loss(float row_max, float sum, float target_logit, int target, int V) {
    return (target >= 0 && target < V) ? logf(sum) + row_max - target_logit : NAN;
}

// A row whose target is -1: loss 0 and, when the gradient is written, a zero gradient row.
__device__ inline void ignored_row(floatX *row, float *losses, int V, bool write_dlogits) {
    if (threadIdx.x == 0) { losses[blockIdx.x] = 0.0f; }
    if (write_dlogits) { foreach128<true>(row, V, threadIdx.x, blockDim.x, [](size_t v, float x) { return 0.0f; }); }
}

template <int CHUNKS>
__global__ void __launch_bounds__(CLASSIFIER_THREADS) classifier_in_registers_kernel(floatX *logits, float *losses, const int *targets,
                                                                                    float grad_scale, int V, bool write_dlogits) {
    floatX *row = logits + (size_t)blockIdx.x * V;
    const int target = targets[blockIdx.x], nvec = V / x128::size;
    if (target == -1) {
        ignored_row(row, losses, V, write_dlogits);
        return;
    }
    const float target_logit = (threadIdx.x == 0 && target >= 0 && target < V) ? to_float(row[target]) : 0.0f;
    float e[CHUNKS][x128::size], m = -INFINITY;
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
        const int k = threadIdx.x + c * CLASSIFIER_THREADS;
        if (k < nvec) {
            const x128 x = load128cs(row + (size_t)k * x128::size);
            for (int j = 0; j < x128::size; j++) { e[c][j] = to_float(x[j]); m = fmaxf(m, e[c][j]); }
        }
    }
    const float row_max = block_reduce_max(m);
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
        if (threadIdx.x + c * CLASSIFIER_THREADS < nvec) {
            for (int j = 0; j < x128::size; j++) { e[c][j] = expf(e[c][j] - row_max); s += e[c][j]; }
        }
    }
    const float sum = block_reduce_sum(s);
    if (threadIdx.x == 0) { losses[blockIdx.x] = row_loss(row_max, sum, target_logit, target, V); }
    if (!write_dlogits) { return; }
    const float inv_sum = 1.0f / sum;
#pragma unroll
    for (int c = 0; c < CHUNKS; c++) {
        const int k = threadIdx.x + c * CLASSIFIER_THREADS;
        if (k < nvec) {
            x128 y;
            for (int j = 0; j < x128::size; j++) {
                const int v = k * x128::size + j;
                y[j] = from_float<floatX>((e[c][j] * inv_sum - (v == target ? 1.0f : 0.0f)) * grad_scale);
            }
            store128cs(row + (size_t)k * x128::size, y);
        }
    }
}

__global__ void fused_classifier_kernel(floatX *logits, float *losses, const int *targets, float grad_scale, int V,
                                        bool write_dlogits) {
    floatX *row = logits + (size_t)blockIdx.x * V;
    const int target = targets[blockIdx.x];
    if (target == -1) {
        ignored_row(row, losses, V, write_dlogits);
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
        losses[blockIdx.x] = row_loss(row_max, sum, (target >= 0 && target < V) ? to_float(row[target]) : 0.0f, target, V);
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
    const int chunks = CEIL_DIV(V, CLASSIFIER_THREADS * x128::size);
    if (V % x128::size != 0 || chunks > CLASSIFIER_MAX_CHUNKS) {
        fused_classifier_kernel<<<N, CLASSIFIER_THREADS, 0, stream>>>(logits, losses, targets, grad_scale, V, write_dlogits);
    } else {
        // one instantiation per register footprint: 1, 2 or 4 chunks of 8 values per thread
        auto kernel = chunks <= 1 ? classifier_in_registers_kernel<1> : chunks <= 2 ? classifier_in_registers_kernel<2>
                                                                      : classifier_in_registers_kernel<4>;
        kernel<<<N, CLASSIFIER_THREADS, 0, stream>>>(logits, losses, targets, grad_scale, V, write_dlogits);
    }
    cudaCheckLaunch();
}

#endif // LLMC_CLASSIFIER_CUH
