/* The CPU backend (core/backend.h): the context's scratch buffers and KV cache in host
 * memory, operators from src/ops.c on the context's threads. */
#include "src/model_impl.h"

static struct dsi_context *ctx_of(struct dsi_backend *b) {
    return ((struct dsi_backend_cpu *)b)->c;
}

static float *cpu_host(struct dsi_backend *b, enum dsi_act a) {
    struct dsi_context *c = ctx_of(b);
    struct dsi_scratch *s = &c->s;
    switch (a) {
    case DSI_ACT_X: return s->x;
    case DSI_ACT_XN: return s->xn;
    case DSI_ACT_TMP: return s->tmp;
    case DSI_ACT_Q: return s->q;
    case DSI_ACT_K: return s->k;
    case DSI_ACT_V: return s->v;
    case DSI_ACT_ATTN: return s->attn;
    case DSI_ACT_GATE: return s->gate;
    case DSI_ACT_UP: return s->up;
    case DSI_ACT_OUT: return c->out;
    case DSI_ACT_COUNT: break;
    }
    DSI_ABORT("cpu backend: no buffer %d", (int)a);
}

static void cpu_begin(struct dsi_backend *b, const struct dsi_seg *segs, int n_segs,
                      const int32_t *pos, int64_t T, bool prompt) {
    (void)b, (void)segs, (void)n_segs, (void)pos, (void)T, (void)prompt;
}

static enum dsi_status cpu_end(struct dsi_backend *b) {
    (void)b;
    return DSI_OK;
}

static void cpu_set(struct dsi_backend *b, enum dsi_act a, int64_t off, const float *src, int64_t n) {
    float *d = cpu_host(b, a) + off;
    if (d != src) memmove(d, src, (size_t)n * sizeof(float));
}

static enum dsi_status cpu_get(struct dsi_backend *b, enum dsi_act a, int64_t off, float *dst,
                               int64_t n) {
    const float *s = cpu_host(b, a) + off;
    if (s != dst) memmove(dst, s, (size_t)n * sizeof(float));
    return DSI_OK;
}

static void cpu_rmsnorm(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, const float *w,
                        int64_t T, int64_t n, float eps) {
    struct dsi_context *c = ctx_of(b);
    dsi_op_rmsnorm(cpu_host(b, y), cpu_host(b, x), w, T, n, eps, c->p.n_threads);
}

static void cpu_matmul(struct dsi_backend *b, int nm, const enum dsi_act *y, enum dsi_act x,
                       int64_t T, const struct dsi_tensor *const *W, const float *const *bias) {
    struct dsi_context *c = ctx_of(b);
    float *yp[DSI_MATMUL_MAX];
    const float *none[DSI_MATMUL_MAX] = {NULL};
    DSI_ASSERT(nm >= 1 && nm <= DSI_MATMUL_MAX);
    for (int i = 0; i < nm; i++) yp[i] = cpu_host(b, y[i]);
    if (!bias) bias = none;
    if (nm == 1)
        dsi_op_matmul(yp[0], cpu_host(b, x), T, W[0], bias[0], c->p.n_threads, &c->s.mm);
    else
        dsi_op_matmul_multi(nm, yp, cpu_host(b, x), T, W, bias, c->p.n_threads, &c->s.mm);
}

static void cpu_matmul_add(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, int64_t T,
                           const struct dsi_tensor *W) {
    struct dsi_context *c = ctx_of(b);
    float *tmp = cpu_host(b, DSI_ACT_TMP);
    dsi_op_matmul(tmp, cpu_host(b, x), T, W, NULL, c->p.n_threads, &c->s.mm);
    dsi_op_add(cpu_host(b, y), tmp, T * W->ne[1], c->p.n_threads);
}

static void cpu_rope(struct dsi_backend *b, enum dsi_act x, int64_t T, int n_head, int head_dim,
                     const struct dsi_rope *r) {
    struct dsi_context *c = ctx_of(b);
    dsi_op_rope(cpu_host(b, x), T, n_head, head_dim, c->s.pos, r, c->p.n_threads);
}

static void cpu_attention(struct dsi_backend *b, int il, enum dsi_act out, enum dsi_act q,
                          enum dsi_act k, enum dsi_act v, const struct dsi_attn_params *p) {
    struct dsi_context *c = ctx_of(b);
    int nt = c->p.n_threads;
    int64_t qw = (int64_t)p->n_head * p->head_dim, kw = (int64_t)p->n_head_kv * p->head_dim;
    int64_t vw = (int64_t)p->n_head_kv * p->head_dim_v, ow = (int64_t)p->n_head * p->head_dim_v;
    float *qp = cpu_host(b, q), *kp = cpu_host(b, k), *vp = cpu_host(b, v), *op = cpu_host(b, out);
    struct dsi_attn_seg *as = c->att_segs;
    for (int i = 0; i < c->n_segs; i++) {
        const struct dsi_seg *g = &c->segs[i];
        struct dsi_kv_view *kv = dsi_ctx_kv(c, g->seq, il);
        dsi_op_kv_store(kv, kp + g->t0 * kw, vp + g->t0 * vw, g->pos, g->n, nt);
        as[i] = (struct dsi_attn_seg){op + g->t0 * ow, qp + g->t0 * qw, kv, g->pos, g->n};
    }
    dsi_op_attention_segs(as, c->n_segs, p, nt, c->s.att_scratch, c->p.n_ctx);
}

static void cpu_swiglu(struct dsi_backend *b, enum dsi_act g, enum dsi_act u, int64_t n) {
    dsi_op_swiglu(cpu_host(b, g), cpu_host(b, u), n, ctx_of(b)->p.n_threads);
}

static void cpu_add(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, int64_t n) {
    dsi_op_add(cpu_host(b, y), cpu_host(b, x), n, ctx_of(b)->p.n_threads);
}

static void cpu_gather(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, const int64_t *rows,
                       int64_t n, int64_t width) {
    float *yp = cpu_host(b, y);
    const float *xp = cpu_host(b, x);
    for (int64_t k = 0; k < n; k++)
        memcpy(yp + k * width, xp + rows[k] * width, (size_t)width * sizeof(float));
}

static const struct dsi_backend_ops cpu_ops = {
    "cpu", cpu_begin, cpu_end, cpu_host, cpu_set, cpu_get, cpu_rmsnorm, cpu_matmul, cpu_matmul_add, cpu_rope,
    cpu_attention, cpu_swiglu, cpu_add, cpu_gather,
};

void dsi_backend_cpu_init(struct dsi_backend_cpu *b, struct dsi_context *c) {
    b->base.ops = &cpu_ops;
    b->base.max_out = c->p.n_batch;
    b->c = c;
}
