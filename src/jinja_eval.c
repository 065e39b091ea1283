/* Jinja evaluator: statements, expressions, and the built-in filters, tests, methods and
 * globals chat templates use (the values themselves: src/jinja_value.c). Every value of a
 * render lives in one arena that is freed when the render ends. Limits (output size, loop
 * iterations, macro depth) keep a hostile template stored in a model file from running away. */
#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "src/jinja_impl.h"
#include "src/jinja_value.h"

#define MAX_OUTPUT ((size_t)64 << 20)
#define MAX_STEPS 50000000L
#define MAX_DEPTH 64

/* ---- lookup and scopes ----------------------------------------------------------------- */

static struct jv lookup(struct ectx *x, const char *name) {
    size_t n = strlen(name);
    for (int i = x->n_scopes - 1; i >= 0; i--) {
        struct jv *v = dsi_jv_dict_find(x->scopes[i].vars, name, n);
        if (v) return *v;
    }
    struct jv *g = dsi_jv_dict_find(x->globals, name, n);
    if (g) return *g;
    return dsi_jv_undef(name);
}

static bool push_scope(struct ectx *x) {
    if (x->n_scopes >= 256) {
        dsi_jv_eerr(x, "scopes nested too deeply");
        return false;
    }
    x->scopes[x->n_scopes++].vars = dsi_jv_new_dict(x);
    return true;
}

static void set_var(struct ectx *x, const char *name, struct jv v) {
    dsi_jv_dict_set(x, x->scopes[x->n_scopes - 1].vars, name, v);
}

/* ---- evaluation ------------------------------------------------------------------------ */

static struct jv eval(struct ectx *x, const struct jexpr *e);
static void exec_body(struct ectx *x, const struct jbody *b);

/* Item access: jinja2 returns undefined instead of raising for missing keys and indices. */
static struct jv get_item(struct ectx *x, struct jv o, struct jv k) {
    if (o.t == JV_DICT) {
        struct jv *v = dsi_jv_dict_find_v(o.d, k);
        return v ? *v : dsi_jv_undef(k.t == JV_STR ? k.s.p : "?");
    }
    if (o.t == JV_LIST && is_intlike(k)) {
        int64_t i = ival(k);
        if (i < 0) i += o.l->n;
        return i >= 0 && i < o.l->n ? o.l->v[i] : dsi_jv_undef("index");
    }
    if (o.t == JV_STR && is_intlike(k)) {
        int64_t n = (int64_t)dsi_jv_cp_count(o.s.p, o.s.n), i = ival(k);
        if (i < 0) i += n;
        if (i < 0 || i >= n) return dsi_jv_undef("index");
        size_t b = dsi_jv_cp_offset(o.s.p, o.s.n, i), e = dsi_jv_cp_offset(o.s.p, o.s.n, i + 1);
        return dsi_jv_jstr(x, o.s.p + b, e - b);
    }
    if (o.t == JV_UNDEF) {
        dsi_jv_eerr(x, "'%s' is undefined", o.s.p ? o.s.p : "value");
        return dsi_jv_undef(NULL);
    }
    return dsi_jv_undef("item");
}

static struct jv get_attr(struct ectx *x, struct jv o, const char *name) {
    if (o.t == JV_DICT) {
        struct jv *v = dsi_jv_dict_find(o.d, name, strlen(name));
        return v ? *v : dsi_jv_undef(name);
    }
    if (o.t == JV_UNDEF) {
        dsi_jv_eerr(x, "'%s' is undefined (reading attribute '%s')", o.s.p ? o.s.p : "value", name);
        return dsi_jv_undef(NULL);
    }
    return dsi_jv_undef(name);
}

static struct jv slice(struct ectx *x, struct jv o, struct jv a, struct jv b, struct jv c) {
    int64_t n = o.t == JV_LIST  ? o.l->n
                : o.t == JV_STR ? (int64_t)dsi_jv_cp_count(o.s.p, o.s.n)
                                : -1;
    if (n < 0) {
        dsi_jv_eerr(x, "cannot slice a value of type %s", dsi_jv_type_name(o));
        return dsi_jv_undef(NULL);
    }
    int64_t step = c.t == JV_UNDEF || c.t == JV_NONE ? 1 : ival(c);
    if (step == 0) {
        dsi_jv_eerr(x, "slice step cannot be zero");
        return dsi_jv_undef(NULL);
    }
    int64_t lo, hi;
    if (step > 0) {
        lo = a.t == JV_UNDEF || a.t == JV_NONE ? 0 : ival(a);
        hi = b.t == JV_UNDEF || b.t == JV_NONE ? n : ival(b);
        if (lo < 0) lo += n;
        if (hi < 0) hi += n;
        lo = lo < 0 ? 0 : lo > n ? n : lo;
        hi = hi < 0 ? 0 : hi > n ? n : hi;
    } else {
        lo = a.t == JV_UNDEF || a.t == JV_NONE ? n - 1 : ival(a);
        hi = b.t == JV_UNDEF || b.t == JV_NONE ? -1 : ival(b);
        if (a.t != JV_UNDEF && a.t != JV_NONE && lo < 0) lo += n;
        if (b.t != JV_UNDEF && b.t != JV_NONE && hi < 0) hi += n;
        lo = lo < -1 ? -1 : lo > n - 1 ? n - 1 : lo;
        hi = hi < -1 ? -1 : hi > n - 1 ? n - 1 : hi;
    }
    if (o.t == JV_LIST) {
        struct jlist *l = dsi_jv_new_list(x);
        for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step)
            dsi_jv_list_push(x, l, o.l->v[i]);
        struct jv r = jlist_v(l);
        r.tuple = o.tuple;
        return r;
    }
    struct dsi_strbuf bb = {0};
    for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) {
        size_t s0 = dsi_jv_cp_offset(o.s.p, o.s.n, i), s1 = dsi_jv_cp_offset(o.s.p, o.s.n, i + 1);
        dsi_strbuf_put(&bb, o.s.p + s0, s1 - s0);
    }
    struct jv r = dsi_jv_jstr(x, bb.p ? bb.p : "", bb.n);
    free(bb.p);
    return r;
}

static bool contains(struct ectx *x, struct jv hay, struct jv needle) {
    if (hay.t == JV_STR) {
        if (needle.t != JV_STR) {
            dsi_jv_eerr(x, "'in <string>' requires a string on the left, not %s",
                        dsi_jv_type_name(needle));
            return false;
        }
        return needle.s.n == 0 || memmem(hay.s.p, hay.s.n, needle.s.p, needle.s.n) != NULL;
    }
    if (hay.t == JV_LIST) {
        for (int i = 0; i < hay.l->n; i++)
            if (dsi_jv_equal(hay.l->v[i], needle)) return true;
        return false;
    }
    if (hay.t == JV_DICT) return dsi_jv_dict_find_v(hay.d, needle) != NULL;
    if (hay.t == JV_UNDEF) return false;
    dsi_jv_eerr(x, "argument of type %s is not iterable", dsi_jv_type_name(hay));
    return false;
}

static int compare(struct ectx *x, struct jv a, struct jv b) {
    if (is_num(a) && is_num(b)) return num(a) < num(b) ? -1 : num(a) > num(b);
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t n = a.s.n < b.s.n ? a.s.n : b.s.n;
        int c = memcmp(a.s.p, b.s.p, n);
        return c ? (c < 0 ? -1 : 1) : a.s.n < b.s.n ? -1 : a.s.n > b.s.n;
    }
    dsi_jv_eerr(x, "cannot compare %s with %s", dsi_jv_type_name(a), dsi_jv_type_name(b));
    return 0;
}

static struct jv binary(struct ectx *x, const char *op, struct jv a, struct jv b) {
    if (!strcmp(op, "~")) {
        struct jv sa = dsi_jv_to_str(x, a), sbv = dsi_jv_to_str(x, b);
        struct dsi_strbuf s = {0};
        dsi_strbuf_put(&s, sa.s.p, sa.s.n);
        dsi_strbuf_put(&s, sbv.s.p, sbv.s.n);
        struct jv r = dsi_jv_jstr(x, s.p ? s.p : "", s.n);
        free(s.p);
        return r;
    }
    if (!strcmp(op, "==")) return jbool(dsi_jv_equal(a, b));
    if (!strcmp(op, "!=")) return jbool(!dsi_jv_equal(a, b));
    if (!strcmp(op, "<")) return jbool(compare(x, a, b) < 0);
    if (!strcmp(op, "<=")) return jbool(compare(x, a, b) <= 0);
    if (!strcmp(op, ">")) return jbool(compare(x, a, b) > 0);
    if (!strcmp(op, ">=")) return jbool(compare(x, a, b) >= 0);
    if (!strcmp(op, "in")) return jbool(contains(x, b, a));
    if (!strcmp(op, "nin")) return jbool(!contains(x, b, a));
    if (!strcmp(op, "+")) {
        if (a.t == JV_STR && b.t == JV_STR) {
            struct dsi_strbuf s = {0};
            dsi_strbuf_put(&s, a.s.p, a.s.n);
            dsi_strbuf_put(&s, b.s.p, b.s.n);
            struct jv r = dsi_jv_jstr(x, s.p ? s.p : "", s.n);
            free(s.p);
            return r;
        }
        if (a.t == JV_LIST && b.t == JV_LIST) {
            struct jlist *l = dsi_jv_new_list(x);
            for (int i = 0; i < a.l->n; i++)
                dsi_jv_list_push(x, l, a.l->v[i]);
            for (int i = 0; i < b.l->n; i++)
                dsi_jv_list_push(x, l, b.l->v[i]);
            return jlist_v(l);
        }
    }
    if (!strcmp(op, "*") && (a.t == JV_STR || a.t == JV_LIST) && is_intlike(b)) {
        int64_t k = ival(b);
        size_t unit = a.t == JV_STR ? a.s.n : (size_t)a.l->n * sizeof(struct jv);
        if (k > 1000000 || (k > 0 && unit > MAX_OUTPUT / (size_t)k)) {
            dsi_jv_eerr(x, "repetition count %lld is too large", (long long)k);
            return dsi_jv_undef(NULL);
        }
        if (a.t == JV_STR) {
            struct dsi_strbuf s = {0};
            for (int64_t i = 0; i < k; i++)
                dsi_strbuf_put(&s, a.s.p, a.s.n);
            struct jv r = dsi_jv_jstr(x, s.p ? s.p : "", s.n);
            free(s.p);
            return r;
        }
        struct jlist *l = dsi_jv_new_list(x);
        for (int64_t i = 0; i < k; i++)
            for (int j = 0; j < a.l->n; j++)
                dsi_jv_list_push(x, l, a.l->v[j]);
        return jlist_v(l);
    }
    if (!strcmp(op, "%") && a.t == JV_STR) { /* printf-style formatting, %s and %d */
        struct jlist *args = b.t == JV_LIST && b.tuple ? b.l : NULL;
        int ai = 0;
        struct dsi_strbuf s = {0};
        for (size_t i = 0; i < a.s.n; i++) {
            if (a.s.p[i] != '%' || i + 1 >= a.s.n) {
                dsi_strbuf_put(&s, a.s.p + i, 1);
                continue;
            }
            char f = a.s.p[++i];
            if (f == '%') {
                dsi_strbuf_put(&s, "%", 1);
                continue;
            }
            struct jv v = args ? (ai < args->n ? args->v[ai++] : dsi_jv_undef(NULL)) : b;
            if (f == 'd' && is_num(v))
                dsi_strbuf_printf(&s, "%lld", (long long)ival(v));
            else
                dsi_jv_put_str(&s, v, f == 'r');
        }
        struct jv r = dsi_jv_jstr(x, s.p ? s.p : "", s.n);
        free(s.p);
        return r;
    }
    if (!is_num(a) || !is_num(b)) {
        dsi_jv_eerr(x, "unsupported operand types for %s: %s and %s", op, dsi_jv_type_name(a),
                    dsi_jv_type_name(b));
        return dsi_jv_undef(NULL);
    }
    bool ints = is_intlike(a) && is_intlike(b);
    if (ints && (op[0] == '+' || op[0] == '-' || (op[0] == '*' && !op[1]))) {
        int64_t r;
        bool ovf = op[0] == '+'   ? __builtin_add_overflow(ival(a), ival(b), &r)
                   : op[0] == '-' ? __builtin_sub_overflow(ival(a), ival(b), &r)
                                  : __builtin_mul_overflow(ival(a), ival(b), &r);
        if (ovf) {
            dsi_jv_eerr(x, "integer overflow in %s", op);
            return dsi_jv_undef(NULL);
        }
        return jint(r);
    }
    if (!strcmp(op, "+")) return jfloat(num(a) + num(b));
    if (!strcmp(op, "-")) return jfloat(num(a) - num(b));
    if (!strcmp(op, "*")) return jfloat(num(a) * num(b));
    if (!strcmp(op, "/")) {
        if (num(b) == 0) {
            dsi_jv_eerr(x, "division by zero");
            return dsi_jv_undef(NULL);
        }
        return jfloat(num(a) / num(b));
    }
    if (!strcmp(op, "//") || !strcmp(op, "%")) {
        if (num(b) == 0) {
            dsi_jv_eerr(x, "division by zero");
            return dsi_jv_undef(NULL);
        }
        if (ints) {
            if (ival(b) == -1 && ival(a) == INT64_MIN) {
                dsi_jv_eerr(x, "integer overflow in %s", op);
                return dsi_jv_undef(NULL);
            }
            int64_t q = ival(a) / ival(b), r = ival(a) % ival(b);
            if (r != 0 && ((r < 0) != (ival(b) < 0))) q--, r += ival(b);
            return jint(op[0] == '/' ? q : r);
        }
        double q = floor(num(a) / num(b));
        return jfloat(op[0] == '/' ? q : num(a) - q * num(b));
    }
    if (!strcmp(op, "**")) {
        if (ints && ival(b) >= 0) {
            int64_t r = 1;
            for (int64_t i = 0; i < ival(b) && r != 0; i++) {
                if (__builtin_mul_overflow(r, ival(a), &r)) {
                    dsi_jv_eerr(x, "integer overflow in **");
                    return dsi_jv_undef(NULL);
                }
                if (r == 1 || r == -1) { /* 1 and -1 stay bounded: finish by parity */
                    if (r == -1 && (ival(b) - i - 1) % 2) r = 1;
                    break;
                }
            }
            return jint(r);
        }
        return jfloat(pow(num(a), num(b)));
    }
    dsi_jv_eerr(x, "unknown operator %s", op);
    return dsi_jv_undef(NULL);
}

/* Evaluated call arguments. */
struct args {
    struct jv pos[16];
    int n;
    const char *kwn[16];
    struct jv kwv[16];
    int nk;
};

static bool eval_args(struct ectx *x, const struct jexpr *e, struct args *a, int skip) {
    a->n = a->nk = 0;
    for (int i = skip; i < e->n_args && a->n < 16; i++)
        a->pos[a->n++] = eval(x, e->args[i]);
    for (int i = 0; i < e->n_kw && a->nk < 16; i++) {
        a->kwn[a->nk] = e->kwnames[i];
        a->kwv[a->nk++] = eval(x, e->kwvals[i]);
    }
    return !x->err;
}

/* Argument by position or keyword (or undefined). */
static struct jv arg(const struct args *a, int i, const char *kw) {
    if (i < a->n) return a->pos[i];
    for (int k = 0; kw && k < a->nk; k++)
        if (!strcmp(a->kwn[k], kw)) return a->kwv[k];
    return dsi_jv_undef(NULL);
}

static struct jv apply_test(struct ectx *x, const char *name, struct jv v, const struct args *a);
static struct jv apply_filter(struct ectx *x, const char *name, struct jv v, const struct args *a);
static struct jv call_macro(struct ectx *x, const struct jnode *m, const struct args *a,
                            const struct jbody *caller);

/* Items of an iterable as a list (dict: keys; string: characters; undefined: empty). */
static struct jlist *iter_list(struct ectx *x, struct jv v) {
    if (v.t == JV_LIST) return v.l;
    struct jlist *l = dsi_jv_new_list(x);
    if (v.t == JV_DICT) {
        for (int i = 0; i < v.d->n; i++)
            dsi_jv_list_push(x, l, v.d->k[i]);
    } else if (v.t == JV_STR) {
        for (size_t i = 0; i < v.s.n;) {
            size_t k;
            dsi_jv_cp_at(v.s.p, v.s.n, i, &k);
            dsi_jv_list_push(x, l, dsi_jv_jstr(x, v.s.p + i, k));
            i += k;
        }
    } else if (v.t != JV_UNDEF) {
        dsi_jv_eerr(x, "'%s' object is not iterable", dsi_jv_type_name(v));
    }
    return l;
}

static struct jv split(struct ectx *x, struct jv s, struct jv sep, int64_t maxsplit) {
    struct jlist *l = dsi_jv_new_list(x);
    const char *p = s.s.p, *end = p + s.s.n;
    if (sep.t != JV_STR) { /* whitespace runs, no empty pieces */
        int64_t splits = 0;
        while (p < end) {
            size_t k;
            while (p < end && dsi_jv_is_py_space(dsi_jv_cp_at(p, (size_t)(end - p), 0, &k)))
                p += k;
            if (p >= end) break;
            const char *b = p;
            if (maxsplit >= 0 && splits >= maxsplit) {
                const char *e2 = end;
                while (e2 > b && dsi_jv_is_py_space((unsigned char)e2[-1]))
                    e2--;
                dsi_jv_list_push(x, l, dsi_jv_jstr(x, b, (size_t)(e2 - b)));
                break;
            }
            while (p < end && !dsi_jv_is_py_space(dsi_jv_cp_at(p, (size_t)(end - p), 0, &k)))
                p += k;
            dsi_jv_list_push(x, l, dsi_jv_jstr(x, b, (size_t)(p - b)));
            splits++;
        }
        return jlist_v(l);
    }
    if (sep.s.n == 0) {
        dsi_jv_eerr(x, "empty separator");
        return dsi_jv_undef(NULL);
    }
    int64_t splits = 0;
    for (;;) {
        const char *f = maxsplit >= 0 && splits >= maxsplit
                            ? NULL
                            : memmem(p, (size_t)(end - p), sep.s.p, sep.s.n);
        if (!f) {
            dsi_jv_list_push(x, l, dsi_jv_jstr(x, p, (size_t)(end - p)));
            break;
        }
        dsi_jv_list_push(x, l, dsi_jv_jstr(x, p, (size_t)(f - p)));
        p = f + sep.s.n;
        splits++;
    }
    return jlist_v(l);
}

static bool starts_ends(struct jv s, struct jv pre, bool ends) {
    if (pre.t == JV_LIST) {
        for (int i = 0; i < pre.l->n; i++)
            if (starts_ends(s, pre.l->v[i], ends)) return true;
        return false;
    }
    if (pre.t != JV_STR || pre.s.n > s.s.n) return false;
    return !memcmp(ends ? s.s.p + s.s.n - pre.s.n : s.s.p, pre.s.p, pre.s.n);
}

static struct jv replace(struct ectx *x, struct jv s, struct jv from, struct jv to, int64_t count) {
    if (from.t != JV_STR || to.t != JV_STR) {
        dsi_jv_eerr(x, "replace() needs strings");
        return dsi_jv_undef(NULL);
    }
    struct dsi_strbuf b = {0};
    const char *p = s.s.p, *end = p + s.s.n;
    int64_t done = 0;
    while (p <= end) {
        const char *f = (count >= 0 && done >= count) ? NULL
                        : from.s.n ? memmem(p, (size_t)(end - p), from.s.p, from.s.n)
                                   : (p < end || done == 0 ? p : NULL);
        if (!f) {
            dsi_strbuf_put(&b, p, (size_t)(end - p));
            break;
        }
        dsi_strbuf_put(&b, p, (size_t)(f - p));
        dsi_strbuf_put(&b, to.s.p, to.s.n);
        done++;
        if (from.s.n)
            p = f + from.s.n;
        else {
            if (f < end) dsi_strbuf_put(&b, f, 1);
            p = f + 1;
            if (f >= end) break;
        }
    }
    struct jv r = dsi_jv_jstr(x, b.p ? b.p : "", b.n);
    free(b.p);
    return r;
}

/* obj.name(args): string, dict and loop methods. */
static struct jv call_method(struct ectx *x, struct jv o, const char *m, const struct args *a) {
    if (o.t == JV_STR) {
        if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip"))
            return dsi_jv_strip(x, o, arg(a, 0, "chars"), m[0] != 'r', m[0] != 'l');
        if (!strcmp(m, "split")) {
            struct jv mx = arg(a, 1, "maxsplit");
            return split(x, o, arg(a, 0, "sep"), mx.t == JV_UNDEF ? -1 : ival(mx));
        }
        if (!strcmp(m, "startswith")) return jbool(starts_ends(o, arg(a, 0, NULL), false));
        if (!strcmp(m, "endswith")) return jbool(starts_ends(o, arg(a, 0, NULL), true));
        if (!strcmp(m, "replace")) {
            struct jv c = arg(a, 2, "count");
            return replace(x, o, arg(a, 0, NULL), arg(a, 1, NULL), c.t == JV_UNDEF ? -1 : ival(c));
        }
        if (!strcmp(m, "lower")) return dsi_jv_map_case(x, o, 0);
        if (!strcmp(m, "upper")) return dsi_jv_map_case(x, o, 1);
        if (!strcmp(m, "title")) return dsi_jv_map_case(x, o, 2);
        if (!strcmp(m, "capitalize")) return dsi_jv_map_case(x, o, 3);
        if (!strcmp(m, "find") || !strcmp(m, "count") || !strcmp(m, "index")) {
            struct jv n = arg(a, 0, NULL);
            if (n.t != JV_STR) {
                dsi_jv_eerr(x, "%s() needs a string argument", m);
                return dsi_jv_undef(NULL);
            }
            if (m[0] == 'c') {
                int64_t k = 0;
                for (const char *p = o.s.p;
                     n.s.n && (p = memmem(p, (size_t)(o.s.p + o.s.n - p), n.s.p, n.s.n));
                     p += n.s.n)
                    k++;
                return jint(k);
            }
            const char *f = memmem(o.s.p, o.s.n, n.s.p, n.s.n);
            if (!f && m[0] == 'i') {
                dsi_jv_eerr(x, "substring not found");
                return dsi_jv_undef(NULL);
            }
            return jint(f ? (int64_t)dsi_jv_cp_count(o.s.p, (size_t)(f - o.s.p)) : -1);
        }
        if (!strcmp(m, "join")) {
            struct jlist *l = iter_list(x, arg(a, 0, NULL));
            struct dsi_strbuf b = {0};
            for (int i = 0; l && i < l->n; i++) {
                if (i) dsi_strbuf_put(&b, o.s.p, o.s.n);
                struct jv s = dsi_jv_to_str(x, l->v[i]);
                dsi_strbuf_put(&b, s.s.p, s.s.n);
            }
            struct jv r = dsi_jv_jstr(x, b.p ? b.p : "", b.n);
            free(b.p);
            return r;
        }
        if (!strcmp(m, "isdigit") || !strcmp(m, "isspace") || !strcmp(m, "isalpha")) {
            bool ok = o.s.n > 0;
            for (size_t i = 0; ok && i < o.s.n;) {
                size_t k;
                int32_t c = dsi_jv_cp_at(o.s.p, o.s.n, i, &k);
                utf8proc_category_t cat = utf8proc_category(c);
                ok = m[2] == 'd'   ? cat == UTF8PROC_CATEGORY_ND
                     : m[2] == 's' ? dsi_jv_is_py_space(c)
                                   : (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO);
                i += k;
            }
            return jbool(ok);
        }
    } else if (o.t == JV_DICT) {
        if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
            struct jlist *l = dsi_jv_new_list(x);
            for (int i = 0; i < o.d->n; i++) {
                if (m[0] == 'k')
                    dsi_jv_list_push(x, l, o.d->k[i]);
                else if (m[0] == 'v')
                    dsi_jv_list_push(x, l, o.d->v[i]);
                else {
                    struct jlist *p = dsi_jv_new_list(x);
                    dsi_jv_list_push(x, p, o.d->k[i]);
                    dsi_jv_list_push(x, p, o.d->v[i]);
                    struct jv t = jlist_v(p);
                    t.tuple = true;
                    dsi_jv_list_push(x, l, t);
                }
            }
            return jlist_v(l);
        }
        if (!strcmp(m, "get")) {
            struct jv *v = dsi_jv_dict_find_v(o.d, arg(a, 0, NULL));
            if (v) return *v;
            struct jv d = arg(a, 1, "default");
            return d.t == JV_UNDEF ? none() : d;
        }
        if (o.d->loop && !strcmp(m, "cycle")) {
            if (a->n == 0) return dsi_jv_undef(NULL);
            struct jv *i0 = dsi_jv_dict_find(o.d, "index0", 6);
            return a->pos[(i0 ? ival(*i0) : 0) % a->n];
        }
        struct jv *f = dsi_jv_dict_find(o.d, m, strlen(m));
        if (f && f->t == JV_MACRO) return call_macro(x, f->macro, a, NULL);
    } else if (o.t == JV_UNDEF) {
        dsi_jv_eerr(x, "'%s' is undefined (calling .%s())", o.s.p ? o.s.p : "value", m);
        return dsi_jv_undef(NULL);
    }
    dsi_jv_eerr(x, "'%s' object has no method '%s'", dsi_jv_type_name(o), m);
    return dsi_jv_undef(NULL);
}

static void format_time(struct ectx *x, const char *fmt, struct dsi_strbuf *b) {
    time_t t = x->now ? x->now : time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char out[256];
    size_t n = strftime(out, sizeof out, fmt, &tm);
    dsi_strbuf_put(b, out, n);
}

static struct jv call_global(struct ectx *x, const char *name, const struct args *a) {
    if (!strcmp(name, "range")) {
        int64_t start = 0, stop, step = 1;
        if (a->n == 1)
            stop = ival(a->pos[0]);
        else if (a->n >= 2) {
            start = ival(a->pos[0]);
            stop = ival(a->pos[1]);
            if (a->n >= 3) step = ival(a->pos[2]);
        } else {
            dsi_jv_eerr(x, "range() needs arguments");
            return dsi_jv_undef(NULL);
        }
        int64_t span;
        if (step == 0 || __builtin_sub_overflow(stop, start, &span) ||
            (step != -1 ? span / step : -(span / 2)) > 1000000 || (step == -1 && span < -2000000)) {
            dsi_jv_eerr(x, "range() is too large or has step 0");
            return dsi_jv_undef(NULL);
        }
        struct jlist *l = dsi_jv_new_list(x);
        int64_t count = span / step + (span % step != 0);
        for (int64_t k = 0; k < count; k++)
            dsi_jv_list_push(x, l, jint(start + k * step));
        return jlist_v(l);
    }
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        struct jdict *d = dsi_jv_new_dict(x);
        if (!d) return dsi_jv_undef(NULL);
        d->ns = name[0] == 'n';
        if (a->n == 1 && a->pos[0].t == JV_DICT)
            for (int i = 0; i < a->pos[0].d->n; i++)
                dsi_jv_dict_set_v(x, d, a->pos[0].d->k[i], a->pos[0].d->v[i]);
        for (int i = 0; i < a->nk; i++)
            dsi_jv_dict_set(x, d, a->kwn[i], a->kwv[i]);
        return (struct jv){.t = JV_DICT, .d = d};
    }
    if (!strcmp(name, "raise_exception")) {
        struct jv m = dsi_jv_to_str(x, arg(a, 0, NULL));
        dsi_jv_eerr(x, "raise_exception: %.*s", (int)(m.s.n > 200 ? 200 : m.s.n), m.s.p);
        return dsi_jv_undef(NULL);
    }
    if (!strcmp(name, "strftime_now")) {
        struct jv f = arg(a, 0, NULL);
        if (f.t != JV_STR) {
            dsi_jv_eerr(x, "strftime_now() needs a format string");
            return dsi_jv_undef(NULL);
        }
        struct dsi_strbuf b = {0};
        format_time(x, f.s.p, &b);
        struct jv r = dsi_jv_jstr(x, b.p ? b.p : "", b.n);
        free(b.p);
        return r;
    }
    struct jv v = lookup(x, name);
    if (v.t == JV_MACRO) return call_macro(x, v.macro, a, NULL);
    dsi_jv_eerr(x, "'%s' is not a function", name);
    return dsi_jv_undef(NULL);
}

static struct jv eval(struct ectx *x, const struct jexpr *e) {
    if (x->err || !e) return dsi_jv_undef(NULL);
    if (++x->steps > MAX_STEPS) {
        dsi_jv_eerr(x, "template runs too long");
        return dsi_jv_undef(NULL);
    }
    x->line = e->line;
    switch (e->kind) {
    case EX_LITERAL:
        switch (e->lit) {
        case LIT_NONE:
            return none();
        case LIT_BOOL:
            return jbool(e->ival != 0);
        case LIT_INT:
            return jint(e->ival);
        case LIT_FLOAT:
            return jfloat(e->fval);
        case LIT_STR: {
            struct jv v = {.t = JV_STR};
            v.s.p = e->sval;
            v.s.n = e->slen;
            return v;
        }
        }
        return none();
    case EX_NAME:
        return lookup(x, e->name);
    case EX_ATTR:
        return get_attr(x, eval(x, e->a), e->name);
    case EX_INDEX: {
        struct jv o = eval(x, e->a), k = eval(x, e->b);
        return get_item(x, o, k);
    }
    case EX_SLICE: {
        struct jv o = eval(x, e->a);
        return slice(x, o, eval(x, e->b), eval(x, e->c), eval(x, e->d));
    }
    case EX_CALL: {
        struct args a;
        if (e->a->kind == EX_ATTR) {
            struct jv o = eval(x, e->a->a);
            if (!eval_args(x, e, &a, 0)) return dsi_jv_undef(NULL);
            return call_method(x, o, e->a->name, &a);
        }
        if (!eval_args(x, e, &a, 0)) return dsi_jv_undef(NULL);
        if (e->a->kind == EX_NAME) return call_global(x, e->a->name, &a);
        struct jv f = eval(x, e->a);
        if (f.t == JV_MACRO) return call_macro(x, f.macro, &a, NULL);
        dsi_jv_eerr(x, "'%s' object is not callable", dsi_jv_type_name(f));
        return dsi_jv_undef(NULL);
    }
    case EX_FILTER: {
        struct jv v = eval(x, e->a);
        struct args a;
        if (!eval_args(x, e, &a, 0)) return dsi_jv_undef(NULL);
        return apply_filter(x, e->name, v, &a);
    }
    case EX_TEST: {
        struct jv v = eval(x, e->a);
        struct args a;
        if (!eval_args(x, e, &a, 0)) return dsi_jv_undef(NULL);
        struct jv r = apply_test(x, e->name, v, &a);
        return e->negated ? jbool(!dsi_jv_truthy(r)) : r;
    }
    case EX_NEG:
    case EX_POS: {
        struct jv v = eval(x, e->a);
        if (!is_num(v)) {
            dsi_jv_eerr(x, "bad operand type for unary %c: %s", e->kind == EX_NEG ? '-' : '+',
                        dsi_jv_type_name(v));
            return dsi_jv_undef(NULL);
        }
        if (e->kind == EX_POS) return is_intlike(v) ? jint(ival(v)) : v;
        if (is_intlike(v) && ival(v) == INT64_MIN) {
            dsi_jv_eerr(x, "integer overflow in unary -");
            return dsi_jv_undef(NULL);
        }
        return is_intlike(v) ? jint(-ival(v)) : jfloat(-v.f);
    }
    case EX_NOT:
        return jbool(!dsi_jv_truthy(eval(x, e->a)));
    case EX_AND: {
        struct jv a = eval(x, e->a);
        return dsi_jv_truthy(a) ? eval(x, e->b) : a;
    }
    case EX_OR: {
        struct jv a = eval(x, e->a);
        return dsi_jv_truthy(a) ? a : eval(x, e->b);
    }
    case EX_COND:
        if (dsi_jv_truthy(eval(x, e->a))) return eval(x, e->b);
        return e->c ? eval(x, e->c) : dsi_jv_undef(NULL);
    case EX_BINARY: {
        struct jv a = eval(x, e->a), b = eval(x, e->b);
        if (x->err) return dsi_jv_undef(NULL);
        return binary(x, e->op, a, b);
    }
    case EX_LIST:
    case EX_TUPLE: {
        struct jlist *l = dsi_jv_new_list(x);
        for (int i = 0; i < e->n_args; i++)
            dsi_jv_list_push(x, l, eval(x, e->args[i]));
        struct jv v = jlist_v(l);
        v.tuple = e->kind == EX_TUPLE;
        return v;
    }
    case EX_DICT: {
        struct jdict *d = dsi_jv_new_dict(x);
        for (int i = 0; i < e->n_args; i++)
            dsi_jv_dict_set_v(x, d, eval(x, e->args[i]), eval(x, e->kwvals[i]));
        return (struct jv){.t = JV_DICT, .d = d};
    }
    }
    return dsi_jv_undef(NULL);
}

/* ---- filters and tests ----------------------------------------------------------------- */

static struct jv attr_path(struct ectx *x, struct jv v, struct jv attr) {
    if (attr.t == JV_INT) return get_item(x, v, attr);
    if (attr.t != JV_STR) return v;
    /* "a.b" walks nested attributes */
    const char *p = attr.s.p, *end = p + attr.s.n;
    while (p < end && !x->err) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        char *k = ja_strndup(&x->a, p, n);
        v = v.t == JV_DICT ? get_attr(x, v, k) : dsi_jv_undef(k);
        p += n + 1;
    }
    return v;
}

static int cmp_sort(struct ectx *x, struct jv a, struct jv b) {
    if (a.t == JV_STR && b.t == JV_STR) return compare(x, a, b);
    if (is_num(a) && is_num(b)) return compare(x, a, b);
    return compare(x, dsi_jv_to_str(x, a), dsi_jv_to_str(x, b));
}

static struct jv apply_filter(struct ectx *x, const char *f, struct jv v, const struct args *a) {
    if (x->err) return dsi_jv_undef(NULL);
    if (!strcmp(f, "trim"))
        return dsi_jv_strip(x, dsi_jv_to_str(x, v), arg(a, 0, "chars"), true, true);
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        if (v.t == JV_STR) return jint((int64_t)dsi_jv_cp_count(v.s.p, v.s.n));
        if (v.t == JV_LIST) return jint(v.l->n);
        if (v.t == JV_DICT) return jint(v.d->n);
        if (v.t == JV_UNDEF) return jint(0);
        dsi_jv_eerr(x, "object of type %s has no len()", dsi_jv_type_name(v));
        return dsi_jv_undef(NULL);
    }
    if (!strcmp(f, "tojson")) {
        struct jv ind = arg(a, 0, "indent");
        struct dsi_strbuf b = {0};
        dsi_jv_put_json(x, &b, v, ind.t == JV_INT ? (int)ind.i : -1, 0);
        struct jv r = dsi_jv_jstr(x, b.p ? b.p : "", b.n);
        free(b.p);
        return r;
    }
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        struct jv dflt = arg(a, 0, "default_value"), boolean = arg(a, 1, "boolean");
        if (dflt.t == JV_UNDEF) dflt = dsi_jv_jcstr(x, "");
        if (v.t == JV_UNDEF || (dsi_jv_truthy(boolean) && !dsi_jv_truthy(v))) return dflt;
        return v;
    }
    if (!strcmp(f, "string")) return dsi_jv_to_str(x, v);
    if (!strcmp(f, "upper")) return dsi_jv_map_case(x, dsi_jv_to_str(x, v), 1);
    if (!strcmp(f, "lower")) return dsi_jv_map_case(x, dsi_jv_to_str(x, v), 0);
    if (!strcmp(f, "title")) return dsi_jv_map_case(x, dsi_jv_to_str(x, v), 2);
    if (!strcmp(f, "capitalize")) return dsi_jv_map_case(x, dsi_jv_to_str(x, v), 3);
    if (!strcmp(f, "replace")) {
        struct jv c = arg(a, 2, "count");
        return replace(x, dsi_jv_to_str(x, v), arg(a, 0, "old"), arg(a, 1, "new"),
                       c.t == JV_UNDEF ? -1 : ival(c));
    }
    if (!strcmp(f, "safe") || (!strcmp(f, "list") && v.t == JV_LIST)) return v;
    if (!strcmp(f, "list")) return jlist_v(iter_list(x, v));
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        struct jlist *l = iter_list(x, v);
        if (!l || l->n == 0) return dsi_jv_undef("first");
        return l->v[f[0] == 'f' ? 0 : l->n - 1];
    }
    if (!strcmp(f, "reverse")) {
        if (v.t == JV_STR) return slice(x, v, dsi_jv_undef(NULL), dsi_jv_undef(NULL), jint(-1));
        struct jlist *l = iter_list(x, v), *r = dsi_jv_new_list(x);
        for (int i = l ? l->n - 1 : -1; i >= 0; i--)
            dsi_jv_list_push(x, r, l->v[i]);
        return jlist_v(r);
    }
    if (!strcmp(f, "join")) {
        struct jv sep = arg(a, 0, "d"), attr = arg(a, 1, "attribute");
        if (sep.t == JV_UNDEF) sep = dsi_jv_jcstr(x, "");
        struct jlist *l = iter_list(x, v);
        struct dsi_strbuf b = {0};
        for (int i = 0; l && i < l->n; i++) {
            if (i) dsi_strbuf_put(&b, sep.s.p, sep.s.n);
            struct jv s =
                dsi_jv_to_str(x, attr.t == JV_UNDEF ? l->v[i] : attr_path(x, l->v[i], attr));
            dsi_strbuf_put(&b, s.s.p, s.s.n);
        }
        struct jv r = dsi_jv_jstr(x, b.p ? b.p : "", b.n);
        free(b.p);
        return r;
    }
    if (!strcmp(f, "items")) {
        if (v.t == JV_UNDEF) return jlist_v(dsi_jv_new_list(x));
        if (v.t != JV_DICT) {
            dsi_jv_eerr(x, "items filter needs a mapping, not %s", dsi_jv_type_name(v));
            return dsi_jv_undef(NULL);
        }
        struct args none_args = {0};
        return call_method(x, v, "items", &none_args);
    }
    if (!strcmp(f, "dictsort")) {
        if (v.t != JV_DICT) {
            dsi_jv_eerr(x, "dictsort needs a mapping");
            return dsi_jv_undef(NULL);
        }
        struct args none_args = {0};
        struct jv items = call_method(x, v, "items", &none_args);
        for (int i = 1; i < items.l->n; i++)
            for (int j = i;
                 j > 0 && cmp_sort(x, items.l->v[j - 1].l->v[0], items.l->v[j].l->v[0]) > 0; j--) {
                struct jv t = items.l->v[j];
                items.l->v[j] = items.l->v[j - 1];
                items.l->v[j - 1] = t;
            }
        return items;
    }
    if (!strcmp(f, "sort") || !strcmp(f, "unique") || !strcmp(f, "min") || !strcmp(f, "max")) {
        struct jv rev = arg(a, 0, "reverse"), attr = arg(a, 2, "attribute");
        if (f[0] != 's') attr = arg(a, 1, "attribute");
        struct jlist *l = iter_list(x, v), *r = dsi_jv_new_list(x);
        for (int i = 0; l && i < l->n; i++)
            dsi_jv_list_push(x, r, l->v[i]);
        if (f[0] == 'u') {
            struct jlist *u = dsi_jv_new_list(x);
            for (int i = 0; i < r->n; i++) {
                bool seen = false;
                for (int j = 0; j < u->n && !seen; j++)
                    seen = dsi_jv_equal(u->v[j], r->v[i]);
                if (!seen) dsi_jv_list_push(x, u, r->v[i]);
            }
            return jlist_v(u);
        }
        for (int i = 1; i < r->n; i++)
            for (int j = i; j > 0; j--) {
                struct jv p = attr.t == JV_UNDEF ? r->v[j - 1] : attr_path(x, r->v[j - 1], attr);
                struct jv q = attr.t == JV_UNDEF ? r->v[j] : attr_path(x, r->v[j], attr);
                int c = cmp_sort(x, p, q);
                if (f[0] == 's' && dsi_jv_truthy(rev) ? c >= 0 : c <= 0) break;
                struct jv t = r->v[j];
                r->v[j] = r->v[j - 1];
                r->v[j - 1] = t;
            }
        if (f[1] == 'i') return r->n ? r->v[0] : dsi_jv_undef("min");
        if (f[1] == 'a') return r->n ? r->v[r->n - 1] : dsi_jv_undef("max");
        return jlist_v(r);
    }
    if (!strcmp(f, "map") || !strcmp(f, "select") || !strcmp(f, "reject") ||
        !strcmp(f, "selectattr") || !strcmp(f, "rejectattr")) {
        struct jlist *l = iter_list(x, v), *r = dsi_jv_new_list(x);
        bool attr_form = !strcmp(f, "selectattr") || !strcmp(f, "rejectattr");
        bool keep_if = f[0] == 's';
        for (int i = 0; l && i < l->n && !x->err; i++) {
            struct jv item = l->v[i];
            if (f[0] == 'm') {
                struct jv attr = arg(a, 0, NULL);
                for (int k = 0; k < a->nk; k++)
                    if (!strcmp(a->kwn[k], "attribute")) attr = a->kwv[k];
                bool by_attr = a->n == 0 || (a->nk && attr.t != JV_UNDEF && a->n == 0);
                if (by_attr || (a->nk && !strcmp(a->kwn[0], "attribute"))) {
                    struct jv got = attr_path(x, item, attr);
                    struct jv dflt = arg(a, 99, "default");
                    dsi_jv_list_push(x, r, got.t == JV_UNDEF && dflt.t != JV_UNDEF ? dflt : got);
                } else { /* map('filter', args...) */
                    struct args fa = *a;
                    struct jv fname = fa.pos[0];
                    for (int k = 1; k < fa.n; k++)
                        fa.pos[k - 1] = fa.pos[k];
                    fa.n--;
                    char *fn = ja_strndup(&x->a, fname.s.p, fname.s.n);
                    dsi_jv_list_push(x, r, apply_filter(x, fn, item, &fa));
                }
                continue;
            }
            struct jv subject = item;
            int first = 0;
            if (attr_form) {
                subject = attr_path(x, item, arg(a, 0, NULL));
                first = 1;
            }
            bool ok;
            if (a->n <= first) {
                ok = dsi_jv_truthy(subject);
            } else {
                struct args ta = *a;
                struct jv tname = ta.pos[first];
                for (int k = first + 1; k < ta.n; k++)
                    ta.pos[k - first - 1] = ta.pos[k];
                ta.n -= first + 1;
                char *tn = ja_strndup(&x->a, tname.s.p, tname.s.n);
                ok = dsi_jv_truthy(apply_test(x, tn, subject, &ta));
            }
            if (ok == keep_if) dsi_jv_list_push(x, r, item);
        }
        return jlist_v(r);
    }
    if (!strcmp(f, "int")) {
        if (is_num(v)) return jint(ival(v));
        if (v.t == JV_STR) {
            char *end, *s = ja_strndup(&x->a, v.s.p, v.s.n);
            long long i = strtoll(s, &end, 10);
            if (end != s && !*end) return jint(i);
        }
        struct jv d = arg(a, 0, "default");
        return d.t == JV_UNDEF ? jint(0) : d;
    }
    if (!strcmp(f, "float")) {
        if (is_num(v)) return jfloat(num(v));
        if (v.t == JV_STR) {
            char *end, *s = ja_strndup(&x->a, v.s.p, v.s.n);
            double d = strtod(s, &end);
            if (end != s && !*end) return jfloat(d);
        }
        struct jv d = arg(a, 0, "default");
        return d.t == JV_UNDEF ? jfloat(0) : d;
    }
    if (!strcmp(f, "abs"))
        return is_intlike(v) && ival(v) != INT64_MIN ? jint(ival(v) < 0 ? -ival(v) : ival(v))
                                                     : jfloat(fabs(num(v)));
    if (!strcmp(f, "round")) {
        struct jv p = arg(a, 0, "precision");
        double m = pow(10, p.t == JV_UNDEF ? 0 : (double)ival(p));
        return jfloat(round(num(v) * m) / m);
    }
    if (!strcmp(f, "sum")) {
        struct jlist *l = iter_list(x, v);
        struct jv s = jint(0);
        for (int i = 0; l && i < l->n; i++)
            s = binary(x, "+", s, l->v[i]);
        return s;
    }
    if (!strcmp(f, "indent")) {
        struct jv w = arg(a, 0, "width"), first = arg(a, 1, "first");
        int width = w.t == JV_UNDEF ? 4 : (int)ival(w);
        struct jv s = dsi_jv_to_str(x, v);
        struct dsi_strbuf b = {0};
        if (dsi_jv_truthy(first))
            for (int k = 0; k < width; k++)
                dsi_strbuf_put(&b, " ", 1);
        for (size_t i = 0; i < s.s.n; i++) {
            dsi_strbuf_put(&b, s.s.p + i, 1);
            if (s.s.p[i] == '\n' && i + 1 < s.s.n && s.s.p[i + 1] != '\n')
                for (int k = 0; k < width; k++)
                    dsi_strbuf_put(&b, " ", 1);
        }
        struct jv r = dsi_jv_jstr(x, b.p ? b.p : "", b.n);
        free(b.p);
        return r;
    }
    if (!strcmp(f, "escape") || !strcmp(f, "e")) {
        struct jv s = dsi_jv_to_str(x, v);
        struct dsi_strbuf b = {0};
        for (size_t i = 0; i < s.s.n; i++) {
            switch (s.s.p[i]) {
            case '&':
                dsi_strbuf_puts(&b, "&amp;");
                break;
            case '<':
                dsi_strbuf_puts(&b, "&lt;");
                break;
            case '>':
                dsi_strbuf_puts(&b, "&gt;");
                break;
            case '"':
                dsi_strbuf_puts(&b, "&#34;");
                break;
            case '\'':
                dsi_strbuf_puts(&b, "&#39;");
                break;
            default:
                dsi_strbuf_put(&b, s.s.p + i, 1);
            }
        }
        struct jv r = dsi_jv_jstr(x, b.p ? b.p : "", b.n);
        free(b.p);
        return r;
    }
    if (!strcmp(f, "format")) return binary(x, "%", v, a->n == 1 ? a->pos[0] : jlist_v(NULL));
    dsi_jv_eerr(x, "unknown filter '%s'", f);
    return dsi_jv_undef(NULL);
}

static struct jv apply_test(struct ectx *x, const char *t, struct jv v, const struct args *a) {
    if (x->err) return dsi_jv_undef(NULL);
    struct jv o = arg(a, 0, NULL);
    if (!strcmp(t, "defined")) return jbool(v.t != JV_UNDEF);
    if (!strcmp(t, "undefined")) return jbool(v.t == JV_UNDEF);
    if (!strcmp(t, "none")) return jbool(v.t == JV_NONE);
    if (!strcmp(t, "boolean")) return jbool(v.t == JV_BOOL);
    if (!strcmp(t, "true")) return jbool(v.t == JV_BOOL && v.b);
    if (!strcmp(t, "false")) return jbool(v.t == JV_BOOL && !v.b);
    if (!strcmp(t, "integer")) return jbool(v.t == JV_INT);
    if (!strcmp(t, "float")) return jbool(v.t == JV_FLOAT);
    if (!strcmp(t, "number")) return jbool(v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL);
    if (!strcmp(t, "string")) return jbool(v.t == JV_STR);
    if (!strcmp(t, "mapping")) return jbool(v.t == JV_DICT);
    if (!strcmp(t, "iterable")) return jbool(v.t == JV_LIST || v.t == JV_DICT || v.t == JV_STR);
    if (!strcmp(t, "sequence")) return jbool(v.t == JV_LIST || v.t == JV_DICT || v.t == JV_STR);
    if (!strcmp(t, "callable")) return jbool(v.t == JV_MACRO);
    if (!strcmp(t, "sameas"))
        return jbool(v.t == o.t && dsi_jv_equal(v, o) && (v.t != JV_LIST || v.l == o.l));
    if (!strcmp(t, "eq") || !strcmp(t, "equalto") || !strcmp(t, "=="))
        return jbool(dsi_jv_equal(v, o));
    if (!strcmp(t, "ne") || !strcmp(t, "!=")) return jbool(!dsi_jv_equal(v, o));
    if (!strcmp(t, "lt") || !strcmp(t, "lessthan") || !strcmp(t, "<"))
        return jbool(compare(x, v, o) < 0);
    if (!strcmp(t, "le") || !strcmp(t, "<=")) return jbool(compare(x, v, o) <= 0);
    if (!strcmp(t, "gt") || !strcmp(t, "greaterthan") || !strcmp(t, ">"))
        return jbool(compare(x, v, o) > 0);
    if (!strcmp(t, "ge") || !strcmp(t, ">=")) return jbool(compare(x, v, o) >= 0);
    if (!strcmp(t, "in")) return jbool(contains(x, o, v));
    if (!strcmp(t, "odd") || !strcmp(t, "even")) {
        if (!is_intlike(v)) return jbool(false);
        return jbool(((ival(v) % 2) != 0) == (t[0] == 'o'));
    }
    if (!strcmp(t, "divisibleby"))
        return jbool(is_intlike(v) && ival(o) != 0 && ival(v) % ival(o) == 0);
    if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        if (v.t != JV_STR) return jbool(false);
        struct jv c = dsi_jv_map_case(x, v, t[0] == 'u');
        return jbool(dsi_jv_equal(c, v));
    }
    dsi_jv_eerr(x, "unknown test '%s'", t);
    return dsi_jv_undef(NULL);
}

/* ---- statements ------------------------------------------------------------------------ */

static void out_put(struct ectx *x, const char *s, size_t n) {
    if (x->err || n == 0) return;
    if (x->out_n + n > MAX_OUTPUT) {
        dsi_jv_eerr(x, "output larger than %zu bytes", MAX_OUTPUT);
        return;
    }
    if (x->out_n + n + 1 > x->out_cap) {
        size_t cap = x->out_cap ? x->out_cap * 2 : 1024;
        while (cap < x->out_n + n + 1)
            cap *= 2;
        char *p = realloc(x->out, cap);
        if (!p) {
            dsi_jv_eerr(x, "out of memory");
            return;
        }
        x->out = p;
        x->out_cap = cap;
    }
    memcpy(x->out + x->out_n, s, n);
    x->out_n += n;
}

/* Render a body into a string of its own (macros, set blocks, filter blocks). */
static struct jv capture(struct ectx *x, const struct jbody *b) {
    char *save = x->out;
    size_t save_n = x->out_n, save_cap = x->out_cap;
    x->out = NULL;
    x->out_n = x->out_cap = 0;
    exec_body(x, b);
    struct jv r = dsi_jv_jstr(x, x->out ? x->out : "", x->out_n);
    free(x->out);
    x->out = save;
    x->out_n = save_n;
    x->out_cap = save_cap;
    return r;
}

static struct jv call_macro(struct ectx *x, const struct jnode *m, const struct args *a,
                            const struct jbody *caller) {
    (void)caller;
    if (x->depth >= MAX_DEPTH) {
        dsi_jv_eerr(x, "macro calls nested too deeply");
        return dsi_jv_undef(NULL);
    }
    if (!push_scope(x)) return dsi_jv_undef(NULL);
    for (int i = 0; i < m->n_targets; i++) {
        struct jv v = i < a->n ? a->pos[i] : dsi_jv_undef(m->targets[i]);
        for (int k = 0; k < a->nk; k++)
            if (!strcmp(a->kwn[k], m->targets[i])) v = a->kwv[k];
        if (v.t == JV_UNDEF && m->defaults[i]) v = eval(x, m->defaults[i]);
        set_var(x, m->targets[i], v);
    }
    x->depth++;
    struct jv r = capture(x, &m->body);
    x->depth--;
    x->n_scopes--;
    return r;
}

static void exec_node(struct ectx *x, const struct jnode *n) {
    if (x->err) return;
    x->line = n->line;
    switch (n->kind) {
    case ND_TEXT:
        out_put(x, n->text, n->len);
        return;
    case ND_OUTPUT: {
        struct jv v = eval(x, n->expr);
        if (x->err) return;
        if (v.t == JV_STR)
            out_put(x, v.s.p, v.s.n);
        else {
            struct jv s = dsi_jv_to_str(x, v);
            out_put(x, s.s.p, s.s.n);
        }
        return;
    }
    case ND_IF:
        for (int i = 0; i < n->n_conds; i++) {
            struct jv c = eval(x, n->conds[i]);
            if (x->err) return;
            if (dsi_jv_truthy(c)) {
                exec_body(x, &n->bodies[i]);
                return;
            }
        }
        exec_body(x, &n->else_body);
        return;
    case ND_FOR: {
        struct jv it = eval(x, n->expr);
        if (x->err) return;
        if (it.t == JV_NONE) {
            dsi_jv_eerr(x, "'NoneType' object is not iterable");
            return;
        }
        struct jlist *items = iter_list(x, it);
        if (x->err || !items) return;
        if (!push_scope(x)) return;
        /* the `if` filter applies before the loop variables are computed */
        struct jlist *kept = items;
        if (n->filter) {
            kept = dsi_jv_new_list(x);
            for (int i = 0; i < items->n && !x->err; i++) {
                if (n->n_targets == 1)
                    set_var(x, n->targets[0], items->v[i]);
                else
                    for (int t = 0; t < n->n_targets; t++)
                        set_var(x, n->targets[t], get_item(x, items->v[i], jint(t)));
                if (dsi_jv_truthy(eval(x, n->filter))) dsi_jv_list_push(x, kept, items->v[i]);
            }
        }
        struct jdict *loop = dsi_jv_new_dict(x);
        if (!loop) return;
        loop->loop = true;
        for (int i = 0; i < kept->n && !x->err; i++) {
            if (n->n_targets == 1)
                set_var(x, n->targets[0], kept->v[i]);
            else {
                struct jv item = kept->v[i];
                if (item.t != JV_LIST || item.l->n != n->n_targets) {
                    dsi_jv_eerr(x, "cannot unpack %s into %d loop variables",
                                dsi_jv_type_name(item), n->n_targets);
                    break;
                }
                for (int t = 0; t < n->n_targets; t++)
                    set_var(x, n->targets[t], item.l->v[t]);
            }
            int64_t len = kept->n;
            dsi_jv_dict_set(x, loop, "index", jint(i + 1));
            dsi_jv_dict_set(x, loop, "index0", jint(i));
            dsi_jv_dict_set(x, loop, "revindex", jint(len - i));
            dsi_jv_dict_set(x, loop, "revindex0", jint(len - i - 1));
            dsi_jv_dict_set(x, loop, "first", jbool(i == 0));
            dsi_jv_dict_set(x, loop, "last", jbool(i == len - 1));
            dsi_jv_dict_set(x, loop, "length", jint(len));
            dsi_jv_dict_set(x, loop, "depth", jint(1));
            dsi_jv_dict_set(x, loop, "depth0", jint(0));
            dsi_jv_dict_set(x, loop, "previtem", i > 0 ? kept->v[i - 1] : dsi_jv_undef("previtem"));
            dsi_jv_dict_set(x, loop, "nextitem",
                            i + 1 < len ? kept->v[i + 1] : dsi_jv_undef("nextitem"));
            set_var(x, "loop", (struct jv){.t = JV_DICT, .d = loop});
            exec_body(x, &n->body);
            x->cont = false;
            if (x->brk) {
                x->brk = false;
                break;
            }
        }
        x->n_scopes--;
        if (kept->n == 0) exec_body(x, &n->else_body);
        return;
    }
    case ND_SET: {
        struct jv v = eval(x, n->expr);
        if (x->err) return;
        if (n->name) { /* ns.attr = v */
            struct jv o = lookup(x, n->targets[0]);
            if (o.t != JV_DICT || !o.d->ns) {
                dsi_jv_eerr(x, "cannot assign attribute '%s' of '%s': not a namespace", n->name,
                            n->targets[0]);
                return;
            }
            dsi_jv_dict_set(x, o.d, n->name, v);
            return;
        }
        if (n->n_targets == 1) {
            set_var(x, n->targets[0], v);
            return;
        }
        if (v.t != JV_LIST || v.l->n != n->n_targets) {
            dsi_jv_eerr(x, "cannot unpack into %d variables", n->n_targets);
            return;
        }
        for (int t = 0; t < n->n_targets; t++)
            set_var(x, n->targets[t], v.l->v[t]);
        return;
    }
    case ND_SETBLOCK:
        set_var(x, n->targets[0], capture(x, &n->body));
        return;
    case ND_MACRO:
        set_var(x, n->name, (struct jv){.t = JV_MACRO, .macro = n});
        return;
    case ND_BREAK:
        x->brk = true;
        return;
    case ND_CONTINUE:
        x->cont = true;
        return;
    case ND_FILTERBLOCK: {
        struct jv body = capture(x, &n->body);
        struct args a;
        if (!eval_args(x, n->expr, &a, 0)) return;
        struct jv r = dsi_jv_to_str(x, apply_filter(x, n->expr->name, body, &a));
        out_put(x, r.s.p, r.s.n);
        return;
    }
    case ND_CALLBLOCK: {
        struct args a;
        if (!eval_args(x, n->expr, &a, 0)) return;
        struct jv f =
            n->expr->a->kind == EX_NAME ? lookup(x, n->expr->a->name) : dsi_jv_undef(NULL);
        if (f.t != JV_MACRO) {
            dsi_jv_eerr(x, "call block needs a macro");
            return;
        }
        struct jv r = call_macro(x, f.macro, &a, &n->body);
        out_put(x, r.s.p, r.s.n);
        return;
    }
    }
}

static void exec_body(struct ectx *x, const struct jbody *b) {
    for (int i = 0; i < b->n && !x->err && !x->brk && !x->cont; i++)
        exec_node(x, b->v[i]);
}

/* ---- JSON -> values -------------------------------------------------------------------- */

static struct jv from_json(struct ectx *x, const cJSON *j, int depth) {
    if (depth > 100) {
        dsi_jv_eerr(x, "variables nested too deeply");
        return dsi_jv_undef(NULL);
    }
    if (cJSON_IsNull(j)) return none();
    if (cJSON_IsBool(j)) return jbool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) return jint((int64_t)d);
        return jfloat(d);
    }
    if (cJSON_IsString(j)) return dsi_jv_jcstr(x, j->valuestring);
    if (cJSON_IsArray(j)) {
        struct jlist *l = dsi_jv_new_list(x);
        const cJSON *it;
        cJSON_ArrayForEach(it, j) dsi_jv_list_push(x, l, from_json(x, it, depth + 1));
        return jlist_v(l);
    }
    if (cJSON_IsObject(j)) {
        struct jdict *d = dsi_jv_new_dict(x);
        const cJSON *it;
        cJSON_ArrayForEach(it, j) dsi_jv_dict_set(x, d, it->string, from_json(x, it, depth + 1));
        return (struct jv){.t = JV_DICT, .d = d};
    }
    return dsi_jv_undef(NULL);
}

enum dsi_status dsi_jinja_render(const struct dsi_jinja *t, const struct cJSON *vars,
                                 const struct dsi_jinja_opts *opts, char **out, size_t *out_len) {
    *out = NULL;
    struct ectx *x = calloc(1, sizeof *x);
    if (!x) return DSI_ERR_NOMEM;
    x->now = opts ? opts->now : 0;
    struct jv g = vars ? from_json(x, vars, 0) : dsi_jv_undef(NULL);
    x->globals = g.t == JV_DICT ? g.d : dsi_jv_new_dict(x);
    if (!x->err && push_scope(x)) exec_body(x, &t->root);
    enum dsi_status st = DSI_OK;
    if (x->err) {
        DSI_LOG_ERR("chat template: line %d: %s", x->err_line, x->err);
        st = strstr(x->err, "out of memory") ? DSI_ERR_NOMEM : DSI_ERR_FORMAT;
        free(x->out);
    } else {
        if (!x->out) x->out = calloc(1, 1);
        if (!x->out)
            st = DSI_ERR_NOMEM;
        else {
            x->out[x->out_n] = '\0';
            *out = x->out;
            if (out_len) *out_len = x->out_n;
        }
    }
    ja_free(&x->a);
    free(x);
    return st;
}
