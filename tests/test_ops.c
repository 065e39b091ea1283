/* Operators and kernels against their scalar references:
 *  - every reachable ISA variant of the F32/F16/BF16 row kernels (dot with 1..4 activation rows,
 *    widening) on odd and real sizes, with the weight row ending at an inaccessible page;
 *  - matmul (BLAS and row paths) against a double-precision reference;
 *  - rope (NEOX and NORM) against hand-computed rotations, attention against its reference with
 *    GQA and f32/f16 caches, rmsnorm, swiglu. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "quant/kernels.h"
#include "quant/quantize.h"
#include "src/ops.h"
#include "tests/util.h"

static uint64_t rng = 12345;
static float frand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

struct variant {
    const char *name;
    uint32_t need;
    dsi_dot_f32_fn dot[3]; /* f32, f16, bf16 */
    dsi_to_f32_fn conv[2]; /* f16, bf16 */
};

static void test_kernels(void) {
    static const int64_t sizes[] = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 255, 256, 257, 1000, 1536, 8960};
    struct variant vars[3] = {{"ref", 0, {dsi_dot_f32_f32_ref, dsi_dot_f32_f16_ref, dsi_dot_f32_bf16_ref}, {dsi_to_f32_f16_ref, dsi_to_f32_bf16_ref}}};
    int nv = 1;
#if defined(__x86_64__)
    vars[nv++] = (struct variant){"avx2", DSI_CPU_AVX2, {dsi_dot_f32_f32_avx2, dsi_dot_f32_f16_avx2, dsi_dot_f32_bf16_avx2}, {dsi_to_f32_f16_avx2, dsi_to_f32_bf16_avx2}};
    vars[nv++] = (struct variant){"avx512", DSI_CPU_AVX512, {dsi_dot_f32_f32_avx512, dsi_dot_f32_f16_avx512, dsi_dot_f32_bf16_avx512}, {dsi_to_f32_f16_avx512, dsi_to_f32_bf16_avx512}};
#endif
    int tested = 0;
    for (int v = 1; v < nv; v++) {
        if (!dsi_cpu_has(vars[v].need)) {
            TU_LOG("kernels: %s not available on this CPU (or masked), skipped\n", vars[v].name);
            continue;
        }
        tested++;
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            int64_t n = sizes[si];
            float *x = malloc((size_t)(4 * n + 1) * sizeof *x);
            for (int64_t i = 0; i < 4 * n + 1; i++) x[i] = frand();
            for (int ty = 0; ty < 3; ty++) {
                size_t es = ty == 0 ? 4 : 2, bytes = (size_t)n * es;
                uint8_t *w = tu_guarded_alloc(bytes);
                for (int64_t i = 0; i < n; i++) {
                    float f = frand();
                    if (ty == 0) memcpy(w + 4 * i, &f, 4);
                    else {
                        uint16_t h = ty == 1 ? dsi_f32_to_f16(f) : dsi_f32_to_bf16(f);
                        memcpy(w + 2 * i, &h, 2);
                    }
                }
                for (int nx = 1; nx <= DSI_DOT_MAX_X; nx++) {
                    float a[4], b[4];
                    vars[0].dot[ty](n, w, x + 1, (size_t)n, nx, a, 1); /* odd offset of x */
                    vars[v].dot[ty](n, w, x + 1, (size_t)n, nx, b, 1);
                    for (int j = 0; j < nx; j++) {
                        double mag = 0;
                        float wf[1];
                        for (int64_t i = 0; i < n; i++) {
                            if (ty == 0) memcpy(wf, w + 4 * i, 4);
                            else {
                                uint16_t h;
                                memcpy(&h, w + 2 * i, 2);
                                wf[0] = ty == 1 ? dsi_f16_to_f32(h) : dsi_bf16_to_f32(h);
                            }
                            mag += fabs(wf[0] * x[1 + j * n + i]);
                        }
                        double tol = 2.0 * (double)n * FLT_EPSILON * mag + 1e-30;
                        if (fabs((double)a[j] - b[j]) > tol)
                            TU_CHECK(0, "%s dot type %d n=%lld nx=%d row %d: %.9g vs ref %.9g (tol %.3g)",
                                     vars[v].name, ty, (long long)n, nx, j, b[j], a[j], tol);
                    }
                }
                if (ty > 0) {
                    float *ya = malloc((size_t)n * 4), *yb = malloc((size_t)n * 4);
                    vars[0].conv[ty - 1](w, ya, n);
                    vars[v].conv[ty - 1](w, yb, n);
                    TU_CHECK(!memcmp(ya, yb, (size_t)n * 4), "%s widen type %d n=%lld differs", vars[v].name, ty, (long long)n);
                    free(ya);
                    free(yb);
                }
                tu_guarded_free(w, bytes);
            }
            free(x);
        }
    }
    TU_LOG("kernels: %d SIMD variant(s) checked against ref\n", tested);
}

/* Quantized weights: the integer path (activations quantized to 8 bits per block of 32)
 * against the reference in double on the f32 activations. The only difference allowed is the
 * activation rounding, at most half a step (amax/127/2) per element, so per output
 * |y - ref| <= sum_i |w_i| * amax(block of i) / 254 (+ float summation slack). Row counts
 * and token counts that are not multiples of the kernels' chunks and groups. */
static void test_matmul_quant(void) {
    static const enum dsi_type types[] = {DSI_TYPE_Q4_0, DSI_TYPE_Q8_0, DSI_TYPE_Q5_1,
                                          DSI_TYPE_Q4_K, DSI_TYPE_Q6_K, DSI_TYPE_IQ4_XS};
    const int64_t K = 512, N = 37;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        enum dsi_type t = types[ti];
        size_t rs = dsi_row_size(t, K);
        uint8_t *wd = malloc(rs * (size_t)N);
        float *wf = malloc((size_t)(K * N) * 4), *row = malloc((size_t)K * 4);
        for (int64_t r = 0; r < N; r++) {
            for (int64_t k = 0; k < K; k++) row[k] = frand() * 0.1f;
            TU_CHECK(dsi_quantize_row(t, row, wd + (size_t)r * rs, K), "quantize %s", dsi_type_name(t));
            dsi_kernels(t)->to_f32(wd + (size_t)r * rs, wf + r * K, K);
        }
        struct dsi_tensor W = dsi_tensor_make(t, K, N, 1, 1, wd);
        float bias[37];
        for (int i = 0; i < N; i++) bias[i] = frand();
        static const int64_t Ts[] = {1, 2, 3, 5, 9, 40};
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
            int64_t T = Ts[k];
            float *x = malloc((size_t)(T * K) * 4), *y = malloc((size_t)(T * N) * 4),
                  *r = malloc((size_t)(T * N) * 4);
            for (int64_t i = 0; i < T * K; i++) x[i] = frand() * (i % 61 == 0 ? 8.0f : 1.0f);
            struct dsi_matmul_scratch s = {0};
            dsi_op_matmul(y, x, T, &W, bias, 2, &s);
            dsi_op_matmul_ref(r, x, T, &W, bias);
            for (int64_t tok = 0; tok < T; tok++)
                for (int64_t n = 0; n < N; n++) {
                    double bound = 0, mag = 0;
                    for (int64_t b = 0; b < K / 32; b++) {
                        float amax = 0;
                        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[tok * K + 32 * b + i]));
                        for (int i = 0; i < 32; i++) {
                            double w = fabs(wf[n * K + 32 * b + i]);
                            bound += w * amax / 254.0;
                            mag += w * (fabs(x[tok * K + 32 * b + i]) + amax / 254.0);
                        }
                    }
                    bound += 1e-5 * mag + 1e-6;
                    double d = fabs((double)y[tok * N + n] - r[tok * N + n]);
                    if (!(d <= bound))
                        TU_CHECK(0, "matmul %s T=%lld token %lld row %lld: %g vs %g (bound %.3g)",
                                 dsi_type_name(t), (long long)T, (long long)tok, (long long)n,
                                 y[tok * N + n], r[tok * N + n], bound);
                }
            free(x);
            free(y);
            free(r);
        }
        free(wd);
        free(wf);
        free(row);
    }
}

/* dsi_op_matmul_multi: three quantized matrices of different heights (and a float one, which
 * takes the unfused path) against one dsi_op_matmul each, which test_matmul_quant checks
 * against the reference: the same kernels on the same quantized x, so equal bits. */
static void test_matmul_multi(void) {
    const int64_t K = 256, Ns[4] = {40, 8, 17, 5};
    const enum dsi_type ts[4] = {DSI_TYPE_Q4_K, DSI_TYPE_Q8_0, DSI_TYPE_Q6_K, DSI_TYPE_F32};
    for (int with_float = 0; with_float < 2; with_float++) {
        int nm = with_float ? 4 : 3;
        struct dsi_tensor W[4];
        uint8_t *wd[4];
        float *bias[4], *y[4], *r[4], *row = malloc((size_t)K * 4);
        const int64_t T = 6;
        float *x = malloc((size_t)(T * K) * 4);
        for (int64_t i = 0; i < T * K; i++) x[i] = frand();
        for (int m = 0; m < nm; m++) {
            size_t rs = dsi_row_size(ts[m], K);
            wd[m] = malloc(rs * (size_t)Ns[m]);
            for (int64_t n = 0; n < Ns[m]; n++) {
                for (int64_t k = 0; k < K; k++) row[k] = frand() * 0.1f;
                if (ts[m] == DSI_TYPE_F32) memcpy(wd[m] + (size_t)n * rs, row, rs);
                else dsi_quantize_row(ts[m], row, wd[m] + (size_t)n * rs, K);
            }
            W[m] = dsi_tensor_make(ts[m], K, Ns[m], 1, 1, wd[m]);
            bias[m] = m == 1 ? NULL : malloc((size_t)Ns[m] * 4);
            for (int64_t n = 0; bias[m] && n < Ns[m]; n++) bias[m][n] = frand();
            y[m] = malloc((size_t)(T * Ns[m]) * 4);
            r[m] = malloc((size_t)(T * Ns[m]) * 4);
            dsi_op_matmul(r[m], x, T, &W[m], bias[m], 1, NULL);
        }
        const struct dsi_tensor *Wp[4] = {&W[0], &W[1], &W[2], &W[3]};
        const float *bp[4] = {bias[0], bias[1], bias[2], bias[3]};
        dsi_op_matmul_multi(nm, y, x, T, Wp, bp, 2, NULL);
        for (int m = 0; m < nm; m++) {
            TU_CHECK(memcmp(y[m], r[m], (size_t)(T * Ns[m]) * 4) == 0,
                     "matmul_multi (%d matrices): matrix %d differs from dsi_op_matmul", nm, m);
            free(wd[m]);
            free(bias[m]);
            free(y[m]);
            free(r[m]);
        }
        free(row);
        free(x);
    }
}

static void test_matmul(void) {
    int64_t K = 200, N = 300;
    enum dsi_type types[3] = {DSI_TYPE_F32, DSI_TYPE_F16, DSI_TYPE_BF16};
    for (int ty = 0; ty < 3; ty++) {
        size_t es = ty == 0 ? 4 : 2;
        uint8_t *wd = malloc((size_t)(K * N) * es);
        for (int64_t i = 0; i < K * N; i++) {
            float f = frand() * 0.1f;
            if (ty == 0) memcpy(wd + 4 * i, &f, 4);
            else {
                uint16_t h = ty == 1 ? dsi_f32_to_f16(f) : dsi_f32_to_bf16(f);
                memcpy(wd + 2 * i, &h, 2);
            }
        }
        struct dsi_tensor W = dsi_tensor_make(types[ty], K, N, 1, 1, wd);
        float bias[300];
        for (int i = 0; i < N; i++) bias[i] = frand();
        int64_t Ts[3] = {1, 3, 40}; /* decode, small batch, BLAS-sized batch */
        for (int k = 0; k < 3; k++) {
            int64_t T = Ts[k];
            float *x = malloc((size_t)(T * K) * 4), *y = malloc((size_t)(T * N) * 4), *r = malloc((size_t)(T * N) * 4);
            for (int64_t i = 0; i < T * K; i++) x[i] = frand();
            struct dsi_matmul_scratch s = {.wbuf = malloc((size_t)(2 * DSI_BLAS_BLOCK * K) * 4),
                                          .wbuf_floats = (size_t)(2 * DSI_BLAS_BLOCK * K)};
            dsi_op_matmul(y, x, T, &W, bias, 2, &s);
            dsi_op_matmul_ref(r, x, T, &W, bias);
            double worst = 0;
            for (int64_t i = 0; i < T * N; i++) worst = fmax(worst, fabs(y[i] - r[i]));
            TU_CHECK(worst < 1e-4, "matmul type %d T=%lld: max diff %.3g", ty, (long long)T, worst);
            free(s.wbuf);
            free(x);
            free(y);
            free(r);
        }
        free(wd);
    }
}

static void test_rope_attention(void) {
    /* rope against the rotation written out by hand */
    float inv[4] = {1.0f, 0.1f, 0.01f, 0.001f};
    for (int mode = 0; mode < 2; mode++) {
        struct dsi_rope r = {mode ? DSI_ROPE_NORM : DSI_ROPE_NEOX, 8, inv, 1.0f};
        float v[8], o[8];
        for (int i = 0; i < 8; i++) v[i] = o[i] = frand();
        int32_t pos = 7;
        dsi_op_rope(v, 1, 1, 8, &pos, &r, 1);
        for (int i = 0; i < 4; i++) {
            int a = mode ? 2 * i : i, b = mode ? 2 * i + 1 : i + 4;
            double th = 7.0 * inv[i];
            double ea = o[a] * cos(th) - o[b] * sin(th), eb = o[a] * sin(th) + o[b] * cos(th);
            TU_CHECK(fabs(v[a] - ea) < 1e-6 && fabs(v[b] - eb) < 1e-6, "rope mode %d pair %d", mode, i);
        }
    }
    /* attention: GQA 6 query heads over 2 KV heads (3 per group: a pair and a single for
     * the value sums), caches f32 and f16, head sizes below, across and at the SIMD chunks */
    /* ... for a few tokens (decode-like) and for prompts of 16 tokens or more (keys transposed
     * once, contexts not a multiple of 16), heads of 72 falling back to the per-key path */
    int H = 6, KV = 2;
    static const int64_t shapes[][3] = {{3, 5, 16}, {7, 21, 40}, {0, 33, 33}}; /* pos0, T, n_ctx */
    static const int hds[] = {16, 80, 128, 72};
    for (int kvt = 0; kvt < 24; kvt++) {
        int hd = hds[kvt / 2 % 4];
        int64_t pos0 = shapes[kvt / 8][0], T = shapes[kvt / 8][1], n_ctx = shapes[kvt / 8][2];
        enum dsi_type t = kvt % 2 ? DSI_TYPE_F16 : DSI_TYPE_F32;
        size_t es = kvt % 2 ? 2 : 4;
        void *k = calloc((size_t)(n_ctx * KV * hd), es), *v = calloc((size_t)(n_ctx * KV * hd), es);
        struct dsi_kv_view kvv = {t, k, v, KV * hd, KV * hd};
        float *kk = malloc((size_t)((pos0 + T) * KV * hd) * 4), *vv = malloc((size_t)((pos0 + T) * KV * hd) * 4);
        for (int64_t i = 0; i < (pos0 + T) * KV * hd; i++) kk[i] = frand(), vv[i] = frand();
        dsi_op_kv_store(&kvv, kk, vv, 0, pos0 + T, 1);
        float *q = malloc((size_t)(T * H * hd) * 4), *o1 = malloc((size_t)(T * H * hd) * 4), *o2 = malloc((size_t)(T * H * hd) * 4);
        for (int64_t i = 0; i < T * H * hd; i++) q[i] = frand();
        struct dsi_attn_params ap = {H, KV, hd, hd, 0.25f, false};
        float *scratch = malloc(dsi_op_attention_scratch(2, n_ctx, &ap) * 4);
        dsi_op_attention(o1, q, &kvv, pos0, T, &ap, 2, scratch, n_ctx);
        dsi_op_attention_ref(o2, q, &kvv, pos0, T, &ap);
        double worst = 0;
        for (int64_t i = 0; i < T * H * hd; i++) worst = fmax(worst, fabs(o1[i] - o2[i]));
        TU_CHECK(worst < 1e-5, "attention (kv %s, head %d, T %lld): max diff %.3g", kvt % 2 ? "f16" : "f32", hd,
                 (long long)T, worst);
        /* causality: the first query sees positions 0..pos0 only; changing a later key must not matter */
        float keep = o1[0];
        kk[(pos0 + 1) * KV * hd] += 5.0f;
        dsi_op_kv_store(&kvv, kk, vv, 0, pos0 + T, 1);
        dsi_op_attention(o1, q, &kvv, pos0, T, &ap, 2, scratch, n_ctx);
        TU_CHECK(o1[0] == keep, "attention is not causal");
        free(k), free(v), free(kk), free(vv), free(q), free(o1), free(o2), free(scratch);
    }
    /* the transposed-key score kernel of this CPU gives the reference's bits (one FMA chain
     * per score), for 1..11 rows */
    {
        int64_t D = 80, n = 48;
        float *qq = malloc(sizeof(float) * 11 * (size_t)D), *kt = malloc(sizeof(float) * (size_t)(D * n));
        float *s1 = malloc(sizeof(float) * 11 * (size_t)n), *s2 = malloc(sizeof(float) * 11 * (size_t)n);
        for (int64_t i = 0; i < 11 * D; i++) qq[i] = frand();
        for (int64_t i = 0; i < D * n; i++) kt[i] = frand();
        for (int R = 1; R <= 11; R++) {
            dsi_kernels_scores_kt()(D, R, qq, (size_t)D, kt, (size_t)n, n, s1, (size_t)n);
            dsi_scores_kt_ref(D, R, qq, (size_t)D, kt, (size_t)n, n, s2, (size_t)n);
            TU_CHECK(!memcmp(s1, s2, sizeof(float) * (size_t)(R * n)), "scores_kt with %d rows differs from the reference", R);
        }
        free(qq), free(kt), free(s1), free(s2);
    }
    /* rmsnorm and swiglu against their formulas */
    float x[64], w[64], y[64], g[64], u[64], g0[64];
    for (int i = 0; i < 64; i++) x[i] = frand(), w[i] = frand(), g[i] = g0[i] = 3 * frand(), u[i] = frand();
    dsi_op_rmsnorm(y, x, w, 1, 64, 1e-6f, 1);
    double ss = 0;
    for (int i = 0; i < 64; i++) ss += (double)x[i] * x[i];
    for (int i = 0; i < 64; i++)
        TU_CHECK(fabs(y[i] - w[i] * x[i] / sqrt(ss / 64 + 1e-6)) < 1e-6, "rmsnorm element %d", i);
    dsi_op_swiglu(g, u, 64, 1);
    for (int i = 0; i < 64; i++)
        TU_CHECK(fabs(g[i] - g0[i] / (1 + exp(-g0[i])) * u[i]) < 1e-6, "swiglu element %d", i);
}

/* SwiGLU's product with the vector exponentials: every variant this CPU runs, against the
 * formula in double, over [-100, 100] (both saturated tails), zeros and odd lengths (the
 * scalar tail). Bound: 4 float ulps of the result plus 1e-30 absolute (the clamped tails give
 * values below 1e-36 where the formula underflows). */
static void check_silu(dsi_silu_mul_fn f, const char *name) {
    enum { N = 4099 };
    float *g = malloc(N * sizeof *g), *u = malloc(N * sizeof *u), *g0 = malloc(N * sizeof *g0);
    for (int i = 0; i < N; i++) {
        g0[i] = g[i] = i % 97 == 0 ? 0.0f : (float)(i - N / 2) * (200.0f / N) + 0.01f * frand();
        u[i] = frand() + 1.5f;
    }
    for (int n = N; n >= N - 3; n -= 3) {
        memcpy(g, g0, N * sizeof *g);
        f(g, u, n);
        int bad = 0;
        for (int i = 0; i < n; i++) {
            double want = (double)g0[i] / (1.0 + exp(-(double)g0[i])) * u[i];
            if (!(fabs(g[i] - want) <= 4 * FLT_EPSILON * fabs(want) + 1e-30) && bad++ < 3)
                TU_CHECK(0, "silu %s n=%d x=%.9g: %.9g vs %.9g", name, n, g0[i], g[i], want);
        }
    }
    free(g), free(u), free(g0);
}

/* ... and dsi_op_swiglu's threaded shares reach every element (sizes around the shares'
 * 64-element rounding) */
static void test_silu(void) {
    for (int64_t n = 4097; n <= 4097 + 130; n += 65) {
        float *g = malloc(sizeof(float) * (size_t)n), *u = malloc(sizeof(float) * (size_t)n);
        float *g0 = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) g[i] = g0[i] = 4 * frand(), u[i] = frand();
        dsi_op_swiglu(g, u, n, 2);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            double want = (double)g0[i] / (1.0 + exp(-(double)g0[i])) * u[i];
            if (!(fabs(g[i] - want) <= 4 * FLT_EPSILON * fabs(want) + 1e-30) && bad++ < 3)
                TU_CHECK(0, "swiglu n=%lld element %lld: %.9g vs %.9g", (long long)n, (long long)i, g[i], want);
        }
        free(g), free(u), free(g0);
    }
    check_silu(dsi_silu_mul_ref, "ref");
    check_silu(dsi_kernels_silu_mul(), "dispatched");
#if defined(__x86_64__)
    if (dsi_cpu_has_all(DSI_CPU_AVX2 | DSI_CPU_FMA)) check_silu(dsi_silu_mul_avx2, "avx2");
    if (dsi_cpu_has_all(DSI_CPU_AVX512)) check_silu(dsi_silu_mul_avx512, "avx512");
#endif
}

/* Per-head products on stacks repacked into 16-row panels (latent attention's k_b / v_b):
 * dsi_op_matmul_heads through the panel kernel equals the row kernels to the float rounding
 * of their sums (the same 8-bit activations and integer dots per block), and the transposed
 * form unpacks each row from its panel: equal bits. Q4_0 and Q8_0, 1 and 37 tokens. */
static void test_matmul_heads_x16(void) {
    static const enum dsi_type types[] = {DSI_TYPE_Q4_0, DSI_TYPE_Q8_0};
    const int64_t K = 64, N = 32, H = 3;
    for (size_t ti = 0; ti < 2; ti++) {
        enum dsi_type t = types[ti];
        int layout = t == DSI_TYPE_Q4_0 ? DSI_LAYOUT_Q4_0_X16 : DSI_LAYOUT_Q8_0_X16;
        if (!dsi_kernels_mm_x16(layout)) {
            TU_LOG("no panel kernel for %s on this CPU: skipped\n", dsi_type_name(t));
            continue;
        }
        size_t rs = dsi_row_size(t, K);
        uint8_t *wd = malloc(rs * (size_t)(N * H)), *wp = malloc(rs * (size_t)(N * H));
        float row[64];
        for (int64_t r = 0; r < N * H; r++) {
            for (int64_t k = 0; k < K; k++) row[k] = frand() * 0.1f;
            dsi_quantize_row(t, row, wd + (size_t)r * rs, K);
        }
        struct dsi_tensor W = dsi_tensor_make(t, K, N, H, 1, wd), P = W;
        TU_CHECK(dsi_repack(&P, wp) && P.layout == layout, "repack the %s stack", dsi_type_name(t));
        for (int64_t T = 1; T <= 37; T += 36) {
            /* y rows of H * N, x rows of H * K; the transposed form: x rows of H * N */
            float *x = malloc(sizeof(float) * (size_t)(T * H * K)), *y1 = malloc(sizeof(float) * (size_t)(T * H * N));
            float *y2 = malloc(sizeof(float) * (size_t)(T * H * N)), *z1 = malloc(sizeof(float) * (size_t)(T * H * K));
            float *z2 = malloc(sizeof(float) * (size_t)(T * H * K));
            for (int64_t i = 0; i < T * H * K; i++) x[i] = frand();
            struct dsi_matmul_scratch sc = {0};
            dsi_op_matmul_heads(y1, H * N, N, x, H * K, K, T, &W, 2, &sc);
            dsi_op_matmul_heads(y2, H * N, N, x, H * K, K, T, &P, 2, &sc);
            double worst = 0, mx = 0;
            for (int64_t i = 0; i < T * H * N; i++) {
                double d = fabs((double)y1[i] - y2[i]);
                if (d > worst) worst = d;
                if (fabs(y1[i]) > mx) mx = fabs(y1[i]);
            }
            TU_CHECK(worst <= 1e-5 * mx, "heads %s T=%lld: panels vs rows differ by %.3g of max %.3g",
                     dsi_type_name(t), (long long)T, worst, mx);
            /* transposed: W ne [K, N, H] used as W_h^T: x rows of H * N in, rows of H * K out */
            dsi_op_matmul_heads_t(z1, H * K, K, x, H * N, N, T, &W, 2);
            dsi_op_matmul_heads_t(z2, H * K, K, x, H * N, N, T, &P, 2);
            TU_CHECK(!memcmp(z1, z2, sizeof(float) * (size_t)(T * H * K)),
                     "transposed heads %s T=%lld: panels and rows differ", dsi_type_name(t), (long long)T);
            free(x), free(y1), free(y2), free(z1), free(z2);
        }
        free(wd);
        free(wp);
    }
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    dsi_cpu_init(getenv("DSI_CPU_DISABLE"));
    dsi_kernels_init();
    test_kernels();
    test_matmul();
    test_matmul_quant();
    test_matmul_multi();
    test_matmul_heads_x16();
    test_rope_attention();
    test_silu();
    return tu_finish("test_ops");
}
