/* Per-type row kernels, chosen once at start-up from the CPU's features (dsi_kernels_init)
 * and called through this table by the matmul and dequantization code, which never test
 * CPU features themselves. Every kernel has a scalar `_ref` twin (quant/float.c, ...) that
 * the tests compare each variant against.
 *
 * Conventions: a weight row of `n` elements in its storage type `w`; activations are f32
 * rows. Kernels may read whole SIMD vectors only inside [w, w + row size). */
#ifndef DSI_QUANT_KERNELS_H
#define DSI_QUANT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most activation rows a dot kernel multiplies with one weight row in a call. */
#define DSI_DOT_MAX_X 4

/* y[i] = value of element i of the row, for i < n. */
typedef void (*dsi_to_f32_fn)(const void *w, float *y, int64_t n);

/* out[j * os] = sum_i w[i] * x[j * xs + i], for j < nx (1 <= nx <= DSI_DOT_MAX_X).
 * The float-weight path (F32, F16, BF16): exact element conversion, f32 accumulation. */
typedef void (*dsi_dot_f32_fn)(int64_t n, const void *w, const float *x, size_t xs, int nx,
                               float *out, size_t os);

struct dsi_type_kernels {
    dsi_to_f32_fn to_f32;
    dsi_dot_f32_fn dot_f32;
    const char *variant; /* "ref", "avx2", "avx512", "neon", ... of dot_f32 */
};

/* Fill the table from the detected CPU features (dsi_cpu_init first). Idempotent. */
void dsi_kernels_init(void);

/* Kernels of a type; entries are NULL where the type has no such kernel. */
const struct dsi_type_kernels *dsi_kernels(enum dsi_type t);

/* ---- scalar references (quant/float.c) ------------------------------------------------- */
void dsi_to_f32_f32_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_f16_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_bf16_ref(const void *w, float *y, int64_t n);
void dsi_dot_f32_f32_ref(int64_t n, const void *w, const float *x, size_t xs, int nx, float *out,
                         size_t os);
void dsi_dot_f32_f16_ref(int64_t n, const void *w, const float *x, size_t xs, int nx, float *out,
                         size_t os);
void dsi_dot_f32_bf16_ref(int64_t n, const void *w, const float *x, size_t xs, int nx, float *out,
                          size_t os);

/* Dequantization references (quant/dequant.c); n is a multiple of the block size. */
void dsi_to_f32_q4_0_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_q4_1_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_q5_0_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_q5_1_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_q8_0_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_q2_K_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_q3_K_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_q4_K_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_q5_K_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_q6_K_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_iq4_nl_ref(const void *w, float *y, int64_t n);
void dsi_to_f32_iq4_xs_ref(const void *w, float *y, int64_t n);
/* Scale and min of sub-block j (0..7) of a Q4_K/Q5_K block's packed scales[12]. */
void dsi_q4k_scale_min(int j, const uint8_t *scales, uint8_t *sc, uint8_t *mn);

/* ---- ISA variants (quant/x86/, quant/arm/), reached only through the table ------------- */
#if defined(__x86_64__)
void dsi_to_f32_f16_avx2(const void *w, float *y, int64_t n);
void dsi_to_f32_bf16_avx2(const void *w, float *y, int64_t n);
void dsi_dot_f32_f32_avx2(int64_t n, const void *w, const float *x, size_t xs, int nx, float *out,
                          size_t os);
void dsi_dot_f32_f16_avx2(int64_t n, const void *w, const float *x, size_t xs, int nx, float *out,
                          size_t os);
void dsi_dot_f32_bf16_avx2(int64_t n, const void *w, const float *x, size_t xs, int nx, float *out,
                           size_t os);
void dsi_to_f32_f16_avx512(const void *w, float *y, int64_t n);
void dsi_to_f32_bf16_avx512(const void *w, float *y, int64_t n);
void dsi_dot_f32_f32_avx512(int64_t n, const void *w, const float *x, size_t xs, int nx,
                            float *out, size_t os);
void dsi_dot_f32_f16_avx512(int64_t n, const void *w, const float *x, size_t xs, int nx,
                            float *out, size_t os);
void dsi_dot_f32_bf16_avx512(int64_t n, const void *w, const float *x, size_t xs, int nx,
                             float *out, size_t os);
#endif

#ifdef __cplusplus
}
#endif

#endif
