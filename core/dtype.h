/* Tensor element types (ggml ids, stable on disk in GGUF), their block sizes, and scalar
 * F16/BF16 conversions.
 *
 * Every type has a block of `blck` elements stored in `size` bytes; a row of n elements
 * (n % blck == 0) takes n / blck * size bytes. Block layouts and decode formulas live in
 * quant/formats.h; this table only knows sizes, so that the GGUF reader can validate any
 * file, including types we cannot compute with. */
#ifndef DSI_CORE_DTYPE_H
#define DSI_CORE_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Values are ggml_type ids: never renumber, only append. Gaps are ids ggml removed. */
enum dsi_type {
    DSI_TYPE_F32 = 0,
    DSI_TYPE_F16 = 1,
    DSI_TYPE_Q4_0 = 2,
    DSI_TYPE_Q4_1 = 3,
    DSI_TYPE_Q5_0 = 6,
    DSI_TYPE_Q5_1 = 7,
    DSI_TYPE_Q8_0 = 8,
    DSI_TYPE_Q8_1 = 9,
    DSI_TYPE_Q2_K = 10,
    DSI_TYPE_Q3_K = 11,
    DSI_TYPE_Q4_K = 12,
    DSI_TYPE_Q5_K = 13,
    DSI_TYPE_Q6_K = 14,
    DSI_TYPE_Q8_K = 15,
    DSI_TYPE_IQ2_XXS = 16,
    DSI_TYPE_IQ2_XS = 17,
    DSI_TYPE_IQ3_XXS = 18,
    DSI_TYPE_IQ1_S = 19,
    DSI_TYPE_IQ4_NL = 20,
    DSI_TYPE_IQ3_S = 21,
    DSI_TYPE_IQ2_S = 22,
    DSI_TYPE_IQ4_XS = 23,
    DSI_TYPE_I8 = 24,
    DSI_TYPE_I16 = 25,
    DSI_TYPE_I32 = 26,
    DSI_TYPE_I64 = 27,
    DSI_TYPE_F64 = 28,
    DSI_TYPE_IQ1_M = 29,
    DSI_TYPE_BF16 = 30,
    DSI_TYPE_TQ1_0 = 34,
    DSI_TYPE_TQ2_0 = 35,
    DSI_TYPE_MXFP4 = 39,
    DSI_TYPE_NVFP4 = 40,
    DSI_TYPE_Q1_0 = 41,
    DSI_TYPE_Q2_0 = 42,
    DSI_TYPE_COUNT = 43
};

struct dsi_type_traits {
    const char *name; /* "q4_K", as ggml spells it; NULL for an unused id */
    int32_t blck;     /* elements per block */
    int32_t size;     /* bytes per block */
};

/* Traits of type id `t`, or NULL when `t` is not a valid (present, non-removed) id. */
const struct dsi_type_traits *dsi_type_traits(uint32_t t);

/* "f16", "q4_K", ...; "unknown" for an invalid id. */
const char *dsi_type_name(uint32_t t);

/* Parse a type name, case-insensitively ("Q8_0", "bf16"). Returns false if unknown. */
bool dsi_type_from_name(const char *name, enum dsi_type *out);

/* Bytes of a row of n elements. Caller guarantees a valid type and n % blck == 0. */
size_t dsi_row_size(enum dsi_type t, int64_t n);

/* ---- scalar conversions (IEEE binary16, bfloat16) -------------------------------------- */

static inline uint32_t dsi_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float dsi_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float dsi_bf16_to_f32(uint16_t h) { return dsi_bits_f32((uint32_t)h << 16); }

/* Round to nearest even; NaN stays a quiet NaN (ggml's rule, gguf.md section 3.1). */
static inline uint16_t dsi_f32_to_bf16(float f) {
    uint32_t u = dsi_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float dsi_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return dsi_bits_f32(sign | 0x7f800000u | (man << 13)); /* inf / NaN */
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return dsi_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* Round to nearest even, with overflow to inf and correct subnormals. */
static inline uint16_t dsi_f32_to_f16(float f) {
    uint32_t u = dsi_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);   /* NaN */
    if (a >= 0x47800000u) return (uint16_t)(sign | 0x7c00u);  /* >= 65536: inf */
    if (a < 0x38800000u) {                                    /* below 2^-14: subnormal */
        /* the float trick: adding 0.5 aligns the mantissa so hardware rounding is RNE */
        float v = dsi_bits_f32(a) + 0.5f;
        return (uint16_t)(sign | (dsi_f32_bits(v) - 0x3f000000u));
    }
    uint32_t mant_odd = (a >> 13) & 1u;
    a += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round to nearest even */
    return (uint16_t)(sign | (a >> 13));
}

#ifdef __cplusplus
}
#endif

#endif
