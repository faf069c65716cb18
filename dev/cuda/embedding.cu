/*
 Token embedding forward (gather) and deterministic backward (sorted scatter-add) vs a CPU reference,
 bit-identical rerun of the backward, and timing. Tokens are skewed (half from 10 hot tokens) so some
 embedding rows collect hundreds of gradients, as real text does.
   make build/cuda/embedding && ./build/cuda/embedding
*/
#include "dev/cuda/layer_check.h"
#include "llmc/embedding.cuh"

static std::vector<int> random_tokens(int N, int V, Rng *rng) {
    std::vector<int> tok(N);
    for (int n = 0; n < N; n++) { tok[n] = (rng_uniform(rng) < 0.5f) ? (int)rng_below(rng, 10) * 7 % V : (int)rng_below(rng, V); }
    return tok;
}

static int *tokens_to_device(const std::vector<int> &tok) {
    int *d;
    cudaCheck(cudaMalloc(&d, tok.size() * sizeof(int)));
    cudaCheck(cudaMemcpy(d, tok.data(), tok.size() * sizeof(int), cudaMemcpyHostToDevice));
    return d;
}

static void check_shape(int N, int C, int V, Rng *rng) {
    printf("check N=%d C=%d V=%d (%s)\n", N, C, V, PRECISION_NAME);
    const size_t NC = (size_t)N * C, VC = (size_t)V * C;
    std::vector<int> tok = random_tokens(N, V, rng);
    std::vector<float> wte = round_through<floatX>(random_vector(VC, rng)), dout = round_through<floatX>(random_vector(NC, rng));
    std::vector<float> dwte0 = round_through<floatX>(random_vector(VC, rng));
    std::vector<float> out_ref(NC), dwte_ref = dwte0;
    std::vector<double> acc(VC, 0.0);
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            out_ref[(size_t)n * C + c] = wte[(size_t)tok[n] * C + c];
            acc[(size_t)tok[n] * C + c] += dout[(size_t)n * C + c];
        }
    }
    for (size_t i = 0; i < VC; i++) { dwte_ref[i] = (float)(dwte0[i] + acc[i]); }

    int *d_tok = tokens_to_device(tok);
    floatX *d_wte = to_device<floatX>(wte), *d_dout = to_device<floatX>(dout), *d_out;
    cudaCheck(cudaMalloc(&d_out, NC * sizeof(floatX)));
    poison(d_out, NC * sizeof(floatX));
    encoder_forward(d_out, d_tok, d_wte, N, C, V, 0);
    check("fwd out", from_device(d_out, NC), out_ref);

    void *d_scratch;
    cudaCheck(cudaMalloc(&d_scratch, encoder_backward_scratch_bytes(N, V)));
    floatX *d_dwte[2];
    for (int r = 0; r < 2; r++) {
        d_dwte[r] = to_device<floatX>(dwte0);
        poison(d_scratch, encoder_backward_scratch_bytes(N, V));
        encoder_backward(d_dwte[r], d_scratch, d_dout, d_tok, N, C, V, 0);
    }
    check("bwd dwte", from_device(d_dwte[0], VC), dwte_ref);
    check_bit_identical("bwd dwte", d_dwte[0], d_dwte[1], VC * sizeof(floatX));
    for (int r = 0; r < 2; r++) { cudaCheck(cudaFree(d_dwte[r])); }
    cudaCheck(cudaFree(d_tok)); cudaCheck(cudaFree(d_wte)); cudaCheck(cudaFree(d_dout));
    cudaCheck(cudaFree(d_out)); cudaCheck(cudaFree(d_scratch));
}

int main(void) {
    Rng rng;
    rng_init(&rng, 99);
    check_shape(2 * 1000, 1024, 32000, &rng);
    check_shape(3 * 37, 16, 64, &rng);
    check_shape(2 * 1000, 512, 50257, &rng);

    const int N = 8 * 4096, C = 2048, V = 32000;
    const size_t NC = (size_t)N * C;
    int *tok = tokens_to_device(random_tokens(N, V, &rng));
    floatX *wte = random_device<floatX>((size_t)V * C, &rng), *dwte = random_device<floatX>((size_t)V * C, &rng);
    floatX *dout = random_device<floatX>(NC, &rng), *out;
    void *scratch;
    cudaCheck(cudaMalloc(&out, NC * sizeof(floatX)));
    cudaCheck(cudaMalloc(&scratch, encoder_backward_scratch_bytes(N, V)));
    const float fwd = time_ms([&] { encoder_forward(out, tok, wte, N, C, V, 0); });
    const float bwd = time_ms([&] { encoder_backward(dwte, scratch, dout, tok, N, C, V, 0); });
    // minimal traffic: fwd reads + writes N*C; bwd reads N*C (+ the touched dwte rows, ignored)
    return layer_finish("embedding", "N=32768 C=2048 V=32000", fwd, gbps(2.0 * NC * sizeof(floatX), fwd), bwd,
                        gbps(1.0 * NC * sizeof(floatX), bwd), "GB/s");
}
