/* kernels/cuda/cuda_attn_strip.h: the row arithmetic of the flash-attention
 * kernels that keep a warp's 16 x 64 strip of S in registers as 8 m16n8
 * accumulator fragments (cuda_attention_mma.cu: bf16 m16n8k16,
 * cuda_attention_tf32.cu: tf32 m16n8k8; both accumulators map lane 4g + t to
 * rows g and g + 8, columns 8j + 2t and + 1 of fragment j, element i of
 * s[j] to row g + 8 (i >> 1), column 8j + 2t + (i & 1)). A row lives in
 * the lane's quad: its statistics are reduced by shuffles xor 1 and 2. */
#ifndef RFT_CUDA_ATTN_STRIP_H
#define RFT_CUDA_ATTN_STRIP_H

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

#endif
