/*
 Flash attention on the GPU, dense causal or sliding-window (doc/model.md). MoBA layers run through
 llmc/moba_attention.cuh, which reuses this file's per-tile steps (online_softmax, dq_step, dkdv_step,
 walk_kv_tiles, store_dkdv) and simple kernels.
 q, k, v: (B, NH, T, HD) floatX; o, dout: (B, T, NH, HD); lse: (B, NH, T) fp32, natural log of the sum
 of exp(scaled scores), scale 1/sqrt(HD). dq, dk, dv: (B, NH, T, HD). HD in {64, 128}, any T >= 1.
 window > 0: query t sees keys [t - window + 1, t] (sliding-window attention); 0: keys [0, t].
 The simple kernels also take a MoBA selection (sel != NULL): key j is visible to query t iff j <= t
 and block j/block_size is in t's list; one softmax over all visible keys; no gradient through it.

 The kernels attention_forward / attention_backward run (bf16 build, sm_90a):
 - forward: the FlashAttention-3-style kernel of attention_fwd_hopper.cuh (TMA producer warpgroup,
   mbarrier stages, two overlapped, ping-ponged consumer warpgroups of 64 queries, 128-key tiles).
 - backward, recomputing P from lse: D = rowsum(dO o), then dK, dV by the TMA / mbarrier kernel of
   attention_bwd_hopper.cuh (a producer warpgroup and two consumer warpgroups = 128 keys per CTA; at HD 64
   128-query tiles with each tile's dQ by one warpgroup, alternating; at HD 128 64-query tiles, dQ split
   by columns), which also adds dQ into fp32 accumulators by TMA reductions. Where the TMA boxes do not
   fit (tma_backward_fits), the one-warpgroup kernel dkdv_wgmma_kernel below (dQ by fp32 atomics).
   Deterministic mode: the same dK/dV kernels without dQ, and dQ from the query-centric dq_wgmma_kernel,
   written once.
 Both use warpgroup MMA (wgmma) with operands in 128-byte-swizzled shared memory (llmc/wgmma_tiles.cuh).
 The MoBA kernels use the mma.sync steps (m16n8k16 bf16 -> fp32, ldmatrix from XOR-swizzled shared
 memory, cp.async double buffering; llmc/mma_tiles.cuh) defined here.
 fp32 build (ENABLE_FP32): one thread per query / key, plain loops: slow, simple, for debugging.
 The earlier dense kernels, each still checked and timed, are dev/cuda/attention_dense.cu's versions.
*/
#ifndef LLMC_FLASH_ATTENTION_CUH
#define LLMC_FLASH_ATTENTION_CUH

#include <math.h>
#include <stdint.h>
#include <type_traits>
#include "cuda_common.cuh"
#include "mma_tiles.cuh"
#include "wgmma_tiles.cuh"
#include "moba_selection.h"
#include "utils.h"

// ---------------------------------------------------------------------------------------------------
// Simple path: one thread per query (forward, dQ) or per key (dK, dV). Used by the fp32 build and as
// version 1 of the dev programs. Visible keys of query t come as ranges [lo, hi]: one per block.
// Without a selection, window > 0 limits the keys to [t - window + 1, t] (sliding-window attention).
template <typename F>
__device__ void for_each_visible_key(const MobaSelection &sel, int window, size_t bh, int T, int t, F f) {
    if (sel.blocks == NULL) { for (int j = window > 0 ? max(0, t - window + 1) : 0; j <= t; j++) { f(j); } return; }
    const int *list = sel.blocks + (bh * T + t) * sel.topk;  // the key blocks query t of head bh selected
    for (int s = 0; s < sel.topk; s++) {
        int b = list[s];
        if (b < 0) { continue; }
        for (int j = b * sel.block_size; j <= t && j < (b + 1) * sel.block_size; j++) { f(j); }
    }
}

template <typename T>
__device__ inline float dot_rows(const T *a, const T *b, int HD) {
    float s = 0.0f;
    for (int d = 0; d < HD; d++) { s += to_float(a[d]) * to_float(b[d]); }
    return s;
}

template <typename T>
__global__ void attention_forward_simple_kernel(T *o, float *lse, const T *q, const T *k, const T *v,
                                                int NH, int T_, int HD, MobaSelection sel, int window, float scale) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= T_) { return; }
    size_t bh = blockIdx.y;
    const T *qt = q + (bh * T_ + t) * HD;
    float m = -INFINITY;
    for_each_visible_key(sel, window, bh, T_, t, [&](int j) { m = fmaxf(m, scale * dot_rows(qt, k + (bh * T_ + j) * HD, HD)); });
    float acc[128], l = 0.0f;
    for (int d = 0; d < HD; d++) { acc[d] = 0.0f; }
    for_each_visible_key(sel, window, bh, T_, t, [&](int j) {
        float p = expf(scale * dot_rows(qt, k + (bh * T_ + j) * HD, HD) - m);
        l += p;
        for (int d = 0; d < HD; d++) { acc[d] += p * to_float(v[(bh * T_ + j) * HD + d]); }
    });
    size_t b = bh / NH, h = bh % NH;
    T *ot = o + ((b * T_ + t) * NH + h) * HD;
    for (int d = 0; d < HD; d++) { ot[d] = from_float<T>(acc[d] / l); }
    lse[bh * T_ + t] = m + logf(l);
}

// dQ of one query per thread; D = rowsum(dO o) comes from the pre-pass.
template <typename T>
__global__ void attention_backward_dq_simple_kernel(T *dq, const T *dout, const float *lse, const float *Dsum,
                                                    const T *q, const T *k, const T *v, int NH, int T_, int HD,
                                                    MobaSelection sel, int window, float scale) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= T_) { return; }
    size_t bh = blockIdx.y, b = bh / NH, h = bh % NH; int t = idx;
    const T *qt = q + (bh * T_ + t) * HD, *dot = dout + ((b * T_ + t) * NH + h) * HD;
    float acc[128];
    for (int d = 0; d < HD; d++) { acc[d] = 0.0f; }
    for_each_visible_key(sel, window, bh, T_, t, [&](int j) {
        const T *kj = k + (bh * T_ + j) * HD;
        float p = expf(scale * dot_rows(qt, kj, HD) - lse[bh * T_ + t]);
        float ds = p * (dot_rows(dot, v + (bh * T_ + j) * HD, HD) - Dsum[bh * T_ + t]);
        for (int d = 0; d < HD; d++) { acc[d] += ds * to_float(kj[d]); }
    });
    for (int d = 0; d < HD; d++) { dq[(bh * T_ + t) * HD + d] = from_float<T>(scale * acc[d]); }
}

// dK, dV of one key per thread: walks every later query and tests whether it selected the key's block.
template <typename T>
__global__ void attention_backward_dkdv_simple_kernel(T *dk, T *dv, const T *dout, const float *lse, const float *Dsum,
                                                      const T *q, const T *k, const T *v, int NH, int T_, int HD,
                                                      MobaSelection sel, int window, float scale) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= T_) { return; }
    size_t bh = blockIdx.y, b = bh / NH, h = bh % NH; int j = idx;
    const T *kj = k + (bh * T_ + j) * HD, *vj = v + (bh * T_ + j) * HD;
    float ak[128], av[128];
    for (int d = 0; d < HD; d++) { ak[d] = 0.0f; av[d] = 0.0f; }
    for (int t = j; t < (window > 0 ? min(T_, j + window) : T_); t++) {
        if (sel.blocks != NULL) {
            const int *list = sel.blocks + (bh * T_ + t) * sel.topk;
            bool hit = false;
            for (int s = 0; s < sel.topk; s++) { hit |= list[s] == j / sel.block_size; }
            if (!hit) { continue; }
        }
        const T *qt = q + (bh * T_ + t) * HD, *dot = dout + ((b * T_ + t) * NH + h) * HD;
        float p = expf(scale * dot_rows(qt, kj, HD) - lse[bh * T_ + t]);
        float ds = p * (dot_rows(dot, vj, HD) - Dsum[bh * T_ + t]);
        for (int d = 0; d < HD; d++) {
            ak[d] += ds * to_float(qt[d]);
            av[d] += p * to_float(dot[d]);
        }
    }
    for (int d = 0; d < HD; d++) {
        dk[(bh * T_ + j) * HD + d] = from_float<T>(scale * ak[d]);
        dv[(bh * T_ + j) * HD + d] = from_float<T>(av[d]);
    }
}

// D[bh, t] = sum_d dO[b, t, h, d] * o[b, t, h, d]: one warp per (b, t, h) row.
template <typename T>
__global__ void attention_backward_dsum_kernel(float *Dsum, const T *dout, const T *o, int NH, int T_, int HD, int rows) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) { return; }
    const T *a = dout + (size_t)row * HD, *b = o + (size_t)row * HD;
    float s = 0.0f;
    for (int d = lane; d < HD; d += 32) { s += to_float(a[d]) * to_float(b[d]); }
    for (int off = 16; off > 0; off >>= 1) { s += __shfl_xor_sync(0xffffffff, s, off); }
    int h = row % NH, t = (row / NH) % T_, bb = row / (NH * T_);
    if (lane == 0) { Dsum[((size_t)bb * NH + h) * T_ + t] = s; }
}

// ---------------------------------------------------------------------------------------------------
// Tensor-core path (bf16 only).
namespace flash {
constexpr int BR = 64;       // queries per CTA in the query-centric kernels (4 warps x 16)
constexpr int BC = 64;       // keys per tile
constexpr int BRB = 32;      // queries per step of the key-centric backward kernel
constexpr int THREADS = 128;
constexpr float LOG2E = 1.4426950408889634f;

// rows [row0, row0 + R) of a (T, COLS) matrix whose rows are `stride` elements apart, zeros past T.
template <int R, int COLS, int NTHREADS = THREADS>
__device__ inline void load_tile(bf16 *s, const bf16 *g, size_t stride, int row0, int T) {
    constexpr int CPR = COLS / 8;
    for (int i = threadIdx.x; i < R * CPR; i += NTHREADS) {
        int r = i / CPR, c = i % CPR;
        bool ok = row0 + r < T;
        cp_async16(s + swz<COLS>(r, c), g + (ok ? (size_t)(row0 + r) * stride + c * 8 : 0), ok);
    }
}

// The same rows in the warpgroup-MMA layout (wgmma_tiles.cuh): COLS / 64 panels of R x 64, panel p at p R 64.
// COLS = 64: load_tile itself.
template <int R, int COLS, int NTHREADS = THREADS>
__device__ inline void load_panels(bf16 *s, const bf16 *g, size_t stride, int row0, int T) {
    if constexpr (COLS == 64) {
        load_tile<R, 64, NTHREADS>(s, g, stride, row0, T);
    } else {
        for (int p = 0; p < COLS / 64; p++) { load_tile<R, 64, NTHREADS>(s + p * R * 64, g + p * 64, stride, row0, T); }
    }
}

// One step of the double-buffered walk over tiles [.., n): wait for tile `cur`, then prefetch tile cur + 1
// into the other stage (every thread finished reading that stage before this barrier). Returns cur + 1.
// WGMMA: the tiles are read by warpgroup MMA (the async proxy), which needs a proxy fence.
template <bool WGMMA = false, typename L>
__device__ inline int pipeline_step(int cur, int n, int stage, L load) {
    int nxt = cur + 1;
    cp_async_wait_all();
    if constexpr (WGMMA) { fence_proxy_async(); }
    __syncthreads();
    if (nxt < n) { load(nxt, stage ^ 1); }
    cp_async_commit();
    return nxt;
}

// The online softmax's running max of row i of a score tile in the mma C layout (i = 0: this thread's row
// lane / 4, 1: that + 8; a quad of 4 threads shares a row, columns 8 j + 2 c + {0, 1}), raised to the tile's
// scores. Returns base = max * sl2, the exponent offset of P = exp2(s sl2 - base) (0 while the row has seen
// no visible score, m = -inf), and sets alpha = exp2((old max - new max) sl2), by which the row's earlier
// sum and outputs shrink. Shared by online_softmax and softmax_tile, which differ in how they sum P.
template <int NJ>
__device__ __forceinline__ float online_row_max(const float (&s)[NJ][4], float &m, int i, float sl2, float &alpha) {
    float mx = m;
#pragma unroll
    for (int j = 0; j < NJ; j++) { mx = fmaxf(mx, fmaxf(s[j][2 * i], s[j][2 * i + 1])); }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
    float base = mx == -INFINITY ? 0.0f : mx * sl2;
    alpha = fast_exp2(m * sl2 - base);
    m = mx;
    return base;
}

// Online softmax of a warp's 16 x 64 score tile (the mma.sync kernels; rows as online_row_max): updates the
// running max m and sum l (P added one by one), rescales the output accumulators, s -> P.
template <int HD>
__device__ __forceinline__ void online_softmax(float (&s)[BC / 8][4], float (&m)[2], float (&l)[2], float (&oacc)[HD / 8][4],
                                               float sl2) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float alpha, base = online_row_max(s, m[i], i, sl2, alpha);
        l[i] *= alpha;
        for (int j = 0; j < HD / 8; j++) { oacc[j][2 * i] *= alpha; oacc[j][2 * i + 1] *= alpha; }
        for (int j = 0; j < BC / 8; j++) {
            for (int e = 2 * i; e < 2 * i + 2; e++) {
                s[j][e] = fast_exp2(s[j][e] * sl2 - base);
                l[i] += s[j][e];
            }
        }
    }
}

// The double-buffered walk over the 64-key tiles [kb + 64 kt, +64), kt < ntiles, of one head (rows of kh,
// vh; zeros past T) in sK / sV (2 tiles each), loaded by all NT threads: tile(kt, cK, cV) per tile. Loads
// the caller issued before the call join the first tile's group. WGMMA: as pipeline_step, and the tiles in
// 64-wide panels (load_panels).
template <int HD, int NT = THREADS, bool WGMMA = false, typename F>
__device__ __forceinline__ void walk_kv_tiles(bf16 *sK, bf16 *sV, const bf16 *kh, const bf16 *vh, int T, int kb, int ntiles, F tile) {
    auto load_kv = [&](int t, int st) {
        if constexpr (WGMMA) {
            load_panels<BC, HD, NT>(sK + st * BC * HD, kh, HD, kb + t * BC, T);
            load_panels<BC, HD, NT>(sV + st * BC * HD, vh, HD, kb + t * BC, T);
        } else {
            load_tile<BC, HD, NT>(sK + st * BC * HD, kh, HD, kb + t * BC, T);
            load_tile<BC, HD, NT>(sV + st * BC * HD, vh, HD, kb + t * BC, T);
        }
    };
    load_kv(0, 0);
    cp_async_commit();
    int stage = 0;
    for (int kt = 0; kt < ntiles; kt++) {
        pipeline_step<WGMMA>(kt, ntiles, stage, load_kv);
        tile(kt, sK + stage * BC * HD, sV + stage * BC * HD);
        stage ^= 1;
    }
}

// The forward's epilogue for one 16-row tile in the mma C layout (this thread: rows qa, qa + 8; a quad of
// 4 threads shares a row): sums l over the quad, writes o = oacc / l and lse = m scale + log l; rows from T
// on are skipped.
template <int HD>
__device__ inline void store_o_lse(bf16 *o, float *lse, const float (&oacc)[HD / 8][4], const float (&m)[2], const float (&l)[2],
                                   size_t bh, int NH, int T, int qa, float scale) {
    const int c = threadIdx.x & 3;
    const size_t b = bh / NH, h = bh % NH;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int t = qa + 8 * i;
        float li = l[i];
        li += __shfl_xor_sync(0xffffffff, li, 1);
        li += __shfl_xor_sync(0xffffffff, li, 2);
        if (t >= T) { continue; }
        float inv = li > 0.0f ? 1.0f / li : 0.0f;
        store_row_bf16(o + ((b * T + t) * NH + h) * HD, oacc, i, inv);
        if (c == 0) { lse[bh * T + t] = li > 0.0f ? m[i] * scale + logf(li) : -INFINITY; }
    }
}

// Shared memory of the warpgroup-MMA kernels starts at a 1024-byte boundary (128-byte swizzle atoms). An
// offset added to p (not integer arithmetic on the pointer) keeps the compiler's knowledge that it points
// into shared memory, so accesses compile to ld / st.shared instead of generic loads and stores.
__device__ inline bf16 *swizzle_base(unsigned char *p) { return (bf16 *)(p + ((1024 - (smem_addr(p) & 1023)) & 1023)); }

// The first key tile (of bk keys) that queries from q0 see: 0, or with a sliding window the tile of key
// q0 - window + 1.
__host__ __device__ inline int key_tiles_begin(int q0, int bk, int window) { return window > 0 ? max(0, q0 - window + 1) / bk : 0; }
// One past the last query tile (of bq queries) that sees a key up to last_key: every tile to the end, or
// with a sliding window up to the tile of query last_key + window - 1.
__host__ __device__ inline int query_tiles_end(int T, int bq, int last_key, int window) {
    const int all = (T + bq - 1) / bq;
    return window > 0 ? min(all, (last_key + window - 1) / bq + 1) : all;
}

// The key walk of the query-centric warpgroup-MMA kernels (HD 64; dq_wgmma_kernel also 128): a CTA of QW warpgroups owns queries
// [q0, q0 + 64 QW); K and V tiles of 64 keys, from the first the window lets q0 see to the diagonal
// (walk_kv_tiles); tile(kt, cK, cV) runs in the warpgroups whose queries (from wq0) see keys of tile kt
// (warpgroup-uniform, as wgmma needs).
template <int QW, int HD = 64, typename F>
__device__ inline void walk_key_tiles(bf16 *sK, bf16 *sV, const bf16 *kh, const bf16 *vh, int T, int q0, int wq0, int window, F tile) {
    const int first = key_tiles_begin(q0, BC, window);
    walk_kv_tiles<HD, 128 * QW, true>(sK, sV, kh, vh, T, first * BC, (min(q0 + 64 * QW, T) - 1) / BC + 1 - first,
                                      [&](int n, const bf16 *cK, const bf16 *cV) {
        if ((first + n) * BC <= wq0 + 63) { tile(first + n, cK, cV); }
    });
}

// Causal (and, window > 0, sliding-window: key > row - window) mask and online softmax of one warpgroup's
// 64 x BK score tile s (this thread: rows qa, qa + 8, keys k0 + 8 j + 2 c + {0, 1}): updates m and l,
// returns the factors alpha by which the output rows must be rescaled, and leaves P = exp(s - m) in s. A
// row with no visible key yet keeps m = -inf and l = 0. The forward of attention_fwd_hopper.cuh.
template <int BK>
__device__ __forceinline__ void softmax_tile(float (&s)[BK / 8][4], float (&m)[2], float (&l)[2], float (&alpha)[2], int qa,
                                             int k0, int wq0, int T, float sl2, int window = 0) {
    const int c = threadIdx.x & 3;
    // diagonal, tail or window-edge tile
    if (!(k0 + BK - 1 <= wq0 && wq0 + 63 < T && (window == 0 || wq0 + 63 - k0 < window))) {
#pragma unroll
        for (int j = 0; j < BK / 8; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int row = qa + (e >> 1) * 8, key = k0 + j * 8 + 2 * c + (e & 1);
                if (!(row < T && key <= row && (window == 0 || row - key < window))) { s[j][e] = -INFINITY; }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float base = online_row_max(s, m[i], i, sl2, alpha[i]), sum = 0.0f;  // P summed in pairs, then added to l
#pragma unroll
        for (int j = 0; j < BK / 8; j++) {
            s[j][2 * i] = fast_exp2(s[j][2 * i] * sl2 - base);
            s[j][2 * i + 1] = fast_exp2(s[j][2 * i + 1] * sl2 - base);
            sum += s[j][2 * i] + s[j][2 * i + 1];
        }
        l[i] = l[i] * alpha[i] + sum;
    }
}

// dK (times scale) and dV of keys key_a and key_a + 8 from the accumulators of a 16-key row tile
// (mma C layout, shared by the mma.sync, wgmma and MoBA kernels); keys from kend on are skipped.
template <int HD>
__device__ inline void store_dkdv(bf16 *dk, bf16 *dv, const float dka[HD / 8][4], const float dva[HD / 8][4], size_t bh, int T,
                                  int key_a, int kend, float scale) {
    const int c = threadIdx.x & 3;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int key = key_a + 8 * i;
        if (key >= kend) { continue; }
        for (int j = 0; j < HD / 8; j++) {  // the dK and dV rows interleaved (store_row_bf16's layout)
            size_t off = (bh * T + key) * HD + j * 8 + 2 * c;
            *reinterpret_cast<uint32_t *>(dk + off) = pack_bf16(dka[j][2 * i] * scale, dka[j][2 * i + 1] * scale);
            *reinterpret_cast<uint32_t *>(dv + off) = pack_bf16(dva[j][2 * i], dva[j][2 * i + 1]);
        }
    }
}

// One step of the mma.sync dK/dV kernels (this file's dense one and moba_attention.cuh's): the CTA's 64
// keys in sK / sV (warp w: keys key_a, key_a + 8 of its 16) against BRB queries whose Q, dO rows are in
// cQ, cdO, lse * log2(e) in cLse and D in cD. visible(qi, key): key may be seen by step row qi.
// P^T = exp(K Q^T * scale - lse), dV += P^T dO, dS^T = P^T * (V dO^T - D), dK += dS^T Q. ATOMIC_DQ: also
// dQ += dS K with fp32 atomics into the row dq_row(qi) (NULL: no query there); dS^T goes through sdS.
template <int HD, bool ATOMIC_DQ, typename V, typename R>
__device__ __forceinline__ void dkdv_step(float (&dka)[HD / 8][4], float (&dva)[HD / 8][4], const bf16 *sK, const bf16 *sV,
                                          bf16 *sdS, const bf16 *cQ, const bf16 *cdO, const float *cLse, const float *cD,
                                          int key_a, float sl2, V visible, R dq_row) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    // P^T, 16 keys x 32 queries per warp
    float s[BRB / 8][4] = {};
    gemm<false, 1, BRB / 8, HD / 16, HD>(&s, [&](int, int ks, uint32_t a[4]) { lds_a<HD>(a, sK, warp * 16, ks); }, cQ, 0);
#pragma unroll
    for (int j = 0; j < BRB / 8; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int qi = j * 8 + 2 * c + (e & 1), key = key_a + (e >> 1) * 8;
            s[j][e] = visible(qi, key) ? fast_exp2(s[j][e] * sl2 - cLse[qi]) : 0.0f;
        }
    }
    uint32_t pf[BRB / 16][4];
    acc_to_a<BRB / 8>(pf, s);
    gemm<true, 1, HD / 8, BRB / 16, HD>(&dva, [&](int, int ks, uint32_t a[4]) { for (int i = 0; i < 4; i++) { a[i] = pf[ks][i]; } }, cdO, 0);
    // dS^T
    float dp[BRB / 8][4] = {};
    gemm<false, 1, BRB / 8, HD / 16, HD>(&dp, [&](int, int ks, uint32_t a[4]) { lds_a<HD>(a, sV, warp * 16, ks); }, cdO, 0);
#pragma unroll
    for (int j = 0; j < BRB / 8; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) { s[j][e] *= dp[j][e] - cD[j * 8 + 2 * c + (e & 1)]; }
    }
    acc_to_a<BRB / 8>(pf, s);
    gemm<true, 1, HD / 8, BRB / 16, HD>(&dka, [&](int, int ks, uint32_t a[4]) { for (int i = 0; i < 4; i++) { a[i] = pf[ks][i]; } }, cQ, 0);
    if (ATOMIC_DQ) {
        // dS^T goes through shared memory so each warp can take a 16-query x HD/2 slice of dS K.
#pragma unroll
        for (int j = 0; j < BRB / 8; j++) {
            int r = warp * 16 + g;
            *reinterpret_cast<uint32_t *>(sdS + swz<BRB>(r, j) + 2 * c) = pack_bf16(s[j][0], s[j][1]);
            *reinterpret_cast<uint32_t *>(sdS + swz<BRB>(r + 8, j) + 2 * c) = pack_bf16(s[j][2], s[j][3]);
        }
        __syncthreads();
        float dq[HD / 16][4] = {};
        const int mt = warp & 1, nh = warp >> 1;
        gemm<true, 1, HD / 16, BC / 16, HD>(&dq, [&](int, int ks, uint32_t a[4]) { lds_a_trans<BRB>(a, sdS, mt * 16, ks); }, sK, nh * (HD / 16));
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float *row = dq_row(mt * 16 + g + 8 * i);
            if (row == NULL) { continue; }
            float *dst = row + nh * (HD / 2) + 2 * c;
            for (int j = 0; j < HD / 16; j++) { atomicAdd(reinterpret_cast<float2 *>(dst + j * 8), make_float2(dq[j][2 * i], dq[j][2 * i + 1])); }
        }
    }
}

// One query tile (64 or 128 queries: the 128 x 128 step of attention_bwd_hopper.cuh) of a warpgroup's dK/dV
// work on wgmma (dkdv_wgmma_kernel and attention_bwd_hopper.cuh's kernel), head dim HD = 8 NHD (64 or 128):
// its 64 keys (from wk0; this thread's rows key_a, key_a + 8) in wK / wV, the tile's queries (from q0) in
// cQ / cdO, their lse (natural log) in cLse and D in cD; rows of 128 are two 64-wide panels (wgmma_tiles.cuh;
// K / V panels kv_panel elements apart), so S^T and dP^T take k-steps 4..7 from the second panels and dV, dK
// are m64n128 with B over both panels. K Q^T and V dO^T accumulate onto accumulators that start at
// -lse / scale and -D (no loads between the wait and the exp, and fewer registers), then
// P^T = exp2((S^T - lse / scale) scale log2 e) under the causal mask (window > 0: also query - key < window),
// dS^T = P^T (dP^T - D) into dsf (mma A fragments, for dQ), then dV += P^T dO and dK += dS^T Q issued and
// committed, not waited for.
template <int NHD, int NKS>
__device__ __forceinline__ void dkdv_wgmma_tile(float (&dka)[NHD][4], float (&dva)[NHD][4], uint32_t (&dsf)[NKS][4], const bf16 *wK,
                                                const bf16 *wV, const bf16 *cQ, const bf16 *cdO, const float *cLse, const float *cD,
                                                int q0, int wk0, int key_a, int T, float sl2, int window, int kv_panel = 64 * 64) {
    constexpr int HD = NHD * 8, NQ = 2 * NKS, BQ = NQ * 8;  // NKS: 16-query k-steps of dV / dK
    const int c = threadIdx.x & 3;
    const float neg_inv_scale = -LOG2E / sl2;
    float s[NQ][4], dp[NQ][4];
    uint32_t pf[NKS][4];
    // rows: keys key_a (+ 8); columns: queries q0 + 8 j + 2 c (+ 1)
#pragma unroll
    for (int j = 0; j < NQ; j++) {
        const float2 lse2 = *reinterpret_cast<const float2 *>(cLse + j * 8 + 2 * c), d2 = *reinterpret_cast<const float2 *>(cD + j * 8 + 2 * c);
        s[j][0] = s[j][2] = lse2.x * neg_inv_scale;
        s[j][1] = s[j][3] = lse2.y * neg_inv_scale;
        dp[j][0] = dp[j][2] = -d2.x;
        dp[j][1] = dp[j][3] = -d2.y;
    }
    // The registers a wgmma uses are pinned around its issue and wait (wgmma_fence_operands), as in the
    // Hopper forward.
    auto pin = [&](auto &...r) { (wgmma_fence_operands(r), ...); };
    pin(dka, dva, s, dp);
    wgmma_fence();
    wg_gemm_abt_panels<BQ, HD>(s, wK, kv_panel, cQ, BQ * 64, true);
    wg_gemm_abt_panels<BQ, HD>(dp, wV, kv_panel, cdO, BQ * 64, true);
    wgmma_commit();
    wgmma_wait<0>();
    pin(s, dp);
    // tiles off the diagonal and before the tail (most) skip the mask; inside, branch-free (a select after the exp)
    auto softmax_grad = [&](auto masked) {
#pragma unroll
        for (int j = 0; j < NQ; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int qi = j * 8 + 2 * c + (e & 1), key = key_a + (e >> 1) * 8;
                float p = fast_exp2(s[j][e] * sl2);
                if constexpr (decltype(masked)::value) {
                    p = (q0 + qi < T) & (key <= q0 + qi) & (window == 0 || q0 + qi - key < window) ? p : 0.0f;
                }
                s[j][e] = p;
                dp[j][e] *= p;
            }
        }
    };
    if (q0 >= wk0 + 63 && q0 + BQ <= T && (window == 0 || q0 + BQ - 1 - wk0 < window)) {
        softmax_grad(std::false_type{});
    } else {
        softmax_grad(std::true_type{});
    }
    acc_to_a<NQ>(pf, s);
    acc_to_a<NQ>(dsf, dp);
    pin(dka, dva, pf, dsf);
    wgmma_fence();
    wg_gemm_rs_panels<HD, BQ>(dva, pf, cdO);
    wg_gemm_rs_panels<HD, BQ>(dka, dsf, cQ);
    wgmma_commit();
}

// dS^T (this warpgroup's 64 keys x 16 NKS queries, dsf from dkdv_wgmma_tile) into swizzled 64 x 64 tiles,
// queries 64 t.. in tiles + t tile_stride: the MN-major A operand of dQ = dS K.
template <int NKS>
__device__ __forceinline__ void store_ds_transposed(bf16 *tiles, int tile_stride, const uint32_t (&dsf)[NKS][4]) {
    const int r = (threadIdx.x / 32) % 4 * 16 + (threadIdx.x & 31) / 4, c = threadIdx.x & 3;
#pragma unroll
    for (int ks = 0; ks < NKS; ks++) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            bf16 *tile = tiles + (ks / 4) * tile_stride;
            *reinterpret_cast<uint32_t *>(tile + swz<64>(r + (i & 1) * 8, 2 * (ks % 4) + (i >> 1)) + 2 * c) = dsf[ks][i];
        }
    }
}

// dQ (64 queries x HD) = dS K of one tile after dkdv_wgmma_tile: dS^T (dsf) into the warpgroup's
// swizzled tile wdS, the MN-major A operand, then the product (m64n128 over K's two panels at HD 128)
// issued and committed, not waited for.
template <int NHD>
__device__ __forceinline__ void dq_wgmma_issue(float (&dq)[NHD][4], bf16 *wdS, const uint32_t (&dsf)[4][4], const bf16 *wK, int wg) {
    store_ds_transposed(wdS, 0, dsf);
    fence_proxy_async();
    warpgroup_sync(wg);
    wgmma_fence();
    wg_gemm_atb_panels<NHD * 8>(dq, wdS, wK, 64 * 64);
    wgmma_commit();
}

// Backward on Hopper warpgroup MMA, dense causal, HD 64 or 128 (the layout of wgmma_tiles.cuh: rows of 128
// as two 64-wide panels; HD 128 with KW = 1, 2 CTAs per SM): a CTA of KW warpgroups owns keys
// [k0, k0 + 64 KW), warpgroup wg the 64 from k0 + 64 wg, and walks the 64-query
// tiles from the diagonal on, sharing each Q / dO tile between its warpgroups. Per tile and warpgroup:
// S^T = K Q^T and dP^T = V dO^T (A and B from shared memory), P^T and dS^T = P^T (dP^T - D) in registers,
// dV += P^T dO and dK += dS^T Q (A from registers, B MN-major), and with ATOMIC_DQ dS^T through shared
// memory for dQ += dS K, added to fp32 dqacc with atomics. grid (ceil(T / (64 KW)), B*NH).
template <int KW, bool ATOMIC_DQ, int HD = 64>
__global__ void __launch_bounds__(128 * KW, KW == 1 ? (HD == 64 ? 3 : 2) : 1)
    dkdv_wgmma_kernel(bf16 *dk, bf16 *dv, float *dqacc, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                      const float *lse, const float *Dsum, int NH, int T, float scale, int window) {
    static_assert(HD == 64 || KW == 1, "head dim 128: one warpgroup per CTA (K / V panels of 64 rows)");
    constexpr int BK = 64 * KW, BQ = 64, NT = 128 * KW, TILE = 64 * HD, DS_TILE = 64 * 64;
    extern __shared__ unsigned char smem_raw[];
    bf16 *sK = swizzle_base(smem_raw), *sV = sK + KW * TILE, *sQ = sV + KW * TILE, *sdO = sQ + 2 * TILE, *sdS = sdO + 2 * TILE;
    float *sLse = (float *)(sdS + KW * DS_TILE), *sD = sLse + 2 * BQ;
    const size_t bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int k0 = blockIdx.x * BK;
    const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const bf16 *qh = q + bh * T * HD, *doh = dout + (b * T * NH + h) * HD;
    const float sl2 = scale * LOG2E;

    const int ntiles = query_tiles_end(T, BQ, k0 + BK - 1, window);  // query tiles from the diagonal (k0 / BQ) on
    // lse and D rows by cp.async too: a plain load here stalled the warpgroup's next wgmma on its latency
    auto load_query_tile = [&](int qt, int st) {
        load_panels<BQ, HD, NT>(sQ + st * TILE, qh, HD, qt * BQ, T);
        load_panels<BQ, HD, NT>(sdO + st * TILE, doh, (size_t)NH * HD, qt * BQ, T);
        if (threadIdx.x < 2 * BQ) {
            int i = threadIdx.x % BQ, t = qt * BQ + i;
            bool ok = t < T, is_lse = threadIdx.x < BQ;
            cp_async4((is_lse ? sLse : sD) + st * BQ + i, (is_lse ? lse : Dsum) + bh * T + (ok ? t : 0), ok);
        }
    };
    load_panels<BK, HD, NT>(sK, k + bh * T * HD, HD, k0, T);
    load_panels<BK, HD, NT>(sV, v + bh * T * HD, HD, k0, T);
    int it = k0 / BQ, stage = 0;
    load_query_tile(it, 0);
    cp_async_commit();

    const bf16 *wK = sK + wg * TILE, *wV = sV + wg * TILE;
    bf16 *wdS = sdS + wg * DS_TILE;
    const int wk0 = k0 + wg * 64, key_a = wk0 + warp * 16 + g;
    float dka[HD / 8][4] = {}, dva[HD / 8][4] = {};
    while (it < ntiles) {
        int nxt = pipeline_step<true>(it, ntiles, stage, load_query_tile);
        const bf16 *cQ = sQ + stage * TILE, *cdO = sdO + stage * TILE;
        const float *cLse = sLse + stage * BQ, *cD = sD + stage * BQ;
        const int q0 = it * BQ;

        uint32_t dsf[4][4];
        dkdv_wgmma_tile(dka, dva, dsf, wK, wV, cQ, cdO, cLse, cD, q0, wk0, key_a, T, sl2, window);
        if (ATOMIC_DQ) {
            float dq[HD / 8][4];
            dq_wgmma_issue(dq, wdS, dsf, wK, wg);
            wgmma_wait<0>();
            if constexpr (HD != 64) { wgmma_fence_operands(dq); wgmma_fence_operands(dka); wgmma_fence_operands(dva); }
#pragma unroll
            for (int i = 0; i < 2; i++) {
                int t = q0 + warp * 16 + g + 8 * i;
                if (t >= T) { continue; }
                float *dst = dqacc + (bh * T + t) * HD + 2 * c;
#pragma unroll
                for (int j = 0; j < HD / 8; j++) { atomicAdd(reinterpret_cast<float2 *>(dst + j * 8), make_float2(dq[j][2 * i], dq[j][2 * i + 1])); }
            }
        } else {
            wgmma_wait<0>();
            if constexpr (HD != 64) { wgmma_fence_operands(dka); wgmma_fence_operands(dva); }
        }
        stage ^= 1;
        it = nxt;
    }
    store_dkdv<HD>(dk, dv, dka, dva, bh, T, key_a, T, scale);
}

// Backward dQ on warpgroup MMA, dense causal, HD 64 or 128 (QW = 1; panels as dkdv_wgmma_kernel), no
// atomics (the deterministic path, and with dkdv_wgmma_kernel<KW, false> a backward without fp32 atomics
// at all): a CTA of QW warpgroups owns
// queries [q0, q0 + 64 QW), warpgroup wg the 64 from q0 + 64 wg, and walks the 64-key tiles 0..diagonal,
// sharing each K / V tile: S = Q K^T and dP = dO V^T (operands in shared memory), dS = P (dP - D) in
// registers, dQ += dS K (A from registers, K MN-major); dQ written once. grid (ceil(T / (64 QW)), B*NH),
// heaviest tiles first. Redoes S and dP (2 of the backward's 5 GEMMs) instead of adding dQ atomically.
template <int QW, int HD = 64>
__global__ void __launch_bounds__(128 * QW) dq_wgmma_kernel(bf16 *dq, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                                                             const float *lse, const float *Dsum, int NH, int T, float scale, int window) {
    static_assert(HD == 64 || QW == 1, "head dim 128: one warpgroup per CTA (Q / dO panels of 64 rows)");
    constexpr int BQ = 64 * QW, BK = 64, TILE = 64 * HD, PANEL = 64 * 64;
    extern __shared__ unsigned char smem_raw[];
    bf16 *sQ = swizzle_base(smem_raw), *sdO = sQ + QW * TILE, *sK = sdO + QW * TILE, *sV = sK + 2 * TILE;
    const size_t bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ;
    const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const float sl2 = scale * LOG2E;
    const bf16 *wQ = sQ + wg * TILE, *wdO = sdO + wg * TILE;
    const int wq0 = q0 + wg * 64, qa = wq0 + warp * 16 + g;

    load_panels<BQ, HD, 128 * QW>(sQ, q + bh * T * HD, HD, q0, T);
    load_panels<BQ, HD, 128 * QW>(sdO, dout + (b * T * NH + h) * HD, (size_t)NH * HD, q0, T);
    float lrow[2], drow[2];
    for (int i = 0; i < 2; i++) {
        bool ok = qa + 8 * i < T;
        lrow[i] = ok ? lse[bh * T + qa + 8 * i] * LOG2E : 0.0f;
        drow[i] = ok ? Dsum[bh * T + qa + 8 * i] : 0.0f;
    }
    float dqa[HD / 8][4] = {};
    auto pin = [&](auto &...r) { if constexpr (HD != 64) { (wgmma_fence_operands(r), ...); } };  // as dkdv_wgmma_tile
    walk_key_tiles<QW, HD>(sK, sV, k + bh * T * HD, v + bh * T * HD, T, q0, wq0, window, [&](int kt, const bf16 *cK, const bf16 *cV) {
        float s[8][4], dp[8][4];
        pin(dqa);
        wgmma_fence();
        wg_gemm_abt_panels<64, HD>(s, wQ, PANEL, cK, PANEL);
        wg_gemm_abt_panels<64, HD>(dp, wdO, PANEL, cV, PANEL);
        wgmma_commit();
        wgmma_wait<0>();
        pin(s, dp);
        // rows: queries qa (+ 8); columns: keys kt * BK + 8 j + 2 c (+ 1)
        const bool full = kt * BK + 63 <= wq0 && wq0 + 63 < T && (window == 0 || wq0 + 63 - kt * BK < window);
#pragma unroll
        for (int j = 0; j < 8; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int row = qa + (e >> 1) * 8, key = kt * BK + j * 8 + 2 * c + (e & 1);
                bool ok = full || (row < T && key <= row && (window == 0 || row - key < window));
                float p = ok ? fast_exp2(s[j][e] * sl2 - lrow[e >> 1]) : 0.0f;
                s[j][e] = p * (dp[j][e] - drow[e >> 1]);
            }
        }
        uint32_t dsf[4][4];
        acc_to_a<8>(dsf, s);
        pin(dqa, dsf);
        wgmma_fence();
        wg_gemm_rs_panels<HD, 64>(dqa, dsf, cK);
        wgmma_commit();
        wgmma_wait<0>();
        pin(dqa, dsf);
    });
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int t = qa + 8 * i;
        if (t >= T) { continue; }
        store_row_bf16(dq + (bh * T + t) * HD, dqa, i, scale);
    }
}

// One key tile of the mma.sync dQ kernels (this file's and moba_attention.cuh's): the warp's 16 query rows
// of sQ / sdO (rows g, g + 8: lse * log2(e) in lrow, D in drow) against the 64 keys in cK / cV.
// S = Q K^T, mask(S) sets invisible scores to -inf, dS = P * (dO V^T - D), dQ += dS K.
template <int HD, typename M>
__device__ __forceinline__ void dq_step(float (&dqa)[HD / 8][4], const bf16 *sQ, const bf16 *sdO, const bf16 *cK, const bf16 *cV,
                                        const float (&lrow)[2], const float (&drow)[2], float sl2, M mask) {
    const int warp = threadIdx.x >> 5;
    float s[BC / 8][4] = {}, dp[BC / 8][4] = {};
    gemm<false, 1, BC / 8, HD / 16, HD>(&s, [&](int, int ks, uint32_t a[4]) { lds_a<HD>(a, sQ, warp * 16, ks); }, cK, 0);
    mask(s);
    gemm<false, 1, BC / 8, HD / 16, HD>(&dp, [&](int, int ks, uint32_t a[4]) { lds_a<HD>(a, sdO, warp * 16, ks); }, cV, 0);
#pragma unroll
    for (int j = 0; j < BC / 8; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float p = fast_exp2(s[j][e] * sl2 - lrow[e >> 1]);
            s[j][e] = p * (dp[j][e] - drow[e >> 1]);
        }
    }
    uint32_t dsf[BC / 16][4];
    acc_to_a<BC / 8>(dsf, s);
    gemm<true, 1, HD / 8, BC / 16, HD>(&dqa, [&](int, int ks, uint32_t a[4]) { for (int i = 0; i < 4; i++) { a[i] = dsf[ks][i]; } }, cK, 0);
}

__global__ void dq_convert_kernel(bf16 *dq, const float *dqacc, size_t n, float scale) {
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i >= n) { return; }
    float4 a = *reinterpret_cast<const float4 *>(dqacc + i);
    uint2 out = make_uint2(pack_bf16(a.x * scale, a.y * scale), pack_bf16(a.z * scale, a.w * scale));
    *reinterpret_cast<uint2 *>(dq + i) = out;
}

template <typename K> inline void set_smem(K kernel, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}
}  // namespace flash


#include "attention_bwd_hopper.cuh"  // the TMA / mbarrier dK/dV kernel (launch_dkdv_tma)
#include "attention_fwd_hopper.cuh"  // the FlashAttention-3-style forward (forward_hopper)

namespace flash {

// The warpgroup-MMA dK/dV kernel with KW warpgroups per CTA: K, V (KW tiles each), Q, dO (2 stages each),
// dS^T (KW 64 x 64 tiles), lse and D (2 stages each).
template <int KW, bool ATOMIC_DQ, int HD>
void launch_dkdv_wgmma(bf16 *dk, bf16 *dv, float *dqacc, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                       const float *lse, const float *Dsum, int B, int NH, int T, float scale, int window, cudaStream_t stream) {
    auto kernel = dkdv_wgmma_kernel<KW, ATOMIC_DQ, HD>;
    size_t bytes = 1024 + (size_t)((2 * KW + 4) * 64 * HD + KW * 64 * 64) * sizeof(bf16) + 4 * 64 * sizeof(float);
    set_smem(kernel, bytes);
    kernel<<<dim3(CEIL_DIV(T, 64 * KW), B * NH), 128 * KW, bytes, stream>>>(dk, dv, dqacc, dout, q, k, v, lse, Dsum, NH, T, scale, window);
    cudaCheckLaunch();
}

// The warpgroup-MMA dQ kernel with QW warpgroups per CTA: Q, dO (QW tiles each), K, V (2 stages each).
template <int QW, int HD>
void launch_dq_wgmma(bf16 *dq, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v, const float *lse, const float *Dsum,
                     int B, int NH, int T, float scale, int window, cudaStream_t stream) {
    auto kernel = dq_wgmma_kernel<QW, HD>;
    size_t bytes = 1024 + (size_t)(2 * QW + 4) * 64 * HD * sizeof(bf16);
    set_smem(kernel, bytes);
    kernel<<<dim3(CEIL_DIV(T, 64 * QW), B * NH), 128 * QW, bytes, stream>>>(dq, dout, q, k, v, lse, Dsum, NH, T, scale, window);
    cudaCheckLaunch();
}

// The TMA backward's boxes may not exceed the tensor (T >= 128), and the lse / D rows of head bh start at
// element bh T of a 1-D map, a box origin TMA faults on unless 16-byte aligned (4 | T).
inline bool tma_backward_fits(int T) { return T >= 128 && T % 4 == 0; }

// dK, dV (DQ: and dQ added into fp32 dqacc): the TMA kernel where it fits, else one warpgroup per CTA.
template <int HD, bool DQ>
void launch_dkdv(bf16 *dk, bf16 *dv, float *dqacc, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                 const float *lse, const float *Dsum, int B, int NH, int T, float scale, int window, cudaStream_t stream) {
    if (tma_backward_fits(T)) {
        launch_dkdv_tma<HD, DQ>(dk, dv, dqacc, dout, q, k, v, lse, Dsum, B, NH, T, scale, window, stream);
    } else {
        launch_dkdv_wgmma<1, DQ, HD>(dk, dv, dqacc, dout, q, k, v, lse, Dsum, B, NH, T, scale, window, stream);
    }
}

// dq = scale dqacc in bf16 (n elements, n a multiple of 4).
inline void dq_from_accumulators(bf16 *dq, const float *dqacc, size_t n, float scale, cudaStream_t stream) {
    dq_convert_kernel<<<(unsigned)CEIL_DIV(n / 4, 256), 256, 0, stream>>>(dq, dqacc, n, scale);
    cudaCheckLaunch();
}

// deterministic: dK, dV without dQ, then dQ written once by the query-centric kernel; else dQ added into
// the zeroed fp32 dqacc by the dK/dV kernel (order-dependent) and converted.
template <int HD>
void backward(bf16 *dq, bf16 *dk, bf16 *dv, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
              const float *lse, const float *Dsum, float *dqacc, int B, int NH, int T, float scale,
              int deterministic, int window, cudaStream_t stream) {
    if (deterministic) {
        launch_dkdv<HD, false>(dk, dv, NULL, dout, q, k, v, lse, Dsum, B, NH, T, scale, window, stream);
        launch_dq_wgmma<1, HD>(dq, dout, q, k, v, lse, Dsum, B, NH, T, scale, window, stream);
    } else {
        size_t n = (size_t)B * NH * T * HD;
        cudaCheck(cudaMemsetAsync(dqacc, 0, n * sizeof(float), stream));
        launch_dkdv<HD, true>(dk, dv, dqacc, dout, q, k, v, lse, Dsum, B, NH, T, scale, window, stream);
        dq_from_accumulators(dq, dqacc, n, scale, stream);
    }
}
}  // namespace flash

// ---------------------------------------------------------------------------------------------------
// Public interface.
inline void attention_check_args(int B, int NH, int T, int HD, const MobaSelection *sel) {
    if (B < 1 || NH < 1 || T < 1) { die("attention: bad shape B=%d NH=%d T=%d", B, NH, T); }
    if (HD != 64 && HD != 128) { die("attention: head dim %d unsupported (64 or 128)", HD); }
    if (sel != NULL) {
        int bs = sel->block_size;
        if (sel->blocks == NULL) { die("attention: MoBA selection without a block list"); }
        if (bs < 32 || (bs & (bs - 1)) != 0) { die("attention: MoBA block size %d must be a power of two >= 32", bs); }
        if (sel->topk < 1) { die("attention: MoBA top-k %d must be >= 1", sel->topk); }
    }
}

// fp32 accumulators for dQ (B*NH*T*HD), then D = rowsum(dO o) (B*NH*T).
inline size_t attention_backward_scratch_bytes(int B, int NH, int T, int HD) {
    return (size_t)B * NH * T * (HD + 1) * sizeof(float);
}

// D = rowsum(dO o) (B, NH, T) of dout, o (B, T, NH, HD): the first step of every backward.
template <typename T>
void attention_backward_dsum(float *Dsum, const T *dout, const T *o, int B, int NH, int T_, int HD, cudaStream_t stream) {
    int rows = B * T_ * NH;
    attention_backward_dsum_kernel<<<CEIL_DIV(rows, 8), 256, 0, stream>>>(Dsum, dout, o, NH, T_, HD, rows);
    cudaCheckLaunch();
}

// The simple kernels (the fp32 build's, also moba_attention.cuh's).
template <typename T>
void attention_forward_simple(T *o, float *lse, const T *q, const T *k, const T *v, int B, int NH, int T_, int HD,
                              const MobaSelection *sel, cudaStream_t stream, int window = 0) {
    attention_check_args(B, NH, T_, HD, sel);
    MobaSelection s = sel ? *sel : MobaSelection{NULL, 0, 0};
    attention_forward_simple_kernel<<<dim3(CEIL_DIV(T_, 64), B * NH), 64, 0, stream>>>(o, lse, q, k, v, NH, T_, HD, s, window, 1.0f / sqrtf((float)HD));
    cudaCheckLaunch();
}
template <typename T>
void attention_backward_simple(T *dq, T *dk, T *dv, const T *dout, const T *o, const float *lse, const T *q, const T *k,
                               const T *v, float *scratch, int B, int NH, int T_, int HD, const MobaSelection *sel,
                               cudaStream_t stream, int window = 0) {
    attention_check_args(B, NH, T_, HD, sel);
    MobaSelection s = sel ? *sel : MobaSelection{NULL, 0, 0};
    float *Dsum = scratch + (size_t)B * NH * T_ * HD, scale = 1.0f / sqrtf((float)HD);
    attention_backward_dsum(Dsum, dout, o, B, NH, T_, HD, stream);
    dim3 grid(CEIL_DIV(T_, 64), B * NH);
    attention_backward_dq_simple_kernel<<<grid, 64, 0, stream>>>(dq, dout, lse, Dsum, q, k, v, NH, T_, HD, s, window, scale);
    cudaCheckLaunch();
    attention_backward_dkdv_simple_kernel<<<grid, 64, 0, stream>>>(dk, dv, dout, lse, Dsum, q, k, v, NH, T_, HD, s, window, scale);
    cudaCheckLaunch();
}

// Dense causal attention; sel must be NULL (MoBA layers call moba_attention_forward / _backward).
inline void attention_check_dense(int B, int NH, int T, int HD, const MobaSelection *sel) {
    if (sel != NULL) { die("attention: a MoBA selection goes to moba_attention_forward/backward (llmc/moba_attention.cuh)"); }
    attention_check_args(B, NH, T, HD, NULL);
}

#if !defined(ENABLE_FP32)
// The bf16 forward: the Hopper kernel at head dim 64 or 128 (q_tiles_per_cta: forward_hopper's; 0 = its choice).
inline void attention_forward_hopper(floatX *o, float *lse, const floatX *q, const floatX *k, const floatX *v, int B, int NH, int T, int HD,
                                     int window, cudaStream_t stream, int q_tiles_per_cta = 0) {
    const float scale = 1.0f / sqrtf((float)HD);
    (HD == 64 ? flash::forward_hopper<64, 128, true, true> : flash::forward_hopper<128, 128, true, true>)(o, lse, q, k, v, B, NH, T, scale, window,
                                                                                                         stream, q_tiles_per_cta);
}
#endif

// Dense causal attention, or with window > 0 sliding-window attention (query t sees keys [t - window + 1, t]).
void attention_forward(floatX *o, float *lse, const floatX *q, const floatX *k, const floatX *v,
                       int B, int NH, int T, int HD, const MobaSelection *sel, cudaStream_t stream, int window = 0) {
    attention_check_dense(B, NH, T, HD, sel);
#if defined(ENABLE_FP32)
    attention_forward_simple(o, lse, q, k, v, B, NH, T, HD, NULL, stream, window);
#else
    attention_forward_hopper(o, lse, q, k, v, B, NH, T, HD, window, stream);
#endif
}

// deterministic = 1: bit-identical results run to run (no fp32 atomics); 0: the faster path.
void attention_backward(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const floatX *o,
                        const float *lse, const floatX *q, const floatX *k, const floatX *v,
                        float *scratch, int B, int NH, int T, int HD, const MobaSelection *sel,
                        int deterministic, cudaStream_t stream, int window = 0) {
    attention_check_dense(B, NH, T, HD, sel);
#if defined(ENABLE_FP32)
    (void)deterministic;
    attention_backward_simple(dq, dk, dv, dout, o, lse, q, k, v, scratch, B, NH, T, HD, NULL, stream, window);
#else
    float scale = 1.0f / sqrtf((float)HD);
    float *dqacc = scratch, *Dsum = scratch + (size_t)B * NH * T * HD;
    attention_backward_dsum(Dsum, dout, o, B, NH, T, HD, stream);
    (HD == 64 ? flash::backward<64> : flash::backward<128>)(dq, dk, dv, dout, q, k, v, lse, Dsum, dqacc, B, NH, T, scale, deterministic,
                                                            window, stream);
#endif
}

#endif  // LLMC_FLASH_ATTENTION_CUH
