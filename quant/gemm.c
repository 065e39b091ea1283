/* Weight panels for the prompt GEMM (see kernels.h): 16 rows of a quantized matrix unpacked,
 * per 32-element block, into unsigned bytes u interleaved four at a time (lane r of group g
 * holds elements 4g..4g+3 of row r), with per-row floats a and c such that the weight is
 * a * u + c. Then one vpdpbusd multiplies a group with four activation bytes broadcast to all
 * 16 lanes, and each block's integer sums are scaled once per row and token.
 *
 * Packing follows each type's decomposition (dsi_decode32: element = a * q + m, q integer),
 * u = q + off with a constant offset per type that makes u non-negative; the kernels take
 * off * sum(x) from each block's integer sum (exact), and c = m is the type's own offset.
 * The types with off > 0 are symmetric (m = 0, so c = 0): the kernels leave their c term out.
 * Q4_0, Q8_0, Q4_K and Q6_K have word-at-a-time packers; the other types with one scale and
 * one offset per 32 elements go through the decoder. Q6_K's scale changes every 16 elements:
 * its offset carries DSI_GEMM_HALVES and the c slot holds the second half's scale. Q2_K and
 * Q3_K (a scale and a minimum per 16) are not packed: their prompts keep the row kernels. */
#include <stdbool.h>
#include <string.h>

#include "core/cpu.h"
#include "core/dtype.h"
#include "quant/formats.h"
#include "quant/kernels.h"

/* u = q + off fits 0..255 */
static int pack_offset(enum dsi_type t) {
    switch (t) {
    case DSI_TYPE_Q4_0: return 8;
    case DSI_TYPE_Q5_0: return 16;
    case DSI_TYPE_Q4_1:
    case DSI_TYPE_Q5_1:
    case DSI_TYPE_Q4_K:
    case DSI_TYPE_Q5_K: return 0;
    case DSI_TYPE_Q8_0:
    case DSI_TYPE_IQ4_NL:
    case DSI_TYPE_IQ4_XS: return 128;
    case DSI_TYPE_Q6_K: return 32 | DSI_GEMM_HALVES;
    default: return -1;
    }
}

bool dsi_gemm_can_pack(enum dsi_type t) { return pack_offset(t) >= 0; }

size_t dsi_gemm_panel_bytes(int64_t K) { return (size_t)(K / 32) * DSI_GEMM_BLOCK_BYTES; }

static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void put(uint8_t *blk, int g, int r, uint32_t v) { memcpy(blk + 64 * g + 4 * r, &v, 4); }

static inline float *blk_a(uint8_t *blk) { return (float *)(void *)(blk + 512); }
static inline float *blk_c(uint8_t *blk) { return (float *)(void *)(blk + 576); }

static void pack_row_q4_0(const void *w, int64_t nb, int r, uint8_t *panel) {
    const struct block_q4_0 *b = w;
    for (int64_t j = 0; j < nb; j++) {
        uint8_t *blk = panel + (size_t)j * DSI_GEMM_BLOCK_BYTES;
        for (int g = 0; g < 4; g++) {
            uint32_t v = rd32(b[j].qs + 4 * g);
            put(blk, g, r, v & 0x0f0f0f0fu);
            put(blk, g + 4, r, (v >> 4) & 0x0f0f0f0fu);
        }
        float a = dsi_f16_to_f32(b[j].d);
        blk_a(blk)[r] = a;
        blk_c(blk)[r] = 0.0f;
    }
}

static void pack_row_q8_0(const void *w, int64_t nb, int r, uint8_t *panel) {
    const struct block_q8_0 *b = w;
    for (int64_t j = 0; j < nb; j++) {
        uint8_t *blk = panel + (size_t)j * DSI_GEMM_BLOCK_BYTES;
        for (int g = 0; g < 8; g++) put(blk, g, r, rd32((const uint8_t *)b[j].qs + 4 * g) ^ 0x80808080u);
        float a = dsi_f16_to_f32(b[j].d);
        blk_a(blk)[r] = a;
        blk_c(blk)[r] = 0.0f;
    }
}

static void pack_row_q4_K(const void *w, int64_t nb, int r, uint8_t *panel) {
    const struct block_q4_K *b = w;
    for (int64_t j = 0; j < nb; j++) {
        const struct block_q4_K *sb = b + j / 8;
        int s = (int)(j % 8);
        uint8_t *blk = panel + (size_t)j * DSI_GEMM_BLOCK_BYTES;
        const uint8_t *qs = sb->qs + 32 * (s / 2);
        for (int g = 0; g < 8; g++) put(blk, g, r, (rd32(qs + 4 * g) >> (4 * (s % 2))) & 0x0f0f0f0fu);
        uint8_t sc, mn;
        dsi_q4k_scale_min(s, sb->scales, &sc, &mn);
        blk_a(blk)[r] = dsi_f16_to_f32(sb->d) * (float)sc;
        blk_c(blk)[r] = -dsi_f16_to_f32(sb->dmin) * (float)mn;
    }
}

static void pack_row_generic(enum dsi_type t, const void *w, int64_t nb, int r, uint8_t *panel) {
    dsi_decode32_fn dec = dsi_decode32(t);
    const int po = pack_offset(t), off = po & 0xff;
    const bool halves = po & DSI_GEMM_HALVES;
    for (int64_t j = 0; j < nb; j++) {
        uint8_t *blk = panel + (size_t)j * DSI_GEMM_BLOCK_BYTES;
        int q[32];
        float a[2], m[2];
        dec(w, j, q, a, m);
        for (int i = 0; i < 32; i++) blk[64 * (i / 4) + 4 * r + i % 4] = (uint8_t)(q[i] + off);
        blk_a(blk)[r] = a[0];
        blk_c(blk)[r] = halves ? a[1] : m[0];
    }
}

int dsi_gemm_pack(enum dsi_type t, const void *w, size_t ws, int nr, int64_t K, void *panel) {
    if (!dsi_gemm_can_pack(t) || K % 32) return -1;
#if defined(__x86_64__)
    if (dsi_kernels_gemm() == dsi_gemm_avx512vnni) {
        int off = dsi_gemm_pack_avx512vnni(t, w, ws, nr, K, panel);
        if (off >= 0) return off;
    }
#endif
    int64_t nb = K / 32;
    uint8_t *p = panel;
    for (int r = 0; r < DSI_GEMM_ROWS; r++) {
        const void *row = (const uint8_t *)w + (size_t)r * ws;
        if (r >= nr) { /* missing rows of the last panel: zero weights */
            for (int64_t j = 0; j < nb; j++) {
                uint8_t *blk = p + (size_t)j * DSI_GEMM_BLOCK_BYTES;
                for (int g = 0; g < 8; g++) put(blk, g, r, 0);
                blk_a(blk)[r] = blk_c(blk)[r] = 0.0f;
            }
            continue;
        }
        switch (t) {
        case DSI_TYPE_Q4_0: pack_row_q4_0(row, nb, r, p); break;
        case DSI_TYPE_Q8_0: pack_row_q8_0(row, nb, r, p); break;
        case DSI_TYPE_Q4_K: pack_row_q4_K(row, nb, r, p); break;
        default: pack_row_generic(t, row, nb, r, p); break;
        }
    }
    return pack_offset(t);
}

void dsi_gemm_ref(int64_t K, const void *panel, int off, const void *x, size_t rb, int64_t T,
                  float *y, size_t ldy) {
    const uint8_t *p = panel;
    const bool halves = off & DSI_GEMM_HALVES;
    off &= 0xff;
    for (int64_t t = 0; t < T; t++) {
        struct dsi_xq_view v = dsi_xq_view((const uint8_t *)x + (size_t)t * rb, K);
        for (int r = 0; r < DSI_GEMM_ROWS; r++) {
            double acc = 0;
            for (int64_t j = 0; j < K / 32; j++) {
                const uint8_t *blk = p + (size_t)j * DSI_GEMM_BLOCK_BYTES;
                int64_t isum[2] = {0, 0};
                for (int i = 0; i < 32; i++)
                    isum[i / 16] += ((int64_t)blk[64 * (i / 4) + 4 * r + i % 4] - off) * v.q[32 * j + i];
                float a, c;
                memcpy(&a, blk + 512 + 4 * r, 4);
                memcpy(&c, blk + 576 + 4 * r, 4);
                if (halves)
                    acc += (double)a * v.d[j] * (double)isum[0] + (double)c * v.d[j] * (double)isum[1];
                else
                    acc += (double)a * v.d[j] * (double)(isum[0] + isum[1]) + (double)c * v.ds32[j];
            }
            y[(size_t)t * ldy + (size_t)r] = (float)acc;
        }
    }
}

dsi_gemm_fn dsi_kernels_gemm(void) {
#if defined(__x86_64__)
    if (dsi_cpu_has_all(DSI_CPU_AVX512 | DSI_CPU_AVX512_VNNI)) return dsi_gemm_avx512vnni;
#endif
    return NULL;
}
