/* Dense pre-norm decoders (models.md A.2 and B): DeepSeek-R1-Distill-Qwen / Qwen2 and
 * DeepSeek-R1-Distill-Llama / Llama 3 share one graph:
 *     x = embed(tokens)
 *     for each layer:  x += attention(rmsnorm(x))     (GQA, rotary, optional q/k/v biases)
 *                      x += swiglu_ffn(rmsnorm(x))
 *     logits = output(rmsnorm(x))
 * What differs is data, set by the loader: Qwen2 has q/k/v biases and rotates halves (NEOX);
 * Llama GGUFs have q/k rows permuted by llama.cpp's converter, so they rotate interleaved pairs
 * (NORM), and llama3 frequency factors are folded into the inverse frequencies. */
#include "src/model_impl.h"

void dsi_forward_dense(struct dsi_context *c, const int32_t *tokens, int64_t T) {
    dsi_block_embed(c, tokens, T);
    for (int il = 0; il < (int)c->m->hp.n_layer; il++) {
        const struct dsi_layer *l = &c->m->layers[il];
        dsi_block_attn_gqa(c, l, il, T);
        dsi_block_ffn_swiglu(c, l, T);
        dsi_block_layer_done(c, il, T);
    }
    dsi_block_output(c, T);
}
