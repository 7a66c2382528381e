/* kernels/cuda/cuda_norm_embed.cu: RMSNorm forward/backward (one warp per
 * row, warp-shuffle reductions; the backward reads dout and x once for both
 * dx and the weight gradient: per-block column partials, then their sum in
 * a fixed order) and the embedding lookup and its
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

/* out[T,D] = x * rstd * w; rstd[T]; xcopy = x. Sum of squares in double per
   lane, as the CPU reference accumulates in double. */
static __global__ void rmsnorm_forward_kernel(float *out, uint16_t *out16, float *rstd, float *xcopy, const float *x,
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
        if (xcopy) xcopy[(size_t)t * D + d] = xr[d];
        if (out) out[(size_t)t * D + d] = v;
        if (out16) out16[(size_t)t * D + d] = fp32_to_bf16(v);
    }
}

/* RMSNorm backward, one pass over dout and x.
   dx (= or += when beta != 0) r (w dy) - x r^3 / D * sum_d(w dy x); dx16 = bf16(dx).
   Block b covers rows [b * NORM_WARPS * rpw, +NORM_WARPS * rpw); warp i takes
   rows i, i + NORM_WARPS, ... of it, one at a time. With part (the weight
   gradient in the same pass): the warp also adds dy x r of its rows to its own
   shared row acc[i][D] (lane l owns columns l + 32j: no exchange, rows in
   order), and the block writes part[b, d] = acc[0][d] + ... + acc[7][d] (warp
   order). An element's dy and x are read before its dx is written, by the same
   lane: dx may alias dout. dout16 (bf16) in place of dout when not NULL.
   Dynamic shared memory: NORM_WARPS * D floats when part, else none. */
#define NORM_WARPS 8
static __device__ __forceinline__ float norm_dy(const float *dout, const uint16_t *dout16, size_t i) {
    return dout16 ? bf16_to_fp32(dout16[i]) : dout[i];
}
static __global__ void rmsnorm_backward_kernel(float *dx, uint16_t *dx16, float *part, const float *dout,
                                               const uint16_t *dout16, const float *x, const float *w,
                                               const float *rstd, int T, int D, int rpw, float beta) {
#ifdef RFT_CUDA_EMU
    float *acc = (float *)emu_dyn_smem();
#else
    extern __shared__ float acc[];
#endif
    int wi = threadIdx.x / 32, l = threadIdx.x % 32;
    float *a = acc + (size_t)wi * D; /* [D], this warp's column sums */
    if (part)
        for (int d = l; d < D; d += 32) a[d] = 0.0f;
    int r0 = blockIdx.x * NORM_WARPS * rpw;
    for (int k = 0; k < rpw; k++) {
        int t = r0 + k * NORM_WARPS + wi;
        if (t >= T) break;
        const float *xr = x + (size_t)t * D;
        const size_t row = (size_t)t * D;
        float r = rstd[t];
        double dot = 0.0;
        for (int d = l; d < D; d += 32) dot += (double)(w[d] * norm_dy(dout, dout16, row + d)) * xr[d];
        dot = warp_sum_d(dot);
        float c = (float)(dot * r * r * r / D);
        float *g = dx + (size_t)t * D;
        for (int d = l; d < D; d += 32) {
            float gy = norm_dy(dout, dout16, row + d), xv = xr[d];
            if (part) a[d] += (gy * xv) * r;
            float v = r * (w[d] * gy) - c * xv;
            if (beta != 0.0f) v = g[d] + v;
            g[d] = v;
            if (dx16) dx16[(size_t)t * D + d] = fp32_to_bf16(v);
        }
    }
    if (!part) return;
    __syncthreads();
    for (int d = threadIdx.x; d < D; d += NORM_WARPS * 32) {
        float s = 0.0f;
        for (int i = 0; i < NORM_WARPS; i++) s += acc[(size_t)i * D + d];
        part[(size_t)blockIdx.x * D + d] = s;
    }
}

/* dw[D] += the sum of part[nblk, D] over blocks, in double: thread (x, y) of a
   (32 columns, 8) block adds blocks y, y + 8, ... of its column in order, then
   y = 0 adds the 8 sums in y order (a fixed order: bitwise reproducible) */
static __global__ void rmsnorm_dw_final_kernel(float *dw, const float *part, int nblk, int D) {
    __shared__ double red[8][32];
    int col = blockIdx.x * 32 + threadIdx.x;
    double s = 0.0;
    if (col < D)
        for (int b = threadIdx.y; b < nblk; b += 8) s += part[(size_t)b * D + col];
    red[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && col < D) {
        double t = 0.0;
        for (int y = 0; y < 8; y++) t += red[y][threadIdx.x];
        dw[col] += (float)t;
    }
}

void cuda_rmsnorm_forward(backend *be, float *out, uint16_t *out16, float *rstd, float *xcopy, const float *x,
                          const float *w, int T, int D, float eps) {
    if (be->err[0] || T <= 0 || D <= 0) return;
    LAUNCH(rmsnorm_forward_kernel, (T + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, ROWS_PER_BLOCK * 32, 0,
           CUDA_IMPL(be)->stream, out, out16, rstd, xcopy, x, w, T, D, eps);
    CU_LAUNCHED(be, "rmsnorm_forward_kernel");
}

/* Raises rmsnorm_backward_kernel's dynamic shared-memory limit to what the
   device allows (NORM_WARPS * D floats: D up to 7264 on sm_90). */
int cuda_norm_setup(backend *be) {
    cuda_impl *im = CUDA_IMPL(be);
    return CU_CHECK(be, cudaFuncSetAttribute((const void *)rmsnorm_backward_kernel,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)im->smem_optin))
               ? -1
               : 0;
}

/* Rows per warp: enough that there are at most NORM_MAX_BLOCKS blocks (a
   function of T only, so the summation order is too). A D whose per-warp sums
   do not fit in shared memory takes the two-pass path: the column sum first
   (dx may alias dout), then the same kernel for dx alone. */
#define NORM_MAX_BLOCKS 512
void cuda_rmsnorm_backward(backend *be, float *dx, uint16_t *dx16, float *dw, const float *dout,
                           const uint16_t *dout16, const float *x, const float *w, const float *rstd, int T, int D,
                           float beta) {
    if (be->err[0] || T <= 0 || D <= 0) return;
    cuda_impl *im = CUDA_IMPL(be);
    int rpw = (int)(((size_t)T + NORM_WARPS * NORM_MAX_BLOCKS - 1) / (NORM_WARPS * NORM_MAX_BLOCKS));
    int nblk = (int)(((size_t)T + (size_t)NORM_WARPS * rpw - 1) / ((size_t)NORM_WARPS * rpw));
    size_t smem = (size_t)NORM_WARPS * D * sizeof(float);
    float *part = NULL;
    if (smem <= im->smem_optin) {
        part = (float *)cuda_scratch(be, (size_t)nblk * D * sizeof(float));
        if (!part) return;
    } else {
        cuda_colsum(be, dw, dout, dout16, x, rstd, T, D);
        smem = 0;
    }
    LAUNCH(rmsnorm_backward_kernel, nblk, NORM_WARPS * 32, smem, im->stream, dx, dx16, part, dout, dout16, x, w, rstd,
           T, D, rpw, beta);
    CU_LAUNCHED(be, "rmsnorm_backward_kernel");
    if (!part) return;
    LAUNCH(rmsnorm_dw_final_kernel, (D + 31) / 32, dim3(32, 8), 0, im->stream, dw, part, nblk, D);
    CU_LAUNCHED(be, "rmsnorm_dw_final_kernel");
}
