/*
 A deadline watch that cannot itself hang. Every operation that may block or never finish (a library
 call such as an NCCL enqueue, a GPU operation that completes asynchronously) publishes "in <what>
 since t" in a slot of host memory before it starts (deadline_begin) and clears it when it is done
 (deadline_end). A monitor thread reads only those slots: it calls no library and takes no lock that
 an operation could hold, so nothing the operations do can keep it from firing. When a slot is older
 than the timeout it writes one line to stderr,
     error: <prefix><what> did not finish within <T> s<suffix>
 runs on_expire (e.g. ncclCommAbort, which may itself block) on a helper thread for at most the grace
 period, and ends the process with _exit(1). Another thread that detects a failure on its own (a polled
 error status) takes the same exit with deadline_watch_fail.

 _exit, not exit: the thread that is stuck may sit inside a call that atexit teardown would wait on.
 Host only, C11 and C++ (the same header serves llmc/multi_gpu.cuh): timestamps are CLOCK_MONOTONIC
 nanoseconds read and written with the GCC atomic builtins.
*/
#ifndef LLMC_DEADLINE_WATCH_H
#define LLMC_DEADLINE_WATCH_H

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include "utils.h"

#define DEADLINE_CLAIMED ((int64_t)-1)  // a slot being filled: taken, not yet timed

typedef struct {
    int64_t *since;        // per slot: 0 free, DEADLINE_CLAIMED, else the monotonic ns its operation began
    const char **what;     // per slot: the operation's name (must outlive the operation)
    int slots;
    unsigned next;         // where the next deadline_begin starts looking for a free slot
    int64_t timeout_ns;
    int grace_ms, poll_ms;
    char prefix[96];
    const char *suffix;
    void (*on_expire)(void *ctx);
    void *ctx;
    int stop, exiting, expire_done;
    pthread_t thread;
} DeadlineWatch;

static inline int64_t deadline_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void deadline_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// Returns the slot to pass to deadline_end. Any thread may call it; slots must not run out (die).
static inline int deadline_begin(DeadlineWatch *w, const char *what) {
    unsigned start = __atomic_fetch_add(&w->next, 1u, __ATOMIC_RELAXED);
    for (int k = 0; k < w->slots; k++) {
        int i = (int)((start + (unsigned)k) % (unsigned)w->slots);
        int64_t expected = 0;
        if (__atomic_compare_exchange_n(&w->since[i], &expected, DEADLINE_CLAIMED, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            __atomic_store_n(&w->what[i], what, __ATOMIC_RELAXED);
            int64_t now = deadline_now_ns();
            __atomic_store_n(&w->since[i], now > 0 ? now : 1, __ATOMIC_RELEASE);
            return i;
        }
    }
    die("deadline watch: all %d slots are in use (starting '%s')", w->slots, what);
    return -1;
}

static inline void deadline_end(DeadlineWatch *w, int slot) {
    __atomic_store_n(&w->since[slot], 0, __ATOMIC_RELEASE);
}

// Operations begun and not yet ended (tests; a snapshot).
static inline int deadline_watch_pending(DeadlineWatch *w) {
    int n = 0;
    for (int i = 0; i < w->slots; i++) { n += __atomic_load_n(&w->since[i], __ATOMIC_ACQUIRE) != 0; }
    return n;
}

static inline void *deadline_watch_expire_main(void *arg) {
    DeadlineWatch *w = (DeadlineWatch *)arg;
    w->on_expire(w->ctx);
    __atomic_store_n(&w->expire_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

// The one way out: the first caller prints `line`, gives on_expire its grace and _exits; a second
// caller (another thread that saw a failure meanwhile) waits for that.
static inline void deadline_watch_exit(DeadlineWatch *w, const char *line) {
    if (__atomic_exchange_n(&w->exiting, 1, __ATOMIC_SEQ_CST)) {
        for (;;) { pause(); }
    }
    // write(2), not stdio: a stuck thread could hold the stderr lock
    ssize_t written = write(STDERR_FILENO, line, strlen(line));
    (void)written;
    pthread_t t;
    if (w->on_expire && pthread_create(&t, NULL, deadline_watch_expire_main, w) == 0) {
        for (int ms = 0; ms < w->grace_ms && !__atomic_load_n(&w->expire_done, __ATOMIC_ACQUIRE); ms += 10) { deadline_sleep_ms(10); }
    }
    _exit(1);
}

// printf-style: exits as an expired deadline does, with "error: <message>" on stderr.
static inline void deadline_watch_fail(DeadlineWatch *w, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int len = snprintf(line, sizeof(line), "error: ");
    vsnprintf(line + len, sizeof(line) - (size_t)len - 1, fmt, ap);
    va_end(ap);
    strcat(line, "\n");
    deadline_watch_exit(w, line);
}

static inline void *deadline_watch_main(void *arg) {
    DeadlineWatch *w = (DeadlineWatch *)arg;
    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        int64_t now = deadline_now_ns();
        for (int i = 0; i < w->slots; i++) {
            int64_t since = __atomic_load_n(&w->since[i], __ATOMIC_ACQUIRE);
            if (since <= 0 || now - since <= w->timeout_ns) { continue; }
            const char *what = __atomic_load_n(&w->what[i], __ATOMIC_RELAXED);
            // the slot may have been ended and reused between the two loads: then it is not overdue
            if (__atomic_load_n(&w->since[i], __ATOMIC_ACQUIRE) != since) { continue; }
            char line[512];
            snprintf(line, sizeof(line), "error: %s%s did not finish within %g s%s\n", w->prefix, what, (double)w->timeout_ns * 1e-9, w->suffix);
            deadline_watch_exit(w, line);
        }
        deadline_sleep_ms(w->poll_ms);
    }
    return NULL;
}

// slots: the most operations in flight at once; prefix / suffix frame the message (suffix must outlive
// the watch); on_expire may be NULL.
static inline void deadline_watch_start(DeadlineWatch *w, int slots, double timeout_s, double grace_s, const char *prefix,
                                        const char *suffix, void (*on_expire)(void *), void *ctx) {
    if (slots <= 0 || !(timeout_s > 0)) { die("deadline watch: %d slots, timeout %g s: both must be positive", slots, timeout_s); }
    memset(w, 0, sizeof(*w));
    w->since = (int64_t *)calloc_check((size_t)slots, sizeof(int64_t));
    w->what = (const char **)calloc_check((size_t)slots, sizeof(const char *));
    w->slots = slots;
    w->timeout_ns = (int64_t)(timeout_s * 1e9);
    w->grace_ms = (int)(grace_s * 1000);
    // a small fraction of the timeout, so the process ends within about 5% of it
    w->poll_ms = timeout_s * 50 < 1 ? 1 : timeout_s * 50 > 50 ? 50 : (int)(timeout_s * 50);
    snprintf(w->prefix, sizeof(w->prefix), "%s", prefix);
    w->suffix = suffix;
    w->on_expire = on_expire;
    w->ctx = ctx;
    if (pthread_create(&w->thread, NULL, deadline_watch_main, w) != 0) { die("deadline watch: cannot start its thread"); }
}

// Stops the monitor; operations still pending are no longer watched.
static inline void deadline_watch_stop(DeadlineWatch *w) {
    __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
    pthread_join(w->thread, NULL);
    free(w->since);
    free(w->what);
    w->since = NULL;
    w->what = NULL;
}

#endif // LLMC_DEADLINE_WATCH_H
