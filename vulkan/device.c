/* Vulkan instance and device: the run-time loader, device enumeration and choice, memory
 * allocation against the budget, buffers and one-shot command submission. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vulkan/vk_impl.h"

enum dsi_status dsi_vk_check(VkResult r, const char *call, const char *file, int line) {
    if (r == VK_SUCCESS) return DSI_OK;
    const char *what = "error";
    switch (r) {
    case VK_ERROR_OUT_OF_HOST_MEMORY: what = "out of host memory"; break;
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: what = "out of device memory"; break;
    case VK_ERROR_DEVICE_LOST: what = "device lost"; break;
    case VK_ERROR_INITIALIZATION_FAILED: what = "initialization failed"; break;
    case VK_ERROR_INCOMPATIBLE_DRIVER: what = "incompatible driver"; break;
    case VK_ERROR_LAYER_NOT_PRESENT: what = "layer not present"; break;
    case VK_ERROR_EXTENSION_NOT_PRESENT: what = "extension not present"; break;
    case VK_ERROR_FEATURE_NOT_PRESENT: what = "feature not present"; break;
    case VK_ERROR_TOO_MANY_OBJECTS: what = "too many objects"; break;
    default: break;
    }
    dsi_log(r == VK_ERROR_OUT_OF_DEVICE_MEMORY ? DSI_LOG_INFO : DSI_LOG_ERROR,
            "vulkan: %s failed: %s (VkResult %d) at %s:%d", call, what, (int)r, file, line);
    if (r == VK_ERROR_OUT_OF_HOST_MEMORY) return DSI_ERR_NOMEM;
    return DSI_ERR_DEVICE;
}

/* ---- loader and instance ------------------------------------------------------------------ */

static enum dsi_status load_loader(struct dsi_vk_fns *f, void **lib, enum dsi_log_level lv) {
    static const char *names[] = {"libvulkan.so.1", "libvulkan.so"};
    *lib = NULL;
    for (size_t i = 0; i < sizeof names / sizeof *names && !*lib; i++)
        *lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!*lib) {
        dsi_log(lv, "vulkan: no Vulkan loader (libvulkan.so.1: %s); install libvulkan1 and a "
                "driver (mesa-vulkan-drivers, or the GPU vendor's)", dlerror());
        return DSI_ERR_DEVICE;
    }
    void *sym = dlsym(*lib, "vkGetInstanceProcAddr");
    memcpy(&f->vkGetInstanceProcAddr, &sym, sizeof sym);
    if (!f->vkGetInstanceProcAddr) {
        DSI_LOG_ERR("vulkan: the loader has no vkGetInstanceProcAddr");
        dlclose(*lib);
        *lib = NULL;
        return DSI_ERR_DEVICE;
    }
#define DSI_VK_LOAD(fn) f->fn = (PFN_##fn)f->vkGetInstanceProcAddr(NULL, #fn);
    DSI_VK_GLOBAL_FNS(DSI_VK_LOAD)
#undef DSI_VK_LOAD
    if (!f->vkCreateInstance) {
        DSI_LOG_ERR("vulkan: the loader has no vkCreateInstance");
        dlclose(*lib);
        *lib = NULL;
        return DSI_ERR_DEVICE;
    }
    return DSI_OK;
}

static VKAPI_ATTR VkBool32 VKAPI_CALL on_validation(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                                   VkDebugUtilsMessageTypeFlagsEXT type,
                                                   const VkDebugUtilsMessengerCallbackDataEXT *d,
                                                   void *user) {
    (void)type;
    struct dsi_vk *vk = user;
    if (sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
        __atomic_fetch_add(&vk->validation_errors, 1, __ATOMIC_RELAXED);
        DSI_LOG_ERR("vulkan validation: %s", d->pMessage);
    } else if (sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) {
        DSI_LOG_WRN("vulkan validation: %s", d->pMessage);
    }
    return VK_FALSE;
}

static bool have_layer(struct dsi_vk_fns *f, const char *name) {
    uint32_t n = 0;
    if (f->vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0) return false;
    VkLayerProperties *lp = calloc(n, sizeof *lp);
    bool ok = false;
    if (lp && f->vkEnumerateInstanceLayerProperties(&n, lp) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !ok; i++) ok = !strcmp(lp[i].layerName, name);
    free(lp);
    return ok;
}

/* Loader, instance and instance-level functions into vk (validation: with the Khronos layer
 * and a messenger feeding the log). */
static enum dsi_status instance_open(struct dsi_vk *vk, bool validation, enum dsi_log_level lv) {
    struct dsi_vk_fns *f = &vk->f;
    enum dsi_status st = load_loader(f, &vk->lib, lv);
    if (st) return st;
    uint32_t api = VK_API_VERSION_1_0;
    if (f->vkEnumerateInstanceVersion) f->vkEnumerateInstanceVersion(&api);
    if (api < VK_API_VERSION_1_2) {
        dsi_log(lv, "vulkan: the loader supports Vulkan %u.%u; 1.2 is needed",
                    VK_API_VERSION_MAJOR(api), VK_API_VERSION_MINOR(api));
        return DSI_ERR_DEVICE;
    }
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                             .pApplicationName = "dsinfer",
                             .pEngineName = "dsinfer",
                             .apiVersion = VK_API_VERSION_1_2};
    const char *layers[1] = {"VK_LAYER_KHRONOS_validation"};
    const char *exts[2] = {VK_EXT_DEBUG_UTILS_EXTENSION_NAME, VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME};
    /* with DSI_VK_SYNC_VALIDATION=1, the layer's synchronization checks too: a missing barrier
     * is an error even on a driver that runs every dispatch in order (lavapipe) */
    VkValidationFeatureEnableEXT sync = VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT;
    VkValidationFeaturesEXT vf = {.sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
                                  .enabledValidationFeatureCount = 1,
                                  .pEnabledValidationFeatures = &sync};
    VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                               .pApplicationInfo = &app};
    if (validation) {
        if (!have_layer(f, layers[0])) {
            DSI_LOG_ERR("vulkan: validation requested but %s is not installed "
                        "(vulkan-validationlayers)", layers[0]);
            return DSI_ERR_DEVICE;
        }
        ci.enabledLayerCount = 1;
        ci.ppEnabledLayerNames = layers;
        ci.enabledExtensionCount = 1;
        ci.ppEnabledExtensionNames = exts;
        const char *sv = getenv("DSI_VK_SYNC_VALIDATION");
        if (sv && *sv == '1') { /* opt-in: the layer's synchronization checks keep memory
                                   that LeakSanitizer reports at exit */
            ci.enabledExtensionCount = 2;
            ci.pNext = &vf;
            if (f->vkCreateInstance(&ci, NULL, &vk->inst) != VK_SUCCESS) { /* an older layer */
                vk->inst = VK_NULL_HANDLE;
                ci.enabledExtensionCount = 1;
                ci.pNext = NULL;
            }
        }
    }
    if (!vk->inst && (st = DSI_VK_CHECK(f->vkCreateInstance(&ci, NULL, &vk->inst)))) return st;
#define DSI_VK_LOAD(fn) f->fn = (PFN_##fn)f->vkGetInstanceProcAddr(vk->inst, #fn);
    DSI_VK_INSTANCE_FNS(DSI_VK_LOAD)
#undef DSI_VK_LOAD
    if (validation) {
        f->vkCreateDebugUtilsMessengerEXT = (PFN_vkCreateDebugUtilsMessengerEXT)
            f->vkGetInstanceProcAddr(vk->inst, "vkCreateDebugUtilsMessengerEXT");
        f->vkDestroyDebugUtilsMessengerEXT = (PFN_vkDestroyDebugUtilsMessengerEXT)
            f->vkGetInstanceProcAddr(vk->inst, "vkDestroyDebugUtilsMessengerEXT");
        VkDebugUtilsMessengerCreateInfoEXT mi = {
            .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
            .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                               VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
            .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
            .pfnUserCallback = on_validation,
            .pUserData = vk};
        if (f->vkCreateDebugUtilsMessengerEXT &&
            (st = DSI_VK_CHECK(f->vkCreateDebugUtilsMessengerEXT(vk->inst, &mi, NULL, &vk->messenger))))
            return st;
    }
    return DSI_OK;
}

static void instance_close(struct dsi_vk *vk) {
    if (vk->messenger && vk->f.vkDestroyDebugUtilsMessengerEXT)
        vk->f.vkDestroyDebugUtilsMessengerEXT(vk->inst, vk->messenger, NULL);
    if (vk->inst) vk->f.vkDestroyInstance(vk->inst, NULL);
    if (vk->lib) dlclose(vk->lib);
}

/* ---- devices -------------------------------------------------------------------------------- */

static const char *type_name(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

static void describe(struct dsi_vk_fns *f, VkPhysicalDevice pd, struct dsi_vk_device_info *o) {
    memset(o, 0, sizeof *o);
    VkPhysicalDeviceDriverProperties drv = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES};
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
                                             .pNext = &drv};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    f->vkGetPhysicalDeviceProperties2(pd, &p2);
    const VkPhysicalDeviceProperties *p = &p2.properties;
    snprintf(o->name, sizeof o->name, "%s", p->deviceName);
    snprintf(o->type, sizeof o->type, "%s", type_name(p->deviceType));
    snprintf(o->driver, sizeof o->driver, "%.120s %.120s", drv.driverName, drv.driverInfo);
    o->api_version = p->apiVersion;
    o->vendor_id = p->vendorID;
    o->device_id = p->deviceID;
    o->max_buffer_range = p->limits.maxStorageBufferRange;
    o->subgroup_size = sg.subgroupSize;
    o->subgroup_arith = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                        (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
    VkPhysicalDeviceShaderIntegerDotProductFeatures dot = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES};
    VkPhysicalDeviceVulkan12Features v12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &v12};
    if (p->apiVersion >= VK_API_VERSION_1_3) v12.pNext = &dot;
    f->vkGetPhysicalDeviceFeatures2(pd, &f2);
    o->fp16 = v12.shaderFloat16;
    o->int8_dot = p->apiVersion >= VK_API_VERSION_1_3 && dot.shaderIntegerDotProduct;
    /* heaps, and what is free in them where the driver has VK_EXT_memory_budget */
    bool budget_ext = false;
    uint32_t ne = 0;
    if (f->vkEnumerateDeviceExtensionProperties(pd, NULL, &ne, NULL) == VK_SUCCESS && ne) {
        VkExtensionProperties *ep = calloc(ne, sizeof *ep);
        if (ep && f->vkEnumerateDeviceExtensionProperties(pd, NULL, &ne, ep) == VK_SUCCESS)
            for (uint32_t i = 0; i < ne; i++)
                budget_ext |= !strcmp(ep[i].extensionName, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
        free(ep);
    }
    VkPhysicalDeviceMemoryBudgetPropertiesEXT mb = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
    VkPhysicalDeviceMemoryProperties2 mp2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
                                             .pNext = budget_ext ? &mb : NULL};
    f->vkGetPhysicalDeviceMemoryProperties2(pd, &mp2);
    const VkPhysicalDeviceMemoryProperties *mp = &mp2.memoryProperties;
    o->have_free = budget_ext;
    o->n_heaps = (int)(mp->memoryHeapCount < 16 ? mp->memoryHeapCount : 16);
    for (int i = 0; i < o->n_heaps; i++) {
        o->heap_bytes[i] = mp->memoryHeaps[i].size;
        o->heap_free[i] = budget_ext && mb.heapBudget[i] > mb.heapUsage[i]
                              ? mb.heapBudget[i] - mb.heapUsage[i] : 0;
        o->heap_device_local[i] = mp->memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT;
        if (o->heap_device_local[i] && o->heap_bytes[i] > o->device_local_bytes) {
            o->device_local_bytes = o->heap_bytes[i];
            o->device_local_free = o->heap_free[i];
        }
    }
}

/* The physical devices of at least Vulkan 1.2 with a compute queue. */
static int usable_devices(struct dsi_vk *vk, VkPhysicalDevice *out, int max) {
    uint32_t n = 0;
    if (DSI_VK_CHECK(vk->f.vkEnumeratePhysicalDevices(vk->inst, &n, NULL)) || n == 0) return 0;
    VkPhysicalDevice *all = calloc(n, sizeof *all);
    if (!all) return 0;
    int k = 0;
    if (vk->f.vkEnumeratePhysicalDevices(vk->inst, &n, all) >= 0) {
        for (uint32_t i = 0; i < n && k < max; i++) {
            VkPhysicalDeviceProperties p;
            vk->f.vkGetPhysicalDeviceProperties(all[i], &p);
            if (p.apiVersion < VK_API_VERSION_1_2) continue;
            uint32_t nq = 0;
            vk->f.vkGetPhysicalDeviceQueueFamilyProperties(all[i], &nq, NULL);
            VkQueueFamilyProperties qf[64];
            if (nq > 64) nq = 64;
            vk->f.vkGetPhysicalDeviceQueueFamilyProperties(all[i], &nq, qf);
            bool compute = false;
            for (uint32_t q = 0; q < nq; q++) compute |= (qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT) != 0;
            if (compute) out[k++] = all[i];
        }
    }
    free(all);
    return k;
}

enum dsi_status dsi_vk_list(struct dsi_vk_device_info *out, int max, int *n) {
    *n = 0;
    struct dsi_vk *vk = calloc(1, sizeof *vk);
    if (!vk) return DSI_ERR_NOMEM;
    enum dsi_status st = instance_open(vk, false, DSI_LOG_INFO);
    if (!st) {
        VkPhysicalDevice pd[64];
        int k = usable_devices(vk, pd, 64);
        for (int i = 0; i < k && i < max; i++) describe(&vk->f, pd[i], &out[i]);
        *n = k;
        if (k == 0) {
            dsi_log(DSI_LOG_INFO, "vulkan: no Vulkan 1.2 device with compute (is a driver installed?)");
            st = DSI_ERR_DEVICE;
        }
    }
    instance_close(vk);
    free(vk);
    return st;
}

struct dsi_vk_params dsi_vk_default_params(void) {
    struct dsi_vk_params p = {.device = -1, .budget = 0, .validation = false};
    return p;
}

enum dsi_status dsi_vk_open(const struct dsi_vk_params *pp, struct dsi_vk **out) {
    *out = NULL;
    struct dsi_vk_params p = pp ? *pp : dsi_vk_default_params();
    struct dsi_vk *vk = calloc(1, sizeof *vk);
    if (!vk) return DSI_ERR_NOMEM;
    pthread_mutex_init(&vk->lock, NULL);
    vk->mv_unroll = 4;
    const char *un = getenv("DSI_VK_UNR");
    if (un && *un >= '1' && *un <= '4' && !un[1]) vk->mv_unroll = (uint32_t)(*un - '0');
    enum dsi_status st = instance_open(vk, p.validation, DSI_LOG_ERROR);
    if (st) goto fail;
    VkPhysicalDevice pd[64];
    int k = usable_devices(vk, pd, 64);
    if (k == 0) {
        DSI_LOG_ERR("vulkan: no Vulkan 1.2 device with compute (is a driver installed?)");
        st = DSI_ERR_DEVICE;
        goto fail;
    }
    int pick = p.device;
    if (pick >= k) {
        DSI_LOG_ERR("vulkan: no device %d (there are %d)", pick, k);
        st = DSI_ERR_ARG;
        goto fail;
    }
    if (pick < 0) {
        pick = 0;
        for (int i = 0; i < k; i++) {
            VkPhysicalDeviceProperties pr;
            vk->f.vkGetPhysicalDeviceProperties(pd[i], &pr);
            if (pr.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU) {
                pick = i;
                break;
            }
        }
    }
    vk->pdev = pd[pick];
    describe(&vk->f, vk->pdev, &vk->info);
    vk->f.vkGetPhysicalDeviceMemoryProperties(vk->pdev, &vk->memp);
    {
        VkPhysicalDeviceProperties pr;
        vk->f.vkGetPhysicalDeviceProperties(vk->pdev, &pr);
        vk->align = pr.limits.minStorageBufferOffsetAlignment;
        vk->timestamp_ns = pr.limits.timestampPeriod;
        if (vk->align < 16) vk->align = 16;
    }
    uint32_t nq = 0;
    VkQueueFamilyProperties qf[64];
    vk->f.vkGetPhysicalDeviceQueueFamilyProperties(vk->pdev, &nq, NULL);
    if (nq > 64) nq = 64;
    vk->f.vkGetPhysicalDeviceQueueFamilyProperties(vk->pdev, &nq, qf);
    vk->queue_family = UINT32_MAX;
    for (uint32_t q = 0; q < nq; q++) /* prefer a compute queue without graphics */
        if ((qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT) &&
            (vk->queue_family == UINT32_MAX || !(qf[q].queueFlags & VK_QUEUE_GRAPHICS_BIT)))
            vk->queue_family = q;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                  .queueFamilyIndex = vk->queue_family,
                                  .queueCount = 1,
                                  .pQueuePriorities = &prio};
    VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                             .queueCreateInfoCount = 1,
                             .pQueueCreateInfos = &qi};
    if ((st = DSI_VK_CHECK(vk->f.vkCreateDevice(vk->pdev, &di, NULL, &vk->dev)))) goto fail;
#define DSI_VK_LOAD(fn) vk->f.fn = (PFN_##fn)vk->f.vkGetDeviceProcAddr(vk->dev, #fn);
    DSI_VK_DEVICE_FNS(DSI_VK_LOAD)
#undef DSI_VK_LOAD
    vk->f.vkGetDeviceQueue(vk->dev, vk->queue_family, 0, &vk->queue);
    uint64_t heap = vk->info.device_local_bytes;
    vk->budget = p.budget ? p.budget : heap / 10 * 9;
    if (!p.budget && vk->info.have_free && vk->info.device_local_free / 20 * 19 < vk->budget)
        vk->budget = vk->info.device_local_free / 20 * 19;
    if ((st = dsi_vk_pipelines_init(vk))) goto fail;
    dsi_log(DSI_LOG_INFO, "vulkan: device %d: %s (%s, %s), budget %.0f MiB", pick, vk->info.name,
            vk->info.type, vk->info.driver, (double)vk->budget / 1048576.0);
    *out = vk;
    return DSI_OK;
fail:
    dsi_vk_close(vk);
    return st;
}

void dsi_vk_close(struct dsi_vk *vk) {
    if (!vk) return;
    if (vk->dev) {
        vk->f.vkDeviceWaitIdle(vk->dev);
        for (int i = 0; i < vk->n_groups; i++) {
            dsi_vk_buf_free(vk, &vk->groups[i]->b);
            free(vk->groups[i]);
        }
        dsi_vk_pipelines_free(vk);
        vk->f.vkDestroyDevice(vk->dev, NULL);
    }
    free(vk->groups);
    free(vk->wtab);
    instance_close(vk);
    pthread_mutex_destroy(&vk->lock);
    free(vk);
}

const struct dsi_vk_device_info *dsi_vk_info(const struct dsi_vk *vk) { return &vk->info; }
uint64_t dsi_vk_budget(const struct dsi_vk *vk) { return vk->budget; }
uint64_t dsi_vk_used(const struct dsi_vk *vk) { return vk->used; }
int dsi_vk_validation_errors(const struct dsi_vk *vk) {
    return __atomic_load_n(&vk->validation_errors, __ATOMIC_RELAXED);
}

/* ---- memory ------------------------------------------------------------------------------- */

static int memory_type(const struct dsi_vk *vk, uint32_t bits, VkMemoryPropertyFlags want,
                       VkMemoryPropertyFlags avoid) {
    for (uint32_t i = 0; i < vk->memp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (vk->memp.memoryTypes[i].propertyFlags & want) == want &&
            !(vk->memp.memoryTypes[i].propertyFlags & avoid))
            return (int)i;
    return -1;
}

enum dsi_status dsi_vk_buf_new(struct dsi_vk *vk, VkDeviceSize size, bool host,
                               struct dsi_vk_buf *out) {
    memset(out, 0, sizeof *out);
    if (size == 0) size = 16;
    size = (size + 15) & ~(VkDeviceSize)15;
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .size = size,
                             .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                             .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    enum dsi_status st = DSI_VK_CHECK(vk->f.vkCreateBuffer(vk->dev, &bi, NULL, &out->buf));
    if (st) return st;
    VkMemoryRequirements req;
    vk->f.vkGetBufferMemoryRequirements(vk->dev, out->buf, &req);
    int mt;
    if (host) {
        mt = memory_type(vk, req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                         VK_MEMORY_PROPERTY_HOST_COHERENT_BIT | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0);
        if (mt < 0)
            mt = memory_type(vk, req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                             VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0);
    } else {
        mt = memory_type(vk, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
        if (mt < 0) mt = memory_type(vk, req.memoryTypeBits, 0, 0);
    }
    if (mt < 0) {
        DSI_LOG_ERR("vulkan: no memory type for a %s buffer", host ? "host-visible" : "device");
        vk->f.vkDestroyBuffer(vk->dev, out->buf, NULL);
        out->buf = VK_NULL_HANDLE;
        return DSI_ERR_DEVICE;
    }
    pthread_mutex_lock(&vk->lock);
    bool fits = vk->used + req.size <= vk->budget;
    if (fits) vk->used += req.size;
    pthread_mutex_unlock(&vk->lock);
    if (!fits) {
        dsi_log(DSI_LOG_INFO, "vulkan: %.1f MiB more would exceed the budget (%.1f of %.1f MiB used)",
                (double)req.size / 1048576.0, (double)vk->used / 1048576.0,
                (double)vk->budget / 1048576.0);
        vk->f.vkDestroyBuffer(vk->dev, out->buf, NULL);
        out->buf = VK_NULL_HANDLE;
        return DSI_ERR_DEVICE;
    }
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                               .allocationSize = req.size,
                               .memoryTypeIndex = (uint32_t)mt};
    st = DSI_VK_CHECK(vk->f.vkAllocateMemory(vk->dev, &ai, NULL, &out->mem));
    if (!st) st = DSI_VK_CHECK(vk->f.vkBindBufferMemory(vk->dev, out->buf, out->mem, 0));
    if (!st && host) st = DSI_VK_CHECK(vk->f.vkMapMemory(vk->dev, out->mem, 0, VK_WHOLE_SIZE, 0, &out->map));
    if (st) {
        if (out->mem) vk->f.vkFreeMemory(vk->dev, out->mem, NULL);
        vk->f.vkDestroyBuffer(vk->dev, out->buf, NULL);
        memset(out, 0, sizeof *out);
        pthread_mutex_lock(&vk->lock);
        vk->used -= req.size;
        pthread_mutex_unlock(&vk->lock);
        return st;
    }
    out->size = req.size; /* what the budget counted */
    return DSI_OK;
}

void dsi_vk_buf_free(struct dsi_vk *vk, struct dsi_vk_buf *b) {
    if (!b->buf) return;
    if (b->map) vk->f.vkUnmapMemory(vk->dev, b->mem);
    vk->f.vkDestroyBuffer(vk->dev, b->buf, NULL);
    vk->f.vkFreeMemory(vk->dev, b->mem, NULL);
    pthread_mutex_lock(&vk->lock);
    vk->used -= b->size;
    pthread_mutex_unlock(&vk->lock);
    memset(b, 0, sizeof *b);
}

enum dsi_status dsi_vk_submit(struct dsi_vk *vk, VkCommandBuffer cb, VkFence fence) {
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1,
                       .pCommandBuffers = &cb};
    pthread_mutex_lock(&vk->lock);
    enum dsi_status st = DSI_VK_CHECK(vk->f.vkQueueSubmit(vk->queue, 1, &si, fence));
    pthread_mutex_unlock(&vk->lock);
    return st;
}

enum dsi_status dsi_vk_submit_wait(struct dsi_vk *vk, VkCommandBuffer cb, VkFence fence) {
    enum dsi_status st = dsi_vk_submit(vk, cb, fence);
    if (!st) st = DSI_VK_CHECK(vk->f.vkWaitForFences(vk->dev, 1, &fence, VK_TRUE, UINT64_MAX));
    if (!st) st = DSI_VK_CHECK(vk->f.vkResetFences(vk->dev, 1, &fence));
    return st;
}

enum dsi_status dsi_vk_copy_now(struct dsi_vk *vk, const struct dsi_vk_buf *src,
                                const struct dsi_vk_buf *dst, VkDeviceSize dst_off,
                                VkDeviceSize n) {
    VkCommandPool pool = VK_NULL_HANDLE;
    VkCommandBuffer cb = VK_NULL_HANDLE;
    VkFence fence = VK_NULL_HANDLE;
    VkCommandPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                  .queueFamilyIndex = vk->queue_family};
    enum dsi_status st = DSI_VK_CHECK(vk->f.vkCreateCommandPool(vk->dev, &pi, NULL, &pool));
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = pool,
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                      .commandBufferCount = 1};
    if (!st) st = DSI_VK_CHECK(vk->f.vkAllocateCommandBuffers(vk->dev, &ai, &cb));
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if (!st) st = DSI_VK_CHECK(vk->f.vkCreateFence(vk->dev, &fi, NULL, &fence));
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    if (!st) st = DSI_VK_CHECK(vk->f.vkBeginCommandBuffer(cb, &bi));
    if (!st) {
        VkBufferCopy r = {0, dst_off, n};
        vk->f.vkCmdCopyBuffer(cb, src->buf, dst->buf, 1, &r);
        st = DSI_VK_CHECK(vk->f.vkEndCommandBuffer(cb));
    }
    if (!st) st = dsi_vk_submit_wait(vk, cb, fence);
    if (fence) vk->f.vkDestroyFence(vk->dev, fence, NULL);
    if (pool) vk->f.vkDestroyCommandPool(vk->dev, pool, NULL);
    return st;
}
