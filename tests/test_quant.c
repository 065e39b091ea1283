/* Quantized formats:
 *  - dequantization of random blocks of all 12 types equals ggml's bit for bit (vectors made
 *    with ggml, tests/fixtures/quant/README.md);
 *  - quantize -> dequantize round trips stay within per-type error bounds (relative RMSE on
 *    Gaussian data with outliers; bounds ~3% above what llama.cpp's quantizers reach on the
 *    same data), on several row lengths;
 *  - zero and constant rows quantize to finite, exact values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/kernels.h"
#include "quant/quantize.h"
#include "tests/util.h"

static const struct {
    const char *name;
    enum dsi_type t;
    double max_rel_rmse; /* llama.cpp's on this data, +3% */
} types[] = {
    {"q8_0", DSI_TYPE_Q8_0, 0.0078},  {"q4_0", DSI_TYPE_Q4_0, 0.1252},  {"q4_1", DSI_TYPE_Q4_1, 0.0922},
    {"q5_0", DSI_TYPE_Q5_0, 0.0623},  {"q5_1", DSI_TYPE_Q5_1, 0.0447},  {"q2_K", DSI_TYPE_Q2_K, 0.3400},
    {"q3_K", DSI_TYPE_Q3_K, 0.1897},  {"q4_K", DSI_TYPE_Q4_K, 0.0857},  {"q5_K", DSI_TYPE_Q5_K, 0.0434},
    {"q6_K", DSI_TYPE_Q6_K, 0.0236},  {"iq4_nl", DSI_TYPE_IQ4_NL, 0.0997}, {"iq4_xs", DSI_TYPE_IQ4_XS, 0.1016},
};

static uint64_t rs = 1;
static float gauss(void) {
    double u = 0;
    for (int k = 0; k < 4; k++) {
        rs = rs * 6364136223846793005ull + 1;
        u += (double)(rs >> 11) / 9007199254740992.0;
    }
    return (float)((u - 2.0) * 1.73);
}

static void test_ggml_vectors(void) {
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char p1[64], p2[64];
        snprintf(p1, sizeof p1, "quant/%s.blocks", types[k].name);
        snprintf(p2, sizeof p2, "quant/%s.ggml-f32", types[k].name);
        size_t nb, nf;
        char *blocks = tu_read(tu_fixture(0, p1), &nb), *want = tu_read(tu_fixture(1, p2), &nf);
        int64_t n = (int64_t)(nf / 4);
        TU_CHECK(dsi_row_size(types[k].t, n) == nb, "%s: fixture sizes", types[k].name);
        float *y = malloc(nf);
        dsi_kernels(types[k].t)->to_f32(blocks, y, n);
        int64_t bad = -1;
        for (int64_t i = 0; i < n && bad < 0; i++)
            if (memcmp(&y[i], want + 4 * i, 4)) bad = i;
        if (bad >= 0) {
            float w;
            memcpy(&w, want + 4 * bad, 4);
            TU_CHECK(0, "%s: element %lld dequantizes to %.9g, ggml gives %.9g", types[k].name, (long long)bad, y[bad], w);
        }
        free(y);
        free(blocks);
        free(want);
    }
}

static void test_roundtrip(void) {
    static const int64_t rows[] = {256, 1536, 4096};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        double err = 0, sig = 0;
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            int64_t n = rows[r];
            for (int rep = 0; rep < 8; rep++) {
                float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
                for (int64_t i = 0; i < n; i++) x[i] = gauss() * 0.02f * (i % 97 == 0 ? 6.0f : 1.0f);
                void *q = malloc(dsi_row_size(types[k].t, n));
                TU_CHECK(dsi_quantize_row(types[k].t, x, q, n), "%s: no quantizer", types[k].name);
                dsi_kernels(types[k].t)->to_f32(q, y, n);
                for (int64_t i = 0; i < n; i++) err += (double)(y[i] - x[i]) * (y[i] - x[i]), sig += (double)x[i] * x[i];
                free(x), free(y), free(q);
            }
        }
        double rel = sqrt(err / sig);
        TU_LOG("%-7s relative RMSE %.5f (bound %.4f)\n", types[k].name, rel, types[k].max_rel_rmse);
        TU_CHECK(rel <= types[k].max_rel_rmse, "%s: relative RMSE %.5f above %.4f", types[k].name, rel, types[k].max_rel_rmse);

        /* zero and constant rows */
        float z[256] = {0}, c[256], y[256];
        for (int i = 0; i < 256; i++) c[i] = 0.5f;
        void *q = malloc(dsi_row_size(types[k].t, 256));
        dsi_quantize_row(types[k].t, z, q, 256);
        dsi_kernels(types[k].t)->to_f32(q, y, 256);
        for (int i = 0; i < 256; i++) TU_CHECK(y[i] == 0, "%s: zero row gives %g", types[k].name, y[i]);
        dsi_quantize_row(types[k].t, c, q, 256);
        dsi_kernels(types[k].t)->to_f32(q, y, 256);
        for (int i = 0; i < 256; i++)
            TU_CHECK(isfinite(y[i]) && fabsf(y[i] - 0.5f) < 0.06f, "%s: constant row gives %g", types[k].name, y[i]);
        free(q);
    }
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    test_ggml_vectors();
    test_roundtrip();
    return tu_finish("test_quant");
}
