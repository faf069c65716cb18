/*
 cuBLASLt linear layer forward and backward (dinp, dweight, with and without accumulation) vs a
 multi-threaded double-precision CPU reference at N=4096 C=1024 OC=3072 and a ragged shape, a
 bit-identical rerun, then TFLOP/s at training shapes.
   make build/cuda/matmul && ./build/cuda/matmul
*/
#include <thread>
#include "dev/cuda/layer_check.h"
#include "llmc/matmul.cuh"

// Runs body(i) for i in [0, n) on all host cores.
template <typename F> static void parallel_for(int n, F body) {
    const int workers = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> pool;
    for (int w = 0; w < workers; w++) {
        pool.emplace_back([=] { for (int i = w; i < n; i += workers) { body(i); } });
    }
    for (std::thread &t : pool) { t.join(); }
}

// out = inp W^T; dinp += dout W; dW += dout^T inp (the += start from the given contents).
static void matmul_cpu(std::vector<float> &out, std::vector<float> &dinp, std::vector<float> &dw,
                       const std::vector<float> &inp, const std::vector<float> &w, const std::vector<float> &dout,
                       int N, int C, int OC) {
    parallel_for(N, [&](int n) {
        for (int o = 0; o < OC; o++) {
            double s = 0.0;
            for (int c = 0; c < C; c++) { s += (double)inp[(size_t)n * C + c] * w[(size_t)o * C + c]; }
            out[(size_t)n * OC + o] = (float)s;
        }
        std::vector<double> acc(C, 0.0);
        for (int o = 0; o < OC; o++) {
            const double d = dout[(size_t)n * OC + o];
            for (int c = 0; c < C; c++) { acc[c] += d * w[(size_t)o * C + c]; }
        }
        for (int c = 0; c < C; c++) { dinp[(size_t)n * C + c] += (float)acc[c]; }
    });
    parallel_for(OC, [&](int o) {
        std::vector<double> acc(C, 0.0);
        for (int n = 0; n < N; n++) {
            const double d = dout[(size_t)n * OC + o];
            for (int c = 0; c < C; c++) { acc[c] += d * inp[(size_t)n * C + c]; }
        }
        for (int c = 0; c < C; c++) { dw[(size_t)o * C + c] += (float)acc[c]; }
    });
}

static void check_shape(int N, int C, int OC, Rng *rng) {
    printf("check N=%d C=%d OC=%d (%s)\n", N, C, OC, PRECISION_NAME);
    const size_t NC = (size_t)N * C, NO = (size_t)N * OC, OCC = (size_t)OC * C;
    std::vector<float> inp = round_through<floatX>(random_vector(NC, rng)), w = round_through<floatX>(random_vector(OCC, rng, 0.02f));
    std::vector<float> dout = round_through<floatX>(random_vector(NO, rng));
    std::vector<float> dinp0 = round_through<floatX>(random_vector(NC, rng, 0.1f)), dw0 = round_through<floatX>(random_vector(OCC, rng));
    std::vector<float> out_ref(NO), dinp_zero(NC, 0.0f), dw_zero(OCC, 0.0f), dinp_acc = dinp0, dw_acc = dw0;
    matmul_cpu(out_ref, dinp_zero, dw_zero, inp, w, dout, N, C, OC);
    for (size_t i = 0; i < NC; i++) { dinp_acc[i] += dinp_zero[i]; }
    for (size_t i = 0; i < OCC; i++) { dw_acc[i] += dw_zero[i]; }

    floatX *d_inp = to_device<floatX>(inp), *d_w = to_device<floatX>(w), *d_dout = to_device<floatX>(dout), *d_out;
    cudaCheck(cudaMalloc(&d_out, NO * sizeof(floatX)));
    poison(d_out, NO * sizeof(floatX));
    matmul_forward(d_out, d_inp, d_w, N, C, OC, 0);
    check("fwd out", from_device(d_out, NO), out_ref);

    floatX *d_dinp[2], *d_dw[2];
    for (int r = 0; r < 2; r++) {
        cudaCheck(cudaMalloc(&d_dinp[r], NC * sizeof(floatX))); cudaCheck(cudaMalloc(&d_dw[r], OCC * sizeof(floatX)));
        poison(d_dinp[r], NC * sizeof(floatX)); poison(d_dw[r], OCC * sizeof(floatX));
        matmul_backward(d_dinp[r], d_dw[r], d_dout, d_inp, d_w, N, C, OC, false, false, 0);
    }
    check("bwd dinp", from_device(d_dinp[0], NC), dinp_zero);
    check("bwd dweight", from_device(d_dw[0], OCC), dw_zero);
    check_bit_identical("bwd dweight", d_dw[0], d_dw[1], OCC * sizeof(floatX));
    for (int r = 0; r < 2; r++) { cudaCheck(cudaFree(d_dinp[r])); cudaCheck(cudaFree(d_dw[r])); }

    floatX *d_dinp_acc = to_device<floatX>(dinp0), *d_dw_acc = to_device<floatX>(dw0);
    matmul_backward(d_dinp_acc, d_dw_acc, d_dout, d_inp, d_w, N, C, OC, true, true, 0);
    check("bwd dinp +=", from_device(d_dinp_acc, NC), dinp_acc);
    check("bwd dweight +=", from_device(d_dw_acc, OCC), dw_acc);
    cudaCheck(cudaFree(d_dinp_acc)); cudaCheck(cudaFree(d_dw_acc));
    cudaCheck(cudaFree(d_inp)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_dout)); cudaCheck(cudaFree(d_out));
}

int main(void) {
    Rng rng;
    rng_init(&rng, 3);
    matmul_init();
    check_shape(4096, 1024, 3072, &rng);
    check_shape(2 * 1000 - 1, 136, 1000, &rng);

    // timing: the qkv projection of the 1B preset over 8 x 4096 tokens
    const int N = 8 * 4096, C = 2048, OC = 3 * 2048;
    floatX *inp = random_device<floatX>((size_t)N * C, &rng), *w = random_device<floatX>((size_t)OC * C, &rng, 0.02f);
    floatX *dout = random_device<floatX>((size_t)N * OC, &rng), *out, *dinp, *dw;
    cudaCheck(cudaMalloc(&out, (size_t)N * OC * sizeof(floatX)));
    cudaCheck(cudaMalloc(&dinp, (size_t)N * C * sizeof(floatX)));
    cudaCheck(cudaMalloc(&dw, (size_t)OC * C * sizeof(floatX)));
    const float fwd = time_ms([&] { matmul_forward(out, inp, w, N, C, OC, 0); });
    const float bwd = time_ms([&] { matmul_backward(dinp, dw, dout, inp, w, N, C, OC, false, true, 0); });
    const double flops = 2.0 * N * C * OC;
    matmul_free();
    return layer_finish("matmul", "N=32768 C=2048 OC=6144", fwd, flops / (fwd * 1e-3) / 1e12, bwd,
                        2.0 * flops / (bwd * 1e-3) / 1e12, "TFLOP/s");
}
