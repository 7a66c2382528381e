/* kernels/cpu/cpu_attention.c: causal grouped-query attention over a packed
 * batch of variable-length sequences, forward and backward, on the CPU.
 *
 * Tiled, no T x T matrix. Work items are independent tiles run by OpenMP
 * threads, each calling single-threaded cblas_sgemm on its tile, so results
 * are bitwise the same for any thread count. The G = Hq/Hkv query heads that
 * share a kv head are stacked into one tile (rows ordered token-major, head
 * minor: a memcpy of G*hd floats per token), so K and V are packed once per
 * tile for the whole group and the products are G times taller.
 * - forward, item = (query block of ATT_BQ tokens, kv head): S = scale Q K^T
 *   over the keys 0..last query of the block ([BQ*G, n_k] scratch), exact
 *   softmax per row (two passes over the row in cache), O = P V, lse saved.
 * - backward (flash-attention-2 style, probabilities recomputed from lse,
 *   D = rowsum(dO * O), dS = P * (dP - D)):
 *   pass 1, item = (query block, kv head): dQ = scale dS K;
 *   pass 2, item = (key block of ATT_BK tokens, kv head): dV = P^T dO and
 *   dK = scale dS^T Q over all queries at or after the block. dK and dV are
 *   owned by one item: no atomics, no order that depends on scheduling. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

extern void openblas_set_num_threads(int);

#ifndef ATT_BQ
#define ATT_BQ 64
#endif
#ifndef ATT_BK
#define ATT_BK 64
#endif

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

/* per-thread scratch of the attention ops (floats) */
typedef struct {
    float *S, *dP;     /* [max(BQ,BK) * G * maxlen] scores / probabilities, and dP / dS */
    float *Qs;         /* [BQ * G * hd] stacked queries of a forward tile */
    float *Os;         /* [BQ * G * hd] stacked output / dQ tile */
} att_scratch;

static size_t att_scratch_floats(int G, int hd, int maxlen) {
    int bm = ATT_BQ > ATT_BK ? ATT_BQ : ATT_BK;
    return 2 * (size_t)bm * G * maxlen + 2 * (size_t)ATT_BQ * G * hd;
}
static att_scratch att_scratch_at(float *base, int G, int hd, int maxlen) {
    int bm = ATT_BQ > ATT_BK ? ATT_BQ : ATT_BK;
    att_scratch s;
    s.S = base;
    s.dP = s.S + (size_t)bm * G * maxlen;
    s.Qs = s.dP + (size_t)bm * G * maxlen;
    s.Os = s.Qs + (size_t)ATT_BQ * G * hd;
    return s;
}

/* dst[n*G, hd] <- rows (t, j) = src[t, g*G + j, :] for t in [0, n) (src row stride ld) */
static void att_gather(float *dst, const float *src, int n, int G, int hd, int ld) {
    for (int t = 0; t < n; t++) memcpy(dst + (size_t)t * G * hd, src + (size_t)t * ld, (size_t)G * hd * sizeof(float));
}
static void att_scatter(float *dst, const float *src, int n, int G, int hd, int ld) {
    for (int t = 0; t < n; t++) memcpy(dst + (size_t)t * ld, src + (size_t)t * G * hd, (size_t)G * hd * sizeof(float));
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
    size_t per = att_scratch_floats(G, hd, maxlen);
    float *scratch = malloc((size_t)nt * per * sizeof(float));
    if (!scratch) { CPU_ERR(be, "attention: out of memory"); free(bl); return; }
    openblas_set_num_threads(1);
#pragma omp parallel num_threads(nt)
    {
        att_scratch w = att_scratch_at(scratch + (size_t)omp_get_thread_num() * per, G, hd, maxlen);
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < (long)nb * Hkv; it++) {
            const att_block *b = &bl[it / Hkv];
            int g = (int)(it % Hkv);
            int nq = b->n * G, nk = b->r0 + b->n; /* stacked rows, keys */
            size_t row0 = (size_t)b->s0 + b->r0;
            const float *K = k + (size_t)b->s0 * ldk + (size_t)g * hd;
            const float *Vv = v + (size_t)b->s0 * ldk + (size_t)g * hd;
            att_gather(w.Qs, q + row0 * ldq + (size_t)g * G * hd, b->n, G, hd, ldq);
            /* S[nq, nk] = scale Qs[nq, hd] K[nk, hd]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, w.Qs, hd, K, ldk, 0.0f, w.S,
                        nk);
            for (int r = 0; r < nq; r++) {
                float *s = w.S + (size_t)r * nk;
                int valid = b->r0 + r / G + 1;
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
                lse[(row0 + r / G) * Hq + (size_t)g * G + r % G] = m + logf(sum);
            }
            /* O[nq, hd] = P[nq, nk] V[nk, hd] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, w.S, nk, Vv, ldk, 0.0f, w.Os,
                        hd);
            att_scatter(out + row0 * ldq + (size_t)g * G * hd, w.Os, b->n, G, hd, ldq);
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
    size_t per = att_scratch_floats(G, hd, maxlen);
    /* the backward reads q, dO, lse and D per kv head as stacked [Hkv, T, G*hd] / [Hkv, T, G] copies */
    size_t nqe = (size_t)T * Hq * hd;
    float *scratch = malloc(((size_t)nt * per + 2 * nqe + 2 * (size_t)T * Hq) * sizeof(float));
    if (!scratch) { CPU_ERR(be, "attention: out of memory"); free(bq); free(bk); return; }
    float *Qst = scratch + (size_t)nt * per, *dOst = Qst + nqe; /* [Hkv, T, G*hd] */
    float *Lst = dOst + nqe, *Dst = Lst + (size_t)T * Hq;     /* [Hkv, T, G] */
    const int Gd = G * hd;
    openblas_set_num_threads(1);
#pragma omp parallel num_threads(nt)
    {
        att_scratch w = att_scratch_at(scratch + (size_t)omp_get_thread_num() * per, G, hd, maxlen);
#pragma omp for schedule(static)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hq; h++) {
                size_t i = (size_t)t * Hq + h, st = ((size_t)(h / G) * T + t) * G + h % G;
                const float *o = out + i * hd, *gr = dout + i * hd;
                float s = 0;
#pragma omp simd reduction(+ : s)
                for (int d = 0; d < hd; d++) s += o[d] * gr[d];
                Dst[st] = s;
                Lst[st] = lse[i];
                memcpy(Qst + st * hd, q + i * hd, (size_t)hd * sizeof(float));
                memcpy(dOst + st * hd, gr, (size_t)hd * sizeof(float));
            }
        /* pass 1: dQ */
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < (long)nbq * Hkv; it++) {
            const att_block *b = &bq[it / Hkv];
            int g = (int)(it % Hkv);
            int nq = b->n * G, nk = b->r0 + b->n;
            size_t row0 = (size_t)b->s0 + b->r0;
            const float *K = k + (size_t)b->s0 * ldk + (size_t)g * hd;
            const float *Vv = v + (size_t)b->s0 * ldk + (size_t)g * hd;
            size_t sr = (size_t)g * T + row0; /* stacked row (token) index */
            const float *Qg = Qst + sr * Gd, *dOg = dOst + sr * Gd, *Lg = Lst + sr * G, *Dg = Dst + sr * G;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, Qg, hd, K, ldk, 0.0f, w.S, nk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f, dOg, hd, Vv, ldk, 0.0f, w.dP, nk);
            for (int r = 0; r < nq; r++) {
                float *s = w.S + (size_t)r * nk;
                const float *dp = w.dP + (size_t)r * nk;
                int valid = b->r0 + r / G + 1;
                float l = Lg[r], Dr = Dg[r];
#pragma omp simd
                for (int c = 0; c < valid; c++) {
                    float p = cpu_expf(s[c] - l);
                    s[c] = p * (dp[c] - Dr);
                }
                for (int c = valid; c < nk; c++) s[c] = 0.0f;
            }
            /* dQ[nq, hd] = scale dS[nq, nk] K[nk, hd] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, scale, w.S, nk, K, ldk, 0.0f, w.Os,
                        hd);
            att_scatter(dq + row0 * ldq + (size_t)g * G * hd, w.Os, b->n, G, hd, ldq);
        }
        /* pass 2: dK, dV */
#pragma omp for schedule(dynamic, 1)
        for (long it = 0; it < (long)nbk * Hkv; it++) {
            const att_block *b = &bk[it / Hkv];
            int g = (int)(it % Hkv);
            int nkb = b->n, nqt = b->L - b->r0, nq = nqt * G; /* keys r0..r0+nkb-1; queries r0..L-1, stacked */
            size_t row0 = (size_t)b->s0 + b->r0;
            const float *Kb = k + row0 * ldk + (size_t)g * hd, *Vb = v + row0 * ldk + (size_t)g * hd;
            size_t sr = (size_t)g * T + row0;
            const float *Qg = Qst + sr * Gd, *dOg = dOst + sr * Gd, *Lg = Lst + sr * G, *Dg = Dst + sr * G;
            /* S^T[nkb, nq] = scale K_b Q^T ; dP^T[nkb, nq] = V_b dO^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nkb, nq, hd, scale, Kb, ldk, Qg, hd, 0.0f, w.S, nq);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nkb, nq, hd, 1.0f, Vb, ldk, dOg, hd, 0.0f, w.dP, nq);
            for (int c = 0; c < nkb; c++) {
                float *s = w.S + (size_t)c * nq, *dp = w.dP + (size_t)c * nq;
                int first = c * G; /* stacked columns of queries before key c are masked */
                for (int r = 0; r < first; r++) s[r] = dp[r] = 0.0f;
#pragma omp simd
                for (int r = first; r < nq; r++) {
                    float p = cpu_expf(s[r] - Lg[r]);
                    s[r] = p;
                    dp[r] = p * (dp[r] - Dg[r]);
                }
            }
            /* dV_b = P^T[nkb, nq] dO[nq, hd] ; dK_b = scale dS^T[nkb, nq] Q[nq, hd] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nkb, hd, nq, 1.0f, w.S, nq, dOg, hd, 0.0f,
                        dv + row0 * ldk + (size_t)g * hd, ldk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nkb, hd, nq, scale, w.dP, nq, Qg, hd, 0.0f,
                        dk + row0 * ldk + (size_t)g * hd, ldk);
        }
    }
    openblas_set_num_threads(be->n_threads);
    free(scratch);
    free(bq);
    free(bk);
}
