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

static ModelConfig small_config(int attn, int kconv) {
    ModelConfig c = {64, 2, 16, 2, 40, 96, attn, 4, 2, kconv, 0, 10000.0f};
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
        *mismatch += argmax_real(lg, V) != argmax_real(ref, V);
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
        tokens[t] = argmax_real(full.a.logits + (size_t)(t - 1) * cfg.vocab_size, cfg.vocab_size);
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

int main(void) {
    test_metrics();
    test_kv_cache("dense", ATTN_DENSE, 0);
    test_kv_cache("moba", ATTN_MOBA, 0);
    test_kv_cache("moba+kconv3", ATTN_MOBA, 3);
    test_kv_cache("dense+kconv5", ATTN_DENSE, 5);
    test_sampling();
    return test_summary();
}
