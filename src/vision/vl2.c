/* DeepSeek-VL2 vision tower, projector and image-token weaving (see vl2.h; models.md C.4-C.6).
 *
 * Per view of 384x384: a 14x14 patch convolution as one matrix product over the 729 patches,
 * plus learned positions; pre-LayerNorm transformer blocks with bidirectional multi-head
 * attention (scores and weighted sums as matrix products per head, so that BLAS or our
 * kernels carry them) and a GELU(tanh) MLP; a final LayerNorm. The projector concatenates
 * 2x2 neighbourhoods (zero-padded to an even grid) channel-major and runs Linear-GELU-Linear. */
#include "src/vision/vl2.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tensor.h"
#include "quant/kernels.h"
#include "src/model_impl.h"
#include "src/ops.h"

struct vl2_block {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    struct dsi_tensor qkv, out, up, down;
    const float *qkv_b, *out_b, *up_b, *down_b;
};

struct dsi_vl2 {
    int size, patch, grid, width, n_layer, n_head, n_ff, ds, tokens;
    int64_t n_embd;
    float eps;
    struct dsi_tensor patch_w; /* [3*patch*patch] -> width, f32 */
    const float *patch_b, *pos; /* [width], [grid*grid][width] */
    struct vl2_block *blk;
    const float *post_w, *post_b;
    struct dsi_tensor mm0, mm2;
    const float *mm0_b, *mm2_b, *newline, *sep;
    int32_t *cand;
    int n_cand;
    uint64_t n_params, n_bytes;
    float **owned;
    int n_owned;
};

/* ---- loading --------------------------------------------------------------------------- */

struct vload {
    const struct dsi_gguf *g;
    struct dsi_vl2 *v;
    enum dsi_status st;
};

static const struct dsi_gguf_tensor *find(struct vload *L, const char *name, int64_t ne0,
                                          int64_t ne1) {
    if (L->st) return NULL;
    const struct dsi_gguf_tensor *t = dsi_gguf_find_tensor(L->g, name);
    if (!t) {
        DSI_LOG_ERR("vision: tensor '%s' is missing", name);
        L->st = DSI_ERR_FORMAT;
        return NULL;
    }
    /* rows of ne0 elements: ne0 is the product of the leading dimensions (the patch
     * embedding is stored as the convolution's [P, P, 3, W]) */
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3], lead = 1;
    for (int d = 0; d < 4 && lead < ne0; d++) lead *= t->ne[d];
    if (lead != ne0 || n != ne0 * ne1) {
        DSI_LOG_ERR("vision: tensor '%s' has %lld x %lld elements, expected %lld x %lld", name,
                    (long long)t->ne[0], (long long)(n / (t->ne[0] ? t->ne[0] : 1)),
                    (long long)ne0, (long long)ne1);
        L->st = DSI_ERR_FORMAT;
        return NULL;
    }
    const struct dsi_type_kernels *k = dsi_kernels(t->type);
    if (!k || !k->to_f32 || !(k->dot_f32 || k->dot_q8)) {
        DSI_LOG_ERR("vision: tensor '%s' has type %s, which dsinfer cannot compute with", name,
                    dsi_type_name(t->type));
        L->st = DSI_ERR_UNSUPPORTED;
        return NULL;
    }
    L->v->n_params += (uint64_t)n;
    L->v->n_bytes += t->nbytes;
    return t;
}

/* A matrix of ne1 rows of ne0. */
static struct dsi_tensor mat(struct vload *L, const char *name, int64_t ne0, int64_t ne1) {
    const struct dsi_gguf_tensor *t = find(L, name, ne0, ne1);
    struct dsi_tensor r = {0};
    if (!t) return r;
    r = dsi_tensor_make(t->type, ne0, ne1, 1, 1, (void *)t->data);
    r.name = t->name;
    return r;
}

/* A vector (or small table) of n floats: the file's data when f32, else a widened copy. */
static const float *vec(struct vload *L, const char *name, int64_t ne0, int64_t ne1) {
    const struct dsi_gguf_tensor *t = find(L, name, ne0, ne1);
    if (!t) return NULL;
    if (t->type == DSI_TYPE_F32) return t->data;
    struct dsi_vl2 *v = L->v;
    float *p = malloc((size_t)(ne0 * ne1) * sizeof *p);
    float **o = realloc(v->owned, (size_t)(v->n_owned + 1) * sizeof *o);
    if (o) v->owned = o;
    if (!p || !o) {
        free(p);
        L->st = DSI_ERR_NOMEM;
        return NULL;
    }
    v->owned[v->n_owned++] = p;
    dsi_kernels(t->type)->to_f32(t->data, p, ne0 * ne1);
    return p;
}

static int64_t key_u32(struct vload *L, const char *key, int64_t lo, int64_t hi) {
    uint32_t x = 0;
    if (L->st) return lo;
    if (dsi_gguf_get_u32(L->g, key, &x) != DSI_OK || x < lo || x > hi) {
        DSI_LOG_ERR("vision: key '%s' is missing or outside [%lld, %lld]", key, (long long)lo,
                    (long long)hi);
        L->st = DSI_ERR_FORMAT;
        return lo;
    }
    return x;
}

void dsi_vl2_free(struct dsi_vl2 *v) {
    if (!v) return;
    for (int i = 0; i < v->n_owned; i++) free(v->owned[i]);
    free(v->owned);
    free(v->blk);
    free(v->cand);
    free(v);
}

static void load_candidates(struct vload *L) {
    struct dsi_vl2 *v = L->v;
    struct dsi_gguf_arr a;
    if (L->st) return;
    if (dsi_gguf_get_arr(L->g, "deepseekvl2.candidate_resolutions", &a) != DSI_OK || a.count < 2 ||
        a.count % 2 || a.count > 2 * 256) {
        DSI_LOG_ERR("vision: key 'deepseekvl2.candidate_resolutions' is missing or not a list of "
                    "(w, h) pairs");
        L->st = DSI_ERR_FORMAT;
        return;
    }
    v->cand = malloc((size_t)a.count * sizeof *v->cand);
    if (!v->cand) {
        L->st = DSI_ERR_NOMEM;
        return;
    }
    v->n_cand = (int)(a.count / 2);
    for (uint64_t i = 0; i < a.count; i++) {
        int64_t x = dsi_gguf_arr_i64(&a, i);
        if (x < v->size || x > 16 * v->size || x % v->size) {
            DSI_LOG_ERR("vision: candidate resolution %lld is not a multiple of %d up to %d",
                        (long long)x, v->size, 16 * v->size);
            L->st = DSI_ERR_FORMAT;
            return;
        }
        v->cand[i] = (int32_t)x;
    }
}

enum dsi_status dsi_vl2_load(const struct dsi_gguf *g, int64_t n_embd, struct dsi_vl2 **out) {
    *out = NULL;
    bool has = false;
    if (dsi_gguf_get_bool(g, "clip.has_vision_encoder", &has) != DSI_OK || !has) return DSI_OK;
    struct dsi_gguf_str pt;
    if (dsi_gguf_get_str(g, "clip.projector_type", &pt) != DSI_OK || pt.len != 11 ||
        memcmp(pt.ptr, "deepseekvl2", 11)) {
        DSI_LOG_ERR("vision: clip.projector_type is not 'deepseekvl2' (the only vision model "
                    "dsinfer runs)");
        return DSI_ERR_UNSUPPORTED;
    }
    struct dsi_vl2 *v = calloc(1, sizeof *v);
    if (!v) return DSI_ERR_NOMEM;
    struct vload L = {g, v, DSI_OK};
    v->size = (int)key_u32(&L, "clip.vision.image_size", 14, 4096);
    v->patch = (int)key_u32(&L, "clip.vision.patch_size", 1, v->size);
    v->width = (int)key_u32(&L, "clip.vision.embedding_length", 1, 1 << 16);
    v->n_ff = (int)key_u32(&L, "clip.vision.feed_forward_length", 1, 1 << 18);
    v->n_layer = (int)key_u32(&L, "clip.vision.block_count", 1, 1000);
    v->n_head = (int)key_u32(&L, "clip.vision.attention.head_count", 1, v->width);
    v->ds = (int)key_u32(&L, "clip.vision.projector.scale_factor", 1, 8);
    int64_t pd = key_u32(&L, "clip.vision.projection_dim", 1, 1 << 20);
    v->eps = 1e-6f;
    dsi_gguf_get_f32(g, "clip.vision.attention.layer_norm_epsilon", &v->eps);
    if (!L.st && (v->width % v->n_head || pd != n_embd || !(v->eps > 0))) {
        DSI_LOG_ERR("vision: width %d is not a multiple of %d heads, projection size %lld is not "
                    "the language model's %lld, or epsilon is invalid", v->width, v->n_head,
                    (long long)pd, (long long)n_embd);
        L.st = DSI_ERR_FORMAT;
    }
    v->grid = v->size / v->patch;
    v->tokens = (v->grid + v->ds - 1) / v->ds;
    v->n_embd = n_embd;
    load_candidates(&L);
    int64_t W = v->width, P = v->patch, G = v->grid, D = n_embd;
    v->patch_w = mat(&L, "v.patch_embd.weight", 3 * P * P, W);
    v->patch_b = vec(&L, "v.patch_embd.bias", W, 1);
    v->pos = vec(&L, "v.position_embd.weight", W, G * G);
    v->post_w = vec(&L, "v.post_ln.weight", W, 1);
    v->post_b = vec(&L, "v.post_ln.bias", W, 1);
    v->mm0 = mat(&L, "mm.0.weight", W * v->ds * v->ds, D);
    v->mm0_b = vec(&L, "mm.0.bias", D, 1);
    v->mm2 = mat(&L, "mm.2.weight", D, D);
    v->mm2_b = vec(&L, "mm.2.bias", D, 1);
    v->newline = vec(&L, "v.image_newline", D, 1);
    v->sep = vec(&L, "v.view_seperator", D, 1);
    if (!L.st && !(v->blk = calloc((size_t)v->n_layer, sizeof *v->blk))) L.st = DSI_ERR_NOMEM;
    char n[96];
    for (int i = 0; i < v->n_layer && !L.st; i++) {
        struct vl2_block *b = &v->blk[i];
#define NAME(s) (snprintf(n, sizeof n, "v.blk.%d." s, i), n)
        b->ln1_w = vec(&L, NAME("ln1.weight"), W, 1);
        b->ln1_b = vec(&L, NAME("ln1.bias"), W, 1);
        b->qkv = mat(&L, NAME("attn_qkv.weight"), W, 3 * W);
        b->qkv_b = vec(&L, NAME("attn_qkv.bias"), 3 * W, 1);
        b->out = mat(&L, NAME("attn_out.weight"), W, W);
        b->out_b = vec(&L, NAME("attn_out.bias"), W, 1);
        b->ln2_w = vec(&L, NAME("ln2.weight"), W, 1);
        b->ln2_b = vec(&L, NAME("ln2.bias"), W, 1);
        b->up = mat(&L, NAME("ffn_up.weight"), W, v->n_ff);
        b->up_b = vec(&L, NAME("ffn_up.bias"), v->n_ff, 1);
        b->down = mat(&L, NAME("ffn_down.weight"), v->n_ff, W);
        b->down_b = vec(&L, NAME("ffn_down.bias"), W, 1);
#undef NAME
    }
    if (L.st) {
        dsi_vl2_free(v);
        return L.st;
    }
    *out = v;
    return DSI_OK;
}

struct dsi_vl2_info dsi_vl2_get_info(const struct dsi_vl2 *v) {
    struct dsi_vl2_info i = {v->size, v->grid, v->width, v->tokens, v->n_embd,
                             v->cand, v->n_cand, v->n_params, v->n_bytes};
    return i;
}

int64_t dsi_vl2_n_tokens(const struct dsi_vl2 *v, int nw, int nh) {
    int64_t t = v->tokens;
    return t * (t + 1) + 1 + t * nh * (t * nw + 1);
}

/* ---- the tower ------------------------------------------------------------------------- */

/* y = LayerNorm(x) * w + b per row of n (biased variance), T rows. */
static void layernorm(float *y, const float *x, const float *w, const float *b, int64_t T,
                      int64_t n, float eps, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t t = 0; t < T; t++) {
        const float *r = x + t * n;
        float *o = y + t * n;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; i++) mean += r[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) var += (r[i] - mean) * (r[i] - mean);
        float inv = (float)(1.0 / sqrt(var / (double)n + eps)), mu = (float)mean;
        for (int64_t i = 0; i < n; i++) o[i] = (r[i] - mu) * inv * w[i] + b[i];
    }
}

/* e^x for x <= 88 in straight-line float arithmetic that vectorizes (libm's expf does
 * not): 2^n * p(r) with n = rint(x / ln 2), r = x - n ln 2 in two parts, p the degree-6
 * Taylor polynomial (relative error < 2e-7 on |r| <= ln2/2); e^x underflows to 0 below -87. */
static inline float exp_vec(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    /* round to nearest by the 1.5 * 2^23 trick (roundf is a libm call without SSE4.1) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f - n * 1.42860682030941723212e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
                                                                           r * (1.0f / 720))))));
    union {
        int32_t i;
        float f;
    } u = {((int32_t)n + 127) << 23};
    return p * u.f;
}

static void gelu_tanh(float *x, int64_t n, int n_threads) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    /* tanh(u) = 1 - 2 / (e^(2u) + 1): the error is absolute (~1e-7), and gelu multiplies it
     * by z / 2 */
#pragma omp parallel for simd num_threads(n_threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float z = x[i], u = c * (z + 0.044715f * z * z * z);
        x[i] = 0.5f * z * (2.0f - 2.0f / (exp_vec(2.0f * u) + 1.0f));
    }
}

static void gelu_erf(float *x, int64_t n, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

/* Softmax of each row of n (T rows), scaled by s first. */
static void softmax_rows(float *x, int64_t T, int64_t n, float s, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t t = 0; t < T; t++) {
        float *r = x + t * n, mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < n; i++) mx = r[i] * s > mx ? r[i] * s : mx;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < n; i++) sum += r[i] = exp_vec(r[i] * s - mx);
        float inv = 1.0f / sum;
        for (int64_t i = 0; i < n; i++) r[i] *= inv;
    }
}

struct work {
    float *x, *a, *qkv, *big, *att, *qh, *kh, *vt, *oh;
    struct dsi_matmul_scratch mm;
};

/* x += attention(LayerNorm(x)): every patch attends to every patch, head by head. */
static void attention(const struct dsi_vl2 *v, const struct vl2_block *b, struct work *w,
                      int64_t T, int n_threads) {
    int64_t W = v->width, H = v->n_head, hd = W / H;
    layernorm(w->a, w->x, b->ln1_w, b->ln1_b, T, W, v->eps, n_threads);
    dsi_op_matmul(w->qkv, w->a, T, &b->qkv, b->qkv_b, n_threads, &w->mm);
    for (int64_t h = 0; h < H; h++) {
        /* q, k as [T][hd]; v transposed to [hd][T] so that both products are x * W^T */
        for (int64_t t = 0; t < T; t++) {
            const float *r = w->qkv + t * 3 * W + h * hd;
            memcpy(w->qh + t * hd, r, (size_t)hd * sizeof(float));
            memcpy(w->kh + t * hd, r + W, (size_t)hd * sizeof(float));
            for (int64_t d = 0; d < hd; d++) w->vt[d * T + t] = r[2 * W + d];
        }
        struct dsi_tensor K = dsi_tensor_make(DSI_TYPE_F32, hd, T, 1, 1, w->kh);
        struct dsi_tensor Vt = dsi_tensor_make(DSI_TYPE_F32, T, hd, 1, 1, w->vt);
        dsi_op_matmul(w->big, w->qh, T, &K, NULL, n_threads, &w->mm);
        softmax_rows(w->big, T, T, 1.0f / sqrtf((float)hd), n_threads);
        dsi_op_matmul(w->oh, w->big, T, &Vt, NULL, n_threads, &w->mm);
        for (int64_t t = 0; t < T; t++)
            memcpy(w->att + t * W + h * hd, w->oh + t * hd, (size_t)hd * sizeof(float));
    }
    dsi_op_matmul(w->a, w->att, T, &b->out, b->out_b, n_threads, &w->mm);
    dsi_op_add(w->x, w->a, T * W, n_threads);
}

/* x += fc2(gelu_tanh(fc1(LayerNorm(x)))). */
static void mlp(const struct dsi_vl2 *v, const struct vl2_block *b, struct work *w, int64_t T,
                int n_threads) {
    int64_t W = v->width;
    layernorm(w->a, w->x, b->ln2_w, b->ln2_b, T, W, v->eps, n_threads);
    dsi_op_matmul(w->big, w->a, T, &b->up, b->up_b, n_threads, &w->mm);
    gelu_tanh(w->big, T * v->n_ff, n_threads);
    dsi_op_matmul(w->a, w->big, T, &b->down, b->down_b, n_threads, &w->mm);
    dsi_op_add(w->x, w->a, T * W, n_threads);
}

static void work_free(struct work *w) {
    free(w->x);
    free(w->a);
    free(w->qkv);
    free(w->big);
    free(w->att);
    free(w->qh);
    free(w->kh);
    free(w->vt);
    free(w->oh);
    free(w->mm.wbuf);
    free(w->mm.xq);
    free(w->mm.gemm);
}

/* BLAS takes the float matrix products when the scratch has room for a widened weight block
 * per thread (src/ops.h): sized for the longest row, K = max(width, n_ff, 729 patches,
 * 3*14*14, the projector's 4*width). */
static bool blas_scratch(struct dsi_matmul_scratch *mm, int64_t K, int n_threads) {
    if (!dsi_op_have_blas()) return true;
    mm->wbuf_floats = (size_t)n_threads * DSI_BLAS_BLOCK * (size_t)K;
    mm->wbuf = malloc(mm->wbuf_floats * sizeof(float));
    return mm->wbuf != NULL;
}

static bool work_alloc(const struct dsi_vl2 *v, struct work *w, int n_threads) {
    int64_t T = (int64_t)v->grid * v->grid, W = v->width, hd = W / v->n_head;
    int64_t big = T > v->n_ff ? T : v->n_ff, in = 3 * (int64_t)v->patch * v->patch;
    memset(w, 0, sizeof *w);
    int64_t K = big > W ? big : W;
    if (!blas_scratch(&w->mm, K > in ? K : in, n_threads)) return false;
    w->x = malloc((size_t)(T * W) * sizeof(float));
    w->a = malloc((size_t)(T * (W > in ? W : in)) * sizeof(float));
    w->qkv = malloc((size_t)(T * 3 * W) * sizeof(float));
    w->big = malloc((size_t)(T * big) * sizeof(float));
    w->att = malloc((size_t)(T * W) * sizeof(float));
    w->qh = malloc((size_t)(T * hd) * sizeof(float));
    w->kh = malloc((size_t)(T * hd) * sizeof(float));
    w->vt = malloc((size_t)(T * hd) * sizeof(float));
    w->oh = malloc((size_t)(T * hd) * sizeof(float));
    if (w->x && w->a && w->qkv && w->big && w->att && w->qh && w->kh && w->vt && w->oh) return true;
    work_free(w);
    return false;
}

/* n_threads <= 0: every core, as contexts do. */
static int threads(int n) {
    long c = n > 0 ? n : sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

enum dsi_status dsi_vl2_vision(const struct dsi_vl2 *v, const uint8_t *view, float *feat,
                               int n_threads) {
    n_threads = threads(n_threads);
    struct work w;
    if (!work_alloc(v, &w, n_threads)) {
        DSI_LOG_ERR("vision: out of memory for the tower's activations");
        return DSI_ERR_NOMEM;
    }
    int64_t G = v->grid, P = v->patch, S = v->size, T = G * G, W = v->width, K = 3 * P * P;
    /* patches in the convolution's (channel, ky, kx) order; pixels normalized to [-1, 1] */
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t p = 0; p < T; p++) {
        int64_t r = p / G, c = p % G;
        float *o = w.a + p * K;
        for (int64_t ch = 0; ch < 3; ch++)
            for (int64_t ky = 0; ky < P; ky++)
                for (int64_t kx = 0; kx < P; kx++) {
                    uint8_t px = view[((r * P + ky) * S + c * P + kx) * 3 + ch];
                    o[(ch * P + ky) * P + kx] = ((float)px / 255.0f - 0.5f) / 0.5f;
                }
    }
    dsi_op_matmul(w.x, w.a, T, &v->patch_w, v->patch_b, n_threads, &w.mm);
    dsi_op_add(w.x, v->pos, T * W, n_threads);
    for (int i = 0; i < v->n_layer; i++) {
        attention(v, &v->blk[i], &w, T, n_threads);
        mlp(v, &v->blk[i], &w, T, n_threads);
    }
    layernorm(feat, w.x, v->post_w, v->post_b, T, W, v->eps, n_threads);
    work_free(&w);
    return DSI_OK;
}

/* ---- projector and weaving ------------------------------------------------------------- */

enum dsi_status dsi_vl2_project(const struct dsi_vl2 *v, const float *feat, float *out,
                                int n_threads) {
    n_threads = threads(n_threads);
    int64_t G = v->grid, W = v->width, ds = v->ds, g = v->tokens, n = g * g, D = v->n_embd;
    int64_t K = W * ds * ds;
    float *z = malloc((size_t)(n * K) * sizeof *z), *h = malloc((size_t)(n * D) * sizeof *h);
    if (!z || !h) {
        free(z);
        free(h);
        DSI_LOG_ERR("vision: out of memory in the projector");
        return DSI_ERR_NOMEM;
    }
    /* z[i*g + j][c*ds*ds + di*ds + dj] = grid[ds*i + di][ds*j + dj][c], zero past the grid */
    for (int64_t i = 0; i < g; i++)
        for (int64_t j = 0; j < g; j++) {
            float *o = z + (i * g + j) * K;
            for (int64_t di = 0; di < ds; di++)
                for (int64_t dj = 0; dj < ds; dj++) {
                    int64_t r = ds * i + di, c = ds * j + dj;
                    const float *src = r < G && c < G ? feat + (r * G + c) * W : NULL;
                    for (int64_t ch = 0; ch < W; ch++)
                        o[ch * ds * ds + di * ds + dj] = src ? src[ch] : 0.0f;
                }
        }
    struct dsi_matmul_scratch mm = {0};
    if (!blas_scratch(&mm, K, n_threads)) mm.wbuf_floats = 0; /* then the slower path */
    dsi_op_matmul(h, z, n, &v->mm0, v->mm0_b, n_threads, &mm);
    gelu_erf(h, n * D, n_threads);
    dsi_op_matmul(out, h, n, &v->mm2, v->mm2_b, n_threads, &mm);
    free(mm.wbuf);
    free(mm.xq);
    free(mm.gemm);
    free(z);
    free(h);
    return DSI_OK;
}

void dsi_vl2_weave(const struct dsi_vl2 *v, const float *proj, int nw, int nh, float *out) {
    int64_t g = v->tokens, D = v->n_embd, per = g * g;
    size_t row = (size_t)D * sizeof(float);
#define PUT(src) (memcpy(out, (src), row), out += D)
    for (int64_t r = 0; r < g; r++) {
        for (int64_t c = 0; c < g; c++) PUT(proj + (r * g + c) * D);
        PUT(v->newline);
    }
    PUT(v->sep);
    for (int64_t R = 0; R < g * nh; R++) {
        for (int64_t C = 0; C < g * nw; C++) {
            int64_t tile = (R / g) * nw + C / g;
            PUT(proj + ((1 + tile) * per + (R % g) * g + C % g) * D);
        }
        PUT(v->newline);
    }
#undef PUT
}

enum dsi_status dsi_vl2_encode(const struct dsi_vl2 *v, const uint8_t *views, int nw, int nh,
                               float *out, int n_threads) {
    if (nw < 1 || nh < 1 || nw * nh > 64) return DSI_ERR_ARG;
    int64_t nv = 1 + (int64_t)nw * nh, G = v->grid, per = (int64_t)v->tokens * v->tokens;
    size_t vbytes = (size_t)v->size * (size_t)v->size * 3;
    float *feat = malloc((size_t)(G * G * v->width) * sizeof *feat);
    float *proj = malloc((size_t)(nv * per * v->n_embd) * sizeof *proj);
    enum dsi_status st = feat && proj ? DSI_OK : DSI_ERR_NOMEM;
    if (st) DSI_LOG_ERR("vision: out of memory for %lld views", (long long)nv);
    for (int64_t i = 0; i < nv && !st; i++) {
        st = dsi_vl2_vision(v, views + (size_t)i * vbytes, feat, n_threads);
        if (!st) st = dsi_vl2_project(v, feat, proj + i * per * v->n_embd, n_threads);
    }
    if (!st) dsi_vl2_weave(v, proj, nw, nh, out);
    free(feat);
    free(proj);
    return st;
}

const struct dsi_vl2 *dsi_model_vl2(const struct dsi_model *m) { return m->vl2; }
