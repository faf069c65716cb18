#!/usr/bin/env bash
# Builds CUDA programs of this tree under extra compile flags, for device calls that compare kernel
# variants with prebuilt binaries (the device machine's time is scarcer than this machine's): each
# argument is OUTPUT=TARGET[:FLAGS], TARGET a Makefile target (train_gpt_moba_cu, test_gpt_moba_cu,
# build/cuda/<name>), FLAGS extra nvcc flags (e.g. -DENABLE_FP32). Runs the Makefile's own command
# with the output renamed, two at a time.
#   usage: bash dev/cuda/build_variants.sh DIR OUTPUT=TARGET[:FLAGS]...
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=$1; shift
mkdir -p "$dir"
pids=()
for spec in "$@"; do
  out=${spec%%=*}; rest=${spec#*=}; target=${rest%%:*}; flags=""
  [ "$rest" != "$target" ] && flags=${rest#*:}
  cmd=$(make -s -n -B "$target" | tail -1)
  [ "${cmd#*-o }" != "$cmd" ] || { echo "no nvcc command for $target"; exit 1; }
  produced=$(echo "$cmd" | sed -E 's/.* -o ([^ ]+) .*/\1/')
  ( eval "${cmd/-o $produced/$flags -o $dir/$out}" > "$dir/$out.build.log" 2>&1 && rm -f "$dir/$out.build.log" \
    || { echo "build of $out failed: $dir/$out.build.log"; exit 1; } ) &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
