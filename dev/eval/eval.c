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

// The batched forward for scoring; generation goes through the cache (kv_prefill_fn, kv_step_fn).
static void cpu_score(void *ctx, const int *inputs, const int *targets, int B, int T, float *losses, int *argmax) {
    Model *m = ((KVModel *)ctx)->m;
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
    Model m;
    KVCache kv;
    KVModel km = {&kv, &m};
    model_init(&m, &h.cfg, 1);
    model_load_checkpoint(&m, a.ckpt, 0);
    EvalModel em = {&km, m.cfg, eval_capacity(&a, &m.cfg), kv_prefill_fn, kv_step_fn, cpu_score, "CPU fp32"};
    kv_init(&kv, &em.cfg, em.capacity);
    eval_run(&a, &em, (unsigned long long)h.step);
    kv_free(&kv);
    model_free(&m);
    return 0;
}
