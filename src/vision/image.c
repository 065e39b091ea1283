/* Image decoding, Pillow-compatible bicubic resampling and the DeepSeek-VL2 views (see
 * image.h). The resampler follows the arithmetic of Pillow's libImaging/Resample.c so that
 * its output is byte-identical: double-precision weights normalised per output pixel, then
 * rounded to 22-bit fixed point and accumulated in integers. */
#include "src/vision/image.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>

#include "core/file.h"

/* ---- decoding ------------------------------------------------------------------------------ */

/* The formats we accept, recognised by their signature (stb_image would also try formats
 * without one, such as TGA, and could take random bytes for an image). */
static const char *sniff_format(const uint8_t *p, size_t n) {
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return "JPEG";
    if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return "PNG";
    if (n >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6))) return "GIF";
    if (n >= 2 && p[0] == 'B' && p[1] == 'M') return "BMP";
    return NULL;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}
static uint32_t le16(const uint8_t *p) {
    return (uint32_t)p[1] << 8 | p[0];
}

/* The dimensions stated by a PNG, GIF or BMP header (JPEG: false, left to stbi_info). */
static bool peek_size(const uint8_t *p, size_t n, int64_t *w, int64_t *h) {
    if (n >= 24 && p[0] == 0x89 && !memcmp(p + 12, "IHDR", 4)) {
        *w = be32(p + 16);
        *h = be32(p + 20);
    } else if (n >= 10 && p[0] == 'G') {
        *w = le16(p + 6);
        *h = le16(p + 8);
    } else if (n >= 26 && p[0] == 'B') {
        if (le32(p + 14) == 12) { /* OS/2 BITMAPCOREHEADER */
            *w = le16(p + 18);
            *h = le16(p + 20);
        } else {
            *w = (int32_t)le32(p + 18);
            *h = (int32_t)le32(p + 22);
            if (*h < 0) *h = -*h; /* top-down rows */
        }
    } else {
        return false;
    }
    return true;
}

static const char *stb_reason(void) {
    const char *r = stbi_failure_reason();
    return r ? r : "no reason given";
}

static enum dsi_status check_size(const char *label, const char *fmt, int64_t w, int64_t h) {
    if (w <= 0 || h <= 0) {
        DSI_LOG_ERR("image '%s': %s of %lldx%lld pixels", label, fmt, (long long)w, (long long)h);
        return DSI_ERR_FORMAT;
    }
    if (w > DSI_IMAGE_MAX_PIXELS || h > DSI_IMAGE_MAX_PIXELS || w * h > DSI_IMAGE_MAX_PIXELS) {
        DSI_LOG_ERR("image '%s': %s of %lldx%lld pixels exceeds the limit of %d pixels", label, fmt,
                    (long long)w, (long long)h, DSI_IMAGE_MAX_PIXELS);
        return DSI_ERR_LIMIT;
    }
    return DSI_OK;
}

/* Allocate w x h x 3 bytes for `out` after checking the size. */
static enum dsi_status image_alloc(int w, int h, struct dsi_image *out) {
    memset(out, 0, sizeof *out);
    if (w <= 0 || h <= 0) return DSI_ERR_ARG;
    if ((int64_t)w * h > DSI_IMAGE_MAX_PIXELS) {
        DSI_LOG_ERR("image of %dx%d pixels exceeds the limit of %d pixels", w, h,
                    DSI_IMAGE_MAX_PIXELS);
        return DSI_ERR_LIMIT;
    }
    out->rgb = malloc((size_t)w * (size_t)h * 3);
    if (!out->rgb) {
        DSI_LOG_ERR("out of memory for an image of %dx%d pixels", w, h);
        return DSI_ERR_NOMEM;
    }
    out->w = w;
    out->h = h;
    return DSI_OK;
}

/* Clear the transparency flag of the graphic control extensions that precede the first
 * image of a GIF. Stops quietly at anything malformed (the decoder reports it). */
static void gif_clear_transparency(uint8_t *p, size_t n) {
    if (n < 13) return;
    size_t i = 13;
    if (p[10] & 0x80) i += (size_t)3 << ((p[10] & 7) + 1); /* global colour table */
    while (i < n && p[i] == 0x21) {
        if (i + 1 >= n) return;
        bool gce = p[i + 1] == 0xF9;
        i += 2;
        while (i < n && p[i] != 0) { /* data sub-blocks */
            if (gce && p[i] == 4 && i + 1 < n) p[i + 1] &= (uint8_t)~1u;
            i += (size_t)p[i] + 1;
        }
        i++;
    }
}

/* 16-bit greyscale PNG: PIL opens it as a 32-bit integer image ("I"), whose convert("RGB")
 * clips the values to 0..255 (it does not scale them as stb_image does). */
static enum dsi_status load_grey16(const uint8_t *p, size_t n, const char *label, int w, int h,
                                   struct dsi_image *out) {
    int dw = 0, dh = 0, comp = 0;
    uint16_t *px = stbi_load_16_from_memory(p, (int)n, &dw, &dh, &comp, 1);
    if (!px) {
        const char *why = stb_reason();
        DSI_LOG_ERR("image '%s': cannot decode the PNG data (%s)", label, why);
        return !strcmp(why, "outofmem") ? DSI_ERR_NOMEM : DSI_ERR_FORMAT;
    }
    enum dsi_status st = DSI_ERR_FORMAT;
    if (dw != w || dh != h)
        DSI_LOG_ERR("image '%s': decoded %dx%d, header says %dx%d", label, dw, dh, w, h);
    else if ((st = image_alloc(w, h, out)) == DSI_OK)
        for (size_t i = 0; i < (size_t)w * (size_t)h; i++)
            memset(out->rgb + 3 * i, px[i] > 255 ? 255 : px[i], 3);
    stbi_image_free(px);
    return st;
}

static enum dsi_status load_mem(const void *data, size_t n, const char *label,
                                struct dsi_image *out) {
    memset(out, 0, sizeof *out);
    const uint8_t *p = data;
    if (!data && n) return DSI_ERR_ARG;
    const char *fmt = sniff_format(p, n);
    if (!fmt) {
        DSI_LOG_ERR("image '%s': not a JPEG, PNG, BMP or GIF file", label);
        return DSI_ERR_FORMAT;
    }
    if (n > INT_MAX) {
        DSI_LOG_ERR("image '%s': %zu bytes exceeds the decoder's limit", label, n);
        return DSI_ERR_LIMIT;
    }
    /* the size first, from the header alone: stb_image's own PNG header check refuses very
     * large images with a misleading "unknown image type" */
    int64_t hw, hh;
    if (peek_size(p, n, &hw, &hh)) {
        enum dsi_status st = check_size(label, fmt, hw, hh);
        if (st != DSI_OK) return st;
    }
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(p, (int)n, &w, &h, &comp)) {
        DSI_LOG_ERR("image '%s': invalid %s header (%s)", label, fmt, stb_reason());
        return DSI_ERR_FORMAT;
    }
    enum dsi_status st = check_size(label, fmt, w, h);
    if (st != DSI_OK) return st;
    if (!strcmp(fmt, "PNG") && n >= 26 && p[24] == 16 && p[25] == 0) /* IHDR depth, type */
        return load_grey16(p, n, label, w, h, out);
    uint8_t *gif = NULL;
    if (!strcmp(fmt, "GIF")) {
        /* PIL's first frame is a palette image whose convert("RGB") shows the colour of the
         * transparent index; stb_image would make those pixels black */
        if (!(gif = malloc(n))) {
            DSI_LOG_ERR("image '%s': out of memory", label);
            return DSI_ERR_NOMEM;
        }
        memcpy(gif, p, n);
        gif_clear_transparency(gif, n);
        p = gif;
    }
    int dw = 0, dh = 0;
    uint8_t *px = stbi_load_from_memory(p, (int)n, &dw, &dh, &comp, 3);
    free(gif);
    if (!px) {
        const char *why = stb_reason();
        DSI_LOG_ERR("image '%s': cannot decode the %s data (%s)", label, fmt, why);
        return !strcmp(why, "outofmem") ? DSI_ERR_NOMEM : DSI_ERR_FORMAT;
    }
    if (dw != w || dh != h) { /* the header read twice disagrees: refuse rather than guess */
        DSI_LOG_ERR("image '%s': decoded %dx%d, header says %dx%d", label, dw, dh, w, h);
        stbi_image_free(px);
        return DSI_ERR_FORMAT;
    }
    /* own the pixels with malloc so that dsi_image_free needs no stb */
    enum dsi_status st2 = image_alloc(w, h, out);
    if (st2 == DSI_OK) memcpy(out->rgb, px, (size_t)w * (size_t)h * 3);
    stbi_image_free(px);
    return st2;
}

enum dsi_status dsi_image_load_mem(const void *data, size_t n, struct dsi_image *out) {
    return load_mem(data, n, "<memory>", out);
}

enum dsi_status dsi_image_load(const char *path, struct dsi_image *out) {
    memset(out, 0, sizeof *out);
    char *buf;
    size_t n;
    enum dsi_status st = dsi_file_read_all(path, DSI_IMAGE_MAX_FILE_BYTES, &buf, &n);
    if (st != DSI_OK) return st; /* logged by the reader */
    st = load_mem(buf, n, path, out);
    free(buf);
    return st;
}

void dsi_image_free(struct dsi_image *im) {
    if (!im) return;
    free(im->rgb);
    memset(im, 0, sizeof *im);
}

/* ---- bicubic resampling (Pillow) ----------------------------------------------------------- */

#define FIXED_BITS 22 /* Pillow's PRECISION_BITS: 32 - 8 bits of result - 2 bits of headroom */

/* Keys' cubic convolution kernel with a = -0.5, evaluated in the same order of operations as
 * Pillow so that the weights round identically. */
static double cubic(double t) {
    const double a = -0.5;
    if (t < 0.0) t = -t;
    if (t < 1.0) return ((a + 2.0) * t - (a + 3.0)) * t * t + 1;
    if (t < 2.0) return (((t - 5) * t + 8) * t - 4) * a;
    return 0.0;
}

/* Weights of a 1-D resampling from n_in to n_out samples: output o reads the inputs
 * first[o] .. first[o] + count[o] - 1 with the fixed-point weights w[o * stride ..]. */
struct taps {
    int stride;
    int *first, *count;
    int32_t *w;
};

static void taps_free(struct taps *t) {
    free(t->first);
    free(t->count);
    free(t->w);
    memset(t, 0, sizeof *t);
}

static enum dsi_status taps_init(int n_in, int n_out, struct taps *t) {
    memset(t, 0, sizeof *t);
    /* Pillow passes the box as float: (double)(in1 - in0) / out with in0 = 0 */
    double scale = (double)(float)n_in / n_out;
    double fscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * fscale;
    double inv = 1.0 / fscale;
    double span = ceil(support) * 2 + 1;
    if (span > (double)(INT_MAX / 2) || span * n_out > (double)(SIZE_MAX / sizeof(double) / 2)) {
        DSI_LOG_ERR("resampling %d -> %d samples: too many weights", n_in, n_out);
        return DSI_ERR_LIMIT;
    }
    t->stride = (int)span;
    size_t nw = (size_t)t->stride * (size_t)n_out;
    t->first = malloc((size_t)n_out * sizeof *t->first);
    t->count = malloc((size_t)n_out * sizeof *t->count);
    t->w = malloc(nw * sizeof *t->w);
    double *wd = malloc((size_t)t->stride * sizeof *wd);
    if (!t->first || !t->count || !t->w || !wd) {
        free(wd);
        taps_free(t);
        DSI_LOG_ERR("out of memory for resampling weights (%d -> %d)", n_in, n_out);
        return DSI_ERR_NOMEM;
    }
    for (int o = 0; o < n_out; o++) {
        double center = (o + 0.5) * scale;
        int lo = (int)(center - support + 0.5); /* truncation, as Pillow */
        int hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > n_in) hi = n_in;
        int cnt = hi - lo;
        double sum = 0.0;
        for (int i = 0; i < cnt; i++) {
            wd[i] = cubic(((double)(i + lo) - center + 0.5) * inv);
            sum += wd[i];
        }
        int32_t *w = t->w + (size_t)o * t->stride;
        for (int i = 0; i < cnt; i++) {
            double k = sum != 0.0 ? wd[i] / sum : wd[i];
            double f = k * (1 << FIXED_BITS);
            w[i] = (int32_t)(k < 0 ? f - 0.5 : f + 0.5); /* rounds half away from zero */
        }
        for (int i = cnt; i < t->stride; i++)
            w[i] = 0;
        t->first[o] = lo;
        t->count[o] = cnt;
    }
    free(wd);
    return DSI_OK;
}

/* Round a fixed-point sum (which includes the 0.5 bias) to 0..255. */
static inline uint8_t fixed_to_u8(int64_t acc) {
    if (acc < 0) return 0;
    acc >>= FIXED_BITS;
    return acc > 255 ? 255 : (uint8_t)acc;
}

/* Horizontal pass over the rows y0 .. y0 + dst->h - 1 of src. */
static void resample_rows(const struct dsi_image *src, int y0, const struct taps *t,
                          struct dsi_image *dst) {
    for (int y = 0; y < dst->h; y++) {
        const uint8_t *in = src->rgb + (size_t)(y0 + y) * src->w * 3;
        uint8_t *out = dst->rgb + (size_t)y * dst->w * 3;
        for (int x = 0; x < dst->w; x++) {
            const int32_t *w = t->w + (size_t)x * t->stride;
            const uint8_t *p = in + (size_t)t->first[x] * 3;
            int64_t r = 1 << (FIXED_BITS - 1), g = r, b = r;
            for (int i = 0; i < t->count[x]; i++) {
                r += (int64_t)p[3 * i + 0] * w[i];
                g += (int64_t)p[3 * i + 1] * w[i];
                b += (int64_t)p[3 * i + 2] * w[i];
            }
            out[3 * x + 0] = fixed_to_u8(r);
            out[3 * x + 1] = fixed_to_u8(g);
            out[3 * x + 2] = fixed_to_u8(b);
        }
    }
}

/* Vertical pass: output row y reads the rows first[y] - y0 .. of src. */
static void resample_cols(const struct dsi_image *src, int y0, const struct taps *t,
                          struct dsi_image *dst) {
    size_t row = (size_t)src->w * 3;
    for (int y = 0; y < dst->h; y++) {
        const int32_t *w = t->w + (size_t)y * t->stride;
        const uint8_t *in = src->rgb + (size_t)(t->first[y] - y0) * row;
        uint8_t *out = dst->rgb + (size_t)y * row;
        for (size_t c = 0; c < row; c++) {
            int64_t acc = 1 << (FIXED_BITS - 1);
            for (int i = 0; i < t->count[y]; i++)
                acc += (int64_t)in[(size_t)i * row + c] * w[i];
            out[c] = fixed_to_u8(acc);
        }
    }
}

enum dsi_status dsi_image_resize_bicubic(const struct dsi_image *in, int w, int h,
                                         struct dsi_image *out) {
    memset(out, 0, sizeof *out);
    if (!in || !in->rgb || in->w <= 0 || in->h <= 0 || w <= 0 || h <= 0) {
        DSI_LOG_ERR("dsi_image_resize_bicubic: empty image or size %dx%d", w, h);
        return DSI_ERR_ARG;
    }
    enum dsi_status st;
    if (w == in->w && h == in->h) { /* Image.resize returns a copy */
        if ((st = image_alloc(w, h, out)) != DSI_OK) return st;
        memcpy(out->rgb, in->rgb, (size_t)w * (size_t)h * 3);
        return DSI_OK;
    }
    if ((int64_t)w * h > DSI_IMAGE_MAX_PIXELS) {
        DSI_LOG_ERR("resize to %dx%d pixels exceeds the limit of %d pixels", w, h,
                    DSI_IMAGE_MAX_PIXELS);
        return DSI_ERR_LIMIT;
    }
    /* As Pillow: the vertical weights first, so that the horizontal pass only produces the
     * rows the vertical pass reads; a pass whose size does not change is skipped. */
    struct taps tv, th = {0};
    if ((st = taps_init(in->h, h, &tv)) != DSI_OK) return st;
    const struct dsi_image *src = in;
    struct dsi_image tmp = {0};
    int y0 = 0;
    if (w != in->w) {
        y0 = tv.first[0];
        int y1 = tv.first[h - 1] + tv.count[h - 1];
        if ((st = taps_init(in->w, w, &th)) != DSI_OK) goto done;
        /* the 8-bit intermediate is w x (y1 - y0), at most w x in->h */
        if ((int64_t)w * (y1 - y0) > (int64_t)DSI_IMAGE_MAX_PIXELS * 4) {
            DSI_LOG_ERR("resize %dx%d -> %dx%d: intermediate image too large", in->w, in->h, w, h);
            st = DSI_ERR_LIMIT;
            goto done;
        }
        tmp.rgb = malloc((size_t)w * (size_t)(y1 - y0) * 3);
        if (!tmp.rgb) {
            DSI_LOG_ERR("out of memory resizing %dx%d -> %dx%d", in->w, in->h, w, h);
            st = DSI_ERR_NOMEM;
            goto done;
        }
        tmp.w = w;
        tmp.h = y1 - y0;
        resample_rows(in, y0, &th, &tmp);
        src = &tmp;
    }
    if (h != in->h) {
        if ((st = image_alloc(w, h, out)) != DSI_OK) goto done;
        resample_cols(src, y0, &tv, out);
    } else { /* only the horizontal pass: y0 = 0 and tmp holds every row */
        *out = tmp;
        tmp.rgb = NULL;
    }
    st = DSI_OK;
done:
    free(tmp.rgb);
    taps_free(&tv);
    taps_free(&th);
    return st;
}

/* ---- ImageOps.pad -------------------------------------------------------------------------- */

/* Python's round() of a double to an int: halves to even (rint in the default rounding
 * mode). */
static int py_round(double v) {
    return (int)nearbyint(v);
}

void dsi_image_pad_geometry(int W, int H, int TW, int TH, int *new_w, int *new_h, int *x, int *y) {
    double r_img = (double)W / H, r_dst = (double)TW / TH;
    int nw = TW, nh = TH;
    if (r_img > r_dst)
        nh = py_round((double)H / W * TW);
    else if (r_img < r_dst)
        nw = py_round((double)W / H * TH);
    *new_w = nw;
    *new_h = nh;
    *x = nw != TW ? py_round((TW - nw) * 0.5) : 0;
    *y = nw != TW ? 0 : py_round((TH - nh) * 0.5);
}

enum dsi_status dsi_image_pad(const struct dsi_image *in, int tw, int th, const uint8_t fill[3],
                              struct dsi_image *out) {
    memset(out, 0, sizeof *out);
    if (!in || !in->rgb || in->w <= 0 || in->h <= 0 || tw <= 0 || th <= 0) {
        DSI_LOG_ERR("dsi_image_pad: empty image or size %dx%d", tw, th);
        return DSI_ERR_ARG;
    }
    int nw, nh, x, y;
    dsi_image_pad_geometry(in->w, in->h, tw, th, &nw, &nh, &x, &y);
    if (nw <= 0 || nh <= 0) {
        DSI_LOG_ERR("image of %dx%d pixels: aspect ratio too extreme to fit %dx%d", in->w, in->h,
                    tw, th);
        return DSI_ERR_UNSUPPORTED;
    }
    enum dsi_status st;
    struct dsi_image r;
    if ((st = dsi_image_resize_bicubic(in, nw, nh, &r)) != DSI_OK) return st;
    if (nw == tw && nh == th) {
        *out = r;
        return DSI_OK;
    }
    if ((st = image_alloc(tw, th, out)) != DSI_OK) {
        dsi_image_free(&r);
        return st;
    }
    for (size_t i = 0; i < (size_t)tw * (size_t)th; i++)
        memcpy(out->rgb + 3 * i, fill, 3);
    for (int row = 0; row < nh; row++)
        memcpy(out->rgb + ((size_t)(y + row) * tw + x) * 3, r.rgb + (size_t)row * nw * 3,
               (size_t)nw * 3);
    dsi_image_free(&r);
    return DSI_OK;
}

/* ---- DeepSeek-VL2 views -------------------------------------------------------------------- */

void dsi_vl2_best_resolution(int W, int H, const int32_t *cand, int n_cand, int *best_w,
                             int *best_h) {
    int bi = -1;
    int64_t best_eff = 0, best_waste = INT64_MAX, area = (int64_t)W * H;
    for (int i = 0; i < n_cand; i++) {
        int64_t cw = cand[2 * i], ch = cand[2 * i + 1];
        double sw = (double)cw / W, sh = (double)ch / H;
        double s = sh < sw ? sh : sw;
        int64_t dw = (int64_t)(W * s), dh = (int64_t)(H * s); /* Python int(): truncation */
        int64_t eff = dw * dh < area ? dw * dh : area;
        int64_t waste = cw * ch - eff;
        if (eff > best_eff || (eff == best_eff && waste < best_waste)) {
            bi = i;
            best_eff = eff;
            best_waste = waste;
        }
    }
    if (bi < 0) bi = 0;
    *best_w = cand[2 * bi];
    *best_h = cand[2 * bi + 1];
}

void dsi_vl2_views_free(struct dsi_vl2_views *v) {
    if (!v) return;
    free(v->pix);
    memset(v, 0, sizeof *v);
}

enum dsi_status dsi_vl2_views(const struct dsi_image *im, const int32_t *cand, int n_cand, int size,
                              bool tiling, struct dsi_vl2_views *out) {
    memset(out, 0, sizeof *out);
    if (!im || !im->rgb || im->w <= 0 || im->h <= 0) {
        DSI_LOG_ERR("dsi_vl2_views: empty image");
        return DSI_ERR_ARG;
    }
    if (size <= 0 || size > DSI_VL2_MAX_VIEW_SIZE) {
        DSI_LOG_ERR("dsi_vl2_views: view size %d outside 1..%d", size, DSI_VL2_MAX_VIEW_SIZE);
        return DSI_ERR_ARG;
    }
    if (tiling && (n_cand <= 0 || !cand)) {
        DSI_LOG_ERR("dsi_vl2_views: tiling needs candidate resolutions");
        return DSI_ERR_ARG;
    }
    for (int i = 0; tiling && i < n_cand; i++) {
        int32_t cw = cand[2 * i], ch = cand[2 * i + 1];
        if (cw <= 0 || ch <= 0 || cw % size || ch % size ||
            (int64_t)(cw / size) * (ch / size) > DSI_VL2_MAX_TILES) {
            DSI_LOG_ERR("dsi_vl2_views: candidate resolution %dx%d is not a grid of at most %d "
                        "tiles of %d pixels",
                        (int)cw, (int)ch, DSI_VL2_MAX_TILES, size);
            return DSI_ERR_ARG;
        }
    }
    int bw = size, bh = size;
    if (tiling) dsi_vl2_best_resolution(im->w, im->h, cand, n_cand, &bw, &bh);
    int nw = bw / size, nh = bh / size;
    const uint8_t fill[3] = {127, 127, 127}; /* int(0.5 * 255), the image mean */
    size_t view = (size_t)size * size * 3;
    struct dsi_image global = {0}, local = {0};
    enum dsi_status st = dsi_image_pad(im, size, size, fill, &global);
    if (st != DSI_OK) return st;
    if (nw * nh > 1 && (st = dsi_image_pad(im, bw, bh, fill, &local)) != DSI_OK) goto done;
    out->pix = malloc(view * (size_t)(1 + nw * nh));
    if (!out->pix) {
        DSI_LOG_ERR("out of memory for %d views of %dx%d", 1 + nw * nh, size, size);
        st = DSI_ERR_NOMEM;
        goto done;
    }
    memcpy(out->pix, global.rgb, view);
    if (nw * nh == 1) { /* the local view is the global one */
        memcpy(out->pix + view, global.rgb, view);
    } else {
        for (int r = 0; r < nh; r++)
            for (int c = 0; c < nw; c++) {
                uint8_t *dst = out->pix + view * (size_t)(1 + r * nw + c);
                for (int y = 0; y < size; y++)
                    memcpy(dst + (size_t)y * size * 3,
                           local.rgb + (((size_t)r * size + y) * bw + (size_t)c * size) * 3,
                           (size_t)size * 3);
            }
    }
    out->n_views = 1 + nw * nh;
    out->nw = nw;
    out->nh = nh;
    out->size = size;
done:
    dsi_image_free(&global);
    dsi_image_free(&local);
    return st;
}

void dsi_vl2_view_to_float(const struct dsi_vl2_views *v, int i, float *out) {
    DSI_ASSERT(i >= 0 && i < v->n_views);
    size_t plane = (size_t)v->size * v->size;
    const uint8_t *p = v->pix + plane * 3 * (size_t)i;
    for (size_t j = 0; j < plane; j++)
        for (int c = 0; c < 3; c++) out[c * plane + j] = dsi_vl2_pixel(p[3 * j + c]);
}
