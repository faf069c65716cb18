/*
 Checkpoints and debug states (byte-exact layouts in doc/formats.md). Host code shared by the CPU
 reference and the CUDA trainer: a GPU checkpoint loads on the CPU and vice versa, because both store
 fp32 master parameters and AdamW moments in the same order.

 Checkpoint = 256-byte header | params f32[P] | (if flags & CKPT_HAS_OPTIMIZER) m f32[P] | v f32[P] | end
 magic u32. Written to "<path>.tmp", fsync'd, renamed: a crash never leaves a half-written checkpoint.
 The header's last 8 bytes hold a Checksum64 (llmc/checksum.h) of the whole file with those 8 bytes
 zeroed; loading verifies it, so a bit flip or a damaged copy is an error, not silently wrong weights.
 Version 1 files (no checksum) still load, unverified. Non-finite parameters are never written.

 Debug state = 256-byte header | params f32[P] | inputs i32[B*T] | targets i32[B*T] | logits f32[B*T*V]
 | loss f32 | grads f32[P] | step losses f32[S] | MoBA selections i32[max(S, 1)*Lm*B*NH*T*K] | end magic u32.
 The GPU test reads it and checks its own logits, loss, gradients, gates and S AdamW steps against it.
 Selection set s is the gate of step s's forward (set 0: the parameters above); the GPU test replays them
 in its steps, so a near-tie that flips a block cannot make the two runs drift apart.
*/
#ifndef LLMC_CHECKPOINT_H
#define LLMC_CHECKPOINT_H

#include <stdint.h>
#include <math.h>
#include "checksum.h"
#include "config.h"
#include "utils.h"

#define CKPT_MAGIC 0x43424F4Du     // "MOBC"
#define DEBUG_MAGIC 0x44424F4Du    // "MOBD"
#define END_MAGIC 0x45424F4Du      // "MOBE", the last 4 bytes of both files
#define CKPT_VERSION 2u            // the layout below, with a checksum
#define CKPT_VERSION_UNCHECKED 1u  // the all-global RoPE model's 48-byte config, no checksum (still read, see below)
#define CKPT_HEADER_BYTES 256
#define CKPT_HAS_OPTIMIZER 1u

typedef struct {
    uint32_t magic, version, header_bytes, flags;   //   0
    ModelConfig cfg;                                //  16: 15 x i32 + f32 = 64 bytes
    uint64_t step;                                  //  80: optimizer steps completed
    uint64_t num_params;                            //  88
    uint64_t rng_state;                             //  96: sampling RNG
    uint64_t loader_epoch, loader_shard, loader_batch; // 104: position of the next training batch
    int32_t batch_size, seq_len, grad_accum, world_size; // 128: what the loader position assumes
    uint64_t seed;                                  // 144
    uint8_t reserved[CKPT_HEADER_BYTES - 160];
    uint64_t checksum;                              // 248: Checksum64 of the file with this field zeroed
} CheckpointHeader;
STATIC_ASSERT(sizeof(ModelConfig) == 64, "ModelConfig must be 64 bytes");
STATIC_ASSERT(sizeof(CheckpointHeader) == CKPT_HEADER_BYTES, "checkpoint header must be 256 bytes");

// Version 1: the same fields with the first 48 bytes of ModelConfig (no layout fields), so 16 bytes earlier.
typedef struct {
    uint32_t magic, version, header_bytes, flags;
    uint8_t cfg[48];
    uint64_t step, num_params, rng_state, loader_epoch, loader_shard, loader_batch;
    int32_t batch_size, seq_len, grad_accum, world_size;
    uint64_t seed;
    uint8_t reserved[CKPT_HEADER_BYTES - 136];
} CheckpointHeaderV1;
STATIC_ASSERT(sizeof(CheckpointHeaderV1) == CKPT_HEADER_BYTES, "version-1 checkpoint header must be 256 bytes");

typedef struct {
    uint32_t magic, version, header_bytes, reserved0;  //   0
    ModelConfig cfg;                                   //  16
    int32_t B, T, num_steps, num_moba_layers;          //  80
    float lr, beta1, beta2, eps, weight_decay, grad_clip; // 96
    uint64_t num_params, seed;                         // 120
    uint8_t reserved[CKPT_HEADER_BYTES - 136];
} DebugStateHeader;
STATIC_ASSERT(sizeof(DebugStateHeader) == CKPT_HEADER_BYTES, "debug state header must be 256 bytes");

// Dies naming the first non-finite value of a parameter array (a diverged run must not overwrite good checkpoints).
static inline void check_finite(const float *x, size_t n, const char *what, const char *path) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) { die("%s %zu of %zu is %g: refusing to use checkpoint '%s'", what, i, n, x[i], path); }
    }
}

static inline void checkpoint_write(const char *path, const CheckpointHeader *h, const float *params, const float *m, const float *v) {
    check_finite(params, h->num_params, "parameter", path);
    int has_opt = (h->flags & CKPT_HAS_OPTIMIZER) != 0;
    const float *arrays[3] = {params, m, v};
    int num_arrays = has_opt ? 3 : 1;
    uint32_t end = END_MAGIC;
    CheckpointHeader head = *h;
    head.checksum = 0;
    Checksum64 c;
    checksum_init(&c);
    checksum_update(&c, &head, sizeof(head));
    for (int i = 0; i < num_arrays; i++) { checksum_update(&c, arrays[i], h->num_params * sizeof(float)); }
    checksum_update(&c, &end, sizeof(end));
    head.checksum = checksum_final(&c);
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, &head, sizeof(head), 1);
    for (int i = 0; i < num_arrays; i++) { atomic_write(&af, arrays[i], sizeof(float), h->num_params); }
    atomic_write(&af, &end, sizeof(end), 1);
    atomic_close(&af);
}

// A version-1 header in the version-2 layout (its version kept): its model is the all-global RoPE layout.
static inline CheckpointHeader checkpoint_header_from_v1(const CheckpointHeaderV1 *o) {
    CheckpointHeader h;
    memset(&h, 0, sizeof(h));
    h.magic = o->magic; h.version = o->version; h.header_bytes = o->header_bytes; h.flags = o->flags;
    memcpy(&h.cfg, o->cfg, sizeof(o->cfg));  // layout GLOBAL, window 0, RoPE in every layer
    h.step = o->step; h.num_params = o->num_params; h.rng_state = o->rng_state;
    h.loader_epoch = o->loader_epoch; h.loader_shard = o->loader_shard; h.loader_batch = o->loader_batch;
    h.batch_size = o->batch_size; h.seq_len = o->seq_len; h.grad_accum = o->grad_accum; h.world_size = o->world_size;
    h.seed = o->seed;
    return h;
}

// What is wrong with a checkpoint file (header, size, end marker or checksum), or NULL when it is intact.
// Reads the whole file; h receives its header. Never dies, so -y 1 can skip a damaged file.
static inline const char *checkpoint_problem(const char *path, CheckpointHeader *h, char *why, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) { snprintf(why, cap, "cannot be opened: %s", strerror(errno)); return why; }
    struct stat st;
    long long size = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) ? (long long)st.st_size : -1;
    if (size < 0) { snprintf(why, cap, "is not a regular file"); }
    else if (size < CKPT_HEADER_BYTES || fread(h, sizeof(*h), 1, f) != 1) {
        snprintf(why, cap, "is truncated: %lld bytes, smaller than its header", size);
    } else if (h->magic != CKPT_MAGIC) { snprintf(why, cap, "is not a moba.c checkpoint (magic 0x%08X)", h->magic); }
    else if (h->version != CKPT_VERSION && h->version != CKPT_VERSION_UNCHECKED) {
        snprintf(why, cap, "has version %u; this build reads %u and %u", h->version, CKPT_VERSION_UNCHECKED, CKPT_VERSION);
    } else if (h->header_bytes != CKPT_HEADER_BYTES) { snprintf(why, cap, "has a %u-byte header; expected %d", h->header_bytes, CKPT_HEADER_BYTES); }
    else {
        if (h->version == CKPT_VERSION_UNCHECKED) {
            CheckpointHeaderV1 old;
            memcpy(&old, h, sizeof(old));
            *h = checkpoint_header_from_v1(&old);
        }
        uint64_t arrays = (h->flags & CKPT_HAS_OPTIMIZER) ? 3 : 1;
        uint64_t room = (uint64_t)(size - CKPT_HEADER_BYTES) / 4;  // whole floats after the header
        if (h->num_params > room / arrays || arrays * h->num_params + 1 != room || (size - CKPT_HEADER_BYTES) % 4 != 0) {
            int is_short = h->num_params > room / arrays || arrays * h->num_params + 1 > room;
            snprintf(why, cap, "is %s: %lld bytes, but its header says %llu parameters%s", is_short ? "truncated" : "too long", size,
                     (unsigned long long)h->num_params, arrays == 3 ? " with optimizer state" : "");
        } else {
            CheckpointHeader head = *h;
            head.checksum = 0;
            Checksum64 c;
            checksum_init(&c);
            checksum_update(&c, &head, sizeof(head));
            size_t buf_bytes = 1 << 20;
            unsigned char *buf = (unsigned char *)malloc_check(buf_bytes);
            uint64_t left = (uint64_t)(size - CKPT_HEADER_BYTES);
            uint32_t last = 0;
            while (left > 0) {
                size_t n = left < buf_bytes ? (size_t)left : buf_bytes;
                if (fread(buf, 1, n, f) != n) { break; }
                checksum_update(&c, buf, n);
                memcpy(&last, buf + n - 4, 4);
                left -= n;
            }
            free(buf);
            if (left > 0) { snprintf(why, cap, "could not be read to the end: %s", strerror(errno)); }
            else if (last != END_MAGIC) { snprintf(why, cap, "is corrupt: bad end marker 0x%08X", last); }
            else if (h->version == CKPT_VERSION && checksum_final(&c) != h->checksum) {
                snprintf(why, cap, "is corrupt: checksum %016llx, header says %016llx", (unsigned long long)checksum_final(&c),
                         (unsigned long long)h->checksum);
            } else { fclose(f); return NULL; }
        }
    }
    fclose(f);
    return why;
}

// Reads and validates the header (and, for version 2, the checksum of the whole file); the stream is
// left at the start of the parameters.
static inline FILE *checkpoint_open(const char *path, CheckpointHeader *h) {
    char why[256];
    FILE *f = fopen_check(path, "rb");
    if (checkpoint_problem(path, h, why, sizeof(why)) != NULL) { die("checkpoint '%s' %s", path, why); }
    // version 1's key convolution was a linear filter, another function than k + SiLU(conv(k))
    if (h->version == CKPT_VERSION_UNCHECKED && h->cfg.kconv != 0) {
        die("checkpoint '%s' (format version 1) was trained with the linear key convolution (width %d) that this build "
            "replaced by the paper's k + SiLU(conv(k)); it cannot be loaded as the same model", path, h->cfg.kconv);
    }
    config_validate(&h->cfg);
    if (h->num_params != param_count(&h->cfg)) {
        die("checkpoint '%s' holds %llu parameters but its config needs %zu", path, (unsigned long long)h->num_params, param_count(&h->cfg));
    }
    if (h->version == CKPT_VERSION_UNCHECKED) {
        static int told = 0;
        if (!told) { printf("note: checkpoint '%s' is version 1, which has no checksum: loaded without verification\n", path); }
        told = 1;
    }
    fseek_check(f, CKPT_HEADER_BYTES, SEEK_SET, path);
    return f;
}

// Reads params (and m, v when the file has them and they are wanted) after checkpoint_open.
static inline void checkpoint_read_arrays(FILE *f, const char *path, const CheckpointHeader *h, float *params, float *m, float *v) {
    fread_check(params, sizeof(float), h->num_params, f, path);
    check_finite(params, h->num_params, "parameter", path);
    if ((h->flags & CKPT_HAS_OPTIMIZER) && m != NULL && v != NULL) {
        fread_check(m, sizeof(float), h->num_params, f, path);
        fread_check(v, sizeof(float), h->num_params, f, path);
    }
    fclose(f);  // checkpoint_open verified the rest of the file
}

// Selection sets in a debug state: one per AdamW step's forward, at least one.
static inline size_t debug_state_sel_sets(const DebugStateHeader *h) { return h->num_steps > 0 ? (size_t)h->num_steps : 1; }

// Element counts of a debug state's arrays (layout at the top of this file).
typedef struct { size_t P, N, V, nsel; int steps; } DebugStateLayout;

// Reads and validates a debug state's header, size and end marker, every count checked against the
// file's real length (so no size computed from the header can wrap); the stream is left at the parameters.
static inline FILE *debug_state_open(const char *path, DebugStateHeader *h, DebugStateLayout *lay) {
    FILE *f = fopen_check(path, "rb");
    long long size = file_size_check(f, path);
    if (size < CKPT_HEADER_BYTES) { die("debug state '%s' is truncated: %lld bytes", path, size); }
    fread_check(h, sizeof(*h), 1, f, path);
    if (h->magic != DEBUG_MAGIC) { die("'%s' is not a moba.c debug state (magic 0x%08X)", path, h->magic); }
    if (h->version != CKPT_VERSION || h->header_bytes != CKPT_HEADER_BYTES) {
        die("debug state '%s' has version %u / header %u bytes; this build reads %u / %d", path, h->version, h->header_bytes, CKPT_VERSION, CKPT_HEADER_BYTES);
    }
    config_validate(&h->cfg);
    if (h->B < 1 || h->T < 1 || h->num_steps < 0 || h->num_moba_layers < 0 || h->num_moba_layers > h->cfg.n_layer) {
        die("debug state '%s' has B %d, T %d, %d steps, %d MoBA layers: out of range", path, h->B, h->T, h->num_steps, h->num_moba_layers);
    }
    lay->P = param_count(&h->cfg); lay->N = (size_t)h->B * h->T; lay->V = (size_t)h->cfg.vocab_size; lay->steps = h->num_steps;
    if (h->num_params != lay->P) { die("debug state '%s' holds %llu parameters but its config needs %zu", path, (unsigned long long)h->num_params, lay->P); }
    // in floating point first: a header claiming more than the file holds is refused before any exact product
    double nsel = (double)debug_state_sel_sets(h) * h->num_moba_layers * lay->N * h->cfg.n_head * h->cfg.moba_topk;
    double want = CKPT_HEADER_BYTES + 4.0 * (2.0 * lay->P + 2.0 * lay->N + (double)lay->N * lay->V + 1 + lay->steps + nsel + 1);
    if (want > (double)size + 0.5) { die("debug state '%s' is truncated: %lld bytes, its header needs %.0f", path, size, want); }
    lay->nsel = debug_state_sel_sets(h) * h->num_moba_layers * lay->N * h->cfg.n_head * h->cfg.moba_topk;
    long long expect = CKPT_HEADER_BYTES + 4LL * (long long)(2 * lay->P + 2 * lay->N + lay->N * lay->V + 1 + lay->steps + lay->nsel + 1);
    if (size != expect) { die("debug state '%s' is %lld bytes, expected %lld", path, size, expect); }
    uint32_t end = 0;
    fseek_check(f, size - 4, SEEK_SET, path);
    fread_check(&end, 4, 1, f, path);
    if (end != END_MAGIC) { die("debug state '%s' is corrupt: bad end marker 0x%08X", path, end); }
    fseek_check(f, CKPT_HEADER_BYTES, SEEK_SET, path);
    return f;
}

// Dies naming the first differing field when a checkpoint does not fit the run that loads it.
static inline void checkpoint_check_config(const char *path, const CheckpointHeader *h, const ModelConfig *want) {
    const char *field = config_mismatch(&h->cfg, want);
    if (field != NULL) { die("checkpoint '%s' does not match this run's model: %s differs", path, field); }
}

#endif // LLMC_CHECKPOINT_H
