/* Normalizers (utf8proc) and pre-tokenizer chains (PCRE2), plus the table of llama.cpp's
 * pre-tokenizer names with their regexes, and the detection of which one a tokenizer.json
 * uses.
 *
 * Hugging Face compiles Split regexes with Oniguruma (Ruby syntax). PCRE2 with UTF+UCP
 * agrees on everything these patterns use except `\s`: Oniguruma's is TAB..CR, U+0085 and
 * the Zs/Zl/Zp categories, while PCRE2's misses U+0085. We rewrite `\s`/`\S` into explicit
 * classes, and compile with MULTILINE because Ruby's `^`/`$` are line anchors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/strbuf.h"
#include "src/tokenizer_impl.h"

/* Oniguruma's Unicode \s, as a class body. */
#define ONIG_SPACE                                                                                 \
    "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"    \
    "\\x{205F}\\x{3000}"

/* ---- regex translation ----------------------------------------------------------------- */

static bool sb_put(struct dsi_strbuf *b, const char *s, size_t n) {
    dsi_strbuf_put(b, s, n);
    return !b->failed;
}

static bool sb_puts(struct dsi_strbuf *b, const char *s) { return sb_put(b, s, strlen(s)); }

/* Rewrite \s and \S (outside and inside character classes) into Oniguruma's sets. */
static char *translate_regex(const char *src, size_t len) {
    struct dsi_strbuf b = {0};
    bool in_class = false, ok = sb_put(&b, "", 0);
    for (size_t i = 0; ok && i < len; i++) {
        char c = src[i];
        if (c == '\\' && i + 1 < len) {
            char e = src[i + 1];
            i++;
            if (e == 's')
                ok = sb_puts(&b, in_class ? ONIG_SPACE : "[" ONIG_SPACE "]");
            else if (e == 'S' && !in_class)
                ok = sb_puts(&b, "[^" ONIG_SPACE "]");
            else {
                char tmp[2] = {'\\', e};
                ok = sb_put(&b, tmp, 2);
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            ok = sb_put(&b, "[", 1);
            /* a leading ^ and a leading ] are part of the class syntax */
            if (ok && i + 1 < len && src[i + 1] == '^') ok = sb_put(&b, "^", 1), i++;
            if (ok && i + 1 < len && src[i + 1] == ']') ok = sb_put(&b, "]", 1), i++;
            continue;
        }
        if (in_class && c == ']') in_class = false;
        ok = sb_put(&b, &c, 1);
    }
    if (!ok) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static bool add_step(struct pretok *p, struct pretok_step s) {
    if (p->n_steps >= PRETOK_MAX_STEPS) return false;
    p->steps[p->n_steps++] = s;
    return true;
}

enum dsi_status pretok_add_split(struct pretok *p, const char *pattern, size_t len,
                                 enum split_behavior behavior, bool invert) {
    if (p->n_steps >= PRETOK_MAX_STEPS) {
        DSI_LOG_ERR("tokenizer: pre-tokenizer chain longer than %d steps", PRETOK_MAX_STEPS);
        return DSI_ERR_UNSUPPORTED;
    }
    char *tr = translate_regex(pattern, len);
    char *orig = malloc(len + 1);
    if (!tr || !orig) {
        free(tr);
        free(orig);
        return DSI_ERR_NOMEM;
    }
    memcpy(orig, pattern, len);
    orig[len] = '\0';
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)tr, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err, &off, NULL);
    free(tr);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        DSI_LOG_ERR("tokenizer: cannot compile pre-tokenizer regex '%.60s': %s", orig,
                    (const char *)msg);
        free(orig);
        return DSI_ERR_UNSUPPORTED;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
    struct pretok_step s = {PRETOK_SPLIT, behavior, invert, false, orig, re};
    add_step(p, s);
    return DSI_OK;
}

enum dsi_status pretok_add_digits(struct pretok *p, bool individual) {
    struct pretok_step s = {PRETOK_DIGITS, SPLIT_ISOLATED, false, individual, NULL, NULL};
    if (!add_step(p, s)) return DSI_ERR_UNSUPPORTED;
    return DSI_OK;
}

void pretok_free(struct pretok *p) {
    for (int i = 0; i < p->n_steps; i++) {
        free(p->steps[i].pattern);
        pcre2_code_free(p->steps[i].re);
    }
    p->n_steps = 0;
}

/* ---- running a chain ------------------------------------------------------------------- */

static bool spans_push(struct spans *s, size_t b, size_t e) {
    if (b >= e) return true;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        struct span *p = realloc(s->v, cap * sizeof *p);
        if (!p) return false;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = (struct span){b, e};
    return true;
}

/* One segment of a piece after matching: a regex match (delimiter) or the gap before it. */
struct mark {
    size_t b, e;
    bool delim;
};

/* Apply an HF SplitDelimiterBehavior to the marks of one piece (tokenizers'
 * NormalizedString::split) and append the non-empty results. */
static bool apply_behavior(enum split_behavior beh, struct mark *m, size_t n, struct spans *out) {
    size_t k = 0;
    bool prev = false;
    switch (beh) {
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++) m[k++] = m[i];
        break;
    case SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!m[i].delim) m[k++] = m[i];
        break;
    case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            if (m[i].delim && !prev && k > 0) m[k - 1].e = m[i].e;
            else m[k++] = m[i];
            prev = m[i].delim;
        }
        break;
    case SPLIT_MERGED_NEXT: {
        /* fold from the right, then the kept marks are m[k..n) in order */
        k = n;
        for (size_t i = n; i-- > 0;) {
            if (m[i].delim && !prev && k < n) m[k].b = m[i].b;
            else m[--k] = m[i];
            prev = m[i].delim;
        }
        for (size_t i = k; i < n; i++)
            if (!spans_push(out, m[i].b, m[i].e)) return false;
        return true;
    }
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && m[i].delim == prev && k > 0) m[k - 1].e = m[i].e;
            else m[k++] = m[i];
            prev = m[i].delim;
        }
        break;
    }
    for (size_t i = 0; i < k; i++)
        if (!spans_push(out, m[i].b, m[i].e)) return false;
    return true;
}

static bool mark_push(struct mark **v, size_t *n, size_t *cap, size_t b, size_t e, bool delim) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        struct mark *p = realloc(*v, c * sizeof *p);
        if (!p) return false;
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = (struct mark){b, e, delim};
    return true;
}

static enum dsi_status split_regex(const struct pretok_step *st, const char *text, struct span in,
                                   struct spans *out, pcre2_match_data *md) {
    const PCRE2_SPTR subj = (PCRE2_SPTR)text + in.begin;
    size_t len = in.end - in.begin, pos = 0, last = 0;
    bool fast = st->behavior == SPLIT_ISOLATED; /* every mark becomes a piece */
    struct mark *m = NULL;
    size_t n = 0, cap = 0;
    bool ok = true;
    while (ok && pos <= len) {
        int rc = pcre2_match(st->re, subj, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            DSI_LOG_ERR("tokenizer: regex match failed: %s", (const char *)msg);
            free(m);
            return DSI_ERR_LIMIT;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t mb = ov[0], me = ov[1];
        if (me == mb) {
            /* an empty match never makes a piece; step over one character */
            pos = me + 1;
            while (pos < len && (subj[pos] & 0xc0) == 0x80) pos++;
            continue;
        }
        /* invert: the matches are the content and the gaps the delimiters */
        if (fast) {
            ok = spans_push(out, in.begin + last, in.begin + mb) &&
                 spans_push(out, in.begin + mb, in.begin + me);
        } else {
            if (mb > last) ok = mark_push(&m, &n, &cap, in.begin + last, in.begin + mb, st->invert);
            ok = ok && mark_push(&m, &n, &cap, in.begin + mb, in.begin + me, !st->invert);
        }
        last = pos = me;
    }
    if (ok && fast) ok = spans_push(out, in.begin + last, in.end);
    else if (ok) {
        if (len > last) ok = mark_push(&m, &n, &cap, in.begin + last, in.end, st->invert);
        ok = ok && apply_behavior(st->behavior, m, n, out);
    }
    free(m);
    return ok ? DSI_OK : DSI_ERR_NOMEM;
}

/* Decode one UTF-8 code point at s (valid input). */
static size_t utf8_next(const uint8_t *s, size_t n, int32_t *cp) {
    utf8proc_ssize_t k = utf8proc_iterate(s, (utf8proc_ssize_t)n, cp);
    return k > 0 ? (size_t)k : 1;
}

static bool is_numeric(int32_t cp) {
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

static enum dsi_status split_digits(const struct pretok_step *st, const char *text, struct span in,
                                    struct spans *out) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = in.begin, run_b = in.begin;
    int run_kind = -1; /* 1 digits, 0 other */
    while (i < in.end) {
        int32_t cp;
        size_t k = utf8_next(s + i, in.end - i, &cp);
        int kind = is_numeric(cp);
        if (kind != run_kind || (kind == 1 && st->individual)) {
            if (!spans_push(out, run_b, i)) return DSI_ERR_NOMEM;
            run_b = i;
            run_kind = kind;
        }
        i += k;
    }
    return spans_push(out, run_b, in.end) ? DSI_OK : DSI_ERR_NOMEM;
}

enum dsi_status pretok_run(const struct pretok *p, const char *text, size_t len,
                           struct spans *out, struct spans *tmp, pcre2_match_data *md) {
    out->n = 0;
    if (!spans_push(out, 0, len)) return DSI_ERR_NOMEM;
    for (int k = 0; k < p->n_steps; k++) {
        const struct pretok_step *st = &p->steps[k];
        tmp->n = 0;
        for (size_t i = 0; i < out->n; i++) {
            enum dsi_status s = st->kind == PRETOK_SPLIT
                                    ? split_regex(st, text, out->v[i], tmp, md)
                                    : split_digits(st, text, out->v[i], tmp);
            if (s) return s;
        }
        struct spans sw = *out;
        *out = *tmp;
        *tmp = sw;
    }
    return DSI_OK;
}

enum dsi_status pretok_normalize(const struct pretok *p, const char *text, size_t len,
                                 char **out, size_t *out_len) {
    *out = NULL;
    *out_len = len;
    if (p->n_norm == 0) return DSI_OK;
    bool ascii = true;
    for (size_t i = 0; i < len && ascii; i++) ascii = (uint8_t)text[i] < 0x80;
    if (ascii) return DSI_OK; /* every normal form leaves ASCII unchanged */
    char *cur = NULL;
    const char *src = text;
    size_t n = len;
    for (int k = 0; k < p->n_norm; k++) {
        int opt = UTF8PROC_STABLE;
        switch (p->norm[k]) {
        case NORM_NFC: opt |= UTF8PROC_COMPOSE; break;
        case NORM_NFD: opt |= UTF8PROC_DECOMPOSE; break;
        case NORM_NFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
        case NORM_NFKD: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
        }
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)src, (utf8proc_ssize_t)n, &dst,
                                          (utf8proc_option_t)opt);
        free(cur);
        if (r < 0) {
            DSI_LOG_ERR("tokenizer: normalization failed: %s", utf8proc_errmsg(r));
            return r == UTF8PROC_ERROR_NOMEM ? DSI_ERR_NOMEM : DSI_ERR_FORMAT;
        }
        cur = (char *)dst;
        src = cur;
        n = (size_t)r;
    }
    *out = cur;
    *out_len = n;
    return DSI_OK;
}

/* ---- llama.cpp pre-tokenizer names ----------------------------------------------------- */

#define QWEN2_RE                                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*" \
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define LLAMA3_RE                                                                                  \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"    \
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define DSV3_RE3                                                                                   \
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+" \
    "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
/* Cased letters of DeepSeek-LLM's second split (models.md D.7; the intended ranges, not
 * llama.cpp's NFC-damaged copy). */
#define DSLLM_LETTERS                                                                              \
    "A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"     \
    "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}-\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}"              \
    "\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}"     \
    "\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}"     \
    "\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"   \
    "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}"    \
    "\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"    \
    "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}"   \
    "\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}"     \
    "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}"              \
    "\\x{2145}-\\x{2149}\\x{214E}\\x{2183}-\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"             \
    "\\x{2CEB}-\\x{2CEE}\\x{2CF2}-\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"   \
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"   \
    "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"                  \
    "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"              \
    "\\x{1E900}-\\x{1E943}"
#define CJK_HANGUL_RE "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

struct pretok_def {
    const char *name;
    bool nfc;
    bool ignore_merges;
    int n_steps;
    struct {
        const char *re; /* NULL: Digits(individual_digits = true) */
    } steps[8];
};

static const struct pretok_def defs[] = {
    {"qwen2", true, false, 1, {{QWEN2_RE}}},
    {"deepseek-r1-qwen", true, false, 1, {{QWEN2_RE}}},
    {"llama-bpe", false, true, 1, {{LLAMA3_RE}}},
    {"deepseek-v3", false, false, 3,
     {{"\\p{N}{1,3}"}, {"[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+"}, {DSV3_RE3}}},
    {"deepseek-llm", false, false, 6,
     {{"[\\r\\n]"},
      {"\\s?[" DSLLM_LETTERS "]+"},
      {"\\s?[\\x{21}-\\x{2F}\\x{3A}-\\x{7E}\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}"
       "\\x{3000}-\\x{3002}]+"},
      {"\\s+$"},
      {CJK_HANGUL_RE},
      {NULL}}},
    {"deepseek-coder", false, false, 5,
     {{"[\\r\\n]"}, {"\\s?\\p{L}+"}, {"\\s?\\p{P}+"}, {CJK_HANGUL_RE}, {NULL}}},
};

/* Other spellings llama.cpp accepts for the same pre-tokenizers. */
static const struct {
    const char *alias, *name;
} aliases[] = {
    {"llama3", "llama-bpe"},
    {"llama-v3", "llama-bpe"},
    {"deepseek3-llm", "deepseek-v3"},
};

const char *pretok_def_name(const struct pretok_def *d) { return d->name; }

const struct pretok_def *pretok_find(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strlen(aliases[i].alias) == len && memcmp(aliases[i].alias, name, len) == 0) {
            name = aliases[i].name;
            len = strlen(name);
        }
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        if (strlen(defs[i].name) == len && memcmp(defs[i].name, name, len) == 0) return &defs[i];
    return NULL;
}

enum dsi_status pretok_build(const struct pretok_def *d, struct pretok *p, bool *ignore_merges) {
    memset(p, 0, sizeof *p);
    if (d->nfc) p->norm[p->n_norm++] = NORM_NFC;
    for (int i = 0; i < d->n_steps; i++) {
        enum dsi_status s = d->steps[i].re
                                ? pretok_add_split(p, d->steps[i].re, strlen(d->steps[i].re),
                                                   SPLIT_ISOLATED, false)
                                : pretok_add_digits(p, true);
        if (s) {
            pretok_free(p);
            return s;
        }
    }
    *ignore_merges = d->ignore_merges;
    return DSI_OK;
}

/* Text that separates every pair of known pre-tokenizers: contractions, digit runs of
 * several lengths, CJK, kana and Hangul, many scripts, punctuation (ASCII and full-width),
 * symbols, marks, and whitespace runs of every kind. */
static const char probe_text[] =
    "Hello world! I'm sure you'll see they've done it; we'd've known. DON'T SHOUT, it's LOUD\n\n"
    "\n  \t  x  y\r\n z   \n 1 12 123 1234 12345 3.14159 -42 1e10 0x1F 2026-11-22 \xc2\xbd \xd9"
    "\xa3\xe2\x85\xa2 \xe6\xb7\xb1\xe5\xba\xa6\xe5\xad\xa6\xe4\xb9\xa0\xe6\xa8\xa1\xe5\x9e\x8b"
    "\xe3\x80\x82\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3"
    "\x82\xb9\xe3\x83\x88 \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xce\x95\xce\xbb\xce\xbb\xce\xb7"
    "\xce\xbd\xce\xb9\xce\xba\xce\xac \xd1\x80\xd1\x83\xd1\x81\xd1\x81\xd0\xba\xd0\xb8\xd0\xb9 "
    "\xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9 caf\xc3\xa9 \xc3\xa9 na\xc3\xafve "
    "\xc2\xb5 \xef\xac\x81 \xe2\x84\x82 \xc7\x85 \xf0\x9f\x99\x82\xf0\x9f\x9a\x80 (x) [y] {z} <a"
    "> !!! ??? ... ,,, --- ___ *** \xc2\xabq\xc2\xbb \xe2\x80\x9c" "c\xe2\x80\x9d \xe2\x80\x98s"
    "\xe2\x80\x99 \xef\xbc\x81\xef\xbc\x82 \xef\xbc\x9a\xef\xbc\x9b \xe3\x80\x80\xe3\x80\x82 $5 "
    "\xe2\x82\xac" "9 a+b=c x^2 #tag @user path/to/file.c a_b \xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4"
    "\x82\xe0\xa4\xa6\xe0\xa5\x80 \xe0\xb8\xa0\xe0\xb8\xb2\xe0\xb8\xa9\xe0\xb8\xb2 \xc2\xa0nb"
    "\xe2\x80\x83" "em\xc2\x85nel\xe3\x80\x80ideo \xef\xbc\xa1\xef\xbc\xa2\xef\xbc\xa3 \xef\xbd"
    "\x9a end   ";

/* True if two chains split the probe identically. */
static bool same_splits(const struct pretok *a, const struct pretok *b) {
    if (a->n_norm != b->n_norm) return false;
    for (int i = 0; i < a->n_norm; i++)
        if (a->norm[i] != b->norm[i]) return false;
    struct spans sa = {0}, sb = {0}, tmp = {0};
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    size_t n = sizeof probe_text - 1;
    bool same = md && pretok_run(a, probe_text, n, &sa, &tmp, md) == DSI_OK &&
                pretok_run(b, probe_text, n, &sb, &tmp, md) == DSI_OK && sa.n == sb.n &&
                memcmp(sa.v, sb.v, sa.n * sizeof *sa.v) == 0;
    pcre2_match_data_free(md);
    free(sa.v);
    free(sb.v);
    free(tmp.v);
    return same;
}

const char *pretok_identify(const struct pretok *p, bool ignore_merges, const char *bos_text) {
    static const char r1_bos[] = "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        const struct pretok_def *d = &defs[i];
        if (d->ignore_merges != ignore_merges) continue;
        /* the two qwen2 names differ only by the tokenizer's BOS */
        bool r1 = bos_text && strcmp(bos_text, r1_bos) == 0;
        if (!strcmp(d->name, "qwen2") && r1) continue;
        if (!strcmp(d->name, "deepseek-r1-qwen") && !r1) continue;
        struct pretok cand;
        bool im;
        if (pretok_build(d, &cand, &im) != DSI_OK) continue;
        bool same = same_splits(p, &cand);
        pretok_free(&cand);
        if (same) return d->name;
    }
    return NULL;
}
