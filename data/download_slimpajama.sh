#!/usr/bin/env bash
# Downloads training files of SlimPajama (cerebras/SlimPajama-627B, train/chunk1, JSONL compressed
# with zstd; each line has "text" and a "meta" field that prepare ignores) for data/prepare. Run on a
# machine with internet; needs curl and zstd. The file list is the dataset's own, from the Hugging Face
# tree API (its first page). Finished files are skipped, so a rerun continues.
#   data/download_slimpajama.sh [OUT=slimpajama_raw] [MAX_FILES=100]   (a file is ~10M tokens)
#   build/prepare -o data/slimpajama -v 32000 slimpajama_raw/jsonl
set -euo pipefail
out=${1:-slimpajama_raw}; max=${2:-100}
repo=https://huggingface.co/datasets/cerebras/SlimPajama-627B
command -v zstd >/dev/null || { echo "error: needs zstd to decompress the .jsonl.zst files" >&2; exit 1; }
mkdir -p "$out/jsonl"
curl -fsSL https://huggingface.co/api/datasets/cerebras/SlimPajama-627B/tree/main/train/chunk1 \
    | grep -o '"path":"[^"]*\.jsonl\.zst"' | sed 's/^"path":"//; s/"$//' | head -n "$max" > "$out/files.txt"
[ -s "$out/files.txt" ] || { echo "error: empty file list from the Hugging Face API" >&2; exit 1; }
while read -r path <&3; do  # fd 3: curl, duckdb, zstd must not eat the list
    name=$(basename "$path" .jsonl.zst)
    [ -s "$out/jsonl/$name.jsonl" ] && continue
    curl -fL --retry 5 -C - -o "$out/$name.jsonl.zst" "$repo/resolve/main/$path"
    zstd -dc "$out/$name.jsonl.zst" > "$out/$name.jsonl.tmp"
    mv "$out/$name.jsonl.tmp" "$out/jsonl/$name.jsonl" && rm "$out/$name.jsonl.zst"
done 3< "$out/files.txt"
echo "done: $(wc -l < "$out/files.txt") files in $out/jsonl; next: build/prepare -o data/slimpajama -v 32000 $out/jsonl"
