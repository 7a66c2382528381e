/* kernels/backend.h: the compute backend interface. Every op the model needs,
 * over device pointers and explicit shapes. The model is written once against
 * this table; kernels/cpu/ (OpenBLAS + OpenMP) and kernels/cuda/ (cuBLAS +
 * kernels) implement it. The CPU backend is the reference every other backend
 * is tested against.
 *
 * Conventions
 * - All tensors are fp32, row-major, contiguous unless a leading dimension is
 *   given. Integer index arrays (token ids, positions, sequence offsets) are
 *   int32. Every pointer an op takes is a device pointer obtained from
 *   be->alloc (on the CPU backend device memory is host memory, but model code
 *   must never rely on that: it moves data with copy_h2d / copy_d2h).
 * - Shapes are written next to every argument as [rows, cols].
 * - Packed batches: T tokens of B sequences laid end to end, no padding.
 *   cu_seqlens[B+1] holds the start offset of each sequence (cu_seqlens[0] = 0,
 *   cu_seqlens[B] = T). Attention is causal within each sequence and never
 *   crosses sequences.
 * - "backward" ops ACCUMULATE (+=) into parameter gradients (dw, dtable, db)
 *   and WRITE (=) activation gradients (dx, dq, ...) unless noted.
 * - Ops are asynchronous with respect to the host on devices that allow it;
 *   copy_d2h, sumsq and sync block. Errors are sticky: an op that fails records
 *   a message "file:line: what" in be->err and later ops may be skipped;
 *   be->sync returns nonzero once an error is recorded.
 */
#ifndef RFT_BACKEND_H
#define RFT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct backend backend;

struct backend {
    const char *name;   /* "cpu", "cuda" */
    int n_threads;      /* host threads used by the CPU backend */
    size_t lm_chunk_bytes; /* preferred size of one LM-head logits chunk [tokens, V]: cache-sized on the
                              CPU (128 MB), large on a GPU so the chunked GEMMs are efficient (256 MB+) */
    char err[512];      /* first error recorded, "" when none */
    void *impl;         /* backend-private state */
    int device;         /* CUDA: the device's ordinal; 0 on the CPU */
    void *stream;       /* CUDA: the cudaStream_t every op is queued on (collectives join it); NULL on the CPU */
    int tf32;           /* CUDA: 1 when the fp32 matmuls and attention run on TF32 tensor cores (the default;
                           RFT_CUDA_TF32=0 turns it off when the backend is created); 0 on the CPU */

    /* ---- memory ---- */
    void *(*alloc)(backend *be, size_t bytes);   /* NULL + be->err on failure; memory is zeroed */
    void (*free)(backend *be, void *p);
    void (*copy_h2d)(backend *be, void *dst, const void *src, size_t bytes);
    void (*copy_d2h)(backend *be, void *dst, const void *src, size_t bytes);
    void (*copy_d2d)(backend *be, void *dst, const void *src, size_t bytes);
    void (*zero)(backend *be, void *p, size_t bytes);
    int  (*sync)(backend *be);                   /* 0 ok, -1 if an error is recorded */
    void (*destroy)(backend *be);                /* frees the backend itself */
    /* makes the calling host thread able to issue this backend's ops (CUDA:
       selects the backend's device for the thread); NULL when any thread can */
    void (*bind_thread)(backend *be);

    /* ---- dense linear algebra ----
     * C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, row-major.
     * op(X) = X if trans == 0, X^T if trans == 1. lda/ldb/ldc are row strides
     * (in elements) of A, B, C as stored. beta = 1 accumulates. batch > 1 runs
     * `batch` independent products with element strides sA, sB, sC. */
    void (*matmul)(backend *be, int transA, int transB, int M, int N, int K,
                   float alpha, const float *A, int lda, long sA,
                   const float *B, int ldb, long sB,
                   float beta, float *C, int ldc, long sC, int batch);

    /* ---- bf16 weights (rollouts in sampling.dtype: bf16) ----
     * A bf16 value is a uint16_t holding the upper 16 bits of an fp32
     * (bfloat16: 8 exponent bits, 7 stored mantissa bits).
     * cast_bf16: dst[n] = bf16(src[n]), rounded to nearest even; NaN stays a
     * (quiet) NaN, infinities stay infinite. */
    void (*cast_bf16)(backend *be, uint16_t *dst, const float *src, size_t n);
    /* y[M,N] = bf16(x)[M,K] @ W[N,K]^T + beta * y (beta 0 or 1): x rounded to
     * bf16 (nearest even) on the fly, products exact, fp32 accumulation.
     * Contiguous: x row stride K, W row stride K, y row stride N. On the CPU
     * backend every output row depends on its own row of x only (not on M or
     * the thread count), like the fp32 decode path. */
    void (*matmul_bf16)(backend *be, int M, int N, int K, const float *x, const uint16_t *W, float beta, float *y);
    /* ---- bf16 mixed-precision training (model.dtype: bf16) ----
     * C[M,N] = op(A)[M,K] @ op(B)[K,N] + beta * C (beta 0 or 1), A and B bf16
     * as stored (cast_bf16 made them), C fp32: products exact, fp32
     * accumulation (tensor cores on a GPU). op, lda/ldb/ldc as in matmul.
     * C16 != NULL (then C is NULL and beta 0): the fp32 result is written
     * rounded to bf16 (nearest even) into C16 [M,N] (row stride ldc) instead,
     * for products only bf16 consumers read (the MLP's gate and up). */
    void (*gemm_bf16)(backend *be, int transA, int transB, int M, int N, int K, const uint16_t *A, int lda,
                      const uint16_t *B, int ldb, float beta, float *C, uint16_t *C16, int ldc);

    /* ---- elementwise ---- */
    void (*add)(backend *be, float *out, const float *a, const float *b, size_t n);  /* out = a + b; out may alias a or b */
    void (*scale)(backend *be, float *x, float s, size_t n);                         /* x *= s */
    /* x[T,N] += bias[N] (broadcast over rows) */
    void (*bias_forward)(backend *be, float *x, const float *bias, int T, int N);
    /* dbias[N] += sum over rows of dy[T,N] */
    void (*bias_backward)(backend *be, float *dbias, const float *dy, int T, int N);

    /* ---- embedding ---- */
    /* out[T,D] = table[ids[t], :] */
    void (*embedding_forward)(backend *be, float *out, const float *table, const int32_t *ids, int T, int D);
    /* dtable[ids[t], :] += dout[t, :] (scatter-add; repeated ids accumulate) */
    void (*embedding_backward)(backend *be, float *dtable, const float *dout, const int32_t *ids, int T, int D);

    /* ---- RMSNorm ----
     * out[T,D] = x * rstd * w, rstd[T] = 1/sqrt(mean(x^2) + eps) (saved for backward).
     * out16 [T,D]: the same values rounded to bf16 (model.dtype bf16: the
     * next GEMM's operand). Either out or out16 may be NULL. xcopy [T,D]
     * (may be NULL): a copy of x, written as x is read (the residual
     * stream's next buffer, which the block's last GEMM then accumulates
     * into: no separate copy pass). */
    void (*rmsnorm_forward)(backend *be, float *out, uint16_t *out16, float *rstd, float *xcopy, const float *x,
                            const float *w, int T, int D, float eps);
    /* dx[T,D] = beta * dx + d/dx (beta 0: written, may alias dout; beta 1:
     * accumulated, the residual stream's gradient), dw[D] += d/dw, from
     * dout [T,D] fp32, or from dout16 [T,D] bf16 (model.dtype bf16: the
     * input gradient of the products that read the norm's output, rounded
     * by them); one of the two is NULL. dx16 [T,D] (may be NULL): the
     * resulting dx rounded to bf16 (model.dtype bf16: the next linear
     * layer's output-gradient operand). */
    void (*rmsnorm_backward)(backend *be, float *dx, uint16_t *dx16, float *dw, const float *dout,
                             const uint16_t *dout16, const float *x, const float *w, const float *rstd, int T, int D,
                             float beta);

    /* ---- RoPE (Hugging Face "rotate_half" convention: dims i and i+hd/2 pair up) ----
     * x[T, H, hd] rotated in place by angle pos[t] * theta^(-2i/hd). backward
     * applies the inverse rotation to the gradient in place. */
    void (*rope_forward)(backend *be, float *x, const int32_t *pos, int T, int H, int hd, float theta);
    void (*rope_backward)(backend *be, float *dx, const int32_t *pos, int T, int H, int hd, float theta);

    /* ---- causal grouped-query attention over a packed batch ----
     * q[T, Hq, hd], k[T, Hkv, hd], v[T, Hkv, hd] -> out[T, Hq, hd];
     * query head h reads kv head h / (Hq / Hkv). lse[T, Hq] = log-sum-exp of
     * the scaled scores of each query row (saved for backward).
     * scale is usually 1/sqrt(hd). No T x T matrix is stored. */
    void (*attention_forward)(backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                              const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);
    /* dq, dk, dv written (not accumulated) */
    void (*attention_backward)(backend *be, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v, const float *out, const float *lse,
                               const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);
    /* Mixed precision (model.dtype: bf16): the same attention over bf16
     * tensors. q, k and v come stacked in one bf16 tensor qkv[T, Hq*hd +
     * 2*Hkv*hd], each row q | k | v (the stacked q/k/v projection after
     * rope_forward_bf16); out16 [T, Hq, hd] and dout16 [T, Hq, hd] are bf16
     * (o_proj's operand and o_proj's input gradient). The operands of every
     * product (Q K^T, P V; backward dP = dO V^T, dV = P^T dO, dK = dS^T Q,
     * dQ = dS K) are these bf16 values, P and dS rounded to bf16 (nearest
     * even, kernels/bf16.h), fp32 accumulation (tensor cores on CUDA); the
     * softmax statistics, lse and D = rowsum(dO * O) (over the bf16 values)
     * are fp32; O is rounded once at the end. P is rounded as exp(s - m) with
     * m the running row max over 64-key tiles (the online softmax of the
     * CUDA forward; the CPU backend reproduces it), then rescaled in fp32.
     * The backward goes through the RoPE of rope_forward_bf16 too: it writes
     * dqkv16 [T, Hq*hd + 2*Hkv*hd] = bf16(rope_backward(dq) | rope_backward(dk)
     * | dv) per row (positions pos[T], base theta; dq, dk, dv the fp32
     * gradients of the attention's q, k, v), the gradient of the stacked
     * product's output before the bias. The CPU and CUDA backends round the
     * same values and differ by summation order only. */
    void (*attention_forward_bf16)(backend *be, uint16_t *out16, float *lse, const uint16_t *qkv,
                                   const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);
    void (*attention_backward_bf16)(backend *be, uint16_t *dqkv16, const uint16_t *dout16, const uint16_t *qkv,
                                    const uint16_t *out16, const float *lse, const int32_t *pos, float theta,
                                    const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale);
    /* RoPE on the stacked bf16 rows qkv[T, Hq*hd + 2*Hkv*hd] (q | k | v), in
     * place: x = qkv + (bq | bk | bv) (the biases [Hq*hd], [Hkv*hd],
     * [Hkv*hd] fp32, all NULL or all set), the q and k heads rotated as
     * rope_forward, all in fp32, each value rounded once. Its backward is
     * part of attention_backward_bf16's. */
    void (*rope_forward_bf16)(backend *be, uint16_t *qkv, const float *bq, const float *bk, const float *bv,
                              const int32_t *pos, int T, int Hq, int Hkv, int hd, float theta);

    /* ---- KV cache (rollouts) ----
     * A layer's cache is kc, vc [S, max_seq, Hkv*hd]: S slots (sequences),
     * each holding keys (after RoPE) and values by position.
     * kv_write stores token t's k[t], v[t] (each [T, Hkv*hd]) at
     * (slot[t], pos[t]). */
    void (*kv_write)(backend *be, float *kc, float *vc, const float *k, const float *v, const int32_t *slot,
                     const int32_t *pos, int T, int kvd, int max_seq);
    /* out[T, Hq, hd]: query t attends to positions 0..pos[t] (inclusive) of
     * cache slot slot[t]. Serves prefill (many tokens per slot, after kv_write)
     * and decode (one token per slot) alike. */
    void (*attention_cached)(backend *be, float *out, const float *q, const float *kc, const float *vc,
                             const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                             float scale);

    /* bf16 cache (rollouts with sampling.dtype: bf16; half the bytes of the
     * cache reads that dominate long decodes): the same two ops with kc, vc
     * holding bf16 values [S, max_seq, Hkv*hd]. kv_write_bf16 rounds k and v
     * to nearest even (as cast_bf16); attention_cached_bf16 widens the cached
     * rows to fp32 and computes exactly as attention_cached would on those
     * values (q, scores, softmax and output in fp32). */
    void (*kv_write_bf16)(backend *be, uint16_t *kc, uint16_t *vc, const float *k, const float *v,
                          const int32_t *slot, const int32_t *pos, int T, int kvd, int max_seq);
    void (*attention_cached_bf16)(backend *be, float *out, const float *q, const uint16_t *kc, const uint16_t *vc,
                                  const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd,
                                  int max_seq, float scale);

    /* ---- SwiGLU ---- out[n] = silu(gate) * up */
    void (*swiglu_forward)(backend *be, float *out, const float *gate, const float *up, size_t n);
    /* dgate, dup written (may alias dout) */
    void (*swiglu_backward)(backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                            const float *up, size_t n);
    /* model.dtype bf16: gu[T, 2F] bf16 holds both projections of each row,
     * gate = gu[t, 0:F], up = gu[t, F:2F] (one gemm_bf16 with C16 over the
     * stacked weights [gate; up] made them); the same formulas in fp32 on
     * their values, results rounded to bf16: out16[T, F] = bf16(silu(g) u)
     * (the down projection's operand); dgu16[T, 2F] = bf16 of the fp32
     * gradients (dgate | dup per row) given dout16[T, F] bf16 (the down
     * projection's input gradient, rounded by its GEMM): the output-
     * gradient operand of the stacked projection. Outputs do not alias
     * inputs. */
    void (*swiglu_forward_bf16)(backend *be, uint16_t *out16, const uint16_t *gu, int T, int F);
    void (*swiglu_backward_bf16)(backend *be, uint16_t *dgu16, const uint16_t *dout16, const uint16_t *gu, int T,
                                 int F);

    /* ---- fused log-softmax + target gather (+ entropy) ----
     * For each row t of logits[T,V]: lse = logsumexp(row), logp[t] = row[targets[t]] - lse,
     * entropy[t] = -sum_j p_j log p_j (entropy may be NULL), lse_out[t] = lse (may be NULL).
     * Targets < 0 give logp = 0 and entropy = 0 (ignored positions). */
    void (*logprob_forward)(backend *be, float *logp, float *entropy, float *lse_out, const float *logits,
                            const int32_t *targets, int T, int V);
    /* dL/dlogits given dlogp[T] (dL/dlogp) and dentropy[T] (dL/dentropy, may be NULL):
     * dz_j = dlogp*(1[j==target] - p_j) - dentropy * p_j * (log p_j + H),
     * with lse[T] and entropy[T] (H; read only with dentropy) as
     * logprob_forward wrote them for these logits: one pass over the row,
     * no statistics recomputed.
     * d16 == NULL: written in place over logits[T,V] (no second fp32 [T,V]
     * tensor). d16 != NULL: written rounded to bf16 into d16[T,V] (the LM
     * head's output-gradient operand, model.dtype bf16); logits' contents
     * are unspecified afterwards. */
    void (*logprob_backward)(backend *be, float *logits, uint16_t *d16, const float *dlogp, const float *dentropy,
                             const float *lse, const float *entropy, const int32_t *targets, int T, int V);

    /* ---- token sampling (rollouts) ----
     * ids[n] (int32), logp[n] (fp32) <- rows of logits[n, V]; u[n] (double,
     * uniform in [0, 1)) is read only when temperature > 0 (may be NULL
     * otherwise). For each row r (z = logits[r]):
     *   temperature <= 0 (greedy, the filters ignored): ids[r] = argmax
     *     (lowest id on ties), logp[r] = log-softmax (temperature 1) there,
     *     -log(sum_j exp((double)z_j - max));
     *   temperature T > 0: prob_j = expf((z_j - max) / T) * (float)(1 / sum)
     *     (fp32 terms, sum = sum_j expf(...) in double). Filters in Hugging
     *     Face's (and vLLM's) order: top-k, top-p, then min-p. Sorted when
     *     top_k in (0, V) or top_p in (0, 1): the ids with prob_j > 0 in the
     *     order (prob desc, id asc) (equal probs: lower id first); top-k
     *     keeps the first top_k (all if fewer); top-p then keeps the
     *     shortest head of the kept ids whose running mass reaches (>=)
     *     top_p * (their mass); min-p then drops the head's ids with prob_j
     *     < min_p * max_j prob_j (fp32 product; min_p <= 0: off). Else id
     *     order: the ids with prob_j > 0 and prob_j >= that floor. The kept
     *     ids' mass (double) is the normaliser; ids[r] is the first kept id,
     *     in that order, whose running mass exceeds (>) u[r] * mass (the
     *     last kept id if rounding leaves none), logp[r] = log(prob_id /
     *     mass).
     * This is trainer/sampler.c's sampler_sample exactly, up to summation
     * order (and expf by an ulp): a draw (or a top-p cut) within ~1e-15 of a
     * step of the running mass may land on the neighbouring id. top_k, top_p,
     * min_p as in sampler_config (0, 1, 0: off); min_p > 1 (nothing kept)
     * and NaN logits: unspecified. Deterministic: the result depends on the
     * row, u[r] and the settings only. NULL on the CPU backend: its device
     * memory is host memory, and the host sampler (trainer/sampler.c) is its
     * implementation and the reference this op is tested against. Callers
     * check for NULL. */
    void (*sample)(backend *be, int32_t *ids, float *logp, const float *logits, int n, int V, float temperature,
                   int top_k, float top_p, float min_p, const double *u);

    /* ---- optimizer ---- */
    /* returns sum of x[i]^2 over n elements, accumulated in double (blocks) */
    double (*sumsq)(backend *be, const float *x, size_t n);
    /* AdamW with decoupled weight decay and bias correction; step t >= 1.
     * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * p -= lr * (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * p) */
    void (*adamw)(backend *be, float *p, const float *g, float *m, float *v, size_t n,
                  float lr, float b1, float b2, float eps, float wd, int t);
};

/* kernels/cpu: n_threads <= 0 means all cores. Never returns NULL except on OOM. */
backend *backend_cpu_create(int n_threads);

/* kernels/cuda: NULL with a message in err when there is no device or CUDA is not built. */
backend *backend_cuda_create(int device, char *err, size_t err_cap);

#endif
