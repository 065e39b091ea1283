/* DeepSeek-VL2 vision tower, projector and image-token weaving (see vl2.h; models.md C.4-C.6).
 *
 * Per view of 384x384: a 14x14 patch convolution as one matrix product over the 729 patches,
 * plus learned positions; pre-LayerNorm transformer blocks with bidirectional multi-head
 * attention (scores and weighted sums as matrix products per head, so that BLAS or our
 * kernels carry them) and a GELU(tanh) MLP; a final LayerNorm. The projector concatenates
 * 2x2 neighbourhoods (zero-padded to an even grid) channel-major and runs Linear-GELU-Linear. */
#include "src/vision/vl2.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/tensor.h"
#include "quant/kernels.h"
#include "src/model_impl.h"
#include "src/ops.h"
#include "src/vision/image.h"

struct vl2_block {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    struct dsi_tensor qkv, out, up, down;
    struct dsi_tensor wq, wk, wv; /* the q, k, v rows of qkv */
    const float *qkv_b, *out_b, *up_b, *down_b;
};

/* The tower on a Vulkan device (dsi_vl2_offload): its weights there and one backend,
 * used by one picture at a time. */
struct vl2_gpu {
    pthread_mutex_t lock;
    struct dsi_backend *be; /* NULL after a device failure: the CPU */
};

/* Recent pictures and their image tokens (dsi_vl2_remember / dsi_vl2_recall): API clients
 * send a conversation's pictures again with every turn. Matched by content (a full copy of
 * the pixels is compared, so one user's picture never answers for another's). */
#define MEMO_ENTRIES 8
struct vl2_memo {
    pthread_mutex_t lock;
    struct {
        int w, h;
        bool tiled;
        uint8_t *rgb;
        int64_t n_tokens;
        float *embd;
        uint64_t used; /* clock of the last use, 0: empty */
    } e[MEMO_ENTRIES];
    uint64_t clock;
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
    struct vl2_gpu *gpu;
    struct vl2_memo *memo;
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
    if (v->memo) {
        for (int i = 0; i < MEMO_ENTRIES; i++) free(v->memo->e[i].rgb), free(v->memo->e[i].embd);
        pthread_mutex_destroy(&v->memo->lock);
        free(v->memo);
    }
    if (v->gpu) {
        dsi_vk_backend_free(v->gpu->be);
        pthread_mutex_destroy(&v->gpu->lock);
        free(v->gpu);
    }
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
        if (b->qkv.data) {
            size_t rows = dsi_row_size(b->qkv.type, W) * (size_t)W;
            b->wq = b->wk = b->wv = b->qkv;
            b->wq.ne[1] = b->wk.ne[1] = b->wv.ne[1] = W;
            b->wk.data = (char *)b->qkv.data + rows;
            b->wv.data = (char *)b->qkv.data + 2 * rows;
        }
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
    if (!L.st && (v->memo = calloc(1, sizeof *v->memo))) pthread_mutex_init(&v->memo->lock, NULL);
    else if (!L.st) L.st = DSI_ERR_NOMEM;
    if (L.st) {
        dsi_vl2_free(v);
        return L.st;
    }
    *out = v;
    return DSI_OK;
}

static bool memo_match(const struct vl2_memo *m, int i, int w, int h, bool tiled, const uint8_t *rgb) {
    return m->e[i].used && m->e[i].w == w && m->e[i].h == h && m->e[i].tiled == tiled &&
           !memcmp(m->e[i].rgb, rgb, (size_t)w * (size_t)h * 3);
}

int64_t dsi_vl2_recall(const struct dsi_vl2 *v, int w, int h, const uint8_t *rgb, bool tiled,
                       float **embd) {
    struct vl2_memo *m = v->memo;
    int64_t n = 0;
    *embd = NULL;
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < MEMO_ENTRIES && !n; i++)
        if (memo_match(m, i, w, h, tiled, rgb)) {
            size_t bytes = (size_t)(m->e[i].n_tokens * v->n_embd) * sizeof(float);
            if ((*embd = malloc(bytes))) {
                memcpy(*embd, m->e[i].embd, bytes);
                n = m->e[i].n_tokens;
                m->e[i].used = ++m->clock;
            }
        }
    pthread_mutex_unlock(&m->lock);
    return n;
}

void dsi_vl2_remember(const struct dsi_vl2 *v, int w, int h, const uint8_t *rgb, bool tiled,
                      const float *embd, int64_t n_tokens) {
    struct vl2_memo *m = v->memo;
    size_t px = (size_t)w * (size_t)h * 3, bytes = (size_t)(n_tokens * v->n_embd) * sizeof(float);
    uint8_t *c = malloc(px);
    float *e = malloc(bytes);
    if (!c || !e) {
        free(c), free(e);
        return;
    }
    memcpy(c, rgb, px);
    memcpy(e, embd, bytes);
    pthread_mutex_lock(&m->lock);
    int slot = 0; /* an entry with these pixels, else the least recently used */
    for (int i = 0; i < MEMO_ENTRIES; i++) {
        if (memo_match(m, i, w, h, tiled, rgb)) {
            slot = i;
            break;
        }
        if (m->e[i].used < m->e[slot].used) slot = i;
    }
    free(m->e[slot].rgb), free(m->e[slot].embd);
    m->e[slot].w = w, m->e[slot].h = h, m->e[slot].tiled = tiled;
    m->e[slot].rgb = c, m->e[slot].embd = e, m->e[slot].n_tokens = n_tokens;
    m->e[slot].used = ++m->clock;
    pthread_mutex_unlock(&m->lock);
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

/* ---- the tower, on a backend (core/backend.h) -------------------------------------------
 * Buffers: X residual, XN normed, TMP, Q, K, V, ATTN [T][width]; GATE [T][max(n_ff, 3P^2)]
 * holds the patches, then the MLP's hidden layer. The same code runs on the CPU backend (own
 * buffers) and on a Vulkan backend made for the tower (dsi_vl2_offload). */

static int64_t gate_width(const struct dsi_vl2 *v) {
    int64_t in = 3 * (int64_t)v->patch * v->patch;
    return v->n_ff > in ? v->n_ff : in;
}

static enum dsi_status run_tower(const struct dsi_vl2 *v, struct dsi_backend *be,
                                 const uint8_t *view, float *feat, float *patches, int32_t *pos) {
    const struct dsi_backend_ops *B = be->ops;
    int64_t G = v->grid, P = v->patch, S = v->size, T = G * G, W = v->width, K = 3 * P * P;
    /* patches in the convolution's (channel, ky, kx) order; pixels normalized to [-1, 1] */
    for (int64_t p = 0; p < T; p++) {
        int64_t r = p / G, c = p % G;
        float *o = patches + p * K;
        for (int64_t ch = 0; ch < 3; ch++)
            for (int64_t ky = 0; ky < P; ky++)
                for (int64_t kx = 0; kx < P; kx++) {
                    o[(ch * P + ky) * P + kx] = dsi_vl2_pixel(view[((r * P + ky) * S + c * P + kx) * 3 + ch]);
                }
        pos[p] = (int32_t)p;
    }
    struct dsi_seg seg = {0, 0, T, 0};
    struct dsi_attn_params ap = {v->n_head, v->n_head, (int)(W / v->n_head), (int)(W / v->n_head),
                                 1.0f / sqrtf((float)(W / v->n_head)), false};
    const enum dsi_act X = DSI_ACT_X, XN = DSI_ACT_XN, TMP = DSI_ACT_TMP, GATE = DSI_ACT_GATE;
    const enum dsi_act qkv[3] = {DSI_ACT_Q, DSI_ACT_K, DSI_ACT_V};
    B->begin(be, &seg, 1, pos, T, true);
    B->set(be, GATE, 0, patches, T * K);
    const struct dsi_tensor *pw = &v->patch_w;
    B->matmul(be, 1, &X, GATE, T, &pw, &v->patch_b);
    B->set(be, TMP, 0, v->pos, T * W);
    B->add(be, X, TMP, T * W);
    for (int i = 0; i < v->n_layer; i++) {
        const struct vl2_block *b = &v->blk[i];
        /* x += proj(attention(LayerNorm(x))), every patch attending to every patch */
        B->layernorm(be, XN, X, b->ln1_w, b->ln1_b, T, W, v->eps);
        const struct dsi_tensor *w3[3] = {&b->wq, &b->wk, &b->wv};
        const float *b3[3] = {b->qkv_b, b->qkv_b + W, b->qkv_b + 2 * W};
        B->matmul(be, 3, qkv, XN, T, w3, b3);
        B->attention_full(be, DSI_ACT_ATTN, DSI_ACT_Q, DSI_ACT_K, DSI_ACT_V, T, &ap);
        const struct dsi_tensor *wu = &b->up;
        B->matmul_add(be, X, DSI_ACT_ATTN, T, &b->out, b->out_b);
        /* x += fc2(gelu_tanh(fc1(LayerNorm(x)))) */
        B->layernorm(be, XN, X, b->ln2_w, b->ln2_b, T, W, v->eps);
        B->matmul(be, 1, &GATE, XN, T, &wu, &b->up_b);
        B->gelu(be, GATE, T * v->n_ff);
        B->matmul_add(be, X, GATE, T, &b->down, b->down_b);
    }
    B->layernorm(be, XN, X, v->post_w, v->post_b, T, W, v->eps);
    enum dsi_status st = B->get(be, XN, 0, feat, T * W), st2 = B->end(be);
    return st ? st : st2;
}

/* BLAS takes the float matrix products when the scratch has room for a widened weight block
 * per thread (src/ops.h): sized for the longest row. */
static void blas_scratch(struct dsi_matmul_scratch *mm, int64_t K, int n_threads) {
    if (!dsi_op_have_blas()) return;
    mm->wbuf_floats = (size_t)n_threads * DSI_BLAS_BLOCK * (size_t)K;
    mm->wbuf = malloc(mm->wbuf_floats * sizeof(float));
    if (!mm->wbuf) mm->wbuf_floats = 0; /* then the slower path */
}

static void scratch_free(struct dsi_matmul_scratch *mm) {
    free(mm->wbuf);
    free(mm->xq);
    free(mm->gemm);
}

/* The tower on the CPU backend over buffers of its own. */
static enum dsi_status tower_cpu(const struct dsi_vl2 *v, const uint8_t *view, float *feat,
                                 float *patches, int32_t *pos, int n_threads) {
    int64_t T = (int64_t)v->grid * v->grid, W = v->width, F = gate_width(v);
    float *mem = malloc((size_t)(T * (7 * W + F)) * sizeof(float));
    struct dsi_matmul_scratch mm = {0};
    int64_t K = F > T ? F : T;
    if (!mem) {
        DSI_LOG_ERR("vision: out of memory for the tower's activations");
        return DSI_ERR_NOMEM;
    }
    blas_scratch(&mm, K > W ? K : W, n_threads);
    float *buf[DSI_ACT_COUNT] = {0};
    for (int a = DSI_ACT_X; a <= DSI_ACT_ATTN; a++) buf[a] = mem + (size_t)(a - DSI_ACT_X) * (size_t)(T * W);
    buf[DSI_ACT_GATE] = mem + (size_t)(7 * T * W);
    struct dsi_backend_cpu be;
    dsi_backend_cpu_init_host(&be, buf, n_threads, &mm);
    enum dsi_status st = run_tower(v, &be.base, view, feat, patches, pos);
    scratch_free(&mm);
    free(mem);
    return st;
}

/* n_threads <= 0: every core, as contexts do. */
static int threads(int n) {
    long c = n > 0 ? n : sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

enum dsi_status dsi_vl2_vision(const struct dsi_vl2 *v, const uint8_t *view, float *feat,
                               int n_threads) {
    n_threads = threads(n_threads);
    int64_t T = (int64_t)v->grid * v->grid;
    float *patches = malloc((size_t)(T * 3 * v->patch * v->patch) * sizeof *patches);
    int32_t *pos = malloc((size_t)T * sizeof *pos);
    enum dsi_status st = patches && pos ? DSI_OK : DSI_ERR_NOMEM;
    bool done = false;
    struct vl2_gpu *g = v->gpu;
    if (!st && g) {
        /* one tower backend per model: pictures from several threads take turns */
        pthread_mutex_lock(&g->lock);
        if (g->be) {
            st = run_tower(v, g->be, view, feat, patches, pos);
            done = st == DSI_OK;
            if (st == DSI_ERR_DEVICE) {
                DSI_LOG_WRN("vision: the GPU failed (above); the vision tower continues on the CPU");
                dsi_vk_backend_free(g->be);
                g->be = NULL;
                st = DSI_OK;
            }
        }
        pthread_mutex_unlock(&g->lock);
    }
    if (!st && !done) st = tower_cpu(v, view, feat, patches, pos, n_threads);
    if (st == DSI_ERR_NOMEM) DSI_LOG_ERR("vision: out of memory");
    free(patches);
    free(pos);
    return st;
}

/* ---- projector and weaving ------------------------------------------------------------- */

static void gelu_erf(float *x, int64_t n, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

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
    blas_scratch(&mm, K, n_threads);
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

/* ---- offload ----------------------------------------------------------------------------- */

enum dsi_status dsi_vl2_offload(struct dsi_vl2 *v, struct dsi_vk *vk) {
    int64_t T = (int64_t)v->grid * v->grid, W = v->width;
    uint64_t used0 = dsi_vk_used(vk);
    enum dsi_status st = DSI_OK;
    struct dsi_vk_group *grp;
    {
        const struct dsi_tensor *t[1] = {&v->patch_w};
        const float *vec[3] = {v->patch_b, v->post_w, v->post_b};
        int64_t vn[3] = {W, W, W};
        st = dsi_vk_upload(vk, t, 1, vec, vn, 3, &grp);
    }
    for (int i = 0; i < v->n_layer && !st; i++) {
        const struct vl2_block *b = &v->blk[i];
        const struct dsi_tensor *t[6] = {&b->wq, &b->wk, &b->wv, &b->out, &b->up, &b->down};
        const float *vec[10] = {b->ln1_w, b->ln1_b, b->ln2_w, b->ln2_b, b->qkv_b, b->qkv_b + W,
                                b->qkv_b + 2 * W, b->out_b, b->up_b, b->down_b};
        int64_t vn[10] = {W, W, W, W, W, W, W, W, v->n_ff, W};
        st = dsi_vk_upload(vk, t, 6, vec, vn, 10, &grp);
    }
    struct dsi_vk_backend_params bp = {
        .n_batch = T, .n_ctx = T, .n_seq = 1, .layer0 = 0, .n_layers = 0, .n_embd = W,
        .n_ff = gate_width(v), .n_vocab = 0, .n_head = v->n_head, .n_head_kv = v->n_head,
        .head_dim = (int)(W / v->n_head), .head_dim_v = (int)(W / v->n_head), .rope_dims = 0,
        .kv_type = DSI_TYPE_F32, .output = false};
    struct vl2_gpu *g = st ? NULL : calloc(1, sizeof *g);
    if (!st && !g) st = DSI_ERR_NOMEM;
    if (!st) st = dsi_vk_backend_new(vk, &bp, &g->be);
    if (st) {
        /* the uploaded groups stay until the device closes (they are in the budget) */
        DSI_LOG_WRN("vision: the tower does not fit on %s (%.0f MiB of weights and activations); "
                    "it runs on the CPU", dsi_vk_info(vk)->name,
                    (double)(dsi_vk_used(vk) - used0) / 1048576.0);
        free(g);
        return st;
    }
    pthread_mutex_init(&g->lock, NULL);
    v->gpu = g;
    dsi_log(DSI_LOG_INFO, "vision: the tower on %s: %.0f MiB", dsi_vk_info(vk)->name,
            (double)(dsi_vk_used(vk) - used0) / 1048576.0);
    return DSI_OK;
}

bool dsi_vl2_on_gpu(const struct dsi_vl2 *v) { return v && v->gpu; }

const struct dsi_vl2 *dsi_model_vl2(const struct dsi_model *m) { return m->vl2; }
