/* The repacked Q4_0, Q8_0 (and, further down, Q4_K and Q6_K) kernels (quant/kernels.h, "repacked weights") for AVX-512 VNNI:
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

/* Software prefetch of the weights PF_AHEAD bytes ahead of [p, p + n): on this EPYC the
 * decode kernels streamed a matrix at about half the bandwidth without it (a panel's rows
 * are contiguous and a thread's share of panels too, so "ahead" is what it reads next). */
#ifndef PF_AHEAD
#define PF_AHEAD 12288
#endif
static inline __attribute__((always_inline)) void prefetch_ahead(const uint8_t *p, const int n) {
    if (PF_AHEAD)
        _Pragma("GCC unroll 9") for (int k = 0; k < n; k += 64)
            _mm_prefetch((const char *)(p + PF_AHEAD + k), _MM_HINT_T0);
}

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
        prefetch_ahead(pb, (int)bb);
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

/* Q4_K (2304-byte super-blocks of 256 elements, quant/repack.c): the scales and minimums of
 * the 16 rows' eight sub-blocks as floats, a[j] = d * sc_j and c[j] = 0 - dmin * m_j (the
 * prompt GEMM's packer computes them the same way), decoded from the transposed 6-bit fields
 * sixteen rows at a time. */
static inline void q4k_scales_x16(const uint8_t *o, float a[8][16], float c[8][16]) {
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)o));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(o + 32)));
    const __m128i m6 = _mm_set1_epi8(63), m4 = _mm_set1_epi8(15), m30 = _mm_set1_epi8(0x30);
    __m128i S[12];
    for (int k = 0; k < 12; k++) S[k] = _mm_loadu_si128((const __m128i *)(const void *)(o + 64 + 16 * k));
    for (int j = 0; j < 8; j++) {
        __m128i sc, mn;
        if (j < 4) {
            sc = _mm_and_si128(S[j], m6);
            mn = _mm_and_si128(S[j + 4], m6);
        } else { /* low 4 bits in bytes 8..11, top 2 bits in bits 6-7 of bytes 0..7 */
            sc = _mm_or_si128(_mm_and_si128(S[j + 4], m4), _mm_and_si128(_mm_srli_epi16(S[j - 4], 2), m30));
            mn = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(S[j + 4], 4), m4),
                              _mm_and_si128(_mm_srli_epi16(S[j], 2), m30));
        }
        _mm512_store_ps(a[j], _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(sc))));
        _mm512_store_ps(c[j], _mm512_sub_ps(_mm512_setzero_ps(),
                                            _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(mn)))));
    }
}

/* nt tokens (1..4) of one Q4_K panel: per 64 elements, eight 64-byte loads give the low
 * nibbles (sub-block 2i) and the high ones (2i + 1); per token and sub-block eight vpdpbusd,
 * then the GEMM's float steps: acc += float(sum) * (a * d_x), acc += c * d_x * sum(x). */
static inline __attribute__((always_inline)) void q4k_tokens(int64_t nsb, const uint8_t *panel,
                                                             const uint8_t *x, size_t rb, int64_t K,
                                                             const int nt, float *y, size_t ldy) {
    struct dsi_xq_view X[4];
    __m512 acc[4];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        X[t] = dsi_xq_view(x + (size_t)t * rb, K);
        acc[t] = _mm512_setzero_ps();
    }
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    _Alignas(64) float A[8][16], C[8][16];
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *o = panel + (size_t)sb * 2304;
        q4k_scales_x16(o, A, C);
        for (int i = 0; i < 4; i++) {
            const uint8_t *pc = o + 256 + 512 * i;
            prefetch_ahead(pc, 512);
            __m512i lo[8], hi[8];
            _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) {
                __m512i w = _mm512_loadu_si512((const void *)(pc + 64 * c));
                lo[c] = _mm512_and_si512(w, m4);
                hi[c] = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
            }
            const int64_t j0 = 8 * sb + 2 * i;
            _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
                const int8_t *q = X[t].q + 32 * j0;
                __m512i sl, sh;
                if (nt <= 2) {
                    __m512i l0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[0], bcast4(q));
                    __m512i l1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[1], bcast4(q + 4));
                    __m512i h0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[0], bcast4(q + 32));
                    __m512i h1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[1], bcast4(q + 36));
                    _Pragma("GCC unroll 4") for (int c = 2; c < 8; c += 2) {
                        l0 = _mm512_dpbusd_epi32(l0, lo[c], bcast4(q + 4 * c));
                        l1 = _mm512_dpbusd_epi32(l1, lo[c + 1], bcast4(q + 4 * c + 4));
                        h0 = _mm512_dpbusd_epi32(h0, hi[c], bcast4(q + 32 + 4 * c));
                        h1 = _mm512_dpbusd_epi32(h1, hi[c + 1], bcast4(q + 36 + 4 * c));
                    }
                    sl = _mm512_add_epi32(l0, l1);
                    sh = _mm512_add_epi32(h0, h1);
                } else {
                    sl = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[0], bcast4(q));
                    sh = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[0], bcast4(q + 32));
                    _Pragma("GCC unroll 8") for (int c = 1; c < 8; c++) {
                        sl = _mm512_dpbusd_epi32(sl, lo[c], bcast4(q + 4 * c));
                        sh = _mm512_dpbusd_epi32(sh, hi[c], bcast4(q + 32 + 4 * c));
                    }
                }
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sl),
                                         _mm512_mul_ps(_mm512_load_ps(A[2 * i]), _mm512_set1_ps(X[t].d[j0])), acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_load_ps(C[2 * i]), _mm512_set1_ps(X[t].ds32[j0]), acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sh),
                                         _mm512_mul_ps(_mm512_load_ps(A[2 * i + 1]), _mm512_set1_ps(X[t].d[j0 + 1])),
                                         acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_load_ps(C[2 * i + 1]), _mm512_set1_ps(X[t].ds32[j0 + 1]), acc[t]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + (size_t)t * ldy, acc[t]);
}

void dsi_mm_q4_K_x16_avx512vnni(int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                                float *y, size_t ldy) {
    const uint8_t *xb = x;
    int64_t nsb = K / 256, t = 0;
    for (; t + 4 <= T; t += 4) q4k_tokens(nsb, panel, xb + (size_t)t * rb, rb, K, 4, y + (size_t)t * ldy, ldy);
    switch (T - t) {
    case 1: q4k_tokens(nsb, panel, xb + (size_t)t * rb, rb, K, 1, y + (size_t)t * ldy, ldy); break;
    case 2: q4k_tokens(nsb, panel, xb + (size_t)t * rb, rb, K, 2, y + (size_t)t * ldy, ldy); break;
    case 3: q4k_tokens(nsb, panel, xb + (size_t)t * rb, rb, K, 3, y + (size_t)t * ldy, ldy); break;
    default: break;
    }
}

/* Q6_K (3360-byte super-blocks of 256 elements, quant/repack.c): the 16 scales of the 16
 * rows as floats, a[i] = d * sc_i (the prompt GEMM's packer computes them the same way). */
static inline void q6k_scales_x16(const uint8_t *o, float a[16][16]) {
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)o));
    for (int i = 0; i < 16; i++)
        _mm512_store_ps(a[i], _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                                   _mm_loadu_si128((const __m128i *)(const void *)(o + 32 + 16 * i))))));
}

/* The unsigned 6-bit values (0..63) of group g (elements 4g..4g+3) of sub-block k (0..3) of
 * half hf of a Q6_K super-block: low nibbles from ql, two high bits from qh. */
static inline __attribute__((always_inline)) __m512i q6k_group(const uint8_t *o, int hf, int k, int g) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    __m512i l = _mm512_loadu_si512((const void *)(o + 288 + 1024 * hf + 64 * (g + 8 * (k % 2))));
    __m512i h = _mm512_loadu_si512((const void *)(o + 2336 + 512 * hf + 64 * g));
    l = k < 2 ? _mm512_and_si512(l, m4) : _mm512_and_si512(_mm512_srli_epi16(l, 4), m4);
    h = k == 0 ? _mm512_slli_epi16(h, 4) : k == 1 ? _mm512_slli_epi16(h, 2) : k == 2 ? h : _mm512_srli_epi16(h, 2);
    return _mm512_or_si512(l, _mm512_and_si512(h, m30));
}

/* nt tokens (1..4) of one Q6_K panel: per sub-block and token, eight vpdpbusd in two sums
 * (the scale changes every 16 elements), the offset 32 * sum(x) off each, then the GEMM's
 * float steps for halves: acc += float(sum_h) * (a_h * d_x). */
static inline __attribute__((always_inline)) void q6k_tokens(int64_t nsb, const uint8_t *panel,
                                                             const uint8_t *x, size_t rb, int64_t K,
                                                             const int nt, float *y, size_t ldy) {
    struct dsi_xq_view X[4];
    __m512 acc[4];
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
        X[t] = dsi_xq_view(x + (size_t)t * rb, K);
        acc[t] = _mm512_setzero_ps();
    }
    _Alignas(64) float A[16][16];
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *o = panel + (size_t)sb * 3360;
        q6k_scales_x16(o, A);
        for (int j = 0; j < 8; j++) {
            prefetch_ahead(o + 420 * j, 420);
            __m512i v[8];
            _Pragma("GCC unroll 8") for (int g = 0; g < 8; g++) v[g] = q6k_group(o, j / 4, j % 4, g);
            const int64_t jb = 8 * sb + j;
            _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) {
                const int8_t *q = X[t].q + 32 * jb;
                __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[0], bcast4(q));
                __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[4], bcast4(q + 16));
                _Pragma("GCC unroll 4") for (int g = 1; g < 4; g++) {
                    s0 = _mm512_dpbusd_epi32(s0, v[g], bcast4(q + 4 * g));
                    s1 = _mm512_dpbusd_epi32(s1, v[g + 4], bcast4(q + 16 + 4 * g));
                }
                s0 = _mm512_sub_epi32(s0, _mm512_set1_epi32(32 * X[t].s16[2 * jb]));
                s1 = _mm512_sub_epi32(s1, _mm512_set1_epi32(32 * X[t].s16[2 * jb + 1]));
                __m512 dx = _mm512_set1_ps(X[t].d[jb]);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(_mm512_load_ps(A[2 * j]), dx), acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(_mm512_load_ps(A[2 * j + 1]), dx), acc[t]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < nt; t++) _mm512_storeu_ps(y + (size_t)t * ldy, acc[t]);
}

void dsi_mm_q6_K_x16_avx512vnni(int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                                float *y, size_t ldy) {
    const uint8_t *xb = x;
    int64_t nsb = K / 256, t = 0;
    for (; t + 4 <= T; t += 4) q6k_tokens(nsb, panel, xb + (size_t)t * rb, rb, K, 4, y + (size_t)t * ldy, ldy);
    switch (T - t) {
    case 1: q6k_tokens(nsb, panel, xb + (size_t)t * rb, rb, K, 1, y + (size_t)t * ldy, ldy); break;
    case 2: q6k_tokens(nsb, panel, xb + (size_t)t * rb, rb, K, 2, y + (size_t)t * ldy, ldy); break;
    case 3: q6k_tokens(nsb, panel, xb + (size_t)t * rb, rb, K, 3, y + (size_t)t * ldy, ldy); break;
    default: break;
    }
}

/* A repacked panel into the prompt GEMM's panel (quant/gemm.c): the unsigned values of each
 * group, a = the scales, c = 0; returns the offset (Q4_0: 8, Q8_0: 128). */
int dsi_gemm_pack_x16_avx512vnni(int layout, const void *x16, int64_t K, void *panel) {
    if (layout == DSI_LAYOUT_Q6_K_X16) { /* a: the first 16 elements' scale, c: the second's */
        _Alignas(64) float A[16][16];
        uint8_t *o = panel;
        for (int64_t sb = 0; sb < K / 256; sb++) {
            const uint8_t *s = (const uint8_t *)x16 + (size_t)sb * 3360;
            q6k_scales_x16(s, A);
            for (int j = 0; j < 8; j++, o += DSI_GEMM_BLOCK_BYTES) {
                for (int g = 0; g < 8; g++) _mm512_storeu_si512((void *)(o + 64 * g), q6k_group(s, j / 4, j % 4, g));
                _mm512_storeu_ps((void *)(o + 512), _mm512_load_ps(A[2 * j]));
                _mm512_storeu_ps((void *)(o + 576), _mm512_load_ps(A[2 * j + 1]));
            }
        }
        return 32 | DSI_GEMM_HALVES;
    }
    if (layout == DSI_LAYOUT_Q4_K_X16) { /* a = d * sc, c = -dmin * m: the row packer's values */
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        _Alignas(64) float A[8][16], C[8][16];
        uint8_t *o = panel;
        for (int64_t sb = 0; sb < K / 256; sb++) {
            const uint8_t *s = (const uint8_t *)x16 + (size_t)sb * 2304;
            q4k_scales_x16(s, A, C);
            for (int j = 0; j < 8; j++, o += DSI_GEMM_BLOCK_BYTES) {
                const uint8_t *pc = s + 256 + 512 * (j / 2);
                for (int g = 0; g < 8; g++) {
                    __m512i w = _mm512_loadu_si512((const void *)(pc + 64 * g));
                    if (j % 2) w = _mm512_srli_epi16(w, 4);
                    _mm512_storeu_si512((void *)(o + 64 * g), _mm512_and_si512(w, m4));
                }
                _mm512_storeu_ps((void *)(o + 512), _mm512_load_ps(A[j]));
                _mm512_storeu_ps((void *)(o + 576), _mm512_load_ps(C[j]));
            }
        }
        return 0;
    }
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
