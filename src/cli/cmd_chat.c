/* dsinfer chat: interactive multi-turn chat through the model's chat template.
 *
 * Each turn renders the whole conversation, tokenizes it (special tokens parsed, no BOS of
 * our own: the template writes it), and evaluates only what differs from the tokens already
 * in the KV cache. An R1 model's reasoning (between <think> and </think>) is shown dimmed on
 * a terminal, bracketed otherwise, or hidden with --no-think-display; it is kept out of the
 * history the template sees, as the template itself drops it. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "src/chat.h"
#include "src/cli/cli.h"
#include "src/cli/common.h"
#include "src/generate.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsinfer chat -m MODEL [options]\n"
               "  Type a message and press enter; /reset starts over, /exit or end of input quits.\n"
               "  --system TEXT          a system message\n"
               "  --chat-template NAME|FILE   override the model's template (built-in: chatml,\n"
               "                         deepseek-r1, deepseek-v2, llama3, plain)\n"
               "  --no-think-display     hide an R1 model's <think> section\n");
    cli_opts_help(f, true);
}

/* Streams generated text, styling the <think> ... </think> section. */
struct think_filter {
    bool in_think, tty, hide;
    char hold[16]; /* a possible start of a tag, not yet known */
    size_t n_hold;
    char *reply;   /* everything generated this turn */
    size_t reply_n, reply_cap;
};

static void emit(struct think_filter *f, const char *s, size_t n) {
    if (!n || (f->in_think && f->hide)) return;
    fwrite(s, 1, n, stdout);
}

static void set_think(struct think_filter *f, bool on) {
    f->in_think = on;
    if (f->hide) return;
    if (f->tty) fputs(on ? "\x1b[2m" : "\x1b[0m", stdout);
    else fputs(on ? "[think]" : "[/think]", stdout);
}

static void filter_text(struct think_filter *f, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        f->hold[f->n_hold++] = s[i];
        const char *tag = f->in_think ? "</think>" : "<think>";
        size_t tl = strlen(tag);
        if (f->n_hold <= tl && !memcmp(f->hold, tag, f->n_hold)) {
            if (f->n_hold == tl) {
                f->n_hold = 0;
                set_think(f, !f->in_think);
            }
            continue;
        }
        /* not a tag: emit the first held byte and retry the rest */
        emit(f, f->hold, 1);
        memmove(f->hold, f->hold + 1, --f->n_hold);
        while (f->n_hold && memcmp(f->hold, tag, f->n_hold < tl ? f->n_hold : tl)) {
            emit(f, f->hold, 1);
            memmove(f->hold, f->hold + 1, --f->n_hold);
        }
    }
}

static bool on_text(void *user, const char *text, size_t len, int32_t token) {
    (void)token;
    struct think_filter *f = user;
    if (f->reply_n + len + 1 > f->reply_cap) {
        size_t cap = (f->reply_cap ? f->reply_cap * 2 : 1024) + len;
        char *p = realloc(f->reply, cap);
        if (!p) return false;
        f->reply = p;
        f->reply_cap = cap;
    }
    memcpy(f->reply + f->reply_n, text, len);
    f->reply_n += len;
    f->reply[f->reply_n] = '\0';
    filter_text(f, text, len);
    fflush(stdout);
    return true;
}

static void add_message(cJSON *msgs, const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    cJSON_AddItemToArray(msgs, m);
}

int dsi_cmd_chat(int argc, char **argv) {
    struct cli_opts o;
    cli_opts_init(&o);
    const char *system = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--system") && i + 1 < argc) {
            system = argv[++i];
            continue;
        }
        int r = cli_opts_parse(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) {
            fprintf(stderr, "dsinfer chat: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!o.seed_set) o.sp.seed = (uint64_t)time(NULL);
    struct dsi_model *m = cli_load_model(&o, NULL);
    if (!m) return 1;
    const char *tmpl;
    char *tmpl_owned = NULL;
    struct dsi_context *c = NULL;
    struct dsi_sampler *smp = NULL;
    cJSON *msgs = cJSON_CreateArray();
    int32_t *cache = NULL; /* tokens in the KV cache */
    int64_t n_cache = 0;
    int rc = 1;
    if (dsi_chat_template_for(m, o.chat_template, &tmpl, &tmpl_owned)) goto done;
    c = cli_make_context(&o, m, 0);
    smp = c ? dsi_sampler_init(&o.sp, (int32_t)dsi_model_n_vocab(m)) : NULL;
    cache = malloc((size_t)(c ? dsi_context_n_ctx(c) : 1) * sizeof *cache);
    if (!c || !smp || !cache) goto done;
    if (system) add_message(msgs, "system", system);
    const struct dsi_tokenizer *tok = dsi_model_tokenizer(m);
    bool tty_in = isatty(0);
    fprintf(stderr, "dsinfer chat: %s, context %lld tokens. /reset to start over, /exit to quit.\n",
            dsi_model_name(m), (long long)dsi_context_n_ctx(c));
    char line[65536];
    for (;;) {
        if (tty_in) {
            fputs("\n> ", stdout);
            fflush(stdout);
        }
        if (!fgets(line, sizeof line, stdin)) break;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!len) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            cJSON_Delete(msgs);
            msgs = cJSON_CreateArray();
            if (system) add_message(msgs, "system", system);
            n_cache = 0;
            fprintf(stderr, "(conversation reset)\n");
            continue;
        }
        add_message(msgs, "user", line);
        char *prompt = NULL;
        struct dsi_chat_params cp = {true, NULL};
        if (dsi_chat_render(m, tmpl, msgs, &cp, &prompt)) goto done;
        int32_t *ids;
        size_t n;
        if (dsi_tokenizer_encode(tok, prompt, strlen(prompt), DSI_TOK_PARSE_SPECIAL, &ids, &n)) {
            free(prompt);
            fprintf(stderr, "dsinfer chat: cannot tokenize the message (it must be UTF-8)\n");
            cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1);
            continue;
        }
        if ((int64_t)n >= dsi_context_n_ctx(c)) {
            fprintf(stderr, "dsinfer chat: the conversation (%zu tokens) no longer fits the context "
                            "of %lld; /reset or raise -c\n", n, (long long)dsi_context_n_ctx(c));
            free(ids);
            free(prompt);
            cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1);
            continue;
        }
        /* reuse the cached prefix */
        int64_t keep = 0;
        while (keep < n_cache && keep < (int64_t)n - 1 && cache[keep] == ids[keep]) keep++;
        struct think_filter tf = {0};
        tf.tty = isatty(1);
        tf.hide = o.no_think_display;
        size_t plen = strlen(prompt);
        if (plen >= 8 && !strcmp(prompt + plen - 8, "<think>\n")) set_think(&tf, true);
        else if (plen >= 7 && !strcmp(prompt + plen - 7, "<think>")) set_think(&tf, true);
        struct dsi_gen_params gp = {o.n_predict, o.stop, o.n_stop, false, false, NULL};
        struct dsi_gen_stats st;
        int32_t *out = NULL;
        int64_t n_out = 0;
        dsi_sampler_reset(smp);
        enum dsi_status s = dsi_generate(c, smp, ids + keep, (int64_t)n - keep, keep, &gp, on_text,
                                         &tf, &out, &n_out, &st);
        if (tf.n_hold) emit(&tf, tf.hold, tf.n_hold);
        if (tf.in_think && tf.tty && !tf.hide) fputs("\x1b[0m", stdout);
        fputc('\n', stdout);
        fflush(stdout);
        if (s == DSI_OK) {
            memcpy(cache, ids, n * sizeof *ids);
            n_cache = (int64_t)n;
            for (int64_t i = 0; i < n_out && n_cache < dsi_context_n_ctx(c); i++) cache[n_cache++] = out[i];
            /* the sampled token after the last evaluated one is not in the cache */
            if (n_cache > dsi_context_n_past(c)) n_cache = dsi_context_n_past(c);
            add_message(msgs, "assistant", tf.reply ? tf.reply : "");
            if (o.verbose)
                fprintf(stderr, "(%lld prompt tokens, %.1f t/s; %lld generated, %.1f t/s; %s)\n",
                        (long long)st.n_prompt, st.n_prompt / (st.t_prompt + 1e-9), (long long)st.n_gen,
                        st.n_gen / (st.t_gen + 1e-9), dsi_stop_reason_str(st.stop));
            if (st.stop == DSI_STOP_CONTEXT)
                fprintf(stderr, "dsinfer chat: the context is full; /reset to continue\n");
        } else {
            n_cache = 0;
            cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1);
        }
        free(out);
        free(tf.reply);
        free(ids);
        free(prompt);
    }
    rc = 0;
done:
    free(cache);
    cJSON_Delete(msgs);
    dsi_sampler_free(smp);
    dsi_context_free(c);
    free(tmpl_owned);
    dsi_model_free(m);
    return rc;
}
