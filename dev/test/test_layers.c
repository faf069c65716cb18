/*
 Finite-difference gradient checks, in double precision (this file compiles the CPU reference with
 REAL=double), for every layer alone (sliding-window, dense and MoBA attention, the key convolution
 k + SiLU(conv(k)), RoPE, ...) and for the whole model in both layer layouts (paper: sliding-window RoPE
 layers interleaved with global NoPE layers; global: every layer global with RoPE) in dense, MoBA,
 MoBA+kconv and hybrid modes; plus the invariants (MoBA k >= #blocks is dense, own block always and
 future blocks never selected, ties to the lower index; a window >= T is dense and a window of 1 sees
 only its own key; causality of every layout).
 Each check perturbs inputs by +-eps, forms L = sum(G * out) for a fixed random G, and compares
 (L+ - L-)/2eps with the analytic gradient: relative L2 error over all checked elements must be < 1e-6.
*/
#define REAL double
#define TESTING
#include "train_gpt_moba.c"
#include "dev/test/testing.h"

static Rng test_rng;

static real *rand_buf(size_t n, double std) {
    real *x = (real *)malloc_check(n * sizeof(real));
    for (size_t i = 0; i < n; i++) { x[i] = rng_normal(&test_rng, 0.0f, (float)std); }
    return x;
}
static real *zero_buf(size_t n) { return (real *)calloc_check(n, sizeof(real)); }

// A layer under test: run() recomputes out from the current inputs.
typedef struct { void (*run)(void *ctx); void *ctx; real *out; size_t nout; const real *G; } Probe;

static double probe_loss(const Probe *p) {
    p->run(p->ctx);
    double L = 0;
    for (size_t i = 0; i < p->nout; i++) { L += (double)p->G[i] * p->out[i]; }
    return L;
}

// Compares the analytic gradient of x (n elements) with central differences at up to max_checks
// evenly spread elements (every element when n <= max_checks).
static void check_grad_sampled(const char *name, real *x, const real *analytic, size_t n, size_t max_checks, const Probe *p) {
    const double eps = 1e-6;
    double num2 = 0, den2 = 0;
    size_t checks = n < max_checks ? n : max_checks;
    for (size_t j = 0; j < checks; j++) {
        size_t i = j * n / checks;
        real saved = x[i];
        x[i] = saved + eps; double lp = probe_loss(p);
        x[i] = saved - eps; double lm = probe_loss(p);
        x[i] = saved;
        double fd = (lp - lm) / (2 * eps), d = fd - analytic[i];
        num2 += d * d; den2 += fd * fd;
    }
    double rel = sqrt(num2 / (den2 > 0 ? den2 : 1e-300));
    CHECK(rel < 1e-6 && den2 > 0, "%s: gradient rel L2 error %.3e (norm %.3e)", name, rel, sqrt(den2));
    printf("ok   grad %-36s rel err %.2e over %zu of %zu elements\n", name, rel, checks, n);
}

static void check_grad(const char *name, real *x, const real *analytic, size_t n, const Probe *p) {
    check_grad_sampled(name, x, analytic, n, n, p);
}

// ---- per-layer contexts -------------------------------------------------------------------------------
typedef struct { int B, T, C, NH, HD, W, V, N, F, bs, K, window; real *x, *w, *out, *rstd; int *tok, *sel; real *q, *k, *v, *lse; float theta; } LayerCtx;

static void run_rmsnorm(void *c) { LayerCtx *l = c; rmsnorm_forward(l->out, l->rstd, l->x, l->w, l->N, l->C); }
static void run_matmul(void *c) { LayerCtx *l = c; matmul_forward(l->out, l->x, l->w, l->N, l->C, l->V); }
static void run_kconv(void *c) { LayerCtx *l = c; kconv_forward(l->out, l->x, l->w, l->B, l->T, l->C, l->W); }
static void run_rope(void *c) { LayerCtx *l = c; rope_apply(l->out, l->x, l->B, l->T, l->NH, l->HD, l->theta, +1); }
static void run_swiglu(void *c) { LayerCtx *l = c; swiglu_forward(l->out, l->x, l->N, l->F); }
static void run_encoder(void *c) { LayerCtx *l = c; encoder_forward(l->out, l->tok, l->w, l->N, l->C); }
static void run_attention(void *c) {
    LayerCtx *l = c;
    attention_forward(l->out, l->lse, l->sel, l->q, l->k, l->v, l->B, l->T, l->NH, l->HD, l->bs, l->K, l->window);
}
static void run_xent(void *c) {
    LayerCtx *l = c;
    real *probs = zero_buf((size_t)l->N * l->V);
    crossentropy_forward(probs, l->out, l->x, l->tok, l->N, l->V);
    free(probs);
}

static void test_rmsnorm(void) {
    LayerCtx l = {.N = 6, .C = 10};
    l.x = rand_buf(60, 1); l.w = rand_buf(10, 1); l.out = zero_buf(60); l.rstd = zero_buf(6);
    real *G = rand_buf(60, 1), *dx = zero_buf(60), *dw = zero_buf(10);
    Probe p = {run_rmsnorm, &l, l.out, 60, G};
    run_rmsnorm(&l);
    rmsnorm_backward(dx, dw, G, l.x, l.w, l.rstd, l.N, l.C);
    check_grad("rmsnorm dx", l.x, dx, 60, &p);
    check_grad("rmsnorm dw", l.w, dw, 10, &p);
    free(l.x); free(l.w); free(l.out); free(l.rstd); free(G); free(dx); free(dw);
}

static void test_matmul(void) {
    LayerCtx l = {.N = 5, .C = 7, .V = 4};
    l.x = rand_buf(35, 1); l.w = rand_buf(28, 1); l.out = zero_buf(20);
    real *G = rand_buf(20, 1), *dx = zero_buf(35), *dw = zero_buf(28);
    Probe p = {run_matmul, &l, l.out, 20, G};
    matmul_backward(dx, dw, G, l.x, l.w, l.N, l.C, l.V);
    check_grad("matmul dinp", l.x, dx, 35, &p);
    check_grad("matmul dweight", l.w, dw, 28, &p);
    free(l.x); free(l.w); free(l.out); free(G); free(dx); free(dw);
}

static void test_kconv(int W) {
    LayerCtx l = {.B = 2, .T = 9, .C = 4, .W = W};
    size_t n = 2 * 9 * 4;
    l.x = rand_buf(n, 1); l.w = rand_buf(4 * W, 1); l.out = zero_buf(n);
    real *G = rand_buf(n, 1), *dx = zero_buf(n), *da = zero_buf(4 * W);
    Probe p = {run_kconv, &l, l.out, n, G};
    kconv_backward(dx, da, G, l.x, l.w, l.B, l.T, l.C, l.W);
    char name[64];
    snprintf(name, sizeof(name), "kconv W%d dinp", W); check_grad(name, l.x, dx, n, &p);
    snprintf(name, sizeof(name), "kconv W%d dweight", W); check_grad(name, l.w, da, 4 * W, &p);
    free(l.x); free(l.w); free(l.out); free(G); free(dx); free(da);
}

// The forward is the paper's formula: out_t = k_t + SiLU(sum_{w<W} a_w k_{t-w}), zero before t = 0.
static void test_kconv_formula(int W) {
    int B = 2, T = 7, C = 3;
    size_t n = (size_t)B * T * C;
    real *x = rand_buf(n, 1), *a = rand_buf((size_t)C * W, 1), *out = zero_buf(n);
    kconv_forward(out, x, a, B, T, C, W);
    double maxd = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            for (int c = 0; c < C; c++) {
                double z = 0;
                for (int w = 0; w < W; w++) { z += t - w >= 0 ? a[c * W + w] * x[((size_t)b * T + t - w) * C + c] : 0.0; }
                double expect = x[((size_t)b * T + t) * C + c] + z / (1.0 + exp(-z));
                maxd = fmax(maxd, fabs(expect - out[((size_t)b * T + t) * C + c]));
            }
        }
    }
    CHECK(maxd < 1e-12, "kconv W%d forward differs from k + SiLU(conv(k)) by %.3e", W, maxd);
    printf("ok   kconv W%d forward == k + SiLU(conv(k)): max diff %.1e\n", W, maxd);
    free(x); free(a); free(out);
}

static void test_rope(void) {
    LayerCtx l = {.B = 2, .T = 7, .NH = 2, .HD = 6, .theta = 10000.0f};
    size_t n = 2 * 7 * 12;
    l.x = rand_buf(n, 1); l.out = zero_buf(n);
    real *G = rand_buf(n, 1), *dx = zero_buf(n);
    Probe p = {run_rope, &l, l.out, n, G};
    rope_apply(dx, G, l.B, l.T, l.NH, l.HD, l.theta, -1);
    check_grad("rope dinp", l.x, dx, n, &p);
    free(l.x); free(l.out); free(G); free(dx);
}

static void test_swiglu(void) {
    LayerCtx l = {.N = 4, .F = 5};
    l.x = rand_buf(40, 1.5); l.out = zero_buf(20);
    real *G = rand_buf(20, 1), *dx = zero_buf(40);
    Probe p = {run_swiglu, &l, l.out, 20, G};
    swiglu_backward(dx, G, l.x, l.N, l.F);
    check_grad("swiglu dinp", l.x, dx, 40, &p);
    free(l.x); free(l.out); free(G); free(dx);
}

static void test_encoder(void) {
    LayerCtx l = {.N = 6, .C = 3};
    int tok[6] = {1, 4, 1, 0, 3, 4};
    l.tok = tok; l.w = rand_buf(15, 1); l.out = zero_buf(18);
    real *G = rand_buf(18, 1), *dw = zero_buf(15);
    Probe p = {run_encoder, &l, l.out, 18, G};
    encoder_backward(dw, G, tok, l.N, l.C);
    check_grad("embedding dwte", l.w, dw, 15, &p);
    free(l.w); free(l.out); free(G); free(dw);
}

static void test_crossentropy(void) {
    LayerCtx l = {.N = 5, .V = 7};
    int tok[5] = {3, 0, 6, -1, 2};  // -1 is ignored
    l.tok = tok; l.x = rand_buf(35, 2); l.out = zero_buf(5);
    real *G = zero_buf(5), *probs = zero_buf(35), *dx = zero_buf(35);
    for (int i = 0; i < 5; i++) { G[i] = 0.25; }  // the mean over the 4 counted rows
    Probe p = {run_xent, &l, l.out, 5, G};
    crossentropy_forward(probs, l.out, l.x, tok, l.N, l.V);
    crossentropy_backward(dx, probs, tok, 0.25, l.N, l.V);
    check_grad("lm head softmax + cross-entropy", l.x, dx, 35, &p);
    free(l.x); free(l.out); free(G); free(probs); free(dx);
}

// Attention alone; bs/K = 0 means dense, or sliding-window when window > 0.
static void test_attention(const char *name, int T, int bs, int K, int window) {
    LayerCtx l = {.B = 2, .T = T, .NH = 2, .HD = 4, .bs = bs, .K = K, .window = window};
    size_t n = (size_t)2 * T * 8;
    l.q = rand_buf(n, 1); l.k = rand_buf(n, 1); l.v = rand_buf(n, 1); l.out = zero_buf(n);
    l.lse = zero_buf((size_t)2 * 2 * T);
    l.sel = K ? (int *)calloc_check((size_t)2 * 2 * T * K, sizeof(int)) : NULL;
    real *G = rand_buf(n, 1), *dq = zero_buf(n), *dk = zero_buf(n), *dv = zero_buf(n);
    Probe p = {run_attention, &l, l.out, n, G};
    run_attention(&l);
    attention_backward(dq, dk, dv, G, l.q, l.k, l.v, l.out, l.lse, l.sel, l.B, l.T, l.NH, l.HD, bs, K, window);
    char nm[96];
    if (window == 1) {  // a softmax over one key does not depend on the score: dq = dk = 0 exactly
        int zero = 1;
        for (size_t i = 0; i < n; i++) { zero &= dq[i] == 0 && dk[i] == 0; }
        CHECK(zero, "%s: dq / dk not zero with a window of one key", name);
    } else {
        snprintf(nm, sizeof(nm), "%s dq", name); check_grad(nm, l.q, dq, n, &p);
        snprintf(nm, sizeof(nm), "%s dk", name); check_grad(nm, l.k, dk, n, &p);
    }
    snprintf(nm, sizeof(nm), "%s dv", name); check_grad(nm, l.v, dv, n, &p);
    free(l.q); free(l.k); free(l.v); free(l.out); free(l.lse); free(l.sel); free(G); free(dq); free(dk); free(dv);
}

// ---- whole model ------------------------------------------------------------------------------------
typedef struct { Model *m; int *inp, *tgt; int B, T; real loss; } ModelCtx;
static void run_model(void *c) { ModelCtx *x = c; model_forward(x->m, x->inp, x->tgt, x->B, x->T); x->loss = x->m->mean_loss; }

static void test_model(const char *name, ModelConfig cfg, int T) {
    Model m;
    model_init(&m, &cfg, 7);
    // larger random weights than the init so every path carries signal
    for (size_t i = 0; i < m.num_params; i++) { m.params[i] += rng_normal(&test_rng, 0.0f, 0.3f); }
    int B = 2;
    int *inp = (int *)malloc_check((size_t)B * T * sizeof(int)), *tgt = (int *)malloc_check((size_t)B * T * sizeof(int));
    for (int i = 0; i < B * T; i++) { inp[i] = (int)rng_below(&test_rng, cfg.vocab_size); tgt[i] = (int)rng_below(&test_rng, cfg.vocab_size); }
    ModelCtx x = {&m, inp, tgt, B, T, 0};
    real one = 1;
    Probe p = {run_model, &x, &x.loss, 1, &one};
    run_model(&x);
    model_zero_grad(&m);
    model_backward(&m, 1);
    real *analytic = (real *)malloc_check(m.num_params * sizeof(real));
    memcpy(analytic, m.grads, m.num_params * sizeof(real));
    for (int t = 0; t < NUM_PARAM_TENSORS; t++) {
        if (m.sizes[t] == 0) { continue; }
        char nm[96];
        snprintf(nm, sizeof(nm), "%s %s", name, param_names[t]);
        check_grad_sampled(nm, m.p[t], analytic + (m.p[t] - m.params), m.sizes[t], 512, &p);
    }
    free(analytic); free(inp); free(tgt); model_free(&m);
}

// ---- MoBA invariants --------------------------------------------------------------------------------
static void test_moba_selection_rules(void) {
    int T = 37, HD = 4, bs = 4, K = 3;
    real *q = rand_buf((size_t)T * HD, 1), *k = rand_buf((size_t)T * HD, 1);
    int *sel = (int *)calloc_check((size_t)T * K, sizeof(int));
    moba_gate_head(sel, q, k, T, HD, HD, bs, K);
    int own_ok = 1, future_ok = 1, sorted_ok = 1, count_ok = 1;
    for (int t = 0; t < T; t++) {
        int ob = t / bs, has_own = 0, n = 0;
        for (int i = 0; i < K; i++) {
            int s = sel[t * K + i];
            if (s < 0) { continue; }
            n++;
            has_own |= s == ob;
            if (s > ob) { future_ok = 0; }
            if (i > 0 && sel[t * K + i - 1] >= s) { sorted_ok = 0; }
        }
        own_ok &= has_own;
        count_ok &= n == (ob + 1 < K ? ob + 1 : K);
    }
    CHECK(own_ok, "own block not always selected");
    CHECK(future_ok, "a future block was selected");
    CHECK(sorted_ok, "selection not ascending");
    CHECK(count_ok, "wrong number of selected blocks");
    // the selected past blocks are the top-scoring ones: every unselected past block scores <= every selected one
    int topk_ok = 1;
    for (int t = 0; t < T; t++) {
        int ob = t / bs;
        double sc[16];
        for (int i = 0; i < ob; i++) {
            double s = 0;
            for (int d = 0; d < HD; d++) {
                double c = 0;
                int end = (i + 1) * bs < T ? (i + 1) * bs : T;
                for (int j = i * bs; j < end; j++) { c += k[j * HD + d]; }
                s += q[t * HD + d] * c / (end - i * bs);
            }
            sc[i] = s;
        }
        for (int i = 0; i < ob; i++) {
            int chosen = 0;
            for (int j = 0; j < K; j++) { chosen |= sel[t * K + j] == i; }
            for (int j = 0; j < ob && !chosen; j++) {
                int jchosen = 0;
                for (int u = 0; u < K; u++) { jchosen |= sel[t * K + u] == j; }
                if (jchosen && sc[j] < sc[i]) { topk_ok = 0; }
            }
        }
    }
    CHECK(topk_ok, "selected blocks are not the top-scoring past blocks");
    // ties: identical keys give identical centroids, so the lowest past indices must win
    for (size_t i = 0; i < (size_t)T * HD; i++) { k[i] = 0.5; }
    moba_gate_head(sel, q, k, T, HD, HD, bs, K);
    int tie_ok = 1;
    for (int t = 0; t < T; t++) {
        int ob = t / bs, expect = 0;
        for (int i = 0; i < K && sel[t * K + i] >= 0 && sel[t * K + i] != ob; i++) { tie_ok &= sel[t * K + i] == expect++; }
    }
    CHECK(tie_ok, "ties are not broken towards the lower block index");
    free(q); free(k); free(sel);
}

static void test_moba_all_blocks_is_dense(int T, int bs) {
    int B = 2, NH = 2, HD = 4, C = 8, nb = (T + bs - 1) / bs;
    size_t n = (size_t)B * T * C;
    real *q = rand_buf(n, 1), *k = rand_buf(n, 1), *v = rand_buf(n, 1);
    real *o1 = zero_buf(n), *o2 = zero_buf(n), *l1 = zero_buf((size_t)B * NH * T), *l2 = zero_buf((size_t)B * NH * T);
    int *sel = (int *)calloc_check((size_t)B * NH * T * nb, sizeof(int));
    attention_forward(o1, l1, NULL, q, k, v, B, T, NH, HD, bs, 1, 0);
    attention_forward(o2, l2, sel, q, k, v, B, T, NH, HD, bs, nb, 0);
    double maxd = 0;
    for (size_t i = 0; i < n; i++) { maxd = fmax(maxd, fabs(o1[i] - o2[i])); }
    CHECK(maxd < 1e-12, "MoBA with k >= #blocks differs from dense by %.3e (T %d, B %d)", maxd, T, bs);
    printf("ok   MoBA k=#blocks == dense (T %d, block %d): max diff %.1e\n", T, bs, maxd);
    free(q); free(k); free(v); free(o1); free(o2); free(l1); free(l2); free(sel);
}

// A window of at least T keys is dense causal attention, bit for bit; a window of 1 sees only its own
// key, so the output is v_t exactly and the log-sum-exp is q_t . k_t / sqrt(HD).
static void test_window_limits(int T) {
    int B = 2, NH = 2, HD = 4, C = 8;
    size_t n = (size_t)B * T * C, nl = (size_t)B * NH * T;
    real *q = rand_buf(n, 1), *k = rand_buf(n, 1), *v = rand_buf(n, 1);
    real *o1 = zero_buf(n), *o2 = zero_buf(n), *l1 = zero_buf(nl), *l2 = zero_buf(nl);
    attention_forward(o1, l1, NULL, q, k, v, B, T, NH, HD, 0, 1, 0);
    int same = 1;
    for (int window = T; window <= T + 5; window += 5) {
        attention_forward(o2, l2, NULL, q, k, v, B, T, NH, HD, 0, 1, window);
        same &= memcmp(o1, o2, n * sizeof(real)) == 0 && memcmp(l1, l2, nl * sizeof(real)) == 0;
    }
    CHECK(same, "sliding window >= T (%d) is not bit-identical to dense causal attention", T);
    attention_forward(o2, l2, NULL, q, k, v, B, T, NH, HD, 0, 1, 1);
    int own = memcmp(o2, v, n * sizeof(real)) == 0;
    double maxd = 0;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                size_t row = ((size_t)b * T + t) * C + (size_t)h * HD;
                double s = 0;
                for (int d = 0; d < HD; d++) { s += q[row + d] * k[row + d]; }
                maxd = fmax(maxd, fabs(s / sqrt((double)HD) - l2[((size_t)b * NH + h) * T + t]));
            }
        }
    }
    CHECK(own && maxd < 1e-12, "window 1: output is not v_t (%d) or lse differs by %.3e", own, maxd);
    printf("ok   window >= T == dense (bit-exact), window 1 == own key (T %d)\n", T);
    free(q); free(k); free(v); free(o1); free(o2); free(l1); free(l2);
}

// Changing the token at position p must leave every logit before p unchanged, bit for bit.
static void test_causality(const char *name, ModelConfig cfg) {
    Model m;
    model_init(&m, &cfg, 3);
    int T = 29;
    int tok[29], tok2[29];
    for (int i = 0; i < T; i++) { tok[i] = tok2[i] = (int)rng_below(&test_rng, cfg.vocab_size); }
    size_t V = cfg.vocab_size;
    real *before = zero_buf((size_t)T * V);
    model_forward(&m, tok, NULL, 1, T);
    memcpy(before, m.a.logits, (size_t)T * V * sizeof(real));
    int ok = 1;
    for (int p = 1; p < T; p += 5) {
        tok2[p] = (tok[p] + 1) % cfg.vocab_size;
        model_forward(&m, tok2, NULL, 1, T);
        for (size_t i = 0; i < (size_t)p * V; i++) { ok &= m.a.logits[i] == before[i]; }
        int changed = 0;
        for (size_t i = (size_t)p * V; i < (size_t)(p + 1) * V; i++) { changed |= m.a.logits[i] != before[i]; }
        ok &= changed;  // the changed position itself must see its own token
        tok2[p] = tok[p];
    }
    CHECK(ok, "%s: a future token changed an earlier output (or the own position did not change)", name);
    printf("ok   causality %s\n", name);
    free(before); model_free(&m);
}

int main(void) {
#ifdef _OPENMP
    omp_set_num_threads(1);  // thousands of tiny forwards: thread start-up would dominate
#endif
    rng_init(&test_rng, 2024);
    test_encoder();
    test_rmsnorm();
    test_matmul();
    test_kconv(3);
    test_kconv(5);
    test_kconv_formula(3);
    test_kconv_formula(5);
    test_rope();
    test_swiglu();
    test_crossentropy();
    test_attention("dense attention T13", 13, 0, 0, 0);
    test_attention("sliding window 1 T9", 9, 0, 0, 1);
    test_attention("sliding window 3 T13", 13, 0, 0, 3);
    test_attention("sliding window 5 T12", 12, 0, 0, 5);
    test_attention("sliding window 20 T13 (>= T)", 13, 0, 0, 20);
    test_attention("moba B4 k2 T13 (partial block)", 13, 4, 2, 0);
    test_attention("moba B4 k1 T16 (block-local)", 16, 4, 1, 0);
    test_attention("moba B2 k3 T11", 11, 2, 3, 0);
    test_attention("moba B8 k9 T20 (k >= #blocks)", 20, 8, 9, 0);
    test_attention("moba B1 k4 T9", 9, 1, 4, 0);

    // the paper layout (the test preset: layer 1 sliding window 8 + RoPE, layer 2 global NoPE)
    ModelConfig paper = preset_config("test");
    paper.swa_window = 5;  // shorter than T, so the window cuts
    ModelConfig p_dense = paper; p_dense.attn = ATTN_DENSE; p_dense.kconv = 0;
    ModelConfig p_moba = paper; p_moba.kconv = 0;
    ModelConfig p_moba_kconv5 = paper; p_moba_kconv5.kconv = 5;
    ModelConfig p_dense_kconv = paper; p_dense_kconv.attn = ATTN_DENSE;
    ModelConfig p_rope = paper; p_rope.global_nope = 0;
    ModelConfig p_hybrid = paper; p_hybrid.n_layer = 4; p_hybrid.n_dense_last = 1; p_hybrid.swa_window = 2;
    test_model("paper dense", p_dense, 11);
    test_model("paper moba (partial block)", p_moba, 11);
    test_model("paper moba+kconv3", paper, 11);
    test_model("paper moba+kconv5", p_moba_kconv5, 10);
    test_model("paper dense+kconv3", p_dense_kconv, 9);
    test_model("paper moba+kconv3 global RoPE", p_rope, 9);
    test_model("paper hybrid L4 window 2", p_hybrid, 10);
    // the all-global RoPE layout
    ModelConfig global = paper; global.layout = LAYOUT_GLOBAL; global.swa_window = 0; global.global_nope = 0;
    ModelConfig dense = global; dense.attn = ATTN_DENSE; dense.kconv = 0;
    ModelConfig moba = global; moba.kconv = 0;
    ModelConfig hybrid = global; hybrid.n_dense_last = 1;
    test_model("global dense", dense, 11);
    test_model("global moba", moba, 11);
    test_model("global moba+kconv3", global, 11);
    test_model("global hybrid", hybrid, 11);

    test_moba_selection_rules();
    test_moba_all_blocks_is_dense(23, 4);
    test_moba_all_blocks_is_dense(32, 8);
    test_window_limits(13);
    test_window_limits(32);
    test_causality("paper dense", p_dense);
    test_causality("paper moba+kconv3", paper);
    test_causality("paper moba+kconv5 hybrid L4", (ModelConfig){.vocab_size = 64, .n_layer = 4, .d_model = 16, .n_head = 2, .ffn = 40,
                                                       .max_seq_len = 256, .attn = ATTN_MOBA, .moba_block = 4, .moba_topk = 2,
                                                       .kconv = 5, .n_dense_last = 1, .rope_theta = 10000.0f,
                                                       .layout = LAYOUT_PAPER, .swa_window = 3, .global_nope = 1});
    test_causality("global dense", dense);
    test_causality("global moba+kconv3", global);
    return test_summary();
}
