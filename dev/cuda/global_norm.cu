/*
 Deterministic squared gradient norm over several tensors of odd sizes at unaligned offsets vs a
 double-precision CPU sum, bit-identical rerun, and timing on a 268M-element tensor.
   make build/cuda/global_norm && ./build/cuda/global_norm
*/
#include "dev/cuda/layer_check.h"
#include "llmc/global_norm.cuh"

int main(void) {
    Rng rng;
    rng_init(&rng, 11);
    // tensor sizes and offsets inside one buffer, as parameter tensors lie in the trainer's gradient buffer
    const size_t sizes[] = {32000 * 64 + 3, 7, 2048 * 3, 1, 999999};
    const int num = sizeof(sizes) / sizeof(sizes[0]);
    size_t total = 0;
    for (int i = 0; i < num; i++) { total += sizes[i]; }
    printf("check %d tensors, %zu elements (%s)\n", num, total, PRECISION_NAME);
    std::vector<float> g = round_through<floatX>(random_vector(total, &rng, 1e-2f));
    double ref = 0.0;
    for (size_t i = 0; i < total; i++) { ref += (double)g[i] * g[i]; }
    floatX *d_g = to_device<floatX>(g);
    float *d_partials, *d_out[2];
    cudaCheck(cudaMalloc(&d_partials, GLOBAL_NORM_BLOCKS * sizeof(float)));
    for (int r = 0; r < 2; r++) {
        cudaCheck(cudaMalloc(&d_out[r], sizeof(float)));
        poison(d_partials, GLOBAL_NORM_BLOCKS * sizeof(float)); poison(d_out[r], sizeof(float));
        size_t offset = 0;
        for (int i = 0; i < num; i++) {
            global_norm_squared(d_partials, d_g + offset, sizes[i], i == 0, 0);
            offset += sizes[i];
        }
        global_norm_reduce(d_out[r], d_partials, 0);
    }
    check("norm^2", from_device(d_out[0], 1), std::vector<float>(1, (float)ref));
    check_bit_identical("norm^2", d_out[0], d_out[1], sizeof(float));

    const size_t N = (size_t)1 << 28;
    floatX *big = random_device<floatX>(N, &rng, 1e-2f);
    const float ms = time_ms([&] {
        global_norm_squared(d_partials, big, N, true, 0);
        global_norm_reduce(d_out[0], d_partials, 0);
    });
    return layer_finish("global_norm", "n=268M", ms, gbps(N * sizeof(floatX), ms), 0.0f, 0.0, "GB/s");
}
