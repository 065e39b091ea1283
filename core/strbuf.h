/* A growable NUL-terminated byte buffer for building text (JSON, templates, regexes). An
 * allocation failure is sticky: later writes do nothing and `failed` stays set, so a caller
 * checks once at the end. */
#ifndef DSI_CORE_STRBUF_H
#define DSI_CORE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dsi_strbuf {
    char *p;     /* NUL-terminated once anything was put (even ""), NULL before */
    size_t n;    /* bytes, without the NUL */
    size_t cap;
    bool failed; /* an allocation failed: the contents are incomplete */
};

void dsi_strbuf_put(struct dsi_strbuf *b, const char *s, size_t n);
void dsi_strbuf_puts(struct dsi_strbuf *b, const char *s);
void dsi_strbuf_printf(struct dsi_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Free the bytes and reset to empty. */
void dsi_strbuf_free(struct dsi_strbuf *b);

#ifdef __cplusplus
}
#endif

#endif
