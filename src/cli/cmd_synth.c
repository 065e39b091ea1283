/* dsinfer synth --arch NAME -o OUT.gguf [--type f16] [--tokenizer FILE|DIR] [--seed S] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dtype.h"
#include "src/cli/cli.h"
#include "src/synth.h"

int dsi_cmd_synth(int argc, char **argv) {
    struct dsi_synth_params p = {NULL, NULL, DSI_TYPE_F16, NULL, 1234, isatty(2), 0, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: dsinfer synth --arch NAME -o OUT.gguf [--type f16|bf16|f32] "
                   "[--tokenizer FILE|DIR] [--seed S]\n"
                   "  Writes a GGUF with the exact shapes and metadata of a real model and seeded\n"
                   "  random weights, for benchmarks. NAME: %s.\n"
                   "  Without --tokenizer a byte-level stand-in tokenizer is written.\n"
                   "  --layers N, --vocab N: a smaller model of the same layout (quick tests).\n"
                   "  --max-rows N: cap every matrix at N rows; the names, row lengths, layers and\n"
                   "      metadata stay real but the file does not run (tests of quantize's rules).\n",
                   dsi_synth_archs());
            return 0;
        } else if (!strcmp(a, "--arch") && i + 1 < argc) p.arch = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) p.out = argv[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) p.tokenizer = argv[++i];
        else if (!strcmp(a, "--type") && i + 1 < argc) {
            enum dsi_type t;
            if (!dsi_type_from_name(argv[++i], &t)) {
                fprintf(stderr, "dsinfer synth: unknown type '%s'\n", argv[i]);
                return 2;
            }
            p.type = (int)t;
        } else if ((!strcmp(a, "--layers") || !strcmp(a, "--vocab") || !strcmp(a, "--max-rows")) &&
                   i + 1 < argc) {
            int64_t v;
            if (!cli_parse_i64(a, argv[++i], 1, 1 << 24, &v)) return 2;
            if (a[2] == 'l') p.n_layer = v;
            else if (a[2] == 'v') p.n_vocab = v;
            else p.max_rows = v;
        } else if (!strcmp(a, "--seed") && i + 1 < argc) {
            int64_t s;
            if (!cli_parse_i64(a, argv[++i], 0, INT64_MAX, &s)) return 2;
            p.seed = (uint64_t)s;
        } else {
            fprintf(stderr, "dsinfer synth: unknown or incomplete option '%s'\n", a);
            return 2;
        }
    }
    if (!p.arch || !p.out) {
        fprintf(stderr, "usage: dsinfer synth --arch NAME -o OUT.gguf (NAME: %s)\n", dsi_synth_archs());
        return 2;
    }
    if (dsi_synth(&p) != DSI_OK) return 1;
    fprintf(stderr, "synth: wrote %s\n", p.out);
    return 0;
}
