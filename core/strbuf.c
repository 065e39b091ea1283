/* Growable text buffer (core/strbuf.h). */
#include "core/strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(struct dsi_strbuf *b, size_t extra) {
    if (b->failed) return false;
    if (b->p && b->n + extra + 1 <= b->cap) return true;
    if (extra > SIZE_MAX / 2 - b->n) {
        b->failed = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
        b->failed = true;
        return false;
    }
    b->p = q;
    b->cap = cap;
    return true;
}

void dsi_strbuf_put(struct dsi_strbuf *b, const char *s, size_t n) {
    if (!reserve(b, n)) return;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void dsi_strbuf_puts(struct dsi_strbuf *b, const char *s) { dsi_strbuf_put(b, s, strlen(s)); }

void dsi_strbuf_printf(struct dsi_strbuf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof small) {
        dsi_strbuf_put(b, small, (size_t)k);
        return;
    }
    if (!reserve(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

void dsi_strbuf_free(struct dsi_strbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
