/* Integer row kernels for AArch64 with the int8 matrix multiply extension (ARMv8.6-A+i8mm,
 * FEAT_I8MM: Neoverse V1/V2/N2, Cortex-A710/X2 and later, Apple M2). Body in qdot_impl.h: two
 * activation rows at a time go through smmla (pair_dot4), an odd last row through sdot.
 *
 * Is it faster than the dotprod set? No, and with this kernel signature it cannot be. smmla
 * computes a 2x2 block of 8-byte dot products (32 multiply-adds). Only the products of equal
 * element ranges of weight and activation are useful, and with one weight row at most two of
 * the four are. So smmla does 16 useful multiply-adds per instruction, the same as sdot.
 * Pairing two activation rows also costs:
 *   - two zips per 16 activation bytes and row pair,
 *   - one ext per 16 weight bytes,
 *   - four permutes per group of four sums.
 * Per 128 weights and pair of rows: 16 smmla + 16 zip + 8 ext + 4 permutes, against
 * 16 sdot + 6 addp, with the same loads. Measured under qemu (instructions executed, one call,
 * n = 4096): q4_0 nx = 2 needs 3463 against dotprod's 2862, nx = 4 needs 5689 against 4787;
 * q4_K nx = 4 needs 5862 against 4926 (docs/KERNELS.md). dispatch.c therefore puts this set
 * after dotprod: it is built and tested (test_qdot runs every set the CPU can run), never
 * chosen. smmla pays off (twice sdot's useful work) once a call multiplies two weight rows with
 * two activation rows, as llama.cpp's nrc == 2 kernels do. That needs a dot_q8 taking two
 * weight rows. */
#define SUFFIX i8mm
#define DOT16(acc, w, x) vdotq_s32(acc, w, x)
#define QDOT_MMLA 1
#include "quant/arm/qdot_impl.h"
