#!/bin/bash
# Every GPU check of the project in one device call, with binaries prebuilt elsewhere (the device time
# goes to running, not compiling). Steps in priority order; a step starts only while the elapsed time is
# under $DEADLINE seconds, so a call with a hard limit still returns the most important results:
#  1. kernel checks vs the CPU reference: attention_dense versions 1-11, 13-21, attention_moba 1/4/5/6, moba_gate
#  2. dev/test/gpu/test_gpu.sh: CPU debug states -> test_gpt_moba (bf16 and fp32), GPU training, CPU<->GPU
#     checkpoints, exact resume; BENCH=1: 340M tokens/s (dense T 8192 x 4, MoBA T 32768 x 1, ...)
#  3. dev/test/gpu/test_multi_gpu.sh on the GPUs present (world 1 on a single-GPU machine; SCALING=1: its scaling table)
#  4. dev/test/gpu/test_eval_gpu.sh: KV-cache decode checks, CPU == GPU greedy tokens, 340M prefill/decode speed
#  5. the longest 340M MoBA sequence with -R 2
# $BIN holds: train_gpt_moba_cu test_gpt_moba_cu test_gpt_moba_fp32 eval_gpt_moba_cu eval_gpt_moba_fp32
#   train_single (NO_MULTI_GPU=1 build) [train_fp32 (PRECISION=FP32 build)] attention_dense attention_moba moba_gate multi_gpu_check eval report;
#   the CPU programs are rebuilt here when they do not run.
# Logs under $LOG (default $OUT/gpu_checks or /tmp/gpu_checks); summary.txt is printed last.
#   usage: BIN=dir [DEADLINE=480] [BENCH=1] [SCALING=0] [LOG=dir] bash dev/test/gpu/all_gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
BIN=$(realpath "${BIN:?BIN=dir of prebuilt binaries}")
LOG=${LOG:-${OUT:-/tmp}/gpu_checks}; DEADLINE=${DEADLINE:-480}
DENSE_VERSIONS="1 2 3 4 5 6 7 8 9 10 11 13 14 15 16 17 18 19 20 21"  # attention_dense's versions (12 is unused)
mkdir -p "$LOG"
S=$LOG/summary.txt
: > "$S"
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }
note() { echo "[$(elapsed) s] $*" | tee -a "$S"; }
in_time() { [ "$(elapsed)" -lt "$DEADLINE" ] || { note "SKIPPED (deadline): $1"; return 1; }; }
export NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee -a "$S"
make -s train_gpt_moba > /dev/null || exit 1

# ---- 1. kernels (CPU references run in parallel; the GPU parts are short)
if in_time kernels; then
  for v in $DENSE_VERSIONS; do timeout 300 "$BIN/attention_dense" $v check > "$LOG/attention_dense_$v.log" 2>&1 & done
  for v in 1 4 5 6; do timeout 300 "$BIN/attention_moba" $v check > "$LOG/attention_moba_$v.log" 2>&1 & done
  timeout 300 "$BIN/moba_gate" check > "$LOG/moba_gate.log" 2>&1 &
  wait
  for f in "$LOG"/attention_dense_*.log "$LOG"/attention_moba_*.log "$LOG"/moba_gate.log; do
    note "$(basename "$f" .log): $(tail -1 "$f")"
  done
fi

# ---- 2. the trainer against the CPU reference, training, checkpoints, 340M speed
if in_time test_gpu; then
  LOG=$LOG/test_gpu BIN=$BIN FP32=1 BENCH=${BENCH:-1} bash dev/test/gpu/test_gpu.sh > "$LOG/test_gpu.out" 2>&1
  note "test_gpu.sh:"; sed -n '/== summary ==/,$p' "$LOG/test_gpu.out" | tee -a "$S"
fi

# ---- 3. multi-GPU (world 1 on one GPU)
if in_time multi_gpu; then
  LOG=$LOG/multi_gpu BIN=$BIN SINGLE_BIN=$BIN/train_single FP32_BIN=$([ -x "$BIN/train_fp32" ] && echo "$BIN/train_fp32") SCALING=${SCALING:-0} bash dev/test/gpu/test_multi_gpu.sh > "$LOG/multi_gpu.out" 2>&1
  note "test_multi_gpu.sh:"; cat "$LOG/multi_gpu/table.txt" | tee -a "$S"
fi

# ---- 4. evaluation on the GPU
if in_time eval; then
  LOG=$LOG/eval BIN=$BIN PARTS="check traces speed" bash dev/test/gpu/test_eval_gpu.sh > "$LOG/eval.out" 2>&1
  note "dev/test/gpu/test_eval_gpu.sh:"; cat "$LOG/eval/table.txt" | tee -a "$S"
fi

# ---- 5. the longest 340M MoBA sequence
if in_time longest_moba_T; then
  W=$(mktemp -d)
  for T in 262144 196608; do
    "$BIN/train_gpt_moba_cu" -p 340M -x 3 -v 0 -s 0 -u 1 -m 1 -A moba -B 128 -K 8 -W 3 -b 1 -t $T -R 2 -o "$W/T$T" > "$LOG/moba_T$T.log" 2>&1
    line=$(grep '^step     3/3' "$LOG/moba_T$T.log" | awk -F'|' '{print $5 $6 $7 $8}')
    note "340M MoBA T $T -R 2: ${line:-failed: $(grep -m1 -i 'error\|out of memory' "$LOG/moba_T$T.log")}"
    [ -n "$line" ] && break
  done
  rm -rf "$W"
fi
note "done"
echo "================ summary ================"
cat "$S"
