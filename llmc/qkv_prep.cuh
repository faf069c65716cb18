/*
 Attention input preparation, fused: split the q|k|v projection into per-head tensors, apply the key
 convolution to k, then RoPE to q and k (doc/model.md).
   forward:  qkv (B*T, 3C) floatX, kconvw (C, W) floatX (W in {0, 3, 5}; absent when 0), key channel
             c = h*HD + d  ->  q, k, v (B, NH, T, HD) floatX
             k'_t[c] = sum_{w<W} kconvw[c][w] * k_{t-w}[c]  (0 before t = 0; k' = k when W = 0)
             rope per head on pairs (i, i + HD/2): angle t * theta^(-2i/HD) (cos/sin table in fp32)
   backward: dq, dk, dv (B, NH, T, HD) -> dqkv (B*T, 3C) (overwritten): inverse rotation, then the
             transposed convolution dk_t = sum_w kconvw[.][w] * dk'_{t+w}; and dkconvw (C, W)
             (+)= sum_{b,t} dk'_t[c] * k_{t-w}[c], reduced deterministically: fixed chunks of rows write
             fp32 partials to scratch, then one kernel sums the chunks in order.
 One thread per rotation pair (row, head, i): reads 3C and writes 3C elements per row; the W taps of the
 convolution re-read earlier rows of k, which the caches serve.
*/
#ifndef LLMC_QKV_PREP_CUH
#define LLMC_QKV_PREP_CUH

#include <math.h>
#include <vector>
#include "llmc/cuda_common.cuh"
#include "llmc/utils.h"

#define QKV_KCONV_CHUNKS 256 // fixed number of row chunks in the dkconvw reduction
#define QKV_THREADS 256

// Bytes of the fp32 RoPE table for positions [0, max_T): (max_T, HD/2) pairs (cos, sin).
static inline size_t rope_table_bytes(int max_T, int HD) { return (size_t)max_T * (HD / 2) * 2 * sizeof(float); }

// Fills the device table d_rope (rope_table_bytes) once; angles computed in double, stored as fp32.
static inline void rope_table_init(float *d_rope, int max_T, int HD, float theta) {
    if (max_T <= 0 || HD <= 0 || HD % 2 != 0) { die("rope_table_init: bad max_T=%d HD=%d (HD must be even)", max_T, HD); }
    const int half = HD / 2;
    std::vector<float> table((size_t)max_T * half * 2);
    for (int t = 0; t < max_T; t++) {
        for (int i = 0; i < half; i++) {
            const double angle = t * pow((double)theta, -2.0 * i / HD);
            table[((size_t)t * half + i) * 2] = (float)cos(angle);
            table[((size_t)t * half + i) * 2 + 1] = (float)sin(angle);
        }
    }
    cudaCheck(cudaMemcpy(d_rope, table.data(), rope_table_bytes(max_T, HD), cudaMemcpyHostToDevice));
}

// Where one thread's rotation pair lives: row n = b*T + t of qkv, channels c1 = h*HD + i and c2 = c1 + HD/2,
// and the offset of element i in the (B, NH, T, HD) tensors.
struct QkvPair {
    int t, c1, c2;
    size_t row, out;
    float2 cs; // cos, sin of this position and frequency
};

__device__ inline QkvPair qkv_pair(size_t idx, int T, int NH, int HD, const float *rope) {
    const int half = HD / 2, C = NH * HD;
    const size_t n = idx / (C / 2);
    const int rem = (int)(idx % (C / 2)), h = rem / half, i = rem % half;
    QkvPair p;
    p.t = (int)(n % T);
    p.c1 = h * HD + i;
    p.c2 = p.c1 + half;
    p.row = n * 3 * C;
    p.out = (((n / T) * NH + h) * T + p.t) * HD + i;
    p.cs = reinterpret_cast<const float2 *>(rope)[(size_t)p.t * half + i];
    return p;
}

// Rotation of (x1, x2) by the pair's angle; the inverse rotation is the transpose (backward).
template <bool INVERSE> __device__ inline float2 rotate(float x1, float x2, float2 cs) {
    const float s = INVERSE ? -cs.y : cs.y;
    return make_float2(x1 * cs.x - x2 * s, x2 * cs.x + x1 * s);
}

template <int W>
__global__ void qkv_prep_forward_kernel(floatX *q, floatX *k, floatX *v, const floatX *qkv, const floatX *kconvw,
                                        const float *rope, int N, int T, int NH, int HD) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int C = NH * HD, half = HD / 2;
    if (idx >= (size_t)N * C / 2) { return; }
    const QkvPair p = qkv_pair(idx, T, NH, HD, rope);
    const floatX *row = qkv + p.row;
    const float2 qr = rotate<false>(to_float(row[p.c1]), to_float(row[p.c2]), p.cs);
    q[p.out] = from_float<floatX>(qr.x);
    q[p.out + half] = from_float<floatX>(qr.y);
    float k1 = 0.0f, k2 = 0.0f;
    if (W == 0) {
        k1 = to_float(row[C + p.c1]);
        k2 = to_float(row[C + p.c2]);
    }
#pragma unroll
    for (int w = 0; w < W; w++) {
        if (p.t - w < 0) { break; }
        const floatX *prev = row - (size_t)w * 3 * C;
        k1 += to_float(kconvw[p.c1 * W + w]) * to_float(prev[C + p.c1]);
        k2 += to_float(kconvw[p.c2 * W + w]) * to_float(prev[C + p.c2]);
    }
    const float2 kr = rotate<false>(k1, k2, p.cs);
    k[p.out] = from_float<floatX>(kr.x);
    k[p.out + half] = from_float<floatX>(kr.y);
    v[p.out] = row[2 * C + p.c1];
    v[p.out + half] = row[2 * C + p.c2];
}

template <int W>
__global__ void qkv_prep_backward_kernel(floatX *dqkv, const floatX *dq, const floatX *dk, const floatX *dv,
                                         const floatX *kconvw, const float *rope, int N, int T, int NH, int HD) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int C = NH * HD, half = HD / 2;
    if (idx >= (size_t)N * C / 2) { return; }
    const QkvPair p = qkv_pair(idx, T, NH, HD, rope);
    floatX *row = dqkv + p.row;
    const float2 gq = rotate<true>(to_float(dq[p.out]), to_float(dq[p.out + half]), p.cs);
    row[p.c1] = from_float<floatX>(gq.x);
    row[p.c2] = from_float<floatX>(gq.y);
    float g1 = 0.0f, g2 = 0.0f;
    if (W == 0) {
        const float2 gk = rotate<true>(to_float(dk[p.out]), to_float(dk[p.out + half]), p.cs);
        g1 = gk.x;
        g2 = gk.y;
    }
    // k_t feeds k'_{t+w} through tap w: gather the un-rotated gradients of the later positions
#pragma unroll
    for (int w = 0; w < W; w++) {
        if (p.t + w >= T) { break; }
        const size_t later = p.out + (size_t)w * HD;
        const float2 cs = reinterpret_cast<const float2 *>(rope)[(size_t)(p.t + w) * half + (p.c1 % HD)];
        const float2 gk = rotate<true>(to_float(dk[later]), to_float(dk[later + half]), cs);
        g1 += to_float(kconvw[p.c1 * W + w]) * gk.x;
        g2 += to_float(kconvw[p.c2 * W + w]) * gk.y;
    }
    row[C + p.c1] = from_float<floatX>(g1);
    row[C + p.c2] = from_float<floatX>(g2);
    row[2 * C + p.c1] = dv[p.out];
    row[2 * C + p.c2] = dv[p.out + half];
}

// partials[chunk][c][w] = sum over the chunk's rows of dk'_t[c] * k_{t-w}[c]; one thread per pair (h, i).
template <int W>
__global__ void kconv_dweight_partials_kernel(float *partials, const floatX *dk, const floatX *qkv, const float *rope,
                                              int N, int T, int NH, int HD, int rows_per_chunk) {
    const int pair = blockIdx.y * blockDim.x + threadIdx.x, C = NH * HD, half = HD / 2;
    if (pair >= C / 2) { return; }
    float acc1[W], acc2[W];
#pragma unroll
    for (int w = 0; w < W; w++) { acc1[w] = 0.0f; acc2[w] = 0.0f; }
    const int n_end = min(N, (blockIdx.x + 1) * rows_per_chunk);
    for (int n = blockIdx.x * rows_per_chunk; n < n_end; n++) {
        const QkvPair p = qkv_pair((size_t)n * (C / 2) + pair, T, NH, HD, rope);
        const float2 gk = rotate<true>(to_float(dk[p.out]), to_float(dk[p.out + half]), p.cs);
#pragma unroll
        for (int w = 0; w < W; w++) {
            if (p.t - w < 0) { break; }
            const floatX *prev = qkv + p.row - (size_t)w * 3 * C;
            acc1[w] += gk.x * to_float(prev[C + p.c1]);
            acc2[w] += gk.y * to_float(prev[C + p.c2]);
        }
    }
    const int c1 = (pair / half) * HD + pair % half, c2 = c1 + half;
    float *dst = partials + (size_t)blockIdx.x * C * W;
#pragma unroll
    for (int w = 0; w < W; w++) {
        dst[c1 * W + w] = acc1[w];
        dst[c2 * W + w] = acc2[w];
    }
}

// dkconvw[i] (+)= sum over chunks, in chunk order, of partials[chunk][i], i < C*W.
__global__ void kconv_dweight_reduce_kernel(floatX *dkconvw, const float *partials, int num_chunks, int CW,
                                            bool accumulate) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= CW) { return; }
    float sum = accumulate ? to_float(dkconvw[i]) : 0.0f;
    for (int c = 0; c < num_chunks; c++) { sum += partials[(size_t)c * CW + i]; }
    dkconvw[i] = from_float<floatX>(sum);
}

static inline void qkv_prep_check_shape(int B, int T, int NH, int HD, int W, const char *where) {
    if (B <= 0 || T <= 0 || NH <= 0 || HD <= 0 || HD % 2 != 0 || (W != 0 && W != 3 && W != 5)) {
        die("%s: unsupported B=%d T=%d NH=%d HD=%d W=%d (HD even, W in {0, 3, 5})", where, B, T, NH, HD, W);
    }
}

static inline int qkv_prep_blocks(int N, int C) { return (int)CEIL_DIV((size_t)N * C / 2, (size_t)QKV_THREADS); }

// Bytes of fp32 scratch qkv_prep_backward needs (0 when W = 0).
static inline size_t qkv_prep_backward_scratch_bytes(int C, int W) { return (size_t)QKV_KCONV_CHUNKS * C * W * sizeof(float); }

// q, k, v (B, NH, T, HD) from qkv (B*T, 3C); rope from rope_table_init with max_T >= T; kconvw (C, W) or
// NULL when W = 0.
static inline void qkv_prep_forward(floatX *q, floatX *k, floatX *v, const floatX *qkv, const floatX *kconvw,
                                    const float *rope, int B, int T, int NH, int HD, int W, cudaStream_t stream) {
    qkv_prep_check_shape(B, T, NH, HD, W, "qkv_prep_forward");
    const int N = B * T, blocks = qkv_prep_blocks(N, NH * HD);
    switch (W) {
    case 0: qkv_prep_forward_kernel<0><<<blocks, QKV_THREADS, 0, stream>>>(q, k, v, qkv, kconvw, rope, N, T, NH, HD); break;
    case 3: qkv_prep_forward_kernel<3><<<blocks, QKV_THREADS, 0, stream>>>(q, k, v, qkv, kconvw, rope, N, T, NH, HD); break;
    case 5: qkv_prep_forward_kernel<5><<<blocks, QKV_THREADS, 0, stream>>>(q, k, v, qkv, kconvw, rope, N, T, NH, HD); break;
    }
    cudaCheckLaunch();
}

template <int W>
static inline void qkv_prep_backward_w(floatX *dqkv, floatX *dkconvw, float *scratch, const floatX *dq, const floatX *dk,
                                       const floatX *dv, const floatX *qkv, const floatX *kconvw, const float *rope,
                                       int N, int T, int NH, int HD, bool accumulate_dkconvw, cudaStream_t stream) {
    const int C = NH * HD;
    qkv_prep_backward_kernel<W><<<qkv_prep_blocks(N, C), QKV_THREADS, 0, stream>>>(dqkv, dq, dk, dv, kconvw, rope, N, T, NH, HD);
    cudaCheckLaunch();
    if constexpr (W > 0) {
        const int rows_per_chunk = CEIL_DIV(N, QKV_KCONV_CHUNKS), num_chunks = CEIL_DIV(N, rows_per_chunk);
        const dim3 grid(num_chunks, CEIL_DIV(C / 2, QKV_THREADS));
        kconv_dweight_partials_kernel<W><<<grid, QKV_THREADS, 0, stream>>>(scratch, dk, qkv, rope, N, T, NH, HD, rows_per_chunk);
        cudaCheckLaunch();
        kconv_dweight_reduce_kernel<<<CEIL_DIV(C * W, 256), 256, 0, stream>>>(dkconvw, scratch, num_chunks, C * W, accumulate_dkconvw);
        cudaCheckLaunch();
    }
}

// dqkv (B*T, 3C) = gradient wrt qkv (overwritten); dkconvw (C, W) overwritten or accumulated by flag
// (untouched, may be NULL, when W = 0). qkv is the forward's input; scratch: qkv_prep_backward_scratch_bytes.
static inline void qkv_prep_backward(floatX *dqkv, floatX *dkconvw, float *scratch, const floatX *dq, const floatX *dk,
                                     const floatX *dv, const floatX *qkv, const floatX *kconvw, const float *rope, int B,
                                     int T, int NH, int HD, int W, bool accumulate_dkconvw, cudaStream_t stream) {
    qkv_prep_check_shape(B, T, NH, HD, W, "qkv_prep_backward");
    const int N = B * T;
    switch (W) {
    case 0: qkv_prep_backward_w<0>(dqkv, dkconvw, scratch, dq, dk, dv, qkv, kconvw, rope, N, T, NH, HD, accumulate_dkconvw, stream); break;
    case 3: qkv_prep_backward_w<3>(dqkv, dkconvw, scratch, dq, dk, dv, qkv, kconvw, rope, N, T, NH, HD, accumulate_dkconvw, stream); break;
    case 5: qkv_prep_backward_w<5>(dqkv, dkconvw, scratch, dq, dk, dv, qkv, kconvw, rope, N, T, NH, HD, accumulate_dkconvw, stream); break;
    }
}

#endif // LLMC_QKV_PREP_CUH
