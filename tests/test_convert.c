/* Converter: every fixture checkpoint converts; metadata matches config.json; tensor data
 * round-trips (bf16 output bit-identical to the safetensors data, f32/f16 exactly the
 * converted values); llama q/k permutation, deepseek2 expert stacking and k_b/v_b split
 * checked element by element against the source; the written tokenizer encodes like the
 * tokenizer.json it came from; config variants (rope_parameters only, top-level only,
 * tied embeddings) and bad checkpoints (unknown architecture, missing tensor). */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/gguf.h"
#include "core/safetensors.h"
#include "src/convert.h"
#include "src/tokenizer.h"
#include "tests/util.h"

static cJSON *read_json(const char *path) {
    char *t = tu_read(path, NULL);
    cJSON *j = cJSON_Parse(t);
    free(t);
    return j;
}

static int64_t cfg_int(const cJSON *cfg, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(cfg, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

static int64_t kv_int(const struct dsi_gguf *g, const char *k) {
    int64_t v = -1;
    dsi_gguf_get_i64(g, k, &v);
    return v;
}

static float src_elem(const struct dsi_st_tensor *t, int64_t i) {
    float f;
    dsi_st_read_f32(t, i, 1, &f);
    return f;
}

static float gguf_elem(const struct dsi_gguf_tensor *t, int64_t i) {
    uint16_t h;
    float f;
    switch (t->type) {
    case DSI_TYPE_F32: memcpy(&f, (const char *)t->data + 4 * i, 4); return f;
    case DSI_TYPE_F16: memcpy(&h, (const char *)t->data + 2 * i, 2); return dsi_f16_to_f32(h);
    case DSI_TYPE_BF16: memcpy(&h, (const char *)t->data + 2 * i, 2); return dsi_bf16_to_f32(h);
    default: return NAN;
    }
}

/* The value a converter must store for source value v in type `type`. */
static float expect(float v, enum dsi_type type) {
    if (type == DSI_TYPE_F16) return dsi_f16_to_f32(dsi_f32_to_f16(v));
    if (type == DSI_TYPE_BF16) return dsi_bf16_to_f32(dsi_f32_to_bf16(v));
    return v;
}

/* Compare a GGUF tensor with a source tensor through an index map. */
typedef int64_t (*index_map)(int64_t i, const void *ctx);

static void cmp_tensor(const struct dsi_gguf *g, const char *gname, const struct dsi_st *st,
                       const char *sname, index_map map, const void *ctx, int64_t count,
                       int64_t first) {
    const struct dsi_gguf_tensor *t = dsi_gguf_find_tensor(g, gname);
    const struct dsi_st_tensor *s = dsi_st_find(st, sname);
    if (!t || !s) {
        TU_CHECK(0, "tensor %s / %s missing", gname, sname);
        return;
    }
    int64_t n = count >= 0 ? count : s->n_elements;
    for (int64_t i = 0; i < n; i++) {
        int64_t si = map ? map(i, ctx) : i;
        float want = expect(src_elem(s, si), t->type), got = gguf_elem(t, first + i);
        if (memcmp(&want, &got, 4) != 0) {
            TU_CHECK(0, "%s[%lld] = %g, want %g (%s[%lld])", gname, (long long)(first + i), got,
                     want, sname, (long long)si);
            return;
        }
    }
    /* bf16 output must hold the very bytes of a bf16 source */
    if (!map && count < 0 && t->type == DSI_TYPE_BF16 && s->dtype == DSI_ST_BF16)
        TU_CHECK(t->nbytes == s->nbytes && memcmp(t->data, s->data, s->nbytes) == 0,
                 "%s: bf16 bytes differ from the safetensors data", gname);
}

struct perm_ctx {
    int64_t hd, cols;
};

/* llama.cpp's permutation: new row h*hd + 2i + j <- old row h*hd + j*hd/2 + i. */
static int64_t perm_map(int64_t i, const void *vctx) {
    const struct perm_ctx *c = vctx;
    int64_t r = i / c->cols, col = i % c->cols;
    int64_t h = r / c->hd, q = r % c->hd, a = q / 2, j = q % 2;
    return (h * c->hd + j * (c->hd / 2) + a) * c->cols + col;
}

struct kb_ctx {
    int64_t nope, v, lora, head;
};

/* k_b[h][c][j] = kv_b[h*(nope+v) + j][c] */
static int64_t kb_map(int64_t i, const void *vctx) {
    const struct kb_ctx *c = vctx;
    int64_t cc = i / c->nope, j = i % c->nope;
    return (c->head * (c->nope + c->v) + j) * c->lora + cc;
}

/* v_b[h][r][c] = kv_b[h*(nope+v) + nope + r][c] */
static int64_t vb_map(int64_t i, const void *vctx) {
    const struct kb_ctx *c = vctx;
    int64_t r = i / c->lora, cc = i % c->lora;
    return (c->head * (c->nope + c->v) + c->nope + r) * c->lora + cc;
}

static void check_model(const char *name, const char *out_type_name, int outtype) {
    char dir[256], path[256];
    snprintf(dir, sizeof dir, "%s", tu_fixture(0, "models"));
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%s", name);
    const char *out = tu_tmp(0, ".gguf");
    struct dsi_convert_params p = {dir, out, outtype, false};
    if (dsi_convert(&p) != DSI_OK) {
        TU_CHECK(0, "%s: conversion to %s failed", name, out_type_name);
        return;
    }
    struct dsi_gguf *g;
    struct dsi_st *st;
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *cfg = read_json(path);
    if (dsi_gguf_open(out, &g) != DSI_OK || dsi_st_open(dir, &st) != DSI_OK) {
        TU_CHECK(0, "%s: cannot reopen", name);
        return;
    }
    struct dsi_gguf_str arch;
    dsi_gguf_get_str(g, "general.architecture", &arch);
    char a[32];
    snprintf(a, sizeof a, "%.*s", (int)arch.len, arch.ptr);
    const char *want_arch = strstr(name, "llama") ? "llama" : strstr(name, "deepseek") ? "deepseek2" : "qwen2";
    TU_CHECK(!strcmp(a, want_arch), "%s: architecture %s", name, a);
    char k[128];
#define KV(suffix) (snprintf(k, sizeof k, "%s.%s", a, suffix), kv_int(g, k))
    TU_CHECK(KV("block_count") == cfg_int(cfg, "num_hidden_layers"), "%s: block_count", name);
    TU_CHECK(KV("embedding_length") == cfg_int(cfg, "hidden_size"), "%s: embedding_length", name);
    TU_CHECK(KV("feed_forward_length") == cfg_int(cfg, "intermediate_size"), "%s: ffn", name);
    TU_CHECK(KV("attention.head_count") == cfg_int(cfg, "num_attention_heads"), "%s: heads", name);
    TU_CHECK(KV("context_length") == cfg_int(cfg, "max_position_embeddings"), "%s: ctx", name);
    float eps = 0, theta = 0;
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", a);
    dsi_gguf_get_f32(g, k, &eps);
    snprintf(k, sizeof k, "%s.rope.freq_base", a);
    dsi_gguf_get_f32(g, k, &theta);
    TU_CHECK(eps == (float)cJSON_GetObjectItem(cfg, "rms_norm_eps")->valuedouble, "%s: eps", name);
    TU_CHECK(theta == (float)cJSON_GetObjectItem(cfg, "rope_theta")->valuedouble, "%s: theta", name);
    int64_t ft = kv_int(g, "general.file_type");
    TU_CHECK(ft == (outtype == DSI_TYPE_F32 ? 0 : outtype == DSI_TYPE_F16 ? 1 : 32),
             "%s: file_type %lld", name, (long long)ft);

    int64_t n_layer = cfg_int(cfg, "num_hidden_layers");
    int64_t n_head = cfg_int(cfg, "num_attention_heads"), n_kv = cfg_int(cfg, "num_key_value_heads");
    cmp_tensor(g, "token_embd.weight", st, "model.embed_tokens.weight", NULL, NULL, -1, 0);
    cmp_tensor(g, "output.weight", st, "lm_head.weight", NULL, NULL, -1, 0);
    cmp_tensor(g, "output_norm.weight", st, "model.norm.weight", NULL, NULL, -1, 0);
    const struct dsi_gguf_tensor *norm = dsi_gguf_find_tensor(g, "output_norm.weight");
    TU_CHECK(norm && norm->type == DSI_TYPE_F32, "%s: norms must be stored f32", name);
    for (int64_t l = 0; l < n_layer; l++) {
        char gn[96], sn[160];
        snprintf(gn, sizeof gn, "blk.%lld.attn_norm.weight", (long long)l);
        snprintf(sn, sizeof sn, "model.layers.%lld.input_layernorm.weight", (long long)l);
        cmp_tensor(g, gn, st, sn, NULL, NULL, -1, 0);
        snprintf(gn, sizeof gn, "blk.%lld.attn_output.weight", (long long)l);
        snprintf(sn, sizeof sn, "model.layers.%lld.self_attn.o_proj.weight", (long long)l);
        cmp_tensor(g, gn, st, sn, NULL, NULL, -1, 0);
        if (!strcmp(a, "deepseek2")) continue;
        static const char *const qkv[] = {"q", "k", "v"};
        for (int w = 0; w < 3; w++) {
            for (int isbias = 0; isbias < 2; isbias++) {
                snprintf(gn, sizeof gn, "blk.%lld.attn_%s.%s", (long long)l, qkv[w], isbias ? "bias" : "weight");
                snprintf(sn, sizeof sn, "model.layers.%lld.self_attn.%s_proj.%s", (long long)l,
                         qkv[w], isbias ? "bias" : "weight");
                if (!dsi_st_find(st, sn)) {
                    TU_CHECK(!dsi_gguf_find_tensor(g, gn), "%s: unexpected %s", name, gn);
                    continue;
                }
                if (!strcmp(a, "llama") && w < 2) {
                    const struct dsi_st_tensor *s = dsi_st_find(st, sn);
                    struct perm_ctx pc = {s->shape[0] / (w == 0 ? n_head : n_kv),
                                          s->n_dims > 1 ? s->shape[1] : 1};
                    cmp_tensor(g, gn, st, sn, perm_map, &pc, -1, 0);
                } else {
                    cmp_tensor(g, gn, st, sn, NULL, NULL, -1, 0);
                }
            }
        }
    }
    if (!strcmp(a, "llama")) {
        /* rope_freqs: llama3 divisors, the formula of models.md B.2 in double precision */
        const struct dsi_gguf_tensor *rf = dsi_gguf_find_tensor(g, "rope_freqs.weight");
        int64_t hd = cfg_int(cfg, "head_dim");
        TU_CHECK(rf && rf->ne[0] == hd / 2 && rf->type == DSI_TYPE_F32, "%s: rope_freqs", name);
        for (int64_t i = 0; rf && i < hd / 2; i++) {
            double f = pow(500000.0, -2.0 * (double)i / (double)hd), lam = 2 * M_PI / f, want;
            if (lam < 8192.0 / 4) want = 1;
            else if (lam > 8192.0) want = 8;
            else {
                double s = (8192.0 / lam - 1) / 3;
                want = f / ((1 - s) * f / 8 + s * f);
            }
            TU_CHECK(fabs(gguf_elem(rf, i) - want) <= 1e-5 * want, "%s: rope_freqs[%lld] = %g, want %g",
                     name, (long long)i, gguf_elem(rf, i), want);
        }
    }
    if (!strcmp(a, "deepseek2")) {
        int64_t nope = cfg_int(cfg, "qk_nope_head_dim"), v = cfg_int(cfg, "v_head_dim");
        int64_t lora = cfg_int(cfg, "kv_lora_rank"), n_exp = cfg_int(cfg, "n_routed_experts");
        int64_t dense = cfg_int(cfg, "first_k_dense_replace");
        TU_CHECK(KV("attention.head_count_kv") == 1, "%s: MLA stored as MQA (head_count_kv 1)", name);
        TU_CHECK(KV("attention.key_length_mla") == nope + cfg_int(cfg, "qk_rope_head_dim"), "%s: key_length_mla", name);
        TU_CHECK(KV("attention.value_length") == lora, "%s: value_length", name);
        TU_CHECK(KV("expert_count") == n_exp, "%s: expert_count", name);
        TU_CHECK(KV("leading_dense_block_count") == dense, "%s: leading dense", name);
        for (int64_t l = 0; l < n_layer; l++) {
            char gn[96], sn[160];
            snprintf(sn, sizeof sn, "model.layers.%lld.self_attn.kv_b_proj.weight", (long long)l);
            snprintf(gn, sizeof gn, "blk.%lld.attn_kv_b.weight", (long long)l);
            TU_CHECK(!dsi_gguf_find_tensor(g, gn), "%s: legacy attn_kv_b written", name);
            for (int64_t h = 0; h < n_head; h++) {
                struct kb_ctx kc = {nope, v, lora, h};
                snprintf(gn, sizeof gn, "blk.%lld.attn_k_b.weight", (long long)l);
                cmp_tensor(g, gn, st, sn, kb_map, &kc, lora * nope, h * lora * nope);
                snprintf(gn, sizeof gn, "blk.%lld.attn_v_b.weight", (long long)l);
                cmp_tensor(g, gn, st, sn, vb_map, &kc, v * lora, h * v * lora);
            }
            if (l < dense) continue;
            snprintf(gn, sizeof gn, "blk.%lld.ffn_gate_inp.weight", (long long)l);
            snprintf(sn, sizeof sn, "model.layers.%lld.mlp.gate.weight", (long long)l);
            cmp_tensor(g, gn, st, sn, NULL, NULL, -1, 0);
            const struct dsi_gguf_tensor *gi = dsi_gguf_find_tensor(g, gn);
            TU_CHECK(gi && gi->type == DSI_TYPE_F32, "%s: router must be f32", name);
            static const char *const proj[] = {"gate", "up", "down"};
            for (int w = 0; w < 3; w++) {
                snprintf(gn, sizeof gn, "blk.%lld.ffn_%s_exps.weight", (long long)l, proj[w]);
                const struct dsi_gguf_tensor *et = dsi_gguf_find_tensor(g, gn);
                TU_CHECK(et && et->n_dims == 3 && et->ne[2] == n_exp, "%s: %s shape", name, gn);
                for (int64_t e = 0; et && e < n_exp; e++) {
                    snprintf(sn, sizeof sn, "model.layers.%lld.mlp.experts.%lld.%s_proj.weight",
                             (long long)l, (long long)e, proj[w]);
                    int64_t per = et->ne[0] * et->ne[1];
                    cmp_tensor(g, gn, st, sn, NULL, NULL, per, e * per);
                }
                snprintf(gn, sizeof gn, "blk.%lld.ffn_%s_shexp.weight", (long long)l, proj[w]);
                snprintf(sn, sizeof sn, "model.layers.%lld.mlp.shared_experts.%s_proj.weight",
                         (long long)l, proj[w]);
                cmp_tensor(g, gn, st, sn, NULL, NULL, -1, 0);
            }
        }
    }
#undef KV
    /* the written tokenizer encodes like tokenizer.json */
    struct dsi_tokenizer *t1, *t2;
    if (dsi_tokenizer_load(dir, &t1) == DSI_OK && dsi_tokenizer_load_gguf(g, &t2) == DSI_OK) {
        static const char *const texts[] = {
            "ROMEO:\nBut, soft! what light through yonder window breaks?",
            "<|endoftext|>Hello  world\n\n\t 12345 caf\xc3\xa9 e\xcc\x81 \xe6\xb7\xb1\xe5\xba\xa6",
        };
        for (int i = 0; i < 2; i++) {
            int32_t *x, *y;
            size_t nx, ny;
            dsi_tokenizer_encode(t1, texts[i], strlen(texts[i]), DSI_TOK_PARSE_SPECIAL, &x, &nx);
            dsi_tokenizer_encode(t2, texts[i], strlen(texts[i]), DSI_TOK_PARSE_SPECIAL, &y, &ny);
            TU_CHECK(nx == ny && memcmp(x, y, nx * 4) == 0, "%s: GGUF tokenizer differs on text %d", name, i);
            free(x);
            free(y);
        }
        TU_CHECK(dsi_tokenizer_n_vocab(t2) == cfg_int(cfg, "vocab_size"), "%s: token count", name);
        dsi_tokenizer_free(t1);
        dsi_tokenizer_free(t2);
    } else {
        TU_CHECK(0, "%s: tokenizer load failed", name);
    }
    TU_LOG("%s (%s): ok\n", name, out_type_name);
    cJSON_Delete(cfg);
    dsi_st_free(st);
    dsi_gguf_free(g);
    unlink(out);
}

/* A copy of a fixture directory (symlinks) with a config.json edited by `edit`. */
static const char *variant_dir(const char *model, void (*edit)(cJSON *)) {
    static char dir[256];
    snprintf(dir, sizeof dir, "%s", tu_tmp(1, "-variant"));
    mkdir(dir, 0755);
    static const char *const files[] = {"model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                        "generation_config.json"};
    char src[512], dst[512];
    for (int i = 0; i < 4; i++) {
        snprintf(src, sizeof src, "%s/models/%s/%s", tu_fixture(0, ""), model, files[i]);
        char *abs = realpath(src, NULL);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        unlink(dst);
        if (abs && symlink(abs, dst) != 0) TU_CHECK(0, "symlink failed");
        free(abs);
    }
    snprintf(src, sizeof src, "%s/models/%s/config.json", tu_fixture(0, ""), model);
    cJSON *cfg = read_json(src);
    edit(cfg);
    char *text = cJSON_Print(cfg);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    FILE *f = fopen(dst, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(cfg);
    return dir;
}

static void rm_dir(const char *dir) {
    static const char *const files[] = {"model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                        "generation_config.json", "config.json"};
    char p[512];
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void only_rope_parameters(cJSON *c) {
    cJSON_DeleteItemFromObject(c, "rope_theta");
    cJSON_DeleteItemFromObject(c, "rope_scaling");
}
static void only_top_level(cJSON *c) { cJSON_DeleteItemFromObject(c, "rope_parameters"); }
static void tied(cJSON *c) { cJSON_ReplaceItemInObject(c, "tie_word_embeddings", cJSON_CreateTrue()); }
static void bad_arch(cJSON *c) {
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(c, "architectures"), 0, cJSON_CreateString("GPT2LMHeadModel"));
}
static void more_layers(cJSON *c) {
    cJSON_ReplaceItemInObject(c, "num_hidden_layers", cJSON_CreateNumber(99));
}

static void convert_variant(const char *model, void (*edit)(cJSON *), bool should_work,
                            const char *what, const char *want_err) {
    const char *dir = variant_dir(model, edit);
    const char *out = tu_tmp(2, ".gguf");
    struct dsi_convert_params p = {dir, out, -1, false};
    tu_capture_log(true);
    enum dsi_status s = dsi_convert(&p);
    tu_capture_log(false);
    TU_CHECK((s == DSI_OK) == should_work, "%s: status %s", what, dsi_status_str(s));
    if (!should_work && want_err)
        TU_CHECK(strstr(tu_last_log(), want_err) != NULL, "%s: message '%s' lacks '%s'", what,
                 tu_last_log(), want_err);
    if (s == DSI_OK) {
        struct dsi_gguf *g;
        if (dsi_gguf_open(out, &g) == DSI_OK) {
            float theta = 0;
            dsi_gguf_get_f32(g, "llama.rope.freq_base", &theta);
            TU_CHECK(theta == 500000.0f, "%s: freq_base %g", what, theta);
            TU_CHECK(dsi_gguf_find_tensor(g, "rope_freqs.weight") != NULL, "%s: rope_freqs", what);
            bool tie = edit == tied;
            TU_CHECK((dsi_gguf_find_tensor(g, "output.weight") == NULL) == tie, "%s: output.weight", what);
            dsi_gguf_free(g);
        }
    }
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    TU_CHECK(!dsi_path_exists(tmp), "%s: partial output left behind", what);
    unlink(out);
    rm_dir(dir);
}

/* DeepSeek-VL2 configs: keys a released config leaves out take the official code's values;
 * what cannot be supported is an error naming it. */
static void vl2_defaults(cJSON *c) {
    cJSON *vc = cJSON_GetObjectItem(c, "vision_config"), *pc = cJSON_GetObjectItem(c, "projector_config");
    cJSON_DeleteItemFromObject(vc, "image_size");
    cJSON_DeleteItemFromObject(pc, "projector_type");
    cJSON_DeleteItemFromObject(pc, "downsample_ratio");
    cJSON_DeleteItemFromObject(pc, "depth");
    cJSON_DeleteItemFromObject(pc, "mlp_ratio");
}
static void vl2_unknown_tower(cJSON *c) {
    cJSON *vc = cJSON_GetObjectItem(c, "vision_config");
    cJSON_ReplaceItemInObject(vc, "model_name", cJSON_CreateString("siglip_large_patch16_384"));
    cJSON_DeleteItemFromObject(vc, "heads");
}
static void vl2_other_projector(cJSON *c) {
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(c, "projector_config"), "projector_type",
                              cJSON_CreateString("mlp_gelu"));
}
static void vl2_no_language(cJSON *c) { cJSON_DeleteItemFromObject(c, "language_config"); }
static void vl2_three_tiles_tag(cJSON *c) {
    cJSON_ReplaceItemInObject(c, "tile_tag", cJSON_CreateString("1D"));
}

static void convert_vl2_variant(void (*edit)(cJSON *), const char *what, const char *want_err) {
    const char *dir = variant_dir("tiny-vl2-mha", edit);
    const char *out = tu_tmp(2, ".gguf");
    struct dsi_convert_params p = {dir, out, -1, false};
    tu_capture_log(true);
    enum dsi_status s = dsi_convert(&p);
    tu_capture_log(false);
    TU_CHECK((s == DSI_OK) == (want_err == NULL), "vl2 %s: status %s", what, dsi_status_str(s));
    if (want_err)
        TU_CHECK(strstr(tu_last_log(), want_err) != NULL, "vl2 %s: message '%s' lacks '%s'", what,
                 tu_last_log(), want_err);
    struct dsi_gguf *g;
    if (s == DSI_OK && dsi_gguf_open(out, &g) == DSI_OK) {
        uint32_t size = 0, scale = 0;
        dsi_gguf_get_u32(g, "clip.vision.image_size", &size);
        dsi_gguf_get_u32(g, "clip.vision.projector.scale_factor", &scale);
        TU_CHECK(size == 384 && scale == 2, "vl2 %s: image size %u, scale %u", what, size, scale);
        dsi_gguf_free(g);
    }
    unlink(out);
    rm_dir(dir);
}

/* Write tensors [a, b) of `st` as one safetensors shard. */
static void write_shard(const struct dsi_st *st, int64_t a, int64_t b, const char *path) {
    cJSON *h = cJSON_CreateObject();
    uint64_t off = 0;
    for (int64_t i = a; i < b; i++) {
        const struct dsi_st_tensor *t = dsi_st_get(st, i);
        cJSON *o = cJSON_AddObjectToObject(h, t->name);
        cJSON_AddStringToObject(o, "dtype", dsi_st_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += t->nbytes;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *text = cJSON_PrintUnformatted(h);
    uint64_t n = strlen(text);
    FILE *f = fopen(path, "wb");
    fwrite(&n, 8, 1, f);
    fwrite(text, 1, n, f);
    for (int64_t i = a; i < b; i++) fwrite(dsi_st_get(st, i)->data, 1, dsi_st_get(st, i)->nbytes, f);
    fclose(f);
    free(text);
    cJSON_Delete(h);
}

/* A sharded copy of tiny-qwen2 (DeepSeek's 6-digit shard naming) converts to the same bytes
 * as the single file; an index naming a missing tensor is an error. */
static void test_sharded(void) {
    char dir[256], src[512], dst[512];
    snprintf(dir, sizeof dir, "%s", tu_tmp(4, "-sharded"));
    mkdir(dir, 0755);
    snprintf(src, sizeof src, "%s/models/tiny-qwen2", tu_fixture(0, ""));
    struct dsi_st *st;
    if (dsi_st_open(src, &st) != DSI_OK) {
        TU_CHECK(0, "cannot open tiny-qwen2");
        return;
    }
    int64_t n = dsi_st_count(st), half = n / 2;
    static const char *const shard[2] = {"model-00001-of-000002.safetensors",
                                         "model-00002-of-000002.safetensors"};
    for (int k = 0; k < 2; k++) {
        snprintf(dst, sizeof dst, "%s/%s", dir, shard[k]);
        write_shard(st, k ? half : 0, k ? n : half, dst);
    }
    cJSON *idx = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(idx, "weight_map");
    cJSON_AddObjectToObject(idx, "metadata");
    for (int64_t i = 0; i < n; i++)
        cJSON_AddStringToObject(wm, dsi_st_get(st, i)->name, shard[i >= half]);
    static const char *const files[] = {"config.json", "tokenizer.json", "tokenizer_config.json"};
    for (int k = 0; k < 3; k++) {
        snprintf(src, sizeof src, "%s/models/tiny-qwen2/%s", tu_fixture(0, ""), files[k]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[k]);
        char *abs = realpath(src, NULL);
        unlink(dst);
        if (!abs || symlink(abs, dst)) TU_CHECK(0, "symlink");
        free(abs);
    }
    snprintf(dst, sizeof dst, "%s/model.safetensors.index.json", dir);
    char *text = cJSON_Print(idx);
    FILE *f = fopen(dst, "w");
    fputs(text, f);
    fclose(f);
    free(text);

    const char *o1 = tu_tmp(5, "-single.gguf"), *o2 = tu_tmp(6, "-sharded.gguf");
    snprintf(src, sizeof src, "%s/models/tiny-qwen2", tu_fixture(0, ""));
    struct dsi_convert_params p1 = {src, o1, -1, false}, p2 = {dir, o2, -1, false};
    TU_CHECK(dsi_convert(&p1) == DSI_OK && dsi_convert(&p2) == DSI_OK, "sharded conversion failed");
    /* identical except general.name (the directory name) */
    struct dsi_gguf *g1, *g2;
    if (dsi_gguf_open(o1, &g1) == DSI_OK && dsi_gguf_open(o2, &g2) == DSI_OK) {
        TU_CHECK(dsi_gguf_n_tensors(g1) == dsi_gguf_n_tensors(g2) &&
                     dsi_gguf_n_kv(g1) == dsi_gguf_n_kv(g2), "tensor or key count differs");
        for (int64_t i = 0; i < dsi_gguf_n_tensors(g1); i++) {
            const struct dsi_gguf_tensor *a = dsi_gguf_tensor(g1, i);
            const struct dsi_gguf_tensor *b = dsi_gguf_find_tensor(g2, a->name);
            TU_CHECK(b && a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes),
                     "sharded: tensor %s differs", a->name);
        }
        dsi_gguf_free(g1);
        dsi_gguf_free(g2);
    }
    /* an index naming a tensor that no shard holds */
    cJSON_AddStringToObject(wm, "model.layers.9.mlp.up_proj.weight", shard[0]);
    text = cJSON_Print(idx);
    f = fopen(dst, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    tu_capture_log(true);
    TU_CHECK(dsi_convert(&p2) == DSI_ERR_FORMAT, "index with a missing tensor accepted");
    tu_capture_log(false);
    TU_CHECK(strstr(tu_last_log(), "model.layers.9.mlp.up_proj.weight"), "message: %s", tu_last_log());
    cJSON_Delete(idx);
    dsi_st_free(st);
    unlink(o1);
    unlink(o2);
    unlink(dst);
    for (int k = 0; k < 2; k++) {
        snprintf(dst, sizeof dst, "%s/%s", dir, shard[k]);
        unlink(dst);
    }
    for (int k = 0; k < 3; k++) {
        snprintf(dst, sizeof dst, "%s/%s", dir, files[k]);
        unlink(dst);
    }
    rmdir(dir);
}

/* models/shakespeare-qwen2.gguf is exactly what the converter makes of the fixture. */
static void test_default_model(void) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/models/shakespeare-qwen2", tu_fixture(0, ""));
    const char *out = tu_tmp(7, ".gguf");
    struct dsi_convert_params p = {dir, out, DSI_TYPE_BF16, false};
    TU_CHECK(dsi_convert(&p) == DSI_OK, "default model conversion");
    size_t a, b;
    char *x = tu_read(out, &a), *y = tu_read("models/shakespeare-qwen2.gguf", &b);
    TU_CHECK(a == b && memcmp(x, y, a) == 0,
             "models/shakespeare-qwen2.gguf is not the converter's output for the fixture");
    free(x);
    free(y);
    unlink(out);
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    test_default_model();
    test_sharded();
    check_model("tiny-qwen2", "bf16", DSI_TYPE_BF16);
    check_model("tiny-qwen2", "f32", DSI_TYPE_F32);
    check_model("tiny-llama3", "bf16", DSI_TYPE_BF16);
    check_model("tiny-llama3", "f16", DSI_TYPE_F16);
    check_model("tiny-deepseek2-lite", "bf16", DSI_TYPE_BF16);
    check_model("tiny-deepseek2-qlora", "f32", DSI_TYPE_F32);
    check_model("shakespeare-qwen2", "bf16", DSI_TYPE_BF16);
    convert_variant("tiny-llama3", only_rope_parameters, true, "rope_parameters only", NULL);
    convert_variant("tiny-llama3", only_top_level, true, "top-level rope keys only", NULL);
    convert_variant("tiny-llama3", tied, true, "tied embeddings", NULL);
    convert_variant("tiny-llama3", bad_arch, false, "unsupported architecture", "GPT2LMHeadModel");
    convert_variant("tiny-llama3", more_layers, false, "missing layers", "model.layers.3.");
    convert_vl2_variant(vl2_defaults, "defaults for absent keys", NULL);
    convert_vl2_variant(vl2_unknown_tower, "another tower without heads", "'heads' is missing");
    convert_vl2_variant(vl2_other_projector, "another projector", "projector_type 'mlp_gelu'");
    convert_vl2_variant(vl2_no_language, "no language_config", "has no language_config");
    convert_vl2_variant(vl2_three_tiles_tag, "1D tile tag", "tile_tag 2D");
    return tu_finish("test_convert");
}
