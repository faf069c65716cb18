/*
 The evaluation driver shared by the CPU program (tools/eval.c: fp32 reference model, llmc/eval/kv_cache.h)
 and the GPU one (eval_gpt_moba.cu: llmc/eval/kv_cache.cuh): LM accuracy on token shards (val loss, next-token
 accuracy, loss and accuracy by position bucket), needle tasks in the synthetic corpus's tokens, RULER
 tasks and lengths, LongBench subsets from a data folder, multiple-choice log-likelihood sets and a greedy
 trace (CPU vs GPU tokens). Writes <out>/eval.json, <out>/eval.md and per-sample predictions
 (<out>/ruler_pred.jsonl, <out>/longbench_pred/<dataset>.jsonl in LongBench's pred format).
 A program parses the flags (parse_eval_args), opens its model as an EvalModel with eval_capacity()
 tokens of cache, and calls eval_run. Whenever a task of the FlashMoBA paper's list ran (WikiText-2,
 LAMBADA, the zero-shot sets, RULER S-NIAH-1/2/3, the 12 LongBench subsets), eval.md ends with the
 paper's tables for this checkpoint. doc/eval.md has the details.
*/
#ifndef LLMC_EVAL_DRIVER_H
#define LLMC_EVAL_DRIVER_H

#include <sys/stat.h>
#include "../config.h"
#include "../dataloader.h"
#include "../run_dir.h"       // now_seconds
#include "../train_args.h"    // flag_value, parse_int
#include "lm_tasks.h"
#include "longbench.h"
#include "mc_tasks.h"
#include "ruler.h"
#include "sampling.h"
#include "syn_needle.h"

// A model as the evaluation sees it: a KV cache for generation and a batched forward for scoring.
typedef struct {
    void *ctx;
    ModelConfig cfg;
    int capacity;        // tokens the cache holds (prompt + generated)
    PrefillFn prefill;   // llmc/eval/sampling.h: reset the cache to a prompt, logits of its last position
    StepFn step;         // append one token, logits of the next position
    // Forward of a (B, T) batch: per-position loss of the target (0 where the target is -1) and, unless
    // argmax is NULL, the argmax token; host arrays of B*T.
    void (*score)(void *ctx, const int *inputs, const int *targets, int B, int T, float *losses, int *argmax);
    const char *device;  // for the report: "CPU fp32", "NVIDIA H100 bf16"
} EvalModel;

typedef struct {
    const char *ckpt, *out, *tokenizer, *ruler, *lengths, *essay, *squad, *hotpot, *syn, *lb_dir, *lb_sets, *val, *mc, *trace, *wikitext, *lambada, *probes;
    int samples, lb_max, T, B, batches, buckets, context;
    uint64_t seed;
} EvalArgs;

static void usage(void) {
    printf("usage: build/eval (CPU) or ./eval_gpt_moba_cu (GPU) -c CHECKPOINT [-flag value]...\n"
           "  -c  checkpoint (required)                 -o  output folder (default: the checkpoint's)\n"
           "  -k  tokenizer file: moba.c BPE, tokenizer.model or tokenizer.json (RULER, LongBench, WikiText, LAMBADA,\n"
           "      multiple choice)\n"
           "  -j  val shards glob: LM accuracy           -t  its sequence length (256)  -b  batch (4)\n"
           "  -m  val batches (8)                        -P  position buckets (8)\n"
           "  -s  synthetic needle tasks: all | syn_single,syn_multikey,syn_multiquery\n"
           "  -r  RULER tasks: all | comma list          -l  lengths in tokens, comma list (4096)\n"
           "  -n  samples per task and length (10)       -e  essay haystack text file\n"
           "  -q  SQuAD v2 JSON (qa_1)                   -Q  HotpotQA JSON (qa_2)\n"
           "  -L  LongBench data folder (<dataset>.jsonl)  -d  datasets, comma list (every English one present)\n"
           "  -N  max LongBench records per dataset (all)  -C  context for LongBench (model max, at most 32768)\n"
           "  -M  multiple choice: format:file.jsonl[,...] (hellaswag, piqa, arc, arc_easy, arc_challenge,\n"
           "      openbookqa, winogrande, truthfulqa_mc1, truthfulqa_mc2; lm-eval's HF JSONL fields)\n"
           "  -w  WikiText-2 document-level JSONL ({\"page\"}): rolling log-likelihood perplexity\n"
           "  -a  LAMBADA JSONL ({\"text\"}): last-word accuracy and perplexity\n"
           "  -R  retrieval probes JSONL in LAMBADA's format (build/prepare -P): last-word accuracy and perplexity\n"
           "  -G  greedy trace file: -n random prompts of L/2 tokens (L: first -l), L/2 greedy tokens each,\n"
           "      one line per token with the top-2 logits (CPU vs GPU: dev/eval/compare_greedy.py)\n"
           "  -g  seed (1)\n");
}

static EvalArgs parse_eval_args(int argc, char **argv) {
    EvalArgs a;
    memset(&a, 0, sizeof(a));
    a.lengths = "4096"; a.samples = 10; a.T = 256; a.B = 4; a.batches = 8; a.buckets = 8; a.seed = 1; a.lb_max = -1;
    for (int i = 1; i < argc; i += 2) {
        const char *f = argv[i];
        if (strcmp(f, "-h") == 0) { usage(); exit(0); }
        const char *v = flag_value(argc, argv, i);
        switch (f[1]) {
        case 'c': a.ckpt = v; break;
        case 'o': a.out = v; break;
        case 'k': a.tokenizer = v; break;
        case 'j': a.val = v; break;
        case 't': a.T = parse_int(f, v); break;
        case 'b': a.B = parse_int(f, v); break;
        case 'm': a.batches = parse_int(f, v); break;
        case 'P': a.buckets = parse_int(f, v); break;
        case 's': a.syn = v; break;
        case 'r': a.ruler = v; break;
        case 'l': a.lengths = v; break;
        case 'n': a.samples = parse_int(f, v); break;
        case 'e': a.essay = v; break;
        case 'q': a.squad = v; break;
        case 'Q': a.hotpot = v; break;
        case 'L': a.lb_dir = v; break;
        case 'd': a.lb_sets = v; break;
        case 'N': a.lb_max = parse_int(f, v); break;
        case 'C': a.context = parse_int(f, v); break;
        case 'M': a.mc = v; break;
        case 'w': a.wikitext = v; break;
        case 'a': a.lambada = v; break;
        case 'R': a.probes = v; break;
        case 'G': a.trace = v; break;
        case 'g': a.seed = (uint64_t)parse_int(f, v); break;
        default: die("unknown flag %s (see -h)", f);
        }
    }
    if (!a.ckpt) { die("-c CHECKPOINT is required (see -h)"); }
    if (a.samples < 1 || a.T < 2 || a.B < 1 || a.batches < 1 || a.buckets < 1) { die("-n, -t, -b, -m and -P must be positive (-t at least 2)"); }
    return a;
}

// Splits a comma list into at most `cap` items (pointers into a copy kept in *buf).
static int split_list(const char *s, char **items, int cap, char **buf) {
    *buf = str_dup(s);
    int n = 0;
    for (char *tok = strtok(*buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == cap) { die("list '%s' has more than %d items", s, cap); }
        items[n++] = tok;
    }
    return n;
}

static int parse_lengths(const char *s, int *lengths, int cap, int max_len) {
    char *items[64], *buf;
    int n = split_list(s, items, cap < 64 ? cap : 64, &buf);
    for (int i = 0; i < n; i++) {
        lengths[i] = parse_int("-l", items[i]);
        if (lengths[i] < 16 || lengths[i] > max_len) { die("length %d: must be between 16 and the model's maximum %d", lengths[i], max_len); }
    }
    free(buf);
    return n;
}

// ---------------------------------------------------------------------------------------------------
// The FlashMoBA paper's evaluation list: its scores as tasks run (NAN: not run), printed at the end in
// the shape of the paper's tables. Zero-shot columns use acc_norm for OpenBookQA, HellaSwag and ARC-c,
// acc for the others, mc2 for TruthfulQA.

#define PAPER_LB 12
static const char *const paper_lb_sets[PAPER_LB] = {"qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "musique", "gov_report",
                                                    "qmsum", "multi_news", "triviaqa", "samsum", "lcc", "repobench-p"};
static const char *const paper_lb_names[PAPER_LB] = {"Qasper", "MFQA", "HotpotQA", "2WikiMQA", "MuSiQue", "GovReport",
                                                     "QMSum", "MultiNews", "TriviaQA", "SAMSum", "LCC", "RepoBench-P"};
#define PAPER_MC 7
static const struct { const char *set, *name; int norm; } paper_mc[PAPER_MC] = {
    {"openbookqa", "OBQA", 1}, {"piqa", "PIQA", 0}, {"hellaswag", "Hella", 1}, {"winogrande", "Wino", 0},
    {"arc_easy", "ARC-e", 0}, {"arc_challenge", "ARC-c", 1}, {"truthfulqa_mc2", "TQA", 0}};

typedef struct {
    double wiki_ppl, lmb_ppl, lmb_acc, mc[PAPER_MC], lb[PAPER_LB], niah[3][64];
    int nl, lengths[64];
} PaperScores;

static PaperScores paper;

static void paper_reset(void) {
    double *all[] = {&paper.wiki_ppl, &paper.lmb_ppl, &paper.lmb_acc};
    for (int i = 0; i < 3; i++) { *all[i] = NAN; }
    for (int i = 0; i < PAPER_MC; i++) { paper.mc[i] = NAN; }
    for (int i = 0; i < PAPER_LB; i++) { paper.lb[i] = NAN; }
    for (int t = 0; t < 3; t++) { for (int l = 0; l < 64; l++) { paper.niah[t][l] = NAN; } }
    paper.nl = 0;
}

// A table cell: the value, or "-" when not run; *sum and *count collect the values for an average.
static void paper_cell(StrBuf *md, double v, int decimals, double *sum, int *count) {
    if (isnan(v)) { sb_puts(md, " - |"); return; }
    sb_printf(md, " %.*f |", decimals, v);
    if (sum) { *sum += v; (*count)++; }
}

static void paper_tables(StrBuf *md) {
    int any = !isnan(paper.wiki_ppl) || !isnan(paper.lmb_ppl);
    for (int i = 0; i < PAPER_MC; i++) { any |= !isnan(paper.mc[i]); }
    for (int i = 0; i < PAPER_LB; i++) { any |= !isnan(paper.lb[i]); }
    for (int t = 0; t < 3; t++) { for (int l = 0; l < paper.nl; l++) { any |= !isnan(paper.niah[t][l]); } }
    if (!any) { return; }
    sb_puts(md, "## The paper's tables\n\nLanguage modelling and zero-shot (WikiText-2 word perplexity; acc_norm for OBQA, Hella, ARC-c; "
                "acc for PIQA, Wino, ARC-e, LAMBADA; TruthfulQA mc2; Avg over the accuracy columns that ran):\n\n"
                "| Wiki ppl | LMB ppl | LMB acc |");
    for (int i = 0; i < PAPER_MC; i++) { sb_printf(md, " %s |", paper_mc[i].name); }
    sb_puts(md, " Avg |\n|");
    for (int i = 0; i < PAPER_MC + 4; i++) { sb_puts(md, " --- |"); }
    sb_puts(md, "\n|");
    double sum = 0;
    int count = 0;
    paper_cell(md, paper.wiki_ppl, 2, NULL, NULL);
    paper_cell(md, paper.lmb_ppl, 2, NULL, NULL);
    paper_cell(md, paper.lmb_acc, 1, &sum, &count);
    for (int i = 0; i < PAPER_MC; i++) { paper_cell(md, paper.mc[i], 1, &sum, &count); }
    paper_cell(md, count ? sum / count : NAN, 1, NULL, NULL);
    sb_puts(md, "\n\nRULER S-NIAH (score %):\n\n| task |");
    for (int l = 0; l < paper.nl; l++) {
        int len = paper.lengths[l];
        if (len % 1024 == 0) { sb_printf(md, " %dK |", len / 1024); } else { sb_printf(md, " %d |", len); }
    }
    sb_puts(md, " Avg |\n| --- |");
    for (int l = 0; l <= paper.nl; l++) { sb_puts(md, " --- |"); }
    for (int t = 0; t < 3; t++) {
        sb_printf(md, "\n| S-NIAH-%d |", t + 1);
        sum = 0; count = 0;
        for (int l = 0; l < paper.nl; l++) { paper_cell(md, paper.niah[t][l], 1, &sum, &count); }
        paper_cell(md, count ? sum / count : NAN, 1, NULL, NULL);
    }
    sb_puts(md, "\n\nLongBench (score):\n\n|");
    for (int i = 0; i < PAPER_LB; i++) { sb_printf(md, " %s |", paper_lb_names[i]); }
    sb_puts(md, " Avg |\n|");
    for (int i = 0; i <= PAPER_LB; i++) { sb_puts(md, " --- |"); }
    sb_puts(md, "\n|");
    sum = 0; count = 0;
    for (int i = 0; i < PAPER_LB; i++) { paper_cell(md, paper.lb[i], 2, &sum, &count); }
    paper_cell(md, count ? sum / count : NAN, 2, NULL, NULL);
    sb_puts(md, "\n\n");
}

// ---------------------------------------------------------------------------------------------------
// LM accuracy

static void eval_lm(EvalModel *em, const EvalArgs *a, StrBuf *js, StrBuf *md) {
    config_check_seq_len(&em->cfg, a->T);
    DataLoader dl;
    dataloader_init(&dl, a->val, a->B, a->T, 0, 1, 0, a->seed, (uint32_t)em->cfg.vocab_size);
    int P = a->buckets;
    double loss = 0, *bloss = (double *)calloc_check(P, sizeof(double)), *bacc = (double *)calloc_check(P, sizeof(double));
    long count = 0, correct = 0, *bcount = (long *)calloc_check(P, sizeof(long));
    float *losses = (float *)malloc_check((size_t)a->B * a->T * sizeof(float));
    int *pred = (int *)malloc_check((size_t)a->B * a->T * sizeof(int));
    for (int i = 0; i < a->batches; i++) {
        dataloader_next_batch(&dl);
        em->score(em->ctx, dl.inputs, dl.targets, a->B, a->T, losses, pred);
        for (int b = 0; b < a->B; b++) {
            for (int t = 0; t < a->T; t++) {
                size_t n = (size_t)b * a->T + t;
                int hit = pred[n] == dl.targets[n], k = (int)((long)t * P / a->T);
                loss += losses[n]; correct += hit; count++;
                bloss[k] += losses[n]; bacc[k] += hit; bcount[k]++;
            }
        }
    }
    sb_printf(js, "  \"lm\": {\"val_loss\": %.6f, \"token_acc\": %.6f, \"tokens\": %ld, \"seq_len\": %d, \"bucket_loss\": [", loss / count, (double)correct / count, count, a->T);
    for (int k = 0; k < P; k++) { sb_printf(js, "%s%.6f", k ? ", " : "", bloss[k] / bcount[k]); }
    sb_puts(js, "], \"bucket_acc\": [");
    for (int k = 0; k < P; k++) { sb_printf(js, "%s%.6f", k ? ", " : "", bacc[k] / bcount[k]); }
    sb_puts(js, "]},\n");
    sb_printf(md, "## LM accuracy (%ld tokens, T = %d)\n\nval loss %.4f, next-token accuracy %.2f%%\n\n| positions | loss | accuracy |\n| --- | --- | --- |\n",
              count, a->T, loss / count, 100.0 * correct / count);
    for (int k = 0; k < P; k++) { sb_printf(md, "| %d-%d | %.4f | %.2f%% |\n", k * a->T / P, (k + 1) * a->T / P - 1, bloss[k] / bcount[k], 100 * bacc[k] / bcount[k]); }
    sb_puts(md, "\n");
    printf("lm: val loss %.4f, token acc %.4f over %ld tokens\n", loss / count, (double)correct / count, count);
    free(bloss); free(bacc); free(bcount); free(losses); free(pred);
    dataloader_free(&dl);
}

// "| task | L1 | ... |" and its rule: the header of a task x length table.
static void md_length_header(StrBuf *md, const int *lengths, int nl) {
    sb_puts(md, "| task |");
    for (int i = 0; i < nl; i++) { sb_printf(md, " %d |", lengths[i]); }
    sb_puts(md, "\n| --- |");
    for (int i = 0; i < nl; i++) { sb_puts(md, " --- |"); }
    sb_puts(md, "\n");
}

// One (task, length) score: its JSON entry, its Markdown cell and a progress line.
static void put_cell(StrBuf *js, StrBuf *md, const char *what, const char *task, int li, int length, double score) {
    sb_printf(js, "%s\"%d\": %.2f", li ? ", " : "", length, score);
    sb_printf(md, " %.1f |", score);
    printf("%s %s @ %d: %.1f\n", what, task, length, score);
}

// ---------------------------------------------------------------------------------------------------
// Synthetic needles (token ids, no tokenizer)

static void eval_syn(EvalModel *em, const EvalArgs *a, const int *lengths, int nl, StrBuf *js, StrBuf *md) {
    SynLanguage L;
    syn_language_init(&L, (uint32_t)em->cfg.vocab_size);
    char *names[16], *buf;
    int nt = strcmp(a->syn, "all") == 0 ? NUM_SYN_NEEDLE_TASKS : split_list(a->syn, names, 16, &buf);
    sb_puts(js, "  \"synthetic_needle\": {");
    sb_puts(md, "## Synthetic needle tasks (accuracy %, exact next token)\n\n");
    md_length_header(md, lengths, nl);
    for (int ti = 0; ti < nt; ti++) {
        const SynNeedleTask *t = strcmp(a->syn, "all") == 0 ? &syn_needle_tasks[ti] : syn_needle_task(names[ti]);
        sb_printf(js, "%s\"%s\": {", ti ? ", " : "", t->name);
        sb_printf(md, "| %s |", t->name);
        for (int li = 0; li < nl; li++) {
            double score = 0;
            for (int i = 0; i < a->samples; i++) {
                SynNeedleSample s = syn_needle_generate(&L, t, lengths[li], i, a->seed);
                const float *lg = em->prefill(em->ctx, s.tokens, s.query_end[0]);
                int hits = 0;
                for (int q = 0; q < s.num_queries; q++) {
                    hits += argmax_logits(lg, em->cfg.vocab_size) == s.tokens[s.query_end[q]];
                    for (int p = s.query_end[q]; q + 1 < s.num_queries && p < s.query_end[q + 1]; p++) { lg = em->step(em->ctx, s.tokens[p]); }
                }
                score += (double)hits / s.num_queries;
                free(s.tokens);
            }
            put_cell(js, md, "synthetic", t->name, li, lengths[li], 100 * score / a->samples);
        }
        sb_puts(js, "}");
        sb_puts(md, "\n");
    }
    sb_puts(js, "},\n");
    sb_printf(md, "\n%d samples per cell; chance is %.1f%%.\n\n", a->samples, 100.0 / L.num_values);
    if (strcmp(a->syn, "all") != 0) { free(buf); }
    syn_language_free(&L);
}

// ---------------------------------------------------------------------------------------------------
// Text generation (tokenizer tasks)

// Greedy continuation of a text prompt, the prompt cut in the middle to fit context - max_gen.
// newline_rule: LongBench pred.py's samsum generation: stop at a newline, and the first token may be
// neither EOT nor a newline (min_length = prompt + 1).
static char *generate_text(EvalModel *em, const TextTokenizer *tok, const char *prompt, int context, int max_gen, int newline_rule) {
    size_t len = strlen(prompt), cap = text_tokenizer_max_tokens(tok, len);
    uint32_t *ids = (uint32_t *)malloc_check((cap ? cap : 1) * sizeof(uint32_t));
    int n = (int)text_tokenizer_encode(tok, NULL, (const unsigned char *)prompt, len, ids, cap);
    if (n == 0) { ids[0] = tok->doc_token; n = 1; }
    n = truncate_middle(ids, n, context - max_gen);
    int *in = (int *)malloc_check((size_t)n * sizeof(int)), *out = (int *)malloc_check((size_t)max_gen * sizeof(int));
    for (int i = 0; i < n; i++) { in[i] = (int)ids[i]; }
    uint32_t nl_ids[8];  // the newline is the last token: SentencePiece puts the dummy-prefix "▁" first
    int nl = (int)text_tokenizer_encode(tok, NULL, (const unsigned char *)"\n", 1, nl_ids, 8), nl_tok = (int)nl_ids[nl > 0 ? nl - 1 : 0];
    const int *stops[1] = {&nl_tok};
    int stop_len[1] = {1};
    GenConfig g = {max_gen, 0.0f, 1.0f, 1, (int)tok->doc_token, stops, stop_len, newline_rule && nl >= 1 && nl <= 8, newline_rule};
    int got = generate_tokens(em->ctx, em->prefill, em->step, em->cfg.vocab_size, em->capacity, in, n, &g, out);
    uint32_t *gen = (uint32_t *)malloc_check((size_t)(got ? got : 1) * sizeof(uint32_t));
    for (int i = 0; i < got; i++) { gen[i] = (uint32_t)out[i]; }
    size_t bytes = text_tokenizer_decode(tok, gen, (size_t)got, NULL, 0);
    char *text = (char *)malloc_check(bytes + 1);
    text_tokenizer_decode(tok, gen, (size_t)got, (unsigned char *)text, bytes);
    text[bytes] = '\0';
    free(ids); free(in); free(out); free(gen);
    return text;
}

static void write_answers(FILE *f, char **answers, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) { if (i) { fputs(", ", f); } json_write_string(f, answers[i], strlen(answers[i])); }
    fputc(']', f);
}

static void eval_ruler(EvalModel *em, const TextTokenizer *tok, const EvalArgs *a, const int *lengths, int nl, StrBuf *js, StrBuf *md) {
    RulerSource src = {0}, hot = {0};
    src.tok = tok; hot.tok = tok;
    if (a->essay) { ruler_load_essay(&src, a->essay); }
    if (a->squad) { ruler_load_qa(&src, a->squad); }
    if (a->hotpot) { ruler_load_qa(&hot, a->hotpot); }
    char *names[32], *buf = NULL, path[1200];
    int all = strcmp(a->ruler, "all") == 0, nt = all ? NUM_RULER_TASKS : split_list(a->ruler, names, 32, &buf);
    snprintf(path, sizeof(path), "%s/ruler_pred.jsonl", a->out);
    FILE *pred = fopen_check(path, "w");
    sb_puts(js, "  \"ruler\": {");
    sb_puts(md, "## RULER (score %)\n\n");
    md_length_header(md, lengths, nl);
    double *avg = (double *)calloc_check((size_t)nl, sizeof(double));
    paper.nl = nl;
    memcpy(paper.lengths, lengths, (size_t)nl * sizeof(int));
    for (int ti = 0; ti < nt; ti++) {
        const RulerTask *t = all ? &ruler_tasks[ti] : ruler_task(names[ti]);
        const RulerSource *s = strcmp(t->name, "qa_2") == 0 ? &hot : &src;
        sb_printf(js, "%s\"%s\": {", ti ? ", " : "", t->name);
        sb_printf(md, "| %s |", t->name);
        for (int li = 0; li < nl; li++) {
            double score = 0;
            for (int i = 0; i < a->samples; i++) {
                RulerSample smp = ruler_generate(t, s, lengths[li], i, a->seed);
                char *out = generate_text(em, tok, smp.prompt, lengths[li], smp.max_gen, 0);
                double sc = ruler_score(t, out, &smp);
                score += sc;
                fprintf(pred, "{\"task\": \"%s\", \"length\": %d, \"index\": %d, \"score\": %.4f, \"pred\": ", t->name, lengths[li], i, sc);
                json_write_string(pred, out, strlen(out));
                fputs(", \"answers\": ", pred);
                write_answers(pred, smp.answers, smp.num_answers);
                fputs("}\n", pred);
                free(out);
                ruler_sample_free(&smp);
            }
            avg[li] += 100 * score / a->samples / nt;
            if (strncmp(t->name, "niah_single_", 12) == 0) { paper.niah[t->name[12] - '1'][li] = 100 * score / a->samples; }
            put_cell(js, md, "ruler", t->name, li, lengths[li], 100 * score / a->samples);
        }
        sb_puts(js, "}");
        sb_puts(md, "\n");
    }
    sb_puts(md, "| **average** |");
    for (int i = 0; i < nl; i++) { sb_printf(md, " %.1f |", avg[i]); }
    sb_printf(md, "\n\n%d samples per cell.\n\n", a->samples);
    sb_puts(js, "},\n");
    fclose(pred);
    free(avg); free(buf);
    ruler_source_free(&src); ruler_source_free(&hot);
}

static void eval_longbench(EvalModel *em, const TextTokenizer *tok, const EvalArgs *a, int context, StrBuf *js, StrBuf *md) {
    char *names[32], *buf = NULL, path[1400], dir[1200];
    int nd = a->lb_sets ? split_list(a->lb_sets, names, 32, &buf) : NUM_LONGBENCH_DATASETS;
    snprintf(dir, sizeof(dir), "%s/longbench_pred", a->out);
    syn_mkdir_p(dir);
    sb_puts(js, "  \"longbench\": {");
    sb_printf(md, "## LongBench (English subsets, context %d tokens)\n\n| dataset | metric | records | score |\n| --- | --- | --- | --- |\n", context);
    int done = 0;
    double total = 0;
    for (int di = 0; di < nd; di++) {
        const LBDataset *d = a->lb_sets ? longbench_dataset(names[di]) : &longbench_datasets[di];
        snprintf(path, sizeof(path), "%s/%s.jsonl", a->lb_dir, d->name);
        struct stat sb;
        if (stat(path, &sb) != 0) {
            if (a->lb_sets) { die("LongBench file '%s' does not exist (data/download_longbench.sh fetches the data)", path); }
            continue;
        }
        LBRecords rs = longbench_read(path);
        int n = a->lb_max >= 0 && a->lb_max < rs.n ? a->lb_max : rs.n;
        snprintf(path, sizeof(path), "%s/%s.jsonl", dir, d->name);
        FILE *pred = fopen_check(path, "w");
        double score = 0;
        for (int i = 0; i < n; i++) {
            char *prompt = longbench_prompt(d, &rs.r[i]);
            char *out = generate_text(em, tok, prompt, context, d->max_gen, strcmp(d->name, "samsum") == 0);
            double sc = longbench_score(d, out, &rs.r[i]);
            score += sc;
            fputs("{\"pred\": ", pred);
            json_write_string(pred, out, strlen(out));
            fputs(", \"answers\": ", pred);
            write_answers(pred, rs.r[i].answers, rs.r[i].num_answers);
            fputs(", \"all_classes\": ", pred);
            if (rs.r[i].num_classes) { write_answers(pred, rs.r[i].all_classes, rs.r[i].num_classes); } else { fputs("null", pred); }
            fprintf(pred, ", \"length\": %ld, \"_id\": ", rs.r[i].length);
            json_write_string(pred, rs.r[i].id, strlen(rs.r[i].id));
            fprintf(pred, ", \"score\": %.4f}\n", sc);
            free(prompt); free(out);
        }
        fclose(pred);
        score = n ? 100 * score / n : 0;
        sb_printf(js, "%s\"%s\": %.2f", done ? ", " : "", d->name, score);
        sb_printf(md, "| %s | %s | %d | %.2f |\n", d->name, longbench_metric_names[d->metric], n, score);
        printf("longbench %s: %.2f over %d records\n", d->name, score, n);
        total += score; done++;
        for (int k = 0; k < PAPER_LB; k++) { if (strcmp(paper_lb_sets[k], d->name) == 0) { paper.lb[k] = score; } }
        longbench_free(&rs);
    }
    if (done == 0) { die("no LongBench <dataset>.jsonl files in '%s'", a->lb_dir); }
    sb_printf(md, "| **average** | | | %.2f |\n\n", total / done);
    sb_puts(js, "},\n");
    free(buf);
}

// ---------------------------------------------------------------------------------------------------
// Multiple choice

// Scores tokens[0..n) of a text in one forward: the targets at positions [first, n) (position p predicts
// tokens[p + 1]); returns their summed log-probability, and in *greedy (unless NULL) whether each was the
// argmax.
static double score_span(EvalModel *em, const uint32_t *tokens, int n, int first, int *greedy) {
    int T = n - 1;
    int *in = (int *)malloc_check((size_t)T * sizeof(int)), *tg = (int *)malloc_check((size_t)T * sizeof(int)), *am = NULL;
    for (int t = 0; t < T; t++) { in[t] = (int)tokens[t]; tg[t] = t >= first ? (int)tokens[t + 1] : -1; }
    float *losses = (float *)malloc_check((size_t)T * sizeof(float));
    if (greedy) { am = (int *)malloc_check((size_t)T * sizeof(int)); }
    em->score(em->ctx, in, tg, 1, T, losses, am);
    double lp = 0;
    int all = 1;
    for (int t = first; t < T; t++) { lp -= losses[t]; if (am) { all &= am[t] == tg[t]; } }
    if (greedy) { *greedy = all; }
    free(in); free(tg); free(losses); free(am);
    return lp;
}

// log p(continuation | context) as lm-eval computes it: trailing whitespace of the context moves to the
// continuation; an EOT (the document boundary the model saw in training) comes first; the context is
// cut from the left to fit the model. *greedy (unless NULL): every continuation token is the argmax.
static double continuation_logprob(EvalModel *em, const TextTokenizer *tok, const char *ctx, const char *cont, int *greedy) {
    CpStr c = cps_from_cstr(ctx);
    int keep = c.n;
    while (keep > 0 && uc_is_space(c.c[keep - 1])) { keep--; }
    char *ctx2 = keep < c.n ? cps_to_utf8(c.c, keep) : str_dup(ctx), *moved = keep < c.n ? cps_to_utf8(c.c + keep, c.n - keep) : str_dup("");
    char *whole = str_cat3(ctx2, moved, cont);
    size_t lc = strlen(ctx2), lw = strlen(whole), cap = text_tokenizer_max_tokens(tok, lw);
    uint32_t *ids = (uint32_t *)malloc_check((cap + 1) * sizeof(uint32_t));
    ids[0] = tok->doc_token;
    // the continuation is the tokens of ctx + cont after as many as ctx alone has (as lm-evaluation-harness):
    // encoding cont by itself would start it with SentencePiece's dummy-prefix "▁"
    int total = 1 + (int)text_tokenizer_encode(tok, NULL, (const unsigned char *)whole, lw, ids + 1, cap);
    int nc = 1 + (int)text_tokenizer_encode(tok, NULL, (const unsigned char *)ctx2, lc, NULL, 0);
    if (nc > total) { nc = total; }
    int nn = total - nc, start = total - 1 > em->cfg.max_seq_len ? total - 1 - em->cfg.max_seq_len : 0;
    double lp = 0;
    if (greedy) { *greedy = 1; }
    if (nn > 0) {
        if (total - 1 - start < nn) { die("a %d-token continuation does not fit the model's %d-token context", nn, em->cfg.max_seq_len); }
        lp = score_span(em, ids + start, total - start, nc - 1 - start, greedy);
    }
    free(c.c); free(ctx2); free(moved); free(whole); free(ids);
    return lp;
}

static void eval_mc(EvalModel *em, const TextTokenizer *tok, const EvalArgs *a, StrBuf *js, StrBuf *md) {
    char *items[16], *buf;
    int n = split_list(a->mc, items, 16, &buf);
    sb_puts(js, "  \"mc\": {");
    sb_puts(md, "## Multiple choice (zero-shot log-likelihood, lm-eval's rules)\n\n| set | items | acc | acc_norm |\n| --- | --- | --- | --- |\n");
    for (int k = 0; k < n; k++) {
        char *colon = strchr(items[k], ':');
        if (!colon) { die("-M wants format:file.jsonl, got '%s'", items[k]); }
        *colon = '\0';
        const char *name = items[k], *format = strncmp(name, "arc_", 4) == 0 ? "arc" : name;
        MCSet set = mc_load(format, colon + 1);
        double acc = 0, accn = 0;
        for (int i = 0; i < set.n; i++) {
            const MCItem *it = &set.items[i];
            double lp[MC_MAX_CHOICES], mx = -INFINITY, z = 0, ztrue = 0;
            for (int c = 0; c < it->n; c++) {
                lp[c] = continuation_logprob(em, tok, it->ctx[c], it->cont[c], NULL);
                if (lp[c] > mx) { mx = lp[c]; }
            }
            // mc2: the true choices' share of the probability mass (shifted by the max against underflow)
            for (int c = 0; c < it->n; c++) { double p = exp(lp[c] - mx); z += p; ztrue += it->truth[c] ? p : 0; }
            acc += set.metric == MC_MC2 ? ztrue / z : mc_argmax(lp, NULL, it->n) == it->label;
            accn += mc_argmax(lp, it->chars, it->n) == it->label;
        }
        double pa = set.n ? 100.0 * acc / set.n : 0, pn = set.n ? 100.0 * accn / set.n : 0;
        sb_printf(js, "%s\"%s\": {\"acc\": %.2f", k ? ", " : "", name, pa);
        if (set.metric == MC_ACC_NORM) { sb_printf(js, ", \"acc_norm\": %.2f", pn); }
        sb_printf(js, ", \"n\": %d}", set.n);
        sb_printf(md, "| %s | %d | %.2f |", name, set.n, pa);
        if (set.metric == MC_ACC_NORM) { sb_printf(md, " %.2f |\n", pn); } else { sb_puts(md, " - |\n"); }
        printf("mc %s: %s %.2f", name, set.metric == MC_MC2 ? "mc2" : "acc", pa);
        if (set.metric == MC_ACC_NORM) { printf(" acc_norm %.2f", pn); }
        printf(" over %d\n", set.n);
        for (int m = 0; m < PAPER_MC; m++) { if (strcmp(paper_mc[m].set, name) == 0) { paper.mc[m] = paper_mc[m].norm && set.metric == MC_ACC_NORM ? pn : pa; } }
        mc_free(&set);
    }
    sb_puts(js, "},\n");
    sb_puts(md, "\n");
    free(buf);
}

// ---------------------------------------------------------------------------------------------------
// WikiText-2 and LAMBADA (llmc/eval/lm_tasks.h)

static void eval_wikitext(EvalModel *em, const TextTokenizer *tok, const EvalArgs *a, StrBuf *js, StrBuf *md) {
    TextSet docs = text_load(a->wikitext, "page");
    int L = em->cfg.max_seq_len;
    double ll = 0;
    long words = 0, bytes = 0, tokens = 0;
    for (int d = 0; d < docs.n; d++) {
        char *text = wikitext_detokenize(docs.s[d]);
        size_t len = strlen(text), cap = text_tokenizer_max_tokens(tok, len);
        uint32_t *ids = (uint32_t *)malloc_check((cap + 1) * sizeof(uint32_t));
        ids[0] = tok->doc_token;
        int n = (int)text_tokenizer_encode(tok, NULL, (const unsigned char *)text, len, ids + 1, cap);
        RollWindow w;
        for (int k = 0; rolling_window(n, L, k, &w); k++) { ll += score_span(em, ids + w.start, w.len + 1, w.len - w.scored, NULL); }
        words += wikitext_words(docs.s[d]);
        bytes += (long)strlen(docs.s[d]);
        tokens += n;
        free(text); free(ids);
    }
    double word_ppl = exp(-ll / words), byte_ppl = exp(-ll / bytes), bpb = -ll / bytes / log(2.0);
    sb_printf(js, "  \"wikitext\": {\"word_perplexity\": %.4f, \"byte_perplexity\": %.4f, \"bits_per_byte\": %.4f, \"documents\": %d, \"tokens\": %ld},\n",
              word_ppl, byte_ppl, bpb, docs.n, tokens);
    sb_printf(md, "## WikiText-2 (lm-eval's wikitext: rolling log-likelihood, %d-token windows)\n\n%d documents, %ld tokens: word perplexity %.4f, "
              "byte perplexity %.4f, bits per byte %.4f\n\n", L, docs.n, tokens, word_ppl, byte_ppl, bpb);
    printf("wikitext: word ppl %.4f, byte ppl %.4f, bpb %.4f over %d documents\n", word_ppl, byte_ppl, bpb, docs.n);
    paper.wiki_ppl = word_ppl;
    text_free(&docs);
}

// Last-word accuracy (every token of " " + the last word is the greedy choice) and perplexity over a JSONL of
// {"text"}, lm-eval's lambada_openai scoring: LAMBADA (-a), and the retrieval probes of build/prepare -P (-R),
// whose last word is a value planted earlier in the text, so their accuracy is retrieval accuracy.
static void eval_last_word(EvalModel *em, const TextTokenizer *tok, const char *path, const char *key, const char *heading,
                           StrBuf *js, StrBuf *md, double *ppl_out, double *acc_out) {
    TextSet docs = text_load(path, "text");
    double ll = 0;
    int hits = 0;
    for (int d = 0; d < docs.n; d++) {
        char *ctx, *cont;
        int greedy;
        lambada_split(docs.s[d], &ctx, &cont);
        ll += continuation_logprob(em, tok, ctx, cont, &greedy);
        hits += greedy;
        free(ctx); free(cont);
    }
    double ppl = exp(-ll / docs.n), acc = 100.0 * hits / docs.n;
    sb_printf(js, "  \"%s\": {\"perplexity\": %.4f, \"acc\": %.2f, \"n\": %d},\n", key, ppl, acc, docs.n);
    sb_printf(md, "## %s\n\n%d texts: last-word accuracy %.2f%%, perplexity %.4f\n\n", heading, docs.n, acc, ppl);
    printf("%s: acc %.2f, ppl %.4f over %d\n", key, acc, ppl, docs.n);
    *ppl_out = ppl; *acc_out = acc;
    text_free(&docs);
}

// ---------------------------------------------------------------------------------------------------
// Greedy trace: the same random prompts and greedy decoding on any backend, one line per generated token
// "prompt step token top1 top2" (logits), so two traces can be compared token by token with the margin
// top1 - top2 that explains a divergence.

static void eval_trace(EvalModel *em, const EvalArgs *a, int length) {
    int V = em->cfg.vocab_size, P = length / 2, G = length - P;
    int *toks = (int *)malloc_check((size_t)length * sizeof(int));
    FILE *f = fopen_check(a->trace, "w");
    for (int i = 0; i < a->samples; i++) {
        Rng r;
        rng_init(&r, a->seed * 1000003ULL + (uint64_t)i);
        for (int t = 0; t < P; t++) { toks[t] = (int)rng_below(&r, (uint32_t)V); }
        const float *lg = em->prefill(em->ctx, toks, P);
        for (int s = 0; s < G; s++) {
            int best = argmax_logits(lg, V), second = best == 0 ? 1 : 0;
            for (int v = 0; v < V; v++) { if (v != best && lg[v] > lg[second]) { second = v; } }
            fprintf(f, "%d %d %d %.9g %.9g\n", i, s, best, lg[best], lg[second]);
            if (s + 1 < G) { lg = em->step(em->ctx, best); }
        }
    }
    fclose(f);
    printf("trace: %d prompts of %d tokens + %d greedy tokens -> %s\n", a->samples, P, G, a->trace);
    free(toks);
}

// ---------------------------------------------------------------------------------------------------

static void sb_json_string(StrBuf *b, const char *s) {
    char *tmp = NULL;
    size_t n = 0;
    FILE *mem = open_memstream(&tmp, &n);
    json_write_string(mem, s, strlen(s));
    fclose(mem);
    sb_put(b, tmp, n);
    free(tmp);
}

static void write_text(const char *path, const char *text) {
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, text, 1, strlen(text));
    atomic_close(&af);
}

// The -l lengths (when a task uses them) into lengths[64]; returns their count.
static int eval_lengths(const EvalArgs *a, const ModelConfig *c, int *lengths) {
    return a->syn || a->ruler || a->trace ? parse_lengths(a->lengths, lengths, 64, c->max_seq_len) : 0;
}

static int eval_context(const EvalArgs *a, const ModelConfig *c) {
    int context = a->context > 0 ? a->context : (c->max_seq_len < 32768 ? c->max_seq_len : 32768);
    config_check_seq_len(c, context);
    return context;
}

// Tokens of KV cache the tasks asked for need: the longest length, or the LongBench context.
static int eval_capacity(const EvalArgs *a, const ModelConfig *c) {
    int lengths[64], nl = eval_lengths(a, c, lengths), max_len = 16, context = eval_context(a, c);
    for (int i = 0; i < nl; i++) { if (lengths[i] > max_len) { max_len = lengths[i]; } }
    return a->lb_dir && context > max_len ? context : max_len;
}

// Runs every task the flags ask for on em and writes <out>/eval.json and eval.md.
static void eval_run(EvalArgs *a, EvalModel *em, unsigned long long step) {
    const ModelConfig *c = &em->cfg;
    char outdir[1024];
    if (!a->out) {
        snprintf(outdir, sizeof(outdir), "%s", a->ckpt);
        char *slash = strrchr(outdir, '/');
        if (slash) { *slash = '\0'; } else { strcpy(outdir, "."); }
        a->out = outdir;
    }
    syn_mkdir_p(a->out);
    printf("eval %s (step %llu) on %s -> %s\n", a->ckpt, step, em->device, a->out);
    config_print(c, stdout);
    int lengths[64], nl = eval_lengths(a, c, lengths), context = eval_context(a, c);
    if ((a->ruler || a->lb_dir || a->mc || a->wikitext || a->lambada || a->probes) && !a->tokenizer) {
        die("RULER, LongBench, WikiText, LAMBADA, retrieval probes and multiple choice need a tokenizer (-k FILE)");
    }
    TextTokenizer tok;
    if (a->tokenizer) {
        text_tokenizer_load(&tok, a->tokenizer);
        if ((int)tok.vocab_size > c->vocab_size) { die("tokenizer '%s' has %u tokens but the model only %d", a->tokenizer, tok.vocab_size, c->vocab_size); }
    }

    StrBuf js = {0}, md = {0};
    sb_puts(&js, "{\n  \"checkpoint\": ");
    sb_json_string(&js, a->ckpt);
    sb_printf(&js, ",\n  \"step\": %llu,\n  \"config\": {\"attn\": \"%s\", \"moba_block\": %d, \"moba_topk\": %d, \"kconv\": %d, \"n_dense_last\": %d, "
              "\"layout\": \"%s\", \"swa_window\": %d, \"global_nope\": %d, "
              "\"n_layer\": %d, \"d_model\": %d, \"n_head\": %d, \"vocab_size\": %d, \"max_seq_len\": %d, \"params\": %zu},\n",
              step, c->attn == ATTN_MOBA ? "moba" : "dense", c->moba_block, c->moba_topk, c->kconv, c->n_dense_last,
              c->layout == LAYOUT_PAPER ? "paper" : "global", c->swa_window, c->global_nope,
              c->n_layer, c->d_model, c->n_head, c->vocab_size, c->max_seq_len, param_count(c));
    sb_printf(&md, "# Evaluation of `%s` (step %llu)\n\n", a->ckpt, step);
    if (c->layout == LAYOUT_PAPER) { sb_printf(&md, "Paper layout: sliding window %d with RoPE in layers 1, 3, ...; global layers %s. ", c->swa_window, c->global_nope ? "NoPE" : "with RoPE"); }
    else { sb_printf(&md, "Global layout, %s. ", c->global_nope ? "NoPE" : "RoPE"); }
    if (c->attn == ATTN_MOBA) { sb_printf(&md, "MoBA block %d, top-k %d, key conv %d, last %d layers dense; ", c->moba_block, c->moba_topk, c->kconv, c->n_dense_last); }
    else { sb_printf(&md, "dense attention, key conv %d; ", c->kconv); }
    sb_printf(&md, "%d layers, d_model %d, %d heads, %zu parameters. Evaluated on %s.\n\n", c->n_layer, c->d_model, c->n_head, param_count(c), em->device);

    paper_reset();
    double t0 = now_seconds();
    if (a->val) { eval_lm(em, a, &js, &md); }
    if (a->syn) { eval_syn(em, a, lengths, nl, &js, &md); }
    if (a->ruler) { eval_ruler(em, &tok, a, lengths, nl, &js, &md); }
    if (a->lb_dir) { eval_longbench(em, &tok, a, context, &js, &md); }
    if (a->wikitext) { eval_wikitext(em, &tok, a, &js, &md); }
    if (a->lambada) { eval_last_word(em, &tok, a->lambada, "lambada", "LAMBADA (lm-eval's lambada_openai)", &js, &md, &paper.lmb_ppl, &paper.lmb_acc); }
    if (a->probes) {
        double ppl, acc;
        eval_last_word(em, &tok, a->probes, "recall_probes", "Retrieval probes (build/prepare -P)", &js, &md, &ppl, &acc);
    }
    if (a->mc) { eval_mc(em, &tok, a, &js, &md); }
    if (a->trace) { eval_trace(em, a, lengths[0]); }
    size_t before = md.n;
    paper_tables(&md);
    if (md.n > before) { printf("\n%s", md.s + before); }
    sb_printf(&js, "  \"seconds\": %.1f\n}\n", now_seconds() - t0);
    char path[1200];
    snprintf(path, sizeof(path), "%s/eval.json", a->out);
    write_text(path, js.s);
    snprintf(path, sizeof(path), "%s/eval.md", a->out);
    write_text(path, md.s);
    printf("wrote %s/eval.json and eval.md (%.1f s)\n", a->out, now_seconds() - t0);
    free(js.s); free(md.s);
    if (a->tokenizer) { text_tokenizer_free(&tok); }
}

#endif // LLMC_EVAL_DRIVER_H
