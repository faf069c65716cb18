#!/usr/bin/env bash
# Cross-checks of moba.c's SentencePiece and tokenizer.json readers (build/tokenize) against
# implementations that are not ours; installs them itself (CI is a fresh machine):
#   - Debian's python3-sentencepiece: small BPE models trained here with Llama-2's settings (+ a unigram
#     model that must be refused), ~3 MB of varied text incl. invalid UTF-8 (dev/tokenizer/sp_crosscheck.py);
#   - npm's llama-tokenizer-js: the real Llama vocabulary, the package's own test cases
#     (dev/tokenizer/llama_js_check.mjs), and SentencePiece itself on that extracted model;
#   - npm's gpt-tokenizer: GPT-2 and cl100k tokenizer.json files built from its rank tables
#     (dev/tokenizer/gpt_check.mjs).
# Token ids must be identical. An install that fails is a failure, never a skip. Prints the
# "N passed, N failed" line that dev/test/run_tests.sh sums.
set -uo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d /tmp/tokenizer_crosscheck.XXXXXX)
trap 'rm -rf "$work"' EXIT
npm_prefix=build/npm_tokenizer_check
total_pass=0; total_fail=0
fail() { echo "FAIL $*"; total_fail=$((total_fail + 1)); }
tally() {  # adds the summary line of a sub-check's output
    local line; line=$(echo "$1" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    echo "$1" | grep -v -E '^[0-9]+ passed, [0-9]+ failed'
    if [ -z "$line" ]; then fail "$2 printed no summary"; return; fi
    total_pass=$((total_pass + $(echo "$line" | awk '{print $1}'))); total_fail=$((total_fail + $(echo "$line" | awk '{print $3}')))
}
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

make -s build/tokenize || fail "build/tokenize does not build"
if ! /usr/bin/python3 -c 'import sentencepiece' 2>/dev/null; then
    (as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-sentencepiece) >"$work/apt.log" 2>&1 ||
        { tail -n 5 "$work/apt.log"; fail "apt-get install python3-sentencepiece failed"; }
fi
if [ ! -d "$npm_prefix/node_modules/llama-tokenizer-js" ] || [ ! -d "$npm_prefix/node_modules/gpt-tokenizer" ]; then
    mkdir -p "$npm_prefix"
    npm install --prefix "$npm_prefix" --no-audit --no-fund llama-tokenizer-js@1.2.2 gpt-tokenizer@2.9.0 >"$work/npm.log" 2>&1 ||
        { tail -n 5 "$work/npm.log"; fail "npm install llama-tokenizer-js gpt-tokenizer failed"; }
fi

/usr/bin/python3 dev/tokenizer/varied_text.py "$work/varied.txt" 3 || fail "varied_text.py"
/usr/bin/python3 dev/tokenizer/varied_text.py "$work/valid.txt" 1 --valid-utf8 || fail "varied_text.py --valid-utf8"
tally "$(node dev/tokenizer/llama_js_check.mjs "$npm_prefix" "$work" "$work/valid.txt" 2>&1)" llama_js_check.mjs
tally "$(/usr/bin/python3 dev/tokenizer/sp_crosscheck.py "$work" "$work/varied.txt" "$work/llama.model" 2>&1)" sp_crosscheck.py
tally "$(node dev/tokenizer/gpt_check.mjs "$npm_prefix" "$work" "$work/valid.txt" 2>&1)" gpt_check.mjs
echo "${total_pass} passed, ${total_fail} failed"
[ "$total_fail" -eq 0 ]
