/* dsinfer chat: interactive multi-turn chat through the model's chat template.
 *
 * Each turn renders the whole conversation, tokenizes it (special tokens parsed, no BOS of
 * our own: the template writes it), and evaluates only what differs from the tokens already
 * in the KV cache. A DeepSeek-VL2 model (a vision encoder) takes pictures (/image PATH, for
 * the next message) and its own conversation format instead of a template: each turn builds
 * the prompt with every picture so far (dsi_vl2_prompt_chat), and the cache is reused as
 * far as both the ids and the image-token embeddings agree. An R1 model's reasoning (between <think> and </think>) is shown dimmed on
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
#include "src/vision/image.h"
#include "src/vision/vl2.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsinfer chat -m MODEL [options]\n"
               "  Type a message and press enter; /reset starts over, /exit or end of input quits.\n"
               "  /image PATH            (DeepSeek-VL2) a picture for the next message; it goes\n"
               "                         where that message says <image>, else at its start\n"
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

/* The pictures of a VL2 conversation: all of them so far; the last n_pending go with the next
 * user message. */
struct pictures {
    struct dsi_image im[64];
    int n, n_pending;
    struct dsi_vl2_cache enc; /* their image tokens: each picture goes through the tower once */
};

static void pictures_clear(struct pictures *p) {
    for (int i = 0; i < p->n; i++) dsi_image_free(&p->im[i]);
    p->n = p->n_pending = 0;
    dsi_vl2_cache_free(&p->enc);
}

/* /image PATH */
static void picture_add(struct pictures *p, const struct dsi_model *m, const char *path) {
    while (*path == ' ') path++;
    if (!dsi_model_vl2(m)) {
        fprintf(stderr, "dsinfer chat: /image needs a model with a vision encoder (DeepSeek-VL2); "
                        "'%s' has none\n", dsi_model_name(m));
    } else if (!*path) {
        fprintf(stderr, "dsinfer chat: /image PATH\n");
    } else if (p->n == (int)(sizeof p->im / sizeof p->im[0])) {
        fprintf(stderr, "dsinfer chat: at most %d pictures in a conversation; /reset\n", p->n);
    } else if (dsi_image_load(path, &p->im[p->n])) {
        fprintf(stderr, "dsinfer chat: cannot load the picture '%s' (above); nothing changed\n", path);
    } else {
        fprintf(stderr, "(picture %s, %dx%d: it goes with your next message)\n", path,
                p->im[p->n].w, p->im[p->n].h);
        p->n++;
        p->n_pending++;
    }
}

/* The user's message as it enters the conversation: the pending pictures' placeholders first
 * unless it places them itself (malloc'd). */
static char *vl2_user_text(const struct pictures *p, const char *line) {
    int k = strstr(line, "<image>") ? 0 : p->n_pending;
    size_t n = strlen(line);
    char *t = malloc(n + 8 * (size_t)k + 1), *q = t;
    if (!t) return NULL;
    for (int i = 0; i < k; i++, q += 8) memcpy(q, "<image>\n", 8);
    memcpy(q, line, n + 1);
    return t;
}

/* The whole conversation in VL2's format with every picture; false (message printed) if the
 * messages or pictures do not make a prompt. */
static bool vl2_build(const struct dsi_model *m, const cJSON *msgs, struct pictures *p,
                      int n_threads, struct dsi_vl2_prompt *vp) {
    int n = cJSON_GetArraySize(msgs), k = 0;
    struct dsi_vl2_msg *vm = calloc((size_t)(n ? n : 1), sizeof *vm);
    if (!vm) return false;
    const cJSON *it;
    cJSON_ArrayForEach(it, msgs) {
        vm[k].role = cJSON_GetObjectItemCaseSensitive(it, "role")->valuestring;
        vm[k++].content = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
    }
    enum dsi_status st = dsi_vl2_prompt_chat_cached(m, vm, n, p->im, p->n, n_threads, &p->enc, vp);
    free(vm);
    if (st) {
        fprintf(stderr, "dsinfer chat: cannot build the prompt (above); the message is dropped%s\n",
                p->n_pending ? ", the new pictures wait for the next one" : "");
        return false;
    }
    if (vp->n_views)
        fprintf(stderr, "(%d picture(s): %lld image tokens; %d new views encoded in %.2f s)\n",
                p->n, (long long)vp->n_image_tokens, vp->n_views, vp->t_encode);
    return true;
}

/* Whether cache position i (made from prev, or generated when past it) holds what the new
 * prompt has there: the same id, and the same image-token embedding or none. */
static bool same_row(const struct dsi_vl2_prompt *prev, const struct dsi_vl2_prompt *vp,
                     int64_t i, int64_t n_embd) {
    const float *a = i < prev->n ? prev->rows[i] : NULL, *b = vp->rows[i];
    return a == b || (a && b && !memcmp(a, b, (size_t)n_embd * sizeof *a));
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
    bool vl2 = dsi_model_vl2(m) != NULL;
    struct pictures pics = {0};
    struct dsi_vl2_prompt prev = {0}; /* VL2: the prompt whose ids and rows begin the cache */
    if (vl2 && o.chat_template)
        fprintf(stderr, "dsinfer chat: %s is a DeepSeek-VL2 model: its own conversation format "
                        "is used, not --chat-template\n", dsi_model_name(m));
    if (!vl2 && dsi_chat_template_for(m, o.chat_template, &tmpl, &tmpl_owned)) goto done;
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
            pictures_clear(&pics);
            dsi_vl2_prompt_free(&prev);
            fprintf(stderr, "(conversation reset)\n");
            continue;
        }
        if (!strncmp(line, "/image", 6) && (line[6] == ' ' || !line[6])) {
            picture_add(&pics, m, line + 6);
            continue;
        }
        char *prompt = NULL;
        int32_t *ids = NULL;
        size_t n = 0;
        struct dsi_vl2_prompt vp = {0};
        if (vl2) {
            char *text = vl2_user_text(&pics, line);
            if (!text) goto done;
            add_message(msgs, "user", text);
            free(text);
            if (!vl2_build(m, msgs, &pics, o.n_threads, &vp)) {
                cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1);
                continue;
            }
            ids = vp.ids;
            n = (size_t)vp.n;
        } else {
            add_message(msgs, "user", line);
            struct dsi_chat_params cp = {true, NULL};
            if (dsi_chat_render(m, tmpl, msgs, &cp, &prompt)) goto done;
            if (dsi_tokenizer_encode(tok, prompt, strlen(prompt), DSI_TOK_PARSE_SPECIAL, &ids, &n)) {
                free(prompt);
                fprintf(stderr, "dsinfer chat: cannot tokenize the message (it must be UTF-8)\n");
                cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1);
                continue;
            }
        }
        if ((int64_t)n >= dsi_context_n_ctx(c)) {
            fprintf(stderr, "dsinfer chat: the conversation (%zu tokens) no longer fits the context "
                            "of %lld; /reset or raise -c\n", n, (long long)dsi_context_n_ctx(c));
            if (!vl2) free(ids);
            dsi_vl2_prompt_free(&vp);
            free(prompt);
            cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1);
            continue;
        }
        /* reuse the cached prefix (VL2: where the image-token embeddings agree too) */
        int64_t keep = 0, n_embd = dsi_model_n_embd(m);
        while (keep < n_cache && keep < (int64_t)n - 1 && cache[keep] == ids[keep] &&
               (!vl2 || same_row(&prev, &vp, keep, n_embd)))
            keep++;
        struct think_filter tf = {0};
        tf.tty = isatty(1);
        tf.hide = o.no_think_display;
        size_t plen = prompt ? strlen(prompt) : 0;
        if (plen >= 8 && !strcmp(prompt + plen - 8, "<think>\n")) set_think(&tf, true);
        else if (plen >= 7 && !strcmp(prompt + plen - 7, "<think>")) set_think(&tf, true);
        struct dsi_gen_params gp = {o.n_predict, o.stop, o.n_stop, false, false, NULL};
        if (vp.n_image_tokens) gp.prompt_embd = vp.rows + keep;
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
            /* the cache now begins with this prompt; its pictures are part of the history */
            dsi_vl2_prompt_free(&prev);
            prev = vp;
            memset(&vp, 0, sizeof vp);
            pics.n_pending = 0;
        } else {
            n_cache = 0;
            cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1);
        }
        free(out);
        free(tf.reply);
        if (!vl2) free(ids);
        dsi_vl2_prompt_free(&vp);
        free(prompt);
    }
    rc = 0;
done:
    pictures_clear(&pics);
    dsi_vl2_prompt_free(&prev);
    free(cache);
    cJSON_Delete(msgs);
    dsi_sampler_free(smp);
    dsi_context_free(c);
    free(tmpl_owned);
    dsi_model_free(m);
    return rc;
}
