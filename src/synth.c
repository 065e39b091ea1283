/* Synthetic models (see synth.h). The metadata comes from the converter's key writer, so a
 * synthetic file has exactly the keys a converted checkpoint of the same shape would have.
 * Values: matrices ~ N(0, 0.02^2) (the usual initialization scale), norm weights ~ 1 + N(0,
 * 0.1^2), biases ~ N(0, 0.02^2), the MoE router ~ N(0, 0.05^2); each tensor's stream is seeded
 * from the seed and the tensor's name, so files are reproducible. */
#include "src/synth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gguf.h"
#include "src/chat.h"
#include "src/convert_impl.h"
#include "src/tokenizer.h"

struct stensor {
    char name[DSI_GGUF_MAX_NAME];
    uint32_t n_dims;
    int64_t ne[4];
    enum dsi_type type;
};

struct plan {
    struct stensor *t;
    int n, cap;
};

static bool add(struct plan *p, const char *name, uint32_t nd, int64_t a, int64_t b, int64_t c) {
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 256;
        struct stensor *q = realloc(p->t, (size_t)cap * sizeof *q);
        if (!q) return false;
        p->t = q;
        p->cap = cap;
    }
    struct stensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = nd;
    t->ne[0] = a, t->ne[1] = b, t->ne[2] = c, t->ne[3] = 1;
    return true;
}

/* Real models' shapes (models.md A.1, B.1, C.2, D.1). */
static bool arch_hparams(const char *arch, struct dsi_hf_hparams *h) {
    memset(h, 0, sizeof *h);
    h->has_n_ctx = h->has_rope_theta = h->has_rms_eps = true;
    h->rope_theta = 10000;
    h->rms_eps = 1e-6;
    h->low_freq = 1.0, h->high_freq = 4.0;
    if (!strcmp(arch, "r1-qwen-1.5b") || !strcmp(arch, "r1-qwen-7b")) {
        bool big = arch[8] == '7';
        h->arch = DSI_HF_QWEN2, h->name = "qwen2";
        h->n_layer = 28, h->n_ctx = 131072;
        h->n_embd = big ? 3584 : 1536, h->n_head = big ? 28 : 12, h->n_head_kv = big ? 4 : 2;
        h->n_ff = big ? 18944 : 8960, h->n_vocab = big ? 152064 : 151936;
        return true;
    }
    if (!strcmp(arch, "r1-llama-8b")) {
        h->arch = DSI_HF_LLAMA, h->name = "llama";
        h->n_layer = 32, h->n_ctx = 131072, h->n_embd = 4096, h->n_head = 32, h->n_head_kv = 8;
        h->n_ff = 14336, h->n_vocab = 128256, h->rope_theta = 500000, h->rms_eps = 1e-5;
        snprintf(h->rope_type, sizeof h->rope_type, "llama3");
        h->has_factor = true, h->rope_factor = 8;
        h->has_orig_ctx = true, h->rope_orig_ctx = 8192;
        return true;
    }
    if (!strcmp(arch, "v2-lite")) {
        h->arch = DSI_HF_DEEPSEEK2, h->name = "deepseek2";
        h->n_layer = 27, h->n_ctx = 163840, h->n_embd = 2048, h->n_head = 16, h->n_head_kv = 16;
        h->n_ff = 10944, h->n_vocab = 102400;
        h->kv_lora = 512, h->qk_nope = 128, h->qk_rope = 64, h->v_head = 128;
        h->n_ff_exp = 1408, h->has_n_expert = true, h->n_expert = 64;
        h->has_n_expert_used = true, h->n_expert_used = 6, h->n_shared = 2, h->first_dense = 1;
        h->has_n_group = h->has_topk_group = true, h->n_group = 1, h->topk_group = 1;
        h->has_scale = true, h->routed_scale = 1.0;
        snprintf(h->scoring, sizeof h->scoring, "softmax");
        snprintf(h->rope_type, sizeof h->rope_type, "yarn");
        h->has_factor = true, h->rope_factor = 40;
        h->has_orig_ctx = true, h->rope_orig_ctx = 4096;
        h->has_beta_fast = h->has_beta_slow = true, h->beta_fast = 32, h->beta_slow = 1;
        h->has_mscale_all_dim = true, h->mscale_all_dim = 0.707;
        return true;
    }
    if (!strcmp(arch, "vl2-tiny")) {
        h->arch = DSI_HF_DEEPSEEK, h->name = "deepseek";
        h->n_layer = 12, h->n_ctx = 4096, h->n_embd = 1280, h->n_head = 10, h->n_head_kv = 10;
        h->n_ff = 6848, h->n_vocab = 129280, h->n_ff_exp = 896;
        h->has_n_expert = true, h->n_expert = 64, h->has_n_expert_used = true, h->n_expert_used = 6;
        h->n_shared = 2, h->first_dense = 1;
        snprintf(h->scoring, sizeof h->scoring, "softmax");
        /* SigLIP-So400m at 384 and the 2x2 downsample-MLP projector (models.md C.2) */
        h->vl2 = true;
        h->v_image_size = 384, h->v_patch = 14, h->v_width = 1152, h->v_layers = 27;
        h->v_heads = 16, h->v_ff = 4304, h->mm_in = 1152, h->mm_embd = h->n_embd;
        h->mm_downsample = 2;
        for (int m = 1; m <= 9; m++)
            for (int n = 1; m * n <= 9; n++)
                if (h->n_cand < 64) h->cand[h->n_cand][0] = 384 * m, h->cand[h->n_cand++][1] = 384 * n;
        return true;
    }
    return false;
}

/* The vision tower's and projector's tensors (names of convert.c's plan_vision). */
static bool build_vision(const struct dsi_hf_hparams *h, struct plan *p) {
    int64_t W = h->v_width, P = h->v_patch, G = h->v_image_size / h->v_patch, D = h->mm_embd;
    int64_t K = W * h->mm_downsample * h->mm_downsample;
    char n[96];
    bool ok = add(p, "v.patch_embd.weight", 4, P, P, 3) && (p->t[p->n - 1].ne[3] = W, true);
    ok = ok && add(p, "v.patch_embd.bias", 1, W, 1, 1);
    ok = ok && add(p, "v.position_embd.weight", 2, W, G * G, 1);
    for (int64_t i = 0; ok && i < h->v_layers; i++) {
#define ADD(s, nd, a, b) (snprintf(n, sizeof n, "v.blk.%lld." s, (long long)i), add(p, n, nd, a, b, 1))
        ok = ADD("ln1.weight", 1, W, 1) && ADD("ln1.bias", 1, W, 1);
        ok = ok && ADD("attn_qkv.weight", 2, W, 3 * W) && ADD("attn_qkv.bias", 1, 3 * W, 1);
        ok = ok && ADD("attn_out.weight", 2, W, W) && ADD("attn_out.bias", 1, W, 1);
        ok = ok && ADD("ln2.weight", 1, W, 1) && ADD("ln2.bias", 1, W, 1);
        ok = ok && ADD("ffn_up.weight", 2, W, h->v_ff) && ADD("ffn_up.bias", 1, h->v_ff, 1);
        ok = ok && ADD("ffn_down.weight", 2, h->v_ff, W) && ADD("ffn_down.bias", 1, W, 1);
#undef ADD
    }
    ok = ok && add(p, "v.post_ln.weight", 1, W, 1, 1) && add(p, "v.post_ln.bias", 1, W, 1, 1);
    ok = ok && add(p, "mm.0.weight", 2, K, D, 1) && add(p, "mm.0.bias", 1, D, 1, 1);
    ok = ok && add(p, "mm.2.weight", 2, D, D, 1) && add(p, "mm.2.bias", 1, D, 1, 1);
    ok = ok && add(p, "v.image_newline", 1, D, 1, 1) && add(p, "v.view_seperator", 1, D, 1, 1);
    return ok;
}

const char *dsi_synth_archs(void) { return "r1-qwen-1.5b r1-qwen-7b r1-llama-8b v2-lite vl2-tiny"; }

static bool build(const struct dsi_hf_hparams *h, struct plan *p) {
    int64_t E = h->n_embd, V = h->n_vocab, hd = h->n_embd / h->n_head;
    char n[96];
    bool ok = add(p, "token_embd.weight", 2, E, V, 1);
    if (h->arch == DSI_HF_LLAMA) ok = ok && add(p, "rope_freqs.weight", 1, hd / 2, 1, 1);
    for (int64_t i = 0; ok && i < h->n_layer; i++) {
#define ADD(s, nd, a, b, c) (snprintf(n, sizeof n, "blk.%lld." s, (long long)i), add(p, n, nd, a, b, c))
        ok = ADD("attn_norm.weight", 1, E, 1, 1);
        if (h->arch == DSI_HF_DEEPSEEK2) {
            int64_t qk = h->qk_nope + h->qk_rope;
            ok = ok && ADD("attn_q.weight", 2, E, h->n_head * qk, 1);
            ok = ok && ADD("attn_kv_a_mqa.weight", 2, E, h->kv_lora + h->qk_rope, 1);
            ok = ok && ADD("attn_kv_a_norm.weight", 1, h->kv_lora, 1, 1);
            ok = ok && ADD("attn_k_b.weight", 3, h->qk_nope, h->kv_lora, h->n_head);
            ok = ok && ADD("attn_v_b.weight", 3, h->kv_lora, h->v_head, h->n_head);
            ok = ok && ADD("attn_output.weight", 2, h->n_head * h->v_head, E, 1);
        } else {
            int64_t kv = h->n_head_kv * hd;
            ok = ok && ADD("attn_q.weight", 2, E, h->n_head * hd, 1);
            if (h->arch == DSI_HF_QWEN2) ok = ok && ADD("attn_q.bias", 1, h->n_head * hd, 1, 1);
            ok = ok && ADD("attn_k.weight", 2, E, kv, 1);
            if (h->arch == DSI_HF_QWEN2) ok = ok && ADD("attn_k.bias", 1, kv, 1, 1);
            ok = ok && ADD("attn_v.weight", 2, E, kv, 1);
            if (h->arch == DSI_HF_QWEN2) ok = ok && ADD("attn_v.bias", 1, kv, 1, 1);
            ok = ok && ADD("attn_output.weight", 2, h->n_head * hd, E, 1);
        }
        ok = ok && ADD("ffn_norm.weight", 1, E, 1, 1);
        bool moe = (h->arch == DSI_HF_DEEPSEEK2 || h->arch == DSI_HF_DEEPSEEK) && i >= h->first_dense;
        if (!moe) {
            ok = ok && ADD("ffn_gate.weight", 2, E, h->n_ff, 1);
            ok = ok && ADD("ffn_up.weight", 2, E, h->n_ff, 1);
            ok = ok && ADD("ffn_down.weight", 2, h->n_ff, E, 1);
        } else {
            int64_t X = h->n_expert, F = h->n_ff_exp, S = h->n_ff_exp * h->n_shared;
            ok = ok && ADD("ffn_gate_inp.weight", 2, E, X, 1);
            ok = ok && ADD("ffn_gate_exps.weight", 3, E, F, X);
            ok = ok && ADD("ffn_up_exps.weight", 3, E, F, X);
            ok = ok && ADD("ffn_down_exps.weight", 3, F, E, X);
            ok = ok && ADD("ffn_gate_shexp.weight", 2, E, S, 1);
            ok = ok && ADD("ffn_up_shexp.weight", 2, E, S, 1);
            ok = ok && ADD("ffn_down_shexp.weight", 2, S, E, 1);
        }
#undef ADD
    }
    ok = ok && add(p, "output_norm.weight", 1, E, 1, 1);
    ok = ok && add(p, "output.weight", 2, E, V, 1);
    return ok && (!h->vl2 || build_vision(h, p));
}

/* ---- a byte-level stand-in tokenizer --------------------------------------------------- */

static enum dsi_status standin_tokenizer(const struct dsi_hf_hparams *h, struct dsi_gguf_writer *w) {
    static const char *const pre[] = {"deepseek-r1-qwen", "llama-bpe", "deepseek-llm", "deepseek-v3"};
    int64_t V = h->n_vocab;
    char **toks = calloc((size_t)V, sizeof *toks);
    int32_t *types = calloc((size_t)V, sizeof *types);
    enum dsi_status st = toks && types ? DSI_OK : DSI_ERR_NOMEM;
    const char *bos = "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
    const char *eos = "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
    for (int64_t i = 0; st == DSI_OK && i < V; i++) {
        char buf[64];
        if (i < 256) {
            int k = dsi_tokenizer_byte_char((uint8_t)i, buf);
            buf[k] = '\0';
            types[i] = DSI_TOKEN_NORMAL;
        } else if (i == 256 || i == 257) {
            snprintf(buf, sizeof buf, "%s", i == 256 ? bos : eos);
            types[i] = DSI_TOKEN_CONTROL;
        } else if (i == 258 && h->vl2) {
            snprintf(buf, sizeof buf, "<image>"); /* VL2's image placeholder */
            types[i] = DSI_TOKEN_USER_DEFINED;
        } else {
            snprintf(buf, sizeof buf, "[PAD%lld]", (long long)i);
            types[i] = DSI_TOKEN_UNUSED;
        }
        toks[i] = strdup(buf);
        if (!toks[i]) st = DSI_ERR_NOMEM;
    }
    if (!st) st = dsi_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (!st) st = dsi_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre[h->arch]);
    if (!st) st = dsi_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, NULL, (uint64_t)V);
    if (!st) st = dsi_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", DSI_GGUF_INT32, types, (uint64_t)V);
    if (!st) st = dsi_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", NULL, NULL, 0);
    if (!st) st = dsi_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 256);
    if (!st) st = dsi_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 257);
    if (!st) st = dsi_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (!st) st = dsi_gguf_writer_set_str(w, "tokenizer.chat_template", dsi_chat_builtin("deepseek-r1"));
    for (int64_t i = 0; toks && i < V; i++) free(toks[i]);
    free(toks);
    free(types);
    return st;
}

/* ---- values ---------------------------------------------------------------------------- */

static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Approximately standard normal: four 16-bit uniforms summed (Irwin-Hall), centred and
 * scaled to unit variance. Cheap enough to fill 8 billion weights. */
static float gauss(uint64_t *s) {
    uint64_t r = next(s);
    float u = (float)(r & 0xffff) + (float)((r >> 16) & 0xffff) + (float)((r >> 32) & 0xffff) +
              (float)(r >> 48);
    return (u / 65536.0f - 2.0f) * 1.7320508f;
}

static uint64_t name_seed(const char *name, uint64_t seed) {
    uint64_t h = 1469598103934665603ull ^ seed;
    for (; *name; name++) h = (h ^ (uint8_t)*name) * 1099511628211ull;
    return h;
}

enum dsi_status dsi_synth(const struct dsi_synth_params *p) {
    struct dsi_hf_hparams h;
    if (!arch_hparams(p->arch, &h)) {
        DSI_LOG_ERR("synth: unknown architecture '%s' (%s)", p->arch, dsi_synth_archs());
        return DSI_ERR_ARG;
    }
    if (p->n_layer > 0) h.n_layer = p->n_layer;
    if (p->n_vocab > 0) h.n_vocab = p->n_vocab;
    if (h.n_vocab < 258) {
        DSI_LOG_ERR("synth: a vocabulary needs at least 258 tokens");
        return DSI_ERR_ARG;
    }
    enum dsi_type type = p->type >= 0 ? (enum dsi_type)p->type : DSI_TYPE_F16;
    if (type != DSI_TYPE_F16 && type != DSI_TYPE_BF16 && type != DSI_TYPE_F32) {
        DSI_LOG_ERR("synth: type %s is not supported (f16, bf16, f32; quantize the result with "
                    "dsinfer quantize)", dsi_type_name(type));
        return DSI_ERR_UNSUPPORTED;
    }
    struct dsi_tokenizer *tok = NULL;
    enum dsi_status st = p->tokenizer ? dsi_tokenizer_load(p->tokenizer, &tok) : DSI_OK;
    if (!st && tok && dsi_tokenizer_n_vocab(tok) > h.n_vocab) {
        DSI_LOG_ERR("synth: the tokenizer has %d tokens, more than %s's %lld embedding rows",
                    dsi_tokenizer_n_vocab(tok), p->arch, (long long)h.n_vocab);
        st = DSI_ERR_ARG;
    }
    struct plan plan = {0};
    struct dsi_gguf_writer *w = NULL;
    float *f = NULL;
    void *buf = NULL;
    const int64_t chunk = (int64_t)1 << 20;
    if (!st && !build(&h, &plan)) st = DSI_ERR_NOMEM;
    if (!st && !(w = dsi_gguf_writer_init())) st = DSI_ERR_NOMEM;
    if (!st) {
        const char *base = strrchr(p->out, '/');
        base = base ? base + 1 : p->out;
        st = dsi_convert_write_kv(&h, base, type, tok, w);
        if (!st && !tok) st = standin_tokenizer(&h, w);
        if (!st) st = dsi_gguf_writer_set_str(w, "general.description", "dsinfer synthetic weights");
    }
    for (int i = 0; !st && i < plan.n; i++) {
        struct stensor *t = &plan.t[i];
        if (p->max_rows > 0 && t->n_dims >= 2 && t->ne[1] > p->max_rows) t->ne[1] = p->max_rows;
        t->type = dsi_convert_tensor_type(t->name, t->n_dims, t->ne[0], type);
        if (!strcmp(t->name, "v.patch_embd.weight") || !strcmp(t->name, "v.position_embd.weight"))
            t->type = DSI_TYPE_F32;
        st = dsi_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
    }
    if (!st) {
        f = malloc((size_t)chunk * sizeof *f);
        buf = malloc((size_t)chunk * 4);
        if (!f || !buf) st = DSI_ERR_NOMEM;
    }
    if (!st) st = dsi_gguf_writer_begin(w, p->out);
    struct dsi_progress prog = {"synth", w ? dsi_gguf_writer_data_size(w) : 0, 0, 0, p->progress};
    for (int i = 0; !st && i < plan.n; i++) {
        const struct stensor *t = &plan.t[i];
        int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        uint64_t s = name_seed(t->name, p->seed);
        size_t nl = strlen(t->name);
        bool norm = (nl > 12 && !strcmp(t->name + nl - 12, "_norm.weight")) ||
                    strstr(t->name, "ln1.weight") || strstr(t->name, "ln2.weight") ||
                    strstr(t->name, "post_ln.weight");
        bool bias = nl > 5 && !strcmp(t->name + nl - 5, ".bias");
        bool router = strstr(t->name, "ffn_gate_inp") != NULL;
        float *freqs = NULL;
        if (!strcmp(t->name, "rope_freqs.weight")) {
            freqs = malloc((size_t)n * sizeof *freqs);
            if (!freqs) st = DSI_ERR_NOMEM;
            else dsi_convert_llama3_factors(&h, 2 * n, freqs);
        }
        for (int64_t off = 0; !st && off < n; off += chunk) {
            int64_t k = n - off < chunk ? n - off : chunk;
            for (int64_t j = 0; j < k; j++) {
                float g = gauss(&s);
                f[j] = freqs ? freqs[off + j] : norm ? 1.0f + 0.1f * g : router ? 0.05f * g : 0.02f * g;
                (void)bias;
            }
            size_t bytes;
            if (t->type == DSI_TYPE_F32) {
                memcpy(buf, f, (size_t)k * 4);
                bytes = (size_t)k * 4;
            } else {
                uint16_t *o = buf;
                for (int64_t j = 0; j < k; j++)
                    o[j] = t->type == DSI_TYPE_F16 ? dsi_f32_to_f16(f[j]) : dsi_f32_to_bf16(f[j]);
                bytes = (size_t)k * 2;
            }
            st = dsi_gguf_writer_write(w, buf, bytes);
            dsi_progress_add(&prog, bytes);
        }
        free(freqs);
    }
    dsi_progress_end(&prog);
    if (!st) st = dsi_gguf_writer_finish(w, NULL, NULL);
    if (st == DSI_ERR_NOMEM) DSI_LOG_ERR("synth: out of memory");
    free(f);
    free(buf);
    free(plan.t);
    dsi_gguf_writer_free(w);
    dsi_tokenizer_free(tok);
    return st;
}
