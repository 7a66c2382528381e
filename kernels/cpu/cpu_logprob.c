/* kernels/cpu/cpu_logprob.c: fused log-softmax + target gather + entropy over
 * logits[T, V] (forward) and its in-place backward. One streaming pass per
 * row for the statistics: the row is cut into cache-sized chunks, each chunk
 * gives (max, sum e, sum e (z - max)) with e = exp(z - max), and the chunk
 * results are merged in order in double. Rows are independent (OpenMP over
 * rows), so results do not depend on the thread count.
 * Rows whose target is < 0 are skipped: logp = entropy = lse_out = 0, and the
 * backward writes a zero gradient row. */
#include <math.h>

#include "cpu_internal.h"

#define LP_CHUNK 1024

/* lse and entropy of one row z[V] */
static void lp_row_stats(const float *z, int V, double *lse, double *ent) {
    double M = 0, S = 0, A = 0; /* running max, sum exp(z - M), sum exp(z - M)(z - M) */
    for (int c0 = 0; c0 < V; c0 += LP_CHUNK) {
        int n = V - c0 < LP_CHUNK ? V - c0 : LP_CHUNK;
        const float *zc = z + c0;
        float m = zc[0];
#pragma omp simd reduction(max : m)
        for (int j = 0; j < n; j++) m = zc[j] > m ? zc[j] : m;
        /* The max terms (e = 1 exactly) are counted apart: in a peaked row
           the sum is 1 + tiny terms, which fp32 would round away. */
        float s = 0, a = 0, ones = 0;
#pragma omp simd reduction(+ : s, a, ones)
        for (int j = 0; j < n; j++) {
            float d = zc[j] - m;
            float e = cpu_expf(d);
            int top = d == 0.0f;
            s += top ? 0.0f : e;
            ones += top ? 1.0f : 0.0f;
            a += e * d;
        }
        double sc = (double)ones + s;
        if (c0 == 0) {
            M = m; S = sc; A = a;
        } else if (m > M) { /* rescale the running sums to the new max */
            double f = exp(M - m), dm = M - m;
            A = f * (A + dm * S) + a;
            S = f * S + sc;
            M = m;
        } else {
            double f = exp((double)m - M), dm = (double)m - M;
            A += f * (a + dm * sc);
            S += f * sc;
        }
    }
    double ls = log(S);
    *lse = M + ls;
    *ent = ls - A / S;
}

void cpu_logprob_forward(backend *be, float *logp, float *entropy, float *lse_out, const float *logits,
                         const int32_t *targets, int T, int V) {
    int bad = -1;
#pragma omp parallel for num_threads(be->n_threads) schedule(dynamic, 4) if (T > 1)
    for (int t = 0; t < T; t++) {
        int32_t tg = targets[t];
        if (tg < 0 || tg >= V) {
            if (tg >= V) {
#pragma omp critical(cpu_logprob_bad)
                bad = t;
            }
            logp[t] = 0;
            if (entropy) entropy[t] = 0;
            if (lse_out) lse_out[t] = 0;
            continue;
        }
        const float *z = logits + (size_t)t * V;
        double lse, ent;
        lp_row_stats(z, V, &lse, &ent);
        logp[t] = (float)((double)z[tg] - lse);
        if (entropy) entropy[t] = (float)ent;
        if (lse_out) lse_out[t] = (float)lse;
    }
    if (bad >= 0) CPU_ERR(be, "logprob_forward: target id out of range [0, %d) at row %d", V, bad);
}

/* dz_j = dlogp (1[j == target] - p_j) - dent p_j (log p_j + H), lse and H from the forward */
void cpu_logprob_backward(backend *be, float *logits, uint16_t *d16, const float *dlogp, const float *dentropy,
                          const float *lse, const float *entropy, const int32_t *targets, int T, int V) {
    int bad = -1;
#pragma omp parallel for num_threads(be->n_threads) schedule(dynamic, 4) if (T > 1)
    for (int t = 0; t < T; t++) {
        int32_t tg = targets[t];
        float *z = logits + (size_t)t * V;
        if (tg < 0 || tg >= V) {
            if (tg >= V) {
#pragma omp critical(cpu_logprob_bad)
                bad = t;
            }
#pragma omp simd
            for (int j = 0; j < V; j++) z[j] = 0;
            if (d16) memset(d16 + (size_t)t * V, 0, (size_t)V * sizeof(uint16_t));
            continue;
        }
        const float L = lse[t], H = dentropy ? entropy[t] : 0.0f, gl = dlogp[t], ge = dentropy ? dentropy[t] : 0.0f;
#pragma omp simd
        for (int j = 0; j < V; j++) {
            float lp = z[j] - L;
            float p = cpu_expf(lp);
            z[j] = -p * (gl + ge * (lp + H));
        }
        z[tg] += gl;
        if (d16) { /* the row is still in cache: round it from there */
            uint16_t *o = d16 + (size_t)t * V;
            for (int j = 0; j < V; j++) o[j] = fp32_to_bf16(z[j]);
        }
    }
    if (bad >= 0) CPU_ERR(be, "logprob_backward: target id out of range [0, %d) at row %d", V, bad);
}
