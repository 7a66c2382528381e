/* kernels/cuda/backend_cuda.cu: the CUDA backend object: device selection,
 * stream and cuBLAS handle, memory (cudaMalloc + zero), copies, sync, the
 * scratch buffer, matmul through cublasSgemmStridedBatched, and the op table.
 * Ops live in the other .cu files of kernels/cuda.
 *
 * Environment: RFT_CUDA_TF32=0 turns TF32 tensor-core math off for fp32
 * matmuls (default on, as PyTorch's allow_tf32 / the design allows). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

void cuda_error(backend *be, const char *file, int line, const char *fmt, ...) {
    if (be->err[0]) return; /* keep the first error */
    const char *base = strrchr(file, '/');
    int n = snprintf(be->err, sizeof be->err, "%s:%d: ", base ? base + 1 : file, line);
    if (n < 0 || (size_t)n >= sizeof be->err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->err + n, sizeof be->err - (size_t)n, fmt, ap);
    va_end(ap);
}

const char *cuda_cublas_str(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "alloc failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "arch mismatch";
    case CUBLAS_STATUS_MAPPING_ERROR: return "mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "unknown";
    }
}

/* ---- memory ---- */

static void *cuda_alloc(backend *be, size_t bytes) {
    void *p = NULL;
    size_t n = (bytes + 255) & ~(size_t)255;
    if (n == 0) n = 256;
    if (CU_CHECK(be, cudaMalloc(&p, n))) return NULL;
    if (CU_CHECK(be, cudaMemsetAsync(p, 0, n, CUDA_IMPL(be)->stream))) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cuda_free(backend *be, void *p) {
    if (!p) return;
    /* work still queued may read p: cudaFree "may" synchronize, not must */
    CU_CHECK(be, cudaStreamSynchronize(CUDA_IMPL(be)->stream));
    CU_CHECK(be, cudaFree(p));
}

static void cuda_check_flags(backend *be);

static void cuda_copy_h2d(backend *be, void *dst, const void *src, size_t bytes) {
    if (be->err[0] || !bytes) return;
    /* from pageable memory the driver "may" stage the data before returning
       (API synchronization behavior), so the copy is waited for: callers
       reuse or free src at once. Uploads come between steps, when the
       stream has little or nothing queued. */
    cudaStream_t st = CUDA_IMPL(be)->stream;
    if (CU_CHECK(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st))) return;
    CU_CHECK(be, cudaStreamSynchronize(st));
}

static void cuda_copy_d2h(backend *be, void *dst, const void *src, size_t bytes) {
    if (be->err[0] || !bytes) return;
    cudaStream_t st = CUDA_IMPL(be)->stream;
    if (CU_CHECK(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st))) return;
    if (CU_CHECK(be, cudaStreamSynchronize(st))) return;
    cuda_check_flags(be);
}

static void cuda_copy_d2d(backend *be, void *dst, const void *src, size_t bytes) {
    if (be->err[0] || !bytes || dst == src) return;
    CU_CHECK(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, CUDA_IMPL(be)->stream));
}

static void cuda_zero(backend *be, void *p, size_t bytes) {
    if (be->err[0] || !bytes) return;
    CU_CHECK(be, cudaMemsetAsync(p, 0, bytes, CUDA_IMPL(be)->stream));
}

/* Errors that kernels raise through dev_flags (bad ids) become be->err here. */
static void cuda_check_flags(backend *be) {
    cuda_impl *im = CUDA_IMPL(be);
    int f[CUDA_N_FLAGS];
    if (CU_CHECK(be, cudaMemcpy(f, im->dev_flags, sizeof f, cudaMemcpyDeviceToHost))) return;
    if (f[CUDA_FLAG_EMBED_BAD]) CU_ERR(be, "embedding_forward: negative token id at position %d", f[CUDA_FLAG_EMBED_BAD] - 1);
    if (f[CUDA_FLAG_TARGET_BAD]) CU_ERR(be, "logprob: target id out of range [0, V) at row %d", f[CUDA_FLAG_TARGET_BAD] - 1);
    if (f[CUDA_FLAG_SEQLENS_BAD]) CU_ERR(be, "attention: cu_seqlens must start at 0, end at T and never decrease");
}

static int cuda_sync(backend *be) {
    if (!be->err[0]) CU_CHECK(be, cudaStreamSynchronize(CUDA_IMPL(be)->stream));
    if (!be->err[0]) CU_CHECK(be, cudaGetLastError());
    if (!be->err[0]) cuda_check_flags(be);
    return be->err[0] ? -1 : 0;
}

void *cuda_scratch(backend *be, size_t bytes) {
    cuda_impl *im = CUDA_IMPL(be);
    if (be->err[0]) return NULL;
    if (bytes <= im->scratch_bytes) return im->scratch;
    size_t n = bytes + bytes / 4 + (1 << 20);
    if (im->scratch) {
        /* pending work may still read the old buffer */
        if (CU_CHECK(be, cudaStreamSynchronize(im->stream))) return NULL;
        CU_CHECK(be, cudaFree(im->scratch));
        im->scratch = NULL;
        im->scratch_bytes = 0;
    }
    if (CU_CHECK(be, cudaMalloc(&im->scratch, n))) {
        im->scratch = NULL;
        return NULL;
    }
    im->scratch_bytes = n;
    return im->scratch;
}

/* a host thread's current device is its own: select ours for the caller */
static void cuda_bind_thread(backend *be) {
    if (be->err[0]) return;
    CU_CHECK(be, cudaSetDevice(CUDA_IMPL(be)->device));
}

static void cuda_destroy(backend *be) {
    if (!be) return;
    cuda_impl *im = CUDA_IMPL(be);
    if (im) {
        if (im->stream) cudaStreamSynchronize(im->stream);
        if (im->scratch) cudaFree(im->scratch);
        if (im->host_sumsq) cudaFreeHost(im->host_sumsq);
        if (im->dev_flags) cudaFree(im->dev_flags);
        if (im->cublas) cublasDestroy(im->cublas);
        if (im->stream) cudaStreamDestroy(im->stream);
        free(im);
    }
    free(be);
}

/* ---- matmul ----
 * Row-major C[M,N] = op(A) op(B) is column-major C^T[N,M] = op(B)^T op(A)^T.
 * A row-major matrix with row stride ld is, read column-major with the same
 * ld, its transpose; so cuBLAS gets (B, A) swapped with the same trans flags
 * and leading dimensions, and m = N, n = M. */
static void cuda_matmul(backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                        int lda, long sA, const float *B, int ldb, long sB, float beta, float *C, int ldc, long sC,
                        int batch) {
    if (be->err[0] || M <= 0 || N <= 0 || batch <= 0) return;
    cuda_impl *im = CUDA_IMPL(be);
    cublasOperation_t opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (K < 0) K = 0;
    if (batch == 1) {
        CUBLAS_CHECK(be, cublasSgemm(im->cublas, opB, opA, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
    } else {
        CUBLAS_CHECK(be, cublasSgemmStridedBatched(im->cublas, opB, opA, N, M, K, &alpha, B, ldb, (long long)sB, A,
                                                   lda, (long long)sA, &beta, C, ldc, (long long)sC, batch));
    }
}

/* an environment switch: the index of its value in vals[n], dflt when it is
   unset, -1 (and err) for any other value: a typo is an error, not silently
   the default */
static int cuda_env_switch(const char *name, const char *const *vals, int n, int dflt, char *err, size_t cap) {
    const char *v = getenv(name);
    if (!v) return dflt;
    for (int i = 0; i < n; i++)
        if (!strcmp(v, vals[i])) return i;
    int o = snprintf(err, cap, "%s=%s (environment): expected", name, v);
    for (int i = 0; i < n && o >= 0 && (size_t)o < cap; i++)
        o += snprintf(err + o, cap - o, "%s %s", i ? (i == n - 1 ? " or" : ",") : "", vals[i]);
    return -1;
}

extern "C" backend *backend_cuda_create(int device, char *err, size_t err_cap) {
    static const char *const off_on[] = {"0", "1"}, *const attn[] = {"wmma", "mma"}, *const minb[] = {"1", "3"};
    int tf32 = cuda_env_switch("RFT_CUDA_TF32", off_on, 2, 1, err, err_cap);
    int mma = tf32 < 0 ? -1 : cuda_env_switch("RFT_CUDA_ATTN", attn, 2, 1, err, err_cap);
    int minb1 = mma < 0 ? -1 : cuda_env_switch("RFT_CUDA_TC_MIN_BLOCKS", minb, 2, 1, err, err_cap);
    if (minb1 < 0) return NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        if (e == cudaErrorInsufficientDriver)
            snprintf(err, err_cap, "no CUDA device: no NVIDIA driver, or one older than the CUDA runtime rft was built "
                                   "with (cudaGetDeviceCount: %s)", cudaGetErrorString(e));
        else
            snprintf(err, err_cap, "no CUDA device (%s)",
                     e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount returned 0");
        cudaGetLastError(); /* clear it */
        return NULL;
    }
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    if (device > 0 && n == 1 && cvd && *cvd && !strchr(cvd, ','))
        device = 0; /* each rank shown only its own GPU: a batch system's CUDA_VISIBLE_DEVICES per task */
    if (device < 0 || device >= n) {
        snprintf(err, err_cap, "CUDA device %d does not exist (%d device%s)", device, n, n == 1 ? "" : "s");
        return NULL;
    }
    backend *be = (backend *)calloc(1, sizeof *be);
    cuda_impl *im = (cuda_impl *)calloc(1, sizeof *im);
    if (!be || !im) {
        free(be);
        free(im);
        snprintf(err, err_cap, "out of memory creating the CUDA backend");
        return NULL;
    }
    be->name = "cuda";
    be->n_threads = 1;
    be->impl = im;
    im->device = device;
    im->attn_mma = mma;
    im->tc_minb_64 = minb1 ? 3 : 1;

    int smem = 0, cc_major = 0;
    size_t mem_free = 0, mem_total = 0;
    if (CU_CHECK(be, cudaSetDevice(device))) goto fail;
    if (CU_CHECK(be, cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device))) goto fail;
    if (CU_CHECK(be, cudaDeviceGetAttribute(&im->n_sm, cudaDevAttrMultiProcessorCount, device))) goto fail;
    if (CU_CHECK(be, cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device))) goto fail;
    im->smem_optin = (size_t)smem;
    { /* TF32 needs Ampere (8.0); off with RFT_CUDA_TF32=0 or NVIDIA's own NVIDIA_TF32_OVERRIDE=0 */
        const char *nv = getenv("NVIDIA_TF32_OVERRIDE");
        be->tf32 = cc_major >= 8 && tf32 && !(nv && !strcmp(nv, "0"));
    }
    if (CU_CHECK(be, cudaMemGetInfo(&mem_free, &mem_total))) goto fail;
    /* LM-head logits chunk: 1/64 of the card's memory, within [256 MB, 1 GB]
       (80 GB: 1 GB = 5461 tokens of a 49152 vocabulary). Each chunk re-reads
       the head's weights in its three products and passes over its fp32
       gradient once: at 16K tokens of SmolLM2, 3 chunks instead of 12 save
       ~4 GB of traffic a step; a 16 GB card keeps 256 MB. */
    be->lm_chunk_bytes = mem_total / 64;
    if (be->lm_chunk_bytes < ((size_t)256 << 20)) be->lm_chunk_bytes = (size_t)256 << 20;
    if (be->lm_chunk_bytes > ((size_t)1 << 30)) be->lm_chunk_bytes = (size_t)1 << 30;
    if (CU_CHECK(be, cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking))) goto fail;
    be->device = device;
    be->stream = im->stream;
    if (CUBLAS_CHECK(be, cublasCreate(&im->cublas))) goto fail;
    if (CUBLAS_CHECK(be, cublasSetStream(im->cublas, im->stream))) goto fail;
    /* bf16 outputs (C16) are the fp32 sums rounded once: no split-K partials reduced in bf16 */
    if (CUBLAS_CHECK(be, cublasSetMathMode(im->cublas, (cublasMath_t)((be->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                                 : CUBLAS_DEFAULT_MATH) |
                                                                      CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION))))
        goto fail;
    if (CU_CHECK(be, cudaMallocHost((void **)&im->host_sumsq, sizeof(double)))) goto fail;
    if (CU_CHECK(be, cudaMalloc((void **)&im->dev_flags, CUDA_N_FLAGS * sizeof(int)))) goto fail;
    if (CU_CHECK(be, cudaMemsetAsync(im->dev_flags, 0, CUDA_N_FLAGS * sizeof(int), im->stream))) goto fail;
    if (cuda_attention_setup(be) || (cc_major >= 8 && (cuda_attention_bf16_setup(be) || cuda_attention_mma_setup(be) || cuda_attention_tf32_setup(be)))) goto fail;
    if (cuda_norm_setup(be)) goto fail;

    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->copy_h2d = cuda_copy_h2d;
    be->copy_d2h = cuda_copy_d2h;
    be->copy_d2d = cuda_copy_d2d;
    be->zero = cuda_zero;
    be->sync = cuda_sync;
    be->destroy = cuda_destroy;
    be->bind_thread = cuda_bind_thread;
    be->matmul = cuda_matmul;
    be->cast_bf16 = cuda_cast_bf16;
    /* bf16 tensor-core GEMMs and attention need compute capability 8.0
       (Ampere) or later; without them bf16 rollouts and model.dtype bf16
       report that the backend lacks the ops */
    be->matmul_bf16 = cc_major >= 8 ? cuda_matmul_bf16 : NULL;
    be->gemm_bf16 = cc_major >= 8 ? cuda_gemm_bf16 : NULL;
    be->add = cuda_add;
    be->scale = cuda_scale;
    be->bias_forward = cuda_bias_forward;
    be->bias_backward = cuda_bias_backward;
    be->embedding_forward = cuda_embedding_forward;
    be->embedding_backward = cuda_embedding_backward;
    be->rmsnorm_forward = cuda_rmsnorm_forward;
    be->rmsnorm_backward = cuda_rmsnorm_backward;
    be->rope_forward = cuda_rope_forward;
    be->rope_backward = cuda_rope_backward;
    be->rope_forward_bf16 = cuda_rope_forward_bf16;
    be->attention_forward = cuda_attention_forward;
    be->attention_backward = cuda_attention_backward;
    be->attention_forward_bf16 = cc_major >= 8 ? cuda_attention_forward_bf16 : NULL;
    be->attention_backward_bf16 = cc_major >= 8 ? cuda_attention_backward_bf16 : NULL;
    be->kv_write = cuda_kv_write;
    be->attention_cached = cuda_attention_cached;
    be->kv_write_bf16 = cuda_kv_write_bf16;
    be->attention_cached_bf16 = cuda_attention_cached_bf16;
    be->swiglu_forward = cuda_swiglu_forward;
    be->swiglu_backward = cuda_swiglu_backward;
    be->swiglu_forward_bf16 = cuda_swiglu_forward_bf16;
    be->swiglu_backward_bf16 = cuda_swiglu_backward_bf16;
    be->logprob_forward = cuda_logprob_forward;
    be->logprob_backward = cuda_logprob_backward;
    be->sample = cuda_sample;
    be->sumsq = cuda_sumsq;
    be->adamw = cuda_adamw;
    return be;

fail:
    snprintf(err, err_cap, "%s", be->err);
    cuda_destroy(be);
    return NULL;
}
