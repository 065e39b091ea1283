/* Model loading: GGUF metadata -> hyper-parameters, tensors -> checked views, tokenizer.
 * A Hugging Face directory is converted to GGUF in memory first (src/convert.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", L->arch);
    struct dsi_gguf_str stype;
    if (dsi_gguf_get_str(L->g, key, &stype) == DSI_OK) {
        if (stype.len == 6 && !memcmp(stype.ptr, "linear", 6)) {
            hp->rope_linear = key_f32(L, "rope.scaling.factor", 1.0f);
            if (!(hp->rope_linear > 0)) L->st = DSI_ERR_FORMAT;
        } else if (!(stype.len == 4 && !memcmp(stype.ptr, "none", 4))) {
            DSI_LOG_ERR("model: rope scaling type '%.*s' is not supported for %s",
                        (int)(stype.len > 20 ? 20 : stype.len), stype.ptr, L->arch);
            L->st = DSI_ERR_UNSUPPORTED;
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
static struct dsi_tensor bind(struct loader *L, const char *name, int64_t ne0, int64_t ne1,
                              bool required) {
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
    if (gt->ne[0] != ne0 || gt->ne[1] != want1 || gt->ne[2] != 1 || gt->ne[3] != 1) {
        DSI_LOG_ERR("model: tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld]", name,
                    (long long)gt->ne[0], (long long)gt->ne[1], (long long)gt->ne[2],
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
    t = dsi_tensor_make(gt->type, gt->ne[0], gt->ne[1], gt->ne[2], gt->ne[3], (void *)gt->data);
    t.name = gt->name;
    L->m->n_params += (uint64_t)dsi_tensor_nelements(&t);
    L->m->weight_bytes += gt->nbytes;
    return t;
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

static void bind_layers(struct loader *L) {
    struct dsi_model *m = L->m;
    const struct dsi_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, F = hp->n_ff;
    int64_t q = (int64_t)hp->n_head * hp->head_dim, kv = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t vv = (int64_t)hp->n_head_kv * hp->head_dim_v, o = (int64_t)hp->n_head * hp->head_dim_v;
    char n[96];
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        L->st = DSI_ERR_NOMEM;
        return;
    }
    for (int64_t i = 0; i < hp->n_layer && !L->st; i++) {
        struct dsi_layer *l = &m->layers[i];
#define NAME(s) (snprintf(n, sizeof n, "blk.%lld." s, (long long)i), n)
        l->attn_norm = bind_vec(L, NAME("attn_norm.weight"), E, true);
        l->wq = bind(L, NAME("attn_q.weight"), E, q, true);
        l->wk = bind(L, NAME("attn_k.weight"), E, kv, true);
        l->wv = bind(L, NAME("attn_v.weight"), E, vv, true);
        l->bq = bind_vec(L, NAME("attn_q.bias"), q, false);
        l->bk = bind_vec(L, NAME("attn_k.bias"), kv, false);
        l->bv = bind_vec(L, NAME("attn_v.bias"), vv, false);
        l->wo = bind(L, NAME("attn_output.weight"), o, E, true);
        l->ffn_norm = bind_vec(L, NAME("ffn_norm.weight"), E, true);
        l->w_gate = bind(L, NAME("ffn_gate.weight"), E, F, true);
        l->w_up = bind(L, NAME("ffn_up.weight"), E, F, true);
        l->w_down = bind(L, NAME("ffn_down.weight"), F, E, true);
#undef NAME
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
 * llama.cpp does. */
static void build_rope(struct loader *L) {
    struct dsi_model *m = L->m;
    int half = m->hp.rope_dims / 2;
    m->rope_inv_freq = malloc((size_t)half * sizeof(float));
    if (!m->rope_inv_freq) {
        L->st = DSI_ERR_NOMEM;
        return;
    }
    const float *factors = bind_vec(L, "rope_freqs.weight", half, false);
    for (int i = 0; i < half; i++) {
        float f = 1.0f / powf(m->hp.rope_theta, (float)(2 * i) / (float)m->hp.rope_dims);
        if (factors) f /= factors[i];
        f /= m->hp.rope_linear;
        if (m->tok_embd.type == DSI_TYPE_BF16) f = dsi_bf16_to_f32(dsi_f32_to_bf16(f));
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
    } else {
        DSI_LOG_ERR("model '%s': architecture '%s' is not supported (qwen2, llama)", label, L.arch);
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

enum dsi_status dsi_model_load(const char *path, struct dsi_model **out) {
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
        st = dsi_gguf_open(path, &g);
    }
    if (st) return st;
    return load_gguf(g, path, out);
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
    free(m);
}

const struct dsi_tokenizer *dsi_model_tokenizer(const struct dsi_model *m) { return m->tok; }
const char *dsi_model_arch(const struct dsi_model *m) {
    return m->hp.arch == DSI_ARCH_QWEN2 ? "qwen2" : "llama";
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
