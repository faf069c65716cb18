#!/usr/bin/env bash
# Side-by-side report of run folders (log.txt + eval.json from scripts/eval.sh): report.md + SVG plots.
#   scripts/report.sh OUT_DIR RUN_DIR [RUN_DIR...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: scripts/report.sh OUT_DIR RUN_DIR [RUN_DIR...]" >&2; exit 1; }
CC=${CC:-gcc}
CFLAGS=${CFLAGS:--O2 -Wall -Wextra -Wno-unused-parameter -std=gnu11 -fopenmp}
mkdir -p build
if [ ! -x build/report ] || [ -n "$(find dev/eval/report.c llmc -newer build/report -print -quit)" ]; then
    $CC $CFLAGS -I. -o build/report dev/eval/report.c -lm
fi
out=$1; shift
exec build/report -o "$out" "$@"
