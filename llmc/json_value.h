/*
 JSON values as a tree, for evaluation data (LongBench records, multiple-choice sets): one JSON object per
 JSONL line parsed into JValue (null, bool, number, string, array, object), lookups by key, typed field
 getters that die naming file:line and the field, and a JSON string writer for result files.
 Strings, numbers and whitespace use the scanner of llmc/jsonl.h (full escape handling, byte columns).
*/
#ifndef LLMC_JSON_VALUE_H
#define LLMC_JSON_VALUE_H

#include <stdio.h>
#include <stdlib.h>
#include "jsonl.h"
#include "unicode.h"
#include "utils.h"

enum { JV_NULL, JV_BOOL, JV_NUM, JV_STR, JV_ARR, JV_OBJ };

typedef struct JValue {
    int kind;
    double num;             // JV_NUM, JV_BOOL (0/1)
    char *str;              // JV_STR, NUL-terminated (may hold NULs from \u0000; len is exact)
    size_t len;
    struct JValue *items;   // JV_ARR, JV_OBJ: n values
    char **keys;            // JV_OBJ: n keys
    int n;
} JValue;

static inline void jv_free(JValue *v) {
    for (int i = 0; i < v->n; i++) { jv_free(&v->items[i]); if (v->keys) { free(v->keys[i]); } }
    free(v->items); free(v->keys); free(v->str);
    memset(v, 0, sizeof(*v));
}

static inline int jv_string_at(JsonParser *p, char **out, size_t *len) {
    size_t start = p->i;
    if (!json_string(p, NULL, 0, len)) { return 0; }
    p->i = start;
    *out = (char *)malloc_check(*len + 1);
    json_string(p, (unsigned char *)*out, *len, len);
    (*out)[*len] = '\0';
    return 1;
}

static inline void jv_push(JValue *v, int *cap) {
    if (v->n == *cap) {
        *cap = *cap ? 2 * *cap : 4;
        v->items = (JValue *)realloc(v->items, (size_t)*cap * sizeof(JValue));
        if (v->kind == JV_OBJ) { v->keys = (char **)realloc(v->keys, (size_t)*cap * sizeof(char *)); }
        if (!v->items || (v->kind == JV_OBJ && !v->keys)) { die("out of host memory parsing JSON"); }
    }
    memset(&v->items[v->n], 0, sizeof(JValue));
    if (v->kind == JV_OBJ) { v->keys[v->n] = NULL; }
    v->n++;
}

static inline int jv_parse_value(JsonParser *p, JValue *v, int depth) {
    memset(v, 0, sizeof(*v));
    if (depth > JSON_MAX_DEPTH) { return json_fail(p, "nesting deeper than 128 levels"); }
    json_ws(p);
    if (p->i >= p->n) { return json_fail(p, "expected a value"); }
    unsigned char c = p->s[p->i];
    if (c == '"') { v->kind = JV_STR; return jv_string_at(p, &v->str, &v->len); }
    if (c == '{' || c == '[') {
        v->kind = c == '{' ? JV_OBJ : JV_ARR;
        unsigned char close = c == '{' ? '}' : ']';
        int cap = 0;
        p->i++;
        json_ws(p);
        if (p->i < p->n && p->s[p->i] == close) { p->i++; return 1; }
        for (;;) {
            jv_push(v, &cap);
            json_ws(p);
            if (v->kind == JV_OBJ) {
                size_t klen;
                if (p->i >= p->n || p->s[p->i] != '"') { return json_fail(p, "expected a string key"); }
                if (!jv_string_at(p, &v->keys[v->n - 1], &klen)) { return 0; }
                json_ws(p);
                if (p->i >= p->n || p->s[p->i] != ':') { return json_fail(p, "expected ':' after key"); }
                p->i++;
            }
            if (!jv_parse_value(p, &v->items[v->n - 1], depth + 1)) { return 0; }
            json_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
            if (p->i < p->n && p->s[p->i] == close) { p->i++; return 1; }
            return json_fail(p, close == '}' ? "expected ',' or '}' in object" : "expected ',' or ']' in array");
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        size_t start = p->i;
        if (!json_number(p)) { return 0; }
        char tmp[64];
        size_t k = p->i - start < sizeof(tmp) - 1 ? p->i - start : sizeof(tmp) - 1;
        memcpy(tmp, p->s + start, k); tmp[k] = '\0';
        v->kind = JV_NUM; v->num = strtod(tmp, NULL);
        return 1;
    }
    static const char *lits[3] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if (p->i + l <= p->n && memcmp(p->s + p->i, lits[k], l) == 0) {
            p->i += l;
            v->kind = k == 2 ? JV_NULL : JV_BOOL; v->num = k == 0;
            return 1;
        }
    }
    return json_fail(p, "invalid value");
}

// Parses line[0..n) as one JSON object. Dies with "where:line:column: reason" when it is not one.
static inline void jv_parse_object_line(JValue *v, const unsigned char *line, size_t n, const char *where, uint64_t lineno) {
    JsonParser p = {line, n, 0, NULL};
    memset(v, 0, sizeof(*v));
    json_ws(&p);
    if (p.i >= n || line[p.i] != '{') { json_fail(&p, "line is not a JSON object"); }
    else if (jv_parse_value(&p, v, 0)) {
        json_ws(&p);
        if (p.i < n) { json_fail(&p, "trailing characters after the JSON object"); }
    }
    if (p.err) { jv_free(v); die("%s:%llu:%zu: malformed JSONL record: %s", where, (unsigned long long)lineno, p.i + 1, p.err); }
}

// Parses a whole file as one JSON value; dies with the byte offset of the first problem.
static inline void jv_parse_file(JValue *v, const char *path) {
    FILE *f = fopen_check(path, "rb");
    long long size = file_size_check(f, path);
    unsigned char *buf = (unsigned char *)malloc_check((size_t)size + 1);
    fread_check(buf, 1, (size_t)size, f, path);
    fclose(f);
    JsonParser p = {buf, (size_t)size, 0, NULL};
    if (jv_parse_value(&p, v, 0)) {
        json_ws(&p);
        if (p.i < p.n) { json_fail(&p, "trailing characters after the JSON value"); }
    }
    if (p.err) { jv_free(v); die("%s: byte %zu: malformed JSON: %s", path, p.i + 1, p.err); }
    free(buf);
}

static inline const JValue *jv_get(const JValue *obj, const char *key) {
    if (obj->kind != JV_OBJ) { return NULL; }
    const JValue *found = NULL;
    for (int i = 0; i < obj->n; i++) { if (strcmp(obj->keys[i], key) == 0) { found = &obj->items[i]; } }  // last wins, as Python's json
    return found;
}

// Typed field access for records: dies "where:line: field 'key' ..." when missing or of the wrong type.
static inline const JValue *jv_field(const JValue *obj, const char *key, int kind, const char *where, uint64_t line) {
    static const char *names[6] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    const JValue *v = jv_get(obj, key);
    if (!v) { die("%s:%llu: field '%s' is missing", where, (unsigned long long)line, key); }
    if (v->kind != kind) { die("%s:%llu: field '%s' must be %s, got %s", where, (unsigned long long)line, key, names[kind], names[v->kind]); }
    return v;
}

static inline char *jv_strdup_field(const JValue *obj, const char *key, const char *where, uint64_t line) {
    const JValue *v = jv_field(obj, key, JV_STR, where, line);
    char *s = (char *)malloc_check(v->len + 1);
    memcpy(s, v->str, v->len + 1);
    return s;
}

// An array of strings (or null / absent when allow_null): copies into *out, returns the count.
static inline int jv_string_array(const JValue *obj, const char *key, char ***out, int allow_null, const char *where, uint64_t line) {
    const JValue *v = jv_get(obj, key);
    *out = NULL;
    if (allow_null && (!v || v->kind == JV_NULL)) { return 0; }
    v = jv_field(obj, key, JV_ARR, where, line);
    *out = (char **)malloc_check((size_t)(v->n ? v->n : 1) * sizeof(char *));
    for (int i = 0; i < v->n; i++) {
        if (v->items[i].kind != JV_STR) { die("%s:%llu: field '%s' must be an array of strings (item %d is not)", where, (unsigned long long)line, key, i); }
        (*out)[i] = (char *)malloc_check(v->items[i].len + 1);
        memcpy((*out)[i], v->items[i].str, v->items[i].len + 1);
    }
    return v->n;
}

static inline void free_strings(char **s, int n) { for (int i = 0; i < n; i++) { free(s[i]); } free(s); }

// Writes s[0..n) as a JSON string literal; bytes that are not valid UTF-8 become U+FFFD (as Python's
// errors="replace"), so generated text cut mid-character still gives valid JSON.
static inline void json_write_string(FILE *f, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        int k = utf8_valid_len(u, n, i);
        if (k == 0) { fputs("\\ufffd", f); i++; continue; }
        if (k > 1) { fwrite(u + i, 1, (size_t)k, f); i += (size_t)k; continue; }
        if (c == '"' || c == '\\') { fputc('\\', f); fputc(c, f); }
        else if (c == '\n') { fputs("\\n", f); }
        else if (c == '\t') { fputs("\\t", f); }
        else if (c == '\r') { fputs("\\r", f); }
        else if (c < 0x20) { fprintf(f, "\\u%04x", c); }
        else { fputc(c, f); }
        i++;
    }
    fputc('"', f);
}

// Calls fn(record, line, ctx) for each JSON object line of a .jsonl file (blank lines skipped).
static inline int jsonl_for_each(const char *path, void (*fn)(const JValue *, const char *, uint64_t, void *), void *ctx) {
    CorpusFiles cf;
    char *paths[1] = {(char *)path};
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) { die("JSONL file '%s' does not exist", path); }
    if (!corpus_is_jsonl(path)) { die("'%s': expected a .jsonl file", path); }
    corpus_list(&cf, paths, 1);
    CorpusReader r;
    CorpusPos start = {0, 0, 1}, at;
    corpus_reader_open(&r, &cf, start);
    const unsigned char *rec;
    size_t len;
    int count = 0;
    while (corpus_reader_next(&r, &rec, &len, &at)) {
        JValue v;
        jv_parse_object_line(&v, rec, len, path, at.line);
        fn(&v, path, at.line, ctx);
        jv_free(&v);
        count++;
    }
    corpus_reader_close(&r);
    corpus_files_free(&cf);
    return count;
}

#endif // LLMC_JSON_VALUE_H
