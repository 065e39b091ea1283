/* Server lifetime: start (model, context, slots, scheduler thread, HTTP daemon), reload,
 * graceful stop. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/server/server_impl.h"

struct dsi_server_params dsi_server_default_params(void) {
    struct dsi_server_params p = {0};
    p.host = "127.0.0.1";
    p.port = 8080;
    p.n_parallel = 4;
    p.gpu_device = -1;
    p.n_batch = 512;
    p.max_body = 1u << 20;
    p.max_queue = 64;
    p.max_tokens_default = -1;
    p.load = DSI_LOAD_AUTO;
    p.shutdown_grace = 30;
    return p;
}

static void server_free(struct dsi_server *s) {
    for (int i = 0; s->slots && i < s->n_slots; i++) {
        free(s->slots[i].cache);
        free(s->slots[i].img);
        free(s->slots[i].img_pos);
        dsi_sampler_free(s->slots[i].smp);
    }
    free(s->slots);
    dsi_context_free(s->ctx);
    srv_model_free(s->model);
    srv_model_free(s->pending);
    metrics_free(&s->met);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_idle);
    free(s);
}

enum dsi_status dsi_server_start(const struct dsi_server_params *p, struct dsi_server **out) {
    *out = NULL;
    if (!p->model_path || p->n_parallel < 1 || p->n_parallel > 256 || p->max_queue < 0 ||
        p->port < 0 || p->port > 65535) {
        DSI_LOG_ERR("serve: bad parameters (a model, 1..256 slots, a port 0..65535)");
        return DSI_ERR_ARG;
    }
    struct dsi_server *s = calloc(1, sizeof *s);
    if (!s) return DSI_ERR_NOMEM;
    s->p = *p;
    if (!s->p.host) s->p.host = "127.0.0.1";
    if (!s->p.max_body) s->p.max_body = 1u << 20;
    s->n_slots = p->n_parallel;
    s->listen_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv_work, NULL);
    pthread_cond_init(&s->cv_idle, NULL);
    metrics_init(&s->met);
    enum dsi_status st = srv_model_load(s, &s->model);
    if (!st) st = srv_context_for(s, s->model->m, &s->ctx);
    if (!st) {
        s->slots = calloc((size_t)s->n_slots, sizeof *s->slots);
        if (!s->slots) st = DSI_ERR_NOMEM;
        for (int i = 0; !st && i < s->n_slots; i++) {
            s->slots[i].cache = malloc((size_t)dsi_context_n_ctx(s->ctx) * sizeof(int32_t));
            if (!s->slots[i].cache) st = DSI_ERR_NOMEM;
        }
    }
    if (!st && pthread_create(&s->sched_thread, NULL, sched_main, s)) st = DSI_ERR_NOMEM;
    if (st) {
        server_free(s);
        return st;
    }
    st = http_start(s);
    if (st) {
        pthread_mutex_lock(&s->mu);
        s->quit = true;
        pthread_cond_signal(&s->cv_work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->sched_thread, NULL);
        server_free(s);
        return st;
    }
    *out = s;
    return DSI_OK;
}

int dsi_server_port(const struct dsi_server *s) { return s->port; }

static void *reload_main(void *arg) {
    struct dsi_server *s = arg;
    struct srv_model *nm = NULL;
    DSI_LOG_INF("serve: reloading %s", s->p.model_path);
    enum dsi_status st = srv_model_load(s, &nm);
    pthread_mutex_lock(&s->mu);
    if (st) {
        DSI_LOG_ERR("serve: reload of %s failed (%s); the old model keeps serving", s->p.model_path,
                    dsi_status_str(st));
        metrics_add(&s->met, &s->met.reload_failed, 1);
    } else {
        srv_model_free(s->pending);
        s->pending = nm;
        pthread_cond_signal(&s->cv_work);
    }
    s->reloading = false;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

void dsi_server_reload(struct dsi_server *s) {
    pthread_mutex_lock(&s->mu);
    if (s->reloading || s->draining) {
        pthread_mutex_unlock(&s->mu);
        DSI_LOG_WRN("serve: a reload is already running (or the server is stopping)");
        return;
    }
    if (s->reload_thread_live) {
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->reload_thread, NULL);
        pthread_mutex_lock(&s->mu);
        s->reload_thread_live = false;
    }
    s->reloading = true;
    if (pthread_create(&s->reload_thread, NULL, reload_main, s)) {
        s->reloading = false;
        DSI_LOG_ERR("serve: cannot start the reload thread");
    } else {
        s->reload_thread_live = true;
    }
    pthread_mutex_unlock(&s->mu);
}

void dsi_server_stop(struct dsi_server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    pthread_mutex_unlock(&s->mu);
    http_quiesce(s);
    /* in-flight requests finish, up to the grace period */
    double end = dsi_time_now() + s->p.shutdown_grace;
    pthread_mutex_lock(&s->mu);
    while ((s->n_active || s->n_queued) && dsi_time_now() < end) {
        cond_wait_ms(&s->cv_idle, &s->mu, 100);
    }
    if (s->n_active || s->n_queued)
        DSI_LOG_WRN("serve: %d requests did not finish in %.0f s; cancelling them",
                    s->n_active + s->n_queued, s->p.shutdown_grace);
    s->cancel_all = true;
    pthread_cond_signal(&s->cv_work);
    while (s->n_active || s->n_queued) pthread_cond_wait(&s->cv_idle, &s->mu);
    /* let the connections send what their requests produced (up to 5 s), then close (the
     * mutex stays held: the wait below releases it while it sleeps) */
    double flush_end = dsi_time_now() + 5.0;
    while (s->n_conns && dsi_time_now() < flush_end) {
        cond_wait_ms(&s->cv_idle, &s->mu, 50);
    }
    s->quit = true;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->sched_thread, NULL);
    http_stop(s);
    pthread_mutex_lock(&s->mu);
    bool live = s->reload_thread_live;
    pthread_mutex_unlock(&s->mu);
    if (live) pthread_join(s->reload_thread, NULL);
    server_free(s);
}
