#!/usr/bin/env bash
# Tokenizer numbers for dev/bench/RESULTS.md: BPE training time (32000 vocab on a 100 MB sample) and
# prepare throughput on one thread and on all cores: wall MB/s end to end (read, encode, write shards;
# depends on what else the machine runs, so the load average is printed) and MB per CPU-second of the
# tokenizer threads (JSON decoding + pre-tokenization + BPE: the per-core encode speed, load-independent).
# The corpus is built from local text by data/make_corpus_sample.sh if it does not exist yet.
#   dev/bench/bench_tokenizer.sh [CORPUS=/tmp/moba_corpus] [MB=300]
set -euo pipefail
cd "$(dirname "$0")/../.."
corpus=${1:-/tmp/moba_corpus}; mb=${2:-300}
make -s build/tokenizer_train build/prepare
[ -d "$corpus" ] || data/make_corpus_sample.sh "$corpus" "$mb"
work=$(mktemp -d /tmp/bench_tokenizer.XXXXXX)
start=$(date +%s.%N)
build/tokenizer_train -o "$work/tok.bin" -v 32000 -n 100 -p 0 "$corpus" | tee "$work/train.log"
train_s=$(echo "$(date +%s.%N) - $start" | bc)
rows=""
for j in 1 $(nproc); do
    build/prepare -o "$work/out$j" -t "$work/tok.bin" -s 1000000000 -V 0 -j "$j" "$corpus" | tail -n 1 | tee "$work/prep$j.log"
    rows="$rows$(sed -E 's/.* ([0-9.]+) MB of text.* ([0-9.]+) s, ([0-9.]+) MB\/s with ([0-9]+) threads \(encode: ([0-9.]+) MB.*/| prepare -j \4 | \1 MB | \2 s | \3 MB\/s wall, \5 MB per CPU-second |/' "$work/prep$j.log")\n"
done
cmp "$work/out1/train_000000.bin" "$work/out$(nproc)/train_000000.bin" && echo "shards identical for -j 1 and -j $(nproc)"
echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "| what | input | time | throughput |"
echo "|---|---|---|---|"
echo "| tokenizer_train -v 32000 -n 100 (wall, incl. counting) | $(grep -o 'sample: [0-9.]* MB' "$work/train.log" | cut -d' ' -f2) MB | ${train_s:0:5} s | $(grep -o 'trained [0-9]* merges in [0-9.]* s' "$work/train.log") |"
printf "$rows"
rm -rf "$work"
