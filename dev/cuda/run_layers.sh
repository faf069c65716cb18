#!/bin/bash
# Builds and runs every layer kernel dev program on the GPU, in bf16 (the product's precision) and fp32
# (-DENABLE_FP32, as `make PRECISION=FP32`), then prints one table of timings and worst relative errors.
#   bash dev/cuda/run_layers.sh            (from the repository root, on a machine with a GPU)
# Logs go to $OUT/layers_<name>_<precision>.log when OUT is set (the device tool's output folder).
set -u
cd "$(dirname "$0")/../.."
LAYERS="embedding rmsnorm swiglu classifier adamw global_norm matmul qkv_prep"
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
FLAGS="-O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -lineinfo -Xcompiler -Wall,-Wno-unused-function -I."
LOGDIR=${OUT:-build/cuda/logs}
mkdir -p build/cuda/fp32 "$LOGDIR"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader

pids=""
for name in $LAYERS; do
    $NVCC $FLAGS -o build/cuda/$name dev/cuda/$name.cu -lcublas -lcublasLt &
    pids="$pids $!"
    $NVCC $FLAGS -DENABLE_FP32 -o build/cuda/fp32/$name dev/cuda/$name.cu -lcublas -lcublasLt &
    pids="$pids $!"
done
for p in $pids; do wait $p || { echo "build failed"; exit 1; }; done

failed=0
table=""
for prec in bf16 fp32; do
    for name in $LAYERS; do
        bin=build/cuda/$name
        [ $prec = fp32 ] && bin=build/cuda/fp32/$name
        log="$LOGDIR/layers_${name}_${prec}.log"
        echo "=== $name ($prec)"
        if ! $bin > "$log" 2>&1; then failed=$((failed + 1)); fi
        grep -v '^TABLE' "$log"
        row=$(grep '^TABLE' "$log" || echo "TABLE | $name | (crashed: see $log) |")
        table="$table${row#TABLE } $prec |"$'\n'
    done
done

echo
echo "| kernel | shape | fwd ms | fwd rate | bwd ms | bwd rate | unit | max rel err | check | precision |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf "%s" "$table"
echo "failed programs: $failed"
exit $failed
