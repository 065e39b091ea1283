/* HTTP side of the server on libmicrohttpd, one thread per connection: routing, the API key,
 * body limits, request parsing and validation, chat templating and tokenization (on the
 * connection's thread), then queueing; responses as one JSON document or as Server-Sent
 * Events. A connection's thread waits for its request's output and watches its socket: a
 * client that hangs up cancels its request at once. */
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "src/chat.h"
#include "src/server/server_impl.h"
#include "src/tokenizer.h"
#include "src/vision/vl2.h"

#define EP_CHAT "/v1/chat/completions"
#define EP_COMPL "/v1/completions"

struct conn {
    struct dsi_server *s;
    const char *endpoint; /* a static route name for the metrics */
    struct dsi_strbuf body;
    bool too_big, answered;
    int status;
    struct req *r;
};

/* ---- responses ------------------------------------------------------------------------------ */

static enum MHD_Result respond(struct conn *c, struct MHD_Connection *mc, int status,
                               const char *type, const char *body, size_t n, int retry_after) {
    struct MHD_Response *res =
        MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!res) return MHD_NO;
    MHD_add_response_header(res, "Content-Type", type);
    if (retry_after > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after);
        MHD_add_response_header(res, "Retry-After", v);
    }
    if (status == 401) MHD_add_response_header(res, "WWW-Authenticate", "Bearer");
    enum MHD_Result ok = MHD_queue_response(mc, (unsigned)status, res);
    MHD_destroy_response(res);
    c->status = status;
    c->answered = true;
    return ok;
}

static enum MHD_Result respond_json(struct conn *c, struct MHD_Connection *mc, int status,
                                    const struct dsi_strbuf *b) {
    if (b->failed) return MHD_NO;
    return respond(c, mc, status, "application/json", b->p ? b->p : "{}", b->p ? b->n : 2, 0);
}

/* OpenAI's error shape. */
static enum MHD_Result respond_error(struct conn *c, struct MHD_Connection *mc, int status,
                                     const char *msg, const char *param, const char *code) {
    const char *type = status == 401   ? "authentication_error"
                       : status == 404 ? "not_found_error"
                       : status >= 500 ? (status == 503 ? "overloaded_error" : "server_error")
                                       : "invalid_request_error";
    struct dsi_strbuf b = {0};
    dsi_strbuf_puts(&b, "{\"error\":{\"message\":");
    sb_json_str(&b, msg, strlen(msg));
    dsi_strbuf_printf(&b, ",\"type\":\"%s\",\"param\":", type);
    if (param) sb_json_str(&b, param, strlen(param));
    else dsi_strbuf_puts(&b, "null");
    dsi_strbuf_puts(&b, ",\"code\":");
    if (code) sb_json_str(&b, code, strlen(code));
    else dsi_strbuf_puts(&b, "null");
    dsi_strbuf_puts(&b, "}}");
    enum MHD_Result ok = b.failed ? MHD_NO
                                  : respond(c, mc, status, "application/json", b.p, b.n,
                                            status == 503 ? 1 : 0);
    dsi_strbuf_free(&b);
    return ok;
}

/* ---- request parsing ------------------------------------------------------------------------- */

struct perr {
    char msg[256];
    const char *param;
};

static bool bad(struct perr *e, const char *param, const char *fmt, const char *detail) {
    snprintf(e->msg, sizeof e->msg, fmt, param, detail ? detail : "");
    e->param = param;
    return false;
}

/* An optional number in [lo, hi]; absent or null leaves *out. */
static bool opt_num(const cJSON *o, const char *k, double lo, double hi, double *out, struct perr *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsNumber(v)) return bad(e, k, "'%s' must be a number%s", NULL);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi)) {
        char d[64];
        snprintf(d, sizeof d, " between %g and %g", lo, hi);
        return bad(e, k, "'%s' must be%s", d);
    }
    *out = v->valuedouble;
    return true;
}

static bool opt_int(const cJSON *o, const char *k, double lo, double hi, int64_t *out, struct perr *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return true;
    /* the range first: casting a double outside int64 is undefined */
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return bad(e, k, "'%s' must be an integer%s", NULL);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi)) {
        char d[64];
        snprintf(d, sizeof d, " between %.0f and %.0f", lo, hi);
        return bad(e, k, "'%s' must be an integer%s", d);
    }
    *out = (int64_t)v->valuedouble;
    return true;
}

static bool opt_bool(const cJSON *o, const char *k, bool *out, struct perr *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsBool(v)) return bad(e, k, "'%s' must be a boolean%s", NULL);
    *out = cJSON_IsTrue(v);
    return true;
}

static uint64_t fresh_seed(struct dsi_server *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&s->mu);
    uint64_t n = ++s->n_ids;
    pthread_mutex_unlock(&s->mu);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (n * 0x9e3779b97f4a7c15ull);
    x ^= x >> 31;
    return x * 0xbf58476d1ce4e5b9ull;
}

/* The generation parameters every endpoint shares. */
static bool parse_common(struct dsi_server *s, const cJSON *o, struct req *r, int64_t n_ctx,
                         struct perr *e) {
    struct dsi_sampler_params sp = dsi_sampler_default_params();
    double temp = 1.0, top_p = 1.0, min_p = 0.0, pres = 0.0, freq = 0.0, rep = 1.0;
    int64_t top_k = 0, seed = -1, n = 1, max_tokens = s->p.max_tokens_default;
    if (!opt_num(o, "temperature", 0, 2, &temp, e) || !opt_num(o, "top_p", 0, 1, &top_p, e) ||
        !opt_num(o, "min_p", 0, 1, &min_p, e) || !opt_int(o, "top_k", 0, 1 << 30, &top_k, e) ||
        !opt_num(o, "presence_penalty", -2, 2, &pres, e) ||
        !opt_num(o, "frequency_penalty", -2, 2, &freq, e) ||
        !opt_num(o, "repeat_penalty", 0, 10, &rep, e) ||
        !opt_int(o, "seed", -9.2e18, 9.2e18, &seed, e) || !opt_int(o, "n", 1, 1, &n, e) ||
        !opt_int(o, "max_tokens", 1, (double)n_ctx, &max_tokens, e) ||
        !opt_int(o, "max_completion_tokens", 1, (double)n_ctx, &max_tokens, e) ||
        !opt_bool(o, "stream", &r->stream, e) || !opt_bool(o, "ignore_eos", &r->ignore_eos, e))
        return false;
    sp.temperature = (float)temp;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.top_k = (int32_t)top_k;
    sp.presence_penalty = (float)pres;
    sp.frequency_penalty = (float)freq;
    sp.repeat_penalty = (float)rep;
    sp.repeat_last_n = -1; /* OpenAI's penalties count every generated token */
    sp.seed = cJSON_GetObjectItemCaseSensitive(o, "seed") && seed >= 0 ? (uint64_t)seed
                                                                        : fresh_seed(s);
    r->sp = sp;
    r->max_tokens = max_tokens;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(o, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) return bad(e, "stream_options", "'%s' must be an object%s", NULL);
        if (!opt_bool(so, "include_usage", &r->include_usage, e)) return false;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "stop");
    if (st && !cJSON_IsNull(st)) {
        int k = cJSON_IsString(st) ? 1 : cJSON_IsArray(st) ? cJSON_GetArraySize(st) : -1;
        if (k < 0 || k > 16) return bad(e, "stop", "'%s' must be a string or an array of at most 16 strings%s", NULL);
        r->stop = calloc((size_t)(k ? k : 1), sizeof *r->stop);
        if (!r->stop) return bad(e, "stop", "out of memory reading '%s'%s", NULL);
        for (int i = 0; i < k; i++) {
            const cJSON *v = cJSON_IsString(st) ? st : cJSON_GetArrayItem(st, i);
            if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > 1024)
                return bad(e, "stop", "'%s' entries must be non-empty strings of at most 1024 bytes%s", NULL);
            if (!(r->stop[r->n_stop] = strdup(v->valuestring)))
                return bad(e, "stop", "out of memory reading '%s'%s", NULL);
            r->n_stop++;
        }
    }
    return true;
}

/* Content of a chat message: a string, or text parts (concatenated). */
static bool message_text(const cJSON *content, struct dsi_strbuf *out, struct perr *e) {
    if (cJSON_IsString(content)) {
        dsi_strbuf_puts(out, content->valuestring);
        return true;
    }
    if (!cJSON_IsArray(content)) return bad(e, "messages", "'%s' content must be a string or an array of parts%s", NULL);
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "image_url"))
            return bad(e, "messages", "'%s': image parts need a model with a vision encoder "
                                      "(DeepSeek-VL2); this model is text-only%s", NULL);
        if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "text"))
            return bad(e, "messages", "'%s': only text content parts are supported%s", NULL);
        if (!cJSON_IsString(tx)) return bad(e, "messages", "'%s': a text part needs a string 'text'%s", NULL);
        dsi_strbuf_puts(out, tx->valuestring);
    }
    return true;
}

/* The messages as the template wants them: every content a string. */
static cJSON *normalize_messages(const cJSON *msgs, struct perr *e) {
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        bad(e, "messages", "'%s' must be a non-empty array%s", NULL);
        return NULL;
    }
    cJSON *out = cJSON_CreateArray();
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            bad(e, "messages", "each of '%s' must be an object with a string 'role'%s", NULL);
            cJSON_Delete(out);
            return NULL;
        }
        const char *rn = role->valuestring;
        if (strcmp(rn, "system") && strcmp(rn, "user") && strcmp(rn, "assistant") &&
            strcmp(rn, "developer") && strcmp(rn, "tool")) {
            bad(e, "messages", "'%s': unknown role '%s'", rn);
            cJSON_Delete(out);
            return NULL;
        }
        cJSON *copy = cJSON_Duplicate(m, true);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (copy && content && !cJSON_IsNull(content)) {
            struct dsi_strbuf t = {0};
            if (!message_text(content, &t, e) || t.failed) {
                dsi_strbuf_free(&t);
                cJSON_Delete(copy);
                cJSON_Delete(out);
                return NULL;
            }
            cJSON_ReplaceItemInObjectCaseSensitive(copy, "content", cJSON_CreateString(t.p ? t.p : ""));
            dsi_strbuf_free(&t);
        } else if (copy && !content && strcmp(rn, "assistant")) {
            cJSON_Delete(copy);
            bad(e, "messages", "each of '%s' needs a 'content'%s", NULL);
            cJSON_Delete(out);
            return NULL;
        }
        if (!copy || !cJSON_AddItemToArray(out, copy)) {
            cJSON_Delete(copy);
            cJSON_Delete(out);
            bad(e, "messages", "out of memory reading '%s'%s", NULL);
            return NULL;
        }
    }
    return out;
}

static struct req *req_new(struct dsi_server *s, enum req_kind kind) {
    struct req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 1;
    r->kind = kind;
    r->logprobs = -1;
    r->created = (long)time(NULL);
    r->t_arrival = dsi_time_now();
    pthread_mutex_lock(&s->mu);
    uint64_t n = ++s->n_ids;
    pthread_mutex_unlock(&s->mu);
    snprintf(r->id, sizeof r->id, "%s-%llx%06llx", kind == REQ_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)r->created, (unsigned long long)n);
    return r;
}

/* Parse, template and tokenize a generation request. Returns the HTTP status (200: r ready
 * to queue), with e filled otherwise. */
static int build_request(struct dsi_server *s, const cJSON *o, struct req *r, struct perr *e,
                         const char **code) {
    struct srv_model *sm;
    pthread_mutex_lock(&s->mu);
    sm = s->model;
    sm->refs++;
    int64_t n_ctx = dsi_context_n_ctx(s->ctx);
    pthread_mutex_unlock(&s->mu);
    int status = 400;
    char *text = NULL;
    cJSON *msgs = NULL;
    if (!parse_common(s, o, r, n_ctx, e)) goto out;
    r->model_id = strdup(sm->id);
    r->model_gen = sm->gen;
    if (!r->model_id) goto nomem;
    if (r->kind == REQ_CHAT) {
        bool lp = false;
        int64_t top = 0;
        if (!opt_bool(o, "logprobs", &lp, e) || !opt_int(o, "top_logprobs", 0, 20, &top, e)) goto out;
        if (lp) r->logprobs = (int)top;
        if (dsi_model_vl2(sm->m)) {
            /* DeepSeek-VL2: its own conversation format, pictures encoded here */
            status = srv_vl2_chat(s, sm->m, cJSON_GetObjectItemCaseSensitive(o, "messages"), r,
                                  e->msg, sizeof e->msg, &e->param);
            if (status != 200) goto out;
            status = 400;
            r->think = THINK_MAY_OPEN;
        } else if (!sm->tmpl) {
            snprintf(e->msg, sizeof e->msg, "the model has no chat template; use /v1/completions "
                                            "or start the server with --chat-template");
            e->param = NULL;
            goto out;
        } else {
            if (!(msgs = normalize_messages(cJSON_GetObjectItemCaseSensitive(o, "messages"), e))) goto out;
            const cJSON *kw = cJSON_GetObjectItemCaseSensitive(o, "chat_template_kwargs");
            if (kw && !cJSON_IsNull(kw) && !cJSON_IsObject(kw)) {
                bad(e, "chat_template_kwargs", "'%s' must be an object%s", NULL);
                goto out;
            }
            struct dsi_chat_params cp = {true, cJSON_IsObject(kw) ? kw : NULL};
            if (dsi_chat_render(sm->m, sm->tmpl, msgs, &cp, &text)) {
                bad(e, "messages", "the chat template could not render '%s'%s", NULL);
                goto out;
            }
            size_t tl = strlen(text);
            r->think = (tl >= 8 && !strcmp(text + tl - 8, "<think>\n")) ||
                               (tl >= 7 && !strcmp(text + tl - 7, "<think>"))
                           ? THINK_OPEN
                           : THINK_MAY_OPEN;
        }
    } else {
        int64_t lpn = -1;
        bool echo = false;
        if (!opt_int(o, "logprobs", 0, 20, &lpn, e) || !opt_bool(o, "echo", &echo, e)) goto out;
        if (echo) {
            bad(e, "echo", "'%s' is not supported%s", NULL);
            goto out;
        }
        r->logprobs = (int)lpn;
        r->think = THINK_NONE;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prompt");
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(cJSON_GetArrayItem(p, 0)))
            p = cJSON_GetArrayItem(p, 0);
        if (cJSON_IsString(p)) {
            text = strdup(p->valuestring);
            if (!text) goto nomem;
        } else if (cJSON_IsArray(p) && cJSON_GetArraySize(p) > 0) {
            int n = cJSON_GetArraySize(p);
            r->prompt = malloc((size_t)n * sizeof *r->prompt);
            if (!r->prompt) goto nomem;
            const cJSON *v;
            cJSON_ArrayForEach(v, p) {
                if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
                    v->valuedouble >= (double)dsi_model_n_vocab(sm->m) ||
                    v->valuedouble != (double)(int32_t)v->valuedouble) {
                    bad(e, "prompt", "'%s' must be a string or an array of token ids of the model's vocabulary (one prompt per request)%s", NULL);
                    goto out;
                }
                r->prompt[r->n_prompt++] = (int32_t)v->valuedouble;
            }
        } else {
            bad(e, "prompt", "'%s' must be a non-empty string or an array of token ids (one prompt per request)%s", NULL);
            goto out;
        }
    }
    if (text) {
        enum dsi_status ts = utf8_valid(text, strlen(text))
                                 ? srv_tokenize(sm->m, r->kind, text, &r->prompt, &r->n_prompt)
                                 : DSI_ERR_FORMAT;
        if (ts == DSI_ERR_NOMEM) goto nomem;
        if (ts) {
            bad(e, r->kind == REQ_CHAT ? "messages" : "prompt", "'%s' is not valid UTF-8%s", NULL);
            goto out;
        }
        r->prompt_text = text;
        text = NULL;
    }
    if (r->n_prompt == 0) {
        bad(e, r->kind == REQ_CHAT ? "messages" : "prompt", "'%s' is empty%s", NULL);
        goto out;
    }
    if (r->n_prompt >= n_ctx) {
        char d[96];
        snprintf(d, sizeof d, "%lld tokens, the context holds %lld", (long long)r->n_prompt,
                 (long long)n_ctx);
        bad(e, r->kind == REQ_CHAT ? "messages" : "prompt", "'%s' is too long for the context: %s", d);
        *code = "context_length_exceeded";
        goto out;
    }
    status = 200;
    goto out;
nomem:
    status = 500;
    snprintf(e->msg, sizeof e->msg, "out of memory");
    e->param = NULL;
out:
    free(text);
    cJSON_Delete(msgs);
    pthread_mutex_lock(&s->mu);
    if (--sm->refs == 0) pthread_cond_broadcast(&s->cv_idle);
    pthread_mutex_unlock(&s->mu);
    return status;
}

/* ---- waiting for output -------------------------------------------------------------------- */

/* Whether the peer closed the connection (read side hung up or an error). */
static bool peer_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static int conn_fd(struct MHD_Connection *mc) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* Wait (100 ms at a time) until the request has output or is done; false when the client
 * went away (the request is cancelled) or the server is going down. Called with r->mu held. */
static bool wait_output(struct dsi_server *s, struct req *r, int fd, bool want_sse) {
    while (!r->done && !(want_sse && r->sse.n)) {
        cond_wait_ms(&r->cv, &r->mu, 100);
        if (r->done || (want_sse && r->sse.n)) break;
        bool quit;
        pthread_mutex_unlock(&r->mu);
        pthread_mutex_lock(&s->mu);
        quit = s->quit;
        pthread_mutex_unlock(&s->mu);
        bool gone = peer_gone(fd);
        if (gone) sched_cancel(s, r);
        pthread_mutex_lock(&r->mu);
        if (gone || quit) return false;
    }
    return true;
}

struct stream {
    struct dsi_server *s;
    struct req *r;
    int fd;
    size_t sent; /* bytes of r->sse already given to MHD (the buffer is compacted) */
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    struct stream *st = cls;
    struct req *r = st->r;
    pthread_mutex_lock(&r->mu);
    if (!wait_output(st->s, r, st->fd, true)) {
        pthread_mutex_unlock(&r->mu);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (r->sse.failed) {
        pthread_mutex_unlock(&r->mu);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = r->sse.n < max ? r->sse.n : max;
    if (n == 0 && r->done) {
        pthread_mutex_unlock(&r->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    memcpy(buf, r->sse.p, n);
    memmove(r->sse.p, r->sse.p + n, r->sse.n - n);
    r->sse.n -= n;
    pthread_mutex_unlock(&r->mu);
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    struct stream *st = cls;
    req_release(st->r);
    free(st);
}

/* The final JSON of a non-streamed request (r->mu held, r->done). */
static void final_json(const struct req *r, struct dsi_strbuf *b) {
    bool chat = r->kind == REQ_CHAT;
    dsi_strbuf_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", r->id,
              chat ? "chat.completion" : "text_completion", r->created);
    sb_json_str(b, r->model_id, strlen(r->model_id));
    dsi_strbuf_puts(b, ",\"system_fingerprint\":\"dsinfer\",\"choices\":[{\"index\":0,");
    const char *content = r->content.p ? r->content.p : "";
    if (chat) {
        dsi_strbuf_puts(b, "\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json_str(b, content, r->content.n);
        if (r->reasoning.n || r->think_seen) {
            dsi_strbuf_puts(b, ",\"reasoning_content\":");
            sb_json_str(b, r->reasoning.p ? r->reasoning.p : "", r->reasoning.n);
        }
        dsi_strbuf_puts(b, "},\"logprobs\":");
        if (r->logprobs >= 0) dsi_strbuf_printf(b, "{\"content\":[%s]}", r->lp_json.p ? r->lp_json.p : "");
        else dsi_strbuf_puts(b, "null");
    } else {
        dsi_strbuf_puts(b, "\"text\":");
        sb_json_str(b, content, r->content.n);
        dsi_strbuf_puts(b, ",\"logprobs\":");
        if (r->logprobs >= 0)
            dsi_strbuf_printf(b, "{\"tokens\":[%s],\"token_logprobs\":[%s],\"top_logprobs\":[%s]}",
                      r->lp_tokens.p ? r->lp_tokens.p : "", r->lp_values.p ? r->lp_values.p : "",
                      r->lp_top.p ? r->lp_top.p : "");
        else dsi_strbuf_puts(b, "null");
    }
    dsi_strbuf_printf(b, ",\"finish_reason\":\"%s\"}],\"usage\":", r->finish ? r->finish : "stop");
    dsi_strbuf_printf(b,
              "{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld,"
              "\"prompt_tokens_details\":{\"cached_tokens\":%lld}}}",
              (long long)r->n_prompt, (long long)r->n_gen, (long long)(r->n_prompt + r->n_gen),
              (long long)r->n_cached);
}

int srv_request_from_body(struct dsi_server *s, const char *body, size_t n, enum req_kind kind,
                          struct req **out, char *msg, size_t msg_n, const char **param,
                          const char **code) {
    *out = NULL;
    *param = *code = NULL;
    cJSON *o = cJSON_ParseWithLength(body ? body : "", n);
    if (!o) {
        const char *at = cJSON_GetErrorPtr();
        snprintf(msg, msg_n, "invalid JSON in the request body (near byte %lld)",
                 at && body && at >= body && at <= body + n ? (long long)(at - body) : 0LL);
        *code = "invalid_json";
        return 400;
    }
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        snprintf(msg, msg_n, "the request body must be a JSON object");
        return 400;
    }
    struct req *r = req_new(s, kind);
    if (!r) {
        cJSON_Delete(o);
        snprintf(msg, msg_n, "out of memory");
        return 500;
    }
    struct perr e = {{0}, NULL};
    int status = build_request(s, o, r, &e, code);
    cJSON_Delete(o);
    if (status != 200) {
        req_release(r);
        snprintf(msg, msg_n, "%s", e.msg);
        *param = e.param;
        return status;
    }
    *out = r;
    return 200;
}

static enum MHD_Result generate(struct conn *c, struct MHD_Connection *mc, enum req_kind kind) {
    struct dsi_server *s = c->s;
    struct req *r;
    char emsg[256];
    const char *param, *code;
    int status = srv_request_from_body(s, c->body.p, c->body.n, kind, &r, emsg, sizeof emsg, &param, &code);
    if (status != 200) return respond_error(c, mc, status, emsg, param, code);
    if (!sched_submit(s, r)) {
        req_release(r);
        bool draining;
        pthread_mutex_lock(&s->mu);
        draining = s->draining;
        pthread_mutex_unlock(&s->mu);
        return respond_error(c, mc, 503,
                             draining ? "the server is shutting down"
                                      : "the server is busy (request queue full); retry later",
                             NULL, draining ? "shutting_down" : "queue_full");
    }
    c->r = r; /* the connection's reference, dropped when the connection's request ends */
    int fd = conn_fd(mc);
    if (r->stream) {
        struct stream *st = calloc(1, sizeof *st);
        if (!st) return respond_error(c, mc, 500, "out of memory", NULL, NULL);
        st->s = s;
        st->r = r;
        st->fd = fd;
        pthread_mutex_lock(&r->mu);
        r->refs++;
        pthread_mutex_unlock(&r->mu);
        struct MHD_Response *res =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st, stream_free);
        if (!res) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(res, "Content-Type", "text/event-stream");
        MHD_add_response_header(res, "Cache-Control", "no-cache");
        enum MHD_Result ok = MHD_queue_response(mc, 200, res);
        MHD_destroy_response(res);
        c->status = 200;
        c->answered = true;
        return ok;
    }
    pthread_mutex_lock(&r->mu);
    bool ok = wait_output(s, r, fd, false);
    if (!ok) {
        pthread_mutex_unlock(&r->mu);
        return MHD_NO; /* the client is gone: close */
    }
    struct dsi_strbuf b = {0};
    int err = r->err_status;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", r->err_msg);
    if (!err) final_json(r, &b);
    pthread_mutex_unlock(&r->mu);
    enum MHD_Result res = err ? respond_error(c, mc, err, msg, NULL, NULL) : respond_json(c, mc, 200, &b);
    dsi_strbuf_free(&b);
    return res;
}

/* ---- routing ---------------------------------------------------------------------------------- */

static bool authorized(struct dsi_server *s, struct MHD_Connection *mc) {
    if (!s->p.api_key) return true;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    size_t a = strlen(h), b = strlen(s->p.api_key);
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a; i++) diff |= (unsigned)(h[i] ^ s->p.api_key[i % (b ? b : 1)]);
    return diff == 0;
}

static const char *route(const char *url) {
    static const char *const known[] = {EP_CHAT, EP_COMPL, "/v1/models", "/health", "/metrics",
                                        "/admin/reload"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(url, known[i])) return known[i];
    return "other";
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    (void)version;
    struct dsi_server *s = cls;
    struct conn *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        c->s = s;
        c->endpoint = route(url);
        *con_cls = c;
        pthread_mutex_lock(&s->mu);
        s->n_conns++;
        pthread_mutex_unlock(&s->mu);
        if (strcmp(c->endpoint, "/health") && !authorized(s, mc))
            return respond_error(c, mc, 401, "missing or wrong API key (Authorization: Bearer KEY)",
                                 NULL, "invalid_api_key");
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->p.max_body) {
            c->too_big = true;
            return respond_error(c, mc, 413, "the request body is larger than the server accepts",
                                 NULL, "request_too_large");
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!c->answered) {
            if (c->body.n + *upload_size > s->p.max_body) c->too_big = true;
            else dsi_strbuf_put(&c->body, upload, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (c->answered) return MHD_YES;
    if (c->too_big)
        return respond_error(c, mc, 413, "the request body is larger than the server accepts", NULL,
                             "request_too_large");
    if (c->body.failed) return respond_error(c, mc, 500, "out of memory", NULL, NULL);
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    const char *ep = c->endpoint;
    if (!strcmp(ep, "other")) return respond_error(c, mc, 404, "no such route", NULL, "not_found");
    bool want_post = !strcmp(ep, EP_CHAT) || !strcmp(ep, EP_COMPL) || !strcmp(ep, "/admin/reload");
    if ((want_post && !post) || (!want_post && !get))
        return respond_error(c, mc, 405, "method not allowed on this route", NULL, NULL);
    pthread_mutex_lock(&s->mu);
    bool draining = s->draining;
    pthread_mutex_unlock(&s->mu);
    if (!strcmp(ep, "/health")) {
        const char *b = draining ? "{\"status\":\"shutting down\"}" : "{\"status\":\"ok\"}";
        return respond(c, mc, draining ? 503 : 200, "application/json", b, strlen(b), 0);
    }
    if (!strcmp(ep, "/metrics")) {
        struct dsi_strbuf b = {0};
        metrics_render(s, &b);
        enum MHD_Result ok = b.failed ? MHD_NO
                                      : respond(c, mc, 200, "text/plain; version=0.0.4", b.p, b.n, 0);
        dsi_strbuf_free(&b);
        return ok;
    }
    if (!strcmp(ep, "/v1/models")) {
        struct dsi_strbuf b = {0};
        pthread_mutex_lock(&s->mu);
        dsi_strbuf_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
        sb_json_str(&b, s->model->id, strlen(s->model->id));
        pthread_mutex_unlock(&s->mu);
        dsi_strbuf_puts(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"dsinfer\"}]}");
        enum MHD_Result ok = respond_json(c, mc, 200, &b);
        dsi_strbuf_free(&b);
        return ok;
    }
    if (!strcmp(ep, "/admin/reload")) {
        dsi_server_reload(s);
        const char *b = "{\"status\":\"reloading\"}";
        return respond(c, mc, 202, "application/json", b, strlen(b), 0);
    }
    if (draining)
        return respond_error(c, mc, 503, "the server is shutting down", NULL, "shutting_down");
    return generate(c, mc, !strcmp(ep, EP_CHAT) ? REQ_CHAT : REQ_COMPLETION);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)mc;
    struct dsi_server *s = cls;
    struct conn *c = *con_cls;
    if (!c) return;
    int status = c->status ? c->status : 500;
    if (c->r) {
        pthread_mutex_lock(&c->r->mu);
        bool finished = c->r->done;
        pthread_mutex_unlock(&c->r->mu);
        if (!finished || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
            sched_cancel(s, c->r);
            status = 499; /* the client closed the connection first */
        }
        req_release(c->r);
    }
    metrics_request(&s->met, c->endpoint, status);
    DSI_LOG_INF("serve: %s %d", c->endpoint, status);
    dsi_strbuf_free(&c->body);
    free(c);
    *con_cls = NULL;
    pthread_mutex_lock(&s->mu);
    s->n_conns--;
    pthread_cond_broadcast(&s->cv_idle);
    pthread_mutex_unlock(&s->mu);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n') buf[--n] = '\0';
    DSI_LOG_INF("serve: http: %s", buf);
}

enum dsi_status http_start(struct dsi_server *s) {
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", s->p.port);
    int gai = getaddrinfo(s->p.host, port, &hints, &ai);
    if (gai || !ai) {
        DSI_LOG_ERR("serve: cannot resolve the address '%s': %s", s->p.host, gai_strerror(gai));
        return DSI_ERR_ARG;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(flags, (uint16_t)s->p.port, NULL, NULL, on_request, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                                 MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
                                 MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1u << 20), MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->daemon) {
        DSI_LOG_ERR("serve: cannot listen on %s:%d (address in use, or not allowed)", s->p.host,
                    s->p.port);
        return DSI_ERR_IO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->p.port;
    return DSI_OK;
}

void http_quiesce(struct dsi_server *s) {
    if (!s->daemon) return;
    /* the listening socket is closed after MHD_stop_daemon, as MHD asks */
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    s->listen_fd = fd == MHD_INVALID_SOCKET ? -1 : fd;
}

void http_stop(struct dsi_server *s) {
    if (s->daemon) MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    if (s->listen_fd >= 0) close(s->listen_fd);
    s->listen_fd = -1;
}
