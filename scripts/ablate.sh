#!/usr/bin/env bash
# An ablation sweep in one command: every variant of a grid x every seed trained on equal terms (same
# base flags, data, token budget; at one seed the same data order), each evaluated the same way, and one
# report with the mean and spread over seeds (build/report -g).
#   scripts/ablate.sh CONFIG          e.g. scripts/ablate/paper_small.conf
# CONFIG is a shell file setting:
#   NAME          sweep name: runs go to runs/ablate/NAME/<variant>-s<seed>, the report to runs/ablate/NAME/report
#   BASE          trainer flags every run shares (preset, -t, -b, -d, -l, -u, data -i / -j, ...); not -x -r -o -y -n
#   STEPS         optimizer steps per run (-x)
#   CKPT_EVERY    checkpoint interval in steps (-n): how much a killed run loses
#   GRID          variants, space-separated: dense | moba:<block>/<top-k>, each optionally +k3 or +k5
#                 (key convolution width); e.g. "dense moba:128/2 moba:32/8 moba:32/8+k3"
#   SEEDS         seeds (-r: initialisation and data order), e.g. "1 2"
#   EVAL          flags of the evaluation (scripts/eval.sh; -c and -o are set here), e.g.
#                 "-j data/x/val_*.bin -t 2048 -s all -l 2048,4096,8192,16384 -k tok.bin -r niah_single_1,..."
#   LAUNCH        optional command prefix for several GPUs, e.g. "mpirun -np 8" (the trainer's -P auto)
# Resumable: a run with an eval.json is done and skipped; a run with checkpoints resumes from the newest
# (-y 1, exact); a trained run without eval.json is only evaluated. The config is copied into the sweep
# folder on the first call, and a later call with a different config is refused (results stay comparable).
# On a machine without a GPU the CPU trainer and evaluator run.
set -euo pipefail
set -f  # BASE and EVAL hold glob patterns (-i, -j) meant for the programs, not the shell
cd "$(dirname "$0")/.."
[ $# -eq 1 ] && [ -f "$1" ] || { echo "usage: scripts/ablate.sh CONFIG (a file; see the top of this script)" >&2; exit 1; }
config=$1
NAME= BASE= STEPS= CKPT_EVERY= GRID= SEEDS= EVAL= LAUNCH=
# shellcheck disable=SC1090
source "$config"
for v in NAME STEPS CKPT_EVERY GRID SEEDS; do
    [ -n "${!v}" ] || { echo "error: $config does not set $v" >&2; exit 1; }
done
[[ "$STEPS" =~ ^[0-9]+$ ]] && [ "$STEPS" -gt 0 ] || { echo "error: STEPS=$STEPS in $config: a positive integer" >&2; exit 1; }
[[ "$CKPT_EVERY" =~ ^[0-9]+$ ]] && [ "$CKPT_EVERY" -gt 0 ] || { echo "error: CKPT_EVERY=$CKPT_EVERY in $config: a positive integer" >&2; exit 1; }
for f in -x -r -o -y -n; do
    [[ " $BASE " != *" $f "* ]] || { echo "error: BASE in $config sets $f, which the sweep sets per run" >&2; exit 1; }
done

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    trainer=./train_gpt_moba_cu; evalflag=
else
    trainer=./train_gpt_moba; evalflag=--cpu
fi
make -s "${trainer#./}" build/report

sweep=runs/ablate/$NAME
mkdir -p "$sweep"
if [ -f "$sweep/config" ]; then
    cmp -s "$config" "$sweep/config" || { echo "error: sweep '$NAME' was started with another config ($sweep/config); use a new NAME" >&2; exit 1; }
else
    cp "$config" "$sweep/config"
fi

# trainer flags and folder name of a variant: dense | moba:B/K, optionally +kW
variant_flags() {
    local v=$1 conv=0 attn
    if [[ "$v" == *+k* ]]; then conv=${v##*+k}; v=${v%%+k*}; fi
    case "$v" in
        dense) attn="-A dense" ;;
        moba:*/*) attn="-A moba -B ${v#moba:}"; attn="${attn%%/*} -K ${v##*/}" ;;
        *) echo "error: variant '$1' in $config: dense or moba:<block>/<top-k>, optionally +k3 / +k5" >&2; return 1 ;;
    esac
    echo "$attn -W $conv"
}
variant_tag() { local t=${1//:/}; t=${t//\//-}; echo "${t//+/-}"; }
for v in $GRID; do variant_flags "$v" > /dev/null || exit 1; done

runs=()
for seed in $SEEDS; do
    for v in $GRID; do
        dir=$sweep/$(variant_tag "$v")-s$seed
        runs+=("$dir")
        if [ -f "$dir/eval.json" ]; then echo "done:      $dir"; continue; fi
        final=$(printf '%s/ckpt_%08d.bin' "$dir" "$STEPS")
        if [ ! -f "$final" ]; then
            mkdir -p "$dir"
            resume=0
            if compgen -G "$dir/ckpt_*.bin" > /dev/null; then resume=1; echo "resuming:  $dir"; else echo "training:  $dir"; fi
            # shellcheck disable=SC2086
            $LAUNCH $trainer $BASE $(variant_flags "$v") -r "$seed" -x "$STEPS" -n "$CKPT_EVERY" -y "$resume" -o "$dir" >> "$dir/train.out" 2>&1 \
                || { echo "error: training $dir failed; the end of $dir/train.out:" >&2; tail -n 5 "$dir/train.out" >&2; exit 1; }
            [ -f "$final" ] || { echo "error: $dir finished without $final" >&2; exit 1; }
        fi
        echo "evaluating: $dir"
        # shellcheck disable=SC2086
        scripts/eval.sh $evalflag -c "$final" -o "$dir" $EVAL > "$dir/eval.out" 2>&1 \
            || { echo "error: evaluating $dir failed; the end of $dir/eval.out:" >&2; tail -n 5 "$dir/eval.out" >&2; exit 1; }
    done
done
build/report -g -o "$sweep/report" "${runs[@]}"
