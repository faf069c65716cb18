/*
 Per-phase timing of one training step of the CUDA trainer (train_gpt_moba.cu, included unchanged):
 where do the milliseconds of a step go (embedding, attention forward/backward, matmuls, norms, SwiGLU,
 classifier, AdamW, gradient norm)?
 How: after the layer headers are included, each layer function the trainer calls is redefined as a
 macro that calls it and then records a CUDA event named after it, so every interval between two
 consecutive events is charged to the call that closes it (host gaps and memcpys in between included).
 The trainer itself carries no timing code. Random tokens, no data files; steps as train_main runs them
 (zero grad, forward, backward, AdamW), the first step is a warm-up, the table is the mean of the others.
   ./build/cuda/step_phases [trainer flags]    e.g. -p 340M -A dense -W 0 -b 4 -t 8192
 Prints one markdown row per phase: calls per step, ms per step, share of the step; then the step's wall
 time, tokens/s and MFU as the trainer counts them, and the GPU memory in use (cudaMemGetInfo, as the trainer).
*/
#include <map>
#include <string>
#include <vector>

#include "llmc/cuda_common.cuh"
#include "llmc/cuda_utils.cuh"
#include "llmc/adamw.cuh"
#include "llmc/classifier.cuh"
#include "llmc/embedding.cuh"
#include "llmc/flash_attention.cuh"
#include "llmc/global_norm.cuh"
#include "llmc/matmul.cuh"
#include "llmc/moba_gate.cuh"
#include "llmc/qkv_prep.cuh"
#include "llmc/rmsnorm.cuh"
#include "llmc/swiglu.cuh"

static std::vector<cudaEvent_t> phase_events;
static std::vector<const char *> phase_names;
static size_t phase_count = 0;

static void phase_mark(const char *name) {
    if (phase_count == phase_events.size()) {
        cudaEvent_t e;
        cudaCheck(cudaEventCreate(&e));
        phase_events.push_back(e);
        phase_names.push_back(name);
    }
    phase_names[phase_count] = name;
    cudaCheck(cudaEventRecord(phase_events[phase_count++], 0));
}

// A function-like macro is not expanded inside its own replacement, so the inner call is the real one.
#define PHASE_WRAP(fn, name, ...) (fn(__VA_ARGS__), phase_mark(name))
#define encoder_forward(...) PHASE_WRAP(encoder_forward, "embedding fwd", __VA_ARGS__)
#define encoder_backward(...) PHASE_WRAP(encoder_backward, "embedding bwd", __VA_ARGS__)
#define rmsnorm_forward(...) PHASE_WRAP(rmsnorm_forward, "rmsnorm fwd", __VA_ARGS__)
#define fused_residual_rmsnorm_forward(...) PHASE_WRAP(fused_residual_rmsnorm_forward, "residual+rmsnorm fwd", __VA_ARGS__)
#define rmsnorm_backward(...) PHASE_WRAP(rmsnorm_backward, "rmsnorm bwd", __VA_ARGS__)
#define matmul_forward(...) PHASE_WRAP(matmul_forward, "matmul fwd", __VA_ARGS__)
#define matmul_backward(...) PHASE_WRAP(matmul_backward, "matmul bwd", __VA_ARGS__)
#define qkv_prep_forward(...) PHASE_WRAP(qkv_prep_forward, "qkv prep (kconv, rope) fwd", __VA_ARGS__)
#define qkv_prep_backward(...) PHASE_WRAP(qkv_prep_backward, "qkv prep (kconv, rope) bwd", __VA_ARGS__)
#define moba_gate(...) PHASE_WRAP(moba_gate, "moba gate", __VA_ARGS__)
#define attention_forward(...) PHASE_WRAP(attention_forward, "attention fwd", __VA_ARGS__)
#define attention_backward(...) PHASE_WRAP(attention_backward, "attention bwd", __VA_ARGS__)
#define swiglu_forward(...) PHASE_WRAP(swiglu_forward, "swiglu fwd", __VA_ARGS__)
#define swiglu_backward(...) PHASE_WRAP(swiglu_backward, "swiglu bwd", __VA_ARGS__)
#define fused_classifier(...) PHASE_WRAP(fused_classifier, "classifier (lm-head softmax+xent)", __VA_ARGS__)
#define adamw_update(...) PHASE_WRAP(adamw_update, "adamw", __VA_ARGS__)
#define global_norm_reduce(...) PHASE_WRAP(global_norm_reduce, "grad norm", __VA_ARGS__)

#define TESTING
#include "train_gpt_moba.cu"

int main(int argc, char **argv) {
    TrainArgs args = parse_args(argc, argv);
    ModelConfig cfg = config_from_args(&args);
    GPT model;
    gpt_init(&model, &cfg, args.seed, args.recompute, args.deterministic);
    AdamWConfig opt = {args.lr, 0.9f, 0.95f, 1e-8f, args.weight_decay, args.grad_clip};
    int B = args.B, T = args.T, N = B * T, steps = 4;
    std::vector<int> inputs(N), targets(N);
    Rng rng;
    rng_init(&rng, args.seed);
    for (int n = 0; n < N; n++) {
        inputs[n] = (int)rng_below(&rng, cfg.vocab_size);
        targets[n] = (int)rng_below(&rng, cfg.vocab_size);
    }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    std::map<std::string, std::pair<double, int>> acc;  // name -> (ms summed over timed steps, calls)
    std::vector<std::string> order;
    double wall = 0.0, span = 0.0;
    for (int step = 0; step < steps; step++) {
        cudaCheck(cudaDeviceSynchronize());
        double t0 = now_seconds();
        phase_count = 0;
        phase_mark("start");
        gpt_zero_grad(&model);
        gpt_forward_train(&model, inputs.data(), targets.data(), B, T, 1.0f);
        gpt_backward(&model, 1.0f);
        gpt_update(&model, &opt, args.lr, step + 1);
        cudaCheck(cudaDeviceSynchronize());
        double dt = now_seconds() - t0;
        if (step == 0) { continue; }  // warm-up: cuBLASLt heuristics, lazy allocations
        wall += dt * 1000.0;
        for (size_t i = 1; i < phase_count; i++) {
            float ms;
            cudaCheck(cudaEventElapsedTime(&ms, phase_events[i - 1], phase_events[i]));
            std::string name = phase_names[i];
            if (acc.find(name) == acc.end()) { order.push_back(name); }
            acc[name].first += ms;
            acc[name].second++;
            span += ms;
        }
    }
    int timed = steps - 1;
    config_print(&cfg, stdout);
    printf("%s, B %d T %d, recompute %d, deterministic %d, %d timed steps\n", prop.name, B, T, args.recompute,
           args.deterministic, timed);
    printf("| phase | calls/step | ms/step | share |\n| --- | --- | --- | --- |\n");
    for (const std::string &name : order) {
        double ms = acc[name].first / timed;
        printf("| %s | %d | %.2f | %.1f%% |\n", name.c_str(), acc[name].second / timed, ms, 100.0 * ms / (span / timed));
    }
    printf("| all events | | %.2f | 100%% |\n", span / timed);
    double tok_s = N / (wall / timed / 1000.0);
    printf("step wall time %.2f ms = %.0f tokens/s, MFU %.1f%%, GPU memory in use %.1f GiB\n", wall / timed, tok_s,
           100.0 * tok_s * flops_per_token(&model, T) / PEAK_BF16_FLOPS, gpu_memory_used_gib());
    gpt_free(&model);
    return 0;
}
