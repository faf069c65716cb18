/*
 Corpus -> token shards. Reads plain-text and JSONL files (llmc/jsonl.h), tokenizes every document with
 all cores, puts the document token (<|endoftext|>; <s> for a SentencePiece model) before each document and writes the token stream as shards
 (llmc/shard.h): the first -V tokens as val_NNNNNN.bin, the rest as train_NNNNNN.bin, -s tokens each
 (the last one of each kind may be shorter). If the tokenizer file does not exist it is trained first on
 a -n MB sample. One command from a folder of files to what the trainers read:
   build/prepare -o data/mycorpus corpus_folder/
 or, with an existing SentencePiece or Hugging Face tokenizer (llmc/text_tokenizer.h):
   build/prepare -o data/mycorpus -T tokenizer.model corpus_folder/
 doc/tokenizer.md has the details.

 Order: a reader (the main thread) cuts the input into chunks of records, worker threads tokenize chunks
 in any order, and the main thread appends the results in input order, so the output does not depend on
 -j. Resumable: every shard is written under a temporary name and renamed, then prepare.state records
 how far the input was consumed and the tokens not yet in a shard; a rerun with the same inputs and
 settings continues from there (a shard that was renamed but not yet recorded is rewritten with the
 same contents).

 Synthetic long-context mode (-L): documents of exactly -L tokens, each <|endoftext|>, then corpus text
 (the filler, taken in order with its document boundaries dropped) with -F planted facts
 " The secret number of <Name> is <6 digits>." at random places, then "\n\nRecall the secret numbers:"
 and the same facts again in another random order (-Q magic: RULER's needle sentence, and each fact asked
 for with RULER's question and answer prefix). Predicting the recalled numbers needs attention back to the
 plants, which is what separates MoBA's block selection from dense attention in small ablations. -P also
 writes one probe per document (its text up to the first answer) for the evaluation's -R.
*/
#include <pthread.h>
#include <time.h>
#include "bpe_train.h"
#include "llmc/json_value.h"
#include "llmc/rng.h"
#include "llmc/shard.h"
#include "llmc/text_tokenizer.h"

#define CHUNK_BYTES (2u << 20)
#define STATE_MAGIC 0x5350524Du  // "MRPS"

static double clock_s(clockid_t which) {
    struct timespec ts;
    clock_gettime(which, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }

typedef struct { uint32_t *v; size_t n, cap; } TokVec;

static void tv_reserve(TokVec *t, size_t extra) {
    if (t->n + extra <= t->cap) { return; }
    t->cap = t->n + extra > 2 * t->cap ? t->n + extra : 2 * t->cap;
    t->v = (uint32_t *)realloc(t->v, t->cap * sizeof(uint32_t));
    if (!t->v) { die("out of host memory: %zu tokens", t->cap); }
}

static void tv_push(TokVec *t, const uint32_t *x, size_t n) {
    tv_reserve(t, n);
    memcpy(t->v + t->n, x, n * sizeof(uint32_t));
    t->n += n;
}

// A chunk of input records and, once a worker is done, their tokens.
enum { SLOT_EMPTY, SLOT_FILLED, SLOT_BUSY, SLOT_DONE };
typedef struct {
    int state;
    unsigned char *raw; size_t raw_len, raw_cap;
    size_t *off, *len; CorpusPos *pos; int nrec, rec_cap;
    CorpusPos end;          // reader position after the chunk
    TokVec tok;
    uint64_t docs, text_bytes;
    double cpu_s;           // worker CPU time spent on the chunk (JSON decoding + encoding)
} Slot;

typedef struct {
    // settings
    const char *outdir;
    uint64_t shard_tokens, val_tokens;
    int skip_bad, threads, nslots;
    uint32_t synth_len, synth_facts, synth_style;
    uint64_t seed, config_hash;
    FILE *probes;           // -P: one retrieval probe per synthetic document, or NULL
    TextTokenizer tok;
    CorpusFiles files;
    // pipeline
    Slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t next_fill, next_take, next_write;
    int quit;
    // stream state (what prepare.state records)
    CorpusPos pos;          // input consumed up to here
    uint64_t emitted;       // tokens already in finished shards
    uint64_t synth_doc;     // synthetic documents made so far
    TokVec filler, pending;
    // stats
    uint64_t docs, text_bytes;
    double cpu_s;
} Prep;

// ----------------------------------------------------------------------------
// Workers: raw records -> tokens, each with its own cache

typedef struct { Prep *p; TokenCache *cache; unsigned char *scratch; size_t scratch_cap; } Worker;

static void encode_slot(Worker *w, Slot *s) {
    Prep *p = w->p;
    double t0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    s->tok.n = 0; s->docs = 0; s->text_bytes = 0;
    uint32_t eot = p->tok.doc_token;
    for (int r = 0; r < s->nrec; r++) {
        if (s->len[r] > w->scratch_cap) { w->scratch_cap = s->len[r]; free(w->scratch); w->scratch = (unsigned char *)malloc_check(w->scratch_cap); }
        const unsigned char *text;
        long long n = corpus_doc_text(&p->files, s->pos[r], s->raw + s->off[r], s->len[r], w->scratch, &text, p->skip_bad);
        if (n <= 0) { continue; }  // malformed (reported) or empty
        size_t cap = text_tokenizer_max_tokens(&p->tok, (size_t)n);
        tv_reserve(&s->tok, 1 + cap);
        s->tok.v[s->tok.n++] = eot;
        s->tok.n += text_tokenizer_encode(&p->tok, w->cache, text, (size_t)n, s->tok.v + s->tok.n, cap);
        s->docs++; s->text_bytes += (uint64_t)n;
    }
    s->cpu_s = clock_s(CLOCK_THREAD_CPUTIME_ID) - t0;
}

static void *worker_main(void *arg) {
    Worker *w = (Worker *)arg;
    Prep *p = w->p;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && (p->next_take == p->next_fill || p->slots[p->next_take % p->nslots].state != SLOT_FILLED)) { pthread_cond_wait(&p->cv, &p->mu); }
        if (p->quit) { break; }
        Slot *s = &p->slots[p->next_take++ % p->nslots];
        s->state = SLOT_BUSY;
        pthread_mutex_unlock(&p->mu);
        encode_slot(w, s);
        pthread_mutex_lock(&p->mu);
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

// Reads records into s until it holds CHUNK_BYTES; returns 0 if the input had no records left.
static int fill_slot(CorpusReader *r, Slot *s) {
    s->raw_len = 0; s->nrec = 0;
    const unsigned char *rec;
    size_t len;
    CorpusPos at;
    while (s->raw_len < CHUNK_BYTES && corpus_reader_next(r, &rec, &len, &at)) {
        if (s->raw_len + len > s->raw_cap) {
            s->raw_cap = 2 * (s->raw_len + len);
            s->raw = (unsigned char *)realloc(s->raw, s->raw_cap);
            if (!s->raw) { die("out of host memory: %zu bytes of input", s->raw_cap); }
        }
        if (s->nrec == s->rec_cap) {
            s->rec_cap = s->rec_cap ? 2 * s->rec_cap : 1024;
            s->off = (size_t *)realloc(s->off, s->rec_cap * sizeof(size_t));
            s->len = (size_t *)realloc(s->len, s->rec_cap * sizeof(size_t));
            s->pos = (CorpusPos *)realloc(s->pos, s->rec_cap * sizeof(CorpusPos));
            if (!s->off || !s->len || !s->pos) { die("out of host memory: %d records", s->rec_cap); }
        }
        memcpy(s->raw + s->raw_len, rec, len);
        s->off[s->nrec] = s->raw_len; s->len[s->nrec] = len; s->pos[s->nrec] = at;
        s->raw_len += len; s->nrec++;
    }
    s->end = r->pos;
    return s->nrec > 0;
}

// ----------------------------------------------------------------------------
// State file and shards

static void state_path(const Prep *p, char *out, size_t cap) { snprintf(out, cap, "%s/prepare.state", p->outdir); }

typedef struct {
    uint32_t magic, finished;
    uint64_t config_hash, emitted, synth_doc, nfiller, npending, offset, line;
    int64_t file;
} StateHeader;

// pending tokens before `start` are already in shards.
static void write_state(const Prep *p, size_t start, int finished) {
    char path[1100];
    state_path(p, path, sizeof(path));
    StateHeader h = {STATE_MAGIC, (uint32_t)finished, p->config_hash, p->emitted, p->synth_doc,
                     p->filler.n, p->pending.n - start, p->pos.offset, p->pos.line, p->pos.file};
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, &h, sizeof(h), 1);
    atomic_write(&af, p->filler.v, sizeof(uint32_t), p->filler.n);
    atomic_write(&af, p->pending.v + start, sizeof(uint32_t), p->pending.n - start);
    atomic_close(&af);
}

// Returns 1 if a finished run is recorded, else restores an unfinished one (or leaves the fresh start).
static int read_state(Prep *p) {
    char path[1100];
    state_path(p, path, sizeof(path));
    FILE *f = fopen(path, "rb");
    if (!f) { return 0; }
    long long size = file_size_check(f, path);
    StateHeader h;
    if (size < (long long)sizeof(h)) { die("'%s' is truncated (%lld bytes); delete it and the shards to start over", path, size); }
    fread_check(&h, sizeof(h), 1, f, path);
    if (h.magic != STATE_MAGIC) { die("'%s' is not a prepare state file (bad magic)", path); }
    if (h.config_hash != p->config_hash) {
        die("'%s' belongs to a run with other inputs, tokenizer or settings: use another -o, or delete the folder to start over", path);
    }
    uint64_t room = (uint64_t)(size - (long long)sizeof(h)) / 4;  // token counts checked against the file before any sum
    if (h.nfiller > room || h.npending > room - h.nfiller || size != (long long)(sizeof(h) + 4 * (h.nfiller + h.npending))) { die("'%s' has the wrong size %lld; delete it and the shards to start over", path, size); }
    p->emitted = h.emitted; p->synth_doc = h.synth_doc;
    p->pos = (CorpusPos){(int)h.file, h.offset, h.line};
    p->filler.n = p->pending.n = 0;
    tv_reserve(&p->filler, h.nfiller); tv_reserve(&p->pending, h.npending);
    fread_check(p->filler.v, sizeof(uint32_t), h.nfiller, f, path);
    fread_check(p->pending.v, sizeof(uint32_t), h.npending, f, path);
    p->filler.n = h.nfiller; p->pending.n = h.npending;
    fclose(f);
    return h.finished != 0;
}

// Writes the next shard from the first n pending tokens (starting at *start).
static void write_shard(Prep *p, size_t *start, uint64_t n) {
    char path[1100];
    int val = p->emitted < p->val_tokens;
    uint64_t index = val ? p->emitted / p->shard_tokens : (p->emitted - p->val_tokens) / p->shard_tokens;
    snprintf(path, sizeof(path), "%s/%s_%06llu.bin", p->outdir, val ? "val" : "train", (unsigned long long)index);
    uint32_t token_bytes = p->tok.vocab_size <= 65536 ? 2 : 4;
    shard_write(path, p->pending.v + *start, n, token_bytes, p->tok.vocab_size);
    p->emitted += n;
    *start += n;
    printf("wrote %s: %llu tokens\n", path, (unsigned long long)n);
    fflush(stdout);
}

// Tokens the shard being filled still needs: up to the next multiple of -s, or to the val/train edge.
static uint64_t shard_room(const Prep *p) {
    if (p->emitted < p->val_tokens) {
        uint64_t end = (p->emitted / p->shard_tokens + 1) * p->shard_tokens;
        return (end < p->val_tokens ? end : p->val_tokens) - p->emitted;
    }
    return p->shard_tokens - (p->emitted - p->val_tokens) % p->shard_tokens;
}

// Writes every complete shard in pending, recording the state after each. The environment variable
// PREPARE_TEST_KILL_AFTER=n makes the process die abruptly after its n-th shard (the resume test).
static void flush_shards(Prep *p) {
    static int written = 0;
    const char *kill_after = getenv("PREPARE_TEST_KILL_AFTER");
    size_t start = 0;
    while (p->pending.n - start >= shard_room(p)) {
        write_shard(p, &start, shard_room(p));
        write_state(p, start, 0);
        if (kill_after && ++written == atoi(kill_after)) { _exit(9); }
    }
    memmove(p->pending.v, p->pending.v + start, (p->pending.n - start) * sizeof(uint32_t));
    p->pending.n -= start;
}

// ----------------------------------------------------------------------------
// Synthetic long-context documents

static size_t encode_str(const Prep *p, const char *s, uint32_t *out, size_t cap) {
    size_t n = text_tokenizer_encode(&p->tok, NULL, (const unsigned char *)s, strlen(s), out, cap);
    if (n > cap) { die("synthetic documents: '%s' takes %zu tokens, more than the %zu allowed", s, n, cap); }
    return n;
}

// How a synthetic document states its facts and asks for them again (-Q). "secret" is terse; "magic" uses
// RULER's needle sentence and question (hyphenated made-up keys, 7-digit values), so that a small model
// trained on it can be scored by RULER's S-NIAH prompts, which it could not otherwise read at this scale.
// The formats take the key as argument 1 and the value as argument 2.
typedef struct {
    const char *name, *plant, *recall, *header;
    int hyphenated_key;
    uint32_t value_min, value_count;
} RecallStyle;
static const RecallStyle recall_styles[] = {
    {"secret", " The secret number of %1$s is %2$06u.", " The secret number of %1$s is %2$06u.", "\n\nRecall the secret numbers:", 0, 100000, 900000},
    {"magic", " One of the special magic numbers for %1$s is: %2$u.",
     " What is the special magic number for %1$s mentioned in the provided text? The special magic number for %1$s"
     " mentioned in the provided text is %2$u.", "\n", 1, 1000000, 9000000},
};
#define NUM_RECALL_STYLES (sizeof(recall_styles) / sizeof(recall_styles[0]))

// -P: a retrieval probe in LAMBADA's format ({"text": ...}, the answer is the last word): the document's first
// `prefix` tokens after its document token (filler, planted facts, header) decoded, then its first recall up
// to the value, without the closing period. Scored by the evaluation's -R (last-word accuracy).
static void write_probe(Prep *p, const uint32_t *doc, size_t prefix, const RecallStyle *style, const char *key, uint32_t value) {
    size_t n = text_tokenizer_decode(&p->tok, doc, prefix, NULL, 0);
    char recall[256];
    int len = snprintf(recall, sizeof(recall), style->recall, key, value);
    if (len > 0 && recall[len - 1] == '.') { recall[--len] = '\0'; }
    char *probe = (char *)malloc_check(n + (size_t)len + 1);
    text_tokenizer_decode(&p->tok, doc, prefix, (unsigned char *)probe, n + 1);
    memcpy(probe + n, recall, (size_t)len + 1);
    fputs("{\"text\": ", p->probes);
    json_write_string(p->probes, probe, n + (size_t)len);
    fputs("}\n", p->probes);
    free(probe);
}

// Appends as many complete synthetic documents as the filler allows to pending.
static void synth_emit(Prep *p) {
    static const char *syl[16] = {"ka", "zu", "mi", "to", "re", "no", "shi", "ba", "lo", "vi", "pe", "da", "qui", "xe", "fo", "gu"};
    enum { MAXF = 256, MAXT = 96 };
    const RecallStyle *style = &recall_styles[p->synth_style];
    uint32_t plants[MAXF][MAXT], nplant[MAXF], recalls[MAXF][MAXT], nrecall[MAXF], order[MAXF], header[MAXT];
    size_t used = 0;  // filler tokens taken by the documents made in this call
    for (;;) {
        Rng rng;
        rng_init(&rng, p->seed * 0x9E3779B97F4A7C15ULL + p->synth_doc);
        char names[MAXF][16], text[256];
        uint32_t values[MAXF];
        size_t fact_tokens = 0, recall_tokens = 0;
        for (uint32_t k = 0; k < p->synth_facts; k++) {
            int fresh;
            do {  // distinct names within a document
                if (style->hyphenated_key) {
                    snprintf(names[k], sizeof(names[k]), "%s%s-%s%s", syl[rng_below(&rng, 16)], syl[rng_below(&rng, 16)],
                             syl[rng_below(&rng, 16)], syl[rng_below(&rng, 16)]);
                } else {
                    snprintf(names[k], sizeof(names[k]), "%s%s%s", syl[rng_below(&rng, 16)], syl[rng_below(&rng, 16)], syl[rng_below(&rng, 16)]);
                    names[k][0] = (char)(names[k][0] - 'a' + 'A');
                }
                fresh = 1;
                for (uint32_t q = 0; q < k; q++) { if (strcmp(names[q], names[k]) == 0) { fresh = 0; } }
            } while (!fresh);
            values[k] = style->value_min + rng_below(&rng, style->value_count);
            snprintf(text, sizeof(text), style->plant, names[k], values[k]);
            nplant[k] = (uint32_t)encode_str(p, text, plants[k], MAXT);
            snprintf(text, sizeof(text), style->recall, names[k], values[k]);
            nrecall[k] = (uint32_t)encode_str(p, text, recalls[k], MAXT);
            fact_tokens += nplant[k] + nrecall[k];
            recall_tokens += nrecall[k];
            order[k] = k;
        }
        size_t nheader = encode_str(p, style->header, header, MAXT);
        if (1 + nheader + fact_tokens >= p->synth_len) {
            die("-L %u is too short for %u facts: they take %zu tokens", p->synth_len, p->synth_facts, 1 + nheader + fact_tokens);
        }
        size_t nfill = p->synth_len - 1 - nheader - fact_tokens;
        if (p->filler.n - used < nfill) { break; }
        uint32_t at[MAXF];  // filler offset before which fact k is planted, ascending
        for (uint32_t k = 0; k < p->synth_facts; k++) { at[k] = rng_below(&rng, (uint32_t)nfill + 1); }
        for (uint32_t k = 1; k < p->synth_facts; k++) {
            for (uint32_t q = k; q > 0 && at[q - 1] > at[q]; q--) { uint32_t t = at[q]; at[q] = at[q - 1]; at[q - 1] = t; }
        }
        rng_permute(&rng, order, p->synth_facts);
        uint32_t eot = p->tok.doc_token;
        const uint32_t *fill = p->filler.v + used;
        size_t before = p->pending.n, from = 0;
        tv_push(&p->pending, &eot, 1);
        for (uint32_t k = 0; k < p->synth_facts; k++) {
            tv_push(&p->pending, fill + from, at[k] - from);
            tv_push(&p->pending, plants[k], nplant[k]);
            from = at[k];
        }
        tv_push(&p->pending, fill + from, nfill - from);
        tv_push(&p->pending, header, nheader);
        for (uint32_t k = 0; k < p->synth_facts; k++) { tv_push(&p->pending, recalls[order[k]], nrecall[order[k]]); }
        if (p->pending.n - before != p->synth_len) { die("internal error: synthetic document has %zu tokens, not %u", p->pending.n - before, p->synth_len); }
        if (p->probes) { write_probe(p, p->pending.v + before + 1, p->synth_len - 1 - recall_tokens, style, names[order[0]], values[order[0]]); }
        used += nfill;
        p->synth_doc++;
    }
    memmove(p->filler.v, p->filler.v + used, (p->filler.n - used) * sizeof(uint32_t));
    p->filler.n -= used;
}

// Appends a finished chunk's tokens to the stream (through the synthetic builder with -L).
static void consume_slot(Prep *p, Slot *s) {
    if (p->synth_len) {
        uint32_t eot = p->tok.doc_token;
        tv_reserve(&p->filler, s->tok.n);
        for (size_t i = 0; i < s->tok.n; i++) { if (s->tok.v[i] != eot) { p->filler.v[p->filler.n++] = s->tok.v[i]; } }
        synth_emit(p);
    } else {
        tv_push(&p->pending, s->tok.v, s->tok.n);
    }
    p->pos = s->end;
    p->docs += s->docs; p->text_bytes += s->text_bytes; p->cpu_s += s->cpu_s;
    flush_shards(p);
}

// ----------------------------------------------------------------------------

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *b = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++) { h = (h ^ b[i]) * 0x100000001B3ULL; }
    return h;
}

// Hash of everything that decides the output: settings, tokenizer file, input paths and sizes.
static uint64_t config_hash(const Prep *p, const char *tok_path) {
    uint64_t h = 0xcbf29ce484222325ULL;
    uint64_t settings[6] = {p->shard_tokens, p->val_tokens, p->synth_len, p->synth_facts, p->seed, p->synth_style};
    h = fnv(h, settings, sizeof(settings));
    FILE *f = fopen_check(tok_path, "rb");
    unsigned char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0) { h = fnv(h, buf, got); }
    fclose(f);
    for (int k = 0; k < p->files.n; k++) {
        struct stat sb;
        if (stat(p->files.paths[k], &sb) != 0) { die("cannot stat '%s': %s", p->files.paths[k], strerror(errno)); }
        h = fnv(h, p->files.paths[k], strlen(p->files.paths[k]) + 1);
        h = fnv(h, &sb.st_size, sizeof(sb.st_size));
    }
    return h;
}

static void usage(void) {
    fprintf(stderr,
            "usage: prepare [flags] input...   (inputs: .jsonl/.txt files or folders of them)\n"
            "  -o <dir>   output folder for shards and prepare.state (default prepared)\n"
            "  -t <path>  tokenizer file; trained on the inputs first if it does not exist (default <dir>/tokenizer.bin)\n"
            "  -T <path>  an existing tokenizer instead: SentencePiece tokenizer.model, Hugging Face tokenizer.json\n"
            "             or moba.c tokenizer file, told apart by content (default: off, use -t)\n"
            "  -v <int>   vocabulary size when training the tokenizer (default 32000)\n"
            "  -n <MB>    tokenizer training sample in MB of text (default 100)\n"
            "  -s <int>   tokens per shard (default 100000000)\n"
            "  -V <int>   tokens that go to val shards, taken from the start of the stream (default 10000000)\n"
            "  -j <int>   tokenizer threads (default: all cores)\n"
            "  -k         skip malformed JSONL lines with a warning instead of stopping (default: stop)\n"
            "  -L <int>   synthetic long-context documents of this many tokens, 0 = off (default 0)\n"
            "  -F <int>   planted facts per synthetic document (default 8)\n"
            "  -S <int>   seed of the synthetic documents (default 1337)\n"
            "  -P <path>  with -L: also write one retrieval probe per synthetic document to this JSONL file, in\n"
            "             LAMBADA's format ({\"text\"}: the document up to its first recall, whose value is the last\n"
            "             word), for the evaluation's -R; needs a fresh output folder (default: none)\n"
            "  -Q <name>  how synthetic documents state and ask for facts: secret (\"The secret number of Name is\n"
            "             123456.\", recalled after \"Recall the secret numbers:\") or magic (RULER's needle and\n"
            "             question: \"One of the special magic numbers for kazu-mito is: 1234567.\" ... \"What is\n"
            "             the special magic number for kazu-mito mentioned in the provided text? The special magic\n"
            "             number for kazu-mito mentioned in the provided text is 1234567.\") (default secret)\n"
            "  -h         this help\n");
    exit(1);
}

static long long parse_int(const char *v, char flag, long long lo, long long hi) {
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || x < lo || x > hi) { die("-%c %s: expected an integer in [%lld, %lld]", flag, v, lo, hi); }
    return x;
}

int main(int argc, char **argv) {
    Prep p;
    memset(&p, 0, sizeof(p));
    p.outdir = "prepared"; p.shard_tokens = 100000000; p.val_tokens = 10000000; p.synth_facts = 8; p.seed = 1337;
    p.threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    const char *tok_path = NULL, *probe_path = NULL;
    int tok_must_exist = 0;
    long long vocab = 32000, sample_mb = 100;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        char f = argv[i][1];
        if (f == 'h' || f == '\0' || argv[i][2] != '\0') { usage(); }
        if (f == 'k') { p.skip_bad = 1; continue; }
        if (i + 1 >= argc) { die("flag -%c needs a value (see -h)", f); }
        const char *v = argv[++i];
        switch (f) {
        case 'o': p.outdir = v; break;
        case 't': tok_path = v; break;
        case 'T': tok_path = v; tok_must_exist = 1; break;
        case 'v': vocab = parse_int(v, f, 258, 0x7FFFFFFF); break;
        case 'n': sample_mb = parse_int(v, f, 1, 1LL << 40); break;
        case 's': p.shard_tokens = (uint64_t)parse_int(v, f, 1, 1LL << 40); break;
        case 'V': p.val_tokens = (uint64_t)parse_int(v, f, 0, 1LL << 50); break;
        case 'j': p.threads = (int)parse_int(v, f, 1, 1024); break;
        case 'L': p.synth_len = (uint32_t)parse_int(v, f, 0, 1 << 30); break;
        case 'F': p.synth_facts = (uint32_t)parse_int(v, f, 1, 256); break;
        case 'S': p.seed = (uint64_t)parse_int(v, f, 0, 1LL << 62); break;
        case 'P': probe_path = v; break;
        case 'Q':
            p.synth_style = NUM_RECALL_STYLES;
            for (uint32_t k = 0; k < NUM_RECALL_STYLES; k++) { if (strcmp(v, recall_styles[k].name) == 0) { p.synth_style = k; } }
            if (p.synth_style == NUM_RECALL_STYLES) { die("-Q %s: expected secret or magic", v); }
            break;
        default: die("unknown flag -%c (see -h)", f);
        }
    }
    if (i >= argc) { usage(); }
    if (probe_path && p.synth_len == 0) { die("-P %s: probes come from synthetic documents; give -L too", probe_path); }
    corpus_list(&p.files, argv + i, argc - i);
    if (mkdir(p.outdir, 0755) != 0 && errno != EEXIST) { die("cannot create output folder '%s': %s", p.outdir, strerror(errno)); }
    char tok_default[1100];
    snprintf(tok_default, sizeof(tok_default), "%s/tokenizer.bin", p.outdir);
    if (!tok_path) { tok_path = tok_default; }
    if (tok_must_exist && access(tok_path, F_OK) != 0) { die("-T %s: no such tokenizer file", tok_path); }
    if (access(tok_path, F_OK) != 0) {
        double t0 = now_s();
        Tokenizer trained;
        BpeCounter c;
        bpe_counter_init(&c);
        uint64_t used = bpe_count_corpus(&c, &p.files, (uint64_t)sample_mb * 1000000, p.skip_bad);
        bpe_train_tokenizer(&trained, &c, (uint32_t)vocab, 0);
        bpe_counter_free(&c);
        tokenizer_save(&trained, tok_path);
        printf("trained %s: vocab %u on %.1f MB in %.1f s\n", tok_path, trained.vocab_size, used / 1e6, now_s() - t0);
        tokenizer_free(&trained);
    }
    text_tokenizer_load(&p.tok, tok_path);
    static const char *formats[3] = {"moba.c BPE", "SentencePiece", "tokenizer.json"};
    printf("tokenizer %s: %s, vocab %u, document token %u\n", tok_path, formats[p.tok.format], p.tok.vocab_size, p.tok.doc_token);
    p.config_hash = config_hash(&p, tok_path);
    p.pos = (CorpusPos){0, 0, 1};
    if (read_state(&p)) { printf("%s: already complete (prepare.state says finished)\n", p.outdir); return 0; }
    if (probe_path) {
        if (p.emitted || p.pos.file || p.pos.offset) { die("-P %s: %s holds a run in progress; start afresh so the probes match the documents", probe_path, p.outdir); }
        p.probes = fopen_check(probe_path, "w");
    }
    if (p.emitted || p.pos.file || p.pos.offset) {
        printf("resuming: %llu tokens already in shards, input at %s:%llu\n", (unsigned long long)p.emitted,
               p.pos.file < p.files.n ? p.files.paths[p.pos.file] : "(end)", (unsigned long long)p.pos.line);
    }

    double t0 = now_s();
    p.nslots = 2 * p.threads + 2;
    p.slots = (Slot *)calloc_check((size_t)p.nslots, sizeof(Slot));
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    pthread_t *th = (pthread_t *)malloc_check((size_t)p.threads * sizeof(pthread_t));
    Worker *workers = (Worker *)calloc_check((size_t)p.threads, sizeof(Worker));
    for (int k = 0; k < p.threads; k++) {
        workers[k].p = &p;
        workers[k].cache = token_cache_new();
        if (pthread_create(&th[k], NULL, worker_main, &workers[k]) != 0) { die("cannot start thread %d", k); }
    }
    CorpusReader reader;
    corpus_reader_open(&reader, &p.files, p.pos);
    int input_left = 1;
    pthread_mutex_lock(&p.mu);
    for (;;) {
        while (input_left && p.next_fill - p.next_write < (uint64_t)p.nslots) {
            Slot *s = &p.slots[p.next_fill % p.nslots];
            pthread_mutex_unlock(&p.mu);  // the slot is EMPTY: only this thread touches it
            input_left = fill_slot(&reader, s);
            pthread_mutex_lock(&p.mu);
            if (!input_left) { break; }
            s->state = SLOT_FILLED;
            p.next_fill++;
            pthread_cond_broadcast(&p.cv);
        }
        if (p.next_write == p.next_fill) { break; }
        Slot *s = &p.slots[p.next_write % p.nslots];
        while (s->state != SLOT_DONE) { pthread_cond_wait(&p.cv, &p.mu); }
        pthread_mutex_unlock(&p.mu);
        consume_slot(&p, s);
        pthread_mutex_lock(&p.mu);
        s->state = SLOT_EMPTY;
        p.next_write++;
    }
    p.quit = 1;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    for (int k = 0; k < p.threads; k++) { pthread_join(th[k], NULL); free(workers[k].cache); free(workers[k].scratch); }
    corpus_reader_close(&reader);
    p.pos = (CorpusPos){p.files.n, 0, 1};
    if (p.pending.n > 0) { size_t start = 0; write_shard(&p, &start, p.pending.n); p.pending.n = 0; }
    if (p.synth_len && p.filler.n) { printf("%zu corpus tokens left over, too few for another synthetic document\n", p.filler.n); }
    p.filler.n = 0;
    write_state(&p, 0, 1);
    if (p.probes) {
        if (fclose(p.probes) != 0) { die("-P %s: write failed: %s", probe_path, strerror(errno)); }
        printf("wrote %llu retrieval probes to %s\n", (unsigned long long)p.synth_doc, probe_path);
    }
    double dt = now_s() - t0;
    printf("done: %llu documents, %.1f MB of text, %llu tokens in all shards; this run %.2f s, %.1f MB/s with %d threads "
           "(encode: %.1f MB per CPU-second)\n", (unsigned long long)p.docs, p.text_bytes / 1e6, (unsigned long long)p.emitted,
           dt, p.text_bytes / 1e6 / dt, p.threads, p.text_bytes / 1e6 / p.cpu_s);
    if (p.emitted <= p.val_tokens) {
        fprintf(stderr, "warning: every token went to val shards (-V %llu); no train shard was written. Start over with a smaller -V: "
                "delete %s (or use another -o) and rerun\n", (unsigned long long)p.val_tokens, p.outdir);
    }
    for (int k = 0; k < p.nslots; k++) { free(p.slots[k].raw); free(p.slots[k].off); free(p.slots[k].len); free(p.slots[k].pos); free(p.slots[k].tok.v); }
    free(p.slots); free(th); free(workers); free(p.filler.v); free(p.pending.v);
    text_tokenizer_free(&p.tok);
    corpus_files_free(&p.files);
    return 0;
}
