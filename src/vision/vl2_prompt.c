/* DeepSeek-VL2 prompts (models.md C.7): the conversation format of the official processor
 * (format_messages_v2 with the "deepseek" template) and tokenize_with_images, which
 * tokenizes the text between "<image>" placeholders separately and puts each picture's image
 * tokens in between. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "src/generate.h"
#include "src/model.h"
#include "src/vision/image.h"
#include "src/vision/vl2.h"

static const char PLACEHOLDER[] = "<image>";
#define PLACEHOLDER_LEN (sizeof PLACEHOLDER - 1)

struct builder {
    const struct dsi_tokenizer *tok;
    struct dsi_vl2_prompt *p;
    int64_t cap;
    int32_t image_id;
    int64_t n_embd;
    const int64_t *img_tokens; /* per image */
    const float *const *img_embd;
    int next_image, n_images;
    enum dsi_status st;
};

static int count_placeholders(const char *s) {
    int n = 0;
    for (const char *q = s; (q = strstr(q, PLACEHOLDER)); q += PLACEHOLDER_LEN) n++;
    return n;
}

static void push(struct builder *b, int32_t id, const float *row) {
    struct dsi_vl2_prompt *p = b->p;
    if (b->st) return;
    if (p->n == b->cap) {
        int64_t cap = b->cap ? 2 * b->cap : 256;
        int32_t *ids = realloc(p->ids, (size_t)cap * sizeof *ids);
        if (ids) p->ids = ids;
        const float **rows = ids ? realloc(p->rows, (size_t)cap * sizeof *rows) : NULL;
        if (rows) p->rows = rows;
        if (!ids || !rows) {
            b->st = DSI_ERR_NOMEM;
            return;
        }
        b->cap = cap;
    }
    p->ids[p->n] = id;
    p->rows[p->n++] = row;
}

/* Text tokens (special tokens recognized, nothing added). */
static void push_text(struct builder *b, const char *s, size_t len) {
    if (b->st || len == 0) return;
    int32_t *ids = NULL;
    size_t n = 0;
    b->st = dsi_tokenizer_encode(b->tok, s, len, DSI_TOK_PARSE_SPECIAL, &ids, &n);
    for (size_t i = 0; i < n; i++) push(b, ids[i], NULL);
    free(ids);
}

/* tokenize_with_images: text pieces split at the placeholders, the next picture's image
 * tokens at each one. */
static void push_with_images(struct builder *b, const char *s) {
    const char *q;
    while ((q = strstr(s, PLACEHOLDER))) {
        push_text(b, s, (size_t)(q - s));
        int k = b->next_image++;
        for (int64_t i = 0; i < b->img_tokens[k] && !b->st; i++)
            push(b, b->image_id, b->img_embd[k] + i * b->n_embd);
        s = q + PLACEHOLDER_LEN;
    }
    push_text(b, s, strlen(s));
}

/* The content without surrounding white space, as Python's str.strip() on ASCII. */
static const char *strip(const char *s, size_t *len) {
    static const char ws[] = " \t\n\r\f\v";
    while (*s && strchr(ws, *s)) s++;
    size_t n = strlen(s);
    while (n > 0 && strchr(ws, s[n - 1])) n--;
    *len = n;
    return s;
}

void dsi_vl2_cache_free(struct dsi_vl2_cache *c) {
    for (int k = 0; k < c->n; k++) free(c->e[k].embd);
    memset(c, 0, sizeof *c);
}

/* Picture k through the tower (views, tower, projector, weaving) into the cache entry k. */
static enum dsi_status encode_one(const struct dsi_vl2 *v, const struct dsi_image *im, bool tiled,
                                  int n_threads, struct dsi_vl2_cache *c, int k, int *n_views) {
    float *e = NULL;
    int64_t n = dsi_vl2_recall(v, im->w, im->h, im->rgb, tiled, &e);
    if (n > 0) { /* a picture the model saw recently: no tower */
        free(c->e[k].embd);
        c->e[k].embd = e, c->e[k].n_tokens = n, c->e[k].tiled = tiled;
        if (k >= c->n) c->n = k + 1;
        return DSI_OK;
    }
    struct dsi_vl2_info in = dsi_vl2_get_info(v);
    struct dsi_vl2_views views = {0};
    enum dsi_status st = dsi_vl2_views(im, in.cand, in.n_cand, in.image_size, tiled, &views);
    if (st) return st;
    n = dsi_vl2_n_tokens(v, views.nw, views.nh);
    e = malloc((size_t)(n * in.n_embd) * sizeof *e);
    st = e ? dsi_vl2_encode(v, views.pix, views.nw, views.nh, e, n_threads) : DSI_ERR_NOMEM;
    if (!st) dsi_vl2_remember(v, im->w, im->h, im->rgb, tiled, e, n);
    if (st == DSI_ERR_NOMEM) DSI_LOG_ERR("vl2: out of memory for %lld image tokens", (long long)n);
    if (!st) {
        free(c->e[k].embd);
        c->e[k].embd = e, c->e[k].n_tokens = n, c->e[k].tiled = tiled;
        if (k >= c->n) c->n = k + 1;
        *n_views += views.n_views;
    } else {
        free(e);
    }
    dsi_vl2_views_free(&views);
    return st;
}

/* Image-token counts and embeddings of every picture, through the cache (a private one when
 * c is NULL), copied into the prompt. */
static enum dsi_status encode_images(const struct dsi_model *m, const struct dsi_image *images,
                                     int n_images, int n_threads, struct dsi_vl2_cache *c,
                                     struct dsi_vl2_prompt *p, int64_t *tokens, float **embd_of) {
    const struct dsi_vl2 *v = dsi_model_vl2(m);
    if (n_images == 0) return DSI_OK;
    if (!v) {
        DSI_LOG_ERR("vl2: the model '%s' has no vision encoder; it cannot take images",
                    dsi_model_name(m));
        return DSI_ERR_UNSUPPORTED;
    }
    struct dsi_vl2_cache *own = c ? NULL : calloc(1, sizeof *own);
    if (!c && !(c = own)) return DSI_ERR_NOMEM;
    int64_t E = dsi_model_n_embd(m), total = 0;
    enum dsi_status st = DSI_OK;
    /* the official processor tiles only when the conversation has at most two images */
    bool tiled = n_images <= 2;
    double t0 = dsi_time_now();
    for (int k = 0; k < n_images && !st; k++) {
        if (k >= c->n || !c->e[k].embd || c->e[k].tiled != tiled)
            st = encode_one(v, &images[k], tiled, n_threads, c, k, &p->n_views);
        if (!st) total += tokens[k] = c->e[k].n_tokens;
    }
    p->t_encode = dsi_time_now() - t0;
    if (!st && !(p->embd = malloc((size_t)(total * E) * sizeof(float)))) {
        DSI_LOG_ERR("vl2: out of memory for %lld image tokens", (long long)total);
        st = DSI_ERR_NOMEM;
    }
    int64_t off = 0;
    for (int k = 0; k < n_images && !st; k++) {
        embd_of[k] = p->embd + off * E;
        memcpy(embd_of[k], c->e[k].embd, (size_t)(tokens[k] * E) * sizeof(float));
        off += tokens[k];
    }
    p->n_image_tokens = total;
    if (own) {
        dsi_vl2_cache_free(own);
        free(own);
    }
    return st;
}

/* Shared driver: msgs (chat) or raw text. */
static enum dsi_status build(const struct dsi_model *m, const struct dsi_vl2_msg *msgs,
                             int n_msgs, const char *raw, const struct dsi_image *images,
                             int n_images, int n_threads, struct dsi_vl2_cache *cache,
                             struct dsi_vl2_prompt *out) {
    memset(out, 0, sizeof *out);
    if (n_images < 0 || n_images > 64) {
        DSI_LOG_ERR("vl2: %d images (at most 64)", n_images);
        return DSI_ERR_LIMIT;
    }
    const struct dsi_tokenizer *tok = dsi_model_tokenizer(m);
    int holders = 0, first_user = -1;
    for (int i = 0; i < n_msgs; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content ||
            (strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "system")) ||
            (!strcmp(r, "system") && i > 0)) {
            DSI_LOG_ERR("vl2: message %d: role must be user, assistant or (first) system", i);
            return DSI_ERR_ARG;
        }
        if (!strcmp(r, "user")) {
            holders += count_placeholders(msgs[i].content);
            if (first_user < 0) first_user = i;
        } else if (count_placeholders(msgs[i].content)) {
            DSI_LOG_ERR("vl2: message %d: only user turns may hold <image>", i);
            return DSI_ERR_ARG;
        }
    }
    if (raw) holders = count_placeholders(raw);
    bool prepend = holders == 0 && n_images > 0 && !raw;
    if (prepend && first_user < 0) {
        DSI_LOG_ERR("vl2: images need a user turn");
        return DSI_ERR_ARG;
    }
    if (!prepend && holders != n_images) {
        DSI_LOG_ERR("vl2: the prompt has %d <image> placeholders for %d images", holders,
                    n_images);
        return DSI_ERR_ARG;
    }
    int32_t image_id = dsi_tokenizer_find(tok, PLACEHOLDER, PLACEHOLDER_LEN);
    if (n_images > 0 && image_id < 0) {
        DSI_LOG_ERR("vl2: the tokenizer has no <image> token");
        return DSI_ERR_FORMAT;
    }
    int64_t tokens[64];
    float *embd_of[64];
    enum dsi_status st = encode_images(m, images, n_images, n_threads, cache, out, tokens, embd_of);
    struct builder b = {tok, out, 0, image_id, dsi_model_n_embd(m), tokens,
                        (const float *const *)embd_of, 0, n_images, st};
    int32_t bos = dsi_tokenizer_bos(tok), eos = dsi_tokenizer_eos(tok);
    if (bos >= 0) push(&b, bos, NULL);
    if (raw) push_with_images(&b, raw);
    for (int i = 0; i < n_msgs && !b.st; i++) {
        size_t len;
        const char *c = strip(msgs[i].content, &len);
        if (!strcmp(msgs[i].role, "user")) {
            struct dsi_strbuf t = {0};
            dsi_strbuf_puts(&t, "<|User|>: ");
            for (int k = 0; prepend && i == first_user && k < n_images; k++)
                dsi_strbuf_puts(&t, "<image>\n");
            dsi_strbuf_put(&t, c, len);
            dsi_strbuf_puts(&t, "\n\n<|Assistant|>:");
            if (t.failed) b.st = DSI_ERR_NOMEM;
            else push_with_images(&b, t.p);
            dsi_strbuf_free(&t);
        } else {
            push_text(&b, c, len);
            if (!strcmp(msgs[i].role, "assistant") && eos >= 0) push(&b, eos, NULL);
        }
    }
    if (b.st) {
        if (b.st == DSI_ERR_NOMEM) DSI_LOG_ERR("vl2: out of memory building the prompt");
        dsi_vl2_prompt_free(out);
    }
    return b.st;
}

enum dsi_status dsi_vl2_prompt_chat(const struct dsi_model *m, const struct dsi_vl2_msg *msgs,
                                    int n_msgs, const struct dsi_image *images, int n_images,
                                    int n_threads, struct dsi_vl2_prompt *out) {
    return build(m, msgs, n_msgs, NULL, images, n_images, n_threads, NULL, out);
}

enum dsi_status dsi_vl2_prompt_chat_cached(const struct dsi_model *m, const struct dsi_vl2_msg *msgs,
                                           int n_msgs, const struct dsi_image *images,
                                           int n_images, int n_threads,
                                           struct dsi_vl2_cache *cache,
                                           struct dsi_vl2_prompt *out) {
    return build(m, msgs, n_msgs, NULL, images, n_images, n_threads, cache, out);
}

enum dsi_status dsi_vl2_prompt_raw(const struct dsi_model *m, const char *text,
                                   const struct dsi_image *images, int n_images, int n_threads,
                                   struct dsi_vl2_prompt *out) {
    return build(m, NULL, 0, text, images, n_images, n_threads, NULL, out);
}

void dsi_vl2_prompt_free(struct dsi_vl2_prompt *p) {
    free(p->ids);
    free(p->rows);
    free(p->embd);
    memset(p, 0, sizeof *p);
}
