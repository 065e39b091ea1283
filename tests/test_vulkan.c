/* The Vulkan backend against the CPU references, op by op, through the backend interface
 * (core/backend.h) on the first Vulkan device (lavapipe in CI), with the Khronos validation
 * layer when it is installed (zero validation errors required).
 *
 * Bounds, as normalized mean squared error (sum (a - b)^2 / sum b^2):
 *   - float ops (rmsnorm, rope, swiglu, add, gather): 1e-10 — f32 arithmetic in a different
 *     order than the double-accumulating reference, relative errors of a few ulps (~1e-7);
 *   - matmul: 1e-9 — the device multiplies the exactly dequantized weights with the f32
 *     activations (F32, F16, Q4_0, Q8_0, Q4_K, Q5_K and Q6_K have shaders; BF16 widens to
 *     f16 exactly; Q5_0, which has no shader, is rounded to f16 at upload: relative error
 *     <= 2^-11 per weight, so its bound is 2^-22 = 2.4e-7),
 *     so only the f32 sum of K
 *     products differs from the double reference: relative error <= K * 2^-24 per output in
 *     the worst case, ~sqrt(K) * 2^-24 typically (K = 256: NMSE ~ 1e-12);
 *   - attention with an f16 cache: 1e-5 — keys and values rounded to f16 (relative 2^-11
 *     each, NMSE ~ 1e-7) against the f32-cache reference. With an f32 cache: 1e-10.
 * Without a Vulkan device the test is skipped (exit 77), unless DSI_REQUIRE_VULKAN=1. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "quant/kernels.h"
#include "quant/quantize.h"
#include "src/model_impl.h"
#include "src/ops.h"
#include "tests/util.h"
#include "vulkan/vk.h"

static uint64_t rng = 88172645463325252ULL;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}
static void fill(float *x, int64_t n, float s) {
    for (int64_t i = 0; i < n; i++) x[i] = frand() * s;
}

static double nmse(const float *a, const float *b, int64_t n) {
    double e = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        e += d * d;
        r += (double)b[i] * b[i];
    }
    return r > 0 ? e / r : e;
}

#define CHECK_NMSE(got, want, n, bound, ...)                                                       \
    do {                                                                                           \
        double e_ = nmse(got, want, n);                                                            \
        TU_LOG("  %-40s nmse %.3g\n", label, e_);                                                  \
        TU_CHECK(e_ <= (bound) && e_ == e_, __VA_ARGS__);                                          \
        (void)e_;                                                                                  \
    } while (0)

/* The shapes of the test backend. */
enum { E = 256, FF = 512, NH = 4, NKV = 2, HD = 64, NB = 40, NCTX = 64, NV = 300 };

static struct dsi_vk_backend_params bparams(enum dsi_type kv) {
    struct dsi_vk_backend_params p = {.n_batch = NB, .n_ctx = NCTX, .n_seq = 2, .layer0 = 0,
                                      .n_layers = 1, .n_embd = E, .n_ff = FF, .n_vocab = NV,
                                      .n_head = NH, .n_head_kv = NKV, .head_dim = HD,
                                      .head_dim_v = HD, .rope_dims = HD, .kv_type = kv,
                                      .output = true, .batch_invariant = false};
    return p;
}

static void begin1(struct dsi_backend *b, int64_t T) {
    struct dsi_seg s = {0, 0, T, 0};
    int32_t pos[NB];
    for (int64_t t = 0; t < T; t++) pos[t] = (int32_t)t;
    b->ops->begin(b, &s, 1, pos, T, true);
}

/* A weight of type t holding `src` [N][K] (quantized from it). */
static struct dsi_tensor make_weight(enum dsi_type t, const float *src, int64_t K, int64_t N,
                                     void **mem) {
    struct dsi_tensor w = dsi_tensor_make(t, K, N, 1, 1, NULL);
    size_t bytes = dsi_tensor_nbytes(&w);
    uint8_t *d = malloc(bytes);
    for (int64_t r = 0; r < N; r++) {
        void *row = d + (size_t)r * w.nb[1];
        const float *x = src + r * K;
        switch (t) {
        case DSI_TYPE_F32: memcpy(row, x, (size_t)K * 4); break;
        case DSI_TYPE_F16:
            for (int64_t i = 0; i < K; i++) ((uint16_t *)row)[i] = dsi_f32_to_f16(x[i]);
            break;
        case DSI_TYPE_BF16:
            for (int64_t i = 0; i < K; i++) ((uint16_t *)row)[i] = dsi_f32_to_bf16(x[i]);
            break;
        case DSI_TYPE_Q4_0: dsi_quantize_q4_0(x, row, K); break;
        case DSI_TYPE_Q8_0: dsi_quantize_q8_0(x, row, K); break;
        case DSI_TYPE_Q4_K: dsi_quantize_q4_K(x, row, K); break;
        case DSI_TYPE_Q5_K: dsi_quantize_q5_K(x, row, K); break;
        case DSI_TYPE_Q6_K: dsi_quantize_q6_K(x, row, K); break;
        case DSI_TYPE_Q5_0: dsi_quantize_q5_0(x, row, K); break;
        default: abort();
        }
    }
    w.data = d;
    w.name = dsi_type_name(t);
    *mem = d;
    return w;
}

static void test_matmul(struct dsi_vk *vk, struct dsi_backend *b, const char *variant) {
    const enum dsi_type types[] = {DSI_TYPE_F32,  DSI_TYPE_F16,  DSI_TYPE_Q4_0, DSI_TYPE_Q8_0,
                                   DSI_TYPE_Q4_K, DSI_TYPE_Q5_K, DSI_TYPE_Q6_K, DSI_TYPE_BF16,
                                   DSI_TYPE_Q5_0};
    const int64_t Ts[] = {1, 3, 8, 37};
    const int64_t K = E, N = 67; /* N: not a multiple of any tile */
    float *src = malloc(sizeof(float) * K * N), *x = malloc(sizeof(float) * NB * K);
    float *bias = malloc(sizeof(float) * N);
    float *want = malloc(sizeof(float) * NB * N), *got = malloc(sizeof(float) * NB * N);
    fill(src, K * N, 1.0f);
    fill(bias, N, 1.0f);
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        void *mem;
        struct dsi_tensor w = make_weight(types[i], src, K, N, &mem);
        const struct dsi_tensor *tp[1] = {&w};
        const float *vp[1] = {bias};
        int64_t vn[1] = {N};
        struct dsi_vk_group *g;
        enum dsi_status st = dsi_vk_upload(vk, tp, 1, vp, vn, 1, &g);
        TU_CHECK(st == DSI_OK, "upload %s: %s", dsi_type_name(types[i]), dsi_status_str(st));
        for (size_t j = 0; j < sizeof Ts / sizeof *Ts && !st; j++) {
            int64_t T = Ts[j];
            fill(x, T * K, 1.0f);
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                dsi_op_matmul_ref(want, x, T, &w, with_bias ? bias : NULL);
                begin1(b, T);
                b->ops->set(b, DSI_ACT_XN, 0, x, T * K);
                const enum dsi_act y = DSI_ACT_UP;
                const float *bs[1] = {with_bias ? bias : NULL};
                b->ops->matmul(b, 1, &y, DSI_ACT_XN, T, tp, bs);
                memset(got, 0, sizeof(float) * T * N);
                st = b->ops->get(b, DSI_ACT_UP, 0, got, T * N);
                char label[64];
                snprintf(label, sizeof label, "matmul%s %s T=%lld%s", variant,
                         dsi_type_name(types[i]), (long long)T, with_bias ? " +bias" : "");
                TU_CHECK(st == DSI_OK, "%s: %s", label, dsi_status_str(st));
                /* BF16 widens exactly; Q5_0 becomes f16: NMSE <= 2^-22 */
                CHECK_NMSE(got, want, T * N, types[i] == DSI_TYPE_Q5_0 ? 2.4e-7 : 1e-9, "%s", label);
            }
        }
        /* y += x W^T (the residual stream) */
        for (int64_t T = 1; T <= 37 && !st; T += 36) {
            float *y0 = malloc(sizeof(float) * T * N);
            fill(x, T * K, 1.0f);
            fill(y0, T * N, 2.0f);
            dsi_op_matmul_ref(want, x, T, &w, NULL);
            for (int64_t e = 0; e < T * N; e++) want[e] += y0[e];
            begin1(b, T);
            b->ops->set(b, DSI_ACT_XN, 0, x, T * K);
            b->ops->set(b, DSI_ACT_X, 0, y0, T * N);
            b->ops->matmul_add(b, DSI_ACT_X, DSI_ACT_XN, T, &w, NULL);
            st = b->ops->get(b, DSI_ACT_X, 0, got, T * N);
            char label[64];
            snprintf(label, sizeof label, "matmul_add%s %s T=%lld", variant,
                     dsi_type_name(types[i]), (long long)T);
            CHECK_NMSE(got, want, T * N, types[i] == DSI_TYPE_Q5_0 ? 2.4e-7 : 1e-9, "%s", label);
            free(y0);
        }
        free(mem);
    }
    free(src), free(x), free(bias), free(want), free(got);
}

static void test_float_ops(struct dsi_vk *vk, struct dsi_backend *b) {
    const int64_t T = 7;
    char label[64];
    float *x = malloc(sizeof(float) * NB * FF), *u = malloc(sizeof(float) * NB * FF);
    float *want = malloc(sizeof(float) * NB * FF), *got = malloc(sizeof(float) * NB * FF);
    float *w = malloc(sizeof(float) * E);
    fill(w, E, 2.0f);
    {
        const float *vp[1] = {w};
        int64_t vn[1] = {E};
        struct dsi_vk_group *g;
        TU_CHECK(dsi_vk_upload(vk, NULL, 0, vp, vn, 1, &g) == DSI_OK, "upload a norm weight");
    }
    /* rmsnorm, into another buffer and in place */
    for (int inplace = 0; inplace < 2; inplace++) {
        fill(x, T * E, 3.0f);
        dsi_op_rmsnorm_ref(want, x, w, T, E, 1e-6f);
        begin1(b, T);
        b->ops->set(b, DSI_ACT_X, 0, x, T * E);
        b->ops->rmsnorm(b, inplace ? DSI_ACT_X : DSI_ACT_XN, DSI_ACT_X, w, T, E, E, 1e-6f);
        b->ops->get(b, inplace ? DSI_ACT_X : DSI_ACT_XN, 0, got, T * E);
        snprintf(label, sizeof label, "rmsnorm%s", inplace ? " in place" : "");
        CHECK_NMSE(got, want, T * E, 1e-10, "%s", label);
    }
    /* rope, both pairings, at positions of two runs */
    float inv[HD / 2];
    for (int i = 0; i < HD / 2; i++) inv[i] = powf(10000.0f, -2.0f * (float)i / HD);
    for (int mode = 0; mode < 2; mode++) {
        struct dsi_rope r = {mode ? DSI_ROPE_NORM : DSI_ROPE_NEOX, HD, inv, 1.0f};
        struct dsi_seg s[2] = {{0, 0, 4, 10}, {1, 4, 3, 33}};
        int32_t pos[7] = {10, 11, 12, 13, 33, 34, 35};
        fill(x, T * NH * HD, 1.0f);
        memcpy(want, x, sizeof(float) * T * NH * HD);
        dsi_op_rope_ref(want, T, NH, HD, pos, &r);
        b->ops->begin(b, s, 2, pos, T, false);
        b->ops->set(b, DSI_ACT_Q, 0, x, T * NH * HD);
        b->ops->rope(b, DSI_ACT_Q, T, NH, HD, 0, &r);
        b->ops->get(b, DSI_ACT_Q, 0, got, T * NH * HD);
        snprintf(label, sizeof label, "rope %s", mode ? "norm" : "neox");
        CHECK_NMSE(got, want, T * NH * HD, 1e-10, "%s", label);
    }
    /* swiglu, add */
    fill(x, T * FF, 4.0f);
    fill(u, T * FF, 1.0f);
    memcpy(want, x, sizeof(float) * T * FF);
    dsi_op_swiglu(want, u, T * FF, 1);
    begin1(b, T);
    b->ops->set(b, DSI_ACT_GATE, 0, x, T * FF);
    b->ops->set(b, DSI_ACT_UP, 0, u, T * FF);
    b->ops->swiglu(b, DSI_ACT_GATE, DSI_ACT_UP, T * FF);
    b->ops->get(b, DSI_ACT_GATE, 0, got, T * FF);
    snprintf(label, sizeof label, "swiglu");
    CHECK_NMSE(got, want, T * FF, 1e-10, "%s", label);
    fill(x, T * E, 1.0f);
    fill(u, T * E, 1.0f);
    for (int64_t i = 0; i < T * E; i++) want[i] = x[i] + u[i];
    begin1(b, T);
    b->ops->set(b, DSI_ACT_X, 0, x, T * E);
    b->ops->set(b, DSI_ACT_TMP, 0, u, T * E);
    b->ops->add(b, DSI_ACT_X, DSI_ACT_TMP, T * E);
    b->ops->get(b, DSI_ACT_X, 0, got, T * E);
    snprintf(label, sizeof label, "add");
    CHECK_NMSE(got, want, T * E, 1e-12, "%s", label);
    /* gather */
    int64_t rows[3] = {6, 0, 3};
    fill(x, T * E, 1.0f);
    for (int k = 0; k < 3; k++) memcpy(want + k * E, x + rows[k] * E, sizeof(float) * E);
    begin1(b, T);
    b->ops->set(b, DSI_ACT_X, 0, x, T * E);
    b->ops->gather(b, DSI_ACT_TMP, DSI_ACT_X, rows, 3, E);
    b->ops->get(b, DSI_ACT_TMP, 0, got, 3 * E);
    snprintf(label, sizeof label, "gather");
    CHECK_NMSE(got, want, 3 * E, 0, "%s", label);
    free(x), free(u), free(want), free(got), free(w);
}

/* Passes over two sequences against the CPU's cache and reference attention: a prompt of 5 +
 * 3 tokens, then one token each; with `long_ctx`, first a prompt of 720 tokens for sequence
 * 0 in passes of NB, so that the decode pass attends over several splits of the cache. The
 * invariant backend splits every decode pass. */
/* The vision encoders' operators (src/vision/vl2.c) against the CPU's: LayerNorm, GELU,
 * attention of every token to every token, and float matrix products whose rows are not
 * whole 32-element blocks (zero-padded at upload) read from rows that are not 16-byte
 * aligned. */
static void test_vision_ops(struct dsi_vk *vk, struct dsi_backend *b) {
    const int64_t T = NB;
    char label[64];
    float *x = malloc(sizeof(float) * NB * FF), *want = malloc(sizeof(float) * NB * FF);
    float *got = malloc(sizeof(float) * NB * FF), *w = malloc(sizeof(float) * E);
    float *bias = malloc(sizeof(float) * E);
    fill(w, E, 2.0f);
    fill(bias, E, 1.0f);
    {
        const float *vp[2] = {w, bias};
        int64_t vn[2] = {E, E};
        struct dsi_vk_group *g;
        TU_CHECK(dsi_vk_upload(vk, NULL, 0, vp, vn, 2, &g) == DSI_OK, "upload a norm weight and bias");
    }
    fill(x, T * E, 3.0f);
    for (int64_t i = 0; i < T * E; i++) x[i] += 0.5f; /* a mean to remove */
    dsi_op_layernorm(want, x, w, bias, T, E, 1e-6f, 1);
    begin1(b, T);
    b->ops->set(b, DSI_ACT_X, 0, x, T * E);
    b->ops->layernorm(b, DSI_ACT_XN, DSI_ACT_X, w, bias, T, E, 1e-6f);
    b->ops->get(b, DSI_ACT_XN, 0, got, T * E);
    snprintf(label, sizeof label, "layernorm");
    CHECK_NMSE(got, want, T * E, 1e-10, "%s", label);
    fill(x, T * FF, 6.0f);
    memcpy(want, x, sizeof(float) * T * FF);
    dsi_op_gelu_tanh(want, T * FF, 1);
    begin1(b, T);
    b->ops->set(b, DSI_ACT_GATE, 0, x, T * FF);
    b->ops->gelu(b, DSI_ACT_GATE, T * FF);
    b->ops->get(b, DSI_ACT_GATE, 0, got, T * FF);
    snprintf(label, sizeof label, "gelu");
    CHECK_NMSE(got, want, T * FF, 1e-10, "%s", label);
    /* full attention, grouped heads */
    {
        float *q = malloc(sizeof(float) * T * NH * HD), *k = malloc(sizeof(float) * T * NKV * HD);
        float *v = malloc(sizeof(float) * T * NKV * HD);
        fill(q, T * NH * HD, 1.0f);
        fill(k, T * NKV * HD, 1.0f);
        fill(v, T * NKV * HD, 1.0f);
        struct dsi_attn_params ap = {NH, NKV, HD, HD, 0.125f, false};
        struct dsi_matmul_scratch mm = {0};
        TU_CHECK(dsi_op_attention_full(want, q, k, v, T, &ap, 1, &mm) == DSI_OK, "cpu attention");
        free(mm.wbuf), free(mm.xq), free(mm.gemm);
        begin1(b, T);
        b->ops->set(b, DSI_ACT_Q, 0, q, T * NH * HD);
        b->ops->set(b, DSI_ACT_K, 0, k, T * NKV * HD);
        b->ops->set(b, DSI_ACT_V, 0, v, T * NKV * HD);
        b->ops->attention_full(b, DSI_ACT_ATTN, DSI_ACT_Q, DSI_ACT_K, DSI_ACT_V, T, &ap);
        b->ops->get(b, DSI_ACT_ATTN, 0, got, T * NH * HD);
        snprintf(label, sizeof label, "attention, every token to every token");
        CHECK_NMSE(got, want, T * NH * HD, 1e-10, "%s", label);
        free(q), free(k), free(v);
    }
    /* rows of 45 (f32) and 119 (bf16, widened to f16): padded blocks, unaligned inputs */
    static const enum dsi_type types[2] = {DSI_TYPE_F32, DSI_TYPE_BF16};
    static const int64_t Ks[2] = {45, 119};
    for (int i = 0; i < 2; i++) {
        int64_t K = Ks[i], N = 37;
        float *src = malloc(sizeof(float) * K * N);
        fill(src, K * N, 1.0f);
        void *mem;
        struct dsi_tensor W = make_weight(types[i], src, K, N, &mem);
        const struct dsi_tensor *tp[1] = {&W};
        struct dsi_vk_group *g;
        TU_CHECK(dsi_vk_upload(vk, tp, 1, NULL, NULL, 0, &g) == DSI_OK, "upload K=%lld", (long long)K);
        fill(x, T * K, 1.0f);
        dsi_op_matmul_ref(want, x, T, &W, NULL);
        begin1(b, T);
        b->ops->set(b, DSI_ACT_GATE, 0, x, T * K);
        const enum dsi_act y = DSI_ACT_TMP;
        b->ops->matmul(b, 1, &y, DSI_ACT_GATE, T, tp, NULL);
        b->ops->get(b, DSI_ACT_TMP, 0, got, T * N);
        snprintf(label, sizeof label, "matmul %s, rows of %lld", dsi_type_name(types[i]), (long long)K);
        /* bf16 values are exact in f16 here; f32 arithmetic against the double reference */
        CHECK_NMSE(got, want, T * N, 1e-10, "%s", label);
        free(src);
        free(mem);
    }
    free(x), free(want), free(got), free(w), free(bias);
}

static void test_attention(struct dsi_vk *vk, enum dsi_type kv_type, bool invariant, bool long_ctx) {
    struct dsi_vk_backend_params bp = bparams(kv_type);
    const int64_t n_ctx = long_ctx ? 1024 : NCTX;
    bp.n_ctx = n_ctx;
    bp.batch_invariant = invariant;
    struct dsi_backend *b;
    TU_CHECK(dsi_vk_backend_new(vk, &bp, &b) == DSI_OK, "backend");
    if (tu_failures) return;
    const int64_t kw = NKV * HD, qw = NH * HD;
    float *kc = calloc(2 * n_ctx * kw, sizeof(float)), *vc = calloc(2 * n_ctx * kw, sizeof(float));
    struct dsi_kv_view kv[2];
    for (int s = 0; s < 2; s++)
        kv[s] = (struct dsi_kv_view){DSI_TYPE_F32, kc + s * n_ctx * kw, vc + s * n_ctx * kw, kw, kw};
    struct dsi_attn_params ap = {NH, NKV, HD, HD, 0.125f, false};
    float *q = malloc(sizeof(float) * NB * qw), *k = malloc(sizeof(float) * NB * kw);
    float *v = malloc(sizeof(float) * NB * kw), *want = malloc(sizeof(float) * NB * qw);
    float *got = malloc(sizeof(float) * NB * qw);
    struct dsi_seg passes[40][2];
    int np = 0, nseg[40];
    int64_t past0 = 0;
    if (long_ctx)
        for (; past0 < 720; past0 += NB, np++) {
            passes[np][0] = (struct dsi_seg){0, 0, NB, past0};
            nseg[np] = 1;
        }
    passes[np][0] = (struct dsi_seg){0, 0, 5, past0};
    passes[np][1] = (struct dsi_seg){1, 5, 3, 0};
    nseg[np++] = 2;
    passes[np][0] = (struct dsi_seg){1, 0, 1, 3};
    passes[np][1] = (struct dsi_seg){0, 1, 1, past0 + 5};
    nseg[np++] = 2;
    for (int pi = 0; pi < np; pi++) {
        struct dsi_seg *s = passes[pi];
        int64_t T = 0;
        int32_t pos[NB];
        for (int i = 0; i < nseg[pi]; i++) {
            for (int64_t t = 0; t < s[i].n; t++) pos[s[i].t0 + t] = (int32_t)(s[i].pos + t);
            T += s[i].n;
        }
        fill(q, T * qw, 1.0f);
        fill(k, T * kw, 1.0f);
        fill(v, T * kw, 1.0f);
        for (int i = 0; i < nseg[pi]; i++) {
            const struct dsi_kv_view *c = &kv[s[i].seq];
            dsi_op_kv_store(c, k + s[i].t0 * kw, v + s[i].t0 * kw, s[i].pos, s[i].n, 1);
            dsi_op_attention_ref(want + s[i].t0 * qw, q + s[i].t0 * qw, c, s[i].pos, s[i].n, &ap);
        }
        bool prompt = pi < np - 1;
        b->ops->begin(b, s, nseg[pi], pos, T, prompt);
        b->ops->set(b, DSI_ACT_Q, 0, q, T * qw);
        b->ops->set(b, DSI_ACT_K, 0, k, T * kw);
        b->ops->set(b, DSI_ACT_V, 0, v, T * kw);
        b->ops->attention(b, 0, DSI_ACT_ATTN, DSI_ACT_Q, DSI_ACT_K, DSI_ACT_V, &ap);
        enum dsi_status st = b->ops->get(b, DSI_ACT_ATTN, 0, got, T * qw);
        char label[80];
        snprintf(label, sizeof label, "attention %s cache%s%s, pass %d", dsi_type_name(kv_type),
                 invariant ? ", invariant" : "", long_ctx ? ", 720 keys" : "", pi);
        TU_CHECK(st == DSI_OK, "%s: %s", label, dsi_status_str(st));
        if (pi >= np - 3 || !long_ctx)
            CHECK_NMSE(got, want, T * qw, kv_type == DSI_TYPE_F16 ? 1e-5 : 1e-10, "%s", label);
    }
    free(kc), free(vc), free(q), free(k), free(v), free(want), free(got);
    dsi_vk_backend_free(b);
}

/* Per-head products on the host: y row (t, h) (ys wide) = head h's matrix of the stack w
 * (its first `rows` rows) times x row (t, h) (xs wide). */
static void heads_ref(float *y, int64_t ys, const float *x, int64_t xs, int64_t T, int H,
                      const struct dsi_tensor *w, int64_t rows) {
    for (int64_t t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            struct dsi_tensor wh = *w;
            wh.data = (char *)w->data + (size_t)h * w->nb[2];
            wh.ne[1] = rows, wh.ne[2] = 1;
            dsi_op_matmul_ref(y + (t * H + h) * ys, x + (t * H + h) * xs, 1, &wh, NULL);
        }
}

/* Latent attention (deepseek2's absorbed form) op by op against the CPU reference: the
 * strided norm of the latent, rope of a slice of each head, per-head products (decode and
 * tiled shaders, groups of rows that are and are not whole tiles), the head-slice copy and
 * attention with one 576-wide key head whose first 512 elements are the values (the cache
 * holds keys only), split over the cache at decode with a long context. */
static void test_mla(struct dsi_vk *vk, enum dsi_type kv_type, enum dsi_type wtype, bool long_ctx) {
    enum { H = 2, N = 32, P = 64, R = 512, RK = R + P, DQ = N + P, DV = 32 };
    const int64_t n_ctx = long_ctx ? 1024 : NCTX;
    struct dsi_vk_backend_params bp = bparams(kv_type);
    bp.n_ctx = n_ctx;
    bp.n_seq = 1;
    bp.n_head = H, bp.n_head_kv = H, bp.head_dim = DQ, bp.head_dim_v = DV, bp.rope_dims = P;
    bp.q_lora = 64, bp.kv_lora = R;
    struct dsi_backend *b;
    TU_CHECK(dsi_vk_backend_new(vk, &bp, &b) == DSI_OK, "MLA backend");
    if (tu_failures) return;
    float *wkb_src = malloc(sizeof(float) * N * R * H), *wvb_src = malloc(sizeof(float) * R * DV * H);
    fill(wkb_src, N * R * H, 1.0f);
    fill(wvb_src, R * DV * H, 1.0f);
    void *m1, *m2;
    struct dsi_tensor wkb = make_weight(wtype, wkb_src, N, R * H, &m1);
    struct dsi_tensor wvb = make_weight(wtype, wvb_src, R, DV * H, &m2);
    wkb.ne[1] = R, wkb.ne[2] = H, wkb.nb[2] = wkb.nb[1] * R, wkb.nb[3] = wkb.nb[2] * H;
    wvb.ne[1] = DV, wvb.ne[2] = H, wvb.nb[2] = wvb.nb[1] * DV, wvb.nb[3] = wvb.nb[2] * H;
    float *nw = malloc(sizeof(float) * R);
    fill(nw, R, 1.0f);
    const struct dsi_tensor *tp[2] = {&wkb, &wvb};
    const float *vp[1] = {nw};
    int64_t vn[1] = {R};
    struct dsi_vk_group *g;
    TU_CHECK(dsi_vk_upload(vk, tp, 2, vp, vn, 1, &g) == DSI_OK, "upload MLA weights");
    float *kc = calloc((size_t)(n_ctx * RK), sizeof(float));
    struct dsi_kv_view kv = {DSI_TYPE_F32, kc, kc, RK, RK};
    struct dsi_attn_params ap = {H, 1, RK, R, 0.07f, false};
    struct dsi_rope r = {DSI_ROPE_NORM, P, NULL, 1.0f};
    float inv[P / 2];
    for (int i = 0; i < P / 2; i++) inv[i] = powf(10000.0f, -2.0f * (float)i / P);
    r.inv_freq = inv;
    float *q = malloc(sizeof(float) * NB * H * DQ), *kva = malloc(sizeof(float) * NB * RK);
    float *qf = malloc(sizeof(float) * NB * H * RK), *lat = malloc(sizeof(float) * NB * H * R);
    float *o = malloc(sizeof(float) * NB * H * DV), *got = malloc(sizeof(float) * NB * H * RK);
    int64_t lens[24], np = 0, past = 0;
    if (long_ctx)
        for (; np < 18; np++) lens[np] = NB; /* 720 keys */
    lens[np++] = 37, lens[np++] = 1, lens[np++] = 3;
    for (int pi = 0; pi < np && !tu_failures; pi++) {
        int64_t T = lens[pi];
        int32_t pos[NB];
        for (int64_t t = 0; t < T; t++) pos[t] = (int32_t)(past + t);
        struct dsi_seg seg = {0, 0, T, past};
        fill(q, T * H * DQ, 1.0f);
        fill(kva, T * RK, 1.0f);
        b->ops->begin(b, &seg, 1, pos, T, T > 8);
        b->ops->set(b, DSI_ACT_Q, 0, q, T * H * DQ);
        b->ops->set(b, DSI_ACT_KVA, 0, kva, T * RK);
        /* the reference, as src/models/deepseek2.c composes it */
        for (int64_t t = 0; t < T; t++) dsi_op_rmsnorm_ref(kva + t * RK, kva + t * RK, nw, 1, R, 1e-6f);
        dsi_op_rope_ref(q + N, T, H, DQ, pos, &r);
        dsi_op_rope_ref(kva + R, T, 1, RK, pos, &r);
        heads_ref(qf, RK, q, DQ, T, H, &wkb, R);
        for (int64_t t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                memcpy(qf + (t * H + h) * RK + R, q + (t * H + h) * DQ + N, sizeof(float) * P);
        dsi_op_kv_store(&kv, kva, NULL, past, T, 1);
        dsi_op_attention_ref(lat, qf, &kv, past, T, &ap);
        heads_ref(o, DV, lat, R, T, H, &wvb, DV);
        /* the device */
        b->ops->rmsnorm(b, DSI_ACT_KVA, DSI_ACT_KVA, nw, T, R, RK, 1e-6f);
        b->ops->rope(b, DSI_ACT_Q, T, H, DQ, N, &r);
        b->ops->rope(b, DSI_ACT_KVA, T, 1, RK, R, &r);
        b->ops->matmul_heads(b, DSI_ACT_QFULL, RK, DSI_ACT_Q, DQ, 0, T, H, &wkb, false);
        b->ops->copy_heads(b, DSI_ACT_QFULL, RK, R, DSI_ACT_Q, DQ, N, T, H, P);
        char label[96];
        snprintf(label, sizeof label, "mla %s, %s cache, T=%lld at %lld", dsi_type_name(wtype),
                 dsi_type_name(kv_type), (long long)T, (long long)past);
        enum dsi_status st = b->ops->get(b, DSI_ACT_KVA, 0, got, T * RK);
        TU_CHECK(st == DSI_OK, "%s: %s", label, dsi_status_str(st));
        CHECK_NMSE(got, kva, T * RK, 1e-10, "%s: normed, roped latent", label);
        b->ops->get(b, DSI_ACT_QFULL, 0, got, T * H * RK);
        /* quantized weights: the device dequantizes, the reference too: same products */
        CHECK_NMSE(got, qf, T * H * RK, 1e-9, "%s: latent queries", label);
        b->ops->attention(b, 0, DSI_ACT_LAT, DSI_ACT_QFULL, DSI_ACT_KVA, DSI_ACT_KVA, &ap);
        b->ops->get(b, DSI_ACT_LAT, 0, got, T * H * R);
        if (!long_ctx || pi >= np - 3)
            CHECK_NMSE(got, lat, T * H * R, kv_type == DSI_TYPE_F16 ? 1e-5 : 1e-10, "%s: attention", label);
        /* the output products from the reference's latent output (no f16 cache noise) */
        b->ops->set(b, DSI_ACT_LAT, 0, lat, T * H * R);
        b->ops->matmul_heads(b, DSI_ACT_ATTN, DV, DSI_ACT_LAT, R, 0, T, H, &wvb, false);
        b->ops->get(b, DSI_ACT_ATTN, 0, got, T * H * DV);
        CHECK_NMSE(got, o, T * H * DV, 1e-9, "%s: value products", label);
        st = b->ops->end(b);
        TU_CHECK(st == DSI_OK, "%s: %s", label, dsi_status_str(st));
        past += T;
    }
    /* a transposed product (legacy layout) is refused, not miscomputed */
    begin1(b, 1);
    tu_capture_log(true);
    b->ops->matmul_heads(b, DSI_ACT_QFULL, RK, DSI_ACT_Q, DQ, 0, 1, H, &wkb, true);
    enum dsi_status st = b->ops->end(b);
    tu_capture_log(false);
    TU_CHECK(st == DSI_ERR_UNSUPPORTED, "transposed per-head product: %s", dsi_status_str(st));
    dsi_vk_backend_free(b);
    free(m1), free(m2), free(wkb_src), free(wvb_src), free(nw), free(kc);
    free(q), free(kva), free(qf), free(lat), free(o), free(got);
}

/* The routed and shared experts (the backend's moe op) against the reference products: each
 * token's experts chosen at random (host routing: decode and tiled shaders by the experts'
 * token counts, idle experts), or routed on the device from random router logits (gate !=
 * NULL: decode passes; the routing itself is the CPU's dsi_moe_route, softmax or sigmoid,
 * groups, selection bias, renormalized or scaled weights). */
static void test_moe(struct dsi_vk *vk, enum dsi_type wtype, int X, int K,
                     const struct dsi_moe_gate *gate) {
    enum { F = 256, S = 256 }; /* K-quant rows: multiples of 256 */
    struct dsi_vk_backend_params bp = bparams(DSI_TYPE_F16);
    bp.n_expert = X, bp.n_expert_used = K, bp.n_ff_exp = F;
    struct dsi_backend *b;
    TU_CHECK(dsi_vk_backend_new(vk, &bp, &b) == DSI_OK, "MoE backend");
    if (tu_failures) return;
    int64_t dims[6][3] = {{E, F, X}, {E, F, X}, {F, E, X}, {E, S, 1}, {E, S, 1}, {S, E, 1}};
    struct dsi_tensor w[6];
    void *mem[6];
    for (int i = 0; i < 6; i++) {
        int64_t n = dims[i][0] * dims[i][1] * dims[i][2];
        float *src = malloc(sizeof(float) * (size_t)n);
        fill(src, n, 0.2f);
        w[i] = make_weight(wtype, src, dims[i][0], dims[i][1] * dims[i][2], &mem[i]);
        w[i].ne[1] = dims[i][1], w[i].ne[2] = dims[i][2];
        w[i].nb[2] = w[i].nb[1] * (size_t)dims[i][1], w[i].nb[3] = w[i].nb[2] * (size_t)dims[i][2];
        free(src);
    }
    float *sbias = malloc(sizeof(float) * (size_t)X);
    fill(sbias, X, 0.05f);
    struct dsi_moe_gate g = gate ? *gate : (struct dsi_moe_gate){0};
    if (gate && gate->bias) g.bias = sbias;
    const struct dsi_tensor *tp[6] = {&w[0], &w[1], &w[2], &w[3], &w[4], &w[5]};
    const float *vp[1] = {sbias};
    int64_t vn[1] = {X};
    struct dsi_vk_group *grp;
    TU_CHECK(dsi_vk_upload(vk, tp, 6, vp, vn, 1, &grp) == DSI_OK, "upload experts");
    const struct dsi_tensor *exps[3] = {&w[0], &w[1], &w[2]}, *sh[3] = {&w[3], &w[4], &w[5]};
    float *x = malloc(sizeof(float) * NB * E), *xn = malloc(sizeof(float) * NB * E);
    float *want = malloc(sizeof(float) * NB * E), *got = malloc(sizeof(float) * NB * E);
    float *logits = malloc(sizeof(float) * NB * (size_t)X);
    float gt[S], ut[S], dn[E], wt[NB * 16];
    int32_t sel[NB * 16];
    const int64_t Ts[] = {1, 3, 37};
    for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts && !tu_failures; ti++) {
        int64_t T = Ts[ti];
        if (gate && T > 8) break; /* device routing: decode passes */
        fill(x, T * E, 1.0f);
        fill(xn, T * E, 1.0f);
        if (gate) {
            fill(logits, T * X, 2.0f);
            struct dsi_hparams hp = {0};
            hp.n_expert = X, hp.n_expert_used = K, hp.n_group = g.n_group;
            hp.n_group_used = g.n_group_used;
            hp.gating = g.sigmoid ? DSI_GATING_SIGMOID : DSI_GATING_SOFTMAX;
            hp.expert_norm = g.norm, hp.expert_scale = g.scale;
            dsi_moe_route(&hp, logits, g.bias, T, sel, wt);
        } else {
            for (int64_t t = 0; t < T; t++)
                for (int j = 0; j < K; j++) {
                    int e;
                    bool dup;
                    do { /* distinct experts per token; the last expert never chosen */
                        e = (int)((frand() + 1.0f) * 0.5f * (float)(X - 1)) % (X - 1);
                        dup = false;
                        for (int i = 0; i < j; i++) dup |= sel[t * K + i] == e;
                    } while (dup);
                    sel[t * K + j] = e;
                    wt[t * K + j] = 0.5f + 0.5f * frand();
                }
        }
        for (int64_t t = 0; t < T; t++) {
            float *y = want + t * E;
            memcpy(y, x + t * E, sizeof(float) * E);
            for (int j = -1; j < K; j++) { /* the shared experts, then the selections */
                const struct dsi_tensor *const *m = j < 0 ? sh : exps;
                struct dsi_tensor v[3];
                for (int i = 0; i < 3; i++) {
                    v[i] = *m[i];
                    if (j >= 0) v[i].data = (char *)m[i]->data + (size_t)sel[t * K + j] * m[i]->nb[2];
                    v[i].ne[2] = 1;
                }
                dsi_op_matmul_ref(gt, xn + t * E, 1, &v[0], NULL);
                dsi_op_matmul_ref(ut, xn + t * E, 1, &v[1], NULL);
                int64_t n = v[0].ne[1];
                for (int64_t i = 0; i < n; i++) gt[i] = gt[i] / (1.0f + expf(-gt[i])) * ut[i];
                dsi_op_matmul_ref(dn, gt, 1, &v[2], NULL);
                float a = j < 0 ? 1.0f : wt[t * K + j];
                for (int64_t i = 0; i < E; i++) y[i] += a * dn[i];
            }
        }
        b->ops->begin(b, &(struct dsi_seg){0, 0, T, 0}, 1, (int32_t[NB]){0}, T, false);
        b->ops->set(b, DSI_ACT_X, 0, x, T * E);
        b->ops->set(b, DSI_ACT_XN, 0, xn, T * E);
        char label[96];
        snprintf(label, sizeof label, "moe %s, %d of %d, %s T=%lld", dsi_type_name(wtype), K, X,
                 !gate ? "host routing" : g.sigmoid ? "device routing (sigmoid, groups, bias)"
                                        : "device routing (softmax)", (long long)T);
        if (gate) {
            b->ops->set(b, DSI_ACT_ROUTER, 0, logits, T * X);
            bool on = b->ops->moe_gate(b, T, &g, exps);
            TU_CHECK(on, "%s: not routed on the device", label);
            b->ops->moe(b, DSI_ACT_X, DSI_ACT_XN, T, K, NULL, NULL, exps, sh);
        } else {
            b->ops->moe(b, DSI_ACT_X, DSI_ACT_XN, T, K, sel, wt, exps, sh);
        }
        enum dsi_status st = b->ops->get(b, DSI_ACT_X, 0, got, T * E);
        TU_CHECK(st == DSI_OK, "%s: %s", label, dsi_status_str(st));
        /* the device's exp may differ from libm's in the last bits: the weights too */
        CHECK_NMSE(got, want, T * E, gate ? 1e-8 : 1e-9, "%s", label);
    }
    if (!gate) { /* an expert id out of range is refused */
        sel[0] = X;
        begin1(b, 1);
        tu_capture_log(true);
        b->ops->moe(b, DSI_ACT_X, DSI_ACT_XN, 1, K, sel, wt, exps, sh);
        enum dsi_status st = b->ops->end(b);
        tu_capture_log(false);
        TU_CHECK(st == DSI_ERR_ARG, "expert %d of %d: %s", X, X, dsi_status_str(st));
    }
    dsi_vk_backend_free(b);
    for (int i = 0; i < 6; i++) free(mem[i]);
    free(x), free(xn), free(want), free(got), free(logits), free(sbias);
}

/* A budget smaller than the request is refused without allocating. */
static void test_budget(void) {
    struct dsi_vk_params p = dsi_vk_default_params();
    p.budget = 1 << 20;
    struct dsi_vk *vk;
    if (dsi_vk_open(&p, &vk) != DSI_OK) {
        TU_CHECK(0, "open with a 1 MiB budget");
        return;
    }
    struct dsi_vk_backend_params bp = bparams(DSI_TYPE_F16);
    bp.n_ctx = 4096;
    struct dsi_backend *b = NULL;
    tu_capture_log(true);
    enum dsi_status st = dsi_vk_backend_new(vk, &bp, &b);
    tu_capture_log(false);
    TU_CHECK(st == DSI_ERR_DEVICE && !b, "a backend larger than the budget: %s", dsi_status_str(st));
    TU_CHECK(dsi_vk_used(vk) == 0, "%llu bytes left allocated", (unsigned long long)dsi_vk_used(vk));
    TU_CHECK(dsi_vk_backend_bytes(&bp) > p.budget, "the estimate is below the budget");
    /* a cache larger than any storage buffer can be: refused before allocating */
    bp.n_seq = 1 << 14;
    bp.n_ctx = 1 << 16;
    bp.kv_type = DSI_TYPE_F32;
    tu_capture_log(true);
    st = dsi_vk_backend_new(vk, &bp, &b);
    tu_capture_log(false);
    TU_CHECK(st == DSI_ERR_UNSUPPORTED && !b, "a cache beyond the buffer range: %s", dsi_status_str(st));
    TU_CHECK(dsi_vk_used(vk) == 0, "%llu bytes left allocated", (unsigned long long)dsi_vk_used(vk));
    dsi_vk_close(vk);
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    dsi_kernels_init();
    /* every pass in parts of 3 dispatches (vulkan/backend.c): the ring of command buffers
     * comes round many times within one pass, and under the validation layer a buffer reused
     * while in flight is an error */
    setenv("DSI_VK_SPLIT", "3", 0);
    struct dsi_vk_device_info info[8];
    int n = 0;
    if (dsi_vk_list(info, 8, &n) != DSI_OK || n == 0) {
        const char *req = getenv("DSI_REQUIRE_VULKAN");
        printf("test_vulkan: no Vulkan device%s\n", req && *req == '1' ? "" : ", skipped");
        return req && *req == '1' ? 1 : 77;
    }
    struct dsi_vk_params p = dsi_vk_default_params();
    const char *val = getenv("DSI_VK_VALIDATION");
    p.validation = val && *val == '1';
    struct dsi_vk *vk;
    if (dsi_vk_open(&p, &vk) != DSI_OK) {
        TU_CHECK(0, "open the device");
        return tu_finish("test_vulkan");
    }
    TU_LOG("device: %s (%s)%s\n", dsi_vk_info(vk)->name, dsi_vk_info(vk)->driver,
           p.validation ? ", validation on" : "");
    struct dsi_vk_backend_params bp = bparams(DSI_TYPE_F16);
    struct dsi_backend *b;
    if (dsi_vk_backend_new(vk, &bp, &b) != DSI_OK) {
        TU_CHECK(0, "backend");
        dsi_vk_close(vk);
        return tu_finish("test_vulkan");
    }
    test_matmul(vk, b, "");
    test_vision_ops(vk, b);
    {   /* the decode shaders without subgroup operations */
        struct dsi_vk_backend_params np = bp;
        struct dsi_backend *nb;
        np.no_subgroup = true;
        TU_CHECK(dsi_vk_backend_new(vk, &np, &nb) == DSI_OK, "backend without subgroups");
        if (nb) test_matmul(vk, nb, " (no subgroups)");
        dsi_vk_backend_free(nb);
    }
    test_float_ops(vk, b);
    dsi_vk_backend_free(b);
    test_attention(vk, DSI_TYPE_F16, false, false);
    test_attention(vk, DSI_TYPE_F32, false, false);
    test_attention(vk, DSI_TYPE_F16, true, false);  /* decode split in one chunk */
    test_attention(vk, DSI_TYPE_F32, false, true);  /* decode split over 3 chunks */
    test_attention(vk, DSI_TYPE_F16, true, true);
    test_mla(vk, DSI_TYPE_F32, DSI_TYPE_F32, false);
    test_mla(vk, DSI_TYPE_F16, DSI_TYPE_Q8_0, false);
    test_mla(vk, DSI_TYPE_F32, DSI_TYPE_Q4_0, true); /* decode split over 3 chunks */
    test_moe(vk, DSI_TYPE_F32, 8, 3, NULL);
    test_moe(vk, DSI_TYPE_Q4_0, 8, 3, NULL);
    test_moe(vk, DSI_TYPE_Q6_K, 8, 3, NULL);
    {   /* V2-Lite's routing (softmax, greedy), and V3's (sigmoid, groups, selection bias) */
        struct dsi_moe_gate soft = {16, 6, 1, 1, false, false, 1.0f, NULL};
        struct dsi_moe_gate sigm = {32, 8, 8, 4, true, true, 2.5f, (const float *)1};
        test_moe(vk, DSI_TYPE_Q4_0, 16, 6, &soft);
        test_moe(vk, DSI_TYPE_Q8_0, 32, 8, &sigm);
    }
    TU_CHECK(dsi_vk_validation_errors(vk) == 0, "%d validation errors", dsi_vk_validation_errors(vk));
    dsi_vk_close(vk);
    test_budget();
    return tu_finish("test_vulkan");
}
