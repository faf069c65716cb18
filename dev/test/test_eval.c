/*
 Tests of the evaluation pieces: LongBench metrics on hand-computed cases (ASCII and Unicode, as Python's
 str computes them); KV-cache decoding against full
 recompute (every step's logits and the greedy tokens) for dense, MoBA and MoBA + key conv; sampling;
 LongBench JSONL reading (and its errors with line numbers), prompts and middle truncation; RULER
 generators (determinism, token budget, answers present) and scoring; the SVG writer.
*/
#define TESTING
#include "train_gpt_moba.c"
#include "llmc/eval/kv_cache.h"
#include "llmc/eval/eval_driver.h"
#include "llmc/eval/eval_cpu.h"
#include "llmc/eval/plot.h"
#include "dev/test/testing.h"

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

static void test_metrics(void) {
    char *norm = normalize_answer("An apple, the END. Theatre!");
    CHECK(strcmp(norm, "apple end theatre") == 0, "normalize_answer gave '%s'", norm);
    free(norm);
    CHECK(NEAR(qa_f1_score("The Cat sat!", "a cat sat on the mat"), 2.0 / 3, 1e-12), "qa_f1 subset");
    CHECK(NEAR(qa_f1_score("cat cat dog", "cat dog dog"), 2.0 / 3, 1e-12), "qa_f1 multiset counts");
    CHECK(qa_f1_score("the", "a") == 0.0, "qa_f1 of two empty normalisations is 0");
    CHECK(NEAR(qa_f1_score("Paris", "paris."), 1.0, 1e-12), "qa_f1 exact after normalisation");
    // one sentence: LCS "the cat on the mat" -> distinct {the, cat, on, mat} = 4 of 5 distinct each side
    CHECK(NEAR(rouge_l_score("the cat sat on the mat", "the cat is on the mat"), 0.8, 1e-7), "rouge-l one sentence %f",
          rouge_l_score("the cat sat on the mat", "the cat is on the mat"));
    // two sentences each: union LCS {a, c, d}, m = 3, n = 4 -> r = 1, p = 3/4
    CHECK(NEAR(rouge_l_score("a b. c d", "a c. d"), 2 * 0.75 / 1.75, 1e-7), "rouge-l summary level %f", rouge_l_score("a b. c d", "a c. d"));
    CHECK(rouge_l_score("...", "a c") == 0.0 && rouge_l_score("", "x") == 0.0, "rouge-l of an empty prediction is 0");
    CHECK(NEAR(rouge_l_score("The cat", "the cat"), 2 * 0.5 * 0.5 / 1.0, 1e-7), "rouge-l is case-sensitive");
    const char *classes[] = {"Abbreviation", "Entity", "Description", "Number"};
    CHECK(NEAR(classification_score("Entity or Number", "Number", classes, 4), 0.5, 1e-12), "classification two matches");
    CHECK(classification_score("Description", "Number", classes, 4) == 0.0, "classification wrong class");
    const char *nested[] = {"a", "ab", "abc"};
    CHECK(NEAR(classification_score("abc", "abc", nested, 3), 0.5, 1e-12), "classification keeps Python's skip-after-remove");
    CHECK(NEAR(retrieval_score("Paragraph 12, not 3", "Paragraph 12"), 0.5, 1e-12), "retrieval");
    CHECK(retrieval_score("no digits", "Paragraph 4") == 0.0, "retrieval without numbers");
    CHECK(count_score("There are 7 unique, maybe 7", "7") == 1.0 && count_score("17", "7") == 0.0, "count");
    CHECK(NEAR(code_sim_score("\n# comment\nx = foo(1)\nmore", "x = foo(2)"), 0.90, 1e-12), "code_sim skips comment lines %f",
          code_sim_score("\n# comment\nx = foo(1)\nmore", "x = foo(2)"));
    CHECK(NEAR(code_sim_score("kitten", "sitting"), 0.62, 1e-12), "fuzz.ratio(kitten, sitting) = 62");
    CHECK(code_sim_score("", "x") == 0.0 && code_sim_score("abc", "abc") == 1.0, "code_sim edge cases");
    const char *refs[] = {"123", "456", "789"};
    CHECK(NEAR(ruler_all_match("The numbers are 123 and 456", refs, 3), 2.0 / 3, 1e-12), "ruler all-match");
    CHECK(ruler_part_match("The numbers are 123 and 456", refs, 3) == 1.0 && ruler_part_match("none", refs, 3) == 0.0, "ruler part-match");
    const char *word[] = {"Apple"};
    CHECK(ruler_all_match("an APPLE a day", word, 1) == 1.0, "ruler match ignores case");
}

// The cases where byte-level scoring differs from the official Python (str.lower(), str.split(), re \b,
// fuzz.ratio on code points and its equality rule); each value is what Python gives.
static void test_metrics_unicode(void) {
    CHECK(NEAR(qa_f1_score("Paris\xc2\xa0" "France", "paris france"), 1.0, 1e-12), "qa_f1: a non-breaking space splits words");
    CHECK(NEAR(qa_f1_score("\xc3\x89MILE Zola", "\xc3\xa9mile zola"), 1.0, 1e-12), "qa_f1: accented capitals are lowered");
    CHECK(NEAR(qa_f1_score("x\xe2\x80\x94the cat", "x\xe2\x80\x94 cat"), 1.0, 1e-12), "qa_f1: an em dash is a word boundary before an article");
    char *n = normalize_answer("\xc3\x80 LA CARTE\xe2\x80\x83the \xc5\x92UVRE");  // em space, OE ligature
    CHECK(strcmp(n, "\xc3\xa0 la carte \xc5\x93uvre") == 0, "normalize_answer Unicode: '%s'", n);
    free(n);
    n = normalize_answer("\xc4\xb0stanbul");  // U+0130 lowers to i + combining dot (two characters)
    CHECK(strcmp(n, "i\xcc\x87stanbul") == 0, "normalize_answer: capital dotted I lowers to two characters");
    free(n);
    CHECK(code_sim_score("", "") == 1.0, "code_sim of two empty strings is 1 (fuzz.ratio checks equality first)");
    CHECK(NEAR(code_sim_score("caf\xc3\xa9", "cafe"), 0.75, 1e-12), "code_sim counts characters, not bytes: %f", code_sim_score("caf\xc3\xa9", "cafe"));
    CHECK(NEAR(fuzz_ratio("abcdefgh", "abcdefghijklmnopqrstuvwxyz012"), 0.43, 1e-12), "fuzz.ratio rounds 100 * 16/37 = 43.24");
    const char *emile[] = {"\xc3\xa9mile"};
    CHECK(ruler_all_match("It was \xc3\x89MILE.", emile, 1) == 1.0, "ruler match lowers accented capitals");
    CHECK(count_score("\xd9\xa7 and 7", "7") == 0.5, "count: Arabic-Indic digits are numbers (re \\d)");
    CHECK(NEAR(rouge_l_score("a\xc2\xa0" "b c", "a b c"), 1.0, 1e-7), "rouge-l collapses Unicode whitespace");
    CpStr bad = cps_from_cstr("a\xe2\x82\xff\xc3");  // truncated sequence, invalid byte, truncated: 3 replacements
    CHECK(bad.n == 4 && bad.c[1] == 0xFFFD && bad.c[2] == 0xFFFD && bad.c[3] == 0xFFFD, "UTF-8 decoding replaces as Python does (%d)", bad.n);
    free(bad.c);
    char *cap = utf8_capitalize("\xc3\x9f\xc3\x89T\xc3\x89");  // sharp s titles to "Ss"
    CHECK(strcmp(cap, "Ss\xc3\xa9t\xc3\xa9") == 0, "str.capitalize: '%s'", cap);
    free(cap);
}

// ---------------------------------------------------------------------------------------------------
// KV cache == full recompute

static int hybrid_last;   // n_dense_last of the next small_config with MoBA
static int paper_window;  // > 0: the next small_config has the paper layout with this window (NoPE global layers)

static ModelConfig small_config(int attn, int kconv) {
    ModelConfig c = {64, 2, 16, 2, 40, 96, attn, 4, 2, kconv, attn == ATTN_MOBA ? hybrid_last : 0, 10000.0f,
                     paper_window ? LAYOUT_PAPER : LAYOUT_GLOBAL, paper_window, paper_window ? 1 : 0, 0};
    return c;
}

// Random model with weights scaled up so attention and the MoBA gate are far from uniform.
static void random_model(Model *m, const ModelConfig *cfg, uint64_t seed) {
    model_init(m, cfg, seed);
    Rng r;
    rng_init(&r, seed + 7);
    for (size_t i = 0; i < m->num_params; i++) { m->params[i] = m->params[i] * 12 + rng_normal(&r, 0, 0.02f); }
    for (size_t i = 0; i < m->sizes[P_KCONVW]; i++) { m->p[P_KCONVW][i] = rng_normal(&r, 0, 0.7f); }  // every tap matters
}

// Decodes tokens[p..total) after a prefill of p tokens; every step's logits against model_forward's.
// Returns the max |logit difference|; *mismatch counts steps whose argmax differs.
static double decode_vs_recompute(Model *m, Model *full, KVCache *kv, const int *tokens, int p, int total, int *mismatch) {
    int V = m->cfg.vocab_size;
    const real *lg = kv_prefill(kv, m, tokens, p);
    double max_err = 0;
    *mismatch = 0;
    for (int t = p; t <= total; t++) {
        model_forward(full, tokens, NULL, 1, t);
        const real *ref = full->a.logits + (size_t)(t - 1) * V;
        for (int v = 0; v < V; v++) { double e = fabs((double)lg[v] - ref[v]); if (e > max_err) { max_err = e; } }
        *mismatch += argmax_logits(lg, V) != argmax_logits(ref, V);
        if (t < total) { lg = kv_step(kv, m, tokens[t]); }
    }
    return max_err;
}

static void test_kv_cache(const char *name, int attn, int kconv) {
    ModelConfig cfg = small_config(attn, kconv);
    Model m, full;
    random_model(&m, &cfg, 42);
    random_model(&full, &cfg, 42);
    int prompt_len = 11, gen = 50, total = prompt_len + gen;
    int tokens[128] = {0};
    Rng r;
    rng_init(&r, 5);
    for (int i = 0; i < prompt_len; i++) { tokens[i] = (int)rng_below(&r, cfg.vocab_size); }
    model_forward(&full, tokens, NULL, 1, total);  // allocates the recompute model's activations for every length
    // the greedy continuation by full recompute
    for (int t = prompt_len; t < total; t++) {
        model_forward(&full, tokens, NULL, 1, t);
        tokens[t] = argmax_logits(full.a.logits + (size_t)(t - 1) * cfg.vocab_size, cfg.vocab_size);
    }
    KVCache kv;
    kv_init(&kv, &cfg, total);
    GenConfig g = {gen, 0.0f, 1.0f, 1, -1, NULL, NULL, 0, 0};
    int out[128];
    int n = kv_generate(&kv, &m, tokens, prompt_len, &g, out);
    CHECK(n == gen && memcmp(out, tokens + prompt_len, gen * sizeof(int)) == 0, "%s: kv_generate greedy tokens == full recompute's", name);
    int prefills[2] = {prompt_len, 1};  // 1: every key but the first comes from decode steps (key conv warm-up)
    for (int i = 0; i < 2; i++) {
        int mismatch;
        double err = decode_vs_recompute(&m, &full, &kv, tokens, prefills[i], total - 1, &mismatch);
        CHECK(err <= 1e-5 && mismatch == 0, "%s: prefill %d + decode vs recompute: max |dlogit| %.3g, %d argmax mismatches", name, prefills[i], err, mismatch);
        printf("ok   %s: prefill %d + %d decode steps, max |logit diff| %.3g vs full recompute\n", name, prefills[i], total - 1 - prefills[i], err);
    }
    if (attn == ATTN_MOBA) {  // the gate must actually drop blocks for the test to mean anything
        model_forward(&full, tokens, NULL, 1, total);
        int nb = (total + cfg.moba_block - 1) / cfg.moba_block, dropped = 0;
        for (int t = 0; t < total; t++) { dropped += (t / cfg.moba_block + 1) > cfg.moba_topk; }
        CHECK(nb > cfg.moba_topk && dropped > total / 2, "%s: MoBA drops blocks for most queries", name);
    }
    kv_free(&kv); model_free(&m); model_free(&full);
}

static void test_sampling(void) {
    real logits[6] = {0.0f, 3.0f, 2.9f, -1.0f, 0.5f, 2.95f};
    Rng r;
    rng_init(&r, 3);
    CHECK(sample_token(logits, 6, 0.0f, 1.0f, &r) == 1, "greedy picks the argmax");
    int counts[6] = {0};
    for (int i = 0; i < 3000; i++) { counts[sample_token(logits, 6, 1.0f, 0.5f, &r)]++; }
    // top-p 0.5: token 1 alone has p ~0.33, with token 5 ~0.65: only {1, 5} may appear
    CHECK(counts[0] + counts[2] + counts[3] + counts[4] == 0 && counts[1] > 1000 && counts[5] > 1000, "top-p keeps the nucleus {1,5}: %d %d %d", counts[1], counts[5], counts[2]);
    int seen = 0;
    for (int i = 0; i < 3000; i++) { seen |= 1 << sample_token(logits, 6, 1.0f, 1.0f, &r); }
    CHECK(seen == 63, "temperature 1, top-p 1 reaches every token (mask %d)", seen);
    // stop sequences and eot end generation
    ModelConfig cfg = small_config(ATTN_DENSE, 0);
    Model m;
    random_model(&m, &cfg, 9);
    KVCache kv;
    kv_init(&kv, &cfg, 64);
    int prompt[3] = {1, 2, 3}, out[32];
    GenConfig g = {20, 0.0f, 1.0f, 1, -1, NULL, NULL, 0, 0};
    int n = kv_generate(&kv, &m, prompt, 3, &g, out);
    CHECK(n == 20, "max_new_tokens bounds generation");
    int stop[2] = {out[3], out[4]};
    const int *stops[1] = {stop};
    int lens[1] = {2};
    GenConfig gs = {20, 0.0f, 1.0f, 1, -1, stops, lens, 1, 0};
    int out2[32];
    int n2 = kv_generate(&kv, &m, prompt, 3, &gs, out2);
    int first = -1;
    for (int i = 1; i < n && first < 0; i++) { if (out[i - 1] == stop[0] && out[i] == stop[1]) { first = i + 1; } }
    CHECK(n2 == first, "stop sequence ends generation after it (%d vs %d)", n2, first);
    GenConfig ge = {20, 0.0f, 1.0f, 1, out[2], NULL, NULL, 0, 0};
    int n3 = kv_generate(&kv, &m, prompt, 3, &ge, out2);
    int firsteot = 0;
    while (out[firsteot] != out[2]) { firsteot++; }
    CHECK(n3 == firsteot, "eot ends generation before it (%d vs %d)", n3, firsteot);
    // LongBench's samsum rule (min_length = prompt + 1): neither EOT nor the newline stop may come first
    const int *nl_stop[1] = {&out[0]};
    int one[1] = {1};
    GenConfig gm = {20, 0.0f, 1.0f, 1, out[0], nl_stop, one, 1, 1};
    int n4 = kv_generate(&kv, &m, prompt, 3, &gm, out2);
    CHECK(n4 >= 1 && out2[0] != out[0], "min_new_tokens 1: the first token is neither EOT nor the stop (%d tokens, first %d, greedy %d)", n4, out2[0], out[0]);
    kv_free(&kv); model_free(&m);
}


// ---------------------------------------------------------------------------------------------------
// LongBench records, prompts, truncation, scoring

static char tmpdir[64];

static void write_file(const char *path, const char *text) {
    FILE *f = fopen_check(path, "w");
    fputs(text, f);
    fclose(f);
}

static void read_longbench(void *path) { LBRecords rs = longbench_read((const char *)path); longbench_free(&rs); }

static void test_longbench(void) {
    char path[128], bad[128];
    snprintf(path, sizeof(path), "%s/hotpotqa.jsonl", tmpdir);
    write_file(path,
        "{\"input\": \"Who wrote it?\", \"context\": \"Passage 1:\\nIt was written by Ann \\u00e9.\", \"answers\": [\"Ann\", \"Ann E\"], "
        "\"length\": 9, \"dataset\": \"hotpotqa\", \"language\": \"en\", \"all_classes\": null, \"_id\": \"a1\"}\n"
        "\n"
        "{\"input\": \"Q2\", \"context\": \"C2\", \"answers\": [\"Paris\"], \"length\": 2, \"dataset\": \"hotpotqa\", "
        "\"language\": \"en\", \"all_classes\": [\"x\", \"y\"], \"_id\": \"a2\", \"extra\": {\"nested\": [1, 2.5e3, true]}}\n");
    LBRecords rs = longbench_read(path);
    CHECK(rs.n == 2, "2 records (blank line skipped), got %d", rs.n);
    CHECK(strcmp(rs.r[0].context, "Passage 1:\nIt was written by Ann \xc3\xa9.") == 0 && rs.r[0].num_answers == 2 && rs.r[0].length == 9 && rs.r[0].num_classes == 0,
          "record 1 fields decoded");
    CHECK(rs.r[1].num_classes == 2 && strcmp(rs.r[1].all_classes[1], "y") == 0 && strcmp(rs.r[1].id, "a2") == 0, "record 2 fields");
    const LBDataset *d = longbench_dataset("hotpotqa");
    char *prompt = longbench_prompt(d, &rs.r[1]);
    CHECK(strcmp(prompt, "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\n"
                         "The following are given passages.\nC2\n\nAnswer the question based on the given passages. Only give me the answer "
                         "and do not output any other words.\n\nQuestion: Q2\nAnswer:") == 0, "hotpotqa prompt: '%s'", prompt);
    free(prompt);
    CHECK(d->max_gen == 32 && longbench_dataset("gov_report")->max_gen == 512 && longbench_dataset("lcc")->metric == LB_CODE_SIM, "max lengths and metrics");
    CHECK(NEAR(longbench_score(d, "ann e", &rs.r[0]), 1.0, 1e-12) && NEAR(longbench_score(d, "Ann wrote", &rs.r[0]), 2.0 / 3, 1e-12), "score = max over answers");
    LBRecord trec = rs.r[1];
    const LBDataset *dt = longbench_dataset("trec");
    char *answers[1] = {"y"};
    trec.answers = answers; trec.num_answers = 1;
    CHECK(longbench_score(dt, "\ny\nx", &trec) == 1.0 && longbench_score(dt, "x\ny", &trec) == 0.0, "trec scores the first non-empty line only");
    longbench_free(&rs);
    // JSON writer: escapes, and invalid UTF-8 (a token cut mid-character) becomes U+FFFD; parses back
    char *js = NULL;
    size_t jn = 0;
    FILE *mem = open_memstream(&js, &jn);
    fputs("{\"s\": ", mem);
    json_write_string(mem, "a\"b\\\n\x01\xff\xc3\xa9\xe2\x82", 11);
    fputs("}", mem);
    fclose(mem);
    JValue jv;
    jv_parse_object_line(&jv, (const unsigned char *)js, jn, "memory", 1);
    const JValue *sv = jv_get(&jv, "s");
    CHECK(sv && sv->kind == JV_STR && sv->len == 17 && memcmp(sv->str, "a\"b\\\n\x01\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd", 17) == 0,
          "json_write_string round trip: '%s'", js);
    jv_free(&jv); free(js);
    uint32_t toks[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    int n = truncate_middle(toks, 10, 6);
    CHECK(n == 6 && toks[2] == 2 && toks[3] == 7 && toks[5] == 9, "truncate_middle keeps 3 + 3");
    CHECK(truncate_middle(toks, 6, 6) == 6, "no truncation when it fits");
    // malformed records: the error names file:line (and column for bad JSON)
    snprintf(bad, sizeof(bad), "%s/bad.jsonl", tmpdir);
    write_file(bad, "{\"input\": \"a\", \"context\": \"b\", \"answers\": [\"c\"], \"length\": 1, \"dataset\": \"d\", \"language\": \"en\", \"_id\": \"1\"}\n\n{\"input\": \"a\", \"context\": \"b\n");
    expect_failure("LongBench: broken JSON", read_longbench, bad, "bad.jsonl:3:");
    write_file(bad, "{\"input\": \"a\", \"context\": \"b\", \"answers\": \"c\", \"length\": 1, \"dataset\": \"d\", \"language\": \"en\", \"_id\": \"1\"}\n");
    expect_failure("LongBench: answers not a list", read_longbench, bad, "bad.jsonl:1: field 'answers' must be an array");
    write_file(bad, "{\"input\": \"a\", \"answers\": [\"c\"], \"length\": 1, \"dataset\": \"d\", \"language\": \"en\", \"_id\": \"1\"}\n");
    expect_failure("LongBench: missing context", read_longbench, bad, "bad.jsonl:1: field 'context' is missing");
    write_file(bad, "[1, 2]\n");
    expect_failure("LongBench: not an object", read_longbench, bad, "bad.jsonl:1:1: malformed JSONL record: line is not a JSON object");
}

// ---------------------------------------------------------------------------------------------------
// RULER

static int count_occurrences(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++) { n++; }
    return n;
}

// Every key of a sample (needles and haystack needles) is distinct: the asked key has one value.
static void test_ruler_keys(const RulerSource *src) {
    const char *tasks[3] = {"niah_multikey_1", "niah_multikey_2", "niah_multikey_3"};
    int lengths[3] = {1024, 4096, 16384}, samples = 0, repeated = 0, most = 0;
    for (int ti = 0; ti < 3; ti++) {
        for (int li = 0; li < 3; li++) {
            int n = li == 2 ? 40 : 500;  // 3000+ samples in all, the long ones fewer
            for (int i = 0; i < n; i++) {
                RulerSample smp = ruler_generate(ruler_task(tasks[ti]), src, lengths[li], i, 77);
                char **keys = NULL;
                int nk = 0, cap = 0;
                for (const char *p = smp.prompt; (p = strstr(p, " for ")) != NULL;) {
                    p += 5;
                    const char *e = strstr(p, " is: ");
                    if (!e || memchr(p, ' ', (size_t)(e - p))) { continue; }
                    if (nk == cap) { cap = cap ? 2 * cap : 64; keys = (char **)realloc(keys, (size_t)cap * sizeof(char *)); }
                    keys[nk] = (char *)malloc_check((size_t)(e - p) + 1);
                    memcpy(keys[nk], p, (size_t)(e - p)); keys[nk][e - p] = '\0';
                    nk++;
                }
                int dup = 0;
                for (int x = 0; x < nk && !dup; x++) { for (int y = x + 1; y < nk && !dup; y++) { dup = strcmp(keys[x], keys[y]) == 0; } }
                repeated += dup; samples++;
                if (nk > most) { most = nk; }
                free_strings(keys, nk);
                ruler_sample_free(&smp);
            }
        }
    }
    CHECK(repeated == 0 && most >= 100, "RULER multikey: %d of %d samples repeat a key (up to %d keys per sample)", repeated, samples, most);
}

// fwe: the answer is the words of count ranks 2-4, the top one is the "..." noise, counts strictly fall.
static void test_ruler_fwe(const RulerSource *src) {
    int ok = 1;
    for (int i = 0; i < 50 && ok; i++) {
        RulerSample smp = ruler_generate(ruler_task("fwe"), src, i % 2 ? 4096 : 8192, i, 5);
        const char *start = strstr(smp.prompt, "coded words. ") + 13, *end = strstr(smp.prompt, "\nQuestion:");
        char *text = (char *)malloc_check((size_t)(end - start) + 1);
        memcpy(text, start, (size_t)(end - start)); text[end - start] = '\0';
        char *words[4096];
        int counts[4096], nw = 0;
        for (char *w = strtok(text, " "); w; w = strtok(NULL, " ")) {
            int k = 0;
            while (k < nw && strcmp(words[k], w) != 0) { k++; }
            if (k == nw) { words[nw] = w; counts[nw++] = 0; }
            counts[k]++;
        }
        int order[5] = {-1, -1, -1, -1, -1};
        for (int r = 0; r < 5; r++) {
            for (int k = 0; k < nw; k++) {
                int used = 0;
                for (int q = 0; q < r; q++) { used |= order[q] == k; }
                if (!used && (order[r] < 0 || counts[k] > counts[order[r]])) { order[r] = k; }
            }
        }
        ok = nw >= 5 && strcmp(words[order[0]], "...") == 0;
        for (int r = 0; r < 4 && ok; r++) { ok &= counts[order[r]] > counts[order[r + 1]]; }
        for (int r = 1; r < 4 && ok; r++) { ok &= strcmp(words[order[r]], smp.answers[r - 1]) == 0; }
        if (!ok) { printf("fwe sample %d: %d words, answers %s %s %s\n", i, nw, smp.answers[0], smp.answers[1], smp.answers[2]); }
        free(text);
        ruler_sample_free(&smp);
    }
    CHECK(ok, "RULER fwe: gold = the real count ranks 2-4, rank 1 is the noise");
}

// QA distractors come from the same article first and never repeat while there are enough documents.
static void test_ruler_qa(const TextTokenizer *tok) {
    char path[128];
    snprintf(path, sizeof(path), "%s/squad_many.json", tmpdir);
    FILE *f = fopen_check(path, "w");
    fputs("{\"data\": [", f);
    for (int a = 0; a < 6; a++) {
        fprintf(f, "%s{\"paragraphs\": [", a ? "," : "");
        for (int p = 0; p < 4; p++) {
            fprintf(f, "%s{\"context\": \"Article %d paragraph %d says something.\", \"qas\": [{\"question\": \"Q%d%d?\", \"answers\": [{\"text\": \"A%d%d\"}]}]}", p ? "," : "", a, p, a, p, a, p);
        }
        fputs("]}", f);
    }
    fputs("]}", f);
    fclose(f);
    RulerSource s = {0};
    s.tok = tok;
    ruler_load_qa(&s, path);
    int ok = s.num_docs == 24 && s.num_qa == 24;
    for (int i = 0; i < 20 && ok; i++) {
        RulerSample smp = ruler_generate(ruler_task("qa_1"), &s, 1000, i, 9);  // about 12 documents
        int seen[6][4] = {{0}}, docs = 0, repeats = 0, same_article = 0;
        for (const char *p = smp.prompt; (p = strstr(p, "Article ")) != NULL; p++) {
            int a = p[8] - '0', q = p[20] - '0';
            repeats += seen[a][q]++ > 0; docs++;
        }
        int article = strstr(smp.prompt, "Question: Q")[11] - '0';
        for (int q = 0; q < 4; q++) { same_article += seen[article][q]; }
        ok = repeats == 0 && docs >= 5 && docs < 24 && same_article == 4;
        if (!ok) { printf("qa sample %d: %d docs, %d repeats, %d of the article\n", i, docs, repeats, same_article); }
        ruler_sample_free(&smp);
    }
    CHECK(ok, "RULER qa: the article's paragraphs first, no repeated document");
    ruler_source_free(&s);
}

static void test_ruler(void) {
    uint32_t dummy[2] = {0, 0};
    const char *specials[1] = {TOKENIZER_EOT_NAME};
    uint32_t lens[1] = {(uint32_t)strlen(TOKENIZER_EOT_NAME)};
    TextTokenizer tok = {TOKFMT_MOBA_BPE};
    tokenizer_build(&tok.bpe, dummy, 0, specials, lens, 1, "bytes");  // byte-level: one token per byte
    tok.vocab_size = tok.bpe.vocab_size; tok.doc_token = tokenizer_eot(&tok.bpe);
    char essay[128], squad[128], hotpot[128];
    snprintf(essay, sizeof(essay), "%s/essay.txt", tmpdir);
    write_file(essay, "It was a cold morning. We walked to the river! Did the boats come?  Nobody knew, so we waited.\n"
                      "Later the sun rose over the hills and the town woke up slowly. Bread was baked; coffee was poured.");
    snprintf(squad, sizeof(squad), "%s/squad.json", tmpdir);
    write_file(squad, "{\"data\": [{\"paragraphs\": ["
                      "{\"context\": \"The tower was built in 1889 by Gustave Eiffel.\", \"qas\": [{\"question\": \"Who built the tower?\", \"answers\": [{\"text\": \"Gustave Eiffel\"}]}]},"
                      "{\"context\": \"Rivers flow to the sea.\", \"qas\": [{\"question\": \"Unanswerable?\", \"answers\": [], \"is_impossible\": true}]},"
                      "{\"context\": \"Copper conducts electricity well.\", \"qas\": []}]}]}");
    snprintf(hotpot, sizeof(hotpot), "%s/hotpot.json", tmpdir);
    write_file(hotpot, "[{\"question\": \"Which city hosts both?\", \"answer\": \"Lyon\", \"supporting_facts\": [[\"A\", 0], [\"B\", 0]],"
                       " \"context\": [[\"A\", [\"A is in Lyon. \", \"It is old.\"]], [\"B\", [\"B is also in Lyon.\"]], [\"C\", [\"C is in Nice.\"]]]}]");
    RulerSource src = {0}, hsrc = {0};
    src.tok = &tok; hsrc.tok = &tok;
    ruler_load_essay(&src, essay);
    ruler_load_qa(&src, squad);
    ruler_load_qa(&hsrc, hotpot);
    CHECK(src.num_qa == 1 && src.num_docs == 3 && src.qa_num_more[0] == 2 && hsrc.num_qa == 1 && hsrc.num_docs == 3 && hsrc.qa_num_gold[0] == 3,
          "QA files: SQuAD %d q %d docs %d of the same article, HotpotQA %d gold (all its paragraphs)", src.num_qa, src.num_docs, src.qa_num_more[0], hsrc.qa_num_gold[0]);
    for (int i = 0; i < NUM_RULER_TASKS; i++) {
        const RulerTask *t = &ruler_tasks[i];
        int length = t->family == RT_CWE ? 8192 : 4096;  // bytes here: 1-2K tokens of a real tokenizer; cwe's example alone is ~2K bytes
        const RulerSource *s = strcmp(t->name, "qa_2") == 0 ? &hsrc : &src;
        RulerSample a = ruler_generate(t, s, length, 0, 1234), b = ruler_generate(t, s, length, 0, 1234), c = ruler_generate(t, s, length, 1, 1234);
        int total = a.prompt_tokens + a.max_gen;
        CHECK(total <= length && total > length * 3 / 4, "%s: prompt %d + gen %d within (3/4, 1] of %d", t->name, a.prompt_tokens, a.max_gen, length);
        CHECK(strcmp(a.prompt, b.prompt) == 0 && (strcmp(a.prompt, c.prompt) != 0 || t->family == RT_QA), "%s: same seed same sample, next index differs", t->name);
        int present = a.num_answers > 0;
        for (int k = 0; k < a.num_answers; k++) { present &= strstr(a.prompt, a.answers[k]) != NULL; }
        CHECK(present, "%s: every expected answer occurs in the prompt", t->name);
        StrBuf all = {0};
        sb_puts(&all, "");
        for (int k = 0; k < a.num_answers; k++) { sb_puts(&all, a.answers[k]); sb_puts(&all, " "); }
        CHECK(ruler_score(t, all.s, &a) == 1.0 && ruler_score(t, "nothing", &a) == 0.0, "%s: scoring", t->name);
        if (a.num_answers > 1 && !t->part_match) { CHECK(NEAR(ruler_score(t, a.answers[0], &a), 1.0 / a.num_answers, 1e-12), "%s: partial answer scores 1/n", t->name); }
        if (t->family == RT_CWE) {
            CHECK(count_occurrences(a.prompt, "Below is a numbered list") == 2, "cwe: one-shot example + task");
            int real = 1;
            for (int k = 0; k < a.num_answers; k++) { int found = 0; for (int w = 0; w < RULER_NUM_WORDS && !found; w++) { found = strcmp(ruler_words[w], a.answers[k]) == 0; } real &= found; }
            CHECK(real, "cwe: the answers are words of the built-in list");
        }
        if (t->family == RT_VT) { CHECK(count_occurrences(a.prompt, "VAR ") == 18 && count_occurrences(a.prompt, "Memorize and track") == 2, "vt: one-shot example + task, 5 assignments each, 4 of them chained"); }
        if (i == 0) { printf("ok   ruler %s at %d tokens: prompt %d tokens, answer '%s'\n", t->name, length, a.prompt_tokens, a.answers[0]); }
        free(all.s);
        ruler_sample_free(&a); ruler_sample_free(&b); ruler_sample_free(&c);
    }
    test_ruler_keys(&src);
    test_ruler_fwe(&src);
    test_ruler_qa(&tok);
    ruler_source_free(&src); ruler_source_free(&hsrc);
    text_tokenizer_free(&tok);
}

// ---------------------------------------------------------------------------------------------------
// Synthetic needles, multiple-choice loaders, SVG

static void test_syn_needle(void) {
    SynLanguage L;
    syn_language_init(&L, 512);
    for (int ti = 0; ti < NUM_SYN_NEEDLE_TASKS; ti++) {
        const SynNeedleTask *t = &syn_needle_tasks[ti];
        SynNeedleSample a = syn_needle_generate(&L, t, 200, 3, 7), b = syn_needle_generate(&L, t, 200, 3, 7), c = syn_needle_generate(&L, t, 200, 4, 7);
        CHECK(a.length == 200 && memcmp(a.tokens, b.tokens, 200 * sizeof(int)) == 0 && memcmp(a.tokens, c.tokens, 200 * sizeof(int)) != 0,
              "%s: exact length, deterministic, index changes the sample", t->name);
        int stores = 0, recalls = 0, ok = a.tokens[0] == SYN_EOT && a.num_queries == t->queries;
        for (int i = 0; i < 200; i++) { stores += a.tokens[i] == SYN_STORE; recalls += a.tokens[i] == SYN_RECALL; }
        for (int q = 0; q < a.num_queries; q++) {  // the answer is the value stored for the asked key
            int e = a.query_end[q], found = 0;
            ok &= a.tokens[e - 2] == SYN_RECALL;
            for (int i = 0; i + 2 < e - 2; i++) { found |= a.tokens[i] == SYN_STORE && a.tokens[i + 1] == a.tokens[e - 1] && a.tokens[i + 2] == a.tokens[e]; }
            ok &= found && a.tokens[e] >= (int)L.value_base && a.tokens[e] < (int)(L.value_base + L.num_values);
        }
        CHECK(ok && stores == t->facts && recalls == t->queries, "%s: %d STOREs, %d RECALLs, answers are the stored values", t->name, stores, recalls);
        free(a.tokens); free(b.tokens); free(c.tokens);
    }
    syn_language_free(&L);
}

static void load_mc_bad(void *path) { MCSet s = mc_load("hellaswag", (const char *)path); mc_free(&s); }

static void test_mc(void) {
    char path[128];
    snprintf(path, sizeof(path), "%s/hs.jsonl", tmpdir);
    write_file(path, "{\"activity_label\": \"Home\", \"ctx_a\": \"[header] How to cook [title] Boil water.\", \"ctx_b\": \"\\u00c9ACH pot\", "
                     "\"endings\": [\"[substeps] Stir  it.\", \"sits.\", \"eats.\", \"flies.\"], \"label\": \"2\"}\n");
    MCSet hs = mc_load("hellaswag", path);
    CHECK(hs.n == 1 && hs.items[0].n == 4 && hs.items[0].label == 2 && strcmp(hs.items[0].ctx[3], "Home: How to cook. Boil water. \xc3\x89" "ach pot") == 0 &&
          strcmp(hs.items[0].cont[0], "  Stir it.") == 0 && hs.items[0].chars[0] == 9, "hellaswag: lm-eval's preprocessing ('%s', '%s')", hs.items[0].ctx[3], hs.items[0].cont[0]);
    mc_free(&hs);
    snprintf(path, sizeof(path), "%s/arc.jsonl", tmpdir);
    write_file(path, "{\"question\": {\"stem\": \"Q?\", \"choices\": [{\"text\": \"x\", \"label\": \"A\"}, {\"text\": \"y\", \"label\": \"B\"}]}, \"answerKey\": \"B\"}\n"
                     "{\"question\": \"R?\", \"choices\": {\"text\": [\"u\", \"v\", \"w\"], \"label\": [\"1\", \"2\", \"3\"]}, \"answerKey\": \"1\"}\n");
    MCSet arc = mc_load("arc", path);
    CHECK(arc.n == 2 && arc.items[0].label == 1 && strcmp(arc.items[0].ctx[0], "Question: Q?\nAnswer:") == 0 && arc.items[1].n == 3 && arc.items[1].label == 0, "arc loader, both layouts");
    mc_free(&arc);
    snprintf(path, sizeof(path), "%s/wg.jsonl", tmpdir);
    write_file(path, "{\"sentence\": \"The cup fell because _  was heavy. \", \"option1\": \"the cup\", \"option2\": \"the table\", \"answer\": \"1\"}\n");
    MCSet wg = mc_load("winogrande", path);
    CHECK(wg.n == 1 && wg.metric == MC_ACC && wg.items[0].label == 0 && strcmp(wg.items[0].ctx[1], "The cup fell because the table") == 0 && strcmp(wg.items[0].cont[0], " was heavy.") == 0,
          "winogrande: partial scoring, continuation ' ' + the rest stripped ('%s')", wg.items[0].cont[0]);
    mc_free(&wg);
    snprintf(path, sizeof(path), "%s/piqa.jsonl", tmpdir);
    write_file(path, "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 1}\n");
    MCSet pq = mc_load("piqa", path);
    CHECK(pq.n == 1 && pq.items[0].label == 1 && strcmp(pq.items[0].cont[1], " b") == 0, "piqa loader");
    mc_free(&pq);
    MCSet ob = mc_load("openbookqa", "dev/eval/paper_sample/openbookqa.jsonl");
    CHECK(ob.n == 2 && ob.items[1].label == 2 && strcmp(ob.items[0].ctx[0], "A kettle left on a hot stove will") == 0 && ob.metric == MC_ACC_NORM, "openbookqa: stem as context, answerKey stripped");
    mc_free(&ob);
    MCSet t1 = mc_load("truthfulqa_mc1", "dev/eval/paper_sample/truthfulqa.jsonl"), t2 = mc_load("truthfulqa_mc2", "dev/eval/paper_sample/truthfulqa.jsonl");
    CHECK(t1.n == 2 && t1.items[0].n == 3 && t1.items[0].label == 0 && t1.metric == MC_ACC && strstr(t1.items[0].ctx[0], "Barcelona, Spain.\n\nQ: What happens if you swallow chewing gum?\nA:") &&
          t2.metric == MC_MC2 && t2.items[0].n == 4 && t2.items[0].truth[1] && !t2.items[0].truth[2], "truthfulqa mc1 / mc2 loaders");
    mc_free(&t1); mc_free(&t2);
    // acc_norm divides by characters of the choice without the leading space: 9 vs 11 characters flip it
    double lp[2] = {-10.0, -12.1};
    int chars[2] = {9, 11}, bytes_with_space[2] = {10, 12};
    CHECK(mc_argmax(lp, chars, 2) == 1 && mc_argmax(lp, bytes_with_space, 2) == 0 && mc_argmax(lp, NULL, 2) == 0, "acc_norm per character picks the 11-character choice");
    snprintf(path, sizeof(path), "%s/hsbad.jsonl", tmpdir);
    write_file(path, "{\"activity_label\": \"a\", \"ctx_a\": \"A\", \"ctx_b\": \"b\", \"endings\": [\"x\", \"y\"], \"label\": 0}\n"
                     "{\"activity_label\": \"a\", \"ctx_a\": \"A\", \"ctx_b\": \"b\", \"endings\": [\"x\", \"y\"], \"label\": 5}\n");
    expect_failure("multiple choice: label out of range", load_mc_bad, path, "hsbad.jsonl:2: label 5 is not one of the 2 choices");
    write_file(path, "{\"ctx\": \"A\", \"endings\": [\"x\", \"y\"], \"label\": 0}\n");
    expect_failure("hellaswag: lm-eval's fields are required", load_mc_bad, path, "hsbad.jsonl:1: field 'ctx_b' is missing");
}

// WikiText detokenizer, word counts, rolling windows; LAMBADA split.
static void test_lm_tasks(void) {
    char *d = wikitext_detokenize(" = = Title = = \n The ship ( built in 1 @,@ 921 ) was \" fast \" , they said . \n");
    CHECK(strcmp(d, " == Title ==\nThe ship (built in 1,921) was \"fast\", they said.\n") == 0, "wikitext detokenizer: '%s'", d);
    free(d);
    CHECK(wikitext_words(" a b\n\n c ") == 5 && wikitext_words("a\xc2\xa0" "b") == 2, "wikitext words = len(re.split(r'\\s+', page))");
    for (int n = 1; n < 40; n++) {
        int covered[64] = {0}, ok = 1;
        RollWindow w;
        for (int k = 0; rolling_window(n, 8, k, &w); k++) {
            ok &= w.len <= 8 && w.start >= 0 && w.start + w.len <= n && w.scored <= w.len && (k == 0 || w.len == 8);
            for (int p = w.start + w.len - w.scored; p < w.start + w.len; p++) { covered[p]++; }  // position p predicts token p
        }
        for (int p = 0; p < n; p++) { ok &= covered[p] == 1; }
        if (!ok || n == 39) { CHECK(ok, "rolling windows of 8 over %d tokens score each token once", n); if (!ok) { break; } }
    }
    char *ctx, *cont;
    lambada_split("He gave it to the baker", &ctx, &cont);
    CHECK(strcmp(ctx, "He gave it to the") == 0 && strcmp(cont, " baker") == 0, "lambada split at the last space");
    free(ctx); free(cont);
}

// The whole driver on the paper's list with the committed sample files: a tiny random model, a byte
// tokenizer, every task that the paper reports; the tables come out with every cell filled.
static void test_paper_run(void) {
    uint32_t dummy[2] = {0, 0};
    const char *specials[1] = {TOKENIZER_EOT_NAME};
    uint32_t lens[1] = {(uint32_t)strlen(TOKENIZER_EOT_NAME)};
    Tokenizer tok;
    tokenizer_build(&tok, dummy, 0, specials, lens, 1, "bytes");
    char tokpath[128], out[128];
    snprintf(tokpath, sizeof(tokpath), "%s/bytes.tok", tmpdir);
    snprintf(out, sizeof(out), "%s/paper", tmpdir);
    tokenizer_save(&tok, tokpath);
    tokenizer_free(&tok);
    ModelConfig cfg = {260, 1, 16, 2, 32, 1024, ATTN_DENSE, 4, 2, 0, 0, 10000.0f, LAYOUT_GLOBAL, 0, 0, 0};
    Model paper_model;
    model_init(&paper_model, &cfg, 3);
    const char *D = "dev/eval/paper_sample";
    char mc[1024];
    snprintf(mc, sizeof(mc), "openbookqa:%s/openbookqa.jsonl,piqa:%s/piqa.jsonl,hellaswag:%s/hellaswag.jsonl,winogrande:%s/winogrande.jsonl,"
             "arc_easy:%s/arc_easy.jsonl,arc_challenge:%s/arc_challenge.jsonl,truthfulqa_mc1:%s/truthfulqa.jsonl,truthfulqa_mc2:%s/truthfulqa.jsonl", D, D, D, D, D, D, D, D);
    char wiki[128], lmb[128], essay[128], lb[128];
    snprintf(wiki, sizeof(wiki), "%s/wikitext.jsonl", D); snprintf(lmb, sizeof(lmb), "%s/lambada.jsonl", D);
    snprintf(essay, sizeof(essay), "%s/essay.txt", D); snprintf(lb, sizeof(lb), "%s/longbench", D);
    char *argv[] = {"eval", "-c", "random", "-o", out, "-k", tokpath, "-w", wiki, "-a", lmb, "-R", lmb, "-M", mc, "-r", "niah_single_1,niah_single_2,niah_single_3",
                    "-l", "1024", "-n", "1", "-e", essay, "-L", lb, "-N", "1", "-C", "1024"};
    EvalArgs a = parse_eval_args((int)(sizeof(argv) / sizeof(argv[0])), argv);
    cpu_eval_run(&a, &paper_model, 0, "CPU fp32 (test)");
    model_free(&paper_model);
    char path[256], buf[65536];
    snprintf(path, sizeof(path), "%s/eval.md", out);
    FILE *f = fopen_check(path, "r");
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *tables = strstr(buf, "## The paper's tables");
    CHECK(tables && !strstr(tables, " - |") && strstr(tables, "| S-NIAH-3 |") && strstr(tables, "RepoBench-P"), "paper run: every cell of the paper's tables is filled");
    // -R scores the same file as -a the same way: the probes' section repeats LAMBADA's numbers
    const char *lmb_md = strstr(buf, "## LAMBADA"), *probes_md = strstr(buf, "## Retrieval probes");
    int lmb_n = 0, probes_n = -1;
    double lmb_acc = -1, lmb_ppl = -1, probes_acc = -2, probes_ppl = -2;
    if (lmb_md) { sscanf(strstr(lmb_md, "\n\n") + 2, "%d texts: last-word accuracy %lf%%, perplexity %lf", &lmb_n, &lmb_acc, &lmb_ppl); }
    if (probes_md) { sscanf(strstr(probes_md, "\n\n") + 2, "%d texts: last-word accuracy %lf%%, perplexity %lf", &probes_n, &probes_acc, &probes_ppl); }
    CHECK(lmb_n > 0 && probes_n == lmb_n && probes_acc == lmb_acc && probes_ppl == lmb_ppl, "retrieval probes (-R) score as LAMBADA: %d %.2f %.4f vs %d %.2f %.4f",
          probes_n, probes_acc, probes_ppl, lmb_n, lmb_acc, lmb_ppl);
    CHECK(!isnan(paper.wiki_ppl) && paper.wiki_ppl > 1 && paper.lmb_ppl > 1 && paper.mc[6] > 0 && paper.mc[6] < 100, "paper run: perplexities and mc2 are sane (%.2f, %.2f, %.2f)",
          paper.wiki_ppl, paper.lmb_ppl, paper.mc[6]);
}

static void test_plot(void) {
    char path[128], buf[8192];
    double x[3] = {1024, 2048, 4096}, y1[3] = {90, 80, 70}, y2[3] = {95, NAN, 60};
    PlotSeries s[2] = {{"dense", x, y1, 3}, {"moba <k3>", x, y2, 3}};
    snprintf(path, sizeof(path), "%s/p.svg", tmpdir);
    svg_line_chart(path, "acc vs length", "length", "acc", s, 2, 1, 1);
    FILE *f = fopen_check(path, "r");
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    CHECK(strstr(buf, "<svg") && strstr(buf, "</svg>") && count_occurrences(buf, "<polyline") == 2 && count_occurrences(buf, "<circle") == 5 &&
          strstr(buf, "moba &lt;k3&gt;") && strstr(buf, ">2048<"), "line chart: 2 lines, 5 points (NaN skipped), escaped legend, log2 ticks");
    const char *groups[3] = {"a", "b", "c"};
    svg_bar_chart(path, "bars", "score", groups, 3, s, 2);
    f = fopen_check(path, "r");
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    CHECK(count_occurrences(buf, "<rect") == 1 + 1 + 5 + 2, "bar chart: background, frame, 5 bars, 2 legend boxes (%d rects)", count_occurrences(buf, "<rect"));
}

int main(void) {
#ifdef _OPENMP
    omp_set_num_threads(1);  // tiny shapes: threads only add spin-waiting on a loaded 2-core box
#endif
    test_metrics();
    test_metrics_unicode();
    test_kv_cache("dense", ATTN_DENSE, 0);
    test_kv_cache("moba", ATTN_MOBA, 0);
    test_kv_cache("moba+kconv3", ATTN_MOBA, 3);
    test_kv_cache("dense+kconv5", ATTN_DENSE, 5);
    hybrid_last = 1;
    test_kv_cache("moba+kconv3 hybrid (last layer dense)", ATTN_MOBA, 3);
    hybrid_last = 0;
    paper_window = 7;  // the sliding-window layer's cache wraps many times over 61 tokens
    test_kv_cache("paper dense", ATTN_DENSE, 0);
    test_kv_cache("paper moba+kconv3", ATTN_MOBA, 3);
    test_kv_cache("paper moba+kconv5", ATTN_MOBA, 5);
    paper_window = 0;
    test_sampling();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_eval_XXXXXX");
    if (!mkdtemp(tmpdir)) { die("mkdtemp failed"); }
    test_longbench();
    test_ruler();
    test_syn_needle();
    test_mc();
    test_lm_tasks();
    test_paper_run();
    test_plot();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0) { printf("warning: could not remove %s\n", tmpdir); }
    return test_summary();
}
