/*
 Evaluates one checkpoint on the CPU: the fp32 reference model with KV-cache decoding (llmc/kv_cache.h)
 behind the shared evaluation driver (llmc/eval_driver.h: LM accuracy, synthetic needles, RULER,
 LongBench, multiple choice, greedy trace). eval_gpt_moba.cu is the same driver on the GPU.
 Usage: scripts/eval.sh, or build/eval -c ckpt ... (-h lists the flags). doc/eval.md has the details.
*/
#define TESTING
#include "train_gpt_moba.c"
#include "llmc/kv_cache.h"
#include "llmc/eval_driver.h"

typedef struct { Model m; KVCache kv; } CpuEval;

static const float *cpu_prefill(void *ctx, const int *tokens, int n) { CpuEval *e = (CpuEval *)ctx; return kv_prefill(&e->kv, &e->m, tokens, n); }
static const float *cpu_step(void *ctx, int token) { CpuEval *e = (CpuEval *)ctx; return kv_step(&e->kv, &e->m, token); }

static void cpu_score(void *ctx, const int *inputs, const int *targets, int B, int T, float *losses, int *argmax) {
    Model *m = &((CpuEval *)ctx)->m;
    int V = m->cfg.vocab_size;
    model_reserve(m, B, T);
    model_forward(m, inputs, targets, B, T);
    for (size_t n = 0; n < (size_t)B * T; n++) {
        losses[n] = targets[n] >= 0 ? m->a.losses[n] : 0.0f;
        if (argmax) { argmax[n] = argmax_logits(m->a.logits + n * V, V); }
    }
}

int main(int argc, char **argv) {
    EvalArgs a = parse_eval_args(argc, argv);
    CheckpointHeader h;
    fclose(checkpoint_open(a.ckpt, &h));
    CpuEval e;
    model_init(&e.m, &h.cfg, 1);
    model_load_checkpoint(&e.m, a.ckpt, 0);
    EvalModel em = {&e, e.m.cfg, eval_capacity(&a, &e.m.cfg), cpu_prefill, cpu_step, cpu_score, "CPU fp32"};
    kv_init(&e.kv, &em.cfg, em.capacity);
    eval_run(&a, &em, (unsigned long long)h.step);
    kv_free(&e.kv);
    model_free(&e.m);
    return 0;
}
