/* Values of the Jinja evaluator (src/jinja_eval.c, src/jinja_value.c): Python-like values
 * living in the render's arena, the evaluation context, string building, printing (str(),
 * repr(), tojson) and the Unicode string helpers. Internal to the Jinja engine. */
#ifndef DSI_JINJA_VALUE_H
#define DSI_JINJA_VALUE_H

#include "core/strbuf.h"
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "src/jinja_impl.h"

/* ---- values ---------------------------------------------------------------------------- */

enum jv_type { JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_MACRO };

struct jlist;
struct jdict;

struct jv {
    enum jv_type t;
    bool tuple; /* LIST: a tuple (prints with parentheses) */
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s; /* STR; UNDEF: the name that was missing (for errors) */
        struct jlist *l;
        struct jdict *d;
        const struct jnode *macro;
    };
};

struct jlist {
    struct jv *v;
    int n, cap;
};

struct jdict {
    struct jv *k, *v;
    int n, cap;
    bool ns;   /* a namespace(): attributes may be assigned */
    bool loop; /* the loop variable: has cycle() */
};

struct scope {
    struct jdict *vars;
};

struct ectx {
    struct jarena a;
    char *out;
    size_t out_n, out_cap;
    struct scope scopes[256];
    int n_scopes;
    struct jdict *globals;
    const char *err;
    int err_line;
    char errbuf[256];
    int line;
    bool brk, cont;
    long steps;
    int depth;
    time_t now;
};

static inline struct jv none(void) {
    return (struct jv){.t = JV_NONE};
}
static inline struct jv jbool(bool b) {
    return (struct jv){.t = JV_BOOL, .b = b};
}
static inline struct jv jint(int64_t i) {
    return (struct jv){.t = JV_INT, .i = i};
}
static inline struct jv jfloat(double f) {
    return (struct jv){.t = JV_FLOAT, .f = f};
}
static inline struct jv jlist_v(struct jlist *l) {
    return (struct jv){.t = JV_LIST, .l = l};
}
static inline bool is_num(struct jv v) {
    return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL;
}
static inline double num(struct jv v) {
    return v.t == JV_FLOAT ? v.f : v.t == JV_INT ? (double)v.i : v.b;
}
static inline bool is_intlike(struct jv v) {
    return v.t == JV_INT || v.t == JV_BOOL;
}
static inline int64_t ival(struct jv v) {
    return v.t == JV_INT ? v.i : v.t == JV_BOOL ? v.b : (int64_t)v.f;
}

void dsi_jv_eerr(struct ectx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct jv dsi_jv_undef(const char *name);
struct jv dsi_jv_jstr(struct ectx *x, const char *p, size_t n);
struct jv dsi_jv_jcstr(struct ectx *x, const char *p);
struct jlist *dsi_jv_new_list(struct ectx *x);
void dsi_jv_list_push(struct ectx *x, struct jlist *l, struct jv v);
struct jdict *dsi_jv_new_dict(struct ectx *x);
bool dsi_jv_key_eq(struct jv a, const char *k, size_t n);
struct jv *dsi_jv_dict_find(const struct jdict *d, const char *k, size_t n);
struct jv *dsi_jv_dict_find_v(const struct jdict *d, struct jv k);
void dsi_jv_dict_set_v(struct ectx *x, struct jdict *d, struct jv k, struct jv v);
void dsi_jv_dict_set(struct ectx *x, struct jdict *d, const char *k, struct jv v);
bool dsi_jv_truthy(struct jv v);
const char *dsi_jv_type_name(struct jv v);
bool dsi_jv_equal(struct jv a, struct jv b);
void dsi_jv_put_float(struct dsi_strbuf *b, double f);
void dsi_jv_put_repr_str(struct dsi_strbuf *b, const char *s, size_t n);
void dsi_jv_put_str(struct dsi_strbuf *b, struct jv v, bool repr);
struct jv dsi_jv_to_str(struct ectx *x, struct jv v);
void dsi_jv_put_json(struct ectx *x, struct dsi_strbuf *b, struct jv v, int indent, int level);
size_t dsi_jv_cp_count(const char *s, size_t n);
size_t dsi_jv_cp_offset(const char *s, size_t n, int64_t ci);
bool dsi_jv_is_py_space(int32_t c);
int32_t dsi_jv_cp_at(const char *s, size_t n, size_t i, size_t *len);
bool dsi_jv_in_chars(int32_t c, struct jv chars);
struct jv dsi_jv_strip(struct ectx *x, struct jv s, struct jv chars, bool left, bool right);
struct jv dsi_jv_map_case(struct ectx *x, struct jv s, int mode);

#endif
