/*
 The files of a training run, shared by both trainers: the run directory, log.txt (cut back to the
 resumed step), step-named checkpoints (ckpt_<step>.bin, the newest -Z kept, never the last good one
 removed before a new one is durable), resume (the newest intact checkpoint, the loader position on the
 same or another number of processes), the LR schedule, the sampling RNG and the NaN/Inf step policy.
*/
#ifndef LLMC_RUN_DIR_H
#define LLMC_RUN_DIR_H

#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "checkpoint.h"
#include "dataloader.h"
#include "rng.h"
#include "run_eval.h"
#include "schedulers.h"
#include "synthetic.h"
#include "train_args.h"
#include "utils.h"

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

#endif // LLMC_RUN_DIR_H
