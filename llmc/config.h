/*
 Model configuration, presets, the parameter layout and the seeded initialisation (doc/model.md).
 Host code shared by the CPU reference and the CUDA trainer, so both start from identical parameters.
*/
#ifndef LLMC_CONFIG_H
#define LLMC_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "rng.h"
#include "utils.h"

enum { ATTN_DENSE = 0, ATTN_MOBA = 1 };
// Layer layouts. GLOBAL: every layer is global attention (dense or MoBA). PAPER (the FlashMoBA paper's
// hybrid stack): layers 1, 3, 5, ... counted from 1 (0-based l even) are sliding-window attention with
// RoPE and no key convolution; layers 2, 4, ... are global attention (dense or MoBA).
enum { LAYOUT_GLOBAL = 0, LAYOUT_PAPER = 1 };

// Zero in the fields after rope_theta means the all-global RoPE model (a config written before they existed).
typedef struct {
    int32_t vocab_size, n_layer, d_model, n_head, ffn, max_seq_len;
    int32_t attn, moba_block, moba_topk, kconv, n_dense_last;
    float rope_theta;
    int32_t layout;       // LAYOUT_GLOBAL or LAYOUT_PAPER
    int32_t swa_window;   // PAPER: a sliding-window layer's query t sees keys [t - w + 1, t]; 0 in GLOBAL
    int32_t global_nope;  // 1: global layers use no positional encoding (NoPE); 0: RoPE
    int32_t reserved;     // 0
} ModelConfig;

typedef struct {
    const char *name;
    ModelConfig cfg;
    const char *what;
} ModelPreset;

// Every preset is the FlashMoBA paper's layout (sliding-window RoPE layers interleaved with global NoPE
// layers) with its MoBA recommendation (small blocks, key conv 3); the small ones are scaled down.
static const ModelPreset model_presets[] = {
    {"test", {64, 2, 16, 2, 40, 256, ATTN_MOBA, 4, 2, 3, 0, 10000.0f, LAYOUT_PAPER, 8, 1, 0}, "gradient-check size: L2 d16 2 heads, window 8"},
    {"tiny", {512, 4, 128, 2, 352, 4096, ATTN_MOBA, 32, 3, 3, 0, 10000.0f, LAYOUT_PAPER, 64, 1, 0}, "CPU main job: L4 d128 2 heads (HD 64), window 64"},
    {"small", {512, 6, 256, 4, 704, 65536, ATTN_MOBA, 64, 4, 3, 0, 10000.0f, LAYOUT_PAPER, 64, 1, 0}, "L6 d256 4 heads (HD 64), window 64"},
    {"study", {8192, 8, 512, 8, 1408, 1 << 20, ATTN_MOBA, 32, 8, 3, 0, 10000.0f, LAYOUT_PAPER, 64, 1, 0},
     "ablation size: L8 d512 8 heads (HD 64) ffn 1408, window 64: the paper's model scaled to T 2048"},
    {"340M", {32000, 24, 1024, 16, 2816, 1 << 20, ATTN_MOBA, 128, 8, 3, 0, 10000.0f, LAYOUT_PAPER, 256, 1, 0}, "paper's 340M: L24 d1024 16 heads ffn 2816, window 256"},
    {"1B", {32000, 24, 2048, 32, 8192, 1 << 20, ATTN_MOBA, 128, 8, 3, 0, 10000.0f, LAYOUT_PAPER, 256, 1, 0}, "paper's 1B: L24 d2048 32 heads ffn 8192, window 256"},
};
#define NUM_MODEL_PRESETS ((int)(sizeof(model_presets) / sizeof(model_presets[0])))

static inline ModelConfig preset_config(const char *name) {
    for (int i = 0; i < NUM_MODEL_PRESETS; i++) {
        if (strcmp(model_presets[i].name, name) == 0) { return model_presets[i].cfg; }
    }
    char known[256] = "";
    for (int i = 0; i < NUM_MODEL_PRESETS; i++) { strcat(known, i ? ", " : ""); strcat(known, model_presets[i].name); }
    die("unknown preset '%s' (known: %s)", name, known);
    return model_presets[0].cfg;
}

#define CONFIG_MAX_VOCAB (1 << 24)
#define CONFIG_MAX_LAYERS 4096
#define CONFIG_MAX_WIDTH (1 << 20)

static inline int is_power_of_two(int x) { return x > 0 && (x & (x - 1)) == 0; }

// Per-layer attention. A sliding-window layer has RoPE and no key convolution; a global layer is MoBA
// (unless it is one of the last n_dense_last layers) or dense, with RoPE unless global_nope.
static inline int layer_is_swa(const ModelConfig *c, int l) { return c->layout == LAYOUT_PAPER && l % 2 == 0; }
static inline int layer_is_moba(const ModelConfig *c, int l) {
    return !layer_is_swa(c, l) && c->attn == ATTN_MOBA && l < c->n_layer - c->n_dense_last;
}
static inline int layer_has_rope(const ModelConfig *c, int l) { return layer_is_swa(c, l) || !c->global_nope; }
static inline int layer_has_kconv(const ModelConfig *c, int l) { return c->kconv > 0 && !layer_is_swa(c, l); }
// The window of layer l's attention: keys [t - w + 1, t]; 0 = all keys up to t (global layers).
static inline int layer_window(const ModelConfig *c, int l) { return layer_is_swa(c, l) ? c->swa_window : 0; }

// kconvw holds one (C, W) slab per layer with a key convolution, in layer order: layer l's slab index,
// or -1 when it has none.
static inline int kconv_slab(const ModelConfig *c, int l) {
    if (!layer_has_kconv(c, l)) { return -1; }
    int n = 0;
    for (int i = 0; i < l; i++) { n += layer_has_kconv(c, i); }
    return n;
}
static inline int num_kconv_layers(const ModelConfig *c) {
    int n = 0;
    for (int l = 0; l < c->n_layer; l++) { n += layer_has_kconv(c, l); }
    return n;
}

// Every inconsistent configuration gets one clear line and exit(1).
static inline void config_validate(const ModelConfig *c) {
    if (c->vocab_size < 2) { die("vocab size %d: must be at least 2", c->vocab_size); }
    if (c->n_layer < 1) { die("layers %d: must be at least 1", c->n_layer); }
    if (c->n_head < 1 || c->d_model < 1 || c->d_model % c->n_head != 0) {
        die("d_model %d must be a positive multiple of the head count %d", c->d_model, c->n_head);
    }
    if ((c->d_model / c->n_head) % 2 != 0) { die("head dim %d must be even (RoPE rotates pairs)", c->d_model / c->n_head); }
    if (c->ffn < 1) { die("ffn size %d: must be at least 1", c->ffn); }
    if (c->max_seq_len < 1) { die("max sequence length %d: must be at least 1", c->max_seq_len); }
    if (!(c->rope_theta > 1.0f)) { die("rope theta %g: must be > 1", c->rope_theta); }
    if (c->kconv != 0 && c->kconv != 3 && c->kconv != 5) { die("key conv width %d: must be 0 (off), 3 or 5", c->kconv); }
    if (c->attn != ATTN_DENSE && c->attn != ATTN_MOBA) { die("attention kind %d: must be dense or moba", c->attn); }
    // Size limits far above any real model, so the parameter count (llmc sizes are size_t products) cannot wrap.
    if (c->vocab_size > CONFIG_MAX_VOCAB) { die("vocab size %d: at most %d", c->vocab_size, CONFIG_MAX_VOCAB); }
    if (c->n_layer > CONFIG_MAX_LAYERS) { die("layers %d: at most %d", c->n_layer, CONFIG_MAX_LAYERS); }
    if (c->d_model > CONFIG_MAX_WIDTH || c->ffn > CONFIG_MAX_WIDTH) { die("d_model %d / ffn %d: at most %d", c->d_model, c->ffn, CONFIG_MAX_WIDTH); }
    if (c->layout == LAYOUT_PAPER) {
        if (c->n_layer < 2) { die("layers %d: the paper layout needs at least 2 (sliding-window and global layers alternate)", c->n_layer); }
        if (c->swa_window < 1) { die("sliding window %d: must be at least 1 key (-w)", c->swa_window); }
    } else if (c->layout == LAYOUT_GLOBAL) {
        if (c->swa_window != 0) { die("sliding window %d given with the global layout: only the paper layout (-Y paper) has sliding-window layers", c->swa_window); }
    } else {
        die("layer layout %d: must be global (0) or paper (1)", c->layout);
    }
    if (c->global_nope != 0 && c->global_nope != 1) { die("global NoPE flag %d: must be 0 or 1", c->global_nope); }
    if (c->reserved != 0) { die("model config reserved field is %d: must be 0", c->reserved); }
    if (c->attn == ATTN_MOBA) {
        if (!is_power_of_two(c->moba_block)) { die("MoBA block size %d: must be a power of two", c->moba_block); }
        if (c->moba_block > c->max_seq_len) { die("MoBA block size %d exceeds the maximum sequence length %d", c->moba_block, c->max_seq_len); }
        int max_blocks = c->max_seq_len / c->moba_block + (c->max_seq_len % c->moba_block != 0);
        if (c->moba_topk < 1 || c->moba_topk > max_blocks) {
            die("MoBA top-k %d: must be between 1 and the %d blocks of the maximum sequence length", c->moba_topk, max_blocks);
        }
        if (c->n_dense_last < 0 || c->n_dense_last > c->n_layer) {
            die("dense last layers %d: must be between 0 and the layer count %d", c->n_dense_last, c->n_layer);
        }
    } else if (c->n_dense_last != 0) {
        die("dense last layers (-N %d) only makes sense with MoBA attention", c->n_dense_last);
    }
}

// Checked where T becomes known: a run's sequence length must fit the model.
static inline void config_check_seq_len(const ModelConfig *c, int T) {
    if (T < 1) { die("sequence length %d: must be at least 1", T); }
    if (T > c->max_seq_len) { die("sequence length %d exceeds the model's maximum %d", T, c->max_seq_len); }
}

// ---------------------------------------------------------------------------------------------------
// Parameter layout: one contiguous array, tensors in this order (doc/model.md).
enum { P_WTE, P_LN1W, P_WQKV, P_KCONVW, P_WO, P_LN2W, P_WFC, P_WPROJ, P_LNFW, P_WLM, NUM_PARAM_TENSORS };
static const char *const param_names[NUM_PARAM_TENSORS] = {"wte", "ln1w", "wqkv", "kconvw", "wo", "ln2w", "wfc", "wproj", "lnfw", "wlm"};
// 1 = matrix: gets weight decay and a random init
static const int param_is_matrix[NUM_PARAM_TENSORS] = {1, 0, 1, 0, 1, 0, 1, 1, 0, 1};

static inline void param_sizes(const ModelConfig *c, size_t sizes[NUM_PARAM_TENSORS]) {
    size_t V = c->vocab_size, L = c->n_layer, C = c->d_model, F = c->ffn, W = c->kconv;
    sizes[P_WTE] = V * C;
    sizes[P_LN1W] = L * C;
    sizes[P_WQKV] = L * 3 * C * C;
    sizes[P_KCONVW] = (size_t)num_kconv_layers(c) * C * W;
    sizes[P_WO] = L * C * C;
    sizes[P_LN2W] = L * C;
    sizes[P_WFC] = L * 2 * F * C;
    sizes[P_WPROJ] = L * C * F;
    sizes[P_LNFW] = C;
    sizes[P_WLM] = V * C;
}

static inline size_t param_count(const ModelConfig *c) {
    size_t sizes[NUM_PARAM_TENSORS], n = 0;
    param_sizes(c, sizes);
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) { n += sizes[i]; }
    return n;
}

// GPT-style init into fp32 params: matrices N(0, 0.02), output projections (wo, wproj) N(0, 0.02/sqrt(2L)),
// norm weights 1, key conv taps uniform in [-1/sqrt(W), 1/sqrt(W)) (PyTorch's default for a depthwise
// Conv1d: fan-in W). Random values drawn tensor by tensor in layout order, element by element.
static inline void params_init(float *params, const ModelConfig *c, uint64_t seed) {
    size_t sizes[NUM_PARAM_TENSORS];
    param_sizes(c, sizes);
    Rng rng;
    rng_init(&rng, seed);
    float *p = params;
    for (int t = 0; t < NUM_PARAM_TENSORS; t++) {
        if (param_is_matrix[t]) {
            float std = (t == P_WO || t == P_WPROJ) ? 0.02f / sqrtf(2.0f * c->n_layer) : 0.02f;
            for (size_t i = 0; i < sizes[t]; i++) { p[i] = rng_normal(&rng, 0.0f, std); }
        } else if (t == P_KCONVW) {
            float bound = 1.0f / sqrtf((float)c->kconv);
            for (size_t i = 0; i < sizes[t]; i++) { p[i] = bound * (2.0f * rng_uniform(&rng) - 1.0f); }
        } else {
            for (size_t i = 0; i < sizes[t]; i++) { p[i] = 1.0f; }
        }
        p += sizes[t];
    }
}

// Names the first field that differs, for checkpoint/debug-state validation; NULL when equal.
static inline const char *config_mismatch(const ModelConfig *a, const ModelConfig *b) {
    if (a->vocab_size != b->vocab_size) return "vocab_size";
    if (a->n_layer != b->n_layer) return "n_layer";
    if (a->d_model != b->d_model) return "d_model";
    if (a->n_head != b->n_head) return "n_head";
    if (a->ffn != b->ffn) return "ffn";
    if (a->attn != b->attn) return "attention kind";
    if (a->attn == ATTN_MOBA && a->moba_block != b->moba_block) return "moba_block";
    if (a->attn == ATTN_MOBA && a->moba_topk != b->moba_topk) return "moba_topk";
    if (a->kconv != b->kconv) return "kconv";
    if (a->n_dense_last != b->n_dense_last) return "n_dense_last";
    if (a->rope_theta != b->rope_theta) return "rope_theta";
    if (a->layout != b->layout) return "layer layout";
    if (a->swa_window != b->swa_window) return "swa_window";
    if (a->global_nope != b->global_nope) return "global_nope";
    return NULL;
}

static inline void config_print(const ModelConfig *c, FILE *f) {
    fprintf(f, "model: vocab %d, layers %d, d_model %d, heads %d (head dim %d), ffn %d, max T %d, rope theta %g\n",
            c->vocab_size, c->n_layer, c->d_model, c->n_head, c->d_model / c->n_head, c->ffn, c->max_seq_len, c->rope_theta);
    if (c->layout == LAYOUT_PAPER) {
        fprintf(f, "layout: paper: layers 1, 3, ... sliding window %d with RoPE; layers 2, 4, ... global, %s\n", c->swa_window,
                c->global_nope ? "no positional encoding (NoPE)" : "RoPE");
    } else {
        fprintf(f, "layout: global: every layer global attention, %s\n", c->global_nope ? "no positional encoding (NoPE)" : "RoPE");
    }
    if (c->attn == ATTN_MOBA) {
        fprintf(f, "global attention: MoBA block %d top-k %d, key conv %d, last %d layers dense\n", c->moba_block, c->moba_topk, c->kconv, c->n_dense_last);
    } else {
        fprintf(f, "global attention: dense causal, key conv %d\n", c->kconv);
    }
    size_t sizes[NUM_PARAM_TENSORS];
    param_sizes(c, sizes);
    size_t n = param_count(c);
    fprintf(f, "parameters: %zu (%.1fM; %.1fM without the embedding tables)\n", n, n / 1e6, (n - sizes[P_WTE] - sizes[P_WLM]) / 1e6);
}

#endif // LLMC_CONFIG_H
