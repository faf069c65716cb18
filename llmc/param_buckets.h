/*
 The parameter array of doc/model.md cut for data-parallel training (host only, C11 and C++): slices,
 the buckets the backward reduces while it runs, and the ZeRO-1 shard layout.

 Slices. The array is tensor-major (wte, ln1w[L], wqkv[L], kconvw[layers with a key conv], wo[L], ln2w[L],
 wfc[L], wproj[L], lnfw, wlm), so one layer's weights are spread over six or seven tensors. A slice is one
 layer's part of a per-layer tensor, or a whole tensor (wte, lnfw, wlm); slices are listed in array order
 and cover it exactly once (an empty kconvw, kconv 0, has none).

 Buckets. Bucket 0 = {lnfw, wlm} (their gradients are final first in the backward), bucket 1 + l = layer
 l's 6-7 slices, bucket L + 1 = {wte} (final last). The backward hands a bucket to the communication
 stream as soon as its gradients are final.

 ZeRO-1 shards. Rank r owns [r n / W, (r+1) n / W) of every slice of n elements (W | n is required, and
 holds for the presets' slices, all multiples of d_model, at W = 1, 2, 4, 8, 16), so reduce-scatter and
 all-gather work in place in the full-size gradient and weight buffers. The fp32 master weights and
 AdamW moments of the owned parts are stored compactly, slice i at shard_offset[i], P / W elements in
 all. At W = 1 that compact layout is the full array's, element for element.
*/
#ifndef LLMC_PARAM_BUCKETS_H
#define LLMC_PARAM_BUCKETS_H

#include <stddef.h>
#include "config.h"
#include "utils.h"

typedef struct {
    int tensor, layer;        // layer -1: a whole tensor
    size_t offset, count;     // in the full parameter array
    size_t shard_offset;      // in the compact ZeRO-1 arrays
    int decay;                // AdamW weight decay applies (matrices only)
} ParamSlice;

typedef struct {
    int rank, world, num_slices, num_buckets;
    ParamSlice *slices;       // array order
    int *bucket_first;        // bucket b holds bucket_slice[bucket_first[b] .. bucket_first[b + 1])
    int *bucket_slice;        // slice indices
    size_t num_params, shard_total;  // shard_total = num_params / world
} ParamBuckets;

static inline int param_is_per_layer(int tensor) { return tensor != P_WTE && tensor != P_LNFW && tensor != P_WLM; }

static inline int param_bucket_of(const ModelConfig *c, int tensor, int layer) {
    if (tensor == P_LNFW || tensor == P_WLM) { return 0; }
    if (tensor == P_WTE) { return c->n_layer + 1; }
    return 1 + layer;
}

// Dies, naming the slice, when the world size does not divide a slice (ZeRO-1 needs it; zero = 0 does not).
static inline void param_buckets_init(ParamBuckets *pb, const ModelConfig *c, int rank, int world, int zero) {
    if (world < 1 || rank < 0 || rank >= world) { die("param buckets: rank %d is not in [0, %d)", rank, world); }
    memset(pb, 0, sizeof(*pb));
    size_t sizes[NUM_PARAM_TENSORS];
    param_sizes(c, sizes);
    int L = c->n_layer;
    pb->rank = rank; pb->world = world; pb->num_buckets = L + 2;
    pb->slices = (ParamSlice *)malloc_check(sizeof(ParamSlice) * (size_t)NUM_PARAM_TENSORS * (size_t)L);
    size_t offset = 0;
    for (int t = 0; t < NUM_PARAM_TENSORS; t++) {
        int parts = t == P_KCONVW ? num_kconv_layers(c) : param_is_per_layer(t) ? L : 1;
        for (int l = 0, part = 0; part < parts && sizes[t] > 0; l++) {
            if (t == P_KCONVW && !layer_has_kconv(c, l)) { continue; }
            part++;
            ParamSlice *s = &pb->slices[pb->num_slices++];
            s->tensor = t; s->layer = param_is_per_layer(t) ? l : -1;
            s->offset = offset; s->count = sizes[t] / (size_t)parts; s->decay = param_is_matrix[t];
            if (zero && s->count % (size_t)world != 0) {
                die("ZeRO-1 (-O 1): %s (layer %d; -1 = whole tensor) has %zu elements, not divisible by %d GPUs; use -O 0 or another GPU count",
                    param_names[t], s->layer, s->count, world);
            }
            s->shard_offset = offset / (size_t)world;  // every earlier slice contributed count / world
            offset += s->count;
        }
    }
    pb->num_params = offset;
    pb->shard_total = offset / (size_t)world;
    // buckets: counting sort of the slices by bucket, array order kept within a bucket
    pb->bucket_first = (int *)calloc_check((size_t)pb->num_buckets + 1, sizeof(int));
    pb->bucket_slice = (int *)malloc_check(sizeof(int) * (size_t)pb->num_slices);
    for (int i = 0; i < pb->num_slices; i++) { pb->bucket_first[param_bucket_of(c, pb->slices[i].tensor, pb->slices[i].layer) + 1]++; }
    for (int b = 0; b < pb->num_buckets; b++) { pb->bucket_first[b + 1] += pb->bucket_first[b]; }
    int *fill = (int *)malloc_check(sizeof(int) * (size_t)pb->num_buckets);
    memcpy(fill, pb->bucket_first, sizeof(int) * (size_t)pb->num_buckets);
    for (int i = 0; i < pb->num_slices; i++) { pb->bucket_slice[fill[param_bucket_of(c, pb->slices[i].tensor, pb->slices[i].layer)]++] = i; }
    free(fill);
}

// This rank's shard of slice s: [start, start + count) of the full array.
static inline size_t param_shard_start(const ParamBuckets *pb, const ParamSlice *s) { return s->offset + (size_t)pb->rank * (s->count / (size_t)pb->world); }
static inline size_t param_shard_count(const ParamBuckets *pb, const ParamSlice *s) { return s->count / (size_t)pb->world; }

static inline void param_buckets_free(ParamBuckets *pb) {
    free(pb->slices); free(pb->bucket_first); free(pb->bucket_slice);
    memset(pb, 0, sizeof(*pb));
}

#endif // LLMC_PARAM_BUCKETS_H
