/*
 Mutation fuzzing of every loader that reads a user-supplied file: token shard, checkpoint, tokenizer,
 prepare input (JSONL and text), debug state, LongBench JSONL. `make asan` builds it with ASan + UBSan
 and dev/test/run_sanitized.sh runs it, bounded, in CI.

 For each loader the inputs are: the valid seeds in dev/fuzz/corpus/<loader>/ (each must be accepted),
 hand-made adversarial files (wrapping sizes, huge counts, negative fields; checkpoints get a correct
 checksum so the header logic behind it is reached), then -n mutants of the seeds drawn from a fixed-seed
 RNG (bit flips, interesting integers at aligned offsets, truncation, growth, deleted and repeated
 chunks, JSON metacharacters; half the checkpoint mutants get their checksum fixed up). Every input runs
 in a forked child with a time limit and must either be accepted (exit 0) or rejected with a clear
 "error: ..." on stderr and exit 1. A signal, any other status, a missing message or a hang is a failure:
 the input is kept in <out>/ for replay with -r. Sanitizer reports go where ASAN_OPTIONS/UBSAN_OPTIONS
 log_path says; the calling script fails on any.

 Usage: fuzz_loaders [-n mutants per loader, default 300] [-s seed, default 1] [-o dir for failing inputs]
                    [-c corpus dir, default dev/fuzz/corpus]
        fuzz_loaders -r <loader> <file>     runs one loader on one file in this process
        fuzz_loaders -g <corpus dir>        writes the valid seed corpus (run after a format change)
*/
#define TESTING
#include <signal.h>
#include <sys/wait.h>
#include "train_gpt_moba.c"
#include "llmc/jsonl.h"
#include "llmc/eval/longbench.h"
#include "dev/test/testing.h"

#define CASE_SECONDS 20
#define FUZZ_MAX_INPUT (1 << 22)

static Tokenizer seed_tokenizer;  // the prepare-input loader encodes with it, as build/prepare does

// ---------------------------------------------------------------------------------------------------
// The loaders: each reads one file the way the programs do, dying on bad input.

static void load_shard(const char *path) {
    DataLoader dl;
    dataloader_init(&dl, path, 2, 8, 0, 1, 1, 7, 512);
    for (int i = 0; i < 3; i++) { dataloader_next_batch(&dl); }
    dataloader_free(&dl);
}

// As build/eval -c: the header names the model, which is built and loaded (optimizer state too).
static void load_checkpoint(const char *path) {
    CheckpointHeader h;
    fclose(checkpoint_open(path, &h));
    Model m;
    model_init(&m, &h.cfg, 1);
    model_load_checkpoint(&m, path, 1);
    model_free(&m);
}

static void load_tokenizer(const char *path) {
    Tokenizer t;
    tokenizer_load(&t, path);
    const char *text = "Hello, world: 123 tokens\n";
    uint32_t ids[64];
    unsigned char back[256];
    size_t n = tokenizer_encode(&t, (const unsigned char *)text, strlen(text), ids, 64);
    size_t m = tokenizer_decode(&t, ids, n, back, sizeof(back));
    if (m != strlen(text) || memcmp(back, text, m) != 0) { die("tokenizer '%s': decode(encode(x)) != x", path); }
    tokenizer_free(&t);
}

// As build/prepare: the records of a .jsonl or text file, their text decoded and tokenized.
static void load_prepare_input(const char *path) {
    CorpusFiles cf;
    char *paths[1] = {(char *)path};
    corpus_list(&cf, paths, 1);
    CorpusReader r;
    CorpusPos start = {0, 0, 1}, at;
    corpus_reader_open(&r, &cf, start);
    const unsigned char *rec, *text;
    size_t len;
    while (corpus_reader_next(&r, &rec, &len, &at)) {
        unsigned char *scratch = (unsigned char *)malloc_check(len + 1);
        long long n = corpus_doc_text(&cf, at, rec, len, scratch, &text, 0);
        uint32_t *ids = (uint32_t *)malloc_check(((size_t)n + 1) * sizeof(uint32_t));
        tokenizer_encode(&seed_tokenizer, text, (size_t)n, ids, (size_t)n + 1);
        free(ids); free(scratch);
    }
    corpus_reader_close(&r);
    corpus_files_free(&cf);
}

static void load_debug_state(const char *path) {
    DebugStateHeader h;
    DebugStateLayout lay;
    FILE *f = debug_state_open(path, &h, &lay);
    size_t count = 2 * lay.P + 2 * lay.N + lay.N * lay.V + 1 + (size_t)lay.steps + lay.nsel;
    float *all = (float *)malloc_check(count * sizeof(float));
    fread_check(all, sizeof(float), count, f, path);
    free(all);
    fclose(f);
}

static void load_longbench(const char *path) {
    LBRecords rs = longbench_read(path);
    for (int i = 0; i < rs.n; i++) {
        const LBDataset *d = longbench_dataset(rs.r[i].dataset);
        if (d) { free(longbench_prompt(d, &rs.r[i])); }
    }
    longbench_free(&rs);
}

typedef struct {
    const char *name;
    void (*load)(const char *path);
    int text;  // mutate with JSON metacharacters too
} Loader;

static const Loader loaders[] = {
    {"shard", load_shard, 0},
    {"checkpoint", load_checkpoint, 0},
    {"tokenizer", load_tokenizer, 0},
    {"prepare_input", load_prepare_input, 1},
    {"debug_state", load_debug_state, 0},
    {"longbench", load_longbench, 1},
};
#define NUM_LOADERS ((int)(sizeof(loaders) / sizeof(loaders[0])))

// ---------------------------------------------------------------------------------------------------
// One input in a child process.

typedef struct { int accepted, rejected, failed; } Counts;

static char out_dir[512] = "build-asan/fuzz_failures";
static char case_dir[512];

// 1 when the child accepted the input or rejected it cleanly; else 0 and why in `why`.
static int run_case(const Loader *l, const char *path, char *why, size_t cap, int *accepted) {
    int pipefd[2];
    if (pipe(pipefd) != 0) { die("pipe: %s", strerror(errno)); }
    fflush(stdout); fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) { die("fork: %s", strerror(errno)); }
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], 2);
        if (!freopen("/dev/null", "w", stdout)) { _exit(3); }
        child_skip_leak_check_on_failure();
        alarm(CASE_SECONDS);
        l->load(path);
        exit(0);  // exit, not _exit: the leak check runs on accepted inputs
    }
    close(pipefd[1]);
    // keep the start of the child's stderr; drain the rest so it never blocks on a full pipe
    char err[2048] = {0}, sink[4096];
    size_t len = 0;
    for (;;) {
        int keep = len < sizeof(err) - 1;
        ssize_t r = read(pipefd[0], keep ? err + len : sink, keep ? sizeof(err) - 1 - len : sizeof(sink));
        if (r <= 0) { break; }
        if (keep) { len += (size_t)r; }
    }
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    *accepted = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (*accepted) { return 1; }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 1 && strncmp(err, "error: ", 7) == 0 && strchr(err, '\n') != NULL) { return 1; }
    if (WIFSIGNALED(status)) {
        snprintf(why, cap, "%s (signal %d)", WTERMSIG(status) == SIGALRM ? "hang" : "crash", WTERMSIG(status));
    } else {
        snprintf(why, cap, "exit status %d, stderr '%.300s'", WIFEXITED(status) ? WEXITSTATUS(status) : -1, err);
    }
    return 0;
}

static void save_failure(const Loader *l, const unsigned char *buf, size_t n, int index, const char *ext, char *saved, size_t cap) {
    ensure_dir(out_dir);
    snprintf(saved, cap, "%s/%s_%d%s", out_dir, l->name, index, ext);
    FILE *f = fopen_check(saved, "wb");
    fwrite_check(buf, 1, n, f, saved);
    fclose(f);
}

static void write_file(const char *path, const void *buf, size_t n) {
    FILE *f = fopen_check(path, "wb");
    fwrite_check(buf, 1, n, f, path);
    fclose(f);
}

// Runs one input; counts it; reports and keeps a failure.
static void try_input(const Loader *l, const unsigned char *buf, size_t n, const char *ext, const char *what, int index, Counts *c) {
    char path[600], why[512], saved[700];
    snprintf(path, sizeof(path), "%s/input%s", case_dir, ext);
    write_file(path, buf, n);
    int accepted;
    if (run_case(l, path, why, sizeof(why), &accepted)) {
        c->accepted += accepted;
        c->rejected += !accepted;
        return;
    }
    c->failed++;
    save_failure(l, buf, n, index, ext, saved, sizeof(saved));
    printf("FAIL %s %s: %s; input kept as %s (replay: fuzz_loaders -r %s %s)\n", l->name, what, why, saved, l->name, saved);
}

// ---------------------------------------------------------------------------------------------------
// Seeds

typedef struct { unsigned char *buf; size_t n; char ext[16]; } Seed;

static unsigned char *read_whole(const char *path, size_t *n) {
    FILE *f = fopen_check(path, "rb");
    long long size = file_size_check(f, path);
    if (size > FUZZ_MAX_INPUT) { die("seed '%s' is larger than %d bytes", path, FUZZ_MAX_INPUT); }
    unsigned char *buf = (unsigned char *)malloc_check((size_t)size);
    fread_check(buf, 1, (size_t)size, f, path);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

static int load_seeds(const char *corpus, const char *loader, Seed *seeds, int cap) {
    char pattern[600];
    snprintf(pattern, sizeof(pattern), "%s/%s/*", corpus, loader);
    glob_t g;
    int n = 0;
    if (glob(pattern, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc && n < cap; i++, n++) {
            seeds[n].buf = read_whole(g.gl_pathv[i], &seeds[n].n);
            const char *dot = strrchr(g.gl_pathv[i], '.');
            snprintf(seeds[n].ext, sizeof(seeds[n].ext), "%s", dot && !strchr(dot, '/') ? dot : "");
        }
        globfree(&g);
    }
    if (n == 0) { die("no seeds for loader '%s' in %s/%s/ (write them with -g %s)", loader, corpus, loader, corpus); }
    return n;
}

// ---------------------------------------------------------------------------------------------------
// Mutation

static const uint32_t interesting32[] = {0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000u, 0xFFFFFFFFu, 0xFFFFFFFEu, 256, 4096};
static const uint64_t interesting64[] = {1ull << 32, 1ull << 62, 1ull << 63, UINT64_MAX, (1ull << 61) + 1, 0x4000000000000001ull};
static const char *const json_bits[] = {"\"", "\\", "{", "}", "[", "]", ":", ",", "\\u", "\\ud800", "\\udc00", "\\u0000", "\n", "1e999",
                                        "-", "null", "\xff", "\xc3", "\xe2\x80", "\"text\":", "\"answers\":[]", "\"length\":-1e300"};

// Applies 1-4 random mutations in place (buf has room for FUZZ_MAX_INPUT bytes); returns the new length.
static size_t mutate(Rng *r, unsigned char *buf, size_t n, int text) {
    int k = 1 + (int)rng_below(r, 4);
    for (int j = 0; j < k; j++) {
        uint32_t op = rng_below(r, text ? 9 : 8);
        size_t at = n ? rng_below(r, (uint32_t)n) : 0;
        if (op == 0 && n) { buf[at] ^= (unsigned char)(1u << rng_below(r, 8)); }
        else if (op == 1 && n) { buf[at] = (unsigned char)(rng_below(r, 2) ? rng_u32(r) : interesting32[rng_below(r, 6)]); }
        else if (op == 2 && n >= 4) {
            uint32_t v = interesting32[rng_below(r, sizeof(interesting32) / 4)];
            memcpy(buf + (at & ~(size_t)3) - ((at & ~(size_t)3) + 4 > n ? 4 : 0), &v, 4);
        } else if (op == 3 && n >= 8) {
            uint64_t v = interesting64[rng_below(r, sizeof(interesting64) / 8)];
            memcpy(buf + (at & ~(size_t)7) - ((at & ~(size_t)7) + 8 > n ? 8 : 0), &v, 8);
        } else if (op == 4) { n = n ? rng_below(r, (uint32_t)n) : 0; }
        else if (op == 5) {
            size_t add = 1 + rng_below(r, 64);
            for (size_t i = 0; i < add && n < FUZZ_MAX_INPUT; i++) { buf[n++] = (unsigned char)rng_u32(r); }
        } else if (op == 6 && n) {
            size_t len = 1 + rng_below(r, (uint32_t)(n - at < 256 ? n - at : 256));
            memmove(buf + at, buf + at + len, n - at - len);
            n -= len;
        } else if (op == 7 && n) {
            size_t len = 1 + rng_below(r, (uint32_t)(n - at < 256 ? n - at : 256));
            if (n + len <= FUZZ_MAX_INPUT) { memmove(buf + at + len, buf + at, n - at); n += len; }
        } else if (op == 8) {
            const char *s = json_bits[rng_below(r, sizeof(json_bits) / sizeof(json_bits[0]))];
            size_t len = strlen(s);
            if (n + len <= FUZZ_MAX_INPUT) { memmove(buf + at + len, buf + at, n - at); memcpy(buf + at, s, len); n += len; }
        }
    }
    return n;
}

// A checkpoint-sized buffer's checksum set right (after a mutation or a hand-made header change), so
// the loader's checks behind the checksum get exercised.
static void fix_checksum(unsigned char *buf, size_t n) {
    if (n < CKPT_HEADER_BYTES || n % 4 != 0) { return; }
    CheckpointHeader h;
    memcpy(&h, buf, sizeof(h));
    h.checksum = 0;
    Checksum64 c;
    checksum_init(&c);
    checksum_update(&c, &h, sizeof(h));
    checksum_update(&c, buf + CKPT_HEADER_BYTES, n - CKPT_HEADER_BYTES);
    h.checksum = checksum_final(&c);
    memcpy(buf, &h, sizeof(h));
}

// ---------------------------------------------------------------------------------------------------
// Hand-made adversarial inputs: a seed with one header field set to a hostile value. Returns how many
// variants the loader has; writes variant v into buf (from seed s) and returns its length via *n.

static void put32(unsigned char *buf, size_t off, uint32_t v) { memcpy(buf + off, &v, 4); }
static void put64(unsigned char *buf, size_t off, uint64_t v) { memcpy(buf + off, &v, 8); }

static const uint32_t hostile32[] = {0, 0xFFFFFFFFu, 0x80000000u, 0x7FFFFFFFu, 0x40000000u};
static const uint64_t hostile64[] = {0, UINT64_MAX, 1ull << 63, 1ull << 62, (1ull << 61) + 1, 1ull << 32};
#define NUM_HOSTILE32 5
#define NUM_HOSTILE64 6

// Header fields of each binary format (byte offset, width): every one gets every hostile value.
typedef struct { int off, width; } Field;
static const Field shard_fields[] = {{4, 4}, {8, 4}, {12, 4}, {16, 8}};
static const Field ckpt_fields[] = {{8, 4}, {12, 4}, {16, 4}, {20, 4}, {24, 4}, {28, 4}, {32, 4}, {36, 4}, {40, 4}, {44, 4}, {48, 4},
                                    {52, 4}, {56, 4}, {72, 8}, {88, 8}, {96, 8}, {104, 8}, {112, 4}, {116, 4}, {120, 4}, {124, 4}};
static const Field tok_fields[] = {{8, 4}, {12, 4}, {16, 4}, {20, 4}, {64, 4}, {68, 4}};
static const Field debug_fields[] = {{16, 4}, {20, 4}, {24, 4}, {28, 4}, {32, 4}, {36, 4}, {64, 4}, {68, 4}, {72, 4}, {76, 4}, {104, 8}};

static int adversarial(const Loader *l, const Seed *seed, int v, unsigned char *buf, size_t *n) {
    const Field *fields = NULL;
    int nf = 0;
    if (strcmp(l->name, "shard") == 0) { fields = shard_fields; nf = 4; }
    else if (strcmp(l->name, "checkpoint") == 0) { fields = ckpt_fields; nf = (int)(sizeof(ckpt_fields) / sizeof(Field)); }
    else if (strcmp(l->name, "tokenizer") == 0) { fields = tok_fields; nf = (int)(sizeof(tok_fields) / sizeof(Field)); }
    else if (strcmp(l->name, "debug_state") == 0) { fields = debug_fields; nf = (int)(sizeof(debug_fields) / sizeof(Field)); }
    static const char *const text_cases[] = {
        "", "\n\n\n", "{\"text\": 1}\n", "{\"text\": \"\\ud800\"}\n", "{\"text\": \"\\udc00\\ud800\"}\n", "{\"text\": \"a\\u0000b\"}\n",
        "{\"text\": \"x\", \"text\": \"y\"}\n", "{\"text\": \"\xff\xfe\"}\n", "[1,2,3]\n", "{\"text\": \"unterminated\n",
        "{\"input\":\"q\",\"context\":\"c\",\"answers\":[\"a\"],\"length\":1e300,\"dataset\":\"qasper\",\"language\":\"en\",\"all_classes\":null,\"_id\":\"x\"}\n",
        "{\"input\":\"q\",\"context\":\"c\",\"answers\":[\"a\"],\"length\":-1,\"dataset\":\"nope\",\"language\":\"en\",\"all_classes\":[1],\"_id\":\"x\"}\n",
        "{\"input\":\"q\",\"context\":\"c\",\"answers\":[],\"length\":1,\"dataset\":\"qasper\",\"language\":\"en\",\"all_classes\":null,\"_id\":\"x\"}\n",
    };
    int text_variants = (int)(sizeof(text_cases) / sizeof(text_cases[0])) + 2;
    if (l->text) {
        if (v >= text_variants) { return text_variants; }
        if (v < text_variants - 2) { *n = strlen(text_cases[v]); memcpy(buf, text_cases[v], *n); }
        else {  // deep nesting, and one long line without a newline
            *n = 0;
            const char *open = v == text_variants - 2 ? "{\"text\":\"a\",\"x\":" : "{\"text\":\"";
            memcpy(buf, open, strlen(open)); *n = strlen(open);
            for (int i = 0; i < 100000; i++) { buf[(*n)++] = v == text_variants - 2 ? '[' : 'a'; }
        }
        return text_variants;
    }
    int total = nf * (NUM_HOSTILE32 + NUM_HOSTILE64);
    if (v >= total) { return total; }
    const Field *f = &fields[v / (NUM_HOSTILE32 + NUM_HOSTILE64)];
    int h = v % (NUM_HOSTILE32 + NUM_HOSTILE64);
    memcpy(buf, seed->buf, seed->n);
    *n = seed->n;
    if (f->off + f->width > (int)*n) { return total; }
    if (f->width == 4 && h < NUM_HOSTILE32) { put32(buf, (size_t)f->off, hostile32[h]); }
    else if (f->width == 8 && h >= NUM_HOSTILE32) { put64(buf, (size_t)f->off, hostile64[h - NUM_HOSTILE32]); }
    else if (f->width == 4) { put32(buf, (size_t)f->off, (uint32_t)hostile64[h - NUM_HOSTILE32]); }
    else { put64(buf, (size_t)f->off, hostile32[h]); }
    if (strcmp(l->name, "checkpoint") == 0) { fix_checksum(buf, *n); }
    return total;
}

// ---------------------------------------------------------------------------------------------------
// The valid seed corpus (-g): each written by the project's own writer, small.

static void write_seed_corpus(const char *dir) {
    char path[700];
    const char *subdirs[] = {"shard", "checkpoint", "tokenizer", "prepare_input", "debug_state", "longbench"};
    for (int i = 0; i < 6; i++) { snprintf(path, sizeof(path), "%s/%s", dir, subdirs[i]); ensure_dir(path); }
    uint32_t toks[300];
    for (int i = 0; i < 300; i++) { toks[i] = (uint32_t)(i * 37 % 512); }
    snprintf(path, sizeof(path), "%s/shard/u16.bin", dir);
    shard_write(path, toks, 300, 2, 512);
    snprintf(path, sizeof(path), "%s/shard/u32.bin", dir);
    shard_write(path, toks, 100, 4, 0);

    // a tiny MoBA model with key conv, one AdamW step (so the optimizer state is not all zero)
    ModelConfig cfg = {16, 2, 8, 2, 8, 32, ATTN_MOBA, 4, 2, 3, 0, 10000.0f, LAYOUT_PAPER, 4, 1, 0};
    Model m;
    model_init(&m, &cfg, 3);
    int in[16], tg[16];
    for (int i = 0; i < 16; i++) { in[i] = i % 16; tg[i] = (i * 5) % 16; }
    AdamWConfig o = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    model_forward(&m, in, tg, 2, 8); model_zero_grad(&m); model_backward(&m, 1); model_update(&m, &o, 1e-2f, 1);
    CheckpointHeader h;
    memset(&h, 0, sizeof(h));
    h.step = 1; h.batch_size = 2; h.seq_len = 8; h.grad_accum = 1; h.world_size = 1; h.seed = 3;
    snprintf(path, sizeof(path), "%s/checkpoint/tiny.bin", dir);
    model_save_checkpoint(&m, path, h);
    snprintf(path, sizeof(path), "%s/debug_state/tiny.bin", dir);
    write_debug_state(&m, path, in, tg, 2, 8, &o, 2, 3);
    model_free(&m);

    uint32_t merges[8] = {'t', 'h', 256, 'e', ' ', 't', 'a', 'n'};
    const char *eot = TOKENIZER_EOT_NAME;
    uint32_t eot_len = (uint32_t)strlen(eot);
    Tokenizer t;
    tokenizer_build(&t, merges, 4, &eot, &eot_len, 1, "seed");
    snprintf(path, sizeof(path), "%s/tokenizer/tiny.bin", dir);
    tokenizer_save(&t, path);
    tokenizer_free(&t);

    const char *jsonl = "{\"text\": \"The cat sat.\\nOn the mat \\u00e9\\ud83d\\ude00\", \"id\": 1, \"meta\": {\"a\": [1, 2.5e3, true, null]}}\n"
                        "\n{\"id\": \"x\", \"text\": \"second \\\"doc\\\"\"}\n";
    snprintf(path, sizeof(path), "%s/prepare_input/docs.jsonl", dir);
    write_file(path, jsonl, strlen(jsonl));
    const char *txt = "A plain text document.\nIt has two lines and UTF-8: caf\xc3\xa9.\n";
    snprintf(path, sizeof(path), "%s/prepare_input/doc.txt", dir);
    write_file(path, txt, strlen(txt));
    const char *lb = "{\"input\": \"Who?\", \"context\": \"Ann met Bob.\", \"answers\": [\"Ann\"], \"length\": 3, \"dataset\": \"qasper\", "
                     "\"language\": \"en\", \"all_classes\": null, \"_id\": \"a1\"}\n"
                     "{\"input\": \"Kind?\", \"context\": \"text\", \"answers\": [\"x\", \"y\"], \"length\": 1, \"dataset\": \"trec\", "
                     "\"language\": \"en\", \"all_classes\": [\"x\", \"y\"], \"_id\": \"a2\"}\n";
    snprintf(path, sizeof(path), "%s/longbench/records.jsonl", dir);
    write_file(path, lb, strlen(lb));
    printf("wrote the seed corpus in %s\n", dir);
}

// ---------------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    int mutants = 300;
    uint64_t seed = 1;
    const char *corpus = "dev/fuzz/corpus";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-g") == 0 && i + 1 < argc) { write_seed_corpus(argv[i + 1]); return 0; }
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) { mutants = atoi(argv[++i]); continue; }
        if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) { seed = (uint64_t)atoll(argv[++i]); continue; }
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) { snprintf(out_dir, sizeof(out_dir), "%s", argv[++i]); continue; }
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) { corpus = argv[++i]; continue; }
        if (strcmp(argv[i], "-r") == 0 && i + 2 < argc) {
            char tok[700];
            snprintf(tok, sizeof(tok), "%s/tokenizer/tiny.bin", corpus);
            tokenizer_load(&seed_tokenizer, tok);
            for (int k = 0; k < NUM_LOADERS; k++) {
                if (strcmp(loaders[k].name, argv[i + 1]) == 0) { loaders[k].load(argv[i + 2]); printf("accepted\n"); return 0; }
            }
            die("unknown loader '%s'", argv[i + 1]);
        }
        die("usage: fuzz_loaders [-n mutants] [-s seed] [-o failures dir] [-c corpus] | -r loader file | -g corpus dir");
    }
    char tok[700];
    snprintf(tok, sizeof(tok), "%s/tokenizer/tiny.bin", corpus);
    tokenizer_load(&seed_tokenizer, tok);
    snprintf(case_dir, sizeof(case_dir), "/tmp/moba_fuzz_XXXXXX");
    if (!mkdtemp(case_dir)) { die("mkdtemp failed: %s", strerror(errno)); }
    unsigned char *buf = (unsigned char *)malloc_check(FUZZ_MAX_INPUT);
    int total_failed = 0;
    printf("fuzzing %d loaders: seeds, adversarial headers, %d mutants each (seed %llu)\n", NUM_LOADERS, mutants, (unsigned long long)seed);
    for (int li = 0; li < NUM_LOADERS; li++) {
        const Loader *l = &loaders[li];
        double t0 = now_seconds();
        Seed seeds[16];
        int ns = load_seeds(corpus, l->name, seeds, 16);
        Counts seed_c = {0, 0, 0}, adv = {0, 0, 0}, mut = {0, 0, 0};
        for (int s = 0; s < ns; s++) {
            try_input(l, seeds[s].buf, seeds[s].n, seeds[s].ext, "seed", s, &seed_c);
        }
        if (seed_c.accepted != ns) { printf("FAIL %s: %d of %d valid seeds rejected (a format change? rewrite them with -g %s)\n", l->name, ns - seed_c.accepted, ns, corpus); total_failed++; }
        for (int v = 0, nv = 1; v < nv; v++) {
            size_t n = 0;
            nv = adversarial(l, &seeds[v % ns], v, buf, &n);
            if (v < nv) { try_input(l, buf, n, seeds[v % ns].ext, "adversarial", 1000 + v, &adv); }
        }
        Rng rng;
        rng_init(&rng, seed * 1000003u + (uint64_t)li);
        for (int k = 0; k < mutants; k++) {
            const Seed *s = &seeds[rng_below(&rng, (uint32_t)ns)];
            memcpy(buf, s->buf, s->n);
            size_t n = mutate(&rng, buf, s->n, l->text);
            if (strcmp(l->name, "checkpoint") == 0 && rng_below(&rng, 2)) { fix_checksum(buf, n); }
            try_input(l, buf, n, s->ext, "mutant", 2000 + k, &mut);
        }
        int failed = seed_c.failed + adv.failed + mut.failed;
        total_failed += failed;
        printf("%-14s %d seeds, %d adversarial (%d accepted, %d rejected), %d mutants (%d accepted, %d rejected): %d failures, %.1f s\n",
               l->name, ns, adv.accepted + adv.rejected + adv.failed, adv.accepted, adv.rejected, mut.accepted + mut.rejected + mut.failed,
               mut.accepted, mut.rejected, failed, now_seconds() - t0);
        for (int s = 0; s < ns; s++) { free(seeds[s].buf); }
    }
    free(buf);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", case_dir);
    if (system(cmd) != 0) { printf("warning: could not remove %s\n", case_dir); }
    tokenizer_free(&seed_tokenizer);
    printf("%s: %d failures\n", total_failed ? "FUZZ FAILED" : "fuzz ok", total_failed);
    return total_failed ? 1 : 0;
}
