/* kernels/cuda/cuda_attn_strip.h: what the tensor-core attention kernels
 * share: their tile loader (cp.async or plain), the RoPE^T / plain store of
 * a warp's staged 16 output rows, and the row arithmetic of the kernels that
 * keep a warp's 16 x 64 strip of S in registers as 8 m16n8 accumulator
 * fragments (cuda_attention_mma.cu: bf16 m16n8k16,
 * cuda_attention_tf32.cu: tf32 m16n8k8; both accumulators map lane 4g + t to
 * rows g and g + 8, columns 8j + 2t and + 1 of fragment j, element i of
 * s[j] to row g + 8 (i >> 1), column 8j + 2t + (i & 1)). A row lives in
 * the lane's quad: its statistics are reduced by shuffles xor 1 and 2. */
#ifndef RFT_CUDA_ATTN_STRIP_H
#define RFT_CUDA_ATTN_STRIP_H

/* a kernel's dynamic shared memory as bytes, 128-byte aligned (wmma wants 32) */
#ifdef RFT_CUDA_EMU
#define ATTN_SMEM(name) unsigned char *name = (unsigned char *)emu_dyn_smem()
#else
#define ATTN_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#endif

static __device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, 1));
    return fmaxf(v, __shfl_xor_sync(FULL_MASK, v, 2));
}
static __device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(FULL_MASK, v, 1);
    return v + __shfl_xor_sync(FULL_MASK, v, 2);
}

/* One key tile of the forward's online softmax. s: the scores of query rows
   qi[0], qi[1] (the lane's two rows) against keys k0.. ; masked (key > query
   or >= L) and scaled, then s = exp(s - m_new) in place (P, unrounded); m, l
   (running max and sum of each row) updated; alpha = exp(m_old - m_new), the
   factor the caller rescales O by. */
static __device__ __forceinline__ void strip_softmax(float s[8][4], float m[2], float l[2], float alpha[2],
                                                     const int qi[2], int k0, int L, float scale) {
    const int t = threadIdx.x % 4;
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int kj = k0 + 8 * j + 2 * t + (i & 1);
            s[j][i] = kj <= qi[i >> 1] && kj < L ? s[j][i] * scale : -INFINITY;
            mx[i >> 1] = fmaxf(mx[i >> 1], s[j][i]);
        }
    float mu[2], rs[2] = {0.0f, 0.0f};
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const float mnew = fmaxf(m[r], quad_max(mx[r]));
        mu[r] = mnew == -INFINITY ? 0.0f : mnew;
        alpha[r] = expf(m[r] - mu[r]);
        m[r] = mnew;
    }
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s[j][i] = expf(s[j][i] - mu[i >> 1]);
            rs[i >> 1] += s[j][i];
        }
#pragma unroll
    for (int r = 0; r < 2; r++) l[r] = l[r] * alpha[r] + quad_sum(rs[r]);
}

/* lse and D of the lane's two query rows qi[0], qi[1] (of the sequence
   starting at row s0, head h of Hq), 0 for rows at or past qend */
static __device__ __forceinline__ void strip_row_stats(float lse_r[2], float D_r[2], const float *lse, const float *Dd,
                                                       int s0, const int qi[2], int qend, int Hq, int h) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const bool ok = qi[r] < qend;
        lse_r[r] = ok ? lse[(size_t)(s0 + qi[r]) * Hq + h] : 0.0f;
        D_r[r] = ok ? Dd[(size_t)(s0 + qi[r]) * Hq + h] : 0.0f;
    }
}

/* The dQ kernel's step: p holds S (rows qi[0], qi[1], keys k0..), ds holds
   dP; p becomes P = exp(scale S - lse) (0 where masked), ds becomes dS = P
   (dP - D) */
static __device__ __forceinline__ void strip_ds_rows(float p[8][4], float ds[8][4], const int qi[2], int k0, int L,
                                                     float scale, const float lse_r[2], const float D_r[2]) {
    const int t = threadIdx.x % 4;
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int kj = k0 + 8 * j + 2 * t + (i & 1), r = i >> 1;
            p[j][i] = qi[r] < L && kj <= qi[r] ? expf(p[j][i] * scale - lse_r[r]) : 0.0f;
            ds[j][i] = p[j][i] * (ds[j][i] - D_r[r]);
        }
}

/* The dK/dV kernel's step, transposed: p holds S^T (key rows kj[0], kj[1],
   queries q0..), ds holds dP^T; lse_s, D_s the queries' lse and D */
static __device__ __forceinline__ void strip_ds_cols(float p[8][4], float ds[8][4], const int kj[2], int q0, int L,
                                                     float scale, const float *lse_s, const float *D_s) {
    const int t = threadIdx.x % 4;
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int c = 8 * j + 2 * t + (i & 1), qi = q0 + c;
            p[j][i] = qi < L && kj[i >> 1] <= qi ? expf(p[j][i] * scale - lse_s[c]) : 0.0f;
            ds[j][i] = p[j][i] * (ds[j][i] - D_s[c]);
        }
}

/* rows [row0, row0 + 64) of a tensor of T (bf16 bits or fp32) of row stride
   ld, columns [0, hd) from x (the head's first column), into dst[64][LD];
   rows >= nvalid and dims >= hd become 0. async: 16-byte cp.async pieces
   (the caller commits and waits; hd, ld and x must allow 16-byte pieces),
   else plain loads. HD: the padded head dim; NT: the block's threads. */
template <class T, int HD, int LD, int NT>
static __device__ __forceinline__ void attn_load_tile(T *dst, const T *x, size_t ld, int row0, int nvalid, int hd,
                                                      bool async) {
    constexpr int V = 16 / (int)sizeof(T); /* elements per 16 bytes */
    if (async) {
        for (int idx = threadIdx.x; idx < 64 * HD / V; idx += NT) {
            const int r = idx / (HD / V), d = idx % (HD / V) * V;
            const bool ok = r < nvalid && d < hd;
            cp_async16(dst + r * LD + d, ok ? x + (size_t)(row0 + r) * ld + d : x, ok ? 16 : 0);
        }
        return;
    }
    for (int idx = threadIdx.x; idx < 64 * HD; idx += NT) {
        const int r = idx / HD, d = idx % HD;
        dst[r * LD + d] = r < nvalid && d < hd ? x[(size_t)(row0 + r) * ld + d] : (T)0;
    }
}

/* rows [row0, row0 + nrows) (nrows <= 16) of the stacked bf16 gradient x
   (the head's first column, row stride ld) = bf16(mul * stage) through
   RoPE^T at positions pos[row] when rope, else as it is (warp-collective,
   after warp_stage and a __syncwarp) */
template <int HD>
static __device__ __forceinline__ void warp_store_stage(const float *stage, uint16_t *x, size_t ld, int row0,
                                                        int nrows, int hd, float mul, bool rope,
                                                        const int32_t *pos, float theta) {
    const int lane = threadIdx.x % 32, half = hd / 2;
    if (!rope) {
        for (int e = lane; e < 16 * hd; e += 32) {
            const int r = e / hd, c = e % hd;
            if (r < nrows) x[(size_t)(row0 + r) * ld + c] = fp32_to_bf16(stage[r * HD + c] * mul);
        }
        return;
    }
    for (int e = lane; e < 16 * half; e += 32) {
        const int r = e / half, i = e % half;
        if (r >= nrows) continue;
        float c, sn;
        rope_cs(pos[row0 + r], i, hd, theta, -1.0f, &c, &sn);
        const float a = stage[r * HD + i] * mul, b = stage[r * HD + i + half] * mul;
        uint16_t *row = x + (size_t)(row0 + r) * ld;
        row[i] = fp32_to_bf16(a * c - b * sn);
        row[i + half] = fp32_to_bf16(b * c + a * sn);
    }
}

#endif
