/*
 Tests of llmc/dataloader.h and llmc/synthetic.h. Shards are written with shard_write into a fresh
 mkdtemp directory under /tmp. Most shards hold token i of shard s = s * 100000 + i (4-byte, vocab 2^20),
 so every sample names its own shard and offset and the expected batch can be computed exactly.
*/
#include <time.h>
#include "llmc/dataloader.h"
#include "llmc/synthetic.h"
#include "dev/test/testing.h"

static char tmpdir[64];

static uint32_t tag(int shard, uint64_t i) { return (uint32_t)shard * 100000u + (uint32_t)i; }

// Writes tmpdir/<name> with n tokens tag(shard, i), or shard * 20000 + i in 2-byte shards (n < 20000).
static void write_tagged(const char *name, int shard, uint64_t n, uint32_t width) {
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    uint32_t *tok = (uint32_t *)malloc_check(n * sizeof(uint32_t));
    for (uint64_t i = 0; i < n; i++) { tok[i] = width == 4 ? tag(shard, i) : (uint32_t)(shard * 20000 + i); }
    shard_write(path, tok, n, width, 0);
    free(tok);
}

static void pattern_for(char *out, size_t cap, const char *glob_tail) { snprintf(out, cap, "%s/%s", tmpdir, glob_tail); }

// ---------------------------------------------------------------------------------------------------
// exact content without shuffle, 2-byte and 4-byte shards, epoch wrap

static void test_exact(uint32_t width) {
    const char *prefix = width == 2 ? "w2" : "w4";
    char name[64], pattern[256];
    uint64_t sizes[3] = {1000, 333, 77};  // T=8, B=3: samples 124, 41, 9 -> batches 41, 13, 3
    for (int s = 0; s < 3; s++) {
        snprintf(name, sizeof(name), "%s_%03d.bin", prefix, s);
        write_tagged(name, s, sizes[s], width);
    }
    snprintf(name, sizeof(name), "%s_*.bin", prefix);
    pattern_for(pattern, sizeof(pattern), name);
    int B = 3, T = 8;
    DataLoader dl;
    dataloader_init(&dl, pattern, B, T, 0, 1, 0, 0, 1u << 20);
    CHECK(dl.num_shards == 3, "width %u: %d shards", width, dl.num_shards);
    CHECK(dataloader_batches_per_epoch(&dl) == 41 + 13 + 3, "width %u: %llu batches per epoch", width,
          (unsigned long long)dataloader_batches_per_epoch(&dl));
    int bad = 0;
    uint64_t n = 0;
    for (uint64_t epoch = 0; epoch < 2; epoch++) {
        for (int s = 0; s < 3; s++) {
            uint64_t nb = (sizes[s] - 1) / T / B;
            for (uint64_t b = 0; b < nb; b++, n++) {
                DataLoaderPosition p = dataloader_position(&dl);
                if (p.epoch != epoch || p.shard_index != (uint64_t)s || p.batch_index != b) { bad++; }
                dataloader_next_batch(&dl);
                for (int i = 0; i < B; i++) {
                    uint64_t first = (b * B + i) * T;
                    for (int t = 0; t < T; t++) {
                        uint32_t want_in = width == 4 ? tag(s, first + t) : (uint32_t)(s * 20000 + first + t);
                        if ((uint32_t)dl.inputs[i * T + t] != want_in || (uint32_t)dl.targets[i * T + t] != want_in + 1) { bad++; }
                    }
                }
            }
        }
    }
    CHECK(bad == 0, "width %u: %d mismatches in positions/tokens over %llu batches", width, bad, (unsigned long long)n);
    DataLoaderPosition p = dataloader_position(&dl);
    CHECK(p.epoch == 2 && p.shard_index == 0 && p.batch_index == 0, "width %u: after 2 epochs the position is (%llu,%llu,%llu)",
          width, (unsigned long long)p.epoch, (unsigned long long)p.shard_index, (unsigned long long)p.batch_index);
    dataloader_reset(&dl);
    p = dataloader_position(&dl);
    dataloader_next_batch(&dl);
    CHECK(p.epoch == 0 && p.shard_index == 0 && p.batch_index == 0 && dl.inputs[0] == 0 && dl.targets[T - 1] == T,
          "width %u: reset does not return to the first batch", width);
    dataloader_free(&dl);
}

// ---------------------------------------------------------------------------------------------------
// ranks: world 2 interleaves world 1's batches exactly (disjoint, same union) when batches are even

typedef struct { uint32_t *ids; uint64_t n; } SampleList;  // first input token of every sample read

static SampleList read_epoch(const char *pattern, int B, int T, int rank, int world, int shuffle, uint64_t seed, uint64_t epochs) {
    DataLoader dl;
    dataloader_init(&dl, pattern, B, T, rank, world, shuffle, seed, 1u << 20);
    SampleList L;
    L.n = dataloader_batches_per_epoch(&dl) * epochs * B;
    L.ids = (uint32_t *)malloc_check(L.n * sizeof(uint32_t));
    for (uint64_t k = 0; k < L.n / B; k++) {
        dataloader_next_batch(&dl);
        for (int i = 0; i < B; i++) { L.ids[k * B + i] = (uint32_t)dl.inputs[i * T]; }
    }
    dataloader_free(&dl);
    return L;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void test_ranks(int shuffle) {
    char pattern[256];
    pattern_for(pattern, sizeof(pattern), "even_*.bin");
    int B = 4, T = 16;
    SampleList w1 = read_epoch(pattern, B, T, 0, 1, shuffle, 7, 1);
    SampleList r0 = read_epoch(pattern, B, T, 0, 2, shuffle, 7, 1);
    SampleList r1 = read_epoch(pattern, B, T, 1, 2, shuffle, 7, 1);
    CHECK(r0.n == r1.n && r0.n + r1.n == w1.n, "shuffle %d: rank sample counts %llu + %llu vs world-1 %llu", shuffle,
          (unsigned long long)r0.n, (unsigned long long)r1.n, (unsigned long long)w1.n);
    int bad = 0;
    for (uint64_t k = 0; k < w1.n / B && r0.n + r1.n == w1.n; k++) {
        const SampleList *r = k % 2 == 0 ? &r0 : &r1;
        for (int i = 0; i < B; i++) { bad += w1.ids[k * B + i] != r->ids[(k / 2) * B + i]; }
    }
    CHECK(bad == 0, "shuffle %d: world-2 batches do not interleave into world-1's (%d mismatches)", shuffle, bad);
    // disjoint and covering, stated directly on the sets of samples
    uint64_t n = r0.n + r1.n;
    uint32_t *both = (uint32_t *)malloc_check(n * sizeof(uint32_t));
    memcpy(both, r0.ids, r0.n * sizeof(uint32_t));
    memcpy(both + r0.n, r1.ids, r1.n * sizeof(uint32_t));
    qsort(both, n, sizeof(uint32_t), cmp_u32);
    qsort(w1.ids, w1.n, sizeof(uint32_t), cmp_u32);
    int dup = 0;
    for (uint64_t i = 1; i < n; i++) { dup += both[i] == both[i - 1]; }
    CHECK(dup == 0, "shuffle %d: ranks 0 and 1 share %d samples", shuffle, dup);
    CHECK(n == w1.n && memcmp(both, w1.ids, n * sizeof(uint32_t)) == 0, "shuffle %d: ranks 0+1 do not cover world 1's samples", shuffle);
    free(both); free(w1.ids); free(r0.ids); free(r1.ids);
}

// With an odd number of batches in a shard, world 2 drops that shard's last global batch.
static void test_ranks_remainder(void) {
    char pattern[256];
    pattern_for(pattern, sizeof(pattern), "odd_*.bin");
    int B = 2, T = 10;  // odd_000: 71 tokens -> 7 samples -> 3 batches; odd_001: 101 -> 10 -> 5 batches
    SampleList w1 = read_epoch(pattern, B, T, 0, 1, 0, 0, 1);
    SampleList r0 = read_epoch(pattern, B, T, 0, 2, 0, 0, 1);
    SampleList r1 = read_epoch(pattern, B, T, 1, 2, 0, 0, 1);
    CHECK(w1.n == 8 * 2 && r0.n == 3 * 2 && r1.n == 3 * 2, "remainder: sample counts %llu %llu %llu",
          (unsigned long long)w1.n, (unsigned long long)r0.n, (unsigned long long)r1.n);
    // expected rank 0: shard 0 batch 0, shard 1 batches 0, 2; rank 1: shard 0 batch 1, shard 1 batches 1, 3
    uint32_t want0[6] = {tag(0, 0), tag(0, 10), tag(1, 0), tag(1, 10), tag(1, 40), tag(1, 50)};
    uint32_t want1[6] = {tag(0, 20), tag(0, 30), tag(1, 20), tag(1, 30), tag(1, 60), tag(1, 70)};
    CHECK(r0.n == 6 && memcmp(r0.ids, want0, sizeof(want0)) == 0, "remainder: rank 0 read the wrong samples");
    CHECK(r1.n == 6 && memcmp(r1.ids, want1, sizeof(want1)) == 0, "remainder: rank 1 read the wrong samples");
    free(w1.ids); free(r0.ids); free(r1.ids);
}

// ---------------------------------------------------------------------------------------------------
// shuffle: deterministic per seed, different across seeds and epochs, a permutation of the samples

static void test_shuffle(void) {
    char pattern[256];
    pattern_for(pattern, sizeof(pattern), "even_*.bin");
    int B = 4, T = 16;
    SampleList a = read_epoch(pattern, B, T, 0, 1, 1, 42, 2);
    SampleList b = read_epoch(pattern, B, T, 0, 1, 1, 42, 2);
    SampleList c = read_epoch(pattern, B, T, 0, 1, 1, 43, 2);
    SampleList plain = read_epoch(pattern, B, T, 0, 1, 0, 42, 1);
    CHECK(a.n == b.n && memcmp(a.ids, b.ids, a.n * sizeof(uint32_t)) == 0, "shuffle is not deterministic for one seed");
    CHECK(a.n == c.n && memcmp(a.ids, c.ids, a.n * sizeof(uint32_t)) != 0, "seeds 42 and 43 give the same batches");
    uint64_t half = a.n / 2;
    CHECK(memcmp(a.ids, a.ids + half, half * sizeof(uint32_t)) != 0, "epochs 0 and 1 have the same order");
    CHECK(memcmp(a.ids, plain.ids, half * sizeof(uint32_t)) != 0, "shuffled epoch equals the unshuffled order");
    // even_* shards hold a whole number of batches, so each shuffled epoch is a permutation of them
    qsort(plain.ids, plain.n, sizeof(uint32_t), cmp_u32);
    for (int e = 0; e < 2; e++) {
        uint32_t *ep = a.ids + e * half;
        qsort(ep, half, sizeof(uint32_t), cmp_u32);
        CHECK(half == plain.n && memcmp(ep, plain.ids, half * sizeof(uint32_t)) == 0, "shuffled epoch %d is not a permutation of the samples", e);
    }
    free(a.ids); free(b.ids); free(c.ids); free(plain.ids);
    // one shard: the shard order cannot change, so this sees the per-epoch sample permutation alone
    pattern_for(pattern, sizeof(pattern), "even_002.bin");
    SampleList one = read_epoch(pattern, B, T, 0, 1, 1, 42, 2);
    CHECK(memcmp(one.ids, one.ids + one.n / 2, one.n / 2 * sizeof(uint32_t)) != 0, "one shard: epochs 0 and 1 have the same sample order");
    free(one.ids);
}

// ---------------------------------------------------------------------------------------------------
// position save / restore, across an epoch boundary, in the same loader and in a fresh one

static void test_position(int shuffle) {
    char pattern[256];
    pattern_for(pattern, sizeof(pattern), "even_*.bin");
    int B = 4, T = 16, k = 7;
    DataLoader dl;
    dataloader_init(&dl, pattern, B, T, 1, 2, shuffle, 5, 1u << 20);
    uint64_t per_epoch = dataloader_batches_per_epoch(&dl);
    for (uint64_t i = 0; i < per_epoch - 3; i++) { dataloader_next_batch(&dl); }  // k batches from here cross the epoch
    DataLoaderPosition saved = dataloader_position(&dl);
    int32_t *first = (int32_t *)malloc_check((size_t)k * 2 * B * T * sizeof(int32_t));
    for (int i = 0; i < k; i++) {
        dataloader_next_batch(&dl);
        memcpy(first + (size_t)i * 2 * B * T, dl.inputs, (size_t)B * T * sizeof(int32_t));
        memcpy(first + ((size_t)i * 2 + 1) * B * T, dl.targets, (size_t)B * T * sizeof(int32_t));
    }
    CHECK(dataloader_position(&dl).epoch == saved.epoch + 1, "shuffle %d: the k batches did not cross an epoch", shuffle);
    DataLoader fresh;
    dataloader_init(&fresh, pattern, B, T, 1, 2, shuffle, 5, 1u << 20);
    DataLoader *loaders[2] = {&dl, &fresh};
    for (int which = 0; which < 2; which++) {
        DataLoader *d = loaders[which];
        dataloader_set_position(d, saved);
        int bad = 0;
        for (int i = 0; i < k; i++) {
            dataloader_next_batch(d);
            bad += memcmp(first + (size_t)i * 2 * B * T, d->inputs, (size_t)B * T * sizeof(int32_t)) != 0;
            bad += memcmp(first + ((size_t)i * 2 + 1) * B * T, d->targets, (size_t)B * T * sizeof(int32_t)) != 0;
        }
        CHECK(bad == 0, "shuffle %d, %s loader: %d batches differ after set_position", shuffle, which ? "fresh" : "same", bad);
    }
    free(first);
    dataloader_free(&dl);
    dataloader_free(&fresh);
}

// ---------------------------------------------------------------------------------------------------
// errors: each runs in a child via expect_failure

typedef struct { char pattern[256]; int B, T, world; uint32_t vocab; int batches; } LoadArgs;

static void load_and_read(void *arg) {
    LoadArgs *a = (LoadArgs *)arg;
    DataLoader dl;
    dataloader_init(&dl, a->pattern, a->B, a->T, 0, a->world, 0, 0, a->vocab);
    for (int i = 0; i < a->batches; i++) { dataloader_next_batch(&dl); }
    dataloader_free(&dl);
}

static void set_bad_position(void *arg) {
    LoadArgs *a = (LoadArgs *)arg;
    DataLoader dl;
    dataloader_init(&dl, a->pattern, a->B, a->T, 0, a->world, 0, 0, a->vocab);
    DataLoaderPosition p = {0, 0, 3};  // odd_000 gives rank 0 of 1 batches 0..2 only
    dataloader_set_position(&dl, p);
}

static void write_raw(const char *path, const void *data, size_t n) {
    FILE *f = fopen_check(path, "wb");
    fwrite_check(data, 1, n, f, path);
    fclose(f);
}

static void test_errors(void) {
    char path[256], expect[512];
    LoadArgs a;
    a.B = 2; a.T = 8; a.world = 1; a.vocab = 1u << 20; a.batches = 1;

    write_tagged("magic_000.bin", 0, 100, 4);
    pattern_for(path, sizeof(path), "magic_000.bin");
    FILE *f = fopen_check(path, "r+b");
    uint32_t junk = 0x12345678u;
    fwrite_check(&junk, 4, 1, f, path);
    fclose(f);
    pattern_for(a.pattern, sizeof(a.pattern), "magic_*.bin");
    snprintf(expect, sizeof(expect), "shard '%s' has bad magic", path);
    expect_failure("bad magic", load_and_read, &a, expect);

    write_tagged("cut_000.bin", 0, 100, 2);
    pattern_for(path, sizeof(path), "cut_000.bin");
    if (truncate(path, SHARD_HEADER_BYTES + 99 * 2) != 0) { die("truncate failed"); }
    pattern_for(a.pattern, sizeof(a.pattern), "cut_*.bin");
    snprintf(expect, sizeof(expect), "shard '%s' is truncated: header says 100 tokens", path);
    expect_failure("truncated data", load_and_read, &a, expect);

    pattern_for(path, sizeof(path), "hdr_000.bin");
    uint32_t head[4] = {SHARD_MAGIC, SHARD_VERSION, 2, 0};
    write_raw(path, head, sizeof(head));
    pattern_for(a.pattern, sizeof(a.pattern), "hdr_*.bin");
    snprintf(expect, sizeof(expect), "shard '%s' is truncated: 16 bytes, smaller than the 64-byte header", path);
    expect_failure("truncated header", load_and_read, &a, expect);

    // a bad shard after good ones still fails at init, before any batch is read
    write_tagged("late_000.bin", 0, 1000, 2);
    pattern_for(path, sizeof(path), "late_001.bin");
    write_raw(path, head, sizeof(head));
    pattern_for(a.pattern, sizeof(a.pattern), "late_*.bin");
    a.batches = 0;
    snprintf(expect, sizeof(expect), "shard '%s' is truncated", path);
    expect_failure("bad second shard at init", load_and_read, &a, expect);
    a.batches = 1;

    uint32_t tok[40];
    for (int i = 0; i < 40; i++) { tok[i] = (uint32_t)i % 50; }
    tok[13] = 50;  // == vocab: inside sample 1 of the first batch (T=8 -> tokens 8..16)
    pattern_for(path, sizeof(path), "vocab_000.bin");
    shard_write(path, tok, 40, 2, 0);
    pattern_for(a.pattern, sizeof(a.pattern), "vocab_*.bin");
    a.vocab = 50;
    snprintf(expect, sizeof(expect), "shard '%s': token 13 has value 50, not below the vocab size 50", path);
    expect_failure("token >= vocab", load_and_read, &a, expect);

    // a bad token deep in a shard, in a sample no early batch reads: found when the shard is opened
    uint32_t deep[400];
    for (int i = 0; i < 400; i++) { deep[i] = (uint32_t)i % 50; }
    deep[397] = 60;
    pattern_for(path, sizeof(path), "deep_000.bin");
    shard_write(path, deep, 400, 2, 0);
    pattern_for(a.pattern, sizeof(a.pattern), "deep_*.bin");
    snprintf(expect, sizeof(expect), "shard '%s': token 397 has value 60, not below the vocab size 50", path);
    expect_failure("token >= vocab deep in a shard, first batch", load_and_read, &a, expect);

    pattern_for(path, sizeof(path), "bigvocab_000.bin");
    shard_write(path, tok, 40, 2, 51);
    pattern_for(a.pattern, sizeof(a.pattern), "bigvocab_*.bin");
    snprintf(expect, sizeof(expect), "shard '%s' was made with vocab size 51, larger than the model's 50", path);
    expect_failure("header vocab > model vocab", load_and_read, &a, expect);
    a.vocab = 1u << 20;

    // num_tokens * token_bytes wraps 64 bits to 0: a header-only file must not pass as that many tokens
    ShardHeader huge;
    memset(&huge, 0, sizeof(huge));
    huge.magic = SHARD_MAGIC; huge.version = SHARD_VERSION; huge.token_bytes = 4; huge.num_tokens = 1ull << 62;
    pattern_for(path, sizeof(path), "huge_000.bin");
    write_raw(path, &huge, sizeof(huge));
    pattern_for(a.pattern, sizeof(a.pattern), "huge_*.bin");
    expect_failure("num_tokens 2^62 (size wraps)", load_and_read, &a, "is truncated: header says 4611686018427387904 tokens");

    pattern_for(a.pattern, sizeof(a.pattern), "dir_000.bin");
    mkdir(a.pattern, 0755);
    expect_failure("a directory as a shard", load_and_read, &a, "is a directory");

    pattern_for(a.pattern, sizeof(a.pattern), "nothing_*.bin");
    snprintf(expect, sizeof(expect), "no file matches the shard pattern '%s'", a.pattern);
    expect_failure("no matching file", load_and_read, &a, expect);

    // odd_* are 71 and 101 tokens: B*T*world + 1 = 2*10*6 + 1 = 121 tokens needed
    pattern_for(a.pattern, sizeof(a.pattern), "odd_*.bin");
    a.B = 2; a.T = 10; a.world = 6;
    expect_failure("shards too small", load_and_read, &a, "would get 0 batches per epoch (a shard needs at least B*T*world_size+1 = 121 tokens");
    a.world = 1;
    expect_failure("position beyond the shard", set_bad_position, &a, "position (epoch 0, shard 0, batch 3) is not a batch");
}

// An empty token array may come as NULL (prepare's state file does the same): the writer must not
// pass it to fwrite, which the sanitizer build reports as undefined behaviour.
static void test_empty_shard(void) {
    char path[256];
    pattern_for(path, sizeof(path), "empty.bin");
    shard_write(path, NULL, 0, 4, 0);
    FILE *f = fopen_check(path, "rb");
    ShardHeader h = shard_read_header(f, path);
    fclose(f);
    CHECK(h.num_tokens == 0, "empty shard has %llu tokens", (unsigned long long)h.num_tokens);
}

// ---------------------------------------------------------------------------------------------------
// synthetic corpus

typedef struct { uint64_t recalls, stores, bad, docs, near, far, max_dist; } SynStats;

// Scans a stream: every RECALL k v must follow a STORE k v in the same document; all tokens < V.
static SynStats scan_synthetic(const uint32_t *t, uint64_t n, uint32_t V) {
    SynStats st;
    memset(&st, 0, sizeof(st));
    uint32_t nk = V / 16;
    uint32_t *val = (uint32_t *)calloc_check(nk, sizeof(uint32_t));       // 0 = not stored in this doc
    uint64_t *at = (uint64_t *)calloc_check(nk, sizeof(uint64_t));
    for (uint64_t i = 0; i < n; i++) {
        if (t[i] >= V) { st.bad++; continue; }
        if (t[i] == SYN_EOT) { st.docs++; memset(val, 0, nk * sizeof(uint32_t)); continue; }
        if ((t[i] != SYN_STORE && t[i] != SYN_RECALL) || i + 2 >= n) { continue; }
        uint32_t k = t[i + 1], v = t[i + 2];
        if (k < 3 || k >= 3 + nk || v < 3 + nk || v >= 3 + 2 * nk) { st.bad++; continue; }
        if (t[i] == SYN_STORE) {
            st.stores++;
            st.bad += val[k - 3] != 0;  // keys are distinct within a document
            val[k - 3] = v; at[k - 3] = i;
        } else {
            st.recalls++;
            st.bad += val[k - 3] != v;
            uint64_t d = i - at[k - 3];
            st.near += d < 64; st.far += d > 1000;
            if (d > st.max_dist) { st.max_dist = d; }
        }
        i += 2;
    }
    free(val); free(at);
    return st;
}

static void test_synthetic(void) {
    uint64_t n = 2000000;
    uint32_t *a = (uint32_t *)malloc_check(n * sizeof(uint32_t));
    uint32_t *b = (uint32_t *)malloc_check(n * sizeof(uint32_t));
    uint32_t vocabs[2] = {256, 50304};
    for (int vi = 0; vi < 2; vi++) {
        uint32_t V = vocabs[vi];
        synthetic_generate(a, n, V, 1);
        synthetic_generate(b, n, V, 1);
        CHECK(memcmp(a, b, n * sizeof(uint32_t)) == 0, "V=%u: same seed gives different tokens", V);
        synthetic_generate(b, n, V, 2);
        CHECK(memcmp(a, b, n * sizeof(uint32_t)) != 0, "V=%u: seeds 1 and 2 give the same tokens", V);
        SynStats st = scan_synthetic(a, n, V);
        CHECK(st.bad == 0, "V=%u: %llu bad tokens or recalls without a matching earlier STORE", V, (unsigned long long)st.bad);
        CHECK(st.docs > 300 && st.recalls > 8 * st.docs / 2, "V=%u: only %llu docs, %llu recalls", V,
              (unsigned long long)st.docs, (unsigned long long)st.recalls);
        CHECK(st.recalls <= st.stores && st.near > 0 && st.far > 0, "V=%u: recall distances do not span tens to 1000+ (%llu < 64, %llu > 1000)",
              V, (unsigned long long)st.near, (unsigned long long)st.far);
        // strong local structure: a word's most frequent successor follows it in over 40% of word pairs
        if (V == 256) {
            uint32_t base = 3 + 2 * (V / 16), nw = V - base;
            uint64_t *count = (uint64_t *)calloc_check((size_t)nw * nw, sizeof(uint64_t));
            uint64_t pairs = 0, best = 0;
            for (uint64_t i = 0; i + 1 < n; i++) {
                if (a[i] >= base && a[i + 1] >= base) { count[(size_t)(a[i] - base) * nw + (a[i + 1] - base)]++; pairs++; }
            }
            for (uint32_t w = 0; w < nw; w++) {
                uint64_t m = 0;
                for (uint32_t x = 0; x < nw; x++) { if (count[(size_t)w * nw + x] > m) { m = count[(size_t)w * nw + x]; } }
                best += m;
            }
            CHECK(pairs > n / 2 && best > 0.4 * pairs, "V=%u: text is not locally predictable (%llu of %llu pairs)", V,
                  (unsigned long long)best, (unsigned long long)pairs);
            free(count);
        }
        printf("synthetic V=%u: %llu docs, %llu recalls, %.1f%% under 64 tokens back, %.1f%% over 1000, max %llu\n", V,
               (unsigned long long)st.docs, (unsigned long long)st.recalls, 100.0 * st.near / st.recalls,
               100.0 * st.far / st.recalls, (unsigned long long)st.max_dist);
    }

    // synthetic_is_recall_value marks exactly the targets that are recalled values, in loader batches
    char dir[256], pattern[512];
    snprintf(dir, sizeof(dir), "%s/syn/nested", tmpdir);
    uint32_t V = 512;
    synthetic_write_dataset(dir, V, 200000, 50000, 9);
    synthetic_generate(a, 200000, V, 9);
    snprintf(pattern, sizeof(pattern), "%s/train_*.bin", dir);
    int B = 4, T = 256;
    DataLoader dl;
    dataloader_init(&dl, pattern, B, T, 0, 1, 0, 0, V);
    uint8_t *recalled = (uint8_t *)calloc_check(200000, 1);  // stream positions holding a recalled value
    for (uint64_t i = 0; i + 2 < 200000; i++) { if (a[i] == SYN_RECALL) { recalled[i + 2] = 1; } }
    int mismatch = 0, marked = 0, agree = 0;
    for (uint64_t k = 0; k < dataloader_batches_per_epoch(&dl); k++) {
        dataloader_next_batch(&dl);
        for (int i = 0; i < B; i++) {
            const int32_t *in = dl.inputs + i * T;
            uint64_t first = (k * B + i) * T;
            for (int t = 0; t < T; t++) {
                mismatch += (uint32_t)in[t] != a[first + t];
                int r = synthetic_is_recall_value(in, t);
                marked += r;
                agree += r == (t >= 1 && recalled[first + t + 1]);  // target t is stream token first + t + 1
            }
        }
    }
    free(recalled);
    CHECK(mismatch == 0, "train shard read by the loader differs from synthetic_generate (%d)", mismatch);
    CHECK(marked > 100 && agree == (int)(dataloader_batches_per_epoch(&dl) * B * T),
          "synthetic_is_recall_value disagrees with the stream (%d marked, %d of %llu agree)", marked, agree,
          (unsigned long long)(dataloader_batches_per_epoch(&dl) * B * T));
    dataloader_free(&dl);
    snprintf(pattern, sizeof(pattern), "%s/val_*.bin", dir);
    dataloader_init(&dl, pattern, B, T, 0, 1, 0, 0, V);
    dataloader_next_batch(&dl);
    int same = 1;
    for (int t = 0; t < T; t++) { same &= (uint32_t)dl.inputs[t] == a[t]; }
    CHECK(!same && dl.headers[0].vocab_size == V && dl.headers[0].token_bytes == 2 && dl.headers[0].num_tokens == 50000,
          "val shard: same tokens as train or wrong header");
    dataloader_free(&dl);

    // speed: informational, a slow generator would show up here
    uint64_t big = 20000000;
    uint32_t *c = (uint32_t *)malloc_check(big * sizeof(uint32_t));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    synthetic_generate(c, big, 50304, 3);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    printf("synthetic_generate: %.1f M tokens/s (%.0f MB/s as 2-byte tokens)\n", big / s / 1e6, 2.0 * big / s / 1e6);
    CHECK(2.0 * big / s / 1e6 > 10.0, "synthetic_generate too slow: %.1f MB/s", 2.0 * big / s / 1e6);
    free(c);
    free(a); free(b);
}

static void syn_small_vocab(void *arg) {
    uint32_t t[16];
    synthetic_generate(t, 16, 255, 0);
}

static void syn_wide_vocab(void *arg) { synthetic_write_dataset((const char *)arg, 70000, 1000, 1000, 0); }

// ---------------------------------------------------------------------------------------------------

int main(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/moba_test_data_XXXXXX");
    if (mkdtemp(tmpdir) == NULL) { die("mkdtemp failed: %s", strerror(errno)); }
    // even_*: every shard gives an even number of batches for B=4, T=16 (samples 64, 32, 128 -> 16, 8, 32)
    write_tagged("even_000.bin", 0, 64 * 16 + 1, 4);
    write_tagged("even_001.bin", 1, 32 * 16 + 5, 4);
    write_tagged("even_002.bin", 2, 128 * 16 + 1, 4);
    write_tagged("odd_000.bin", 0, 71, 4);
    write_tagged("odd_001.bin", 1, 101, 4);

    test_exact(2);
    test_exact(4);
    test_ranks(0);
    test_ranks(1);
    test_ranks_remainder();
    test_shuffle();
    test_position(0);
    test_position(1);
    test_errors();
    test_empty_shard();
    test_synthetic();
    expect_failure("synthetic vocab < 256", syn_small_vocab, NULL, "synthetic corpus needs vocab_size >= 256 (got 255)");
    expect_failure("synthetic vocab > 65536", syn_wide_vocab, tmpdir, "vocab_size 70000 > 65536");

    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) { printf("warning: could not remove %s\n", tmpdir); }
    return test_summary();
}
