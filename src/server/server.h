/* OpenAI-compatible HTTP server (`dsinfer serve`): /v1/chat/completions, /v1/completions,
 * /v1/models, /health, /metrics, /admin/reload, on libmicrohttpd.
 *
 * One scheduler thread owns the model's context, which holds one KV cache per slot. Requests
 * are validated and tokenized on their connection's thread, queued, and given a free slot
 * (the one whose cached tokens share the longest prefix with the prompt). Each scheduler
 * step evaluates up to n_batch prompt tokens of newly admitted requests, then one token of
 * every generating slot in a single batched pass (continuous batching). The context is
 * batch-invariant: at temperature 0 a request gets the same text alone or among others. */
#ifndef DSI_SERVER_H
#define DSI_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/file.h"
#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dsi_server_params {
    const char *model_path;
    const char *host;          /* default "127.0.0.1" */
    int port;                  /* default 8080; 0: any free port (see dsi_server_port) */
    int n_parallel;            /* slots (default 4) */
    int64_t n_ctx;             /* context per slot (default min(4096, training length)) */
    int64_t n_batch;           /* default 512 */
    int n_threads;             /* default: all cores */
    const char *api_key;       /* NULL: no authentication */
    size_t max_body;           /* bytes of a request body (default 1 MiB) */
    int max_queue;             /* requests waiting for a slot (default 64) */
    int64_t max_tokens_default;/* when a request gives none (default: until the context ends) */
    const char *chat_template; /* override: a built-in name or a file */
    const char *model_alias;   /* the id /v1/models reports (default: the model's name) */
    enum dsi_load_mode load;
    bool no_repack;            /* keep Q4_0 in the row layout (dsi_model_params) */
    int n_gpu_layers, gpu_device; /* Vulkan offload (dsi_model_params; default 0: CPU only) */
    uint64_t vram_budget;
    bool cpu_moe;                 /* routed experts on the CPU (dsi_model_params.cpu_moe) */
    double shutdown_grace;     /* seconds in-flight requests get to finish on shutdown (30) */
    bool allow_local_images;   /* image_url parts may name files of the server's machine (an
                                * absolute path or file:// URL); default: data: URLs only */
};

struct dsi_server_params dsi_server_default_params(void);

struct dsi_server;

/* Load the model, bind the socket and start serving (threads of its own). Errors are logged:
 * a model that does not load, an address in use. */
enum dsi_status dsi_server_start(const struct dsi_server_params *p, struct dsi_server **out);
/* The port the server listens on. */
int dsi_server_port(const struct dsi_server *s);
/* Load the model file again (in the background); in-flight requests finish on the old model,
 * later ones use the new one. A failed load is logged and the old model keeps serving. */
void dsi_server_reload(struct dsi_server *s);
/* Stop accepting, let in-flight requests finish (up to the grace period, then cancel them),
 * stop the threads and free everything. */
void dsi_server_stop(struct dsi_server *s);

#ifdef __cplusplus
}
#endif

#endif
