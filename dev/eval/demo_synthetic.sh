#!/usr/bin/env bash
# Dense vs MoBA on the built-in synthetic corpus: trains two tiny models (unless their checkpoints are
# there), evaluates LM accuracy and the synthetic needle tasks at several lengths, and writes a report.
#   dev/eval/demo_synthetic.sh [RUNS=runs/eval_demo] [REPORT=doc/eval_demo] [STEPS=1000] [MINUTES=30]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-runs/eval_demo}; report=${2:-doc/eval_demo}; steps=${3:-1000}; minutes=${4:-30}
make -s train_gpt_moba
train() {  # name, attention flags
    local name=$1; shift
    ls "$runs/$name"/ckpt_*.bin >/dev/null 2>&1 && return 0
    ./train_gpt_moba -o "$runs/$name" "$@" -x "$steps" -M "$minutes" -v 100 -m 4 -n 250 -s 0
}
train dense -A dense -W 0
train moba -A moba -B 32 -K 3 -W 3
for name in dense moba; do
    scripts/eval.sh -c "$runs/$name" -j 'data/synthetic/val_*.bin' -t 256 -b 4 -m 16 -P 8 -s all -l 64,128,256,512,1024 -n 50
done
scripts/report.sh "$report" "$runs/dense" "$runs/moba"
