/* libFuzzer target: GGUF reader, then everything a loaded file offers (key/values, tensor
 * views, tokenizer). Any out-of-bounds read is an ASan report. */
#include <stdlib.h>

#include "core/gguf.h"
#include "src/tokenizer.h"

static void quiet(enum dsi_log_level l, const char *m, void *u) { (void)l, (void)m, (void)u; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsi_log_set(quiet, NULL);
    struct dsi_gguf *g;
    if (dsi_gguf_open_buffer(data, size, "fuzz", &g) != DSI_OK) return 0;
    volatile uint8_t sink = 0;
    (void)sink;
    for (int64_t i = 0; i < dsi_gguf_n_kv(g); i++) {
        if (dsi_gguf_kv_type(g, i) == DSI_GGUF_ARRAY) {
            struct dsi_gguf_arr a = dsi_gguf_kv_arr(g, i);
            for (uint64_t k = 0; k < a.count; k++) {
                if (a.elem_type == DSI_GGUF_STRING) {
                    struct dsi_gguf_str s = dsi_gguf_arr_str(g, &a, k);
                    if (s.len) sink ^= (uint8_t)s.ptr[s.len - 1];
                } else {
                    sink ^= (uint8_t)dsi_gguf_arr_i64(&a, k);
                }
            }
        } else if (dsi_gguf_kv_type(g, i) == DSI_GGUF_STRING) {
            struct dsi_gguf_str s = dsi_gguf_kv_str(g, i);
            if (s.len) sink ^= (uint8_t)s.ptr[s.len - 1];
        }
    }
    for (int64_t i = 0; i < dsi_gguf_n_tensors(g); i++) {
        const struct dsi_gguf_tensor *t = dsi_gguf_tensor(g, i);
        if (t->nbytes) sink ^= ((const uint8_t *)t->data)[t->nbytes - 1];
    }
    struct dsi_tokenizer *tok;
    if (dsi_tokenizer_load_gguf(g, &tok) == DSI_OK) {
        int32_t *ids;
        size_t n;
        if (dsi_tokenizer_encode(tok, "Hello world 12 <|end|>", 22, DSI_TOK_PARSE_SPECIAL, &ids, &n) == DSI_OK) {
            char *s;
            if (dsi_tokenizer_decode(tok, ids, n, DSI_TOK_RENDER_SPECIAL, &s, NULL) == DSI_OK) free(s);
            free(ids);
        }
        dsi_tokenizer_free(tok);
    }
    dsi_gguf_free(g);
    return 0;
}
