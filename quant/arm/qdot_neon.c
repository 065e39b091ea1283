/* Integer row kernels for baseline AArch64 NEON (ARMv8.0-A): s8 x s8 products through smull
 * and smlal2 (two products per int16 lane: |w x| <= 128 * 127, so two fit) and sadalp (pairs
 * into int32). Body in qdot_impl.h. */
#define SUFFIX neon
#define DOT16(acc, w, x)                                                                           \
    vpadalq_s16(acc, vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(x)), w, x))
#include "quant/arm/qdot_impl.h"
