#!/usr/bin/env bash
# Device script: the trainer's default dense attention on one GPU, with prebuilt binaries in BIN
# (dev/cuda/build_variants.sh: attention_dense, step_phases, eval_gpt_moba_cu): the default forward's
# check (version 16), fwd and fwd+bwd timings of versions 7 and 16 at HD 64 (T 8192, 32768) and HD 128
# (T 16384, 65536) next to PyTorch's FlashAttention-2 and cuDNN (same call), the 340M dense step per phase
# (T 8192 x 4, T 32768 x 1: tokens/s, MFU, memory), and the KV-cache decode check of eval_gpt_moba_cu
# (its prefill runs the same forward). Summary last.   usage: BIN=dir bash dev/cuda/bench_dense_default.sh
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:?BIN=dir of prebuilt binaries}
L=${OUT:-/tmp}/dense_default; mkdir -p "$L"
S=$L/summary.txt; : > "$S"
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader >> "$S"
timeout 60 "$BIN/attention_dense" 16 check > "$L/check_v16.log" 2>&1
echo "check v16: $(tail -1 "$L/check_v16.log")" >> "$S"
timeout 120 "$BIN/eval_gpt_moba_cu" check "$L/evalck" > "$L/eval_check.log" 2>&1
echo "eval_gpt_moba_cu check: $(tail -1 "$L/eval_check.log")" >> "$S"
for t in "8192 -b 4" "32768 -b 1"; do
  timeout 150 "$BIN/step_phases" -p 340M -A dense -W 0 -t $t > "$L/phases_${t%% *}.log" 2>&1
  { echo "== 340M dense step, T ${t% -b*} x ${t##* }"; grep -E "^\| attention|^\| all events|^step wall" "$L/phases_${t%% *}.log"; } >> "$S"
done
{
  for v in 7 16; do
    timeout 60 "$BIN/attention_dense" $v time 64 8192 32768
    timeout 90 "$BIN/attention_dense" $v time 128 16384 65536
  done
  PYTHONUNBUFFERED=1 timeout 100 python3 dev/cuda/attention_anchor.py 64 8192 32768
  PYTHONUNBUFFERED=1 timeout 100 python3 dev/cuda/attention_anchor.py 128 16384 65536
} 2>&1 | grep '^|' | sort -t'|' -k4,4n -k5,5n -s >> "$S"
cat "$S"
