/*
 RMSNorm (plain and fused with the residual add) forward and backward vs a double-precision CPU reference,
 bit-identical rerun of the backward (deterministic dw), and timing at a training-sized N.
   make build/cuda/rmsnorm && ./build/cuda/rmsnorm
*/
#include "dev/cuda/layer_check.h"
#include "llmc/rmsnorm.cuh"

static void rmsnorm_cpu(std::vector<float> &out, std::vector<float> &rstd, const std::vector<float> &x,
                        const std::vector<float> &w, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *xn = &x[(size_t)n * C];
        double ss = 0.0;
        for (int c = 0; c < C; c++) { ss += (double)xn[c] * xn[c]; }
        const double r = 1.0 / sqrt(ss / C + 1e-5);
        rstd[n] = (float)r;
        for (int c = 0; c < C; c++) { out[(size_t)n * C + c] = (float)(xn[c] * r * w[c]); }
    }
}

// dinp += dx, dw += sum_n dy * xhat (both accumulate, as the kernel).
static void rmsnorm_backward_cpu(std::vector<float> &dinp, std::vector<float> &dw, const std::vector<float> &dy,
                                 const std::vector<float> &x, const std::vector<float> &w, int N, int C) {
    std::vector<double> dwd(C, 0.0);
    for (int n = 0; n < N; n++) {
        const float *xn = &x[(size_t)n * C], *g = &dy[(size_t)n * C];
        double ss = 0.0, dot = 0.0;
        for (int c = 0; c < C; c++) { ss += (double)xn[c] * xn[c]; }
        const double r = 1.0 / sqrt(ss / C + 1e-5);
        for (int c = 0; c < C; c++) { dot += (double)w[c] * g[c] * xn[c] * r; }
        for (int c = 0; c < C; c++) {
            const double xhat = xn[c] * r;
            dinp[(size_t)n * C + c] += (float)(r * (w[c] * g[c] - xhat * dot / C));
            dwd[c] += g[c] * xhat;
        }
    }
    for (int c = 0; c < C; c++) { dw[c] += (float)dwd[c]; }
}

// Checks forward (plain and fused) and backward at (N, C); returns nothing, counts failures.
static void check_shape(int N, int C, Rng *rng) {
    printf("check N=%d C=%d (%s)\n", N, C, PRECISION_NAME);
    const size_t NC = (size_t)N * C;
    std::vector<float> a = round_through<floatX>(random_vector(NC, rng)), b = round_through<floatX>(random_vector(NC, rng));
    std::vector<float> w = round_through<floatX>(random_vector(C, rng, 0.5f));
    for (float &v : w) { v = to_float(from_float<floatX>(v + 1.0f)); }
    std::vector<float> dy = round_through<floatX>(random_vector(NC, rng));
    std::vector<float> dinp0 = round_through<floatX>(random_vector(NC, rng)), dw0 = round_through<floatX>(random_vector(C, rng));

    floatX *d_a = to_device<floatX>(a), *d_b = to_device<floatX>(b), *d_w = to_device<floatX>(w), *d_dy = to_device<floatX>(dy);
    floatX *d_res, *d_out;
    float *d_rstd, *d_scratch;
    cudaCheck(cudaMalloc(&d_res, NC * sizeof(floatX)));
    cudaCheck(cudaMalloc(&d_out, NC * sizeof(floatX)));
    cudaCheck(cudaMalloc(&d_rstd, N * sizeof(float)));
    cudaCheck(cudaMalloc(&d_scratch, rmsnorm_backward_scratch_bytes(C)));

    // plain forward
    std::vector<float> ref(NC), rstd_ref(N);
    rmsnorm_cpu(ref, rstd_ref, a, w, N, C);
    poison(d_out, NC * sizeof(floatX)); poison(d_rstd, N * sizeof(float));
    rmsnorm_forward(d_out, d_rstd, d_a, d_w, N, C, 0);
    check("fwd out", from_device(d_out, NC), ref);
    check("fwd rstd", from_device(d_rstd, N), rstd_ref);

    // fused residual forward: the norm sees the floatX-rounded sum
    std::vector<float> sum(NC);
    for (size_t i = 0; i < NC; i++) { sum[i] = to_float(from_float<floatX>(a[i] + b[i])); }
    rmsnorm_cpu(ref, rstd_ref, sum, w, N, C);
    poison(d_out, NC * sizeof(floatX)); poison(d_rstd, N * sizeof(float)); poison(d_res, NC * sizeof(floatX));
    fused_residual_rmsnorm_forward(d_res, d_out, d_rstd, d_a, d_b, d_w, N, C, 0);
    check("fused residual", from_device(d_res, NC), sum);
    check("fused out", from_device(d_out, NC), ref);
    check("fused rstd", from_device(d_rstd, N), rstd_ref);

    // backward (accumulating into random dinp, dw), twice for the bit-identical check
    std::vector<float> dinp_ref = dinp0, dw_ref = dw0;
    rmsnorm_backward_cpu(dinp_ref, dw_ref, dy, sum, w, N, C);
    floatX *d_dinp[2], *d_dw[2];
    for (int r = 0; r < 2; r++) {
        d_dinp[r] = to_device<floatX>(dinp0); d_dw[r] = to_device<floatX>(dw0);
        poison(d_scratch, rmsnorm_backward_scratch_bytes(C));
        rmsnorm_backward(d_dinp[r], d_dw[r], d_scratch, d_dy, d_res, d_w, d_rstd, N, C, 0);
    }
    check("bwd dinp", from_device(d_dinp[0], NC), dinp_ref);
    check("bwd dweight", from_device(d_dw[0], C), dw_ref);
    check_bit_identical("bwd dweight", d_dw[0], d_dw[1], C * sizeof(floatX));
    check_bit_identical("bwd dinp", d_dinp[0], d_dinp[1], NC * sizeof(floatX));

    for (int r = 0; r < 2; r++) { cudaCheck(cudaFree(d_dinp[r])); cudaCheck(cudaFree(d_dw[r])); }
    cudaCheck(cudaFree(d_a)); cudaCheck(cudaFree(d_b)); cudaCheck(cudaFree(d_w)); cudaCheck(cudaFree(d_dy));
    cudaCheck(cudaFree(d_res)); cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_rstd)); cudaCheck(cudaFree(d_scratch));
}

int main(void) {
    Rng rng;
    rng_init(&rng, 1234);
    check_shape(2 * 1000, 2048, &rng);
    check_shape(2 * 1000, 1024, &rng);
    check_shape(3 * 37, 16, &rng);

    // timing: fused forward and backward at N = 8 x 4096 tokens, C = 2048
    const int N = 8 * 4096, C = 2048;
    const size_t NC = (size_t)N * C;
    floatX *a = random_device<floatX>(NC, &rng), *b = random_device<floatX>(NC, &rng);
    floatX *dy = random_device<floatX>(NC, &rng), *dinp = random_device<floatX>(NC, &rng);
    floatX *w = to_device<floatX>(std::vector<float>(C, 1.0f)), *dw = to_device<floatX>(std::vector<float>(C, 0.0f));
    floatX *res, *out;
    float *rstd, *scratch;
    cudaCheck(cudaMalloc(&res, NC * sizeof(floatX)));
    cudaCheck(cudaMalloc(&out, NC * sizeof(floatX)));
    cudaCheck(cudaMalloc(&rstd, N * sizeof(float)));
    cudaCheck(cudaMalloc(&scratch, rmsnorm_backward_scratch_bytes(C)));
    const float fwd = time_ms([&] { fused_residual_rmsnorm_forward(res, out, rstd, a, b, w, N, C, 0); });
    const float bwd = time_ms([&] { rmsnorm_backward(dinp, dw, scratch, dy, res, w, rstd, N, C, 0); });
    const double fwd_bytes = 4.0 * NC * sizeof(floatX), bwd_bytes = 4.0 * NC * sizeof(floatX);
    printf("fused fwd %.4f ms (%.0f GB/s), bwd %.4f ms (%.0f GB/s)\n", fwd, gbps(fwd_bytes, fwd), bwd, gbps(bwd_bytes, bwd));
    return layer_finish("rmsnorm", "N=32768 C=2048 (fused fwd)", fwd, gbps(fwd_bytes, fwd), bwd, gbps(bwd_bytes, bwd), "GB/s");
}
