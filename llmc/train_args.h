/*
 The command line shared by the CPU reference and the CUDA trainer (llm.c style: every flag is
 "-x value", -h lists them all with their defaults) and the model config it selects. Both trainers take
 the same flags so a run moves between them unchanged; flags marked (CUDA) are accepted and ignored by
 the CPU reference. The run directory is llmc/run_dir.h's, validation and samples llmc/run_eval.h's.
*/
#ifndef LLMC_TRAIN_ARGS_H
#define LLMC_TRAIN_ARGS_H

#include <errno.h>
#include <glob.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "checkpoint.h"
#include "config.h"
#include "dataloader.h"
#include "rendezvous.h"
#include "schedulers.h"
#include "synthetic.h"
#include "text_tokenizer.h"
#include "utils.h"

typedef struct {
    const char *train_pattern, *val_pattern, *out_dir, *preset, *attn, *schedule, *init_ckpt, *debug_state, *tokenizer;
    const char *layout, *global_pos;  // -Y, -E; NULL: the preset's
    int swa_window;                   // -w; -1: the preset's
    int B, T, total_batch, warmup, steps, val_every, val_batches, ckpt_every, resume, debug_steps, vocab_override;
    int moba_block, moba_topk, kconv, n_dense_last, sample_tokens, keep_ckpts;
    int nonfinite_limit;  // stop after this many steps in a row with a NaN/Inf loss or gradient norm
    int recompute, deterministic;  // CUDA trainer only
    // CUDA trainer only, data parallel (doc/multi_gpu.md): process group, run tag, ZeRO stage, watchdog
    const char *process_group, *run_tag;
    int zero_stage, total_batch_default;  // total_batch_default: no -d given, one micro-batch per process
    float collective_timeout_s;
    float lr, final_frac, weight_decay, grad_clip, time_limit_min;
    uint64_t seed;
} TrainArgs;

static inline void print_usage(const char *program, const TrainArgs *d) {
    printf("usage: %s [-flag value]...\n", program);
    printf("data\n");
    printf("  -i  train shards (glob)              default %s (made on first use)\n", d->train_pattern);
    printf("  -j  val shards (glob)                default %s\n", d->val_pattern);
    printf("  -o  output dir: log + checkpoint     default %s\n", d->out_dir);
    printf("model\n");
    printf("  -p  preset:");
    for (int i = 0; i < NUM_MODEL_PRESETS; i++) { printf(" %s", model_presets[i].name); }
    printf("   default %s\n", d->preset);
    printf("  -Y  layer layout: paper (layers 1,3,.. sliding window + RoPE; 2,4,.. global) | global (all global)\n");
    printf("                                       default: the preset's (paper)\n");
    printf("  -w  sliding window in keys (paper)   default: the preset's (340M/1B: 256)\n");
    printf("  -E  global layers' positions: nope | rope   default: nope with -Y paper, rope with -Y global\n");
    printf("  -A  global attention: dense | moba   default: the preset's (moba)\n");
    printf("  -B  MoBA block size (power of two)   default: the preset's\n");
    printf("  -K  MoBA top-k blocks (>= 1)         default: the preset's\n");
    printf("  -W  key conv width: 0, 3 or 5 (global layers)  default: the preset's with moba, 0 with -A dense\n");
    printf("  -N  last N layers dense (hybrid)     default %d\n", d->n_dense_last);
    printf("  -V  vocab size                       default: -f's tokenizer's (padded to 64), else the preset's\n");
    printf("training\n");
    printf("  -b  micro-batch size                 default %d\n", d->B);
    printf("  -t  sequence length                  default %d\n", d->T);
    printf("  -d  total batch in tokens (accum)    default %d (= b*t*GPUs, no accumulation)\n", d->total_batch);
    printf("  -l  peak learning rate               default %g\n", d->lr);
    printf("  -u  warmup steps                     default %d\n", d->warmup);
    printf("  -q  final lr fraction                default %g\n", d->final_frac);
    printf("  -k  lr schedule: cosine | wsd        default %s\n", d->schedule);
    printf("  -c  weight decay (matrices)          default %g\n", d->weight_decay);
    printf("  -g  gradient clip (global norm, 0=off) default %g\n", d->grad_clip);
    printf("  -x  optimizer steps                  default %d\n", d->steps);
    printf("  -M  time limit in minutes (0 = none) default %g\n", d->time_limit_min);
    printf("  -a  stop after N steps in a row with a NaN/Inf loss or grad norm (each is skipped)  default %d\n", d->nonfinite_limit);
    printf("  -r  seed                             default %llu\n", (unsigned long long)d->seed);
    printf("eval and checkpoints\n");
    printf("  -v  val every N steps (0 = end only) default %d\n", d->val_every);
    printf("  -m  val batches                      default %d\n", d->val_batches);
    printf("  -s  tokens to generate at the end    default %d\n", d->sample_tokens);
    printf("  -f  tokenizer file (moba.c BPE, tokenizer.model, tokenizer.json): the vocabulary, samples as text\n");
    printf("                                       default none (the preset's vocabulary, samples as token ids)\n");
    printf("  -n  checkpoint every N steps (0=end) default %d\n", d->ckpt_every);
    printf("  -y  resume from the newest <out>/ckpt_*.bin  default %d\n", d->resume);
    printf("  -Z  keep the newest N checkpoints    default %d\n", d->keep_ckpts);
    printf("  -e  init weights from a checkpoint   default none\n");
    printf("  -D  write a debug state here, exit   default none\n");
    printf("  -S  AdamW steps in the debug state   default %d\n", d->debug_steps);
    printf("CUDA trainer only\n");
    printf("  -R  recompute in backward: 0 none, 1 MLP, 2 MLP+attention  default %d\n", d->recompute);
    printf("  -z  deterministic kernels (bit-identical reruns)          default %d\n", d->deterministic);
    printf("CUDA trainer, several GPUs (one process each; -b, -t per GPU, -d global)\n");
    printf("  -P  process group: auto | local | single | mpi | fs:<dir> | tcp:<host:port> | env   default %s\n", d->process_group);
    printf("  -G  run tag naming the fs rendezvous files               default $SLURM_JOB_ID, else moba\n");
    printf("  -O  ZeRO stage: 0 all-reduce, 1 sharded AdamW state      default %d\n", d->zero_stage);
    printf("  -T  seconds a collective may take before all ranks exit  default %g\n", d->collective_timeout_s);
    printf("  -h  this help\n");
}

// The value of flag argv[i] on an llm.c-style command line ("-x value" pairs); dies on any other shape.
static inline const char *flag_value(int argc, char **argv, int i) {
    const char *f = argv[i];
    if (f[0] != '-' || strlen(f) != 2) { die("bad argument '%s': flags are -x value (see -h)", f); }
    if (i + 1 >= argc) { die("flag %s needs a value (see -h)", f); }
    return argv[i + 1];
}

static inline int parse_int(const char *flag, const char *v) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x < -2147483647L || x > 2147483647L) { die("flag %s wants an integer, got '%s'", flag, v); }
    return (int)x;
}

static inline float parse_float(const char *flag, const char *v) {
    char *end;
    float x = strtof(v, &end);
    if (*v == '\0' || *end != '\0' || !isfinite(x)) { die("flag %s wants a number, got '%s'", flag, v); }
    return x;
}

static inline TrainArgs default_args(void) {
    TrainArgs a;
    memset(&a, 0, sizeof(a));
    a.train_pattern = "data/synthetic/train_*.bin"; a.val_pattern = "data/synthetic/val_*.bin"; a.out_dir = "runs/cpu";
    a.preset = "tiny"; a.attn = NULL; a.schedule = "cosine";
    a.B = 8; a.T = 256; a.total_batch = 0; a.warmup = 20; a.steps = 200; a.val_every = 50; a.val_batches = 4;
    a.ckpt_every = 0; a.debug_steps = 3; a.sample_tokens = 32; a.keep_ckpts = 2; a.nonfinite_limit = 5;
    a.layout = NULL; a.global_pos = NULL; a.swa_window = -1;
    a.moba_block = -1; a.moba_topk = -1; a.kconv = -1; a.n_dense_last = 0; a.vocab_override = -1;
    a.lr = 3e-3f; a.final_frac = 0.1f; a.weight_decay = 0.1f; a.grad_clip = 1.0f; a.seed = 1337;
    a.process_group = "auto"; a.run_tag = NULL; a.zero_stage = 1; a.collective_timeout_s = 300.0f;
    return a;
}

static inline TrainArgs parse_args(int argc, char **argv) {
    TrainArgs a = default_args();
    for (int i = 1; i < argc; i += 2) {
        const char *f = argv[i];
        if (strcmp(f, "-h") == 0) { print_usage(argv[0], &a); exit(0); }
        const char *v = flag_value(argc, argv, i);
        switch (f[1]) {
            case 'i': a.train_pattern = v; break;
            case 'j': a.val_pattern = v; break;
            case 'o': a.out_dir = v; break;
            case 'p': a.preset = v; break;
            case 'A': a.attn = v; break;
            case 'Y': a.layout = v; break;
            case 'w': a.swa_window = parse_int(f, v); break;
            case 'E': a.global_pos = v; break;
            case 'B': a.moba_block = parse_int(f, v); break;
            case 'K': a.moba_topk = parse_int(f, v); break;
            case 'W': a.kconv = parse_int(f, v); break;
            case 'N': a.n_dense_last = parse_int(f, v); break;
            case 'V': a.vocab_override = parse_int(f, v); break;
            case 'b': a.B = parse_int(f, v); break;
            case 't': a.T = parse_int(f, v); break;
            case 'd': a.total_batch = parse_int(f, v); break;
            case 'l': a.lr = parse_float(f, v); break;
            case 'u': a.warmup = parse_int(f, v); break;
            case 'q': a.final_frac = parse_float(f, v); break;
            case 'k': a.schedule = v; break;
            case 'c': a.weight_decay = parse_float(f, v); break;
            case 'g': a.grad_clip = parse_float(f, v); break;
            case 'x': a.steps = parse_int(f, v); break;
            case 'M': a.time_limit_min = parse_float(f, v); break;
            case 'r': a.seed = (uint64_t)parse_int(f, v); break;
            case 'v': a.val_every = parse_int(f, v); break;
            case 'm': a.val_batches = parse_int(f, v); break;
            case 's': a.sample_tokens = parse_int(f, v); break;
            case 'n': a.ckpt_every = parse_int(f, v); break;
            case 'y': a.resume = parse_int(f, v); break;
            case 'R': a.recompute = parse_int(f, v); break;
            case 'z': a.deterministic = parse_int(f, v); break;
            case 'Z': a.keep_ckpts = parse_int(f, v); break;
            case 'P': a.process_group = v; break;
            case 'G': a.run_tag = v; break;
            case 'O': a.zero_stage = parse_int(f, v); break;
            case 'T': a.collective_timeout_s = parse_float(f, v); break;
            case 'e': a.init_ckpt = v; break;
            case 'f': a.tokenizer = v; break;
            case 'D': a.debug_state = v; break;
            case 'S': a.debug_steps = parse_int(f, v); break;
            case 'a': a.nonfinite_limit = parse_int(f, v); break;
            default: die("unknown flag %s (see -h)", f);
        }
    }
    if (a.B < 1) { die("micro-batch size -b %d: must be at least 1", a.B); }
    if (a.T < 1) { die("sequence length -t %d: must be at least 1", a.T); }
    if ((long long)a.B * a.T > 2147483647LL) { die("micro-batch -b %d x -t %d is %lld tokens: at most 2147483647", a.B, a.T, (long long)a.B * a.T); }
    if (a.total_batch < 0) { die("total batch -d %d: must be >= 0 (0 = b*t)", a.total_batch); }
    if (a.val_every < 0) { die("val every -v %d: must be >= 0 (0 = at the end only)", a.val_every); }
    if (a.ckpt_every < 0) { die("checkpoint every -n %d: must be >= 0 (0 = at the end only)", a.ckpt_every); }
    if (a.sample_tokens < 0) { die("tokens to generate -s %d: must be >= 0", a.sample_tokens); }
    if (a.debug_steps < 0) { die("debug state steps -S %d: must be >= 0", a.debug_steps); }
    if (a.resume != 0 && a.resume != 1) { die("resume -y %d: must be 0 or 1", a.resume); }
    if (a.deterministic != 0 && a.deterministic != 1) { die("deterministic -z %d: must be 0 or 1", a.deterministic); }
    if (a.nonfinite_limit < 1) { die("non-finite steps in a row -a %d: must be at least 1", a.nonfinite_limit); }
    if (a.time_limit_min < 0) { die("time limit -M %g: must be >= 0 minutes (0 = none)", a.time_limit_min); }
    if (a.weight_decay < 0) { die("weight decay -c %g: must be >= 0", a.weight_decay); }
    if (a.grad_clip < 0) { die("gradient clip -g %g: must be >= 0 (0 = off)", a.grad_clip); }
    if (a.final_frac < 0 || a.final_frac > 1) { die("final lr fraction -q %g: must be between 0 and 1", a.final_frac); }
    if (a.steps < 0) { die("steps -x %d: must be >= 0", a.steps); }
    if (a.warmup < 0) { die("warmup -u %d: must be >= 0", a.warmup); }
    if (a.recompute < 0 || a.recompute > 2) { die("recompute -R %d: must be 0, 1 or 2", a.recompute); }
    if (a.keep_ckpts < 1) { die("checkpoints to keep -Z %d: must be at least 1", a.keep_ckpts); }
    if (a.val_batches < 1) { die("val batches -m %d: must be at least 1", a.val_batches); }
    if (!(a.lr > 0)) { die("learning rate -l %g: must be > 0", a.lr); }
    if (a.zero_stage != 0 && a.zero_stage != 1) { die("ZeRO stage -O %d: must be 0 or 1", a.zero_stage); }
    if (!(a.collective_timeout_s > 0)) { die("collective timeout -T %g: must be > 0 seconds", a.collective_timeout_s); }
    process_group_parse(a.process_group);
    a.total_batch_default = a.total_batch == 0;
    if (a.total_batch == 0) { a.total_batch = a.B * a.T; }
    if (a.total_batch % (a.B * a.T) != 0) { die("total batch -d %d must be a multiple of b*t = %d", a.total_batch, a.B * a.T); }
    return a;
}

// Micro-steps per optimizer step when `world` processes each run (b, t) micro-batches: -d is the global
// batch, a multiple of b*t*world; without -d it is b*t*world (no accumulation). Sets a->total_batch.
static inline int grad_accum_steps(TrainArgs *a, int world) {
    long long per_step = (long long)a->B * a->T * world;
    if (a->total_batch_default) { a->total_batch = (int)per_step; }
    if (per_step > 2147483647LL || a->total_batch % per_step != 0) {
        die("total batch -d %d must be a multiple of b*t*GPUs = %d*%d*%d = %lld", a->total_batch, a->B, a->T, world, per_step);
    }
    return (int)(a->total_batch / per_step);
}

// The -f tokenizer, which must fit the model's vocabulary (checked at start too, so a typo fails before training).
static inline void tokenizer_check_fits(const TextTokenizer *tok, const char *path, int vocab_size) {
    if ((int)tok->vocab_size > vocab_size) { die("tokenizer '%s' has %u tokens, more than the model's vocabulary %d", path, tok->vocab_size, vocab_size); }
}
static inline void load_sample_tokenizer(TextTokenizer *tok, const char *path, int vocab_size) {
    text_tokenizer_load(tok, path);
    tokenizer_check_fits(tok, path, vocab_size);
}

static inline ModelConfig config_from_args(const TrainArgs *a) {
    ModelConfig c = preset_config(a->preset);
    if (a->attn) {
        if (strcmp(a->attn, "dense") == 0) { c.attn = ATTN_DENSE; }
        else if (strcmp(a->attn, "moba") == 0) { c.attn = ATTN_MOBA; }
        else { die("attention -A '%s': must be dense or moba", a->attn); }
        if (c.attn == ATTN_DENSE && a->kconv == -1) { c.kconv = 0; }  // the presets' key conv belongs to MoBA
    }
    if (a->layout) {
        if (strcmp(a->layout, "paper") == 0) { c.layout = LAYOUT_PAPER; }
        else if (strcmp(a->layout, "global") == 0) { c.layout = LAYOUT_GLOBAL; c.swa_window = 0; c.global_nope = 0; }
        else { die("layer layout -Y '%s': must be paper or global", a->layout); }
    }
    if (a->swa_window != -1) {
        if (c.layout != LAYOUT_PAPER) { die("sliding window -w %d: only the paper layout (-Y paper) has sliding-window layers", a->swa_window); }
        if (a->swa_window < 1) { die("sliding window -w %d: must be at least 1 key", a->swa_window); }
        c.swa_window = a->swa_window;
    }
    if (c.layout == LAYOUT_PAPER && c.swa_window == 0) { die("the paper layout (-Y paper) needs a sliding window: give -w"); }
    if (a->global_pos) {
        if (strcmp(a->global_pos, "nope") == 0) { c.global_nope = 1; }
        else if (strcmp(a->global_pos, "rope") == 0) { c.global_nope = 0; }
        else { die("global layers' positions -E '%s': must be nope or rope", a->global_pos); }
    }
    if (a->moba_block != -1) { c.moba_block = a->moba_block; }
    if (a->moba_topk != -1) { c.moba_topk = a->moba_topk; }
    if (a->kconv != -1) { c.kconv = a->kconv; }
    // -f is loaded here, so a bad path fails before training; without -V the model's vocabulary is the
    // tokenizer's, padded to a multiple of 64 (matmul-friendly)
    TextTokenizer tok;
    if (a->tokenizer) { text_tokenizer_load(&tok, a->tokenizer); }
    if (a->vocab_override != -1) { c.vocab_size = a->vocab_override; }
    else if (a->tokenizer) { c.vocab_size = (int)((tok.vocab_size + 63) / 64 * 64); }
    c.n_dense_last = a->n_dense_last;
    config_validate(&c);
    config_check_seq_len(&c, a->T);
    if (a->tokenizer) {
        tokenizer_check_fits(&tok, a->tokenizer, c.vocab_size);
        text_tokenizer_free(&tok);
    }
    return c;
}

#endif // LLMC_TRAIN_ARGS_H
