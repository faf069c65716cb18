#!/usr/bin/env bash
# Downloads LongBench v1 (THUDM/LongBench on Hugging Face: data.zip, one <dataset>.jsonl per subset with
# the fields input, context, answers, length, dataset, language, all_classes, _id) and keeps the
# English subsets that scripts/eval.sh scores. Run on a machine with internet; needs curl and unzip.
#   data/download_longbench.sh [OUT=data/longbench]
#   scripts/eval.sh -c runs/x -k tokenizer.bin -L data/longbench -N 50
set -euo pipefail
out=${1:-data/longbench}
english="narrativeqa qasper multifieldqa_en hotpotqa 2wikimqa musique gov_report qmsum multi_news trec triviaqa samsum passage_count passage_retrieval_en lcc repobench-p"
command -v unzip >/dev/null || { echo "error: needs unzip" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fL --retry 5 -o "$tmp/data.zip" https://huggingface.co/datasets/THUDM/LongBench/resolve/main/data.zip
unzip -q "$tmp/data.zip" -d "$tmp"
for d in $english; do
    src=$(find "$tmp" -name "$d.jsonl" -not -name '*_e.jsonl' | head -n 1)
    [ -n "$src" ] || { echo "error: $d.jsonl is missing from data.zip" >&2; exit 1; }
    mv "$src" "$out/$d.jsonl"
    echo "$out/$d.jsonl: $(wc -l < "$out/$d.jsonl") records"
done
