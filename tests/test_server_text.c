/* The server's text pipeline pieces: the reasoning splitter (<think> ... </think> into
 * reasoning_content and content), the incremental text stream (UTF-8 holdback, stop strings),
 * JSON string output, and base64 (data: URLs). The splitter and stream cases are also fed one
 * byte at a time and at every split point: the result must not depend on how the text
 * arrives in pieces. */
#include <stdlib.h>
#include <string.h>

#include "src/server/server_impl.h"
#include "tests/util.h"

struct split_case {
    enum think_mode mode;
    const char *in, *reasoning, *content;
};

static void run_split(const struct split_case *c, size_t cut, bool bytewise, struct dsi_strbuf *r,
                      struct dsi_strbuf *o) {
    struct think t;
    think_init(&t, c->mode);
    size_t n = strlen(c->in);
    if (bytewise) {
        for (size_t i = 0; i < n; i++) think_feed(&t, c->in + i, 1, r, o);
    } else {
        think_feed(&t, c->in, cut, r, o);
        think_feed(&t, c->in + cut, n - cut, r, o);
    }
    think_flush(&t, r, o);
}

static void test_think(void) {
    static const struct split_case cases[] = {
        {THINK_OPEN, "Let me think.</think>\n\nThe answer.", "Let me think.", "The answer."},
        {THINK_OPEN, "\nno end of thinking", "no end of thinking", ""},
        {THINK_OPEN, "a </thin b</think>c", "a </thin b", "c"},
        {THINK_OPEN, "x</think>y</think>z", "x", "y</think>z"},
        {THINK_OPEN, "held </thi", "held </thi", ""},
        {THINK_MAY_OPEN, "<think>\nR</think>C", "R", "C"},
        {THINK_MAY_OPEN, "  <think>R</think>\n C", "R", "C"},
        {THINK_MAY_OPEN, "Hello <think>x</think>", "", "Hello <think>x</think>"},
        {THINK_MAY_OPEN, "<thx>", "", "<thx>"},
        {THINK_MAY_OPEN, "<thi", "", "<thi"},
        {THINK_MAY_OPEN, "plain text", "", "plain text"},
        {THINK_NONE, "<think>x</think>", "", "<think>x</think>"},
        {THINK_NONE, "  leading", "", "  leading"},
        {THINK_OPEN, "\xe2\x82\xac</think>\xe2\x82\xac", "\xe2\x82\xac", "\xe2\x82\xac"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const struct split_case *c = &cases[k];
        size_t n = strlen(c->in);
        for (size_t cut = 0; cut <= n + 1; cut++) {
            struct dsi_strbuf r = {0}, o = {0};
            run_split(c, cut > n ? 0 : cut, cut > n, &r, &o);
            const char *rs = r.p ? r.p : "", *os = o.p ? o.p : "";
            TU_CHECK(!strcmp(rs, c->reasoning) && !strcmp(os, c->content),
                     "think case %zu cut %zu: reasoning '%s' content '%s', want '%s' '%s'", k, cut,
                     rs, os, c->reasoning, c->content);
            dsi_strbuf_free(&r);
            dsi_strbuf_free(&o);
        }
    }
}

/* Stream `text` in pieces of `step` bytes; returns what came out. */
static char *stream_text(const char *text, size_t step, const char *const *stop, int n_stop,
                         bool *stopped) {
    struct dsi_textstream ts;
    dsi_textstream_init(&ts, stop, n_stop);
    struct dsi_strbuf out = {0};
    size_t n = strlen(text);
    for (size_t i = 0; i < n && !ts.stopped; i += step) {
        const char *p;
        size_t len;
        TU_CHECK(dsi_textstream_put(&ts, text + i, n - i < step ? n - i : step, &p, &len) == DSI_OK,
                 "textstream put");
        /* what comes out is never an incomplete character */
        TU_CHECK(utf8_valid(p, len), "textstream: emitted a split UTF-8 character at %zu", i);
        dsi_strbuf_put(&out, p, len);
    }
    const char *p;
    size_t len;
    dsi_textstream_flush(&ts, &p, &len);
    dsi_strbuf_put(&out, p, len);
    *stopped = ts.stopped;
    dsi_textstream_free(&ts);
    char *s = strdup(out.p ? out.p : "");
    dsi_strbuf_free(&out);
    return s;
}

static void test_textstream(void) {
    static const char *const stop[] = {"\n\nUSER:", "STOP"};
    static const struct {
        const char *in, *want;
        bool stopped;
    } cases[] = {
        {"Hello world", "Hello world", false},
        {"Hi\n\nUSER: more", "Hi", true},
        {"Hi\n\nUSE", "Hi\n\nUSE", false},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80!", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80!", false},
        {"aSTOPb", "a", true},
        {"STO", "STO", false},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (size_t step = 1; step <= 5; step++) {
            bool stopped;
            char *got = stream_text(cases[k].in, step, stop, 2, &stopped);
            TU_CHECK(!strcmp(got, cases[k].want) && stopped == cases[k].stopped,
                     "textstream case %zu step %zu: '%s' (stopped %d)", k, step, got, stopped);
            free(got);
        }
}

static void test_json(void) {
    static const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"plain", 5, "\"plain\""},
        {"q\"b\\n\nt\tr\r", 10, "\"q\\\"b\\\\n\\nt\\tr\\r\""},
        {"\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\""},
        {"\xc3\xa9\xe2\x82\xac", 5, "\"\xc3\xa9\xe2\x82\xac\""},
        {"a\xff" "b\xc3", 4, "\"a\xef\xbf\xbd" "b\xef\xbf\xbd\""},
        {"\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""}, /* a surrogate */
        {"nul\0in", 6, "\"nul\\u0000in\""},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct dsi_strbuf b = {0};
        sb_json_str(&b, cases[k].in, cases[k].n);
        TU_CHECK(b.p && !strcmp(b.p, cases[k].want), "json case %zu: %s", k, b.p ? b.p : "(null)");
        TU_CHECK(b.p && utf8_valid(b.p, b.n), "json case %zu: output is not UTF-8", k);
        dsi_strbuf_free(&b);
    }
    TU_CHECK(utf8_valid("\xf0\x9f\x98\x80", 4) && !utf8_valid("\xc0\x80", 2) &&
                 !utf8_valid("\xf4\x90\x80\x80", 4) && !utf8_valid("\xe2\x82", 2),
             "utf8_valid: overlong, out of range, truncated");
    struct dsi_strbuf b = {0};
    dsi_strbuf_printf(&b, "%d-%s", 7, "x");
    for (int i = 0; i < 100; i++) dsi_strbuf_printf(&b, "%0300d", i);
    TU_CHECK(b.n == 3 + 100 * 300 && !strncmp(b.p, "7-x", 3), "sb_printf grows the buffer");
    dsi_strbuf_free(&b);
}

/* srv_base64_decode (the payload of data: URLs): RFC 4648 vectors, padded and not; every
 * malformed input refused; the size limit. */
static void test_base64(void) {
    static const struct {
        const char *in, *want; /* want NULL: refused */
    } cases[] = {
        {"Zg==", "f"}, {"Zm8=", "fo"}, {"Zm9v", "foo"}, {"Zm9vYg==", "foob"}, {"Zm9vYmE=", "fooba"},
        {"Zm9vYmFy", "foobar"}, {"Zg", "f"}, {"Zm8", "fo"}, {"+/+/", "\xfb\xff\xbf"},
        {"", NULL}, {"=", NULL}, {"Z", NULL}, {"Zg=", NULL}, {"Zg===", NULL}, {"Zm9vY", NULL},
        {"Zm9v\n", NULL}, {"Zm 9v", NULL}, {"Zm=v", NULL}, {"Zh==", NULL}, {"Zm9=", NULL},
        {"Zm-_", NULL}, {"Zm9v====", NULL},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint8_t *out = (uint8_t *)"x";
        size_t n = 99;
        enum dsi_status st = srv_base64_decode(cases[k].in, strlen(cases[k].in), 1 << 20, &out, &n);
        if (cases[k].want)
            TU_CHECK(st == DSI_OK && n == strlen(cases[k].want) && !memcmp(out, cases[k].want, n),
                     "base64 '%s': status %d, %zu bytes", cases[k].in, (int)st, n);
        else
            TU_CHECK(st == DSI_ERR_FORMAT && !out && n == 0, "base64 '%s' must be refused (%d)",
                     cases[k].in, (int)st);
        free(out);
    }
    uint8_t *out;
    size_t n;
    TU_CHECK(srv_base64_decode("Zm9vYmFy", 8, 5, &out, &n) == DSI_ERR_LIMIT && !out,
             "base64: 6 bytes over a limit of 5");
    TU_CHECK(srv_base64_decode("Zm9vYmFy", 8, 6, &out, &n) == DSI_OK && n == 6, "base64: at the limit");
    free(out);
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    test_think();
    test_textstream();
    test_json();
    test_base64();
    return tu_finish("test_server_text");
}
