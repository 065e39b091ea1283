/* CPU operators (see ops.h). The fast paths go through the kernel table (quant/kernels.h)
 * and OpenMP; the references are plain loops in the order a reader expects. */
#include "src/ops.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "quant/kernels.h"

#ifdef DSI_HAVE_BLAS
#include <cblas.h>
#include <pthread.h>

/* OpenBLAS's own thread pool is set to one thread, once: our OpenMP threads call it in
 * parallel on separate blocks (OpenBLAS's setting is process-wide; nothing else in the
 * process uses BLAS). */
void openblas_set_num_threads(int);
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_one(void) {
    openblas_set_num_threads(1);
}
static void blas_single_thread(void) {
    pthread_once(&blas_once, blas_one);
}
#endif

bool dsi_op_have_blas(void) {
#ifdef DSI_HAVE_BLAS
    return true;
#else
    return false;
#endif
}

/* ---- matmul ---------------------------------------------------------------------------- */

size_t dsi_op_gemm_scratch(int64_t K, int64_t T) {
    size_t panel = (dsi_gemm_panel_bytes(K) + 63) & ~(size_t)63;
    return panel + (((size_t)T * DSI_GEMM_ROWS * sizeof(float) + 63) & ~(size_t)63);
}

/* Thread tid's GEMM panel and partial-output buffer: from the scratch when it is large
 * enough (no allocation in the hot path), else allocated (*owned, freed by the caller). */
static void gemm_buffers(struct dsi_matmul_scratch *s, int tid, int64_t K, int64_t T,
                         uint8_t **panel, float **part, void **owned) {
    size_t need = dsi_op_gemm_scratch(K, T);
    uint8_t *b = NULL;
    *owned = NULL;
    if (s && s->gemm && s->gemm_stride >= need) b = s->gemm + (size_t)tid * s->gemm_stride;
    else b = *owned = aligned_alloc(64, need);
    DSI_ASSERT(b);
    *panel = b;
    *part = (float *)(void *)(b + ((dsi_gemm_panel_bytes(K) + 63) & ~(size_t)63));
}

static int64_t gemm_min(const struct dsi_matmul_scratch *s) {
    return s && s->gemm_min_t > 0 ? s->gemm_min_t : DSI_GEMM_MIN_T;
}
#ifdef DSI_HAVE_BLAS
static int64_t blas_min(const struct dsi_matmul_scratch *s) {
    return s && s->blas_min_t > 0 ? s->blas_min_t : DSI_BLAS_MIN_T;
}
#endif

/* Rows [r0, r0 + 16) of a repacked matrix for tokens [t0, t1): one panel, every token. */
static void x16_chunk(const struct dsi_tensor *W, int64_t r0, const uint8_t *xq, size_t rb,
                      int64_t t0, int64_t t1, float *y, const float *bias) {
    int64_t K = W->ne[0], N = W->ne[1];
    const uint8_t *panel = (const uint8_t *)W->data + (size_t)r0 * W->nb[1];
    dsi_kernels_mm_x16(W->layout)(K, panel, xq + (size_t)t0 * rb, rb, t1 - t0, y + t0 * N + r0, (size_t)N);
    if (bias)
        for (int64_t t = t0; t < t1; t++)
            for (int64_t r = r0; r < r0 + DSI_X16_ROWS; r++) y[t * N + r] += bias[r];
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

void dsi_op_matmul_ref(float *y, const float *x, int64_t T, const struct dsi_tensor *W,
                       const float *bias) {
    int64_t K = W->ne[0], N = W->ne[1];
    const struct dsi_type_kernels *kt = dsi_kernels(W->type);
    dsi_to_f32_fn to_f32 = W->type == DSI_TYPE_F16    ? dsi_to_f32_f16_ref
                           : W->type == DSI_TYPE_BF16 ? dsi_to_f32_bf16_ref
                                                      : kt->to_f32;
    float *row = malloc((size_t)K * sizeof *row);
    DSI_ASSERT(row);
    for (int64_t r = 0; r < N; r++) {
        to_f32(dsi_tensor_row(W, r), row, K);
        for (int64_t t = 0; t < T; t++) {
            const float *xt = x + t * K;
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)row[k] * xt[k];
            y[t * N + r] = (float)s + (bias ? bias[r] : 0.0f);
        }
    }
    free(row);
}

/* Rows [r0, r1) for all T tokens, DSI_DOT_MAX_X tokens per kernel call so that each weight
 * row is read from memory once per group of tokens. */
static void matmul_rows(float *y, const float *x, int64_t T, const struct dsi_tensor *W,
                        const float *bias, int64_t r0, int64_t r1, dsi_dot_f32_fn dot) {
    int64_t K = W->ne[0], N = W->ne[1];
    for (int64_t r = r0; r < r1; r++) {
        const void *w = dsi_tensor_row(W, r);
        for (int64_t t = 0; t < T; t += DSI_DOT_MAX_X) {
            int nx = (int)(T - t < DSI_DOT_MAX_X ? T - t : DSI_DOT_MAX_X);
            dot(K, w, x + t * K, (size_t)K, nx, y + t * N + r, (size_t)N);
        }
        if (bias)
            for (int64_t t = 0; t < T; t++)
                y[t * N + r] += bias[r];
    }
}

/* Shares of work with stealing, for regions whose items cost about the same (decode): thread
 * i owns items [b_i, b_{i+1}), takes them from the front a few at a time through its own
 * counter (an uncontended atomic), and when its share is done takes from the back of the
 * others' (a thread slowed down by a neighbour no longer holds up the region). Each share:
 * front in the low 32 bits, end in the high 32 bits. */
struct steal_share {
    _Alignas(64) _Atomic uint64_t r;
};

static bool steal_next(struct steal_share *sh, int n, int id, int64_t own_g, int64_t steal_g,
                       int64_t *lo, int64_t *hi) {
    for (int k = 0; k < n; k++) {
        int v = (id + k) % n;
        uint64_t cur = atomic_load_explicit(&sh[v].r, memory_order_relaxed);
        for (;;) {
            int64_t f = (int64_t)(cur & 0xffffffffu), e = (int64_t)(cur >> 32);
            if (f >= e) break;
            int64_t a, b;
            uint64_t nw;
            if (k == 0) { /* own share: from the front */
                a = f, b = f + own_g < e ? f + own_g : e;
                nw = (uint64_t)e << 32 | (uint64_t)b;
            } else { /* another's: from the back */
                a = e - steal_g > f ? e - steal_g : f, b = e;
                nw = (uint64_t)a << 32 | (uint64_t)f;
            }
            if (atomic_compare_exchange_weak_explicit(&sh[v].r, &cur, nw, memory_order_relaxed,
                                                      memory_order_relaxed)) {
                *lo = a, *hi = b;
                return true;
            }
        }
    }
    return false;
}

/* Chunk c (16 rows of one of the nm matrices) of matmul_q8 for tokens [t0, t1). */
static void q8_chunk(int nm, float *const *y, const uint8_t *xq, size_t rb,
                     const struct dsi_tensor *const *W, const float *const *bias,
                     const int64_t *first, int64_t c, int64_t t0, int64_t t1) {
    const int64_t chunk = 16;
    int m = 0;
    while (m < nm - 1 && c >= first[m + 1]) m++;
    const struct dsi_tensor *Wm = W[m];
    int64_t K = Wm->ne[0], N = Wm->ne[1];
    float *ym = y[m];
    dsi_dot_q8_fn dot = dsi_kernels(Wm->type)->dot_q8;
    int64_t r0 = (c - first[m]) * chunk, r1 = r0 + chunk < N ? r0 + chunk : N;
    if (Wm->layout != DSI_LAYOUT_ROWS) {
        x16_chunk(Wm, r0, xq, rb, t0, t1, ym, bias[m]);
        return;
    }
    for (int64_t t = t0; t < t1; t += DSI_DOT_MAX_X) {
        int nx = (int)(t1 - t < DSI_DOT_MAX_X ? t1 - t : DSI_DOT_MAX_X);
        for (int64_t r = r0; r < r1; r++)
            dot(K, dsi_tensor_row(Wm, r), xq + (size_t)t * rb, rb, nx, ym + t * N + r, (size_t)N);
    }
    if (bias[m])
        for (int64_t r = r0; r < r1; r++)
            for (int64_t t = t0; t < t1; t++) ym[t * N + r] += bias[m][r];
}

/* Quantized weights: quantize the T activation rows once, then each thread takes chunks of
 * weight rows and multiplies each row with groups of DSI_DOT_MAX_X activation rows. */
/* One or more quantized matrices with the same input: x is quantized once, and the row
 * chunks of all matrices are shared out in one parallel region. */
static void matmul_q8(int nm, float *const *y, const float *x, int64_t T,
                      const struct dsi_tensor *const *W, const float *const *bias, int n_threads,
                      struct dsi_matmul_scratch *s) {
    int64_t K = W[0]->ne[0];
    dsi_quantize_x_fn quant = dsi_kernels_quantize_x();
    size_t rb = dsi_xq_row_bytes(K);
    uint8_t *xq = s && s->xq_bytes >= rb * (size_t)T ? s->xq : NULL, *owned = NULL;
    if (!xq) {
        owned = aligned_alloc(64, rb * (size_t)T);
        DSI_ASSERT(owned);
        xq = owned;
    }
    const int64_t chunk = 16;
    int64_t first[DSI_MATMUL_MAX + 1];
    first[0] = 0;
    for (int m = 0; m < nm; m++)
        first[m + 1] = first[m] + (W[m]->ne[1] + chunk - 1) / chunk;
    int64_t n_chunks = first[nm];
    /* prompts: 16-row panels unpacked once and multiplied with all tokens (quant/gemm.c) */
    dsi_gemm_fn gemm = T >= gemm_min(s) ? dsi_kernels_gemm() : NULL;
    for (int m = 0; m < nm && gemm; m++)
        if ((!dsi_gemm_can_pack(W[m]->type) && W[m]->layout == DSI_LAYOUT_ROWS) || K % 32) gemm = NULL;
    if (gemm) {
        DSI_ASSERT(chunk == DSI_GEMM_ROWS);
#pragma omp parallel num_threads(n_threads)
        {
#pragma omp for schedule(static)
            for (int64_t t = 0; t < T; t++)
                quant(x + t * K, xq + (size_t)t * rb, K);
            uint8_t *panel;
            float *part;
            void *own;
            gemm_buffers(s, thread_id(), K, T, &panel, &part, &own);
#pragma omp for schedule(dynamic, 1)
            for (int64_t c = 0; c < n_chunks; c++) {
                int m = 0;
                while (c >= first[m + 1])
                    m++;
                const struct dsi_tensor *Wm = W[m];
                int64_t N = Wm->ne[1], r0 = (c - first[m]) * chunk;
                int nr = (int)(N - r0 < chunk ? N - r0 : chunk);
                int off = Wm->layout != DSI_LAYOUT_ROWS
                              ? dsi_gemm_pack_x16(Wm->layout, dsi_tensor_row(Wm, r0), K, panel)
                              : dsi_gemm_pack(Wm->type, dsi_tensor_row(Wm, r0), Wm->nb[1], nr, K, panel);
                if (nr == DSI_GEMM_ROWS) {
                    gemm(K, panel, off, xq, rb, T, y[m] + r0, (size_t)N);
                } else { /* the last panel of a matrix: only nr of its rows exist */
                    gemm(K, panel, off, xq, rb, T, part, DSI_GEMM_ROWS);
                    for (int64_t t = 0; t < T; t++)
                        memcpy(y[m] + t * N + r0, part + t * DSI_GEMM_ROWS,
                               (size_t)nr * sizeof *part);
                }
                if (bias[m])
                    for (int64_t t = 0; t < T; t++)
                        for (int r = 0; r < nr; r++)
                            y[m][t * N + r0 + r] += bias[m][r0 + r];
            }
            free(own);
        }
        free(owned);
        return;
    }
    /* decode (one token tile): the chunks cost the same; shares with stealing */
    int nsh = n_threads > 0 ? n_threads : 1;
    int64_t tile0 = (int64_t)((128u << 10) / rb) / DSI_DOT_MAX_X * DSI_DOT_MAX_X;
    struct steal_share *sh = T <= tile0 && T <= DSI_DOT_MAX_X && nsh > 1
                                 ? aligned_alloc(64, sizeof *sh * (size_t)nsh) : NULL;
    for (int i = 0; sh && i < nsh; i++)
        atomic_init(&sh[i].r, (uint64_t)(n_chunks * (i + 1) / nsh) << 32 | (uint64_t)(n_chunks * i / nsh));
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++)
            quant(x + t * K, xq + (size_t)t * rb, K);
        /* Token tiles of about 128 KiB of quantized activations (a multiple of the kernels'
         * token group), so that a tile stays in L2 while every row chunk passes over it; in a
         * tile, token groups outside and the chunk's rows inside, so that a group's
         * activations and the chunk's weights meet in L1. Each thread keeps its chunks (static
         * schedule) across tiles and re-reads only its own share of the weights. */
        int64_t tile = (int64_t)((128u << 10) / rb) / DSI_DOT_MAX_X * DSI_DOT_MAX_X;
        if (tile < DSI_DOT_MAX_X) tile = DSI_DOT_MAX_X;
        if (sh) { /* one tile (decode): shares with stealing */
            int64_t a, b;
            while (steal_next(sh, nsh, thread_id() % nsh, 4, 2, &a, &b))
                for (int64_t c = a; c < b; c++) q8_chunk(nm, y, xq, rb, W, bias, first, c, 0, T);
        }
        for (int64_t t0 = 0; t0 < T && !sh; t0 += tile) {
            int64_t t1 = t0 + tile < T ? t0 + tile : T;
#pragma omp for schedule(static) nowait
            for (int64_t c = 0; c < n_chunks; c++) q8_chunk(nm, y, xq, rb, W, bias, first, c, t0, t1);
        }
    }
    free(sh);
    free(owned);
}

void dsi_op_matmul_multi(int nm, float *const *y, const float *x, int64_t T,
                         const struct dsi_tensor *const *W, const float *const *bias, int n_threads,
                         struct dsi_matmul_scratch *s) {
    DSI_ASSERT(nm >= 1 && nm <= DSI_MATMUL_MAX);
    bool fused = true;
    for (int m = 0; m < nm; m++) {
        const struct dsi_type_kernels *kt = dsi_kernels(W[m]->type);
        fused = fused && kt && kt->dot_q8 && W[m]->ne[0] == W[0]->ne[0];
    }
    if (fused) {
        matmul_q8(nm, y, x, T, W, bias, n_threads, s);
        return;
    }
    for (int m = 0; m < nm; m++)
        dsi_op_matmul(y[m], x, T, W[m], bias[m], n_threads, s);
}

void dsi_op_matmul(float *y, const float *x, int64_t T, const struct dsi_tensor *W,
                   const float *bias, int n_threads, struct dsi_matmul_scratch *s) {
    int64_t K = W->ne[0], N = W->ne[1];
    const struct dsi_type_kernels *kt = dsi_kernels(W->type);
    if (kt && kt->dot_q8) {
        matmul_q8(1, &y, x, T, &W, &bias, n_threads, s);
        return;
    }
    DSI_ASSERT(kt && kt->dot_f32);
#ifdef DSI_HAVE_BLAS
    if (T >= blas_min(s) && s &&
        s->wbuf_floats >= (size_t)n_threads * DSI_BLAS_BLOCK * (size_t)K) {
        /* Each thread widens a block of weight rows to f32 in its own slice of the scratch
         * and multiplies it with single-threaded BLAS: no second thread pool competing with
         * OpenMP's for the cores. */
        blas_single_thread();
        int64_t n_blocks = (N + DSI_BLAS_BLOCK - 1) / DSI_BLAS_BLOCK;
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
        for (int64_t b = 0; b < n_blocks; b++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            int64_t r0 = b * DSI_BLAS_BLOCK, nr = N - r0 < DSI_BLAS_BLOCK ? N - r0 : DSI_BLAS_BLOCK;
            const float *wb;
            if (W->type == DSI_TYPE_F32 && W->nb[1] == (size_t)K * 4) {
                wb = (const float *)dsi_tensor_row(W, r0);
            } else {
                float *buf = s->wbuf + (size_t)tid * DSI_BLAS_BLOCK * (size_t)K;
                for (int64_t r = 0; r < nr; r++)
                    kt->to_f32(dsi_tensor_row(W, r0 + r), buf + r * K, K);
                wb = buf;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)nr, (int)K, 1.0f, x,
                        (int)K, wb, (int)K, 0.0f, y + r0, (int)N);
            if (bias)
                for (int64_t t = 0; t < T; t++)
                    for (int64_t r = r0; r < r0 + nr; r++)
                        y[t * N + r] += bias[r];
        }
        return;
    }
#endif
    (void)s;
    (void)K;
    const int64_t chunk = 16;
    int64_t n_chunks = (N + chunk - 1) / chunk;
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t c = 0; c < n_chunks; c++) {
        int64_t r0 = c * chunk, r1 = r0 + chunk < N ? r0 + chunk : N;
        matmul_rows(y, x, T, W, bias, r0, r1, kt->dot_f32);
    }
}

/* ---- batches of quantized matmuls ------------------------------------------------------ */

void dsi_op_quantize_rows(uint8_t *xq, const float *x, int64_t T, int64_t K, int n_threads) {
    dsi_quantize_x_fn quant = dsi_kernels_quantize_x();
    size_t rb = dsi_xq_row_bytes(K);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; t++)
        quant(x + t * K, xq + (size_t)t * rb, K);
}

/* Rows [r0, r0 + 16) of job j (one chunk of dsi_op_matmul_jobs). */
static inline void job_chunk(const struct dsi_mm_job *j, int64_t r0, dsi_gemm_fn gemm,
                             struct dsi_matmul_scratch *s, uint8_t *panel, float *part) {
    int64_t K = j->W->ne[0], N = j->W->ne[1];
    const struct dsi_type_kernels *kt = dsi_kernels(j->W->type);
    size_t rb = kt->dot_q8 ? dsi_xq_row_bytes(K) : 0;
    int64_t r1 = r0 + 16 < N ? r0 + 16 : N;
    if (j->W->layout != DSI_LAYOUT_ROWS && !(gemm && j->T >= gemm_min(s))) {
        x16_chunk(j->W, r0, j->xq, rb, 0, j->T, j->y, NULL);
        return;
    }
    if (gemm && kt->dot_q8 && j->T >= gemm_min(s) && dsi_gemm_can_pack(j->W->type)) {
        int nr = (int)(r1 - r0);
        int off = j->W->layout != DSI_LAYOUT_ROWS
                      ? dsi_gemm_pack_x16(j->W->layout, dsi_tensor_row(j->W, r0), K, panel)
                      : dsi_gemm_pack(j->W->type, dsi_tensor_row(j->W, r0), j->W->nb[1], nr, K, panel);
        if (nr == DSI_GEMM_ROWS) {
            gemm(K, panel, off, j->xq, rb, j->T, j->y + r0, (size_t)N);
        } else {
            gemm(K, panel, off, j->xq, rb, j->T, part, DSI_GEMM_ROWS);
            for (int64_t t = 0; t < j->T; t++)
                memcpy(j->y + t * N + r0, part + t * DSI_GEMM_ROWS, (size_t)nr * sizeof *part);
        }
        return;
    }
    for (int64_t t = 0; t < j->T; t += DSI_DOT_MAX_X) {
        int nx = (int)(j->T - t < DSI_DOT_MAX_X ? j->T - t : DSI_DOT_MAX_X);
        for (int64_t r = r0; r < r1; r++) {
            if (kt->dot_q8)
                kt->dot_q8(K, dsi_tensor_row(j->W, r), j->xq + (size_t)t * rb, rb, nx,
                           j->y + t * N + r, (size_t)N);
            else
                kt->dot_f32(K, dsi_tensor_row(j->W, r), j->x + t * K, (size_t)K, nx,
                            j->y + t * N + r, (size_t)N);
        }
    }
}

/* The job of chunk c: first[m] <= c < first[m + 1]. */
static int job_of(const int64_t *first, int nj, int64_t c) {
    int lo = 0, hi = nj - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (first[mid] <= c) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* The first chunk of share i of n when the chunks of job m (first[m] .. first[m + 1]) cost
 * its row length each: shares of equal total cost, in chunk order. */
static int64_t cost_split(const struct dsi_mm_job *jobs, const int64_t *first, int nj, int i, int n) {
    int64_t total = 0;
    for (int m = 0; m < nj; m++) total += (first[m + 1] - first[m]) * jobs[m].W->ne[0];
    if (i >= n) return first[nj];
    int64_t target = total / n * i + total % n * i / n, cum = 0;
    for (int m = 0; m < nj; m++) {
        int64_t k = jobs[m].W->ne[0], cm = (first[m + 1] - first[m]) * k;
        if (target < cum + cm) return first[m] + (target - cum + k - 1) / k;
        cum += cm;
    }
    return first[nj];
}

void dsi_op_matmul_jobs(int nj, const struct dsi_mm_job *jobs, int n_threads,
                        struct dsi_matmul_scratch *s) {
    const int64_t chunk = 16;
    int64_t *first = malloc((size_t)(nj + 1) * sizeof *first);
    DSI_ASSERT(first);
    first[0] = 0;
    for (int m = 0; m < nj; m++)
        first[m + 1] = first[m] + (jobs[m].T > 0 ? (jobs[m].W->ne[1] + chunk - 1) / chunk : 0);
    int64_t n_chunks = first[nj];
    dsi_gemm_fn gemm = dsi_kernels_gemm();
    int64_t kmax = 0, tmax = 0, tmin = INT64_MAX;
    for (int m = 0; m < nj; m++) {
        if (jobs[m].W->ne[0] > kmax) kmax = jobs[m].W->ne[0];
        if (jobs[m].T > tmax) tmax = jobs[m].T;
        if (jobs[m].T > 0 && jobs[m].T < tmin) tmin = jobs[m].T;
    }
    if (tmax < gemm_min(s)) gemm = NULL;
    /* Jobs of one token count (decode: every expert has one token): a static share of equal
     * cost, no shared counter (grabbing 2 chunks at a time from one counter cost V2-Lite's
     * decode a third of its speed on 2 cores). Otherwise chunks cost in proportion to their
     * job's tokens: dynamic. */
    bool uniform = tmax == tmin;
    /* uniform: shares of equal cost (a chunk costs its row length: the shared experts' down
     * rows are twice as long as the routed ones in V2-Lite), with stealing */
    int nsh = n_threads > 0 ? n_threads : 1;
    struct steal_share *sh = uniform ? aligned_alloc(64, sizeof *sh * (size_t)nsh) : NULL;
    DSI_ASSERT(sh || !uniform);
    for (int i = 0; uniform && i < nsh; i++)
        atomic_init(&sh[i].r, (uint64_t)cost_split(jobs, first, nj, i + 1, nsh) << 32 |
                                  (uint64_t)cost_split(jobs, first, nj, i, nsh));
#pragma omp parallel num_threads(n_threads)
    {
        uint8_t *panel = NULL;
        float *part = NULL;
        void *own = NULL;
        if (gemm) gemm_buffers(s, thread_id(), kmax, tmax, &panel, &part, &own);
        int lo = 0; /* the job of chunk c: first[lo] <= c < first[lo + 1] (chunks ascend) */
        if (uniform) {
            int64_t a, b;
            while (steal_next(sh, nsh, thread_id() % nsh, 4, 2, &a, &b)) {
                lo = job_of(first, nj, a);
                for (int64_t c = a; c < b; c++) {
                    while (c >= first[lo + 1]) lo++;
                    job_chunk(&jobs[lo], (c - first[lo]) * chunk, gemm, s, panel, part);
                }
            }
        } else {
#pragma omp for schedule(dynamic, 2)
            for (int64_t c = 0; c < n_chunks; c++) {
                while (c >= first[lo + 1]) lo++;
                job_chunk(&jobs[lo], (c - first[lo]) * chunk, gemm, s, panel, part);
            }
        }
        free(own);
    }
    free(sh);
    free(first);
}

/* ---- per-head matmuls ------------------------------------------------------------------ */

void dsi_op_matmul_heads(float *y, int64_t y_ld, int64_t y_hs, const float *x, int64_t x_ld,
                         int64_t x_hs, int64_t T, const struct dsi_tensor *W, int n_threads,
                         struct dsi_matmul_scratch *s) {
    int64_t K = W->ne[0], N = W->ne[1], H = W->ne[2];
    const struct dsi_type_kernels *kt = dsi_kernels(W->type);
    bool x16 = W->layout != DSI_LAYOUT_ROWS; /* repacked at load: 16-row panels per head */
    DSI_ASSERT(kt && (kt->dot_q8 || kt->dot_f32) && (!x16 || (kt->dot_q8 && N % DSI_X16_ROWS == 0)));
    bool q8 = kt->dot_q8 != NULL;
    size_t rb = q8 ? dsi_xq_row_bytes(K) : 0;
    uint8_t *xq = NULL, *owned = NULL;
    if (q8) {
        xq = s && s->xq_bytes >= rb * (size_t)(T * H) ? s->xq : NULL;
        if (!xq) {
            owned = aligned_alloc(64, rb * (size_t)(T * H));
            DSI_ASSERT(owned);
            xq = owned;
        }
    }
    dsi_quantize_x_fn quant = dsi_kernels_quantize_x();
    const int64_t chunk = 16, per_head = (N + chunk - 1) / chunk;
#pragma omp parallel num_threads(n_threads)
    {
        if (q8) {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < T * H; i++)
                quant(x + i / H * x_ld + i % H * x_hs, xq + (size_t)i * rb, K);
        }
#pragma omp for schedule(static)
        for (int64_t c = 0; c < H * per_head; c++) {
            int64_t h = c / per_head, r0 = c % per_head * chunk,
                    r1 = r0 + chunk < N ? r0 + chunk : N;
            const char *wh = (const char *)W->data + (size_t)h * W->nb[2];
            if (x16) {
                dsi_kernels_mm_x16(W->layout)(K, wh + (size_t)r0 * W->nb[1], xq + (size_t)h * rb,
                                              rb * (size_t)H, T, y + h * y_hs + r0, (size_t)y_ld);
                continue;
            }
            for (int64_t t = 0; t < T; t += DSI_DOT_MAX_X) {
                int nx = (int)(T - t < DSI_DOT_MAX_X ? T - t : DSI_DOT_MAX_X);
                float *yt = y + t * y_ld + h * y_hs;
                for (int64_t r = r0; r < r1; r++) {
                    const void *w = wh + (size_t)r * W->nb[1];
                    if (q8)
                        kt->dot_q8(K, w, xq + (size_t)(t * H + h) * rb, rb * (size_t)H, nx, yt + r,
                                   (size_t)y_ld);
                    else
                        kt->dot_f32(K, w, x + t * x_ld + h * x_hs, (size_t)x_ld, nx, yt + r,
                                    (size_t)y_ld);
                }
            }
        }
    }
    free(owned);
}

void dsi_op_matmul_heads_t(float *y, int64_t y_ld, int64_t y_hs, const float *x, int64_t x_ld,
                           int64_t x_hs, int64_t T, const struct dsi_tensor *W, int n_threads) {
    int64_t N = W->ne[0], K = W->ne[1], H = W->ne[2];
    const struct dsi_type_kernels *kt = dsi_kernels(W->type);
    bool x16 = W->layout != DSI_LAYOUT_ROWS; /* repacked: each row unpacked from its panel */
    DSI_ASSERT(kt && kt->to_f32 && (!x16 || K % DSI_X16_ROWS == 0));
    const int64_t tb = 64, blocks = (T + tb - 1) / tb;
#pragma omp parallel num_threads(n_threads)
    {
        float *row = malloc((size_t)N * sizeof *row);
        void *raw = x16 ? malloc(W->nb[1]) : NULL;
        DSI_ASSERT(row && (raw || !x16));
#pragma omp for schedule(static)
        for (int64_t w = 0; w < H * blocks; w++) {
            int64_t h = w / blocks, t0 = w % blocks * tb, t1 = t0 + tb < T ? t0 + tb : T;
            const char *wh = (const char *)W->data + (size_t)h * W->nb[2];
            for (int64_t t = t0; t < t1; t++)
                memset(y + t * y_ld + h * y_hs, 0, (size_t)N * sizeof *y);
            for (int64_t k = 0; k < K; k++) {
                const void *src = wh + (size_t)k * W->nb[1];
                if (x16) {
                    dsi_x16_unpack_row(W->layout, wh + (size_t)(k / DSI_X16_ROWS) * DSI_X16_ROWS * W->nb[1],
                                       N, (int)(k % DSI_X16_ROWS), raw);
                    src = raw;
                }
                kt->to_f32(src, row, N);
                for (int64_t t = t0; t < t1; t++) {
                    float a = x[t * x_ld + h * x_hs + k], *yt = y + t * y_ld + h * y_hs;
                    for (int64_t n = 0; n < N; n++)
                        yt[n] += a * row[n];
                }
            }
        }
        free(row);
        free(raw);
    }
}

/* ---- rmsnorm --------------------------------------------------------------------------- */

static void rmsnorm_row(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] * scale) * w[i];
}

void dsi_op_rmsnorm_ref(float *y, const float *x, const float *w, int64_t T, int64_t n, float eps) {
    for (int64_t t = 0; t < T; t++)
        rmsnorm_row(y + t * n, x + t * n, w, n, eps);
}

void dsi_op_rmsnorm(float *y, const float *x, const float *w, int64_t T, int64_t n, float eps,
                    int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; t++)
        rmsnorm_row(y + t * n, x + t * n, w, n, eps);
}

/* ---- rope ------------------------------------------------------------------------------ */

static void rope_head(float *v, const float *cs, const float *sn, const struct dsi_rope *r) {
    int half = r->n_dims / 2;
    for (int i = 0; i < half; i++) {
        int a = r->mode == DSI_ROPE_NEOX ? i : 2 * i;
        int b = r->mode == DSI_ROPE_NEOX ? i + half : 2 * i + 1;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x0 * sn[i] + x1 * cs[i];
    }
}

void dsi_op_rope_ref(float *x, int64_t T, int n_head, int head_dim, const int32_t *pos,
                     const struct dsi_rope *r) {
    float cs[512], sn[512];
    DSI_ASSERT(r->n_dims <= 1024 && r->n_dims <= head_dim);
    for (int64_t t = 0; t < T; t++) {
        dsi_rope_table(cs, sn, pos[t], r);
        for (int h = 0; h < n_head; h++)
            rope_head(x + (t * n_head + h) * head_dim, cs, sn, r);
    }
}

void dsi_op_rope(float *x, int64_t T, int n_head, int head_dim, const int32_t *pos,
                 const struct dsi_rope *r, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; t++) {
        float cs[512], sn[512];
        dsi_rope_table(cs, sn, pos[t], r);
        for (int h = 0; h < n_head; h++)
            rope_head(x + (t * n_head + h) * head_dim, cs, sn, r);
    }
}

/* ---- KV cache and attention ------------------------------------------------------------ */

static void store_row(enum dsi_type type, void *dst, const float *src, int64_t n) {
    if (type == DSI_TYPE_F32) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++)
        d[i] = dsi_f32_to_f16(src[i]);
}

void dsi_op_kv_store(const struct dsi_kv_view *kv, const float *k, const float *v, int64_t pos0,
                     int64_t T, int n_threads) {
    size_t es = (size_t)dsi_type_traits(kv->type)->size;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; t++) {
        store_row(kv->type, (char *)kv->k + (size_t)(pos0 + t) * kv->k_row * es, k + t * kv->k_row,
                  kv->k_row);
        if (v)
            store_row(kv->type, (char *)kv->v + (size_t)(pos0 + t) * kv->v_row * es,
                      v + t * kv->v_row, kv->v_row);
    }
}

/* One KV head's group of G query heads at one position, attending to cache rows [0, n): the
 * scores of up to DSI_DOT_MAX_X heads against each key row come from one kernel call on the
 * stored (f16/f32) row; the value sums of all G heads from one dsi_acc_rows kernel call.
 * s: G * n floats. */
/* Softmax of G rows of n scores (rows ss apart) scaled by scale, in place. */
static void softmax_scaled(float *s, int G, int64_t n, size_t ss, float scale) {
    for (int g = 0; g < G; g++) {
        float *sg = s + (size_t)g * ss, mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n; j++) {
            sg[j] *= scale;
            if (sg[j] > mx) mx = sg[j];
        }
        for (int64_t j = 0; j < n; j++) {
            sg[j] = expf(sg[j] - mx);
            sum += sg[j];
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < n; j++)
            sg[j] *= inv;
    }
}

static void attend_group(float *out, const float *q, int G, const struct dsi_kv_view *kv, int kvh,
                         int64_t n, const struct dsi_attn_params *p,
                         const struct dsi_type_kernels *kt, float *s) {
    size_t es = (size_t)dsi_type_traits(kv->type)->size;
    const char *kb = (const char *)kv->k + (size_t)kvh * p->head_dim * es;
    const char *vb = (const char *)kv->v + (size_t)kvh * p->head_dim_v * es;
    for (int64_t j = 0; j < n; j++)
        for (int g0 = 0; g0 < G; g0 += DSI_DOT_MAX_X) {
            int nx = G - g0 < DSI_DOT_MAX_X ? G - g0 : DSI_DOT_MAX_X;
            kt->dot_f32(p->head_dim, kb + (size_t)j * kv->k_row * es, q + (size_t)g0 * p->head_dim,
                        (size_t)p->head_dim, nx, s + (size_t)g0 * n + j, (size_t)n);
        }
    softmax_scaled(s, G, n, (size_t)n, p->scale);
    dsi_kernels_acc_rows(kv->type)(p->head_dim_v, n, G, s, (size_t)n, vb, (size_t)kv->v_row * es,
                                   out, (size_t)p->head_dim_v);
}

/* Keys in the transposed f32 layout of the prompt path, per KV head D x n16 floats. */
#define KT_MAX_DIM 256

/* A prompt of one sequence (16 tokens or more): the keys of each KV head converted to f32 and
 * transposed once (kt[d][j]), then per token its group's scores as a small matrix product, 16
 * keys per vector, instead of a dot product per key and head with the key converted each
 * time. False (nothing done) when it does not apply or the keys' buffer cannot be had. */
static bool attention_prompt(const struct dsi_attn_seg *g, const struct dsi_attn_params *p,
                             int n_threads, float *scratch, int64_t n_ctx) {
    const struct dsi_kv_view *kv = g->kv;
    const int64_t D = p->head_dim, n = g->pos0 + g->T, n16 = (n + 15) / 16 * 16;
    const int group = p->n_head / p->n_head_kv;
    dsi_to_f32_fn to_f32 = dsi_kernels(kv->type) ? dsi_kernels(kv->type)->to_f32 : NULL;
    dsi_acc_rows_fn acc = dsi_kernels_acc_rows(kv->type);
    if (g->T < 16 || D > KT_MAX_DIM || D % 16 || !to_f32 || !acc) return false;
    size_t per = (size_t)D * (size_t)n16, es = (size_t)dsi_type_traits(kv->type)->size;
    float *kt = aligned_alloc(64, per * (size_t)p->n_head_kv * sizeof(float));
    if (!kt) return false;
    dsi_scores_kt_fn scores = dsi_kernels_scores_kt();
    const int64_t nblk = n16 / 16;
    size_t per_thread = dsi_op_attention_scratch(1, n_ctx, p);
#pragma omp parallel num_threads(n_threads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
#pragma omp for schedule(static)
        for (int64_t w = 0; w < p->n_head_kv * nblk; w++) {
            int64_t kvh = w / nblk, j0 = w % nblk * 16;
            float rows[16][KT_MAX_DIM];
            for (int i = 0; i < 16; i++) {
                if (j0 + i < n)
                    to_f32((const char *)kv->k + ((size_t)(j0 + i) * kv->k_row + (size_t)(kvh * D)) * es, rows[i], D);
                else
                    memset(rows[i], 0, (size_t)D * sizeof(float));
            }
            float *o = kt + (size_t)kvh * per + (size_t)j0;
            for (int64_t d = 0; d < D; d++)
                for (int i = 0; i < 16; i++) o[(size_t)d * (size_t)n16 + (size_t)i] = rows[i][d];
        }
        float *s = scratch + (size_t)tid * per_thread;
#pragma omp for schedule(dynamic, 1)
        for (int64_t w = 0; w < g->T * p->n_head_kv; w++) {
            int64_t t = w / p->n_head_kv, kvh = w % p->n_head_kv, h0 = kvh * group;
            int64_t nt = g->pos0 + t + 1, st = (nt + 15) / 16 * 16;
            scores(D, group, g->q + (t * p->n_head + h0) * D, (size_t)D, kt + (size_t)kvh * per,
                   (size_t)n16, st, s, (size_t)st);
            softmax_scaled(s, group, nt, (size_t)st, p->scale);
            acc(p->head_dim_v, nt, group, s, (size_t)st,
                (const char *)kv->v + (size_t)(kvh * p->head_dim_v) * es, (size_t)kv->v_row * es,
                g->out + (t * p->n_head + h0) * p->head_dim_v, (size_t)p->head_dim_v);
        }
    }
    free(kt);
    return true;
}

size_t dsi_op_attention_scratch(int n_threads, int64_t n_ctx, const struct dsi_attn_params *p) {
    int group = p->n_head / p->n_head_kv;
    return (size_t)n_threads * (size_t)group * (size_t)((n_ctx + 15) / 16 * 16);
}

void dsi_op_attention_segs(const struct dsi_attn_seg *segs, int nseg, const struct dsi_attn_params *p,
                           int n_threads, float *scratch, int64_t n_ctx) {
    /* prompts (every segment 16 tokens or more): keys transposed once per segment */
    bool prompt = !p->per_key && nseg > 0;
    for (int i = 0; i < nseg; i++) prompt = prompt && segs[i].T >= 16;
    int done = 0;
    while (prompt && done < nseg && attention_prompt(&segs[done], p, n_threads, scratch, n_ctx)) done++;
    if (done == nseg) return;
    segs += done, nseg -= done; /* the rest (no memory for the keys: all of it) per key */
    int group = p->n_head / p->n_head_kv;
    int64_t T = 0;
    for (int i = 0; i < nseg; i++) T += segs[i].T;
    /* few tokens and large groups (decode with MQA, latent attention): split each group's
     * heads so that every thread has work */
    int split = 1;
    while (T * p->n_head_kv * split < 2 * n_threads && split < group)
        split++;
    int gs = (group + split - 1) / split;
    split = (group + gs - 1) / gs;
    int64_t per_tok = (int64_t)p->n_head_kv * split, work = T * per_tok;
    size_t per_thread = dsi_op_attention_scratch(1, n_ctx, p);
#pragma omp parallel num_threads(n_threads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *s = scratch + (size_t)tid * per_thread;
        int si = 0;
        int64_t seg0 = 0; /* first work item of segment si */
#pragma omp for schedule(dynamic, 1)
        for (int64_t w = 0; w < work; w++) {
            while (w >= seg0 + segs[si].T * per_tok) seg0 += segs[si++].T * per_tok;
            while (w < seg0) seg0 -= segs[--si].T * per_tok;
            const struct dsi_attn_seg *g = &segs[si];
            int64_t lw = w - seg0, t = lw / per_tok;
            int kvh = (int)(lw / split % p->n_head_kv), part = (int)(lw % split);
            int h0 = kvh * group + part * gs, ng = group - part * gs < gs ? group - part * gs : gs;
            attend_group(g->out + (t * p->n_head + h0) * p->head_dim_v,
                         g->q + (t * p->n_head + h0) * p->head_dim, ng, g->kv, kvh, g->pos0 + t + 1, p,
                         dsi_kernels(g->kv->type), s);
        }
    }
}

void dsi_op_attention(float *out, const float *q, const struct dsi_kv_view *kv, int64_t pos0,
                      int64_t T, const struct dsi_attn_params *p, int n_threads, float *scratch,
                      int64_t n_ctx) {
    struct dsi_attn_seg g = {out, q, kv, pos0, T};
    dsi_op_attention_segs(&g, 1, p, n_threads, scratch, n_ctx);
}

void dsi_op_attention_ref(float *out, const float *q, const struct dsi_kv_view *kv, int64_t pos0,
                          int64_t T, const struct dsi_attn_params *p) {
    int group = p->n_head / p->n_head_kv;
    size_t es = (size_t)dsi_type_traits(kv->type)->size;
    int64_t n_max = pos0 + T;
    double *s = malloc((size_t)n_max * sizeof *s);
    float *kr = malloc((size_t)(p->head_dim + p->head_dim_v) * sizeof *kr), *vr = kr + p->head_dim;
    DSI_ASSERT(s && kr);
    dsi_to_f32_fn conv = kv->type == DSI_TYPE_F32 ? dsi_to_f32_f32_ref : dsi_to_f32_f16_ref;
    for (int64_t t = 0; t < T; t++) {
        for (int h = 0; h < p->n_head; h++) {
            int kvh = h / group;
            const float *qh = q + (t * p->n_head + h) * p->head_dim;
            int64_t n = pos0 + t + 1;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < n; j++) {
                conv((const char *)kv->k + ((size_t)j * kv->k_row + (size_t)kvh * p->head_dim) * es,
                     kr, p->head_dim);
                double d = 0;
                for (int i = 0; i < p->head_dim; i++)
                    d += (double)qh[i] * kr[i];
                s[j] = d * p->scale;
                if (s[j] > mx) mx = s[j];
            }
            for (int64_t j = 0; j < n; j++)
                sum += s[j] = exp(s[j] - mx);
            float *o = out + (t * p->n_head + h) * p->head_dim_v;
            for (int d = 0; d < p->head_dim_v; d++)
                o[d] = 0;
            for (int64_t j = 0; j < n; j++) {
                conv((const char *)kv->v +
                         ((size_t)j * kv->v_row + (size_t)kvh * p->head_dim_v) * es,
                     vr, p->head_dim_v);
                for (int d = 0; d < p->head_dim_v; d++)
                    o[d] += (float)(s[j] / sum) * vr[d];
            }
        }
    }
    free(s);
    free(kr);
}

/* ---- elementwise ----------------------------------------------------------------------- */

void dsi_op_swiglu(float *g, const float *u, int64_t n, int n_threads) {
    dsi_silu_mul_fn f = dsi_kernels_silu_mul();
    /* an exp per element: worth a parallel region from a few thousand elements; one
     * contiguous share per thread, whole 64-element pieces */
#pragma omp parallel num_threads(n_threads) if (n > 4096)
    {
        int nt = 1, tid = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads(), tid = omp_get_thread_num();
#endif
        int64_t share = ((n + nt - 1) / nt + 63) / 64 * 64, i0 = share * tid;
        int64_t i1 = i0 + share < n ? i0 + share : n;
        if (i0 < i1) f(g + i0, u + i0, i1 - i0);
    }
}

void dsi_op_add(float *y, const float *x, int64_t n, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

void dsi_op_get_rows(float *y, const struct dsi_tensor *table, const int32_t *ids, int64_t n) {
    const struct dsi_type_kernels *kt = dsi_kernels(table->type);
    DSI_ASSERT(table->layout == DSI_LAYOUT_ROWS);
    int64_t K = table->ne[0];
    for (int64_t i = 0; i < n; i++)
        kt->to_f32(dsi_tensor_row(table, ids[i]), y + i * K, K);
}

/* ---- vision encoders --------------------------------------------------------------------- */

void dsi_op_layernorm(float *y, const float *x, const float *w, const float *b, int64_t T,
                      int64_t n, float eps, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t t = 0; t < T; t++) {
        const float *r = x + t * n;
        float *o = y + t * n;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < n; i++) mean += r[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) var += (r[i] - mean) * (r[i] - mean);
        float inv = (float)(1.0 / sqrt(var / (double)n + eps)), mu = (float)mean;
        for (int64_t i = 0; i < n; i++) o[i] = (r[i] - mu) * inv * w[i] + b[i];
    }
}

/* e^x for x <= 88 in straight-line float arithmetic that vectorizes (libm's expf does
 * not): 2^n * p(r) with n = rint(x / ln 2), r = x - n ln 2 in two parts, p the degree-6
 * Taylor polynomial (relative error < 2e-7 on |r| <= ln2/2); e^x underflows to 0 below -87. */
static inline float exp_vec(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    /* round to nearest by the 1.5 * 2^23 trick (roundf is a libm call without SSE4.1) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f - n * 1.42860682030941723212e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
                                                                           r * (1.0f / 720))))));
    union {
        int32_t i;
        float f;
    } u = {((int32_t)n + 127) << 23};
    return p * u.f;
}

void dsi_op_gelu_tanh(float *x, int64_t n, int n_threads) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    /* tanh(u) = 1 - 2 / (e^(2u) + 1): the error is absolute (~1e-7), and gelu multiplies it
     * by z / 2 */
#pragma omp parallel for simd num_threads(n_threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float z = x[i], u = c * (z + 0.044715f * z * z * z);
        x[i] = 0.5f * z * (2.0f - 2.0f / (exp_vec(2.0f * u) + 1.0f));
    }
}

/* Softmax of each row of n (T rows), scaled by s first. */
static void softmax_rows(float *x, int64_t T, int64_t n, float s, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t t = 0; t < T; t++) {
        float *r = x + t * n, mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < n; i++) mx = r[i] * s > mx ? r[i] * s : mx;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < n; i++) sum += r[i] = exp_vec(r[i] * s - mx);
        float inv = 1.0f / sum;
        for (int64_t i = 0; i < n; i++) r[i] *= inv;
    }
}


enum dsi_status dsi_op_attention_full(float *out, const float *q, const float *k, const float *v,
                                      int64_t T, const struct dsi_attn_params *p, int n_threads,
                                      struct dsi_matmul_scratch *mm) {
    int64_t H = p->n_head, G = p->n_head / p->n_head_kv, hd = p->head_dim, hv = p->head_dim_v;
    int64_t qw = H * hd, kw = p->n_head_kv * hd, vw = p->n_head_kv * hv;
    float *qh = malloc((size_t)(T * hd) * sizeof *qh), *kh = malloc((size_t)(T * hd) * sizeof *kh);
    float *vt = malloc((size_t)(T * hv) * sizeof *vt), *oh = malloc((size_t)(T * hv) * sizeof *oh);
    float *sc = malloc((size_t)(T * T) * sizeof *sc);
    enum dsi_status st = qh && kh && vt && oh && sc ? DSI_OK : DSI_ERR_NOMEM;
    for (int64_t h = 0; h < H && !st; h++) {
        /* q, k as [T][hd]; v transposed to [hv][T] so that both products are x * W^T */
        int64_t kvh = h / G;
        for (int64_t t = 0; t < T; t++) {
            memcpy(qh + t * hd, q + t * qw + h * hd, (size_t)hd * sizeof(float));
            memcpy(kh + t * hd, k + t * kw + kvh * hd, (size_t)hd * sizeof(float));
            for (int64_t d = 0; d < hv; d++) vt[d * T + t] = v[t * vw + kvh * hv + d];
        }
        struct dsi_tensor K = dsi_tensor_make(DSI_TYPE_F32, hd, T, 1, 1, kh);
        struct dsi_tensor Vt = dsi_tensor_make(DSI_TYPE_F32, T, hv, 1, 1, vt);
        dsi_op_matmul(sc, qh, T, &K, NULL, n_threads, mm);
        softmax_rows(sc, T, T, p->scale, n_threads);
        dsi_op_matmul(oh, sc, T, &Vt, NULL, n_threads, mm);
        for (int64_t t = 0; t < T; t++)
            memcpy(out + t * H * hv + h * hv, oh + t * hv, (size_t)hv * sizeof(float));
    }
    free(qh);
    free(kh);
    free(vt);
    free(oh);
    free(sc);
    return st;
}
