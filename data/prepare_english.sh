#!/usr/bin/env bash
# Real English text that exists offline (Debian packages), tokenized into shards for ablation studies, with
# a long-context recall mixture (data/README.md says what, how much and under which licences):
#   1. installs linux-doc-6.1, python3.11-doc, dict-gcide, wordnet-base, bible-kjv-text and bible-kjv
#      (apt-get; as root, or through sudo) when they are missing;
#   2. writes plain-text documents to OUT/raw/<source>/: the King James Bible (one per book), the GCIDE
#      dictionary (markup stripped, 400 lines per document), WordNet's glosses ("lemma: gloss", 300 per
#      document), the Linux kernel and Python documentation (their reStructuredText sources, one per page);
#   3. a fixed held-out split: every 50th document of each source (in sorted order) goes to OUT/raw_val;
#   4. build/prepare -o OUT/text: trains a byte-level BPE tokenizer (-v VOCAB) on the rest, train shards;
#      build/prepare -o OUT/val: the held-out documents with that tokenizer, val shards;
#   5. build/prepare -o OUT/recall with the same tokenizer and -L RECALL_LEN -F FACTS: every document is
#      RECALL_LEN tokens of the training text with FACTS planted facts that are asked for again at its end,
#      so a model can only predict the answers by attending back (the retrieval signal of the study).
# Train on text + recall with -i 'OUT/*/train_*.bin', validate on -j 'OUT/val/val_*.bin'; OUT/essay.txt (the
# held-out Python documentation) is a haystack for RULER (eval -e).
#   data/prepare_english.sh [OUT]          (default data/english)
#   VOCAB=8192 RECALL_LEN=2048 FACTS=16 RECALL_STYLE=secret data/prepare_english.sh data/english
# RECALL_STYLE is build/prepare -Q: secret, or magic (RULER's needle sentence and question). SHORT_LEN > 0 adds
# OUT/recall_short: recall documents of SHORT_LEN tokens with SHORT_FACTS facts (default 4), the same style.
# OUT/recall_val (val shards) and OUT/recall_probes.jsonl: recall documents made from the held-out text, and
# one probe per document (the document up to its first answer) for the evaluation's -R.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-data/english}
VOCAB=${VOCAB:-8192}; RECALL_LEN=${RECALL_LEN:-2048}; FACTS=${FACTS:-16}; RECALL_STYLE=${RECALL_STYLE:-secret}
SHORT_LEN=${SHORT_LEN:-0}; SHORT_FACTS=${SHORT_FACTS:-4}
# small shards: the loader visits shards in a shuffled order and reads one shard before the next, so the
# sources mix at the granularity of a shard (524,288 tokens = 2 steps of the study)
SHARD=${SHARD:-524288}
raw=$out/raw; held=$out/raw_val

pkgs="linux-doc-6.1 python3.11-doc dict-gcide wordnet-base bible-kjv-text bible-kjv"
# the packages are needed only to extract the raw text: a machine given OUT/raw (e.g. a GPU machine without
# network, see data/README.md) goes straight to tokenizing
missing=$([ -f "$raw/.complete" ] || for p in $pkgs; do dpkg -s "$p" > /dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
    sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
    echo "installing:" $missing
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing > /dev/null
fi

if [ ! -f "$raw/.complete" ]; then
    rm -rf "$raw" "$held"
    mkdir -p "$raw/1_bible" "$raw/2_gcide" "$raw/3_wordnet" "$raw/4_linux" "$raw/5_python"
    # the Bible, one document per book: chapter headers "Book N" start a new book when the name changes
    bible Gen1:1-Rev22:21 | awk -v dir="$raw/1_bible" '
        /^[1-3]? ?[A-Z][a-z]+( [A-Za-z]+)* [0-9]+$/ { book = $0; sub(/ [0-9]+$/, "", book)
            if (book != cur) { cur = book; n++; if (f) close(f); f = sprintf("%s/%02d.txt", dir, n) } }
        f { print > f }'
    zcat /usr/share/dictd/gcide.dict.dz | sed -e 's/<[^>]*>//g' -e 's/&[a-z]*;//g' | split -l 400 -d -a 5 --additional-suffix=.txt - "$raw/2_gcide/"
    for pos in noun verb adj adv; do
        awk '!/^  / { split($0, part, " \\| "); n = split(part[1], f, " "); if (part[2] == "") next
                      w = f[5]; gsub(/_/, " ", w); print w ": " part[2] }' "/usr/share/wordnet/data.$pos"
    done | split -l 300 -d -a 5 --additional-suffix=.txt - "$raw/3_wordnet/"
    copy_sources() {  # copy_sources <html dir> <dest>: every _sources/**/*.rst.txt, path flattened
        (cd "$1/_sources" && find . -name '*.rst.txt' | sort) | while read -r f; do
            cp "$1/_sources/$f" "$2/$(echo "${f#./}" | tr '/' '_')"
        done
    }
    copy_sources /usr/share/doc/linux-doc-6.1/html "$raw/4_linux"
    copy_sources /usr/share/doc/python3.11/html "$raw/5_python"
    for src in "$raw"/*/; do
        mkdir -p "$held/$(basename "$src")"
        find "$src" -name '*.txt' | sort | awk 'NR % 50 == 0' | while read -r f; do mv "$f" "$held/$(basename "$src")/"; done
    done
    cat "$held/5_python"/*.txt > "$out/essay.txt"  # held-out prose: the RULER haystack (eval -e)
    touch "$raw/.complete"
fi
echo "raw text: train $(du -sh "$raw" | cut -f1) in $(find "$raw" -name '*.txt' | wc -l) documents," \
     "held out $(du -sh "$held" | cut -f1) in $(find "$held" -name '*.txt' | wc -l)"

make -s build/prepare
build/prepare -o "$out/text" -s "$SHARD" -v "$VOCAB" -V 0 "$raw"
build/prepare -o "$out/val" -t "$out/text/tokenizer.bin" -V 1000000000000 "$held"
build/prepare -o "$out/recall" -s "$SHARD" -t "$out/text/tokenizer.bin" -L "$RECALL_LEN" -F "$FACTS" -Q "$RECALL_STYLE" -V 0 "$raw"
# held-out recall documents (other keys and values: seed 2) and one retrieval probe per document for eval -R
build/prepare -o "$out/recall_val" -t "$out/text/tokenizer.bin" -L "$RECALL_LEN" -F "$FACTS" -Q "$RECALL_STYLE" -S 2 \
    -V 1000000000000 -P "$out/recall_probes.jsonl" "$held"
if [ "$SHORT_LEN" -gt 0 ]; then  # short recall documents: retrieval over short distances first shows the model the task
    build/prepare -o "$out/recall_short" -s "$SHARD" -t "$out/text/tokenizer.bin" -L "$SHORT_LEN" -F "$SHORT_FACTS" -Q "$RECALL_STYLE" -V 0 "$raw"
fi
echo "shards: $out/text and $out/recall* (train), $out/val (val); tokenizer $out/text/tokenizer.bin"
