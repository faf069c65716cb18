/*
 Error helpers shared by every host program: checked file I/O and allocation that print what failed,
 where, and exit non-zero, plus the crash-safe "write to temp, fsync, rename" used for every output file.
*/
#ifndef LLMC_UTILS_H
#define LLMC_UTILS_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// C11 and C++ (nvcc) spell compile-time asserts differently.
#ifdef __cplusplus
#define STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

// One clear line on stderr, then exit(1). Every user-facing error goes through here.
static inline void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static inline FILE *fopen_check(const char *path, const char *mode) {
    FILE *f = fopen(path, mode);
    if (f == NULL) { die("cannot open '%s' (mode %s): %s", path, mode, strerror(errno)); }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) { die("'%s' is a directory, not a file", path); }
    return f;
}

static inline void fread_check(void *ptr, size_t size, size_t count, FILE *f, const char *path) {
    size_t got = fread(ptr, size, count, f);
    if (got != count) {
        die("'%s' is truncated: wanted %zu items of %zu bytes, read %zu", path, count, size, got);
    }
}

static inline void fwrite_check(const void *ptr, size_t size, size_t count, FILE *f, const char *path) {
    if (count == 0) { return; }  // an empty array may come as NULL, which fwrite must not be given
    if (fwrite(ptr, size, count, f) != count) { die("write to '%s' failed: %s", path, strerror(errno)); }
}

static inline void fseek_check(FILE *f, long long offset, int whence, const char *path) {
    if (fseeko(f, (off_t)offset, whence) != 0) { die("seek in '%s' failed: %s", path, strerror(errno)); }
}

static inline long long file_size_check(FILE *f, const char *path) {
    fseek_check(f, 0, SEEK_END, path);
    long long size = (long long)ftello(f);
    fseek_check(f, 0, SEEK_SET, path);
    return size;
}

static inline void *malloc_check(size_t size) {
    void *p = malloc(size ? size : 1);
    if (p == NULL) { die("out of host memory allocating %zu bytes", size); }
    return p;
}

static inline void *calloc_check(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL) { die("out of host memory allocating %zu x %zu bytes", count, size); }
    return p;
}

// Crash-safe output: write to "<path>.tmp", then atomic_close() flushes, fsyncs and renames it over
// <path>. A crash at any point leaves either the old file or the complete new one, never a mix.
typedef struct {
    FILE *f;
    char path[1024];
    char tmp_path[1040];
} AtomicFile;

static inline void atomic_open(AtomicFile *af, const char *path) {
    size_t n = strlen(path);
    if (n >= sizeof(af->path)) { die("path too long: '%s'", path); }
    memcpy(af->path, path, n + 1);
    memcpy(af->tmp_path, path, n);
    memcpy(af->tmp_path + n, ".tmp", 5);
    af->f = fopen_check(af->tmp_path, "wb");
}

static inline void atomic_write(AtomicFile *af, const void *ptr, size_t size, size_t count) {
    fwrite_check(ptr, size, count, af->f, af->tmp_path);
}

static inline void atomic_close(AtomicFile *af) {
    if (fflush(af->f) != 0) { die("flush of '%s' failed: %s", af->tmp_path, strerror(errno)); }
    if (fsync(fileno(af->f)) != 0) { die("fsync of '%s' failed: %s", af->tmp_path, strerror(errno)); }
    if (fclose(af->f) != 0) { die("close of '%s' failed: %s", af->tmp_path, strerror(errno)); }
    if (rename(af->tmp_path, af->path) != 0) {
        die("rename '%s' -> '%s' failed: %s", af->tmp_path, af->path, strerror(errno));
    }
    // the rename is durable once the directory entry is on disk too
    char dir[1024];
    const char *slash = strrchr(af->path, '/');
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - af->path) + 1 : 1, slash ? af->path : ".");
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) { fsync(fd); close(fd); }
    af->f = NULL;
}

#endif // LLMC_UTILS_H
