/*
 Zero-shot multiple-choice sets in lm-evaluation-harness's task formats, read from the JSONL exports of
 the Hugging Face datasets (or the original files where noted), as (context, continuations, gold) items.
 Each continuation is " " + choice (lm-eval's target delimiter); acc_norm divides by the choice's length
 in characters (code points, delimiter excluded), as lm-eval does.
   hellaswag       {"activity_label", "ctx_a", "ctx_b", "endings": [4], "label"}: context
                   preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()), choices
                   preprocess(ending); preprocess strips, turns " [title]" into ". ", drops "[...]" and
                   replaces double spaces (lm-eval's hellaswag utils)
   piqa            {"goal", "sol1", "sol2", "label"}            "Question: goal\nAnswer:", sol1 / sol2
   arc             {"question", "choices": {"text", "label"}, "answerKey"} (HF) or
                   {"question": {"stem", "choices": [{"text", "label"}]}, "answerKey"} (AI2 files)
                                                                "Question: q\nAnswer:", choices' text
   openbookqa      {"question_stem", "choices": {"text", "label"}, "answerKey"}   question_stem, text
   winogrande      {"sentence" with '_', "option1", "option2", "answer": "1"|"2"}: partial scoring, one
                   context per option (the sentence up to '_' with the option), the same continuation
                   " " + the rest of the sentence stripped; acc only
   truthfulqa_mc1  {"question", "mc1_targets": {"choices", "labels"}}: lm-eval's six-shot QA prompt +
                   "\n\nQ: question\nA:", gold = the first choice; acc only
   truthfulqa_mc2  {"question", "mc2_targets": {"choices", "labels"}}: the same prompt; the score is the
                   probability mass of the true choices among all (labels 1)
 Labels may be numbers or numeric strings. Scoring: llmc/eval/eval_driver.h (eval_mc).
*/
#ifndef LLMC_MC_TASKS_H
#define LLMC_MC_TASKS_H

#include "../json_value.h"
#include "ruler.h"
#include "../unicode.h"

#define MC_MAX_CHOICES 32

enum { MC_ACC_NORM, MC_ACC, MC_MC2 };  // what a set reports: acc + acc_norm, acc, the mc2 mass

typedef struct {
    char *ctx[MC_MAX_CHOICES];   // context per choice (the same string repeated except for winogrande)
    char *cont[MC_MAX_CHOICES];  // continuation per choice: " " + choice
    int chars[MC_MAX_CHOICES];   // the choice's length in characters (acc_norm)
    unsigned char truth[MC_MAX_CHOICES];  // truthfulqa_mc2: the true choices
    int n, label;
} MCItem;

typedef struct { MCItem *items; int n, cap; const char *format; int metric; } MCSet;
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

static const char *const truthfulqa_primer =
    "Q: What is human life expectancy in the United States?\nA: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\nA: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\nA: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\nA: I have no comment.\n\n"
    "Q: How does a telescope work?\nA: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\nA: The 1992 Olympics were held in Barcelona, Spain.";

// Python's str.strip(): without leading and trailing whitespace (malloc'd).
static inline char *utf8_strip(const char *s) {
    CpStr c = cps_from_cstr(s);
    int a = 0, b = c.n;
    while (a < b && uc_is_space(c.c[a])) { a++; }
    while (b > a && uc_is_space(c.c[b - 1])) { b--; }
    char *out = cps_to_utf8(c.c + a, b - a);
    free(c.c);
    return out;
}

// s.replace(from, to), one left-to-right pass of non-overlapping matches (malloc'd).
static inline char *str_replace_all(const char *s, const char *from, const char *to) {
    StrBuf b = {0};
    sb_puts(&b, "");
    size_t lf = strlen(from);
    for (const char *p = s; *p;) {
        const char *m = strstr(p, from);
        if (!m) { sb_puts(&b, p); break; }
        sb_put(&b, p, (size_t)(m - p)); sb_puts(&b, to);
        p = m + lf;
    }
    return b.s;
}

// lm-eval's hellaswag preprocess: strip, " [title]" -> ". ", remove "[...]" (re \[.*?\], not across a
// newline), "  " -> " " (malloc'd).
static inline char *hellaswag_preprocess(const char *text) {
    char *t = utf8_strip(text), *u = str_replace_all(t, " [title]", ". ");
    StrBuf b = {0};
    sb_puts(&b, "");
    for (const char *p = u; *p;) {
        const char *close = *p == '[' ? strpbrk(p + 1, "]\n") : NULL;
        if (close && *close == ']') { p = close + 1; continue; }
        sb_put(&b, p++, 1);
    }
    char *out = str_replace_all(b.s, "  ", " ");
    free(t); free(u); free(b.s);
    return out;
}

// Sets choice i: context ctx and the continuation " " + choice (choice is taken over).
static inline void mc_choice(MCItem *it, int i, const char *ctx, char *choice) {
    it->ctx[i] = str_dup(ctx);
    it->cont[i] = str_cat3(" ", choice, "");
    it->chars[i] = utf8_length(choice);
    free(choice);
}

static inline void mc_check_count(int n, const char *path, uint64_t line) {
    if (n < 1 || n > MC_MAX_CHOICES) { die("%s:%llu: %d choices (1 to %d supported)", path, (unsigned long long)line, n, MC_MAX_CHOICES); }
}

static inline const JValue *mc_string_item(const JValue *arr, int i, const char *what, const char *path, uint64_t line) {
    if (arr->items[i].kind != JV_STR) { die("%s:%llu: '%s' must hold strings", path, (unsigned long long)line, what); }
    return &arr->items[i];
}

// Choices from {"text": [...], "label": [...]} with the gold one named by key (HF ARC, OpenBookQA).
static inline void mc_labelled_choices(MCItem *it, const JValue *choices, const char *ctx, const char *key, const char *path, uint64_t line) {
    const JValue *texts = jv_field(choices, "text", JV_ARR, path, line), *labels = jv_field(choices, "label", JV_ARR, path, line);
    if (texts->n != labels->n) { die("%s:%llu: 'choices' has %d texts and %d labels", path, (unsigned long long)line, texts->n, labels->n); }
    mc_check_count(texts->n, path, line);
    it->label = -1;
    for (int i = 0; i < texts->n; i++) {
        mc_choice(it, i, ctx, str_dup(mc_string_item(texts, i, "choices.text", path, line)->str));
        if (strcmp(mc_string_item(labels, i, "choices.label", path, line)->str, key) == 0) { it->label = i; }
    }
    it->n = texts->n;
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
        char *cap = utf8_capitalize(jv_field(v, "ctx_b", JV_STR, path, line)->str);
        char *c1 = str_cat3(jv_field(v, "ctx_a", JV_STR, path, line)->str, " ", cap);
        char *c2 = str_cat3(jv_field(v, "activity_label", JV_STR, path, line)->str, ": ", c1);
        char *query = hellaswag_preprocess(c2);
        const JValue *e = jv_field(v, "endings", JV_ARR, path, line);
        mc_check_count(e->n, path, line);
        for (int i = 0; i < e->n; i++) { mc_choice(it, i, query, hellaswag_preprocess(mc_string_item(e, i, "endings", path, line)->str)); }
        it->n = e->n;
        it->label = mc_label(v, "label", path, line);
        free(cap); free(c1); free(c2); free(query);
    } else if (strcmp(f, "piqa") == 0) {
        char *c = str_cat3("Question: ", jv_field(v, "goal", JV_STR, path, line)->str, "\nAnswer:");
        const char *keys[2] = {"sol1", "sol2"};
        for (int i = 0; i < 2; i++) { mc_choice(it, i, c, str_dup(jv_field(v, keys[i], JV_STR, path, line)->str)); }
        free(c);
        it->n = 2;
        it->label = mc_label(v, "label", path, line);
    } else if (strcmp(f, "arc") == 0) {
        const JValue *q = jv_get(v, "question");
        const char *key = jv_field(v, "answerKey", JV_STR, path, line)->str;
        if (q && q->kind == JV_OBJ) {  // AI2 layout: choices as a list of {text, label}
            char *c = str_cat3("Question: ", jv_field(q, "stem", JV_STR, path, line)->str, "\nAnswer:");
            const JValue *choices = jv_field(q, "choices", JV_ARR, path, line);
            mc_check_count(choices->n, path, line);
            it->label = -1;
            for (int i = 0; i < choices->n; i++) {
                const JValue *t = jv_get(&choices->items[i], "text"), *l = jv_get(&choices->items[i], "label");
                if (!t || t->kind != JV_STR || !l || l->kind != JV_STR) { die("%s:%llu: ARC choices need string 'text' and 'label'", path, (unsigned long long)line); }
                mc_choice(it, i, c, str_dup(t->str));
                if (strcmp(l->str, key) == 0) { it->label = i; }
            }
            it->n = choices->n;
            free(c);
        } else {
            char *c = str_cat3("Question: ", jv_field(v, "question", JV_STR, path, line)->str, "\nAnswer:");
            mc_labelled_choices(it, jv_field(v, "choices", JV_OBJ, path, line), c, key, path, line);
            free(c);
        }
    } else if (strcmp(f, "openbookqa") == 0) {
        const char *key = jv_field(v, "answerKey", JV_STR, path, line)->str;
        while (*key && utf8_space_len(key)) { key += utf8_space_len(key); }  // answerKey.lstrip()
        mc_labelled_choices(it, jv_field(v, "choices", JV_OBJ, path, line), jv_field(v, "question_stem", JV_STR, path, line)->str, key, path, line);
    } else if (strcmp(f, "winogrande") == 0) {
        const char *s = jv_field(v, "sentence", JV_STR, path, line)->str, *blank = strchr(s, '_');
        if (!blank) { die("%s:%llu: winogrande 'sentence' has no '_'", path, (unsigned long long)line); }
        char *prefix = (char *)malloc_check((size_t)(blank - s) + 1);
        memcpy(prefix, s, (size_t)(blank - s)); prefix[blank - s] = '\0';
        const char *opts[2] = {jv_field(v, "option1", JV_STR, path, line)->str, jv_field(v, "option2", JV_STR, path, line)->str};
        for (int i = 0; i < 2; i++) {
            char *c = str_cat3(prefix, opts[i], "");
            mc_choice(it, i, c, utf8_strip(blank + 1));
            free(c);
        }
        free(prefix);
        it->n = 2;
        it->label = mc_label(v, "answer", path, line) - 1;
    } else if (strcmp(f, "truthfulqa_mc1") == 0 || strcmp(f, "truthfulqa_mc2") == 0) {
        char *q = str_cat3("\n\nQ: ", jv_field(v, "question", JV_STR, path, line)->str, "\nA:"), *c = str_cat3(truthfulqa_primer, q, "");
        const char *field = strcmp(f, "truthfulqa_mc1") == 0 ? "mc1_targets" : "mc2_targets";
        const JValue *t = jv_field(v, field, JV_OBJ, path, line);
        const JValue *choices = jv_field(t, "choices", JV_ARR, path, line), *labels = jv_field(t, "labels", JV_ARR, path, line);
        if (choices->n != labels->n) { die("%s:%llu: '%s' has %d choices and %d labels", path, (unsigned long long)line, field, choices->n, labels->n); }
        mc_check_count(choices->n, path, line);
        for (int i = 0; i < choices->n; i++) {
            if (labels->items[i].kind != JV_NUM) { die("%s:%llu: '%s.labels' must hold numbers", path, (unsigned long long)line, field); }
            mc_choice(it, i, c, str_dup(mc_string_item(choices, i, "choices", path, line)->str));
            it->truth[i] = labels->items[i].num != 0;
        }
        it->n = choices->n;
        it->label = 0;  // lm-eval's doc_to_target: the first choice is the true one
        free(q); free(c);
    } else {
        die("unknown multiple-choice format '%s' (hellaswag, piqa, arc, openbookqa, winogrande, truthfulqa_mc1, truthfulqa_mc2)", f);
    }
    if (it->label < 0 || it->label >= it->n) { die("%s:%llu: label %d is not one of the %d choices", path, (unsigned long long)line, it->label, it->n); }
    set->n++;
}

// lm-eval's choice: argmax of the log-likelihoods, divided by each choice's length in characters when
// chars is given (acc_norm); ties to the first.
static inline int mc_argmax(const double *lp, const int *chars, int n) {
    int best = 0;
    for (int c = 1; c < n; c++) {
        double a = chars ? lp[c] / chars[c] : lp[c], b = chars ? lp[best] / chars[best] : lp[best];
        if (a > b) { best = c; }
    }
    return best;
}

static inline MCSet mc_load(const char *format, const char *path) {
    MCSet set = {NULL, 0, 0, format, strcmp(format, "winogrande") == 0 || strcmp(format, "truthfulqa_mc1") == 0 ? MC_ACC : strcmp(format, "truthfulqa_mc2") == 0 ? MC_MC2 : MC_ACC_NORM};
    jsonl_for_each(path, mc_add, &set);
    return set;
}

static inline void mc_free(MCSet *set) {
    for (int i = 0; i < set->n; i++) { for (int c = 0; c < set->items[i].n; c++) { free(set->items[i].ctx[c]); free(set->items[i].cont[c]); } }
    free(set->items);
    memset(set, 0, sizeof(*set));
}

#endif // LLMC_MC_TASKS_H
