/* libFuzzer target: request bodies come from any client of `dsinfer serve`. Parse, validate,
 * template and tokenize them as the server does (src/server/http.c), with the default model;
 * the first byte picks the endpoint. Nothing may crash or leak. */
#include <stdint.h>
#include <stdlib.h>

#include "src/server/server_impl.h"

static void quiet(enum dsi_log_level l, const char *m, void *u) { (void)l, (void)m, (void)u; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct dsi_server *s;
    if (!s) {
        dsi_log_set(quiet, NULL);
        s = calloc(1, sizeof *s);
        s->p = dsi_server_default_params();
        s->p.model_path = "models/shakespeare-qwen2.gguf";
        s->p.n_ctx = 256;
        s->p.n_threads = 1;
        s->n_slots = 1;
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv_idle, NULL);
        if (srv_model_load(s, &s->model) || srv_context_for(s, s->model->m, &s->ctx)) abort();
    }
    if (size < 1) return 0;
    struct req *r = NULL;
    char msg[256];
    const char *param, *code;
    int st = srv_request_from_body(s, (const char *)data + 1, size - 1,
                                   data[0] & 1 ? REQ_CHAT : REQ_COMPLETION, &r, msg, sizeof msg,
                                   &param, &code);
    if ((st == 200) != (r != NULL)) abort();
    req_release(r);
    return 0;
}
