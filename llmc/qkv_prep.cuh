/*
 Attention input preparation, fused: split the q|k|v projection into per-head tensors, apply the key
 convolution to k, then RoPE to q and k where the layer has it (doc/model.md).
   forward:  qkv (B*T, 3C) floatX, kconvw (C, W) floatX (W in {0, 3, 5}; absent when 0), key channel
             c = h*HD + d  ->  q, k, v (B, NH, T, HD) floatX
             z_t[c] = sum_{w<W} kconvw[c][w] * k_{t-w}[c] (0 before t = 0), k'_t = k_t + SiLU(z_t)
             (k' = k when W = 0)
             rope (rope != NULL) per head on pairs (i, i + HD/2): angle t * theta^(-2i/HD) (cos/sin
             table in fp32); NULL: no positional encoding (NoPE)
   backward: dq, dk, dv (B, NH, T, HD) -> dqkv (B*T, 3C) (overwritten): inverse rotation to dk', then
             dz_t = dk'_t SiLU'(z_t) and dk_t = dk'_t + sum_w kconvw[.][w] * dz_{t+w} (z recomputed
             from qkv); and dkconvw (C, W) (+)= sum_{b,t} dz_t[c] * k_{t-w}[c], reduced
             deterministically: fixed chunks of rows write fp32 partials to scratch, then one kernel
             sums the chunks in order.
 One thread per VW consecutive rotation pairs (row, head, i..i+VW-1), VW-wide loads and stores: reads 3C
 and writes 3C elements per row; the W taps of the convolution re-read earlier rows of k (the backward:
 W later rows of dk and their W x W taps of k), which the caches serve.
*/
#ifndef LLMC_QKV_PREP_CUH
#define LLMC_QKV_PREP_CUH

#include <math.h>
#include <type_traits>
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

// VW consecutive floatX moved with one access (VW * sizeof(floatX) bytes).
template <int VW> struct alignas(VW * sizeof(floatX)) VecX { floatX v[VW]; };
template <int VW> __device__ inline void load_vec(float (&dst)[VW], const floatX *p) {
    const VecX<VW> t = *reinterpret_cast<const VecX<VW> *>(p);
    for (int u = 0; u < VW; u++) { dst[u] = to_float(t.v[u]); }
}
template <int VW> __device__ inline void store_vec(floatX *p, const float (&src)[VW]) {
    VecX<VW> t;
    for (int u = 0; u < VW; u++) { t.v[u] = from_float<floatX>(src[u]); }
    *reinterpret_cast<VecX<VW> *>(p) = t;
}

// Where one thread's VW rotation pairs live: row n = b*T + t of qkv, channels c1 + u = h*HD + i + u and
// c2 + u = c1 + u + HD/2 (u < VW), and the offset of element i in the (B, NH, T, HD) tensors.
struct QkvGroup {
    int t, i, c1, c2;
    size_t row, out;
};

template <int VW> __device__ inline QkvGroup qkv_group(size_t idx, int T, int NH, int HD) {
    const int half = HD / 2, groups_per_row = NH * half / VW, groups_per_head = half / VW;
    const size_t n = idx / groups_per_row;
    const int rem = (int)(idx % groups_per_row), h = rem / groups_per_head;
    QkvGroup g;
    g.t = (int)(n % T);
    g.i = (rem % groups_per_head) * VW;
    g.c1 = h * HD + g.i;
    g.c2 = g.c1 + half;
    g.row = n * 3 * NH * HD;
    g.out = (((n / T) * NH + h) * T + g.t) * HD + g.i;
    return g;
}

// Rotates the pairs (x1[u], x2[u]) by the angles of position t, frequencies i + u; INVERSE applies the
// transpose (backward).
template <bool INVERSE, int VW>
__device__ inline void rotate(float (&x1)[VW], float (&x2)[VW], const float *rope, int t, int i, int half) {
    const float2 *cs = reinterpret_cast<const float2 *>(rope) + (size_t)t * half + i;
    for (int u = 0; u < VW; u++) {
        const float c = cs[u].x, s = INVERSE ? -cs[u].y : cs[u].y, a = x1[u], b = x2[u];
        x1[u] = a * c - b * s;
        x2[u] = b * c + a * s;
    }
}

// z_t of the key convolution at channels c1 + u and c2 + u (u < VW); key_row(w) points at the key row
// (C channels) of position t - w: in qkv for training (QkvKeyRow), in a ring of the last W keys for
// decoding (llmc/eval/kv_cache.cuh).
template <int W, int VW, typename KeyRow>
__device__ inline void kconv_preact(float (&z1)[VW], float (&z2)[VW], KeyRow key_row, int c1, int c2, int t,
                                    const floatX *kconvw) {
    for (int u = 0; u < VW; u++) { z1[u] = 0.0f; z2[u] = 0.0f; }
#pragma unroll
    for (int w = 0; w < W; w++) {
        if (t - w < 0) { break; }
        const floatX *prev = key_row(w);
        float p1[VW], p2[VW];
        load_vec(p1, prev + c1);
        load_vec(p2, prev + c2);
        for (int u = 0; u < VW; u++) {
            z1[u] += to_float(kconvw[(c1 + u) * W + w]) * p1[u];
            z2[u] += to_float(kconvw[(c2 + u) * W + w]) * p2[u];
        }
    }
}

// The key rows of kconv_preact in qkv (B*T, 3C), from the qkv row of position t.
struct QkvKeyRow {
    const floatX *row;
    int C;
    __device__ const floatX *operator()(int w) const { return row - (size_t)w * 3 * C + C; }
};

__device__ inline float silu_f(float z) { return z / (1.0f + expf(-z)); }
__device__ inline float silu_grad_f(float z) { const float s = 1.0f / (1.0f + expf(-z)); return s * (1.0f + z * (1.0f - s)); }

template <int W, int VW>
__global__ void qkv_prep_forward_kernel(floatX *q, floatX *k, floatX *v, const floatX *qkv, const floatX *kconvw,
                                        const float *rope, int N, int T, int NH, int HD) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int C = NH * HD, half = HD / 2;
    if (idx >= (size_t)N * C / (2 * VW)) { return; }
    const QkvGroup g = qkv_group<VW>(idx, T, NH, HD);
    const floatX *row = qkv + g.row;
    float x1[VW], x2[VW];
    load_vec(x1, row + g.c1);
    load_vec(x2, row + g.c2);
    if (rope) { rotate<false>(x1, x2, rope, g.t, g.i, half); }
    store_vec(q + g.out, x1);
    store_vec(q + g.out + half, x2);
    load_vec(x1, row + C + g.c1);
    load_vec(x2, row + C + g.c2);
    if (W > 0) {
        float z1[VW], z2[VW];
        kconv_preact<W>(z1, z2, QkvKeyRow{row, C}, g.c1, g.c2, g.t, kconvw);
        for (int u = 0; u < VW; u++) { x1[u] += silu_f(z1[u]); x2[u] += silu_f(z2[u]); }
    }
    if (rope) { rotate<false>(x1, x2, rope, g.t, g.i, half); }
    store_vec(k + g.out, x1);
    store_vec(k + g.out + half, x2);
    load_vec(x1, row + 2 * C + g.c1);
    load_vec(x2, row + 2 * C + g.c2);
    store_vec(v + g.out, x1);
    store_vec(v + g.out + half, x2);
}

template <int W, int VW>
__global__ void qkv_prep_backward_kernel(floatX *dqkv, const floatX *dq, const floatX *dk, const floatX *dv, const floatX *qkv,
                                         const floatX *kconvw, const float *rope, int N, int T, int NH, int HD) {
    const size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int C = NH * HD, half = HD / 2;
    if (idx >= (size_t)N * C / (2 * VW)) { return; }
    const QkvGroup g = qkv_group<VW>(idx, T, NH, HD);
    floatX *row = dqkv + g.row;
    const floatX *in_row = qkv + g.row;
    float x1[VW], x2[VW];
    load_vec(x1, dq + g.out);
    load_vec(x2, dq + g.out + half);
    if (rope) { rotate<true>(x1, x2, rope, g.t, g.i, half); }
    store_vec(row + g.c1, x1);
    store_vec(row + g.c2, x2);
    load_vec(x1, dk + g.out);  // the residual path: dk_t = dk'_t + ...
    load_vec(x2, dk + g.out + half);
    if (rope) { rotate<true>(x1, x2, rope, g.t, g.i, half); }
    // k_t feeds z_{t+w} through tap w: gather dz of the later positions (their dk', un-rotated, times SiLU'(z))
#pragma unroll
    for (int w = 0; w < W; w++) {
        if (g.t + w >= T) { break; }
        float g1[VW], g2[VW], z1[VW], z2[VW];
        load_vec(g1, dk + g.out + (size_t)w * HD);
        load_vec(g2, dk + g.out + (size_t)w * HD + half);
        if (rope) { rotate<true>(g1, g2, rope, g.t + w, g.i, half); }
        kconv_preact<W>(z1, z2, QkvKeyRow{in_row + (size_t)w * 3 * C, C}, g.c1, g.c2, g.t + w, kconvw);
        for (int u = 0; u < VW; u++) {
            x1[u] += to_float(kconvw[(g.c1 + u) * W + w]) * g1[u] * silu_grad_f(z1[u]);
            x2[u] += to_float(kconvw[(g.c2 + u) * W + w]) * g2[u] * silu_grad_f(z2[u]);
        }
    }
    store_vec(row + C + g.c1, x1);
    store_vec(row + C + g.c2, x2);
    load_vec(x1, dv + g.out);
    load_vec(x2, dv + g.out + half);
    store_vec(row + 2 * C + g.c1, x1);
    store_vec(row + 2 * C + g.c2, x2);
}

// partials[chunk][c][w] = sum over the chunk's rows of dz_t[c] * k_{t-w}[c]; one thread per pair (h, i),
// consecutive threads on consecutive channels.
template <int W>
__global__ void kconv_dweight_partials_kernel(float *partials, const floatX *dk, const floatX *qkv, const floatX *kconvw,
                                              const float *rope, int N, int T, int NH, int HD, int rows_per_chunk) {
    const int pair = blockIdx.y * blockDim.x + threadIdx.x, C = NH * HD, half = HD / 2;
    if (pair >= C / 2) { return; }
    float acc1[W], acc2[W];
#pragma unroll
    for (int w = 0; w < W; w++) { acc1[w] = 0.0f; acc2[w] = 0.0f; }
    const int n_end = min(N, (blockIdx.x + 1) * rows_per_chunk);
    for (int n = blockIdx.x * rows_per_chunk; n < n_end; n++) {
        const QkvGroup g = qkv_group<1>((size_t)n * (C / 2) + pair, T, NH, HD);
        float g1[1], g2[1], z1[1], z2[1];
        load_vec(g1, dk + g.out);
        load_vec(g2, dk + g.out + half);
        if (rope) { rotate<true>(g1, g2, rope, g.t, g.i, half); }
        kconv_preact<W>(z1, z2, QkvKeyRow{qkv + g.row, C}, g.c1, g.c2, g.t, kconvw);
        g1[0] *= silu_grad_f(z1[0]);
        g2[0] *= silu_grad_f(z2[0]);
#pragma unroll
        for (int w = 0; w < W; w++) {
            if (g.t - w < 0) { break; }
            const floatX *prev = qkv + g.row - (size_t)w * 3 * C;
            acc1[w] += g1[0] * to_float(prev[C + g.c1]);
            acc2[w] += g2[0] * to_float(prev[C + g.c2]);
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

// Calls launch(vw, w) with std::integral_constant values: w = W, vw = pairs per thread (4, 2 or 1: the
// widest that divides HD/2, so accesses are 4*sizeof(floatX) bytes at the usual head sizes).
template <typename Launch> static inline void qkv_prep_dispatch(int HD, int W, Launch launch) {
    auto with_vw = [&](auto vw) {
        switch (W) {
        case 0: launch(vw, std::integral_constant<int, 0>()); break;
        case 3: launch(vw, std::integral_constant<int, 3>()); break;
        case 5: launch(vw, std::integral_constant<int, 5>()); break;
        }
    };
    const int half = HD / 2;
    if (half % 4 == 0) {
        with_vw(std::integral_constant<int, 4>());
    } else if (half % 2 == 0) {
        with_vw(std::integral_constant<int, 2>());
    } else {
        with_vw(std::integral_constant<int, 1>());
    }
}

static inline int qkv_prep_blocks(int N, int C, int vw) { return (int)CEIL_DIV((size_t)N * C / (2 * vw), (size_t)QKV_THREADS); }

// Bytes of fp32 scratch qkv_prep_backward needs (0 when W = 0).
static inline size_t qkv_prep_backward_scratch_bytes(int C, int W) { return (size_t)QKV_KCONV_CHUNKS * C * W * sizeof(float); }

// q, k, v (B, NH, T, HD) from qkv (B*T, 3C); rope from rope_table_init with max_T >= T, or NULL for no
// positional encoding; kconvw (C, W) or NULL when W = 0.
static inline void qkv_prep_forward(floatX *q, floatX *k, floatX *v, const floatX *qkv, const floatX *kconvw,
                                    const float *rope, int B, int T, int NH, int HD, int W, cudaStream_t stream) {
    qkv_prep_check_shape(B, T, NH, HD, W, "qkv_prep_forward");
    const int N = B * T;
    qkv_prep_dispatch(HD, W, [&](auto vw, auto w) {
        qkv_prep_forward_kernel<w, vw><<<qkv_prep_blocks(N, NH * HD, vw), QKV_THREADS, 0, stream>>>(q, k, v, qkv, kconvw, rope, N, T, NH, HD);
        cudaCheckLaunch();
    });
}

// dqkv (B*T, 3C) = gradient wrt qkv (overwritten); dkconvw (C, W) overwritten or accumulated by flag
// (untouched, may be NULL, when W = 0). qkv is the forward's input; scratch: qkv_prep_backward_scratch_bytes.
static inline void qkv_prep_backward(floatX *dqkv, floatX *dkconvw, float *scratch, const floatX *dq, const floatX *dk,
                                     const floatX *dv, const floatX *qkv, const floatX *kconvw, const float *rope, int B,
                                     int T, int NH, int HD, int W, bool accumulate_dkconvw, cudaStream_t stream) {
    qkv_prep_check_shape(B, T, NH, HD, W, "qkv_prep_backward");
    const int N = B * T, C = NH * HD;
    qkv_prep_dispatch(HD, W, [&](auto vw, auto w) {
        qkv_prep_backward_kernel<w, vw><<<qkv_prep_blocks(N, C, vw), QKV_THREADS, 0, stream>>>(dqkv, dq, dk, dv, qkv, kconvw, rope, N, T, NH, HD);
        cudaCheckLaunch();
        if constexpr (w > 0) {
            const int rows_per_chunk = CEIL_DIV(N, QKV_KCONV_CHUNKS), num_chunks = CEIL_DIV(N, rows_per_chunk);
            const dim3 grid(num_chunks, CEIL_DIV(C / 2, QKV_THREADS));
            kconv_dweight_partials_kernel<w><<<grid, QKV_THREADS, 0, stream>>>(scratch, dk, qkv, kconvw, rope, N, T, NH, HD, rows_per_chunk);
            cudaCheckLaunch();
            kconv_dweight_reduce_kernel<<<CEIL_DIV(C * W, 256), 256, 0, stream>>>(dkconvw, scratch, num_chunks, C * W, accumulate_dkconvw);
            cudaCheckLaunch();
        }
    });
}

#endif // LLMC_QKV_PREP_CUH
