/* kernels/cpu/cpu_kvcache.c: the rollout engine's KV-cache ops: writing
 * keys/values into cache slots and attention of queries over a slot's cached
 * prefix (prefill and decode alike), with an fp32 or a bf16 cache (one kernel
 * body; bf16 rows are widened exactly on load). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

void cpu_kv_write(backend *be, float *kc, float *vc, const float *k, const float *v, const int32_t *slot,
                  const int32_t *pos, int T, int kvd, int max_seq) {
    (void)be;
    for (int t = 0; t < T; t++) {
        size_t row = ((size_t)slot[t] * max_seq + pos[t]) * kvd;
        memcpy(kc + row, k + (size_t)t * kvd, kvd * sizeof(float));
        memcpy(vc + row, v + (size_t)t * kvd, kvd * sizeof(float));
    }
}

void cpu_kv_write_bf16(backend *be, uint16_t *kc, uint16_t *vc, const float *k, const float *v, const int32_t *slot,
                       const int32_t *pos, int T, int kvd, int max_seq) {
    (void)be;
    for (int t = 0; t < T; t++) {
        size_t row = ((size_t)slot[t] * max_seq + pos[t]) * kvd;
        for (int e = 0; e < kvd; e++) {
            kc[row + e] = fp32_to_bf16(k[(size_t)t * kvd + e]);
            vc[row + e] = fp32_to_bf16(v[(size_t)t * kvd + e]);
        }
    }
}

/* Attention of the query heads of one kv group (G heads, hd = 16 * NV) of one
 * token over its n cached positions (hd a multiple of 16, at most 128), AVX-512: each K and V row is read once
 * for all G heads. Scores: per (head, position) a 16-lane dot product; the
 * products of 16 positions j0..j0+15 (j0 a multiple of 16) are reduced
 * together by kv_reduce16, whose tree for lane i is the same whatever the
 * other lanes hold (missing positions past n are zero rows). Exact softmax:
 * max-subtracted, exp by kv_exp16 (<= 2 ulp), sum in 16 lanes in position
 * order then one fixed tree; values accumulated in position order. The bits
 * of a head's output depend only on its query and the cache, never on T,
 * the batch around it or the thread count. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KV_HAVE_AVX512 1
#define KV_MAX_GROUP 8
#define KV_TARGET __attribute__((target("avx512f")))
/* K/V rows of 30 layers' caches come from memory: rows 16 ahead into L2
   (more misses in flight than into L1; measured 8-24 rows, L1 and L2) */
#define KV_AHEAD 16
#define KV_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)

/* [a | b] halves summed: lanes 0-7 = a's 8 + 8, lanes 8-15 = b's */
KV_TARGET static inline __m512 kv_fold256(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}

/* the 16 horizontal sums of d[0..15]: lane i = sum of d[i]'s lanes, by a
 * fixed tree (halves, quarters, pairs, neighbours) */
KV_TARGET static inline __m512 kv_reduce16(const __m512 d[16]) {
    __m512 a[8], b[4], c[2];
    /* a[i] = [d[2i] 8 | d[2i+1] 8] */
    for (int i = 0; i < 8; i++) a[i] = kv_fold256(d[2 * i], d[2 * i + 1]);
    /* b[i] = 128-bit lanes [d[4i] 4, d[4i+1] 4, d[4i+2] 4, d[4i+3] 4] */
    for (int i = 0; i < 4; i++)
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* c[i]: in each 128-bit lane k (d[8i + ...]) pairs: [x0+x2, x1+x3, y0+y2, y1+y3] of
       x = b[2i]'s lane k, y = b[2i+1]'s lane k */
    for (int i = 0; i < 2; i++)
        c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* e: in 128-bit lane k: [sum x(b0), sum x(b1), sum x(b2), sum x(b3)] of d[4j + k] */
    __m512 e = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* e lane 4k + j holds d[4j + k]'s sum: transpose the 4 x 4 index */
    __m512i idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return _mm512_permutexvar_ps(idx, e);
}

/* exp(x) in 16 lanes, <= 2 ulp against the exact value for x >= -87.3 (the
 * normal range); 0 below that, NaN stays NaN. x = k ln2 + r, |r| <= ln2 / 2,
 * exp(r) by a degree-6 polynomial (Horner, FMA), times 2^k. */
KV_TARGET static inline __m512 kv_exp16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.3762589f);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_min_ps(hi, _mm512_max_ps(lo, x)); /* NaN passes through (second operand) */
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x); /* ln2 hi: exact k * hi */
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);     /* ln2 lo */
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    p = _mm512_scalef_ps(p, k);
    return _mm512_maskz_mov_ps((__mmask16)~under, p);
}

/* 16 cache values of row r from element e: fp32, or bf16 widened (exact) */
KV_TARGET __attribute__((always_inline)) static inline __m512 kv_load16(const void *r, int e, int bf) {
    if (bf)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)r + e))), 16));
    return _mm512_loadu_ps((const float *)r + e);
}

/* K, V: the group's first cache row, fp32 (bf 0) or bf16 (bf 1) elements */
__attribute__((target("avx512f"), always_inline)) static inline void kv_group_attend(
    int NV, int G, int n, const float *q, const void *K, const void *V, int kvd, float scale, float *sc,
    float *out, int bf) {
    size_t es = bf ? 2 : 4; /* bytes per cache element */
    __m512 qv[KV_MAX_GROUP][8], acc[KV_MAX_GROUP][8];
    for (int h = 0; h < G; h++)
        for (int v = 0; v < NV; v++) qv[h][v] = _mm512_loadu_ps(q + (size_t)h * NV * 16 + v * 16);
    int np = (n + 15) & ~15; /* scores of head h: sc[h * np ..], padded to 16 */
    __m512 mx[KV_MAX_GROUP];
    for (int h = 0; h < G; h++) mx[h] = _mm512_set1_ps(-INFINITY);
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int j0 = 0; j0 < n; j0 += 16) {
        int m = n - j0 < 16 ? n - j0 : 16;
        __m512 d[KV_MAX_GROUP][16];
        for (int i = 0; i < 16; i++) {
            if (i >= m) { /* past n: zero products (lane masked out below) */
                for (int h = 0; h < G; h++) d[h][i] = _mm512_setzero_ps();
                continue;
            }
            const char *kr = (const char *)K + (size_t)(j0 + i) * kvd * es;
            for (int v = 0; v < NV; v++) KV_PREFETCH(kr + ((size_t)KV_AHEAD * kvd + v * 16) * es);
            __m512 kv[8];
            for (int v = 0; v < NV; v++) kv[v] = kv_load16(kr, v * 16, bf);
            for (int h = 0; h < G; h++) {
                __m512 s = _mm512_mul_ps(qv[h][0], kv[0]);
                for (int v = 1; v < NV; v++) s = _mm512_fmadd_ps(qv[h][v], kv[v], s);
                d[h][i] = s;
            }
        }
        __mmask16 valid = (__mmask16)(m == 16 ? 0xffff : (1u << m) - 1);
        for (int h = 0; h < G; h++) {
            __m512 s = _mm512_mul_ps(kv_reduce16(d[h]), vscale);
            s = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid, s);
            _mm512_storeu_ps(sc + (size_t)h * np + j0, s);
            mx[h] = _mm512_max_ps(s, mx[h]);
        }
    }
    float inv[KV_MAX_GROUP];
    for (int h = 0; h < G; h++) {
        float *sh = sc + (size_t)h * np;
        __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx[h])), sum = _mm512_setzero_ps();
        for (int j0 = 0; j0 < np; j0 += 16) {
            __m512 e = kv_exp16(_mm512_sub_ps(_mm512_loadu_ps(sh + j0), m)); /* -inf past n: 0 */
            _mm512_storeu_ps(sh + j0, e);
            sum = _mm512_add_ps(sum, e);
        }
        inv[h] = 1.0f / _mm512_reduce_add_ps(sum);
        for (int v = 0; v < NV; v++) acc[h][v] = _mm512_setzero_ps();
    }
    for (int j = 0; j < n; j++) {
        const char *vr = (const char *)V + (size_t)j * kvd * es;
        for (int v = 0; v < NV; v++) KV_PREFETCH(vr + ((size_t)KV_AHEAD * kvd + v * 16) * es);
        __m512 vv[8];
        for (int v = 0; v < NV; v++) vv[v] = kv_load16(vr, v * 16, bf);
        for (int h = 0; h < G; h++) {
            __m512 p = _mm512_set1_ps(sc[(size_t)h * np + j]);
            for (int v = 0; v < NV; v++) acc[h][v] = _mm512_fmadd_ps(p, vv[v], acc[h][v]);
        }
    }
    for (int h = 0; h < G; h++) {
        __m512 iv = _mm512_set1_ps(inv[h]);
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(out + (size_t)h * NV * 16 + v * 16, _mm512_mul_ps(acc[h][v], iv));
    }
}

/* constant NV and element type per call site, so the head vectors live in registers */
#define KV_CASE(nv)                                                                                       \
    case nv:                                                                                              \
        if (bf) kv_group_attend(nv, G, n, q, K, V, kvd, scale, sc, out, 1);                               \
        else kv_group_attend(nv, G, n, q, K, V, kvd, scale, sc, out, 0);                                  \
        break;
__attribute__((target("avx512f"))) static void kv_group_attend_any(int NV, int G, int n, const float *q, const void *K,
                                                                    const void *V, int kvd, float scale, float *sc,
                                                                    float *out, int bf) {
    switch (NV) {
        KV_CASE(1) KV_CASE(2) KV_CASE(3) KV_CASE(4) KV_CASE(5) KV_CASE(6) KV_CASE(7) KV_CASE(8)
    default: break;
    }
}
#undef KV_CASE

static int kv_avx512_ok(int hd, int group) {
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx512f") ? 1 : 0;
    }
    return ok && hd % 16 == 0 && hd <= 128 && group <= KV_MAX_GROUP; /* hd = 16 * NV, NV <= 8 */
}

KV_TARGET static void kv_exp_avx512(float *y, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, kv_exp16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, kv_exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}
#else
#define KV_HAVE_AVX512 0
#endif

/* One query row over n cached positions: scores in a per-thread buffer
 * (one dot product per position), exact softmax, then a weighted sum of the
 * value rows; the inner loops run over hd contiguous floats and vectorise. */
static void kv_head_attend(int hd, int n, const float *restrict qr, const float *K, const float *V, int kvd,
                           float scale, float *sc, float *restrict acc, float *restrict o) {
    float mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        const float *restrict kr = K + (size_t)j * kvd;
        float d = 0;
        for (int e = 0; e < hd; e++) d += qr[e] * kr[e];
        sc[j] = d * scale;
        mx = sc[j] > mx ? sc[j] : mx;
    }
    float sum = 0;
    for (int j = 0; j < n; j++) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    for (int e = 0; e < hd; e++) acc[e] = 0;
    for (int j = 0; j < n; j++) {
        const float *restrict vr = V + (size_t)j * kvd;
        float p = sc[j];
        for (int e = 0; e < hd; e++) acc[e] += p * vr[e];
    }
    float inv = 1.0f / sum;
    for (int e = 0; e < hd; e++) o[e] = acc[e] * inv;
}

/* exp of n floats by the kernel the softmax uses (kv_exp16 where the CPU has
 * AVX-512, expf otherwise); for tests */
void cpu_kv_exp(float *y, const float *x, size_t n) {
    size_t i = 0;
#if KV_HAVE_AVX512
    if (kv_avx512_ok(16, 1)) kv_exp_avx512(y, x, n), i = n;
#endif
    for (; i < n; i++) y[i] = expf(x[i]);
}

/* Work items are (token, kv group) pairs, or whole tokens (all groups, one
 * after another: their rows share cache lines and pages) when there are
 * enough tokens to share among the threads; a group's query heads share
 * every K/V row read. path 1: AVX-512 (where the CPU and shape allow), 0:
 * portable C. */
static void attention_cached_any(backend *be, float *out, const float *q, const void *kc, const void *vc,
                                 const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                                 float scale, int path, int bf) {
    size_t es = bf ? 2 : 4;
    int kvd = Hkv * hd, group = Hq / Hkv;
    int fast = 0;
#if KV_HAVE_AVX512
    fast = path > 0 && kv_avx512_ok(hd, group);
#else
    (void)path, (void)fast;
#endif
    /* a decode step's total work: about T * Hq * n * hd * 4 flops */
    long work = 0;
    for (int t = 0; t < T && work < 400000; t++) work += (long)(pos[t] + 1) * Hq * hd;
    int gper = T >= 4 * be->n_threads ? Hkv : 1; /* kv groups per work item */
#pragma omp parallel num_threads(be->n_threads) if (T * Hkv > 1 && work >= 400000)
    {
        float *sc = malloc((size_t)(max_seq + 15) * group * sizeof(float)); /* padded to 16 per head */
        float *acc = malloc((size_t)hd * sizeof(float));
        /* portable path over a bf16 cache: the group's rows widened to fp32
           ([max_seq, hd] keys, then values), then the fp32 code as is */
        float *wide = bf && !fast ? malloc((size_t)2 * max_seq * hd * sizeof(float)) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < T * (Hkv / gper); it++) {
            int t = it / (Hkv / gper), g0 = it % (Hkv / gper) * gper;
            for (int g = g0; g < g0 + gper; g++) {
                if (!sc || !acc) continue;
                const char *K = (const char *)kc + ((size_t)slot[t] * max_seq * kvd + (size_t)g * hd) * es;
                const char *V = (const char *)vc + ((size_t)slot[t] * max_seq * kvd + (size_t)g * hd) * es;
                const float *qg = q + ((size_t)t * Hq + (size_t)g * group) * hd;
                float *og = out + ((size_t)t * Hq + (size_t)g * group) * hd;
                int n = pos[t] + 1;
#if KV_HAVE_AVX512
                if (fast) {
                    kv_group_attend_any(hd / 16, group, n, qg, K, V, kvd, scale, sc, og, bf);
                    continue;
                }
#endif
                const float *Kf = (const float *)K, *Vf = (const float *)V;
                int ld = kvd;
                if (bf) {
                    if (!wide) continue;
                    for (int j = 0; j < n; j++)
                        for (int e = 0; e < hd; e++) {
                            wide[(size_t)j * hd + e] = bf16_to_fp32(((const uint16_t *)K)[(size_t)j * kvd + e]);
                            wide[((size_t)max_seq + j) * hd + e] = bf16_to_fp32(((const uint16_t *)V)[(size_t)j * kvd + e]);
                        }
                    Kf = wide, Vf = wide + (size_t)max_seq * hd, ld = hd;
                }
                for (int i = 0; i < group; i++)
                    kv_head_attend(hd, n, qg + (size_t)i * hd, Kf, Vf, ld, scale, sc, acc, og + (size_t)i * hd);
            }
        }
        if (!sc || !acc || (bf && !fast && !wide)) CPU_ERR(be, "out of memory in attention_cached");
        free(sc);
        free(acc);
        free(wide);
    }
}

void cpu_attention_cached_path(backend *be, float *out, const float *q, const float *kc, const float *vc,
                               const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                               float scale, int path) {
    attention_cached_any(be, out, q, kc, vc, slot, pos, T, Hq, Hkv, hd, max_seq, scale, path, 0);
}

void cpu_attention_cached_bf16_path(backend *be, float *out, const float *q, const uint16_t *kc, const uint16_t *vc,
                                    const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd,
                                    int max_seq, float scale, int path) {
    attention_cached_any(be, out, q, kc, vc, slot, pos, T, Hq, Hkv, hd, max_seq, scale, path, 1);
}

void cpu_attention_cached_bf16(backend *be, float *out, const float *q, const uint16_t *kc, const uint16_t *vc,
                               const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                               float scale) {
    attention_cached_any(be, out, q, kc, vc, slot, pos, T, Hq, Hkv, hd, max_seq, scale, 1, 1);
}

void cpu_attention_cached(backend *be, float *out, const float *q, const float *kc, const float *vc,
                          const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                          float scale) {
    cpu_attention_cached_path(be, out, q, kc, vc, slot, pos, T, Hq, Hkv, hd, max_seq, scale, 1);
}
