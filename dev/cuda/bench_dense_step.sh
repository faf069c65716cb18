#!/usr/bin/env bash
# Device script for the Hopper (wgmma) dense attention kernels and the 340M step, one call, with binaries
# built on the dev machine (no nvcc time on the device) in $BIN:
#   attention_dense, step_phases_det / step_phases_atomic (dev/cuda/step_phases.cu built with
#   -DATTN_FWD_WGMMA_QW=2 -DATTN_BWD_WGMMA_KW=2 -DATTN_BWD_ATOMIC_DQ=0 / 1), test_gpt_moba_cu (same -D flags,
#   atomic dQ), and CPU debug states in $BIN/states (./train_gpt_moba -p tiny -V 512 ... -D, as test_gpu.sh).
# Steps: CPU-reference checks of versions 5-8; timings of versions 2, 5-8 at HD 64 next to PyTorch's
# FlashAttention-2 and cuDNN (same call); per-phase tables of the 340M step (T 8192 x 4 for both backward
# modes, T 32768 x 1 for the faster one); test_gpt_moba_cu on each state. Summary table last.
#   usage: BIN=build/dev bash dev/cuda/bench_dense_step.sh   (logs: $OUT/summary.txt and $OUT/logs.tgz when OUT is set)
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/dev}
LOG=$(mktemp -d /tmp/bench_dense_step.XXXX)
sum=$LOG/summary.txt
: > "$sum"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader >> "$sum"
status=0
for v in 5 6 7 8; do
    timeout 90 "$BIN/attention_dense" $v check > "$LOG/check_v$v.log" 2>&1 || status=1
    echo "check v$v: $(tail -1 "$LOG/check_v$v.log"); worst rel_l2 $(grep -o 'rel_l2 [0-9.e+-]*' "$LOG/check_v$v.log" | sort -k2 -g | tail -1 | cut -d' ' -f2)" >> "$sum"
done
{
    echo "| impl | attn | HD | T | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    for v in 2 5 6 7 8; do timeout 60 "$BIN/attention_dense" $v time 64 8192 32768; done
    PYTHONUNBUFFERED=1 timeout 120 python3 dev/cuda/attention_anchor.py 64 8192 32768 2>&1 | grep '^|'
} >> "$sum" 2>&1
phases() {  # binary, name, flags
    timeout 120 "$BIN/$1" -p 340M -A dense -W 0 $3 > "$LOG/phases_$2.log" 2>&1 || status=1
    echo "== $2: $(grep 'step wall' "$LOG/phases_$2.log") $(grep -i error "$LOG/phases_$2.log" | head -1)" >> "$sum"
    grep -h '^| attention' "$LOG/phases_$2.log" >> "$sum"
}
phases step_phases_det det_8192x4 "-b 4 -t 8192"
phases step_phases_atomic atomic_8192x4 "-b 4 -t 8192"
ms() { grep -o 'wall time [0-9.]*' "$LOG/phases_$1.log" | awk '{print $3}'; }
best=$(awk -v d="$(ms det_8192x4)" -v a="$(ms atomic_8192x4)" 'BEGIN { print (a != "" && (d == "" || a < d)) ? "atomic" : "det" }')
phases step_phases_$best ${best}_32768x1 "-b 1 -t 32768"
for f in "$BIN"/states/*.bin; do
    name=$(basename "$f" .bin)
    timeout 120 "$BIN/test_gpt_moba_cu" "$f" > "$LOG/test_$name.log" 2>&1 || status=1
    echo "test_gpt_moba_cu $name: $(tail -1 "$LOG/test_$name.log")" >> "$sum"
done
grep -h '^|' "$LOG/phases_${best}_8192x4.log" >> "$sum"
[ -n "${OUT:-}" ] && cp "$sum" "$OUT/" && tar czf "$OUT/logs.tgz" -C "$LOG" .
echo "======== summary ========"
cat "$sum"
exit $status
