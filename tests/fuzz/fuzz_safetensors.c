/* libFuzzer target: safetensors header parsing and tensor views. */
#include "core/safetensors.h"

static void quiet(enum dsi_log_level l, const char *m, void *u) { (void)l, (void)m, (void)u; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsi_log_set(quiet, NULL);
    struct dsi_st *st;
    if (dsi_st_open_buffer(data, size, "fuzz", &st) != DSI_OK) return 0;
    volatile uint8_t sink = 0;
    (void)sink;
    for (int64_t i = 0; i < dsi_st_count(st); i++) {
        const struct dsi_st_tensor *t = dsi_st_get(st, i);
        if (t->nbytes) sink ^= ((const uint8_t *)t->data)[t->nbytes - 1];
        float f[4];
        if (t->n_elements >= 4) dsi_st_read_f32(t, t->n_elements - 4, 4, f);
    }
    dsi_st_free(st);
    return 0;
}
