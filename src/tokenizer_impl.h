/* Internals shared by tokenizer.c (encode/decode), tokenizer_load.c (GGUF and tokenizer.json
 * loaders, GGUF export) and pretok.c (normalizers and pre-tokenizer chains). */
#ifndef DSI_TOKENIZER_IMPL_H
#define DSI_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "src/tokenizer.h"

/* ---- pre-tokenizer chain (pretok.c) ---------------------------------------------------- */

enum pretok_kind {
    PRETOK_SPLIT,     /* regex split (HF "Split", also ByteLevel with use_regex) */
    PRETOK_DIGITS,    /* HF "Digits" */
};

enum split_behavior {
    SPLIT_REMOVED,
    SPLIT_ISOLATED,
    SPLIT_MERGED_PREV,
    SPLIT_MERGED_NEXT,
    SPLIT_CONTIGUOUS,
};

struct pretok_step {
    enum pretok_kind kind;
    enum split_behavior behavior;
    bool invert;     /* Split: the matches are the pieces, not the delimiters */
    bool individual; /* Digits: every digit is its own piece */
    char *pattern;   /* Split: the regex as written in tokenizer.json (HF syntax) */
    pcre2_code *re;
};

#define PRETOK_MAX_STEPS 12

enum norm_kind { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD };

struct pretok {
    int n_steps;
    struct pretok_step steps[PRETOK_MAX_STEPS];
    int n_norm;
    enum norm_kind norm[4];
};

/* A piece of text: [begin, end) byte offsets. */
struct span {
    size_t begin, end;
};

struct spans {
    struct span *v;
    size_t n, cap;
};

/* Append a Split step compiled from an HF-syntax regex. */
enum dsi_status pretok_add_split(struct pretok *p, const char *pattern, size_t len,
                                 enum split_behavior behavior, bool invert);
enum dsi_status pretok_add_digits(struct pretok *p, bool individual);
void pretok_free(struct pretok *p);

/* Split `text` (valid UTF-8, already normalized) into pieces. `tmp` is scratch. */
enum dsi_status pretok_run(const struct pretok *p, const char *text, size_t len,
                           struct spans *out, struct spans *tmp, pcre2_match_data *md);

/* Apply the normalizers; returns a fresh malloc'd string, or NULL (and DSI_OK) when the
 * text is unchanged (no normalizer, or pure ASCII). */
enum dsi_status pretok_normalize(const struct pretok *p, const char *text, size_t len,
                                 char **out, size_t *out_len);

/* A built-in pre-tokenizer known by its llama.cpp name. */
struct pretok_def;
const struct pretok_def *pretok_find(const char *name, size_t len);
const char *pretok_def_name(const struct pretok_def *d);
/* Build the chain of a definition. */
enum dsi_status pretok_build(const struct pretok_def *d, struct pretok *p, bool *ignore_merges);
/* Which definition behaves like `p` (same normalizers, same splits on a probe text);
 * `bos_text` separates deepseek-r1-qwen from qwen2. NULL if none. */
const char *pretok_identify(const struct pretok *p, bool ignore_merges, const char *bos_text);

/* ---- tokenizer ------------------------------------------------------------------------- */

struct tok_entry {
    uint32_t off; /* into pool */
    uint32_t len;
    uint8_t type; /* enum dsi_token_type */
};

struct merge_slot {
    uint64_t key; /* (left << 32) | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t result;
};

struct dsi_tokenizer {
    int32_t n_vocab;
    struct tok_entry *tok;
    char *pool;
    size_t pool_len, pool_cap;

    int32_t *vocab_hash; /* open addressing over token texts; -1 = empty */
    size_t vocab_cap;

    struct merge_slot *merges;
    size_t merge_cap;
    int32_t n_merges;

    int32_t byte_id[256]; /* token of each raw byte in the byte-level alphabet */

    int32_t *special;   /* ids matched before BPE, longest text first */
    int32_t n_special;
    uint8_t special_first[256]; /* 1 if some special text starts with this byte */

    struct pretok pre;
    bool ignore_merges;
    const char *pre_name;

    int32_t bos, eos, eot, eom, pad, unk, sep, cls, mask;
    bool add_bos, add_eos;
    bool add_bos_set, add_eos_set; /* stated by the source (written back to GGUF) */

    /* merges in rank order, for writing them back out */
    struct merge_pair { int32_t a, b; } *merge_list;
    int32_t n_merge_list;
    int32_t eog[16];
    int n_eog;
    char *chat_template;
};

/* Shared by the loaders (tokenizer_load.c), defined in tokenizer.c. */
struct dsi_tokenizer *tok_alloc(void);
enum dsi_status tok_set_size(struct dsi_tokenizer *t, int32_t n);
enum dsi_status tok_set_text(struct dsi_tokenizer *t, int32_t id, const char *s, size_t len,
                             enum dsi_token_type type);
/* After all texts are set: vocab hash, byte table, special list. */
enum dsi_status tok_finalize(struct dsi_tokenizer *t);
/* After the special ids are known: the end-of-generation set. */
enum dsi_status tok_finalize_eog(struct dsi_tokenizer *t);
/* Register a merge of two token texts; returns DSI_ERR_NOT_FOUND if a part or the result is
 * not in the vocabulary. */
enum dsi_status tok_add_merge(struct dsi_tokenizer *t, const char *a, size_t alen, const char *b,
                              size_t blen, int32_t rank);
enum dsi_status tok_merges_reserve(struct dsi_tokenizer *t, size_t n);
/* UTF-8 encoding of byte b in the GPT-2 byte-level alphabet (1 or 2 bytes); returns length. */
int tok_byte_char(uint8_t b, char out[2]);
/* Offset of the first invalid UTF-8 sequence, or len if valid. */
size_t tok_utf8_check(const uint8_t *s, size_t len);

#endif
