/* GGUF writer: key/values are serialized into a byte buffer as they are set; tensor infos
 * are collected; begin() writes the header, then tensor data streams through write(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gguf.h"

struct wkv {
    char *key;
    size_t off; /* serialized record (key, type, value) inside w->kv_buf */
    size_t len;
};

struct wtensor {
    char name[DSI_GGUF_MAX_NAME];
    enum dsi_type type;
    uint32_t n_dims;
    int64_t ne[DSI_GGUF_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset;
};

struct dsi_gguf_writer {
    uint8_t *kv_buf;
    size_t kv_len, kv_cap;
    struct wkv *kvs;
    size_t n_kv, kv_alloc;
    struct wtensor *tensors;
    size_t n_tensors, t_alloc;
    uint32_t alignment;
    uint64_t data_size; /* running padded size of the data section */

    /* output state */
    FILE *f;
    char *path, *tmp_path;
    char *mem;
    size_t mem_size;
    bool begun, failed;
    size_t cur;          /* index of the tensor being written */
    uint64_t cur_written; /* bytes of it written so far */
};

struct dsi_gguf_writer *dsi_gguf_writer_init(void) {
    struct dsi_gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = DSI_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void dsi_gguf_writer_free(struct dsi_gguf_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        if (w->tmp_path) unlink(w->tmp_path);
    }
    for (size_t i = 0; i < w->n_kv; i++) free(w->kvs[i].key);
    free(w->kvs);
    free(w->kv_buf);
    free(w->tensors);
    free(w->path);
    free(w->tmp_path);
    free(w->mem);
    free(w);
}

/* ---- key/values ------------------------------------------------------------------------ */

static bool buf_reserve(struct dsi_gguf_writer *w, size_t extra) {
    if (w->kv_len + extra <= w->kv_cap) return true;
    size_t cap = w->kv_cap ? w->kv_cap : 4096;
    while (cap < w->kv_len + extra) cap *= 2;
    uint8_t *p = realloc(w->kv_buf, cap);
    if (!p) return false;
    w->kv_buf = p;
    w->kv_cap = cap;
    return true;
}

static bool put(struct dsi_gguf_writer *w, const void *p, size_t n) {
    if (!buf_reserve(w, n)) return false;
    memcpy(w->kv_buf + w->kv_len, p, n);
    w->kv_len += n;
    return true;
}

static bool put_u32(struct dsi_gguf_writer *w, uint32_t v) { return put(w, &v, 4); }
static bool put_u64(struct dsi_gguf_writer *w, uint64_t v) { return put(w, &v, 8); }
static bool put_str(struct dsi_gguf_writer *w, const char *s, size_t n) {
    return put_u64(w, n) && put(w, s, n);
}

void dsi_gguf_writer_remove(struct dsi_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) != 0) continue;
        size_t off = w->kvs[i].off, len = w->kvs[i].len;
        memmove(w->kv_buf + off, w->kv_buf + off + len, w->kv_len - off - len);
        w->kv_len -= len;
        free(w->kvs[i].key);
        memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - i - 1) * sizeof *w->kvs);
        w->n_kv--;
        for (size_t j = 0; j < w->n_kv; j++)
            if (w->kvs[j].off > off) w->kvs[j].off -= len;
        return;
    }
}

/* Start a record for `key`: append key and type at the end of the buffer. On failure the
 * buffer is left as it was. */
static enum dsi_status begin_kv(struct dsi_gguf_writer *w, const char *key, uint32_t type,
                                size_t *start) {
    if (w->begun) {
        DSI_LOG_ERR("gguf writer: key '%s' set after the header was written", key);
        return DSI_ERR_ARG;
    }
    if (!key || !*key) return DSI_ERR_ARG;
    *start = w->kv_len;
    if (!put_str(w, key, strlen(key)) || !put_u32(w, type)) {
        w->kv_len = *start;
        return DSI_ERR_NOMEM;
    }
    return DSI_OK;
}

/* Finish the record begun at `start`. A key that already exists keeps its position (as
 * llama.cpp's writer does when a value is overwritten): the new record is moved there. */
static enum dsi_status end_kv(struct dsi_gguf_writer *w, const char *key, size_t start, bool ok) {
    if (!ok) {
        w->kv_len = start;
        return DSI_ERR_NOMEM;
    }
    size_t len = w->kv_len - start;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) != 0) continue;
        uint8_t *rec = malloc(len);
        if (!rec) {
            w->kv_len = start;
            return DSI_ERR_NOMEM;
        }
        memcpy(rec, w->kv_buf + start, len);
        w->kv_len = start;
        size_t off = w->kvs[i].off, old = w->kvs[i].len;
        if (len > old && !buf_reserve(w, len - old)) {
            free(rec);
            return DSI_ERR_NOMEM;
        }
        memmove(w->kv_buf + off + len, w->kv_buf + off + old, w->kv_len - off - old);
        memcpy(w->kv_buf + off, rec, len);
        free(rec);
        w->kv_len = w->kv_len - old + len;
        w->kvs[i].len = len;
        for (size_t j = 0; j < w->n_kv; j++)
            if (w->kvs[j].off > off) w->kvs[j].off = w->kvs[j].off - old + len;
        return DSI_OK;
    }
    if (w->n_kv == w->kv_alloc) {
        size_t n = w->kv_alloc ? w->kv_alloc * 2 : 64;
        struct wkv *p = realloc(w->kvs, n * sizeof *p);
        if (!p) {
            w->kv_len = start;
            return DSI_ERR_NOMEM;
        }
        w->kvs = p;
        w->kv_alloc = n;
    }
    char *k = strdup(key);
    if (!k) {
        w->kv_len = start;
        return DSI_ERR_NOMEM;
    }
    w->kvs[w->n_kv++] = (struct wkv){k, start, len};
    return DSI_OK;
}

static enum dsi_status set_scalar(struct dsi_gguf_writer *w, const char *key, uint32_t type,
                                  const void *v, size_t n) {
    size_t start;
    enum dsi_status st = begin_kv(w, key, type, &start);
    if (st) return st;
    return end_kv(w, key, start, put(w, v, n));
}

enum dsi_status dsi_gguf_writer_set_u8(struct dsi_gguf_writer *w, const char *key, uint8_t v) {
    return set_scalar(w, key, DSI_GGUF_UINT8, &v, 1);
}
enum dsi_status dsi_gguf_writer_set_u16(struct dsi_gguf_writer *w, const char *key, uint16_t v) {
    return set_scalar(w, key, DSI_GGUF_UINT16, &v, 2);
}
enum dsi_status dsi_gguf_writer_set_u32(struct dsi_gguf_writer *w, const char *key, uint32_t v) {
    return set_scalar(w, key, DSI_GGUF_UINT32, &v, 4);
}
enum dsi_status dsi_gguf_writer_set_i32(struct dsi_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, DSI_GGUF_INT32, &v, 4);
}
enum dsi_status dsi_gguf_writer_set_u64(struct dsi_gguf_writer *w, const char *key, uint64_t v) {
    return set_scalar(w, key, DSI_GGUF_UINT64, &v, 8);
}
enum dsi_status dsi_gguf_writer_set_f32(struct dsi_gguf_writer *w, const char *key, float v) {
    return set_scalar(w, key, DSI_GGUF_FLOAT32, &v, 4);
}
enum dsi_status dsi_gguf_writer_set_bool(struct dsi_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, DSI_GGUF_BOOL, &b, 1);
}

enum dsi_status dsi_gguf_writer_set_strn(struct dsi_gguf_writer *w, const char *key,
                                         const char *s, size_t len) {
    size_t start;
    enum dsi_status st = begin_kv(w, key, DSI_GGUF_STRING, &start);
    if (st) return st;
    return end_kv(w, key, start, put_str(w, s, len));
}

enum dsi_status dsi_gguf_writer_set_str(struct dsi_gguf_writer *w, const char *key,
                                        const char *s) {
    return dsi_gguf_writer_set_strn(w, key, s, strlen(s));
}

static size_t elem_size(enum dsi_gguf_type t) {
    switch (t) {
    case DSI_GGUF_UINT8: case DSI_GGUF_INT8: case DSI_GGUF_BOOL: return 1;
    case DSI_GGUF_UINT16: case DSI_GGUF_INT16: return 2;
    case DSI_GGUF_UINT32: case DSI_GGUF_INT32: case DSI_GGUF_FLOAT32: return 4;
    case DSI_GGUF_UINT64: case DSI_GGUF_INT64: case DSI_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

enum dsi_status dsi_gguf_writer_set_arr(struct dsi_gguf_writer *w, const char *key,
                                        enum dsi_gguf_type elem, const void *data, uint64_t n) {
    size_t es = elem_size(elem);
    if (es == 0) return DSI_ERR_ARG;
    size_t start;
    enum dsi_status st = begin_kv(w, key, DSI_GGUF_ARRAY, &start);
    if (st) return st;
    bool ok = put_u32(w, elem) && put_u64(w, n) && put(w, data, (size_t)n * es);
    return end_kv(w, key, start, ok);
}

enum dsi_status dsi_gguf_writer_set_arr_str(struct dsi_gguf_writer *w, const char *key,
                                            const char *const *strs, const size_t *lens,
                                            uint64_t n) {
    size_t start;
    enum dsi_status st = begin_kv(w, key, DSI_GGUF_ARRAY, &start);
    if (st) return st;
    bool ok = put_u32(w, DSI_GGUF_STRING) && put_u64(w, n);
    for (uint64_t i = 0; ok && i < n; i++)
        ok = put_str(w, strs[i], lens ? lens[i] : strlen(strs[i]));
    return end_kv(w, key, start, ok);
}

enum dsi_status dsi_gguf_writer_copy_kv(struct dsi_gguf_writer *w, const struct dsi_gguf *g,
                                        int64_t i) {
    const char *key = dsi_gguf_kv_key(g, i);
    enum dsi_gguf_type t = dsi_gguf_kv_type(g, i);
    if (t == DSI_GGUF_STRING) {
        struct dsi_gguf_str s = dsi_gguf_kv_str(g, i);
        return dsi_gguf_writer_set_strn(w, key, s.ptr, (size_t)s.len);
    }
    if (t != DSI_GGUF_ARRAY) return set_scalar(w, key, t, dsi_gguf_kv_raw(g, i), elem_size(t));
    struct dsi_gguf_arr a = dsi_gguf_kv_arr(g, i);
    if (a.elem_type != DSI_GGUF_STRING)
        return dsi_gguf_writer_set_arr(w, key, a.elem_type, a.data, a.count);
    size_t start;
    enum dsi_status st = begin_kv(w, key, DSI_GGUF_ARRAY, &start);
    if (st) return st;
    bool ok = put_u32(w, DSI_GGUF_STRING) && put_u64(w, a.count);
    for (uint64_t k = 0; ok && k < a.count; k++) {
        struct dsi_gguf_str s = dsi_gguf_arr_str(g, &a, k);
        ok = put_str(w, s.ptr, (size_t)s.len);
    }
    return end_kv(w, key, start, ok);
}

enum dsi_status dsi_gguf_writer_set_alignment(struct dsi_gguf_writer *w, uint32_t align) {
    if (align < 8 || (align & (align - 1)) || w->n_tensors > 0) return DSI_ERR_ARG;
    w->alignment = align;
    if (align == DSI_GGUF_DEFAULT_ALIGNMENT) {
        dsi_gguf_writer_remove(w, "general.alignment");
        return DSI_OK;
    }
    return dsi_gguf_writer_set_u32(w, "general.alignment", align);
}

/* ---- tensors --------------------------------------------------------------------------- */

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

enum dsi_status dsi_gguf_writer_add_tensor(struct dsi_gguf_writer *w, const char *name,
                                           enum dsi_type type, uint32_t n_dims,
                                           const int64_t *ne) {
    const struct dsi_type_traits *tr = dsi_type_traits(type);
    if (w->begun || !tr || n_dims < 1 || n_dims > DSI_GGUF_MAX_DIMS ||
        strlen(name) >= DSI_GGUF_MAX_NAME || ne[0] % tr->blck != 0) {
        DSI_LOG_ERR("gguf writer: invalid tensor '%s'", name);
        return DSI_ERR_ARG;
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) {
            DSI_LOG_ERR("gguf writer: duplicate tensor '%s'", name);
            return DSI_ERR_ARG;
        }
    if (w->n_tensors == w->t_alloc) {
        size_t n = w->t_alloc ? w->t_alloc * 2 : 256;
        struct wtensor *p = realloc(w->tensors, n * sizeof *p);
        if (!p) return DSI_ERR_NOMEM;
        w->tensors = p;
        w->t_alloc = n;
    }
    struct wtensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    strcpy(t->name, name);
    t->type = type;
    t->n_dims = n_dims;
    uint64_t nbytes = (uint64_t)(ne[0] / tr->blck) * (uint64_t)tr->size;
    for (int d = 0; d < DSI_GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < (int)n_dims ? ne[d] : 1;
        if (d > 0) nbytes *= (uint64_t)t->ne[d];
    }
    t->nbytes = nbytes;
    t->offset = w->data_size;
    w->data_size = align_up(w->data_size + nbytes, w->alignment);
    w->n_tensors++;
    return DSI_OK;
}

uint64_t dsi_gguf_writer_data_size(const struct dsi_gguf_writer *w) { return w->data_size; }

/* ---- output ---------------------------------------------------------------------------- */

static enum dsi_status out_write(struct dsi_gguf_writer *w, const void *p, size_t n) {
    if (w->failed) return DSI_ERR_IO;
    if (n && fwrite(p, 1, n, w->f) != n) {
        DSI_LOG_ERR("gguf writer: write to '%s' failed: %s", w->tmp_path ? w->tmp_path : "memory",
                    strerror(errno));
        w->failed = true;
        return DSI_ERR_IO;
    }
    return DSI_OK;
}

static enum dsi_status out_zeros(struct dsi_gguf_writer *w, size_t n) {
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        if (out_write(w, zeros, k)) return DSI_ERR_IO;
        n -= k;
    }
    return DSI_OK;
}

enum dsi_status dsi_gguf_writer_begin(struct dsi_gguf_writer *w, const char *path) {
    if (w->begun) return DSI_ERR_ARG;
    if (path) {
        w->path = strdup(path);
        w->tmp_path = malloc(strlen(path) + 5);
        if (!w->path || !w->tmp_path) return DSI_ERR_NOMEM;
        sprintf(w->tmp_path, "%s.tmp", path);
        w->f = fopen(w->tmp_path, "wb");
        if (!w->f) {
            DSI_LOG_ERR("cannot create '%s': %s", w->tmp_path, strerror(errno));
            return DSI_ERR_IO;
        }
        setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    } else {
        w->f = open_memstream(&w->mem, &w->mem_size);
        if (!w->f) return DSI_ERR_NOMEM;
    }
    w->begun = true;
    uint32_t version = 3;
    uint64_t n_tensors = w->n_tensors, n_kv = w->n_kv;
    if (out_write(w, "GGUF", 4) || out_write(w, &version, 4) || out_write(w, &n_tensors, 8) ||
        out_write(w, &n_kv, 8))
        return DSI_ERR_IO;
    for (size_t i = 0; i < w->n_kv; i++)
        if (out_write(w, w->kv_buf + w->kvs[i].off, w->kvs[i].len)) return DSI_ERR_IO;
    uint64_t pos = 24 + w->kv_len;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const struct wtensor *t = &w->tensors[i];
        uint64_t len = strlen(t->name);
        uint32_t type = t->type;
        if (out_write(w, &len, 8) || out_write(w, t->name, len) || out_write(w, &t->n_dims, 4))
            return DSI_ERR_IO;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if (out_write(w, &t->ne[d], 8)) return DSI_ERR_IO;
        if (out_write(w, &type, 4) || out_write(w, &t->offset, 8)) return DSI_ERR_IO;
        pos += 8 + len + 4 + 8 * t->n_dims + 4 + 8;
    }
    return out_zeros(w, (size_t)(align_up(pos, w->alignment) - pos));
}

/* Skip over finished (or empty) tensors, padding each to the alignment. */
static enum dsi_status advance(struct dsi_gguf_writer *w) {
    while (w->cur < w->n_tensors && w->cur_written == w->tensors[w->cur].nbytes) {
        uint64_t n = w->tensors[w->cur].nbytes;
        if (out_zeros(w, (size_t)(align_up(n, w->alignment) - n))) return DSI_ERR_IO;
        w->cur++;
        w->cur_written = 0;
    }
    return DSI_OK;
}

enum dsi_status dsi_gguf_writer_write(struct dsi_gguf_writer *w, const void *data, size_t n) {
    if (!w->begun) return DSI_ERR_ARG;
    const uint8_t *p = data;
    while (n > 0) {
        if (advance(w)) return DSI_ERR_IO;
        if (w->cur >= w->n_tensors) {
            DSI_LOG_ERR("gguf writer: more tensor data than declared");
            w->failed = true;
            return DSI_ERR_ARG;
        }
        uint64_t left = w->tensors[w->cur].nbytes - w->cur_written;
        size_t k = n < left ? n : (size_t)left;
        if (out_write(w, p, k)) return DSI_ERR_IO;
        w->cur_written += k;
        p += k;
        n -= k;
    }
    return advance(w);
}

enum dsi_status dsi_gguf_writer_finish(struct dsi_gguf_writer *w, void **mem, size_t *mem_size) {
    if (!w->begun) return DSI_ERR_ARG;
    if (advance(w)) return DSI_ERR_IO;
    if (w->cur != w->n_tensors) {
        DSI_LOG_ERR("gguf writer: tensor '%s' is missing data", w->tensors[w->cur].name);
        return DSI_ERR_ARG;
    }
    if (w->failed) return DSI_ERR_IO;
    int rc = fclose(w->f);
    w->f = NULL;
    if (rc != 0) {
        DSI_LOG_ERR("gguf writer: closing '%s' failed: %s", w->tmp_path ? w->tmp_path : "memory",
                    strerror(errno));
        if (w->tmp_path) unlink(w->tmp_path);
        return DSI_ERR_IO;
    }
    if (w->path) {
        if (rename(w->tmp_path, w->path) != 0) {
            DSI_LOG_ERR("cannot rename '%s' to '%s': %s", w->tmp_path, w->path, strerror(errno));
            unlink(w->tmp_path);
            return DSI_ERR_IO;
        }
        return DSI_OK;
    }
    if (mem) {
        *mem = w->mem;
        *mem_size = w->mem_size;
        w->mem = NULL;
    }
    return DSI_OK;
}
