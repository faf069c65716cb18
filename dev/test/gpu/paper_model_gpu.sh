#!/bin/bash
# The paper's model (sliding-window RoPE layers + global NoPE dense / MoBA layers, kconv k + SiLU(conv(k)))
# on one GPU, in one or two device calls from the repo root. PARTS picks the steps (default "checks eval bench"):
#   checks: build; qkv_prep (kconv + RoPE / NoPE), the classifier and attention_swa (sliding window) against
#           their CPU references; the dense and MoBA attention checks (kernels that share the tile steps);
#           dev/test/gpu/test_gpu.sh (CPU debug states of both layouts -> test_gpt_moba_cu, training, CPU <-> GPU
#           checkpoints, exact resume)
#   eval:   dev/test/gpu/test_eval_gpu.sh decode checks (KV cache vs recompute, CPU == GPU greedy tokens)
#   bench:  attention_swa timing with the FlexAttention / cuDNN anchor (dev/cuda/swa_anchor.py) in the same
#           call; the 340M dense step per phase (build/cuda/step_phases); the 340M paper layout (dense and MoBA
#           128/8 kconv3) and 1B at T 8192 through test_gpu.sh BENCH=1 ANCHOR=1 (PyTorch end-to-end anchor,
#           dev/bench/e2e_anchor.py)
# Logs under $LOG (default $OUT/paper or /tmp/paper); the summary table is printed last.
#   usage: [PARTS="checks bench"] [LOG=dir] bash dev/test/gpu/paper_model_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
LOG=${LOG:-${OUT:-/tmp}/paper}; PARTS=${PARTS:-checks eval bench}
want() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$LOG"
S=$LOG/summary.txt
: > "$S"
t0=$(date +%s)
note() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$S"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee -a "$S"
export PATH=$PATH:/usr/local/cuda/bin
make -j16 train_gpt_moba train_gpt_moba_cu test_gpt_moba_cu eval_gpt_moba_cu build/cuda/qkv_prep build/cuda/attention_swa \
  build/cuda/attention_dense build/cuda/attention_moba build/cuda/classifier build/cuda/step_phases build/eval build/report \
  > "$LOG/build.log" 2>&1 || { tail -40 "$LOG/build.log"; exit 1; }
note "built"

if want checks; then
  build/cuda/qkv_prep > "$LOG/qkv_prep.log" 2>&1; note "qkv_prep: exit $? $(grep -c FAIL "$LOG/qkv_prep.log") FAIL lines"
  build/cuda/classifier > "$LOG/classifier.log" 2>&1; note "classifier: exit $? $(grep -c FAIL "$LOG/classifier.log") FAIL lines"
  build/cuda/attention_swa check > "$LOG/swa_check.log" 2>&1; note "attention_swa check: $(tail -1 "$LOG/swa_check.log")"
  for v in 16 19 20 21 7; do
    timeout 200 build/cuda/attention_dense $v check > "$LOG/attention_dense_$v.log" 2>&1 &
  done
  for v in 4 5 6; do timeout 200 build/cuda/attention_moba $v check > "$LOG/attention_moba_$v.log" 2>&1 & done
  wait
  for f in "$LOG"/attention_dense_*.log "$LOG"/attention_moba_*.log; do note "$(basename "$f" .log): $(tail -1 "$f")"; done
  LOG=$LOG/test_gpu BIN= bash dev/test/gpu/test_gpu.sh > "$LOG/test_gpu.out" 2>&1
  note "test_gpu.sh:"; sed -n '/== summary ==/,$p' "$LOG/test_gpu.out" | tee -a "$S"
fi

if want eval; then
  mkdir -p gpubin && cp eval_gpt_moba_cu train_gpt_moba_cu build/eval build/report gpubin/ && \
    nvcc -O3 -std=c++17 -I. -gencode=arch=compute_90a,code=sm_90a -DENABLE_FP32 -o gpubin/eval_gpt_moba_fp32 eval_gpt_moba.cu -lcublas -lcublasLt
  LOG=$LOG/eval BIN=gpubin PARTS="check traces" bash dev/test/gpu/test_eval_gpu.sh > "$LOG/eval.out" 2>&1
  note "dev/test/gpu/test_eval_gpu.sh:"; cat "$LOG/eval/table.txt" | tee -a "$S"
fi

if want bench; then
  build/cuda/attention_swa time > "$LOG/swa_time.log" 2>&1
  PYTHONUNBUFFERED=1 timeout 240 python3 dev/cuda/swa_anchor.py > "$LOG/swa_anchor.log" 2>&1
  note "sliding window 256 vs anchors (B 8, 16 heads, HD 64, T 8192):"
  grep '^|' "$LOG/swa_time.log" "$LOG/swa_anchor.log" | sed 's/^[^|]*|/|/' | tee -a "$S"
  tail -2 "$LOG/swa_anchor.log" | grep -i error | tee -a "$S"
  build/cuda/step_phases -p 340M -A dense -b 4 -t 8192 > "$LOG/step_phases.log" 2>&1
  note "340M dense step per phase:"; grep -E '^\||^step wall' "$LOG/step_phases.log" | tee -a "$S"
  LOG=$LOG/bench BIN= CHECKS=0 BENCH=1 ANCHOR=1 bash dev/test/gpu/test_gpu.sh > "$LOG/bench.out" 2>&1
  note "340M / 1B paper layout:"; grep -E '^(bench|anchor)' "$LOG/bench/table.txt" | tee -a "$S"
fi
grep -h "FAIL" "$LOG"/test_gpu/test_*.log "$LOG"/swa_check.log "$LOG"/qkv_prep.log "$LOG"/classifier.log 2>/dev/null | head -20 | tee -a "$S"
tar -czf "${OUT:-/tmp}/paper_logs.tgz" -C "$LOG" . 2>/dev/null
echo "======== summary ========"
cat "$S"
