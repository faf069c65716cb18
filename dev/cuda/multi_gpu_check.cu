/*
 Checks llmc/multi_gpu.cuh on N processes, one per GPU: mean all-reduce, ZeRO-1 reduce-scatter (padded
 and in place) and all-gather of fp32 and bf16 buffers against host references computed from every
 rank's inputs (each rank regenerates all ranks' random data from their seeds), the grouped bucket
 variants on the comm stream, the scalar mean, the barrier and the cross-rank parameter checksum.
 Outputs are poisoned (NaN) first so unwritten elements fail.

 Launch:  mpirun -np N ./multi_gpu_check -P mpi
          ./multi_gpu_check -n N -P fs -E /shared/dir     (forks N local ranks, sets RANK/WORLD_SIZE/LOCAL_RANK)
          ./multi_gpu_check -n N -P tcp -E 127.0.0.1:29500
          RANK=r WORLD_SIZE=N LOCAL_RANK=l ./multi_gpu_check -P tcp -E host:port   (one per node/GPU by hand)
 Faults (-x, with -n: the launcher checks that the other ranks fail with the right message in time):
   kill   the last rank SIGKILLs itself before the collectives: others' watchdog must fire
   hang   the last rank sleeps instead (world 1: a spinning kernel delays the all-reduce past -T)
   drift  the last rank changes one parameter: every rank must fail the checksum
 Prints "N passed, N failed" last.
*/
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include "llmc/multi_gpu.cuh"
#include "dev/cuda/common.h"

typedef struct { int passed, failed; } Counts;
static Counts *counts;  // one per rank, shared with the launcher (mmap before fork)
static int rank_now = 0;

#define CHECKR(cond, ...) do { \
    if (cond) { counts[rank_now].passed++; } \
    else { counts[rank_now].failed++; printf("[rank %d] FAIL %s:%d: ", rank_now, __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } \
} while (0)

static std::vector<float> rank_data(int rank, size_t n, uint64_t salt) {
    Rng rng;
    rng_init(&rng, 1000 + 17 * (uint64_t)rank + salt);
    return random_vector(n, &rng);
}

// Mean over ranks of the T-rounded inputs, as the collective sees them.
template <typename T> std::vector<float> mean_of_ranks(int world, size_t n, uint64_t salt) {
    std::vector<double> acc(n, 0.0);
    for (int r = 0; r < world; r++) {
        std::vector<float> x = round_through<T>(rank_data(r, n, salt));
        for (size_t i = 0; i < n; i++) { acc[i] += x[i]; }
    }
    std::vector<float> out(n);
    for (size_t i = 0; i < n; i++) { out[i] = (float)(acc[i] / world); }
    return out;
}

template <typename T> const char *type_name();
template <> const char *type_name<float>() { return "fp32"; }
template <> const char *type_name<__nv_bfloat16>() { return "bf16"; }

// bf16 sums round at every hop of the ring: about world * 2^-9 relative per element, far below 1e-2.
template <typename T> double tolerance() { return sizeof(T) == 4 ? 1e-6 : 1e-2; }

template <typename T> void check_collectives(MultiGpu *mg, cudaStream_t stream) {
    const int R = mg->rank, W = mg->world;
    const size_t n = 1000003;  // odd: ZeRO shards need padding for every world > 1
    char name[64];

    // all-reduce, out of place and in place
    std::vector<float> ref = mean_of_ranks<T>(W, n, 1);
    T *in = to_device<T>(rank_data(R, n, 1)), *out;
    cudaCheck(cudaMalloc(&out, n * sizeof(T)));
    poison(out, n * sizeof(T));
    multi_gpu_all_reduce_mean(mg, out, in, n, stream);
    cudaCheck(cudaStreamSynchronize(stream));
    snprintf(name, sizeof(name), "allreduce %s", type_name<T>());
    CHECKR(compare(name, from_device(out, n), ref, tolerance<T>()) <= tolerance<T>(), "%s out of place", name);
    multi_gpu_all_reduce_mean(mg, in, in, n, stream);
    cudaCheck(cudaStreamSynchronize(stream));
    snprintf(name, sizeof(name), "allreduce= %s", type_name<T>());
    CHECKR(compare(name, from_device(in, n), ref, tolerance<T>()) <= tolerance<T>(), "%s in place", name);
    cudaCheck(cudaFree(in)); cudaCheck(cudaFree(out));

    // reduce-scatter over a padded buffer (zeros after n), out of place into a poisoned shard
    size_t start, count;
    zero_shard_range(n, R, W, &start, &count);
    size_t padded = count * W;
    std::vector<float> full_h = rank_data(R, n, 2);
    full_h.resize(padded, 0.0f);
    std::vector<float> rs_ref = mean_of_ranks<T>(W, n, 2);
    rs_ref.resize(padded, 0.0f);
    std::vector<float> shard_ref(rs_ref.begin() + start, rs_ref.begin() + start + count);
    T *full = to_device<T>(full_h), *shard;
    cudaCheck(cudaMalloc(&shard, count * sizeof(T)));
    poison(shard, count * sizeof(T));
    multi_gpu_reduce_scatter_mean(mg, shard, full, count, stream);
    cudaCheck(cudaStreamSynchronize(stream));
    snprintf(name, sizeof(name), "redscat %s", type_name<T>());
    CHECKR(compare(name, from_device(shard, count), shard_ref, tolerance<T>()) <= tolerance<T>(), "%s", name);
    multi_gpu_reduce_scatter_mean(mg, full + start, full, count, stream);
    cudaCheck(cudaStreamSynchronize(stream));
    snprintf(name, sizeof(name), "redscat= %s", type_name<T>());
    CHECKR(compare(name, from_device(full + start, count), shard_ref, tolerance<T>()) <= tolerance<T>(), "%s in place", name);

    // all-gather of each rank's shard (its reduce-scatter result) reassembles the whole mean: exact copies
    std::vector<float> gather_ref(padded);
    for (int r = 0; r < W; r++) {
        size_t s, c;
        zero_shard_range(n, r, W, &s, &c);
        for (size_t i = 0; i < c; i++) { gather_ref[s + i] = rs_ref[s + i]; }
    }
    std::vector<float> shard_bits = from_device(shard, count);  // what this rank contributes
    poison(full, padded * sizeof(T));
    cudaCheck(cudaMemcpy(full + start, shard, count * sizeof(T), cudaMemcpyDeviceToDevice));
    multi_gpu_all_gather(mg, full, full + start, count, stream);
    cudaCheck(cudaStreamSynchronize(stream));
    std::vector<float> gathered = from_device(full, padded);
    snprintf(name, sizeof(name), "allgather= %s", type_name<T>());
    CHECKR(compare(name, gathered, gather_ref, tolerance<T>()) <= tolerance<T>(), "%s in place", name);
    CHECKR(memcmp(gathered.data() + start, shard_bits.data(), count * sizeof(float)) == 0, "all-gather keeps this rank's shard bit for bit");
    T *full2;
    cudaCheck(cudaMalloc(&full2, padded * sizeof(T)));
    poison(full2, padded * sizeof(T));
    multi_gpu_all_gather(mg, full2, shard, count, stream);
    cudaCheck(cudaStreamSynchronize(stream));
    std::vector<float> gathered2 = from_device(full2, padded);
    CHECKR(memcmp(gathered2.data(), gathered.data(), padded * sizeof(float)) == 0, "%s out of place equals in place", name);
    cudaCheck(cudaFree(full)); cudaCheck(cudaFree(full2)); cudaCheck(cudaFree(shard));
}

// One layer's bucket: slices of unequal sizes (multiples of 840 = lcm(1..8), so any world up to 8
// divides them), reduced on the comm stream after work on `main`, then ZeRO-1 gathered back.
template <typename T> void check_buckets(MultiGpu *mg, cudaStream_t main) {
    const int R = mg->rank, W = mg->world;
    const int NS = 3;
    const size_t sizes[NS] = {840, 840 * 37, 840 * 3};
    for (int zero = 0; zero <= 1; zero++) {
        T *slices[NS];
        std::vector<float> refs[NS];
        for (int i = 0; i < NS; i++) {
            refs[i] = mean_of_ranks<T>(W, sizes[i], 10 + i);
            // Staged through main: the comm stream must wait for this copy (comm_wait_main).
            std::vector<float> x = rank_data(R, sizes[i], 10 + i);
            std::vector<T> xt(sizes[i]);
            for (size_t j = 0; j < sizes[i]; j++) { xt[j] = from_float<T>(x[j]); }
            cudaCheck(cudaMalloc(&slices[i], sizes[i] * sizeof(T)));
            poison(slices[i], sizes[i] * sizeof(T));
            cudaCheck(cudaMemcpyAsync(slices[i], xt.data(), sizes[i] * sizeof(T), cudaMemcpyHostToDevice, main));
        }
        multi_gpu_reduce_bucket(mg, slices, sizes, NS, zero, main);
        multi_gpu_main_wait_comm(mg, main);
        if (zero) { multi_gpu_gather_bucket(mg, slices, sizes, NS, main); }
        cudaCheck(cudaStreamSynchronize(main));
        for (int i = 0; i < NS; i++) {
            char name[64];
            snprintf(name, sizeof(name), "%s %d %s", zero ? "zero1 bkt" : "ar bucket", i, type_name<T>());
            CHECKR(compare(name, from_device(slices[i], sizes[i]), refs[i], tolerance<T>()) <= tolerance<T>(), "%s", name);
            cudaCheck(cudaFree(slices[i]));
        }
    }
}

static void check_misc(MultiGpu *mg, int drift) {
    const int R = mg->rank, W = mg->world;
    float m = multi_gpu_mean_scalar(mg, (float)(R + 1));
    CHECKR(fabsf(m - 0.5f * (W + 1)) < 1e-6f, "mean of rank+1 over %d ranks: got %g, want %g", W, m, 0.5 * (W + 1));
    multi_gpu_barrier(mg);
    CHECKR(1, "barrier");

    // identical parameters on every rank (same seed) must pass, and any single change must show
    const size_t n = 3 * 1000 * 1000 + 1;
    std::vector<float> p = rank_data(0, n, 99);
    __nv_bfloat16 *d = to_device<__nv_bfloat16>(p);
    if (drift && R == W - 1) {
        __nv_bfloat16 one = __float2bfloat16(1.0f);
        cudaCheck(cudaMemcpy(d + n / 2, &one, sizeof(one), cudaMemcpyHostToDevice));
    }
    uint64_t a = multi_gpu_checksum_check(mg, d, n * sizeof(__nv_bfloat16), "parameters");
    uint64_t again = multi_gpu_checksum_check(mg, d, n * sizeof(__nv_bfloat16), "parameters");
    CHECKR(a == again, "checksum is deterministic (%016llx vs %016llx)", (unsigned long long)a, (unsigned long long)again);
    __nv_bfloat16 changed = __float2bfloat16(p[n - 1] + 1.0f);
    cudaCheck(cudaMemcpy(d + n - 1, &changed, sizeof(changed), cudaMemcpyHostToDevice));
    // every rank changes the same element, so they still agree, but the value must move
    uint64_t b = multi_gpu_checksum_check(mg, d, n * sizeof(__nv_bfloat16), "parameters");
    CHECKR(a != b, "checksum sees a one-element change");
    printf("[rank %d] parameter checksum %016llx (agreed by all %d ranks)\n", R, (unsigned long long)a, W);
    cudaCheck(cudaFree(d));
}

// Spins for `cycles` clocks: at world 1, holds a collective queued behind it past the timeout.
__global__ void spin_kernel(long long cycles) {
    long long start = clock64();
    while (clock64() - start < cycles) {}
}

static void run_rank(const MultiGpuArgs *a, const char *fault) {
    MultiGpu mg = multi_gpu_init(a);
    if (mg.rank >= 64) { die("this check counts results for at most 64 ranks (rank %d)", mg.rank); }
    rank_now = mg.rank;
    multi_gpu_print(&mg);
    cudaStream_t main_stream;
    cudaCheck(cudaStreamCreateWithFlags(&main_stream, cudaStreamNonBlocking));
    int last = mg.rank == mg.world - 1;
    if (strcmp(fault, "kill") == 0 && last && mg.world > 1) { fflush(stdout); raise(SIGKILL); }
    if (strcmp(fault, "hang") == 0 && last) {
        if (mg.world > 1) { sleep((unsigned)(4 * mg.timeout_s + 30)); _exit(3); }
        spin_kernel<<<1, 1, 0, main_stream>>>((long long)(2e9 * (mg.timeout_s + MULTI_GPU_ABORT_GRACE_S + 10)));  // ~2 GHz
        cudaCheckLaunch();
        float *x;
        cudaCheck(cudaMalloc(&x, sizeof(float)));
        multi_gpu_all_reduce_mean(&mg, x, x, 1, main_stream);
        cudaCheck(cudaStreamSynchronize(main_stream));
        die("the watchdog did not fire within the spin");
    }
    check_collectives<float>(&mg, main_stream);
    check_collectives<__nv_bfloat16>(&mg, main_stream);
    check_buckets<float>(&mg, main_stream);
    check_buckets<__nv_bfloat16>(&mg, main_stream);
    check_misc(&mg, strcmp(fault, "drift") == 0);
    cudaCheck(cudaStreamDestroy(main_stream));
    multi_gpu_free(&mg);
}

// -n N: fork N ranks here (before any CUDA call), each with RANK/WORLD_SIZE/LOCAL_RANK. Without a fault
// every rank must pass; with one, every rank but the faulty last one must exit non-zero with `expect`
// on stderr within the collective timeout plus slack, timed from the launch to its own exit. The faulty
// rank of kill / hang is not waited for: once the others are gone it is killed (a hang sleeps 4T + 30 s).
static int launch(int n, const MultiGpuArgs *a, const char *fault) {
    const char *expect = strcmp(fault, "drift") == 0 ? "differ across ranks" : "did not finish within";
    pid_t pids[64];
    int errfd[64];
    double t0 = rdv_now();
    for (int r = 0; r < n; r++) {
        int fds[2];
        if (pipe(fds) != 0) { die("pipe: %s", strerror(errno)); }
        fflush(stdout);
        pids[r] = fork();
        if (pids[r] < 0) { die("fork: %s", strerror(errno)); }
        if (pids[r] == 0) {
            char v[16];
            snprintf(v, sizeof(v), "%d", r); setenv("RANK", v, 1); setenv("LOCAL_RANK", v, 1);
            snprintf(v, sizeof(v), "%d", n); setenv("WORLD_SIZE", v, 1);
            close(fds[0]);
            if (strcmp(fault, "none") != 0) { dup2(fds[1], 2); }
            run_rank(a, fault);
            printf("[rank %d] %d passed, %d failed\n", r, counts[r].passed, counts[r].failed);
            _exit(counts[r].failed ? 1 : 0);
        }
        close(fds[1]);
        errfd[r] = fds[0];
    }
    double limit = strcmp(fault, "none") == 0 ? 600.0 : a->timeout_s + 60.0;
    int faulty_rank = n > 1 && (strcmp(fault, "kill") == 0 || strcmp(fault, "hang") == 0) ? n - 1 : -1;
    int status[64], left = n;
    double gone[64], took = 0.0;  // each rank's exit, and the last of the ranks checked, after launch
    for (int r = 0; r < n; r++) { status[r] = -1; }
    while (left > 0) {
        int checked_left = 0;
        for (int r = 0; r < n; r++) {
            int st;
            if (status[r] == -1 && waitpid(pids[r], &st, WNOHANG) == pids[r]) {
                status[r] = st; left--; gone[r] = rdv_now() - t0;
                if (r != faulty_rank && gone[r] > took) { took = gone[r]; }
            }
            checked_left += status[r] == -1 && r != faulty_rank;
        }
        if (left > 0 && (checked_left == 0 || rdv_now() - t0 > limit)) {
            for (int r = 0; r < n; r++) { if (status[r] == -1) { kill(pids[r], SIGKILL); } }
        }
        rdv_sleep_ms(20);
    }
    int passed = 0, failed = 0;
    for (int r = 0; r < n; r++) {
        char err[4096] = "";
        ssize_t k = read(errfd[r], err, sizeof(err) - 1);
        err[k > 0 ? k : 0] = '\0';
        close(errfd[r]);
        int ok_exit = WIFEXITED(status[r]) && WEXITSTATUS(status[r]) == 0;
        if (strcmp(fault, "none") == 0) {
            passed += counts[r].passed; failed += counts[r].failed;
            if (!ok_exit) { failed++; printf("rank %d exited with status %d\n", r, status[r]); }
        } else if (r < n - 1 || n == 1 || strcmp(fault, "drift") == 0) {
            int ok = WIFEXITED(status[r]) && WEXITSTATUS(status[r]) != 0 && strstr(err, expect) != NULL;
            printf("%s fault '%s': rank %d status %d after %.1f s: %s", ok ? "ok  " : "FAIL", fault, r, status[r], gone[r], err[0] ? err : "(no stderr)\n");
            ok ? passed++ : failed++;
        }
    }
    if (strcmp(fault, "none") != 0) {
        int in_time = took < a->timeout_s + 30.0;
        printf("%s fault '%s': all ranks gone %.1f s after launch (collective timeout %g s%s)\n", in_time ? "ok  " : "FAIL", fault, took,
               a->timeout_s, faulty_rank >= 0 ? "; the faulty rank not counted, killed then" : "");
        in_time ? passed++ : failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

int main(int argc, char **argv) {
    MultiGpuArgs a = multi_gpu_default_args();
    a.init = "single";  // checks NCCL: at world 1 a communicator of one, not the no-NCCL "local"
    a.timeout_s = 60.0f;
    int n = 0;
    const char *fault = "none";
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc || argv[i][0] != '-' || strlen(argv[i]) != 2) { die("usage: %s [-n local ranks] [-P single|local|auto|mpi|fs|tcp] [-E endpoint] [-G tag] [-g device] [-T timeout s] [-x none|kill|hang|drift]", argv[0]); }
        const char *v = argv[i + 1];
        switch (argv[i][1]) {
            case 'n': n = atoi(v); break;
            case 'P': a.init = v; break;
            case 'E': a.endpoint = v; break;
            case 'G': a.tag = v; break;
            case 'g': a.device = atoi(v); break;
            case 'T': a.timeout_s = (float)atof(v); break;
            case 'x': fault = v; break;
            default: die("unknown flag %s", argv[i]);
        }
    }
    if (strcmp(fault, "none") && strcmp(fault, "kill") && strcmp(fault, "hang") && strcmp(fault, "drift")) { die("fault -x '%s': none, kill, hang or drift", fault); }
    if (n < 0 || n > 64) { die("-n %d: 0 (launched from outside) to 64", n); }
    setvbuf(stdout, NULL, _IOLBF, 0);
    counts = (Counts *)mmap(NULL, sizeof(Counts) * 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (counts == MAP_FAILED) { die("mmap: %s", strerror(errno)); }
    if (n > 0) { return launch(n, &a, fault); }
    run_rank(&a, fault);
    printf("%d passed, %d failed\n", counts[rank_now].passed, counts[rank_now].failed);
    return counts[rank_now].failed ? 1 : 0;
}
