/* kernels/cuda/cuda_attention_bf16.cu: attention_forward_bf16 and
 * attention_backward_bf16 (backend.h): the causal GQA flash attention of
 * cuda_attention.cu with its products on the tensor cores (nvcuda::wmma,
 * bf16 m16n16k16, fp32 accumulators). q, k, v come as bf16 rows q | k | v
 * of one stacked tensor and dO as bf16 (backend.h); their 64-row tiles are
 * copied into shared memory as they are; P and dS are rounded (kernels/bf16.h)
 * when written for the next product. Softmax statistics, lse and D =
 * rowsum(dO * O) (tc_rowdot_kernel, over the bf16 values) stay fp32; the
 * forward's output is rounded to bf16 as it is stored. The backward's
 * outputs leave through RoPE^T (warp_store_rows_rope: dq, dk) and are
 * rounded into the stacked gradient rows dqkv16 (q | k | v, as the forward's
 * input), so no fp32 dq, dk, dv exist.
 *
 * Same work split as the fp32 kernels, same tile map (cuda_attn_prepare),
 * same determinism (each output element has one owner block, no atomics):
 * - forward, block = (64-query tile, query head): loop over key tiles
 *   0..own: S = Q K^T, online softmax, O = O * alpha + P V; out = O / l,
 *   lse = m + log l.
 * - backward: D = rowsum(dO * O) (cuda_attn_rowdot), then
 *   dkdv, block = (64-key tile, kv head), over the group's query heads and the
 *   query tiles at or after it: S^T = K Q^T, dP^T = V dO^T,
 *   P^T = exp(scale S^T - lse), dS^T = P^T (dP^T - D), dV += P^T dO,
 *   dK += dS^T Q (times scale at the end);
 *   dq, block = (64-query tile, query head), over key tiles 0..own:
 *   S = Q K^T, dP = dO V^T, dS, dQ += dS K (times scale at the end).
 *
 * Warps: 4 per block, warp w owns rows 16w..16w+15 of the block's tile (query
 * rows, or key rows in dkdv). A warp computes its 16 x 64 strip of S as 4
 * accumulator fragments over hd/16 k-steps (warp_mm_abt) and stores it to its
 * own fp32 strip in shared memory (the accumulator layout is opaque); its 32
 * lanes do the row work there, two lanes per row (columns c = half + 2j), and
 * write P (or dS) as bf16 into its own bf16 strip, which the next product
 * reads as matrix_a (warp_mm_acc). In the backward the lanes keep P in
 * registers while dP overwrites S in the same fp32 strip. The output
 * accumulators (O, dK, dV, dQ: hd/16 fragments each) stay in registers for
 * the whole loop; the online softmax's per-row rescale multiplies them
 * elementwise by a fragment loaded from a 16x16 tile whose row r is alpha_r
 * (two fragments of one type map their elements to lanes the same way, so
 * this needs no layout knowledge). Between a lane's shared-memory writes and
 * another lane's wmma load, or a wmma store and another lane's reads (and
 * back), the warp syncs (__syncwarp); the 64-row tiles change between
 * barriers.
 *
 * Shared memory: bf16 tiles [64][HD+8] (row stride 144 / 272 bytes: the
 * 16-byte rows of a fragment load hit distinct banks), per warp one fp32
 * strip [16][68] (S, then dP; also the 16x16 tile of the rescale and of the
 * output staging once it is read) and one or two bf16 strips [16][72]. HD
 * (compile time) is 64 or 128; head_dim <= HD is zero-padded. Sizes: TC_*_SMEM
 * below; docs/cuda.md has the numbers and the ptxas register counts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "cuda_mma.h"
#include "cuda_attn_strip.h"

#ifndef RFT_CUDA_EMU
#include <cuda_bf16.h>
#include <mma.h>
#endif

using namespace nvcuda;

#define TC_T 64              /* tile rows (as AT in cuda_attention.cu: the tile map is shared) */
#define TC_WARPS 4
#define TC_THREADS (32 * TC_WARPS)
#define TC_SLD 68            /* row stride of the fp32 strips [16][TC_SLD] */
#define TC_PLD 72            /* row stride of the bf16 strips [16][TC_PLD] */
#define TC_TLD(HD) ((HD) + 8) /* row stride of the bf16 tiles [64][HD+8] */

/* bytes of shared memory: bf16 tiles, then per warp its strips and 16x16 tile */
#define TC_TILE(HD) ((size_t)TC_T * TC_TLD(HD) * 2)
#define TC_FSTRIP ((size_t)16 * TC_SLD * 4)
#define TC_PSTRIP ((size_t)16 * TC_PLD * 2)
/* MINB, each kernel's minimum blocks per SM (__launch_bounds__): 3 at hd
   64, what shared memory allows, asked of ptxas as a register bound (65536 /
   (128 x 3) = 170): left alone it gives the dK/dV kernel 254 registers (2
   blocks) where 168 cost ~100 bytes of spills, and the forward and dQ
   kernels (16-byte bf16 tile loads) up to 255. Both variants are compiled at
   hd 64; RFT_CUDA_TC_MIN_BLOCKS=1 in the environment picks the unbounded one
   when the backend is created, so one GPU run (tools/gpu_check.sh) can time
   both. hd 128: 1 (shared memory allows 2 blocks either way). */
#define TC_MINB_64 3
#define TC_FWD_SMEM(HD) (3 * TC_TILE(HD) + TC_WARPS * (TC_FSTRIP + TC_PSTRIP))
#define TC_DKDV_SMEM(HD) (4 * TC_TILE(HD) + 2 * TC_T * 4 + TC_WARPS * (TC_FSTRIP + 2 * TC_PSTRIP))
#define TC_DQ_SMEM(HD) (4 * TC_TILE(HD) + TC_WARPS * (TC_FSTRIP + TC_PSTRIP))

/* bf16 WMMA needs sm_80 or later: a device pass for an older architecture
   compiles trapping stubs in place of the kernels below (the backend does not
   offer the bf16 ops on such a GPU: backend_cuda_create) */
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
typedef __nv_bfloat16 bf16_t;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16_t, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::row_major> frag_b;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::col_major> frag_bt;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c;

static __device__ __forceinline__ bf16_t tc_bf16(float x) { return __ushort_as_bfloat16(fp32_to_bf16(x)); }

/* rows [row0, row0 + 64) of a bf16 tensor of row stride ld, columns [0, hd)
   from x (the head's first column), into dst[64][HD+8]; rows >= nvalid and
   dims >= hd become 0. Eight dims (16 bytes) per load when hd, ld and x
   allow it (rows 16-byte aligned), else one. */
template <int HD>
static __device__ __forceinline__ void tc_load_tile(bf16_t *dst, const uint16_t *x, size_t ld, int row0, int nvalid,
                                                    int hd) {
    if (hd % 8 == 0 && ld % 8 == 0 && ((size_t)x & 15) == 0) {
#pragma unroll 2
        for (int idx = threadIdx.x; idx < TC_T * HD / 8; idx += TC_THREADS) {
            const int r = idx / (HD / 8), d = idx % (HD / 8) * 8;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (r < nvalid && d < hd) v = *(const uint4 *)(x + (size_t)(row0 + r) * ld + d);
            *(uint4 *)(dst + r * TC_TLD(HD) + d) = v;
        }
        return;
    }
    for (int idx = threadIdx.x; idx < TC_T * HD; idx += TC_THREADS) {
        const int r = idx / HD, d = idx % HD;
        uint16_t v = 0;
        if (r < nvalid && d < hd) v = x[(size_t)(row0 + r) * ld + d];
        dst[r * TC_TLD(HD) + d] = __ushort_as_bfloat16(v);
    }
}

/* out[16][64] (fp32, row stride TC_SLD) = A[16][HD] B[64][HD]^T; A and B bf16
   rows of stride HD+8 (warp-collective) */
template <int HD>
static __device__ __forceinline__ void warp_mm_abt(float *out, const bf16_t *A, const bf16_t *B) {
    frag_c c[4];
#pragma unroll
    for (int j = 0; j < 4; j++) wmma::fill_fragment(c[j], 0.0f);
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        frag_a a;
        wmma::load_matrix_sync(a, A + kk * 16, TC_TLD(HD));
#pragma unroll
        for (int j = 0; j < 4; j++) {
            frag_bt b; /* B^T[k][n] = B[n][k]: column-major */
            wmma::load_matrix_sync(b, B + j * 16 * TC_TLD(HD) + kk * 16, TC_TLD(HD));
            wmma::mma_sync(c[j], a, b, c[j]);
        }
    }
#pragma unroll
    for (int j = 0; j < 4; j++) wmma::store_matrix_sync(out + j * 16, c[j], TC_SLD, wmma::mem_row_major);
}

/* o[HD/16] (16 x HD) += A[16][64] B[64][HD]; A bf16 rows of stride TC_PLD, B
   bf16 rows of stride HD+8 (warp-collective) */
template <int HD>
static __device__ __forceinline__ void warp_mm_acc(frag_c *o, const bf16_t *A, const bf16_t *B) {
#pragma unroll
    for (int kk = 0; kk < TC_T / 16; kk++) {
        frag_a a;
        wmma::load_matrix_sync(a, A + kk * 16, TC_PLD);
#pragma unroll
        for (int j = 0; j < HD / 16; j++) {
            frag_b b;
            wmma::load_matrix_sync(b, B + kk * 16 * TC_TLD(HD) + j * 16, TC_TLD(HD));
            wmma::mma_sync(o[j], a, b, o[j]);
        }
    }
}

/* row r of the 16 rows held in o[HD/16] times f_r: the two lanes of row r
   (lane = 2r + half) each pass f_r; stage is the warp's 16x16 tile */
template <int HD>
static __device__ __forceinline__ void warp_scale_rows(frag_c *o, float *stage, float f) {
    const int lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
    __syncwarp(); /* earlier loads of the stage are done */
#pragma unroll
    for (int i = 0; i < 8; i++) stage[r * 16 + half * 8 + i] = f;
    __syncwarp();
    frag_c fs;
    wmma::load_matrix_sync(fs, stage, 16, wmma::mem_row_major);
#pragma unroll
    for (int j = 0; j < HD / 16; j++)
#pragma unroll
        for (int i = 0; i < frag_c::num_elements; i++) o[j].x[i] *= fs.x[i];
}

/* x[(row0 + r) * ld + c] = bf16(mul * (row r, column c of o[HD/16])) for r <
   nrows, c < hd (x: the head's first column), through the warp's 16x16 stage
   tile (warp-collective) */
template <int HD>
static __device__ __forceinline__ void warp_store_rows(const frag_c *o, float *stage, uint16_t *x, size_t ld, int row0,
                                                       int nrows, int hd, float mul) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int j = 0; j < HD / 16; j++) {
        __syncwarp(); /* the previous fragment's reads are done */
        wmma::store_matrix_sync(stage, o[j], 16, wmma::mem_row_major);
        __syncwarp();
        for (int e = lane; e < 256; e += 32) {
            const int r = e / 16, c = j * 16 + e % 16;
            if (r < nrows && c < hd) x[(size_t)(row0 + r) * ld + c] = fp32_to_bf16(stage[e] * mul);
        }
    }
}

/* rows [row0, row0 + nrows) of the stacked bf16 gradient x (the head's first
   column, row stride ld) = bf16(rope_backward(mul * o)) for the 16 rows held
   in o[HD/16], positions pos[row]: the fragments are staged whole in the
   warp's stage[16][HD] (fp32; dims c and c + hd/2 pair up whatever HD pads
   hd to), then each lane rotates pairs (i, i + hd/2) of a row as the RoPE
   kernels do (rope_cs, sign -1), warp-collective */
template <int HD>
static __device__ __forceinline__ void warp_store_rows_rope(const frag_c *o, float *stage, uint16_t *x, size_t ld,
                                                            int row0, int nrows, int hd, float mul,
                                                            const int32_t *pos, float theta) {
    __syncwarp();
#pragma unroll
    for (int j = 0; j < HD / 16; j++) wmma::store_matrix_sync(stage + j * 16, o[j], HD, wmma::mem_row_major);
    __syncwarp();
    warp_store_stage<HD>(stage, x, ld, row0, nrows, hd, mul, true, pos, theta);
}

/* ---- forward ---- */
template <int HD, int MINB>
static __global__ void __launch_bounds__(TC_THREADS, MINB) attn_tc_fwd_kernel(uint16_t *out, float *lse,
                                                                        const uint16_t *qkv, const int32_t *cu,
                                                                        const int2 *map, const int *count, int Hq,
                                                                        int Hkv, int hd, float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int TLD = TC_TLD(HD), NF = HD / 16;
    ATTN_SMEM(sm);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
    bf16_t *Qs = (bf16_t *)sm, *Ks = Qs + TC_T * TLD, *Vs = Ks + TC_T * TLD;
    unsigned char *wb = sm + 3 * TC_TILE(HD) + warp * (TC_FSTRIP + TC_PSTRIP);
    float *Sw = (float *)wb;                 /* [16][TC_SLD] scores of the warp's rows */
    bf16_t *Pw = (bf16_t *)(wb + TC_FSTRIP); /* [16][TC_PLD] probabilities */
    float *stage = Sw; /* [16][16], once the scores are read (warp_scale_rows / warp_store_rows sync first) */

    const int2 e = map[blockIdx.x];
    const int h = blockIdx.y, kvh = h / (Hq / Hkv);
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int q0 = e.y * TC_T, nq = min(TC_T, L - q0), qw = 16 * warp, qi = q0 + qw + r;
    const size_t W = (size_t)(Hq + 2 * Hkv) * hd; /* the stacked rows q | k | v */
    const uint16_t *q = qkv + (size_t)h * hd, *k = qkv + (size_t)(Hq + kvh) * hd, *v = k + (size_t)Hkv * hd;

    tc_load_tile<HD>(Qs, q, W, s0 + q0, nq, hd);
    frag_c o[NF];
#pragma unroll
    for (int j = 0; j < NF; j++) wmma::fill_fragment(o[j], 0.0f);
    float m = -INFINITY, l = 0.0f; /* row r's running max and sum (both lanes of the row) */
    for (int kt = 0; kt <= e.y; kt++) {
        const int k0 = kt * TC_T;
        __syncthreads(); /* the previous tile's Ks, Vs are consumed */
        tc_load_tile<HD>(Ks, k, W, s0 + k0, min(TC_T, L - k0), hd);
        tc_load_tile<HD>(Vs, v, W, s0 + k0, min(TC_T, L - k0), hd);
        __syncthreads();
        warp_mm_abt<HD>(Sw, Qs + qw * TLD, Ks);
        __syncwarp();
        float s[32], mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            const int c = half + 2 * j, kj = k0 + c;
            s[j] = (kj <= qi && kj < L) ? Sw[r * TC_SLD + c] * scale : -INFINITY;
            mx = fmaxf(mx, s[j]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(FULL_MASK, mx, 1));
        const float mnew = fmaxf(m, mx);
        const float mu = mnew == -INFINITY ? 0.0f : mnew;
        const float alpha = expf(m - mu);
        float rs = 0.0f;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            const float p = expf(s[j] - mu);
            rs += p;
            Pw[r * TC_PLD + half + 2 * j] = tc_bf16(p);
        }
        rs += __shfl_xor_sync(FULL_MASK, rs, 1);
        l = l * alpha + rs;
        m = mnew;
        warp_scale_rows<HD>(o, stage, alpha); /* its __syncwarp also publishes Pw */
        warp_mm_acc<HD>(o, Pw, Vs);
    }
    warp_scale_rows<HD>(o, stage, 1.0f / l);
    if (half == 0 && qw + r < nq) lse[(size_t)(s0 + qi) * Hq + h] = m + logf(l);
    warp_store_rows<HD>(o, stage, out + (size_t)h * hd, (size_t)Hq * hd, s0 + q0 + qw, nq - qw, hd, 1.0f);
}

/* ---- backward ---- */
template <int HD, int MINB>
static __global__ void __launch_bounds__(TC_THREADS, MINB) attn_tc_dkdv_kernel(
    uint16_t *dqkv, const uint16_t *dout, const uint16_t *qkv, const float *lse, const float *Dd, const int32_t *pos,
    float theta, const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int TLD = TC_TLD(HD), NF = HD / 16;
    ATTN_SMEM(sm);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
    bf16_t *Ks = (bf16_t *)sm, *Vs = Ks + TC_T * TLD, *Qs = Vs + TC_T * TLD, *dOs = Qs + TC_T * TLD;
    float *lse_s = (float *)(sm + 4 * TC_TILE(HD)), *D_s = lse_s + TC_T;
    unsigned char *wb = sm + 4 * TC_TILE(HD) + 2 * TC_T * 4 + warp * (TC_FSTRIP + 2 * TC_PSTRIP);
    float *Sw = (float *)wb; /* [16][TC_SLD]: S^T, then dP^T, of the warp's keys; the epilogue's stage */
    bf16_t *PTw = (bf16_t *)(wb + TC_FSTRIP), *dSTw = PTw + 16 * TC_PLD; /* [16][TC_PLD] */

    const int2 e = map[blockIdx.x];
    const int kvh = blockIdx.y, group = Hq / Hkv;
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int kt = e.y, k0 = kt * TC_T, nk = min(TC_T, L - k0), nqt = (L + TC_T - 1) / TC_T;
    const int kw = 16 * warp, kj = k0 + kw + r;
    const size_t W = (size_t)(Hq + 2 * Hkv) * hd; /* the stacked rows q | k | v */
    const uint16_t *k = qkv + (size_t)(Hq + kvh) * hd, *v = k + (size_t)Hkv * hd;

    tc_load_tile<HD>(Ks, k, W, s0 + k0, nk, hd);
    tc_load_tile<HD>(Vs, v, W, s0 + k0, nk, hd);
    frag_c dka[NF], dva[NF];
#pragma unroll
    for (int j = 0; j < NF; j++) {
        wmma::fill_fragment(dka[j], 0.0f);
        wmma::fill_fragment(dva[j], 0.0f);
    }
    for (int g = 0; g < group; g++) {
        const int h = kvh * group + g;
        for (int qt = kt; qt < nqt; qt++) {
            const int q0 = qt * TC_T, nq = min(TC_T, L - q0);
            __syncthreads(); /* previous tiles consumed */
            tc_load_tile<HD>(Qs, qkv + (size_t)h * hd, W, s0 + q0, nq, hd);
            tc_load_tile<HD>(dOs, dout + (size_t)h * hd, (size_t)Hq * hd, s0 + q0, nq, hd);
            if (threadIdx.x < TC_T) {
                const int c = threadIdx.x;
                const size_t row = (size_t)(s0 + q0 + c) * Hq + h;
                lse_s[c] = c < nq ? lse[row] : 0.0f;
                D_s[c] = c < nq ? Dd[row] : 0.0f;
            }
            __syncthreads();
            warp_mm_abt<HD>(Sw, Ks + kw * TLD, Qs); /* S^T: keys x queries */
            __syncwarp();
            float p[32];
#pragma unroll
            for (int j = 0; j < 32; j++) {
                const int c = half + 2 * j, qi = q0 + c;
                p[j] = qi < L && kj <= qi ? expf(Sw[r * TC_SLD + c] * scale - lse_s[c]) : 0.0f;
                PTw[r * TC_PLD + c] = tc_bf16(p[j]);
            }
            __syncwarp(); /* S^T read: dP^T overwrites it */
            warp_mm_abt<HD>(Sw, Vs + kw * TLD, dOs); /* dP^T */
            __syncwarp();
#pragma unroll
            for (int j = 0; j < 32; j++) {
                const int c = half + 2 * j;
                dSTw[r * TC_PLD + c] = tc_bf16(p[j] * (Sw[r * TC_SLD + c] - D_s[c]));
            }
            __syncwarp();
            warp_mm_acc<HD>(dva, PTw, dOs);
            warp_mm_acc<HD>(dka, dSTw, Qs);
        }
    }
    /* dk through RoPE^T (staged in the tiles, free once every warp is past the loop), dv as it is */
    __syncthreads();
    warp_store_rows_rope<HD>(dka, (float *)sm + warp * 16 * HD, dqkv + (size_t)(Hq + kvh) * hd, W, s0 + k0 + kw,
                             nk - kw, hd, scale, pos, theta);
    warp_store_rows<HD>(dva, Sw, dqkv + (size_t)(Hq + Hkv + kvh) * hd, W, s0 + k0 + kw, nk - kw, hd, 1.0f);
}

template <int HD, int MINB>
static __global__ void __launch_bounds__(TC_THREADS, MINB) attn_tc_dq_kernel(
    uint16_t *dqkv, const uint16_t *dout, const uint16_t *qkv, const float *lse, const float *Dd, const int32_t *pos,
    float theta, const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int TLD = TC_TLD(HD), NF = HD / 16;
    ATTN_SMEM(sm);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane >> 1, half = lane & 1;
    bf16_t *Qs = (bf16_t *)sm, *dOs = Qs + TC_T * TLD, *Ks = dOs + TC_T * TLD, *Vs = Ks + TC_T * TLD;
    unsigned char *wb = sm + 4 * TC_TILE(HD) + warp * (TC_FSTRIP + TC_PSTRIP);
    float *Sw = (float *)wb;                  /* [16][TC_SLD]: S, then dP; the epilogue's stage */
    bf16_t *dSw = (bf16_t *)(wb + TC_FSTRIP); /* [16][TC_PLD] */

    const int2 e = map[blockIdx.x];
    const int h = blockIdx.y, kvh = h / (Hq / Hkv);
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int q0 = e.y * TC_T, nq = min(TC_T, L - q0), qw = 16 * warp, qi = q0 + qw + r;
    const size_t W = (size_t)(Hq + 2 * Hkv) * hd, qd = (size_t)Hq * hd; /* the stacked rows q | k | v */
    const uint16_t *k = qkv + (size_t)(Hq + kvh) * hd, *v = k + (size_t)Hkv * hd;

    tc_load_tile<HD>(Qs, qkv + (size_t)h * hd, W, s0 + q0, nq, hd);
    tc_load_tile<HD>(dOs, dout + (size_t)h * hd, qd, s0 + q0, nq, hd);
    const size_t row = (size_t)(s0 + qi) * Hq + h;
    const float lse_r = qw + r < nq ? lse[row] : 0.0f, D_r = qw + r < nq ? Dd[row] : 0.0f;
    frag_c dqa[NF];
#pragma unroll
    for (int j = 0; j < NF; j++) wmma::fill_fragment(dqa[j], 0.0f);
    for (int kt = 0; kt <= e.y; kt++) {
        const int k0 = kt * TC_T;
        __syncthreads();
        tc_load_tile<HD>(Ks, k, W, s0 + k0, min(TC_T, L - k0), hd);
        tc_load_tile<HD>(Vs, v, W, s0 + k0, min(TC_T, L - k0), hd);
        __syncthreads();
        warp_mm_abt<HD>(Sw, Qs + qw * TLD, Ks);
        __syncwarp();
        float p[32];
#pragma unroll
        for (int j = 0; j < 32; j++) {
            const int c = half + 2 * j, kj = k0 + c;
            p[j] = qi < L && kj <= qi ? expf(Sw[r * TC_SLD + c] * scale - lse_r) : 0.0f;
        }
        __syncwarp(); /* S read: dP overwrites it */
        warp_mm_abt<HD>(Sw, dOs + qw * TLD, Vs);
        __syncwarp();
#pragma unroll
        for (int j = 0; j < 32; j++) {
            const int c = half + 2 * j;
            dSw[r * TC_PLD + c] = tc_bf16(p[j] * (Sw[r * TC_SLD + c] - D_r));
        }
        __syncwarp();
        warp_mm_acc<HD>(dqa, dSw, Ks);
    }
    /* dq through RoPE^T (staged in the tiles, free once every warp is past the loop) */
    __syncthreads();
    warp_store_rows_rope<HD>(dqa, (float *)sm + warp * 16 * HD, dqkv + (size_t)h * hd, W, s0 + q0 + qw, nq - qw, hd,
                             scale, pos, theta);
}

#else
template <int HD, int MINB>
static __global__ void attn_tc_fwd_kernel(uint16_t *, float *, const uint16_t *, const int32_t *, const int2 *,
                                          const int *, int, int, int, float) {
    __trap();
}
template <int HD, int MINB>
static __global__ void attn_tc_dkdv_kernel(uint16_t *, const uint16_t *, const uint16_t *, const float *,
                                           const float *, const int32_t *, float, const int32_t *, const int2 *,
                                           const int *, int, int, int, float) {
    __trap();
}
template <int HD, int MINB>
static __global__ void attn_tc_dq_kernel(uint16_t *, const uint16_t *, const uint16_t *, const float *, const float *,
                                         const int32_t *, float, const int32_t *, const int2 *, const int *, int, int,
                                         int, float) {
    __trap();
}
#endif

/* Dd[t, h] = sum_d dO[t,h,d] * O[t,h,d] over the bf16 values; one warp per (t, h) */
static __global__ void tc_rowdot_kernel(float *Dd, const uint16_t *dout, const uint16_t *out, int TH, int hd) {
    const int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, l = threadIdx.x % 32;
    if (w >= TH) return;
    const uint16_t *a = dout + (size_t)w * hd, *b = out + (size_t)w * hd;
    float s = 0.0f;
    for (int d = l; d < hd; d += 32) s += bf16_to_fp32(a[d]) * bf16_to_fp32(b[d]);
    s = warp_sum(s);
    if (l == 0) Dd[w] = s;
}

/* ---- host side ---- */

/* Raises the dynamic shared-memory limits (hd 128 kernels only where
   cuda_attention_setup found room for the fp32 ones: attn_hd_max). The
   hd-64 variant (im->tc_minb_64: TC_MINB_64, or 1 with
   RFT_CUDA_TC_MIN_BLOCKS=1) and the bf16 pair's kernels (im->attn_mma: the
   mma.sync ones of cuda_attention_mma.cu, or these with RFT_CUDA_ATTN=wmma)
   were read by backend_cuda_create. */
int cuda_attention_bf16_setup(backend *be) {
    cuda_impl *im = CUDA_IMPL(be);
    static_assert(TC_MINB_64 == 3, "RFT_CUDA_TC_MIN_BLOCKS accepts 1 or 3 (backend_cuda.cu)");
#define SET_ALL(HD, MINB)                                                   \
    CU_SET_SMEM(be, (attn_tc_fwd_kernel<HD, MINB>), TC_FWD_SMEM(HD));              \
    CU_SET_SMEM(be, (attn_tc_dkdv_kernel<HD, MINB>), TC_DKDV_SMEM(HD));            \
    CU_SET_SMEM(be, (attn_tc_dq_kernel<HD, MINB>), TC_DQ_SMEM(HD));
    SET_ALL(64, TC_MINB_64)
    SET_ALL(64, 1)
    if (im->attn_hd_max >= 128) {
        SET_ALL(128, 1)
    }
#undef SET_ALL
    return 0;
}

/* the forward, and the dK/dV and dQ kernels (grids gkv, gq), of one variant */
template <int HD, int MINB>
static void tc_forward(backend *be, dim3 grid, uint16_t *out16, float *lse, const uint16_t *qkv, const int32_t *cu,
                       const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    auto fwd = attn_tc_fwd_kernel<HD, MINB>;
    LAUNCH(fwd, grid, TC_THREADS, TC_FWD_SMEM(HD), CUDA_IMPL(be)->stream, out16, lse, qkv, cu, map, count, Hq, Hkv, hd,
           scale);
    CU_LAUNCHED(be, "attn_tc_fwd_kernel");
}
template <int HD, int MINB>
static void tc_backward(backend *be, dim3 gkv, dim3 gq, uint16_t *dqkv, const uint16_t *dout, const uint16_t *qkv,
                        const float *lse, const float *Dd, const int32_t *pos, float theta, const int32_t *cu,
                        const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    cudaStream_t st = CUDA_IMPL(be)->stream;
    auto dkdv = attn_tc_dkdv_kernel<HD, MINB>;
    auto dqk = attn_tc_dq_kernel<HD, MINB>;
    LAUNCH(dkdv, gkv, TC_THREADS, TC_DKDV_SMEM(HD), st, dqkv, dout, qkv, lse, Dd, pos, theta, cu, map, count, Hq,
           Hkv, hd, scale);
    CU_LAUNCHED(be, "attn_tc_dkdv_kernel");
    LAUNCH(dqk, gq, TC_THREADS, TC_DQ_SMEM(HD), st, dqkv, dout, qkv, lse, Dd, pos, theta, cu, map, count, Hq, Hkv,
           hd, scale);
    CU_LAUNCHED(be, "attn_tc_dq_kernel");
}

void cuda_attention_forward_bf16(backend *be, uint16_t *out16, float *lse, const uint16_t *qkv,
                                 const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale) {
    if (be->err[0] || T <= 0) return;
    void *unused;
    int2 *map;
    int *count;
    int cap = cuda_attn_prepare(be, cu_seqlens, B, T, Hq, Hkv, hd, 0, &unused, &map, &count);
    if (cap < 0) return;
    dim3 grid(cap, Hq);
    if (CUDA_IMPL(be)->attn_mma) {
        cuda_attention_mma_forward(be, grid, out16, lse, qkv, cu_seqlens, map, count, Hq, Hkv, hd, scale);
        return;
    }
    (hd > 64 ? tc_forward<128, 1> : CUDA_IMPL(be)->tc_minb_64 == 1 ? tc_forward<64, 1> : tc_forward<64, TC_MINB_64>)(
        be, grid, out16, lse, qkv, cu_seqlens, map, count, Hq, Hkv, hd, scale);
}

void cuda_attention_backward_bf16(backend *be, uint16_t *dqkv16, const uint16_t *dout16, const uint16_t *qkv,
                                  const uint16_t *out16, const float *lse, const int32_t *pos, float theta,
                                  const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale) {
    if (be->err[0] || T <= 0) return;
    void *dbuf;
    int2 *map;
    int *count;
    int cap = cuda_attn_prepare(be, cu_seqlens, B, T, Hq, Hkv, hd, (size_t)T * Hq * sizeof(float), &dbuf, &map,
                                &count);
    if (cap < 0) return;
    float *Dd = (float *)dbuf; /* [T, Hq] */
    LAUNCH(tc_rowdot_kernel, (T * Hq + 7) / 8, 256, 0, CUDA_IMPL(be)->stream, Dd, dout16, out16, T * Hq, hd);
    CU_LAUNCHED(be, "tc_rowdot_kernel");
    if (CUDA_IMPL(be)->attn_mma) {
        cuda_attention_mma_backward(be, dim3(cap, Hkv), dim3(cap, Hq), dqkv16, dout16, qkv, lse, Dd, pos, theta,
                                    cu_seqlens, map, count, Hq, Hkv, hd, scale);
        return;
    }
    (hd > 64 ? tc_backward<128, 1> : CUDA_IMPL(be)->tc_minb_64 == 1 ? tc_backward<64, 1> : tc_backward<64, TC_MINB_64>)(
        be, dim3(cap, Hkv), dim3(cap, Hq), dqkv16, dout16, qkv, lse, Dd, pos, theta, cu_seqlens, map, count, Hq, Hkv,
        hd, scale);
}
