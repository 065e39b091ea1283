/* Hugging Face -> GGUF converter (see convert.h).
 *
 * Three steps: read config.json into `struct dsi_hf_hparams`; build a plan (one `struct otensor`
 * per GGUF tensor, saying where its data comes from and how it is transformed); write the
 * key/values, declare the tensors, then stream each tensor's data through a bounded buffer.
 * Every source tensor must be used by the plan (or be known to be ignorable), so that a
 * checkpoint with an unexpected layout is an error rather than a silently broken file. */
#include "src/convert.h"
#include "src/convert_impl.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "core/gguf.h"
#include "core/safetensors.h"
#include "quant/quantize.h"
#include "src/tokenizer.h"

#define CHUNK_ELEMS ((int64_t)1 << 20)

/* ---- configuration --------------------------------------------------------------------- */

static const cJSON *jget(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static bool jnum(const cJSON *o, const char *k, double *out) {
    const cJSON *v = jget(o, k);
    if (!cJSON_IsNumber(v)) return false;
    *out = v->valuedouble;
    return true;
}

static bool jint(const cJSON *o, const char *k, int64_t *out) {
    double d;
    if (!jnum(o, k, &d) || d != floor(d) || d < 0 || d > 1e12) return false;
    *out = (int64_t)d;
    return true;
}

static enum dsi_status need_int(const cJSON *cfg, const char *k, int64_t *out, int64_t lo,
                                int64_t hi) {
    if (!jint(cfg, k, out) || *out < lo || *out > hi) {
        DSI_LOG_ERR("convert: config.json: '%s' is missing or not an integer in [%lld, %lld]", k,
                    (long long)lo, (long long)hi);
        return DSI_ERR_FORMAT;
    }
    return DSI_OK;
}

/* Rope settings: the newer `rope_parameters` block or the older top-level keys. */
static void read_rope(const cJSON *cfg, struct dsi_hf_hparams *h) {
    const cJSON *rp = jget(cfg, "rope_parameters");
    const cJSON *rs = jget(cfg, "rope_scaling");
    h->has_rope_theta = jnum(cfg, "rope_theta", &h->rope_theta) ||
                        (cJSON_IsObject(rp) && jnum(rp, "rope_theta", &h->rope_theta));
    const cJSON *src = cJSON_IsObject(rs) ? rs : (cJSON_IsObject(rp) ? rp : NULL);
    if (!src) return;
    const cJSON *ty = jget(src, "rope_type");
    if (!cJSON_IsString(ty)) ty = jget(src, "type");
    if (cJSON_IsString(ty)) snprintf(h->rope_type, sizeof h->rope_type, "%s", ty->valuestring);
    if (!strcmp(h->rope_type, "default")) h->rope_type[0] = '\0';
    h->has_factor = jnum(src, "factor", &h->rope_factor);
    h->has_orig_ctx = jint(src, "original_max_position_embeddings", &h->rope_orig_ctx);
    if (!jnum(src, "low_freq_factor", &h->low_freq)) h->low_freq = 1.0;
    if (!jnum(src, "high_freq_factor", &h->high_freq)) h->high_freq = 4.0;
    h->has_beta_fast = jnum(src, "beta_fast", &h->beta_fast);
    h->has_beta_slow = jnum(src, "beta_slow", &h->beta_slow);
    h->has_mscale_all_dim = jnum(src, "mscale_all_dim", &h->mscale_all_dim);
}

/* DeepSeek-VL2's vision_config, projector_config and candidate_resolutions (models.md C.2). */
static enum dsi_status read_config_vl2(const cJSON *root, struct dsi_hf_hparams *h) {
    const cJSON *vc = jget(root, "vision_config"), *pc = jget(root, "projector_config");
    if (!cJSON_IsObject(vc) || !cJSON_IsObject(pc)) {
        DSI_LOG_ERR("convert: config.json has no vision_config or projector_config");
        return DSI_ERR_FORMAT;
    }
    const cJSON *mn = jget(vc, "model_name"), *pt = jget(pc, "projector_type");
    if (cJSON_IsString(mn) && strncmp(mn->valuestring, "siglip", 6) != 0) {
        DSI_LOG_ERR("convert: vision model '%.60s' is not supported (SigLIP)", mn->valuestring);
        return DSI_ERR_UNSUPPORTED;
    }
    if (cJSON_IsString(pt) && strcmp(pt->valuestring, "downsample_mlp_gelu") != 0) {
        DSI_LOG_ERR("convert: projector_type '%.60s' is not supported (downsample_mlp_gelu)",
                    cJSON_IsString(pt) ? pt->valuestring : "(none)");
        return DSI_ERR_UNSUPPORTED;
    }
    const cJSON *cls = jget(vc, "class_token"), *tag = jget(root, "tile_tag"),
                *gpos = jget(root, "global_view_pos");
    if (cJSON_IsTrue(cls) || (cJSON_IsString(tag) && strcmp(tag->valuestring, "2D")) ||
        (cJSON_IsString(gpos) && strcmp(gpos->valuestring, "head"))) {
        DSI_LOG_ERR("convert: only the DeepSeek-VL2 layout is supported (no class token, "
                    "tile_tag 2D, global_view_pos head)");
        return DSI_ERR_UNSUPPORTED;
    }
    /* Keys the file leaves out take the official code's values: the SigLIP table entry of
     * model_name (so400m-patch14-384, the only tower VL2 ships) and the config classes'
     * defaults (image size 384; projector input 1152, downsample 2, n_embed = the language
     * model's width). A released VL2-Tiny config names only some of them. */
    const int64_t big = (int64_t)1 << 20;
    bool so400m = !cJSON_IsString(mn) || !strcmp(mn->valuestring, "siglip_so400m_patch14_384");
    const struct {
        const char *key;
        int64_t *out, lo, hi, dflt;
    } vk[] = {
        {"image_size", &h->v_image_size, 14, 4096, 384},
        {"patch_size", &h->v_patch, 1, 1024, so400m ? 14 : 0},
        {"width", &h->v_width, 1, big, so400m ? 1152 : 0},
        {"layers", &h->v_layers, 1, 1000, so400m ? 27 : 0},
        {"heads", &h->v_heads, 1, 1024, so400m ? 16 : 0},
    };
    enum dsi_status st = DSI_OK;
    for (size_t i = 0; i < sizeof vk / sizeof vk[0] && !st; i++) {
        if (!jget(vc, vk[i].key) && vk[i].dflt) *vk[i].out = vk[i].dflt;
        else st = need_int(vc, vk[i].key, vk[i].out, vk[i].lo, vk[i].hi);
    }
    double ratio = so400m ? 3.7362 : 0;
    if (!st && ((jget(vc, "mlp_ratio") && !jnum(vc, "mlp_ratio", &ratio)) || !(ratio > 0) || ratio > 64)) {
        DSI_LOG_ERR("convert: vision_config.mlp_ratio is missing or out of range");
        st = DSI_ERR_FORMAT;
    }
    h->v_ff = (int64_t)(h->v_width * ratio); /* timm: int(width * mlp_ratio) */
    if (!jint(pc, "input_dim", &h->mm_in)) h->mm_in = 1152;
    if (!jint(pc, "n_embed", &h->mm_embd)) h->mm_embd = h->n_embd;
    if (!st && !jint(pc, "downsample_ratio", &h->mm_downsample)) h->mm_downsample = 2;
    int64_t depth = 2, mratio = 1;
    jint(pc, "depth", &depth);
    jint(pc, "mlp_ratio", &mratio);
    if (!st && (depth != 2 || mratio != 1 || h->mm_downsample < 1 || h->mm_downsample > 8 ||
                h->mm_in != h->v_width || h->mm_embd != h->n_embd || h->v_width % h->v_heads)) {
        DSI_LOG_ERR("convert: projector (depth %lld, mlp_ratio %lld, downsample %lld, input %lld, "
                    "n_embed %lld) does not fit the vision width %lld and the language model's "
                    "hidden size %lld", (long long)depth, (long long)mratio,
                    (long long)h->mm_downsample, (long long)h->mm_in, (long long)h->mm_embd,
                    (long long)h->v_width, (long long)h->n_embd);
        st = DSI_ERR_FORMAT;
    }
    const cJSON *cr = jget(root, "candidate_resolutions");
    int n = cJSON_GetArraySize(cr);
    if (!st && (!cJSON_IsArray(cr) || n < 1 || n > 64)) {
        DSI_LOG_ERR("convert: candidate_resolutions is missing or has more than 64 entries");
        st = DSI_ERR_FORMAT;
    }
    for (int i = 0; i < n && !st; i++) {
        const cJSON *e = cJSON_GetArrayItem(cr, i);
        const cJSON *w = cJSON_GetArrayItem(e, 0), *hh = cJSON_GetArrayItem(e, 1);
        if (cJSON_GetArraySize(e) != 2 || !cJSON_IsNumber(w) || !cJSON_IsNumber(hh) ||
            w->valuedouble < 1 || hh->valuedouble < 1 || w->valuedouble > 65536 ||
            hh->valuedouble > 65536 || fmod(w->valuedouble, (double)h->v_image_size) != 0 ||
            fmod(hh->valuedouble, (double)h->v_image_size) != 0) {
            DSI_LOG_ERR("convert: candidate_resolutions[%d] is not a pair of multiples of %lld",
                        i, (long long)h->v_image_size);
            st = DSI_ERR_FORMAT;
            break;
        }
        h->cand[i][0] = (int32_t)w->valuedouble;
        h->cand[i][1] = (int32_t)hh->valuedouble;
    }
    h->n_cand = n;
    return st;
}

static enum dsi_status read_config(const char *dir, struct dsi_hf_hparams *h) {
    memset(h, 0, sizeof *h);
    char *path = dsi_path_join(dir, "config.json");
    if (!path) return DSI_ERR_NOMEM;
    char *text;
    size_t len;
    enum dsi_status st = dsi_file_read_all(path, 16 << 20, &text, &len);
    if (st) {
        free(path);
        return st;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *cfg = root;
    free(text);
    if (!cJSON_IsObject(cfg)) {
        DSI_LOG_ERR("convert: '%s' is not a JSON object", path);
        free(path);
        cJSON_Delete(root);
        return DSI_ERR_FORMAT;
    }
    free(path);
    const cJSON *archs = jget(cfg, "architectures");
    const cJSON *a0 = cJSON_GetArrayItem(archs, 0);
    const char *an = cJSON_IsString(a0) ? a0->valuestring : "(none)";
    if (!strcmp(an, "Qwen2ForCausalLM")) h->arch = DSI_HF_QWEN2, h->name = "qwen2";
    else if (!strcmp(an, "LlamaForCausalLM")) h->arch = DSI_HF_LLAMA, h->name = "llama";
    else if (!strcmp(an, "DeepseekV2ForCausalLM")) h->arch = DSI_HF_DEEPSEEK2, h->name = "deepseek2";
    else if (!strcmp(an, "DeepseekVLV2ForCausalLM")) {
        /* the language model is MLA (deepseek2) unless use_mla is false (VL2-Tiny: plain
         * multi-head attention, llama.cpp's "deepseek") */
        h->vl2 = true;
        cfg = jget(root, "language_config");
        if (!cJSON_IsObject(cfg)) {
            DSI_LOG_ERR("convert: config.json of DeepseekVLV2ForCausalLM has no language_config");
            cJSON_Delete(root);
            return DSI_ERR_FORMAT;
        }
        const cJSON *mla = jget(cfg, "use_mla");
        if (cJSON_IsFalse(mla)) h->arch = DSI_HF_DEEPSEEK, h->name = "deepseek";
        else h->arch = DSI_HF_DEEPSEEK2, h->name = "deepseek2";
    } else {
        DSI_LOG_ERR("convert: architecture '%.60s' is not supported (Qwen2ForCausalLM, "
                    "LlamaForCausalLM, DeepseekV2ForCausalLM, DeepseekVLV2ForCausalLM)", an);
        cJSON_Delete(root);
        return DSI_ERR_UNSUPPORTED;
    }
    const int64_t big = (int64_t)1 << 32;
    st = need_int(cfg, "num_hidden_layers", &h->n_layer, 1, 100000);
    if (!st) st = need_int(cfg, "hidden_size", &h->n_embd, 1, big);
    if (!st) st = need_int(cfg, "num_attention_heads", &h->n_head, 1, big);
    if (!st) st = need_int(cfg, "vocab_size", &h->n_vocab, 1, 1 << 24);
    if (!st) st = need_int(cfg, "intermediate_size", &h->n_ff, 1, big);
    if (!st && !jint(cfg, "num_key_value_heads", &h->n_head_kv)) h->n_head_kv = h->n_head;
    h->has_head_dim = jint(cfg, "head_dim", &h->head_dim) && h->head_dim > 0;
    h->has_n_ctx = jint(cfg, "max_position_embeddings", &h->n_ctx);
    h->has_rms_eps = jnum(cfg, "rms_norm_eps", &h->rms_eps);
    const cJSON *tie = jget(cfg, "tie_word_embeddings");
    h->tie = cJSON_IsTrue(tie);
    read_rope(cfg, h);
    if (!st && (h->n_head_kv < 1 || h->n_head % h->n_head_kv != 0)) {
        DSI_LOG_ERR("convert: num_key_value_heads %lld does not divide num_attention_heads %lld",
                    (long long)h->n_head_kv, (long long)h->n_head);
        st = DSI_ERR_FORMAT;
    }
    if (!st && h->arch == DSI_HF_DEEPSEEK2) {
        const cJSON *ql = jget(cfg, "q_lora_rank");
        h->q_lora = 0;
        if (cJSON_IsNumber(ql)) st = need_int(cfg, "q_lora_rank", &h->q_lora, 1, big);
        if (!st) st = need_int(cfg, "kv_lora_rank", &h->kv_lora, 1, big);
        if (!st) st = need_int(cfg, "qk_nope_head_dim", &h->qk_nope, 0, big);
        if (!st) st = need_int(cfg, "qk_rope_head_dim", &h->qk_rope, 1, big);
        if (!st) st = need_int(cfg, "v_head_dim", &h->v_head, 1, big);
    }
    if (!st && (h->arch == DSI_HF_DEEPSEEK2 || h->arch == DSI_HF_DEEPSEEK)) {
        if (!jint(cfg, "moe_intermediate_size", &h->n_ff_exp)) h->n_ff_exp = h->n_ff;
        h->has_n_expert = jint(cfg, "n_routed_experts", &h->n_expert);
        h->has_n_expert_used = jint(cfg, "num_experts_per_tok", &h->n_expert_used);
        if (!jint(cfg, "n_shared_experts", &h->n_shared)) h->n_shared = 0;
        if (!jint(cfg, "first_k_dense_replace", &h->first_dense))
            h->first_dense = h->has_n_expert ? 0 : h->n_layer;
        h->has_n_group = jint(cfg, "n_group", &h->n_group);
        h->has_topk_group = jint(cfg, "topk_group", &h->topk_group);
        h->has_scale = jnum(cfg, "routed_scaling_factor", &h->routed_scale);
        h->norm_topk = cJSON_IsTrue(jget(cfg, "norm_topk_prob"));
        const cJSON *sf = jget(cfg, "scoring_func");
        if (cJSON_IsString(sf)) snprintf(h->scoring, sizeof h->scoring, "%s", sf->valuestring);
        if (!st && h->has_n_expert && (h->n_expert < 1 || h->n_expert > 4096)) {
            DSI_LOG_ERR("convert: n_routed_experts %lld is out of range", (long long)h->n_expert);
            st = DSI_ERR_FORMAT;
        }
        if (!st && h->scoring[0] && strcmp(h->scoring, "softmax") && strcmp(h->scoring, "sigmoid")) {
            DSI_LOG_ERR("convert: scoring_func '%s' is not supported", h->scoring);
            st = DSI_ERR_UNSUPPORTED;
        }
    }
    if (!st && h->vl2) st = read_config_vl2(root, h);
    cJSON_Delete(root);
    return st;
}

/* ---- plan ------------------------------------------------------------------------------ */

enum src_kind {
    SRC_PLAIN,   /* one source tensor, same element order */
    SRC_PERMUTE, /* llama.cpp's q/k row permutation for NORM rope */
    SRC_STACK,   /* experts stacked along a new outer axis */
    SRC_KB,      /* kv_b -> k_b: per head, rows [0, nope) transposed */
    SRC_VB,      /* kv_b -> v_b: per head, rows [nope, nope + v) */
    SRC_DATA,    /* generated float data */
};

struct otensor {
    char name[DSI_GGUF_MAX_NAME];
    enum dsi_type type;
    uint32_t n_dims;
    int64_t ne[4];
    enum src_kind kind;
    const struct dsi_st_tensor *src;
    const struct dsi_st_tensor **stack;
    int64_t n_stack;
    int64_t heads; /* PERMUTE, KB, VB */
    float *data;   /* DATA */
};

struct conv {
    const struct dsi_convert_params *p;
    struct dsi_hf_hparams h;
    struct dsi_st *st;
    uint8_t *used; /* per source tensor */
    struct otensor *t;
    int n, cap;
    enum dsi_type outtype;
    struct dsi_progress prog;
    const char *lm_prefix; /* of the language model's tensors ("language." in VL2) */
};

/* The source tensor `name`, marked used. */
static const struct dsi_st_tensor *find_raw(struct conv *c, const char *name) {
    const struct dsi_st_tensor *t = dsi_st_find(c->st, name);
    if (t) c->used[t - dsi_st_get(c->st, 0)] = 1;
    return t;
}

/* A language-model tensor by its name in a text-only checkpoint. */
static const struct dsi_st_tensor *find_src(struct conv *c, const char *name) {
    if (!c->lm_prefix[0]) return find_raw(c, name);
    char full[200];
    snprintf(full, sizeof full, "%s%s", c->lm_prefix, name);
    return find_raw(c, full);
}

enum dsi_type dsi_convert_tensor_type(const char *name, uint32_t n_dims, int64_t ne0,
                                      enum dsi_type outtype) {
    size_t n = strlen(name);
    if (n_dims <= 1) return DSI_TYPE_F32;
    if (n >= 12 && !strcmp(name + n - 12, "_norm.weight")) return DSI_TYPE_F32;
    if (strstr(name, "ffn_gate_inp.weight") || strstr(name, "rope_freqs")) return DSI_TYPE_F32;
    if (n < 7 || strcmp(name + n - 7, ".weight") != 0) return DSI_TYPE_F32;
    /* a row that is not whole blocks stays f16, as llama.cpp's converter does for q8_0 */
    if (ne0 % dsi_type_traits(outtype)->blck != 0) return DSI_TYPE_F16;
    return outtype;
}

static struct otensor *add_out(struct conv *c, const char *name, enum src_kind kind,
                               const struct dsi_st_tensor *src) {
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 256;
        struct otensor *p = realloc(c->t, (size_t)cap * sizeof *p);
        if (!p) return NULL;
        c->t = p;
        c->cap = cap;
    }
    struct otensor *o = &c->t[c->n++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->kind = kind;
    o->src = src;
    if (src) {
        /* GGUF ne is the reversed PyTorch shape, with singleton dimensions squeezed */
        for (int d = src->n_dims - 1; d >= 0; d--)
            if (src->shape[d] != 1 && o->n_dims < 4) o->ne[o->n_dims++] = src->shape[d];
        if (o->n_dims == 0) o->ne[o->n_dims++] = 1;
    }
    for (uint32_t d = o->n_dims; d < 4; d++) o->ne[d] = 1;
    return o;
}

static enum dsi_status missing(const char *name) {
    DSI_LOG_ERR("convert: tensor '%s' is missing from the checkpoint", name);
    return DSI_ERR_FORMAT;
}

static bool is_float_src(const struct dsi_st_tensor *t) {
    return t->dtype == DSI_ST_F32 || t->dtype == DSI_ST_F16 || t->dtype == DSI_ST_BF16;
}

/* Map one HF tensor to a GGUF name; `required` false tolerates absence. */
static enum dsi_status map_src(struct conv *c, const struct dsi_st_tensor *s, const char *hf,
                               const char *gg, bool required, enum src_kind kind, int64_t heads);
static enum dsi_status map1(struct conv *c, const char *hf, const char *gg, bool required,
                            enum src_kind kind, int64_t heads) {
    return map_src(c, find_src(c, hf), hf, gg, required, kind, heads);
}

static enum dsi_status map_src(struct conv *c, const struct dsi_st_tensor *s, const char *hf,
                               const char *gg, bool required, enum src_kind kind, int64_t heads) {
    if (!s) return required ? missing(hf) : DSI_OK;
    if (!is_float_src(s)) {
        DSI_LOG_ERR("convert: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", hf,
                    dsi_st_dtype_name(s->dtype));
        return DSI_ERR_UNSUPPORTED;
    }
    struct otensor *o = add_out(c, gg, kind, s);
    if (!o) return DSI_ERR_NOMEM;
    o->heads = heads;
    if (kind == SRC_PERMUTE) {
        int64_t rows = s->n_dims == 1 ? s->shape[0] : s->shape[0];
        if (heads <= 0 || rows % (2 * heads) != 0) {
            DSI_LOG_ERR("convert: '%s': %lld rows cannot be permuted for %lld heads", hf,
                        (long long)rows, (long long)heads);
            return DSI_ERR_FORMAT;
        }
    }
    return DSI_OK;
}

static enum dsi_status check_shape(const struct otensor *o, const char *hf, int64_t ne0, int64_t ne1) {
    if (o->ne[0] != ne0 || o->ne[1] != ne1 || o->ne[2] != 1) {
        DSI_LOG_ERR("convert: '%s' has shape [%lld, %lld] (GGUF order), expected [%lld, %lld]", hf,
                    (long long)o->ne[0], (long long)o->ne[1], (long long)ne0, (long long)ne1);
        return DSI_ERR_FORMAT;
    }
    return DSI_OK;
}

/* Stack experts E of `mlp.experts.E.<proj>.weight` into one 3-D tensor. */
static enum dsi_status map_experts(struct conv *c, int64_t layer, const char *proj, const char *gg) {
    const struct dsi_st_tensor **v = calloc((size_t)c->h.n_expert, sizeof *v);
    if (!v) return DSI_ERR_NOMEM;
    char name[160];
    for (int64_t e = 0; e < c->h.n_expert; e++) {
        snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.%lld.%s.weight",
                 (long long)layer, (long long)e, proj);
        v[e] = find_src(c, name);
        if (!v[e]) {
            free(v);
            return missing(name);
        }
        if (!is_float_src(v[e]) || v[e]->n_dims != 2 || v[e]->shape[0] != v[0]->shape[0] ||
            v[e]->shape[1] != v[0]->shape[1]) {
            DSI_LOG_ERR("convert: expert tensor '%s' differs in shape or type from expert 0", name);
            free(v);
            return DSI_ERR_FORMAT;
        }
    }
    struct otensor *o = add_out(c, gg, SRC_STACK, NULL);
    if (!o) {
        free(v);
        return DSI_ERR_NOMEM;
    }
    o->stack = v;
    o->n_stack = c->h.n_expert;
    o->n_dims = 3;
    o->ne[0] = v[0]->shape[1];
    o->ne[1] = v[0]->shape[0];
    o->ne[2] = c->h.n_expert;
    o->ne[3] = 1;
    return DSI_OK;
}

/* llama3 rope: the divisor of each frequency, computed in float32 as llama.cpp's converter. */
void dsi_convert_llama3_factors(const struct dsi_hf_hparams *h, int64_t dim, float *out) {
    float base = (float)(h->has_rope_theta ? h->rope_theta : 10000.0);
    float factor = (float)(h->has_factor ? h->rope_factor : 8.0);
    float lo = (float)h->low_freq, hi = (float)h->high_freq;
    float old_ctx = (float)(h->has_orig_ctx ? h->rope_orig_ctx : 8192);
    float lo_wl = old_ctx / lo, hi_wl = old_ctx / hi;
    for (int64_t i = 0; i < dim / 2; i++) {
        float freq = 1.0f / powf(base, (float)(2 * i) / (float)dim);
        float wl = (float)(2.0 * M_PI) / freq;
        float r;
        if (wl < hi_wl) r = 1.0f;
        else if (wl > lo_wl) r = factor;
        else {
            float smooth = (old_ctx / wl - lo) / (hi - lo);
            r = 1.0f / ((1.0f - smooth) / factor + smooth);
        }
        out[i] = r;
    }
}

static enum dsi_status add_rope_freqs(struct conv *c) {
    const struct dsi_hf_hparams *h = &c->h;
    int64_t dim = h->has_head_dim ? h->head_dim : h->n_embd / h->n_head;
    struct otensor *o = add_out(c, "rope_freqs.weight", SRC_DATA, NULL);
    if (!o) return DSI_ERR_NOMEM;
    o->data = malloc((size_t)(dim / 2) * sizeof(float));
    if (!o->data) return DSI_ERR_NOMEM;
    o->n_dims = 1;
    o->ne[0] = dim / 2;
    dsi_convert_llama3_factors(h, dim, o->data);
    return DSI_OK;
}

static enum dsi_status plan_layer_attn_mha(struct conv *c, int64_t i) {
    const struct dsi_hf_hparams *h = &c->h;
    /* llama.cpp permutes q/k for the rope on interleaved pairs (llama, deepseek) */
    bool perm = h->arch == DSI_HF_LLAMA || h->arch == DSI_HF_DEEPSEEK;
    char hf[160], gg[64];
    static const struct {
        const char *hf, *gg;
        int heads; /* 1: n_head permute, 2: n_head_kv permute */
        bool required;
    } m[] = {
        {"self_attn.q_proj.weight", "attn_q.weight", 1, true},
        {"self_attn.q_proj.bias", "attn_q.bias", 1, false},
        {"self_attn.k_proj.weight", "attn_k.weight", 2, true},
        {"self_attn.k_proj.bias", "attn_k.bias", 2, false},
        {"self_attn.v_proj.weight", "attn_v.weight", 0, true},
        {"self_attn.v_proj.bias", "attn_v.bias", 0, false},
        {"self_attn.o_proj.weight", "attn_output.weight", 0, true},
        {"self_attn.o_proj.bias", "attn_output.bias", 0, false},
    };
    for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
        snprintf(hf, sizeof hf, "model.layers.%lld.%s", (long long)i, m[k].hf);
        snprintf(gg, sizeof gg, "blk.%lld.%s", (long long)i, m[k].gg);
        int64_t heads = m[k].heads == 1 ? h->n_head : h->n_head_kv;
        enum src_kind kind = perm && m[k].heads ? SRC_PERMUTE : SRC_PLAIN;
        enum dsi_status st = map1(c, hf, gg, m[k].required, kind, heads);
        if (st) return st;
    }
    return DSI_OK;
}

static enum dsi_status plan_layer_attn_mla(struct conv *c, int64_t i) {
    const struct dsi_hf_hparams *h = &c->h;
    char hf[160], gg[64];
    enum dsi_status st;
#define MAP(HF, GG, REQ)                                                                           \
    do {                                                                                           \
        snprintf(hf, sizeof hf, "model.layers.%lld.self_attn.%s", (long long)i, HF);               \
        snprintf(gg, sizeof gg, "blk.%lld.%s", (long long)i, GG);                                  \
        if ((st = map1(c, hf, gg, REQ, SRC_PLAIN, 0))) return st;                                  \
    } while (0)
    if (h->q_lora > 0) {
        MAP("q_a_proj.weight", "attn_q_a.weight", true);
        MAP("q_a_layernorm.weight", "attn_q_a_norm.weight", true);
        MAP("q_b_proj.weight", "attn_q_b.weight", true);
    } else {
        MAP("q_proj.weight", "attn_q.weight", true);
    }
    MAP("kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight", true);
    MAP("kv_a_layernorm.weight", "attn_kv_a_norm.weight", true);
#undef MAP
    snprintf(hf, sizeof hf, "model.layers.%lld.self_attn.kv_b_proj.weight", (long long)i);
    const struct dsi_st_tensor *kvb = find_src(c, hf);
    if (!kvb) return missing(hf);
    int64_t per = h->qk_nope + h->v_head;
    if (!is_float_src(kvb) || kvb->n_dims != 2 || kvb->shape[0] != h->n_head * per ||
        kvb->shape[1] != h->kv_lora) {
        DSI_LOG_ERR("convert: '%s' is not [n_head*(qk_nope+v_head), kv_lora_rank] = [%lld, %lld]",
                    hf, (long long)(h->n_head * per), (long long)h->kv_lora);
        return DSI_ERR_FORMAT;
    }
    snprintf(gg, sizeof gg, "blk.%lld.attn_k_b.weight", (long long)i);
    struct otensor *o = add_out(c, gg, SRC_KB, kvb);
    if (!o) return DSI_ERR_NOMEM;
    o->heads = h->n_head;
    o->n_dims = 3, o->ne[0] = h->qk_nope, o->ne[1] = h->kv_lora, o->ne[2] = h->n_head;
    snprintf(gg, sizeof gg, "blk.%lld.attn_v_b.weight", (long long)i);
    o = add_out(c, gg, SRC_VB, kvb);
    if (!o) return DSI_ERR_NOMEM;
    o->heads = h->n_head;
    o->n_dims = 3, o->ne[0] = h->kv_lora, o->ne[1] = h->v_head, o->ne[2] = h->n_head;
    snprintf(hf, sizeof hf, "model.layers.%lld.self_attn.o_proj.weight", (long long)i);
    snprintf(gg, sizeof gg, "blk.%lld.attn_output.weight", (long long)i);
    return map1(c, hf, gg, true, SRC_PLAIN, 0);
}

static enum dsi_status plan_ffn(struct conv *c, int64_t i, const char *hf_prefix,
                                const char *gg_suffix, bool required) {
    static const char *const proj[] = {"gate_proj", "up_proj", "down_proj"};
    static const char *const gname[] = {"ffn_gate", "ffn_up", "ffn_down"};
    char hf[160], gg[64];
    for (int k = 0; k < 3; k++) {
        snprintf(hf, sizeof hf, "model.layers.%lld.%s.%s.weight", (long long)i, hf_prefix, proj[k]);
        snprintf(gg, sizeof gg, "blk.%lld.%s%s.weight", (long long)i, gname[k], gg_suffix);
        enum dsi_status st = map1(c, hf, gg, required, SRC_PLAIN, 0);
        if (st) return st;
    }
    return DSI_OK;
}

static enum dsi_status plan_layer(struct conv *c, int64_t i) {
    const struct dsi_hf_hparams *h = &c->h;
    char hf[160], gg[64];
    enum dsi_status st;
    snprintf(hf, sizeof hf, "model.layers.%lld.input_layernorm.weight", (long long)i);
    snprintf(gg, sizeof gg, "blk.%lld.attn_norm.weight", (long long)i);
    if ((st = map1(c, hf, gg, true, SRC_PLAIN, 0))) return st;
    st = h->arch == DSI_HF_DEEPSEEK2 ? plan_layer_attn_mla(c, i) : plan_layer_attn_mha(c, i);
    if (st) return st;
    snprintf(hf, sizeof hf, "model.layers.%lld.post_attention_layernorm.weight", (long long)i);
    snprintf(gg, sizeof gg, "blk.%lld.ffn_norm.weight", (long long)i);
    if ((st = map1(c, hf, gg, true, SRC_PLAIN, 0))) return st;
    if ((h->arch != DSI_HF_DEEPSEEK2 && h->arch != DSI_HF_DEEPSEEK) || i < h->first_dense ||
        !h->has_n_expert)
        return plan_ffn(c, i, "mlp", "", true);

    snprintf(hf, sizeof hf, "model.layers.%lld.mlp.gate.weight", (long long)i);
    snprintf(gg, sizeof gg, "blk.%lld.ffn_gate_inp.weight", (long long)i);
    if ((st = map1(c, hf, gg, true, SRC_PLAIN, 0))) return st;
    snprintf(hf, sizeof hf, "model.layers.%lld.mlp.gate.e_score_correction_bias", (long long)i);
    snprintf(gg, sizeof gg, "blk.%lld.exp_probs_b.bias", (long long)i);
    if ((st = map1(c, hf, gg, false, SRC_PLAIN, 0))) return st;
    static const char *const proj[] = {"gate_proj", "up_proj", "down_proj"};
    static const char *const gname[] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    for (int k = 0; k < 3; k++) {
        snprintf(gg, sizeof gg, "blk.%lld.%s.weight", (long long)i, gname[k]);
        if ((st = map_experts(c, i, proj[k], gg))) return st;
    }
    if (h->n_shared > 0) return plan_ffn(c, i, "mlp.shared_experts", "_shexp", true);
    return DSI_OK;
}

/* A source tensor nothing maps: fine if it is a buffer HF stores or an MTP layer. */
static bool ignorable(const struct conv *c, const char *name) {
    if (strstr(name, "rotary_emb.inv_freq")) return true;
    /* VL2: the SigLIP attention-pool head is constructed but unused (models.md C.2) */
    if (c->h.vl2 && !strncmp(name, "vision.attn_pool.", 17)) return true;
    size_t pl = strlen(c->lm_prefix);
    if (pl && !strncmp(name, c->lm_prefix, pl)) name += pl;
    long long layer;
    if (sscanf(name, "model.layers.%lld.", &layer) == 1 && layer >= c->h.n_layer) return true;
    if (c->h.tie && !strcmp(name, "lm_head.weight")) return true;
    return false;
}

/* DeepSeek-VL2's vision tower, projector and the two learned separators, under llama.cpp's
 * mmproj names (models.md C.9; docs/VISION.md). */
static enum dsi_status plan_vision(struct conv *c) {
    const struct dsi_hf_hparams *h = &c->h;
    static const struct {
        const char *hf, *gg;
    } top[] = {
        {"vision.patch_embed.proj.weight", "v.patch_embd.weight"},
        {"vision.patch_embed.proj.bias", "v.patch_embd.bias"},
        {"vision.pos_embed", "v.position_embd.weight"},
        {"vision.norm.weight", "v.post_ln.weight"},
        {"vision.norm.bias", "v.post_ln.bias"},
        {"projector.layers.0.weight", "mm.0.weight"},
        {"projector.layers.0.bias", "mm.0.bias"},
        {"projector.layers.2.weight", "mm.2.weight"},
        {"projector.layers.2.bias", "mm.2.bias"},
        {"image_newline", "v.image_newline"},
        {"view_seperator", "v.view_seperator"},
    }, blk[] = {
        {"norm1.weight", "ln1.weight"},         {"norm1.bias", "ln1.bias"},
        {"attn.qkv.weight", "attn_qkv.weight"}, {"attn.qkv.bias", "attn_qkv.bias"},
        {"attn.proj.weight", "attn_out.weight"}, {"attn.proj.bias", "attn_out.bias"},
        {"norm2.weight", "ln2.weight"},         {"norm2.bias", "ln2.bias"},
        {"mlp.fc1.weight", "ffn_up.weight"},    {"mlp.fc1.bias", "ffn_up.bias"},
        {"mlp.fc2.weight", "ffn_down.weight"},  {"mlp.fc2.bias", "ffn_down.bias"},
    };
    enum dsi_status st;
    for (size_t k = 0; k < sizeof top / sizeof top[0]; k++)
        if ((st = map_src(c, find_raw(c, top[k].hf), top[k].hf, top[k].gg, true, SRC_PLAIN, 0)))
            return st;
    char hf[160], gg[64];
    for (int64_t i = 0; i < h->v_layers; i++)
        for (size_t k = 0; k < sizeof blk / sizeof blk[0]; k++) {
            snprintf(hf, sizeof hf, "vision.blocks.%lld.%s", (long long)i, blk[k].hf);
            snprintf(gg, sizeof gg, "v.blk.%lld.%s", (long long)i, blk[k].gg);
            if ((st = map_src(c, find_raw(c, hf), hf, gg, true, SRC_PLAIN, 0))) return st;
        }
    /* shapes (GGUF order) */
    int64_t W = h->v_width, P = h->v_patch, G = h->v_image_size / h->v_patch, D = h->mm_embd;
    int64_t Kp = h->mm_in * h->mm_downsample * h->mm_downsample;
    for (int k = 0; k < c->n; k++) {
        struct otensor *o = &c->t[k];
        if (strncmp(o->name, "v.", 2) && strncmp(o->name, "mm.", 3)) continue;
        int64_t want[4] = {1, 1, 1, 1};
        const char *n = o->name;
        if (!strcmp(n, "v.patch_embd.weight")) want[0] = P, want[1] = P, want[2] = 3, want[3] = W;
        else if (!strcmp(n, "v.position_embd.weight")) want[0] = W, want[1] = G * G;
        else if (!strcmp(n, "mm.0.weight")) want[0] = Kp, want[1] = D;
        else if (!strcmp(n, "mm.2.weight")) want[0] = D, want[1] = D;
        else if (!strncmp(n, "mm.", 3) || !strcmp(n, "v.image_newline") ||
                 !strcmp(n, "v.view_seperator")) want[0] = D;
        else if (strstr(n, "attn_qkv.weight")) want[0] = W, want[1] = 3 * W;
        else if (strstr(n, "attn_qkv.bias")) want[0] = 3 * W;
        else if (strstr(n, "attn_out.weight")) want[0] = W, want[1] = W;
        else if (strstr(n, "ffn_up.weight")) want[0] = W, want[1] = h->v_ff;
        else if (strstr(n, "ffn_up.bias")) want[0] = h->v_ff;
        else if (strstr(n, "ffn_down.weight")) want[0] = h->v_ff, want[1] = W;
        else want[0] = W; /* norms, patch/out/down biases */
        if (memcmp(o->ne, want, sizeof want) != 0) {
            DSI_LOG_ERR("convert: '%s' has shape [%lld, %lld, %lld, %lld] (GGUF order), expected "
                        "[%lld, %lld, %lld, %lld]", o->name, (long long)o->ne[0],
                        (long long)o->ne[1], (long long)o->ne[2], (long long)o->ne[3],
                        (long long)want[0], (long long)want[1], (long long)want[2],
                        (long long)want[3]);
            return DSI_ERR_FORMAT;
        }
    }
    return DSI_OK;
}

static enum dsi_status build_plan(struct conv *c) {
    const struct dsi_hf_hparams *h = &c->h;
    enum dsi_status st;
    if (h->arch == DSI_HF_LLAMA && !strcmp(h->rope_type, "llama3") && (st = add_rope_freqs(c)))
        return st;
    if ((st = map1(c, "model.embed_tokens.weight", "token_embd.weight", true, SRC_PLAIN, 0)))
        return st;
    for (int64_t i = 0; i < h->n_layer; i++)
        if ((st = plan_layer(c, i))) return st;
    if ((st = map1(c, "model.norm.weight", "output_norm.weight", true, SRC_PLAIN, 0))) return st;
    if (!h->tie && (st = map1(c, "lm_head.weight", "output.weight", false, SRC_PLAIN, 0)))
        return st;

    /* shapes that every architecture shares */
    const struct otensor *emb = &c->t[h->arch == DSI_HF_LLAMA && !strcmp(h->rope_type, "llama3")];
    if ((st = check_shape(emb, "model.embed_tokens.weight", h->n_embd, emb->ne[1]))) return st;
    if (emb->ne[1] > h->n_vocab) {
        DSI_LOG_ERR("convert: the embedding has %lld rows but vocab_size is %lld",
                    (long long)emb->ne[1], (long long)h->n_vocab);
        return DSI_ERR_FORMAT;
    }
    if (h->vl2 && (st = plan_vision(c))) return st;
    for (int64_t k = 0; k < dsi_st_count(c->st); k++) {
        const struct dsi_st_tensor *t = dsi_st_get(c->st, k);
        if (!c->used[k] && !ignorable(c, t->name)) {
            DSI_LOG_ERR("convert: tensor '%s' is not used by the %s converter (unexpected layout)",
                        t->name, h->name);
            return DSI_ERR_UNSUPPORTED;
        }
    }
    for (int k = 0; k < c->n; k++) {
        struct otensor *o = &c->t[k];
        o->type = dsi_convert_tensor_type(o->name, o->n_dims, o->ne[0], c->outtype);
        /* the patch and position embeddings stay f32 (models.md C.9) */
        if (!strcmp(o->name, "v.patch_embd.weight") || !strcmp(o->name, "v.position_embd.weight"))
            o->type = DSI_TYPE_F32;
    }
    return DSI_OK;
}

/* ---- key/values ------------------------------------------------------------------------ */

/* The vision tower's keys (llama.cpp's clip.* names) and the image layout of DeepSeek-VL2
 * (our deepseekvl2.* keys; docs/VISION.md). */
static enum dsi_status write_kv_vl2(const struct dsi_hf_hparams *h, struct dsi_gguf_writer *w) {
    enum dsi_status st = dsi_gguf_writer_set_bool(w, "clip.has_vision_encoder", true);
#define U32(key, v) if (!st) st = dsi_gguf_writer_set_u32(w, key, (uint32_t)(v))
    if (!st) st = dsi_gguf_writer_set_str(w, "clip.projector_type", "deepseekvl2");
    U32("clip.vision.image_size", h->v_image_size);
    U32("clip.vision.patch_size", h->v_patch);
    U32("clip.vision.embedding_length", h->v_width);
    U32("clip.vision.feed_forward_length", h->v_ff);
    U32("clip.vision.block_count", h->v_layers);
    U32("clip.vision.attention.head_count", h->v_heads);
    if (!st) st = dsi_gguf_writer_set_f32(w, "clip.vision.attention.layer_norm_epsilon", 1e-6f);
    const float half[3] = {0.5f, 0.5f, 0.5f};
    if (!st) st = dsi_gguf_writer_set_arr(w, "clip.vision.image_mean", DSI_GGUF_FLOAT32, half, 3);
    if (!st) st = dsi_gguf_writer_set_arr(w, "clip.vision.image_std", DSI_GGUF_FLOAT32, half, 3);
    U32("clip.vision.projection_dim", h->mm_embd);
    U32("clip.vision.projector.scale_factor", h->mm_downsample);
    if (!st)
        st = dsi_gguf_writer_set_arr(w, "deepseekvl2.candidate_resolutions", DSI_GGUF_INT32,
                                     h->cand, (uint64_t)h->n_cand * 2);
#undef U32
    return st;
}

enum dsi_status dsi_convert_write_kv(const struct dsi_hf_hparams *h, const char *name,
                                     enum dsi_type outtype, const struct dsi_tokenizer *tok,
                                     struct dsi_gguf_writer *w) {
    const char *a = h->arch == DSI_HF_QWEN2 ? "qwen2" : h->arch == DSI_HF_LLAMA ? "llama"
                    : h->arch == DSI_HF_DEEPSEEK2 ? "deepseek2" : "deepseek";
    char k[128];
    enum dsi_status st = DSI_OK;
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", a, suffix), k)
#define U32(key, v) if (!st) st = dsi_gguf_writer_set_u32(w, key, (uint32_t)(v))
#define F32(key, v) if (!st) st = dsi_gguf_writer_set_f32(w, key, (float)(v))
    if (!st) st = dsi_gguf_writer_set_str(w, "general.architecture", a);
    if (!st) st = dsi_gguf_writer_set_str(w, "general.type", "model");
    if (!st) st = dsi_gguf_writer_set_str(w, "general.name", name);

    int64_t n_head_kv = h->arch == DSI_HF_DEEPSEEK2 ? 1 : h->n_head_kv;
    U32(KEY("block_count"), h->n_layer);
    if (h->has_n_ctx) U32(KEY("context_length"), h->n_ctx);
    U32(KEY("embedding_length"), h->n_embd);
    U32(KEY("feed_forward_length"), h->n_ff);
    U32(KEY("attention.head_count"), h->n_head);
    U32(KEY("attention.head_count_kv"), n_head_kv);
    if (!strcmp(h->rope_type, "linear") && h->has_factor) {
        if (!st) st = dsi_gguf_writer_set_str(w, KEY("rope.scaling.type"), "linear");
        F32(KEY("rope.scaling.factor"), h->rope_factor);
    } else if (!strcmp(h->rope_type, "yarn") && h->has_factor) {
        if (!st) st = dsi_gguf_writer_set_str(w, KEY("rope.scaling.type"), "yarn");
        F32(KEY("rope.scaling.factor"), h->rope_factor);
        U32(KEY("rope.scaling.original_context_length"), h->rope_orig_ctx);
        if (h->has_beta_fast) F32(KEY("rope.scaling.yarn_beta_fast"), h->beta_fast);
        if (h->has_beta_slow) F32(KEY("rope.scaling.yarn_beta_slow"), h->beta_slow);
    } else if (h->rope_type[0] && strcmp(h->rope_type, "llama3") != 0) {
        DSI_LOG_ERR("convert: rope scaling type '%s' is not supported", h->rope_type);
        return DSI_ERR_UNSUPPORTED;
    }
    if (h->has_rope_theta) F32(KEY("rope.freq_base"), h->rope_theta);
    if (h->has_rms_eps) F32(KEY("attention.layer_norm_rms_epsilon"), h->rms_eps);
    if (h->has_n_expert) U32(KEY("expert_count"), h->n_expert);
    if (h->has_n_expert_used) U32(KEY("expert_used_count"), h->n_expert_used);
    if (h->has_n_group) U32(KEY("expert_group_count"), h->n_group);
    if (h->has_topk_group) U32(KEY("expert_group_used_count"), h->topk_group);
    if (h->scoring[0]) U32(KEY("expert_gating_func"), strcmp(h->scoring, "sigmoid") ? 1 : 2);
    if (h->has_head_dim) {
        U32(KEY("attention.key_length"), h->head_dim);
        U32(KEY("attention.value_length"), h->head_dim);
    }
    uint32_t ftype = outtype == DSI_TYPE_F32    ? 0
                     : outtype == DSI_TYPE_F16  ? 1
                     : outtype == DSI_TYPE_Q8_0 ? 7
                                                : 32;
    U32("general.file_type", ftype);

    if (h->arch == DSI_HF_LLAMA) {
        U32(KEY("vocab_size"), h->n_vocab);
        U32(KEY("rope.dimension_count"), h->has_head_dim ? h->head_dim : h->n_embd / h->n_head);
    } else if (h->arch == DSI_HF_DEEPSEEK2) {
        U32(KEY("leading_dense_block_count"), h->first_dense);
        U32(KEY("vocab_size"), h->n_vocab);
        if (h->q_lora > 0) U32(KEY("attention.q_lora_rank"), h->q_lora);
        U32(KEY("attention.kv_lora_rank"), h->kv_lora);
        U32(KEY("attention.key_length"), h->kv_lora + h->qk_rope);
        U32(KEY("attention.value_length"), h->kv_lora);
        U32(KEY("attention.key_length_mla"), h->qk_nope + h->qk_rope);
        U32(KEY("attention.value_length_mla"), h->v_head);
        U32(KEY("expert_feed_forward_length"), h->n_ff_exp);
        if (h->has_n_expert) U32(KEY("expert_count"), h->n_expert);
        U32(KEY("expert_shared_count"), h->n_shared);
        if (h->has_scale) F32(KEY("expert_weights_scale"), h->routed_scale);
        if (h->norm_topk && !st) st = dsi_gguf_writer_set_bool(w, KEY("expert_weights_norm"), true);
        U32(KEY("rope.dimension_count"), h->qk_rope);
        if (h->has_mscale_all_dim)
            F32(KEY("rope.scaling.yarn_log_multiplier"), (float)(0.1 * h->mscale_all_dim));
    } else if (h->arch == DSI_HF_DEEPSEEK) { /* DeepSeek-MoE v1 (VL2-Tiny's language model) */
        U32(KEY("leading_dense_block_count"), h->first_dense);
        U32(KEY("vocab_size"), h->n_vocab);
        U32(KEY("expert_feed_forward_length"), h->n_ff_exp);
        if (h->has_n_expert) U32(KEY("expert_count"), h->n_expert);
        U32(KEY("expert_shared_count"), h->n_shared);
        F32(KEY("expert_weights_scale"), h->has_scale ? h->routed_scale : 1.0);
        U32(KEY("rope.dimension_count"), h->has_head_dim ? h->head_dim : h->n_embd / h->n_head);
    }
    U32("general.quantization_version", 2);
    if (h->vl2 && !st) st = write_kv_vl2(h, w);
#undef KEY
#undef U32
#undef F32
    if (!st && tok) st = dsi_tokenizer_write_gguf(tok, (int32_t)h->n_vocab, w);
    return st;
}

/* ---- tensor data ----------------------------------------------------------------------- */

static void progress(struct conv *c, uint64_t add) { dsi_progress_add(&c->prog, add); }

struct sink {
    struct dsi_gguf_writer *w;
    float *f;       /* CHUNK_ELEMS floats */
    uint8_t *out;   /* CHUNK_ELEMS * 4 bytes */
};

/* Convert n floats to `type` and write them. */
static enum dsi_status put_floats(struct conv *c, struct sink *s, const float *f, int64_t n,
                                  enum dsi_type type) {
    size_t bytes;
    if (type == DSI_TYPE_F32) {
        bytes = (size_t)n * 4;
        memcpy(s->out, f, bytes);
    } else if (type == DSI_TYPE_F16) {
        uint16_t *o = (uint16_t *)s->out;
        for (int64_t i = 0; i < n; i++) o[i] = dsi_f32_to_f16(f[i]);
        bytes = (size_t)n * 2;
    } else if (type == DSI_TYPE_BF16) {
        uint16_t *o = (uint16_t *)s->out;
        for (int64_t i = 0; i < n; i++) o[i] = dsi_f32_to_bf16(f[i]);
        bytes = (size_t)n * 2;
    } else {
        /* a quantized type: every piece written is whole rows or a multiple of
         * CHUNK_ELEMS, so whole blocks (dsi_convert_tensor_type checked the row) */
        DSI_ASSERT(n % dsi_type_traits(type)->blck == 0);
        if (!dsi_quantize_row(type, f, s->out, n)) return DSI_ERR_UNSUPPORTED;
        bytes = dsi_row_size(type, n);
    }
    enum dsi_status st = dsi_gguf_writer_write(s->w, s->out, bytes);
    progress(c, bytes);
    return st;
}

/* Elements [first, first + n) of a source tensor, in chunks. */
static enum dsi_status put_range(struct conv *c, struct sink *s, const struct dsi_st_tensor *t,
                                 int64_t first, int64_t n, enum dsi_type type) {
    while (n > 0) {
        int64_t k = n < CHUNK_ELEMS ? n : CHUNK_ELEMS;
        enum dsi_status st = dsi_st_read_f32(t, first, k, s->f);
        if (!st) st = put_floats(c, s, s->f, k, type);
        if (st) return st;
        first += k;
        n -= k;
    }
    return DSI_OK;
}

static enum dsi_status write_tensor(struct conv *c, struct sink *s, const struct otensor *o) {
    const struct dsi_st_tensor *t = o->src;
    enum dsi_status st = DSI_OK;
    switch (o->kind) {
    case SRC_PLAIN:
        return put_range(c, s, t, 0, t->n_elements, o->type);
    case SRC_DATA:
        return put_floats(c, s, o->data, o->ne[0], o->type);
    case SRC_STACK:
        for (int64_t e = 0; e < o->n_stack && !st; e++)
            st = put_range(c, s, o->stack[e], 0, o->stack[e]->n_elements, o->type);
        return st;
    case SRC_PERMUTE: {
        /* new row h*hd + 2i + j = old row h*hd + j*hd/2 + i (models.md B.4) */
        int64_t rows = t->shape[0], cols = t->n_dims > 1 ? t->shape[1] : 1;
        int64_t hd = rows / o->heads;
        for (int64_t r = 0; r < rows && !st; r++) {
            int64_t h = r / hd, q = r % hd, i = q / 2, j = q % 2;
            int64_t src_row = h * hd + j * (hd / 2) + i;
            st = put_range(c, s, t, src_row * cols, cols, o->type);
        }
        return st;
    }
    case SRC_VB: {
        const struct dsi_hf_hparams *h = &c->h;
        int64_t per = h->qk_nope + h->v_head, cols = h->kv_lora;
        for (int64_t hh = 0; hh < o->heads && !st; hh++)
            st = put_range(c, s, t, (hh * per + h->qk_nope) * cols, h->v_head * cols, o->type);
        return st;
    }
    case SRC_KB: {
        /* per head: [nope, kv_lora] block, written transposed as [kv_lora][nope] */
        const struct dsi_hf_hparams *h = &c->h;
        int64_t per = h->qk_nope + h->v_head, cols = h->kv_lora, nope = h->qk_nope;
        float *blk = malloc((size_t)(nope * cols) * sizeof *blk);
        float *tr = malloc((size_t)(nope * cols) * sizeof *tr);
        if (!blk || !tr) st = DSI_ERR_NOMEM;
        for (int64_t hh = 0; hh < o->heads && !st; hh++) {
            st = dsi_st_read_f32(t, hh * per * cols, nope * cols, blk);
            for (int64_t a = 0; a < cols && !st; a++)
                for (int64_t b = 0; b < nope; b++) tr[a * nope + b] = blk[b * cols + a];
            for (int64_t off = 0; off < nope * cols && !st; off += CHUNK_ELEMS) {
                int64_t k = nope * cols - off < CHUNK_ELEMS ? nope * cols - off : CHUNK_ELEMS;
                st = put_floats(c, s, tr + off, k, o->type);
            }
        }
        free(blk);
        free(tr);
        return st;
    }
    }
    return DSI_ERR_ARG;
}

/* ---- driver ---------------------------------------------------------------------------- */

static void conv_free(struct conv *c) {
    for (int k = 0; k < c->n; k++) {
        free(c->t[k].stack);
        free(c->t[k].data);
    }
    free(c->t);
    free(c->used);
    dsi_st_free(c->st);
}

static enum dsi_status run(const struct dsi_convert_params *p, void **mem, size_t *mem_size) {
    struct conv c = {0};
    c.p = p;
    struct dsi_tokenizer *tok = NULL;
    struct dsi_gguf_writer *w = NULL;
    struct sink s = {0};
    if (!dsi_path_is_dir(p->in_dir)) {
        DSI_LOG_ERR("convert: '%s' is not a directory", p->in_dir);
        return DSI_ERR_IO;
    }
    enum dsi_status st = read_config(p->in_dir, &c.h);
    c.lm_prefix = c.h.vl2 ? "language." : "";
    if (!st) st = dsi_st_open(p->in_dir, &c.st);
    if (!st) {
        c.used = calloc((size_t)(dsi_st_count(c.st) + 1), 1);
        if (!c.used) st = DSI_ERR_NOMEM;
    }
    if (!st) {
        c.outtype = p->outtype >= 0 ? (enum dsi_type)p->outtype : DSI_TYPE_F16;
        if (p->outtype < 0) {
            const struct dsi_st_tensor *e = find_src(&c, "model.embed_tokens.weight");
            if (e && e->dtype == DSI_ST_BF16) c.outtype = DSI_TYPE_BF16;
        }
        if (c.outtype != DSI_TYPE_F32 && c.outtype != DSI_TYPE_F16 && c.outtype != DSI_TYPE_BF16 &&
            c.outtype != DSI_TYPE_Q8_0) {
            DSI_LOG_ERR("convert: output type %s is not supported (f32, f16, bf16, q8_0)",
                        dsi_type_name(c.outtype));
            st = DSI_ERR_UNSUPPORTED;
        }
    }
    if (!st) st = build_plan(&c);
    if (!st) st = dsi_tokenizer_load(p->in_dir, &tok);
    if (!st) {
        w = dsi_gguf_writer_init();
        if (!w) st = DSI_ERR_NOMEM;
    }
    if (!st) {
        const char *base = strrchr(p->in_dir, '/');
        base = base && base[1] ? base + 1 : p->in_dir;
        st = dsi_convert_write_kv(&c.h, base, c.outtype, tok, w);
    }
    for (int k = 0; k < c.n && !st; k++)
        st = dsi_gguf_writer_add_tensor(w, c.t[k].name, c.t[k].type, c.t[k].n_dims, c.t[k].ne);
    if (!st) {
        s.w = w;
        s.f = malloc((size_t)CHUNK_ELEMS * sizeof(float));
        s.out = malloc((size_t)CHUNK_ELEMS * 4);
        if (!s.f || !s.out) st = DSI_ERR_NOMEM;
        c.prog = (struct dsi_progress){"convert", dsi_gguf_writer_data_size(w), 0, 0, p->progress};
    }
    if (!st) st = dsi_gguf_writer_begin(w, p->out_path);
    for (int k = 0; k < c.n && !st; k++) st = write_tensor(&c, &s, &c.t[k]);
    if (!st) st = dsi_gguf_writer_finish(w, mem, mem_size);
    if (st == DSI_ERR_NOMEM) DSI_LOG_ERR("convert: out of memory");
    dsi_progress_end(&c.prog);
    free(s.f);
    free(s.out);
    dsi_gguf_writer_free(w);
    dsi_tokenizer_free(tok);
    conv_free(&c);
    return st;
}

enum dsi_status dsi_convert(const struct dsi_convert_params *p) {
    if (!p->out_path) return DSI_ERR_ARG;
    return run(p, NULL, NULL);
}

enum dsi_status dsi_convert_to_memory(const struct dsi_convert_params *p, void **mem,
                                      size_t *size) {
    struct dsi_convert_params q = *p;
    q.out_path = NULL;
    *mem = NULL;
    *size = 0;
    return run(&q, mem, size);
}
