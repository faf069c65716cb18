#!/usr/bin/env bash
# Device script for the FlashAttention-3-style forward (attention_dense versions 13-16): CPU-reference checks
# of each version (a hang or failure skips its timings), then fwd / fwd+bwd timings of versions 7 and 13-16
# at HD 64 (T 8192, 32768) and HD 128 (T 16384, 65536) next to PyTorch's FlashAttention-2 and cuDNN in the
# same call; table last. Binaries prebuilt (BIN, default build/cuda) or built here with make.
# usage: [BIN=dir] [VERSIONS="13 14 15 16"] bash dev/cuda/bench_attention_fwd.sh   (log: $OUT/attention_fwd.log)
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/cuda}
VERSIONS=${VERSIONS:-13 14 15 16}
log=${OUT:-/tmp}/attention_fwd.log
table=$(mktemp)
[ -x "$BIN/attention_dense" ] || make -j4 build/cuda/attention_dense >/dev/null || exit 1
status=0
timed="7"
# A check takes a few seconds; a hang (a lost mbarrier arrival, a setmaxnreg that cannot be granted) is cut at
# 30 s and stops the script: the versions share their pipeline code, so the next would hang the same way.
linebuf=$(command -v stdbuf >/dev/null && echo "stdbuf -oL")  # keep a killed check's output
for v in $VERSIONS; do
    timeout 30 $linebuf "$BIN/attention_dense" $v check >>"$log" 2>&1
    rc=$?
    echo "version $v check: rc $rc"
    if [ $rc -eq 0 ]; then timed="$timed $v"; else status=1; fi
    [ $rc -eq 124 ] && { tail -5 "$log"; exit 1; }
done
grep -E "^v1[3-6]|^  (o|lse) " "$log" | paste - - - | head -40
grep -E "FAIL|error" "$log" | head -20
{
    for v in $timed; do
        timeout 60 "$BIN/attention_dense" $v time 64 8192 32768
        timeout 60 "$BIN/attention_dense" $v time 128 16384 65536
    done
    PYTHONUNBUFFERED=1 python3 dev/cuda/attention_anchor.py 64 8192 32768
    PYTHONUNBUFFERED=1 python3 dev/cuda/attention_anchor.py 128 16384 65536
} 2>&1 | tee -a "$log" >"$table"
nvidia-smi -L
echo "| impl | attn | HD | T | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
grep '^|' "$table" | sort -t'|' -k4,4n -k5,5n -s
grep -v '^|' "$table" | head -20
exit $status
