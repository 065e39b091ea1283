// Shared by the matrix shaders: the weight formats as uploaded (vulkan/weights.c), read from
// a uint array w[], and dequantization of 4 consecutive elements of a 32-element block.
// WTYPE: 0 f32, 1 f16 (pairs packed in uints), 2 Q4_0, 3 Q8_0, 4 Q4_K, 5 Q5_K, 6 Q6_K.
// Q4_0 / Q8_0: the blocks' quants first (4 / 8 words per block of 32; Q4_0 element j < 16 in
// the low nibble of byte j, j + 16 in its high nibble) and the blocks' f16 scales, two per
// word, from word scale_word. K-quants: ggml's blocks of 256 as they are (Q4_K 36 words,
// Q5_K 44), Q6_K padded from 210 to 212 bytes (53 words); block b of 32 elements is
// sub-block b % 8 of super-block b / 8.

float half_at(uint w, uint i) { // the i-th f16 (0 or 1) of a packed word
    return unpackHalf2x16(w)[i];
}

vec4 nib_lo(uint u) { return vec4(u & 15u, (u >> 8) & 15u, (u >> 16) & 15u, (u >> 24) & 15u); }
vec4 nib_hi(uint u) { return vec4((u >> 4) & 15u, (u >> 12) & 15u, (u >> 20) & 15u, u >> 28); }
uint byte_of(uint u, uint i) { return (u >> (8u * i)) & 255u; }

#if WTYPE == 4 || WTYPE == 5
// scale and min of sub-block j of a Q4_K/Q5_K super-block whose scales start at word s
vec2 kscale(uint s, uint j) {
    uint a = j < 4u ? j : j + 4u, bi = j + 4u; // bytes
    uint sa = byte_of(w[s + a / 4u], a & 3u), sb = byte_of(w[s + bi / 4u], bi & 3u);
    if (j < 4u) return vec2(sa & 63u, sb & 63u);
    uint lo = byte_of(w[s + (j - 4u) / 4u], (j - 4u) & 3u), hi = byte_of(w[s + j / 4u], j & 3u);
    return vec2((sb & 15u) | ((lo >> 6) << 4), (sb >> 4) | ((hi >> 6) << 4));
}
#endif

// elements e0 .. e0 + 3 (e0 % 4 == 0) of 32-element block b
vec4 deq4(uint b, uint e0) {
#if WTYPE == 0
    uint i = b * 32u + e0;
    return vec4(uintBitsToFloat(w[i]), uintBitsToFloat(w[i + 1u]), uintBitsToFloat(w[i + 2u]),
                uintBitsToFloat(w[i + 3u]));
#elif WTYPE == 1
    uint i = b * 16u + e0 / 2u;
    return vec4(unpackHalf2x16(w[i]), unpackHalf2x16(w[i + 1u]));
#elif WTYPE == 2
    float d = half_at(w[pc.scale_word + b / 2u], b & 1u);
    uint u = w[b * 4u + (e0 & 15u) / 4u];
    return d * ((e0 < 16u ? nib_lo(u) : nib_hi(u)) - 8.0);
#elif WTYPE == 3
    float d = half_at(w[pc.scale_word + b / 2u], b & 1u);
    uint u = w[b * 8u + e0 / 4u];
    return d * vec4(int(u << 24) >> 24, int(u << 16) >> 24, int(u << 8) >> 24, int(u) >> 24);
#elif WTYPE == 4
    uint sb = (b / 8u) * 36u, j = b & 7u;
    vec2 dm = unpackHalf2x16(w[sb]);
    vec2 sm = kscale(sb + 1u, j);
    uint u = w[sb + 4u + 8u * (j / 2u) + e0 / 4u];
    vec4 q = (j & 1u) == 0u ? nib_lo(u) : nib_hi(u);
    return dm.x * sm.x * q - dm.y * sm.y;
#elif WTYPE == 5
    uint sb = (b / 8u) * 44u, j = b & 7u;
    vec2 dm = unpackHalf2x16(w[sb]);
    vec2 sm = kscale(sb + 1u, j);
    uint u = w[sb + 12u + 8u * (j / 2u) + e0 / 4u];
    uint h = w[sb + 4u + e0 / 4u] >> j;
    vec4 q = ((j & 1u) == 0u ? nib_lo(u) : nib_hi(u)) +
             16.0 * vec4(h & 1u, (h >> 8) & 1u, (h >> 16) & 1u, (h >> 24) & 1u);
    return dm.x * sm.x * q - dm.y * sm.y;
#elif WTYPE == 6
    uint sb = (b / 8u) * 53u, j = b & 7u, n = j / 4u, g = j & 3u;
    uint l = w[sb + (64u * n + 32u * (g & 1u) + e0) / 4u];
    uint h = w[sb + (128u + 32u * n + e0) / 4u] >> (2u * g);
    vec4 ql = g < 2u ? nib_lo(l) : nib_hi(l);
    vec4 q = ql + 16.0 * vec4(h & 3u, (h >> 8) & 3u, (h >> 16) & 3u, (h >> 24) & 3u) - 32.0;
    uint si = 192u + 8u * n + e0 / 16u + 2u * g; // the scale of these 4 (one 16-group)
    float sc = float(int(byte_of(w[sb + si / 4u], si & 3u) << 24) >> 24);
    float d = half_at(w[sb + 52u], 0u);
    return d * sc * q;
#endif
}
