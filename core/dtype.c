/* Type table: ggml type ids -> name, block size, bytes per block (docs/gguf.md section 3). */
#include "core/dtype.h"

#include <strings.h>

static const struct dsi_type_traits traits[DSI_TYPE_COUNT] = {
    [DSI_TYPE_F32] = {"f32", 1, 4},
    [DSI_TYPE_F16] = {"f16", 1, 2},
    [DSI_TYPE_Q4_0] = {"q4_0", 32, 18},
    [DSI_TYPE_Q4_1] = {"q4_1", 32, 20},
    [DSI_TYPE_Q5_0] = {"q5_0", 32, 22},
    [DSI_TYPE_Q5_1] = {"q5_1", 32, 24},
    [DSI_TYPE_Q8_0] = {"q8_0", 32, 34},
    [DSI_TYPE_Q8_1] = {"q8_1", 32, 36},
    [DSI_TYPE_Q2_K] = {"q2_K", 256, 84},
    [DSI_TYPE_Q3_K] = {"q3_K", 256, 110},
    [DSI_TYPE_Q4_K] = {"q4_K", 256, 144},
    [DSI_TYPE_Q5_K] = {"q5_K", 256, 176},
    [DSI_TYPE_Q6_K] = {"q6_K", 256, 210},
    [DSI_TYPE_Q8_K] = {"q8_K", 256, 292},
    [DSI_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66},
    [DSI_TYPE_IQ2_XS] = {"iq2_xs", 256, 74},
    [DSI_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98},
    [DSI_TYPE_IQ1_S] = {"iq1_s", 256, 50},
    [DSI_TYPE_IQ4_NL] = {"iq4_nl", 32, 18},
    [DSI_TYPE_IQ3_S] = {"iq3_s", 256, 110},
    [DSI_TYPE_IQ2_S] = {"iq2_s", 256, 82},
    [DSI_TYPE_IQ4_XS] = {"iq4_xs", 256, 136},
    [DSI_TYPE_I8] = {"i8", 1, 1},
    [DSI_TYPE_I16] = {"i16", 1, 2},
    [DSI_TYPE_I32] = {"i32", 1, 4},
    [DSI_TYPE_I64] = {"i64", 1, 8},
    [DSI_TYPE_F64] = {"f64", 1, 8},
    [DSI_TYPE_IQ1_M] = {"iq1_m", 256, 56},
    [DSI_TYPE_BF16] = {"bf16", 1, 2},
    [DSI_TYPE_TQ1_0] = {"tq1_0", 256, 54},
    [DSI_TYPE_TQ2_0] = {"tq2_0", 256, 66},
    [DSI_TYPE_MXFP4] = {"mxfp4", 32, 17},
    [DSI_TYPE_NVFP4] = {"nvfp4", 64, 36},
    [DSI_TYPE_Q1_0] = {"q1_0", 128, 18},
    [DSI_TYPE_Q2_0] = {"q2_0", 64, 18},
};

const struct dsi_type_traits *dsi_type_traits(uint32_t t) {
    if (t >= DSI_TYPE_COUNT || traits[t].name == NULL) return NULL;
    return &traits[t];
}

const char *dsi_type_name(uint32_t t) {
    const struct dsi_type_traits *tr = dsi_type_traits(t);
    return tr ? tr->name : "unknown";
}

bool dsi_type_from_name(const char *name, enum dsi_type *out) {
    for (uint32_t t = 0; t < DSI_TYPE_COUNT; t++) {
        if (traits[t].name && strcasecmp(traits[t].name, name) == 0) {
            *out = (enum dsi_type)t;
            return true;
        }
    }
    return false;
}

size_t dsi_row_size(enum dsi_type t, int64_t n) {
    const struct dsi_type_traits *tr = &traits[t];
    return (size_t)(n / tr->blck) * (size_t)tr->size;
}
