/* Internals of the server (see server.h), shared by http.c (connections, routing, request
 * parsing, responses), sched.c (slots, queue, batched decoding), text.c (byte buffers, the
 * reasoning splitter, JSON helpers) and metrics.c. Locking: srv->mu guards the queue, the
 * slots' ownership, the model references and the flags; req->mu guards a request's output. */
#ifndef DSI_SERVER_IMPL_H
#define DSI_SERVER_IMPL_H

#include "core/strbuf.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "src/generate.h"
#include "src/model.h"
#include "src/sampler.h"
#include "src/server/server.h"

struct cJSON;

/* ---- byte buffers and text helpers (text.c) -------------------------------------------- */


/* Splits generated text into reasoning (<think> ... </think>) and content. mode: whether
 * the text starts inside a think section (the prompt opened it), may open one at its very
 * start (chat), or is content only (completions). Leading whitespace of each part is
 * dropped. Held-back bytes (a possible tag) come out on flush. */
enum think_mode { THINK_NONE, THINK_MAY_OPEN, THINK_OPEN };
struct think {
    int state; /* 0: start, may open; 1: reasoning; 2: content */
    bool skip_ws, seen;
    char hold[16];
    size_t n_hold;
};
void think_init(struct think *t, enum think_mode m);
void think_feed(struct think *t, const char *s, size_t n, struct dsi_strbuf *reasoning,
                struct dsi_strbuf *content);
void think_flush(struct think *t, struct dsi_strbuf *reasoning, struct dsi_strbuf *content);

/* s[n] as a JSON string value (quoted, escaped); invalid UTF-8 becomes U+FFFD. */
void sb_json_str(struct dsi_strbuf *b, const char *s, size_t n);
/* Whether s[n] is valid UTF-8. */
bool utf8_valid(const char *s, size_t n);

/* ---- metrics (metrics.c) --------------------------------------------------------------- */

#define HIST_BUCKETS 14
struct hist {
    uint64_t count[HIST_BUCKETS + 1]; /* last: +Inf */
    double sum;
    uint64_t n;
};
struct metrics {
    pthread_mutex_t mu;
    struct {
        const char *endpoint;
        int status;
        uint64_t n;
    } req[64];
    int n_req;
    uint64_t prompt_tokens, prompt_cached, gen_tokens, reload_ok, reload_failed, batches,
        batch_tokens;
    struct hist ttft, tpot, e2e;
};
void metrics_init(struct metrics *m);
void metrics_free(struct metrics *m);
void metrics_request(struct metrics *m, const char *endpoint, int status);
void metrics_observe(struct metrics *m, struct hist *h, double seconds);
void metrics_add(struct metrics *m, uint64_t *counter, uint64_t v);

/* ---- requests ---------------------------------------------------------------------------- */

enum req_kind { REQ_COMPLETION, REQ_CHAT };

struct req {
    /* set on the connection thread before queueing, read-only afterwards (except the prompt,
     * which the scheduler may re-tokenize after a model reload) */
    enum req_kind kind;
    bool stream, include_usage, ignore_eos;
    char id[48];
    long created;
    char *model_id;
    char *prompt_text;          /* rendered prompt (NULL when given as token ids or built by
                                 * dsi_vl2_prompt_chat) */
    int32_t *prompt;
    int64_t n_prompt;
    /* DeepSeek-VL2 pictures: rows[n_prompt] (rows[i] != NULL: the image-token embedding that
     * replaces prompt token i; NULL when the request has no picture), their storage, and the
     * position of the first image token (the prefix before it may reuse a slot's cache) */
    const float **rows;
    float *embd;
    int64_t img_first;
    unsigned model_gen;         /* the model generation that tokenized the prompt */
    struct dsi_sampler_params sp;
    int64_t max_tokens;         /* < 0: until the context is full */
    char **stop;
    int n_stop;
    int logprobs;               /* < 0: none; else how many alternatives per token */
    enum think_mode think;
    double t_arrival;

    /* shared state, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct dsi_strbuf sse;            /* stream: events not yet sent */
    struct dsi_strbuf content, reasoning; /* non-stream: the whole text */
    struct dsi_strbuf lp_json;        /* non-stream: logprobs entries, comma-separated */
    struct dsi_strbuf lp_tokens, lp_values, lp_top; /* completions' logprobs arrays (non-stream) */
    bool done, cancelled, sent_role, think_seen;
    const char *finish;         /* "stop" or "length" */
    int err_status;             /* an error found by the scheduler (e.g. prompt too long) */
    char err_msg[256];
    int64_t n_gen, n_cached;
    double t_first, t_last;
    int refs;
    struct req *next;           /* queue link (under srv->mu) */
};

void req_release(struct req *r);  /* drop a reference; the last one frees */

/* ---- DeepSeek-VL2 chat requests (vision.c) ------------------------------------------------ */

/* Most pictures in one request, the most bytes of one encoded picture (a data: URL's
 * payload), and the most pixels of a request's pictures together (each decoded picture is
 * also held to DSI_IMAGE_MAX_PIXELS). */
#define SRV_MAX_IMAGES 16
#define SRV_MAX_IMAGE_BYTES ((size_t)32 << 20)
#define SRV_MAX_IMAGE_PIXELS ((int64_t)64 << 20)

/* Decode standard base64 (RFC 4648 alphabet, '=' padding optional, no other characters)
 * into a malloc'd *out: DSI_ERR_FORMAT for a bad character or length, DSI_ERR_LIMIT when the
 * result would exceed max bytes, DSI_ERR_NOMEM. */
enum dsi_status srv_base64_decode(const char *s, size_t n, size_t max, uint8_t **out,
                                  size_t *n_out);

/* The messages of a chat request for a model with a vision encoder: OpenAI content (a
 * string, or text and image_url parts), each picture an "<image>" placeholder where its part
 * stands, built into r->prompt / r->rows / r->embd by dsi_vl2_prompt_chat. Returns 200, or
 * the HTTP status with msg (and *param) saying why. */
int srv_vl2_chat(struct dsi_server *s, const struct dsi_model *m, const struct cJSON *msgs,
                 struct req *r, char *msg, size_t msg_n, const char **param);

/* Token ids of a prompt text as the server evaluates it (on arrival, and again after a model
 * reload): special tokens parsed; completions get BOS when the model's tokenizer asks for it
 * (chat templates write their own). *ids is malloc'd. */
enum dsi_status srv_tokenize(const struct dsi_model *m, enum req_kind kind, const char *text,
                             int32_t **ids, int64_t *n);

/* Wait on cv for at most ms milliseconds (mu held). */
static inline void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(cv, mu, &ts);
}

/* ---- the server ---------------------------------------------------------------------------- */

struct srv_model {
    struct dsi_model *m;
    const char *tmpl;           /* chat template (NULL if none) */
    char *tmpl_owned;
    char *id;                   /* what /v1/models reports */
    unsigned gen;
    int refs;                   /* connection threads using it, under srv->mu */
};

enum slot_state { SLOT_IDLE, SLOT_PREFILL, SLOT_GEN };

struct slot {
    struct req *r;
    enum slot_state state;
    int32_t *cache;             /* tokens whose keys and values the slot's cache holds */
    int64_t n_cache;
    int64_t n_done;             /* prompt tokens evaluated */
    int32_t next;               /* GEN: sampled, not yet evaluated */
    struct dsi_sampler *smp;
    struct dsi_textstream ts;
    struct think th;
    uint64_t last_used;
    int64_t n_plain;            /* leading cache tokens that may be reused at all (all, unless
                                 * the image rows below could not be kept) */
    /* the image-token embeddings of the slot's prompt, in order, at positions img_pos: a cached
     * image token is reused only for the same embedding (image tokens share one id) */
    float *img;
    int64_t *img_pos;
    int64_t n_img, img_cap;
};

struct MHD_Daemon;

struct dsi_server {
    struct dsi_server_params p;
    pthread_mutex_t mu;
    pthread_cond_t cv_work;     /* the scheduler waits for work */
    pthread_cond_t cv_idle;     /* model references dropped, requests finished */
    struct srv_model *model;    /* current */
    struct srv_model *pending;  /* loaded by a reload, waiting for the slots to drain */
    struct dsi_context *ctx;    /* the scheduler's */
    struct slot *slots;
    int n_slots;
    uint64_t use_clock;
    int32_t *sampled;           /* [n_slots] the decode pass's sampled tokens (scheduler) */
    struct req *q_head, *q_tail;
    int n_queued, n_active, n_conns; /* n_conns: HTTP requests being handled */
    bool draining, cancel_all, quit, reloading;
    unsigned next_gen;
    uint64_t n_ids;
    pthread_t sched_thread, reload_thread;
    bool reload_thread_live;
    struct MHD_Daemon *daemon;
    int port, listen_fd;
    struct metrics met;
};

/* sched.c */
enum dsi_status srv_model_load(struct dsi_server *s, struct srv_model **out);
void srv_model_free(struct srv_model *sm);
enum dsi_status srv_context_for(struct dsi_server *s, const struct dsi_model *m,
                                struct dsi_context **out);
void *sched_main(void *arg);
/* Queue a request (takes a reference): false when the queue is full. */
bool sched_submit(struct dsi_server *s, struct req *r);
/* The client went away: a queued request leaves the queue, a running one its slot. */
void sched_cancel(struct dsi_server *s, struct req *r);

/* http.c */
/* Parse, validate, template and tokenize a request body: 200 and *out (one reference), or
 * the HTTP status with the message, parameter and code of the error. Also the fuzz target's
 * entry (tests/fuzz/fuzz_request.c). */
int srv_request_from_body(struct dsi_server *s, const char *body, size_t n, enum req_kind kind,
                          struct req **out, char *msg, size_t msg_n, const char **param,
                          const char **code);
enum dsi_status http_start(struct dsi_server *s);
void http_quiesce(struct dsi_server *s);
void http_stop(struct dsi_server *s);

/* metrics.c: the Prometheus text */
void metrics_render(struct dsi_server *s, struct dsi_strbuf *out);

#endif
