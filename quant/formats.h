/* Block formats of the quantized types, byte-compatible with ggml (docs/gguf.md section 3).
 * Every struct is packed by construction (only uint8_t/uint16_t members in an order with no
 * padding) and its size is checked against gguf.md's table. Multi-byte fields are
 * little-endian; f16 fields are IEEE binary16 bit patterns. */
#ifndef DSI_QUANT_FORMATS_H
#define DSI_QUANT_FORMATS_H

#include <stdint.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define QK4_NL 32
#define K_SCALE_SIZE 12

/* Q4_0: y = (q - 8) * d, q in 0..15. qs[j] holds element j (low nibble) and j + 16 (high). */
struct block_q4_0 {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
};
_Static_assert(sizeof(struct block_q4_0) == 18, "block_q4_0 is 18 bytes");

/* Q4_1: y = q * d + m. */
struct block_q4_1 {
    uint16_t d, m;
    uint8_t qs[QK4_1 / 2];
};
_Static_assert(sizeof(struct block_q4_1) == 20, "block_q4_1 is 20 bytes");

/* Q5_0: y = (q - 16) * d, q = 4 low bits from qs | 5th bit from qh (bit j: element j). */
struct block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
};
_Static_assert(sizeof(struct block_q5_0) == 22, "block_q5_0 is 22 bytes");

/* Q5_1: y = q * d + m with the 5-bit q of Q5_0. */
struct block_q5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
};
_Static_assert(sizeof(struct block_q5_1) == 24, "block_q5_1 is 24 bytes");

/* Q8_0: y = qs[j] * d. Also the activation format of Q4_0/Q5_0/Q8_0/IQ4_NL dot products. */
struct block_q8_0 {
    uint16_t d;
    int8_t qs[QK8_0];
};
_Static_assert(sizeof(struct block_q8_0) == 34, "block_q8_0 is 34 bytes");

/* Q8_1 (activations for Q4_1/Q5_1): Q8_0 plus s = d * sum(qs). */
struct block_q8_1 {
    uint16_t d, s;
    int8_t qs[QK8_1];
};
_Static_assert(sizeof(struct block_q8_1) == 36, "block_q8_1 is 36 bytes");

/* Q2_K: 16 sub-blocks of 16; scales[i] = scale (low nibble) | min (high nibble) << 4;
 * y = d * sc * q2 - dmin * m. */
struct block_q2_K {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    uint16_t d, dmin;
};
_Static_assert(sizeof(struct block_q2_K) == 84, "block_q2_K is 84 bytes");

/* Q3_K: 2 low bits in qs, the high bit in hmask (set = no -4), 6-bit signed scales (bias 32)
 * packed in scales[12]; y = d * sc * (q - 4 * !hbit). */
struct block_q3_K {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
};
_Static_assert(sizeof(struct block_q3_K) == 110, "block_q3_K is 110 bytes");

/* Q4_K: 8 sub-blocks of 32 with 6-bit scale and min in scales[12];
 * y = d * sc * q4 - dmin * m. */
struct block_q4_K {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
};
_Static_assert(sizeof(struct block_q4_K) == 144, "block_q4_K is 144 bytes");

/* Q5_K: Q4_K plus the 5th bit of every element in qh. */
struct block_q5_K {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
_Static_assert(sizeof(struct block_q5_K) == 176, "block_q5_K is 176 bytes");

/* Q6_K: 4 low bits in ql, 2 high bits in qh, signed 8-bit scales per 16;
 * y = d * sc * (q6 - 32). */
struct block_q6_K {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
};
_Static_assert(sizeof(struct block_q6_K) == 210, "block_q6_K is 210 bytes");

/* Q8_K (activations for the K-quants and IQ4_XS): f32 scale, 256 int8, sums of each 16. */
struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};
_Static_assert(sizeof(struct block_q8_K) == 292, "block_q8_K is 292 bytes");

/* IQ4_NL: y = d * kvalues_iq4nl[code]. */
struct block_iq4_nl {
    uint16_t d;
    uint8_t qs[QK4_NL / 2];
};
_Static_assert(sizeof(struct block_iq4_nl) == 18, "block_iq4_nl is 18 bytes");

/* IQ4_XS: 8 sub-blocks of 32, 6-bit scales (bias 32) split in scales_l / scales_h;
 * y = d * (ls - 32) * kvalues_iq4nl[code]. */
struct block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
};
_Static_assert(sizeof(struct block_iq4_xs) == 136, "block_iq4_xs is 136 bytes");

/* The 16 non-linear levels of IQ4_NL / IQ4_XS. */
extern const int8_t dsi_kvalues_iq4nl[16];

#endif
