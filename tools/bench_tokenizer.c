/* Tokenizer throughput: encodes a text file repeatedly and reports MB/s (median of runs).
 * usage: bench_tokenizer TOKENIZER TEXT [-r RUNS] [--repeat N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/file.h"
#include "src/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER TEXT [-r RUNS] [--repeat N]\n");
        return 2;
    }
    int runs = 5, repeat = 1;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
    }
    if (runs < 1 || runs > 100 || repeat < 1 || repeat > 1000) return 2;
    char *one;
    size_t len1;
    if (dsi_file_read_all(argv[2], (size_t)1 << 30, &one, &len1)) return 1;
    size_t len = len1 * (size_t)repeat;
    char *text = malloc(len + 1);
    for (int i = 0; i < repeat; i++) memcpy(text + (size_t)i * len1, one, len1);
    free(one);
    double t0 = now();
    struct dsi_tokenizer *t;
    if (dsi_tokenizer_load(argv[1], &t)) return 1;
    double load = now() - t0;
    double *dt = calloc((size_t)runs, sizeof *dt);
    size_t n = 0;
    for (int r = 0; r < runs; r++) {
        int32_t *ids;
        double a = now();
        if (dsi_tokenizer_encode(t, text, len, DSI_TOK_PARSE_SPECIAL, &ids, &n)) return 1;
        dt[r] = now() - a;
        free(ids);
    }
    qsort(dt, (size_t)runs, sizeof *dt, cmp_d);
    double med = dt[runs / 2];
    printf("tokenizer %s: %.2f MB of text -> %zu tokens; load %.3f s; encode median %.3f s "
           "(min %.3f, max %.3f) = %.2f MB/s, %.0f tokens/s\n",
           argv[1], len / 1e6, n, load, med, dt[0], dt[runs - 1], len / 1e6 / med, n / med);
    free(dt);
    free(text);
    dsi_tokenizer_free(t);
    return 0;
}
