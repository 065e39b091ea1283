/* GPU options shared by the subcommands that load a model: -ngl, --device, --vram-budget,
 * --cpu-moe, --vk-validation; and `dsinfer devices`. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "src/cli/cli.h"
#include "src/cli/common.h"
#include "vulkan/vk.h"

void cli_gpu_init(struct cli_gpu_opts *g) {
    memset(g, 0, sizeof *g);
    g->device = -1;
    g->ngl = DSI_NGL_AUTO;
    /* test hook: the test scripts pin the CPU unless a test asks for the GPU */
    const char *e = getenv("DSINFER_NGL");
    if (e && *e) cli_gpu_parse_ngl(e, &g->ngl);
}

bool cli_gpu_parse_ngl(const char *s, int *ngl) {
    if (!strcmp(s, "auto")) {
        *ngl = DSI_NGL_AUTO;
        return true;
    }
    if (!strcmp(s, "all")) {
        *ngl = 1 << 20;
        return true;
    }
    int64_t v;
    if (!cli_parse_i64("-ngl", s, 0, 1 << 20, &v)) return false;
    *ngl = (int)v;
    return true;
}

/* "4G", "512M", "1.5GiB", "300MB", "4096" (bytes); binary units. */
bool cli_parse_size(const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mul = 1;
    if (end != s) {
        char u = (char)toupper((unsigned char)*end);
        if (u == 'K') mul = 1024.0, end++;
        else if (u == 'M') mul = 1048576.0, end++;
        else if (u == 'G') mul = 1073741824.0, end++;
        else if (u == 'T') mul = 1099511627776.0, end++;
        if (mul > 1 && (*end == 'i' || *end == 'I')) end++;
        if (mul > 1 && (*end == 'b' || *end == 'B')) end++;
    }
    if (errno || end == s || *end || !(v > 0) || v * mul > 1e18) {
        fprintf(stderr, "dsinfer: %s expects a size such as 4G, 512M or a byte count, not '%s'\n",
                opt, s);
        return false;
    }
    *out = (uint64_t)(v * mul);
    return true;
}

int cli_gpu_parse(struct cli_gpu_opts *g, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    bool takes = !strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers") || !strcmp(a, "--device") ||
                 !strcmp(a, "--vram-budget");
    if (!strcmp(a, "--vk-validation")) {
        g->validation = true;
        return 1;
    }
    if (!strcmp(a, "--cpu-moe")) {
        g->cpu_moe = true;
        return 1;
    }
    if (!takes) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "dsinfer: option %s needs a value\n", a);
        return -1;
    }
    const char *v = argv[++*i];
    int64_t x;
    if (!strcmp(a, "--device")) {
        if (!cli_parse_i64(a, v, 0, 63, &x)) return -1;
        g->device = (int)x;
    } else if (!strcmp(a, "--vram-budget")) {
        if (!cli_parse_size(a, v, &g->budget)) return -1;
    } else if (!cli_gpu_parse_ngl(v, &g->ngl)) {
        return -1;
    }
    return 1;
}

void cli_gpu_help(FILE *f) {
    fprintf(f, "  -ngl, --n-gpu-layers N|all|auto   layers to run on a Vulkan GPU, counted from the\n"
               "                         last; more than the model has (or all) adds the output\n"
               "                         head; auto (default) fits what the GPU's memory allows\n"
               "  --device N             Vulkan device (dsinfer devices; default: a discrete GPU)\n"
               "  --vram-budget SIZE     device memory to use at most, e.g. 2G (default: 90%%)\n"
               "  --cpu-moe              MoE models: keep the routed experts on the CPU (attention,\n"
               "                         shared experts and cache on the GPU); auto does this by\n"
               "                         itself when the experts do not fit\n");
}

void cli_gpu_apply(const struct cli_gpu_opts *g, struct dsi_model_params *mp) {
    mp->n_gpu_layers = g->ngl;
    mp->gpu_device = g->device;
    mp->vram_budget = g->budget;
    mp->gpu_validation = g->validation;
    mp->cpu_moe = g->cpu_moe;
}

static void print_bytes(uint64_t b) {
    char s[32];
    printf("%s", cli_fmt_bytes((double)b, s, sizeof s));
}

int dsi_cmd_devices(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: dsinfer devices\n"
                   "Lists the Vulkan devices (index for --device, type, driver, memory heaps,\n"
                   "optional features the shaders use).\n");
            return 0;
        }
        fprintf(stderr, "dsinfer devices: unknown option '%s'\n", argv[i]);
        return 2;
    }
    struct dsi_vk_device_info info[16];
    int n = 0;
    if (dsi_log_get_level() < DSI_LOG_INFO) dsi_log_set_level(DSI_LOG_INFO);
    if (dsi_vk_list(info, 16, &n) != DSI_OK) {
        fprintf(stderr, "dsinfer devices: no Vulkan device (the reason is above); dsinfer runs "
                        "on the CPU\n");
        return 1;
    }
    for (int i = 0; i < n && i < 16; i++) {
        const struct dsi_vk_device_info *d = &info[i];
        printf("device %d: %s\n  type: %s, Vulkan %u.%u.%u, vendor 0x%04x device 0x%04x\n"
               "  driver: %s\n", i, d->name, d->type, d->api_version >> 22,
               (d->api_version >> 12) & 0x3ff, d->api_version & 0xfff, d->vendor_id, d->device_id,
               d->driver);
        for (int h = 0; h < d->n_heaps; h++) {
            printf("  heap %d: ", h);
            print_bytes(d->heap_bytes[h]);
            printf("%s", d->heap_device_local[h] ? " (device local)" : "");
            if (d->have_free) {
                printf(", ");
                print_bytes(d->heap_free[h]);
                printf(" free");
            }
            printf("\n");
        }
        printf("  features: fp16 %s, int8 dot product %s, subgroup arithmetic %s (size %u), "
               "max buffer ", d->fp16 ? "yes" : "no", d->int8_dot ? "yes" : "no",
               d->subgroup_arith ? "yes" : "no", d->subgroup_size);
        print_bytes(d->max_buffer_range);
        printf("\n");
    }
    return 0;
}
