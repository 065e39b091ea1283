/* Template of the x86 integer row kernels (quantized weights x 8-bit activations), 256-bit
 * vectors, one 32-element sub-block per vector. Instantiated per instruction set by
 * qdot_avx2.c (maddubs + madd), qdot_vnni.c (AVX-512 VNNI on 256-bit registers) and
 * qdot_avx2vnni.c (AVX-VNNI). The including file defines:
 *   SUFFIX          function name suffix
 *   DOT_U8(u, s)    __m256i of 8 int32: lane k = sum of the products of bytes 4k..4k+3 of
 *                   u (unsigned, at most 63 for the maddubs variant) and s (signed, > -128)
 * Each kernel follows the decomposition of quant/dot_ref.c: integer dot per sub-block (lanes
 * 0-3 hold its first 16 elements, lanes 4-7 the second 16), converted to float once and
 * scaled by a * d_x; the minimum/offset terms m * d_x * sum(xq) are accumulated separately
 * from the activation's precomputed ds16/ds32. */
#include <immintrin.h>
#include <string.h>

#include "quant/formats.h"
#include "quant/kernels.h"

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(name, SUFFIX)

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Dot of signed weights: |w| (unsigned) against x with w's sign. |w| may be 128 (an
 * out-of-range -128 in a file): 128 * 127 * 2 still fits maddubs' int16. */
static inline __m256i dot_s8(__m256i w, __m256i x) {
    return DOT_U8(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
}

/* 32 nibbles of 16 bytes: bytes 0-15 the low nibbles, bytes 16-31 the high ones. */
static inline __m256i nibbles16(const uint8_t *p) {
    __m128i r = _mm_loadu_si128((const __m128i *)(const void *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(r, 4), r), _mm256_set1_epi8(0x0f));
}

/* Byte l = 0xff where bit l of the 32-bit little-endian word at p is set. */
static inline __m256i bits32_to_bytes(const uint8_t *p) {
    uint32_t x;
    memcpy(&x, p, 4);
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2,
                                          2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

static inline __m256i load32(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

#define ACT_SETUP                                                                                  \
    struct dsi_xq_view X[DSI_DOT_MAX_X];                                                           \
    __m256 acc[DSI_DOT_MAX_X], accm[DSI_DOT_MAX_X];                                                \
    for (int t = 0; t < nx; t++) {                                                                 \
        X[t] = dsi_xq_view((const uint8_t *)x + (size_t)t * xs, n);                                \
        acc[t] = _mm256_setzero_ps();                                                              \
        accm[t] = _mm256_setzero_ps();                                                             \
    }

#define ACT_FINISH                                                                                 \
    for (int t = 0; t < nx; t++) out[(size_t)t * os] = hsum8(_mm256_add_ps(acc[t], accm[t]));

/* acc += float(isum) * s */
static inline __m256 scale_acc(__m256 acc, __m256i isum, __m256 s) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, acc);
}

/* ---- activation quantizer -------------------------------------------------------------- */

void FN(dsi_quantize_x)(const float *x, void *row, int64_t n) {
    int8_t *q = row;
    float *d = (float *)(void *)(q + n), *ds32 = d + n / 32, *ds16 = ds32 + n / 32;
    int16_t *s16 = (int16_t *)(void *)(ds16 + n / 16);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < n / 32; b++) {
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 32 * b + 8 * k);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[k]));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], vid));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], vid));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], vid));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], vid));
        /* sums of each half: lanes of i0 + i1 and of i2 + i3 */
        __m256i h0 = _mm256_add_epi32(i0, i1), h1 = _mm256_add_epi32(i2, i3);
        __m256i hs = _mm256_hadd_epi32(h0, h1); /* h0: 0+1 2+3 | h1: 0+1 2+3 | h0: 4+5 6+7 | h1 .. */
        hs = _mm256_hadd_epi32(hs, hs);
        int s0 = _mm256_extract_epi32(hs, 0) + _mm256_extract_epi32(hs, 4);
        int s1 = _mm256_extract_epi32(hs, 1) + _mm256_extract_epi32(hs, 5);
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        p = _mm256_permutevar8x32_epi32(p, perm);
        _mm256_storeu_si256((__m256i *)(void *)(q + 32 * b), p);
        s16[2 * b] = (int16_t)s0;
        s16[2 * b + 1] = (int16_t)s1;
        ds16[2 * b] = d[b] * (float)s0;
        ds16[2 * b + 1] = d[b] * (float)s1;
        ds32[b] = d[b] * (float)(s0 + s1);
    }
}

/* ---- 32-element block types ------------------------------------------------------------ */

/* Body shared by the types with one scale per 32-element block: QV is the block's weight
 * vector, DOT the dot function, SCALE the block scale a and MIN its m (0 for none). */
#define BLOCK32_LOOP(BT, QV, DOT, SCALE, MIN)                                                      \
    const BT *b = w;                                                                               \
    ACT_SETUP                                                                                      \
    float mterm[DSI_DOT_MAX_X] = {0};                                                              \
    for (int64_t i = 0; i < n / 32; i++) {                                                         \
        __m256i qv = QV;                                                                           \
        float a = SCALE, m = MIN;                                                                  \
        for (int t = 0; t < nx; t++) {                                                             \
            __m256i s = DOT(qv, load32(X[t].q + 32 * i));                                          \
            acc[t] = scale_acc(acc[t], s, _mm256_set1_ps(a * X[t].d[i]));                          \
            mterm[t] += m * X[t].ds32[i];                                                          \
        }                                                                                          \
    }                                                                                              \
    for (int t = 0; t < nx; t++) out[(size_t)t * os] = hsum8(_mm256_add_ps(acc[t], accm[t])) + mterm[t];

#define DOT_U DOT_U8

void FN(dsi_dot_q8_q4_0)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    BLOCK32_LOOP(struct block_q4_0, nibbles16(b[i].qs), DOT_U, h2f(b[i].d), -8.0f * a)
}

void FN(dsi_dot_q8_q4_1)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    BLOCK32_LOOP(struct block_q4_1, nibbles16(b[i].qs), DOT_U, h2f(b[i].d), h2f(b[i].m))
}

static inline __m256i q5_vec(const uint8_t *qs, const uint8_t *qh) {
    return _mm256_or_si256(nibbles16(qs), _mm256_and_si256(bits32_to_bytes(qh), _mm256_set1_epi8(0x10)));
}

void FN(dsi_dot_q8_q5_0)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    BLOCK32_LOOP(struct block_q5_0, q5_vec(b[i].qs, b[i].qh), DOT_U, h2f(b[i].d), -16.0f * a)
}

void FN(dsi_dot_q8_q5_1)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    BLOCK32_LOOP(struct block_q5_1, q5_vec(b[i].qs, b[i].qh), DOT_U, h2f(b[i].d), h2f(b[i].m))
}

void FN(dsi_dot_q8_q8_0)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    BLOCK32_LOOP(struct block_q8_0, load32(b[i].qs), dot_s8, h2f(b[i].d), 0.0f)
}

static inline __m256i iq4_vec(const uint8_t *qs) {
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)dsi_kvalues_iq4nl));
    return _mm256_shuffle_epi8(tbl, nibbles16(qs));
}

void FN(dsi_dot_q8_iq4_nl)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                           size_t os) {
    BLOCK32_LOOP(struct block_iq4_nl, iq4_vec(b[i].qs), dot_s8, h2f(b[i].d), 0.0f)
}

/* ---- K-quants (super-blocks of 256) ----------------------------------------------------- */

/* Per super-block: the minimum terms of its 8 sub-blocks in one vector product per token. */
static inline void min_terms32(__m256 *accm, const struct dsi_xq_view *X, int nx, int64_t sb,
                               __m256 c) {
    for (int t = 0; t < nx; t++) accm[t] = _mm256_fmadd_ps(c, _mm256_loadu_ps(X[t].ds32 + 8 * sb), accm[t]);
}

static inline void min_terms16(__m256 *accm, const struct dsi_xq_view *X, int nx, int64_t sb,
                               __m256 c0, __m256 c1) {
    for (int t = 0; t < nx; t++) {
        accm[t] = _mm256_fmadd_ps(c0, _mm256_loadu_ps(X[t].ds16 + 16 * sb), accm[t]);
        accm[t] = _mm256_fmadd_ps(c1, _mm256_loadu_ps(X[t].ds16 + 16 * sb + 8), accm[t]);
    }
}

/* One 32-element sub-block j with a single scale a (broadcast per token). */
static inline void sub32_u(__m256 *acc, const struct dsi_xq_view *X, int nx, int64_t j, __m256i q,
                           float a) {
    for (int t = 0; t < nx; t++)
        acc[t] = scale_acc(acc[t], DOT_U8(q, load32(X[t].q + 32 * j)), _mm256_set1_ps(a * X[t].d[j]));
}

static inline void sub32_s(__m256 *acc, const struct dsi_xq_view *X, int nx, int64_t j, __m256i q,
                           float a) {
    for (int t = 0; t < nx; t++)
        acc[t] = scale_acc(acc[t], dot_s8(q, load32(X[t].q + 32 * j)), _mm256_set1_ps(a * X[t].d[j]));
}

/* One 32-element sub-block j whose halves have their own scales: sv = [a0 x4, a1 x4]. */
static inline void sub16x2_u(__m256 *acc, const struct dsi_xq_view *X, int nx, int64_t j,
                             __m256i q, __m256 sv) {
    for (int t = 0; t < nx; t++)
        acc[t] = scale_acc(acc[t], DOT_U8(q, load32(X[t].q + 32 * j)),
                           _mm256_mul_ps(sv, _mm256_set1_ps(X[t].d[j])));
}

/* Lanes [v[2k] x4, v[2k+1] x4] of an 8-float vector. */
static inline __m256 pair_scales(__m256 v, int k) {
    return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1,
                                                         2 * k + 1, 2 * k + 1, 2 * k + 1));
}

void FN(dsi_dot_q8_q4_K)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    const struct block_q4_K *b = w;
    ACT_SETUP
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float d = h2f(b[sb].d), dmin = h2f(b[sb].dmin);
        float a[8], c[8];
        for (int g = 0; g < 8; g++) {
            uint8_t sc, mn;
            dsi_q4k_scale_min(g, b[sb].scales, &sc, &mn);
            a[g] = d * (float)sc;
            c[g] = -dmin * (float)mn;
        }
        min_terms32(accm, X, nx, sb, _mm256_loadu_ps(c));
        for (int k = 0; k < 4; k++) {
            __m256i raw = load32(b[sb].qs + 32 * k);
            sub32_u(acc, X, nx, 8 * sb + 2 * k, _mm256_and_si256(raw, m4), a[2 * k]);
            sub32_u(acc, X, nx, 8 * sb + 2 * k + 1, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4),
                    a[2 * k + 1]);
        }
    }
    ACT_FINISH
}

void FN(dsi_dot_q8_q5_K)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    const struct block_q5_K *b = w;
    ACT_SETUP
    const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float d = h2f(b[sb].d), dmin = h2f(b[sb].dmin);
        float a[8], c[8];
        for (int g = 0; g < 8; g++) {
            uint8_t sc, mn;
            dsi_q4k_scale_min(g, b[sb].scales, &sc, &mn);
            a[g] = d * (float)sc;
            c[g] = -dmin * (float)mn;
        }
        min_terms32(accm, X, nx, sb, _mm256_loadu_ps(c));
        __m256i qh = load32(b[sb].qh), bit = _mm256_set1_epi8(1);
        for (int k = 0; k < 4; k++) {
            __m256i raw = load32(b[sb].qs + 32 * k);
            for (int hi = 0; hi < 2; hi++) {
                __m256i lo = hi ? _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4) : _mm256_and_si256(raw, m4);
                __m256i hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), b4);
                sub32_u(acc, X, nx, 8 * sb + 2 * k + hi, _mm256_or_si256(lo, hb), a[2 * k + hi]);
                bit = _mm256_add_epi8(bit, bit);
            }
        }
    }
    ACT_FINISH
}

void FN(dsi_dot_q8_q6_K)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    const struct block_q6_K *b = w;
    ACT_SETUP
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float d = h2f(b[sb].d);
        __m128i sc8 = _mm_loadu_si128((const __m128i *)(const void *)b[sb].scales);
        __m256 dv = _mm256_set1_ps(d);
        __m256 A0 = _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc8)));
        __m256 A1 = _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc8, 8))));
        const __m256 m32 = _mm256_set1_ps(-32.0f);
        min_terms16(accm, X, nx, sb, _mm256_mul_ps(m32, A0), _mm256_mul_ps(m32, A1));
        for (int half = 0; half < 2; half++) {
            __m256i L0 = load32(b[sb].ql + 64 * half), L1 = load32(b[sb].ql + 64 * half + 32);
            __m256i H = load32(b[sb].qh + 32 * half);
            __m256 A = half ? A1 : A0;
            int64_t j0 = 8 * sb + 4 * half;
            __m256i q0 = _mm256_or_si256(_mm256_and_si256(L0, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
            __m256i q1 = _mm256_or_si256(_mm256_and_si256(L1, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
            __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4), _mm256_and_si256(H, m30));
            __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
            sub16x2_u(acc, X, nx, j0 + 0, q0, pair_scales(A, 0));
            sub16x2_u(acc, X, nx, j0 + 1, q1, pair_scales(A, 1));
            sub16x2_u(acc, X, nx, j0 + 2, q2, pair_scales(A, 2));
            sub16x2_u(acc, X, nx, j0 + 3, q3, pair_scales(A, 3));
        }
    }
    ACT_FINISH
}

void FN(dsi_dot_q8_q2_K)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    const struct block_q2_K *b = w;
    ACT_SETUP
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float d = h2f(b[sb].d), dmin = h2f(b[sb].dmin);
        __m128i sc8 = _mm_loadu_si128((const __m128i *)(const void *)b[sb].scales);
        __m128i lo = _mm_and_si128(sc8, _mm_set1_epi8(0x0f)), hi = _mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0f));
        __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(-dmin);
        __m256 A0 = _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)));
        __m256 A1 = _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))));
        __m256 C0 = _mm256_mul_ps(mv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)));
        __m256 C1 = _mm256_mul_ps(mv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))));
        min_terms16(accm, X, nx, sb, C0, C1);
        for (int half = 0; half < 2; half++) {
            __m256i raw = load32(b[sb].qs + 32 * half);
            __m256 A = half ? A1 : A0;
            int64_t j0 = 8 * sb + 4 * half;
            sub16x2_u(acc, X, nx, j0 + 0, _mm256_and_si256(raw, m3), pair_scales(A, 0));
            sub16x2_u(acc, X, nx, j0 + 1, _mm256_and_si256(_mm256_srli_epi16(raw, 2), m3), pair_scales(A, 1));
            sub16x2_u(acc, X, nx, j0 + 2, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m3), pair_scales(A, 2));
            sub16x2_u(acc, X, nx, j0 + 3, _mm256_and_si256(_mm256_srli_epi16(raw, 6), m3), pair_scales(A, 3));
        }
    }
    ACT_FINISH
}

void FN(dsi_dot_q8_q3_K)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    const struct block_q3_K *b = w;
    ACT_SETUP
    const __m256i m3 = _mm256_set1_epi8(3), b2 = _mm256_set1_epi8(4);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float d = h2f(b[sb].d);
        int8_t sc[16];
        dsi_q3k_scales(b[sb].scales, sc);
        __m128i sc8 = _mm_loadu_si128((const __m128i *)(const void *)sc);
        __m256 dv = _mm256_set1_ps(d);
        __m256 A0 = _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc8)));
        __m256 A1 = _mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc8, 8))));
        const __m256 m4f = _mm256_set1_ps(-4.0f);
        min_terms16(accm, X, nx, sb, _mm256_mul_ps(m4f, A0), _mm256_mul_ps(m4f, A1));
        __m256i hm = load32(b[sb].hmask), bit = _mm256_set1_epi8(1);
        for (int half = 0; half < 2; half++) {
            __m256i raw = load32(b[sb].qs + 32 * half);
            __m256 A = half ? A1 : A0;
            for (int k = 0; k < 4; k++) {
                __m256i lo = _mm256_and_si256(raw, m3);
                __m256i hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), b2);
                sub16x2_u(acc, X, nx, 8 * sb + 4 * half + k, _mm256_or_si256(lo, hb), pair_scales(A, k));
                raw = _mm256_srli_epi16(raw, 2);
                bit = _mm256_add_epi8(bit, bit);
            }
        }
    }
    ACT_FINISH
}

void FN(dsi_dot_q8_iq4_xs)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                           size_t os) {
    const struct block_iq4_xs *b = w;
    ACT_SETUP
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float d = h2f(b[sb].d);
        for (int ib = 0; ib < 8; ib++) {
            int ls = ((b[sb].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) | (((b[sb].scales_h >> (2 * ib)) & 3) << 4);
            sub32_s(acc, X, nx, 8 * sb + ib, iq4_vec(b[sb].qs + 16 * ib), d * (float)(ls - 32));
        }
    }
    ACT_FINISH
}
