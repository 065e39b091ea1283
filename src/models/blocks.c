/* Building blocks shared by the decoder architectures (models.md section 0): embedding,
 * grouped-query attention with rotary embedding and KV cache, SwiGLU feed-forward, final norm
 * and output head. Each reads and writes the context's scratch; the residual stream is
 * c->s.x [T][n_embd]. */
#include <math.h>
#include <string.h>

#include "src/model_impl.h"

void dsi_block_embed(struct dsi_context *c, const int32_t *tokens, int64_t T) {
    dsi_op_get_rows(c->s.x, &c->m->tok_embd, tokens, T);
    dsi_block_layer_done(c, -1, T);
}

void dsi_block_positions(struct dsi_context *c) {
    for (int i = 0; i < c->n_segs; i++) {
        const struct dsi_seg *g = &c->segs[i];
        for (int64_t t = 0; t < g->n; t++) c->s.pos[g->t0 + t] = (int32_t)(g->pos + t);
    }
}

/* x += Wo * attention(rope(Wq xn + bq), rope(Wk xn + bk), Wv xn + bv), xn = rmsnorm(x); each
 * run of the pass stores into and attends to its own sequence's cache. */
void dsi_block_attn_gqa(struct dsi_context *c, const struct dsi_layer *l, int il, int64_t T) {
    const struct dsi_hparams *hp = &c->m->hp;
    struct dsi_scratch *s = &c->s;
    int nt = c->p.n_threads;
    dsi_op_rmsnorm(s->xn, s->x, l->attn_norm, T, hp->n_embd, hp->eps, nt);
    {
        float *y[3] = {s->q, s->k, s->v};
        const struct dsi_tensor *W[3] = {&l->wq, &l->wk, &l->wv};
        const float *b[3] = {l->bq, l->bk, l->bv};
        dsi_op_matmul_multi(3, y, s->xn, T, W, b, nt, &s->mm);
    }
    dsi_block_positions(c);
    struct dsi_rope r = {hp->rope_mode, hp->rope_dims, c->m->rope_inv_freq, 1.0f};
    dsi_op_rope(s->q, T, hp->n_head, hp->head_dim, s->pos, &r, nt);
    dsi_op_rope(s->k, T, hp->n_head_kv, hp->head_dim, s->pos, &r, nt);
    struct dsi_attn_params ap = {hp->n_head, hp->n_head_kv, hp->head_dim, hp->head_dim_v,
                                 1.0f / sqrtf((float)hp->head_dim)};
    int64_t qw = (int64_t)hp->n_head * hp->head_dim, kw = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t vw = (int64_t)hp->n_head_kv * hp->head_dim_v, ow = (int64_t)hp->n_head * hp->head_dim_v;
    struct dsi_attn_seg *as = c->att_segs;
    for (int i = 0; i < c->n_segs; i++) {
        const struct dsi_seg *g = &c->segs[i];
        struct dsi_kv_view *kv = dsi_ctx_kv(c, g->seq, il);
        dsi_op_kv_store(kv, s->k + g->t0 * kw, s->v + g->t0 * vw, g->pos, g->n, nt);
        as[i] = (struct dsi_attn_seg){s->attn + g->t0 * ow, s->q + g->t0 * qw, kv, g->pos, g->n};
    }
    dsi_op_attention_segs(as, c->n_segs, &ap, nt, s->att_scratch, c->p.n_ctx);
    dsi_op_matmul(s->tmp, s->attn, T, &l->wo, NULL, nt, &s->mm);
    dsi_op_add(s->x, s->tmp, T * hp->n_embd, nt);
}

/* x += W_down (silu(W_gate xn) * W_up xn), xn = rmsnorm(x). */
void dsi_block_ffn_swiglu(struct dsi_context *c, const struct dsi_layer *l, int64_t T) {
    const struct dsi_hparams *hp = &c->m->hp;
    struct dsi_scratch *s = &c->s;
    int nt = c->p.n_threads;
    dsi_op_rmsnorm(s->xn, s->x, l->ffn_norm, T, hp->n_embd, hp->eps, nt);
    {
        float *y[2] = {s->gate, s->up};
        const struct dsi_tensor *W[2] = {&l->w_gate, &l->w_up};
        const float *b[2] = {NULL, NULL};
        dsi_op_matmul_multi(2, y, s->xn, T, W, b, nt, &s->mm);
    }
    dsi_op_swiglu(s->gate, s->up, T * hp->n_ff, nt);
    dsi_op_matmul(s->tmp, s->gate, T, &l->w_down, NULL, nt, &s->mm);
    dsi_op_add(s->x, s->tmp, T * hp->n_embd, nt);
}

/* Final norm, then the output head for the rows the pass wants (gathered in s.tmp). */
void dsi_block_output(struct dsi_context *c, int64_t T) {
    const struct dsi_hparams *hp = &c->m->hp;
    struct dsi_scratch *s = &c->s;
    int nt = c->p.n_threads;
    int64_t E = hp->n_embd;
    if (c->layer_cb) {
        dsi_op_rmsnorm(s->xn, s->x, c->m->out_norm, T, E, hp->eps, nt);
        c->layer_cb(c->layer_user, (int)hp->n_layer, s->xn, T, E);
        for (int64_t k = 0; k < c->n_out; k++)
            memcpy(s->tmp + k * E, s->xn + s->out_rows[k] * E, (size_t)E * sizeof(float));
    } else {
        for (int64_t k = 0; k < c->n_out; k++)
            dsi_op_rmsnorm(s->tmp + k * E, s->x + s->out_rows[k] * E, c->m->out_norm, 1, E,
                           hp->eps, 1);
    }
    if (c->n_out > 0) dsi_op_matmul(c->out, s->tmp, c->n_out, &c->m->output, NULL, nt, &s->mm);
}

void dsi_block_layer_done(struct dsi_context *c, int il, int64_t T) {
    if (c->layer_cb) c->layer_cb(c->layer_user, il + 1, c->s.x, T, c->m->hp.n_embd);
}
