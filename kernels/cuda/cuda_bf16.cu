/* kernels/cuda/cuda_bf16.cu: bf16 on the CUDA backend: cast_bf16 (fp32 ->
 * bf16 bits), gemm_bf16 (C = op(A) op(B) + beta C through cublasGemmEx, bf16
 * inputs, fp32 output and accumulation: the products of model.dtype bf16
 * training) and matmul_bf16 (y = bf16(x) W^T + beta y, the rollouts'
 * linear in sampling.dtype: bf16).
 *
 * Rounding is done with integer arithmetic, the same rule as the CPU
 * backend and trainer/quant.c's fp32_to_bf16, so the bits match exactly:
 * round to nearest even (x + 0x7fff + lsb, top 16 bits; overflow rounds to
 * infinity, infinities stay infinite), NaN -> top 16 bits with the quiet
 * bit set (sign and upper payload kept). __float2bfloat16_rn would give the
 * canonical NaN 0x7fff instead. The rule is fp32_to_bf16 in kernels/bf16.h
 * (shared with kv_write_bf16). */
#include "cuda_internal.h"

#define BF_THREADS 256
#define BF_MAX_BLOCKS 65535

/* dst[n] = bf16(src[n]) */
static __global__ void cast_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = fp32_to_bf16(src[i]);
}

void cuda_cast_bf16(backend *be, uint16_t *dst, const float *src, size_t n) {
    if (be->err[0] || !n) return;
    LAUNCH(cast_bf16_kernel, cuda_grid(n, BF_THREADS, BF_MAX_BLOCKS), BF_THREADS, 0, CUDA_IMPL(be)->stream, dst, src,
           n);
    CU_LAUNCHED(be, "cast_bf16_kernel");
}

/* Row-major C[M,N] = op(A) op(B) + beta C with bf16 A, B, mapped to
 * column-major as cuda_matmul does: cuBLAS computes C^T[N,M] = op(B)^T
 * op(A)^T, i.e. (B, A) swapped with the same trans flags and leading
 * dimensions, m = N, n = M. bf16 x bf16 products (exact in fp32) are
 * accumulated in fp32 on the tensor cores (CUBLAS_COMPUTE_32F); the TF32
 * setting does not apply. C16: the same call with a bf16 C (cuBLAS rounds
 * the fp32 result in its epilogue). */
void cuda_gemm_bf16(backend *be, int transA, int transB, int M, int N, int K, const uint16_t *A, int lda,
                    const uint16_t *B, int ldb, float beta, float *C, uint16_t *C16, int ldc) {
    if (be->err[0] || M <= 0 || N <= 0) return;
    if (C16 && (C || beta != 0.0f)) {
        CU_ERR(be, "gemm_bf16: a bf16 output takes beta 0 and no fp32 output");
        return;
    }
    if (K < 0) K = 0;
    if (lda < 1) lda = 1; /* K = 0 (C = beta C): cuBLAS still wants ld >= 1 */
    if (ldb < 1) ldb = 1;
    const float alpha = 1.0f;
    CUBLAS_CHECK(be, cublasGemmEx(CUDA_IMPL(be)->cublas, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  transA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, CUDA_R_16BF, ldb, A,
                                  CUDA_R_16BF, lda, &beta, C16 ? (void *)C16 : (void *)C,
                                  C16 ? CUDA_R_16BF : CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
}

/* y[M,N] = bf16(x)[M,K] W[N,K]^T + beta y: x is rounded to bf16 into the
 * scratch buffer xb[M,K], then gemm_bf16 (transA 0, transB 1). */
void cuda_matmul_bf16(backend *be, int M, int N, int K, const float *x, const uint16_t *W, float beta, float *y) {
    if (be->err[0] || M <= 0 || N <= 0) return;
    if (K < 0) K = 0;
    size_t nx = (size_t)M * K;
    uint16_t *xb = (uint16_t *)cuda_scratch(be, (nx ? nx : 1) * sizeof(uint16_t));
    if (!xb) return;
    cuda_cast_bf16(be, xb, x, nx);
    int ld = K > 0 ? K : 1;
    cuda_gemm_bf16(be, 0, 1, M, N, K, xb, ld, W, ld, beta, y, NULL, N);
}
