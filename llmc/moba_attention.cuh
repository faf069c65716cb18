/*
 MoBA attention, key-block-centric (FlashMoBA's gather-and-densify; doc/model.md, MoBA). Work is
 organised per (key block, query that selected it), so its cost is the number of selected (query, block)
 pairs, independent of how the selections of neighbouring queries overlap.
 Shapes: q, k, v, dq, dk, dv (B, NH, T, HD) floatX; o, dout (B, T, NH, HD); lse (B, NH, T) fp32 natural
 log; sel->blocks (B, NH, T, K) int32 as MobaSelection documents (ascending, distinct, own block
 included, -1 unused). Slot s of query t is used iff 0 <= blocks[s] <= t / block_size. HD 64 or 128,
 block_size a power of two >= 32, K <= 64, any T >= 1.

 1. Varlen layout (rebuilt by each call from sel, deterministic): a stable radix sort (cub) of the entries
    e = t K + s of each head keyed by segment = (head, block) gives, per segment, the list of entries in
    query order; seg_off (nseg + 1) the segment starts; chunk_off the prefix sum of ceil(len / 64), so a
    kernel is launched with the upper bound BH T K / 64 + nseg of CTAs and each CTA finds its (segment,
    64-entry chunk) by binary search; spare CTAs exit (no host synchronisation, graph-capturable).
 2. Forward: a CTA gathers the Q rows of one chunk (per-row cp.async into a swizzled tile) and walks the
    block's 64-key tiles (up to the chunk's last query) with an online softmax, causal by each row's true
    position. It writes the normalised partial output opart (bf16, HD) and partial lse lpart (fp32) of each
    entry at (bh, t, s). A merge kernel (a warp per query) combines the K slots in slot order:
    lse = logsumexp_s lse_s, o = sum_s exp(lse_s - lse) o_s. Deterministic by construction.
 3. Backward (P recomputed from the final lse): D = rowsum(dO o); dK, dV: a CTA per (segment, 64-key tile)
    walks the segment's list 32 gathered queries at a time and writes dK, dV directly (blocks nobody
    selected get zeros). dQ, deterministic = 0: fp32 atomics (float2) from the same CTA into dqacc, then a
    convert pass. deterministic = 1: a chunk-centric dQ kernel (the forward's layout) writes a bf16 partial
    per entry and the merge kernel sums the K slots in slot order: bit-identical run to run.
 Heads are processed in groups of G (head_group: all heads, or as many as keep the partial outputs near
 1 GiB), the steps above once per group, so the scratch is bounded by the group, not by B NH T.
 Traffic per entry (t, s): Q (+ dO) rows gathered once per chunk, the block's K/V once per chunk (mostly
 L2), a partial row written and read once. Scratch (moba_attention_scratch_bytes): G T K (2 HD + 8)
 bytes + B NH T 4 bytes + 12 bytes per (head of the group, block) (G T HD 4 bytes instead of the
 partials if K = 1): linear in T. The deterministic backward needs no more. Nothing is kept between calls.
 fp32 build (ENABLE_FP32): the simple kernels of flash_attention.cuh.
*/
#ifndef LLMC_MOBA_ATTENTION_CUH
#define LLMC_MOBA_ATTENTION_CUH

#include <cub/cub.cuh>
#include "flash_attention.cuh"

#define MOBA_FWD_MT 2  // row tiles per warp in the forward (1 or 2; dev/cuda/moba_attention_notes.md)

namespace moba {
using namespace flash;
constexpr int QC = 64;  // gathered queries per row tile of the chunk-centric kernels (4 warps x 16 rows)
constexpr int QS = BRB;  // gathered queries per step of the dK/dV kernel (flash::dkdv_step's)

// Pointers into the caller's scratch; every region 256-byte aligned. Region `part` holds the forward's
// partial outputs, then the backward's dQ accumulator (fp32) or dQ partials (bf16); while the lists are
// built (before either), the sort's transient buffers (keys, values, cub's temp) live at its start.
struct Scratch {
    bf16 *part;
    float *lpart, *Dsum;
    unsigned *keys, *keys_sorted;
    int *vals, *entries, *seg_off, *chunk_cnt, *chunk_off;
    void *cub_temp;
    size_t cub_bytes, total;
};

inline int seg_key_bits(int nseg) { return 32 - __builtin_clz((unsigned)nseg); }  // sentinel nseg fits

// Heads per group: the varlen pipeline runs on groups of G heads so that the per-entry scratch stays near
// group_bytes whatever T (at least one head; all heads when they fit). Built with MOBA_TEST_HOOKS (test
// programs only) it is a variable, so that they can force small groups; set it before sizing the scratch.
#ifdef MOBA_TEST_HOOKS
inline size_t group_bytes = (size_t)1 << 30;
#else
constexpr size_t group_bytes = (size_t)1 << 30;
#endif
inline int head_group(int BH, int T, int HD, int K) {
    size_t per_head = (size_t)T * K * HD * sizeof(bf16);
    return (int)std::max((size_t)1, std::min((size_t)BH, group_bytes / per_head));
}

inline Scratch scratch_layout(void *base, int B, int NH, int T, int HD, int bs, int K) {
    size_t BH = (size_t)B * NH, G = head_group((int)BH, T, HD, K), n = G * T * K, nseg = G * CEIL_DIV(T, bs);
    Scratch s;
    size_t sort_bytes = 0, scan_bytes = 0;
    cudaCheck(cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, (const unsigned *)NULL, (unsigned *)NULL, (const int *)NULL,
                                              (int *)NULL, (int)n, 0, seg_key_bits((int)nseg)));
    cudaCheck(cub::DeviceScan::ExclusiveSum(NULL, scan_bytes, (const int *)NULL, (int *)NULL, (int)nseg + 1));
    s.cub_bytes = std::max(sort_bytes, scan_bytes);
    char *p = (char *)base;
    size_t off = 0;
    auto take = [&](size_t bytes) { char *r = p + off; off += CEIL_DIV(bytes, 256) * 256; return (void *)r; };
    s.keys = (unsigned *)take(n * sizeof(unsigned));  // transient, inside `part`
    s.keys_sorted = (unsigned *)take(n * sizeof(unsigned));
    s.vals = (int *)take(n * sizeof(int));
    s.cub_temp = take(s.cub_bytes);
    size_t part_bytes = std::max(std::max(n * HD * sizeof(bf16), G * T * HD * sizeof(float)), off);
    off = 0;
    s.part = (bf16 *)take(part_bytes);
    s.lpart = (float *)take(n * sizeof(float));
    s.Dsum = (float *)take(BH * T * sizeof(float));
    s.entries = (int *)take(n * sizeof(int));
    s.seg_off = (int *)take((nseg + 1) * sizeof(int));
    s.chunk_cnt = (int *)take((nseg + 1) * sizeof(int));
    s.chunk_off = (int *)take((nseg + 1) * sizeof(int));
    s.total = off;
    return s;
}

// The varlen layout as the kernels read it.
// Segment g is head bh0 + g / nb (of the whole tensor), block g % nb; scratch rows are group-local.
struct Varlen {
    const int *seg_off, *entries, *chunk_off;  // chunk_off: in chunks of `chunk` entries
    int nb, nseg, K, bs, bh0, chunk;
};

__device__ inline bool slot_used(int b, int t, int bs) { return b >= 0 && b <= t / bs; }

// keys[i] = segment of entry i = (bh, t, s) (or nseg: unused), vals[i] = t K + s.
__global__ void varlen_keys_kernel(unsigned *keys, int *vals, const int *blocks, size_t n, int T, int K, int bs, int nb, int nseg) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) { return; }
    size_t tk = (size_t)T * K;
    int bh = (int)(i / tk), e = (int)(i % tk), b = blocks[i];
    keys[i] = slot_used(b, e / K, bs) ? (unsigned)(bh * nb + b) : (unsigned)nseg;
    vals[i] = e;
}

// seg_off[g] = first sorted position whose key >= g, for g in [0, nseg]; chunk counts of the segments.
__global__ void varlen_offsets_kernel(int *seg_off, const unsigned *keys, size_t n, int nseg) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) { return; }
    int kc = (int)keys[i], kp = i == 0 ? -1 : (int)keys[i - 1];
    for (int g = kp + 1; g <= kc; g++) { seg_off[g] = (int)i; }
    if (i == n - 1) { for (int g = kc + 1; g <= nseg; g++) { seg_off[g] = (int)n; } }
}
__global__ void varlen_chunks_kernel(int *chunk_cnt, const int *seg_off, int nseg, int chunk) {
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g <= nseg) { chunk_cnt[g] = g < nseg ? CEIL_DIV(seg_off[g + 1] - seg_off[g], chunk) : 0; }
}

// The lists of heads [bh0, bh0 + G), cut into chunks of `chunk` entries.
inline Varlen build_varlen(const Scratch &s, const MobaSelection *sel, int bh0, int G, int T, int chunk, cudaStream_t stream) {
    int K = sel->topk, bs = sel->block_size, nb = CEIL_DIV(T, bs), nseg = G * nb;
    size_t n = (size_t)G * T * K;
    varlen_keys_kernel<<<(unsigned)CEIL_DIV(n, 256), 256, 0, stream>>>(s.keys, s.vals, sel->blocks + (size_t)bh0 * T * K, n, T, K,
                                                                       bs, nb, nseg);
    cudaCheckLaunch();
    size_t bytes = s.cub_bytes;
    cudaCheck(cub::DeviceRadixSort::SortPairs(s.cub_temp, bytes, s.keys, s.keys_sorted, s.vals, s.entries, (int)n, 0,
                                              seg_key_bits(nseg), stream));
    varlen_offsets_kernel<<<(unsigned)CEIL_DIV(n, 256), 256, 0, stream>>>(s.seg_off, s.keys_sorted, n, nseg);
    cudaCheckLaunch();
    varlen_chunks_kernel<<<CEIL_DIV(nseg + 1, 256), 256, 0, stream>>>(s.chunk_cnt, s.seg_off, nseg, chunk);
    cudaCheckLaunch();
    bytes = s.cub_bytes;
    cudaCheck(cub::DeviceScan::ExclusiveSum(s.cub_temp, bytes, s.chunk_cnt, s.chunk_off, nseg + 1, stream));
    return Varlen{s.seg_off, s.entries, s.chunk_off, nb, nseg, K, bs, bh0, chunk};
}
// CTAs to launch for the chunk-centric kernels: an upper bound of sum ceil(len / chunk).
inline unsigned chunk_grid(const Varlen &vl, int G, int T) {
    return (unsigned)((size_t)G * T * vl.K / vl.chunk + (size_t)vl.nseg);
}

// This CTA's (segment, first entry, entry count); false for a spare CTA.
__device__ inline bool find_chunk(const Varlen &vl, int &seg, int &e0, int &n) {
    int item = blockIdx.x;
    if (item >= vl.chunk_off[vl.nseg]) { return false; }
    int lo = 0, hi = vl.nseg;  // last seg with chunk_off[seg] <= item: chunk_off[lo] <= item < chunk_off[hi]
    while (hi - lo > 1) {
        int mid = (lo + hi) >> 1;
        if (vl.chunk_off[mid] <= item) { lo = mid; } else { hi = mid; }
    }
    seg = lo;
    e0 = vl.seg_off[seg] + (item - vl.chunk_off[seg]) * vl.chunk;
    n = min(vl.chunk, vl.seg_off[seg + 1] - e0);
    return true;
}

// Gathers R rows into a swizzled (R, COLS) tile: row r comes from g + rows[r] * stride (rows[r] < 0: zeros).
template <int R, int COLS>
__device__ inline void gather_tile(bf16 *s, const bf16 *g, size_t stride, const int *rows) {
    constexpr int CPR = COLS / 8;
    for (int i = threadIdx.x; i < R * CPR; i += THREADS) {
        int r = i / CPR, c = i % CPR, row = rows[r];
        cp_async16(s + swz<COLS>(r, c), g + (row >= 0 ? (size_t)row * stride + c * 8 : 0), row >= 0);
    }
}

// The chunk's rows in shared memory: query position (or -1) and entry (or -1) of each of the R rows.
template <int R>
__device__ inline void chunk_rows(int *sT, int *sE, const Varlen &vl, int e0, int n) {
    static_assert(R <= THREADS, "a thread per row");
    if (threadIdx.x < R) {
        int e = threadIdx.x < n ? vl.entries[e0 + threadIdx.x] : -1;
        sE[threadIdx.x] = e;
        sT[threadIdx.x] = e >= 0 ? e / vl.K : -1;
    }
    __syncthreads();
}

// Masks a 16 x 64 score tile of rows t[0], t[1] (-1: padding) against keys [k0, k0 + 64) of a block ending at kend.
__device__ inline void mask_tile(float s[BC / 8][4], const int t[2], int k0, int kend) {
    int c = threadIdx.x & 3;
#pragma unroll
    for (int j = 0; j < BC / 8; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int key = k0 + j * 8 + 2 * c + (e & 1);
            if (!(key < kend && key <= t[e >> 1])) { s[j][e] = -INFINITY; }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Forward: a CTA per (segment, chunk of 64 MT entries); warp w takes rows 64 mt + 16 w (mt < MT), so each
// K/V fragment read from shared memory feeds MT mma row tiles. grid chunk_grid(...), THREADS.
template <int HD, int MT>
__global__ void __launch_bounds__(THREADS) fwd_kernel(bf16 *opart, float *lpart, const bf16 *q, const bf16 *k, const bf16 *v,
                                                       Varlen vl, int T, float scale) {
    constexpr int ROWS = QC * MT;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem, *sK = sQ + ROWS * HD, *sV = sK + 2 * BC * HD;
    int *sT = (int *)(sV + 2 * BC * HD), *sE = sT + ROWS;
    int seg, e0, n;
    if (!find_chunk(vl, seg, e0, n)) { return; }
    const size_t lbh = seg / vl.nb, bh = vl.bh0 + lbh;
    const int blk = seg % vl.nb, kb = blk * vl.bs, kend = min(kb + vl.bs, T);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const float sl2 = scale * LOG2E;

    chunk_rows<ROWS>(sT, sE, vl, e0, n);
    const int tmin = sT[0], tmax = sT[n - 1];  // entries are in query order
    const int ntiles = CEIL_DIV(min(kend, tmax + 1) - kb, BC);
    gather_tile<ROWS, HD>(sQ, q + bh * T * HD, HD, sT);
    int rt[MT][2];
    for (int mt = 0; mt < MT; mt++) { rt[mt][0] = sT[mt * QC + warp * 16 + g]; rt[mt][1] = sT[mt * QC + warp * 16 + g + 8]; }
    float oacc[MT][HD / 8][4] = {}, m[MT][2], l[MT][2] = {};
    for (int mt = 0; mt < MT; mt++) { m[mt][0] = m[mt][1] = -INFINITY; }
    walk_kv_tiles<HD>(sK, sV, k + bh * T * HD, v + bh * T * HD, T, kb, ntiles, [&](int kt, const bf16 *cK, const bf16 *cV) {
        const int k0 = kb + kt * BC;
        const bool full = n == ROWS && k0 + BC <= kend && k0 + BC - 1 <= tmin;
        float s[MT][BC / 8][4] = {};
        gemm<false, MT, BC / 8, HD / 16, HD>(s, [&](int mt, int ks, uint32_t a[4]) { lds_a<HD>(a, sQ, mt * QC + warp * 16, ks); }, cK, 0);
        uint32_t pf[MT][BC / 16][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            if (!full) { mask_tile(s[mt], rt[mt], k0, kend); }
            online_softmax<HD>(s[mt], m[mt], l[mt], oacc[mt], sl2);
            acc_to_a<BC / 8>(pf[mt], s[mt]);
        }
        gemm<true, MT, HD / 8, BC / 16, HD>(oacc, [&](int mt, int ks, uint32_t a[4]) { for (int i = 0; i < 4; i++) { a[i] = pf[mt][ks][i]; } }, cV, 0);
    });
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float li = l[mt][i];
            li += __shfl_xor_sync(0xffffffff, li, 1);
            li += __shfl_xor_sync(0xffffffff, li, 2);
            int e = sE[mt * QC + warp * 16 + g + 8 * i];
            if (e < 0) { continue; }
            float inv = li > 0.0f ? 1.0f / li : 0.0f;
            size_t row = lbh * T * vl.K + e;
            store_row_bf16(opart + row * HD, oacc[mt], i, inv);
            if (c == 0) { lpart[row] = li > 0.0f ? m[mt][i] * scale + logf(li) : -INFINITY; }
        }
    }
}

// Merge of the K partial rows of each query, in slot order; a warp per (bh, t), HD / 32 elements a lane.
// SOFTMAX: o (B, T, NH, HD) = sum_s exp(lse_s - lse) o_s and lse; else out (B, NH, T, HD) = sum_s part_s.
// Rows are group-local (part, lpart) and start at head bh0 of the whole tensors (out, lse, blocks).
template <int HD, bool SOFTMAX>
__global__ void merge_kernel(bf16 *out, float *lse, const bf16 *part, const float *lpart, const int *blocks,
                             int NH, int T, int K, int bs, size_t rows, int bh0) {
    constexpr int PER = HD / 32;
    size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) { return; }
    int t = (int)(row % T);
    const size_t grow = (size_t)bh0 * T + row;
    const int *list = blocks + grow * K;
    float mx = -INFINITY;
    if (SOFTMAX) {
        for (int s = 0; s < K; s++) { if (slot_used(list[s], t, bs)) { mx = fmaxf(mx, lpart[row * K + s]); } }
    }
    float acc[PER] = {}, sum = 0.0f;
    for (int s = 0; s < K; s++) {
        if (!slot_used(list[s], t, bs)) { continue; }
        float w = SOFTMAX ? expf(lpart[row * K + s] - mx) : 1.0f;
        sum += w;
        const bf16 *src = part + (row * K + s) * HD + lane * PER;
        for (int i = 0; i < PER; i += 2) {
            float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(src + i));
            acc[i] += w * x.x;
            acc[i + 1] += w * x.y;
        }
    }
    bf16 *dst = out + grow * HD + lane * PER;
    if (SOFTMAX) {
        size_t bh = grow / T, b = bh / NH, h = bh % NH;
        dst = out + ((b * T + t) * NH + h) * HD + lane * PER;
        float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        for (int i = 0; i < PER; i++) { acc[i] *= inv; }
        if (lane == 0) { lse[grow] = sum > 0.0f ? mx + logf(sum) : -INFINITY; }
    }
    for (int i = 0; i < PER; i += 2) { *reinterpret_cast<uint32_t *>(dst + i) = pack_bf16(acc[i], acc[i + 1]); }
}

// ---------------------------------------------------------------------------------------------------
// Backward dK, dV: a CTA per (segment, 64-key tile of its block) walks the segment's list, QS gathered
// queries a step (4 warps x 16 keys). ATOMIC_DQ: also dQ += dS K into fp32 dqacc (B, NH, T, HD).
// grid nseg * ceil(bs / 64).
template <int HD, bool ATOMIC_DQ>
__global__ void __launch_bounds__(THREADS) dkdv_kernel(bf16 *dk, bf16 *dv, float *dqacc, const bf16 *dout, const bf16 *q,
                                                        const bf16 *k, const bf16 *v, const float *lse, const float *Dsum,
                                                        Varlen vl, int NH, int T, float scale) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sK = (bf16 *)smem, *sV = sK + BC * HD, *sQ = sV + BC * HD, *sdO = sQ + 2 * QS * HD, *sdS = sdO + 2 * QS * HD;
    float *sLse = (float *)(sdS + BC * QS), *sD = sLse + 2 * QS;
    int *sT = (int *)(sD + 2 * QS), *sRowQ = sT + 2 * QS, *sRowO = sRowQ + 2 * QS;
    const int tpb = CEIL_DIV(vl.bs, BC), seg = blockIdx.x / tpb;
    const size_t lbh = seg / vl.nb, bh = vl.bh0 + lbh, b = bh / NH, h = bh % NH;
    const int blk = seg % vl.nb, k0 = blk * vl.bs + (blockIdx.x % tpb) * BC, kend = min(blk * vl.bs + vl.bs, T);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const int e0 = vl.seg_off[seg], e1 = vl.seg_off[seg + 1];
    const float sl2 = scale * LOG2E;

    // step i: entries [e0 + i QS, ...); rows' positions first (a barrier), then the gathers
    auto load_step = [&](int i, int st) {
        if (threadIdx.x < QS) {
            int j = e0 + i * QS + threadIdx.x, t = j < e1 ? vl.entries[j] / vl.K : -1;
            sT[st * QS + threadIdx.x] = t;
            sRowQ[st * QS + threadIdx.x] = t;
            sRowO[st * QS + threadIdx.x] = t >= 0 ? t * NH : -1;
            sLse[st * QS + threadIdx.x] = t >= 0 ? lse[bh * T + t] * LOG2E : 0.0f;
            sD[st * QS + threadIdx.x] = t >= 0 ? Dsum[bh * T + t] : 0.0f;
        }
        __syncthreads();
        gather_tile<QS, HD>(sQ + st * QS * HD, q + bh * T * HD, HD, sRowQ + st * QS);
        gather_tile<QS, HD>(sdO + st * QS * HD, dout + (b * T * NH + h) * HD, HD, sRowO + st * QS);
    };
    load_tile<BC, HD>(sK, k + bh * T * HD, HD, k0, T);
    load_tile<BC, HD>(sV, v + bh * T * HD, HD, k0, T);
    const int nsteps = CEIL_DIV(e1 - e0, QS);
    if (nsteps > 0) { load_step(0, 0); }
    cp_async_commit();

    float dka[HD / 8][4] = {}, dva[HD / 8][4] = {};
    const int key_a = k0 + warp * 16 + g;
    int stage = 0;
    for (int it = 0; it < nsteps; it++) {
        pipeline_step(it, nsteps, stage, load_step);
        const int *cT = sT + stage * QS;
        dkdv_step<HD, ATOMIC_DQ>(dka, dva, sK, sV, sdS, sQ + stage * QS * HD, sdO + stage * QS * HD, sLse + stage * QS,
                                 sD + stage * QS, key_a, sl2, [&](int qi, int key) { return key < kend && key <= cT[qi]; },
                                 [&](int qi) { return cT[qi] >= 0 ? dqacc + (lbh * T + cT[qi]) * HD : (float *)NULL; });
        stage ^= 1;
    }
    store_dkdv<HD>(dk, dv, dka, dva, bh, T, key_a, kend, scale);
}

// Backward dQ, deterministic: the forward's chunk layout; dQ of each entry accumulates in registers over
// the block's key tiles and is written once (bf16, scaled) as a partial at (bh, t, s).
template <int HD>
__global__ void __launch_bounds__(THREADS) dq_kernel(bf16 *dqpart, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
                                                      const float *lse, const float *Dsum, Varlen vl, int NH, int T, float scale) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sQ = (bf16 *)smem, *sdO = sQ + QC * HD, *sK = sdO + QC * HD, *sV = sK + 2 * BC * HD;
    int *sT = (int *)(sV + 2 * BC * HD), *sE = sT + QC, *sRowO = sE + QC;
    int seg, e0, n;
    if (!find_chunk(vl, seg, e0, n)) { return; }
    const size_t lbh = seg / vl.nb, bh = vl.bh0 + lbh, b = bh / NH, h = bh % NH;
    const int blk = seg % vl.nb, kb = blk * vl.bs, kend = min(kb + vl.bs, T);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const float sl2 = scale * LOG2E;

    chunk_rows<QC>(sT, sE, vl, e0, n);
    if (threadIdx.x < QC) { sRowO[threadIdx.x] = sT[threadIdx.x] >= 0 ? sT[threadIdx.x] * NH : -1; }
    __syncthreads();
    const int tmin = sT[0], tmax = sT[n - 1];
    const int ntiles = CEIL_DIV(min(kend, tmax + 1) - kb, BC);
    gather_tile<QC, HD>(sQ, q + bh * T * HD, HD, sT);
    gather_tile<QC, HD>(sdO, dout + (b * T * NH + h) * HD, HD, sRowO);
    const int rt[2] = {sT[warp * 16 + g], sT[warp * 16 + g + 8]};
    float lrow[2], drow[2];
    for (int i = 0; i < 2; i++) {
        lrow[i] = rt[i] >= 0 ? lse[bh * T + rt[i]] * LOG2E : 0.0f;
        drow[i] = rt[i] >= 0 ? Dsum[bh * T + rt[i]] : 0.0f;
    }

    float dqa[HD / 8][4] = {};
    walk_kv_tiles<HD>(sK, sV, k + bh * T * HD, v + bh * T * HD, T, kb, ntiles, [&](int kt, const bf16 *cK, const bf16 *cV) {
        const int k0 = kb + kt * BC;
        dq_step<HD>(dqa, sQ, sdO, cK, cV, lrow, drow, sl2, [&](float (&s)[BC / 8][4]) {
            if (!(n == QC && k0 + BC <= kend && k0 + BC - 1 <= tmin)) { mask_tile(s, rt, k0, kend); }
        });
    });
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int e = sE[warp * 16 + g + 8 * i];
        if (e < 0) { continue; }
        store_row_bf16(dqpart + (lbh * T * vl.K + e) * HD, dqa, i, scale);
    }
}

inline size_t fwd_smem(int HD, int MT) { return (size_t)(MT * QC + 4 * BC) * HD * sizeof(bf16) + 2 * MT * QC * sizeof(int); }
inline size_t dq_smem(int HD) { return (size_t)(2 * QC + 4 * BC) * HD * sizeof(bf16) + 3 * QC * sizeof(int); }
inline size_t dkdv_smem(int HD) { return (size_t)(2 * BC + 4 * QS) * HD * sizeof(bf16) + BC * QS * sizeof(bf16) + 10 * QS * 4; }

template <int HD, int MT>
void forward(bf16 *o, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, const MobaSelection *sel, const Scratch &s,
             int B, int NH, int T, float scale, cudaStream_t stream) {
    int BH = B * NH, G = head_group(BH, T, HD, sel->topk);
    size_t bytes = fwd_smem(HD, MT);
    set_smem(fwd_kernel<HD, MT>, bytes);
    for (int bh0 = 0; bh0 < BH; bh0 += G) {
        int g = std::min(G, BH - bh0);
        Varlen vl = build_varlen(s, sel, bh0, g, T, QC * MT, stream);
        fwd_kernel<HD, MT><<<chunk_grid(vl, g, T), THREADS, bytes, stream>>>(s.part, s.lpart, q, k, v, vl, T, scale);
        cudaCheckLaunch();
        size_t rows = (size_t)g * T;
        merge_kernel<HD, true><<<(unsigned)CEIL_DIV(rows, 8), 256, 0, stream>>>(o, lse, s.part, s.lpart, sel->blocks, NH, T, vl.K,
                                                                               vl.bs, rows, bh0);
        cudaCheckLaunch();
    }
}

template <int HD>
void backward(bf16 *dq, bf16 *dk, bf16 *dv, const bf16 *dout, const bf16 *o, const float *lse, const bf16 *q, const bf16 *k,
              const bf16 *v, const MobaSelection *sel, const Scratch &s, int B, int NH, int T, float scale, int deterministic,
              cudaStream_t stream) {
    int BH = B * NH, G = head_group(BH, T, HD, sel->topk);
    attention_backward_dsum(s.Dsum, dout, o, B, NH, T, HD, stream);
    size_t kv_bytes = dkdv_smem(HD), q_bytes = dq_smem(HD);
    set_smem(dkdv_kernel<HD, false>, kv_bytes);
    set_smem(dkdv_kernel<HD, true>, kv_bytes);
    set_smem(dq_kernel<HD>, q_bytes);
    for (int bh0 = 0; bh0 < BH; bh0 += G) {
        int g = std::min(G, BH - bh0);
        Varlen vl = build_varlen(s, sel, bh0, g, T, QC, stream);
        unsigned kgrid = (unsigned)vl.nseg * CEIL_DIV(vl.bs, BC);
        if (deterministic) {
            dkdv_kernel<HD, false><<<kgrid, THREADS, kv_bytes, stream>>>(dk, dv, NULL, dout, q, k, v, lse, s.Dsum, vl, NH, T, scale);
            cudaCheckLaunch();
            dq_kernel<HD><<<chunk_grid(vl, g, T), THREADS, q_bytes, stream>>>(s.part, dout, q, k, v, lse, s.Dsum, vl, NH, T, scale);
            cudaCheckLaunch();
            size_t qrows = (size_t)g * T;
            merge_kernel<HD, false><<<(unsigned)CEIL_DIV(qrows, 8), 256, 0, stream>>>(dq, NULL, s.part, NULL, sel->blocks, NH, T, vl.K,
                                                                                      vl.bs, qrows, bh0);
            cudaCheckLaunch();
        } else {
            float *dqacc = (float *)s.part;
            size_t n = (size_t)g * T * HD;
            cudaCheck(cudaMemsetAsync(dqacc, 0, n * sizeof(float), stream));
            dkdv_kernel<HD, true><<<kgrid, THREADS, kv_bytes, stream>>>(dk, dv, dqacc, dout, q, k, v, lse, s.Dsum, vl, NH, T, scale);
            cudaCheckLaunch();
            dq_from_accumulators(dq + (size_t)bh0 * T * HD, dqacc, n, scale, stream);
        }
    }
}
}  // namespace moba

// ---------------------------------------------------------------------------------------------------
// Public interface. `scratch` (moba_attention_scratch_bytes) is working memory of one call: nothing in it
// is kept from the forward to the backward, so it may be shared with other layers.
inline void moba_attention_check_args(int B, int NH, int T, int HD, const MobaSelection *sel) {
    if (sel == NULL) { die("moba_attention: no selection (dense attention is attention_forward with sel = NULL)"); }
    attention_check_args(B, NH, T, HD, sel);
    if (sel->topk > MOBA_MAX_TOPK) { die("moba_attention: top-k %d exceeds %d", sel->topk, MOBA_MAX_TOPK); }
    if ((size_t)B * NH * T * sel->topk >= (1ull << 31)) { die("moba_attention: B*NH*T*K = %zu entries exceed 2^31", (size_t)B * NH * T * sel->topk); }
}

inline size_t moba_attention_scratch_bytes(int B, int NH, int T, int HD, int block_size, int topk) {
#if defined(ENABLE_FP32)
    (void)block_size; (void)topk;
    return attention_backward_scratch_bytes(B, NH, T, HD);
#else
    return moba::scratch_layout(NULL, B, NH, T, HD, block_size, topk).total;
#endif
}

inline void moba_attention_forward(floatX *o, float *lse, const floatX *q, const floatX *k, const floatX *v,
                                   const MobaSelection *sel, void *scratch, int B, int NH, int T, int HD, cudaStream_t stream) {
    moba_attention_check_args(B, NH, T, HD, sel);
#if defined(ENABLE_FP32)
    (void)scratch;
    attention_forward_simple(o, lse, q, k, v, B, NH, T, HD, sel, stream);
#else
    moba::Scratch s = moba::scratch_layout(scratch, B, NH, T, HD, sel->block_size, sel->topk);
    float scale = 1.0f / sqrtf((float)HD);
    (HD == 64 ? moba::forward<64, MOBA_FWD_MT> : moba::forward<128, MOBA_FWD_MT>)(o, lse, q, k, v, sel, s, B, NH, T, scale, stream);
#endif
}

// deterministic = 1: bit-identical results run to run (no fp32 atomics; no extra memory).
inline void moba_attention_backward(floatX *dq, floatX *dk, floatX *dv, const floatX *dout, const floatX *o,
                                    const float *lse, const floatX *q, const floatX *k, const floatX *v,
                                    const MobaSelection *sel, void *scratch, int B, int NH, int T, int HD,
                                    int deterministic, cudaStream_t stream) {
    moba_attention_check_args(B, NH, T, HD, sel);
#if defined(ENABLE_FP32)
    (void)deterministic;
    attention_backward_simple(dq, dk, dv, dout, o, lse, q, k, v, (float *)scratch, B, NH, T, HD, sel, stream);
#else
    moba::Scratch s = moba::scratch_layout(scratch, B, NH, T, HD, sel->block_size, sel->topk);
    float scale = 1.0f / sqrtf((float)HD);
    (HD == 64 ? moba::backward<64> : moba::backward<128>)(dq, dk, dv, dout, o, lse, q, k, v, sel, s, B, NH, T, scale,
                                                          deterministic, stream);
#endif
}

#endif  // LLMC_MOBA_ATTENTION_CUH
