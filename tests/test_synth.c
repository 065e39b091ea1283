/* synth: metadata and tensor shapes of the real models (models.md A.1, D.1/D.6), in cut-down
 * variants (fewer layers, small vocabulary) so the files stay small; the output loads and
 * runs; the same seed gives the same bytes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gguf.h"
#include "src/model.h"
#include "src/synth.h"
#include "tests/util.h"

static int64_t kv(const struct dsi_gguf *g, const char *k) {
    int64_t v = -1;
    dsi_gguf_get_i64(g, k, &v);
    return v;
}

static bool shape(const struct dsi_gguf *g, const char *name, int64_t a, int64_t b, int64_t c) {
    const struct dsi_gguf_tensor *t = dsi_gguf_find_tensor(g, name);
    bool ok = t && t->ne[0] == a && t->ne[1] == b && t->ne[2] == c;
    if (!ok) TU_CHECK(0, "%s: shape [%lld, %lld, %lld], want [%lld, %lld, %lld]", name,
                      t ? (long long)t->ne[0] : -1LL, t ? (long long)t->ne[1] : -1LL,
                      t ? (long long)t->ne[2] : -1LL, (long long)a, (long long)b, (long long)c);
    return ok;
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    const char *out = tu_tmp(0, ".gguf"), *out2 = tu_tmp(1, ".gguf");
    struct dsi_synth_params p = {"r1-qwen-1.5b", out, -1, NULL, 7, false, 2, 512, 0};
    TU_CHECK(dsi_synth(&p) == DSI_OK, "synth r1-qwen-1.5b");
    struct dsi_gguf *g;
    if (dsi_gguf_open(out, &g) == DSI_OK) {
        TU_CHECK(kv(g, "qwen2.block_count") == 2 && kv(g, "qwen2.embedding_length") == 1536 &&
                     kv(g, "qwen2.attention.head_count") == 12 &&
                     kv(g, "qwen2.attention.head_count_kv") == 2 &&
                     kv(g, "qwen2.feed_forward_length") == 8960 && kv(g, "general.file_type") == 1,
                 "r1-qwen-1.5b metadata");
        shape(g, "blk.1.attn_q.weight", 1536, 1536, 1);
        shape(g, "blk.1.attn_k.weight", 1536, 256, 1);
        shape(g, "blk.1.attn_k.bias", 256, 1, 1);
        shape(g, "blk.1.ffn_down.weight", 8960, 1536, 1);
        shape(g, "output.weight", 1536, 512, 1);
        const struct dsi_gguf_tensor *t = dsi_gguf_find_tensor(g, "blk.0.attn_q.weight");
        TU_CHECK(t && t->type == DSI_TYPE_F16, "matrices are f16");
        t = dsi_gguf_find_tensor(g, "blk.0.attn_norm.weight");
        TU_CHECK(t && t->type == DSI_TYPE_F32, "norms are f32");
        dsi_gguf_free(g);
    }
    /* it runs */
    struct dsi_model *m;
    if (dsi_model_load(out, &m) == DSI_OK) {
        struct dsi_context_params cp = dsi_context_default_params();
        cp.n_ctx = 64;
        cp.n_threads = 2;
        struct dsi_context *c;
        if (dsi_context_init(m, &cp, &c) == DSI_OK) {
            int32_t ids[5] = {1, 2, 3, 256, 100};
            TU_CHECK(dsi_context_decode(c, ids, 5, 0, false) == DSI_OK, "decode");
            const float *l = dsi_context_logits(c, -1);
            bool finite = true;
            for (int i = 0; i < 512; i++) finite &= isfinite(l[i]);
            TU_CHECK(finite, "synthetic logits are finite");
            dsi_context_free(c);
        }
        dsi_model_free(m);
    } else {
        TU_CHECK(0, "synthetic model does not load");
    }
    /* the same seed gives the same weights; another seed others */
    p.out = out2;
    for (int round = 0; round < 2; round++) {
        p.seed = round ? 8 : 7;
        TU_CHECK(dsi_synth(&p) == DSI_OK, "synth again");
        struct dsi_gguf *g1, *g2;
        if (dsi_gguf_open(out, &g1) == DSI_OK && dsi_gguf_open(out2, &g2) == DSI_OK) {
            bool same = dsi_gguf_n_tensors(g1) == dsi_gguf_n_tensors(g2);
            for (int64_t i = 0; same && i < dsi_gguf_n_tensors(g1); i++) {
                const struct dsi_gguf_tensor *t1 = dsi_gguf_tensor(g1, i), *t2 = dsi_gguf_tensor(g2, i);
                same = t1->nbytes == t2->nbytes && !memcmp(t1->data, t2->data, t1->nbytes);
            }
            TU_CHECK(same == (round == 0), round ? "another seed, same weights" : "same seed, different weights");
            dsi_gguf_free(g1);
            dsi_gguf_free(g2);
        }
    }

    /* DeepSeek-V2-Lite: MLA stored as llama.cpp's current layout */
    struct dsi_synth_params q = {"v2-lite", out, DSI_TYPE_BF16, NULL, 7, false, 1, 512, 0};
    TU_CHECK(dsi_synth(&q) == DSI_OK, "synth v2-lite");
    if (dsi_gguf_open(out, &g) == DSI_OK) {
        TU_CHECK(kv(g, "deepseek2.attention.kv_lora_rank") == 512 &&
                     kv(g, "deepseek2.attention.key_length_mla") == 192 &&
                     kv(g, "deepseek2.attention.head_count_kv") == 1 &&
                     kv(g, "deepseek2.expert_count") == 64 && kv(g, "deepseek2.expert_used_count") == 6 &&
                     kv(g, "deepseek2.leading_dense_block_count") == 1,
                 "v2-lite metadata");
        shape(g, "blk.0.attn_q.weight", 2048, 3072, 1);
        shape(g, "blk.0.attn_kv_a_mqa.weight", 2048, 576, 1);
        shape(g, "blk.0.attn_k_b.weight", 128, 512, 16);
        shape(g, "blk.0.attn_v_b.weight", 512, 128, 16);
        shape(g, "blk.0.ffn_gate.weight", 2048, 10944, 1);
        dsi_gguf_free(g);
    }
    tu_capture_log(true);
    struct dsi_synth_params bad = {"gpt-5", out, -1, NULL, 1, false, 0, 0, 0};
    TU_CHECK(dsi_synth(&bad) == DSI_ERR_ARG && strstr(tu_last_log(), "unknown architecture"),
             "unknown architecture accepted");
    tu_capture_log(false);
    unlink(out);
    unlink(out2);
    return tu_finish("test_synth");
}
