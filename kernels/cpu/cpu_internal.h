/* kernels/cpu/cpu_internal.h: what the CPU backend's files share: the op
 * functions each file defines, installed into the table by backend_cpu.c. */
#ifndef RFT_CPU_INTERNAL_H
#define RFT_CPU_INTERNAL_H

#include "../backend.h"

/* cpu_linalg.c */
void cpu_matmul(backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                long sA, const float *B, int ldb, long sB, float beta, float *C, int ldc, long sC, int batch);
void cpu_add(backend *be, float *out, const float *a, const float *b, size_t n);
void cpu_scale(backend *be, float *x, float s, size_t n);
void cpu_bias_forward(backend *be, float *x, const float *bias, int T, int N);
void cpu_bias_backward(backend *be, float *dbias, const float *dy, int T, int N);

/* cpu_setup.c: OpenBLAS core-type check (DESIGN.md platform notes) */
void cpu_openblas_setup(int n_threads);

#endif
