#!/usr/bin/env bash
# Device script (session 4): FlashAttention-3's backward step (attention_dense versions 19, 20; kw
# flash::KW_FA3) against the default backward, with prebuilt binaries in BIN:
#   bash dev/cuda/build_variants.sh gpubin attention_dense=build/cuda/attention_dense \
#     step_phases=build/cuda/step_phases step_phases_fa3=build/cuda/step_phases:-DATTN_BWD_WGMMA_KW=12
# First the checks of 19 / 20 (then of every Hopper version: they share the per-tile code) under short
# timeouts (a new barrier scheme may hang: nothing else runs then), then fwd+bwd timings of 16 (version 7's backward), 10, 19, 20 at HD 64 and 17 / 19 at HD 128
# next to PyTorch's FlashAttention-2 and cuDNN (same call), then the 340M dense step per phase with the
# default and the KW_FA3 backward. attention_moba's checks too when BIN has it; TIME_VERSIONS: the HD-64
# versions timed; PHASES_32K=1: also the 340M step at T 32768 x 1. Summary last.
#   usage: BIN=dir bash dev/cuda/bench_fa3_bwd.sh
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:?BIN=dir of prebuilt binaries}
L=${OUT:-/tmp}/fa3_bwd; mkdir -p "$L"
S=$L/summary.txt; : > "$S"
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >> "$S"
for v in 19 21 20 5 6 7 8 9 10 11 13 14 15 16 17 18; do
  timeout 25 "$BIN/attention_dense" $v check > "$L/check_v$v.log" 2>&1
  rc=$?
  echo "check v$v (rc $rc): $(tail -1 "$L/check_v$v.log")" >> "$S"
  [ $rc = 124 ] && { grep -E "fail|rel" "$L/check_v$v.log" | tail -5 >> "$S"; cat "$S"; exit 1; }
done
# ALT: a second attention_dense build (a variant of the TMA kernels): its checks of the TMA versions, its timings
if [ -n "${ALT:-}" ]; then
  for v in 19 21 9 10 11 20; do echo "$ALT check v$v: $(timeout 25 "$BIN/$ALT" $v check 2>&1 | tail -1)" >> "$S"; done
fi
if [ -x "$BIN/attention_moba" ]; then
  for v in 1 4 5 6; do timeout 150 "$BIN/attention_moba" $v check > "$L/moba_v$v.log" 2>&1 & done
  wait
  for v in 1 4 5 6; do echo "attention_moba v$v: $(tail -1 "$L/moba_v$v.log")" >> "$S"; done
fi
{
  for v in ${TIME_VERSIONS:-16 19 21 20}; do timeout 60 "$BIN/attention_dense" $v time 64 8192 32768; done
  [ -n "${ALT:-}" ] && for v in 19 21; do timeout 60 "$BIN/$ALT" $v time 64 8192 32768 | sed "s/ours-v$v/ours-v$v-$ALT/"; done
  [ -n "${ALT:-}" ] && timeout 90 "$BIN/$ALT" 19 time 128 16384 65536 | sed "s/ours-v19/ours-v19-$ALT/"
  for v in 17; do timeout 60 "$BIN/attention_dense" $v time 128 16384 65536; done
  PYTHONUNBUFFERED=1 timeout 100 python3 dev/cuda/attention_anchor.py 64 8192 32768
  PYTHONUNBUFFERED=1 timeout 100 python3 dev/cuda/attention_anchor.py 128 16384 65536
} 2>&1 | grep '^|' | sort -t'|' -k4,4n -k5,5n -s >> "$S"
for s in step_phases step_phases_fa3 step_phases_fa3b ${ALT_PHASES:-}; do
  [ -x "$BIN/$s" ] || continue
  for t in "8192 -b 4" ${PHASES_32K:+"32768 -b 1"}; do
    timeout 150 "$BIN/$s" -p 340M -A dense -W 0 -t $t > "$L/${s}_${t%% *}.log" 2>&1
    { echo "== $s 340M dense step, T ${t% -b*} x ${t##* }"; grep -E "^\| attention|^\| all events|^step wall" "$L/${s}_${t%% *}.log"; } >> "$S"
  done
done
cat "$S"
