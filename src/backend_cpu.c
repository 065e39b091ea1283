/* The CPU backend (core/backend.h): host buffers (a context's scratch, or a vision encoder's
 * own), operators from src/ops.c; rope and cached attention read the context's positions,
 * runs and KV cache. */
#include "src/model_impl.h"

static struct dsi_backend_cpu *cpu_of(struct dsi_backend *b) { return (struct dsi_backend_cpu *)b; }

static struct dsi_context *ctx_of(struct dsi_backend *b) {
    struct dsi_context *c = cpu_of(b)->c;
    DSI_ASSERT(c);
    return c;
}

static float *cpu_host(struct dsi_backend *b, enum dsi_act a) {
    struct dsi_backend_cpu *cb = cpu_of(b);
    float *p = a == DSI_ACT_OUT && cb->c ? cb->c->out : a < DSI_ACT_COUNT ? cb->buf[a] : NULL;
    if (!p) DSI_ABORT("cpu backend: no buffer %d", (int)a);
    return p;
}

static void cpu_begin(struct dsi_backend *b, const struct dsi_seg *segs, int n_segs,
                      const int32_t *pos, int64_t T, bool prompt) {
    (void)segs, (void)n_segs, (void)pos, (void)T, (void)prompt;
    cpu_of(b)->err = DSI_OK;
}

static enum dsi_status cpu_end(struct dsi_backend *b) { return cpu_of(b)->err; }

static void cpu_set(struct dsi_backend *b, enum dsi_act a, int64_t off, const float *src, int64_t n) {
    float *d = cpu_host(b, a) + off;
    if (d != src) memmove(d, src, (size_t)n * sizeof(float));
}

static enum dsi_status cpu_get(struct dsi_backend *b, enum dsi_act a, int64_t off, float *dst,
                               int64_t n) {
    const float *s = cpu_host(b, a) + off;
    if (s != dst) memmove(dst, s, (size_t)n * sizeof(float));
    return cpu_of(b)->err;
}

static void cpu_rmsnorm(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, const float *w,
                        int64_t T, int64_t n, int64_t ld, float eps) {
    float *yp = cpu_host(b, y), *xp = cpu_host(b, x);
    if (ld == n) {
        dsi_op_rmsnorm(yp, xp, w, T, n, eps, cpu_of(b)->n_threads);
        return;
    }
    for (int64_t t = 0; t < T; t++) dsi_op_rmsnorm(yp + t * ld, xp + t * ld, w, 1, n, eps, 1);
}

static void cpu_matmul(struct dsi_backend *b, int nm, const enum dsi_act *y, enum dsi_act x,
                       int64_t T, const struct dsi_tensor *const *W, const float *const *bias) {
    struct dsi_backend_cpu *cb = cpu_of(b);
    float *yp[DSI_MATMUL_MAX];
    const float *none[DSI_MATMUL_MAX] = {NULL};
    DSI_ASSERT(nm >= 1 && nm <= DSI_MATMUL_MAX);
    for (int i = 0; i < nm; i++) yp[i] = cpu_host(b, y[i]);
    if (!bias) bias = none;
    if (nm == 1)
        dsi_op_matmul(yp[0], cpu_host(b, x), T, W[0], bias[0], cb->n_threads, cb->mm);
    else
        dsi_op_matmul_multi(nm, yp, cpu_host(b, x), T, W, bias, cb->n_threads, cb->mm);
}

static void cpu_matmul_add(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, int64_t T,
                           const struct dsi_tensor *W, const float *bias) {
    struct dsi_backend_cpu *cb = cpu_of(b);
    float *tmp = cpu_host(b, DSI_ACT_TMP);
    dsi_op_matmul(tmp, cpu_host(b, x), T, W, bias, cb->n_threads, cb->mm);
    dsi_op_add(cpu_host(b, y), tmp, T * W->ne[1], cb->n_threads);
}

static void cpu_rope(struct dsi_backend *b, enum dsi_act x, int64_t T, int n_head, int head_dim,
                     int dim0, const struct dsi_rope *r) {
    struct dsi_context *c = ctx_of(b);
    dsi_op_rope(cpu_host(b, x) + dim0, T, n_head, head_dim, c->s.pos, r, c->p.n_threads);
}

static void cpu_attention(struct dsi_backend *b, int il, enum dsi_act out, enum dsi_act q,
                          enum dsi_act k, enum dsi_act v, const struct dsi_attn_params *p) {
    struct dsi_context *c = ctx_of(b);
    int nt = c->p.n_threads;
    int64_t qw = (int64_t)p->n_head * p->head_dim, kw = (int64_t)p->n_head_kv * p->head_dim;
    int64_t vw = (int64_t)p->n_head_kv * p->head_dim_v, ow = (int64_t)p->n_head * p->head_dim_v;
    float *qp = cpu_host(b, q), *kp = cpu_host(b, k), *op = cpu_host(b, out);
    float *vp = v == k ? NULL : cpu_host(b, v); /* latent attention: values within the keys */
    struct dsi_attn_seg *as = c->att_segs;
    for (int i = 0; i < c->n_segs; i++) {
        const struct dsi_seg *g = &c->segs[i];
        struct dsi_kv_view *kv = dsi_ctx_kv(c, g->seq, il);
        dsi_op_kv_store(kv, kp + g->t0 * kw, vp ? vp + g->t0 * vw : NULL, g->pos, g->n, nt);
        as[i] = (struct dsi_attn_seg){op + g->t0 * ow, qp + g->t0 * qw, kv, g->pos, g->n};
    }
    dsi_op_attention_segs(as, c->n_segs, p, nt, c->s.att_scratch, c->p.n_ctx);
}

static void cpu_swiglu(struct dsi_backend *b, enum dsi_act g, enum dsi_act u, int64_t n) {
    dsi_op_swiglu(cpu_host(b, g), cpu_host(b, u), n, cpu_of(b)->n_threads);
}

static void cpu_add(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, int64_t n) {
    dsi_op_add(cpu_host(b, y), cpu_host(b, x), n, cpu_of(b)->n_threads);
}

static void cpu_gather(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, const int64_t *rows,
                       int64_t n, int64_t width) {
    float *yp = cpu_host(b, y);
    const float *xp = cpu_host(b, x);
    for (int64_t k = 0; k < n; k++)
        memcpy(yp + k * width, xp + rows[k] * width, (size_t)width * sizeof(float));
}

static void cpu_matmul_heads(struct dsi_backend *b, enum dsi_act y, int64_t ys, enum dsi_act x,
                             int64_t xs, int64_t xo, int64_t T, int n_head,
                             const struct dsi_tensor *W, bool transposed) {
    struct dsi_backend_cpu *cb = cpu_of(b);
    float *yp = cpu_host(b, y);
    const float *xp = cpu_host(b, x) + xo;
    if (transposed)
        dsi_op_matmul_heads_t(yp, n_head * ys, ys, xp, n_head * xs, xs, T, W, cb->n_threads);
    else
        dsi_op_matmul_heads(yp, n_head * ys, ys, xp, n_head * xs, xs, T, W, cb->n_threads, cb->mm);
}

static void cpu_copy_heads(struct dsi_backend *b, enum dsi_act y, int64_t ys, int64_t yo,
                           enum dsi_act x, int64_t xs, int64_t xo, int64_t T, int n_head, int64_t n) {
    float *yp = cpu_host(b, y);
    const float *xp = cpu_host(b, x);
    for (int64_t r = 0; r < T * n_head; r++)
        memcpy(yp + r * ys + yo, xp + r * xs + xo, (size_t)n * sizeof(float));
}

static void cpu_moe(struct dsi_backend *b, enum dsi_act x, enum dsi_act xn, int64_t T, int k,
                    const int32_t *sel, const float *w, const struct dsi_tensor *const exps[3],
                    const struct dsi_tensor *const sh[3]) {
    struct dsi_context *c = ctx_of(b);
    DSI_ASSERT(k == c->m->hp.n_expert_used);
    dsi_moe_cpu(c, cpu_host(b, x), cpu_host(b, xn), T, sel, w, exps, sh);
}

static void cpu_layernorm(struct dsi_backend *b, enum dsi_act y, enum dsi_act x, const float *w,
                          const float *bias, int64_t T, int64_t n, float eps) {
    dsi_op_layernorm(cpu_host(b, y), cpu_host(b, x), w, bias, T, n, eps, cpu_of(b)->n_threads);
}

static void cpu_gelu(struct dsi_backend *b, enum dsi_act x, int64_t n) {
    dsi_op_gelu_tanh(cpu_host(b, x), n, cpu_of(b)->n_threads);
}

static void cpu_attention_full(struct dsi_backend *b, enum dsi_act out, enum dsi_act q,
                               enum dsi_act k, enum dsi_act v, int64_t T,
                               const struct dsi_attn_params *p) {
    struct dsi_backend_cpu *cb = cpu_of(b);
    enum dsi_status st = dsi_op_attention_full(cpu_host(b, out), cpu_host(b, q), cpu_host(b, k),
                                               cpu_host(b, v), T, p, cb->n_threads, cb->mm);
    if (st && !cb->err) {
        DSI_LOG_ERR("cpu backend: out of memory for the attention scores of %lld tokens",
                    (long long)T);
        cb->err = st;
    }
}

static const struct dsi_backend_ops cpu_ops = {
    "cpu", cpu_begin, cpu_end, cpu_host, cpu_set, cpu_get, cpu_rmsnorm, cpu_matmul, cpu_matmul_add, cpu_rope,
    cpu_attention, cpu_swiglu, cpu_add, cpu_gather, cpu_matmul_heads, cpu_copy_heads, cpu_moe,
    NULL, cpu_layernorm, cpu_gelu, cpu_attention_full,
};

void dsi_backend_cpu_init(struct dsi_backend_cpu *b, struct dsi_context *c) {
    struct dsi_scratch *s = &c->s;
    float *buf[DSI_ACT_COUNT] = {s->x,    s->xn,  s->tmp, s->q,  s->k,   s->v,     s->attn,
                                 s->gate, s->up,  s->qa,  s->kva, s->qfull, s->lat, s->router,
                                 NULL};
    dsi_backend_cpu_init_host(b, buf, c->p.n_threads, &c->s.mm);
    b->base.max_out = c->p.n_batch;
    b->c = c;
}

void dsi_backend_cpu_init_host(struct dsi_backend_cpu *b, float *const buf[DSI_ACT_COUNT],
                               int n_threads, struct dsi_matmul_scratch *mm) {
    memset(b, 0, sizeof *b);
    b->base.ops = &cpu_ops;
    memcpy(b->buf, buf, sizeof b->buf);
    b->n_threads = n_threads;
    b->mm = mm;
}
