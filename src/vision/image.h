/* Images for the vision models: decoding (JPEG, PNG, BMP, GIF through stb_image) to 8-bit
 * RGB, a Pillow-compatible bicubic resize, ImageOps.pad, and the DeepSeek-VL2 view layout
 * (docs/models.md §C.3): a global 384x384 view followed by the tiles of the local view.
 *
 * Image files are untrusted input: the dimensions are checked against DSI_IMAGE_MAX_PIXELS
 * before anything is decoded, and every allocation size is checked for overflow. */
#ifndef DSI_VISION_IMAGE_H
#define DSI_VISION_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS): larger images are refused. */
#define DSI_IMAGE_MAX_PIXELS 89478485
/* Largest image file read by dsi_image_load. */
#define DSI_IMAGE_MAX_FILE_BYTES ((size_t)256 << 20)
/* Most local tiles of one DeepSeek-VL2 image (candidate resolutions with m*n <= 9). */
#define DSI_VL2_MAX_TILES 9
/* Largest view side accepted by dsi_vl2_views (the models use 384). */
#define DSI_VL2_MAX_VIEW_SIZE 2048

/* An 8-bit RGB image, rows top to bottom: rgb[(y * w + x) * 3 + c]. */
struct dsi_image {
    int w, h;
    uint8_t *rgb;
};

/* Decode a JPEG, PNG, BMP or GIF (first frame) file to 8-bit RGB, as PIL's
 * Image.open(path).convert("RGB"): grey is replicated, alpha dropped, EXIF orientation
 * ignored, a GIF's transparent index shown in its palette colour, 16-bit grey PNG values
 * clipped to 255 (PIL's "I" mode). PNG, BMP and GIF pixels equal PIL's; JPEG pixels come from
 * stb_image's decoder, not libjpeg-turbo's, and differ from PIL's by a few levels (mean
 * |diff| under 0.1, tests/test_image.c). Errors (logged with the file name and the cause):
 * DSI_ERR_IO (cannot read), DSI_ERR_FORMAT (not one of those formats, corrupt, zero-sized),
 * DSI_ERR_LIMIT (more than DSI_IMAGE_MAX_PIXELS pixels or DSI_IMAGE_MAX_FILE_BYTES bytes),
 * DSI_ERR_NOMEM. On failure `out` is zeroed. Release with dsi_image_free. */
enum dsi_status dsi_image_load(const char *path, struct dsi_image *out);
/* The same from an encoded image in memory (borrowed). */
enum dsi_status dsi_image_load_mem(const void *data, size_t n, struct dsi_image *out);
/* Accepts a zeroed struct; leaves it zeroed. */
void dsi_image_free(struct dsi_image *im);

/* Resize to w x h as Pillow's Image.resize((w, h), Image.BICUBIC) of an RGB image (no
 * reducing_gap): byte-identical output, including Pillow's 22-bit fixed-point weights, its
 * horizontal-then-vertical order and the 8-bit intermediate image. The same size gives a
 * copy. DSI_ERR_ARG for an empty input or a non-positive size, DSI_ERR_LIMIT when the output
 * exceeds DSI_IMAGE_MAX_PIXELS, DSI_ERR_NOMEM. */
enum dsi_status dsi_image_resize_bicubic(const struct dsi_image *in, int w, int h,
                                         struct dsi_image *out);

/* Where Pillow's ImageOps.pad(image (W x H), (TW, TH), centering=(0.5, 0.5)) puts the image:
 * resized to *new_w x *new_h and pasted at (*x, *y) (Python round: halves to even). A new
 * size that rounds to 0 (extreme aspect ratios) is returned as 0. */
void dsi_image_pad_geometry(int W, int H, int TW, int TH, int *new_w, int *new_h, int *x, int *y);

/* ImageOps.pad with bicubic resampling: `in` fitted into tw x th keeping its aspect ratio,
 * centred on a canvas filled with `fill` (RGB). DSI_ERR_UNSUPPORTED when the fitted size
 * rounds to 0 pixels; otherwise as dsi_image_resize_bicubic. */
enum dsi_status dsi_image_pad(const struct dsi_image *in, int tw, int th, const uint8_t fill[3],
                              struct dsi_image *out);

/* DeepSeek-VL2 select_best_resolution (models.md §C.3 step 3) for a W x H image over the
 * candidates cand[i] = (width, height), i < n_cand: the largest effective resolution, then the
 * least waste; ties keep the earlier candidate. If no candidate keeps a pixel (a degenerate
 * aspect ratio, where the reference fails) the first one is chosen. n_cand >= 1. */
void dsi_vl2_best_resolution(int W, int H, const int32_t *cand, int n_cand, int *best_w,
                             int *best_h);

/* The views of one image: pix[n_views][size][size][3], view 0 the global view (the image
 * padded to size x size with (127,127,127)), then the nw*nh tiles of the local view (padded
 * to nw*size x nh*size) row-major: tile t = row * nw + col. n_views = 1 + nw * nh. */
struct dsi_vl2_views {
    int n_views, nw, nh, size;
    uint8_t *pix;
};

/* Build the views (models.md §C.3 steps 3-5). `cand` as for dsi_vl2_best_resolution; every
 * candidate must be a positive multiple of `size` in both directions with at most
 * DSI_VL2_MAX_TILES tiles (else DSI_ERR_ARG). `tiling` false (a conversation with more than
 * two images) gives one size x size local tile whatever the candidates (n_cand may be 0).
 * On failure `out` is zeroed. Release with dsi_vl2_views_free. */
enum dsi_status dsi_vl2_views(const struct dsi_image *im, const int32_t *cand, int n_cand, int size,
                              bool tiling, struct dsi_vl2_views *out);
void dsi_vl2_views_free(struct dsi_vl2_views *v);

/* One pixel value as the ViT sees it: (px / 255 - 0.5) / 0.5 in float32, as torchvision's
 * ToTensor + Normalize (models.md §C.3 step 6). */
static inline float dsi_vl2_pixel(uint8_t px) { return ((float)px / 255.0f - 0.5f) / 0.5f; }
/* The ViT input of view i: channel-first float [3][size][size] of dsi_vl2_pixel. */
void dsi_vl2_view_to_float(const struct dsi_vl2_views *v, int i, float *out);

#ifdef __cplusplus
}
#endif

#endif
