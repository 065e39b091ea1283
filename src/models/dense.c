/* Dense pre-norm decoders (models.md A.2 and B): DeepSeek-R1-Distill-Qwen / Qwen2 and
 * DeepSeek-R1-Distill-Llama / Llama 3 share one graph:
 *     x = embed(tokens)
 *     for each layer:  x += attention(rmsnorm(x))     (GQA, rotary, optional q/k/v biases)
 *                      x += swiglu_ffn(rmsnorm(x))
 *     logits = output(rmsnorm(x))
 * What differs is data, set by the loader: Qwen2 has q/k/v biases and rotates halves (NEOX);
 * Llama GGUFs have q/k rows permuted by llama.cpp's converter, so they rotate interleaved pairs
 * (NORM), and llama3 frequency factors are folded into the inverse frequencies. DeepSeekMoE v1
 * ("deepseek", VL2-Tiny's language model) is Llama-shaped attention with expert FFNs from
 * leading_dense_block_count on; DeepSeek-V2 ("deepseek2", src/models/deepseek2.c) has latent
 * attention instead. */
#include "src/model_impl.h"

void dsi_forward_dense(struct dsi_context *c, const int32_t *tokens, int64_t T) {
    dsi_block_begin(c, T);
    dsi_block_embed(c, tokens, T);
    struct dsi_backend *cur = &c->cpu.base;
    int64_t nx = T * c->m->hp.n_embd;
    for (int il = 0; il <= (int)c->m->hp.n_layer; il++) {
        struct dsi_backend *be = dsi_ctx_backend(c, il);
        if (be != cur && (c->pass_err = dsi_backend_move(cur, be, DSI_ACT_X, 0, nx))) return;
        cur = be;
        if (il == (int)c->m->hp.n_layer) break;
        const struct dsi_layer *l = &c->m->layers[il];
        if (c->m->hp.kv_lora_rank) dsi_block_attn_mla(c, be, l, il, T);
        else dsi_block_attn_gqa(c, be, l, il, T);
        if (l->moe) {
            /* the routed experts on be's device, or on the CPU when they did not fit there
             * (offload.c; --cpu-moe) */
            dsi_block_ffn_moe(c, be, l, T, be == &c->cpu.base || c->gpu_experts);
            if (c->pass_err) return;
        } else {
            dsi_block_ffn_swiglu(c, be, l, T);
        }
        dsi_block_layer_done(c, be, il, T);
    }
    dsi_block_output(c, cur, T);
    dsi_block_end(c);
}
