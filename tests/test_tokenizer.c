/* Tokenizer against Hugging Face and llama.cpp reference ids:
 *  - tokenizers/{qwen2.5,deepseek-v3}/cases.jsonl (tokenizer.json + tokenizer_config.json),
 *    both directly and after export to GGUF tokenizer.* keys and reload;
 *  - llama.cpp's own test texts for the Qwen2 vocabulary and the DeepSeek-LLM/Coder
 *    vocabulary GGUFs written by llama.cpp's converter;
 *  - decode(encode(x)) == x, invalid UTF-8 rejected with its offset. */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "src/tokenizer.h"
#include "tests/util.h"

static bool ids_equal(const int32_t *a, size_t na, const cJSON *b) {
    if ((int)na != cJSON_GetArraySize(b)) return false;
    for (size_t i = 0; i < na; i++)
        if (a[i] != (int32_t)cJSON_GetArrayItem(b, (int)i)->valuedouble) return false;
    return true;
}

static void show_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Export t's tokenizer.* keys to an in-memory GGUF and load them back. */
static struct dsi_tokenizer *roundtrip_gguf(const struct dsi_tokenizer *t, struct dsi_gguf **g) {
    struct dsi_gguf_writer *w = dsi_gguf_writer_init();
    void *mem = NULL;
    size_t size = 0;
    struct dsi_tokenizer *t2 = NULL;
    *g = NULL;
    if (dsi_tokenizer_write_gguf(t, 0, w) == DSI_OK && dsi_gguf_writer_begin(w, NULL) == DSI_OK &&
        dsi_gguf_writer_finish(w, &mem, &size) == DSI_OK &&
        dsi_gguf_open_owned(mem, size, "roundtrip", g) == DSI_OK)
        dsi_tokenizer_load_gguf(*g, &t2);
    dsi_gguf_writer_free(w);
    return t2;
}

static int run_cases(const struct dsi_tokenizer *t, const char *cases_path, const char *label) {
    size_t len;
    char *text = tu_read(cases_path, &len);
    int n_cases = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *c = cJSON_Parse(line);
        if (!c) continue;
        const cJSON *jt = cJSON_GetObjectItem(c, "text"), *ji = cJSON_GetObjectItem(c, "ids");
        const cJSON *jd = cJSON_GetObjectItem(c, "decoded");
        int32_t *ids;
        size_t n;
        size_t tl = strlen(jt->valuestring);
        if (dsi_tokenizer_encode(t, jt->valuestring, tl, DSI_TOK_PARSE_SPECIAL, &ids, &n)) {
            TU_CHECK(0, "%s: encode failed for case %d", label, n_cases);
        } else {
            if (!ids_equal(ids, n, ji)) {
                TU_CHECK(0, "%s: case %d ids differ for text '%.60s'", label, n_cases,
                         jt->valuestring);
                show_ids("got", ids, n);
            }
            char *dec;
            size_t dl;
            if (dsi_tokenizer_decode(t, ids, n, DSI_TOK_RENDER_SPECIAL, &dec, &dl) == DSI_OK) {
                TU_CHECK(strcmp(dec, jd->valuestring) == 0, "%s: case %d decodes to '%.60s'",
                         label, n_cases, dec);
                free(dec);
            }
            free(ids);
        }
        n_cases++;
        cJSON_Delete(c);
    }
    free(text);
    TU_LOG("%s: %d cases\n", label, n_cases);
    return n_cases;
}

/* llama.cpp test files: texts separated by "\n__ggml_vocab_test__\n", one line of ids each. */
static void run_llamacpp(const struct dsi_tokenizer *t, const char *inp, const char *outp,
                         const char *label) {
    size_t li, lo;
    char *in = tu_read(inp, &li), *out = tu_read(outp, &lo);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *p = in, *o = out;
    int k = 0;
    for (;;) {
        char *e = strstr(p, sep);
        if (!e) break;
        char *ol = o, *oe = strchr(o, '\n');
        if (!oe) break;
        *oe = '\0';
        o = oe + 1;
        int32_t *ids;
        size_t n;
        if (dsi_tokenizer_encode(t, p, (size_t)(e - p), DSI_TOK_PARSE_SPECIAL, &ids, &n)) {
            TU_CHECK(0, "%s: case %d: encode failed", label, k);
        } else {
            char got[8192];
            size_t gl = 0;
            got[0] = '\0';
            for (size_t i = 0; i < n && gl + 16 < sizeof got; i++)
                gl += (size_t)snprintf(got + gl, sizeof got - gl, " %d", ids[i]);
            if (strcmp(got, ol) != 0)
                TU_CHECK(0, "%s: case %d '%.*s'\n   want:%s\n    got:%s", label, k,
                         (int)(e - p > 60 ? 60 : e - p), p, ol, got);
            free(ids);
        }
        p = e + sizeof sep - 1;
        k++;
    }
    TU_CHECK(k >= 40, "%s: only %d cases read", label, k);
    TU_LOG("%s: %d cases\n", label, k);
    free(in);
    free(out);
}

static void test_hf(const char *dir, const char *want_pre) {
    struct dsi_tokenizer *t;
    char label[128];
    snprintf(label, sizeof label, "%s/tokenizer.json", dir);
    if (dsi_tokenizer_load(tu_fixture(0, dir), &t) != DSI_OK) {
        TU_CHECK(0, "cannot load %s", dir);
        return;
    }
    const char *pre = dsi_tokenizer_pre_name(t);
    TU_CHECK(pre && !strcmp(pre, want_pre), "%s: pre-tokenizer detected as %s, want %s", dir,
             pre ? pre : "(none)", want_pre);
    char cases[256];
    snprintf(cases, sizeof cases, "%s/cases.jsonl", dir);
    int n = run_cases(t, tu_fixture(1, cases), label);
    TU_CHECK(n >= 50, "%s: only %d cases", dir, n);

    struct dsi_gguf *g;
    struct dsi_tokenizer *t2 = roundtrip_gguf(t, &g);
    TU_CHECK(t2 != NULL, "%s: GGUF export/reload failed", dir);
    if (t2) {
        snprintf(label, sizeof label, "%s via GGUF", dir);
        run_cases(t2, tu_fixture(1, cases), label);
        TU_CHECK(dsi_tokenizer_bos(t2) == dsi_tokenizer_bos(t) &&
                     dsi_tokenizer_eos(t2) == dsi_tokenizer_eos(t) &&
                     dsi_tokenizer_add_bos(t2) == dsi_tokenizer_add_bos(t),
                 "%s: special ids changed through GGUF", dir);
        dsi_tokenizer_free(t2);
    }
    dsi_gguf_free(g);
    dsi_tokenizer_free(t);
}

static void test_vocab_gguf(const char *name) {
    char p[256], inp[256], outp[256];
    snprintf(p, sizeof p, "vocab/%s", name);
    snprintf(inp, sizeof inp, "vocab/%s.inp", name);
    snprintf(outp, sizeof outp, "vocab/%s.out", name);
    struct dsi_tokenizer *t;
    if (dsi_tokenizer_load(tu_fixture(0, p), &t) != DSI_OK) {
        TU_CHECK(0, "cannot load %s", name);
        return;
    }
    run_llamacpp(t, tu_fixture(1, inp), tu_fixture(2, outp), name);
    dsi_tokenizer_free(t);
}

static void test_misc(void) {
    struct dsi_tokenizer *t;
    if (dsi_tokenizer_load(tu_fixture(0, "tokenizers/qwen2.5"), &t) != DSI_OK) return;
    int32_t *ids;
    size_t n;
    /* invalid UTF-8: an error naming the offset */
    tu_capture_log(true);
    static const char bad[] = "abc\xff" "def";
    TU_CHECK(dsi_tokenizer_encode(t, bad, sizeof bad - 1, 0, &ids, &n) == DSI_ERR_FORMAT,
             "invalid UTF-8 accepted");
    TU_CHECK(strstr(tu_last_log(), "offset 3") != NULL, "error does not name the offset: %s",
             tu_last_log());
    static const char trunc[] = "ok \xe6\xb7";
    TU_CHECK(dsi_tokenizer_encode(t, trunc, sizeof trunc - 1, 0, &ids, &n) == DSI_ERR_FORMAT,
             "truncated UTF-8 accepted");
    static const char surrogate[] = "\xed\xa0\x80";
    TU_CHECK(dsi_tokenizer_encode(t, surrogate, 3, 0, &ids, &n) == DSI_ERR_FORMAT,
             "UTF-8 surrogate accepted");
    tu_capture_log(false);

    /* parse-special off: control texts are ordinary text, user-defined ones still match */
    const char *s = "<|im_start|><think>";
    if (dsi_tokenizer_encode(t, s, strlen(s), 0, &ids, &n) == DSI_OK) {
        TU_CHECK(n > 2 && ids[n - 1] == 151667, "parse_special off: got %zu ids, last %d", n,
                 n ? ids[n - 1] : -1);
        free(ids);
    }
    /* a long run without pre-tokenizer breaks: BPE over thousands of symbols */
    size_t big = 200000;
    char *x = malloc(big);
    for (size_t i = 0; i < big; i++) x[i] = "abcdefgh"[(i * 7 + i / 3) % 8];
    if (dsi_tokenizer_encode(t, x, big, 0, &ids, &n) == DSI_OK) {
        char *dec;
        size_t dl;
        TU_CHECK(dsi_tokenizer_decode(t, ids, n, 0, &dec, &dl) == DSI_OK && dl == big &&
                     memcmp(dec, x, big) == 0,
                 "long word does not round-trip");
        free(dec);
        free(ids);
    }
    free(x);
    /* decode rejects ids outside the vocabulary */
    int32_t bad_id = 1 << 30;
    char *dec;
    tu_capture_log(true);
    TU_CHECK(dsi_tokenizer_decode(t, &bad_id, 1, 0, &dec, NULL) == DSI_ERR_ARG, "bad id decoded");
    tu_capture_log(false);
    dsi_tokenizer_free(t);
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    test_hf("tokenizers/qwen2.5", "qwen2");
    test_hf("tokenizers/deepseek-v3", "deepseek-v3");
    {
        struct dsi_tokenizer *t;
        if (dsi_tokenizer_load(tu_fixture(0, "tokenizers/qwen2.5"), &t) == DSI_OK) {
            run_llamacpp(t, tu_fixture(1, "tokenizers/qwen2.5/llamacpp-cases.inp"),
                         tu_fixture(2, "tokenizers/qwen2.5/llamacpp-cases.out"), "qwen2.5 llama.cpp");
            dsi_tokenizer_free(t);
        }
    }
    test_vocab_gguf("ggml-vocab-deepseek-llm.gguf");
    test_vocab_gguf("ggml-vocab-deepseek-coder.gguf");
    test_misc();
    return tu_finish("test_tokenizer");
}
