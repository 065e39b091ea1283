/* dsinfer quantize IN.gguf OUT.gguf TYPE [--threads N] [--dry-run] ... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/cli/cli.h"
#include "src/quantize_model.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsinfer quantize IN.gguf OUT.gguf TYPE [options]\n"
            "  Quantizes a GGUF model with llama.cpp's per-tensor type choices for TYPE:\n"
            "    %s\n"
            "  (e.g. Q4_K_M: Q4_K, with Q6_K for the output head and for attn_v / ffn_down in\n"
            "  the first and last eighth of the layers and every third layer between).\n"
            "options:\n"
            "  -t, --threads N             threads (default: all cores)\n"
            "  --dry-run                   print the type of every tensor, write nothing\n"
            "  --pure                      TYPE for every quantizable tensor, no bumps\n"
            "  --output-tensor-type T      type of output.weight (e.g. q8_0, f16)\n"
            "  --token-embedding-type T    type of token_embd.weight\n"
            "  --allow-requantize          accept an already quantized input (loses quality)\n"
            "  --vision-q8                 DeepSeek-VL2: the vision tower's matrices to Q8_0 too\n"
            "                              (default: kept as converted)\n"
            "  --no-progress               no progress bar\n",
            dsi_ftype_names());
}

static bool parse_type(const char *opt, const char *s, int *out) {
    enum dsi_type t;
    if (!dsi_type_from_name(s, &t)) {
        fprintf(stderr, "dsinfer quantize: %s: unknown tensor type '%s'\n", opt, s);
        return false;
    }
    *out = (int)t;
    return true;
}

int dsi_cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int npos = 0;
    bool dry = false;
    struct dsi_quantize_params p = {0};
    p.output_type = p.token_embd_type = -1;
    p.progress = isatty(2);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int64_t v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && i + 1 < argc) {
            if (!cli_parse_i64(a, argv[++i], 1, 1024, &v)) return 2;
            p.n_threads = (int)v;
        } else if (!strcmp(a, "--dry-run")) {
            dry = true;
        } else if (!strcmp(a, "--pure")) {
            p.pure = true;
        } else if (!strcmp(a, "--allow-requantize")) {
            p.allow_requantize = true;
        } else if (!strcmp(a, "--output-tensor-type") && i + 1 < argc) {
            if (!parse_type(a, argv[++i], &p.output_type)) return 2;
        } else if (!strcmp(a, "--token-embedding-type") && i + 1 < argc) {
            if (!parse_type(a, argv[++i], &p.token_embd_type)) return 2;
        } else if (!strcmp(a, "--vision-q8")) {
            p.vision_q8 = true;
        } else if (!strcmp(a, "--progress")) {
            p.progress = true;
        } else if (!strcmp(a, "--no-progress")) {
            p.progress = false;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "dsinfer quantize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (npos != 3) {
        usage(stderr);
        return 2;
    }
    p.in_path = pos[0];
    p.out_path = pos[1];
    if (!dsi_ftype_from_name(pos[2], &p.ftype)) {
        fprintf(stderr, "dsinfer quantize: unknown type '%s' (one of: %s)\n", pos[2], dsi_ftype_names());
        return 2;
    }
    if (dry) {
        struct dsi_gguf *g;
        if (dsi_gguf_open(p.in_path, &g) != DSI_OK) return 1;
        int64_t nt = dsi_gguf_n_tensors(g);
        enum dsi_type *types = malloc((size_t)(nt + 1) * sizeof *types);
        int rc = 1;
        if (types && dsi_quantize_plan(g, &p, types) == DSI_OK) {
            for (int64_t i = 0; i < nt; i++) {
                const struct dsi_gguf_tensor *t = dsi_gguf_tensor(g, i);
                printf("%-40s %-6s -> %s\n", t->name, dsi_type_name(t->type), dsi_type_name(types[i]));
            }
            rc = 0;
        }
        free(types);
        dsi_gguf_free(g);
        return rc;
    }
    if (dsi_quantize_model(&p) != DSI_OK) return 1;
    fprintf(stderr, "quantize: wrote %s (%s)\n", p.out_path, dsi_ftype_name(p.ftype));
    return 0;
}
