/*
 Host-side logic of data-parallel training, on the CPU: the bucket / ZeRO-1 shard layout of the
 parameters (llmc/param_buckets.h), the trainer's multi-GPU flags (-P -G -O -T) and the global batch
 (llmc/train_args.h), and the loader position a checkpoint resumes at on the same or another number of
 GPUs (resume_position, llmc/run_dir.h). The NCCL side is checked on GPUs by dev/cuda/multi_gpu_check.cu and
 dev/test/gpu/test_multi_gpu.sh.
*/
#include <stdlib.h>
#include "llmc/param_buckets.h"
#include "llmc/run_dir.h"
#include "llmc/train_args.h"
#include "dev/test/testing.h"

// Every slice in array order and contiguous; buckets hold each slice once; bucket 0 = lnfw + wlm,
// bucket 1 + l = layer l's slices, the last = wte; shards of all ranks partition each slice and the
// compact offsets tile [0, P / world).
static void check_layout(const char *preset, int kconv, int world) {
    ModelConfig c = preset_config(preset);
    c.kconv = kconv;
    size_t P = param_count(&c);
    int ok = 1, L = c.n_layer;
    ParamBuckets first;
    for (int rank = 0; rank < world; rank++) {
        ParamBuckets pb;
        param_buckets_init(&pb, &c, rank, world, 1);
        size_t offset = 0, compact = 0;
        for (int i = 0; i < pb.num_slices; i++) {
            const ParamSlice *s = &pb.slices[i];
            ok &= s->offset == offset && s->shard_offset == compact && s->count > 0 && s->count % (size_t)world == 0;
            ok &= param_shard_start(&pb, s) == s->offset + (size_t)rank * (s->count / (size_t)world);
            ok &= param_shard_count(&pb, s) * (size_t)world == s->count;
            ok &= s->decay == param_is_matrix[s->tensor];
            offset += s->count;
            compact += s->count / (size_t)world;
        }
        ok &= offset == P && pb.num_params == P && pb.shard_total * (size_t)world == P && compact == pb.shard_total;
        ok &= pb.num_slices == 3 + 6 * L + num_kconv_layers(&c) && pb.num_buckets == L + 2;
        int *seen = (int *)calloc_check((size_t)pb.num_slices, sizeof(int));
        for (int b = 0; b < pb.num_buckets; b++) {
            int n = pb.bucket_first[b + 1] - pb.bucket_first[b];
            ok &= n == (b == 0 ? 2 : b == L + 1 ? 1 : 6 + layer_has_kconv(&c, b - 1));
            for (int k = pb.bucket_first[b]; k < pb.bucket_first[b + 1]; k++) {
                const ParamSlice *s = &pb.slices[pb.bucket_slice[k]];
                seen[pb.bucket_slice[k]]++;
                if (b == 0) { ok &= s->tensor == P_LNFW || s->tensor == P_WLM; }
                else if (b == L + 1) { ok &= s->tensor == P_WTE; }
                else { ok &= s->layer == b - 1; }
            }
        }
        for (int i = 0; i < pb.num_slices; i++) { ok &= seen[i] == 1; }
        free(seen);
        if (rank == 0) { first = pb; } else {
            // the same slices on every rank: only the shard starts differ
            for (int i = 0; i < pb.num_slices; i++) { ok &= pb.slices[i].offset == first.slices[i].offset && pb.slices[i].count == first.slices[i].count; }
            param_buckets_free(&pb);
        }
    }
    param_buckets_free(&first);
    CHECK(ok, "parameter layout of %s kconv %d on %d ranks is not a partition into buckets and shards", preset, kconv, world);
    if (ok) { printf("ok   layout %s kconv %d, %d GPUs: %zu params, %d buckets, shard %zu\n", preset, kconv, world, P, L + 2, P / (size_t)world); }
}

// At world 1 the compact ZeRO-1 layout is the full array's: the single-GPU optimizer, element for element.
static void check_world1_identity(void) {
    ModelConfig c = preset_config("tiny");
    ParamBuckets pb;
    param_buckets_init(&pb, &c, 0, 1, 1);
    int ok = pb.shard_total == pb.num_params;
    for (int i = 0; i < pb.num_slices; i++) { ok &= pb.slices[i].shard_offset == pb.slices[i].offset && param_shard_start(&pb, &pb.slices[i]) == pb.slices[i].offset; }
    param_buckets_free(&pb);
    CHECK(ok, "world 1: compact layout differs from the full array");
}

static void indivisible(void *arg) {
    (void)arg;
    ModelConfig c = preset_config("tiny");  // d_model 128: not divisible by 3
    ParamBuckets pb;
    param_buckets_init(&pb, &c, 1, 3, 1);
}

static void indivisible_no_zero(void) {
    ModelConfig c = preset_config("tiny");
    ParamBuckets pb;
    param_buckets_init(&pb, &c, 1, 3, 0);  // all-reduce needs no division
    CHECK(pb.num_params == param_count(&c), "ZeRO-0 layout on 3 ranks");
    param_buckets_free(&pb);
}

// ---- flags

static TrainArgs parse(const char *const *flags, int n) {
    char *argv[32];
    argv[0] = (char *)"train";
    for (int i = 0; i < n; i++) { argv[i + 1] = (char *)flags[i]; }
    return parse_args(n + 1, argv);
}

static void parse_flags(void *arg) {
    const char **flags = (const char **)arg;
    int n = 0;
    while (flags[n]) { n++; }
    parse(flags, n);
}

static void accum_of(void *arg) {
    const char **flags = (const char **)arg;
    TrainArgs a = parse(flags, 6);
    grad_accum_steps(&a, 3);
}

static void test_flags(void) {
    const char *f1[] = {"-P", "tcp:node0:29500", "-G", "job7", "-O", "0", "-T", "45"};
    TrainArgs a = parse(f1, 8);
    CHECK(strcmp(a.process_group, "tcp:node0:29500") == 0 && strcmp(a.run_tag, "job7") == 0 && a.zero_stage == 0 &&
          a.collective_timeout_s == 45.0f, "multi-GPU flags not parsed");
    TrainArgs d = parse(f1, 0);
    CHECK(strcmp(d.process_group, "auto") == 0 && d.run_tag == NULL && d.zero_stage == 1 && d.collective_timeout_s == 300.0f,
          "multi-GPU defaults changed");

    ProcessGroupSpec s = process_group_parse("fs:/shared/rdv");
    CHECK(strcmp(s.init, "fs") == 0 && strcmp(s.endpoint, "/shared/rdv") == 0, "fs:<dir> not split");
    s = process_group_parse("tcp:10.0.0.1:29500");
    CHECK(strcmp(s.init, "tcp") == 0 && strcmp(s.endpoint, "10.0.0.1:29500") == 0, "tcp:<host:port> not split");
    const char *plain[] = {"auto", "local", "single", "mpi"};
    for (int i = 0; i < 4; i++) {
        s = process_group_parse(plain[i]);
        CHECK(strcmp(s.init, plain[i]) == 0 && s.endpoint[0] == '\0', "-P %s", plain[i]);
    }
    setenv("MASTER_ADDR", "head", 1); setenv("MASTER_PORT", "1234", 1);
    s = process_group_parse("env");
    CHECK(strcmp(s.init, "tcp") == 0 && strcmp(s.endpoint, "head:1234") == 0, "env: %s %s", s.init, s.endpoint);
    unsetenv("MASTER_ADDR"); unsetenv("MASTER_PORT");

    // the global batch: without -d one micro-batch per GPU; with -d a multiple of b*t*GPUs
    const char *f2[] = {"-b", "2", "-t", "64"};
    TrainArgs g = parse(f2, 4);
    int acc = grad_accum_steps(&g, 4);
    CHECK(acc == 1 && g.total_batch == 512, "default global batch on 4 GPUs: accum %d total %d", acc, g.total_batch);
    const char *f3[] = {"-b", "2", "-t", "64", "-d", "1024"};
    g = parse(f3, 6);
    acc = grad_accum_steps(&g, 2);
    CHECK(acc == 4 && g.total_batch == 1024, "-d 1024 on 2 GPUs: accum %d", acc);
    g = parse(f3, 6);
    CHECK(grad_accum_steps(&g, 1) == 8, "-d 1024 on 1 GPU");

    static const char *bad[][5] = {
        {"-O", "2", NULL}, {"-T", "0", NULL}, {"-P", "nccl", NULL}, {"-P", "fs:", NULL}, {"-P", "tcp:host", NULL},
        {"-P", "tcp:host:99999", NULL}, {"-P", "env", NULL}, {"-T", "soon", NULL},
    };
    static const char *expect[] = {"ZeRO stage -O 2", "collective timeout -T 0", "-P 'nccl': must be", "-P fs: needs a directory",
                                   "must be host:port", "must be host:port", "MASTER_ADDR and MASTER_PORT", "flag -T wants a number"};
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) { expect_failure(expect[i], parse_flags, bad[i], expect[i]); }
    static const char *f4[] = {"-b", "2", "-t", "64", "-d", "1024"};
    expect_failure("-d not a multiple of b*t*GPUs", accum_of, f4, "must be a multiple of b*t*GPUs = 2*64*3");
}

// ---- resume positions

static char tmpdir[64], pattern[128];
static CheckpointHeader resume_header;

static void write_shards(void) {
    // shard 0: 81 samples of T 8 -> 20 batches of B 4 (5 per rank on 4 GPUs); shard 1: 25 samples -> 6
    int sizes[2] = {81 * 8 + 1, 25 * 8 + 1};
    for (int s = 0; s < 2; s++) {
        uint32_t *tok = (uint32_t *)malloc_check(sizeof(uint32_t) * (size_t)sizes[s]);
        for (int i = 0; i < sizes[s]; i++) { tok[i] = (uint32_t)((i * 7 + s) % 50); }
        char path[160];
        snprintf(path, sizeof(path), "%s/train_%03d.bin", tmpdir, s);
        shard_write(path, tok, (uint64_t)sizes[s], 2, 64);
        free(tok);
    }
    snprintf(pattern, sizeof(pattern), "%s/train_*.bin", tmpdir);
}

// Where a loader of `world` ranks resumes a checkpoint written by old_world ranks at (shard, batch).
static DataLoaderPosition resumed(int old_world, int world, uint64_t shard, uint64_t batch) {
    DataLoader dl;
    dataloader_init(&dl, pattern, 4, 8, 0, world, 0, 1, 64);
    CheckpointHeader h;
    memset(&h, 0, sizeof(h));
    h.world_size = old_world; h.loader_shard = shard; h.loader_batch = batch;
    DataLoaderPosition p = resume_position(&dl, &h);
    dataloader_set_position(&dl, p);  // dies unless p is a batch of this loader
    dataloader_free(&dl);
    return p;
}

static void resume_other_batch(void *arg) {
    (void)arg;
    TrainArgs a = default_args();
    a.B = 4; a.T = 8; a.seed = 1;
    check_resume_compatible("ckpt", &resume_header, &a, 1, 2);
}

static void test_resume_positions(void) {
    write_shards();
    DataLoaderPosition p = resumed(2, 2, 0, 3);
    CHECK(p.shard_index == 0 && p.batch_index == 3, "same world: position changed");
    p = resumed(2, 1, 0, 3);  // global batch 6 = 1-GPU local batch 6
    CHECK(p.shard_index == 0 && p.batch_index == 6, "2 -> 1 GPUs: batch %llu", (unsigned long long)p.batch_index);
    p = resumed(1, 2, 0, 6);  // global 6 = 2-GPU local batch 3
    CHECK(p.shard_index == 0 && p.batch_index == 3, "1 -> 2 GPUs: batch %llu", (unsigned long long)p.batch_index);
    p = resumed(1, 4, 0, 5);  // global 5: rounded up to global 8 = local 2
    CHECK(p.shard_index == 0 && p.batch_index == 2, "1 -> 4 GPUs rounded: batch %llu", (unsigned long long)p.batch_index);
    p = resumed(1, 4, 0, 17);  // global 17 -> local 5, but 4 GPUs take only 5 batches each of shard 0: shard 1
    CHECK(p.shard_index == 1 && p.batch_index == 0, "1 -> 4 GPUs past the shard: shard %llu batch %llu",
          (unsigned long long)p.shard_index, (unsigned long long)p.batch_index);
    p = resumed(1, 4, 1, 5);  // past the last shard: the next epoch
    CHECK(p.epoch == 1 && p.shard_index == 0 && p.batch_index == 0, "past the last shard");

    // a checkpoint of 2 GPUs x accum 2 resumes on 4 GPUs x accum 1 (same global batch), not on 4 x 2
    TrainArgs a = default_args();
    a.B = 4; a.T = 8; a.seed = 1;
    memset(&resume_header, 0, sizeof(resume_header));
    resume_header.batch_size = 4; resume_header.seq_len = 8; resume_header.grad_accum = 2; resume_header.world_size = 2; resume_header.seed = 1;
    check_resume_compatible("ckpt", &resume_header, &a, 1, 4);  // dies (no summary line: a failure) if refused
    printf("ok   resume 2 GPUs x accum 2 -> 4 GPUs x accum 1 accepted\n");
    expect_failure("resume with another global batch", resume_other_batch, NULL, "resume needs the same b, t and accum x world");
}

int main(void) {
    check_layout("tiny", 3, 1);
    check_layout("tiny", 0, 2);
    check_layout("tiny", 3, 4);
    check_layout("340M", 3, 8);
    check_layout("1B", 3, 8);
    check_layout("1B", 0, 16);
    check_world1_identity();
    indivisible_no_zero();
    expect_failure("ZeRO-1 slice not divisible", indivisible, NULL, "not divisible by 3 GPUs; use -O 0");
    test_flags();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/moba_mgpu_XXXXXX");
    if (mkdtemp(tmpdir) == NULL) { die("mkdtemp failed"); }
    test_resume_positions();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0) { printf("warning: could not remove %s\n", tmpdir); }
    return test_summary();
}
