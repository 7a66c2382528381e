/* kernels/cuda/cuda_elementwise.cu: elementwise and column-reduction ops of
 * the CUDA backend: add, scale, bias forward/backward, RoPE, SwiGLU, sum of
 * squares (double, two fixed-shape passes), AdamW, and the deterministic
 * column sum shared by bias and RMSNorm-weight gradients.
 * Every reduction has a fixed shape and order: results are bitwise
 * reproducible run to run (no atomics). */
#include <math.h>

#include "cuda_internal.h"

#define EW_THREADS 256
#define EW_MAX_BLOCKS 65535

/* ---- add, scale ---- */

static __global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

static __global__ void scale_kernel(float *x, float s, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

void cuda_add(backend *be, float *out, const float *a, const float *b, size_t n) {
    if (be->err[0] || !n) return;
    LAUNCH(add_kernel, cuda_grid(n, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, CUDA_IMPL(be)->stream, out, a, b, n);
    CU_LAUNCHED(be, "add_kernel");
}

void cuda_scale(backend *be, float *x, float s, size_t n) {
    if (be->err[0] || !n) return;
    LAUNCH(scale_kernel, cuda_grid(n, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, CUDA_IMPL(be)->stream, x, s, n);
    CU_LAUNCHED(be, "scale_kernel");
}

/* ---- bias ---- */

/* x[T,N] += bias[N] */
static __global__ void bias_forward_kernel(float *x, const float *bias, int T, int N) {
    size_t n = (size_t)T * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] += bias[i % N];
}

void cuda_bias_forward(backend *be, float *x, const float *bias, int T, int N) {
    if (be->err[0] || T <= 0 || N <= 0) return;
    size_t n = (size_t)T * N;
    LAUNCH(bias_forward_kernel, cuda_grid(n, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, CUDA_IMPL(be)->stream, x,
           bias, T, N);
    CU_LAUNCHED(be, "bias_forward_kernel");
}

/* Column sums in two passes. Pass 1: block (32 columns, 8 row lanes) sums rows
   [chunk * CS_ROWS, +CS_ROWS) of its 32 columns into part[chunk, col]. Pass 2:
   one thread per column adds the chunk sums in chunk order. */
#define CS_ROWS 256
static __global__ void colsum_partial_kernel(float *part, const float *a, const uint16_t *a16, const float *b,
                                             const float *rs, int T, int N) {
    __shared__ float red[8][33];
    int col = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * CS_ROWS;
    int r1 = min(r0 + CS_ROWS, T);
    float s = 0.0f;
    if (col < N) {
        for (int r = r0 + threadIdx.y; r < r1; r += 8) {
            size_t i = (size_t)r * N + col;
            float v = a16 ? bf16_to_fp32(a16[i]) : a[i];
            if (b) v *= b[i];
            if (rs) v *= rs[r];
            s += v;
        }
    }
    red[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && col < N) {
        float t = 0.0f;
        for (int y = 0; y < 8; y++) t += red[y][threadIdx.x];
        part[(size_t)blockIdx.y * N + col] = t;
    }
}

static __global__ void colsum_final_kernel(float *out, const float *part, int nchunk, int N) {
    int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= N) return;
    double s = 0.0;
    for (int c = 0; c < nchunk; c++) s += part[(size_t)c * N + col];
    out[col] += (float)s;
}

void cuda_colsum(backend *be, float *out, const float *a, const uint16_t *a16, const float *b, const float *rs, int T,
                 int N) {
    if (be->err[0] || T <= 0 || N <= 0) return;
    int nchunk = (T + CS_ROWS - 1) / CS_ROWS;
    if (nchunk > 65535) { CU_ERR(be, "colsum: %d rows is too many", T); return; }
    float *part = (float *)cuda_scratch(be, (size_t)nchunk * N * sizeof(float));
    if (!part) return;
    cudaStream_t st = CUDA_IMPL(be)->stream;
    dim3 g1((N + 31) / 32, nchunk), b1(32, 8);
    LAUNCH(colsum_partial_kernel, g1, b1, 0, st, part, a, a16, b, rs, T, N);
    CU_LAUNCHED(be, "colsum_partial_kernel");
    LAUNCH(colsum_final_kernel, (N + 127) / 128, 128, 0, st, out, part, nchunk, N);
    CU_LAUNCHED(be, "colsum_final_kernel");
}

void cuda_bias_backward(backend *be, float *dbias, const float *dy, int T, int N) {
    cuda_colsum(be, dbias, dy, NULL, NULL, NULL, T, N);
}

/* ---- RoPE ----
 * Same fp32 arithmetic as kernels/cpu: inv_freq[i] = 1 / theta^(float(2i)/hd)
 * (powf), angle = float(pos) * inv_freq, cosf/sinf (full-precision versions,
 * the build does not use fast math). One thread per (t, pair i), looping over
 * heads so the angle is computed once per token and pair. */
static __global__ void rope_kernel(float *x, const int32_t *pos, int T, int H, int hd, float theta, float sign) {
    int half = hd / 2;
    size_t n = (size_t)T * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
        int t = (int)(idx / half), i = (int)(idx % half);
        float c, s;
        rope_cs(pos[t], i, hd, theta, sign, &c, &s);
        float *row = x + (size_t)t * H * hd;
        for (int h = 0; h < H; h++) {
            float *x1 = row + (size_t)h * hd + i, *x2 = x1 + half;
            float u = *x1, w = *x2;
            *x1 = u * c - w * s;
            *x2 = w * c + u * s;
        }
    }
}

static void cuda_rope(backend *be, float *x, const int32_t *pos, int T, int H, int hd, float theta, float sign) {
    if (be->err[0] || T <= 0 || H <= 0) return;
    if (hd % 2) { CU_ERR(be, "rope: head_dim %d is odd", hd); return; }
    size_t n = (size_t)T * (hd / 2);
    LAUNCH(rope_kernel, cuda_grid(n, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, CUDA_IMPL(be)->stream, x, pos, T, H,
           hd, theta, sign);
    CU_LAUNCHED(be, "rope_kernel");
}

void cuda_rope_forward(backend *be, float *x, const int32_t *pos, int T, int H, int hd, float theta) {
    cuda_rope(be, x, pos, T, H, hd, theta, 1.0f);
}
void cuda_rope_backward(backend *be, float *dx, const int32_t *pos, int T, int H, int hd, float theta) {
    cuda_rope(be, dx, pos, T, H, hd, theta, -1.0f);
}

/* rope_forward_bf16 (backend.h) on stacked rows q | k | v of W = (Hq + 2
   Hkv) hd, in place: the same thread split and arithmetic as rope_kernel
   over the Hq + Hkv rotated heads (+ bias); thread (t, i) also carries dims
   i and i + hd/2 of each v head through (+ bias). A thread reads only what
   it writes; each value is rounded once. (Its backward is the epilogue of
   attention_backward_bf16's kernels.) */
struct rope_bias {
    const float *q, *k, *v; /* or all NULL */
    int qd, kvd;
};
static __device__ __forceinline__ float rope_bias_at(const rope_bias &b, int j) {
    return j < b.qd ? b.q[j] : j < b.qd + b.kvd ? b.k[j - b.qd] : b.v[j - b.qd - b.kvd];
}
static __global__ void rope_bf16_kernel(uint16_t *qkv, rope_bias bias, const int32_t *pos, int T, int Hr, int Hkv,
                                        int hd, float theta) {
    int half = hd / 2;
    size_t n = (size_t)T * half, W = (size_t)(Hr + Hkv) * hd;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < n; idx += (size_t)gridDim.x * blockDim.x) {
        int t = (int)(idx / half), i = (int)(idx % half);
        float c, s;
        rope_cs(pos[t], i, hd, theta, 1.0f, &c, &s);
        uint16_t *row = qkv + (size_t)t * W;
        for (int h = 0; h < Hr + Hkv; h++) {
            int j = h * hd + i;
            float u = bf16_to_fp32(row[j]), w = bf16_to_fp32(row[j + half]);
            if (bias.q) u += rope_bias_at(bias, j), w += rope_bias_at(bias, j + half);
            if (h < Hr) { /* q and k heads: rotated */
                float r1 = u * c - w * s, r2 = w * c + u * s;
                u = r1, w = r2;
            }
            row[j] = fp32_to_bf16(u);
            row[j + half] = fp32_to_bf16(w);
        }
    }
}

void cuda_rope_forward_bf16(backend *be, uint16_t *qkv, const float *bq, const float *bk, const float *bv,
                            const int32_t *pos, int T, int Hq, int Hkv, int hd, float theta) {
    if (be->err[0] || T <= 0) return;
    if (hd % 2) { CU_ERR(be, "rope: head_dim %d is odd", hd); return; }
    rope_bias bias = {bq, bk, bv, Hq * hd, Hkv * hd};
    size_t n = (size_t)T * (hd / 2);
    LAUNCH(rope_bf16_kernel, cuda_grid(n, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, CUDA_IMPL(be)->stream, qkv, bias,
           pos, T, Hq + Hkv, Hkv, hd, theta);
    CU_LAUNCHED(be, "rope_bf16_kernel");
}

/* ---- SwiGLU ----
 * The formulas are two device functions; the bf16 kernels widen gate and up,
 * apply them in fp32 and round the results. */

static __device__ __forceinline__ float swiglu_val(float g, float u) {
    float s = 1.0f / (1.0f + expf(-g));
    return g * s * u;
}
/* dgate = dy u s (1 + g (1 - s)), dup = dy g s */
static __device__ __forceinline__ void swiglu_grad(float g, float u, float dy, float *dg, float *du) {
    float s = 1.0f / (1.0f + expf(-g));
    *dg = dy * u * (s * (1.0f + g * (1.0f - s)));
    *du = dy * (g * s);
}

#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

static __global__ void swiglu_forward_kernel(float *out, const float *gate, const float *up, size_t n) {
    GRID_STRIDE(i, n) out[i] = swiglu_val(gate[i], up[i]);
}

/* dgate/dup may alias dout: each element is read before it is written */
static __global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dout, const float *gate,
                                              const float *up, size_t n) {
    GRID_STRIDE(i, n) {
        float dg, du;
        swiglu_grad(gate[i], up[i], dout[i], &dg, &du);
        dgate[i] = dg;
        dup[i] = du;
    }
}

/* element i of [T, F] is gate at gu[t, f], up at gu[t, F + f] (t = i / F) */
/* the bf16 kernels, 8 columns (16 bytes) per thread when F is a multiple
   of 8 and the rows 16-byte aligned: one 32-bit division per 8 elements
   (the scalar kernels' 64-bit division per element costs more than the
   bytes they move) */
static __global__ void swiglu_forward_bf16x8_kernel(uint16_t *out16, const uint16_t *gu, unsigned F8, unsigned n8) {
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += gridDim.x * blockDim.x) {
        const unsigned t = i / F8, c = (i - t * F8) * 8, F = F8 * 8;
        float g[8], u[8], o[8];
        bf16x8_load(g, gu + (size_t)t * 2 * F + c);
        bf16x8_load(u, gu + (size_t)t * 2 * F + F + c);
#pragma unroll
        for (int k = 0; k < 8; k++) o[k] = swiglu_val(g[k], u[k]);
        bf16x8_store(out16 + (size_t)t * F + c, o);
    }
}

static __global__ void swiglu_backward_bf16x8_kernel(uint16_t *dgu16, const uint16_t *dout16, const uint16_t *gu,
                                                     unsigned F8, unsigned n8) {
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += gridDim.x * blockDim.x) {
        const unsigned t = i / F8, c = (i - t * F8) * 8, F = F8 * 8;
        float g[8], u[8], dy[8], dg[8], du[8];
        bf16x8_load(g, gu + (size_t)t * 2 * F + c);
        bf16x8_load(u, gu + (size_t)t * 2 * F + F + c);
        bf16x8_load(dy, dout16 + (size_t)t * F + c);
#pragma unroll
        for (int k = 0; k < 8; k++) swiglu_grad(g[k], u[k], dy[k], &dg[k], &du[k]);
        bf16x8_store(dgu16 + (size_t)t * 2 * F + c, dg);
        bf16x8_store(dgu16 + (size_t)t * 2 * F + F + c, du);
    }
}

static __global__ void swiglu_forward_bf16_kernel(uint16_t *out16, const uint16_t *gu, int F, size_t n) {
    GRID_STRIDE(i, n) {
        size_t g = i + (i / F) * F; /* t * 2F + f */
        out16[i] = fp32_to_bf16(swiglu_val(bf16_to_fp32(gu[g]), bf16_to_fp32(gu[g + F])));
    }
}

static __global__ void swiglu_backward_bf16_kernel(uint16_t *dgu16, const uint16_t *dout16, const uint16_t *gu,
                                                   int F, size_t n) {
    GRID_STRIDE(i, n) {
        size_t g = i + (i / F) * F;
        float dg, du;
        swiglu_grad(bf16_to_fp32(gu[g]), bf16_to_fp32(gu[g + F]), bf16_to_fp32(dout16[i]), &dg, &du);
        dgu16[g] = fp32_to_bf16(dg);
        dgu16[g + F] = fp32_to_bf16(du);
    }
}

#define SWIGLU_LAUNCH(kernel, n, ...)                                                                          \
    do {                                                                                                       \
        if (be->err[0] || !(n)) return;                                                                        \
        LAUNCH(kernel, cuda_grid(n, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, CUDA_IMPL(be)->stream, __VA_ARGS__); \
        CU_LAUNCHED(be, #kernel);                                                                              \
    } while (0)

/* the 8-column kernels apply: F a multiple of 8, 16-byte aligned rows, chunk indices within 32 bits */
static int swiglu_x8(size_t n, int F, const void *a, const void *b, const void *c) {
    return F % 8 == 0 && n / 8 < ((size_t)1 << 31) && !(((size_t)a | (size_t)b | (size_t)c) & 15);
}

void cuda_swiglu_forward(backend *be, float *out, const float *gate, const float *up, size_t n) {
    SWIGLU_LAUNCH(swiglu_forward_kernel, n, out, gate, up, n);
}
void cuda_swiglu_backward(backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, size_t n) {
    SWIGLU_LAUNCH(swiglu_backward_kernel, n, dgate, dup, dout, gate, up, n);
}
void cuda_swiglu_forward_bf16(backend *be, uint16_t *out16, const uint16_t *gu, int T, int F) {
    size_t n = T > 0 && F > 0 ? (size_t)T * F : 0;
    if (swiglu_x8(n, F, gu, out16, out16)) {
        SWIGLU_LAUNCH(swiglu_forward_bf16x8_kernel, n / 8, out16, gu, (unsigned)F / 8, (unsigned)(n / 8));
        return;
    }
    SWIGLU_LAUNCH(swiglu_forward_bf16_kernel, n, out16, gu, F, n);
}
void cuda_swiglu_backward_bf16(backend *be, uint16_t *dgu16, const uint16_t *dout16, const uint16_t *gu, int T,
                               int F) {
    size_t n = T > 0 && F > 0 ? (size_t)T * F : 0;
    if (swiglu_x8(n, F, gu, dout16, dgu16)) {
        SWIGLU_LAUNCH(swiglu_backward_bf16x8_kernel, n / 8, dgu16, dout16, gu, (unsigned)F / 8, (unsigned)(n / 8));
        return;
    }
    SWIGLU_LAUNCH(swiglu_backward_bf16_kernel, n, dgu16, dout16, gu, F, n);
}

/* ---- sum of squares ----
 * Pass 1: SQ_BLOCKS blocks of SQ_THREADS threads, grid-stride, each thread
 * in double, block tree reduction -> part[SQ_BLOCKS]. Pass 2: one block sums
 * the parts the same way. The shape never depends on the device, so the
 * result is bitwise reproducible everywhere. */
#define SQ_BLOCKS 1024
#define SQ_THREADS 256

static __device__ double block_sum_d(double v) {
    __shared__ double red[SQ_THREADS / 32];
    v = warp_sum_d(v);
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    if (l == 0) red[w] = v;
    __syncthreads();
    double s = 0.0;
    if (w == 0) {
        s = l < SQ_THREADS / 32 ? red[l] : 0.0;
        s = warp_sum_d(s);
    }
    return s; /* valid in thread 0 */
}

static __global__ void sumsq_partial_kernel(double *part, const float *x, size_t n) {
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)SQ_THREADS + threadIdx.x; i < n; i += (size_t)SQ_BLOCKS * SQ_THREADS) {
        double v = x[i];
        s += v * v;
    }
    s = block_sum_d(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

static __global__ void sumsq_final_kernel(double *out, const double *part) {
    double s = 0.0;
    for (int i = threadIdx.x; i < SQ_BLOCKS; i += SQ_THREADS) s += part[i];
    s = block_sum_d(s);
    if (threadIdx.x == 0) *out = s;
}

double cuda_sumsq(backend *be, const float *x, size_t n) {
    if (be->err[0]) return NAN;
    if (!n) return 0.0;
    cuda_impl *im = CUDA_IMPL(be);
    double *part = (double *)cuda_scratch(be, (SQ_BLOCKS + 1) * sizeof(double));
    if (!part) return NAN;
    LAUNCH(sumsq_partial_kernel, SQ_BLOCKS, SQ_THREADS, 0, im->stream, part, x, n);
    CU_LAUNCHED(be, "sumsq_partial_kernel");
    LAUNCH(sumsq_final_kernel, 1, SQ_THREADS, 0, im->stream, part + SQ_BLOCKS, part);
    CU_LAUNCHED(be, "sumsq_final_kernel");
    if (CU_CHECK(be, cudaMemcpyAsync(im->host_sumsq, part + SQ_BLOCKS, sizeof(double), cudaMemcpyDeviceToHost,
                                     im->stream)))
        return NAN;
    if (CU_CHECK(be, cudaStreamSynchronize(im->stream))) return NAN;
    return *im->host_sumsq;
}

/* ---- AdamW: torch.optim.AdamW (foreach=False) order of operations, the same
 * fp32 expressions as kernels/cpu/cpu_optim.c; scalars prepared in double. */
static __global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float decay, float omb1,
                                    float b2, float omb2, float step, float bc2s, float eps) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i];
        float pi = p[i] * decay;
        float mi = m[i] + (gi - m[i]) * omb1;
        float vi = v[i] * b2 + omb2 * (gi * gi);
        float den = sqrtf(vi) / bc2s + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step * (mi / den);
    }
}

void cuda_adamw(backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                float eps, float wd, int t) {
    if (be->err[0] || !n) return;
    if (t < 1) { CU_ERR(be, "adamw: step %d < 1", t); return; }
    double bc1 = 1.0 - pow((double)b1, t), bc2 = 1.0 - pow((double)b2, t);
    const float decay = (float)(1.0 - (double)lr * wd);
    const float omb1 = (float)(1.0 - (double)b1), omb2 = (float)(1.0 - (double)b2);
    const float step = (float)((double)lr / bc1), bc2s = (float)sqrt(bc2);
    LAUNCH(adamw_kernel, cuda_grid(n, EW_THREADS, EW_MAX_BLOCKS), EW_THREADS, 0, CUDA_IMPL(be)->stream, p, g, m, v, n,
           decay, omb1, b2, omb2, step, bc2s, eps);
    CU_LAUNCHED(be, "adamw_kernel");
}
