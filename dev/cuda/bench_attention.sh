#!/usr/bin/env bash
# Device script for the dense attention kernels (llmc/flash_attention.cuh; the versions of
# dev/cuda/attention_dense_versions.cuh): CPU-reference checks of each version (and of the simple kernels
# on MoBA selections: attention_moba 1), then fwd and fwd+bwd timings next to PyTorch's FlashAttention-2
# and cuDNN (dev/cuda/attention_anchor.py, same shapes, same call), then optionally the 340M dense step per
# phase (step_phases). Summary table last. MoBA: bench_moba_attention.sh; sliding window:
# dev/test/gpu/paper_model_gpu.sh.
# Binaries prebuilt in BIN (e.g. dev/cuda/build_variants.sh; the device's time goes to running) or built
# here with make (BIN unset).
#   mode check:   checks only
#   mode time:    checks, then timings of the versions that passed (a failed or hung check skips its timings)
#   mode step:    time + the 340M dense step per phase (T 8192 x 4, T 32768 x 1; BIN needs step_phases)
#   mode profile: checks, then per-kernel device times (Nsight Compute) of each version at HD 64 T 8192
# usage: [BIN=dir] [VERSIONS="16 21"] [HD64_T="8192 32768"] [HD128_T="16384 65536"] [TIMEOUT=s]
#        bash dev/cuda/bench_attention.sh [check|time|step|profile]     (logs under $OUT/attention or /tmp/attention)
set -u
cd "$(dirname "$0")/../.."
mode=${1:-time}
VERSIONS=${VERSIONS:-1 2 3 4 5 6 7 8 9 10 11 13 14 15 16 17 18 19 20 21}  # (12 is unused)
HD64_T=${HD64_T:-8192 32768}; HD128_T=${HD128_T:-16384 65536}; TIMEOUT=${TIMEOUT:-120}
L=${OUT:-/tmp}/attention; mkdir -p "$L"
S=$L/summary.txt; : > "$S"
if [ -z "${BIN:-}" ]; then
  make -j4 build/cuda/attention_dense build/cuda/attention_moba $([ "$mode" = step ] && echo build/cuda/step_phases) > "$L/build.log" 2>&1 \
    || { tail -20 "$L/build.log"; exit 1; }
  BIN=build/cuda
fi
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader | tee -a "$S"

status=0; passed=""
for v in $VERSIONS; do
  timeout "$TIMEOUT" "$BIN/attention_dense" $v check > "$L/check_v$v.log" 2>&1 && passed="$passed $v" || status=1
  echo "check v$v: $(tail -1 "$L/check_v$v.log")" | tee -a "$S"
done
if [ -x "$BIN/attention_moba" ]; then
  timeout "$TIMEOUT" "$BIN/attention_moba" 1 check > "$L/check_moba_v1.log" 2>&1 || status=1
  echo "check attention_moba v1: $(tail -1 "$L/check_moba_v1.log")" | tee -a "$S"
fi
[ "$mode" = check ] && exit $status

if [ "$mode" = profile ]; then
  for v in $passed; do
    [ "$v" = 1 ] && continue
    echo "== version $v, HD 64, T 8192 (B 2, 32 heads): mean duration per kernel"
    ncu --clock-control none --metrics gpu__time_duration.sum --launch-skip 4 --launch-count 24 \
        --print-summary per-kernel "$BIN/attention_dense" $v time 64 8192 2>&1 | grep -E "kernel|gpu__time_duration"
  done | tee -a "$S"
  exit $status
fi

{
  for v in $passed; do
    [ "$v" = 1 ] && continue  # (the simple kernels take minutes at these lengths)
    timeout "$TIMEOUT" "$BIN/attention_dense" $v time 64 $HD64_T
    timeout "$TIMEOUT" "$BIN/attention_dense" $v time 128 $HD128_T
  done
  PYTHONUNBUFFERED=1 timeout "$TIMEOUT" python3 dev/cuda/attention_anchor.py 64 $HD64_T
  PYTHONUNBUFFERED=1 timeout "$TIMEOUT" python3 dev/cuda/attention_anchor.py 128 $HD128_T
} > "$L/time.log" 2>&1
{
  echo "| impl | attn | HD | T | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  grep '^|' "$L/time.log" | sort -t'|' -k4,4n -k5,5n -s
} | tee -a "$S"

if [ "$mode" = step ]; then
  for t in "8192 -b 4" "32768 -b 1"; do
    timeout 150 "$BIN/step_phases" -p 340M -A dense -W 0 -t $t > "$L/phases_${t%% *}.log" 2>&1
    { echo "== 340M dense step, T ${t% -b*} x ${t##* }"; grep -E "^\| attention|^\| all events|^step wall" "$L/phases_${t%% *}.log"; } | tee -a "$S"
  done
fi
exit $status
