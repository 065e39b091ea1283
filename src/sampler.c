/* Sampler (see sampler.h). Candidates are kept as (id, value) pairs; only as many of them are
 * sorted as the filters need (top-k, or a growing prefix until top-p's mass is reached), so a
 * 150k vocabulary costs a selection, not a full sort, per token. */
#include "src/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cand {
    int32_t id;
    float v; /* logit, then probability */
};

struct dsi_sampler {
    struct dsi_sampler_params p;
    int32_t n_vocab;
    struct cand *c;
    int32_t n; /* candidates left after filtering */
    int32_t *hist;
    int32_t hist_cap, hist_len, hist_pos; /* ring buffer of the last repeat_last_n tokens */
    int32_t *count;                       /* per-token occurrences in the window (scratch) */
    uint64_t rng[4];
    int32_t *out_ids;
    float *out_probs;
};

struct dsi_sampler_params dsi_sampler_default_params(void) {
    struct dsi_sampler_params p = {0.8f, 40, 0.95f, 0.05f, 1.0f, 64, 0.0f, 0.0f, 0xd5170001u};
    return p;
}

/* xoshiro256** seeded by splitmix64: small, fast, and the same on every platform. */
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double next_unit(uint64_t s[4]) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

static void seed_rng(struct dsi_sampler *s) {
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix(&x);
}

struct dsi_sampler *dsi_sampler_init(const struct dsi_sampler_params *p, int32_t n_vocab) {
    struct dsi_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = p ? *p : dsi_sampler_default_params();
    s->n_vocab = n_vocab;
    s->hist_cap = s->p.repeat_last_n < 0 ? 1 << 20 : s->p.repeat_last_n;
    s->c = malloc((size_t)n_vocab * sizeof *s->c);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    s->out_ids = malloc((size_t)n_vocab * sizeof *s->out_ids);
    s->out_probs = malloc((size_t)n_vocab * sizeof *s->out_probs);
    s->hist = malloc((size_t)(s->hist_cap ? s->hist_cap : 1) * sizeof *s->hist);
    if (!s->c || !s->count || !s->hist || !s->out_ids || !s->out_probs) {
        dsi_sampler_free(s);
        return NULL;
    }
    seed_rng(s);
    return s;
}

void dsi_sampler_free(struct dsi_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->count);
    free(s->hist);
    free(s->out_ids);
    free(s->out_probs);
    free(s);
}

void dsi_sampler_reset(struct dsi_sampler *s) {
    s->hist_len = s->hist_pos = 0;
    seed_rng(s);
}

void dsi_sampler_accept(struct dsi_sampler *s, int32_t token) {
    if (s->hist_cap == 0 || token < 0 || token >= s->n_vocab) return;
    s->hist[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->hist_cap;
    if (s->hist_len < s->hist_cap) s->hist_len++;
}

static void apply_penalties(struct dsi_sampler *s) {
    const struct dsi_sampler_params *p = &s->p;
    if (s->hist_len == 0 ||
        (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f))
        return;
    for (int32_t i = 0; i < s->hist_len; i++) s->count[s->hist[i]]++;
    for (int32_t i = 0; i < s->hist_len; i++) {
        int32_t t = s->hist[i];
        int32_t k = s->count[t];
        if (k == 0) continue; /* already applied for this token */
        float *v = &s->c[t].v;
        if (p->repeat_penalty != 1.0f) *v = *v > 0 ? *v / p->repeat_penalty : *v * p->repeat_penalty;
        *v -= p->presence_penalty + p->frequency_penalty * (float)k;
        s->count[t] = 0;
    }
}

static int cmp_desc(const void *a, const void *b) {
    float x = ((const struct cand *)a)->v, y = ((const struct cand *)b)->v;
    if (x != y) return x > y ? -1 : 1;
    int32_t i = ((const struct cand *)a)->id, j = ((const struct cand *)b)->id;
    return i < j ? -1 : i > j;
}

/* Move the k largest candidates (by v, ties by lower id) to the front, sorted. */
static void select_top(struct cand *c, int32_t n, int32_t k) {
    if (k >= n) {
        qsort(c, (size_t)n, sizeof *c, cmp_desc);
        return;
    }
    /* quickselect on the comparator, then sort the prefix */
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        struct cand pivot = c[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (cmp_desc(&c[i], &pivot) < 0) i++;
            while (cmp_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                struct cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    qsort(c, (size_t)k, sizeof *c, cmp_desc);
}

int32_t dsi_sampler_sample(struct dsi_sampler *s, const float *logits) {
    const struct dsi_sampler_params *p = &s->p;
    int32_t n = s->n_vocab;
    bool penalties = s->hist_len > 0 && (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f ||
                                         p->frequency_penalty != 0.0f);
    if (p->temperature <= 0.0f && !penalties) { /* greedy: the first maximum of the logits */
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        s->out_ids[0] = best;
        s->out_probs[0] = 1.0f;
        s->n = 1;
        return best;
    }
    for (int32_t i = 0; i < n; i++) s->c[i] = (struct cand){i, logits[i]};
    apply_penalties(s);
    if (p->temperature <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (s->c[i].v > s->c[best].v) best = i;
        s->out_ids[0] = best;
        s->out_probs[0] = 1.0f;
        s->n = 1;
        return best;
    }
    for (int32_t i = 0; i < n; i++) s->c[i].v /= p->temperature;

    /* top-k (or, for top-p alone, a first guess of how many candidates hold the mass) */
    int32_t k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    int32_t sorted = k < n ? k : (n > 512 ? 512 : n);
    select_top(s->c, n, sorted);
    n = k;

    /* softmax over the kept candidates (the maximum is c[0]) */
    double mx = s->c[0].v, sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)s->c[i].v - mx);
    for (int32_t i = 0; i < n; i++) s->c[i].v = (float)(exp((double)s->c[i].v - mx) / sum);

    if (p->top_p < 1.0f) {
        double cum = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            if (i == sorted) { /* the sorted prefix did not hold the mass: sort the rest */
                qsort(s->c + sorted, (size_t)(n - sorted), sizeof *s->c, cmp_desc);
                sorted = n;
            }
            cum += s->c[i].v;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (p->min_p > 0.0f) {
        /* c[0] is the most likely; move the others at or above the threshold next to it */
        float th = p->min_p * s->c[0].v;
        int32_t keep = 1;
        for (int32_t i = 1; i < n; i++)
            if (s->c[i].v >= th) {
                struct cand t = s->c[keep];
                s->c[keep++] = s->c[i];
                s->c[i] = t;
            }
        n = keep;
    }
    double total = 0;
    for (int32_t i = 0; i < n; i++) total += s->c[i].v;
    double r = next_unit(s->rng) * total, acc = 0;
    int32_t pick = n - 1;
    for (int32_t i = 0; i < n; i++) {
        acc += s->c[i].v;
        if (r < acc) {
            pick = i;
            break;
        }
    }
    for (int32_t i = 0; i < n; i++) {
        s->out_ids[i] = s->c[i].id;
        s->out_probs[i] = (float)(s->c[i].v / total);
    }
    s->n = n;
    return s->c[pick].id;
}

void dsi_sampler_last_dist(const struct dsi_sampler *s, const int32_t **ids, const float **probs,
                           int32_t *n) {
    *ids = s->out_ids;
    *probs = s->out_probs;
    *n = s->n;
}
