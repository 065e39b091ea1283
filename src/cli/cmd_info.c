/* dsinfer info FILE.gguf: metadata (long arrays abbreviated) and the tensor table. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/gguf.h"
#include "src/model.h"
#include "src/cli/cli.h"

#define MAX_STR_SHOWN 120
#define MAX_ARR_SHOWN 8

/* Print a string value escaped, abbreviated beyond MAX_STR_SHOWN bytes. */
static void print_str(const char *p, uint64_t len) {
    putchar('"');
    uint64_t n = len > MAX_STR_SHOWN ? MAX_STR_SHOWN : len;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') printf("\\n");
        else if (c == '\t') printf("\\t");
        else if (c == '\r') printf("\\r");
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (len > n) printf("... (%" PRIu64 " bytes)", len);
}

static void print_scalar(const struct dsi_gguf *g, int64_t i) {
    enum dsi_gguf_type t = dsi_gguf_kv_type(g, i);
    int64_t iv;
    double fv;
    if (t == DSI_GGUF_STRING) {
        struct dsi_gguf_str s = dsi_gguf_kv_str(g, i);
        print_str(s.ptr, s.len);
    } else if (t == DSI_GGUF_BOOL) {
        printf("%s", *(const uint8_t *)dsi_gguf_kv_raw(g, i) ? "true" : "false");
    } else if (t == DSI_GGUF_FLOAT32 || t == DSI_GGUF_FLOAT64) {
        dsi_gguf_kv_as_f64(g, i, &fv);
        printf("%.9g", fv);
    } else if (dsi_gguf_kv_as_i64(g, i, &iv)) {
        printf("%" PRId64, iv);
    } else {
        uint64_t u;
        memcpy(&u, dsi_gguf_kv_raw(g, i), 8);
        printf("%" PRIu64, u);
    }
}

static void print_array(const struct dsi_gguf *g, int64_t i) {
    struct dsi_gguf_arr a = dsi_gguf_kv_arr(g, i);
    printf("[");
    uint64_t n = a.count > MAX_ARR_SHOWN ? MAX_ARR_SHOWN : a.count;
    for (uint64_t k = 0; k < n; k++) {
        if (k) printf(", ");
        if (a.elem_type == DSI_GGUF_STRING) {
            struct dsi_gguf_str s = dsi_gguf_arr_str(g, &a, k);
            print_str(s.ptr, s.len > 40 ? 40 : s.len);
        } else if (a.elem_type == DSI_GGUF_FLOAT32 || a.elem_type == DSI_GGUF_FLOAT64) {
            printf("%.6g", dsi_gguf_arr_f64(&a, k));
        } else if (a.elem_type == DSI_GGUF_BOOL) {
            printf("%s", dsi_gguf_arr_i64(&a, k) ? "true" : "false");
        } else {
            printf("%" PRId64, dsi_gguf_arr_i64(&a, k));
        }
    }
    if (a.count > n) printf(", ... %" PRIu64 " more", a.count - n);
    printf("]");
}

int dsi_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool no_tensors = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: dsinfer info FILE.gguf [--no-tensors]\n"
                   "Prints the metadata and the tensor table. Exit status 0 for a valid file,\n"
                   "1 with a one-line reason for an invalid one.\n");
            return 0;
        } else if (!strcmp(argv[i], "--no-tensors")) {
            no_tensors = true;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "dsinfer info: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: dsinfer info FILE.gguf\n");
        return 2;
    }
    struct dsi_gguf *g;
    if (dsi_gguf_open(path, &g) != DSI_OK) return 1; /* the reader logged the reason */

    char b1[32];
    printf("file: %s\n", path);
    printf("size: %zu bytes (%s), GGUF version %u, alignment %zu, data at offset %zu\n",
           dsi_gguf_file_size(g), cli_fmt_bytes((double)dsi_gguf_file_size(g), b1, sizeof b1),
           dsi_gguf_version(g), dsi_gguf_alignment(g), dsi_gguf_data_offset(g));
    printf("\nmetadata: %" PRId64 " key/values\n", dsi_gguf_n_kv(g));
    for (int64_t i = 0; i < dsi_gguf_n_kv(g); i++) {
        enum dsi_gguf_type t = dsi_gguf_kv_type(g, i);
        char tname[40];
        if (t == DSI_GGUF_ARRAY) {
            struct dsi_gguf_arr a = dsi_gguf_kv_arr(g, i);
            snprintf(tname, sizeof tname, "%s[%" PRIu64 "]", dsi_gguf_type_name(a.elem_type),
                     a.count);
        } else {
            snprintf(tname, sizeof tname, "%s", dsi_gguf_type_name(t));
        }
        printf("  %-44s %-16s ", dsi_gguf_kv_key(g, i), tname);
        if (t == DSI_GGUF_ARRAY) print_array(g, i);
        else print_scalar(g, i);
        putchar('\n');
    }
    int64_t nt = dsi_gguf_n_tensors(g);
    uint64_t total = 0, nparams = 0;
    printf("\ntensors: %" PRId64 "\n", nt);
    if (!no_tensors && nt > 0)
        printf("  %-40s %-8s %-28s %14s\n", "name", "type", "shape", "bytes");
    for (int64_t i = 0; i < nt; i++) {
        const struct dsi_gguf_tensor *t = dsi_gguf_tensor(g, i);
        total += t->nbytes;
        uint64_t n = 1;
        for (int d = 0; d < DSI_GGUF_MAX_DIMS; d++) n *= (uint64_t)t->ne[d];
        nparams += n;
        if (no_tensors) continue;
        char shape[64];
        int k = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims; d++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, d ? ", %" PRId64 : "%" PRId64,
                          t->ne[d]);
        snprintf(shape + k, sizeof shape - (size_t)k, "]");
        printf("  %-40s %-8s %-28s %14zu\n", t->name, dsi_type_name(t->type), shape, t->nbytes);
    }
    printf("total: %" PRIu64 " parameters, %" PRIu64 " bytes of tensor data (%s)\n", nparams,
           total, cli_fmt_bytes((double)total, b1, sizeof b1));
    dsi_gguf_free(g);

    /* what running it takes; a file dsinfer cannot run is still a valid GGUF (exit 0) */
    struct dsi_model *m;
    struct dsi_model_params mp = dsi_model_default_params();
    mp.load = DSI_LOAD_MMAP;
    mp.no_repack = true;
    if (dsi_model_load_ex(path, &mp, &m) != DSI_OK) {
        printf("\nmodel: dsinfer cannot run this file (the reason is above)\n");
        return 0;
    }
    char b2[32], b3[32];
    printf("\nmodel: %s, architecture %s, %" PRId64 " layers, %" PRIu64 " parameters\n",
           dsi_model_name(m), dsi_model_arch(m), dsi_model_n_layer(m), dsi_model_n_params(m));
    uint64_t kv16 = dsi_model_kv_bytes_per_token(m, DSI_TYPE_F16, false);
    uint64_t kv32 = dsi_model_kv_bytes_per_token(m, DSI_TYPE_F32, false);
    uint64_t naive = dsi_model_kv_bytes_per_token(m, DSI_TYPE_F16, true);
    printf("KV cache per token: %s (f16), %s (f32)", cli_fmt_bytes((double)kv16, b1, sizeof b1),
           cli_fmt_bytes((double)kv32, b2, sizeof b2));
    if (naive != kv16)
        printf("; latent attention cache (the naive per-head form: %s f16)",
               cli_fmt_bytes((double)naive, b3, sizeof b3));
    printf("\n");
    dsi_model_free(m);
    return 0;
}
