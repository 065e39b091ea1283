/* Building blocks shared by the decoder architectures (models.md section 0): embedding,
 * grouped-query attention with rotary embedding and KV cache, SwiGLU feed-forward, final norm
 * and output head. Each reads and writes the context's scratch; the residual stream is
 * c->s.x [T][n_embd]. */
#include <math.h>

#include "src/model_impl.h"

void dsi_block_embed(struct dsi_context *c, const int32_t *tokens, int64_t T) {
    dsi_op_get_rows(c->s.x, &c->m->tok_embd, tokens, T);
    dsi_block_layer_done(c, -1, T);
}

/* x += Wo * attention(rope(Wq xn + bq), rope(Wk xn + bk), Wv xn + bv), xn = rmsnorm(x). */
void dsi_block_attn_gqa(struct dsi_context *c, const struct dsi_layer *l, int il, int64_t T,
                        int64_t pos0) {
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
    for (int64_t t = 0; t < T; t++) s->pos[t] = (int32_t)(pos0 + t);
    struct dsi_rope r = {hp->rope_mode, hp->rope_dims, c->m->rope_inv_freq, 1.0f};
    dsi_op_rope(s->q, T, hp->n_head, hp->head_dim, s->pos, &r, nt);
    dsi_op_rope(s->k, T, hp->n_head_kv, hp->head_dim, s->pos, &r, nt);
    dsi_op_kv_store(&c->kv[il], s->k, s->v, pos0, T, nt);
    struct dsi_attn_params ap = {hp->n_head, hp->n_head_kv, hp->head_dim, hp->head_dim_v,
                                 1.0f / sqrtf((float)hp->head_dim)};
    dsi_op_attention(s->attn, s->q, &c->kv[il], pos0, T, &ap, nt, s->att_scratch, c->p.n_ctx);
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

/* Final norm, then the output head for the tokens the mode asks for. */
void dsi_block_output(struct dsi_context *c, int64_t T, enum dsi_logits mode) {
    const struct dsi_hparams *hp = &c->m->hp;
    struct dsi_scratch *s = &c->s;
    int nt = c->p.n_threads;
    if (mode == DSI_LOGITS_NONE && !c->layer_cb) return;
    /* only the last row matters for LAST (unless a callback wants every row) */
    int64_t first = mode == DSI_LOGITS_ALL || c->layer_cb ? 0 : T - 1;
    dsi_op_rmsnorm(s->xn + first * hp->n_embd, s->x + first * hp->n_embd, c->m->out_norm,
                   T - first, hp->n_embd, hp->eps, nt);
    if (c->layer_cb) c->layer_cb(c->layer_user, (int)hp->n_layer, s->xn, T, hp->n_embd);
    if (mode == DSI_LOGITS_ALL)
        dsi_op_matmul(c->logits, s->xn, T, &c->m->output, NULL, nt, &s->mm);
    else if (mode == DSI_LOGITS_LAST)
        dsi_op_matmul(c->logits, s->xn + (T - 1) * hp->n_embd, 1, &c->m->output, NULL, nt, &s->mm);
}

void dsi_block_layer_done(struct dsi_context *c, int il, int64_t T) {
    if (c->layer_cb) c->layer_cb(c->layer_user, il + 1, c->s.x, T, c->m->hp.n_embd);
}
