/* Values of the Jinja evaluator: constructors, lists and dicts, truth and equality, string
 * building, str()/repr()/tojson printing and the Unicode string helpers (jinja_value.h). */
#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "src/jinja_value.h"

void dsi_jv_eerr(struct ectx *x, const char *fmt, ...) {
    if (x->err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->errbuf, sizeof x->errbuf, fmt, ap);
    va_end(ap);
    x->err = x->errbuf;
    x->err_line = x->line;
}

struct jv dsi_jv_undef(const char *name) {
    struct jv v = {.t = JV_UNDEF};
    v.s.p = name;
    v.s.n = 0;
    return v;
}

struct jv dsi_jv_jstr(struct ectx *x, const char *p, size_t n) {
    struct jv v = {.t = JV_STR};
    char *c = ja_alloc(&x->a, n + 1);
    if (!c) {
        dsi_jv_eerr(x, "out of memory");
        n = 0;
    } else if (n) {
        memcpy(c, p, n);
    }
    v.s.p = c ? c : "";
    v.s.n = n;
    return v;
}

struct jv dsi_jv_jcstr(struct ectx *x, const char *p) {
    return dsi_jv_jstr(x, p, strlen(p));
}

struct jlist *dsi_jv_new_list(struct ectx *x) {
    struct jlist *l = ja_alloc(&x->a, sizeof *l);
    if (!l) dsi_jv_eerr(x, "out of memory");
    return l;
}

void dsi_jv_list_push(struct ectx *x, struct jlist *l, struct jv v) {
    if (!l) return;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 8;
        struct jv *p = ja_alloc(&x->a, (size_t)cap * sizeof *p);
        if (!p) {
            dsi_jv_eerr(x, "out of memory");
            return;
        }
        if (l->n) memcpy(p, l->v, (size_t)l->n * sizeof *p);
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

struct jdict *dsi_jv_new_dict(struct ectx *x) {
    struct jdict *d = ja_alloc(&x->a, sizeof *d);
    if (!d) dsi_jv_eerr(x, "out of memory");
    return d;
}

bool dsi_jv_key_eq(struct jv a, const char *k, size_t n) {
    return a.t == JV_STR && a.s.n == n && !memcmp(a.s.p, k, n);
}

struct jv *dsi_jv_dict_find(const struct jdict *d, const char *k, size_t n) {
    if (!d) return NULL;
    for (int i = 0; i < d->n; i++)
        if (dsi_jv_key_eq(d->k[i], k, n)) return &d->v[i];
    return NULL;
}

struct jv *dsi_jv_dict_find_v(const struct jdict *d, struct jv k) {
    if (!d) return NULL;
    for (int i = 0; i < d->n; i++)
        if (dsi_jv_equal(d->k[i], k)) return &d->v[i];
    return NULL;
}

void dsi_jv_dict_set_v(struct ectx *x, struct jdict *d, struct jv k, struct jv v) {
    if (!d) return;
    struct jv *e = dsi_jv_dict_find_v(d, k);
    if (e) {
        *e = v;
        return;
    }
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 8;
        struct jv *nk = ja_alloc(&x->a, (size_t)cap * sizeof *nk);
        struct jv *nv = ja_alloc(&x->a, (size_t)cap * sizeof *nv);
        if (!nk || !nv) {
            dsi_jv_eerr(x, "out of memory");
            return;
        }
        if (d->n) {
            memcpy(nk, d->k, (size_t)d->n * sizeof *nk);
            memcpy(nv, d->v, (size_t)d->n * sizeof *nv);
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
}

void dsi_jv_dict_set(struct ectx *x, struct jdict *d, const char *k, struct jv v) {
    dsi_jv_dict_set_v(x, d, dsi_jv_jcstr(x, k), v);
}

bool dsi_jv_truthy(struct jv v) {
    switch (v.t) {
    case JV_UNDEF:
    case JV_NONE:
        return false;
    case JV_BOOL:
        return v.b;
    case JV_INT:
        return v.i != 0;
    case JV_FLOAT:
        return v.f != 0;
    case JV_STR:
        return v.s.n > 0;
    case JV_LIST:
        return v.l && v.l->n > 0;
    case JV_DICT:
        return v.d && v.d->n > 0;
    default:
        return true;
    }
}

const char *dsi_jv_type_name(struct jv v) {
    static const char *const n[] = {"undefined", "NoneType", "bool", "int",  "float",
                                    "str",       "list",     "dict", "macro"};
    if (v.t == JV_LIST && v.tuple) return "tuple";
    if (v.t == JV_DICT && v.d && v.d->ns) return "Namespace";
    return n[v.t];
}

bool dsi_jv_equal(struct jv a, struct jv b) {
    if (is_num(a) && is_num(b)) return num(a) == num(b);
    if (a.t != b.t) return a.t == JV_UNDEF && b.t == JV_UNDEF;
    switch (a.t) {
    case JV_NONE:
    case JV_UNDEF:
        return true;
    case JV_STR:
        return a.s.n == b.s.n && !memcmp(a.s.p, b.s.p, a.s.n);
    case JV_LIST:
        if (a.l->n != b.l->n) return false;
        for (int i = 0; i < a.l->n; i++)
            if (!dsi_jv_equal(a.l->v[i], b.l->v[i])) return false;
        return true;
    case JV_DICT:
        if (a.d == b.d) return true;
        if (a.d->n != b.d->n) return false;
        for (int i = 0; i < a.d->n; i++) {
            struct jv *o = dsi_jv_dict_find_v(b.d, a.d->k[i]);
            if (!o || !dsi_jv_equal(a.d->v[i], *o)) return false;
        }
        return true;
    case JV_MACRO:
        return a.macro == b.macro;
    default:
        return false;
    }
}

/* ---- string building ------------------------------------------------------------------- */

/* Python's repr() of a float: the shortest digits that round-trip, fixed notation for
 * exponents in [-4, 16), else d.ddde+XX; integral values keep ".0". */
void dsi_jv_put_float(struct dsi_strbuf *b, double f) {
    if (isnan(f)) {
        dsi_strbuf_puts(b, "nan");
        return;
    }
    if (isinf(f)) {
        dsi_strbuf_puts(b, f < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f) break;
    }
    char *ep = strchr(e, 'e');
    int exp10 = atoi(ep + 1);
    *ep = '\0';
    char digits[32];
    int nd = 0;
    bool neg = e[0] == '-';
    for (char *c = e + neg; *c; c++)
        if (*c >= '0' && *c <= '9') digits[nd++] = *c;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (neg) dsi_strbuf_put(b, "-", 1);
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            dsi_strbuf_puts(b, "0.");
            for (int i = 0; i < -exp10 - 1; i++)
                dsi_strbuf_put(b, "0", 1);
            dsi_strbuf_put(b, digits, (size_t)nd);
        } else {
            for (int i = 0; i <= exp10; i++)
                dsi_strbuf_put(b, i < nd ? &digits[i] : "0", 1);
            dsi_strbuf_put(b, ".", 1);
            if (nd > exp10 + 1)
                dsi_strbuf_put(b, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
            else
                dsi_strbuf_put(b, "0", 1);
        }
    } else {
        dsi_strbuf_put(b, digits, 1);
        if (nd > 1) {
            dsi_strbuf_put(b, ".", 1);
            dsi_strbuf_put(b, digits + 1, (size_t)nd - 1);
        }
        dsi_strbuf_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

/* Python repr() of a string: single quotes unless it has ' and no ". */
void dsi_jv_put_repr_str(struct dsi_strbuf *b, const char *s, size_t n) {
    bool sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    dsi_strbuf_put(b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == (unsigned char)q || c == '\\') {
            dsi_strbuf_put(b, "\\", 1);
            dsi_strbuf_put(b, s + i, 1);
        } else if (c == '\n')
            dsi_strbuf_puts(b, "\\n");
        else if (c == '\r')
            dsi_strbuf_puts(b, "\\r");
        else if (c == '\t')
            dsi_strbuf_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7f)
            dsi_strbuf_printf(b, "\\x%02x", c);
        else
            dsi_strbuf_put(b, s + i, 1);
    }
    dsi_strbuf_put(b, &q, 1);
}

void dsi_jv_put_str(struct dsi_strbuf *b, struct jv v, bool repr) {
    switch (v.t) {
    case JV_UNDEF:
        break;
    case JV_NONE:
        dsi_strbuf_puts(b, "None");
        break;
    case JV_BOOL:
        dsi_strbuf_puts(b, v.b ? "True" : "False");
        break;
    case JV_INT:
        dsi_strbuf_printf(b, "%lld", (long long)v.i);
        break;
    case JV_FLOAT:
        dsi_jv_put_float(b, v.f);
        break;
    case JV_STR:
        if (repr)
            dsi_jv_put_repr_str(b, v.s.p, v.s.n);
        else
            dsi_strbuf_put(b, v.s.p, v.s.n);
        break;
    case JV_LIST:
        dsi_strbuf_puts(b, v.tuple ? "(" : "[");
        for (int i = 0; i < v.l->n; i++) {
            if (i) dsi_strbuf_puts(b, ", ");
            dsi_jv_put_str(b, v.l->v[i], true);
        }
        if (v.tuple && v.l->n == 1) dsi_strbuf_puts(b, ",");
        dsi_strbuf_puts(b, v.tuple ? ")" : "]");
        break;
    case JV_DICT:
        if (v.d->ns) {
            dsi_strbuf_puts(b, "<Namespace>");
            break;
        }
        dsi_strbuf_puts(b, "{");
        for (int i = 0; i < v.d->n; i++) {
            if (i) dsi_strbuf_puts(b, ", ");
            dsi_jv_put_str(b, v.d->k[i], true);
            dsi_strbuf_puts(b, ": ");
            dsi_jv_put_str(b, v.d->v[i], true);
        }
        dsi_strbuf_puts(b, "}");
        break;
    case JV_MACRO:
        dsi_strbuf_puts(b, "<macro>");
        break;
    }
}

struct jv dsi_jv_to_str(struct ectx *x, struct jv v) {
    if (v.t == JV_STR) return v;
    struct dsi_strbuf b = {0};
    dsi_jv_put_str(&b, v, false);
    struct jv r = dsi_jv_jstr(x, b.p ? b.p : "", b.n);
    if (b.failed) dsi_jv_eerr(x, "out of memory");
    free(b.p);
    return r;
}

/* JSON as Python's json.dumps(ensure_ascii=False, indent=indent). */
void dsi_jv_put_json(struct ectx *x, struct dsi_strbuf *b, struct jv v, int indent, int level) {
    switch (v.t) {
    case JV_NONE:
        dsi_strbuf_puts(b, "null");
        return;
    case JV_BOOL:
        dsi_strbuf_puts(b, v.b ? "true" : "false");
        return;
    case JV_INT:
        dsi_strbuf_printf(b, "%lld", (long long)v.i);
        return;
    case JV_FLOAT:
        if (isnan(v.f))
            dsi_strbuf_puts(b, "NaN");
        else if (isinf(v.f))
            dsi_strbuf_puts(b, v.f < 0 ? "-Infinity" : "Infinity");
        else
            dsi_jv_put_float(b, v.f);
        return;
    case JV_STR:
        dsi_strbuf_put(b, "\"", 1);
        for (size_t i = 0; i < v.s.n; i++) {
            unsigned char c = (unsigned char)v.s.p[i];
            if (c == '"')
                dsi_strbuf_puts(b, "\\\"");
            else if (c == '\\')
                dsi_strbuf_puts(b, "\\\\");
            else if (c == '\n')
                dsi_strbuf_puts(b, "\\n");
            else if (c == '\r')
                dsi_strbuf_puts(b, "\\r");
            else if (c == '\t')
                dsi_strbuf_puts(b, "\\t");
            else if (c == '\b')
                dsi_strbuf_puts(b, "\\b");
            else if (c == '\f')
                dsi_strbuf_puts(b, "\\f");
            else if (c < 0x20 || c == 0x7f)
                dsi_strbuf_printf(b, "\\u%04x", c);
            else
                dsi_strbuf_put(b, v.s.p + i, 1);
        }
        dsi_strbuf_put(b, "\"", 1);
        return;
    case JV_LIST:
    case JV_DICT: {
        bool list = v.t == JV_LIST;
        int n = list ? v.l->n : v.d->n;
        dsi_strbuf_puts(b, list ? "[" : "{");
        if (n == 0) {
            dsi_strbuf_puts(b, list ? "]" : "}");
            return;
        }
        for (int i = 0; i < n; i++) {
            if (i) dsi_strbuf_puts(b, indent >= 0 ? "," : ", ");
            if (indent >= 0) {
                dsi_strbuf_puts(b, "\n");
                for (int k = 0; k < indent * (level + 1); k++)
                    dsi_strbuf_put(b, " ", 1);
            }
            if (list) {
                dsi_jv_put_json(x, b, v.l->v[i], indent, level + 1);
            } else {
                struct jv k = v.d->k[i];
                if (k.t != JV_STR) k = dsi_jv_to_str(x, k);
                dsi_jv_put_json(x, b, k, indent, level + 1);
                dsi_strbuf_puts(b, ": ");
                dsi_jv_put_json(x, b, v.d->v[i], indent, level + 1);
            }
        }
        if (indent >= 0) {
            dsi_strbuf_puts(b, "\n");
            for (int k = 0; k < indent * level; k++)
                dsi_strbuf_put(b, " ", 1);
        }
        dsi_strbuf_puts(b, list ? "]" : "}");
        return;
    }
    default:
        dsi_jv_eerr(x, "tojson: cannot serialize a value of type %s", dsi_jv_type_name(v));
    }
}

/* ---- UTF-8 helpers --------------------------------------------------------------------- */

size_t dsi_jv_cp_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) k++;
    return k;
}

/* Byte offset of code point index `ci` (clamped to the end). */
size_t dsi_jv_cp_offset(const char *s, size_t n, int64_t ci) {
    size_t i = 0;
    int64_t k = 0;
    while (i < n) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            if (k == ci) return i;
            k++;
        }
        i++;
    }
    return n;
}

bool dsi_jv_is_py_space(int32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

int32_t dsi_jv_cp_at(const char *s, size_t n, size_t i, size_t *len) {
    int32_t cp;
    utf8proc_ssize_t k =
        utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
    *len = k > 0 ? (size_t)k : 1;
    return k > 0 ? cp : (unsigned char)s[i];
}

bool dsi_jv_in_chars(int32_t c, struct jv chars) {
    for (size_t i = 0; i < chars.s.n;) {
        size_t l;
        if (dsi_jv_cp_at(chars.s.p, chars.s.n, i, &l) == c) return true;
        i += l;
    }
    return false;
}

/* strip / lstrip / rstrip with Python semantics (chars: none = whitespace). */
struct jv dsi_jv_strip(struct ectx *x, struct jv s, struct jv chars, bool left, bool right) {
    size_t b = 0, e = s.s.n;
    bool ws = chars.t != JV_STR;
    while (left && b < e) {
        size_t l;
        int32_t c = dsi_jv_cp_at(s.s.p, e, b, &l);
        if (ws ? !dsi_jv_is_py_space(c) : !dsi_jv_in_chars(c, chars)) break;
        b += l;
    }
    while (right && e > b) {
        size_t k = e - 1;
        while (k > b && ((unsigned char)s.s.p[k] & 0xc0) == 0x80)
            k--;
        size_t l;
        int32_t c = dsi_jv_cp_at(s.s.p, e, k, &l);
        if (ws ? !dsi_jv_is_py_space(c) : !dsi_jv_in_chars(c, chars)) break;
        e = k;
    }
    return dsi_jv_jstr(x, s.s.p + b, e - b);
}

struct jv dsi_jv_map_case(struct ectx *x, struct jv s,
                          int mode) { /* 0 lower 1 upper 2 title 3 capitalize */
    struct dsi_strbuf b = {0};
    bool word_start = true;
    for (size_t i = 0; i < s.s.n;) {
        size_t l;
        int32_t c = dsi_jv_cp_at(s.s.p, s.s.n, i, &l), o;
        if (mode == 0)
            o = utf8proc_tolower(c);
        else if (mode == 1)
            o = utf8proc_toupper(c);
        else if (mode == 2)
            o = word_start ? utf8proc_totitle(c) : utf8proc_tolower(c);
        else
            o = i == 0 ? utf8proc_totitle(c) : utf8proc_tolower(c);
        utf8proc_category_t cat = utf8proc_category(c);
        word_start = !(cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO);
        utf8proc_uint8_t enc[4];
        utf8proc_ssize_t k = utf8proc_encode_char(o, enc);
        dsi_strbuf_put(&b, (const char *)enc, (size_t)k);
        i += l;
    }
    struct jv r = dsi_jv_jstr(x, b.p ? b.p : "", b.n);
    free(b.p);
    return r;
}
