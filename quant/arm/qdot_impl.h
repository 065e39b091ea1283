/* Template of the AArch64 integer row kernels (quantized weights x 8-bit activations), 128-bit
 * NEON vectors, one 16-element half of a 32-element sub-block per vector. Instantiated per
 * instruction set by qdot_neon.c (smull/smlal2/sadalp), qdot_dotprod.c (sdot) and
 * qdot_i8mm.c (smmla on pairs of activation rows). The including file defines:
 *   SUFFIX          function name suffix
 *   DOT16(acc, w, x) int32x4_t: acc plus the 16 products of the int8x16_t w and x, spread
 *                    over the 4 lanes in any way (only the sum of the lanes is used)
 *   QDOT_MMLA       (optional) multiply two activation rows at a time with vmmlaq_s32
 *
 * The arithmetic is that of quant/dot_ref.c: in sub-block j, element i is a * q + m with q an
 * integer. The weights are decoded once per call into signed bytes with their offsets applied
 * (Q4_0 -8, Q5_0 -16, Q3_K -4, Q6_K -32: the integer sums stay exact, |q| <= 128), dotted with
 * each activation row, and the integer sums of four groups (sub-blocks, or halves where the
 * halves have their own scales) are gathered in one int32x4_t, converted to float once and
 * scaled by a * d_x. The minimum terms m * d_x * sum(xq) come from the activation's ds32/ds16.
 * Weights are read only inside the row; activations only inside their n quantized bytes and
 * the block scales.
 *
 * Each kernel is written once as an always-inlined body taking nx, and exported through a
 * switch that calls it with nx = 1..4 as a constant: the per-token loops unroll and the
 * accumulators, per-row sums and activation pointers stay in registers. With one or two rows,
 * groups of four alternate between two accumulator sets (two independent FMA chains per row);
 * the minimum terms go into the accumulators too. Scales are unpacked in registers: Q4_K/Q5_K
 * and Q3_K with 32-bit word arithmetic, IQ4_XS with vector shifts, the fp16 scales of four
 * 32-element blocks with one fcvtl.
 *
 * GCC's pre-allocation scheduler hoists the activation loads of a whole group ahead of the
 * dots and then spills them (nx = 4, the K-quants); without it the loops fit in the 32 vector
 * registers, hence the pragma. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-schedule-insns")
#endif
#include <float.h>
#include <arm_neon.h>
#include <string.h>

#include "quant/formats.h"
#include "quant/kernels.h"

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(name, SUFFIX)
#define UNROLL _Pragma("GCC unroll 8")
#define UNROLL4 _Pragma("GCC unroll 4")
#define UNROLL2 _Pragma("GCC unroll 2")
#define AI static inline __attribute__((always_inline))

#define QDOT_EXPORT(T)                                                                             \
    void FN(dsi_dot_q8_##T)(int64_t n, const void *w, const void *x, size_t xs, int nx,            \
                            float *out, size_t os) {                                               \
        switch (nx) {                                                                              \
        case 1:                                                                                    \
            body_##T(n, w, x, xs, 1, out, os);                                                     \
            break;                                                                                 \
        case 2:                                                                                    \
            body_##T(n, w, x, xs, 2, out, os);                                                     \
            break;                                                                                 \
        case 3:                                                                                    \
            body_##T(n, w, x, xs, 3, out, os);                                                     \
            break;                                                                                 \
        default:                                                                                   \
            body_##T(n, w, x, xs, 4, out, os);                                                     \
            break;                                                                                 \
        }                                                                                          \
    }
#define BODY(T)                                                                                    \
    AI void body_##T(int64_t n, const void *w, const void *x, size_t xs, const int nx, float *out, \
                     size_t os)

static inline float h2f(uint16_t h) {
    __fp16 f;
    memcpy(&f, &h, sizeof f);
    return (float)f;
}

/* ---- integer dot products of 4 groups -------------------------------------------------- */

/* One activation row: lane k = sum over v < g of w[g k + v] . x[16 (g k + v) .. + 16]. g is 2
 * for groups of whole sub-blocks (128 bytes of x), 1 for groups of halves (64 bytes). */
AI int32x4_t row_dot4(const int8x16_t *w, int g, const int8_t *x) {
    int32x4_t s[4];
    UNROLL
    for (int k = 0; k < 4; k++) {
        s[k] = vdupq_n_s32(0);
        UNROLL
        for (int v = 0; v < g; v++)
            s[k] = DOT16(s[k], w[g * k + v], vld1q_s8(x + 16 * (g * k + v)));
    }
    return vpaddq_s32(vpaddq_s32(s[0], s[1]), vpaddq_s32(s[2], s[3]));
}

#ifdef QDOT_MMLA
/* Two activation rows x0, x1 at once. smmla multiplies a 2x8 by an 8x2 byte matrix: with the
 * weight vector [w_lo, w_hi] as the 2x8 operand and [x0_lo, x1_lo] as the other, lanes 0 and 1
 * get w_lo . x0_lo and w_lo . x1_lo (lanes 2 and 3, w_hi . x_lo, are waste); the swapped weight
 * wx = [w_hi, w_lo] against [x0_hi, x1_hi] adds w_hi . x0_hi and w_hi . x1_hi to the same lanes.
 * The four groups' lanes 0-1 are then transposed into one vector per row. */
AI void pair_dot4(const int8x16_t *w, const int8x16_t *wx, int g, const int8_t *x0,
                  const int8_t *x1, int32x4_t *r0, int32x4_t *r1) {
    int32x4_t s[4];
    UNROLL
    for (int k = 0; k < 4; k++) {
        s[k] = vdupq_n_s32(0);
        UNROLL
        for (int v = 0; v < g; v++) {
            int i = g * k + v;
            int64x2_t a = vreinterpretq_s64_s8(vld1q_s8(x0 + 16 * i));
            int64x2_t b = vreinterpretq_s64_s8(vld1q_s8(x1 + 16 * i));
            s[k] = vmmlaq_s32(s[k], w[i], vreinterpretq_s8_s64(vzip1q_s64(a, b)));
            s[k] = vmmlaq_s32(s[k], wx[i], vreinterpretq_s8_s64(vzip2q_s64(a, b)));
        }
    }
    int64x2_t t01 = vreinterpretq_s64_s32(vzip1q_s32(s[0], s[1])); /* r0k0 r0k1 r1k0 r1k1 */
    int64x2_t t23 = vreinterpretq_s64_s32(vzip1q_s32(s[2], s[3]));
    *r0 = vreinterpretq_s32_s64(vzip1q_s64(t01, t23));
    *r1 = vreinterpretq_s32_s64(vzip2q_s64(t01, t23));
}
#endif

/* r[t] = row_dot4 of activation row t at byte offset off, for t < nx. */
AI void dot4(const int8x16_t *w, int g, const struct dsi_xq_view *X, const int nx, int64_t off,
             int32x4_t *r) {
    int t = 0;
#ifdef QDOT_MMLA
    if (nx >= 2) {
        int8x16_t wx[8];
        UNROLL
        for (int i = 0; i < 4 * g; i++)
            wx[i] = vextq_s8(w[i], w[i], 8);
        UNROLL4
        for (; t + 1 < nx; t += 2)
            pair_dot4(w, wx, g, X[t].q + off, X[t + 1].q + off, &r[t], &r[t + 1]);
    }
#endif
    UNROLL4
    for (; t < nx; t++)
        r[t] = row_dot4(w, g, X[t].q + off);
}

/* acc[0..nx) and acc[DSI_DOT_MAX_X..+nx): the two accumulator sets (ACC_SET). */
#define ACT_SETUP                                                                                  \
    struct dsi_xq_view X[DSI_DOT_MAX_X];                                                           \
    float32x4_t acc[2 * DSI_DOT_MAX_X];                                                            \
    int32x4_t r[DSI_DOT_MAX_X];                                                                    \
    UNROLL4                                                                                        \
    for (int t = 0; t < nx; t++) {                                                                 \
        X[t] = dsi_xq_view((const uint8_t *)x + (size_t)t * xs, n);                                \
        acc[t] = acc[DSI_DOT_MAX_X + t] = vdupq_n_f32(0.0f);                                       \
    }

#define ACT_SUM(t) vaddvq_f32(vaddq_f32(acc[t], acc[DSI_DOT_MAX_X + (t)]))
#define ACT_FINISH                                                                                 \
    UNROLL4                                                                                        \
    for (int t = 0; t < nx; t++)                                                                   \
        out[(size_t)t * os] = ACT_SUM(t);

/* Accumulator set S (0 or 1, a constant) += float(r[t]) * a * d_t for t < nx: four groups
 * with weight scales A, activation scales d_t = DV (an expression of t). With more than two
 * rows, their chains are independent enough, and set 1 is set 0 (registers for nx = 4). */
#define ACC_SET(S) ((nx <= 2 ? (S) : 0) * DSI_DOT_MAX_X)
/* The minimum terms go to set 1 (set 0 for nx > 2): no registers of their own. */
#define ACCM(t) acc[ACC_SET(1) + (t)]
#define SCALE4(S, A, DV)                                                                           \
    UNROLL4                                                                                        \
    for (int t = 0; t < nx; t++)                                                                   \
        acc[ACC_SET(S) + t] = vfmaq_f32(acc[ACC_SET(S) + t], vcvtq_f32_s32(r[t]), vmulq_f32(A, DV));

/* ---- activation quantizer -------------------------------------------------------------- */

/* Bytes identical to dsi_quantize_x_ref: the same float operations, and clamping to +-127
 * before rounding (which commutes with rounding to the integers), with minnm/maxnm so that a
 * NaN product clamps to 127 like fminf/fmaxf do; fcvtns rounds half to even like nearbyintf. */
void FN(dsi_quantize_x)(const float *x, void *row, int64_t n) {
    int8_t *q = row;
    float *d = (float *)(void *)(q + n), *ds32 = d + n / 32, *ds16 = ds32 + n / 32;
    int16_t *s16 = (int16_t *)(void *)(ds16 + n / 16);
    const float32x4_t hi = vdupq_n_f32(127.0f), lo = vdupq_n_f32(-127.0f);
    for (int64_t b = 0; b < n / 32; b++) {
        float32x4_t v[8], mx = vdupq_n_f32(0.0f);
        UNROLL
        for (int k = 0; k < 8; k++) {
            v[k] = vld1q_f32(x + 32 * b + 4 * k);
            mx = vmaxnmq_f32(mx, vabsq_f32(v[k]));
        }
        float amax = vmaxnmvq_f32(mx);
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        if (!(id <= FLT_MAX)) id = 0.0f; /* amax below ~3.7e-37: the block quantizes to zeros */
        d[b] = amax / 127.0f;
        int32x4_t iv[8];
        UNROLL
        for (int k = 0; k < 8; k++)
            iv[k] =
                vcvtnq_s32_f32(vmaxnmq_f32(lo, vminnmq_f32(hi, vmulq_f32(v[k], vdupq_n_f32(id)))));
        int s0 = vaddvq_s32(vaddq_s32(vaddq_s32(iv[0], iv[1]), vaddq_s32(iv[2], iv[3])));
        int s1 = vaddvq_s32(vaddq_s32(vaddq_s32(iv[4], iv[5]), vaddq_s32(iv[6], iv[7])));
        int16x8_t h[4];
        UNROLL
        for (int k = 0; k < 4; k++)
            h[k] = vcombine_s16(vmovn_s32(iv[2 * k]), vmovn_s32(iv[2 * k + 1]));
        vst1q_s8(q + 32 * b, vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1])));
        vst1q_s8(q + 32 * b + 16, vcombine_s8(vmovn_s16(h[2]), vmovn_s16(h[3])));
        s16[2 * b] = (int16_t)s0;
        s16[2 * b + 1] = (int16_t)s1;
        ds16[2 * b] = d[b] * (float)s0;
        ds16[2 * b + 1] = d[b] * (float)s1;
        ds32[b] = d[b] * (float)(s0 + s1);
    }
}

/* ---- 32-element block types ------------------------------------------------------------ */

/* fp16 field F of blocks p[0..3] as 4 floats (fcvtl: exact, like h2f). */
#define GATHER4_F16(p, F)                                                                          \
    vcvt_f32_f16(vreinterpret_f16_u16(vset_lane_u16(                                               \
        (p)[3].F, vset_lane_u16((p)[2].F, vset_lane_u16((p)[1].F, vdup_n_u16((p)[0].F), 1), 2),    \
        3)))

/* Body shared by the types with one scale per 32-element block: for nx <= 2 eight blocks at a
 * time (two groups of four, one per accumulator set), then four, then one at a time; the weight
 * scales of a group are one fcvtl, their products with d_x one fmul per row. DEC(p, wv) decodes
 * block *p into wv[0], wv[1]; MIN4(p) the float32x4_t of the minimums m of blocks p[0..3]
 * (HAS_MIN 0: no minimum term), MIN1(p) that of one block. */
#define BLOCK32_GROUP(BT, DEC, MIN4, HAS_MIN, S, i0)                                               \
    do {                                                                                           \
        const BT *p = b + (i0);                                                                    \
        int8x16_t wv[8];                                                                           \
        UNROLL                                                                                     \
        for (int k = 0; k < 4; k++)                                                                \
            DEC(&p[k], wv + 2 * k);                                                                \
        dot4(wv, 2, X, nx, 32 * (i0), r);                                                          \
        float32x4_t av = GATHER4_F16(p, d);                                                        \
        SCALE4(S, av, vld1q_f32(X[t].d + (i0)))                                                    \
        if (HAS_MIN) {                                                                             \
            float32x4_t mv = MIN4(p);                                                              \
            UNROLL4                                                                                \
            for (int t = 0; t < nx; t++)                                                           \
                ACCM(t) = vfmaq_f32(ACCM(t), mv, vld1q_f32(X[t].ds32 + (i0)));                     \
        }                                                                                          \
    } while (0)

#define BLOCK32_LOOP(BT, DEC, MIN4, MIN1, HAS_MIN)                                                 \
    const BT *b = w;                                                                               \
    ACT_SETUP                                                                                      \
    float mterm[DSI_DOT_MAX_X] = {0};                                                              \
    int64_t nb = n / 32, i = 0;                                                                    \
    if (nx <= 2)                                                                                   \
        for (; i + 8 <= nb; i += 8) {                                                              \
            BLOCK32_GROUP(BT, DEC, MIN4, HAS_MIN, 0, i);                                           \
            BLOCK32_GROUP(BT, DEC, MIN4, HAS_MIN, 1, i + 4);                                       \
        }                                                                                          \
    for (; i + 4 <= nb; i += 4)                                                                    \
        BLOCK32_GROUP(BT, DEC, MIN4, HAS_MIN, 0, i);                                               \
    for (; i < nb; i++) {                                                                          \
        int8x16_t wv[2];                                                                           \
        DEC(&b[i], wv);                                                                            \
        float a = h2f(b[i].d), m = HAS_MIN ? MIN1(&b[i]) : 0.0f;                                   \
        UNROLL4                                                                                    \
        for (int t = 0; t < nx; t++) {                                                             \
            const int8_t *xq = X[t].q + 32 * i;                                                    \
            int32x4_t s =                                                                          \
                DOT16(DOT16(vdupq_n_s32(0), wv[0], vld1q_s8(xq)), wv[1], vld1q_s8(xq + 16));       \
            acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(s), a * X[t].d[i]);                         \
            if (HAS_MIN) mterm[t] += m * X[t].ds32[i];                                             \
        }                                                                                          \
    }                                                                                              \
    UNROLL4                                                                                        \
    for (int t = 0; t < nx; t++)                                                                   \
        out[(size_t)t * os] = ACT_SUM(t) + mterm[t];

#define M4_F16(p) GATHER4_F16(p, m)
#define M1_F16(p) h2f((p)->m)
#define NO_MIN4(p) vdupq_n_f32(0.0f)
#define NO_MIN1(p) 0.0f

/* Low nibbles of 16 bytes: elements 0-15 of a block; high nibbles: elements 16-31. */
AI void nibbles(const uint8_t *qs, int8x16_t *wv) {
    uint8x16_t raw = vld1q_u8(qs);
    wv[0] = vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0f)));
    wv[1] = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
}

AI void dec_q4_0(const struct block_q4_0 *p, int8x16_t *wv) {
    nibbles(p->qs, wv);
    wv[0] = vsubq_s8(wv[0], vdupq_n_s8(8));
    wv[1] = vsubq_s8(wv[1], vdupq_n_s8(8));
}

AI void dec_q4_1(const struct block_q4_1 *p, int8x16_t *wv) {
    nibbles(p->qs, wv);
}

/* Masks of the 32 fifth bits of a Q5 block: byte l of h[0] (h[1]) is 0xff where bit l (l + 16)
 * of the little-endian qh is set. */
AI void q5_masks(const uint8_t *qh, uint8x16_t *h) {
    static const uint8_t idx[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint32_t v;
    memcpy(&v, qh, 4);
    uint8x16_t rep = vreinterpretq_u8_u32(vdupq_n_u32(v)), bits = vld1q_u8(bit);
    h[0] = vtstq_u8(vqtbl1q_u8(rep, vld1q_u8(idx)), bits);
    h[1] = vtstq_u8(vqtbl1q_u8(rep, vld1q_u8(idx + 16)), bits);
}

AI void dec_q5_0(const struct block_q5_0 *p, int8x16_t *wv) {
    uint8x16_t h[2];
    q5_masks(p->qh, h);
    nibbles(p->qs, wv);
    /* (nibble | 16 * bit) - 16 = nibble - 16 * !bit */
    for (int k = 0; k < 2; k++)
        wv[k] = vsubq_s8(wv[k], vreinterpretq_s8_u8(vbicq_u8(vdupq_n_u8(0x10), h[k])));
}

AI void dec_q5_1(const struct block_q5_1 *p, int8x16_t *wv) {
    uint8x16_t h[2];
    q5_masks(p->qh, h);
    nibbles(p->qs, wv);
    for (int k = 0; k < 2; k++)
        wv[k] = vorrq_s8(wv[k], vreinterpretq_s8_u8(vandq_u8(vdupq_n_u8(0x10), h[k])));
}

AI void dec_q8_0(const struct block_q8_0 *p, int8x16_t *wv) {
    wv[0] = vld1q_s8(p->qs);
    wv[1] = vld1q_s8(p->qs + 16);
}

AI void iq4_values(const uint8_t *qs, int8x16_t *wv) {
    const int8x16_t tbl = vld1q_s8(dsi_kvalues_iq4nl);
    uint8x16_t raw = vld1q_u8(qs);
    wv[0] = vqtbl1q_s8(tbl, vandq_u8(raw, vdupq_n_u8(0x0f)));
    wv[1] = vqtbl1q_s8(tbl, vshrq_n_u8(raw, 4));
}

AI void dec_iq4_nl(const struct block_iq4_nl *p, int8x16_t *wv) {
    iq4_values(p->qs, wv);
}

BODY(q4_0) {
    BLOCK32_LOOP(struct block_q4_0, dec_q4_0, NO_MIN4, NO_MIN1, 0);
}

BODY(q4_1) {
    BLOCK32_LOOP(struct block_q4_1, dec_q4_1, M4_F16, M1_F16, 1);
}

BODY(q5_0) {
    BLOCK32_LOOP(struct block_q5_0, dec_q5_0, NO_MIN4, NO_MIN1, 0);
}

BODY(q5_1) {
    BLOCK32_LOOP(struct block_q5_1, dec_q5_1, M4_F16, M1_F16, 1);
}

BODY(q8_0) {
    BLOCK32_LOOP(struct block_q8_0, dec_q8_0, NO_MIN4, NO_MIN1, 0);
}

BODY(iq4_nl) {
    BLOCK32_LOOP(struct block_iq4_nl, dec_iq4_nl, NO_MIN4, NO_MIN1, 0);
}

/* ---- K-quants (super-blocks of 256) ----------------------------------------------------- */

/* float32x4_t of d * (float)v[k] for 4 int8 or uint8 values widened to int32x4_t */
AI float32x4_t scale4(float d, int32x4_t v) {
    return vmulq_n_f32(vcvtq_f32_s32(v), d);
}

/* The 16 per-half scales d * v[k] of a super-block, from 16 signed bytes. */
AI void scales16(float d, int8x16_t v, float32x4_t *A) {
    int16x8_t l = vmovl_s8(vget_low_s8(v)), h = vmovl_high_s8(v);
    A[0] = scale4(d, vmovl_s16(vget_low_s16(l)));
    A[1] = scale4(d, vmovl_high_s16(l));
    A[2] = scale4(d, vmovl_s16(vget_low_s16(h)));
    A[3] = scale4(d, vmovl_high_s16(h));
}

/* Four sub-blocks j0..j0+3 with one scale each, into accumulator set S: av = their a,
 * activations at 32 * j0. */
#define SUB32x4(S, wv, j0, av)                                                                     \
    do {                                                                                           \
        dot4(wv, 2, X, nx, 32 * (j0), r);                                                          \
        SCALE4(S, av, vld1q_f32(X[t].d + (j0)))                                                    \
    } while (0)

/* Two sub-blocks whose halves have their own scales, into accumulator set S: av = the 4 half
 * scales. The activation scales [d0 d0 d1 d1] of sub-blocks j0 + 2 hi and j0 + 2 hi + 1 come
 * from one load of d[j0..j0+3] (hi = 0: zip1, hi = 1: zip2), shared by the two calls. */
#define SUB16x4(S, wv, j0, hi, av)                                                                 \
    do {                                                                                           \
        dot4(wv, 1, X, nx, 32 * ((j0) + 2 * (hi)), r);                                             \
        SCALE4(S, av,                                                                              \
               (hi) ? vzip2q_f32(vld1q_f32(X[t].d + (j0)), vld1q_f32(X[t].d + (j0)))               \
                    : vzip1q_f32(vld1q_f32(X[t].d + (j0)), vld1q_f32(X[t].d + (j0))))              \
    } while (0)

/* ACCM(t) += the minimum terms of super-block sb's 8 sub-blocks (C: 2 vectors of their m) or
 * 16 halves (C: 4 vectors). */
#define MIN_TERMS32(C)                                                                             \
    UNROLL4                                                                                        \
    for (int t = 0; t < nx; t++) {                                                                 \
        ACCM(t) = vfmaq_f32(ACCM(t), (C)[0], vld1q_f32(X[t].ds32 + 8 * sb));                       \
        ACCM(t) = vfmaq_f32(ACCM(t), (C)[1], vld1q_f32(X[t].ds32 + 8 * sb + 4));                   \
    }
#define MIN_TERMS16(C)                                                                             \
    UNROLL4                                                                                        \
    for (int t = 0; t < nx; t++) {                                                                 \
        UNROLL4                                                                                    \
        for (int k = 0; k < 4; k++)                                                                \
            ACCM(t) = vfmaq_f32(ACCM(t), (C)[k], vld1q_f32(X[t].ds16 + 16 * sb + 4 * k));          \
    }

/* Q4_K and Q5_K scales and minimums of the 8 sub-blocks: a = d * sc, c = -dmin * mn. The 12
 * bytes hold in bytes 0-3 scales 0-3 (low 6 bits) and the top bits of scales 4-7, in bytes 4-7
 * the same for the mins, in bytes 8-11 the low 4 bits of scales/mins 4-7 (dsi_q4k_scale_min),
 * unpacked with 32-bit word arithmetic into 8 bytes each. */
AI void q4k_scales(uint16_t dh, uint16_t dminh, const uint8_t *q, float32x4_t *a, float32x4_t *c) {
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    uint64_t sc = (uint64_t)(u0 & 0x3f3f3f3fu) |
                  (uint64_t)((u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4)) << 32;
    uint64_t mn = (uint64_t)(u1 & 0x3f3f3f3fu) |
                  (uint64_t)(((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4)) << 32;
    uint16x8_t s16 = vmovl_u8(vcreate_u8(sc)), m16 = vmovl_u8(vcreate_u8(mn));
    float d = h2f(dh), dmin = h2f(dminh);
    a[0] = vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(s16))), d);
    a[1] = vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(s16)), d);
    c[0] = vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(m16))), -dmin);
    c[1] = vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(m16)), -dmin);
}

BODY(q4_K) {
    const struct block_q4_K *b = w;
    ACT_SETUP
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float32x4_t a[2], c[2];
        q4k_scales(b[sb].d, b[sb].dmin, b[sb].scales, a, c);
        MIN_TERMS32(c)
        /* sub-blocks 4h..4h+3: low, high nibbles of qs[64h..+32], then of qs[64h+32..+32] */
        UNROLL2
        for (int h = 0; h < 2; h++) {
            const uint8_t *qs = b[sb].qs + 64 * h;
            int8x16_t wv[8];
            UNROLL
            for (int k = 0; k < 2; k++) {
                uint8x16_t r0 = vld1q_u8(qs + 32 * k), r1 = vld1q_u8(qs + 32 * k + 16);
                wv[4 * k + 0] = vreinterpretq_s8_u8(vandq_u8(r0, m4));
                wv[4 * k + 1] = vreinterpretq_s8_u8(vandq_u8(r1, m4));
                wv[4 * k + 2] = vreinterpretq_s8_u8(vshrq_n_u8(r0, 4));
                wv[4 * k + 3] = vreinterpretq_s8_u8(vshrq_n_u8(r1, 4));
            }
            SUB32x4(h, wv, 8 * sb + 4 * h, a[h]);
        }
    }
    ACT_FINISH
}

BODY(q5_K) {
    const struct block_q5_K *b = w;
    ACT_SETUP
    const uint8x16_t m4 = vdupq_n_u8(0x0f), b4 = vdupq_n_u8(0x10);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float32x4_t a[2], c[2];
        q4k_scales(b[sb].d, b[sb].dmin, b[sb].scales, a, c);
        MIN_TERMS32(c)
        const uint8x16_t qh0 = vld1q_u8(b[sb].qh), qh1 = vld1q_u8(b[sb].qh + 16);
        uint8x16_t bit = vdupq_n_u8(1);
        UNROLL2
        for (int h = 0; h < 2; h++) {
            const uint8_t *qs = b[sb].qs + 64 * h;
            int8x16_t wv[8];
            UNROLL
            for (int k = 0; k < 2; k++) {
                uint8x16_t r0 = vld1q_u8(qs + 32 * k), r1 = vld1q_u8(qs + 32 * k + 16);
                /* sub-block g = 4h + 2k takes bit g of qh, g + 1 bit g + 1 */
                uint8x16_t bit2 = vshlq_n_u8(bit, 1);
                wv[4 * k + 0] = vreinterpretq_s8_u8(
                    vorrq_u8(vandq_u8(r0, m4), vandq_u8(vtstq_u8(qh0, bit), b4)));
                wv[4 * k + 1] = vreinterpretq_s8_u8(
                    vorrq_u8(vandq_u8(r1, m4), vandq_u8(vtstq_u8(qh1, bit), b4)));
                wv[4 * k + 2] = vreinterpretq_s8_u8(
                    vorrq_u8(vshrq_n_u8(r0, 4), vandq_u8(vtstq_u8(qh0, bit2), b4)));
                wv[4 * k + 3] = vreinterpretq_s8_u8(
                    vorrq_u8(vshrq_n_u8(r1, 4), vandq_u8(vtstq_u8(qh1, bit2), b4)));
                bit = vshlq_n_u8(bit, 2);
            }
            SUB32x4(h, wv, 8 * sb + 4 * h, a[h]);
        }
    }
    ACT_FINISH
}

BODY(q6_K) {
    const struct block_q6_K *b = w;
    ACT_SETUP
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m30 = vdupq_n_u8(0x30);
    const int8x16_t off = vdupq_n_s8(32);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float32x4_t A[4];
        scales16(h2f(b[sb].d), vld1q_s8(b[sb].scales), A);
        UNROLL2
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = b[sb].ql + 64 * half, *qh = b[sb].qh + 32 * half;
            int8x16_t wv[8];
            UNROLL
            for (int v = 0; v < 2; v++) {
                uint8x16_t L0 = vld1q_u8(ql + 16 * v), L1 = vld1q_u8(ql + 32 + 16 * v);
                uint8x16_t H = vld1q_u8(qh + 16 * v);
                /* sub-block k of this half: nibble from L0/L1 (k % 2), bits 2k..2k+1 of H */
                uint8x16_t q0 = vorrq_u8(vandq_u8(L0, m4), vandq_u8(vshlq_n_u8(H, 4), m30));
                uint8x16_t q1 = vorrq_u8(vandq_u8(L1, m4), vandq_u8(vshlq_n_u8(H, 2), m30));
                uint8x16_t q2 = vorrq_u8(vshrq_n_u8(L0, 4), vandq_u8(H, m30));
                uint8x16_t q3 = vorrq_u8(vshrq_n_u8(L1, 4), vandq_u8(vshrq_n_u8(H, 2), m30));
                wv[0 + v] = vsubq_s8(vreinterpretq_s8_u8(q0), off);
                wv[2 + v] = vsubq_s8(vreinterpretq_s8_u8(q1), off);
                wv[4 + v] = vsubq_s8(vreinterpretq_s8_u8(q2), off);
                wv[6 + v] = vsubq_s8(vreinterpretq_s8_u8(q3), off);
            }
            int64_t j0 = 8 * sb + 4 * half;
            SUB16x4(0, wv, j0, 0, A[2 * half]);
            SUB16x4(1, wv + 4, j0, 1, A[2 * half + 1]);
        }
    }
    ACT_FINISH
}

BODY(q2_K) {
    const struct block_q2_K *b = w;
    ACT_SETUP
    const uint8x16_t m3 = vdupq_n_u8(3);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        uint8x16_t sc = vld1q_u8(b[sb].scales);
        float32x4_t A[4], C[4];
        scales16(h2f(b[sb].d), vreinterpretq_s8_u8(vandq_u8(sc, vdupq_n_u8(0x0f))), A);
        scales16(-h2f(b[sb].dmin), vreinterpretq_s8_u8(vshrq_n_u8(sc, 4)), C);
        MIN_TERMS16(C)
        UNROLL2
        for (int half = 0; half < 2; half++) {
            uint8x16_t r0 = vld1q_u8(b[sb].qs + 32 * half),
                       r1 = vld1q_u8(b[sb].qs + 32 * half + 16);
            int8x16_t wv[8];
            /* sub-block 4 half + k: bits 2k..2k+1 */
            wv[0] = vreinterpretq_s8_u8(vandq_u8(r0, m3));
            wv[1] = vreinterpretq_s8_u8(vandq_u8(r1, m3));
            wv[2] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(r0, 2), m3));
            wv[3] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(r1, 2), m3));
            wv[4] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(r0, 4), m3));
            wv[5] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(r1, 4), m3));
            wv[6] = vreinterpretq_s8_u8(vshrq_n_u8(r0, 6));
            wv[7] = vreinterpretq_s8_u8(vshrq_n_u8(r1, 6));
            int64_t j0 = 8 * sb + 4 * half;
            SUB16x4(0, wv, j0, 0, A[2 * half]);
            SUB16x4(1, wv + 4, j0, 1, A[2 * half + 1]);
        }
    }
    ACT_FINISH
}

/* The 16 signed scales of a Q3_K super-block (dsi_q3k_scales) with 32-bit word arithmetic:
 * scale i has its low 4 bits in byte i % 8 of bytes 0-7 (the low nibble for i < 8, the high
 * one after) and its top 2 bits at bit 2 (i / 4) of byte 8 + i % 4; minus 32. */
AI int8x16_t q3k_scales(const uint8_t *q) {
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    const int32x4_t lsh = {0, 0, -4, -4}, hsh = {0, -2, -4, -6};
    uint32x4_t lo = vshlq_u32(
        vcombine_u32(vcreate_u32((uint64_t)u1 << 32 | u0), vcreate_u32((uint64_t)u1 << 32 | u0)),
        lsh);
    uint32x4_t hi = vshlq_u32(vdupq_n_u32(u2), hsh);
    uint32x4_t v = vorrq_u32(vandq_u32(lo, vdupq_n_u32(0x0f0f0f0fu)),
                             vshlq_n_u32(vandq_u32(hi, vdupq_n_u32(0x03030303u)), 4));
    return vsubq_s8(vreinterpretq_s8_u32(v), vdupq_n_s8(32));
}

BODY(q3_K) {
    const struct block_q3_K *b = w;
    ACT_SETUP
    const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float32x4_t A[4];
        scales16(h2f(b[sb].d), q3k_scales(b[sb].scales), A);
        const uint8x16_t hm0 = vld1q_u8(b[sb].hmask), hm1 = vld1q_u8(b[sb].hmask + 16);
        uint8x16_t bit = vdupq_n_u8(1);
        UNROLL2
        for (int half = 0; half < 2; half++) {
            uint8x16_t r0 = vld1q_u8(b[sb].qs + 32 * half),
                       r1 = vld1q_u8(b[sb].qs + 32 * half + 16);
            int8x16_t wv[8];
            /* sub-block g = 4 half + k: bits 2k..2k+1 of qs, minus 4 where bit g of hmask is 0 */
            UNROLL
            for (int k = 0; k < 4; k++) {
                uint8x16_t l0 = vandq_u8(r0, m3), l1 = vandq_u8(r1, m3);
                wv[2 * k] = vreinterpretq_s8_u8(vsubq_u8(l0, vbicq_u8(four, vtstq_u8(hm0, bit))));
                wv[2 * k + 1] =
                    vreinterpretq_s8_u8(vsubq_u8(l1, vbicq_u8(four, vtstq_u8(hm1, bit))));
                r0 = vshrq_n_u8(r0, 2);
                r1 = vshrq_n_u8(r1, 2);
                bit = vshlq_n_u8(bit, 1);
            }
            int64_t j0 = 8 * sb + 4 * half;
            SUB16x4(0, wv, j0, 0, A[2 * half]);
            SUB16x4(1, wv + 4, j0, 1, A[2 * half + 1]);
        }
    }
    ACT_FINISH
}

/* The 8 scales d * (ls - 32) of an IQ4_XS super-block: ls of sub-block ib has its low 4 bits
 * in nibble ib % 2 of scales_l[ib / 2], its top 2 bits at bit 2 ib of scales_h. */
AI void iq4xs_scales(const struct block_iq4_xs *p, float32x4_t *a) {
    uint32_t l;
    memcpy(&l, p->scales_l, 4);
    uint8x8_t lv = vcreate_u8(l);
    uint8x8_t nib = vzip1_u8(vand_u8(lv, vdup_n_u8(0x0f)), vshr_n_u8(lv, 4));
    const int16x8_t hsh = {0, -2, -4, -6, -8, -10, -12, -14};
    uint16x8_t h = vandq_u16(vshlq_u16(vdupq_n_u16(p->scales_h), hsh), vdupq_n_u16(3));
    int16x8_t ls = vsubq_s16(vreinterpretq_s16_u16(vorrq_u16(vmovl_u8(nib), vshlq_n_u16(h, 4))),
                             vdupq_n_s16(32));
    float d = h2f(p->d);
    a[0] = scale4(d, vmovl_s16(vget_low_s16(ls)));
    a[1] = scale4(d, vmovl_high_s16(ls));
}

BODY(iq4_xs) {
    const struct block_iq4_xs *b = w;
    ACT_SETUP
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float32x4_t a[2];
        iq4xs_scales(&b[sb], a);
        UNROLL2
        for (int h = 0; h < 2; h++) {
            int8x16_t wv[8];
            UNROLL
            for (int k = 0; k < 4; k++)
                iq4_values(b[sb].qs + 16 * (4 * h + k), wv + 2 * k);
            SUB32x4(h, wv, 8 * sb + 4 * h, a[h]);
        }
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
