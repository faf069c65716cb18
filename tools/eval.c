/*
 Evaluates one checkpoint on the CPU: the fp32 reference model with KV-cache decoding (llmc/eval/kv_cache.h)
 behind the shared evaluation driver (llmc/eval/eval_driver.h: LM accuracy, synthetic needles, RULER,
 LongBench, WikiText-2, LAMBADA, multiple choice, greedy trace; llmc/eval/eval_cpu.h). eval_gpt_moba.cu is the
 same driver on the GPU.
 Usage: scripts/eval.sh, or build/eval -c ckpt ... (-h lists the flags). doc/eval.md has the details.
*/
#define TESTING
#include "train_gpt_moba.c"
#include "llmc/eval/kv_cache.h"
#include "llmc/eval/eval_driver.h"
#include "llmc/eval/eval_cpu.h"

int main(int argc, char **argv) {
    EvalArgs a = parse_eval_args(argc, argv);
    CheckpointHeader h;
    fclose(checkpoint_open(a.ckpt, &h));
    Model m;
    model_init(&m, &h.cfg, 1);
    model_load_checkpoint(&m, a.ckpt, 0);
    cpu_eval_run(&a, &m, (unsigned long long)h.step, "CPU fp32");
    model_free(&m);
    return 0;
}
