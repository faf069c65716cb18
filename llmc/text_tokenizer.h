/*
 One tokenizer interface over the three file formats moba.c reads, chosen by the file's content:
   - moba.c's own byte-level BPE (llmc/tokenizer.h), files starting with the bytes "MTOK";
   - a Hugging Face tokenizer.json (llmc/hf_tokenizer.h), files whose first non-blank byte is '{';
   - a SentencePiece tokenizer.model (llmc/sentencepiece.h), anything else (a protobuf).
 The document token is what data/prepare puts before every document and what the evaluation starts a
 context with: <|endoftext|> for moba.c's BPE, the BOS piece (<s>) for SentencePiece as Llama-2 trained,
 and for tokenizer.json the first special added token among the usual BOS names, else EOS names.
*/
#ifndef LLMC_TEXT_TOKENIZER_H
#define LLMC_TEXT_TOKENIZER_H

#include "tokenizer.h"
#include "sentencepiece.h"
#include "hf_tokenizer.h"

enum { TOKFMT_MOBA_BPE, TOKFMT_SENTENCEPIECE, TOKFMT_HF_JSON };

typedef struct {
    int format;
    Tokenizer bpe;
    SpModel sp;
    HfTokenizer hf;
    uint32_t vocab_size, doc_token;
} TextTokenizer;

static inline int tok_is_blank(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// JSON: the first non-blank byte is '{'. A protobuf starts with 0x0A, a newline, and could have '{' next,
// so a file that starts with a newline must also end with '}'.
static inline int tok_looks_like_json(FILE *f, const unsigned char *head, size_t got, long long size, const char *path) {
    size_t i = 0;
    while (i < got && tok_is_blank(head[i])) { i++; }
    if (i == got || head[i] != '{') { return 0; }
    if (head[0] != '\n') { return 1; }
    unsigned char tail[64];
    long long from = size > (long long)sizeof(tail) ? size - (long long)sizeof(tail) : 0;
    fseek_check(f, from, SEEK_SET, path);
    size_t n = fread(tail, 1, (size_t)(size - from), f);
    while (n > 0 && tok_is_blank(tail[n - 1])) { n--; }
    return n > 0 && tail[n - 1] == '}';
}

static inline void text_tokenizer_load(TextTokenizer *t, const char *path) {
    memset(t, 0, sizeof(*t));
    FILE *f = fopen_check(path, "rb");
    long long size = file_size_check(f, path);
    unsigned char head[64];
    size_t got = fread(head, 1, sizeof(head), f);
    if (got == 0) { die("tokenizer '%s' is empty", path); }
    uint32_t magic = 0;
    if (got >= 4) { memcpy(&magic, head, 4); }
    int json = tok_looks_like_json(f, head, got, size, path);
    fclose(f);
    if (magic == TOKENIZER_MAGIC) {
        t->format = TOKFMT_MOBA_BPE;
        tokenizer_load(&t->bpe, path);
        t->vocab_size = t->bpe.vocab_size; t->doc_token = tokenizer_eot(&t->bpe);
    } else if (json) {
        t->format = TOKFMT_HF_JSON;
        hf_load(&t->hf, path);
        t->vocab_size = t->hf.vocab_size; t->doc_token = t->hf.doc_token;
    } else {
        t->format = TOKFMT_SENTENCEPIECE;
        sp_load(&t->sp, path);
        t->vocab_size = t->sp.pieces.n;
        t->doc_token = t->sp.bos != UINT32_MAX ? t->sp.bos : t->sp.eos;
        if (t->doc_token == UINT32_MAX) { die("sentencepiece model '%s' has neither a BOS nor an EOS piece to mark documents", path); }
    }
}

static inline void text_tokenizer_free(TextTokenizer *t) {
    if (t->format == TOKFMT_MOBA_BPE) { tokenizer_free(&t->bpe); }
    else if (t->format == TOKFMT_SENTENCEPIECE) { sp_free(&t->sp); }
    else { hf_free(&t->hf); }
    memset(t, 0, sizeof(*t));
}

// Most ids encoding n bytes can give: a buffer this long always holds the whole encoding.
static inline size_t text_tokenizer_max_tokens(const TextTokenizer *t, size_t n) {
    return t->format == TOKFMT_MOBA_BPE ? n : t->format == TOKFMT_SENTENCEPIECE ? 3 * n + 3 : hf_max_tokens(&t->hf, n);
}

// Encodes n bytes: writes at most cap ids, returns the number the whole text needs. cache (one per
// thread, from token_cache_new) may be NULL. Never emits special tokens for text that spells them.
static inline size_t text_tokenizer_encode(const TextTokenizer *t, TokenCache *cache, const unsigned char *s, size_t n,
                                           uint32_t *out, size_t cap) {
    if (t->format == TOKFMT_MOBA_BPE) { return tokenizer_encode_cached(&t->bpe, cache, s, n, out, cap); }
    if (t->format == TOKFMT_SENTENCEPIECE) { return sp_encode(&t->sp, cache, s, n, out, cap); }
    return hf_encode(&t->hf, cache, s, n, out, cap);
}

// Decodes ids: writes at most cap bytes, returns the number the whole decoding needs.
static inline size_t text_tokenizer_decode(const TextTokenizer *t, const uint32_t *ids, size_t n, unsigned char *out, size_t cap) {
    if (t->format == TOKFMT_MOBA_BPE) { return tokenizer_decode(&t->bpe, ids, n, out, cap); }
    if (t->format == TOKFMT_SENTENCEPIECE) { return sp_decode(&t->sp, ids, n, out, cap); }
    return hf_decode(&t->hf, ids, n, out, cap);
}

// The bytes one token stands for on its own (SentencePiece: "▁" as a space, control pieces empty).
static inline const unsigned char *text_tokenizer_token_bytes(const TextTokenizer *t, uint32_t id, size_t *len) {
    if (id >= t->vocab_size) { die("token id %u is out of range (vocab size %u)", id, t->vocab_size); }
    if (t->format == TOKFMT_MOBA_BPE) { return tokenizer_token_bytes(&t->bpe, id, len); }
    return piece_bytes(t->format == TOKFMT_SENTENCEPIECE ? &t->sp.surface : &t->hf.surface, id, len);
}

#endif // LLMC_TEXT_TOKENIZER_H
