/* Byte-level BPE: vocabulary tables, encoding (special-token split, normalization,
 * pre-tokenization, rank-ordered merges) and decoding. Loaders are in tokenizer_load.c.
 *
 * The merge loop reproduces Hugging Face tokenizers' Word::merge_all exactly: a min-heap of
 * (rank, position) candidates; a popped candidate is dropped when its left symbol is gone
 * or the current pair no longer maps to the same merge result; after a merge the pairs
 * with the new left and right neighbours are pushed. */
#include <stdlib.h>
#include <string.h>

#include "src/tokenizer_impl.h"

/* ---- GPT-2 byte alphabet (safetensors.md 4.6) ------------------------------------------ */

/* Code point of byte b: printable bytes map to themselves, the other 68 to U+0100 + n. */
static uint32_t byte_cp(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae)) return b;
    uint32_t n = 0;
    for (uint32_t x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7e) || (x >= 0xa1 && x <= 0xac) || (x >= 0xae))) n++;
    return 0x100 + n;
}

int tok_byte_char(uint8_t b, char out[2]) {
    uint32_t cp = byte_cp(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

int dsi_tokenizer_byte_char(uint8_t b, char out[2]) { return tok_byte_char(b, out); }

/* Inverse: byte of code point cp (< 0x144), or -1. Built on first use into a table. */
static int cp_byte(uint32_t cp) {
    static int16_t inv[0x144];
    static int ready; /* benign race: every thread writes the same values */
    if (!ready) {
        for (int i = 0; i < 0x144; i++) inv[i] = -1;
        for (int b = 0; b < 256; b++) inv[byte_cp((uint8_t)b)] = (int16_t)b;
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    return cp < 0x144 ? inv[cp] : -1;
}

size_t tok_utf8_check(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) n = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) n = 3, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) n = 4, cp = c & 0x07, min = 0x10000;
        else return i;
        if (len - i < n) return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += n;
    }
    return len;
}

/* ---- tables ---------------------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

struct dsi_tokenizer *tok_alloc(void) {
    struct dsi_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->bos = t->eos = t->eot = t->eom = t->pad = t->unk = t->sep = t->cls = t->mask = -1;
    return t;
}

enum dsi_status tok_set_size(struct dsi_tokenizer *t, int32_t n) {
    t->tok = calloc((size_t)(n > 0 ? n : 1), sizeof *t->tok);
    if (!t->tok) return DSI_ERR_NOMEM;
    t->n_vocab = n;
    return DSI_OK;
}

enum dsi_status tok_set_text(struct dsi_tokenizer *t, int32_t id, const char *s, size_t len,
                             enum dsi_token_type type) {
    if (id < 0 || id >= t->n_vocab || len > UINT32_MAX) return DSI_ERR_ARG;
    if (t->pool_len + len > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 1 << 16;
        while (cap < t->pool_len + len) cap *= 2;
        if (cap > UINT32_MAX) return DSI_ERR_LIMIT;
        char *p = realloc(t->pool, cap);
        if (!p) return DSI_ERR_NOMEM;
        t->pool = p;
        t->pool_cap = cap;
    }
    if (len) memcpy(t->pool + t->pool_len, s, len);
    t->tok[id].off = (uint32_t)t->pool_len;
    t->tok[id].len = (uint32_t)len;
    t->tok[id].type = (uint8_t)type;
    t->pool_len += len;
    return DSI_OK;
}

static const char *tok_str(const struct dsi_tokenizer *t, int32_t id) {
    return t->pool ? t->pool + t->tok[id].off : "";
}

int32_t dsi_tokenizer_find(const struct dsi_tokenizer *t, const char *s, size_t len) {
    if (!t->vocab_cap) return -1;
    size_t mask = t->vocab_cap - 1, h = (size_t)hash_bytes(s, len) & mask;
    while (t->vocab_hash[h] >= 0) {
        int32_t id = t->vocab_hash[h];
        if (t->tok[id].len == len && memcmp(tok_str(t, id), s, len) == 0) return id;
        h = (h + 1) & mask;
    }
    return -1;
}

enum dsi_status tok_merges_reserve(struct dsi_tokenizer *t, size_t n) {
    size_t cap = 64;
    while (cap < 2 * n) cap *= 2;
    t->merges = malloc(cap * sizeof *t->merges);
    t->merge_list = malloc((n ? n : 1) * sizeof *t->merge_list);
    if (!t->merges || !t->merge_list) return DSI_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++) t->merges[i].key = UINT64_MAX;
    t->merge_cap = cap;
    return DSI_OK;
}

static const struct merge_slot *merge_find(const struct dsi_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->merge_cap - 1, h = (size_t)hash_u64(key) & mask;
    for (;;) {
        const struct merge_slot *s = &t->merges[h];
        if (s->key == key) return s;
        if (s->key == UINT64_MAX) return NULL;
        h = (h + 1) & mask;
    }
}

enum dsi_status tok_add_merge(struct dsi_tokenizer *t, const char *a, size_t alen, const char *b,
                              size_t blen, int32_t rank) {
    int32_t ia = dsi_tokenizer_find(t, a, alen), ib = dsi_tokenizer_find(t, b, blen);
    if (ia < 0 || ib < 0 || alen + blen > 1024) return DSI_ERR_NOT_FOUND;
    char buf[1024];
    memcpy(buf, a, alen);
    memcpy(buf + alen, b, blen);
    int32_t ir = dsi_tokenizer_find(t, buf, alen + blen);
    if (ir < 0) return DSI_ERR_NOT_FOUND;
    if ((size_t)t->n_merges * 2 >= t->merge_cap) return DSI_ERR_LIMIT;
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    size_t mask = t->merge_cap - 1, h = (size_t)hash_u64(key) & mask;
    while (t->merges[h].key != UINT64_MAX && t->merges[h].key != key) h = (h + 1) & mask;
    /* a duplicated merge keeps its last rank, as Hugging Face's hash map does */
    if (t->merges[h].key == UINT64_MAX) t->n_merges++;
    t->merges[h] = (struct merge_slot){key, rank, ir};
    if (t->merge_list) t->merge_list[t->n_merge_list++] = (struct merge_pair){ia, ib};
    return DSI_OK;
}

static int cmp_special(const void *pa, const void *pb, void *ctx) {
    const struct dsi_tokenizer *t = ctx;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    if (t->tok[a].len != t->tok[b].len) return t->tok[a].len > t->tok[b].len ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* "[PAD123]" fillers written by converters for ids missing from the vocabulary. */
static bool is_pad_filler(const char *s, size_t n) {
    if (n < 6 || memcmp(s, "[PAD", 4) != 0 || s[n - 1] != ']') return false;
    for (size_t i = 4; i < n - 1; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

enum dsi_status tok_finalize(struct dsi_tokenizer *t) {
    size_t cap = 64;
    while (cap < 2 * (size_t)t->n_vocab) cap *= 2;
    t->vocab_hash = malloc(cap * sizeof *t->vocab_hash);
    if (!t->vocab_hash) return DSI_ERR_NOMEM;
    memset(t->vocab_hash, 0xff, cap * sizeof *t->vocab_hash);
    t->vocab_cap = cap;
    /* insert in reverse so that, for duplicate texts, the lowest id is found first */
    for (int32_t id = t->n_vocab - 1; id >= 0; id--) {
        const char *s = tok_str(t, id);
        size_t n = t->tok[id].len, h = (size_t)hash_bytes(s, n) & (cap - 1);
        int32_t dup = -1;
        size_t slot = SIZE_MAX;
        while (t->vocab_hash[h] >= 0) {
            int32_t j = t->vocab_hash[h];
            if (t->tok[j].len == n && memcmp(tok_str(t, j), s, n) == 0) {
                dup = j;
                slot = h;
                break;
            }
            h = (h + 1) & (cap - 1);
        }
        if (dup >= 0) t->vocab_hash[slot] = id;
        else t->vocab_hash[h] = id;
    }

    for (int b = 0; b < 256; b++) {
        char c[2];
        int n = tok_byte_char((uint8_t)b, c);
        t->byte_id[b] = dsi_tokenizer_find(t, c, (size_t)n);
    }

    int32_t ns = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint8_t ty = t->tok[id].type;
        if ((ty == DSI_TOKEN_CONTROL || ty == DSI_TOKEN_USER_DEFINED || ty == DSI_TOKEN_UNKNOWN) &&
            t->tok[id].len > 0 && !is_pad_filler(tok_str(t, id), t->tok[id].len))
            ns++;
    }
    t->special = malloc((size_t)(ns ? ns : 1) * sizeof *t->special);
    if (!t->special) return DSI_ERR_NOMEM;
    t->n_special = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint8_t ty = t->tok[id].type;
        if ((ty == DSI_TOKEN_CONTROL || ty == DSI_TOKEN_USER_DEFINED || ty == DSI_TOKEN_UNKNOWN) &&
            t->tok[id].len > 0 && !is_pad_filler(tok_str(t, id), t->tok[id].len)) {
            t->special[t->n_special++] = id;
            t->special_first[(uint8_t)tok_str(t, id)[0]] = 1;
        }
    }
    qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special, t);
    return DSI_OK;
}

enum dsi_status tok_finalize_eog(struct dsi_tokenizer *t) {
    static const char *const eog_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
        "<EOT>", "<｜end▁of▁sentence｜>", "<|end_of_text|>",
    };
    int32_t cand[6] = {t->eos, t->eot, t->eom, -1, -1, -1};
    t->n_eog = 0;
    for (int i = 0; i < 3; i++)
        if (cand[i] >= 0 && cand[i] < t->n_vocab) t->eog[t->n_eog++] = cand[i];
    for (size_t i = 0; i < sizeof eog_texts / sizeof eog_texts[0] && t->n_eog < 16; i++) {
        int32_t id = dsi_tokenizer_find(t, eog_texts[i], strlen(eog_texts[i]));
        if (id < 0 || t->tok[id].type == DSI_TOKEN_NORMAL) continue;
        bool have = false;
        for (int k = 0; k < t->n_eog; k++) have |= t->eog[k] == id;
        if (!have) t->eog[t->n_eog++] = id;
    }
    return DSI_OK;
}

void dsi_tokenizer_free(struct dsi_tokenizer *t) {
    if (!t) return;
    free(t->tok);
    free(t->pool);
    free(t->vocab_hash);
    free(t->merges);
    free(t->merge_list);
    free(t->special);
    free(t->chat_template);
    pretok_free(&t->pre);
    free(t);
}

/* ---- encoding -------------------------------------------------------------------------- */

struct idvec {
    int32_t *v;
    size_t n, cap;
};

static bool ids_push(struct idvec *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        int32_t *p = realloc(o->v, cap * sizeof *p);
        if (!p) return false;
        o->v = p;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return true;
}

struct sym {
    int32_t id;
    int32_t prev, next;
    bool alive;
};

struct cand {
    int32_t rank;
    int32_t pos;
    int32_t result;
};

/* Scratch reused across the pieces of one encode call. */
struct scratch {
    struct sym *sym;
    struct cand *heap;
    size_t sym_cap, heap_cap, heap_n;
    char *word;
    size_t word_cap;
};

static bool cand_less(const struct cand *a, const struct cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static bool heap_push(struct scratch *s, struct cand c) {
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        struct cand *p = realloc(s->heap, cap * sizeof *p);
        if (!p) return false;
        s->heap = p;
        s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_less(&c, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = c;
    return true;
}

static struct cand heap_pop(struct scratch *s) {
    struct cand top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct cand *best = &last;
        if (l < n && cand_less(&s->heap[l], best)) m = l, best = &s->heap[l];
        if (r < n && cand_less(&s->heap[r], best)) m = r;
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n) s->heap[i] = last;
    return top;
}

static bool push_pair(const struct dsi_tokenizer *t, struct scratch *s, int32_t pos) {
    int32_t nx = s->sym[pos].next;
    if (nx < 0) return true;
    const struct merge_slot *m = merge_find(t, s->sym[pos].id, s->sym[nx].id);
    if (!m) return true;
    return heap_push(s, (struct cand){m->rank, pos, m->result});
}

/* BPE on one pre-tokenized piece of raw bytes. */
static enum dsi_status bpe_piece(const struct dsi_tokenizer *t, const uint8_t *p, size_t n,
                                 struct scratch *s, struct idvec *out) {
    if (t->ignore_merges) {
        if (2 * n > s->word_cap) {
            char *w = realloc(s->word, 2 * n);
            if (!w) return DSI_ERR_NOMEM;
            s->word = w;
            s->word_cap = 2 * n;
        }
        size_t wl = 0;
        for (size_t i = 0; i < n; i++) wl += (size_t)tok_byte_char(p[i], s->word + wl);
        int32_t id = dsi_tokenizer_find(t, s->word, wl);
        if (id >= 0) return ids_push(out, id) ? DSI_OK : DSI_ERR_NOMEM;
    }
    if (n > INT32_MAX / 2) return DSI_ERR_LIMIT;
    if (n > s->sym_cap) {
        struct sym *y = realloc(s->sym, n * sizeof *y);
        if (!y) return DSI_ERR_NOMEM;
        s->sym = y;
        s->sym_cap = n;
    }
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[p[i]];
        if (id < 0) id = t->unk;
        if (id < 0) continue; /* a byte the vocabulary cannot express: dropped, as HF does */
        s->sym[m] = (struct sym){id, m - 1, m + 1, true};
        m++;
    }
    if (m == 0) return DSI_OK;
    s->sym[m - 1].next = -1;
    s->heap_n = 0;
    for (int32_t i = 0; i + 1 < m; i++)
        if (!push_pair(t, s, i)) return DSI_ERR_NOMEM;
    while (s->heap_n > 0) {
        struct cand c = heap_pop(s);
        struct sym *l = &s->sym[c.pos];
        if (!l->alive || l->next < 0) continue;
        struct sym *r = &s->sym[l->next];
        const struct merge_slot *ms = merge_find(t, l->id, r->id);
        if (!ms || ms->result != c.result) continue; /* stale candidate */
        l->id = c.result;
        r->alive = false;
        l->next = r->next;
        if (r->next >= 0) s->sym[r->next].prev = c.pos;
        if (l->prev >= 0 && !push_pair(t, s, l->prev)) return DSI_ERR_NOMEM;
        if (!push_pair(t, s, c.pos)) return DSI_ERR_NOMEM;
    }
    for (int32_t i = 0; i >= 0; i = s->sym[i].next)
        if (!ids_push(out, s->sym[i].id)) return DSI_ERR_NOMEM;
    return DSI_OK;
}

/* Normalize, pre-tokenize and BPE one segment that holds no special token. */
static enum dsi_status encode_segment(const struct dsi_tokenizer *t, const char *text, size_t len,
                                      struct scratch *s, struct spans *pieces, struct spans *tmp,
                                      pcre2_match_data *md, struct idvec *out) {
    char *norm = NULL;
    size_t nlen = len;
    enum dsi_status st = pretok_normalize(&t->pre, text, len, &norm, &nlen);
    if (st) return st;
    const char *src = norm ? norm : text;
    st = pretok_run(&t->pre, src, nlen, pieces, tmp, md);
    for (size_t i = 0; st == DSI_OK && i < pieces->n; i++)
        st = bpe_piece(t, (const uint8_t *)src + pieces->v[i].begin,
                       pieces->v[i].end - pieces->v[i].begin, s, out);
    free(norm);
    return st;
}

/* Longest special token whose text starts at text[i], or -1. */
static int32_t match_special(const struct dsi_tokenizer *t, const char *text, size_t len, size_t i,
                             bool parse_control) {
    if (!t->special_first[(uint8_t)text[i]]) return -1;
    for (int32_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        size_t n = t->tok[id].len;
        if (n > len - i || (t->tok[id].type == DSI_TOKEN_CONTROL && !parse_control)) continue;
        if (memcmp(text + i, tok_str(t, id), n) == 0) return id;
    }
    return -1;
}

enum dsi_status dsi_tokenizer_encode(const struct dsi_tokenizer *t, const char *text, size_t len,
                                     unsigned flags, int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    size_t bad = tok_utf8_check((const uint8_t *)text, len);
    if (bad != len) {
        DSI_LOG_ERR("tokenizer: input is not valid UTF-8 (bad byte 0x%02x at byte offset %zu)",
                    (uint8_t)text[bad], bad);
        return DSI_ERR_FORMAT;
    }
    struct idvec out = {0};
    struct scratch s = {0};
    struct spans pieces = {0}, tmp = {0};
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    enum dsi_status st = md ? DSI_OK : DSI_ERR_NOMEM;
    bool parse_control = (flags & DSI_TOK_PARSE_SPECIAL) != 0;

    if (st == DSI_OK && (flags & DSI_TOK_ADD_SPECIAL) && t->add_bos && t->bos >= 0)
        st = ids_push(&out, t->bos) ? DSI_OK : DSI_ERR_NOMEM;
    size_t seg = 0;
    for (size_t i = 0; st == DSI_OK && i < len;) {
        int32_t sp = t->n_special ? match_special(t, text, len, i, parse_control) : -1;
        if (sp < 0) {
            i++;
            continue;
        }
        if (i > seg) st = encode_segment(t, text + seg, i - seg, &s, &pieces, &tmp, md, &out);
        if (st == DSI_OK && !ids_push(&out, sp)) st = DSI_ERR_NOMEM;
        i += t->tok[sp].len;
        seg = i;
    }
    if (st == DSI_OK && len > seg)
        st = encode_segment(t, text + seg, len - seg, &s, &pieces, &tmp, md, &out);
    if (st == DSI_OK && (flags & DSI_TOK_ADD_SPECIAL) && t->add_eos && t->eos >= 0)
        st = ids_push(&out, t->eos) ? DSI_OK : DSI_ERR_NOMEM;

    pcre2_match_data_free(md);
    free(s.sym);
    free(s.heap);
    free(s.word);
    free(pieces.v);
    free(tmp.v);
    if (st) {
        if (st == DSI_ERR_NOMEM) DSI_LOG_ERR("tokenizer: out of memory");
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return DSI_OK;
}

/* ---- decoding -------------------------------------------------------------------------- */

int dsi_tokenizer_token_bytes(const struct dsi_tokenizer *t, int32_t id, unsigned flags,
                              char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return -1;
    const struct tok_entry *e = &t->tok[id];
    const char *s = tok_str(t, id);
    size_t n = 0;
    switch (e->type) {
    case DSI_TOKEN_CONTROL:
        if (!(flags & DSI_TOK_RENDER_SPECIAL)) return 0;
        /* fallthrough */
    case DSI_TOKEN_USER_DEFINED:
    case DSI_TOKEN_UNKNOWN:
        if (cap) memcpy(buf, s, e->len < cap ? e->len : cap);
        return (int)e->len;
    case DSI_TOKEN_UNUSED:
        return 0;
    default:
        break;
    }
    /* byte-level text: each code point maps back to one byte */
    for (size_t i = 0; i < e->len;) {
        uint8_t c = (uint8_t)s[i];
        uint32_t cp;
        size_t k;
        if (c < 0x80) cp = c, k = 1;
        else if ((c & 0xe0) == 0xc0 && i + 1 < e->len) cp = ((c & 0x1fu) << 6) | (s[i + 1] & 0x3f), k = 2;
        else cp = 0x110000, k = 1;
        int b = cp_byte(cp);
        if (b >= 0 && k > 0) {
            if (n < cap) buf[n] = (char)b;
            n++;
            i += k;
        } else {
            /* not in the byte alphabet: copy the character's bytes unchanged */
            size_t cl = 1;
            while (i + cl < e->len && ((uint8_t)s[i + cl] & 0xc0) == 0x80) cl++;
            for (size_t q = 0; q < cl; q++, n++)
                if (n < cap) buf[n] = s[i + q];
            i += cl;
        }
    }
    return (int)n;
}

enum dsi_status dsi_tokenizer_decode(const struct dsi_tokenizer *t, const int32_t *ids, size_t n,
                                     unsigned flags, char **out, size_t *out_len) {
    size_t cap = 64, len = 0;
    char *buf = malloc(cap);
    if (!buf) return DSI_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        int k = dsi_tokenizer_token_bytes(t, ids[i], flags, buf + len, cap - len - 1);
        if (k < 0) {
            DSI_LOG_ERR("tokenizer: token id %d is outside the vocabulary (0..%d)", ids[i],
                        t->n_vocab - 1);
            free(buf);
            return DSI_ERR_ARG;
        }
        if (len + (size_t)k + 1 > cap) {
            while (len + (size_t)k + 1 > cap) cap *= 2;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                return DSI_ERR_NOMEM;
            }
            buf = p;
            dsi_tokenizer_token_bytes(t, ids[i], flags, buf + len, cap - len - 1);
        }
        len += (size_t)k;
    }
    buf[len] = '\0';
    *out = buf;
    if (out_len) *out_len = len;
    return DSI_OK;
}

/* ---- accessors ------------------------------------------------------------------------- */

int32_t dsi_tokenizer_n_vocab(const struct dsi_tokenizer *t) { return t->n_vocab; }
int32_t dsi_tokenizer_bos(const struct dsi_tokenizer *t) { return t->bos; }
int32_t dsi_tokenizer_eos(const struct dsi_tokenizer *t) { return t->eos; }
bool dsi_tokenizer_add_bos(const struct dsi_tokenizer *t) { return t->add_bos; }
bool dsi_tokenizer_add_eos(const struct dsi_tokenizer *t) { return t->add_eos; }
const char *dsi_tokenizer_pre_name(const struct dsi_tokenizer *t) { return t->pre_name; }
const char *dsi_tokenizer_chat_template(const struct dsi_tokenizer *t) { return t->chat_template; }

bool dsi_tokenizer_is_eog(const struct dsi_tokenizer *t, int32_t id) {
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return true;
    return false;
}

const char *dsi_tokenizer_token_text(const struct dsi_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = t->tok[id].len;
    return tok_str(t, id);
}

enum dsi_token_type dsi_tokenizer_token_type(const struct dsi_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return DSI_TOKEN_UNDEFINED;
    return (enum dsi_token_type)t->tok[id].type;
}
