/*
 Corpus input: the documents of a folder of plain-text and JSONL files (doc/tokenizer.md).
 - corpus_list: the input files. A named file is taken as is; a folder contributes every *.jsonl and
   *.txt file under it, recursively, sorted by path. *.jsonl files are JSONL, everything else text.
 - CorpusReader: the raw records in order with their position (file, byte offset, line): a JSONL line
   (blank lines are skipped), or a whole text file (one text file = one document).
 - json_string_field: the decoded value of one string field of a JSON object line, with full escape
   handling (\uXXXX, surrogate pairs); anything that is not one valid JSON object is an error with a
   reason and a byte column. Other fields are validated and skipped. If the field occurs twice the last
   one wins (as Python's json). Decoded strings are bytes: raw non-ASCII bytes pass through unchanged.
*/
#ifndef LLMC_JSONL_H
#define LLMC_JSONL_H

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include "utils.h"

// ----------------------------------------------------------------------------
// JSON: one object per line

typedef struct { const unsigned char *s; size_t n, i; const char *err; } JsonParser;

#define JSON_MAX_DEPTH 128

static inline void json_ws(JsonParser *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\r' || p->s[p->i] == '\n')) { p->i++; }
}

static inline int json_fail(JsonParser *p, const char *msg) { if (!p->err) { p->err = msg; } return 0; }

static inline int json_hex4(JsonParser *p, uint32_t *v) {
    if (p->i + 4 > p->n) { return json_fail(p, "truncated \\u escape"); }
    *v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = p->s[p->i++];
        int d = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
        if (d < 0) { p->i--; return json_fail(p, "bad hex digit in \\u escape"); }
        *v = *v * 16 + (uint32_t)d;
    }
    return 1;
}

// Parses a string at p->i (which must be '"'). Writes up to cap decoded bytes to out (may be NULL) and
// the full decoded length to *len. Returns 1, or 0 with p->err set.
static inline int json_string(JsonParser *p, unsigned char *out, size_t cap, size_t *len) {
    size_t m = 0;
#define JSON_PUT(byte) do { if (m < cap) { out[m] = (unsigned char)(byte); } m++; } while (0)
    if (p->i >= p->n || p->s[p->i] != '"') { return json_fail(p, "expected a string"); }
    p->i++;
    for (;;) {
        if (p->i >= p->n) { return json_fail(p, "unterminated string"); }
        unsigned char c = p->s[p->i];
        if (c == '"') { p->i++; break; }
        if (c < 0x20) { return json_fail(p, "raw control character in string (must be escaped)"); }
        if (c != '\\') { JSON_PUT(c); p->i++; continue; }
        if (p->i + 1 >= p->n) { return json_fail(p, "unterminated escape"); }
        unsigned char e = p->s[p->i + 1];
        p->i += 2;
        switch (e) {
        case '"': JSON_PUT('"'); break;
        case '\\': JSON_PUT('\\'); break;
        case '/': JSON_PUT('/'); break;
        case 'b': JSON_PUT('\b'); break;
        case 'f': JSON_PUT('\f'); break;
        case 'n': JSON_PUT('\n'); break;
        case 'r': JSON_PUT('\r'); break;
        case 't': JSON_PUT('\t'); break;
        case 'u': {
            uint32_t cp;
            if (!json_hex4(p, &cp)) { return 0; }
            if (cp >= 0xDC00 && cp <= 0xDFFF) { return json_fail(p, "unpaired low surrogate in \\u escape"); }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (p->i + 2 > p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') { return json_fail(p, "unpaired high surrogate in \\u escape"); }
                p->i += 2;
                if (!json_hex4(p, &lo)) { return 0; }
                if (lo < 0xDC00 || lo > 0xDFFF) { return json_fail(p, "high surrogate not followed by a low surrogate"); }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80) { JSON_PUT(cp); }
            else if (cp < 0x800) { JSON_PUT(0xC0 | (cp >> 6)); JSON_PUT(0x80 | (cp & 0x3F)); }
            else if (cp < 0x10000) { JSON_PUT(0xE0 | (cp >> 12)); JSON_PUT(0x80 | ((cp >> 6) & 0x3F)); JSON_PUT(0x80 | (cp & 0x3F)); }
            else { JSON_PUT(0xF0 | (cp >> 18)); JSON_PUT(0x80 | ((cp >> 12) & 0x3F)); JSON_PUT(0x80 | ((cp >> 6) & 0x3F)); JSON_PUT(0x80 | (cp & 0x3F)); }
            break;
        }
        default: p->i--; return json_fail(p, "invalid escape character");
        }
    }
#undef JSON_PUT
    *len = m;
    return 1;
}

static inline int json_number(JsonParser *p) {
    size_t start = p->i;
    if (p->i < p->n && p->s[p->i] == '-') { p->i++; }
    size_t d = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') { p->i++; }
    if (p->i == d || (p->s[d] == '0' && p->i - d > 1)) { p->i = start; return json_fail(p, "invalid number"); }
    if (p->i < p->n && p->s[p->i] == '.') {
        d = ++p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') { p->i++; }
        if (p->i == d) { return json_fail(p, "invalid number: no digits after '.'"); }
    }
    if (p->i < p->n && (p->s[p->i] | 0x20) == 'e') {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) { p->i++; }
        d = p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') { p->i++; }
        if (p->i == d) { return json_fail(p, "invalid number: no digits in exponent"); }
    }
    return 1;
}

static inline int json_value(JsonParser *p, int depth);

// Parses an object at p->i. At depth 0, the string value of key `field` is decoded into out.
static inline int json_object(JsonParser *p, int depth, const char *field, unsigned char *out, size_t cap,
                              size_t *out_len, int *found) {
    if (depth > JSON_MAX_DEPTH) { return json_fail(p, "nesting deeper than 128 levels"); }
    p->i++;  // '{'
    json_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') { p->i++; return 1; }
    size_t flen = field ? strlen(field) : 0;
    for (;;) {
        unsigned char key[64];
        size_t klen;
        json_ws(p);
        if (p->i >= p->n || p->s[p->i] != '"') { return json_fail(p, "expected a string key"); }
        if (!json_string(p, key, sizeof(key), &klen)) { return 0; }
        json_ws(p);
        if (p->i >= p->n || p->s[p->i] != ':') { return json_fail(p, "expected ':' after key"); }
        p->i++;
        json_ws(p);
        if (field && klen == flen && flen <= sizeof(key) && memcmp(key, field, flen) == 0) {
            if (p->i >= p->n || p->s[p->i] != '"') { return json_fail(p, "the field is not a string"); }
            if (!json_string(p, out, cap, out_len)) { return 0; }
            *found = 1;
        } else if (!json_value(p, depth + 1)) { return 0; }
        json_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
        if (p->i < p->n && p->s[p->i] == '}') { p->i++; return 1; }
        return json_fail(p, "expected ',' or '}' in object");
    }
}

static inline int json_value(JsonParser *p, int depth) {
    if (depth > JSON_MAX_DEPTH) { return json_fail(p, "nesting deeper than 128 levels"); }
    json_ws(p);
    if (p->i >= p->n) { return json_fail(p, "expected a value"); }
    unsigned char c = p->s[p->i];
    size_t len;
    if (c == '"') { return json_string(p, NULL, 0, &len); }
    if (c == '{') { int found = 0; return json_object(p, depth, NULL, NULL, 0, &len, &found); }
    if (c == '[') {
        p->i++;
        json_ws(p);
        if (p->i < p->n && p->s[p->i] == ']') { p->i++; return 1; }
        for (;;) {
            if (!json_value(p, depth + 1)) { return 0; }
            json_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
            if (p->i < p->n && p->s[p->i] == ']') { p->i++; return 1; }
            return json_fail(p, "expected ',' or ']' in array");
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) { return json_number(p); }
    static const char *lits[3] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if (p->i + l <= p->n && memcmp(p->s + p->i, lits[k], l) == 0) { p->i += l; return 1; }
    }
    return json_fail(p, "invalid value");
}

// Decodes the string field `field` of the JSON object in line[0..n) into out (room for n bytes always
// suffices: decoding never grows a string). Returns the decoded length, or -1 with *err and *col (byte
// column, 1-based) set: the line is not one JSON object, or the field is missing or not a string.
static inline long long json_string_field(const unsigned char *line, size_t n, const char *field,
                                          unsigned char *out, const char **err, size_t *col) {
    JsonParser p = {line, n, 0, NULL};
    size_t len = 0;
    int found = 0;
    json_ws(&p);
    if (p.i >= n || line[p.i] != '{') { json_fail(&p, "line is not a JSON object"); }
    else if (json_object(&p, 0, field, out, n, &len, &found)) {
        json_ws(&p);
        if (p.i < n) { json_fail(&p, "trailing characters after the JSON object"); }
        else if (!found) { json_fail(&p, "the field is missing"); }
    }
    if (p.err) { *err = p.err; *col = p.i + 1; return -1; }
    return (long long)len;
}

// ----------------------------------------------------------------------------
// Corpus files and records

typedef struct { char **paths; int n, cap; } CorpusFiles;

static inline int corpus_is_jsonl(const char *path) {
    size_t l = strlen(path);
    return l >= 6 && strcmp(path + l - 6, ".jsonl") == 0;
}

static inline void corpus_push(CorpusFiles *cf, const char *path) {
    if (cf->n == cf->cap) {
        cf->cap = cf->cap ? 2 * cf->cap : 64;
        cf->paths = (char **)realloc(cf->paths, cf->cap * sizeof(char *));
        if (!cf->paths) { die("out of host memory listing input files"); }
    }
    cf->paths[cf->n] = (char *)malloc_check(strlen(path) + 1);
    strcpy(cf->paths[cf->n++], path);
}

static inline int corpus_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static inline void corpus_walk(CorpusFiles *cf, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { die("cannot open input folder '%s': %s", dir, strerror(errno)); }
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.') { continue; }
        char path[4096];
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, ent->d_name) >= sizeof(path)) { die("path too long under '%s'", dir); }
        struct stat sb;
        if (stat(path, &sb) != 0) { die("cannot stat '%s': %s", path, strerror(errno)); }
        size_t l = strlen(path);
        if (S_ISDIR(sb.st_mode)) { corpus_walk(cf, path); }
        else if (S_ISREG(sb.st_mode) && (corpus_is_jsonl(path) || (l >= 4 && strcmp(path + l - 4, ".txt") == 0))) { corpus_push(cf, path); }
    }
    closedir(d);
}

// The input files of the given paths (files or folders), in order: each argument's files sorted.
static inline void corpus_list(CorpusFiles *cf, char *const *inputs, int ninputs) {
    memset(cf, 0, sizeof(*cf));
    for (int k = 0; k < ninputs; k++) {
        struct stat sb;
        if (stat(inputs[k], &sb) != 0) { die("input '%s' does not exist: %s", inputs[k], strerror(errno)); }
        if (S_ISDIR(sb.st_mode)) {
            int first = cf->n;
            corpus_walk(cf, inputs[k]);
            qsort(cf->paths + first, (size_t)(cf->n - first), sizeof(char *), corpus_cmp);
        } else { corpus_push(cf, inputs[k]); }
    }
    if (cf->n == 0) { die("no input files: give .jsonl/.txt files or folders containing them"); }
}

static inline void corpus_files_free(CorpusFiles *cf) {
    for (int k = 0; k < cf->n; k++) { free(cf->paths[k]); }
    free(cf->paths);
    memset(cf, 0, sizeof(*cf));
}

// Where a record starts: file index, byte offset in it, 1-based line number (1 for text files).
typedef struct { int file; uint64_t offset, line; } CorpusPos;

typedef struct {
    const CorpusFiles *files;
    CorpusPos pos;          // position of the next record
    FILE *f;
    unsigned char *buf; size_t cap;
} CorpusReader;

static inline void corpus_reader_open(CorpusReader *r, const CorpusFiles *files, CorpusPos start) {
    memset(r, 0, sizeof(*r));
    r->files = files;
    r->pos = start;
}

// Next record into *rec / *len (valid until the next call), its position into *at. Returns 0 at the end.
static inline int corpus_reader_next(CorpusReader *r, const unsigned char **rec, size_t *len, CorpusPos *at) {
    while (r->pos.file < r->files->n) {
        const char *path = r->files->paths[r->pos.file];
        if (!r->f) {
            r->f = fopen_check(path, "rb");
            if (r->pos.offset) { fseek_check(r->f, (long long)r->pos.offset, SEEK_SET, path); }
        }
        if (!corpus_is_jsonl(path)) {
            long long size = file_size_check(r->f, path);
            if (r->pos.offset == 0 && size > 0) {
                if ((size_t)size > r->cap) { r->cap = (size_t)size; r->buf = (unsigned char *)realloc(r->buf, r->cap); if (!r->buf) { die("out of host memory reading '%s'", path); } }
                fread_check(r->buf, 1, (size_t)size, r->f, path);
                *rec = r->buf; *len = (size_t)size; *at = r->pos;
                r->pos.offset = (uint64_t)size;
                return 1;
            }
        } else {
            ssize_t got = getline((char **)&r->buf, &r->cap, r->f);
            if (got > 0) {
                *at = r->pos;
                r->pos.offset += (uint64_t)got; r->pos.line++;
                size_t n = (size_t)got;
                while (n > 0 && (r->buf[n - 1] == '\n' || r->buf[n - 1] == '\r')) { n--; }
                if (n == 0) { continue; }
                *rec = r->buf; *len = n;
                return 1;
            }
            if (ferror(r->f)) { die("read error in '%s': %s", path, strerror(errno)); }
        }
        fclose(r->f);
        r->f = NULL;
        r->pos.file++; r->pos.offset = 0; r->pos.line = 1;
    }
    return 0;
}

static inline void corpus_reader_close(CorpusReader *r) {
    if (r->f) { fclose(r->f); }
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

// The document text of a record: a text record as is; a JSONL record's "text" field, decoded into
// scratch (room for len bytes). Returns the length, or -1 after reporting "file:line:column: reason"
// on stderr: as an error that exits when skip_bad is 0, as a warning otherwise.
static inline long long corpus_doc_text(const CorpusFiles *files, CorpusPos at, const unsigned char *rec, size_t len,
                                        unsigned char *scratch, const unsigned char **text, int skip_bad) {
    if (!corpus_is_jsonl(files->paths[at.file])) { *text = rec; return (long long)len; }
    const char *err = NULL;
    size_t col = 0;
    long long n = json_string_field(rec, len, "text", scratch, &err, &col);
    if (n < 0) {
        if (!skip_bad) { die("%s:%llu:%zu: malformed JSONL line (field \"text\"): %s (use -k to skip bad lines)", files->paths[at.file], (unsigned long long)at.line, col, err); }
        fprintf(stderr, "warning: %s:%llu:%zu: malformed JSONL line (field \"text\") skipped: %s\n", files->paths[at.file], (unsigned long long)at.line, col, err);
        return -1;
    }
    *text = scratch;
    return n;
}

#endif // LLMC_JSONL_H
