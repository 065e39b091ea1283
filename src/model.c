/* Model loading: GGUF metadata -> hyper-parameters, tensors -> checked views, tokenizer.
 * A Hugging Face directory is converted to GGUF in memory first (src/convert.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/file.h"
#include "src/convert.h"
#include "quant/kernels.h"
#include "src/model_impl.h"

/* ---- metadata -------------------------------------------------------------------------- */

struct loader {
    struct dsi_model *m;
    const struct dsi_gguf *g;
    char arch[32];
    enum dsi_status st;
};

/* Integer key {arch}.suffix; `dflt` < 0 makes it required. */
static int64_t key_int(struct loader *L, const char *suffix, int64_t dflt, int64_t lo, int64_t hi) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    int64_t v;
    enum dsi_status s = dsi_gguf_get_i64(L->g, key, &v);
    if (s == DSI_ERR_NOT_FOUND && dflt >= 0) return dflt;
    if (s == DSI_ERR_NOT_FOUND) {
        DSI_LOG_ERR("model: missing metadata key '%s'", key);
        if (!L->st) L->st = DSI_ERR_FORMAT;
        return lo;
    }
    if (s || v < lo || v > hi) {
        if (!s) DSI_LOG_ERR("model: '%s' = %lld is out of range [%lld, %lld]", key, (long long)v,
                            (long long)lo, (long long)hi);
        if (!L->st) L->st = DSI_ERR_FORMAT;
        return lo;
    }
    return v;
}

static float key_f32(struct loader *L, const char *suffix, float dflt) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    float v;
    enum dsi_status s = dsi_gguf_get_f32(L->g, key, &v);
    if (s == DSI_ERR_NOT_FOUND) return dflt;
    if (s || !isfinite(v)) {
        if (!s) DSI_LOG_ERR("model: '%s' is not a finite number", key);
        if (!L->st) L->st = DSI_ERR_FORMAT;
        return dflt;
    }
    return v;
}

static void read_hparams(struct loader *L) {
    struct dsi_hparams *hp = &L->m->hp;
    const int64_t big = (int64_t)1 << 31;
    hp->n_layer = key_int(L, "block_count", -1, 1, 10000);
    hp->n_embd = key_int(L, "embedding_length", -1, 1, big);
    hp->n_ff = key_int(L, "feed_forward_length", -1, 1, big);
    hp->n_head = (int)key_int(L, "attention.head_count", -1, 1, 4096);
    hp->n_head_kv = (int)key_int(L, "attention.head_count_kv", hp->n_head, 1, 4096);
    hp->n_ctx_train = key_int(L, "context_length", 4096, 1, big);
    if (L->st) return;
    int64_t hd = hp->n_embd / hp->n_head;
    hp->head_dim = (int)key_int(L, "attention.key_length", hd, 1, 65536);
    hp->head_dim_v = (int)key_int(L, "attention.value_length", hp->head_dim, 1, 65536);
    hp->rope_dims = (int)key_int(L, "rope.dimension_count", hp->head_dim, 2, hp->head_dim);
    hp->eps = key_f32(L, "attention.layer_norm_rms_epsilon", 1e-6f);
    hp->rope_theta = key_f32(L, "rope.freq_base", 10000.0f);
    hp->rope_linear = 1.0f;
    if (L->st) return;
    if (hp->n_head % hp->n_head_kv != 0) {
        DSI_LOG_ERR("model: head_count %d is not a multiple of head_count_kv %d", hp->n_head,
                    hp->n_head_kv);
        L->st = DSI_ERR_FORMAT;
    }
    if (hp->rope_dims % 2 || !(hp->eps > 0) || !(hp->rope_theta > 0)) {
        DSI_LOG_ERR("model: invalid rope dimension count, epsilon or rope base");
        L->st = DSI_ERR_FORMAT;
    }
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", L->arch);
    struct dsi_gguf_str stype;
    if (dsi_gguf_get_str(L->g, key, &stype) == DSI_OK) {
        if (stype.len == 6 && !memcmp(stype.ptr, "linear", 6)) {
            hp->rope_linear = key_f32(L, "rope.scaling.factor", 1.0f);
            if (!(hp->rope_linear > 0)) L->st = DSI_ERR_FORMAT;
        } else if (stype.len == 4 && !memcmp(stype.ptr, "yarn", 4) && hp->arch == DSI_ARCH_DEEPSEEK2) {
            hp->yarn_factor = key_f32(L, "rope.scaling.factor", 1.0f);
            hp->yarn_orig_ctx = key_int(L, "rope.scaling.original_context_length", hp->n_ctx_train, 1, big);
            hp->yarn_beta_fast = key_f32(L, "rope.scaling.yarn_beta_fast", 32.0f);
            hp->yarn_beta_slow = key_f32(L, "rope.scaling.yarn_beta_slow", 1.0f);
            hp->yarn_log_mul = key_f32(L, "rope.scaling.yarn_log_multiplier", 0.0f);
            if (!(hp->yarn_factor >= 1.0f) || !(hp->yarn_beta_fast > 0) || !(hp->yarn_beta_slow > 0)) {
                DSI_LOG_ERR("model: invalid YaRN parameters (factor %g, beta %g/%g)",
                            hp->yarn_factor, hp->yarn_beta_fast, hp->yarn_beta_slow);
                L->st = DSI_ERR_FORMAT;
            }
        } else if (!(stype.len == 4 && !memcmp(stype.ptr, "none", 4))) {
            DSI_LOG_ERR("model: rope scaling type '%.*s' is not supported for %s",
                        (int)(stype.len > 20 ? 20 : stype.len), stype.ptr, L->arch);
            L->st = DSI_ERR_UNSUPPORTED;
        }
    }
}

/* deepseek2 (models.md D, gguf.md 2.2): MLA sizes, MoE, and the two attention layouts. The
 * current layout says head_count_kv 1, key_length kv_lora + rope and value_length kv_lora
 * (the absorbed view) with the per-head sizes in key_length_mla / value_length_mla; the
 * legacy one says the per-head sizes in key_length / value_length. */
static void read_hparams_moe(struct loader *L);
static void read_hparams_deepseek2(struct loader *L) {
    struct dsi_hparams *hp = &L->m->hp;
    hp->q_lora_rank = (int)key_int(L, "attention.q_lora_rank", 0, 0, 65536);
    hp->kv_lora_rank = (int)key_int(L, "attention.kv_lora_rank", -1, 1, 65536);
    int64_t klen = key_int(L, "attention.key_length_mla", 0, 0, 65536);
    int64_t vlen = key_int(L, "attention.value_length_mla", 0, 0, 65536);
    if (L->st) return;
    if (!klen) klen = hp->head_dim;
    if (!vlen) vlen = hp->head_dim_v;
    hp->n_head_kv = hp->n_head; /* each head has its own keys (naive form) */
    if (klen == hp->kv_lora_rank + hp->rope_dims && hp->head_dim == klen) {
        DSI_LOG_ERR("model: deepseek2 file has no attention.key_length_mla; cannot tell the "
                    "per-head key size");
        L->st = DSI_ERR_FORMAT;
        return;
    }
    hp->head_dim = (int)klen;
    hp->head_dim_v = (int)vlen;
    hp->qk_nope = hp->head_dim - hp->rope_dims;
    if (hp->qk_nope <= 0) {
        DSI_LOG_ERR("model: rope dimension count %d is not below the key length %d", hp->rope_dims,
                    hp->head_dim);
        L->st = DSI_ERR_FORMAT;
        return;
    }
    read_hparams_moe(L);
    if (L->st) return;
    /* softmax scale 1/sqrt(qk head) times YaRN's mscale(s, mscale_all_dim)^2; the file stores
     * 0.1 * mscale_all_dim as yarn_log_multiplier (models.md D.3) */
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    if (hp->yarn_factor > 1.0f && hp->yarn_log_mul != 0.0f) {
        float ms = 1.0f + hp->yarn_log_mul * logf(hp->yarn_factor);
        hp->attn_scale *= ms * ms;
    }
}

/* DeepSeekMoE (models.md 0.6; deepseek and deepseek2): the first leading_dense_block_count
 * layers are dense, the others route to experts. */
static void read_hparams_moe(struct loader *L) {
    struct dsi_hparams *hp = &L->m->hp;
    const int64_t big = (int64_t)1 << 31;
    hp->n_layer_dense = (int)key_int(L, "leading_dense_block_count", 0, 0, hp->n_layer);
    hp->n_expert = (int)key_int(L, "expert_count", 0, 0, 4096);
    if (hp->n_layer_dense < hp->n_layer) {
        hp->n_expert = (int)key_int(L, "expert_count", -1, 1, 4096);
        if (L->st) return;
        hp->n_expert_used = (int)key_int(L, "expert_used_count", -1, 1, hp->n_expert);
        hp->n_expert_shared = (int)key_int(L, "expert_shared_count", 0, 0, 4096);
        hp->n_ff_exp = key_int(L, "expert_feed_forward_length", -1, 1, big);
        hp->n_group = (int)key_int(L, "expert_group_count", 1, 1, hp->n_expert);
        hp->n_group_used = (int)key_int(L, "expert_group_used_count", hp->n_group, 1, hp->n_group);
        hp->gating = (enum dsi_gating)key_int(L, "expert_gating_func", DSI_GATING_SOFTMAX, 1, 2);
        hp->expert_scale = key_f32(L, "expert_weights_scale", 1.0f);
        char key[128];
        snprintf(key, sizeof key, "%s.expert_weights_norm", L->arch);
        bool b = false;
        hp->expert_norm = dsi_gguf_get_bool(L->g, key, &b) == DSI_OK && b;
        if (!L->st && hp->n_expert % hp->n_group) {
            DSI_LOG_ERR("model: %d experts do not split into %d groups", hp->n_expert, hp->n_group);
            L->st = DSI_ERR_FORMAT;
        }
    }
}

/* ---- tensors --------------------------------------------------------------------------- */

/* Types the CPU kernels compute with: float weights and every quantized type with an
 * integer dot product. */
static bool is_compute_type(enum dsi_type t) {
    const struct dsi_type_kernels *kt = dsi_kernels(t);
    return kt && kt->to_f32 && (kt->dot_f32 || kt->dot_q8);
}

/* Bind tensor `name` with the expected shape (ne1 = 0 for 1-D). Absent and !required: the
 * result has data == NULL. */
static struct dsi_tensor bind3(struct loader *L, const char *name, int64_t ne0, int64_t ne1,
                               int64_t ne2, bool required) {
    struct dsi_tensor t = {0};
    if (L->st) return t;
    const struct dsi_gguf_tensor *gt = dsi_gguf_find_tensor(L->g, name);
    if (!gt) {
        if (required) {
            DSI_LOG_ERR("model: tensor '%s' is missing", name);
            L->st = DSI_ERR_FORMAT;
        }
        return t;
    }
    int64_t want1 = ne1 ? ne1 : 1;
    /* a stack of ne2 matrices may also be stored flattened to 2-D (ik_llama.cpp's attn_k_b) */
    bool flat = ne2 > 1 && gt->ne[0] == ne0 && gt->ne[1] == want1 * ne2 && gt->ne[2] == 1;
    if (!flat && (gt->ne[0] != ne0 || gt->ne[1] != want1 || gt->ne[2] != ne2 || gt->ne[3] != 1)) {
        if (ne2 > 1)
            DSI_LOG_ERR("model: tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]",
                        name, (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2],
                        (long long)ne0, (long long)want1, (long long)ne2);
        else
            DSI_LOG_ERR("model: tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld]",
                        name, (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2],
                        (long long)ne0, (long long)want1);
        L->st = DSI_ERR_FORMAT;
        return t;
    }
    if (!is_compute_type(gt->type)) {
        DSI_LOG_ERR("model: tensor '%s' has type %s, which dsinfer cannot compute with (supported: "
                    "f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs)",
                    name, dsi_type_name(gt->type));
        L->st = DSI_ERR_UNSUPPORTED;
        return t;
    }
    t = dsi_tensor_make(gt->type, ne0, want1, ne2, 1, (void *)gt->data);
    t.name = gt->name;
    L->m->n_params += (uint64_t)dsi_tensor_nelements(&t);
    L->m->weight_bytes += gt->nbytes;
    return t;
}

static struct dsi_tensor bind(struct loader *L, const char *name, int64_t ne0, int64_t ne1,
                              bool required) {
    return bind3(L, name, ne0, ne1, 1, required);
}

/* A small vector (norm weight, bias) as f32: the file's data when it is f32, else a copy. */
static const float *bind_vec(struct loader *L, const char *name, int64_t n, bool required) {
    struct dsi_tensor t = bind(L, name, n, 0, required);
    if (!t.data) return NULL;
    if (t.type == DSI_TYPE_F32) return t.data;
    float *v = malloc((size_t)n * sizeof *v);
    float **o = realloc(L->m->owned, (size_t)(L->m->n_owned + 1) * sizeof *o);
    if (!v || !o) {
        free(v);
        if (o) L->m->owned = o;
        L->st = DSI_ERR_NOMEM;
        return NULL;
    }
    L->m->owned = o;
    o[L->m->n_owned++] = v;
    dsi_kernels(t.type)->to_f32(t.data, v, n);
    return v;
}

static void bind_ffn(struct loader *L, struct dsi_layer *l, int64_t i);
static void bind_layer_deepseek2(struct loader *L, struct dsi_layer *l, int64_t i) {
    struct dsi_model *m = L->m;
    struct dsi_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, H = hp->n_head, R = hp->kv_lora_rank;
    int64_t qk = hp->head_dim, nope = hp->qk_nope, v = hp->head_dim_v;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)i), n)
    l->attn_norm = bind_vec(L, NAME("attn_norm.weight"), E, true);
    if (hp->q_lora_rank) {
        l->wq_a = bind(L, NAME("attn_q_a.weight"), E, hp->q_lora_rank, true);
        l->q_a_norm = bind_vec(L, NAME("attn_q_a_norm.weight"), hp->q_lora_rank, true);
        l->wq_b = bind(L, NAME("attn_q_b.weight"), hp->q_lora_rank, H * qk, true);
    } else {
        l->wq = bind(L, NAME("attn_q.weight"), E, H * qk, true);
    }
    l->wkv_a = bind(L, NAME("attn_kv_a_mqa.weight"), E, R + hp->rope_dims, true);
    l->kv_a_norm = bind_vec(L, NAME("attn_kv_a_norm.weight"), R, true);
    /* the layout is decided by layer 0 and must hold for every layer */
    if (i == 0) hp->mla_legacy = !dsi_gguf_find_tensor(L->g, NAME("attn_k_b.weight"));
    if (hp->mla_legacy) {
        l->wkv_b = bind(L, NAME("attn_kv_b.weight"), R, H * (nope + v), true);
    } else {
        l->wk_b = bind3(L, NAME("attn_k_b.weight"), nope, R, H, true);
        l->wv_b = bind3(L, NAME("attn_v_b.weight"), R, v, H, true);
    }
    l->wo = bind(L, NAME("attn_output.weight"), H * v, E, true);
#undef NAME
    bind_ffn(L, l, i);
}

/* The feed-forward of layer i: dense SwiGLU, or (from leading_dense_block_count on, when the
 * model has experts) DeepSeekMoE. */
static void bind_ffn(struct loader *L, struct dsi_layer *l, int64_t i) {
    const struct dsi_hparams *hp = &L->m->hp;
    int64_t E = hp->n_embd;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)i), n)
    l->ffn_norm = bind_vec(L, NAME("ffn_norm.weight"), E, true);
    l->moe = hp->n_expert > 0 && i >= hp->n_layer_dense;
    if (!l->moe) {
        l->w_gate = bind(L, NAME("ffn_gate.weight"), E, hp->n_ff, true);
        l->w_up = bind(L, NAME("ffn_up.weight"), E, hp->n_ff, true);
        l->w_down = bind(L, NAME("ffn_down.weight"), hp->n_ff, E, true);
    } else {
        int64_t X = hp->n_expert, F = hp->n_ff_exp;
        l->router = bind(L, NAME("ffn_gate_inp.weight"), E, X, true);
        l->router_bias = bind_vec(L, NAME("exp_probs_b.bias"), X, false);
        l->w_gate_exps = bind3(L, NAME("ffn_gate_exps.weight"), E, F, X, true);
        l->w_up_exps = bind3(L, NAME("ffn_up_exps.weight"), E, F, X, true);
        l->w_down_exps = bind3(L, NAME("ffn_down_exps.weight"), F, E, X, true);
        if (hp->n_expert_shared) {
            int64_t S = F * hp->n_expert_shared;
            l->w_gate_sh = bind(L, NAME("ffn_gate_shexp.weight"), E, S, true);
            l->w_up_sh = bind(L, NAME("ffn_up_shexp.weight"), E, S, true);
            l->w_down_sh = bind(L, NAME("ffn_down_shexp.weight"), S, E, true);
        }
    }
#undef NAME
}

static void bind_layers(struct loader *L) {
    struct dsi_model *m = L->m;
    const struct dsi_hparams *hp = &m->hp;
    int64_t E = hp->n_embd;
    int64_t q = (int64_t)hp->n_head * hp->head_dim, kv = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t vv = (int64_t)hp->n_head_kv * hp->head_dim_v, o = (int64_t)hp->n_head * hp->head_dim_v;
    char n[96];
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    m->gpu_from = (int)hp->n_layer;
    if (!m->layers) {
        L->st = DSI_ERR_NOMEM;
        return;
    }
    for (int64_t i = 0; i < hp->n_layer && !L->st; i++) {
        struct dsi_layer *l = &m->layers[i];
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)i), n)
        if (hp->arch == DSI_ARCH_DEEPSEEK2) {
            bind_layer_deepseek2(L, l, i);
            continue;
        }
        l->attn_norm = bind_vec(L, NAME("attn_norm.weight"), E, true);
        l->wq = bind(L, NAME("attn_q.weight"), E, q, true);
        l->wk = bind(L, NAME("attn_k.weight"), E, kv, true);
        l->wv = bind(L, NAME("attn_v.weight"), E, vv, true);
        l->bq = bind_vec(L, NAME("attn_q.bias"), q, false);
        l->bk = bind_vec(L, NAME("attn_k.bias"), kv, false);
        l->bv = bind_vec(L, NAME("attn_v.bias"), vv, false);
        l->wo = bind(L, NAME("attn_output.weight"), o, E, true);
#undef NAME
        bind_ffn(L, l, i);
    }
}

/* inv_freq[i] = 1 / base^(2i/d), in f32 as PyTorch computes it; divided by llama3's
 * rope_freqs factors or by a linear scaling factor.
 *
 * Then rounded to the weights' storage type when that is bf16 or f16: Hugging Face keeps
 * inv_freq as a module buffer, which moves to the model's dtype with the weights, so a bf16
 * checkpoint runs its rotary embedding with bf16-rounded frequencies (even when upcast to
 * f32 afterwards). The reference fixtures show it: with exact frequencies the hidden states
 * drift from transformers' by ~1e-3 relative, growing with position; with bf16-rounded ones
 * they agree to 1e-6. Quantized files carry no trace of the source dtype: exact there, as
 * llama.cpp does. DeepSeek-VL2's own code (its rotary classes, not transformers') keeps them
 * in f32 whatever the weights: exact for models with its vision encoder (the VL2 fixtures
 * agree to 1e-6 that way, to 1e-2 with rounding). */
static void build_rope(struct loader *L) {
    struct dsi_model *m = L->m;
    bool exact = false;
    dsi_gguf_get_bool(L->g, "clip.has_vision_encoder", &exact);
    int half = m->hp.rope_dims / 2;
    m->rope_inv_freq = malloc((size_t)half * sizeof(float));
    if (!m->rope_inv_freq) {
        L->st = DSI_ERR_NOMEM;
        return;
    }
    const float *factors = bind_vec(L, "rope_freqs.weight", half, false);
    const struct dsi_hparams *hp = &m->hp;
    /* YaRN (models.md D.3): frequencies above the ramp keep their value, those below are
     * divided by the factor, a linear blend between */
    float low = 0, high = 0;
    if (hp->yarn_factor > 1.0f) {
        double d = hp->rope_dims, lb = 2.0 * log(hp->rope_theta), L0 = (double)hp->yarn_orig_ctx;
        double cf = d * log(L0 / (2.0 * M_PI * hp->yarn_beta_fast)) / lb;
        double cs = d * log(L0 / (2.0 * M_PI * hp->yarn_beta_slow)) / lb;
        low = (float)fmax(0.0, floor(cf));
        high = (float)fmin(d - 1, ceil(cs));
        if (high == low) high += 0.001f;
    }
    for (int i = 0; i < half; i++) {
        float f = 1.0f / powf(m->hp.rope_theta, (float)(2 * i) / (float)m->hp.rope_dims);
        if (factors) f /= factors[i];
        f /= m->hp.rope_linear;
        if (hp->yarn_factor > 1.0f) {
            float ramp = ((float)i - low) / (high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float keep = 1.0f - ramp;
            float interp = 1.0f / (hp->yarn_factor * powf(hp->rope_theta, (float)(2 * i) / (float)hp->rope_dims));
            f = interp * (1.0f - keep) + f * keep;
        }
        if (exact) {
        } else if (m->tok_embd.type == DSI_TYPE_BF16) f = dsi_bf16_to_f32(dsi_f32_to_bf16(f));
        else if (m->tok_embd.type == DSI_TYPE_F16) f = dsi_f16_to_f32(dsi_f32_to_f16(f));
        m->rope_inv_freq[i] = f;
    }
}

static enum dsi_status load_gguf(struct dsi_gguf *g, const char *label, struct dsi_model **out) {
    struct dsi_model *m = calloc(1, sizeof *m);
    if (!m) {
        dsi_gguf_free(g);
        return DSI_ERR_NOMEM;
    }
    m->gguf = g;
    struct loader L = {m, g, "", DSI_OK};
    struct dsi_gguf_str arch;
    if (dsi_gguf_get_str(g, "general.architecture", &arch) != DSI_OK || arch.len == 0 ||
        arch.len >= sizeof L.arch) {
        DSI_LOG_ERR("model '%s': no valid general.architecture key", label);
        dsi_model_free(m);
        return DSI_ERR_FORMAT;
    }
    memcpy(L.arch, arch.ptr, arch.len);
    L.arch[arch.len] = '\0';
    if (!strcmp(L.arch, "qwen2")) {
        m->hp.arch = DSI_ARCH_QWEN2;
        m->hp.rope_mode = DSI_ROPE_NEOX;
    } else if (!strcmp(L.arch, "llama")) {
        m->hp.arch = DSI_ARCH_LLAMA;
        m->hp.rope_mode = DSI_ROPE_NORM; /* llama.cpp's converter permuted q/k for it */
    } else if (!strcmp(L.arch, "deepseek2")) {
        m->hp.arch = DSI_ARCH_DEEPSEEK2;
        m->hp.rope_mode = DSI_ROPE_NORM; /* interleaved pairs (models.md 0.4) */
    } else if (!strcmp(L.arch, "deepseek")) {
        m->hp.arch = DSI_ARCH_DEEPSEEK; /* DeepSeekMoE v1: MHA + experts (VL2-Tiny) */
        m->hp.rope_mode = DSI_ROPE_NORM; /* q/k permuted by the converter, as for llama */
    } else {
        DSI_LOG_ERR("model '%s': architecture '%s' is not supported (qwen2, llama, deepseek, "
                    "deepseek2)",
                    label, L.arch);
        dsi_model_free(m);
        return DSI_ERR_UNSUPPORTED;
    }
    struct dsi_gguf_str nm;
    if (dsi_gguf_get_str(g, "general.name", &nm) == DSI_OK) m->name = strndup(nm.ptr, (size_t)nm.len);
    else {
        const char *b = strrchr(label, '/');
        m->name = strdup(b ? b + 1 : label);
    }
    read_hparams(&L);
    if (!L.st && m->hp.arch == DSI_ARCH_DEEPSEEK2) read_hparams_deepseek2(&L);
    if (!L.st && m->hp.arch == DSI_ARCH_DEEPSEEK) read_hparams_moe(&L);
    if (!L.st) {
        const struct dsi_gguf_tensor *te = dsi_gguf_find_tensor(g, "token_embd.weight");
        if (!te) {
            DSI_LOG_ERR("model: tensor 'token_embd.weight' is missing");
            L.st = DSI_ERR_FORMAT;
        } else {
            m->hp.n_vocab = te->ne[1];
            m->tok_embd = bind(&L, "token_embd.weight", m->hp.n_embd, m->hp.n_vocab, true);
            m->out_norm = bind_vec(&L, "output_norm.weight", m->hp.n_embd, true);
            m->output = bind(&L, "output.weight", m->hp.n_embd, m->hp.n_vocab, false);
            if (!L.st && !m->output.data) m->output = m->tok_embd; /* tied embeddings */
        }
    }
    if (!L.st) bind_layers(&L);
    if (!L.st) build_rope(&L);
    if (!L.st) L.st = dsi_vl2_load(g, m->hp.n_embd, &m->vl2);
    if (!L.st && m->vl2) {
        struct dsi_vl2_info vi = dsi_vl2_get_info(m->vl2);
        m->n_params += vi.n_params;
        m->weight_bytes += vi.n_bytes;
    }
    if (!L.st) L.st = dsi_tokenizer_load_gguf(g, &m->tok);
    if (!L.st && dsi_tokenizer_n_vocab(m->tok) > m->hp.n_vocab) {
        DSI_LOG_ERR("model: the tokenizer has %d tokens but the embedding only %lld rows",
                    dsi_tokenizer_n_vocab(m->tok), (long long)m->hp.n_vocab);
        L.st = DSI_ERR_FORMAT;
    }
    if (L.st) {
        if (L.st == DSI_ERR_NOMEM) DSI_LOG_ERR("model '%s': out of memory", label);
        dsi_model_free(m);
        return L.st;
    }
    *out = m;
    return DSI_OK;
}

struct dsi_model_params dsi_model_default_params(void) {
    struct dsi_model_params p = {.load = DSI_LOAD_AUTO, .no_repack = false, .n_gpu_layers = 0,
                                 .gpu_device = -1, .vram_budget = 0, .gpu_ctx = 0, .gpu_seqs = 0,
                                 .gpu_validation = false};
    return p;
}

/* A matrix that can be repacked and has a kernel on this CPU. */
static bool repackable(const struct dsi_tensor *t) {
    return dsi_repack_possible(t) && dsi_kernels_mm_x16(dsi_x16_layout(t->type));
}

/* The matrices only the matmul operators read (not the embedding table, which the output
 * head may share); the per-head stacks of latent attention too (their transposed use in the
 * naive form unpacks rows from the panels). */
static int repack_candidates(struct dsi_model *m, struct dsi_tensor **out) {
    int n = 0;
    for (int64_t il = 0; il < m->hp.n_layer; il++) {
        struct dsi_layer *l = &m->layers[il];
        struct dsi_tensor *c[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up,
                                  &l->w_down, &l->wq_a, &l->wq_b, &l->wkv_a, &l->w_gate_exps,
                                  &l->w_up_exps, &l->w_down_exps, &l->w_gate_sh, &l->w_up_sh,
                                  &l->w_down_sh, &l->wk_b, &l->wv_b};
        for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
            if (c[i]->data && il < m->gpu_from && repackable(c[i])) {
                if (out) out[n] = c[i];
                n++;
            }
    }
    if (m->output.data && m->output.data != m->tok_embd.data && !m->gpu_out &&
        repackable(&m->output)) {
        if (out) out[n] = &m->output;
        n++;
    }
    return n;
}

/* Repack the Q4_0, Q8_0 and Q4_K matrices into 16-row panels where this CPU has the kernel: in place when
 * the weights were copied into memory, else into one buffer of their size. */
static enum dsi_status repack_weights(struct dsi_model *m) {
    int n = repack_candidates(m, NULL);
    if (!n) return DSI_OK;
    struct dsi_tensor **ts = malloc((size_t)n * sizeof *ts);
    if (!ts) return DSI_ERR_NOMEM;
    repack_candidates(m, ts);
    bool in_place = dsi_model_weights_copied(m) && dsi_gguf_copy_writable(m->gguf, true);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += dsi_tensor_nbytes(ts[i]);
    uint8_t *buf = NULL;
    if (!in_place) {
        size_t align = (size_t)2 << 20, sz = (total + align - 1) / align * align;
        buf = aligned_alloc(align, sz);
        if (!buf) {
            free(ts);
            DSI_LOG_WRN("model: no memory to repack %.1f MiB of weights; using the row layout",
                        total / 1048576.0);
            return DSI_OK;
        }
        madvise(buf, sz, MADV_HUGEPAGE);
        m->repacked = buf;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t sz = dsi_tensor_nbytes(ts[i]);
        void *dst = in_place ? ts[i]->data : buf + off;
        if (!dsi_repack(ts[i], dst)) {
            if (in_place) dsi_gguf_copy_writable(m->gguf, false);
            free(ts);
            return DSI_ERR_NOMEM; /* in place: a panel's scratch could not be allocated */
        }
        off += sz;
        m->repacked_bytes += sz;
    }
    if (in_place) dsi_gguf_copy_writable(m->gguf, false);
    free(ts);
    return DSI_OK;
}

uint64_t dsi_model_repacked_bytes(const struct dsi_model *m) { return m->repacked_bytes; }

enum dsi_status dsi_model_load(const char *path, struct dsi_model **out) {
    struct dsi_model_params p = dsi_model_default_params();
    return dsi_model_load_ex(path, &p, out);
}

bool dsi_model_weights_copied(const struct dsi_model *m) { return dsi_gguf_is_copy(m->gguf); }

enum dsi_status dsi_model_load_ex(const char *path, const struct dsi_model_params *mp,
                                  struct dsi_model **out) {
    *out = NULL;
    struct dsi_gguf *g;
    enum dsi_status st;
    if (dsi_path_is_dir(path)) {
        struct dsi_convert_params p = {path, NULL, -1, false};
        void *mem;
        size_t size;
        st = dsi_convert_to_memory(&p, &mem, &size);
        if (st) return st;
        st = dsi_gguf_open_owned(mem, size, path, &g);
    } else {
        st = dsi_gguf_open_mode(path, mp ? mp->load : DSI_LOAD_AUTO, &g);
    }
    if (st) return st;
    st = load_gguf(g, path, out);
    if (st) return st;
    if (mp && mp->n_gpu_layers != 0 && (st = dsi_model_offload(*out, mp))) {
        dsi_model_free(*out);
        *out = NULL;
        return st;
    }
    if (mp && (mp->no_repack || mp->load == DSI_LOAD_MMAP)) return st;
    st = repack_weights(*out);
    if (st) {
        DSI_LOG_ERR("model '%s': out of memory while repacking the weights", path);
        dsi_model_free(*out);
        *out = NULL;
    }
    return st;
}

void dsi_model_free(struct dsi_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->rope_inv_freq);
    free(m->name);
    dsi_tokenizer_free(m->tok);
    dsi_gguf_free(m->gguf);
    free(m->repacked);
    dsi_vl2_free(m->vl2); /* its GPU backend before the device */
    dsi_vk_close(m->vk);
    free(m);
}

const struct dsi_tokenizer *dsi_model_tokenizer(const struct dsi_model *m) { return m->tok; }
const char *dsi_model_arch(const struct dsi_model *m) {
    switch (m->hp.arch) {
    case DSI_ARCH_QWEN2: return "qwen2";
    case DSI_ARCH_LLAMA: return "llama";
    case DSI_ARCH_DEEPSEEK: return "deepseek";
    case DSI_ARCH_DEEPSEEK2: return "deepseek2";
    }
    return "?";
}

uint64_t dsi_model_kv_bytes_per_token(const struct dsi_model *m, enum dsi_type kv_type,
                                      bool mla_naive) {
    const struct dsi_hparams *hp = &m->hp;
    uint64_t per_layer = (uint64_t)hp->n_head_kv * (uint64_t)(hp->head_dim + hp->head_dim_v);
    if (hp->arch == DSI_ARCH_DEEPSEEK2 && !mla_naive)
        per_layer = (uint64_t)(hp->kv_lora_rank + hp->rope_dims);
    return per_layer * (uint64_t)hp->n_layer * (uint64_t)dsi_type_traits(kv_type)->size;
}
const char *dsi_model_name(const struct dsi_model *m) { return m->name ? m->name : "model"; }
const char *dsi_model_chat_template(const struct dsi_model *m) {
    return dsi_tokenizer_chat_template(m->tok);
}
int64_t dsi_model_n_vocab(const struct dsi_model *m) { return m->hp.n_vocab; }
int64_t dsi_model_n_ctx_train(const struct dsi_model *m) { return m->hp.n_ctx_train; }
int64_t dsi_model_n_embd(const struct dsi_model *m) { return m->hp.n_embd; }
int64_t dsi_model_n_layer(const struct dsi_model *m) { return m->hp.n_layer; }
uint64_t dsi_model_n_params(const struct dsi_model *m) { return m->n_params; }
uint64_t dsi_model_weight_bytes(const struct dsi_model *m) { return m->weight_bytes; }
