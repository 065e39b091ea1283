/* End to end against Hugging Face transformers (fixtures/models/<name>/reference.safetensors):
 *  - with an f32 KV cache: per-layer hidden states (a regression names its layer), logits at
 *    every position within 1e-3 * max|reference logit|, and the same argmax everywhere;
 *  - with the default f16 KV cache: the same argmax everywhere;
 *  - greedy generation with the KV cache reproduces gen_output token for token;
 *  - the model loads from the GGUF our converter writes and from the HF directory itself;
 *  - bad inputs: ids outside the vocabulary, a prompt longer than the context. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gguf.h"
#include "core/safetensors.h"
#include "src/convert.h"
#include "src/model.h"
#include "tests/util.h"

struct capture {
    float **h; /* [n_layer + 1] buffers of [T][n_embd] */
    int64_t T, n_embd;
    int n;
};

static void on_layer(void *user, int layer, const float *h, int64_t T, int64_t n_embd) {
    struct capture *c = user;
    if (layer < 0 || layer >= c->n || T != c->T) return;
    memcpy(c->h[layer], h, (size_t)(T * n_embd) * sizeof(float));
}

static int32_t argmax(const float *v, int64_t n) {
    int32_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = (int32_t)i;
    return b;
}

static int32_t *read_ids(const struct dsi_st *ref, const char *name, int64_t *n) {
    const struct dsi_st_tensor *t = dsi_st_find(ref, name);
    if (!t || (t->dtype != DSI_ST_I32 && t->dtype != DSI_ST_I64)) return NULL;
    int32_t *v = malloc((size_t)t->n_elements * sizeof *v);
    for (int64_t i = 0; i < t->n_elements; i++) {
        if (t->dtype == DSI_ST_I32) memcpy(&v[i], (const char *)t->data + 4 * i, 4);
        else {
            int64_t x;
            memcpy(&x, (const char *)t->data + 8 * i, 8);
            v[i] = (int32_t)x;
        }
    }
    *n = t->n_elements;
    return v;
}

static float *read_f32(const struct dsi_st *ref, const char *name, int64_t *n) {
    const struct dsi_st_tensor *t = dsi_st_find(ref, name);
    if (!t) return NULL;
    float *v = malloc((size_t)t->n_elements * sizeof *v);
    dsi_st_read_f32(t, 0, t->n_elements, v);
    if (n) *n = t->n_elements;
    return v;
}

/* Logits of every position vs the reference; returns the number of argmax mismatches. */
static int check_logits(const char *what, struct dsi_context *c, const float *ref, int64_t T,
                        int64_t V, bool tight) {
    int mism = 0;
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        const float *got = dsi_context_logits(c, t), *want = ref + t * V;
        double mx = 0, md = 0;
        for (int64_t i = 0; i < V; i++) {
            if (fabs(want[i]) > mx) mx = fabs(want[i]);
            double d = fabs(got[i] - want[i]);
            if (d > md) md = d;
        }
        if (md / mx > worst) worst = md / mx;
        if (tight && md > 1e-3 * mx)
            TU_CHECK(0, "%s: position %lld: max |logit - ref| = %.3g > 1e-3 * %.3g", what,
                     (long long)t, md, mx);
        if (argmax(got, V) != argmax(want, V)) {
            mism++;
            TU_CHECK(0, "%s: position %lld: argmax %d, reference %d", what, (long long)t,
                     argmax(got, V), argmax(want, V));
        }
    }
    TU_LOG("%s: worst max|diff|/max|ref| = %.2e, argmax mismatches %d/%lld\n", what, worst, mism,
           (long long)T);
    return mism;
}

static void run_model(const char *name, const char *source) {
    char dir[256], refp[300];
    snprintf(dir, sizeof dir, "%s/models/%s", tu_fixture(0, ""), name);
    snprintf(refp, sizeof refp, "%s/reference.safetensors", dir);
    struct dsi_st *ref;
    if (dsi_st_open(refp, &ref) != DSI_OK) {
        TU_CHECK(0, "%s: no reference", name);
        return;
    }
    const char *path = dir;
    const char *gguf = tu_tmp(0, ".gguf");
    if (!strcmp(source, "gguf")) {
        struct dsi_convert_params p = {dir, gguf, -1, false};
        TU_CHECK(dsi_convert(&p) == DSI_OK, "%s: convert", name);
        path = gguf;
    }
    struct dsi_model *m;
    if (dsi_model_load(path, &m) != DSI_OK) {
        TU_CHECK(0, "%s: load from %s failed", name, source);
        dsi_st_free(ref);
        return;
    }
    int64_t T, V = dsi_model_n_vocab(m), E = dsi_model_n_embd(m), L = dsi_model_n_layer(m);
    int32_t *ids = read_ids(ref, "input_ids", &T);
    float *logits = read_f32(ref, "logits", NULL);

    struct dsi_context_params cp = dsi_context_default_params();
    cp.n_ctx = 1024;
    cp.n_threads = 2;
    cp.kv_type = DSI_TYPE_F32;
    cp.n_batch = 512;
    struct dsi_context *c;
    if (dsi_context_init(m, &cp, &c) == DSI_OK) {
        struct capture cap = {calloc((size_t)L + 1, sizeof(float *)), T, E, (int)L + 1};
        for (int i = 0; i <= L; i++) cap.h[i] = calloc((size_t)(T * E), sizeof(float));
        dsi_context_set_layer_cb(c, on_layer, &cap);
        TU_CHECK(dsi_context_decode(c, ids, T, 0, true) == DSI_OK, "%s: decode", name);
        /* hidden states first: they name the layer that goes wrong */
        for (int i = 0; i <= L; i++) {
            char hn[32];
            snprintf(hn, sizeof hn, "hidden.%d", i);
            float *h = read_f32(ref, hn, NULL);
            double mx = 0, md = 0;
            for (int64_t k = 0; h && k < T * E; k++) {
                if (fabs(h[k]) > mx) mx = fabs(h[k]);
                if (fabs(h[k] - cap.h[i][k]) > md) md = fabs(h[k] - cap.h[i][k]);
            }
            TU_LOG("  %s hidden.%d: max diff %.3g (max ref %.3g)\n", name, i, md, mx);
            TU_CHECK(h && md <= 1e-3 * mx + 1e-6, "%s (%s): hidden state %d differs: max diff %.3g, max |ref| %.3g",
                     name, source, i, md, mx);
            free(h);
            free(cap.h[i]);
        }
        free(cap.h);
        dsi_context_set_layer_cb(c, NULL, NULL);
        char what[96];
        snprintf(what, sizeof what, "%s (%s, f32 KV)", name, source);
        check_logits(what, c, logits, T, V, true);
        dsi_context_free(c);
    }

    /* default f16 KV cache, in small batches: same argmax everywhere */
    cp.kv_type = DSI_TYPE_F16;
    cp.n_batch = 7;
    if (dsi_context_init(m, &cp, &c) == DSI_OK) {
        TU_CHECK(dsi_context_decode(c, ids, T, 0, true) == DSI_OK, "%s: decode f16", name);
        char what[96];
        snprintf(what, sizeof what, "%s (%s, f16 KV, batches of 7)", name, source);
        check_logits(what, c, logits, T, V, false);
        dsi_context_free(c);
    }

    /* greedy generation with the cache: prompt in one batch, then one token at a time */
    int64_t np, ng;
    int32_t *prompt = read_ids(ref, "gen_prompt", &np), *gen = read_ids(ref, "gen_output", &ng);
    cp.n_batch = 512;
    if (prompt && gen && dsi_context_init(m, &cp, &c) == DSI_OK) {
        int64_t pos = 0;
        int32_t tok;
        dsi_context_decode(c, prompt, np, 0, false);
        pos = np;
        for (int64_t i = 0; i < ng; i++) {
            tok = argmax(dsi_context_logits(c, -1), V);
            if (tok != gen[i]) {
                TU_CHECK(0, "%s (%s): greedy token %lld is %d, reference %d", name, source,
                         (long long)i, tok, gen[i]);
                break;
            }
            if (dsi_context_decode(c, &tok, 1, pos++, false) != DSI_OK) break;
        }
        /* bad input: an id outside the vocabulary; a prompt past the context */
        int32_t bad = (int32_t)V;
        tu_capture_log(true);
        TU_CHECK(dsi_context_decode(c, &bad, 1, pos, false) == DSI_ERR_ARG, "%s: bad id accepted", name);
        int32_t *many = calloc(2000, sizeof *many);
        TU_CHECK(dsi_context_decode(c, many, 2000, 0, false) == DSI_ERR_LIMIT, "%s: overflow accepted", name);
        TU_CHECK(strstr(tu_last_log(), "do not fit"), "%s: context-full message: %s", name, tu_last_log());
        tu_capture_log(false);
        free(many);
        dsi_context_free(c);
    }
    free(prompt);
    free(gen);
    free(ids);
    free(logits);
    dsi_model_free(m);
    dsi_st_free(ref);
    if (path == gguf) unlink(gguf);
}

/* Rewrite a GGUF with one change: drop a tensor, change its shape, or set the architecture. */
static void *variant(const struct dsi_gguf *g, const char *drop, const char *reshape,
                     const char *arch, size_t *size) {
    struct dsi_gguf_writer *w = dsi_gguf_writer_init();
    for (int64_t i = 0; i < dsi_gguf_n_kv(g); i++) dsi_gguf_writer_copy_kv(w, g, i);
    if (arch) dsi_gguf_writer_set_str(w, "general.architecture", arch);
    for (int64_t i = 0; i < dsi_gguf_n_tensors(g); i++) {
        const struct dsi_gguf_tensor *t = dsi_gguf_tensor(g, i);
        if (drop && !strcmp(t->name, drop)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        uint32_t nd = t->n_dims;
        if (reshape && !strcmp(t->name, reshape)) ne[0] /= 2, ne[1] *= 2; /* same bytes */
        dsi_gguf_writer_add_tensor(w, t->name, t->type, nd, ne);
    }
    dsi_gguf_writer_begin(w, NULL);
    for (int64_t i = 0; i < dsi_gguf_n_tensors(g); i++) {
        const struct dsi_gguf_tensor *t = dsi_gguf_tensor(g, i);
        if (drop && !strcmp(t->name, drop)) continue;
        dsi_gguf_writer_write(w, t->data, t->nbytes);
    }
    void *mem = NULL;
    dsi_gguf_writer_finish(w, &mem, size);
    dsi_gguf_writer_free(w);
    return mem;
}

static void test_bad_models(void) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/models/tiny-qwen2", tu_fixture(0, ""));
    const char *gguf = tu_tmp(1, ".gguf");
    struct dsi_convert_params p = {dir, gguf, -1, false};
    struct dsi_gguf *g;
    if (dsi_convert(&p) != DSI_OK || dsi_gguf_open(gguf, &g) != DSI_OK) {
        TU_CHECK(0, "bad models: base conversion failed");
        return;
    }
    static const struct {
        const char *drop, *reshape, *arch, *msg;
        enum dsi_status want;
    } cases[] = {
        {"blk.1.attn_k.weight", NULL, NULL, "'blk.1.attn_k.weight' is missing", DSI_ERR_FORMAT},
        {"output_norm.weight", NULL, NULL, "'output_norm.weight' is missing", DSI_ERR_FORMAT},
        {NULL, "blk.0.ffn_up.weight", NULL, "'blk.0.ffn_up.weight' has shape", DSI_ERR_FORMAT},
        {NULL, NULL, "gpt2", "architecture 'gpt2' is not supported", DSI_ERR_UNSUPPORTED},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t size;
        void *mem = variant(g, cases[k].drop, cases[k].reshape, cases[k].arch, &size);
        const char *path = tu_tmp(2, ".gguf");
        FILE *f = fopen(path, "wb");
        fwrite(mem, 1, size, f);
        fclose(f);
        free(mem);
        struct dsi_model *m = NULL;
        tu_capture_log(true);
        enum dsi_status s = dsi_model_load(path, &m);
        tu_capture_log(false);
        TU_CHECK(s == cases[k].want && !m, "bad model %zu: status %s", k, dsi_status_str(s));
        TU_CHECK(strstr(tu_last_log(), cases[k].msg) != NULL, "bad model %zu: message '%s' lacks '%s'", k,
                 tu_last_log(), cases[k].msg);
        dsi_model_free(m);
        unlink(path);
    }
    dsi_gguf_free(g);
    unlink(gguf);
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    test_bad_models();
    run_model("tiny-qwen2", "gguf");
    run_model("tiny-qwen2", "hf-dir");
    run_model("shakespeare-qwen2", "gguf");
    run_model("tiny-llama3", "gguf");
    run_model("tiny-deepseek2-lite", "gguf");
    run_model("tiny-deepseek2-qlora", "gguf");
    return tu_finish("test_model");
}
