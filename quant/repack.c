/* Load-time repacking of Q4_0 and Q8_0 matrices into 16-row panels (see kernels.h,
 * "repacked weights"). Per 32-element block of 16 rows: the 16 fp16 scales, then 64-byte
 * chunks whose 4-byte lane r holds four values of row r:
 *  - Q4_0 (288 bytes): four chunks, chunk c = bytes 4c..4c+3 of the row's nibbles (low
 *    nibbles: elements 4c..4c+3, high nibbles: elements 16+4c..16+4c+3);
 *  - Q8_0 (544 bytes): eight chunks, chunk g = elements 4g..4g+3.
 * A panel block is the size of 16 blocks of the type, so a matrix keeps its size and can be
 * repacked in place. */
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "quant/formats.h"
#include "quant/kernels.h"

static int layout_of(enum dsi_type t) {
    return t == DSI_TYPE_Q4_0 ? DSI_LAYOUT_Q4_0_X16 : t == DSI_TYPE_Q8_0 ? DSI_LAYOUT_Q8_0_X16 : 0;
}

size_t dsi_x16_block_bytes(int layout) {
    return layout == DSI_LAYOUT_Q4_0_X16 ? 288 : layout == DSI_LAYOUT_Q8_0_X16 ? 544 : 0;
}

bool dsi_repack_possible(const struct dsi_tensor *t) {
    return layout_of(t->type) && t->layout == DSI_LAYOUT_ROWS && t->ne[0] % 32 == 0 &&
           t->ne[1] % DSI_X16_ROWS == 0 && t->nb[1] == dsi_row_size(t->type, t->ne[0]) &&
           t->nb[2] == t->nb[1] * (size_t)t->ne[1] && t->ne[3] == 1;
}

/* One panel: 16 rows of src (rows rs bytes apart) into dst (16 * rs bytes). */
static void pack_panel(int layout, const uint8_t *src, size_t rs, int64_t nb, uint8_t *dst) {
    size_t bb = dsi_x16_block_bytes(layout);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *o = dst + (size_t)b * bb;
        for (int r = 0; r < DSI_X16_ROWS; r++) {
            const uint8_t *row = src + (size_t)r * rs;
            if (layout == DSI_LAYOUT_Q4_0_X16) {
                const struct block_q4_0 *blk = (const struct block_q4_0 *)(const void *)row + b;
                memcpy(o + 2 * r, &blk->d, 2);
                for (int c = 0; c < 4; c++) memcpy(o + 32 + 64 * c + 4 * r, blk->qs + 4 * c, 4);
            } else {
                const struct block_q8_0 *blk = (const struct block_q8_0 *)(const void *)row + b;
                memcpy(o + 2 * r, &blk->d, 2);
                for (int g = 0; g < 8; g++) memcpy(o + 32 + 64 * g + 4 * r, blk->qs + 4 * g, 4);
            }
        }
    }
}

bool dsi_repack(struct dsi_tensor *t, void *dst) {
    if (!dsi_repack_possible(t)) return false;
    int layout = layout_of(t->type);
    int64_t nb = t->ne[0] / 32, rows = t->ne[1] * t->ne[2];
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
    const uint8_t *p = panel;
    size_t bb = dsi_x16_block_bytes(layout);
    for (int64_t b = 0; b < K / 32; b++) {
        const uint8_t *o = p + (size_t)b * bb;
        if (layout == DSI_LAYOUT_Q4_0_X16) {
            struct block_q4_0 *blk = (struct block_q4_0 *)row + b;
            memcpy(&blk->d, o + 2 * r, 2);
            for (int c = 0; c < 4; c++) memcpy(blk->qs + 4 * c, o + 32 + 64 * c + 4 * r, 4);
        } else {
            struct block_q8_0 *blk = (struct block_q8_0 *)row + b;
            memcpy(&blk->d, o + 2 * r, 2);
            for (int g = 0; g < 8; g++) memcpy(blk->qs + 4 * g, o + 32 + 64 * g + 4 * r, 4);
        }
    }
}

dsi_mm_x16_fn dsi_kernels_mm_x16(int layout) {
#if defined(__x86_64__)
    if (dsi_cpu_has_all(DSI_CPU_AVX512 | DSI_CPU_AVX512_VNNI)) {
        if (layout == DSI_LAYOUT_Q4_0_X16) return dsi_mm_q4_0_x16_avx512vnni;
        if (layout == DSI_LAYOUT_Q8_0_X16) return dsi_mm_q8_0_x16_avx512vnni;
    }
#endif
    (void)layout;
    return NULL;
}

int dsi_gemm_pack_x16(int layout, const void *x16, int64_t K, void *panel) {
#if defined(__x86_64__)
    if (dsi_kernels_gemm() == dsi_gemm_avx512vnni) return dsi_gemm_pack_x16_avx512vnni(layout, x16, K, panel);
#endif
    /* portable: the same bytes */
    const uint8_t *s = x16;
    uint8_t *o = panel;
    size_t bb = dsi_x16_block_bytes(layout);
    for (int64_t b = 0; b < K / 32; b++, s += bb, o += DSI_GEMM_BLOCK_BYTES) {
        if (layout == DSI_LAYOUT_Q4_0_X16) {
            for (int c = 0; c < 4; c++)
                for (int i = 0; i < 64; i++) {
                    o[64 * c + i] = s[32 + 64 * c + i] & 15;
                    o[64 * (c + 4) + i] = s[32 + 64 * c + i] >> 4;
                }
        } else {
            for (int i = 0; i < 512; i++) o[i] = s[32 + i] ^ 0x80;
        }
        for (int r = 0; r < 16; r++) {
            uint16_t h;
            memcpy(&h, s + 2 * r, 2);
            float a = dsi_f16_to_f32(h), z = 0.0f;
            memcpy(o + 512 + 4 * r, &a, 4);
            memcpy(o + 576 + 4 * r, &z, 4);
        }
    }
    return layout == DSI_LAYOUT_Q4_0_X16 ? 8 : 128;
}
