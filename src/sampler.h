/* Token sampling. Order of operations (Hugging Face generate's, models.md 0.8):
 *   penalties (repetition, presence, frequency) -> temperature -> top-k -> top-p -> min-p
 *   -> draw from the renormalized distribution.
 * temperature <= 0 is greedy (argmax after penalties). The random generator is seeded: the
 * same seed, logits and history give the same tokens. A sampler is used by one thread. */
#ifndef DSI_SAMPLER_H
#define DSI_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dsi_sampler_params {
    float temperature;       /* default 0.8; <= 0: greedy */
    int32_t top_k;           /* default 40; <= 0: off */
    float top_p;             /* default 0.95; >= 1: off */
    float min_p;             /* default 0.05; <= 0: off */
    float repeat_penalty;    /* default 1.0 (off); HF repetition_penalty: divide positive
                                logits, multiply negative ones, of tokens in the window */
    int32_t repeat_last_n;   /* window of recent tokens for all penalties; default 64; -1 all */
    float presence_penalty;  /* default 0; subtracted once from tokens in the window */
    float frequency_penalty; /* default 0; subtracted per occurrence in the window */
    uint64_t seed;           /* default 0xd5170001 */
};

struct dsi_sampler_params dsi_sampler_default_params(void);

struct dsi_sampler;

/* NULL on allocation failure. n_vocab: length of the logit vectors. */
struct dsi_sampler *dsi_sampler_init(const struct dsi_sampler_params *p, int32_t n_vocab);
void dsi_sampler_free(struct dsi_sampler *s);

/* Record a token in the history the penalties look at (prompt tokens and generated ones). */
void dsi_sampler_accept(struct dsi_sampler *s, int32_t token);
/* Forget the history and reseed. */
void dsi_sampler_reset(struct dsi_sampler *s);

/* Choose the next token from logits[n_vocab] (not modified). */
int32_t dsi_sampler_sample(struct dsi_sampler *s, const float *logits);

/* The distribution the last sample() drew from: *n candidates with their ids and
 * probabilities, the most likely first, the rest in no particular order (valid until the
 * next call). For tests and for logprobs. */
void dsi_sampler_last_dist(const struct dsi_sampler *s, const int32_t **ids, const float **probs,
                           int32_t *n);

#ifdef __cplusplus
}
#endif

#endif
