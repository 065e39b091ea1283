/* The kernel table: filled once from the CPU features, best variant first, else `_ref`
 * (STYLE.md section 6). Hot loops call through it and never test features themselves. */
#include "core/cpu.h"
#include "quant/kernels.h"

static struct dsi_type_kernels table[DSI_TYPE_COUNT];
static int ready;

void dsi_kernels_init(void) {
    uint32_t f = dsi_cpu_features();
    (void)f;
    table[DSI_TYPE_F32] = (struct dsi_type_kernels){dsi_to_f32_f32_ref, dsi_dot_f32_f32_ref, "ref"};
    table[DSI_TYPE_F16] = (struct dsi_type_kernels){dsi_to_f32_f16_ref, dsi_dot_f32_f16_ref, "ref"};
    table[DSI_TYPE_BF16] = (struct dsi_type_kernels){dsi_to_f32_bf16_ref, dsi_dot_f32_bf16_ref, "ref"};
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
        table[deq[i].t] = (struct dsi_type_kernels){deq[i].f, NULL, "ref"};
#if defined(__x86_64__)
    if (f & DSI_CPU_AVX512) {
        table[DSI_TYPE_F32].dot_f32 = dsi_dot_f32_f32_avx512;
        table[DSI_TYPE_F16] = (struct dsi_type_kernels){dsi_to_f32_f16_avx512, dsi_dot_f32_f16_avx512, "avx512"};
        table[DSI_TYPE_BF16] = (struct dsi_type_kernels){dsi_to_f32_bf16_avx512, dsi_dot_f32_bf16_avx512, "avx512"};
        table[DSI_TYPE_F32].variant = "avx512";
    } else if (f & DSI_CPU_AVX2) {
        table[DSI_TYPE_F32].dot_f32 = dsi_dot_f32_f32_avx2;
        table[DSI_TYPE_F16] = (struct dsi_type_kernels){dsi_to_f32_f16_avx2, dsi_dot_f32_f16_avx2, "avx2"};
        table[DSI_TYPE_BF16] = (struct dsi_type_kernels){dsi_to_f32_bf16_avx2, dsi_dot_f32_bf16_avx2, "avx2"};
        table[DSI_TYPE_F32].variant = "avx2";
    }
#endif
    __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
}

const struct dsi_type_kernels *dsi_kernels(enum dsi_type t) {
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) dsi_kernels_init();
    return (unsigned)t < DSI_TYPE_COUNT ? &table[t] : NULL;
}
