/*
 CPU incremental decoding for the moba.c model: a KV cache for dense and MoBA layers, prefill, one-token
 decode steps, and generation through llmc/eval/sampling.h (greedy, temperature + top-p, stop sequences, token budget).
 It runs the CPU reference model's own layer functions, so it includes train_gpt_moba.c (as a library:
 TESTING, no main).

 Cache, per layer: keys as attention sees them (after key conv and RoPE, where the layer has them) and
 values, (slots, C) each, position p in slot p % slots: a global layer has slots = cap, a sliding-window
 layer only its window (slots = w), since no query sees further back. Also the last W raw keys (before
 the key conv) in a ring, which is all the causal conv of width W needs; and for MoBA layers the running
 per-block key sums (fp32, added in position order, exactly as the training gate sums them), so a
 block's centroid is sum / length at any time without rereading keys.
 Decode of the token at position t: MoBA selects its own (partial) block t/B plus the top-(K-1) complete
 past blocks by q_t . centroid (fp32, ties to the lower index), the rule of doc/model.md; dense sees
 [0, t], sliding window [t - w + 1, t]. Each step does the same arithmetic in the same order as
 model_forward does for row t, so its logits equal the full recompute's (dev/test/test_eval.c checks the
 global and paper layouts, dense, MoBA and MoBA + key conv).
 Prefill runs model_forward on the prompt (the batched training path) and copies its keys and values.
*/
#ifndef LLMC_KV_CACHE_H
#define LLMC_KV_CACHE_H

#ifndef TESTING
#define TESTING
#endif
#include "../../train_gpt_moba.c"
#include "../moba_selection.h"
#include "../rng.h"
#include "sampling.h"

typedef struct {
    int L, C, NH, HD, W, V, F, cap, nb_cap;
    int pos;                 // tokens held
    int *slots;              // (L): keys layer l keeps; position p lives in slot p % slots[l]
    size_t *layer_off;       // (L): where layer l's keys and values start in k, v (rows of C)
    real *k, *v;             // (sum of slots, C)
    real *kraw;              // (L, W, C) ring: raw key of position p at slot p % W
    float *ksum;             // (L, nb_cap, C) per-block sums of cached keys (MoBA layers)
    // one token's scratch
    real *x, *h, *rstd, *qkv, *qr, *kc, *att, *x2, *fc, *fch, *logits, *sc;
    float *score;
    int *sel;
    unsigned char *taken;
} KVCache;

static inline void kv_init(KVCache *c, const ModelConfig *cfg, int cap) {
    memset(c, 0, sizeof(*c));
    config_check_seq_len(cfg, cap);
    c->L = cfg->n_layer; c->C = cfg->d_model; c->NH = cfg->n_head; c->HD = c->C / c->NH; c->W = cfg->kconv;
    c->V = cfg->vocab_size; c->F = cfg->ffn; c->cap = cap;
    int bs = cfg->attn == ATTN_MOBA ? cfg->moba_block : cap;
    c->nb_cap = (cap + bs - 1) / bs;
    c->slots = (int *)calloc_check(c->L, sizeof(int));
    c->layer_off = (size_t *)calloc_check(c->L, sizeof(size_t));
    size_t rows = 0;
    for (int l = 0; l < c->L; l++) {
        int w = layer_window(cfg, l);
        c->slots[l] = w > 0 && w < cap ? w : cap;
        c->layer_off[l] = rows;
        rows += c->slots[l];
    }
    c->k = (real *)calloc_check(rows * c->C, sizeof(real));
    c->v = (real *)calloc_check(rows * c->C, sizeof(real));
    c->kraw = (real *)calloc_check((size_t)c->L * (c->W ? c->W : 1) * c->C, sizeof(real));
    c->ksum = (float *)calloc_check((size_t)c->L * c->nb_cap * c->C, sizeof(float));
    c->x = (real *)calloc_check(c->C, sizeof(real)); c->h = (real *)calloc_check(c->C, sizeof(real));
    c->rstd = (real *)calloc_check(1, sizeof(real)); c->qkv = (real *)calloc_check(3 * (size_t)c->C, sizeof(real));
    c->qr = (real *)calloc_check(c->C, sizeof(real)); c->kc = (real *)calloc_check(c->C, sizeof(real));
    c->att = (real *)calloc_check(c->C, sizeof(real)); c->x2 = (real *)calloc_check(c->C, sizeof(real));
    c->fc = (real *)calloc_check(2 * (size_t)c->F, sizeof(real)); c->fch = (real *)calloc_check(c->F, sizeof(real));
    c->logits = (real *)calloc_check(c->V, sizeof(real)); c->sc = (real *)calloc_check(cap, sizeof(real));
    c->score = (float *)calloc_check(c->nb_cap, sizeof(float));
    c->sel = (int *)calloc_check(cfg->moba_topk > 0 ? cfg->moba_topk : 1, sizeof(int));
    c->taken = (unsigned char *)calloc_check(c->nb_cap, 1);
}

static inline void kv_free(KVCache *c) {
    real *bufs[] = {c->k, c->v, c->kraw, c->x, c->h, c->rstd, c->qkv, c->qr, c->kc, c->att, c->x2, c->fc, c->fch, c->logits, c->sc};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) { free(bufs[i]); }
    free(c->ksum); free(c->score); free(c->sel); free(c->taken); free(c->slots); free(c->layer_off);
    memset(c, 0, sizeof(*c));
}

// MoBA selection of query q (one head) at position t: own block + top-(K-1) past blocks, ascending.
static inline int kv_moba_select(KVCache *c, const ModelConfig *cfg, int l, int h, const real *q, int t) {
    int bs = cfg->moba_block, K = cfg->moba_topk, ob = t / bs, HD = c->HD;
    const float *sums = c->ksum + (size_t)l * c->nb_cap * c->C + (size_t)h * HD;
    for (int i = 0; i < ob; i++) {
        float s = 0.0f;
        for (int d = 0; d < HD; d++) { s += (float)q[d] * (sums[(size_t)i * c->C + d] / (float)bs); }
        c->score[i] = s;
        c->taken[i] = 0;
    }
    c->taken[ob] = 1;
    int picks = K - 1 < ob ? K - 1 : ob;
    for (int p = 0; p < picks; p++) {
        int best = -1;
        for (int i = 0; i < ob; i++) { if (!c->taken[i] && (best < 0 || c->score[i] > c->score[best])) { best = i; } }
        c->taken[best] = 1;
    }
    int n = 0;
    for (int i = 0; i <= ob; i++) { if (c->taken[i]) { c->sel[n++] = i; } }
    for (int i = n; i < K; i++) { c->sel[i] = -1; }
    return n;
}

// Adds key row kr (position t) of layer l to the block sums.
static inline void kv_add_key_sum(KVCache *c, int l, int t, int bs, const real *kr) {
    float *s = c->ksum + ((size_t)l * c->nb_cap + t / bs) * c->C;
    for (int i = 0; i < c->C; i++) { s[i] += (float)kr[i]; }
}

// Key (or value) row of position p in layer l's cache.
static inline real *kv_row(const KVCache *c, real *base, int l, int p) { return base + (c->layer_off[l] + (size_t)(p % c->slots[l])) * c->C; }

// Fills the cache from the prompt with one model_forward and returns the logits of its last position.
static inline const real *kv_prefill(KVCache *c, Model *m, const int *tokens, int n) {
    const ModelConfig *cfg = &m->cfg;
    if (n < 1 || n > c->cap) { die("prefill of %d tokens: must be 1..%d (the cache capacity)", n, c->cap); }
    model_reserve(m, 1, n);
    model_forward(m, tokens, NULL, 1, n);
    size_t slab = (size_t)m->B * m->T * c->C;
    int bs = cfg->attn == ATTN_MOBA ? cfg->moba_block : c->cap;
    memset(c->ksum, 0, (size_t)c->L * c->nb_cap * c->C * sizeof(float));
    for (int l = 0; l < c->L; l++) {
        for (int t = n > c->slots[l] ? n - c->slots[l] : 0; t < n; t++) {
            memcpy(kv_row(c, c->k, l, t), m->a.kr + l * slab + (size_t)t * c->C, c->C * sizeof(real));
            memcpy(kv_row(c, c->v, l, t), m->a.v + l * slab + (size_t)t * c->C, c->C * sizeof(real));
        }
        for (int t = (c->W && n > c->W ? n - c->W : 0); c->W && t < n; t++) {
            memcpy(c->kraw + ((size_t)l * c->W + t % c->W) * c->C, m->a.k + l * slab + (size_t)t * c->C, c->C * sizeof(real));
        }
        if (layer_is_moba(cfg, l)) {
            for (int t = 0; t < n; t++) { kv_add_key_sum(c, l, t, bs, kv_row(c, c->k, l, t)); }
        }
    }
    c->pos = n;
    memcpy(c->logits, m->a.logits + (size_t)(n - 1) * c->V, c->V * sizeof(real));
    return c->logits;
}

// Attention of one query (all heads) at position t over the cache of layer l, into c->att.
static inline void kv_attend(KVCache *c, const ModelConfig *cfg, int l, int t) {
    int HD = c->HD, moba = layer_is_moba(cfg, l), w = layer_window(cfg, l);
    real scale = 1 / sqrt((real)HD);
    int ranges[MOBA_MAX_TOPK][2];
    if (moba && cfg->moba_topk > MOBA_MAX_TOPK) { die("KV cache decoding supports MoBA top-k up to %d (got %d)", MOBA_MAX_TOPK, cfg->moba_topk); }
    for (int h = 0; h < c->NH; h++) {
        const real *q = c->qr + h * HD;
        if (moba) { kv_moba_select(c, cfg, l, h, q, t); }
        int nr = visible_ranges(ranges, t, moba ? c->sel : NULL, cfg->moba_topk, cfg->moba_block, w);
        real mx = -INFINITY;
        for (int r = 0; r < nr; r++) {
            for (int j = ranges[r][0]; j < ranges[r][1]; j++) {
                const real *kj = kv_row(c, c->k, l, j) + h * HD;
                real s = 0;
                for (int d = 0; d < HD; d++) { s += q[d] * kj[d]; }
                c->sc[j] = s * scale;
                if (c->sc[j] > mx) { mx = c->sc[j]; }
            }
        }
        real sum = 0, *o = c->att + h * HD;
        for (int d = 0; d < HD; d++) { o[d] = 0; }
        for (int r = 0; r < nr; r++) {
            for (int j = ranges[r][0]; j < ranges[r][1]; j++) {
                real p = exp(c->sc[j] - mx);
                sum += p;
                const real *vj = kv_row(c, c->v, l, j) + h * HD;
                for (int d = 0; d < HD; d++) { o[d] += p * vj[d]; }
            }
        }
        for (int d = 0; d < HD; d++) { o[d] /= sum; }
    }
}

// Appends one token at position c->pos and returns the logits for the next one (valid until the next call).
static inline const real *kv_step(KVCache *c, Model *m, int token) {
    const ModelConfig *cfg = &m->cfg;
    int C = c->C, W = c->W, t = c->pos;
    if (t >= c->cap) { die("KV cache is full (%d tokens)", c->cap); }
    if (token < 0 || token >= c->V) { die("token %d is outside the vocabulary [0, %d)", token, c->V); }
    int bs = cfg->attn == ATTN_MOBA ? cfg->moba_block : c->cap;
    memcpy(c->x, m->p[P_WTE] + (size_t)token * C, C * sizeof(real));
    for (int l = 0; l < c->L; l++) {
        rmsnorm_forward(c->h, c->rstd, c->x, m->p[P_LN1W] + (size_t)l * C, 1, C);
        matmul_forward(c->qkv, c->h, m->p[P_WQKV] + (size_t)l * 3 * C * C, 1, C, 3 * C);
        const real *kraw = c->qkv + C, *v = c->qkv + 2 * C;
        int slab = kconv_slab(cfg, l);
        if (slab >= 0) {  // kconv_forward for row t, over the ring
            real *ring = c->kraw + (size_t)l * W * C;
            memcpy(ring + (size_t)(t % W) * C, kraw, C * sizeof(real));
            const real *a = m->p[P_KCONVW] + (size_t)slab * C * W;
            for (int ch = 0; ch < C; ch++) { c->kc[ch] = kraw[ch] + silu(kconv_preact(ring, W, a, t, ch, C, W)); }
        } else {
            memcpy(c->kc, kraw, C * sizeof(real));
        }
        memcpy(c->qr, c->qkv, C * sizeof(real));
        if (layer_has_rope(cfg, l)) {
            rope_position(c->qr, c->qr, t, c->NH, c->HD, cfg->rope_theta, +1);
            rope_position(c->kc, c->kc, t, c->NH, c->HD, cfg->rope_theta, +1);
        }
        memcpy(kv_row(c, c->k, l, t), c->kc, C * sizeof(real));
        memcpy(kv_row(c, c->v, l, t), v, C * sizeof(real));
        if (layer_is_moba(cfg, l)) { kv_add_key_sum(c, l, t, bs, c->kc); }
        kv_attend(c, cfg, l, t);
        matmul_forward(c->x2, c->att, m->p[P_WO] + (size_t)l * C * C, 1, C, C);
        for (int i = 0; i < C; i++) { c->x2[i] += c->x[i]; }
        rmsnorm_forward(c->h, c->rstd, c->x2, m->p[P_LN2W] + (size_t)l * C, 1, C);
        matmul_forward(c->fc, c->h, m->p[P_WFC] + (size_t)l * 2 * c->F * C, 1, C, 2 * c->F);
        swiglu_forward(c->fch, c->fc, 1, c->F);
        matmul_forward(c->x, c->fch, m->p[P_WPROJ] + (size_t)l * C * c->F, 1, c->F, C);
        for (int i = 0; i < C; i++) { c->x[i] += c->x2[i]; }
    }
    rmsnorm_forward(c->h, c->rstd, c->x, m->p[P_LNFW], 1, C);
    matmul_forward(c->logits, c->h, m->p[P_WLM], 1, C, c->V);
    c->pos = t + 1;
    return c->logits;
}

// ---------------------------------------------------------------------------------------------------
// The cache as llmc/eval/sampling.h and llmc/eval/eval_driver.h take a model

typedef struct { KVCache *c; Model *m; } KVModel;
static inline const float *kv_prefill_fn(void *ctx, const int *tokens, int n) { KVModel *k = (KVModel *)ctx; return kv_prefill(k->c, k->m, tokens, n); }
static inline const float *kv_step_fn(void *ctx, int token) { KVModel *k = (KVModel *)ctx; return kv_step(k->c, k->m, token); }

// Generates after prompt[0..n) into out (room for g->max_new_tokens); returns the number generated.
// The cache must hold n + max_new_tokens; it is reset.
static inline int kv_generate(KVCache *c, Model *m, const int *prompt, int n, const GenConfig *g, int *out) {
    KVModel k = {c, m};
    return generate_tokens(&k, kv_prefill_fn, kv_step_fn, c->V, c->cap, prompt, n, g, out);
}

#endif // LLMC_KV_CACHE_H
