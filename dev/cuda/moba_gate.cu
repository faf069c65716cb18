/*
 MoBA gate: block centroids + top-k block selection (llmc/moba_gate.cuh), numbered versions checked
 against a CPU reference and timed.
   v1: one thread per query, scores from global memory, top list in local memory (simple).
   v2: fused tiled scoring on CUDA cores (64 queries x 128 blocks per pass, fp32 FMA in registers) with an
       on-chip top list per query; no score matrix in memory. moba_gate in the fp32 build.
   v3: bf16 build only, moba_gate there: scores on tensor cores, q . c_hi + q . c_lo from the split bf16
       centroids (mma.sync m16n8k16, fp32 accumulation), 128 queries x 32 blocks per pass, survivors of
       each query's running threshold merged into its top list in shared memory.
 v1/v2 use fp32 centroids, v3 the split form (same kernel, same bytes). Shapes: q, k (B, NH, T, HD)
 floatX; centroids (B, NH, nb, HD) 4-byte elements; blocks (B, NH, T, topk) int32.
 Check: CPU centroids and scores in double from the same floatX-rounded inputs. A GPU selection that
 differs from the CPU's is a near-tie (accepted, counted) only if no unselected block beats a selected
 one by more than the two scores' worst-case error bounds (fp32 centroid summation, plus for v1/v2 the
 fp32 dot product, for v3 the bf16 split and tensor-core accumulation: see llmc/moba_gate.cuh); otherwise
 it is a failure. Exact ties (equal centroids) must resolve to the lower index in every version. On the
 bench shapes v2 must equal v1 exactly (same fp32 summation order); where v3 and v2 differ (16K), both rows
 are checked against the double reference as above.
 Build: make build/cuda/moba_gate    Run: build/cuda/moba_gate [check|bench]   (default: both)
*/
#include <stdint.h>
#include "dev/cuda/common.h"
#include "llmc/moba_gate.cuh"

// ---------------------------------------------------------------------------------------------------
// v1: one thread per (b, h, t).
template <int HD>
__global__ void select_v1_kernel(int *blocks, const float *cent, const floatX *q, int BH, int T, int bs,
                                 int topk, int nb) {
    size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (size_t)BH * T) { return; }
    int bh = idx / T, t = idx % T, ob = t / bs, nsel = topk - 1, n = 0;
    float qr[HD], lv[MOBA_MAX_TOPK];
    int lb[MOBA_MAX_TOPK];
    for (int d = 0; d < HD; d++) { qr[d] = to_float(q[idx * HD + d]); }
    for (int b = 0; b < ob; b++) {
        const float *c = cent + ((size_t)bh * nb + b) * HD;
        float s = 0.0f;
        for (int d = 0; d < HD; d++) { s = fmaf(qr[d], c[d], s); }
        int pos;
        if (n < nsel) { pos = n++; }
        else if (nsel > 0 && s > lv[nsel - 1]) { pos = nsel - 1; }
        else { continue; }
        // blocks arrive in ascending order, so strict > keeps the lower index on equal scores
        for (; pos > 0 && s > lv[pos - 1]; pos--) { lv[pos] = lv[pos - 1]; lb[pos] = lb[pos - 1]; }
        lv[pos] = s; lb[pos] = b;
    }
    for (int i = 1; i < n; i++) {  // ascending block order
        int b = lb[i], j = i;
        for (; j > 0 && lb[j - 1] > b; j--) { lb[j] = lb[j - 1]; }
        lb[j] = b;
    }
    for (int i = 0; i < topk; i++) { blocks[idx * topk + i] = i < n ? lb[i] : i == n ? ob : -1; }
}

#ifdef ENABLE_FP32
static const int NVERSIONS = 2;
#else
static const int NVERSIONS = 3;
#endif

static void gate(int version, int *blocks, float *cent, const floatX *q, const floatX *k,
                 int B, int NH, int T, int HD, int bs, int topk) {
    if (version == 3) { moba_gate(blocks, cent, q, k, B, NH, T, HD, bs, topk, 0); return; }
    moba_gate_check_args(B, NH, T, HD, bs, topk);
    moba_centroids(cent, k, B, NH, T, HD, bs, false, 0);
    int n = B * NH * T, nb = CEIL_DIV(T, bs);
    if (version == 2) {
        if (HD == 64) { moba_select_launch<64>(blocks, cent, q, B * NH, T, bs, topk, false, 0); }
        else { moba_select_launch<128>(blocks, cent, q, B * NH, T, bs, topk, false, 0); }
        return;
    }
    if (HD == 64) { select_v1_kernel<64><<<CEIL_DIV(n, 128), 128>>>(blocks, cent, q, B * NH, T, bs, topk, nb); }
    else { select_v1_kernel<128><<<CEIL_DIV(n, 128), 128>>>(blocks, cent, q, B * NH, T, bs, topk, nb); }
    cudaCheckLaunch();
}

// The centroids a version wrote, as fp32 (v3: c_hi + c_lo, exact in fp32).
static std::vector<float> centroids_from_device(int version, const float *dc, size_t nc, int HD) {
    if (version != 3) { return from_device(dc, nc); }
    std::vector<floatX> raw(2 * nc);
    cudaCheck(cudaMemcpy(raw.data(), dc, nc * sizeof(float), cudaMemcpyDeviceToHost));
    std::vector<float> c(nc);
    for (size_t i = 0; i < nc; i++) {
        size_t blk = i / HD, d = i % HD;
        c[i] = to_float(raw[blk * 2 * HD + d]) + to_float(raw[blk * 2 * HD + HD + d]);
    }
    return c;
}

// Worst-case relative error of a GPU score beyond its centroid's own error, in units of sum_d |q_d c_d|:
// v1/v2 the fp32 dot product (gamma_HD); v3 the bf16 split (2^-18) plus tensor-core fp32 accumulation
// (2HD/16 mma steps, each adding 16 products to the accumulator with error <= 17 * 2^-23 of the magnitudes).
static double dot_rel_bound(int version, int HD) {
    const double u = ldexp(1.0, -24);
    if (version == 3) { return ldexp(1.0, -18) + 17.0 / 8.0 * HD * ldexp(1.0, -23); }
    return HD * u / (1 - HD * u);
}

// ---------------------------------------------------------------------------------------------------
// CPU reference
struct Shape { int B, NH, T, HD, bs, topk; };

// Centroids in double, and per element a worst-case bound on the GPU fp32 centroid's error: summing len
// terms in any order errs by <= (len-1)*u*sum|k|, which the division by len turns into < u*sum|k|; the
// division itself adds u*|c| (u = 2^-24).
static void cpu_centroids(std::vector<double> &c, std::vector<double> &ec, const std::vector<float> &k, Shape s) {
    const double u = ldexp(1.0, -24);
    int nb = CEIL_DIV(s.T, s.bs);
    c.assign((size_t)s.B * s.NH * nb * s.HD, 0.0);
    ec.assign(c.size(), 0.0);
    for (int bh = 0; bh < s.B * s.NH; bh++) {
        for (int b = 0; b < nb; b++) {
            int len = std::min(s.bs, s.T - b * s.bs);
            for (int d = 0; d < s.HD; d++) {
                double sum = 0.0, sabs = 0.0;
                for (int r = 0; r < len; r++) {
                    double x = k[((size_t)bh * s.T + b * s.bs + r) * s.HD + d];
                    sum += x; sabs += fabs(x);
                }
                size_t i = ((size_t)bh * nb + b) * s.HD + d;
                c[i] = sum / len;
                ec[i] = u * sabs + u * fabs(c[i]);
            }
        }
    }
}

struct SelStats { long exact = 0, near_tie = 0, fail = 0; double max_gap = 0; };  // gap: relative, see below

// Checks every row's format and its selection against exact scores (see the file comment).
// strict: inputs built with exact ties, where only the tie rule decides; any difference fails.
// max_gap: over near-tie rows, how far (relative to sum_d |q_d c_d|) the best unselected block's exact score
// lies above the worst selected one's: a measured lower bound on the GPU score error.
// only: the rows (bh * T + t) to check; nullptr: all.
static SelStats check_selection(const std::vector<int> &got, const std::vector<float> &q, const std::vector<double> &c,
                                const std::vector<double> &ec, Shape s, bool strict, double dot_rel,
                                const std::vector<size_t> *only = nullptr) {
    int nb = CEIL_DIV(s.T, s.bs), K = s.topk;
    SelStats st;
    std::vector<double> sc(nb), err(nb), mags(nb);
    std::vector<int> order(nb);
    std::vector<char> sel(nb);
    size_t nrows = only ? only->size() : (size_t)s.B * s.NH * s.T;
    for (size_t n = 0; n < nrows; n++) {
        const size_t r = only ? (*only)[n] : n;
        const int bh = r / s.T, t = r % s.T;
        const int *row = &got[((size_t)bh * s.T + t) * K];
        int ob = t / s.bs, nexp = std::min(K - 1, ob);
        bool ok = row[nexp] == ob;
        for (int i = 0; i < nexp; i++) { ok = ok && row[i] >= 0 && row[i] < ob && (i == 0 || row[i] > row[i - 1]); }
        for (int i = nexp + 1; i < K; i++) { ok = ok && row[i] == -1; }
        if (!ok) {
            if (st.fail++ < 5) { printf("    bad row format bh %d t %d (own block %d)\n", bh, t, ob); }
            continue;
        }
        const float *qt = &q[((size_t)bh * s.T + t) * s.HD];
        for (int b = 0; b < ob; b++) {
            const double *cb = &c[((size_t)bh * nb + b) * s.HD], *eb = &ec[((size_t)bh * nb + b) * s.HD];
            double dot = 0.0, e = 0.0, mag = 0.0;
            for (int d = 0; d < s.HD; d++) {
                dot += qt[d] * cb[d];
                e += fabs(qt[d]) * eb[d];
                mag += fabs(qt[d]) * (fabs(cb[d]) + eb[d]);
            }
            sc[b] = dot; err[b] = e + dot_rel * mag; mags[b] = mag;
            order[b] = b;
        }
        std::sort(order.begin(), order.begin() + ob, [&](int a, int b) { return sc[a] > sc[b] || (sc[a] == sc[b] && a < b); });
        std::sort(order.begin(), order.begin() + nexp);
        if (std::equal(order.begin(), order.begin() + nexp, row)) { st.exact++; continue; }
        std::fill(sel.begin(), sel.begin() + ob, 0);
        for (int i = 0; i < nexp; i++) { sel[row[i]] = 1; }
        double min_sel = INFINITY, max_unsel = -INFINITY, gap = 0;
        for (int b = 0; b < ob; b++) {
            if (sel[b]) { min_sel = std::min(min_sel, sc[b] + err[b]); }
            else { max_unsel = std::max(max_unsel, sc[b] - err[b]); }
        }
        for (int b = 0; b < ob; b++) {  // unselected b that should have beaten selected a
            for (int i = 0; i < nexp && !sel[b]; i++) {
                int a = row[i];
                if (sc[b] > sc[a]) { gap = std::max(gap, (sc[b] - sc[a]) / std::max(mags[a], mags[b])); }
            }
        }
        if (!strict && max_unsel <= min_sel) { st.near_tie++; st.max_gap = std::max(st.max_gap, gap); continue; }
        if (st.fail++ < 5) { printf("    wrong selection bh %d t %d: best unselected beats worst selected by %.3e\n", bh, t, max_unsel - min_sel); }
    }
    return st;
}

// One correctness run of `version` on fresh random inputs; returns true if it passes.
static bool check_shape(int version, Shape s, Rng *rng, bool ties) {
    int nb = CEIL_DIV(s.T, s.bs);
    size_t nqk = (size_t)s.B * s.NH * s.T * s.HD;
    std::vector<float> q = round_through<floatX>(random_vector(nqk, rng));
    std::vector<float> k = round_through<floatX>(random_vector(nqk, rng));
    if (ties) {  // every block's keys copy block (b % 3): equal centroids, scores equal in any precision
        for (int bh = 0; bh < s.B * s.NH; bh++) {
            for (int t = 3 * s.bs; t < s.T; t++) {
                int src = (t / s.bs % 3) * s.bs + t % s.bs;
                std::copy_n(&k[((size_t)bh * s.T + src) * s.HD], s.HD, &k[((size_t)bh * s.T + t) * s.HD]);
            }
        }
    }
    floatX *dq = to_device<floatX>(q), *dk = to_device<floatX>(k);
    float *dc; int *db;
    size_t nc = (size_t)s.B * s.NH * nb * s.HD, nsel = (size_t)s.B * s.NH * s.T * s.topk;
    cudaCheck(cudaMalloc(&dc, nc * sizeof(float)));
    cudaCheck(cudaMalloc(&db, nsel * sizeof(int)));
    poison(dc, nc * sizeof(float));
    cudaCheck(cudaMemset(db, 0x7F, nsel * sizeof(int)));  // 0x7F7F7F7F: never a valid entry (0xFF would be -1)
    gate(version, db, dc, dq, dk, s.B, s.NH, s.T, s.HD, s.bs, s.topk);
    cudaCheck(cudaDeviceSynchronize());
    std::vector<float> gc = centroids_from_device(version, dc, nc, s.HD);
    std::vector<int> gb(nsel);
    cudaCheck(cudaMemcpy(gb.data(), db, nsel * sizeof(int), cudaMemcpyDeviceToHost));

    std::vector<double> c, ec;
    cpu_centroids(c, ec, k, s);
    printf("v%d B %d NH %d T %d HD %d bs %d topk %d%s\n", version, s.B, s.NH, s.T, s.HD, s.bs, s.topk, ties ? " (exact ties)" : "");
    std::vector<float> cf(c.begin(), c.end());
    bool ok = compare("centroids", gc, cf, 1e-5) <= 1e-5;
    SelStats st = check_selection(gb, q, c, ec, s, ties, dot_rel_bound(version, s.HD));
    printf("  selection      rows %ld: exact %ld, near-tie %ld (max gap %.2e of sum|q c|, bound %.2e), failures %ld  %s\n",
           st.exact + st.near_tie + st.fail, st.exact, st.near_tie, st.max_gap, dot_rel_bound(version, s.HD), st.fail,
           st.fail ? "FAIL" : "OK");
    cudaCheck(cudaFree(dq)); cudaCheck(cudaFree(dk)); cudaCheck(cudaFree(dc)); cudaCheck(cudaFree(db));
    return ok && st.fail == 0;
}

static int run_checks() {
    Rng rng;
    rng_init(&rng, 1234);
    std::vector<Shape> shapes = {
        {2, 3, 1000, 128, 64, 8},    // partial last block
        {1, 2, 1000, 64, 64, 16},    // topk == nb: every past block
        {1, 2, 1000, 64, 64, 40},    // topk > nb
        {2, 2, 1000, 128, 64, 1},    // own block only
        {1, 1, 1, 128, 32, 4},       // a single token
        {1, 2, 4096, 128, 32, 64},   // largest topk
        {1, 2, 5000, 64, 512, 2},
        {1, 4, 3000, 128, 256, 4},
        {2, 2, 8192, 128, 128, 8},
        {1, 1, 16384, 128, 32, 16},  // 511 past blocks: several 128-block passes
    };
    const int bss[] = {32, 64, 128, 256, 512};
    for (int i = 0; i < 6; i++) {  // random shapes
        shapes.push_back({1 + (int)rng_below(&rng, 2), 1 + (int)rng_below(&rng, 3), 1 + (int)rng_below(&rng, 6000),
                          rng_below(&rng, 2) ? 128 : 64, bss[rng_below(&rng, 5)], 1 + (int)rng_below(&rng, 64)});
    }
    int passed = 0, failed = 0;
    for (int v = 1; v <= NVERSIONS; v++) {
        for (const Shape &s : shapes) { (check_shape(v, s, &rng, false) ? passed : failed)++; }
        (check_shape(v, {1, 2, 2048, 128, 32, 8}, &rng, true) ? passed : failed)++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed;
}

// ---------------------------------------------------------------------------------------------------
// Timing: batch 2, 16 heads, HD 128, random inputs generated on the device (host RNG is too slow at 512K).
__global__ void fill_uniform(floatX *x, size_t n, uint32_t seed) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 0x9E3779B1u ^ (uint32_t)(i >> 32) ^ seed;
        h ^= h >> 16; h *= 0x85EBCA6Bu; h ^= h >> 13; h *= 0xC2B2AE35u; h ^= h >> 16;
        x[i] = from_float<floatX>(((h >> 8) / 16777216.0f - 0.5f) * 3.4641f);  // mean 0, variance 1
    }
}

static int run_bench() {
    const int B = 2, NH = 16, HD = 128, TMAX = 512 * 1024;
    const int cfg[][2] = {{128, 8}, {64, 16}, {512, 2}, {256, 4}};
    size_t nqk = (size_t)B * NH * TMAX * HD;
    floatX *q, *k; float *cent; int *blk, *blk1;
    cudaCheck(cudaMalloc(&q, nqk * sizeof(floatX)));
    cudaCheck(cudaMalloc(&k, nqk * sizeof(floatX)));
    cudaCheck(cudaMalloc(&cent, (size_t)B * NH * CEIL_DIV(TMAX, 64) * HD * sizeof(float)));
    cudaCheck(cudaMalloc(&blk, (size_t)B * NH * TMAX * 16 * sizeof(int)));
    cudaCheck(cudaMalloc(&blk1, (size_t)B * NH * 16384 * 16 * sizeof(int)));
    fill_uniform<<<4096, 256>>>(q, nqk, 1u); cudaCheckLaunch();
    fill_uniform<<<4096, 256>>>(k, nqk, 2u); cudaCheckLaunch();

    // v2 must reproduce v1 bit for bit on the bench shapes: same fp32 summation order per score.
    int mism_total = 0;
    for (auto &c : cfg) {
        for (int T = 8192; T <= 16384; T *= 2) {
            size_t n = (size_t)B * NH * T * c[1];
            cudaCheck(cudaMemset(blk, 0x7F, n * sizeof(int))); cudaCheck(cudaMemset(blk1, 0x7F, n * sizeof(int)));
            gate(1, blk1, cent, q, k, B, NH, T, HD, c[0], c[1]);
            gate(2, blk, cent, q, k, B, NH, T, HD, c[0], c[1]);
            std::vector<int> a(n), b(n);
            cudaCheck(cudaMemcpy(a.data(), blk1, n * sizeof(int), cudaMemcpyDeviceToHost));
            cudaCheck(cudaMemcpy(b.data(), blk, n * sizeof(int), cudaMemcpyDeviceToHost));
            size_t mism = 0;
            for (size_t i = 0; i < n; i++) { mism += a[i] != b[i]; }
            printf("v2 vs v1 bs %d topk %d T %d: %zu of %zu entries differ %s\n", c[0], c[1], T, mism, n, mism ? "FAIL" : "OK");
            mism_total += mism != 0;
        }
    }

    // v3 vs v2 at 16K: the rows where they differ are checked against the double reference, each version
    // with its own error bound (a failure of either fails the bench).
    if (NVERSIONS == 3) {
        Shape s = {B, NH, 16384, HD, 0, 0};
        size_t rows = (size_t)B * NH * s.T;
        std::vector<float> hq = from_device(q, rows * HD), hk = from_device(k, rows * HD);
        for (auto &c : cfg) {
            s.bs = c[0]; s.topk = c[1];
            size_t n = rows * s.topk;
            gate(2, blk1, cent, q, k, B, NH, s.T, HD, s.bs, s.topk);
            gate(3, blk, cent, q, k, B, NH, s.T, HD, s.bs, s.topk);
            std::vector<int> a(n), b(n);
            cudaCheck(cudaMemcpy(a.data(), blk1, n * sizeof(int), cudaMemcpyDeviceToHost));
            cudaCheck(cudaMemcpy(b.data(), blk, n * sizeof(int), cudaMemcpyDeviceToHost));
            std::vector<size_t> diff;
            for (size_t r = 0; r < rows; r++) {
                if (!std::equal(&a[r * s.topk], &a[r * s.topk] + s.topk, &b[r * s.topk])) { diff.push_back(r); }
            }
            std::vector<double> cd, ec;
            cpu_centroids(cd, ec, hk, s);
            SelStats s2 = check_selection(a, hq, cd, ec, s, false, dot_rel_bound(2, HD), &diff);
            SelStats s3 = check_selection(b, hq, cd, ec, s, false, dot_rel_bound(3, HD), &diff);
            printf("v3 vs v2 bs %d topk %d T %d: %zu of %zu rows differ; there vs double: v2 exact %ld near-tie %ld fail %ld, "
                   "v3 exact %ld near-tie %ld (max gap %.2e, bound %.2e) fail %ld  %s\n", s.bs, s.topk, s.T, diff.size(), rows,
                   s2.exact, s2.near_tie, s2.fail, s3.exact, s3.near_tie, s3.max_gap, dot_rel_bound(3, HD), s3.fail,
                   s2.fail + s3.fail ? "FAIL" : "OK");
            mism_total += s2.fail + s3.fail != 0;
        }
    }

    // Per T: v2 and v3 gate (centroids + selection), v3's centroid pass alone, and the cost of writing the
    // selection alone (a cudaMemset of its bytes: the floor of any kernel or post-pass that writes it).
    char table[8192];
    int len = snprintf(table, sizeof(table), "| bs | topk | T | v2 gate ms | v3 centroids ms | v3 gate ms | v3 TFLOP/s | v3 speed-up | selection write ms |\n"
                                              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for (auto &c : cfg) {
        for (int T = 8192; T <= TMAX; T *= 2) {
            double pairs = 0;  // (query, past block) pairs, each HD multiply-adds
            for (long t = 0; t < T; t++) { pairs += t / c[0]; }
            double flops = 2.0 * B * NH * HD * pairs;
            int reps = T >= 262144 ? 5 : 20, v2reps = T >= 131072 ? 1 : 10;
            float ms2 = time_ms([&] { gate(2, blk, cent, q, k, B, NH, T, HD, c[0], c[1]); }, T >= 131072 ? 0 : 1, v2reps), ms3 = NAN, msc = NAN;
            if (NVERSIONS == 3) {
                msc = time_ms([&] { moba_centroids(cent, k, B, NH, T, HD, c[0], true, 0); }, 2, reps);
                ms3 = time_ms([&] { gate(3, blk, cent, q, k, B, NH, T, HD, c[0], c[1]); }, 2, reps);
            }
            float msw = time_ms([&] { cudaCheck(cudaMemsetAsync(blk, 0, (size_t)B * NH * T * c[1] * sizeof(int))); }, 2, reps);
            len += snprintf(table + len, sizeof(table) - len, "| %d | %d | %dK | %.3f | %.3f | %.3f | %.1f | %.1fx | %.3f |\n",
                            c[0], c[1], T / 1024, ms2, msc, ms3, flops / (ms3 * 1e9), ms2 / ms3, msw);
        }
    }
    cudaCheck(cudaFree(q)); cudaCheck(cudaFree(k)); cudaCheck(cudaFree(cent));
    cudaCheck(cudaFree(blk)); cudaCheck(cudaFree(blk1));
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    printf("\nMoBA gate, %s, B %d NH %d HD %d, %s (median of CUDA-event timings; TFLOP/s = 2*HD*(query, past block) pairs)\n",
           prop.name, B, NH, HD, PRECISION_NAME);
    printf("%s", table);
    return mism_total;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "all";
    if (strcmp(mode, "check") && strcmp(mode, "bench") && strcmp(mode, "all")) { die("usage: %s [check|bench]", argv[0]); }
    int fails = 0;
    if (strcmp(mode, "bench")) { fails += run_checks(); }
    if (strcmp(mode, "check")) { fails += run_bench(); }
    return fails ? 1 : 0;
}
