/* Template for the float-weight kernels (F32, F16, BF16), instantiated once per ISA by
 * float_avx2.c and float_avx512.c. The including file defines:
 *   VL            f32 lanes per vector (8 or 16)
 *   VEC           the vector type (__m256 / __m512)
 *   VZERO()       a zero vector
 *   VFMA(a, b, c) a * b + c
 *   VLOAD_F32(p)  VL floats from p (unaligned)
 *   VLOAD_F16(p)  VL halfs from p (unaligned), widened to f32
 *   VLOAD_BF16(p) VL bfloat16s from p (unaligned), widened to f32 (a 16-bit shift: exact)
 *   VSTORE(p, v)  VL floats to p
 *   VSUM(v)       horizontal sum
 *   VMUL, VDIV, VMIN, VMAX, VROUND (to nearest), VPOW2N(p, n) = p * 2^n (n integral, |n| <= 127)
 *   SUFFIX        the function name suffix (avx2 / avx512)
 * Elements past the last whole vector go through the scalar reference. */
#include <string.h>

#include "quant/kernels.h"

#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)

/* Dot of one weight row with nx activation rows. Four accumulators per activation row
 * (enough independent FMAs to hide latency) summed in one fixed order, the same for every
 * nx: a row's result does not depend on how many rows share the call (batch invariance). */
#define DEFINE_DOT(TY, ESIZE, LOAD)                                                                \
    void CAT(dsi_dot_f32_##TY, SUFFIX)(int64_t n, const void *w, const float *x, size_t xs,       \
                                       int nx, float *out, size_t os) {                            \
        const uint8_t *p = w;                                                                      \
        int64_t nv = n / VL * VL, i = 0;                                                           \
        float tail[DSI_DOT_MAX_X] = {0};                                                           \
        if (nv < n) dsi_dot_f32_##TY##_ref(n - nv, p + nv * ESIZE, x + nv, xs, nx, tail, 1);      \
        if (nx == 1) {                                                                             \
            VEC a0 = VZERO(), a1 = VZERO(), a2 = VZERO(), a3 = VZERO();                            \
            for (; i + 4 * VL <= nv; i += 4 * VL) {                                                \
                a0 = VFMA(LOAD(p + (i + 0 * VL) * ESIZE), VLOAD_F32(x + i + 0 * VL), a0);          \
                a1 = VFMA(LOAD(p + (i + 1 * VL) * ESIZE), VLOAD_F32(x + i + 1 * VL), a1);          \
                a2 = VFMA(LOAD(p + (i + 2 * VL) * ESIZE), VLOAD_F32(x + i + 2 * VL), a2);          \
                a3 = VFMA(LOAD(p + (i + 3 * VL) * ESIZE), VLOAD_F32(x + i + 3 * VL), a3);          \
            }                                                                                      \
            for (; i < nv; i += VL) a0 = VFMA(LOAD(p + i * ESIZE), VLOAD_F32(x + i), a0);          \
            out[0] = VSUM(VADD(VADD(a0, a1), VADD(a2, a3))) + tail[0];                             \
            return;                                                                                \
        }                                                                                          \
        VEC acc[DSI_DOT_MAX_X][4];                                                                 \
        for (int j = 0; j < DSI_DOT_MAX_X; j++)                                                    \
            for (int k = 0; k < 4; k++) acc[j][k] = VZERO();                                       \
        for (; i + 4 * VL <= nv; i += 4 * VL)                                                      \
            for (int k = 0; k < 4; k++) {                                                          \
                VEC wv = LOAD(p + (i + k * VL) * ESIZE);                                           \
                for (int j = 0; j < nx; j++)                                                       \
                    acc[j][k] = VFMA(wv, VLOAD_F32(x + (size_t)j * xs + i + k * VL), acc[j][k]);   \
            }                                                                                      \
        for (; i < nv; i += VL) {                                                                  \
            VEC wv = LOAD(p + i * ESIZE);                                                          \
            for (int j = 0; j < nx; j++) acc[j][0] = VFMA(wv, VLOAD_F32(x + (size_t)j * xs + i), acc[j][0]); \
        }                                                                                          \
        for (int j = 0; j < nx; j++)                                                               \
            out[(size_t)j * os] =                                                                  \
                VSUM(VADD(VADD(acc[j][0], acc[j][1]), VADD(acc[j][2], acc[j][3]))) + tail[j];      \
    }

#define DEFINE_TO_F32(TY, ESIZE, LOAD)                                                             \
    void CAT(dsi_to_f32_##TY, SUFFIX)(const void *w, float *y, int64_t n) {                        \
        const uint8_t *p = w;                                                                      \
        int64_t nv = n / VL * VL;                                                                  \
        for (int64_t i = 0; i < nv; i += VL) VSTORE(y + i, LOAD(p + i * ESIZE));                  \
        if (nv < n) dsi_to_f32_##TY##_ref(p + nv * ESIZE, y + nv, n - nv);                         \
    }

DEFINE_DOT(f32, 4, VLOAD_F32P)
DEFINE_DOT(f16, 2, VLOAD_F16)
DEFINE_DOT(bf16, 2, VLOAD_BF16)
DEFINE_TO_F32(f16, 2, VLOAD_F16)
DEFINE_TO_F32(bf16, 2, VLOAD_BF16)

/* out[g * os + d] = sum_j s[g * ss + j] * row_j[d] (attention's weighted sum of value rows):
 * value rows are read once per pair of heads, 4 vectors of columns at a time, the sums
 * staying in registers. Columns past the last 4-vector chunk go through the reference. */
#define DEFINE_ACC(TY, ESIZE, LOAD)                                                                \
    void CAT(dsi_acc_rows_##TY, SUFFIX)(int64_t n, int64_t m, int G, const float *s, size_t ss,     \
                                        const void *v, size_t vs, float *out, size_t os) {         \
        const uint8_t *vb = v;                                                                     \
        int64_t d = 0;                                                                             \
        for (; d + 4 * VL <= n; d += 4 * VL) {                                                     \
            for (int g = 0; g < G; g += 2) {                                                       \
                const float *s0 = s + (size_t)g * ss, *s1 = g + 1 < G ? s0 + ss : s0;              \
                VEC a0 = VZERO(), a1 = VZERO(), a2 = VZERO(), a3 = VZERO();                        \
                VEC b0 = VZERO(), b1 = VZERO(), b2 = VZERO(), b3 = VZERO();                        \
                for (int64_t j = 0; j < m; j++) {                                                  \
                    const uint8_t *r = vb + (size_t)j * vs + (size_t)d * ESIZE;                    \
                    VEC v0 = LOAD(r), v1 = LOAD(r + VL * ESIZE), v2 = LOAD(r + 2 * VL * ESIZE);    \
                    VEC v3 = LOAD(r + 3 * VL * ESIZE), w0 = VSET1(s0[j]), w1 = VSET1(s1[j]);       \
                    a0 = VFMA(v0, w0, a0), a1 = VFMA(v1, w0, a1), a2 = VFMA(v2, w0, a2);           \
                    a3 = VFMA(v3, w0, a3), b0 = VFMA(v0, w1, b0), b1 = VFMA(v1, w1, b1);           \
                    b2 = VFMA(v2, w1, b2), b3 = VFMA(v3, w1, b3);                                  \
                }                                                                                  \
                float *o = out + (size_t)g * os + d;                                               \
                VSTORE(o, a0), VSTORE(o + VL, a1), VSTORE(o + 2 * VL, a2), VSTORE(o + 3 * VL, a3); \
                if (g + 1 < G) {                                                                   \
                    o += os;                                                                       \
                    VSTORE(o, b0), VSTORE(o + VL, b1), VSTORE(o + 2 * VL, b2);                     \
                    VSTORE(o + 3 * VL, b3);                                                        \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        if (d < n)                                                                                 \
            dsi_acc_rows_##TY##_ref(n - d, m, G, s, ss, vb + (size_t)d * ESIZE, vs, out + d, os);  \
    }

DEFINE_ACC(f32, 4, VLOAD_F32P)
DEFINE_ACC(f16, 2, VLOAD_F16)

/* e^x for x in [-87, 88] (callers clamp): n = round(x / ln 2), r = x - n ln 2 in two steps
 * (Cody and Waite), e^r from a degree-6 polynomial on [-ln 2 / 2, ln 2 / 2] (the Cephes
 * coefficients), times 2^n: within 2 ulp of expf. */
static inline VEC CAT(vexp, SUFFIX)(VEC x) {
    VEC n = VROUND(VMUL(x, VSET1(1.44269504088896341f)));
    VEC r = VFMA(n, VSET1(-0.693359375f), x);
    r = VFMA(n, VSET1(2.12194440e-4f), r);
    VEC p = VSET1(1.9875691500e-4f);
    p = VFMA(p, r, VSET1(1.3981999507e-3f));
    p = VFMA(p, r, VSET1(8.3334519073e-3f));
    p = VFMA(p, r, VSET1(4.1665795894e-2f));
    p = VFMA(p, r, VSET1(1.6666665459e-1f));
    p = VFMA(p, r, VSET1(5.0000001201e-1f));
    p = VFMA(p, VMUL(r, r), VADD(r, VSET1(1.0f)));
    return VPOW2N(p, n);
}

/* g[i] = silu(g[i]) * u[i] = g / (1 + e^-g) * u; e^-g with -g clamped to [-87, 88] (beyond,
 * the quotient is g or 0 to within float precision anyway). */
void CAT(dsi_silu_mul, SUFFIX)(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) {
        VEC x = VLOAD_F32(g + i);
        VEC m = VMIN(VMAX(VMUL(x, VSET1(-1.0f)), VSET1(-87.0f)), VSET1(88.0f));
        VEC e = CAT(vexp, SUFFIX)(m);
        VSTORE(g + i, VMUL(VDIV(x, VADD(VSET1(1.0f), e)), VLOAD_F32(u + i)));
    }
    if (i < n) dsi_silu_mul_ref(g + i, u + i, n - i);
}

/* Attention scores against transposed keys (quant/kernels.h, dsi_scores_kt_fn): nr (1..8)
 * query rows at a time, VL keys per vector, one FMA per row and dimension. */
static inline __attribute__((always_inline)) void CAT(scores_rows, SUFFIX)(
    const int nr, int64_t D, const float *q, size_t qs, const float *kt, size_t ldk, int64_t n,
    float *s, size_t ss) {
    for (int64_t j = 0; j < n; j += VL) {
        VEC acc[8];
        _Pragma("GCC unroll 8") for (int i = 0; i < nr; i++) acc[i] = VZERO();
        const float *kp = kt + j;
        for (int64_t d = 0; d < D; d++) {
            VEC k = VLOAD_F32(kp + (size_t)d * ldk);
            _Pragma("GCC unroll 8") for (int i = 0; i < nr; i++)
                acc[i] = VFMA(VSET1(q[(size_t)i * qs + (size_t)d]), k, acc[i]);
        }
        _Pragma("GCC unroll 8") for (int i = 0; i < nr; i++) VSTORE(s + (size_t)i * ss + (size_t)j, acc[i]);
    }
}

void CAT(dsi_scores_kt, SUFFIX)(int64_t D, int R, const float *q, size_t qs, const float *kt,
                                size_t ldk, int64_t n, float *s, size_t ss) {
    for (int r = 0; r < R; r += 8) {
        const float *qr = q + (size_t)r * qs;
        float *sr = s + (size_t)r * ss;
        switch (R - r < 8 ? R - r : 8) {
        case 1: CAT(scores_rows, SUFFIX)(1, D, qr, qs, kt, ldk, n, sr, ss); break;
        case 2: CAT(scores_rows, SUFFIX)(2, D, qr, qs, kt, ldk, n, sr, ss); break;
        case 3: CAT(scores_rows, SUFFIX)(3, D, qr, qs, kt, ldk, n, sr, ss); break;
        case 4: CAT(scores_rows, SUFFIX)(4, D, qr, qs, kt, ldk, n, sr, ss); break;
        case 5: CAT(scores_rows, SUFFIX)(5, D, qr, qs, kt, ldk, n, sr, ss); break;
        case 6: CAT(scores_rows, SUFFIX)(6, D, qr, qs, kt, ldk, n, sr, ss); break;
        case 7: CAT(scores_rows, SUFFIX)(7, D, qr, qs, kt, ldk, n, sr, ss); break;
        default: CAT(scores_rows, SUFFIX)(8, D, qr, qs, kt, ldk, n, sr, ss); break;
        }
    }
}
