/*
 RULER (NVIDIA/RULER, scripts/data/synthetic) sample generators in C, seeded and reproducible, sized to
 a token budget measured with the moba.c tokenizer: prompt tokens + the task's generation budget <=
 length, with the haystack size found by binary search as RULER's generators do.
 Tasks (RULER's synthetic.yaml names):
   niah_single_1/2/3   one needle; haystack noise / essay / essay; value number / number / uuid
   niah_multikey_1/2/3 4 keys, one asked; haystack essay / needles / needles (uuid keys and values for 3)
   niah_multivalue     one key holding 4 values; niah_multiquery: 4 keys asked at once
                       Word keys are pairs word-word of a built-in list of 8192 words (tables/ruler_words.h);
                       every key of a sample (haystack needles included) is distinct.
   vt                  variable tracking: a chain of 4 hops "VAR X = VAR Y" in a noise haystack, after a
                       one-shot example (3-letter variables, at most 500 tokens) with its answer
   cwe                 common words: 10 real words x 30 among the others x 3 (6 and 1 below 4096 tokens),
                       numbered list, after a one-shot example with its answer
   fwe                 frequent words: (length - 50) / 50 coded 6-letter words with deterministic counts
                       floor(N k^-2 / zeta(2)) for rank k, shuffled; the top word is "..." noise and the
                       answer is ranks 2-4
   qa_1 / qa_2         a question's gold paragraphs (SQuAD: its paragraph; HotpotQA: all 10 of its
                       paragraphs) among distractors drawn without repeats, from the same article first,
                       from a SQuAD v2 / HotpotQA JSON file the user supplies
 Prompts end with RULER's answer prefix, so the model continues it. Scoring (eval_metrics.h): all-match
 (fraction of expected strings in the output) for every task but QA, which is part-match.
 Differences from RULER (doc/eval.md lists them with reasons): the word list (RULER uses wonderwords),
 essay sentences split at '.', '?' or '!' (RULER uses nltk), haystack sizes by binary search per sample,
 the random streams. Essay haystacks come from any text file (RULER uses Paul Graham's essays).
*/
#ifndef LLMC_RULER_H
#define LLMC_RULER_H

#include <stdint.h>
#include "eval_metrics.h"
#include "../json_value.h"
#include "../rng.h"
#include "tables/ruler_words.h"
#include "../text_tokenizer.h"
#include "../utils.h"

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

static const char *const ruler_noise = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

// The source material shared by all samples of a run.
typedef struct {
    const TextTokenizer *tok;
    char **essay_words; int num_essay_words; char *essay_buf;   // essay haystack (whitespace-split)
    char **qa_questions, ***qa_answers, **qa_docs;               // QA file: questions, answers, distinct docs
    int *qa_num_answers, **qa_gold, *qa_num_gold, num_qa, num_docs;
    int **qa_more, *qa_num_more;                                  // per question: the other docs of its article
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
    else if (type == NEEDLE_WORDS) { snprintf(out, cap, "%s-%s", ruler_words[rng_below(r, RULER_NUM_WORDS)], ruler_words[rng_below(r, RULER_NUM_WORDS)]); }
    else {  // uuid version 4 from 128 random bits
        uint32_t w[4] = {rng_u32(r), rng_u32(r), rng_u32(r), rng_u32(r)};
        w[1] = (w[1] & 0xFFFF0FFFu) | 0x4000u;
        w[2] = (w[2] & 0x3FFFFFFFu) | 0x80000000u;
        snprintf(out, cap, "%08x-%04x-%04x-%04x-%04x%08x", w[0], w[1] >> 16, w[1] & 0xFFFF, w[2] >> 16, w[2] & 0xFFFF, w[3]);
    }
}

// The keys drawn so far in one sample, as 64-bit FNV-1a hashes in an open-addressing table.
typedef struct { uint64_t *h; size_t cap, n; } KeySet;

static inline uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) { h = (h ^ (unsigned char)*s) * 1099511628211ull; }
    return h ? h : 1;  // 0 marks an empty slot
}

// Adds key; returns 0 if it (or a key with the same hash) is already there.
static inline int keyset_add(KeySet *k, const char *key) {
    if (2 * (k->n + 1) > k->cap) {
        KeySet g = {(uint64_t *)calloc_check(k->cap ? 2 * k->cap : 64, sizeof(uint64_t)), k->cap ? 2 * k->cap : 64, 0};
        for (size_t i = 0; i < k->cap; i++) {
            if (k->h[i]) { size_t j = k->h[i] & (g.cap - 1); while (g.h[j]) { j = (j + 1) & (g.cap - 1); } g.h[j] = k->h[i]; g.n++; }
        }
        free(k->h);
        *k = g;
    }
    uint64_t h = fnv1a(key);
    size_t j = h & (k->cap - 1);
    while (k->h[j]) { if (k->h[j] == h) { return 0; } j = (j + 1) & (k->cap - 1); }
    k->h[j] = h; k->n++;
    return 1;
}

// A random key of the given type that the sample has not used yet.
static inline void ruler_unique_key(int type, Rng *r, KeySet *used, char *out, size_t cap) {
    do { ruler_random(type, r, out, cap); } while (!keyset_add(used, out));
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

// Sentences (noise or random needles) joined by '\n', with the real needles before distinct random
// sentences.
static inline void line_context(StrBuf *b, const RulerTask *t, int n, char needles[][320], int nn, Rng *r, KeySet *used) {
    int idx[64];
    ruler_sample_sorted(r, idx, nn, n, 1);  // RULER: random.sample(range(n), needles), each before that line
    int k = 0;
    for (int s = 0; s <= n; s++) {
        while (k < nn && idx[k] == s) { sb_puts(b, needles[k++]); sb_puts(b, "\n"); }
        if (s == n) { break; }
        if (t->haystack == HAY_NOISE) { sb_puts(b, ruler_noise); }
        else {
            char key[64], val[64];
            ruler_unique_key(t->key_type, r, used, key, sizeof(key));
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
    KeySet used = {NULL, 0, 0};
    for (int k = 0; k < nk; k++) {
        ruler_unique_key(t->key_type, r, &used, keys[k], sizeof(keys[k]));
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
    else { line_context(&ctx, t, n, needles, nn, r, &used); }
    free(used.h);
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

static inline int ruler_count_tokens(const TextTokenizer *tok, const char *text, size_t len) {
    return (int)text_tokenizer_encode(tok, NULL, (const unsigned char *)text, len, NULL, 0);
}

// A variable-tracking prompt (RULER's template and answer prefix): one chain "VAR X1 = value",
// "VAR X2 = VAR X1 ", ... of hops + 1 distinct variables of var_len capital letters, inserted in order at
// random positions among n noise sentences, lines joined by '\n'. The variables go to vars.
static inline void vt_prompt(StrBuf *b, Rng *r, int n, int hops, int var_len, char vars[][8]) {
    int nv = hops + 1;
    KeySet used = {NULL, 0, 0};
    for (int i = 0; i < nv; i++) {
        do { for (int c = 0; c < var_len; c++) { vars[i][c] = (char)('A' + rng_below(r, 26)); } vars[i][var_len] = '\0'; } while (!keyset_add(&used, vars[i]));
    }
    free(used.h);
    unsigned value = 10000 + rng_below(r, 90000);
    int pos[16];
    ruler_sample_sorted(r, pos, nv, n, 1);  // random.sample(range(n), nv), sorted
    sb_puts(b, "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n");
    for (int s = 0, k = 0; s < n; s++) {
        while (k < nv && pos[k] == s) {  // the chain element inserted before noise sentence s
            if (k == 0) { sb_printf(b, "VAR %s = %u\n", vars[0], value); } else { sb_printf(b, "VAR %s = VAR %s \n", vars[k], vars[k - 1]); }
            k++;
        }
        sb_puts(b, ruler_noise);
        if (s + 1 < n) { sb_puts(b, "\n"); }
    }
    sb_printf(b, "\nQuestion: Find all variables that are assigned the value %u in the text above. Answer: According to the chain(s) of variable assignment in the text above, %d variables are assigned the value %u, they are: ", value, nv, value);
}

// vt with RULER's one-shot example: the same task with 3-letter variables and as many noise sentences
// (in steps of 5) as fit in min(500, length / 4) tokens, followed by its answer, then the real task.
static inline void vt_build(StrBuf *b, RulerSample *s, const RulerTask *t, const RulerSource *src, int n, int length, Rng *r) {
    char vars[8][8], ex_vars[8][8];
    Rng er;  // the example's own stream: it depends on the sample's seed, not on n
    rng_init(&er, ((uint64_t)rng_u32(r) << 32) | rng_u32(r));
    int budget = length / 4 < 500 ? length / 4 : 500, ex_n = 5;
    StrBuf ex = {0};
    for (int try_n = 5;; try_n += 5) {
        Rng tr = er;
        ex.n = 0;
        sb_puts(&ex, "");
        vt_prompt(&ex, &tr, try_n, t->num_v, 3, ex_vars);
        if (ruler_count_tokens(src->tok, ex.s, ex.n) > budget) { break; }
        ex_n = try_n;
    }
    ex.n = 0;
    vt_prompt(&ex, &er, ex_n, t->num_v, 3, ex_vars);
    sb_put(b, ex.s, ex.n);
    sb_puts(b, " ");
    for (int i = 0; i <= t->num_v; i++) { sb_printf(b, "%s%s", i ? " " : "", ex_vars[i]); }
    sb_puts(b, "\n\n");
    free(ex.s);
    vt_prompt(b, r, n, t->num_v, 5, vars);
    char ans[8][64];
    for (int i = 0; i <= t->num_v; i++) { strcpy(ans[i], vars[i]); }
    set_answers(s, ans, t->num_v + 1);
}

// A common-words list (RULER's get_example): n distinct words of the built-in list, the first ncw
// repeated `common` times and the rest `uncommon` times, shuffled, numbered "1. w 2. w ...". The common
// words go to answers (ncw entries).
static inline void cwe_list(StrBuf *b, Rng *r, int n, int ncw, int common, int uncommon, const char **answers) {
    uint32_t *pick = (uint32_t *)malloc_check(RULER_NUM_WORDS * sizeof(uint32_t));
    for (uint32_t i = 0; i < RULER_NUM_WORDS; i++) { pick[i] = i; }
    for (int i = 0; i < n; i++) { uint32_t j = i + rng_below(r, RULER_NUM_WORDS - i), x = pick[i]; pick[i] = pick[j]; pick[j] = x; }
    int total = ncw * common + (n - ncw) * uncommon, m = 0, *list = (int *)malloc_check((size_t)total * sizeof(int));
    for (int i = 0; i < n; i++) { for (int k = 0; k < (i < ncw ? common : uncommon); k++) { list[m++] = (int)pick[i]; } }
    for (int i = total; i > 1; i--) { int j = (int)rng_below(r, (uint32_t)i), x = list[i - 1]; list[i - 1] = list[j]; list[j] = x; }
    for (int i = 0; i < total; i++) { sb_printf(b, "%s%d. %s", i ? " " : "", i + 1, ruler_words[list[i]]); }
    for (int i = 0; i < ncw; i++) { answers[i] = ruler_words[pick[i]]; }
    free(pick); free(list);
}

static inline void cwe_template(StrBuf *b, Rng *r, int n, int ncw, int common, int uncommon, const char **answers) {
    sb_puts(b, "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n");
    cwe_list(b, r, n, ncw, common, uncommon, answers);
    sb_printf(b, "\nQuestion: What are the %d most common words in the above list? Answer: The top %d words that appear most often in the list are:", ncw, ncw);
}

// cwe with RULER's one-shot example (20 words x 3 / x 1 below 4096 tokens, else 40 words x 10 / x 3) and
// its answer; the task's own repeats are 6 / 1 below 4096 tokens, else num_v / num_q (30 / 3).
static inline void cwe_build(StrBuf *b, RulerSample *s, const RulerTask *t, int n, int length, Rng *r) {
    int ncw = t->num_k, small = length < 4096;
    const char *ex[16], *ans[16];
    cwe_template(b, r, small ? 20 : 40, ncw, small ? 3 : 10, small ? 1 : 3, ex);
    sb_puts(b, " ");
    for (int i = 0; i < ncw; i++) { sb_printf(b, "%s%d. %s", i ? " " : "", i + 1, ex[i]); }
    sb_puts(b, "\n");
    cwe_template(b, r, n, ncw, small ? 6 : t->num_v, small ? 1 : t->num_q, ans);
    s->num_answers = ncw;
    s->answers = (char **)malloc_check((size_t)ncw * sizeof(char *));
    for (int i = 0; i < ncw; i++) { s->answers[i] = str_dup(ans[i]); }
}

// fwe as RULER's freq_words_extraction: a vocabulary of (length - max_gen) / 50 distinct coded words of
// 6 letters, rank k used floor(n k^-2 / zeta(2)) times (deterministic counts), shuffled; rank 1 is the
// "..." noise and the answer is ranks 2-4.
static inline void fwe_build(StrBuf *b, RulerSample *s, const RulerTask *t, int n, int length, Rng *r) {
    int V = (length - t->max_gen) / 50;
    if (V < 5) { die("RULER fwe: a %d-token budget gives a vocabulary of %d words (needs 5)", length, V); }
    char (*vocab)[8] = (char (*)[8])malloc_check((size_t)V * 8);
    KeySet used = {NULL, 0, 0};
    for (int i = 0; i < V; i++) {
        do { for (int c = 0; c < 6; c++) { vocab[i][c] = (char)('a' + rng_below(r, 26)); } vocab[i][6] = '\0'; } while (!keyset_add(&used, vocab[i]));
    }
    free(used.h);
    strcpy(vocab[0], "...");
    const double zeta2 = M_PI * M_PI / 6;
    int total = 0, *count = (int *)malloc_check((size_t)V * sizeof(int));
    for (int k = 1; k <= V; k++) { count[k - 1] = (int)((double)n * pow((double)k, -2.0) / zeta2); total += count[k - 1]; }
    int *list = (int *)malloc_check((size_t)(total ? total : 1) * sizeof(int)), m = 0;
    for (int k = 0; k < V; k++) { for (int c = 0; c < count[k]; c++) { list[m++] = k; } }
    for (int i = total; i > 1; i--) { int j = (int)rng_below(r, (uint32_t)i), x = list[i - 1]; list[i - 1] = list[j]; list[j] = x; }
    sb_puts(b, "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. ");
    for (int i = 0; i < total; i++) { sb_puts(b, i ? " " : ""); sb_puts(b, vocab[list[i]]); }
    sb_puts(b, "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text? Answer: According to the coded text above, the three most frequently appeared words are:");
    s->num_answers = t->num_k;
    s->answers = (char **)malloc_check((size_t)t->num_k * sizeof(char *));
    for (int i = 0; i < t->num_k; i++) { s->answers[i] = str_dup(vocab[1 + i]); }
    free(vocab); free(count); free(list);
}

// QA as RULER's qa.py: the question's gold documents plus n distractors: the other documents of its
// article first (all of them when they do not suffice, else a sample), then a sample of the rest, never
// repeated; when gold + n reaches the number of documents, all documents cycled. Then shuffled.
static inline void qa_build(StrBuf *b, RulerSample *s, const RulerSource *src, int n, int qi, Rng *r) {
    if (src->num_qa == 0) { die("RULER QA tasks need a SQuAD or HotpotQA JSON file (-q / -Q FILE)"); }
    int ng = src->qa_num_gold[qi], nm = src->qa_num_more[qi], total = ng + n, *docs = (int *)malloc_check((size_t)total * sizeof(int));
    if (total < src->num_docs) {
        for (int i = 0; i < ng; i++) { docs[i] = src->qa_gold[qi][i]; }
        int *more = (int *)malloc_check((size_t)(nm ? nm : 1) * sizeof(int)), k = ng;
        memcpy(more, src->qa_more[qi], (size_t)nm * sizeof(int));
        for (int i = 0; i < nm && k < total; i++) {  // a sample of the article's documents (all when n >= nm)
            int j = i + (int)rng_below(r, (uint32_t)(nm - i)), x = more[i]; more[i] = more[j]; more[j] = x;
            docs[k++] = more[i];
        }
        if (k < total) {  // a sample of the documents outside gold and article
            unsigned char *taken = (unsigned char *)calloc_check((size_t)src->num_docs, 1);
            for (int i = 0; i < k; i++) { taken[docs[i]] = 1; }
            int *rest = (int *)malloc_check((size_t)src->num_docs * sizeof(int)), nr = 0;
            for (int d = 0; d < src->num_docs; d++) { if (!taken[d]) { rest[nr++] = d; } }
            for (int i = 0; k < total; i++) { int j = i + (int)rng_below(r, (uint32_t)(nr - i)), x = rest[i]; rest[i] = rest[j]; rest[j] = x; docs[k++] = rest[i]; }
            free(taken); free(rest);
        }
        free(more);
    } else {
        for (int i = 0; i < total; i++) { docs[i] = i % src->num_docs; }
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

// One sample of task t with haystack size n (sentences, words, list entries or documents) for a
// `length`-token budget, from the sample's own seed, so the binary search over n rebuilds the same
// needles every time.
static inline void ruler_build(RulerSample *s, const RulerTask *t, const RulerSource *src, int n, int length, uint64_t seed) {
    Rng r;
    rng_init(&r, seed);
    StrBuf b = {0};
    sb_puts(&b, "");
    memset(s, 0, sizeof(*s));
    switch (t->family) {
    case RT_NIAH: niah_build(&b, s, t, src, n, &r); break;
    case RT_VT: vt_build(&b, s, t, src, n, length, &r); break;
    case RT_CWE: cwe_build(&b, s, t, n, length, &r); break;
    case RT_FWE: fwe_build(&b, s, t, n, length, &r); break;
    default: qa_build(&b, s, src, n, (int)rng_below(&r, (uint32_t)(src->num_qa ? src->num_qa : 1)), &r); break;
    }
    s->prompt = b.s;
    s->max_gen = t->max_gen;
    s->prompt_tokens = ruler_count_tokens(src->tok, b.s, b.n);
}

// The smallest haystack of each family: a line per needle (niah, vt's 5 chain lines), cwe's 10 common
// words, fwe enough words that ranks 1-5 have distinct counts.
static inline int ruler_min_haystack(const RulerTask *t) {
    return t->family == RT_VT ? t->num_v + 1 : t->family == RT_CWE ? t->num_k : t->family == RT_FWE ? 64 : t->family == RT_NIAH ? t->num_k * t->num_v : 0;
}

// The sample `index` of task t whose prompt + max_gen fits in `length` tokens, with the largest
// haystack that fits (binary search; cwe at most the built-in list's words). Dies if even the smallest
// prompt does not fit.
static inline RulerSample ruler_generate(const RulerTask *t, const RulerSource *src, int length, int index, uint64_t seed) {
    uint64_t s_seed = seed ^ ((uint64_t)length << 20) ^ ((uint64_t)index * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(t - ruler_tasks) << 48);
    int lo = ruler_min_haystack(t), hi = lo, best = -1, cap = t->family == RT_CWE ? RULER_NUM_WORDS : 1 << 30;
    RulerSample s;
    for (;;) {  // grow until too long, then bisect
        int fits = 0;
        if (hi <= cap) {
            ruler_build(&s, t, src, hi, length, s_seed);
            fits = s.prompt_tokens + t->max_gen <= length;
            ruler_sample_free(&s);
        }
        if (!fits) { break; }
        best = hi; lo = hi; hi = hi ? hi * 2 : 1;
    }
    if (best < 0) { die("RULER %s: a %d-token budget is too small even for the smallest prompt", t->name, length); }
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2, fits = 0;
        if (mid <= cap) {
            ruler_build(&s, t, src, mid, length, s_seed);
            fits = s.prompt_tokens + t->max_gen <= length;
            ruler_sample_free(&s);
        }
        if (fits) { lo = best = mid; } else { hi = mid; }
    }
    ruler_build(&s, t, src, best, length, s_seed);
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
        for (int k; *p && (k = utf8_space_len(p)) > 0; p += k) { memset(p, 0, (size_t)k); }
        if (!*p) { break; }
        if (src->num_essay_words == cap) { cap *= 2; src->essay_words = (char **)realloc(src->essay_words, (size_t)cap * sizeof(char *)); if (!src->essay_words) { die("out of host memory"); } }
        src->essay_words[src->num_essay_words++] = p;
        while (*p && utf8_space_len(p) == 0) { p++; }
    }
    if (src->num_essay_words == 0) { die("haystack file '%s' has no words", path); }
}

static inline int qa_add_doc(RulerSource *src, const char *text, int *cap) {
    if (src->num_docs == *cap) { *cap = *cap ? 2 * *cap : 256; src->qa_docs = (char **)realloc(src->qa_docs, (size_t)*cap * sizeof(char *)); if (!src->qa_docs) { die("out of host memory"); } }
    src->qa_docs[src->num_docs] = str_dup(text);
    return src->num_docs++;
}

static inline int *int_dup(const int *x, int n) {
    int *d = (int *)malloc_check((size_t)(n ? n : 1) * sizeof(int));
    if (n > 0) { memcpy(d, x, (size_t)n * sizeof(int)); }  // x may be NULL when n is 0
    return d;
}

static inline void qa_add_question(RulerSource *src, const char *q, char **answers, int na, const int *gold, int ng, const int *more, int nm, int *cap) {
    if (src->num_qa == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        src->qa_questions = (char **)realloc(src->qa_questions, (size_t)*cap * sizeof(char *));
        src->qa_answers = (char ***)realloc(src->qa_answers, (size_t)*cap * sizeof(char **));
        src->qa_num_answers = (int *)realloc(src->qa_num_answers, (size_t)*cap * sizeof(int));
        src->qa_gold = (int **)realloc(src->qa_gold, (size_t)*cap * sizeof(int *));
        src->qa_num_gold = (int *)realloc(src->qa_num_gold, (size_t)*cap * sizeof(int));
        src->qa_more = (int **)realloc(src->qa_more, (size_t)*cap * sizeof(int *));
        src->qa_num_more = (int *)realloc(src->qa_num_more, (size_t)*cap * sizeof(int));
        if (!src->qa_questions || !src->qa_answers || !src->qa_num_answers || !src->qa_gold || !src->qa_num_gold || !src->qa_more || !src->qa_num_more) { die("out of host memory"); }
    }
    int i = src->num_qa++;
    src->qa_questions[i] = str_dup(q);
    src->qa_answers[i] = answers; src->qa_num_answers[i] = na;
    src->qa_gold[i] = int_dup(gold, ng); src->qa_num_gold[i] = ng;
    src->qa_more[i] = int_dup(more, nm); src->qa_num_more[i] = nm;
}

static char *const *qa_sort_docs;  // qsort comparator data
static inline int qa_doc_cmp(const void *a, const void *b) {
    int c = strcmp(qa_sort_docs[*(const int *)a], qa_sort_docs[*(const int *)b]);
    return c ? c : *(const int *)a - *(const int *)b;
}

// Renumbers a list of documents through remap, dropping repeats and the ids in `skip`; returns its length.
static inline int qa_remap_list(int *ids, int n, const int *remap, const int *skip, int nskip) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        int d = remap[ids[i]], dup = 0;
        for (int k = 0; k < m && !dup; k++) { dup = ids[k] == d; }
        for (int k = 0; k < nskip && !dup; k++) { dup = skip[k] == d; }
        if (!dup) { ids[m++] = d; }
    }
    return m;
}

// Makes the documents distinct and sorted, as RULER's sorted(set(docs)), and renumbers the questions'
// gold and article documents.
static inline void qa_dedupe(RulerSource *src) {
    int n = src->num_docs, *order = (int *)malloc_check((size_t)n * sizeof(int)), *remap = (int *)malloc_check((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) { order[i] = i; }
    qa_sort_docs = src->qa_docs;
    qsort(order, (size_t)n, sizeof(int), qa_doc_cmp);
    char **docs = (char **)malloc_check((size_t)n * sizeof(char *));
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m && strcmp(docs[m - 1], src->qa_docs[order[i]]) == 0) { free(src->qa_docs[order[i]]); }
        else { docs[m++] = src->qa_docs[order[i]]; }
        remap[order[i]] = m - 1;
    }
    free(src->qa_docs);
    src->qa_docs = docs; src->num_docs = m;
    for (int q = 0; q < src->num_qa; q++) {
        src->qa_num_gold[q] = qa_remap_list(src->qa_gold[q], src->qa_num_gold[q], remap, NULL, 0);
        src->qa_num_more[q] = qa_remap_list(src->qa_more[q], src->qa_num_more[q], remap, src->qa_gold[q], src->qa_num_gold[q]);
    }
    free(order); free(remap);
}

// SQuAD v2 ({"data": [{"paragraphs": [{"context", "qas": [{"question", "answers": [{"text"}],
// "is_impossible"}]}]}]}) or HotpotQA ([{"question", "answer", "context": [[title, [sentences]]]}]).
// SQuAD: the gold document is the question's paragraph, the article's other paragraphs come first as
// distractors; HotpotQA: all the question's paragraphs ("title\nsentences") are gold. Questions without an
// answer are skipped.
static inline void ruler_load_qa(RulerSource *src, const char *path) {
    JValue root;
    jv_parse_file(&root, path);
    int dcap = 0, qcap = 0;
    const JValue *data = jv_get(&root, "data");
    if (data && data->kind == JV_ARR) {  // SQuAD
        for (int a = 0; a < data->n; a++) {
            const JValue *paras = jv_get(&data->items[a], "paragraphs");
            int first = src->num_docs, np = paras && paras->kind == JV_ARR ? paras->n : 0;
            for (int pi = 0; pi < np; pi++) {
                const JValue *ctx = jv_get(&paras->items[pi], "context");
                if (!ctx || ctx->kind != JV_STR) { die("%s: SQuAD paragraph without a string 'context'", path); }
                qa_add_doc(src, ctx->str, &dcap);
            }
            int *article = (int *)malloc_check((size_t)(np ? np : 1) * sizeof(int));
            for (int pi = 0; pi < np; pi++) { article[pi] = first + pi; }
            for (int pi = 0; pi < np; pi++) {
                const JValue *qas = jv_get(&paras->items[pi], "qas");
                int doc = first + pi;
                for (int qi = 0; qas && qas->kind == JV_ARR && qi < qas->n; qi++) {
                    const JValue *q = jv_get(&qas->items[qi], "question"), *ans = jv_get(&qas->items[qi], "answers");
                    if (!q || q->kind != JV_STR || !ans || ans->kind != JV_ARR || ans->n == 0) { continue; }
                    char **texts = (char **)malloc_check((size_t)ans->n * sizeof(char *));
                    int na = 0;
                    for (int k = 0; k < ans->n; k++) { const JValue *t = jv_get(&ans->items[k], "text"); if (t && t->kind == JV_STR) { texts[na++] = str_dup(t->str); } }
                    if (na) { qa_add_question(src, q->str, texts, na, &doc, 1, article, np, &qcap); } else { free(texts); }
                }
            }
            free(article);
        }
    } else if (root.kind == JV_ARR) {  // HotpotQA
        for (int i = 0; i < root.n; i++) {
            const JValue *e = &root.items[i], *q = jv_get(e, "question"), *a = jv_get(e, "answer"), *ctx = jv_get(e, "context");
            if (!q || q->kind != JV_STR || !a || a->kind != JV_STR || !ctx || ctx->kind != JV_ARR) { die("%s: item %d is not a HotpotQA record (question, answer, context)", path, i); }
            int *gold = (int *)malloc_check((size_t)(ctx->n ? ctx->n : 1) * sizeof(int));
            for (int c = 0; c < ctx->n; c++) {
                const JValue *pair = &ctx->items[c];
                if (pair->kind != JV_ARR || pair->n != 2 || pair->items[0].kind != JV_STR || pair->items[1].kind != JV_ARR) { die("%s: item %d: context entries must be [title, [sentences]]", path, i); }
                StrBuf d = {0};
                sb_puts(&d, pair->items[0].str); sb_puts(&d, "\n");
                for (int k = 0; k < pair->items[1].n; k++) { if (pair->items[1].items[k].kind == JV_STR) { sb_puts(&d, pair->items[1].items[k].str); } }
                gold[c] = qa_add_doc(src, d.s, &dcap);
                free(d.s);
            }
            char **texts = (char **)malloc_check(sizeof(char *));
            texts[0] = str_dup(a->str);
            qa_add_question(src, q->str, texts, 1, gold, ctx->n, NULL, 0, &qcap);
            free(gold);
        }
    } else {
        die("%s: not a SQuAD ({\"data\": [...]}) or HotpotQA ([...]) JSON file", path);
    }
    jv_free(&root);
    if (src->num_qa == 0) { die("%s: no answerable questions", path); }
    qa_dedupe(src);
}

static inline void ruler_source_free(RulerSource *src) {
    free(src->essay_words); free(src->essay_buf);
    for (int i = 0; i < src->num_qa; i++) { free(src->qa_questions[i]); free_strings(src->qa_answers[i], src->qa_num_answers[i]); free(src->qa_gold[i]); free(src->qa_more[i]); }
    free(src->qa_questions); free(src->qa_answers); free(src->qa_num_answers); free(src->qa_gold); free(src->qa_num_gold);
    free(src->qa_more); free(src->qa_num_more);
    free_strings(src->qa_docs, src->num_docs);
    memset(src, 0, sizeof(*src));
}

#endif // LLMC_RULER_H
