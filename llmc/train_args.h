/*
 The command line shared by the CPU reference and the CUDA trainer (llm.c style: every flag is
 "-x value", -h lists them all with their defaults), the model config it selects, and the files of a
 run directory (log.txt, ckpt_<step>.bin). Both trainers take the same flags so a run moves between
 them unchanged; flags marked (CUDA) are accepted and ignored by the CPU reference.
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
        if (f[0] != '-' || strlen(f) != 2) { die("bad argument '%s': flags are -x value (see -h)", f); }
        if (i + 1 >= argc) { die("flag %s needs a value (see -h)", f); }
        const char *v = argv[i + 1];
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
static inline void load_sample_tokenizer(TextTokenizer *tok, const char *path, int vocab_size) {
    text_tokenizer_load(tok, path);
    if ((int)tok->vocab_size > vocab_size) { die("tokenizer '%s' has %u tokens, more than the model's vocabulary %d", path, tok->vocab_size, vocab_size); }
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
    if (a->vocab_override != -1) { c.vocab_size = a->vocab_override; }
    else if (a->tokenizer) {  // the model's vocabulary is the tokenizer's, padded to a multiple of 64 (matmul-friendly)
        TextTokenizer tok;
        text_tokenizer_load(&tok, a->tokenizer);
        c.vocab_size = (int)((tok.vocab_size + 63) / 64 * 64);
        text_tokenizer_free(&tok);
    }
    c.n_dense_last = a->n_dense_last;
    config_validate(&c);
    config_check_seq_len(&c, a->T);
    if (a->tokenizer) { TextTokenizer tok; load_sample_tokenizer(&tok, a->tokenizer, c.vocab_size); text_tokenizer_free(&tok); }
    return c;
}

static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void ensure_dir(const char *dir) {
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') { *p = '\0'; mkdir(buf, 0755); *p = '/'; }
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) { die("cannot create directory '%s': %s", dir, strerror(errno)); }
}

// Checkpoints are <out>/ckpt_<step, 8 digits>.bin; the newest is the one with the highest step.
static inline void checkpoint_path(char *buf, size_t n, const char *dir, long step) { snprintf(buf, n, "%s/ckpt_%08ld.bin", dir, step); }

// The steps of the checkpoints ckpt_<step>.bin in dir, newest (highest step) first; *n receives how
// many. The caller frees the array.
static inline long *checkpoint_steps(const char *dir, int *n) {
    char pattern[1024];
    snprintf(pattern, sizeof(pattern), "%s/ckpt_*.bin", dir);
    glob_t g;
    long *steps = NULL;
    *n = 0;
    if (glob(pattern, 0, NULL, &g) == 0) {
        steps = (long *)malloc_check(g.gl_pathc * sizeof(long));
        for (size_t i = 0; i < g.gl_pathc; i++) {
            const char *name = strrchr(g.gl_pathv[i], '/') + 1;
            char *end;
            long step = strtol(name + 5, &end, 10);
            if (strcmp(end, ".bin") == 0 && step >= 0) { steps[(*n)++] = step; }
        }
        globfree(&g);
    }
    for (int i = 1; i < *n; i++) {  // insertion sort, descending
        long x = steps[i];
        int j = i;
        for (; j > 0 && steps[j - 1] < x; j--) { steps[j] = steps[j - 1]; }
        steps[j] = x;
    }
    return steps;
}

// A resumed run continues with the micro-batch shape, global batch and seed it was written with. The
// number of processes may change when the global batch stays (accum x world): checkpoints hold the
// whole optimizer state (ZeRO-1 state is gathered to rank 0 to write them).
static inline void check_resume_compatible(const char *path, const CheckpointHeader *h, const TrainArgs *a, int grad_accum, int world) {
    if (h->batch_size != a->B || h->seq_len != a->T || (long long)h->grad_accum * h->world_size != (long long)grad_accum * world) {
        die("checkpoint '%s' was written with b %d t %d accum %d world %d; resume needs the same b, t and accum x world (got b %d t %d accum %d world %d)",
            path, h->batch_size, h->seq_len, h->grad_accum, h->world_size, a->B, a->T, grad_accum, world);
    }
    if (h->seed != a->seed) {
        die("checkpoint '%s' was written with seed %llu, this run has seed %llu", path, (unsigned long long)h->seed, (unsigned long long)a->seed);
    }
}

// Validation: mean loss, and the greedy accuracy on synthetic recall positions (none in real text).
typedef struct { double loss, recall_acc; long recall_count, recall_hits; } EvalResult;

// Adds a (B, T) batch's recall positions to r; pred[n] is the model's greedy token at position n.
static inline void eval_count_recall(EvalResult *r, const int32_t *inputs, const int32_t *targets, const int *pred, int B, int T) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)b * T + t;
            if (!synthetic_is_recall_value(inputs + (size_t)b * T, t)) { continue; }
            r->recall_hits += pred[n] == targets[n];
            r->recall_count++;
        }
    }
    r->recall_acc = r->recall_count ? (double)r->recall_hits / r->recall_count : 0;
}

// The bookkeeping of a training run shared by both trainers: run directory, log.txt, step-named
// checkpoints (the newest -Z kept), resume, the LR schedule, the sampling RNG and the NaN/Inf policy.
typedef struct {
    const TrainArgs *args;
    int grad_accum, world_size, start_step;
    LRScheduler sched;
    Rng sample_rng;
    FILE *log;
    char resume_path[1024];  // the checkpoint to resume from ("" unless -y 1)
    char ckpt_path[1024];    // where run_checkpoint_due says to write
    int nonfinite_in_a_row, nonfinite_total;  // steps skipped for a NaN/Inf loss or gradient norm
} RunState;

// -y 1 resumes from the newest intact checkpoint: a damaged newer one (truncated, bad checksum) is
// skipped, saying so, and left in place for inspection.
static inline void run_pick_resume(RunState *r, const char *dir) {
    int n;
    long *steps = checkpoint_steps(dir, &n);
    for (int i = 0; i < n && r->resume_path[0] == '\0'; i++) {
        char path[1024], why[256];
        CheckpointHeader h;
        checkpoint_path(path, sizeof(path), dir, steps[i]);
        if (checkpoint_problem(path, &h, why, sizeof(why)) == NULL) { snprintf(r->resume_path, sizeof(r->resume_path), "%s", path); }
        else { printf("warning: checkpoint %s %s; falling back to an older checkpoint\n", path, why); }
    }
    free(steps);
    if (n == 0) { die("-y 1: no checkpoint ckpt_*.bin to resume from in '%s'", dir); }
    if (r->resume_path[0] == '\0') { die("-y 1: none of the %d checkpoints in '%s' is intact (see the warnings above)", n, dir); }
}

static inline void run_init(RunState *r, const TrainArgs *a, int grad_accum, int world_size) {
    memset(r, 0, sizeof(*r));
    r->args = a; r->grad_accum = grad_accum; r->world_size = world_size;
    LRScheduler sched = {lr_schedule_kind(a->schedule), a->lr, a->final_frac, 0.2f, a->warmup, a->steps};
    r->sched = sched;
    rng_init(&r->sample_rng, a->seed ^ 0x5A5A5A5Aull);
    if (a->warmup >= a->steps && a->steps > 0) {
        printf("warning: warmup -u %d is not shorter than the run -x %d: the learning rate never decays (lower -u)\n", a->warmup, a->steps);
    }
    ensure_dir(a->out_dir);
    if (a->resume) { run_pick_resume(r, a->out_dir); }
}

// The loader position of a checkpoint written by `old_world` ranks, for this loader's world. Ranks move
// in lockstep, so one position (in each rank's own batches) describes all; within a shard, rank r's local
// batch b is global batch b*world + r. The same world resumes exactly. Another world continues at the
// same global batch when the world sizes divide it, else at the next whole local batch (fewer than
// `world` global batches skipped); shards keep floor(batches / world) * world global batches, so after
// the current shard the order is the new world's. Either case is announced.
static inline DataLoaderPosition resume_position(DataLoader *dl, const CheckpointHeader *h) {
    DataLoaderPosition pos = {h->loader_epoch, h->loader_shard, h->loader_batch};
    uint64_t old_world = (uint64_t)h->world_size, world = (uint64_t)dl->world_size;
    if (old_world == world) { return pos; }
    uint64_t global = pos.batch_index * old_world;
    pos.batch_index = (global + world - 1) / world;
    printf("resuming a %llu-process checkpoint on %llu processes: global batch %llu of the shard%s\n", (unsigned long long)old_world,
           (unsigned long long)world, (unsigned long long)(pos.batch_index * world), global % world ? " (rounded up)" : "");
    if (!dl_position_valid(dl, pos)) {  // this shard gives the new world fewer batches: the next one
        pos.batch_index = 0;
        pos.shard_index++;
        dl->pos = pos;
        dl_settle(dl);
        pos = dl->pos;
    }
    return pos;
}

// After the model has loaded resume_path (header h): checks the run matches it and puts the loader and
// the sampling RNG where the interrupted run was.
static inline void run_resume(RunState *r, const CheckpointHeader *h, DataLoader *train) {
    check_resume_compatible(r->resume_path, h, r->args, r->grad_accum, r->world_size);
    dataloader_set_position(train, resume_position(train, h));
    r->sample_rng.state = h->rng_state;
    r->start_step = (int)h->step;
    printf("resumed from %s at step %d\n", r->resume_path, r->start_step);
}

// The step of a log.txt line ("step N ..."), -1 for other lines.
static inline long log_line_step(const char *line) {
    long step;
    return sscanf(line, "step %ld", &step) == 1 ? step : -1;
}

// log.txt: started afresh, or when resuming at step S cut to what happened up to S (a killed run may
// have logged steps after its last checkpoint, which the resumed run logs again), then appended to.
static inline void run_open_log(RunState *r) {
    char path[1100];
    snprintf(path, sizeof(path), "%s/log.txt", r->args->out_dir);
    FILE *old = r->start_step > 0 ? fopen(path, "r") : NULL;
    if (old) {
        AtomicFile af;
        atomic_open(&af, path);
        char line[4096];
        while (fgets(line, sizeof(line), old)) {
            long step = log_line_step(line);
            // the eval at step S is redone by the resumed run; the training line of step S is kept
            int keep = step < r->start_step || (step == r->start_step && strstr(line, " val_loss ") == NULL);
            if (keep) { atomic_write(&af, line, 1, strlen(line)); }
        }
        fclose(old);
        atomic_close(&af);
    }
    r->log = fopen_check(path, r->start_step > 0 ? "a" : "w");
}

// The NaN/Inf policy, after each optimizer step: a step with a non-finite loss or gradient norm made no
// update (the trainers skip it); it is counted and logged, and -a such steps in a row stop the run.
// Returns 1 when the step was finite.
static inline int run_step_finite(RunState *r, int step, double loss, double norm) {
    if (isfinite(loss) && isfinite(norm)) { r->nonfinite_in_a_row = 0; return 1; }
    r->nonfinite_in_a_row++;
    r->nonfinite_total++;
    printf("step %d skipped: loss %g, gradient norm %g (not finite); %d in a row, %d in this run\n", step, loss, norm,
           r->nonfinite_in_a_row, r->nonfinite_total);
    fprintf(r->log, "step %d skipped_nonfinite loss %g norm %g in_a_row %d total %d\n", step, loss, norm, r->nonfinite_in_a_row,
            r->nonfinite_total);
    fflush(r->log);
    if (r->nonfinite_in_a_row >= r->args->nonfinite_limit) {
        die("stopping: %d steps in a row had a NaN/Inf loss or gradient norm (step %d; -a %d). The weights are those of the last "
            "good step; lower the learning rate -l or clip gradients with -g, and resume from the last checkpoint",
            r->nonfinite_in_a_row, step, r->args->nonfinite_limit);
    }
    return 0;
}

static inline void run_log_eval(RunState *r, int step, const EvalResult *e, int final) {
    if (final) { printf("final | val loss %.4f", e->loss); }
    else { printf("step %5d | val loss %.4f", step, e->loss); }
    if (e->recall_count > 0) {
        printf(" | recall: %ld of %ld values after RECALL k right (%.1f%%)", e->recall_hits, e->recall_count, 100 * e->recall_acc);
    }
    printf("\n");
    fprintf(r->log, "step %d val_loss %.9g recall_acc %.6f\n", step, e->loss, e->recall_acc);
    fflush(r->log);
}

// 1 when a checkpoint is due after `steps_done` steps (every -n, the last step, or the time limit);
// then r->ckpt_path is where to write it.
static inline int run_checkpoint_due(RunState *r, int steps_done, int out_of_time) {
    const TrainArgs *a = r->args;
    int due = (a->ckpt_every > 0 && steps_done % a->ckpt_every == 0) || steps_done == a->steps || out_of_time;
    if (!due) { return 0; }
    checkpoint_path(r->ckpt_path, sizeof(r->ckpt_path), a->out_dir, steps_done);
    return 1;
}

// After the checkpoint of `steps_done` is durably in place: removes the older ones on disk beyond the
// newest -Z (including those of runs this one resumed from). Checkpoints of later steps (a damaged
// newer one that -y 1 skipped) are left alone.
static inline void run_checkpoint_written(RunState *r, int steps_done) {
    int n, kept = 0;
    long *steps = checkpoint_steps(r->args->out_dir, &n);
    for (int i = 0; i < n; i++) {
        if (steps[i] > steps_done) { continue; }
        if (++kept <= r->args->keep_ckpts) { continue; }
        char old[1024];
        checkpoint_path(old, sizeof(old), r->args->out_dir, steps[i]);
        remove(old);
    }
    free(steps);
}

// The header of the checkpoint written after `steps_done` steps; train is the loader of the run.
static inline CheckpointHeader run_checkpoint_header(const RunState *r, int steps_done, const DataLoader *train) {
    CheckpointHeader h;
    memset(&h, 0, sizeof(h));
    DataLoaderPosition pos = dataloader_position(train);
    h.step = (uint64_t)steps_done; h.rng_state = r->sample_rng.state;
    h.loader_epoch = pos.epoch; h.loader_shard = pos.shard_index; h.loader_batch = pos.batch_index;
    h.batch_size = r->args->B; h.seq_len = r->args->T; h.grad_accum = r->grad_accum; h.world_size = r->world_size;
    h.seed = r->args->seed;
    return h;
}

// The default data is the built-in synthetic corpus, generated on first use.
static inline void ensure_synthetic_data(const TrainArgs *a, const ModelConfig *c) {
    TrainArgs d = default_args();
    if (strcmp(a->train_pattern, d.train_pattern) != 0) { return; }
    FILE *f = fopen("data/synthetic/train_000.bin", "rb");
    if (f) { fclose(f); return; }
    printf("generating the built-in synthetic corpus in data/synthetic/ (vocab %d)\n", c->vocab_size);
    synthetic_write_dataset("data/synthetic", (uint32_t)c->vocab_size, 4000000, 200000, 42);
}

// The final sample: up to 16 leading tokens of `source` as the prompt, continued by -s tokens, all within
// max_len. Returns the token buffer (NULL when there is nothing to sample); the caller frees it.
static inline int *sample_prompt(const TrainArgs *a, const int32_t *source, int max_len, int *prompt, int *total) {
    *prompt = max_len - 1 < 16 ? max_len - 1 : 16;
    *total = *prompt + a->sample_tokens < max_len ? *prompt + a->sample_tokens : max_len;
    if (a->sample_tokens <= 0 || *prompt < 1) { return NULL; }
    int *tokens = (int *)malloc_check((size_t)*total * sizeof(int));
    memcpy(tokens, source, (size_t)*prompt * sizeof(int));
    return tokens;
}

// Prints prompt | continuation as text when a tokenizer file is given, as token names on the built-in
// corpus, else as token ids.
static inline void print_sample(const TrainArgs *a, const int *tokens, int prompt, int total, int vocab_size) {
    const char *tokenizer_path = a->tokenizer;
    if (tokenizer_path == NULL) {
        int synthetic = strcmp(a->train_pattern, default_args().train_pattern) == 0;
        printf("sample (%s; prompt | continuation):", synthetic ? "built-in corpus: k = key, v = value, w = word" : "token ids");
        for (int i = 0; i < total; i++) {
            char name[32];
            if (synthetic) { synthetic_token_name(name, sizeof(name), (uint32_t)tokens[i], (uint32_t)vocab_size); }
            else { snprintf(name, sizeof(name), "%d", tokens[i]); }
            printf("%s%s", i == prompt ? " | " : " ", name);
        }
        printf("\n");
        return;
    }
    TextTokenizer tok;
    load_sample_tokenizer(&tok, tokenizer_path, vocab_size);
    printf("sample (prompt | continuation):\n");
    for (int i = 0; i < total; i++) {
        if (i == prompt) { printf(" | "); }
        if ((uint32_t)tokens[i] >= tok.vocab_size) { printf("<%d>", tokens[i]); continue; }  // padded vocabulary slots
        size_t len;
        const unsigned char *bytes = text_tokenizer_token_bytes(&tok, (uint32_t)tokens[i], &len);
        fwrite(bytes, 1, len, stdout);
    }
    printf("\n");
    text_tokenizer_free(&tok);
}

#endif // LLMC_TRAIN_ARGS_H
