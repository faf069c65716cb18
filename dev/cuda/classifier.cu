/*
 Fused classifier (softmax cross-entropy, in-place dlogits, ignored -1 targets, forward-only mode) vs a
 double-precision CPU reference, at the real V = 32000, an odd V (unaligned rows), a tiny V and the edges of
 the row-in-registers kernel (V 8192, 32768; 32776 takes the two-pass kernel), then timing.
   make build/cuda/classifier && ./build/cuda/classifier
*/
#include "dev/cuda/layer_check.h"
#include "llmc/classifier.cuh"

static void classifier_cpu(std::vector<float> &losses, std::vector<float> &dlogits, const std::vector<float> &logits,
                           const std::vector<int> &targets, float scale, int N, int V) {
    for (int n = 0; n < N; n++) {
        const float *x = &logits[(size_t)n * V];
        float *d = &dlogits[(size_t)n * V];
        if (targets[n] == -1) {
            losses[n] = 0.0f;
            for (int v = 0; v < V; v++) { d[v] = 0.0f; }
            continue;
        }
        double m = -INFINITY, s = 0.0;
        for (int v = 0; v < V; v++) { m = std::max(m, (double)x[v]); }
        for (int v = 0; v < V; v++) { s += exp(x[v] - m); }
        losses[n] = (float)(log(s) + m - x[targets[n]]);
        for (int v = 0; v < V; v++) { d[v] = (float)((exp(x[v] - m) / s - (v == targets[n])) * scale); }
    }
}

static void check_shape(int N, int V, Rng *rng) {
    printf("check N=%d V=%d (%s)\n", N, V, PRECISION_NAME);
    const size_t NV = (size_t)N * V;
    std::vector<float> logits = round_through<floatX>(random_vector(NV, rng, 3.0f));
    std::vector<int> targets(N);
    int count = 0;
    for (int n = 0; n < N; n++) {
        targets[n] = rng_uniform(rng) < 0.1f ? -1 : (int)rng_below(rng, V);
        count += targets[n] != -1;
    }
    const float dloss = 0.25f; // e.g. 1 / grad_accum_steps
    std::vector<float> loss_ref(N), dlogits_ref(NV);
    classifier_cpu(loss_ref, dlogits_ref, logits, targets, dloss / count, N, V);

    floatX *d_logits = to_device<floatX>(logits);
    int *d_targets;
    float *d_losses;
    cudaCheck(cudaMalloc(&d_targets, N * sizeof(int)));
    cudaCheck(cudaMemcpy(d_targets, targets.data(), N * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMalloc(&d_losses, N * sizeof(float)));

    poison(d_losses, N * sizeof(float));
    fused_classifier(d_logits, d_losses, d_targets, dloss, count, N, V, false, 0);
    check("fwd-only loss", from_device(d_losses, N), loss_ref);
    check("fwd-only logits", from_device(d_logits, NV), logits, 0.0); // untouched

    poison(d_losses, N * sizeof(float));
    fused_classifier(d_logits, d_losses, d_targets, dloss, count, N, V, true, 0);
    check("loss", from_device(d_losses, N), loss_ref);
    check("dlogits", from_device(d_logits, NV), dlogits_ref);
    cudaCheck(cudaFree(d_logits)); cudaCheck(cudaFree(d_targets)); cudaCheck(cudaFree(d_losses));
}

int main(void) {
    Rng rng;
    rng_init(&rng, 7);
    check_shape(2 * 1000, 32000, &rng);
    check_shape(301, 50257, &rng);
    check_shape(111, 7, &rng);
    check_shape(64, 8192, &rng);   // one chunk per thread in registers
    check_shape(37, 32768, &rng);  // the largest row held in registers
    check_shape(29, 32776, &rng);  // just past it: the two-pass kernel

    const int N = 4 * 4096, V = 32000;
    const size_t NV = (size_t)N * V;
    floatX *logits = random_device<floatX>(NV, &rng, 3.0f);
    std::vector<int> targets(N);
    for (int n = 0; n < N; n++) { targets[n] = (int)rng_below(&rng, V); }
    int *d_targets;
    float *losses;
    cudaCheck(cudaMalloc(&d_targets, N * sizeof(int)));
    cudaCheck(cudaMemcpy(d_targets, targets.data(), N * sizeof(int), cudaMemcpyHostToDevice));
    cudaCheck(cudaMalloc(&losses, N * sizeof(float)));
    // The gradient mode rewrites logits in place, so later timed runs see gradients as logits: same work.
    const float fwd = time_ms([&] { fused_classifier(logits, losses, d_targets, 1.0f, N, N, V, false, 0); });
    const float bwd = time_ms([&] { fused_classifier(logits, losses, d_targets, 1.0f, N, N, V, true, 0); });
    return layer_finish("classifier", "N=16384 V=32000 (fwd-only)", fwd, gbps(1.0 * NV * sizeof(floatX), fwd), bwd,
                        gbps(2.0 * NV * sizeof(floatX), bwd), "GB/s");
}
