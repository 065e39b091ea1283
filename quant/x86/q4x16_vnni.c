/* The repacked Q4_0 and Q8_0 kernels (quant/kernels.h, "repacked weights") for AVX-512 VNNI:
 * per 32-element block of a 16-row panel, one 32-byte scale load and the values (Q4_0: four
 * 64-byte nibble loads, unpacked with and/shift; Q8_0: eight 64-byte loads, made unsigned by
 * flipping the sign bit), giving eight vectors of 16 rows x 4 unsigned values; per token,
 * eight vpdpbusd with four activation bytes broadcast to every row, in two (one or two
 * tokens: four) independent chains, the type's offset (Q4_0: values - 8, Q8_0: (values + 128)
 * - 128) taken off the integer sum with the activation's exact block sum, then one
 * conversion, one multiply and one FMA for the 16 rows: the prompt GEMM's arithmetic, so both
 * give the same bits. Tokens go four at a time. */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "quant/kernels.h"

static inline __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* nt tokens (1..4) of one panel; q8: the Q8_0 layout, else Q4_0. */
static inline __attribute__((always_inline)) void tokens(const bool q8, int64_t nb, const uint8_t *panel,
                                                          const uint8_t *x, size_t rb, int64_t K,
                                                          const int nt, float *y, size_t ldy) {
    const size_t bb = q8 ? 544 : 288;
    const int off = q8 ? 128 : 8;
    struct dsi_xq_view X[4];
    __m512 acc[4];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        X[t] = dsi_xq_view(x + (size_t)t * rb, K);
        acc[t] = _mm512_setzero_ps();
    }
    const __m512i m4 = _mm512_set1_epi8(0x0f), sign = _mm512_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pb = panel + (size_t)b * bb;
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)pb));
        __m512i v[8]; /* v[g]: elements 4g..4g+3 of the 16 rows, unsigned */
        if (q8) {
            _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++)
                v[g] = _mm512_xor_si512(_mm512_loadu_si512((const void *)(pb + 32 + 64 * g)), sign);
        } else {
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
                __m512i w = _mm512_loadu_si512((const void *)(pb + 32 + 64 * c));
                v[c] = _mm512_and_si512(w, m4);
                v[c + 4] = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
            }
        }
        _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
            const int8_t *q = X[t].q + 32 * b;
            __m512i s;
            if (nt <= 2) {
                __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[0], bcast4(q));
                __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[4], bcast4(q + 16));
                __m512i s2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[1], bcast4(q + 4));
                __m512i s3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[5], bcast4(q + 20));
                s0 = _mm512_dpbusd_epi32(s0, v[2], bcast4(q + 8));
                s1 = _mm512_dpbusd_epi32(s1, v[6], bcast4(q + 24));
                s2 = _mm512_dpbusd_epi32(s2, v[3], bcast4(q + 12));
                s3 = _mm512_dpbusd_epi32(s3, v[7], bcast4(q + 28));
                s = _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3));
            } else {
                __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[0], bcast4(q));
                __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[4], bcast4(q + 16));
                _Pragma("GCC unroll 4") for (int c = 1; c < 4; c++) {
                    s0 = _mm512_dpbusd_epi32(s0, v[c], bcast4(q + 4 * c));
                    s1 = _mm512_dpbusd_epi32(s1, v[c + 4], bcast4(q + 16 + 4 * c));
                }
                s = _mm512_add_epi32(s0, s1);
            }
            /* the offset off * sum(x) off the integer sum, exactly; the integer sums are exact
             * whatever the chains, and the float steps are the prompt GEMM's
             * (quant/x86/gemm_vnni.c): results equal it bit for bit, for any nt */
            int sx = X[t].s16[2 * b] + X[t].s16[2 * b + 1];
            s = _mm512_sub_epi32(s, _mm512_set1_epi32(off * sx));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(X[t].d[b])), acc[t]);
        }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + (size_t)t * ldy, acc[t]);
}

static inline __attribute__((always_inline)) void run(const bool q8, int64_t K, const void *panel,
                                                       const void *x, size_t rb, int64_t T, float *y,
                                                       size_t ldy) {
    const uint8_t *xb = x;
    int64_t nb = K / 32, t = 0;
    for (; t + 4 <= T; t += 4) tokens(q8, nb, panel, xb + (size_t)t * rb, rb, K, 4, y + (size_t)t * ldy, ldy);
    switch (T - t) {
    case 1: tokens(q8, nb, panel, xb + (size_t)t * rb, rb, K, 1, y + (size_t)t * ldy, ldy); break;
    case 2: tokens(q8, nb, panel, xb + (size_t)t * rb, rb, K, 2, y + (size_t)t * ldy, ldy); break;
    case 3: tokens(q8, nb, panel, xb + (size_t)t * rb, rb, K, 3, y + (size_t)t * ldy, ldy); break;
    default: break;
    }
}

void dsi_mm_q4_0_x16_avx512vnni(int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                                float *y, size_t ldy) {
    run(false, K, panel, x, rb, T, y, ldy);
}

void dsi_mm_q8_0_x16_avx512vnni(int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                                float *y, size_t ldy) {
    run(true, K, panel, x, rb, T, y, ldy);
}

/* A repacked panel into the prompt GEMM's panel (quant/gemm.c): the unsigned values of each
 * group, a = the scales, c = 0; returns the offset (Q4_0: 8, Q8_0: 128). */
int dsi_gemm_pack_x16_avx512vnni(int layout, const void *x16, int64_t K, void *panel) {
    const bool q8 = layout == DSI_LAYOUT_Q8_0_X16;
    const size_t bb = q8 ? 544 : 288;
    const uint8_t *s = x16;
    uint8_t *o = panel;
    const __m512i m4 = _mm512_set1_epi8(0x0f), sign = _mm512_set1_epi8((char)0x80);
    for (int64_t b = 0; b < K / 32; b++, s += bb, o += DSI_GEMM_BLOCK_BYTES) {
        if (q8) {
            for (int g = 0; g < 8; g++)
                _mm512_storeu_si512((void *)(o + 64 * g),
                                    _mm512_xor_si512(_mm512_loadu_si512((const void *)(s + 32 + 64 * g)), sign));
        } else {
            for (int c = 0; c < 4; c++) {
                __m512i v = _mm512_loadu_si512((const void *)(s + 32 + 64 * c));
                _mm512_storeu_si512((void *)(o + 64 * c), _mm512_and_si512(v, m4));
                _mm512_storeu_si512((void *)(o + 64 * (c + 4)), _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
            }
        }
        _mm512_storeu_ps((void *)(o + 512), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)s)));
        _mm512_storeu_ps((void *)(o + 576), _mm512_setzero_ps());
    }
    return q8 ? 128 : 8;
}
