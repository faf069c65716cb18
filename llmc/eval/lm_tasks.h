/*
 Language-modelling tasks of lm-evaluation-harness, on text from the JSONL exports of their Hugging Face
 datasets:
   wikitext  {"page"} per line (EleutherAI/wikitext_document_level, wikitext-2-raw-v1: one document per
             record). The page is detokenized (lm-eval's wikitext_detokenizer) and scored as a rolling
             log-likelihood: disjoint windows of the model's context, the first after an EOT, each later
             one re-reading the max_len tokens before its targets. Word perplexity exp(-sum ll / words),
             byte perplexity exp(-sum ll / bytes) and bits per byte -sum ll / bytes / ln 2, with words =
             len(re.split(r"\s+", page)) and bytes = UTF-8 bytes of the original page, as lm-eval counts.
   lambada   {"text"} per line (EleutherAI/lambada_openai): context = all words but the last (split at
             ' '), continuation = " " + the last word; accuracy = every continuation token is the greedy
             one, perplexity = exp(-mean ll) over documents.
 The model calls are in llmc/eval/eval_driver.h; this file holds the text rules and the window plan.
*/
#ifndef LLMC_LM_TASKS_H
#define LLMC_LM_TASKS_H

#include "../json_value.h"
#include "mc_tasks.h"
#include "../unicode.h"

// The strings of one field of every record of a JSONL file.
typedef struct { char **s; int n, cap; const char *field; } TextSet;

static inline void text_add(const JValue *v, const char *path, uint64_t line, void *ctx) {
    TextSet *t = (TextSet *)ctx;
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->s = (char **)realloc(t->s, (size_t)t->cap * sizeof(char *));
        if (!t->s) { die("out of host memory reading '%s'", path); }
    }
    t->s[t->n++] = jv_strdup_field(v, t->field, path, line);
}

static inline TextSet text_load(const char *path, const char *field) {
    TextSet t = {NULL, 0, 0, field};
    jsonl_for_each(path, text_add, &t);
    if (t.n == 0) { die("%s: no records", path); }
    return t;
}

static inline void text_free(TextSet *t) { free_strings(t->s, t->n); memset(t, 0, sizeof(*t)); }

// re.sub(open \s*([^close]*?)\s* close, open \1 close): every open ... close pair with the whitespace
// (Python's \s) inside its ends removed, scanning left to right (malloc'd).
static inline char *strip_inside_pairs(const char *s, char open, char close) {
    StrBuf b = {0};
    sb_puts(&b, "");
    for (const char *p = s; *p;) {
        const char *end = *p == open ? strchr(p + 1, close) : NULL;
        if (!end) { sb_put(&b, p++, 1); continue; }
        CpStr in = cps_from_utf8(p + 1, (size_t)(end - p - 1));
        int i = 0, j = in.n;
        while (i < j && uc_is_space(in.c[i])) { i++; }
        while (j > i && uc_is_space(in.c[j - 1])) { j--; }
        char *mid = cps_to_utf8(in.c + i, j - i);
        sb_put(&b, &open, 1); sb_puts(&b, mid); sb_put(&b, &close, 1);
        free(mid); free(in.c);
        p = end + 1;
    }
    return b.s;
}

// lm-eval's wikitext_detokenizer (malloc'd).
static inline char *wikitext_detokenize(const char *page) {
    static const char *const before[][2] = {
        {"s '", "s'"}, {" @-@ ", "-"}, {" @,@ ", ","}, {" @.@ ", "."}, {" : ", ": "}, {" ; ", "; "}, {" . ", ". "},
        {" ! ", "! "}, {" ? ", "? "}, {" , ", ", "}};
    static const char *const after[][2] = {
        {"= = = =", "===="}, {"= = =", "==="}, {"= =", "=="}, {" \xc2\xb0 ", "\xc2\xb0"}, {" \n", "\n"}, {"\n ", "\n"},
        {" N ", " 1 "}, {" 's", "'s"}};
    static const char pairs[][2] = {{'(', ')'}, {'[', ']'}, {'{', '}'}, {'"', '"'}, {'\'', '\''}};
    char *s = str_dup(page), *t;
    for (int i = 0; i < 10; i++) {
        t = str_replace_all(s, before[i][0], before[i][1]); free(s); s = t;
        if (i == 0) {  // re.sub(r"/' [0-9]/", r"/'[0-9]/"): the replacement is the literal text
            StrBuf b = {0};
            sb_puts(&b, "");
            for (const char *p = s; *p;) {
                if (strncmp(p, "/' ", 3) == 0 && p[3] >= '0' && p[3] <= '9' && p[4] == '/') { sb_puts(&b, "/'[0-9]/"); p += 5; }
                else { sb_put(&b, p++, 1); }
            }
            free(s); s = b.s;
        }
    }
    for (int i = 0; i < 5; i++) { t = strip_inside_pairs(s, pairs[i][0], pairs[i][1]); free(s); s = t; }
    for (int i = 0; i < 8; i++) { t = str_replace_all(s, after[i][0], after[i][1]); free(s); s = t; }
    return s;
}

// len(re.split(r"\s+", text)): one more than the runs of whitespace.
static inline long wikitext_words(const char *text) {
    CpStr c = cps_from_cstr(text);
    long n = 1;
    for (int i = 0; i < c.n; i++) { if (uc_is_space(c.c[i]) && (i == 0 || !uc_is_space(c.c[i - 1]))) { n++; } }
    free(c.c);
    return n;
}

// Window w of lm-eval's rolling log-likelihood over n tokens with a max_len context (context_len 1):
// the window reads tokens [start, start + len) of the sequence EOT, t0, t1, ... (so token i is at
// position i + 1) and scores its last `scored` positions. Returns 0 after the last window.
typedef struct { int start, len, scored; } RollWindow;

static inline int rolling_window(int n, int max_len, int w, RollWindow *out) {
    int first = n < max_len ? n : max_len;
    if (n == 0) { return 0; }
    if (w == 0) { out->start = 0; out->len = first; out->scored = first; return 1; }
    int predicted = first + (w - 1) * max_len;
    if (predicted >= n) { return 0; }
    int pred = n - predicted < max_len ? n - predicted : max_len, end = predicted + pred;  // targets [predicted, end)
    out->start = end - max_len;  // inputs are tokens [end - max_len - 1, end - 1): positions [end - max_len, end)
    out->len = max_len;
    out->scored = pred;
    return 1;
}

// LAMBADA's split of a text at its last ' ': the context and " " + the last word (malloc'd).
static inline void lambada_split(const char *text, char **ctx, char **cont) {
    const char *sp = strrchr(text, ' ');
    if (!sp) { *ctx = str_dup(""); *cont = str_cat3(" ", text, ""); return; }
    *ctx = (char *)malloc_check((size_t)(sp - text) + 1);
    memcpy(*ctx, text, (size_t)(sp - text)); (*ctx)[sp - text] = '\0';
    *cont = str_dup(sp);
}

#endif // LLMC_LM_TASKS_H
