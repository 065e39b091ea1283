/* Model quantization (see quantize_model.h). The type rules follow llama.cpp's
 * llama_tensor_get_type for the file types we support, evaluated in llama.cpp's tensor order
 * (by block number, then name), which is what its per-layer counters see. */
#include "src/quantize_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "quant/kernels.h"
#include "quant/quantize.h"

static const struct {
    const char *name;
    enum dsi_ftype ftype;
    enum dsi_type def; /* the mix's default tensor type */
} ftypes[] = {
    {"F32", DSI_FTYPE_F32, DSI_TYPE_F32},           {"F16", DSI_FTYPE_F16, DSI_TYPE_F16},
    {"BF16", DSI_FTYPE_BF16, DSI_TYPE_BF16},        {"Q8_0", DSI_FTYPE_Q8_0, DSI_TYPE_Q8_0},
    {"Q4_0", DSI_FTYPE_Q4_0, DSI_TYPE_Q4_0},        {"Q4_1", DSI_FTYPE_Q4_1, DSI_TYPE_Q4_1},
    {"Q5_0", DSI_FTYPE_Q5_0, DSI_TYPE_Q5_0},        {"Q5_1", DSI_FTYPE_Q5_1, DSI_TYPE_Q5_1},
    {"Q2_K", DSI_FTYPE_Q2_K, DSI_TYPE_Q2_K},        {"Q3_K_S", DSI_FTYPE_Q3_K_S, DSI_TYPE_Q3_K},
    {"Q3_K_M", DSI_FTYPE_Q3_K_M, DSI_TYPE_Q3_K},    {"Q3_K_L", DSI_FTYPE_Q3_K_L, DSI_TYPE_Q3_K},
    {"Q4_K_S", DSI_FTYPE_Q4_K_S, DSI_TYPE_Q4_K},    {"Q4_K_M", DSI_FTYPE_Q4_K_M, DSI_TYPE_Q4_K},
    {"Q5_K_S", DSI_FTYPE_Q5_K_S, DSI_TYPE_Q5_K},    {"Q5_K_M", DSI_FTYPE_Q5_K_M, DSI_TYPE_Q5_K},
    {"Q6_K", DSI_FTYPE_Q6_K, DSI_TYPE_Q6_K},        {"IQ4_NL", DSI_FTYPE_IQ4_NL, DSI_TYPE_IQ4_NL},
    {"IQ4_XS", DSI_FTYPE_IQ4_XS, DSI_TYPE_IQ4_XS},
};
#define N_FTYPES (sizeof ftypes / sizeof ftypes[0])

bool dsi_ftype_from_name(const char *name, enum dsi_ftype *out) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (!strcasecmp(name, ftypes[i].name)) {
            *out = ftypes[i].ftype;
            return true;
        }
    return false;
}

const char *dsi_ftype_name(enum dsi_ftype f) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (ftypes[i].ftype == f) return ftypes[i].name;
    return "unknown";
}

const char *dsi_ftype_names(void) {
    static char buf[256];
    if (!buf[0])
        for (size_t i = 0; i < N_FTYPES; i++) {
            size_t n = strlen(buf);
            snprintf(buf + n, sizeof buf - n, "%s%s", i ? " " : "", ftypes[i].name);
        }
    return buf;
}

static enum dsi_type default_type(enum dsi_ftype f) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (ftypes[i].ftype == f) return ftypes[i].def;
    return DSI_TYPE_COUNT;
}

static bool is_float(enum dsi_type t) {
    return t == DSI_TYPE_F32 || t == DSI_TYPE_F16 || t == DSI_TYPE_BF16;
}

/* ---- the type rules -------------------------------------------------------------------- */

enum category {
    CAT_TOKEN_EMBD,
    CAT_ATTN_Q,
    CAT_ATTN_V, /* attn_v, attn_qkv, attn_kv_b: "attn_v-like" */
    CAT_ATTN_K,
    CAT_ATTN_OUTPUT,
    CAT_FFN_UP,
    CAT_FFN_GATE,
    CAT_FFN_DOWN,
    CAT_OUTPUT,
    CAT_OTHER
};

static enum category category(const char *name) {
    if (!strcmp(name, "output.weight")) return CAT_OUTPUT;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight"))
        return CAT_TOKEN_EMBD;
    if (strstr(name, "attn_qkv.weight") || strstr(name, "attn_kv_b.weight") || strstr(name, "attn_v.weight"))
        return CAT_ATTN_V;
    if (strstr(name, "attn_k.weight")) return CAT_ATTN_K;
    if (strstr(name, "attn_q.weight")) return CAT_ATTN_Q;
    if (strstr(name, "attn_output.weight")) return CAT_ATTN_OUTPUT;
    if (strstr(name, "ffn_up")) return CAT_FFN_UP;
    if (strstr(name, "ffn_gate")) return CAT_FFN_GATE;
    if (strstr(name, "ffn_down")) return CAT_FFN_DOWN;
    return CAT_OTHER;
}

static int n_dims_of(const struct dsi_gguf_tensor *t) {
    int n = 4;
    while (n > 1 && t->ne[n - 1] == 1) n--;
    return n;
}

/* DeepSeek-VL2's vision tower and projector in the same file (docs/VISION.md): kept at the
 * precision they were converted in, and left out of the language model's rules. */
static bool is_vision(const char *name) { return !strncmp(name, "v.", 2) || !strncmp(name, "mm.", 3); }

static bool allows_quantization(const struct dsi_gguf_tensor *t) {
    if (n_dims_of(t) < 2 || is_vision(t->name)) return false;
    const char *name = t->name;
    size_t n = strlen(name);
    if (n < 6 || strcmp(name + n - 6, "weight") != 0) return false;
    static const char *const never[] = {"_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d",
                                        "attn_rel_b.weight", ".position_embd", ".rel_pos",
                                        ".patch_embd", ".patch_merger"};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (strstr(name, never[i])) return false;
    return strcmp(name, "position_embd.weight") != 0 && strcmp(name, "token_types.weight") != 0;
}

/* Layer of "blk.N...." (-1 for none). */
static int layer_of(const char *name) {
    int l = -1;
    if (sscanf(name, "blk.%d.", &l) != 1) return -1;
    return l;
}

static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

struct rules {
    enum dsi_ftype ftype;
    int n_layer, n_expert, n_gqa;
    bool tied, is_70b;
    int n_attn_v, i_attn_v, i_ffn_down;
};

static enum dsi_type choose(struct rules *r, const struct dsi_gguf_tensor *t, enum dsi_type ty) {
    enum category cat = category(t->name);
    enum dsi_ftype f = r->ftype;
    bool n8 = r->n_expert == 8;
    if (cat == CAT_OUTPUT || (r->tied && cat == CAT_TOKEN_EMBD)) {
        if (t->ne[0] % dsi_type_traits(ty)->blck != 0) ty = DSI_TYPE_Q8_0;
        else if (ty != DSI_TYPE_Q8_0) ty = DSI_TYPE_Q6_K;
    } else if (cat == CAT_TOKEN_EMBD) {
        /* the default type */
    } else if (cat == CAT_ATTN_V) {
        int i = r->i_attn_v, n = r->n_attn_v;
        if (f == DSI_FTYPE_Q2_K) ty = r->n_gqa >= 4 ? DSI_TYPE_Q4_K : DSI_TYPE_Q3_K;
        else if (f == DSI_FTYPE_Q3_K_M) ty = i < 2 ? DSI_TYPE_Q5_K : DSI_TYPE_Q4_K;
        else if (f == DSI_FTYPE_Q3_K_L) ty = DSI_TYPE_Q5_K;
        else if ((f == DSI_FTYPE_IQ4_NL || f == DSI_FTYPE_IQ4_XS) && r->n_gqa >= 4) ty = DSI_TYPE_Q5_K;
        else if ((f == DSI_FTYPE_Q4_K_M || f == DSI_FTYPE_Q5_K_M) && use_more_bits(i, n)) ty = DSI_TYPE_Q6_K;
        else if (f == DSI_FTYPE_Q4_K_S && i < 4) ty = DSI_TYPE_Q5_K;
        if (r->is_70b && (ty == DSI_TYPE_Q3_K || ty == DSI_TYPE_Q4_K)) ty = DSI_TYPE_Q5_K;
        if (n8) ty = DSI_TYPE_Q8_0;
        r->i_attn_v++;
    } else if (cat == CAT_ATTN_K) {
        if (n8) ty = DSI_TYPE_Q8_0;
    } else if (cat == CAT_FFN_DOWN) {
        int i = r->i_ffn_down, n = r->n_layer;
        if (r->n_expert > 1) i = layer_of(t->name);
        if (f == DSI_FTYPE_Q2_K) ty = DSI_TYPE_Q3_K;
        else if (f == DSI_FTYPE_Q3_K_M) ty = i < n / 16 ? DSI_TYPE_Q5_K : DSI_TYPE_Q4_K;
        else if (f == DSI_FTYPE_Q3_K_L) ty = DSI_TYPE_Q5_K;
        else if (f == DSI_FTYPE_Q4_K_M) {
            if (use_more_bits(i, n)) ty = DSI_TYPE_Q6_K;
        } else if (i < n / 8 && (f == DSI_FTYPE_IQ4_NL || f == DSI_FTYPE_IQ4_XS)) ty = DSI_TYPE_Q5_K;
        else if (f == DSI_FTYPE_Q5_K_M && use_more_bits(i, n)) ty = DSI_TYPE_Q6_K;
        else if (f == DSI_FTYPE_Q4_K_S && i < n / 8) ty = DSI_TYPE_Q5_K;
        r->i_ffn_down++;
    } else if (cat == CAT_ATTN_OUTPUT) {
        if (n8) {
            if (f == DSI_FTYPE_Q2_K || f == DSI_FTYPE_Q3_K_S || f == DSI_FTYPE_Q3_K_M ||
                f == DSI_FTYPE_IQ4_NL || f == DSI_FTYPE_Q4_K_S || f == DSI_FTYPE_Q4_K_M ||
                f == DSI_FTYPE_IQ4_XS)
                ty = DSI_TYPE_Q5_K;
        } else if (f == DSI_FTYPE_Q2_K) ty = DSI_TYPE_Q3_K;
        else if (f == DSI_FTYPE_Q3_K_M) ty = DSI_TYPE_Q4_K;
        else if (f == DSI_FTYPE_Q3_K_L) ty = DSI_TYPE_Q5_K;
    }
    return ty;
}

/* A type whose block does not divide the row falls back as llama.cpp's does. */
static enum dsi_type fallback(const struct dsi_gguf_tensor *t, enum dsi_type ty) {
    if (t->ne[0] % dsi_type_traits(ty)->blck == 0) return ty;
    switch (ty) {
    case DSI_TYPE_IQ4_XS: ty = DSI_TYPE_IQ4_NL; break;
    case DSI_TYPE_Q2_K:
    case DSI_TYPE_Q3_K: ty = DSI_TYPE_Q4_0; break;
    case DSI_TYPE_Q4_K: ty = DSI_TYPE_Q5_0; break;
    case DSI_TYPE_Q5_K: ty = DSI_TYPE_Q5_1; break;
    case DSI_TYPE_Q6_K: ty = DSI_TYPE_Q8_0; break;
    default: break;
    }
    if (t->ne[0] % dsi_type_traits(ty)->blck != 0) ty = DSI_TYPE_F16;
    return ty;
}

static int64_t kv_int(const struct dsi_gguf *g, const char *arch, const char *suffix, int64_t dflt) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    return dsi_gguf_get_i64(g, key, &v) == DSI_OK ? v : dflt;
}

/* llama.cpp's tensor order: by block number (none first), then by name. */
struct ordered {
    int layer;
    const char *name;
    int64_t index;
};

static int cmp_ordered(const void *a, const void *b) {
    const struct ordered *x = a, *y = b;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

enum dsi_status dsi_quantize_plan(const struct dsi_gguf *g, const struct dsi_quantize_params *p,
                                  enum dsi_type *types) {
    enum dsi_type def = default_type(p->ftype);
    if (def == DSI_TYPE_COUNT) {
        DSI_LOG_ERR("quantize: unknown file type %d", (int)p->ftype);
        return DSI_ERR_ARG;
    }
    struct dsi_gguf_str arch_s;
    char arch[64] = "";
    if (dsi_gguf_get_str(g, "general.architecture", &arch_s) == DSI_OK && arch_s.len < sizeof arch) {
        memcpy(arch, arch_s.ptr, arch_s.len);
        arch[arch_s.len] = '\0';
    }
    int64_t nt = dsi_gguf_n_tensors(g);
    struct rules r = {p->ftype, 0, 0, 0, true, false, 0, 0, 0};
    r.n_layer = (int)kv_int(g, arch, "block_count", 0);
    r.n_expert = (int)kv_int(g, arch, "expert_count", 0);
    int64_t nh = kv_int(g, arch, "attention.head_count", 0);
    int64_t nkv = kv_int(g, arch, "attention.head_count_kv", nh);
    r.n_gqa = nkv > 0 ? (int)(nh / nkv) : 0;
    r.is_70b = !strcmp(arch, "llama") && r.n_layer == 80 && nh != nkv;
    for (int64_t i = 0; i < nt; i++) {
        const char *name = dsi_gguf_tensor(g, i)->name;
        if (is_vision(name)) continue;
        if (category(name) == CAT_ATTN_V) r.n_attn_v++;
        if (category(name) == CAT_OUTPUT) r.tied = false;
    }
    struct ordered *order = malloc((size_t)(nt + 1) * sizeof *order);
    if (!order) return DSI_ERR_NOMEM;
    for (int64_t i = 0; i < nt; i++) {
        const char *name = dsi_gguf_tensor(g, i)->name;
        order[i] = (struct ordered){layer_of(name), name, i};
    }
    qsort(order, (size_t)nt, sizeof *order, cmp_ordered);
    enum dsi_status st = DSI_OK;
    for (int64_t k = 0; k < nt && !st; k++) {
        const struct dsi_gguf_tensor *t = dsi_gguf_tensor(g, order[k].index);
        enum dsi_type ty = t->type;
        if (p->vision_q8 && is_vision(t->name) && n_dims_of(t) == 2 && t->ne[0] % 32 == 0 &&
            strstr(t->name, ".weight") && strcmp(t->name, "v.position_embd.weight") != 0)
            ty = DSI_TYPE_Q8_0;
        if (allows_quantization(t)) {
            enum category cat = category(t->name);
            if (p->token_embd_type >= 0 && cat == CAT_TOKEN_EMBD) ty = (enum dsi_type)p->token_embd_type;
            else if (p->output_type >= 0 && cat == CAT_OUTPUT) ty = (enum dsi_type)p->output_type;
            else {
                ty = def;
                if (!is_float(def)) {
                    if (!p->pure) ty = choose(&r, t, ty);
                    ty = fallback(t, ty);
                }
            }
            if (t->ne[0] % dsi_type_traits(ty)->blck != 0) {
                DSI_LOG_ERR("quantize: tensor '%s' has rows of %lld elements, not whole %s blocks",
                            t->name, (long long)t->ne[0], dsi_type_name(ty));
                st = DSI_ERR_ARG;
            }
        }
        if (!st && ty != t->type) {
            const struct dsi_type_kernels *kt = dsi_kernels(t->type);
            if (!kt || !kt->to_f32) {
                DSI_LOG_ERR("quantize: tensor '%s' is %s, which dsinfer cannot read", t->name,
                            dsi_type_name(t->type));
                st = DSI_ERR_UNSUPPORTED;
            } else if (!is_float(t->type) && !p->allow_requantize) {
                DSI_LOG_ERR("quantize: tensor '%s' is already quantized (%s); requantizing loses "
                            "quality, pass --allow-requantize to do it anyway",
                            t->name, dsi_type_name(t->type));
                st = DSI_ERR_UNSUPPORTED;
            }
        }
        types[order[k].index] = ty;
    }
    free(order);
    return st;
}

/* ---- the file -------------------------------------------------------------------------- */

/* Rows [r0, r0 + nr) of t converted to `ty` into out (nr * row size of ty bytes). */
static void convert_rows(const struct dsi_gguf_tensor *t, enum dsi_type ty, int64_t r0, int64_t nr,
                         uint8_t *out, float *fbuf, int n_threads) {
    int64_t K = t->ne[0];
    size_t in_row = dsi_row_size(t->type, K), out_row = dsi_row_size(ty, K);
    dsi_to_f32_fn to_f32 = dsi_kernels(t->type)->to_f32;
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int64_t r = 0; r < nr; r++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *f = fbuf + (size_t)tid * (size_t)K;
        to_f32((const uint8_t *)t->data + (size_t)(r0 + r) * in_row, f, K);
        dsi_quantize_row(ty, f, out + (size_t)r * out_row, K);
    }
}

enum dsi_status dsi_quantize_model(const struct dsi_quantize_params *p) {
    struct dsi_gguf *g = NULL;
    enum dsi_status st = dsi_gguf_open(p->in_path, &g);
    if (st) return st;
    int n_threads = p->n_threads > 0 ? p->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads < 1) n_threads = 1;
    int64_t nt = dsi_gguf_n_tensors(g);
    enum dsi_type *types = malloc((size_t)(nt + 1) * sizeof *types);
    struct dsi_gguf_writer *w = dsi_gguf_writer_init();
    if (!types || !w) st = DSI_ERR_NOMEM;
    if (!st) st = dsi_quantize_plan(g, p, types);
    /* metadata: everything but the keys we rewrite and the split keys */
    for (int64_t i = 0; i < dsi_gguf_n_kv(g) && !st; i++) {
        const char *k = dsi_gguf_kv_key(g, i);
        if (!strcmp(k, "general.file_type") || !strcmp(k, "general.quantization_version") ||
            !strcmp(k, "general.alignment") || !strncmp(k, "split.", 6))
            continue;
        st = dsi_gguf_writer_copy_kv(w, g, i);
    }
    if (!st) st = dsi_gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (!st) st = dsi_gguf_writer_set_u32(w, "general.file_type", (uint32_t)p->ftype);
    int64_t kmax = 1;
    for (int64_t i = 0; i < nt && !st; i++) {
        const struct dsi_gguf_tensor *t = dsi_gguf_tensor(g, i);
        st = dsi_gguf_writer_add_tensor(w, t->name, types[i], t->n_dims, t->ne);
        if (t->ne[0] > kmax) kmax = t->ne[0];
    }
    /* chunks of about 16 MiB of f32 input */
    float *fbuf = NULL;
    uint8_t *obuf = NULL;
    size_t obuf_bytes = ((size_t)1 << 24) + (size_t)kmax * 4;
    if (!st) {
        fbuf = malloc((size_t)n_threads * (size_t)kmax * sizeof *fbuf);
        obuf = malloc(obuf_bytes);
        if (!fbuf || !obuf) st = DSI_ERR_NOMEM;
    }
    struct dsi_progress prog = {"quantize", 0, 0, 0, p->progress};
    for (int64_t i = 0; i < nt; i++) prog.total += dsi_gguf_tensor(g, i)->nbytes;
    if (!st) st = dsi_gguf_writer_begin(w, p->out_path);
    for (int64_t i = 0; i < nt && !st; i++) {
        const struct dsi_gguf_tensor *t = dsi_gguf_tensor(g, i);
        if (types[i] == t->type) {
            st = dsi_gguf_writer_write(w, t->data, t->nbytes);
            dsi_progress_add(&prog, t->nbytes);
            continue;
        }
        int64_t K = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
        size_t in_row = dsi_row_size(t->type, K), out_row = dsi_row_size(types[i], K);
        int64_t chunk = (int64_t)(((size_t)1 << 24) / ((size_t)K * 4));
        if (chunk < 1) chunk = 1;
        for (int64_t r0 = 0; r0 < rows && !st; r0 += chunk) {
            int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
            convert_rows(t, types[i], r0, nr, obuf, fbuf, n_threads);
            st = dsi_gguf_writer_write(w, obuf, (size_t)nr * out_row);
            dsi_progress_add(&prog, (uint64_t)nr * in_row);
        }
    }
    dsi_progress_end(&prog);
    if (!st) st = dsi_gguf_writer_finish(w, NULL, NULL);
    if (st == DSI_ERR_NOMEM) DSI_LOG_ERR("quantize: out of memory");
    free(fbuf);
    free(obuf);
    free(types);
    dsi_gguf_writer_free(w);
    dsi_gguf_free(g);
    return st;
}
