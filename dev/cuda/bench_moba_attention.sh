#!/usr/bin/env bash
# Device script for the key-block-centric MoBA attention (llmc/moba_attention.cuh): build, CPU-reference
# checks of versions 4 (atomic dQ) and 5 (deterministic), then timings at batch 2, 16 heads, HD 128 for
# random and gate selections next to our dense kernel and PyTorch cuDNN (same call), table last.
# Mode all = full + the trainer with this path: test_gpt_moba_cu on CPU debug states of the MoBA cases of
# dev/test/gpu/test_gpu.sh (+ block 128 with a partial last block), and 340M MoBA tokens/s at T 32768 x 1 (the
# command of dev/test/gpu/test_gpu.sh's BENCH) and at T 131072 x 1 with -R 2.
# usage: bash dev/cuda/bench_moba_attention.sh [check|quick|full|all]   (logs to $OUT/moba_attention.log)
set -u
cd "$(dirname "$0")/../.."
mode=${1:-full}
log=${OUT:-/tmp}/moba_attention.log
table=$(mktemp)
targets="build/cuda/attention_moba build/cuda/attention_dense"
[ "$mode" = all ] && targets="$targets train_gpt_moba train_gpt_moba_cu test_gpt_moba_cu"
mkdir -p build/cuda
make -j4 $targets >/dev/null || exit 1
status=0
for v in 4 5; do ./build/cuda/attention_moba $v check >>"$log" 2>&1 || status=1; done
grep -E "failed$|FAIL|error" "$log"
[ "$mode" = check ] && exit $status
trainer=$(mktemp)
if [ "$mode" = all ]; then
    W=$(mktemp -d)
    for c in "moba_b32_k3:-A moba -B 32 -K 3 -W 3 -b 2 -t 256" "moba_partial:-A moba -B 64 -K 2 -W 3 -b 3 -t 200" \
             "moba_k1:-A moba -B 32 -K 1 -W 0 -b 2 -t 256" "hybrid_n2:-A moba -B 32 -K 3 -W 5 -N 2 -b 4 -t 256" \
             "moba_b128_partial:-A moba -B 128 -K 2 -W 3 -b 2 -t 320"; do
        name=${c%%:*}
        ./train_gpt_moba -p tiny -V 512 ${c#*:} -D "$W/$name.bin" >>"$log" 2>&1 || { echo "state $name: CPU debug state FAILED" >>"$trainer"; status=1; continue; }
        ./test_gpt_moba_cu "$W/$name.bin" >>"$log" 2>&1 || status=1
        echo "test_gpt_moba_cu $name: $(tail -1 "$log")" >>"$trainer"
    done
    for c in "T32768_B1:-b 1 -t 32768" "T131072_B1_R2:-b 1 -t 131072 -R 2"; do
        name=${c%%:*}
        ./train_gpt_moba_cu -p 340M -x 8 -v 0 -s 0 -u 1 -m 1 -o "$W/bench" -A moba -B 128 -K 8 -W 3 ${c#*:} >"$W/bench.log" 2>&1
        cat "$W/bench.log" >>"$log"
        echo "340M MoBA B128 K8 kconv3 $name step 8: $(grep '^step     8/8' "$W/bench.log" | awk -F'|' '{print $5 $6 $7 $8}') $(grep -i -m1 'error' "$W/bench.log")" >>"$trainer"
        rm -rf "$W/bench"
    done
    rm -rf "$W"
fi
if [ "$mode" = quick ]; then
    long="16384 65536 524288"; short="65536"; dense_t="65536"; cudnn_t="65536"; det_t="65536"
else
    long="8192 16384 32768 65536 131072 262144 524288"; short="32768 65536"
    dense_t="8192 16384 32768 65536 131072"; cudnn_t="8192 16384 32768 65536 131072"; det_t="65536"
fi
{
    ./build/cuda/attention_moba 4 time 128 8 $long
    ./build/cuda/attention_moba 6 time 128 8 $short
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
echo "FLOPs as the dense causal count (2 B NH T^2 HD) for comparison with the dense rows. v4 = atomic dQ, v5 = deterministic backward."
echo "| impl | attn | HD | T | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s | peak GiB | gate ms | lists ms |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
grep '^|' "$table"
grep -v '^|' "$table" | head -20
cat "$trainer"
exit $status
