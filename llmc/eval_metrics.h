/*
 Answer-scoring metrics of LongBench (THUDM/LongBench metrics.py) and RULER, on byte strings.
 Each returns a score in [0, 1] for one prediction against one ground truth; a dataset score is the max
 over its ground truths, averaged over records, times 100 (longbench.h does that).
 - qa_f1_score: token F1 after normalize_answer (lowercase, drop ASCII punctuation, drop the words
   a/an/the, collapse whitespace), counting repeated tokens as a multiset (Python Counter &).
 - rouge_l_score: ROUGE-L "f" of the `rouge` package LongBench uses (pltrdy/rouge, summary level):
   sentences split at '.', words at ' ', m / n = distinct words of reference / prediction, overlap =
   distinct words of the union of each (reference sentence, prediction sentence) LCS; f = 2pr/(p+r+1e-8).
   Case-sensitive, like the package. An empty prediction scores 0 (the package raises; LongBench catches).
 - classification_score: the classes that occur in the prediction, minus those that are a proper
   substring of the ground truth (with Python's skip-after-remove loop quirk kept), 1/count if the
   ground truth is among them, else 0.
 - retrieval_score / count_score: the fraction of the numbers in the prediction that equal the ground
   truth's paragraph id ("Paragraph N") / the ground truth.
 - code_sim_score: the first line of the prediction without '`', '#' or "//", compared to the ground
   truth with fuzzywuzzy's fuzz.ratio as computed with python-Levenshtein: round(100 * 2*LCS/(|a|+|b|))
   / 100 over characters (bytes here), 0 if either string is empty.
 - RULER: string match of each expected answer inside the prediction, both lowercased: all-match is the
   fraction found, part-match is 1 if any is found.
 Text is treated as bytes: lowercase and punctuation are ASCII only (LongBench's English subsets).
*/
#ifndef LLMC_EVAL_METRICS_H
#define LLMC_EVAL_METRICS_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "utils.h"

// A word: a slice of a string.
typedef struct { const char *s; int n; } Span;
typedef struct { Span *w; int n, cap; } SpanList;

static inline void spans_push(SpanList *l, const char *s, int n) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->w = (Span *)realloc(l->w, (size_t)l->cap * sizeof(Span));
        if (!l->w) { die("out of host memory splitting words"); }
    }
    l->w[l->n].s = s; l->w[l->n].n = n; l->n++;
}

static inline int span_eq(Span a, Span b) { return a.n == b.n && memcmp(a.s, b.s, (size_t)a.n) == 0; }

static inline int metric_is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }
static inline int metric_is_punct(unsigned char c) { return c < 0x80 && strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", c) && c != 0; }
// \w of Python's regex, approximated on bytes: ASCII letters, digits, '_' and every non-ASCII byte
static inline int metric_is_word(unsigned char c) { return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }

// Python str.split(): runs of non-whitespace.
static inline void split_whitespace(SpanList *out, const char *s, int n) {
    out->n = 0;
    for (int i = 0; i < n;) {
        while (i < n && metric_is_space((unsigned char)s[i])) { i++; }
        int start = i;
        while (i < n && !metric_is_space((unsigned char)s[i])) { i++; }
        if (i > start) { spans_push(out, s + start, i - start); }
    }
}

// LongBench's normalize_answer into out (room for strlen(s) + 1): lower, remove punctuation, replace the
// words a/an/the by a space, collapse whitespace. Returns the length.
static inline int normalize_answer(char *out, const char *s) {
    int n = 0, len = (int)strlen(s);
    char *tmp = (char *)malloc_check((size_t)len + 1);
    for (int i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (metric_is_punct(c)) { continue; }
        tmp[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    // articles: a maximal run of word characters equal to a, an or the
    for (int i = 0; i < n;) {
        if (!metric_is_word((unsigned char)tmp[i])) { i++; continue; }
        int start = i;
        while (i < n && metric_is_word((unsigned char)tmp[i])) { i++; }
        int w = i - start;
        if ((w == 1 && tmp[start] == 'a') || (w == 2 && memcmp(tmp + start, "an", 2) == 0) || (w == 3 && memcmp(tmp + start, "the", 3) == 0)) {
            memset(tmp + start, ' ', (size_t)w);
        }
    }
    SpanList words = {0};
    split_whitespace(&words, tmp, n);
    int m = 0;
    for (int k = 0; k < words.n; k++) {
        if (k) { out[m++] = ' '; }
        memcpy(out + m, words.w[k].s, (size_t)words.w[k].n);
        m += words.w[k].n;
    }
    out[m] = '\0';
    free(words.w); free(tmp);
    return m;
}

// F1 of two token multisets (Counter(a) & Counter(b)).
static inline double token_f1(const SpanList *a, const SpanList *b) {
    if (a->n == 0 || b->n == 0) { return 0.0; }
    unsigned char *used = (unsigned char *)calloc_check((size_t)b->n, 1);
    int same = 0;
    for (int i = 0; i < a->n; i++) {
        for (int j = 0; j < b->n; j++) {
            if (!used[j] && span_eq(a->w[i], b->w[j])) { used[j] = 1; same++; break; }
        }
    }
    free(used);
    if (same == 0) { return 0.0; }
    double p = (double)same / a->n, r = (double)same / b->n;
    return 2 * p * r / (p + r);
}

static inline double qa_f1_score(const char *pred, const char *gt) {
    char *np = (char *)malloc_check(strlen(pred) + 1), *ng = (char *)malloc_check(strlen(gt) + 1);
    int lp = normalize_answer(np, pred), lg = normalize_answer(ng, gt);
    SpanList a = {0}, b = {0};
    split_whitespace(&a, np, lp);
    split_whitespace(&b, ng, lg);
    double f = token_f1(&a, &b);
    free(a.w); free(b.w); free(np); free(ng);
    return f;
}

// ---------------------------------------------------------------------------------------------------
// ROUGE-L (pltrdy/rouge summary level, exclusive = sets of words)

// Sentences of s: split at '.', non-empty pieces, each with whitespace collapsed to single spaces
// (" ".join(piece.split())). Writes the collapsed sentences into buf, their spans into out.
static inline void rouge_sentences(SpanList *out, char *buf, const char *s) {
    int len = (int)strlen(s), m = 0;
    SpanList words = {0};
    out->n = 0;
    for (int i = 0; i <= len;) {
        int start = i;
        while (i < len && s[i] != '.') { i++; }
        if (i > start) {
            split_whitespace(&words, s + start, i - start);
            int begin = m;
            for (int k = 0; k < words.n; k++) {
                if (k) { buf[m++] = ' '; }
                memcpy(buf + m, words.w[k].s, (size_t)words.w[k].n);
                m += words.w[k].n;
            }
            spans_push(out, buf + begin, m - begin);
        }
        i++;
    }
    free(words.w);
}

// s.split(" ") of one collapsed sentence (an empty sentence is one empty word, as in Python).
static inline void split_space(SpanList *out, Span s) {
    out->n = 0;
    int start = 0;
    for (int i = 0; i <= s.n; i++) {
        if (i == s.n || s.s[i] == ' ') { spans_push(out, s.s + start, i - start); start = i + 1; }
    }
}

static inline int span_set_add(SpanList *set, Span w) {
    for (int i = 0; i < set->n; i++) { if (span_eq(set->w[i], w)) { return 0; } }
    spans_push(set, w.s, w.n);
    return 1;
}

// Adds the words of the LCS of x and y, reconstructed as rouge_score._recon_lcs does, to `set`.
static inline void lcs_words_into(SpanList *set, const SpanList *x, const SpanList *y) {
    int n = x->n, m = y->n;
    int *t = (int *)calloc_check((size_t)(n + 1) * (m + 1), sizeof(int));
#define LCS_T(i, j) t[(size_t)(i) * (m + 1) + (j)]
    for (int i = 1; i <= n; i++) {
        for (int j = 1; j <= m; j++) {
            LCS_T(i, j) = span_eq(x->w[i - 1], y->w[j - 1]) ? LCS_T(i - 1, j - 1) + 1
                        : (LCS_T(i - 1, j) > LCS_T(i, j - 1) ? LCS_T(i - 1, j) : LCS_T(i, j - 1));
        }
    }
    for (int i = n, j = m; i > 0 && j > 0;) {
        if (span_eq(x->w[i - 1], y->w[j - 1])) { span_set_add(set, x->w[i - 1]); i--; j--; }
        else if (LCS_T(i - 1, j) > LCS_T(i, j - 1)) { i--; }
        else { j--; }
    }
#undef LCS_T
    free(t);
}

static inline double rouge_l_score(const char *pred, const char *gt) {
    char *bp = (char *)malloc_check(strlen(pred) + 1), *bg = (char *)malloc_check(strlen(gt) + 1);
    SpanList hs = {0}, rs = {0}, hw = {0}, rw = {0}, hset = {0}, rset = {0}, uni = {0};
    rouge_sentences(&hs, bp, pred);
    rouge_sentences(&rs, bg, gt);
    double f = 0.0;
    if (hs.n > 0 && rs.n > 0) {
        for (int i = 0; i < rs.n; i++) { split_space(&rw, rs.w[i]); for (int k = 0; k < rw.n; k++) { span_set_add(&rset, rw.w[k]); } }
        for (int i = 0; i < hs.n; i++) { split_space(&hw, hs.w[i]); for (int k = 0; k < hw.n; k++) { span_set_add(&hset, hw.w[k]); } }
        for (int i = 0; i < rs.n; i++) {
            split_space(&rw, rs.w[i]);
            for (int j = 0; j < hs.n; j++) { split_space(&hw, hs.w[j]); lcs_words_into(&uni, &rw, &hw); }
        }
        double r = (double)uni.n / rset.n, p = (double)uni.n / hset.n;
        f = 2.0 * (p * r / (p + r + 1e-8));
    }
    free(hs.w); free(rs.w); free(hw.w); free(rw.w); free(hset.w); free(rset.w); free(uni.w); free(bp); free(bg);
    return f;
}

// ---------------------------------------------------------------------------------------------------
// classification, retrieval, count, code similarity

static inline double classification_score(const char *pred, const char *gt, const char *const *classes, int nclasses) {
    const char **match = (const char **)malloc_check((size_t)(nclasses > 0 ? nclasses : 1) * sizeof(char *));
    int n = 0;
    for (int c = 0; c < nclasses; c++) { if (strstr(pred, classes[c])) { match[n++] = classes[c]; } }
    // Python removes from the list it iterates: after a removal the next element is skipped
    for (int i = 0; i < n; i++) {
        if (strstr(gt, match[i]) && strcmp(match[i], gt) != 0) {
            memmove(match + i, match + i + 1, (size_t)(n - i - 1) * sizeof(char *));
            n--;
        }
    }
    double score = 0.0;
    for (int i = 0; i < n; i++) { if (strcmp(match[i], gt) == 0) { score = 1.0 / n; break; } }
    free(match);
    return score;
}

// The fraction of the digit runs in pred equal to `number` (a digit string); 0 if pred has none.
static inline double number_match_fraction(const char *pred, const char *number, int number_len) {
    int total = 0, right = 0;
    for (const char *p = pred; *p;) {
        if (*p < '0' || *p > '9') { p++; continue; }
        const char *start = p;
        while (*p >= '0' && *p <= '9') { p++; }
        total++;
        right += (p - start == number_len && memcmp(start, number, (size_t)number_len) == 0);
    }
    return total ? (double)right / total : 0.0;
}

static inline double count_score(const char *pred, const char *gt) { return number_match_fraction(pred, gt, (int)strlen(gt)); }

static inline double retrieval_score(const char *pred, const char *gt) {
    const char *m = gt;
    while ((m = strstr(m, "Paragraph ")) != NULL) {
        m += 10;
        if (*m >= '0' && *m <= '9') { break; }
    }
    if (m == NULL) { die("retrieval_score: ground truth '%s' has no 'Paragraph N'", gt); }
    int len = 0;
    while (m[len] >= '0' && m[len] <= '9') { len++; }
    return number_match_fraction(pred, m, len);
}

// Length of the longest common subsequence of two byte strings (two rows of the DP table).
static inline int lcs_bytes(const char *a, int n, const char *b, int m) {
    int *prev = (int *)calloc_check((size_t)m + 1, sizeof(int)), *cur = (int *)calloc_check((size_t)m + 1, sizeof(int));
    for (int i = 1; i <= n; i++) {
        for (int j = 1; j <= m; j++) {
            cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
        }
        int *t = prev; prev = cur; cur = t;
    }
    int r = prev[m];
    free(prev); free(cur);
    return r;
}

// fuzz.ratio(a, b) / 100 (python-Levenshtein: indel similarity, rounded to a whole percent).
static inline double fuzz_ratio(const char *a, int n, const char *b, int m) {
    if (n == 0 || m == 0) { return 0.0; }
    if (n == m && memcmp(a, b, (size_t)n) == 0) { return 1.0; }
    return nearbyint(100.0 * 2.0 * lcs_bytes(a, n, b, m) / (n + m)) / 100.0;
}

static inline double code_sim_score(const char *pred, const char *gt) {
    while (*pred == '\n') { pred++; }
    const char *line = "";
    int len = 0;
    for (const char *p = pred;;) {
        const char *e = strchr(p, '\n');
        int n = e ? (int)(e - p) : (int)strlen(p);
        int bad = memchr(p, '`', (size_t)n) || memchr(p, '#', (size_t)n);
        for (int i = 0; i + 1 < n && !bad; i++) { bad = p[i] == '/' && p[i + 1] == '/'; }
        if (!bad) { line = p; len = n; break; }
        if (!e) { break; }
        p = e + 1;
    }
    return fuzz_ratio(line, len, gt, (int)strlen(gt));
}

// ---------------------------------------------------------------------------------------------------
// RULER string match

static inline int contains_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle), h = strlen(hay);
    if (n == 0) { return 1; }
    for (size_t i = 0; i + n <= h; i++) {
        size_t k = 0;
        while (k < n) {
            unsigned char a = (unsigned char)hay[i + k], b = (unsigned char)needle[k];
            if ((a >= 'A' && a <= 'Z' ? a + 32 : a) != (b >= 'A' && b <= 'Z' ? b + 32 : b)) { break; }
            k++;
        }
        if (k == n) { return 1; }
    }
    return 0;
}

static inline double ruler_all_match(const char *pred, const char *const *refs, int nrefs) {
    int found = 0;
    for (int i = 0; i < nrefs; i++) { found += contains_nocase(pred, refs[i]); }
    return nrefs ? (double)found / nrefs : 0.0;
}

static inline double ruler_part_match(const char *pred, const char *const *refs, int nrefs) {
    for (int i = 0; i < nrefs; i++) { if (contains_nocase(pred, refs[i])) { return 1.0; } }
    return 0.0;
}

#endif // LLMC_EVAL_METRICS_H
