/* Chat requests for DeepSeek-VL2 (a model with a vision encoder): OpenAI content parts, text
 * and image_url, turned into the model's own conversation format (dsi_vl2_prompt_chat) with
 * each picture an "<image>" placeholder where its part stands. Pictures come as data: URLs
 * (base64, decoded here) or, when the server allows it, as local files. Runs on the
 * connection's thread, like tokenization, so bad pictures are answered with 400 before
 * anything is queued; the encoded rows travel with the request to the scheduler. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "src/server/server_impl.h"
#include "src/vision/image.h"
#include "src/vision/vl2.h"

/* ---- base64 ---------------------------------------------------------------------------------- */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

enum dsi_status srv_base64_decode(const char *s, size_t n, size_t max, uint8_t **out,
                                  size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    size_t pad = 0;
    while (pad < 2 && n > 0 && s[n - 1] == '=') n--, pad++;
    /* padded: whole quanta; unpadded: a last quantum of 2 or 3 characters */
    if (n == 0 || n % 4 == 1 || (pad && (n + pad) % 4)) return DSI_ERR_FORMAT;
    size_t len = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (len > max) return DSI_ERR_LIMIT;
    uint8_t *o = malloc(len);
    if (!o) return DSI_ERR_NOMEM;
    uint32_t acc = 0;
    int bits = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(o);
            return DSI_ERR_FORMAT;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* the unused low bits of the last character must be zero (a canonical encoding) */
    if (acc) {
        free(o);
        return DSI_ERR_FORMAT;
    }
    *out = o;
    *n_out = k;
    return DSI_OK;
}

/* ---- one picture ----------------------------------------------------------------------------- */

struct err {
    char *msg;
    size_t n;
    int status;
};

static bool fail(struct err *e, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(struct err *e, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, e->n, fmt, ap);
    va_end(ap);
    e->status = status;
    return false;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The path of a file:// URL (after the scheme) with its %XX escapes decoded (malloc'd); NULL
 * when it is not absolute or an escape is malformed or a NUL. */
static char *file_url_path(const char *u) {
    if (!strncasecmp(u, "localhost/", 10)) u += 9;
    if (u[0] != '/') return NULL;
    size_t n = strlen(u);
    char *p = malloc(n + 1), *q = p;
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (u[i] != '%') {
            *q++ = u[i];
            continue;
        }
        int hi = i + 1 < n ? hex_value(u[i + 1]) : -1, lo = i + 2 < n ? hex_value(u[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi | lo) == 0) {
            free(p);
            return NULL;
        }
        *q++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *q = '\0';
    return p;
}

static const char *status_why(enum dsi_status st) {
    switch (st) {
    case DSI_ERR_IO: return "cannot be read";
    case DSI_ERR_LIMIT: return "is too large";
    case DSI_ERR_NOMEM: return "does not fit in memory";
    default: return "is not a JPEG, PNG, BMP or GIF picture, or is corrupt";
    }
}

/* Decode picture number k (from 1) of an image_url part into *im. */
static bool load_part(struct dsi_server *s, const cJSON *part, int k, struct dsi_image *im,
                      struct err *e) {
    const cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url");
    const cJSON *u = cJSON_IsObject(iu) ? cJSON_GetObjectItemCaseSensitive(iu, "url") : iu;
    if (!cJSON_IsString(u))
        return fail(e, 400, "'messages': an image_url part needs 'image_url': {\"url\": \"...\"}");
    const char *url = u->valuestring;
    enum dsi_status st;
    if (!strncasecmp(url, "data:", 5)) {
        const char *comma = strchr(url, ',');
        size_t hl = comma ? (size_t)(comma - url) : 0;
        if (!comma || hl < 5 + 6 + 7 || strncasecmp(url + 5, "image/", 6) ||
            strncasecmp(comma - 7, ";base64", 7))
            return fail(e, 400, "'messages': image %d: a data URL must be "
                                "data:image/<type>;base64,<data>", k);
        uint8_t *bytes;
        size_t nb;
        st = srv_base64_decode(comma + 1, strlen(comma + 1), SRV_MAX_IMAGE_BYTES, &bytes, &nb);
        if (st == DSI_ERR_NOMEM) return fail(e, 500, "out of memory");
        if (st == DSI_ERR_LIMIT)
            return fail(e, 400, "'messages': image %d is larger than %zu MiB", k,
                        SRV_MAX_IMAGE_BYTES >> 20);
        if (st) return fail(e, 400, "'messages': image %d: the data URL is not valid base64", k);
        st = dsi_image_load_mem(bytes, nb, im);
        free(bytes);
    } else {
        bool file = !strncasecmp(url, "file://", 7);
        if (!file && url[0] != '/')
            return fail(e, 400, "'messages': image %d: the url must be a data:image/...;base64 "
                                "URL%s (remote URLs are not fetched)", k,
                        s->p.allow_local_images ? ", an absolute path or a file:// URL" : "");
        if (!s->p.allow_local_images)
            return fail(e, 400, "'messages': image %d: local image files are not allowed (the "
                                "server was started without --allow-local-images); send the "
                                "picture as a data: URL", k);
        char *path = file ? file_url_path(url + 7) : strdup(url);
        if (!path)
            return fail(e, 400, "'messages': image %d: a file:// URL must hold an absolute path "
                                "(with valid %%XX escapes)", k);
        st = dsi_image_load(path, im);
        free(path);
    }
    if (st == DSI_ERR_NOMEM) return fail(e, 500, "out of memory");
    if (st) return fail(e, 400, "'messages': image %d %s", k, status_why(st));
    return true;
}

/* ---- the conversation ------------------------------------------------------------------------ */

/* Text of the request as it goes into the prompt: no placeholders of its own (the pictures
 * are parts), valid UTF-8. */
static bool text_ok(const char *t, struct err *e) {
    if (strstr(t, "<image>"))
        return fail(e, 400, "'messages': text must not contain '<image>'; send pictures as "
                            "image_url parts");
    if (!utf8_valid(t, strlen(t))) return fail(e, 400, "'messages' is not valid UTF-8");
    return true;
}

int srv_vl2_chat(struct dsi_server *s, const struct dsi_model *m, const cJSON *msgs,
                 struct req *r, char *msg, size_t msg_n, const char **param) {
    struct err e = {msg, msg_n, 200};
    *param = "messages";
    int n = cJSON_IsArray(msgs) ? cJSON_GetArraySize(msgs) : 0;
    if (n <= 0) {
        fail(&e, 400, "'messages' must be a non-empty array");
        return e.status;
    }
    struct dsi_vl2_msg *vm = calloc((size_t)n, sizeof *vm);
    struct dsi_strbuf *texts = calloc((size_t)n, sizeof *texts);
    struct dsi_image ims[SRV_MAX_IMAGES];
    int n_im = 0, k = 0;
    int64_t pixels = 0;
    if (!vm || !texts) fail(&e, 500, "out of memory");
    const cJSON *mj;
    cJSON_ArrayForEach(mj, msgs) {
        if (e.status != 200) break;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(mj, "role");
        if (!cJSON_IsObject(mj) || !cJSON_IsString(role)) {
            fail(&e, 400, "each of 'messages' must be an object with a string 'role'");
            break;
        }
        const char *rn = role->valuestring;
        bool user = !strcmp(rn, "user"), assistant = !strcmp(rn, "assistant");
        bool system = !strcmp(rn, "system") || !strcmp(rn, "developer");
        if (!user && !assistant && !system) {
            fail(&e, 400, "'messages': role '%.40s' is not taken by this model (DeepSeek-VL2 "
                          "conversations have system, user and assistant turns)", rn);
            break;
        }
        if (system && k > 0) {
            fail(&e, 400, "'messages': DeepSeek-VL2 takes a system message only as the first one");
            break;
        }
        struct dsi_strbuf *t = &texts[k];
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(mj, "content");
        if (!content || cJSON_IsNull(content)) {
            if (!assistant) {
                fail(&e, 400, "each of 'messages' needs a 'content'");
                break;
            }
        } else if (cJSON_IsString(content)) {
            if (!text_ok(content->valuestring, &e)) break;
            dsi_strbuf_puts(t, content->valuestring);
        } else if (cJSON_IsArray(content)) {
            const cJSON *part;
            cJSON_ArrayForEach(part, content) {
                const cJSON *ty = cJSON_GetObjectItemCaseSensitive(part, "type");
                if (!cJSON_IsString(ty)) {
                    fail(&e, 400, "'messages': each content part needs a string 'type'");
                } else if (!strcmp(ty->valuestring, "text")) {
                    const cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
                    if (!cJSON_IsString(tx)) fail(&e, 400, "'messages': a text part needs a string 'text'");
                    else if (text_ok(tx->valuestring, &e)) dsi_strbuf_puts(t, tx->valuestring);
                } else if (!strcmp(ty->valuestring, "image_url")) {
                    if (!user) fail(&e, 400, "'messages': image parts are only taken in user messages");
                    else if (n_im == SRV_MAX_IMAGES)
                        fail(&e, 400, "'messages': at most %d images per request", SRV_MAX_IMAGES);
                    else if (load_part(s, part, n_im + 1, &ims[n_im], &e)) {
                        pixels += (int64_t)ims[n_im].w * ims[n_im].h;
                        n_im++;
                        dsi_strbuf_puts(t, "<image>");
                        if (pixels > SRV_MAX_IMAGE_PIXELS)
                            fail(&e, 400, "'messages': the pictures of a request may have at most "
                                          "%lld pixels in all", (long long)SRV_MAX_IMAGE_PIXELS);
                    }
                } else {
                    fail(&e, 400, "'messages': content parts of type '%.40s' are not supported "
                                  "(text and image_url are)", ty->valuestring);
                }
                if (e.status != 200) break;
            }
        } else {
            fail(&e, 400, "'messages' content must be a string or an array of parts");
        }
        if (e.status == 200 && t->failed) fail(&e, 500, "out of memory");
        vm[k].role = system ? "system" : rn;
        vm[k].content = t->p ? t->p : "";
        k++;
    }
    struct dsi_vl2_prompt vp = {0};
    if (e.status == 200) {
        enum dsi_status st = dsi_vl2_prompt_chat(m, vm, n, ims, n_im, s->p.n_threads, &vp);
        if (st == DSI_ERR_NOMEM) fail(&e, 500, "out of memory");
        else if (st)
            fail(&e, 400, "'messages': the conversation could not be prepared for the model (%s%s)",
                 dsi_status_str(st), n_im ? "; an image of an extreme aspect ratio?" : "");
    }
    if (e.status == 200) {
        if (n_im)
            DSI_LOG_INF("serve: %s: %d image(s), %d views, %lld image tokens, encoded in %.2f s",
                        r->id, n_im, vp.n_views, (long long)vp.n_image_tokens, vp.t_encode);
        r->prompt = vp.ids;
        r->n_prompt = vp.n;
        vp.ids = NULL;
        if (n_im) {
            r->rows = vp.rows;
            r->embd = vp.embd;
            vp.rows = NULL;
            vp.embd = NULL;
            r->img_first = 0;
            while (r->img_first < r->n_prompt && !r->rows[r->img_first]) r->img_first++;
        }
        *param = NULL;
    }
    dsi_vl2_prompt_free(&vp);
    for (int i = 0; i < n_im; i++) dsi_image_free(&ims[i]);
    for (int i = 0; texts && i < n; i++) dsi_strbuf_free(&texts[i]);
    free(texts);
    free(vm);
    return e.status;
}
