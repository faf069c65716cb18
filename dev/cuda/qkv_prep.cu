/*
 Fused qkv split + key convolution (k + SiLU(conv(k))) + RoPE, forward and backward (dqkv, dkconvw
 overwrite and accumulate) vs a double-precision CPU reference written the other way round (the backward
 scatters along the forward's data flow), for W = 0, 3, 5, with RoPE and without (NoPE), T not a multiple of
 anything, a bit-identical rerun of dkconvw, then timing.
   make build/cuda/qkv_prep && ./build/cuda/qkv_prep
*/
#include "dev/cuda/layer_check.h"
#include "llmc/qkv_prep.cuh"

struct Shape { int B, T, NH, HD, W; bool rope = true; };

static double rope_angle(int t, int i, int HD, double theta) { return t * pow(theta, -2.0 * i / HD); }

static void qkv_prep_cpu(std::vector<float> &q, std::vector<float> &k, std::vector<float> &v,
                         std::vector<float> &dqkv, std::vector<float> &dkconvw, const std::vector<float> &qkv,
                         const std::vector<float> &kconvw, const std::vector<float> &dq, const std::vector<float> &dk,
                         const std::vector<float> &dv, Shape s, double theta) {
    const int C = s.NH * s.HD, half = s.HD / 2;
    std::vector<double> gqkv(dqkv.size(), 0.0), gconv(dkconvw.size(), 0.0);
    for (int b = 0; b < s.B; b++) for (int t = 0; t < s.T; t++) for (int h = 0; h < s.NH; h++) for (int i = 0; i < half; i++) {
        const size_t n = (size_t)b * s.T + t, o = (((size_t)b * s.NH + h) * s.T + t) * s.HD + i;
        const int c[2] = {h * s.HD + i, h * s.HD + i + half};
        const double a = s.rope ? rope_angle(t, i, s.HD, theta) : 0.0, cs = cos(a), sn = sin(a);
        double x[2] = {qkv[n * 3 * C + c[0]], qkv[n * 3 * C + c[1]]};
        q[o] = (float)(x[0] * cs - x[1] * sn); q[o + half] = (float)(x[1] * cs + x[0] * sn);
        double kk[2], z[2];
        for (int j = 0; j < 2; j++) {
            z[j] = 0.0;
            for (int w = 0; w < s.W && t - w >= 0; w++) { z[j] += (double)kconvw[c[j] * s.W + w] * qkv[(n - w) * 3 * C + C + c[j]]; }
            kk[j] = qkv[n * 3 * C + C + c[j]] + (s.W ? z[j] / (1.0 + exp(-z[j])) : 0.0);
        }
        k[o] = (float)(kk[0] * cs - kk[1] * sn); k[o + half] = (float)(kk[1] * cs + kk[0] * sn);
        v[o] = qkv[n * 3 * C + 2 * C + c[0]]; v[o + half] = qkv[n * 3 * C + 2 * C + c[1]];
        // backward: transpose of each step above, scattered into the inputs
        gqkv[n * 3 * C + c[0]] += dq[o] * cs + dq[o + half] * sn;
        gqkv[n * 3 * C + c[1]] += -dq[o] * sn + dq[o + half] * cs;
        const double gk[2] = {dk[o] * cs + dk[o + half] * sn, -dk[o] * sn + dk[o + half] * cs};
        for (int j = 0; j < 2; j++) {
            gqkv[n * 3 * C + C + c[j]] += gk[j];
            const double sg = 1.0 / (1.0 + exp(-z[j])), dz = gk[j] * sg * (1.0 + z[j] * (1.0 - sg));
            for (int w = 0; w < s.W && t - w >= 0; w++) {
                gqkv[(n - w) * 3 * C + C + c[j]] += kconvw[c[j] * s.W + w] * dz;
                gconv[c[j] * s.W + w] += dz * qkv[(n - w) * 3 * C + C + c[j]];
            }
            gqkv[n * 3 * C + 2 * C + c[j]] += dv[o + j * half];
        }
    }
    for (size_t i = 0; i < dqkv.size(); i++) { dqkv[i] = (float)gqkv[i]; }
    for (size_t i = 0; i < dkconvw.size(); i++) { dkconvw[i] += (float)gconv[i]; }
}

static void check_shape(Shape s, Rng *rng) {
    printf("check B=%d T=%d NH=%d HD=%d W=%d %s (%s)\n", s.B, s.T, s.NH, s.HD, s.W, s.rope ? "RoPE" : "NoPE", PRECISION_NAME);
    const int C = s.NH * s.HD, N = s.B * s.T, max_T = s.T + 100;
    const size_t NC = (size_t)N * C, CW = (size_t)C * s.W;
    const float theta = 10000.0f;
    std::vector<float> qkv = round_through<floatX>(random_vector(3 * NC, rng));
    std::vector<float> kconvw = round_through<floatX>(random_vector(CW, rng, 0.5f));
    std::vector<float> dq = round_through<floatX>(random_vector(NC, rng)), dk = round_through<floatX>(random_vector(NC, rng));
    std::vector<float> dv = round_through<floatX>(random_vector(NC, rng)), dconv0 = round_through<floatX>(random_vector(CW, rng));
    std::vector<float> q_ref(NC), k_ref(NC), v_ref(NC), dqkv_ref(3 * NC), dconv_ref(CW, 0.0f), dconv_acc_ref = dconv0;
    qkv_prep_cpu(q_ref, k_ref, v_ref, dqkv_ref, dconv_ref, qkv, kconvw, dq, dk, dv, s, theta);
    for (size_t i = 0; i < CW; i++) { dconv_acc_ref[i] += dconv_ref[i]; }

    float *d_rope;
    cudaCheck(cudaMalloc(&d_rope, rope_table_bytes(max_T, s.HD)));
    rope_table_init(d_rope, max_T, s.HD, theta);
    floatX *d_qkv = to_device<floatX>(qkv), *d_conv = s.W ? to_device<floatX>(kconvw) : NULL;
    floatX *d_dq = to_device<floatX>(dq), *d_dk = to_device<floatX>(dk), *d_dv = to_device<floatX>(dv);
    floatX *d_q, *d_k, *d_v, *d_dqkv;
    cudaCheck(cudaMalloc(&d_q, NC * sizeof(floatX))); cudaCheck(cudaMalloc(&d_k, NC * sizeof(floatX)));
    cudaCheck(cudaMalloc(&d_v, NC * sizeof(floatX))); cudaCheck(cudaMalloc(&d_dqkv, 3 * NC * sizeof(floatX)));
    poison(d_q, NC * sizeof(floatX)); poison(d_k, NC * sizeof(floatX)); poison(d_v, NC * sizeof(floatX));
    const float *rope = s.rope ? d_rope : NULL;
    qkv_prep_forward(d_q, d_k, d_v, d_qkv, d_conv, rope, s.B, s.T, s.NH, s.HD, s.W, 0);
    check("fwd q", from_device(d_q, NC), q_ref);
    check("fwd k", from_device(d_k, NC), k_ref);
    check("fwd v", from_device(d_v, NC), v_ref);

    float *d_scratch = NULL;
    if (s.W) { cudaCheck(cudaMalloc(&d_scratch, qkv_prep_backward_scratch_bytes(C, s.W))); }
    floatX *d_dconv[3] = {NULL, NULL, NULL}; // overwrite, overwrite again (rerun), accumulate
    for (int r = 0; r < 3; r++) {
        if (s.W) {
            d_dconv[r] = to_device<floatX>(dconv0);
            if (r < 2) { poison(d_dconv[r], CW * sizeof(floatX)); }
            poison(d_scratch, qkv_prep_backward_scratch_bytes(C, s.W));
        }
        poison(d_dqkv, 3 * NC * sizeof(floatX));
        qkv_prep_backward(d_dqkv, d_dconv[r], d_scratch, d_dq, d_dk, d_dv, d_qkv, d_conv, rope, s.B, s.T, s.NH, s.HD,
                          s.W, r == 2, 0);
    }
    check("bwd dqkv", from_device(d_dqkv, 3 * NC), dqkv_ref);
    if (s.W) {
        check("bwd dkconvw", from_device(d_dconv[0], CW), dconv_ref);
        check("bwd dkconvw +=", from_device(d_dconv[2], CW), dconv_acc_ref);
        check_bit_identical("bwd dkconvw", d_dconv[0], d_dconv[1], CW * sizeof(floatX));
        for (int r = 0; r < 3; r++) { cudaCheck(cudaFree(d_dconv[r])); }
        cudaCheck(cudaFree(d_scratch)); cudaCheck(cudaFree(d_conv));
    }
    cudaCheck(cudaFree(d_rope)); cudaCheck(cudaFree(d_qkv)); cudaCheck(cudaFree(d_dq)); cudaCheck(cudaFree(d_dk));
    cudaCheck(cudaFree(d_dv)); cudaCheck(cudaFree(d_q)); cudaCheck(cudaFree(d_k)); cudaCheck(cudaFree(d_v));
    cudaCheck(cudaFree(d_dqkv));
}

int main(void) {
    Rng rng;
    rng_init(&rng, 17);
    for (int W : {0, 3, 5}) { check_shape({2, 1000, 16, 64, W}, &rng); }
    for (int W : {0, 3, 5}) { check_shape({2, 333, 4, 64, W, false}, &rng); }  // NoPE (the paper's global layers)
    check_shape({3, 37, 2, 8, 3}, &rng);
    check_shape({1, 2, 4, 128, 5}, &rng); // T shorter than the convolution
    check_shape({2, 37, 3, 12, 3}, &rng); // HD/2 = 6: two pairs per thread
    check_shape({1, 50, 2, 10, 5}, &rng); // HD/2 = 5: one pair per thread

    // timing: 1B preset attention input, 8 x 4096 tokens, kconv 3
    const int B = 8, T = 4096, NH = 16, HD = 128, W = 3, C = NH * HD;
    const size_t NC = (size_t)B * T * C;
    float *rope, *scratch;
    cudaCheck(cudaMalloc(&rope, rope_table_bytes(T, HD)));
    rope_table_init(rope, T, HD, 10000.0f);
    cudaCheck(cudaMalloc(&scratch, qkv_prep_backward_scratch_bytes(C, W)));
    floatX *qkv = random_device<floatX>(3 * NC, &rng), *conv = random_device<floatX>((size_t)C * W, &rng);
    floatX *q = random_device<floatX>(NC, &rng), *k = random_device<floatX>(NC, &rng), *v = random_device<floatX>(NC, &rng);
    floatX *dqkv = random_device<floatX>(3 * NC, &rng), *dconv = random_device<floatX>((size_t)C * W, &rng);
    const float fwd = time_ms([&] { qkv_prep_forward(q, k, v, qkv, conv, rope, B, T, NH, HD, W, 0); });
    const float bwd = time_ms([&] { qkv_prep_backward(dqkv, dconv, scratch, q, k, v, qkv, conv, rope, B, T, NH, HD, W, false, 0); });
    // minimal traffic: fwd reads and writes 3C per row; bwd reads dq, dk, dv and k, writes 3C per row
    return layer_finish("qkv_prep", "B=8 T=4096 C=2048 HD=128 W=3", fwd, gbps(6.0 * NC * sizeof(floatX), fwd), bwd,
                        gbps(7.0 * NC * sizeof(floatX), bwd), "GB/s");
}
