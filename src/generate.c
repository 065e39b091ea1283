/* Generation loop (see generate.h). Text is accumulated in `pending`; everything before the
 * last `hold` bytes is final and goes to the callback, where hold covers an incomplete UTF-8
 * character at the end and the longest suffix that is a prefix of a stop string. */
#include "src/generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double dsi_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *dsi_stop_reason_str(enum dsi_stop_reason r) {
    static const char *const n[] = {"none", "eog", "stop string", "length", "context full",
                                    "callback"};
    return (unsigned)r < sizeof n / sizeof n[0] ? n[r] : "?";
}

struct textbuf {
    char *p;
    size_t n, cap;
};

static bool tb_put(struct textbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return false;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

/* Bytes at the end of s[n] that start an incomplete UTF-8 character. */
static size_t utf8_incomplete_tail(const char *s, size_t n) {
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xc0) == 0x80) continue; /* continuation byte: keep looking for the lead */
        size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

/* Longest suffix of s[n] that is a proper prefix of some stop string. */
static size_t stop_prefix_tail(const char *s, size_t n, const struct dsi_gen_params *p) {
    size_t best = 0;
    for (int i = 0; i < p->n_stop; i++) {
        size_t L = strlen(p->stop[i]);
        for (size_t k = L > 1 ? L - 1 : 0; k > best; k--)
            if (k <= n && memcmp(s + n - k, p->stop[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

/* Position of the first stop string in s[n], or SIZE_MAX. */
static size_t find_stop(const char *s, size_t n, const struct dsi_gen_params *p) {
    size_t first = SIZE_MAX;
    for (int i = 0; i < p->n_stop; i++) {
        size_t L = strlen(p->stop[i]);
        if (!L || L > n) continue;
        const char *f = memmem(s, n, p->stop[i], L);
        if (f && (size_t)(f - s) < first) first = (size_t)(f - s);
    }
    return first;
}

enum dsi_status dsi_generate(struct dsi_context *c, struct dsi_sampler *smp,
                             const int32_t *prompt, int64_t n_prompt, int64_t pos0,
                             const struct dsi_gen_params *p, dsi_gen_text_cb cb, void *user,
                             int32_t **out_ids, int64_t *n_out, struct dsi_gen_stats *stats) {
    const struct dsi_model *m = dsi_context_model(c);
    const struct dsi_tokenizer *tok = dsi_model_tokenizer(m);
    struct dsi_gen_stats st = {0};
    struct textbuf text = {0};
    int32_t *ids = NULL;
    int64_t n_ids = 0, cap_ids = 0;
    enum dsi_status s = DSI_OK;
    if (out_ids) *out_ids = NULL;
    if (n_out) *n_out = 0;

    double t0 = dsi_time_now();
    if (n_prompt > 0) {
        s = dsi_context_decode(c, prompt, n_prompt, pos0, false);
        if (s) return s;
        for (int64_t i = 0; i < n_prompt; i++) dsi_sampler_accept(smp, prompt[i]);
    } else if (pos0 == 0) {
        DSI_LOG_ERR("generate: empty prompt");
        return DSI_ERR_ARG;
    }
    st.n_prompt = n_prompt;
    st.t_prompt = dsi_time_now() - t0;
    int64_t pos = pos0 + n_prompt;
    t0 = dsi_time_now();
    size_t emitted = 0; /* bytes of `text` already given to the callback */
    unsigned rflags = p->render_special ? DSI_TOK_RENDER_SPECIAL : 0;
    while (st.stop == DSI_STOP_NONE) {
        if (p->n_predict >= 0 && st.n_gen >= p->n_predict) {
            st.stop = DSI_STOP_LENGTH;
            break;
        }
        int32_t t = dsi_sampler_sample(smp, dsi_context_logits(c, -1));
        dsi_sampler_accept(smp, t);
        st.n_gen++;
        if (out_ids) {
            if (n_ids == cap_ids) {
                cap_ids = cap_ids ? 2 * cap_ids : 64;
                int32_t *q = realloc(ids, (size_t)cap_ids * sizeof *q);
                if (!q) {
                    s = DSI_ERR_NOMEM;
                    break;
                }
                ids = q;
            }
            ids[n_ids++] = t;
        }
        bool eog = !p->ignore_eog && dsi_tokenizer_is_eog(tok, t);
        if (!eog) {
            char piece[256];
            int k = dsi_tokenizer_token_bytes(tok, t, rflags, piece, sizeof piece);
            if (k > (int)sizeof piece) {
                char *big = malloc((size_t)k);
                if (big && dsi_tokenizer_token_bytes(tok, t, rflags, big, (size_t)k) == k &&
                    !tb_put(&text, big, (size_t)k))
                    s = DSI_ERR_NOMEM;
                free(big);
            } else if (k > 0 && !tb_put(&text, piece, (size_t)k)) {
                s = DSI_ERR_NOMEM;
            }
            if (s) break;
            size_t stop_at = find_stop(text.p + emitted, text.n - emitted, p);
            size_t final_end;
            if (stop_at != SIZE_MAX) {
                final_end = emitted + stop_at;
                st.stop = DSI_STOP_STRING;
            } else {
                size_t hold = utf8_incomplete_tail(text.p, text.n);
                size_t sh = stop_prefix_tail(text.p + emitted, text.n - emitted, p);
                if (sh > hold) hold = sh;
                final_end = text.n - hold;
            }
            if (final_end > emitted && cb && !cb(user, text.p + emitted, final_end - emitted, t))
                st.stop = DSI_STOP_CALLBACK;
            if (final_end > emitted) emitted = final_end;
        } else {
            st.stop = DSI_STOP_EOG;
        }
        if (st.stop != DSI_STOP_NONE) break;
        if (p->n_predict >= 0 && st.n_gen >= p->n_predict) {
            st.stop = DSI_STOP_LENGTH;
            break;
        }
        if (pos >= dsi_context_n_ctx(c)) {
            st.stop = DSI_STOP_CONTEXT;
            break;
        }
        s = dsi_context_decode(c, &t, 1, pos++, false);
        if (s) break;
    }
    /* what is still held back is final now (unless a stop string cut it) */
    if (s == DSI_OK && st.stop != DSI_STOP_STRING && st.stop != DSI_STOP_CALLBACK &&
        text.n > emitted && cb)
        cb(user, text.p + emitted, text.n - emitted, -1);
    st.t_gen = dsi_time_now() - t0;
    free(text.p);
    if (stats) *stats = st;
    if (s) {
        free(ids);
        return s;
    }
    if (out_ids) {
        *out_ids = ids;
        *n_out = n_ids;
    } else {
        free(ids);
    }
    return DSI_OK;
}
