#!/usr/bin/env bash
# Downloads the 10B-token sample of FineWeb-Edu (HuggingFaceFW/fineweb-edu, folder sample/10BT) for
# data/prepare. Run on a machine with internet; needs curl and the duckdb CLI (https://duckdb.org),
# which turns each parquet file into JSONL with a "text" field. The file list is the dataset's own,
# from the Hugging Face tree API. Finished files are skipped, so a rerun continues.
#   data/download_fineweb_edu.sh [OUT=fineweb_edu_raw] [MAX_FILES=all]
#   build/prepare -o data/fineweb_edu -v 32000 fineweb_edu_raw/jsonl
set -euo pipefail
out=${1:-fineweb_edu_raw}; max=${2:-100000}
repo=https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu
command -v duckdb >/dev/null || { echo "error: needs the duckdb CLI to read parquet (https://duckdb.org)" >&2; exit 1; }
mkdir -p "$out/jsonl"
curl -fsSL https://huggingface.co/api/datasets/HuggingFaceFW/fineweb-edu/tree/main/sample/10BT \
    | grep -o '"path":"[^"]*\.parquet"' | sed 's/^"path":"//; s/"$//' | head -n "$max" > "$out/files.txt"
[ -s "$out/files.txt" ] || { echo "error: empty file list from the Hugging Face API" >&2; exit 1; }
while read -r path <&3; do  # fd 3: curl, duckdb, zstd must not eat the list
    name=$(basename "$path" .parquet)
    [ -s "$out/jsonl/$name.jsonl" ] && continue
    curl -fL --retry 5 -C - -o "$out/$name.parquet" "$repo/resolve/main/$path"
    duckdb -c "COPY (SELECT text FROM read_parquet('$out/$name.parquet')) TO '$out/$name.jsonl.tmp' (FORMAT JSON)"
    mv "$out/$name.jsonl.tmp" "$out/jsonl/$name.jsonl" && rm "$out/$name.parquet"
done 3< "$out/files.txt"
echo "done: $(wc -l < "$out/files.txt") files in $out/jsonl; next: build/prepare -o data/fineweb_edu -v 32000 $out/jsonl"
