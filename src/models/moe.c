/* DeepSeekMoE feed-forward (models.md 0.6): a router picks n_expert_used of n_expert SwiGLU
 * experts per token, their outputs are summed with the routing weights, and the shared
 * experts (one SwiGLU of n_expert_shared * n_ff_exp) are always added.
 *
 * Tokens are grouped by expert (a counting sort of the selections), so that each active
 * expert runs one matrix product over all of its tokens and each expert's weights are read
 * once per batch; in decode only the selected experts' rows are touched. */
#include <math.h>
#include <string.h>

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

void dsi_block_ffn_moe(struct dsi_context *c, const struct dsi_layer *l, int64_t T) {
    const struct dsi_hparams *hp = &c->m->hp;
    struct dsi_scratch *s = &c->s;
    int nt = c->p.n_threads, X = hp->n_expert, k = hp->n_expert_used;
    int64_t E = hp->n_embd, F = hp->n_ff_exp;
    dsi_op_rmsnorm(s->xn, s->x, l->ffn_norm, T, E, hp->eps, nt);
    dsi_op_matmul(s->router, s->xn, T, &l->router, NULL, nt, &s->mm);
    dsi_moe_route(hp, s->router, l->router_bias, T, s->sel, s->sel_w);

    if (l->w_gate_sh.data) {
        float *y[2] = {s->gate, s->up};
        const struct dsi_tensor *W[2] = {&l->w_gate_sh, &l->w_up_sh};
        const float *b[2] = {NULL, NULL};
        dsi_op_matmul_multi(2, y, s->xn, T, W, b, nt, &s->mm);
        dsi_op_swiglu(s->gate, s->up, T * l->w_gate_sh.ne[1], nt);
        dsi_op_matmul(s->tmp, s->gate, T, &l->w_down_sh, NULL, nt, &s->mm);
        dsi_op_add(s->x, s->tmp, T * E, nt);
    }

    /* counting sort of the (token, expert) pairs by expert */
    int64_t off[X + 1];
    memset(off, 0, sizeof off);
    for (int64_t i = 0; i < T * k; i++) off[s->sel[i] + 1]++;
    for (int e = 0; e < X; e++) off[e + 1] += off[e];
    int64_t fill[X];
    memcpy(fill, off, sizeof fill);
    for (int64_t i = 0; i < T * k; i++) {
        int e = s->sel[i];
        s->ex_tok[fill[e]] = (int32_t)(i / k);
        s->ex_w[fill[e]++] = s->sel_w[i];
    }
    for (int e = 0; e < X; e++) {
        int64_t n = off[e + 1] - off[e];
        if (!n) continue;
        const int32_t *tok = s->ex_tok + off[e];
        const float *wt = s->ex_w + off[e];
        for (int64_t j = 0; j < n; j++) memcpy(s->ex_x + j * E, s->xn + tok[j] * E, (size_t)E * sizeof(float));
        struct dsi_tensor g = expert(&l->w_gate_exps, e), u = expert(&l->w_up_exps, e);
        struct dsi_tensor d = expert(&l->w_down_exps, e);
        float *y[2] = {s->gate, s->up};
        const struct dsi_tensor *W[2] = {&g, &u};
        const float *b[2] = {NULL, NULL};
        dsi_op_matmul_multi(2, y, s->ex_x, n, W, b, nt, &s->mm);
        dsi_op_swiglu(s->gate, s->up, n * F, nt);
        dsi_op_matmul(s->ex_y, s->gate, n, &d, NULL, nt, &s->mm);
        for (int64_t j = 0; j < n; j++) {
            float *xt = s->x + tok[j] * E;
            const float *yt = s->ex_y + j * E;
            for (int64_t i = 0; i < E; i++) xt[i] += wt[j] * yt[i];
        }
    }
}
