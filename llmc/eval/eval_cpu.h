/*
 The CPU reference model (train_gpt_moba.c) as the evaluation driver's EvalModel: generation through the
 KV cache (llmc/eval/kv_cache.h) and scoring through the batched training forward.
*/
#ifndef LLMC_EVAL_CPU_H
#define LLMC_EVAL_CPU_H

#include "eval_driver.h"
#include "kv_cache.h"

// The batched forward for scoring: per-position losses of the targets (0 where -1) and the argmax tokens.
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

// Runs the tasks of `a` on model m, with a KV cache of the size they need.
static void cpu_eval_run(EvalArgs *a, Model *m, unsigned long long step, const char *device) {
    KVCache kv;
    KVModel km = {&kv, m};
    EvalModel em = {&km, m->cfg, eval_capacity(a, &m->cfg), kv_prefill_fn, kv_step_fn, cpu_score, device};
    kv_init(&kv, &em.cfg, em.capacity);
    eval_run(a, &em, step);
    kv_free(&kv);
}

#endif // LLMC_EVAL_CPU_H
