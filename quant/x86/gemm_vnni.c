/* Prompt GEMM micro-kernel for AVX-512 VNNI (see quant/gemm.c for the panel layout): a panel
 * of 16 weight rows times up to 8 tokens at a time. Per 32-element block and token: eight
 * vpdpbusd of a 64-byte weight group with four activation bytes broadcast, the type's offset
 * taken off the integer sums, then one convert and two FMAs (scale a * d_x, offset
 * c * d_x * sum(x)) for all 16 rows. */
#include <immintrin.h>
#include <string.h>

#include "quant/kernels.h"

#define NT 8
#define UNROLL _Pragma("GCC unroll 8")

static inline int32_t rd32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __attribute__((always_inline)) void tile(int64_t K, const uint8_t *panel, int off,
                                                       const uint8_t *x, size_t rb, const int nt,
                                                       float *y, size_t ldy) {
    struct dsi_xq_view X[NT];
    __m512 acc[NT];
    UNROLL for (int t = 0; t < nt; t++) {
        X[t] = dsi_xq_view(x + (size_t)t * rb, K);
        acc[t] = _mm512_setzero_ps();
    }
    const int64_t nb = K / 32;
    for (int64_t j = 0; j < nb; j++) {
        const uint8_t *blk = panel + (size_t)j * DSI_GEMM_BLOCK_BYTES;
        __m512i is[NT];
        UNROLL for (int t = 0; t < nt; t++) is[t] = _mm512_setzero_si512();
        UNROLL for (int g = 0; g < 8; g++) {
            __m512i wv = _mm512_load_si512((const void *)(blk + 64 * g));
            UNROLL for (int t = 0; t < nt; t++)
                is[t] = _mm512_dpbusd_epi32(is[t], wv, _mm512_set1_epi32(rd32(X[t].q + 32 * j + 4 * g)));
        }
        /* the offset: off * sum(x) off each integer sum, exactly */
        if (off)
            UNROLL for (int t = 0; t < nt; t++) {
                int sx = X[t].s16[2 * j] + X[t].s16[2 * j + 1];
                is[t] = _mm512_sub_epi32(is[t], _mm512_set1_epi32(off * sx));
            }
        __m512 a = _mm512_load_ps((const void *)(blk + 512)), c = _mm512_load_ps((const void *)(blk + 576));
        UNROLL for (int t = 0; t < nt; t++) {
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[t]), _mm512_mul_ps(a, _mm512_set1_ps(X[t].d[j])), acc[t]);
            acc[t] = _mm512_fmadd_ps(c, _mm512_set1_ps(X[t].ds32[j]), acc[t]);
        }
    }
    UNROLL for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + (size_t)t * ldy, acc[t]);
}

void dsi_gemm_avx512vnni(int64_t K, const void *panel, int off, const void *x, size_t rb,
                         int64_t T, float *y, size_t ldy) {
    const uint8_t *xb = x;
    int64_t t = 0;
    for (; t + NT <= T; t += NT) tile(K, panel, off, xb + (size_t)t * rb, rb, NT, y + (size_t)t * ldy, ldy);
    switch (T - t) {
    case 0: break;
    case 1: tile(K, panel, off, xb + (size_t)t * rb, rb, 1, y + (size_t)t * ldy, ldy); break;
    case 2: tile(K, panel, off, xb + (size_t)t * rb, rb, 2, y + (size_t)t * ldy, ldy); break;
    case 3: tile(K, panel, off, xb + (size_t)t * rb, rb, 3, y + (size_t)t * ldy, ldy); break;
    case 4: tile(K, panel, off, xb + (size_t)t * rb, rb, 4, y + (size_t)t * ldy, ldy); break;
    case 5: tile(K, panel, off, xb + (size_t)t * rb, rb, 5, y + (size_t)t * ldy, ldy); break;
    case 6: tile(K, panel, off, xb + (size_t)t * rb, rb, 6, y + (size_t)t * ldy, ldy); break;
    default: tile(K, panel, off, xb + (size_t)t * rb, rb, 7, y + (size_t)t * ldy, ldy); break;
    }
}
