/* Load-time repacking of Q4_0, Q8_0 and Q4_K matrices into 16-row panels (see kernels.h,
 * "repacked weights"). Per block of 16 rows, 64-byte chunks whose 4-byte lane r holds four
 * bytes of row r:
 *  - Q4_0 (32 elements, 288 bytes): the 16 fp16 scales, then four chunks, chunk c = bytes
 *    4c..4c+3 of the row's nibbles (low nibbles: elements 4c..4c+3, high nibbles: elements
 *    16+4c..16+4c+3);
 *  - Q8_0 (32 elements, 544 bytes): the 16 scales, then eight chunks, chunk g = elements
 *    4g..4g+3;
 *  - Q4_K (256 elements, 2304 bytes): the 16 d, the 16 dmin (fp16), the 12 bytes of packed
 *    scales and mins transposed (byte k of row r at 64 + 16k + r), then per 64 elements i
 *    (0..3) eight chunks, chunk c = bytes 32i + 4c..+3 of the row's nibbles (low nibbles:
 *    elements 4c..4c+3 of sub-block 2i, high nibbles: the same of sub-block 2i + 1);
 *  - Q6_K (256 elements, 3360 bytes): the 16 d (fp16), the 16 int8 scales transposed (scale
 *    k of row r at 32 + 16k + r), then the low bits: per 128 elements h (0..1) sixteen
 *    chunks at 288 + 1024h, chunk c = ql bytes 64h + 4c..+3; then the high bits: per h eight
 *    chunks at 2336 + 512h, chunk g = qh bytes 32h + 4g..+3.
 * A panel block is the size of 16 blocks of the type, so a matrix keeps its size and can be
 * repacked in place. */
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "quant/formats.h"
#include "quant/kernels.h"

int dsi_x16_layout(enum dsi_type t) {
    return t == DSI_TYPE_Q4_0   ? DSI_LAYOUT_Q4_0_X16
           : t == DSI_TYPE_Q8_0 ? DSI_LAYOUT_Q8_0_X16
           : t == DSI_TYPE_Q4_K ? DSI_LAYOUT_Q4_K_X16
           : t == DSI_TYPE_Q6_K ? DSI_LAYOUT_Q6_K_X16
                                : 0;
}

size_t dsi_x16_block_bytes(int layout) {
    return layout == DSI_LAYOUT_Q4_0_X16   ? 288
           : layout == DSI_LAYOUT_Q8_0_X16 ? 544
           : layout == DSI_LAYOUT_Q4_K_X16 ? 2304
           : layout == DSI_LAYOUT_Q6_K_X16 ? 3360
                                           : 0;
}

int64_t dsi_x16_block_elems(int layout) {
    return layout == DSI_LAYOUT_Q4_K_X16 || layout == DSI_LAYOUT_Q6_K_X16 ? QK_K : 32;
}

static enum dsi_type type_of(int layout) {
    return layout == DSI_LAYOUT_Q4_0_X16   ? DSI_TYPE_Q4_0
           : layout == DSI_LAYOUT_Q8_0_X16 ? DSI_TYPE_Q8_0
           : layout == DSI_LAYOUT_Q4_K_X16 ? DSI_TYPE_Q4_K
                                           : DSI_TYPE_Q6_K;
}

bool dsi_repack_possible(const struct dsi_tensor *t) {
    int layout = dsi_x16_layout(t->type);
    return layout && t->layout == DSI_LAYOUT_ROWS && t->ne[0] % dsi_x16_block_elems(layout) == 0 &&
           t->ne[1] % DSI_X16_ROWS == 0 && t->nb[1] == dsi_row_size(t->type, t->ne[0]) &&
           t->nb[2] == t->nb[1] * (size_t)t->ne[1] && t->ne[3] == 1;
}

/* Block b of row r between the row layout (blk, a block of the type) and a panel block (o). */
static void move_block(int layout, uint8_t *o, int r, void *blk, bool to_panel) {
#define MV(panel_off, blk_ptr, n)                                                                  \
    (to_panel ? memcpy(o + (panel_off), (blk_ptr), (n)) : memcpy((blk_ptr), o + (panel_off), (n)))
    if (layout == DSI_LAYOUT_Q4_0_X16) {
        struct block_q4_0 *q = blk;
        MV(2 * r, &q->d, 2);
        for (int c = 0; c < 4; c++) MV(32 + 64 * c + 4 * r, q->qs + 4 * c, 4);
    } else if (layout == DSI_LAYOUT_Q8_0_X16) {
        struct block_q8_0 *q = blk;
        MV(2 * r, &q->d, 2);
        for (int g = 0; g < 8; g++) MV(32 + 64 * g + 4 * r, q->qs + 4 * g, 4);
    } else if (layout == DSI_LAYOUT_Q6_K_X16) {
        struct block_q6_K *q = blk;
        MV(2 * r, &q->d, 2);
        for (int k = 0; k < 16; k++) MV(32 + 16 * k + r, q->scales + k, 1);
        for (int c = 0; c < 32; c++) MV(288 + 64 * c + 4 * r, q->ql + 4 * c, 4);
        for (int g = 0; g < 16; g++) MV(2336 + 64 * g + 4 * r, q->qh + 4 * g, 4);
    } else {
        struct block_q4_K *q = blk;
        MV(2 * r, &q->d, 2);
        MV(32 + 2 * r, &q->dmin, 2);
        for (int k = 0; k < 12; k++) MV(64 + 16 * k + r, q->scales + k, 1);
        for (int i = 0; i < 4; i++)
            for (int c = 0; c < 8; c++) MV(256 + 512 * i + 64 * c + 4 * r, q->qs + 32 * i + 4 * c, 4);
    }
#undef MV
}

/* One panel: 16 rows of src (rows rs bytes apart) into dst (16 * rs bytes). */
static void pack_panel(int layout, const uint8_t *src, size_t rs, int64_t nb, uint8_t *dst) {
    size_t bb = dsi_x16_block_bytes(layout), tb = bb / DSI_X16_ROWS;
    for (int64_t b = 0; b < nb; b++)
        for (int r = 0; r < DSI_X16_ROWS; r++)
            move_block(layout, dst + (size_t)b * bb, r, (void *)(uintptr_t)(src + (size_t)r * rs + (size_t)b * tb),
                       true);
}

bool dsi_repack(struct dsi_tensor *t, void *dst) {
    if (!dsi_repack_possible(t)) return false;
    int layout = dsi_x16_layout(t->type);
    int64_t nb = t->ne[0] / dsi_x16_block_elems(layout), rows = t->ne[1] * t->ne[2];
    size_t rs = t->nb[1], panel = rs * DSI_X16_ROWS;
    uint8_t *tmp = dst == t->data ? malloc(panel) : NULL;
    if (dst == t->data && !tmp) return false;
    for (int64_t p = 0; p < rows / DSI_X16_ROWS; p++) {
        const uint8_t *src = (const uint8_t *)t->data + (size_t)p * panel;
        if (tmp) {
            memcpy(tmp, src, panel);
            src = tmp;
        }
        pack_panel(layout, src, rs, nb, (uint8_t *)dst + (size_t)p * panel);
    }
    free(tmp);
    t->data = dst;
    t->layout = layout;
    return true;
}

void dsi_mm_x16_ref(int layout, int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                    float *y, size_t ldy) {
    const uint8_t *p = panel;
    int64_t nb = K / 32;
    size_t bb = dsi_x16_block_bytes(layout);
    for (int64_t t = 0; t < T; t++) {
        struct dsi_xq_view X = dsi_xq_view((const uint8_t *)x + (size_t)t * rb, K);
        for (int r = 0; r < DSI_X16_ROWS; r++) {
            float acc = 0;
            if (layout == DSI_LAYOUT_Q6_K_X16) { /* w = d * sc * (q - 32) per 16 elements */
                for (int64_t sb = 0; sb < K / QK_K; sb++) {
                    const uint8_t *o = p + (size_t)sb * bb;
                    uint16_t h;
                    memcpy(&h, o + 2 * r, 2);
                    for (int j = 0; j < 8; j++) {
                        const int hf = j / 4, k = j % 4; /* 128-element half, its sub-block */
                        int32_t s[2] = {0, 0};
                        const int8_t *q = X.q + 32 * (8 * sb + j);
                        for (int e = 0; e < 32; e++) {
                            int g = e / 4, i = e % 4;
                            uint8_t lb = o[288 + 1024 * hf + 64 * (g + 8 * (k % 2)) + 4 * r + i];
                            uint8_t hb = o[2336 + 512 * hf + 64 * g + 4 * r + i];
                            int v = ((k < 2 ? lb : lb >> 4) & 15) | ((hb >> (2 * k)) & 3) << 4;
                            s[e / 16] += (v - 32) * q[e];
                        }
                        for (int half = 0; half < 2; half++)
                            acc += (float)s[half] *
                                   (dsi_f16_to_f32(h) * (float)(int8_t)o[32 + 16 * (2 * j + half) + r]) *
                                   X.d[8 * sb + j];
                    }
                }
                y[(size_t)t * ldy + (size_t)r] = acc;
                continue;
            }
            if (layout == DSI_LAYOUT_Q4_K_X16) { /* w = d * sc * q - dmin * m per sub-block */
                for (int64_t sb = 0; sb < K / QK_K; sb++) {
                    const uint8_t *o = p + (size_t)sb * bb;
                    uint16_t h[2];
                    memcpy(&h[0], o + 2 * r, 2);
                    memcpy(&h[1], o + 32 + 2 * r, 2);
                    uint8_t scales[12];
                    for (int k = 0; k < 12; k++) scales[k] = o[64 + 16 * k + r];
                    for (int j = 0; j < 8; j++) {
                        uint8_t sc, mn;
                        dsi_q4k_scale_min(j, scales, &sc, &mn);
                        int32_t s = 0;
                        const int8_t *q = X.q + 32 * (8 * sb + j);
                        for (int c = 0; c < 8; c++)
                            for (int i = 0; i < 4; i++) {
                                uint8_t v = o[256 + 512 * (j / 2) + 64 * c + 4 * r + i];
                                s += ((j % 2 ? v >> 4 : v) & 15) * q[4 * c + i];
                            }
                        acc += (float)s * (dsi_f16_to_f32(h[0]) * sc) * X.d[8 * sb + j] -
                               dsi_f16_to_f32(h[1]) * mn * X.ds32[8 * sb + j];
                    }
                }
                y[(size_t)t * ldy + (size_t)r] = acc;
                continue;
            }
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *o = p + (size_t)b * bb;
                uint16_t h;
                memcpy(&h, o + 2 * r, 2);
                float dw = dsi_f16_to_f32(h);
                int32_t s = 0;
                const int8_t *q = X.q + 32 * b;
                if (layout == DSI_LAYOUT_Q4_0_X16) {
                    for (int c = 0; c < 4; c++)
                        for (int i = 0; i < 4; i++) {
                            uint8_t v = o[32 + 64 * c + 4 * r + i];
                            s += ((v & 15) - 8) * q[4 * c + i] + ((v >> 4) - 8) * q[16 + 4 * c + i];
                        }
                } else {
                    for (int g = 0; g < 8; g++)
                        for (int i = 0; i < 4; i++) s += (int8_t)o[32 + 64 * g + 4 * r + i] * q[4 * g + i];
                }
                acc += (float)s * dw * X.d[b];
            }
            y[(size_t)t * ldy + (size_t)r] = acc;
        }
    }
}

void dsi_x16_unpack_row(int layout, const void *panel, int64_t K, int r, void *row) {
    size_t bb = dsi_x16_block_bytes(layout), tb = bb / DSI_X16_ROWS;
    for (int64_t b = 0; b < K / dsi_x16_block_elems(layout); b++)
        move_block(layout, (uint8_t *)(uintptr_t)panel + (size_t)b * bb, r, (uint8_t *)row + (size_t)b * tb, false);
}

dsi_mm_x16_fn dsi_kernels_mm_x16(int layout) {
#if defined(__x86_64__)
    if (dsi_cpu_has_all(DSI_CPU_AVX512 | DSI_CPU_AVX512_VNNI)) {
        if (layout == DSI_LAYOUT_Q4_0_X16) return dsi_mm_q4_0_x16_avx512vnni;
        if (layout == DSI_LAYOUT_Q8_0_X16) return dsi_mm_q8_0_x16_avx512vnni;
        if (layout == DSI_LAYOUT_Q4_K_X16) return dsi_mm_q4_K_x16_avx512vnni;
        if (layout == DSI_LAYOUT_Q6_K_X16) return dsi_mm_q6_K_x16_avx512vnni;
    }
#endif
    (void)layout;
    return NULL;
}

int dsi_gemm_pack_x16(int layout, const void *x16, int64_t K, void *panel) {
#if defined(__x86_64__)
    if (dsi_kernels_gemm() == dsi_gemm_avx512vnni) return dsi_gemm_pack_x16_avx512vnni(layout, x16, K, panel);
#endif
    /* portable: each block's 16 rows back in the row layout, packed by dsi_gemm_pack (the
     * same bytes by construction) */
    const enum dsi_type t = type_of(layout);
    const int64_t be = dsi_x16_block_elems(layout);
    const size_t bb = dsi_x16_block_bytes(layout), tb = bb / DSI_X16_ROWS;
    uint8_t tmp[3360];
    int off = -1;
    for (int64_t b = 0; b < K / be; b++) {
        for (int r = 0; r < DSI_X16_ROWS; r++)
            move_block(layout, (uint8_t *)(uintptr_t)x16 + (size_t)b * bb, r, tmp + (size_t)r * tb, false);
        off = dsi_gemm_pack(t, tmp, tb, DSI_X16_ROWS, be,
                            (uint8_t *)panel + (size_t)(b * (be / 32)) * DSI_GEMM_BLOCK_BYTES);
    }
    return off;
}
