/* kernels/cuda/cuda_bf16.cu: bf16 weights on the CUDA backend (rollouts in
 * sampling.dtype: bf16): cast_bf16 (fp32 -> bf16 bits) and matmul_bf16
 * (y = bf16(x) W^T + beta y through cublasGemmEx, bf16 inputs, fp32 output
 * and accumulation).
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

/* Row-major y[M,N] = xb[M,K] W[N,K]^T, mapped to column-major as cuda_matmul
 * does (transA 0, transB 1): cuBLAS computes y^T[N,M] = op(W) op(xb), where
 * W row-major [N,K] read column-major with ld K is W^T, so op(W) = T, op(xb)
 * = N (ld K), m = N, n = M, ldc = N. x is first rounded to bf16 into the
 * scratch buffer xb[M,K]; then bf16 x bf16 products (exact in fp32) are
 * accumulated in fp32 (CUBLAS_COMPUTE_32F). */
void cuda_matmul_bf16(backend *be, int M, int N, int K, const float *x, const uint16_t *W, float beta, float *y) {
    if (be->err[0] || M <= 0 || N <= 0) return;
    cuda_impl *im = CUDA_IMPL(be);
    if (K < 0) K = 0;
    size_t nx = (size_t)M * K;
    uint16_t *xb = (uint16_t *)cuda_scratch(be, (nx ? nx : 1) * sizeof(uint16_t));
    if (!xb) return;
    cuda_cast_bf16(be, xb, x, nx);
    if (be->err[0]) return;
    const float alpha = 1.0f;
    int ld = K > 0 ? K : 1;
    CUBLAS_CHECK(be, cublasGemmEx(im->cublas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, CUDA_R_16BF, ld, xb,
                                  CUDA_R_16BF, ld, &beta, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
