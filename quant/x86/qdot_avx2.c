/* Integer row kernels for AVX2 (+FMA, F16C): u8 x s8 products through maddubs (pairs to int16)
 * and madd (pairs to int32). Body in qdot_impl.h. */
#define SUFFIX avx2
#define DOT_U8(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
#include "quant/x86/qdot_impl.h"
