/* kernels/cuda/cuda_attention.cu: causal grouped-query attention over a
 * packed batch of variable-length sequences (cu_seqlens on the device),
 * forward and backward, flash-attention style in fp32: 64x64 tiles in shared
 * memory, online softmax, lse saved; no T x T matrix in global memory.
 *
 * Work items are 64-row tiles of sequences. A tiny kernel turns cu_seqlens
 * into a tile map (sequence, tile) on the device, so the host never reads
 * cu_seqlens; the main kernels run on a grid of (upper bound on tiles, heads)
 * and blocks past the real tile count exit at once.
 *
 * - forward, block = (query tile, query head): loop over key tiles 0..own,
 *   S = scale Q K^T, online max/sum per row, O += P V; out = O / l,
 *   lse = m + log l.
 * - backward (FlashAttention-2, probabilities recomputed from lse,
 *   D = rowsum(dO * O), dS = P * (dP - D), dP = dO V^T):
 *   kernel dkdv, block = (key tile, kv head): for each query head of the
 *   group in order and each query tile at or after the key tile:
 *   dV += P^T dO, dK += scale dS^T Q;
 *   kernel dq, block = (query tile, query head): dQ = scale sum dS K.
 *   Every output element is owned by one block: no atomics, results are
 *   bitwise reproducible.
 *
 * Threads: 256 per block as a 16x16 grid (ty, tx). In a score tile a thread
 * owns rows 4ty..4ty+3 and columns tx, tx+16, tx+32, tx+48; in an output
 * tile rows 4ty..4ty+3 and head dims tx + 16k. Row reductions are shuffles
 * over the 16 tx lanes of a half warp. Shared tiles have a row stride of
 * HD+1 (or 65) floats, so the column walks hit distinct banks.
 * HD (compile time) is 64 or 128; head_dim <= HD is zero-padded. */
#include <math.h>

#include "cuda_internal.h"

#define AT 64          /* tile rows (queries and keys) */
#define AT_THREADS 256
#define SP (AT + 1)    /* row stride of score tiles in shared memory */

/* shared-memory floats of each kernel for head-dim bound HD */
#define FWD_SMEM(HD) ((3 * AT * ((HD) + 1) + AT * SP) * sizeof(float))
#define DKDV_SMEM(HD) ((4 * AT * ((HD) + 1) + 2 * AT * SP + 2 * AT) * sizeof(float))
#define DQ_SMEM(HD) ((4 * AT * ((HD) + 1) + AT * SP) * sizeof(float))

/* ---- tile map ----
 * map[i] = (sequence b, tile index within b) for every 64-row tile of every
 * sequence, in sequence order; *count = number of tiles. Bad cu_seqlens
 * (cu[0] != 0, cu[B] != T, decreasing) raise the flag and give no tiles. */
#define MAP_THREADS 1024
static __global__ void __launch_bounds__(MAP_THREADS) attn_tilemap_kernel(const int32_t *cu, int B, int T, int2 *map, int cap, int *count,
                                           int *flags) {
    __shared__ int sc[MAP_THREADS];
    __shared__ int bad;
    if (threadIdx.x == 0) bad = (cu[0] != 0 || cu[B] != T);
    __syncthreads();
    for (int b = threadIdx.x; b < B; b += MAP_THREADS)
        if (cu[b + 1] < cu[b]) bad = 1;
    __syncthreads();
    if (bad) {
        if (threadIdx.x == 0) {
            *count = 0;
            flags[CUDA_FLAG_SEQLENS_BAD] = 1;
        }
        return;
    }
    int base = 0;
    for (int b0 = 0; b0 < B; b0 += MAP_THREADS) {
        int b = b0 + threadIdx.x, n = 0;
        if (b < B) n = (cu[b + 1] - cu[b] + AT - 1) / AT;
        sc[threadIdx.x] = n;
        __syncthreads();
        for (int o = 1; o < MAP_THREADS; o <<= 1) { /* inclusive scan */
            int v = threadIdx.x >= o ? sc[threadIdx.x - o] : 0;
            __syncthreads();
            sc[threadIdx.x] += v;
            __syncthreads();
        }
        int first = base + sc[threadIdx.x] - n;
        for (int i = 0; i < n && first + i < cap; i++) map[first + i] = make_int2(b, i);
        base += sc[MAP_THREADS - 1];
        __syncthreads(); /* everyone has read sc before the next chunk */
    }
    if (threadIdx.x == 0) *count = base < cap ? base : cap;
}

/* rows [row0, row0 + AT) of x[T, H, hd], head h, into dst[AT][HD+1];
   rows >= nvalid and dims >= hd become 0 */
template <int HD>
static __device__ __forceinline__ void attn_load_tile(float *dst, const float *x, int row0, int nvalid, int H, int h,
                                                      int hd) {
    for (int idx = threadIdx.x; idx < AT * HD; idx += AT_THREADS) {
        int r = idx / HD, d = idx % HD;
        float v = 0.0f;
        if (r < nvalid && d < hd) v = x[((size_t)(row0 + r) * H + h) * hd + d];
        dst[r * (HD + 1) + d] = v;
    }
}

/* max / sum over the 16 tx lanes of a half warp */
static __device__ __forceinline__ float half_max(float v) {
    for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}
static __device__ __forceinline__ float half_sum(float v) {
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

/* ---- forward ---- */
template <int HD>
static __global__ void __launch_bounds__(AT_THREADS) attn_fwd_kernel(float *out, float *lse, const float *q,
                                                                     const float *k, const float *v,
                                                                     const int32_t *cu, const int2 *map,
                                                                     const int *count, int Hq, int Hkv, int hd,
                                                                     float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int P = HD + 1, NK = HD / 16;
#ifdef RFT_CUDA_EMU
    float *sm = (float *)emu_dyn_smem();
#else
    extern __shared__ float sm[];
#endif
    float *Qs = sm, *Ks = Qs + AT * P, *Vs = Ks + AT * P, *Ps = Vs + AT * P;
    const int2 e = map[blockIdx.x];
    const int h = blockIdx.y, kvh = h / (Hq / Hkv);
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int q0 = e.y * AT, nq = min(AT, L - q0);
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

    attn_load_tile<HD>(Qs, q, s0 + q0, nq, Hq, h, hd);
    float m[4], l[4], o[4][NK];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < NK; kk++) o[i][kk] = 0.0f;
    }
    for (int kt = 0; kt <= e.y; kt++) {
        const int k0 = kt * AT, nk = min(AT, L - k0);
        __syncthreads(); /* the previous tile's Ks, Vs, Ps are consumed */
        attn_load_tile<HD>(Ks, k, s0 + k0, nk, Hkv, kvh, hd);
        attn_load_tile<HD>(Vs, v, s0 + k0, nk, Hkv, kvh, hd);
        __syncthreads();
        float s[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) s[i][j] = 0.0f;
        for (int d = 0; d < HD; d++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = Qs[(4 * ty + i) * P + d];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = Ks[(tx + 16 * j) * P + d];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) s[i][j] += a[i] * b[j];
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int qi = q0 + 4 * ty + i;
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int kj = k0 + tx + 16 * j;
                s[i][j] = (kj <= qi && kj < L) ? s[i][j] * scale : -INFINITY;
                mx = fmaxf(mx, s[i][j]);
            }
            mx = half_max(mx);
            const float mnew = fmaxf(m[i], mx);
            const float mu = mnew == -INFINITY ? 0.0f : mnew;
            const float alpha = expf(m[i] - mu);
            float rs = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const float p = expf(s[i][j] - mu);
                rs += p;
                Ps[(4 * ty + i) * SP + tx + 16 * j] = p;
            }
            rs = half_sum(rs);
            l[i] = l[i] * alpha + rs;
            m[i] = mnew;
#pragma unroll
            for (int kk = 0; kk < NK; kk++) o[i][kk] *= alpha;
        }
        __syncthreads();
        for (int c = 0; c < nk; c++) {
            float p[4];
#pragma unroll
            for (int i = 0; i < 4; i++) p[i] = Ps[(4 * ty + i) * SP + c];
#pragma unroll
            for (int kk = 0; kk < NK; kk++) {
                const float vv = Vs[c * P + tx + 16 * kk];
#pragma unroll
                for (int i = 0; i < 4; i++) o[i][kk] += p[i] * vv;
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int r = 4 * ty + i;
        if (r >= nq) continue;
        const size_t row = (size_t)(s0 + q0 + r) * Hq + h;
        const float inv = 1.0f / l[i];
#pragma unroll
        for (int kk = 0; kk < NK; kk++) {
            const int dd = tx + 16 * kk;
            if (dd < hd) out[row * hd + dd] = o[i][kk] * inv;
        }
        if (tx == 0) lse[row] = m[i] + logf(l[i]);
    }
}

/* ---- backward ---- */

/* Dd[t, h] = sum_d dout[t,h,d] * out[t,h,d]; one warp per (t, h) */
static __global__ void attn_bwd_dot_kernel(float *Dd, const float *dout, const float *out, int TH, int hd) {
    const int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, l = threadIdx.x % 32;
    if (w >= TH) return;
    const float *a = dout + (size_t)w * hd, *b = out + (size_t)w * hd;
    float s = 0.0f;
    for (int d = l; d < hd; d += 32) s += a[d] * b[d];
    s = warp_sum(s);
    if (l == 0) Dd[w] = s;
}

template <int HD>
static __global__ void __launch_bounds__(AT_THREADS) attn_bwd_dkdv_kernel(
    float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v, const float *lse,
    const float *Dd, const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int P = HD + 1, NK = HD / 16;
#ifdef RFT_CUDA_EMU
    float *sm = (float *)emu_dyn_smem();
#else
    extern __shared__ float sm[];
#endif
    float *Ks = sm, *Vs = Ks + AT * P, *Qs = Vs + AT * P, *dOs = Qs + AT * P;
    float *PT = dOs + AT * P, *dST = PT + AT * SP, *lse_s = dST + AT * SP, *D_s = lse_s + AT;
    const int2 e = map[blockIdx.x];
    const int kvh = blockIdx.y, group = Hq / Hkv;
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int kt = e.y, k0 = kt * AT, nk = min(AT, L - k0), nqt = (L + AT - 1) / AT;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

    attn_load_tile<HD>(Ks, k, s0 + k0, nk, Hkv, kvh, hd);
    attn_load_tile<HD>(Vs, v, s0 + k0, nk, Hkv, kvh, hd);
    float dka[4][NK], dva[4][NK];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int kk = 0; kk < NK; kk++) dka[i][kk] = dva[i][kk] = 0.0f;

    for (int g = 0; g < group; g++) {
        const int h = kvh * group + g;
        for (int qt = kt; qt < nqt; qt++) {
            const int q0 = qt * AT, nq = min(AT, L - q0);
            __syncthreads(); /* previous tiles consumed */
            attn_load_tile<HD>(Qs, q, s0 + q0, nq, Hq, h, hd);
            attn_load_tile<HD>(dOs, dout, s0 + q0, nq, Hq, h, hd);
            if (threadIdx.x < AT) {
                const int r = threadIdx.x;
                const size_t row = (size_t)(s0 + q0 + r) * Hq + h;
                lse_s[r] = r < nq ? lse[row] : 0.0f;
                D_s[r] = r < nq ? Dd[row] : 0.0f;
            }
            __syncthreads();
            /* transposed scores: rows = keys 4ty+i, columns = queries tx+16j */
            float s[4][4], dp[4][4];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) s[i][j] = dp[i][j] = 0.0f;
            for (int d = 0; d < HD; d++) {
                float ka[4], va[4], qb[4], ob[4];
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    ka[i] = Ks[(4 * ty + i) * P + d];
                    va[i] = Vs[(4 * ty + i) * P + d];
                }
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    qb[j] = Qs[(tx + 16 * j) * P + d];
                    ob[j] = dOs[(tx + 16 * j) * P + d];
                }
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        s[i][j] += ka[i] * qb[j];
                        dp[i][j] += va[i] * ob[j];
                    }
            }
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int kj = k0 + 4 * ty + i;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int c = tx + 16 * j, qi = q0 + c;
                    const bool valid = qi < L && kj <= qi;
                    const float p = valid ? expf(s[i][j] * scale - lse_s[c]) : 0.0f;
                    PT[(4 * ty + i) * SP + c] = p;
                    dST[(4 * ty + i) * SP + c] = p * (dp[i][j] - D_s[c]);
                }
            }
            __syncthreads();
            for (int r = 0; r < nq; r++) {
                float pr[4], dsr[4];
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    pr[i] = PT[(4 * ty + i) * SP + r];
                    dsr[i] = dST[(4 * ty + i) * SP + r];
                }
#pragma unroll
                for (int kk = 0; kk < NK; kk++) {
                    const float ov = dOs[r * P + tx + 16 * kk], qv = Qs[r * P + tx + 16 * kk];
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        dva[i][kk] += pr[i] * ov;
                        dka[i][kk] += dsr[i] * qv;
                    }
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int c = 4 * ty + i;
        if (c >= nk) continue;
        const size_t row = (size_t)(s0 + k0 + c) * Hkv + kvh;
#pragma unroll
        for (int kk = 0; kk < NK; kk++) {
            const int dd = tx + 16 * kk;
            if (dd < hd) {
                dk[row * hd + dd] = dka[i][kk] * scale;
                dv[row * hd + dd] = dva[i][kk];
            }
        }
    }
}

template <int HD>
static __global__ void __launch_bounds__(AT_THREADS) attn_bwd_dq_kernel(
    float *dq, const float *dout, const float *q, const float *k, const float *v, const float *lse, const float *Dd,
    const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int P = HD + 1, NK = HD / 16;
#ifdef RFT_CUDA_EMU
    float *sm = (float *)emu_dyn_smem();
#else
    extern __shared__ float sm[];
#endif
    float *Qs = sm, *dOs = Qs + AT * P, *Ks = dOs + AT * P, *Vs = Ks + AT * P, *dSs = Vs + AT * P;
    const int2 e = map[blockIdx.x];
    const int h = blockIdx.y, kvh = h / (Hq / Hkv);
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int q0 = e.y * AT, nq = min(AT, L - q0);
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

    attn_load_tile<HD>(Qs, q, s0 + q0, nq, Hq, h, hd);
    attn_load_tile<HD>(dOs, dout, s0 + q0, nq, Hq, h, hd);
    float lse_r[4], D_r[4], dqa[4][NK];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int r = 4 * ty + i;
        const size_t row = (size_t)(s0 + q0 + r) * Hq + h;
        lse_r[i] = r < nq ? lse[row] : 0.0f;
        D_r[i] = r < nq ? Dd[row] : 0.0f;
#pragma unroll
        for (int kk = 0; kk < NK; kk++) dqa[i][kk] = 0.0f;
    }
    for (int kt = 0; kt <= e.y; kt++) {
        const int k0 = kt * AT, nk = min(AT, L - k0);
        __syncthreads();
        attn_load_tile<HD>(Ks, k, s0 + k0, nk, Hkv, kvh, hd);
        attn_load_tile<HD>(Vs, v, s0 + k0, nk, Hkv, kvh, hd);
        __syncthreads();
        float s[4][4], dp[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) s[i][j] = dp[i][j] = 0.0f;
        for (int d = 0; d < HD; d++) {
            float qa[4], oa[4], kb[4], vb[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                qa[i] = Qs[(4 * ty + i) * P + d];
                oa[i] = dOs[(4 * ty + i) * P + d];
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {
                kb[j] = Ks[(tx + 16 * j) * P + d];
                vb[j] = Vs[(tx + 16 * j) * P + d];
            }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    s[i][j] += qa[i] * kb[j];
                    dp[i][j] += oa[i] * vb[j];
                }
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int qi = q0 + 4 * ty + i;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int kj = k0 + tx + 16 * j;
                const bool valid = qi < L && kj <= qi;
                const float p = valid ? expf(s[i][j] * scale - lse_r[i]) : 0.0f;
                dSs[(4 * ty + i) * SP + tx + 16 * j] = p * (dp[i][j] - D_r[i]);
            }
        }
        __syncthreads();
        for (int c = 0; c < nk; c++) {
            float ds[4];
#pragma unroll
            for (int i = 0; i < 4; i++) ds[i] = dSs[(4 * ty + i) * SP + c];
#pragma unroll
            for (int kk = 0; kk < NK; kk++) {
                const float kv = Ks[c * P + tx + 16 * kk];
#pragma unroll
                for (int i = 0; i < 4; i++) dqa[i][kk] += ds[i] * kv;
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int r = 4 * ty + i;
        if (r >= nq) continue;
        const size_t row = (size_t)(s0 + q0 + r) * Hq + h;
#pragma unroll
        for (int kk = 0; kk < NK; kk++) {
            const int dd = tx + 16 * kk;
            if (dd < hd) dq[row * hd + dd] = dqa[i][kk] * scale;
        }
    }
}

/* ---- host side ---- */

/* Dd[TH] = rowsum(dout * out) over rows of hd (the backward's D), on the stream */
void cuda_attn_rowdot(backend *be, float *Dd, const float *dout, const float *out, int TH, int hd) {
    LAUNCH(attn_bwd_dot_kernel, (TH + 7) / 8, 256, 0, CUDA_IMPL(be)->stream, Dd, dout, out, TH, hd);
    CU_LAUNCHED(be, "attn_bwd_dot_kernel");
}

/* Raises the dynamic shared-memory limit of each attention kernel. The hd-128
   kernels need up to 166 KB per block, the hd-64 ones up to 100 KB; a device
   that cannot give the former keeps head_dim <= 64 (attn_hd_max). */
int cuda_attention_setup(backend *be) {
    cuda_impl *im = CUDA_IMPL(be);
    if (DKDV_SMEM(64) > im->smem_optin) {
        CU_ERR(be, "attention needs %zu bytes of shared memory per block, the device allows %zu", DKDV_SMEM(64),
               im->smem_optin);
        return -1;
    }
    CU_SET_SMEM(be, attn_fwd_kernel<64>, FWD_SMEM(64));
    CU_SET_SMEM(be, attn_bwd_dkdv_kernel<64>, DKDV_SMEM(64));
    CU_SET_SMEM(be, attn_bwd_dq_kernel<64>, DQ_SMEM(64));
    im->attn_hd_max = 64;
    if (DKDV_SMEM(128) <= im->smem_optin) {
        CU_SET_SMEM(be, attn_fwd_kernel<128>, FWD_SMEM(128));
        CU_SET_SMEM(be, attn_bwd_dkdv_kernel<128>, DKDV_SMEM(128));
        CU_SET_SMEM(be, attn_bwd_dq_kernel<128>, DQ_SMEM(128));
        im->attn_hd_max = 128;
    }
    return 0;
}

/* Checks the shapes, builds the tile map in scratch (after `extra` bytes the
   caller carves for itself); returns the grid width (an upper bound on the
   tiles), or -1. Shared with the bf16 kernels (cuda_attention_bf16.cu). */
int cuda_attn_prepare(backend *be, const int32_t *cu, int B, int T, int Hq, int Hkv, int hd, size_t extra,
                        void **extra_out, int2 **map, int **count) {
    if (Hkv <= 0 || Hq <= 0 || Hq % Hkv) { CU_ERR(be, "attention: Hq %d not a multiple of Hkv %d", Hq, Hkv); return -1; }
    if (hd <= 0 || hd > CUDA_IMPL(be)->attn_hd_max) {
        CU_ERR(be, "attention: head_dim %d not supported on this device (1..%d)", hd, CUDA_IMPL(be)->attn_hd_max);
        return -1;
    }
    if (B <= 0) { CU_ERR(be, "attention: %d sequences", B); return -1; }
    long cap = (long)T / AT + B + 1;
    if (cap > 2147483647L || Hq > 65535) { CU_ERR(be, "attention: batch too large"); return -1; }
    extra = (extra + 255) & ~(size_t)255;
    char *s = (char *)cuda_scratch(be, extra + (size_t)cap * sizeof(int2) + 256);
    if (!s) return -1;
    *extra_out = s;
    *map = (int2 *)(s + extra);
    *count = (int *)(s + extra + (size_t)cap * sizeof(int2));
    cuda_impl *im = CUDA_IMPL(be);
    LAUNCH(attn_tilemap_kernel, 1, MAP_THREADS, 0, im->stream, cu, B, T, *map, (int)cap, *count, im->dev_flags);
    CU_LAUNCHED(be, "attn_tilemap_kernel");
    return (int)cap;
}

void cuda_attention_forward(backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                            const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale) {
    if (be->err[0] || T <= 0) return;
    void *unused;
    int2 *map;
    int *count;
    int cap = cuda_attn_prepare(be, cu_seqlens, B, T, Hq, Hkv, hd, 0, &unused, &map, &count);
    if (cap < 0) return;
    cudaStream_t st = CUDA_IMPL(be)->stream;
    dim3 grid(cap, Hq);
    if (CUDA_IMPL(be)->attn_tf32) {
        cuda_attention_tf32_forward(be, grid, out, lse, q, k, v, cu_seqlens, map, count, Hq, Hkv, hd, scale);
        return;
    }
    if (hd <= 64)
        LAUNCH(attn_fwd_kernel<64>, grid, AT_THREADS, FWD_SMEM(64), st, out, lse, q, k, v, cu_seqlens, map, count,
               Hq, Hkv, hd, scale);
    else
        LAUNCH(attn_fwd_kernel<128>, grid, AT_THREADS, FWD_SMEM(128), st, out, lse, q, k, v, cu_seqlens, map, count,
               Hq, Hkv, hd, scale);
    CU_LAUNCHED(be, "attn_fwd_kernel");
}

void cuda_attention_backward(backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                             const float *k, const float *v, const float *out, const float *lse,
                             const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale) {
    if (be->err[0] || T <= 0) return;
    void *dbuf;
    int2 *map;
    int *count;
    int cap = cuda_attn_prepare(be, cu_seqlens, B, T, Hq, Hkv, hd, (size_t)T * Hq * sizeof(float), &dbuf, &map, &count);
    if (cap < 0) return;
    float *Dd = (float *)dbuf; /* [T, Hq] */
    cudaStream_t st = CUDA_IMPL(be)->stream;
    cuda_attn_rowdot(be, Dd, dout, out, T * Hq, hd);
    dim3 gkv(cap, Hkv), gq(cap, Hq);
    if (CUDA_IMPL(be)->attn_tf32) {
        cuda_attention_tf32_backward(be, gkv, gq, dq, dk, dv, dout, q, k, v, lse, Dd, cu_seqlens, map, count, Hq, Hkv,
                                     hd, scale);
        return;
    }
    if (hd <= 64) {
        LAUNCH(attn_bwd_dkdv_kernel<64>, gkv, AT_THREADS, DKDV_SMEM(64), st, dk, dv, dout, q, k, v, lse, Dd,
               cu_seqlens, map, count, Hq, Hkv, hd, scale);
        CU_LAUNCHED(be, "attn_bwd_dkdv_kernel");
        LAUNCH(attn_bwd_dq_kernel<64>, gq, AT_THREADS, DQ_SMEM(64), st, dq, dout, q, k, v, lse, Dd, cu_seqlens, map,
               count, Hq, Hkv, hd, scale);
        CU_LAUNCHED(be, "attn_bwd_dq_kernel");
    } else {
        LAUNCH(attn_bwd_dkdv_kernel<128>, gkv, AT_THREADS, DKDV_SMEM(128), st, dk, dv, dout, q, k, v, lse, Dd,
               cu_seqlens, map, count, Hq, Hkv, hd, scale);
        CU_LAUNCHED(be, "attn_bwd_dkdv_kernel");
        LAUNCH(attn_bwd_dq_kernel<128>, gq, AT_THREADS, DQ_SMEM(128), st, dq, dout, q, k, v, lse, Dd, cu_seqlens,
               map, count, Hq, Hkv, hd, scale);
        CU_LAUNCHED(be, "attn_bwd_dq_kernel");
    }
}
