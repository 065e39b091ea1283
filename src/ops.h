/* CPU operators of the transformer layers, on f32 activation rows. Each operator splits its
 * work over `n_threads` OpenMP threads; each has a plain scalar reference (`_ref`) that the
 * tests compare the fast path against.
 *
 * Shapes: activations are row-major [T][n] (T tokens); a weight W has GGUF shape ne = [K, N]
 * (N rows of K elements), so y[t][r] = sum_k W[r][k] * x[t][k]. */
#ifndef DSI_OPS_H
#define DSI_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/log.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Scratch for matmul: per thread, a buffer to widen a weight block to f32 for BLAS
 * (n_threads * DSI_BLAS_BLOCK * K floats); the activations quantized to 8 bits for the
 * quantized weight types (T * dsi_xq_row_bytes(K) bytes). A matmul whose scratch is missing
 * or too small allocates what it needs for the call. */
struct dsi_matmul_scratch {
    float *wbuf;
    size_t wbuf_floats;
    uint8_t *xq;
    size_t xq_bytes;
    uint8_t *gemm;     /* per thread gemm_stride bytes: a weight panel, then partial outputs */
    size_t gemm_stride;
    /* Token counts from which the panel GEMM and BLAS take over (0: DSI_GEMM_MIN_T and
     * DSI_BLAS_MIN_T). A batch-invariant context sets them per forward pass so that the path
     * a token takes does not depend on how many tokens share its pass. */
    int64_t gemm_min_t, blas_min_t;
};
/* Bytes per thread the prompt GEMM needs for rows of K and up to T tokens. */
size_t dsi_op_gemm_scratch(int64_t K, int64_t T);

/* Rows a weight block handed to BLAS holds (the scratch needs DSI_BLAS_BLOCK * K floats). */
#define DSI_BLAS_BLOCK 128
/* Token count from which quantized matmuls use the panel GEMM (where the CPU has one). */
#define DSI_GEMM_MIN_T 8
/* Token count from which float-weight matmuls go through BLAS (when built with it). */
#define DSI_BLAS_MIN_T 32

/* y [T][N] = x [T][K] * W^T (+ bias [N]). W: F32, F16, BF16 (f32 arithmetic), or a quantized
 * type (x quantized to 8 bits per block of 32, integer dot products; quant/kernels.h). The
 * reference dequantizes W and computes in double with the f32 x. */
void dsi_op_matmul(float *y, const float *x, int64_t T, const struct dsi_tensor *W,
                   const float *bias, int n_threads, struct dsi_matmul_scratch *s);
void dsi_op_matmul_ref(float *y, const float *x, int64_t T, const struct dsi_tensor *W,
                       const float *bias);
/* y[m] = x * W[m]^T (+ bias[m], which may be NULL) for nm <= DSI_MATMUL_MAX matrices with the
 * same input (attention q/k/v, FFN gate/up). Quantized matrices of one row length share one
 * quantization of x and one parallel region; otherwise one dsi_op_matmul each. */
#define DSI_MATMUL_MAX 4
void dsi_op_matmul_multi(int nm, float *const *y, const float *x, int64_t T,
                         const struct dsi_tensor *const *W, const float *const *bias,
                         int n_threads, struct dsi_matmul_scratch *s);
/* Many matmuls in one parallel region (the experts of a MoE layer): job j computes
 * y [T][N] = x [T][K] * W^T. Quantized W reads the activations already quantized to 8 bits,
 * xq = T rows of dsi_xq_row_bytes(K) bytes; float W (F32/F16/BF16) reads x. */
struct dsi_mm_job {
    float *y;
    const uint8_t *xq;
    const float *x;
    int64_t T;
    const struct dsi_tensor *W;
};
void dsi_op_matmul_jobs(int nj, const struct dsi_mm_job *jobs, int n_threads,
                        struct dsi_matmul_scratch *s);
/* xq = T rows of x [T][K] quantized to 8 bits (K a multiple of 32). */
void dsi_op_quantize_rows(uint8_t *xq, const float *x, int64_t T, int64_t K, int n_threads);

/* Per-head products with a stack of H matrices W ne [K, N, H] (nb[2]: bytes between heads):
 * y[t*y_ld + h*y_hs + n] = sum_k W_h[n][k] * x[t*x_ld + h*x_hs + k] (x_hs = 0: every head
 * reads the same input). Quantized W goes through the 8-bit activation kernels. */
void dsi_op_matmul_heads(float *y, int64_t y_ld, int64_t y_hs, const float *x, int64_t x_ld,
                         int64_t x_hs, int64_t T, const struct dsi_tensor *W, int n_threads,
                         struct dsi_matmul_scratch *s);
/* The same with each W_h used transposed: W ne [N, K, H] holds K rows of N per head and
 * y[t*y_ld + h*y_hs + n] = sum_k W_h[k][n] * x[t*x_ld + h*x_hs + k] (f32 arithmetic). */
void dsi_op_matmul_heads_t(float *y, int64_t y_ld, int64_t y_hs, const float *x, int64_t x_ld,
                           int64_t x_hs, int64_t T, const struct dsi_tensor *W, int n_threads);
/* True when this build links BLAS. */
bool dsi_op_have_blas(void);

/* y = x / sqrt(mean(x^2) + eps) * w, per row of n (T rows). y may alias x. */
void dsi_op_rmsnorm(float *y, const float *x, const float *w, int64_t T, int64_t n, float eps,
                    int n_threads);
void dsi_op_rmsnorm_ref(float *y, const float *x, const float *w, int64_t T, int64_t n, float eps);

/* Rotate, in place, x [T][n_head * head_dim] for token positions pos[T]. */
void dsi_op_rope(float *x, int64_t T, int n_head, int head_dim, const int32_t *pos,
                 const struct dsi_rope *r, int n_threads);
void dsi_op_rope_ref(float *x, int64_t T, int n_head, int head_dim, const int32_t *pos,
                     const struct dsi_rope *r);

/* One layer's KV cache: rows of n_head_kv * head_dim values per position, F32 or F16. */
struct dsi_kv_view {
    enum dsi_type type;
    void *k, *v;
    int64_t k_row, v_row; /* elements per position */
};

/* Store k, v [T][n_kv*hd] at positions [pos0, pos0 + T); v = NULL stores keys only (the
 * values are a view into the keys, as for latent attention). */
void dsi_op_kv_store(const struct dsi_kv_view *kv, const float *k, const float *v, int64_t pos0,
                     int64_t T, int n_threads);


/* Causal attention of queries q [T][n_head * head_dim] at positions pos0.. against cache
 * positions [0, pos0 + t]; out [T][n_head * head_dim_v]. Query head h reads KV head
 * h / (n_head / n_head_kv). `scratch` holds dsi_op_attention_scratch(n_threads, n_ctx, p)
 * floats. */
size_t dsi_op_attention_scratch(int n_threads, int64_t n_ctx, const struct dsi_attn_params *p);
void dsi_op_attention(float *out, const float *q, const struct dsi_kv_view *kv, int64_t pos0,
                      int64_t T, const struct dsi_attn_params *p, int n_threads, float *scratch,
                      int64_t n_ctx);
void dsi_op_attention_ref(float *out, const float *q, const struct dsi_kv_view *kv, int64_t pos0,
                          int64_t T, const struct dsi_attn_params *p);
/* Several sequences' attention in one parallel region (a batched decode pass): segment i is
 * dsi_op_attention(out, q, kv, pos0, T) of its own cache. Results equal one call each. */
struct dsi_attn_seg {
    float *out;
    const float *q;
    const struct dsi_kv_view *kv;
    int64_t pos0, T;
};
void dsi_op_attention_segs(const struct dsi_attn_seg *segs, int nseg, const struct dsi_attn_params *p,
                           int n_threads, float *scratch, int64_t n_ctx);

/* Vision encoders: y = LayerNorm(x) * w + b per row of n (biased variance), T rows; y may
 * be x. */
void dsi_op_layernorm(float *y, const float *x, const float *w, const float *b, int64_t T,
                      int64_t n, float eps, int n_threads);
/* x = gelu(x), tanh approximation, n elements (absolute error ~1e-7 * |x|). */
void dsi_op_gelu_tanh(float *x, int64_t n, int n_threads);
/* Attention of every token to every token (no mask): out [T][n_head * head_dim_v] from q
 * [T][n_head * head_dim] and k, v [T][n_head_kv * ...]; per head, scores and the weighted sum
 * are matrix products (BLAS when mm has room). DSI_ERR_NOMEM for its T*T scratch. */
enum dsi_status dsi_op_attention_full(float *out, const float *q, const float *k, const float *v,
                                      int64_t T, const struct dsi_attn_params *p, int n_threads,
                                      struct dsi_matmul_scratch *mm);

/* g = silu(g) * u, n elements. */
void dsi_op_swiglu(float *g, const float *u, int64_t n, int n_threads);
/* y += x, n elements. */
void dsi_op_add(float *y, const float *x, int64_t n, int n_threads);
/* y [n][K] = rows ids[n] of table (any float type) widened to f32. */
void dsi_op_get_rows(float *y, const struct dsi_tensor *table, const int32_t *ids, int64_t n);

#ifdef __cplusplus
}
#endif

#endif
