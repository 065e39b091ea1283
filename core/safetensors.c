/* safetensors reader (see safetensors.h). The JSON header is parsed with cJSON. */
#include "core/safetensors.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/file.h"

#define MAX_HEADER (100u * 1000u * 1000u) /* the reference reader's limit */

static const struct {
    const char *name;
    int bits;
} dtypes[DSI_ST_DTYPE_COUNT] = {
    [DSI_ST_BOOL] = {"BOOL", 8},          [DSI_ST_U8] = {"U8", 8},
    [DSI_ST_I8] = {"I8", 8},              [DSI_ST_F8_E5M2] = {"F8_E5M2", 8},
    [DSI_ST_F8_E4M3] = {"F8_E4M3", 8},    [DSI_ST_F8_E8M0] = {"F8_E8M0", 8},
    [DSI_ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8}, [DSI_ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [DSI_ST_I16] = {"I16", 16},           [DSI_ST_U16] = {"U16", 16},
    [DSI_ST_F16] = {"F16", 16},           [DSI_ST_BF16] = {"BF16", 16},
    [DSI_ST_I32] = {"I32", 32},           [DSI_ST_U32] = {"U32", 32},
    [DSI_ST_F32] = {"F32", 32},           [DSI_ST_I64] = {"I64", 64},
    [DSI_ST_U64] = {"U64", 64},           [DSI_ST_F64] = {"F64", 64},
    [DSI_ST_C64] = {"C64", 64},           [DSI_ST_F4] = {"F4", 4},
    [DSI_ST_F6_E2M3] = {"F6_E2M3", 6},    [DSI_ST_F6_E3M2] = {"F6_E3M2", 6},
};

const char *dsi_st_dtype_name(enum dsi_st_dtype t) {
    return (unsigned)t < DSI_ST_DTYPE_COUNT ? dtypes[t].name : "?";
}

struct shard {
    struct dsi_mapped_file map;
    const uint8_t *base;
    size_t size;
    char *path;
};

struct dsi_st {
    struct shard *shards;
    int n_shards;
    struct dsi_st_tensor *tensors;
    int64_t n_tensors, cap;
    int64_t *hash;
    size_t hash_cap;
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static const struct dsi_st_tensor *lookup(const struct dsi_st *st, const char *name) {
    if (!st->hash_cap) return NULL;
    size_t mask = st->hash_cap - 1, h = (size_t)hash_str(name) & mask;
    while (st->hash[h]) {
        const struct dsi_st_tensor *t = &st->tensors[st->hash[h] - 1];
        if (strcmp(t->name, name) == 0) return t;
        h = (h + 1) & mask;
    }
    return NULL;
}

static enum dsi_status rehash(struct dsi_st *st) {
    size_t cap = 64;
    while (cap < 2 * (size_t)st->n_tensors) cap *= 2;
    int64_t *h = calloc(cap, sizeof *h);
    if (!h) return DSI_ERR_NOMEM;
    free(st->hash);
    st->hash = h;
    st->hash_cap = cap;
    for (int64_t i = 0; i < st->n_tensors; i++) {
        size_t k = (size_t)hash_str(st->tensors[i].name) & (cap - 1);
        while (h[k]) k = (k + 1) & (cap - 1);
        h[k] = i + 1;
    }
    return DSI_OK;
}

struct span {
    uint64_t begin, end;
    const char *name;
};

static int cmp_span(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

/* Parse one file's header and append its tensors. */
static enum dsi_status parse_shard(struct dsi_st *st, int shard_idx, const char *label) {
    const struct shard *sh = &st->shards[shard_idx];
    if (sh->size < 8) {
        DSI_LOG_ERR("safetensors '%s': file of %zu bytes is too short for the header length",
                    label, sh->size);
        return DSI_ERR_FORMAT;
    }
    uint64_t n;
    memcpy(&n, sh->base, 8);
    if (n < 2 || n > MAX_HEADER || n > sh->size - 8) {
        DSI_LOG_ERR("safetensors '%s': header length %llu is invalid for a file of %zu bytes "
                    "(at byte offset 0)", label, (unsigned long long)n, sh->size);
        return DSI_ERR_FORMAT;
    }
    const char *hdr = (const char *)sh->base + 8;
    if (hdr[0] != '{') {
        DSI_LOG_ERR("safetensors '%s': header does not start with '{' (at byte offset 8)", label);
        return DSI_ERR_FORMAT;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        size_t at = end ? (size_t)(end - hdr) + 8 : 8;
        DSI_LOG_ERR("safetensors '%s': header is not valid JSON (near byte offset %zu)", label, at);
        cJSON_Delete(root);
        return DSI_ERR_FORMAT;
    }
    for (const char *p = end; p && p < hdr + n; p++)
        if (*p != ' ' && *p != '\0') {
            DSI_LOG_ERR("safetensors '%s': unexpected bytes after the JSON header (at byte offset "
                        "%zu)", label, (size_t)(p - hdr) + 8);
            cJSON_Delete(root);
            return DSI_ERR_FORMAT;
        }
    const uint8_t *buf = sh->base + 8 + n;
    uint64_t buf_size = sh->size - 8 - n;
    int64_t first = st->n_tensors;
    enum dsi_status status = DSI_OK;
    cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (strcmp(it->string, "__metadata__") == 0) continue;
        const char *name = it->string;
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
        cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsObject(it) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
            !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
            DSI_LOG_ERR("safetensors '%s': tensor '%.80s' needs dtype, shape and data_offsets",
                        label, name);
            status = DSI_ERR_FORMAT;
            break;
        }
        if (st->n_tensors == st->cap) {
            int64_t nc = st->cap ? st->cap * 2 : 256;
            struct dsi_st_tensor *p = realloc(st->tensors, (size_t)nc * sizeof *p);
            if (!p) {
                status = DSI_ERR_NOMEM;
                break;
            }
            st->tensors = p;
            st->cap = nc;
        }
        struct dsi_st_tensor *t = &st->tensors[st->n_tensors];
        memset(t, 0, sizeof *t);
        t->shard = shard_idx;
        t->name = strdup(name);
        if (!t->name) {
            status = DSI_ERR_NOMEM;
            break;
        }
        st->n_tensors++;
        int d;
        for (d = 0; d < DSI_ST_DTYPE_COUNT; d++)
            if (strcmp(dtypes[d].name, dt->valuestring) == 0) break;
        if (d == DSI_ST_DTYPE_COUNT) {
            DSI_LOG_ERR("safetensors '%s': tensor '%.80s' has unknown dtype '%.20s'", label, name,
                        dt->valuestring);
            status = DSI_ERR_FORMAT;
            break;
        }
        t->dtype = (enum dsi_st_dtype)d;
        int nd = cJSON_GetArraySize(shape);
        if (nd > DSI_ST_MAX_DIMS) {
            DSI_LOG_ERR("safetensors '%s': tensor '%.80s' has %d dimensions (at most %d)", label,
                        name, nd, DSI_ST_MAX_DIMS);
            status = DSI_ERR_FORMAT;
            break;
        }
        t->n_dims = nd;
        int64_t nel = 1;
        bool ok = true;
        for (int k = 0; k < nd && ok; k++) {
            cJSON *v = cJSON_GetArrayItem(shape, k);
            double x = cJSON_IsNumber(v) ? v->valuedouble : -1;
            if (x < 0 || x > 9007199254740992.0 || x != floor(x)) ok = false;
            else {
                t->shape[k] = (int64_t)x;
                if (__builtin_mul_overflow(nel, t->shape[k], &nel)) ok = false;
            }
        }
        uint64_t ob[2];
        for (int k = 0; k < 2 && ok; k++) {
            cJSON *v = cJSON_GetArrayItem(offs, k);
            double x = cJSON_IsNumber(v) ? v->valuedouble : -1;
            if (x < 0 || x > 9007199254740992.0 || x != floor(x)) ok = false;
            else ob[k] = (uint64_t)x;
        }
        if (!ok) {
            DSI_LOG_ERR("safetensors '%s': tensor '%.80s' has an invalid shape or data_offsets",
                        label, name);
            status = DSI_ERR_FORMAT;
            break;
        }
        t->n_elements = nel;
        uint64_t bits;
        if (__builtin_mul_overflow((uint64_t)nel, (uint64_t)dtypes[d].bits, &bits) || bits % 8) {
            DSI_LOG_ERR("safetensors '%s': tensor '%.80s' size is not a whole number of bytes",
                        label, name);
            status = DSI_ERR_FORMAT;
            break;
        }
        if (ob[1] < ob[0] || ob[1] - ob[0] != bits / 8 || ob[1] > buf_size) {
            DSI_LOG_ERR("safetensors '%s': tensor '%.80s': data_offsets [%llu, %llu) do not match "
                        "%llu bytes of %s data inside a buffer of %llu bytes (buffer at byte offset "
                        "%llu)", label, name, (unsigned long long)ob[0], (unsigned long long)ob[1],
                        (unsigned long long)(bits / 8), dtypes[d].name,
                        (unsigned long long)buf_size, (unsigned long long)(8 + n));
            status = DSI_ERR_FORMAT;
            break;
        }
        t->nbytes = (size_t)(bits / 8);
        t->data = t->nbytes ? buf + ob[0] : NULL;
    }
    cJSON_Delete(root);
    if (status) return status;

    /* the tensors of this file must tile its buffer exactly; this also rules out duplicates
     * of the same data and overlapping views */
    int64_t cnt = st->n_tensors - first;
    struct span *sp = malloc((size_t)(cnt ? cnt : 1) * sizeof *sp);
    if (!sp) return DSI_ERR_NOMEM;
    for (int64_t i = 0; i < cnt; i++) {
        const struct dsi_st_tensor *t = &st->tensors[first + i];
        uint64_t b = t->data ? (uint64_t)((const uint8_t *)t->data - buf) : 0;
        if (!t->data) {
            /* empty tensors: recompute their begin from nothing; they occupy no bytes */
            b = UINT64_MAX;
        }
        sp[i] = (struct span){b, b == UINT64_MAX ? b : b + t->nbytes, t->name};
    }
    qsort(sp, (size_t)cnt, sizeof *sp, cmp_span);
    uint64_t pos = 0;
    for (int64_t i = 0; i < cnt && status == DSI_OK; i++) {
        if (sp[i].begin == UINT64_MAX) break;
        if (sp[i].begin != pos) {
            DSI_LOG_ERR("safetensors '%s': tensor '%.80s' starts at %llu but the previous one ends "
                        "at %llu (tensors must tile the data buffer)", label, sp[i].name,
                        (unsigned long long)sp[i].begin, (unsigned long long)pos);
            status = DSI_ERR_FORMAT;
        }
        pos = sp[i].end;
    }
    if (status == DSI_OK && pos != buf_size) {
        DSI_LOG_ERR("safetensors '%s': tensors cover %llu bytes but the data buffer has %llu",
                    label, (unsigned long long)pos, (unsigned long long)buf_size);
        status = DSI_ERR_FORMAT;
    }
    free(sp);
    if (status) return status;

    /* duplicate names across or within files */
    status = rehash(st);
    if (status) return status;
    for (int64_t i = first; i < st->n_tensors; i++) {
        if (lookup(st, st->tensors[i].name) != &st->tensors[i]) {
            DSI_LOG_ERR("safetensors '%s': duplicate tensor name '%.80s'", label,
                        st->tensors[i].name);
            return DSI_ERR_FORMAT;
        }
    }
    return DSI_OK;
}

static enum dsi_status add_shard(struct dsi_st *st, const char *path) {
    struct shard *p = realloc(st->shards, (size_t)(st->n_shards + 1) * sizeof *p);
    if (!p) return DSI_ERR_NOMEM;
    st->shards = p;
    struct shard *sh = &st->shards[st->n_shards];
    memset(sh, 0, sizeof *sh);
    sh->path = strdup(path);
    if (!sh->path) return DSI_ERR_NOMEM;
    st->n_shards++;
    enum dsi_status s = dsi_file_map(path, &sh->map);
    if (s) return s;
    sh->base = sh->map.data;
    sh->size = sh->map.size;
    return parse_shard(st, st->n_shards - 1, path);
}

/* Open the shards listed in an index file and check that the names match weight_map. */
static enum dsi_status open_index(struct dsi_st *st, const char *index_path) {
    char *text;
    size_t len;
    enum dsi_status s = dsi_file_read_all(index_path, 64u << 20, &text, &len);
    if (s) return s;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        DSI_LOG_ERR("safetensors index '%s': not JSON with a 'weight_map' object", index_path);
        cJSON_Delete(root);
        return DSI_ERR_FORMAT;
    }
    char *dir = strdup(index_path);
    if (!dir) {
        cJSON_Delete(root);
        return DSI_ERR_NOMEM;
    }
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = '\0';
    else strcpy(dir, "./");

    /* open each distinct file once, in order of first appearance */
    cJSON *it;
    int64_t n_entries = 0;
    cJSON_ArrayForEach(it, wm) {
        n_entries++;
        if (!cJSON_IsString(it) || strchr(it->valuestring, '/') || !*it->valuestring ||
            strcmp(it->valuestring, "..") == 0) {
            DSI_LOG_ERR("safetensors index '%s': invalid shard file name for '%.80s'",
                        index_path, it->string);
            s = DSI_ERR_FORMAT;
            break;
        }
        bool seen = false;
        for (int k = 0; k < st->n_shards && !seen; k++) {
            const char *base = strrchr(st->shards[k].path, '/');
            seen = strcmp(base ? base + 1 : st->shards[k].path, it->valuestring) == 0;
        }
        if (seen) continue;
        char *path = dsi_path_join(dir, it->valuestring);
        if (!path) {
            s = DSI_ERR_NOMEM;
            break;
        }
        s = add_shard(st, path);
        free(path);
        if (s) break;
    }
    if (s == DSI_OK) {
        cJSON_ArrayForEach(it, wm) {
            const struct dsi_st_tensor *t = lookup(st, it->string);
            const char *base = t ? strrchr(st->shards[t->shard].path, '/') : NULL;
            const char *fname = t ? (base ? base + 1 : st->shards[t->shard].path) : NULL;
            if (!t || strcmp(fname, it->valuestring) != 0) {
                DSI_LOG_ERR("safetensors index '%s': tensor '%.80s' is not in shard '%.80s' "
                            "(missing or incomplete shard?)", index_path, it->string,
                            it->valuestring);
                s = DSI_ERR_FORMAT;
                break;
            }
        }
        if (s == DSI_OK && n_entries != st->n_tensors) {
            DSI_LOG_ERR("safetensors index '%s': shards hold %lld tensors but weight_map lists "
                        "%lld", index_path, (long long)st->n_tensors, (long long)n_entries);
            s = DSI_ERR_FORMAT;
        }
    }
    free(dir);
    cJSON_Delete(root);
    return s;
}

enum dsi_status dsi_st_open(const char *path, struct dsi_st **out) {
    *out = NULL;
    struct dsi_st *st = calloc(1, sizeof *st);
    if (!st) return DSI_ERR_NOMEM;
    enum dsi_status s;
    size_t len = strlen(path);
    if (dsi_path_is_dir(path)) {
        char *idx = dsi_path_join(path, "model.safetensors.index.json");
        char *one = dsi_path_join(path, "model.safetensors");
        if (!idx || !one) s = DSI_ERR_NOMEM;
        else if (dsi_path_exists(idx)) s = open_index(st, idx);
        else if (dsi_path_exists(one)) s = add_shard(st, one);
        else {
            DSI_LOG_ERR("'%s' has neither model.safetensors.index.json nor model.safetensors",
                        path);
            s = DSI_ERR_IO;
        }
        free(idx);
        free(one);
    } else if (len > 5 && strcmp(path + len - 5, ".json") == 0) {
        s = open_index(st, path);
    } else {
        s = add_shard(st, path);
    }
    if (s == DSI_OK) s = rehash(st);
    if (s) {
        if (s == DSI_ERR_NOMEM) DSI_LOG_ERR("safetensors '%s': out of memory", path);
        dsi_st_free(st);
        return s;
    }
    *out = st;
    return DSI_OK;
}

enum dsi_status dsi_st_open_buffer(const void *data, size_t size, const char *label,
                                   struct dsi_st **out) {
    *out = NULL;
    struct dsi_st *st = calloc(1, sizeof *st);
    if (!st) return DSI_ERR_NOMEM;
    st->shards = calloc(1, sizeof *st->shards);
    if (!st->shards) {
        free(st);
        return DSI_ERR_NOMEM;
    }
    st->n_shards = 1;
    st->shards[0].base = data;
    st->shards[0].size = data ? size : 0;
    enum dsi_status s = parse_shard(st, 0, label ? label : "(memory)");
    if (s == DSI_OK) s = rehash(st);
    if (s) {
        dsi_st_free(st);
        return s;
    }
    *out = st;
    return DSI_OK;
}

void dsi_st_free(struct dsi_st *st) {
    if (!st) return;
    for (int64_t i = 0; i < st->n_tensors; i++) free((char *)st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->n_shards; i++) {
        dsi_file_unmap(&st->shards[i].map);
        free(st->shards[i].path);
    }
    free(st->shards);
    free(st->hash);
    free(st);
}

int64_t dsi_st_count(const struct dsi_st *st) { return st->n_tensors; }

const struct dsi_st_tensor *dsi_st_get(const struct dsi_st *st, int64_t i) {
    return (i >= 0 && i < st->n_tensors) ? &st->tensors[i] : NULL;
}

const struct dsi_st_tensor *dsi_st_find(const struct dsi_st *st, const char *name) {
    return lookup(st, name);
}

enum dsi_status dsi_st_read_f32(const struct dsi_st_tensor *t, int64_t first, int64_t n,
                                float *dst) {
    if (first < 0 || n < 0 || first + n > t->n_elements) return DSI_ERR_ARG;
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case DSI_ST_F32:
        memcpy(dst, p + first * 4, (size_t)n * 4);
        return DSI_OK;
    case DSI_ST_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + (first + i) * 2, 2);
            dst[i] = dsi_f16_to_f32(h);
        }
        return DSI_OK;
    case DSI_ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + (first + i) * 2, 2);
            dst[i] = dsi_bf16_to_f32(h);
        }
        return DSI_OK;
    default:
        return DSI_ERR_UNSUPPORTED;
    }
}
