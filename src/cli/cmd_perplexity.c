/* dsinfer perplexity: the text is tokenized without special tokens and cut into windows of
 * -c tokens starting at 0, c, 2c, ...; each window is evaluated on its own and predicts its
 * next c tokens; perplexity = exp(mean cross-entropy over all predicted tokens). Only whole
 * windows count (a trailing remainder with fewer than c next tokens is dropped, unless the
 * text is shorter than one window). This is the protocol of
 * fixtures/models/shakespeare-qwen2/reference.json, whose 128.96 it reproduces. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "src/cli/cli.h"
#include "src/cli/common.h"
#include "src/generate.h"

int dsi_cmd_perplexity(int argc, char **argv) {
    struct cli_opts o;
    cli_opts_init(&o);
    o.n_ctx = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: dsinfer perplexity -m MODEL -f TEXT [-c WINDOW]\n"
                   "  Windows of -c tokens (default 256), each predicting its next -c tokens.\n"
                   "  The last line on stdout is 'perplexity: <value>'.\n");
            cli_opts_help(stdout, false);
            return 0;
        }
        int r = cli_opts_parse(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) {
            fprintf(stderr, "dsinfer perplexity: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!o.file || o.n_ctx < 2) {
        fprintf(stderr, "usage: dsinfer perplexity -m MODEL -f TEXT [-c WINDOW >= 2]\n");
        return 2;
    }
    struct dsi_model *m = cli_load_model(&o, NULL);
    if (!m) return 1;
    char *text = NULL;
    size_t len;
    int32_t *ids = NULL;
    size_t n = 0;
    struct dsi_context *c = NULL;
    int rc = 1;
    if (dsi_file_read_all(o.file, (size_t)1 << 31, &text, &len)) goto done;
    if (dsi_tokenizer_encode(dsi_model_tokenizer(m), text, len, 0, &ids, &n)) goto done;
    if (n < 2) {
        fprintf(stderr, "dsinfer perplexity: the text has fewer than 2 tokens\n");
        goto done;
    }
    int64_t W = o.n_ctx;
    c = cli_make_context(&o, m, W);
    if (!c) goto done;
    int64_t V = dsi_model_n_vocab(m), n_windows = ((int64_t)n - 1) / W;
    if (n_windows == 0) n_windows = 1; /* a short text: one partial window */
    double nll = 0;
    int64_t count = 0;
    double t0 = dsi_time_now();
    for (int64_t w = 0; w < n_windows; w++) {
        int64_t s = w * W, L = (int64_t)n - 1 - s < W ? (int64_t)n - 1 - s : W;
        if (dsi_context_decode(c, ids + s, L, 0, true) != DSI_OK) goto done;
        for (int64_t i = 0; i < L; i++) {
            const float *lg = dsi_context_logits(c, i);
            double mx = lg[0], sum = 0;
            for (int64_t k = 1; k < V; k++) mx = lg[k] > mx ? lg[k] : mx;
            for (int64_t k = 0; k < V; k++) sum += exp((double)lg[k] - mx);
            nll += -((double)lg[ids[s + i + 1]] - mx - log(sum));
            count++;
        }
        double el = dsi_time_now() - t0;
        fprintf(stderr, "\rperplexity: window %lld/%lld, running ppl %.4f, %.1f tokens/s",
                (long long)w + 1, (long long)n_windows, exp(nll / (double)count), count / el);
    }
    fprintf(stderr, "\n");
    printf("tokens: %zu, predicted: %lld, windows: %lld of %lld\n", n, (long long)count,
           (long long)n_windows, (long long)W);
    printf("perplexity: %.4f\n", exp(nll / (double)count));
    rc = 0;
done:
    dsi_context_free(c);
    free(ids);
    free(text);
    dsi_model_free(m);
    return rc;
}
