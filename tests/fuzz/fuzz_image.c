/* libFuzzer target: image decoding (stb_image behind our header checks) and the DeepSeek-VL2
 * views of whatever decodes, with the real candidate list. Images come from the network in
 * the server (data: URLs), so this is an attack surface. */
#include "src/vision/image.h"

static void quiet(enum dsi_log_level l, const char *m, void *u) { (void)l, (void)m, (void)u; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dsi_log_set(quiet, NULL);
    struct dsi_image im;
    if (dsi_image_load_mem(data, size, &im) != DSI_OK) return 0;
    /* views cost a resize of up to 9 tiles of 384^2: only for images of modest size */
    if ((int64_t)im.w * im.h <= 1 << 20) {
        static const int32_t cand[] = {384, 384, 384, 768, 768, 384, 768, 768, 1152, 384, 384, 1152};
        struct dsi_vl2_views v;
        if (dsi_vl2_views(&im, cand, 6, 384, size & 1, &v) == DSI_OK) dsi_vl2_views_free(&v);
    }
    dsi_image_free(&im);
    return 0;
}
