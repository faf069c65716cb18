/*
 RULER (NVIDIA/RULER, scripts/data/synthetic) sample generators in C, seeded and reproducible, sized to
 a token budget measured with the moba.c tokenizer: prompt tokens + the task's generation budget <=
 length, with the haystack size found by binary search as RULER's generators do.
 Tasks (RULER's synthetic.yaml names):
   niah_single_1/2/3   one needle; haystack noise / essay / essay; value number / number / uuid
   niah_multikey_1/2/3 4 keys, one asked; haystack essay / needles / needles (uuid keys and values for 3)
   niah_multivalue     one key holding 4 values; niah_multiquery: 4 keys asked at once
   vt                  variable tracking: a chain of 4 hops "VAR X = VAR Y" in a noise haystack
   cwe                 common words: 10 words x 30 among uncommon words x 3, numbered list
   fwe                 frequent words: Zipf(2) draws of coded words, find the top 3
   qa_1 / qa_2         questions with their gold paragraphs among distractors, from a SQuAD v2 /
                       HotpotQA JSON file the user supplies
 Prompts end with RULER's answer prefix, so the model continues it. Scoring (eval_metrics.h): all-match
 (fraction of expected strings in the output) for every task but QA, which is part-match.
 Differences from RULER, by design: keys are adjective-noun pairs from a built-in list of 48 x 48 words
 (RULER uses the wonderwords lists); essay sentences are split at '.', '?' or '!' followed by a space
 (RULER uses nltk); cwe has no in-context example (RULER prepends one); the random streams differ.
 Essay haystacks come from any text file (RULER uses Paul Graham's essays).
*/
#ifndef LLMC_RULER_H
#define LLMC_RULER_H

#include <stdint.h>
#include "eval_metrics.h"
#include "json_value.h"
#include "rng.h"
#include "text_tokenizer.h"
#include "utils.h"

// ---------------------------------------------------------------------------------------------------
// A growable string

typedef struct { char *s; size_t n, cap; } StrBuf;

static inline void sb_put(StrBuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = (char *)realloc(b->s, b->cap);
        if (!b->s) { die("out of host memory building a prompt"); }
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}
static inline void sb_puts(StrBuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static inline void sb_printf(StrBuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(tmp)) { die("sb_printf: formatted piece longer than %zu bytes", sizeof(tmp)); }
    sb_put(b, tmp, (size_t)n);
}

// ---------------------------------------------------------------------------------------------------
// Tasks

enum { RT_NIAH, RT_VT, RT_CWE, RT_FWE, RT_QA };
enum { HAY_NOISE, HAY_ESSAY, HAY_NEEDLE };
enum { NEEDLE_WORDS, NEEDLE_NUMBERS, NEEDLE_UUIDS };

typedef struct {
    const char *name;
    int family, haystack, key_type, value_type, num_k, num_v, num_q;
    int max_gen;     // RULER's tokens_to_generate
    int part_match;  // QA: any answer counts
} RulerTask;

static const RulerTask ruler_tasks[] = {
    {"niah_single_1", RT_NIAH, HAY_NOISE, NEEDLE_WORDS, NEEDLE_NUMBERS, 1, 1, 1, 128, 0},
    {"niah_single_2", RT_NIAH, HAY_ESSAY, NEEDLE_WORDS, NEEDLE_NUMBERS, 1, 1, 1, 128, 0},
    {"niah_single_3", RT_NIAH, HAY_ESSAY, NEEDLE_WORDS, NEEDLE_UUIDS, 1, 1, 1, 128, 0},
    {"niah_multikey_1", RT_NIAH, HAY_ESSAY, NEEDLE_WORDS, NEEDLE_NUMBERS, 4, 1, 1, 128, 0},
    {"niah_multikey_2", RT_NIAH, HAY_NEEDLE, NEEDLE_WORDS, NEEDLE_NUMBERS, 1, 1, 1, 128, 0},
    {"niah_multikey_3", RT_NIAH, HAY_NEEDLE, NEEDLE_UUIDS, NEEDLE_UUIDS, 1, 1, 1, 128, 0},
    {"niah_multivalue", RT_NIAH, HAY_ESSAY, NEEDLE_WORDS, NEEDLE_NUMBERS, 1, 4, 1, 128, 0},
    {"niah_multiquery", RT_NIAH, HAY_ESSAY, NEEDLE_WORDS, NEEDLE_NUMBERS, 4, 1, 4, 128, 0},
    {"vt", RT_VT, HAY_NOISE, 0, 0, 1, 4, 1, 30, 0},
    {"cwe", RT_CWE, 0, 0, 0, 10, 30, 3, 120, 0},
    {"fwe", RT_FWE, 0, 0, 0, 3, 0, 0, 50, 0},
    {"qa_1", RT_QA, 0, 0, 0, 0, 0, 0, 32, 1},
    {"qa_2", RT_QA, 0, 0, 0, 0, 0, 0, 32, 1},
};
#define NUM_RULER_TASKS ((int)(sizeof(ruler_tasks) / sizeof(ruler_tasks[0])))

static inline const RulerTask *ruler_task(const char *name) {
    for (int i = 0; i < NUM_RULER_TASKS; i++) { if (strcmp(ruler_tasks[i].name, name) == 0) { return &ruler_tasks[i]; } }
    die("unknown RULER task '%s' (niah_single_1..3, niah_multikey_1..3, niah_multivalue, niah_multiquery, vt, cwe, fwe, qa_1, qa_2)", name);
    return NULL;
}

static const char *const ruler_adjs[48] = {
    "able", "acid", "angry", "bitter", "brave", "bright", "broad", "calm", "cheap", "clean", "clever", "cold",
    "cool", "curly", "damp", "dark", "deep", "dry", "eager", "early", "empty", "faint", "fancy", "fast",
    "fierce", "flat", "fresh", "gentle", "giant", "glad", "grumpy", "happy", "heavy", "hollow", "huge", "icy",
    "jolly", "kind", "lazy", "loud", "lucky", "mighty", "nervous", "noisy", "odd", "plain", "proud", "quiet"};
static const char *const ruler_nouns[48] = {
    "apple", "arch", "badge", "basket", "beach", "bell", "bird", "blade", "boat", "bread", "brick", "bridge",
    "cabin", "camel", "candle", "canyon", "castle", "chair", "cloud", "coat", "comet", "crown", "desert", "drum",
    "eagle", "engine", "falcon", "feather", "forest", "garden", "ghost", "glacier", "hammer", "harbor", "island", "jacket",
    "kettle", "lantern", "meadow", "mirror", "needle", "ocean", "orchid", "pepper", "pillow", "planet", "rabbit", "river"};

static const char *const ruler_noise = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

// The source material shared by all samples of a run.
typedef struct {
    const TextTokenizer *tok;
    char **essay_words; int num_essay_words; char *essay_buf;   // essay haystack (whitespace-split)
    char **qa_questions, ***qa_answers, **qa_docs;               // QA file
    int *qa_num_answers, **qa_gold, *qa_num_gold, num_qa, num_docs;
} RulerSource;

typedef struct {
    char *prompt;            // ends with the answer prefix
    char **answers; int num_answers;
    int prompt_tokens, max_gen;
} RulerSample;

static inline void ruler_sample_free(RulerSample *s) { free(s->prompt); free_strings(s->answers, s->num_answers); memset(s, 0, sizeof(*s)); }

static inline char *str_dup(const char *s) { char *d = (char *)malloc_check(strlen(s) + 1); strcpy(d, s); return d; }

static inline void ruler_random(int type, Rng *r, char *out, size_t cap) {
    if (type == NEEDLE_NUMBERS) { snprintf(out, cap, "%u", 1000000 + rng_below(r, 9000000)); }
    else if (type == NEEDLE_WORDS) { snprintf(out, cap, "%s-%s", ruler_adjs[rng_below(r, 48)], ruler_nouns[rng_below(r, 48)]); }
    else {  // uuid version 4 from 128 random bits
        uint32_t w[4] = {rng_u32(r), rng_u32(r), rng_u32(r), rng_u32(r)};
        w[1] = (w[1] & 0xFFFF0FFFu) | 0x4000u;
        w[2] = (w[2] & 0x3FFFFFFFu) | 0x80000000u;
        snprintf(out, cap, "%08x-%04x-%04x-%04x-%04x%08x", w[0], w[1] >> 16, w[1] & 0xFFFF, w[2] >> 16, w[2] & 0xFFFF, w[3]);
    }
}

static inline const char *needle_type_name(int type, int plural) {
    static const char *const names[3][2] = {{"word", "words"}, {"number", "numbers"}, {"uuid", "uuids"}};
    return names[type][plural];
}

// RULER's numpy DEPTHS: round(linspace(0, 100, 40)).
static inline int ruler_depth(int i) { return (int)nearbyint(100.0 * i / 39.0); }

// n draws from [0, range), sorted ascending; distinct ones when `distinct` (then range >= n).
static inline void ruler_sample_sorted(Rng *r, int *out, int n, int range, int distinct) {
    if (distinct && range < n) { die("ruler: cannot draw %d distinct values below %d", n, range); }
    for (int i = 0; i < n; i++) {
        int v, dup;
        do { v = (int)rng_below(r, (uint32_t)range); dup = 0; for (int j = 0; j < i && distinct; j++) { dup |= out[j] == v; } } while (dup);
        out[i] = v;
    }
    for (int i = 1; i < n; i++) { int v = out[i], j = i - 1; while (j >= 0 && out[j] > v) { out[j + 1] = out[j]; j--; } out[j + 1] = v; }
}

// The essay haystack: the first n words (the text repeated as needed) with needles at sentence
// boundaries at random depths.
static inline void essay_context(StrBuf *b, const RulerSource *src, int n, char needles[][320], int nn, Rng *r) {
    if (src->num_essay_words == 0) { die("RULER essay tasks need a haystack text file (-haystack FILE)"); }
    int *sent_end = (int *)malloc_check((size_t)(n + 1) * sizeof(int)), ns = 0;  // word index after each sentence
    for (int i = 0; i < n; i++) {
        const char *w = src->essay_words[i % src->num_essay_words];
        char last = w[strlen(w) - 1];
        if (last == '.' || last == '?' || last == '!' || i == n - 1) { sent_end[ns++] = i + 1; }
    }
    int depths[40], pos[64];
    ruler_sample_sorted(r, depths, nn, 40, 1);
    for (int k = 0; k < nn; k++) { pos[k] = (int)(ns * (ruler_depth(depths[k]) / 100.0)); }  // in sentences
    int w = 0, k = 0;
    for (int s = 0; s <= ns; s++) {
        while (k < nn && pos[k] == s) { if (b->n) { sb_puts(b, " "); } sb_puts(b, needles[k++]); }
        if (s == ns) { break; }
        for (; w < sent_end[s]; w++) { if (b->n) { sb_puts(b, " "); } sb_puts(b, src->essay_words[w % src->num_essay_words]); }
    }
    free(sent_end);
}

// Sentences (noise or random needles) joined by '\n', with the real needles at random sentence indexes.
static inline void line_context(StrBuf *b, const RulerTask *t, int n, char needles[][320], int nn, Rng *r) {
    int idx[64];
    ruler_sample_sorted(r, idx, nn, n + 1, 0);  // several needles may share a gap
    int k = 0;
    for (int s = 0; s <= n; s++) {
        while (k < nn && idx[k] == s) { sb_puts(b, needles[k++]); sb_puts(b, "\n"); }
        if (s == n) { break; }
        if (t->haystack == HAY_NOISE) { sb_puts(b, ruler_noise); }
        else {
            char key[64], val[64];
            ruler_random(t->key_type, r, key, sizeof(key));
            ruler_random(t->value_type, r, val, sizeof(val));
            sb_printf(b, "One of the special magic %s for %s is: %s.", needle_type_name(t->value_type, 1), key, val);
        }
        sb_puts(b, "\n");
    }
    if (b->n && b->s[b->n - 1] == '\n') { b->s[--b->n] = '\0'; }
}

static inline void set_answers(RulerSample *s, char vals[][64], int n) {
    s->num_answers = n;
    s->answers = (char **)malloc_check((size_t)n * sizeof(char *));
    for (int i = 0; i < n; i++) { s->answers[i] = str_dup(vals[i]); }
}

static inline void niah_build(StrBuf *b, RulerSample *s, const RulerTask *t, const RulerSource *src, int n, Rng *r) {
    char keys[4][64], vals[16][64], needles[16][320], answers[16][64];
    int nk = t->num_k, nv = t->num_v, nn = 0;
    const char *vt = needle_type_name(t->value_type, 1);
    for (int k = 0; k < nk; k++) {
        ruler_random(t->key_type, r, keys[k], sizeof(keys[k]));
        for (int v = 0; v < nv; v++) {
            ruler_random(t->value_type, r, vals[k * nv + v], sizeof(vals[0]));
            snprintf(needles[nn++], sizeof(needles[0]), "One of the special magic %s for %s is: %s.", vt, keys[k], vals[k * nv + v]);
        }
    }
    for (int i = nn; i > 1; i--) {  // shuffle the needles
        int j = (int)rng_below(r, (uint32_t)i);
        char tmp[320]; memcpy(tmp, needles[i - 1], 320); memcpy(needles[i - 1], needles[j], 320); memcpy(needles[j], tmp, 320);
    }
    StrBuf ctx = {0};
    sb_puts(&ctx, "");
    if (t->haystack == HAY_ESSAY) { essay_context(&ctx, src, n, needles, nn, r); }
    else { line_context(&ctx, t, n, needles, nn, r); }
    int asked[4], na = 0;
    ruler_sample_sorted(r, asked, t->num_q, nk, 1);
    char query[300] = "";
    for (int q = 0; q < t->num_q; q++) {
        const char *sep = q == 0 ? "" : q == t->num_q - 1 ? ", and " : ", ";  // RULER's join
        strcat(query, sep); strcat(query, keys[asked[q]]);
        for (int v = 0; v < nv; v++) { strcpy(answers[na++], vals[asked[q] * nv + v]); }
    }
    if (t->num_q * nv == 1) {
        const char *v1 = needle_type_name(t->value_type, 0);
        sb_printf(b, "A special magic %s is hidden within the following text. Make sure to memorize it. I will quiz you about the %s afterwards.\n", v1, v1);
        sb_put(b, ctx.s, ctx.n);
        sb_printf(b, "\nWhat is the special magic %s for %s mentioned in the provided text? The special magic %s for %s mentioned in the provided text is", v1, query, v1, query);
    } else {
        sb_printf(b, "Some special magic %s are hidden within the following text. Make sure to memorize it. I will quiz you about the %s afterwards.\n", vt, vt);
        sb_put(b, ctx.s, ctx.n);
        sb_printf(b, "\nWhat are all the special magic %s for %s mentioned in the provided text? The special magic %s for %s mentioned in the provided text are", vt, query, vt, query);
    }
    free(ctx.s);
    set_answers(s, answers, na);
}

static inline void vt_build(StrBuf *b, RulerSample *s, const RulerTask *t, int n, Rng *r) {
    int hops = t->num_v, nv = hops + 1;
    char vars[8][64], needles[8][320];
    for (int i = 0; i < nv; i++) {
        for (int c = 0; c < 5; c++) { vars[i][c] = (char)('A' + rng_below(r, 26)); }
        vars[i][5] = '\0';
    }
    unsigned value = 10000 + rng_below(r, 90000);
    snprintf(needles[0], sizeof(needles[0]), "VAR %.8s = %u.", vars[0], value);
    for (int i = 1; i < nv; i++) { snprintf(needles[i], sizeof(needles[0]), "VAR %.8s = VAR %.8s.", vars[i], vars[i - 1]); }
    StrBuf ctx = {0};
    sb_puts(&ctx, "");
    line_context(&ctx, t, n, needles, nv, r);  // sorted positions keep the chain in order
    sb_puts(b, "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n");
    sb_put(b, ctx.s, ctx.n);
    sb_printf(b, "\nQuestion: Find all variables that are assigned the value %u in the text above. Answer: According to the chain(s) of variable assignment in the text above, %d variables are assigned the value %u, they are: ", value, nv, value);
    free(ctx.s);
    set_answers(s, vars, nv);
}

// Distinct random 5-letter "words": word i spells (a*i + c) mod 26^5 in base 26, a bijection when a is
// coprime with 26 (odd, not a multiple of 13), so no duplicate check is needed.
typedef struct { uint64_t a, c; } WordMap;
static inline WordMap word_map(Rng *r) {
    WordMap m = {2 * rng_below(r, 5000000) + 1, rng_below(r, 11881376)};
    if (m.a % 13 == 0) { m.a += 2; }
    return m;
}
static inline void word_at(WordMap m, int i, char *out) {
    uint64_t x = (m.a * (uint64_t)i + m.c) % 11881376u;
    for (int k = 0; k < 5; k++) { out[k] = (char)('a' + x % 26); x /= 26; }
    out[5] = '\0';
}

static inline void cwe_build(StrBuf *b, RulerSample *s, const RulerTask *t, int n, Rng *r) {
    int ncw = t->num_k, fcw = t->num_v, fucw = t->num_q, total = ncw * fcw + n * fucw;
    char (*words)[8] = (char (*)[8])malloc_check((size_t)(ncw + n) * 8);
    WordMap wm = word_map(r);
    for (int i = 0; i < ncw + n; i++) { word_at(wm, i, words[i]); }
    int *list = (int *)malloc_check((size_t)total * sizeof(int)), m = 0;
    for (int i = 0; i < ncw; i++) { for (int k = 0; k < fcw; k++) { list[m++] = i; } }
    for (int i = 0; i < n; i++) { for (int k = 0; k < fucw; k++) { list[m++] = ncw + i; } }
    for (int i = total; i > 1; i--) { int j = (int)rng_below(r, (uint32_t)i), x = list[i - 1]; list[i - 1] = list[j]; list[j] = x; }
    sb_puts(b, "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n");
    for (int i = 0; i < total; i++) { sb_printf(b, "%s%d. %s", i ? " " : "", i + 1, words[list[i]]); }
    sb_printf(b, "\nQuestion: What are the %d most common words in the above list? Answer: The top %d words that appear most often in the list are:", ncw, ncw);
    s->num_answers = ncw;
    s->answers = (char **)malloc_check((size_t)ncw * sizeof(char *));
    for (int i = 0; i < ncw; i++) { s->answers[i] = str_dup(words[i]); }
    free(words); free(list);
}

static inline void fwe_build(StrBuf *b, RulerSample *s, const RulerTask *t, int n, Rng *r) {
    enum { VOCAB = 2000 };
    char (*vocab)[8] = (char (*)[8])malloc_check((size_t)VOCAB * 8);
    WordMap wm = word_map(r);
    for (int i = 0; i < VOCAB; i++) { word_at(wm, i, vocab[i]); }
    // Zipf(2) ranks by inversion of the exact CDF over 1..VOCAB; beyond it the draw is a '....' filler
    double cdf[VOCAB], z = 0;
    for (int k = 1; k <= VOCAB; k++) { z += 1.0 / ((double)k * k); cdf[k - 1] = z; }
    const double zeta2 = M_PI * M_PI / 6;
    sb_puts(b, "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. ");
    for (int i = 0; i < n; i++) {
        double u = rng_uniform(r) * zeta2;
        int lo = 0, hi = VOCAB;
        while (lo < hi) { int mid = (lo + hi) / 2; if (u < cdf[mid]) { hi = mid; } else { lo = mid + 1; } }
        sb_puts(b, i ? " " : "");
        sb_puts(b, lo < VOCAB ? vocab[lo] : "....");
    }
    sb_puts(b, "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text? Answer: According to the coded text above, the three most frequently appeared words are:");
    s->num_answers = t->num_k;
    s->answers = (char **)malloc_check((size_t)t->num_k * sizeof(char *));
    for (int i = 0; i < t->num_k; i++) { s->answers[i] = str_dup(vocab[i]); }
    free(vocab);
}

static inline void qa_build(StrBuf *b, RulerSample *s, const RulerSource *src, int n, int qi, Rng *r) {
    if (src->num_qa == 0) { die("RULER QA tasks need a SQuAD or HotpotQA JSON file (-qa FILE)"); }
    int ng = src->qa_num_gold[qi], total = ng + n, *docs = (int *)malloc_check((size_t)total * sizeof(int));
    for (int i = 0; i < ng; i++) { docs[i] = src->qa_gold[qi][i]; }
    for (int i = ng; i < total; i++) {  // distractors: other documents, cycling when the file is small
        int d = (int)rng_below(r, (uint32_t)src->num_docs), gold = 0;
        for (int k = 0; k < ng; k++) { gold |= d == src->qa_gold[qi][k]; }
        docs[i] = gold ? (d + 1) % src->num_docs : d;
    }
    for (int i = total; i > 1; i--) { int j = (int)rng_below(r, (uint32_t)i), x = docs[i - 1]; docs[i - 1] = docs[j]; docs[j] = x; }
    sb_puts(b, "Answer the question based on the given documents. Only give me the answer and do not output any other words.\n\nThe following are given documents.\n\n");
    for (int i = 0; i < total; i++) { sb_printf(b, "%sDocument %d:\n", i ? "\n\n" : "", i + 1); sb_puts(b, src->qa_docs[docs[i]]); }
    sb_puts(b, "\n\nAnswer the question based on the given documents. Only give me the answer and do not output any other words.\n\nQuestion: ");
    sb_puts(b, src->qa_questions[qi]);
    sb_puts(b, " Answer:");
    s->num_answers = src->qa_num_answers[qi];
    s->answers = (char **)malloc_check((size_t)(s->num_answers ? s->num_answers : 1) * sizeof(char *));
    for (int i = 0; i < s->num_answers; i++) { s->answers[i] = str_dup(src->qa_answers[qi][i]); }
    free(docs);
}

// One sample of task t with haystack size n (sentences, words, list entries or documents), from the
// sample's own seed, so the binary search over n rebuilds the same needles every time.
static inline void ruler_build(RulerSample *s, const RulerTask *t, const RulerSource *src, int n, uint64_t seed) {
    Rng r;
    rng_init(&r, seed);
    StrBuf b = {0};
    sb_puts(&b, "");
    memset(s, 0, sizeof(*s));
    switch (t->family) {
    case RT_NIAH: niah_build(&b, s, t, src, n, &r); break;
    case RT_VT: vt_build(&b, s, t, n, &r); break;
    case RT_CWE: cwe_build(&b, s, t, n, &r); break;
    case RT_FWE: fwe_build(&b, s, t, n, &r); break;
    default: qa_build(&b, s, src, n, (int)rng_below(&r, (uint32_t)(src->num_qa ? src->num_qa : 1)), &r); break;
    }
    s->prompt = b.s;
    s->max_gen = t->max_gen;
    size_t len = b.n, cap = text_tokenizer_max_tokens(src->tok, len);
    uint32_t *ids = (uint32_t *)malloc_check((cap ? cap : 1) * sizeof(uint32_t));
    s->prompt_tokens = (int)text_tokenizer_encode(src->tok, NULL, (const unsigned char *)b.s, len, ids, cap);
    free(ids);
}

// The sample `index` of task t whose prompt + max_gen fits in `length` tokens, with the largest
// haystack that fits (binary search). cwe lowers the common words' frequency (30, then down to 4) when
// even no uncommon words do not fit. Dies if even the smallest prompt does not fit.
static inline RulerSample ruler_generate(const RulerTask *task, const RulerSource *src, int length, int index, uint64_t seed) {
    uint64_t s_seed = seed ^ ((uint64_t)length << 20) ^ ((uint64_t)index * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(task - ruler_tasks) << 48);
    RulerTask tt = *task;
    const RulerTask *t = &tt;
    int lo = t->family == RT_NIAH || t->family == RT_VT ? 1 : t->family == RT_FWE ? 8 : 0, hi = lo, best = -1;
    RulerSample s;
    for (;;) {  // grow until too long, then bisect
        ruler_build(&s, t, src, hi, s_seed);
        int fits = s.prompt_tokens + t->max_gen <= length;
        ruler_sample_free(&s);
        if (!fits && best < 0 && t->family == RT_CWE && tt.num_v > tt.num_q + 1) { tt.num_v--; continue; }
        if (!fits) { break; }
        best = hi; lo = hi; hi = hi ? hi * 2 : 1;
    }
    if (best < 0) { die("RULER %s: a %d-token budget is too small even for the smallest prompt", t->name, length); }
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        ruler_build(&s, t, src, mid, s_seed);
        int fits = s.prompt_tokens + t->max_gen <= length;
        ruler_sample_free(&s);
        if (fits) { lo = best = mid; } else { hi = mid; }
    }
    ruler_build(&s, t, src, best, s_seed);
    return s;
}

// Scores one output: all-match (or part-match for QA) of the expected strings.
static inline double ruler_score(const RulerTask *t, const char *output, const RulerSample *s) {
    return t->part_match ? ruler_part_match(output, (const char *const *)s->answers, s->num_answers)
                         : ruler_all_match(output, (const char *const *)s->answers, s->num_answers);
}

// ---------------------------------------------------------------------------------------------------
// Sources

static inline void ruler_load_essay(RulerSource *src, const char *path) {
    FILE *f = fopen_check(path, "rb");
    long long size = file_size_check(f, path);
    src->essay_buf = (char *)malloc_check((size_t)size + 1);
    fread_check(src->essay_buf, 1, (size_t)size, f, path);
    fclose(f);
    src->essay_buf[size] = '\0';
    int cap = 1024;
    src->essay_words = (char **)malloc_check((size_t)cap * sizeof(char *));
    for (char *p = src->essay_buf; *p;) {
        while (*p && metric_is_space((unsigned char)*p)) { *p++ = '\0'; }
        if (!*p) { break; }
        if (src->num_essay_words == cap) { cap *= 2; src->essay_words = (char **)realloc(src->essay_words, (size_t)cap * sizeof(char *)); if (!src->essay_words) { die("out of host memory"); } }
        src->essay_words[src->num_essay_words++] = p;
        while (*p && !metric_is_space((unsigned char)*p)) { p++; }
    }
    if (src->num_essay_words == 0) { die("haystack file '%s' has no words", path); }
}

static inline int qa_add_doc(RulerSource *src, const char *text, int *cap) {
    if (src->num_docs == *cap) { *cap = *cap ? 2 * *cap : 256; src->qa_docs = (char **)realloc(src->qa_docs, (size_t)*cap * sizeof(char *)); if (!src->qa_docs) { die("out of host memory"); } }
    src->qa_docs[src->num_docs] = str_dup(text);
    return src->num_docs++;
}

static inline void qa_add_question(RulerSource *src, const char *q, char **answers, int na, const int *gold, int ng, int *cap) {
    if (src->num_qa == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        src->qa_questions = (char **)realloc(src->qa_questions, (size_t)*cap * sizeof(char *));
        src->qa_answers = (char ***)realloc(src->qa_answers, (size_t)*cap * sizeof(char **));
        src->qa_num_answers = (int *)realloc(src->qa_num_answers, (size_t)*cap * sizeof(int));
        src->qa_gold = (int **)realloc(src->qa_gold, (size_t)*cap * sizeof(int *));
        src->qa_num_gold = (int *)realloc(src->qa_num_gold, (size_t)*cap * sizeof(int));
        if (!src->qa_questions || !src->qa_answers || !src->qa_num_answers || !src->qa_gold || !src->qa_num_gold) { die("out of host memory"); }
    }
    int i = src->num_qa++;
    src->qa_questions[i] = str_dup(q);
    src->qa_answers[i] = answers; src->qa_num_answers[i] = na;
    src->qa_gold[i] = (int *)malloc_check((size_t)(ng ? ng : 1) * sizeof(int));
    memcpy(src->qa_gold[i], gold, (size_t)ng * sizeof(int));
    src->qa_num_gold[i] = ng;
}

// SQuAD v2 ({"data": [{"paragraphs": [{"context", "qas": [{"question", "answers": [{"text"}],
// "is_impossible"}]}]}]}) or HotpotQA ([{"question", "answer", "context": [[title, [sentences]]],
// "supporting_facts": [[title, i]]}]). Questions without an answer are skipped.
static inline void ruler_load_qa(RulerSource *src, const char *path) {
    JValue root;
    jv_parse_file(&root, path);
    int dcap = 0, qcap = 0;
    const JValue *data = jv_get(&root, "data");
    if (data && data->kind == JV_ARR) {  // SQuAD
        for (int a = 0; a < data->n; a++) {
            const JValue *paras = jv_get(&data->items[a], "paragraphs");
            for (int pi = 0; paras && pi < paras->n; pi++) {
                const JValue *para = &paras->items[pi], *ctx = jv_get(para, "context"), *qas = jv_get(para, "qas");
                if (!ctx || ctx->kind != JV_STR) { die("%s: SQuAD paragraph without a string 'context'", path); }
                int doc = qa_add_doc(src, ctx->str, &dcap);
                for (int qi = 0; qas && qi < qas->n; qi++) {
                    const JValue *q = jv_get(&qas->items[qi], "question"), *ans = jv_get(&qas->items[qi], "answers");
                    if (!q || q->kind != JV_STR || !ans || ans->kind != JV_ARR || ans->n == 0) { continue; }
                    char **texts = (char **)malloc_check((size_t)ans->n * sizeof(char *));
                    int na = 0;
                    for (int k = 0; k < ans->n; k++) { const JValue *t = jv_get(&ans->items[k], "text"); if (t && t->kind == JV_STR) { texts[na++] = str_dup(t->str); } }
                    if (na) { qa_add_question(src, q->str, texts, na, &doc, 1, &qcap); } else { free(texts); }
                }
            }
        }
    } else if (root.kind == JV_ARR) {  // HotpotQA
        for (int i = 0; i < root.n; i++) {
            const JValue *e = &root.items[i], *q = jv_get(e, "question"), *a = jv_get(e, "answer"), *ctx = jv_get(e, "context");
            if (!q || q->kind != JV_STR || !a || a->kind != JV_STR || !ctx || ctx->kind != JV_ARR) { die("%s: item %d is not a HotpotQA record (question, answer, context)", path, i); }
            int gold[16], ng = 0;
            const JValue *sf = jv_get(e, "supporting_facts");
            for (int c = 0; c < ctx->n; c++) {
                const JValue *pair = &ctx->items[c];
                if (pair->kind != JV_ARR || pair->n != 2 || pair->items[0].kind != JV_STR || pair->items[1].kind != JV_ARR) { die("%s: item %d: context entries must be [title, [sentences]]", path, i); }
                StrBuf d = {0};
                sb_puts(&d, pair->items[0].str); sb_puts(&d, "\n");
                for (int k = 0; k < pair->items[1].n; k++) { if (pair->items[1].items[k].kind == JV_STR) { sb_puts(&d, pair->items[1].items[k].str); } }
                int doc = qa_add_doc(src, d.s, &dcap);
                free(d.s);
                int is_gold = 0;
                for (int k = 0; sf && sf->kind == JV_ARR && k < sf->n; k++) {
                    const JValue *fact = &sf->items[k];
                    if (fact->kind == JV_ARR && fact->n >= 1 && fact->items[0].kind == JV_STR && strcmp(fact->items[0].str, pair->items[0].str) == 0) { is_gold = 1; }
                }
                if (is_gold && ng < 16) { gold[ng++] = doc; }
            }
            char **texts = (char **)malloc_check(sizeof(char *));
            texts[0] = str_dup(a->str);
            qa_add_question(src, q->str, texts, 1, gold, ng, &qcap);
        }
    } else {
        die("%s: not a SQuAD ({\"data\": [...]}) or HotpotQA ([...]) JSON file", path);
    }
    jv_free(&root);
    if (src->num_qa == 0) { die("%s: no answerable questions", path); }
}

static inline void ruler_source_free(RulerSource *src) {
    free(src->essay_words); free(src->essay_buf);
    for (int i = 0; i < src->num_qa; i++) { free(src->qa_questions[i]); free_strings(src->qa_answers[i], src->qa_num_answers[i]); free(src->qa_gold[i]); }
    free(src->qa_questions); free(src->qa_answers); free(src->qa_num_answers); free(src->qa_gold); free(src->qa_num_gold);
    free_strings(src->qa_docs, src->num_docs);
    memset(src, 0, sizeof(*src));
}

#endif // LLMC_RULER_H
