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
 * - backward (probabilities recomputed from lse, D = rowsum(dO * O),
 *   dS = P * (dP - D)), item = (chunk of consecutive query blocks, kv head):
 *   per block S, dP, then dQ = scale dS K written directly, and
 *   dV += P^T dO, dK += scale dS^T Q summed in block order into the item's own
 *   partial buffer (keys 0..end of the chunk). A final pass adds the partial
 *   buffers of each key in chunk order. No atomics, no order that depends on
 *   scheduling; chunks are at most 8 per sequence, so the partial buffers stay
 *   within ~9x the size of k and v.
 *
 * bf16 (attention_forward_bf16 / attention_backward_bf16): the stacked bf16
 * rows q | k | v (and O, dO) are widened exactly into fp32 copies and run
 * through the same code with a flag: P and dS are rounded to bf16
 * (kernels/bf16.h) where the CUDA tensor-core kernels round them, and the
 * products run as fp32 sgemm on those values (bf16 x bf16 is exact in fp32,
 * so only the summation order differs from the device). The CUDA forward
 * rounds P = exp(s - m) with m the running row max over 64-key tiles (online
 * softmax), so the bf16 forward takes the row max tile by tile too
 * (ATT_KT) and scales each tile by exp(m_tile - m_row) after rounding; with
 * one tile per row (fp32) this is the exact softmax above. Softmax
 * statistics, lse and D = rowsum(dO * O) stay fp32; O is rounded at the end.
 */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

#ifndef ATT_BQ
#define ATT_BQ 64
#endif
#define ATT_KT 64 /* key tile of the CUDA bf16 forward's online softmax (cuda_attention.cu AT) */

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

/* Cuts every sequence into blocks of bs rows, sorted by cost (a query block
   costs its end, a key block the queries after it: causal_q = 0).
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
    float *S, *dP;     /* [BQ * G * maxlen] scores / probabilities, and dP / dS */
    float *Qs;         /* [BQ * G * hd] stacked queries of a forward tile */
    float *Os;         /* [BQ * G * hd] stacked output / dQ tile */
} att_scratch;

static size_t att_scratch_floats(int G, int hd, int maxlen) {
    return 2 * (size_t)ATT_BQ * G * maxlen + 2 * (size_t)ATT_BQ * G * hd;
}
static att_scratch att_scratch_at(float *base, int G, int hd, int maxlen) {
    att_scratch s;
    s.S = base;
    s.dP = s.S + (size_t)ATT_BQ * G * maxlen;
    s.Qs = s.dP + (size_t)ATT_BQ * G * maxlen;
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

/* bf16: P rounded, q, k, v already bf16 values (file comment) */
static void att_forward(backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                        const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale, int bf16) {
    if (Hkv <= 0 || Hq % Hkv) { CPU_ERR(be, "attention: Hq %d not a multiple of Hkv %d", Hq, Hkv); return; }
    att_block *bl;
    int maxlen;
    int nb = att_blocks(be, cu_seqlens, B, T, ATT_BQ, 1, &bl, &maxlen);
    if (nb <= 0) { if (nb == 0) free(bl); return; }
    int nt = be->n_threads, G = Hq / Hkv;
    const int ldq = Hq * hd, ldk = Hkv * hd;
    size_t per = att_scratch_floats(G, hd, maxlen);
    float *scratch = malloc((size_t)nt * per * sizeof(float));
    if (!scratch) {
        CPU_ERR(be, "attention: out of memory");
        free(bl);
        return;
    }
    cpu_blas_threads(1); /* single-threaded sgemm inside the OpenMP region */
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
                if (!bf16) { /* one loop (its vectorised sum is the fp32 op's, bit for bit) */
#pragma omp simd reduction(+ : sum)
                    for (int c = 0; c < valid; c++) {
                        float e = cpu_expf(s[c] - m);
                        s[c] = e;
                        sum += e;
                    }
                }
                /* bf16: key tiles [c0, c1), mt = running max up to c1, P = round(exp(s - mt)) exp(mt - m) */
                float mt = s[0];
                for (int c0 = 0; bf16 && c0 < valid; c0 += ATT_KT) {
                    int c1 = c0 + ATT_KT < valid ? c0 + ATT_KT : valid;
                    for (int c = c0; c < c1; c++) mt = s[c] > mt ? s[c] : mt;
                    float f = cpu_expf(mt - m);
#pragma omp simd reduction(+ : sum)
                    for (int c = c0; c < c1; c++) {
                        float e = cpu_expf(s[c] - mt);
                        sum += e * f;
                        s[c] = bf16_to_fp32(fp32_to_bf16(e)) * f;
                    }
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
    free(scratch);
    free(bl);
}

void cpu_attention_forward(backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale) {
    att_forward(be, out, lse, q, k, v, cu_seqlens, B, T, Hq, Hkv, hd, scale, 0);
}
/* the bf16 ops: the stacked bf16 rows q | k | v (and O, dO) widened into
   fp32 copies [T, qd], [T, kvd], [T, kvd] (, [T, qd] x 2) in one block,
   followed by room for the fp32 gradients dq, dk, dv ([T, qd + 2 kvd]) when
   do16 is given: the backend's scratch (NULL + be->err on OOM) */
static float *att_widen_all(backend *be, const uint16_t *qkv, const uint16_t *o16, const uint16_t *do16, int T,
                            int qd, int kvd) {
    size_t W = (size_t)qd + 2 * (size_t)kvd, n = (size_t)T * (W + 2 * (size_t)qd + (do16 ? W : 0));
    float *f = cpu_scratch(be, (n ? n : 1) * sizeof(float));
    if (!f) return NULL;
    float *q = f, *k = q + (size_t)T * qd, *v = k + (size_t)T * kvd, *o = v + (size_t)T * kvd, *dO = o + (size_t)T * qd;
    cpu_widen_bf16(q, qkv, T, qd, W, be->n_threads);
    cpu_widen_bf16(k, qkv + qd, T, kvd, W, be->n_threads);
    cpu_widen_bf16(v, qkv + qd + kvd, T, kvd, W, be->n_threads);
    if (o16) cpu_widen_bf16(o, o16, T, qd, (size_t)qd, be->n_threads);
    if (do16) cpu_widen_bf16(dO, do16, T, qd, (size_t)qd, be->n_threads);
    return f;
}

void cpu_attention_forward_bf16(backend *be, uint16_t *out16, float *lse, const uint16_t *qkv,
                                const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale) {
    int qd = Hq * hd, kvd = Hkv * hd;
    float *q = att_widen_all(be, qkv, NULL, NULL, T, qd, kvd);
    if (!q) return;
    float *k = q + (size_t)T * qd, *v = k + (size_t)T * kvd, *o = v + (size_t)T * kvd;
    att_forward(be, o, lse, q, k, v, cu_seqlens, B, T, Hq, Hkv, hd, scale, 1);
    if (!be->err[0]) cpu_cast_bf16(be, out16, o, (size_t)T * qd);
}

/* backward work item: query blocks [r0, r1) (rows of sequence s0..s0+L) for kv
   head g. Its dK, dV contributions to keys [0, kend) of the sequence are summed
   (query blocks in order) into buf + off: dK part [kend, hd], then dV part. */
typedef struct {
    int s0, L, r0, r1, kend, g;
    size_t off;
    long cost;
} att_bitem;

static int att_bitem_cmp(const void *a, const void *b) {
    const att_bitem *x = *(const att_bitem *const *)a, *y = *(const att_bitem *const *)b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    return x < y ? -1 : (x > y);
}

static void att_backward(backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                         const float *k, const float *v, const float *out, const float *lse,
                         const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale, int bf16) {
    if (Hkv <= 0 || Hq % Hkv) { CPU_ERR(be, "attention: Hq %d not a multiple of Hkv %d", Hq, Hkv); return; }
    att_block *blk;
    int maxlen;
    int nb = att_blocks(be, cu_seqlens, B, T, ATT_BQ, 1, &blk, &maxlen); /* validates cu_seqlens */
    if (nb <= 0) { if (nb == 0) free(blk); return; }
    free(blk);
    int nt = be->n_threads, G = Hq / Hkv;
    const int ldq = Hq * hd, ldk = Hkv * hd, Gd = G * hd;
    /* chunks of query blocks: at most 8 per sequence (bounds the partial-sum
       memory to ~9x the size of k and v), at least 4 blocks each */
    int n_items = 0;
    for (int b = 0; b < B; b++) {
        int L = cu_seqlens[b + 1] - cu_seqlens[b], nblk = (L + ATT_BQ - 1) / ATT_BQ;
        int cb = nblk / 8 + (nblk % 8 != 0);
        if (cb < 4) cb = 4;
        n_items += (nblk + cb - 1) / cb * Hkv;
    }
    att_bitem *items = malloc((size_t)(n_items ? n_items : 1) * sizeof *items);
    att_bitem **order = malloc((size_t)(n_items ? n_items : 1) * sizeof *order);
    int *gbase = malloc((size_t)B * Hkv * sizeof(int)), *gcount = malloc((size_t)B * sizeof(int));
    int32_t *tok_seq = malloc((size_t)T * sizeof(int32_t));
    if (!items || !order || !gbase || !gcount || !tok_seq) {
        CPU_ERR(be, "attention: out of memory");
        free(items); free(order); free(gbase); free(gcount); free(tok_seq);
        return;
    }
    size_t buf_floats = 0;
    int ni = 0;
    for (int b = 0; b < B; b++) {
        int s0 = cu_seqlens[b], L = cu_seqlens[b + 1] - s0, nblk = (L + ATT_BQ - 1) / ATT_BQ;
        int cb = nblk / 8 + (nblk % 8 != 0);
        if (cb < 4) cb = 4;
        int rows = cb * ATT_BQ;
        gcount[b] = (nblk + cb - 1) / cb;
        for (int t = s0; t < s0 + L; t++) tok_seq[t] = b;
        for (int g = 0; g < Hkv; g++) {
            gbase[b * Hkv + g] = ni;
            for (int r0 = 0; r0 < L; r0 += rows) {
                int r1 = r0 + rows < L ? r0 + rows : L;
                att_bitem *it = &items[ni];
                *it = (att_bitem){s0, L, r0, r1, r1, g, buf_floats,
                                  ((long)r1 * r1 - (long)r0 * r0) / 2 + (long)(r1 - r0) * hd};
                buf_floats += 2 * (size_t)r1 * hd;
                order[ni] = it;
                ni++;
            }
        }
    }
    qsort(order, (size_t)ni, sizeof *order, att_bitem_cmp);

    size_t per = att_scratch_floats(G, hd, maxlen);
    /* the backward reads q, dO, lse and D per kv head as stacked [Hkv, T, G*hd] / [Hkv, T, G] copies */
    size_t nqe = (size_t)T * Hq * hd;
    float *scratch = malloc(((size_t)nt * per + 2 * nqe + 2 * (size_t)T * Hq + buf_floats) * sizeof(float));
    if (!scratch) {
        CPU_ERR(be, "attention: out of memory");
        free(items); free(order); free(gbase); free(gcount); free(tok_seq);
        return;
    }
    float *Qst = scratch + (size_t)nt * per, *dOst = Qst + nqe; /* [Hkv, T, G*hd] */
    float *Lst = dOst + nqe, *Dst = Lst + (size_t)T * Hq;     /* [Hkv, T, G] */
    float *buf = Dst + (size_t)T * Hq;                          /* partial dK, dV of the items */
    cpu_blas_threads(1); /* single-threaded sgemm inside the OpenMP region */
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
#pragma omp for schedule(dynamic, 1)
        for (int ii = 0; ii < ni; ii++) {
            const att_bitem *it = order[ii];
            int g = it->g;
            float *bK = buf + it->off, *bV = bK + (size_t)it->kend * hd; /* [kend, hd] each */
            memset(bK, 0, 2 * (size_t)it->kend * hd * sizeof(float));
            const float *K = k + (size_t)it->s0 * ldk + (size_t)g * hd;
            const float *Vv = v + (size_t)it->s0 * ldk + (size_t)g * hd;
            for (int r0 = it->r0; r0 < it->r1; r0 += ATT_BQ) {
                int n = it->r1 - r0 < ATT_BQ ? it->r1 - r0 : ATT_BQ;
                int nq = n * G, nk = r0 + n; /* stacked query rows, keys */
                size_t row0 = (size_t)it->s0 + r0, sr = (size_t)g * T + row0;
                const float *Qg = Qst + sr * Gd, *dOg = dOst + sr * Gd, *Lg = Lst + sr * G, *Dg = Dst + sr * G;
                /* S[nq, nk] = scale Q K^T ; dP[nq, nk] = dO V^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, Qg, hd, K, ldk, 0.0f, w.S,
                            nk);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f, dOg, hd, Vv, ldk, 0.0f,
                            w.dP, nk);
                for (int r = 0; r < nq; r++) {
                    float *s = w.S + (size_t)r * nk, *dp = w.dP + (size_t)r * nk;
                    int valid = r0 + r / G + 1;
                    float l = Lg[r], Dr = Dg[r];
#pragma omp simd
                    for (int c = 0; c < valid; c++) {
                        float p = cpu_expf(s[c] - l), ds = p * (dp[c] - Dr);
                        s[c] = bf16 ? bf16_to_fp32(fp32_to_bf16(p)) : p;
                        dp[c] = bf16 ? bf16_to_fp32(fp32_to_bf16(ds)) : ds;
                    }
                    for (int c = valid; c < nk; c++) s[c] = dp[c] = 0.0f;
                }
                /* dQ[nq, hd] = scale dS K */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, scale, w.dP, nk, K, ldk, 0.0f,
                            w.Os, hd);
                att_scatter(dq + row0 * ldq + (size_t)g * G * hd, w.Os, n, G, hd, ldq);
                /* dV[nk, hd] += P^T dO ; dK[nk, hd] += scale dS^T Q */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, w.S, nk, dOg, hd, 1.0f, bV,
                            hd);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, scale, w.dP, nk, Qg, hd, 1.0f, bK,
                            hd);
            }
        }
        /* dK, dV of key t = the items' partial sums, in item (query) order */
#pragma omp for schedule(static)
        for (long rr = 0; rr < (long)T * Hkv; rr++) {
            int t = (int)(rr / Hkv), g = (int)(rr % Hkv), b = tok_seq[t];
            int r = t - cu_seqlens[b];
            float *ok = dk + (size_t)t * ldk + (size_t)g * hd, *ov = dv + (size_t)t * ldk + (size_t)g * hd;
            int first = 1;
            for (int c = 0; c < gcount[b]; c++) {
                const att_bitem *it = &items[gbase[b * Hkv + g] + c];
                if (r >= it->kend) continue;
                const float *pk = buf + it->off + (size_t)r * hd, *pv = pk + (size_t)it->kend * hd;
                if (first) {
                    memcpy(ok, pk, (size_t)hd * sizeof(float));
                    memcpy(ov, pv, (size_t)hd * sizeof(float));
                    first = 0;
                } else {
#pragma omp simd
                    for (int d = 0; d < hd; d++) {
                        ok[d] += pk[d];
                        ov[d] += pv[d];
                    }
                }
            }
        }
    }
    free(scratch);
    free(items); free(order); free(gbase); free(gcount); free(tok_seq);
}

void cpu_attention_backward(backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse,
                            const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale) {
    att_backward(be, dq, dk, dv, dout, q, k, v, out, lse, cu_seqlens, B, T, Hq, Hkv, hd, scale, 0);
}
/* the fp32 gradients dq, dk, dv into the block's room, then RoPE^T and one
   rounding into the stacked rows (cpu_rope_backward_bf16) */
void cpu_attention_backward_bf16(backend *be, uint16_t *dqkv16, const uint16_t *dout16, const uint16_t *qkv,
                                 const uint16_t *out16, const float *lse, const int32_t *pos, float theta,
                                 const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale) {
    int qd = Hq * hd, kvd = Hkv * hd;
    float *q = att_widen_all(be, qkv, out16, dout16, T, qd, kvd);
    if (!q) return;
    float *k = q + (size_t)T * qd, *v = k + (size_t)T * kvd, *o = v + (size_t)T * kvd, *dO = o + (size_t)T * qd;
    float *dq = dO + (size_t)T * qd, *dk = dq + (size_t)T * qd, *dv = dk + (size_t)T * kvd;
    att_backward(be, dq, dk, dv, dO, q, k, v, o, lse, cu_seqlens, B, T, Hq, Hkv, hd, scale, 1);
    if (!be->err[0]) cpu_rope_backward_bf16(be, dqkv16, dq, dk, dv, pos, T, Hq, Hkv, hd, theta);
}
