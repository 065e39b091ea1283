/* Options shared by the generation-related subcommands (run, chat, logits, perplexity, bench),
 * with llama.cpp's flag names where they exist. */
#ifndef DSI_CLI_COMMON_H
#define DSI_CLI_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "src/model.h"
#include "src/sampler.h"
#include "src/vision/vl2.h"

/* GPU offload options (src/cli/gpu.c). */
struct cli_gpu_opts {
    int ngl;         /* DSI_NGL_AUTO by default (the DSINFER_NGL environment variable overrides) */
    int device;      /* -1: the default device */
    uint64_t budget; /* 0: the default */
    bool validation;
    bool cpu_moe;    /* --cpu-moe */
};
void cli_gpu_init(struct cli_gpu_opts *g);
/* 1: consumed (with its value), 0: not a GPU option, -1: bad value (message printed). */
int cli_gpu_parse(struct cli_gpu_opts *g, int argc, char **argv, int *i);
bool cli_gpu_parse_ngl(const char *s, int *ngl);
bool cli_parse_size(const char *opt, const char *s, uint64_t *out);
void cli_gpu_help(FILE *f);
void cli_gpu_apply(const struct cli_gpu_opts *g, struct dsi_model_params *mp);

struct cli_opts {
    struct cli_gpu_opts gpu;
    const char *model, *prompt, *file, *prompt_ids, *out, *chat_template;
    int64_t n_predict, n_ctx, n_batch;
    int n_threads;
    enum dsi_type kv_type;
    enum dsi_load_mode load;
    struct dsi_sampler_params sp;
    bool seed_set, print_ids, ignore_eos, no_echo, verbose, no_think_display, mla_naive, no_repack;
    const char *stop[16];
    int n_stop;
    const char *images[16]; /* --image FILE (DeepSeek-VL2 models) */
    int n_images;
    bool raw_prompt;        /* VL2: -p is already in the conversation format */
};

void cli_opts_init(struct cli_opts *o);
/* Consume the option at argv[*i] (and its value) if it is a shared one. Returns 1 if consumed,
 * 0 if not a shared option, -1 on a bad value (message printed). */
int cli_opts_parse(struct cli_opts *o, int argc, char **argv, int *i);
/* Help text of the shared options. */
void cli_opts_help(FILE *f, bool sampling);

/* Load the model named by -m, with timing on stderr. */
struct dsi_model *cli_load_model(const struct cli_opts *o, double *seconds);
/* A context for the model with -c/-b/-t/--kv-type (n_ctx at least min_ctx). */
struct dsi_context *cli_make_context(const struct cli_opts *o, const struct dsi_model *m,
                                     int64_t min_ctx);
/* A prompt: token ids, and for a DeepSeek-VL2 model the image-token embeddings (rows[i]
 * NULL for text; rows NULL when there are none). */
struct cli_prompt {
    int32_t *ids;
    int64_t n;
    const float *const *rows;
    struct dsi_vl2_prompt vp;
};
/* The prompt: --prompt-ids, or -p/-f text tokenized with BOS as configured and special
 * tokens parsed; for a model with a vision encoder the text is the user's message in VL2's
 * conversation format (unless --raw-prompt) and --image pictures go to its <image>
 * placeholders. Returns false with a message on failure. */
bool cli_prompt_tokens(const struct cli_opts *o, const struct dsi_model *m, struct cli_prompt *p);
void cli_prompt_free(struct cli_prompt *p);
/* Parse "1 2 3" into ids (malloc'd). */
bool cli_parse_ids(const char *s, int32_t **ids, int64_t *n);

#endif
