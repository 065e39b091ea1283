/* Integer row kernels for AArch64 with the dot product extension (ARMv8.2-A+dotprod, FEAT_DotProd:
 * Cortex-A76/A55 and later, Neoverse N1, Apple M1): sdot does 16 s8 x s8 products into four
 * int32 lanes in one instruction. Body in qdot_impl.h. */
#define SUFFIX dotprod
#define DOT16(acc, w, x) vdotq_s32(acc, w, x)
#include "quant/arm/qdot_impl.h"
