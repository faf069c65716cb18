#!/bin/bash
# MoBA gate on a GPU in one call: build both precisions (in parallel), check both against the CPU
# reference (fp32 build: v1, v2; bf16 build: v1, v2, v3), then time v2 and v3 side by side in the bf16
# build at 8K..512K (table printed last). Run from the repository root: bash dev/cuda/bench_moba_gate.sh
set -euo pipefail
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
mkdir -p build/cuda
make build/cuda/moba_gate & bf16=$!
$NVCC -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -lineinfo -DENABLE_FP32 -I. \
    -o build/cuda/moba_gate_fp32 dev/cuda/moba_gate.cu & fp32=$!
wait $bf16; wait $fp32
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
echo "== fp32 build: checks =="
build/cuda/moba_gate_fp32 check
echo "== bf16 build: checks, then bench =="
build/cuda/moba_gate
