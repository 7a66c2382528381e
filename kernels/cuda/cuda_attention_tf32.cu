/* kernels/cuda/cuda_attention_tf32.cu: attention_forward and
 * attention_backward (the fp32 ops, backend.h) on the tensor cores in TF32,
 * taken when the backend's TF32 math is on (its default; RFT_CUDA_TF32=0
 * keeps the CUDA-core kernels of cuda_attention.cu, which the op tests
 * compare with the CPU in plain fp32). The design allows TF32 in fp32 mode;
 * the GEMMs use it already.
 *
 * The FlashAttention-2 work split, tile map and determinism of
 * cuda_attention_mma.cu (4 warps, 16 rows of a 64-row tile each; S, P, dS
 * in registers as m16n8 accumulators; each output element owned by one
 * block) with mma.sync m16n8k8 tf32 (cuda_mma.h): operands are fp32 tiles
 * in shared memory, rounded to tf32 in place once they arrive (each thread
 * its own copies, tf32_round: nearest, ties away, as cvt.rna), so the
 * fragment loads are plain; P and dS are rounded (tf32_of) when an
 * accumulator strip becomes the next product's A operand (as it stands: the
 * product sums each 8-column step in a permuted order, tf_acc). Softmax statistics, lse, D = rowsum(dO O)
 * (cuda_attn_rowdot) and every sum are fp32; outputs are fp32 (dq, dk times
 * scale), written from registers.
 *
 * Tiles: fp32 [64][HD+4] (a fragment's 8 rows x 4 columns, or 8 columns x
 * rows 2t and 2t + 1, hit 32 distinct banks), copied by cp.async (16 bytes, zero-filled past the sequence and
 * head_dim) when head_dim is a multiple of 4 and the tensors 16-byte
 * aligned, else element by element; one buffer each (at 4 bytes an element
 * double buffering would halve the blocks per SM), but each step's two
 * tiles in two commit groups: the first product runs while the second
 * tile (V, or dO with its D rows) is still on its way. Shared memory: forward
 * Q, K, V (52 / 101 KB at hd 64 / 128), dK/dV K, V, Q, dO + lse, D rows, dQ
 * Q, dO, K, V (70 / 135 KB). Products skip the 8-dim steps past head_dim. */
#include <math.h>

#include "cuda_internal.h"
#include "cuda_mma.h"
#include "cuda_attn_strip.h"

#define FT 64
#define FW 4
#define FTHREADS (32 * FW)
#define FLD(HD) ((HD) + 4) /* tile row stride (floats) */
#define FTILE(HD) ((size_t)FT * FLD(HD) * 4)
#define TF_FWD_SMEM(HD) (3 * FTILE(HD))
#define TF_DKDV_SMEM(HD) (4 * FTILE(HD) + 2 * FT * 4)
#define TF_DQ_SMEM(HD) (4 * FTILE(HD))

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

/* a 64-row fp32 tile into dst[64][HD+4] (attn_load_tile) */
template <int HD>
static __device__ __forceinline__ void tf_load_tile(float *dst, const float *x, size_t ld, int row0, int nvalid,
                                                    int hd, bool async) {
    attn_load_tile<float, HD, FLD(HD), FTHREADS>(dst, x, ld, row0, nvalid, hd, async);
}

/* x rounded to tf32 as an fp32 (low 13 bits zero): nearest, ties away from
   zero, as cvt.rna; idempotent */
static __device__ __forceinline__ float tf32_round(float x) {
    uint32_t u = __float_as_uint(x);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
    return __uint_as_float(u);
}

/* rounds to tf32, in place, the elements of a tile this thread loaded
   (tf_load_tile's own mapping: no barrier needed between its wait and this;
   one after it, before other threads read) */
template <int HD>
static __device__ __forceinline__ void tf_round_tile(float *dst, bool async) {
    if (async) {
        for (int idx = threadIdx.x; idx < FT * HD / 4; idx += FTHREADS) {
            float *x = dst + idx / (HD / 4) * FLD(HD) + idx % (HD / 4) * 4;
            x[0] = tf32_round(x[0]), x[1] = tf32_round(x[1]), x[2] = tf32_round(x[2]), x[3] = tf32_round(x[3]);
        }
        return;
    }
    for (int idx = threadIdx.x; idx < FT * HD; idx += FTHREADS) {
        float *x = dst + idx / HD * FLD(HD) + idx % HD;
        *x = tf32_round(*x);
    }
}

/* s[8][4] (the warp's 16 x 64 strip) = A[16][HD] B[64][HD]^T: A the warp's
   16 rows of a tile, B a whole tile (its rows are the columns of s) */
template <int HD>
static __device__ __forceinline__ void tf_abt(float s[8][4], const float *A, const float *B, int hd) {
    constexpr int LD = FLD(HD);
    const int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll 4
    for (int kk = 0; kk < HD / 8; kk++) {
        if (8 * kk >= hd) break;
        const int c = 8 * kk + t;
        const uint32_t a[4] = {__float_as_uint(A[g * LD + c]), __float_as_uint(A[(g + 8) * LD + c]),
                               __float_as_uint(A[g * LD + c + 4]), __float_as_uint(A[(g + 8) * LD + c + 4])};
#pragma unroll
        for (int jn = 0; jn < 8; jn++) {
            const float *br = B + (8 * jn + g) * LD + c;
            const uint32_t b[2] = {__float_as_uint(br[0]), __float_as_uint(br[4])};
            mma_tf32_1688(s[jn], a, b);
        }
    }
}

/* o[HD/8][4] (16 x HD) += P[16][64] B[64][HD]: P held as accumulators
   p[8][4], B a tile whose rows are P's columns. The sum over each 8-column
   step runs in a permuted order, k = t <-> column 2t and k = t + 4 <->
   column 2t + 1, on both operands: the accumulator fragment p[j] is then the
   A fragment as it stands (no shuffles), and B's rows 8j + 2t, + 1 at column
   g fall in banks 8t + g (distinct) */
template <int HD>
static __device__ __forceinline__ void tf_acc(float o[][4], const float p[8][4], const float *B, int hd) {
    constexpr int LD = FLD(HD);
    const int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const uint32_t a[4] = {tf32_of(p[j][0]), tf32_of(p[j][2]), tf32_of(p[j][1]), tf32_of(p[j][3])};
        const float *br = B + (8 * j + 2 * t) * LD + g;
#pragma unroll
        for (int jd = 0; jd < HD / 8; jd++) {
            if (8 * jd >= hd) break;
            const uint32_t b[2] = {__float_as_uint(br[8 * jd]), __float_as_uint(br[LD + 8 * jd])};
            mma_tf32_1688(o[jd], a, b);
        }
    }
}

/* rows [row0, row0 + nrows) of x (the head's first column, row stride ld) =
   mul * the warp's accumulators o[HD/8][4] (dims < hd) */
template <int HD>
static __device__ __forceinline__ void tf_store(float *x, size_t ld, int row0, int nrows, int hd, float mul,
                                                const float o[][4]) {
    const int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < HD / 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int r = g + 8 * (i >> 1), c = 8 * j + 2 * t + (i & 1);
            if (r < nrows && c < hd) x[(size_t)(row0 + r) * ld + c] = o[j][i] * mul;
        }
}

/* ---- forward ---- */
template <int HD>
static __global__ void __launch_bounds__(FTHREADS) attn_tf32_fwd_kernel(float *out, float *lse, const float *q,
                                                                        const float *k, const float *v,
                                                                        const int32_t *cu, const int2 *map,
                                                                        const int *count, int Hq, int Hkv, int hd,
                                                                        float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int LD = FLD(HD), NO = HD / 8;
    ATTN_SMEM(sm);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    float *Qs = (float *)sm, *Ks = Qs + FT * LD, *Vs = Ks + FT * LD;

    const int2 e = map[blockIdx.x];
    const int h = blockIdx.y, kvh = h / (Hq / Hkv);
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int q0 = e.y * FT, nq = min(FT, L - q0), qw = 16 * warp;
    const int qi[2] = {q0 + qw + g, q0 + qw + g + 8};
    const size_t ldq = (size_t)Hq * hd, ldk = (size_t)Hkv * hd;
    const float *qh = q + (size_t)h * hd, *kh = k + (size_t)kvh * hd, *vh = v + (size_t)kvh * hd;
    const bool async = hd % 4 == 0 && !(((size_t)q | (size_t)k | (size_t)v) & 15);

    tf_load_tile<HD>(Qs, qh, ldq, s0 + q0, nq, hd, async);
    float o[NO][4] = {};
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    for (int kt = 0; kt <= e.y; kt++) {
        const int k0 = kt * FT, nk = min(FT, L - k0);
        __syncthreads(); /* the previous K, V tiles are consumed */
        tf_load_tile<HD>(Ks, kh, ldk, s0 + k0, nk, hd, async);
        cp_async_commit();
        tf_load_tile<HD>(Vs, vh, ldk, s0 + k0, nk, hd, async);
        cp_async_commit();
        cp_async_wait<1>(); /* (Q and) K; V still in flight */
        if (kt == 0) tf_round_tile<HD>(Qs, async);
        tf_round_tile<HD>(Ks, async);
        __syncthreads();
        float s[8][4];
        tf_abt<HD>(s, Qs + qw * LD, Ks, hd);
        float alpha[2];
        strip_softmax(s, m, l, alpha, qi, k0, L, scale);
#pragma unroll
        for (int j = 0; j < NO; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) o[j][i] *= alpha[i >> 1];
        cp_async_wait<0>();
        tf_round_tile<HD>(Vs, async);
        __syncthreads(); /* V */
        tf_acc<HD>(o, s, Vs, hd);
    }
    const float inv[2] = {1.0f / l[0], 1.0f / l[1]};
#pragma unroll
    for (int r = 0; r < 2; r++)
        if (t == 0 && qw + g + 8 * r < nq) lse[(size_t)(s0 + qi[r]) * Hq + h] = m[r] + logf(l[r]);
#pragma unroll
    for (int j = 0; j < NO; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) o[j][i] *= inv[i >> 1];
    tf_store<HD>(out + (size_t)h * hd, ldq, s0 + q0 + qw, nq - qw, hd, 1.0f, o);
}

/* ---- backward ---- */
/* dK/dV at hd 64 asks ptxas for 3 blocks per SM (168 registers, 16 / 44
   bytes of spills; left alone it takes 205, 2 blocks, and the synchronous
   tile loads have fewer warps to hide behind); at hd 128 it needs ~254 */
template <int HD>
static __global__ void __launch_bounds__(FTHREADS, HD == 64 ? 3 : 1) attn_tf32_dkdv_kernel(
    float *dk, float *dv, const float *dout, const float *q, const float *k, const float *v, const float *lse,
    const float *Dd, const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int LD = FLD(HD), NO = HD / 8;
    ATTN_SMEM(sm);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2;
    float *Ks = (float *)sm, *Vs = Ks + FT * LD, *Qs = Vs + FT * LD, *dOs = Qs + FT * LD;
    float *lse_s = dOs + FT * LD, *D_s = lse_s + FT;

    const int2 e = map[blockIdx.x];
    const int kvh = blockIdx.y, group = Hq / Hkv;
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int kt = e.y, k0 = kt * FT, nk = min(FT, L - k0), nqt = (L + FT - 1) / FT;
    const int kw = 16 * warp;
    const int kj[2] = {k0 + kw + g, k0 + kw + g + 8};
    const size_t ldq = (size_t)Hq * hd, ldk = (size_t)Hkv * hd;
    const bool async = hd % 4 == 0 && !(((size_t)q | (size_t)k | (size_t)v | (size_t)dout) & 15);

    tf_load_tile<HD>(Ks, k + (size_t)kvh * hd, ldk, s0 + k0, nk, hd, async);
    tf_load_tile<HD>(Vs, v + (size_t)kvh * hd, ldk, s0 + k0, nk, hd, async);
    float dka[NO][4] = {}, dva[NO][4] = {};
    for (int gi = 0; gi < group; gi++) {
        const int h = kvh * group + gi;
        for (int qt = kt; qt < nqt; qt++) {
            const int q0 = qt * FT, nq = min(FT, L - q0);
            __syncthreads(); /* the previous Q, dO, lse, D are consumed */
            const int c = threadIdx.x;
            const size_t row = (size_t)(s0 + q0 + min(c, nq - 1)) * Hq + h;
            tf_load_tile<HD>(Qs, q + (size_t)h * hd, ldq, s0 + q0, nq, hd, async);
            if (c < FT) cp_async4(lse_s + c, lse + row, c < nq ? 4 : 0);
            cp_async_commit();
            tf_load_tile<HD>(dOs, dout + (size_t)h * hd, ldq, s0 + q0, nq, hd, async);
            if (c < FT) cp_async4(D_s + c, Dd + row, c < nq ? 4 : 0);
            cp_async_commit();
            cp_async_wait<1>(); /* (K, V and) Q, lse; dO, D still in flight */
            if (gi == 0 && qt == kt) tf_round_tile<HD>(Ks, async), tf_round_tile<HD>(Vs, async);
            tf_round_tile<HD>(Qs, async);
            __syncthreads();
            float p[8][4], ds[8][4]; /* P^T, dP^T -> dS^T: the warp's keys x the tile's queries */
            tf_abt<HD>(p, Ks + kw * LD, Qs, hd);
            cp_async_wait<0>();
            tf_round_tile<HD>(dOs, async);
            __syncthreads(); /* dO, D */
            tf_abt<HD>(ds, Vs + kw * LD, dOs, hd);
            strip_ds_cols(p, ds, kj, q0, L, scale, lse_s, D_s);
            tf_acc<HD>(dva, p, dOs, hd);
            tf_acc<HD>(dka, ds, Qs, hd);
        }
    }
    tf_store<HD>(dk + (size_t)kvh * hd, ldk, s0 + k0 + kw, nk - kw, hd, scale, dka);
    tf_store<HD>(dv + (size_t)kvh * hd, ldk, s0 + k0 + kw, nk - kw, hd, 1.0f, dva);
}

template <int HD>
static __global__ void __launch_bounds__(FTHREADS) attn_tf32_dq_kernel(
    float *dq, const float *dout, const float *q, const float *k, const float *v, const float *lse, const float *Dd,
    const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    if ((int)blockIdx.x >= *count) return;
    constexpr int LD = FLD(HD), NO = HD / 8;
    ATTN_SMEM(sm);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2;
    float *Qs = (float *)sm, *dOs = Qs + FT * LD, *Ks = dOs + FT * LD, *Vs = Ks + FT * LD;

    const int2 e = map[blockIdx.x];
    const int h = blockIdx.y, kvh = h / (Hq / Hkv);
    const int s0 = cu[e.x], L = cu[e.x + 1] - s0;
    const int q0 = e.y * FT, nq = min(FT, L - q0), qw = 16 * warp;
    const int qi[2] = {q0 + qw + g, q0 + qw + g + 8};
    const size_t ldq = (size_t)Hq * hd, ldk = (size_t)Hkv * hd;
    const bool async = hd % 4 == 0 && !(((size_t)q | (size_t)k | (size_t)v | (size_t)dout) & 15);

    tf_load_tile<HD>(Qs, q + (size_t)h * hd, ldq, s0 + q0, nq, hd, async);
    tf_load_tile<HD>(dOs, dout + (size_t)h * hd, ldq, s0 + q0, nq, hd, async);
    float lse_r[2], D_r[2];
    strip_row_stats(lse_r, D_r, lse, Dd, s0, qi, q0 + nq, Hq, h);
    float dqa[NO][4] = {};
    for (int kt = 0; kt <= e.y; kt++) {
        const int k0 = kt * FT, nk = min(FT, L - k0);
        __syncthreads(); /* the previous K, V are consumed */
        tf_load_tile<HD>(Ks, k + (size_t)kvh * hd, ldk, s0 + k0, nk, hd, async);
        cp_async_commit();
        tf_load_tile<HD>(Vs, v + (size_t)kvh * hd, ldk, s0 + k0, nk, hd, async);
        cp_async_commit();
        cp_async_wait<1>(); /* (Q, dO and) K; V still in flight */
        if (kt == 0) tf_round_tile<HD>(Qs, async), tf_round_tile<HD>(dOs, async);
        tf_round_tile<HD>(Ks, async);
        __syncthreads();
        float p[8][4], ds[8][4]; /* P, dP -> dS */
        tf_abt<HD>(p, Qs + qw * LD, Ks, hd);
        cp_async_wait<0>();
        tf_round_tile<HD>(Vs, async);
        __syncthreads(); /* V */
        tf_abt<HD>(ds, dOs + qw * LD, Vs, hd);
        strip_ds_rows(p, ds, qi, k0, L, scale, lse_r, D_r);
        tf_acc<HD>(dqa, ds, Ks, hd);
    }
    tf_store<HD>(dq + (size_t)h * hd, ldq, s0 + q0 + qw, nq - qw, hd, scale, dqa);
}

#else
template <int HD>
static __global__ void attn_tf32_fwd_kernel(float *, float *, const float *, const float *, const float *,
                                            const int32_t *, const int2 *, const int *, int, int, int, float) {
    __trap();
}
template <int HD>
static __global__ void attn_tf32_dkdv_kernel(float *, float *, const float *, const float *, const float *,
                                             const float *, const float *, const float *, const int32_t *,
                                             const int2 *, const int *, int, int, int, float) {
    __trap();
}
template <int HD>
static __global__ void attn_tf32_dq_kernel(float *, const float *, const float *, const float *, const float *,
                                           const float *, const float *, const int32_t *, const int2 *, const int *,
                                           int, int, int, float) {
    __trap();
}
#endif

/* ---- host side ---- */

/* Raises the kernels' dynamic shared-memory limits (hd 128 where
   cuda_attention_setup found room: attn_hd_max) and takes them for the fp32
   ops when the backend's TF32 math is on. */
int cuda_attention_tf32_setup(backend *be) {
    cuda_impl *im = CUDA_IMPL(be);
#define SET_ALL(HD)                                                  \
    CU_SET_SMEM(be, (attn_tf32_fwd_kernel<HD>), TF_FWD_SMEM(HD));           \
    CU_SET_SMEM(be, (attn_tf32_dkdv_kernel<HD>), TF_DKDV_SMEM(HD));         \
    CU_SET_SMEM(be, (attn_tf32_dq_kernel<HD>), TF_DQ_SMEM(HD));
    SET_ALL(64)
    if (im->attn_hd_max >= 128) {
        SET_ALL(128)
    }
#undef SET_ALL
    im->attn_tf32 = be->tf32;
    return 0;
}

template <int HD>
static void tf_forward(backend *be, dim3 grid, float *out, float *lse, const float *q, const float *k, const float *v,
                       const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    auto fwd = attn_tf32_fwd_kernel<HD>;
    LAUNCH(fwd, grid, FTHREADS, TF_FWD_SMEM(HD), CUDA_IMPL(be)->stream, out, lse, q, k, v, cu, map, count, Hq, Hkv,
           hd, scale);
    CU_LAUNCHED(be, "attn_tf32_fwd_kernel");
}

template <int HD>
static void tf_backward(backend *be, dim3 gkv, dim3 gq, float *dq, float *dk, float *dv, const float *dout,
                        const float *q, const float *k, const float *v, const float *lse, const float *Dd,
                        const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd, float scale) {
    cudaStream_t st = CUDA_IMPL(be)->stream;
    auto dkdv = attn_tf32_dkdv_kernel<HD>;
    auto dqk = attn_tf32_dq_kernel<HD>;
    LAUNCH(dkdv, gkv, FTHREADS, TF_DKDV_SMEM(HD), st, dk, dv, dout, q, k, v, lse, Dd, cu, map, count, Hq, Hkv, hd,
           scale);
    CU_LAUNCHED(be, "attn_tf32_dkdv_kernel");
    LAUNCH(dqk, gq, FTHREADS, TF_DQ_SMEM(HD), st, dq, dout, q, k, v, lse, Dd, cu, map, count, Hq, Hkv, hd, scale);
    CU_LAUNCHED(be, "attn_tf32_dq_kernel");
}

void cuda_attention_tf32_forward(backend *be, dim3 grid, float *out, float *lse, const float *q, const float *k,
                                 const float *v, const int32_t *cu, const int2 *map, const int *count, int Hq,
                                 int Hkv, int hd, float scale) {
    (hd > 64 ? tf_forward<128> : tf_forward<64>)(be, grid, out, lse, q, k, v, cu, map, count, Hq, Hkv, hd, scale);
}

void cuda_attention_tf32_backward(backend *be, dim3 gkv, dim3 gq, float *dq, float *dk, float *dv, const float *dout,
                                  const float *q, const float *k, const float *v, const float *lse, const float *Dd,
                                  const int32_t *cu, const int2 *map, const int *count, int Hq, int Hkv, int hd,
                                  float scale) {
    (hd > 64 ? tf_backward<128> : tf_backward<64>)(be, gkv, gq, dq, dk, dv, dout, q, k, v, lse, Dd, cu, map, count,
                                                   Hq, Hkv, hd, scale);
}
