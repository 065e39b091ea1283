/* dsinfer tokenize -m MODEL (-f FILE | -p TEXT) [--add-special] [--no-parse-special] [--decode] */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "src/cli/cli.h"
#include "src/tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsinfer tokenize -m MODEL (-f FILE | -p TEXT) [options]\n"
            "  MODEL is a .gguf file, a tokenizer.json or a Hugging Face model directory.\n"
            "  Prints the token ids of the whole text on one line, separated by spaces.\n"
            "  --add-special        add BOS/EOS as the tokenizer configures (default: none)\n"
            "  --no-parse-special   do not match control-token texts (e.g. <|endoftext|>)\n"
            "  --decode             the input holds token ids; print their text instead\n"
            "  --render-special     with --decode, print the text of control tokens too\n");
}

/* Parse whitespace-separated ids. */
static int parse_ids(const char *s, int32_t **ids, size_t *n) {
    size_t cap = 64;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return -1;
    while (*s) {
        while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r' || *s == ',') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "dsinfer tokenize: '%.20s' is not a token id\n", s);
            return -1;
        }
        if (*n == cap) {
            cap *= 2;
            int32_t *p = realloc(*ids, cap * sizeof *p);
            if (!p) return -1;
            *ids = p;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    return 0;
}

int dsi_cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *text = NULL;
    unsigned eflags = DSI_TOK_PARSE_SPECIAL, dflags = 0;
    bool decode = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model = argv[++i];
        } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < argc) {
            file = argv[++i];
        } else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && i + 1 < argc) {
            text = argv[++i];
        } else if (!strcmp(a, "--add-special")) {
            eflags |= DSI_TOK_ADD_SPECIAL;
        } else if (!strcmp(a, "--no-parse-special")) {
            eflags &= ~DSI_TOK_PARSE_SPECIAL;
        } else if (!strcmp(a, "--decode")) {
            decode = true;
        } else if (!strcmp(a, "--render-special")) {
            dflags |= DSI_TOK_RENDER_SPECIAL;
        } else {
            fprintf(stderr, "dsinfer tokenize: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || (!file && !text) || (file && text)) {
        usage(stderr);
        return 2;
    }
    char *buf = NULL;
    size_t len;
    if (file) {
        if (dsi_file_read_all(file, (size_t)1 << 30, &buf, &len)) return 1;
        text = buf;
    } else {
        len = strlen(text);
    }
    struct dsi_tokenizer *tok;
    if (dsi_tokenizer_load(model, &tok)) {
        free(buf);
        return 1;
    }
    int rc = 0;
    if (decode) {
        int32_t *ids = NULL;
        size_t n;
        char *out = NULL;
        size_t olen;
        if (parse_ids(text, &ids, &n) || dsi_tokenizer_decode(tok, ids, n, dflags, &out, &olen)) {
            rc = 1;
        } else {
            fwrite(out, 1, olen, stdout);
        }
        free(ids);
        free(out);
    } else {
        int32_t *ids;
        size_t n;
        if (dsi_tokenizer_encode(tok, text, len, eflags, &ids, &n)) {
            rc = 1;
        } else {
            for (size_t i = 0; i < n; i++) printf(i ? " %" PRId32 : "%" PRId32, ids[i]);
            putchar('\n');
            free(ids);
        }
    }
    dsi_tokenizer_free(tok);
    free(buf);
    return rc;
}
