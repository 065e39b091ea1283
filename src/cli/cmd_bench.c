/* dsinfer bench: prompt-processing and generation speed, shaped like llama-bench.
 *   ppN: N random prompt tokens evaluated in one batch from an empty cache;
 *   tgN: N tokens generated one at a time from an empty cache (random ids, no sampling cost).
 * Each test runs -r times after one warm-up run that pages the weights in; the figure is the
 * mean tokens/s with its standard deviation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cpu.h"
#include "src/cli/cli.h"
#include "src/cli/common.h"
#include "src/generate.h"

struct result {
    char test[32];
    double mean, sd;
    int64_t n;
};

static bool run_pp(struct dsi_context *c, const int32_t *toks, int64_t n, double *t) {
    double t0 = dsi_time_now();
    if (dsi_context_decode(c, toks, n, 0, false) != DSI_OK) return false;
    *t = dsi_time_now() - t0;
    return true;
}

static bool run_tg(struct dsi_context *c, const int32_t *toks, int64_t n, double *t) {
    double t0 = dsi_time_now();
    for (int64_t i = 0; i < n; i++)
        if (dsi_context_decode(c, &toks[i], 1, i, false) != DSI_OK) return false;
    *t = dsi_time_now() - t0;
    return true;
}

static bool measure(struct dsi_context *c, const int32_t *toks, int64_t n, int reps, bool tg,
                    struct result *r) {
    double t, *v = calloc((size_t)reps, sizeof *v);
    if (!v) return false;
    /* warm-up: pages the weights in and settles the thread pool */
    if (!(tg ? run_tg(c, toks, n < 8 ? n : 8, &t) : run_pp(c, toks, n, &t))) {
        free(v);
        return false;
    }
    double sum = 0;
    for (int i = 0; i < reps; i++) {
        if (!(tg ? run_tg(c, toks, n, &t) : run_pp(c, toks, n, &t))) {
            free(v);
            return false;
        }
        v[i] = (double)n / t;
        sum += v[i];
    }
    r->mean = sum / reps;
    double ss = 0;
    for (int i = 0; i < reps; i++) ss += (v[i] - r->mean) * (v[i] - r->mean);
    r->sd = reps > 1 ? sqrt(ss / (reps - 1)) : 0;
    r->n = n;
    snprintf(r->test, sizeof r->test, "%s%lld", tg ? "tg" : "pp", (long long)n);
    free(v);
    return true;
}

int dsi_cmd_bench(int argc, char **argv) {
    struct cli_opts o;
    cli_opts_init(&o);
    int64_t n_pp = 512, n_tg = 128, reps = 3;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: dsinfer bench -m MODEL [-t THREADS] [-p 512] [-n 128] [-r 3] [-o md|json]\n"
                   "  -p N: prompt processing of N tokens (0 skips); -n N: generation of N tokens\n"
                   "  (0 skips); -r: repetitions after a warm-up run. Prints mean t/s +- sd.\n");
            cli_opts_help(stdout, false);
            return 0;
        } else if (!strcmp(a, "-p") && i + 1 < argc) {
            if (!cli_parse_i64(a, argv[++i], 0, 1 << 16, &n_pp)) return 2;
        } else if (!strcmp(a, "-n") && i + 1 < argc) {
            if (!cli_parse_i64(a, argv[++i], 0, 1 << 16, &n_tg)) return 2;
        } else if (!strcmp(a, "-r") && i + 1 < argc) {
            if (!cli_parse_i64(a, argv[++i], 1, 1000, &reps)) return 2;
        } else if (!strcmp(a, "-o") && i + 1 < argc) {
            const char *f = argv[++i];
            if (strcmp(f, "md") && strcmp(f, "json")) {
                fprintf(stderr, "dsinfer bench: -o md|json\n");
                return 2;
            }
            json = !strcmp(f, "json");
        } else {
            int r = cli_opts_parse(&o, argc, argv, &i);
            if (r <= 0) {
                if (r == 0) fprintf(stderr, "dsinfer bench: unknown option '%s'\n", a);
                return 2;
            }
        }
    }
    double t_load;
    struct dsi_model *m = cli_load_model(&o, &t_load);
    if (!m) return 1;
    int64_t need = (n_pp > n_tg ? n_pp : n_tg) + 8;
    if (o.n_ctx < need) o.n_ctx = need;
    if (o.n_batch < n_pp) o.n_batch = n_pp;
    struct dsi_context *c = cli_make_context(&o, m, need);
    int64_t nt = n_pp > n_tg ? n_pp : n_tg;
    int32_t *toks = malloc((size_t)(nt ? nt : 1) * sizeof *toks);
    int rc = 1;
    if (!c || !toks) goto done;
    uint64_t s = 42;
    for (int64_t i = 0; i < nt; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((s >> 33) % (uint64_t)dsi_model_n_vocab(m));
    }
    struct result res[2];
    int nr = 0;
    if (n_pp > 0 && !measure(c, toks, n_pp, (int)reps, false, &res[nr++])) goto done;
    if (n_tg > 0 && !measure(c, toks, n_tg, (int)reps, true, &res[nr++])) goto done;
    int threads = o.n_threads;
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    const char *load = dsi_model_repacked_bytes(m)
                           ? (dsi_model_weights_copied(m) ? "copy+repack" : "mmap+repack")
                           : (dsi_model_weights_copied(m) ? "copy" : "mmap");
    /* where the layers ran: "cpu", or "vulkan 28/28+head" */
    char gpu[48] = "cpu";
    if (dsi_model_gpu_name(m))
        snprintf(gpu, sizeof gpu, "vulkan %d/%lld%s", dsi_model_gpu_layers(m),
                 (long long)dsi_model_n_layer(m), dsi_model_gpu_output(m) ? "+head" : "");
    if (!json) {
        printf("| model | size | params | cpu | threads | layers on | weights | test | t/s |\n"
               "| --- | ---: | ---: | --- | ---: | --- | --- | ---: | ---: |\n");
    }
    for (int i = 0; i < nr; i++) {
        if (json)
            printf("{\"model\": \"%s\", \"size\": %llu, \"params\": %llu, \"cpu\": \"%s\", "
                   "\"threads\": %d, \"test\": \"%s\", \"n\": %lld, \"tps\": %.3f, \"tps_sd\": %.3f, "
                   "\"load_s\": %.3f, \"weights\": \"%s\", \"layers_on\": \"%s\"}\n",
                   dsi_model_name(m), (unsigned long long)dsi_model_weight_bytes(m),
                   (unsigned long long)dsi_model_n_params(m), dsi_cpu_describe(), threads, res[i].test,
                   (long long)res[i].n, res[i].mean, res[i].sd, t_load, load, gpu);
        else
            printf("| %s | %.2f GiB | %.2f B | %s | %d | %s | %s | %s | %.2f ± %.2f |\n", dsi_model_name(m),
                   dsi_model_weight_bytes(m) / 1073741824.0, dsi_model_n_params(m) / 1e9,
                   dsi_cpu_has(DSI_CPU_AVX512) ? "avx512" : dsi_cpu_has(DSI_CPU_AVX2) ? "avx2" : "base",
                   threads, gpu, load, res[i].test, res[i].mean, res[i].sd);
    }
    rc = 0;
done:
    free(toks);
    dsi_context_free(c);
    dsi_model_free(m);
    return rc;
}
