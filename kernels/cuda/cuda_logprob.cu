/* kernels/cuda/cuda_logprob.cu: fused log-softmax + target gather + entropy
 * over logits[T, V], forward and in-place backward. One block per row; each
 * thread keeps an online (max, sum e, sum e (z - max)) over its strided
 * elements in one pass, and the block merges the thread states in a fixed
 * order (double), so the result is reproducible. The backward takes the
 * forward's lse and entropy and makes one pass. No second [T, V] tensor.
 * Rows whose target is < 0 are skipped (logp = entropy = lse = 0, zero
 * gradient row); a target >= V raises the backend's error flag. */
#include <math.h>

#include "cuda_internal.h"

#define LP_THREADS 512

typedef struct { double m, s, w; } lp_state; /* w = sum e (z - m), e = exp(z - m) */

static __device__ __forceinline__ void lp_merge(lp_state *a, double m, double s, double w) {
    if (s == 0.0) return;
    if (a->s == 0.0) { a->m = m; a->s = s; a->w = w; return; }
    if (m > a->m) {
        double f = exp(a->m - m), dm = a->m - m;
        a->w = f * (a->w + dm * a->s) + w;
        a->s = f * a->s + s;
        a->m = m;
    } else {
        double f = exp(m - a->m), dm = m - a->m;
        a->w += f * (w + dm * s);
        a->s += f * s;
    }
}

/* lse and entropy of row z[V], returned in every thread of the block */
static __device__ void lp_row_stats(const float *z, int V, double *lse_out, double *ent_out) {
    __shared__ double red[3][LP_THREADS / 32];
    __shared__ double res[2];
    float m = -INFINITY, s = 0.0f, w = 0.0f;
    int j = threadIdx.x;
    if (j < V) { m = z[j]; s = 1.0f; j += blockDim.x; }
    for (; j < V; j += blockDim.x) {
        float x = z[j];
        if (x > m) {
            float f = expf(m - x);
            w = f * (w + (m - x) * s);
            s = s * f + 1.0f;
            m = x;
        } else {
            float d = x - m, e = expf(d);
            if (e > 0.0f) { s += e; w += e * d; }
        }
    }
    lp_state st = {(double)m, (double)s, (double)w};
    if (s == 0.0f) st.m = 0.0;
    for (int o = 16; o > 0; o >>= 1) {
        double om = __shfl_xor_sync(FULL_MASK, st.m, o), os = __shfl_xor_sync(FULL_MASK, st.s, o),
               ow = __shfl_xor_sync(FULL_MASK, st.w, o);
        lp_merge(&st, om, os, ow);
    }
    int wp = threadIdx.x / 32, l = threadIdx.x % 32;
    if (l == 0) { red[0][wp] = st.m; red[1][wp] = st.s; red[2][wp] = st.w; }
    __syncthreads();
    if (threadIdx.x == 0) {
        lp_state a = {0.0, 0.0, 0.0};
        for (int i = 0; i < (int)(blockDim.x / 32); i++) lp_merge(&a, red[0][i], red[1][i], red[2][i]);
        double ls = log(a.s);
        res[0] = a.m + ls;
        res[1] = ls - a.w / a.s;
    }
    __syncthreads();
    *lse_out = res[0];
    *ent_out = res[1];
}

static __global__ void __launch_bounds__(LP_THREADS) logprob_forward_kernel(float *logp, float *entropy,
                                                                            float *lse_out, const float *logits,
                                                                            const int32_t *targets, int T, int V,
                                                                            int *flags) {
    int t = blockIdx.x;
    int32_t tg = targets[t];
    if (tg < 0 || tg >= V) {
        if (threadIdx.x == 0) {
            if (tg >= V) flags[CUDA_FLAG_TARGET_BAD] = t + 1;
            logp[t] = 0.0f;
            if (entropy) entropy[t] = 0.0f;
            if (lse_out) lse_out[t] = 0.0f;
        }
        return;
    }
    const float *z = logits + (size_t)t * V;
    double lse, ent;
    lp_row_stats(z, V, &lse, &ent);
    if (threadIdx.x == 0) {
        logp[t] = (float)((double)z[tg] - lse);
        if (entropy) entropy[t] = (float)ent;
        if (lse_out) lse_out[t] = (float)lse;
    }
}

/* dz_j = dlogp (1[j == target] - p_j) - dent p_j (log p_j + H), in place
   (d16 == NULL) or rounded to bf16 into d16; lse and H from the forward
   (each element is read, then written, by the same thread) */
static __global__ void __launch_bounds__(LP_THREADS) logprob_backward_kernel(float *logits, uint16_t *d16,
                                                                             const float *dlogp,
                                                                             const float *dentropy,
                                                                             const float *lse, const float *entropy,
                                                                             const int32_t *targets, int T, int V,
                                                                             int *flags) {
    int t = blockIdx.x;
    int32_t tg = targets[t];
    float *z = logits + (size_t)t * V;
    if (tg < 0 || tg >= V) {
        if (tg >= V && threadIdx.x == 0) flags[CUDA_FLAG_TARGET_BAD] = t + 1;
        if (d16)
            for (int j = threadIdx.x; j < V; j += blockDim.x) d16[(size_t)t * V + j] = 0;
        else
            for (int j = threadIdx.x; j < V; j += blockDim.x) z[j] = 0.0f;
        return;
    }
    const float L = lse[t], H = dentropy ? entropy[t] : 0.0f;
    const float gl = dlogp[t], ge = dentropy ? dentropy[t] : 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float lp = z[j] - L;
        float p = expf(lp);
        float g = -p * (gl + ge * (lp + H));
        if (j == tg) g += gl;
        if (d16)
            d16[(size_t)t * V + j] = fp32_to_bf16(g);
        else
            z[j] = g;
    }
}

void cuda_logprob_forward(backend *be, float *logp, float *entropy, float *lse_out, const float *logits,
                          const int32_t *targets, int T, int V) {
    if (be->err[0] || T <= 0 || V <= 0) return;
    cuda_impl *im = CUDA_IMPL(be);
    LAUNCH(logprob_forward_kernel, T, LP_THREADS, 0, im->stream, logp, entropy, lse_out, logits, targets, T, V,
           im->dev_flags);
    CU_LAUNCHED(be, "logprob_forward_kernel");
}

void cuda_logprob_backward(backend *be, float *logits, uint16_t *d16, const float *dlogp, const float *dentropy,
                           const float *lse, const float *entropy, const int32_t *targets, int T, int V) {
    if (be->err[0] || T <= 0 || V <= 0) return;
    cuda_impl *im = CUDA_IMPL(be);
    LAUNCH(logprob_backward_kernel, T, LP_THREADS, 0, im->stream, logits, d16, dlogp, dentropy, lse, entropy,
           targets, T, V, im->dev_flags);
    CU_LAUNCHED(be, "logprob_backward_kernel");
}
