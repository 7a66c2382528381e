/* kernels/cuda/cuda_internal.h: what the CUDA backend's files share: the
 * backend-private state (stream, cuBLAS handle, scratch buffer), the
 * error-checking macros (every CUDA/cuBLAS call is checked and the first
 * failure is recorded as "file:line: what" in be->err, sticky), the launch
 * macro, small device helpers (warp reductions), and the op functions each
 * .cu file defines, installed into the table by backend_cuda.cu.
 *
 * Built by nvcc. With RFT_CUDA_EMU defined the same sources compile as plain
 * C++ against kernels/cuda/cuda_emu.h, a CPU emulation of the subset of CUDA
 * used here, so the kernels' logic can be checked on machines without a GPU. */
#ifndef RFT_CUDA_INTERNAL_H
#define RFT_CUDA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef RFT_CUDA_EMU
#include "cuda_emu.h"
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

extern "C" {
#include "../backend.h"
#include "../bf16.h"
}

typedef struct cuda_impl {
    int device;
    cudaStream_t stream;
    cublasHandle_t cublas;
    int n_sm;             /* multiprocessors */
    size_t smem_optin;    /* max dynamic shared memory per block (opt-in) */
    int attn_hd_max;      /* largest head_dim the attention kernels take on this device (64 or 128) */
    int tc_minb_64;       /* the hd-64 wmma attention kernels' variant: blocks per SM asked of ptxas (3, or 1) */
    int attn_mma;         /* 1: bf16 attention on the mma.sync kernels (cuda_attention_mma.cu), 0: wmma */
    int attn_tf32;        /* 1: the fp32 attention ops on the TF32 tensor-core kernels (cuda_attention_tf32.cu) */
    void *scratch;        /* device scratch for multi-pass ops, grown on demand */
    size_t scratch_bytes;
    double *host_sumsq;   /* pinned host word for sumsq's result */
    int *dev_flags;       /* device [CUDA_N_FLAGS] error flags raised by kernels, checked at sync */
} cuda_impl;

/* kernel-raised error flags: 0 = none, else 1 + the offending row */
enum { CUDA_FLAG_EMBED_BAD = 0, CUDA_FLAG_TARGET_BAD = 1, CUDA_FLAG_SEQLENS_BAD = 2, CUDA_N_FLAGS = 4 };

#define CUDA_IMPL(be) ((cuda_impl *)(be)->impl)

/* records the first error "file:line: msg" in be->err */
void cuda_error(backend *be, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define CU_ERR(be, ...) cuda_error((be), __FILE__, __LINE__, __VA_ARGS__)

/* Check a CUDA runtime call; on failure record it and evaluate to nonzero. */
#define CU_CHECK(be, call)                                                                        \
    ({                                                                                            \
        cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess) cuda_error((be), __FILE__, __LINE__, "%s: %s", #call, cudaGetErrorString(e_)); \
        e_ != cudaSuccess;                                                                        \
    })
/* Check a cuBLAS call. */
#define CUBLAS_CHECK(be, call)                                                                    \
    ({                                                                                            \
        cublasStatus_t s_ = (call);                                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                          \
            cuda_error((be), __FILE__, __LINE__, "%s: cuBLAS status %d (%s)", #call, (int)s_, cuda_cublas_str(s_)); \
        s_ != CUBLAS_STATUS_SUCCESS;                                                              \
    })
/* Raises a kernel's dynamic shared-memory limit (its opt-in above 48 KB);
   on failure records it and returns -1 from the calling setup function. */
#define CU_SET_SMEM(be, kern, bytes)                                                                       \
    if (CU_CHECK(be, cudaFuncSetAttribute((const void *)(kern), cudaFuncAttributeMaxDynamicSharedMemorySize, \
                                          (int)(bytes))))                                                 \
        return -1
/* After a kernel launch: launch-configuration errors are reported here. */
#define CU_LAUNCHED(be, what)                                                                     \
    do {                                                                                          \
        cudaError_t e_ = cudaGetLastError();                                                      \
        if (e_ != cudaSuccess) cuda_error((be), __FILE__, __LINE__, "launch %s: %s", what, cudaGetErrorString(e_)); \
    } while (0)

/* kernel<<<grid, block, smem, stream>>>(args) */
#ifdef RFT_CUDA_EMU
#define LAUNCH(kern, grid, block, smem, stream, ...) \
    ((void)(stream), emu_launch((const void *)(kern), dim3(grid), dim3(block), (size_t)(smem), [=]() { kern(__VA_ARGS__); }))
#else
#define LAUNCH(kern, grid, block, smem, stream, ...) kern<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#endif

/* A device scratch buffer of at least `bytes`, valid until the next call (all
   ops run on the backend's one stream, in order). NULL + be->err on failure. */
void *cuda_scratch(backend *be, size_t bytes);

const char *cuda_cublas_str(cublasStatus_t s);

/* grid size for a grid-stride loop over n elements */
static inline int cuda_grid(size_t n, int threads, int max_blocks) {
    size_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    return b > (size_t)max_blocks ? max_blocks : (int)b;
}

/* ---- device helpers ---- */
#define FULL_MASK 0xffffffffu
/* RoPE: cos and sign * sin of token position p's angle for pair i (the CPU
   backend's fp32 arithmetic: inv_freq = 1 / theta^(2i/hd) with powf, angle =
   float(p) * inv_freq, full-precision cosf / sinf) */
static __device__ __forceinline__ void rope_cs(int p, int i, int hd, float theta, float sign, float *c, float *s) {
    float inv = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
    float a = (float)p * inv;
    *c = cosf(a), *s = sign * sinf(a);
}

/* two floats rounded to bf16 (kernels/bf16.h: nearest even), packed low first */
static __device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)fp32_to_bf16(lo) | (uint32_t)fp32_to_bf16(hi) << 16;
}
/* 8 bf16 values <-> 16 bytes (p 16-byte aligned) */
static __device__ __forceinline__ void bf16x8_load(float v[8], const uint16_t *p) {
    const uint4 u = *(const uint4 *)p;
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        v[2 * k] = __uint_as_float(w[k] << 16);
        v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
}
static __device__ __forceinline__ void bf16x8_store(uint16_t *p, const float v[8]) {
    *(uint4 *)p = make_uint4(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]), pack_bf16x2(v[4], v[5]),
                             pack_bf16x2(v[6], v[7]));
}

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}
static __device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}
static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}
/* ---- ops (backend.h semantics) ---- */
/* cuda_elementwise.cu */
void cuda_add(backend *be, float *out, const float *a, const float *b, size_t n);
void cuda_scale(backend *be, float *x, float s, size_t n);
void cuda_bias_forward(backend *be, float *x, const float *bias, int T, int N);
void cuda_bias_backward(backend *be, float *dbias, const float *dy, int T, int N);
void cuda_rope_forward(backend *be, float *x, const int32_t *pos, int T, int H, int hd, float theta);
void cuda_rope_backward(backend *be, float *dx, const int32_t *pos, int T, int H, int hd, float theta);
void cuda_rope_forward_bf16(backend *be, uint16_t *qkv, const float *bq, const float *bk, const float *bv,
                            const int32_t *pos, int T, int Hq, int Hkv, int hd, float theta);
void cuda_swiglu_forward(backend *be, float *out, const float *gate, const float *up, size_t n);
void cuda_swiglu_backward(backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, size_t n);
void cuda_swiglu_forward_bf16(backend *be, uint16_t *out16, const uint16_t *gu, int T, int F);
void cuda_swiglu_backward_bf16(backend *be, uint16_t *dgu16, const uint16_t *dout16, const uint16_t *gu, int T,
                               int F);
double cuda_sumsq(backend *be, const float *x, size_t n);
void cuda_adamw(backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
                float eps, float wd, int t);
/* column sums: out[N] += sum_t a[t,j] * (b ? b[t,j] : 1) * (rs ? rs[t] : 1),
   deterministic (fixed row chunks, then the chunk sums in order) */
void cuda_colsum(backend *be, float *out, const float *a, const uint16_t *a16, const float *b, const float *rs, int T,
                 int N);

/* cuda_bf16.cu (bf16 bits in uint16_t: round to nearest even, NaN -> quiet NaN) */
void cuda_cast_bf16(backend *be, uint16_t *dst, const float *src, size_t n);
void cuda_matmul_bf16(backend *be, int M, int N, int K, const float *x, const uint16_t *W, float beta, float *y);
void cuda_gemm_bf16(backend *be, int transA, int transB, int M, int N, int K, const uint16_t *A, int lda,
                    const uint16_t *B, int ldb, float beta, float *C, uint16_t *C16, int ldc);

/* cuda_norm_embed.cu */
void cuda_embedding_forward(backend *be, float *out, const float *table, const int32_t *ids, int T, int D);
void cuda_embedding_backward(backend *be, float *dtable, const float *dout, const int32_t *ids, int T, int D);
void cuda_rmsnorm_forward(backend *be, float *out, uint16_t *out16, float *rstd, float *xcopy, const float *x,
                          const float *w, int T, int D, float eps);
void cuda_rmsnorm_backward(backend *be, float *dx, uint16_t *dx16, float *dw, const float *dout,
                           const uint16_t *dout16, const float *x, const float *w, const float *rstd, int T, int D,
                           float beta);
int cuda_norm_setup(backend *be); /* raises the norm backward's shared-memory limit; 0 ok */

/* cuda_attention.cu */
int cuda_attention_setup(backend *be); /* raises the shared-memory limits; 0 ok */
/* shared with cuda_attention_bf16.cu: shape checks + the tile map
   (map[i] = (sequence, 64-row tile), *count tiles) in scratch after `extra`
   bytes for the caller (*extra_out); returns the grid width or -1 */
int cuda_attn_prepare(backend *be, const int32_t *cu, int B, int T, int Hq, int Hkv, int hd, size_t extra,
                      void **extra_out, int2 **map, int **count);
void cuda_attn_rowdot(backend *be, float *Dd, const float *dout, const float *out, int TH, int hd); /* D */
/* cuda_attention_bf16.cu */
int cuda_attention_bf16_setup(backend *be); /* after cuda_attention_setup; 0 ok */
/* cuda_attention_tf32.cu: the fp32 pair on the TF32 tensor cores (when tf32),
   called by cuda_attention_{forward,backward} with the tile map made */
int cuda_attention_tf32_setup(backend *be); /* after cuda_attention_setup; 0 ok */
void cuda_attention_tf32_forward(backend *be, dim3 grid, float *out, float *lse, const float *q, const float *k,
                                 const float *v, const int32_t *cu, const int2 *map, const int *count, int Hq,
                                 int Hkv, int hd, float scale);
void cuda_attention_tf32_backward(backend *be, dim3 gkv, dim3 gq, float *dq, float *dk, float *dv, const float *dout,
                                  const float *q, const float *k, const float *v, const float *lse, const float *Dd,
                                  const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd,
                                  float scale);
/* cuda_attention_mma.cu: the bf16 pair's mma.sync kernels, called by
   cuda_attention_{forward,backward}_bf16 with the tile map made (grids:
   (tiles, Hq) for the forward and dq, (tiles, Hkv) for dkdv) */
int cuda_attention_mma_setup(backend *be); /* after cuda_attention_setup; 0 ok */
void cuda_attention_mma_forward(backend *be, dim3 grid, uint16_t *out16, float *lse, const uint16_t *qkv,
                                const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd,
                                float scale);
void cuda_attention_mma_backward(backend *be, dim3 gkv, dim3 gq, uint16_t *dqkv, const uint16_t *dout,
                                 const uint16_t *qkv, const float *lse, const float *Dd, const int32_t *pos,
                                 float theta, const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv,
                                 int hd, float scale);
void cuda_attention_forward(backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                            const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);
void cuda_attention_backward(backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                             const float *k, const float *v, const float *out, const float *lse,
                             const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);
void cuda_attention_forward_bf16(backend *be, uint16_t *out16, float *lse, const uint16_t *qkv,
                                 const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);
void cuda_attention_backward_bf16(backend *be, uint16_t *dqkv16, const uint16_t *dout16, const uint16_t *qkv,
                                  const uint16_t *out16, const float *lse, const int32_t *pos, float theta,
                                  const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);

/* cuda_kvcache.cu */
void cuda_kv_write(backend *be, float *kc, float *vc, const float *k, const float *v, const int32_t *slot,
                   const int32_t *pos, int T, int kvd, int max_seq);
void cuda_attention_cached(backend *be, float *out, const float *q, const float *kc, const float *vc,
                           const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                           float scale);
void cuda_kv_write_bf16(backend *be, uint16_t *kc, uint16_t *vc, const float *k, const float *v, const int32_t *slot,
                        const int32_t *pos, int T, int kvd, int max_seq);
void cuda_attention_cached_bf16(backend *be, float *out, const float *q, const uint16_t *kc, const uint16_t *vc,
                                const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                                float scale);

/* cuda_logprob.cu */
void cuda_logprob_forward(backend *be, float *logp, float *entropy, float *lse_out, const float *logits,
                          const int32_t *targets, int T, int V);
void cuda_logprob_backward(backend *be, float *logits, uint16_t *d16, const float *dlogp, const float *dentropy,
                           const float *lse, const float *entropy,
                          const int32_t *targets, int T, int V);

/* cuda_sample.cu */
void cuda_sample(backend *be, int32_t *ids, float *logp, const float *logits, int n, int V, float temperature,
                 int top_k, float top_p, float min_p, const double *u);

/* cuda_embed_sort.cu: token positions 0..T-1 stably sorted by ids[T] on the
   stream: *keys = sorted ids [T], *vals = their positions [T], both in the
   scratch buffer (valid until the next scratch use). 0, or -1 + be->err */
int cuda_sort_ids(backend *be, const int32_t *ids, int T, const int32_t **keys, const int32_t **vals);

#endif
