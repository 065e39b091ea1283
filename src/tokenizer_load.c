/* Tokenizer loaders: GGUF tokenizer.* keys, Hugging Face tokenizer.json (+ tokenizer_config.json
 * and config.json), and the export of tokenizer.* keys the way llama.cpp's converter writes
 * them (docs/gguf.md 2.3). */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "src/tokenizer_impl.h"

#define MAX_VOCAB (4 * 1024 * 1024)
#define MAX_JSON_SIZE ((size_t)512 << 20)

/* ---- GGUF ------------------------------------------------------------------------------ */

static void gguf_special(const struct dsi_gguf *g, const char *key, int32_t n, int32_t *out) {
    int64_t v;
    if (dsi_gguf_get_i64(g, key, &v) != DSI_OK) return;
    if (v < 0 || v >= n) {
        DSI_LOG_WRN("tokenizer: %s = %lld is outside the vocabulary; ignored", key, (long long)v);
        return;
    }
    *out = (int32_t)v;
}

enum dsi_status dsi_tokenizer_load_gguf(const struct dsi_gguf *g, struct dsi_tokenizer **out) {
    *out = NULL;
    const char *label = dsi_gguf_label(g);
    struct dsi_gguf_str model, pre;
    if (dsi_gguf_get_str(g, "tokenizer.ggml.model", &model) != DSI_OK) {
        DSI_LOG_ERR("tokenizer: '%s' has no tokenizer.ggml.model", label);
        return DSI_ERR_FORMAT;
    }
    if (model.len != 4 || memcmp(model.ptr, "gpt2", 4) != 0) {
        DSI_LOG_ERR("tokenizer: '%s': tokenizer model '%.*s' is not supported (only byte-level "
                    "BPE, 'gpt2')", label, (int)(model.len > 40 ? 40 : model.len), model.ptr);
        return DSI_ERR_UNSUPPORTED;
    }
    if (dsi_gguf_get_str(g, "tokenizer.ggml.pre", &pre) != DSI_OK) {
        DSI_LOG_ERR("tokenizer: '%s' has no tokenizer.ggml.pre; the pre-tokenizer is unknown",
                    label);
        return DSI_ERR_UNSUPPORTED;
    }
    const struct pretok_def *def = pretok_find(pre.ptr, (size_t)pre.len);
    if (!def) {
        DSI_LOG_ERR("tokenizer: '%s': unknown pre-tokenizer '%.*s' (known: qwen2, "
                    "deepseek-r1-qwen, llama-bpe, deepseek-llm, deepseek-coder, deepseek-v3)",
                    label, (int)(pre.len > 40 ? 40 : pre.len), pre.ptr);
        return DSI_ERR_UNSUPPORTED;
    }
    struct dsi_gguf_arr toks, types = {0}, merges = {0};
    if (dsi_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks) != DSI_OK ||
        toks.elem_type != DSI_GGUF_STRING || toks.count == 0 || toks.count > MAX_VOCAB) {
        DSI_LOG_ERR("tokenizer: '%s': tokenizer.ggml.tokens is missing or not a string array of "
                    "1..%d entries", label, MAX_VOCAB);
        return DSI_ERR_FORMAT;
    }
    enum dsi_status st = dsi_gguf_get_arr(g, "tokenizer.ggml.token_type", &types);
    if (st == DSI_OK && (types.count != toks.count || types.elem_type == DSI_GGUF_STRING ||
                         types.elem_type == DSI_GGUF_FLOAT32 || types.elem_type == DSI_GGUF_FLOAT64)) {
        DSI_LOG_ERR("tokenizer: '%s': tokenizer.ggml.token_type must be an integer array with one "
                    "entry per token", label);
        return DSI_ERR_FORMAT;
    }
    bool have_types = st == DSI_OK;
    st = dsi_gguf_get_arr(g, "tokenizer.ggml.merges", &merges);
    if (st == DSI_OK && merges.elem_type != DSI_GGUF_STRING) {
        DSI_LOG_ERR("tokenizer: '%s': tokenizer.ggml.merges is not a string array", label);
        return DSI_ERR_FORMAT;
    }
    if (st != DSI_OK) merges.count = 0;

    struct dsi_tokenizer *t = tok_alloc();
    if (!t) return DSI_ERR_NOMEM;
    int32_t n = (int32_t)toks.count;
    st = tok_set_size(t, n);
    for (int32_t i = 0; st == DSI_OK && i < n; i++) {
        struct dsi_gguf_str s = dsi_gguf_arr_str(g, &toks, (uint64_t)i);
        int64_t ty = have_types ? dsi_gguf_arr_i64(&types, (uint64_t)i) : DSI_TOKEN_NORMAL;
        if (ty < DSI_TOKEN_UNDEFINED || ty > DSI_TOKEN_BYTE) ty = DSI_TOKEN_NORMAL;
        st = tok_set_text(t, i, s.ptr, (size_t)s.len, (enum dsi_token_type)ty);
    }
    gguf_special(g, "tokenizer.ggml.bos_token_id", n, &t->bos);
    gguf_special(g, "tokenizer.ggml.eos_token_id", n, &t->eos);
    gguf_special(g, "tokenizer.ggml.eot_token_id", n, &t->eot);
    gguf_special(g, "tokenizer.ggml.eom_token_id", n, &t->eom);
    gguf_special(g, "tokenizer.ggml.padding_token_id", n, &t->pad);
    gguf_special(g, "tokenizer.ggml.unknown_token_id", n, &t->unk);
    gguf_special(g, "tokenizer.ggml.seperator_token_id", n, &t->sep);
    gguf_special(g, "tokenizer.ggml.cls_token_id", n, &t->cls);
    gguf_special(g, "tokenizer.ggml.mask_token_id", n, &t->mask);
    if (st == DSI_OK) st = tok_finalize(t);
    if (st == DSI_OK) st = tok_merges_reserve(t, (size_t)merges.count);
    uint64_t bad = 0;
    for (uint64_t i = 0; st == DSI_OK && i < merges.count; i++) {
        struct dsi_gguf_str s = dsi_gguf_arr_str(g, &merges, i);
        /* "<left> <right>": split at the first space after position 0 */
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', (size_t)s.len - 1) : NULL;
        if (!sp) {
            bad++;
            continue;
        }
        size_t la = (size_t)(sp - s.ptr);
        enum dsi_status ms = tok_add_merge(t, s.ptr, la, sp + 1, (size_t)s.len - la - 1, (int32_t)i);
        if (ms == DSI_ERR_NOT_FOUND) bad++;
        else st = ms;
    }
    if (bad) DSI_LOG_WRN("tokenizer: '%s': %llu merges refer to unknown tokens; ignored", label,
                         (unsigned long long)bad);
    if (st == DSI_OK) st = tok_finalize_eog(t);
    if (st == DSI_OK) st = pretok_build(def, &t->pre, &t->ignore_merges);
    t->pre_name = pretok_def_name(def);
    t->add_bos = !strcmp(t->pre_name, "llama-bpe");
    t->add_bos_set = dsi_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos) == DSI_OK;
    t->add_eos_set = dsi_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos) == DSI_OK;
    struct dsi_gguf_str tmpl;
    if (st == DSI_OK && dsi_gguf_get_str(g, "tokenizer.chat_template", &tmpl) == DSI_OK) {
        t->chat_template = strndup(tmpl.ptr, (size_t)tmpl.len);
        if (!t->chat_template) st = DSI_ERR_NOMEM;
    }
    if (st) {
        if (st == DSI_ERR_NOMEM) DSI_LOG_ERR("tokenizer: out of memory loading '%s'", label);
        dsi_tokenizer_free(t);
        return st;
    }
    *out = t;
    return DSI_OK;
}

/* ---- tokenizer.json -------------------------------------------------------------------- */

static cJSON *load_json(const char *path, bool required, enum dsi_status *st) {
    *st = DSI_OK;
    if (!required && !dsi_path_exists(path)) return NULL;
    char *text;
    size_t len;
    *st = dsi_file_read_all(path, MAX_JSON_SIZE, &text, &len);
    if (*st) return NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j) {
        size_t at = end ? (size_t)(end - text) : 0;
        DSI_LOG_ERR("'%s' is not valid JSON (near byte offset %zu)", path, at);
        *st = DSI_ERR_FORMAT;
    }
    free(text);
    return j;
}

/* "Looks special" rule of llama.cpp's converter (gguf.md 2.3). */
static bool looks_special(const char *s) {
    size_t n = strlen(s);
    static const char fw[] = "\xef\xbd\x9c"; /* U+FF5C */
    if (n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>")) return true;
    if (n >= 8 && !strncmp(s, "<", 1) && !strncmp(s + 1, fw, 3) && !strcmp(s + n - 4, "\xef\xbd\x9c>"))
        return true;
    return !strcmp(s, "<pad>") || !strcmp(s, "<mask>") || !strcmp(s, "<2mass>") ||
           !strcmp(s, "[@BOS@]") || !strncmp(s, "<unused", 7);
}

static const char *json_type(const cJSON *o) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(ty) ? ty->valuestring : "";
}

static bool json_bool(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* GPT-2's own split, used by ByteLevel with use_regex = true. */
#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static enum dsi_status parse_pretok(struct dsi_tokenizer *t, const cJSON *pt, int depth,
                                    bool *byte_level) {
    if (!pt || cJSON_IsNull(pt)) return DSI_OK;
    if (depth > 8) return DSI_ERR_FORMAT;
    const char *ty = json_type(pt);
    if (!strcmp(ty, "Sequence")) {
        const cJSON *it, *arr = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
        cJSON_ArrayForEach(it, arr) {
            enum dsi_status s = parse_pretok(t, it, depth + 1, byte_level);
            if (s) return s;
        }
        return DSI_OK;
    }
    if (!strcmp(ty, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pt, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(pt, "behavior");
        static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                            "MergedWithNext", "Contiguous"};
        int b = -1;
        for (int i = 0; i < 5 && cJSON_IsString(beh); i++)
            if (!strcmp(beh->valuestring, names[i])) b = i;
        if (b < 0 || (!cJSON_IsString(re) && !cJSON_IsString(str))) {
            DSI_LOG_ERR("tokenizer: Split pre-tokenizer without a valid pattern and behavior");
            return DSI_ERR_FORMAT;
        }
        char *pattern;
        if (cJSON_IsString(re)) {
            pattern = strdup(re->valuestring);
        } else { /* a literal string: quote it for the regex engine */
            size_t n = strlen(str->valuestring);
            pattern = malloc(2 * n + 1);
            if (pattern) {
                size_t k = 0;
                for (size_t i = 0; i < n; i++) {
                    if (strchr("\\^$.|?*+()[]{}", str->valuestring[i])) pattern[k++] = '\\';
                    pattern[k++] = str->valuestring[i];
                }
                pattern[k] = '\0';
            }
        }
        if (!pattern) return DSI_ERR_NOMEM;
        enum dsi_status s = pretok_add_split(&t->pre, pattern, strlen(pattern),
                                             (enum split_behavior)b, json_bool(pt, "invert", false));
        free(pattern);
        return s;
    }
    if (!strcmp(ty, "ByteLevel")) {
        if (json_bool(pt, "add_prefix_space", false)) {
            DSI_LOG_ERR("tokenizer: ByteLevel pre-tokenizer with add_prefix_space is not supported");
            return DSI_ERR_UNSUPPORTED;
        }
        *byte_level = true;
        if (json_bool(pt, "use_regex", true))
            return pretok_add_split(&t->pre, GPT2_RE, strlen(GPT2_RE), SPLIT_ISOLATED, false);
        return DSI_OK;
    }
    if (!strcmp(ty, "Digits")) return pretok_add_digits(&t->pre, json_bool(pt, "individual_digits", false));
    DSI_LOG_ERR("tokenizer: pre-tokenizer type '%.40s' is not supported", ty);
    return DSI_ERR_UNSUPPORTED;
}

static enum dsi_status parse_normalizer(struct dsi_tokenizer *t, const cJSON *n, int depth) {
    if (!n || cJSON_IsNull(n)) return DSI_OK;
    if (depth > 8) return DSI_ERR_FORMAT;
    const char *ty = json_type(n);
    if (!strcmp(ty, "Sequence")) {
        const cJSON *it, *arr = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        cJSON_ArrayForEach(it, arr) {
            enum dsi_status s = parse_normalizer(t, it, depth + 1);
            if (s) return s;
        }
        return DSI_OK;
    }
    static const char *const names[] = {"NFC", "NFD", "NFKC", "NFKD"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(ty, names[i])) {
            if (t->pre.n_norm >= 4) return DSI_ERR_UNSUPPORTED;
            t->pre.norm[t->pre.n_norm++] = (enum norm_kind)i;
            return DSI_OK;
        }
    DSI_LOG_ERR("tokenizer: normalizer type '%.40s' is not supported", ty);
    return DSI_ERR_UNSUPPORTED;
}

/* TemplateProcessing: a SpecialToken first means add BOS, last means add EOS. */
static void parse_post(struct dsi_tokenizer *t, const cJSON *pp, int depth) {
    if (!pp || cJSON_IsNull(pp) || depth > 8) return;
    const char *ty = json_type(pp);
    if (!strcmp(ty, "Sequence")) {
        const cJSON *it, *arr = cJSON_GetObjectItemCaseSensitive(pp, "processors");
        cJSON_ArrayForEach(it, arr) parse_post(t, it, depth + 1);
        return;
    }
    if (strcmp(ty, "TemplateProcessing") != 0) return;
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single");
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
    int n = cJSON_GetArraySize(single);
    for (int end = 0; end < 2 && n > 0; end++) {
        const cJSON *item = cJSON_GetArrayItem(single, end ? n - 1 : 0);
        const cJSON *tok = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(tok, "id");
        if (!cJSON_IsString(name)) continue;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(sp, name->valuestring), "ids");
        const cJSON *id0 = cJSON_GetArrayItem(ids, 0);
        int32_t id = cJSON_IsNumber(id0) && id0->valuedouble >= 0 && id0->valuedouble < t->n_vocab
                         ? (int32_t)id0->valuedouble
                         : -1;
        if (id < 0) id = dsi_tokenizer_find(t, name->valuestring, strlen(name->valuestring));
        if (end == 0) {
            t->add_bos = t->add_bos_set = true;
            if (t->bos < 0 && id >= 0 && id < t->n_vocab) t->bos = id;
        } else {
            t->add_eos = t->add_eos_set = true;
            if (t->eos < 0 && id >= 0 && id < t->n_vocab) t->eos = id;
        }
    }
}

/* tokenizer_config.json's "bos_token": "<s>" or {"content": "<s>", ...}. */
static int32_t config_token(const struct dsi_tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v)) return -1;
    return dsi_tokenizer_find(t, v->valuestring, strlen(v->valuestring));
}

static int32_t config_id(const struct dsi_tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= t->n_vocab) return -1;
    return (int32_t)v->valuedouble;
}

static enum dsi_status load_special_config(struct dsi_tokenizer *t, const char *dir) {
    enum dsi_status st;
    char *p1 = dsi_path_join(dir, "tokenizer_config.json");
    char *p2 = dsi_path_join(dir, "config.json");
    if (!p1 || !p2) {
        free(p1);
        free(p2);
        return DSI_ERR_NOMEM;
    }
    cJSON *tc = load_json(p1, false, &st);
    cJSON *cfg = st == DSI_OK ? load_json(p2, false, &st) : NULL;
    free(p1);
    free(p2);
    if (st) {
        cJSON_Delete(tc);
        return st;
    }
    static const char *const names[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    int32_t *slots[] = {&t->bos, &t->eos, &t->unk, &t->sep, &t->pad, &t->cls, &t->mask};
    for (int i = 0; i < 7; i++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token", names[i]);
        int32_t id = tc ? config_token(t, tc, key) : -1;
        if (id < 0 && cfg) {
            snprintf(key, sizeof key, "%s_token_id", names[i]);
            if (*slots[i] < 0) id = config_id(t, cfg, key);
        }
        if (id >= 0) *slots[i] = id;
    }
    if (tc) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(tc, "add_bos_token");
        if (cJSON_IsBool(v)) t->add_bos = cJSON_IsTrue(v), t->add_bos_set = true;
        v = cJSON_GetObjectItemCaseSensitive(tc, "add_eos_token");
        if (cJSON_IsBool(v)) t->add_eos = cJSON_IsTrue(v), t->add_eos_set = true;
        const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(tc, "chat_template");
        if (cJSON_IsArray(tmpl)) { /* [{name, template}, ...]: use "default" */
            const cJSON *it, *pick = NULL;
            cJSON_ArrayForEach(it, tmpl) {
                const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
                if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default")) pick = it;
            }
            tmpl = pick ? cJSON_GetObjectItemCaseSensitive(pick, "template") : NULL;
        }
        if (cJSON_IsString(tmpl)) {
            t->chat_template = strdup(tmpl->valuestring);
            if (!t->chat_template) st = DSI_ERR_NOMEM;
        }
    }
    if (!t->chat_template && st == DSI_OK) {
        /* newer repositories keep the template in chat_template.jinja */
        char *pj = dsi_path_join(dir, "chat_template.jinja");
        size_t len;
        if (pj && dsi_path_exists(pj)) st = dsi_file_read_all(pj, 1 << 20, &t->chat_template, &len);
        free(pj);
    }
    cJSON_Delete(tc);
    cJSON_Delete(cfg);
    return st;
}

static enum dsi_status load_json_model(struct dsi_tokenizer *t, const cJSON *root,
                                       const char *path) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(model) || !cJSON_IsObject(vocab)) {
        DSI_LOG_ERR("tokenizer '%s': no model.vocab object", path);
        return DSI_ERR_FORMAT;
    }
    const char *ty = json_type(model);
    if (*ty && strcmp(ty, "BPE") != 0) {
        DSI_LOG_ERR("tokenizer '%s': model type '%.40s' is not supported (only BPE)", path, ty);
        return DSI_ERR_UNSUPPORTED;
    }
    if (json_bool(model, "byte_fallback", false)) {
        DSI_LOG_ERR("tokenizer '%s': byte_fallback BPE (SentencePiece style) is not supported", path);
        return DSI_ERR_UNSUPPORTED;
    }
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, affix[i]);
        if (cJSON_IsString(v) && *v->valuestring) {
            DSI_LOG_ERR("tokenizer '%s': %s is not supported", path, affix[i]);
            return DSI_ERR_UNSUPPORTED;
        }
    }
    t->ignore_merges = json_bool(model, "ignore_merges", false);

    /* size = highest id + 1 over the vocabulary and the added tokens */
    int64_t max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= MAX_VOCAB ||
            it->valuedouble != (double)(int64_t)it->valuedouble) {
            DSI_LOG_ERR("tokenizer '%s': vocab entry '%.40s' has an invalid id", path, it->string);
            return DSI_ERR_FORMAT;
        }
        if ((int64_t)it->valuedouble > max_id) max_id = (int64_t)it->valuedouble;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= MAX_VOCAB ||
            !cJSON_IsString(content)) {
            DSI_LOG_ERR("tokenizer '%s': an added token has no valid id or content", path);
            return DSI_ERR_FORMAT;
        }
        if ((int64_t)id->valuedouble > max_id) max_id = (int64_t)id->valuedouble;
    }
    if (max_id < 0) {
        DSI_LOG_ERR("tokenizer '%s': empty vocabulary", path);
        return DSI_ERR_FORMAT;
    }
    enum dsi_status st = tok_set_size(t, (int32_t)(max_id + 1));
    uint8_t *seen = calloc((size_t)max_id + 1, 1);
    if (!seen) st = DSI_ERR_NOMEM;
    cJSON_ArrayForEach(it, vocab) {
        if (st) break;
        int32_t id = (int32_t)it->valuedouble;
        if (seen[id]) {
            DSI_LOG_ERR("tokenizer '%s': id %d is used by two vocab entries", path, id);
            st = DSI_ERR_FORMAT;
            break;
        }
        seen[id] = 1;
        st = tok_set_text(t, id, it->string, strlen(it->string), DSI_TOKEN_NORMAL);
    }
    cJSON_ArrayForEach(it, added) {
        if (st) break;
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        const char *content = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
        bool special = json_bool(it, "special", false) || looks_special(content);
        seen[id] = 1;
        st = tok_set_text(t, id, content, strlen(content),
                          special ? DSI_TOKEN_CONTROL : DSI_TOKEN_USER_DEFINED);
    }
    for (int32_t id = 0; st == DSI_OK && id <= max_id; id++) {
        if (seen[id]) continue;
        char pad[32];
        int n = snprintf(pad, sizeof pad, "[PAD%d]", id);
        st = tok_set_text(t, id, pad, (size_t)n, DSI_TOKEN_UNUSED);
    }
    free(seen);
    if (st == DSI_OK) st = tok_finalize(t);
    if (st == DSI_OK) st = tok_merges_reserve(t, (size_t)cJSON_GetArraySize(merges));
    int32_t rank = 0;
    cJSON_ArrayForEach(it, merges) {
        if (st) break;
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            /* legacy "a b": exactly one space */
            const char *s = it->valuestring, *sp = strchr(s, ' ');
            if (!strncmp(s, "#version", 8)) continue;
            if (!sp || strchr(sp + 1, ' ')) {
                DSI_LOG_ERR("tokenizer '%s': merge %d '%.40s' is not two parts", path, rank, s);
                st = DSI_ERR_FORMAT;
                break;
            }
            a = s, la = (size_t)(sp - s), b = sp + 1, lb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring, la = strlen(a);
            b = cJSON_GetArrayItem(it, 1)->valuestring, lb = strlen(b);
        } else {
            DSI_LOG_ERR("tokenizer '%s': merge %d is neither \"a b\" nor [a, b]", path, rank);
            st = DSI_ERR_FORMAT;
            break;
        }
        st = tok_add_merge(t, a, la, b, lb, rank);
        if (st == DSI_ERR_NOT_FOUND)
            DSI_LOG_ERR("tokenizer '%s': merge %d ('%.30s' + '%.30s') uses a token that is not in "
                        "the vocabulary", path, rank, a, b);
        rank++;
    }
    return st;
}

/* Everything after the JSON text is parsed. */
static enum dsi_status load_from_json(cJSON *root, const char *label, const char *config_dir,
                                      struct dsi_tokenizer **out) {
    struct dsi_tokenizer *t = tok_alloc();
    if (!t) {
        cJSON_Delete(root);
        return DSI_ERR_NOMEM;
    }
    bool byte_level = false;
    enum dsi_status st = DSI_OK;
    if (!cJSON_IsObject(root)) {
        DSI_LOG_ERR("tokenizer '%s': not a JSON object", label);
        st = DSI_ERR_FORMAT;
    }
    if (st == DSI_OK) st = load_json_model(t, root, label);
    if (st == DSI_OK) st = parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0);
    if (st == DSI_OK)
        st = parse_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), 0, &byte_level);
    if (st == DSI_OK && !byte_level) {
        DSI_LOG_ERR("tokenizer '%s': not a byte-level BPE tokenizer (no ByteLevel pre-tokenizer)",
                    label);
        st = DSI_ERR_UNSUPPORTED;
    }
    if (st == DSI_OK) parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), 0);
    cJSON_Delete(root);
    if (st == DSI_OK && config_dir) st = load_special_config(t, config_dir);
    if (st == DSI_OK) st = tok_finalize_eog(t);
    if (st == DSI_OK) {
        const char *bos = t->bos >= 0 ? t->pool + t->tok[t->bos].off : NULL;
        char *bos_z = bos ? strndup(bos, t->tok[t->bos].len) : NULL;
        t->pre_name = pretok_identify(&t->pre, t->ignore_merges, bos_z);
        free(bos_z);
    }
    if (st) {
        if (st == DSI_ERR_NOMEM) DSI_LOG_ERR("tokenizer: out of memory loading '%s'", label);
        dsi_tokenizer_free(t);
        return st;
    }
    *out = t;
    return DSI_OK;
}

enum dsi_status dsi_tokenizer_load_json(const char *path, const char *config_dir,
                                        struct dsi_tokenizer **out) {
    *out = NULL;
    enum dsi_status st;
    cJSON *root = load_json(path, true, &st);
    if (!root) return st;
    return load_from_json(root, path, config_dir, out);
}

enum dsi_status dsi_tokenizer_load_json_text(const char *text, size_t len, const char *label,
                                             struct dsi_tokenizer **out) {
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        DSI_LOG_ERR("tokenizer '%s': not valid JSON (near byte offset %zu)", label,
                    end ? (size_t)(end - text) : (size_t)0);
        return DSI_ERR_FORMAT;
    }
    return load_from_json(root, label, NULL, out);
}

enum dsi_status dsi_tokenizer_load(const char *path, struct dsi_tokenizer **out) {
    *out = NULL;
    size_t n = strlen(path);
    if (dsi_path_is_dir(path)) {
        char *tj = dsi_path_join(path, "tokenizer.json");
        if (!tj) return DSI_ERR_NOMEM;
        enum dsi_status st = dsi_tokenizer_load_json(tj, path, out);
        free(tj);
        return st;
    }
    if (n >= 5 && !strcmp(path + n - 5, ".json")) {
        char *dir = strdup(path);
        if (!dir) return DSI_ERR_NOMEM;
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else strcpy(dir, ".");
        enum dsi_status st = dsi_tokenizer_load_json(path, dir, out);
        free(dir);
        return st;
    }
    struct dsi_gguf *g;
    enum dsi_status st = dsi_gguf_open(path, &g);
    if (st) return st;
    st = dsi_tokenizer_load_gguf(g, out);
    dsi_gguf_free(g);
    return st;
}

/* ---- GGUF export ----------------------------------------------------------------------- */

enum dsi_status dsi_tokenizer_write_gguf(const struct dsi_tokenizer *t, int32_t n_vocab,
                                         struct dsi_gguf_writer *w) {
    if (!t->pre_name) {
        DSI_LOG_ERR("tokenizer: its pre-tokenizer matches none that llama.cpp knows; cannot write "
                    "tokenizer.ggml.pre");
        return DSI_ERR_UNSUPPORTED;
    }
    if (n_vocab < t->n_vocab) n_vocab = t->n_vocab;
    char **strs = calloc((size_t)n_vocab, sizeof *strs);
    size_t *lens = calloc((size_t)n_vocab, sizeof *lens);
    int32_t *types = calloc((size_t)n_vocab, sizeof *types);
    enum dsi_status st = strs && lens && types ? DSI_OK : DSI_ERR_NOMEM;
    for (int32_t i = 0; st == DSI_OK && i < n_vocab; i++) {
        if (i >= t->n_vocab) {
            char pad[32];
            lens[i] = (size_t)snprintf(pad, sizeof pad, "[PAD%d]", i);
            strs[i] = strdup(pad);
            types[i] = DSI_TOKEN_UNUSED;
        } else {
            const char *s = t->pool + t->tok[i].off;
            size_t n = t->tok[i].len;
            types[i] = t->tok[i].type;
            strs[i] = malloc(n + 1);
            if (strs[i] && types[i] == DSI_TOKEN_USER_DEFINED) {
                /* the converter pre-normalizes U+2581 to a space in user-defined tokens */
                size_t k = 0;
                for (size_t j = 0; j < n; j++) {
                    if (j + 2 < n && !memcmp(s + j, "\xe2\x96\x81", 3)) strs[i][k++] = ' ', j += 2;
                    else strs[i][k++] = s[j];
                }
                lens[i] = k;
            } else if (strs[i]) {
                memcpy(strs[i], s, n);
                lens[i] = n;
            }
        }
        if (!strs[i]) st = DSI_ERR_NOMEM;
    }
    if (st == DSI_OK) st = dsi_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (st == DSI_OK) st = dsi_gguf_writer_set_str(w, "tokenizer.ggml.pre", t->pre_name);
    if (st == DSI_OK)
        st = dsi_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs, lens,
                                         (uint64_t)n_vocab);
    if (st == DSI_OK)
        st = dsi_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", DSI_GGUF_INT32, types,
                                     (uint64_t)n_vocab);
    for (int32_t i = 0; strs && i < n_vocab; i++) free(strs[i]);
    free(strs);
    free(lens);
    free(types);

    /* merges, in rank order, as "left right" (a space inside a part becomes U+0120) */
    char **ms = calloc((size_t)(t->n_merge_list ? t->n_merge_list : 1), sizeof *ms);
    if (!ms && st == DSI_OK) st = DSI_ERR_NOMEM;
    for (int32_t i = 0; st == DSI_OK && i < t->n_merge_list; i++) {
        const struct tok_entry *a = &t->tok[t->merge_list[i].a], *b = &t->tok[t->merge_list[i].b];
        ms[i] = malloc(2 * (a->len + b->len) + 2);
        if (!ms[i]) {
            st = DSI_ERR_NOMEM;
            break;
        }
        size_t k = 0;
        for (int side = 0; side < 2; side++) {
            const struct tok_entry *e = side ? b : a;
            if (side) ms[i][k++] = ' ';
            for (uint32_t j = 0; j < e->len; j++) {
                char c = t->pool[e->off + j];
                if (c == ' ') ms[i][k++] = (char)0xc4, ms[i][k++] = (char)0xa0;
                else ms[i][k++] = c;
            }
        }
        ms[i][k] = '\0';
    }
    if (st == DSI_OK)
        st = dsi_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, NULL,
                                         (uint64_t)t->n_merge_list);
    for (int32_t i = 0; ms && i < t->n_merge_list; i++) free(ms[i]);
    free(ms);

    static const char *const keys[] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.seperator_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.cls_token_id",
        "tokenizer.ggml.mask_token_id"};
    int32_t ids[] = {t->bos, t->eos, t->unk, t->sep, t->pad, t->cls, t->mask};
    for (int i = 0; st == DSI_OK && i < 7; i++)
        if (ids[i] >= 0) st = dsi_gguf_writer_set_u32(w, keys[i], (uint32_t)ids[i]);
    if (st == DSI_OK && t->add_bos_set)
        st = dsi_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos);
    if (st == DSI_OK && t->add_eos_set)
        st = dsi_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", t->add_eos);
    if (st == DSI_OK && t->chat_template)
        st = dsi_gguf_writer_set_str(w, "tokenizer.chat_template", t->chat_template);
    return st;
}
