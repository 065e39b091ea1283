/* CPU feature detection (see cpu.h). The feature word is the one piece of process-wide state
 * besides the log sink; it is written once by dsi_cpu_init. */
#include "core/cpu.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

static uint32_t g_features;
static int g_ready;
static char g_desc[256];

static const struct {
    const char *name;
    uint32_t bit;
    uint32_t implies; /* masking this feature also masks these */
} names[] = {
    {"sse42", DSI_CPU_SSE42, 0},
    {"avx", DSI_CPU_AVX, DSI_CPU_AVX2 | DSI_CPU_FMA | DSI_CPU_F16C},
    {"avx2", DSI_CPU_AVX2, DSI_CPU_AVX512 | DSI_CPU_AVX_VNNI},
    {"fma", DSI_CPU_FMA, DSI_CPU_AVX2},
    {"f16c", DSI_CPU_F16C, DSI_CPU_AVX2},
    {"avx512", DSI_CPU_AVX512, DSI_CPU_AVX512_VNNI | DSI_CPU_AVX512_BF16 | DSI_CPU_AVX512_FP16},
    {"avx512vnni", DSI_CPU_AVX512_VNNI, 0},
    {"avxvnni", DSI_CPU_AVX_VNNI, 0},
    {"avx512bf16", DSI_CPU_AVX512_BF16, 0},
    {"avx512fp16", DSI_CPU_AVX512_FP16, 0},
    {"amx", DSI_CPU_AMX_INT8, DSI_CPU_AMX_BF16},
    {"amxbf16", DSI_CPU_AMX_BF16, 0},
    {"neon", DSI_CPU_NEON, DSI_CPU_DOTPROD | DSI_CPU_I8MM | DSI_CPU_ARM_FP16 | DSI_CPU_ARM_BF16},
    {"dotprod", DSI_CPU_DOTPROD, DSI_CPU_I8MM},
    {"i8mm", DSI_CPU_I8MM, 0},
    {"fp16", DSI_CPU_ARM_FP16, 0},
    {"bf16", DSI_CPU_ARM_BF16, 0},
};

#if defined(__x86_64__) || defined(__i386__)
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t detect(void) {
    uint32_t a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    bool osxsave = (c >> 27) & 1;
    if ((c >> 20) & 1) f |= DSI_CPU_SSE42;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    bool ymm_os = (xcr0 & 0x6) == 0x6;            /* XMM and YMM state */
    bool zmm_os = ymm_os && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM_Hi256, Hi16_ZMM */
    bool amx_os = (xcr0 & 0x60000) == 0x60000;     /* XTILECFG, XTILEDATA */
    if (ymm_os && ((c >> 28) & 1)) f |= DSI_CPU_AVX;
    if (ymm_os && ((c >> 12) & 1)) f |= DSI_CPU_FMA;
    if (ymm_os && ((c >> 29) & 1)) f |= DSI_CPU_F16C;
    uint32_t max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        uint32_t b7 = b, c7 = c, d7 = d;
        if (ymm_os && ((b7 >> 5) & 1)) f |= DSI_CPU_AVX2;
        /* we only use AVX-512 as F + BW + DQ + VL (Skylake-X and later) */
        bool avx512 = zmm_os && ((b7 >> 16) & 1) && ((b7 >> 30) & 1) && ((b7 >> 17) & 1) &&
                      ((b7 >> 31) & 1);
        if (avx512) {
            f |= DSI_CPU_AVX512;
            if ((c7 >> 11) & 1) f |= DSI_CPU_AVX512_VNNI;
            if ((d7 >> 23) & 1) f |= DSI_CPU_AVX512_FP16;
        }
        __cpuid_count(7, 1, a, b, c, d);
        if (ymm_os && ((a >> 4) & 1)) f |= DSI_CPU_AVX_VNNI;
        if (avx512 && ((a >> 5) & 1)) f |= DSI_CPU_AVX512_BF16;
        bool amx_tile = (d7 >> 24) & 1;
        if (amx_tile && amx_os) {
            if ((d7 >> 25) & 1) f |= DSI_CPU_AMX_INT8;
            if ((d7 >> 22) & 1) f |= DSI_CPU_AMX_BF16;
        }
    }
#if defined(__linux__)
    /* Linux grants AMX tile data only to processes that ask (arch_prctl). */
    if (f & (DSI_CPU_AMX_INT8 | DSI_CPU_AMX_BF16)) {
        const long ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18;
        if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
            f &= ~(uint32_t)(DSI_CPU_AMX_INT8 | DSI_CPU_AMX_BF16);
    }
#endif
    /* features we use only in combination */
    if (!(f & DSI_CPU_AVX2) || !(f & DSI_CPU_FMA) || !(f & DSI_CPU_F16C))
        f &= ~(uint32_t)(DSI_CPU_AVX2 | DSI_CPU_AVX512 | DSI_CPU_AVX512_VNNI | DSI_CPU_AVX512_BF16 |
                         DSI_CPU_AVX512_FP16 | DSI_CPU_AVX_VNNI);
    return f;
}
#elif defined(__aarch64__)
static uint32_t detect(void) {
    uint32_t f = DSI_CPU_NEON;
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    if (hw & (1ul << 20)) f |= DSI_CPU_DOTPROD;   /* HWCAP_ASIMDDP */
    if (hw & (1ul << 10)) f |= DSI_CPU_ARM_FP16;  /* HWCAP_ASIMDHP */
    if (hw2 & (1ul << 13)) f |= DSI_CPU_I8MM;     /* HWCAP2_I8MM */
    if (hw2 & (1ul << 14)) f |= DSI_CPU_ARM_BF16; /* HWCAP2_BF16 */
#endif
    return f;
}
#else
static uint32_t detect(void) { return 0; }
#endif

bool dsi_cpu_init(const char *disable) {
    uint32_t f = detect();
    bool ok = true;
    if (disable && *disable) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", disable);
        for (char *tok = strtok(buf, ", "); tok; tok = strtok(NULL, ", ")) {
            bool found = false;
            for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
                if (strcmp(tok, names[i].name) != 0) continue;
                found = true;
                uint32_t mask = names[i].bit | names[i].implies;
                /* follow implications transitively */
                for (int pass = 0; pass < 4; pass++)
                    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
                        if (mask & names[k].bit) mask |= names[k].implies;
                f &= ~mask;
            }
            if (!found) {
                DSI_LOG_ERR("unknown CPU feature '%s' in the disable list", tok);
                ok = false;
            }
        }
    }
    g_features = f;
    g_desc[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (f & names[i].bit) {
            size_t n = strlen(g_desc);
            snprintf(g_desc + n, sizeof g_desc - n, "%s%s", n ? " " : "", names[i].name);
        }
    __atomic_store_n(&g_ready, 1, __ATOMIC_RELEASE);
    return ok;
}

uint32_t dsi_cpu_features(void) {
    if (!__atomic_load_n(&g_ready, __ATOMIC_ACQUIRE)) dsi_cpu_init(NULL);
    return g_features;
}

bool dsi_cpu_has(enum dsi_cpu_feature f) { return (dsi_cpu_features() & (uint32_t)f) != 0; }

bool dsi_cpu_has_all(uint32_t mask) { return (dsi_cpu_features() & mask) == mask; }

const char *dsi_cpu_describe(void) {
    dsi_cpu_features();
    return g_desc;
}
