/* Scalar reference dequantization of every block format, written from the decode formulas of
 * docs/gguf.md section 3: the oracle for the SIMD paths and the fallback on any CPU. Each
 * function converts n elements (a multiple of the block size) starting at a block boundary. */
#include <string.h>

#include "core/dtype.h"
#include "quant/formats.h"
#include "quant/kernels.h"

const int8_t dsi_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};

static inline float h2f(uint16_t h) { return dsi_f16_to_f32(h); }

void dsi_to_f32_q4_0_ref(const void *w, float *y, int64_t n) {
    const struct block_q4_0 *b = w;
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        float d = h2f(b[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[i].qs[j] & 0x0f) - 8) * d;
            y[j + 16] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void dsi_to_f32_q4_1_ref(const void *w, float *y, int64_t n) {
    const struct block_q4_1 *b = w;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        float d = h2f(b[i].d), m = h2f(b[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(b[i].qs[j] & 0x0f) * d + m;
            y[j + 16] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

void dsi_to_f32_q5_0_ref(const void *w, float *y, int64_t n) {
    const struct block_q5_0 *b = w;
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        float d = h2f(b[i].d);
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            int lo = (b[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int hi = (b[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (float)(lo - 16) * d;
            y[j + 16] = (float)(hi - 16) * d;
        }
    }
}

void dsi_to_f32_q5_1_ref(const void *w, float *y, int64_t n) {
    const struct block_q5_1 *b = w;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        float d = h2f(b[i].d), m = h2f(b[i].m);
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            int lo = (b[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int hi = (b[i].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (float)lo * d + m;
            y[j + 16] = (float)hi * d + m;
        }
    }
}

void dsi_to_f32_q8_0_ref(const void *w, float *y, int64_t n) {
    const struct block_q8_0 *b = w;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        float d = h2f(b[i].d);
        for (int j = 0; j < QK8_0; j++) y[j] = (float)b[i].qs[j] * d;
    }
}

void dsi_to_f32_q2_K_ref(const void *w, float *y, int64_t n) {
    const struct block_q2_K *b = w;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        const uint8_t *q = b[i].qs;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32)
            for (int shift = 0; shift < 8; shift += 2)
                for (int part = 0; part < 2; part++) {
                    uint8_t sc = b[i].scales[is++];
                    float dl = d * (float)(sc & 0xf), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * part] >> shift) & 3) - ml;
                }
    }
}

/* The 16 signed 6-bit scales of a Q3_K block. */
void dsi_q3k_scales(const uint8_t *s, int8_t sc[16]) {
    for (int i = 0; i < 16; i++) {
        int low4 = i < 8 ? (s[i] & 0xf) : (s[i - 8] >> 4);
        int high2 = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        sc[i] = (int8_t)((low4 | (high2 << 4)) - 32);
    }
}

void dsi_to_f32_q3_K_ref(const void *w, float *y, int64_t n) {
    const struct block_q3_K *b = w;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = h2f(b[i].d);
        int8_t sc[16];
        dsi_q3k_scales(b[i].scales, sc);
        const uint8_t *q = b[i].qs;
        int is = 0;
        uint8_t m = 1;
        for (int half = 0; half < 2; half++, q += 32)
            for (int shift = 0; shift < 8; shift += 2, m <<= 1)
                for (int part = 0; part < 2; part++) {
                    float dl = d * (float)sc[is++];
                    for (int l = 0; l < 16; l++) {
                        int v = (q[l + 16 * part] >> shift) & 3;
                        int hb = b[i].hmask[l + 16 * part] & m;
                        *y++ = dl * (float)(v - (hb ? 0 : 4));
                    }
                }
    }
}

/* Scale and min of sub-block j of a Q4_K / Q5_K block. */
void dsi_q4k_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4));
        *mn = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

void dsi_to_f32_q4_K_ref(const void *w, float *y, int64_t n) {
    const struct block_q4_K *b = w;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int c = 0; c < 4; c++) {
            uint8_t s1, m1, s2, m2;
            dsi_q4k_scale_min(2 * c, b[i].scales, &s1, &m1);
            dsi_q4k_scale_min(2 * c + 1, b[i].scales, &s2, &m2);
            const uint8_t *q = b[i].qs + 32 * c;
            for (int l = 0; l < 32; l++) *y++ = d * (float)s1 * (float)(q[l] & 0xf) - dmin * (float)m1;
            for (int l = 0; l < 32; l++) *y++ = d * (float)s2 * (float)(q[l] >> 4) - dmin * (float)m2;
        }
    }
}

void dsi_to_f32_q5_K_ref(const void *w, float *y, int64_t n) {
    const struct block_q5_K *b = w;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int c = 0; c < 4; c++) {
            uint8_t s1, m1, s2, m2;
            dsi_q4k_scale_min(2 * c, b[i].scales, &s1, &m1);
            dsi_q4k_scale_min(2 * c + 1, b[i].scales, &s2, &m2);
            const uint8_t *q = b[i].qs + 32 * c;
            for (int l = 0; l < 32; l++) {
                int v = (q[l] & 0xf) + (((b[i].qh[l] >> (2 * c)) & 1) << 4);
                *y++ = d * (float)s1 * (float)v - dmin * (float)m1;
            }
            for (int l = 0; l < 32; l++) {
                int v = (q[l] >> 4) + (((b[i].qh[l] >> (2 * c + 1)) & 1) << 4);
                *y++ = d * (float)s2 * (float)v - dmin * (float)m2;
            }
        }
    }
}

void dsi_to_f32_q6_K_ref(const void *w, float *y, int64_t n) {
    const struct block_q6_K *b = w;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = h2f(b[i].d);
        for (int half = 0; half < 2; half++) {
            const uint8_t *L = b[i].ql + 64 * half, *H = b[i].qh + 32 * half;
            const int8_t *S = b[i].scales + 8 * half;
            float *o = y + 128 * half;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((L[l] & 0xf) | (((H[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((L[l + 32] & 0xf) | (((H[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)) - 32;
                o[l] = d * (float)S[is + 0] * (float)q1;
                o[l + 32] = d * (float)S[is + 2] * (float)q2;
                o[l + 64] = d * (float)S[is + 4] * (float)q3;
                o[l + 96] = d * (float)S[is + 6] * (float)q4;
            }
        }
        y += QK_K;
    }
}

void dsi_to_f32_iq4_nl_ref(const void *w, float *y, int64_t n) {
    const struct block_iq4_nl *b = w;
    for (int64_t i = 0; i < n / QK4_NL; i++, y += QK4_NL) {
        float d = h2f(b[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)dsi_kvalues_iq4nl[b[i].qs[j] & 0xf];
            y[j + 16] = d * (float)dsi_kvalues_iq4nl[b[i].qs[j] >> 4];
        }
    }
}

void dsi_to_f32_iq4_xs_ref(const void *w, float *y, int64_t n) {
    const struct block_iq4_xs *b = w;
    for (int64_t i = 0; i < n / QK_K; i++) {
        float d = h2f(b[i].d);
        for (int ib = 0; ib < 8; ib++) {
            int ls = ((b[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) | (((b[i].scales_h >> (2 * ib)) & 3) << 4);
            float dl = d * (float)(ls - 32);
            const uint8_t *q = b[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[32 * ib + j] = dl * (float)dsi_kvalues_iq4nl[q[j] & 0xf];
                y[32 * ib + j + 16] = dl * (float)dsi_kvalues_iq4nl[q[j] >> 4];
            }
        }
        y += QK_K;
    }
}
