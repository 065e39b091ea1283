/* Internals of the Vulkan backend: the function table filled from the run-time loader, the
 * device object, buffers, pipelines and the push-constant layouts shared with the shaders. */
#ifndef DSI_VULKAN_VK_IMPL_H
#define DSI_VULKAN_VK_IMPL_H

#define VK_NO_PROTOTYPES
#include <pthread.h>
#include <vulkan/vulkan.h>

#include "vulkan/vk.h"

/* Entry points, by the level they are fetched at. */
#define DSI_VK_GLOBAL_FNS(X)                                                                       \
    X(vkCreateInstance)                                                                            \
    X(vkEnumerateInstanceVersion)                                                                  \
    X(vkEnumerateInstanceLayerProperties)

#define DSI_VK_INSTANCE_FNS(X)                                                                     \
    X(vkDestroyInstance)                                                                           \
    X(vkEnumeratePhysicalDevices)                                                                  \
    X(vkGetPhysicalDeviceProperties)                                                               \
    X(vkGetPhysicalDeviceProperties2)                                                              \
    X(vkGetPhysicalDeviceFeatures2)                                                                \
    X(vkGetPhysicalDeviceMemoryProperties)                                                         \
    X(vkGetPhysicalDeviceMemoryProperties2)                                                        \
    X(vkGetPhysicalDeviceQueueFamilyProperties)                                                    \
    X(vkEnumerateDeviceExtensionProperties)                                                        \
    X(vkCreateDevice)                                                                              \
    X(vkGetDeviceProcAddr)

#define DSI_VK_DEVICE_FNS(X)                                                                       \
    X(vkDestroyDevice)                                                                             \
    X(vkGetDeviceQueue)                                                                            \
    X(vkCreateBuffer)                                                                              \
    X(vkDestroyBuffer)                                                                             \
    X(vkGetBufferMemoryRequirements)                                                               \
    X(vkAllocateMemory)                                                                            \
    X(vkFreeMemory)                                                                                \
    X(vkBindBufferMemory)                                                                          \
    X(vkMapMemory)                                                                                 \
    X(vkUnmapMemory)                                                                               \
    X(vkFlushMappedMemoryRanges)                                                                   \
    X(vkInvalidateMappedMemoryRanges)                                                              \
    X(vkCreateShaderModule)                                                                        \
    X(vkDestroyShaderModule)                                                                       \
    X(vkCreateDescriptorSetLayout)                                                                 \
    X(vkDestroyDescriptorSetLayout)                                                                \
    X(vkCreatePipelineLayout)                                                                      \
    X(vkDestroyPipelineLayout)                                                                     \
    X(vkCreateComputePipelines)                                                                    \
    X(vkDestroyPipeline)                                                                           \
    X(vkCreateDescriptorPool)                                                                      \
    X(vkDestroyDescriptorPool)                                                                     \
    X(vkAllocateDescriptorSets)                                                                    \
    X(vkUpdateDescriptorSets)                                                                      \
    X(vkCreateCommandPool)                                                                         \
    X(vkDestroyCommandPool)                                                                        \
    X(vkAllocateCommandBuffers)                                                                    \
    X(vkBeginCommandBuffer)                                                                        \
    X(vkEndCommandBuffer)                                                                          \
    X(vkResetCommandBuffer)                                                                        \
    X(vkCmdBindPipeline)                                                                           \
    X(vkCmdBindDescriptorSets)                                                                     \
    X(vkCmdPushConstants)                                                                          \
    X(vkCmdDispatch)                                                                               \
    X(vkCmdPipelineBarrier)                                                                        \
    X(vkCmdCopyBuffer)                                                                             \
    X(vkQueueSubmit)                                                                               \
    X(vkCreateFence)                                                                               \
    X(vkDestroyFence)                                                                              \
    X(vkWaitForFences)                                                                             \
    X(vkResetFences)                                                                               \
    X(vkDeviceWaitIdle)                                                                            \
    X(vkCreateQueryPool)                                                                           \
    X(vkDestroyQueryPool)                                                                          \
    X(vkCmdResetQueryPool)                                                                         \
    X(vkCmdWriteTimestamp)                                                                         \
    X(vkGetQueryPoolResults)

struct dsi_vk_fns {
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
#define DSI_VK_DECL(f) PFN_##f f;
    DSI_VK_GLOBAL_FNS(DSI_VK_DECL)
    DSI_VK_INSTANCE_FNS(DSI_VK_DECL)
    DSI_VK_DEVICE_FNS(DSI_VK_DECL)
    PFN_vkCreateDebugUtilsMessengerEXT vkCreateDebugUtilsMessengerEXT;
    PFN_vkDestroyDebugUtilsMessengerEXT vkDestroyDebugUtilsMessengerEXT;
#undef DSI_VK_DECL
};

/* Turn a VkResult into a status, logging the call and place (device loss included). */
enum dsi_status dsi_vk_check(VkResult r, const char *call, const char *file, int line);
#define DSI_VK_CHECK(call) dsi_vk_check((call), #call, __FILE__, __LINE__)

/* A buffer with its own memory (device-local, or host-visible and mapped). */
struct dsi_vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size;
    void *map; /* host-visible buffers only */
};

/* Weight types with shaders (WTYPE in vulkan/shaders/common.glsl, VK_WTYPES in the Makefile). */
enum dsi_vk_wtype {
    DSI_VK_W_F32, DSI_VK_W_F16, DSI_VK_W_Q4_0, DSI_VK_W_Q8_0, DSI_VK_W_Q4_K, DSI_VK_W_Q5_K,
    DSI_VK_W_Q6_K, DSI_VK_WTYPE_COUNT
};

/* Shaders (vulkan/pipeline.c), one pipeline each; the matrix ones once per weight type. */
enum dsi_vk_shader {
    DSI_VK_MATVEC = 0,                                    /* + wtype: shared-memory sums */
    DSI_VK_MATVEC_SG = DSI_VK_MATVEC + DSI_VK_WTYPE_COUNT, /* + wtype: subgroup sums */
    DSI_VK_MATMUL = DSI_VK_MATVEC_SG + DSI_VK_WTYPE_COUNT, /* + wtype: tiled, many tokens */
    DSI_VK_RMSNORM = DSI_VK_MATMUL + DSI_VK_WTYPE_COUNT,
    DSI_VK_ROPE, DSI_VK_KV_STORE_F16, DSI_VK_KV_STORE_F32,
    DSI_VK_ATTENTION_F16, DSI_VK_ATTENTION_F32, DSI_VK_ATTN_COMBINE, DSI_VK_ELTWISE, DSI_VK_GATHER,
    DSI_VK_LAYERNORM, /* rmsnorm.comp with LAYERNORM: mean removed, bias added */
    DSI_VK_ATTENTION_MLA_F16, DSI_VK_ATTENTION_MLA_F32, /* attention.comp, SHARED_V, heads <= 576 */
    DSI_VK_COPY, DSI_VK_MOE_COMBINE, DSI_VK_ROUTE,
    DSI_VK_SHADER_COUNT
};

/* Storage-buffer bindings every pipeline's one descriptor set has. */
#define DSI_VK_BINDINGS 5
/* command buffers a backend's pass is spread over (vulkan/backend.c) */
#define DSI_VK_CBS 4

struct dsi_vk {
    struct dsi_vk_fns f;
    void *lib;
    VkInstance inst;
    VkDebugUtilsMessengerEXT messenger;
    VkPhysicalDevice pdev;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    VkPhysicalDeviceMemoryProperties memp;
    struct dsi_vk_device_info info;
    VkDeviceSize align; /* minStorageBufferOffsetAlignment */
    float timestamp_ns; /* timestampPeriod */
    uint32_t mv_unroll; /* matvec.comp's UNR: 4, or DSI_VK_UNR (1..4) */
    pthread_mutex_t lock; /* queue submission, pipelines, the budget counter */
    uint64_t budget, used;
    int validation_errors;
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipe[DSI_VK_SHADER_COUNT];
    /* weights: host pointer -> device range */
    struct dsi_vk_weight *wtab;
    size_t wtab_cap, wtab_n;
    struct dsi_vk_group **groups;
    int n_groups, cap_groups;
};

/* A weight's device copy: bytes [off, off + size) of buf; for the quantized types the block
 * quants come first and the f16 scales start at word scale_word of the range. */
struct dsi_vk_weight {
    const void *host;
    VkBuffer buf;
    VkDeviceSize off, size;
    enum dsi_vk_wtype type;
    uint32_t scale_word;
};

struct dsi_vk_group {
    struct dsi_vk_buf b;
};

const struct dsi_vk_weight *dsi_vk_weight_find(const struct dsi_vk *vk, const void *host);

/* Memory and buffers (vulkan/device.c). host: host-visible, mapped (else device-local). */
enum dsi_status dsi_vk_buf_new(struct dsi_vk *vk, VkDeviceSize size, bool host,
                               struct dsi_vk_buf *out);
void dsi_vk_buf_free(struct dsi_vk *vk, struct dsi_vk_buf *b);
/* Run a one-time command buffer to copy src (host-visible) into dst at dst_off. */
enum dsi_status dsi_vk_copy_now(struct dsi_vk *vk, const struct dsi_vk_buf *src,
                                const struct dsi_vk_buf *dst, VkDeviceSize dst_off,
                                VkDeviceSize n);
/* Submit cb on the device's queue and wait for it (serialized across threads). */
enum dsi_status dsi_vk_submit_wait(struct dsi_vk *vk, VkCommandBuffer cb, VkFence fence);
/* Submit without waiting; fence is signalled when cb is done. */
enum dsi_status dsi_vk_submit(struct dsi_vk *vk, VkCommandBuffer cb, VkFence fence);

/* The pipeline of shader s, created on first use (NULL on failure, logged). */
VkPipeline dsi_vk_pipeline(struct dsi_vk *vk, enum dsi_vk_shader s);
enum dsi_status dsi_vk_pipelines_init(struct dsi_vk *vk);
void dsi_vk_pipelines_free(struct dsi_vk *vk);

/* ---- push constants: each mirrored in the shader named ------------------------------------ */
/* shaders/matvec.comp and shaders/matmul.comp: y[t * y_ld + y_off + r] (+)= W[r] . x[t * x_ld +
 * x_off ..] (+ bias[r]) for rows r < N, tokens t < T, K columns. Offsets in elements. flags:
 * DSI_VK_MM_BIAS, DSI_VK_MM_ACC (add to y). */
enum { DSI_VK_MM_BIAS = 1, DSI_VK_MM_ACC = 2, DSI_VK_MM_GATHERED = 4 };
struct dsi_vk_pc_matmul {
    uint32_t K, N, T, x_off, x_ld, y_off, y_ld, scale_word, flags;
    uint32_t grp_rows, x_gs, y_gs; /* per-head products: groups of rows, their x and y strides */
    uint32_t row0;                 /* the first row of W (an expert of a stack) */
    uint32_t pad[3];
};
_Static_assert(sizeof(struct dsi_vk_pc_matmul) == 64, "mirrored in matvec.comp/matmul.comp");

/* shaders/rmsnorm.comp: y row t = x row t * w / rms, T rows of n; the LAYERNORM variant:
 * (x - mean) / std * w + bias. */
struct dsi_vk_pc_norm {
    uint32_t n, T;
    float eps;
    uint32_t ld; /* row stride, 0: n */
};
_Static_assert(sizeof(struct dsi_vk_pc_norm) == 16, "mirrored in rmsnorm.comp");

/* shaders/rope.comp: rotate x [T][n_head * head_dim] with the table cs [T][n_dims/2][2]. */
struct dsi_vk_pc_rope {
    uint32_t T, n_head, head_dim, n_dims, mode, tab_off, dim0;
};
_Static_assert(sizeof(struct dsi_vk_pc_rope) == 28, "mirrored in rope.comp");

/* shaders/copy.comp: y[r * ys + yo + i] = x[r * xs + xo + i], i < n, r < rows. */
struct dsi_vk_pc_copy {
    uint32_t rows, n, ys, yo, xs, xo;
};
_Static_assert(sizeof(struct dsi_vk_pc_copy) == 24, "mirrored in copy.comp");

/* shaders/moe_combine.comp: x[t] += sum_j w[s] ey[s], s = route[slot_off + t * k + j]. */
struct dsi_vk_pc_moe {
    uint32_t T, k, n, slot_off, w_off;
};
_Static_assert(sizeof(struct dsi_vk_pc_moe) == 20, "mirrored in moe_combine.comp");

/* shaders/route.comp: MoE routing of T tokens (workgroups) from X logits each; flags: bit 0
 * sigmoid gating, bit 1 renormalized weights, bit 2 a selection bias; R: route words per
 * array (sel, slot, weight). */
struct dsi_vk_pc_route {
    uint32_t X, k, G, Gu, flags, R;
    float scale;
};
_Static_assert(sizeof(struct dsi_vk_pc_route) == 28, "mirrored in route.comp");

/* shaders/kv_store.comp, attention.comp and attn_combine.comp: per token t, info[t] = (cache
 * row base in rows: seq * n_ctx, position). K rows kw wide, V rows vw wide. chunk: keys per
 * split in attention.comp (0: no split), the number of splits in attn_combine.comp. */
struct dsi_vk_pc_attn {
    uint32_t T, n_head, n_head_kv, head_dim, head_dim_v, info_off;
    float scale;
    uint32_t chunk;
};
_Static_assert(sizeof(struct dsi_vk_pc_attn) == 32,
               "mirrored in kv_store.comp, attention.comp, attn_combine.comp");

/* shaders/eltwise.comp: op 0: y += x; op 1: y = silu(y) * x; op 2: y = gelu_tanh(y), n elements. */
struct dsi_vk_pc_eltwise {
    uint32_t n, op;
};
_Static_assert(sizeof(struct dsi_vk_pc_eltwise) == 8, "mirrored in eltwise.comp");

/* shaders/gather.comp: y row k = x row rows[rows_off + k], n rows of width. */
struct dsi_vk_pc_gather {
    uint32_t n, width, rows_off, pad;
};
_Static_assert(sizeof(struct dsi_vk_pc_gather) == 16, "mirrored in gather.comp");

#endif
