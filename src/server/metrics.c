/* Prometheus metrics (text exposition format 0.0.4), all prefixed dsinfer_. */
#include <string.h>

#include "src/server/server_impl.h"

static const double bucket_le[HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                               1,     2.5,  5,     10,   30,  60,  120};

void metrics_init(struct metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void metrics_free(struct metrics *m) { pthread_mutex_destroy(&m->mu); }

void metrics_request(struct metrics *m, const char *endpoint, int status) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_req && (strcmp(m->req[i].endpoint, endpoint) || m->req[i].status != status)) i++;
    if (i == m->n_req && m->n_req < (int)(sizeof m->req / sizeof m->req[0])) {
        m->req[i].endpoint = endpoint;
        m->req[i].status = status;
        m->req[i].n = 0;
        m->n_req++;
    }
    if (i < m->n_req) m->req[i].n++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_observe(struct metrics *m, struct hist *h, double seconds) {
    pthread_mutex_lock(&m->mu);
    int b = 0;
    while (b < HIST_BUCKETS && seconds > bucket_le[b]) b++;
    h->count[b]++;
    h->sum += seconds;
    h->n++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_add(struct metrics *m, uint64_t *counter, uint64_t v) {
    pthread_mutex_lock(&m->mu);
    *counter += v;
    pthread_mutex_unlock(&m->mu);
}

static void render_hist(struct dsi_strbuf *o, const char *name, const char *help, const struct hist *h) {
    dsi_strbuf_printf(o, "# HELP dsinfer_%s %s\n# TYPE dsinfer_%s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        cum += h->count[b];
        dsi_strbuf_printf(o, "dsinfer_%s_bucket{le=\"%g\"} %llu\n", name, bucket_le[b],
                  (unsigned long long)cum);
    }
    cum += h->count[HIST_BUCKETS];
    dsi_strbuf_printf(o, "dsinfer_%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    dsi_strbuf_printf(o, "dsinfer_%s_sum %.6f\ndsinfer_%s_count %llu\n", name, h->sum, name,
              (unsigned long long)h->n);
}

static void counter(struct dsi_strbuf *o, const char *name, const char *help, uint64_t v) {
    dsi_strbuf_printf(o, "# HELP dsinfer_%s %s\n# TYPE dsinfer_%s counter\ndsinfer_%s %llu\n", name, help,
              name, name, (unsigned long long)v);
}

static void gauge(struct dsi_strbuf *o, const char *name, const char *help, double v) {
    dsi_strbuf_printf(o, "# HELP dsinfer_%s %s\n# TYPE dsinfer_%s gauge\ndsinfer_%s %.10g\n", name, help,
              name, name, v);
}

void metrics_render(struct dsi_server *s, struct dsi_strbuf *o) {
    /* a consistent snapshot: the server's state first, then the counters */
    pthread_mutex_lock(&s->mu);
    int active = s->n_active, queued = s->n_queued, slots = s->n_slots;
    int64_t used = 0, cap = (int64_t)slots * (s->ctx ? dsi_context_n_ctx(s->ctx) : 0);
    for (int i = 0; i < slots; i++) used += s->slots[i].n_cache;
    uint64_t kv_bytes = s->ctx ? dsi_context_kv_bytes(s->ctx) : 0;
    pthread_mutex_unlock(&s->mu);

    struct metrics *m = &s->met;
    pthread_mutex_lock(&m->mu);
    dsi_strbuf_puts(o, "# HELP dsinfer_requests_total HTTP requests by endpoint and status code.\n"
               "# TYPE dsinfer_requests_total counter\n");
    for (int i = 0; i < m->n_req; i++)
        dsi_strbuf_printf(o, "dsinfer_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
                  m->req[i].endpoint, m->req[i].status, (unsigned long long)m->req[i].n);
    counter(o, "prompt_tokens_total", "Prompt tokens of finished requests.", m->prompt_tokens);
    counter(o, "prompt_tokens_cached_total", "Prompt tokens reused from a slot's cache.",
            m->prompt_cached);
    counter(o, "generated_tokens_total", "Generated tokens.", m->gen_tokens);
    counter(o, "decode_batches_total", "Batched decode passes.", m->batches);
    counter(o, "decode_batch_tokens_total", "Tokens evaluated by batched decode passes.",
            m->batch_tokens);
    counter(o, "model_reloads_total", "Successful model reloads.", m->reload_ok);
    counter(o, "model_reload_failures_total", "Failed model reloads.", m->reload_failed);
    render_hist(o, "time_to_first_token_seconds", "Time from arrival to the first generated token.",
                &m->ttft);
    render_hist(o, "time_per_output_token_seconds", "Time between generated tokens.", &m->tpot);
    render_hist(o, "request_duration_seconds", "Time from arrival to the last token.", &m->e2e);
    pthread_mutex_unlock(&m->mu);
    gauge(o, "slots_total", "Slots (sequences decoded together).", slots);
    gauge(o, "slots_active", "Slots serving a request.", active);
    gauge(o, "queue_depth", "Requests waiting for a slot.", queued);
    gauge(o, "kv_cache_tokens", "Tokens held in the slots' KV caches.", (double)used);
    gauge(o, "kv_cache_capacity_tokens", "Tokens the KV caches can hold.", (double)cap);
    gauge(o, "kv_cache_usage_ratio", "kv_cache_tokens / kv_cache_capacity_tokens.",
          cap ? (double)used / (double)cap : 0.0);
    gauge(o, "kv_cache_bytes", "Bytes allocated for the KV caches.", (double)kv_bytes);
}
