#!/usr/bin/env bash
# CI cross-check of the evaluation's scoring rules against Python references (dev/eval/crosscheck.py):
# installs Debian's python3-fuzzywuzzy and python3-levenshtein (the fuzz.ratio LongBench's code_sim uses)
# when missing, builds build/metrics_cli, compares a few thousand generated cases and prints
# "N passed, N failed". A failed install fails the check (it never skips).
set -uo pipefail
cd "$(dirname "$0")/../.."
py=/usr/bin/python3
if ! "$py" -c "import fuzzywuzzy, Levenshtein" 2>/dev/null; then
    sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
    if ! ($sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-fuzzywuzzy python3-levenshtein) >/tmp/crosscheck_apt.log 2>&1 \
       || ! "$py" -c "import fuzzywuzzy, Levenshtein"; then
        echo "!!! crosscheck: could not install python3-fuzzywuzzy and python3-levenshtein (log: /tmp/crosscheck_apt.log)"
        tail -n 5 /tmp/crosscheck_apt.log
        echo "0 passed, 1 failed"
        exit 1
    fi
fi
make -s build/metrics_cli || { echo "0 passed, 1 failed"; exit 1; }
exec "$py" dev/eval/crosscheck.py build/metrics_cli 600
