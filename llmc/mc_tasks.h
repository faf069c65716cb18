/*
 Zero-shot multiple-choice sets as (context, choices, label) items, one loader per JSONL format:
   hellaswag   {"ctx", "endings": [4], "label"}                        choices " " + ending
   piqa        {"goal", "sol1", "sol2", "label"}                      "Question: goal\nAnswer:" + " " + sol
   arc         {"question": {"stem", "choices": [{"text", "label"}]}, "answerKey"} (AI2 files) or
               {"question", "choices": {"text": [], "label": []}, "answerKey"} (HF files)
                                                                      "Question: q\nAnswer:" + " " + text
   winogrande  {"sentence" with one '_', "option1", "option2", "answer": "1"|"2"}: partial scoring, the
               context is the sentence up to '_' with the option filled in, per choice, and the scored
               continuation is the rest of the sentence (the same for both)
 Labels may be numbers or numeric strings. Scoring (dev/eval/eval.c): the sum of the continuation's token
 log-probabilities given the context; acc takes the max, acc_norm the max per byte of continuation (the
 lm-evaluation-harness conventions).
*/
#ifndef LLMC_MC_TASKS_H
#define LLMC_MC_TASKS_H

#include "json_value.h"
#include "ruler.h"

#define MC_MAX_CHOICES 8

typedef struct {
    char *ctx[MC_MAX_CHOICES];   // context per choice (the same string repeated except for winogrande)
    char *cont[MC_MAX_CHOICES];  // continuation per choice
    int n, label;
} MCItem;

typedef struct { MCItem *items; int n, cap; const char *format; } MCSet;

static inline int mc_label(const JValue *v, const char *key, const char *path, uint64_t line) {
    const JValue *l = jv_get(v, key);
    if (l && l->kind == JV_NUM) { return (int)l->num; }
    if (l && l->kind == JV_STR) {
        char *end;
        long x = strtol(l->str, &end, 10);
        if (*l->str && *end == '\0') { return (int)x; }
    }
    die("%s:%llu: field '%s' must be an integer or a numeric string", path, (unsigned long long)line, key);
    return -1;
}

static inline char *str_cat3(const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = (char *)malloc_check(la + lb + lc + 1);
    memcpy(s, a, la); memcpy(s + la, b, lb); memcpy(s + la + lb, c, lc + 1);
    return s;
}

static inline void mc_add(const JValue *v, const char *path, uint64_t line, void *ctx) {
    MCSet *set = (MCSet *)ctx;
    if (set->n == set->cap) {
        set->cap = set->cap ? 2 * set->cap : 256;
        set->items = (MCItem *)realloc(set->items, (size_t)set->cap * sizeof(MCItem));
        if (!set->items) { die("out of host memory reading '%s'", path); }
    }
    MCItem *it = &set->items[set->n];
    memset(it, 0, sizeof(*it));
    const char *f = set->format;
    if (strcmp(f, "hellaswag") == 0) {
        const char *c = jv_field(v, "ctx", JV_STR, path, line)->str;
        const JValue *e = jv_field(v, "endings", JV_ARR, path, line);
        for (int i = 0; i < e->n && i < MC_MAX_CHOICES; i++) {
            if (e->items[i].kind != JV_STR) { die("%s:%llu: 'endings' must hold strings", path, (unsigned long long)line); }
            it->ctx[i] = str_dup(c); it->cont[i] = str_cat3(" ", e->items[i].str, "");
        }
        it->n = e->n < MC_MAX_CHOICES ? e->n : MC_MAX_CHOICES;
        it->label = mc_label(v, "label", path, line);
    } else if (strcmp(f, "piqa") == 0) {
        char *c = str_cat3("Question: ", jv_field(v, "goal", JV_STR, path, line)->str, "\nAnswer:");
        const char *keys[2] = {"sol1", "sol2"};
        for (int i = 0; i < 2; i++) { it->ctx[i] = str_dup(c); it->cont[i] = str_cat3(" ", jv_field(v, keys[i], JV_STR, path, line)->str, ""); }
        free(c);
        it->n = 2;
        it->label = mc_label(v, "label", path, line);
    } else if (strcmp(f, "arc") == 0) {
        const JValue *q = jv_get(v, "question"), *texts = NULL, *labels = NULL, *choices;
        const char *stem;
        if (q && q->kind == JV_OBJ) {
            stem = jv_field(q, "stem", JV_STR, path, line)->str;
            choices = jv_field(q, "choices", JV_ARR, path, line);
        } else {
            stem = jv_field(v, "question", JV_STR, path, line)->str;
            choices = jv_field(v, "choices", JV_OBJ, path, line);
            texts = jv_field(choices, "text", JV_ARR, path, line);
            labels = jv_field(choices, "label", JV_ARR, path, line);
        }
        const char *key = jv_field(v, "answerKey", JV_STR, path, line)->str;
        char *c = str_cat3("Question: ", stem, "\nAnswer:");
        int n = texts ? texts->n : choices->n;
        it->label = -1;
        for (int i = 0; i < n && i < MC_MAX_CHOICES; i++) {
            const JValue *t = texts ? &texts->items[i] : jv_get(&choices->items[i], "text");
            const JValue *l = labels ? &labels->items[i] : jv_get(&choices->items[i], "label");
            if (!t || t->kind != JV_STR || !l || l->kind != JV_STR) { die("%s:%llu: ARC choices need string 'text' and 'label'", path, (unsigned long long)line); }
            it->ctx[i] = str_dup(c); it->cont[i] = str_cat3(" ", t->str, "");
            if (strcmp(l->str, key) == 0) { it->label = i; }
        }
        free(c);
        it->n = n < MC_MAX_CHOICES ? n : MC_MAX_CHOICES;
    } else if (strcmp(f, "winogrande") == 0) {
        const char *s = jv_field(v, "sentence", JV_STR, path, line)->str, *blank = strchr(s, '_');
        if (!blank) { die("%s:%llu: winogrande 'sentence' has no '_'", path, (unsigned long long)line); }
        char *prefix = (char *)malloc_check((size_t)(blank - s) + 1);
        memcpy(prefix, s, (size_t)(blank - s)); prefix[blank - s] = '\0';
        const char *opts[2] = {jv_field(v, "option1", JV_STR, path, line)->str, jv_field(v, "option2", JV_STR, path, line)->str};
        for (int i = 0; i < 2; i++) { it->ctx[i] = str_cat3(prefix, opts[i], ""); it->cont[i] = str_dup(blank + 1); }
        free(prefix);
        it->n = 2;
        it->label = mc_label(v, "answer", path, line) - 1;
    } else {
        die("unknown multiple-choice format '%s' (hellaswag, piqa, arc, winogrande)", f);
    }
    if (it->label < 0 || it->label >= it->n) { die("%s:%llu: label %d is not one of the %d choices", path, (unsigned long long)line, it->label, it->n); }
    set->n++;
}

static inline MCSet mc_load(const char *format, const char *path) {
    MCSet set = {NULL, 0, 0, format};
    jsonl_for_each(path, mc_add, &set);
    return set;
}

static inline void mc_free(MCSet *set) {
    for (int i = 0; i < set->n; i++) { for (int c = 0; c < set->items[i].n; c++) { free(set->items[i].ctx[c]); free(set->items[i].cont[c]); } }
    free(set->items);
    memset(set, 0, sizeof(*set));
}

#endif // LLMC_MC_TASKS_H
