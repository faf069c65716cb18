#!/bin/bash
# compute-sanitizer pass over the CUDA programs, in one device call (a few minutes on an H200):
#  1. memcheck (with leak check) of test_gpt_moba_cu on one CPU-written MoBA debug state (tiny, B 2, T 256:
#     forward, backward, gate selections and 3 AdamW steps against the CPU reference)
#  2. memcheck of a short train_gpt_moba_cu run: 3 steps, a checkpoint, a resume, sampling
#  3. racecheck of the dense / sliding-window attention kernels through dev/cuda/attention_swa (no cuBLASLt:
#     racecheck over the trainer stops with "Internal Sanitizer Error: failed to handle a hardware
#     exception" before the first attention kernel, with --kernel-name too): the Hopper forward and the TMA
#     backward with alternating dQ (T 256), the one-warpgroup kernels of the deterministic backward (T 100)
#  4. (no sanitizer) the NaN/Inf policy: a run with -l 1e6 -g 0 -a 3 must skip steps and stop with exit 1
# Prebuilt binaries in $BIN (train_gpt_moba_cu, test_gpt_moba_cu, attention_swa) are used when given, as in
# dev/test/gpu/test_gpu.sh; else they are built. Logs go to $LOG (default /tmp/moba_sanitize); a table of
# results is printed last. Exits non-zero when any check reports an error.
#   usage: [BIN=dir] [LOG=dir] bash dev/test/gpu/sanitize_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
LOG=${LOG:-/tmp/moba_sanitize}
BIN=${BIN:-}
CS=${CS:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
mkdir -p "$LOG"
W=$(mktemp -d /tmp/moba_sanitize.XXXX)
TABLE="$LOG/table.txt"
: > "$TABLE"
failed=0
row() { printf '%-40s %s\n' "$1" "$2" | tee -a "$TABLE"; }

make -s train_gpt_moba || exit 1
if [ -n "$BIN" ]; then
  cp "$BIN"/train_gpt_moba_cu "$BIN"/test_gpt_moba_cu . && mkdir -p build/cuda && cp "$BIN"/attention_swa build/cuda/ || exit 1
else
  make -s -j2 train_gpt_moba_cu test_gpt_moba_cu build/cuda/attention_swa || exit 1
fi

# One sanitizer run: name, tool flags, command. Passes when the tool exits 0 and reports no error/hazard.
check() {
  local name=$1 flags=$2; shift 2
  local log="$LOG/$name.log"
  timeout 600 "$CS" $flags --error-exitcode 99 --print-limit 20 "$@" > "$log" 2>&1
  local rc=$? summary
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY" "$log" | tail -n 2 | tr '\n' ' ')
  if [ "$rc" -ne 0 ]; then failed=1; row "$name" "FAILED (exit $rc) $summary"; else row "$name" "ok $summary"; fi
}

./train_gpt_moba -p tiny -V 512 -A moba -B 32 -K 3 -W 3 -b 2 -t 256 -S 3 -D "$W/state.bin" > "$LOG/cpu_state.log" 2>&1 \
  || { row "CPU debug state" "FAILED (see $LOG/cpu_state.log)"; exit 1; }

check memcheck_test_gpt_moba "--tool memcheck --leak-check full" ./test_gpt_moba_cu "$W/state.bin"
TR="-p tiny -A moba -B 32 -K 3 -W 3 -b 4 -t 256 -v 0 -m 1 -s 8 -u 1"
check memcheck_train_3_steps "--tool memcheck --leak-check full" ./train_gpt_moba_cu $TR -x 3 -n 2 -o "$W/run"
check memcheck_train_resume "--tool memcheck" ./train_gpt_moba_cu $TR -x 4 -y 1 -o "$W/run"
check racecheck_attention_T256_window100 "--tool racecheck --racecheck-report hazard" build/cuda/attention_swa case 1 2 256 64 100 0
check racecheck_attention_T100_window40_det "--tool racecheck --racecheck-report hazard" build/cuda/attention_swa case 1 2 100 64 40 1
# the NaN/Inf policy on the GPU (no sanitizer): a diverging run skips its non-finite steps, then stops with exit 1
./train_gpt_moba_cu -p tiny -b 4 -t 256 -l 1e6 -g 0 -x 30 -a 3 -v 0 -s 0 -o "$W/nan" > "$LOG/nan_policy.log" 2>&1
rc=$?
skipped=$(grep -c skipped_nonfinite "$W/nan/log.txt" 2>/dev/null)
if [ "$rc" -eq 1 ] && grep -q "steps in a row had a NaN/Inf" "$LOG/nan_policy.log"; then row "NaN policy (-l 1e6 -g 0 -a 3)" "ok: stopped after $skipped skipped steps"
else failed=1; row "NaN policy (-l 1e6 -g 0 -a 3)" "FAILED: exit $rc, $skipped skipped steps (see $LOG/nan_policy.log)"; fi
rm -rf "$W"
echo "======== summary ========"
cat "$TABLE"
exit "$failed"
