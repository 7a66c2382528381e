/* kernels/cuda/cuda_emu.h: a CPU emulation of the subset of CUDA and cuBLAS
 * that kernels/cuda uses, so that the backend's kernels run, unchanged, on a
 * machine without a GPU (built with -DRFT_CUDA_EMU as C++17; see
 * tests/cuda_emu.cmake). It checks kernel logic (indexing, masking, tiling,
 * barriers, warp shuffles, host-side launch shapes, the row-major to
 * column-major cuBLAS mapping), not speed.
 *
 * Model: blocks run one after another; the threads of a block are fibers on
 * one OS thread (ucontext stacks, switched with _setjmp/_longjmp), switched
 * only at __syncthreads and warp shuffles, so every barrier and exchange
 * happens as on the device; the fibers run in alternating order from one
 * phase to the next, one warp of each block runs ahead of the others up to
 * its next __syncthreads (as a device may schedule it), and dynamic shared
 * memory starts as NaN in every block, so a missing barrier between a
 * shared-memory write and another thread's read, or a read of shared memory
 * the block never wrote, can show up as a wrong result. __shared__
 * becomes `static` (one copy, blocks run in turn). Device memory is host
 * memory filled with 0xff bytes (NaN) by cudaMalloc, so reads of never
 * written memory poison results. cublasSgemm is OpenBLAS's column-major
 * sgemm (with beta == 0, C is not read, as in cuBLAS; with TF32 math its
 * operands rounded to tf32 first); cublasGemmEx (bf16
 * inputs, fp32 output and compute) is the same sgemm on the inputs widened
 * exactly to fp32. */
#ifndef RFT_CUDA_EMU_H
#define RFT_CUDA_EMU_H

#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <cblas.h>

#include <algorithm>
#include <functional>
#include <map>
#include <type_traits>
#include <vector>

/* ---- language ---- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) int2 { int x, y; }; /* CUDA's vector types carry their size as alignment */
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- fibers ---- */
struct emu_thread {
    ucontext_t uctx;
    jmp_buf env;
    dim3 tid;
    int lin, made, done, in_bar; /* in_bar: 1 + the generation of the __syncthreads it waits in, or 0 */
    char *stack;
    struct cp { void *dst; const void *src; int size, bytes, group; };
    std::vector<cp> cps; /* cp.async copies issued and not yet waited for (cuda_mma.h) */
    int cp_group;        /* the group that cp_async16 adds to: committed groups are < it */
};
#define EMU_STACK (256 * 1024)
#define EMU_MAX_THREADS 1024

inline std::vector<emu_thread> emu_threads(EMU_MAX_THREADS);
inline emu_thread *emu_cur;
inline jmp_buf emu_sched_env;
inline dim3 emu_block_idx, emu_block_dim, emu_grid_dim;
inline const std::function<void()> *emu_fn;
inline std::vector<char> emu_smem_buf;
inline int emu_live, emu_bar_count, emu_bar_gen;
inline int emu_warp_live[EMU_MAX_THREADS / 32], emu_warp_count[EMU_MAX_THREADS / 32], emu_warp_gen[EMU_MAX_THREADS / 32];
inline uint64_t emu_xchg[EMU_MAX_THREADS];
/* each kernel's dynamic shared-memory limit raised by cudaFuncSetAttribute
   (the device default is 48 KB) */
inline std::map<const void *, int> emu_smem_attr;
#define EMU_SMEM_DEFAULT 49152

#define threadIdx (emu_cur->tid)
#define blockIdx emu_block_idx
#define blockDim emu_block_dim
#define gridDim emu_grid_dim

/* dynamic shared memory, 128-byte aligned (wmma pointers must be 32-byte aligned) */
static inline void *emu_dyn_smem(void) { return (void *)(((uintptr_t)emu_smem_buf.data() + 127) & ~(uintptr_t)127); }

static inline void emu_yield(void) {
    if (!_setjmp(emu_cur->env)) _longjmp(emu_sched_env, 1);
}

static inline void __syncthreads(void) {
    int gen = emu_bar_gen;
    if (++emu_bar_count == emu_live) {
        emu_bar_count = 0;
        emu_bar_gen++;
        return;
    }
    emu_cur->in_bar = gen + 1;
    while (emu_bar_gen == gen) emu_yield();
    emu_cur->in_bar = 0;
}

static inline void emu_warp_barrier(int w) {
    int gen = emu_warp_gen[w];
    if (++emu_warp_count[w] == emu_warp_live[w]) {
        emu_warp_count[w] = 0;
        emu_warp_gen[w]++;
        return;
    }
    while (emu_warp_gen[w] == gen) emu_yield();
}

template <class T> static inline T emu_shfl(T v, int src_lane_fn(int, int), int arg) {
    int lin = emu_cur->lin, w = lin / 32, lane = lin % 32;
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    emu_xchg[lin] = bits;
    emu_warp_barrier(w);
    int src = src_lane_fn(lane, arg);
    T r = v;
    if (src != lane) {
        /* a lane past the block's end or one that has exited gives an undefined
           value on the device: here all bits set (NaN, -1), so a reduction that
           reads one shows */
        int s = w * 32 + src, n = (int)(emu_block_dim.x * emu_block_dim.y * emu_block_dim.z);
        bits = s < n && !emu_threads[s].done ? emu_xchg[s] : ~(uint64_t)0;
        memcpy(&r, &bits, sizeof r);
    }
    emu_warp_barrier(w);
    return r;
}
static inline int emu_lane_xor(int lane, int m) { return lane ^ m; }
static inline int emu_lane_down(int lane, int d) { return lane + d < 32 ? lane + d : lane; }
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int m) {
    (void)mask;
    return emu_shfl(v, emu_lane_xor, m);
}
static inline int emu_lane_idx(int lane, int src) { (void)lane; return src & 31; }
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src) {
    (void)mask;
    return emu_shfl(v, emu_lane_idx, src);
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, int d) {
    (void)mask;
    return emu_shfl(v, emu_lane_down, d);
}
static inline int emu_lane_up(int lane, int d) { return lane - d >= 0 ? lane - d : lane; }
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, int d) {
    (void)mask;
    return emu_shfl(v, emu_lane_up, d);
}

static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    emu_warp_barrier(emu_cur->lin / 32);
}

/* ---- bf16 and WMMA: the subset of <cuda_bf16.h> and <mma.h> (nvcuda::wmma)
   used here: bf16 m16n16k16 fragments with fp32 accumulators.
   Model: every lane's fragment holds the whole 16x16 tile (element (r, c) at
   x[16 r + c]: rows x k for matrix_a, k x cols for matrix_b, rows x cols for
   the accumulator), so load/mma/fill are per-lane copies of the
   warp-collective result and need no exchange; store writes each lane's
   share only (below). None of them is a barrier. As on
   the device, lanes that write shared memory another lane's load_matrix_sync
   reads (or that read what store_matrix_sync wrote) must __syncwarp in
   between: fibers switch only at barriers, so without it the first lane to
   run loads a tile the others have not written yet. Elementwise ops on
   x[i] are layout-agnostic as long as both fragments have the same type (the
   device maps elements to lanes the same way for equal fragment types).
   mma_sync: products of the bf16 values (exact in fp32), summed in fp32 in
   k order onto c. Pointers must be 32-byte aligned and ldm a multiple of 16
   bytes, as wmma requires (checked). ---- */
struct __nv_bfloat16 {
    uint16_t x;
};
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) {
    __nv_bfloat16 b;
    b.x = u;
    return b;
}
static inline float __bfloat162float(__nv_bfloat16 b) { return __uint_as_float((unsigned)b.x << 16); }

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "cuda_emu: only m16n16k16");
    enum { num_elements = 256 };
    T x[256];
};
static inline void emu_wmma_check(const void *p, unsigned ldm, size_t elem) {
    if (((uintptr_t)p & 31) || (ldm * elem) % 16 || ldm < 16) {
        fprintf(stderr, "cuda_emu: wmma pointer %p not 32-byte aligned or ldm %u invalid\n", p, ldm);
        abort();
    }
}
template <class U, class T, class L, class V> static inline void fill_fragment(fragment<U, 16, 16, 16, T, L> &f, V v) {
    for (int i = 0; i < 256; i++) f.x[i] = (T)v;
}
/* matrix_a / matrix_b with a compile-time layout */
template <class U, class T, class L> static inline void load_matrix_sync(fragment<U, 16, 16, 16, T, L> &f, const T *p,
                                                                        unsigned ldm) {
    emu_wmma_check(p, ldm, sizeof(T));
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++)
            f.x[16 * r + c] = std::is_same<L, col_major>::value ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}
/* accumulator: layout given at run time */
static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm,
                                    layout_t l) {
    emu_wmma_check(p, ldm, sizeof(float));
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) f.x[16 * r + c] = l == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}
/* each lane writes its share of the tile (elements 32 i + lane), as the
   device's lanes each store the elements they hold: a lane reading the tile
   before a __syncwarp can see another lane's part unwritten */
static inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm,
                                     layout_t l) {
    emu_wmma_check(p, ldm, sizeof(float));
    for (int e = emu_cur->lin % 32; e < 256; e += 32) {
        int r = e / 16, c = e % 16;
        (l == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c]) = f.x[e];
    }
}
template <class La, class Lb>
static inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
                            const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, La> &a,
                            const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, Lb> &b,
                            const fragment<accumulator, 16, 16, 16, float> &c) {
    float af[256], bf[256], acc[256];
    for (int i = 0; i < 256; i++) {
        af[i] = __bfloat162float(a.x[i]);
        bf[i] = __bfloat162float(b.x[i]);
        acc[i] = c.x[i];
    }
    for (int r = 0; r < 16; r++)
        for (int k = 0; k < 16; k++)
            for (int n = 0; n < 16; n++) acc[16 * r + n] += af[16 * r + k] * bf[16 * k + n];
    memcpy(d.x, acc, sizeof acc);
}
} /* namespace wmma */
} /* namespace nvcuda */

/* ---- warp-level matrix instructions (the emulated side of cuda_mma.h):
   mma.sync m16n8k16 bf16 -> fp32, ldmatrix x4 (plain and .trans) and
   cp.async 16-byte copies with commit / wait groups. The fragment layouts
   are the PTX ISA's ("Matrix fragments for mma.m16n8k16 with floating point
   type", "ldmatrix"), lane = 4 g + t: A (16 x 16, row): register r holds
   row g + 8 (r & 1), columns 2t + 8 (r >> 1) and + 1 (low half first); B (16
   x 8, col): register r holds rows (k) 2t + 8 r and + 1, column g; C / D:
   c[i] is row g + 8 (i >> 1), column 2t + (i & 1). mma and ldmatrix are
   warp-collective exchanges (two warp barriers, all 32 lanes must take
   part); the products are exact (bf16 values) and summed in fp32 in k order
   onto c, as the wmma emulation does. ldmatrix reads shared memory when the
   last lane arrives; row addresses must be 16-byte aligned and lie in the
   block's dynamic shared memory. A cp.async makes its 16 bytes NaN when it
   is issued and copies them at the cp_async_wait that completes its group:
   a tile read before its wait (and the barrier after it), or a buffer
   refilled while another warp still reads it (a missing barrier at the end
   of a loop step), reads NaN. ---- */
inline uint32_t emu_xw[EMU_MAX_THREADS][6];
inline const void *emu_xp[EMU_MAX_THREADS];

static inline void emu_warp_full(const char *what) {
    int w = emu_cur->lin / 32;
    if (emu_warp_live[w] != 32) {
        fprintf(stderr, "cuda_emu: %s with %d live lanes (needs the whole warp)\n", what, emu_warp_live[w]);
        abort();
    }
}
static inline float emu_bf_lo(uint32_t x) { return __uint_as_float(x << 16); }
static inline float emu_bf_hi(uint32_t x) { return __uint_as_float(x & 0xffff0000u); }

/* the mma exchange: each lane deposits its a[4], b[2]; returns the warp's
   32 lanes' words, readable until emu_mma_accumulate */
static inline const uint32_t (*emu_mma_gather(const char *what, const uint32_t a[4], const uint32_t b[2]))[6] {
    emu_warp_full(what);
    const int lin = emu_cur->lin, w = lin / 32;
    for (int i = 0; i < 4; i++) emu_xw[lin][i] = a[i];
    emu_xw[lin][4] = b[0];
    emu_xw[lin][5] = b[1];
    emu_warp_barrier(w);
    return emu_xw + w * 32;
}
/* once every lane has decoded the operands (A [16][K], B [K][8], row-major):
   c[i] (row g + 8 (i >> 1), column 2t + (i & 1)) += its row of A times its
   column of B, fp32 sums in k order */
static inline void emu_mma_accumulate(float c[4], const float *A, const float *B, int K) {
    const int lane = emu_cur->lin % 32, g = lane >> 2, t = lane & 3;
    emu_warp_barrier(emu_cur->lin / 32);
    for (int i = 0; i < 4; i++) {
        const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
        float acc = c[i];
        for (int k = 0; k < K; k++) acc += A[row * K + k] * B[k * 8 + col];
        c[i] = acc;
    }
}

static inline void mma_bf16_16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    const uint32_t(*xw)[6] = emu_mma_gather("mma.sync", a, b);
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l & 3;
        for (int r = 0; r < 4; r++) {
            A[g + 8 * (r & 1)][2 * t + 8 * (r >> 1)] = emu_bf_lo(xw[l][r]);
            A[g + 8 * (r & 1)][2 * t + 8 * (r >> 1) + 1] = emu_bf_hi(xw[l][r]);
        }
        for (int r = 0; r < 2; r++) {
            B[2 * t + 8 * r][g] = emu_bf_lo(xw[l][4 + r]);
            B[2 * t + 8 * r + 1][g] = emu_bf_hi(xw[l][4 + r]);
        }
    }
    emu_mma_accumulate(c, &A[0][0], &B[0][0], 16);
}

/* tf32: an fp32 rounded to 10 mantissa bits, nearest with ties away from
   zero, as sm_90 does cvt.rna.tf32.f32: half a tf32 ulp added, the low 13
   bits left as they fall (mma ignores them); infinities and NaN pass */
static inline uint32_t tf32_of(float x) {
    uint32_t u = __float_as_uint(x);
    return (u & 0x7f800000u) == 0x7f800000u ? u : u + 0x1000u;
}
/* m16n8k8 tf32: A[16][8] register r = row g + 8 (r & 1), column t + 4 (r >> 1);
   B[8][8] register r = row t + 4 r, column g; the operands' low 13 bits are
   ignored (as the tensor cores read tf32); products exact, fp32 sums in k order */
static inline void mma_tf32_1688(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    const uint32_t(*xw)[6] = emu_mma_gather("mma.sync tf32", a, b);
    float A[16][8], B[8][8];
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l & 3;
        for (int r = 0; r < 4; r++) A[g + 8 * (r & 1)][t + 4 * (r >> 1)] = __uint_as_float(xw[l][r] & 0xffffe000u);
        for (int r = 0; r < 2; r++) B[t + 4 * r][g] = __uint_as_float(xw[l][4 + r] & 0xffffe000u);
    }
    emu_mma_accumulate(c, &A[0][0], &B[0][0], 8);
}

/* four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i,
   register i of lane 4 g + t gets matrix i's row g, elements 2t and 2t + 1
   (.trans: its column g, rows 2t and 2t + 1) */
static inline void emu_ldmatrix_x4(uint32_t r[4], const void *p, int trans) {
    emu_warp_full("ldmatrix");
    const char *lo = emu_smem_buf.data(), *hi = lo + emu_smem_buf.size();
    if (((uintptr_t)p & 15) || (const char *)p < lo || (const char *)p + 16 > hi) {
        fprintf(stderr, "cuda_emu: ldmatrix row address %p not 16-byte aligned dynamic shared memory\n", p);
        abort();
    }
    const int lin = emu_cur->lin, w = lin / 32, lane = lin % 32, g = lane >> 2, t = lane & 3;
    emu_xp[lin] = p;
    emu_warp_barrier(w);
    for (int i = 0; i < 4; i++) {
        uint16_t e[2];
        for (int j = 0; j < 2; j++)
            e[j] = trans ? ((const uint16_t *)emu_xp[w * 32 + 8 * i + 2 * t + j])[g]
                         : ((const uint16_t *)emu_xp[w * 32 + 8 * i + g])[2 * t + j];
        r[i] = (uint32_t)e[0] | (uint32_t)e[1] << 16;
    }
    emu_warp_barrier(w);
}
static inline void ldmatrix_x4(uint32_t r[4], const void *p) { emu_ldmatrix_x4(r, p, 0); }
static inline void ldmatrix_x4_trans(uint32_t r[4], const void *p) { emu_ldmatrix_x4(r, p, 1); }

/* size (4 or 16) bytes from global src to shared dst: the first src_bytes
   (0 or size) copied, the rest zero-filled */
static inline void emu_cp_async(void *dst, const void *src, int size, int src_bytes) {
    const char *lo = emu_smem_buf.data(), *hi = lo + emu_smem_buf.size();
    if (((uintptr_t)dst % size) || ((uintptr_t)src % size) || (const char *)dst < lo || (const char *)dst + size > hi) {
        fprintf(stderr, "cuda_emu: cp.async of %d bytes %p <- %p: not aligned, or not in shared memory\n", size, dst,
                src);
        abort();
    }
    memset(dst, 0xff, (size_t)size); /* in flight: NaN until its wait */
    emu_cur->cps.push_back({dst, src, size, src_bytes, emu_cur->cp_group});
}
static inline void cp_async16(void *dst, const void *src, int src_bytes) { emu_cp_async(dst, src, 16, src_bytes); }
static inline void cp_async4(void *dst, const void *src, int src_bytes) { emu_cp_async(dst, src, 4, src_bytes); }
static inline void cp_async_commit(void) { emu_cur->cp_group++; }
template <int N> static inline void cp_async_wait(void) {
    std::vector<emu_thread::cp> &v = emu_cur->cps;
    size_t keep = 0;
    for (size_t i = 0; i < v.size(); i++) {
        if (v[i].group < emu_cur->cp_group - N) {
            memset(v[i].dst, 0, (size_t)v[i].size);
            if (v[i].bytes) memcpy(v[i].dst, v[i].src, (size_t)v[i].bytes);
        } else {
            v[keep++] = v[i];
        }
    }
    v.resize(keep);
}

/* A fiber is made once per thread slot and reused for every block: it parks
   (returns to the scheduler) and runs the kernel body each time it is resumed,
   so starting a block costs no system calls. */
static void emu_entry(void) {
    emu_thread *self = emu_cur;
    for (;;) {
        if (!_setjmp(self->env)) _longjmp(emu_sched_env, 1); /* park */
        (*emu_fn)();
        self->done = 1;
    }
}

/* run fiber t until it yields or finishes (kept out of the scheduler loop so
   no loop variable lives across _setjmp) */
static __attribute__((noinline)) void emu_resume(emu_thread *t) {
    emu_cur = t;
    if (!t->made && !_setjmp(emu_sched_env)) { /* first use of this slot: make and park it */
        t->made = 1;
        getcontext(&t->uctx);
        t->uctx.uc_stack.ss_sp = t->stack;
        t->uctx.uc_stack.ss_size = EMU_STACK;
        t->uctx.uc_link = NULL;
        makecontext(&t->uctx, emu_entry, 0);
        setcontext(&t->uctx);
    }
    if (!_setjmp(emu_sched_env)) _longjmp(t->env, 1);
}

/* a thread finished: barriers it no longer takes part in may now be complete */
static inline void emu_thread_exited(emu_thread *t) {
    int w = t->lin / 32;
    emu_live--;
    emu_warp_live[w]--;
    if (emu_bar_count > 0 && emu_bar_count == emu_live) {
        emu_bar_count = 0;
        emu_bar_gen++;
    }
    if (emu_warp_count[w] > 0 && emu_warp_count[w] == emu_warp_live[w]) {
        emu_warp_count[w] = 0;
        emu_warp_gen[w]++;
    }
}

/* a launch the device would refuse (invalid configuration, too much shared
   memory) stops the test here with the kernel's configuration */
template <class F> static void emu_launch(const void *kern, dim3 g, dim3 b, size_t smem, F f) {
    std::function<void()> fn = f;
    emu_fn = &fn;
    int n = (int)(b.x * b.y * b.z);
    if (n <= 0 || n > EMU_MAX_THREADS || b.x > 1024 || b.y > 1024 || b.z > 64) {
        fprintf(stderr, "cuda_emu: bad block (%u, %u, %u)\n", b.x, b.y, b.z);
        abort();
    }
    if (g.x < 1 || g.x > 2147483647u || g.y < 1 || g.y > 65535 || g.z < 1 || g.z > 65535) {
        fprintf(stderr, "cuda_emu: bad grid (%u, %u, %u)\n", g.x, g.y, g.z);
        abort();
    }
    std::map<const void *, int>::const_iterator at = emu_smem_attr.find(kern);
    size_t smem_max = at == emu_smem_attr.end() ? EMU_SMEM_DEFAULT : (size_t)at->second;
    if (smem > smem_max) {
        fprintf(stderr, "cuda_emu: %zu bytes of dynamic shared memory, the kernel's limit is %zu (cudaFuncSetAttribute)\n",
                smem, smem_max);
        abort();
    }
    emu_smem_buf.assign(smem + 128, (char)0xff); /* dynamic shared memory starts as NaN */
    emu_grid_dim = g;
    emu_block_dim = b;
    for (int i = 0; i < n; i++)
        if (!emu_threads[i].stack) emu_threads[i].stack = (char *)malloc(EMU_STACK);
    /* blocks run last to first: the device promises no order, and a kernel that
       reads what an earlier block of the same launch wrote finds it unwritten */
    for (unsigned bz = g.z; bz-- > 0;)
        for (unsigned by = g.y; by-- > 0;)
            for (unsigned bx = g.x; bx-- > 0;) {
                emu_block_idx = dim3(bx, by, bz);
                emu_live = n;
                emu_bar_count = 0;
                for (int w = 0; w < (n + 31) / 32; w++) {
                    emu_warp_live[w] = std::min(32, n - w * 32);
                    emu_warp_count[w] = 0;
                }
                for (int i = 0; i < n; i++) {
                    emu_thread *t = &emu_threads[i];
                    t->lin = i;
                    t->tid = dim3(i % b.x, (i / b.x) % b.y, i / (b.x * b.y));
                    t->done = 0;
                    t->in_bar = 0;
                    t->cps.clear();
                    t->cp_group = 0;
                }
                /* one warp of the block (a different one from block to block) runs ahead,
                   up to its next __syncthreads, before the others go on in a round: a
                   legal schedule on a device, where only a block barrier orders warps, so
                   a missing __syncthreads between one warp's shared-memory writes and
                   another's reads shows here even where both warps pass __syncwarp points */
                int nw = (n + 31) / 32, lead = nw > 1 ? (int)((bx + 3 * by + 7 * bz) % nw) : -1;
                if (smem) memset(emu_smem_buf.data(), 0xff, emu_smem_buf.size()); /* fresh NaN shared memory per block */
                for (int round = 0; emu_live > 0; round++) {
                    /* the leading warp's lanes until each waits in a block barrier not yet
                       released, or is done (a bounded number of passes: lanes that wait on
                       each other elsewhere would be a kernel bug, left to the rounds) */
                    int pass = 0;
                    for (int ahead = 1; lead >= 0 && ahead && pass < 4096; pass++) {
                        ahead = 0;
                        for (int i = lead * 32; i < n && i < lead * 32 + 32; i++) {
                            emu_thread *t = &emu_threads[i];
                            if (t->done || (t->in_bar && emu_bar_gen == t->in_bar - 1)) continue;
                            ahead = 1;
                            emu_resume(t);
                            if (t->done) emu_thread_exited(t);
                        }
                    }
                    /* between two barriers each fiber runs its whole phase in turn; alternating
                       the order exposes reads of another thread's writes that lack a barrier
                       whichever thread comes first */
                    for (int k = 0; k < n; k++) {
                        int i = (round + (int)(bx + by + bz)) % 2 ? n - 1 - k : k;
                        emu_thread *t = &emu_threads[i];
                        if (t->done) continue;
                        emu_resume(t);
                        if (t->done) emu_thread_exited(t);
                    }
                }
            }
}

/* ---- runtime API ---- */
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInsufficientDriver = 35 };
typedef struct emu_stream_s *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum { cudaStreamNonBlocking = 1 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                      cudaDevAttrComputeCapabilityMajor };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
#define EMU_SMEM_OPTIN 232448

static inline const char *cudaGetErrorString(cudaError_t e) {
    return e == cudaSuccess ? "no error" : e == cudaErrorMemoryAllocation ? "out of memory" : "invalid argument";
}
static inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
static inline cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
static inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
static inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d) {
    (void)d;
    *v = a == cudaDevAttrMultiProcessorCount ? 4 : a == cudaDevAttrComputeCapabilityMajor ? 9 : EMU_SMEM_OPTIN;
    return cudaSuccess;
}
/* a 16 GB device, as far as memory reports go (allocations are host mallocs) */
static inline cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *free_b = *total_b = (size_t)16 << 30;
    return cudaSuccess;
}
static inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned f) {
    (void)f;
    *s = (cudaStream_t)malloc(1);
    return cudaSuccess;
}
static inline cudaError_t cudaStreamDestroy(cudaStream_t s) { free(s); return cudaSuccess; }
static inline cudaError_t cudaStreamSynchronize(cudaStream_t s) { (void)s; return cudaSuccess; }
static inline cudaError_t cudaMalloc(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, n);
    return cudaSuccess;
}
template <class T> static inline cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
static inline cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
static inline cudaError_t cudaMallocHost(void **p, size_t n) { return cudaMalloc(p, n); }
static inline cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
static inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k) {
    (void)k;
    memmove(d, s, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t st) {
    (void)st;
    return cudaMemcpy(d, s, n, k);
}
static inline cudaError_t cudaMemset(void *p, int v, size_t n) { memset(p, v, n); return cudaSuccess; }
static inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st) {
    (void)st;
    return cudaMemset(p, v, n);
}
static inline cudaError_t cudaFuncSetAttribute(const void *f, cudaFuncAttribute a, int v) {
    (void)a;
    if (v < 0 || v > EMU_SMEM_OPTIN) return cudaErrorInvalidValue;
    emu_smem_attr[f] = v;
    return cudaSuccess;
}

/* ---- cuBLAS ---- */
typedef struct emu_cublas_s *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_ARCH_MISMATCH = 8, CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13, CUBLAS_STATUS_INTERNAL_ERROR = 14, CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum {
    CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3, CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16
} cublasMath_t;
struct emu_cublas_s { int math; };
static inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = (cublasHandle_t)calloc(1, sizeof(emu_cublas_s));
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
static inline cublasStatus_t cublasDestroy(cublasHandle_t h) { free(h); return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) { (void)h; (void)s; return CUBLAS_STATUS_SUCCESS; }
static inline cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) { h->math = (int)m; return CUBLAS_STATUS_SUCCESS; }
/* TF32 math (cublasSgemm*): each operand element read as tf32, rounded to
   nearest (ties away) as cvt.rna does; the device's exact conversion is
   cuBLAS's own, so only its precision is modelled. v[n] = the span's copy. */
static inline const float *emu_tf32_span(std::vector<float> &v, const float *x, size_t n) {
    v.resize(n ? n : 1);
    for (size_t i = 0; i < n; i++) v[i] = __uint_as_float(tf32_of(x[i]) & 0xffffe000u);
    return v.data();
}
static inline cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                                       int m, int n, int k, const float *alpha, const float *A,
                                                       int lda, long long sA, const float *B, int ldb, long long sB,
                                                       const float *beta, float *C, int ldc, long long sC, int batch) {
    /* cuBLAS argument rules (column-major) */
    if (m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < std::max(1, ta == CUBLAS_OP_N ? m : k)) return CUBLAS_STATUS_INVALID_VALUE;
    if (ldb < std::max(1, tb == CUBLAS_OP_N ? k : n)) return CUBLAS_STATUS_INVALID_VALUE;
    if (ldc < std::max(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
    std::vector<float> ta32, tb32;
    if ((h->math & 0xf) == CUBLAS_TF32_TENSOR_OP_MATH && m > 0 && n > 0 && k > 0 && batch > 0) {
        /* the spans the batch reads: (batch - 1) strides + one column-major rows x cols matrix */
        size_t ra = ta == CUBLAS_OP_N ? m : k, ca = ta == CUBLAS_OP_N ? k : m;
        size_t rb = tb == CUBLAS_OP_N ? k : n, cb = tb == CUBLAS_OP_N ? n : k;
        size_t na = (size_t)(batch - 1) * (size_t)sA + (ca - 1) * (size_t)lda + ra;
        size_t nb = (size_t)(batch - 1) * (size_t)sB + (cb - 1) * (size_t)ldb + rb;
        A = emu_tf32_span(ta32, A, na);
        B = emu_tf32_span(tb32, B, nb);
    }
    /* C = alpha op(A) op(B) + beta C, column-major (OpenBLAS, which leaves C
       unread when beta == 0, as cuBLAS does) */
    for (int bi = 0; bi < batch; bi++)
        cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *alpha, A + bi * sA, lda, B + bi * sB, ldb,
                    *beta, C + bi * sC, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
static inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                                         const float *beta, float *C, int ldc) {
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

/* cublasGemmEx for the combinations kernels/cuda uses: bf16 A and B
   (uint16_t bits), fp32 or bf16 C, CUBLAS_COMPUTE_32F. Each bf16 operand
   widens to fp32 exactly, so OpenBLAS's sgemm on the widened copies gives
   exact products accumulated in fp32, as the device does (C unread when
   beta == 0). A bf16 C (beta 0 only here) gets the fp32 result rounded to
   nearest even, as the device's epilogue. */
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType_t;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
/* out[n] = the n bf16 values at src, widened to fp32 (exact) */
static inline void emu_bf16_widen(std::vector<float> &out, const void *src, size_t n) {
    out.resize(n ? n : 1, 0.0f);
    const uint16_t *h = (const uint16_t *)src;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)h[i] << 16;
        memcpy(&out[i], &u, sizeof u);
    }
}
static inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda,
                                          const void *B, cudaDataType_t Btype, int ldb, const void *beta, void *C,
                                          cudaDataType_t Ctype, int ldc, cublasComputeType_t ct, cublasGemmAlgo_t algo) {
    (void)h;
    (void)algo;
    if (Atype != CUDA_R_16BF || Btype != CUDA_R_16BF || ct != CUBLAS_COMPUTE_32F ||
        !(Ctype == CUDA_R_32F || (Ctype == CUDA_R_16BF && *(const float *)beta == 0.0f)))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < std::max(1, ta == CUBLAS_OP_N ? m : k)) return CUBLAS_STATUS_INVALID_VALUE;
    if (ldb < std::max(1, tb == CUBLAS_OP_N ? k : n)) return CUBLAS_STATUS_INVALID_VALUE;
    if (ldc < std::max(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    /* column-major A is lda x ca with ra rows used, B ldb x cb with rb rows
       used: widen exactly the elements sgemm reads (the last column ends at
       its last used row, as the device buffers may) */
    int ca = ta == CUBLAS_OP_N ? k : m, cb = tb == CUBLAS_OP_N ? n : k;
    int ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n;
    std::vector<float> a, b;
    emu_bf16_widen(a, A, k > 0 ? (size_t)lda * (ca - 1) + ra : 0);
    emu_bf16_widen(b, B, k > 0 ? (size_t)ldb * (cb - 1) + rb : 0);
    std::vector<float> c32;
    if (Ctype == CUDA_R_16BF) c32.resize((size_t)ldc * n);
    float *c = Ctype == CUDA_R_16BF ? c32.data() : (float *)C;
    cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *(const float *)alpha,
                a.data(), lda, b.data(), ldb, *(const float *)beta, c, ldc);
    if (Ctype == CUDA_R_16BF)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                uint32_t x;
                memcpy(&x, &c32[(size_t)j * ldc + i], 4);
                x += 0x7fffu + ((x >> 16) & 1u); /* finite values only here */
                ((uint16_t *)C)[(size_t)j * ldc + i] = (uint16_t)(x >> 16);
            }
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- cub replacement: stable sort of (key, value) pairs by key ---- */
static inline void emu_sort_pairs(const int32_t *kin, int32_t *kout, const int32_t *vin, int32_t *vout, int n) {
    std::vector<std::pair<int32_t, int32_t>> v((size_t)n);
    for (int i = 0; i < n; i++) v[i] = {kin[i], vin[i]};
    std::stable_sort(v.begin(), v.end(), [](const std::pair<int32_t, int32_t> &a, const std::pair<int32_t, int32_t> &b) {
        return a.first < b.first;
    });
    for (int i = 0; i < n; i++) {
        kout[i] = v[i].first;
        vout[i] = v[i].second;
    }
}

#endif
