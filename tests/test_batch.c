/* Several sequences in one forward pass (dsi_context_decode_runs, the server's continuous
 * batching). The oracle is the same model evaluating each sequence alone, whose single-
 * sequence path test_model checks against transformers:
 *  - batch-invariant contexts: a sequence's logits are bit-identical whether it runs alone or
 *    with others, whatever the pass sizes (prompts split across passes, decode steps of
 *    several sequences in any order), and after rewinding its cache (prefix reuse);
 *  - ordinary contexts: the same within a small tolerance (different kernels for different
 *    token counts);
 *  - bad runs are refused without advancing any sequence.
 * Models: the default shakespeare model (bf16) and its Q8_0, Q4_0 and Q4_K_M quantizations;
 * the tiny DeepSeek-V2-Lite fixture in f32 and Q8_0 (latent attention, experts). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/convert.h"
#include "src/model.h"
#include "quant/kernels.h"
#include "src/quantize_model.h"
#include "tests/util.h"
#include "vulkan/vk.h"

#define NSEQ 3
#define STEPS 6

static int32_t argmax(const float *v, int64_t n) {
    int32_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = (int32_t)i;
    return b;
}

static const int64_t prompt_len[NSEQ] = {5, 13, 41};

/* Deterministic pseudo-random prompts (a fixed LCG), ids in [1, V). */
static void make_prompts(int32_t *p[NSEQ], int64_t V) {
    uint32_t x = 12345;
    for (int s = 0; s < NSEQ; s++) {
        p[s] = malloc((size_t)prompt_len[s] * sizeof(int32_t));
        for (int64_t i = 0; i < prompt_len[s]; i++) {
            x = x * 1664525u + 1013904223u;
            p[s][i] = (int32_t)(1 + (x >> 8) % (uint32_t)(V - 1));
        }
    }
}

static struct dsi_context *ctx(const struct dsi_model *m, int n_seq, bool invariant, int64_t n_batch) {
    struct dsi_context_params cp = dsi_context_default_params();
    cp.n_ctx = 128;
    cp.n_batch = n_batch;
    cp.n_threads = 2;
    cp.n_seq = n_seq;
    cp.batch_invariant = invariant;
    struct dsi_context *c = NULL;
    if (dsi_context_init(m, &cp, &c) != DSI_OK) return NULL;
    return c;
}

/* Largest |a - b| relative to max |b|; 0 when bit-identical. */
static double rel_diff(const float *a, const float *b, int64_t n) {
    double mx = 0, md = 0;
    for (int64_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(b[i]));
        md = fmax(md, fabs((double)a[i] - b[i]));
    }
    return mx > 0 ? md / mx : md;
}

/* Layers offloaded to the first Vulkan device (0: the CPU). */
static int g_ngl;

static void check_model(const char *label, const char *path) {
    struct dsi_model *m = NULL;
    struct dsi_model_params mp = dsi_model_default_params();
    mp.n_gpu_layers = g_ngl;
    mp.gpu_device = 0;
    if (dsi_model_load_ex(path, &mp, &m) != DSI_OK || dsi_model_gpu_layers(m) < (g_ngl ? 1 : 0)) {
        TU_CHECK(0, "%s: load %s", label, path);
        return;
    }
    int64_t V = dsi_model_n_vocab(m);
    int32_t *prompt[NSEQ];
    make_prompts(prompt, V);
    size_t row = (size_t)V * sizeof(float);
    /* reference: each sequence alone, its prompt in one pass, then greedy steps one by one */
    float *ref[2][NSEQ];
    int32_t gen[2][NSEQ][STEPS];
    for (int inv = 0; inv < 2; inv++) {
        struct dsi_context *c = ctx(m, 1, inv, 512);
        TU_CHECK(c, "%s: context", label);
        if (!c) goto out;
        for (int s = 0; s < NSEQ; s++) {
            ref[inv][s] = malloc(row * (STEPS + 1));
            TU_CHECK(dsi_context_decode(c, prompt[s], prompt_len[s], 0, false) == DSI_OK,
                     "%s: decode", label);
            memcpy(ref[inv][s], dsi_context_logits(c, -1), row);
            for (int k = 0; k < STEPS; k++) {
                int32_t t = argmax(ref[inv][s] + (size_t)k * (size_t)V, V);
                gen[inv][s][k] = t;
                struct dsi_seq_run run = {0, prompt_len[s] + k, &t, 1, true, NULL};
                dsi_context_decode_runs(c, &run, 1, false);
                memcpy(ref[inv][s] + (size_t)(k + 1) * (size_t)V, dsi_context_logits(c, -1), row);
            }
        }
        dsi_context_free(c);
    }
    for (int inv = 0; inv < 2; inv++) {
        /* passes of 16 tokens: the 41-token prompt spans three passes, shared with others */
        struct dsi_context *c = ctx(m, NSEQ, inv, 16);
        if (!c) {
            TU_CHECK(0, "%s: context", label);
            continue;
        }
        double worst = 0;
        struct dsi_seq_run runs[NSEQ];
        for (int s = 0; s < NSEQ; s++)
            runs[s] = (struct dsi_seq_run){s, 0, prompt[s], prompt_len[s], true, NULL};
        enum dsi_status st = dsi_context_decode_runs(c, runs, NSEQ, true);
        TU_CHECK(st == DSI_OK, "%s: decode_runs prompts: %d", label, st);
        for (int s = 0; s < NSEQ && st == DSI_OK; s++)
            worst = fmax(worst, rel_diff(dsi_context_logits(c, s), ref[inv][s], V));
        /* decode steps: one token per sequence, the order of the runs changing */
        for (int k = 0; k < STEPS && st == DSI_OK; k++) {
            int32_t tok[NSEQ];
            for (int i = 0; i < NSEQ; i++) {
                int s = k % 2 ? NSEQ - 1 - i : i;
                tok[i] = gen[inv][s][k];
                runs[i] = (struct dsi_seq_run){s, prompt_len[s] + k, &tok[i], 1, true, NULL};
            }
            st = dsi_context_decode_runs(c, runs, NSEQ, false);
            TU_CHECK(st == DSI_OK, "%s: decode step %d", label, k);
            for (int i = 0; i < NSEQ && st == DSI_OK; i++) {
                int s = runs[i].seq;
                const float *l = dsi_context_logits(c, i);
                worst = fmax(worst, rel_diff(l, ref[inv][s] + (size_t)(k + 1) * (size_t)V, V));
                TU_CHECK(inv == 0 || argmax(l, V) == argmax(ref[inv][s] + (size_t)(k + 1) * (size_t)V, V),
                         "%s: step %d seq %d argmax", label, k, s);
            }
        }
        /* two sequences decode, one re-evaluates the end of its prompt (prefix reuse) */
        if (st == DSI_OK) {
            int32_t t1 = gen[inv][1][0];
            int64_t back = prompt_len[2] - 3;
            runs[0] = (struct dsi_seq_run){2, back, prompt[2] + back, 3, true, NULL};
            st = dsi_context_decode_runs(c, runs, 1, true);
            TU_CHECK(st == DSI_OK, "%s: rewind", label);
            if (st == DSI_OK) worst = fmax(worst, rel_diff(dsi_context_logits(c, 0), ref[inv][2], V));
            dsi_context_seq_clear(c, 1);
            TU_CHECK(dsi_context_seq_past(c, 1) == 0, "%s: clear", label);
            runs[0] = (struct dsi_seq_run){1, 0, prompt[1], prompt_len[1], true, NULL};
            runs[1] = (struct dsi_seq_run){0, 0, prompt[0], prompt_len[0], true, NULL};
            st = dsi_context_decode_runs(c, runs, 2, true);
            TU_CHECK(st == DSI_OK, "%s: after clear", label);
            if (st == DSI_OK) {
                worst = fmax(worst, rel_diff(dsi_context_logits(c, 0), ref[inv][1], V));
                worst = fmax(worst, rel_diff(dsi_context_logits(c, 1), ref[inv][0], V));
            }
            runs[0] = (struct dsi_seq_run){1, prompt_len[1], &t1, 1, true, NULL};
            st = dsi_context_decode_runs(c, runs, 1, false);
            if (st == DSI_OK) worst = fmax(worst, rel_diff(dsi_context_logits(c, 0), ref[inv][1] + V, V));
        }
        TU_LOG("%s %s: batched vs alone: worst relative logit difference %.3g\n", label,
               inv ? "batch-invariant" : "ordinary", worst);
        if (inv)
            TU_CHECK(worst == 0, "%s: batch-invariant context differs from the sequence alone by %.3g",
                     label, worst);
        else
            /* other kernels for other token counts: a last-bit difference can flip the 8-bit
             * rounding of an activation (one step of 1/127 of its block's largest value) */
            TU_CHECK(worst < 2e-2, "%s: batched differs from the sequence alone by %.3g", label, worst);

        /* refused runs leave every sequence where it was */
        int64_t past[NSEQ];
        for (int s = 0; s < NSEQ; s++) past[s] = dsi_context_seq_past(c, s);
        int32_t t = 1, bad = (int32_t)V;
        struct dsi_seq_run dup[2] = {{0, past[0], &t, 1, true, NULL}, {0, past[0], &t, 1, true, NULL}};
        TU_CHECK(dsi_context_decode_runs(c, dup, 2, false) == DSI_ERR_ARG, "%s: duplicate sequence", label);
        struct dsi_seq_run far = {1, past[1] + 1, &t, 1, true, NULL};
        TU_CHECK(dsi_context_decode_runs(c, &far, 1, false) == DSI_ERR_ARG, "%s: position gap", label);
        struct dsi_seq_run out = {NSEQ, 0, &t, 1, true, NULL};
        TU_CHECK(dsi_context_decode_runs(c, &out, 1, false) == DSI_ERR_ARG, "%s: sequence range", label);
        struct dsi_seq_run full[2] = {{0, past[0], &t, 1, true, NULL}, {2, 120, prompt[2], 20, true, NULL}};
        TU_CHECK(dsi_context_decode_runs(c, full, 2, false) != DSI_OK, "%s: past the context", label);
        struct dsi_seq_run badtok[2] = {{0, past[0], &t, 1, true, NULL}, {1, past[1], &bad, 1, true, NULL}};
        TU_CHECK(dsi_context_decode_runs(c, badtok, 2, false) == DSI_ERR_ARG, "%s: token id", label);
        for (int s = 0; s < NSEQ; s++)
            TU_CHECK(dsi_context_seq_past(c, s) == past[s], "%s: sequence %d moved on error", label, s);
        dsi_context_free(c);
    }
    for (int inv = 0; inv < 2; inv++)
        for (int s = 0; s < NSEQ; s++) free(ref[inv][s]);
out:
    for (int s = 0; s < NSEQ; s++) free(prompt[s]);
    dsi_model_free(m);
}

/* Repacked Q4_0/Q8_0 (quant/repack.c) against the row layout on the same file: the logits of a
 * prompt pass (panel GEMM for 8+ tokens, the repacked kernel below that) and of decode steps
 * agree within the activation-rounding noise, and the model says it repacked. */
static void check_repack(const char *label, const char *path) {
    struct dsi_model *mr = NULL, *mp = NULL;
    struct dsi_model_params p = dsi_model_default_params();
    if (dsi_model_load_ex(path, &p, &mr) != DSI_OK) {
        TU_CHECK(0, "%s: load", label);
        return;
    }
    p.no_repack = true;
    if (dsi_model_load_ex(path, &p, &mp) != DSI_OK) {
        TU_CHECK(0, "%s: load --no-repack", label);
        dsi_model_free(mr);
        return;
    }
    bool have = dsi_kernels_mm_x16(DSI_LAYOUT_Q4_0_X16) != NULL;
    TU_CHECK(have ? dsi_model_repacked_bytes(mr) > 0 : dsi_model_repacked_bytes(mr) == 0,
             "%s: repacked %llu bytes", label, (unsigned long long)dsi_model_repacked_bytes(mr));
    TU_CHECK(dsi_model_repacked_bytes(mp) == 0, "%s: --no-repack repacked", label);
    int64_t V = dsi_model_n_vocab(mr);
    int32_t *prompt[NSEQ];
    make_prompts(prompt, V);
    struct dsi_context *cr = ctx(mr, 1, false, 512), *cp = ctx(mp, 1, false, 512);
    double worst = 0;
    for (int s = 0; s < NSEQ && cr && cp; s++) {
        TU_CHECK(dsi_context_decode(cr, prompt[s], prompt_len[s], 0, false) == DSI_OK &&
                     dsi_context_decode(cp, prompt[s], prompt_len[s], 0, false) == DSI_OK,
                 "%s: decode", label);
        worst = fmax(worst, rel_diff(dsi_context_logits(cr, -1), dsi_context_logits(cp, -1), V));
        for (int k = 0; k < 3; k++) {
            int32_t t = argmax(dsi_context_logits(cp, -1), V);
            struct dsi_seq_run run = {0, prompt_len[s] + k, &t, 1, true, NULL};
            dsi_context_decode_runs(cr, &run, 1, false);
            dsi_context_decode_runs(cp, &run, 1, false);
            worst = fmax(worst, rel_diff(dsi_context_logits(cr, -1), dsi_context_logits(cp, -1), V));
        }
    }
    TU_LOG("%s: repacked vs row layout: worst relative logit difference %.3g\n", label, worst);
    TU_CHECK(worst < 2e-2, "%s: repacked and row layouts differ by %.3g", label, worst);
    dsi_context_free(cr);
    dsi_context_free(cp);
    for (int s = 0; s < NSEQ; s++) free(prompt[s]);
    dsi_model_free(mr);
    dsi_model_free(mp);
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    tu_capture_log(true);
    const char *base = "models/shakespeare-qwen2.gguf";
    check_model("shakespeare bf16", base);
    /* the same on the Vulkan backend (every layer and the head), when there is a device */
    struct dsi_vk_device_info vi[4];
    int nvk = 0;
    if (dsi_vk_list(vi, 4, &nvk) == DSI_OK && nvk > 0) {
        g_ngl = 99;
        check_model("shakespeare bf16 on vulkan", base);
        g_ngl = 0;
    } else {
        TU_LOG("no Vulkan device: the GPU cases are skipped\n");
    }
    static const struct {
        const char *name;
        enum dsi_ftype ft;
    } q[] = {{"Q8_0", DSI_FTYPE_Q8_0}, {"Q4_0", DSI_FTYPE_Q4_0}, {"Q4_K_M", DSI_FTYPE_Q4_K_M}};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        const char *out = tu_tmp(1, ".gguf");
        struct dsi_quantize_params p = {base, out, q[i].ft, 2, -1, -1, false, false, false, false};
        if (dsi_quantize_model(&p) != DSI_OK) {
            TU_CHECK(0, "quantize %s", q[i].name);
            continue;
        }
        char label[64];
        snprintf(label, sizeof label, "shakespeare %s", q[i].name);
        check_model(label, out);
        if (nvk > 0 && q[i].ft != DSI_FTYPE_Q8_0) {
            char vl[80];
            snprintf(vl, sizeof vl, "%s on vulkan", label);
            g_ngl = 99;
            check_model(vl, out);
            g_ngl = 0;
        }
        if (q[i].ft == DSI_FTYPE_Q4_0 || q[i].ft == DSI_FTYPE_Q8_0) check_repack(label, out);
        unlink(out);
    }
    char dir[256];
    snprintf(dir, sizeof dir, "%s/models/tiny-deepseek2-lite", tu_fixture(0, ""));
    static const enum dsi_type dt[] = {DSI_TYPE_F32, DSI_TYPE_Q8_0};
    for (int i = 0; i < 2; i++) {
        const char *out = tu_tmp(2, ".gguf");
        struct dsi_convert_params p = {dir, out, dt[i], false};
        if (dsi_convert(&p) != DSI_OK) {
            TU_CHECK(0, "convert tiny-deepseek2-lite");
            continue;
        }
        check_model(i ? "deepseek2 q8_0" : "deepseek2 f32", out);
        if (i == 0) { /* Q4_0 experts, attention and shared experts: the repacked paths of MoE */
            const char *q4 = tu_tmp(3, ".gguf");
            struct dsi_quantize_params qp = {out, q4, DSI_FTYPE_Q4_0, 2, -1, -1, true, false, false, false};
            if (dsi_quantize_model(&qp) == DSI_OK) {
                check_model("deepseek2 q4_0", q4);
                check_repack("deepseek2 q4_0", q4);
            } else {
                TU_CHECK(0, "quantize deepseek2 q4_0");
            }
            unlink(q4);
        }
        unlink(out);
    }
    return tu_finish("test_batch");
}
