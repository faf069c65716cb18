#!/usr/bin/env bash
# One device call for the FlashAttention-3-style Hopper kernels (attention_fwd_hopper.cuh, attention_bwd_hopper.cuh)
# on a machine of 2 GPUs, binaries prebuilt in BIN (dev/cuda/build_variants.sh), the two halves in parallel:
#  GPU 0: bench_attention_fwd.sh (checks of versions 13-16, timings next to FA2 / cuDNN); if version 16
#         passed: test_gpt_moba built with -DATTN_FWD_HOPPER=1 (BIN/test_fwdh) on BIN/states/dense.bin,
#         dense_kconv3.bin and BIN/hybrid_n2.bin, and the 340M dense step (T 8192 x 4) per phase with the
#         default forward (BIN/step_phases_kw1) and with it (BIN/step_phases_fwdh)
#  GPU 1: bench_attention_bwd.sh (checks of versions 7, 9-11, timings, anchors), then scripts/test_gpu.sh
#         (test_gpt_moba on six CPU states, bf16 and fp32; training; checkpoints) on the default build
# usage: BIN=dir bash dev/cuda/bench_hopper_attention.sh   (logs under $OUT; summaries printed last)
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:?BIN=dir of prebuilt binaries}
OUT=${OUT:-/tmp/hopper_attention}
mkdir -p "$OUT/fwd" "$OUT/bwd"
(
  export CUDA_VISIBLE_DEVICES=0
  OUT=$OUT/fwd BIN=$BIN bash dev/cuda/bench_attention_fwd.sh > "$OUT/fwd.txt" 2>&1
  if grep -q "^version 16 check: rc 0" "$OUT/fwd.txt"; then
    for st in "$BIN/states/dense.bin" "$BIN/states/dense_kconv3.bin" "$BIN/hybrid_n2.bin"; do
      echo "test_gpt_moba -DATTN_FWD_HOPPER=1 $(basename "$st"): $(timeout 60 "$BIN/test_fwdh" "$st" 2>&1 | tail -1)"
    done
    for v in kw1 fwdh; do
      echo "== step_phases_$v, 340M dense T 8192 x 4"
      timeout 120 "$BIN/step_phases_$v" -p 340M -A dense -W 0 -b 4 -t 8192 2>&1 | grep -E "^\| attention|^\| all events|^step wall|error"
    done
  fi > "$OUT/fwd_trainer.txt" 2>&1
) &
(
  export CUDA_VISIBLE_DEVICES=1
  OUT=$OUT/bwd BIN=$BIN NCU="" DEADLINE=150 bash dev/cuda/bench_attention_bwd.sh > "$OUT/bwd.txt" 2>&1
  LOG=$OUT/gpu BIN=$BIN bash scripts/test_gpu.sh > "$OUT/test_gpu.txt" 2>&1
) &
wait
echo "==== GPU 0: forward (versions 13-16)"; tail -32 "$OUT/fwd.txt"; cat "$OUT/fwd_trainer.txt"
echo "==== GPU 1: backward (versions 9-11)"; cat "$OUT/bwd/summary.txt"; grep '^|' "$OUT/bwd.txt"
echo "==== GPU 1: scripts/test_gpu.sh"; cat "$OUT/gpu/table.txt"
