/* Models and inference contexts.
 *
 * A model is immutable after loading: hyper-parameters, weight views into the mapped GGUF
 * file (weights are never copied), the tokenizer and the chat template. Several contexts may
 * use one model concurrently. A context owns the KV cache and the scratch buffers of one
 * sequence and is used by one thread at a time. */
#ifndef DSI_MODEL_H
#define DSI_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/file.h"
#include "core/log.h"
#include "src/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dsi_model;
struct dsi_context;

/* Load from a .gguf file or a Hugging Face checkpoint directory (converted in memory; f16/bf16
 * as the checkpoint). Checks the architecture, every tensor's presence, shape and type; a
 * problem is an error naming the tensor. */
enum dsi_status dsi_model_load(const char *path, struct dsi_model **out);

struct dsi_model_params {
    enum dsi_load_mode load; /* how the weights get into memory (core/file.h); default AUTO */
    bool no_repack;          /* keep ggml's row layout: no load-time repacking of Q4_0
                                and Q8_0 matrices into 16-row panels (quant/kernels.h). Repacking is
                                in place for copied weights; mapped ones (AUTO on a small file)
                                get a second buffer of the matrices' size; --mmap never repacks */
    /* Vulkan offload (vulkan/vk.h): the last n_gpu_layers layers run on the GPU; more than
     * n_layer offloads the output head too. 0 (default): CPU only. DSI_NGL_AUTO: as many as
     * fit the budget on a GPU (a CPU-type Vulkan device such as lavapipe is never picked by
     * itself), counting weights, gpu_ctx tokens of KV cache and the scratch. A missing
     * loader or device, or a layer that does not fit, stays on the CPU with a warning. */
    int n_gpu_layers;
    int gpu_device;          /* index in dsinfer devices' list; -1: the first discrete GPU,
                                else the first device */
    uint64_t vram_budget;    /* bytes of device memory to use at most (0: 90% of its memory) */
    int64_t gpu_ctx;         /* KV cache tokens per sequence the auto plan reserves (0: 4096) */
    int gpu_seqs;            /* sequences it reserves them for (0: 1; the server's slots) */
    bool gpu_validation;     /* Khronos validation layer on (tests) */
    bool cpu_moe;            /* MoE models: the routed experts stay on the CPU; the attention,
                                shared experts, router and KV cache of offloaded layers go to
                                the GPU (the auto plan chooses this itself when the experts do
                                not fit) */
};
#define DSI_NGL_AUTO (-1)
struct dsi_model_params dsi_model_default_params(void);
enum dsi_status dsi_model_load_ex(const char *path, const struct dsi_model_params *p,
                                  struct dsi_model **out);
/* Bytes of weight matrices repacked at load time (0: none). */
uint64_t dsi_model_repacked_bytes(const struct dsi_model *m);
/* True when the weights were copied into memory rather than mapped from the file. */
bool dsi_model_weights_copied(const struct dsi_model *m);
void dsi_model_free(struct dsi_model *m);
/* Layers that run on the GPU (the last ones), and whether the output head does. */
int dsi_model_gpu_layers(const struct dsi_model *m);
bool dsi_model_gpu_output(const struct dsi_model *m);
/* A MoE model's offloaded layers have their routed experts on the GPU (else on the CPU). */
bool dsi_model_gpu_experts(const struct dsi_model *m);
/* The GPU's name, or NULL when nothing is offloaded. */
const char *dsi_model_gpu_name(const struct dsi_model *m);
/* Validation-layer errors seen so far (gpu_validation). */
int dsi_model_gpu_validation_errors(const struct dsi_model *m);

const struct dsi_tokenizer *dsi_model_tokenizer(const struct dsi_model *m);
const char *dsi_model_arch(const struct dsi_model *m);     /* "qwen2", "llama", ... */
const char *dsi_model_name(const struct dsi_model *m);     /* general.name or the file name */
const char *dsi_model_chat_template(const struct dsi_model *m); /* NULL if none */
int64_t dsi_model_n_vocab(const struct dsi_model *m);      /* rows of the output head */
int64_t dsi_model_n_ctx_train(const struct dsi_model *m);
int64_t dsi_model_n_embd(const struct dsi_model *m);
int64_t dsi_model_n_layer(const struct dsi_model *m);
int dsi_model_n_expert(const struct dsi_model *m);          /* routed experts (0: dense) */
uint64_t dsi_model_n_params(const struct dsi_model *m);
uint64_t dsi_model_weight_bytes(const struct dsi_model *m);
/* Bytes the KV cache holds per token (all layers) with cache type kv_type; for deepseek2 in
 * the latent (absorbed) form, or with mla_naive the full per-head keys and values. */
uint64_t dsi_model_kv_bytes_per_token(const struct dsi_model *m, enum dsi_type kv_type,
                                      bool mla_naive);

struct dsi_context_params {
    int64_t n_ctx;          /* context length in tokens (default: min(4096, training length)) */
    int64_t n_batch;        /* most tokens evaluated in one pass (default 512) */
    int n_threads;          /* default: all cores */
    enum dsi_type kv_type;  /* DSI_TYPE_F16 (default) or DSI_TYPE_F32 */
    bool mla_naive;         /* deepseek2: cache full per-head K and V instead of the latent
                               (models.md D.2 instead of D.4); for tests and comparison */
    int n_seq;              /* independent sequences, each with its own KV cache of n_ctx
                               tokens, that one decode can advance together (default 1) */
    bool batch_invariant;   /* a token's results never depend on the other tokens of its
                               pass: prompts (dsi_context_decode_runs with prompt = true)
                               always take the prompt kernels, generated tokens the decode
                               kernels, whatever their number (costs prompt speed for
                               float weights: no BLAS) */
};

/* The defaults above. */
struct dsi_context_params dsi_context_default_params(void);

enum dsi_status dsi_context_init(const struct dsi_model *m, const struct dsi_context_params *p,
                                 struct dsi_context **out);
void dsi_context_free(struct dsi_context *c);

/* Evaluate n tokens at positions [pos, pos + n). The cache must already hold positions
 * [0, pos) (pos <= dsi_context_n_past; a smaller pos rewinds). With all_logits, logits of
 * every token are kept, else only the last one's. Returns DSI_ERR_LIMIT (logged) if the
 * tokens do not fit in the context, DSI_ERR_ARG for an id outside the vocabulary. Long
 * inputs are processed n_batch tokens at a time. */
enum dsi_status dsi_context_decode(struct dsi_context *c, const int32_t *tokens, int64_t n,
                                   int64_t pos, bool all_logits);

/* dsi_context_decode with input embeddings: embd[i] != NULL replaces token i's embedding
 * row (n_embd floats; e.g. image features, src/vision/vl2.h). */
enum dsi_status dsi_context_decode_embd(struct dsi_context *c, const int32_t *tokens,
                                        const float *const *embd, int64_t n, int64_t pos,
                                        bool all_logits);

/* Several sequences in one pass (continuous batching): run i evaluates tokens[n] of
 * sequence seq at positions [pos, pos + n) (pos <= that sequence's n_past; a sequence
 * appears at most once). The weights are read once for all of the runs' tokens; each token
 * attends to its own sequence's cache. prompt: the runs are prompt tokens (matters only for
 * batch_invariant contexts). Afterwards dsi_context_logits(c, i) is the logits of the last
 * token of run i for runs with logits = true, numbered in order (i counts only those). Runs
 * larger than n_batch in total are split across passes. Errors as dsi_context_decode, and
 * DSI_ERR_ARG naming a bad run; on error no sequence advances. */
struct dsi_seq_run {
    int32_t seq;
    int64_t pos;
    const int32_t *tokens;
    int64_t n;
    bool logits;
    /* optional: embd[i] != NULL is a row of n_embd floats that replaces token i's embedding
     * (image features woven into the prompt; the token itself is still checked) */
    const float *const *embd;
};
enum dsi_status dsi_context_decode_runs(struct dsi_context *c, const struct dsi_seq_run *runs,
                                        int n_runs, bool prompt);

/* Logits [n_vocab] of token i of the last decode (i = -1: the last token). */
const float *dsi_context_logits(const struct dsi_context *c, int64_t i);

int64_t dsi_context_n_ctx(const struct dsi_context *c);
int64_t dsi_context_n_past(const struct dsi_context *c);     /* of sequence 0 */
int64_t dsi_context_seq_past(const struct dsi_context *c, int seq);
int dsi_context_n_seq(const struct dsi_context *c);
/* Forget sequence seq's cache (n_past = 0). */
void dsi_context_seq_clear(struct dsi_context *c, int seq);
/* Bytes of KV cache the context holds (all sequences). */
uint64_t dsi_context_kv_bytes(const struct dsi_context *c);
const struct dsi_model *dsi_context_model(const struct dsi_context *c);

/* Test and debugging hook: called after each layer with the hidden states [T][n_embd] of the
 * tokens being evaluated (layer = n_layer: after the final norm). */
typedef void (*dsi_layer_cb)(void *user, int layer, const float *h, int64_t T, int64_t n_embd);
void dsi_context_set_layer_cb(struct dsi_context *c, dsi_layer_cb cb, void *user);

#ifdef __cplusplus
}
#endif

#endif
