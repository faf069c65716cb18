/*
 moba.c CPU reference: the whole model (doc/model.md) in plain C, forward and backward for every layer,
 AdamW, the training loop, checkpoints and the debug state that GPU tests compare against.
 Written for clarity, not speed; it is the oracle for every GPU kernel and runs the main job on a
 machine without a GPU.

 `real` is float; the gradient-check tests compile this same file with -DREAL=double (tgmath.h picks the
 matching math functions) so finite differences are exact enough to check every gradient tightly.
 Tests and tools include this file with TESTING defined (no main), as llm.c's do; so does the CPU KV cache
 (llmc/eval/kv_cache.h), hence the include guard.
*/
#ifndef TRAIN_GPT_MOBA_C
#define TRAIN_GPT_MOBA_C

#ifndef REAL
#define REAL float
#endif
typedef REAL real;

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glob.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <tgmath.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "llmc/checkpoint.h"
#include "llmc/config.h"
#include "llmc/dataloader.h"
#include "llmc/rng.h"
#include "llmc/schedulers.h"
#include "llmc/synthetic.h"
#include "llmc/run_dir.h"
#include "llmc/run_eval.h"
#include "llmc/train_args.h"
#include "llmc/utils.h"

#define RMSNORM_EPS 1e-5

// ---------------------------------------------------------------------------------------------------
// Layers. Shapes: N = B*T rows; activations row-major (N, width).

void encoder_forward(real *out, const int *tokens, const real *wte, int N, int C) {
    for (int n = 0; n < N; n++) { memcpy(out + (size_t)n * C, wte + (size_t)tokens[n] * C, C * sizeof(real)); }
}

void encoder_backward(real *dwte, const real *dout, const int *tokens, int N, int C) {
    for (int n = 0; n < N; n++) {
        real *d = dwte + (size_t)tokens[n] * C;
        const real *g = dout + (size_t)n * C;
        for (int c = 0; c < C; c++) { d[c] += g[c]; }
    }
}

// y = x / sqrt(mean(x^2) + eps) * w; rstd saved per row.
void rmsnorm_forward(real *out, real *rstd, const real *inp, const real *w, int N, int C) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const real *x = inp + (size_t)n * C;
        real ss = 0;
        for (int c = 0; c < C; c++) { ss += x[c] * x[c]; }
        real r = 1 / sqrt(ss / C + (real)RMSNORM_EPS);
        rstd[n] = r;
        for (int c = 0; c < C; c++) { out[(size_t)n * C + c] = x[c] * r * w[c]; }
    }
}

// dinp += ..., dw += ... (accumulating, so the residual stream's gradient just flows in)
void rmsnorm_backward(real *dinp, real *dw, const real *dout, const real *inp, const real *w, const real *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const real *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        real r = rstd[n], dot = 0;
        for (int c = 0; c < C; c++) { dot += w[c] * dy[c] * x[c]; }
        real k = r * r * r * dot / C;
        for (int c = 0; c < C; c++) {
            dinp[(size_t)n * C + c] += r * w[c] * dy[c] - k * x[c];
            dw[c] += dy[c] * x[c] * r;
        }
    }
}

// out (N, OC) = inp (N, C) . w (OC, C)^T
void matmul_forward(real *out, const real *inp, const real *w, int N, int C, int OC) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const real *x = inp + (size_t)n * C;
        for (int o = 0; o < OC; o++) {
            const real *wr = w + (size_t)o * C;
            real sum = 0;
            #pragma omp simd reduction(+ : sum)
            for (int c = 0; c < C; c++) { sum += x[c] * wr[c]; }
            out[(size_t)n * OC + o] = sum;
        }
    }
}

// dinp += dout . w ; dw += dout^T . inp
void matmul_backward(real *dinp, real *dw, const real *dout, const real *inp, const real *w, int N, int C, int OC) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        real *dx = dinp + (size_t)n * C;
        for (int o = 0; o < OC; o++) {
            real g = dout[(size_t)n * OC + o];
            const real *wr = w + (size_t)o * C;
            #pragma omp simd
            for (int c = 0; c < C; c++) { dx[c] += g * wr[c]; }
        }
    }
    #pragma omp parallel for
    for (int o = 0; o < OC; o++) {
        real *dwr = dw + (size_t)o * C;
        for (int n = 0; n < N; n++) {
            real g = dout[(size_t)n * OC + o];
            const real *x = inp + (size_t)n * C;
            #pragma omp simd
            for (int c = 0; c < C; c++) { dwr[c] += g * x[c]; }
        }
    }
}

static inline real silu(real z) { return z / (1 + exp(-z)); }

// The paper's key convolution, per channel c: z_t = sum_{w<W} a[c][w] * k_{t-w} (0 before t = 0, so causal
// and depthwise), out_t = k_t + SiLU(z_t). The key of position p is row p % period of keys (C channels): a
// sequence's keys (period T), or the KV cache's ring of the last W keys (period W, llmc/eval/kv_cache.h).
static real kconv_preact(const real *keys, int period, const real *a, int t, int c, int C, int W) {
    real z = 0;
    for (int w = 0; w < W && w <= t; w++) { z += a[c * W + w] * keys[(size_t)((t - w) % period) * C + c]; }
    return z;
}

void kconv_forward(real *out, const real *inp, const real *a, int B, int T, int C, int W) {
    for (int b = 0; b < B; b++) {
        const real *seq = inp + (size_t)b * T * C;
        for (int t = 0; t < T; t++) {
            size_t row = ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) { out[row + c] = inp[row + c] + silu(kconv_preact(seq, T, a, t, c, C, W)); }
        }
    }
}

// dinp += dout (residual) + the transposed convolution of dz; da += dz_t * k_{t-w}, with
// dz_t = dout_t * SiLU'(z_t), SiLU'(z) = s (1 + z (1 - s)), s = sigmoid(z); z is recomputed.
void kconv_backward(real *dinp, real *da, const real *dout, const real *inp, const real *a, int B, int T, int C, int W) {
    for (int b = 0; b < B; b++) {
        const real *seq = inp + (size_t)b * T * C;
        for (int t = 0; t < T; t++) {
            size_t row = ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) {
                real z = kconv_preact(seq, T, a, t, c, C, W), s = 1 / (1 + exp(-z));
                real dz = dout[row + c] * s * (1 + z * (1 - s));
                dinp[row + c] += dout[row + c];
                for (int w = 0; w < W && w <= t; w++) {
                    size_t src = row - (size_t)w * C + c;
                    dinp[src] += a[c * W + w] * dz;
                    da[c * W + w] += dz * inp[src];
                }
            }
        }
    }
}

// RoPE per head on one position's (NH, HD) row: pairs (i, i + HD/2), angle t * theta^(-2i/HD). direction = +1
// rotates (forward); -1 rotates back, which is the backward pass of a rotation. out may be inp.
static void rope_position(real *out, const real *inp, int t, int NH, int HD, float theta, int direction) {
    int half = HD / 2;
    for (int i = 0; i < half; i++) {
        double freq = pow((double)theta, -2.0 * i / HD);
        double angle = t * freq;
        real cs = (real)cos(angle), sn = (real)(direction * sin(angle));
        for (int h = 0; h < NH; h++) {
            size_t base = (size_t)h * HD;
            real x1 = inp[base + i], x2 = inp[base + i + half];
            out[base + i] = x1 * cs - x2 * sn;
            out[base + i + half] = x2 * cs + x1 * sn;
        }
    }
}

// rope_position on every position of (B, T, NH, HD).
void rope_apply(real *out, const real *inp, int B, int T, int NH, int HD, float theta, int direction) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            size_t row = ((size_t)b * T + t) * NH * HD;
            rope_position(out + row, inp + row, t, NH, HD, theta, direction);
        }
    }
}

// MoBA gate for one (b, h): sel (T, K), per query the selected block indices ascending, -1 padded.
// Own block forced; top-(K-1) past blocks by q.centroid (fp32 scores), ties to the lower index.
void moba_gate_head(int *sel, const real *q, const real *k, int T, int row_stride, int HD, int bs, int K) {
    int nb = (T + bs - 1) / bs;
    float *cent = (float *)malloc_check((size_t)nb * HD * sizeof(float));
    float *score = (float *)malloc_check((size_t)nb * sizeof(float));
    unsigned char *taken = (unsigned char *)malloc_check((size_t)nb);
    for (int i = 0; i < nb; i++) {
        int start = i * bs, end = start + bs < T ? start + bs : T;
        for (int d = 0; d < HD; d++) {
            float sum = 0.0f;
            for (int j = start; j < end; j++) { sum += (float)k[(size_t)j * row_stride + d]; }
            cent[(size_t)i * HD + d] = sum / (float)(end - start);
        }
    }
    for (int t = 0; t < T; t++) {
        int ob = t / bs;
        const real *qt = q + (size_t)t * row_stride;
        for (int i = 0; i < ob; i++) {
            float s = 0.0f;
            for (int d = 0; d < HD; d++) { s += (float)qt[d] * cent[(size_t)i * HD + d]; }
            score[i] = s;
            taken[i] = 0;
        }
        taken[ob] = 1;
        int picks = K - 1 < ob ? K - 1 : ob;
        for (int p = 0; p < picks; p++) {
            int best = -1;
            for (int i = 0; i < ob; i++) {
                if (!taken[i] && (best < 0 || score[i] > score[best])) { best = i; }  // strict >: lower index wins ties
            }
            taken[best] = 1;
        }
        int *s = sel + (size_t)t * K, n = 0;
        for (int i = 0; i <= ob; i++) { if (taken[i]) { s[n++] = i; } }
        for (; n < K; n++) { s[n] = -1; }
    }
    free(cent); free(score); free(taken);
}

// Key ranges [start, end) visible to query t: dense = [0, t], sliding window (window > 0) = [t - window + 1, t],
// MoBA = its selected blocks, causal.
static int visible_ranges(int ranges[][2], int t, const int *sel, int K, int bs, int window) {
    if (sel == NULL) { ranges[0][0] = window > 0 && t + 1 > window ? t + 1 - window : 0; ranges[0][1] = t + 1; return 1; }
    int n = 0;
    for (int i = 0; i < K && sel[i] >= 0; i++) {
        int start = sel[i] * bs, end = start + bs < t + 1 ? start + bs : t + 1;
        ranges[n][0] = start; ranges[n][1] = end; n++;
    }
    return n;
}

// Attention on (B, T, NH, HD) q, k, v -> out (B, T, NH, HD), lse (B, NH, T). With sel != NULL (MoBA)
// the gate runs first and writes sel (B, NH, T, K); the softmax covers only the selected keys. Without
// sel, window > 0 is sliding-window attention over the last `window` keys, 0 dense causal.
void attention_forward(real *out, real *lse, int *sel, const real *q, const real *k, const real *v,
                       int B, int T, int NH, int HD, int bs, int K, int window) {
    int C = NH * HD;
    real scale = 1 / sqrt((real)HD);
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            size_t off = (size_t)b * T * C + (size_t)h * HD;
            int *hsel = sel ? sel + ((size_t)b * NH + h) * T * K : NULL;
            if (hsel) { moba_gate_head(hsel, q + off, k + off, T, C, HD, bs, K); }
            real *sc = (real *)malloc_check((size_t)T * sizeof(real));
            int (*ranges)[2] = malloc_check((size_t)(K > 1 ? K : 1) * sizeof(*ranges));
            for (int t = 0; t < T; t++) {
                const real *qt = q + off + (size_t)t * C;
                int nr = visible_ranges(ranges, t, hsel ? hsel + (size_t)t * K : NULL, K, bs, window);
                real mx = -INFINITY;
                for (int r = 0; r < nr; r++) {
                    for (int j = ranges[r][0]; j < ranges[r][1]; j++) {
                        const real *kj = k + off + (size_t)j * C;
                        real s = 0;
                        for (int d = 0; d < HD; d++) { s += qt[d] * kj[d]; }
                        sc[j] = s * scale;
                        if (sc[j] > mx) { mx = sc[j]; }
                    }
                }
                real sum = 0;
                real *ot = out + off + (size_t)t * C;
                for (int d = 0; d < HD; d++) { ot[d] = 0; }
                for (int r = 0; r < nr; r++) {
                    for (int j = ranges[r][0]; j < ranges[r][1]; j++) {
                        real p = exp(sc[j] - mx);
                        sum += p;
                        const real *vj = v + off + (size_t)j * C;
                        for (int d = 0; d < HD; d++) { ot[d] += p * vj[d]; }
                    }
                }
                for (int d = 0; d < HD; d++) { ot[d] /= sum; }
                lse[((size_t)b * NH + h) * T + t] = mx + log(sum);
            }
            free(sc); free(ranges);
        }
    }
}

// Recomputes probabilities from lse; accumulates into dq, dk, dv. No gradient through the gate.
void attention_backward(real *dq, real *dk, real *dv, const real *dout, const real *q, const real *k, const real *v,
                        const real *out, const real *lse, const int *sel, int B, int T, int NH, int HD, int bs, int K,
                        int window) {
    int C = NH * HD;
    real scale = 1 / sqrt((real)HD);
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            size_t off = (size_t)b * T * C + (size_t)h * HD;
            const int *hsel = sel ? sel + ((size_t)b * NH + h) * T * K : NULL;
            int (*ranges)[2] = malloc_check((size_t)(K > 1 ? K : 1) * sizeof(*ranges));
            for (int t = 0; t < T; t++) {
                const real *qt = q + off + (size_t)t * C, *dot = dout + off + (size_t)t * C, *ot = out + off + (size_t)t * C;
                real *dqt = dq + off + (size_t)t * C;
                real Dt = 0;
                for (int d = 0; d < HD; d++) { Dt += dot[d] * ot[d]; }
                real l = lse[((size_t)b * NH + h) * T + t];
                int nr = visible_ranges(ranges, t, hsel ? hsel + (size_t)t * K : NULL, K, bs, window);
                for (int r = 0; r < nr; r++) {
                    for (int j = ranges[r][0]; j < ranges[r][1]; j++) {
                        const real *kj = k + off + (size_t)j * C, *vj = v + off + (size_t)j * C;
                        real s = 0, dp = 0;
                        for (int d = 0; d < HD; d++) { s += qt[d] * kj[d]; dp += dot[d] * vj[d]; }
                        real p = exp(s * scale - l);
                        real ds = p * (dp - Dt) * scale;
                        real *dkj = dk + off + (size_t)j * C, *dvj = dv + off + (size_t)j * C;
                        for (int d = 0; d < HD; d++) {
                            dqt[d] += ds * kj[d];
                            dkj[d] += ds * qt[d];
                            dvj[d] += p * dot[d];
                        }
                    }
                }
            }
            free(ranges);
        }
    }
}

// gu (N, 2F): gate | up -> h (N, F) = silu(gate) * up
void swiglu_forward(real *h, const real *gu, int N, int F) {
    for (int n = 0; n < N; n++) {
        for (int f = 0; f < F; f++) { h[(size_t)n * F + f] = silu(gu[(size_t)n * 2 * F + f]) * gu[(size_t)n * 2 * F + F + f]; }
    }
}

void swiglu_backward(real *dgu, const real *dh, const real *gu, int N, int F) {
    for (int n = 0; n < N; n++) {
        for (int f = 0; f < F; f++) {
            real g = gu[(size_t)n * 2 * F + f], u = gu[(size_t)n * 2 * F + F + f], d = dh[(size_t)n * F + f];
            real sg = 1 / (1 + exp(-g));
            dgu[(size_t)n * 2 * F + f] += d * u * sg * (1 + g * (1 - sg));
            dgu[(size_t)n * 2 * F + F + f] += d * g * sg;
        }
    }
}

// logits (N, V) -> probs (N, V), losses (N); rows with target < 0 are ignored (loss 0).
void crossentropy_forward(real *probs, real *losses, const real *logits, const int *targets, int N, int V) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const real *x = logits + (size_t)n * V;
        real *p = probs + (size_t)n * V;
        real mx = -INFINITY, sum = 0;
        for (int i = 0; i < V; i++) { if (x[i] > mx) { mx = x[i]; } }
        for (int i = 0; i < V; i++) { p[i] = exp(x[i] - mx); sum += p[i]; }
        for (int i = 0; i < V; i++) { p[i] /= sum; }
        losses[n] = targets[n] >= 0 ? -(x[targets[n]] - mx - log(sum)) : 0;
    }
}

// dlogits = (probs - onehot) * dloss, dloss = d(total loss)/d(row loss)
void crossentropy_backward(real *dlogits, const real *probs, const int *targets, real dloss, int N, int V) {
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < V; i++) {
            real ind = (i == targets[n]) ? 1 : 0;
            dlogits[(size_t)n * V + i] = targets[n] >= 0 ? (probs[(size_t)n * V + i] - ind) * dloss : 0;
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The model

typedef struct {
    real *resid;             // (L+1, N, C): residual stream entering each layer; [L] is the final one
    real *ln1, *ln1_rstd;    // (L, N, C), (L, N)
    real *qkv;               // (L, N, 3C)
    real *q, *k, *v;         // (L, N, C): split of qkv (k before the key conv)
    real *kc;                // (L, N, C): k after the key conv (== k when W = 0)
    real *qr, *kr;           // (L, N, C): q and kc after RoPE, what attention sees
    real *lse;               // (L, B, NH, T)
    int *sel;                // (L, B, NH, T, K): MoBA selections (MoBA layers only)
    real *atty;              // (L, N, C)
    real *resid2;            // (L, N, C): after the attention residual
    real *ln2, *ln2_rstd;    // (L, N, C), (L, N)
    real *fc;                // (L, N, 2F): gate | up
    real *fch;               // (L, N, F)
    real *lnf, *lnf_rstd;    // (N, C), (N)
    real *logits, *probs;    // (N, V)
    real *losses;            // (N)
} Activations;

// Gradients of one layer's activations, reused layer after layer and step after step.
typedef struct {
    real *dlogits;                    // (N, V)
    real *dresid, *dln;               // (N, C): the residual stream's gradient, a norm output's
    real *dqkv;                       // (N, 3C)
    real *dq, *dk, *dv, *dkc, *dqr, *dkr, *datty;  // (N, C)
    real *dfc, *dfch;                 // (N, 2F), (N, F)
} GradScratch;

typedef struct {
    ModelConfig cfg;
    size_t sizes[NUM_PARAM_TENSORS], num_params;
    real *params, *grads;    // contiguous, layout of llmc/config.h
    real *p[NUM_PARAM_TENSORS], *g[NUM_PARAM_TENSORS];
    real *adam_m, *adam_v;   // allocated on the first update
    int B, T;                // activation capacity (allocated on the first forward)
    int cur_B, cur_T;        // shape of the last forward
    Activations a;
    GradScratch gs;          // allocated on the first backward, at the activation capacity
    int *inputs, *targets;   // copies of the last batch
    real mean_loss;          // of the last forward with targets; -1 without
    int loss_count;          // targets >= 0 in the last forward
} Model;

static void point_tensors(real *base, real *ptrs[NUM_PARAM_TENSORS], const size_t sizes[NUM_PARAM_TENSORS]) {
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) { ptrs[i] = base; base += sizes[i]; }
}

void model_init(Model *m, const ModelConfig *cfg, uint64_t seed) {
    memset(m, 0, sizeof(*m));
    config_validate(cfg);
    m->cfg = *cfg;
    param_sizes(cfg, m->sizes);
    m->num_params = param_count(cfg);
    m->params = (real *)calloc_check(m->num_params, sizeof(real));
    m->grads = (real *)calloc_check(m->num_params, sizeof(real));
    point_tensors(m->params, m->p, m->sizes);
    point_tensors(m->grads, m->g, m->sizes);
    float *init = (float *)malloc_check(m->num_params * sizeof(float));
    params_init(init, cfg, seed);
    for (size_t i = 0; i < m->num_params; i++) { m->params[i] = init[i]; }
    free(init);
    m->mean_loss = -1;
}

static void activations_alloc(Model *m, int B, int T) {
    const ModelConfig *c = &m->cfg;
    size_t L = c->n_layer, N = (size_t)B * T, C = c->d_model, F = c->ffn, V = c->vocab_size, K = c->moba_topk;
    Activations *a = &m->a;
    a->resid = (real *)calloc_check((L + 1) * N * C, sizeof(real));
    a->ln1 = (real *)calloc_check(L * N * C, sizeof(real));
    a->ln1_rstd = (real *)calloc_check(L * N, sizeof(real));
    a->qkv = (real *)calloc_check(L * N * 3 * C, sizeof(real));
    a->q = (real *)calloc_check(L * N * C, sizeof(real));
    a->k = (real *)calloc_check(L * N * C, sizeof(real));
    a->v = (real *)calloc_check(L * N * C, sizeof(real));
    a->kc = (real *)calloc_check(L * N * C, sizeof(real));
    a->qr = (real *)calloc_check(L * N * C, sizeof(real));
    a->kr = (real *)calloc_check(L * N * C, sizeof(real));
    a->lse = (real *)calloc_check(L * N * c->n_head, sizeof(real));
    a->sel = (int *)calloc_check(c->attn == ATTN_MOBA ? L * N * c->n_head * K : 1, sizeof(int));
    a->atty = (real *)calloc_check(L * N * C, sizeof(real));
    a->resid2 = (real *)calloc_check(L * N * C, sizeof(real));
    a->ln2 = (real *)calloc_check(L * N * C, sizeof(real));
    a->ln2_rstd = (real *)calloc_check(L * N, sizeof(real));
    a->fc = (real *)calloc_check(L * N * 2 * F, sizeof(real));
    a->fch = (real *)calloc_check(L * N * F, sizeof(real));
    a->lnf = (real *)calloc_check(N * C, sizeof(real));
    a->lnf_rstd = (real *)calloc_check(N, sizeof(real));
    a->logits = (real *)calloc_check(N * V, sizeof(real));
    a->probs = (real *)calloc_check(N * V, sizeof(real));
    a->losses = (real *)calloc_check(N, sizeof(real));
    m->inputs = (int *)calloc_check(N, sizeof(int));
    m->targets = (int *)calloc_check(N, sizeof(int));
    m->B = B; m->T = T;
}

static void activations_free(Activations *a) {
    real *bufs[] = {a->resid, a->ln1, a->ln1_rstd, a->qkv, a->q, a->k, a->v, a->kc, a->qr, a->kr, a->lse, a->atty,
                    a->resid2, a->ln2, a->ln2_rstd, a->fc, a->fch, a->lnf, a->lnf_rstd, a->logits, a->probs, a->losses};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) { free(bufs[i]); }
    free(a->sel);
}

static void grad_scratch_alloc(GradScratch *g, size_t N, size_t C, size_t F, size_t V) {
    g->dlogits = (real *)calloc_check(N * V, sizeof(real));
    g->dqkv = (real *)calloc_check(N * 3 * C, sizeof(real));
    g->dfc = (real *)calloc_check(N * 2 * F, sizeof(real));
    g->dfch = (real *)calloc_check(N * F, sizeof(real));
    real **nc[] = {&g->dresid, &g->dln, &g->dq, &g->dk, &g->dv, &g->dkc, &g->dqr, &g->dkr, &g->datty};
    for (size_t i = 0; i < sizeof(nc) / sizeof(nc[0]); i++) { *nc[i] = (real *)calloc_check(N * C, sizeof(real)); }
}

static void grad_scratch_free(GradScratch *g) {
    real *bufs[] = {g->dlogits, g->dresid, g->dln, g->dqkv, g->dq, g->dk, g->dv, g->dkc, g->dqr, g->dkr, g->datty, g->dfc, g->dfch};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) { free(bufs[i]); }
    memset(g, 0, sizeof(*g));
}

// Frees everything sized by the batch (activations, batch copies, gradient scratch); the next forward
// allocates them again at its own shape.
void model_release_activations(Model *m) {
    if (m->a.resid == NULL) { return; }
    activations_free(&m->a);
    memset(&m->a, 0, sizeof(m->a));
    free(m->inputs); free(m->targets);
    grad_scratch_free(&m->gs);
}

// Makes the activations hold a B x T forward (model_forward allocates only on its first call): the
// evaluation's prefills and scoring batches of varying shapes.
void model_reserve(Model *m, int B, int T) {
    if (m->a.resid && (size_t)m->B * m->T >= (size_t)B * T) { return; }
    model_release_activations(m);
    activations_alloc(m, B, T);
}

// Activations are laid out for (B, T) = the capacity; a smaller batch uses a prefix of each layer's slab.
void model_forward(Model *m, const int *inputs, const int *targets, int B, int T) {
    const ModelConfig *c = &m->cfg;
    config_check_seq_len(c, T);
    if (m->a.resid == NULL) { activations_alloc(m, B, T); }
    if ((size_t)B * T > (size_t)m->B * m->T) { die("batch %dx%d exceeds the model's allocated %dx%d", B, T, m->B, m->T); }
    int L = c->n_layer, C = c->d_model, NH = c->n_head, HD = C / NH, F = c->ffn, V = c->vocab_size, W = c->kconv, K = c->moba_topk;
    size_t N = (size_t)B * T, NC = N * C;
    for (size_t n = 0; n < N; n++) {
        if (inputs[n] < 0 || inputs[n] >= V) { die("input token %d at position %zu is outside the vocabulary [0, %d)", inputs[n], n, V); }
        if (targets && targets[n] >= V) { die("target token %d at position %zu is outside the vocabulary [0, %d)", targets[n], n, V); }
    }
    m->cur_B = B; m->cur_T = T;
    memcpy(m->inputs, inputs, N * sizeof(int));
    if (targets) { memcpy(m->targets, targets, N * sizeof(int)); }
    Activations *a = &m->a;
    size_t cap = (size_t)m->B * m->T;  // per-layer slab stride
    encoder_forward(a->resid, inputs, m->p[P_WTE], (int)N, C);
    for (int l = 0; l < L; l++) {
        real *x = a->resid + l * cap * C;
        real *ln1 = a->ln1 + l * cap * C, *ln1r = a->ln1_rstd + l * cap;
        real *qkv = a->qkv + l * cap * 3 * C, *q = a->q + l * cap * C, *k = a->k + l * cap * C, *v = a->v + l * cap * C;
        real *kc = a->kc + l * cap * C, *qr = a->qr + l * cap * C, *kr = a->kr + l * cap * C;
        real *lse = a->lse + l * cap * NH, *atty = a->atty + l * cap * C, *x2 = a->resid2 + l * cap * C;
        int *sel = layer_is_moba(c, l) ? a->sel + l * cap * NH * K : NULL;
        real *ln2 = a->ln2 + l * cap * C, *ln2r = a->ln2_rstd + l * cap;
        real *fc = a->fc + l * cap * 2 * F, *fch = a->fch + l * cap * F;
        real *xout = a->resid + (l + 1) * cap * C;

        rmsnorm_forward(ln1, ln1r, x, m->p[P_LN1W] + (size_t)l * C, (int)N, C);
        matmul_forward(qkv, ln1, m->p[P_WQKV] + (size_t)l * 3 * C * C, (int)N, C, 3 * C);
        for (size_t n = 0; n < N; n++) {
            memcpy(q + n * C, qkv + n * 3 * C, C * sizeof(real));
            memcpy(k + n * C, qkv + n * 3 * C + C, C * sizeof(real));
            memcpy(v + n * C, qkv + n * 3 * C + 2 * C, C * sizeof(real));
        }
        int slab = kconv_slab(c, l);
        if (slab >= 0) { kconv_forward(kc, k, m->p[P_KCONVW] + (size_t)slab * C * W, B, T, C, W); }
        else { memcpy(kc, k, NC * sizeof(real)); }
        if (layer_has_rope(c, l)) {
            rope_apply(qr, q, B, T, NH, HD, c->rope_theta, +1);
            rope_apply(kr, kc, B, T, NH, HD, c->rope_theta, +1);
        } else {
            memcpy(qr, q, NC * sizeof(real));
            memcpy(kr, kc, NC * sizeof(real));
        }
        attention_forward(atty, lse, sel, qr, kr, v, B, T, NH, HD, c->moba_block, K, layer_window(c, l));
        matmul_forward(x2, atty, m->p[P_WO] + (size_t)l * C * C, (int)N, C, C);
        for (size_t i = 0; i < NC; i++) { x2[i] += x[i]; }
        rmsnorm_forward(ln2, ln2r, x2, m->p[P_LN2W] + (size_t)l * C, (int)N, C);
        matmul_forward(fc, ln2, m->p[P_WFC] + (size_t)l * 2 * F * C, (int)N, C, 2 * F);
        swiglu_forward(fch, fc, (int)N, F);
        matmul_forward(xout, fch, m->p[P_WPROJ] + (size_t)l * C * F, (int)N, F, C);
        for (size_t i = 0; i < NC; i++) { xout[i] += x2[i]; }
    }
    rmsnorm_forward(a->lnf, a->lnf_rstd, a->resid + L * cap * C, m->p[P_LNFW], (int)N, C);
    matmul_forward(a->logits, a->lnf, m->p[P_WLM], (int)N, C, V);
    if (targets) {
        crossentropy_forward(a->probs, a->losses, a->logits, targets, (int)N, V);
        real total = 0;
        int count = 0;
        for (size_t n = 0; n < N; n++) { if (targets[n] >= 0) { total += a->losses[n]; count++; } }
        m->loss_count = count;
        m->mean_loss = count ? total / count : 0;
    } else {
        m->mean_loss = -1;
    }
}

void model_zero_grad(Model *m) { memset(m->grads, 0, m->num_params * sizeof(real)); }

// Accumulates d(loss_scale * mean loss)/d(params) into m->grads (loss_scale = 1/grad_accum_steps).
void model_backward(Model *m, real loss_scale) {
    if (m->mean_loss < 0) { die("model_backward called without a forward pass with targets"); }
    const ModelConfig *c = &m->cfg;
    int B = m->cur_B, T = m->cur_T;
    int L = c->n_layer, C = c->d_model, NH = c->n_head, HD = C / NH, F = c->ffn, V = c->vocab_size, W = c->kconv, K = c->moba_topk;
    size_t N = (size_t)B * T, NC = N * C, cap = (size_t)m->B * m->T;
    Activations *a = &m->a;
    if (m->gs.dlogits == NULL) { grad_scratch_alloc(&m->gs, cap, C, F, V); }
    GradScratch *g = &m->gs;
    real *dlogits = g->dlogits, *dresid = g->dresid, *dln = g->dln, *dqkv = g->dqkv, *dq = g->dq, *dk = g->dk;
    real *dv = g->dv, *dkc = g->dkc, *dqr = g->dqr, *dkr = g->dkr, *datty = g->datty, *dfc = g->dfc, *dfch = g->dfch;
    memset(dresid, 0, NC * sizeof(real));  // the LM head's and final norm's backward accumulate into these
    memset(dln, 0, NC * sizeof(real));

    crossentropy_backward(dlogits, a->probs, m->targets, loss_scale / (m->loss_count ? m->loss_count : 1), (int)N, V);
    matmul_backward(dln, m->g[P_WLM], dlogits, a->lnf, m->p[P_WLM], (int)N, C, V);
    rmsnorm_backward(dresid, m->g[P_LNFW], dln, a->resid + L * cap * C, m->p[P_LNFW], a->lnf_rstd, (int)N, C);
    for (int l = L - 1; l >= 0; l--) {
        real *x = a->resid + l * cap * C;
        real *ln1 = a->ln1 + l * cap * C, *ln1r = a->ln1_rstd + l * cap;
        real *k = a->k + l * cap * C, *v = a->v + l * cap * C;
        real *qr = a->qr + l * cap * C, *kr = a->kr + l * cap * C;
        real *lse = a->lse + l * cap * NH, *atty = a->atty + l * cap * C, *x2 = a->resid2 + l * cap * C;
        int *sel = layer_is_moba(c, l) ? a->sel + l * cap * NH * K : NULL;
        real *ln2 = a->ln2 + l * cap * C, *ln2r = a->ln2_rstd + l * cap;
        real *fc = a->fc + l * cap * 2 * F, *fch = a->fch + l * cap * F;
        // MLP: dresid holds d(xout); it flows unchanged into d(x2) and through the MLP branch
        memset(dfch, 0, N * F * sizeof(real)); memset(dfc, 0, N * 2 * F * sizeof(real)); memset(dln, 0, NC * sizeof(real));
        matmul_backward(dfch, m->g[P_WPROJ] + (size_t)l * C * F, dresid, fch, m->p[P_WPROJ] + (size_t)l * C * F, (int)N, F, C);
        swiglu_backward(dfc, dfch, fc, (int)N, F);
        matmul_backward(dln, m->g[P_WFC] + (size_t)l * 2 * F * C, dfc, ln2, m->p[P_WFC] + (size_t)l * 2 * F * C, (int)N, C, 2 * F);
        rmsnorm_backward(dresid, m->g[P_LN2W] + (size_t)l * C, dln, x2, m->p[P_LN2W] + (size_t)l * C, ln2r, (int)N, C);
        // attention: dresid now holds d(x2)
        memset(datty, 0, NC * sizeof(real));
        matmul_backward(datty, m->g[P_WO] + (size_t)l * C * C, dresid, atty, m->p[P_WO] + (size_t)l * C * C, (int)N, C, C);
        memset(dqr, 0, NC * sizeof(real)); memset(dkr, 0, NC * sizeof(real)); memset(dv, 0, NC * sizeof(real));
        attention_backward(dqr, dkr, dv, datty, qr, kr, v, atty, lse, sel, B, T, NH, HD, c->moba_block, K, layer_window(c, l));
        if (layer_has_rope(c, l)) {
            rope_apply(dq, dqr, B, T, NH, HD, c->rope_theta, -1);
            rope_apply(dkc, dkr, B, T, NH, HD, c->rope_theta, -1);
        } else {
            memcpy(dq, dqr, NC * sizeof(real));
            memcpy(dkc, dkr, NC * sizeof(real));
        }
        int slab = kconv_slab(c, l);
        if (slab >= 0) {
            memset(dk, 0, NC * sizeof(real));
            kconv_backward(dk, m->g[P_KCONVW] + (size_t)slab * C * W, dkc, k, m->p[P_KCONVW] + (size_t)slab * C * W, B, T, C, W);
        } else {
            memcpy(dk, dkc, NC * sizeof(real));
        }
        for (size_t n = 0; n < N; n++) {
            memcpy(dqkv + n * 3 * C, dq + n * C, C * sizeof(real));
            memcpy(dqkv + n * 3 * C + C, dk + n * C, C * sizeof(real));
            memcpy(dqkv + n * 3 * C + 2 * C, dv + n * C, C * sizeof(real));
        }
        memset(dln, 0, NC * sizeof(real));
        matmul_backward(dln, m->g[P_WQKV] + (size_t)l * 3 * C * C, dqkv, ln1, m->p[P_WQKV] + (size_t)l * 3 * C * C, (int)N, C, 3 * C);
        rmsnorm_backward(dresid, m->g[P_LN1W] + (size_t)l * C, dln, x, m->p[P_LN1W] + (size_t)l * C, ln1r, (int)N, C);
    }
    encoder_backward(m->g[P_WTE], dresid, m->inputs, (int)N, C);
}

real model_grad_norm(const Model *m) {
    double ss = 0;
    for (size_t i = 0; i < m->num_params; i++) { ss += (double)m->grads[i] * m->grads[i]; }
    return (real)sqrt(ss);
}

typedef struct { float lr, beta1, beta2, eps, weight_decay, grad_clip; } AdamWConfig;

// One AdamW step (decoupled weight decay on matrices only) after global-norm clipping; t counts from 1.
// Returns the gradient norm before clipping. A non-finite norm changes nothing (the step is skipped).
real model_update(Model *m, const AdamWConfig *o, float lr, int t) {
    if (m->adam_m == NULL) {
        m->adam_m = (real *)calloc_check(m->num_params, sizeof(real));
        m->adam_v = (real *)calloc_check(m->num_params, sizeof(real));
    }
    real norm = model_grad_norm(m);
    if (!isfinite(norm)) { return norm; }
    real gscale = (o->grad_clip > 0 && norm > o->grad_clip) ? o->grad_clip / norm : 1;
    real bc1 = 1 - pow((real)o->beta1, (real)t), bc2 = 1 - pow((real)o->beta2, (real)t);
    size_t i = 0;
    for (int tensor = 0; tensor < NUM_PARAM_TENSORS; tensor++) {
        real wd = param_is_matrix[tensor] ? o->weight_decay : 0;
        for (size_t end = i + m->sizes[tensor]; i < end; i++) {
            real g = m->grads[i] * gscale;
            m->adam_m[i] = o->beta1 * m->adam_m[i] + (1 - o->beta1) * g;
            m->adam_v[i] = o->beta2 * m->adam_v[i] + (1 - o->beta2) * g * g;
            real mhat = m->adam_m[i] / bc1, vhat = m->adam_v[i] / bc2;
            m->params[i] -= lr * (mhat / (sqrt(vhat) + o->eps) + wd * m->params[i]);
        }
    }
    return norm;
}

void model_free(Model *m) {
    free(m->params); free(m->grads); free(m->adam_m); free(m->adam_v);
    model_release_activations(m);
}

// ---------------------------------------------------------------------------------------------------
// Checkpoints and debug state (formats in llmc/checkpoint.h and doc/formats.md). Files always hold fp32.

static float *to_f32(const real *x, size_t n) {
    float *out = (float *)malloc_check(n * sizeof(float));
    for (size_t i = 0; i < n; i++) { out[i] = (float)x[i]; }
    return out;
}

static void from_f32(real *dst, const float *src, size_t n) { for (size_t i = 0; i < n; i++) { dst[i] = src[i]; } }

void model_save_checkpoint(const Model *m, const char *path, CheckpointHeader h) {
    h.magic = CKPT_MAGIC; h.version = CKPT_VERSION; h.header_bytes = CKPT_HEADER_BYTES;
    h.cfg = m->cfg; h.num_params = m->num_params;
    h.flags = m->adam_m ? CKPT_HAS_OPTIMIZER : 0;
    float *p = to_f32(m->params, m->num_params);
    float *mm = m->adam_m ? to_f32(m->adam_m, m->num_params) : NULL;
    float *vv = m->adam_v ? to_f32(m->adam_v, m->num_params) : NULL;
    checkpoint_write(path, &h, p, mm, vv);
    free(p); free(mm); free(vv);
}

// Loads params (and optimizer state when want_optimizer and present); returns the header.
CheckpointHeader model_load_checkpoint(Model *m, const char *path, int want_optimizer) {
    CheckpointHeader h;
    FILE *f = checkpoint_open(path, &h);
    checkpoint_check_config(path, &h, &m->cfg);
    size_t P = m->num_params;
    float *p = (float *)malloc_check(P * sizeof(float));
    int load_opt = want_optimizer && (h.flags & CKPT_HAS_OPTIMIZER);
    float *mm = load_opt ? (float *)malloc_check(P * sizeof(float)) : NULL;
    float *vv = load_opt ? (float *)malloc_check(P * sizeof(float)) : NULL;
    checkpoint_read_arrays(f, path, &h, p, mm, vv);
    from_f32(m->params, p, P);
    if (load_opt) {
        if (!m->adam_m) { m->adam_m = (real *)calloc_check(P, sizeof(real)); m->adam_v = (real *)calloc_check(P, sizeof(real)); }
        from_f32(m->adam_m, mm, P); from_f32(m->adam_v, vv, P);
    }
    free(p); free(mm); free(vv);
    return h;
}

static void write_reals(AtomicFile *af, const real *x, size_t n) {
    float *tmp = to_f32(x, n);
    atomic_write(af, tmp, sizeof(float), n);
    free(tmp);
}

static int num_moba_layers(const ModelConfig *c) {
    int n = 0;
    for (int l = 0; l < c->n_layer; l++) { n += layer_is_moba(c, l); }
    return n;
}

// The MoBA layers' selections of the last forward, in layer order, into dst.
static void copy_selections(const Model *m, int *dst) {
    const ModelConfig *c = &m->cfg;
    size_t layer_sel = (size_t)m->cur_B * m->cur_T * c->n_head * c->moba_topk, cap = (size_t)m->B * m->T * c->n_head * c->moba_topk;
    for (int l = 0; l < c->n_layer; l++) {
        if (layer_is_moba(c, l)) { memcpy(dst, m->a.sel + l * cap, layer_sel * sizeof(int)); dst += layer_sel; }
    }
}

// The reference the GPU test checks against: one batch's logits, loss, gradients, and the losses and
// MoBA selections of `steps` AdamW steps on that batch at a constant learning rate.
void write_debug_state(Model *m, const char *path, const int *inputs, const int *targets, int B, int T,
                       const AdamWConfig *o, int steps, uint64_t seed) {
    const ModelConfig *c = &m->cfg;
    size_t N = (size_t)B * T, V = c->vocab_size, P = m->num_params;
    DebugStateHeader h;
    memset(&h, 0, sizeof(h));
    h.magic = DEBUG_MAGIC; h.version = CKPT_VERSION; h.header_bytes = CKPT_HEADER_BYTES;
    h.cfg = *c; h.B = B; h.T = T; h.num_steps = steps; h.num_moba_layers = num_moba_layers(c);
    h.lr = o->lr; h.beta1 = o->beta1; h.beta2 = o->beta2; h.eps = o->eps; h.weight_decay = o->weight_decay; h.grad_clip = o->grad_clip;
    h.num_params = P; h.seed = seed;
    real *params0 = (real *)malloc_check(P * sizeof(real));
    memcpy(params0, m->params, P * sizeof(real));
    model_forward(m, inputs, targets, B, T);
    model_zero_grad(m);
    model_backward(m, 1);
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, &h, sizeof(h), 1);
    write_reals(&af, params0, P);
    atomic_write(&af, inputs, sizeof(int), N);
    atomic_write(&af, targets, sizeof(int), N);
    write_reals(&af, m->a.logits, N * V);
    float loss = (float)m->mean_loss;
    atomic_write(&af, &loss, sizeof(float), 1);
    write_reals(&af, m->grads, P);
    float *losses = (float *)malloc_check((steps > 0 ? steps : 1) * sizeof(float));
    size_t layer_sel = N * c->n_head * c->moba_topk, set_sel = (size_t)h.num_moba_layers * layer_sel;
    int *sel_copy = (int *)malloc_check((set_sel ? set_sel : 1) * debug_state_sel_sets(&h) * sizeof(int));
    // per step: the forward (step 0's, and its gradients, are the ones above), its MoBA selections into
    // set s, its loss, the update
    copy_selections(m, sel_copy);
    for (int s = 0; s < steps; s++) {
        if (s > 0) {
            model_forward(m, inputs, targets, B, T);
            copy_selections(m, sel_copy + s * set_sel);
            model_zero_grad(m);
            model_backward(m, 1);
        }
        losses[s] = (float)m->mean_loss;
        model_update(m, o, o->lr, s + 1);
    }
    atomic_write(&af, losses, sizeof(float), steps);
    atomic_write(&af, sel_copy, sizeof(int), set_sel * debug_state_sel_sets(&h));
    uint32_t end = END_MAGIC;
    atomic_write(&af, &end, sizeof(end), 1);
    atomic_close(&af);
    memcpy(m->params, params0, P * sizeof(real));
    free(params0); free(losses); free(sel_copy);
}

// ---------------------------------------------------------------------------------------------------
// Evaluation helpers

// Mean validation loss over `batches` batches from the start of the val loader, and the accuracy on
// synthetic recall positions (targets that must be retrieved from a STORE earlier in the document).
EvalResult evaluate(Model *m, DataLoader *val, int batches) {
    EvalResult r = {0, 0, 0, 0};
    int V = m->cfg.vocab_size;
    int *pred = (int *)malloc_check((size_t)val->B * val->T * sizeof(int));
    dataloader_reset(val);
    for (int i = 0; i < batches; i++) {
        dataloader_next_batch(val);
        model_forward(m, val->inputs, val->targets, val->B, val->T);
        r.loss += m->mean_loss / batches;
        for (size_t n = 0; n < (size_t)val->B * val->T; n++) {
            const real *lg = m->a.logits + n * V;
            int best = 0;
            for (int v = 1; v < V; v++) { if (lg[v] > lg[best]) { best = v; } }
            pred[n] = best;
        }
        eval_count_recall(&r, val->inputs, val->targets, pred, val->B, val->T);
    }
    free(pred);
    return r;
}

// Greedy continuation of a prompt (full recompute per token: the CPU path is for small models).
void generate(Model *m, int *tokens, int prompt_len, int total_len) {
    int V = m->cfg.vocab_size;
    for (int t = prompt_len; t < total_len; t++) {
        model_forward(m, tokens, NULL, 1, t);
        const real *lg = m->a.logits + (size_t)(t - 1) * V;
        int best = 0;
        for (int v = 1; v < V; v++) { if (lg[v] > lg[best]) { best = v; } }
        tokens[t] = best;
    }
}

int train_main(int argc, char **argv) {
    TrainArgs args = parse_args(argc, argv);
    ModelConfig cfg = config_from_args(&args);
    if (param_count(&cfg) > 50000000) {
        printf("note: %zu parameters on the CPU reference: setup takes minutes and a step far longer (ETA after the first step); "
               "the GPU trainer is ./train_gpt_moba_cu\n", param_count(&cfg));
    }
    ensure_synthetic_data(&args, &cfg);
    int grad_accum = args.total_batch / (args.B * args.T);
    AdamWConfig opt = {args.lr, 0.9f, 0.95f, 1e-8f, args.weight_decay, args.grad_clip};

    Model model;
    model_init(&model, &cfg, args.seed);
    config_print(&cfg, stdout);

    DataLoader train;
    dataloader_init(&train, args.train_pattern, args.B, args.T, 0, 1, 1, args.seed, (uint32_t)cfg.vocab_size);

    if (args.debug_state) {
        dataloader_next_batch(&train);
        write_debug_state(&model, args.debug_state, train.inputs, train.targets, args.B, args.T, &opt, args.debug_steps, args.seed);
        printf("wrote debug state %s (B %d, T %d, %d steps, loss %.6f)\n", args.debug_state, args.B, args.T, args.debug_steps, (double)model.mean_loss);
        dataloader_free(&train); model_free(&model);
        return 0;
    }
    DataLoader val;
    dataloader_init(&val, args.val_pattern, args.B, args.T, 0, 1, 0, args.seed, (uint32_t)cfg.vocab_size);

    RunState run;
    run_init(&run, &args, grad_accum, 1);
    if (args.init_ckpt) {
        model_load_checkpoint(&model, args.init_ckpt, 0);
        printf("initialised weights from %s\n", args.init_ckpt);
    }
    if (args.resume) {
        CheckpointHeader h = model_load_checkpoint(&model, run.resume_path, 1);
        run_resume(&run, &h, &train);
    }
    run_open_log(&run);

    printf("batch %d x %d tokens, grad accum %d, %d steps, %d threads\n", args.B, args.T, grad_accum, args.steps,
#ifdef _OPENMP
           omp_get_max_threads()
#else
           1
#endif
    );
    double t_start = now_seconds(), tokens_done = 0;
    int step = run.start_step;
    for (; step < args.steps; step++) {
        if (args.val_every > 0 && step % args.val_every == 0) {
            EvalResult e = evaluate(&model, &val, args.val_batches);
            run_log_eval(&run, step, &e, 0);
        }
        double t0 = now_seconds();
        model_zero_grad(&model);
        double loss = 0;
        for (int micro = 0; micro < grad_accum; micro++) {
            dataloader_next_batch(&train);
            model_forward(&model, train.inputs, train.targets, args.B, args.T);
            model_backward(&model, (real)1 / grad_accum);
            loss += model.mean_loss / grad_accum;
        }
        float lr = lr_at(&run.sched, step);
        real norm = isfinite(loss) ? model_update(&model, &opt, lr, step + 1) : (real)NAN;  // no update on NaN/Inf
        run_step_finite(&run, step + 1, loss, (double)norm);
        double dt = now_seconds() - t0;
        tokens_done += (double)args.total_batch;
        double elapsed = now_seconds() - t_start;
        double tok_s = tokens_done / elapsed;
        double eta = elapsed / (step + 1 - run.start_step) * (args.steps - step - 1);
        printf("step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %.0f ms | %.0f tok/s | ETA %.0fs\n",
               step + 1, args.steps, loss, lr, (double)norm, dt * 1000, tok_s, eta);
        fprintf(run.log, "step %d train_loss %.9g lr %.6e norm %.6g tok_s %.0f\n", step + 1, loss, lr, (double)norm, tok_s);
        fflush(run.log);
        int out_of_time = args.time_limit_min > 0 && elapsed > args.time_limit_min * 60;
        if (run_checkpoint_due(&run, step + 1, out_of_time)) {
            model_save_checkpoint(&model, run.ckpt_path, run_checkpoint_header(&run, step + 1, &train));
            run_checkpoint_written(&run, step + 1);
        }
        if (out_of_time) { printf("time limit of %g minutes reached; checkpoint saved\n", args.time_limit_min); step++; break; }
    }
    EvalResult e = evaluate(&model, &val, args.val_batches);
    run_log_eval(&run, step, &e, 1);
    int prompt, total;
    int *tokens = sample_prompt(&args, val.inputs, args.T, &prompt, &total);
    if (tokens) {
        generate(&model, tokens, prompt, total);
        print_sample(&args, tokens, prompt, total, cfg.vocab_size);
        free(tokens);
    }
    fclose(run.log);
    dataloader_free(&train); dataloader_free(&val); model_free(&model);
    return 0;
}

#ifndef TESTING
int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // progress shows line by line through a pipe (| tee) and in a killed run's log
    return train_main(argc, argv);
}
#endif

#endif // TRAIN_GPT_MOBA_C
