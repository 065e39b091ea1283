/* CPU feature detection, done once (dsi_cpu_init) and read everywhere else.
 *
 * x86-64: CPUID for the instruction sets and XGETBV for the operating system's consent to
 * save YMM/ZMM/AMX state (a CPU that has AVX-512 under an OS that does not save ZMM registers
 * must not use it). AArch64: NEON is baseline; dotprod, i8mm, fp16, bf16 come from HWCAP. */
#ifndef DSI_CORE_CPU_H
#define DSI_CORE_CPU_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum dsi_cpu_feature {
    DSI_CPU_SSE42 = 1u << 0,
    DSI_CPU_AVX = 1u << 1,
    DSI_CPU_AVX2 = 1u << 2,
    DSI_CPU_FMA = 1u << 3,
    DSI_CPU_F16C = 1u << 4,
    DSI_CPU_AVX512 = 1u << 5,      /* F + BW + DQ + VL, with OS ZMM support */
    DSI_CPU_AVX512_VNNI = 1u << 6,
    DSI_CPU_AVX_VNNI = 1u << 7,
    DSI_CPU_AVX512_BF16 = 1u << 8,
    DSI_CPU_AVX512_FP16 = 1u << 9,
    DSI_CPU_AMX_INT8 = 1u << 10,   /* tile + int8, with OS XTILEDATA support */
    DSI_CPU_AMX_BF16 = 1u << 11,
    DSI_CPU_NEON = 1u << 16,
    DSI_CPU_DOTPROD = 1u << 17,
    DSI_CPU_I8MM = 1u << 18,
    DSI_CPU_ARM_FP16 = 1u << 19,
    DSI_CPU_ARM_BF16 = 1u << 20,
};

/* Detect features (idempotent). `disable` is a comma-separated list of feature names to mask
 * ("avx512,avx2"), the test and benchmark hook that makes every kernel variant reachable on one
 * machine; NULL masks nothing. Masking a feature also masks the ones built on it (avx2 masks
 * avx512, fma masks avx2, ...). Returns false if a name is unknown (logged). Call before other
 * threads use the library; the kernel tables are filled from the result. */
bool dsi_cpu_init(const char *disable);

/* The detected (and not masked) feature bits. dsi_cpu_init(NULL) runs on first use. */
uint32_t dsi_cpu_features(void);
bool dsi_cpu_has(enum dsi_cpu_feature f);
/* True when every bit of `mask` is present (a kernel set's requirements). */
bool dsi_cpu_has_all(uint32_t mask);

/* Space-separated names of the usable features, e.g. "avx2 fma f16c avx512". */
const char *dsi_cpu_describe(void);

#ifdef __cplusplus
}
#endif

#endif
