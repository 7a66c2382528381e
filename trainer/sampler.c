/* trainer/sampler.c: temperature / top-k / top-p / min-p / greedy sampling
 * of one token from a row of logits. Filters follow the Hugging Face
 * generate() processors in order (vLLM's too): temperature, top-k, top-p
 * (against the top-k survivors' mass), min-p. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

int sampler_scratch_init(sampler_scratch *s, int V) {
    s->n_vocab = V;
    s->prob = malloc((size_t)V * sizeof(float));
    s->idx = malloc((size_t)V * sizeof(int32_t));
    return s->prob && s->idx ? 0 : -1;
}

void sampler_scratch_free(sampler_scratch *s) {
    free(s->prob);
    free(s->idx);
    memset(s, 0, sizeof *s);
}

#if defined(__x86_64__) && defined(__GNUC__)
static int have_avx512(void) {
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx512f");
    }
    return ok;
}
#endif

/* sum_i exp(logits[i] - mx) in double, the greedy log-prob's normaliser.
 * With AVX-512 and glibc's libmvec, 8 lanes at a time through
 * _ZGVeN8v_exp (the vector exp of the x86_64 vector function ABI, <= 4 ulp
 * in double) summed lane-wise in order, then the lanes in a fixed order: a
 * ~10x cheaper pass over the vocabulary than scalar libm exp (a decode step
 * at batch 64 spent ~25 ms of CPU here), equal to it to ~1e-15 relative. The
 * sum depends on the row only. */
#if defined(RFT_HAVE_MVEC) && defined(__x86_64__) && defined(__GNUC__)
__m512d _ZGVeN8v_exp(__m512d x);
__attribute__((target("avx512f"))) static double sum_exp_avx512(const float *logits, int V, float mx) {
    __m512d acc = _mm512_setzero_pd(), m = _mm512_set1_pd(mx);
    int i = 0;
    for (; i + 8 <= V; i += 8)
        acc = _mm512_add_pd(acc, _ZGVeN8v_exp(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(logits + i)), m)));
    double lane[8], sum = 0;
    _mm512_storeu_pd(lane, acc);
    for (int k = 0; k < 8; k++) sum += lane[k];
    for (; i < V; i++) sum += exp((double)logits[i] - mx);
    return sum;
}
#endif

/* First index of the largest logit (the scalar rule: logits[i] > logits[best]
   over i in order, so ties go to the lowest id). AVX-512: the maximum by
   vector max, then the first lane equal to it; a row with a NaN takes the
   scalar loop, whose NaN behaviour the vector max does not share. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static int argmax_avx512(const float *x, int V) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    __mmask16 nan = 0;
    int i = 0;
    for (; i + 16 <= V; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_max_ps(m, v);
    }
    float mx = _mm512_reduce_max_ps(m);
    for (int j = i; j < V; j++) {
        if (x[j] != x[j]) nan = 1;
        mx = x[j] > mx ? x[j] : mx;
    }
    if (nan) return -1;
    __m512 mv = _mm512_set1_ps(mx);
    for (i = 0; i + 16 <= V; i += 16) {
        __mmask16 eq = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), mv, _CMP_EQ_OQ);
        if (eq) return i + __builtin_ctz(eq);
    }
    for (; i < V; i++)
        if (x[i] == mx) return i;
    return -1;
}
#endif

static int argmax(const float *logits, int V) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_avx512()) {
        int b = argmax_avx512(logits, V);
        if (b >= 0) return b;
    }
#endif
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

static double sum_exp(const float *logits, int V, float mx) {
#if defined(RFT_HAVE_MVEC) && defined(__x86_64__) && defined(__GNUC__)
    if (have_avx512()) return sum_exp_avx512(logits, V, mx);
#endif
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    return sum;
}

static __thread const float *t_sort_prob;

static int cmp_prob_desc(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float pi = t_sort_prob[i], pj = t_sort_prob[j];
    if (pi > pj) return -1;
    if (pi < pj) return 1;
    return i < j ? -1 : i > j;
}

/* Fills s->idx[0..n) with the kept ids in descending probability (or id
 * order when no sort is needed) and s->prob with the temperature softmax;
 * returns n and the kept mass. The filters run in Hugging Face generate()'s
 * order (vLLM's too): top-k and top-p over every id with prob > 0, in the
 * order (prob desc, id asc), top-p's mass measured against the top-k
 * survivors (all ids without top-k); then min-p drops, from that head, the
 * ids below min_p * the largest prob. */
static int sampler_filter(const sampler_config *c, const float *logits, int V, sampler_scratch *s, double *mass) {
    float T = c->temperature > 0 ? c->temperature : 1.0f;
    float mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) {
        float p = expf((logits[i] - mx) / T);
        s->prob[i] = p;
        sum += p;
    }
    float inv = (float)(1.0 / sum), pmax = 0;
    for (int i = 0; i < V; i++) {
        s->prob[i] *= inv;
        if (s->prob[i] > pmax) pmax = s->prob[i];
    }
    int need_sort = (c->top_k > 0 && c->top_k < V) || (c->top_p > 0 && c->top_p < 1);
    int n = 0;
    /* min-p comes last in HF, on the distribution renormalised over the
       top-k / top-p survivors; renormalising does not change ratios and the
       largest prob always survives, so p >= min_p * pmax can be tested on
       the original probs */
    float floor_p = c->min_p > 0 ? c->min_p * pmax : 0;
    if (!need_sort) { /* min-p alone: a threshold, kept in id order */
        double m = 0;
        for (int i = 0; i < V; i++)
            if (s->prob[i] > 0 && s->prob[i] >= floor_p) s->idx[n++] = i, m += s->prob[i];
        *mass = m;
        return n;
    }
    double all = 0; /* mass of the candidates (prob > 0), in id order */
    for (int i = 0; i < V; i++)
        if (s->prob[i] > 0) s->idx[n++] = i, all += s->prob[i];
    /* Sorting all V candidates costs ~V log V per row; the filters only look
       at a head of the descending order. The set {p >= tau} is exactly such
       a head (ties included, and the sort breaks ties by id), so it suffices
       to sort it when it holds top_k ids (top-k), or the top_p mass (top-p
       alone), or every id above the min-p floor (tau = floor_p, unless both
       top-k and top-p are on): past that floor min-p removes whatever top-k or
       top-p would keep, and top-p alone measures against the mass of all
       candidates, known without the sort; with both, top-p needs the mass
       of all top_k survivors. tau falls by 16x, not below that floor, until
       one holds. The result is that of the full sort. */
    int k_need = c->top_k > 0 && c->top_k < n ? c->top_k : 0;
    int p_on = c->top_p > 0 && c->top_p < 1;
    int floor_ok = floor_p > 0 && !(k_need && p_on);
    int headed = 0;
    for (int tries = 0, done = 0; tries < 6 && n > 64; tries++) {
        float tau = pmax / (float)(1 << (4 * tries + 4));
        if (floor_ok && tau <= floor_p) tau = floor_p, done = 1;
        int h = 0;
        double hm = 0;
        for (int k = 0; k < n; k++)
            if (s->prob[s->idx[k]] >= tau) hm += s->prob[s->idx[k]], h++;
        int enough = done || (k_need ? h >= k_need : (p_on && hm >= c->top_p * all * (1 + 1e-6)));
        if (!enough) continue;
        /* keep the head only (the filters never reach the tail) */
        int a = 0;
        for (int k = 0; k < n; k++)
            if (s->prob[s->idx[k]] >= tau) s->idx[a++] = s->idx[k];
        n = h, headed = 1;
        break;
    }
    t_sort_prob = s->prob;
    qsort(s->idx, n, sizeof(int32_t), cmp_prob_desc);
    int cut_k = k_need > 0; /* top-k removes ids (decided before the head cut) */
    if (cut_k && c->top_k < n) n = c->top_k;
    if (p_on) {
        /* keep the smallest prefix whose mass reaches top_p (HF: remove
           tokens with cumulative mass of the ascending tail <= 1 - top_p);
           the mass is that of the top-k ids, else of all candidates (summed
           in id order when only the head was sorted) */
        double total = 0, cum = 0;
        if (cut_k || !headed)
            for (int k = 0; k < n; k++) total += s->prob[s->idx[k]];
        else
            total = all;
        for (int k = 0; k < n; k++) {
            cum += s->prob[s->idx[k]];
            if (cum >= c->top_p * total) {
                n = k + 1;
                break;
            }
        }
    }
    while (n > 0 && s->prob[s->idx[n - 1]] < floor_p) n--; /* min-p: the tail of the head */
    double m = 0;
    for (int k = 0; k < n; k++) m += s->prob[s->idx[k]];
    *mass = m;
    return n;
}

int32_t sampler_sample(const sampler_config *c, const float *logits, int V, double u, sampler_scratch *s,
                       float *logprob) {
    if (!(c->temperature > 0)) {
        int best = argmax(logits, V);
        if (logprob) *logprob = (float)-log(sum_exp(logits, V, logits[best]));
        return best;
    }
    double mass;
    int n = sampler_filter(c, logits, V, s, &mass);
    double target = u * mass, cum = 0;
    int32_t pick = s->idx[n - 1];
    for (int k = 0; k < n; k++) {
        cum += s->prob[s->idx[k]];
        if (target < cum) {
            pick = s->idx[k];
            break;
        }
    }
    if (logprob) *logprob = (float)log(s->prob[pick] / mass);
    return pick;
}

void sampler_distribution(const sampler_config *c, const float *logits, int V, sampler_scratch *s, double *prob) {
    for (int i = 0; i < V; i++) prob[i] = 0;
    if (!(c->temperature > 0)) {
        prob[argmax(logits, V)] = 1;
        return;
    }
    double mass;
    int n = sampler_filter(c, logits, V, s, &mass);
    for (int k = 0; k < n; k++) prob[s->idx[k]] = s->prob[s->idx[k]] / mass;
}
