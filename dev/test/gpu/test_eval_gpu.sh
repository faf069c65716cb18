#!/bin/bash
# The evaluation's GPU measurements in one device call (run from the repo root on a machine with a GPU):
#  1. eval_gpt_moba_cu check (bf16 and fp32 builds): KV-cache decoding vs full recompute on small random
#     models (paper layout: dense, MoBA+kconv3, hybrid+kconv5 window 24; global layout: dense+kconv3, MoBA),
#     poisoned caches
#  2. CPU vs GPU greedy tokens on those models (build/eval -G vs eval_gpt_moba_cu -G, compare_greedy.py)
#  3. 340M speed: prefill tokens/s at 32K, decode tokens/s at context 32K (batch 1 and 8), dense vs MoBA
#  4. demo: tiny dense and MoBA (kconv 3, same seed) trained on the GPU on the synthetic recall corpus,
#     evaluated on the synthetic needle tasks, side-by-side report in $OUT_DIR/eval_demo
# PARTS (default "check traces speed demo") picks the steps. Prebuilt binaries in $BIN (eval_gpt_moba_cu, eval_gpt_moba_fp32, train_gpt_moba_cu; eval and report
# if they run here) are used when given, else built here. Logs in $LOG; a summary table is printed last.
#   usage: [BIN=dir] [LOG=dir] [OUT_DIR=dir] [STEPS=1500] [DEMO_B=16] [PARTS="..."] bash dev/test/gpu/test_eval_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../../.."
LOG=${LOG:-/tmp/eval_gpu}; OUT_DIR=${OUT_DIR:-$LOG}; BIN=${BIN:-}; STEPS=${STEPS:-1500}; DEMO_B=${DEMO_B:-16}
PARTS=${PARTS:-check traces speed demo}
want() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$LOG" "$OUT_DIR"
W=$(mktemp -d /tmp/eval_gpu_work.XXXX)
TABLE="$LOG/table.txt"
: > "$TABLE"
row() { printf '%-28s %s\n' "$1" "$2" | tee -a "$TABLE"; }
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc) -I."
mkdir -p build
if [ -n "$BIN" ]; then
  cp "$BIN"/eval_gpt_moba_cu "$BIN"/train_gpt_moba_cu . && cp "$BIN"/eval_gpt_moba_fp32 build/ || exit 1
  cp "$BIN"/eval "$BIN"/report build/ 2>/dev/null  # CPU programs too, when they run here
else
  make -s -j3 eval_gpt_moba_cu train_gpt_moba_cu NVCC="$NVCC" || exit 1
  $NVCC -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -DENABLE_FP32 -o build/eval_gpt_moba_fp32 eval_gpt_moba.cu -lcublas -lcublasLt || exit 1
fi
{ build/eval -h && build/report -h; } > /dev/null 2>&1 || make -s -j4 build/eval build/report || exit 1
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv,noheader | tee "$LOG/device.txt"
stamp built

# ---- 1. decode vs recompute (the traces use its checkpoints)
want check || want traces && timeout 120 ./eval_gpt_moba_cu check "$W/ck" > "$LOG/check_bf16.log" 2>&1
row "check bf16" "$(tail -1 "$LOG/check_bf16.log")"
want check || want traces && timeout 120 build/eval_gpt_moba_fp32 check "$W/ck32" > "$LOG/check_fp32.log" 2>&1
row "check fp32" "$(tail -1 "$LOG/check_fp32.log")"
stamp checks

# ---- 2. CPU vs GPU greedy tokens (2 random prompts of 128 tokens, 128 greedy tokens each)
for name in paper_dense paper_moba_kconv3 paper_hybrid_kconv5_w24 global_dense_kconv3 global_moba; do
  want traces || break
  ck="$W/ck32/$name.bin"
  [ -f "$ck" ] || { row "greedy $name" "no checkpoint"; continue; }
  build/eval -c "$ck" -o "$W/cpu_$name" -G "$W/$name.cpu.txt" -l 256 -n 2 > "$LOG/trace_cpu_$name.log" 2>&1 &
  timeout 60 build/eval_gpt_moba_fp32 -c "$ck" -o "$W/g32_$name" -G "$W/$name.fp32.txt" -l 256 -n 2 > "$LOG/trace_fp32_$name.log" 2>&1
  timeout 60 ./eval_gpt_moba_cu -c "$ck" -o "$W/g16_$name" -G "$W/$name.bf16.txt" -l 256 -n 2 > "$LOG/trace_bf16_$name.log" 2>&1
  wait
  row "greedy fp32 $name" "$(python3 dev/eval/compare_greedy.py "CPU vs GPU fp32" "$W/$name.cpu.txt" "$W/$name.fp32.txt" 2>&1)"
  row "greedy bf16 $name" "$(python3 dev/eval/compare_greedy.py "CPU vs GPU bf16" "$W/$name.cpu.txt" "$W/$name.bf16.txt" 2>&1)"
done
stamp traces

# ---- 3. 340M speed
if want speed; then
  timeout 150 ./eval_gpt_moba_cu speed 32768 32 > "$LOG/speed.log" 2>&1
  row "speed" "exit $?"
fi
stamp speed

# ---- 4. demo: tiny dense vs MoBA on the synthetic recall corpus, trained here
if want demo; then
  runs=runs/eval_demo_gpu  # relative: the report names the runs by these paths
  TR="-p tiny -b $DEMO_B -t 512 -x $STEPS -v 200 -m 4 -s 0 -r 1337"
  timeout 90 ./train_gpt_moba_cu $TR -A dense -W 3 -o "$runs/dense" > "$LOG/train_dense.log" 2>&1
  timeout 90 ./train_gpt_moba_cu $TR -A moba -B 32 -K 3 -W 3 -o "$runs/moba" > "$LOG/train_moba.log" 2>&1
  for name in dense moba; do
    row "demo train $name" "$(grep '^final' "$LOG/train_$name.log")"
    ck=$(ls "$runs/$name"/ckpt_*.bin 2>/dev/null | sort | tail -n 1)
    [ -n "$ck" ] || continue
    timeout 90 ./eval_gpt_moba_cu -c "$ck" -j 'data/synthetic/val_*.bin' -t 512 -b 4 -m 16 -P 8 -s all -l 128,256,512,1024 -n 40 > "$LOG/eval_$name.log" 2>&1
    row "demo eval $name" "$(grep -c '^synthetic' "$LOG/eval_$name.log") cells, $(tail -1 "$LOG/eval_$name.log")"
  done
  build/report -o "$OUT_DIR/eval_demo" "$runs/dense" "$runs/moba" > "$LOG/report.log" 2>&1
  row "demo report" "exit $? $(tail -1 "$LOG/report.log")"
  for name in dense moba; do
    mkdir -p "$OUT_DIR/eval_demo/runs/$name"
    cp "$runs/$name"/log.txt "$runs/$name"/eval.json "$runs/$name"/eval.md "$OUT_DIR/eval_demo/runs/$name/" 2>/dev/null
  done
fi
stamp demo
rm -rf "$W"
echo "======== speed ========"
grep -s '^|' "$LOG/speed.log"
echo "======== summary ========"
cat "$TABLE"
