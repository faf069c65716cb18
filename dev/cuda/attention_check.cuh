/*
 Checking and timing glue for dev/cuda/attention_dense.cu and attention_moba.cu (llmc/flash_attention.cuh).
 Versions: 1 = the simple kernels (dense or MoBA); 2..21 (no 12) the dense kernels of
 dev/cuda/attention_dense_versions.cuh, whose opening comment lists them; 16 and 21 are the production
 forward and backward, 20 the production deterministic backward.
 check: fresh random inputs, a double-precision CPU reference of o, lse, dq, dk, dv, poisoned outputs,
 relative L2 errors; the deterministic versions (1, 3, 6, 8, 11, 18, 20) must give bit-identical gradients on a rerun.
 time: random device data, CUDA-event medians, one table row per case.
*/
#ifndef DEV_CUDA_ATTENTION_CHECK_CUH
#define DEV_CUDA_ATTENTION_CHECK_CUH

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#include "dev/cuda/common.h"
#include "dev/cuda/attention_dense_versions.cuh"

// hash-based uniform in [0, 1): device-side data for sizes the host would take too long to fill.
__device__ inline float hash_uniform(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return (x >> 40) * (1.0f / 16777216.0f);
}
__global__ void fill_uniform_kernel(floatX *x, size_t n, uint64_t seed) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { x[i] = from_float<floatX>((hash_uniform(seed * 0x9E3779B97F4A7C15ull + i) - 0.5f) * 3.46f); }  // std 1
}

// A random valid selection per (head, query): own block + min(K-1, own) distinct random past blocks,
// ascending, -1 padded (the cost of a gated selection, without the gate).
__global__ void random_selection_kernel(int *blocks, size_t rows, int T, int bs, int K, uint64_t seed) {
    size_t row = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows) { return; }
    int t = (int)(row % T), own = t / bs, n = min(K - 1, own), cnt = 0, chosen[MOBA_MAX_TOPK];
    uint64_t ctr = 0;
    if (own <= K - 1) {
        for (int i = 0; i < own; i++) { chosen[cnt++] = i; }
    } else {
        while (cnt < n) {
            int b = min((int)(hash_uniform(seed ^ (row * 0x2545F4914F6CDD1Dull + ++ctr)) * own), own - 1);
            bool dup = false;
            for (int i = 0; i < cnt; i++) { dup |= chosen[i] == b; }
            if (!dup) { chosen[cnt++] = b; }
        }
    }
    chosen[cnt++] = own;
    for (int i = 1; i < cnt; i++) {  // insertion sort: lists are short
        int x = chosen[i], j = i - 1;
        while (j >= 0 && chosen[j] > x) { chosen[j + 1] = chosen[j]; j--; }
        chosen[j + 1] = x;
    }
    for (int i = 0; i < K; i++) { blocks[row * K + i] = i < cnt ? chosen[i] : -1; }
}

static int *random_selection(int BH, int T, int bs, int K, uint64_t seed) {
    if (K > MOBA_MAX_TOPK) { die("random selection: top-k %d > %d", K, MOBA_MAX_TOPK); }
    int *d;
    size_t rows = (size_t)BH * T;
    cudaCheck(cudaMalloc(&d, rows * K * sizeof(int)));
    random_selection_kernel<<<(unsigned)CEIL_DIV(rows, 256), 256>>>(d, rows, T, bs, K, seed);
    cudaCheckLaunch();
    return d;
}

// Double-precision reference. sel_blocks empty = dense causal, or with window > 0 sliding-window (keys
// [t - window + 1, t]). q, k, v (BH, T, HD); o, dout (B, T, NH, HD).
struct AttnRef { std::vector<float> o, lse, dq, dk, dv; };
static AttnRef cpu_attention(const std::vector<float> &q, const std::vector<float> &k, const std::vector<float> &v,
                             const std::vector<float> &dout, const std::vector<int> &sel_blocks, int bs, int K,
                             int B, int NH, int T, int HD, int window = 0) {
    size_t n = (size_t)B * NH * T * HD;
    AttnRef r{std::vector<float>(n), std::vector<float>((size_t)B * NH * T), std::vector<float>(n), std::vector<float>(n), std::vector<float>(n)};
    std::vector<double> dk(n, 0.0), dv(n, 0.0);
    double scale = 1.0 / sqrt((double)HD);
    std::vector<int> vis;
    std::vector<double> p, o(HD), dq(HD);
    for (int b = 0; b < B; b++) for (int h = 0; h < NH; h++) for (int t = 0; t < T; t++) {
        size_t bh = (size_t)b * NH + h;
        const float *qt = &q[(bh * T + t) * HD];
        const float *dot = &dout[(((size_t)b * T + t) * NH + h) * HD];
        vis.clear();
        for (int j = window > 0 ? std::max(0, t - window + 1) : 0; j <= t; j++) {
            bool ok = sel_blocks.empty();
            for (int s = 0; s < K && !ok; s++) { ok = sel_blocks[(bh * T + t) * K + s] == j / bs; }
            if (ok) { vis.push_back(j); }
        }
        p.assign(vis.size(), 0.0);
        double m = -INFINITY, l = 0.0;
        for (size_t i = 0; i < vis.size(); i++) {
            double s = 0.0;
            for (int d = 0; d < HD; d++) { s += (double)qt[d] * k[(bh * T + vis[i]) * HD + d]; }
            p[i] = s * scale;
            m = std::max(m, p[i]);
        }
        for (size_t i = 0; i < vis.size(); i++) { p[i] = exp(p[i] - m); l += p[i]; }
        std::fill(o.begin(), o.end(), 0.0);
        for (size_t i = 0; i < vis.size(); i++) {
            p[i] /= l;
            for (int d = 0; d < HD; d++) { o[d] += p[i] * v[(bh * T + vis[i]) * HD + d]; }
        }
        double D = 0.0;
        for (int d = 0; d < HD; d++) {
            r.o[(((size_t)b * T + t) * NH + h) * HD + d] = (float)o[d];
            D += o[d] * dot[d];
        }
        r.lse[bh * T + t] = (float)(m + log(l));
        std::fill(dq.begin(), dq.end(), 0.0);
        for (size_t i = 0; i < vis.size(); i++) {
            size_t jo = (bh * T + vis[i]) * HD;
            double dp = 0.0;
            for (int d = 0; d < HD; d++) { dp += (double)dot[d] * v[jo + d]; }
            double ds = p[i] * (dp - D);
            for (int d = 0; d < HD; d++) {
                dq[d] += ds * scale * k[jo + d];
                dk[jo + d] += ds * scale * qt[d];
                dv[jo + d] += p[i] * dot[d];
            }
        }
        for (int d = 0; d < HD; d++) { r.dq[(bh * T + t) * HD + d] = (float)dq[d]; }
    }
    for (size_t i = 0; i < n; i++) { r.dk[i] = (float)dk[i]; r.dv[i] = (float)dv[i]; }
    return r;
}

struct AttnBufs {
    floatX *q, *k, *v, *o, *dout, *dq, *dk, *dv;
    float *lse, *scratch;
    size_t n, nrow, scratch_bytes;
    AttnBufs(int B, int NH, int T, int HD) {
        n = (size_t)B * NH * T * HD; nrow = (size_t)B * NH * T;
        scratch_bytes = attention_backward_scratch_bytes(B, NH, T, HD);
        floatX **bufs[] = {&q, &k, &v, &o, &dout, &dq, &dk, &dv};
        for (floatX **b : bufs) { cudaCheck(cudaMalloc(b, n * sizeof(floatX))); }
        cudaCheck(cudaMalloc(&lse, nrow * sizeof(float)));
        cudaCheck(cudaMalloc(&scratch, scratch_bytes));
    }
    // Fresh random q, k, v, dout (drawn in that order, rounded to floatX) into the device buffers; returns the
    // host values for the reference.
    struct Host { std::vector<float> q, k, v, dout; };
    Host upload_random(Rng *rng) {
        Host h;
        std::vector<float> *host[] = {&h.q, &h.k, &h.v, &h.dout};
        floatX *dev[] = {q, k, v, dout};
        for (int i = 0; i < 4; i++) {
            *host[i] = round_through<floatX>(random_vector(n, rng));
            floatX *t = to_device<floatX>(*host[i]);
            cudaCheck(cudaMemcpy(dev[i], t, n * sizeof(floatX), cudaMemcpyDeviceToDevice));
            cudaCheck(cudaFree(t));
        }
        return h;
    }
    ~AttnBufs() {
        floatX *bufs[] = {q, k, v, o, dout, dq, dk, dv};
        for (floatX *b : bufs) { cudaCheck(cudaFree(b)); }
        cudaCheck(cudaFree(lse)); cudaCheck(cudaFree(scratch));
    }
};

static void run_forward(int version, AttnBufs &a, int B, int NH, int T, int HD, const MobaSelection *sel) {
    if (version == 1) { attention_forward_simple(a.o, a.lse, a.q, a.k, a.v, B, NH, T, HD, sel, 0); return; }
#if defined(ENABLE_FP32)
    attention_forward(a.o, a.lse, a.q, a.k, a.v, B, NH, T, HD, sel, 0);  // the simple kernels
#else
    attention_check_dense(B, NH, T, HD, sel);
    (HD == 64 ? attention_forward_version<64> : attention_forward_version<128>)(version, a.o, a.lse, a.q, a.k, a.v, B, NH, T);
#endif
}

static void run_backward(int version, AttnBufs &a, int B, int NH, int T, int HD, const MobaSelection *sel) {
    if (version == 1) { attention_backward_simple(a.dq, a.dk, a.dv, a.dout, a.o, a.lse, a.q, a.k, a.v, a.scratch, B, NH, T, HD, sel, 0); return; }
#if defined(ENABLE_FP32)
    attention_backward(a.dq, a.dk, a.dv, a.dout, a.o, a.lse, a.q, a.k, a.v, a.scratch, B, NH, T, HD, sel, attention_deterministic(version), 0);
#else
    attention_check_dense(B, NH, T, HD, sel);
    (HD == 64 ? attention_backward_version<64> : attention_backward_version<128>)(version, a.dq, a.dk, a.dv, a.dout, a.o, a.lse, a.q,
                                                                                  a.k, a.v, a.scratch, B, NH, T);
#endif
}

static const double ATTN_TOL = sizeof(floatX) == 4 ? 1e-4 : 1e-2;

// One correctness case; bs = 0 means dense. dense_ref: compare a MoBA run against the dense reference
// (valid when K >= number of blocks). Returns the number of failed comparisons.
static int check_case(int version, int B, int NH, int T, int HD, int bs, int K, bool dense_ref, uint64_t seed) {
    printf("v%d B=%d NH=%d T=%d HD=%d %s bs=%d K=%d%s\n", version, B, NH, T, HD, bs ? "moba" : "dense", bs, K, dense_ref ? " (vs dense ref)" : "");
    Rng rng;
    rng_init(&rng, seed);
    AttnBufs a(B, NH, T, HD);
    const AttnBufs::Host h = a.upload_random(&rng);
    std::vector<int> hsel;
    int *dsel = NULL;
    MobaSelection sel{NULL, bs, K};
    if (bs) {
        dsel = random_selection(B * NH, T, bs, K, seed * 7 + 1);
        hsel.resize((size_t)B * NH * T * K);
        cudaCheck(cudaMemcpy(hsel.data(), dsel, hsel.size() * sizeof(int), cudaMemcpyDeviceToHost));
        sel.blocks = dsel;
    }
    AttnRef ref = cpu_attention(h.q, h.k, h.v, h.dout, dense_ref ? std::vector<int>() : hsel, bs, K, B, NH, T, HD);

    const floatX *outs[] = {a.o, a.dq, a.dk, a.dv};
    poison(a.o, a.n * sizeof(floatX)); poison(a.lse, a.nrow * sizeof(float));
    poison(a.dq, a.n * sizeof(floatX)); poison(a.dk, a.n * sizeof(floatX)); poison(a.dv, a.n * sizeof(floatX));
    poison(a.scratch, a.scratch_bytes);
    run_forward(version, a, B, NH, T, HD, bs ? &sel : NULL);
    run_backward(version, a, B, NH, T, HD, bs ? &sel : NULL);
    cudaCheck(cudaDeviceSynchronize());
    int fails = 0;
    fails += !(compare("o", from_device(a.o, a.n), ref.o, ATTN_TOL) <= ATTN_TOL);
    fails += !(compare("lse", from_device(a.lse, a.nrow), ref.lse, ATTN_TOL) <= ATTN_TOL);
    fails += !(compare("dq", from_device(a.dq, a.n), ref.dq, ATTN_TOL) <= ATTN_TOL);
    fails += !(compare("dk", from_device(a.dk, a.n), ref.dk, ATTN_TOL) <= ATTN_TOL);
    fails += !(compare("dv", from_device(a.dv, a.n), ref.dv, ATTN_TOL) <= ATTN_TOL);

    // rerun the backward: the deterministic versions promise the same bytes; the atomic-dQ ones are only reported
    std::vector<std::vector<float>> first;
    for (int i = 1; i < 4; i++) { first.push_back(from_device(outs[i], a.n)); }
    poison(a.dq, a.n * sizeof(floatX)); poison(a.dk, a.n * sizeof(floatX)); poison(a.dv, a.n * sizeof(floatX));
    run_backward(version, a, B, NH, T, HD, bs ? &sel : NULL);
    cudaCheck(cudaDeviceSynchronize());
    bool same = true;
    for (int i = 1; i < 4; i++) {
        std::vector<float> again = from_device(outs[i], a.n);
        same &= memcmp(again.data(), first[i - 1].data(), a.n * sizeof(float)) == 0;
    }
    bool deterministic = attention_deterministic(version);
    printf("  rerun bit-identical: %s%s\n", same ? "yes" : "no", deterministic && !same ? "  FAIL" : "");
    fails += deterministic && !same;
    if (dsel) { cudaCheck(cudaFree(dsel)); }
    return fails;
}

// Times forward and forward+backward at one shape; prints one markdown table row and returns fwd ms.
static void time_case(int version, int B, int NH, int T, int HD, int bs, int K) {
    AttnBufs a(B, NH, T, HD);
    floatX *ins[] = {a.q, a.k, a.v, a.dout};
    for (int i = 0; i < 4; i++) {
        fill_uniform_kernel<<<(unsigned)CEIL_DIV(a.n, 256), 256>>>(ins[i], a.n, 1000 + i);
        cudaCheckLaunch();
    }
    int *dsel = bs ? random_selection(B * NH, T, bs, K, 42) : NULL;
    MobaSelection sel{dsel, bs, K};
    const MobaSelection *sp = bs ? &sel : NULL;
    int reps = T >= 65536 ? 5 : 20;
    float fwd = time_ms([&] { run_forward(version, a, B, NH, T, HD, sp); }, 2, reps);
    float all = time_ms([&] { run_forward(version, a, B, NH, T, HD, sp); run_backward(version, a, B, NH, T, HD, sp); }, 2, reps);
    double flops = 2.0 * B * NH * (double)T * T * HD;  // causal dense count (2 B NH T^2 HD), also for MoBA rows
    if (bs) {
        printf("| ours-v%d | moba %d/%d | %d | %d | %.2f | %.0f | %.2f | %.0f |\n", version, bs, K, HD, T, fwd, flops / fwd * 1e-9, all, 3.5 * flops / all * 1e-9);
    } else {
        printf("| ours-v%d | dense | %d | %d | %.2f | %.0f | %.2f | %.0f |\n", version, HD, T, fwd, flops / fwd * 1e-9, all, 3.5 * flops / all * 1e-9);
    }
    fflush(stdout);
    if (dsel) { cudaCheck(cudaFree(dsel)); }
}

static int parse_version(int argc, char **argv) {
    int v = argc > 1 ? atoi(argv[1]) : 0;
    if (v < 1 || v > 21 || v == 12) { die("usage: %s <version 1..11 or 13..21> check | time ...", argv[0]); }
    return v;
}

#endif  // DEV_CUDA_ATTENTION_CHECK_CUH
