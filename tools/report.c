/*
 Side-by-side report of several runs: report [-g] -o OUT RUN_DIR [RUN_DIR...]. Each run folder holds the
 trainer's log.txt and (optionally) the eval.json of build/eval or eval_gpt_moba_cu (scripts/eval.sh). Writes OUT/report.md with a table per
 kind of evidence (training, LM accuracy, synthetic needles, RULER, LongBench, multiple choice) and SVG
 plots next to it: loss curves, loss by position, accuracy vs length, LongBench per subset.
 -g (a sweep of scripts/ablate.sh): runs named <variant>-s<seed> are grouped by variant, and a first table
 gives per variant the mean and the spread (sample standard deviation; 0 with one seed) over its seeds of
 the final validation loss and perplexity, training tokens/s, and per length the RULER single-needle
 average (niah_single_1/2/3) and the synthetic-needle average.
*/
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "llmc/json_value.h"
#include "llmc/eval/plot.h"
#include "llmc/synthetic.h"

#define MAX_RUNS 32
#define MAX_POINTS 100000

typedef struct {
    char name[256], dir[1024];
    double *step, *loss, *vstep, *vloss, *vrecall;
    double tok_s;  // of the last step logged (0: none)
    int n, nv;
    JValue ev;
    int has_eval;
} Run;

static void read_log(Run *r) {
    char path[1100], line[1024];
    snprintf(path, sizeof(path), "%s/log.txt", r->dir);
    r->step = (double *)malloc_check(MAX_POINTS * sizeof(double)); r->loss = (double *)malloc_check(MAX_POINTS * sizeof(double));
    r->vstep = (double *)malloc_check(MAX_POINTS * sizeof(double)); r->vloss = (double *)malloc_check(MAX_POINTS * sizeof(double));
    r->vrecall = (double *)malloc_check(MAX_POINTS * sizeof(double));
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "warning: %s: no log.txt; training columns left empty\n", r->dir); return; }
    while (fgets(line, sizeof(line), f)) {
        int step;
        double x, y;
        const char *ts = strstr(line, " tok_s ");
        if (sscanf(line, "step %d train_loss %lf", &step, &x) == 2 && r->n < MAX_POINTS) {
            r->step[r->n] = step; r->loss[r->n++] = x;
            if (ts) { r->tok_s = atof(ts + 7); }
        }
        else if (sscanf(line, "step %d val_loss %lf recall_acc %lf", &step, &x, &y) == 3 && r->nv < MAX_POINTS) {
            r->vstep[r->nv] = step; r->vloss[r->nv] = x; r->vrecall[r->nv++] = 100 * y;
        }
    }
    fclose(f);
}

static double num_or_nan(const JValue *v) { return v && v->kind == JV_NUM ? v->num : NAN; }

// Path lookup "a.b.c" in an eval.json (NULL when absent).
static const JValue *jpath(const Run *r, const char *a, const char *b, const char *c) {
    if (!r->has_eval) { return NULL; }
    const JValue *v = jv_get(&r->ev, a);
    if (v && b) { v = jv_get(v, b); }
    if (v && c) { v = jv_get(v, c); }
    return v;
}

// "| first | run1 | ... |" and its rule.
static void md_runs_header(FILE *md, const char *first, const Run *runs, int nr) {
    fprintf(md, "| %s |", first);
    for (int i = 0; i < nr; i++) { fprintf(md, " %s |", runs[i].name); }
    fprintf(md, "\n| --- |");
    for (int i = 0; i < nr; i++) { fprintf(md, " --- |"); }
    fprintf(md, "\n");
}

static void fmt(char *buf, size_t n, double x, const char *f) { if (isfinite(x)) { snprintf(buf, n, f, x); } else { snprintf(buf, n, "-"); } }

// Keys of section (an object of objects) over all runs, in first-seen order.
static int collect_keys(Run *runs, int nr, const char *section, const char **keys, int cap) {
    int n = 0;
    for (int i = 0; i < nr; i++) {
        const JValue *s = jpath(&runs[i], section, NULL, NULL);
        for (int k = 0; s && s->kind == JV_OBJ && k < s->n; k++) {
            int seen = 0;
            for (int j = 0; j < n; j++) { seen |= strcmp(keys[j], s->keys[k]) == 0; }
            if (!seen && n < cap) { keys[n++] = s->keys[k]; }
        }
    }
    return n;
}

// Task x length section (synthetic_needle or ruler): a table per run and the per-length average plot.
// Adds the lengths of a task x length section (the keys of section.<task>) over all runs to lens[0..nl)
// (each once, at most 64), sorted numerically; returns the new count.
static int collect_lengths(Run *runs, int nr, const char *section, const char **lens, int nl) {
    for (int i = 0; i < nr; i++) {
        const JValue *s = jpath(&runs[i], section, NULL, NULL);
        for (int t = 0; s && s->kind == JV_OBJ && t < s->n; t++) {
            const JValue *o = jv_get(s, s->keys[t]);
            for (int k = 0; o && o->kind == JV_OBJ && k < o->n; k++) {
                int seen = 0;
                for (int j = 0; j < nl; j++) { seen |= strcmp(lens[j], o->keys[k]) == 0; }
                if (!seen && nl < 64) { lens[nl++] = o->keys[k]; }
            }
        }
    }
    for (int i = 1; i < nl; i++) { const char *v = lens[i]; int j = i - 1; while (j >= 0 && atoi(lens[j]) > atoi(v)) { lens[j + 1] = lens[j]; j--; } lens[j + 1] = v; }
    return nl;
}

static void length_section(FILE *md, Run *runs, int nr, const char *section, const char *title, const char *out, const char *svg) {
    const char *tasks[64], *lens[64];
    int nt = collect_keys(runs, nr, section, tasks, 64), nl = collect_lengths(runs, nr, section, lens, 0);
    if (nt == 0) { return; }
    fprintf(md, "## %s\n\nScore %% per task and length (tokens).\n\n| run | task |", title);
    for (int l = 0; l < nl; l++) { fprintf(md, " %s |", lens[l]); }
    fprintf(md, "\n| --- | --- |");
    for (int l = 0; l < nl; l++) { fprintf(md, " --- |"); }
    fprintf(md, "\n");
    PlotSeries s[MAX_RUNS];
    double xs[MAX_RUNS][64], ys[MAX_RUNS][64];
    for (int i = 0; i < nr; i++) {
        double sum[64] = {0};
        int cnt[64] = {0};
        s[i].name = runs[i].name; s[i].x = xs[i]; s[i].y = ys[i]; s[i].n = 0;
        if (!jpath(&runs[i], section, NULL, NULL)) { continue; }
        for (int t = 0; t < nt; t++) {
            if (!jpath(&runs[i], section, tasks[t], NULL)) { continue; }
            fprintf(md, "| %s | %s |", runs[i].name, tasks[t]);
            for (int l = 0; l < nl; l++) {
                double v = num_or_nan(jpath(&runs[i], section, tasks[t], lens[l]));
                char b[32];
                fmt(b, sizeof(b), v, "%.1f");
                fprintf(md, " %s |", b);
                if (isfinite(v)) { sum[l] += v; cnt[l]++; }
            }
            fprintf(md, "\n");
        }
        fprintf(md, "| %s | **average** |", runs[i].name);
        for (int l = 0; l < nl; l++) {
            xs[i][l] = atof(lens[l]);
            ys[i][l] = cnt[l] ? sum[l] / cnt[l] : NAN;
            char b[32];
            fmt(b, sizeof(b), ys[i][l], "**%.1f**");
            fprintf(md, " %s |", b);
        }
        fprintf(md, "\n");
        s[i].name = runs[i].name; s[i].x = xs[i]; s[i].y = ys[i]; s[i].n = nl;
    }
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", out, svg);
    svg_line_chart(path, title, "length (tokens)", "average score %", s, nr, 1, 1);
    fprintf(md, "\n![%s](%s)\n\n", title, svg);
}

// Average over tasks (all, or those whose name starts with prefix) of section.task.length, NaN when none.
static double task_average(const Run *r, const char *section, const char *prefix, const char *len) {
    const JValue *s = jpath(r, section, NULL, NULL);
    double sum = 0;
    int n = 0;
    for (int k = 0; s && s->kind == JV_OBJ && k < s->n; k++) {
        if (prefix && strncmp(s->keys[k], prefix, strlen(prefix)) != 0) { continue; }
        double v = num_or_nan(jv_get(jv_get(s, s->keys[k]), len));
        if (isfinite(v)) { sum += v; n++; }
    }
    return n ? sum / n : NAN;
}

// "mean ± sd" of the finite x[0..n) (sd: sample standard deviation, 0 for one value); "-" when none.
static void mean_sd(char *buf, size_t cap, const double *x, int n, const char *f) {
    double sum = 0, sq = 0;
    int k = 0;
    for (int i = 0; i < n; i++) { if (isfinite(x[i])) { sum += x[i]; k++; } }
    if (k == 0) { snprintf(buf, cap, "-"); return; }
    double mean = sum / k;
    for (int i = 0; i < n; i++) { if (isfinite(x[i])) { sq += (x[i] - mean) * (x[i] - mean); } }
    char m[24], d[24];
    snprintf(m, sizeof(m), f, mean);
    snprintf(d, sizeof(d), f, k > 1 ? sqrt(sq / (k - 1)) : 0.0);
    snprintf(buf, cap, "%s ± %s", m, d);
}

// The sweep table of -g: one row per variant (run name up to "-s<seed>"), in first-seen order.
static void sweep_section(FILE *md, Run *runs, int nr) {
    char variants[MAX_RUNS][sizeof(runs[0].name)];
    int group[MAX_RUNS], nvar = 0;
    for (int i = 0; i < nr; i++) {
        char v[sizeof(runs[i].name)];
        memcpy(v, runs[i].name, sizeof(v));
        char *dash = strrchr(v, '-');
        if (dash && dash[1] == 's' && dash[2] && strspn(dash + 2, "0123456789") == strlen(dash + 2)) { *dash = '\0'; }
        group[i] = -1;
        for (int j = 0; j < nvar; j++) { if (strcmp(variants[j], v) == 0) { group[i] = j; } }
        if (group[i] < 0) { memcpy(variants[nvar], v, sizeof(v)); group[i] = nvar++; }
    }
    const char *lens[64];  // every length of the RULER or synthetic-needle results, ascending
    int nl = collect_lengths(runs, nr, "synthetic_needle", lens, collect_lengths(runs, nr, "ruler", lens, 0));
    int has_probes = 0;
    for (int i = 0; i < nr; i++) { has_probes |= jpath(&runs[i], "recall_probes", "acc", NULL) != NULL; }
    fprintf(md, "## Sweep: mean ± standard deviation over seeds\n\n| variant | seeds | val loss | perplexity | tokens/s |");
    if (has_probes) { fprintf(md, " retrieval probes |"); }
    for (int l = 0; l < nl; l++) { fprintf(md, " S-NIAH %s |", lens[l]); }
    for (int l = 0; l < nl; l++) { fprintf(md, " synthetic %s |", lens[l]); }
    fprintf(md, "\n| --- | --- | --- | --- | --- |%s", has_probes ? " --- |" : "");
    for (int l = 0; l < 2 * nl; l++) { fprintf(md, " --- |"); }
    fprintf(md, "\n");
    for (int g = 0; g < nvar; g++) {
        double vl[MAX_RUNS], ppl[MAX_RUNS], tps[MAX_RUNS], probes[MAX_RUNS];
        int n = 0;
        for (int i = 0; i < nr; i++) {
            if (group[i] != g) { continue; }
            vl[n] = runs[i].nv ? runs[i].vloss[runs[i].nv - 1] : NAN;
            ppl[n] = exp(vl[n]);
            tps[n] = runs[i].tok_s > 0 ? runs[i].tok_s : NAN;
            probes[n] = num_or_nan(jpath(&runs[i], "recall_probes", "acc", NULL));
            n++;
        }
        char a[64], b[64], c[64];  // two numbers of mean_sd's 24 characters each
        mean_sd(a, sizeof(a), vl, n, "%.4f");
        mean_sd(b, sizeof(b), ppl, n, "%.2f");
        mean_sd(c, sizeof(c), tps, n, "%.0f");
        fprintf(md, "| %s | %d | %s | %s | %s |", variants[g], n, a, b, c);
        if (has_probes) {
            mean_sd(a, sizeof(a), probes, n, "%.1f");
            fprintf(md, " %s |", a);
        }
        for (int pass = 0; pass < 2; pass++) {
            for (int l = 0; l < nl; l++) {
                double x[MAX_RUNS];
                int k = 0;
                for (int i = 0; i < nr; i++) {
                    if (group[i] == g) { x[k++] = pass == 0 ? task_average(&runs[i], "ruler", "niah_single_", lens[l]) : task_average(&runs[i], "synthetic_needle", NULL, lens[l]); }
                }
                mean_sd(a, sizeof(a), x, k, "%.1f");
                fprintf(md, " %s |", a);
            }
        }
        fprintf(md, "\n");
    }
    fprintf(md, "\nVal loss: the trainer's last validation (log.txt); perplexity = exp(val loss) per run, then averaged. "
                "S-NIAH: RULER niah_single_1/2/3 averaged, %% correct; synthetic: the built-in needle tasks averaged.%s\n\n",
            has_probes ? " Retrieval probes: % of held-out recall documents whose first answer is the greedy continuation (eval -R)." : "");
}

int main(int argc, char **argv) {
    const char *out = NULL;
    int sweep = 0;
    Run runs[MAX_RUNS];
    int nr = 0;
    memset(runs, 0, sizeof(runs));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0) {
            printf("usage: report [-g] -o OUT_DIR RUN_DIR [RUN_DIR...] (up to %d runs)\n"
                   "  -g  a sweep: group runs named <variant>-s<seed> and tabulate mean and spread over seeds\n", MAX_RUNS);
            return 0;
        }
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) { out = argv[++i]; continue; }
        if (strcmp(argv[i], "-g") == 0) { sweep = 1; continue; }
        if (argv[i][0] == '-') { die("unknown flag '%s' (usage: report -o OUT_DIR RUN_DIR...)", argv[i]); }
        if (nr == MAX_RUNS) { die("at most %d runs per report", MAX_RUNS); }
        struct stat sb;
        if (stat(argv[i], &sb) != 0 || !S_ISDIR(sb.st_mode)) { die("run folder '%s' does not exist", argv[i]); }
        Run *r = &runs[nr++];
        snprintf(r->dir, sizeof(r->dir), "%s", argv[i]);
        char tmp[1024];
        snprintf(tmp, sizeof(tmp), "%s", argv[i]);
        size_t l = strlen(tmp);
        while (l > 1 && tmp[l - 1] == '/') { tmp[--l] = '\0'; }
        snprintf(r->name, sizeof(r->name), "%s", basename(tmp));
        read_log(r);
        char path[1100];
        snprintf(path, sizeof(path), "%s/eval.json", r->dir);
        if (stat(path, &sb) == 0) { jv_parse_file(&r->ev, path); r->has_eval = 1; }
        else { printf("note: %s has no eval.json, so its eval columns show '-': scripts/eval.sh -c %s writes one\n", r->dir, r->dir); }
    }
    if (!out || nr == 0) { die("usage: report -o OUT_DIR RUN_DIR [RUN_DIR...]"); }
    syn_mkdir_p(out);
    char path[1200];
    snprintf(path, sizeof(path), "%s/report.md", out);
    AtomicFile af;
    atomic_open(&af, path);
    FILE *md = af.f;
    fprintf(md, "# moba.c report: %d runs\n\n", nr);
    if (sweep) { sweep_section(md, runs, nr); }
    fprintf(md, "## Runs\n\n| run | attention | params | steps | final train loss | final val loss | recall acc %% (train eval) |\n| --- | --- | --- | --- | --- | --- | --- |\n");
    for (int i = 0; i < nr; i++) {
        Run *r = &runs[i];
        char attn[128] = "-", params[32] = "-", tl[32], vl[32], ra[32];
        const JValue *cfg = jpath(r, "config", NULL, NULL);
        if (cfg) {
            const JValue *kind = jv_get(cfg, "attn");
            if (kind && kind->kind == JV_STR && strcmp(kind->str, "moba") == 0) {
                snprintf(attn, sizeof(attn), "MoBA B%g k%g kconv%g", num_or_nan(jv_get(cfg, "moba_block")), num_or_nan(jv_get(cfg, "moba_topk")), num_or_nan(jv_get(cfg, "kconv")));
            } else { snprintf(attn, sizeof(attn), "dense kconv%g", num_or_nan(jv_get(cfg, "kconv"))); }
            fmt(params, sizeof(params), num_or_nan(jv_get(cfg, "params")), "%.0f");
        }
        fmt(tl, sizeof(tl), r->n ? r->loss[r->n - 1] : NAN, "%.4f");
        fmt(vl, sizeof(vl), r->nv ? r->vloss[r->nv - 1] : NAN, "%.4f");
        fmt(ra, sizeof(ra), r->nv ? r->vrecall[r->nv - 1] : NAN, "%.1f");
        fprintf(md, "| %s | %s | %s | %d | %s | %s | %s |\n", r->name, attn, params, r->n ? (int)r->step[r->n - 1] : 0, tl, vl, ra);
    }
    PlotSeries s[MAX_RUNS];
    for (int i = 0; i < nr; i++) { s[i].name = runs[i].name; s[i].x = runs[i].step; s[i].y = runs[i].loss; s[i].n = runs[i].n; }
    snprintf(path, sizeof(path), "%s/train_loss.svg", out);
    svg_line_chart(path, "training loss", "step", "loss", s, nr, 0, 0);
    for (int i = 0; i < nr; i++) { s[i].x = runs[i].vstep; s[i].y = runs[i].vloss; s[i].n = runs[i].nv; }
    snprintf(path, sizeof(path), "%s/val_loss.svg", out);
    svg_line_chart(path, "validation loss", "step", "loss", s, nr, 0, 0);
    fprintf(md, "\n![training loss](train_loss.svg) ![validation loss](val_loss.svg)\n\n");

    // LM accuracy and loss by position
    int any_lm = 0;
    double bx[MAX_RUNS][256], by[MAX_RUNS][256];
    for (int i = 0; i < nr; i++) {
        const JValue *lm = jpath(&runs[i], "lm", NULL, NULL);
        s[i].n = 0; s[i].x = bx[i]; s[i].y = by[i];
        if (!lm) { continue; }
        if (!any_lm) { fprintf(md, "## LM accuracy (eval)\n\n| run | val loss | next-token acc %% | tokens | T |\n| --- | --- | --- | --- | --- |\n"); }
        any_lm = 1;
        fprintf(md, "| %s | %.4f | %.2f | %.0f | %.0f |\n", runs[i].name, num_or_nan(jv_get(lm, "val_loss")), 100 * num_or_nan(jv_get(lm, "token_acc")),
                num_or_nan(jv_get(lm, "tokens")), num_or_nan(jv_get(lm, "seq_len")));
        const JValue *b = jv_get(lm, "bucket_loss");
        double T = num_or_nan(jv_get(lm, "seq_len"));
        for (int k = 0; b && b->kind == JV_ARR && k < b->n && k < 256; k++) { bx[i][k] = (k + 0.5) * T / b->n; by[i][k] = num_or_nan(&b->items[k]); s[i].n = k + 1; }
    }
    if (any_lm) {
        snprintf(path, sizeof(path), "%s/loss_by_position.svg", out);
        svg_line_chart(path, "loss by position (eval)", "position (bucket centre)", "loss", s, nr, 0, 0);
        fprintf(md, "\n![loss by position](loss_by_position.svg)\n\n");
    }
    length_section(md, runs, nr, "synthetic_needle", "Synthetic needle tasks", out, "synthetic_vs_length.svg");
    length_section(md, runs, nr, "ruler", "RULER", out, "ruler_vs_length.svg");

    const char *sets[64];
    int ns = collect_keys(runs, nr, "longbench", (const char **)sets, 64);
    if (ns > 0) {
        fprintf(md, "## LongBench\n\n");
        md_runs_header(md, "dataset", runs, nr);
        double ys[MAX_RUNS][64];
        for (int d = 0; d < ns; d++) {
            fprintf(md, "| %s |", sets[d]);
            for (int i = 0; i < nr; i++) {
                ys[i][d] = num_or_nan(jpath(&runs[i], "longbench", sets[d], NULL));
                char b[32];
                fmt(b, sizeof(b), ys[i][d], "%.2f");
                fprintf(md, " %s |", b);
            }
            fprintf(md, "\n");
        }
        for (int i = 0; i < nr; i++) { s[i].name = runs[i].name; s[i].y = ys[i]; s[i].n = ns; }
        snprintf(path, sizeof(path), "%s/longbench.svg", out);
        svg_bar_chart(path, "LongBench", "score", sets, ns, s, nr);
        fprintf(md, "\n![LongBench](longbench.svg)\n\n");
    }
    int nm = collect_keys(runs, nr, "mc", (const char **)sets, 64);
    if (nm > 0) {
        fprintf(md, "## Multiple choice (acc / acc_norm %%)\n\n");
        md_runs_header(md, "set", runs, nr);
        for (int d = 0; d < nm; d++) {
            fprintf(md, "| %s |", sets[d]);
            for (int i = 0; i < nr; i++) {
                char a[32], b[32];
                fmt(a, sizeof(a), num_or_nan(jpath(&runs[i], "mc", sets[d], "acc")), "%.2f");
                fmt(b, sizeof(b), num_or_nan(jpath(&runs[i], "mc", sets[d], "acc_norm")), "%.2f");
                fprintf(md, " %s / %s |", a, b);
            }
            fprintf(md, "\n");
        }
        fprintf(md, "\n");
    }
    static const char *const lm_rows[4][3] = {{"WikiText-2 word perplexity", "wikitext", "word_perplexity"}, {"WikiText-2 bits per byte", "wikitext", "bits_per_byte"},
                                              {"LAMBADA accuracy %", "lambada", "acc"}, {"LAMBADA perplexity", "lambada", "perplexity"}};
    int has_lm = 0;
    for (int i = 0; i < nr; i++) { has_lm |= jpath(&runs[i], "wikitext", NULL, NULL) || jpath(&runs[i], "lambada", NULL, NULL); }
    if (has_lm) {
        fprintf(md, "## WikiText-2 and LAMBADA\n\n");
        md_runs_header(md, "metric", runs, nr);
        for (int k = 0; k < 4; k++) {
            fprintf(md, "| %s |", lm_rows[k][0]);
            for (int i = 0; i < nr; i++) {
                char a[32];
                fmt(a, sizeof(a), num_or_nan(jpath(&runs[i], lm_rows[k][1], lm_rows[k][2], NULL)), "%.4g");
                fprintf(md, " %s |", a);
            }
            fprintf(md, "\n");
        }
        fprintf(md, "\n");
    }
    atomic_close(&af);
    printf("wrote %s/report.md\n", out);
    for (int i = 0; i < nr; i++) {
        free(runs[i].step); free(runs[i].loss); free(runs[i].vstep); free(runs[i].vloss); free(runs[i].vrecall);
        if (runs[i].has_eval) { jv_free(&runs[i].ev); }
    }
    return 0;
}
