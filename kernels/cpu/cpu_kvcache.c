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

/* One query row over n cached positions: scores in a per-thread buffer
 * (one dot product per position), exact softmax, then a weighted sum of the
 * value rows; the inner loops run over hd contiguous floats and vectorise. */
void cpu_attention_cached(backend *be, float *out, const float *q, const float *kc, const float *vc,
                          const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                          float scale) {
    int kvd = Hkv * hd, group = Hq / Hkv;
#pragma omp parallel num_threads(be->n_threads) if ((long)T * Hq > 1)
    {
        float *sc = malloc((size_t)max_seq * sizeof(float));
        float *acc = malloc((size_t)hd * sizeof(float));
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < Hq; h++) {
                if (!sc || !acc) continue;
                const float *restrict qr = q + ((size_t)t * Hq + h) * hd;
                const float *K = kc + (size_t)slot[t] * max_seq * kvd + (size_t)(h / group) * hd;
                const float *V = vc + (size_t)slot[t] * max_seq * kvd + (size_t)(h / group) * hd;
                float *restrict o = out + ((size_t)t * Hq + h) * hd;
                int n = pos[t] + 1;
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
        }
        if (!sc || !acc) CPU_ERR(be, "out of memory in attention_cached");
        free(sc);
        free(acc);
    }
}
