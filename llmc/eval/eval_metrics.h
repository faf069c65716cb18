/*
 Answer-scoring metrics of LongBench (THUDM/LongBench metrics.py) and RULER, computed on text the way
 the official Python computes them on str (code points; llmc/unicode.h: str.lower(), str.split(), re's
 \\w and \\d over all of Unicode; invalid UTF-8 decoded as Python's errors="replace" does).
 Each returns a score in [0, 1] for one prediction against one ground truth; a dataset score is the max
 over its ground truths, averaged over records, times 100 (longbench.h does that).
 - qa_f1_score: token F1 after normalize_answer (str.lower(), drop string.punctuation (ASCII), replace
   the words a/an/the (re \\b(a|an|the)\\b) by a space, " ".join(split())), counting repeated tokens as a
   multiset (Python Counter &).
 - rouge_l_score: ROUGE-L "f" of the `rouge` package LongBench uses (pltrdy/rouge, summary level):
   sentences split at '.', words at ' ' after " ".join(sentence.split()), m / n = distinct words of
   reference / prediction, overlap = distinct words of the union of each (reference sentence, prediction
   sentence) LCS; f = 2pr/(p+r+1e-8). Case-sensitive, like the package. An empty prediction scores 0 (the
   package raises; LongBench catches).
 - classification_score: the classes that occur in the prediction, minus those that are a proper
   substring of the ground truth (with Python's skip-after-remove loop quirk kept), 1/count if the
   ground truth is among them, else 0.
 - retrieval_score / count_score: the fraction of the numbers (re \\d+) in the prediction that equal the
   ground truth's paragraph id ("Paragraph N") / the ground truth.
 - code_sim_score: the first line of the prediction without '`', '#' or "//", compared to the ground
   truth with fuzzywuzzy's fuzz.ratio as computed with python-Levenshtein: 100 for equal strings (two
   empty ones too), 0 if either is empty, else round(100 * 2*LCS/(|a|+|b|)) (half to even) / 100 over
   code points.
 - RULER: string match of each expected answer inside the prediction, both str.lower()ed: all-match is
   the fraction found, part-match is 1 if any is found.
*/
#ifndef LLMC_EVAL_METRICS_H
#define LLMC_EVAL_METRICS_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../unicode.h"
#include "../utils.h"

// A word: a slice of a code point string.
typedef struct { const uint32_t *s; int n; } Span;
typedef struct { Span *w; int n, cap; } SpanList;

static inline void spans_push(SpanList *l, const uint32_t *s, int n) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->w = (Span *)realloc(l->w, (size_t)l->cap * sizeof(Span));
        if (!l->w) { die("out of host memory splitting words"); }
    }
    l->w[l->n].s = s; l->w[l->n].n = n; l->n++;
}

static inline int span_eq(Span a, Span b) { return a.n == b.n && memcmp(a.s, b.s, (size_t)a.n * sizeof(uint32_t)) == 0; }

static inline int metric_is_punct(uint32_t c) { return c > 0 && c < 0x80 && strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", (int)c); }

// Python str.split(): runs of non-whitespace.
static inline void split_whitespace(SpanList *out, const uint32_t *s, int n) {
    out->n = 0;
    for (int i = 0; i < n;) {
        while (i < n && uc_is_space(s[i])) { i++; }
        int start = i;
        while (i < n && !uc_is_space(s[i])) { i++; }
        if (i > start) { spans_push(out, s + start, i - start); }
    }
}

// " ".join(words) appended to out.
static inline void join_words(CpStr *out, const SpanList *words) {
    for (int k = 0; k < words->n; k++) {
        if (k) { cps_push(out, ' '); }
        for (int i = 0; i < words->w[k].n; i++) { cps_push(out, words->w[k].s[i]); }
    }
}

// LongBench's normalize_answer as code points: lower, remove punctuation, replace the words a/an/the
// by a space, collapse whitespace.
static inline CpStr normalize_answer_cps(const char *s) {
    CpStr text = cps_from_cstr(s), low = cps_lower(text.c, text.n), tmp = {NULL, 0, 0}, out = {NULL, 0, 0};
    for (int i = 0; i < low.n; i++) { if (!metric_is_punct(low.c[i])) { cps_push(&tmp, low.c[i]); } }
    // articles: a maximal run of word characters equal to a, an or the becomes one space
    static const uint32_t the[3] = {'t', 'h', 'e'}, an[2] = {'a', 'n'};
    CpStr art = {NULL, 0, 0};
    for (int i = 0; i < tmp.n;) {
        if (!uc_is_word(tmp.c[i])) { cps_push(&art, tmp.c[i++]); continue; }
        int start = i;
        while (i < tmp.n && uc_is_word(tmp.c[i])) { i++; }
        int w = i - start;
        const uint32_t *p = tmp.c + start;
        if ((w == 1 && p[0] == 'a') || (w == 2 && memcmp(p, an, sizeof(an)) == 0) || (w == 3 && memcmp(p, the, sizeof(the)) == 0)) { cps_push(&art, ' '); }
        else { for (int k = start; k < i; k++) { cps_push(&art, tmp.c[k]); } }
    }
    SpanList words = {0};
    split_whitespace(&words, art.c, art.n);
    join_words(&out, &words);
    free(words.w); free(text.c); free(low.c); free(tmp.c); free(art.c);
    return out;
}

// normalize_answer as UTF-8 (malloc'd).
static inline char *normalize_answer(const char *s) {
    CpStr n = normalize_answer_cps(s);
    return cps_release_utf8(&n);
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
    double p = 1.0 * same / a->n, r = 1.0 * same / b->n;
    return 2 * p * r / (p + r);
}

static inline double qa_f1_score(const char *pred, const char *gt) {
    CpStr np = normalize_answer_cps(pred), ng = normalize_answer_cps(gt);
    SpanList a = {0}, b = {0};
    split_whitespace(&a, np.c, np.n);
    split_whitespace(&b, ng.c, ng.n);
    double f = token_f1(&a, &b);
    free(a.w); free(b.w); free(np.c); free(ng.c);
    return f;
}

// ---------------------------------------------------------------------------------------------------
// ROUGE-L (pltrdy/rouge summary level, exclusive = sets of words)

// Sentences of s: split at '.', non-empty pieces, each as " ".join(piece.split()). The sentences are
// written one after the other into buf, reserved up front (they are never longer than s) so that the
// spans put into out stay valid.
static inline void rouge_sentences(SpanList *out, CpStr *buf, const CpStr *s) {
    SpanList words = {0};
    out->n = 0;
    buf->n = 0;
    buf->cap = s->n + 1;
    buf->c = (uint32_t *)malloc_check((size_t)buf->cap * sizeof(uint32_t));
    for (int i = 0; i <= s->n;) {
        int start = i;
        while (i < s->n && s->c[i] != '.') { i++; }
        if (i > start) {
            split_whitespace(&words, s->c + start, i - start);
            int begin = buf->n;
            join_words(buf, &words);
            spans_push(out, buf->c + begin, buf->n - begin);
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
    CpStr cp = cps_from_cstr(pred), cg = cps_from_cstr(gt), bp = {NULL, 0, 0}, bg = {NULL, 0, 0};
    SpanList hs = {0}, rs = {0}, hw = {0}, rw = {0}, hset = {0}, rset = {0}, uni = {0};
    rouge_sentences(&hs, &bp, &cp);
    rouge_sentences(&rs, &bg, &cg);
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
    free(hs.w); free(rs.w); free(hw.w); free(rw.w); free(hset.w); free(rset.w); free(uni.w);
    free(cp.c); free(cg.c); free(bp.c); free(bg.c);
    return f;
}

// ---------------------------------------------------------------------------------------------------
// classification, retrieval, count, code similarity

static inline double classification_score(const char *pred, const char *gt, const char *const *classes, int nclasses) {
    char *p = utf8_clean(pred);
    const char **match = (const char **)malloc_check((size_t)(nclasses > 0 ? nclasses : 1) * sizeof(char *));
    int n = 0;
    for (int c = 0; c < nclasses; c++) { if (strstr(p, classes[c])) { match[n++] = classes[c]; } }
    // Python removes from the list it iterates: after a removal the next element is skipped
    for (int i = 0; i < n; i++) {
        if (strstr(gt, match[i]) && strcmp(match[i], gt) != 0) {
            memmove(match + i, match + i + 1, (size_t)(n - i - 1) * sizeof(char *));
            n--;
        }
    }
    double score = 0.0;
    for (int i = 0; i < n; i++) { if (strcmp(match[i], gt) == 0) { score = 1.0 / n; break; } }
    free(match); free(p);
    return score;
}

// The fraction of the decimal digit runs (re \d+) in pred equal to `number`; 0 if pred has none.
static inline double number_match_fraction(const char *pred, const uint32_t *number, int number_len) {
    CpStr s = cps_from_cstr(pred);
    int total = 0, right = 0;
    for (int i = 0; i < s.n;) {
        if (!uc_is_decimal(s.c[i])) { i++; continue; }
        int start = i;
        while (i < s.n && uc_is_decimal(s.c[i])) { i++; }
        total++;
        right += i - start == number_len && memcmp(s.c + start, number, (size_t)number_len * sizeof(uint32_t)) == 0;
    }
    free(s.c);
    return total ? (double)right / total : 0.0;
}

static inline double count_score(const char *pred, const char *gt) {
    CpStr g = cps_from_cstr(gt);
    double r = number_match_fraction(pred, g.c, g.n);
    free(g.c);
    return r;
}

static inline double retrieval_score(const char *pred, const char *gt) {
    static const uint32_t key[10] = {'P', 'a', 'r', 'a', 'g', 'r', 'a', 'p', 'h', ' '};
    CpStr g = cps_from_cstr(gt);
    int at = -1;
    for (int i = 0; at < 0 && i + 10 < g.n; i++) {
        if (memcmp(g.c + i, key, sizeof(key)) == 0 && uc_is_decimal(g.c[i + 10])) { at = i + 10; }
    }
    if (at < 0) { die("retrieval_score: ground truth '%s' has no 'Paragraph N'", gt); }
    int len = 0;
    while (at + len < g.n && uc_is_decimal(g.c[at + len])) { len++; }
    double r = number_match_fraction(pred, g.c + at, len);
    free(g.c);
    return r;
}

// Length of the longest common subsequence of two code point strings (two rows of the DP table).
static inline int lcs_length(const uint32_t *a, int n, const uint32_t *b, int m) {
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

// fuzz.ratio(a, b) / 100 with python-Levenshtein: 100 for equal strings (checked before emptiness), 0 if
// either is empty, else round(100 * indel similarity) with Python's half-to-even rounding.
static inline double fuzz_ratio(const char *a, const char *b) {
    if (strcmp(a, b) == 0) { return 1.0; }
    CpStr x = cps_from_cstr(a), y = cps_from_cstr(b);
    double r = 0.0;
    if (x.n > 0 && y.n > 0) {
        double sim = (double)(x.n + y.n - (x.n + y.n - 2 * lcs_length(x.c, x.n, y.c, y.n))) / (double)(x.n + y.n);
        r = nearbyint(100 * sim) / 100;
    }
    free(x.c); free(y.c);
    return r;
}

static inline double code_sim_score(const char *pred, const char *gt) {
    char *p = utf8_clean(pred), *s = p;
    while (*s == '\n') { s++; }
    char *line = NULL;
    for (char *q = s;;) {
        char *e = strchr(q, '\n');
        if (e) { *e = '\0'; }
        if (!strchr(q, '`') && !strchr(q, '#') && !strstr(q, "//")) { line = q; break; }
        if (!e) { break; }
        q = e + 1;
    }
    double r = fuzz_ratio(line ? line : "", gt);
    free(p);
    return r;
}

// ---------------------------------------------------------------------------------------------------
// RULER string match

// Whether needle.lower() in hay.lower() (Python str semantics).
static inline int contains_nocase(const char *hay, const char *needle) {
    CpStr h0 = cps_from_cstr(hay), n0 = cps_from_cstr(needle);
    CpStr h = cps_lower(h0.c, h0.n), n = cps_lower(n0.c, n0.n);
    int found = n.n == 0;
    for (int i = 0; !found && i + n.n <= h.n; i++) { found = memcmp(h.c + i, n.c, (size_t)n.n * sizeof(uint32_t)) == 0; }
    free(h0.c); free(n0.c); free(h.c); free(n.c);
    return found;
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
