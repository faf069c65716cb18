/*
 Dense causal attention forward on Hopper, FlashAttention-3 style (sm_90a), head dim 64 or 128.
 o = softmax(q k^T / sqrt(HD), causal) v and lse per query, layouts as flash_attention.cuh: q, k, v
 (B, NH, T, HD), o (B, T, NH, HD), lse (B, NH, T).
 A CTA owns 64 QW queries and walks the key tiles (BK keys) 0..diagonal; with a sliding window (window > 0:
 query t sees keys [t - window + 1, t]) only the tiles from the one holding key q0 - window + 1, so the
 cost is linear in T. Warp specialization: warpgroup
 QW, one thread of it, is the producer (its registers go to the consumers, setmaxnreg): it loads the CTA's Q once and K / V tile by tile with TMA into a ring
 of STAGES shared-memory stages, each with a `full` mbarrier (TMA transaction bytes) and an `empty` one
 (every consumer thread arrives when done with the stage). Warpgroups 0..QW-1 are the consumers, 64
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
    static constexpr int STAGES = (BUDGET - BQ * HD * 2) / (STAGE * 2) < 4 ? (BUDGET - BQ * HD * 2) / (STAGE * 2) : 4;
    static constexpr size_t SMEM_BYTES = 1024 + (size_t)(BQ * HD + STAGES * STAGE) * sizeof(bf16) + (2 * STAGES + 1) * sizeof(uint64_t);
    static_assert(STAGES >= 2, "shared memory for two stages");
};

__device__ inline void named_bar_sync(int id, int threads) { asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory"); }
__device__ inline void named_bar_arrive(int id, int threads) { asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory"); }

template <int HD, int BK, bool OVERLAP, bool PINGPONG, int QW = 2>
__global__ void __launch_bounds__(FwdHopperConfig<HD, BK, QW>::THREADS, 1)
    fwd_hopper_kernel(bf16 *o, float *lse, const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                      const __grid_constant__ CUtensorMap tv, int NH, int T, float scale, int window) {
    static_assert(OVERLAP || !PINGPONG, "the ping-pong turns are the overlapped GEMM pairs");
    using C = FwdHopperConfig<HD, BK, QW>;
    constexpr int BQ = C::BQ, STAGES = C::STAGES;
    extern __shared__ unsigned char smem_raw[];
    bf16 *sQ = swizzle_base(smem_raw), *sKV = sQ + BQ * HD;  // tiles as 64-wide panels (wgmma_tiles.cuh)
    uint64_t *full = (uint64_t *)(sKV + STAGES * C::STAGE), *empty = full + STAGES, *qfull = empty + STAGES;
    const int bh = blockIdx.y;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ;  // heaviest query tiles first
    const int kt0 = key_tiles_begin(q0, BK, window), ntiles = (min(q0 + BQ, T) - 1) / BK + 1 - kt0;  // kt0..diagonal
    const int wg = threadIdx.x / 128;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) { mbar_init(&full[s], 1); mbar_init(&empty[s], 128 * QW); }
        mbar_init(qfull, 1);
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
            mbar_arrive_expect_tx(qfull, BQ * HD * sizeof(bf16));
            for (int p = 0; p < HD / 64; p++) {
                for (int r = 0; r < BQ; r += 64) { tma_load_box(sQ + p * BQ * 64 + r * 64, &tq, p * 64, box_row(q0 + r), bh, qfull); }
            }
            for (int kt = 0; kt < ntiles; kt++) {
                int st = kt % STAGES;
                if (kt >= STAGES) { mbar_wait(&empty[st], (kt / STAGES - 1) & 1); }
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
        return;
    }
    warpgroup_reg_alloc<C::CONSUMER_REGS>();

    const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x & 31, g = lane >> 2;
    const int wq0 = q0 + wg * 64, qa = wq0 + warp * 16 + g;
    const bf16 *wQ = sQ + wg * 64 * 64;  // this warpgroup's 64 rows in each Q panel
    const float sl2 = scale * LOG2E;
    float oacc[HD / 8][4] = {}, s[BK / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {}, alpha[2];
    uint32_t pf[BK / 16][4];
    // Registers a wgmma uses (accumulators s, oacc; A fragments pf) are pinned (wgmma_fence_operands)
    // before the wgmma fence that precedes an issue and right after the wait that completes it, so the
    // compiler moves no access to them across either.
    auto begin_issue = [&]() { wgmma_fence_operands(s); wgmma_fence_operands(oacc); wgmma_fence_operands(pf); wgmma_fence(); };
    auto issue_s = [&](int kt) { wg_gemm_abt_panels<BK, HD>(s, wQ, BQ * 64, sKV + (kt % STAGES) * C::STAGE, BK * 64); };
    auto issue_pv = [&](int kt) { wg_gemm_rs_panels<HD, BK>(oacc, pf, sKV + (kt % STAGES) * C::STAGE + BK * HD); };
    auto wait_s = [&]() { wgmma_wait<0>(); wgmma_fence_operands(s); };
    auto wait_pv = [&]() { wgmma_wait<0>(); wgmma_fence_operands(oacc); wgmma_fence_operands(pf); };
    auto wait_tile = [&](int kt) { mbar_wait(&full[kt % STAGES], (kt / STAGES) & 1); };
    auto rescale_and_pack = [&]() {
#pragma unroll
        for (int j = 0; j < HD / 8; j++) {
            oacc[j][0] *= alpha[0]; oacc[j][1] *= alpha[0];
            oacc[j][2] *= alpha[1]; oacc[j][3] *= alpha[1];
        }
        acc_to_a<BK / 8>(pf, s);
    };
    // Ping-pong turns: warpgroup wg waits for its barrier, issues, then opens the next warpgroup's. The
    // last warpgroup opens warpgroup 0's first turn up front and skips its own last opening, so every
    // barrier sees as many arrivals as waits.
    auto turn_begin = [&]() { if constexpr (PINGPONG) { named_bar_sync(FWDH_SCHED_BAR + wg, 256); } };
    auto turn_end = [&](bool last) {
        if constexpr (PINGPONG) {
            if (!(last && wg == QW - 1)) { named_bar_arrive(FWDH_SCHED_BAR + (wg + 1) % QW, 256); }
        }
    };
    if (PINGPONG && wg == QW - 1) { named_bar_arrive(FWDH_SCHED_BAR, 256); }

    mbar_wait(qfull, 0);
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
            mbar_arrive(&empty[(kt - 1) % STAGES]);
            rescale_and_pack();
        }
        turn_begin();
        begin_issue();
        issue_pv(ntiles - 1);
        wgmma_commit();
        turn_end(true);
        wait_pv();
        mbar_arrive(&empty[(ntiles - 1) % STAGES]);
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
            mbar_arrive(&empty[kt % STAGES]);
        }
    }

    store_o_lse<HD>(o, lse, oacc, m, l, bh, NH, T, qa, scale);
}

// The launch: tensor maps of q, k, v (64-row boxes), grid (ceil(T / (64 QW)), B*NH).
template <int HD, int BK, bool OVERLAP, bool PINGPONG>
void forward_hopper(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int B, int NH, int T, float scale,
                    int window, cudaStream_t stream) {
    using C = FwdHopperConfig<HD, BK>;
    CUtensorMap tq = make_head_tensor_map(q, B * NH, T, HD, 64), tk = make_head_tensor_map(k, B * NH, T, HD, 64),
                tv = make_head_tensor_map(v, B * NH, T, HD, 64);
    auto kernel = fwd_hopper_kernel<HD, BK, OVERLAP, PINGPONG>;
    set_smem(kernel, C::SMEM_BYTES);
    kernel<<<dim3(CEIL_DIV(T, C::BQ), B * NH), C::THREADS, C::SMEM_BYTES, stream>>>(o, lse, tq, tk, tv, NH, T, scale, window);
    cudaCheckLaunch();
}

}  // namespace flash

#endif  // LLMC_ATTENTION_FWD_HOPPER_CUH
