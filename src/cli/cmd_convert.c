/* dsinfer convert HF_DIR OUT.gguf [--outtype f32|f16|bf16|q8_0] */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "src/cli/cli.h"
#include "src/convert.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsinfer convert HF_DIR OUT.gguf [--outtype f32|f16|bf16|q8_0|auto] [--no-progress]\n"
               "  Converts a Hugging Face checkpoint (config.json, *.safetensors, tokenizer.json)\n"
               "  of Qwen2 / Llama / DeepSeek-V2 to GGUF, as llama.cpp's converter would.\n"
               "  Norms, biases and the MoE router are stored as f32. Default outtype: auto\n"
               "  (bf16 for bf16 weights, else f16). q8_0 quantizes every matrix whose rows\n"
               "  are whole blocks of 32 (others stay f16), as llama.cpp's converter does.\n");
}

int dsi_cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    struct dsi_convert_params p = {0};
    p.outtype = -1;
    p.progress = isatty(2);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--outtype") && i + 1 < argc) {
            const char *t = argv[++i];
            if (!strcmp(t, "f32")) p.outtype = DSI_TYPE_F32;
            else if (!strcmp(t, "f16")) p.outtype = DSI_TYPE_F16;
            else if (!strcmp(t, "bf16")) p.outtype = DSI_TYPE_BF16;
            else if (!strcmp(t, "q8_0")) p.outtype = DSI_TYPE_Q8_0;
            else if (!strcmp(t, "auto")) p.outtype = -1;
            else {
                fprintf(stderr, "dsinfer convert: unknown --outtype '%s' (f32, f16, bf16, q8_0, auto)\n", t);
                return 2;
            }
        } else if (!strcmp(a, "--progress")) {
            p.progress = true;
        } else if (!strcmp(a, "--no-progress")) {
            p.progress = false;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "dsinfer convert: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!in || !out) {
        usage(stderr);
        return 2;
    }
    p.in_dir = in;
    p.out_path = out;
    if (dsi_convert(&p) != DSI_OK) return 1;
    fprintf(stderr, "convert: wrote %s\n", out);
    return 0;
}
