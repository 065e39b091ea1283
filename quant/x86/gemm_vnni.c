/* Prompt GEMM micro-kernel for AVX-512 VNNI (see quant/gemm.c for the panel layout): a panel
 * of 16 weight rows times 4 tokens at a time (8 measured 10-25% slower on Zen 5: the per-token
 * pointers to the activations, their scales and sums no longer fit in the 16 general
 * registers and were spilled inside the loop). Per 32-element block and token: eight
 * vpdpbusd of a 64-byte weight group with four activation bytes broadcast, the type's offset
 * taken off the integer sums, then one convert, one multiply (a * d_x) and one FMA for all 16
 * rows, and for the types without an offset (c != 0: Q4_K, ...) one more FMA, c * d_x * sum(x). */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "core/dtype.h"
#include "quant/formats.h"
#include "quant/kernels.h"

#define NT 4
#define UNROLL _Pragma("GCC unroll 8")

static inline int32_t rd32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __attribute__((always_inline)) void tile(int64_t K, const uint8_t *panel, int off,
                                                       const uint8_t *x, size_t rb, const int nt,
                                                       float *y, size_t ldy, const bool halves) {
    struct dsi_xq_view X[NT];
    __m512 acc[NT];
    UNROLL for (int t = 0; t < nt; t++) {
        X[t] = dsi_xq_view(x + (size_t)t * rb, K);
        acc[t] = _mm512_setzero_ps();
    }
    const int64_t nb = K / 32;
    for (int64_t j = 0; j < nb; j++) {
        const uint8_t *blk = panel + (size_t)j * DSI_GEMM_BLOCK_BYTES;
        __m512i is[NT], ih[NT]; /* halves: is the first 16 elements, ih the second */
        UNROLL for (int t = 0; t < nt; t++) is[t] = ih[t] = _mm512_setzero_si512();
        UNROLL for (int g = 0; g < 8; g++) {
            __m512i wv = _mm512_load_si512((const void *)(blk + 64 * g));
            UNROLL for (int t = 0; t < nt; t++) {
                __m512i xv = _mm512_set1_epi32(rd32(X[t].q + 32 * j + 4 * g));
                if (halves && g >= 4) ih[t] = _mm512_dpbusd_epi32(ih[t], wv, xv);
                else is[t] = _mm512_dpbusd_epi32(is[t], wv, xv);
            }
        }
        __m512 a = _mm512_load_ps((const void *)(blk + 512));
        if (halves) { /* two scales: a for elements 0..15, the c slot for 16..31 */
            __m512 a1 = _mm512_load_ps((const void *)(blk + 576));
            UNROLL for (int t = 0; t < nt; t++) {
                is[t] = _mm512_sub_epi32(is[t], _mm512_set1_epi32(off * X[t].s16[2 * j]));
                ih[t] = _mm512_sub_epi32(ih[t], _mm512_set1_epi32(off * X[t].s16[2 * j + 1]));
                __m512 dx = _mm512_set1_ps(X[t].d[j]);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[t]), _mm512_mul_ps(a, dx), acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ih[t]), _mm512_mul_ps(a1, dx), acc[t]);
            }
            continue;
        }
        /* the offset: off * sum(x) off each integer sum, exactly */
        if (off)
            UNROLL for (int t = 0; t < nt; t++) {
                int sx = X[t].s16[2 * j] + X[t].s16[2 * j + 1];
                is[t] = _mm512_sub_epi32(is[t], _mm512_set1_epi32(off * sx));
            }
        UNROLL for (int t = 0; t < nt; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[t]), _mm512_mul_ps(a, _mm512_set1_ps(X[t].d[j])), acc[t]);
        if (!off) { /* the types with an offset have c = 0 (quant/gemm.c) */
            __m512 c = _mm512_load_ps((const void *)(blk + 576));
            UNROLL for (int t = 0; t < nt; t++) acc[t] = _mm512_fmadd_ps(c, _mm512_set1_ps(X[t].ds32[j]), acc[t]);
        }
    }
    UNROLL for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + (size_t)t * ldy, acc[t]);
}

static inline __attribute__((always_inline)) void tiles(int64_t K, const uint8_t *panel, int off,
                                                        const uint8_t *xb, size_t rb, int64_t T,
                                                        float *y, size_t ldy, const bool halves) {
    int64_t t = 0;
    for (; t + NT <= T; t += NT) tile(K, panel, off, xb + (size_t)t * rb, rb, NT, y + (size_t)t * ldy, ldy, halves);
    switch (T - t) {
    case 0: break;
    case 1: tile(K, panel, off, xb + (size_t)t * rb, rb, 1, y + (size_t)t * ldy, ldy, halves); break;
    case 2: tile(K, panel, off, xb + (size_t)t * rb, rb, 2, y + (size_t)t * ldy, ldy, halves); break;
    default: tile(K, panel, off, xb + (size_t)t * rb, rb, 3, y + (size_t)t * ldy, ldy, halves); break;
    }
}

void dsi_gemm_avx512vnni(int64_t K, const void *panel, int off, const void *x, size_t rb,
                         int64_t T, float *y, size_t ldy) {
    if (off & DSI_GEMM_HALVES) tiles(K, panel, off & 0xff, x, rb, T, y, ldy, true);
    else tiles(K, panel, off, x, rb, T, y, ldy, false);
}

/* ---- packing with gathers: one dword of every row of the panel per instruction ---------- */

/* Dword at byte offset `off` of each of the 16 rows (rows ws bytes apart). */
static inline __m512i gather_rows(const uint8_t *w, __m512i ridx, size_t off) {
    return _mm512_i32gather_epi32(ridx, (const void *)(w + off), 1);
}

/* f16 in the low half of each dword -> f32 */
static inline __m512 low_f16(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }

int dsi_gemm_pack_avx512vnni(enum dsi_type t, const void *w, size_t ws, int nr, int64_t K,
                             void *panel) {
    if (nr != DSI_GEMM_ROWS || ws > (size_t)1 << 26 || K % 32) return -1;
    const uint8_t *wb = w;
    uint8_t *p = panel;
    const __m512i ridx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)ws));
    const __m512i lo = _mm512_set1_epi8(0x0f);
    const int64_t nb = K / 32;
    switch (t) {
    case DSI_TYPE_Q4_0:
        for (int64_t j = 0; j < nb; j++) {
            uint8_t *blk = p + (size_t)j * DSI_GEMM_BLOCK_BYTES;
            size_t base = (size_t)j * 18;
            for (int g = 0; g < 4; g++) {
                __m512i v = gather_rows(wb, ridx, base + 2 + 4 * (size_t)g);
                _mm512_store_si512((void *)(blk + 64 * g), _mm512_and_si512(v, lo));
                _mm512_store_si512((void *)(blk + 64 * (g + 4)), _mm512_and_si512(_mm512_srli_epi32(v, 4), lo));
            }
            _mm512_store_ps((void *)(blk + 512), low_f16(gather_rows(wb, ridx, base)));
            _mm512_store_ps((void *)(blk + 576), _mm512_setzero_ps());
        }
        return 8;
    case DSI_TYPE_Q8_0: {
        const __m512i flip = _mm512_set1_epi32((int)0x80808080u);
        for (int64_t j = 0; j < nb; j++) {
            uint8_t *blk = p + (size_t)j * DSI_GEMM_BLOCK_BYTES;
            size_t base = (size_t)j * 34;
            for (int g = 0; g < 8; g++)
                _mm512_store_si512((void *)(blk + 64 * g),
                                   _mm512_xor_si512(gather_rows(wb, ridx, base + 2 + 4 * (size_t)g), flip));
            /* d sits at byte 0 of the block: gather the dword starting there */
            _mm512_store_ps((void *)(blk + 512), low_f16(gather_rows(wb, ridx, base)));
            _mm512_store_ps((void *)(blk + 576), _mm512_setzero_ps());
        }
        return 128;
    }
    case DSI_TYPE_Q6_K:
        for (int64_t sbi = 0; sbi < nb / 8; sbi++) {
            size_t base = (size_t)sbi * 210;
            /* scales: d * sc[16] of every row */
            _Alignas(64) float sc[16][16];
            for (int r = 0; r < DSI_GEMM_ROWS; r++) {
                const struct block_q6_K *b = (const void *)(wb + (size_t)r * ws + base);
                float d = dsi_f16_to_f32(b->d);
                for (int i = 0; i < 16; i++) sc[i][r] = d * (float)b->scales[i];
            }
            /* a 128-element half: blocks k = 0..3 share the high bits (qh >> 2k) and pairs
             * of them the low ones (k and k + 2: low and high nibbles), 24 gathers in all */
            for (int half = 0; half < 2; half++) {
                uint8_t *b0 = p + (size_t)(8 * sbi + 4 * half) * DSI_GEMM_BLOCK_BYTES;
                size_t ql = base + 64 * (size_t)half, qh = base + 128 + 32 * (size_t)half;
                for (int g = 0; g < 8; g++) {
                    __m512i h = gather_rows(wb, ridx, qh + 4 * (size_t)g);
                    __m512i l[2] = {gather_rows(wb, ridx, ql + 4 * (size_t)g),
                                    gather_rows(wb, ridx, ql + 32 + 4 * (size_t)g)};
                    for (int k = 0; k < 4; k++) {
                        __m512i lk = _mm512_and_si512(k < 2 ? l[k % 2] : _mm512_srli_epi32(l[k % 2], 4), lo);
                        __m512i hk = _mm512_and_si512(_mm512_srli_epi32(h, 2 * k), _mm512_set1_epi8(3));
                        _mm512_store_si512((void *)(b0 + (size_t)k * DSI_GEMM_BLOCK_BYTES + 64 * g),
                                           _mm512_or_si512(lk, _mm512_slli_epi32(hk, 4)));
                    }
                }
                for (int k = 0; k < 4; k++) {
                    uint8_t *blk = b0 + (size_t)k * DSI_GEMM_BLOCK_BYTES;
                    _mm512_store_ps((void *)(blk + 512), _mm512_load_ps(sc[8 * half + 2 * k]));
                    _mm512_store_ps((void *)(blk + 576), _mm512_load_ps(sc[8 * half + 2 * k + 1]));
                }
            }
        }
        return 32 | DSI_GEMM_HALVES;
    case DSI_TYPE_Q4_K:
        for (int64_t sbi = 0; sbi < nb / 8; sbi++) {
            size_t base = (size_t)sbi * 144;
            __m512 d = low_f16(gather_rows(wb, ridx, base));
            __m512 dmin = low_f16(_mm512_srli_epi32(gather_rows(wb, ridx, base), 16));
            _Alignas(64) float sc[8][16], mn[8][16];
            for (int r = 0; r < DSI_GEMM_ROWS; r++) {
                const uint8_t *scales = wb + (size_t)r * ws + base + 4;
                for (int s = 0; s < 8; s++) {
                    uint8_t a, m;
                    dsi_q4k_scale_min(s, scales, &a, &m);
                    sc[s][r] = (float)a;
                    mn[s][r] = (float)m;
                }
            }
            for (int pair = 0; pair < 4; pair++) {
                uint8_t *b0 = p + (size_t)(8 * sbi + 2 * pair) * DSI_GEMM_BLOCK_BYTES;
                uint8_t *b1 = b0 + DSI_GEMM_BLOCK_BYTES;
                for (int g = 0; g < 8; g++) {
                    __m512i v = gather_rows(wb, ridx, base + 16 + 32 * (size_t)pair + 4 * (size_t)g);
                    _mm512_store_si512((void *)(b0 + 64 * g), _mm512_and_si512(v, lo));
                    _mm512_store_si512((void *)(b1 + 64 * g), _mm512_and_si512(_mm512_srli_epi32(v, 4), lo));
                }
                for (int h = 0; h < 2; h++) {
                    uint8_t *blk = h ? b1 : b0;
                    int s = 2 * pair + h;
                    _mm512_store_ps((void *)(blk + 512), _mm512_mul_ps(d, _mm512_load_ps(sc[s])));
                    _mm512_store_ps((void *)(blk + 576),
                                    _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, _mm512_load_ps(mn[s]))));
                }
            }
        }
        return 0;
    default: return -1;
    }
}
