/* The kernel table: filled once from the CPU features, best variant first, else `_ref`
 * (STYLE.md section 6). Hot loops call through it and never test features themselves. */
#include "core/cpu.h"
#include "quant/kernels.h"

static struct dsi_type_kernels table[DSI_TYPE_COUNT];
static dsi_quantize_x_fn quantize_x = dsi_quantize_x_ref;
static const char *best_variant = "ref";
static int ready;
static dsi_acc_rows_fn acc_f32 = dsi_acc_rows_f32_ref, acc_f16 = dsi_acc_rows_f16_ref;
static dsi_silu_mul_fn silu_mul = dsi_silu_mul_ref;
static dsi_scores_kt_fn scores_kt = dsi_scores_kt_ref;

const enum dsi_type dsi_qdot_types[DSI_QDOT_NTYPES] = {
    DSI_TYPE_Q4_0, DSI_TYPE_Q4_1, DSI_TYPE_Q5_0, DSI_TYPE_Q5_1, DSI_TYPE_Q8_0,   DSI_TYPE_Q2_K,
    DSI_TYPE_Q3_K, DSI_TYPE_Q4_K, DSI_TYPE_Q5_K, DSI_TYPE_Q6_K, DSI_TYPE_IQ4_NL, DSI_TYPE_IQ4_XS,
};

#define QDOT_SET(NAME, NEED, SFX)                                                                  \
    {NAME,                                                                                         \
     NEED,                                                                                         \
     dsi_quantize_x_##SFX,                                                                         \
     {dsi_dot_q8_q4_0_##SFX, dsi_dot_q8_q4_1_##SFX, dsi_dot_q8_q5_0_##SFX, dsi_dot_q8_q5_1_##SFX,  \
      dsi_dot_q8_q8_0_##SFX, dsi_dot_q8_q2_K_##SFX, dsi_dot_q8_q3_K_##SFX, dsi_dot_q8_q4_K_##SFX,  \
      dsi_dot_q8_q5_K_##SFX, dsi_dot_q8_q6_K_##SFX, dsi_dot_q8_iq4_nl_##SFX, dsi_dot_q8_iq4_xs_##SFX}}

/* Best first after the reference: the first whose features are present wins. */
static const struct dsi_qdot_set qdot_sets[] = {
    QDOT_SET("ref", 0, ref),
#if defined(__x86_64__)
    QDOT_SET("avx512vnni", DSI_CPU_AVX512 | DSI_CPU_AVX512_VNNI, avx512vnni),
    QDOT_SET("avx2vnni", DSI_CPU_AVX2 | DSI_CPU_AVX_VNNI, avx2vnni),
    QDOT_SET("avx2", DSI_CPU_AVX2, avx2),
#endif
#if defined(__aarch64__)
    /* dotprod before i8mm: with one weight row per call smmla does no more useful work than
     * sdot and costs extra permutes (quant/arm/qdot_i8mm.c); i8mm is built and tested only */
    QDOT_SET("dotprod", DSI_CPU_DOTPROD, dotprod),
    QDOT_SET("i8mm", DSI_CPU_DOTPROD | DSI_CPU_I8MM, i8mm),
    QDOT_SET("neon", DSI_CPU_NEON, neon),
#endif
};

int dsi_qdot_sets(const struct dsi_qdot_set **sets) {
    *sets = qdot_sets;
    return (int)(sizeof qdot_sets / sizeof qdot_sets[0]);
}

void dsi_kernels_init(void) {
    uint32_t f = dsi_cpu_features();
    (void)f;
    table[DSI_TYPE_F32] = (struct dsi_type_kernels){dsi_to_f32_f32_ref, dsi_dot_f32_f32_ref, NULL, "ref"};
    table[DSI_TYPE_F16] = (struct dsi_type_kernels){dsi_to_f32_f16_ref, dsi_dot_f32_f16_ref, NULL, "ref"};
    table[DSI_TYPE_BF16] = (struct dsi_type_kernels){dsi_to_f32_bf16_ref, dsi_dot_f32_bf16_ref, NULL, "ref"};
    static const struct {
        enum dsi_type t;
        dsi_to_f32_fn f;
    } deq[] = {
        {DSI_TYPE_Q4_0, dsi_to_f32_q4_0_ref},     {DSI_TYPE_Q4_1, dsi_to_f32_q4_1_ref},
        {DSI_TYPE_Q5_0, dsi_to_f32_q5_0_ref},     {DSI_TYPE_Q5_1, dsi_to_f32_q5_1_ref},
        {DSI_TYPE_Q8_0, dsi_to_f32_q8_0_ref},     {DSI_TYPE_Q2_K, dsi_to_f32_q2_K_ref},
        {DSI_TYPE_Q3_K, dsi_to_f32_q3_K_ref},     {DSI_TYPE_Q4_K, dsi_to_f32_q4_K_ref},
        {DSI_TYPE_Q5_K, dsi_to_f32_q5_K_ref},     {DSI_TYPE_Q6_K, dsi_to_f32_q6_K_ref},
        {DSI_TYPE_IQ4_NL, dsi_to_f32_iq4_nl_ref}, {DSI_TYPE_IQ4_XS, dsi_to_f32_iq4_xs_ref},
    };
    for (size_t i = 0; i < sizeof deq / sizeof deq[0]; i++)
        table[deq[i].t] = (struct dsi_type_kernels){deq[i].f, NULL, NULL, "ref"};
    /* integer kernels: the first set after the reference whose features are all present */
    const struct dsi_qdot_set *qs = &qdot_sets[0];
    for (size_t i = 1; i < sizeof qdot_sets / sizeof qdot_sets[0]; i++)
        if (dsi_cpu_has_all(qdot_sets[i].need)) {
            qs = &qdot_sets[i];
            break;
        }
    quantize_x = qs->quantize_x;
    best_variant = qs->name;
    for (int i = 0; i < DSI_QDOT_NTYPES; i++) {
        table[dsi_qdot_types[i]].dot_q8 = qs->dot[i];
        table[dsi_qdot_types[i]].variant = qs->name;
    }
#if defined(__x86_64__)
    if (f & DSI_CPU_AVX512) {
        table[DSI_TYPE_F32].dot_f32 = dsi_dot_f32_f32_avx512;
        table[DSI_TYPE_F16] = (struct dsi_type_kernels){dsi_to_f32_f16_avx512, dsi_dot_f32_f16_avx512, NULL, "avx512"};
        table[DSI_TYPE_BF16] = (struct dsi_type_kernels){dsi_to_f32_bf16_avx512, dsi_dot_f32_bf16_avx512, NULL, "avx512"};
        table[DSI_TYPE_F32].variant = "avx512";
        acc_f32 = dsi_acc_rows_f32_avx512, acc_f16 = dsi_acc_rows_f16_avx512;
        silu_mul = dsi_silu_mul_avx512;
        scores_kt = dsi_scores_kt_avx512;
    } else if (f & DSI_CPU_AVX2) {
        table[DSI_TYPE_F32].dot_f32 = dsi_dot_f32_f32_avx2;
        table[DSI_TYPE_F16] = (struct dsi_type_kernels){dsi_to_f32_f16_avx2, dsi_dot_f32_f16_avx2, NULL, "avx2"};
        table[DSI_TYPE_BF16] = (struct dsi_type_kernels){dsi_to_f32_bf16_avx2, dsi_dot_f32_bf16_avx2, NULL, "avx2"};
        table[DSI_TYPE_F32].variant = "avx2";
        acc_f32 = dsi_acc_rows_f32_avx2, acc_f16 = dsi_acc_rows_f16_avx2;
        silu_mul = dsi_silu_mul_avx2;
        scores_kt = dsi_scores_kt_avx2;
    }
#endif
    __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
}

dsi_acc_rows_fn dsi_kernels_acc_rows(enum dsi_type t) {
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) dsi_kernels_init();
    return t == DSI_TYPE_F32 ? acc_f32 : t == DSI_TYPE_F16 ? acc_f16 : NULL;
}

dsi_scores_kt_fn dsi_kernels_scores_kt(void) {
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) dsi_kernels_init();
    return scores_kt;
}

dsi_silu_mul_fn dsi_kernels_silu_mul(void) {
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) dsi_kernels_init();
    return silu_mul;
}

dsi_quantize_x_fn dsi_kernels_quantize_x(void) {
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) dsi_kernels_init();
    return quantize_x;
}

const char *dsi_kernels_variant(void) {
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) dsi_kernels_init();
    return best_variant;
}

const struct dsi_type_kernels *dsi_kernels(enum dsi_type t) {
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) dsi_kernels_init();
    return (unsigned)t < DSI_TYPE_COUNT ? &table[t] : NULL;
}
