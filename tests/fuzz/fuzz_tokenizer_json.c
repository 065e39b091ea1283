/* libFuzzer target: tokenizer.json loading, then encode/decode with what was loaded. */
#include <stdlib.h>

#include "src/tokenizer.h"

static void quiet(enum dsi_log_level l, const char *m, void *u) { (void)l, (void)m, (void)u; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsi_log_set(quiet, NULL);
    struct dsi_tokenizer *t;
    if (dsi_tokenizer_load_json_text((const char *)data, size, "fuzz", &t) != DSI_OK) return 0;
    static const char text[] = "Hello  world!\n\n 123 caf\xc3\xa9 <|endoftext|> ab";
    int32_t *ids;
    size_t n;
    if (dsi_tokenizer_encode(t, text, sizeof text - 1, DSI_TOK_PARSE_SPECIAL | DSI_TOK_ADD_SPECIAL,
                             &ids, &n) == DSI_OK) {
        char *s;
        if (dsi_tokenizer_decode(t, ids, n, DSI_TOK_RENDER_SPECIAL, &s, NULL) == DSI_OK) free(s);
        free(ids);
    }
    dsi_tokenizer_free(t);
    return 0;
}
