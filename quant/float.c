/* Scalar references for the float weight types F32, F16, BF16: exact element conversion and
 * plain f32 accumulation in index order. They are the test oracle for the SIMD variants and
 * the fallback on CPUs without them. */
#include <math.h>
#include <string.h>

#include "quant/kernels.h"

void dsi_to_f32_f32_ref(const void *w, float *y, int64_t n) { memcpy(y, w, (size_t)n * 4); }

void dsi_silu_mul_ref(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void dsi_scores_kt_ref(int64_t D, int R, const float *q, size_t qs, const float *kt, size_t ldk,
                       int64_t n, float *s, size_t ss) {
    for (int r = 0; r < R; r++)
        for (int64_t j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int64_t d = 0; d < D; d++) acc = fmaf(q[(size_t)r * qs + (size_t)d], kt[(size_t)d * ldk + (size_t)j], acc);
            s[(size_t)r * ss + (size_t)j] = acc;
        }
}

void dsi_to_f32_f16_ref(const void *w, float *y, int64_t n) {
    const uint8_t *p = w;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = dsi_f16_to_f32(h);
    }
}

void dsi_to_f32_bf16_ref(const void *w, float *y, int64_t n) {
    const uint8_t *p = w;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = dsi_bf16_to_f32(h);
    }
}

/* One template for the three: element i of the row as float. */
#define DOT_REF(NAME, ELEM)                                                                        \
    void NAME(int64_t n, const void *w, const float *x, size_t xs, int nx, float *out,             \
              size_t os) {                                                                         \
        const uint8_t *p = w;                                                                      \
        for (int j = 0; j < nx; j++) {                                                             \
            const float *xj = x + (size_t)j * xs;                                                  \
            float s = 0.0f;                                                                        \
            for (int64_t i = 0; i < n; i++) s += ELEM * xj[i];                                     \
            out[(size_t)j * os] = s;                                                               \
        }                                                                                          \
    }

static inline float elem_f32(const uint8_t *p, int64_t i) {
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
}
static inline float elem_f16(const uint8_t *p, int64_t i) {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return dsi_f16_to_f32(h);
}
static inline float elem_bf16(const uint8_t *p, int64_t i) {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return dsi_bf16_to_f32(h);
}

DOT_REF(dsi_dot_f32_f32_ref, elem_f32(p, i))
DOT_REF(dsi_dot_f32_f16_ref, elem_f16(p, i))
DOT_REF(dsi_dot_f32_bf16_ref, elem_bf16(p, i))

/* out[g * os + d] = sum_j s[g * ss + j] * row_j[d], rows vs bytes apart. */
#define ACC_REF(NAME, ELEM)                                                                        \
    void NAME(int64_t n, int64_t m, int G, const float *s, size_t ss, const void *v, size_t vs,    \
              float *out, size_t os) {                                                             \
        for (int g = 0; g < G; g++)                                                                \
            for (int64_t d = 0; d < n; d++) out[(size_t)g * os + d] = 0.0f;                        \
        for (int64_t j = 0; j < m; j++) {                                                          \
            const uint8_t *p = (const uint8_t *)v + (size_t)j * vs;                                \
            for (int g = 0; g < G; g++) {                                                          \
                float a = s[(size_t)g * ss + j], *o = out + (size_t)g * os;                        \
                for (int64_t i = 0; i < n; i++) o[i] += a * (ELEM);                                \
            }                                                                                      \
        }                                                                                          \
    }
ACC_REF(dsi_acc_rows_f32_ref, elem_f32(p, i))
ACC_REF(dsi_acc_rows_f16_ref, elem_f16(p, i))
