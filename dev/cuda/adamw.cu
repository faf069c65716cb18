/*
 AdamW step vs a double-precision CPU reference (odd n, weight decay, bias correction at t = 5, clip scale),
 then timing on a 134M-parameter tensor.
   make build/cuda/adamw && ./build/cuda/adamw
*/
#include "dev/cuda/layer_check.h"
#include "llmc/adamw.cuh"

int main(void) {
    Rng rng;
    rng_init(&rng, 5);
    const size_t n = 1000003;
    const float lr = 3e-4f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f, scale = 0.7f;
    const int t = 5;
    printf("check n=%zu t=%d (%s)\n", n, t, PRECISION_NAME);
    std::vector<float> master = random_vector(n, &rng, 0.02f), m = random_vector(n, &rng, 1e-3f), v(n);
    std::vector<float> grads = round_through<floatX>(random_vector(n, &rng, 1e-2f));
    for (size_t i = 0; i < n; i++) { v[i] = fabsf(rng_normal(&rng, 0.0f, 1e-4f)); }
    std::vector<float> master_ref(n), m_ref(n), v_ref(n), params_ref(n);
    const double bc1 = 1.0 - pow(beta1, t), bc2 = 1.0 - pow(beta2, t);
    for (size_t i = 0; i < n; i++) {
        const double g = (double)grads[i] * scale;
        const double mi = beta1 * (double)m[i] + (1.0 - beta1) * g, vi = beta2 * (double)v[i] + (1.0 - beta2) * g * g;
        const double p = master[i] - lr * (mi / bc1 / (sqrt(vi / bc2) + eps) + wd * master[i]);
        m_ref[i] = (float)mi; v_ref[i] = (float)vi; master_ref[i] = (float)p;
        params_ref[i] = to_float(from_float<floatX>((float)p));
    }
    float *d_master = to_device<float>(master), *d_m = to_device<float>(m), *d_v = to_device<float>(v);
    floatX *d_grads = to_device<floatX>(grads), *d_params;
    cudaCheck(cudaMalloc(&d_params, n * sizeof(floatX)));
    poison(d_params, n * sizeof(floatX));
    adamw_update(d_master, d_params, d_m, d_v, d_grads, n, lr, beta1, beta2, eps, wd, scale, t, 0);
    check("master", from_device(d_master, n), master_ref);
    check("m", from_device(d_m, n), m_ref);
    check("v", from_device(d_v, n), v_ref);
    check("params", from_device(d_params, n), params_ref);
    // the master update itself is tiny next to the weights: check it relative to its own size
    std::vector<float> delta(n), delta_ref(n), got = from_device(d_master, n);
    for (size_t i = 0; i < n; i++) { delta[i] = got[i] - master[i]; delta_ref[i] = master_ref[i] - master[i]; }
    check("master delta", delta, delta_ref, 1e-4);

    const size_t N = (size_t)1 << 27;
    float *pm = random_device<float>(N, &rng, 0.02f), *pmm = random_device<float>(N, &rng, 1e-3f), *pv = random_device<float>(N, &rng, 1e-4f);
    floatX *pg = random_device<floatX>(N, &rng, 1e-2f), *pp;
    cudaCheck(cudaMalloc(&pp, N * sizeof(floatX)));
    const float ms = time_ms([&] { adamw_update(pm, pp, pmm, pv, pg, N, lr, beta1, beta2, eps, wd, 1.0f, t, 0); });
    const double bytes = N * (6.0 * sizeof(float) + 2.0 * sizeof(floatX));
    return layer_finish("adamw", "n=134M (update)", ms, gbps(bytes, ms), 0.0f, 0.0, "GB/s");
}
