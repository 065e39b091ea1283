/* Internals of the Jinja interpreter: the syntax tree (jinja_parse.c builds it) and the
 * values (jinja_eval.c computes with them). All nodes of a template live in the template's
 * arena; all values of a render live in the render's arena, freed together at its end. */
#ifndef DSI_JINJA_IMPL_H
#define DSI_JINJA_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/jinja.h"

/* ---- arena (a list of chunks) ---------------------------------------------------------- */

struct jarena {
    struct jchunk *head;
};

void *ja_alloc(struct jarena *a, size_t n); /* zeroed; NULL on failure */
void ja_free(struct jarena *a);
char *ja_strndup(struct jarena *a, const char *s, size_t n);

/* ---- syntax tree ----------------------------------------------------------------------- */

enum jexpr_kind {
    EX_LITERAL, /* value in lit (string, int, float, bool, none) */
    EX_NAME,
    EX_ATTR,    /* a.name */
    EX_INDEX,   /* a[b] */
    EX_SLICE,   /* a[b:c:d], missing parts NULL */
    EX_CALL,    /* a(args, name=value) */
    EX_FILTER,  /* a | name(args) */
    EX_TEST,    /* a is [not] name(args) */
    EX_NEG,
    EX_POS,
    EX_NOT,
    EX_BINARY,  /* op: + - * / // % ** ~ == != < <= > >= in notin */
    EX_AND,
    EX_OR,
    EX_COND,    /* b if a else c: a = cond, b = then, c = else (may be NULL) */
    EX_LIST,
    EX_TUPLE,
    EX_DICT,    /* args: keys, kwvals: values */
};

enum jlit_kind { LIT_NONE, LIT_BOOL, LIT_INT, LIT_FLOAT, LIT_STR };

struct jexpr {
    enum jexpr_kind kind;
    int line;
    const char *name;           /* NAME, ATTR, FILTER, TEST */
    char op[4];                 /* BINARY */
    bool negated;               /* TEST */
    struct jexpr *a, *b, *c, *d;
    struct jexpr **args;        /* CALL/FILTER/TEST arguments, LIST/TUPLE items, DICT keys */
    int n_args;
    const char **kwnames;       /* keyword argument names */
    struct jexpr **kwvals;      /* keyword argument values, DICT values */
    int n_kw;
    enum jlit_kind lit;
    int64_t ival;
    double fval;
    const char *sval;
    size_t slen;
};

enum jnode_kind {
    ND_TEXT,
    ND_OUTPUT,
    ND_IF,      /* conds[i] -> bodies[i]; else_body */
    ND_FOR,     /* targets, iter, filter (may be NULL), body, else_body */
    ND_SET,     /* target name (or ns + attr), value */
    ND_SETBLOCK,/* target name, body */
    ND_MACRO,   /* name, params (defaults), body */
    ND_BREAK,
    ND_CONTINUE,
    ND_FILTERBLOCK, /* filter expression with a NULL subject, body */
    ND_CALLBLOCK,   /* call expression, body (the caller) */
};

struct jbody {
    struct jnode **v;
    int n, cap;
};

struct jnode {
    enum jnode_kind kind;
    int line;
    const char *text;  /* TEXT */
    size_t len;
    struct jexpr *expr; /* OUTPUT, SET value, FOR iter, FILTERBLOCK, CALLBLOCK */
    struct jexpr **conds; /* IF */
    struct jbody *bodies; /* IF: one per cond */
    int n_conds;
    struct jbody body, else_body;
    const char **targets; /* FOR loop variables, SET/SETBLOCK name (+ attr), MACRO params */
    int n_targets;
    struct jexpr *filter;  /* FOR `if` condition */
    const char *name;      /* MACRO name, SET namespace attribute (targets[0] is the object) */
    struct jexpr **defaults; /* MACRO parameter defaults (NULL entries: required) */
};

struct dsi_jinja {
    struct jarena arena;
    struct jbody root;
};

#endif
