#!/usr/bin/env bash
# Per-core encode speed of every tokenizer format, for dev/bench/RESULTS.md: moba.c's byte-level BPE
# (32000, trained on the corpus), the Llama-2 vocabulary as a SentencePiece tokenizer.model and as a
# Metaspace tokenizer.json, and GPT-2 (r50k) and cl100k tokenizer.json files (byte-level, GPT-2 and
# Llama-3 regexes). The Llama, GPT-2 and cl100k files are extracted from the npm packages that
# dev/test/tokenizer_crosscheck.sh installs (run it once first). Each runs build/prepare -j 1 and -j
# all cores on the same corpus; "MB per CPU-second" is the tokenizer threads' CPU time (JSON decoding +
# encoding), the load-independent per-core number.
#   dev/bench/bench_tokenizer_formats.sh [CORPUS=/tmp/moba_corpus] [MB=300]
set -euo pipefail
cd "$(dirname "$0")/../.."
corpus=${1:-/tmp/moba_corpus}; mb=${2:-300}
npm_prefix=build/npm_tokenizer_check
[ -d "$npm_prefix/node_modules/llama-tokenizer-js" ] || { echo "error: run dev/test/tokenizer_crosscheck.sh first (it installs the npm packages)" >&2; exit 1; }
make -s build/tokenizer_train build/prepare build/tokenize
[ -d "$corpus" ] || data/make_corpus_sample.sh "$corpus" "$mb"
work=$(mktemp -d /tmp/bench_tokenizer_formats.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 dev/tokenizer/varied_text.py "$work/valid.txt" 0.2 --valid-utf8
node dev/tokenizer/llama_js_check.mjs "$npm_prefix" "$work" "$work/valid.txt" > /dev/null  # llama.model, llama.json (Metaspace)
node dev/tokenizer/gpt_check.mjs "$npm_prefix" "$work" "$work/valid.txt" > /dev/null       # r50k_base.json, cl100k_base.json
build/tokenizer_train -o "$work/moba32k.bin" -v 32000 -n 100 -p 0 "$corpus" > /dev/null
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "| tokenizer | threads | MB of text | tokens | bytes/token | wall MB/s | MB per CPU-second |"
echo "|---|---|---|---|---|---|---|"
for tok in moba32k.bin llama.model llama.json r50k_base.json cl100k_base.json; do
    for j in 1 $(nproc); do
        rm -rf "$work/out"
        line=$(build/prepare -o "$work/out" -T "$work/$tok" -s 1000000000 -V 0 -j "$j" "$corpus" | tail -n 1)
        echo "$line" | sed -E "s/done: [0-9]+ documents, ([0-9.]+) MB of text, ([0-9]+) tokens.* ([0-9.]+) MB\/s with ([0-9]+) threads \(encode: ([0-9.]+) MB.*/| $tok | \4 | \1 | \2 | B\/T | \3 | \5 |/" |
            awk -F'|' -v OFS='|' '{ $6 = sprintf(" %.2f ", $4 * 1e6 / $5); print }'
    done
done
