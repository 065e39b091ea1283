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
#include "core/tensor.h"

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

/* ---- 8-bit activations ------------------------------------------------------------------
 * The quantized weight types multiply activations quantized on the fly to 8 bits, in blocks
 * of 32 (finer than ggml's 256 for the K-quants, so the activation error is the same for every
 * weight type). A row of n values (n % 32 == 0) takes dsi_xq_row_bytes(n) bytes:
 *   int8_t  q[n]       q = round-half-even(x * (127 / amax)) in each block of 32
 *   float   d[n/32]    amax / 127: x ~ q * d
 *   float   ds32[n/32] d * (sum of q over the block)      - the terms of the weights'
 *   float   ds16[n/16] d * (sum of q over each half)        offsets and minimums
 *   int16_t s16[n/16]  sum of q over each half (exact)
 * padded to a multiple of 64 bytes. Every variant of the quantizer yields the same bytes. */
#define DSI_XQ_BLOCK 32

struct dsi_xq_view {
    const int8_t *q;
    const float *d, *ds32, *ds16;
    const int16_t *s16;
};

static inline size_t dsi_xq_row_bytes(int64_t n) {
    size_t b = (size_t)n + (size_t)n / 32 * 8 + (size_t)n / 16 * 6;
    return (b + 63) & ~(size_t)63;
}

static inline struct dsi_xq_view dsi_xq_view(const void *row, int64_t n) {
    struct dsi_xq_view v;
    v.q = (const int8_t *)row;
    v.d = (const float *)(const void *)(v.q + n);
    v.ds32 = v.d + n / 32;
    v.ds16 = v.ds32 + n / 32;
    v.s16 = (const int16_t *)(const void *)(v.ds16 + n / 16);
    return v;
}

/* Quantize one row of n floats (n % 32 == 0) into `row` (dsi_xq_row_bytes(n) bytes). */
typedef void (*dsi_quantize_x_fn)(const float *x, void *row, int64_t n);

/* out[j * os] = sum_i w[i] * x_j[i] for the quantized activation rows x_j at x + j * xs bytes
 * (j < nx <= DSI_DOT_MAX_X), with integer products within each block: the integer sums are
 * exact, the float combination of the block scales is accurate to a few ulps of the sum of
 * the absolute block terms. n is a multiple of the weight type's block size. */
typedef void (*dsi_dot_q8_fn)(int64_t n, const void *w, const void *x, size_t xs, int nx,
                              float *out, size_t os);

struct dsi_type_kernels {
    dsi_to_f32_fn to_f32;
    dsi_dot_f32_fn dot_f32;  /* float weights: f32 activations */
    dsi_dot_q8_fn dot_q8;    /* quantized weights: 8-bit activations */
    const char *variant;     /* "ref", "avx2", "avx512", "avx512vnni", "neon", ... */
};

/* Fill the table from the detected CPU features (dsi_cpu_init first). Idempotent. */
void dsi_kernels_init(void);

/* Kernels of a type; entries are NULL where the type has no such kernel. */
const struct dsi_type_kernels *dsi_kernels(enum dsi_type t);

/* The activation quantizer of the best variant, and that variant's name. */
dsi_quantize_x_fn dsi_kernels_quantize_x(void);
const char *dsi_kernels_variant(void);

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
/* The 16 signed scales (-32..31) of a Q3_K block's packed scales[12]. */
void dsi_q3k_scales(const uint8_t *scales, int8_t sc[16]);

/* Activation quantizer and integer dot products (quant/dot_ref.c). */
void dsi_quantize_x_ref(const float *x, void *row, int64_t n);
void dsi_dot_q8_q4_0_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);
void dsi_dot_q8_q4_1_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);
void dsi_dot_q8_q5_0_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);
void dsi_dot_q8_q5_1_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);
void dsi_dot_q8_q8_0_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);
void dsi_dot_q8_q2_K_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);
void dsi_dot_q8_q3_K_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);
void dsi_dot_q8_q4_K_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);
void dsi_dot_q8_q5_K_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);
void dsi_dot_q8_q6_K_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);
void dsi_dot_q8_iq4_nl_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);
void dsi_dot_q8_iq4_xs_ref(int64_t n, const void *w, const void *x, size_t xs, int nx, float *out, size_t os);

/* Decomposition of a quantized row shared by the references and the tests: element i of the
 * 32-element sub-block j is a[i / 16] * q[i] + m[i / 16], q an integer (offsets applied). */
typedef void (*dsi_decode32_fn)(const void *w, int64_t j, int q[32], float a[2], float m[2]);
dsi_decode32_fn dsi_decode32(enum dsi_type t);

/* ---- attention: weighted sums of value rows -------------------------------------------
 * out[g * os + d] = sum_{j < m} s[g * ss + j] * row_j[d] for g < G, d < n; row j at
 * v + j * vs bytes, of the KV cache type (F32 or F16). */
typedef void (*dsi_acc_rows_fn)(int64_t n, int64_t m, int G, const float *s, size_t ss,
                                const void *v, size_t vs, float *out, size_t os);
dsi_acc_rows_fn dsi_kernels_acc_rows(enum dsi_type t); /* NULL for other types */

/* ---- prompt attention: scores against transposed keys --------------------------------
 * s[r * ss + j] = sum_{d < D} q[r * qs + d] * kt[d * ldk + j] for r < R, j < n (n a multiple
 * of 16): the keys converted to f32 and transposed once per prompt, every query row then
 * takes 16 (8) keys per vector. Each score is one fused multiply-add chain over d in order,
 * so every variant gives the reference's bits. */
typedef void (*dsi_scores_kt_fn)(int64_t D, int R, const float *q, size_t qs, const float *kt,
                                 size_t ldk, int64_t n, float *s, size_t ss);
dsi_scores_kt_fn dsi_kernels_scores_kt(void);
void dsi_scores_kt_ref(int64_t D, int R, const float *q, size_t qs, const float *kt, size_t ldk,
                       int64_t n, float *s, size_t ss);
#if defined(__x86_64__)
void dsi_scores_kt_avx2(int64_t, int, const float *, size_t, const float *, size_t, int64_t, float *, size_t);
void dsi_scores_kt_avx512(int64_t, int, const float *, size_t, const float *, size_t, int64_t, float *, size_t);
#endif
/* SwiGLU's product: g[i] = g[i] / (1 + e^-g[i]) * u[i]. The vector versions use their own
 * exponential (within 2 ulp of expf; tests/test_ops.c bounds the result). */
typedef void (*dsi_silu_mul_fn)(float *g, const float *u, int64_t n);
dsi_silu_mul_fn dsi_kernels_silu_mul(void);
void dsi_silu_mul_ref(float *g, const float *u, int64_t n);
#if defined(__x86_64__)
void dsi_silu_mul_avx2(float *g, const float *u, int64_t n);
void dsi_silu_mul_avx512(float *g, const float *u, int64_t n);
#endif
void dsi_acc_rows_f32_ref(int64_t n, int64_t m, int G, const float *s, size_t ss, const void *v,
                          size_t vs, float *out, size_t os);
void dsi_acc_rows_f16_ref(int64_t n, int64_t m, int G, const float *s, size_t ss, const void *v,
                          size_t vs, float *out, size_t os);
#if defined(__x86_64__)
void dsi_acc_rows_f32_avx2(int64_t, int64_t, int, const float *, size_t, const void *, size_t, float *, size_t);
void dsi_acc_rows_f16_avx2(int64_t, int64_t, int, const float *, size_t, const void *, size_t, float *, size_t);
void dsi_acc_rows_f32_avx512(int64_t, int64_t, int, const float *, size_t, const void *, size_t, float *, size_t);
void dsi_acc_rows_f16_avx512(int64_t, int64_t, int, const float *, size_t, const void *, size_t, float *, size_t);
#endif

/* ---- prompt GEMM (quant/gemm.c) -----------------------------------------------------------
 * A panel holds DSI_GEMM_ROWS weight rows unpacked per 32-element block: 512 bytes of
 * unsigned values u (64-byte group g: elements 4g..4g+3 of rows 0..15, four bytes per row),
 * then 16 floats a and 16 floats c, the weight being a * (u - off) + c (off per type); DSI_GEMM_BLOCK_BYTES per
 * block, 64-byte aligned. Types whose scale changes every 16 elements (Q6_K) are packed with
 * DSI_GEMM_HALVES set in the returned offset: their c slot holds the scale of the block's
 * second 16 elements (a: the first 16's), the weight being a_h * (u - off) (no c term). */
#define DSI_GEMM_ROWS 16
#define DSI_GEMM_BLOCK_BYTES 640
#define DSI_GEMM_HALVES 0x10000
bool dsi_gemm_can_pack(enum dsi_type t);
size_t dsi_gemm_panel_bytes(int64_t K);
/* Pack rows 0..nr-1 (nr <= 16; the others become zero) of a matrix of type t whose rows are
 * ws bytes apart. Returns the type's offset off (the weight is a * (u - off) + c), or -1 for
 * a type that cannot be packed. */
int dsi_gemm_pack(enum dsi_type t, const void *w, size_t ws, int nr, int64_t K, void *panel);
/* y[t * ldy + r] = (panel row r) . (activation row t), r < 16, t < T; x holds T quantized rows
 * rb bytes apart; off as returned by the pack. */
typedef void (*dsi_gemm_fn)(int64_t K, const void *panel, int off, const void *x, size_t rb,
                            int64_t T, float *y, size_t ldy);
void dsi_gemm_ref(int64_t K, const void *panel, int off, const void *x, size_t rb, int64_t T,
                  float *y, size_t ldy);
/* The GEMM of this CPU (AVX-512 VNNI), NULL where there is none (callers use the row kernels). */
dsi_gemm_fn dsi_kernels_gemm(void);
#if defined(__x86_64__)
void dsi_gemm_avx512vnni(int64_t K, const void *panel, int off, const void *x, size_t rb,
                         int64_t T, float *y, size_t ldy);
/* Fast packer for whole panels of Q4_0, Q8_0, Q4_K (-1: not handled here). */
int dsi_gemm_pack_avx512vnni(enum dsi_type t, const void *w, size_t ws, int nr, int64_t K,
                             void *panel);
#endif

/* ---- repacked weights (quant/repack.c) ----------------------------------------------------
 * Q4_0, Q8_0, Q4_K and Q6_K matrices with rows in multiples of 16 may be repacked at load time into
 * 16-row panels, dsi_x16_block_bytes() per block of dsi_x16_block_elems() elements (the size
 * of 16 blocks of the type): the scales of the 16 rows, then 64-byte chunks whose 4-byte lane
 * r holds four values of row r (Q4_0, Q4_K: nibbles, Q8_0: bytes, Q6_K: low nibbles and
 * high bits apart; quant/repack.c has the byte layouts). One kernel per type then serves every token count: each block's values are
 * loaded once and multiplied, four bytes of an activation broadcast to 16 rows per vpdpbusd,
 * with up to four tokens at a time. Results do not depend on the token count. */
#define DSI_X16_ROWS 16
/* The layout a type is repacked into (0: none). */
int dsi_x16_layout(enum dsi_type t);
size_t dsi_x16_block_bytes(int layout);
int64_t dsi_x16_block_elems(int layout);
bool dsi_repack_possible(const struct dsi_tensor *t);
/* Repack t (Q4_0, Q8_0, Q4_K or Q6_K rows) into dst (t's size; dst == t->data repacks in place); t
 * then points at dst with layout dsi_x16_layout(t->type). False if t cannot be repacked
 * (or no memory). */
bool dsi_repack(struct dsi_tensor *t, void *dst);
/* y[t * ldy + r] = (panel row r) . (activation row t), r < 16, t < T; x: T quantized
 * activation rows rb bytes apart. */
typedef void (*dsi_mm_x16_fn)(int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                              float *y, size_t ldy);
void dsi_mm_x16_ref(int layout, int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                    float *y, size_t ldy);
/* The kernel of this CPU for a layout, NULL where there is none (then nothing is repacked). */
dsi_mm_x16_fn dsi_kernels_mm_x16(int layout);
/* Row r (< 16) of a 16-row panel of K columns back in ggml's row layout. */
void dsi_x16_unpack_row(int layout, const void *panel, int64_t K, int r, void *row);
/* The GEMM panel (below) of a repacked panel; returns the type's offset. Only where the GEMM
 * exists. */
int dsi_gemm_pack_x16(int layout, const void *x16, int64_t K, void *panel);
#if defined(__x86_64__)
int dsi_gemm_pack_x16_avx512vnni(int layout, const void *x16, int64_t K, void *panel);
void dsi_mm_q4_0_x16_avx512vnni(int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                                float *y, size_t ldy);
void dsi_mm_q8_0_x16_avx512vnni(int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                                float *y, size_t ldy);
void dsi_mm_q4_K_x16_avx512vnni(int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                                float *y, size_t ldy);
void dsi_mm_q6_K_x16_avx512vnni(int64_t K, const void *panel, const void *x, size_t rb, int64_t T,
                                float *y, size_t ldy);
#endif

/* ---- ISA variants (quant/x86/, quant/arm/), reached only through the table ------------- */
/* integer row kernels: one set per instruction set (quant/x86/qdot_*.c, quant/arm/qdot_*.c) */
#define DSI_DECLARE_QDOT(SFX)                                                                      \
    void dsi_quantize_x_##SFX(const float *x, void *row, int64_t n);                             \
    void dsi_dot_q8_q4_0_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t);  \
    void dsi_dot_q8_q4_1_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t);  \
    void dsi_dot_q8_q5_0_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t);  \
    void dsi_dot_q8_q5_1_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t);  \
    void dsi_dot_q8_q8_0_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t);  \
    void dsi_dot_q8_q2_K_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t);  \
    void dsi_dot_q8_q3_K_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t);  \
    void dsi_dot_q8_q4_K_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t);  \
    void dsi_dot_q8_q5_K_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t);  \
    void dsi_dot_q8_q6_K_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t);  \
    void dsi_dot_q8_iq4_nl_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t); \
    void dsi_dot_q8_iq4_xs_##SFX(int64_t, const void *, const void *, size_t, int, float *, size_t);
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
DSI_DECLARE_QDOT(avx2)
DSI_DECLARE_QDOT(avx2vnni)
DSI_DECLARE_QDOT(avx512vnni)
#endif
#if defined(__aarch64__)
DSI_DECLARE_QDOT(neon)    /* ARMv8.0-A: smull/smlal2/sadalp */
DSI_DECLARE_QDOT(dotprod) /* +dotprod: sdot */
DSI_DECLARE_QDOT(i8mm)    /* +i8mm: smmla on pairs of activation rows, sdot otherwise */
#endif

/* One instruction set's integer kernels, in the order of dsi_qdot_types (for tests). */
#define DSI_QDOT_NTYPES 12
extern const enum dsi_type dsi_qdot_types[DSI_QDOT_NTYPES];
struct dsi_qdot_set {
    const char *name;
    uint32_t need; /* dsi_cpu_feature bits */
    dsi_quantize_x_fn quantize_x;
    dsi_dot_q8_fn dot[DSI_QDOT_NTYPES];
};
/* The sets built into this binary, reference first; returns their count. */
int dsi_qdot_sets(const struct dsi_qdot_set **sets);

#ifdef __cplusplus
}
#endif

#endif
