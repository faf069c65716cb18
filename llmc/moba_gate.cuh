/*
 MoBA gate on the GPU: block centroids, then the fused top-k block selection (see doc/model.md, MoBA).
 Inputs q, k: (B, NH, T, HD) floatX, HD in {64, 128}; block size bs >= 1; topk K in [1, 64].
 1. Centroids c: (B, NH, nb, HD) fp32, nb = ceil(T/bs): mean of each block's keys over its real length.
    Traffic: k read once, c written once.
 2. Selection blocks: (B, NH, T, K) int32. Query t always takes its own block t/bs; of the strictly past
    blocks i < t/bs, scored s = q_t . c_i in fp32 (no scale), the K-1 best are kept (equal scores: lower
    index wins); fewer than K-1 past blocks means all of them. Each row is ascending, own block last of
    the real entries, then -1 padding.
 Fused: the (query x block) score matrix never reaches memory. A CTA takes 64 queries of one head and
 streams the centroids of the blocks they can see (causal: only blocks before the tile's last own block)
 through shared memory, 128 blocks x 32 dims at a time, prefetched into registers one chunk ahead. Each
 thread holds a 4 x 8 tile of scores in registers (fp32 FMA, so scores are fp32-exact up to summation
 order). Only scores that beat a query's current (K-1)-th best (and a pass-local lower bound) become
 candidates; one thread per query then inserts those into its sorted top list in shared memory. Traffic: q read once, centroids read
 once per CTA (from L2), selection written once (coalesced through shared memory); memory linear in T.
*/
#ifndef LLMC_MOBA_GATE_CUH
#define LLMC_MOBA_GATE_CUH

#include <math.h>
#include "cuda_common.cuh"
#include "utils.h"

// The selection as the MoBA attention kernel consumes it. llmc/flash_attention.cuh owns this struct;
// the guard lets either header come first as long as both define it under MOBA_SELECTION_DEFINED.
#ifndef MOBA_SELECTION_DEFINED
#define MOBA_SELECTION_DEFINED
typedef struct {
    const int *blocks;  // (B, NH, T, K) int32: selected block indices per query, ASCENDING, own block
                        // included, unused slots (when fewer than K exist) = -1 at the end
    int block_size; int topk;
} MobaSelection;
#endif

#define MOBA_GATE_MAX_TOPK 64

// ---------------------------------------------------------------------------------------------------
// Centroids: grid (nb, B*NH), 256 threads = (HD/2 dim pairs) x (row groups); row groups sum strided
// rows, then one group adds the partial sums.
template <int HD>
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
        float *out = c + ((size_t)bh * nb + blk) * HD + 2 * p;
        out[0] = sum.x / len;
        out[1] = sum.y / len;
    }
}

// ---------------------------------------------------------------------------------------------------
// Fused scoring + top-k. Tile sizes: QT queries x CT centroid blocks per pass, DC dims per chunk.
constexpr int MOBA_QT = 64, MOBA_CT = 128, MOBA_DC = 32, MOBA_THREADS = 256;

// Total order of the selection: higher score first, equal scores to the lower block index.
__device__ inline bool moba_better(float s1, int b1, float s2, int b2) {
    return s1 > s2 || (s1 == s2 && b1 < b2);
}

// Row strides (floats) of the Q tile (HD + 4) and the centroid chunk: rows stay 16-byte aligned and the
// 8 lanes of a 16-byte load phase hit 8 different bank groups.
constexpr int MOBA_CS = MOBA_DC + 4;
// Shared buffer for a centroid chunk, then the pass's candidate scores, then the staged output rows.
constexpr int MOBA_CB = MOBA_CT * MOBA_CS > MOBA_QT * MOBA_CT ? MOBA_CT * MOBA_CS : MOBA_QT * MOBA_CT;
static_assert(MOBA_CB >= MOBA_QT * MOBA_GATE_MAX_TOPK, "output rows must fit the shared buffer");
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
            for (int c = 0; c < n; c++) {
                float s = Cb[c * QT + tid];
                int b = c0 + cc[c * QT + tid], pos;
                if (nq < nsel) {
                    pos = nq++;
                } else if (moba_better(s, b, lv[(nsel - 1) * QT + tid], lb[(nsel - 1) * QT + tid])) {
                    pos = nsel - 1;
                } else {
                    continue;
                }
                for (; pos > 0 && moba_better(s, b, lv[(pos - 1) * QT + tid], lb[(pos - 1) * QT + tid]); pos--) {
                    lv[pos * QT + tid] = lv[(pos - 1) * QT + tid];
                    lb[pos * QT + tid] = lb[(pos - 1) * QT + tid];
                }
                lv[pos * QT + tid] = s;
                lb[pos * QT + tid] = b;
            }
            cnt[tid] = 0;
            thr[tid] = nq == nsel ? lv[(nsel - 1) * QT + tid] : -INFINITY;
        }
    }

    // Rows out: past blocks ascending, own block, -1 padding; staged in Cb so the store is coalesced.
    __syncthreads();
    int *out = (int *)Cb;
    const int nrows = tlast - t0 + 1;
    if (tid < nrows) {
        for (int i = 1; i < nq; i++) {  // insertion sort by block index, at most 63 entries
            int b = lb[i * QT + tid], j = i;
            for (; j > 0 && lb[(j - 1) * QT + tid] > b; j--) { lb[j * QT + tid] = lb[(j - 1) * QT + tid]; }
            lb[j * QT + tid] = b;
        }
        for (int i = 0; i < topk; i++) {
            out[tid * topk + i] = i < nq ? lb[i * QT + tid] : i == nq ? (t0 + tid) / bs : -1;
        }
    }
    __syncthreads();
    int *dst = blocks + ((size_t)bh * T + t0) * topk;
    for (int i = tid; i < nrows * topk; i += MOBA_THREADS) { dst[i] = out[i]; }
}

// ---------------------------------------------------------------------------------------------------
static inline void moba_gate_check_args(int B, int NH, int T, int HD, int block_size, int topk) {
    if (B < 1 || NH < 1 || T < 1) { die("moba_gate: bad shape B=%d NH=%d T=%d", B, NH, T); }
    if (HD != 64 && HD != 128) { die("moba_gate: head dim %d unsupported (64 or 128)", HD); }
    if (block_size < 1) { die("moba_gate: block size %d must be >= 1", block_size); }
    if (topk < 1 || topk > MOBA_GATE_MAX_TOPK) { die("moba_gate: topk %d outside [1, %d]", topk, MOBA_GATE_MAX_TOPK); }
}

// Centroids of every block of every (b, h); centroids: (B, NH, ceil(T/block_size), HD) fp32.
static inline void moba_centroids(float *centroids, const floatX *k, int B, int NH, int T, int HD,
                                  int block_size, cudaStream_t stream) {
    int nb = CEIL_DIV(T, block_size);
    dim3 grid(nb, B * NH);
    if (HD == 64) { moba_centroids_kernel<64><<<grid, 256, 0, stream>>>(centroids, k, T, block_size, nb); }
    else { moba_centroids_kernel<128><<<grid, 256, 0, stream>>>(centroids, k, T, block_size, nb); }
    cudaCheckLaunch();
}

template <int HD>
static inline void moba_select_launch(int *blocks, const float *centroids, const floatX *q, int BH, int T,
                                      int block_size, int topk, cudaStream_t stream) {
    size_t smem = moba_select_smem(HD, topk);
    cudaCheck(cudaFuncSetAttribute(moba_select_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    int ntiles = CEIL_DIV(T, MOBA_QT);
    moba_select_kernel<HD><<<ntiles * BH, MOBA_THREADS, smem, stream>>>(
        blocks, centroids, q, BH, T, block_size, topk, CEIL_DIV(T, block_size), ntiles);
    cudaCheckLaunch();
}

// The gate: centroids (written, for reuse/inspection) and the selection blocks (B, NH, T, topk).
static inline void moba_gate(int *blocks, float *centroids, const floatX *q, const floatX *k,
                             int B, int NH, int T, int HD, int block_size, int topk, cudaStream_t stream) {
    moba_gate_check_args(B, NH, T, HD, block_size, topk);
    moba_centroids(centroids, k, B, NH, T, HD, block_size, stream);
    if (HD == 64) { moba_select_launch<64>(blocks, centroids, q, B * NH, T, block_size, topk, stream); }
    else { moba_select_launch<128>(blocks, centroids, q, B * NH, T, block_size, topk, stream); }
}

#endif // LLMC_MOBA_GATE_CUH
