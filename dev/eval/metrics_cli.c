/*
 The evaluation's text rules as a command, for dev/eval/crosscheck.py to compare with Python: reads JSONL
 cases from a file, {"f": name, "a": str, "b": str, "list": [str], "nums": [number]}, and prints one
 result per line (a number as %.17g, or a JSON string). Names: qa_f1, rouge_l, classification (a, b,
 list = classes), retrieval, count, code_sim, ruler_all / ruler_part (a, list = answers), normalize,
 lower, capitalize, hellaswag, detok, words (a), acc_norm (nums = log-likelihoods, list = choices:
 the chosen index).
    build/metrics_cli cases.jsonl
*/
#include "llmc/eval/eval_metrics.h"
#include "llmc/eval/lm_tasks.h"
#include "llmc/eval/mc_tasks.h"

static char **list_strings(const JValue *v, int *n) {
    char **s = NULL;
    *n = jv_string_array(v, "list", &s, 1, "cases", 0);
    return s;
}

static void print_string(const char *s) { json_write_string(stdout, s, strlen(s)); fputc('\n', stdout); }

static void run_case(const JValue *v, const char *path, uint64_t line, void *ctx) {
    const char *f = jv_field(v, "f", JV_STR, path, line)->str;
    const JValue *ja = jv_get(v, "a"), *jb = jv_get(v, "b");
    const char *a = ja && ja->kind == JV_STR ? ja->str : "", *b = jb && jb->kind == JV_STR ? jb->str : "";
    int n;
    char **list = list_strings(v, &n), *s = NULL;
    if (strcmp(f, "qa_f1") == 0) { printf("%.17g\n", qa_f1_score(a, b)); }
    else if (strcmp(f, "rouge_l") == 0) { printf("%.17g\n", rouge_l_score(a, b)); }
    else if (strcmp(f, "classification") == 0) { printf("%.17g\n", classification_score(a, b, (const char *const *)list, n)); }
    else if (strcmp(f, "retrieval") == 0) { printf("%.17g\n", retrieval_score(a, b)); }
    else if (strcmp(f, "count") == 0) { printf("%.17g\n", count_score(a, b)); }
    else if (strcmp(f, "code_sim") == 0) { printf("%.17g\n", code_sim_score(a, b)); }
    else if (strcmp(f, "ruler_all") == 0) { printf("%.17g\n", ruler_all_match(a, (const char *const *)list, n)); }
    else if (strcmp(f, "ruler_part") == 0) { printf("%.17g\n", ruler_part_match(a, (const char *const *)list, n)); }
    else if (strcmp(f, "normalize") == 0) { print_string(s = normalize_answer(a)); }
    else if (strcmp(f, "lower") == 0) {
        CpStr c = cps_from_cstr(a), l = cps_lower(c.c, c.n);
        print_string(s = cps_release_utf8(&l));
        free(c.c);
    }
    else if (strcmp(f, "capitalize") == 0) { print_string(s = utf8_capitalize(a)); }
    else if (strcmp(f, "hellaswag") == 0) { print_string(s = hellaswag_preprocess(a)); }
    else if (strcmp(f, "detok") == 0) { print_string(s = wikitext_detokenize(a)); }
    else if (strcmp(f, "words") == 0) { printf("%ld\n", wikitext_words(a)); }
    else if (strcmp(f, "acc_norm") == 0) {
        const JValue *nums = jv_field(v, "nums", JV_ARR, path, line);
        if (nums->n != n || n < 1 || n > MC_MAX_CHOICES) { die("%s:%llu: acc_norm needs as many nums as list entries", path, (unsigned long long)line); }
        double lp[MC_MAX_CHOICES];
        int chars[MC_MAX_CHOICES];
        for (int i = 0; i < n; i++) { lp[i] = nums->items[i].num; chars[i] = utf8_length(list[i]); }
        printf("%d\n", mc_argmax(lp, chars, n));
    }
    else { die("%s:%llu: unknown function '%s'", path, (unsigned long long)line, f); }
    free(s);
    free_strings(list, n);
}

int main(int argc, char **argv) {
    if (argc != 2 || strcmp(argv[1], "-h") == 0) { fprintf(stderr, "usage: build/metrics_cli CASES.jsonl (see the header of dev/eval/metrics_cli.c)\n"); return argc == 2 ? 0 : 1; }
    jsonl_for_each(argv[1], run_case, NULL);
    return 0;
}
