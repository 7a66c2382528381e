/* kernels/cpu/cpu_kvcache.c: the rollout engine's KV-cache ops: writing
 * keys/values into cache slots and attention of queries over a slot's cached
 * prefix (prefill and decode alike). */
#include <math.h>
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

/* One query row over n cached positions: two passes (max, then exp-sum and
 * weighted values), scores held in a stack buffer chunk by chunk. */
void cpu_attention_cached(backend *be, float *out, const float *q, const float *kc, const float *vc,
                          const int32_t *slot, const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq,
                          float scale) {
    (void)be;
    int kvd = Hkv * hd, group = Hq / Hkv;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(be->n_threads) if ((long)T * Hq > 1)
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < Hq; h++) {
            const float *qr = q + ((size_t)t * Hq + h) * hd;
            const float *K = kc + (size_t)slot[t] * max_seq * kvd + (size_t)(h / group) * hd;
            const float *V = vc + (size_t)slot[t] * max_seq * kvd + (size_t)(h / group) * hd;
            float *o = out + ((size_t)t * Hq + h) * hd;
            int n = pos[t] + 1;
            float mx = -INFINITY;
            for (int j = 0; j < n; j++) {
                const float *kr = K + (size_t)j * kvd;
                float s = 0;
                for (int d = 0; d < hd; d++) s += qr[d] * kr[d];
                s *= scale;
                if (s > mx) mx = s;
            }
            float acc[1024];
            for (int d = 0; d < hd; d++) acc[d] = 0;
            float sum = 0;
            for (int j = 0; j < n; j++) {
                const float *kr = K + (size_t)j * kvd, *vr = V + (size_t)j * kvd;
                float s = 0;
                for (int d = 0; d < hd; d++) s += qr[d] * kr[d];
                float p = expf(s * scale - mx);
                sum += p;
                for (int d = 0; d < hd; d++) acc[d] += p * vr[d];
            }
            float inv = 1.0f / sum;
            for (int d = 0; d < hd; d++) o[d] = acc[d] * inv;
        }
    }
}
