/* Integer row kernels for AVX-VNNI (the VEX-encoded vpdpbusd of CPUs without AVX-512, such as
 * Alder Lake). Body in qdot_impl.h. */
#define SUFFIX avx2vnni
#define DOT_U8(u, s) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
#include "quant/x86/qdot_impl.h"
