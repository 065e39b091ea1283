/* dsinfer serve: the OpenAI-compatible HTTP server (src/server/server.h). Signals: SIGINT and
 * SIGTERM stop it gracefully (in-flight requests finish), SIGHUP reloads the model file. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/cli/cli.h"
#include "src/cli/common.h"
#include "src/server/server.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsinfer serve -m MODEL [options]\n"
            "  -m, --model FILE       GGUF model (or a Hugging Face checkpoint directory)\n"
            "  --host ADDR            address to listen on (default 127.0.0.1)\n"
            "  --port N               port (default 8080; 0 picks a free one)\n"
            "  --parallel N, -np N    slots decoded together (default 4)\n"
            "  -c, --ctx-size N       context per slot in tokens (default min(4096, trained))\n"
            "  -b, --batch-size N     most prompt tokens per pass (default 512)\n"
            "  -t, --threads N        threads (default: all cores)\n"
            "  --api-key KEY          require 'Authorization: Bearer KEY' (also $DSINFER_API_KEY)\n"
            "  --max-body BYTES       largest request body (default 1048576)\n"
            "  --queue N              requests waiting for a slot before 503 (default 64)\n"
            "  -n, --max-tokens N     default max_tokens (default: until the context is full)\n"
            "  --chat-template NAME|FILE  override the model's chat template\n"
            "  --alias NAME           model id reported by /v1/models\n"
            "  --mmap, --no-mmap      map the weights file / read it into memory\n"
            "  --no-repack            keep Q4_0 matrices in ggml's row layout\n"
            "  --shutdown-grace S     seconds in-flight requests get on SIGTERM (default 30)\n"
            "  --allow-local-images   image_url parts may name files on this machine (absolute\n"
            "                         path or file:// URL; default: data: URLs only)\n"
            "  -ngl N|all|auto, --device N, --vram-budget SIZE   Vulkan offload (as for run)\n"
            "Signals: SIGINT/SIGTERM stop gracefully, SIGHUP reloads the model file.\n");
}

int dsi_cmd_serve(int argc, char **argv) {
    struct dsi_server_params p = dsi_server_default_params();
    struct cli_gpu_opts gpu;
    int g;
    cli_gpu_init(&gpu);
    p.api_key = getenv("DSINFER_API_KEY");
    if (p.api_key && !*p.api_key) p.api_key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int64_t v;
#define VAL()                                                                                      \
    do {                                                                                           \
        if (i + 1 >= argc) {                                                                       \
            fprintf(stderr, "dsinfer serve: %s needs a value\n", a);                               \
            return 2;                                                                              \
        }                                                                                          \
    } while (0)
#define NUM(lo, hi)                                                                                \
    do {                                                                                           \
        VAL();                                                                                     \
        if (!cli_parse_i64(a, argv[++i], lo, hi, &v)) return 2;                                    \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            VAL();
            p.model_path = argv[++i];
        } else if (!strcmp(a, "--host")) {
            VAL();
            p.host = argv[++i];
        } else if (!strcmp(a, "--port")) {
            NUM(0, 65535);
            p.port = (int)v;
        } else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) {
            NUM(1, 256);
            p.n_parallel = (int)v;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            NUM(16, 1 << 24);
            p.n_ctx = v;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            NUM(1, 1 << 16);
            p.n_batch = v;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NUM(1, 1024);
            p.n_threads = (int)v;
        } else if (!strcmp(a, "--api-key")) {
            VAL();
            p.api_key = argv[++i];
        } else if (!strcmp(a, "--max-body")) {
            NUM(256, (int64_t)1 << 32);
            p.max_body = (size_t)v;
        } else if (!strcmp(a, "--queue")) {
            NUM(0, 1 << 20);
            p.max_queue = (int)v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) {
            NUM(1, 1 << 24);
            p.max_tokens_default = v;
        } else if (!strcmp(a, "--chat-template")) {
            VAL();
            p.chat_template = argv[++i];
        } else if (!strcmp(a, "--alias")) {
            VAL();
            p.model_alias = argv[++i];
        } else if (!strcmp(a, "--mmap")) {
            p.load = DSI_LOAD_MMAP;
        } else if (!strcmp(a, "--no-mmap")) {
            p.load = DSI_LOAD_COPY;
        } else if (!strcmp(a, "--no-repack")) {
            p.no_repack = true;
        } else if (!strcmp(a, "--allow-local-images")) {
            p.allow_local_images = true;
        } else if (!strcmp(a, "--shutdown-grace")) {
            NUM(0, 3600);
            p.shutdown_grace = (double)v;
        } else if ((g = cli_gpu_parse(&gpu, argc, argv, &i)) != 0) {
            if (g < 0) return 2;
        } else {
            fprintf(stderr, "dsinfer serve: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
#undef NUM
#undef VAL
    }
    p.n_gpu_layers = gpu.ngl;
    p.gpu_device = gpu.device;
    p.vram_budget = gpu.budget;
    p.cpu_moe = gpu.cpu_moe;
    if (!p.model_path) {
        fprintf(stderr, "dsinfer serve: -m MODEL is required\n");
        usage(stderr);
        return 2;
    }
    /* the signals are taken by sigwait below, in this thread only */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (dsi_log_get_level() < DSI_LOG_INFO) dsi_log_set_level(DSI_LOG_INFO);
    struct dsi_server *s;
    if (dsi_server_start(&p, &s)) return 1;
    fprintf(stderr, "dsinfer serve: listening on http://%s:%d (%d slots)\n", p.host,
            dsi_server_port(s), p.n_parallel);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig)) continue;
        if (sig == SIGHUP) {
            dsi_server_reload(s);
            continue;
        }
        fprintf(stderr, "dsinfer serve: %s, stopping (in-flight requests finish)\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
    }
    dsi_server_stop(s);
    fprintf(stderr, "dsinfer serve: stopped\n");
    return 0;
}
