/* kernels/cuda/cuda_attention_mma.cu: attention_forward_bf16 and
 * attention_backward_bf16 (backend.h) as FlashAttention-2 kernels on raw
 * mma.sync (cuda_mma.h): the same contract, work split, tile map, rounding
 * points and determinism as the wmma kernels of cuda_attention_bf16.cu,
 * without their shared-memory round trips. RFT_CUDA_ATTN=wmma in the
 * environment selects those when the backend is created.
 *
 * Warps: 4 per block; warp w owns rows 16w..16w+15 of the block's 64-row
 * tile (query rows, or key rows in dkdv). A warp's 16 x 64 strip of S (or
 * S^T) lives in registers as 8 m16n8 accumulator fragments: lane 4g + t
 * holds rows g and g + 8, columns 8j + 2t and + 1 of fragment j, so a row's
 * softmax statistics are reduced over the lane's quad (shuffles xor 1, 2).
 * Rounded to bf16 (kernels/bf16.h, nearest even), two neighbouring
 * fragments are one A operand of the next product (P V, P^T dO, dS^T Q,
 * dS K): P and dS never touch shared memory. The output accumulators (O,
 * dK, dV, dQ: HD/8 fragments each) stay in registers for the whole loop.
 *
 * Tiles: bf16 [64][HD+8] in shared memory (the 16-byte pad puts the 8 rows
 * of an ldmatrix in distinct banks), loaded by cp.async (16 bytes, no
 * register round trip; zero-filled past the sequence and past head_dim) when
 * head_dim is a multiple of 8 and the tensors 16-byte aligned, else by plain
 * element loads; the dK/dV kernel's lse and D rows by 4-byte cp.async. The
 * products skip the 16-dim steps at or past head_dim (hd 80 on HD 128 does
 * 5 of 8). The forward keeps the warp's Q fragments in registers. The tiles the loop walks over (K, V in the forward and dq;
 * Q, dO, lse, D in dkdv) are double buffered: the next tile's copies are in
 * flight while the current one is multiplied. Operands reach the tensor
 * cores through ldmatrix (.trans for the [keys][dims] or [queries][dims]
 * tiles that are the k x n operand).
 *
 * - forward, block = (64-query tile, query head): key tiles 0..own: S = Q
 *   K^T, online softmax per 64-key tile (P = exp(s - m_run) rounded, l summed
 *   in fp32 from the unrounded p), O = O alpha + P V; out = bf16(O (1/l)),
 *   lse = m + log l.
 * - backward: D = rowsum(dO * O) (tc_rowdot_kernel of cuda_attention_bf16.cu),
 *   dkdv, block = (64-key tile, kv head), over the group's query heads and
 *   the query tiles at or after it: S^T = K Q^T, dP^T = V dO^T, P^T =
 *   exp(scale S^T - lse), dS^T = P^T (dP^T - D), dV += P^T dO, dK += dS^T Q;
 *   dq, block = (64-query tile, query head), over key tiles 0..own: S = Q
 *   K^T, dP = dO V^T, dS = P (dP - D), dQ += dS K. dq and dk (times scale)
 *   leave through RoPE^T, staged per warp as fp32 [16][HD] in the tiles
 *   after the loop, and are rounded into the stacked gradient rows dqkv16;
 *   dv is stored as it is. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "cuda_mma.h"
#include "cuda_attn_strip.h"

#define MT 64              /* tile rows (the tile map of cuda_attn_prepare) */
#define MW 4               /* warps per block */
#define MTHREADS (32 * MW)
#define MLD(HD) ((HD) + 8) /* tile row stride (bf16 elements) */
#define MTILE(HD) ((size_t)MT * MLD(HD) * 2)
#define MMA_FWD_SMEM(HD) (5 * MTILE(HD))                     /* Q; K, V twice */
#define MMA_DKDV_SMEM(HD) (6 * MTILE(HD) + 2 * 2 * MT * 4)   /* K, V; Q, dO twice; lse, D twice */
#define MMA_DQ_SMEM(HD) (6 * MTILE(HD))                      /* Q, dO; K, V twice */

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

/* a 64-row bf16 tile into dst[64][HD+8] (attn_load_tile) */
template <int HD>
static __device__ __forceinline__ void mma_load_tile(uint16_t *dst, const uint16_t *x, size_t ld, int row0, int nvalid,
                                                     int hd, bool async) {
    attn_load_tile<uint16_t, HD, MLD(HD), MTHREADS>(dst, x, ld, row0, nvalid, hd, async);
}

/* the A fragments a[HD/16] of the warp's 16 rows of a tile (A: its first
   row), dims 16kk.. in a[kk]; only those below hd (the rest are zero padding) */
template <int HD>
static __device__ __forceinline__ void warp_load_a(uint32_t a[][4], const uint16_t *A, int hd) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
        if (16 * kk < hd) ldmatrix_x4(a[kk], A + (lane & 15) * MLD(HD) + kk * 16 + (lane >> 4) * 8);
}

/* s[8][4] (the warp's 16 x 64 strip) = A B[64][HD]^T: A the warp's 16 rows
   as fragments (warp_load_a), B a whole tile (its rows are the columns of
   s); dims past hd are skipped (zero in both) */
template <int HD>
static __device__ __forceinline__ void warp_abt(float s[8][4], const uint32_t a[][4], const uint16_t *B, int hd) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int j = 0; j < 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        if (16 * kk >= hd) break;
#pragma unroll
        for (int jn = 0; jn < 4; jn++) {
            uint32_t b[4]; /* B rows 16jn..16jn+15 (n), dims 16kk.. (k): b[0..1] fragment 2jn, b[2..3] 2jn+1 */
            ldmatrix_x4(b, B + (16 * jn + (lane & 7) + (lane >> 4) * 8) * MLD(HD) + kk * 16 + ((lane >> 3) & 1) * 8);
            mma_bf16_16816(s[2 * jn], a[kk], b);
            mma_bf16_16816(s[2 * jn + 1], a[kk], b + 2);
        }
    }
}

/* the same with A read from shared memory (the warp's 16 rows of a tile) */
template <int HD>
static __device__ __forceinline__ void warp_abt(float s[8][4], const uint16_t *A, const uint16_t *B, int hd) {
    uint32_t a[HD / 16][4];
    warp_load_a<HD>(a, A, hd);
    warp_abt<HD>(s, a, B, hd);
}

/* o[HD/8][4] (16 x HD) += P[16][64] B[64][HD]: p the A fragments of P (keys
   16kk..16kk+15 in p[kk]), B a tile whose rows are P's columns; output dims
   past hd are skipped (never stored) */
template <int HD>
static __device__ __forceinline__ void warp_acc(float o[][4], const uint32_t p[4][4], const uint16_t *B, int hd) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
#pragma unroll
        for (int jd = 0; jd < HD / 16; jd++) {
            if (16 * jd >= hd) break;
            uint32_t b[4]; /* rows 16kk.. (k), dims 16jd..: b[0..1] fragment 2jd, b[2..3] 2jd+1 */
            ldmatrix_x4_trans(b, B + (16 * kk + (lane & 15)) * MLD(HD) + 16 * jd + (lane >> 4) * 8);
            mma_bf16_16816(o[2 * jd], p[kk], b);
            mma_bf16_16816(o[2 * jd + 1], p[kk], b + 2);
        }
}

/* the A fragments of a 16 x 64 strip held as accumulators, rounded to bf16 */
static __device__ __forceinline__ void strip_to_a(uint32_t p[4][4], const float s[8][4]) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        p[kk][0] = pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
        p[kk][1] = pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
        p[kk][2] = pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        p[kk][3] = pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
}

/* the warp's accumulators o[HD/8][4] into its fp32 stage[16][HD] */
template <int HD>
static __device__ __forceinline__ void warp_stage(float *stage, const float o[][4]) {
    const int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < HD / 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) stage[(g + 8 * (i >> 1)) * HD + 8 * j + 2 * t + (i & 1)] = o[j][i];
}

/* ---- forward ---- */
template <int HD>
static __global__ void __launch_bounds__(MTHREADS) attn_mma_fwd_kernel(uint16_t *out, float *lse, const uint16_t *qkv,
                                                                       const int32_t *cu, const int2 *map,
                                                                       const int *count, int Hq, int Hkv, int hd,
                                                                       float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int LD = MLD(HD), NO = HD / 8;
    ATTN_SMEM(sm);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    uint16_t *Qs = (uint16_t *)sm, *KV = Qs + MT * LD; /* buffer b: K at KV + 2b MT LD, V after it */

    const int2 e = map[blockIdx.x];
    const int h = blockIdx.y, kvh = h / (Hq / Hkv);
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int q0 = e.y * MT, nq = min(MT, L - q0), qw = 16 * warp;
    const int qi[2] = {q0 + qw + g, q0 + qw + g + 8}; /* the lane's two query rows */
    const size_t W = (size_t)(Hq + 2 * Hkv) * hd;    /* the stacked rows q | k | v */
    const uint16_t *q = qkv + (size_t)h * hd, *k = qkv + (size_t)(Hq + kvh) * hd, *v = k + (size_t)Hkv * hd;
    const bool async = hd % 8 == 0 && ((size_t)qkv & 15) == 0;

    mma_load_tile<HD>(Qs, q, W, s0 + q0, nq, hd, async);
    mma_load_tile<HD>(KV, k, W, s0, min(MT, L), hd, async);
    mma_load_tile<HD>(KV + MT * LD, v, W, s0, min(MT, L), hd, async);
    cp_async_commit();
    float o[NO][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    uint32_t qa[HD / 16][4]; /* the warp's Q rows as A fragments, loaded once */
    for (int kt = 0; kt <= e.y; kt++) {
        const uint16_t *Ks = KV + (kt & 1) * 2 * MT * LD, *Vs = Ks + MT * LD;
        if (kt < e.y) { /* the next K, V tiles into the other buffer (consumed at kt - 1) */
            uint16_t *Kn = KV + ((kt + 1) & 1) * 2 * MT * LD;
            const int k1 = (kt + 1) * MT;
            mma_load_tile<HD>(Kn, k, W, s0 + k1, min(MT, L - k1), hd, async);
            mma_load_tile<HD>(Kn + MT * LD, v, W, s0 + k1, min(MT, L - k1), hd, async);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads(); /* tile kt is in every thread's view */
        if (kt == 0) warp_load_a<HD>(qa, Qs + qw * LD, hd);
        const int k0 = kt * MT;
        float s[8][4];
        warp_abt<HD>(s, qa, Ks, hd);
        float alpha[2];
        strip_softmax(s, m, l, alpha, qi, k0, L, scale);
#pragma unroll
        for (int j = 0; j < NO; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) o[j][i] *= alpha[i >> 1];
        uint32_t p[4][4];
        strip_to_a(p, s);
        warp_acc<HD>(o, p, Vs, hd);
        __syncthreads(); /* tile kt consumed: iteration kt + 1 refills its buffer */
    }
    const float inv[2] = {1.0f / l[0], 1.0f / l[1]};
    uint16_t *ob = out + (size_t)h * hd;
    const size_t ldo = (size_t)Hq * hd;
#pragma unroll
    for (int r = 0; r < 2; r++)
        if (t == 0 && qw + g + 8 * r < nq) lse[(size_t)(s0 + qi[r]) * Hq + h] = m[r] + logf(l[r]);
#pragma unroll
    for (int j = 0; j < NO; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int row = qw + g + 8 * (i >> 1), c = 8 * j + 2 * t + (i & 1);
            if (row < nq && c < hd) ob[(size_t)(s0 + q0 + row) * ldo + c] = fp32_to_bf16(o[j][i] * inv[i >> 1]);
        }
}

/* ---- backward ---- */
template <int HD>
static __global__ void __launch_bounds__(MTHREADS) attn_mma_dkdv_kernel(
    uint16_t *dqkv, const uint16_t *dout, const uint16_t *qkv, const float *lse, const float *Dd, const int32_t *pos,
    float theta, const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int LD = MLD(HD), NO = HD / 8;
    ATTN_SMEM(sm);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2;
    uint16_t *Ks = (uint16_t *)sm, *Vs = Ks + MT * LD, *QD = Vs + MT * LD; /* buffer b: Q at QD + 2b MT LD, dO after */
    float *LS = (float *)(sm + 6 * MTILE(HD)); /* buffer b: lse at LS + 2b MT, D after */

    const int2 e = map[blockIdx.x];
    const int kvh = blockIdx.y, group = Hq / Hkv;
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int kt = e.y, k0 = kt * MT, nk = min(MT, L - k0), nqt = (L + MT - 1) / MT, ntq = nqt - kt;
    const int kw = 16 * warp;
    const int kj[2] = {k0 + kw + g, k0 + kw + g + 8}; /* the lane's two key rows */
    const size_t W = (size_t)(Hq + 2 * Hkv) * hd, qd = (size_t)Hq * hd;
    const uint16_t *k = qkv + (size_t)(Hq + kvh) * hd, *v = k + (size_t)Hkv * hd;
    const bool async = hd % 8 == 0 && ((size_t)qkv & 15) == 0 && ((size_t)dout & 15) == 0;

    /* step it of the loop: query head kvh group + it / ntq, query tile kt + it % ntq */
    auto issue = [&](int it) {
        const int h = kvh * group + it / ntq, q0 = (kt + it % ntq) * MT, nq = min(MT, L - q0), b = it & 1;
        uint16_t *Qb = QD + 2 * b * MT * LD;
        mma_load_tile<HD>(Qb, qkv + (size_t)h * hd, W, s0 + q0, nq, hd, async);
        mma_load_tile<HD>(Qb + MT * LD, dout + (size_t)h * hd, qd, s0 + q0, nq, hd, async);
        if (threadIdx.x < MT) { /* lse and D of the tile's rows (zero past the sequence) */
            const int c = threadIdx.x;
            const size_t row = (size_t)(s0 + q0 + min(c, nq - 1)) * Hq + h;
            cp_async4(LS + 2 * b * MT + c, lse + row, c < nq ? 4 : 0);
            cp_async4(LS + 2 * b * MT + MT + c, Dd + row, c < nq ? 4 : 0);
        }
        cp_async_commit();
    };
    mma_load_tile<HD>(Ks, k, W, s0 + k0, nk, hd, async);
    mma_load_tile<HD>(Vs, v, W, s0 + k0, nk, hd, async);
    issue(0);
    float dk[NO][4] = {}, dv[NO][4] = {};
    const int nit = group * ntq;
    for (int it = 0; it < nit; it++) {
        const int q0 = (kt + it % ntq) * MT, b = it & 1;
        if (it + 1 < nit) {
            issue(it + 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const uint16_t *Qb = QD + 2 * b * MT * LD, *dOb = Qb + MT * LD;
        const float *lse_s = LS + 2 * b * MT, *D_s = lse_s + MT;
        float p[8][4], ds[8][4]; /* P^T, then dP^T -> dS^T: the warp's keys x the tile's queries */
        warp_abt<HD>(p, Ks + kw * LD, Qb, hd);
        warp_abt<HD>(ds, Vs + kw * LD, dOb, hd);
        strip_ds_cols(p, ds, kj, q0, L, scale, lse_s, D_s);
        uint32_t pa[4][4], dsa[4][4];
        strip_to_a(pa, p);
        strip_to_a(dsa, ds);
        warp_acc<HD>(dv, pa, dOb, hd);
        warp_acc<HD>(dk, dsa, Qb, hd);
        __syncthreads(); /* buffer b consumed: step it + 1 refills it (after the last step: the epilogue's
                            staging below overwrites the tiles) */
    }
    /* dk through RoPE^T, dv as it is, each staged in the tiles (free: every warp is past the loop) */
    float *stage = (float *)sm + warp * 16 * HD;
    warp_stage<HD>(stage, dk);
    __syncwarp();
    warp_store_stage<HD>(stage, dqkv + (size_t)(Hq + kvh) * hd, W, s0 + k0 + kw, nk - kw, hd, scale, true, pos, theta);
    __syncwarp();
    warp_stage<HD>(stage, dv);
    __syncwarp();
    warp_store_stage<HD>(stage, dqkv + (size_t)(Hq + Hkv + kvh) * hd, W, s0 + k0 + kw, nk - kw, hd, 1.0f, false, pos,
                         theta);
}

template <int HD>
static __global__ void __launch_bounds__(MTHREADS) attn_mma_dq_kernel(
    uint16_t *dqkv, const uint16_t *dout, const uint16_t *qkv, const float *lse, const float *Dd, const int32_t *pos,
    float theta, const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int LD = MLD(HD), NO = HD / 8;
    ATTN_SMEM(sm);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2;
    uint16_t *Qs = (uint16_t *)sm, *dOs = Qs + MT * LD, *KV = dOs + MT * LD; /* buffer b: K at KV + 2b MT LD, V after */

    const int2 e = map[blockIdx.x];
    const int h = blockIdx.y, kvh = h / (Hq / Hkv);
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int q0 = e.y * MT, nq = min(MT, L - q0), qw = 16 * warp;
    const int qi[2] = {q0 + qw + g, q0 + qw + g + 8};
    const size_t W = (size_t)(Hq + 2 * Hkv) * hd, qd = (size_t)Hq * hd;
    const uint16_t *k = qkv + (size_t)(Hq + kvh) * hd, *v = k + (size_t)Hkv * hd;
    const bool async = hd % 8 == 0 && ((size_t)qkv & 15) == 0 && ((size_t)dout & 15) == 0;

    mma_load_tile<HD>(Qs, qkv + (size_t)h * hd, W, s0 + q0, nq, hd, async);
    mma_load_tile<HD>(dOs, dout + (size_t)h * hd, qd, s0 + q0, nq, hd, async);
    mma_load_tile<HD>(KV, k, W, s0, min(MT, L), hd, async);
    mma_load_tile<HD>(KV + MT * LD, v, W, s0, min(MT, L), hd, async);
    cp_async_commit();
    float lse_r[2], D_r[2];
    strip_row_stats(lse_r, D_r, lse, Dd, s0, qi, q0 + nq, Hq, h);
    float dq[NO][4] = {};
    for (int kt = 0; kt <= e.y; kt++) {
        const uint16_t *Ks = KV + (kt & 1) * 2 * MT * LD, *Vs = Ks + MT * LD;
        if (kt < e.y) {
            uint16_t *Kn = KV + ((kt + 1) & 1) * 2 * MT * LD;
            const int k1 = (kt + 1) * MT;
            mma_load_tile<HD>(Kn, k, W, s0 + k1, min(MT, L - k1), hd, async);
            mma_load_tile<HD>(Kn + MT * LD, v, W, s0 + k1, min(MT, L - k1), hd, async);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int k0 = kt * MT;
        float p[8][4], ds[8][4]; /* P, then dP -> dS */
        warp_abt<HD>(p, Qs + qw * LD, Ks, hd);
        warp_abt<HD>(ds, dOs + qw * LD, Vs, hd);
        strip_ds_rows(p, ds, qi, k0, L, scale, lse_r, D_r);
        uint32_t dsa[4][4];
        strip_to_a(dsa, ds);
        warp_acc<HD>(dq, dsa, Ks, hd);
        __syncthreads(); /* tile kt consumed (after the last step: the epilogue's staging overwrites the tiles) */
    }
    /* dq through RoPE^T, staged in the tiles (free: every warp is past the loop) */
    float *stage = (float *)sm + warp * 16 * HD;
    warp_stage<HD>(stage, dq);
    __syncwarp();
    warp_store_stage<HD>(stage, dqkv + (size_t)h * hd, W, s0 + q0 + qw, nq - qw, hd, scale, true, pos, theta);
}

#else
template <int HD>
static __global__ void attn_mma_fwd_kernel(uint16_t *, float *, const uint16_t *, const int32_t *, const int2 *,
                                           const int *, int, int, int, float) {
    __trap();
}
template <int HD>
static __global__ void attn_mma_dkdv_kernel(uint16_t *, const uint16_t *, const uint16_t *, const float *,
                                            const float *, const int32_t *, float, const int32_t *, const int2 *,
                                            const int *, int, int, int, float) {
    __trap();
}
template <int HD>
static __global__ void attn_mma_dq_kernel(uint16_t *, const uint16_t *, const uint16_t *, const float *,
                                          const float *, const int32_t *, float, const int32_t *, const int2 *,
                                          const int *, int, int, int, float) {
    __trap();
}
#endif

/* ---- host side ---- */

/* Raises the kernels' dynamic shared-memory limits (hd 128 only where
   cuda_attention_setup found room: attn_hd_max). */
int cuda_attention_mma_setup(backend *be) {
#define SET_ALL(HD)                                                 \
    CU_SET_SMEM(be, (attn_mma_fwd_kernel<HD>), MMA_FWD_SMEM(HD));          \
    CU_SET_SMEM(be, (attn_mma_dkdv_kernel<HD>), MMA_DKDV_SMEM(HD));        \
    CU_SET_SMEM(be, (attn_mma_dq_kernel<HD>), MMA_DQ_SMEM(HD));
    SET_ALL(64)
    if (CUDA_IMPL(be)->attn_hd_max >= 128) {
        SET_ALL(128)
    }
#undef SET_ALL
    return 0;
}

template <int HD>
static void mma_forward(backend *be, dim3 grid, uint16_t *out16, float *lse, const uint16_t *qkv, const int32_t *cu,
                        const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    auto fwd = attn_mma_fwd_kernel<HD>;
    LAUNCH(fwd, grid, MTHREADS, MMA_FWD_SMEM(HD), CUDA_IMPL(be)->stream, out16, lse, qkv, cu, map, count, Hq, Hkv, hd,
           scale);
    CU_LAUNCHED(be, "attn_mma_fwd_kernel");
}

template <int HD>
static void mma_backward(backend *be, dim3 gkv, dim3 gq, uint16_t *dqkv, const uint16_t *dout, const uint16_t *qkv,
                         const float *lse, const float *Dd, const int32_t *pos, float theta, const int32_t *cu,
                         const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    cudaStream_t st = CUDA_IMPL(be)->stream;
    auto dkdv = attn_mma_dkdv_kernel<HD>;
    auto dqk = attn_mma_dq_kernel<HD>;
    LAUNCH(dkdv, gkv, MTHREADS, MMA_DKDV_SMEM(HD), st, dqkv, dout, qkv, lse, Dd, pos, theta, cu, map, count, Hq, Hkv,
           hd, scale);
    CU_LAUNCHED(be, "attn_mma_dkdv_kernel");
    LAUNCH(dqk, gq, MTHREADS, MMA_DQ_SMEM(HD), st, dqkv, dout, qkv, lse, Dd, pos, theta, cu, map, count, Hq, Hkv, hd,
           scale);
    CU_LAUNCHED(be, "attn_mma_dq_kernel");
}

void cuda_attention_mma_forward(backend *be, dim3 grid, uint16_t *out16, float *lse, const uint16_t *qkv,
                                const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd,
                                float scale) {
    (hd > 64 ? mma_forward<128> : mma_forward<64>)(be, grid, out16, lse, qkv, cu, map, count, Hq, Hkv, hd, scale);
}

void cuda_attention_mma_backward(backend *be, dim3 gkv, dim3 gq, uint16_t *dqkv, const uint16_t *dout,
                                 const uint16_t *qkv, const float *lse, const float *Dd, const int32_t *pos,
                                 float theta, const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv,
                                 int hd, float scale) {
    (hd > 64 ? mma_backward<128> : mma_backward<64>)(be, gkv, gq, dqkv, dout, qkv, lse, Dd, pos, theta, cu, map,
                                                     count, Hq, Hkv, hd, scale);
}
