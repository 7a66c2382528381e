/* kernels/cpu/cpu_attention.c: causal grouped-query attention over a packed
 * batch of variable-length sequences, forward and backward, on the CPU.
 *
 * Tiled, no T x T matrix. Work items are independent tiles run by OpenMP
 * threads, each calling single-threaded cblas_sgemm on its tile, so results
 * are bitwise the same for any thread count.
 * - forward, item = (query block of ATT_BQ rows, query head): S = scale Q K^T
 *   over the keys 0..last query of the block ([BQ, n_k] scratch), exact
 *   softmax per row (two passes over the row in cache), O = P V, lse saved.
 * - backward (flash-attention-2 style, probabilities recomputed from lse,
 *   D = rowsum(dO * O), dS = P * (dP - D)):
 *   pass 1, item = (query block, query head): dQ = scale dS K;
 *   pass 2, item = (key block of ATT_BK rows, kv head): for each query head
 *   of the group, in order, dV += P^T dO and dK += scale dS^T Q over the
 *   queries at or after the block. dK and dV are owned by one item, so no
 *   atomics and no order that depends on scheduling. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

extern void openblas_set_num_threads(int);

#define ATT_BQ 64
#define ATT_BK 64

typedef struct {
    int s0, L; /* sequence start in the packed batch, length */
    int r0, n; /* block start (relative to s0) and rows */
    long cost; /* for largest-first scheduling */
} att_block;

static int att_block_cmp(const void *a, const void *b) {
    const att_block *x = a, *y = b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    return x->s0 != y->s0 ? (x->s0 < y->s0 ? -1 : 1) : (x->r0 < y->r0 ? -1 : 1);
}

/* Cuts every sequence into blocks of bs rows. causal_q: the cost of a query
   block grows with its end; otherwise (key blocks) with the queries after it.
   Returns the number of blocks (-1 + be->err on bad input), *maxlen. */
static int att_blocks(backend *be, const int32_t *cu, int B, int T, int bs, int causal_q, att_block **out,
                      int *maxlen) {
    if (cu[0] != 0 || cu[B] != T) {
        CPU_ERR(be, "attention: cu_seqlens[0] = %d, cu_seqlens[B] = %d, expected 0 and T = %d", cu[0], cu[B], T);
        return -1;
    }
    int nb = 0, ml = 0;
    for (int b = 0; b < B; b++) {
        int L = cu[b + 1] - cu[b];
        if (L < 0) { CPU_ERR(be, "attention: cu_seqlens not increasing at %d", b); return -1; }
        nb += (L + bs - 1) / bs;
        if (L > ml) ml = L;
    }
    att_block *bl = malloc((size_t)(nb ? nb : 1) * sizeof *bl);
    if (!bl) { CPU_ERR(be, "attention: out of memory"); return -1; }
    int i = 0;
    for (int b = 0; b < B; b++) {
        int L = cu[b + 1] - cu[b];
        for (int r0 = 0; r0 < L; r0 += bs) {
            int n = L - r0 < bs ? L - r0 : bs;
            bl[i] = (att_block){cu[b], L, r0, n, causal_q ? (long)(r0 + n) : (long)(L - r0)};
            i++;
        }
    }
    qsort(bl, (size_t)nb, sizeof *bl, att_block_cmp);
    *out = bl;
    *maxlen = ml;
    return nb;
}

void cpu_attention_forward(backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale) {
    if (Hkv <= 0 || Hq % Hkv) { CPU_ERR(be, "attention: Hq %d not a multiple of Hkv %d", Hq, Hkv); return; }
    att_block *bl;
    int maxlen;
    int nb = att_blocks(be, cu_seqlens, B, T, ATT_BQ, 1, &bl, &maxlen);
    if (nb <= 0) { if (nb == 0) free(bl); return; }
    int nt = be->n_threads, G = Hq / Hkv;
    const int ldq = Hq * hd, ldk = Hkv * hd;
    size_t per = (size_t)ATT_BQ * maxlen;
    float *scratch = malloc((size_t)nt * per * sizeof(float));
    if (!scratch) { CPU_ERR(be, "attention: out of memory"); free(bl); return; }
    openblas_set_num_threads(1);
#pragma omp parallel num_threads(nt)
    {
        float *S = scratch + (size_t)omp_get_thread_num() * per;
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < (long)nb * Hq; it++) {
            const att_block *b = &bl[it / Hq];
            int h = (int)(it % Hq), g = h / G;
            int nq = b->n, nk = b->r0 + b->n;
            size_t row0 = (size_t)b->s0 + b->r0;
            const float *Q = q + row0 * ldq + (size_t)h * hd;
            const float *K = k + (size_t)b->s0 * ldk + (size_t)g * hd;
            const float *Vv = v + (size_t)b->s0 * ldk + (size_t)g * hd;
            /* S[nq, nk] = scale Q[nq, hd] K[nk, hd]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, Q, ldq, K, ldk, 0.0f, S, nk);
            for (int r = 0; r < nq; r++) {
                float *s = S + (size_t)r * nk;
                int valid = b->r0 + r + 1;
                float m = s[0];
#pragma omp simd reduction(max : m)
                for (int c = 0; c < valid; c++) m = s[c] > m ? s[c] : m;
                float sum = 0;
#pragma omp simd reduction(+ : sum)
                for (int c = 0; c < valid; c++) {
                    float e = cpu_expf(s[c] - m);
                    s[c] = e;
                    sum += e;
                }
                float inv = 1.0f / sum;
#pragma omp simd
                for (int c = 0; c < valid; c++) s[c] *= inv;
                for (int c = valid; c < nk; c++) s[c] = 0.0f;
                lse[(row0 + r) * Hq + h] = m + logf(sum);
            }
            /* O[nq, hd] = P[nq, nk] V[nk, hd] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, S, nk, Vv, ldk, 0.0f,
                        out + row0 * ldq + (size_t)h * hd, ldq);
        }
    }
    openblas_set_num_threads(be->n_threads);
    free(scratch);
    free(bl);
}

void cpu_attention_backward(backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse,
                            const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale) {
    if (Hkv <= 0 || Hq % Hkv) { CPU_ERR(be, "attention: Hq %d not a multiple of Hkv %d", Hq, Hkv); return; }
    att_block *bq, *bk;
    int maxlen;
    int nbq = att_blocks(be, cu_seqlens, B, T, ATT_BQ, 1, &bq, &maxlen);
    if (nbq <= 0) { if (nbq == 0) free(bq); return; }
    int nbk = att_blocks(be, cu_seqlens, B, T, ATT_BK, 0, &bk, &maxlen);
    if (nbk <= 0) { free(bq); return; }
    int nt = be->n_threads, G = Hq / Hkv;
    const int ldq = Hq * hd, ldk = Hkv * hd;
    int bmax = ATT_BQ > ATT_BK ? ATT_BQ : ATT_BK;
    size_t per = (size_t)2 * bmax * maxlen + 2 * (size_t)maxlen;
    float *scratch = malloc(((size_t)nt * per + (size_t)T * Hq) * sizeof(float));
    if (!scratch) { CPU_ERR(be, "attention: out of memory"); free(bq); free(bk); return; }
    float *Dsum = scratch + (size_t)nt * per; /* [T, Hq] rowsum(dO * O) */
    openblas_set_num_threads(1);
#pragma omp parallel num_threads(nt)
    {
        float *S = scratch + (size_t)omp_get_thread_num() * per;
        float *dP = S + (size_t)bmax * maxlen;
        float *lse_h = dP + (size_t)bmax * maxlen, *D_h = lse_h + maxlen;
#pragma omp for schedule(static)
        for (long i = 0; i < (long)T * Hq; i++) {
            const float *o = out + i * hd, *g = dout + i * hd;
            float s = 0;
#pragma omp simd reduction(+ : s)
            for (int d = 0; d < hd; d++) s += o[d] * g[d];
            Dsum[i] = s;
        }
        /* pass 1: dQ */
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < (long)nbq * Hq; it++) {
            const att_block *b = &bq[it / Hq];
            int h = (int)(it % Hq), g = h / G;
            int nq = b->n, nk = b->r0 + b->n;
            size_t row0 = (size_t)b->s0 + b->r0;
            const float *Q = q + row0 * ldq + (size_t)h * hd, *dO = dout + row0 * ldq + (size_t)h * hd;
            const float *K = k + (size_t)b->s0 * ldk + (size_t)g * hd;
            const float *Vv = v + (size_t)b->s0 * ldk + (size_t)g * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, Q, ldq, K, ldk, 0.0f, S, nk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f, dO, ldq, Vv, ldk, 0.0f, dP, nk);
            for (int r = 0; r < nq; r++) {
                float *s = S + (size_t)r * nk;
                const float *dp = dP + (size_t)r * nk;
                int valid = b->r0 + r + 1;
                float l = lse[(row0 + r) * Hq + h], Dr = Dsum[(row0 + r) * Hq + h];
#pragma omp simd
                for (int c = 0; c < valid; c++) {
                    float p = cpu_expf(s[c] - l);
                    s[c] = p * (dp[c] - Dr);
                }
                for (int c = valid; c < nk; c++) s[c] = 0.0f;
            }
            /* dQ[nq, hd] = scale dS[nq, nk] K[nk, hd] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, scale, S, nk, K, ldk, 0.0f,
                        dq + row0 * ldq + (size_t)h * hd, ldq);
        }
        /* pass 2: dK, dV */
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < (long)nbk * Hkv; it++) {
            const att_block *b = &bk[it / Hkv];
            int g = (int)(it % Hkv);
            int nkb = b->n, nq = b->L - b->r0; /* keys r0..r0+nkb-1, queries r0..L-1 */
            size_t row0 = (size_t)b->s0 + b->r0;
            const float *Kb = k + row0 * ldk + (size_t)g * hd, *Vb = v + row0 * ldk + (size_t)g * hd;
            float *dKb = dk + row0 * ldk + (size_t)g * hd, *dVb = dv + row0 * ldk + (size_t)g * hd;
            for (int c = 0; c < nkb; c++) {
                memset(dKb + (size_t)c * ldk, 0, (size_t)hd * sizeof(float));
                memset(dVb + (size_t)c * ldk, 0, (size_t)hd * sizeof(float));
            }
            for (int h = g * G; h < (g + 1) * G; h++) {
                const float *Q = q + row0 * ldq + (size_t)h * hd, *dO = dout + row0 * ldq + (size_t)h * hd;
                for (int r = 0; r < nq; r++) {
                    lse_h[r] = lse[(row0 + r) * Hq + h];
                    D_h[r] = Dsum[(row0 + r) * Hq + h];
                }
                /* S^T[nkb, nq] = scale K_b Q^T ; dP^T[nkb, nq] = V_b dO^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nkb, nq, hd, scale, Kb, ldk, Q, ldq, 0.0f, S,
                            nq);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nkb, nq, hd, 1.0f, Vb, ldk, dO, ldq, 0.0f, dP,
                            nq);
                for (int c = 0; c < nkb; c++) {
                    float *s = S + (size_t)c * nq, *dp = dP + (size_t)c * nq;
                    for (int r = 0; r < c; r++) s[r] = dp[r] = 0.0f; /* query before key: masked */
#pragma omp simd
                    for (int r = c; r < nq; r++) {
                        float p = cpu_expf(s[r] - lse_h[r]);
                        s[r] = p;
                        dp[r] = p * (dp[r] - D_h[r]);
                    }
                }
                /* dV_b += P^T[nkb, nq] dO[nq, hd] ; dK_b += scale dS^T[nkb, nq] Q[nq, hd] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nkb, hd, nq, 1.0f, S, nq, dO, ldq, 1.0f, dVb,
                            ldk);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nkb, hd, nq, scale, dP, nq, Q, ldq, 1.0f,
                            dKb, ldk);
            }
        }
    }
    openblas_set_num_threads(be->n_threads);
    free(scratch);
    free(bq);
    free(bk);
}
