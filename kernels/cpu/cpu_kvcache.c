/* kernels/cpu/cpu_kvcache.c: the rollout engine's KV-cache ops: writing
 * keys/values into cache slots and attention of queries over a slot's cached
 * prefix (prefill and decode alike). */
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

/* Attention of the query heads of one kv group (G heads, hd = 16 * NV) of one
 * token over its n cached positions (hd a multiple of 16, at most 128), AVX-512: each K and V row is read once
 * for all G heads. Scores: one 16-lane dot product per (head, position),
 * reduced by a fixed tree; exact softmax; values accumulated in position
 * order. The bits of a head's output depend only on its query and the cache,
 * never on T, the batch around it or the thread count. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KV_HAVE_AVX512 1
#define KV_MAX_GROUP 8

__attribute__((target("avx512f"), always_inline)) static inline void kv_group_attend(
    int NV, int G, int n, const float *q, const float *K, const float *V, int kvd, float scale, float *sc,
    float *out) {
    __m512 qv[KV_MAX_GROUP][8], acc[KV_MAX_GROUP][8];
    for (int h = 0; h < G; h++)
        for (int v = 0; v < NV; v++) qv[h][v] = _mm512_loadu_ps(q + (size_t)h * NV * 16 + v * 16);
    float mx[KV_MAX_GROUP];
    for (int h = 0; h < G; h++) mx[h] = -INFINITY;
    for (int j = 0; j < n; j++) {
        const float *kr = K + (size_t)j * kvd;
        __m512 kv[8];
        for (int v = 0; v < NV; v++) kv[v] = _mm512_loadu_ps(kr + v * 16);
        for (int h = 0; h < G; h++) {
            __m512 d = _mm512_mul_ps(qv[h][0], kv[0]);
            for (int v = 1; v < NV; v++) d = _mm512_fmadd_ps(qv[h][v], kv[v], d);
            float s = _mm512_reduce_add_ps(d) * scale;
            sc[(size_t)h * n + j] = s;
            mx[h] = s > mx[h] ? s : mx[h];
        }
    }
    float inv[KV_MAX_GROUP];
    for (int h = 0; h < G; h++) {
        float *sh = sc + (size_t)h * n, sum = 0;
        for (int j = 0; j < n; j++) {
            sh[j] = expf(sh[j] - mx[h]);
            sum += sh[j];
        }
        inv[h] = 1.0f / sum;
        for (int v = 0; v < NV; v++) acc[h][v] = _mm512_setzero_ps();
    }
    for (int j = 0; j < n; j++) {
        const float *vr = V + (size_t)j * kvd;
        __m512 vv[8];
        for (int v = 0; v < NV; v++) vv[v] = _mm512_loadu_ps(vr + v * 16);
        for (int h = 0; h < G; h++) {
            __m512 p = _mm512_set1_ps(sc[(size_t)h * n + j]);
            for (int v = 0; v < NV; v++) acc[h][v] = _mm512_fmadd_ps(p, vv[v], acc[h][v]);
        }
    }
    for (int h = 0; h < G; h++) {
        __m512 iv = _mm512_set1_ps(inv[h]);
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(out + (size_t)h * NV * 16 + v * 16, _mm512_mul_ps(acc[h][v], iv));
    }
}

/* constant NV per call site, so the head vectors live in registers */
__attribute__((target("avx512f"))) static void kv_group_attend_any(int NV, int G, int n, const float *q, const float *K,
                                                                    const float *V, int kvd, float scale, float *sc,
                                                                    float *out) {
    switch (NV) {
    case 1: kv_group_attend(1, G, n, q, K, V, kvd, scale, sc, out); break;
    case 2: kv_group_attend(2, G, n, q, K, V, kvd, scale, sc, out); break;
    case 3: kv_group_attend(3, G, n, q, K, V, kvd, scale, sc, out); break;
    case 4: kv_group_attend(4, G, n, q, K, V, kvd, scale, sc, out); break;
    case 5: kv_group_attend(5, G, n, q, K, V, kvd, scale, sc, out); break;
    case 6: kv_group_attend(6, G, n, q, K, V, kvd, scale, sc, out); break;
    case 7: kv_group_attend(7, G, n, q, K, V, kvd, scale, sc, out); break;
    case 8: kv_group_attend(8, G, n, q, K, V, kvd, scale, sc, out); break;
    default: break;
    }
}

static int kv_avx512_ok(int hd, int group) {
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx512f") ? 1 : 0;
    }
    return ok && hd % 16 == 0 && hd <= 128 && group <= KV_MAX_GROUP; /* hd = 16 * NV, NV <= 8 */
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

/* Work items are (token, kv group) pairs: the group's query heads share
 * every K/V row read. */
void cpu_attention_cached(backend *be, float *out, const float *q, const float *kc, const float *vc,
                          const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                          float scale) {
    int kvd = Hkv * hd, group = Hq / Hkv;
    int fast = 0;
#if KV_HAVE_AVX512
    fast = kv_avx512_ok(hd, group);
#endif
    /* a decode step's total work: about T * Hq * n * hd * 4 flops */
    long work = 0;
    for (int t = 0; t < T && work < 400000; t++) work += (long)(pos[t] + 1) * Hq * hd;
#pragma omp parallel num_threads(be->n_threads) if (T * Hkv > 1 && work >= 400000)
    {
        float *sc = malloc((size_t)max_seq * group * sizeof(float));
        float *acc = malloc((size_t)hd * sizeof(float));
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int t = 0; t < T; t++) {
            for (int g = 0; g < Hkv; g++) {
                if (!sc || !acc) continue;
                const float *K = kc + (size_t)slot[t] * max_seq * kvd + (size_t)g * hd;
                const float *V = vc + (size_t)slot[t] * max_seq * kvd + (size_t)g * hd;
                const float *qg = q + ((size_t)t * Hq + (size_t)g * group) * hd;
                float *og = out + ((size_t)t * Hq + (size_t)g * group) * hd;
                int n = pos[t] + 1;
#if KV_HAVE_AVX512
                if (fast) {
                    kv_group_attend_any(hd / 16, group, n, qg, K, V, kvd, scale, sc, og);
                    continue;
                }
#endif
                for (int i = 0; i < group; i++)
                    kv_head_attend(hd, n, qg + (size_t)i * hd, K, V, kvd, scale, sc, acc, og + (size_t)i * hd);
            }
        }
        if (!sc || !acc) CPU_ERR(be, "out of memory in attention_cached");
        free(sc);
        free(acc);
    }
}
