/* The Vulkan backend: devices, the weights of offloaded layers in device memory, and per
 * context a backend (core/backend.h) that records the layers' operators into one command
 * buffer per pass.
 *
 * The loader (libvulkan.so.1) is opened at run time, so a binary built with this module runs
 * on machines without Vulkan: every entry point then fails with DSI_ERR_DEVICE and a message
 * naming the cause. Plain Vulkan 1.2 compute; no extension is required. Every device
 * allocation (weights, KV caches, scratch, staging) is counted against the budget given to
 * dsi_vk_open and never exceeds it. */
#ifndef DSI_VULKAN_VK_H
#define DSI_VULKAN_VK_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/log.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dsi_vk;

struct dsi_vk_device_info {
    char name[256];
    char type[16];        /* "discrete", "integrated", "virtual", "cpu", "other" */
    char driver[256];     /* driver name and info */
    uint32_t api_version; /* VK_MAKE_API_VERSION packing */
    uint32_t vendor_id, device_id;
    uint64_t device_local_bytes; /* the largest device-local heap */
    uint64_t heap_bytes[16];
    uint64_t heap_free[16];      /* what the driver says is left (VK_EXT_memory_budget) */
    bool heap_device_local[16];
    bool have_free;              /* heap_free is known */
    uint64_t device_local_free;  /* heap_free of the largest device-local heap */
    int n_heaps;
    bool fp16, int8_dot, subgroup_arith;
    uint32_t subgroup_size;
    uint64_t max_buffer_range; /* maxStorageBufferRange */
};

/* List the devices (up to max); *n receives how many there are. DSI_ERR_DEVICE when there
 * is no loader or no Vulkan 1.2 device (the cause logged at info level). */
enum dsi_status dsi_vk_list(struct dsi_vk_device_info *out, int max, int *n);

struct dsi_vk_params {
    int device;        /* index in dsi_vk_list's order (-1: the first discrete, else the first) */
    uint64_t budget;   /* bytes of device memory this instance may allocate (0: 90% of the
                          largest device-local heap, and no more than 95% of what the driver
                          reports free there, when it reports it) */
    bool validation;   /* enable VK_LAYER_KHRONOS_validation (tests); messages go to the log
                          and count as errors (dsi_vk_validation_errors) */
};
struct dsi_vk_params dsi_vk_default_params(void);

enum dsi_status dsi_vk_open(const struct dsi_vk_params *p, struct dsi_vk **out);
void dsi_vk_close(struct dsi_vk *vk);
const struct dsi_vk_device_info *dsi_vk_info(const struct dsi_vk *vk);
uint64_t dsi_vk_budget(const struct dsi_vk *vk);
uint64_t dsi_vk_used(const struct dsi_vk *vk);
/* Validation messages of severity error seen so far (0 without validation). */
int dsi_vk_validation_errors(const struct dsi_vk *vk);

/* ---- weights ---------------------------------------------------------------------------- */
/* A group of weights uploaded together into one allocation (a layer). */
struct dsi_vk_group;
/* Bytes the device copy of a weight takes (types without a shader become f16). */
uint64_t dsi_vk_weight_bytes(const struct dsi_tensor *t);
/* Upload the tensors t[nt] and f32 vectors vec[nv] (each of vec_n[i] floats; NULL entries
 * are skipped) as one group. Fails with DSI_ERR_DEVICE (budget or device memory exhausted,
 * logged at info level) leaving nothing allocated; the caller keeps those weights on the CPU. */
enum dsi_status dsi_vk_upload(struct dsi_vk *vk, const struct dsi_tensor *const *t, int nt,
                              const float *const *vec, const int64_t *vec_n, int nv,
                              struct dsi_vk_group **out);

/* ---- backend ---------------------------------------------------------------------------- */
struct dsi_vk_backend_params {
    int64_t n_batch, n_ctx;
    int n_seq;
    int layer0, n_layers;      /* the layers whose KV cache lives here: [layer0, layer0 + n) */
    int64_t n_embd, n_ff, n_vocab;
    int n_head, n_head_kv, head_dim, head_dim_v;
    int rope_dims;
    int q_lora, kv_lora;       /* latent attention (kv_lora > 0): its ranks; the cache holds
                                  [latent | k_pe] per token, one head of kv_lora + rope_dims */
    int n_expert, n_ff_exp;    /* mixture of experts: ROUTER holds n_expert logits */
    int n_expert_used;         /* > 0: the routed experts run here (their scratch is made) */
    enum dsi_type kv_type;     /* f16 or f32 */
    bool output;               /* this backend runs the output head (DSI_ACT_OUT) */
    bool batch_invariant;
    bool no_subgroup;          /* use only the shaders without subgroup operations (tests) */
};
/* Bytes dsi_vk_backend_new allocates on the device for these parameters. */
uint64_t dsi_vk_backend_bytes(const struct dsi_vk_backend_params *p);
enum dsi_status dsi_vk_backend_new(struct dsi_vk *vk, const struct dsi_vk_backend_params *p,
                                   struct dsi_backend **out);
void dsi_vk_backend_free(struct dsi_backend *b);

#ifdef __cplusplus
}
#endif

#endif
