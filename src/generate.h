/* Text generation on one context: evaluate a prompt, then sample, detokenize and stream until
 * an end-of-generation token, a stop string, the token limit, or the end of the context.
 *
 * Streaming is UTF-8 safe: bytes of a character split across tokens are held back until the
 * character is complete, and text that could be the start of a stop string is held back
 * until it is known not to be one (a matched stop string is never emitted). */
#ifndef DSI_GENERATE_H
#define DSI_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "src/model.h"
#include "src/sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

enum dsi_stop_reason {
    DSI_STOP_NONE = 0,
    DSI_STOP_EOG,       /* end-of-generation token */
    DSI_STOP_STRING,    /* a stop string was produced */
    DSI_STOP_LENGTH,    /* n_predict tokens */
    DSI_STOP_CONTEXT,   /* the context is full */
    DSI_STOP_CALLBACK,  /* the callback asked to stop */
};

const char *dsi_stop_reason_str(enum dsi_stop_reason r);

struct dsi_gen_params {
    int64_t n_predict;          /* most tokens to generate; < 0: until the context is full */
    const char *const *stop;    /* stop strings (NULL or n_stop entries) */
    int n_stop;
    bool ignore_eog;            /* keep going past end-of-generation tokens */
    bool render_special;        /* emit the text of control tokens */
    const float *const *prompt_embd; /* optional: embedding rows replacing prompt tokens'
                                        (dsi_context_decode_embd), e.g. image tokens */
};

struct dsi_gen_stats {
    int64_t n_prompt, n_gen;
    double t_prompt, t_gen;     /* seconds */
    enum dsi_stop_reason stop;
};

/* Called with each piece of text as it becomes final, and the id of the token that
 * completed it (-1 for the flush at the end). Return false to stop. */
typedef bool (*dsi_gen_text_cb)(void *user, const char *text, size_t len, int32_t token);

/* Evaluate prompt[n_prompt] at position pos0 of the context (tokens before it must already
 * be in the cache), then generate. The sampler's history receives the prompt and the
 * generated tokens. Generated ids are appended to *out_ids when out_ids != NULL (a malloc'd
 * array the caller frees; *n_out its length). */
enum dsi_status dsi_generate(struct dsi_context *c, struct dsi_sampler *smp,
                             const int32_t *prompt, int64_t n_prompt, int64_t pos0,
                             const struct dsi_gen_params *p, dsi_gen_text_cb cb, void *user,
                             int32_t **out_ids, int64_t *n_out, struct dsi_gen_stats *stats);

/* Incremental text of generated tokens, as dsi_generate streams it: bytes of an incomplete
 * UTF-8 character and text that may be the start of a stop string are held back; a stop
 * string ends the stream and is never emitted. Used by the server, one per request. */
struct dsi_textstream {
    const char *const *stop;
    int n_stop;
    char *p;
    size_t n, cap, emitted;
    bool stopped; /* a stop string appeared: nothing more is emitted */
};
void dsi_textstream_init(struct dsi_textstream *ts, const char *const *stop, int n_stop);
void dsi_textstream_free(struct dsi_textstream *ts);
/* Append the bytes of token `id` (flags: DSI_TOK_RENDER_SPECIAL or 0). *out, *len: the text
 * that became final (valid until the next call; len 0 if none). DSI_ERR_NOMEM on failure. */
enum dsi_status dsi_textstream_put_token(struct dsi_textstream *ts, const struct dsi_tokenizer *tok,
                                         int32_t id, unsigned flags, const char **out, size_t *len);
enum dsi_status dsi_textstream_put(struct dsi_textstream *ts, const char *s, size_t n,
                                   const char **out, size_t *len);
/* The end: whatever is still held back is final (nothing after a stop string). */
void dsi_textstream_flush(struct dsi_textstream *ts, const char **out, size_t *len);

/* Monotonic time in seconds. */
double dsi_time_now(void);

#ifdef __cplusplus
}
#endif

#endif
