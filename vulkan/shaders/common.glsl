// Shared by every shader: the weight formats as uploaded (vulkan/weights.c) and helpers.
// WTYPE: 0 f32, 1 f16 (pairs packed in uints), 2 Q4_0, 3 Q8_0. Quantized matrices hold the
// blocks' quants first (Q4_0: 4 words per block of 32, element j < 16 in the low nibble of
// byte j, element j + 16 in its high nibble; Q8_0: 8 words of signed bytes) and then the
// blocks' f16 scales, two per word, from word scale_word.

float half_at(uint w, uint i) { // the i-th f16 (0 or 1) of a packed word
    return unpackHalf2x16(w)[i];
}
