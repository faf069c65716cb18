/*
 Dense causal attention forward on Hopper, FlashAttention-3 style (sm_90a), head dim 64 or 128.
 o = softmax(q k^T / sqrt(HD), causal) v and lse per query, layouts as flash_attention.cuh: q, k, v
 (B, NH, T, HD), o (B, T, NH, HD), lse (B, NH, T).
 A query tile is 64 QW queries; it walks the key tiles (BK keys) 0..diagonal; with a sliding window (window > 0:
 query t sees keys [t - window + 1, t]) only the tiles from the one holding key q0 - window + 1, so the
 cost is linear in T. A CTA takes q_tiles_per_cta consecutive query tiles of one head, one after the other:
 1 for dense attention (one tile per CTA balances the causal triangle best); with a window, whose tiles each
 meet only a few key tiles, several, so the CTA's fixed costs (barrier setup, register hand-over, the first
 loads' latency) are paid once per group and the next tile's Q and K / V load under this tile's products.
 Warp specialization: warpgroup QW, one thread of it, is the producer (its registers go to the consumers,
 setmaxnreg): per query tile it loads Q (into one of QBUF buffers, each with a `qfull` / `qempty` mbarrier
 pair) and then K / V tile by tile with TMA into a ring of STAGES shared-memory stages, each with a `full`
 mbarrier (TMA transaction bytes) and an `empty` one (every consumer thread arrives when done with the stage). Warpgroups 0..QW-1 are the consumers, 64
 queries each: S = Q K^T (both operands in shared memory, wgmma), causal mask, online softmax in
 registers, O += P V (P from registers). They never wait for each other, only for data.
 Steps (template switches; attention_dense.cu's versions 13-16 turn them on one by one, dev/cuda/attention_notes.md
 has their timings); attention_forward runs all three:
 - OVERLAP: S(j) = Q K(j)^T is issued together with O += P(j-1) V(j-1), so the softmax of tile j runs on
   the CUDA cores while the tensor cores finish P(j-1) V(j-1) (two commit groups, wgmma_wait<1>).
 - BK = 128: m64n128 score tiles and K = 128 for P V: half the waits / barriers per FLOP of BK = 64.
 - PINGPONG (needs OVERLAP): the consumer warpgroups take turns issuing their GEMMs (named barriers in a
   ring), so one warpgroup's softmax overlaps the other's GEMMs instead of all of them computing
   exponentials at once.
 Memory traffic: q read once, o and lse written once, k and v read once per query tile (mostly from L2).
 Included by flash_attention.cuh after the helpers it uses (swizzle_base, LOG2E, set_smem).
*/
#ifndef LLMC_ATTENTION_FWD_HOPPER_CUH
#define LLMC_ATTENTION_FWD_HOPPER_CUH

#include "tma_pipeline.cuh"
#include "wgmma_tiles.cuh"

namespace flash {

// Named barrier ids of the ping-pong ring (8 + consumer warpgroup): clear of __syncthreads (0) and
// warpgroup_sync (1 + wg).
constexpr int FWDH_SCHED_BAR = 8;

template <int HD, int BK, int QW = 2>
struct FwdHopperConfig {
    static constexpr int BQ = 64 * QW;               // queries per CTA
    static constexpr int THREADS = 128 * (QW + 1);   // consumer warpgroups + the producer warpgroup
    // setmaxnreg moves registers between warpgroups inside the CTA's launch allocation (ptxas' cap at
    // entry, 65536 / THREADS rounded down to 8, times THREADS): 168 x 384 = 24 x 128 + 240 x 256. An
    // increase beyond what the decreases freed blocks forever (a producer at 32 with consumers at 240 hangs).
    static constexpr int ENTRY_REGS = 65536 / THREADS / 8 * 8;
    static constexpr int PRODUCER_REGS = 24;
    static constexpr int FREE_REGS = (ENTRY_REGS * (QW + 1) - PRODUCER_REGS) / QW / 8 * 8;
    static constexpr int CONSUMER_REGS = FREE_REGS < 240 ? FREE_REGS : 240;
    static_assert(PRODUCER_REGS + QW * CONSUMER_REGS <= ENTRY_REGS * (QW + 1), "setmaxnreg split exceeds the allocation");
    static constexpr int STAGE = 2 * BK * HD;        // elements of one K + V stage
    static constexpr int BUDGET = 227 * 1024 - 1024 - 256;  // bytes for Q and the stages (1024: alignment)
    // two Q buffers (the next query tile's Q loads under this one's products) where that leaves 4 stages (HD 64)
    static constexpr int QBUF = (BUDGET - 2 * BQ * HD * 2) / (STAGE * 2) >= 4 ? 2 : 1;
    static constexpr int STAGES = (BUDGET - QBUF * BQ * HD * 2) / (STAGE * 2) < 4 ? (BUDGET - QBUF * BQ * HD * 2) / (STAGE * 2) : 4;
    static constexpr size_t SMEM_BYTES = 1024 + (size_t)(QBUF * BQ * HD + STAGES * STAGE) * sizeof(bf16) + 2 * (STAGES + QBUF) * sizeof(uint64_t);
    static_assert(STAGES >= 2, "shared memory for two stages");
};

__device__ inline void named_bar_sync(int id, int threads) { asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory"); }
__device__ inline void named_bar_arrive(int id, int threads) { asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory"); }

template <int HD, int BK, bool OVERLAP, bool PINGPONG, int QW = 2>
__global__ void __launch_bounds__(FwdHopperConfig<HD, BK, QW>::THREADS, 1)
    fwd_hopper_kernel(bf16 *o, float *lse, const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                      const __grid_constant__ CUtensorMap tv, int NH, int T, float scale, int window, int q_tiles_per_cta) {
    static_assert(OVERLAP || !PINGPONG, "the ping-pong turns are the overlapped GEMM pairs");
    using C = FwdHopperConfig<HD, BK, QW>;
    constexpr int BQ = C::BQ, STAGES = C::STAGES, QBUF = C::QBUF;
    extern __shared__ unsigned char smem_raw[];
    bf16 *sQ = swizzle_base(smem_raw), *sKV = sQ + QBUF * BQ * HD;  // tiles as 64-wide panels (wgmma_tiles.cuh)
    uint64_t *full = (uint64_t *)(sKV + STAGES * C::STAGE), *empty = full + STAGES, *qfull = empty + STAGES, *qempty = qfull + QBUF;
    const int bh = blockIdx.y;
    // query tiles first_tile .. first_tile + nq - 1, the heaviest groups first
    const int first_tile = (gridDim.x - 1 - blockIdx.x) * q_tiles_per_cta, nq = min(q_tiles_per_cta, CEIL_DIV(T, BQ) - first_tile);
    auto key_tile0 = [&](int i) { return key_tiles_begin((first_tile + i) * BQ, BK, window); };
    auto num_key_tiles = [&](int i) { return (min((first_tile + i + 1) * BQ, T) - 1) / BK + 1 - key_tile0(i); };  // kt0..diagonal
    const int wg = threadIdx.x / 128;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) { mbar_init(&full[s], 1); mbar_init(&empty[s], 128 * QW); }
        for (int b = 0; b < QBUF; b++) { mbar_init(&qfull[b], 1); mbar_init(&qempty[b], 128 * QW); }
        mbar_init_fence();
    }
    __syncthreads();

    if (wg == QW) {  // producer warpgroup: one thread issues every copy
        warpgroup_reg_dealloc<C::PRODUCER_REGS>();
        if (threadIdx.x == 128 * QW) {
            // A box that would start past T is read from the last rows instead: its rows are masked
            // anyway (keys > every query, queries that are not written), and no box is wholly out of
            // bounds (partly out-of-bounds rows are zeros and count as transaction bytes).
            auto box_row = [&](int r) { return r < T ? r : max(T - 64, 0); };
            for (int i = 0, n = 0; i < nq; i++) {  // n: K / V tiles loaded so far (the stage ring's position)
                const int qb = i % QBUF, q0 = (first_tile + i) * BQ, kt0 = key_tile0(i), ntiles = num_key_tiles(i);
                if (i >= QBUF) { mbar_wait(&qempty[qb], (i / QBUF - 1) & 1); }
                mbar_arrive_expect_tx(&qfull[qb], BQ * HD * sizeof(bf16));
                bf16 *bQ = sQ + qb * BQ * HD;
                for (int p = 0; p < HD / 64; p++) {
                    for (int r = 0; r < BQ; r += 64) { tma_load_box(bQ + p * BQ * 64 + r * 64, &tq, p * 64, box_row(q0 + r), bh, &qfull[qb]); }
                }
                for (int kt = 0; kt < ntiles; kt++, n++) {
                    int st = n % STAGES;
                    if (n >= STAGES) { mbar_wait(&empty[st], (n / STAGES - 1) & 1); }
                    mbar_arrive_expect_tx(&full[st], C::STAGE * sizeof(bf16));
                    bf16 *cK = sKV + st * C::STAGE, *cV = cK + BK * HD;
                    for (int p = 0; p < HD / 64; p++) {
                        for (int r = 0; r < BK; r += 64) {
                            tma_load_box(cK + p * BK * 64 + r * 64, &tk, p * 64, box_row((kt0 + kt) * BK + r), bh, &full[st]);
                            tma_load_box(cV + p * BK * 64 + r * 64, &tv, p * 64, box_row((kt0 + kt) * BK + r), bh, &full[st]);
                        }
                    }
                }
            }
        }
        return;
    }
    warpgroup_reg_alloc<C::CONSUMER_REGS>();

    const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x & 31, g = lane >> 2;
    const float sl2 = scale * LOG2E;
    float oacc[HD / 8][4], s[BK / 8][4], m[2], l[2], alpha[2];
    uint32_t pf[BK / 16][4];
    const bf16 *wQ;  // this warpgroup's 64 rows in each panel of the current query tile's Q buffer
    int n = 0;       // K / V tiles consumed by earlier query tiles (the stage ring's position)
    // Registers a wgmma uses (accumulators s, oacc; A fragments pf) are pinned (wgmma_fence_operands)
    // before the wgmma fence that precedes an issue and right after the wait that completes it, so the
    // compiler moves no access to them across either.
    auto begin_issue = [&]() { wgmma_fence_operands(s); wgmma_fence_operands(oacc); wgmma_fence_operands(pf); wgmma_fence(); };
    auto issue_s = [&](int kt) { wg_gemm_abt_panels<BK, HD>(s, wQ, BQ * 64, sKV + ((n + kt) % STAGES) * C::STAGE, BK * 64); };
    auto issue_pv = [&](int kt) { wg_gemm_rs_panels<HD, BK>(oacc, pf, sKV + ((n + kt) % STAGES) * C::STAGE + BK * HD); };
    auto wait_s = [&]() { wgmma_wait<0>(); wgmma_fence_operands(s); };
    auto wait_pv = [&]() { wgmma_wait<0>(); wgmma_fence_operands(oacc); wgmma_fence_operands(pf); };
    auto wait_tile = [&](int kt) { mbar_wait(&full[(n + kt) % STAGES], ((n + kt) / STAGES) & 1); };
    auto release_tile = [&](int kt) { mbar_arrive(&empty[(n + kt) % STAGES]); };
    auto rescale_and_pack = [&]() {
#pragma unroll
        for (int j = 0; j < HD / 8; j++) {
            oacc[j][0] *= alpha[0]; oacc[j][1] *= alpha[0];
            oacc[j][2] *= alpha[1]; oacc[j][3] *= alpha[1];
        }
        acc_to_a<BK / 8>(pf, s);
    };
    // Ping-pong turns: warpgroup wg waits for its barrier, issues, then opens the next warpgroup's. The
    // last warpgroup opens warpgroup 0's first turn up front and skips its own last opening (of the CTA's
    // last query tile), so every barrier sees as many arrivals as waits.
    auto turn_begin = [&]() { if constexpr (PINGPONG) { named_bar_sync(FWDH_SCHED_BAR + wg, 256); } };
    auto turn_end = [&](bool last) {
        if constexpr (PINGPONG) {
            if (!(last && wg == QW - 1)) { named_bar_arrive(FWDH_SCHED_BAR + (wg + 1) % QW, 256); }
        }
    };
    if (PINGPONG && wg == QW - 1) { named_bar_arrive(FWDH_SCHED_BAR, 256); }

    for (int i = 0; i < nq; i++) {
        const int qb = i % QBUF, kt0 = key_tile0(i), ntiles = num_key_tiles(i);
        const int wq0 = (first_tile + i) * BQ + wg * 64, qa = wq0 + warp * 16 + g;
        wQ = sQ + qb * BQ * HD + wg * 64 * 64;
#pragma unroll
        for (int j = 0; j < HD / 8; j++) { oacc[j][0] = oacc[j][1] = oacc[j][2] = oacc[j][3] = 0.0f; }
        m[0] = m[1] = -INFINITY;
        l[0] = l[1] = 0.0f;
        mbar_wait(&qfull[qb], (i / QBUF) & 1);
        if constexpr (OVERLAP) {
            wait_tile(0);
            turn_begin();
            begin_issue();
            issue_s(0);
            wgmma_commit();
            turn_end(false);
            wait_s();
            softmax_tile<BK>(s, m, l, alpha, qa, kt0 * BK, wq0, T, sl2, window);
            acc_to_a<BK / 8>(pf, s);
            for (int kt = 1; kt < ntiles; kt++) {
                wait_tile(kt);
                turn_begin();
                begin_issue();
                issue_s(kt);
                wgmma_commit();
                issue_pv(kt - 1);
                wgmma_commit();
                turn_end(false);
                wgmma_wait<1>();  // S(kt) is in; P(kt-1) V(kt-1) may still run
                wgmma_fence_operands(s);
                softmax_tile<BK>(s, m, l, alpha, qa, (kt0 + kt) * BK, wq0, T, sl2, window);
                wait_pv();
                release_tile(kt - 1);
                rescale_and_pack();
            }
            mbar_arrive(&qempty[qb]);  // every S = Q K^T of this tile is done
            turn_begin();
            begin_issue();
            issue_pv(ntiles - 1);
            wgmma_commit();
            turn_end(i == nq - 1);
            wait_pv();
            release_tile(ntiles - 1);
        } else {
            for (int kt = 0; kt < ntiles; kt++) {
                wait_tile(kt);
                begin_issue();
                issue_s(kt);
                wgmma_commit();
                wait_s();
                softmax_tile<BK>(s, m, l, alpha, qa, (kt0 + kt) * BK, wq0, T, sl2, window);
                rescale_and_pack();
                begin_issue();
                issue_pv(kt);
                wgmma_commit();
                wait_pv();
                release_tile(kt);
            }
            mbar_arrive(&qempty[qb]);
        }
        store_o_lse<HD>(o, lse, oacc, m, l, bh, NH, T, qa, scale);
        n += ntiles;
    }
}

// Query tiles per CTA: 1 for dense attention; with a window 4, fewer where the grid would not fill every SM twice.
inline int fwd_hopper_q_tiles_per_cta(int B, int NH, int T, int window, int BQ) {
    if (window <= 0 || window >= T) { return 1; }
    int tiles = 4;
    while (tiles > 1 && (long)B * NH * CEIL_DIV(CEIL_DIV(T, BQ), tiles) < 2 * cuda_num_sms()) { tiles /= 2; }
    return tiles;
}

// The launch: tensor maps of q, k, v (64-row boxes), grid (ceil(T / (64 QW) / q_tiles_per_cta), B*NH);
// q_tiles_per_cta 0 picks fwd_hopper_q_tiles_per_cta's.
template <int HD, int BK, bool OVERLAP, bool PINGPONG>
void forward_hopper(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int NH, int T, float scale,
                    int window, cudaStream_t stream, int q_tiles_per_cta = 0) {
    using C = FwdHopperConfig<HD, BK>;
    if (q_tiles_per_cta <= 0) { q_tiles_per_cta = fwd_hopper_q_tiles_per_cta(B, NH, T, window, C::BQ); }
    CUtensorMap tq = make_head_tensor_map(q, B * NH, T, HD, 64), tk = make_head_tensor_map(k, B * NH, T, HD, 64),
                tv = make_head_tensor_map(v, B * NH, T, HD, 64);
    auto kernel = fwd_hopper_kernel<HD, BK, OVERLAP, PINGPONG>;
    set_smem(kernel, C::SMEM_BYTES);
    const int groups = CEIL_DIV(CEIL_DIV(T, C::BQ), q_tiles_per_cta);
    kernel<<<dim3(groups, B * NH), C::THREADS, C::SMEM_BYTES, stream>>>(o, lse, tq, tk, tv, NH, T, scale, window, q_tiles_per_cta);
    cudaCheckLaunch();
}

}  // namespace flash

#endif  // LLMC_ATTENTION_FWD_HOPPER_CUH
