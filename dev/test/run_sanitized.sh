#!/usr/bin/env bash
# make asan: runs the CPU tests built with AddressSanitizer + UndefinedBehaviorSanitizer (in $1, default
# build-asan/), then the bounded loader fuzzing (dev/fuzz/fuzz_loaders.c). Sanitizer reports of every
# process, forked children included, are written to files under <build>/reports/; any report, like any
# failed test or fuzz case, makes this script fail. Leaks count too, with no suppressions (a forked child
# that exits non-zero on purpose is exempt: dev/test/testing.h). FUZZ_MUTANTS: mutants per loader (default 300).
set -u
cd "$(dirname "$0")/../.."
build="${1:-build-asan}"
reports="$PWD/$build/reports"
rm -rf "$reports" "$build/fuzz_failures"; mkdir -p "$reports"
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:allocator_may_return_null=1:exitcode=66"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1:exitcode=66"
rc=0
start=$(date +%s)
TEST_BUILD="$build" TEST_SANITIZED=1 TEST_TIMEOUT=900 bash dev/test/run_tests.sh || rc=1
echo "--- sanitized CPU tests: $(( $(date +%s) - start ))s"
start=$(date +%s)
"$build/fuzz_loaders" -n "${FUZZ_MUTANTS:-300}" -o "$build/fuzz_failures" || rc=1
echo "--- fuzzing: $(( $(date +%s) - start ))s"
if [ -n "$(ls -A "$reports")" ]; then
    echo "!!! sanitizer reports in $reports:"
    for f in "$reports"/*; do echo "== $f"; head -n 40 "$f"; done
    rc=1
fi
[ "$rc" -eq 0 ] && echo "sanitizers: no reports" || echo "sanitizers: FAILED"
exit "$rc"
