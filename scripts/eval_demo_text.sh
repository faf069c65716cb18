#!/usr/bin/env bash
# The evaluation pipeline end to end on the CPU, on real text with a trained tokenizer (no GPU, no network):
#  1. a small corpus from text already on this machine (data/make_corpus_sample.sh), a 4096-token BPE
#     tokenizer and shards (build/prepare)
#  2. two tiny models, dense and MoBA (block 64, top-3, key conv 3), 150 steps each at T 512
#  3. scripts/eval.sh on each: LM accuracy, six RULER tasks at 512 and 1024 tokens, LongBench on three
#     small record files in LongBench's JSONL format (hotpotqa, trec, gov_report; the real data comes from
#     data/download_longbench.sh on a machine with internet)
#  4. scripts/report.sh: the side-by-side report (report.md + SVG plots)
# Models this small score ~0 on RULER and LongBench: the demo shows the machinery, not retrieval.
#   usage: scripts/eval_demo_text.sh [OUT_DIR]    (default /tmp/moba_eval_demo; about 6 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-/tmp/moba_eval_demo}
rm -rf "$D" && mkdir -p "$D/longbench"
make -s train_gpt_moba build/prepare build/eval build/report
bash data/make_corpus_sample.sh "$D/text" 8 > /dev/null
build/prepare -o "$D/data" -v 4096 -n 8 -s 1000000 -V 200000 "$D/text" | tail -1

for run in "dense:-A dense -W 0" "moba:-A moba -B 64 -K 3 -W 3"; do
    ./train_gpt_moba -p tiny -V 4096 ${run#*:} -i "$D/data/train_*.bin" -j "$D/data/val_*.bin" \
        -f "$D/data/tokenizer.bin" -t 512 -b 4 -x 150 -v 50 -n 150 -o "$D/runs/${run%%:*}" > "$D/train_${run%%:*}.log" 2>&1 &
done
wait

cat > "$D/longbench/hotpotqa.jsonl" <<'EOF'
{"input": "Which river flows through the city where the treaty was signed?", "context": "Passage 1:\nThe treaty was signed in Basel in 1795.\nPassage 2:\nBasel lies on the Rhine river.", "answers": ["the Rhine"], "length": 30, "dataset": "hotpotqa", "language": "en", "all_classes": null, "_id": "h1"}
{"input": "Who wrote the novel?", "context": "Passage 1:\nThe novel was written by Mary Shelley in 1818.", "answers": ["Mary Shelley"], "length": 14, "dataset": "hotpotqa", "language": "en", "all_classes": null, "_id": "h2"}
EOF
cat > "$D/longbench/trec.jsonl" <<'EOF'
{"input": "What is the capital of France ?", "context": "Question: How far is the moon ?\nType: Distance\nQuestion: Who invented the telephone ?\nType: Individual", "answers": ["City"], "length": 20, "dataset": "trec", "language": "en", "all_classes": ["Distance", "Individual", "City"], "_id": "t1"}
EOF
cat > "$D/longbench/gov_report.jsonl" <<'EOF'
{"input": "", "context": "The agency reviewed its budget and found that spending rose by five percent while staffing fell.", "answers": ["Spending rose five percent and staffing fell."], "length": 18, "dataset": "gov_report", "language": "en", "all_classes": null, "_id": "g1"}
EOF

for run in dense moba; do
    scripts/eval.sh --cpu -c "$D/runs/$run" -k "$D/data/tokenizer.bin" -j "$D/data/val_*.bin" -t 512 \
        -r niah_single_1,niah_single_2,niah_multikey_1,vt,cwe,fwe -l 512,1024 -n 4 -e "$D/text/0000000.txt" \
        -L "$D/longbench" -N 2 -C 1024
done
scripts/report.sh "$D/report" "$D/runs/dense" "$D/runs/moba"
