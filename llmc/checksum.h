/*
 Checksum64: a streaming 64-bit checksum of 4-byte words, for detecting damaged files (checkpoints).
 Word i goes to lane i % 4: lane = (lane ^ word) * K + i, four independent multiply chains so it runs
 at several GB/s; the final value mixes the four lanes and the word count. Each lane step is a bijection
 of the lane for a fixed word, so any single changed word always changes the result, and random damage
 goes unnoticed with probability about 2^-64. The result does not depend on how the data is split into
 checksum_update calls, as long as every piece is a whole number of words. Not cryptographic.
*/
#ifndef LLMC_CHECKSUM_H
#define LLMC_CHECKSUM_H

#include <stdint.h>
#include <string.h>
#include "utils.h"

typedef struct { uint64_t lane[4], words; } Checksum64;

static inline void checksum_init(Checksum64 *c) {
    c->lane[0] = 0x9E3779B97F4A7C15ull; c->lane[1] = 0xC2B2AE3D27D4EB4Full;
    c->lane[2] = 0x165667B19E3779F9ull; c->lane[3] = 0x85EBCA77C2B2AE63ull;
    c->words = 0;
}

static inline void checksum_update(Checksum64 *c, const void *data, size_t bytes) {
    if (bytes % 4 != 0) { die("checksum_update: %zu bytes is not a whole number of 4-byte words", bytes); }
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < bytes; i += 4) {
        uint32_t w;
        memcpy(&w, p + i, 4);
        uint64_t *lane = &c->lane[c->words & 3];
        *lane = (*lane ^ w) * 0x9FB21C651E98DF25ull + c->words;
        c->words++;
    }
}

static inline uint64_t checksum_final(const Checksum64 *c) {
    uint64_t h = c->words * 0xD6E8FEB86659FD93ull;
    for (int i = 0; i < 4; i++) {
        h ^= c->lane[i];
        h = (h ^ (h >> 32)) * 0xD6E8FEB86659FD93ull;
        h ^= h >> 29;
    }
    return h;
}

#endif // LLMC_CHECKSUM_H
