"""Writes llmc/unicode_class.h: the code point ranges of the Unicode letter (L*) and number (N*)
categories, from Python's unicodedata, for the \\p{L} and \\p{N} classes of the GPT-2 / Llama-3
pre-tokenizer regexes (llmc/hf_tokenizer.h).
    python3 dev/tokenizer/gen_unicode_class.py > llmc/unicode_class.h
"""
import sys
import unicodedata


def ranges(prefix):
    out, start = [], None
    for cp in range(0x110000):
        inside = unicodedata.category(chr(cp)).startswith(prefix)
        if inside and start is None:
            start = cp
        if not inside and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def table(name, rs):
    rows = ["    {0x%04X, 0x%04X}," % r for r in rs]
    lines = []
    for k in range(0, len(rows), 4):
        lines.append("".join(rows[k:k + 4]).replace(",    ", ", "))
    return "static const uint32_t %s[%d][2] = {\n%s\n};\n" % (name, len(rs), "\n".join(lines))


print("""/*
 Unicode letter (categories L*) and number (N*) code point ranges, sorted, for the \\p{L} and \\p{N}
 classes of the byte-level pre-tokenizers (llmc/hf_tokenizer.h). Generated from Unicode %s by
 dev/tokenizer/gen_unicode_class.py; do not edit by hand.
*/
#ifndef LLMC_UNICODE_CLASS_H
#define LLMC_UNICODE_CLASS_H

#include <stdint.h>
""" % unicodedata.unidata_version)
print(table("unicode_letter_ranges", ranges("L")))
print(table("unicode_number_ranges", ranges("N")))
print("""// 1 if cp lies in one of the n sorted ranges.
static inline int unicode_in_ranges(const uint32_t (*r)[2], int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0]) { hi = mid - 1; } else if (cp > r[mid][1]) { lo = mid + 1; } else { return 1; }
    }
    return 0;
}

#endif // LLMC_UNICODE_CLASS_H""")
