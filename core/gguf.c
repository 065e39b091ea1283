/* GGUF reader: parses and validates a mapped file (docs/gguf.md sections 1-3).
 *
 * Hostile-input rules: nothing is read before checking that it lies inside the file;
 * counts are bounded by the bytes that remain before allocating anything proportional to
 * them; every multiplication and addition of sizes is overflow-checked. */
#include "core/gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/file.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "dsinfer assumes a little-endian host"
#endif

struct kv {
    char *key;
    enum dsi_gguf_type type;
    enum dsi_gguf_type elem_type; /* arrays only */
    uint64_t count;               /* arrays only */
    const uint8_t *data;          /* scalar value / packed array elements */
    struct dsi_gguf_str str;      /* STRING values */
    struct dsi_gguf_str *strs;    /* string arrays: one entry per element */
};

struct dsi_gguf {
    struct dsi_mapped_file map; /* owned mapping (file open) */
    void *owned;                /* owned malloc'd buffer (open_owned) */
    const uint8_t *base;
    size_t size;
    char *label;
    uint32_t version;
    size_t alignment;
    size_t data_offset;
    int64_t n_kv;
    struct kv *kvs;
    int64_t n_tensors;
    struct dsi_gguf_tensor *tensors;
    int64_t *hash; /* open addressing over tensor names: index+1, 0 = empty */
    size_t hash_cap;
    int64_t *kv_hash; /* the same over keys */
    size_t kv_hash_cap;
};

static const size_t type_sizes[DSI_GGUF_TYPE_COUNT] = {
    [DSI_GGUF_UINT8] = 1,  [DSI_GGUF_INT8] = 1,    [DSI_GGUF_UINT16] = 2, [DSI_GGUF_INT16] = 2,
    [DSI_GGUF_UINT32] = 4, [DSI_GGUF_INT32] = 4,   [DSI_GGUF_FLOAT32] = 4, [DSI_GGUF_BOOL] = 1,
    [DSI_GGUF_STRING] = 0, [DSI_GGUF_ARRAY] = 0,   [DSI_GGUF_UINT64] = 8, [DSI_GGUF_INT64] = 8,
    [DSI_GGUF_FLOAT64] = 8,
};

const char *dsi_gguf_type_name(uint32_t t) {
    static const char *const names[DSI_GGUF_TYPE_COUNT] = {
        "uint8", "int8",  "uint16", "int16", "uint32", "int32",  "float32",
        "bool",  "string", "array", "uint64", "int64", "float64",
    };
    return t < DSI_GGUF_TYPE_COUNT ? names[t] : "invalid";
}

/* ---- cursor ---------------------------------------------------------------------------- */

struct cursor {
    const uint8_t *base;
    size_t size;
    size_t pos;
    const char *label;
    bool failed;
};

static enum dsi_status fail_at(struct cursor *c, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum dsi_status fail_at(struct cursor *c, size_t at, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!c->failed) DSI_LOG_ERR("gguf '%s': %s (at byte offset %zu)", c->label, msg, at);
    c->failed = true;
    return DSI_ERR_FORMAT;
}

static size_t remaining(const struct cursor *c) { return c->size - c->pos; }

static enum dsi_status read_bytes(struct cursor *c, void *dst, size_t n, const char *what) {
    if (remaining(c) < n) {
        memset(dst, 0, n);
        return fail_at(c, c->pos, "truncated file: %s needs %zu bytes, %zu remain", what, n,
                       remaining(c));
    }
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return DSI_OK;
}

static enum dsi_status read_u32(struct cursor *c, uint32_t *v, const char *what) {
    return read_bytes(c, v, 4, what);
}

static enum dsi_status read_u64(struct cursor *c, uint64_t *v, const char *what) {
    return read_bytes(c, v, 8, what);
}

/* A GGUF string: u64 length then bytes. The view points into the buffer. */
static enum dsi_status read_str(struct cursor *c, struct dsi_gguf_str *s, const char *what) {
    size_t at = c->pos;
    uint64_t len;
    if (read_u64(c, &len, what)) return DSI_ERR_FORMAT;
    if (len > remaining(c))
        return fail_at(c, at, "%s: string length %llu exceeds the %zu bytes that remain", what,
                       (unsigned long long)len, remaining(c));
    s->ptr = (const char *)c->base + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return DSI_OK;
}

/* ---- key/values ------------------------------------------------------------------------ */

static enum dsi_status read_kv(struct cursor *c, struct kv *kv, int64_t idx) {
    char what[96];
    size_t at = c->pos;
    struct dsi_gguf_str key;
    snprintf(what, sizeof what, "key of key/value #%lld", (long long)idx);
    if (read_str(c, &key, what)) return DSI_ERR_FORMAT;
    if (key.len == 0) return fail_at(c, at, "key/value #%lld has an empty key", (long long)idx);
    if (memchr(key.ptr, 0, key.len))
        return fail_at(c, at, "key/value #%lld: key contains a NUL byte", (long long)idx);
    kv->key = malloc(key.len + 1);
    if (!kv->key) return DSI_ERR_NOMEM;
    memcpy(kv->key, key.ptr, key.len);
    kv->key[key.len] = '\0';

    uint32_t type;
    size_t type_at = c->pos;
    if (read_u32(c, &type, "value type")) return DSI_ERR_FORMAT;
    if (type >= DSI_GGUF_TYPE_COUNT)
        return fail_at(c, type_at, "key '%s': invalid value type %u", kv->key, type);
    kv->type = (enum dsi_gguf_type)type;

    if (type == DSI_GGUF_STRING) return read_str(c, &kv->str, kv->key);
    if (type != DSI_GGUF_ARRAY) {
        size_t n = type_sizes[type];
        if (remaining(c) < n)
            return fail_at(c, c->pos, "truncated file: value of '%s' needs %zu bytes", kv->key,
                           n);
        kv->data = c->base + c->pos;
        if (type == DSI_GGUF_BOOL && kv->data[0] > 1)
            return fail_at(c, c->pos, "key '%s': bool value %u is not 0 or 1", kv->key,
                           kv->data[0]);
        c->pos += n;
        return DSI_OK;
    }

    uint32_t et;
    size_t et_at = c->pos;
    if (read_u32(c, &et, "array element type")) return DSI_ERR_FORMAT;
    if (et >= DSI_GGUF_TYPE_COUNT || et == DSI_GGUF_ARRAY)
        return fail_at(c, et_at, "key '%s': invalid array element type %u", kv->key, et);
    kv->elem_type = (enum dsi_gguf_type)et;
    size_t count_at = c->pos;
    if (read_u64(c, &kv->count, "array count")) return DSI_ERR_FORMAT;
    if (et == DSI_GGUF_STRING) {
        /* each element needs at least its 8-byte length */
        if (kv->count > remaining(c) / 8)
            return fail_at(c, count_at, "key '%s': array of %llu strings cannot fit in the %zu "
                           "bytes that remain", kv->key, (unsigned long long)kv->count,
                           remaining(c));
        kv->strs = malloc((size_t)(kv->count ? kv->count : 1) * sizeof *kv->strs);
        if (!kv->strs) return DSI_ERR_NOMEM;
        for (uint64_t i = 0; i < kv->count; i++) {
            snprintf(what, sizeof what, "element %llu of '%.40s'", (unsigned long long)i,
                     kv->key);
            if (read_str(c, &kv->strs[i], what)) return DSI_ERR_FORMAT;
        }
        return DSI_OK;
    }
    size_t es = type_sizes[et];
    if (kv->count > remaining(c) / es)
        return fail_at(c, count_at, "key '%s': array of %llu %s elements exceeds the %zu bytes "
                       "that remain", kv->key, (unsigned long long)kv->count,
                       dsi_gguf_type_name(et), remaining(c));
    kv->data = c->base + c->pos;
    if (et == DSI_GGUF_BOOL) {
        for (uint64_t i = 0; i < kv->count; i++)
            if (kv->data[i] > 1)
                return fail_at(c, c->pos + i, "key '%s': bool element %llu is not 0 or 1",
                               kv->key, (unsigned long long)i);
    }
    c->pos += (size_t)(kv->count * es);
    return DSI_OK;
}

/* ---- tensor name hash ------------------------------------------------------------------ */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static size_t hash_cap_for(int64_t n) {
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    return cap;
}

/* Insert tensor i; returns the index of an existing tensor with the same name, or -1. */
static int64_t hash_insert(struct dsi_gguf *g, int64_t i) {
    size_t mask = g->hash_cap - 1;
    size_t h = (size_t)hash_str(g->tensors[i].name) & mask;
    while (g->hash[h]) {
        int64_t j = g->hash[h] - 1;
        if (strcmp(g->tensors[j].name, g->tensors[i].name) == 0) return j;
        h = (h + 1) & mask;
    }
    g->hash[h] = i + 1;
    return -1;
}

/* The same for key i. */
static int64_t kv_hash_insert(struct dsi_gguf *g, int64_t i) {
    size_t mask = g->kv_hash_cap - 1;
    size_t h = (size_t)hash_str(g->kvs[i].key) & mask;
    while (g->kv_hash[h]) {
        int64_t j = g->kv_hash[h] - 1;
        if (strcmp(g->kvs[j].key, g->kvs[i].key) == 0) return j;
        h = (h + 1) & mask;
    }
    g->kv_hash[h] = i + 1;
    return -1;
}

/* ---- tensors --------------------------------------------------------------------------- */

static enum dsi_status read_tensor_info(struct cursor *c, struct dsi_gguf *g, int64_t idx) {
    struct dsi_gguf_tensor *t = &g->tensors[idx];
    char what[64];
    size_t at = c->pos;
    struct dsi_gguf_str name;
    snprintf(what, sizeof what, "name of tensor #%lld", (long long)idx);
    if (read_str(c, &name, what)) return DSI_ERR_FORMAT;
    if (name.len == 0) return fail_at(c, at, "tensor #%lld has an empty name", (long long)idx);
    if (name.len >= DSI_GGUF_MAX_NAME)
        return fail_at(c, at, "tensor #%lld: name of %llu bytes is longer than %d",
                       (long long)idx, (unsigned long long)name.len, DSI_GGUF_MAX_NAME - 1);
    if (memchr(name.ptr, 0, name.len))
        return fail_at(c, at, "tensor #%lld: name contains a NUL byte", (long long)idx);
    char *name_store = malloc(name.len + 1);
    if (!name_store) return DSI_ERR_NOMEM;
    memcpy(name_store, name.ptr, name.len);
    name_store[name.len] = '\0';
    t->name = name_store;

    size_t nd_at = c->pos;
    if (read_u32(c, &t->n_dims, "tensor n_dims")) return DSI_ERR_FORMAT;
    if (t->n_dims > DSI_GGUF_MAX_DIMS)
        return fail_at(c, nd_at, "tensor '%s': n_dims %u is more than %d", t->name, t->n_dims,
                       DSI_GGUF_MAX_DIMS);
    for (int d = 0; d < DSI_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t v;
        size_t ne_at = c->pos;
        if (read_u64(c, &v, "tensor dimension")) return DSI_ERR_FORMAT;
        if (v > (uint64_t)INT64_MAX)
            return fail_at(c, ne_at, "tensor '%s': dimension %u is negative", t->name, d);
        t->ne[d] = (int64_t)v;
    }
    uint32_t type;
    size_t type_at = c->pos;
    if (read_u32(c, &type, "tensor type")) return DSI_ERR_FORMAT;
    const struct dsi_type_traits *tr = dsi_type_traits(type);
    if (!tr) {
        if (type >= 133 && type < 256)
            return fail_at(c, type_at, "tensor '%s': type id %u is an ik_llama.cpp private "
                           "quantization type, which dsinfer (and llama.cpp) cannot load",
                           t->name, type);
        return fail_at(c, type_at, "tensor '%s': unknown or removed tensor type id %u", t->name,
                       type);
    }
    t->type = (enum dsi_type)type;
    size_t off_at = c->pos;
    if (read_u64(c, &t->offset, "tensor offset")) return DSI_ERR_FORMAT;

    /* element and byte counts, overflow-checked */
    if (t->ne[0] % tr->blck != 0)
        return fail_at(c, nd_at, "tensor '%s': ne[0] = %lld is not a multiple of the %s block "
                       "size %d", t->name, (long long)t->ne[0], tr->name, tr->blck);
    uint64_t bytes = (uint64_t)(t->ne[0] / tr->blck) * (uint64_t)tr->size; /* fits: ne0<2^63 */
    if ((uint64_t)(t->ne[0] / tr->blck) > UINT64_MAX / (uint64_t)tr->size)
        return fail_at(c, nd_at, "tensor '%s': row size overflows", t->name);
    for (int d = 1; d < DSI_GGUF_MAX_DIMS; d++) {
        if (__builtin_mul_overflow(bytes, (uint64_t)t->ne[d], &bytes))
            return fail_at(c, nd_at, "tensor '%s': byte size overflows (shape %lld x %lld x "
                           "%lld x %lld)", t->name, (long long)t->ne[0], (long long)t->ne[1],
                           (long long)t->ne[2], (long long)t->ne[3]);
    }
    /* element count must also fit in int64 (ggml's rule) */
    int64_t nel = t->ne[0];
    for (int d = 1; d < DSI_GGUF_MAX_DIMS; d++)
        if (__builtin_mul_overflow(nel, t->ne[d], &nel))
            return fail_at(c, nd_at, "tensor '%s': element count overflows", t->name);
    if (bytes > SIZE_MAX) return fail_at(c, nd_at, "tensor '%s': too large", t->name);
    t->nbytes = (size_t)bytes;
    (void)off_at;
    return DSI_OK;
}

/* ---- open ------------------------------------------------------------------------------ */

static enum dsi_status parse(struct dsi_gguf *g) {
    struct cursor c = {g->base, g->size, 0, g->label, false};
    uint8_t magic[4];
    if (read_bytes(&c, magic, 4, "magic")) return DSI_ERR_FORMAT;
    if (memcmp(magic, "GGUF", 4) != 0)
        return fail_at(&c, 0, "not a GGUF file (magic %02x %02x %02x %02x, expected 'GGUF')",
                       magic[0], magic[1], magic[2], magic[3]);
    if (read_u32(&c, &g->version, "version")) return DSI_ERR_FORMAT;
    if ((g->version & 0xffffu) == 0 && g->version != 0) {
        fail_at(&c, 4, "big-endian GGUF files are not supported");
        return DSI_ERR_UNSUPPORTED;
    }
    if (g->version == 1) {
        fail_at(&c, 4, "GGUF version 1 is obsolete; re-convert the model");
        return DSI_ERR_UNSUPPORTED;
    }
    if (g->version != 2 && g->version != 3) {
        fail_at(&c, 4, "unsupported GGUF version %u", g->version);
        return DSI_ERR_UNSUPPORTED;
    }
    uint64_t n_tensors, n_kv;
    if (read_u64(&c, &n_tensors, "tensor count")) return DSI_ERR_FORMAT;
    if (read_u64(&c, &n_kv, "key/value count")) return DSI_ERR_FORMAT;
    /* smallest key/value: 8 (len) + 1 (key) + 4 (type) + 1 (u8) = 14 bytes;
     * smallest tensor info: 8 + 1 + 4 + 0 dims + 4 + 8 = 25 bytes */
    if (n_kv > remaining(&c) / 14)
        return fail_at(&c, 16, "key/value count %llu cannot fit in a file of %zu bytes",
                       (unsigned long long)n_kv, g->size);
    if (n_tensors > remaining(&c) / 25)
        return fail_at(&c, 8, "tensor count %llu cannot fit in a file of %zu bytes",
                       (unsigned long long)n_tensors, g->size);
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;

    g->kvs = calloc(n_kv ? n_kv : 1, sizeof *g->kvs);
    g->kv_hash_cap = hash_cap_for(g->n_kv);
    g->kv_hash = calloc(g->kv_hash_cap, sizeof *g->kv_hash);
    if (!g->kvs || !g->kv_hash) return DSI_ERR_NOMEM;
    for (int64_t i = 0; i < g->n_kv; i++) {
        size_t at = c.pos;
        enum dsi_status st = read_kv(&c, &g->kvs[i], i);
        if (st) {
            g->n_kv = i + 1; /* free what was allocated so far */
            return st;
        }
        if (kv_hash_insert(g, i) >= 0) return fail_at(&c, at, "duplicate key '%s'", g->kvs[i].key);
    }

    g->alignment = DSI_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = dsi_gguf_find_kv(g, "general.alignment");
    if (ai >= 0) {
        struct kv *kv = &g->kvs[ai];
        if (kv->type != DSI_GGUF_UINT32)
            return fail_at(&c, 0, "general.alignment has type %s, expected uint32",
                           dsi_gguf_type_name(kv->type));
        uint32_t a;
        memcpy(&a, kv->data, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return fail_at(&c, (size_t)(kv->data - g->base),
                           "general.alignment %u is not a power of two", a);
        g->alignment = a;
    }

    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    g->hash_cap = hash_cap_for(g->n_tensors);
    g->hash = calloc(g->hash_cap, sizeof *g->hash);
    if (!g->tensors || !g->hash) return DSI_ERR_NOMEM;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        size_t at = c.pos;
        enum dsi_status st = read_tensor_info(&c, g, i);
        if (st) return st;
        int64_t dup = hash_insert(g, i);
        if (dup >= 0) return fail_at(&c, at, "duplicate tensor name '%s'", g->tensors[i].name);
    }

    /* data section: aligned after the tensor infos */
    size_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    if (c.pos > SIZE_MAX - pad) return fail_at(&c, c.pos, "data offset overflows");
    g->data_offset = c.pos + pad;
    if (g->n_tensors > 0 && g->data_offset > g->size)
        return fail_at(&c, c.pos, "truncated file: data section starts at %zu but the file has "
                       "%zu bytes", g->data_offset, g->size);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        struct dsi_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return fail_at(&c, g->data_offset, "tensor '%s': data offset %llu is not a multiple "
                           "of the alignment %zu", t->name, (unsigned long long)t->offset,
                           g->alignment);
        uint64_t avail = g->size - g->data_offset;
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return fail_at(&c, g->data_offset, "tensor '%s': data [%llu, %llu) relative to the "
                           "data section at %zu extends past the end of the file (%zu bytes)",
                           t->name, (unsigned long long)t->offset,
                           (unsigned long long)t->offset + (unsigned long long)t->nbytes,
                           g->data_offset, g->size);
        t->data = t->nbytes ? g->base + g->data_offset + t->offset : NULL;
    }
    return DSI_OK;
}

static enum dsi_status open_common(struct dsi_gguf *g, const char *label, struct dsi_gguf **out) {
    g->label = strdup(label ? label : "(memory)");
    if (!g->label) {
        dsi_gguf_free(g);
        return DSI_ERR_NOMEM;
    }
    enum dsi_status st = parse(g);
    if (st == DSI_ERR_NOMEM) DSI_LOG_ERR("gguf '%s': out of memory while parsing", g->label);
    if (st) {
        dsi_gguf_free(g);
        return st;
    }
    *out = g;
    return DSI_OK;
}

enum dsi_status dsi_gguf_open(const char *path, struct dsi_gguf **out) {
    return dsi_gguf_open_mode(path, DSI_LOAD_MMAP, out);
}

bool dsi_gguf_is_copy(const struct dsi_gguf *g) { return g->map.copied; }

bool dsi_gguf_copy_writable(struct dsi_gguf *g, bool writable) {
    if (!g->map.copied) return false;
    return mprotect((void *)(uintptr_t)g->map.data, g->map.size,
                    writable ? PROT_READ | PROT_WRITE : PROT_READ) == 0;
}

enum dsi_status dsi_gguf_open_mode(const char *path, enum dsi_load_mode mode,
                                   struct dsi_gguf **out) {
    *out = NULL;
    struct dsi_gguf *g = calloc(1, sizeof *g);
    if (!g) return DSI_ERR_NOMEM;
    enum dsi_status st = dsi_file_load(path, mode, &g->map);
    if (st) {
        free(g);
        return st;
    }
    g->base = g->map.data;
    g->size = g->map.size;
    return open_common(g, path, out);
}

enum dsi_status dsi_gguf_open_buffer(const void *data, size_t size, const char *label,
                                     struct dsi_gguf **out) {
    *out = NULL;
    struct dsi_gguf *g = calloc(1, sizeof *g);
    if (!g) return DSI_ERR_NOMEM;
    g->base = data;
    g->size = data ? size : 0;
    return open_common(g, label, out);
}

enum dsi_status dsi_gguf_open_owned(void *data, size_t size, const char *label,
                                    struct dsi_gguf **out) {
    *out = NULL;
    struct dsi_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        free(data);
        return DSI_ERR_NOMEM;
    }
    g->owned = data;
    g->base = data;
    g->size = data ? size : 0;
    return open_common(g, label, out);
}

void dsi_gguf_free(struct dsi_gguf *g) {
    if (!g) return;
    if (g->kvs) {
        for (int64_t i = 0; i < g->n_kv; i++) {
            free(g->kvs[i].key);
            free(g->kvs[i].strs);
        }
    }
    free(g->kvs);
    if (g->tensors)
        for (int64_t i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->tensors);
    free(g->hash);
    free(g->kv_hash);
    free(g->label);
    free(g->owned);
    dsi_file_unmap(&g->map);
    free(g);
}

/* ---- accessors ------------------------------------------------------------------------- */

uint32_t dsi_gguf_version(const struct dsi_gguf *g) { return g->version; }
size_t dsi_gguf_alignment(const struct dsi_gguf *g) { return g->alignment; }
size_t dsi_gguf_data_offset(const struct dsi_gguf *g) { return g->data_offset; }
size_t dsi_gguf_file_size(const struct dsi_gguf *g) { return g->size; }
const char *dsi_gguf_label(const struct dsi_gguf *g) { return g->label; }
int64_t dsi_gguf_n_kv(const struct dsi_gguf *g) { return g->n_kv; }
const char *dsi_gguf_kv_key(const struct dsi_gguf *g, int64_t i) { return g->kvs[i].key; }
enum dsi_gguf_type dsi_gguf_kv_type(const struct dsi_gguf *g, int64_t i) { return g->kvs[i].type; }
const void *dsi_gguf_kv_raw(const struct dsi_gguf *g, int64_t i) { return g->kvs[i].data; }

int64_t dsi_gguf_find_kv(const struct dsi_gguf *g, const char *key) {
    size_t mask = g->kv_hash_cap - 1;
    size_t h = (size_t)hash_str(key) & mask;
    while (g->kv_hash[h]) {
        int64_t j = g->kv_hash[h] - 1;
        if (strcmp(g->kvs[j].key, key) == 0) return j;
        h = (h + 1) & mask;
    }
    return -1;
}

/* Read one scalar of integer type `t` at p; false for non-integer types. */
static bool load_int(enum dsi_gguf_type t, const uint8_t *p, int64_t *out, bool *neg_ok) {
    *neg_ok = true;
    switch (t) {
    case DSI_GGUF_UINT8: *out = p[0]; return true;
    case DSI_GGUF_INT8: *out = (int8_t)p[0]; return true;
    case DSI_GGUF_BOOL: *out = p[0]; return true;
    case DSI_GGUF_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case DSI_GGUF_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case DSI_GGUF_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case DSI_GGUF_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case DSI_GGUF_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return true; }
    case DSI_GGUF_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) *neg_ok = false;
        *out = (int64_t)v;
        return true;
    }
    default: return false;
    }
}

static bool load_f64(enum dsi_gguf_type t, const uint8_t *p, double *out) {
    if (t == DSI_GGUF_FLOAT32) {
        float v;
        memcpy(&v, p, 4);
        *out = v;
        return true;
    }
    if (t == DSI_GGUF_FLOAT64) {
        memcpy(out, p, 8);
        return true;
    }
    int64_t i;
    bool ok;
    if (load_int(t, p, &i, &ok) && t != DSI_GGUF_BOOL) {
        *out = (double)i;
        return true;
    }
    return false;
}

bool dsi_gguf_kv_as_i64(const struct dsi_gguf *g, int64_t i, int64_t *out) {
    bool ok;
    const struct kv *kv = &g->kvs[i];
    if (kv->type == DSI_GGUF_BOOL) return false;
    return load_int(kv->type, kv->data, out, &ok) && ok;
}

bool dsi_gguf_kv_as_f64(const struct dsi_gguf *g, int64_t i, double *out) {
    const struct kv *kv = &g->kvs[i];
    if (kv->type == DSI_GGUF_STRING || kv->type == DSI_GGUF_ARRAY || kv->type == DSI_GGUF_BOOL)
        return false;
    return load_f64(kv->type, kv->data, out);
}

struct dsi_gguf_str dsi_gguf_kv_str(const struct dsi_gguf *g, int64_t i) { return g->kvs[i].str; }

struct dsi_gguf_arr dsi_gguf_kv_arr(const struct dsi_gguf *g, int64_t i) {
    const struct kv *kv = &g->kvs[i];
    struct dsi_gguf_arr a = {kv->elem_type, kv->count, kv->data, i};
    return a;
}

static enum dsi_status wrong_type(const struct dsi_gguf *g, int64_t i, const char *want) {
    DSI_LOG_ERR("gguf '%s': key '%s' has type %s, expected %s", g->label, g->kvs[i].key,
                dsi_gguf_type_name(g->kvs[i].type), want);
    return DSI_ERR_FORMAT;
}

enum dsi_status dsi_gguf_get_i64(const struct dsi_gguf *g, const char *key, int64_t *out) {
    int64_t i = dsi_gguf_find_kv(g, key);
    if (i < 0) return DSI_ERR_NOT_FOUND;
    if (!dsi_gguf_kv_as_i64(g, i, out)) return wrong_type(g, i, "an integer");
    return DSI_OK;
}

enum dsi_status dsi_gguf_get_u32(const struct dsi_gguf *g, const char *key, uint32_t *out) {
    int64_t v;
    enum dsi_status st = dsi_gguf_get_i64(g, key, &v);
    if (st) return st;
    if (v < 0 || v > (int64_t)UINT32_MAX) {
        DSI_LOG_ERR("gguf '%s': key '%s' = %lld is out of range", g->label, key, (long long)v);
        return DSI_ERR_FORMAT;
    }
    *out = (uint32_t)v;
    return DSI_OK;
}

enum dsi_status dsi_gguf_get_f32(const struct dsi_gguf *g, const char *key, float *out) {
    int64_t i = dsi_gguf_find_kv(g, key);
    if (i < 0) return DSI_ERR_NOT_FOUND;
    double d;
    if (!dsi_gguf_kv_as_f64(g, i, &d)) return wrong_type(g, i, "a number");
    *out = (float)d;
    return DSI_OK;
}

enum dsi_status dsi_gguf_get_bool(const struct dsi_gguf *g, const char *key, bool *out) {
    int64_t i = dsi_gguf_find_kv(g, key);
    if (i < 0) return DSI_ERR_NOT_FOUND;
    const struct kv *kv = &g->kvs[i];
    int64_t v;
    bool ok;
    if (kv->type == DSI_GGUF_STRING || kv->type == DSI_GGUF_ARRAY ||
        !load_int(kv->type, kv->data, &v, &ok))
        return wrong_type(g, i, "bool");
    *out = v != 0;
    return DSI_OK;
}

enum dsi_status dsi_gguf_get_str(const struct dsi_gguf *g, const char *key,
                                 struct dsi_gguf_str *out) {
    int64_t i = dsi_gguf_find_kv(g, key);
    if (i < 0) return DSI_ERR_NOT_FOUND;
    if (g->kvs[i].type != DSI_GGUF_STRING) return wrong_type(g, i, "string");
    *out = g->kvs[i].str;
    return DSI_OK;
}

enum dsi_status dsi_gguf_get_arr(const struct dsi_gguf *g, const char *key,
                                 struct dsi_gguf_arr *out) {
    int64_t i = dsi_gguf_find_kv(g, key);
    if (i < 0) return DSI_ERR_NOT_FOUND;
    if (g->kvs[i].type != DSI_GGUF_ARRAY) return wrong_type(g, i, "array");
    *out = dsi_gguf_kv_arr(g, i);
    return DSI_OK;
}

struct dsi_gguf_str dsi_gguf_arr_str(const struct dsi_gguf *g, const struct dsi_gguf_arr *a,
                                     uint64_t i) {
    DSI_ASSERT(a->elem_type == DSI_GGUF_STRING && i < a->count);
    return g->kvs[a->kv].strs[i];
}

int64_t dsi_gguf_arr_i64(const struct dsi_gguf_arr *a, uint64_t i) {
    DSI_ASSERT(i < a->count);
    int64_t v = 0;
    bool ok;
    const uint8_t *p = (const uint8_t *)a->data + i * type_sizes[a->elem_type];
    if (!load_int(a->elem_type, p, &v, &ok)) {
        double d = 0;
        load_f64(a->elem_type, p, &d);
        /* float arrays: truncate, saturating (and NaN -> 0) rather than invoking UB */
        v = d != d ? 0 : d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
    }
    return v;
}

double dsi_gguf_arr_f64(const struct dsi_gguf_arr *a, uint64_t i) {
    DSI_ASSERT(i < a->count);
    double d = 0;
    load_f64(a->elem_type, (const uint8_t *)a->data + i * type_sizes[a->elem_type], &d);
    return d;
}

int64_t dsi_gguf_n_tensors(const struct dsi_gguf *g) { return g->n_tensors; }

const struct dsi_gguf_tensor *dsi_gguf_tensor(const struct dsi_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_tensors) ? &g->tensors[i] : NULL;
}

const struct dsi_gguf_tensor *dsi_gguf_find_tensor(const struct dsi_gguf *g, const char *name) {
    size_t mask = g->hash_cap - 1;
    size_t h = (size_t)hash_str(name) & mask;
    while (g->hash[h]) {
        int64_t j = g->hash[h] - 1;
        if (strcmp(g->tensors[j].name, name) == 0) return &g->tensors[j];
        h = (h + 1) & mask;
    }
    return NULL;
}
