/* Scalar references of the integer path: the activation quantizer and, for every quantized
 * weight type, the dot product of a weight row with 8-bit activation rows. They are the test
 * oracle of the SIMD variants and the fallback on any CPU.
 *
 * Each weight type is read through one decoder (dsi_decode32_fn) that states the type's
 * arithmetic in the form every kernel uses: in sub-block j of 32 elements, element i is
 * a[i/16] * q[i] + m[i/16] with q an integer. Then
 *   sum_i w_i x_i = sum_h a_h * d_x * (sum_i q_i xq_i) + m_h * d_x * (sum_i xq_i),
 * the inner sums being exact integers. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "core/dtype.h"
#include "quant/formats.h"
#include "quant/kernels.h"

/* ---- activations ----------------------------------------------------------------------- */

void dsi_quantize_x_ref(const float *x, void *row, int64_t n) {
    int8_t *q = row;
    float *d = (float *)(void *)(q + n), *ds32 = d + n / 32, *ds16 = ds32 + n / 32;
    int16_t *s16 = (int16_t *)(void *)(ds16 + n / 16);
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xb[i]));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        if (!(id <= FLT_MAX)) id = 0.0f; /* amax below ~3.7e-37: the block quantizes to zeros */
        d[b] = amax / 127.0f;
        int s[2] = {0, 0};
        for (int i = 0; i < 32; i++) {
            float v = nearbyintf(xb[i] * id);
            v = fmaxf(-127.0f, fminf(127.0f, v));
            q[32 * b + i] = (int8_t)v;
            s[i / 16] += (int)v;
        }
        for (int h = 0; h < 2; h++) {
            s16[2 * b + h] = (int16_t)s[h];
            ds16[2 * b + h] = d[b] * (float)s[h];
        }
        ds32[b] = d[b] * (float)(s[0] + s[1]);
    }
}

/* ---- decoders -------------------------------------------------------------------------- */

static inline float h2f(uint16_t h) { return dsi_f16_to_f32(h); }

static void set_am(float a[2], float m[2], float a0, float a1, float m0, float m1) {
    a[0] = a0;
    a[1] = a1;
    m[0] = m0;
    m[1] = m1;
}

static void dec_q4_0(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_q4_0 *b = (const struct block_q4_0 *)w + j;
    for (int l = 0; l < 16; l++) {
        q[l] = (b->qs[l] & 0xf) - 8;
        q[l + 16] = (b->qs[l] >> 4) - 8;
    }
    float d = h2f(b->d);
    set_am(a, m, d, d, 0, 0);
}

static void dec_q4_1(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_q4_1 *b = (const struct block_q4_1 *)w + j;
    for (int l = 0; l < 16; l++) {
        q[l] = b->qs[l] & 0xf;
        q[l + 16] = b->qs[l] >> 4;
    }
    float d = h2f(b->d), mn = h2f(b->m);
    set_am(a, m, d, d, mn, mn);
}

static void q5_bits(const uint8_t *qs, const uint8_t qhb[4], int q[32], int off) {
    uint32_t qh;
    memcpy(&qh, qhb, 4);
    for (int l = 0; l < 16; l++) {
        q[l] = ((qs[l] & 0xf) | (int)(((qh >> l) & 1) << 4)) - off;
        q[l + 16] = ((qs[l] >> 4) | (int)(((qh >> (l + 16)) & 1) << 4)) - off;
    }
}

static void dec_q5_0(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_q5_0 *b = (const struct block_q5_0 *)w + j;
    q5_bits(b->qs, b->qh, q, 16);
    float d = h2f(b->d);
    set_am(a, m, d, d, 0, 0);
}

static void dec_q5_1(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_q5_1 *b = (const struct block_q5_1 *)w + j;
    q5_bits(b->qs, b->qh, q, 0);
    float d = h2f(b->d), mn = h2f(b->m);
    set_am(a, m, d, d, mn, mn);
}

static void dec_q8_0(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_q8_0 *b = (const struct block_q8_0 *)w + j;
    for (int l = 0; l < 32; l++) q[l] = b->qs[l];
    float d = h2f(b->d);
    set_am(a, m, d, d, 0, 0);
}

/* In Q2_K and Q3_K, sub-block g (0..7) of a super-block takes bit pair 2 * (g % 4) of the 32
 * bytes qs[32 * (g / 4) ..]; its halves have scales 2g and 2g + 1. */
static void dec_q2_K(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_q2_K *b = (const struct block_q2_K *)w + j / 8;
    int g = (int)(j % 8), shift = 2 * (g % 4);
    const uint8_t *qs = b->qs + 32 * (g / 4);
    for (int l = 0; l < 32; l++) q[l] = (qs[l] >> shift) & 3;
    float d = h2f(b->d), dmin = h2f(b->dmin);
    uint8_t s0 = b->scales[2 * g], s1 = b->scales[2 * g + 1];
    set_am(a, m, d * (float)(s0 & 0xf), d * (float)(s1 & 0xf), -dmin * (float)(s0 >> 4),
           -dmin * (float)(s1 >> 4));
}

static void dec_q3_K(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_q3_K *b = (const struct block_q3_K *)w + j / 8;
    int g = (int)(j % 8), shift = 2 * (g % 4);
    const uint8_t *qs = b->qs + 32 * (g / 4);
    for (int l = 0; l < 32; l++) q[l] = ((qs[l] >> shift) & 3) - ((b->hmask[l] >> g) & 1 ? 0 : 4);
    int8_t sc[16];
    dsi_q3k_scales(b->scales, sc);
    float d = h2f(b->d);
    set_am(a, m, d * (float)sc[2 * g], d * (float)sc[2 * g + 1], 0, 0);
}

static void dec_q4_K(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_q4_K *b = (const struct block_q4_K *)w + j / 8;
    int g = (int)(j % 8);
    const uint8_t *qs = b->qs + 32 * (g / 2);
    for (int l = 0; l < 32; l++) q[l] = g % 2 ? qs[l] >> 4 : qs[l] & 0xf;
    uint8_t sc, mn;
    dsi_q4k_scale_min(g, b->scales, &sc, &mn);
    float as = h2f(b->d) * (float)sc, ms = -h2f(b->dmin) * (float)mn;
    set_am(a, m, as, as, ms, ms);
}

static void dec_q5_K(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_q5_K *b = (const struct block_q5_K *)w + j / 8;
    int g = (int)(j % 8);
    const uint8_t *qs = b->qs + 32 * (g / 2);
    for (int l = 0; l < 32; l++)
        q[l] = (g % 2 ? qs[l] >> 4 : qs[l] & 0xf) | (((b->qh[l] >> g) & 1) << 4);
    uint8_t sc, mn;
    dsi_q4k_scale_min(g, b->scales, &sc, &mn);
    float as = h2f(b->d) * (float)sc, ms = -h2f(b->dmin) * (float)mn;
    set_am(a, m, as, as, ms, ms);
}

static void dec_q6_K(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_q6_K *b = (const struct block_q6_K *)w + j / 8;
    int g = (int)(j % 8), half = g / 4, k = g % 4;
    const uint8_t *L = b->ql + 64 * half + 32 * (k % 2), *H = b->qh + 32 * half;
    for (int l = 0; l < 32; l++) {
        int lo = k < 2 ? L[l] & 0xf : L[l] >> 4;
        q[l] = (lo | (((H[l] >> (2 * k)) & 3) << 4)) - 32;
    }
    const int8_t *S = b->scales + 8 * half + 2 * k;
    float d = h2f(b->d);
    set_am(a, m, d * (float)S[0], d * (float)S[1], 0, 0);
}

static void dec_iq4_nl(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_iq4_nl *b = (const struct block_iq4_nl *)w + j;
    for (int l = 0; l < 16; l++) {
        q[l] = dsi_kvalues_iq4nl[b->qs[l] & 0xf];
        q[l + 16] = dsi_kvalues_iq4nl[b->qs[l] >> 4];
    }
    float d = h2f(b->d);
    set_am(a, m, d, d, 0, 0);
}

static void dec_iq4_xs(const void *w, int64_t j, int q[32], float a[2], float m[2]) {
    const struct block_iq4_xs *b = (const struct block_iq4_xs *)w + j / 8;
    int ib = (int)(j % 8);
    const uint8_t *qs = b->qs + 16 * ib;
    for (int l = 0; l < 16; l++) {
        q[l] = dsi_kvalues_iq4nl[qs[l] & 0xf];
        q[l + 16] = dsi_kvalues_iq4nl[qs[l] >> 4];
    }
    int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) | (((b->scales_h >> (2 * ib)) & 3) << 4);
    float as = h2f(b->d) * (float)(ls - 32);
    set_am(a, m, as, as, 0, 0);
}

dsi_decode32_fn dsi_decode32(enum dsi_type t) {
    switch (t) {
    case DSI_TYPE_Q4_0: return dec_q4_0;
    case DSI_TYPE_Q4_1: return dec_q4_1;
    case DSI_TYPE_Q5_0: return dec_q5_0;
    case DSI_TYPE_Q5_1: return dec_q5_1;
    case DSI_TYPE_Q8_0: return dec_q8_0;
    case DSI_TYPE_Q2_K: return dec_q2_K;
    case DSI_TYPE_Q3_K: return dec_q3_K;
    case DSI_TYPE_Q4_K: return dec_q4_K;
    case DSI_TYPE_Q5_K: return dec_q5_K;
    case DSI_TYPE_Q6_K: return dec_q6_K;
    case DSI_TYPE_IQ4_NL: return dec_iq4_nl;
    case DSI_TYPE_IQ4_XS: return dec_iq4_xs;
    default: return NULL;
    }
}

/* ---- dot products ---------------------------------------------------------------------- */

static void dot_ref(dsi_decode32_fn dec, int64_t n, const void *w, const void *x, size_t xs,
                    int nx, float *out, size_t os) {
    for (int t = 0; t < nx; t++) {
        struct dsi_xq_view v = dsi_xq_view((const uint8_t *)x + (size_t)t * xs, n);
        double acc = 0;
        for (int64_t j = 0; j < n / 32; j++) {
            int q[32];
            float a[2], m[2];
            dec(w, j, q, a, m);
            for (int h = 0; h < 2; h++) {
                int64_t isum = 0;
                for (int i = 16 * h; i < 16 * h + 16; i++) isum += (int64_t)q[i] * v.q[32 * j + i];
                acc += (double)a[h] * v.d[j] * (double)isum + (double)m[h] * v.d[j] * v.s16[2 * j + h];
            }
        }
        out[(size_t)t * os] = (float)acc;
    }
}

#define DOT_REF(T)                                                                                 \
    void dsi_dot_q8_##T##_ref(int64_t n, const void *w, const void *x, size_t xs, int nx,         \
                              float *out, size_t os) {                                             \
        dot_ref(dec_##T, n, w, x, xs, nx, out, os);                                                \
    }
DOT_REF(q4_0)
DOT_REF(q4_1)
DOT_REF(q5_0)
DOT_REF(q5_1)
DOT_REF(q8_0)
DOT_REF(q2_K)
DOT_REF(q3_K)
DOT_REF(q4_K)
DOT_REF(q5_K)
DOT_REF(q6_K)
DOT_REF(iq4_nl)
DOT_REF(iq4_xs)
