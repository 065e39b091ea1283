/* The repacked Q4_0 kernel (quant/kernels.h, "repacked weights") for AVX-512 VNNI: per
 * 32-element block of a 16-row panel, one 32-byte scale load and four 64-byte nibble loads,
 * unpacked into eight vectors of 16 rows x 4 unsigned values; per token, eight vpdpbusd with
 * four activation bytes broadcast to every row, in two (one or two tokens: four) independent
 * chains, then one conversion and two FMAs for the 16 rows. The -8 offset of Q4_0 comes from
 * the activation's block sums. Tokens go four at a time. */
#include <immintrin.h>
#include <string.h>

#include "quant/kernels.h"

static inline __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

static inline __attribute__((always_inline)) void tokens(int64_t nb, const uint8_t *panel,
                                                          const uint8_t *x, size_t rb, int64_t K,
                                                          const int nt, float *y, size_t ldy) {
    struct dsi_xq_view X[4];
    __m512 acc[4], accm[4];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        X[t] = dsi_xq_view(x + (size_t)t * rb, K);
        acc[t] = accm[t] = _mm512_setzero_ps();
    }
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pb = panel + (size_t)b * DSI_X16_BLOCK_BYTES;
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)pb));
        __m512i lo[4], hi[4];
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
            __m512i v = _mm512_loadu_si512((const void *)(pb + 32 + 64 * c));
            lo[c] = _mm512_and_si512(v, m4);
            hi[c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
            const int8_t *q = X[t].q + 32 * b;
            __m512i s;
            if (nt <= 2) {
                __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[0], bcast4(q));
                __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[0], bcast4(q + 16));
                __m512i s2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[1], bcast4(q + 4));
                __m512i s3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[1], bcast4(q + 20));
                s0 = _mm512_dpbusd_epi32(s0, lo[2], bcast4(q + 8));
                s1 = _mm512_dpbusd_epi32(s1, hi[2], bcast4(q + 24));
                s2 = _mm512_dpbusd_epi32(s2, lo[3], bcast4(q + 12));
                s3 = _mm512_dpbusd_epi32(s3, hi[3], bcast4(q + 28));
                s = _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3));
            } else {
                __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[0], bcast4(q));
                __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[0], bcast4(q + 16));
                _Pragma("GCC unroll 4") for (int c = 1; c < 4; c++) {
                    s0 = _mm512_dpbusd_epi32(s0, lo[c], bcast4(q + 4 * c));
                    s1 = _mm512_dpbusd_epi32(s1, hi[c], bcast4(q + 16 + 4 * c));
                }
                s = _mm512_add_epi32(s0, s1);
            }
            /* the integer sums are exact whatever the chains: results do not depend on nt */
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(s), dw);
            acc[t] = _mm512_fmadd_ps(f, _mm512_set1_ps(X[t].d[b]), acc[t]);
            accm[t] = _mm512_fmadd_ps(dw, _mm512_set1_ps(X[t].ds32[b]), accm[t]);
        }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++)
        _mm512_storeu_ps(y + (size_t)t * ldy, _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), accm[t], acc[t]));
}

void dsi_mm_q4_0_x16_avx512vnni(int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                                float *y, size_t ldy) {
    const uint8_t *xb = x;
    int64_t nb = K / 32, t = 0;
    for (; t + 4 <= T; t += 4) tokens(nb, panel, xb + (size_t)t * rb, rb, K, 4, y + (size_t)t * ldy, ldy);
    switch (T - t) {
    case 1: tokens(nb, panel, xb + (size_t)t * rb, rb, K, 1, y + (size_t)t * ldy, ldy); break;
    case 2: tokens(nb, panel, xb + (size_t)t * rb, rb, K, 2, y + (size_t)t * ldy, ldy); break;
    case 3: tokens(nb, panel, xb + (size_t)t * rb, rb, K, 3, y + (size_t)t * ldy, ldy); break;
    default: break;
    }
}

/* A repacked panel into the prompt GEMM's panel (quant/gemm.c): the nibbles of each chunk
 * become its groups c (low) and 4 + c (high), a = the scales, c = 0; the offset is 8. */
int dsi_gemm_pack_x16_avx512vnni(const void *x16, int64_t K, void *panel) {
    const uint8_t *s = x16;
    uint8_t *o = panel;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int64_t b = 0; b < K / 32; b++, s += DSI_X16_BLOCK_BYTES, o += DSI_GEMM_BLOCK_BYTES) {
        for (int c = 0; c < 4; c++) {
            __m512i v = _mm512_loadu_si512((const void *)(s + 32 + 64 * c));
            _mm512_storeu_si512((void *)(o + 64 * c), _mm512_and_si512(v, m4));
            _mm512_storeu_si512((void *)(o + 64 * (c + 4)), _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
        }
        _mm512_storeu_ps((void *)(o + 512), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)s)));
        _mm512_storeu_ps((void *)(o + 576), _mm512_setzero_ps());
    }
    return 8;
}
