#!/usr/bin/env bash
# Writes llmc/eval/tables/ruler_words.h: 8192 common-looking English words for RULER's keys and common-word lists,
# drawn deterministically from Debian's wamerican list (installed here if missing; the product only
# reads the committed header). Kept: lowercase a-z words of 4-9 letters, without the inflected forms
# that end in s, ed or ing, so that no answer word is another one plus a suffix; then every k-th word.
#   bash dev/eval/gen_ruler_words.sh > llmc/eval/tables/ruler_words.h
set -euo pipefail
dict=/usr/share/dict/american-english
if [ ! -f "$dict" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wamerican) >&2
fi
words=$(grep -E '^[a-z]{4,9}$' "$dict" | grep -v -E '(s|ed|ing)$' | LC_ALL=C sort -u)
total=$(echo "$words" | wc -l)
want=8192
echo "$words" | awk -v total="$total" -v want="$want" '
BEGIN {
    print "/*"
    print " 8192 English words (from Debian wamerican by dev/eval/gen_ruler_words.sh; do not edit): RULER keys"
    print " are pairs word-word, common-word lists draw from them (llmc/eval/ruler.h)."
    print "*/"
    print "#ifndef LLMC_RULER_WORDS_H\n#define LLMC_RULER_WORDS_H\n"
    printf "#define RULER_NUM_WORDS %d\n\nstatic const char *const ruler_words[RULER_NUM_WORDS] = {\n", want
    line = "   "
}
{
    if (n >= want || int(NR * want / total) == int((NR - 1) * want / total)) { next }
    cell = " \"" $0 "\","
    if (length(line) + length(cell) > 110) { print line; line = "   " }
    line = line cell
    n++
}
END {
    print line
    print "};\n\n#endif // LLMC_RULER_WORDS_H"
    if (n != want) { print "gen_ruler_words.sh: got " n " words, wanted " want > "/dev/stderr"; exit 1 }
}'
