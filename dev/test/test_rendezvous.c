/*
 Tests of llmc/rendezvous.h on one machine: N forked processes exchange a random 128-byte id through a
 shared directory and through TCP on 127.0.0.1 and must all end up with rank 0's id; a run whose tag
 collides with an earlier run's leftover files still agrees on the new id; a missing peer or a missing
 rank 0 makes every present process exit non-zero with a clear message within the timeout (never hang);
 launcher environment variables and bad endpoints are parsed or rejected with one clear line.
*/
#include <signal.h>
#include <sys/mman.h>
#include "llmc/rendezvous.h"
#include "llmc/rng.h"
#include "dev/test/testing.h"

#define ID_BYTES 128  // NCCL_UNIQUE_ID_BYTES
#define MAX_PROCS 8

typedef struct {
    pid_t pid;
    int err_fd;
    int status;
    char err[2048];
} Proc;

static uint8_t *ids;  // shared with the children: MAX_PROCS ids, slot r written by rank r

static void random_id(uint8_t *id, uint64_t seed) {
    Rng rng;
    rng_init(&rng, seed);
    for (int i = 0; i < ID_BYTES; i++) { id[i] = (uint8_t)rng_u32(&rng); }
}

// Forks one rank: after delay_ms it joins the rendezvous (rank 0 with the id made from `seed`) and
// leaves the id it ends up with in ids[rank]. Its stderr is kept for the checks.
static void spawn(Proc *p, int tcp, Rendezvous r, uint64_t seed, int delay_ms) {
    int fds[2];
    if (pipe(fds) != 0) { die("pipe: %s", strerror(errno)); }
    fflush(stdout); fflush(stderr);
    p->pid = fork();
    if (p->pid < 0) { die("fork: %s", strerror(errno)); }
    if (p->pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        rdv_sleep_ms(delay_ms);
        uint8_t *id = ids + (size_t)r.rank * ID_BYTES;
        if (r.rank == 0) { random_id(id, seed); } else { memset(id, 0, ID_BYTES); }
        if (tcp) { rendezvous_tcp(&r, id, ID_BYTES); } else { rendezvous_fs(&r, id, ID_BYTES); }
        _exit(0);
    }
    close(fds[1]);
    p->err_fd = fds[0];
}

// Waits for every process; one still running after limit_s is killed (a hang: status shows the
// signal). Returns the seconds it took.
static double wait_all(Proc *ps, int n, double limit_s) {
    double start = rdv_now();
    int left = n;
    for (int i = 0; i < n; i++) { ps[i].status = -1; }
    while (left > 0) {
        for (int i = 0; i < n; i++) {
            if (ps[i].status != -1) { continue; }
            int st;
            if (waitpid(ps[i].pid, &st, WNOHANG) == ps[i].pid) { ps[i].status = st; left--; }
        }
        if (left > 0 && rdv_now() - start > limit_s) {
            for (int i = 0; i < n; i++) { if (ps[i].status == -1) { kill(ps[i].pid, SIGKILL); } }
        }
        rdv_sleep_ms(5);
    }
    double elapsed = rdv_now() - start;
    for (int i = 0; i < n; i++) {
        ssize_t k = read(ps[i].err_fd, ps[i].err, sizeof(ps[i].err) - 1);
        ps[i].err[k > 0 ? k : 0] = '\0';
        close(ps[i].err_fd);
    }
    return elapsed;
}

static int exited_ok(const Proc *p) { return WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0; }
static int exited_failed(const Proc *p) { return WIFEXITED(p->status) && WEXITSTATUS(p->status) != 0; }

static int free_tcp_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        die("cannot find a free TCP port: %s", strerror(errno));
    }
    close(fd);
    return ntohs(a.sin_port);
}

static char tmpdir[64];
static char endpoint[64];

static Rendezvous make_rdv(int tcp, int rank, int world, double timeout_s, const char *tag) {
    if (tcp) { snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%d", free_tcp_port()); }
    Rendezvous r = {rank, world, tcp ? endpoint : tmpdir, tag, timeout_s};
    return r;
}

// All `world` ranks agree on rank 0's id; rank 0 starts root_delay_ms after the peers.
static void test_agree(int tcp, int world, uint64_t seed, int root_delay_ms, const char *what) {
    Proc ps[MAX_PROCS];
    Rendezvous r = make_rdv(tcp, 0, world, 20.0, "job42");
    memset(ids, 0xAB, (size_t)MAX_PROCS * ID_BYTES);
    for (int i = 0; i < world; i++) { r.rank = i; spawn(&ps[i], tcp, r, seed, i == 0 ? root_delay_ms : 0); }
    double t = wait_all(ps, world, 30.0);
    uint8_t expect[ID_BYTES];
    random_id(expect, seed);
    int all_ok = 1, all_equal = 1;
    for (int i = 0; i < world; i++) {
        all_ok &= exited_ok(&ps[i]);
        all_equal &= memcmp(ids + (size_t)i * ID_BYTES, expect, ID_BYTES) == 0;
        if (!exited_ok(&ps[i])) { printf("  rank %d status %d: %s", i, ps[i].status, ps[i].err); }
    }
    CHECK(all_ok, "%s: every rank exits 0", what);
    CHECK(all_equal, "%s: every rank holds rank 0's 128-byte id", what);
    printf("ok   %s: %d ranks agree in %.3f s\n", what, world, t);
}

// Ranks `present` of `world` run; each must exit non-zero with its message within timeout + slack.
static void test_missing(int tcp, int world, int n_present, const int *present, const char *const *expect,
                         double timeout_s, const char *what) {
    Proc ps[MAX_PROCS];
    static int calls = 0;
    char tag[32];
    snprintf(tag, sizeof(tag), "missing%d", calls++);  // no leftovers from other tests under this tag
    Rendezvous r = make_rdv(tcp, 0, world, timeout_s, tag);
    for (int i = 0; i < n_present; i++) { r.rank = present[i]; spawn(&ps[i], tcp, r, 7, 0); }
    double t = wait_all(ps, n_present, timeout_s + 10.0);
    for (int i = 0; i < n_present; i++) {
        int ok = exited_failed(&ps[i]) && strstr(ps[i].err, expect[i]) != NULL;
        CHECK(ok, "%s: rank %d must fail with '%s'; got status %d, stderr '%s'", what, present[i], expect[i], ps[i].status, ps[i].err);
        if (ok) { printf("ok   %s: rank %d -> %s", what, present[i], ps[i].err); }
    }
    CHECK(t < timeout_s + 2.0, "%s: took %.1f s with a %.1f s timeout (must not hang)", what, t, timeout_s);
}

static void test_exchange(void) {
    for (int tcp = 0; tcp <= 1; tcp++) {
        const char *name = tcp ? "tcp" : "fs";
        char what[128];
        snprintf(what, sizeof(what), "%s: 4 ranks", name);
        test_agree(tcp, 4, 1, 0, what);
        snprintf(what, sizeof(what), "%s: 8 ranks, rank 0 starts 300 ms late", name);
        test_agree(tcp, 8, 2, 300, what);
        snprintf(what, sizeof(what), "%s: 2 ranks", name);
        test_agree(tcp, 2, 3, 0, what);
    }
    // The 8-rank fs run above left its files under the same tag: a new run whose peers start first
    // sees that run's id and .ready, and still must agree on the new id.
    test_agree(0, 8, 99, 300, "fs: stale files of an earlier run with the same tag");

    // world 1 needs no peer and leaves the id alone
    for (int tcp = 0; tcp <= 1; tcp++) {
        Rendezvous r = make_rdv(tcp, 0, 1, 1.0, "single");
        uint8_t id[ID_BYTES], expect[ID_BYTES];
        random_id(id, 5); random_id(expect, 5);
        tcp ? rendezvous_tcp(&r, id, ID_BYTES) : rendezvous_fs(&r, id, ID_BYTES);
        CHECK(memcmp(id, expect, ID_BYTES) == 0, "%s: world 1 keeps the id", tcp ? "tcp" : "fs");
    }

    int r01[] = {0, 1}, r1[] = {1};
    const char *fs_peer_missing[] = {"ranks 2 of 3 never answered", "rank 1: rank 0 did not confirm all 3 ranks"};
    test_missing(0, 3, 2, r01, fs_peer_missing, 1.5, "fs: rank 2 missing");
    // rank 1 sees rank 0 close the connection, or, when rank 0's exit lags its deadline (a loaded machine),
    // its own receive time out first: both messages say a rank is missing
    const char *tcp_peer_missing[] = {"ranks 2 of 3 never connected", "(a rank is missing"};
    test_missing(1, 3, 2, r01, tcp_peer_missing, 1.5, "tcp: rank 2 missing");
    const char *fs_root_missing[] = {"rank 1 found no id from rank 0"};
    test_missing(0, 2, 1, r1, fs_root_missing, 1.0, "fs: rank 0 missing");
    const char *tcp_root_missing[] = {"rank 1 could not connect to rank 0"};
    test_missing(1, 2, 1, r1, tcp_root_missing, 1.0, "tcp: rank 0 missing");
}

// ---------------------------------------------------------------------------------------------------
// environment and argument checks

static const char *launcher_vars[] = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                                      "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "RANK", "WORLD_SIZE", "LOCAL_RANK"};

static void clear_env(void) {
    for (size_t i = 0; i < sizeof(launcher_vars) / sizeof(launcher_vars[0]); i++) { unsetenv(launcher_vars[i]); }
}

static void set_env3(const char *a, const char *av, const char *b, const char *bv, const char *c, const char *cv) {
    setenv(a, av, 1); setenv(b, bv, 1);
    if (c) { setenv(c, cv, 1); }
}

static void detect(void *arg) { (void)arg; process_env_detect(); }

static void bad_env(const char *what, const char *a, const char *av, const char *b, const char *bv, const char *expect) {
    clear_env();
    set_env3(a, av, b, bv, NULL, NULL);
    expect_failure(what, detect, NULL, expect);
}

static void test_env(void) {
    clear_env();
    ProcessEnv e = process_env_detect();
    CHECK(e.rank == 0 && e.world == 1 && e.local_rank == 0, "no launcher: rank 0 of 1");
    set_env3("RANK", "5", "WORLD_SIZE", "8", NULL, NULL);
    e = process_env_detect();
    CHECK(e.rank == 5 && e.world == 8 && e.local_rank == 5, "RANK/WORLD_SIZE without LOCAL_RANK: local = rank (got %d %d %d)", e.rank, e.world, e.local_rank);
    setenv("LOCAL_RANK", "1", 1);
    e = process_env_detect();
    CHECK(e.rank == 5 && e.world == 8 && e.local_rank == 1, "RANK/WORLD_SIZE/LOCAL_RANK");
    set_env3("SLURM_PROCID", "9", "SLURM_NTASKS", "16", "SLURM_LOCALID", "1");
    e = process_env_detect();
    CHECK(e.rank == 9 && e.world == 16 && e.local_rank == 1 && strstr(e.source, "Slurm"), "Slurm wins over RANK");
    set_env3("OMPI_COMM_WORLD_RANK", "3", "OMPI_COMM_WORLD_SIZE", "4", "OMPI_COMM_WORLD_LOCAL_RANK", "3");
    e = process_env_detect();
    CHECK(e.rank == 3 && e.world == 4 && e.local_rank == 3 && strstr(e.source, "Open MPI"), "Open MPI wins over Slurm");
    bad_env("rank not a number", "RANK", "x1", "WORLD_SIZE", "2", "RANK='x1' is not a non-negative integer");
    bad_env("rank >= world", "RANK", "2", "WORLD_SIZE", "2", "RANK=2 is not below WORLD_SIZE=2");
    bad_env("world 0", "SLURM_PROCID", "0", "SLURM_NTASKS", "0", "SLURM_NTASKS=0: world size must be in");
    bad_env("rank without world", "OMPI_COMM_WORLD_RANK", "0", "UNRELATED", "1", "OMPI_COMM_WORLD_RANK is set but OMPI_COMM_WORLD_SIZE is not");
    clear_env();
}

typedef struct { int tcp; const char *endpoint, *tag; int rank, world; } BadCall;

static void bad_call(void *arg) {
    const BadCall *b = (const BadCall *)arg;
    Rendezvous r = {b->rank, b->world, b->endpoint, b->tag, 1.0};
    uint8_t id[ID_BYTES] = {0};
    b->tcp ? rendezvous_tcp(&r, id, ID_BYTES) : rendezvous_fs(&r, id, ID_BYTES);
}

static void test_bad_arguments(void) {
    BadCall calls[] = {
        {0, "/nonexistent/rdv", "t", 0, 2}, {0, tmpdir, "a/b", 0, 2}, {1, "localhost", "t", 1, 2},
        {1, "localhost:70000", "t", 1, 2}, {1, ":29500", "t", 1, 2}, {1, "127.0.0.1:29500", "t", 2, 2},
        {1, "no-such-host.invalid:29500", "t", 1, 2},
    };
    const char *expect[] = {
        "'/nonexistent/rdv' is not an existing directory", "tag 'a/b' may hold only", "must be host:port with port 1..65535",
        "must be host:port with port 1..65535", "has no usable host name", "rank 2 / world 2 is not a valid rank",
        "rank 1 cannot resolve 'no-such-host.invalid'",
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) { expect_failure(expect[i], bad_call, &calls[i], expect[i]); }
}

int main(void) {
    ids = (uint8_t *)mmap(NULL, (size_t)MAX_PROCS * ID_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ids == MAP_FAILED) { die("mmap: %s", strerror(errno)); }
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/moba_rdv_XXXXXX");
    if (mkdtemp(tmpdir) == NULL) { die("mkdtemp: %s", strerror(errno)); }
    test_env();
    test_exchange();
    test_bad_arguments();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0) { printf("warning: could not remove %s\n", tmpdir); }
    return test_summary();
}
