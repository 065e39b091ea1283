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
#include <float.h>
#include <immintrin.h>
#include <string.h>

#include "quant/formats.h"
#include "quant/kernels.h"

#ifndef UNROLL4
#define UNROLL4 _Pragma("GCC unroll 4")
#endif
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
    /* one broadcast load, the upper lane shifted right by 4 (a variable shift), one mask */
    __m256i r = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)p));
    r = _mm256_srlv_epi64(r, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(r, _mm256_set1_epi8(0x0f));
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

/* acc[0..nx) and acc[DSI_DOT_MAX_X..+nx): the even and odd sub-blocks' sums, two independent
 * FMA chains per token; accm: the minimum/offset terms. */
#define ACT_SETUP                                                                                  \
    struct dsi_xq_view X[DSI_DOT_MAX_X];                                                           \
    __m256 acc[2 * DSI_DOT_MAX_X], accm[DSI_DOT_MAX_X];                                            \
    UNROLL4 for (int t = 0; t < nx; t++) {                                                                 \
        X[t] = dsi_xq_view((const uint8_t *)x + (size_t)t * xs, n);                                \
        acc[t] = acc[DSI_DOT_MAX_X + t] = accm[t] = _mm256_setzero_ps();                           \
    }

#define ACT_FINISH                                                                                 \
    UNROLL4 for (int t = 0; t < nx; t++)                                                                   \
        out[(size_t)t * os] =                                                                      \
            hsum8(_mm256_add_ps(_mm256_add_ps(acc[t], acc[DSI_DOT_MAX_X + t]), accm[t]));

/* Each kernel is written once as an always-inlined body taking nx, and exported through a
 * switch that calls it with nx = 1..4 as a constant: the per-token loops unroll and the
 * accumulators stay in registers. */
#define AI static inline __attribute__((always_inline))
#define QDOT_EXPORT(T)                                                                             \
    void FN(dsi_dot_q8_##T)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, \
                            size_t os) {                                                           \
        switch (nx) {                                                                              \
        case 1: body_##T(n, w, x, xs, 1, out, os); break;                                          \
        case 2: body_##T(n, w, x, xs, 2, out, os); break;                                          \
        case 3: body_##T(n, w, x, xs, 3, out, os); break;                                          \
        default: body_##T(n, w, x, xs, 4, out, os); break;                                         \
        }                                                                                          \
    }
#define BODY(T)                                                                                    \
    AI void body_##T(int64_t n, const void *w, const void *x, size_t xs, const int nx, float *out,  \
                     size_t os)

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
        if (!(id <= FLT_MAX)) id = 0.0f; /* amax below ~3.7e-37: the block quantizes to zeros */
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

/* Body shared by the types with one fp16 scale d per 32-element block: QV(i) is block i's
 * weight vector, DOT the dot function, MINV(av) the vector of minimum/offset values m of 8
 * blocks given their scales av (MIN_NONE when there is none), MIN1(a, i) the same for one
 * block. Blocks go in groups of 8: the scale products a * d_x of a group are one vector
 * multiply per token and the minimum terms one FMA per token; the products are then broadcast
 * from memory. A remainder of fewer than 8 blocks goes one by one. */
#define GATHER8_F16(field)                                                                         \
    _mm256_cvtph_ps(_mm_setr_epi16((short)b[i0].field, (short)b[i0 + 1].field,                     \
                                   (short)b[i0 + 2].field, (short)b[i0 + 3].field,                 \
                                   (short)b[i0 + 4].field, (short)b[i0 + 5].field,                 \
                                   (short)b[i0 + 6].field, (short)b[i0 + 7].field))
#define MIN_NONE(av) _mm256_setzero_ps()
#define MIN1_NONE(a, i) 0.0f
#define BLOCK32_LOOP(BT, QV, DOT, MINV, MIN1)                                                      \
    const BT *b = w;                                                                               \
    ACT_SETUP                                                                                      \
    const int64_t nb = n / 32, nb8 = nb & ~(int64_t)7;                                             \
    for (int64_t i0 = 0; i0 < nb8; i0 += 8) {                                                      \
        _Alignas(32) float sc[DSI_DOT_MAX_X][8];                                                   \
        __m256 av = GATHER8_F16(d), mv = MINV(av);                                                 \
        UNROLL4 for (int t = 0; t < nx; t++) {                                                     \
            _mm256_store_ps(sc[t], _mm256_mul_ps(av, _mm256_loadu_ps(X[t].d + i0)));               \
            accm[t] = _mm256_fmadd_ps(mv, _mm256_loadu_ps(X[t].ds32 + i0), accm[t]);               \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {                                      \
            int64_t i = i0 + j;                                                                    \
            __m256i qv = QV(i);                                                                    \
            __m256 *A = acc + (j & 1) * DSI_DOT_MAX_X;                                             \
            UNROLL4 for (int t = 0; t < nx; t++)                                                   \
                A[t] = scale_acc(A[t], DOT(qv, load32(X[t].q + 32 * i)), _mm256_broadcast_ss(&sc[t][j])); \
        }                                                                                          \
    }                                                                                              \
    float mt[DSI_DOT_MAX_X] = {0};                                                                 \
    for (int64_t i = nb8; i < nb; i++) {                                                           \
        float a = h2f(b[i].d), m = MIN1(a, i);                                                     \
        __m256i qv = QV(i);                                                                        \
        UNROLL4 for (int t = 0; t < nx; t++) {                                                     \
            acc[t] = scale_acc(acc[t], DOT(qv, load32(X[t].q + 32 * i)), _mm256_set1_ps(a * X[t].d[i])); \
            mt[t] += m * X[t].ds32[i];                                                             \
        }                                                                                          \
    }                                                                                              \
    UNROLL4 for (int t = 0; t < nx; t++)                                                           \
        out[(size_t)t * os] =                                                                      \
            hsum8(_mm256_add_ps(_mm256_add_ps(acc[t], acc[DSI_DOT_MAX_X + t]), accm[t])) + mt[t];

#define DOT_U DOT_U8

BODY(q4_0) {
    #define QV(i) nibbles16(b[i].qs)
#define MINV(av) _mm256_mul_ps(av, _mm256_set1_ps(-8.0f))
#define MIN1(a, i) (-8.0f * (a))
    BLOCK32_LOOP(struct block_q4_0, QV, DOT_U, MINV, MIN1)
#undef QV
#undef MINV
#undef MIN1
}

BODY(q4_1) {
    #define QV(i) nibbles16(b[i].qs)
#define MINV(av) GATHER8_F16(m)
#define MIN1(a, i) h2f(b[i].m)
    BLOCK32_LOOP(struct block_q4_1, QV, DOT_U, MINV, MIN1)
#undef QV
#undef MINV
#undef MIN1
}

static inline __m256i q5_vec(const uint8_t *qs, const uint8_t *qh) {
    return _mm256_or_si256(nibbles16(qs), _mm256_and_si256(bits32_to_bytes(qh), _mm256_set1_epi8(0x10)));
}

BODY(q5_0) {
    #define QV(i) q5_vec(b[i].qs, b[i].qh)
#define MINV(av) _mm256_mul_ps(av, _mm256_set1_ps(-16.0f))
#define MIN1(a, i) (-16.0f * (a))
    BLOCK32_LOOP(struct block_q5_0, QV, DOT_U, MINV, MIN1)
#undef QV
#undef MINV
#undef MIN1
}

BODY(q5_1) {
    #define QV(i) q5_vec(b[i].qs, b[i].qh)
#define MINV(av) GATHER8_F16(m)
#define MIN1(a, i) h2f(b[i].m)
    BLOCK32_LOOP(struct block_q5_1, QV, DOT_U, MINV, MIN1)
#undef QV
#undef MINV
#undef MIN1
}

BODY(q8_0) {
    #define QV(i) load32(b[i].qs)
    BLOCK32_LOOP(struct block_q8_0, QV, dot_s8, MIN_NONE, MIN1_NONE)
#undef QV
}

static inline __m256i iq4_vec(const uint8_t *qs) {
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)dsi_kvalues_iq4nl));
    return _mm256_shuffle_epi8(tbl, nibbles16(qs));
}

BODY(iq4_nl) {
    #define QV(i) iq4_vec(b[i].qs)
    BLOCK32_LOOP(struct block_iq4_nl, QV, dot_s8, MIN_NONE, MIN1_NONE)
#undef QV
}

/* ---- K-quants (super-blocks of 256) ----------------------------------------------------- */

/* Per super-block: the minimum terms of its 8 sub-blocks in one vector product per token. */
AI void min_terms32(__m256 *accm, const struct dsi_xq_view *X, int nx, int64_t sb,
                               __m256 c) {
    UNROLL4 for (int t = 0; t < nx; t++) accm[t] = _mm256_fmadd_ps(c, _mm256_loadu_ps(X[t].ds32 + 8 * sb), accm[t]);
}

AI void min_terms16(__m256 *accm, const struct dsi_xq_view *X, int nx, int64_t sb,
                               __m256 c0, __m256 c1) {
    UNROLL4 for (int t = 0; t < nx; t++) {
        accm[t] = _mm256_fmadd_ps(c0, _mm256_loadu_ps(X[t].ds16 + 16 * sb), accm[t]);
        accm[t] = _mm256_fmadd_ps(c1, _mm256_loadu_ps(X[t].ds16 + 16 * sb + 8), accm[t]);
    }
}

/* sc[t][g] = a[g] * d_x of sub-block 8 sb + g, for the 8 sub-blocks of super-block sb. */
AI void scales8(float sc[][8], const struct dsi_xq_view *X, int nx, int64_t sb, __m256 av) {
    UNROLL4 for (int t = 0; t < nx; t++) _mm256_store_ps(sc[t], _mm256_mul_ps(av, _mm256_loadu_ps(X[t].d + 8 * sb)));
}

/* One 32-element sub-block j (g = j % 8 within its super-block) with the scale products of
 * scales8; even and odd sub-blocks go to the two accumulator sets. */
AI void sub32_u(__m256 *acc, const struct dsi_xq_view *X, int nx, int64_t j, __m256i q,
                float sc[][8]) {
    __m256 *A = acc + (j & 1) * DSI_DOT_MAX_X;
    UNROLL4 for (int t = 0; t < nx; t++)
        A[t] = scale_acc(A[t], DOT_U8(q, load32(X[t].q + 32 * j)), _mm256_broadcast_ss(&sc[t][j & 7]));
}

AI void sub32_s(__m256 *acc, const struct dsi_xq_view *X, int nx, int64_t j, __m256i q,
                float sc[][8]) {
    __m256 *A = acc + (j & 1) * DSI_DOT_MAX_X;
    UNROLL4 for (int t = 0; t < nx; t++)
        A[t] = scale_acc(A[t], dot_s8(q, load32(X[t].q + 32 * j)), _mm256_broadcast_ss(&sc[t][j & 7]));
}

/* One 32-element sub-block j whose halves have their own scales: sv = [a0 x4, a1 x4]. */
AI void sub16x2_u(__m256 *acc, const struct dsi_xq_view *X, int nx, int64_t j,
                             __m256i q, __m256 sv) {
    __m256 *A = acc + (j & 1) * DSI_DOT_MAX_X;
    UNROLL4 for (int t = 0; t < nx; t++)
        A[t] = scale_acc(A[t], DOT_U8(q, load32(X[t].q + 32 * j)),
                         _mm256_mul_ps(sv, _mm256_broadcast_ss(&X[t].d[j])));
}

/* Lanes [v[2k] x4, v[2k+1] x4] of an 8-float vector. */
static inline __m256 pair_scales(__m256 v, int k) {
    return _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1,
                                                         2 * k + 1, 2 * k + 1, 2 * k + 1));
}

/* The 8 six-bit scales and mins of a Q4_K/Q5_K super-block (12 bytes) as floats times d and
 * times -dmin: bytes 0-3 hold scales 0-3 (low 6 bits) and the top bits of scales 4-7, bytes
 * 4-7 the same for the mins, bytes 8-11 the low 4 bits of scales/mins 4-7. */
AI void q4k_scales(const uint8_t *q, float d, float dmin, __m256 *a, __m256 *c) {
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    uint64_t sc = (uint64_t)(u0 & 0x3f3f3f3fu) |
                  (uint64_t)((u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4)) << 32;
    uint64_t mn = (uint64_t)(u1 & 0x3f3f3f3fu) |
                  (uint64_t)(((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4)) << 32;
    *a = _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc))));
    *c = _mm256_mul_ps(_mm256_set1_ps(-dmin), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)mn))));
}

BODY(q4_K) {
    const struct block_q4_K *b = w;
    ACT_SETUP
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        __m256 av, cv;
        q4k_scales(b[sb].scales, h2f(b[sb].d), h2f(b[sb].dmin), &av, &cv);
        min_terms32(accm, X, nx, sb, cv);
        _Alignas(32) float scs[DSI_DOT_MAX_X][8];
        scales8(scs, X, nx, sb, av);
        for (int k = 0; k < 4; k++) {
            __m256i raw = load32(b[sb].qs + 32 * k);
            sub32_u(acc, X, nx, 8 * sb + 2 * k, _mm256_and_si256(raw, m4), scs);
            sub32_u(acc, X, nx, 8 * sb + 2 * k + 1, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), scs);
        }
    }
    ACT_FINISH
}

BODY(q5_K) {
    const struct block_q5_K *b = w;
    ACT_SETUP
    const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        __m256 av, cv;
        q4k_scales(b[sb].scales, h2f(b[sb].d), h2f(b[sb].dmin), &av, &cv);
        min_terms32(accm, X, nx, sb, cv);
        _Alignas(32) float scs[DSI_DOT_MAX_X][8];
        scales8(scs, X, nx, sb, av);
        __m256i qh = load32(b[sb].qh), bit = _mm256_set1_epi8(1);
        for (int k = 0; k < 4; k++) {
            __m256i raw = load32(b[sb].qs + 32 * k);
            for (int hi = 0; hi < 2; hi++) {
                __m256i lo = hi ? _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4) : _mm256_and_si256(raw, m4);
                __m256i hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit), b4);
                sub32_u(acc, X, nx, 8 * sb + 2 * k + hi, _mm256_or_si256(lo, hb), scs);
                bit = _mm256_add_epi8(bit, bit);
            }
        }
    }
    ACT_FINISH
}

BODY(q6_K) {
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

BODY(q2_K) {
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

BODY(q3_K) {
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

BODY(iq4_xs) {
    const struct block_iq4_xs *b = w;
    ACT_SETUP
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float d = h2f(b[sb].d), a[8];
        for (int ib = 0; ib < 8; ib++) {
            int ls = ((b[sb].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) | (((b[sb].scales_h >> (2 * ib)) & 3) << 4);
            a[ib] = d * (float)(ls - 32);
        }
        _Alignas(32) float scs[DSI_DOT_MAX_X][8];
        scales8(scs, X, nx, sb, _mm256_loadu_ps(a));
        for (int ib = 0; ib < 8; ib++) sub32_s(acc, X, nx, 8 * sb + ib, iq4_vec(b[sb].qs + 16 * ib), scs);
    }
    ACT_FINISH
}

QDOT_EXPORT(q4_0)
QDOT_EXPORT(q4_1)
QDOT_EXPORT(q5_0)
QDOT_EXPORT(q5_1)
QDOT_EXPORT(q8_0)
QDOT_EXPORT(iq4_nl)
QDOT_EXPORT(q4_K)
QDOT_EXPORT(q5_K)
QDOT_EXPORT(q6_K)
QDOT_EXPORT(q2_K)
QDOT_EXPORT(q3_K)
QDOT_EXPORT(iq4_xs)
