/*
 SwiGLU forward and backward vs a double-precision CPU reference, and timing at a training-sized N.
   make build/cuda/swiglu && ./build/cuda/swiglu
*/
#include "dev/cuda/layer_check.h"
#include "llmc/swiglu.cuh"

static void swiglu_cpu(std::vector<float> &h, std::vector<float> &dgu, const std::vector<float> &gu,
                       const std::vector<float> &dh, int N, int F) {
    for (int n = 0; n < N; n++) {
        for (int f = 0; f < F; f++) {
            const double z = gu[(size_t)n * 2 * F + f], up = gu[(size_t)n * 2 * F + F + f];
            const double s = 1.0 / (1.0 + exp(-z)), d = dh[(size_t)n * F + f];
            h[(size_t)n * F + f] = (float)(z * s * up);
            dgu[(size_t)n * 2 * F + f] = (float)(d * up * s * (1.0 + z * (1.0 - s)));
            dgu[(size_t)n * 2 * F + F + f] = (float)(d * z * s);
        }
    }
}

static void check_shape(int N, int F, Rng *rng) {
    printf("check N=%d F=%d (%s)\n", N, F, PRECISION_NAME);
    const size_t NF = (size_t)N * F;
    std::vector<float> gu = round_through<floatX>(random_vector(2 * NF, rng, 2.0f)), dh = round_through<floatX>(random_vector(NF, rng));
    std::vector<float> h_ref(NF), dgu_ref(2 * NF);
    swiglu_cpu(h_ref, dgu_ref, gu, dh, N, F);
    floatX *d_gu = to_device<floatX>(gu), *d_dh = to_device<floatX>(dh), *d_h, *d_dgu;
    cudaCheck(cudaMalloc(&d_h, NF * sizeof(floatX)));
    cudaCheck(cudaMalloc(&d_dgu, 2 * NF * sizeof(floatX)));
    poison(d_h, NF * sizeof(floatX)); poison(d_dgu, 2 * NF * sizeof(floatX));
    swiglu_forward(d_h, d_gu, N, F, 0);
    swiglu_backward(d_dgu, d_dh, d_gu, N, F, 0);
    check("fwd h", from_device(d_h, NF), h_ref);
    check("bwd dgu", from_device(d_dgu, 2 * NF), dgu_ref);
    swiglu_backward(d_gu, d_dh, d_gu, N, F, 0); // in place: dgu aliasing gu
    check("bwd in place", from_device(d_gu, 2 * NF), dgu_ref);
    cudaCheck(cudaFree(d_gu)); cudaCheck(cudaFree(d_dh)); cudaCheck(cudaFree(d_h)); cudaCheck(cudaFree(d_dgu));
}

int main(void) {
    Rng rng;
    rng_init(&rng, 4321);
    check_shape(2 * 1000, 8192, &rng);
    check_shape(2 * 1000, 2816, &rng);
    check_shape(3 * 37, 40, &rng);

    const int N = 8 * 4096, F = 8192;
    const size_t NF = (size_t)N * F;
    floatX *gu = random_device<floatX>(2 * NF, &rng), *dh = random_device<floatX>(NF, &rng), *h, *dgu;
    cudaCheck(cudaMalloc(&h, NF * sizeof(floatX)));
    cudaCheck(cudaMalloc(&dgu, 2 * NF * sizeof(floatX)));
    const float fwd = time_ms([&] { swiglu_forward(h, gu, N, F, 0); });
    const float bwd = time_ms([&] { swiglu_backward(dgu, dh, gu, N, F, 0); });
    const double fwd_bytes = 3.0 * NF * sizeof(floatX), bwd_bytes = 5.0 * NF * sizeof(floatX);
    return layer_finish("swiglu", "N=32768 F=8192", fwd, gbps(fwd_bytes, fwd), bwd, gbps(bwd_bytes, bwd), "GB/s");
}
