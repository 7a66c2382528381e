/* kernels/cuda/cuda_sample.cu: on-device token sampling for rollouts
 * (backend.h `sample`): greedy argmax + log-prob, or a draw from the
 * temperature softmax with the top-k / top-p / min-p filters, so the [n, V]
 * logits of a decode step never travel to the host. One block per row,
 * SAMPLE_THREADS threads (fewer for V < 512: the warps that cover V); every
 * reduction and scan runs in a fixed order (double for sums), no atomics, no
 * temporary: the result depends on the row, u and the settings only.
 *
 * The arithmetic follows trainer/sampler.c (the reference) step by step:
 * greedy: logp = -log(sum_i exp((double)z_i - z_best)); sampled:
 * p_i = expf((z_i - max) / T) (fp32), sum in double, prob_i = p_i * (float)(1
 * / sum) (fp32); with top-k / top-p the host sorts the ids with prob_i > 0
 * (prob desc, id asc), cuts a head (top-k, then top-p against the mass of
 * the top-k survivors, else of all), then drops the head's ids below min_p *
 * max prob (fp32: min-p last, Hugging Face's and vLLM's order); without them
 * it keeps the ids with prob_i > 0 and >= that floor in id order; mass = sum
 * of the kept prob (double), target = u * mass, pick = the first kept id
 * in that order whose running mass exceeds target (else the last kept id),
 * logp = log(prob_pick / mass). Only the
 * summation order differs (and expf may differ by an ulp), so a draw or a
 * top-p cut within ~1e-15 of a step of the running mass can land on the
 * neighbouring id.
 *
 * Id order (no top-k / top-p): thread t owns the contiguous ids [t*C,
 * (t+1)*C) (C = ceil(V / threads)) and sums its kept prob_i in id order
 * (S_t); a block exclusive scan gives P_t; the owner is the lowest t with 0
 * <= target - P_t < S_t, and it walks its ids again in the same order, so
 * the walk's running sum ends at exactly S_t and always finds the id.
 *
 * Sorted order, without sorting (sample_search): the k-th id, the top-p
 * cut and the draw are each "the first id in (prob desc, id asc) order at
 * which a running sum reaches a threshold"; a prob's fp32 bits order as the
 * prob, so the answer's prob is found by searching the bits (each pass over
 * the row sums the weights above 7 thresholds: 3 bits per pass, ~10 passes
 * for the whole range of probs), and its id among the ids of equal prob (the
 * host's ties: lower id first) by a counted walk in id order. Each cut
 * becomes the cutoff (prob bits, id) that defines the kept ids for the next
 * search: top-k, then top-p (both over every id with prob_i > 0), then the
 * min-p floor is set (a final cut of the kept head: a threshold on the prob,
 * so no search) and the draw searches what is left. ~40 passes over the row
 * with both filters, each recomputing prob_i from the logits. */
#include <limits.h>
#include <math.h>

#include "cuda_internal.h"

#define SAMPLE_THREADS 512 /* fewer (a multiple of 32 covering V) for small V */
#define SAMPLE_WARPS (SAMPLE_THREADS / 32)
#define N_WARPS ((int)blockDim.x / 32)
#define SAMPLE_SPLIT 8 /* thresholds per pass of the search (7 sums): 3 bits of a key per pass */

/* sum of v over the block, the same value in every thread (warps in order) */
static __device__ double sample_block_sum(double v, double *red) {
    v = warp_sum_d(v);
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    __syncthreads(); /* red may still be read by a previous reduction */
    if (l == 0) red[w] = v;
    __syncthreads();
    double s = 0.0;
    for (int i = 0; i < N_WARPS; i++) s += red[i];
    return s;
}

/* v[0..nv) <- their sums over the block, the same in every thread (warps in
   order); nv <= SAMPLE_SPLIT, red holds SAMPLE_SPLIT * SAMPLE_WARPS */
static __device__ __forceinline__ void sample_block_sums(double *v, int nv, double *red) {
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    for (int i = 0; i < nv; i++) v[i] = warp_sum_d(v[i]);
    __syncthreads(); /* red may still be read by a previous reduction */
    if (l == 0)
        for (int i = 0; i < nv; i++) red[i * SAMPLE_WARPS + w] = v[i];
    __syncthreads();
    for (int i = 0; i < nv; i++) {
        double s = 0.0;
        for (int k = 0; k < N_WARPS; k++) s += red[i * SAMPLE_WARPS + k];
        v[i] = s;
    }
}

/* better (value, id): larger value, then lower id; NaN never wins */
static __device__ __forceinline__ void sample_argmax_merge(float *v, int *id, float ov, int oid) {
    if (oid < 0) return;
    if (*id < 0 || ov > *v || (ov == *v && oid < *id)) {
        *v = ov;
        *id = oid;
    }
}

/* (max, lowest id attaining it) of z[V] over the block, same in every
   thread; id = -1 when every element is NaN */
static __device__ void sample_block_argmax(const float *z, int V, float *best_v, int *best_id, float *redv,
                                           int *redi) {
    float v = -INFINITY;
    int id = -1;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float x = z[j];
        if (x == x && (id < 0 || x > v)) v = x, id = j; /* strided ids rise: ties keep the lowest */
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(FULL_MASK, v, o);
        int oid = __shfl_xor_sync(FULL_MASK, id, o);
        sample_argmax_merge(&v, &id, ov, oid);
    }
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    __syncthreads();
    if (l == 0) redv[w] = v, redi[w] = id;
    __syncthreads();
    v = -INFINITY;
    id = -1;
    for (int i = 0; i < N_WARPS; i++) sample_argmax_merge(&v, &id, redv[i], redi[i]);
    *best_v = v;
    *best_id = id;
}

/* exclusive prefix sum of v over the threads of the block (in thread order)
   and the block total */
static __device__ double sample_block_exscan(double v, double *red, double *total) {
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    double inc = v;
    for (int d = 1; d < 32; d <<= 1) {
        double o = __shfl_up_sync(FULL_MASK, inc, d);
        if (l >= d) inc += o;
    }
    double ex = __shfl_up_sync(FULL_MASK, inc, 1);
    if (l == 0) ex = 0.0;
    __syncthreads();
    if (l == 31) red[w] = inc;
    __syncthreads();
    double base = 0.0, all = 0.0;
    for (int i = 0; i < N_WARPS; i++) {
        if (i == w) base = all;
        all += red[i];
    }
    *total = all;
    return base + ex;
}

/* (min of a, max of b) over the block, the same in every thread */
static __device__ void sample_block_min_max(int a, int b, int *amin, int *bmax, int *red) {
    for (int o = 16; o > 0; o >>= 1) {
        a = min(a, __shfl_xor_sync(FULL_MASK, a, o));
        b = max(b, __shfl_xor_sync(FULL_MASK, b, o));
    }
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    __syncthreads();
    if (l == 0) red[2 * w] = a, red[2 * w + 1] = b;
    __syncthreads();
    a = INT_MAX;
    b = -1;
    for (int i = 0; i < N_WARPS; i++) a = min(a, red[2 * i]), b = max(b, red[2 * i + 1]);
    *amin = a;
    *bmax = b;
}

/* one row of the sampled mode: prob_j = expf((z_j - mx) / T) * inv (fp32,
   the host's expression); the kept ids are those with prob > 0 and prob >=
   floor_p (min-p: 0 during the top-k / top-p searches, which precede it)
   that come no later than the cutoff (cv, cj) in the order (prob desc, id
   asc): bits(prob_j) > cv, or == cv and j <= cj. A prob's fp32 bits order as
   the prob does (positive floats). */
typedef struct sample_row {
    const float *z;
    float mx, T, inv, floor_p;
    unsigned cv; /* cutoff: prob bits of the last kept id in the order (0: none yet, all candidates kept) */
    int cj;      /* and its id */
} sample_row;

static __device__ __forceinline__ float sample_prob(const sample_row &r, int j) {
    return expf((r.z[j] - r.mx) / r.T) * r.inv;
}

/* id j's key: its prob's bits when kept (>= 1), else 0 */
static __device__ __forceinline__ unsigned sample_key(const sample_row &r, int j) {
    float p = sample_prob(r, j);
    unsigned b = __float_as_uint(p);
    return p > 0.0f && p >= r.floor_p && (b > r.cv || (b == r.cv && j <= r.cj)) ? b : 0u;
}

/* the weight of a kept key: 1 (counting ids) or its prob */
static __device__ __forceinline__ double sample_w(unsigned key, bool count) {
    return count ? 1.0 : (double)__uint_as_float(key);
}

/* The first kept id in the order (prob desc, id asc) at which the running
 * sum of w over that order reaches thr (sum >= thr; > thr when strict),
 * thr = frac * (sum of w over the kept ids) for probs, = frac for counts.
 * Returns 1 with the id's (bits, id) in (*v, *id) and the kept total in
 * *total; 0 when the total does not reach thr, unless last_if_none (then the
 * last kept id in the order). No sort: the bits v of that id are the largest
 * with W(>= v) reaching thr, W(>= v) = sum of w over kept ids with bits >= v
 * (block sums at SAMPLE_SPLIT - 1 thresholds per pass, narrowing [min, max]
 * kept bits SAMPLE_SPLIT-fold per pass); the id is the
 * m-th of level v in id order, m the least with W(> v) + m * w(v) reaching
 * thr (the level's ids weigh the same), found by chunk counts, a block scan
 * and one chunk walk. Every value is the same in every thread. */
static __device__ int sample_search(const sample_row &r, int V, bool count, bool strict, double frac,
                                    bool last_if_none, unsigned *v, int *id, double *total, double *red,
                                    int *redi, int *pick) {
    double s = 0.0;
    int kmin = INT_MAX, kmax = -1;
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        unsigned k = sample_key(r, j);
        if (k) s += sample_w(k, count), kmin = min(kmin, (int)k), kmax = max(kmax, (int)k);
    }
    s = sample_block_sum(s, red);
    sample_block_min_max(kmin, kmax, &kmin, &kmax, redi);
    *total = s;
    if (kmax < 0) return 0; /* nothing kept (NaN row) */
    const double thr = count ? frac : frac * s;
#define SAMPLE_REACH(x) (strict ? (x) > thr : (x) >= thr)
    bool last = !SAMPLE_REACH(s);
    if (last && !last_if_none) return 0;
    unsigned lo = (unsigned)kmin, hi = last ? lo : (unsigned)kmax;
    while (lo < hi) {
        /* invariant: W(>= lo) reaches thr, W(>= hi + 1) does not; split
           [lo, hi] at t_q = lo + ceil(q * width / SPLIT), q = 1..SPLIT-1 (a
           t_q past hi does not reach), keep [t_q, t_q+1 - 1] for the largest
           t_q that reaches */
        unsigned t[SAMPLE_SPLIT];
        double w[SAMPLE_SPLIT];
        const unsigned long long width = (unsigned long long)(hi - lo) + 1;
        for (int q = 0; q < SAMPLE_SPLIT; q++)
            t[q] = lo + (unsigned)((width * q + SAMPLE_SPLIT - 1) / SAMPLE_SPLIT), w[q] = 0.0;
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            unsigned k = sample_key(r, j);
            if (k > lo) {
                double x = sample_w(k, count);
#pragma unroll
                for (int q = 1; q < SAMPLE_SPLIT; q++)
                    if (k >= t[q]) w[q] += x;
            }
        }
        sample_block_sums(w + 1, SAMPLE_SPLIT - 1, red);
        /* W falls with t (sums of fewer non-negative terms, same order), so
           the t_q that reach are a prefix; constant indices keep t and w in
           registers */
        unsigned nlo = lo, nhi = hi;
        bool reached = true;
#pragma unroll
        for (int q = 1; q < SAMPLE_SPLIT; q++) {
            if (reached && SAMPLE_REACH(w[q])) nlo = t[q];
            else if (reached) reached = false, nhi = t[q] - 1;
        }
        lo = nlo, hi = nhi;
    }
    /* level lo: W(> lo) and its size, then m */
    double lv[2] = {0.0, 0.0}; /* W(> lo), level size */
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        unsigned k = sample_key(r, j);
        if (k > lo) lv[0] += sample_w(k, count);
        else if (k == lo) lv[1] += 1.0;
    }
    sample_block_sums(lv, 2, red);
    const double gt = lv[0], cnt = lv[1];
    const double wv = sample_w(lo, count);
    double m = cnt;
    if (!last) {
        double d = fmin((thr - gt) / wv, cnt);
        m = fmin(fmax(strict ? floor(d) + 1.0 : ceil(d), 1.0), cnt);
        while (m > 1.0 && SAMPLE_REACH(gt + (m - 1.0) * wv)) m -= 1.0;
        while (m < cnt && !SAMPLE_REACH(gt + m * wv)) m += 1.0;
    }
#undef SAMPLE_REACH
    /* the m-th id of level lo in id order: contiguous chunks per thread */
    const int C = (V + (int)blockDim.x - 1) / (int)blockDim.x;
    const int j0 = min(V, (int)threadIdx.x * C), j1 = min(V, j0 + C);
    double ct = 0.0, all;
    for (int j = j0; j < j1; j++) ct += sample_key(r, j) == lo ? 1.0 : 0.0;
    const double before = sample_block_exscan(ct, red, &all);
    if (before < m && m <= before + ct) {
        double c = before;
        for (int j = j0; j < j1; j++)
            if (sample_key(r, j) == lo && (c += 1.0) == m) {
                *pick = j;
                break;
            }
    }
    __syncthreads();
    *v = lo;
    *id = *pick;
    __syncthreads(); /* *pick may be written again by the next search */
    return 1;
}

/* ids[n], logp[n] <- rows of logits[n, V]; u[n] read when temperature > 0 */
static __global__ void __launch_bounds__(SAMPLE_THREADS) sample_kernel(int32_t *ids, float *logp,
                                                                       const float *logits, int V,
                                                                       float temperature, int top_k, float top_p,
                                                                       float min_p, const double *u) {
    __shared__ double red[SAMPLE_SPLIT * SAMPLE_WARPS];
    __shared__ float redv[SAMPLE_WARPS];
    __shared__ int redi[2 * SAMPLE_WARPS];
    __shared__ int pick;
    const int r = blockIdx.x;
    const float *z = logits + (size_t)r * V;
    float mx;
    int best;
    sample_block_argmax(z, V, &mx, &best, redv, redi);
    if (best < 0) { /* an all-NaN row: id 0, as the host's argmax */
        if (threadIdx.x == 0) ids[r] = 0, logp[r] = NAN;
        return;
    }
    if (!(temperature > 0.0f)) {
        double s = 0.0;
        for (int j = threadIdx.x; j < V; j += blockDim.x) s += exp((double)z[j] - (double)mx);
        s = sample_block_sum(s, red);
        if (threadIdx.x == 0) {
            ids[r] = best;
            logp[r] = (float)-log(s);
        }
        return;
    }
    sample_row row = {z, mx, temperature, 1.0f, 0.0f, 0u, INT_MAX};
    double s = 0.0;
    int pmax = 0; /* bits of the largest expf term */
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float p = sample_prob(row, j); /* inv = 1: the unscaled term */
        s += (double)p;
        pmax = max(pmax, (int)__float_as_uint(p));
    }
    s = sample_block_sum(s, red);
    int unused;
    sample_block_min_max(0, pmax, &unused, &pmax, redi);
    row.inv = (float)(1.0 / s);
    /* the min-p floor on the largest prob (the host's pmax: scaling by inv
       keeps the order) */
    const float floor_p = min_p > 0.0f ? min_p * (__uint_as_float((unsigned)pmax) * row.inv) : 0.0f;
    double mass;
    if ((top_k > 0 && top_k < V) || (top_p > 0.0f && top_p < 1.0f)) {
        /* the host sorts: top-k, then top-p, over every id with prob > 0,
           in the order (prob desc, id asc), each cut moving the cutoff; then
           min-p drops the kept ids below its floor, and the draw */
        unsigned cv;
        int cj;
        if (top_k > 0 && top_k < V &&
            sample_search(row, V, true, false, (double)top_k, false, &cv, &cj, &mass, red, redi, &pick))
            row.cv = cv, row.cj = cj;
        if (top_p > 0.0f && top_p < 1.0f &&
            sample_search(row, V, false, false, (double)top_p, false, &cv, &cj, &mass, red, redi, &pick))
            row.cv = cv, row.cj = cj;
        row.floor_p = floor_p;
        int id = best;
        sample_search(row, V, false, true, u[r], true, &cv, &id, &mass, red, redi, &pick);
        if (threadIdx.x == 0) pick = id; /* (best when nothing is kept: min_p > 1) */
    } else {
        /* id order (the host's order without a sort), over the min-p
           candidates: this thread's contiguous ids, summed in id order */
        row.floor_p = floor_p;
        const int C = (V + (int)blockDim.x - 1) / (int)blockDim.x;
        const int j0 = min(V, (int)threadIdx.x * C), j1 = min(V, j0 + C);
        double st = 0.0;
        int last_pos = -1;
        for (int j = j0; j < j1; j++) {
            unsigned k = sample_key(row, j);
            if (k) st += (double)__uint_as_float(k), last_pos = j;
        }
        const double pt = sample_block_exscan(st, red, &mass);
        const double target = u[r] * mass, rem = target - pt;
        /* owner: the lowest thread with 0 <= rem < S_t; with none (target
           rounded up to the mass), the last kept id */
        int owner, last;
        sample_block_min_max(rem >= 0.0 && rem < st ? (int)threadIdx.x : INT_MAX, last_pos, &owner, &last, redi);
        if (owner == INT_MAX) {
            if (threadIdx.x == 0) pick = last >= 0 ? last : best;
        } else if ((int)threadIdx.x == owner) {
            double cum = 0.0;
            int id = j1 - 1;
            for (int j = j0; j < j1; j++) {
                unsigned k = sample_key(row, j);
                if (k) {
                    cum += (double)__uint_as_float(k);
                    if (rem < cum) {
                        id = j;
                        break;
                    }
                }
            }
            pick = id;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        ids[r] = pick;
        logp[r] = (float)log((double)sample_prob(row, pick) / mass);
    }
}

void cuda_sample(backend *be, int32_t *ids, float *logp, const float *logits, int n, int V, float temperature,
                 int top_k, float top_p, float min_p, const double *u) {
    if (be->err[0] || n <= 0 || V <= 0) return;
    if (temperature > 0.0f && !u) {
        CU_ERR(be, "sample: temperature %g needs u", (double)temperature);
        return;
    }
    cuda_impl *im = CUDA_IMPL(be);
    int threads = V >= SAMPLE_THREADS ? SAMPLE_THREADS : (V + 31) / 32 * 32;
    LAUNCH(sample_kernel, n, threads, 0, im->stream, ids, logp, logits, V, temperature, top_k, top_p, min_p, u);
    CU_LAUNCHED(be, "sample_kernel");
}
