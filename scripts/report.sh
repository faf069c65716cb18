#!/usr/bin/env bash
# Side-by-side report of run folders (log.txt + eval.json from scripts/eval.sh): report.md + SVG plots.
#   scripts/report.sh OUT_DIR RUN_DIR [RUN_DIR...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: scripts/report.sh OUT_DIR RUN_DIR [RUN_DIR...]" >&2; exit 1; }
make -s build/report
out=$1; shift
exec build/report -o "$out" "$@"
