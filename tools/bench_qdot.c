/* Integer dot kernels in isolation, one thread: for each weight type and each instruction set
 * this CPU has, a K x N matrix (default 1536 x 1024, larger than L2) dotted with 1 and with 4
 * activation rows, the median of -r runs. Prints weight GB/s (nx=1, the decode case) and
 * GMAC/s (nx=4, the prompt case).
 *   bench_qdot [-k K] [-n N] [-r R] [TYPE ...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/dtype.h"
#include "quant/kernels.h"
#include "quant/quantize.h"
#include "src/generate.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int64_t K = 1536, N = 1024;
    int R = 7;
    const char *only[16];
    int n_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-k") && i + 1 < argc) K = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) N = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) R = atoi(argv[++i]);
        else if (n_only < 16) only[n_only++] = argv[i];
    }
    if (K % 256 || K <= 0 || N <= 0 || R <= 0 || R > 101) {
        fprintf(stderr, "bench_qdot: K must be a positive multiple of 256\n");
        return 2;
    }
    dsi_cpu_init(getenv("DSI_CPU_DISABLE"));
    dsi_kernels_init();
    const struct dsi_qdot_set *sets;
    int ns = dsi_qdot_sets(&sets);
    float *xf = malloc((size_t)(4 * K) * 4), *wf = malloc((size_t)K * 4), out[4 * 1024];
    size_t rb = dsi_xq_row_bytes(K);
    uint8_t *xq = aligned_alloc(64, 4 * rb);
    srand(1);
    for (int64_t i = 0; i < 4 * K; i++) xf[i] = (float)rand() / RAND_MAX - 0.5f;
    printf("%-8s %-11s %10s %12s\n", "type", "variant", "nx=1 GB/s", "nx=4 GMAC/s");
    for (int ti = 0; ti < DSI_QDOT_NTYPES; ti++) {
        enum dsi_type t = dsi_qdot_types[ti];
        if (n_only) {
            int hit = 0;
            for (int k = 0; k < n_only; k++) hit |= !strcmp(only[k], dsi_type_name(t));
            if (!hit) continue;
        }
        size_t rs = dsi_row_size(t, K);
        uint8_t *w = malloc(rs * (size_t)N);
        for (int64_t r = 0; r < N; r++) {
            for (int64_t i = 0; i < K; i++) wf[i] = (float)rand() / RAND_MAX - 0.5f;
            dsi_quantize_row(t, wf, w + (size_t)r * rs, K);
        }
        for (int s = 1; s < ns; s++) {
            if (!dsi_cpu_has_all(sets[s].need)) continue;
            for (int j = 0; j < 4; j++) sets[s].quantize_x(xf + j * K, xq + j * rb, K);
            double t1[101], t4[101];
            for (int rep = 0; rep < R; rep++) {
                for (int nx = 1; nx <= 4; nx += 3) {
                    double t0 = dsi_time_now();
                    for (int64_t r = 0; r < N; r++)
                        sets[s].dot[ti](K, w + (size_t)r * rs, xq, rb, nx, out + (r % 1024) * 4, 1);
                    (nx == 1 ? t1 : t4)[rep] = dsi_time_now() - t0;
                }
            }
            qsort(t1, (size_t)R, sizeof *t1, cmp);
            qsort(t4, (size_t)R, sizeof *t4, cmp);
            printf("%-8s %-11s %10.2f %12.2f\n", dsi_type_name(t), sets[s].name,
                   (double)rs * (double)N / t1[R / 2] / 1e9, 4.0 * (double)K * (double)N / t4[R / 2] / 1e9);
        }
        free(w);
    }
    free(xf);
    free(wf);
    free(xq);
    return 0;
}
