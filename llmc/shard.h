/*
 Token shard files (.bin): a 64-byte little-endian header, then num_tokens tokens of token_bytes each.
   offset  0  u32  magic        0x4D4F4254 ("TBOM" on disk: bytes 54 42 4F 4D)
   offset  4  u32  version      1
   offset  8  u32  token_bytes  2 (uint16 tokens) or 4 (uint32 tokens)
   offset 12  u32  vocab_size   size of the vocabulary the tokens were made with (0 = unknown)
   offset 16  u64  num_tokens
   offset 24  ..   zero up to byte 64
 The file size must be exactly 64 + num_tokens * token_bytes. Full description in doc/formats.md.
*/
#ifndef LLMC_SHARD_H
#define LLMC_SHARD_H

#include <stdint.h>
#include "utils.h"

#define SHARD_MAGIC 0x4D4F4254u
#define SHARD_VERSION 1u
#define SHARD_HEADER_BYTES 64

typedef struct {
    uint32_t magic;
    uint32_t version;
    uint32_t token_bytes;
    uint32_t vocab_size;
    uint64_t num_tokens;
    uint8_t reserved[SHARD_HEADER_BYTES - 24];
} ShardHeader;

STATIC_ASSERT(sizeof(ShardHeader) == SHARD_HEADER_BYTES, "shard header must be 64 bytes");

// Reads and validates the header of an open shard; dies naming the file and the problem.
static inline ShardHeader shard_read_header(FILE *f, const char *path) {
    ShardHeader h;
    long long size = file_size_check(f, path);
    if (size < SHARD_HEADER_BYTES) {
        die("shard '%s' is truncated: %lld bytes, smaller than the %d-byte header", path, size, SHARD_HEADER_BYTES);
    }
    fread_check(&h, sizeof(h), 1, f, path);
    if (h.magic != SHARD_MAGIC) {
        die("shard '%s' has bad magic 0x%08X (expected 0x%08X): not a moba.c token shard", path, h.magic, SHARD_MAGIC);
    }
    if (h.version != SHARD_VERSION) { die("shard '%s' has version %u; this build reads version %u", path, h.version, SHARD_VERSION); }
    if (h.token_bytes != 2 && h.token_bytes != 4) { die("shard '%s' has token width %u bytes; must be 2 or 4", path, h.token_bytes); }
    uint64_t have = (uint64_t)(size - SHARD_HEADER_BYTES) / h.token_bytes;  // whole tokens in the file
    if (h.num_tokens != have || (size - SHARD_HEADER_BYTES) % h.token_bytes != 0) {
        die("shard '%s' is %s: header says %llu tokens of %u bytes but the file has %lld bytes after the header", path,
            h.num_tokens > have ? "truncated" : "too long", (unsigned long long)h.num_tokens, h.token_bytes, size - SHARD_HEADER_BYTES);
    }
    return h;
}

// Token i of raw shard data with the given token width.
static inline uint32_t shard_token(const unsigned char *raw, uint32_t token_bytes, size_t i) {
    if (token_bytes == 2) { uint16_t v; memcpy(&v, raw + 2 * i, 2); return v; }
    uint32_t v; memcpy(&v, raw + 4 * i, 4); return v;
}

// Checks every token of an open shard (header already read) is below vocab_size, reading it once in
// chunks; dies naming the shard, the token's index and value. The stream is left at the end.
static inline void shard_check_tokens(FILE *f, const char *path, const ShardHeader *h, uint32_t vocab_size) {
    unsigned char buf[1 << 16];
    uint64_t per_chunk = sizeof(buf) / h->token_bytes;
    fseek_check(f, SHARD_HEADER_BYTES, SEEK_SET, path);
    for (uint64_t first = 0; first < h->num_tokens; first += per_chunk) {
        uint64_t n = h->num_tokens - first < per_chunk ? h->num_tokens - first : per_chunk;
        fread_check(buf, h->token_bytes, (size_t)n, f, path);
        for (uint64_t i = 0; i < n; i++) {
            uint32_t tok = shard_token(buf, h->token_bytes, (size_t)i);
            if (tok >= vocab_size) {
                die("shard '%s': token %llu has value %u, not below the vocab size %u (a bigger vocabulary: -V)", path,
                    (unsigned long long)(first + i), tok, vocab_size);
            }
        }
    }
}

// Writes tokens (given as uint32) as a shard, crash-safe. token_bytes 2 needs every token < 65536.
static inline void shard_write(const char *path, const uint32_t *tokens, uint64_t n, uint32_t token_bytes, uint32_t vocab_size) {
    ShardHeader h;
    memset(&h, 0, sizeof(h));
    h.magic = SHARD_MAGIC; h.version = SHARD_VERSION; h.token_bytes = token_bytes;
    h.vocab_size = vocab_size; h.num_tokens = n;
    AtomicFile af;
    atomic_open(&af, path);
    atomic_write(&af, &h, sizeof(h), 1);
    if (token_bytes == 4) {
        atomic_write(&af, tokens, sizeof(uint32_t), n);
    } else {
        uint16_t buf[4096];
        for (uint64_t i = 0; i < n; i += 4096) {
            uint64_t m = n - i < 4096 ? n - i : 4096;
            for (uint64_t j = 0; j < m; j++) {
                if (tokens[i + j] > 65535u) { die("token %u at %llu does not fit a 2-byte shard '%s'", tokens[i + j], (unsigned long long)(i + j), path); }
                buf[j] = (uint16_t)tokens[i + j];
            }
            atomic_write(&af, buf, sizeof(uint16_t), m);
        }
    }
    atomic_close(&af);
}

#endif // LLMC_SHARD_H
