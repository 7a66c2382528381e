/* kernels/cuda/cuda_mma.h: the warp-level matrix instructions the attention
 * kernels of cuda_attention_mma.cu use, as inline PTX (sm_80 and later):
 *
 * - mma_bf16_16816(c, a, b): c[16x8] += a[16x16] b[16x8], bf16 operands,
 *   fp32 accumulators (mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32).
 *   Lane = 4 g + t. a: 4 registers of two bf16 (low half first): register r
 *   holds row g + 8 (r & 1), columns 2t + 8 (r >> 1) and + 1. b: 2 registers,
 *   register r holds rows (k) 2t + 8 r and + 1 of column g. c[i]: row g + 8
 *   (i >> 1), column 2t + (i & 1). A C fragment pair (columns 0-7 and 8-15)
 *   rounded to bf16 is therefore an A fragment of the next product.
 * - mma_tf32_1688(c, a, b): c[16x8] += a[16x8] b[8x8] on tf32 operands
 *   (tf32_of: cvt.rna.tf32.f32), for the fp32 attention with TF32 on.
 * - ldmatrix_x4(r, p) / ldmatrix_x4_trans(r, p): four 8x8 bf16 matrices from
 *   shared memory; lanes 8i..8i+7 pass the 16-byte-aligned row addresses of
 *   matrix i; register i of lane 4 g + t gets matrix i's row g, elements 2t,
 *   2t + 1 (trans: its column g, rows 2t, 2t + 1).
 * - cp_async16(dst, src, src_bytes): 16 bytes global -> shared without a
 *   register round trip (cp.async.cg; src_bytes 0 zero-fills; cp_async4:
 *   4 bytes, cp.async.ca), grouped by
 *   cp_async_commit(); cp_async_wait<N>() returns when at most the N newest
 *   groups are in flight (a __syncthreads must follow before other threads
 *   read the data).
 *
 * Under RFT_CUDA_EMU the same names are cuda_emu.h's emulation (the layouts
 * above, exchanged between the warp's fibers; cp.async deferred to its
 * wait). */
#ifndef RFT_CUDA_MMA_H
#define RFT_CUDA_MMA_H

#ifndef RFT_CUDA_EMU
#include <stdint.h>

static __device__ __forceinline__ void mma_bf16_16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* c[16x8] += a[16x8] b[8x8], tf32 operands (fp32 bit patterns rounded by
   tf32_of), fp32 accumulators (mma.sync.aligned.m16n8k8...tf32): a[r] is row
   g + 8 (r & 1), column t + 4 (r >> 1); b[r] is row (k) t + 4 r, column g; c
   as for the bf16 product */
static __device__ __forceinline__ void mma_tf32_1688(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* x rounded to tf32 (10 mantissa bits; nearest, ties away from zero), for
   mma operands only: the low 13 bits of the result are unspecified (sm_90
   adds half a tf32 ulp and leaves them; the tensor cores ignore them) */
static __device__ __forceinline__ uint32_t tf32_of(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

static __device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *p) {
    const uint32_t s = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

static __device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *p) {
    const uint32_t s = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

static __device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
    const uint32_t s = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(src_bytes) : "memory");
}

static __device__ __forceinline__ void cp_async4(void *dst, const void *src, int src_bytes) {
    const uint32_t s = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(src), "r"(src_bytes) : "memory");
}

static __device__ __forceinline__ void cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N> static __device__ __forceinline__ void cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#endif

#endif
