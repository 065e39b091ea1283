/* Building blocks shared by the decoder architectures (models.md section 0): embedding,
 * grouped-query attention with rotary embedding and KV cache, SwiGLU feed-forward, final norm
 * and output head. The dense blocks run on any backend (core/backend.h); the residual stream
 * is that backend's DSI_ACT_X [T][n_embd]. */
#include <math.h>
#include <string.h>

#include "src/model_impl.h"

void dsi_block_embed(struct dsi_context *c, const int32_t *tokens, int64_t T) {
    dsi_op_get_rows(c->s.x, &c->m->tok_embd, tokens, T);
    if (c->s.has_embd) {
        size_t row = (size_t)c->m->hp.n_embd * sizeof(float);
        for (int64_t t = 0; t < T; t++)
            if (c->s.embd[t]) memcpy(c->s.x + (size_t)t * (size_t)c->m->hp.n_embd, c->s.embd[t], row);
    }
    dsi_block_layer_done(c, &c->cpu.base, -1, T);
}

static void block_positions(struct dsi_context *c) {
    for (int i = 0; i < c->n_segs; i++) {
        const struct dsi_seg *g = &c->segs[i];
        for (int64_t t = 0; t < g->n; t++) c->s.pos[g->t0 + t] = (int32_t)(g->pos + t);
    }
}

void dsi_block_begin(struct dsi_context *c, int64_t T) {
    block_positions(c);
    c->cpu.base.ops->begin(&c->cpu.base, c->segs, c->n_segs, c->s.pos, T, c->pass_prompt);
    if (c->gpu) c->gpu->ops->begin(c->gpu, c->segs, c->n_segs, c->s.pos, T, c->pass_prompt);
}

/* x += Wo * attention(rope(Wq xn + bq), rope(Wk xn + bk), Wv xn + bv), xn = rmsnorm(x); each
 * run of the pass stores into and attends to its own sequence's cache. */
void dsi_block_attn_gqa(struct dsi_context *c, struct dsi_backend *be, const struct dsi_layer *l,
                        int il, int64_t T) {
    const struct dsi_hparams *hp = &c->m->hp;
    const struct dsi_backend_ops *B = be->ops;
    B->rmsnorm(be, DSI_ACT_XN, DSI_ACT_X, l->attn_norm, T, hp->n_embd, hp->n_embd, hp->eps);
    {
        const enum dsi_act y[3] = {DSI_ACT_Q, DSI_ACT_K, DSI_ACT_V};
        const struct dsi_tensor *W[3] = {&l->wq, &l->wk, &l->wv};
        const float *b[3] = {l->bq, l->bk, l->bv};
        B->matmul(be, 3, y, DSI_ACT_XN, T, W, b);
    }
    struct dsi_rope r = {hp->rope_mode, hp->rope_dims, c->m->rope_inv_freq, 1.0f};
    B->rope(be, DSI_ACT_Q, T, hp->n_head, hp->head_dim, 0, &r);
    B->rope(be, DSI_ACT_K, T, hp->n_head_kv, hp->head_dim, 0, &r);
    struct dsi_attn_params ap = {hp->n_head, hp->n_head_kv, hp->head_dim, hp->head_dim_v,
                                 1.0f / sqrtf((float)hp->head_dim), c->p.batch_invariant};
    B->attention(be, il, DSI_ACT_ATTN, DSI_ACT_Q, DSI_ACT_K, DSI_ACT_V, &ap);
    B->matmul_add(be, DSI_ACT_X, DSI_ACT_ATTN, T, &l->wo, NULL);
}

/* x += W_down (silu(W_gate xn) * W_up xn), xn = rmsnorm(x). */
void dsi_block_ffn_swiglu(struct dsi_context *c, struct dsi_backend *be, const struct dsi_layer *l,
                          int64_t T) {
    const struct dsi_hparams *hp = &c->m->hp;
    const struct dsi_backend_ops *B = be->ops;
    B->rmsnorm(be, DSI_ACT_XN, DSI_ACT_X, l->ffn_norm, T, hp->n_embd, hp->n_embd, hp->eps);
    {
        const enum dsi_act y[2] = {DSI_ACT_GATE, DSI_ACT_UP};
        const struct dsi_tensor *W[2] = {&l->w_gate, &l->w_up};
        B->matmul(be, 2, y, DSI_ACT_XN, T, W, NULL);
    }
    B->swiglu(be, DSI_ACT_GATE, DSI_ACT_UP, T * hp->n_ff);
    B->matmul_add(be, DSI_ACT_X, DSI_ACT_GATE, T, &l->w_down, NULL);
}

/* Final norm, then the output head for the rows the pass wants (gathered in TMP), at most
 * be->max_out rows at a time; the logits land in c->out. */
void dsi_block_output(struct dsi_context *c, struct dsi_backend *be, int64_t T) {
    const struct dsi_hparams *hp = &c->m->hp;
    struct dsi_scratch *s = &c->s;
    int64_t E = hp->n_embd, V = hp->n_vocab;
    if (c->layer_cb) {
        /* the callback sees the normed stream of every token: on the CPU */
        struct dsi_backend *cpu = &c->cpu.base;
        if (dsi_backend_move(be, cpu, DSI_ACT_X, 0, T * E)) return;
        be = cpu;
        dsi_op_rmsnorm(s->xn, s->x, c->m->out_norm, T, E, hp->eps, c->p.n_threads);
        c->layer_cb(c->layer_user, (int)hp->n_layer, s->xn, T, E);
    }
    const struct dsi_backend_ops *B = be->ops;
    const enum dsi_act out = DSI_ACT_OUT;
    const struct dsi_tensor *W = &c->m->output;
    for (int64_t k0 = 0; k0 < c->n_out; k0 += be->max_out) {
        int64_t n = c->n_out - k0 < be->max_out ? c->n_out - k0 : be->max_out;
        B->gather(be, DSI_ACT_TMP, DSI_ACT_X, s->out_rows + k0, n, E);
        B->rmsnorm(be, DSI_ACT_TMP, DSI_ACT_TMP, c->m->out_norm, n, E, E, hp->eps);
        B->matmul(be, 1, &out, DSI_ACT_TMP, n, &W, NULL);
        float *h = B->host(be, DSI_ACT_OUT);
        if (!h && B->get(be, DSI_ACT_OUT, 0, c->out + k0 * V, n * V)) return;
        if (h && h != c->out + k0 * V) memcpy(c->out + k0 * V, h, (size_t)(n * V) * sizeof(float));
    }
}

void dsi_block_end(struct dsi_context *c) {
    enum dsi_status st = c->cpu.base.ops->end(&c->cpu.base);
    if (c->gpu) {
        enum dsi_status g = c->gpu->ops->end(c->gpu);
        if (!st) st = g;
    }
    if (!c->pass_err) c->pass_err = st;
}

void dsi_block_layer_done(struct dsi_context *c, struct dsi_backend *be, int il, int64_t T) {
    if (!c->layer_cb) return;
    if (be != &c->cpu.base && dsi_backend_move(be, &c->cpu.base, DSI_ACT_X, 0, T * c->m->hp.n_embd))
        return;
    c->layer_cb(c->layer_user, il + 1, c->s.x, T, c->m->hp.n_embd);
}
