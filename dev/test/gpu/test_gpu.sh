#!/bin/bash
# GPU checks of the CUDA trainer, in one device call (run from the repo root on a machine with a GPU):
#  1. build the CPU reference and the CUDA trainer + test (bf16, and the fp32 test when FP32=1);
#     prebuilt binaries in $BIN (train_gpt_moba_cu, test_gpt_moba_cu, test_gpt_moba_fp32) are used instead
#  2. CPU debug states of the paper layout (sliding-window RoPE layers + global NoPE layers: dense; MoBA
#     B128 K8 kconv3 at T 2048; MoBA B64 with a partial last block; kconv5; windows smaller than a tile and
#     not a multiple of one; T < 128; global RoPE) and of the all-global layout (dense, MoBA, MoBA k=1);
#     test_gpt_moba_cu on each
#  3. a 30-step GPU training run on the synthetic corpus (loss must fall); GPU checkpoint -> CPU eval;
#     CPU checkpoint -> GPU resume; GPU resume of a GPU checkpoint is exact (-z 1)
#  4. with BENCH=1: 340M paper layout at T 8192 B 4 (dense; MoBA B128 K8 kconv3), 1B paper layout T 8192
#     (dense, MoBA); with ANCHOR=1 the PyTorch end-to-end anchor (dev/bench/e2e_anchor.py, the same paper
#     layout: FlexAttention sliding window + cuDNN) in the same call
# Logs go to $LOG (default /tmp/moba_gpu); a table of results is printed last (also $LOG/table.txt).
#   usage: [BIN=dir] [FP32=1] [BENCH=1] [ANCHOR=1] [CHECKS=0] bash dev/test/gpu/test_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
LOG=${LOG:-/tmp/moba_gpu}
BIN=${BIN:-}
mkdir -p "$LOG"
W=$(mktemp -d /tmp/moba_gpu_work.XXXX)
TABLE="$LOG/table.txt"
: > "$TABLE"
row() { printf '%-34s %s\n' "$1" "$2" | tee -a "$TABLE"; }

# -I. for the manual fp32 build below (the Makefile rules have it in NVCC_FLAGS)
NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc) -I."
make -s train_gpt_moba || exit 1
if [ -n "$BIN" ]; then
  cp "$BIN"/train_gpt_moba_cu "$BIN"/test_gpt_moba_cu . || exit 1
  FP32_TEST=""
  [ -x "$BIN/test_gpt_moba_fp32" ] && FP32_TEST="$BIN/test_gpt_moba_fp32"
else
  make -s -j2 train_gpt_moba_cu test_gpt_moba_cu NVCC="$NVCC" || exit 1
  FP32_TEST=""
  if [ "${FP32:-0}" = 1 ]; then
    mkdir -p build && $NVCC -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -DENABLE_FP32 \
      -o build/test_gpt_moba_fp32 test_gpt_moba.cu -lcublas -lcublasLt && FP32_TEST=build/test_gpt_moba_fp32
  fi
fi
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv,noheader | tee "$LOG/device.txt"

# CHECKS=0 skips steps 2 and 3 (a benchmark-only call)
if [ "${CHECKS:-1}" = 1 ]; then
# ---- 2. debug states and the GPU test on each
declare -A CASES=(
  [paper_dense]="-A dense -b 2 -t 256"
  [paper_dense_w24]="-A dense -w 24 -b 2 -t 256"
  [paper_moba_b128_k8_kconv3]="-A moba -B 128 -K 8 -W 3 -b 1 -t 2048"
  [paper_moba_b128_k8_w100]="-A moba -B 128 -K 8 -W 3 -w 100 -b 1 -t 1024"
  [paper_moba_partial]="-A moba -B 64 -K 2 -W 3 -b 3 -t 200"
  [paper_moba_kconv5]="-A moba -B 32 -K 3 -W 5 -b 2 -t 256"
  [paper_short_t100]="-A moba -B 32 -K 2 -W 3 -w 40 -b 4 -t 100"
  [paper_hybrid_n2]="-A moba -B 32 -K 3 -W 5 -N 2 -b 4 -t 256"
  [paper_rope]="-A moba -B 32 -K 3 -W 3 -E rope -b 2 -t 256"
  [global_dense]="-Y global -A dense -W 0 -b 2 -t 256"
  [global_moba_b32_k3]="-Y global -A moba -B 32 -K 3 -W 3 -b 2 -t 256"
  [global_moba_k1]="-Y global -A moba -B 32 -K 1 -W 0 -b 2 -t 256"
)
for name in paper_dense paper_dense_w24 paper_moba_b128_k8_kconv3 paper_moba_b128_k8_w100 paper_moba_partial paper_moba_kconv5 \
            paper_short_t100 paper_hybrid_n2 paper_rope global_dense global_moba_b32_k3 global_moba_k1; do
  ./train_gpt_moba -p tiny -V 512 ${CASES[$name]} -D "$W/$name.bin" > "$LOG/cpu_$name.log" 2>&1 \
    || { row "state $name" "CPU debug state FAILED"; continue; }
  ./test_gpt_moba_cu "$W/$name.bin" > "$LOG/test_$name.log" 2>&1
  row "test bf16 $name" "$(tail -1 "$LOG/test_$name.log")"
  if [ -n "$FP32_TEST" ]; then
    "$FP32_TEST" "$W/$name.bin" > "$LOG/test_fp32_$name.log" 2>&1
    row "test fp32 $name" "$(tail -1 "$LOG/test_fp32_$name.log")"
  fi
done

# ---- 3. training, checkpoints across CPU and GPU
TR="-p tiny -b 8 -t 256 -l 3e-3 -u 5"
./train_gpt_moba_cu $TR -x 30 -v 10 -s 16 -o "$W/gpu" > "$LOG/train_gpu.log" 2>&1
first=$(grep -m1 "train_loss" "$W/gpu/log.txt" | awk '{print $4}')
last=$(grep "train_loss" "$W/gpu/log.txt" | tail -1 | awk '{print $4}')
fell=$(python3 -c "print('yes' if float('$last') < float('$first') - 0.5 else 'NO')" 2>/dev/null || echo NO)
row "GPU 30-step training" "loss $first -> $last, fell by > 0.5: $fell"
gpu_val=$(grep "^final" "$LOG/train_gpu.log" | awk '{print $5}')
./train_gpt_moba $TR -x 0 -s 0 -e "$W/gpu/ckpt_00000030.bin" -o "$W/cpu_eval" > "$LOG/cpu_eval.log" 2>&1
cpu_val=$(grep "^final" "$LOG/cpu_eval.log" | awk '{print $5}')
row "GPU ckpt -> CPU eval" "val loss gpu $gpu_val cpu $cpu_val"

./train_gpt_moba $TR -x 8 -v 0 -n 4 -s 0 -o "$W/cpu2gpu" > "$LOG/cpu_train.log" 2>&1
cpu_l8=$(grep "^step 8 train_loss" "$W/cpu2gpu/log.txt" | awk '{print $4}')
rm -f "$W/cpu2gpu/ckpt_00000008.bin"  # resume from the CPU's step-4 checkpoint
./train_gpt_moba_cu $TR -x 8 -v 0 -s 0 -y 1 -o "$W/cpu2gpu" > "$LOG/cpu2gpu.log" 2>&1
cpu_l8_gpu=$(grep "^step 8 train_loss" "$W/cpu2gpu/log.txt" | tail -1 | awk '{print $4}')
row "CPU ckpt(4) -> GPU resume" "$(grep -c 'resumed from' "$LOG/cpu2gpu.log") resume; step 8 loss cpu $cpu_l8 gpu $cpu_l8_gpu"

./train_gpt_moba_cu $TR -x 20 -v 0 -n 10 -Z 5 -z 1 -s 0 -o "$W/exactA" > "$LOG/exactA.log" 2>&1
mkdir -p "$W/exactB" && cp "$W/exactA/ckpt_00000010.bin" "$W/exactB/"
./train_gpt_moba_cu $TR -x 20 -v 0 -z 1 -s 0 -y 1 -o "$W/exactB" > "$LOG/exactB.log" 2>&1
a20=$(grep "^step 20 train_loss" "$W/exactA/log.txt" | awk '{print $4, $8}')
b20=$(grep "^step 20 train_loss" "$W/exactB/log.txt" | awk '{print $4, $8}')
row "GPU resume exact (-z 1)" "step 20 loss,norm A: $a20 | B: $b20 | $([ -n "$a20" ] && [ "$a20" = "$b20" ] && echo IDENTICAL || echo DIFFERENT)"
./train_gpt_moba_cu $TR -x 5 -v 0 -s 0 -z 1 -o "$W/accum1" > "$LOG/accum1.log" 2>&1
./train_gpt_moba_cu -p tiny -b 4 -t 256 -d 2048 -l 3e-3 -u 5 -x 5 -v 0 -s 0 -z 1 -o "$W/accum2" > "$LOG/accum2.log" 2>&1
row "grad accum: b8 vs b4 x 2" "step 1,5 loss: $(grep -E '^step (1|5) train' "$W/accum1/log.txt" | awk '{printf "%s ", $4}')| $(grep -E '^step (1|5) train' "$W/accum2/log.txt" | awk '{printf "%s ", $4}')"
./train_gpt_moba_cu -p tiny -A moba -B 16 > "$LOG/err.log" 2>&1; row "error: block 16" "exit $? $(head -c 120 "$LOG/err.log")"
./train_gpt_moba_cu -p test > "$LOG/err.log" 2>&1; row "error: test preset (HD 8)" "exit $? $(head -c 120 "$LOG/err.log")"
fi

# ---- 4. benchmarks (340M): tokens/s, MFU, memory from the trainer's own step lines
if [ "${BENCH:-0}" = 1 ]; then
  bench() {  # name, flags (the preset first)
    ./train_gpt_moba_cu -x 8 -v 0 -s 0 -u 1 -m 1 -o "$W/bench_$1" $2 > "$LOG/bench_$1.log" 2>&1
    rm -f "$W/bench_$1"/ckpt_*.bin
    row "bench $1" "$(grep '^step     8/8' "$LOG/bench_$1.log" | awk -F'|' '{print $5 $6 $7 $8}') $(grep -o 'error.*' "$LOG/bench_$1.log" | head -1)"
  }
  bench 340M_paper_dense_T8192_B4 "-p 340M -A dense -b 4 -t 8192"
  bench 340M_paper_moba_B128K8_kconv3_T8192_B4 "-p 340M -A moba -B 128 -K 8 -W 3 -b 4 -t 8192"
  bench 1B_paper_dense_T8192_B2 "-p 1B -A dense -b 2 -t 8192"
  bench 1B_paper_moba_B128K8_kconv3_T8192_B2 "-p 1B -A moba -b 2 -t 8192"
fi
if [ "${ANCHOR:-0}" = 1 ]; then  # PyTorch end-to-end anchor, same device and call
  PYTHONUNBUFFERED=1 timeout 300 python3 dev/bench/e2e_anchor.py 8192 4 10 > "$LOG/anchor.log" 2>&1
  row "anchor torch.compile 8192x4" "$(grep '^|' "$LOG/anchor.log" | tail -1)$(tail -1 "$LOG/anchor.log" | grep -i error)"
fi
rm -rf "$W"
echo "======== summary ========"
cat "$TABLE"
if [ "${EVAL:-0}" = 1 ]; then bash dev/test/gpu/test_eval_gpu.sh; fi  # GPU KV-cache decode checks, CPU == GPU greedy, 340M decode speed, GPU-trained demo
