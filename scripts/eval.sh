#!/usr/bin/env bash
# Evaluates a checkpoint with KV-cache decoding: LM accuracy, synthetic needles, RULER, LongBench,
# multiple choice (llmc/eval/eval_driver.h). On a machine with a GPU it builds and runs ./eval_gpt_moba_cu,
# else build/eval (the CPU reference); --cpu as the first argument forces the CPU. All other flags go to
# the program (-h lists them); -c may name a run folder, which evaluates its newest ckpt_*.bin.
# Results: <out>/eval.json, eval.md.
#   scripts/eval.sh -c runs/cpu -j 'data/synthetic/val_*.bin' -s all -l 128,256,512
#   scripts/eval.sh --cpu -c runs/x/ckpt_00001000.bin -k tok.bin -r all -l 4096,8192 -e essay.txt \
#                   -L data/longbench -N 50 -M hellaswag:hellaswag_val.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
prog=build/eval
if [ "${1:-}" = "--cpu" ]; then
    shift
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    prog=./eval_gpt_moba_cu
fi
make -s "${prog#./}"
args=()
while [ $# -gt 0 ]; do
    if [ "$1" = "-c" ] && [ $# -ge 2 ] && [ -d "$2" ]; then
        ckpt=$(ls "$2"/ckpt_*.bin 2>/dev/null | sort | tail -n 1 || true)  # no match: the message below, not a silent set -e exit
        [ -n "$ckpt" ] || { echo "error: no ckpt_*.bin in run folder '$2'" >&2; exit 1; }
        args+=(-c "$ckpt"); shift 2
    else
        args+=("$1"); shift
    fi
done
exec "$prog" "${args[@]}"
