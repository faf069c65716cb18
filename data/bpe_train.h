/*
 Byte-level BPE training. Text is cut into pre-tokens (pretoken_end in tokenizer.h) and the distinct
 pre-tokens ("words") are counted; merges never cross a pre-token boundary, so training works on the
 word types weighted by their counts rather than on the text.

 Each step merges the most frequent adjacent pair (ties: the smaller (left, right) id pair) into a new
 token, everywhere, left to right without overlap, exactly as encode applies it. Cost is kept
 proportional to the occurrences actually touched: every pair keeps the list of words that contain it,
 a lazy max-heap holds (count, pair) entries (counts of existing pairs only go down, so an entry whose
 count is stale is re-pushed with the current count when popped), and a merge rewrites only the words in
 the merged pair's list, adjusting the counts of the neighbouring pairs.
*/
#ifndef DATA_BPE_TRAIN_H
#define DATA_BPE_TRAIN_H

#include <stdint.h>
#include "../llmc/tokenizer.h"
#include "../llmc/jsonl.h"

// ----------------------------------------------------------------------------
// Word counting: open-addressing map pre-token bytes -> count

typedef struct {
    unsigned char *arena; uint64_t arena_len, arena_cap;
    uint64_t *off; uint32_t *len; uint64_t *count; uint32_t num, cap;  // word i
    uint32_t *slots; uint64_t mask;                                     // word index + 1, 0 = empty
} BpeCounter;

static inline void bpe_counter_init(BpeCounter *c) {
    memset(c, 0, sizeof(*c));
    c->arena_cap = 1 << 20; c->arena = (unsigned char *)malloc_check(c->arena_cap);
    c->cap = 1 << 16;
    c->off = (uint64_t *)malloc_check(c->cap * sizeof(uint64_t));
    c->len = (uint32_t *)malloc_check(c->cap * sizeof(uint32_t));
    c->count = (uint64_t *)malloc_check(c->cap * sizeof(uint64_t));
    c->mask = (1 << 17) - 1;
    c->slots = (uint32_t *)calloc_check(c->mask + 1, sizeof(uint32_t));
}

static inline void bpe_counter_free(BpeCounter *c) {
    free(c->arena); free(c->off); free(c->len); free(c->count); free(c->slots);
    memset(c, 0, sizeof(*c));
}

static inline void bpe_counter_grow(BpeCounter *c) {
    c->cap *= 2;
    c->off = (uint64_t *)realloc(c->off, c->cap * sizeof(uint64_t));
    c->len = (uint32_t *)realloc(c->len, c->cap * sizeof(uint32_t));
    c->count = (uint64_t *)realloc(c->count, c->cap * sizeof(uint64_t));
    if (!c->off || !c->len || !c->count) { die("out of host memory counting %u words", c->num); }
    free(c->slots);
    c->mask = 2 * (uint64_t)c->cap - 1;
    c->slots = (uint32_t *)calloc_check(c->mask + 1, sizeof(uint32_t));
    for (uint32_t i = 0; i < c->num; i++) {
        uint64_t h = tok_hash_bytes(c->arena + c->off[i], c->len[i]) & c->mask;
        while (c->slots[h]) { h = (h + 1) & c->mask; }
        c->slots[h] = i + 1;
    }
}

static inline void bpe_counter_add_word(BpeCounter *c, const unsigned char *w, size_t n, uint64_t count) {
    uint64_t h = tok_hash_bytes(w, n) & c->mask;
    for (; c->slots[h]; h = (h + 1) & c->mask) {
        uint32_t i = c->slots[h] - 1;
        if (c->len[i] == n && memcmp(c->arena + c->off[i], w, n) == 0) { c->count[i] += count; return; }
    }
    if (c->arena_len + n > c->arena_cap) {
        while (c->arena_len + n > c->arena_cap) { c->arena_cap *= 2; }
        c->arena = (unsigned char *)realloc(c->arena, c->arena_cap);
        if (!c->arena) { die("out of host memory counting words (%llu bytes)", (unsigned long long)c->arena_cap); }
    }
    uint32_t i = c->num++;
    memcpy(c->arena + c->arena_len, w, n);
    c->off[i] = c->arena_len; c->len[i] = (uint32_t)n; c->count[i] = count;
    c->arena_len += n;
    c->slots[h] = i + 1;
    if (c->num == c->cap) { bpe_counter_grow(c); }
}

static inline void bpe_counter_add_text(BpeCounter *c, const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t e = pretoken_end(s, n, i);
        bpe_counter_add_word(c, s + i, e - i, 1);
        i = e;
    }
}

// ----------------------------------------------------------------------------
// Training

typedef struct {
    uint64_t key;          // left << 32 | right
    int64_t count;
    uint32_t *words; uint32_t nwords, cap;  // words that contained the pair when it was counted
    uint32_t stamp;        // last merge step that queued it on the heap
} BpePair;

typedef struct { int64_t count; uint64_t key; uint32_t pair; } BpeHeapItem;

typedef struct {
    BpePair *pairs; uint32_t npairs, pcap;
    uint32_t *slots; uint64_t mask;         // pair index + 1, 0 = empty
    BpeHeapItem *heap; uint64_t nheap, hcap;
    uint32_t *touched; uint32_t ntouched, tcap;  // pairs that gained counts in the current step
} BpeState;

static inline int bpe_heap_before(const BpeHeapItem *x, const BpeHeapItem *y) {
    return x->count > y->count || (x->count == y->count && x->key < y->key);
}

static inline void bpe_heap_push(BpeState *st, BpeHeapItem it) {
    if (st->nheap == st->hcap) {
        st->hcap = st->hcap ? 2 * st->hcap : 1024;
        st->heap = (BpeHeapItem *)realloc(st->heap, st->hcap * sizeof(BpeHeapItem));
        if (!st->heap) { die("out of host memory growing the BPE heap"); }
    }
    uint64_t i = st->nheap++;
    while (i > 0 && bpe_heap_before(&it, &st->heap[(i - 1) / 2])) { st->heap[i] = st->heap[(i - 1) / 2]; i = (i - 1) / 2; }
    st->heap[i] = it;
}

static inline BpeHeapItem bpe_heap_pop(BpeState *st) {
    BpeHeapItem top = st->heap[0], last = st->heap[--st->nheap];
    uint64_t i = 0;
    for (;;) {
        uint64_t c = 2 * i + 1;
        if (c >= st->nheap) { break; }
        if (c + 1 < st->nheap && bpe_heap_before(&st->heap[c + 1], &st->heap[c])) { c++; }
        if (!bpe_heap_before(&st->heap[c], &last)) { break; }
        st->heap[i] = st->heap[c]; i = c;
    }
    if (st->nheap > 0) { st->heap[i] = last; }
    return top;
}

static inline uint32_t bpe_pair_index(BpeState *st, uint64_t key) {
    uint64_t h = tok_hash64(key) & st->mask;
    for (; st->slots[h]; h = (h + 1) & st->mask) {
        if (st->pairs[st->slots[h] - 1].key == key) { return st->slots[h] - 1; }
    }
    if (st->npairs == st->pcap) {
        st->pcap *= 2;
        st->pairs = (BpePair *)realloc(st->pairs, st->pcap * sizeof(BpePair));
        if (!st->pairs) { die("out of host memory: %u BPE pairs", st->npairs); }
    }
    uint32_t p = st->npairs++;
    memset(&st->pairs[p], 0, sizeof(BpePair));
    st->pairs[p].key = key;
    st->pairs[p].stamp = UINT32_MAX;
    st->slots[h] = p + 1;
    if (2 * (uint64_t)st->npairs > st->mask) {  // keep the load factor under 1/2
        free(st->slots);
        st->mask = 2 * st->mask + 1;
        st->slots = (uint32_t *)calloc_check(st->mask + 1, sizeof(uint32_t));
        for (uint32_t i = 0; i < st->npairs; i++) {
            uint64_t g = tok_hash64(st->pairs[i].key) & st->mask;
            while (st->slots[g]) { g = (g + 1) & st->mask; }
            st->slots[g] = i + 1;
        }
    }
    return p;
}

// Adds delta to the count of pair (a, b) seen in word w; a pair that gains is remembered for the heap.
static inline void bpe_pair_add(BpeState *st, uint32_t a, uint32_t b, int64_t delta, uint32_t w, uint32_t step) {
    uint32_t p = bpe_pair_index(st, tok_pair_key(a, b));
    BpePair *pr = &st->pairs[p];
    pr->count += delta;
    if (delta <= 0) { return; }
    if (pr->nwords == 0 || pr->words[pr->nwords - 1] != w) {
        if (pr->nwords == pr->cap) {
            pr->cap = pr->cap ? 2 * pr->cap : 4;
            pr->words = (uint32_t *)realloc(pr->words, pr->cap * sizeof(uint32_t));
            if (!pr->words) { die("out of host memory growing a BPE word list"); }
        }
        pr->words[pr->nwords++] = w;
    }
    if (pr->stamp != step) {
        pr->stamp = step;
        if (st->ntouched == st->tcap) {
            st->tcap = st->tcap ? 2 * st->tcap : 1024;
            st->touched = (uint32_t *)realloc(st->touched, st->tcap * sizeof(uint32_t));
            if (!st->touched) { die("out of host memory in BPE training"); }
        }
        st->touched[st->ntouched++] = p;
    }
}

static inline void bpe_push_touched(BpeState *st) {
    for (uint32_t i = 0; i < st->ntouched; i++) {
        BpePair *pr = &st->pairs[st->touched[i]];
        if (pr->count > 0) { bpe_heap_push(st, (BpeHeapItem){pr->count, pr->key, st->touched[i]}); }
    }
    st->ntouched = 0;
}

// Learns up to num_merges merges from the counted words into merges_out (2 per merge); returns how
// many it learned (fewer when no pair occurs any more). progress_every > 0 prints a line that often.
static inline uint32_t bpe_train(const BpeCounter *c, uint32_t num_merges, uint32_t *merges_out, uint32_t progress_every) {
    // words as symbol arrays (shrinking in place as merges apply)
    uint64_t *woff = (uint64_t *)malloc_check((size_t)c->num * sizeof(uint64_t));
    uint32_t *wlen = (uint32_t *)malloc_check((size_t)c->num * sizeof(uint32_t));
    uint32_t *wstamp = (uint32_t *)malloc_check((size_t)c->num * sizeof(uint32_t));
    uint32_t *sym = (uint32_t *)malloc_check(c->arena_len * sizeof(uint32_t));
    uint64_t pos = 0;
    for (uint32_t w = 0; w < c->num; w++) {
        woff[w] = pos; wlen[w] = c->len[w]; wstamp[w] = UINT32_MAX;
        for (uint32_t k = 0; k < c->len[w]; k++) { sym[pos++] = c->arena[c->off[w] + k]; }
    }
    BpeState st;
    memset(&st, 0, sizeof(st));
    st.pcap = 1 << 16;
    st.pairs = (BpePair *)malloc_check(st.pcap * sizeof(BpePair));
    st.mask = (1 << 17) - 1;
    st.slots = (uint32_t *)calloc_check(st.mask + 1, sizeof(uint32_t));
    for (uint32_t w = 0; w < c->num; w++) {
        const uint32_t *s = sym + woff[w];
        for (uint32_t k = 0; k + 1 < wlen[w]; k++) { bpe_pair_add(&st, s[k], s[k + 1], (int64_t)c->count[w], w, 0); }
    }
    bpe_push_touched(&st);

    uint32_t learned = 0;
    while (learned < num_merges && st.nheap > 0) {
        BpeHeapItem top = bpe_heap_pop(&st);
        BpePair *best = &st.pairs[top.pair];
        if (best->count != top.count) {  // stale: counts only fall, so re-queue with the current count
            if (best->count > 0) { top.count = best->count; bpe_heap_push(&st, top); }
            continue;
        }
        uint32_t a = (uint32_t)(top.key >> 32), b = (uint32_t)top.key, x = 256 + learned, step = learned + 1;
        merges_out[2 * learned] = a; merges_out[2 * learned + 1] = b;
        // the list may name a word twice or name words that lost the pair; stamps skip repeats
        uint32_t *list = best->words, nlist = best->nwords;
        best->words = NULL; best->nwords = best->cap = 0;
        for (uint32_t li = 0; li < nlist; li++) {
            uint32_t w = list[li];
            if (wstamp[w] == step) { continue; }
            wstamp[w] = step;
            uint32_t *s = sym + woff[w], n = wlen[w];
            int64_t cnt = (int64_t)c->count[w];
            for (uint32_t k = 0; k + 1 < n; k++) {
                if (s[k] != a || s[k + 1] != b) { continue; }
                if (k > 0) { bpe_pair_add(&st, s[k - 1], a, -cnt, w, step); }
                if (k + 2 < n) { bpe_pair_add(&st, b, s[k + 2], -cnt, w, step); }
                bpe_pair_add(&st, a, b, -cnt, w, step);
                s[k] = x;
                memmove(s + k + 1, s + k + 2, (n - k - 2) * sizeof(uint32_t));
                n--;
                if (k > 0) { bpe_pair_add(&st, s[k - 1], x, cnt, w, step); }
                if (k + 1 < n) { bpe_pair_add(&st, x, s[k + 1], cnt, w, step); }
            }
            wlen[w] = n;
        }
        free(list);
        bpe_push_touched(&st);
        learned++;
        if (progress_every && learned % progress_every == 0) {
            printf("merge %u/%u: (%u, %u) -> %u, count %lld\n", learned, num_merges, a, b, x, (long long)top.count);
            fflush(stdout);
        }
    }
    for (uint32_t p = 0; p < st.npairs; p++) { free(st.pairs[p].words); }
    free(st.pairs); free(st.slots); free(st.heap); free(st.touched);
    free(woff); free(wlen); free(wstamp); free(sym);
    return learned;
}

// Trains a tokenizer with vocab_size tokens in all (256 bytes + merges + the <|endoftext|> special).
static inline void bpe_train_tokenizer(Tokenizer *t, const BpeCounter *c, uint32_t vocab_size, uint32_t progress_every) {
    if (vocab_size < 257 + 1) { die("vocab size %u is too small: need at least 258 (256 bytes, 1 merge, end-of-text)", vocab_size); }
    uint32_t want = vocab_size - 257;
    uint32_t *merges = (uint32_t *)malloc_check(2 * (size_t)want * sizeof(uint32_t));
    uint32_t got = bpe_train(c, want, merges, progress_every);
    if (got < want) {
        fprintf(stderr, "warning: the training text only supports %u merges (asked for %u): vocab size will be %u\n",
                got, want, 257 + got);
    }
    const char *names[1] = {TOKENIZER_EOT_NAME};
    uint32_t lens[1] = {(uint32_t)strlen(TOKENIZER_EOT_NAME)};
    tokenizer_build(t, merges, got, names, lens, 1, "(trained)");
    free(merges);
}

// ----------------------------------------------------------------------------
// Training sample from a corpus: about sample_bytes of document text, spread evenly over the files
// (smallest first; what a small file cannot give goes to the larger ones), counted into c.

static inline int bpe_size_cmp(const void *x, const void *y) {
    long long a = ((const long long *)x)[0], b = ((const long long *)y)[0];
    return a < b ? -1 : a > b;
}

static inline uint64_t bpe_count_corpus(BpeCounter *c, const CorpusFiles *files, uint64_t sample_bytes, int skip_bad) {
    long long (*order)[2] = (long long (*)[2])malloc_check((size_t)files->n * sizeof(*order));
    for (int k = 0; k < files->n; k++) {
        struct stat sb;
        if (stat(files->paths[k], &sb) != 0) { die("cannot stat '%s': %s", files->paths[k], strerror(errno)); }
        order[k][0] = (long long)sb.st_size; order[k][1] = k;
    }
    qsort(order, (size_t)files->n, sizeof(*order), bpe_size_cmp);
    uint64_t used = 0;
    unsigned char *scratch = NULL; size_t scratch_cap = 0;
    CorpusFiles one = {NULL, 1, 1};
    for (int k = 0; k < files->n && used < sample_bytes; k++) {
        uint64_t budget = (sample_bytes - used) / (uint64_t)(files->n - k), taken = 0;
        one.paths = &files->paths[order[k][1]];
        CorpusReader r;
        corpus_reader_open(&r, &one, (CorpusPos){0, 0, 1});
        const unsigned char *rec, *text;
        size_t len;
        CorpusPos at;
        while (taken < budget && corpus_reader_next(&r, &rec, &len, &at)) {
            if (len > scratch_cap) { scratch_cap = len; free(scratch); scratch = (unsigned char *)malloc_check(scratch_cap); }
            long long n = corpus_doc_text(&one, at, rec, len, scratch, &text, skip_bad);
            if (n < 0) { continue; }
            if ((uint64_t)n > budget - taken) { n = (long long)(budget - taken); }
            bpe_counter_add_text(c, text, (size_t)n);
            taken += (uint64_t)n;
        }
        corpus_reader_close(&r);
        used += taken;
    }
    free(scratch); free(order);
    return used;
}

#endif // DATA_BPE_TRAIN_H
