/* Reference quantizers: f32 rows -> ggml-compatible blocks (docs/gguf.md section 3).
 *
 * The legacy 32-element formats use the closed forms of gguf.md. The K-quants and IQ4 fit
 * their levels per sub-block by weighted least squares: for a grid of candidate scales,
 * round every element to its nearest level, solve for the best scale (and min) given those
 * levels, keep the candidate with the smallest weighted error, then nudge single levels while
 * that lowers the error. The sub-block scales are then quantized themselves (6, 8 or 4 bits)
 * and the levels recomputed against the scales actually stored. Weights follow llama.cpp's
 * choices for quantization without an importance matrix (|x| plus the block's RMS, or x^2). */
#include <math.h>
#include <string.h>

#include "core/dtype.h"
#include "quant/formats.h"
#include "quant/quantize.h"

#define EPS_GROUP 1e-15f

/* Round to nearest, ties to even (the float add trick: exact for |v| < 2^22). */
static inline int nearest(float v) { return (int)nearbyintf(v); }

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---- legacy 32-element formats --------------------------------------------------------- */

void dsi_quantize_q8_0(const float *x, void *out, int64_t n) {
    struct block_q8_0 *b = out;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = 0;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        b[i].d = dsi_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) b[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

/* The element of largest magnitude, with its sign. */
static float signed_max(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    return max;
}

void dsi_quantize_q4_0(const float *x, void *out, int64_t n) {
    struct block_q4_0 *b = out;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        float d = signed_max(x, QK4_0) / -8.0f, id = d ? 1.0f / d : 0.0f;
        b[i].d = dsi_f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            int lo = (int)(int8_t)(x[j] * id + 8.5f), hi = (int)(int8_t)(x[j + 16] * id + 8.5f);
            b[i].qs[j] = (uint8_t)(clampi(lo, 0, 15) | clampi(hi, 0, 15) << 4);
        }
    }
}

void dsi_quantize_q4_1(const float *x, void *out, int64_t n) {
    struct block_q4_1 *b = out;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < QK4_1; j++) mn = fminf(mn, x[j]), mx = fmaxf(mx, x[j]);
        float d = (mx - mn) / 15.0f, id = d ? 1.0f / d : 0.0f;
        b[i].d = dsi_f32_to_f16(d);
        b[i].m = dsi_f32_to_f16(mn);
        for (int j = 0; j < 16; j++) {
            int lo = (int)((x[j] - mn) * id + 0.5f), hi = (int)((x[j + 16] - mn) * id + 0.5f);
            b[i].qs[j] = (uint8_t)(clampi(lo, 0, 15) | clampi(hi, 0, 15) << 4);
        }
    }
}

static void put_5bit(uint8_t *qs, uint8_t qh_bytes[4], const int *q) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xf) | (q[j + 16] & 0xf) << 4);
        qh |= (uint32_t)((q[j] >> 4) & 1) << j;
        qh |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    memcpy(qh_bytes, &qh, 4);
}

void dsi_quantize_q5_0(const float *x, void *out, int64_t n) {
    struct block_q5_0 *b = out;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        float d = signed_max(x, QK5_0) / -16.0f, id = d ? 1.0f / d : 0.0f;
        b[i].d = dsi_f32_to_f16(d);
        int q[32];
        for (int j = 0; j < 32; j++) q[j] = clampi((int)(int8_t)(x[j] * id + 16.5f), 0, 31);
        put_5bit(b[i].qs, b[i].qh, q);
    }
}

void dsi_quantize_q5_1(const float *x, void *out, int64_t n) {
    struct block_q5_1 *b = out;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float mn = x[0], mx = x[0];
        for (int j = 1; j < QK5_1; j++) mn = fminf(mn, x[j]), mx = fmaxf(mx, x[j]);
        float d = (mx - mn) / 31.0f, id = d ? 1.0f / d : 0.0f;
        b[i].d = dsi_f32_to_f16(d);
        b[i].m = dsi_f32_to_f16(mn);
        int q[32];
        for (int j = 0; j < 32; j++) q[j] = clampi((int)((x[j] - mn) * id + 0.5f), 0, 31);
        put_5bit(b[i].qs, b[i].qh, q);
    }
}

/* ---- level fitting --------------------------------------------------------------------- */

/* Symmetric levels L in [-nmax, nmax-1], y = scale * L, minimizing sum w (x - y)^2.
 * Returns the scale; L receives levels offset by +nmax. */
static float fit_symmetric(int n, int nmax, const float *x, const float *w, int8_t *L) {
    float max = signed_max(x, n);
    if (fabsf(max) < EPS_GROUP) {
        memset(L, nmax, (size_t)n);
        return 0;
    }
    int8_t cand[QK_K];
    float best = -1, scale = 0, sumlx = 0, suml2 = 0;
    for (int k = -9; k <= 9; k++) {
        for (int side = 0; side < 2; side++) {
            float iscale = side ? (nmax - 1 + 0.1f * k) / max : -(nmax + 0.1f * k) / max;
            float slx = 0, sl2 = 0;
            for (int i = 0; i < n; i++) {
                int l = clampi(nearest(iscale * x[i]), -nmax, nmax - 1);
                cand[i] = (int8_t)l;
                slx += w[i] * x[i] * (float)l;
                sl2 += w[i] * (float)(l * l);
            }
            /* the error with the optimal scale is sum w x^2 - slx^2 / sl2: maximize slx^2/sl2 */
            if (sl2 > 0 && (best < 0 || slx * slx > best * sl2)) {
                best = slx * slx / sl2;
                scale = slx / sl2;
                sumlx = slx, suml2 = sl2;
                for (int i = 0; i < n; i++) L[i] = (int8_t)(cand[i] + nmax);
            }
        }
    }
    /* move single levels by one step while the fit improves */
    for (int iter = 0; iter < n * (2 * nmax - 1) && scale != 0; iter++) {
        int bj = -1;
        float bg = 0;
        for (int j = 0; j < n; j++) {
            int l = L[j] - nmax;
            float g = w[j] * (x[j] - scale * (float)l);
            if ((g * scale > 0 && l < nmax - 1) || (g * scale < 0 && l > -nmax))
                if (fabsf(g) > fabsf(bg)) bg = g, bj = j;
        }
        if (bj < 0) break;
        int l = L[bj] - nmax, step = bg * scale > 0 ? 1 : -1;
        float nslx = sumlx + w[bj] * x[bj] * (float)step;
        float nsl2 = suml2 + w[bj] * (float)(2 * l * step + 1);
        if (nsl2 > 0 && nslx * nslx > best * nsl2) {
            sumlx = nslx, suml2 = nsl2;
            best = nslx * nslx / nsl2;
            scale = nslx / nsl2;
            L[bj] = (int8_t)(l + step + nmax);
        } else {
            break;
        }
    }
    return scale;
}

/* Symmetric levels again, by a second method: start from the levels of the largest element's
 * scale, then repeatedly move each level to the one that is best given all the others (up to
 * 5 passes). Returns the weighted fit quality slx^2/sl2 through *quality. */
static float fit_symmetric_passes(int n, int nmax, const float *x, const float *w, int8_t *L,
                                  float *quality) {
    float max = signed_max(x, n);
    *quality = 0;
    if (fabsf(max) < EPS_GROUP) {
        memset(L, nmax, (size_t)n);
        return 0;
    }
    float iscale = -(float)nmax / max, slx = 0, sl2 = 0;
    int l8[QK_K];
    for (int i = 0; i < n; i++) {
        l8[i] = clampi(nearest(iscale * x[i]), -nmax, nmax - 1);
        slx += w[i] * x[i] * (float)l8[i];
        sl2 += w[i] * (float)l8[i] * (float)l8[i];
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float rx = slx - w[i] * x[i] * (float)l8[i];
            if (rx <= 0) continue;
            float r2 = sl2 - w[i] * (float)l8[i] * (float)l8[i];
            int nl = clampi(nearest(x[i] * r2 / rx), -nmax, nmax - 1);
            if (nl == l8[i]) continue;
            float nx = rx + w[i] * x[i] * (float)nl, n2 = r2 + w[i] * (float)nl * (float)nl;
            if (n2 > 0 && nx * nx * sl2 > slx * slx * n2) {
                l8[i] = nl, slx = nx, sl2 = n2;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(l8[i] + nmax);
    if (sl2 <= 0) return 0;
    *quality = slx * slx / sl2;
    return slx / sl2;
}

/* Levels L in [0, nmax] with y = scale * L - mn (mn >= 0), minimizing sum w |x - y|^p
 * (p = 1 with use_mad, else 2). Candidate inverse scales (nmax + rmin + k*rdelta)/range are
 * taken relative to the best offset found so far (llama.cpp's search does the same, and it
 * measurably lowers the error compared with a fixed offset). */
static float fit_with_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                          float *mn_out, float rmin, float rdelta, int nstep, bool use_mad) {
    float lo = x[0], hi = x[0], sw = 0, sx = 0;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
        sw += w[i];
        sx += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi - lo < 1e-10f) {
        memset(L, 0, (size_t)n);
        *mn_out = -lo;
        return 0;
    }
    uint8_t cand[QK_K];
    float scale = 1 / ((float)nmax / (hi - lo)), mn = lo, best;
    {
        float iscale = (float)nmax / (hi - lo);
        best = 0;
        for (int i = 0; i < n; i++) {
            L[i] = (uint8_t)clampi(nearest(iscale * (x[i] - lo)), 0, nmax);
            float diff = scale * (float)L[i] + lo - x[i];
            best += w[i] * (use_mad ? fabsf(diff) : diff * diff);
        }
    }
    for (int k = 0; k <= nstep; k++) {
        float iscale = (rmin + rdelta * (float)k + (float)nmax) / (hi - lo);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nearest(iscale * (x[i] - lo)), 0, nmax);
            cand[i] = (uint8_t)l;
            sl += w[i] * (float)l;
            sl2 += w[i] * (float)l * (float)l;
            sxl += w[i] * (float)l * x[i];
        }
        float D = sw * sl2 - sl * sl;
        if (D <= 0) continue;
        float s = (sw * sxl - sx * sl) / D, m = (sl2 * sx - sl * sxl) / D;
        if (m > 0) { /* the offset may only subtract */
            m = 0;
            s = sxl / sl2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = s * (float)cand[i] + m - x[i];
            err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
        }
        if (err < best) {
            best = err;
            scale = s;
            mn = lo = m;
            memcpy(L, cand, (size_t)n);
        }
    }
    *mn_out = -mn;
    return scale;
}

/* ---- K-quants -------------------------------------------------------------------------- */

/* Pack 8 six-bit scales and mins into the 12 bytes of Q4_K/Q5_K (inverse of scale_min). */
static void pack_scale_min(uint8_t s[12], const uint8_t *ls, const uint8_t *lm) {
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 0xf) | ((lm[j] & 0xf) << 4));
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Q4_K (nmax 15) and Q5_K (nmax 31): per 32-element sub-block a scale and a min. */
static void quantize_qk_min(const float *x, int nmax, float *d_out, float *dmin_out, uint8_t sc[12],
                            uint8_t *L) {
    float scales[8], mins[8], w[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = fit_with_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], -1.0f, 0.1f, 20, false);
        max_scale = fmaxf(max_scale, scales[j]);
        max_min = fmaxf(max_min, mins[j]);
    }
    float inv_s = max_scale > 0 ? 63.0f / max_scale : 0, inv_m = max_min > 0 ? 63.0f / max_min : 0;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)clampi(nearest(inv_s * scales[j]), 0, 63);
        lm[j] = (uint8_t)clampi(nearest(inv_m * mins[j]), 0, 63);
    }
    pack_scale_min(sc, ls, lm);
    float d = dsi_f16_to_f32(dsi_f32_to_f16(max_scale / 63.0f));
    float dmin = dsi_f16_to_f32(dsi_f32_to_f16(max_min / 63.0f));
    *d_out = max_scale / 63.0f;
    *dmin_out = max_min / 63.0f;
    for (int j = 0; j < 8; j++) {
        float dj = d * ls[j], mj = dmin * lm[j];
        if (dj == 0) {
            memset(L + 32 * j, 0, 32);
            continue;
        }
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)clampi(nearest((x[32 * j + l] + mj) / dj), 0, nmax);
    }
}

void dsi_quantize_q4_K(const float *x, void *out, int64_t n) {
    struct block_q4_K *b = out;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float d, dmin;
        quantize_qk_min(x, 15, &d, &dmin, b[i].scales, L);
        b[i].d = dsi_f32_to_f16(d);
        b[i].dmin = dsi_f32_to_f16(dmin);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) b[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void dsi_quantize_q5_K(const float *x, void *out, int64_t n) {
    struct block_q5_K *b = out;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float d, dmin;
        quantize_qk_min(x, 31, &d, &dmin, b[i].scales, L);
        b[i].d = dsi_f32_to_f16(d);
        b[i].dmin = dsi_f32_to_f16(dmin);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int a = L[64 * c + l], h = L[64 * c + 32 + l];
                b[i].qs[32 * c + l] = (uint8_t)((a & 0xf) | ((h & 0xf) << 4));
                b[i].qh[l] |= (uint8_t)(((a >> 4) & 1) << (2 * c));
                b[i].qh[l] |= (uint8_t)(((h >> 4) & 1) << (2 * c + 1));
            }
    }
}

void dsi_quantize_q6_K(const float *x, void *out, int64_t n) {
    struct block_q6_K *b = out;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float scales[16], w[16];
        int8_t L[QK_K];
        float max_scale = 0, max_abs = 0;
        for (int ib = 0; ib < 16; ib++) {
            for (int l = 0; l < 16; l++) w[l] = x[16 * ib + l] * x[16 * ib + l];
            scales[ib] = fit_symmetric(16, 32, x + 16 * ib, w, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs) max_abs = fabsf(scales[ib]), max_scale = scales[ib];
        }
        if (max_abs < EPS_GROUP) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -128.0f / max_scale;
        b[i].d = dsi_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < 16; ib++) b[i].scales[ib] = (int8_t)clampi(nearest(iscale * scales[ib]), -128, 127);
        float d = dsi_f16_to_f32(b[i].d);
        for (int ib = 0; ib < 16; ib++) {
            float dj = d * b[i].scales[ib];
            for (int l = 0; l < 16; l++) {
                int q = dj ? clampi(nearest(x[16 * ib + l] / dj), -32, 31) : 0;
                L[16 * ib + l] = (int8_t)(q + 32);
            }
        }
        for (int half = 0; half < 2; half++) {
            uint8_t *ql = b[i].ql + 64 * half, *qh = b[i].qh + 32 * half;
            const int8_t *Lh = L + 128 * half;
            for (int l = 0; l < 32; l++) {
                int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
                ql[l] = (uint8_t)((q1 & 0xf) | ((q3 & 0xf) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xf) | ((q4 & 0xf) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

void dsi_quantize_q2_K(const float *x, void *out, int64_t n) {
    struct block_q2_K *b = out;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K];
        float scales[16], mins[16], w[16];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            scales[j] = fit_with_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            max_scale = fmaxf(max_scale, scales[j]);
            max_min = fmaxf(max_min, mins[j]);
        }
        float inv_s = max_scale > 0 ? 15.0f / max_scale : 0, inv_m = max_min > 0 ? 15.0f / max_min : 0;
        for (int j = 0; j < 16; j++)
            b[i].scales[j] = (uint8_t)(clampi(nearest(inv_s * scales[j]), 0, 15) |
                                       clampi(nearest(inv_m * mins[j]), 0, 15) << 4);
        b[i].d = dsi_f32_to_f16(max_scale / 15.0f);
        b[i].dmin = dsi_f32_to_f16(max_min / 15.0f);
        float d = dsi_f16_to_f32(b[i].d), dmin = dsi_f16_to_f32(b[i].dmin);
        for (int j = 0; j < 16; j++) {
            float dj = d * (b[i].scales[j] & 0xf), mj = dmin * (b[i].scales[j] >> 4);
            if (dj == 0) continue; /* keep the fitted levels */
            for (int l = 0; l < 16; l++) L[16 * j + l] = (uint8_t)clampi(nearest((x[16 * j + l] + mj) / dj), 0, 3);
        }
        for (int half = 0; half < 2; half++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *Lh = L + 128 * half;
                b[i].qs[32 * half + l] = (uint8_t)(Lh[l] | Lh[l + 32] << 2 | Lh[l + 64] << 4 | Lh[l + 96] << 6);
            }
    }
}

void dsi_quantize_q3_K(const float *x, void *out, int64_t n) {
    struct block_q3_K *b = out;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        int8_t L[QK_K];
        float scales[16], w[16], max_scale = 0, max_abs = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = x[16 * j + l] * x[16 * j + l];
            float qual;
            scales[j] = fit_symmetric_passes(16, 4, x + 16 * j, w, L + 16 * j, &qual);
            if (fabsf(scales[j]) > max_abs) max_abs = fabsf(scales[j]), max_scale = scales[j];
        }
        memset(&b[i], 0, sizeof b[i]);
        if (max_abs < EPS_GROUP) {
            /* all-zero block: scales of bias 32 mean 0 */
            for (int j = 0; j < 16; j++) {
                int l = 32;
                if (j < 8) b[i].scales[j] = (uint8_t)(l & 0xf);
                else b[i].scales[j - 8] |= (uint8_t)((l & 0xf) << 4);
                b[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            continue;
        }
        float iscale = -32.0f / max_scale;
        int ls[16];
        for (int j = 0; j < 16; j++) {
            ls[j] = clampi(nearest(iscale * scales[j]), -32, 31);
            int l = ls[j] + 32;
            if (j < 8) b[i].scales[j] = (uint8_t)(l & 0xf);
            else b[i].scales[j - 8] |= (uint8_t)((l & 0xf) << 4);
            b[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        b[i].d = dsi_f32_to_f16(1 / iscale);
        float d = dsi_f16_to_f32(b[i].d);
        for (int j = 0; j < 16; j++) {
            float dj = d * (float)ls[j];
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (int8_t)(dj ? clampi(nearest(x[16 * j + l] / dj), -4, 3) + 4 : 4);
        }
        for (int half = 0; half < 2; half++)
            for (int l = 0; l < 32; l++) {
                const int8_t *Lh = L + 128 * half;
                uint8_t q = 0;
                for (int s = 0; s < 4; s++) q |= (uint8_t)((Lh[l + 32 * s] & 3) << (2 * s));
                b[i].qs[32 * half + l] = q;
                for (int s = 0; s < 4; s++)
                    if (Lh[l + 32 * s] > 3) b[i].hmask[l] |= (uint8_t)(1 << (4 * half + s));
            }
    }
}

/* ---- IQ4 ------------------------------------------------------------------------------- */

static int iq4_nearest(float v) {
    /* the table is sorted: binary search for the closest level */
    const int8_t *t = dsi_kvalues_iq4nl;
    if (v <= t[0]) return 0;
    if (v >= t[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (v < t[mid]) hi = mid;
        else lo = mid;
    }
    return v - t[lo] < t[hi] - v ? lo : hi;
}

/* Best d for y = d * T[L] over a block of n (weights w): returns d, codes in L. */
static float fit_iq4(int n, const float *x, const float *w, uint8_t *L) {
    float max = signed_max(x, n);
    if (fabsf(max) < EPS_GROUP) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    uint8_t cand[32];
    float d = max / dsi_kvalues_iq4nl[0], best = -1;
    for (int k = -7; k <= 7; k++) {
        float id = ((float)dsi_kvalues_iq4nl[0] + 0.1f * (float)k) / max;
        float sx = 0, s2 = 0;
        for (int i = 0; i < n; i++) {
            int c = iq4_nearest(id * x[i]);
            cand[i] = (uint8_t)c;
            float q = dsi_kvalues_iq4nl[c];
            sx += w[i] * q * x[i];
            s2 += w[i] * q * q;
        }
        if (s2 > 0 && (best < 0 || sx * sx > best * s2)) {
            best = sx * sx / s2;
            d = sx / s2;
            memcpy(L, cand, (size_t)n);
        }
    }
    return d;
}

void dsi_quantize_iq4_nl(const float *x, void *out, int64_t n) {
    struct block_iq4_nl *b = out;
    for (int64_t i = 0; i < n / QK4_NL; i++, x += QK4_NL) {
        float w[32], sum_x2 = 0;
        for (int j = 0; j < 32; j++) sum_x2 += x[j] * x[j];
        float sigma2 = sum_x2 / 16; /* llama.cpp's weighting without an importance matrix */
        for (int j = 0; j < 32; j++) w[j] = sqrtf(sigma2 + x[j] * x[j]);
        uint8_t L[32];
        float d = fit_iq4(32, x, w, L);
        b[i].d = dsi_f32_to_f16(d);
        float ds = dsi_f16_to_f32(b[i].d);
        if (ds != 0)
            for (int j = 0; j < 32; j++) L[j] = (uint8_t)iq4_nearest(x[j] / ds);
        for (int j = 0; j < 16; j++) b[i].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
    }
}

void dsi_quantize_iq4_xs(const float *x, void *out, int64_t n) {
    struct block_iq4_xs *b = out;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float sum_x2 = 0, scales[8], w[32], max_scale = 0, max_abs = 0;
        for (int j = 0; j < QK_K; j++) sum_x2 += x[j] * x[j];
        float sigma2 = 2 * sum_x2 / QK_K;
        uint8_t L[QK_K];
        for (int ib = 0; ib < 8; ib++) {
            for (int j = 0; j < 32; j++) w[j] = sqrtf(sigma2 + x[32 * ib + j] * x[32 * ib + j]);
            scales[ib] = fit_iq4(32, x + 32 * ib, w, L + 32 * ib);
            if (fabsf(scales[ib]) > max_abs) max_abs = fabsf(scales[ib]), max_scale = scales[ib];
        }
        memset(&b[i], 0, sizeof b[i]);
        if (max_abs < EPS_GROUP) {
            for (int ib = 0; ib < 8; ib++) { /* level 32 = scale 0 */
                b[i].scales_l[ib / 2] |= (uint8_t)(0 << (4 * (ib % 2)));
                b[i].scales_h |= (uint16_t)(2 << (2 * ib));
            }
            continue;
        }
        float d = -max_scale / 32.0f, id = 1 / d;
        b[i].d = dsi_f32_to_f16(d);
        float ds = dsi_f16_to_f32(b[i].d);
        for (int ib = 0; ib < 8; ib++) {
            int ls = clampi(nearest(id * scales[ib]), -32, 31);
            float dl = ds * (float)ls;
            if (dl != 0)
                for (int j = 0; j < 32; j++) L[32 * ib + j] = (uint8_t)iq4_nearest(x[32 * ib + j] / dl);
            ls += 32;
            b[i].scales_l[ib / 2] |= (uint8_t)((ls & 0xf) << (4 * (ib % 2)));
            b[i].scales_h |= (uint16_t)((ls >> 4) << (2 * ib));
            for (int j = 0; j < 16; j++) b[i].qs[16 * ib + j] = (uint8_t)(L[32 * ib + j] | L[32 * ib + j + 16] << 4);
        }
    }
}

/* ---- dispatch by type ------------------------------------------------------------------ */

bool dsi_quantize_row(enum dsi_type t, const float *x, void *out, int64_t n) {
    switch (t) {
    case DSI_TYPE_F32: memcpy(out, x, (size_t)n * 4); return true;
    case DSI_TYPE_F16:
    case DSI_TYPE_BF16: {
        uint16_t *o = out;
        for (int64_t i = 0; i < n; i++) o[i] = t == DSI_TYPE_F16 ? dsi_f32_to_f16(x[i]) : dsi_f32_to_bf16(x[i]);
        return true;
    }
    case DSI_TYPE_Q8_0: dsi_quantize_q8_0(x, out, n); return true;
    case DSI_TYPE_Q4_0: dsi_quantize_q4_0(x, out, n); return true;
    case DSI_TYPE_Q4_1: dsi_quantize_q4_1(x, out, n); return true;
    case DSI_TYPE_Q5_0: dsi_quantize_q5_0(x, out, n); return true;
    case DSI_TYPE_Q5_1: dsi_quantize_q5_1(x, out, n); return true;
    case DSI_TYPE_Q2_K: dsi_quantize_q2_K(x, out, n); return true;
    case DSI_TYPE_Q3_K: dsi_quantize_q3_K(x, out, n); return true;
    case DSI_TYPE_Q4_K: dsi_quantize_q4_K(x, out, n); return true;
    case DSI_TYPE_Q5_K: dsi_quantize_q5_K(x, out, n); return true;
    case DSI_TYPE_Q6_K: dsi_quantize_q6_K(x, out, n); return true;
    case DSI_TYPE_IQ4_NL: dsi_quantize_iq4_nl(x, out, n); return true;
    case DSI_TYPE_IQ4_XS: dsi_quantize_iq4_xs(x, out, n); return true;
    default: return false;
    }
}
