/*
 DataLoader: (B, T) batches of next-token training data from token shards (format in llmc/shard.h),
 shared by the CPU and GPU trainers (plain C; also compiles as C++ under nvcc).

 Shards. `pattern` is a glob(3) pattern; its matches, sorted, are the shards (shard id = index in that
 sorted list). No match is an error naming the pattern. Every shard's header is validated at init, so a
 bad shard fails at start naming the file; a header vocab_size larger than the model's is also refused
 there (the header's 0 means unknown).

 Samples and batches. A shard of N tokens holds S = floor((N-1)/T) samples; sample j is the T+1 tokens
 [jT, jT+T]: inputs are the first T, targets the last T (so consecutive samples share one token). The
 samples of a shard, in the epoch's sample order, are grouped into floor(S/B) global batches of B; global
 batch g goes to rank g % world_size, and a rank gets floor(floor(S/B) / world_size) batches of that
 shard (its local batch b is global batch b*world_size + rank). Ranks never read the same batch and
 stay in lockstep; the few leftover samples/batches of a shard are dropped. A shard too small to give
 any rank a batch is skipped; if no shard gives one (every shard under B*T*world_size+1 tokens) init dies.

 Order. Without shuffle, shards go in sorted order and samples in file order. With shuffle, epoch e
 visits the shards in the permutation drawn by rng_permute from an Rng seeded with mix(seed, e), and
 the samples of shard id s in the permutation from an Rng seeded with mix(mix(seed, e), s + 1) (mix is
 a splitmix64 hash of the pair). The same arguments therefore give the same batches on every run and
 machine, whatever world_size, and every rank computes the same permutations without communicating.
 After the last batch of an epoch the next call starts epoch + 1.

 Position. DataLoaderPosition = (epoch, shard_index = index into the epoch's shard order, batch_index =
 this rank's local batch within that shard) names the NEXT batch, always a real one (empty shards are
 skipped eagerly). It is plain data for checkpoints: dataloader_set_position(p) makes the next batch
 exactly the one at p; a p that is not a batch of these shards (e.g. the data changed) is an error.

 Reading. Only what a batch needs is read (one seek + read of T+1 tokens per sample), so shards far
 larger than RAM work; the sample permutation costs 4 bytes per sample of the current shard. When a
 shard is first opened, every token of it is checked < vocab_size in one pass at read speed (so a bad
 token deep in a shard stops the run before its batches are used); a bad one dies naming the shard,
 the token's index within the shard, its value and the vocab size.
*/
#ifndef LLMC_DATALOADER_H
#define LLMC_DATALOADER_H

#include <glob.h>
#include <stdint.h>
#include "utils.h"
#include "rng.h"
#include "shard.h"

typedef struct { uint64_t epoch, shard_index, batch_index; } DataLoaderPosition;

typedef struct {
    int B, T, rank, world_size, shuffle;
    uint64_t seed;
    uint32_t vocab_size;
    int num_shards;
    char **shard_paths;             // sorted glob matches
    DataLoaderPosition pos;         // the next batch
    int32_t *inputs, *targets;      // B*T each, filled by dataloader_next_batch
    // private
    char *pattern;
    ShardHeader *headers;           // per shard id
    uint64_t *rank_batches;         // per shard id: batches this rank takes from it per epoch
    uint64_t batches_per_epoch;     // for this rank
    uint32_t *shard_order;          // epoch order_epoch's shard order (shard ids)
    uint64_t order_epoch;
    uint32_t *sample_order;         // sample permutation of shard sample_shard in epoch sample_epoch
    uint64_t sample_epoch;
    int sample_shard;               // -1: none computed
    unsigned char *checked;         // per shard id: every token verified < vocab_size (on first open)
    FILE *file;                     // the open shard, id file_shard (-1: none)
    int file_shard;
    unsigned char *raw;             // T+1 tokens of one sample as stored
} DataLoader;

static inline uint64_t dl_splitmix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t dl_mix(uint64_t a, uint64_t b) { return dl_splitmix(dl_splitmix(a) ^ b); }

static inline uint64_t dl_samples(const DataLoader *dl, int shard) {
    uint64_t n = dl->headers[shard].num_tokens;
    return n == 0 ? 0 : (n - 1) / (uint64_t)dl->T;
}

// Shard ids in the visiting order of `epoch` (cached: recomputed only when the epoch changes).
static inline const uint32_t *dl_shard_order(DataLoader *dl, uint64_t epoch) {
    if (epoch != dl->order_epoch) {
        if (dl->shuffle) {
            Rng rng;
            rng_init(&rng, dl_mix(dl->seed, epoch));
            rng_permute(&rng, dl->shard_order, (uint32_t)dl->num_shards);
        }
        dl->order_epoch = epoch;
    }
    return dl->shard_order;
}

static inline int dl_position_valid(DataLoader *dl, DataLoaderPosition p) {
    if (p.shard_index >= (uint64_t)dl->num_shards) { return 0; }
    return p.batch_index < dl->rank_batches[dl_shard_order(dl, p.epoch)[p.shard_index]];
}

// Moves pos forward to the first real batch at or after it (past finished or empty shards).
static inline void dl_settle(DataLoader *dl) {
    while (!dl_position_valid(dl, dl->pos)) {
        dl->pos.batch_index = 0;
        if (++dl->pos.shard_index >= (uint64_t)dl->num_shards) {
            dl->pos.shard_index = 0;
            dl->pos.epoch++;
        }
    }
}

static inline void dataloader_init(DataLoader *dl, const char *pattern, int B, int T, int rank, int world_size,
                                   int shuffle, uint64_t seed, uint32_t vocab_size) {
    if (B < 1 || T < 1) { die("dataloader: B and T must be >= 1 (got B=%d, T=%d)", B, T); }
    if (world_size < 1 || rank < 0 || rank >= world_size) { die("dataloader: rank %d is not in [0, %d)", rank, world_size); }
    if (vocab_size < 1) { die("dataloader: vocab_size must be >= 1"); }
    memset(dl, 0, sizeof(*dl));
    dl->B = B; dl->T = T; dl->rank = rank; dl->world_size = world_size; dl->shuffle = shuffle;
    dl->seed = seed; dl->vocab_size = vocab_size;
    dl->pattern = (char *)malloc_check(strlen(pattern) + 1);
    strcpy(dl->pattern, pattern);

    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc == GLOB_NOMATCH) { die("dataloader: no file matches the shard pattern '%s'", pattern); }
    if (rc != 0) { die("dataloader: glob of '%s' failed (code %d)", pattern, rc); }
    if (g.gl_pathc > (size_t)INT32_MAX) { die("dataloader: too many shards match '%s'", pattern); }
    dl->num_shards = (int)g.gl_pathc;
    dl->shard_paths = (char **)malloc_check(g.gl_pathc * sizeof(char *));
    dl->headers = (ShardHeader *)malloc_check(g.gl_pathc * sizeof(ShardHeader));
    dl->rank_batches = (uint64_t *)malloc_check(g.gl_pathc * sizeof(uint64_t));
    dl->checked = (unsigned char *)calloc_check(g.gl_pathc, 1);
    for (int s = 0; s < dl->num_shards; s++) {
        const char *path = g.gl_pathv[s];
        dl->shard_paths[s] = (char *)malloc_check(strlen(path) + 1);
        strcpy(dl->shard_paths[s], path);
        FILE *f = fopen_check(path, "rb");
        ShardHeader h = shard_read_header(f, path);
        fclose(f);
        if (h.vocab_size > vocab_size) {
            die("shard '%s' was made with vocab size %u, larger than the model's %u (set the model's with -V %u)", path, h.vocab_size, vocab_size, h.vocab_size);
        }
        dl->headers[s] = h;
        uint64_t samples = dl_samples(dl, s);
        if (samples > UINT32_MAX) { die("shard '%s' has %llu samples of T=%d; split it (at most 2^32-1 per shard)", path, (unsigned long long)samples, T); }
        dl->rank_batches[s] = samples / (uint64_t)B / (uint64_t)world_size;
        dl->batches_per_epoch += dl->rank_batches[s];
    }
    globfree(&g);
    if (dl->batches_per_epoch == 0) {
        die("dataloader: the shards matching '%s' are too small: rank %d would get 0 batches per epoch "
            "(a shard needs at least B*T*world_size+1 = %llu tokens for B=%d, T=%d, world_size=%d)", pattern, rank,
            (unsigned long long)B * (unsigned long long)T * (unsigned long long)world_size + 1, B, T, world_size);
    }

    dl->shard_order = (uint32_t *)malloc_check((size_t)dl->num_shards * sizeof(uint32_t));
    for (int s = 0; s < dl->num_shards; s++) { dl->shard_order[s] = (uint32_t)s; }
    dl->order_epoch = 0;
    if (shuffle) { dl->order_epoch = UINT64_MAX; }  // forces the epoch-0 permutation on first use
    dl->sample_shard = -1;
    dl->file_shard = -1;
    dl->inputs = (int32_t *)malloc_check((size_t)B * T * sizeof(int32_t));
    dl->targets = (int32_t *)malloc_check((size_t)B * T * sizeof(int32_t));
    dl->raw = (unsigned char *)malloc_check(((size_t)T + 1) * 4);
    dl_settle(dl);
}

// Sample index in file order of the i-th sample (in epoch order) of shard `shard`.
static inline uint64_t dl_sample(DataLoader *dl, uint64_t epoch, int shard, uint64_t i) {
    if (!dl->shuffle) { return i; }
    if (dl->sample_shard != shard || dl->sample_epoch != epoch) {
        uint32_t n = (uint32_t)dl_samples(dl, shard);
        free(dl->sample_order);
        dl->sample_order = (uint32_t *)malloc_check((size_t)n * sizeof(uint32_t));
        Rng rng;
        rng_init(&rng, dl_mix(dl_mix(dl->seed, epoch), (uint64_t)shard + 1));
        rng_permute(&rng, dl->sample_order, n);
        dl->sample_shard = shard;
        dl->sample_epoch = epoch;
    }
    return dl->sample_order[i];
}

static inline void dataloader_next_batch(DataLoader *dl) {
    int shard = (int)dl_shard_order(dl, dl->pos.epoch)[dl->pos.shard_index];
    const char *path = dl->shard_paths[shard];
    if (dl->file_shard != shard) {
        if (dl->file) { fclose(dl->file); }
        dl->file = fopen_check(path, "rb");
        dl->file_shard = shard;
        if (!dl->checked[shard]) { shard_check_tokens(dl->file, path, &dl->headers[shard], dl->vocab_size); dl->checked[shard] = 1; }
    }
    uint32_t width = dl->headers[shard].token_bytes;
    int T = dl->T;
    uint64_t global_batch = dl->pos.batch_index * (uint64_t)dl->world_size + (uint64_t)dl->rank;
    for (int b = 0; b < dl->B; b++) {
        uint64_t j = dl_sample(dl, dl->pos.epoch, shard, global_batch * (uint64_t)dl->B + (uint64_t)b);
        uint64_t first = j * (uint64_t)T;  // index of the sample's first token within the shard
        fseek_check(dl->file, SHARD_HEADER_BYTES + (long long)(first * width), SEEK_SET, path);
        fread_check(dl->raw, width, (size_t)T + 1, dl->file, path);
        for (int t = 0; t <= T; t++) {
            uint32_t tok = shard_token(dl->raw, width, (size_t)t);  // checked < vocab_size when the shard was opened
            if (t < T) { dl->inputs[(size_t)b * T + t] = (int32_t)tok; }
            if (t > 0) { dl->targets[(size_t)b * T + t - 1] = (int32_t)tok; }
        }
    }
    dl->pos.batch_index++;
    dl_settle(dl);
}

static inline DataLoaderPosition dataloader_position(const DataLoader *dl) { return dl->pos; }

static inline void dataloader_set_position(DataLoader *dl, DataLoaderPosition p) {
    if (!dl_position_valid(dl, p)) {
        die("dataloader: position (epoch %llu, shard %llu, batch %llu) is not a batch of the shards matching '%s' "
            "with B=%d, T=%d, rank %d of %d (did the data change since the checkpoint?)",
            (unsigned long long)p.epoch, (unsigned long long)p.shard_index, (unsigned long long)p.batch_index,
            dl->pattern, dl->B, dl->T, dl->rank, dl->world_size);
    }
    dl->pos = p;
}

static inline void dataloader_reset(DataLoader *dl) {
    DataLoaderPosition start = {0, 0, 0};
    dl->pos = start;
    dl_settle(dl);
}

static inline uint64_t dataloader_batches_per_epoch(const DataLoader *dl) { return dl->batches_per_epoch; }

static inline void dataloader_free(DataLoader *dl) {
    for (int s = 0; s < dl->num_shards; s++) { free(dl->shard_paths[s]); }
    free(dl->shard_paths);
    free(dl->pattern);
    free(dl->headers);
    free(dl->rank_batches);
    free(dl->checked);
    free(dl->shard_order);
    free(dl->sample_order);
    if (dl->file) { fclose(dl->file); }
    free(dl->inputs);
    free(dl->targets);
    free(dl->raw);
    memset(dl, 0, sizeof(*dl));
}

#endif // LLMC_DATALOADER_H
