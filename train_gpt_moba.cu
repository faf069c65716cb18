/*
 moba.c CUDA trainer: the model of doc/model.md (the function train_gpt_moba.c computes) on one GPU,
 after llm.c's train_gpt2.cu. Same command line (llmc/train_args.h), same data, schedule, log lines,
 checkpoint format and AdamW as the CPU reference, so runs move between the two unchanged.

 Precision: fp32 master parameters and AdamW moments; floatX (bf16, or fp32 with PRECISION=FP32) working
 parameters, gradients and activations. The residual stream is floatX, as in llm.c.
 Memory: per layer the forward keeps what the backward needs. -R 1 recomputes the MLP (fc, swiglu) in
 the backward, -R 2 also the attention inputs (ln1, qkv, q, k, v) and ln2 from the stored residual
 streams; attention output, log-sum-exp and MoBA selections are always kept (recomputing attention would
 cost its whole forward again).
 Per micro-batch the loss is the mean cross-entropy over targets >= 0; gradients accumulate over
 micro-batches scaled by 1/grad_accum; then global-norm clipping and AdamW (decoupled weight decay on the
 matrices only), as model_update in the CPU reference.

 Data parallel (doc/multi_gpu.md): one process per GPU. Each rank reads its own micro-batches, the
 backward hands each layer's gradients to NCCL on a communication stream as soon as they are final (last
 micro-step only), and -O 1 (ZeRO-1) keeps only this rank's shard of the fp32 master weights and AdamW
 moments: reduce-scatter of the gradients, AdamW on the shard, all-gather of the updated weights.
 A GPT without a process group (mg == NULL, as the tests use it) runs no collectives at all.

 Other programs include this file with TESTING defined (no main): test_gpt_moba.cu checks it against CPU
 debug states, eval_gpt_moba.cu evaluates with it. MOBA_TEST_HOOKS (test_gpt_moba.cu only) adds the
 hook that forces the MoBA selections (GPT.sel_override).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "llmc/checkpoint.h"
#include "llmc/config.h"
#include "llmc/dataloader.h"
#include "llmc/param_buckets.h"
#include "llmc/schedulers.h"
#include "llmc/synthetic.h"
#include "llmc/run_dir.h"
#include "llmc/run_eval.h"
#include "llmc/train_args.h"
#include "llmc/utils.h"

#include "llmc/cuda_common.cuh"
#include "llmc/cuda_utils.cuh"
#include "llmc/adamw.cuh"
#include "llmc/classifier.cuh"
#include "llmc/embedding.cuh"
#include "llmc/flash_attention.cuh"
#include "llmc/moba_attention.cuh"
#include "llmc/global_norm.cuh"
#include "llmc/matmul.cuh"
#include "llmc/moba_gate.cuh"
#include "llmc/multi_gpu.cuh"
#include "llmc/qkv_prep.cuh"
#include "llmc/rmsnorm.cuh"
#include "llmc/swiglu.cuh"

static const cudaStream_t main_stream = 0;

// ---------------------------------------------------------------------------------------------------
// Small kernels of the trainer itself

// dst = floatX(src): the working copy of the fp32 master parameters.
__global__ void cast_to_floatx_kernel(floatX *dst, const float *src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        dst[i] = from_float<floatX>(src[i]);
    }
}

// out[n] = argmax_v logits[n, v], ties to the lower index (as the CPU's strict >). One CTA per row.
__global__ void argmax_kernel(int *out, const floatX *logits, int V) {
    const floatX *row = logits + (size_t)blockIdx.x * V;
    float best = -INFINITY;
    int arg = V;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float x = to_float(row[v]);
        if (x > best) { best = x; arg = v; }
    }
    __shared__ float sbest[1024];
    __shared__ int sarg[1024];
    sbest[threadIdx.x] = best;
    sarg[threadIdx.x] = arg;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            float ob = sbest[threadIdx.x + s];
            int oa = sarg[threadIdx.x + s];
            if (ob > sbest[threadIdx.x] || (ob == sbest[threadIdx.x] && oa < sarg[threadIdx.x])) {
                sbest[threadIdx.x] = ob;
                sarg[threadIdx.x] = oa;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) { out[blockIdx.x] = sarg[0] < V ? sarg[0] : 0; }
}

static void cast_to_floatx(floatX *dst, const float *src, size_t n) {
    if (n == 0) { return; }
    cast_to_floatx_kernel<<<(int)CEIL_DIV(n, (size_t)256) < 65536 ? (int)CEIL_DIV(n, (size_t)256) : 65536, 256, 0, main_stream>>>(dst, src, n);
    cudaCheckLaunch();
}

// ---------------------------------------------------------------------------------------------------
// The model

typedef struct {
    floatX *resid;              // (L+1, N, C): residual stream entering each layer; [L] the final one
    floatX *resid2;             // (L, N, C): after the attention residual
    floatX *ln1, *ln2;          // (L, N, C); one layer's worth under -R 2
    float *ln1_rstd, *ln2_rstd; // (L, N)
    floatX *qkv;                // (L, N, 3C); one layer under -R 2
    floatX *q, *k, *v;          // (L, B, NH, T, HD) after kconv and RoPE (where the layer has them); one layer under -R 2
    float *lse;                 // (L, B, NH, T)
    int *sel;                   // (L, B, NH, T, K) MoBA selections (MoBA layers' slabs only are used)
    floatX *atty;               // (L, N, C) attention output
    floatX *fc, *fch;           // (L, N, 2F), (L, N, F); one layer under -R >= 1
    floatX *lnf;                // (N, C)
    float *lnf_rstd;            // (N)
    floatX *logits;             // (N, V); the backward overwrites it with dlogits
    float *losses;              // (N)
    floatX *proj;               // (N, C) output of wo / wproj before its residual add
    float *centroids;           // (B, NH, nb, HD) MoBA gate scratch
    int *argmax;                // (N) greedy tokens, for eval and sampling
    // backward, one layer's worth
    floatX *dresid, *dln, *datty, *dq, *dk, *dv, *dqkv, *dfc, *dfch;
    void *scratch;              // shared by rmsnorm / qkv_prep / attention / embedding backward
    float *norm_partials, *norm;
} Activations;

typedef struct {
    ModelConfig cfg;
    int recompute, deterministic;
    size_t sizes[NUM_PARAM_TENSORS], num_params;
    float *master;                 // fp32 master parameters (device)
    floatX *params, *grads;        // working parameters and gradients (device)
    floatX *p[NUM_PARAM_TENSORS], *g[NUM_PARAM_TENSORS];
    float *adam_m, *adam_v;        // (device), zeroed at init: a fresh run's first step sees zeros
    float *rope;                   // RoPE cos/sin table for positions [0, T capacity)
    int B, T;                      // activation capacity
    int cur_B, cur_T;              // shape of the last forward
    Activations a;
    int *inputs, *targets;         // device copies of the last batch
    int *cpu_targets;              // host copy of the last targets
    float *cpu_losses;             // (N) host
    float mean_loss;               // of the last forward with targets; -1 without
    int loss_count;
    float dlogits_scale;           // gpt_forward_train: logits already hold the gradient of this loss scale; else -1
#ifdef MOBA_TEST_HOOKS
    const int *sel_override;       // test_gpt_moba: device selections (Lm, B, NH, T, K) used instead of the gate
#endif
    size_t act_bytes;              // device memory taken by activations and scratch
    // data parallel; mg NULL: one process, no collectives
    MultiGpu *mg;
    int zero;                      // ZeRO-1: master, adam_m, adam_v hold only this rank's shards (buckets.shard_total)
    size_t opt_n;                  // elements of master, adam_m, adam_v
    ParamBuckets buckets;
    floatX **bucket_g, **bucket_p; // per entry of buckets.bucket_slice: the slice's gradients and weights
    size_t *bucket_n;              // and its size
    cudaEvent_t *gathered;         // ZeRO-1, per bucket: its updated weights are all-gathered (comm stream)
    int gather_pending;            // the last update's all-gathers may still run: readers wait (wait_weights)
} GPT;

// The CUDA kernels support a subset of the configurations the CPU reference accepts.
static void gpu_config_check(const ModelConfig *c) {
    config_validate(c);
    int HD = c->d_model / c->n_head;
    if (HD != 64 && HD != 128) { die("head dim %d is not supported by the CUDA attention kernels (64 or 128)", HD); }
    if (c->d_model > RMSNORM_MAX_C) { die("d_model %d exceeds the CUDA rmsnorm limit of %d", c->d_model, RMSNORM_MAX_C); }
    if (c->ffn % 8 != 0) { die("ffn %d must be a multiple of 8 for the CUDA swiglu kernel", c->ffn); }
    if (c->attn == ATTN_MOBA && c->n_dense_last < c->n_layer) {
        if (c->moba_block < 32) { die("MoBA block size %d is not supported by the CUDA attention kernels (>= 32)", c->moba_block); }
        if (c->moba_topk > MOBA_MAX_TOPK) { die("MoBA top-k %d exceeds the CUDA gate's limit of %d", c->moba_topk, MOBA_MAX_TOPK); }
    }
}

static void gpu_device_check(void) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) { die("no CUDA GPU found (%s); the CPU reference is ./train_gpt_moba", err != cudaSuccess ? cudaGetErrorString(err) : "0 devices"); }
    int device;
    cudaCheck(cudaGetDevice(&device));
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, device));
    if (prop.major < 9) { die("GPU %s is sm_%d%d; this build needs sm_90 (Hopper) or newer", prop.name, prop.major, prop.minor); }
}

static void point_params(void *base, size_t elem, void *ptrs[NUM_PARAM_TENSORS], const size_t sizes[NUM_PARAM_TENSORS]) {
    char *p = (char *)base;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) { ptrs[i] = p; p += sizes[i] * elem; }
}

// ZeRO-1: the update leaves the all-gathers of the new weights running on the comm stream, one event
// per bucket; a forward waits for each bucket just before its first use (bucket >= 0), so the gathers
// overlap with the layers before it. bucket -1: the host waits for all of them (any other reader).
static void wait_weights(GPT *m, int bucket) {
    if (!m->gather_pending) { return; }
    if (bucket >= 0) { cudaCheck(cudaStreamWaitEvent(main_stream, m->gathered[bucket], 0)); return; }
    cudaCheck(cudaStreamSynchronize(m->mg->comm_stream));
    m->gather_pending = 0;
}

// ZeRO-1: dst (compact) = this rank's shards of full (device, num_params floats).
static void keep_shards(GPT *m, float *dst, const float *full) {
    for (int i = 0; i < m->buckets.num_slices; i++) {
        const ParamSlice *s = &m->buckets.slices[i];
        cudaCheck(cudaMemcpy(dst + s->shard_offset, full + param_shard_start(&m->buckets, s),
                             param_shard_count(&m->buckets, s) * sizeof(float), cudaMemcpyDeviceToDevice));
    }
}

// An optimizer array (opt_n floats) from a full fp32 host array, through `full` under ZeRO-1.
static void upload_opt(GPT *m, float *dst, const float *host, float *full) {
    if (!m->zero) { cudaCheck(cudaMemcpy(dst, host, m->num_params * sizeof(float), cudaMemcpyHostToDevice)); return; }
    cudaCheck(cudaMemcpy(full, host, m->num_params * sizeof(float), cudaMemcpyHostToDevice));
    keep_shards(m, dst, full);
}

// Uploads fp32 master parameters (and AdamW moments, when given) and refreshes the working copy.
// Every rank passes the full arrays; under ZeRO-1 each keeps its shards.
void gpt_set_params(GPT *m, const float *params, const float *adam_m, const float *adam_v) {
    wait_weights(m, -1);
    float *full = m->zero ? (float *)cuda_alloc(m->num_params * sizeof(float), NULL) : m->master;
    cudaCheck(cudaMemcpy(full, params, m->num_params * sizeof(float), cudaMemcpyHostToDevice));
    cast_to_floatx(m->params, full, m->num_params);
    if (m->zero) { keep_shards(m, m->master, full); }
    if (adam_m) { upload_opt(m, m->adam_m, adam_m, full); }
    if (adam_v) { upload_opt(m, m->adam_v, adam_v, full); }
    cudaCheck(cudaDeviceSynchronize());
    if (m->zero) { cudaCheck(cudaFree(full)); }
}

// mg: the process group of a data-parallel run (NULL: one process, no collectives); zero: ZeRO-1.
void gpt_init_parallel(GPT *m, const ModelConfig *cfg, uint64_t seed, int recompute, int deterministic, MultiGpu *mg, int zero) {
    memset(m, 0, sizeof(*m));
    gpu_config_check(cfg);
    gpu_device_check();
    m->cfg = *cfg;
    m->recompute = recompute;
    m->deterministic = deterministic;
    param_sizes(cfg, m->sizes);
    m->num_params = param_count(cfg);
    size_t P = m->num_params;
    m->mg = mg;
    m->zero = mg != NULL && zero;
    param_buckets_init(&m->buckets, cfg, mg ? mg->rank : 0, mg ? mg->world : 1, m->zero);
    m->opt_n = m->zero ? m->buckets.shard_total : P;
    m->master = (float *)cuda_alloc(m->opt_n * sizeof(float), NULL);
    m->adam_m = (float *)cuda_alloc(m->opt_n * sizeof(float), NULL);
    m->adam_v = (float *)cuda_alloc(m->opt_n * sizeof(float), NULL);
    m->params = (floatX *)cuda_alloc(P * sizeof(floatX), NULL);
    m->grads = (floatX *)cuda_alloc(P * sizeof(floatX), NULL);
    cudaCheck(cudaMemset(m->adam_m, 0, m->opt_n * sizeof(float)));
    cudaCheck(cudaMemset(m->adam_v, 0, m->opt_n * sizeof(float)));
    cudaCheck(cudaMemset(m->grads, 0, P * sizeof(floatX)));
    point_params(m->params, sizeof(floatX), (void **)m->p, m->sizes);
    point_params(m->grads, sizeof(floatX), (void **)m->g, m->sizes);
    int S = m->buckets.num_slices;
    m->bucket_g = (floatX **)malloc_check(S * sizeof(floatX *));
    m->bucket_p = (floatX **)malloc_check(S * sizeof(floatX *));
    m->bucket_n = (size_t *)malloc_check(S * sizeof(size_t));
    for (int k = 0; k < S; k++) {
        const ParamSlice *s = &m->buckets.slices[m->buckets.bucket_slice[k]];
        m->bucket_g[k] = m->grads + s->offset;
        m->bucket_p[k] = m->params + s->offset;
        m->bucket_n[k] = s->count;
    }
    if (m->zero) {
        m->gathered = (cudaEvent_t *)malloc_check(m->buckets.num_buckets * sizeof(cudaEvent_t));
        for (int b = 0; b < m->buckets.num_buckets; b++) { cudaCheck(cudaEventCreateWithFlags(&m->gathered[b], cudaEventDisableTiming)); }
    }
    float *init = (float *)malloc_check(P * sizeof(float));
    params_init(init, cfg, seed);
    gpt_set_params(m, init, NULL, NULL);
    free(init);
    matmul_init();
    m->mean_loss = -1;
    m->dlogits_scale = -1;
}

void gpt_init(GPT *m, const ModelConfig *cfg, uint64_t seed, int recompute, int deterministic) {
    gpt_init_parallel(m, cfg, seed, recompute, deterministic, NULL, 0);
}

// Slab l of a per-layer activation, or the single slab when this activation is recomputed.
template <typename T> static inline T *layer_slab(T *base, int l, size_t per_layer, bool stored) {
    return base + (stored ? (size_t)l * per_layer : 0);
}

static void activations_alloc(GPT *m, int B, int T) {
    const ModelConfig *c = &m->cfg;
    size_t L = c->n_layer, N = (size_t)B * T, C = c->d_model, F = c->ffn, V = c->vocab_size, NH = c->n_head;
    size_t K = c->moba_topk, HD = C / NH, W = c->kconv;
    size_t Lmlp = m->recompute >= 1 ? 1 : L, Lattn = m->recompute >= 2 ? 1 : L;
    size_t *tot = &m->act_bytes, X = sizeof(floatX);
    Activations *a = &m->a;
    a->resid = (floatX *)cuda_alloc((L + 1) * N * C * X, tot);
    a->resid2 = (floatX *)cuda_alloc(L * N * C * X, tot);
    a->ln1 = (floatX *)cuda_alloc(Lattn * N * C * X, tot);
    a->ln2 = (floatX *)cuda_alloc(Lattn * N * C * X, tot);
    a->ln1_rstd = (float *)cuda_alloc(L * N * sizeof(float), tot);
    a->ln2_rstd = (float *)cuda_alloc(L * N * sizeof(float), tot);
    a->qkv = (floatX *)cuda_alloc(Lattn * N * 3 * C * X, tot);
    a->q = (floatX *)cuda_alloc(Lattn * N * C * X, tot);
    a->k = (floatX *)cuda_alloc(Lattn * N * C * X, tot);
    a->v = (floatX *)cuda_alloc(Lattn * N * C * X, tot);
    a->lse = (float *)cuda_alloc(L * N * NH * sizeof(float), tot);
    a->sel = (int *)cuda_alloc(c->attn == ATTN_MOBA ? L * N * NH * K * sizeof(int) : 0, tot);
    a->atty = (floatX *)cuda_alloc(L * N * C * X, tot);
    a->fc = (floatX *)cuda_alloc(Lmlp * N * 2 * F * X, tot);
    a->fch = (floatX *)cuda_alloc(Lmlp * N * F * X, tot);
    a->lnf = (floatX *)cuda_alloc(N * C * X, tot);
    a->lnf_rstd = (float *)cuda_alloc(N * sizeof(float), tot);
    a->logits = (floatX *)cuda_alloc(N * V * X, tot);
    a->losses = (float *)cuda_alloc(N * sizeof(float), tot);
    a->proj = (floatX *)cuda_alloc(N * C * X, tot);
    a->centroids = (float *)cuda_alloc(c->attn == ATTN_MOBA ? B * NH * CEIL_DIV((size_t)T, (size_t)c->moba_block) * HD * sizeof(float) : 0, tot);
    a->argmax = (int *)cuda_alloc(N * sizeof(int), tot);
    a->dresid = (floatX *)cuda_alloc(N * C * X, tot);
    a->dln = (floatX *)cuda_alloc(N * C * X, tot);
    a->datty = (floatX *)cuda_alloc(N * C * X, tot);
    a->dq = (floatX *)cuda_alloc(N * C * X, tot);
    a->dk = (floatX *)cuda_alloc(N * C * X, tot);
    a->dv = (floatX *)cuda_alloc(N * C * X, tot);
    a->dqkv = (floatX *)cuda_alloc(N * 3 * C * X, tot);
    a->dfc = (floatX *)cuda_alloc(N * 2 * F * X, tot);
    a->dfch = (floatX *)cuda_alloc(N * F * X, tot);
    size_t scratch = rmsnorm_backward_scratch_bytes((int)C);
    size_t need[] = {qkv_prep_backward_scratch_bytes((int)C, (int)W), attention_backward_scratch_bytes(B, (int)NH, T, (int)HD),
                     encoder_backward_scratch_bytes((int)N, (int)V)};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) { if (need[i] > scratch) { scratch = need[i]; } }
    if (c->attn == ATTN_MOBA && c->n_dense_last < c->n_layer) {  // any batch B' x T' <= B x T (T' = 1 has the most blocks)
        size_t ms = std::max(moba_attention_scratch_bytes(B, (int)NH, T, (int)HD, c->moba_block, (int)K),
                             moba_attention_scratch_bytes((int)N, (int)NH, 1, (int)HD, c->moba_block, (int)K));
        scratch = std::max(scratch, ms);
    }
    a->scratch = cuda_alloc(scratch, tot);
    a->norm_partials = (float *)cuda_alloc(GLOBAL_NORM_BLOCKS * sizeof(float), tot);
    a->norm = (float *)cuda_alloc(sizeof(float), tot);
    m->rope = (float *)cuda_alloc(rope_table_bytes(T, (int)HD), tot);
    rope_table_init(m->rope, T, (int)HD, c->rope_theta);
    m->inputs = (int *)cuda_alloc(N * sizeof(int), tot);
    m->targets = (int *)cuda_alloc(N * sizeof(int), tot);
    m->cpu_targets = (int *)malloc_check(N * sizeof(int));
    m->cpu_losses = (float *)malloc_check(N * sizeof(float));
    m->B = B;
    m->T = T;
}

static void activations_free(Activations *a) {
    void *bufs[] = {a->resid, a->resid2, a->ln1, a->ln2, a->ln1_rstd, a->ln2_rstd, a->qkv, a->q, a->k, a->v, a->lse, a->sel,
                    a->atty, a->fc, a->fch, a->lnf, a->lnf_rstd, a->logits, a->losses, a->proj, a->centroids, a->argmax,
                    a->dresid, a->dln, a->datty, a->dq, a->dk, a->dv, a->dqkv, a->dfc, a->dfch, a->scratch,
                    a->norm_partials, a->norm};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) { cudaCheck(cudaFree(bufs[i])); }
}

// Pointers of layer l's activations and weights, for the given batch; the recomputed ones share one slab.
typedef struct {
    floatX *x, *x2, *xout, *ln1, *ln2, *qkv, *q, *k, *v, *atty, *fc, *fch;
    float *ln1r, *ln2r, *lse;
    int *sel;  // NULL for a dense or sliding-window layer
    int window;  // sliding-window layer: keys [t - window + 1, t]; 0: global
    int kconv;   // key conv width of this layer (0: none)
    const float *rope;  // the RoPE table, NULL for a NoPE layer
    const floatX *ln1w, *wqkv, *kconvw, *wo, *ln2w, *wfc, *wproj;
    floatX *dln1w, *dwqkv, *dkconvw, *dwo, *dln2w, *dwfc, *dwproj;
} LayerView;

static LayerView layer_view(GPT *m, int l) {
    const ModelConfig *c = &m->cfg;
    Activations *a = &m->a;
    size_t cap = (size_t)m->B * m->T, C = c->d_model, F = c->ffn, NH = c->n_head, W = c->kconv;
    bool mlp = m->recompute < 1, attn = m->recompute < 2;
    LayerView v;
    v.x = a->resid + l * cap * C;
    v.xout = a->resid + (l + 1) * cap * C;
    v.x2 = a->resid2 + l * cap * C;
    v.ln1 = layer_slab(a->ln1, l, cap * C, attn);
    v.ln2 = layer_slab(a->ln2, l, cap * C, attn);
    v.qkv = layer_slab(a->qkv, l, cap * 3 * C, attn);
    v.q = layer_slab(a->q, l, cap * C, attn);
    v.k = layer_slab(a->k, l, cap * C, attn);
    v.v = layer_slab(a->v, l, cap * C, attn);
    v.atty = a->atty + l * cap * C;
    v.fc = layer_slab(a->fc, l, cap * 2 * F, mlp);
    v.fch = layer_slab(a->fch, l, cap * F, mlp);
    v.ln1r = a->ln1_rstd + l * cap;
    v.ln2r = a->ln2_rstd + l * cap;
    v.lse = a->lse + l * cap * NH;
    v.sel = layer_is_moba(c, l) ? a->sel + l * cap * NH * c->moba_topk : NULL;
    v.ln1w = m->p[P_LN1W] + l * C;           v.dln1w = m->g[P_LN1W] + l * C;
    v.wqkv = m->p[P_WQKV] + l * 3 * C * C;   v.dwqkv = m->g[P_WQKV] + l * 3 * C * C;
    int slab = kconv_slab(c, l);
    v.kconv = slab >= 0 ? (int)W : 0;
    v.kconvw = slab >= 0 ? m->p[P_KCONVW] + slab * C * W : NULL;
    v.dkconvw = slab >= 0 ? m->g[P_KCONVW] + slab * C * W : NULL;
    v.window = layer_window(c, l);
    v.rope = layer_has_rope(c, l) ? m->rope : NULL;
    v.wo = m->p[P_WO] + l * C * C;           v.dwo = m->g[P_WO] + l * C * C;
    v.ln2w = m->p[P_LN2W] + l * C;           v.dln2w = m->g[P_LN2W] + l * C;
    v.wfc = m->p[P_WFC] + l * 2 * F * C;     v.dwfc = m->g[P_WFC] + l * 2 * F * C;
    v.wproj = m->p[P_WPROJ] + l * C * F;     v.dwproj = m->g[P_WPROJ] + l * C * F;
    return v;
}

// qkv = ln1 wqkv^T, then q, k, v (B, NH, T, HD) with the layer's kconv and RoPE.
static void attention_inputs(GPT *m, const LayerView *lv, int B, int T) {
    const ModelConfig *c = &m->cfg;
    int C = c->d_model, NH = c->n_head, N = B * T;
    matmul_forward(lv->qkv, lv->ln1, lv->wqkv, N, C, 3 * C, main_stream);
    qkv_prep_forward(lv->q, lv->k, lv->v, lv->qkv, lv->kconvw, lv->rope, B, T, NH, C / NH, lv->kconv, main_stream);
}

static MobaSelection layer_selection(const GPT *m, const LayerView *lv) {
    MobaSelection s = {lv->sel, m->cfg.moba_block, m->cfg.moba_topk};
    return s;
}

// Forward of a (B, T) batch: logits, and with targets the per-position losses and their mean (host).
// dlogits_scale >= 0 (training, gpt_forward_train): the classifier writes the gradient of dlogits_scale x the
// mean loss over the logits in the same pass, so the backward does not read them again.
// Activations use a prefix of each layer's slab when B*T is below the capacity (allocated on first use).
static void gpt_forward_pass(GPT *m, const int *inputs, const int *targets, int B, int T, float dlogits_scale) {
    const ModelConfig *c = &m->cfg;
    config_check_seq_len(c, T);
    if (m->a.resid == NULL) { activations_alloc(m, B, T); }
    if ((size_t)B * T > (size_t)m->B * m->T || T > m->T) { die("batch %dx%d exceeds the model's allocated %dx%d", B, T, m->B, m->T); }
    int L = c->n_layer, C = c->d_model, NH = c->n_head, HD = C / NH, F = c->ffn, V = c->vocab_size, N = B * T;
    for (int n = 0; n < N; n++) {
        if (inputs[n] < 0 || inputs[n] >= V) { die("input token %d at position %d is outside the vocabulary [0, %d)", inputs[n], n, V); }
        if (targets && (targets[n] < -1 || targets[n] >= V)) { die("target token %d at position %d is outside the vocabulary [0, %d)", targets[n], n, V); }
    }
    m->cur_B = B;
    m->cur_T = T;
    Activations *a = &m->a;
    cudaCheck(cudaMemcpy(m->inputs, inputs, N * sizeof(int), cudaMemcpyHostToDevice));
    wait_weights(m, L + 1);  // wte
    encoder_forward(a->resid, m->inputs, m->p[P_WTE], N, C, V, main_stream);
    LayerView lv0 = layer_view(m, 0);
    wait_weights(m, 1);  // layer 0 (its ln1w first)
    rmsnorm_forward(lv0.ln1, lv0.ln1r, a->resid, lv0.ln1w, N, C, main_stream);
    int moba_index = 0;
    for (int l = 0; l < L; l++) {
        LayerView lv = layer_view(m, l);
        attention_inputs(m, &lv, B, T);
        MobaSelection s = layer_selection(m, &lv);
        if (lv.sel) {
#ifdef MOBA_TEST_HOOKS
            if (m->sel_override) {
                size_t n = (size_t)N * NH * c->moba_topk;
                cudaCheck(cudaMemcpyAsync(lv.sel, m->sel_override + moba_index * n, n * sizeof(int), cudaMemcpyDeviceToDevice, main_stream));
            } else
#endif
            {
                moba_gate(lv.sel, a->centroids, lv.q, lv.k, B, NH, T, HD, c->moba_block, c->moba_topk, main_stream);
            }
            moba_index++;
        }
        if (lv.sel) { moba_attention_forward(lv.atty, lv.lse, lv.q, lv.k, lv.v, &s, a->scratch, B, NH, T, HD, main_stream); }
        else { attention_forward(lv.atty, lv.lse, lv.q, lv.k, lv.v, B, NH, T, HD, NULL, main_stream, lv.window); }
        matmul_forward(a->proj, lv.atty, lv.wo, N, C, C, main_stream);
        fused_residual_rmsnorm_forward(lv.x2, lv.ln2, lv.ln2r, lv.x, a->proj, lv.ln2w, N, C, main_stream);
        matmul_forward(lv.fc, lv.ln2, lv.wfc, N, C, 2 * F, main_stream);
        swiglu_forward(lv.fch, lv.fc, N, F, main_stream);
        matmul_forward(a->proj, lv.fch, lv.wproj, N, F, C, main_stream);
        // the residual add is fused with the next norm: the next layer's ln1, or the final norm
        if (l + 1 < L) {
            LayerView next = layer_view(m, l + 1);
            wait_weights(m, 2 + l);  // layer l + 1, from its ln1w on
            fused_residual_rmsnorm_forward(lv.xout, next.ln1, next.ln1r, lv.x2, a->proj, next.ln1w, N, C, main_stream);
        } else {
            wait_weights(m, 0);  // lnfw, wlm
            fused_residual_rmsnorm_forward(lv.xout, a->lnf, a->lnf_rstd, lv.x2, a->proj, m->p[P_LNFW], N, C, main_stream);
        }
    }
    m->gather_pending = 0;  // the main stream now waits for every bucket
    matmul_forward(a->logits, a->lnf, m->p[P_WLM], N, C, V, main_stream);
    m->mean_loss = -1;
    m->dlogits_scale = -1;
    if (targets) {
        memcpy(m->cpu_targets, targets, N * sizeof(int));
        cudaCheck(cudaMemcpy(m->targets, targets, N * sizeof(int), cudaMemcpyHostToDevice));
        int count = 0;
        for (int n = 0; n < N; n++) { count += targets[n] >= 0; }
        m->loss_count = count;
        if (count > 0 || dlogits_scale < 0) {
            fused_classifier(a->logits, a->losses, m->targets, dlogits_scale, count, N, V, dlogits_scale >= 0, main_stream);
        } else {  // no target to learn from: zero loss and gradient
            cudaCheck(cudaMemsetAsync(a->losses, 0, N * sizeof(float), main_stream));
            cudaCheck(cudaMemsetAsync(a->logits, 0, (size_t)N * V * sizeof(floatX), main_stream));
        }
        m->dlogits_scale = dlogits_scale;
        cudaCheck(cudaMemcpy(m->cpu_losses, a->losses, N * sizeof(float), cudaMemcpyDeviceToHost));
        double total = 0;
        for (int n = 0; n < N; n++) { total += m->cpu_losses[n]; }
        m->mean_loss = count ? (float)(total / count) : 0.0f;
    }
}

void gpt_zero_grad(GPT *m) { cudaCheck(cudaMemsetAsync(m->grads, 0, m->num_params * sizeof(floatX), main_stream)); }

// Data parallel, on the last micro-step: bucket b's gradients are final, so the comm stream averages them
// over the ranks (ZeRO-1: this rank's shards only) while the backward goes on with the layers below.
static void reduce_bucket(GPT *m, int b, int last_micro) {
    if (m->mg == NULL || !last_micro) { return; }
    int first = m->buckets.bucket_first[b], n = m->buckets.bucket_first[b + 1] - first;
    multi_gpu_reduce_bucket(m->mg, m->bucket_g + first, m->bucket_n + first, n, m->zero, main_stream);
}

// Accumulates d(loss_scale * mean loss)/d(params) into the gradients (loss_scale = 1/grad_accum).
// Overwrites the logits with their gradient. With a process group the last micro-step (last_micro = 1)
// also starts the gradients' reduction over the ranks; gpt_update waits for it.
void gpt_forward(GPT *m, const int *inputs, const int *targets, int B, int T) { gpt_forward_pass(m, inputs, targets, B, T, -1.0f); }

// The training forward: as gpt_forward with targets, and the logits are overwritten by the gradient of
// loss_scale x the mean loss (the backward's first step), which gpt_backward_micro(m, loss_scale, .) then uses.
void gpt_forward_train(GPT *m, const int *inputs, const int *targets, int B, int T, float loss_scale) {
    if (targets == NULL || loss_scale < 0) { die("gpt_forward_train needs targets and a loss scale >= 0"); }
    gpt_forward_pass(m, inputs, targets, B, T, loss_scale);
}

void gpt_backward_micro(GPT *m, float loss_scale, int last_micro) {
    if (m->mean_loss < 0) { die("gpt_backward called without a forward pass with targets"); }
    if (m->dlogits_scale >= 0 && m->dlogits_scale != loss_scale) {
        die("gpt_backward: loss scale %g, but gpt_forward_train wrote the gradient of %g", loss_scale, m->dlogits_scale);
    }
    const ModelConfig *c = &m->cfg;
    int B = m->cur_B, T = m->cur_T, N = B * T;
    int L = c->n_layer, C = c->d_model, NH = c->n_head, HD = C / NH, F = c->ffn, V = c->vocab_size;
    Activations *a = &m->a;
    float *fscratch = (float *)a->scratch;
    if (m->dlogits_scale < 0) {  // after gpt_forward: the logits' gradient is still to be written
        if (m->loss_count > 0) {
            fused_classifier(a->logits, a->losses, m->targets, loss_scale, m->loss_count, N, V, true, main_stream);
        } else {
            cudaCheck(cudaMemsetAsync(a->logits, 0, (size_t)N * V * sizeof(floatX), main_stream));
        }
    }
    matmul_backward(a->dln, m->g[P_WLM], a->logits, a->lnf, m->p[P_WLM], N, C, V, false, true, main_stream);
    cudaCheck(cudaMemsetAsync(a->dresid, 0, (size_t)N * C * sizeof(floatX), main_stream));
    rmsnorm_backward(a->dresid, m->g[P_LNFW], fscratch, a->dln, a->resid + (size_t)L * m->B * m->T * C, m->p[P_LNFW],
                     a->lnf_rstd, N, C, main_stream);
    reduce_bucket(m, 0, last_micro);  // lnfw, wlm
    for (int l = L - 1; l >= 0; l--) {
        LayerView lv = layer_view(m, l);
        // MLP: dresid holds d(xout), which is also d(x2) through the residual
        if (m->recompute >= 2) { rmsnorm_forward(lv.ln2, lv.ln2r, lv.x2, lv.ln2w, N, C, main_stream); }
        if (m->recompute >= 1) {
            matmul_forward(lv.fc, lv.ln2, lv.wfc, N, C, 2 * F, main_stream);
            swiglu_forward(lv.fch, lv.fc, N, F, main_stream);
        }
        matmul_backward(a->dfch, lv.dwproj, a->dresid, lv.fch, lv.wproj, N, F, C, false, true, main_stream);
        swiglu_backward(a->dfc, a->dfch, lv.fc, N, F, main_stream);
        matmul_backward(a->dln, lv.dwfc, a->dfc, lv.ln2, lv.wfc, N, C, 2 * F, false, true, main_stream);
        rmsnorm_backward(a->dresid, lv.dln2w, fscratch, a->dln, lv.x2, lv.ln2w, lv.ln2r, N, C, main_stream);
        // attention: dresid now holds d(x2)
        matmul_backward(a->datty, lv.dwo, a->dresid, lv.atty, lv.wo, N, C, C, false, true, main_stream);
        if (m->recompute >= 2) {
            rmsnorm_forward(lv.ln1, lv.ln1r, lv.x, lv.ln1w, N, C, main_stream);
            attention_inputs(m, &lv, B, T);
        }
        MobaSelection s = layer_selection(m, &lv);
        if (lv.sel) {
            moba_attention_backward(a->dq, a->dk, a->dv, a->datty, lv.atty, lv.lse, lv.q, lv.k, lv.v, &s, a->scratch, B, NH, T,
                                    HD, m->deterministic, main_stream);
        } else {
            attention_backward(a->dq, a->dk, a->dv, a->datty, lv.atty, lv.lse, lv.q, lv.k, lv.v, fscratch, B, NH, T, HD, NULL,
                               m->deterministic, main_stream, lv.window);
        }
        qkv_prep_backward(a->dqkv, lv.dkconvw, fscratch, a->dq, a->dk, a->dv, lv.qkv, lv.kconvw, lv.rope, B, T, NH, HD,
                          lv.kconv, true, main_stream);
        matmul_backward(a->dln, lv.dwqkv, a->dqkv, lv.ln1, lv.wqkv, N, C, 3 * C, false, true, main_stream);
        rmsnorm_backward(a->dresid, lv.dln1w, fscratch, a->dln, lv.x, lv.ln1w, lv.ln1r, N, C, main_stream);
        reduce_bucket(m, 1 + l, last_micro);
    }
    encoder_backward(m->g[P_WTE], a->scratch, a->dresid, m->inputs, N, C, V, main_stream);
    reduce_bucket(m, L + 1, last_micro);  // wte
}

void gpt_backward(GPT *m, float loss_scale) { gpt_backward_micro(m, loss_scale, 1); }

typedef struct { float lr, beta1, beta2, eps, weight_decay, grad_clip; } AdamWConfig;

// ZeRO-1: zeroes the gradients outside this rank's shards (stale after the reduce-scatter), so the
// whole-buffer norm below sums exactly this rank's part, in the order of the single-GPU norm.
static void zero_unowned_grads(GPT *m) {
    for (int i = 0; i < m->buckets.num_slices; i++) {
        const ParamSlice *s = &m->buckets.slices[i];
        size_t start = param_shard_start(&m->buckets, s), end = start + param_shard_count(&m->buckets, s);
        if (start > s->offset) { cudaCheck(cudaMemsetAsync(m->grads + s->offset, 0, (start - s->offset) * sizeof(floatX), main_stream)); }
        if (s->offset + s->count > end) { cudaCheck(cudaMemsetAsync(m->grads + end, 0, (s->offset + s->count - end) * sizeof(floatX), main_stream)); }
    }
}

// Global gradient norm (before clipping), computed deterministically on the device; under ZeRO-1 the
// ranks' squared norms of their shards are summed (mean x world) so every rank gets the same value.
float gpt_grad_norm(GPT *m) {
    if (m->zero) { zero_unowned_grads(m); }
    global_norm_squared(m->a.norm_partials, m->grads, m->num_params, true, main_stream);
    global_norm_reduce(m->a.norm, m->a.norm_partials, main_stream);
    if (m->zero) {
        multi_gpu_comm_wait_main(m->mg, main_stream);
        multi_gpu_all_reduce_mean(m->mg, m->a.norm, m->a.norm, 1, m->mg->comm_stream);
        multi_gpu_main_wait_comm(m->mg, main_stream);
    }
    float sq;
    cudaCheck(cudaMemcpy(&sq, m->a.norm, sizeof(float), cudaMemcpyDeviceToHost));
    if (m->zero) { sq *= (float)m->mg->world; }
    return sqrtf(sq);
}

// One AdamW step (t counts from 1) after global-norm clipping; returns the norm before clipping. A
// non-finite norm (the same on every rank) skips the step: gradients zeroed, no AdamW, weights unchanged.
// ZeRO-1: AdamW on this rank's shard of each slice, then every shard's new weights to every rank.
float gpt_update(GPT *m, const AdamWConfig *o, float lr, int t) {
    if (m->mg) { multi_gpu_main_wait_comm(m->mg, main_stream); }  // the backward's bucket reductions
    float norm = gpt_grad_norm(m);
    if (!isfinite(norm)) { gpt_zero_grad(m); return norm; }  // the NaN/Inf policy: a skipped step (train_main counts it)
    float gscale = (o->grad_clip > 0 && norm > o->grad_clip) ? o->grad_clip / norm : 1.0f;
    if (m->zero) {
        const ParamBuckets *pb = &m->buckets;
        for (int i = 0; i < pb->num_slices; i++) {
            const ParamSlice *s = &pb->slices[i];
            size_t start = param_shard_start(pb, s), so = s->shard_offset;
            adamw_update(m->master + so, m->params + start, m->adam_m + so, m->adam_v + so, m->grads + start,
                         param_shard_count(pb, s), lr, o->beta1, o->beta2, o->eps, s->decay ? o->weight_decay : 0.0f,
                         gscale, t, main_stream);
        }
        multi_gpu_comm_wait_main(m->mg, main_stream);
        int L = m->cfg.n_layer;
        for (int i = 0; i < pb->num_buckets; i++) {
            int b = (L + 1 + i) % (L + 2);  // the forward's order: wte, layers 0..L-1, then lnfw / wlm
            int first = pb->bucket_first[b];
            multi_gpu_gather_bucket(m->mg, m->bucket_p + first, m->bucket_n + first, pb->bucket_first[b + 1] - first, m->mg->comm_stream);
            cudaCheck(cudaEventRecord(m->gathered[b], m->mg->comm_stream));
        }
        m->gather_pending = 1;  // the next forward waits bucket by bucket (wait_weights)
        cudaCheck(cudaGetLastError());
        return norm;
    }
    size_t off = 0;
    for (int i = 0; i < NUM_PARAM_TENSORS; i++) {
        float wd = param_is_matrix[i] ? o->weight_decay : 0.0f;
        adamw_update(m->master + off, m->p[i], m->adam_m + off, m->adam_v + off, m->g[i], m->sizes[i], lr, o->beta1,
                     o->beta2, o->eps, wd, gscale, t, main_stream);
        off += m->sizes[i];
    }
    cudaCheck(cudaGetLastError());
    return norm;
}

// A step skipped for a non-finite loss: waits for the gradient reductions, zeroes the gradients.
void gpt_skip_update(GPT *m) {
    if (m->mg) { multi_gpu_main_wait_comm(m->mg, main_stream); }
    gpt_zero_grad(m);
}

// Frees the activations (the next gpt_forward allocates them again for its shape).
void gpt_release_activations(GPT *m) {
    if (!m->a.resid) { return; }
    activations_free(&m->a);
    cudaCheck(cudaFree(m->rope)); cudaCheck(cudaFree(m->inputs)); cudaCheck(cudaFree(m->targets));
    free(m->cpu_targets); free(m->cpu_losses);
    memset(&m->a, 0, sizeof(m->a));
    m->act_bytes = 0;
}

// Makes the activations hold a B x T forward (gpt_forward allocates only on its first call): the evaluation's
// prefills and recomputes of varying shapes.
void gpt_reserve(GPT *m, int B, int T) {
    if (m->a.resid && (size_t)m->B * m->T >= (size_t)B * T && m->T >= T) { return; }
    gpt_release_activations(m);
    activations_alloc(m, B, T);
}

void gpt_free(GPT *m) {
    wait_weights(m, -1);
    gpt_release_activations(m);
    void *bufs[] = {m->master, m->adam_m, m->adam_v, m->params, m->grads};
    for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) { cudaCheck(cudaFree(bufs[i])); }
    free(m->bucket_g); free(m->bucket_p); free(m->bucket_n);
    if (m->gathered) {
        for (int b = 0; b < m->buckets.num_buckets; b++) { cudaCheck(cudaEventDestroy(m->gathered[b])); }
        free(m->gathered);
    }
    param_buckets_free(&m->buckets);
    matmul_free();
}

// ---------------------------------------------------------------------------------------------------
// Checkpoints: the shared fp32 format (llmc/checkpoint.h), loadable by the CPU reference and back.

// host (rank 0; NULL elsewhere) = the full array of an optimizer array. ZeRO-1: every rank takes part in
// one all-gather per slice (through a device buffer of the largest slice), so the file holds the whole
// state in the documented layout and a run resumes on any GPU count.
static void download_opt(const GPT *m, float *host, const float *opt) {
    if (!m->zero) { if (host) { cudaCheck(cudaMemcpy(host, opt, m->num_params * sizeof(float), cudaMemcpyDeviceToHost)); } return; }
    const ParamBuckets *pb = &m->buckets;
    size_t largest = 0;
    for (int i = 0; i < pb->num_slices; i++) { if (pb->slices[i].count > largest) { largest = pb->slices[i].count; } }
    float *slice = (float *)cuda_alloc(largest * sizeof(float), NULL);
    multi_gpu_comm_wait_main(m->mg, main_stream);
    for (int i = 0; i < pb->num_slices; i++) {
        const ParamSlice *s = &pb->slices[i];
        multi_gpu_all_gather(m->mg, slice, opt + s->shard_offset, param_shard_count(pb, s), m->mg->comm_stream);
        cudaCheck(cudaStreamSynchronize(m->mg->comm_stream));
        if (host) { cudaCheck(cudaMemcpy(host + s->offset, slice, s->count * sizeof(float), cudaMemcpyDeviceToHost)); }
    }
    cudaCheck(cudaFree(slice));
}

// Collective with a process group: every rank calls it, rank 0 writes.
void gpt_save_checkpoint(const GPT *m, const char *path, CheckpointHeader h) {
    h.magic = CKPT_MAGIC; h.version = CKPT_VERSION; h.header_bytes = CKPT_HEADER_BYTES;
    h.cfg = m->cfg; h.num_params = m->num_params; h.flags = CKPT_HAS_OPTIMIZER;
    size_t P = m->num_params;
    int writer = m->mg == NULL || m->mg->rank == 0;
    float *host = writer ? (float *)malloc_check(3 * P * sizeof(float)) : NULL;
    download_opt(m, host, m->master);
    download_opt(m, host ? host + P : NULL, m->adam_m);
    download_opt(m, host ? host + 2 * P : NULL, m->adam_v);
    if (writer) { checkpoint_write(path, &h, host, host + P, host + 2 * P); }
    free(host);
}

// Loads params (and the optimizer state when want_optimizer and present; else the moments are zeroed).
CheckpointHeader gpt_load_checkpoint(GPT *m, const char *path, int want_optimizer) {
    CheckpointHeader h;
    FILE *f = checkpoint_open(path, &h);
    checkpoint_check_config(path, &h, &m->cfg);
    size_t P = m->num_params;
    int load_opt = want_optimizer && (h.flags & CKPT_HAS_OPTIMIZER);
    float *host = (float *)malloc_check((load_opt ? 3 : 1) * P * sizeof(float));
    checkpoint_read_arrays(f, path, &h, host, load_opt ? host + P : NULL, load_opt ? host + 2 * P : NULL);
    if (!load_opt) {
        cudaCheck(cudaMemset(m->adam_m, 0, m->opt_n * sizeof(float)));
        cudaCheck(cudaMemset(m->adam_v, 0, m->opt_n * sizeof(float)));
    }
    gpt_set_params(m, host, load_opt ? host + P : NULL, load_opt ? host + 2 * P : NULL);
    free(host);
    return h;
}

// ---------------------------------------------------------------------------------------------------
// Evaluation, sampling, throughput

// Greedy token of every position of the last forward, into host out (cur_B * cur_T).
static void gpt_argmax(GPT *m, int *out) {
    int N = m->cur_B * m->cur_T;
    argmax_kernel<<<N, 1024, 0, main_stream>>>(m->a.argmax, m->a.logits, m->cfg.vocab_size);
    cudaCheckLaunch();
    cudaCheck(cudaMemcpy(out, m->a.argmax, N * sizeof(int), cudaMemcpyDeviceToHost));
}

// Mean validation loss over `batches` batches from the start of the val loader, and the accuracy on the
// synthetic recall positions (as evaluate() in the CPU reference). With a process group each rank reads
// its own batches and the result covers all of them (collective).
EvalResult evaluate(GPT *m, DataLoader *val, int batches) {
    EvalResult r = {0, 0, 0, 0};
    int *pred = (int *)malloc_check((size_t)val->B * val->T * sizeof(int));
    dataloader_reset(val);
    for (int i = 0; i < batches; i++) {
        dataloader_next_batch(val);
        gpt_forward(m, val->inputs, val->targets, val->B, val->T);
        r.loss += m->mean_loss / batches;
        gpt_argmax(m, pred);
        eval_count_recall(&r, val->inputs, val->targets, pred, val->B, val->T);
    }
    free(pred);
    if (m->mg) {
        int W = m->mg->world;
        r.loss = multi_gpu_mean_scalar(m->mg, r.loss);
        r.recall_hits = llround(multi_gpu_mean_scalar(m->mg, (double)r.recall_hits) * W);
        r.recall_count = llround(multi_gpu_mean_scalar(m->mg, (double)r.recall_count) * W);
        r.recall_acc = r.recall_count ? (double)r.recall_hits / r.recall_count : 0;
    }
    return r;
}

// Greedy continuation of a prompt, full recompute per token (as the CPU reference).
void generate(GPT *m, int *tokens, int prompt_len, int total_len) {
    int *pred = (int *)malloc_check((size_t)total_len * sizeof(int));
    for (int t = prompt_len; t < total_len; t++) {
        gpt_forward(m, tokens, NULL, 1, t);
        gpt_argmax(m, pred);
        tokens[t] = pred[t - 1];
    }
    free(pred);
}

// Keys a query of layer l attends to, averaged over the positions of a length-T sequence: what the
// attention kernels compute (dense (T + 1) / 2; a window w: min(t + 1, w); MoBA: its own block up to t plus
// up to K - 1 whole past blocks).
static double attention_keys_per_query(const ModelConfig *c, int l, int T) {
    double sum = 0;
    for (int t = 0; t < T; t++) {
        if (layer_is_swa(c, l)) { sum += t + 1 < c->swa_window ? t + 1 : c->swa_window; }
        else if (layer_is_moba(c, l)) {
            int bs = c->moba_block, past = t / bs < c->moba_topk - 1 ? t / bs : c->moba_topk - 1;
            sum += t % bs + 1 + (double)past * bs;
        } else { sum += t + 1; }
    }
    return sum / T;
}

// Model FLOPs per token, counting only what runs: 6 x non-embedding parameters (matmuls, forward and
// backward) + per layer 12 d x (keys per query) for attention (QK^T and PV, forward and backward; the
// MoBA gate's scores are left out). For dense causal attention this is the usual 6 L T d.
static double flops_per_token(const GPT *m, int T) {
    const ModelConfig *c = &m->cfg;
    double flops = 6.0 * ((double)m->num_params - (double)m->sizes[P_WTE]);
    for (int l = 0; l < c->n_layer; l++) { flops += 12.0 * c->d_model * attention_keys_per_query(c, l, T); }
    return flops;
}

#define PEAK_BF16_FLOPS 989e12  // H100 SXM dense bf16 datasheet peak, the MFU denominator (as PyTorch-side MFU figures use)

static double gpu_memory_used_gib(void) {
    size_t free_b, total_b;
    cudaCheck(cudaMemGetInfo(&free_b, &total_b));
    return (double)(total_b - free_b) / (1024.0 * 1024.0 * 1024.0);
}

// ---------------------------------------------------------------------------------------------------

// The process group of -P (world 1 without a launcher), on this rank's GPU: joined before any CUDA
// allocation. Ranks above 0 print only this line and errors (stderr): rank 0 speaks for the run.
static MultiGpu join_process_group(const TrainArgs *args) {
    ProcessGroupSpec pg = process_group_parse(args->process_group);
    MultiGpuArgs ma = multi_gpu_default_args();
    ma.init = pg.init;
    ma.endpoint = pg.endpoint[0] ? pg.endpoint : NULL;
    ma.tag = args->run_tag;
    ma.timeout_s = args->collective_timeout_s;
    MultiGpu mg = multi_gpu_init(&ma);
    multi_gpu_print(&mg);
    fflush(stdout);
    if (mg.rank > 0 && freopen("/dev/null", "w", stdout) == NULL) { die("rank %d: cannot silence stdout", mg.rank); }
    return mg;
}

int train_main(int argc, char **argv) {
    TrainArgs args = parse_args(argc, argv);
    if (args.debug_state) { die("-D: debug states are written by the CPU reference (./train_gpt_moba -D ...), not the CUDA trainer"); }
    ModelConfig cfg = config_from_args(&args);
    gpu_config_check(&cfg);
    MultiGpu mg = join_process_group(&args);
    int main_rank = mg.rank == 0;
    if (main_rank) { ensure_synthetic_data(&args, &cfg); }
    multi_gpu_barrier(&mg);  // the other ranks read the data rank 0 may just have written
    int grad_accum = grad_accum_steps(&args, mg.world);
    AdamWConfig opt = {args.lr, 0.9f, 0.95f, 1e-8f, args.weight_decay, args.grad_clip};

    GPT model;
    gpt_init_parallel(&model, &cfg, args.seed, args.recompute, args.deterministic, &mg, args.zero_stage);
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, mg.device));
    config_print(&cfg, stdout);
    printf("device: %s, precision %s, recompute %d, deterministic %d\n", prop.name, PRECISION_NAME, args.recompute, args.deterministic);
    printf("data parallel: %d GPU%s, ZeRO-%d, optimizer state %.2f GiB per GPU\n", mg.world, mg.world > 1 ? "s" : "",
           model.zero, 3.0 * model.opt_n * sizeof(float) / (1024.0 * 1024.0 * 1024.0));

    DataLoader train, val;
    dataloader_init(&train, args.train_pattern, args.B, args.T, mg.rank, mg.world, 1, args.seed, (uint32_t)cfg.vocab_size);
    dataloader_init(&val, args.val_pattern, args.B, args.T, mg.rank, mg.world, 0, args.seed, (uint32_t)cfg.vocab_size);

    RunState run;
    run_init(&run, &args, grad_accum, mg.world);
    if (args.init_ckpt) {
        gpt_load_checkpoint(&model, args.init_ckpt, 0);
        printf("initialised weights from %s\n", args.init_ckpt);
    }
    if (args.resume) {
        CheckpointHeader h = gpt_load_checkpoint(&model, run.resume_path, 1);
        run_resume(&run, &h, &train);
    }
    if (main_rank) { run_open_log(&run); }
    else { run.log = fopen_check("/dev/null", "w"); }  // only rank 0 keeps the log
    printf("batch %d x %d tokens x %d GPUs, grad accum %d, %d steps\n", args.B, args.T, mg.world, grad_accum, args.steps);

    double flops_tok = flops_per_token(&model, args.T), peak_mem = 0;
    printf("MFU counts %.4g FLOPs per token (6 x non-embedding params + the attention FLOPs executed: windows and selected blocks) against %.0f TFLOP/s\n",
           flops_tok, PEAK_BF16_FLOPS / 1e12);
    double t_run = now_seconds();
    int step = run.start_step;
    for (; step < args.steps; step++) {
        if (args.val_every > 0 && step % args.val_every == 0) {
            EvalResult e = evaluate(&model, &val, args.val_batches);
            run_log_eval(&run, step, &e, 0);
        }
        double t0 = now_seconds();
        gpt_zero_grad(&model);
        double loss = 0;
        for (int micro = 0; micro < grad_accum; micro++) {
            dataloader_next_batch(&train);
            gpt_forward_train(&model, train.inputs, train.targets, args.B, args.T, 1.0f / grad_accum);
            gpt_backward_micro(&model, 1.0f / grad_accum, micro == grad_accum - 1);
            loss += model.mean_loss / grad_accum;
        }
        // collectives of host values go before the update: after it they would queue behind (and wait
        // for) its all-gathers, which are meant to overlap with the next step's forward
        loss = multi_gpu_mean_scalar(&mg, loss);  // the global batch's loss
        int out_of_time = args.time_limit_min > 0 && now_seconds() - t_run > args.time_limit_min * 60;
        if (args.time_limit_min > 0) { out_of_time = multi_gpu_mean_scalar(&mg, out_of_time) > 0; }  // all ranks stop together
        float lr = lr_at(&run.sched, step);
        float norm = NAN;
        if (isfinite(loss)) { norm = gpt_update(&model, &opt, lr, step + 1); }
        else { gpt_skip_update(&model); }
        run_step_finite(&run, step + 1, loss, norm);
        cudaCheck(cudaStreamSynchronize(main_stream));
        double dt = now_seconds() - t0;
        double tok_s = args.total_batch / dt;  // this step's throughput (all GPUs), as llm.c
        double mfu = tok_s / mg.world * flops_tok / PEAK_BF16_FLOPS;
        double mem = gpu_memory_used_gib();
        if (mem > peak_mem) { peak_mem = mem; }
        double eta = dt * (args.steps - step - 1);
        printf("step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %.0f ms | %.0f tok/s | MFU %.1f%% | mem %.1f GiB | ETA %.0fs\n",
               step + 1, args.steps, loss, lr, (double)norm, dt * 1000, tok_s, 100 * mfu, mem, eta);
        fprintf(run.log, "step %d train_loss %.9g lr %.6e norm %.6g tok_s %.0f mfu %.4f mem_gib %.2f\n", step + 1, loss, lr,
                (double)norm, tok_s, mfu, mem);
        fflush(run.log);
        if (run_checkpoint_due(&run, step + 1, out_of_time)) {
            multi_gpu_checksum_check(&mg, model.params, model.num_params * sizeof(floatX), "parameters");
            gpt_save_checkpoint(&model, run.ckpt_path, run_checkpoint_header(&run, step + 1, &train));
            if (main_rank) { run_checkpoint_written(&run, step + 1); }
        }
        if (out_of_time) { printf("time limit of %g minutes reached; checkpoint saved\n", args.time_limit_min); step++; break; }
    }
    printf("peak GPU memory in use %.2f GiB (activations + scratch %.2f GiB)\n", peak_mem, model.act_bytes / (1024.0 * 1024.0 * 1024.0));
    EvalResult e = evaluate(&model, &val, args.val_batches);
    run_log_eval(&run, step, &e, 1);
    uint64_t sum = multi_gpu_checksum_check(&mg, model.params, model.num_params * sizeof(floatX), "parameters");
    printf("parameter checksum %016llx, identical on all %d GPUs\n", (unsigned long long)sum, mg.world);
    int prompt, total;
    int *tokens = main_rank ? sample_prompt(&args, val.inputs, args.T, &prompt, &total) : NULL;
    if (tokens) {
        generate(&model, tokens, prompt, total);
        print_sample(&args, tokens, prompt, total, cfg.vocab_size);
        free(tokens);
    }
    fclose(run.log);
    dataloader_free(&train); dataloader_free(&val); gpt_free(&model);
    multi_gpu_free(&mg);
    return 0;
}

#ifndef TESTING
int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // progress shows line by line through a pipe (| tee) and in a killed run's log
    return train_main(argc, argv);
}
#endif
