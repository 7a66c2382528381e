/* kernels/cuda/cuda_kvcache.cu: the KV-cache ops of the CUDA backend used by
 * rollouts: kv_write (scatter k, v rows into their (slot, position)) and
 * attention_cached (each query attends to positions 0..pos[t] of its slot;
 * prefill and decode alike), and their bf16-cache twins kv_write_bf16 /
 * attention_cached_bf16. Both kernels are templates on the cache element
 * type C (float, or uint16_t bf16 bits): cache_store rounds to nearest even
 * (fp32_to_bf16, the rule of cast_bf16) and cache_load widens exactly, so the
 * bf16 op computes, in fp32, exactly what the fp32 op computes on the
 * bf16-rounded values.
 *
 * attention_cached: one block of 4 warps per (token, query head). Warps take
 * chunks of 32 positions in turn; in a chunk each lane scores one position
 * (its own key row against the query in shared memory), the warp keeps an
 * online softmax (max, sum) and accumulates P V with lanes owning head dims
 * lane, lane+32, ... (hd <= 128). The four warp states are merged at the end
 * in a fixed order. */
#include <math.h>

#include "cuda_internal.h"

/* cache element <-> fp32 */
static __device__ __forceinline__ float cache_load(const float *p) { return *p; }
static __device__ __forceinline__ float cache_load(const uint16_t *p) { return bf16_to_fp32(*p); }
static __device__ __forceinline__ void cache_store(float *p, float x) { *p = x; }
static __device__ __forceinline__ void cache_store(uint16_t *p, float x) { *p = fp32_to_bf16(x); }

/* kc, vc [S, max_seq, kvd] (C = float or bf16 bits); k, v [T, kvd] */
template <typename C>
static __global__ void kv_write_kernel(C *kc, C *vc, const float *k, const float *v, const int32_t *slot,
                                       const int32_t *pos, int T, int kvd, int max_seq) {
    size_t n = (size_t)T * kvd;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int t = (int)(i / kvd), d = (int)(i % kvd);
        size_t row = ((size_t)slot[t] * max_seq + pos[t]) * kvd;
        cache_store(kc + row + d, k[i]);
        cache_store(vc + row + d, v[i]);
    }
}

template <typename C>
static void kv_write_launch(backend *be, C *kc, C *vc, const float *k, const float *v, const int32_t *slot,
                            const int32_t *pos, int T, int kvd, int max_seq) {
    if (be->err[0] || T <= 0 || kvd <= 0) return;
    size_t n = (size_t)T * kvd;
    LAUNCH(kv_write_kernel<C>, cuda_grid(n, 256, 65535), 256, 0, CUDA_IMPL(be)->stream, kc, vc, k, v, slot, pos, T,
           kvd, max_seq);
    CU_LAUNCHED(be, "kv_write_kernel");
}

void cuda_kv_write(backend *be, float *kc, float *vc, const float *k, const float *v, const int32_t *slot,
                   const int32_t *pos, int T, int kvd, int max_seq) {
    kv_write_launch(be, kc, vc, k, v, slot, pos, T, kvd, max_seq);
}

void cuda_kv_write_bf16(backend *be, uint16_t *kc, uint16_t *vc, const float *k, const float *v, const int32_t *slot,
                        const int32_t *pos, int T, int kvd, int max_seq) {
    kv_write_launch(be, kc, vc, k, v, slot, pos, T, kvd, max_seq);
}

#define AC_WARPS 4
#define AC_DMAX 128

template <typename C>
static __global__ void __launch_bounds__(AC_WARPS * 32) attention_cached_kernel(
    float *out, const float *q, const C *kc, const C *vc, const int32_t *slot, const int32_t *pos, int Hq,
    int Hkv, int hd, int max_seq, float scale, int t0) {
    __shared__ float qs[AC_DMAX];
    __shared__ float wm[AC_WARPS], wl[AC_WARPS], wacc[AC_WARPS][AC_DMAX];
    const int t = t0 + blockIdx.y, h = blockIdx.x; /* the heads of a token are neighbours: KV reuse in L2 */
    const int kvd = Hkv * hd, kvh = h / (Hq / Hkv);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const float *qr = q + ((size_t)t * Hq + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = qr[d] * scale;
    __syncthreads();
    const size_t base = (size_t)slot[t] * max_seq * kvd + (size_t)kvh * hd;
    const C *K = kc + base, *V = vc + base;
    const int n = pos[t] + 1;

    float m = -INFINITY, l = 0.0f, acc[AC_DMAX / 32];
#pragma unroll
    for (int i = 0; i < AC_DMAX / 32; i++) acc[i] = 0.0f;
    for (int j0 = warp * 32; j0 < n; j0 += AC_WARPS * 32) {
        const int j = j0 + lane;
        float s = -INFINITY;
        if (j < n) {
            const C *kr = K + (size_t)j * kvd;
            float a = 0.0f;
            for (int d = 0; d < hd; d++) a += qs[d] * cache_load(kr + d);
            s = a;
        }
        const float mc = warp_max(s);
        const float mnew = fmaxf(m, mc); /* finite: position j0 < n is in the chunk */
        const float alpha = expf(m - mnew);
        const float p = expf(s - mnew);
        l = l * alpha + warp_sum(p);
        m = mnew;
#pragma unroll
        for (int i = 0; i < AC_DMAX / 32; i++) acc[i] *= alpha;
        const int cn = min(32, n - j0);
        for (int jj = 0; jj < cn; jj++) {
            const float pj = __shfl_sync(FULL_MASK, p, jj);
            const C *vr = V + (size_t)(j0 + jj) * kvd;
#pragma unroll
            for (int i = 0; i < AC_DMAX / 32; i++) {
                const int d = lane + 32 * i;
                if (d < hd) acc[i] += pj * cache_load(vr + d);
            }
        }
    }
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < AC_DMAX / 32; i++) wacc[warp][lane + 32 * i] = acc[i];
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < AC_WARPS; w++) M = fmaxf(M, wm[w]);
    float L = 0.0f;
    for (int w = 0; w < AC_WARPS; w++)
        if (wl[w] > 0.0f) L += wl[w] * expf(wm[w] - M);
    float *o = out + ((size_t)t * Hq + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float s = 0.0f;
        for (int w = 0; w < AC_WARPS; w++)
            if (wl[w] > 0.0f) s += wacc[w][d] * expf(wm[w] - M);
        o[d] = s / L;
    }
}

template <typename C>
static void attention_cached_launch(backend *be, float *out, const float *q, const C *kc, const C *vc,
                                    const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd,
                                    int max_seq, float scale) {
    if (be->err[0] || T <= 0) return;
    if (Hkv <= 0 || Hq <= 0 || Hq % Hkv) { CU_ERR(be, "attention_cached: Hq %d not a multiple of Hkv %d", Hq, Hkv); return; }
    if (hd <= 0 || hd > AC_DMAX) { CU_ERR(be, "attention_cached: head_dim %d not supported (1..%d)", hd, AC_DMAX); return; }
    if (Hq > 65535) { CU_ERR(be, "attention_cached: %d heads", Hq); return; }
    for (int t0 = 0; t0 < T; t0 += 65535) {
        dim3 grid(Hq, T - t0 < 65535 ? T - t0 : 65535);
        LAUNCH(attention_cached_kernel<C>, grid, AC_WARPS * 32, 0, CUDA_IMPL(be)->stream, out, q, kc, vc, slot, pos, Hq,
               Hkv, hd, max_seq, scale, t0);
        CU_LAUNCHED(be, "attention_cached_kernel");
    }
}

void cuda_attention_cached(backend *be, float *out, const float *q, const float *kc, const float *vc,
                           const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                           float scale) {
    attention_cached_launch(be, out, q, kc, vc, slot, pos, T, Hq, Hkv, hd, max_seq, scale);
}

void cuda_attention_cached_bf16(backend *be, float *out, const float *q, const uint16_t *kc, const uint16_t *vc,
                                const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                                float scale) {
    attention_cached_launch(be, out, q, kc, vc, slot, pos, T, Hq, Hkv, hd, max_seq, scale);
}
