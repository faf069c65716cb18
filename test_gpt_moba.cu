/*
 The CUDA trainer against the CPU reference: reads a debug state written by `./train_gpt_moba -D path`
 (layout in llmc/checkpoint.h), builds the GPU model with its parameters and checks, on its batch:
 - the MoBA selections of every MoBA layer against the CPU's. A GPU gate may differ from the CPU's only at
   a near-tie: then the blocks the two picked differently must score within a tolerance of each other
   (scores recomputed in double from the GPU's own q and k). With any difference, the logits and
   gradients below are computed with the CPU's selections forced, since attention over another block
   is a different function, not a rounding error.
 - logits (rel L2, max abs), loss, and every parameter tensor's gradient (rel L2 per tensor);
 - the losses of the stored AdamW steps on the same batch (constant lr, the header's hyperparameters);
 - the other modes: -R 2 with -z 1 gives the same gradients, bit-identical on a rerun.
 Device buffers are poisoned (NaN) before the checked pass, so anything the model forgets to write
 shows up. Prints one line per check and "N passed, N failed"; exits non-zero on a failure.
   usage: test_gpt_moba_cu <debug_state.bin>
*/
#define TESTING
#define MOBA_TEST_HOOKS  // GPT.sel_override: the CPU's selections replayed where the gates differ at near-ties
#include "train_gpt_moba.cu"
#include "dev/cuda/common.h"
#include "dev/test/testing.h"

#if defined(ENABLE_FP32)
// fp32 everywhere: only summation order and the fp32 exp/rsqrt differ from the CPU
// (measured on H100: logits and gradients rel L2 <= 8e-7, losses within 7e-6)
static const double TOL_LOGITS = 1e-5, TOL_LOSS = 1e-4, TOL_STEP_LOSS = 1e-4, TOL_GATE_TIE = 1e-4;
static const double TOL_GRAD[NUM_PARAM_TENSORS] = {1e-5, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5};
#else
// bf16 activations, weights and gradients: ~3 significant digits per rounding, compounded over layers
// (measured on H100: logits rel L2 <= 6.6e-3, gradients <= 7e-3, step losses within 3e-3)
static const double TOL_LOGITS = 2e-2, TOL_LOSS = 1e-2, TOL_STEP_LOSS = 1e-2, TOL_GATE_TIE = 2e-2;
// wte ln1w wqkv kconvw wo ln2w wfc wproj lnfw wlm
static const double TOL_GRAD[NUM_PARAM_TENSORS] = {2e-2, 3e-2, 3e-2, 3e-2, 3e-2, 3e-2, 2e-2, 2e-2, 2e-2, 2e-2};
#endif

typedef struct {
    DebugStateHeader h;
    std::vector<float> params, logits, grads, step_losses;
    std::vector<int> inputs, targets, sel;
    float loss;
} DebugState;

static DebugState read_debug_state(const char *path) {
    DebugState d;
    DebugStateLayout lay;
    FILE *f = debug_state_open(path, &d.h, &lay);
    size_t P = lay.P, N = lay.N, V = lay.V, nsel = lay.nsel;
    d.params.resize(P); d.inputs.resize(N); d.targets.resize(N); d.logits.resize(N * V); d.grads.resize(P);
    d.step_losses.resize(lay.steps); d.sel.resize(nsel);
    fread_check(d.params.data(), 4, P, f, path);
    fread_check(d.inputs.data(), 4, N, f, path);
    fread_check(d.targets.data(), 4, N, f, path);
    fread_check(d.logits.data(), 4, N * V, f, path);
    fread_check(&d.loss, 4, 1, f, path);
    fread_check(d.grads.data(), 4, P, f, path);
    fread_check(d.step_losses.data(), 4, lay.steps, f, path);
    fread_check(d.sel.data(), 4, nsel, f, path);
    fclose(f);
    return d;
}

// NaN over every activation and gradient buffer (gradients are then zeroed: they accumulate).
static void poison_model(GPT *m) {
    const ModelConfig *c = &m->cfg;
    Activations *a = &m->a;
    size_t L = c->n_layer, N = (size_t)m->B * m->T, C = c->d_model, F = c->ffn, V = c->vocab_size, NH = c->n_head, X = sizeof(floatX);
    size_t Lmlp = m->recompute >= 1 ? 1 : L, Lattn = m->recompute >= 2 ? 1 : L;
    struct { void *p; size_t bytes; } bufs[] = {
        {a->resid, (L + 1) * N * C * X}, {a->resid2, L * N * C * X}, {a->ln1, Lattn * N * C * X}, {a->ln2, Lattn * N * C * X},
        {a->ln1_rstd, L * N * 4}, {a->ln2_rstd, L * N * 4}, {a->qkv, Lattn * N * 3 * C * X}, {a->q, Lattn * N * C * X},
        {a->k, Lattn * N * C * X}, {a->v, Lattn * N * C * X}, {a->lse, L * N * NH * 4}, {a->atty, L * N * C * X},
        {a->fc, Lmlp * N * 2 * F * X}, {a->fch, Lmlp * N * F * X}, {a->lnf, N * C * X}, {a->lnf_rstd, N * 4},
        {a->logits, N * V * X}, {a->losses, N * 4}, {a->proj, N * C * X}, {a->dresid, N * C * X}, {a->dln, N * C * X},
        {a->datty, N * C * X}, {a->dq, N * C * X}, {a->dk, N * C * X}, {a->dv, N * C * X}, {a->dqkv, N * 3 * C * X},
        {a->dfc, N * 2 * F * X}, {a->dfch, N * F * X}};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) { poison(bufs[i].p, bufs[i].bytes); }
    gpt_zero_grad(m);
}

static std::vector<float> grads_host(const GPT *m) { return from_device(m->grads, m->num_params); }

// Spread of the scores of the blocks only one of GPU and CPU picked, relative to |q_t| max_i |c_i| (the
// size of a score before the cancellation between dimensions, so the scale rounding errors of q and k
// perturb scores at): at a near-tie these blocks score almost the same. 0 when the rows agree. Scores in
// double from the GPU's q and k.
static double gate_tie_gap(const std::vector<float> &q, const std::vector<float> &k, size_t bh, int T, int HD, int bs,
                           int t, const int *gpu, const int *cpu, int K) {
    int ob = t / bs;
    double qnorm = 0, cmax = 1e-30, lo = INFINITY, hi = -INFINITY;
    int only_gpu = 0, only_cpu = 0;
    const float *qt = &q[(bh * T + t) * HD];
    for (int d = 0; d < HD; d++) { qnorm += (double)qt[d] * qt[d]; }
    auto has = [K](const int *row, int b) { for (int i = 0; i < K; i++) { if (row[i] == b) { return true; } } return false; };
    for (int i = 0; i < ob; i++) {
        int start = i * bs, end = std::min(start + bs, T);
        double s = 0, cnorm = 0;
        for (int d = 0; d < HD; d++) {
            double cent = 0;
            for (int j = start; j < end; j++) { cent += k[(bh * T + j) * HD + d]; }
            cent /= end - start;
            s += qt[d] * cent;
            cnorm += cent * cent;
        }
        cmax = std::max(cmax, sqrt(cnorm));
        bool g = has(gpu, i), c = has(cpu, i);
        if (g != c) { lo = std::min(lo, s); hi = std::max(hi, s); only_gpu += g; only_cpu += c; }
    }
    if (only_gpu != only_cpu || has(gpu, ob) != has(cpu, ob)) { return INFINITY; }  // not a swap: a real bug
    return only_gpu ? (hi - lo) / (sqrt(qnorm) * cmax + 1e-30) : 0.0;
}

// Compares the gate of every MoBA layer with the CPU's; returns the number of differing rows.
static long check_selections(GPT *m, const DebugState &d) {
    const ModelConfig *c = &m->cfg;
    int B = d.h.B, T = d.h.T, NH = c->n_head, HD = c->d_model / NH, K = c->moba_topk;
    size_t rows = (size_t)B * NH * T;
    long total_diff = 0;
    for (int l = 0, i = 0; l < c->n_layer; l++) {
        if (!layer_is_moba(c, l)) { continue; }
        LayerView lv = layer_view(m, l);
        std::vector<int> gpu(rows * K);
        cudaCheck(cudaMemcpy(gpu.data(), lv.sel, gpu.size() * sizeof(int), cudaMemcpyDeviceToHost));
        const int *cpu = d.sel.data() + i * rows * K;
        std::vector<float> q = from_device(lv.q, (size_t)B * T * c->d_model), k = from_device(lv.k, (size_t)B * T * c->d_model);
        long diff = 0;
        double worst = 0;
        for (size_t r = 0; r < rows; r++) {
            if (memcmp(&gpu[r * K], cpu + r * K, K * sizeof(int)) == 0) { continue; }
            diff++;
            worst = std::max(worst, gate_tie_gap(q, k, r / T, T, HD, c->moba_block, (int)(r % T), &gpu[r * K], cpu + r * K, K));
        }
        printf("  gate layer %d: %.5f of %zu rows match the CPU (%ld differ, largest tie spread %.2e)\n", l,
               1.0 - (double)diff / rows, rows, diff, worst);
        CHECK(worst <= TOL_GATE_TIE, "layer %d: a selection differs beyond a near-tie (gap %.3e > %.1e)", l, worst, TOL_GATE_TIE);
        total_diff += diff;
        i++;
    }
    return total_diff;
}

static void check_grads(const char *what, const std::vector<float> &g, const DebugState &d, const GPT *m) {
    size_t off = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        size_t n = m->sizes[i];
        if (n > 0) {
            char name[64];
            snprintf(name, sizeof(name), "%s d%s", what, param_names[i]);
            std::vector<float> out(g.begin() + off, g.begin() + off + n), ref(d.grads.begin() + off, d.grads.begin() + off + n);
            double rel = compare(name, out, ref, TOL_GRAD[i]);
            CHECK(rel <= TOL_GRAD[i], "%s: rel L2 %.3e > %.1e", name, rel, TOL_GRAD[i]);
        }
        off += n;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) { die("usage: %s <debug_state.bin> (written by ./train_gpt_moba -D)", argv[0]); }
    DebugState d = read_debug_state(argv[1]);
    const ModelConfig *c = &d.h.cfg;
    int B = d.h.B, T = d.h.T, N = B * T, V = c->vocab_size;
    printf("debug state %s: B %d T %d, %s, HD %d, kconv %d, %d MoBA layers (block %d, top-k %d), %d steps, %s build\n",
           argv[1], B, T, c->attn == ATTN_MOBA ? "MoBA" : "dense", c->d_model / c->n_head, c->kconv,
           d.h.num_moba_layers, c->moba_block, c->moba_topk, d.h.num_steps, PRECISION_NAME);

    GPT m;
    gpt_init(&m, c, d.h.seed, 0, 0);
    gpt_set_params(&m, d.params.data(), NULL, NULL);
    gpt_forward(&m, d.inputs.data(), d.targets.data(), B, T);  // allocates
    poison_model(&m);
    gpt_forward(&m, d.inputs.data(), d.targets.data(), B, T);
    long diff = check_selections(&m, d);
    // the CPU's selections of every step (set s: step s's forward), replayed where the gates differ at near-ties
    int *forced = NULL;
    size_t set_sel = d.sel.size() / debug_state_sel_sets(&d.h);
    if (d.h.num_moba_layers > 0) {
        cudaCheck(cudaMalloc(&forced, d.sel.size() * sizeof(int)));
        cudaCheck(cudaMemcpy(forced, d.sel.data(), d.sel.size() * sizeof(int), cudaMemcpyHostToDevice));
    }
    if (diff > 0) {
        printf("  %ld gate rows differ at near-ties: checking logits and gradients with the CPU's selections\n", diff);
        m.sel_override = forced;
        poison_model(&m);
        gpt_forward(&m, d.inputs.data(), d.targets.data(), B, T);
    }
    double rel = compare("logits", from_device(m.a.logits, (size_t)N * V), d.logits, TOL_LOGITS);
    CHECK(rel <= TOL_LOGITS, "logits rel L2 %.3e > %.1e", rel, TOL_LOGITS);
    double dl = fabs((double)m.mean_loss - d.loss);
    printf("  loss           gpu %.6f  cpu %.6f  diff %.2e  %s\n", m.mean_loss, d.loss, dl, dl <= TOL_LOSS ? "OK" : "FAIL");
    CHECK(dl <= TOL_LOSS, "loss differs by %.3e > %.1e", dl, TOL_LOSS);
    // the trainer's path: the training forward writes the logits' gradient, the backward takes it from there
    poison_model(&m);
    gpt_forward_train(&m, d.inputs.data(), d.targets.data(), B, T, 1.0f);
    gpt_backward(&m, 1.0f);
    std::vector<float> g0 = grads_host(&m);
    check_grads("R0", g0, d, &m);

    // AdamW steps on the same batch with the CPU's gate of each step (a bf16 near-tie that flips a block
    // would otherwise send the runs apart after an update; the gate itself is checked above)
    AdamWConfig o = {d.h.lr, d.h.beta1, d.h.beta2, d.h.eps, d.h.weight_decay, d.h.grad_clip};
    for (int s = 0; s < d.h.num_steps; s++) {
        m.sel_override = forced ? forced + s * set_sel : NULL;
        gpt_forward_train(&m, d.inputs.data(), d.targets.data(), B, T, 1.0f);
        double e = fabs((double)m.mean_loss - d.step_losses[s]);
        printf("  step %d loss    gpu %.6f  cpu %.6f  diff %.2e  %s\n", s + 1, m.mean_loss, d.step_losses[s], e, e <= TOL_STEP_LOSS ? "OK" : "FAIL");
        CHECK(e <= TOL_STEP_LOSS, "AdamW step %d loss differs by %.3e > %.1e", s + 1, e, TOL_STEP_LOSS);
        gpt_zero_grad(&m);
        gpt_backward(&m, 1.0f);
        gpt_update(&m, &o, d.h.lr, s + 1);
    }
    m.sel_override = NULL;
    gpt_free(&m);

    // -R 2 -z 1: everything recomputable is recomputed, deterministic attention backward; gpt_forward, so the
    // backward writes the logits' gradient itself
    GPT r;
    gpt_init(&r, c, d.h.seed, 2, 1);
    gpt_set_params(&r, d.params.data(), NULL, NULL);
    r.sel_override = diff > 0 ? forced : NULL;
    std::vector<float> g2[2];
    for (int run = 0; run < 2; run++) {
        gpt_forward(&r, d.inputs.data(), d.targets.data(), B, T);
        poison_model(&r);
        gpt_forward(&r, d.inputs.data(), d.targets.data(), B, T);
        gpt_backward(&r, 1.0f);
        g2[run] = grads_host(&r);
    }
    check_grads("R2 z1", g2[0], d, &r);
    bool same = memcmp(g2[0].data(), g2[1].data(), g2[0].size() * sizeof(float)) == 0;
    printf("  R2 z1 rerun    gradients bit-identical: %s\n", same ? "yes" : "NO");
    CHECK(same, "-z 1: two identical backward passes gave different gradients");
    gpt_free(&r);
    if (forced) { cudaCheck(cudaFree(forced)); }
    return test_summary();
}
