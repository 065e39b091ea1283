/* Byte-level BPE tokenizer, identical to Hugging Face `tokenizers` for the models in scope
 * (docs/safetensors.md section 4, docs/gguf.md section 2.3).
 *
 * Loaded from a GGUF file's tokenizer.* keys or from tokenizer.json (+ tokenizer_config.json
 * and config.json when present). Encoding: added/special tokens are split out first
 * (leftmost-longest), each remaining segment is normalized (NFC where the tokenizer says so,
 * utf8proc), pre-tokenized with the tokenizer's regex chain (PCRE2 with JIT), mapped to the
 * GPT-2 byte alphabet and merged by rank. A tokenizer is immutable after loading; encode
 * and decode may run concurrently from several threads. */
#ifndef DSI_TOKENIZER_H
#define DSI_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gguf.h"
#include "core/log.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Token types, as GGUF stores them in tokenizer.ggml.token_type. */
enum dsi_token_type {
    DSI_TOKEN_UNDEFINED = 0,
    DSI_TOKEN_NORMAL = 1,
    DSI_TOKEN_UNKNOWN = 2,
    DSI_TOKEN_CONTROL = 3,
    DSI_TOKEN_USER_DEFINED = 4,
    DSI_TOKEN_UNUSED = 5,
    DSI_TOKEN_BYTE = 6,
};

/* Encode flags. */
#define DSI_TOK_ADD_SPECIAL 1u   /* add BOS/EOS as the tokenizer's add_bos/add_eos say */
#define DSI_TOK_PARSE_SPECIAL 2u /* match CONTROL token texts (USER_DEFINED always match) */

/* Decode flags. */
#define DSI_TOK_RENDER_SPECIAL 1u /* emit the text of CONTROL tokens (else nothing) */

struct dsi_tokenizer;

/* From a GGUF's tokenizer.* keys (tokenizer.ggml.model must be "gpt2"). An unknown or
 * missing tokenizer.ggml.pre is an error. */
enum dsi_status dsi_tokenizer_load_gguf(const struct dsi_gguf *g, struct dsi_tokenizer **out);

/* From tokenizer.json; `config_dir` (may be NULL) is searched for tokenizer_config.json and
 * config.json, which supply add_bos/add_eos and the special-token ids. */
enum dsi_status dsi_tokenizer_load_json(const char *tokenizer_json, const char *config_dir,
                                        struct dsi_tokenizer **out);

/* The same from tokenizer.json text in memory (no configuration files). */
enum dsi_status dsi_tokenizer_load_json_text(const char *text, size_t len, const char *label,
                                             struct dsi_tokenizer **out);

/* `path` is a .gguf file, a tokenizer.json, or a Hugging Face model directory. */
enum dsi_status dsi_tokenizer_load(const char *path, struct dsi_tokenizer **out);

void dsi_tokenizer_free(struct dsi_tokenizer *t);

/* Encode `len` bytes of UTF-8. On success *ids is a fresh malloc'd array of *n_ids ids the
 * caller frees (NULL when empty). Invalid UTF-8 is DSI_ERR_FORMAT, logged with the byte
 * offset of the first bad sequence. */
enum dsi_status dsi_tokenizer_encode(const struct dsi_tokenizer *t, const char *text, size_t len,
                                     unsigned flags, int32_t **ids, size_t *n_ids);

/* Bytes of one token as decoding produces them, written to buf (no NUL). Returns the byte
 * count (which may exceed cap: then only cap bytes were written), or -1 for an invalid id.
 * A token may end in the middle of a UTF-8 character; stream consumers must buffer. */
int dsi_tokenizer_token_bytes(const struct dsi_tokenizer *t, int32_t id, unsigned flags,
                              char *buf, size_t cap);

/* Decode ids to a fresh malloc'd, NUL-terminated byte string the caller frees. The bytes are
 * returned as produced (they may be invalid UTF-8 if the ids split a character). */
enum dsi_status dsi_tokenizer_decode(const struct dsi_tokenizer *t, const int32_t *ids, size_t n,
                                     unsigned flags, char **out, size_t *out_len);

int32_t dsi_tokenizer_n_vocab(const struct dsi_tokenizer *t);
int32_t dsi_tokenizer_bos(const struct dsi_tokenizer *t); /* -1 if none */
int32_t dsi_tokenizer_eos(const struct dsi_tokenizer *t); /* -1 if none */
bool dsi_tokenizer_add_bos(const struct dsi_tokenizer *t);
bool dsi_tokenizer_add_eos(const struct dsi_tokenizer *t);
/* End of generation: EOS, EOT, EOM and the usual end-of-turn texts. */
bool dsi_tokenizer_is_eog(const struct dsi_tokenizer *t, int32_t id);
/* Id of the token whose stored text is exactly `text`, or -1. */
int32_t dsi_tokenizer_find(const struct dsi_tokenizer *t, const char *text, size_t len);
/* Stored text (byte-level alphabet for NORMAL tokens) and type of a token. */
const char *dsi_tokenizer_token_text(const struct dsi_tokenizer *t, int32_t id, size_t *len);
enum dsi_token_type dsi_tokenizer_token_type(const struct dsi_tokenizer *t, int32_t id);
/* llama.cpp pre-tokenizer name ("qwen2", "deepseek-v3", ...); NULL if it matches none. */
const char *dsi_tokenizer_pre_name(const struct dsi_tokenizer *t);
/* The chat template from tokenizer_config.json / tokenizer.chat_template, or NULL. */
const char *dsi_tokenizer_chat_template(const struct dsi_tokenizer *t);

/* UTF-8 of byte b in the GPT-2 byte-level alphabet (1 or 2 bytes written to out); returns the
 * length. */
int dsi_tokenizer_byte_char(uint8_t b, char out[2]);

/* Write the tokenizer.* keys llama.cpp's converter writes. `n_vocab` >= the tokenizer's own
 * size pads with "[PAD<id>]" UNUSED tokens (to the embedding's row count). Fails with
 * DSI_ERR_UNSUPPORTED if the pre-tokenizer matches no llama.cpp name. */
enum dsi_status dsi_tokenizer_write_gguf(const struct dsi_tokenizer *t, int32_t n_vocab,
                                         struct dsi_gguf_writer *w);

#ifdef __cplusplus
}
#endif

#endif
