/*
 Unicode text handling, the way Python 3 does it on str: UTF-8 decoding with errors="replace" (each
 maximal invalid subsequence becomes one U+FFFD), the character classes of str.isspace(), re's \w and \d
 and str.lower() / the title case str.capitalize() puts on the first character (what the evaluation
 metrics need), and the Unicode categories letter (L*) and number (N*) (the \p{L} and \p{N} of the
 tokenizer.json pre-tokenizers, llmc/hf_tokenizer.h), over all of Unicode (tables in
 tables/unicode_tables.h, generated from Python's unicodedata by dev/eval/gen_unicode_tables.py). Text is
 held as code point arrays (CpStr).
 Not reproduced: the context-dependent lower case of capital sigma (Python writes a final sigma at the
 end of a word; here it is always U+03C3).
*/
#ifndef LLMC_UNICODE_H
#define LLMC_UNICODE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tables/unicode_tables.h"
#include "utils.h"

typedef struct { uint32_t *c; int n, cap; } CpStr;

static inline void cps_push(CpStr *s, uint32_t cp) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->c = (uint32_t *)realloc(s->c, (size_t)s->cap * sizeof(uint32_t));
        if (!s->c) { die("out of host memory decoding text"); }
    }
    s->c[s->n++] = cp;
}

// The byte length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 when s does not start one; *cp gets
// the code point. *valid_prefix gets how many bytes form a valid start of a sequence (what Python's
// decoder replaces by one U+FFFD).
static inline int utf8_sequence(const unsigned char *s, size_t n, uint32_t *cp, int *valid_prefix) {
    unsigned char b = s[0];
    *valid_prefix = 1;
    if (b < 0x80) { *cp = b; return 1; }
    int len = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
    if (len == 0) { return 0; }
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (b == 0xE0) { lo = 0xA0; } else if (b == 0xED) { hi = 0x9F; } else if (b == 0xF0) { lo = 0x90; } else if (b == 0xF4) { hi = 0x8F; }
    uint32_t v = b & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n || s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xBF)) { return 0; }
        v = (v << 6) | (s[i] & 0x3F);
        *valid_prefix = i + 1;
    }
    *cp = v;
    return len;
}

// The byte length of the valid UTF-8 character at s[i] (1-4, i < n), or 0 when the bytes there are not
// valid UTF-8.
static inline int utf8_valid_len(const unsigned char *s, size_t n, size_t i) {
    uint32_t cp;
    int prefix;
    return utf8_sequence(s + i, n - i, &cp, &prefix);
}

// Decodes UTF-8 as Python's bytes.decode("utf-8", "replace") does.
static inline CpStr cps_from_utf8(const char *text, size_t n) {
    CpStr s = {NULL, 0, 0};
    const unsigned char *p = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int prefix, len = utf8_sequence(p + i, n - i, &cp, &prefix);
        if (len) { cps_push(&s, cp); i += (size_t)len; }
        else { cps_push(&s, 0xFFFD); i += (size_t)prefix; }
    }
    return s;
}

static inline CpStr cps_from_cstr(const char *text) { return cps_from_utf8(text, strlen(text)); }

static inline int utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) { out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[2] = (char)(0x80 | (cp & 0x3F)); return 3; }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Encodes s[0..n) as a NUL-terminated UTF-8 string (malloc'd).
static inline char *cps_to_utf8(const uint32_t *s, int n) {
    char *out = (char *)malloc_check((size_t)n * 4 + 1);
    size_t m = 0;
    for (int i = 0; i < n; i++) { m += (size_t)utf8_put(s[i], out + m); }
    out[m] = '\0';
    return out;
}

// s as UTF-8 (malloc'd); frees s.
static inline char *cps_release_utf8(CpStr *s) {
    char *out = cps_to_utf8(s->c, s->n);
    free(s->c);
    memset(s, 0, sizeof(*s));
    return out;
}

// Text with invalid UTF-8 replaced as Python decodes it (malloc'd), so byte-level substring tests agree
// with Python's str ones.
static inline char *utf8_clean(const char *text) {
    CpStr s = cps_from_cstr(text);
    return cps_release_utf8(&s);
}

#define UC_COUNT(t) ((int)(sizeof(t) / sizeof(t[0])))

static inline int uc_in_ranges(const uint32_t (*r)[2], int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid][0]) { hi = mid - 1; } else if (cp > r[mid][1]) { lo = mid + 1; } else { return 1; }
    }
    return 0;
}

static inline int uc_is_space(uint32_t cp) { return uc_in_ranges(uc_space_ranges, UC_COUNT(uc_space_ranges), cp); }
static inline int uc_is_word(uint32_t cp) { return uc_in_ranges(uc_word_ranges, UC_COUNT(uc_word_ranges), cp); }
static inline int uc_is_decimal(uint32_t cp) { return uc_in_ranges(uc_decimal_ranges, UC_COUNT(uc_decimal_ranges), cp); }
static inline int uc_is_letter(uint32_t cp) { return uc_in_ranges(uc_letter_ranges, UC_COUNT(uc_letter_ranges), cp); }
static inline int uc_is_number(uint32_t cp) { return uc_in_ranges(uc_number_ranges, UC_COUNT(uc_number_ranges), cp); }

// The case mapping of one code point into out[3]; returns its length (1 when unchanged).
static inline int uc_map_case(const int32_t (*runs)[4], int nruns, const int32_t (*special)[4], int nspecial, uint32_t cp, uint32_t out[3]) {
    for (int i = 0; i < nspecial; i++) {
        if ((uint32_t)special[i][0] == cp) {
            int n = 0;
            while (n < 3 && special[i][1 + n]) { out[n] = (uint32_t)special[i][1 + n]; n++; }
            return n;
        }
    }
    int lo = 0, hi = nruns - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < (uint32_t)runs[mid][0]) { hi = mid - 1; }
        else if (cp > (uint32_t)runs[mid][1]) { lo = mid + 1; }
        else {
            if ((cp - (uint32_t)runs[mid][0]) % (uint32_t)runs[mid][3] == 0) { cp = (uint32_t)((int32_t)cp + runs[mid][2]); }
            break;
        }
    }
    out[0] = cp;
    return 1;
}

static inline int uc_lower(uint32_t cp, uint32_t out[3]) {
    if (cp < 0x80) { out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp; return 1; }
    return uc_map_case(uc_lower_runs, UC_COUNT(uc_lower_runs), uc_lower_special, UC_COUNT(uc_lower_special), cp, out);
}

static inline int uc_title(uint32_t cp, uint32_t out[3]) {
    return uc_map_case(uc_title_runs, UC_COUNT(uc_title_runs), uc_title_special, UC_COUNT(uc_title_special), cp, out);
}

// str.lower() of s[0..n).
static inline CpStr cps_lower(const uint32_t *s, int n) {
    CpStr out = {NULL, 0, 0};
    for (int i = 0; i < n; i++) {
        uint32_t m[3];
        int k = uc_lower(s[i], m);
        for (int j = 0; j < k; j++) { cps_push(&out, m[j]); }
    }
    return out;
}

// str.capitalize(): the first character in title case, the rest lower case (malloc'd UTF-8).
static inline char *utf8_capitalize(const char *text) {
    CpStr s = cps_from_cstr(text), out = {NULL, 0, 0};
    for (int i = 0; i < s.n; i++) {
        uint32_t m[3];
        int k = i == 0 ? uc_title(s.c[0], m) : uc_lower(s.c[i], m);
        for (int j = 0; j < k; j++) { cps_push(&out, m[j]); }
    }
    free(s.c);
    return cps_release_utf8(&out);
}

// The byte length of the whitespace character (str.isspace()) that starts the UTF-8 text p, else 0.
static inline int utf8_space_len(const char *p) {
    uint32_t cp;
    int prefix, len = utf8_sequence((const unsigned char *)p, strnlen(p, 4), &cp, &prefix);
    return len && uc_is_space(cp) ? len : 0;
}

// Python len(str) of UTF-8 text: its code points, invalid bytes decoded as replacement characters.
static inline int utf8_length(const char *text) {
    CpStr s = cps_from_cstr(text);
    free(s.c);
    return s.n;
}

#endif // LLMC_UNICODE_H
