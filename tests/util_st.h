/* Test helpers for reference files (tests/util.h has the rest; these need the library's
 * safetensors reader, which the AArch64 kernel-test build does not link). */
#ifndef DSI_TESTS_UTIL_ST_H
#define DSI_TESTS_UTIL_ST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"

/* A reference tensor as a malloc'd int32 (I32/I64 sources) or float array, *n its element
 * count; NULL when absent or of another type. */
static inline int32_t *tu_st_ids(const struct dsi_st *st, const char *name, int64_t *n) {
    const struct dsi_st_tensor *t = dsi_st_find(st, name);
    if (!t || (t->dtype != DSI_ST_I32 && t->dtype != DSI_ST_I64)) return NULL;
    int32_t *v = malloc((size_t)t->n_elements * sizeof *v + 1);
    for (int64_t i = 0; i < t->n_elements; i++) {
        if (t->dtype == DSI_ST_I32) memcpy(&v[i], (const char *)t->data + 4 * i, 4);
        else {
            int64_t x;
            memcpy(&x, (const char *)t->data + 8 * i, 8);
            v[i] = (int32_t)x;
        }
    }
    if (n) *n = t->n_elements;
    return v;
}

static inline float *tu_st_f32(const struct dsi_st *st, const char *name, int64_t *n) {
    const struct dsi_st_tensor *t = dsi_st_find(st, name);
    if (!t) return NULL;
    float *v = malloc((size_t)t->n_elements * sizeof *v + 1);
    if (dsi_st_read_f32(t, 0, t->n_elements, v) != DSI_OK) {
        free(v);
        return NULL;
    }
    if (n) *n = t->n_elements;
    return v;
}

/* Index of the largest of v[0..n) (the first on ties). */
static inline int32_t tu_argmax(const float *v, int64_t n) {
    int32_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = (int32_t)i;
    return b;
}

#endif
