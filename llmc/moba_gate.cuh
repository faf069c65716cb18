/*
 MoBA gate on the GPU: block centroids, then the fused top-k block selection (see doc/model.md, MoBA).
 Inputs q, k: (B, NH, T, HD) floatX, HD in {64, 128}; block size bs >= 1; topk K in [1, 64].
 1. Centroids: (B, NH, nb, HD) 4-byte elements, nb = ceil(T/bs): the mean of each block's keys over its real
    length, in fp32. The bf16 build stores each block's fp32 centroid c split into two bf16 rows, HD of
    c_hi = bf16(c) then HD of c_lo = bf16(c - c_hi) (same bytes), the tensor-core form of step 2.
    Traffic: k read once, centroids written once.
 2. Selection blocks: (B, NH, T, K) int32. Query t always takes its own block t/bs; of the strictly past
    blocks i < t/bs, scored s = q_t . c_i (no scale), the K-1 best are kept (equal scores: lower index
    wins); fewer than K-1 past blocks means all of them. Each row is ascending, own block last of the real
    entries, then -1 padding.
 Fused: the (query x block) score matrix never reaches memory; a CTA takes a tile of queries of one head
 and streams the centroids of the blocks they can see (causal: only blocks before the tile's last own
 block) through shared memory; only scores that beat a query's current (K-1)-th best become candidates,
 merged into a sorted top list per query in shared memory. Traffic: q read once, centroids read once per
 CTA (from L2), selection written once (coalesced through shared memory); memory linear in T.
 Two selection kernels:
 - tensor cores (bf16 build, the one moba_gate uses): s = q.c_hi + q.c_lo by mma.sync m16n8k16 with fp32
   accumulation. q is exact in bf16 and |c - c_hi - c_lo| <= 2^-18 |c|, so s is the fp32 score up to
   (2^-18 + 17/8 HD 2^-23) sum_d |q_d c_d| (split + tensor-core accumulation, worst case): a near tie
   can order differently than fp32 FMA would. 128 queries x 32 blocks per pass, 4 warps of 32 queries.
 - CUDA cores (fp32 build): fp32 FMA, 64 queries x 128 blocks per pass, a 4 x 8 score tile per thread.
*/
#ifndef LLMC_MOBA_GATE_CUH
#define LLMC_MOBA_GATE_CUH

#include <math.h>
#include "cuda_common.cuh"
#include "mma_tiles.cuh"
#include "moba_selection.h"
#include "utils.h"

// ---------------------------------------------------------------------------------------------------
// Centroids: grid (nb, B*NH), 256 threads = (HD/2 dim pairs) x (row groups); row groups sum strided
// rows, then one group adds the partial sums. SPLIT: write the row as bf16 c_hi[HD], c_lo[HD].
template <int HD, bool SPLIT>
__global__ void moba_centroids_kernel(float *c, const floatX *k, int T, int bs, int nb) {
    constexpr int PAIRS = HD / 2, GROUPS = 256 / PAIRS;
    __shared__ float2 part[GROUPS][PAIRS];
    int blk = blockIdx.x, bh = blockIdx.y;
    int p = threadIdx.x % PAIRS, g = threadIdx.x / PAIRS;
    int start = blk * bs, len = min(bs, T - start);
    const floatX *kb = k + ((size_t)bh * T + start) * HD + 2 * p;
    float2 sum = make_float2(0.0f, 0.0f);
    for (int r = g; r < len; r += GROUPS) {
        sum.x += to_float(kb[(size_t)r * HD]);
        sum.y += to_float(kb[(size_t)r * HD + 1]);
    }
    part[g][p] = sum;
    __syncthreads();
    if (g == 0) {
        for (int i = 1; i < GROUPS; i++) { sum.x += part[i][p].x; sum.y += part[i][p].y; }
        float2 mean = make_float2(sum.x / len, sum.y / len);
        float *out = c + ((size_t)bh * nb + blk) * HD;
        if (SPLIT) {
            __nv_bfloat162 hi = __float22bfloat162_rn(mean);
            float2 rest = __bfloat1622float2(hi);  // c - c_hi is exact in fp32
            rest.x = mean.x - rest.x; rest.y = mean.y - rest.y;
            __nv_bfloat162 *row = (__nv_bfloat162 *)out;
            row[p] = hi;
            row[PAIRS + p] = __float22bfloat162_rn(rest);
        } else {
            *(float2 *)&out[2 * p] = mean;
        }
    }
}

// Total order of the selection: higher score first, equal scores to the lower block index.
__device__ inline bool moba_better(float s1, int b1, float s2, int b2) {
    return s1 > s2 || (s1 == s2 && b1 < b2);
}

// Offers (s, b) to query r's top list in shared memory: nq entries, best first, at most nsel; entry i of
// query r at i * QT + r. Returns the score to beat afterwards (-inf until the list is full).
template <int QT>
__device__ inline float moba_offer(float *lv, int *lb, int r, int &nq, int nsel, float s, int b) {
    int pos = -1;
    if (nq < nsel) {
        pos = nq++;
    } else if (moba_better(s, b, lv[(nsel - 1) * QT + r], lb[(nsel - 1) * QT + r])) {
        pos = nsel - 1;
    }
    if (pos >= 0) {
        for (; pos > 0 && moba_better(s, b, lv[(pos - 1) * QT + r], lb[(pos - 1) * QT + r]); pos--) {
            lv[pos * QT + r] = lv[(pos - 1) * QT + r];
            lb[pos * QT + r] = lb[(pos - 1) * QT + r];
        }
        lv[pos * QT + r] = s;
        lb[pos * QT + r] = b;
    }
    return nq == nsel ? lv[(nsel - 1) * QT + r] : -INFINITY;
}

// Rows t0 .. t0+nrows-1 out: past blocks ascending, own block, -1 padding; staged in `stage` (nrows*topk
// ints, may alias the candidate buffers) so the store is coalesced. Called by every thread of the CTA;
// thread r < nrows owns query r's list (nq entries).
template <int QT, int THREADS>
__device__ inline void moba_store_rows(int *dst, int *stage, int *lb, int nq, int t0, int nrows, int bs, int topk) {
    const int tid = threadIdx.x;
    __syncthreads();  // everyone is done with the candidate buffers
    if (tid < nrows) {
        for (int i = 1; i < nq; i++) {  // insertion sort by block index, at most 63 entries
            int b = lb[i * QT + tid], j = i;
            for (; j > 0 && lb[(j - 1) * QT + tid] > b; j--) { lb[j * QT + tid] = lb[(j - 1) * QT + tid]; }
            lb[j * QT + tid] = b;
        }
        for (int i = 0; i < topk; i++) {
            stage[tid * topk + i] = i < nq ? lb[i * QT + tid] : i == nq ? (t0 + tid) / bs : -1;
        }
    }
    __syncthreads();
    for (int i = tid; i < nrows * topk; i += THREADS) { dst[i] = stage[i]; }
}

// ---------------------------------------------------------------------------------------------------
// CUDA-core scoring + top-k. Tile sizes: QT queries x CT centroid blocks per pass, DC dims per chunk.
constexpr int MOBA_QT = 64, MOBA_CT = 128, MOBA_DC = 32, MOBA_THREADS = 256;

// Row strides (floats) of the Q tile (HD + 4) and the centroid chunk: rows stay 16-byte aligned and the
// 8 lanes of a 16-byte load phase hit 8 different bank groups.
constexpr int MOBA_CS = MOBA_DC + 4;
// Shared buffer for a centroid chunk, then the pass's candidate scores, then the staged output rows.
constexpr int MOBA_CB = MOBA_CT * MOBA_CS > MOBA_QT * MOBA_CT ? MOBA_CT * MOBA_CS : MOBA_QT * MOBA_CT;
static_assert(MOBA_CB >= MOBA_QT * MOBA_MAX_TOPK, "output rows must fit the shared buffer");
// float4s of one centroid chunk each thread prefetches into registers
constexpr int MOBA_PRE = MOBA_CT * MOBA_DC / 4 / MOBA_THREADS;

static inline size_t moba_select_smem(int HD, int topk) {
    size_t f = (size_t)MOBA_QT * (HD + 4) + MOBA_CB + 2 * MOBA_QT;  // Qs, Cb, thr, cnt
    f += 2 * (size_t)MOBA_QT * (topk - 1);                                            // top lists
    return f * 4 + (size_t)MOBA_QT * MOBA_CT;                                         // candidate columns
}

template <int HD>
__global__ void __launch_bounds__(MOBA_THREADS, 2)
moba_select_kernel(int *blocks, const float *cent, const floatX *q, int BH, int T, int bs, int topk,
                   int nb, int ntiles) {
    constexpr int QT = MOBA_QT, CT = MOBA_CT, DC = MOBA_DC, CS = MOBA_CS, QS = HD + 4, D4 = DC / 4;
    extern __shared__ float4 smem4[];
    float *Qs = (float *)smem4;                  // [QT][QS] queries in fp32
    float *Cb = Qs + QT * QS;                    // [CT][CS] centroid chunk; then candidate scores [CT][QT]
    float *thr = Cb + MOBA_CB;                   // [QT] score to beat (-inf until the list is full)
    int *cnt = (int *)(thr + QT);                // [QT] candidates this pass
    const int nsel = topk - 1;
    float *lv = (float *)(cnt + QT);             // [nsel][QT] top list scores, best first
    int *lb = (int *)(lv + nsel * QT);           // [nsel][QT] top list blocks
    unsigned char *cc = (unsigned char *)(lb + nsel * QT);  // [CT][QT] candidate columns

    // heaviest tiles (latest queries, most past blocks) first, for load balance
    const int tile = ntiles - 1 - blockIdx.x / BH, bh = blockIdx.x % BH;
    const int t0 = tile * QT, tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const unsigned lane = tid % 32, half = lane & 16;
    const floatX *qb = q + ((size_t)bh * T + t0) * HD;
    const float *cbh = cent + (size_t)bh * nb * HD;

    {  // queries to fp32: 16-byte loads, all in flight before the first use
        constexpr int V = 16 / sizeof(floatX), NV = QT * HD / V / MOBA_THREADS;
        uint4 raw[NV];
#pragma unroll
        for (int n = 0; n < NV; n++) {
            int idx = tid + n * MOBA_THREADS, r = idx / (HD / V), d = idx % (HD / V) * V;
            raw[n] = t0 + r < T ? *(const uint4 *)&qb[(size_t)r * HD + d] : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int n = 0; n < NV; n++) {
            int idx = tid + n * MOBA_THREADS, r = idx / (HD / V), d = idx % (HD / V) * V;
            const floatX *x = (const floatX *)&raw[n];
#pragma unroll
            for (int v = 0; v < V; v++) { Qs[r * QS + d + v] = to_float(x[v]); }
        }
    }
    if (tid < QT) { thr[tid] = -INFINITY; cnt[tid] = 0; }
    const int tlast = min(t0 + QT, T) - 1;
    const int npast = nsel > 0 ? tlast / bs : 0;  // blocks any query of this tile may score
    const int nct = CEIL_DIV(npast, CT), nchunks = HD / DC;
    int nq = 0;  // entries in this thread's query's top list (threads tid < QT own query tid)

    // a chunk is CT rows x D4 float4s, read coalesced along the rows
    float4 pre[MOBA_PRE];
    auto prefetch = [&](int c0, int dc) {
#pragma unroll
        for (int r = 0; r < MOBA_PRE; r++) {
            int idx = tid + MOBA_THREADS * r, row = idx / D4, d4 = idx % D4, b = c0 + row;
            pre[r] = b < npast ? *(const float4 *)&cbh[(size_t)b * HD + dc * DC + d4 * 4] : make_float4(0, 0, 0, 0);
        }
    };
    if (nct > 0) { prefetch(0, 0); }

    for (int ct = 0; ct < nct; ct++) {
        const int c0 = ct * CT, jn = CEIL_DIV(min(CT, npast - c0), 16);
        float acc[4][8];
#pragma unroll
        for (int i = 0; i < 4; i++) {
#pragma unroll
            for (int j = 0; j < 8; j++) { acc[i][j] = 0.0f; }
        }
        for (int dc = 0; dc < nchunks; dc++) {
            __syncthreads();  // everyone is done with Cb (previous chunk or candidates)
#pragma unroll
            for (int r = 0; r < MOBA_PRE; r++) {
                int idx = tid + MOBA_THREADS * r;
                *(float4 *)&Cb[(idx / D4) * CS + (idx % D4) * 4] = pre[r];
            }
            __syncthreads();
            int nd = dc + 1, nc = ct;
            if (nd == nchunks) { nd = 0; nc++; }
            if (nc < nct) { prefetch(nc * CT, nd); }  // in flight while we compute
            const float *qs = Qs + dc * DC;
#pragma unroll 2
            for (int d = 0; d < DC; d += 4) {
                float4 a[4], b[8];
#pragma unroll
                for (int i = 0; i < 4; i++) { a[i] = *(const float4 *)&qs[(ty + 16 * i) * QS + d]; }
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (j < jn) { b[j] = *(const float4 *)&Cb[(tx + 16 * j) * CS + d]; }
                }
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (j < jn) {
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            float s = acc[i][j];
                            s = fmaf(a[i].x, b[j].x, s); s = fmaf(a[i].y, b[j].y, s);
                            s = fmaf(a[i].z, b[j].z, s); s = fmaf(a[i].w, b[j].w, s);
                            acc[i][j] = s;
                        }
                    }
                }
            }
        }
        __syncthreads();  // Cb now holds candidates
#pragma unroll
        for (int i = 0; i < 4; i++) {  // a row's 16 threads are one half-warp (lanes `half`..`half`+15)
            const int r = ty + 16 * i, t = t0 + r, ob = t < T ? t / bs : 0;
            // Pass-local bound: the nsel-th largest of the 16 threads' row maxima. At least nsel scores of
            // this pass reach it, so a lower score can never make the list; this spares the first passes
            // (list not yet full) from inserting every score.
            float m = -INFINITY, lo = -INFINITY;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (c0 + tx + 16 * j < ob) { m = fmaxf(m, acc[i][j]); }
            }
            if (nsel <= 16) {
                int rank = 0;  // among the half-warp, ties ordered by lane
#pragma unroll
                for (int o = 1; o < 16; o++) {
                    float other = __shfl_xor_sync(0xffffffffu, m, o);
                    rank += other > m || (other == m && (tx ^ o) < tx);
                }
                unsigned at = __ballot_sync(0xffffffffu, rank == nsel - 1) & (0xFFFFu << half);
                lo = __shfl_sync(0xffffffffu, m, __ffs(at) - 1);
            }
            const float th = thr[r];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                int col = tx + 16 * j;
                bool keep = c0 + col < ob && acc[i][j] > th && acc[i][j] >= lo;
                // one shared-memory atomic per row and column step, not one per thread
                unsigned mask = __ballot_sync(0xffffffffu, keep) & (0xFFFFu << half);
                int leader = mask ? __ffs(mask) - 1 : lane, base = 0;
                if (mask && lane == leader) { base = atomicAdd(&cnt[r], __popc(mask)); }
                base = __shfl_sync(0xffffffffu, base, leader);
                if (keep) {
                    int slot = base + __popc(mask & ((1u << lane) - 1));
                    Cb[slot * QT + r] = acc[i][j];
                    cc[slot * QT + r] = (unsigned char)col;
                }
            }
        }
        __syncthreads();
        if (tid < QT) {
            int n = cnt[tid];
            float th = thr[tid];
            for (int c = 0; c < n; c++) { th = moba_offer<QT>(lv, lb, tid, nq, nsel, Cb[c * QT + tid], c0 + cc[c * QT + tid]); }
            cnt[tid] = 0;
            thr[tid] = th;
        }
    }

    moba_store_rows<QT, MOBA_THREADS>(blocks + ((size_t)bh * T + t0) * topk, (int *)Cb, lb, nq, t0, tlast - t0 + 1, bs, topk);
}

#ifndef ENABLE_FP32
// ---------------------------------------------------------------------------------------------------
// Tensor-core scoring + top-k (bf16 build). A CTA: 128 queries of one head, 4 warps; warp w owns queries
// [32w, 32w+32) as two m16 tiles whose q fragments stay in registers. Per pass, 32 blocks' split
// centroids (32 x 2HD bf16, swizzled) arrive by cp.async one pass ahead; every B fragment feeds both m16
// tiles. In the mma C layout a query's 32 scores of a pass sit in one lane quad (8 each); survivors of
// the query's threshold go to its candidate row in shared memory at offsets from a quad prefix sum (no
// atomics). When some row could overflow (CAP), thread r merges query r's candidates into its top list.
constexpr int MOBA_TC_QT = 128, MOBA_TC_CT = 32, MOBA_TC_CAP = 32, MOBA_TC_THREADS = 128;
constexpr int MOBA_TC_CS = MOBA_TC_CAP + 1;  // candidate row stride: merging threads hit distinct banks
static_assert(MOBA_TC_CAP >= MOBA_TC_CT, "a pass's survivors must fit an empty candidate row");
static_assert(MOBA_TC_QT * MOBA_MAX_TOPK <= 2 * MOBA_TC_QT * MOBA_TC_CS, "output rows must fit the candidate buffers");

static inline size_t moba_select_tc_smem(int HD, int topk) {
    size_t tiles = 2 * (size_t)MOBA_TC_CT * 2 * HD * 2;       // double-buffered split centroids (bf16)
    size_t cand = 2 * (size_t)MOBA_TC_QT * MOBA_TC_CS * 4;    // candidate scores + blocks (Q tile first)
    if ((size_t)MOBA_TC_QT * HD * 2 > cand) { cand = (size_t)MOBA_TC_QT * HD * 2; }
    return tiles + cand + 2 * (size_t)MOBA_TC_QT * 4 + 2 * (size_t)MOBA_TC_QT * (topk - 1) * 4;
}

// MINB: CTAs per SM that the shared memory allows (by topk); the register budget follows it.
template <int HD, int MINB>
__global__ void __launch_bounds__(MOBA_TC_THREADS, MINB)
moba_select_tc_kernel(int *blocks, const floatX *cent, const floatX *q, int BH, int T, int bs, int topk,
                      int nb, int ntiles) {
    using namespace flash;
    constexpr int QT = MOBA_TC_QT, CT = MOBA_TC_CT, NT = CT / 8, CS = MOBA_TC_CS, RW = 2 * HD, KS = HD / 16;
    extern __shared__ float4 smem4[];
    bf16 *tiles = (bf16 *)smem4;                       // [2][CT][RW] split centroids, swizzled
    float *cs = (float *)(tiles + 2 * CT * RW);        // [QT][CS] candidate scores; first the Q tile
    int *cb = (int *)(cs + QT * CS);                   // [QT][CS] candidate blocks
    bf16 *Qs = (bf16 *)cs;                             // [QT][HD] swizzled, read once into registers
    float *thr = (float *)(cs + max(2 * QT * CS, QT * HD / 2));  // [QT] score to beat after a merge
    int *cnt_s = (int *)(thr + QT);                    // [QT] candidates held
    const int nsel = topk - 1;
    float *lv = (float *)(cnt_s + QT);                 // [nsel][QT] top list scores, best first
    int *lb = (int *)(lv + nsel * QT);                 // [nsel][QT] top list blocks

    const int tile = ntiles - 1 - blockIdx.x / BH, bh = blockIdx.x % BH;  // heaviest tiles first
    const int t0 = tile * QT, tid = threadIdx.x, warp = tid / 32, lane = tid % 32, qd = lane % 4;
    const int tlast = min(t0 + QT, T) - 1;
    const int npast = nsel > 0 ? tlast / bs : 0;  // blocks any query of this tile may score
    const int nct = CEIL_DIV(npast, CT);
    const floatX *qb = q + ((size_t)bh * T + t0) * HD;
    const floatX *cbh = cent + (size_t)bh * nb * RW;

    for (int i = tid; i < QT * HD / 8; i += MOBA_TC_THREADS) {
        int r = i / (HD / 8), ch = i % (HD / 8);
        bool ok = t0 + r < T;
        cp_async16(Qs + swz<HD>(r, ch), ok ? qb + (size_t)r * HD + ch * 8 : qb, ok);
    }
    auto load_tile = [&](int p) {
        bf16 *dst = tiles + (p & 1) * CT * RW;
        for (int i = tid; i < CT * RW / 8; i += MOBA_TC_THREADS) {
            int r = i / (RW / 8), ch = i % (RW / 8), b = p * CT + r;
            cp_async16(dst + swz<RW>(r, ch), b < npast ? cbh + (size_t)b * RW + ch * 8 : cbh, b < npast);
        }
        cp_async_commit();
    };
    cp_async_commit();
    if (nct > 0) { load_tile(0); }
    cp_async_wait_all();
    __syncthreads();
    uint32_t qa[2][KS][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
#pragma unroll
        for (int ks = 0; ks < KS; ks++) { lds_a<HD>(qa[mt][ks], Qs, warp * 32 + mt * 16, ks); }
    }
    // this lane's 4 queries: i = 2 mt + h -> row 32 warp + 16 mt + 8 h + lane / 4
    int row[4], ob[4], cnt[4];
    float th[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        row[i] = warp * 32 + (i / 2) * 16 + (i % 2) * 8 + lane / 4;
        ob[i] = t0 + row[i] < T ? (t0 + row[i]) / bs : 0;
        cnt[i] = 0;
        th[i] = -INFINITY;
    }
    if (tid < QT) { cnt_s[tid] = 0; }
    int nq = 0;  // entries in query tid's top list
    auto merge = [&]() {  // between barriers: thread tid folds query tid's candidates into its list
        float t = thr[tid];
        for (int c = 0; c < cnt_s[tid]; c++) { t = moba_offer<QT>(lv, lb, tid, nq, nsel, cs[tid * CS + c], cb[tid * CS + c]); }
        thr[tid] = t;
        cnt_s[tid] = 0;
    };
    if (tid < QT) { thr[tid] = -INFINITY; }
    __syncthreads();  // Q tile consumed: its space now holds candidates

    for (int p = 0; p < nct; p++) {
        if (p > 0) {
            cp_async_wait_all();
            __syncthreads();  // tile p landed; everyone is done with tile p-1's buffer
        }
        if (p + 1 < nct) { load_tile(p + 1); }
        float acc[2][NT][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
#pragma unroll
            for (int j = 0; j < NT; j++) {
#pragma unroll
                for (int e = 0; e < 4; e++) { acc[mt][j][e] = 0.0f; }
            }
        }
        auto afrag = [&](int mt, int ks, uint32_t a[4]) {
#pragma unroll
            for (int e = 0; e < 4; e++) { a[e] = qa[mt][ks][e]; }
        };
        const bf16 *sB = tiles + (p & 1) * CT * RW;
        gemm<false, 2, NT, KS, RW>(acc, afrag, sB, 0);       // q . c_hi
        gemm<false, 2, NT, KS, RW>(acc, afrag, sB + HD, 0);  // + q . c_lo (the swizzle keeps the HD offset)

        // survivors: bit 2j+e of mask[i] is column 8j + 2qd + e of query i
        const int c0 = p * CT;
        unsigned mask[4];
        int off[4], tot[4];
        auto survivors = [&]() {
            bool over = false;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                unsigned m = 0;
#pragma unroll
                for (int j = 0; j < NT; j++) {
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float s = acc[i / 2][j][(i % 2) * 2 + e];
                        m |= (unsigned)(c0 + 8 * j + 2 * qd + e < ob[i] && s > th[i]) << (2 * j + e);
                    }
                }
                mask[i] = m;
                int n = __popc(m), incl = n;  // prefix sum over the quad
#pragma unroll
                for (int o = 1; o < 4; o *= 2) {
                    int x = __shfl_up_sync(0xffffffffu, incl, o, 4);
                    if (qd >= o) { incl += x; }
                }
                off[i] = incl - n;
                tot[i] = __shfl_sync(0xffffffffu, incl, 3, 4);
                over = over || cnt[i] + tot[i] > MOBA_TC_CAP;
            }
            return over;
        };
        if (__syncthreads_or(survivors())) {
            if (tid < QT) { merge(); }
            __syncthreads();
#pragma unroll
            for (int i = 0; i < 4; i++) { th[i] = thr[row[i]]; cnt[i] = 0; }
            survivors();
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int slot = row[i] * CS + cnt[i] + off[i];
#pragma unroll
            for (int j = 0; j < NT; j++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    if (mask[i] >> (2 * j + e) & 1) {
                        cs[slot] = acc[i / 2][j][(i % 2) * 2 + e];
                        cb[slot] = c0 + 8 * j + 2 * qd + e;
                        slot++;
                    }
                }
            }
            cnt[i] += tot[i];
            if (qd == 0) { cnt_s[row[i]] = cnt[i]; }
        }
    }
    __syncthreads();
    if (tid < QT) { merge(); }
    moba_store_rows<QT, MOBA_TC_THREADS>(blocks + ((size_t)bh * T + t0) * topk, (int *)cs, lb, nq, t0, tlast - t0 + 1, bs, topk);
}
#endif

// ---------------------------------------------------------------------------------------------------
static inline void moba_gate_check_args(int B, int NH, int T, int HD, int block_size, int topk) {
    if (B < 1 || NH < 1 || T < 1) { die("moba_gate: bad shape B=%d NH=%d T=%d", B, NH, T); }
    if (HD != 64 && HD != 128) { die("moba_gate: head dim %d unsupported (64 or 128)", HD); }
    if (block_size < 1) { die("moba_gate: block size %d must be >= 1", block_size); }
    if (topk < 1 || topk > MOBA_MAX_TOPK) { die("moba_gate: topk %d outside [1, %d]", topk, MOBA_MAX_TOPK); }
}

// Centroids of every block of every (b, h) into (B, NH, ceil(T/block_size), HD) 4-byte elements: fp32, or
// (split) per block HD bf16 c_hi then HD bf16 c_lo, the form the tensor-core selection reads.
static inline void moba_centroids(float *centroids, const floatX *k, int B, int NH, int T, int HD,
                                  int block_size, bool split, cudaStream_t stream) {
    int nb = CEIL_DIV(T, block_size);
    dim3 grid(nb, B * NH);
    auto kern = HD == 64 ? (split ? moba_centroids_kernel<64, true> : moba_centroids_kernel<64, false>)
                         : (split ? moba_centroids_kernel<128, true> : moba_centroids_kernel<128, false>);
    kern<<<grid, 256, 0, stream>>>(centroids, k, T, block_size, nb);
    cudaCheckLaunch();
}

// Selection from the centroids: CUDA cores (fp32 centroids) or, bf16 build, tensor cores (split form).
template <int HD>
static inline void moba_select_launch(int *blocks, const float *centroids, const floatX *q, int BH, int T,
                                      int block_size, int topk, bool tensor_cores, cudaStream_t stream) {
    int nb = CEIL_DIV(T, block_size);
    if (!tensor_cores) {
        size_t smem = moba_select_smem(HD, topk);
        cudaCheck(cudaFuncSetAttribute(moba_select_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        int ntiles = CEIL_DIV(T, MOBA_QT);
        moba_select_kernel<HD><<<ntiles * BH, MOBA_THREADS, smem, stream>>>(blocks, centroids, q, BH, T, block_size, topk, nb, ntiles);
    } else {
#ifdef ENABLE_FP32
        die("moba_gate: the tensor-core selection needs the bf16 build");
#else
        size_t smem = moba_select_tc_smem(HD, topk);
        int dev, smem_sm;
        cudaCheck(cudaGetDevice(&dev));
        cudaCheck(cudaDeviceGetAttribute(&smem_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
        auto kern = 3 * (smem + 1024) <= (size_t)smem_sm ? moba_select_tc_kernel<HD, 3> : moba_select_tc_kernel<HD, 2>;
        cudaCheck(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        int ntiles = CEIL_DIV(T, MOBA_TC_QT);
        kern<<<ntiles * BH, MOBA_TC_THREADS, smem, stream>>>(blocks, (const floatX *)centroids, q, BH, T, block_size,
                                                            topk, nb, ntiles);
#endif
    }
    cudaCheckLaunch();
}

// The gate: centroids (scratch, (B, NH, nb, HD) 4-byte elements, fp32 build fp32, bf16 build the split
// form) and the selection blocks (B, NH, T, topk). bf16 build: tensor cores; fp32 build: CUDA cores.
static inline void moba_gate(int *blocks, float *centroids, const floatX *q, const floatX *k,
                             int B, int NH, int T, int HD, int block_size, int topk, cudaStream_t stream) {
#ifdef ENABLE_FP32
    const bool tc = false;
#else
    const bool tc = true;
#endif
    moba_gate_check_args(B, NH, T, HD, block_size, topk);
    moba_centroids(centroids, k, B, NH, T, HD, block_size, tc, stream);
    if (HD == 64) { moba_select_launch<64>(blocks, centroids, q, B * NH, T, block_size, topk, tc, stream); }
    else { moba_select_launch<128>(blocks, centroids, q, B * NH, T, block_size, topk, tc, stream); }
}

#endif // LLMC_MOBA_GATE_CUH
