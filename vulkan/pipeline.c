/* Compute pipelines: the shaders, compiled to SPIR-V by glslc at build time (Makefile,
 * VK_SHADERS) and embedded here; one descriptor-set layout of DSI_VK_BINDINGS storage
 * buffers and 128 bytes of push constants shared by every pipeline; pipelines made on first
 * use. */
#include <stdlib.h>
#include <string.h>

#include "vulkan/vk_impl.h"

#define SPV(name)                                                                                  \
    static const uint32_t spv_##name[] =                                                           \
    /* the initializer glslc -mfmt=c printed */
SPV(matvec_f32)
#include "spv/matvec_f32.inc"
    ;
SPV(matvec_f16)
#include "spv/matvec_f16.inc"
    ;
SPV(matvec_q4_0)
#include "spv/matvec_q4_0.inc"
    ;
SPV(matvec_q8_0)
#include "spv/matvec_q8_0.inc"
    ;
SPV(matvec_q4_k)
#include "spv/matvec_q4_k.inc"
    ;
SPV(matvec_q5_k)
#include "spv/matvec_q5_k.inc"
    ;
SPV(matvec_q6_k)
#include "spv/matvec_q6_k.inc"
    ;
SPV(matvec_sg_f32)
#include "spv/matvec_sg_f32.inc"
    ;
SPV(matvec_sg_f16)
#include "spv/matvec_sg_f16.inc"
    ;
SPV(matvec_sg_q4_0)
#include "spv/matvec_sg_q4_0.inc"
    ;
SPV(matvec_sg_q8_0)
#include "spv/matvec_sg_q8_0.inc"
    ;
SPV(matvec_sg_q4_k)
#include "spv/matvec_sg_q4_k.inc"
    ;
SPV(matvec_sg_q5_k)
#include "spv/matvec_sg_q5_k.inc"
    ;
SPV(matvec_sg_q6_k)
#include "spv/matvec_sg_q6_k.inc"
    ;
SPV(matmul_f32)
#include "spv/matmul_f32.inc"
    ;
SPV(matmul_f16)
#include "spv/matmul_f16.inc"
    ;
SPV(matmul_q4_0)
#include "spv/matmul_q4_0.inc"
    ;
SPV(matmul_q8_0)
#include "spv/matmul_q8_0.inc"
    ;
SPV(matmul_q4_k)
#include "spv/matmul_q4_k.inc"
    ;
SPV(matmul_q5_k)
#include "spv/matmul_q5_k.inc"
    ;
SPV(matmul_q6_k)
#include "spv/matmul_q6_k.inc"
    ;
SPV(rmsnorm)
#include "spv/rmsnorm.inc"
    ;
SPV(rope)
#include "spv/rope.inc"
    ;
SPV(kv_store_f16)
#include "spv/kv_store_f16.inc"
    ;
SPV(kv_store_f32)
#include "spv/kv_store_f32.inc"
    ;
SPV(attention_f16)
#include "spv/attention_f16.inc"
    ;
SPV(attention_f32)
#include "spv/attention_f32.inc"
    ;
SPV(attn_combine)
#include "spv/attn_combine.inc"
    ;
SPV(eltwise)
#include "spv/eltwise.inc"
    ;
SPV(layernorm)
#include "spv/layernorm.inc"
    ;
SPV(gather)
#include "spv/gather.inc"
    ;
SPV(attention_mla_f16)
#include "spv/attention_mla_f16.inc"
    ;
SPV(attention_mla_f32)
#include "spv/attention_mla_f32.inc"
    ;
SPV(copy)
#include "spv/copy.inc"
    ;
SPV(moe_combine)
#include "spv/moe_combine.inc"
    ;
SPV(route)
#include "spv/route.inc"
    ;
#undef SPV

static const struct {
    const char *name;
    const uint32_t *code;
    size_t bytes;
} shaders[DSI_VK_SHADER_COUNT] = {
#define S(e, n) [e] = {#n, spv_##n, sizeof spv_##n}
    S(DSI_VK_MATVEC + 0, matvec_f32),
    S(DSI_VK_MATVEC + 1, matvec_f16),
    S(DSI_VK_MATVEC + 2, matvec_q4_0),
    S(DSI_VK_MATVEC + 3, matvec_q8_0),
    S(DSI_VK_MATVEC + 4, matvec_q4_k),
    S(DSI_VK_MATVEC + 5, matvec_q5_k),
    S(DSI_VK_MATVEC + 6, matvec_q6_k),
    S(DSI_VK_MATVEC_SG + 0, matvec_sg_f32),
    S(DSI_VK_MATVEC_SG + 1, matvec_sg_f16),
    S(DSI_VK_MATVEC_SG + 2, matvec_sg_q4_0),
    S(DSI_VK_MATVEC_SG + 3, matvec_sg_q8_0),
    S(DSI_VK_MATVEC_SG + 4, matvec_sg_q4_k),
    S(DSI_VK_MATVEC_SG + 5, matvec_sg_q5_k),
    S(DSI_VK_MATVEC_SG + 6, matvec_sg_q6_k),
    S(DSI_VK_MATMUL + 0, matmul_f32),
    S(DSI_VK_MATMUL + 1, matmul_f16),
    S(DSI_VK_MATMUL + 2, matmul_q4_0),
    S(DSI_VK_MATMUL + 3, matmul_q8_0),
    S(DSI_VK_MATMUL + 4, matmul_q4_k),
    S(DSI_VK_MATMUL + 5, matmul_q5_k),
    S(DSI_VK_MATMUL + 6, matmul_q6_k),
    S(DSI_VK_RMSNORM, rmsnorm),
    S(DSI_VK_ROPE, rope),
    S(DSI_VK_KV_STORE_F16, kv_store_f16),
    S(DSI_VK_KV_STORE_F32, kv_store_f32),
    S(DSI_VK_ATTENTION_F16, attention_f16),
    S(DSI_VK_ATTENTION_F32, attention_f32),
    S(DSI_VK_ATTN_COMBINE, attn_combine),
    S(DSI_VK_ELTWISE, eltwise),
    S(DSI_VK_GATHER, gather),
    S(DSI_VK_LAYERNORM, layernorm),
    S(DSI_VK_ATTENTION_MLA_F16, attention_mla_f16),
    S(DSI_VK_ATTENTION_MLA_F32, attention_mla_f32),
    S(DSI_VK_COPY, copy),
    S(DSI_VK_MOE_COMBINE, moe_combine),
    S(DSI_VK_ROUTE, route),
#undef S
};

enum dsi_status dsi_vk_pipelines_init(struct dsi_vk *vk) {
    VkDescriptorSetLayoutBinding b[DSI_VK_BINDINGS];
    for (uint32_t i = 0; i < DSI_VK_BINDINGS; i++)
        b[i] = (VkDescriptorSetLayoutBinding){i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1,
                                              VK_SHADER_STAGE_COMPUTE_BIT, NULL};
    VkDescriptorSetLayoutCreateInfo li = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                          .bindingCount = DSI_VK_BINDINGS,
                                          .pBindings = b};
    enum dsi_status st = DSI_VK_CHECK(vk->f.vkCreateDescriptorSetLayout(vk->dev, &li, NULL, &vk->dsl));
    if (st) return st;
    VkPushConstantRange pc = {VK_SHADER_STAGE_COMPUTE_BIT, 0, 128};
    VkPipelineLayoutCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                     .setLayoutCount = 1,
                                     .pSetLayouts = &vk->dsl,
                                     .pushConstantRangeCount = 1,
                                     .pPushConstantRanges = &pc};
    return DSI_VK_CHECK(vk->f.vkCreatePipelineLayout(vk->dev, &pi, NULL, &vk->layout));
}

void dsi_vk_pipelines_free(struct dsi_vk *vk) {
    for (int i = 0; i < DSI_VK_SHADER_COUNT; i++)
        if (vk->pipe[i]) vk->f.vkDestroyPipeline(vk->dev, vk->pipe[i], NULL);
    if (vk->layout) vk->f.vkDestroyPipelineLayout(vk->dev, vk->layout, NULL);
    if (vk->dsl) vk->f.vkDestroyDescriptorSetLayout(vk->dev, vk->dsl, NULL);
}

VkPipeline dsi_vk_pipeline(struct dsi_vk *vk, enum dsi_vk_shader s) {
    pthread_mutex_lock(&vk->lock);
    VkPipeline p = vk->pipe[s];
    if (!p) {
        VkShaderModuleCreateInfo mi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                       .codeSize = shaders[s].bytes,
                                       .pCode = shaders[s].code};
        VkShaderModule mod = VK_NULL_HANDLE;
        if (!DSI_VK_CHECK(vk->f.vkCreateShaderModule(vk->dev, &mi, NULL, &mod))) {
            /* the subgroup shaders' local size: four subgroups */
            bool sg = s >= DSI_VK_MATVEC_SG && s < DSI_VK_MATVEC_SG + DSI_VK_WTYPE_COUNT;
            /* and their unrolling */
            uint32_t sc[2] = {4 * vk->info.subgroup_size, vk->mv_unroll};
            VkSpecializationMapEntry me[2] = {{0, 0, 4}, {1, 4, 4}};
            VkSpecializationInfo si = {2, me, sizeof sc, sc};
            VkComputePipelineCreateInfo ci = {
                .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
                .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                          .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                          .module = mod,
                          .pName = "main",
                          .pSpecializationInfo = sg ? &si : NULL},
                .layout = vk->layout};
            if (DSI_VK_CHECK(vk->f.vkCreateComputePipelines(vk->dev, VK_NULL_HANDLE, 1, &ci, NULL, &p)))
                p = VK_NULL_HANDLE;
            vk->f.vkDestroyShaderModule(vk->dev, mod, NULL);
        }
        if (!p) DSI_LOG_ERR("vulkan: cannot create the pipeline of shader %s", shaders[s].name);
        vk->pipe[s] = p;
    }
    pthread_mutex_unlock(&vk->lock);
    return p;
}
