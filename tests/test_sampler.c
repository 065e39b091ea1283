/* Sampler: distributions checked by frequency over many seeded draws (each frequency within
 * 5 standard deviations of its expected probability, and tokens that must be excluded never
 * drawn), plus exact checks of the filtered distributions against a brute-force reference,
 * penalties, greedy, and seed determinism. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/sampler.h"
#include "tests/util.h"

#define N_DRAWS 200000

static struct dsi_sampler_params base(void) {
    struct dsi_sampler_params p = dsi_sampler_default_params();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    return p;
}

/* Draw N_DRAWS tokens and compare frequencies with `want` (probabilities, 0 = never). */
static void check_freq(const char *what, struct dsi_sampler_params p, const float *logits,
                       int32_t n, const double *want) {
    struct dsi_sampler *s = dsi_sampler_init(&p, n);
    long *cnt = calloc((size_t)n, sizeof *cnt);
    for (int i = 0; i < N_DRAWS; i++) cnt[dsi_sampler_sample(s, logits)]++;
    for (int32_t i = 0; i < n; i++) {
        double f = (double)cnt[i] / N_DRAWS, sd = sqrt(want[i] * (1 - want[i]) / N_DRAWS);
        if (want[i] == 0) TU_CHECK(cnt[i] == 0, "%s: token %d drawn %ld times, must never be", what, i, cnt[i]);
        else TU_CHECK(fabs(f - want[i]) <= 5 * sd + 1e-9, "%s: token %d frequency %.4f, want %.4f (sd %.4f)",
                      what, i, f, want[i], sd);
    }
    free(cnt);
    dsi_sampler_free(s);
}

static void softmax(const float *l, int n, double temp, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) mx = l[i] / temp > mx ? l[i] / temp : mx;
    for (int i = 0; i < n; i++) sum += out[i] = exp(l[i] / temp - mx);
    for (int i = 0; i < n; i++) out[i] /= sum;
}

static void test_distributions(void) {
    float l[6];
    double p0[6] = {0.4, 0.25, 0.15, 0.1, 0.06, 0.04}, want[6];
    for (int i = 0; i < 6; i++) l[i] = logf((float)p0[i]);
    struct dsi_sampler_params p = base();
    check_freq("plain", p, l, 6, p0);

    p.temperature = 2.0f;
    softmax(l, 6, 2.0, want);
    check_freq("temperature 2", p, l, 6, want);
    p.temperature = 0.5f;
    softmax(l, 6, 0.5, want);
    check_freq("temperature 0.5", p, l, 6, want);

    p = base();
    p.top_k = 2;
    double k2[6] = {0.4 / 0.65, 0.25 / 0.65, 0, 0, 0, 0};
    check_freq("top-k 2", p, l, 6, k2);

    p = base();
    p.top_p = 0.7f; /* 0.4 + 0.25 = 0.65 < 0.7, + 0.15 = 0.8 >= 0.7: keep three */
    double tp[6] = {0.4 / 0.8, 0.25 / 0.8, 0.15 / 0.8, 0, 0, 0};
    check_freq("top-p 0.7", p, l, 6, tp);

    p = base();
    p.min_p = 0.3f; /* threshold 0.12: keeps 0.4, 0.25, 0.15 */
    check_freq("min-p 0.3", p, l, 6, tp);

    p = base();
    p.top_k = 4;
    p.top_p = 0.9f; /* top-4 renormalized: 0.444, 0.278, 0.167, 0.111: cum 0.889 < 0.9 -> 4 */
    p.min_p = 0.3f; /* threshold 0.133 of renormalized: drops 0.111 */
    double all3[6] = {0.4 / 0.8, 0.25 / 0.8, 0.15 / 0.8, 0, 0, 0};
    check_freq("top-k 4 + top-p 0.9 + min-p 0.3", p, l, 6, all3);
}

static void test_penalties(void) {
    float l[4] = {2.0f, -1.0f, 0.5f, 0.0f};
    struct dsi_sampler_params p = base();
    p.repeat_penalty = 2.0f;
    struct dsi_sampler *s = dsi_sampler_init(&p, 4);
    dsi_sampler_accept(s, 0);
    dsi_sampler_accept(s, 1);
    dsi_sampler_accept(s, 1); /* repeated: penalized once, like HF */
    long cnt[4] = {0};
    for (int i = 0; i < N_DRAWS; i++) cnt[dsi_sampler_sample(s, l)]++;
    float pl[4] = {1.0f, -2.0f, 0.5f, 0.0f};
    double want[4];
    softmax(pl, 4, 1.0, want);
    for (int i = 0; i < 4; i++) {
        double sd = sqrt(want[i] * (1 - want[i]) / N_DRAWS);
        TU_CHECK(fabs((double)cnt[i] / N_DRAWS - want[i]) <= 5 * sd, "repeat penalty: token %d %.4f vs %.4f",
                 i, (double)cnt[i] / N_DRAWS, want[i]);
    }
    dsi_sampler_free(s);

    /* presence and frequency penalties, greedy: token 0 (logit 2) seen 3 times loses to 2 */
    p = base();
    p.temperature = 0;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.4f;
    s = dsi_sampler_init(&p, 4);
    TU_CHECK(dsi_sampler_sample(s, l) == 0, "greedy picks the argmax");
    for (int i = 0; i < 3; i++) dsi_sampler_accept(s, 0);
    TU_CHECK(dsi_sampler_sample(s, l) == 2, "presence+frequency penalties: 2 - 0.5 - 1.2 < 0.5");
    dsi_sampler_free(s);

    /* the window: a token older than repeat_last_n is not penalized */
    p = base();
    p.temperature = 0;
    p.repeat_penalty = 10.0f;
    p.repeat_last_n = 2;
    s = dsi_sampler_init(&p, 4);
    dsi_sampler_accept(s, 0);
    TU_CHECK(dsi_sampler_sample(s, l) == 2, "penalized argmax moves to token 2");
    dsi_sampler_accept(s, 3);
    dsi_sampler_accept(s, 3);
    TU_CHECK(dsi_sampler_sample(s, l) == 0, "token 0 left the window");
    dsi_sampler_free(s);
}

static int cmpf(const void *a, const void *b) {
    float u = *(const float *)a, v = *(const float *)b;
    return u < v ? 1 : u > v ? -1 : 0;
}

/* A 150k vocabulary: the partial sorts must give the brute-force top-p set exactly. */
static void test_large_vocab(void) {
    int32_t n = 151936;
    float *l = malloc((size_t)n * sizeof *l);
    uint64_t x = 42;
    for (int32_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1;
        l[i] = (float)((x >> 40) % 10000) / 1000.0f; /* many ties, flat: top-p needs many */
    }
    struct dsi_sampler_params p = base();
    p.top_p = 0.5f;
    struct dsi_sampler *s = dsi_sampler_init(&p, n);
    dsi_sampler_sample(s, l);
    const int32_t *ids;
    const float *probs;
    int32_t k;
    dsi_sampler_last_dist(s, &ids, &probs, &k);
    /* brute force: all probabilities, sorted, smallest prefix reaching 0.5 */
    double *pr = malloc((size_t)n * sizeof *pr);
    double mx = 0, sum = 0;
    for (int32_t i = 0; i < n; i++) mx = l[i] > mx ? l[i] : mx;
    for (int32_t i = 0; i < n; i++) sum += pr[i] = exp(l[i] - mx);
    for (int32_t i = 0; i < n; i++) pr[i] /= sum;
    double cum = 0;
    int32_t want = 0;
    /* count of entries strictly needed: walk values from high to low */
    float *vals = malloc((size_t)n * sizeof *vals);
    memcpy(vals, l, (size_t)n * sizeof *vals);
    qsort(vals, (size_t)n, sizeof *vals, cmpf);
    while (want < n && cum < 0.5) cum += exp(vals[want++] - mx) / sum;
    TU_CHECK(k == want, "large vocab top-p: kept %d candidates, brute force %d", k, want);
    TU_CHECK(k > 512, "the test must exercise the growth past the first sorted block (%d)", k);
    free(vals);
    free(pr);
    free(l);
    dsi_sampler_free(s);
}

static void test_seeds(void) {
    float l[50];
    for (int i = 0; i < 50; i++) l[i] = (float)(i % 7) * 0.3f;
    struct dsi_sampler_params p = base();
    int32_t a[64], b[64], c[64];
    for (int run = 0; run < 3; run++) {
        p.seed = run == 2 ? 7 : 1234;
        struct dsi_sampler *s = dsi_sampler_init(&p, 50);
        int32_t *out = run == 0 ? a : run == 1 ? b : c;
        for (int i = 0; i < 64; i++) out[i] = dsi_sampler_sample(s, l);
        dsi_sampler_free(s);
    }
    TU_CHECK(memcmp(a, b, sizeof a) == 0, "same seed, different tokens");
    TU_CHECK(memcmp(a, c, sizeof a) != 0, "different seeds, same 64 tokens");
    /* reset reseeds */
    p.seed = 1234;
    struct dsi_sampler *s = dsi_sampler_init(&p, 50);
    for (int i = 0; i < 10; i++) dsi_sampler_sample(s, l);
    dsi_sampler_reset(s);
    for (int i = 0; i < 64; i++) b[i] = dsi_sampler_sample(s, l);
    TU_CHECK(memcmp(a, b, sizeof a) == 0, "reset does not restart the sequence");
    dsi_sampler_free(s);
}

int main(int argc, char **argv) {
    tu_init(argc, argv);
    test_distributions();
    test_penalties();
    test_large_vocab();
    test_seeds();
    return tu_finish("test_sampler");
}
