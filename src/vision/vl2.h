/* DeepSeek-VL2's vision side (models.md C.4-C.6): the SigLIP tower, the downsample-MLP
 * projector, and the weaving of a picture's views into image-token embeddings for the language
 * model. The weights live in the same GGUF as the language model (docs/VISION.md); they are
 * views into the mapped file, small vectors widened to f32. */
#ifndef DSI_VISION_VL2_H
#define DSI_VISION_VL2_H

#include <stdbool.h>
#include <stdint.h>

#include "core/gguf.h"
#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dsi_vl2;
struct dsi_model;

/* The vision encoder of a GGUF with clip.has_vision_encoder (projector "deepseekvl2"): *out
 * = NULL and DSI_OK when the file has none; a malformed one is an error naming the tensor or
 * key. n_embd: the language model's width, which the projector must produce. */
enum dsi_status dsi_vl2_load(const struct dsi_gguf *g, int64_t n_embd, struct dsi_vl2 **out);
void dsi_vl2_free(struct dsi_vl2 *v);

/* Put the tower on a Vulkan device: its weights (within the device's budget) and a backend
 * for one view. On failure (DSI_ERR_DEVICE: it does not fit) nothing changes: the CPU. */
struct dsi_vk;
enum dsi_status dsi_vl2_offload(struct dsi_vl2 *v, struct dsi_vk *vk);
/* The tower runs on a GPU. */
bool dsi_vl2_on_gpu(const struct dsi_vl2 *v);

/* The model's vision encoder, or NULL (a text-only model). */
const struct dsi_vl2 *dsi_model_vl2(const struct dsi_model *m);

struct dsi_vl2_info {
    int image_size;      /* side of a view (384) */
    int grid;            /* patches per side (27) */
    int width;           /* vision width (1152) */
    int tokens;          /* projector tokens per side of a view (14) */
    int64_t n_embd;      /* language-model width the image tokens have */
    const int32_t *cand; /* candidate resolutions, (w, h) pairs */
    int n_cand;
    uint64_t n_params, n_bytes; /* of the tower and projector (in the model's totals too) */
};
struct dsi_vl2_info dsi_vl2_get_info(const struct dsi_vl2 *v);

/* Image tokens of one picture cut into nw x nh tiles: t*(t+1) + 1 + t*nh*(t*nw + 1) with t
 * tokens per view side (models.md C.6). */
int64_t dsi_vl2_n_tokens(const struct dsi_vl2 *v, int nw, int nh);

/* The tower on one view of RGB bytes [size][size][3] (normalized to px/127.5 - 1 here):
 * feat [grid*grid][width], after the final LayerNorm. n_threads <= 0 here and below: every
 * core. */
enum dsi_status dsi_vl2_vision(const struct dsi_vl2 *v, const uint8_t *view, float *feat,
                               int n_threads);
/* The projector: feat [grid*grid][width] -> out [tokens*tokens][n_embd]. */
enum dsi_status dsi_vl2_project(const struct dsi_vl2 *v, const float *feat, float *out,
                                int n_threads);
/* Arrange the projector outputs of the global view and the nw*nh tiles, proj
 * [1 + nw*nh][tokens*tokens][n_embd], into dsi_vl2_n_tokens(v, nw, nh) rows of out. */
void dsi_vl2_weave(const struct dsi_vl2 *v, const float *proj, int nw, int nh, float *out);
/* All three for the views [1 + nw*nh][size][size][3] of one picture: out holds
 * dsi_vl2_n_tokens(v, nw, nh) rows of n_embd. */
enum dsi_status dsi_vl2_encode(const struct dsi_vl2 *v, const uint8_t *views, int nw, int nh,
                               float *out, int n_threads);

/* The model remembers the image tokens of its last 8 pictures (matched by their pixels and
 * tiling): recall gives a malloc'd copy and its token count (0: not remembered). */
int64_t dsi_vl2_recall(const struct dsi_vl2 *v, int w, int h, const uint8_t *rgb, bool tiled,
                       float **embd);
void dsi_vl2_remember(const struct dsi_vl2 *v, int w, int h, const uint8_t *rgb, bool tiled,
                      const float *embd, int64_t n_tokens);

/* ---- prompts (models.md C.7; src/vision/vl2_prompt.c) -------------------------------- */

struct dsi_image;

/* One turn of a conversation: role "system" (first only), "user" or "assistant". A user
 * turn's content may hold "<image>" placeholders, taken by the images in document order. */
struct dsi_vl2_msg {
    const char *role;
    const char *content;
};

/* A prompt ready for dsi_context_decode_embd: ids[n] (each picture's placeholder replaced by
 * its image tokens) and rows[n], the image-token embeddings for those positions (NULL for
 * text). */
struct dsi_vl2_prompt {
    int32_t *ids;
    const float **rows;
    int64_t n;
    float *embd;       /* storage of the rows */
    int64_t n_image_tokens;
    int n_views;       /* views the tower encoded, all images */
    double t_encode;   /* seconds in the tower and projector */
};

/* The official "deepseek" conversation format: BOS, then per user turn
 * "<|User|>: " + content + "\n\n<|Assistant|>:", per assistant turn its text and EOS, a
 * system turn's text first; contents stripped of surrounding white space. Pictures are
 * tiled when the conversation has at most two, else one tile each. When no turn has a
 * placeholder, the images go first in the first user turn ("<image>\n" each); otherwise
 * their number must equal the images' (DSI_ERR_ARG, logged). A model without a vision
 * encoder takes text-only conversations (n_images 0). */
enum dsi_status dsi_vl2_prompt_chat(const struct dsi_model *m, const struct dsi_vl2_msg *msgs,
                                    int n_msgs, const struct dsi_image *images, int n_images,
                                    int n_threads, struct dsi_vl2_prompt *out);
/* A pre-formatted prompt: BOS + text, its "<image>" placeholders replaced as above. */
enum dsi_status dsi_vl2_prompt_raw(const struct dsi_model *m, const char *text,
                                   const struct dsi_image *images, int n_images, int n_threads,
                                   struct dsi_vl2_prompt *out);
void dsi_vl2_prompt_free(struct dsi_vl2_prompt *p);

/* Pictures already through the tower, for prompts that repeat them (a chat's turns): entry k
 * is picture k of the conversation, encoded tiled or not. Zero-initialize; free with
 * dsi_vl2_cache_free (also to forget the pictures). */
struct dsi_vl2_cache {
    int n;
    struct {
        bool tiled;
        int64_t n_tokens;
        float *embd;
    } e[64];
};
void dsi_vl2_cache_free(struct dsi_vl2_cache *c);
/* dsi_vl2_prompt_chat that encodes only the pictures the cache lacks (or holds with the other
 * tiling: a third picture turns tiling off for all) and keeps them there. The prompt's rows
 * are its own copy. */
enum dsi_status dsi_vl2_prompt_chat_cached(const struct dsi_model *m, const struct dsi_vl2_msg *msgs,
                                           int n_msgs, const struct dsi_image *images,
                                           int n_images, int n_threads,
                                           struct dsi_vl2_cache *cache,
                                           struct dsi_vl2_prompt *out);

#ifdef __cplusplus
}
#endif

#endif
