#!/usr/bin/env bash
# Runs every CPU test program in build/ (one per dev/test/*.c; TEST_BUILD=dir runs those of another build,
# e.g. the sanitizer build, and only those), every other dev/test/*.sh script (the ablation runner's
# kill-and-resume test, the tokenizer cross-checks) and the evaluation cross-check against Python
# references (dev/eval/crosscheck.sh), sums their "N passed, N failed" lines and prints the total
# as the last line. A program that runs past TEST_TIMEOUT seconds (default 600)
# is killed and counted as failed, so a hung test never stalls CI. Exits non-zero if any test failed or a program crashed.
set -u
cd "$(dirname "$0")/../.."
total_pass=0; total_fail=0; crashed=0
scripts="dev/test/*.sh dev/eval/crosscheck.sh"
[ -n "${TEST_BUILD:-}" ] && scripts=""
for src in dev/test/*.c $scripts; do
    [ "$src" = dev/test/run_tests.sh ] || [ "$src" = dev/test/run_sanitized.sh ] && continue
    prog="${TEST_BUILD:-build}/$(basename "$src" .c)"
    run=("$prog")
    if [[ "$src" == *.sh ]]; then prog="$src"; run=(bash "$src"); fi
    echo "=== $prog"
    start=$(date +%s)
    out=$(timeout "${TEST_TIMEOUT:-600}" "${run[@]}" 2>&1); rc=$?
    if [ "$rc" -eq 124 ]; then echo "!!! $prog timed out after ${TEST_TIMEOUT:-600}s"; fi
    echo "$out" | grep -v '^ok ' | tail -n 40
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        echo "!!! $prog exited $rc without a summary line"; crashed=$((crashed + 1)); continue
    fi
    p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "!!! $prog exited $rc"; crashed=$((crashed + 1)); fi
    echo "--- $prog: $line ($(( $(date +%s) - start ))s)"
done
total_fail=$((total_fail + crashed))
echo "${total_pass} passed, ${total_fail} failed"
[ "$total_fail" -eq 0 ]
