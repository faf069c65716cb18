#!/usr/bin/env bash
# Device script for the key-block-centric MoBA attention (llmc/moba_attention.cuh): build, CPU-reference
# checks of versions 4 (atomic dQ) and 5 (deterministic), then timings at batch 2, 16 heads, HD 128 for
# random and gate selections next to our dense kernel and PyTorch cuDNN (same call), table last.
# usage: bash dev/cuda/bench_moba_attention.sh [check|quick|full]   (logs to $OUT/moba_attention.log)
set -u
cd "$(dirname "$0")/../.."
mode=${1:-full}
log=${OUT:-/tmp}/moba_attention.log
table=$(mktemp)
make -j4 build/cuda/attention_moba build/cuda/attention_dense >/dev/null || exit 1
status=0
for v in 4 5; do ./build/cuda/attention_moba $v check >>"$log" 2>&1 || status=1; done
grep -E "failed$|FAIL|error" "$log"
[ "$mode" = check ] && exit $status
if [ "$mode" = quick ]; then
    long="16384 65536 524288"; short="65536"; dense_t="65536"; cudnn_t="65536"; det_t="65536"
else
    long="8192 16384 32768 65536 131072 262144 524288"; short="32768 65536"
    dense_t="8192 16384 32768 65536 131072"; cudnn_t="8192 16384 32768 65536 131072"; det_t="65536"
fi
{
    ./build/cuda/attention_moba 4 time 128 8 $long
    ./build/cuda/attention_moba 4 time 64 16 $long
    ./build/cuda/attention_moba 4 time 512 2 $short
    ./build/cuda/attention_moba 4 time 256 4 $short
    ./build/cuda/attention_moba 5 time 128 8 $det_t
    ./build/cuda/attention_dense 2 time 128 $dense_t
    PYTHONUNBUFFERED=1 timeout 300 python3 dev/cuda/attention_anchor.py 128 $cudnn_t
} 2>&1 | tee -a "$log" >"$table"
nvidia-smi -L
echo "MoBA rows: fwd ms excludes the gate; 'gate' rows use moba_gate's selections (gate ms: add it for"
echo "gate-included); lists ms = the varlen build, part of fwd and (again) of bwd; TFLOP/s count causal dense"
echo "FLOPs (anchors.md) for comparison with the dense rows. v4 = atomic dQ, v5 = deterministic backward."
echo "| impl | attn | HD | T | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s | peak GiB | gate ms | lists ms |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
grep '^|' "$table"
grep -v '^|' "$table" | head -20
exit $status
