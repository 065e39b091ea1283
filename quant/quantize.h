/* Reference quantizers: rows of f32 (n a multiple of the type's block size) to ggml-compatible
 * blocks. Deterministic and single-threaded; callers split rows across threads. */
#ifndef DSI_QUANT_QUANTIZE_H
#define DSI_QUANT_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

void dsi_quantize_q8_0(const float *x, void *out, int64_t n);
void dsi_quantize_q4_0(const float *x, void *out, int64_t n);
void dsi_quantize_q4_1(const float *x, void *out, int64_t n);
void dsi_quantize_q5_0(const float *x, void *out, int64_t n);
void dsi_quantize_q5_1(const float *x, void *out, int64_t n);
void dsi_quantize_q2_K(const float *x, void *out, int64_t n);
void dsi_quantize_q3_K(const float *x, void *out, int64_t n);
void dsi_quantize_q4_K(const float *x, void *out, int64_t n);
void dsi_quantize_q5_K(const float *x, void *out, int64_t n);
void dsi_quantize_q6_K(const float *x, void *out, int64_t n);
void dsi_quantize_iq4_nl(const float *x, void *out, int64_t n);
void dsi_quantize_iq4_xs(const float *x, void *out, int64_t n);

/* Any supported storage type (F32, F16, BF16 and the types above); false for others. */
bool dsi_quantize_row(enum dsi_type t, const float *x, void *out, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
