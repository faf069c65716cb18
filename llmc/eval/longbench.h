/*
 LongBench (THUDM/LongBench, v1) for the English subsets: records from its JSONL files (fields input,
 context, answers, length, dataset, language, all_classes, _id), the per-dataset prompt templates and
 maximum generation lengths of config/dataset2prompt.json and dataset2maxlen.json, truncation of a long
 prompt in the middle (keep the first and the last max/2 tokens, as pred.py does), and scoring with
 each dataset's metric (eval.py's dataset2metric: llmc/eval/eval_metrics.h). trec, triviaqa and samsum score
 only the first line of the prediction; samsum generation also stops at a newline (pred.py).
 A dataset's score = 100 * mean over records of the max over its answers.
*/
#ifndef LLMC_LONGBENCH_H
#define LLMC_LONGBENCH_H

#include <stdint.h>
#include "eval_metrics.h"
#include "../json_value.h"
#include "../utils.h"

enum { LB_QA_F1, LB_ROUGE, LB_CLASSIFICATION, LB_RETRIEVAL, LB_COUNT, LB_CODE_SIM };
static const char *const longbench_metric_names[] = {"qa_f1", "rouge_l", "classification", "retrieval", "count", "code_sim"};

typedef struct {
    const char *name, *prompt;
    int max_gen, metric, first_line;
} LBDataset;

#define LB_QA_TAIL "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\n"
#define LB_MULTIHOP LB_QA_TAIL "The following are given passages.\n{context}\n\n" LB_QA_TAIL "Question: {input}\nAnswer:"
#define LB_QASPER_RULES "Answer the question as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation."

static const LBDataset longbench_datasets[] = {
    {"narrativeqa", "You are given a story, which can be either a novel or a movie script, and a question. Answer the question as concisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nStory: {context}\n\nNow, answer the question based on the story as concisely as you can, using a single phrase if possible. Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:", 128, LB_QA_F1, 0},
    {"qasper", "You are given a scientific article and a question. " LB_QASPER_RULES "\n\nArticle: {context}\n\n Answer the question based on the above article as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered based on the information in the article, write \"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation.\n\nQuestion: {input}\n\nAnswer:", 128, LB_QA_F1, 0},
    {"multifieldqa_en", "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on the above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:", 64, LB_QA_F1, 0},
    {"hotpotqa", LB_MULTIHOP, 32, LB_QA_F1, 0},
    {"2wikimqa", LB_MULTIHOP, 32, LB_QA_F1, 0},
    {"musique", LB_MULTIHOP, 32, LB_QA_F1, 0},
    {"gov_report", "You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n{context}\n\nNow, write a one-page summary of the report.\n\nSummary:", 512, LB_ROUGE, 0},
    {"qmsum", "You are given a meeting transcript and a query containing a question or instruction. Answer the query in one or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting transcript in one or more sentences.\n\nQuery: {input}\nAnswer:", 512, LB_ROUGE, 0},
    {"multi_news", "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\nNow, write a one-page summary of all the news.\n\nSummary:", 512, LB_ROUGE, 0},
    {"trec", "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}", 64, LB_CLASSIFICATION, 1},
    {"triviaqa", "Answer the question based on the given passage. Only give me the answer and do not output any other words. The following are some examples.\n\n{context}\n\n{input}", 32, LB_QA_F1, 1},
    {"samsum", "Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}", 128, LB_ROUGE, 1},
    {"passage_count", "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully read these paragraphs and determine how many unique paragraphs there are after removing duplicates. In other words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final count of unique paragraphs after removing duplicates. The output format should only contain the number, such as 1, 2, 3, and so on.\n\nThe final answer is: ", 32, LB_COUNT, 0},
    {"passage_retrieval_en", "Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of the paragraph that the abstract is from. The answer format must be like \"Paragraph 1\", \"Paragraph 2\", etc.\n\nThe answer is: ", 32, LB_RETRIEVAL, 0},
    {"lcc", "Please complete the code given below. \n{context}Next line of code:\n", 64, LB_CODE_SIM, 0},
    {"repobench-p", "Please complete the code given below. \n{context}{input}Next line of code:\n", 64, LB_CODE_SIM, 0},
};
#define NUM_LONGBENCH_DATASETS ((int)(sizeof(longbench_datasets) / sizeof(longbench_datasets[0])))

static inline const LBDataset *longbench_dataset(const char *name) {
    for (int i = 0; i < NUM_LONGBENCH_DATASETS; i++) { if (strcmp(longbench_datasets[i].name, name) == 0) { return &longbench_datasets[i]; } }
    die("unknown LongBench dataset '%s' (English subsets: narrativeqa, qasper, multifieldqa_en, hotpotqa, 2wikimqa, musique, gov_report, qmsum, multi_news, trec, triviaqa, samsum, passage_count, passage_retrieval_en, lcc, repobench-p)", name);
    return NULL;
}

typedef struct {
    char *input, *context, *dataset, *language, *id;
    char **answers, **all_classes;
    int num_answers, num_classes;
    long length;
} LBRecord;

typedef struct { LBRecord *r; int n, cap; } LBRecords;

static inline void longbench_add(const JValue *v, const char *path, uint64_t line, void *ctx) {
    LBRecords *rs = (LBRecords *)ctx;
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? 2 * rs->cap : 64;
        rs->r = (LBRecord *)realloc(rs->r, (size_t)rs->cap * sizeof(LBRecord));
        if (!rs->r) { die("out of host memory reading '%s'", path); }
    }
    LBRecord *r = &rs->r[rs->n++];
    r->input = jv_strdup_field(v, "input", path, line);
    r->context = jv_strdup_field(v, "context", path, line);
    r->dataset = jv_strdup_field(v, "dataset", path, line);
    r->language = jv_strdup_field(v, "language", path, line);
    r->id = jv_strdup_field(v, "_id", path, line);
    r->length = (long)jv_field(v, "length", JV_NUM, path, line)->num;
    r->num_answers = jv_string_array(v, "answers", &r->answers, 0, path, line);
    if (r->num_answers == 0) { die("%s:%llu: field 'answers' is empty", path, (unsigned long long)line); }
    r->num_classes = jv_string_array(v, "all_classes", &r->all_classes, 1, path, line);
}

// Reads every record of a LongBench .jsonl file; dies with file:line on any malformed record.
static inline LBRecords longbench_read(const char *path) {
    LBRecords rs = {NULL, 0, 0};
    jsonl_for_each(path, longbench_add, &rs);
    return rs;
}

static inline void longbench_free(LBRecords *rs) {
    for (int i = 0; i < rs->n; i++) {
        LBRecord *r = &rs->r[i];
        free(r->input); free(r->context); free(r->dataset); free(r->language); free(r->id);
        free_strings(r->answers, r->num_answers); free_strings(r->all_classes, r->num_classes);
    }
    free(rs->r);
    memset(rs, 0, sizeof(*rs));
}

// The prompt: the dataset's template with {context} and {input} filled in (malloc'd).
static inline char *longbench_prompt(const LBDataset *d, const LBRecord *r) {
    size_t cap = strlen(d->prompt) + strlen(r->context) + strlen(r->input) + 1, n = 0;
    char *out = (char *)malloc_check(cap);
    for (const char *p = d->prompt; *p;) {
        const char *fill = NULL;
        if (strncmp(p, "{context}", 9) == 0) { fill = r->context; p += 9; }
        else if (strncmp(p, "{input}", 7) == 0) { fill = r->input; p += 7; }
        if (fill) { size_t l = strlen(fill); memcpy(out + n, fill, l); n += l; }
        else { out[n++] = *p++; }
    }
    out[n] = '\0';
    return out;
}

// Keeps the first and the last max_len/2 tokens when n > max_len; returns the new length.
static inline int truncate_middle(uint32_t *toks, int n, int max_len) {
    if (n <= max_len) { return n; }
    int half = max_len / 2;
    memmove(toks + half, toks + n - half, (size_t)half * sizeof(uint32_t));
    return 2 * half;
}

// One record's score in [0, 1]: max over its answers of the dataset's metric.
static inline double longbench_score(const LBDataset *d, const char *pred, const LBRecord *r) {
    char *p = (char *)malloc_check(strlen(pred) + 1);
    const char *src = pred;
    if (d->first_line) { while (*src == '\n') { src++; } }
    strcpy(p, src);
    if (d->first_line) { char *nl = strchr(p, '\n'); if (nl) { *nl = '\0'; } }
    double best = 0.0;
    for (int a = 0; a < r->num_answers; a++) {
        const char *gt = r->answers[a];
        double s = 0.0;
        switch (d->metric) {
        case LB_QA_F1: s = qa_f1_score(p, gt); break;
        case LB_ROUGE: s = rouge_l_score(p, gt); break;
        case LB_CLASSIFICATION: s = classification_score(p, gt, (const char *const *)r->all_classes, r->num_classes); break;
        case LB_RETRIEVAL: s = retrieval_score(p, gt); break;
        case LB_COUNT: s = count_score(p, gt); break;
        default: s = code_sim_score(p, gt); break;
        }
        if (s > best) { best = s; }
    }
    free(p);
    return best;
}

#endif // LLMC_LONGBENCH_H
