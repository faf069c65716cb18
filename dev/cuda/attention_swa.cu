/*
 Sliding-window attention (the paper layout's odd layers: query t sees keys [t - w + 1, t]) through the
 production entry points attention_forward / attention_backward of llmc/flash_attention.cuh with window w:
 the Hopper forward walks only the key tiles from the one holding q0 - w + 1, the backward's query tiles
 stop at the last one that sees the CTA's keys, and the tiles on the window's edge are masked.
   check: fresh random inputs, a double-precision CPU reference (attention_check.cuh's, with the window),
          poisoned outputs, relative L2 errors of o, lse, dq, dk, dv, for the default and the deterministic
          backward (whose rerun must be bit-identical); windows smaller than a tile, not a multiple of a
          tile, larger than T, T < 128 (the one-warpgroup backward), head dim 64 and 128.
   time:  B 8, 16 heads, HD 64, T 8192, window 256 (the paper's), forward and forward + backward, with
          dense causal attention at the same shape for comparison. FLOPs counted as executed:
          4 HD x (keys per query) per query and head forward, 2.5x that for the backward.
   make build/cuda/attention_swa && ./build/cuda/attention_swa [check|time|all|case B NH T HD window deterministic]
*/
#include "dev/cuda/attention_check.cuh"

#if defined(ENABLE_FP32)
int main(void) { printf("attention_swa: bf16 build only\n"); return 0; }
#else

// > 0: the Hopper forward with this many query tiles per CTA instead of attention_forward's choice
static int fwd_q_tiles = 0;

static void run_fwd(AttnBufs &a, int B, int NH, int T, int HD, int window) {
    if (fwd_q_tiles > 0) {
        attention_forward_hopper(a.o, a.lse, a.q, a.k, a.v, B, NH, T, HD, window, 0, fwd_q_tiles);
    } else {
        attention_forward(a.o, a.lse, a.q, a.k, a.v, B, NH, T, HD, NULL, 0, window);
    }
}
static void run_bwd(AttnBufs &a, int B, int NH, int T, int HD, int window, int deterministic) {
    attention_backward(a.dq, a.dk, a.dv, a.dout, a.o, a.lse, a.q, a.k, a.v, a.scratch, B, NH, T, HD, NULL, deterministic, 0, window);
}

static int check_window(int B, int NH, int T, int HD, int window, int deterministic, uint64_t seed) {
    printf("swa B=%d NH=%d T=%d HD=%d window=%d %s, forward q tiles per CTA %d (0: attention_forward's)\n", B, NH, T, HD,
           window, deterministic ? "deterministic" : "default", fwd_q_tiles);
    Rng rng;
    rng_init(&rng, seed);
    AttnBufs a(B, NH, T, HD);
    const AttnBufs::Host h = a.upload_random(&rng);
    AttnRef ref = cpu_attention(h.q, h.k, h.v, h.dout, std::vector<int>(), 0, 0, B, NH, T, HD, window);
    poison(a.o, a.n * sizeof(floatX)); poison(a.lse, a.nrow * sizeof(float));
    poison(a.dq, a.n * sizeof(floatX)); poison(a.dk, a.n * sizeof(floatX)); poison(a.dv, a.n * sizeof(floatX));
    poison(a.scratch, a.scratch_bytes);
    run_fwd(a, B, NH, T, HD, window);
    run_bwd(a, B, NH, T, HD, window, deterministic);
    cudaCheck(cudaDeviceSynchronize());
    int fails = 0;
    fails += !(compare("o", from_device(a.o, a.n), ref.o, ATTN_TOL) <= ATTN_TOL);
    fails += !(compare("lse", from_device(a.lse, a.nrow), ref.lse, ATTN_TOL) <= ATTN_TOL);
    if (window == 1) {
        // one visible key: P = 1 whatever the score, so dq = dk = 0 up to the rounding of dP - D (the
        // reference is ~0 and a relative error meaningless): all of them must be tiny next to dv
        double worst = 0, dv_max = 0;
        for (float x : from_device(a.dq, a.n)) { worst = std::max(worst, (double)fabsf(x)); }
        for (float x : from_device(a.dk, a.n)) { worst = std::max(worst, (double)fabsf(x)); }
        for (float x : ref.dv) { dv_max = std::max(dv_max, (double)fabsf(x)); }
        bool ok = worst <= 1e-4 * dv_max;
        printf("  dq, dk         max_abs %.3e (dv max %.3e): %s\n", worst, dv_max, ok ? "OK" : "FAIL");
        fails += !ok;
    } else {
        fails += !(compare("dq", from_device(a.dq, a.n), ref.dq, ATTN_TOL) <= ATTN_TOL);
        fails += !(compare("dk", from_device(a.dk, a.n), ref.dk, ATTN_TOL) <= ATTN_TOL);
    }
    fails += !(compare("dv", from_device(a.dv, a.n), ref.dv, ATTN_TOL) <= ATTN_TOL);
    if (deterministic) {
        std::vector<float> dq1 = from_device(a.dq, a.n), dk1 = from_device(a.dk, a.n), dv1 = from_device(a.dv, a.n);
        poison(a.dq, a.n * sizeof(floatX)); poison(a.dk, a.n * sizeof(floatX)); poison(a.dv, a.n * sizeof(floatX));
        run_bwd(a, B, NH, T, HD, window, deterministic);
        cudaCheck(cudaDeviceSynchronize());
        bool same = from_device(a.dq, a.n) == dq1 && from_device(a.dk, a.n) == dk1 && from_device(a.dv, a.n) == dv1;
        printf("  rerun bit-identical: %s\n", same ? "yes" : "no  FAIL");
        fails += !same;
    }
    return fails;
}

// Mean keys per query of a window over T positions (dense causal: window = T).
static double keys_per_query(int T, int window) {
    double sum = 0;
    for (int t = 0; t < T; t++) { sum += t + 1 < window ? t + 1 : window; }
    return sum / T;
}

static void time_window(int B, int NH, int T, int HD, int window) {
    AttnBufs a(B, NH, T, HD);
    floatX *ins[] = {a.q, a.k, a.v, a.dout};
    for (int i = 0; i < 4; i++) {
        fill_uniform_kernel<<<(unsigned)CEIL_DIV(a.n, 256), 256>>>(ins[i], a.n, 2000 + i);
        cudaCheckLaunch();
    }
    float fwd = time_ms([&] { run_fwd(a, B, NH, T, HD, window); }, 3, 30);
    float all = time_ms([&] { run_fwd(a, B, NH, T, HD, window); run_bwd(a, B, NH, T, HD, window, 0); }, 3, 30);
    double flops = 4.0 * B * NH * (double)T * HD * keys_per_query(T, window > 0 ? window : T);
    printf("| ours | %s | %d | %d | %d | %.3f | %.0f | %.3f | %.0f |\n", window > 0 ? "sliding window" : "dense causal",
           window, HD, T, fwd, flops / fwd * 1e-9, all, 3.5 * flops / all * 1e-9);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "all";
    int fails = 0;
    if (strcmp(mode, "case") == 0) {  // one check: case B NH T HD window deterministic
        if (argc != 8) { die("usage: %s case B NH T HD window deterministic", argv[0]); }
        fails = check_window(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atoi(argv[7]), 99);
        printf("attention_swa case: %d failed\n", fails);
        return fails != 0;
    }
    if (strcmp(mode, "time") != 0) {
        struct { int B, NH, T, HD, window; } cases[] = {
            {2, 2, 1000, 64, 256}, {2, 2, 1000, 64, 24}, {1, 3, 777, 64, 100}, {2, 2, 300, 64, 1}, {2, 2, 256, 64, 500},
            {3, 2, 100, 64, 40},  // T < 128: the one-warpgroup backward
            {1, 3, 777, 64, 0},   // window 0 = dense causal; T not a multiple of 4: not the TMA backward
            {1, 2, 1000, 128, 200}, {1, 2, 600, 128, 64},
        };
        uint64_t seed = 31;
        for (auto c : cases) {
            for (int det = 0; det < 2; det++) { fails += check_window(c.B, c.NH, c.T, c.HD, c.window, det, seed++); }
        }
        // the forward's query-tile groups: 2000 = 15 full tiles + 80 (groups of 4: the last holds 3, partly
        // past T), each group count, at both head dims (HD 128 has one Q buffer); dense causal in groups too
        for (int tiles : {1, 2, 3, 4, 8, 16}) {
            fwd_q_tiles = tiles;
            fails += check_window(2, 2, 2000, 64, 300, 0, seed++);
            fails += check_window(1, 2, 2000, 128, 200, 0, seed++);
            fails += check_window(1, 2, 2000, 64, 0, 0, seed++);
        }
        fwd_q_tiles = 0;
        printf("attention_swa check: %d failed\n", fails);
    }
    if (strcmp(mode, "check") != 0) {
        printf("| impl | attention | window | HD | T | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |\n|---|---|---|---|---|---|---|---|---|\n");
        time_window(8, 16, 8192, 64, 256);
        time_window(8, 16, 8192, 64, 0);
        for (int tiles : {1, 2, 4, 8}) {  // the forward's query tiles per CTA (attention_forward picks 4 here)
            fwd_q_tiles = tiles;
            printf("| forward q tiles per CTA %d | ", tiles);
            time_window(8, 16, 8192, 64, 256);
        }
        fwd_q_tiles = 0;
    }
    return fails != 0;
}
#endif
