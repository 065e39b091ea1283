/* Shared options of the generation subcommands (see common.h). */
#include "src/cli/common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/file.h"
#include "src/cli/cli.h"
#include "src/generate.h"
#include "src/vision/image.h"

void cli_opts_init(struct cli_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = -1;
    o->n_batch = 512;
    o->kv_type = DSI_TYPE_F16;
    o->sp = dsi_sampler_default_params();
    cli_gpu_init(&o->gpu);
}

static const char *need(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "dsinfer: option %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_opts_parse(struct cli_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v;
    int64_t x;
    int g = cli_gpu_parse(&o->gpu, argc, argv, i);
    if (g) return g;
#define IS(s) (!strcmp(a, s))
#define VAL() if (!(v = need(argc, argv, i))) return -1
    if (IS("-m") || IS("--model")) { VAL(); o->model = v; }
    else if (IS("-p") || IS("--prompt")) { VAL(); o->prompt = v; }
    else if (IS("-f") || IS("--file")) { VAL(); o->file = v; }
    else if (IS("--prompt-ids")) { VAL(); o->prompt_ids = v; }
    else if (IS("-o") || IS("--output")) { VAL(); o->out = v; }
    else if (IS("--chat-template")) { VAL(); o->chat_template = v; }
    else if (IS("--image")) {
        VAL();
        if (o->n_images == (int)(sizeof o->images / sizeof o->images[0])) {
            fprintf(stderr, "dsinfer: at most %d --image options\n", o->n_images);
            return -1;
        }
        o->images[o->n_images++] = v;
    } else if (IS("--raw-prompt")) o->raw_prompt = true;
    else if (IS("-n") || IS("--n-predict")) {
        VAL();
        if (!cli_parse_i64(a, v, -1, (int64_t)1 << 40, &o->n_predict)) return -1;
    } else if (IS("-c") || IS("--ctx-size")) {
        VAL();
        if (!cli_parse_i64(a, v, 0, (int64_t)1 << 24, &o->n_ctx)) return -1;
    } else if (IS("-b") || IS("--batch-size")) {
        VAL();
        if (!cli_parse_i64(a, v, 1, 1 << 16, &o->n_batch)) return -1;
    } else if (IS("-t") || IS("--threads")) {
        VAL();
        if (!cli_parse_i64(a, v, 1, 1024, &x)) return -1;
        o->n_threads = (int)x;
    } else if (IS("--kv-type") || IS("-ctk")) {
        VAL();
        if (!strcmp(v, "f16")) o->kv_type = DSI_TYPE_F16;
        else if (!strcmp(v, "f32")) o->kv_type = DSI_TYPE_F32;
        else {
            fprintf(stderr, "dsinfer: --kv-type must be f16 or f32, got '%s'\n", v);
            return -1;
        }
    } else if (IS("--temp") || IS("--temperature")) {
        VAL();
        if (!cli_parse_f32(a, v, &o->sp.temperature)) return -1;
    } else if (IS("--top-k")) {
        VAL();
        if (!cli_parse_i64(a, v, 0, INT32_MAX, &x)) return -1;
        o->sp.top_k = (int32_t)x;
    } else if (IS("--top-p")) {
        VAL();
        if (!cli_parse_f32(a, v, &o->sp.top_p)) return -1;
    } else if (IS("--min-p")) {
        VAL();
        if (!cli_parse_f32(a, v, &o->sp.min_p)) return -1;
    } else if (IS("--repeat-penalty")) {
        VAL();
        if (!cli_parse_f32(a, v, &o->sp.repeat_penalty) || o->sp.repeat_penalty <= 0) {
            fprintf(stderr, "dsinfer: --repeat-penalty must be positive\n");
            return -1;
        }
    } else if (IS("--repeat-last-n")) {
        VAL();
        if (!cli_parse_i64(a, v, -1, 1 << 20, &x)) return -1;
        o->sp.repeat_last_n = (int32_t)x;
    } else if (IS("--presence-penalty")) {
        VAL();
        if (!cli_parse_f32(a, v, &o->sp.presence_penalty)) return -1;
    } else if (IS("--frequency-penalty")) {
        VAL();
        if (!cli_parse_f32(a, v, &o->sp.frequency_penalty)) return -1;
    } else if (IS("-s") || IS("--seed")) {
        VAL();
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || end == v || *end) {
            fprintf(stderr, "dsinfer: --seed expects a non-negative integer\n");
            return -1;
        }
        o->sp.seed = s;
        o->seed_set = true;
    } else if (IS("--stop")) {
        VAL();
        if (o->n_stop >= 16) {
            fprintf(stderr, "dsinfer: at most 16 --stop strings\n");
            return -1;
        }
        o->stop[o->n_stop++] = v;
    } else if (IS("--print-ids")) o->print_ids = true;
    else if (IS("--ignore-eos")) o->ignore_eos = true;
    else if (IS("--no-echo")) o->no_echo = true;
    else if (IS("--mla-naive")) o->mla_naive = true;
    else if (IS("--mmap")) o->load = DSI_LOAD_MMAP;
    else if (IS("--no-mmap")) o->load = DSI_LOAD_COPY;
    else if (IS("--no-repack")) o->no_repack = true;
    else if (IS("--no-think-display")) o->no_think_display = true;
    else if (IS("-v") || IS("--verbose")) o->verbose = true;
    else return 0;
#undef IS
#undef VAL
    return 1;
}

void cli_opts_help(FILE *f, bool sampling) {
    fprintf(f, "  -m, --model PATH       a .gguf file or a Hugging Face model directory\n"
               "  -t, --threads N        threads (default: all cores)\n"
               "  -c, --ctx-size N       context length in tokens (default: min(4096, trained))\n"
               "  -b, --batch-size N     tokens per forward pass (default 512)\n"
               "  --kv-type f16|f32      KV cache precision (default f16)\n"
               "  --mla-naive            deepseek2: cache full per-head keys/values instead of\n"
               "                         the latent (for comparison; more memory)\n"
               "  --mmap, --no-mmap      map the weights file / read it into huge-page memory\n"
               "  --no-repack            keep Q4_0 matrices in ggml's row layout (no 16-row panels)\n"
               "                         (default: read when it fits in free memory)\n"
               "  --image FILE           DeepSeek-VL2: a picture (JPEG, PNG, BMP, GIF) for the next\n"
               "                         <image> in the prompt (repeatable; with no <image>, the\n"
               "                         pictures go first); the prompt is the user's message\n"
               "  --raw-prompt           DeepSeek-VL2: the prompt is already formatted\n"
               "                         (\"<|User|>: ...\\n\\n<|Assistant|>:\"; BOS is added)\n");
    if (sampling)
        fprintf(f, "  -n, --n-predict N      tokens to generate (default: until EOS or full context)\n"
                   "  --temp T               temperature (default 0.8; 0 = greedy)\n"
                   "  --top-k K              (default 40; 0 = off)\n"
                   "  --top-p P              (default 0.95; 1 = off)\n"
                   "  --min-p P              (default 0.05; 0 = off)\n"
                   "  --repeat-penalty R     (default 1.0 = off), over --repeat-last-n N (64)\n"
                   "  --presence-penalty P, --frequency-penalty F   (default 0)\n"
                   "  -s, --seed S           random seed (default: from the clock, printed)\n"
                   "  --stop STR             stop when STR is generated (repeatable)\n"
                   "  --ignore-eos           do not stop at end-of-generation tokens\n");
    cli_gpu_help(f);
}

struct dsi_model *cli_load_model(const struct cli_opts *o, double *seconds) {
    if (!o->model) {
        fprintf(stderr, "dsinfer: no model given (-m MODEL)\n");
        return NULL;
    }
    double t0 = dsi_time_now();
    struct dsi_model *m;
    struct dsi_model_params mp = dsi_model_default_params();
    mp.load = o->load;
    mp.no_repack = o->no_repack;
    cli_gpu_apply(&o->gpu, &mp);
    mp.gpu_ctx = o->n_ctx;
    if (dsi_model_load_ex(o->model, &mp, &m) != DSI_OK) {
        fprintf(stderr, "dsinfer: cannot load model '%s'\n", o->model);
        return NULL;
    }
    if (seconds) *seconds = dsi_time_now() - t0;
    if (dsi_model_gpu_name(m)) {
        const char *ex = dsi_model_n_expert(m) == 0 || dsi_model_gpu_layers(m) == 0 ? ""
                         : dsi_model_gpu_experts(m)                               ? " with their experts"
                                                                                  : " (routed experts on the CPU)";
        fprintf(stderr, "dsinfer: %d of %lld layers%s%s%s on %s\n", dsi_model_gpu_layers(m),
                (long long)dsi_model_n_layer(m), ex, dsi_model_gpu_output(m) ? " and the output head" : "",
                dsi_vl2_on_gpu(dsi_model_vl2(m)) ? " and the vision tower" : "", dsi_model_gpu_name(m));
    }
    return m;
}

struct dsi_context *cli_make_context(const struct cli_opts *o, const struct dsi_model *m,
                                     int64_t min_ctx) {
    struct dsi_context_params p = dsi_context_default_params();
    p.n_ctx = o->n_ctx;
    if (p.n_ctx > 0 && p.n_ctx < min_ctx) p.n_ctx = min_ctx;
    p.n_batch = o->n_batch;
    p.n_threads = o->n_threads;
    p.kv_type = o->kv_type;
    p.mla_naive = o->mla_naive;
    struct dsi_context *c;
    if (dsi_context_init(m, &p, &c) != DSI_OK) return NULL;
    return c;
}

bool cli_parse_ids(const char *s, int32_t **ids, int64_t *n) {
    int64_t cap = 64;
    *n = 0;
    *ids = malloc((size_t)cap * sizeof **ids);
    if (!*ids) return false;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\n' || *s == '\t' || *s == '\r') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "dsinfer: '%.20s' is not a token id\n", s);
            free(*ids);
            *ids = NULL;
            return false;
        }
        if (*n == cap) {
            cap *= 2;
            int32_t *q = realloc(*ids, (size_t)cap * sizeof *q);
            if (!q) return false;
            *ids = q;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    return true;
}

/* VL2: the text as the user's message (or raw), the pictures encoded into it. */
static bool vl2_prompt(const struct cli_opts *o, const struct dsi_model *m, const char *text,
                       struct cli_prompt *p) {
    struct dsi_image ims[16];
    enum dsi_status st = DSI_OK;
    int n = 0;
    for (; n < o->n_images && !st; n++) st = dsi_image_load(o->images[n], &ims[n]);
    if (st) n--;
    if (!st) {
        struct dsi_vl2_msg msg = {"user", text};
        /* n_threads 0 (no -t): the tower takes every core, as contexts do */
        st = o->raw_prompt ? dsi_vl2_prompt_raw(m, text, ims, n, o->n_threads, &p->vp)
                           : dsi_vl2_prompt_chat(m, &msg, 1, ims, n, o->n_threads, &p->vp);
    }
    for (int i = 0; i < n; i++) dsi_image_free(&ims[i]);
    if (st) {
        fprintf(stderr, "dsinfer: cannot build the prompt with its images (above)\n");
        return false;
    }
    if (n > 0)
        fprintf(stderr, "dsinfer: %d image(s): %d views, %lld image tokens, encoded in %.2f s\n",
                n, p->vp.n_views, (long long)p->vp.n_image_tokens, p->vp.t_encode);
    p->ids = p->vp.ids;
    p->n = p->vp.n;
    p->rows = n > 0 ? p->vp.rows : NULL;
    return true;
}

void cli_prompt_free(struct cli_prompt *p) {
    if (p->ids != p->vp.ids) free(p->ids);
    dsi_vl2_prompt_free(&p->vp);
    memset(p, 0, sizeof *p);
}

bool cli_prompt_tokens(const struct cli_opts *o, const struct dsi_model *m, struct cli_prompt *p) {
    memset(p, 0, sizeof *p);
    int32_t **ids = &p->ids;
    int64_t *n = &p->n;
    int given = !!o->prompt + !!o->file + !!o->prompt_ids;
    if (given != 1) {
        fprintf(stderr, "dsinfer: give exactly one of -p TEXT, -f FILE, --prompt-ids \"1 2 3\"\n");
        return false;
    }
    if (o->n_images > 0 && !dsi_model_vl2(m)) {
        fprintf(stderr, "dsinfer: --image needs a model with a vision encoder (DeepSeek-VL2); "
                        "'%s' has none\n", dsi_model_name(m));
        return false;
    }
    if (o->n_images > 0 && o->prompt_ids) {
        fprintf(stderr, "dsinfer: --image takes a text prompt (-p or -f), not --prompt-ids\n");
        return false;
    }
    if (o->prompt_ids) {
        if (!cli_parse_ids(o->prompt_ids, ids, n)) return false;
        for (int64_t i = 0; i < *n; i++)
            if ((*ids)[i] >= dsi_model_n_vocab(m)) {
                fprintf(stderr, "dsinfer: prompt id %d is outside the vocabulary (0..%lld)\n",
                        (*ids)[i], (long long)dsi_model_n_vocab(m) - 1);
                free(*ids);
                *ids = NULL;
                return false;
            }
        return true;
    }
    char *buf = NULL;
    size_t len;
    const char *text = o->prompt;
    if (o->file) {
        if (dsi_file_read_all(o->file, (size_t)1 << 30, &buf, &len)) return false;
        text = buf;
    } else {
        len = strlen(text);
    }
    if (dsi_model_vl2(m)) {
        bool ok = strlen(text) == len && vl2_prompt(o, m, text, p);
        if (strlen(text) != len) fprintf(stderr, "dsinfer: the prompt holds a NUL byte\n");
        free(buf);
        return ok;
    }
    size_t nn;
    enum dsi_status s = dsi_tokenizer_encode(dsi_model_tokenizer(m), text, len,
                                             DSI_TOK_ADD_SPECIAL | DSI_TOK_PARSE_SPECIAL, ids, &nn);
    free(buf);
    if (s) {
        fprintf(stderr, "dsinfer: cannot tokenize the prompt%s\n",
                s == DSI_ERR_FORMAT ? " (it must be UTF-8 text)" : "");
        return false;
    }
    *n = (int64_t)nn;
    return true;
}
