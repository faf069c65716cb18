#!/usr/bin/env bash
# Exercises every tokenizer-based evaluation path of scripts/eval.sh on a checkpoint, with inputs made
# here from the repo's own text: a BPE tokenizer trained on doc/*.md (vocab = the model's), an essay
# haystack, a 2-question SQuAD file and a HotpotQA file, LongBench-format records for five subsets
# (qa_f1, rouge_l, classification, retrieval, code_sim) and HellaSwag/ARC/WinoGrande/PIQA items.
# The scores mean nothing for a model trained on the synthetic corpus; the point is that each path
# runs and writes its results. Usage: dev/eval/smoke_text.sh CHECKPOINT [WORK_DIR=/tmp/moba_eval_smoke]
set -euo pipefail
cd "$(dirname "$0")/../.."
ckpt=$1; w=${2:-/tmp/moba_eval_smoke}
mkdir -p "$w/lb" "$w/out"
make -s build/tokenizer_train
vocab=$(python3 -c "import struct,sys; h=open(sys.argv[1],'rb').read(64); print(struct.unpack('<i', h[16:20])[0])" "$ckpt")
cat doc/*.md > "$w/essay.txt"
build/tokenizer_train -o "$w/tok.bin" -v "$vocab" -n 1 -p 0 "$w/essay.txt" > /dev/null
cat > "$w/squad.json" <<'J'
{"data": [{"paragraphs": [
 {"context": "The key convolution of moba.c has width 3 or 5 and starts as the identity.", "qas": [{"question": "Which widths can the key convolution have?", "answers": [{"text": "3 or 5"}]}]},
 {"context": "MoBA selects the top-k blocks by the dot product of the query with block centroids.", "qas": [{"question": "What does MoBA score blocks with?", "answers": [{"text": "centroids"}]}]}]}]}
J
cat > "$w/hotpot.json" <<'J'
[{"question": "Which file defines the model?", "answer": "model.md", "supporting_facts": [["Spec", 0]],
  "context": [["Spec", ["The model is defined in doc/model.md. "]], ["Other", ["Tokenizers live in llmc."]]]}]
J
rec() { printf '{"input": "%s", "context": "%s", "answers": [%s], "length": %s, "dataset": "%s", "language": "en", "all_classes": %s, "_id": "%s"}\n' "$@"; }
rec "Who wrote the essay?" "Passage 1:\\nThe essay was written by Ann." '"Ann"' 8 hotpotqa null h1 > "$w/lb/hotpotqa.jsonl"
rec "" "Transcript of a long meeting about attention blocks." '"The meeting discussed attention blocks."' 9 gov_report null g1 > "$w/lb/gov_report.jsonl"
rec "What is the capital?" "Question: Who is he?\\nType: Human\\n" '"Location"' 9 trec '["Human", "Location", "Number"]' t1 > "$w/lb/trec.jsonl"
rec "The abstract." "Paragraph 1: cats. Paragraph 2: dogs." '"Paragraph 2"' 9 passage_retrieval_en null p1 > "$w/lb/passage_retrieval_en.jsonl"
rec "" "def f(x):\\n    return x\\n" '"print(f(1))"' 9 lcc null l1 > "$w/lb/lcc.jsonl"
echo '{"activity_label": "Modelling", "ctx_a": "The model reads tokens.", "ctx_b": "it", "endings": ["predicts the next one.", "sings.", "melts.", "flies away."], "label": 0}' > "$w/hellaswag.jsonl"
echo '{"question": {"stem": "What does MoBA select?", "choices": [{"text": "blocks", "label": "A"}, {"text": "colours", "label": "B"}]}, "answerKey": "A"}' > "$w/arc.jsonl"
echo '{"sentence": "The block was chosen because _ scored highest.", "option1": "its centroid", "option2": "the weather", "answer": "1"}' > "$w/winogrande.jsonl"
echo '{"goal": "Train a model", "sol1": "run the trainer", "sol2": "delete the data", "label": 0}' > "$w/piqa.jsonl"
scripts/eval.sh -c "$ckpt" -o "$w/out" -k "$w/tok.bin" -r all -l 1024 -n 2 -e "$w/essay.txt" -q "$w/squad.json" -Q "$w/hotpot.json" \
    -L "$w/lb" -C 1024 -M "hellaswag:$w/hellaswag.jsonl,arc:$w/arc.jsonl,winogrande:$w/winogrande.jsonl,piqa:$w/piqa.jsonl"
