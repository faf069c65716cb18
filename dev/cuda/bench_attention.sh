#!/usr/bin/env bash
# Device script for the dense attention kernels: build, CPU-reference checks of every version (and of the
# simple kernels on MoBA selections: attention_moba 1), then timings of ours next to PyTorch's
# FlashAttention-2 and cuDNN (same shapes, same call), table last. MoBA timings: bench_moba_attention.sh.
# usage: bash dev/cuda/bench_attention.sh [check|quick|full|profile]   (logs to $OUT/attention.log when OUT is set)
# profile: after the checks, per-kernel device times (Nsight Compute, clocks as found) of the HD 64 T 8192
# backward variants, to split a version's time between its kernels.
set -u
cd "$(dirname "$0")/../.."
mode=${1:-full}
log=${OUT:-/tmp}/attention.log
table=$(mktemp)
make -j4 build/cuda/attention_dense build/cuda/attention_moba >/dev/null || exit 1
status=0
for v in 1 2 3 4 5 6 7 8; do
    ./build/cuda/attention_dense $v check >>"$log" 2>&1 || status=1
    [ $v -eq 1 ] && { ./build/cuda/attention_moba 1 check >>"$log" 2>&1 || status=1; }
done
grep -E "failed$|FAIL|error" "$log"
[ "$mode" = check ] && exit $status
if [ "$mode" = profile ]; then
    for v in 2 5 6 7 8; do
        echo "== version $v, HD 64, T 8192 (B 2, 32 heads): mean duration per kernel"
        ncu --clock-control none --metrics gpu__time_duration.sum --launch-skip 4 --launch-count 24 \
            --print-summary per-kernel ./build/cuda/attention_dense $v time 64 8192 2>&1 | grep -E "kernel|gpu__time_duration"
    done | tee -a "$log"
    exit $status
fi
if [ "$mode" = quick ]; then dense_t="4096 16384"; hd64_t="8192"
else dense_t="4096 16384 65536 131072"; hd64_t="8192 32768"; fi
{
    for v in 2 3; do
        ./build/cuda/attention_dense $v time 128 $dense_t
        ./build/cuda/attention_dense $v time 64 $hd64_t
    done
    ./build/cuda/attention_dense 4 time 128 ${dense_t% 131072}
    for v in 5 6 7 8; do ./build/cuda/attention_dense $v time 64 $hd64_t; done  # Hopper kernels (HD 64)
    PYTHONUNBUFFERED=1 python3 dev/cuda/attention_anchor.py 128 $dense_t
    PYTHONUNBUFFERED=1 python3 dev/cuda/attention_anchor.py 64 $hd64_t
} 2>&1 | tee -a "$log" >"$table"
nvidia-smi -L
echo "| impl | attn | HD | T | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
grep '^|' "$table"
grep -v '^|' "$table" | head -20
exit $status
