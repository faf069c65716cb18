/*
 What a training run measures and shows besides its loss: validation (mean loss, and the greedy accuracy on
 the built-in corpus's recall positions) and the final sample, printed as text with the -f tokenizer, as
 token names on the built-in corpus, else as ids.
*/
#ifndef LLMC_RUN_EVAL_H
#define LLMC_RUN_EVAL_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "synthetic.h"
#include "text_tokenizer.h"
#include "train_args.h"
#include "utils.h"

// Validation: mean loss, and the greedy accuracy on synthetic recall positions (none in real text).
typedef struct { double loss, recall_acc; long recall_count, recall_hits; } EvalResult;

// Adds a (B, T) batch's recall positions to r; pred[n] is the model's greedy token at position n.
static inline void eval_count_recall(EvalResult *r, const int32_t *inputs, const int32_t *targets, const int *pred, int B, int T) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            size_t n = (size_t)b * T + t;
            if (!synthetic_is_recall_value(inputs + (size_t)b * T, t)) { continue; }
            r->recall_hits += pred[n] == targets[n];
            r->recall_count++;
        }
    }
    r->recall_acc = r->recall_count ? (double)r->recall_hits / r->recall_count : 0;
}

// The final sample: up to 16 leading tokens of `source` as the prompt, continued by -s tokens, all within
// max_len. Returns the token buffer (NULL when there is nothing to sample); the caller frees it.
static inline int *sample_prompt(const TrainArgs *a, const int32_t *source, int max_len, int *prompt, int *total) {
    *prompt = max_len - 1 < 16 ? max_len - 1 : 16;
    *total = *prompt + a->sample_tokens < max_len ? *prompt + a->sample_tokens : max_len;
    if (a->sample_tokens <= 0 || *prompt < 1) { return NULL; }
    int *tokens = (int *)malloc_check((size_t)*total * sizeof(int));
    memcpy(tokens, source, (size_t)*prompt * sizeof(int));
    return tokens;
}

// Prints prompt | continuation as text when a tokenizer file is given, as token names on the built-in
// corpus, else as token ids.
static inline void print_sample(const TrainArgs *a, const int *tokens, int prompt, int total, int vocab_size) {
    const char *tokenizer_path = a->tokenizer;
    if (tokenizer_path == NULL) {
        int synthetic = strcmp(a->train_pattern, default_args().train_pattern) == 0;
        printf("sample (%s; prompt | continuation):", synthetic ? "built-in corpus: k = key, v = value, w = word" : "token ids");
        for (int i = 0; i < total; i++) {
            char name[32];
            if (synthetic) { synthetic_token_name(name, sizeof(name), (uint32_t)tokens[i], (uint32_t)vocab_size); }
            else { snprintf(name, sizeof(name), "%d", tokens[i]); }
            printf("%s%s", i == prompt ? " | " : " ", name);
        }
        printf("\n");
        return;
    }
    TextTokenizer tok;
    load_sample_tokenizer(&tok, tokenizer_path, vocab_size);
    printf("sample (prompt | continuation):\n");
    for (int i = 0; i < total; i++) {
        if (i == prompt) { printf(" | "); }
        if ((uint32_t)tokens[i] >= tok.vocab_size) { printf("<%d>", tokens[i]); continue; }  // padded vocabulary slots
        size_t len;
        const unsigned char *bytes = text_tokenizer_token_bytes(&tok, (uint32_t)tokens[i], &len);
        fwrite(bytes, 1, len, stdout);
    }
    printf("\n");
    text_tokenizer_free(&tok);
}

#endif // LLMC_RUN_EVAL_H
