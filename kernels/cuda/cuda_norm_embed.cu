/* kernels/cuda/cuda_norm_embed.cu: RMSNorm forward/backward (one warp per
 * row, warp-shuffle reductions; the weight gradient through the
 * deterministic two-pass column sum) and the embedding lookup and its
 * deterministic scatter-add (token positions stably sorted by id, then one
 * block per distinct id adds its rows in token order: no atomics, bitwise
 * reproducible). */
#include <math.h>

#include "cuda_internal.h"

#define ROWS_PER_BLOCK 8 /* warps per block, one row each */

/* ---- embedding ---- */

/* out[T,D] = table[ids[t], :]; a negative id gives a zero row and raises the
   backend's error flag (reported by the next sync, as the CPU backend reports it) */
static __global__ void embedding_forward_kernel(float *out, const float *table, const int32_t *ids, int T, int D,
                                                int *flags) {
    int t = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, l = threadIdx.x % 32;
    if (t >= T) return;
    int32_t id = ids[t];
    float *o = out + (size_t)t * D;
    if (id < 0) {
        for (int d = l; d < D; d += 32) o[d] = 0.0f;
        if (l == 0) flags[CUDA_FLAG_EMBED_BAD] = t + 1;
        return;
    }
    const float *src = table + (size_t)id * D;
    for (int d = l; d < D; d += 32) o[d] = src[d];
}

void cuda_embedding_forward(backend *be, float *out, const float *table, const int32_t *ids, int T, int D) {
    if (be->err[0] || T <= 0 || D <= 0) return;
    cuda_impl *im = CUDA_IMPL(be);
    LAUNCH(embedding_forward_kernel, (T + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, ROWS_PER_BLOCK * 32, 0, im->stream,
           out, table, ids, T, D, im->dev_flags);
    CU_LAUNCHED(be, "embedding_forward_kernel");
}

/* Block i handles sorted position i if it starts a run of equal ids: sums the
   run's rows of dout in token order (the sort is stable) and adds them to
   dtable[id]. Threads stride over D. */
static __global__ void embedding_backward_kernel(float *dtable, const float *dout, const int32_t *keys,
                                                 const int32_t *vals, int T, int D) {
    for (int i = blockIdx.x; i < T; i += gridDim.x) {
        int32_t id = keys[i];
        if (id < 0 || (i > 0 && keys[i - 1] == id)) continue;
        int end = i + 1;
        while (end < T && keys[end] == id) end++;
        float *dst = dtable + (size_t)id * D;
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float s = 0.0f;
            for (int j = i; j < end; j++) s += dout[(size_t)vals[j] * D + d];
            dst[d] += s;
        }
    }
}

void cuda_embedding_backward(backend *be, float *dtable, const float *dout, const int32_t *ids, int T, int D) {
    if (be->err[0] || T <= 0 || D <= 0) return;
    cuda_impl *im = CUDA_IMPL(be);
    const int32_t *keys, *vals;
    if (cuda_sort_ids(be, ids, T, &keys, &vals)) return;
    int threads = D >= 256 ? 256 : ((D + 31) / 32) * 32;
    int blocks = T < 65535 ? T : 65535;
    LAUNCH(embedding_backward_kernel, blocks, threads, 0, im->stream, dtable, dout, keys, vals, T, D);
    CU_LAUNCHED(be, "embedding_backward_kernel");
}

/* ---- RMSNorm ---- */

/* out[T,D] = x * rstd * w; rstd[T]. Sum of squares in double per lane, as the
   CPU reference accumulates in double. */
static __global__ void rmsnorm_forward_kernel(float *out, uint16_t *out16, float *rstd, const float *x,
                                              const float *w, int T, int D, float eps) {
    int t = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, l = threadIdx.x % 32;
    if (t >= T) return;
    const float *xr = x + (size_t)t * D;
    double ss = 0.0;
    for (int d = l; d < D; d += 32) ss += (double)xr[d] * xr[d];
    ss = warp_sum_d(ss);
    float r = (float)(1.0 / sqrt(ss / D + (double)eps));
    if (l == 0) rstd[t] = r;
    for (int d = l; d < D; d += 32) {
        float v = (xr[d] * r) * w[d];
        if (out) out[(size_t)t * D + d] = v;
        if (out16) out16[(size_t)t * D + d] = fp32_to_bf16(v);
    }
}

/* dx (= or += when beta != 0) r (w dy) - x r^3 / D * sum_d(w dy x); dx16 = bf16(dx) */
static __global__ void rmsnorm_backward_dx_kernel(float *dx, uint16_t *dx16, const float *dout, const float *x,
                                                  const float *w, const float *rstd, int T, int D, float beta) {
    int t = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, l = threadIdx.x % 32;
    if (t >= T) return;
    const float *xr = x + (size_t)t * D, *dy = dout + (size_t)t * D;
    float r = rstd[t];
    double dot = 0.0;
    for (int d = l; d < D; d += 32) dot += (double)(w[d] * dy[d]) * xr[d];
    dot = warp_sum_d(dot);
    float c = (float)(dot * r * r * r / D);
    float *g = dx + (size_t)t * D;
    for (int d = l; d < D; d += 32) {
        float v = r * (w[d] * dy[d]) - c * xr[d];
        if (beta != 0.0f) v = g[d] + v;
        g[d] = v;
        if (dx16) dx16[(size_t)t * D + d] = fp32_to_bf16(v);
    }
}

void cuda_rmsnorm_forward(backend *be, float *out, uint16_t *out16, float *rstd, const float *x, const float *w, int T,
                          int D, float eps) {
    if (be->err[0] || T <= 0 || D <= 0) return;
    LAUNCH(rmsnorm_forward_kernel, (T + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, ROWS_PER_BLOCK * 32, 0,
           CUDA_IMPL(be)->stream, out, out16, rstd, x, w, T, D, eps);
    CU_LAUNCHED(be, "rmsnorm_forward_kernel");
}

void cuda_rmsnorm_backward(backend *be, float *dx, uint16_t *dx16, float *dw, const float *dout, const float *x,
                           const float *w, const float *rstd, int T, int D, float beta) {
    if (be->err[0] || T <= 0 || D <= 0) return;
    /* dw first: dx may alias dout */
    cuda_colsum(be, dw, dout, x, rstd, T, D);
    LAUNCH(rmsnorm_backward_dx_kernel, (T + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, ROWS_PER_BLOCK * 32, 0,
           CUDA_IMPL(be)->stream, dx, dx16, dout, x, w, rstd, T, D, beta);
    CU_LAUNCHED(be, "rmsnorm_backward_dx_kernel");
}
