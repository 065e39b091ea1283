/* Integer kernels (quantized weights x 8-bit activations), every variant built into this
 * binary and usable on this CPU (DSI_CPU_DISABLE masks more), against the scalar references:
 *  - the activation quantizer: identical bytes;
 *  - integer exactness: with unit block scales and integer activations every term is an
 *    integer below 2^24, so every variant must equal the reference bit for bit;
 *  - realistic rows (our quantizers on Gaussian data) of 1, 2, 3, 5, 7, 31, 33 blocks and the
 *    real row lengths 1536 and 8960: within (blocks + 4) ulps of the magnitude of the terms
 *    (see magnitude());
 *  - the reference itself against the dequantized weights (quant/dequant.c, which equals
 *    ggml) times the dequantized activations, so the decoders cannot drift from the format;
 *  - weight rows end at an inaccessible page, activations of 1..4 rows at odd strides. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/dtype.h"
#include "quant/formats.h"
#include "quant/kernels.h"
#include "quant/quantize.h"
#include "tests/util.h"

static uint64_t rs = 7;
static uint32_t rnd(void) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rs >> 32);
}
static float gauss(void) {
    double u = 0;
    for (int k = 0; k < 4; k++) u += rnd() / 4294967296.0;
    return (float)((u - 2.0) * 1.73);
}

static const int nblocks[] = {1, 2, 3, 5, 7, 31, 33};

/* Quantize nx rows of n floats into rows of `stride` bytes. */
static void quantize_rows(dsi_quantize_x_fn q, const float *x, int64_t n, int nx, uint8_t *out,
                          size_t stride) {
    for (int t = 0; t < nx; t++) q(x + (size_t)t * n, out + (size_t)t * stride, n);
}

static void test_quantize_x(const struct dsi_qdot_set *sets, int nsets) {
    static const int64_t ns[] = {32, 64, 96, 1536, 8960};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int64_t n = ns[k];
        size_t rb = dsi_xq_row_bytes(n);
        float *x = malloc((size_t)n * sizeof *x);
        for (int64_t i = 0; i < n; i++) x[i] = gauss() * (i % 97 == 0 ? 20.0f : 1.0f);
        for (int64_t i = 0; i < 32; i++) x[i] = 0.0f; /* an all-zero block */
        if (n >= 96) {
            /* block 1: amax 127, so the step is exactly 1 and k + 0.5 are true ties (round half
             * to even); block 2: amax so small that 127 / amax overflows (quantizes to zeros) */
            x[32] = 127.0f;
            for (int i = 33; i < 64; i++) x[i] = (float)((i * 7) % 41 - 20) + 0.5f;
            for (int i = 64; i < 96; i++) x[i] = 1e-38f * gauss();
        }
        uint8_t *ref = calloc(1, rb), *got = calloc(1, rb);
        size_t used = (size_t)n + (size_t)n / 32 * 8 + (size_t)n / 16 * 6;
        sets[0].quantize_x(x, ref, n);
        for (int s = 1; s < nsets; s++) {
            if (!dsi_cpu_has_all(sets[s].need)) continue;
            memset(got, 0xa5, rb);
            sets[s].quantize_x(x, got, n);
            TU_CHECK(memcmp(ref, got, used) == 0, "quantize_x %s n=%lld differs from the reference",
                     sets[s].name, (long long)n);
        }
        /* the reference against its own definition */
        struct dsi_xq_view v = dsi_xq_view(ref, n);
        for (int64_t b = 0; b < n / 32; b++) {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[32 * b + i]));
            TU_CHECK(v.d[b] == amax / 127.0f, "quantize_x: block %lld scale", (long long)b);
            int s0 = 0, s1 = 0;
            for (int i = 0; i < 32; i++) {
                float e = fabsf(x[32 * b + i] - v.q[32 * b + i] * v.d[b]);
                if (!(127.0f / amax <= FLT_MAX)) /* a block too small to scale: zeros */
                    TU_CHECK(v.q[32 * b + i] == 0, "quantize_x: tiny block not flushed");
                else
                    TU_CHECK(e <= 0.5f * v.d[b] * (1 + 1e-5f), "quantize_x: element error %g > half step", e);
                if (i < 16) s0 += v.q[32 * b + i];
                else s1 += v.q[32 * b + i];
            }
            TU_CHECK(v.s16[2 * b] == s0 && v.s16[2 * b + 1] == s1, "quantize_x: block sums");
        }
        TU_CHECK(v.d[0] == 0.0f && v.q[0] == 0, "quantize_x: zero block");
        if (n >= 96) /* the ties of block 1 round half to even: 0.5 + k -> the even neighbour */
            for (int i = 33; i < 64; i++) {
                float f = floorf(x[i]);
                int want = ((int)f % 2 == 0) ? (int)f : (int)f + 1;
                TU_CHECK(v.q[i] == want, "quantize_x: tie %g -> %d, want %d", x[i], v.q[i], want);
            }
        free(x);
        free(ref);
        free(got);
    }
}

/* The magnitude that bounds the float error: sum over halves of |a dx| sum (|q| + 32) |xq|
 * + |m dx| sum |xq|. The 32 covers a kernel that folds a type's offset (at most 32, Q6_K)
 * into the minimum term instead of the integer sum. */
static double magnitude(enum dsi_type t, const void *w, int64_t n, const uint8_t *xrow) {
    dsi_decode32_fn dec = dsi_decode32(t);
    struct dsi_xq_view v = dsi_xq_view(xrow, n);
    double mag = 0;
    for (int64_t j = 0; j < n / 32; j++) {
        int q[32];
        float a[2], m[2];
        dec(w, j, q, a, m);
        for (int h = 0; h < 2; h++) {
            int64_t qs = 0, xsum = 0;
            for (int i = 16 * h; i < 16 * h + 16; i++) {
                qs += (int64_t)(abs(q[i]) + 32) * abs(v.q[32 * j + i]);
                xsum += abs(v.q[32 * j + i]);
            }
            mag += fabs((double)a[h] * v.d[j]) * (double)qs + fabs((double)m[h] * v.d[j]) * (double)xsum;
        }
    }
    return mag;
}

/* Scale fields set so that every block term is a small integer (see the file comment). */
static void tame(enum dsi_type t, uint8_t *w, int64_t n) {
    const uint16_t one = 0x3c00;
    int64_t nb = n / dsi_type_traits(t)->blck;
    size_t bs = (size_t)dsi_type_traits(t)->size;
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *b = w + (size_t)i * bs;
        uint16_t small[] = {0x3c00, 0x4000, 0xc200, 0x0000, 0xbc00}; /* 1, 2, -3, 0, -1 */
        uint16_t mval = small[rnd() % 5];
        switch (t) {
        case DSI_TYPE_Q4_0: case DSI_TYPE_Q5_0: case DSI_TYPE_Q8_0: case DSI_TYPE_IQ4_NL:
            memcpy(b, &one, 2);
            break;
        case DSI_TYPE_Q4_1: case DSI_TYPE_Q5_1:
            memcpy(b, &one, 2);
            memcpy(b + 2, &mval, 2);
            break;
        case DSI_TYPE_Q2_K: {
            struct block_q2_K *q = (void *)b;
            q->d = one;
            q->dmin = one;
            break;
        }
        case DSI_TYPE_Q3_K: ((struct block_q3_K *)(void *)b)->d = one; break;
        case DSI_TYPE_Q4_K: case DSI_TYPE_Q5_K: {
            struct block_q4_K *q = (void *)b; /* Q5_K starts with the same fields */
            q->d = one;
            q->dmin = one;
            for (int k = 0; k < 12; k++) q->scales[k] &= 0x07;
            break;
        }
        case DSI_TYPE_Q6_K: {
            struct block_q6_K *q = (void *)b;
            q->d = one;
            for (int k = 0; k < 16; k++) q->scales[k] = (int8_t)((int)(rnd() % 9) - 4);
            break;
        }
        case DSI_TYPE_IQ4_XS: {
            struct block_iq4_xs *q = (void *)b;
            static const int ls[] = {30, 31, 32, 33, 34};
            q->d = one;
            q->scales_h = 0;
            memset(q->scales_l, 0, sizeof q->scales_l);
            for (int ib = 0; ib < 8; ib++) {
                int v = ls[rnd() % 5];
                q->scales_l[ib / 2] |= (uint8_t)((v & 0xf) << (4 * (ib % 2)));
                q->scales_h |= (uint16_t)((v >> 4) << (2 * ib));
            }
            break;
        }
        default: break;
        }
    }
}

/* Weights and activations of one case; the weight row ends at an inaccessible page. */
struct qcase {
    enum dsi_type t;
    int64_t n;
    uint8_t *w;
    size_t wbytes;
    uint8_t *x; /* nx rows of `xs` bytes */
    size_t xs;
};

static void run_case(const struct dsi_qdot_set *sets, int nsets, int ti, struct qcase *c,
                     bool exact, const char *what) {
    float ref[DSI_DOT_MAX_X], got[DSI_DOT_MAX_X];
    for (int nx = 1; nx <= DSI_DOT_MAX_X; nx++) {
        sets[0].dot[ti](c->n, c->w, c->x, c->xs, nx, ref, 1);
        for (int s = 1; s < nsets; s++) {
            if (!dsi_cpu_has_all(sets[s].need)) continue;
            for (int j = 0; j < nx; j++) got[j] = NAN;
            sets[s].dot[ti](c->n, c->w, c->x, c->xs, nx, got, 1);
            for (int j = 0; j < nx; j++) {
                double tol = exact ? 0.0
                                   : (double)(c->n / 32 + 4) * FLT_EPSILON *
                                         magnitude(c->t, c->w, c->n, c->x + (size_t)j * c->xs);
                if (!(fabs((double)got[j] - ref[j]) <= tol))
                    TU_CHECK(0, "%s %s %s n=%lld nx=%d row %d: %.9g, reference %.9g (tol %.3g)",
                             what, sets[s].name, dsi_type_name(c->t), (long long)c->n, nx, j, got[j],
                             ref[j], tol);
            }
        }
    }
}

/* The reference against dequantized weights x dequantized activations, in double. */
static void check_ref_vs_dequant(int ti, struct qcase *c) {
    float *wf = malloc((size_t)c->n * sizeof *wf);
    dsi_kernels(c->t)->to_f32(c->w, wf, c->n);
    struct dsi_xq_view v = dsi_xq_view(c->x, c->n);
    double want = 0, mag = 0;
    for (int64_t i = 0; i < c->n; i++) {
        double p = (double)wf[i] * v.q[i] * v.d[i / 32];
        want += p;
        mag += fabs(p);
    }
    const struct dsi_qdot_set *sets;
    dsi_qdot_sets(&sets);
    float got;
    sets[0].dot[ti](c->n, c->w, c->x, c->xs, 1, &got, 1);
    /* dequantization rounds d * sc * q in float; the reference keeps a * isum in double */
    double tol = 4 * FLT_EPSILON * (mag + magnitude(c->t, c->w, c->n, c->x)) + 1e-30;
    TU_CHECK(fabs(got - want) <= tol, "reference %s n=%lld: %.9g, dequantized dot %.9g",
             dsi_type_name(c->t), (long long)c->n, got, want);
    free(wf);
}

static void test_dots(const struct dsi_qdot_set *sets, int nsets) {
    for (int ti = 0; ti < DSI_QDOT_NTYPES; ti++) {
        enum dsi_type t = dsi_qdot_types[ti];
        int64_t blck = dsi_type_traits(t)->blck;
        int64_t lens[16];
        int nl = 0;
        for (size_t k = 0; k < sizeof nblocks / sizeof nblocks[0]; k++) lens[nl++] = nblocks[k] * blck;
        lens[nl++] = 1536;
        lens[nl++] = 8960;
        for (int li = 0; li < nl; li++) {
            struct qcase c = {t, lens[li], NULL, 0, NULL, 0};
            c.wbytes = dsi_row_size(t, c.n);
            c.w = tu_guarded_alloc(c.wbytes);
            c.xs = dsi_xq_row_bytes(c.n) + 64 * (size_t)(li % 3); /* varied strides */
            c.x = malloc(c.xs * DSI_DOT_MAX_X);
            float *xf = malloc((size_t)c.n * DSI_DOT_MAX_X * sizeof *xf);
            float *wf = malloc((size_t)c.n * sizeof *wf);

            /* realistic: our quantizer on Gaussian weights with outliers */
            for (int64_t i = 0; i < c.n; i++) wf[i] = gauss() * 0.02f * (rnd() % 64 == 0 ? 8.0f : 1.0f);
            TU_CHECK(dsi_quantize_row(t, wf, c.w, c.n), "quantize_row %s", dsi_type_name(t));
            for (int64_t i = 0; i < c.n * DSI_DOT_MAX_X; i++) xf[i] = gauss() * (float)(1 + (i / 32) % 5);
            quantize_rows(sets[0].quantize_x, xf, c.n, DSI_DOT_MAX_X, c.x, c.xs);
            run_case(sets, nsets, ti, &c, false, "realistic");
            check_ref_vs_dequant(ti, &c);

            /* integer-exact: random bytes, unit scales, integer activations with amax 127 */
            if (li < 5) {
                int64_t n = c.n;
                if (blck == 256 && n > 256) n = 256; /* keeps every sum below 2^24 */
                struct qcase e = c;
                e.n = n;
                e.wbytes = dsi_row_size(t, n);
                e.w = tu_guarded_alloc(e.wbytes);
                for (size_t i = 0; i < e.wbytes; i++) e.w[i] = (uint8_t)rnd();
                tame(t, e.w, n);
                for (int r = 0; r < DSI_DOT_MAX_X; r++)
                    for (int64_t i = 0; i < n; i++) {
                        float v = (float)((int)(rnd() % 255) - 127);
                        xf[r * n + i] = i % 32 == (r * 7) % 32 ? 127.0f : v;
                    }
                quantize_rows(sets[0].quantize_x, xf, n, DSI_DOT_MAX_X, e.x, e.xs);
                run_case(sets, nsets, ti, &e, true, "exact");
                check_ref_vs_dequant(ti, &e);
                tu_guarded_free(e.w, e.wbytes);
            }
            tu_guarded_free(c.w, c.wbytes);
            free(c.x);
            free(xf);
            free(wf);
        }
    }
}

/* The prompt GEMM (quant/gemm.c): every packable type, 16-row panels and a partial one, token
 * counts around the micro-kernel's group of 8. Against the row reference: integer-exact cases
 * (tamed random bytes, integer activations) must agree bit for bit, realistic ones within the
 * float summation bound; the packer's reference GEMM is checked the same way. */
static void test_gemm(const struct dsi_qdot_set *sets) {
    dsi_gemm_fn best = dsi_kernels_gemm();
    TU_LOG("gemm: %s\n", best ? "avx512vnni tested" : "no SIMD GEMM on this CPU, reference only");
    for (int ti = 0; ti < DSI_QDOT_NTYPES; ti++) {
        enum dsi_type t = dsi_qdot_types[ti];
        if (!dsi_gemm_can_pack(t)) continue;
        int64_t blck = dsi_type_traits(t)->blck, K = blck == 256 ? 256 : 96;
        size_t rsz = dsi_row_size(t, K), rb = dsi_xq_row_bytes(K);
        const int R = 16, T = 13;
        for (int exact = 0; exact < 2; exact++) {
            uint8_t *w = malloc(rsz * R), *x = malloc(rb * T);
            uint8_t *panel = aligned_alloc(64, dsi_gemm_panel_bytes(K));
            float *wf = malloc((size_t)K * sizeof *wf), *xf = malloc((size_t)(K * T) * sizeof *xf);
            for (int r = 0; r < R; r++) {
                if (exact) {
                    for (size_t i = 0; i < rsz; i++) w[(size_t)r * rsz + i] = (uint8_t)rnd();
                    tame(t, w + (size_t)r * rsz, K);
                } else {
                    for (int64_t i = 0; i < K; i++) wf[i] = gauss() * 0.02f;
                    dsi_quantize_row(t, wf, w + (size_t)r * rsz, K);
                }
            }
            for (int64_t i = 0; i < K * T; i++)
                xf[i] = exact ? (float)(i % 32 == 5 ? 127 : (int)(rnd() % 255) - 127) : gauss();
            quantize_rows(sets[0].quantize_x, xf, K, T, x, rb);
            for (int nr = R; nr >= 5; nr -= 11) {
                int off = dsi_gemm_pack(t, w, rsz, nr, K, panel);
                TU_CHECK(off >= 0, "gemm pack %s", dsi_type_name(t));
                for (int64_t nt = 1; nt <= T; nt += 3) {
                    float ref[13 * 16], got[13 * 16], gr[13 * 16];
                    for (int r = 0; r < R; r++)
                        for (int64_t k = 0; k < nt; k++)
                            ref[k * R + r] = 0.0f;
                    for (int r = 0; r < nr; r++)
                        for (int64_t k = 0; k < nt; k++)
                            sets[0].dot[ti](K, w + (size_t)r * rsz, x + (size_t)k * rb, rb, 1, &ref[k * R + r], 1);
                    dsi_gemm_ref(K, panel, off, x, rb, nt, gr, (size_t)R);
                    if (best) best(K, panel, off, x, rb, nt, got, (size_t)R);
                    for (int64_t k = 0; k < nt; k++)
                        for (int r = 0; r < R; r++) {
                            double tol = exact ? 0.0
                                               : (double)(K / 32 + 4) * FLT_EPSILON *
                                                     (r < nr ? magnitude(t, w + (size_t)r * rsz, K, x + (size_t)k * rb) : 0.0);
                            double e = ref[k * R + r];
                            TU_CHECK(fabs(gr[k * R + r] - e) <= tol, "gemm ref %s nr=%d T=%lld (%lld,%d): %.9g vs %.9g",
                                     dsi_type_name(t), nr, (long long)nt, (long long)k, r, gr[k * R + r], e);
                            if (best)
                                TU_CHECK(fabs(got[k * R + r] - e) <= tol, "gemm %s %s nr=%d T=%lld (%lld,%d): %.9g vs %.9g",
                                         exact ? "exact" : "realistic", dsi_type_name(t), nr, (long long)nt,
                                         (long long)k, r, got[k * R + r], e);
                        }
                }
            }
            free(w);
            free(x);
            free(panel);
            free(wf);
            free(xf);
        }
    }
    uint8_t dummy[64];
    TU_CHECK(dsi_gemm_pack(DSI_TYPE_Q3_K, dummy, 0, 1, 256, dummy) < 0, "gemm: q3_K must not pack");
}

/* Repacked Q4_0, Q8_0, Q4_K and Q6_K (quant/repack.c): 32 rows (two panels) of 32 (K-quants: 256),
 * 96 (768), 1536 and 8960 elements, 1..9 tokens. Against the row reference: integer-exact cases bit for bit,
 * realistic ones within the summation bound; every token count gives a token exactly the
 * result it gets alone (batch invariance); the tensor keeps its size and is repacked in
 * place or into another buffer alike; the GEMM panels made from repacked panels equal those
 * made from the rows. */
static void test_x16(const struct dsi_qdot_set *sets) {
    static const struct {
        enum dsi_type t;
        int layout, ti;
    } types[] = {{DSI_TYPE_Q4_0, DSI_LAYOUT_Q4_0_X16, 0},
                 {DSI_TYPE_Q8_0, DSI_LAYOUT_Q8_0_X16, 4},
                 {DSI_TYPE_Q4_K, DSI_LAYOUT_Q4_K_X16, 7},
                 {DSI_TYPE_Q6_K, DSI_LAYOUT_Q6_K_X16, 9}};
    /* row lengths in blocks of 32: 32, 96, 1536, 8960 (Q4_K: 256, 768, 1536, 8960) */
    static const int64_t kb[] = {1, 3, 48, 280}, kbk[] = {8, 24, 48, 280};
    const int R = 32, T = 9;
    for (size_t ty = 0; ty < sizeof types / sizeof types[0]; ty++) {
        enum dsi_type type = types[ty].t;
        int layout = types[ty].layout;
        TU_CHECK(dsi_qdot_types[types[ty].ti] == type, "test table");
        dsi_mm_x16_fn best = dsi_kernels_mm_x16(layout);
        TU_LOG("repacked %s: %s\n", dsi_type_name(type), best ? "avx512vnni tested" : "no kernel on this CPU, reference only");
        for (size_t ki = 0; ki < sizeof kb / sizeof kb[0]; ki++)
            for (int exact = 0; exact < 2; exact++) {
                int64_t K = 32 * (dsi_x16_block_elems(layout) == 256 ? kbk[ki] : kb[ki]);
                size_t rsz = dsi_row_size(type, K), rb = dsi_xq_row_bytes(K);
                uint8_t *w = malloc(rsz * R), *w2 = malloc(rsz * R), *x = malloc(rb * T);
                float *wf = malloc((size_t)K * sizeof *wf), *xf = malloc((size_t)(K * T) * sizeof *xf);
                for (int r = 0; r < R; r++) {
                    if (exact) {
                        for (size_t i = 0; i < rsz; i++) w[(size_t)r * rsz + i] = (uint8_t)rnd();
                        tame(type, w + (size_t)r * rsz, K);
                    } else {
                        for (int64_t i = 0; i < K; i++) wf[i] = gauss() * 0.02f;
                        dsi_quantize_row(type, wf, w + (size_t)r * rsz, K);
                    }
                }
                memcpy(w2, w, rsz * R);
                for (int64_t i = 0; i < K * T; i++)
                    xf[i] = exact ? (float)(i % 32 == 5 ? 127 : (int)(rnd() % 255) - 127) : gauss();
                quantize_rows(sets[0].quantize_x, xf, K, T, x, rb);
                float ref[9 * 32], got[9 * 32], gr[9 * 32], one[32];
                for (int r = 0; r < R; r++)
                    for (int k = 0; k < T; k++)
                        sets[0].dot[types[ty].ti](K, w + (size_t)r * rsz, x + (size_t)k * rb, rb, 1, &ref[k * R + r], 1);
                /* GEMM panels from the rows, before repacking */
                size_t pb = dsi_gemm_panel_bytes(K);
                uint8_t *gp_rows = aligned_alloc(64, pb), *gp_x16 = aligned_alloc(64, pb);
                int off_rows = dsi_gemm_pack(type, w, rsz, 16, K, gp_rows);
                struct dsi_tensor t = dsi_tensor_make(type, K, R, 1, 1, w);
                struct dsi_tensor t2 = dsi_tensor_make(type, K, R, 1, 1, w2);
                uint8_t *other = malloc(rsz * R);
                TU_CHECK(dsi_repack(&t, w) && t.layout == layout && t.data == w, "repack in place");
                TU_CHECK(dsi_repack(&t2, other) && t2.data == other && !memcmp(w, other, rsz * R),
                         "repack into another buffer gives the same bytes");
                TU_CHECK(!dsi_repack(&t, w), "a repacked tensor is not repacked again");
                int off_x16 = dsi_gemm_pack_x16(layout, w, K, gp_x16);
                TU_CHECK(off_rows == off_x16 && !memcmp(gp_rows, gp_x16, pb),
                         "%s K=%lld: GEMM panel from the repacked panel differs", dsi_type_name(type), (long long)K);
                for (int nt = 1; nt <= T; nt++) {
                    for (int p = 0; p < R / 16; p++) {
                        const uint8_t *panel = w + (size_t)p * 16 * rsz;
                        dsi_mm_x16_ref(layout, K, panel, x, rb, nt, gr + p * 16, (size_t)R);
                        if (best) best(K, panel, x, rb, nt, got + p * 16, (size_t)R);
                    }
                    for (int k = 0; k < nt; k++)
                        for (int r = 0; r < R; r++) {
                            double e = ref[k * R + r];
                            double bound = exact ? 0.0
                                                 : (double)(K / 32 + 4) * FLT_EPSILON *
                                                       magnitude(type, w2 + (size_t)r * rsz, K, x + (size_t)k * rb);
                            TU_CHECK(fabs(gr[k * R + r] - e) <= bound, "x16 ref %s K=%lld T=%d (%d,%d): %.9g vs %.9g",
                                     dsi_type_name(type), (long long)K, nt, k, r, gr[k * R + r], e);
                            if (best)
                                TU_CHECK(fabs(got[k * R + r] - e) <= bound, "x16 %s %s K=%lld T=%d (%d,%d): %.9g vs %.9g",
                                         exact ? "exact" : "realistic", dsi_type_name(type), (long long)K, nt, k, r,
                                         got[k * R + r], e);
                        }
                    /* the prompt GEMM on the same panels gives the same bits */
                    dsi_gemm_fn gemm = dsi_kernels_gemm();
                    if (best && gemm)
                        for (int p = 0; p < R / 16; p++) {
                            float gg[9 * 16];
                            int off = dsi_gemm_pack_x16(layout, w + (size_t)p * 16 * rsz, K, gp_x16);
                            gemm(K, gp_x16, off, x, rb, nt, gg, 16);
                            for (int k = 0; k < nt; k++)
                                TU_CHECK(!memcmp(gg + k * 16, got + k * R + p * 16, sizeof(float) * 16),
                                         "x16 %s K=%lld T=%d: differs from the prompt GEMM", dsi_type_name(type),
                                         (long long)K, nt);
                        }
                    if (best)
                        for (int k = 0; k < nt; k++)
                            for (int p = 0; p < R / 16; p++) {
                                best(K, w + (size_t)p * 16 * rsz, x + (size_t)k * rb, rb, 1, one, 16);
                                TU_CHECK(!memcmp(one, got + k * R + p * 16, sizeof(float) * 16),
                                         "x16 %s K=%lld: token %d of %d differs from the token alone",
                                         dsi_type_name(type), (long long)K, k, nt);
                            }
                }
                free(w);
                free(w2);
                free(other);
                free(x);
                free(wf);
                free(xf);
                free(gp_rows);
                free(gp_x16);
            }
    }
    struct dsi_tensor odd = dsi_tensor_make(DSI_TYPE_Q4_0, 64, 24, 1, 1, NULL);
    TU_CHECK(!dsi_repack_possible(&odd), "24 rows cannot be repacked");
    struct dsi_tensor q5k = dsi_tensor_make(DSI_TYPE_Q5_K, 256, 32, 1, 1, NULL);
    TU_CHECK(!dsi_repack_possible(&q5k), "q5_K is not repacked");
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    const char *dis = getenv("DSI_CPU_DISABLE");
    dsi_cpu_init(dis);
    const struct dsi_qdot_set *sets;
    int nsets = dsi_qdot_sets(&sets);
    int usable = 0;
    for (int s = 1; s < nsets; s++) {
        if (dsi_cpu_has_all(sets[s].need)) usable++;
        TU_LOG("variant %s: %s\n", sets[s].name, dsi_cpu_has_all(sets[s].need) ? "tested" : "not on this CPU, skipped");
    }
    TU_LOG("%d SIMD variant(s) tested against the reference\n", usable);
    test_quantize_x(sets, nsets);
    test_dots(sets, nsets);
    test_gemm(sets);
    test_x16(sets);
    return tu_finish("test_qdot");
}
