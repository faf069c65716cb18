#!/usr/bin/env bash
# One device call of the ablation study (issue 15) on a machine that keeps nothing between calls and cannot
# download: restores the English raw text, prepares the shards, runs scripts/ablate.sh on each config, and packs
# every sweep folder without its checkpoints (a run with an eval.json is done, so a later call that gets the
# pack back skips it) into $OUT/study.tgz.
#   here:   bash data/prepare_english.sh && mkdir -p carry &&
#           (cd data/english && tar cJf ../../carry/english_raw.tar.xz raw raw_val essay.txt)   (22 MB)
#   device: STUDY_LIMIT=480 bash dev/bench/study_device.sh scripts/ablate/pilot_magic.conf ...
#           (run tool: carry ["carry"]; carry/study.tgz, if present, is a pack of an earlier call)
# Each config's data folder (data/english or data/english_magic, by RECALL_STYLE) is prepared when a config
# names it. STUDY_LIMIT (seconds, default 540) bounds the sweeps: a run cut by it is lost here.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/study_out}; mkdir -p "$out"
limit=${STUDY_LIMIT:-540}; start=$SECONDS
[ -f carry/english_raw.tar.xz ] || { echo "error: carry/english_raw.tar.xz missing (see the top of $0)" >&2; exit 1; }
mkdir -p data/english && tar xJf carry/english_raw.tar.xz -C data/english
if [ -f carry/study.tgz ]; then tar xzf carry/study.tgz; fi
for style in secret magic; do
    dir=data/english; [ $style = secret ] || dir=data/english_$style
    grep -qs "$dir/" "$@" || continue
    if [ $style != secret ]; then
        mkdir -p "$dir"; for f in raw raw_val essay.txt; do ln -sfn "../english/$f" "$dir/$f"; done
    fi
    RECALL_STYLE=$style bash data/prepare_english.sh "$dir" > "$out/prepare_$style.log" 2>&1 || { tail -5 "$out/prepare_$style.log"; exit 1; }
done
echo "data ready after $((SECONDS - start)) s"
for config in "$@"; do
    left=$((limit - (SECONDS - start)))
    [ $left -gt 30 ] || { echo "skipped (time): $config"; continue; }
    timeout $left bash scripts/ablate.sh "$config" || echo "ablate.sh $config: exit $? after $((SECONDS - start)) s"
done
tar czf "$out/study.tgz" --exclude='ckpt_*.bin' runs/ablate
for r in runs/ablate/*/report/*.md; do [ -f "$r" ] && { echo "== $r"; cat "$r"; }; done
