/*
 Learning-rate schedules. Both start with a linear warmup from lr/warmup to lr.
   cosine: cosine decay from lr to lr*final_frac at the last step.
   wsd (warmup-stable-decay): constant lr, then a linear decay to lr*final_frac over the last
        decay_frac of the steps.
*/
#ifndef LLMC_SCHEDULERS_H
#define LLMC_SCHEDULERS_H

#include <math.h>
#include <string.h>
#include "utils.h"

enum { LR_COSINE = 0, LR_WSD = 1 };

typedef struct {
    int kind;
    float lr, final_frac, decay_frac;
    int warmup_steps, total_steps;
} LRScheduler;

static inline int lr_schedule_kind(const char *name) {
    if (strcmp(name, "cosine") == 0) return LR_COSINE;
    if (strcmp(name, "wsd") == 0) return LR_WSD;
    die("unknown learning-rate schedule '%s' (known: cosine, wsd)", name);
    return -1;
}

static inline float lr_at(const LRScheduler *s, int step) {
    if (step < s->warmup_steps) { return s->lr * (step + 1) / s->warmup_steps; }
    float final_lr = s->lr * s->final_frac;
    if (s->total_steps <= s->warmup_steps) { return s->lr; }
    if (s->kind == LR_COSINE) {
        float progress = (float)(step - s->warmup_steps) / (float)(s->total_steps - s->warmup_steps);
        if (progress > 1.0f) { progress = 1.0f; }
        return final_lr + 0.5f * (s->lr - final_lr) * (1.0f + cosf((float)M_PI * progress));
    }
    int decay_steps = (int)(s->decay_frac * s->total_steps);
    int decay_start = s->total_steps - decay_steps;
    if (step < decay_start || decay_steps <= 0) { return s->lr; }
    float progress = (float)(step - decay_start) / (float)decay_steps;
    if (progress > 1.0f) { progress = 1.0f; }
    return s->lr + (final_lr - s->lr) * progress;
}

#endif // LLMC_SCHEDULERS_H
