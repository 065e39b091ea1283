/* Jinja lexer and parser: source -> syntax tree (jinja_impl.h).
 *
 * Whitespace rules follow jinja2 with trim_blocks and lstrip_blocks on and
 * keep_trailing_newline off: `-` on a tag strips all whitespace on that side; otherwise the
 * first newline after a block or comment tag is dropped, and spaces/tabs between the start of
 * a line and a block or comment tag are dropped (`+` disables either); one trailing newline
 * of the template is dropped. Operator precedence is jinja2's (parser.py): or < and < not <
 * comparisons < + - < ~ < * / // % < ** < unary, with filters, tests, calls, attributes and
 * subscripts binding tightest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/jinja_impl.h"

/* ---- arena ----------------------------------------------------------------------------- */

struct jchunk {
    struct jchunk *next;
    size_t used, size;
    _Alignas(16) char data[];
};

void *ja_alloc(struct jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    struct jchunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + size);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->size = size;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void ja_free(struct jarena *a) {
    struct jchunk *c = a->head;
    while (c) {
        struct jchunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
}

char *ja_strndup(struct jarena *a, const char *s, size_t n) {
    char *p = ja_alloc(a, n + 1);
    if (p) memcpy(p, s, n);
    return p;
}

/* ---- tokens ---------------------------------------------------------------------------- */

enum tok_kind {
    TK_TEXT, TK_VAR_BEGIN, TK_VAR_END, TK_BLOCK_BEGIN, TK_BLOCK_END,
    TK_NAME, TK_STRING, TK_INT, TK_FLOAT, TK_OP, TK_EOF,
};

struct tok {
    enum tok_kind kind;
    int line;
    const char *s; /* TEXT, NAME, STRING (decoded), OP */
    size_t len;
    int64_t ival;
    double fval;
};

struct parser {
    struct jarena *a;
    struct tok *t;
    int n, cap, pos;
    const char *err;
    int err_line;
    char errbuf[160];
};

static bool push_tok(struct parser *P, struct tok t) {
    if (P->n == P->cap) {
        int cap = P->cap ? P->cap * 2 : 256;
        struct tok *q = realloc(P->t, (size_t)cap * sizeof *q);
        if (!q) return false;
        P->t = q;
        P->cap = cap;
    }
    P->t[P->n++] = t;
    return true;
}

static void fail(struct parser *P, int line, const char *fmt, const char *arg) {
    if (P->err) return;
    snprintf(P->errbuf, sizeof P->errbuf, fmt, arg);
    P->err = P->errbuf;
    P->err_line = line;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Tokenize the inside of a tag, from src[*i] up to the closing delimiter `close` (the two
 * characters "}}", "%}"); handles a '-' or '+' before it. Returns the whitespace flag of the
 * closing side ('-', '+' or 0), or -1 on error. */
static int lex_tag(struct parser *P, const char *src, size_t n, size_t *i, int *line,
                   const char *close) {
    int depth = 0; /* open ( [ {: "}}" inside braces is two closing braces, as in jinja2 */
    while (*i < n) {
        char c = src[*i];
        if (c == '\n') (*line)++;
        if (is_space(c)) {
            (*i)++;
            continue;
        }
        /* closing delimiter, possibly with whitespace control */
        if (depth == 0 && (c == '-' || c == '+') && *i + 3 <= n && !strncmp(src + *i + 1, close, 2)) {
            *i += 3;
            return c;
        }
        if (depth == 0 && *i + 2 <= n && !strncmp(src + *i, close, 2)) {
            *i += 2;
            return 0;
        }
        struct tok t = {0};
        t.line = *line;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
            size_t b = *i;
            while (*i < n && ((src[*i] >= 'a' && src[*i] <= 'z') || (src[*i] >= 'A' && src[*i] <= 'Z') ||
                              (src[*i] >= '0' && src[*i] <= '9') || src[*i] == '_'))
                (*i)++;
            t.kind = TK_NAME;
            t.s = ja_strndup(P->a, src + b, *i - b);
            t.len = *i - b;
        } else if (c >= '0' && c <= '9') {
            size_t b = *i;
            bool is_float = false;
            while (*i < n && ((src[*i] >= '0' && src[*i] <= '9') || src[*i] == '_')) (*i)++;
            if (*i + 1 < n && src[*i] == '.' && src[*i + 1] >= '0' && src[*i + 1] <= '9') {
                is_float = true;
                (*i)++;
                while (*i < n && src[*i] >= '0' && src[*i] <= '9') (*i)++;
            }
            if (*i < n && (src[*i] == 'e' || src[*i] == 'E')) {
                size_t k = *i + 1;
                if (k < n && (src[k] == '+' || src[k] == '-')) k++;
                if (k < n && src[k] >= '0' && src[k] <= '9') {
                    is_float = true;
                    *i = k;
                    while (*i < n && src[*i] >= '0' && src[*i] <= '9') (*i)++;
                }
            }
            char buf[64];
            size_t k = 0;
            for (size_t j = b; j < *i && k < sizeof buf - 1; j++)
                if (src[j] != '_') buf[k++] = src[j];
            buf[k] = '\0';
            t.kind = is_float ? TK_FLOAT : TK_INT;
            if (is_float) t.fval = strtod(buf, NULL);
            else t.ival = strtoll(buf, NULL, 10);
        } else if (c == '\'' || c == '"') {
            /* a Python string literal with backslash escapes */
            char q = c;
            size_t b = ++*i, cap = 16, len = 0;
            char *out = malloc(cap);
            while (out && *i < n && src[*i] != q) {
                char ch = src[*i];
                if (ch == '\n') (*line)++;
                if (ch == '\\' && *i + 1 < n) {
                    char e = src[++*i];
                    switch (e) {
                    case 'n': ch = '\n'; break;
                    case 't': ch = '\t'; break;
                    case 'r': ch = '\r'; break;
                    case '0': ch = '\0'; break;
                    case '\\': case '\'': case '"': ch = e; break;
                    case '\n': ch = 0; (*line)++; break;
                    default: /* unknown escapes stay as written */
                        if (len + 2 >= cap) out = realloc(out, cap *= 2);
                        if (out) out[len++] = '\\';
                        ch = e;
                    }
                    if (e == '\n') {
                        (*i)++;
                        continue;
                    }
                }
                if (out && len + 2 >= cap) out = realloc(out, cap *= 2);
                if (out) out[len++] = ch;
                (*i)++;
            }
            (void)b;
            if (!out) return -1;
            if (*i >= n) {
                free(out);
                fail(P, t.line, "unterminated string%s", "");
                return -1;
            }
            (*i)++;
            t.kind = TK_STRING;
            t.s = ja_strndup(P->a, out, len);
            t.len = len;
            free(out);
        } else {
            static const char *const ops2[] = {"**", "//", "==", "!=", "<=", ">="};
            t.kind = TK_OP;
            size_t k = 1;
            for (int j = 0; j < 6; j++)
                if (*i + 1 < n && !strncmp(src + *i, ops2[j], 2)) k = 2;
            if (k == 1 && (c == '\0' || !strchr("+-*/%~<>=()[]{},.:|!", c))) {
                char s[2] = {c, 0};
                fail(P, t.line, "unexpected character '%s' in a tag", s);
                return -1;
            }
            t.s = ja_strndup(P->a, src + *i, k);
            t.len = k;
            *i += k;
            if (k == 1 && (c == '(' || c == '[' || c == '{')) depth++;
            if (k == 1 && (c == ')' || c == ']' || c == '}') && depth > 0) depth--;
        }
        if (!t.s && t.kind != TK_INT && t.kind != TK_FLOAT) return -1;
        if (!push_tok(P, t)) return -1;
    }
    fail(P, *line, "unclosed tag, expected '%s'", close);
    return -1;
}

static bool lex(struct parser *P, const char *src, size_t n) {
    if (n > 0 && src[n - 1] == '\n') n--; /* keep_trailing_newline = False */
    size_t i = 0;
    int line = 1;
    bool line_starting = true; /* the text begins a line (jinja2's lstrip rule) */
    int strip_next = 0;        /* '-' of the previous tag's end */
    while (i <= n) {
        /* next tag start */
        size_t j = i;
        const char *tag = NULL;
        while (j + 1 < n) {
            if (src[j] == '{' && (src[j + 1] == '{' || src[j + 1] == '%' || src[j + 1] == '#')) {
                tag = src + j;
                break;
            }
            j++;
        }
        size_t text_end = tag ? j : n;
        size_t tb = i, te = text_end;
        if (strip_next == '-')
            while (tb < te && is_space(src[tb])) tb++;
        char mod = tag && j + 2 < n ? src[j + 2] : 0;
        if (tag && mod == '-') {
            while (te > tb && is_space(src[te - 1])) te--;
        } else if (tag && tag[1] != '{' && mod != '+') {
            /* lstrip_blocks: only spaces/tabs between a line start and the tag. A line start
             * is a newline in this text, or, when the text is all blanks, the end of what the
             * previous tag consumed (jinja2's line_starting). */
            size_t l = te;
            while (l > tb && (src[l - 1] == ' ' || src[l - 1] == '\t')) l--;
            bool at_line_start;
            if (l > tb) at_line_start = src[l - 1] == '\n';
            else if (tb > i) at_line_start = src[tb - 1] == '\n';
            else at_line_start = line_starting;
            if (at_line_start) te = l;
        }
        int text_line = line;
        for (size_t k = i; k < text_end; k++)
            if (src[k] == '\n') line++;
        if (te > tb) {
            struct tok t = {TK_TEXT, text_line, ja_strndup(P->a, src + tb, te - tb), te - tb, 0, 0};
            if (!t.s || !push_tok(P, t)) return false;
        }
        if (!tag) break;
        i = j + 2 + (mod == '-' || mod == '+');
        line_starting = false;
        if (tag[1] == '#') {
            /* comment: skip to "#}" */
            const char *e = NULL;
            for (size_t k = i; k + 1 < n; k++)
                if (src[k] == '#' && src[k + 1] == '}') {
                    e = src + k;
                    break;
                }
            if (!e) {
                fail(P, line, "unclosed comment%s", "");
                return false;
            }
            for (const char *k = src + i; k < e; k++)
                if (*k == '\n') line++;
            char cmod = e > src + i && (e[-1] == '-' || e[-1] == '+') ? e[-1] : 0;
            i = (size_t)(e - src) + 2;
            strip_next = cmod;
            if (cmod != '-' && cmod != '+' && i < n && src[i] == '\n') {
                i++, line++;
                line_starting = true;
            }
            continue;
        }
        bool block = tag[1] == '%';
        /* raw blocks: the text up to {% endraw %} is literal */
        if (block) {
            size_t k = i;
            while (k < n && is_space(src[k])) k++;
            if (n - k >= 3 && !strncmp(src + k, "raw", 3)) {
                size_t k2 = k + 3;
                while (k2 < n && is_space(src[k2])) k2++;
                if (k2 + 1 < n && (src[k2] == '-' || src[k2] == '%')) {
                    size_t ck = src[k2] == '-' ? k2 + 1 : k2;
                    const char *close = src + ck;
                    if (ck + 1 < n && close[0] == '%' && close[1] == '}') {
                        size_t body = (size_t)(close - src) + 2;
                        const char *end = NULL;
                        for (size_t q = body; q + 1 < n; q++)
                            if (src[q] == '{' && src[q + 1] == '%') {
                                size_t r = q + 2;
                                if (r < n && (src[r] == '-' || src[r] == '+')) r++;
                                while (r < n && is_space(src[r])) r++;
                                if (n - r >= 6 && !strncmp(src + r, "endraw", 6)) {
                                    end = src + q;
                                    break;
                                }
                            }
                        if (!end) {
                            fail(P, line, "unclosed raw block%s", "");
                            return false;
                        }
                        struct tok t = {TK_TEXT, line, ja_strndup(P->a, src + body, (size_t)(end - src) - body),
                                        (size_t)(end - src) - body, 0, 0};
                        if (!t.s || !push_tok(P, t)) return false;
                        for (const char *q = src + body; q < end; q++)
                            if (*q == '\n') line++;
                        const char *ce = memmem(end, (size_t)(src + n - end), "%}", 2);
                        if (!ce) {
                            fail(P, line, "unclosed endraw%s", "");
                            return false;
                        }
                        i = (size_t)(ce - src) + 2;
                        strip_next = ce[-1] == '-' ? '-' : 0;
                        if (!strip_next && i < n && src[i] == '\n') i++, line++, line_starting = true;
                        continue;
                    }
                }
            }
        }
        struct tok b = {block ? TK_BLOCK_BEGIN : TK_VAR_BEGIN, line, NULL, 0, 0, 0};
        if (!push_tok(P, b)) return false;
        int cm = lex_tag(P, src, n, &i, &line, block ? "%}" : "}}");
        if (cm < 0) return false;
        struct tok e = {block ? TK_BLOCK_END : TK_VAR_END, line, NULL, 0, 0, 0};
        if (!push_tok(P, e)) return false;
        strip_next = cm;
        if (block && cm != '-' && cm != '+' && i < n && src[i] == '\n') {
            i++, line++; /* trim_blocks */
            line_starting = true;
        }
    }
    struct tok eof = {TK_EOF, line, NULL, 0, 0, 0};
    return push_tok(P, eof);
}

/* ---- parser helpers -------------------------------------------------------------------- */

static struct tok *cur(struct parser *P) { return &P->t[P->pos]; }
static struct tok *peek(struct parser *P, int k) {
    return P->pos + k < P->n ? &P->t[P->pos + k] : &P->t[P->n - 1];
}
static void adv(struct parser *P) {
    if (P->pos < P->n - 1) P->pos++;
}
static bool is_op(struct parser *P, const char *op) {
    return cur(P)->kind == TK_OP && !strcmp(cur(P)->s, op);
}
static bool is_name(struct parser *P, const char *nm) {
    return cur(P)->kind == TK_NAME && !strcmp(cur(P)->s, nm);
}
static bool expect_op(struct parser *P, const char *op) {
    if (!is_op(P, op)) {
        fail(P, cur(P)->line, "expected '%s'", op);
        return false;
    }
    adv(P);
    return true;
}

static struct jexpr *mk(struct parser *P, enum jexpr_kind k) {
    struct jexpr *e = ja_alloc(P->a, sizeof *e);
    if (!e) {
        fail(P, cur(P)->line, "out of memory%s", "");
        return NULL;
    }
    e->kind = k;
    e->line = cur(P)->line;
    return e;
}

/* Growable argument arrays. */
static void add_arg(struct parser *P, struct jexpr *e, struct jexpr *arg) {
    struct jexpr **v = ja_alloc(P->a, (size_t)(e->n_args + 1) * sizeof *v);
    if (!v) return;
    if (e->n_args) memcpy(v, e->args, (size_t)e->n_args * sizeof *v);
    v[e->n_args++] = arg;
    e->args = v;
}

static void add_kw(struct parser *P, struct jexpr *e, const char *name, struct jexpr *val) {
    const char **n = ja_alloc(P->a, (size_t)(e->n_kw + 1) * sizeof *n);
    struct jexpr **v = ja_alloc(P->a, (size_t)(e->n_kw + 1) * sizeof *v);
    if (!n || !v) return;
    if (e->n_kw) {
        memcpy(n, e->kwnames, (size_t)e->n_kw * sizeof *n);
        memcpy(v, e->kwvals, (size_t)e->n_kw * sizeof *v);
    }
    n[e->n_kw] = name;
    v[e->n_kw++] = val;
    e->kwnames = n;
    e->kwvals = v;
}

static struct jexpr *parse_expr(struct parser *P);
static struct jexpr *parse_or(struct parser *P);
static struct jexpr *parse_unary(struct parser *P, bool with_filter);

/* (a, b, name=c) after '(' has been consumed. */
static void parse_call_args(struct parser *P, struct jexpr *e) {
    while (!P->err && !is_op(P, ")")) {
        if (cur(P)->kind == TK_NAME && peek(P, 1)->kind == TK_OP && !strcmp(peek(P, 1)->s, "=")) {
            const char *name = cur(P)->s;
            adv(P);
            adv(P);
            add_kw(P, e, name, parse_expr(P));
        } else {
            add_arg(P, e, parse_expr(P));
        }
        if (!is_op(P, ",")) break;
        adv(P);
    }
    expect_op(P, ")");
}

static struct jexpr *parse_primary(struct parser *P) {
    struct tok *t = cur(P);
    struct jexpr *e;
    if (t->kind == TK_NAME) {
        const char *s = t->s;
        e = mk(P, EX_LITERAL);
        if (!e) return NULL;
        if (!strcmp(s, "true") || !strcmp(s, "True")) e->lit = LIT_BOOL, e->ival = 1;
        else if (!strcmp(s, "false") || !strcmp(s, "False")) e->lit = LIT_BOOL, e->ival = 0;
        else if (!strcmp(s, "none") || !strcmp(s, "None")) e->lit = LIT_NONE;
        else e->kind = EX_NAME, e->name = s;
        adv(P);
        return e;
    }
    if (t->kind == TK_STRING) {
        /* adjacent string literals concatenate */
        size_t len = 0;
        int k = 0;
        while (peek(P, k)->kind == TK_STRING) len += peek(P, k++)->len;
        char *buf = ja_alloc(P->a, len + 1);
        e = mk(P, EX_LITERAL);
        if (!buf || !e) return NULL;
        len = 0;
        while (cur(P)->kind == TK_STRING) {
            memcpy(buf + len, cur(P)->s, cur(P)->len);
            len += cur(P)->len;
            adv(P);
        }
        e->lit = LIT_STR, e->sval = buf, e->slen = len;
        return e;
    }
    if (t->kind == TK_INT || t->kind == TK_FLOAT) {
        e = mk(P, EX_LITERAL);
        if (!e) return NULL;
        e->lit = t->kind == TK_INT ? LIT_INT : LIT_FLOAT;
        e->ival = t->ival;
        e->fval = t->fval;
        adv(P);
        return e;
    }
    if (is_op(P, "(")) {
        adv(P);
        if (is_op(P, ")")) { /* empty tuple */
            adv(P);
            return mk(P, EX_TUPLE);
        }
        struct jexpr *first = parse_expr(P);
        if (is_op(P, ",")) {
            e = mk(P, EX_TUPLE);
            if (!e) return NULL;
            add_arg(P, e, first);
            while (is_op(P, ",")) {
                adv(P);
                if (is_op(P, ")")) break;
                add_arg(P, e, parse_expr(P));
            }
            expect_op(P, ")");
            return e;
        }
        expect_op(P, ")");
        return first;
    }
    if (is_op(P, "[")) {
        adv(P);
        e = mk(P, EX_LIST);
        while (e && !P->err && !is_op(P, "]")) {
            add_arg(P, e, parse_expr(P));
            if (!is_op(P, ",")) break;
            adv(P);
        }
        expect_op(P, "]");
        return e;
    }
    if (is_op(P, "{")) {
        adv(P);
        e = mk(P, EX_DICT);
        while (e && !P->err && !is_op(P, "}")) {
            struct jexpr *k = parse_expr(P);
            expect_op(P, ":");
            add_kw(P, e, NULL, parse_expr(P));
            add_arg(P, e, k);
            if (!is_op(P, ",")) break;
            adv(P);
        }
        expect_op(P, "}");
        return e;
    }
    fail(P, t->line, "unexpected %s in an expression",
         t->kind == TK_VAR_END || t->kind == TK_BLOCK_END ? "end of tag" : t->kind == TK_OP ? t->s : "token");
    return NULL;
}

static struct jexpr *parse_postfix(struct parser *P, struct jexpr *e) {
    while (e && !P->err) {
        if (is_op(P, ".")) {
            adv(P);
            struct jexpr *a;
            if (cur(P)->kind == TK_NAME) {
                a = mk(P, EX_ATTR);
                if (!a) return NULL;
                a->a = e;
                a->name = cur(P)->s;
            } else if (cur(P)->kind == TK_INT) { /* x.0 is x[0] */
                a = mk(P, EX_INDEX);
                struct jexpr *i = mk(P, EX_LITERAL);
                if (!a || !i) return NULL;
                i->lit = LIT_INT;
                i->ival = cur(P)->ival;
                a->a = e;
                a->b = i;
            } else {
                fail(P, cur(P)->line, "expected an attribute name after '.'%s", "");
                return NULL;
            }
            adv(P);
            e = a;
        } else if (is_op(P, "[")) {
            adv(P);
            struct jexpr *parts[3] = {NULL, NULL, NULL};
            int n = 0;
            bool slice = false;
            for (;;) {
                if (!is_op(P, ":") && !is_op(P, "]")) parts[n] = parse_expr(P);
                if (is_op(P, ":") && n < 2) {
                    slice = true;
                    adv(P);
                    n++;
                    continue;
                }
                break;
            }
            expect_op(P, "]");
            struct jexpr *s = mk(P, slice ? EX_SLICE : EX_INDEX);
            if (!s) return NULL;
            s->a = e;
            s->b = parts[0];
            s->c = parts[1];
            s->d = parts[2];
            e = s;
        } else if (is_op(P, "(")) {
            adv(P);
            struct jexpr *c = mk(P, EX_CALL);
            if (!c) return NULL;
            c->a = e;
            parse_call_args(P, c);
            e = c;
        } else {
            break;
        }
    }
    return e;
}

static struct jexpr *parse_filters(struct parser *P, struct jexpr *e) {
    while (e && !P->err) {
        if (is_op(P, "|")) {
            adv(P);
            if (cur(P)->kind != TK_NAME) {
                fail(P, cur(P)->line, "expected a filter name after '|'%s", "");
                return NULL;
            }
            struct jexpr *f = mk(P, EX_FILTER);
            if (!f) return NULL;
            f->a = e;
            f->name = cur(P)->s;
            adv(P);
            if (is_op(P, "(")) {
                adv(P);
                parse_call_args(P, f);
            }
            e = f;
        } else if (is_name(P, "is")) {
            adv(P);
            struct jexpr *t = mk(P, EX_TEST);
            if (!t) return NULL;
            t->a = e;
            if (is_name(P, "not")) {
                t->negated = true;
                adv(P);
            }
            if (cur(P)->kind != TK_NAME) {
                fail(P, cur(P)->line, "expected a test name after 'is'%s", "");
                return NULL;
            }
            t->name = cur(P)->s;
            adv(P);
            if (is_op(P, "(")) {
                adv(P);
                parse_call_args(P, t);
            } else if ((cur(P)->kind == TK_NAME && !is_name(P, "else") && !is_name(P, "or") &&
                        !is_name(P, "and") && !is_name(P, "is") && !is_name(P, "if") &&
                        !is_name(P, "in") && !is_name(P, "not")) ||
                       cur(P)->kind == TK_STRING || cur(P)->kind == TK_INT ||
                       cur(P)->kind == TK_FLOAT || is_op(P, "[") || is_op(P, "{")) {
                add_arg(P, t, parse_postfix(P, parse_primary(P)));
            }
            e = t;
        } else {
            break;
        }
    }
    return e;
}

static struct jexpr *parse_unary(struct parser *P, bool with_filter) {
    struct jexpr *e;
    if (is_op(P, "-") || is_op(P, "+")) {
        e = mk(P, is_op(P, "-") ? EX_NEG : EX_POS);
        if (!e) return NULL;
        adv(P);
        e->a = parse_unary(P, false);
    } else {
        e = parse_primary(P);
    }
    e = parse_postfix(P, e);
    return with_filter ? parse_filters(P, e) : e;
}

static struct jexpr *binary(struct parser *P, const char *op, struct jexpr *a, struct jexpr *b) {
    struct jexpr *e = mk(P, EX_BINARY);
    if (!e) return NULL;
    snprintf(e->op, sizeof e->op, "%s", op);
    e->a = a;
    e->b = b;
    return e;
}

static struct jexpr *parse_pow(struct parser *P) {
    struct jexpr *e = parse_unary(P, true);
    while (!P->err && is_op(P, "**")) {
        adv(P);
        e = binary(P, "**", e, parse_unary(P, true));
    }
    return e;
}

static struct jexpr *parse_mul(struct parser *P) {
    struct jexpr *e = parse_pow(P);
    while (!P->err && (is_op(P, "*") || is_op(P, "/") || is_op(P, "//") || is_op(P, "%"))) {
        char op[4];
        snprintf(op, sizeof op, "%s", cur(P)->s);
        adv(P);
        e = binary(P, op, e, parse_pow(P));
    }
    return e;
}

static struct jexpr *parse_concat(struct parser *P) {
    struct jexpr *e = parse_mul(P);
    while (!P->err && is_op(P, "~")) {
        adv(P);
        e = binary(P, "~", e, parse_mul(P));
    }
    return e;
}

static struct jexpr *parse_add(struct parser *P) {
    struct jexpr *e = parse_concat(P);
    while (!P->err && (is_op(P, "+") || is_op(P, "-"))) {
        char op[4];
        snprintf(op, sizeof op, "%s", cur(P)->s);
        adv(P);
        e = binary(P, op, e, parse_concat(P));
    }
    return e;
}

static struct jexpr *parse_compare(struct parser *P) {
    struct jexpr *e = parse_add(P);
    for (;;) {
        if (P->err) return e;
        static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
        int k = -1;
        for (int i = 0; i < 6; i++)
            if (is_op(P, ops[i])) k = i;
        if (k >= 0) {
            adv(P);
            e = binary(P, ops[k], e, parse_add(P));
        } else if (is_name(P, "in")) {
            adv(P);
            e = binary(P, "in", e, parse_add(P));
        } else if (is_name(P, "not") && peek(P, 1)->kind == TK_NAME && !strcmp(peek(P, 1)->s, "in")) {
            adv(P);
            adv(P);
            e = binary(P, "nin", e, parse_add(P));
        } else {
            return e;
        }
    }
}

static struct jexpr *parse_not(struct parser *P) {
    if (is_name(P, "not")) {
        struct jexpr *e = mk(P, EX_NOT);
        if (!e) return NULL;
        adv(P);
        e->a = parse_not(P);
        return e;
    }
    return parse_compare(P);
}

static struct jexpr *parse_and(struct parser *P) {
    struct jexpr *e = parse_not(P);
    while (!P->err && is_name(P, "and")) {
        struct jexpr *n = mk(P, EX_AND);
        if (!n) return NULL;
        adv(P);
        n->a = e;
        n->b = parse_not(P);
        e = n;
    }
    return e;
}

static struct jexpr *parse_or(struct parser *P) {
    struct jexpr *e = parse_and(P);
    while (!P->err && is_name(P, "or")) {
        struct jexpr *n = mk(P, EX_OR);
        if (!n) return NULL;
        adv(P);
        n->a = e;
        n->b = parse_and(P);
        e = n;
    }
    return e;
}

/* expr := or ['if' or ['else' expr]] */
static struct jexpr *parse_expr(struct parser *P) {
    struct jexpr *e = parse_or(P);
    if (!P->err && is_name(P, "if")) {
        struct jexpr *c = mk(P, EX_COND);
        if (!c) return NULL;
        adv(P);
        c->b = e;
        c->a = parse_or(P);
        if (is_name(P, "else")) {
            adv(P);
            c->c = parse_expr(P);
        }
        e = c;
    }
    return e;
}

/* ---- statements ------------------------------------------------------------------------ */

static bool body_add(struct parser *P, struct jbody *b, struct jnode *n) {
    if (!n) return false;
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 8;
        struct jnode **v = ja_alloc(P->a, (size_t)cap * sizeof *v);
        if (!v) return false;
        if (b->n) memcpy(v, b->v, (size_t)b->n * sizeof *v);
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = n;
    return true;
}

static struct jnode *node(struct parser *P, enum jnode_kind k) {
    struct jnode *n = ja_alloc(P->a, sizeof *n);
    if (!n) {
        fail(P, cur(P)->line, "out of memory%s", "");
        return NULL;
    }
    n->kind = k;
    n->line = cur(P)->line;
    return n;
}

static bool end_tag(struct parser *P) {
    if (cur(P)->kind != TK_BLOCK_END) {
        fail(P, cur(P)->line, "expected the end of the tag ('%%}')%s", "");
        return false;
    }
    adv(P);
    return true;
}

/* Parse nodes into `b` until a block tag whose keyword is in `stops` (space-separated);
 * returns that keyword (the tag is left just after the keyword), or NULL at the end. */
static const char *parse_body(struct parser *P, struct jbody *b, const char *stops);

static void add_target(struct parser *P, struct jnode *n, const char *name) {
    const char **v = ja_alloc(P->a, (size_t)(n->n_targets + 1) * sizeof *v);
    if (!v) return;
    if (n->n_targets) memcpy(v, n->targets, (size_t)n->n_targets * sizeof *v);
    v[n->n_targets++] = name;
    n->targets = v;
}

static bool keyword_in(const char *kw, const char *stops) {
    size_t n = strlen(kw);
    for (const char *s = stops; s && *s;) {
        const char *e = strchr(s, ' ');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        if (l == n && !strncmp(s, kw, n)) return true;
        s = e ? e + 1 : NULL;
    }
    return false;
}

static struct jnode *parse_statement(struct parser *P, const char *kw, int line) {
    struct jnode *n = NULL;
    if (!strcmp(kw, "if")) {
        n = node(P, ND_IF);
        if (!n) return NULL;
        struct jexpr *conds[64];
        struct jbody bodies[64];
        int k = 0;
        conds[k] = parse_expr(P);
        if (!end_tag(P)) return NULL;
        for (;;) {
            memset(&bodies[k], 0, sizeof bodies[k]);
            const char *stop = parse_body(P, &bodies[k], "elif else endif");
            k++;
            if (!stop) {
                fail(P, line, "'if' without 'endif'%s", "");
                return NULL;
            }
            if (!strcmp(stop, "elif")) {
                if (k >= 64) {
                    fail(P, line, "too many elif branches%s", "");
                    return NULL;
                }
                conds[k] = parse_expr(P);
                if (!end_tag(P)) return NULL;
                continue;
            }
            if (!end_tag(P)) return NULL;
            if (!strcmp(stop, "else")) {
                stop = parse_body(P, &n->else_body, "endif");
                if (!stop) {
                    fail(P, line, "'if' without 'endif'%s", "");
                    return NULL;
                }
                if (!end_tag(P)) return NULL;
            }
            break;
        }
        n->n_conds = k;
        n->conds = ja_alloc(P->a, (size_t)k * sizeof *n->conds);
        n->bodies = ja_alloc(P->a, (size_t)k * sizeof *n->bodies);
        if (!n->conds || !n->bodies) return NULL;
        memcpy(n->conds, conds, (size_t)k * sizeof *conds);
        memcpy(n->bodies, bodies, (size_t)k * sizeof *bodies);
        return n;
    }
    if (!strcmp(kw, "for")) {
        n = node(P, ND_FOR);
        if (!n) return NULL;
        do {
            if (cur(P)->kind != TK_NAME) {
                fail(P, line, "expected a loop variable%s", "");
                return NULL;
            }
            add_target(P, n, cur(P)->s);
            adv(P);
            if (!is_op(P, ",")) break;
            adv(P);
        } while (!P->err);
        if (!is_name(P, "in")) {
            fail(P, line, "expected 'in' in a for loop%s", "");
            return NULL;
        }
        adv(P);
        n->expr = parse_or(P); /* no conditional expression: `if` filters the loop */
        if (is_name(P, "if")) {
            adv(P);
            n->filter = parse_expr(P);
        }
        if (is_name(P, "recursive")) {
            fail(P, line, "recursive loops are not supported%s", "");
            return NULL;
        }
        if (!end_tag(P)) return NULL;
        const char *stop = parse_body(P, &n->body, "else endfor");
        if (!stop) {
            fail(P, line, "'for' without 'endfor'%s", "");
            return NULL;
        }
        if (!end_tag(P)) return NULL;
        if (!strcmp(stop, "else")) {
            if (!parse_body(P, &n->else_body, "endfor")) {
                fail(P, line, "'for' without 'endfor'%s", "");
                return NULL;
            }
            if (!end_tag(P)) return NULL;
        }
        return n;
    }
    if (!strcmp(kw, "set")) {
        if (cur(P)->kind != TK_NAME) {
            fail(P, line, "expected a variable name after 'set'%s", "");
            return NULL;
        }
        const char *target = cur(P)->s;
        adv(P);
        if (is_op(P, ".")) { /* ns.attr = value */
            adv(P);
            if (cur(P)->kind != TK_NAME) {
                fail(P, line, "expected an attribute name%s", "");
                return NULL;
            }
            n = node(P, ND_SET);
            if (!n) return NULL;
            add_target(P, n, target);
            n->name = cur(P)->s;
            adv(P);
        } else if (is_op(P, "=") || is_op(P, ",")) {
            n = node(P, ND_SET);
            if (!n) return NULL;
            add_target(P, n, target);
            while (is_op(P, ",")) {
                adv(P);
                if (cur(P)->kind != TK_NAME) {
                    fail(P, line, "expected a variable name%s", "");
                    return NULL;
                }
                add_target(P, n, cur(P)->s);
                adv(P);
            }
        } else { /* block set */
            n = node(P, ND_SETBLOCK);
            if (!n) return NULL;
            add_target(P, n, target);
            if (!end_tag(P)) return NULL;
            if (!parse_body(P, &n->body, "endset")) {
                fail(P, line, "'set' block without 'endset'%s", "");
                return NULL;
            }
            return end_tag(P) ? n : NULL;
        }
        if (!expect_op(P, "=")) return NULL;
        n->expr = parse_expr(P);
        if (n->n_targets > 1 && is_op(P, ",")) { /* set a, b = x, y */
            struct jexpr *t = mk(P, EX_TUPLE);
            if (!t) return NULL;
            add_arg(P, t, n->expr);
            while (is_op(P, ",")) {
                adv(P);
                add_arg(P, t, parse_expr(P));
            }
            n->expr = t;
        }
        return end_tag(P) ? n : NULL;
    }
    if (!strcmp(kw, "macro")) {
        n = node(P, ND_MACRO);
        if (!n || cur(P)->kind != TK_NAME) {
            fail(P, line, "expected a macro name%s", "");
            return NULL;
        }
        n->name = cur(P)->s;
        adv(P);
        if (!expect_op(P, "(")) return NULL;
        struct jexpr *defs[64];
        int k = 0;
        while (!P->err && !is_op(P, ")")) {
            if (cur(P)->kind != TK_NAME || k >= 64) {
                fail(P, line, "expected a parameter name%s", "");
                return NULL;
            }
            add_target(P, n, cur(P)->s);
            adv(P);
            defs[k] = NULL;
            if (is_op(P, "=")) {
                adv(P);
                defs[k] = parse_expr(P);
            }
            k++;
            if (!is_op(P, ",")) break;
            adv(P);
        }
        if (!expect_op(P, ")") || !end_tag(P)) return NULL;
        n->defaults = ja_alloc(P->a, (size_t)(k ? k : 1) * sizeof *n->defaults);
        if (!n->defaults) return NULL;
        if (k) memcpy(n->defaults, defs, (size_t)k * sizeof *defs);
        if (!parse_body(P, &n->body, "endmacro")) {
            fail(P, line, "'macro' without 'endmacro'%s", "");
            return NULL;
        }
        if (cur(P)->kind == TK_NAME) adv(P); /* {% endmacro name %} */
        return end_tag(P) ? n : NULL;
    }
    if (!strcmp(kw, "filter")) {
        n = node(P, ND_FILTERBLOCK);
        if (!n || cur(P)->kind != TK_NAME) {
            fail(P, line, "expected a filter name%s", "");
            return NULL;
        }
        struct jexpr *f = mk(P, EX_FILTER);
        if (!f) return NULL;
        f->name = cur(P)->s;
        adv(P);
        if (is_op(P, "(")) {
            adv(P);
            parse_call_args(P, f);
        }
        n->expr = f;
        if (!end_tag(P)) return NULL;
        if (!parse_body(P, &n->body, "endfilter")) {
            fail(P, line, "'filter' without 'endfilter'%s", "");
            return NULL;
        }
        return end_tag(P) ? n : NULL;
    }
    if (!strcmp(kw, "call")) {
        n = node(P, ND_CALLBLOCK);
        if (!n) return NULL;
        n->expr = parse_expr(P);
        if (!n->expr || n->expr->kind != EX_CALL) {
            fail(P, line, "'call' needs a macro call%s", "");
            return NULL;
        }
        if (!end_tag(P)) return NULL;
        if (!parse_body(P, &n->body, "endcall")) {
            fail(P, line, "'call' without 'endcall'%s", "");
            return NULL;
        }
        return end_tag(P) ? n : NULL;
    }
    if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
        n = node(P, kw[0] == 'b' ? ND_BREAK : ND_CONTINUE);
        return n && end_tag(P) ? n : NULL;
    }
    fail(P, line, "unknown tag '%s'", kw);
    return NULL;
}

static const char *parse_body(struct parser *P, struct jbody *b, const char *stops) {
    while (!P->err) {
        struct tok *t = cur(P);
        if (t->kind == TK_EOF) return NULL;
        if (t->kind == TK_TEXT) {
            struct jnode *n = node(P, ND_TEXT);
            if (!n) return NULL;
            n->text = t->s;
            n->len = t->len;
            adv(P);
            if (!body_add(P, b, n)) return NULL;
            continue;
        }
        if (t->kind == TK_VAR_BEGIN) {
            adv(P);
            struct jnode *n = node(P, ND_OUTPUT);
            if (!n) return NULL;
            n->expr = parse_expr(P);
            if (cur(P)->kind != TK_VAR_END) {
                fail(P, cur(P)->line, "expected '}}'%s", "");
                return NULL;
            }
            adv(P);
            if (!body_add(P, b, n)) return NULL;
            continue;
        }
        if (t->kind != TK_BLOCK_BEGIN) {
            fail(P, t->line, "unexpected token%s", "");
            return NULL;
        }
        adv(P);
        if (cur(P)->kind != TK_NAME) {
            fail(P, cur(P)->line, "expected a tag name%s", "");
            return NULL;
        }
        const char *kw = cur(P)->s;
        int line = cur(P)->line;
        adv(P);
        if (keyword_in(kw, stops)) return kw;
        if (!strcmp(kw, "generation") || !strcmp(kw, "endgeneration")) {
            /* Hugging Face's assistant-mask markers: no output of their own */
            if (!end_tag(P)) return NULL;
            continue;
        }
        struct jnode *n = parse_statement(P, kw, line);
        if (!n) {
            if (!P->err) fail(P, line, "unexpected '%s'", kw);
            return NULL;
        }
        if (!body_add(P, b, n)) return NULL;
    }
    return NULL;
}

enum dsi_status dsi_jinja_parse(const char *src, size_t len, struct dsi_jinja **out) {
    *out = NULL;
    struct dsi_jinja *t = calloc(1, sizeof *t);
    if (!t) return DSI_ERR_NOMEM;
    struct parser P = {0};
    P.a = &t->arena;
    bool ok = lex(&P, src, len);
    if (ok && !P.err) {
        const char *stop = parse_body(&P, &t->root, "");
        if (!P.err && (stop || cur(&P)->kind != TK_EOF)) fail(&P, cur(&P)->line, "unexpected '%s'", stop ? stop : "token");
    }
    free(P.t);
    if (!ok || P.err) {
        DSI_LOG_ERR("chat template: line %d: %s", P.err_line, P.err ? P.err : "out of memory");
        dsi_jinja_free(t);
        return P.err ? DSI_ERR_FORMAT : DSI_ERR_NOMEM;
    }
    *out = t;
    return DSI_OK;
}

void dsi_jinja_free(struct dsi_jinja *t) {
    if (!t) return;
    ja_free(&t->arena);
    free(t);
}
