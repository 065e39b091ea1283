/* The scheduler: one thread owns the context (one KV cache per slot), admits queued
 * requests into free slots (longest cached prefix first), and loops:
 *   1. drop the slots of requests whose client went away;
 *   2. one prompt pass: up to n_batch prompt tokens of admitted requests, several requests
 *      sharing the pass;
 *   3. one decode pass: the next token of every generating slot, all in one batch;
 *   4. sample, detokenize, split reasoning from content, and hand the text to the requests.
 * A reloaded model replaces the current one once no slot is busy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "src/chat.h"
#include "src/server/server_impl.h"
#include "src/tokenizer.h"
#include "src/vision/vl2.h"

/* ---- models ------------------------------------------------------------------------------ */

enum dsi_status srv_model_load(struct dsi_server *s, struct srv_model **out) {
    *out = NULL;
    struct srv_model *sm = calloc(1, sizeof *sm);
    if (!sm) return DSI_ERR_NOMEM;
    struct dsi_model_params mp = dsi_model_default_params();
    mp.load = s->p.load;
    mp.no_repack = s->p.no_repack;
    mp.n_gpu_layers = s->p.n_gpu_layers;
    mp.gpu_device = s->p.gpu_device;
    mp.vram_budget = s->p.vram_budget;
    mp.cpu_moe = s->p.cpu_moe;
    mp.gpu_ctx = s->p.n_ctx;
    mp.gpu_seqs = s->p.n_parallel;
    enum dsi_status st = dsi_model_load_ex(s->p.model_path, &mp, &sm->m);
    if (st) {
        free(sm);
        return st;
    }
    /* a model without a chat template still serves completions */
    if (s->p.chat_template || dsi_model_chat_template(sm->m)) {
        st = dsi_chat_template_for(sm->m, s->p.chat_template, &sm->tmpl, &sm->tmpl_owned);
        if (st) {
            dsi_model_free(sm->m);
            free(sm);
            return st;
        }
    }
    if (dsi_model_vl2(sm->m) && s->p.chat_template)
        DSI_LOG_WRN("serve: %s has a vision encoder (DeepSeek-VL2): chats use its own "
                    "conversation format, not --chat-template", s->p.model_path);
    const char *id = s->p.model_alias ? s->p.model_alias : dsi_model_name(sm->m);
    sm->id = strdup(id ? id : "dsinfer");
    pthread_mutex_lock(&s->mu);
    sm->gen = ++s->next_gen;
    pthread_mutex_unlock(&s->mu);
    if (!sm->id) {
        srv_model_free(sm);
        return DSI_ERR_NOMEM;
    }
    *out = sm;
    return DSI_OK;
}

void srv_model_free(struct srv_model *sm) {
    if (!sm) return;
    dsi_model_free(sm->m);
    free(sm->tmpl_owned);
    free(sm->id);
    free(sm);
}

enum dsi_status srv_context_for(struct dsi_server *s, const struct dsi_model *m,
                                struct dsi_context **out) {
    struct dsi_context_params cp = dsi_context_default_params();
    cp.n_ctx = s->p.n_ctx;
    cp.n_batch = s->p.n_batch;
    cp.n_threads = s->p.n_threads;
    cp.n_seq = s->n_slots;
    cp.batch_invariant = true;
    return dsi_context_init(m, &cp, out);
}

/* ---- requests ------------------------------------------------------------------------------ */

enum dsi_status srv_tokenize(const struct dsi_model *m, enum req_kind kind, const char *text,
                             int32_t **out, int64_t *n_out) {
    const struct dsi_tokenizer *tok = dsi_model_tokenizer(m);
    int32_t *ids = NULL, bos = dsi_tokenizer_bos(tok);
    size_t n = 0;
    *out = NULL;
    *n_out = 0;
    enum dsi_status st = dsi_tokenizer_encode(tok, text, strlen(text), DSI_TOK_PARSE_SPECIAL, &ids, &n);
    if (st) return st;
    bool add = kind == REQ_COMPLETION && dsi_tokenizer_add_bos(tok) && bos >= 0 && (n == 0 || ids[0] != bos);
    int32_t *p = malloc((n + 1) * sizeof *p);
    if (!p) {
        free(ids);
        return DSI_ERR_NOMEM;
    }
    int64_t k = 0;
    if (add) p[k++] = bos;
    if (n) memcpy(p + k, ids, n * sizeof *ids);
    free(ids);
    *out = p;
    *n_out = k + (int64_t)n;
    return DSI_OK;
}

void req_release(struct req *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left) return;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->model_id);
    free(r->prompt_text);
    free(r->prompt);
    free(r->rows);
    free(r->embd);
    dsi_strbuf_free(&r->sse);
    dsi_strbuf_free(&r->content);
    dsi_strbuf_free(&r->reasoning);
    dsi_strbuf_free(&r->lp_json);
    dsi_strbuf_free(&r->lp_tokens);
    dsi_strbuf_free(&r->lp_values);
    dsi_strbuf_free(&r->lp_top);
    free(r);
}

bool sched_submit(struct dsi_server *s, struct req *r) {
    pthread_mutex_lock(&s->mu);
    /* the queue holds up to max_queue requests beyond the slots that are free */
    if (s->n_queued >= s->p.max_queue + (s->n_slots - s->n_active) || s->draining) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    pthread_mutex_lock(&r->mu);
    r->refs++;
    pthread_mutex_unlock(&r->mu);
    r->next = NULL;
    if (s->q_tail) s->q_tail->next = r;
    else s->q_head = r;
    s->q_tail = r;
    s->n_queued++;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    return true;
}

void sched_cancel(struct dsi_server *s, struct req *r) {
    bool dequeued = false;
    pthread_mutex_lock(&s->mu);
    for (struct req **pp = &s->q_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp != r) continue;
        *pp = r->next;
        if (s->q_tail == r) s->q_tail = prev;
        s->n_queued--;
        dequeued = true;
        break;
    }
    pthread_mutex_lock(&r->mu);
    r->cancelled = true;
    pthread_mutex_unlock(&r->mu);
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    if (dequeued) req_release(r);
}

/* ---- output ------------------------------------------------------------------------------- */

/* Bytes of token id (control tokens rendered), at most 256. */
static int token_text(const struct dsi_tokenizer *tok, int32_t id, char buf[256]) {
    int k = dsi_tokenizer_token_bytes(tok, id, DSI_TOK_RENDER_SPECIAL, buf, 256);
    return k < 0 ? 0 : k > 256 ? 256 : k;
}

/* the token as a JSON string */
static void token_str(struct dsi_strbuf *b, const struct dsi_tokenizer *tok, int32_t id) {
    char buf[256];
    sb_json_str(b, buf, (size_t)token_text(tok, id, buf));
}

/* "token":"...","bytes":[...] of token id */
static void token_fields(struct dsi_strbuf *b, const struct dsi_tokenizer *tok, int32_t id) {
    char buf[256];
    int k = token_text(tok, id, buf);
    dsi_strbuf_puts(b, "\"token\":");
    sb_json_str(b, buf, (size_t)k);
    dsi_strbuf_puts(b, ",\"bytes\":[");
    for (int i = 0; i < k; i++) dsi_strbuf_printf(b, i ? ",%u" : "%u", (unsigned char)buf[i]);
    dsi_strbuf_puts(b, "]");
}

/* Log-probabilities of the chosen token and of the n most likely ones, from raw logits
 * (the model's distribution, before penalties and temperature, as OpenAI reports them). */
#define MAX_TOP 20
static float logprobs(const float *l, int64_t V, int32_t chosen, int n, int32_t *top, float *top_lp) {
    float mx = l[0];
    for (int64_t i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < V; i++) sum += exp((double)(l[i] - mx));
    float lse = mx + (float)log(sum);
    int k = 0;
    for (int64_t i = 0; i < V && n > 0; i++) {
        if (k < n || l[i] > l[top[k - 1]]) {
            int j = k < n ? k++ : n - 1;
            while (j > 0 && l[top[j - 1]] < l[i]) {
                top[j] = top[j - 1];
                j--;
            }
            top[j] = (int32_t)i;
        }
    }
    for (int j = 0; j < k; j++) top_lp[j] = l[top[j]] - lse;
    return l[chosen] - lse;
}

static void usage_json(struct dsi_strbuf *b, const struct req *r) {
    dsi_strbuf_printf(b,
              "{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld,"
              "\"prompt_tokens_details\":{\"cached_tokens\":%lld}}",
              (long long)r->n_prompt, (long long)r->n_gen, (long long)(r->n_prompt + r->n_gen),
              (long long)r->n_cached);
}

/* One streamed event: delta text (reasoning, content), logprobs entry, finish reason. */
static void sse_chunk(struct req *r, const char *reasoning, size_t nr, const char *content,
                      size_t nc, const char *lp, const char *finish) {
    struct dsi_strbuf *b = &r->sse;
    bool chat = r->kind == REQ_CHAT;
    dsi_strbuf_printf(b, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", r->id,
              chat ? "chat.completion.chunk" : "text_completion", r->created);
    sb_json_str(b, r->model_id, strlen(r->model_id));
    dsi_strbuf_puts(b, ",\"choices\":[{\"index\":0,");
    if (chat) {
        dsi_strbuf_puts(b, "\"delta\":{");
        bool comma = false;
        if (!r->sent_role) {
            dsi_strbuf_puts(b, "\"role\":\"assistant\"");
            r->sent_role = comma = true;
        }
        if (nr) {
            dsi_strbuf_puts(b, comma ? ",\"reasoning_content\":" : "\"reasoning_content\":");
            sb_json_str(b, reasoning, nr);
            comma = true;
        }
        if (nc || (!nr && !finish && comma)) {
            dsi_strbuf_puts(b, comma ? ",\"content\":" : "\"content\":");
            sb_json_str(b, content, nc);
        }
        dsi_strbuf_puts(b, "},");
        if (lp) dsi_strbuf_printf(b, "\"logprobs\":{\"content\":[%s]},", lp);
        else dsi_strbuf_puts(b, "\"logprobs\":null,");
    } else {
        dsi_strbuf_puts(b, "\"text\":");
        sb_json_str(b, content, nc);
        dsi_strbuf_puts(b, ",");
        if (lp) dsi_strbuf_printf(b, "\"logprobs\":%s,", lp);
        else dsi_strbuf_puts(b, "\"logprobs\":null,");
    }
    if (finish) dsi_strbuf_printf(b, "\"finish_reason\":\"%s\"}]}\n\n", finish);
    else dsi_strbuf_puts(b, "\"finish_reason\":null}]}\n\n");
}

static void sse_end(struct req *r) {
    if (r->err_status) {
        dsi_strbuf_printf(&r->sse, "data: {\"error\":{\"message\":");
        sb_json_str(&r->sse, r->err_msg, strlen(r->err_msg));
        dsi_strbuf_printf(&r->sse, ",\"type\":\"server_error\",\"param\":null,\"code\":%d}}\n\n",
                  r->err_status);
    } else if (r->include_usage) {
        dsi_strbuf_printf(&r->sse, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", r->id,
                  r->kind == REQ_CHAT ? "chat.completion.chunk" : "text_completion", r->created);
        sb_json_str(&r->sse, r->model_id, strlen(r->model_id));
        dsi_strbuf_puts(&r->sse, ",\"choices\":[],\"usage\":");
        usage_json(&r->sse, r);
        dsi_strbuf_puts(&r->sse, "}\n\n");
    }
    dsi_strbuf_puts(&r->sse, "data: [DONE]\n\n");
}

/* Finish a request with an error (the scheduler found it: bad prompt after a reload, a
 * failed pass, shutdown). */
static void req_fail(struct req *r, int status, const char *msg) {
    pthread_mutex_lock(&r->mu);
    if (!r->done) {
        r->err_status = status;
        snprintf(r->err_msg, sizeof r->err_msg, "%s", msg);
        r->done = true;
        if (r->stream) sse_end(r);
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
}

/* ---- slots ---------------------------------------------------------------------------------- */

static void slot_release(struct dsi_server *s, struct slot *sl) {
    struct req *r = sl->r;
    dsi_textstream_free(&sl->ts);
    pthread_mutex_lock(&s->mu);
    sl->r = NULL;
    sl->state = SLOT_IDLE;
    sl->last_used = ++s->use_clock;
    s->n_active--;
    pthread_cond_broadcast(&s->cv_idle);
    pthread_mutex_unlock(&s->mu);
    req_release(r);
}

/* Sample the next token of each slot of a pass (each slot has its own sampler: in parallel,
 * while the text work below stays on the scheduler thread). */
static void sample_slots(struct dsi_server *s, const int *who, int n, int32_t *tok) {
    int nt = s->p.n_threads > 0 ? s->p.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (n > 1)
    for (int j = 0; j < n; j++) {
        struct slot *sl = &s->slots[who[j]];
        tok[j] = dsi_sampler_sample(sl->smp, dsi_context_logits(s->ctx, j));
        dsi_sampler_accept(sl->smp, tok[j]);
    }
}

/* Token t, sampled for slot sl from logits: logprobs, text, stop conditions, output. */
static void on_token(struct dsi_server *s, struct slot *sl, const float *logits, int32_t t) {
    struct req *r = sl->r;
    const struct dsi_model *m = s->model->m;
    const struct dsi_tokenizer *tok = dsi_model_tokenizer(m);
    int64_t V = dsi_model_n_vocab(m);
    double now = dsi_time_now();

    struct dsi_strbuf lp = {0};
    if (r->logprobs >= 0) {
        int32_t top[MAX_TOP];
        float top_lp[MAX_TOP];
        int n = r->logprobs < MAX_TOP ? r->logprobs : MAX_TOP;
        float lpc = logprobs(logits, V, t, n, top, top_lp);
        if (r->kind == REQ_CHAT) {
            dsi_strbuf_puts(&lp, "{");
            token_fields(&lp, tok, t);
            dsi_strbuf_printf(&lp, ",\"logprob\":%.6g,\"top_logprobs\":[", lpc);
            for (int j = 0; j < n; j++) {
                dsi_strbuf_puts(&lp, j ? ",{" : "{");
                token_fields(&lp, tok, top[j]);
                dsi_strbuf_printf(&lp, ",\"logprob\":%.6g}", top_lp[j]);
            }
            dsi_strbuf_puts(&lp, "]}");
        } else {
            struct dsi_strbuf tops = {0};
            dsi_strbuf_puts(&tops, "{");
            for (int j = 0; j < n; j++) {
                if (j) dsi_strbuf_puts(&tops, ",");
                token_str(&tops, tok, top[j]);
                dsi_strbuf_printf(&tops, ":%.6g", top_lp[j]);
            }
            dsi_strbuf_puts(&tops, "}");
            struct dsi_strbuf ts = {0};
            token_str(&ts, tok, t);
            if (r->stream) {
                dsi_strbuf_printf(&lp, "{\"tokens\":[%s],\"token_logprobs\":[%.6g],\"top_logprobs\":[%s]}",
                          ts.p ? ts.p : "\"\"", lpc, tops.p ? tops.p : "{}");
            } else {
                pthread_mutex_lock(&r->mu);
                if (r->lp_tokens.n) dsi_strbuf_puts(&r->lp_tokens, ","), dsi_strbuf_puts(&r->lp_values, ","),
                    dsi_strbuf_puts(&r->lp_top, ",");
                dsi_strbuf_puts(&r->lp_tokens, ts.p ? ts.p : "\"\"");
                dsi_strbuf_printf(&r->lp_values, "%.6g", lpc);
                dsi_strbuf_puts(&r->lp_top, tops.p ? tops.p : "{}");
                pthread_mutex_unlock(&r->mu);
            }
            dsi_strbuf_free(&ts);
            dsi_strbuf_free(&tops);
        }
    }

    struct dsi_strbuf rs = {0}, cs = {0};
    const char *finish = NULL;
    if (!r->ignore_eos && dsi_tokenizer_is_eog(tok, t)) {
        finish = "stop";
    } else {
        const char *piece;
        size_t len;
        if (dsi_textstream_put_token(&sl->ts, tok, t, 0, &piece, &len) == DSI_OK)
            think_feed(&sl->th, piece, len, &rs, &cs);
        else
            rs.failed = true; /* out of memory: the request fails below */
        if (sl->ts.stopped) finish = "stop";
    }
    /* only this thread writes n_gen: read it without the lock, publish it with the output */
    int64_t n_gen = r->n_gen + 1;
    if (!finish && r->max_tokens >= 0 && n_gen >= r->max_tokens) finish = "length";
    if (!finish && sl->n_cache >= dsi_context_n_ctx(s->ctx)) finish = "length";
    if (finish) {
        const char *rest;
        size_t len;
        dsi_textstream_flush(&sl->ts, &rest, &len);
        think_feed(&sl->th, rest, len, &rs, &cs);
        think_flush(&sl->th, &rs, &cs);
    }

    pthread_mutex_lock(&r->mu);
    r->n_gen = n_gen;
    bool first = n_gen == 1;
    double gap = now - r->t_last;
    if (first) r->t_first = now;
    r->t_last = now;
    if (r->stream) {
        if (rs.n || cs.n || lp.n || !r->sent_role)
            sse_chunk(r, rs.p, rs.n, cs.p, cs.n, lp.n ? lp.p : NULL, NULL);
        if (finish) {
            sse_chunk(r, NULL, 0, NULL, 0, NULL, finish);
            sse_end(r);
        }
    } else {
        dsi_strbuf_put(&r->reasoning, rs.p, rs.n);
        dsi_strbuf_put(&r->content, cs.p, cs.n);
        if (lp.n && r->kind == REQ_CHAT) {
            if (r->lp_json.n) dsi_strbuf_puts(&r->lp_json, ",");
            dsi_strbuf_put(&r->lp_json, lp.p, lp.n);
        }
    }
    if (sl->th.seen) r->think_seen = true;
    bool failed = r->sse.failed || r->content.failed || r->reasoning.failed || r->lp_json.failed ||
                  rs.failed || cs.failed || lp.failed;
    if (finish && !failed) { /* a failed request ends through req_fail below */
        r->finish = finish;
        r->done = true;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    dsi_strbuf_free(&lp);
    dsi_strbuf_free(&rs);
    dsi_strbuf_free(&cs);

    metrics_add(&s->met, &s->met.gen_tokens, 1);
    if (first) metrics_observe(&s->met, &s->met.ttft, now - r->t_arrival);
    else metrics_observe(&s->met, &s->met.tpot, gap);
    if (failed) {
        req_fail(r, 500, "out of memory while producing the response");
        slot_release(s, sl);
    } else if (finish) {
        metrics_add(&s->met, &s->met.prompt_tokens, (uint64_t)r->n_prompt);
        metrics_add(&s->met, &s->met.prompt_cached, (uint64_t)r->n_cached);
        metrics_observe(&s->met, &s->met.e2e, now - r->t_arrival);
        slot_release(s, sl);
    } else {
        sl->next = t;
        sl->state = SLOT_GEN;
    }
}

/* Tokens the prompt shares with the slot's cache. Image tokens all have the same id: one is
 * shared only when both sides have an image token there with the same embedding (the model
 * remembers recent pictures, so a client resending a conversation gets the same rows), never
 * across different pictures nor with a plain <image> token. */
static int64_t common_prefix(const struct slot *sl, const struct req *r, int64_t n_embd) {
    int64_t lim = sl->n_cache < r->n_prompt ? sl->n_cache : r->n_prompt;
    if (lim > sl->n_plain) lim = sl->n_plain;
    int64_t n = 0, k = 0;
    size_t row = (size_t)n_embd * sizeof(float);
    while (n < lim && sl->cache[n] == r->prompt[n]) {
        bool si = k < sl->n_img && sl->img_pos[k] == n, ri = r->rows && r->rows[n];
        if (si != ri || (si && memcmp(sl->img + k * n_embd, r->rows[n], row) != 0)) break;
        k += si;
        n++;
    }
    return n;
}

/* Keep the image rows of the slot's new prompt (its cache will hold them). Without memory for
 * them, nothing from the first image token on may be reused later. */
static void slot_keep_images(struct slot *sl, const struct req *r, int64_t n_embd) {
    int64_t k = 0;
    for (int64_t t = 0; r->rows && t < r->n_prompt; t++) k += r->rows[t] != NULL;
    sl->n_img = 0;
    sl->n_plain = INT64_MAX;
    if (k > sl->img_cap) {
        float *img = realloc(sl->img, (size_t)(k * n_embd) * sizeof(float));
        if (img) sl->img = img;
        int64_t *pos = img ? realloc(sl->img_pos, (size_t)k * sizeof *pos) : NULL;
        if (pos) sl->img_pos = pos;
        if (!img || !pos) {
            sl->n_plain = r->img_first;
            return;
        }
        sl->img_cap = k;
    }
    for (int64_t t = 0; r->rows && t < r->n_prompt; t++)
        if (r->rows[t]) {
            memcpy(sl->img + sl->n_img * n_embd, r->rows[t], (size_t)n_embd * sizeof(float));
            sl->img_pos[sl->n_img++] = t;
        }
}

/* Re-tokenize a request queued before a model reload (under s->mu). False: it was failed. */
static bool retokenize(struct dsi_server *s, struct req *r) {
    const struct dsi_model *m = s->model->m;
    if (r->rows) {
        /* its pictures were encoded by the old model's vision tower */
        req_fail(r, 503, "the model was reloaded while the request waited; send it again");
        return false;
    }
    if (r->prompt_text) {
        int32_t *ids = NULL;
        int64_t n = 0;
        if (srv_tokenize(m, r->kind, r->prompt_text, &ids, &n) || n == 0) {
            free(ids);
            req_fail(r, 400, "the prompt cannot be tokenized by the reloaded model");
            return false;
        }
        free(r->prompt);
        r->prompt = ids;
        r->n_prompt = n;
    }
    for (int64_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= dsi_model_n_vocab(m)) {
            req_fail(r, 400, "a prompt token id is outside the reloaded model's vocabulary");
            return false;
        }
    if (r->n_prompt >= dsi_context_n_ctx(s->ctx)) {
        req_fail(r, 400, "the prompt does not fit the reloaded model's context");
        return false;
    }
    r->model_gen = s->model->gen;
    return true;
}

/* Give queued requests free slots (under s->mu). */
static void admit(struct dsi_server *s) {
    while (s->q_head && s->n_active < s->n_slots) {
        struct req *r = s->q_head;
        s->q_head = r->next;
        if (!s->q_head) s->q_tail = NULL;
        s->n_queued--;
        pthread_mutex_lock(&r->mu);
        bool cancelled = r->cancelled;
        pthread_mutex_unlock(&r->mu);
        if (cancelled || (r->model_gen != s->model->gen && !retokenize(s, r))) {
            pthread_mutex_unlock(&s->mu);
            req_release(r);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        /* the idle slot with the longest shared prefix; the least recently used on a tie */
        int best = -1;
        int64_t best_n = -1;
        for (int i = 0; i < s->n_slots; i++) {
            struct slot *sl = &s->slots[i];
            if (sl->r) continue;
            int64_t n = common_prefix(sl, r, dsi_model_n_embd(s->model->m));
            if (n > best_n || (n == best_n && sl->last_used < s->slots[best].last_used))
                best = i, best_n = n;
        }
        struct slot *sl = &s->slots[best];
        if (best_n >= r->n_prompt) best_n = r->n_prompt - 1; /* the last token gives the logits */
        sl->r = r;
        sl->state = SLOT_PREFILL;
        sl->n_cache = best_n;
        sl->n_done = best_n;
        slot_keep_images(sl, r, dsi_model_n_embd(s->model->m));
        r->n_cached = best_n;
        s->n_active++;
        dsi_sampler_free(sl->smp);
        sl->smp = dsi_sampler_init(&r->sp, (int32_t)dsi_model_n_vocab(s->model->m));
        dsi_textstream_init(&sl->ts, (const char *const *)r->stop, r->n_stop);
        think_init(&sl->th, r->think);
        if (!sl->smp) {
            req_fail(r, 500, "out of memory");
            pthread_mutex_unlock(&s->mu);
            slot_release(s, sl);
            pthread_mutex_lock(&s->mu);
        }
    }
}

/* Swap in a reloaded model once no slot is busy (under s->mu). */
static void maybe_swap(struct dsi_server *s) {
    if (!s->pending || s->n_active) return;
    struct srv_model *nm = s->pending;
    s->pending = NULL;
    pthread_mutex_unlock(&s->mu);
    struct dsi_context *nc = NULL;
    enum dsi_status st = srv_context_for(s, nm->m, &nc);
    pthread_mutex_lock(&s->mu);
    if (st) {
        DSI_LOG_ERR("serve: reload: cannot create a context for the new model (%s); the old model "
                    "keeps serving", dsi_status_str(st));
        srv_model_free(nm);
        metrics_add(&s->met, &s->met.reload_failed, 1);
        return;
    }
    struct srv_model *old = s->model;
    struct dsi_context *oc = s->ctx;
    s->model = nm;
    s->ctx = nc;
    for (int i = 0; i < s->n_slots; i++) s->slots[i].n_cache = 0;
    while (old->refs) pthread_cond_wait(&s->cv_idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
    dsi_context_free(oc);
    srv_model_free(old);
    pthread_mutex_lock(&s->mu);
    metrics_add(&s->met, &s->met.reload_ok, 1);
    DSI_LOG_INF("serve: reloaded %s (%s)", s->p.model_path, nm->id);
}

static void fail_active(struct dsi_server *s, int status, const char *msg) {
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].r) {
            req_fail(s->slots[i].r, status, msg);
            slot_release(s, &s->slots[i]);
        }
}

/* While some slots are generating, a prompt pass takes at most this many tokens, so that a
 * long prompt delays their next tokens by a short pass rather than a whole -b batch. */
#define PROMPT_CHUNK_BUSY 128

static void prompt_pass(struct dsi_server *s, struct dsi_seq_run *runs, int *who) {
    int nr = 0;
    int64_t budget = s->p.n_batch;
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].r && s->slots[i].state == SLOT_GEN && budget > PROMPT_CHUNK_BUSY)
            budget = PROMPT_CHUNK_BUSY;
    for (int i = 0; i < s->n_slots && budget > 0; i++) {
        struct slot *sl = &s->slots[i];
        if (!sl->r || sl->state != SLOT_PREFILL) continue;
        int64_t rem = sl->r->n_prompt - sl->n_done, take = rem < budget ? rem : budget;
        const float *const *embd = sl->r->rows ? sl->r->rows + sl->n_done : NULL;
        runs[nr] = (struct dsi_seq_run){i, sl->n_done, sl->r->prompt + sl->n_done, take, take == rem, embd};
        who[nr++] = i;
        budget -= take;
    }
    if (!nr) return;
    enum dsi_status st = dsi_context_decode_runs(s->ctx, runs, nr, true);
    if (st) {
        DSI_LOG_ERR("serve: prompt pass failed: %s", dsi_status_str(st));
        fail_active(s, 500, "the prompt could not be evaluated");
        return;
    }
    int k = 0;
    for (int j = 0; j < nr; j++) {
        struct slot *sl = &s->slots[who[j]];
        memcpy(sl->cache + runs[j].pos, runs[j].tokens, (size_t)runs[j].n * sizeof(int32_t));
        pthread_mutex_lock(&s->mu);
        sl->n_done += runs[j].n;
        sl->n_cache = sl->n_done;
        pthread_mutex_unlock(&s->mu);
        if (runs[j].logits) {
            const float *l = dsi_context_logits(s->ctx, k++);
            int32_t t = dsi_sampler_sample(sl->smp, l);
            dsi_sampler_accept(sl->smp, t);
            on_token(s, sl, l, t);
        }
    }
}

static void decode_pass(struct dsi_server *s, struct dsi_seq_run *runs, int *who) {
    int nr = 0;
    for (int i = 0; i < s->n_slots; i++) {
        struct slot *sl = &s->slots[i];
        if (!sl->r || sl->state != SLOT_GEN) continue;
        runs[nr] = (struct dsi_seq_run){i, sl->n_cache, &sl->next, 1, true, NULL};
        who[nr++] = i;
    }
    if (!nr) return;
    enum dsi_status st = dsi_context_decode_runs(s->ctx, runs, nr, false);
    if (st) {
        DSI_LOG_ERR("serve: decode pass failed: %s", dsi_status_str(st));
        fail_active(s, 500, "decoding failed");
        return;
    }
    metrics_add(&s->met, &s->met.batches, 1);
    metrics_add(&s->met, &s->met.batch_tokens, (uint64_t)nr);
    sample_slots(s, who, nr, s->sampled);
    for (int j = 0; j < nr; j++) {
        struct slot *sl = &s->slots[who[j]];
        sl->cache[sl->n_cache] = sl->next;
        pthread_mutex_lock(&s->mu);
        sl->n_cache++;
        pthread_mutex_unlock(&s->mu);
        on_token(s, sl, dsi_context_logits(s->ctx, j), s->sampled[j]);
    }
}

void *sched_main(void *arg) {
    struct dsi_server *s = arg;
    struct dsi_seq_run *runs = calloc((size_t)s->n_slots, sizeof *runs);
    int *who = calloc((size_t)s->n_slots, sizeof *who);
    s->sampled = calloc((size_t)s->n_slots, sizeof *s->sampled);
    pthread_mutex_lock(&s->mu);
    while (runs && who && s->sampled) {
        if (s->cancel_all) {
            while (s->q_head) {
                struct req *r = s->q_head;
                s->q_head = r->next;
                s->n_queued--;
                req_fail(r, 503, "the server is shutting down");
                pthread_mutex_unlock(&s->mu);
                req_release(r);
                pthread_mutex_lock(&s->mu);
            }
            s->q_tail = NULL;
            pthread_mutex_unlock(&s->mu);
            fail_active(s, 503, "the server is shutting down");
            pthread_mutex_lock(&s->mu);
        }
        if (s->quit) break;
        maybe_swap(s);
        if (!s->pending) admit(s);
        if (!s->n_active) {
            pthread_cond_broadcast(&s->cv_idle);
            pthread_cond_wait(&s->cv_work, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        /* clients gone: their slots are free at once */
        for (int i = 0; i < s->n_slots; i++) {
            struct slot *sl = &s->slots[i];
            if (!sl->r) continue;
            pthread_mutex_lock(&sl->r->mu);
            bool gone = sl->r->cancelled;
            pthread_mutex_unlock(&sl->r->mu);
            if (gone) slot_release(s, sl);
        }
        prompt_pass(s, runs, who);
        decode_pass(s, runs, who);
        pthread_mutex_lock(&s->mu);
    }
    if (!runs || !who || !s->sampled) DSI_LOG_ERR("serve: out of memory in the scheduler");
    pthread_mutex_unlock(&s->mu);
    free(runs);
    free(who);
    free(s->sampled);
    s->sampled = NULL;
    return NULL;
}
