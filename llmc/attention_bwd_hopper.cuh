/*
 Dense causal attention backward on Hopper (sm_90a), HD 64, FlashAttention-3 style: dK, dV, and dQ added
 into fp32 dqacc by bulk reductions. Included by flash_attention.cuh (uses its store_dkdv, swizzle_base,
 set_smem); launch_dkdv runs it for kw = KW_TMA (+ 1).
 A CTA owns 64 NWG keys: NWG consumer warpgroups of 64 keys each plus one producer warpgroup. The producer
 (one thread) loads the CTA's K, V once and then streams the 64-query tiles from the diagonal on (Q, dO,
 lse, D) into STAGES shared-memory stages with TMA (tensor maps encoded on the host, 128-byte swizzle =
 the wgmma layout of wgmma_tiles.cuh, rows past T zero-filled); each stage has a full barrier (TMA bytes)
 and an empty barrier (all consumer threads arrive once they no longer read it), so the warpgroups run
 out of lockstep with each other and with the loads. Per tile a consumer warpgroup does, as
 dkdv_wgmma_kernel: S^T = K Q^T, dP^T = V dO^T (shared-memory operands), P^T = exp(S^T scale - lse),
 dS^T = P^T (dP^T - D) in registers, dV += P^T dO, dK += dS^T Q (A from registers); with DQ, dS^T to shared
 memory (two buffers), dQ_partial = dS K (64 queries x 64), written as fp32 rows to shared memory and
 handed (mbarrier pair) to a producer warp that adds it to dqacc with 64 row-wise cp.reduce.async.bulk
 (256 bytes each) instead of 2048 float2 atomics.
 TMA boxes may not exceed the tensor: T >= 128 (flash_attention.cuh's launch_dkdv falls back below).
 Traffic per CTA: K, V once (16 NWG KB); Q, dO, lse, D once per query tile (16.5 KB, shared by NWG
 warpgroups: L2 reads per FLOP fall as 1 / NWG); dQ: 16 KB of fp32 reduction per (query tile, warpgroup).
 grid (ceil(T / (64 NWG)), B*NH), 1 CTA per SM (smem 134 KB at NWG 2).
*/
#ifndef LLMC_ATTENTION_BWD_HOPPER_CUH
#define LLMC_ATTENTION_BWD_HOPPER_CUH

#include "tma_pipeline.cuh"

namespace flash {

// kw = KW_TMA selects this kernel with 2 stages, KW_TMA + 1 with 3.
constexpr int KW_TMA = 10;

// The six tensor maps of the backward; passed by value (__grid_constant__) so TMA reads them from the
// kernel's parameter space.
struct BwdTensorMaps { CUtensorMap q, k, v, dout, lse, dsum; };

// Shared-memory layout (byte offsets from a 1024-byte aligned base): 8 KB bf16 64 x 64 tiles first.
template <int NWG, int STAGES, bool DQ> struct BwdSmem {
    static constexpr int TILE = 64 * 64 * 2, DQ_STRIDE = 72;  // fp32 dQ rows padded by 8 floats against bank conflicts
    static constexpr size_t k = 0, v = k + NWG * TILE, q = v + NWG * TILE, dout = q + STAGES * TILE,
                            ds = dout + STAGES * TILE, dq = ds + (DQ ? 2 * NWG * TILE : 0),
                            lse = dq + (DQ ? NWG * 64 * DQ_STRIDE * 4 : 0), dsum = lse + STAGES * 256,
                            bar = dsum + STAGES * 256, end = bar + (2 * STAGES + 1 + 2 * NWG) * 8;
    static constexpr size_t bytes = 1024 + end;
};

template <int NWG, bool DQ, int STAGES>
__global__ void __launch_bounds__(128 * (NWG + 1), 1) dkdv_tma_kernel(bf16 *dk, bf16 *dv, float *dqacc, const __grid_constant__ BwdTensorMaps maps,
                                                                     int NH, int T, float scale) {
    using L = BwdSmem<NWG, STAGES, DQ>;
    constexpr int HD = 64, TILE = 64 * 64;
    extern __shared__ unsigned char smem_raw[];
    unsigned char *base = (unsigned char *)swizzle_base(smem_raw);
    bf16 *sK = (bf16 *)(base + L::k), *sV = (bf16 *)(base + L::v), *sQ = (bf16 *)(base + L::q), *sdO = (bf16 *)(base + L::dout);
    float *sLse = (float *)(base + L::lse), *sD = (float *)(base + L::dsum);
    uint64_t *full = (uint64_t *)(base + L::bar), *empty = full + STAGES, *kv_full = empty + STAGES;
    uint64_t *dq_full = kv_full + 1, *dq_empty = dq_full + NWG;  // per consumer warpgroup: its wdQ tile
    const int bh = blockIdx.y, b = bh / NH, h = bh % NH;
    const int k0 = blockIdx.x * 64 * NWG, it0 = k0 / 64, ntiles = CEIL_DIV(T, 64);
    const int tid = threadIdx.x, wg = tid / 128;

    if (tid == 0) {
        for (int s = 0; s < STAGES; s++) { mbar_init(&full[s], 1); mbar_init(&empty[s], 128 * NWG); }
        mbar_init(kv_full, 1);
        for (int w = 0; w < NWG; w++) { mbar_init(&dq_full[w], 128); mbar_init(&dq_empty[w], 1); }
        mbar_init_fence();
    }
    __syncthreads();

    // the consumer warpgroup w's 64 keys exist and some query of tile it sees them (warpgroup-uniform)
    auto active = [&](int w, int it) { return k0 + 64 * w < T && it * 64 + 63 >= k0 + 64 * w; };
    // registers: the producer keeps 40, the consumers share the rest (232 each at NWG 2, 152 at 3)
    constexpr int CONSUMER_REGS = (65536 - 128 * 40) / (128 * NWG) / 8 * 8 > 240 ? 240 : (65536 - 128 * 40) / (128 * NWG) / 8 * 8;
    if (wg == NWG) {  // producer warpgroup: warp 0 loads, warp 1 + w adds consumer w's dQ tiles to dqacc
        warpgroup_reg_dealloc<40>();
        const int pw = (tid / 32) % 4, lane = tid % 32;
        if (DQ && pw >= 1 && pw <= NWG) {
            const int w = pw - 1;
            const float *wdQ = (const float *)(base + L::dq) + w * 64 * L::DQ_STRIDE;
            for (int it = it0, m = 0; it < ntiles; it++) {
                if (!active(w, it)) { continue; }
                mbar_wait(&dq_full[w], m & 1);
                for (int r = lane; r < 64 && it * 64 + r < T; r += 32) {
                    bulk_reduce_add_f32(dqacc + ((size_t)bh * T + it * 64 + r) * HD, wdQ + r * L::DQ_STRIDE, HD * 4);
                }
                bulk_commit();
                bulk_wait_read();
                __syncwarp();
                if (lane == 0) { mbar_arrive(&dq_empty[w]); }
                m++;
            }
            bulk_wait();
        }
        if (tid == 128 * NWG) {
            mbar_arrive_expect_tx(kv_full, 2 * NWG * 64 * HD * 2);
            tma_load_4d(sK, &maps.k, kv_full, 0, k0, h, b);
            tma_load_4d(sV, &maps.v, kv_full, 0, k0, h, b);
            for (int it = it0, n = 0; it < ntiles; it++, n++) {
                const int st = n % STAGES;
                mbar_wait(&empty[st], ((n / STAGES) & 1) ^ 1);
                mbar_arrive_expect_tx(&full[st], 2 * TILE * 2 + 2 * 64 * 4);
                tma_load_4d(sQ + st * TILE, &maps.q, &full[st], 0, it * 64, h, b);
                tma_load_4d(sdO + st * TILE, &maps.dout, &full[st], 0, it * 64, h, b);
                tma_load_4d(sLse + st * 64, &maps.lse, &full[st], bh * T + it * 64, 0, 0, 0);
                tma_load_4d(sD + st * 64, &maps.dsum, &full[st], bh * T + it * 64, 0, 0, 0);
            }
        }
        return;
    }

    warpgroup_reg_alloc<CONSUMER_REGS>();
    const int warp = (tid / 32) % 4, lane = tid & 31, g = lane >> 2, c = lane & 3;
    const int wk0 = k0 + 64 * wg, key_a = wk0 + warp * 16 + g;
    const bf16 *wK = sK + wg * TILE, *wV = sV + wg * TILE;
    float *wdQ = (float *)(base + L::dq) + wg * 64 * L::DQ_STRIDE;
    const float sl2 = scale * LOG2E;
    float dka[8][4] = {}, dva[8][4] = {};
    mbar_wait(kv_full, 0);
    for (int it = it0, n = 0, m = 0; it < ntiles; it++, n++) {  // n: tiles (stages), m: active tiles (hand-offs)
        const int st = n % STAGES, q0 = it * 64;
        const bf16 *cQ = sQ + st * TILE, *cdO = sdO + st * TILE;
        const float *cLse = sLse + st * 64, *cD = sD + st * 64;
        mbar_wait(&full[st], (n / STAGES) & 1);
        if (!active(wg, it)) {
            mbar_arrive(&empty[st]);
            continue;
        }
        uint32_t dsf[4][4];
        dkdv_wgmma_tile(dka, dva, dsf, wK, wV, cQ, cdO, cLse, cD, q0, wk0, key_a, T, sl2);
        if (!DQ) {
            wgmma_wait<0>();
            mbar_arrive(&empty[st]);
            continue;
        }
        // dS^T (keys x queries) into this warpgroup's swizzled tile: the MN-major A of dQ = dS K. Two
        // buffers: another warp of the warpgroup may still be in the previous tile's dQ product.
        bf16 *wdS = (bf16 *)(base + L::ds) + (2 * wg + (m & 1)) * TILE;
        float dq[8][4];
        dq_wgmma_issue(dq, wdS, dsf, wK, wg);
        wgmma_wait<1>();  // dV, dK done (groups complete in order): the stage is no longer read
        mbar_arrive(&empty[st]);
        wgmma_wait<0>();
        // the fp32 dQ tile to wdQ, for the producer's bulk reduction
        mbar_wait(&dq_empty[wg], (m & 1) ^ 1);  // the producer has read the previous tile's wdQ
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float *row = wdQ + (warp * 16 + g + 8 * i) * L::DQ_STRIDE + 2 * c;
#pragma unroll
            for (int j = 0; j < 8; j++) { *reinterpret_cast<float2 *>(row + j * 8) = make_float2(dq[j][2 * i], dq[j][2 * i + 1]); }
        }
        fence_proxy_async();
        mbar_arrive(&dq_full[wg]);
        m++;
    }
    store_dkdv<HD>(dk, dv, dka, dva, bh, T, key_a, T, scale);
}

// q, k, v (B, NH, T, 64) and dout (B, T, NH, 64) as (64, T, NH, B) maps of 64-wide 128-byte-swizzled rows
// (box: 64 query rows, or the CTA's 64 NWG keys); lse, Dsum (B NH T) as 1-D fp32 maps with 64-row boxes.
// stages: 2 or 3 shared-memory stages of Q / dO / lse / D.
template <bool DQ>
void launch_dkdv_tma(bf16 *dk, bf16 *dv, float *dqacc, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v, const float *lse,
                     const float *Dsum, int B, int NH, int T, float scale, int stages, cudaStream_t stream) {
    constexpr int NWG = 2;
    const cuuint64_t row = 64 * sizeof(bf16), dims[4] = {64, (cuuint64_t)T, (cuuint64_t)NH, (cuuint64_t)B};
    const cuuint64_t head_major[3] = {row, T * row, NH * T * row}, time_major[3] = {NH * row, row, T * NH * row};
    const cuuint32_t qbox[4] = {64, 64, 1, 1}, kbox[4] = {64, 64 * NWG, 1, 1}, rbox[4] = {64, 1, 1, 1};
    const cuuint64_t rows = (cuuint64_t)B * NH * T, rbytes = CEIL_DIV(rows * 4, 16) * 16;
    const cuuint64_t rdims[4] = {rows, 1, 1, 1}, rstrides[3] = {rbytes, rbytes, rbytes};
    const CUtensorMapDataType BF = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, F32 = CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
    const CUtensorMapSwizzle SW = CU_TENSOR_MAP_SWIZZLE_128B, NO = CU_TENSOR_MAP_SWIZZLE_NONE;
    if (T < 64 * NWG) { die("attention: TMA backward needs T >= %d (got %d)", 64 * NWG, T); }
    BwdTensorMaps maps = {tensor_map_4d(q, BF, dims, head_major, qbox, SW),      tensor_map_4d(k, BF, dims, head_major, kbox, SW),
                          tensor_map_4d(v, BF, dims, head_major, kbox, SW),      tensor_map_4d(dout, BF, dims, time_major, qbox, SW),
                          tensor_map_4d(lse, F32, rdims, rstrides, rbox, NO),    tensor_map_4d(Dsum, F32, rdims, rstrides, rbox, NO)};
    auto run = [&](auto kernel, size_t bytes) {
        set_smem(kernel, bytes);
        kernel<<<dim3(CEIL_DIV(T, 64 * NWG), B * NH), 128 * (NWG + 1), bytes, stream>>>(dk, dv, dqacc, maps, NH, T, scale);
        cudaCheckLaunch();
    };
    if (stages == 2) {
        run(dkdv_tma_kernel<NWG, DQ, 2>, BwdSmem<NWG, 2, DQ>::bytes);
    } else if (stages == 3) {
        run(dkdv_tma_kernel<NWG, DQ, 3>, BwdSmem<NWG, 3, DQ>::bytes);
    } else {
        die("attention: TMA backward with %d stages (2 or 3)", stages);
    }
}

}  // namespace flash

#endif  // LLMC_ATTENTION_BWD_HOPPER_CUH
