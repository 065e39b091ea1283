/* Weights in device memory: conversion to the shaders' layouts, upload through a staging
 * buffer, and the table from a weight's host address to its device range.
 *
 * Layouts (vulkan/shaders/common.glsl): F32 and F16 as they are; Q4_0 and Q8_0 split into
 * the blocks' quants (16 or 32 bytes per block, word-aligned for the shaders) followed by the
 * blocks' f16 scales; Q4_K and Q5_K as they are, Q6_K padded to 212 bytes a block. Other types
 * (BF16, Q4_1, Q5_0/1, Q2_K, Q3_K, IQ4) are widened to F16 once at upload, which costs memory
 * but no accuracy beyond f16 rounding (BF16 exactly, when in f16's range). Float rows that are
 * not whole 32-element blocks are zero-padded to whole blocks. */
#include <stdlib.h>
#include <string.h>

#include "quant/kernels.h"
#include "vulkan/vk_impl.h"

static enum dsi_vk_wtype device_type(enum dsi_type t) {
    switch (t) {
    case DSI_TYPE_F32: return DSI_VK_W_F32;
    case DSI_TYPE_Q4_0: return DSI_VK_W_Q4_0;
    case DSI_TYPE_Q8_0: return DSI_VK_W_Q8_0;
    case DSI_TYPE_Q4_K: return DSI_VK_W_Q4_K;
    case DSI_TYPE_Q5_K: return DSI_VK_W_Q5_K;
    case DSI_TYPE_Q6_K: return DSI_VK_W_Q6_K;
    default: return DSI_VK_W_F16;
    }
}

/* Bytes of the device copy of n elements of type t, and where the scales start. */
static uint64_t layout_bytes(enum dsi_type t, int64_t n, uint64_t *scale_off) {
    uint64_t nb = (uint64_t)n / 32, ns = (uint64_t)n / 256;
    *scale_off = 0;
    switch (device_type(t)) {
    case DSI_VK_W_F32: return (uint64_t)n * 4;
    case DSI_VK_W_Q4_0: *scale_off = nb * 16; return nb * 16 + (nb + 1) / 2 * 4;
    case DSI_VK_W_Q8_0: *scale_off = nb * 32; return nb * 32 + (nb + 1) / 2 * 4;
    case DSI_VK_W_Q4_K: return ns * 144;
    case DSI_VK_W_Q5_K: return ns * 176;
    case DSI_VK_W_Q6_K: return ns * 212;
    default: return ((uint64_t)n * 2 + 3) & ~(uint64_t)3;
    }
}

/* Float weights (f32, and the types widened to f16) may have rows that are not whole 32-element
 * blocks: each row is zero-padded to whole blocks (the shaders' unit); quantized rows are
 * whole blocks by construction. */
static bool is_float_layout(enum dsi_type t) {
    enum dsi_vk_wtype d = device_type(t);
    return d == DSI_VK_W_F32 || d == DSI_VK_W_F16;
}

/* Elements of the device copy: rows padded to whole blocks. */
static int64_t device_elems(const struct dsi_tensor *t) {
    int64_t n = dsi_tensor_nelements(t), row = t->ne[0];
    if (!is_float_layout(t->type) || row % 32 == 0) return n;
    return n / row * ((row + 31) / 32 * 32);
}

uint64_t dsi_vk_weight_bytes(const struct dsi_tensor *t) {
    uint64_t so;
    return layout_bytes(t->type, device_elems(t), &so);
}

/* Write the device image of t into dst (layout_bytes bytes). */
static bool convert(const struct dsi_tensor *t, uint8_t *dst) {
    int64_t n = dsi_tensor_nelements(t);
    uint64_t so, bytes = layout_bytes(t->type, device_elems(t), &so);
    const uint8_t *src = t->data;
    int64_t row = t->ne[0], rows = n / row, prow = (row + 31) / 32 * 32; /* prow: float rows */
    memset(dst, 0, bytes);
    switch (device_type(t->type)) {
    case DSI_VK_W_F32:
        for (int64_t r = 0; r < rows; r++)
            memcpy(dst + (size_t)(r * prow) * 4, src + (size_t)r * t->nb[1], (size_t)row * 4);
        return true;
    case DSI_VK_W_Q4_0:
    case DSI_VK_W_Q8_0: {
        size_t qb = t->type == DSI_TYPE_Q4_0 ? 16 : 32, bs = qb + 2;
        uint16_t *sc = (uint16_t *)(dst + so);
        for (int64_t b = 0; b < n / 32; b++) {
            memcpy(&sc[b], src + (size_t)b * bs, 2);
            memcpy(dst + (size_t)b * qb, src + (size_t)b * bs + 2, qb);
        }
        return true;
    }
    case DSI_VK_W_Q4_K:
    case DSI_VK_W_Q5_K: memcpy(dst, src, bytes); return true;
    case DSI_VK_W_Q6_K: /* 210-byte blocks padded to 212 (word-aligned) */
        for (int64_t b = 0; b < n / 256; b++) memcpy(dst + (size_t)b * 212, src + (size_t)b * 210, 210);
        return true;
    default: break;
    }
    if (t->type == DSI_TYPE_F16) {
        for (int64_t r = 0; r < rows; r++)
            memcpy(dst + (size_t)(r * prow) * 2, src + (size_t)r * t->nb[1], (size_t)row * 2);
        return true;
    }
    const struct dsi_type_kernels *k = dsi_kernels(t->type);
    float *tmp = k && k->to_f32 ? malloc((size_t)row * sizeof(float)) : NULL;
    if (!tmp) return false;
    uint16_t *h = (uint16_t *)dst;
    for (int64_t r = 0; r < rows; r++) {
        k->to_f32(src + (size_t)r * t->nb[1], tmp, row);
        for (int64_t i = 0; i < row; i++) h[r * prow + i] = dsi_f32_to_f16(tmp[i]);
    }
    free(tmp);
    return true;
}

static size_t hash_ptr(const void *p, size_t cap) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

const struct dsi_vk_weight *dsi_vk_weight_find(const struct dsi_vk *vk, const void *host) {
    if (!vk->wtab_cap || !host) return NULL;
    for (size_t i = hash_ptr(host, vk->wtab_cap);; i = (i + 1) & (vk->wtab_cap - 1)) {
        if (vk->wtab[i].host == host) return &vk->wtab[i];
        if (!vk->wtab[i].host) return NULL;
    }
}

static bool table_put(struct dsi_vk *vk, const struct dsi_vk_weight *w) {
    if ((vk->wtab_n + 1) * 2 > vk->wtab_cap) {
        size_t cap = vk->wtab_cap ? vk->wtab_cap * 2 : 256;
        struct dsi_vk_weight *t = calloc(cap, sizeof *t);
        if (!t) return false;
        for (size_t i = 0; i < vk->wtab_cap; i++)
            if (vk->wtab[i].host) {
                size_t j = hash_ptr(vk->wtab[i].host, cap);
                while (t[j].host) j = (j + 1) & (cap - 1);
                t[j] = vk->wtab[i];
            }
        free(vk->wtab);
        vk->wtab = t;
        vk->wtab_cap = cap;
    }
    size_t j = hash_ptr(w->host, vk->wtab_cap);
    while (vk->wtab[j].host && vk->wtab[j].host != w->host) j = (j + 1) & (vk->wtab_cap - 1);
    if (!vk->wtab[j].host) vk->wtab_n++;
    vk->wtab[j] = *w;
    return true;
}

#define STAGING_BYTES ((uint64_t)16 << 20)

enum dsi_status dsi_vk_upload(struct dsi_vk *vk, const struct dsi_tensor *const *t, int nt,
                              const float *const *vec, const int64_t *vec_n, int nv,
                              struct dsi_vk_group **out) {
    *out = NULL;
    int n = nt + nv;
    struct dsi_vk_weight *w = calloc((size_t)(n ? n : 1), sizeof *w);
    const struct dsi_tensor **srcs = calloc((size_t)(n ? n : 1), sizeof *srcs);
    if (!w || !srcs) {
        free(w);
        free(srcs);
        return DSI_ERR_NOMEM;
    }
    uint64_t total = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        uint64_t so, bytes;
        if (i < nt) {
            if (!t[i] || !t[i]->data) continue;
            if (t[i]->layout != DSI_LAYOUT_ROWS ||
                (t[i]->ne[0] % 32 != 0 && !is_float_layout(t[i]->type))) {
                dsi_log(DSI_LOG_INFO, "vulkan: tensor %s has no device layout",
                        t[i]->name ? t[i]->name : "?");
                free(w);
                free(srcs);
                return DSI_ERR_UNSUPPORTED;
            }
            srcs[k] = t[i];
            bytes = layout_bytes(t[i]->type, device_elems(t[i]), &so);
            w[k] = (struct dsi_vk_weight){t[i]->data, VK_NULL_HANDLE, 0, bytes,
                                          device_type(t[i]->type), (uint32_t)(so / 4)};
        } else {
            if (!vec[i - nt]) continue;
            bytes = (uint64_t)vec_n[i - nt] * 4;
            so = 0;
            w[k] = (struct dsi_vk_weight){vec[i - nt], VK_NULL_HANDLE, 0, bytes, DSI_VK_W_F32, 0};
        }
        if (bytes > vk->info.max_buffer_range) {
            dsi_log(DSI_LOG_INFO, "vulkan: a weight of %.1f MiB exceeds the device's buffer range",
                    (double)bytes / 1048576.0);
            free(w);
            free(srcs);
            return DSI_ERR_UNSUPPORTED;
        }
        total = (total + vk->align - 1) / vk->align * vk->align;
        w[k].off = total;
        total += bytes;
        k++;
    }
    struct dsi_vk_group *g = calloc(1, sizeof *g);
    struct dsi_vk_buf stage = {0};
    enum dsi_status st = g ? dsi_vk_buf_new(vk, total, false, &g->b) : DSI_ERR_NOMEM;
    if (!st) st = dsi_vk_buf_new(vk, total < STAGING_BYTES ? total : STAGING_BYTES, true, &stage);
    /* convert one weight at a time into host memory, then through the staging buffer */
    for (int i = 0; i < k && !st; i++) {
        uint8_t *p = malloc(w[i].size);
        if (!p) {
            st = DSI_ERR_NOMEM;
            break;
        }
        if (!srcs[i]) memcpy(p, w[i].host, w[i].size);
        else if (!convert(srcs[i], p)) st = DSI_ERR_NOMEM;
        for (uint64_t o = 0; o < w[i].size && !st; o += stage.size) {
            uint64_t c = w[i].size - o < stage.size ? w[i].size - o : stage.size;
            memcpy(stage.map, p + o, c);
            st = dsi_vk_copy_now(vk, &stage, &g->b, w[i].off + o, c);
        }
        free(p);
        w[i].buf = g->b.buf;
    }
    free(srcs);
    dsi_vk_buf_free(vk, &stage);
    if (!st && vk->n_groups == vk->cap_groups) {
        int cap = vk->cap_groups ? vk->cap_groups * 2 : 64;
        struct dsi_vk_group **ng = realloc(vk->groups, (size_t)cap * sizeof *ng);
        if (!ng) st = DSI_ERR_NOMEM;
        else vk->groups = ng, vk->cap_groups = cap;
    }
    for (int i = 0; i < k && !st; i++)
        if (!table_put(vk, &w[i])) st = DSI_ERR_NOMEM;
    if (st) {
        /* forget what this group registered */
        for (int i = 0; i < k; i++) {
            const struct dsi_vk_weight *e = dsi_vk_weight_find(vk, w[i].host);
            if (e && g && e->buf == g->b.buf) ((struct dsi_vk_weight *)e)->buf = VK_NULL_HANDLE;
        }
        if (g) dsi_vk_buf_free(vk, &g->b);
        free(g);
        free(w);
        return st;
    }
    vk->groups[vk->n_groups++] = g;
    free(w);
    *out = g;
    return DSI_OK;
}
