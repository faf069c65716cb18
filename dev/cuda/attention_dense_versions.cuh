/*
 The dense attention kernels and configurations that the trainer no longer runs, as the numbered versions
 of dev/cuda/attention_dense.cu (each checked against the double-precision CPU reference and timed there).
 The production kernels are llmc/flash_attention.cuh's; a version here is either a kernel of this file or a
 configuration (template arguments) of a production kernel that attention_forward / attention_backward do
 not instantiate. Dense causal only (window = 0).
   1      the simple kernels (one thread per query / key; also MoBA: attention_moba's version 1)
   2      mma.sync forward (two 16-row tiles per warp) and dK/dV kernel with fp32-atomic dQ
   3      2, deterministic: dK/dV without dQ + the query-centric mma.sync dQ kernel
   4      2 with one 16-row tile per warp in the forward
   5, 6   HD 64 on warpgroup MMA, 2 warpgroups (128 rows) per CTA: 5 atomic dQ, 6 deterministic
          (dK/dV + the query-centric dq_wgmma_kernel); HD 128 as 2, 3
   7, 8   5, 6 with one warpgroup per CTA
   9-11   version 7's forward, the TMA / mbarrier dK/dV kernel (llmc/attention_bwd_hopper.cuh) at HD 64
          with 64-query tiles: 9 = 2 stages, 10 = 3 stages, 11 = 9 deterministic (+ version 8's dQ);
          T where the TMA boxes do not fit, and HD 128: as 7, 8 (HD 128: 2, 3)
   13-16  the FlashAttention-3-style forward (llmc/attention_fwd_hopper.cuh) step by step, version 7's
          backward: 13 = 64-key tiles; 14 = 13 + S(j+1) issued with P(j) V(j); 15 = 14 with 128-key
          tiles; 16 = 15 + ping-pong of the consumer warpgroups (the production forward)
   17, 18 version 16's forward, the one-warpgroup warpgroup-MMA backward at HD 128 too (17 atomic dQ,
          18 deterministic)
   19     version 16's forward, the TMA kernel with FlashAttention-3's 128-query step at HD 64 (each
          warpgroup computes dQ of its query half every tile), 64-query tiles at HD 128
   20     19, deterministic: the production deterministic backward
   21     19 with each tile's dQ by one warpgroup, alternating (ALT_DQ): the production backward
*/
#ifndef DEV_CUDA_ATTENTION_DENSE_VERSIONS_CUH
#define DEV_CUDA_ATTENTION_DENSE_VERSIONS_CUH

#include "llmc/flash_attention.cuh"

// Versions that promise bit-identical gradients run to run (no fp32 atomics or reductions).
static bool attention_deterministic(int version) { return version == 1 || version == 3 || version == 6 || version == 8 || version == 11 || version == 18 || version == 20; }

#if !defined(ENABLE_FP32)
namespace flash {
// Causal masking of a 16 x 64 score tile (rows qa, qa + 8 of this thread): -inf where invisible.
__device__ inline void mask_scores(float s[BC / 8][4], int T, int qa, int k0, int warp_q0) {
    if (k0 + BC - 1 <= warp_q0 && warp_q0 + 15 < T) { return; }  // tile fully visible
    int c = threadIdx.x & 3;
#pragma unroll
    for (int j = 0; j < BC / 8; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int row = qa + (e >> 1) * 8, key = k0 + j * 8 + 2 * c + (e & 1);
            if (!(row < T && key <= row)) { s[j][e] = -INFINITY; }
        }
    }
}

// Forward on mma.sync (versions 2-4). A CTA owns 64 MT queries; warp w takes rows q0 + 64 mt + 16 w (mt < MT), so each K/V fragment
// read from shared memory feeds MT mma row tiles. grid (ceil(T/(64 MT)), B*NH), heaviest tiles first.
template <int HD, int MT>
__global__ void __launch_bounds__(THREADS) fwd_kernel(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                                                       int NH, int T, float scale) {
    constexpr int ROWS = BR * MT;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem, *sK = sQ + ROWS * HD, *sV = sK + 2 * BC * HD;
    const size_t bh = blockIdx.y;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * ROWS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const float sl2 = scale * LOG2E;

    load_tile<ROWS, HD>(sQ, q + bh * T * HD, HD, q0, T);
    float oacc[MT][HD / 8][4] = {}, m[MT][2], l[MT][2] = {};
    for (int mt = 0; mt < MT; mt++) { m[mt][0] = m[mt][1] = -INFINITY; }
    const int ntiles = (min(q0 + ROWS, T) - 1) / BC + 1;  // 0..diagonal
    walk_kv_tiles<HD>(sK, sV, k + bh * T * HD, v + bh * T * HD, T, 0, ntiles, [&](int kt, const bf16 *cK, const bf16 *cV) {
        float s[MT][BC / 8][4] = {};
        gemm<false, MT, BC / 8, HD / 16, HD>(s, [&](int mt, int ks, uint32_t a[4]) { lds_a<HD>(a, sQ, mt * BR + warp * 16, ks); }, cK, 0);
        uint32_t pf[MT][BC / 16][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            const int r0 = q0 + mt * BR + warp * 16;
            mask_scores(s[mt], T, r0 + g, kt * BC, r0);
            online_softmax<HD>(s[mt], m[mt], l[mt], oacc[mt], sl2);
            acc_to_a<BC / 8>(pf[mt], s[mt]);
        }
        gemm<true, MT, HD / 8, BC / 16, HD>(oacc, [&](int mt, int ks, uint32_t a[4]) { for (int i = 0; i < 4; i++) { a[i] = pf[mt][ks][i]; } }, cV, 0);
    });

#pragma unroll
    for (int mt = 0; mt < MT; mt++) { store_o_lse<HD>(o, lse, oacc[mt], m[mt], l[mt], bh, NH, T, q0 + mt * BR + warp * 16 + g, scale); }
}

// Forward on warpgroup MMA (versions 5-12), dense causal, HD 64: a CTA of QW warpgroups owns queries [q0, q0 + 64 QW),
// warpgroup wg the 64 from q0 + 64 wg, and walks the 64-key tiles 0..diagonal, sharing each K / V tile:
// S = Q K^T (operands in shared memory), online softmax in registers, O += P V (P from registers, V
// MN-major). Traffic as fwd_kernel. grid (ceil(T / (64 QW)), B*NH), heaviest tiles first.
template <int QW>
__global__ void __launch_bounds__(128 * QW) fwd_wgmma_kernel(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                                                              int NH, int T, float scale) {
    constexpr int HD = 64, BQ = 64 * QW, BK = 64, TILE = 64 * 64;
    extern __shared__ unsigned char smem_raw[];
    bf16 *sQ = swizzle_base(smem_raw), *sK = sQ + QW * TILE, *sV = sK + 2 * TILE;
    const size_t bh = blockIdx.y;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ;
    const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x & 31, g = lane >> 2;
    const float sl2 = scale * LOG2E;
    const bf16 *wQ = sQ + wg * TILE;
    const int wq0 = q0 + wg * 64, qa = wq0 + warp * 16 + g;

    load_tile<BQ, HD, 128 * QW>(sQ, q + bh * T * HD, HD, q0, T);
    float oacc[8][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {};
    walk_key_tiles<QW>(sK, sV, k + bh * T * HD, v + bh * T * HD, T, q0, wq0, 0, [&](int kt, const bf16 *cK, const bf16 *cV) {
        float s[8][4], alpha[2];
        wgmma_fence();
        wg_gemm_abt(s, wQ, cK);
        wgmma_commit();
        wgmma_wait<0>();
        softmax_tile<BK>(s, m, l, alpha, qa, kt * BK, wq0, T, sl2);
#pragma unroll
        for (int j = 0; j < 8; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) { oacc[j][e] *= alpha[e >> 1]; }
        }
        uint32_t pf[4][4];
        acc_to_a<8>(pf, s);
        wgmma_fence();
        wg_gemm_rs(oacc, pf, cV);
        wgmma_commit();
        wgmma_wait<0>();
    });
    store_o_lse<HD>(o, lse, oacc, m, l, bh, NH, T, qa, scale);
}

// Backward dK, dV on mma.sync (versions 2-4), key-centric: a CTA owns keys [k0, k0 + BC) (4 warps x 16 keys), walks the query tiles of BRB
// rows from the diagonal on, and writes dK, dV. ATOMIC_DQ: also dQ += dS K into fp32 dqacc with atomics.
// grid (ceil(T/BC), B*NH).
template <int HD, bool ATOMIC_DQ>
__global__ void __launch_bounds__(THREADS) dkdv_kernel(bf16 *dk, bf16 *dv, float *dqacc, const bf16 *dout, const bf16 *q,
                                                        const bf16 *k, const bf16 *v, const float *lse, const float *Dsum,
                                                        int NH, int T, float scale) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sK = (bf16 *)smem, *sV = sK + BC * HD, *sQ = sV + BC * HD, *sdO = sQ + 2 * BRB * HD, *sdS = sdO + 2 * BRB * HD;
    float *sLse = (float *)(sdS + BC * BRB), *sD = sLse + 2 * BRB;
    const size_t bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int k0 = blockIdx.x * BC;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const bf16 *qh = q + bh * T * HD, *doh = dout + (b * T * NH + h) * HD;
    const float sl2 = scale * LOG2E;

    const int ntiles = CEIL_DIV(T, BRB);
    auto load_query_tile = [&](int qt, int st) {
        load_tile<BRB, HD>(sQ + st * BRB * HD, qh, HD, qt * BRB, T);
        load_tile<BRB, HD>(sdO + st * BRB * HD, doh, (size_t)NH * HD, qt * BRB, T);
        if (threadIdx.x < BRB) {
            int t = qt * BRB + threadIdx.x;
            bool ok = t < T;
            sLse[st * BRB + threadIdx.x] = ok ? lse[bh * T + t] * LOG2E : 0.0f;
            sD[st * BRB + threadIdx.x] = ok ? Dsum[bh * T + t] : 0.0f;
        }
    };
    load_tile<BC, HD>(sK, k + bh * T * HD, HD, k0, T);
    load_tile<BC, HD>(sV, v + bh * T * HD, HD, k0, T);
    int it = k0 / BRB, stage = 0;  // the diagonal query tile (k0 < T, so it < ntiles)
    load_query_tile(it, 0);
    cp_async_commit();

    float dka[HD / 8][4] = {}, dva[HD / 8][4] = {};
    const int key_a = k0 + warp * 16 + g;
    while (it < ntiles) {
        int nxt = pipeline_step(it, ntiles, stage, load_query_tile);
        const int q0 = it * BRB;
        dkdv_step<HD, ATOMIC_DQ>(dka, dva, sK, sV, sdS, sQ + stage * BRB * HD, sdO + stage * BRB * HD, sLse + stage * BRB,
                                 sD + stage * BRB, key_a, sl2,
                                 [&](int qi, int key) { return q0 + qi < T && key <= q0 + qi; },
                                 [&](int qi) { return q0 + qi < T ? dqacc + (bh * T + q0 + qi) * HD : (float *)NULL; });
        stage ^= 1;
        it = nxt;
    }
    store_dkdv<HD>(dk, dv, dka, dva, bh, T, key_a, T, scale);
}

// Backward dQ on mma.sync (version 3), query-centric: the forward's schedule and masks, dQ += dS K
// accumulated in registers and written once. grid (ceil(T/BR), B*NH).
template <int HD>
__global__ void __launch_bounds__(THREADS) dq_kernel(bf16 *dq, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                                                      const float *lse, const float *Dsum, int NH, int T, float scale) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem, *sdO = sQ + BR * HD, *sK = sdO + BR * HD, *sV = sK + 2 * BC * HD;
    const size_t bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * BR;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const float sl2 = scale * LOG2E;

    load_tile<BR, HD>(sQ, q + bh * T * HD, HD, q0, T);
    load_tile<BR, HD>(sdO, dout + (b * T * NH + h) * HD, (size_t)NH * HD, q0, T);
    const int qa = q0 + warp * 16 + g;
    float lrow[2], drow[2];
    for (int i = 0; i < 2; i++) {
        bool ok = qa + 8 * i < T;
        lrow[i] = ok ? lse[bh * T + qa + 8 * i] * LOG2E : 0.0f;
        drow[i] = ok ? Dsum[bh * T + qa + 8 * i] : 0.0f;
    }

    float dqa[HD / 8][4] = {};
    const int ntiles = (min(q0 + BR, T) - 1) / BC + 1;  // 0..diagonal
    walk_kv_tiles<HD>(sK, sV, k + bh * T * HD, v + bh * T * HD, T, 0, ntiles, [&](int kt, const bf16 *cK, const bf16 *cV) {
        dq_step<HD>(dqa, sQ, sdO, cK, cV, lrow, drow, sl2, [&](float (&s)[BC / 8][4]) { mask_scores(s, T, qa, kt * BC, q0 + warp * 16); });
    });
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int t = qa + 8 * i;
        if (t >= T) { continue; }
        store_row_bf16(dq + (bh * T + t) * HD, dqa, i, scale);
    }
}

template <int HD, int MT>
void launch_fwd_mma(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int NH, int T, float scale) {
    size_t bytes = (size_t)(MT * BR + 4 * BC) * HD * sizeof(bf16);
    set_smem(fwd_kernel<HD, MT>, bytes);
    fwd_kernel<HD, MT><<<dim3(CEIL_DIV(T, MT * BR), B * NH), THREADS, bytes>>>(o, lse, q, k, v, NH, T, scale);
    cudaCheckLaunch();
}

template <int QW>
void launch_fwd_wgmma(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int NH, int T, float scale) {
    size_t bytes = 1024 + (size_t)(QW + 4) * 64 * 64 * sizeof(bf16);
    set_smem(fwd_wgmma_kernel<QW>, bytes);
    fwd_wgmma_kernel<QW><<<dim3(CEIL_DIV(T, 64 * QW), B * NH), 128 * QW, bytes>>>(o, lse, q, k, v, NH, T, scale);
    cudaCheckLaunch();
}

template <int HD, bool ATOMIC_DQ>
void launch_dkdv_mma(bf16 *dk, bf16 *dv, float *dqacc, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                     const float *lse, const float *Dsum, int B, int NH, int T, float scale) {
    size_t bytes = (size_t)(2 * BC + 4 * BRB) * HD * sizeof(bf16) + BC * BRB * sizeof(bf16) + 4 * BRB * sizeof(float);
    set_smem(dkdv_kernel<HD, ATOMIC_DQ>, bytes);
    dkdv_kernel<HD, ATOMIC_DQ><<<dim3(CEIL_DIV(T, BC), B * NH), THREADS, bytes>>>(dk, dv, dqacc, dout, q, k, v, lse, Dsum, NH, T, scale);
    cudaCheckLaunch();
}

template <int HD>
void launch_dq_mma(bf16 *dq, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v, const float *lse, const float *Dsum,
                   int B, int NH, int T, float scale) {
    size_t bytes = (size_t)(2 * BR + 4 * BC) * HD * sizeof(bf16);
    set_smem(dq_kernel<HD>, bytes);
    dq_kernel<HD><<<dim3(CEIL_DIV(T, BR), B * NH), THREADS, bytes>>>(dq, dout, q, k, v, lse, Dsum, NH, T, scale);
    cudaCheckLaunch();
}
}  // namespace flash

// The forward of a version (2..21).
template <int HD>
void attention_forward_version(int version, floatX *o, float *lse, const floatX *q, const floatX *k, const floatX *v, int B, int NH, int T) {
    using namespace flash;
    const float scale = 1.0f / sqrtf((float)HD);
    if (version >= 16) {
        attention_forward(o, lse, q, k, v, B, NH, T, HD, NULL, 0);
    } else if (version >= 13) {
        (version == 13   ? forward_hopper<HD, 64, false, false>
         : version == 14 ? forward_hopper<HD, 64, true, false>
                         : forward_hopper<HD, 128, true, false>)(o, lse, q, k, v, B, NH, T, scale, 0, 0, 1);
    } else if (version == 4) {
        launch_fwd_mma<HD, 1>(o, lse, q, k, v, B, NH, T, scale);
    } else if (HD == 64 && version >= 5) {  // (fwd_wgmma_kernel is HD 64 only)
        (version <= 6 ? launch_fwd_wgmma<2> : launch_fwd_wgmma<1>)(o, lse, q, k, v, B, NH, T, scale);
    } else {
        launch_fwd_mma<HD, 2>(o, lse, q, k, v, B, NH, T, scale);
    }
}

// dK, dV of a version (2..21); DQ: and dQ added into the zeroed fp32 dqacc.
template <int HD, bool DQ>
void dkdv_version(int version, floatX *dk, floatX *dv, float *dqacc, const floatX *dout, const floatX *q, const floatX *k, const floatX *v,
                  const float *lse, const float *Dsum, int B, int NH, int T, float scale) {
    using namespace flash;
    const bool tma = tma_backward_fits(T);
    if (version <= 4 || (HD == 128 && version <= 16)) {
        launch_dkdv_mma<HD, DQ>(dk, dv, dqacc, dout, q, k, v, lse, Dsum, B, NH, T, scale);
        return;
    }
    if constexpr (HD == 64) {
        if (version <= 6) {
            launch_dkdv_wgmma<2, DQ, HD>(dk, dv, dqacc, dout, q, k, v, lse, Dsum, B, NH, T, scale, 0, 0);
            return;
        }
        if (version >= 9 && version <= 11 && tma) {
            (version == 10 ? launch_dkdv_tma_config<HD, 64, DQ, 3, false> : launch_dkdv_tma_config<HD, 64, DQ, 2, false>)(
                dk, dv, dqacc, dout, q, k, v, lse, Dsum, B, NH, T, scale, 0, 0);
            return;
        }
        if (version == 19 && tma) {
            launch_dkdv_tma_config<HD, 128, DQ, 2, false>(dk, dv, dqacc, dout, q, k, v, lse, Dsum, B, NH, T, scale, 0, 0);
            return;
        }
    }
    if (version >= 19) {
        launch_dkdv<HD, DQ>(dk, dv, dqacc, dout, q, k, v, lse, Dsum, B, NH, T, scale, 0, 0);
    } else {
        launch_dkdv_wgmma<1, DQ, HD>(dk, dv, dqacc, dout, q, k, v, lse, Dsum, B, NH, T, scale, 0, 0);
    }
}

// The backward of a version (2..21): D, then dK, dV and dQ as attention_backward composes them.
template <int HD>
void attention_backward_version(int version, floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const floatX *o, const float *lse,
                                const floatX *q, const floatX *k, const floatX *v, float *scratch, int B, int NH, int T) {
    using namespace flash;
    const float scale = 1.0f / sqrtf((float)HD);
    float *dqacc = scratch, *Dsum = scratch + (size_t)B * NH * T * HD;
    attention_backward_dsum(Dsum, dout, o, B, NH, T, HD, 0);
    if (attention_deterministic(version)) {
        dkdv_version<HD, false>(version, dk, dv, NULL, dout, q, k, v, lse, Dsum, B, NH, T, scale);
        if (version == 3 || (HD == 128 && version <= 11)) {
            launch_dq_mma<HD>(dq, dout, q, k, v, lse, Dsum, B, NH, T, scale);
        } else if (version == 6) {
            if constexpr (HD == 64) { launch_dq_wgmma<2, HD>(dq, dout, q, k, v, lse, Dsum, B, NH, T, scale, 0, 0); }
        } else {
            launch_dq_wgmma<1, HD>(dq, dout, q, k, v, lse, Dsum, B, NH, T, scale, 0, 0);
        }
    } else {
        size_t n = (size_t)B * NH * T * HD;
        cudaCheck(cudaMemsetAsync(dqacc, 0, n * sizeof(float)));
        dkdv_version<HD, true>(version, dk, dv, dqacc, dout, q, k, v, lse, Dsum, B, NH, T, scale);
        dq_from_accumulators(dq, dqacc, n, scale, 0);
    }
}
#endif

#endif  // DEV_CUDA_ATTENTION_DENSE_VERSIONS_CUH
