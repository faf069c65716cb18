#!/usr/bin/env bash
# Evaluates a checkpoint on the FlashMoBA paper's list and prints its tables (llmc/eval/eval_driver.h):
# WikiText-2 word perplexity, LAMBADA (accuracy, perplexity), zero-shot OpenBookQA, PIQA, HellaSwag,
# WinoGrande, ARC-e, ARC-c, TruthfulQA (mc1, mc2), RULER S-NIAH-1/2/3 and the 12 LongBench subsets.
# DATA holds the files in lm-eval's / LongBench's JSONL formats (a missing file skips its task):
#   wikitext.jsonl lambada.jsonl openbookqa.jsonl piqa.jsonl hellaswag.jsonl winogrande.jsonl
#   arc_easy.jsonl arc_challenge.jsonl truthfulqa.jsonl essay.txt longbench/<dataset>.jsonl
# dev/eval/paper_sample/ has a few items of each format. Other flags go to scripts/eval.sh (-o, -n, -N,
# -C, --cpu first). Lengths: LENGTHS (default the paper's 4096,8192,16384,32768,65536).
#   scripts/eval_paper.sh CHECKPOINT_OR_RUN_DIR TOKENIZER DATA [flags]
#   LENGTHS=1024 scripts/eval_paper.sh --cpu runs/tiny/ckpt_00000100.bin tok.bin dev/eval/paper_sample -n 1 -N 1 -C 1024
set -euo pipefail
cd "$(dirname "$0")/.."
cpu=()
if [ "${1:-}" = "--cpu" ]; then cpu=(--cpu); shift; fi
[ $# -ge 3 ] || { echo "usage: scripts/eval_paper.sh [--cpu] CHECKPOINT_OR_RUN_DIR TOKENIZER DATA [flags]" >&2; exit 1; }
ckpt=$1 tok=$2 data=$3; shift 3
[ -d "$data" ] || { echo "error: data folder '$data' does not exist" >&2; exit 1; }
args=(-c "$ckpt" -k "$tok")
[ -f "$data/wikitext.jsonl" ] && args+=(-w "$data/wikitext.jsonl")
[ -f "$data/lambada.jsonl" ] && args+=(-a "$data/lambada.jsonl")
mc=()
for set in openbookqa piqa hellaswag winogrande arc_easy arc_challenge; do
    [ -f "$data/$set.jsonl" ] && mc+=("$set:$data/$set.jsonl")
done
if [ -f "$data/truthfulqa.jsonl" ]; then mc+=("truthfulqa_mc1:$data/truthfulqa.jsonl" "truthfulqa_mc2:$data/truthfulqa.jsonl"); fi
[ ${#mc[@]} -gt 0 ] && args+=(-M "$(IFS=,; echo "${mc[*]}")")
if [ -f "$data/essay.txt" ]; then
    args+=(-r niah_single_1,niah_single_2,niah_single_3 -l "${LENGTHS:-4096,8192,16384,32768,65536}" -e "$data/essay.txt")
fi
if [ -d "$data/longbench" ]; then
    args+=(-L "$data/longbench" -d "$(cd "$data/longbench" && ls qasper.jsonl multifieldqa_en.jsonl hotpotqa.jsonl 2wikimqa.jsonl musique.jsonl \
        gov_report.jsonl qmsum.jsonl multi_news.jsonl triviaqa.jsonl samsum.jsonl lcc.jsonl repobench-p.jsonl 2>/dev/null | sed 's/\.jsonl$//' | paste -sd,)")
fi
exec scripts/eval.sh "${cpu[@]}" "${args[@]}" "$@"
