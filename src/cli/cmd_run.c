/* dsinfer run: generate text from a prompt, streaming it to stdout (or the ids with
 * --print-ids); load time and prompt/generation speeds on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu.h"
#include "src/cli/cli.h"
#include "src/cli/common.h"
#include "src/generate.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsinfer run -m MODEL (-p TEXT | -f FILE | --prompt-ids \"1 2 3\") [options]\n");
    cli_opts_help(f, true);
    fprintf(f, "  --print-ids            print only the generated token ids (space-separated)\n"
               "  --no-echo              do not print the prompt before the generated text\n");
}

/* Peak and current resident memory from /proc/self/status (Linux), in MiB. */
static void print_memory(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256];
    long hwm = -1, anon = -1, file = -1;
    while (fgets(line, sizeof line, f)) {
        sscanf(line, "VmHWM: %ld kB", &hwm);
        sscanf(line, "RssAnon: %ld kB", &anon);
        sscanf(line, "RssFile: %ld kB", &file);
    }
    fclose(f);
    fprintf(stderr, "dsinfer: memory: peak RSS %.0f MiB; now %.0f MiB anonymous (KV cache, scratch) + "
                    "%.0f MiB of mapped weight pages\n", hwm / 1024.0, anon / 1024.0, file / 1024.0);
}

static bool print_text(void *user, const char *text, size_t len, int32_t token) {
    (void)user;
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

int dsi_cmd_run(int argc, char **argv) {
    struct cli_opts o;
    cli_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        int r = cli_opts_parse(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) {
            fprintf(stderr, "dsinfer run: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!o.seed_set) o.sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    double t_load;
    struct dsi_model *m = cli_load_model(&o, &t_load);
    if (!m) return 1;
    struct cli_prompt cp = {0};
    const int32_t *prompt = NULL;
    int64_t n_prompt = 0;
    struct dsi_context *c = NULL;
    struct dsi_sampler *smp = NULL;
    int rc = 1;
    if (!cli_prompt_tokens(&o, m, &cp)) goto done;
    prompt = cp.ids;
    n_prompt = cp.n;
    if (n_prompt == 0) {
        fprintf(stderr, "dsinfer run: the prompt is empty\n");
        goto done;
    }
    c = cli_make_context(&o, m, 0);
    if (!c) goto done;
    if (n_prompt >= dsi_context_n_ctx(c)) {
        fprintf(stderr, "dsinfer run: the prompt has %lld tokens, more than the context of %lld "
                        "(raise -c)\n", (long long)n_prompt, (long long)dsi_context_n_ctx(c));
        goto done;
    }
    smp = dsi_sampler_init(&o.sp, (int32_t)dsi_model_n_vocab(m));
    if (!smp) goto done;
    fprintf(stderr, "dsinfer: %s (%s, %.2f GB of weights) loaded in %.2f s; cpu: %s; seed %llu\n",
            dsi_model_name(m), dsi_model_arch(m), dsi_model_weight_bytes(m) / 1e9, t_load,
            dsi_cpu_describe(), (unsigned long long)o.sp.seed);
    if (!o.print_ids && !o.no_echo) {
        /* echo the prompt as the model sees it (special tokens rendered; a picture's image
         * tokens as one "<image>") */
        for (int64_t i = 0, j; i < n_prompt; i = j) {
            bool img = cp.rows && cp.rows[i];
            for (j = i + 1; j < n_prompt && (cp.rows && cp.rows[j]) == img; j++) {}
            char *txt;
            size_t len;
            if (img) fputs("<image>", stdout);
            else if (dsi_tokenizer_decode(dsi_model_tokenizer(m), prompt + i, (size_t)(j - i),
                                          DSI_TOK_RENDER_SPECIAL, &txt, &len) == DSI_OK) {
                fwrite(txt, 1, len, stdout);
                free(txt);
            }
        }
    }
    struct dsi_gen_params gp = {o.n_predict, o.stop, o.n_stop, o.ignore_eos, false, cp.rows};
    struct dsi_gen_stats st;
    int32_t *out = NULL;
    int64_t n_out = 0;
    enum dsi_status s = dsi_generate(c, smp, prompt, n_prompt, 0, &gp,
                                     o.print_ids ? NULL : print_text, NULL,
                                     o.print_ids ? &out : NULL, &n_out, &st);
    if (s == DSI_OK) {
        if (o.print_ids) {
            for (int64_t i = 0; i < n_out; i++) printf(i ? " %d" : "%d", out[i]);
        }
        printf("\n");
        fflush(stdout);
        fprintf(stderr, "dsinfer: prompt %lld tokens in %.3f s (%.2f t/s); generated %lld tokens in "
                        "%.3f s (%.2f t/s); stop: %s\n",
                (long long)st.n_prompt, st.t_prompt, st.n_prompt / (st.t_prompt > 0 ? st.t_prompt : 1e-9),
                (long long)st.n_gen, st.t_gen, st.n_gen / (st.t_gen > 0 ? st.t_gen : 1e-9),
                dsi_stop_reason_str(st.stop));
        if (st.stop == DSI_STOP_CONTEXT)
            fprintf(stderr, "dsinfer: the context of %lld tokens is full (raise -c)\n",
                    (long long)dsi_context_n_ctx(c));
        if (o.verbose) print_memory();
        rc = 0;
    }
    free(out);
done:
    dsi_sampler_free(smp);
    dsi_context_free(c);
    cli_prompt_free(&cp);
    dsi_model_free(m);
    return rc;
}
