/* kernels/cpu/cpu_linalg.c: matmul through OpenBLAS (cblas_sgemm, one
 * block per OpenMP thread), a
 * small-M kernel for the forward linear y[M,N] = x[M,K] W[N,K]^T of decode
 * steps (AVX-512, no packing: each weight row is read once for all M rows),
 * and the elementwise ops add, scale, bias forward/backward (OpenMP). */
#include <cblas.h>
#include <string.h>

#include "cpu_internal.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CPU_HAVE_NT_SMALL 1

/* Rows of A handled by the small kernel: decode steps (one row per live
   sequence, up to 64 here) and short prefills. Above it sgemm is faster. */
#define NT_SMALL_MAX_M 64
#define NT_NB 4 /* weight rows per block */
#define NT_MB 6 /* rows of A per block: 4 x 6 accumulators + 4 weight registers */

/* C[mb, NT_NB] (ldc) = alpha * A[mb, K] W[NT_NB, K]^T + beta * C: every
   output is one 16-lane dot product accumulated over K in order, then reduced
   by a fixed tree, so its bits depend on (its row of A, its row of W, K) only,
   never on M, the blocking or the thread count. */
__attribute__((target("avx512f"), always_inline)) static inline void nt_block(int mb, int nb, int K, float alpha,
                                                                                const float *A, int lda,
                                                                                const float *W, int ldw, float beta,
                                                                                float *C, int ldc, int prefetch) {
    __m512 acc[NT_NB][NT_MB];
    for (int i = 0; i < NT_NB; i++)
        for (int j = 0; j < NT_MB; j++) acc[i][j] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 w[NT_NB];
        for (int i = 0; i < NT_NB; i++) w[i] = i < nb ? _mm512_loadu_ps(W + (size_t)i * ldw + k) : _mm512_setzero_ps();
        if (prefetch) /* the next block's weight rows (streamed from memory) while this one computes */
            for (int i = 0; i < NT_NB; i++) _mm_prefetch((const char *)(W + (size_t)(NT_NB + i) * ldw + k), _MM_HINT_T0);
        for (int j = 0; j < mb; j++) {
            __m512 a = _mm512_loadu_ps(A + (size_t)j * lda + k);
            for (int i = 0; i < nb; i++) acc[i][j] = _mm512_fmadd_ps(w[i], a, acc[i][j]);
        }
    }
    if (k < K) {
        __mmask16 msk = (__mmask16)((1u << (K - k)) - 1);
        __m512 w[NT_NB];
        for (int i = 0; i < NT_NB; i++)
            w[i] = i < nb ? _mm512_maskz_loadu_ps(msk, W + (size_t)i * ldw + k) : _mm512_setzero_ps();
        for (int j = 0; j < mb; j++) {
            __m512 a = _mm512_maskz_loadu_ps(msk, A + (size_t)j * lda + k);
            for (int i = 0; i < nb; i++) acc[i][j] = _mm512_fmadd_ps(w[i], a, acc[i][j]);
        }
    }
    for (int j = 0; j < mb; j++)
        for (int i = 0; i < nb; i++) {
            float s = alpha * _mm512_reduce_add_ps(acc[i][j]);
            float *c = C + (size_t)j * ldc + i;
            *c = beta == 0.0f ? s : s + beta * *c;
        }
}

/* one block of NT_NB weight rows (nb of them valid) against all M rows of A */
__attribute__((target("avx512f"))) static void nt_panel(int M, int nb, int K, float alpha, const float *A, int lda,
                                                         const float *W, int ldw, float beta, float *C, int ldc) {
    int m = 0;
    if (nb == NT_NB) {
        for (; m + NT_MB <= M; m += NT_MB)
            nt_block(NT_MB, NT_NB, K, alpha, A + (size_t)m * lda, lda, W, ldw, beta, C + (size_t)m * ldc, ldc, m == 0);
        switch (M - m) { /* constant mb: each case compiles to its own unrolled loop */
        case 1: nt_block(1, NT_NB, K, alpha, A + (size_t)m * lda, lda, W, ldw, beta, C + (size_t)m * ldc, ldc, m == 0); break;
        case 2: nt_block(2, NT_NB, K, alpha, A + (size_t)m * lda, lda, W, ldw, beta, C + (size_t)m * ldc, ldc, m == 0); break;
        case 3: nt_block(3, NT_NB, K, alpha, A + (size_t)m * lda, lda, W, ldw, beta, C + (size_t)m * ldc, ldc, m == 0); break;
        case 4: nt_block(4, NT_NB, K, alpha, A + (size_t)m * lda, lda, W, ldw, beta, C + (size_t)m * ldc, ldc, m == 0); break;
        case 5: nt_block(5, NT_NB, K, alpha, A + (size_t)m * lda, lda, W, ldw, beta, C + (size_t)m * ldc, ldc, m == 0); break;
        default: break;
        }
    } else {
        for (; m < M; m++) nt_block(1, nb, K, alpha, A + (size_t)m * lda, lda, W, ldw, beta, C + (size_t)m * ldc, ldc, m == 0);
    }
}

static void nt_small(backend *be, int M, int N, int K, float alpha, const float *A, int lda, const float *W, int ldw,
                     float beta, float *C, int ldc) {
    int nblk = (N + NT_NB - 1) / NT_NB;
    /* threads split the weight rows (contiguous ranges: each thread streams
       its share of W once); outputs do not depend on the split */
#pragma omp parallel for schedule(static) num_threads(be->n_threads) if ((long)N * K * (M + 4) > 1000000)
    for (int b = 0; b < nblk; b++) {
        int n0 = b * NT_NB, nb = N - n0 < NT_NB ? N - n0 : NT_NB;
        nt_panel(M, nb, K, alpha, A, lda, W + (size_t)n0 * ldw, ldw, beta, C + n0, ldc);
    }
}

static int nt_small_ok(void) {
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx512f") ? 1 : 0;
    }
    return ok;
}
#else
#define CPU_HAVE_NT_SMALL 0
#endif

/* One product C = alpha op(A) op(B) + beta C with its columns (or rows, when
   there are more of them) split across the OpenMP threads, each calling
   single-threaded sgemm (or sgemv for one row) on its block. OpenBLAS never
   starts threads of its own: every worker of the program is an OpenMP
   thread, so OpenMP threads may spin between regions (the cheap way to wait
   on a VM, where a futex wake-up costs ~0.1-0.3 ms) without stealing cores
   from BLAS threads. Each element of C is computed by the same kernel
   sequence over K whatever the split. */
static void sgemm_split(backend *be, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc) {
    int nt = be->n_threads > 0 ? be->n_threads : 1;
    if ((double)M * N * K < 1e6) nt = 1; /* fork/join would cost more than it saves */
    int by_n = N >= M, dim = by_n ? N : M;
    int chunk = ((dim + nt - 1) / nt + 15) & ~15; /* whole 16-wide column / row panels */
    cpu_blas_threads(1);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int i = 0; i < nt; i++) {
        int lo = i * chunk, hi = lo + chunk < dim ? lo + chunk : dim;
        if (lo >= hi) continue;
        const float *a = A, *b = B;
        float *c = C;
        int m = M, n = N;
        if (by_n) {
            b = tb ? B + (size_t)lo * ldb : B + lo; /* columns lo..hi of op(B) */
            c = C + lo, n = hi - lo;
        } else {
            a = ta ? A + lo : A + (size_t)lo * lda; /* rows lo..hi of op(A) */
            c = C + (size_t)lo * ldc, m = hi - lo;
        }
        if (m == 1 && !ta && tb) /* one row times a weight matrix: sgemv streams it once, sgemm would pack it */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n, K, alpha, b, ldb, a, 1, beta, c, 1);
        else
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, K, alpha,
                        a, lda, b, ldb, beta, c, ldc);
    }
}

void cpu_matmul(backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                long sA, const float *B, int ldb, long sB, float beta, float *C, int ldc, long sC, int batch) {
    if (M <= 0 || N <= 0) return;
#if CPU_HAVE_NT_SMALL
    if (!transA && transB && batch == 1 && K > 0 && M <= NT_SMALL_MAX_M && nt_small_ok()) {
        /* forward linear with few rows (decode): no packing of the weights,
           each weight row read once; per-row results independent of M */
        nt_small(be, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    if (K <= 0) { /* C = beta * C */
        for (int i = 0; i < batch; i++)
            for (int r = 0; r < M; r++)
                for (int c = 0; c < N; c++) C[i * sC + (long)r * ldc + c] *= beta;
        return;
    }
    if (batch >= be->n_threads && batch > 1) {
        /* enough independent products (attention heads, say): one per thread */
        cpu_blas_threads(1);
#pragma omp parallel for schedule(static) num_threads(be->n_threads)
        for (int i = 0; i < batch; i++)
            cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N,
                        K, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc);
        return;
    }
    for (int i = 0; i < batch; i++)
        sgemm_split(be, transA, transB, M, N, K, alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc);
}

void cpu_add(backend *be, float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) num_threads(be->n_threads) if (n > 32768)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_scale(backend *be, float *x, float s, size_t n) {
#pragma omp parallel for schedule(static) num_threads(be->n_threads) if (n > 32768)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

void cpu_bias_forward(backend *be, float *x, const float *bias, int T, int N) {
#pragma omp parallel for schedule(static) num_threads(be->n_threads) if ((long)T * N > 32768)
    for (int t = 0; t < T; t++)
        for (int j = 0; j < N; j++) x[(long)t * N + j] += bias[j];
}

void cpu_bias_backward(backend *be, float *dbias, const float *dy, int T, int N) {
#pragma omp parallel for schedule(static) num_threads(be->n_threads) if ((long)T * N > 32768)
    for (int j = 0; j < N; j++) {
        double s = 0;
        for (int t = 0; t < T; t++) s += dy[(long)t * N + j];
        dbias[j] += (float)s;
    }
}
