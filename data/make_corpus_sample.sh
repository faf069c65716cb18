#!/usr/bin/env bash
# Builds a local plain-text corpus for tokenizer tests and benchmarks from text already on this machine
# (no network): /usr/share/common-licenses, /usr/share/doc (READMEs, changelogs, copyright files;
# .gz decompressed), the Python standard library sources, man pages (raw troff, decompressed) and
# /usr/include headers, taken in that order until the target size is reached. Each source file becomes
# one document: OUT/NNNNNNN.txt. Missing sources are skipped.
#   data/make_corpus_sample.sh OUT [MB]     (default 300 MB)
set -euo pipefail
out=${1:?usage: make_corpus_sample.sh OUT [MB]}
target=$(( ${2:-300} * 1000000 ))
mkdir -p "$out"
total=0; n=0
add() {  # add <file>: one document, decompressed if .gz, skipped if empty or binary
    local f=$1 dst
    dst=$(printf '%s/%07d.txt' "$out" "$n")
    case "$f" in *.gz) gzip -dc -- "$f" > "$dst" 2>/dev/null || { rm -f "$dst"; return 0; } ;; *) cp -- "$f" "$dst" ;; esac
    if [ ! -s "$dst" ] || grep -qP '\x00' "$dst"; then rm -f "$dst"; return 0; fi
    total=$(( total + $(stat -c %s "$dst") )); n=$(( n + 1 ))
}
for src in /usr/share/common-licenses /usr/share/doc "/usr/lib/python3*" /usr/share/man /usr/include; do
    for dir in $src; do
        [ -d "$dir" ] || continue
        while IFS= read -r -d '' f; do
            [ "$total" -ge "$target" ] && break 3
            add "$f"
        done < <(find "$dir" -type f \( -name '*.gz' -o -name '*.txt' -o -name '*.py' -o -name '*.h' \
                 -o -name 'README*' -o -name 'copyright' -o -name 'changelog*' -o -path '*/common-licenses/*' \) \
                 ! -name '*.pyc' -print0 | sort -z)
    done
done
echo "wrote $n documents, $(( total / 1000000 )) MB, to $out"
