/*
 SentencePiece tokenizer.model reader, encoder and decoder, for BPE models (Llama-2, Mistral): token
 ids identical to SentencePiece's own EncodeAsIds. doc/tokenizer.md describes the format and limits.

 The file is a protobuf ModelProto; the fields read are
   1 pieces (repeated):  1 piece (string), 2 score (float), 3 type (1 normal, 2 unknown, 3 control,
                         4 user-defined, 5 unused, 6 byte)
   2 trainer_spec:       3 model_type (2 = BPE; the default 1 is unigram), 24 treat_whitespace_as_suffix,
                         35 byte_fallback, 41 bos_id, 42 eos_id, 44 unk_surface
   3 normalizer_spec:    1 name, 2 precompiled_charsmap, 3 add_dummy_prefix, 4 remove_extra_whitespaces,
                         5 escape_whitespaces
 and every other field is skipped. Only identity normalization is supported (an empty
 precompiled_charsmap, as Llama-2 ships); a model with a character map, a unigram model, or unused
 pieces is refused with a message naming the setting.

 Encoding, as SentencePiece does it:
   1. normalize: bytes that are not valid UTF-8 become U+FFFD; with remove_extra_whitespaces, leading
      and trailing spaces go and inner runs collapse to one; a "▁" is prepended (add_dummy_prefix) and
      every ' ' becomes "▁" (escape_whitespaces). Empty text gives no tokens.
   2. cut into characters (a user-defined piece, longest first, is one frozen symbol) and merge by BPE:
      a pair merges iff the concatenation is a normal or user-defined piece, highest score first.
   3. a symbol that is not a piece becomes its bytes as <0xNN> pieces (byte_fallback), else <unk>.
 For speed the normalized text is cut into words where no merge can cross (JoinedPairs in
 llmc/piece_bpe.h) and each word is encoded alone, with a per-thread cache of frequent words.
*/
#ifndef LLMC_SENTENCEPIECE_H
#define LLMC_SENTENCEPIECE_H

#include "piece_bpe.h"

#define SP_SPACE "\xE2\x96\x81"  // U+2581 "▁", what spaces become
#define SP_REPLACEMENT "\xEF\xBF\xBD"  // U+FFFD, what invalid UTF-8 bytes become
enum { SP_NORMAL = 1, SP_UNKNOWN = 2, SP_CONTROL = 3, SP_USER_DEFINED = 4, SP_UNUSED = 5, SP_BYTE = 6 };

typedef struct {
    PieceTable pieces;         // the piece strings; the map holds normal and user-defined pieces
    PieceTable surface;        // what each id decodes to ("▁" -> ' ', <0xNN> -> the byte, control -> "")
    float *scores;
    unsigned char *type, *mergeable;
    uint32_t unk, bos, eos;    // UINT32_MAX when the model has none
    uint32_t byte_id[256];     // <0xNN> piece ids, with byte_fallback
    int byte_fallback, add_dummy_prefix, remove_extra_ws, escape_ws;
    JoinedPairs joined;        // where the normalized text can be cut into words
    uint32_t ascii_id[128];    // piece id of each ASCII character (UINT32_MAX: none), saves a lookup
    uint32_t max_user_len;     // longest user-defined piece (0: none)
    unsigned char user_first[256];  // 1 if some user-defined piece starts with this byte
    BpeRules rules;
} SpModel;

// ----------------------------------------------------------------------------
// Protobuf reading: every read checks the bounds and dies with the file and byte offset.

typedef struct { const unsigned char *s; size_t i, end; const char *path; } PbReader;

static inline uint64_t pb_varint(PbReader *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->i >= r->end) { die("sentencepiece model '%s' is truncated: byte %zu: a number runs past the end of its message", r->path, r->i); }
        unsigned char b = r->s[r->i++];
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) { return v; }
    }
    die("sentencepiece model '%s': byte %zu: a varint is longer than 10 bytes (not a protobuf file?)", r->path, r->i);
    return 0;
}

// Reads a field tag; returns 0 at the end of the message.
static inline int pb_field(PbReader *r, uint32_t *field, uint32_t *wire) {
    if (r->i >= r->end) { return 0; }
    uint64_t tag = pb_varint(r);
    *field = (uint32_t)(tag >> 3); *wire = (uint32_t)(tag & 7);
    if (*field == 0) { die("sentencepiece model '%s': byte %zu: field number 0 (not a protobuf file?)", r->path, r->i); }
    return 1;
}

static inline void pb_expect(PbReader *r, const char *name, uint32_t wire, uint32_t want) {
    static const char *wn[6] = {"varint", "fixed64", "length-delimited", "group start", "group end", "fixed32"};
    if (wire != want) {
        die("sentencepiece model '%s': byte %zu: field %s has wire type %u (%s), expected %s", r->path, r->i, name,
            wire, wire < 6 ? wn[wire] : "invalid", wn[want]);
    }
}

// A length-delimited field's payload as a sub-reader.
static inline PbReader pb_sub(PbReader *r) {
    uint64_t len = pb_varint(r);
    if (len > r->end - r->i) { die("sentencepiece model '%s' is truncated: byte %zu: a field of %llu bytes runs past the end of its message", r->path, r->i, (unsigned long long)len); }
    PbReader sub = {r->s, r->i, r->i + (size_t)len, r->path};
    r->i += (size_t)len;
    return sub;
}

static inline void pb_skip(PbReader *r, uint32_t wire) {
    if (wire == 0) { pb_varint(r); return; }
    if (wire == 2) { pb_sub(r); return; }
    size_t len = wire == 1 ? 8 : wire == 5 ? 4 : 0;
    if (len == 0) { die("sentencepiece model '%s': byte %zu: unsupported wire type %u (not a SentencePiece model?)", r->path, r->i, wire); }
    if (len > r->end - r->i) { die("sentencepiece model '%s' is truncated at byte %zu", r->path, r->i); }
    r->i += len;
}

static inline float pb_float(PbReader *r, const char *name, uint32_t wire) {
    pb_expect(r, name, wire, 5);
    if (r->end - r->i < 4) { die("sentencepiece model '%s' is truncated at byte %zu inside %s", r->path, r->i, name); }
    float f;
    memcpy(&f, r->s + r->i, 4);
    r->i += 4;
    return f;
}

static inline uint64_t pb_uint(PbReader *r, const char *name, uint32_t wire) { pb_expect(r, name, wire, 0); return pb_varint(r); }

// ----------------------------------------------------------------------------
// Loading

static inline void sp_free(SpModel *m) {
    piece_table_free(&m->pieces); piece_table_free(&m->surface); joined_free(&m->joined);
    free(m->scores); free(m->type); free(m->mergeable);
    memset(m, 0, sizeof(*m));
}

static inline void sp_load(SpModel *m, const char *path) {
    FILE *f = fopen_check(path, "rb");
    long long size = file_size_check(f, path);
    unsigned char *buf = (unsigned char *)malloc_check((size_t)size);
    fread_check(buf, 1, (size_t)size, f, path);
    fclose(f);
    memset(m, 0, sizeof(*m));
    // defaults of the proto
    int64_t model_type = 1, bos_id = 1, eos_id = 2;
    int whitespace_suffix = 0;
    m->add_dummy_prefix = m->remove_extra_ws = m->escape_ws = 1;
    const unsigned char *unk_surface = (const unsigned char *)" \xE2\x81\x87 ";  // " ⁇ "
    size_t unk_surface_len = 5, charsmap_len = 0;
    size_t cap = 0, n = 0;
    const unsigned char **strs = NULL;
    uint32_t *lens = NULL;
    PbReader top = {buf, 0, (size_t)size, path};
    uint32_t field, wire;
    while (pb_field(&top, &field, &wire)) {
        if (field == 1) {
            pb_expect(&top, "pieces", wire, 2);
            PbReader pr = pb_sub(&top);
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                strs = (const unsigned char **)realloc(strs, cap * sizeof(*strs));
                lens = (uint32_t *)realloc(lens, cap * sizeof(*lens));
                m->scores = (float *)realloc(m->scores, cap * sizeof(float));
                m->type = (unsigned char *)realloc(m->type, cap);
                if (!strs || !lens || !m->scores || !m->type) { die("out of host memory reading '%s'", path); }
            }
            strs[n] = NULL; lens[n] = 0; m->scores[n] = 0.0f; m->type[n] = SP_NORMAL;
            int has_piece = 0;
            while (pb_field(&pr, &field, &wire)) {
                if (field == 1) {
                    pb_expect(&pr, "pieces.piece", wire, 2);
                    PbReader s = pb_sub(&pr);
                    strs[n] = s.s + s.i; lens[n] = (uint32_t)(s.end - s.i); has_piece = 1;
                } else if (field == 2) { m->scores[n] = pb_float(&pr, "pieces.score", wire); }
                else if (field == 3) {
                    uint64_t t = pb_uint(&pr, "pieces.type", wire);
                    if (t < 1 || t > 6) { die("sentencepiece model '%s': piece %zu has type %llu, out of range (1..6)", path, n, (unsigned long long)t); }
                    m->type[n] = (unsigned char)t;
                } else { pb_skip(&pr, wire); }
            }
            if (!has_piece) { die("sentencepiece model '%s': piece %zu has no string", path, n); }
            if (n >= (1u << 30)) { die("sentencepiece model '%s' has more than 2^30 pieces", path); }
            n++;
        } else if (field == 2) {
            pb_expect(&top, "trainer_spec", wire, 2);
            PbReader tr = pb_sub(&top);
            while (pb_field(&tr, &field, &wire)) {
                if (field == 3) { model_type = (int64_t)pb_uint(&tr, "trainer_spec.model_type", wire); }
                else if (field == 24) { whitespace_suffix = pb_uint(&tr, "trainer_spec.treat_whitespace_as_suffix", wire) != 0; }
                else if (field == 35) { m->byte_fallback = pb_uint(&tr, "trainer_spec.byte_fallback", wire) != 0; }
                else if (field == 41) { bos_id = (int32_t)pb_uint(&tr, "trainer_spec.bos_id", wire); }
                else if (field == 42) { eos_id = (int32_t)pb_uint(&tr, "trainer_spec.eos_id", wire); }
                else if (field == 44) {
                    pb_expect(&tr, "trainer_spec.unk_surface", wire, 2);
                    PbReader s = pb_sub(&tr);
                    unk_surface = s.s + s.i; unk_surface_len = s.end - s.i;
                } else { pb_skip(&tr, wire); }
            }
        } else if (field == 3) {
            pb_expect(&top, "normalizer_spec", wire, 2);
            PbReader nr = pb_sub(&top);
            while (pb_field(&nr, &field, &wire)) {
                if (field == 2) { pb_expect(&nr, "normalizer_spec.precompiled_charsmap", wire, 2); PbReader s = pb_sub(&nr); charsmap_len = s.end - s.i; }
                else if (field == 3) { m->add_dummy_prefix = pb_uint(&nr, "normalizer_spec.add_dummy_prefix", wire) != 0; }
                else if (field == 4) { m->remove_extra_ws = pb_uint(&nr, "normalizer_spec.remove_extra_whitespaces", wire) != 0; }
                else if (field == 5) { m->escape_ws = pb_uint(&nr, "normalizer_spec.escape_whitespaces", wire) != 0; }
                else { pb_skip(&nr, wire); }
            }
        } else { pb_skip(&top, wire); }
    }
    // what this reader supports
    if (n == 0) { die("sentencepiece model '%s' has no pieces (not a SentencePiece model?)", path); }
    if (model_type != 2) {
        static const char *names[5] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
        die("sentencepiece model '%s' is a %s model (trainer_spec.model_type = %lld); only BPE models are supported",
            path, model_type >= 1 && model_type <= 4 ? names[model_type] : "unknown", (long long)model_type);
    }
    if (charsmap_len) { die("sentencepiece model '%s' has a normalization character map (normalizer_spec.precompiled_charsmap, %zu bytes); only identity normalization is supported (train with normalization_rule_name=identity, as Llama-2)", path, charsmap_len); }
    if (whitespace_suffix) { die("sentencepiece model '%s' sets trainer_spec.treat_whitespace_as_suffix, which is not supported", path); }
    m->unk = m->bos = m->eos = UINT32_MAX;
    for (uint32_t b = 0; b < 256; b++) { m->byte_id[b] = UINT32_MAX; }
    m->mergeable = (unsigned char *)calloc_check(n, 1);
    unsigned char *in_map = (unsigned char *)calloc_check(n, 1);
    const unsigned char **surf = (const unsigned char **)malloc_check(n * sizeof(*surf));
    uint32_t *surf_len = (uint32_t *)malloc_check(n * sizeof(uint32_t));
    unsigned char *surf_bytes = (unsigned char *)malloc_check(n);  // one byte per byte piece
    for (uint32_t i = 0; i < n; i++) {
        int t = m->type[i];
        surf[i] = strs[i]; surf_len[i] = lens[i];
        if (t == SP_UNUSED) { die("sentencepiece model '%s': piece %u is of type UNUSED, which is not supported", path, i); }
        if (t == SP_NORMAL || t == SP_USER_DEFINED) {
            in_map[i] = m->mergeable[i] = 1;
            if (lens[i] == 0) { die("sentencepiece model '%s': piece %u is empty", path, i); }
            if (t == SP_USER_DEFINED) {
                if (lens[i] > m->max_user_len) { m->max_user_len = lens[i]; }
                m->user_first[strs[i][0]] = 1;
            }
        } else if (t == SP_UNKNOWN) {
            if (m->unk != UINT32_MAX) { die("sentencepiece model '%s': pieces %u and %u are both of type UNKNOWN", path, m->unk, i); }
            m->unk = i; surf[i] = unk_surface; surf_len[i] = (uint32_t)unk_surface_len;
        } else if (t == SP_CONTROL) { surf_len[i] = 0; }
        else if (t == SP_BYTE) {
            int b = piece_byte_value(strs[i], lens[i]);
            if (b < 0) { die("sentencepiece model '%s': piece %u '%.*s' is of type BYTE but is not <0xNN>", path, i, (int)lens[i], (const char *)strs[i]); }
            if (!m->byte_fallback) { die("sentencepiece model '%s': piece %u is a byte piece but trainer_spec.byte_fallback is off", path, i); }
            m->byte_id[b] = i; surf_bytes[i] = (unsigned char)b; surf[i] = surf_bytes + i; surf_len[i] = 1;
        }
    }
    if (m->unk == UINT32_MAX) { die("sentencepiece model '%s' has no piece of type UNKNOWN", path); }
    for (uint32_t b = 0; m->byte_fallback && b < 256; b++) {
        if (m->byte_id[b] == UINT32_MAX) { die("sentencepiece model '%s' has byte_fallback on but no piece <0x%02X>", path, b); }
    }
    if (bos_id >= (int64_t)n || eos_id >= (int64_t)n) { die("sentencepiece model '%s': bos_id %lld or eos_id %lld is out of range (%u pieces)", path, (long long)bos_id, (long long)eos_id, (uint32_t)n); }
    if (bos_id >= 0) { m->bos = (uint32_t)bos_id; }
    if (eos_id >= 0) { m->eos = (uint32_t)eos_id; }
    piece_table_build(&m->pieces, (uint32_t)n, strs, lens, in_map, path);
    // surfaces: "▁" -> ' ' in normal and user-defined pieces
    unsigned char **owned = (unsigned char **)calloc_check(n, sizeof(*owned));
    for (uint32_t i = 0; i < n; i++) {
        if (!in_map[i]) { continue; }
        unsigned char *o = owned[i] = (unsigned char *)malloc_check(lens[i]);
        uint32_t k = 0;
        for (uint32_t j = 0; j < lens[i];) {
            if (m->escape_ws && j + 3 <= lens[i] && memcmp(strs[i] + j, SP_SPACE, 3) == 0) {
                o[k++] = ' '; j += 3;
            } else { o[k++] = strs[i][j++]; }
        }
        surf[i] = o; surf_len[i] = k;
    }
    memset(in_map, 0, n);  // the surface table needs no map
    piece_table_build(&m->surface, (uint32_t)n, surf, surf_len, in_map, path);
    for (uint32_t i = 0; i < n; i++) { free(owned[i]); }
    free(owned); free(in_map); free(surf); free(surf_len); free(surf_bytes); free(strs); free(lens); free(buf);
    m->rules = (BpeRules){&m->pieces, m->scores, m->mergeable, NULL, 0};
    joined_build(&m->joined, &m->pieces, m->mergeable);
    for (unsigned char c = 0; c < 128; c++) { m->ascii_id[c] = piece_find(&m->pieces, &c, 1); }
}

// ----------------------------------------------------------------------------
// Encoding

// Normalizes s[0..n) into out (room for 3 * n + 3 bytes); returns the length.
static inline size_t sp_normalize(const SpModel *m, const unsigned char *s, size_t n, unsigned char *out) {
    size_t i = 0, k = 0;
    if (m->remove_extra_ws) { while (i < n && s[i] == ' ') { i++; } }
    if (i == n) { return 0; }
    if (m->add_dummy_prefix) { memcpy(out, m->escape_ws ? SP_SPACE : " ", m->escape_ws ? 3 : 1); k = m->escape_ws ? 3 : 1; }
    int prev_space = m->remove_extra_ws;  // the dummy prefix counts as a space for collapsing
    for (; i < n;) {
        if (s[i] == ' ') {
            if (!(prev_space && m->remove_extra_ws)) {
                if (m->escape_ws) { memcpy(out + k, SP_SPACE, 3); k += 3; } else { out[k++] = ' '; }
            }
            prev_space = 1; i++;
            continue;
        }
        int len = s[i] < 0x80 ? 1 : utf8_valid_len(s, n, i);
        if (len == 1) { out[k++] = s[i++]; }
        else if (len == 0) { memcpy(out + k, SP_REPLACEMENT, 3); k += 3; i++; }
        else { memcpy(out + k, s + i, (size_t)len); k += (size_t)len; i += (size_t)len; }
        prev_space = 0;
    }
    if (m->remove_extra_ws) {
        size_t sl = m->escape_ws ? 3 : 1;
        while (k >= sl && memcmp(out + k - sl, m->escape_ws ? SP_SPACE : " ", sl) == 0) { k -= sl; }
    }
    return k;
}

// The tokens of the symbol w[0..len) as it stands: its piece, else its bytes or <unk>. Returns how many.
static inline size_t sp_symbol_tokens(const SpModel *m, const unsigned char *w, size_t len, uint32_t id, uint32_t *out) {
    if (id != UINT32_MAX) { out[0] = id; return 1; }
    if (!m->byte_fallback) { out[0] = m->unk; return 1; }
    for (size_t j = 0; j < len; j++) { out[j] = m->byte_id[w[j]]; }
    return len;
}

// Encodes one normalized word; writes its tokens to out (room for wn) and returns how many.
static inline size_t sp_encode_word(const void *model, BpeScratch *b, const unsigned char *w, size_t wn, uint32_t *out) {
    const SpModel *m = (const SpModel *)model;
    bpe_scratch_reserve(b, wn);
    size_t ns = 0;
    for (size_t i = 0; i < wn; ns++) {
        size_t len = 0;
        uint8_t frozen = 0;
        if (m->user_first[w[i]]) {  // longest user-defined piece here
            for (size_t l = m->max_user_len < wn - i ? m->max_user_len : wn - i; l > 0 && !frozen; l--) {
                uint32_t id = piece_find(&m->pieces, w + i, l);
                if (id != UINT32_MAX && m->type[id] == SP_USER_DEFINED) { len = l; frozen = 1; }
            }
        }
        if (!frozen) { piece_char(w, wn, i, &len); }  // one character
        uint32_t id = len == 1 && w[i] < 0x80 ? m->ascii_id[w[i]] : piece_find(&m->pieces, w + i, len);
        b->sym[ns] = (BpeSym){(uint32_t)i, (uint32_t)len, id, (int32_t)ns - 1, (int32_t)ns + 1, frozen};
        i += len;
    }
    if (ns == 0) { return 0; }
    b->sym[ns - 1].next = -1;
    size_t count = 0;
    for (int32_t k = bpe_merge_symbols(&m->rules, w, b->sym, ns, b->heap); k >= 0; k = b->sym[k].next) {
        const BpeSym *s = &b->sym[k];
        count += sp_symbol_tokens(m, w + s->start, s->len, s->id, out + count);
    }
    return count;
}

// Encodes n bytes; same contract as tokenizer_encode_cached (llmc/tokenizer.h) except the bound: the
// whole text needs at most 3 * n + 3 ids.
static inline size_t sp_encode(const SpModel *m, TokenCache *cache, const unsigned char *s, size_t n, uint32_t *out, size_t cap) {
    unsigned char *norm = (unsigned char *)malloc_check(3 * n + 3);
    size_t nn = sp_normalize(m, s, n, norm), count = 0;
    BpeScratch scratch = {0};
    for (size_t i = 0; i < nn;) {
        size_t e = joined_word_end(&m->joined, norm, nn, i);
        encode_word_cached(sp_encode_word, m, cache, &scratch, norm + i, e - i, out, cap, &count);
        i = e;
    }
    bpe_scratch_free(&scratch);
    free(norm);
    return count;
}

// Decodes ids as SentencePiece does (control pieces vanish, <unk> is " ⁇ ", the dummy-prefix space of
// the first piece is dropped) except that byte pieces give their raw bytes, valid UTF-8 or not. Writes
// at most cap bytes, returns the number the whole decoding needs; dies on an id out of range.
static inline size_t sp_decode(const SpModel *m, const uint32_t *ids, size_t n, unsigned char *out, size_t cap) {
    size_t count = 0;
    int first = 1;  // no piece but control pieces decoded yet
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= m->pieces.n) { die("token id %u is out of range (vocab size %u)", ids[i], m->pieces.n); }
        size_t len;
        const unsigned char *b = piece_bytes(&m->surface, ids[i], &len);
        int t = m->type[ids[i]];
        if (first && len > 0 && b[0] == ' ' && m->add_dummy_prefix && (t == SP_NORMAL || t == SP_USER_DEFINED)) { b++; len--; }
        if (t != SP_CONTROL) { first = 0; }
        for (size_t j = 0; j < len; j++, count++) { if (count < cap) { out[count] = b[j]; } }
    }
    return count;
}

#endif // LLMC_SENTENCEPIECE_H
