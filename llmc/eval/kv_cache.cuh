/*
 GPU incremental decoding for the moba.c model (the GPU twin of llmc/eval/kv_cache.h): a KV cache for dense
 and MoBA layers, filled from a prefill's forward (one layer at a time: kv_gpu_fill_layer), and one decode
 step for a batch of B sequences that share their position t, from the model's parameter tensors (the
 layout of llmc/config.h) and the training kernels. eval_gpt_moba.cu runs the prefill with the CUDA model
 and puts the cache behind the evaluation driver.

 Cache, per layer l (floatX unless noted):
   k, v   (B, NH, slots, HD) keys after key conv + RoPE where the layer has them (what attention sees) and
                             values, position p in slot p % slots: slots = cap for a global layer, the
                             window w for a sliding-window layer (no query sees further back)
   kraw   (B, W, C)          ring of the last W raw keys (slot p % W): all the causal conv needs
   ksum   (B, NH, nb, HD)    fp32 per-block key sums (MoBA layers), added in position order as each key
                             is appended (as llmc/eval/kv_cache.h), so a centroid is sum / bs at any time
 Decode of B tokens at position t, per layer (M = B rows):
   rmsnorm -> qkv matmul (cuBLASLt) -> kv_prep (k + SiLU(kconv) over the ring, RoPE at t unless NoPE,
   append k, v; q out)
   -> MoBA gate (own block t/bs + top-(K-1) complete past blocks by q . centroid, fp32, ties to the lower
   index: doc/model.md; the training gate's scores differ from these by rounding only)
   -> split-K flash decoding over the visible keys (dense: [0, t]; sliding window: [t - w + 1, t]; MoBA:
   the selected blocks)
   -> wo -> residual + rmsnorm -> SwiGLU MLP -> residual + next norm; then the head.
 Every kernel of a step but kv_prep, the gate and attention is the training one with N = B.
 Traffic of a step: the weights once, plus per layer and row the visible keys and values once.
*/
#ifndef LLMC_KV_CACHE_CUH
#define LLMC_KV_CACHE_CUH

#include <limits.h>
#include <string.h>
#include "../config.h"
#include "../cuda_common.cuh"
#include "../cuda_utils.cuh"
#include "../embedding.cuh"
#include "../matmul.cuh"
#include "../moba_gate.cuh"
#include "../qkv_prep.cuh"
#include "../rmsnorm.cuh"
#include "../swiglu.cuh"
#include "../utils.h"

#define KV_ATTN_THREADS 128
#define KV_ATTN_CTAS_PER_SM 8
#define KV_GATE_THREADS 256

typedef struct {
    int B, cap, nb, splits_cap;   // rows, positions held per row, blocks per row, most split-K partials
    int pos;                      // tokens held per row
    cudaStream_t stream;          // every kernel and copy of the cache
    size_t layer_ring, layer_sum; // elements of one layer's slab
    int *slots;                   // (L) host: positions layer l keeps (p in slot p % slots[l])
    size_t *kv_off;               // (L) host: where layer l's keys / values start in k, v; kv_off[L]: the total
    floatX *k, *v, *kraw;
    float *ksum;
    float *rope;                  // (cap, HD/2) cos/sin, the table qkv_prep uses, for positions up to cap
    // one step's activations (B rows)
    floatX *x, *x2, *ln, *qkv, *q, *att, *proj, *fc, *fch, *logits;
    float *rstd, *part;           // part: (B*NH, splits_cap, HD + 2) split-K partials (o, max, sum)
    int *tokens, *sel;            // (B), (B, NH, K)
    floatX *host_raw;             // (B, V) logits as computed
    float *host_logits;           // (B, V) fp32
} GpuKVCache;

static void kv_gpu_init(GpuKVCache *c, const ModelConfig *cfg, int B, int cap, cudaStream_t stream) {
    memset(c, 0, sizeof(*c));
    c->stream = stream;
    config_check_seq_len(cfg, cap);
    if (B < 1) { die("KV cache: batch %d must be >= 1", B); }
    if (cfg->moba_topk > MOBA_MAX_TOPK) { die("KV cache decoding supports MoBA top-k up to %d (got %d)", MOBA_MAX_TOPK, cfg->moba_topk); }
    size_t L = cfg->n_layer, C = cfg->d_model, NH = cfg->n_head, HD = C / NH, W = cfg->kconv, F = cfg->ffn, V = cfg->vocab_size;
    int moba = cfg->attn == ATTN_MOBA;
    c->B = B; c->cap = cap;
    c->nb = moba ? CEIL_DIV(cap, cfg->moba_block) : 0;
    c->splits_cap = CEIL_DIV(cap, 32);
    c->slots = (int *)malloc_check(L * sizeof(int));
    c->kv_off = (size_t *)malloc_check((L + 1) * sizeof(size_t));
    c->kv_off[0] = 0;
    for (size_t l = 0; l < L; l++) {
        int w = layer_window(cfg, (int)l);
        c->slots[l] = w > 0 && w < cap ? w : cap;
        c->kv_off[l + 1] = c->kv_off[l] + (size_t)B * NH * c->slots[l] * HD;
    }
    c->layer_ring = (size_t)B * W * C;
    c->layer_sum = (size_t)B * NH * c->nb * HD;
    size_t X = sizeof(floatX);
    c->k = (floatX *)cuda_alloc(c->kv_off[L] * X, NULL);
    c->v = (floatX *)cuda_alloc(c->kv_off[L] * X, NULL);
    c->kraw = (floatX *)cuda_alloc(L * c->layer_ring * X, NULL);
    c->ksum = (float *)cuda_alloc(L * c->layer_sum * sizeof(float), NULL);
    c->rope = (float *)cuda_alloc(rope_table_bytes(cap, (int)HD), NULL);
    rope_table_init(c->rope, cap, (int)HD, cfg->rope_theta);
    floatX **acts[] = {&c->x, &c->x2, &c->ln, &c->q, &c->att, &c->proj};
    for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) { *acts[i] = (floatX *)cuda_alloc(B * C * X, NULL); }
    c->qkv = (floatX *)cuda_alloc(B * 3 * C * X, NULL);
    c->fc = (floatX *)cuda_alloc(B * 2 * F * X, NULL);
    c->fch = (floatX *)cuda_alloc(B * F * X, NULL);
    c->logits = (floatX *)cuda_alloc(B * V * X, NULL);
    c->rstd = (float *)cuda_alloc(B * sizeof(float), NULL);
    c->part = (float *)cuda_alloc((size_t)B * NH * c->splits_cap * (HD + 2) * sizeof(float), NULL);
    c->tokens = (int *)cuda_alloc(B * sizeof(int), NULL);
    c->sel = (int *)cuda_alloc(B * NH * (cfg->moba_topk > 0 ? cfg->moba_topk : 1) * sizeof(int), NULL);
    c->host_raw = (floatX *)malloc_check(B * V * X);
    c->host_logits = (float *)malloc_check(B * V * sizeof(float));
}

static void kv_gpu_free(GpuKVCache *c) {
    void *bufs[] = {c->k, c->v, c->kraw, c->ksum, c->rope, c->x, c->x2, c->ln, c->qkv, c->q, c->att, c->proj, c->fc,
                    c->fch, c->logits, c->rstd, c->part, c->tokens, c->sel};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) { cudaCheck(cudaFree(bufs[i])); }
    free(c->host_raw); free(c->host_logits); free(c->slots); free(c->kv_off);
    memset(c, 0, sizeof(*c));
}

// NaN (all bits set) over the cache and the step buffers: whatever decode reads without writing shows up.
static void kv_gpu_poison(GpuKVCache *c, const ModelConfig *cfg) {
    size_t L = cfg->n_layer, C = cfg->d_model, F = cfg->ffn, V = cfg->vocab_size, B = c->B, X = sizeof(floatX);
    struct { void *p; size_t bytes; } bufs[] = {
        {c->k, c->kv_off[L] * X}, {c->v, c->kv_off[L] * X}, {c->kraw, L * c->layer_ring * X},
        {c->ksum, L * c->layer_sum * 4}, {c->x, B * C * X}, {c->x2, B * C * X}, {c->ln, B * C * X}, {c->q, B * C * X},
        {c->att, B * C * X}, {c->proj, B * C * X}, {c->qkv, B * 3 * C * X}, {c->fc, B * 2 * F * X}, {c->fch, B * F * X},
        {c->logits, B * V * X}, {c->part, B * cfg->n_head * c->splits_cap * (C / cfg->n_head + 2) * 4}};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) { cudaCheck(cudaMemset(bufs[i].p, 0xFF, bufs[i].bytes)); }
}

// ---------------------------------------------------------------------------------------------------
// Kernels

// The key rows of kconv_preact in one sequence's ring of the last W raw keys (W, C): position p in slot p % W.
template <int W> struct RingKeyRow {
    const floatX *ring;
    int C, t;
    __device__ const floatX *operator()(int w) const { return ring + (size_t)((t - w) % W) * C; }
};

// One thread per rotation pair (b, h, i < HD/2): the raw key goes into the ring slot t % W, the key conv
// reads the ring (taps w <= t) and k' = k + SiLU(z), then RoPE at t on q and k (rope NULL: NoPE); k and v
// go to slot t % slots, q to q (B, C). The same arithmetic in the same order as qkv_prep_forward_kernel for
// row t. MoBA layers (ksum != NULL) add the key to its block's sum.
template <int W>
__global__ void kv_prep_kernel(floatX *q, floatX *kc, floatX *vc, floatX *ring, float *ksum, const floatX *qkv,
                               const floatX *kconvw, const float *rope, int B, int NH, int HD, int slots, int nb, int bs, int t) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x, half = HD / 2, C = NH * HD;
    if (idx >= B * NH * half) { return; }
    int b = idx / (NH * half), h = (idx / half) % NH, i = idx % half, c1 = h * HD + i, c2 = c1 + half;
    const floatX *row = qkv + (size_t)b * 3 * C;
    float x1[1] = {to_float(row[c1])}, x2[1] = {to_float(row[c2])};
    if (rope) { rotate<false>(x1, x2, rope, t, i, half); }
    q[(size_t)b * C + c1] = from_float<floatX>(x1[0]);
    q[(size_t)b * C + c2] = from_float<floatX>(x2[0]);
    x1[0] = to_float(row[C + c1]);
    x2[0] = to_float(row[C + c2]);
    if constexpr (W > 0) {
        floatX *rb = ring + (size_t)b * W * C;
        rb[(size_t)(t % W) * C + c1] = row[C + c1];
        rb[(size_t)(t % W) * C + c2] = row[C + c2];
        float z1[1], z2[1];
        kconv_preact<W>(z1, z2, RingKeyRow<W>{rb, C, t}, c1, c2, t, kconvw);
        x1[0] += silu_f(z1[0]);
        x2[0] += silu_f(z2[0]);
    }
    if (rope) { rotate<false>(x1, x2, rope, t, i, half); }
    size_t out = (((size_t)b * NH + h) * slots + t % slots) * HD + i;
    kc[out] = from_float<floatX>(x1[0]);
    kc[out + half] = from_float<floatX>(x2[0]);
    if (ksum) {
        float *sum = ksum + (((size_t)b * NH + h) * nb + t / bs) * HD + i;
        sum[0] += to_float(kc[out]);
        sum[half] += to_float(kc[out + half]);
    }
    vc[out] = row[2 * C + c1];
    vc[out + half] = row[2 * C + c2];
}

// One CTA per (b, h): scores s_i = q . c_i (fp32) of the complete past blocks i < t/bs, then K-1 rounds
// of a block-wide argmax in the training gate's order (moba_better: ties to the lower index); writes the
// ascending list, own block last, -1 padding.
__global__ void __launch_bounds__(KV_GATE_THREADS) kv_gate_kernel(int *sel, const floatX *q, const float *ksum, int NH,
                                                                  int HD, int nb, int bs, int K, int t) {
    extern __shared__ float score[];  // (t/bs)
    __shared__ float bval[KV_GATE_THREADS / 32];
    __shared__ int bidx[KV_GATE_THREADS / 32], picks[MOBA_MAX_TOPK];
    int bh = blockIdx.x, ob = t / bs, C = NH * HD;
    const floatX *qh = q + (size_t)(bh / NH) * C + (bh % NH) * HD;
    const float *sb = ksum + (size_t)bh * nb * HD;
    for (int i = threadIdx.x; i < ob; i += blockDim.x) {
        float s = 0.0f;
        for (int d = 0; d < HD; d++) { s += to_float(qh[d]) * (sb[(size_t)i * HD + d] / (float)bs); }
        score[i] = s;
    }
    int npick = min(K - 1, ob), lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int p = 0; p < npick; p++) {
        __syncthreads();
        float best = -INFINITY;
        int arg = INT_MAX;
        for (int i = threadIdx.x; i < ob; i += blockDim.x) {
            if (moba_better(score[i], i, best, arg)) { best = score[i]; arg = i; }
        }
        for (int off = 16; off > 0; off >>= 1) {
            float ob2 = __shfl_xor_sync(0xffffffff, best, off);
            int oa = __shfl_xor_sync(0xffffffff, arg, off);
            if (moba_better(ob2, oa, best, arg)) { best = ob2; arg = oa; }
        }
        if (lane == 0) { bval[warp] = best; bidx[warp] = arg; }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < KV_GATE_THREADS / 32; w++) {
                if (moba_better(bval[w], bidx[w], best, arg)) { best = bval[w]; arg = bidx[w]; }
            }
            picks[p] = arg;
            score[arg] = -INFINITY;  // taken: never picked again (ties among -inf go to untaken lower indices first)
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int a = 1; a < npick; a++) {  // insertion sort: K - 1 <= 63 entries
            int v = picks[a], j = a - 1;
            while (j >= 0 && picks[j] > v) { picks[j + 1] = picks[j]; j--; }
            picks[j + 1] = v;
        }
        int *out = sel + (size_t)bh * K;
        for (int a = 0; a < K; a++) { out[a] = a < npick ? picks[a] : a == npick ? ob : -1; }
    }
}

// Split-K flash decoding, one CTA per (split s, b*NH + h): the query against visible keys
// [s*chunk, (s+1)*chunk) of the head's visible list (dense / sliding window: position first + j; MoBA:
// block sel[j/bs], offset j % bs, every selected past block complete and the own block last), position p
// in cache slot p % slots. G = HD/VEC lanes share a key
// (VEC elements = 16 bytes each), so a warp handles 32/G keys at a time; each lane group keeps an online
// softmax; the CTA merges its groups into one partial (o[HD], max, sum) in fp32.
template <int HD>
__global__ void __launch_bounds__(KV_ATTN_THREADS) kv_attn_partial_kernel(float *part, const floatX *q, const floatX *kc,
                                                                          const floatX *vc, const int *sel, int NH, int slots,
                                                                          int first, int nvis, int chunk, int splits_cap, int bs,
                                                                          int K, float scale) {
    constexpr int VEC = 16 / sizeof(floatX), G = HD / VEC, KPW = 32 / G, GROUPS = KV_ATTN_THREADS / 32 * KPW;
    __shared__ float sm[GROUPS], sl[GROUPS], so[GROUPS][HD];
    int s = blockIdx.x, bh = blockIdx.y, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int grp = warp * KPW + lane / G, sub = lane % G, C = NH * HD;
    const floatX *qh = q + (size_t)(bh / NH) * C + (bh % NH) * HD + sub * VEC;
    const floatX *kh = kc + (size_t)bh * slots * HD + sub * VEC, *vh = vc + (size_t)bh * slots * HD + sub * VEC;
    const int *list = sel ? sel + (size_t)bh * K : NULL;
    float qv[VEC], o[VEC], m = -INFINITY, l = 0.0f;
    for (int u = 0; u < VEC; u++) { qv[u] = to_float(qh[u]) * scale; o[u] = 0.0f; }
    int end = min(nvis, (s + 1) * chunk);
    // the trip count is uniform over the warp (the shuffles need every lane); lanes past the end idle
    for (int j0 = s * chunk + warp * KPW; j0 < end; j0 += GROUPS) {
        int j = j0 + lane / G;
        bool live = j < end;
        int p = !live ? 0 : (list ? list[j / bs] * bs + j % bs : first + j) % slots;
        float sc = 0.0f;
        if (live) {
            Packed128<floatX> kv = load128(kh + (size_t)p * HD);
            for (int u = 0; u < VEC; u++) { sc += qv[u] * to_float(kv[u]); }
        }
        for (int off = G / 2; off > 0; off >>= 1) { sc += __shfl_xor_sync(0xffffffff, sc, off); }
        if (live) {
            float mn = fmaxf(m, sc), corr = expf(m - mn), pr = expf(sc - mn);
            Packed128<floatX> vv = load128(vh + (size_t)p * HD);
            for (int u = 0; u < VEC; u++) { o[u] = o[u] * corr + pr * to_float(vv[u]); }
            l = l * corr + pr;
            m = mn;
        }
    }
    if (sub == 0) { sm[grp] = m; sl[grp] = l; }
    for (int u = 0; u < VEC; u++) { so[grp][sub * VEC + u] = o[u]; }
    __syncthreads();
    float M = -INFINITY;
    for (int g = 0; g < GROUPS; g++) { M = fmaxf(M, sm[g]); }
    float *out = part + ((size_t)bh * splits_cap + s) * (HD + 2);
    for (int d = threadIdx.x; d < HD + 1; d += blockDim.x) {
        float acc = 0.0f, L = 0.0f;
        for (int g = 0; g < GROUPS; g++) {
            float w = sm[g] == -INFINITY ? 0.0f : expf(sm[g] - M);  // a group that saw no key
            if (d < HD) { acc += w * so[g][d]; } else { L += w * sl[g]; }
        }
        if (d < HD) { out[d] = acc; } else { out[HD] = M; out[HD + 1] = L; }
    }
}

// Merges the splits of each (b, h) into att (B, C): o = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s.
__global__ void kv_attn_combine_kernel(floatX *att, const float *part, int NH, int HD, int splits, int splits_cap) {
    int bh = blockIdx.x, d = threadIdx.x;
    const float *p = part + (size_t)bh * splits_cap * (HD + 2);
    float M = -INFINITY;
    for (int s = 0; s < splits; s++) { M = fmaxf(M, p[(size_t)s * (HD + 2) + HD]); }
    float acc = 0.0f, L = 0.0f;
    for (int s = 0; s < splits; s++) {
        const float *ps = p + (size_t)s * (HD + 2);
        float w = expf(ps[HD] - M);
        acc += w * ps[d];
        L += w * ps[HD + 1];
    }
    att[(size_t)(bh / NH) * NH * HD + (bh % NH) * HD + d] = from_float<floatX>(acc / L);
}

// Layer l's cache from a prefill's (BH, n, HD) keys or values: positions [n - slots, n) (all when n <= slots)
// into slot p % slots of (BH, slots, HD). One thread per element.
__global__ void kv_fill_kernel(floatX *dst, const floatX *src, int BH, int HD, int n, int slots) {
    int kept = min(n, slots);
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)BH * kept * HD) { return; }
    int d = (int)(idx % HD), bh = (int)(idx / HD / kept), p = n - kept + (int)(idx / HD % kept);
    dst[((size_t)bh * slots + p % slots) * HD + d] = src[((size_t)bh * n + p) * HD + d];
}

// One thread per (b*NH + h, block < nblk, d): the sum of the block's keys at positions < n, in order.
__global__ void kv_block_sums_kernel(float *ksum, const floatX *k, int BH, int HD, int cap, int nb, int bs, int nblk, int n) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)BH * nblk * HD) { return; }
    int d = (int)(idx % HD), blk = (int)(idx / HD % nblk), bh = (int)(idx / HD / nblk), end = min(n, (blk + 1) * bs);
    const floatX *kb = k + (size_t)bh * cap * HD + d;
    float s = 0.0f;
    for (int p = blk * bs; p < end; p++) { s += to_float(kb[(size_t)p * HD]); }
    ksum[((size_t)bh * nb + blk) * HD + d] = s;
}

// ---------------------------------------------------------------------------------------------------
// Host side

// Sums of layer l's cached keys over the blocks holding positions [0, n), in position order; later blocks zeroed.
static void kv_gpu_block_sums(GpuKVCache *c, const ModelConfig *cfg, int l, int n) {
    int NH = cfg->n_head, HD = cfg->d_model / NH, nblk = CEIL_DIV(n, cfg->moba_block);
    float *sum = c->ksum + l * c->layer_sum;
    cudaCheck(cudaMemsetAsync(sum, 0, c->layer_sum * sizeof(float), c->stream));
    size_t threads = (size_t)c->B * NH * nblk * HD;
    kv_block_sums_kernel<<<(unsigned)CEIL_DIV(threads, (size_t)256), 256, 0, c->stream>>>(sum, c->k + c->kv_off[l], c->B * NH, HD, c->slots[l], c->nb, cfg->moba_block, nblk, n);
    cudaCheckLaunch();
}

static const float *kv_gpu_logits_to_host(GpuKVCache *c, int V) {
    for (size_t i = 0; i < (size_t)c->B * V; i++) { c->host_logits[i] = to_float(c->host_raw[i]); }
    return c->host_logits;
}

// Layer l's cache from a forward over the B rows of n tokens (1 <= n <= cap): k, v (B, NH, n, HD) its keys
// (after key conv and RoPE where the layer has them) and values, qkv (B*n, 3C) its projection (the raw keys
// of the ring); MoBA layers also get their block sums. Every layer filled, kv_gpu_prefilled completes it.
static void kv_gpu_fill_layer(GpuKVCache *c, const ModelConfig *cfg, int l, const floatX *k, const floatX *v,
                              const floatX *qkv, int n) {
    int B = c->B, C = cfg->d_model, NH = cfg->n_head, HD = C / NH, W = layer_has_kconv(cfg, l) ? cfg->kconv : 0;
    size_t X = sizeof(floatX), elems = (size_t)B * NH * (n < c->slots[l] ? n : c->slots[l]) * HD;
    for (int kv = 0; kv < 2; kv++) {
        kv_fill_kernel<<<(unsigned)CEIL_DIV(elems, (size_t)256), 256, 0, c->stream>>>((kv ? c->v : c->k) + c->kv_off[l], kv ? v : k,
                                                                                     B * NH, HD, n, c->slots[l]);
        cudaCheckLaunch();
    }
    for (int t = n > W ? n - W : 0; t < n; t++) {  // raw keys of the last W positions, one row per sequence
        cudaCheck(cudaMemcpy2DAsync(c->kraw + l * c->layer_ring + (size_t)(t % W) * C, (size_t)W * C * X, qkv + (size_t)t * 3 * C + C,
                                    (size_t)n * 3 * C * X, C * X, B, cudaMemcpyDeviceToDevice, c->stream));
    }
    if (layer_is_moba(cfg, l)) { kv_gpu_block_sums(c, cfg, l, n); }
}

// The prefill of n tokens is in the cache: returns the logits of the last positions (B, V) fp32 host, from
// the forward's logits (B, n, V), valid until the next call.
static const float *kv_gpu_prefilled(GpuKVCache *c, const floatX *logits, int n, int V) {
    size_t X = sizeof(floatX);
    cudaCheck(cudaMemcpy2DAsync(c->host_raw, V * X, logits + (size_t)(n - 1) * V, (size_t)n * V * X, V * X, c->B,
                                cudaMemcpyDeviceToHost, c->stream));
    cudaCheck(cudaStreamSynchronize(c->stream));
    c->pos = n;
    return kv_gpu_logits_to_host(c, V);
}

// Attention of the B queries in c->q over layer l's cache at position t, into c->att.
static void kv_gpu_attend(GpuKVCache *c, const ModelConfig *cfg, int l, int t) {
    int B = c->B, NH = cfg->n_head, HD = cfg->d_model / NH, K = cfg->moba_topk, bs = cfg->moba_block, BH = B * NH;
    const floatX *kc = c->k + c->kv_off[l], *vc = c->v + c->kv_off[l];
    int moba = layer_is_moba(cfg, l), w = layer_window(cfg, l), first = w > 0 && t + 1 > w ? t + 1 - w : 0, nvis = t + 1 - first;
    if (moba) {
        int ob = t / bs, nsel = K - 1 < ob ? K : ob + 1;
        nvis = (nsel - 1) * bs + t - ob * bs + 1;
        size_t smem = (size_t)(ob > 0 ? ob : 1) * sizeof(float);
        if (smem > 48 * 1024) { die("KV cache decoding: %d past MoBA blocks exceed the gate's shared memory", ob); }
        kv_gate_kernel<<<BH, KV_GATE_THREADS, smem, c->stream>>>(c->sel, c->q, c->ksum + l * c->layer_sum, NH, HD, c->nb, bs, K, t);
        cudaCheckLaunch();
    }
    // KV_ATTN_CTAS_PER_SM CTAs per SM keep enough loads in flight to hide their latency; >= 64 keys each
    int want = CEIL_DIV(cuda_num_sms() * KV_ATTN_CTAS_PER_SM, BH), chunk = CEIL_DIV(nvis, want);
    chunk = chunk < 64 ? 64 : CEIL_DIV(chunk, 32) * 32;
    int splits = CEIL_DIV(nvis, chunk);
    if (splits > c->splits_cap) { die("KV cache decoding: %d splits exceed the scratch's %d", splits, c->splits_cap); }
    dim3 grid(splits, BH);
    float scale = 1.0f / sqrtf((float)HD);
    const int *sel = moba ? c->sel : NULL;
    auto partial = HD == 64 ? kv_attn_partial_kernel<64> : kv_attn_partial_kernel<128>;
    partial<<<grid, KV_ATTN_THREADS, 0, c->stream>>>(c->part, c->q, kc, vc, sel, NH, c->slots[l], first, nvis, chunk, c->splits_cap, bs, K, scale);
    cudaCheckLaunch();
    kv_attn_combine_kernel<<<BH, HD, 0, c->stream>>>(c->att, c->part, NH, HD, splits, c->splits_cap);
    cudaCheckLaunch();
}

// Appends tokens[b] (host, one per sequence) at position c->pos through the model with parameter tensors
// p (llmc/config.h's layout); returns the next logits (B, V) fp32 host.
static const float *kv_gpu_step(GpuKVCache *c, const ModelConfig *cfg, floatX *const p[NUM_PARAM_TENSORS], const int *tokens) {
    int B = c->B, t = c->pos, L = cfg->n_layer, C = cfg->d_model, NH = cfg->n_head, HD = C / NH, F = cfg->ffn, V = cfg->vocab_size, W = cfg->kconv;
    cudaStream_t st = c->stream;
    if (t >= c->cap) { die("KV cache is full (%d tokens)", c->cap); }
    for (int b = 0; b < B; b++) { if (tokens[b] < 0 || tokens[b] >= V) { die("token %d is outside the vocabulary [0, %d)", tokens[b], V); } }
    cudaCheck(cudaMemcpyAsync(c->tokens, tokens, B * sizeof(int), cudaMemcpyHostToDevice, st));
    encoder_forward(c->x, c->tokens, p[P_WTE], B, C, V, st);
    rmsnorm_forward(c->ln, c->rstd, c->x, p[P_LN1W], B, C, st);
    for (int l = 0; l < L; l++) {  // layer l's slices of the parameter tensors
        const int slab = kconv_slab(cfg, l);
        const floatX *wqkv = p[P_WQKV] + (size_t)l * 3 * C * C, *kconvw = slab >= 0 ? p[P_KCONVW] + (size_t)slab * C * W : NULL;
        const floatX *wo = p[P_WO] + (size_t)l * C * C, *ln2w = p[P_LN2W] + (size_t)l * C;
        const floatX *wfc = p[P_WFC] + (size_t)l * 2 * F * C, *wproj = p[P_WPROJ] + (size_t)l * C * F;
        matmul_forward(c->qkv, c->ln, wqkv, B, C, 3 * C, st);
        floatX *kc = c->k + c->kv_off[l], *vc = c->v + c->kv_off[l], *ring = c->kraw + l * c->layer_ring;
        int threads = B * NH * HD / 2, grid = CEIL_DIV(threads, 256);
        float *ksum = layer_is_moba(cfg, l) ? c->ksum + l * c->layer_sum : NULL;
        int lw = slab >= 0 ? W : 0;
        auto prep = lw == 0 ? kv_prep_kernel<0> : lw == 3 ? kv_prep_kernel<3> : kv_prep_kernel<5>;
        const float *rope = layer_has_rope(cfg, l) ? c->rope : NULL;
        prep<<<grid, 256, 0, st>>>(c->q, kc, vc, ring, ksum, c->qkv, kconvw, rope, B, NH, HD, c->slots[l], c->nb, cfg->moba_block, t);
        cudaCheckLaunch();
        kv_gpu_attend(c, cfg, l, t);
        matmul_forward(c->proj, c->att, wo, B, C, C, st);
        fused_residual_rmsnorm_forward(c->x2, c->ln, c->rstd, c->x, c->proj, ln2w, B, C, st);
        matmul_forward(c->fc, c->ln, wfc, B, C, 2 * F, st);
        swiglu_forward(c->fch, c->fc, B, F, st);
        matmul_forward(c->proj, c->fch, wproj, B, F, C, st);
        const floatX *next_norm = l + 1 < L ? p[P_LN1W] + (size_t)(l + 1) * C : p[P_LNFW];
        fused_residual_rmsnorm_forward(c->x, c->ln, c->rstd, c->x2, c->proj, next_norm, B, C, st);
    }
    matmul_forward(c->logits, c->ln, p[P_WLM], B, C, V, st);
    cudaCheck(cudaMemcpyAsync(c->host_raw, c->logits, (size_t)B * V * sizeof(floatX), cudaMemcpyDeviceToHost, st));
    cudaCheck(cudaStreamSynchronize(st));
    c->pos = t + 1;
    return kv_gpu_logits_to_host(c, V);
}

#endif // LLMC_KV_CACHE_CUH
