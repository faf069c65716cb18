/*
 A tiny test harness for the CPU tests: CHECK counts passes and failures, expect_failure runs a function
 in a child process and requires that it exits non-zero with a given substring on stderr (how we test
 that bad input gets its clear error), and test_summary prints the closing "N passed, N failed" line.
*/
#ifndef DEV_TEST_TESTING_H
#define DEV_TEST_TESTING_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int tests_passed = 0, tests_failed = 0;

#define CHECK(cond, ...) do { \
    if (cond) { tests_passed++; } \
    else { tests_failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } \
} while (0)

// Under LeakSanitizer (make asan): a forked child that exits non-zero is rejecting bad input on
// purpose (die), abandoning what it allocated, so its leak check is skipped; a child that exits 0, like
// every parent, is checked. LSan calls __lsan_is_turned_off at exit, after the on_exit handler.
static int child_exit_status = 0;
static void note_exit_status(int status, void *arg) { (void)arg; child_exit_status = status; }
__attribute__((used)) int __lsan_is_turned_off(void) { return child_exit_status != 0; }
static inline void child_skip_leak_check_on_failure(void) { on_exit(note_exit_status, NULL); }

// Runs fn(arg) in a child; passes iff the child exits non-zero and its stderr contains `expect`.
static inline void expect_failure(const char *what, void (*fn)(void *), void *arg, const char *expect) {
    int pipefd[2];
    if (pipe(pipefd) != 0) { perror("pipe"); tests_failed++; return; }
    fflush(stdout); fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], 2);
        child_skip_leak_check_on_failure();
        fn(arg);
        _exit(0);  // fn returned: the bad input was accepted
    }
    close(pipefd[1]);
    char buf[4096] = {0};
    size_t len = 0;
    ssize_t r;
    while ((r = read(pipefd[0], buf + len, sizeof(buf) - 1 - len)) > 0) { len += (size_t)r; }
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    int exited_nonzero = WIFEXITED(status) && WEXITSTATUS(status) != 0;
    int has_message = strstr(buf, expect) != NULL;
    CHECK(exited_nonzero && has_message, "%s: expected non-zero exit and stderr containing '%s'; got status %d, stderr '%s'",
          what, expect, status, buf);
    if (exited_nonzero && has_message) { printf("ok   %s -> %s", what, buf); }
}

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    return tests_failed == 0 ? 0 : 1;
}

#endif // DEV_TEST_TESTING_H
