/* Hostile input: hundreds of corrupted GGUF, safetensors and tokenizer.json variants must each
 * give a clear error (or load cleanly), never crash, hang or leak (this test runs under
 * ASan/UBSan in `make check`). Categories:
 *  - GGUF truncated at every structural boundary (and one byte either side);
 *  - GGUF with absurd counts, lengths, dimensions, types, offsets, alignment, duplicates;
 *  - GGUF with random byte flips in the header and tensor table (seeded);
 *  - safetensors truncated / with broken headers / offsets / dtypes / shapes / duplicates;
 *  - tokenizer.json truncated / with broken vocab, merges, pre-tokenizers, normalizers. */
#include <stdlib.h>
#include <string.h>

#include "core/gguf.h"
#include "core/safetensors.h"
#include "src/tokenizer.h"
#include "tests/util.h"

/* ---- a small but complete GGUF, and the offsets of its fields ------------------------- */

static uint8_t *base;
static size_t base_size, data_end;

struct field {
    size_t off;
    const char *what;
};
static struct field fields[256];
static int n_fields;

static void mark(size_t off, const char *what) {
    if (n_fields < 256) fields[n_fields++] = (struct field){off, what};
}

static void build_base(void) {
    struct dsi_gguf_writer *w = dsi_gguf_writer_init();
    dsi_gguf_writer_set_str(w, "general.architecture", "qwen2");
    dsi_gguf_writer_set_u32(w, "qwen2.block_count", 1);
    dsi_gguf_writer_set_f32(w, "qwen2.rope.freq_base", 10000.0f);
    dsi_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    dsi_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    dsi_gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2");
    const char *toks[] = {"a", "b", "ab", "Ġ", "<|end|>"};
    int32_t types[] = {1, 1, 1, 1, 3};
    const char *merges[] = {"a b"};
    dsi_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 5);
    dsi_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", DSI_GGUF_INT32, types, 5);
    dsi_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, NULL, 1);
    dsi_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 4);
    int64_t ne1[2] = {4, 2}, ne2[2] = {32, 2}, ne3[1] = {8};
    dsi_gguf_writer_add_tensor(w, "blk.0.attn_k.weight", DSI_TYPE_F32, 2, ne1);
    dsi_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", DSI_TYPE_Q8_0, 2, ne2);
    dsi_gguf_writer_add_tensor(w, "output_norm.weight", DSI_TYPE_F16, 1, ne3);
    dsi_gguf_writer_begin(w, NULL);
    uint8_t data[4096] = {0};
    for (int i = 0; i < 4096; i++) data[i] = (uint8_t)(i * 7);
    dsi_gguf_writer_write(w, data, 32);
    dsi_gguf_writer_write(w, data, 2 * 34);
    dsi_gguf_writer_write(w, data, 16);
    void *mem;
    dsi_gguf_writer_finish(w, &mem, &base_size);
    dsi_gguf_writer_free(w);
    base = mem;

    /* walk the structure independently of the reader */
    size_t p = 0;
    uint64_t n_t, n_kv, len;
    mark(0, "magic");
    mark(4, "version");
    mark(8, "tensor count");
    mark(16, "kv count");
    memcpy(&n_t, base + 8, 8);
    memcpy(&n_kv, base + 16, 8);
    p = 24;
    for (uint64_t i = 0; i < n_kv; i++) {
        mark(p, "key length");
        memcpy(&len, base + p, 8);
        mark(p + 8, "key");
        p += 8 + len;
        uint32_t ty;
        memcpy(&ty, base + p, 4);
        mark(p, "value type");
        p += 4;
        mark(p, "value");
        if (ty == DSI_GGUF_STRING) {
            memcpy(&len, base + p, 8);
            p += 8 + len;
        } else if (ty == DSI_GGUF_ARRAY) {
            uint32_t et;
            uint64_t cnt;
            memcpy(&et, base + p, 4);
            memcpy(&cnt, base + p + 4, 8);
            mark(p + 4, "array count");
            p += 12;
            for (uint64_t k = 0; k < cnt; k++) {
                if (et == DSI_GGUF_STRING) {
                    mark(p, "array string");
                    memcpy(&len, base + p, 8);
                    p += 8 + len;
                } else {
                    p += 4;
                }
            }
        } else {
            p += ty == DSI_GGUF_BOOL ? 1 : 4;
        }
    }
    for (uint64_t i = 0; i < n_t; i++) {
        mark(p, "tensor name length");
        memcpy(&len, base + p, 8);
        mark(p + 8, "tensor name");
        p += 8 + len;
        uint32_t nd;
        memcpy(&nd, base + p, 4);
        mark(p, "n_dims");
        p += 4;
        for (uint32_t d = 0; d < nd; d++, p += 8) mark(p, "ne");
        mark(p, "tensor type");
        p += 4;
        mark(p, "tensor offset");
        p += 8;
    }
    mark(p, "end of tensor infos");
    size_t data_start = (p + 31) / 32 * 32;
    mark(data_start, "data start");
    /* the last tensor: f16 [8] at offset 128 (after 32 and 68 bytes, each padded to 32) */
    mark(data_start + 128 + 16 - 1, "last data byte");
    data_end = data_start + 128 + 16;
}

/* Offset of the n-th field with this description. */
static size_t field(const char *what, int nth) {
    for (int i = 0; i < n_fields; i++)
        if (!strcmp(fields[i].what, what) && nth-- == 0) return fields[i].off;
    fprintf(stderr, "no field %s\n", what);
    exit(2);
}

/* Exercise everything a loaded file offers, so that ASan sees any out-of-bounds view. */
static void use_everything(struct dsi_gguf *g) {
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < dsi_gguf_n_kv(g); i++) {
        enum dsi_gguf_type t = dsi_gguf_kv_type(g, i);
        if (t == DSI_GGUF_STRING) {
            struct dsi_gguf_str s = dsi_gguf_kv_str(g, i);
            if (s.len) sink ^= (uint8_t)s.ptr[s.len - 1];
        } else if (t == DSI_GGUF_ARRAY) {
            struct dsi_gguf_arr a = dsi_gguf_kv_arr(g, i);
            for (uint64_t k = 0; k < a.count; k++) {
                if (a.elem_type == DSI_GGUF_STRING) {
                    struct dsi_gguf_str s = dsi_gguf_arr_str(g, &a, k);
                    if (s.len) sink ^= (uint8_t)s.ptr[s.len - 1];
                } else {
                    sink ^= (uint8_t)dsi_gguf_arr_f64(&a, k);
                }
            }
        }
    }
    for (int64_t i = 0; i < dsi_gguf_n_tensors(g); i++) {
        const struct dsi_gguf_tensor *t = dsi_gguf_tensor(g, i);
        if (t->nbytes) sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
    }
    struct dsi_tokenizer *tok;
    if (dsi_tokenizer_load_gguf(g, &tok) == DSI_OK) {
        int32_t *ids;
        size_t n;
        if (dsi_tokenizer_encode(tok, "ab a b<|end|>", 13, DSI_TOK_PARSE_SPECIAL, &ids, &n) == DSI_OK)
            free(ids);
        dsi_tokenizer_free(tok);
    }
    (void)sink;
}

static int n_variants;

/* Open a variant; `want` 1 = must fail (with `msg` in the error if given), 0 = either. */
static void try_gguf(const uint8_t *buf, size_t n, int want_fail, const char *msg, const char *what) {
    struct dsi_gguf *g;
    tu_capture_log(true);
    enum dsi_status s = dsi_gguf_open_buffer(buf, n, "variant", &g);
    tu_capture_log(false);
    n_variants++;
    if (s == DSI_OK) {
        TU_CHECK(!want_fail, "gguf %s: accepted", what);
        tu_capture_log(true);
        use_everything(g);
        tu_capture_log(false);
        dsi_gguf_free(g);
        return;
    }
    TU_CHECK(tu_last_log()[0] != '\0', "gguf %s: failed without a message", what);
    if (msg) TU_CHECK(strstr(tu_last_log(), msg) != NULL, "gguf %s: message '%s' lacks '%s'", what,
                      tu_last_log(), msg);
    TU_CHECK(s == DSI_ERR_FORMAT || s == DSI_ERR_UNSUPPORTED, "gguf %s: status %s", what,
             dsi_status_str(s));
}

static void test_gguf_truncation(void) {
    for (int i = 0; i < n_fields; i++) {
        for (int d = -1; d <= 1; d++) {
            size_t cut = fields[i].off + (size_t)d;
            if ((d < 0 && fields[i].off == 0) || cut >= data_end) continue;
            uint8_t *b = malloc(cut ? cut : 1);
            memcpy(b, base, cut);
            /* an exact cut at the data start is still invalid: tensors need their bytes */
            char what[64];
            snprintf(what, sizeof what, "truncated at %zu (%s)", cut, fields[i].what);
            try_gguf(b, cut, 1, NULL, what);
            free(b);
        }
    }
}

/* Patch `len` bytes at `off` with `v` and expect failure naming `msg`. */
static void patch(size_t off, const void *v, size_t len, const char *msg, const char *what) {
    uint8_t *b = malloc(base_size);
    memcpy(b, base, base_size);
    memcpy(b + off, v, len);
    try_gguf(b, base_size, 1, msg, what);
    free(b);
}

static void test_gguf_absurd(void) {
    uint64_t huge = UINT64_MAX / 2, u64;
    uint32_t u32;
    patch(0, "GGUG", 4, "not a GGUF file", "bad magic");
    u32 = 1, patch(4, &u32, 4, "version 1", "version 1");
    u32 = 4, patch(4, &u32, 4, "version 4", "version 4");
    u32 = 0x03000000, patch(4, &u32, 4, "big-endian", "big-endian");
    patch(8, &huge, 8, "tensor count", "huge tensor count");
    patch(16, &huge, 8, "key/value count", "huge kv count");
    u64 = 1000, patch(16, &u64, 8, NULL, "kv count too large");
    u64 = 100, patch(8, &u64, 8, NULL, "tensor count too large");
    patch(field("key length", 0), &huge, 8, "string length", "huge key length");
    u64 = 0, patch(field("key length", 1), &u64, 8, "empty key", "empty key");
    patch(field("key", 1), "general.architectur", 19, NULL, "duplicate-ish key");
    u32 = 99, patch(field("value type", 0), &u32, 4, "invalid value type", "bad value type");
    u32 = DSI_GGUF_ARRAY, patch(field("value type", 1), &u32, 4, NULL, "scalar read as array");
    patch(field("value", 0), &huge, 8, "string length", "huge string value");
    patch(field("array count", 0), &huge, 8, "cannot fit", "huge string array");
    patch(field("array count", 1), &huge, 8, "exceeds", "huge int array");
    u32 = DSI_GGUF_ARRAY, patch(field("value", 6), &u32, 4, "element type", "nested array");
    uint8_t two = 2;
    patch(field("value", 3), &two, 1, "bool", "bool value 2");
    patch(field("array string", 2), &huge, 8, "string length", "huge array string");
    patch(field("tensor name length", 0), &huge, 8, "string length", "huge tensor name");
    u64 = 100, patch(field("tensor name length", 0), &u64, 8, NULL, "tensor name length shifted");
    u32 = 5, patch(field("n_dims", 0), &u32, 4, "n_dims", "5 dims");
    u32 = 0xffffffffu, patch(field("n_dims", 0), &u32, 4, "n_dims", "4G dims");
    u64 = (uint64_t)1 << 63, patch(field("ne", 0), &u64, 8, "negative", "negative dim");
    u64 = (uint64_t)1 << 40, patch(field("ne", 1), &u64, 8, NULL, "dim beyond file");
    u64 = (uint64_t)1 << 62, patch(field("ne", 1), &u64, 8, "overflow", "dim product overflow");
    u64 = 33, patch(field("ne", 2), &u64, 8, "multiple of", "q8_0 row not multiple of 32");
    u32 = 200, patch(field("tensor type", 0), &u32, 4, "private", "ik_llama type");
    u32 = 31, patch(field("tensor type", 0), &u32, 4, "unknown or removed", "removed type");
    u32 = 4, patch(field("tensor type", 0), &u32, 4, "unknown or removed", "removed type 4");
    u64 = 8, patch(field("tensor offset", 1), &u64, 8, "alignment", "unaligned offset");
    u64 = (uint64_t)1 << 40, patch(field("tensor offset", 2), &u64, 8, "past the end", "offset beyond file");
    u64 = UINT64_MAX - 31, patch(field("tensor offset", 2), &u64, 8, "past the end", "offset wraps");
    patch(field("tensor name", 1), "blk.0.attn_k.weight", 19, "duplicate tensor", "duplicate tensor name");
    /* alignment key: wrong type, zero, not a power of two */
    struct dsi_gguf_writer *w = dsi_gguf_writer_init();
    dsi_gguf_writer_set_u32(w, "general.alignment", 48);
    dsi_gguf_writer_begin(w, NULL);
    void *mem;
    size_t n;
    dsi_gguf_writer_finish(w, &mem, &n);
    try_gguf(mem, n, 1, "power of two", "alignment 48");
    free(mem);
    dsi_gguf_writer_free(w);
    w = dsi_gguf_writer_init();
    dsi_gguf_writer_set_u64(w, "general.alignment", 32);
    dsi_gguf_writer_begin(w, NULL);
    dsi_gguf_writer_finish(w, &mem, &n);
    try_gguf(mem, n, 1, "expected uint32", "alignment as u64");
    free(mem);
    dsi_gguf_writer_free(w);
    try_gguf(NULL, 0, 1, "truncated", "empty file");
}

static void test_gguf_flips(void) {
    uint64_t seed = 12345;
    size_t header = field("data start", 0);
    for (int i = 0; i < 3000; i++) {
        uint8_t *b = malloc(base_size);
        memcpy(b, base, base_size);
        int nflip = 1 + (int)(seed % 4);
        for (int k = 0; k < nflip; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(seed >> 33) % header;
            b[at] ^= (uint8_t)(1u << ((seed >> 20) & 7));
            if ((seed >> 40) % 5 == 0) b[at] = 0xff;
        }
        char what[64];
        snprintf(what, sizeof what, "flip variant %d", i);
        try_gguf(b, base_size, 0, NULL, what);
        free(b);
    }
}

/* ---- safetensors ----------------------------------------------------------------------- */

static void try_st(const char *hdr, size_t data_len, size_t hdr_len_override, const char *msg,
                   const char *what) {
    size_t hl = strlen(hdr);
    size_t n = 8 + hl + data_len;
    uint8_t *b = calloc(1, n + 1);
    uint64_t len = hdr_len_override ? hdr_len_override : hl;
    memcpy(b, &len, 8);
    memcpy(b + 8, hdr, hl);
    struct dsi_st *st;
    tu_capture_log(true);
    enum dsi_status s = dsi_st_open_buffer(b, n, "variant", &st);
    tu_capture_log(false);
    n_variants++;
    if (s == DSI_OK) {
        TU_CHECK(msg == NULL, "safetensors %s: accepted", what);
        volatile uint8_t sink = 0;
        for (int64_t i = 0; i < dsi_st_count(st); i++) {
            const struct dsi_st_tensor *t = dsi_st_get(st, i);
            if (t->nbytes) sink ^= ((const uint8_t *)t->data)[t->nbytes - 1];
        }
        (void)sink;
        dsi_st_free(st);
    } else {
        TU_CHECK(msg != NULL, "safetensors %s: rejected: %s", what, tu_last_log());
        if (msg) TU_CHECK(strstr(tu_last_log(), msg) != NULL, "safetensors %s: message '%s' lacks '%s'",
                          what, tu_last_log(), msg);
    }
    free(b);
}

static void test_safetensors(void) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                     "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]},"
                     "\"__metadata__\":{\"format\":\"pt\"}}";
    try_st(ok, 24, 0, NULL, "valid");
    /* truncation at every byte of the file */
    size_t hl = strlen(ok);
    uint8_t *full = calloc(1, 8 + hl + 24);
    uint64_t len = hl;
    memcpy(full, &len, 8);
    memcpy(full + 8, ok, hl);
    for (size_t cut = 0; cut < 8 + hl + 24; cut++) {
        struct dsi_st *st;
        uint8_t *b = malloc(cut ? cut : 1);
        memcpy(b, full, cut);
        tu_capture_log(true);
        enum dsi_status s = dsi_st_open_buffer(b, cut, "truncated", &st);
        tu_capture_log(false);
        n_variants++;
        TU_CHECK(s == DSI_ERR_FORMAT, "safetensors truncated at %zu: status %s", cut, dsi_status_str(s));
        TU_CHECK(tu_last_log()[0], "safetensors truncated at %zu: no message", cut);
        if (s == DSI_OK) dsi_st_free(st);
        free(b);
    }
    free(full);
    try_st(ok, 24, (size_t)1 << 40, "header length", "huge header length");
    try_st(ok, 24, 1, "header length", "header length 1");
    try_st("[1,2,3]", 0, 0, "start with '{'", "array header");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}", 16, 0, "valid JSON", "unterminated");
    try_st("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, "unknown dtype", "bad dtype");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0, "invalid shape", "negative dim");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, 0, "invalid shape", "fractional dim");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, 0,
           "invalid shape", "dims overflow");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12, 0, "do not match", "size mismatch");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, 0, "do not match", "reversed offsets");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1000,1008]}}", 8, 0, "do not match", "beyond buffer");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
           "\"data_offsets\":[4,12]}}", 12, 0, "tile", "overlap");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, 0, "cover", "gap at end");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
           "\"data_offsets\":[8,16]}}", 16, 0, "duplicate", "duplicate name");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0, "data_offsets", "missing offsets");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, 0, "data_offsets", "one offset");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, 0, "dimensions", "9 dims");
    try_st("{\"a\":5}", 0, 0, "dtype", "tensor not an object");
    try_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  x", 8, 0, "unexpected bytes", "trailing garbage");
    char deep[4200];
    size_t k = 0;
    deep[k++] = '{';
    memcpy(deep + k, "\"a\":", 4), k += 4;
    for (int i = 0; i < 2000; i++) deep[k++] = '[';
    deep[k] = '\0';
    try_st(deep, 0, 0, "valid JSON", "deep nesting");
}

/* ---- tokenizer.json -------------------------------------------------------------------- */

static char *tj;
static size_t tj_len;

static void try_tok(const char *text, size_t n, bool must_fail, const char *msg, const char *what) {
    struct dsi_tokenizer *t;
    tu_capture_log(true);
    enum dsi_status s = dsi_tokenizer_load_json_text(text, n, "variant", &t);
    tu_capture_log(false);
    n_variants++;
    if (s == DSI_OK) {
        TU_CHECK(!must_fail, "tokenizer %s: accepted", what);
        int32_t *ids;
        size_t k;
        if (dsi_tokenizer_encode(t, "Hello world 123", 15, DSI_TOK_PARSE_SPECIAL, &ids, &k) == DSI_OK)
            free(ids);
        dsi_tokenizer_free(t);
        return;
    }
    TU_CHECK(tu_last_log()[0], "tokenizer %s: failed without a message", what);
    if (msg) TU_CHECK(strstr(tu_last_log(), msg) != NULL, "tokenizer %s: message '%s' lacks '%s'",
                      what, tu_last_log(), msg);
}

/* Replace the first occurrence of `from` by `to` in the base tokenizer.json. */
static void try_edit(const char *from, const char *to, const char *msg, const char *what) {
    char *p = strstr(tj, from);
    if (!p) {
        TU_CHECK(0, "tokenizer %s: pattern not found", what);
        return;
    }
    size_t a = (size_t)(p - tj), fl = strlen(from), tl = strlen(to);
    char *b = malloc(tj_len - fl + tl + 1);
    memcpy(b, tj, a);
    memcpy(b + a, to, tl);
    memcpy(b + a + tl, tj + a + fl, tj_len - a - fl);
    try_tok(b, tj_len - fl + tl, true, msg, what);
    free(b);
}

static void test_tokenizer_json(void) {
    tj = tu_read(tu_fixture(0, "models/shakespeare-qwen2/tokenizer.json"), &tj_len);
    try_tok(tj, tj_len, false, NULL, "valid");
    for (int i = 1; i <= 40; i++) {
        size_t cut = tj_len * (size_t)i / 41;
        char what[48];
        snprintf(what, sizeof what, "truncated at %zu", cut);
        try_tok(tj, cut, true, "not valid JSON", what);
    }
    try_edit("\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "not supported", "model type");
    try_edit("\"byte_fallback\": false", "\"byte_fallback\": true", "byte_fallback", "byte fallback");
    try_edit("\"vocab\": {", "\"vocab\": {\"zzz\": -5, ", "invalid id", "negative id");
    try_edit("\"vocab\": {", "\"vocab\": {\"zzz\": 99999999999, ", "invalid id", "huge id");
    try_edit("\"vocab\": {", "\"vocab\": {\"zzz\": 1.5, ", "invalid id", "fractional id");
    try_edit("\"vocab\": {", "\"vocab\": {\"zzz\": 5, ", "two vocab entries", "duplicate id");
    try_edit("\"merges\": [", "\"merges\": [[\"q\", \"\\u00ff\\u00fe\"], ", "not in the vocabulary", "merge of unknown token");
    try_edit("\"merges\": [", "\"merges\": [7, ", "neither", "merge not a string");
    try_edit("\"merges\": [", "\"merges\": [[\"a\"], ", "neither", "merge of one part");
    try_edit("\"type\": \"Split\"", "\"type\": \"Whitespace\"", "not supported", "unknown pre-tokenizer");
    try_edit("\"Isolated\"", "\"Sideways\"", "behavior", "unknown split behavior");
    try_edit("\"Regex\": \"", "\"Regex\": \"(((\", \"x\": \"", "compile", "invalid regex");
    try_edit("\"type\": \"NFC\"", "\"type\": \"Lowercase\"", "normalizer", "unknown normalizer");
    try_edit("\"type\": \"ByteLevel\"", "\"type\": \"Digits\"", "byte-level", "no byte level");
    try_edit("\"id\": 0,", "\"id\": \"x\",", "added token", "added token bad id");
    try_edit("\"model\": {", "\"modelx\": {", "model.vocab", "no model");
    try_tok("[]", 2, true, "object", "array root");
    try_tok("{}", 2, true, "model.vocab", "empty object");
    free(tj);
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    build_base();
    try_gguf(base, base_size, 0, NULL, "base");
    test_gguf_truncation();
    test_gguf_absurd();
    test_gguf_flips();
    test_safetensors();
    test_tokenizer_json();
    TU_LOG("%d hostile variants\n", n_variants);
    TU_CHECK(n_variants > 300, "only %d variants", n_variants);
    free(base);
    return tu_finish("test_hostile");
}
