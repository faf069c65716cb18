/*
 Tests of the evaluation pieces: LongBench metrics on hand-computed cases; KV-cache decoding against full
 recompute (every step's logits and the greedy tokens) for dense, MoBA and MoBA + key conv; sampling;
 LongBench JSONL reading (and its errors with line numbers), prompts and middle truncation; RULER
 generators (determinism, token budget, answers present) and scoring; the SVG writer.
*/
#define TESTING
#include "train_gpt_moba.c"
#include "llmc/kv_cache.h"
#include "llmc/eval_metrics.h"
#include "llmc/longbench.h"
#include "llmc/ruler.h"
#include "llmc/mc_tasks.h"
#include "llmc/syn_needle.h"
#include "llmc/plot.h"
#include "dev/test/testing.h"

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

static void test_metrics(void) {
    char buf[256];
    normalize_answer(buf, "An apple, the END. Theatre!");
    CHECK(strcmp(buf, "apple end theatre") == 0, "normalize_answer gave '%s'", buf);
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

// ---------------------------------------------------------------------------------------------------
// KV cache == full recompute

static int hybrid_last;  // n_dense_last of the next small_config with MoBA

static ModelConfig small_config(int attn, int kconv) {
    ModelConfig c = {64, 2, 16, 2, 40, 96, attn, 4, 2, kconv, attn == ATTN_MOBA ? hybrid_last : 0, 10000.0f};
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
    GenConfig g = {gen, 0.0f, 1.0f, 1, -1, NULL, NULL, 0};
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
    GenConfig g = {20, 0.0f, 1.0f, 1, -1, NULL, NULL, 0};
    int n = kv_generate(&kv, &m, prompt, 3, &g, out);
    CHECK(n == 20, "max_new_tokens bounds generation");
    int stop[2] = {out[3], out[4]};
    const int *stops[1] = {stop};
    int lens[1] = {2};
    GenConfig gs = {20, 0.0f, 1.0f, 1, -1, stops, lens, 1};
    int out2[32];
    int n2 = kv_generate(&kv, &m, prompt, 3, &gs, out2);
    int first = -1;
    for (int i = 1; i < n && first < 0; i++) { if (out[i - 1] == stop[0] && out[i] == stop[1]) { first = i + 1; } }
    CHECK(n2 == first, "stop sequence ends generation after it (%d vs %d)", n2, first);
    GenConfig ge = {20, 0.0f, 1.0f, 1, out[2], NULL, NULL, 0};
    int n3 = kv_generate(&kv, &m, prompt, 3, &ge, out2);
    int firsteot = 0;
    while (out[firsteot] != out[2]) { firsteot++; }
    CHECK(n3 == firsteot, "eot ends generation before it (%d vs %d)", n3, firsteot);
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
    CHECK(src.num_qa == 1 && src.num_docs == 3 && hsrc.num_qa == 1 && hsrc.num_docs == 3 && hsrc.qa_num_gold[0] == 2, "QA files: SQuAD %d q %d docs, HotpotQA %d gold", src.num_qa, src.num_docs, hsrc.qa_num_gold[0]);
    int length = 4096;  // bytes here: about 1K tokens of a real tokenizer
    for (int i = 0; i < NUM_RULER_TASKS; i++) {
        const RulerTask *t = &ruler_tasks[i];
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
        if (t->family == RT_CWE) { CHECK(count_occurrences(a.prompt, a.answers[0]) >= 30, "cwe: a common word occurs 30 times"); }
        if (t->family == RT_VT) { CHECK(count_occurrences(a.prompt, "VAR ") == 9, "vt: 5 assignments, 4 of them chained"); }
        if (i == 0) { printf("ok   ruler %s at %d tokens: prompt %d tokens, answer '%s'\n", t->name, length, a.prompt_tokens, a.answers[0]); }
        free(all.s);
        ruler_sample_free(&a); ruler_sample_free(&b); ruler_sample_free(&c);
    }
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
    write_file(path, "{\"ctx\": \"A man\", \"endings\": [\"runs.\", \"sits.\", \"eats.\", \"flies.\"], \"label\": \"2\"}\n");
    MCSet hs = mc_load("hellaswag", path);
    CHECK(hs.n == 1 && hs.items[0].n == 4 && hs.items[0].label == 2 && strcmp(hs.items[0].cont[1], " sits.") == 0 && strcmp(hs.items[0].ctx[3], "A man") == 0, "hellaswag loader");
    mc_free(&hs);
    snprintf(path, sizeof(path), "%s/arc.jsonl", tmpdir);
    write_file(path, "{\"question\": {\"stem\": \"Q?\", \"choices\": [{\"text\": \"x\", \"label\": \"A\"}, {\"text\": \"y\", \"label\": \"B\"}]}, \"answerKey\": \"B\"}\n"
                     "{\"question\": \"R?\", \"choices\": {\"text\": [\"u\", \"v\", \"w\"], \"label\": [\"1\", \"2\", \"3\"]}, \"answerKey\": \"1\"}\n");
    MCSet arc = mc_load("arc", path);
    CHECK(arc.n == 2 && arc.items[0].label == 1 && strcmp(arc.items[0].ctx[0], "Question: Q?\nAnswer:") == 0 && arc.items[1].n == 3 && arc.items[1].label == 0, "arc loader, both layouts");
    mc_free(&arc);
    snprintf(path, sizeof(path), "%s/wg.jsonl", tmpdir);
    write_file(path, "{\"sentence\": \"The cup fell because _ was heavy.\", \"option1\": \"the cup\", \"option2\": \"the table\", \"answer\": \"1\"}\n");
    MCSet wg = mc_load("winogrande", path);
    CHECK(wg.n == 1 && wg.items[0].label == 0 && strcmp(wg.items[0].ctx[1], "The cup fell because the table") == 0 && strcmp(wg.items[0].cont[0], " was heavy.") == 0, "winogrande partial scoring split");
    mc_free(&wg);
    snprintf(path, sizeof(path), "%s/piqa.jsonl", tmpdir);
    write_file(path, "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 1}\n");
    MCSet pq = mc_load("piqa", path);
    CHECK(pq.n == 1 && pq.items[0].label == 1 && strcmp(pq.items[0].cont[1], " b") == 0, "piqa loader");
    mc_free(&pq);
    snprintf(path, sizeof(path), "%s/hsbad.jsonl", tmpdir);
    write_file(path, "{\"ctx\": \"A\", \"endings\": [\"x\", \"y\"], \"label\": 0}\n{\"ctx\": \"A\", \"endings\": [\"x\", \"y\"], \"label\": 5}\n");
    expect_failure("multiple choice: label out of range", load_mc_bad, path, "hsbad.jsonl:2: label 5 is not one of the 2 choices");
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
    test_kv_cache("dense", ATTN_DENSE, 0);
    test_kv_cache("moba", ATTN_MOBA, 0);
    test_kv_cache("moba+kconv3", ATTN_MOBA, 3);
    test_kv_cache("dense+kconv5", ATTN_DENSE, 5);
    hybrid_last = 1;
    test_kv_cache("moba+kconv3 hybrid (last layer dense)", ATTN_MOBA, 3);
    hybrid_last = 0;
    test_sampling();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_eval_XXXXXX");
    if (!mkdtemp(tmpdir)) { die("mkdtemp failed"); }
    test_longbench();
    test_ruler();
    test_syn_needle();
    test_mc();
    test_plot();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0) { printf("warning: could not remove %s\n", tmpdir); }
    return test_summary();
}
