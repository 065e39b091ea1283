/* DeepSeek-V2 / V2-Lite (models.md D): pre-norm decoder with multi-head latent attention
 * and DeepSeekMoE feed-forward (dense SwiGLU in the first n_layer_dense layers).
 *
 * Attention per token (H heads, nope + rope = the q/k head size, R = kv_lora_rank):
 *     q          = W_q xn, or W_qb rmsnorm(W_qa xn) with q compression
 *     [c | k_pe] = W_kva xn;  c = rmsnorm(c; kv_a_norm)      (one latent shared by all heads)
 *     rope (interleaved pairs, YaRN frequencies) on each head's q_pe and on k_pe
 * Two equivalent forms:
 *  - absorbed (default, D.4): the cache holds [c | k_pe] (R + rope values per token and
 *    layer); q_abs_h = W_UK_h^T q_nope_h, scores q_abs_h . c_t + q_pe_h . k_pe_t, the
 *    attention output u_h = sum_t a_t c_t in latent space, o_h = W_UV_h u_h. This is
 *    multi-query attention with head size R + rope whose values are the first R key values.
 *  - naive (D.2, context flag mla_naive): k_nope_h = W_UK_h c, v_h = W_UV_h c are expanded
 *    and cached per head, then ordinary attention.
 * The current GGUF layout stores W_UK_h^T (attn_k_b) and W_UV_h (attn_v_b) per head; the
 * legacy one stores kv_b = [W_UK_h; W_UV_h] for all heads (attn_kv_b). Each form uses the
 * stored matrices directly, transposed on the fly where the layout does not match. */
#include <string.h>

#include "src/model_impl.h"

/* Rows [row0, row0 + rows) of each head's block of `per_head` rows of legacy kv_b, as a
 * stack ne [kv_lora, rows, n_head]. */
static struct dsi_tensor kvb_view(const struct dsi_tensor *kvb, int64_t row0, int64_t rows,
                                  int64_t per_head, int64_t H) {
    struct dsi_tensor t = *kvb;
    t.data = (char *)kvb->data + (size_t)row0 * kvb->nb[1];
    t.ne[1] = rows;
    t.ne[2] = H;
    t.nb[2] = (size_t)per_head * kvb->nb[1];
    t.nb[3] = t.nb[2] * (size_t)H;
    return t;
}

/* The naive form (D.2), on the CPU only (a check of the absorbed form): per-head keys
 * [W_UK_h c | k_pe] and values W_UV_h c, expanded and cached, then ordinary attention. The
 * queries are in DSI_ACT_Q (roped), [c | k_pe] in DSI_ACT_KVA; out: DSI_ACT_ATTN. */
static void attn_naive(struct dsi_context *c, const struct dsi_layer *l, int il, int64_t T,
                       const struct dsi_tensor *uk, const struct dsi_tensor *uv) {
    const struct dsi_hparams *hp = &c->m->hp;
    struct dsi_scratch *s = &c->s;
    int nt = c->p.n_threads;
    int64_t H = hp->n_head, R = hp->kv_lora_rank, P = hp->rope_dims, N = hp->qk_nope;
    int64_t Dq = hp->head_dim, Dv = hp->head_dim_v, Rk = R + P;
    if (hp->mla_legacy)
        dsi_op_matmul_heads(s->k, H * Dq, Dq, s->kva, Rk, 0, T, uk, nt, &s->mm);
    else
        dsi_op_matmul_heads_t(s->k, H * Dq, Dq, s->kva, Rk, 0, T, &l->wk_b, nt);
    dsi_op_matmul_heads(s->v, H * Dv, Dv, s->kva, Rk, 0, T, hp->mla_legacy ? uv : &l->wv_b, nt,
                        &s->mm);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++)
            memcpy(s->k + (t * H + h) * Dq + N, s->kva + t * Rk + R, (size_t)P * sizeof(float));
    struct dsi_attn_params ap = {(int)H, (int)H, (int)Dq, (int)Dv, hp->attn_scale, c->p.batch_invariant};
    for (int i = 0; i < c->n_segs; i++) {
        const struct dsi_seg *g = &c->segs[i];
        struct dsi_kv_view *kv = dsi_ctx_kv(c, g->seq, il);
        dsi_op_kv_store(kv, s->k + g->t0 * H * Dq, s->v + g->t0 * H * Dv, g->pos, g->n, nt);
        c->att_segs[i] = (struct dsi_attn_seg){s->attn + g->t0 * H * Dv, s->q + g->t0 * H * Dq,
                                               kv, g->pos, g->n};
    }
    dsi_op_attention_segs(c->att_segs, c->n_segs, &ap, nt, s->att_scratch, c->p.n_ctx);
}

/* x += W_o attention(...), xn = rmsnorm(x), on backend be (the absorbed form; the naive one
 * with the context flag mla_naive, on the CPU). */
void dsi_block_attn_mla(struct dsi_context *c, struct dsi_backend *be, const struct dsi_layer *l,
                        int il, int64_t T) {
    const struct dsi_hparams *hp = &c->m->hp;
    const struct dsi_backend_ops *B = be->ops;
    int H = hp->n_head;
    int64_t R = hp->kv_lora_rank, P = hp->rope_dims, N = hp->qk_nope;
    int64_t Dq = hp->head_dim, Dv = hp->head_dim_v, Rk = R + P;
    B->rmsnorm(be, DSI_ACT_XN, DSI_ACT_X, l->attn_norm, T, hp->n_embd, hp->n_embd, hp->eps);
    {
        const enum dsi_act y[2] = {hp->q_lora_rank ? DSI_ACT_QA : DSI_ACT_Q, DSI_ACT_KVA};
        const struct dsi_tensor *W[2] = {hp->q_lora_rank ? &l->wq_a : &l->wq, &l->wkv_a};
        B->matmul(be, 2, y, DSI_ACT_XN, T, W, NULL);
    }
    if (hp->q_lora_rank) {
        B->rmsnorm(be, DSI_ACT_QA, DSI_ACT_QA, l->q_a_norm, T, hp->q_lora_rank, hp->q_lora_rank,
                   hp->eps);
        const enum dsi_act y = DSI_ACT_Q;
        const struct dsi_tensor *W = &l->wq_b;
        B->matmul(be, 1, &y, DSI_ACT_QA, T, &W, NULL);
    }
    B->rmsnorm(be, DSI_ACT_KVA, DSI_ACT_KVA, l->kv_a_norm, T, R, Rk, hp->eps);
    struct dsi_rope r = {hp->rope_mode, (int)P, c->m->rope_inv_freq, 1.0f};
    B->rope(be, DSI_ACT_Q, T, H, (int)Dq, (int)N, &r);   /* each head's q_pe */
    B->rope(be, DSI_ACT_KVA, T, 1, (int)Rk, (int)R, &r); /* k_pe */
    struct dsi_tensor uk = {0}, uv = {0}; /* legacy layout: W_UK_h, W_UV_h as views of kv_b */
    if (hp->mla_legacy) {
        uk = kvb_view(&l->wkv_b, 0, N, N + Dv, H);
        uv = kvb_view(&l->wkv_b, N, Dv, N + Dv, H);
    }
    if (c->p.mla_naive) {
        DSI_ASSERT(be == &c->cpu.base);
        attn_naive(c, l, il, T, &uk, &uv);
    } else {
        /* queries in latent space: [W_UK_h^T q_nope_h | q_pe_h] per head; one key and value
         * head per token: [c | k_pe] with the values c */
        B->matmul_heads(be, DSI_ACT_QFULL, Rk, DSI_ACT_Q, Dq, 0, T, H,
                        hp->mla_legacy ? &uk : &l->wk_b, hp->mla_legacy);
        B->copy_heads(be, DSI_ACT_QFULL, Rk, R, DSI_ACT_Q, Dq, N, T, H, P);
        struct dsi_attn_params ap = {H, 1, (int)Rk, (int)R, hp->attn_scale, c->p.batch_invariant};
        B->attention(be, il, DSI_ACT_LAT, DSI_ACT_QFULL, DSI_ACT_KVA, DSI_ACT_KVA, &ap);
        B->matmul_heads(be, DSI_ACT_ATTN, Dv, DSI_ACT_LAT, R, 0, T, H,
                        hp->mla_legacy ? &uv : &l->wv_b, false);
    }
    B->matmul_add(be, DSI_ACT_X, DSI_ACT_ATTN, T, &l->wo, NULL);
}
