/* kernels/cpu/cpu_internal.h: what the CPU backend's files share: the op
 * functions each file defines, installed into the table by backend_cpu.c. */
#ifndef RFT_CPU_INTERNAL_H
#define RFT_CPU_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "../backend.h"
#include "../bf16.h"

/* cpu_linalg.c */
void cpu_matmul(backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                long sA, const float *B, int ldb, long sB, float beta, float *C, int ldc, long sC, int batch);
/* per-backend scratch of at least bytes (64-byte aligned), valid until the next call; NULL + be->err on OOM */
void *cpu_scratch(backend *be, size_t bytes);
void *cpu_scratch2(backend *be, size_t bytes); /* a second one, for an op that calls another op using the first */
void cpu_cast_bf16(backend *be, uint16_t *dst, const float *src, size_t n);
/* a[rows, cols] (row stride ld) widened exactly to fp32 into w[rows, cols], nt threads */
void cpu_widen_bf16(float *w, const uint16_t *a, int rows, int cols, size_t ld, int nt);
void cpu_matmul_bf16(backend *be, int M, int N, int K, const float *x, const uint16_t *W, float beta, float *y);
void cpu_gemm_bf16(backend *be, int transA, int transB, int M, int N, int K, const uint16_t *A, int lda,
                   const uint16_t *B, int ldb, float beta, float *C, uint16_t *C16, int ldc);
/* gemm_bf16 on a given path (tests): 2 AVX512_BF16, 1 AVX2 + FMA (the matmul_bf16
   kernels on operands laid out as rows), 0 the reference (widen to fp32 + sgemm);
   a path the CPU lacks falls back to the best it has */
void cpu_gemm_bf16_path(backend *be, int transA, int transB, int M, int N, int K, const uint16_t *A, int lda,
                        const uint16_t *B, int ldb, float beta, float *C, uint16_t *C16, int ldc, int path);
/* path 2: AVX512_BF16, 1: AVX2 + FMA, 0: portable C; a path this CPU lacks
   falls back to the best it has (tests call each path directly) */
void cpu_matmul_bf16_path(backend *be, int M, int N, int K, const float *x, const uint16_t *W, float beta, float *y,
                          int path);
int cpu_bf16_best_path(void);
void cpu_add(backend *be, float *out, const float *a, const float *b, size_t n);
void cpu_scale(backend *be, float *x, float s, size_t n);
void cpu_bias_forward(backend *be, float *x, const float *bias, int T, int N);
void cpu_bias_backward(backend *be, float *dbias, const float *dy, int T, int N);

/* cpu_setup.c: OpenBLAS core-type check (DESIGN.md platform notes) */
void cpu_openblas_setup(int n_threads);
void cpu_blas_threads(int n); /* openblas_set_num_threads when n differs from the current count */

/* cpu_elementwise.c */
void cpu_embedding_forward(backend *be, float *out, const float *table, const int32_t *ids, int T, int D);
void cpu_embedding_backward(backend *be, float *dtable, const float *dout, const int32_t *ids, int T, int D);
void cpu_rmsnorm_forward(backend *be, float *out, uint16_t *out16, float *rstd, float *xcopy, const float *x,
                         const float *w, int T, int D, float eps);
void cpu_rmsnorm_backward(backend *be, float *dx, uint16_t *dx16, float *dw, const float *dout,
                          const uint16_t *dout16, const float *x, const float *w, const float *rstd, int T, int D,
                          float beta);
void cpu_rope_forward(backend *be, float *x, const int32_t *pos, int T, int H, int hd, float theta);
void cpu_rope_backward(backend *be, float *dx, const int32_t *pos, int T, int H, int hd, float theta);
void cpu_rope_forward_bf16(backend *be, uint16_t *qkv, const float *bq, const float *bk, const float *bv,
                           const int32_t *pos, int T, int Hq, int Hkv, int hd, float theta);
/* dqkv16[t] = bf16(rope_backward(dq[t]) | rope_backward(dk[t]) | dv[t]): the
   last step of cpu_attention_backward_bf16 */
void cpu_rope_backward_bf16(backend *be, uint16_t *dqkv16, const float *dq, const float *dk, const float *dv,
                            const int32_t *pos, int T, int Hq, int Hkv, int hd, float theta);
void cpu_swiglu_forward(backend *be, float *out, const float *gate, const float *up, size_t n);
void cpu_swiglu_backward(backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n);
void cpu_swiglu_forward_bf16(backend *be, uint16_t *out16, const uint16_t *gu, int T, int F);
void cpu_swiglu_backward_bf16(backend *be, uint16_t *dgu16, const uint16_t *dout16, const uint16_t *gu, int T,
                              int F);

/* cpu_attention.c */
void cpu_attention_forward(backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);
void cpu_attention_backward(backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse,
                            const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);
void cpu_attention_forward_bf16(backend *be, uint16_t *out16, float *lse, const uint16_t *qkv,
                                const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);
void cpu_attention_backward_bf16(backend *be, uint16_t *dqkv16, const uint16_t *dout16, const uint16_t *qkv,
                                 const uint16_t *out16, const float *lse, const int32_t *pos, float theta,
                                 const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);

/* cpu_kvcache.c */
void cpu_kv_write(backend *be, float *kc, float *vc, const float *k, const float *v, const int32_t *slot,
                  const int32_t *pos, int T, int kvd, int max_seq);
void cpu_attention_cached(backend *be, float *out, const float *q, const float *kc, const float *vc,
                          const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                          float scale);
/* path 1: AVX-512 where the CPU and shape allow, 0: portable C (tests call each) */
void cpu_kv_write_bf16(backend *be, uint16_t *kc, uint16_t *vc, const float *k, const float *v, const int32_t *slot,
                       const int32_t *pos, int T, int kvd, int max_seq);
void cpu_attention_cached_bf16(backend *be, float *out, const float *q, const uint16_t *kc, const uint16_t *vc,
                               const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                               float scale);
void cpu_attention_cached_bf16_path(backend *be, float *out, const float *q, const uint16_t *kc, const uint16_t *vc,
                                    const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd,
                                    int max_seq, float scale, int path);
void cpu_attention_cached_path(backend *be, float *out, const float *q, const float *kc, const float *vc,
                               const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                               float scale, int path);
void cpu_kv_exp(float *y, const float *x, size_t n); /* the softmax's exp, <= 2 ulp (tests) */

/* cpu_logprob.c */
void cpu_logprob_forward(backend *be, float *logp, float *entropy, float *lse_out, const float *logits,
                         const int32_t *targets, int T, int V);
void cpu_logprob_backward(backend *be, float *logits, uint16_t *d16, const float *dlogp, const float *dentropy,
                          const float *lse, const float *entropy,
                          const int32_t *targets, int T, int V);

/* cpu_optim.c */
double cpu_sumsq(backend *be, const float *x, size_t n);
void cpu_adamw(backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
               float eps, float wd, int t);

/* records the first error "file:line: msg" in be->err */
void cpu_error(backend *be, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
#define CPU_ERR(be, ...) cpu_error((be), __FILE__, __LINE__, __VA_ARGS__)

/* Elementwise work on flat arrays is cut into chunks of this many elements,
   so every element goes through the same code path whatever the thread count
   (results are bitwise independent of n_threads). */
#define CPU_CHUNK 4096

/* exp(x) in fp32 that the compiler can vectorise (Cephes polynomial, ~1 ulp
   over the normal range); returns 0 below -87.3 (and for -inf), saturates at
   exp(88). Used in softmax-like loops where libm's expf would not vectorise. */
static inline float cpu_expf(float x) {
    const float hi = 88.0f, lo = -87.33654f;
    float xc = x > hi ? hi : (x < lo ? lo : x);
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln2) */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    union { int32_t i; float f; } u;
    u.i = ((int32_t)n + 127) << 23;
    y *= u.f;
    return x < lo ? 0.0f : y;
}

#endif
