/* The Vulkan backend (core/backend.h) of one context: activation buffers, the KV caches of
 * its layers, and one command buffer per pass into which the operators are recorded; a
 * `get` submits it and waits. Descriptor sets are cached by their buffers, so a pass after
 * the first allocates none. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vulkan/vk_impl.h"

struct bind {
    VkBuffer buf;
    VkDeviceSize off, range;
};

struct dset {
    struct bind b[DSI_VK_BINDINGS];
    VkDescriptorSet set;
};

struct vkb {
    struct dsi_backend base;
    struct dsi_vk *vk;
    struct dsi_vk_backend_params p;
    struct dsi_vk_buf act[DSI_ACT_COUNT];
    struct dsi_vk_buf *kc, *vc; /* [n_layers] */
    struct dsi_vk_buf info, up, down, dummy;
    struct dsi_vk_buf part; /* split attention partials: split_rows x n_head x MAX_SPLITS */
    /* routed experts (n_expert_used > 0): inputs gathered in expert order, gate/up outputs,
     * expert outputs, rows of n_batch * k; the host's routing (rows, slots, weights) */
    struct dsi_vk_buf ex_x, ex_g, ex_u, ex_y, route;
    bool route_used; /* the recorded work reads the route buffer: flush before rewriting it */
    struct dsi_vk_buf route_dev; /* routing done on the device (route.comp), same layout */
    bool dev_routed;             /* route_dev holds the routing for the next moe call */
    int64_t max_keys;       /* the most keys a token of this pass attends to */
    uint32_t tab_word, rows_word, full_word; /* info layout: tokens (2 words each), rope
                                                 table, rows, full attention's (0, T-1) */
    VkCommandPool pool;
    /* A pass is recorded into a ring of command buffers: every split_at dispatches the one
     * being recorded is submitted without waiting, so that the device starts while the host
     * records the rest; `get`/`end` submit the last and wait for all. */
    VkCommandBuffer cbs[DSI_VK_CBS], cb; /* cb: the one being recorded (cbs[cur]) */
    VkFence fences[DSI_VK_CBS];
    bool in_flight[DSI_VK_CBS];
    int cur;
    uint32_t n_disp, split_at;
    bool recording, continued, rope_ready;
    enum dsi_status err;
    uint64_t up_used;
    uint32_t rows_used;
    /* hazards since the last barrier: buffers (bit = enum dsi_act, KV_BIT for the caches)
     * written and read by the work recorded after it */
    uint32_t written, read;
    int64_t T;
    bool prompt;
    VkPipeline bound;
    VkDescriptorPool *pools;
    int n_pools;
    uint32_t pool_left;
    struct dset *sets;
    size_t sets_cap, sets_n;
};

#define SETS_PER_POOL 512
/* Decode attention is split over the cache (workgroups per head = splits) in chunks of
 * split_chunk keys, at most MAX_SPLITS, for at most split_rows tokens. */
#define MAX_SPLITS 32

static int64_t split_rows(const struct dsi_vk_backend_params *p) {
    int64_t r = p->n_seq > 8 ? p->n_seq : 8;
    return r < p->n_batch ? r : p->n_batch;
}

/* Keys per split: fixed for the context (n_ctx), so that a token's result does not depend on
 * the other tokens of its pass. */
static uint32_t split_chunk(const struct dsi_vk_backend_params *p) {
    int64_t c = (p->n_ctx + MAX_SPLITS - 1) / MAX_SPLITS;
    if (c < 256) c = 256;
    return (uint32_t)((c + 63) / 64 * 64);
}

/* The cached attention's shape: latent attention (kv_lora > 0) has one key head of
 * kv_lora + rope_dims whose first kv_lora elements are the values. */
static int att_hkv(const struct dsi_vk_backend_params *p) { return p->kv_lora ? 1 : p->n_head_kv; }
static int att_dk(const struct dsi_vk_backend_params *p) {
    return p->kv_lora ? p->kv_lora + p->rope_dims : p->head_dim;
}
static int att_dv(const struct dsi_vk_backend_params *p) { return p->kv_lora ? p->kv_lora : p->head_dim_v; }

static uint64_t part_bytes(const struct dsi_vk_backend_params *p) {
    return (uint64_t)split_rows(p) * (uint64_t)p->n_head * MAX_SPLITS * (uint64_t)(att_dv(p) + 2) * 4;
}
#define KV_BIT (1u << DSI_ACT_COUNT)
#define PART_BIT (2u << DSI_ACT_COUNT)
#define EXX_BIT (4u << DSI_ACT_COUNT)
#define EXG_BIT (8u << DSI_ACT_COUNT) /* ex_g and ex_u */
#define EXY_BIT (16u << DSI_ACT_COUNT)
#define ROUTE_BIT (32u << DSI_ACT_COUNT)
#define BIT(a) (1u << (a))

#ifdef DSI_VK_PROFILE
/* Profiling build (make VKPROF=1): GPU time per shader from timestamps around each dispatch,
 * printed to stderr when the backend is freed. */
#include <stdio.h>
#define PROF_MAX 4096
#define PROF_SHAPES 512
struct prof_shape {
    enum dsi_vk_shader sh;
    uint32_t gx, gy, gz;
    double ms;
    uint64_t count;
};
struct prof {
    VkQueryPool qp;
    uint32_t n;
    enum dsi_vk_shader sh[PROF_MAX];
    uint32_t shape[PROF_MAX]; /* index into shapes */
    double ms[DSI_VK_SHADER_COUNT];
    uint64_t count[DSI_VK_SHADER_COUNT];
    double submit_ms, passes, record_ms;
    struct timespec begun;
    struct prof_shape shapes[PROF_SHAPES];
    uint32_t n_shapes;
};
static uint32_t prof_shape(enum dsi_vk_shader s, uint32_t gx, uint32_t gy, uint32_t gz);
static struct prof g_prof;
static uint32_t prof_shape(enum dsi_vk_shader s, uint32_t gx, uint32_t gy, uint32_t gz) {
    for (uint32_t i = 0; i < g_prof.n_shapes; i++) {
        const struct prof_shape *q = &g_prof.shapes[i];
        if (q->sh == s && q->gx == gx && q->gy == gy && q->gz == gz) return i;
    }
    if (g_prof.n_shapes == PROF_SHAPES) return PROF_SHAPES - 1;
    g_prof.shapes[g_prof.n_shapes] = (struct prof_shape){s, gx, gy, gz, 0, 0};
    return g_prof.n_shapes++;
}
#endif

static int64_t act_width(const struct dsi_vk_backend_params *p, enum dsi_act a) {
    switch (a) {
    case DSI_ACT_X:
    case DSI_ACT_XN:
    case DSI_ACT_TMP: return p->n_embd;
    case DSI_ACT_Q: return (int64_t)p->n_head * p->head_dim;
    case DSI_ACT_K: return p->kv_lora ? 0 : (int64_t)p->n_head_kv * p->head_dim;
    case DSI_ACT_V: return p->kv_lora ? 0 : (int64_t)p->n_head_kv * p->head_dim_v;
    case DSI_ACT_ATTN: return (int64_t)p->n_head * p->head_dim_v;
    case DSI_ACT_GATE:
    case DSI_ACT_UP: return p->n_ff;
    case DSI_ACT_QA: return p->kv_lora ? p->q_lora : 0;
    case DSI_ACT_KVA: return p->kv_lora ? att_dk(p) : 0;
    case DSI_ACT_QFULL: return p->kv_lora ? (int64_t)p->n_head * att_dk(p) : 0;
    case DSI_ACT_LAT: return (int64_t)p->n_head * p->kv_lora;
    case DSI_ACT_ROUTER: return p->n_expert;
    case DSI_ACT_OUT: return p->output ? p->n_vocab : 0;
    case DSI_ACT_COUNT: break;
    }
    return 0;
}

static int64_t max_out_rows(const struct dsi_vk_backend_params *p) {
    return p->n_batch < 16 ? p->n_batch : 16;
}

static int64_t act_rows(const struct dsi_vk_backend_params *p, enum dsi_act a) {
    return a == DSI_ACT_OUT ? max_out_rows(p) : p->n_batch;
}

static uint64_t widest(const struct dsi_vk_backend_params *p) {
    uint64_t m = 0;
    for (int a = 0; a < DSI_ACT_COUNT; a++) {
        uint64_t b = (uint64_t)act_rows(p, a) * (uint64_t)act_width(p, a) * 4;
        if (b > m) m = b;
    }
    return m;
}

static uint64_t kv_layer_bytes(const struct dsi_vk_backend_params *p, bool values) {
    uint64_t es = p->kv_type == DSI_TYPE_F32 ? 4 : 2;
    if (values && p->kv_lora) return 0; /* the values are within the keys */
    uint64_t w = (uint64_t)att_hkv(p) * (uint64_t)(values ? p->head_dim_v : att_dk(p));
    return (uint64_t)p->n_seq * (uint64_t)p->n_ctx * w * es;
}

static uint32_t info_words(const struct dsi_vk_backend_params *p) {
    return (uint32_t)(p->n_batch * (5 + p->rope_dims));
}

/* rows of the routed experts' scratch */
static uint64_t ex_rows(const struct dsi_vk_backend_params *p) {
    return (uint64_t)p->n_batch * (uint64_t)(p->n_expert_used > 0 ? p->n_expert_used : 0);
}

uint64_t dsi_vk_backend_bytes(const struct dsi_vk_backend_params *p) {
    uint64_t b = ex_rows(p) * (2 * (uint64_t)p->n_embd + 2 * (uint64_t)p->n_ff_exp + 6) * 4;
    for (int a = 0; a < DSI_ACT_COUNT; a++)
        b += (uint64_t)act_rows(p, a) * (uint64_t)act_width(p, a) * 4;
    b += (uint64_t)p->n_layers * (kv_layer_bytes(p, false) + kv_layer_bytes(p, true));
    b += (uint64_t)info_words(p) * 4 + 2 * widest(p) + 256 + part_bytes(p);
    return b + b / 64; /* allocation granularity */
}

/* ---- recording ------------------------------------------------------------------------------ */

/* Dispatches per submitted part of a pass (DSI_VK_SPLIT overrides; 0: one part). */
static uint32_t split_dispatches(void) {
    const char *e = getenv("DSI_VK_SPLIT");
    if (e && *e) {
        long v = strtol(e, NULL, 10);
        return v > 0 && v < 1000000 ? (uint32_t)v : 0;
    }
    return 64;
}

static void fail(struct vkb *b, enum dsi_status st) {
    if (!b->err) b->err = st;
}

/* Wait for command buffer i of the ring and make it free. */
static enum dsi_status wait_cb(struct vkb *b, int i) {
    enum dsi_status st = DSI_VK_CHECK(b->vk->f.vkWaitForFences(b->vk->dev, 1, &b->fences[i], VK_TRUE, UINT64_MAX));
    if (!st) st = DSI_VK_CHECK(b->vk->f.vkResetFences(b->vk->dev, 1, &b->fences[i]));
    b->in_flight[i] = false;
    return st;
}

static bool recording(struct vkb *b) {
    if (b->err) return false;
    if (b->recording) return true;
    /* a continued pass keeps its hazards: a barrier orders against everything submitted to
     * the queue before it, earlier command buffers included */
    if (!b->continued) b->written = b->read = 0;
    enum dsi_status st = DSI_OK;
    if (b->in_flight[b->cur]) { /* the ring came round: this one must be done */
        st = wait_cb(b, b->cur);
        if (st) {
            fail(b, st);
            return false;
        }
    }
    b->cb = b->cbs[b->cur];
    b->n_disp = 0;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    st = DSI_VK_CHECK(b->vk->f.vkResetCommandBuffer(b->cb, 0));
    if (!st) st = DSI_VK_CHECK(b->vk->f.vkBeginCommandBuffer(b->cb, &bi));
    if (st) {
        fail(b, st);
        return false;
    }
#ifdef DSI_VK_PROFILE
    if (b->continued) {
        b->recording = true;
        b->bound = VK_NULL_HANDLE;
        return true;
    }
    if (!g_prof.qp) {
        VkQueryPoolCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                    .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = PROF_MAX};
        b->vk->f.vkCreateQueryPool(b->vk->dev, &qi, NULL, &g_prof.qp);
    }
    b->vk->f.vkCmdResetQueryPool(b->cb, g_prof.qp, 0, PROF_MAX);
    g_prof.n = 0;
#endif
    b->recording = true;
    b->bound = VK_NULL_HANDLE;
    return true;
}

/* Everything recorded so far is done before anything recorded next starts. */
static void barrier(struct vkb *b, VkPipelineStageFlags dst, VkAccessFlags dst_access) {
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = dst_access};
    b->vk->f.vkCmdPipelineBarrier(b->cb,
                                  VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                                  dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

static void barrier_all(struct vkb *b) {
    b->written = b->read = 0;
    barrier(b, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                VK_ACCESS_TRANSFER_WRITE_BIT);
}

/* Work that reads rd and writes wr (buffer masks) is about to be recorded: a barrier first if
 * it depends on, or overwrites, work since the last one. */
static void hazard(struct vkb *b, uint32_t rd, uint32_t wr) {
    if ((rd & b->written) || (wr & (b->written | b->read))) barrier_all(b);
    b->written |= wr;
    b->read |= rd;
}

/* Submit what was recorded and wait. */
/* End the command buffer being recorded and submit it; the pass goes on in the next one. */
static enum dsi_status submit_cb(struct vkb *b) {
    b->recording = false;
    enum dsi_status st = DSI_VK_CHECK(b->vk->f.vkEndCommandBuffer(b->cb));
    if (!st) st = dsi_vk_submit(b->vk, b->cb, b->fences[b->cur]);
    if (!st) b->in_flight[b->cur] = true;
    b->cur = (b->cur + 1) % DSI_VK_CBS;
    b->continued = true;
    if (st) fail(b, st);
    return st;
}

/* Called after each dispatch: submit the part recorded so far when it is long enough. */
static void maybe_submit(struct vkb *b) {
    if (b->split_at && ++b->n_disp >= b->split_at) submit_cb(b);
}

static enum dsi_status wait_all(struct vkb *b) {
    enum dsi_status st = DSI_OK;
    for (int i = 0; i < DSI_VK_CBS; i++)
        if (b->in_flight[i]) {
            enum dsi_status s = wait_cb(b, i);
            if (!st) st = s;
        }
    return st;
}

static enum dsi_status flush(struct vkb *b) {
    if (!b->err && !b->recording && b->continued) recording(b); /* for the host barrier */
    if (b->err || !b->recording) {
        /* a failed pass: drop what was recorded, let what was submitted finish */
        if (b->recording) b->vk->f.vkEndCommandBuffer(b->cb);
        b->recording = false;
        enum dsi_status w = wait_all(b);
        b->continued = false;
        return b->err ? b->err : w;
    }
    barrier(b, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
#ifdef DSI_VK_PROFILE
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    g_prof.record_ms += (t0.tv_sec - g_prof.begun.tv_sec) * 1e3 + (t0.tv_nsec - g_prof.begun.tv_nsec) * 1e-6;
#endif
    enum dsi_status st = submit_cb(b);
    enum dsi_status w = wait_all(b);
    if (!st) st = w;
    b->continued = false;
#ifdef DSI_VK_PROFILE
    clock_gettime(CLOCK_MONOTONIC, &t1);
    g_prof.submit_ms += (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6;
    g_prof.passes++;
    if (!st && g_prof.n) {
        static uint64_t ts[PROF_MAX];
        b->vk->f.vkGetQueryPoolResults(b->vk->dev, g_prof.qp, 0, g_prof.n, sizeof ts, ts, 8,
                                       VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
        for (uint32_t i = 0; i + 1 < g_prof.n; i += 2) {
            double ms = (double)(ts[i + 1] - ts[i]) * b->vk->timestamp_ns * 1e-6;
            g_prof.ms[g_prof.sh[i / 2]] += ms;
            g_prof.count[g_prof.sh[i / 2]]++;
            g_prof.shapes[g_prof.shape[i / 2]].ms += ms;
            g_prof.shapes[g_prof.shape[i / 2]].count++;
        }
    }
#endif
    b->up_used = 0;
    b->rows_used = 0;
    b->route_used = false;
    if (st) fail(b, st);
    return st;
}

static uint64_t hash_set(const struct bind *k) {
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < DSI_VK_BINDINGS; i++) {
        h = (h ^ (uint64_t)(uintptr_t)k[i].buf) * 1099511628211ULL;
        h = (h ^ k[i].off) * 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static VkDescriptorSet new_set(struct vkb *b, const struct bind *k) {
    struct dsi_vk *vk = b->vk;
    if (b->pool_left == 0) {
        VkDescriptorPool *np = realloc(b->pools, (size_t)(b->n_pools + 1) * sizeof *np);
        if (!np) return VK_NULL_HANDLE;
        b->pools = np;
        VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, SETS_PER_POOL * DSI_VK_BINDINGS};
        VkDescriptorPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                         .maxSets = SETS_PER_POOL,
                                         .poolSizeCount = 1,
                                         .pPoolSizes = &ps};
        if (DSI_VK_CHECK(vk->f.vkCreateDescriptorPool(vk->dev, &pi, NULL, &b->pools[b->n_pools])))
            return VK_NULL_HANDLE;
        b->n_pools++;
        b->pool_left = SETS_PER_POOL;
    }
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorPool = b->pools[b->n_pools - 1],
                                      .descriptorSetCount = 1,
                                      .pSetLayouts = &vk->dsl};
    VkDescriptorSet set;
    if (DSI_VK_CHECK(vk->f.vkAllocateDescriptorSets(vk->dev, &ai, &set))) return VK_NULL_HANDLE;
    b->pool_left--;
    VkDescriptorBufferInfo bi[DSI_VK_BINDINGS];
    VkWriteDescriptorSet wr[DSI_VK_BINDINGS];
    for (uint32_t i = 0; i < DSI_VK_BINDINGS; i++) {
        bi[i] = (VkDescriptorBufferInfo){k[i].buf, k[i].off, k[i].range};
        wr[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                       .dstSet = set,
                                       .dstBinding = i,
                                       .descriptorCount = 1,
                                       .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                       .pBufferInfo = &bi[i]};
    }
    vk->f.vkUpdateDescriptorSets(vk->dev, DSI_VK_BINDINGS, wr, 0, NULL);
    return set;
}

static VkDescriptorSet get_set(struct vkb *b, const struct bind *k) {
    if ((b->sets_n + 1) * 2 > b->sets_cap) {
        size_t cap = b->sets_cap ? b->sets_cap * 2 : 1024;
        struct dset *t = calloc(cap, sizeof *t);
        if (!t) return VK_NULL_HANDLE;
        for (size_t i = 0; i < b->sets_cap; i++)
            if (b->sets[i].set) {
                size_t j = hash_set(b->sets[i].b) & (cap - 1);
                while (t[j].set) j = (j + 1) & (cap - 1);
                t[j] = b->sets[i];
            }
        free(b->sets);
        b->sets = t;
        b->sets_cap = cap;
    }
    size_t j = hash_set(k) & (b->sets_cap - 1);
    for (; b->sets[j].set; j = (j + 1) & (b->sets_cap - 1))
        if (!memcmp(b->sets[j].b, k, sizeof b->sets[j].b)) return b->sets[j].set;
    VkDescriptorSet s = new_set(b, k);
    if (!s) return VK_NULL_HANDLE;
    memcpy(b->sets[j].b, k, sizeof b->sets[j].b);
    b->sets[j].set = s;
    b->sets_n++;
    return s;
}

static struct bind act_bind(struct vkb *b, enum dsi_act a) {
    return (struct bind){b->act[a].buf, 0, VK_WHOLE_SIZE};
}

static struct bind buf_bind(const struct dsi_vk_buf *x) {
    return (struct bind){x->buf, 0, VK_WHOLE_SIZE};
}

static void dispatch(struct vkb *b, enum dsi_vk_shader s, struct bind *binds, int nb,
                     const void *pc, uint32_t pc_size, uint32_t gx, uint32_t gy, uint32_t gz,
                     uint32_t rd, uint32_t wr) {
    if (!recording(b) || gx == 0 || gy == 0 || gz == 0) return;
    if (gx > 65535 || gy > 65535 || gz > 65535) { /* the limits every device guarantees */
        DSI_LOG_ERR("vulkan: %u x %u x %u workgroups exceed the guaranteed dispatch size", gx, gy, gz);
        fail(b, DSI_ERR_UNSUPPORTED);
        return;
    }
    struct dsi_vk *vk = b->vk;
    struct bind k[DSI_VK_BINDINGS];
    for (int i = 0; i < DSI_VK_BINDINGS; i++) k[i] = i < nb && binds[i].buf ? binds[i] : buf_bind(&b->dummy);
    VkPipeline p = dsi_vk_pipeline(vk, s);
    VkDescriptorSet set = p ? get_set(b, k) : VK_NULL_HANDLE;
    if (!p || !set) {
        fail(b, DSI_ERR_DEVICE);
        return;
    }
    hazard(b, rd, wr);
    if (p != b->bound) vk->f.vkCmdBindPipeline(b->cb, VK_PIPELINE_BIND_POINT_COMPUTE, p);
    b->bound = p;
    vk->f.vkCmdBindDescriptorSets(b->cb, VK_PIPELINE_BIND_POINT_COMPUTE, vk->layout, 0, 1, &set, 0, NULL);
    vk->f.vkCmdPushConstants(b->cb, vk->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, pc_size, pc);
#ifdef DSI_VK_PROFILE
    if (g_prof.qp && g_prof.n + 2 <= PROF_MAX) {
        vk->f.vkCmdWriteTimestamp(b->cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, g_prof.qp, g_prof.n);
        g_prof.sh[g_prof.n / 2] = s;
        g_prof.shape[g_prof.n / 2] = prof_shape(s, gx, gy, gz);
    }
#endif
    vk->f.vkCmdDispatch(b->cb, gx, gy, gz);
#ifdef DSI_VK_PROFILE
    if (g_prof.qp && g_prof.n + 2 <= PROF_MAX) {
        vk->f.vkCmdWriteTimestamp(b->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, g_prof.qp, g_prof.n + 1);
        g_prof.n += 2;
    }
#endif
    maybe_submit(b);
}

/* Split n workgroups into x * y, x <= 65535. */
static void split(uint64_t n, uint32_t *x, uint32_t *y) {
    *x = n < 65535 ? (uint32_t)n : 65535;
    *y = *x ? (uint32_t)((n + *x - 1) / *x) : 0;
}

/* ---- the interface ------------------------------------------------------------------------- */

static void vkb_begin(struct dsi_backend *be, const struct dsi_seg *segs, int n_segs,
                      const int32_t *pos, int64_t T, bool prompt) {
    struct vkb *b = (struct vkb *)be;
    if (b->recording || b->continued) flush(b); /* a pass that did not end */
#ifdef DSI_VK_PROFILE
    clock_gettime(CLOCK_MONOTONIC, &g_prof.begun);
#endif
    b->err = DSI_OK;
    b->T = T;
    b->prompt = prompt;
    b->rope_ready = false;
    b->up_used = 0;
    b->rows_used = 0;
    uint32_t *info = b->info.map;
    b->max_keys = 0;
    for (int64_t t = 0; t < T; t++)
        if (pos[t] + 1 > b->max_keys) b->max_keys = pos[t] + 1;
    for (int i = 0; i < n_segs; i++)
        for (int64_t t = 0; t < segs[i].n; t++) {
            info[2 * (segs[i].t0 + t)] = (uint32_t)((int64_t)segs[i].seq * b->p.n_ctx);
            info[2 * (segs[i].t0 + t) + 1] = (uint32_t)pos[segs[i].t0 + t];
        }
}

static enum dsi_status vkb_end(struct dsi_backend *be) {
    struct vkb *b = (struct vkb *)be;
    flush(b);
    return b->err;
}

static float *vkb_host(struct dsi_backend *be, enum dsi_act a) {
    (void)be, (void)a;
    return NULL;
}

static void vkb_set(struct dsi_backend *be, enum dsi_act a, int64_t off, const float *src, int64_t n) {
    struct vkb *b = (struct vkb *)be;
    uint64_t bytes = (uint64_t)n * 4;
    while (bytes && recording(b)) {
        if (b->up_used == b->up.size && flush(b)) return;
        if (!recording(b)) return;
        uint64_t c = b->up.size - b->up_used < bytes ? b->up.size - b->up_used : bytes;
        memcpy((char *)b->up.map + b->up_used, src, c);
        hazard(b, 0, BIT(a));
        VkBufferCopy r = {b->up_used, (VkDeviceSize)off * 4, c};
        b->vk->f.vkCmdCopyBuffer(b->cb, b->up.buf, b->act[a].buf, 1, &r);
        b->up_used += (c + 15) & ~(uint64_t)15;
        if (b->up_used > b->up.size) b->up_used = b->up.size;
        src += c / 4;
        off += (int64_t)(c / 4);
        bytes -= c;
    }
}

static enum dsi_status vkb_get(struct dsi_backend *be, enum dsi_act a, int64_t off, float *dst,
                               int64_t n) {
    struct vkb *b = (struct vkb *)be;
    uint64_t bytes = (uint64_t)n * 4;
    while (bytes) {
        if (!recording(b)) break;
        uint64_t c = bytes < b->down.size ? bytes : b->down.size;
        hazard(b, BIT(a), 0);
        VkBufferCopy r = {(VkDeviceSize)off * 4, 0, c};
        b->vk->f.vkCmdCopyBuffer(b->cb, b->act[a].buf, b->down.buf, 1, &r);
        if (flush(b)) break;
        memcpy(dst, b->down.map, c);
        dst += c / 4;
        off += (int64_t)(c / 4);
        bytes -= c;
    }
    return b->err;
}

static void vkb_rmsnorm(struct dsi_backend *be, enum dsi_act y, enum dsi_act x, const float *w,
                        int64_t T, int64_t n, int64_t ld, float eps) {
    struct vkb *b = (struct vkb *)be;
    const struct dsi_vk_weight *dw = dsi_vk_weight_find(b->vk, w);
    if (!dw || !dw->buf) {
        DSI_LOG_ERR("vulkan: a norm weight is not on the device");
        fail(b, DSI_ERR_DEVICE);
        return;
    }
    struct bind bs[3] = {act_bind(b, x), {dw->buf, dw->off, dw->size}, act_bind(b, y)};
    struct dsi_vk_pc_norm pc = {(uint32_t)n, (uint32_t)T, eps, (uint32_t)ld};
    dispatch(b, DSI_VK_RMSNORM, bs, 3, &pc, sizeof pc, (uint32_t)T, 1, 1, BIT(x), BIT(y));
}

static enum dsi_vk_shader mm_shader(const struct vkb *b, enum dsi_vk_wtype t, bool tiled) {
    const struct dsi_vk *vk = b->vk;
    if (tiled) return (enum dsi_vk_shader)(DSI_VK_MATMUL + t);
    bool sg = !b->p.no_subgroup && vk->info.subgroup_arith && vk->info.subgroup_size >= 8 && vk->info.subgroup_size <= 128;
    return (enum dsi_vk_shader)((sg ? DSI_VK_MATVEC_SG : DSI_VK_MATVEC) + t);
}

/* Rows of W per workgroup: the tiled shader 64; matvec 4 (4 subgroups, or 4 x 32 lanes). */
static uint32_t wg_rows(enum dsi_vk_shader s) {
    return s >= DSI_VK_MATMUL && s < DSI_VK_MATMUL + DSI_VK_WTYPE_COUNT ? 64 : 4;
}

/* A matrix product as in struct dsi_vk_pc_matmul: y (+)= x W^T (+ bias) over rows
 * [row0, row0 + rows) of W (rows 0: all); with grp_rows, groups of W's rows (heads) read their
 * own slice of x and write their own slice of y. x, y: buffers and their hazard bits. */
struct mm {
    struct bind x, y;
    uint32_t x_bit, y_bit;
    uint32_t x_off, x_ld, y_off, y_ld, grp_rows, x_gs, y_gs, row0, rows;
    const float *bias;
    bool acc;
};

static void mm_dispatch(struct vkb *b, int64_t T, const struct dsi_tensor *W, const struct mm *a) {
    /* rows that are not whole blocks (float weights) and unaligned inputs have only the
     * tiled shader */
    bool tiled = (b->p.batch_invariant ? b->prompt : T >= 8) || W->ne[0] % 32 != 0 ||
                 (a->x_off | a->x_gs | a->x_ld) % 4 != 0;
    const struct dsi_vk_weight *dw = dsi_vk_weight_find(b->vk, W->data);
    const struct dsi_vk_weight *db = a->bias ? dsi_vk_weight_find(b->vk, a->bias) : NULL;
    if (!dw || !dw->buf || (a->bias && (!db || !db->buf))) {
        DSI_LOG_ERR("vulkan: weight %s is not on the device", W->name ? W->name : "?");
        fail(b, DSI_ERR_DEVICE);
        return;
    }
    uint32_t K = (uint32_t)W->ne[0];
    uint32_t N = a->rows ? a->rows : (uint32_t)(W->ne[1] * W->ne[2] * W->ne[3]);
    struct bind bs[4] = {{dw->buf, dw->off, dw->size}, a->x, a->y,
                         db ? (struct bind){db->buf, db->off, db->size} : buf_bind(&b->dummy)};
    uint32_t flags = (db ? DSI_VK_MM_BIAS : 0) | (a->acc ? DSI_VK_MM_ACC : 0);
    struct dsi_vk_pc_matmul pc = {K, N, (uint32_t)T, a->x_off, a->x_ld, a->y_off, a->y_ld,
                                  dw->scale_word, flags, a->grp_rows, a->x_gs, a->y_gs, a->row0,
                                  {0}};
    enum dsi_vk_shader s = mm_shader(b, dw->type, tiled);
    uint32_t rows = wg_rows(s);
    uint32_t gx = (N + rows - 1) / rows;
    if (tiled && a->grp_rows) gx = (N / a->grp_rows) * ((a->grp_rows + 63) / 64); /* tiles per group */
    uint32_t rd = a->x_bit | (a->acc ? a->y_bit : 0);
    dispatch(b, s, bs, 4, &pc, sizeof pc, gx, tiled ? (uint32_t)((T + 63) / 64) : 1, 1, rd, a->y_bit);
}

static void matmul1(struct vkb *b, enum dsi_act y, enum dsi_act x, int64_t T,
                    const struct dsi_tensor *W, const float *bias, bool acc) {
    /* rows of K inputs and N outputs */
    struct mm a = {act_bind(b, x), act_bind(b, y), BIT(x), BIT(y), 0, (uint32_t)W->ne[0], 0,
                   (uint32_t)W->ne[1], 0, 0, 0, 0, 0, bias, acc};
    mm_dispatch(b, T, W, &a);
}

static void vkb_matmul(struct dsi_backend *be, int nm, const enum dsi_act *y, enum dsi_act x,
                       int64_t T, const struct dsi_tensor *const *W, const float *const *bias) {
    for (int i = 0; i < nm; i++)
        matmul1((struct vkb *)be, y[i], x, T, W[i], bias ? bias[i] : NULL, false);
}

static void vkb_matmul_add(struct dsi_backend *be, enum dsi_act y, enum dsi_act x, int64_t T,
                           const struct dsi_tensor *W, const float *bias) {
    matmul1((struct vkb *)be, y, x, T, W, bias, true);
}

static void vkb_rope(struct dsi_backend *be, enum dsi_act x, int64_t T, int n_head, int head_dim,
                     int dim0, const struct dsi_rope *r) {
    struct vkb *b = (struct vkb *)be;
    if (r->n_dims > b->p.rope_dims) {
        DSI_LOG_ERR("vulkan: rope over %d dimensions, the backend was made for %d", r->n_dims,
                    b->p.rope_dims);
        fail(b, DSI_ERR_ARG);
        return;
    }
    if (!b->rope_ready) {
        float *tab = (float *)((uint32_t *)b->info.map + b->tab_word);
        const uint32_t *info = b->info.map;
        for (int64_t t = 0; t < T; t++)
            dsi_rope_table(tab + t * r->n_dims, tab + t * r->n_dims + r->n_dims / 2,
                           (int32_t)info[2 * t + 1], r);
        b->rope_ready = true;
    }
    struct bind bs[2] = {act_bind(b, x), buf_bind(&b->info)};
    struct dsi_vk_pc_rope pc = {(uint32_t)T, (uint32_t)n_head, (uint32_t)head_dim,
                                (uint32_t)r->n_dims, r->mode == DSI_ROPE_NEOX ? 0u : 1u, b->tab_word,
                                (uint32_t)dim0};
    dispatch(b, DSI_VK_ROPE, bs, 2, &pc, sizeof pc, (uint32_t)(r->n_dims / 2 + 63) / 64,
             (uint32_t)n_head, (uint32_t)T, BIT(x), BIT(x));
}

static void vkb_attention(struct dsi_backend *be, int il, enum dsi_act out, enum dsi_act q,
                          enum dsi_act k, enum dsi_act v, const struct dsi_attn_params *p) {
    struct vkb *b = (struct vkb *)be;
    int l = il - b->p.layer0;
    if (l < 0 || l >= b->p.n_layers) {
        DSI_LOG_ERR("vulkan: layer %d has no cache on this device", il);
        fail(b, DSI_ERR_ARG);
        return;
    }
    bool f16 = b->p.kv_type != DSI_TYPE_F32, shared = v == k;
    struct dsi_vk_pc_attn pc = {(uint32_t)b->T, (uint32_t)p->n_head, (uint32_t)p->n_head_kv,
                                (uint32_t)p->head_dim, (uint32_t)p->head_dim_v, 0, p->scale, 0};
    if (p->n_head != b->p.n_head || p->head_dim_v != att_dv(&b->p) || p->head_dim != att_dk(&b->p) ||
        p->n_head_kv != att_hkv(&b->p) || shared != (b->p.kv_lora > 0)) {
        DSI_LOG_ERR("vulkan: attention of %d heads of %d/%d, the backend was made for %d of %d/%d",
                    p->n_head, p->head_dim, p->head_dim_v, b->p.n_head, att_dk(&b->p), att_dv(&b->p));
        fail(b, DSI_ERR_ARG);
        return;
    }
    int64_t kw = (int64_t)p->n_head_kv * p->head_dim, vw = (int64_t)p->n_head_kv * p->head_dim_v;
    int64_t pairs = ((kw > vw ? kw : vw) + 1) / 2;
    /* latent attention: the keys only (the values are their first head_dim_v elements) */
    const struct dsi_vk_buf *vc = shared ? &b->kc[l] : &b->vc[l];
    struct bind st[5] = {act_bind(b, k), act_bind(b, v), buf_bind(&b->kc[l]),
                         buf_bind(shared ? &b->dummy : vc), buf_bind(&b->info)};
    struct dsi_vk_pc_attn spc = pc;
    if (shared) spc.head_dim_v = 0;
    dispatch(b, f16 ? DSI_VK_KV_STORE_F16 : DSI_VK_KV_STORE_F32, st, 5, &spc, sizeof spc,
             (uint32_t)((pairs + 63) / 64), (uint32_t)b->T, 1, BIT(k) | BIT(v), KV_BIT);
    enum dsi_vk_shader ash = shared ? (f16 ? DSI_VK_ATTENTION_MLA_F16 : DSI_VK_ATTENTION_MLA_F32)
                                    : (f16 ? DSI_VK_ATTENTION_F16 : DSI_VK_ATTENTION_F32);
    /* decode: split over the cache (a batch-invariant backend splits every decode pass,
     * whatever its length, and never a prompt) */
    uint32_t chunk = split_chunk(&b->p);
    bool split = b->T <= split_rows(&b->p) &&
                 (b->p.batch_invariant ? !b->prompt : b->T <= 8 && b->max_keys > chunk);
    if (!split) {
        struct bind at[5] = {act_bind(b, q), buf_bind(&b->kc[l]), buf_bind(vc),
                             act_bind(b, out), buf_bind(&b->info)};
        dispatch(b, ash, at, 5, &pc, sizeof pc, (uint32_t)p->n_head, (uint32_t)b->T, 1,
                 BIT(q) | KV_BIT, BIT(out));
        return;
    }
    uint32_t ns = (uint32_t)((b->max_keys + chunk - 1) / chunk);
    pc.chunk = chunk;
    struct bind at[5] = {act_bind(b, q), buf_bind(&b->kc[l]), buf_bind(vc),
                         buf_bind(&b->part), buf_bind(&b->info)};
    dispatch(b, ash, at, 5, &pc, sizeof pc, (uint32_t)p->n_head, (uint32_t)b->T, ns,
             BIT(q) | KV_BIT, PART_BIT);
    pc.chunk = ns;
    struct bind cb[2] = {buf_bind(&b->part), act_bind(b, out)};
    dispatch(b, DSI_VK_ATTN_COMBINE, cb, 2, &pc, sizeof pc, (uint32_t)p->n_head, (uint32_t)b->T, 1,
             PART_BIT, BIT(out));
}

static void eltwise(struct vkb *b, enum dsi_act y, enum dsi_act x, int64_t n, uint32_t op) {
    struct bind bs[2] = {act_bind(b, y), act_bind(b, x)};
    struct dsi_vk_pc_eltwise pc = {(uint32_t)n, op};
    uint32_t gx, gy;
    split(((uint64_t)n + 255) / 256, &gx, &gy);
    dispatch(b, DSI_VK_ELTWISE, bs, 2, &pc, sizeof pc, gx, gy, 1, BIT(x) | BIT(y), BIT(y));
}

static void vkb_swiglu(struct dsi_backend *be, enum dsi_act g, enum dsi_act u, int64_t n) {
    eltwise((struct vkb *)be, g, u, n, 1);
}

static void vkb_add(struct dsi_backend *be, enum dsi_act y, enum dsi_act x, int64_t n) {
    eltwise((struct vkb *)be, y, x, n, 0);
}

static void vkb_gather(struct dsi_backend *be, enum dsi_act y, enum dsi_act x, const int64_t *rows,
                       int64_t n, int64_t width) {
    struct vkb *b = (struct vkb *)be;
    if (b->rows_used + n > b->p.n_batch) flush(b);
    uint32_t off = b->rows_word + b->rows_used;
    uint32_t *info = b->info.map;
    for (int64_t k = 0; k < n; k++) info[off + k] = (uint32_t)rows[k];
    b->rows_used += (uint32_t)n;
    struct bind bs[3] = {act_bind(b, y), act_bind(b, x), buf_bind(&b->info)};
    struct dsi_vk_pc_gather pc = {(uint32_t)n, (uint32_t)width, off, 0};
    dispatch(b, DSI_VK_GATHER, bs, 3, &pc, sizeof pc, (uint32_t)((width + 255) / 256), (uint32_t)n, 1,
             BIT(x), BIT(y));
}

static void vkb_matmul_heads(struct dsi_backend *be, enum dsi_act y, int64_t ys, enum dsi_act x,
                             int64_t xs, int64_t xo, int64_t T, int n_head,
                             const struct dsi_tensor *W, bool transposed) {
    struct vkb *b = (struct vkb *)be;
    if (transposed || W->ne[2] != n_head || n_head * xs > act_width(&b->p, x) ||
        n_head * ys > act_width(&b->p, y) || W->ne[1] > ys || xo + W->ne[0] > xs) {
        DSI_LOG_ERR("vulkan: per-head product of %s not supported (%s, %d heads)",
                    W->name ? W->name : "?", transposed ? "transposed" : "shape", n_head);
        fail(b, DSI_ERR_UNSUPPORTED);
        return;
    }
    struct mm a = {act_bind(b, x), act_bind(b, y), BIT(x), BIT(y), (uint32_t)xo,
                   (uint32_t)(n_head * xs), 0, (uint32_t)(n_head * ys), (uint32_t)W->ne[1],
                   (uint32_t)xs, (uint32_t)ys, 0, 0, NULL, false};
    mm_dispatch(b, T, W, &a);
}

static void vkb_copy_heads(struct dsi_backend *be, enum dsi_act y, int64_t ys, int64_t yo,
                           enum dsi_act x, int64_t xs, int64_t xo, int64_t T, int n_head, int64_t n) {
    struct vkb *b = (struct vkb *)be;
    uint64_t rows = (uint64_t)T * (uint64_t)n_head;
    struct bind bs[2] = {act_bind(b, y), act_bind(b, x)};
    struct dsi_vk_pc_copy pc = {(uint32_t)rows, (uint32_t)n, (uint32_t)ys, (uint32_t)yo,
                                (uint32_t)xs, (uint32_t)xo};
    uint32_t gy, gz;
    split(rows, &gy, &gz);
    dispatch(b, DSI_VK_COPY, bs, 2, &pc, sizeof pc, (uint32_t)((n + 63) / 64), gy, gz, BIT(x), BIT(y));
}

/* The shared experts: x += down(silu(gate xn) * up xn). */
static void moe_shared(struct vkb *b, enum dsi_act x, enum dsi_act xn, int64_t T,
                       const struct dsi_tensor *const sh[3]) {
    if (!sh[0]->data) return;
    matmul1(b, DSI_ACT_GATE, xn, T, sh[0], NULL, false);
    matmul1(b, DSI_ACT_UP, xn, T, sh[1], NULL, false);
    eltwise(b, DSI_ACT_GATE, DSI_ACT_UP, T * sh[0]->ne[1], 1);
    matmul1(b, x, DSI_ACT_GATE, T, sh[2], NULL, true);
}

/* One projection of every selection routed on the device: selection p multiplies expert
 * route_dev[p]'s matrix of the stack W with x row p / per (flag GATHERED; the decode shader,
 * or the tiled one for rows that are not whole blocks). */
static void mm_gathered(struct vkb *b, const struct dsi_tensor *W, struct bind x, uint32_t x_ld,
                        uint32_t per, struct bind y, uint32_t y_ld, uint32_t n) {
    const struct dsi_vk_weight *dw = dsi_vk_weight_find(b->vk, W->data);
    if (!dw || !dw->buf) {
        DSI_LOG_ERR("vulkan: weight %s is not on the device", W->name ? W->name : "?");
        fail(b, DSI_ERR_DEVICE);
        return;
    }
    uint32_t K = (uint32_t)W->ne[0], N = (uint32_t)W->ne[1];
    struct bind bs[4] = {{dw->buf, dw->off, dw->size}, x, y, buf_bind(&b->route_dev)};
    struct dsi_vk_pc_matmul pc = {K, N, 1, 0, x_ld, 0, y_ld, dw->scale_word, DSI_VK_MM_GATHERED,
                                  N, per, 0, 0, {0}};
    bool tiled = K % 32 != 0 || x_ld % 4 != 0;
    enum dsi_vk_shader s = mm_shader(b, dw->type, tiled);
    dispatch(b, s, bs, 4, &pc, sizeof pc, (N + wg_rows(s) - 1) / wg_rows(s), 1, n, 0, 0);
}

/* Experts routed on the device (decode): no sorting and no gathering; each selection's gate,
 * up and down run as one dispatch each over all selections (an expert chosen by two tokens
 * is read twice), then moe_combine.comp as for host routing. */
static void moe_gathered(struct vkb *b, enum dsi_act x, enum dsi_act xn, int64_t T, int k,
                         const struct dsi_tensor *const exps[3], const struct dsi_tensor *const sh[3]) {
    uint32_t E = (uint32_t)b->p.n_embd, F = (uint32_t)b->p.n_ff_exp, n = (uint32_t)(T * k);
    uint32_t R = (uint32_t)ex_rows(&b->p);
    b->dev_routed = false;
    moe_shared(b, x, xn, T, sh);
    if (!recording(b)) return;
    hazard(b, ROUTE_BIT | BIT(xn), EXG_BIT);
    mm_gathered(b, exps[0], act_bind(b, xn), E, (uint32_t)k, buf_bind(&b->ex_g), F, n);
    mm_gathered(b, exps[1], act_bind(b, xn), E, (uint32_t)k, buf_bind(&b->ex_u), F, n);
    {
        struct bind bs[2] = {buf_bind(&b->ex_g), buf_bind(&b->ex_u)};
        struct dsi_vk_pc_eltwise pc = {n * F, 1};
        uint32_t gx, gy;
        split(((uint64_t)n * F + 255) / 256, &gx, &gy);
        dispatch(b, DSI_VK_ELTWISE, bs, 2, &pc, sizeof pc, gx, gy, 1, EXG_BIT, EXG_BIT);
    }
    if (!recording(b)) return;
    hazard(b, EXG_BIT, EXY_BIT);
    mm_gathered(b, exps[2], buf_bind(&b->ex_g), F, 1, buf_bind(&b->ex_y), E, n);
    struct bind bs[3] = {act_bind(b, x), buf_bind(&b->ex_y), buf_bind(&b->route_dev)};
    struct dsi_vk_pc_moe pc = {(uint32_t)T, (uint32_t)k, E, R, 2 * R};
    dispatch(b, DSI_VK_MOE_COMBINE, bs, 3, &pc, sizeof pc, (E + 255) / 256, (uint32_t)T, 1,
             BIT(x) | EXY_BIT | ROUTE_BIT, BIT(x));
}

static bool vkb_moe_gate(struct dsi_backend *be, int64_t T, const struct dsi_moe_gate *g,
                         const struct dsi_tensor *const exps[3]) {
    struct vkb *b = (struct vkb *)be;
    (void)exps;
    /* decode passes (a prompt's experts are better read once for all of its tokens: host
     * routing and sorting); batch-invariant: by the kind of pass, never by its length */
    bool decode = b->p.batch_invariant ? !b->prompt : T <= 8;
    if (!decode || g->k != b->p.n_expert_used || g->k > 16 || g->n_expert > 256 ||
        g->n_expert != b->p.n_expert || g->n_group > 64 ||
        (g->n_group > 1 && g->n_expert % g->n_group) || T * g->k > (int64_t)ex_rows(&b->p))
        return false;
    const struct dsi_vk_weight *db = g->bias ? dsi_vk_weight_find(b->vk, g->bias) : NULL;
    if (g->bias && (!db || !db->buf)) return false;
    struct bind bs[3] = {act_bind(b, DSI_ACT_ROUTER),
                         db ? (struct bind){db->buf, db->off, db->size} : buf_bind(&b->dummy),
                         buf_bind(&b->route_dev)};
    struct dsi_vk_pc_route pc = {(uint32_t)g->n_expert, (uint32_t)g->k, (uint32_t)g->n_group,
                                 (uint32_t)g->n_group_used,
                                 (g->sigmoid ? 1u : 0u) | (g->norm ? 2u : 0u) | (db ? 4u : 0u),
                                 (uint32_t)ex_rows(&b->p), g->scale};
    dispatch(b, DSI_VK_ROUTE, bs, 3, &pc, sizeof pc, (uint32_t)T, 1, 1, BIT(DSI_ACT_ROUTER), ROUTE_BIT);
    b->dev_routed = true;
    return true;
}

/* Routed experts: the host sorts the selections by expert and writes the routing; the inputs
 * are gathered in that order, each active expert's gate/up/down runs as one product over its
 * rows of the stacks (no barrier between experts: they write disjoint rows), and
 * moe_combine.comp adds the weighted outputs to x in each token's selection order, after the
 * shared experts (the CPU's order). */
static void vkb_moe(struct dsi_backend *be, enum dsi_act x, enum dsi_act xn, int64_t T, int k,
                    const int32_t *sel, const float *w, const struct dsi_tensor *const exps[3],
                    const struct dsi_tensor *const sh[3]) {
    struct vkb *b = (struct vkb *)be;
    int X = b->p.n_expert;
    int64_t E = b->p.n_embd, F = b->p.n_ff_exp, R = (int64_t)ex_rows(&b->p);
    if (k != b->p.n_expert_used || k <= 0 || T * k > R || exps[0]->ne[1] != F || exps[0]->ne[2] != X ||
        (!sel && !b->dev_routed)) {
        DSI_LOG_ERR("vulkan: %d experts per token of %lld tokens%s: the backend was made for %d",
                    k, (long long)T, sel ? "" : " (not routed)", b->p.n_expert_used);
        fail(b, DSI_ERR_ARG);
        return;
    }
    if (!sel) {
        moe_gathered(b, x, xn, T, k, exps, sh);
        return;
    }
    if (b->route_used && flush(b)) return; /* the pending work still reads the old routing */
    if (!recording(b)) return;
    uint32_t *rows = b->route.map, *slot = rows + R;
    float *wt = (float *)(rows + 2 * R);
    int64_t off[X + 1], fill[X];
    memset(off, 0, sizeof off);
    for (int64_t i = 0; i < T * k; i++) {
        if (sel[i] < 0 || sel[i] >= X) {
            DSI_LOG_ERR("vulkan: expert %d of %d", sel[i], X);
            fail(b, DSI_ERR_ARG);
            return;
        }
        off[sel[i] + 1]++;
    }
    for (int e = 0; e < X; e++) off[e + 1] += off[e];
    memcpy(fill, off, sizeof fill);
    for (int64_t i = 0; i < T * k; i++) {
        int64_t s = fill[sel[i]]++;
        rows[s] = (uint32_t)(i / k);
        slot[i] = (uint32_t)s;
        wt[s] = w[i];
    }
    b->route_used = true;
    uint32_t n = (uint32_t)(T * k);
    {
        struct bind bs[3] = {buf_bind(&b->ex_x), act_bind(b, xn), buf_bind(&b->route)};
        struct dsi_vk_pc_gather pc = {n, (uint32_t)E, 0, 0};
        dispatch(b, DSI_VK_GATHER, bs, 3, &pc, sizeof pc, (uint32_t)((E + 255) / 256), n, 1, BIT(xn), EXX_BIT);
    }
    moe_shared(b, x, xn, T, sh);
    /* gate and up of every active expert, then SwiGLU, then down */
    for (int pass = 0; pass < 2; pass++) {
        if (!recording(b)) return;
        if (pass == 0) hazard(b, EXX_BIT, EXG_BIT);
        else hazard(b, EXG_BIT, EXY_BIT);
        for (int e = 0; e < X; e++) {
            int64_t ne = off[e + 1] - off[e];
            if (!ne) continue;
            uint32_t o = (uint32_t)off[e];
            for (int m = pass == 0 ? 0 : 2; m < (pass == 0 ? 2 : 3); m++) {
                const struct dsi_vk_buf *in = m < 2 ? &b->ex_x : &b->ex_g;
                const struct dsi_vk_buf *out = m == 0 ? &b->ex_g : m == 1 ? &b->ex_u : &b->ex_y;
                uint32_t K = m < 2 ? (uint32_t)E : (uint32_t)F, N = m < 2 ? (uint32_t)F : (uint32_t)E;
                struct mm a = {buf_bind(in), buf_bind(out), 0, 0, o * K, K, o * N, N, 0, 0, 0,
                               (uint32_t)(e * exps[m]->ne[1]), (uint32_t)exps[m]->ne[1], NULL, false};
                mm_dispatch(b, ne, exps[m], &a);
            }
        }
        if (pass == 0) {
            struct bind bs[2] = {buf_bind(&b->ex_g), buf_bind(&b->ex_u)};
            struct dsi_vk_pc_eltwise pc = {(uint32_t)(n * F), 1};
            uint32_t gx, gy;
            split(((uint64_t)n * (uint64_t)F + 255) / 256, &gx, &gy);
            dispatch(b, DSI_VK_ELTWISE, bs, 2, &pc, sizeof pc, gx, gy, 1, EXG_BIT, EXG_BIT);
        }
    }
    struct bind bs[3] = {act_bind(b, x), buf_bind(&b->ex_y), buf_bind(&b->route)};
    struct dsi_vk_pc_moe pc = {(uint32_t)T, (uint32_t)k, (uint32_t)E, (uint32_t)R, (uint32_t)(2 * R)};
    dispatch(b, DSI_VK_MOE_COMBINE, bs, 3, &pc, sizeof pc, (uint32_t)((E + 255) / 256), (uint32_t)T, 1,
             BIT(x) | EXY_BIT, BIT(x));
}

static void vkb_layernorm(struct dsi_backend *be, enum dsi_act y, enum dsi_act x, const float *w,
                          const float *bias, int64_t T, int64_t n, float eps) {
    struct vkb *b = (struct vkb *)be;
    const struct dsi_vk_weight *dw = dsi_vk_weight_find(b->vk, w), *db = dsi_vk_weight_find(b->vk, bias);
    if (!dw || !dw->buf || !db || !db->buf) {
        DSI_LOG_ERR("vulkan: a norm weight or bias is not on the device");
        fail(b, DSI_ERR_DEVICE);
        return;
    }
    struct bind bs[4] = {act_bind(b, x), {dw->buf, dw->off, dw->size}, act_bind(b, y),
                         {db->buf, db->off, db->size}};
    struct dsi_vk_pc_norm pc = {(uint32_t)n, (uint32_t)T, eps, 0};
    dispatch(b, DSI_VK_LAYERNORM, bs, 4, &pc, sizeof pc, (uint32_t)T, 1, 1, BIT(x), BIT(y));
}

static void vkb_gelu(struct dsi_backend *be, enum dsi_act x, int64_t n) {
    eltwise((struct vkb *)be, x, x, n, 2);
}

/* The cached attention's shader with K and V of the pass as an f32 "cache" and every token
 * at base 0, position T - 1 (info words at full_word). */
static void vkb_attention_full(struct dsi_backend *be, enum dsi_act out, enum dsi_act q,
                               enum dsi_act k, enum dsi_act v, int64_t T,
                               const struct dsi_attn_params *p) {
    struct vkb *b = (struct vkb *)be;
    if (T > b->p.n_batch || p->head_dim % 4 || p->head_dim > 256 || p->head_dim_v > 256) {
        DSI_LOG_ERR("vulkan: full attention of %lld tokens, head size %d", (long long)T, p->head_dim);
        fail(b, DSI_ERR_ARG);
        return;
    }
    uint32_t *info = b->info.map;
    for (int64_t t = 0; t < T; t++) {
        info[b->full_word + 2 * t] = 0;
        info[b->full_word + 2 * t + 1] = (uint32_t)(T - 1);
    }
    struct dsi_vk_pc_attn pc = {(uint32_t)T, (uint32_t)p->n_head, (uint32_t)p->n_head_kv,
                                (uint32_t)p->head_dim, (uint32_t)p->head_dim_v, b->full_word,
                                p->scale, 0};
    struct bind at[5] = {act_bind(b, q), act_bind(b, k), act_bind(b, v), act_bind(b, out),
                         buf_bind(&b->info)};
    dispatch(b, DSI_VK_ATTENTION_F32, at, 5, &pc, sizeof pc, (uint32_t)p->n_head, (uint32_t)T, 1,
             BIT(q) | BIT(k) | BIT(v), BIT(out));
}

static const struct dsi_backend_ops vk_ops = {
    "vulkan", vkb_begin, vkb_end, vkb_host, vkb_set, vkb_get, vkb_rmsnorm, vkb_matmul, vkb_matmul_add, vkb_rope,
    vkb_attention, vkb_swiglu, vkb_add, vkb_gather, vkb_matmul_heads, vkb_copy_heads, vkb_moe,
    vkb_moe_gate, vkb_layernorm, vkb_gelu, vkb_attention_full,
};

/* ---- lifetime -------------------------------------------------------------------------------- */

void dsi_vk_backend_free(struct dsi_backend *be) {
    if (!be) return;
    struct vkb *b = (struct vkb *)be;
    struct dsi_vk *vk = b->vk;
#ifdef DSI_VK_PROFILE
    fprintf(stderr, "vk profile: %.0f passes, %.3f ms each from the last submit to the fence, "
            "%.3f ms from begin to the last submit\n", g_prof.passes,
            g_prof.passes ? g_prof.submit_ms / g_prof.passes : 0,
            g_prof.passes ? g_prof.record_ms / g_prof.passes : 0);
    for (uint32_t i = 0; i < g_prof.n_shapes; i++) {
        const struct prof_shape *q = &g_prof.shapes[i];
        if (q->count && q->ms * 1e3 / (double)q->count > 1.0)
            fprintf(stderr, "vk profile: shader %2d %6u x %4u x %4u: %8llu, %9.3f ms, %7.2f us each\n",
                    q->sh, q->gx, q->gy, q->gz, (unsigned long long)q->count, q->ms,
                    q->ms * 1e3 / (double)q->count);
    }
    for (int i = 0; i < DSI_VK_SHADER_COUNT; i++)
        if (g_prof.count[i])
            fprintf(stderr, "vk profile: shader %2d: %8llu dispatches, %9.3f ms, %7.2f us each\n", i,
                    (unsigned long long)g_prof.count[i], g_prof.ms[i], g_prof.ms[i] * 1e3 / (double)g_prof.count[i]);
    if (g_prof.qp) vk->f.vkDestroyQueryPool(vk->dev, g_prof.qp, NULL);
    memset(&g_prof, 0, sizeof g_prof);
#endif
    if (b->recording) vk->f.vkEndCommandBuffer(b->cb);
    for (int i = 0; i < DSI_VK_CBS; i++)
        if (b->in_flight[i]) vk->f.vkWaitForFences(vk->dev, 1, &b->fences[i], VK_TRUE, UINT64_MAX);
    for (int i = 0; i < b->n_pools; i++) vk->f.vkDestroyDescriptorPool(vk->dev, b->pools[i], NULL);
    free(b->pools);
    free(b->sets);
    for (int i = 0; i < DSI_VK_CBS; i++)
        if (b->fences[i]) vk->f.vkDestroyFence(vk->dev, b->fences[i], NULL);
    if (b->pool) vk->f.vkDestroyCommandPool(vk->dev, b->pool, NULL);
    for (int a = 0; a < DSI_ACT_COUNT; a++) dsi_vk_buf_free(vk, &b->act[a]);
    for (int l = 0; b->kc && l < b->p.n_layers; l++) {
        dsi_vk_buf_free(vk, &b->kc[l]);
        dsi_vk_buf_free(vk, &b->vc[l]);
    }
    free(b->kc);
    free(b->vc);
    dsi_vk_buf_free(vk, &b->info);
    dsi_vk_buf_free(vk, &b->up);
    dsi_vk_buf_free(vk, &b->down);
    dsi_vk_buf_free(vk, &b->dummy);
    dsi_vk_buf_free(vk, &b->part);
    dsi_vk_buf_free(vk, &b->ex_x);
    dsi_vk_buf_free(vk, &b->ex_g);
    dsi_vk_buf_free(vk, &b->ex_u);
    dsi_vk_buf_free(vk, &b->ex_y);
    dsi_vk_buf_free(vk, &b->route);
    dsi_vk_buf_free(vk, &b->route_dev);
    free(b);
}

enum dsi_status dsi_vk_backend_new(struct dsi_vk *vk, const struct dsi_vk_backend_params *p,
                                   struct dsi_backend **out) {
    *out = NULL;
    int maxd = p->kv_lora ? 576 : 256; /* the attention shaders' widest head */
    if (att_dk(p) > maxd || att_dv(p) > maxd || att_dk(p) % 8 || att_dv(p) % 2 ||
        p->n_head_kv <= 0 || p->n_head % p->n_head_kv || p->n_batch <= 0 ||
        (uint64_t)p->n_seq * (uint64_t)p->n_ctx > UINT32_MAX / 2) {
        dsi_log(DSI_LOG_INFO, "vulkan: no shaders for this attention shape (head size %d/%d, "
                "%d/%d heads)", att_dk(p), att_dv(p), p->n_head, att_hkv(p));
        return DSI_ERR_UNSUPPORTED;
    }
    /* every buffer is bound whole: none may exceed the device's storage-buffer range */
    uint64_t range = vk->info.max_buffer_range, biggest = widest(p);
    if (kv_layer_bytes(p, false) > biggest) biggest = kv_layer_bytes(p, false);
    if (kv_layer_bytes(p, true) > biggest) biggest = kv_layer_bytes(p, true);
    if (part_bytes(p) > biggest) biggest = part_bytes(p);
    if (biggest > range) {
        dsi_log(DSI_LOG_INFO, "vulkan: a buffer of %.0f MiB (KV cache of %d x %lld tokens, or "
                "scratch) exceeds the device's storage-buffer range of %.0f MiB",
                (double)biggest / 1048576.0, p->n_seq, (long long)p->n_ctx, (double)range / 1048576.0);
        return DSI_ERR_UNSUPPORTED;
    }
    struct vkb *b = calloc(1, sizeof *b);
    if (!b) return DSI_ERR_NOMEM;
    b->base.ops = &vk_ops;
    b->base.max_out = max_out_rows(p);
    b->vk = vk;
    b->p = *p;
    b->tab_word = (uint32_t)(2 * p->n_batch);
    b->rows_word = b->tab_word + (uint32_t)(p->n_batch * p->rope_dims);
    b->full_word = b->rows_word + (uint32_t)p->n_batch;
    enum dsi_status st = DSI_OK;
    for (int a = 0; a < DSI_ACT_COUNT && !st; a++) {
        uint64_t bytes = (uint64_t)act_rows(p, a) * (uint64_t)act_width(p, a) * 4;
        if (bytes) st = dsi_vk_buf_new(vk, bytes, false, &b->act[a]);
    }
    b->kc = calloc((size_t)(p->n_layers > 0 ? p->n_layers : 1), sizeof *b->kc);
    b->vc = calloc((size_t)(p->n_layers > 0 ? p->n_layers : 1), sizeof *b->vc);
    if (!st && (!b->kc || !b->vc)) st = DSI_ERR_NOMEM;
    for (int l = 0; l < p->n_layers && !st; l++) {
        st = dsi_vk_buf_new(vk, kv_layer_bytes(p, false), false, &b->kc[l]);
        if (!st && kv_layer_bytes(p, true)) st = dsi_vk_buf_new(vk, kv_layer_bytes(p, true), false, &b->vc[l]);
    }
    if (!st) st = dsi_vk_buf_new(vk, (uint64_t)info_words(p) * 4, true, &b->info);
    if (!st) st = dsi_vk_buf_new(vk, widest(p), true, &b->up);
    if (!st) st = dsi_vk_buf_new(vk, widest(p), true, &b->down);
    if (!st) st = dsi_vk_buf_new(vk, 256, false, &b->dummy);
    if (!st) st = dsi_vk_buf_new(vk, part_bytes(p), false, &b->part);
    if (ex_rows(p)) {
        uint64_t r = ex_rows(p);
        if (!st) st = dsi_vk_buf_new(vk, r * (uint64_t)p->n_embd * 4, false, &b->ex_x);
        if (!st) st = dsi_vk_buf_new(vk, r * (uint64_t)p->n_ff_exp * 4, false, &b->ex_g);
        if (!st) st = dsi_vk_buf_new(vk, r * (uint64_t)p->n_ff_exp * 4, false, &b->ex_u);
        if (!st) st = dsi_vk_buf_new(vk, r * (uint64_t)p->n_embd * 4, false, &b->ex_y);
        if (!st) st = dsi_vk_buf_new(vk, r * 3 * 4, true, &b->route);
        if (!st) st = dsi_vk_buf_new(vk, r * 3 * 4, false, &b->route_dev);
    }
    VkCommandPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                  .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                  .queueFamilyIndex = vk->queue_family};
    if (!st) st = DSI_VK_CHECK(vk->f.vkCreateCommandPool(vk->dev, &pi, NULL, &b->pool));
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = b->pool,
                                      .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                      .commandBufferCount = DSI_VK_CBS};
    if (!st) st = DSI_VK_CHECK(vk->f.vkAllocateCommandBuffers(vk->dev, &ai, b->cbs));
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    for (int i = 0; i < DSI_VK_CBS && !st; i++)
        st = DSI_VK_CHECK(vk->f.vkCreateFence(vk->dev, &fi, NULL, &b->fences[i]));
    b->cb = b->cbs[0];
    b->split_at = split_dispatches();
    if (st) {
        dsi_vk_backend_free(&b->base);
        return st;
    }
    *out = &b->base;
    return DSI_OK;
}
