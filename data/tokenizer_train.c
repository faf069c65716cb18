/*
 Trains a byte-level BPE tokenizer on a sample of a corpus of text/JSONL files and writes the tokenizer
 file (format in llmc/tokenizer.h and doc/tokenizer.md). data/prepare trains one the same way when its
 tokenizer file does not exist yet, so this program is only needed to train separately.
   build/tokenizer_train -o tokenizer.bin -v 32000 -n 100 corpus_folder/
*/
#include <time.h>
#include "bpe_train.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(void) {
    fprintf(stderr,
            "usage: tokenizer_train [flags] input...   (inputs: .jsonl/.txt files or folders of them)\n"
            "  -o <path>  output tokenizer file (default tokenizer.bin)\n"
            "  -v <int>   vocabulary size incl. 256 bytes and <|endoftext|> (default 32000)\n"
            "  -n <MB>    training sample size in MB of document text, spread over the files (default 100)\n"
            "  -k         skip malformed JSONL lines with a warning instead of stopping (default: stop)\n"
            "  -p <int>   print progress every this many merges, 0 = quiet (default 1000)\n"
            "  -h         this help\n");
    exit(1);
}

int main(int argc, char **argv) {
    const char *out = "tokenizer.bin";
    long vocab = 32000, progress = 1000;
    double sample_mb = 100;
    int skip_bad = 0, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        char f = argv[i][1];
        if (f == 'h' || argv[i][2] != '\0') { usage(); }
        if (f == 'k') { skip_bad = 1; continue; }
        if (i + 1 >= argc) { die("flag -%c needs a value", f); }
        const char *v = argv[++i];
        if (f == 'o') { out = v; }
        else if (f == 'v') { vocab = atol(v); }
        else if (f == 'n') { sample_mb = atof(v); }
        else if (f == 'p') { progress = atol(v); }
        else { die("unknown flag -%c (see -h)", f); }
    }
    if (i >= argc) { usage(); }
    if (vocab < 258 || vocab > 0x7FFFFFFF) { die("-v %ld: vocabulary size must be at least 258", vocab); }
    if (sample_mb <= 0) { die("-n %g: sample size must be positive", sample_mb); }
    CorpusFiles files;
    corpus_list(&files, argv + i, argc - i);
    double t0 = now_s();
    BpeCounter c;
    bpe_counter_init(&c);
    uint64_t used = bpe_count_corpus(&c, &files, (uint64_t)(sample_mb * 1e6), skip_bad);
    double t1 = now_s();
    printf("sample: %.1f MB from %d files, %u distinct pre-tokens, counted in %.2f s\n", used / 1e6, files.n, c.num, t1 - t0);
    Tokenizer t;
    bpe_train_tokenizer(&t, &c, (uint32_t)vocab, (uint32_t)progress);
    double t2 = now_s();
    printf("trained %u merges in %.2f s (total %.2f s); vocab size %u\n", t.num_merges, t2 - t1, t2 - t0, t.vocab_size);
    tokenizer_save(&t, out);
    printf("wrote %s\n", out);
    tokenizer_free(&t);
    bpe_counter_free(&c);
    corpus_files_free(&files);
    return 0;
}
