/*
 AdamW step for one parameter tensor of n elements, on fp32 master weights (as PyTorch's AdamW):
   g = grad * grad_scale                      (grad_scale folds in gradient clipping)
   m = beta1 m + (1 - beta1) g,   v = beta2 v + (1 - beta2) g^2
   master -= lr * (m / (1 - beta1^t) / (sqrt(v / (1 - beta2^t)) + eps) + weight_decay * master)
   params = floatX(master)                    (the working copy the forward pass reads)
 Memory-bound: reads master, m, v (fp32) and grads (floatX), writes master, m, v and params once each.
 Elementwise, no reductions: deterministic.
*/
#ifndef LLMC_ADAMW_CUH
#define LLMC_ADAMW_CUH

#include <math.h>
#include "llmc/cuda_common.cuh"
#include "llmc/utils.h"

__global__ void adamw_kernel(float *master, floatX *params, float *m, float *v, const floatX *grads, size_t n,
                             float lr, float beta1, float beta2, float bias_correction1, float bias_correction2,
                             float eps, float weight_decay, float grad_scale) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float g = to_float(grads[i]) * grad_scale;
        const float mi = beta1 * m[i] + (1.0f - beta1) * g;
        const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        const float p = master[i];
        const float updated = p - lr * (mi / bias_correction1 / (sqrtf(vi / bias_correction2) + eps) + weight_decay * p);
        master[i] = updated;
        params[i] = from_float<floatX>(updated);
    }
}

// One AdamW step (t = 1, 2, ...) of a tensor: updates master, m, v in place and writes params.
// The trainer passes weight_decay = 0 for norm and kconv weights.
static inline void adamw_update(float *master, floatX *params, float *m, float *v, const floatX *grads, size_t n,
                                float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                                int t, cudaStream_t stream) {
    if (t < 1) { die("adamw_update: step t=%d must be >= 1", t); }
    if (n == 0) { return; }
    const float bias_correction1 = (float)(1.0 - pow(beta1, t)), bias_correction2 = (float)(1.0 - pow(beta2, t));
    const int threads = 256;
    const size_t needed = CEIL_DIV(n, (size_t)threads);
    const int blocks = (int)(needed < 65536 ? needed : 65536); // grid-stride beyond that
    adamw_kernel<<<blocks, threads, 0, stream>>>(master, params, m, v, grads, n, lr, beta1, beta2, bias_correction1,
                                                 bias_correction2, eps, weight_decay, grad_scale);
    cudaCheckLaunch();
}

#endif // LLMC_ADAMW_CUH
