/*
 Encodes text to token ids, or decodes ids to text, with any tokenizer moba.c reads (moba.c's BPE
 file, a SentencePiece tokenizer.model, a Hugging Face tokenizer.json; llmc/text_tokenizer.h). For
 looking at what a tokenizer does and for the cross-checks against other implementations:
   build/tokenize -t tokenizer.model file.txt        ids of the whole file on one line
   build/tokenize -t tokenizer.model -l file.txt     one line of ids per input line (newline not encoded)
   build/tokenize -t tokenizer.model -d ids.txt      each line of ids decoded, one output line each
*/
#include "llmc/text_tokenizer.h"

static void usage(void) {
    fprintf(stderr,
            "usage: tokenize -t tokenizer [-l] [-d] file\n"
            "  -t path  tokenizer: moba.c BPE file, SentencePiece .model or tokenizer.json (required)\n"
            "  -l       encode each line separately (default: off, the whole file at once)\n"
            "  -d       decode: each input line holds space-separated ids (default: off, encode)\n");
    exit(1);
}

static void encode_print(const TextTokenizer *t, TokenCache *cache, const unsigned char *s, size_t n) {
    size_t cap = text_tokenizer_max_tokens(t, n);
    uint32_t *ids = (uint32_t *)malloc_check((cap ? cap : 1) * sizeof(uint32_t));
    size_t m = text_tokenizer_encode(t, cache, s, n, ids, cap);
    if (m > cap) { die("internal error: %zu tokens for %zu bytes exceed the bound %zu", m, n, cap); }
    for (size_t i = 0; i < m; i++) { printf(i ? " %u" : "%u", ids[i]); }
    printf("\n");
    free(ids);
}

static void decode_print(const TextTokenizer *t, char *line) {
    size_t n = 0, cap = 64;
    uint32_t *ids = (uint32_t *)malloc_check(cap * sizeof(uint32_t));
    for (char *tok = strtok(line, " \n"); tok; tok = strtok(NULL, " \n")) {
        char *end;
        unsigned long v = strtoul(tok, &end, 10);
        if (*end || v > UINT32_MAX) { die("'%s' is not a token id", tok); }
        if (n == cap) { cap *= 2; ids = (uint32_t *)realloc(ids, cap * sizeof(uint32_t)); if (!ids) { die("out of host memory"); } }
        ids[n++] = (uint32_t)v;
    }
    size_t len = text_tokenizer_decode(t, ids, n, NULL, 0);
    unsigned char *out = (unsigned char *)malloc_check(len);
    text_tokenizer_decode(t, ids, n, out, len);
    fwrite(out, 1, len, stdout);
    printf("\n");
    free(out); free(ids);
}

int main(int argc, char **argv) {
    const char *tok_path = NULL;
    int per_line = 0, decode = 0, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-l") == 0) { per_line = 1; }
        else if (strcmp(argv[i], "-d") == 0) { decode = 1; }
        else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) { tok_path = argv[++i]; }
        else { usage(); }
    }
    if (!tok_path || i != argc - 1) { usage(); }
    TextTokenizer t;
    text_tokenizer_load(&t, tok_path);
    FILE *f = fopen_check(argv[i], "rb");
    long long size = file_size_check(f, argv[i]);
    unsigned char *text = (unsigned char *)malloc_check((size_t)size + 1);
    fread_check(text, 1, (size_t)size, f, argv[i]);
    fclose(f);
    text[size] = '\0';
    TokenCache *cache = token_cache_new();
    if (!per_line && !decode) { encode_print(&t, cache, text, (size_t)size); }
    for (size_t s = 0; (per_line || decode) && s < (size_t)size;) {
        size_t e = s;
        while (e < (size_t)size && text[e] != '\n') { e++; }
        if (decode) { text[e] = '\0'; decode_print(&t, (char *)text + s); }
        else { encode_print(&t, cache, text + s, e - s); }
        s = e + 1;
    }
    free(cache); free(text);
    text_tokenizer_free(&t);
    return 0;
}
