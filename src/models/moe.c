/* DeepSeekMoE feed-forward (models.md 0.6): a router picks n_expert_used of n_expert SwiGLU
 * experts per token, their outputs are summed with the routing weights, and the shared
 * experts (one SwiGLU of n_expert_shared * n_ff_exp) are always added.
 *
 * Tokens are grouped by expert (a counting sort of the selections), so that each active
 * expert runs one matrix product over all of its tokens and each expert's weights are read
 * once per batch; in decode only the selected experts' rows are touched. All experts of a
 * projection run in one parallel region (dsi_op_matmul_jobs). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/kernels.h"
#include "src/model_impl.h"

/* Index of the largest value of v[0..n) not yet taken (-INFINITY marks taken/excluded);
 * ties go to the lowest index. */
static int arg_best(const float *v, int n) {
    int b = -1;
    for (int i = 0; i < n; i++)
        if (v[i] != -INFINITY && (b < 0 || v[i] > v[b])) b = i;
    return b;
}

void dsi_moe_route(const struct dsi_hparams *hp, const float *logits, const float *bias,
                   int64_t T, int32_t *sel, float *w) {
    int X = hp->n_expert, k = hp->n_expert_used, G = hp->n_group;
    float p[X], choice[X], gscore[G > 0 ? G : 1];
    for (int64_t t = 0; t < T; t++) {
        const float *lg = logits + t * X;
        if (hp->gating == DSI_GATING_SIGMOID) {
            for (int i = 0; i < X; i++) p[i] = 1.0f / (1.0f + expf(-lg[i]));
        } else {
            float mx = lg[0], sum = 0;
            for (int i = 1; i < X; i++) mx = lg[i] > mx ? lg[i] : mx;
            for (int i = 0; i < X; i++) sum += p[i] = expf(lg[i] - mx);
            for (int i = 0; i < X; i++) p[i] /= sum;
        }
        /* selection scores: the probabilities, plus the selection bias when there is one
         * (DeepSeek-V3's noaux_tc; the weights stay the unbiased probabilities) */
        for (int i = 0; i < X; i++) choice[i] = p[i] + (bias ? bias[i] : 0.0f);
        if (G > 1 && hp->n_group_used < G) {
            /* group-limited: keep the experts of the best n_group_used groups. A group's score
             * is its best expert (V2's group_limited_greedy, softmax gating) or the sum of its
             * best two (V3's noaux_tc, sigmoid gating). */
            int gs = X / G;
            for (int g = 0; g < G; g++) {
                const float *c = choice + g * gs;
                float b1 = -INFINITY, b2 = -INFINITY;
                for (int i = 0; i < gs; i++) {
                    if (c[i] > b1) b2 = b1, b1 = c[i];
                    else if (c[i] > b2) b2 = c[i];
                }
                gscore[g] = hp->gating == DSI_GATING_SIGMOID && gs > 1 ? b1 + b2 : b1;
            }
            bool keep[G];
            memset(keep, 0, sizeof keep);
            for (int j = 0; j < hp->n_group_used; j++) {
                int g = arg_best(gscore, G);
                keep[g] = true;
                gscore[g] = -INFINITY;
            }
            for (int g = 0; g < G; g++)
                if (!keep[g])
                    for (int i = 0; i < gs; i++) choice[g * gs + i] = -INFINITY;
        }
        int32_t *st = sel + t * k;
        float *wt = w + t * k, sum = 0;
        for (int j = 0; j < k; j++) {
            int e = arg_best(choice, X);
            if (e < 0) e = 0; /* fewer experts left than k: cannot happen with valid sizes */
            st[j] = e;
            choice[e] = -INFINITY;
            sum += wt[j] = p[e];
        }
        for (int j = 0; j < k; j++) {
            if (hp->expert_norm) wt[j] /= sum + 1e-20f;
            wt[j] *= hp->expert_scale;
        }
    }
}

/* Matrix e of a stack ne [K, N, n] as a 2-D tensor. */
static struct dsi_tensor expert(const struct dsi_tensor *stack, int e) {
    struct dsi_tensor t = *stack;
    t.data = (char *)stack->data + (size_t)e * stack->nb[2];
    t.ne[2] = 1;
    t.nb[3] = t.nb[2];
    return t;
}

static bool is_q8(const struct dsi_tensor *W) { return dsi_kernels(W->type)->dot_q8 != NULL; }

/* The routed and shared experts of the batch run as one batch of jobs per projection, one
 * parallel region each, on activations quantized once (models with many small experts would
 * spend their decode time in barriers otherwise). off[e]..off[e + 1]: expert e's selections
 * in the sorted order of s->ex_tok / ex_w. y += the experts of xn (both [T][n_embd]). */
static void moe_experts(struct dsi_context *c, float *y, const float *xn, int64_t T,
                        const int64_t *off, const struct dsi_tensor *const exps[3],
                        const struct dsi_tensor *const sh[3]) {
    const struct dsi_hparams *hp = &c->m->hp;
    struct dsi_scratch *s = &c->s;
    int nt = c->p.n_threads, X = hp->n_expert, k = hp->n_expert_used;
    const struct dsi_tensor *gate = exps[0], *up = exps[1], *down = exps[2];
    int64_t E = hp->n_embd, F = hp->n_ff_exp, S = sh[0]->data ? sh[0]->ne[1] : 0;
    size_t rbe = dsi_xq_row_bytes(E), rbf = dsi_xq_row_bytes(F);
    bool q_in = is_q8(gate) || is_q8(up) || (S && (is_q8(sh[0]) || is_q8(sh[1])));
    bool f_in = !is_q8(gate) || !is_q8(up);
    /* each selection's input row in expert order (decode: every selection reads row 0) */
    if (q_in) dsi_op_quantize_rows(s->ex_xqn, xn, T, E, nt);
    if (T > 1)
        for (int64_t i = 0; i < T * k; i++) {
            if (q_in) memcpy(s->ex_xq + (size_t)i * rbe, s->ex_xqn + (size_t)s->ex_tok[i] * rbe, rbe);
            if (f_in) memcpy(s->ex_x + i * E, xn + s->ex_tok[i] * E, (size_t)E * sizeof(float));
        }
    int na = 0;
    for (int e = 0; e < X; e++) na += off[e + 1] > off[e];
    struct dsi_mm_job *jobs = malloc((size_t)(2 * na + 2) * sizeof *jobs);
    struct dsi_tensor *views = malloc((size_t)(3 * na + 1) * sizeof *views);
    DSI_ASSERT(jobs && views);
    int nj = 0, nv = 0;
    if (S) {
        jobs[nj++] = (struct dsi_mm_job){s->gate, s->ex_xqn, xn, T, sh[0]};
        jobs[nj++] = (struct dsi_mm_job){s->up, s->ex_xqn, xn, T, sh[1]};
    }
    for (int e = 0; e < X; e++) {
        int64_t n = off[e + 1] - off[e];
        if (!n) continue;
        const uint8_t *xq = T > 1 ? s->ex_xq + (size_t)off[e] * rbe : s->ex_xqn;
        const float *x = T > 1 ? s->ex_x + off[e] * E : xn;
        views[nv] = expert(gate, e);
        views[nv + 1] = expert(up, e);
        jobs[nj++] = (struct dsi_mm_job){s->ex_g + off[e] * F, xq, x, n, &views[nv]};
        jobs[nj++] = (struct dsi_mm_job){s->ex_u + off[e] * F, xq, x, n, &views[nv + 1]};
        nv += 2;
    }
    dsi_op_matmul_jobs(nj, jobs, nt, &s->mm);
    dsi_op_swiglu(s->ex_g, s->ex_u, T * k * F, nt);
    if (is_q8(down)) dsi_op_quantize_rows(s->ex_xq, s->ex_g, T * k, F, nt);
    nj = 0;
    if (S) {
        dsi_op_swiglu(s->gate, s->up, T * S, nt);
        if (is_q8(sh[2])) dsi_op_quantize_rows(s->ex_xqs, s->gate, T, S, nt);
        jobs[nj++] = (struct dsi_mm_job){s->tmp, s->ex_xqs, s->gate, T, sh[2]};
    }
    for (int e = 0; e < X; e++) {
        int64_t n = off[e + 1] - off[e];
        if (!n) continue;
        views[nv] = expert(down, e);
        jobs[nj++] = (struct dsi_mm_job){s->ex_y + off[e] * E, s->ex_xq + (size_t)off[e] * rbf,
                                         s->ex_g + off[e] * F, n, &views[nv++]};
    }
    dsi_op_matmul_jobs(nj, jobs, nt, &s->mm);
    free(jobs);
    free(views);
    /* x[t] += shared + sum_j w_j expert_j, each token's selections in routing order */
#pragma omp parallel for num_threads(nt) schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; t++) {
        float *xt = y + t * E;
        if (S)
            for (int64_t i = 0; i < E; i++) xt[i] += s->tmp[t * E + i];
        for (int j = 0; j < k; j++) {
            int64_t slot = s->ex_slot[t * k + j];
            const float *yt = s->ex_y + slot * E;
            float w = s->ex_w[slot];
            for (int64_t i = 0; i < E; i++) xt[i] += w * yt[i];
        }
    }
}

/* Sort the (token, expert) selections of sel/w [T][k] by expert: off[e]..off[e + 1] are
 * expert e's in s->ex_tok / ex_w, s->ex_slot says where each selection went. */
static void moe_sort(struct dsi_context *c, int64_t T, const int32_t *sel, const float *w,
                     int64_t *off) {
    struct dsi_scratch *s = &c->s;
    int X = c->m->hp.n_expert, k = c->m->hp.n_expert_used;
    memset(off, 0, (size_t)(X + 1) * sizeof *off);
    for (int64_t i = 0; i < T * k; i++) off[sel[i] + 1]++;
    for (int e = 0; e < X; e++) off[e + 1] += off[e];
    int64_t fill[X];
    memcpy(fill, off, sizeof fill);
    for (int64_t i = 0; i < T * k; i++) {
        int e = sel[i];
        s->ex_slot[i] = (int32_t)fill[e];
        s->ex_tok[fill[e]] = (int32_t)(i / k);
        s->ex_w[fill[e]++] = w[i];
    }
}

void dsi_moe_cpu(struct dsi_context *c, float *y, const float *xn, int64_t T, const int32_t *sel,
                 const float *w, const struct dsi_tensor *const exps[3],
                 const struct dsi_tensor *const sh[3]) {
    int64_t off[c->m->hp.n_expert + 1];
    moe_sort(c, T, sel, w, off);
    moe_experts(c, y, xn, T, off, exps, sh);
}

void dsi_block_ffn_moe(struct dsi_context *c, struct dsi_backend *be, const struct dsi_layer *l,
                       int64_t T, bool experts_here) {
    const struct dsi_hparams *hp = &c->m->hp;
    const struct dsi_backend_ops *B = be->ops;
    struct dsi_scratch *s = &c->s;
    int64_t E = hp->n_embd;
    const struct dsi_tensor *exps[3] = {&l->w_gate_exps, &l->w_up_exps, &l->w_down_exps};
    const struct dsi_tensor *sh[3] = {&l->w_gate_sh, &l->w_up_sh, &l->w_down_sh};
    B->rmsnorm(be, DSI_ACT_XN, DSI_ACT_X, l->ffn_norm, T, E, E, hp->eps);
    if (experts_here) {
        /* the router on be, the routing on the host */
        const enum dsi_act y = DSI_ACT_ROUTER;
        const struct dsi_tensor *W = &l->router;
        B->matmul(be, 1, &y, DSI_ACT_XN, T, &W, NULL);
        struct dsi_moe_gate g = {hp->n_expert,       hp->n_expert_used, hp->n_group,
                                 hp->n_group_used,   hp->gating == DSI_GATING_SIGMOID,
                                 hp->expert_norm,    hp->expert_scale,  l->router_bias};
        if (B->moe_gate && B->moe_gate(be, T, &g, exps)) { /* routed on the device */
            B->moe(be, DSI_ACT_X, DSI_ACT_XN, T, hp->n_expert_used, NULL, NULL, exps, sh);
            return;
        }
        if (!B->host(be, DSI_ACT_ROUTER) &&
            (c->pass_err = B->get(be, DSI_ACT_ROUTER, 0, s->router, T * hp->n_expert)))
            return;
        dsi_moe_route(hp, s->router, l->router_bias, T, s->sel, s->sel_w);
        B->moe(be, DSI_ACT_X, DSI_ACT_XN, T, hp->n_expert_used, s->sel, s->sel_w, exps, sh);
        return;
    }
    /* the routed experts on the CPU (they did not fit on be's device): the normed inputs come
     * back (one wait), the router and experts run here, the shared experts on be */
    DSI_ASSERT(be != &c->cpu.base);
    if ((c->pass_err = B->get(be, DSI_ACT_XN, 0, s->xn, T * E))) return;
    if (sh[0]->data) {
        const enum dsi_act y[2] = {DSI_ACT_GATE, DSI_ACT_UP};
        B->matmul(be, 2, y, DSI_ACT_XN, T, sh, NULL);
        B->swiglu(be, DSI_ACT_GATE, DSI_ACT_UP, T * sh[0]->ne[1]);
        B->matmul_add(be, DSI_ACT_X, DSI_ACT_GATE, T, sh[2], NULL);
    }
    dsi_op_matmul(s->router, s->xn, T, &l->router, NULL, c->p.n_threads, &s->mm);
    dsi_moe_route(hp, s->router, l->router_bias, T, s->sel, s->sel_w);
    static const struct dsi_tensor none = {0};
    const struct dsi_tensor *no_sh[3] = {&none, &none, &none};
    memset(s->tmp, 0, (size_t)(T * E) * sizeof(float));
    dsi_moe_cpu(c, s->tmp, s->xn, T, s->sel, s->sel_w, exps, no_sh);
    B->set(be, DSI_ACT_TMP, 0, s->tmp, T * E);
    B->add(be, DSI_ACT_X, DSI_ACT_TMP, T * E);
}
