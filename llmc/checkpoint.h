/*
 Checkpoints and debug states (byte-exact layouts in doc/formats.md). Host code shared by the CPU
 reference and the CUDA trainer: a GPU checkpoint loads on the CPU and vice versa, because both store
 fp32 master parameters and AdamW moments in the same order.

 Checkpoint = 256-byte header | params f32[P] | (if flags & CKPT_HAS_OPTIMIZER) m f32[P] | v f32[P] | end
 magic u32. Written to "<path>.tmp", fsync'd, renamed: a crash never leaves a half-written checkpoint.

 Debug state = 256-byte header | params f32[P] | inputs i32[B*T] | targets i32[B*T] | logits f32[B*T*V]
 | loss f32 | grads f32[P] | step losses f32[S] | MoBA selections i32[max(S, 1)*Lm*B*NH*T*K] | end magic u32.
 The GPU test reads it and checks its own logits, loss, gradients, gates and S AdamW steps against it.
 Selection set s is the gate of step s's forward (set 0: the parameters above); the GPU test replays them
 in its steps, so a near-tie that flips a block cannot make the two runs drift apart.
*/
#ifndef LLMC_CHECKPOINT_H
#define LLMC_CHECKPOINT_H

#include <stdint.h>
#include "config.h"
#include "utils.h"

#define CKPT_MAGIC 0x43424F4Du     // "MOBC"
#define DEBUG_MAGIC 0x44424F4Du    // "MOBD"
#define END_MAGIC 0x45424F4Du      // "MOBE", the last 4 bytes of both files
#define CKPT_VERSION 2u            // 1: the all-global RoPE model with a 48-byte config (still read, see below)
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
    uint8_t reserved[CKPT_HEADER_BYTES - 152];
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

static inline void checkpoint_write(const char *path, const CheckpointHeader *h, const float *params, const float *m, const float *v) {
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, h, sizeof(*h), 1);
    atomic_write(&af, params, sizeof(float), h->num_params);
    if (h->flags & CKPT_HAS_OPTIMIZER) {
        atomic_write(&af, m, sizeof(float), h->num_params);
        atomic_write(&af, v, sizeof(float), h->num_params);
    }
    uint32_t end = END_MAGIC;
    atomic_write(&af, &end, sizeof(end), 1);
    atomic_close(&af);
}

// A version-1 header as version 2: its model is the all-global RoPE layout. Version 1's key convolution
// was a linear filter, a different function from k + SiLU(conv(k)): such a checkpoint cannot be loaded.
static inline CheckpointHeader checkpoint_header_from_v1(const char *path, const CheckpointHeaderV1 *o) {
    CheckpointHeader h;
    memset(&h, 0, sizeof(h));
    h.magic = o->magic; h.version = CKPT_VERSION; h.header_bytes = o->header_bytes; h.flags = o->flags;
    memcpy(&h.cfg, o->cfg, sizeof(o->cfg));  // layout GLOBAL, window 0, RoPE in every layer
    if (h.cfg.kconv != 0) {
        die("checkpoint '%s' (format version 1) was trained with the linear key convolution (width %d) that this build "
            "replaced by the paper's k + SiLU(conv(k)); it cannot be loaded as the same model", path, h.cfg.kconv);
    }
    h.step = o->step; h.num_params = o->num_params; h.rng_state = o->rng_state;
    h.loader_epoch = o->loader_epoch; h.loader_shard = o->loader_shard; h.loader_batch = o->loader_batch;
    h.batch_size = o->batch_size; h.seq_len = o->seq_len; h.grad_accum = o->grad_accum; h.world_size = o->world_size;
    h.seed = o->seed;
    return h;
}

// Reads and validates the header (a version-1 header is converted); the stream is left at the start of
// the parameters.
static inline FILE *checkpoint_open(const char *path, CheckpointHeader *h) {
    FILE *f = fopen_check(path, "rb");
    long long size = file_size_check(f, path);
    if (size < CKPT_HEADER_BYTES) { die("checkpoint '%s' is truncated: %lld bytes, smaller than its header", path, size); }
    fread_check(h, sizeof(*h), 1, f, path);
    if (h->magic != CKPT_MAGIC) { die("'%s' is not a moba.c checkpoint (magic 0x%08X)", path, h->magic); }
    if (h->version == 1) {
        CheckpointHeaderV1 old;
        memcpy(&old, h, sizeof(old));
        *h = checkpoint_header_from_v1(path, &old);
    }
    if (h->version != CKPT_VERSION) { die("checkpoint '%s' has version %u; this build reads versions 1 and %u", path, h->version, CKPT_VERSION); }
    if (h->header_bytes != CKPT_HEADER_BYTES) { die("checkpoint '%s' has a %u-byte header; expected %d", path, h->header_bytes, CKPT_HEADER_BYTES); }
    config_validate(&h->cfg);
    if (h->num_params != param_count(&h->cfg)) {
        die("checkpoint '%s' holds %llu parameters but its config needs %zu", path, (unsigned long long)h->num_params, param_count(&h->cfg));
    }
    long long arrays = (h->flags & CKPT_HAS_OPTIMIZER) ? 3 : 1;
    long long expect = CKPT_HEADER_BYTES + arrays * (long long)h->num_params * 4 + 4;
    if (size != expect) {
        die("checkpoint '%s' is %s: %lld bytes, expected %lld", path, size < expect ? "truncated" : "too long", size, expect);
    }
    return f;
}

// Reads params (and m, v when the file has them and they are wanted) after checkpoint_open.
static inline void checkpoint_read_arrays(FILE *f, const char *path, const CheckpointHeader *h, float *params, float *m, float *v) {
    fread_check(params, sizeof(float), h->num_params, f, path);
    if (h->flags & CKPT_HAS_OPTIMIZER) {
        if (m != NULL && v != NULL) {
            fread_check(m, sizeof(float), h->num_params, f, path);
            fread_check(v, sizeof(float), h->num_params, f, path);
        } else {
            fseek_check(f, 2LL * 4 * (long long)h->num_params, SEEK_CUR, path);
        }
    }
    uint32_t end = 0;
    fread_check(&end, sizeof(end), 1, f, path);
    if (end != END_MAGIC) { die("checkpoint '%s' is corrupt: bad end marker 0x%08X", path, end); }
    fclose(f);
}

// Selection sets in a debug state: one per AdamW step's forward, at least one (debug_state_sel_sets).
static inline size_t debug_state_sel_sets(const DebugStateHeader *h) { return h->num_steps > 0 ? (size_t)h->num_steps : 1; }

// Dies naming the first differing field when a checkpoint does not fit the run that loads it.
static inline void checkpoint_check_config(const char *path, const CheckpointHeader *h, const ModelConfig *want) {
    const char *field = config_mismatch(&h->cfg, want);
    if (field != NULL) { die("checkpoint '%s' does not match this run's model: %s differs", path, field); }
}

#endif // LLMC_CHECKPOINT_H
