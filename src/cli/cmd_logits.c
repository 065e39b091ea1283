/* dsinfer logits: evaluate a prompt in one batch and write float32 little-endian logits for
 * every position, [n_tokens][n_vocab]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/cli/cli.h"
#include "src/cli/common.h"

int dsi_cmd_logits(int argc, char **argv) {
    struct cli_opts o;
    cli_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: dsinfer logits -m MODEL (--prompt-ids \"1 2 3\" | -p TEXT | -f FILE) -o OUT\n"
                   "  Writes float32 little-endian logits of every position ([n_tokens][n_vocab]).\n");
            cli_opts_help(stdout, false);
            return 0;
        }
        int r = cli_opts_parse(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) {
            fprintf(stderr, "dsinfer logits: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!o.out) {
        fprintf(stderr, "dsinfer logits: -o OUT is required\n");
        return 2;
    }
    struct dsi_model *m = cli_load_model(&o, NULL);
    if (!m) return 1;
    struct cli_prompt cp = {0};
    int64_t n = 0;
    struct dsi_context *c = NULL;
    int rc = 1;
    if (!cli_prompt_tokens(&o, m, &cp)) goto done;
    n = cp.n;
    if (n == 0) {
        fprintf(stderr, "dsinfer logits: no tokens\n");
        goto done;
    }
    c = cli_make_context(&o, m, n);
    if (!c) goto done;
    if (n > dsi_context_n_ctx(c)) {
        fprintf(stderr, "dsinfer logits: %lld tokens do not fit the context of %lld (raise -c)\n",
                (long long)n, (long long)dsi_context_n_ctx(c));
        goto done;
    }
    if (dsi_context_decode_embd(c, cp.ids, cp.rows, n, 0, true) != DSI_OK) goto done;
    FILE *f = fopen(o.out, "wb");
    if (!f) {
        fprintf(stderr, "dsinfer logits: cannot create '%s'\n", o.out);
        goto done;
    }
    size_t V = (size_t)dsi_model_n_vocab(m);
    bool ok = true;
    for (int64_t i = 0; i < n && ok; i++) ok = fwrite(dsi_context_logits(c, i), sizeof(float), V, f) == V;
    ok = (fclose(f) == 0) && ok;
    if (!ok) fprintf(stderr, "dsinfer logits: write to '%s' failed\n", o.out);
    else {
        fprintf(stderr, "dsinfer logits: wrote %lld x %zu floats to %s\n", (long long)n, V, o.out);
        rc = 0;
    }
done:
    dsi_context_free(c);
    cli_prompt_free(&cp);
    dsi_model_free(m);
    return rc;
}
