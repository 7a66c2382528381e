/* kernels/cpu/cpu_linalg.c: matmul through OpenBLAS (cblas_sgemm), and the
 * elementwise ops add, scale, bias forward/backward (OpenMP). */
#include <cblas.h>
#include <string.h>

#include "cpu_internal.h"

void cpu_matmul(backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                long sA, const float *B, int ldb, long sB, float beta, float *C, int ldc, long sC, int batch) {
    if (M <= 0 || N <= 0) return;
    cpu_blas_threads(be->n_threads);
    if (M == 1 && !transA && transB && batch == 1 && K > 0) {
        /* one row times a weight matrix (batch-1 decode): sgemv streams the
           weights once; sgemm would first copy (pack) all of them */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, alpha, B, ldb, A, 1, beta, C, 1);
        return;
    }
    for (int i = 0; i < batch; i++) {
        if (K <= 0) { /* C = beta * C */
            for (int r = 0; r < M; r++)
                for (int c = 0; c < N; c++) C[i * sC + (long)r * ldc + c] *= beta;
            continue;
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K,
                    alpha, A + i * sA, lda, B + i * sB, ldb, beta, C + i * sC, ldc);
    }
}

void cpu_add(backend *be, float *out, const float *a, const float *b, size_t n) {
    (void)be;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_scale(backend *be, float *x, float s, size_t n) {
    (void)be;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

void cpu_bias_forward(backend *be, float *x, const float *bias, int T, int N) {
    (void)be;
#pragma omp parallel for schedule(static) if ((long)T * N > 32768)
    for (int t = 0; t < T; t++)
        for (int j = 0; j < N; j++) x[(long)t * N + j] += bias[j];
}

void cpu_bias_backward(backend *be, float *dbias, const float *dy, int T, int N) {
    (void)be;
#pragma omp parallel for schedule(static) if ((long)T * N > 32768)
    for (int j = 0; j < N; j++) {
        double s = 0;
        for (int t = 0; t < T; t++) s += dy[(long)t * N + j];
        dbias[j] += (float)s;
    }
}
