/*
 llmc/deadline_watch.h on the CPU: the hang watchdog of llmc/multi_gpu.cuh without a GPU. An operation
 that never returns (here: a thread stuck in a "library call" that holds a lock, while a poller thread
 blocks on that lock, as the main thread and the NCCL error poll did on 2 GPUs) must end the process
 non-zero with the message within the timeout plus slack; the abort callback gets its grace and no
 more; a failure seen by another thread takes the same exit; operations that finish in time (many
 short ones from several threads, one at 70% of the timeout) never trigger it.
*/
#include <pthread.h>
#include "llmc/deadline_watch.h"
#include "dev/test/testing.h"

#define SLACK_S 2.0  // process start, thread scheduling and the poll interval on a loaded 2-core machine

static double now_s(void) { return (double)deadline_now_ns() * 1e-9; }

static pthread_mutex_t library_lock = PTHREAD_MUTEX_INITIALIZER;

// A library call that never returns, holding the library's lock.
static void stuck_library_call(void) {
    pthread_mutex_lock(&library_lock);
    for (;;) { pause(); }
}

// The error poll of a watchdog that calls into the library: blocks behind the stuck call forever.
static void *error_poll_main(void *arg) {
    for (;;) {
        pthread_mutex_lock(&library_lock);
        pthread_mutex_unlock(&library_lock);
        deadline_sleep_ms(5);
    }
    return NULL;
}

typedef struct {
    double timeout_s, grace_s;
    int abort_hangs;  // the abort callback blocks (as ncclCommAbort can, behind a stuck kernel)
} Stuck;

static void abort_cb(void *ctx) {
    const Stuck *s = (const Stuck *)ctx;
    const char msg[] = "abort started\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    (void)w;
    if (s->abort_hangs) { for (;;) { pause(); } }
}

static void run_stuck(void *arg) {
    Stuck *s = (Stuck *)arg;
    alarm((unsigned)(s->timeout_s + s->grace_s + SLACK_S + 1));  // a watch that never fires fails the check, not CI's clock
    static DeadlineWatch w;
    deadline_watch_start(&w, 8, s->timeout_s, s->grace_s, "rank 0: NCCL ", " (a rank died); aborting the communicator", abort_cb, s);
    pthread_t poller;
    pthread_create(&poller, NULL, error_poll_main, NULL);
    deadline_end(&w, deadline_begin(&w, "barrier"));  // a finished operation first
    deadline_begin(&w, "all-reduce");
    stuck_library_call();
}

static void check_stuck(const char *what, Stuck s, const char *expect, double lo, double hi) {
    double t0 = now_s();
    expect_failure(what, run_stuck, &s, expect);
    double took = now_s() - t0;
    CHECK(took >= lo && took <= hi, "%s: the process ended after %.2f s, want [%.2f, %.2f]", what, took, lo, hi);
    printf("ok   %s: ended after %.2f s (timeout %g s, grace %g s)\n", what, took, s.timeout_s, s.grace_s);
}

// A failure seen by another thread (a polled error status) while the main thread is stuck.
static DeadlineWatch fail_watch;
static void *failing_poll_main(void *arg) {
    deadline_sleep_ms(200);
    deadline_watch_fail(&fail_watch, "rank %d: NCCL communicator reported an error: %s; aborting the communicator", 3, "remote process exited");
    return NULL;
}
static void run_fail(void *arg) {
    Stuck *s = (Stuck *)arg;
    alarm((unsigned)(SLACK_S + 1));
    deadline_watch_start(&fail_watch, 8, 60.0, s->grace_s, "", "", abort_cb, s);
    pthread_t poller;
    pthread_create(&poller, NULL, failing_poll_main, NULL);
    deadline_begin(&fail_watch, "all-reduce");
    stuck_library_call();
}

// Operations that finish in time, for longer than the timeout in all: none may fire.
typedef struct { DeadlineWatch *w; double until; long done; } Worker;
static void *short_ops_main(void *arg) {
    Worker *k = (Worker *)arg;
    static const char *names[3] = {"all-reduce", "reduce-scatter", "all-gather"};
    while (now_s() < k->until) {
        int slot = deadline_begin(k->w, names[k->done % 3]);
        if (k->done % 64 == 0) { deadline_sleep_ms(1); }
        deadline_end(k->w, slot);
        k->done++;
    }
    return NULL;
}

// Runs fn in a child that must exit 0 with nothing on stderr.
static void expect_success(const char *what, void (*fn)(void *), void *arg) {
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); tests_failed++; return; }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) { close(fds[0]); dup2(fds[1], 2); fn(arg); _exit(0); }
    close(fds[1]);
    char err[1024] = "";
    ssize_t n = read(fds[0], err, sizeof(err) - 1);
    err[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && err[0] == '\0', "%s: status %d, stderr '%s'", what, status, err);
}

static void run_in_time(void *arg) {
    const double timeout = 1.0;
    DeadlineWatch w;
    deadline_watch_start(&w, 16, timeout, 1.0, "", "", NULL, NULL);
    enum { NW = 4 };
    Worker k[NW];
    pthread_t t[NW];
    double t0 = now_s();
    for (int i = 0; i < NW; i++) { k[i] = (Worker){&w, t0 + 1.5 * timeout, 0}; pthread_create(&t[i], NULL, short_ops_main, &k[i]); }
    int slot = deadline_begin(&w, "one just under the deadline");
    deadline_sleep_ms((int)(700 * timeout));
    deadline_end(&w, slot);
    long total = 0;
    for (int i = 0; i < NW; i++) { pthread_join(t[i], NULL); total += k[i].done; }
    deadline_sleep_ms(100);  // the monitor runs a few more rounds over the freed slots
    int pending = deadline_watch_pending(&w);
    deadline_watch_stop(&w);
    printf("ok   %ld short operations from %d threads over %.1f s, one of %.1f s (timeout %.1f s): none fired, %d pending\n",
           total, NW, now_s() - t0, 0.7 * timeout, timeout, pending);
    fflush(stdout);
    if (total < 1000 || pending != 0) { _exit(2); }
}

static void run_full(void *arg) {
    DeadlineWatch w;
    deadline_watch_start(&w, 4, 60.0, 1.0, "", "", NULL, NULL);
    for (int i = 0; i < 5; i++) { deadline_begin(&w, "op"); }
}

static void run_bad_timeout(void *arg) {
    DeadlineWatch w;
    deadline_watch_start(&w, 4, 0.0, 1.0, "", "", NULL, NULL);
}

int main(void) {
    const char *msg = "error: rank 0: NCCL all-reduce did not finish within 0.5 s (a rank died); aborting the communicator\n";
    // the abort returns at once: exit right after the deadline, not after the grace
    check_stuck("stuck call, quick abort", (Stuck){0.5, 5.0, 0}, msg, 0.5, 0.5 + SLACK_S);
    // the abort hangs too: exit after the deadline plus the grace
    check_stuck("stuck call, stuck abort", (Stuck){0.5, 1.0, 1}, "abort started", 1.5, 1.5 + SLACK_S);
    check_stuck("stuck call, message", (Stuck){0.5, 1.0, 1}, msg, 1.5, 1.5 + SLACK_S);

    Stuck quick = {60.0, 5.0, 0};
    double t0 = now_s();
    expect_failure("failure seen by another thread", run_fail, &quick, "error: rank 3: NCCL communicator reported an error: remote process exited; aborting the communicator\nabort started");
    CHECK(now_s() - t0 <= 0.2 + SLACK_S, "failure exit after %.2f s", now_s() - t0);

    expect_success("operations that finish in time", run_in_time, NULL);
    expect_failure("slots run out", run_full, NULL, "deadline watch: all 4 slots are in use (starting 'op')");
    expect_failure("zero timeout", run_bad_timeout, NULL, "timeout 0 s: both must be positive");
    return test_summary();
}
