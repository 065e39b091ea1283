/* Integer row kernels for AVX-512 VNNI on 256-bit registers (vpdpbusd: four u8 x s8 products
 * summed into each int32 lane in one instruction). Body in qdot_impl.h. */
#define SUFFIX avx512vnni
#define DOT_U8(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
#include "quant/x86/qdot_impl.h"
