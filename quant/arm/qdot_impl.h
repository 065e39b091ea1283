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
 * the block scales. */
#include <float.h>
#include <arm_neon.h>
#include <string.h>

#include "quant/formats.h"
#include "quant/kernels.h"

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(name, SUFFIX)
#define UNROLL _Pragma("GCC unroll 8")

static inline float h2f(uint16_t h) {
    __fp16 f;
    memcpy(&f, &h, sizeof f);
    return (float)f;
}

/* ---- integer dot products of 4 groups -------------------------------------------------- */

/* One activation row: lane k = sum over v < g of w[g k + v] . x[16 (g k + v) .. + 16]. g is 2
 * for groups of whole sub-blocks (128 bytes of x), 1 for groups of halves (64 bytes). */
static inline __attribute__((always_inline)) int32x4_t row_dot4(const int8x16_t *w, int g,
                                                                const int8_t *x) {
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
static inline __attribute__((always_inline)) void pair_dot4(const int8x16_t *w, const int8x16_t *wx,
                                                            int g, const int8_t *x0,
                                                            const int8_t *x1, int32x4_t *r0,
                                                            int32x4_t *r1) {
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
static inline __attribute__((always_inline)) void
dot4(const int8x16_t *w, int g, const struct dsi_xq_view *X, int nx, int64_t off, int32x4_t *r) {
    int t = 0;
#ifdef QDOT_MMLA
    if (nx >= 2) {
        int8x16_t wx[8];
        UNROLL
        for (int i = 0; i < 4 * g; i++)
            wx[i] = vextq_s8(w[i], w[i], 8);
        for (; t + 1 < nx; t += 2)
            pair_dot4(w, wx, g, X[t].q + off, X[t + 1].q + off, &r[t], &r[t + 1]);
    }
#endif
    for (; t < nx; t++)
        r[t] = row_dot4(w, g, X[t].q + off);
}

/* [d[0], d[0], d[1], d[1]]: the activation scales of two sub-blocks, one per half. */
static inline float32x4_t dup_pairs(const float *d) {
    float32x2_t v = vld1_f32(d);
    float32x4_t q = vcombine_f32(v, v);
    return vzip1q_f32(q, q);
}

#define ACT_SETUP                                                                                  \
    struct dsi_xq_view X[DSI_DOT_MAX_X];                                                           \
    float32x4_t acc[DSI_DOT_MAX_X], accm[DSI_DOT_MAX_X];                                           \
    int32x4_t r[DSI_DOT_MAX_X];                                                                    \
    for (int t = 0; t < nx; t++) {                                                                 \
        X[t] = dsi_xq_view((const uint8_t *)x + (size_t)t * xs, n);                                \
        acc[t] = vdupq_n_f32(0.0f);                                                                \
        accm[t] = vdupq_n_f32(0.0f);                                                               \
    }

#define ACT_FINISH                                                                                 \
    for (int t = 0; t < nx; t++)                                                                   \
        out[(size_t)t * os] = vaddvq_f32(vaddq_f32(acc[t], accm[t]));

/* acc[t] += float(r[t]) * a * d_t for t < nx: four groups with weight scales a, activation
 * scales d_t = DV(X[t]) */
#define SCALE4(A, DV)                                                                              \
    for (int t = 0; t < nx; t++)                                                                   \
        acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(r[t]), vmulq_f32(A, DV));

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

/* Body shared by the types with one scale per 32-element block, four blocks at a time, then
 * one at a time: DEC(p, wv) decodes block *p into wv[0], wv[1]; SCALE(p) is its a, MIN(p) its
 * m (HAS_MIN 0: no minimum term). */
#define BLOCK32_LOOP(BT, DEC, SCALE, MIN, HAS_MIN)                                                 \
    const BT *b = w;                                                                               \
    ACT_SETUP                                                                                      \
    float mterm[DSI_DOT_MAX_X] = {0};                                                              \
    int64_t nb = n / 32, i = 0;                                                                    \
    for (; i + 4 <= nb; i += 4) {                                                                  \
        int8x16_t wv[8];                                                                           \
        float a4[4], m4[4] = {0};                                                                  \
        UNROLL                                                                                     \
        for (int k = 0; k < 4; k++) {                                                              \
            DEC(&b[i + k], wv + 2 * k);                                                            \
            a4[k] = SCALE(&b[i + k]);                                                              \
            if (HAS_MIN) m4[k] = MIN(&b[i + k]);                                                   \
        }                                                                                          \
        dot4(wv, 2, X, nx, 32 * i, r);                                                             \
        float32x4_t av = vld1q_f32(a4), mv = vld1q_f32(m4);                                        \
        SCALE4(av, vld1q_f32(X[t].d + i))                                                          \
        if (HAS_MIN)                                                                               \
            for (int t = 0; t < nx; t++)                                                           \
                accm[t] = vfmaq_f32(accm[t], mv, vld1q_f32(X[t].ds32 + i));                        \
    }                                                                                              \
    for (; i < nb; i++) {                                                                          \
        int8x16_t wv[2];                                                                           \
        DEC(&b[i], wv);                                                                            \
        float a = SCALE(&b[i]), m = HAS_MIN ? MIN(&b[i]) : 0.0f;                                   \
        for (int t = 0; t < nx; t++) {                                                             \
            const int8_t *xq = X[t].q + 32 * i;                                                    \
            int32x4_t s =                                                                          \
                DOT16(DOT16(vdupq_n_s32(0), wv[0], vld1q_s8(xq)), wv[1], vld1q_s8(xq + 16));       \
            acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(s), a * X[t].d[i]);                         \
            if (HAS_MIN) mterm[t] += m * X[t].ds32[i];                                             \
        }                                                                                          \
    }                                                                                              \
    for (int t = 0; t < nx; t++)                                                                   \
        out[(size_t)t * os] = vaddvq_f32(vaddq_f32(acc[t], accm[t])) + mterm[t];

#define D_OF(p) h2f((p)->d)
#define M_OF(p) h2f((p)->m)
#define NO_MIN(p) 0.0f

/* Low nibbles of 16 bytes: elements 0-15 of a block; high nibbles: elements 16-31. */
static inline void nibbles(const uint8_t *qs, int8x16_t *wv) {
    uint8x16_t raw = vld1q_u8(qs);
    wv[0] = vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0f)));
    wv[1] = vreinterpretq_s8_u8(vshrq_n_u8(raw, 4));
}

static inline void dec_q4_0(const struct block_q4_0 *p, int8x16_t *wv) {
    nibbles(p->qs, wv);
    wv[0] = vsubq_s8(wv[0], vdupq_n_s8(8));
    wv[1] = vsubq_s8(wv[1], vdupq_n_s8(8));
}

static inline void dec_q4_1(const struct block_q4_1 *p, int8x16_t *wv) {
    nibbles(p->qs, wv);
}

/* Masks of the 32 fifth bits of a Q5 block: byte l of h[0] (h[1]) is 0xff where bit l (l + 16)
 * of the little-endian qh is set. */
static inline void q5_masks(const uint8_t *qh, uint8x16_t *h) {
    static const uint8_t idx[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint32_t v;
    memcpy(&v, qh, 4);
    uint8x16_t rep = vreinterpretq_u8_u32(vdupq_n_u32(v)), bits = vld1q_u8(bit);
    h[0] = vtstq_u8(vqtbl1q_u8(rep, vld1q_u8(idx)), bits);
    h[1] = vtstq_u8(vqtbl1q_u8(rep, vld1q_u8(idx + 16)), bits);
}

static inline void dec_q5_0(const struct block_q5_0 *p, int8x16_t *wv) {
    uint8x16_t h[2];
    q5_masks(p->qh, h);
    nibbles(p->qs, wv);
    /* (nibble | 16 * bit) - 16 = nibble - 16 * !bit */
    for (int k = 0; k < 2; k++)
        wv[k] = vsubq_s8(wv[k], vreinterpretq_s8_u8(vbicq_u8(vdupq_n_u8(0x10), h[k])));
}

static inline void dec_q5_1(const struct block_q5_1 *p, int8x16_t *wv) {
    uint8x16_t h[2];
    q5_masks(p->qh, h);
    nibbles(p->qs, wv);
    for (int k = 0; k < 2; k++)
        wv[k] = vorrq_s8(wv[k], vreinterpretq_s8_u8(vandq_u8(vdupq_n_u8(0x10), h[k])));
}

static inline void dec_q8_0(const struct block_q8_0 *p, int8x16_t *wv) {
    wv[0] = vld1q_s8(p->qs);
    wv[1] = vld1q_s8(p->qs + 16);
}

static inline void iq4_values(const uint8_t *qs, int8x16_t *wv) {
    const int8x16_t tbl = vld1q_s8(dsi_kvalues_iq4nl);
    uint8x16_t raw = vld1q_u8(qs);
    wv[0] = vqtbl1q_s8(tbl, vandq_u8(raw, vdupq_n_u8(0x0f)));
    wv[1] = vqtbl1q_s8(tbl, vshrq_n_u8(raw, 4));
}

static inline void dec_iq4_nl(const struct block_iq4_nl *p, int8x16_t *wv) {
    iq4_values(p->qs, wv);
}

void FN(dsi_dot_q8_q4_0)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    BLOCK32_LOOP(struct block_q4_0, dec_q4_0, D_OF, NO_MIN, 0)
}

void FN(dsi_dot_q8_q4_1)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    BLOCK32_LOOP(struct block_q4_1, dec_q4_1, D_OF, M_OF, 1)
}

void FN(dsi_dot_q8_q5_0)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    BLOCK32_LOOP(struct block_q5_0, dec_q5_0, D_OF, NO_MIN, 0)
}

void FN(dsi_dot_q8_q5_1)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    BLOCK32_LOOP(struct block_q5_1, dec_q5_1, D_OF, M_OF, 1)
}

void FN(dsi_dot_q8_q8_0)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    BLOCK32_LOOP(struct block_q8_0, dec_q8_0, D_OF, NO_MIN, 0)
}

void FN(dsi_dot_q8_iq4_nl)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                           size_t os) {
    BLOCK32_LOOP(struct block_iq4_nl, dec_iq4_nl, D_OF, NO_MIN, 0)
}

/* ---- K-quants (super-blocks of 256) ----------------------------------------------------- */

/* float32x4_t of d * (float)v[k] for 4 int8 or uint8 values widened to int32x4_t */
static inline float32x4_t scale4(float d, int32x4_t v) {
    return vmulq_n_f32(vcvtq_f32_s32(v), d);
}

/* The 16 per-half scales d * v[k] of a super-block, from 16 signed bytes. */
static inline void scales16(float d, int8x16_t v, float32x4_t *A) {
    int16x8_t l = vmovl_s8(vget_low_s8(v)), h = vmovl_high_s8(v);
    A[0] = scale4(d, vmovl_s16(vget_low_s16(l)));
    A[1] = scale4(d, vmovl_high_s16(l));
    A[2] = scale4(d, vmovl_s16(vget_low_s16(h)));
    A[3] = scale4(d, vmovl_high_s16(h));
}

/* Four sub-blocks j0..j0+3 with one scale each: av = their a, activations at 32 * j0. */
#define SUB32x4(wv, j0, av)                                                                        \
    do {                                                                                           \
        dot4(wv, 2, X, nx, 32 * (j0), r);                                                          \
        SCALE4(av, vld1q_f32(X[t].d + (j0)))                                                       \
    } while (0)

/* Two sub-blocks j0, j0 + 1 whose halves have their own scales: av = the 4 half scales. */
#define SUB16x4(wv, j0, av)                                                                        \
    do {                                                                                           \
        dot4(wv, 1, X, nx, 32 * (j0), r);                                                          \
        SCALE4(av, dup_pairs(X[t].d + (j0)))                                                       \
    } while (0)

/* Q4_K and Q5_K scales and minimums of the 8 sub-blocks: a = d * sc, c = -dmin * mn. */
static inline void q4k_scales(uint16_t dh, uint16_t dminh, const uint8_t *scales, float32x4_t *a,
                              float32x4_t *c) {
    float d = h2f(dh), dmin = h2f(dminh), af[8], cf[8];
    for (int g = 0; g < 8; g++) {
        uint8_t sc, mn;
        dsi_q4k_scale_min(g, scales, &sc, &mn);
        af[g] = d * (float)sc;
        cf[g] = -dmin * (float)mn;
    }
    a[0] = vld1q_f32(af);
    a[1] = vld1q_f32(af + 4);
    c[0] = vld1q_f32(cf);
    c[1] = vld1q_f32(cf + 4);
}

void FN(dsi_dot_q8_q4_K)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    const struct block_q4_K *b = w;
    ACT_SETUP
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float32x4_t a[2], c[2];
        q4k_scales(b[sb].d, b[sb].dmin, b[sb].scales, a, c);
        for (int t = 0; t < nx; t++) {
            accm[t] = vfmaq_f32(accm[t], c[0], vld1q_f32(X[t].ds32 + 8 * sb));
            accm[t] = vfmaq_f32(accm[t], c[1], vld1q_f32(X[t].ds32 + 8 * sb + 4));
        }
        /* sub-blocks 4h..4h+3: low, high nibbles of qs[64h..+32], then of qs[64h+32..+32] */
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
            SUB32x4(wv, 8 * sb + 4 * h, a[h]);
        }
    }
    ACT_FINISH
}

void FN(dsi_dot_q8_q5_K)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    const struct block_q5_K *b = w;
    ACT_SETUP
    const uint8x16_t m4 = vdupq_n_u8(0x0f), b4 = vdupq_n_u8(0x10);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float32x4_t a[2], c[2];
        q4k_scales(b[sb].d, b[sb].dmin, b[sb].scales, a, c);
        for (int t = 0; t < nx; t++) {
            accm[t] = vfmaq_f32(accm[t], c[0], vld1q_f32(X[t].ds32 + 8 * sb));
            accm[t] = vfmaq_f32(accm[t], c[1], vld1q_f32(X[t].ds32 + 8 * sb + 4));
        }
        const uint8x16_t qh0 = vld1q_u8(b[sb].qh), qh1 = vld1q_u8(b[sb].qh + 16);
        uint8x16_t bit = vdupq_n_u8(1);
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
            SUB32x4(wv, 8 * sb + 4 * h, a[h]);
        }
    }
    ACT_FINISH
}

void FN(dsi_dot_q8_q6_K)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    const struct block_q6_K *b = w;
    ACT_SETUP
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m30 = vdupq_n_u8(0x30);
    const int8x16_t off = vdupq_n_s8(32);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float32x4_t A[4];
        scales16(h2f(b[sb].d), vld1q_s8(b[sb].scales), A);
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = b[sb].ql + 64 * half, *qh = b[sb].qh + 32 * half;
            uint8x16_t L0[2], L1[2], H[2];
            int8x16_t wv[8];
            UNROLL
            for (int v = 0; v < 2; v++) {
                L0[v] = vld1q_u8(ql + 16 * v);
                L1[v] = vld1q_u8(ql + 32 + 16 * v);
                H[v] = vld1q_u8(qh + 16 * v);
                /* sub-block k of this half: nibble from L0/L1 (k % 2), bits 2k..2k+1 of H */
                uint8x16_t q0 = vorrq_u8(vandq_u8(L0[v], m4), vandq_u8(vshlq_n_u8(H[v], 4), m30));
                uint8x16_t q1 = vorrq_u8(vandq_u8(L1[v], m4), vandq_u8(vshlq_n_u8(H[v], 2), m30));
                uint8x16_t q2 = vorrq_u8(vshrq_n_u8(L0[v], 4), vandq_u8(H[v], m30));
                uint8x16_t q3 = vorrq_u8(vshrq_n_u8(L1[v], 4), vandq_u8(vshrq_n_u8(H[v], 2), m30));
                wv[0 + v] = vsubq_s8(vreinterpretq_s8_u8(q0), off);
                wv[2 + v] = vsubq_s8(vreinterpretq_s8_u8(q1), off);
                wv[4 + v] = vsubq_s8(vreinterpretq_s8_u8(q2), off);
                wv[6 + v] = vsubq_s8(vreinterpretq_s8_u8(q3), off);
            }
            int64_t j0 = 8 * sb + 4 * half;
            SUB16x4(wv, j0, A[2 * half]);
            SUB16x4(wv + 4, j0 + 2, A[2 * half + 1]);
        }
    }
    ACT_FINISH
}

void FN(dsi_dot_q8_q2_K)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    const struct block_q2_K *b = w;
    ACT_SETUP
    const uint8x16_t m3 = vdupq_n_u8(3);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        uint8x16_t sc = vld1q_u8(b[sb].scales);
        float32x4_t A[4], C[4];
        scales16(h2f(b[sb].d), vreinterpretq_s8_u8(vandq_u8(sc, vdupq_n_u8(0x0f))), A);
        scales16(-h2f(b[sb].dmin), vreinterpretq_s8_u8(vshrq_n_u8(sc, 4)), C);
        for (int t = 0; t < nx; t++)
            for (int k = 0; k < 4; k++)
                accm[t] = vfmaq_f32(accm[t], C[k], vld1q_f32(X[t].ds16 + 16 * sb + 4 * k));
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
            SUB16x4(wv, j0, A[2 * half]);
            SUB16x4(wv + 4, j0 + 2, A[2 * half + 1]);
        }
    }
    ACT_FINISH
}

void FN(dsi_dot_q8_q3_K)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                         size_t os) {
    const struct block_q3_K *b = w;
    ACT_SETUP
    const uint8x16_t m3 = vdupq_n_u8(3), four = vdupq_n_u8(4);
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        int8_t sc[16];
        dsi_q3k_scales(b[sb].scales, sc);
        float32x4_t A[4];
        scales16(h2f(b[sb].d), vld1q_s8(sc), A);
        const uint8x16_t hm0 = vld1q_u8(b[sb].hmask), hm1 = vld1q_u8(b[sb].hmask + 16);
        uint8x16_t bit = vdupq_n_u8(1);
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
            SUB16x4(wv, j0, A[2 * half]);
            SUB16x4(wv + 4, j0 + 2, A[2 * half + 1]);
        }
    }
    ACT_FINISH
}

void FN(dsi_dot_q8_iq4_xs)(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out,
                           size_t os) {
    const struct block_iq4_xs *b = w;
    ACT_SETUP
    for (int64_t sb = 0; sb < n / QK_K; sb++) {
        float d = h2f(b[sb].d), af[8];
        for (int ib = 0; ib < 8; ib++) {
            int ls = ((b[sb].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) |
                     (((b[sb].scales_h >> (2 * ib)) & 3) << 4);
            af[ib] = d * (float)(ls - 32);
        }
        for (int h = 0; h < 2; h++) {
            int8x16_t wv[8];
            UNROLL
            for (int k = 0; k < 4; k++)
                iq4_values(b[sb].qs + 16 * (4 * h + k), wv + 2 * k);
            SUB32x4(wv, 8 * sb + 4 * h, vld1q_f32(af + 4 * h));
        }
    }
    ACT_FINISH
}
