/* Byte buffers, the reasoning splitter and JSON string output for the server. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/server/server_impl.h"

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf) len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    unsigned cp = c & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

bool utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

void sb_json_str(struct dsi_strbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    dsi_strbuf_put(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, flushed in one go */
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        const char *esc = NULL;
        char ubuf[8];
        size_t k = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(ubuf, sizeof ubuf, "\\u%04x", c);
            esc = ubuf;
        } else if (c >= 0x80) {
            k = utf8_seq(u + i, n - i);
            if (!k) {
                esc = "\xef\xbf\xbd"; /* U+FFFD for a byte that starts no valid character */
                k = 1;
            }
        }
        if (esc) {
            dsi_strbuf_put(b, s + i - run, run);
            run = 0;
            dsi_strbuf_puts(b, esc);
        } else {
            run += k;
        }
        i += k;
    }
    dsi_strbuf_put(b, s + n - run, run);
    dsi_strbuf_put(b, "\"", 1);
}

/* ---- reasoning splitter -------------------------------------------------------------- */

void think_init(struct think *t, enum think_mode m) {
    memset(t, 0, sizeof *t);
    t->state = m == THINK_OPEN ? 1 : m == THINK_MAY_OPEN ? 0 : 2;
    t->skip_ws = m != THINK_NONE;
    t->seen = m == THINK_OPEN;
}

static void emit(struct think *t, const char *s, size_t n, struct dsi_strbuf *reasoning,
                 struct dsi_strbuf *content) {
    while (n && t->skip_ws && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')) s++, n--;
    if (!n) return;
    t->skip_ws = false;
    dsi_strbuf_put(t->state == 1 ? reasoning : content, s, n);
}

void think_feed(struct think *t, const char *s, size_t n, struct dsi_strbuf *reasoning,
                struct dsi_strbuf *content) {
    for (size_t i = 0; i < n; i++) {
        if (t->state == 2 && !t->n_hold) {
            /* content: no tag to look for any more; the rest of the piece goes out at once */
            emit(t, s + i, n - i, reasoning, content);
            return;
        }
        if (t->state == 0 && !t->n_hold && (s[i] == ' ' || s[i] == '\n') ) continue;
        const char *tag = t->state == 1 ? "</think>" : "<think>";
        size_t tl = strlen(tag);
        t->hold[t->n_hold++] = s[i];
        if (!memcmp(t->hold, tag, t->n_hold)) {
            if (t->n_hold == tl) {
                t->n_hold = 0;
                t->state = t->state == 1 ? 2 : 1;
                t->skip_ws = true;
                t->seen = true;
            }
            continue;
        }
        if (t->state == 0) {
            /* the output does not open with a think section: all of it is content */
            t->state = 2;
            t->skip_ws = false;
            emit(t, t->hold, t->n_hold, reasoning, content);
            t->n_hold = 0;
            continue;
        }
        /* not the closing tag: the first held byte is text; retry the rest */
        emit(t, t->hold, 1, reasoning, content);
        memmove(t->hold, t->hold + 1, --t->n_hold);
        while (t->n_hold && memcmp(t->hold, tag, t->n_hold)) {
            emit(t, t->hold, 1, reasoning, content);
            memmove(t->hold, t->hold + 1, --t->n_hold);
        }
    }
}

void think_flush(struct think *t, struct dsi_strbuf *reasoning, struct dsi_strbuf *content) {
    if (t->state == 0) t->state = 2;
    emit(t, t->hold, t->n_hold, reasoning, content);
    t->n_hold = 0;
}
