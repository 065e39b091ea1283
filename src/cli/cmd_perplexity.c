/* dsinfer perplexity: the text is tokenized without special tokens and cut into windows of
 * -c tokens starting at 0, c, 2c, ...; each window is evaluated on its own and predicts its
 * next c tokens; perplexity = exp(mean cross-entropy over all predicted tokens). Only whole
 * windows count (a trailing remainder with fewer than c next tokens is dropped, unless the
 * text is shorter than one window). This is the protocol of
 * fixtures/models/shakespeare-qwen2/reference.json, whose 128.96 it reproduces.
 *
 * --kl-divergence-base BASE.gguf evaluates a second model (the unquantized one) on the same
 * windows and compares the two next-token distributions at every position: mean
 * KL(P_base || P_model) with its standard error, median and 99th percentile, and the share of
 * positions whose most likely token agrees (llama.cpp's --kl-divergence reports the same). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "src/cli/cli.h"
#include "src/cli/common.h"
#include "src/generate.h"

/* log-softmax statistics of one row of logits: max and log(sum(exp(l - max))) */
static void lse(const float *lg, int64_t V, double *mx, double *lsum, int64_t *argmax) {
    int64_t am = 0;
    for (int64_t k = 1; k < V; k++)
        if (lg[k] > lg[am]) am = k;
    double m = lg[am], sum = 0;
    for (int64_t k = 0; k < V; k++) sum += exp((double)lg[k] - m);
    *mx = m;
    *lsum = log(sum);
    *argmax = am;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int dsi_cmd_perplexity(int argc, char **argv) {
    struct cli_opts o;
    cli_opts_init(&o);
    o.n_ctx = 256;
    const char *base_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: dsinfer perplexity -m MODEL -f TEXT [-c WINDOW] [--kl-divergence-base "
                   "BASE.gguf]\n"
                   "  Windows of -c tokens (default 256), each predicting its next -c tokens.\n"
                   "  The last line on stdout is 'perplexity: <value>'.\n"
                   "  --kl-divergence-base BASE.gguf  also run BASE (e.g. the F16 model) on the same\n"
                   "      windows: mean KL divergence of MODEL from BASE and top-1 agreement.\n");
            cli_opts_help(stdout, false);
            return 0;
        }
        if (!strcmp(argv[i], "--kl-divergence-base")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "dsinfer perplexity: --kl-divergence-base needs a GGUF file\n");
                return 2;
            }
            base_path = argv[++i];
            continue;
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
    struct dsi_model *m = cli_load_model(&o, NULL), *bm = NULL;
    if (!m) return 1;
    char *text = NULL;
    size_t len;
    int32_t *ids = NULL;
    size_t n = 0;
    struct dsi_context *c = NULL, *bc = NULL;
    double *kls = NULL;
    int rc = 1;
    if (base_path) {
        struct cli_opts bo = o;
        bo.model = base_path;
        bm = cli_load_model(&bo, NULL);
        if (!bm) goto done;
        if (dsi_model_n_vocab(bm) != dsi_model_n_vocab(m)) {
            fprintf(stderr, "dsinfer perplexity: %s has %lld vocabulary entries, %s has %lld\n",
                    base_path, (long long)dsi_model_n_vocab(bm), o.model,
                    (long long)dsi_model_n_vocab(m));
            goto done;
        }
    }
    if (dsi_file_read_all(o.file, (size_t)1 << 31, &text, &len)) goto done;
    if (dsi_tokenizer_encode(dsi_model_tokenizer(m), text, len, 0, &ids, &n)) goto done;
    if (n < 2) {
        fprintf(stderr, "dsinfer perplexity: the text has fewer than 2 tokens\n");
        goto done;
    }
    int64_t W = o.n_ctx;
    c = cli_make_context(&o, m, W);
    if (!c) goto done;
    if (bm && !(bc = cli_make_context(&o, bm, W))) goto done;
    int64_t V = dsi_model_n_vocab(m), n_windows = ((int64_t)n - 1) / W;
    if (n_windows == 0) n_windows = 1; /* a short text: one partial window */
    double nll = 0, bnll = 0, kl_sum = 0, kl_sq = 0;
    int64_t count = 0, agree = 0;
    if (bm && !(kls = malloc((size_t)(n_windows * W) * sizeof *kls))) {
        fprintf(stderr, "dsinfer perplexity: out of memory\n");
        goto done;
    }
    double t0 = dsi_time_now();
    for (int64_t w = 0; w < n_windows; w++) {
        int64_t s = w * W, L = (int64_t)n - 1 - s < W ? (int64_t)n - 1 - s : W;
        if (dsi_context_decode(c, ids + s, L, 0, true) != DSI_OK) goto done;
        if (bc && dsi_context_decode(bc, ids + s, L, 0, true) != DSI_OK) goto done;
        for (int64_t i = 0; i < L; i++) {
            const float *lg = dsi_context_logits(c, i);
            double mx, ls;
            int64_t am;
            lse(lg, V, &mx, &ls, &am);
            nll += -((double)lg[ids[s + i + 1]] - mx - ls);
            if (bc) {
                const float *bl = dsi_context_logits(bc, i);
                double bmx, bls;
                int64_t bam;
                lse(bl, V, &bmx, &bls, &bam);
                bnll += -((double)bl[ids[s + i + 1]] - bmx - bls);
                /* KL(P||Q) = sum p (log p - log q), log p = l - mx - ls */
                double kl = 0;
                for (int64_t k = 0; k < V; k++) {
                    double lp = (double)bl[k] - bmx - bls, lq = (double)lg[k] - mx - ls;
                    kl += exp(lp) * (lp - lq);
                }
                kl = kl < 0 ? 0 : kl; /* rounding can leave a tiny negative */
                kls[count] = kl;
                kl_sum += kl;
                kl_sq += kl * kl;
                agree += am == bam;
            }
            count++;
        }
        double el = dsi_time_now() - t0;
        fprintf(stderr, "\rperplexity: window %lld/%lld, running ppl %.4f, %.1f tokens/s",
                (long long)w + 1, (long long)n_windows, exp(nll / (double)count), count / el);
    }
    fprintf(stderr, "\n");
    printf("tokens: %zu, predicted: %lld, windows: %lld of %lld\n", n, (long long)count,
           (long long)n_windows, (long long)W);
    if (bc) {
        double mean = kl_sum / (double)count, var = kl_sq / (double)count - mean * mean;
        double se = count > 1 && var > 0 ? sqrt(var / (double)(count - 1)) : 0;
        qsort(kls, (size_t)count, sizeof *kls, cmp_double);
        double p = 100.0 * (double)agree / (double)count;
        printf("base perplexity: %.4f\n", exp(bnll / (double)count));
        printf("perplexity ratio: %.6f\n", exp((nll - bnll) / (double)count));
        printf("kl divergence: mean %.6f +/- %.6f, median %.6f, p99 %.6f, max %.6f\n", mean, se,
               kls[count / 2], kls[(int64_t)((double)(count - 1) * 0.99)], kls[count - 1]);
        printf("top-1 agreement: %.3f%% (+/- %.3f%%)\n", p,
               sqrt(p * (100.0 - p) / (double)count));
    }
    printf("perplexity: %.4f\n", exp(nll / (double)count));
    rc = 0;
done:
    free(kls);
    dsi_context_free(bc);
    dsi_model_free(bm);
    dsi_context_free(c);
    free(ids);
    free(text);
    dsi_model_free(m);
    return rc;
}
