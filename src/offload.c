/* Offloading layers to a Vulkan device: the plan (how many of the last layers, and the
 * output head), the upload of their weights, and per context the backend that runs them. */
#include <stdlib.h>
#include <string.h>

#include "src/model_impl.h"

#define LAYER_MAX 20 /* tensors or vectors of a layer */

/* The tensors and vectors of layer il on the device: all of them, or without the routed
 * experts' stacks (experts false: they stay on the CPU); tensors a layer lacks have no data
 * and are skipped. */
static int layer_weights(const struct dsi_model *m, int il, bool experts, const struct dsi_tensor **t,
                         const float **v, int64_t *vn, int *nv) {
    const struct dsi_layer *l = &m->layers[il];
    const struct dsi_hparams *hp = &m->hp;
    int nt = 0;
    const struct dsi_tensor *all[] = {&l->wq,   &l->wk,   &l->wv,    &l->wo,   &l->w_gate,
                                      &l->w_up, &l->w_down, &l->wq_a, &l->wq_b, &l->wkv_a,
                                      &l->wk_b, &l->wv_b,  &l->w_gate_sh, &l->w_up_sh,
                                      &l->w_down_sh};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) t[nt++] = all[i];
    if (experts) { /* with the router (without them, the CPU routes) */
        t[nt++] = &l->router;
        t[nt++] = &l->w_gate_exps;
        t[nt++] = &l->w_up_exps;
        t[nt++] = &l->w_down_exps;
    }
    int64_t q = (int64_t)hp->n_head * hp->head_dim, kv = (int64_t)hp->n_head_kv * hp->head_dim;
    v[0] = l->attn_norm, vn[0] = hp->n_embd;
    v[1] = l->ffn_norm, vn[1] = hp->n_embd;
    v[2] = l->bq, vn[2] = q;
    v[3] = l->bk, vn[3] = kv;
    v[4] = l->bv, vn[4] = (int64_t)hp->n_head_kv * hp->head_dim_v;
    v[5] = l->q_a_norm, vn[5] = hp->q_lora_rank;
    v[6] = l->kv_a_norm, vn[6] = hp->kv_lora_rank;
    v[7] = experts ? l->router_bias : NULL, vn[7] = hp->n_expert; /* device routing */
    *nv = 8;
    return nt;
}

static uint64_t layer_bytes(const struct dsi_model *m, int il, bool experts) {
    const struct dsi_tensor *t[LAYER_MAX];
    const float *v[LAYER_MAX];
    int64_t vn[LAYER_MAX];
    int nv, nt = layer_weights(m, il, experts, t, v, vn, &nv);
    uint64_t b = 0;
    for (int i = 0; i < nt; i++) b += dsi_vk_weight_bytes(t[i]) + 256;
    for (int i = 0; i < nv; i++) b += v[i] ? (uint64_t)vn[i] * 4 + 256 : 0;
    return b;
}

static uint64_t output_bytes(const struct dsi_model *m) {
    return dsi_vk_weight_bytes(&m->output) + (uint64_t)m->hp.n_embd * 4 + 512;
}

/* Backend parameters for layers [from, n_layer) of a context. */
static struct dsi_vk_backend_params backend_params(const struct dsi_model *m, int from, bool out,
                                                   bool experts, int64_t n_batch, int64_t n_ctx,
                                                   int n_seq, enum dsi_type kv_type, bool invariant) {
    const struct dsi_hparams *hp = &m->hp;
    int64_t ff = hp->n_ff, shared = hp->n_ff_exp * hp->n_expert_shared; /* GATE/UP hold both */
    struct dsi_vk_backend_params p = {
        .n_batch = n_batch, .n_ctx = n_ctx, .n_seq = n_seq, .layer0 = from,
        .n_layers = (int)hp->n_layer - from, .n_embd = hp->n_embd, .n_ff = ff > shared ? ff : shared,
        .n_expert = hp->n_expert, .n_expert_used = experts ? hp->n_expert_used : 0,
        .n_ff_exp = hp->n_ff_exp,
        .n_vocab = hp->n_vocab, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv,
        .head_dim = hp->head_dim, .head_dim_v = hp->head_dim_v, .rope_dims = hp->rope_dims,
        .q_lora = hp->q_lora_rank, .kv_lora = hp->kv_lora_rank, .kv_type = kv_type,
        .output = out, .batch_invariant = invariant};
    return p;
}

enum dsi_status dsi_model_offload(struct dsi_model *m, const struct dsi_model_params *p) {
    const struct dsi_hparams *hp = &m->hp;
    int nl = (int)hp->n_layer;
    bool autop = p->n_gpu_layers == DSI_NGL_AUTO;
    if (p->n_gpu_layers < 0 && !autop) {
        DSI_LOG_ERR("offload: %d GPU layers", p->n_gpu_layers);
        return DSI_ERR_ARG;
    }
    /* Latent attention of the legacy layout (kv_b for all heads) would need transposed
     * per-head products: such a model offloads only its vision tower, if it has one. */
    bool layers_ok = !hp->mla_legacy;
    if (!layers_ok) {
        /* said as a warning only when layers were asked for explicitly */
        dsi_log(autop ? DSI_LOG_INFO : DSI_LOG_WARN, "offload: the legacy layout of latent "
                "attention (attn_kv_b) has no Vulkan path; its layers run on the CPU "
                "(re-convert the model for the current layout)");
        if (!m->vl2) return DSI_OK;
    }
    struct dsi_vk_params vp = dsi_vk_default_params();
    vp.device = p->gpu_device;
    vp.budget = p->vram_budget;
    vp.validation = p->gpu_validation;
    if (autop && p->gpu_device < 0) {
        /* auto never picks a CPU implementation of Vulkan by itself */
        struct dsi_vk_device_info info[16];
        int n = 0;
        if (dsi_vk_list(info, 16, &n) || n == 0) return DSI_OK;
        vp.device = -1;
        for (int i = 0; i < n && i < 16 && vp.device < 0; i++)
            if (strcmp(info[i].type, "cpu")) vp.device = i;
        if (vp.device < 0) {
            dsi_log(DSI_LOG_INFO, "offload: no GPU (only a CPU Vulkan device); running on the CPU");
            return DSI_OK;
        }
    }
    enum dsi_status st = dsi_vk_open(&vp, &m->vk);
    if (st == DSI_ERR_ARG) return st;
    if (st) {
        DSI_LOG_WRN("offload: no usable Vulkan device; running on the CPU");
        return DSI_OK;
    }
    /* the vision tower first: the most compute per byte */
    bool tower = m->vl2 && dsi_vl2_offload(m->vl2, m->vk) == DSI_OK;
    if (!layers_ok) {
        if (!tower) {
            dsi_vk_close(m->vk);
            m->vk = NULL;
        }
        return DSI_OK;
    }
    /* the plan: the most of the last layers (and the head when all fit) within the budget;
     * a MoE model's routed experts go with their layers unless --cpu-moe, or unless the auto
     * plan cannot fit every layer with its experts: then all layers without them (the layout
     * for small cards: attention, shared experts and cache on the GPU) */
    bool moe = hp->n_expert > 0, experts = moe && !p->cpu_moe;
    int want = autop ? nl + 1 : (p->n_gpu_layers > nl ? nl + 1 : p->n_gpu_layers);
    int64_t ctx = p->gpu_ctx > 0 ? p->gpu_ctx : 4096;
    if (hp->n_ctx_train > 0 && ctx > hp->n_ctx_train) ctx = hp->n_ctx_train;
    uint64_t budget = dsi_vk_budget(m->vk) - dsi_vk_used(m->vk);
    if (autop) {
        int ns = p->gpu_seqs > 0 ? p->gpu_seqs : 1;
        for (int pass = 0; pass < 2; pass++) {
            struct dsi_vk_backend_params bp =
                backend_params(m, nl, true, experts, 512, ctx, ns, DSI_TYPE_F16, false);
            uint64_t need = dsi_vk_backend_bytes(&bp);
            struct dsi_vk_backend_params one =
                backend_params(m, nl - 1, false, experts, 1, ctx, ns, DSI_TYPE_F16, false);
            struct dsi_vk_backend_params none =
                backend_params(m, nl, false, experts, 1, ctx, ns, DSI_TYPE_F16, false);
            uint64_t kv_layer = dsi_vk_backend_bytes(&one) - dsi_vk_backend_bytes(&none);
            int k = 0;
            for (; k < nl; k++) {
                uint64_t lb = layer_bytes(m, nl - 1 - k, experts) + kv_layer;
                if (need + lb > budget) break;
                need += lb;
            }
            want = k == nl && need + output_bytes(m) <= budget ? nl + 1 : k;
            if (want == nl + 1 || !experts) break;
            dsi_log(DSI_LOG_INFO, "offload: %d of %d layers fit with their experts; planning "
                    "the routed experts on the CPU instead", k, nl);
            experts = false;
        }
    }
    int from = nl;
    uint64_t up = 0;
    for (int il = nl - 1; il >= nl - (want > nl ? nl : want); il--) {
        const struct dsi_tensor *t[LAYER_MAX];
        const float *v[LAYER_MAX];
        int64_t vn[LAYER_MAX];
        int nv, nt = layer_weights(m, il, experts, t, v, vn, &nv);
        struct dsi_vk_group *g;
        if (dsi_vk_upload(m->vk, t, nt, v, vn, nv, &g)) {
            DSI_LOG_WRN("offload: layer %d does not fit on the device (%.0f of %.0f MiB used); "
                        "it and the layers before it run on the CPU", il,
                        (double)dsi_vk_used(m->vk) / 1048576.0,
                        (double)dsi_vk_budget(m->vk) / 1048576.0);
            break;
        }
        up += layer_bytes(m, il, experts);
        from = il;
    }
    m->gpu_experts = experts;
    m->gpu_from = from;
    if (want > nl && from == 0) {
        const struct dsi_tensor *t[1] = {&m->output};
        const float *v[1] = {m->out_norm};
        int64_t vn[1] = {hp->n_embd};
        struct dsi_vk_group *g;
        if (dsi_vk_upload(m->vk, t, 1, v, vn, 1, &g))
            DSI_LOG_WRN("offload: the output head does not fit on the device; it runs on the CPU");
        else
            m->gpu_out = true, up += output_bytes(m);
    }
    if (from == nl && !m->gpu_out && !tower) {
        DSI_LOG_WRN("offload: nothing fits on %s; running on the CPU", dsi_vk_info(m->vk)->name);
        dsi_vk_close(m->vk);
        m->vk = NULL;
        return DSI_OK;
    }
    dsi_log(DSI_LOG_INFO, "offload: %d of %d layers%s%s on %s: %.0f MiB of weights (budget %.0f MiB)",
            nl - from, nl, moe ? (experts ? " with their experts" : " (routed experts on the CPU)") : "",
            m->gpu_out ? " and the output head" : "", dsi_vk_info(m->vk)->name,
            (double)up / 1048576.0, (double)dsi_vk_budget(m->vk) / 1048576.0);
    return DSI_OK;
}

void dsi_context_offload(struct dsi_context *c) {
    const struct dsi_model *m = c->m;
    if (!m->vk || (m->gpu_from == (int)m->hp.n_layer && !m->gpu_out)) return;
    if (c->p.mla_naive && m->hp.kv_lora_rank) {
        dsi_log(DSI_LOG_INFO, "offload: the naive form of latent attention runs on the CPU");
        return;
    }
    struct dsi_vk_backend_params bp =
        backend_params(m, m->gpu_from, m->gpu_out, m->gpu_experts, c->p.n_batch, c->p.n_ctx,
                       c->p.n_seq, c->p.kv_type, c->p.batch_invariant);
    if (dsi_vk_backend_new(m->vk, &bp, &c->gpu)) {
        DSI_LOG_WRN("offload: no device memory for this context's cache and scratch "
                    "(%.0f MiB); it runs on the CPU", (double)dsi_vk_backend_bytes(&bp) / 1048576.0);
        c->gpu = NULL;
        return;
    }
    c->gpu_from = m->gpu_from;
    c->gpu_out = m->gpu_out;
    c->gpu_experts = m->gpu_experts;
}

int dsi_model_gpu_layers(const struct dsi_model *m) { return m->vk ? (int)m->hp.n_layer - m->gpu_from : 0; }
bool dsi_model_gpu_output(const struct dsi_model *m) { return m->vk && m->gpu_out; }
int dsi_model_n_expert(const struct dsi_model *m) { return m->hp.n_expert; }
bool dsi_model_gpu_experts(const struct dsi_model *m) {
    return m->vk && m->hp.n_expert > 0 && m->gpu_experts && m->gpu_from < (int)m->hp.n_layer;
}
const char *dsi_model_gpu_name(const struct dsi_model *m) { return m->vk ? dsi_vk_info(m->vk)->name : NULL; }
int dsi_model_gpu_validation_errors(const struct dsi_model *m) {
    return m->vk ? dsi_vk_validation_errors(m->vk) : 0;
}
