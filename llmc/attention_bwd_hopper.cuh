/*
 Dense causal attention backward on Hopper (sm_90a), HD 64 and 128, FlashAttention-3 style: dK, dV, and dQ
 added into fp32 dqacc by TMA reductions. Included by flash_attention.cuh (uses its store_dkdv, swizzle_base,
 set_smem, dkdv_wgmma_tile, store_ds_transposed), whose launch_dkdv runs launch_dkdv_tma where the boxes fit.
 A CTA owns 64 NWG keys: NWG consumer warpgroups of 64 keys each plus one producer warpgroup. The producer
 (one thread) loads the CTA's K, V once and then streams the BQ-query tiles from the diagonal on (with a
 sliding window, window > 0: up to the last tile whose queries see the CTA's keys) (Q, dO,
 lse, D) into STAGES shared-memory stages with TMA (tensor maps encoded on the host, 128-byte swizzle =
 the wgmma layout of wgmma_tiles.cuh, 64-column panels, rows past T zero-filled); each stage has a full
 barrier (TMA bytes) and an empty barrier (all consumer threads arrive once they no longer read it). Per
 tile a consumer warpgroup does (dkdv_wgmma_tile): S^T = K Q^T, dP^T = V dO^T (shared-memory operands,
 accumulated onto -lse / scale and -D), P^T = exp2(.), dS^T = P^T (dP^T - D) in registers, dV += P^T dO,
 dK += dS^T Q (A from registers); with DQ, dS^T to shared memory, dQ = dS K, and dQ tiles of 64 x 64 fp32
 staged in shared memory (two 32-column boxes, 128-byte swizzle: no bank conflicts) and handed (mbarrier
 pair) to a producer warp that adds them to dqacc with TMA reductions (cp.reduce.async.bulk.tensor)
 instead of 2048 float2 atomics each.
 BQ = 64, HD 64: each warpgroup adds dQ over its own 64 keys (two dS^T buffers per warpgroup).
 BQ = 128, HD 64 (FlashAttention-3's step): S^T and dP^T are m64n128 and dV / dK contract over
 128 queries, twice the work per wgmma round trip; both warpgroups write their dS^T into one shared
 128 x 128 tile and meet at a named barrier; warpgroup w computes dQ of query half w over all 128 keys, so
 each (query, key block) pair is reduced once. ALT_DQ: tile n's whole dQ by warpgroup n % 2,
 the other runs ahead, so the two drift and one's exp work hides under the other's products.
 HD 128: BQ = 64 (the dK, dV accumulators take 128 registers), dS^T shared, dQ split by column
 halves (warpgroup w: dS K[:, 64 w .. 64 w + 63]).
 attention_backward runs 2 stages, at HD 64 BQ 128 with ALT_DQ when it adds dQ, at HD 128 BQ 64
 (launch_dkdv_tma); BQ 64 at HD 64 and 3 stages are dev/cuda/attention_dense.cu's versions 9-11.
 TMA boxes may not exceed the tensor: T >= 128; and the 1-D lse / D boxes of head bh start at element bh T,
 which must be 16-byte aligned: 4 | T (flash_attention.cuh's launch_dkdv falls back otherwise).
 Traffic per CTA: K, V once (NWG HD / 4 KB); Q, dO, lse, D once per query tile (4 HD + 8 B per query,
 shared by the warpgroups: L2 reads per FLOP fall as 1 / NWG); dQ: 4 HD B of fp32 reduction per query
 and (BQ 64, HD 64) warpgroup or (otherwise) CTA. grid (ceil(T / (64 NWG)), B*NH), 1 CTA per SM (smem
 134 KB at BQ 64 HD 64, ~199 KB at BQ 128, ~193 KB at HD 128).
*/
#ifndef LLMC_ATTENTION_BWD_HOPPER_CUH
#define LLMC_ATTENTION_BWD_HOPPER_CUH

#include "tma_pipeline.cuh"

namespace flash {

// The six tensor maps of the backward; passed by value (__grid_constant__) so TMA reads them from the
// kernel's parameter space.
struct BwdTensorMaps { CUtensorMap q, k, v, dout, lse, dsum, dq; };

// Shared-memory layout (byte offsets from a 1024-byte aligned base) in 8 KB bf16 64 x 64 tiles: K, V (64 NWG
// rows x HD: HD / 64 panels), STAGES query tiles of Q and dO (BQ x HD), dS^T (2 buffers of NWG BQ / 64 tiles:
// one per (key half, query half)), the fp32 dQ staging (NWG parts of 64 x 64), lse, D, barriers.
template <int NWG, int BQ, int HD, int STAGES, bool DQ> struct BwdSmem {
    static constexpr int TILE = 64 * 64 * 2, KV = NWG * HD / 64 * TILE, QT = BQ / 64 * HD / 64 * TILE;
    static constexpr size_t k = 0, v = k + KV, q = v + KV, dout = q + STAGES * QT, ds = dout + STAGES * QT,
                            dq = ds + (DQ ? 2 * NWG * BQ / 64 * TILE : 0), lse = dq + (DQ ? NWG * 64 * 64 * 4 : 0),
                            dsum = lse + STAGES * BQ * 4, bar = dsum + STAGES * BQ * 4, end = bar + (2 * STAGES + 1 + 2 * NWG) * 8;
    static constexpr size_t bytes = 1024 + end;
};

// Named barriers of the NWG consumer warpgroups (ids from 3; warpgroup_sync uses 1 and 2): wait for all, or
// arrive without waiting (release: this thread's earlier shared-memory writes are visible to the waiters).
template <int NWG> __device__ inline void consumers_sync(int id) { asm volatile("bar.sync %0, %1;\n" ::"r"(id), "n"(128 * NWG) : "memory"); }
template <int NWG> __device__ inline void consumers_arrive(int id) { asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "n"(128 * NWG) : "memory"); }

// ALT_DQ (BQ 128): tile n's dQ (all 128 queries) is computed by warpgroup n % 2 alone while the other goes on
// to its next tile, so the two drift half a tile apart and one's exp work overlaps the other's products;
// else each computes dQ of its query half and they meet every tile.
template <int NWG, int BQ, int HD, bool DQ, int STAGES, bool ALT_DQ = false>
__global__ void __launch_bounds__(128 * (NWG + 1), 1) dkdv_tma_kernel(bf16 *dk, bf16 *dv, float *dqacc, const __grid_constant__ BwdTensorMaps maps,
                                                                     int NH, int T, float scale, int window) {
    // SHARED_DS: the warpgroups share dS^T and split dQ (BQ 128: by query half; HD 128: by column half);
    // else (BQ 64, HD 64) each warpgroup adds dQ over its own keys
    constexpr bool SHARED_DS = BQ == 128 || HD == 128;
    static_assert(!SHARED_DS || NWG == 2, "dQ is split over two warpgroups");
    static_assert(HD == 64 || BQ == 64, "head dim 128: 64-query tiles (registers)");
    static_assert(!ALT_DQ || (BQ == 128 && HD == 64), "ALT_DQ: the 128-query step at head dim 64");
    using L = BwdSmem<NWG, BQ, HD, STAGES, DQ>;
    constexpr int TILE = 64 * 64, QT = BQ * HD, KV_PANEL = 64 * NWG * 64, NQH = BQ / 64;
    extern __shared__ unsigned char smem_raw[];
    unsigned char *base = (unsigned char *)swizzle_base(smem_raw);
    bf16 *sK = (bf16 *)(base + L::k), *sV = (bf16 *)(base + L::v), *sQ = (bf16 *)(base + L::q), *sdO = (bf16 *)(base + L::dout);
    float *sLse = (float *)(base + L::lse), *sD = (float *)(base + L::dsum);
    uint64_t *full = (uint64_t *)(base + L::bar), *empty = full + STAGES, *kv_full = empty + STAGES;
    uint64_t *dq_full = kv_full + 1, *dq_empty = dq_full + NWG;  // per consumer warpgroup: its wdQ tile
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int k0 = blockIdx.x * 64 * NWG, it0 = k0 / BQ, ntiles = query_tiles_end(T, BQ, k0 + 64 * NWG - 1, window);
    const int tid = threadIdx.x, wg = tid / 128;

    if (tid == 0) {
        for (int s = 0; s < STAGES; s++) { mbar_init(&full[s], 1); mbar_init(&empty[s], 128 * NWG); }
        mbar_init(kv_full, 1);
        for (int w = 0; w < NWG; w++) { mbar_init(&dq_full[w], 128); mbar_init(&dq_empty[w], 1); }
        mbar_init_fence();
    }
    __syncthreads();

    // the consumer warpgroup w's 64 keys exist and some query of tile it sees them (warpgroup-uniform);
    // with SHARED_DS both warpgroups take every tile (they meet at a barrier)
    auto active = [&](int w, int it) { return SHARED_DS || (k0 + 64 * w < T && it * 64 + 63 >= k0 + 64 * w); };
    // dQ part p (staging area p, reduced by producer warp 1 + p): 64 rows from dq_row0 x 64 columns from dq_col0
    auto dq_row0 = [&](int p, int it) { return it * BQ + (BQ == 128 ? 64 * p : 0); };
    auto dq_col0 = [&](int p) { return HD == 128 ? 64 * p : 0; };
    // registers: the producer keeps 40 (SHARED_DS: 24), the consumers share the rest (232 / 240 each at NWG 2)
    constexpr int PRODUCER_REGS = SHARED_DS ? 24 : 40, FREE = (65536 - 128 * PRODUCER_REGS) / (128 * NWG) / 8 * 8;
    constexpr int CONSUMER_REGS = FREE > 240 ? 240 : FREE;
    if (wg == NWG) {  // producer warpgroup: warp 0 loads, warp 1 + w adds consumer w's dQ tiles to dqacc
        warpgroup_reg_dealloc<PRODUCER_REGS>();
        const int pw = (tid / 32) % 4, lane = tid % 32;
        if (DQ && pw >= 1 && pw <= NWG) {
            const int w = pw - 1;
            // two TMA reductions per tile (32-column boxes of 64 rows, 128-byte swizzle); rows past T are skipped
            const float *wdQ = (const float *)(base + L::dq) + w * 64 * 64;
            for (int it = it0, m = 0; it < ntiles; it++) {
                if (!active(w, it)) { continue; }
                const int row0 = dq_row0(w, it), col0 = dq_col0(w);
                if (lane == 0) {
                    mbar_wait(&dq_full[w], m & 1);
                    if (row0 < T) {
                        tma_reduce_add_4d(&maps.dq, wdQ, col0, row0, h, b);
                        tma_reduce_add_4d(&maps.dq, wdQ + 64 * 32, col0 + 32, row0, h, b);
                    }
                    bulk_commit();
                    bulk_wait_read();
                    mbar_arrive(&dq_empty[w]);
                }
                m++;
            }
            bulk_wait();
            return;  // (so the loader's values are not live across this loop: the producer keeps 24 registers)
        }
        if (tid == 128 * NWG) {
            mbar_arrive_expect_tx(kv_full, 2 * NWG * 64 * HD * 2);
            for (int p = 0; p < HD / 64; p++) {  // 64-column panels
                tma_load_4d(sK + p * KV_PANEL, &maps.k, kv_full, 64 * p, k0, h, b);
                tma_load_4d(sV + p * KV_PANEL, &maps.v, kv_full, 64 * p, k0, h, b);
            }
            for (int it = it0, n = 0; it < ntiles; it++, n++) {
                const int st = n % STAGES;
                mbar_wait(&empty[st], ((n / STAGES) & 1) ^ 1);
                mbar_arrive_expect_tx(&full[st], 2 * QT * 2 + 2 * BQ * 4);
                for (int p = 0; p < HD / 64; p++) {
                    tma_load_4d(sQ + st * QT + p * BQ * 64, &maps.q, &full[st], 64 * p, it * BQ, h, b);
                    tma_load_4d(sdO + st * QT + p * BQ * 64, &maps.dout, &full[st], 64 * p, it * BQ, h, b);
                }
                tma_load_4d(sLse + st * BQ, &maps.lse, &full[st], bh * T + it * BQ, 0, 0, 0);
                tma_load_4d(sD + st * BQ, &maps.dsum, &full[st], bh * T + it * BQ, 0, 0, 0);
            }
        }
        return;
    }

    warpgroup_reg_alloc<CONSUMER_REGS>();
    const int warp = (tid / 32) % 4, lane = tid & 31, g = lane >> 2, c = lane & 3;
    const int wk0 = k0 + 64 * wg, key_a = wk0 + warp * 16 + g;
    const bf16 *wK = sK + wg * TILE, *wV = sV + wg * TILE;
    const float sl2 = scale * LOG2E;
    float dka[HD / 8][4] = {}, dva[HD / 8][4] = {};
    mbar_wait(kv_full, 0);
    for (int it = it0, n = 0, m = 0; it < ntiles; it++, n++) {  // n: tiles (stages), m: active tiles (hand-offs)
        const int st = n % STAGES, q0 = it * BQ;
        const bf16 *cQ = sQ + st * QT, *cdO = sdO + st * QT;
        const float *cLse = sLse + st * BQ, *cD = sD + st * BQ;
        mbar_wait(&full[st], (n / STAGES) & 1);
        if (!active(wg, it)) {
            mbar_arrive(&empty[st]);
            continue;
        }
        uint32_t dsf[BQ / 16][4];
        dkdv_wgmma_tile(dka, dva, dsf, wK, wV, cQ, cdO, cLse, cD, q0, wk0, key_a, T, sl2, window, KV_PANEL);
        if (!DQ) {
            wgmma_wait<0>();
            if constexpr (SHARED_DS) { wgmma_fence_operands(dka); wgmma_fence_operands(dva); }
            mbar_arrive(&empty[st]);
            continue;
        }
        // dQ tile of query half qh (BQ 64: this warpgroup's own 64 x 64 partial, qh = wg) to its fp32 staging
        // area, for the producer's TMA reductions: two boxes of 64 rows x 32 columns in the 128-byte swizzle
        // (16-byte chunk k of row r at chunk k ^ (r & 7)), so a warp's float2 stores of 8 rows hit 16 different
        // bank groups (plain rows of 256 bytes: 8-way conflicts)
        auto stage_dq = [&](const float (&d)[8][4], int qh) {
            float *wdQ = (float *)(base + L::dq) + qh * 64 * 64;
            mbar_wait(&dq_empty[qh], (m & 1) ^ 1);  // the producer has read the previous tile's
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int r = warp * 16 + g + 8 * i;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    float *chunk = wdQ + (j / 4) * 64 * 32 + r * 32 + ((2 * (j % 4) + c / 2) ^ (r & 7)) * 4;
                    *reinterpret_cast<float2 *>(chunk + 2 * (c % 2)) = make_float2(d[j][2 * i], d[j][2 * i + 1]);
                }
            }
            fence_proxy_async();
            mbar_arrive(&dq_full[qh]);
        };
        if constexpr (!SHARED_DS) {
            // dS^T (keys x queries) into this warpgroup's swizzled tile: the MN-major A of dQ = dS K over its
            // own keys. Two buffers: another warp of the warpgroup may still be in the previous tile's dQ product.
            float dq[8][4];
            bf16 *wdS = (bf16 *)(base + L::ds) + (2 * wg + (m & 1)) * TILE;
            dq_wgmma_issue(dq, wdS, dsf, wK, wg);
            wgmma_wait<1>();  // dV, dK done (groups complete in order): the stage is no longer read
            mbar_arrive(&empty[st]);
            wgmma_wait<0>();
            stage_dq(dq, wg);
        } else {
            // dS^T of the CTA's 128 keys x BQ queries as tiles (key half w, query half q) at (NQH w + q) TILE in
            // buffer n & 1; both warpgroups write theirs, then (barrier FULL) dQ = dS K over all 128 keys. Not
            // ALT_DQ: warpgroup wg takes dQ part wg (BQ 128: query half wg; HD 128: column half wg, B = K's panel
            // wg); the barrier of tile n + 1 is passed only after the other warpgroup's dQ(n) completed, so
            // buffer n & 1 is free again at tile n + 2. ALT_DQ: the warpgroup "mine" takes both halves, the other
            // only arrives at FULL; before it writes buffer n & 1 again (tile n + 2) it waits at FREE, where the
            // dQ warpgroup arrives once its product is done.
            constexpr int NDQ = ALT_DQ ? 2 : 1, BAR_FULL = 3, BAR_FREE = 5;
            const int nt = ntiles - it0, buf = n & 1;
            const bool mine = !ALT_DQ || buf == wg;
            bf16 *dS = (bf16 *)(base + L::ds) + buf * NWG * NQH * TILE;
            if (ALT_DQ && !mine && n >= 2) { consumers_sync<NWG>(BAR_FREE + buf); }
            store_ds_transposed(dS + NQH * wg * TILE, TILE, dsf);
            fence_proxy_async();
            if (mine) {
                consumers_sync<NWG>(BAR_FULL + (ALT_DQ ? buf : 0));
            } else {
                consumers_arrive<NWG>(BAR_FULL + buf);
            }
            wgmma_wait<0>();  // dV, dK done: their A fragments (P^T, dS^T) are free before dQ's accumulators are live
            wgmma_fence_operands(dka);
            wgmma_fence_operands(dva);
            mbar_arrive(&empty[st]);
            if (mine) {
                float dq[NDQ][8][4];
                wgmma_fence();
#pragma unroll
                for (int x = 0; x < NDQ; x++) {
                    const int qh = ALT_DQ ? x : BQ == 128 ? wg : 0;
                    wg_gemm_atb_panels<64, 128>(dq[x], dS + qh * TILE, sK + (HD == 128 ? wg : 0) * KV_PANEL, 64 * 64, NQH * TILE);
                }
                wgmma_commit();
                wgmma_wait<0>();
#pragma unroll
                for (int x = 0; x < NDQ; x++) { wgmma_fence_operands(dq[x]); }
                wgmma_fence_operands(dka);
                wgmma_fence_operands(dva);
                if (ALT_DQ && n + 2 < nt) { consumers_arrive<NWG>(BAR_FREE + buf); }
#pragma unroll
                for (int x = 0; x < NDQ; x++) { stage_dq(dq[x], ALT_DQ ? x : wg); }
            }
        }
        m++;
    }
    store_dkdv<HD>(dk, dv, dka, dva, bh, T, key_a, T, scale);
}

// q, k, v (B, NH, T, HD) and dout (B, T, NH, HD) as (HD, T, NH, B) maps with 64-column 128-byte-swizzled boxes
// (BQ query rows, or the CTA's 64 NWG keys; HD 128: two per row, one per panel); lse, Dsum (B NH T) as 1-D fp32
// maps with BQ-row boxes; dqacc (B, NH, T, HD) fp32 with 64-row x 32-column 128-byte-swizzled boxes. Any
// configuration the kernel's static checks allow (STAGES 2 or 3).
template <int HD, int BQ, bool DQ, int STAGES, bool ALT_DQ>
void launch_dkdv_tma_config(bf16 *dk, bf16 *dv, float *dqacc, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                            const float *lse, const float *Dsum, int B, int NH, int T, float scale, int window, cudaStream_t stream) {
    constexpr int NWG = 2;
    const cuuint64_t row = HD * sizeof(bf16), dims[4] = {HD, (cuuint64_t)T, (cuuint64_t)NH, (cuuint64_t)B};
    const cuuint64_t head_major[3] = {row, T * row, NH * T * row}, time_major[3] = {NH * row, row, T * NH * row};
    const cuuint32_t qbox[4] = {64, (cuuint32_t)BQ, 1, 1}, kbox[4] = {64, 64 * NWG, 1, 1}, rbox[4] = {(cuuint32_t)BQ, 1, 1, 1};
    const cuuint64_t rows = (cuuint64_t)B * NH * T, rbytes = CEIL_DIV(rows * 4, 16) * 16;
    const cuuint64_t rdims[4] = {rows, 1, 1, 1}, rstrides[3] = {rbytes, rbytes, rbytes};
    const CUtensorMapDataType BF = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, F32 = CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
    const CUtensorMapSwizzle SW = CU_TENSOR_MAP_SWIZZLE_128B, NO = CU_TENSOR_MAP_SWIZZLE_NONE;
    if (T < 64 * NWG || T % 4 != 0) { die("attention: TMA backward needs T >= %d and a multiple of 4 (got %d)", 64 * NWG, T); }
    const cuuint64_t frow = HD * sizeof(float), dq_strides[3] = {frow, T * frow, NH * T * frow};
    const cuuint32_t dqbox[4] = {32, 64, 1, 1};
    BwdTensorMaps maps = {tensor_map_4d(q, BF, dims, head_major, qbox, SW),      tensor_map_4d(k, BF, dims, head_major, kbox, SW),
                          tensor_map_4d(v, BF, dims, head_major, kbox, SW),      tensor_map_4d(dout, BF, dims, time_major, qbox, SW),
                          tensor_map_4d(lse, F32, rdims, rstrides, rbox, NO),    tensor_map_4d(Dsum, F32, rdims, rstrides, rbox, NO),
                          {}};
    if (DQ) { maps.dq = tensor_map_4d(dqacc, F32, dims, dq_strides, dqbox, SW); }
    auto kernel = dkdv_tma_kernel<NWG, BQ, HD, DQ, STAGES, ALT_DQ>;
    constexpr size_t bytes = BwdSmem<NWG, BQ, HD, STAGES, DQ>::bytes;
    set_smem(kernel, bytes);
    kernel<<<dim3(CEIL_DIV(T, 64 * NWG), B * NH), 128 * (NWG + 1), bytes, stream>>>(dk, dv, dqacc, maps, NH, T, scale, window);
    cudaCheckLaunch();
}

// The configuration attention_backward runs: 2 stages; HD 64: FlashAttention-3's 128-query step, with DQ
// each tile's dQ by one warpgroup (ALT_DQ); HD 128: 64-query tiles.
template <int HD, bool DQ>
void launch_dkdv_tma(bf16 *dk, bf16 *dv, float *dqacc, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v, const float *lse,
                     const float *Dsum, int B, int NH, int T, float scale, int window, cudaStream_t stream) {
    launch_dkdv_tma_config<HD, HD == 64 ? 128 : 64, DQ, 2, DQ && HD == 64>(dk, dv, dqacc, dout, q, k, v, lse, Dsum, B, NH, T, scale,
                                                                           window, stream);
}

}  // namespace flash

#endif  // LLMC_ATTENTION_BWD_HOPPER_CUH
