#!/bin/bash
# MoBA gate on a GPU: build both precisions, check both against the CPU reference, then time the bf16
# build (timing table printed last). Run from the repository root: bash dev/cuda/bench_moba_gate.sh
set -euo pipefail
make build/cuda/moba_gate
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
$NVCC -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -lineinfo -DENABLE_FP32 -I. \
    -o build/cuda/moba_gate_fp32 dev/cuda/moba_gate.cu
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
echo "== fp32 build: checks =="
build/cuda/moba_gate_fp32 check
echo "== bf16 build: checks, then bench =="
build/cuda/moba_gate
