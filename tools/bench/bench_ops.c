/* tools/bench/bench_ops.c: per-op timing of the CPU backend at the
 * SmolLM2-135M shapes (d 576, 9 heads, 3 kv heads, head_dim 64, d_ff 1536,
 * vocab 49152) on a packed batch of 2048 tokens: one sequence of 2048, or
 * 8 of 256. Prints milliseconds per call and GFLOP/s where the op has
 * a flop count (best of reps). Usage: bench_ops [threads] [reps] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cpu/cpu_setup.h"
#include "util.h"

extern char *openblas_get_corename(void);

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* best-of-reps wall time, and process CPU time of that run divided by the
   thread count (on a loaded machine the CPU time is the steadier number) */
#define TIME(label, flops, stmt)                                                                             \
    do {                                                                                                     \
        double best_ = 1e30, cpu_ = 0;                                                                       \
        stmt; /* warm-up */                                                                                  \
        for (int r_ = 0; r_ < reps; r_++) {                                                                  \
            double c0_ = cpu_seconds(), t0_ = now_seconds();                                                 \
            stmt;                                                                                            \
            double t_ = now_seconds() - t0_, c_ = cpu_seconds() - c0_;                                      \
            if (t_ < best_) best_ = t_, cpu_ = c_ / be->n_threads;                                           \
        }                                                                                                    \
        if ((flops) > 0)                                                                                     \
            printf("%-44s %9.2f ms wall %9.2f ms cpu/thread %7.1f GFLOP/s wall %7.1f GFLOP/s cpu\n", label,      \
                   best_ * 1e3, cpu_ * 1e3, (double)(flops) / best_ * 1e-9, (double)(flops) / cpu_ * 1e-9);     \
        else                                                                                                 \
            printf("%-44s %9.2f ms wall %9.2f ms cpu/thread\n", label, best_ * 1e3, cpu_ * 1e3);            \
    } while (0)

static float *rnd(backend *be, size_t n, double sd, uint64_t key) {
    float *x = be->alloc(be, n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * rng_normal(key, i));
    return x;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0, reps = argc > 2 ? atoi(argv[2]) : 5;
    if (reps < 1 || reps > 64) reps = 5;
    backend *be = backend_cpu_create(threads);
    const char *note = cpu_openblas_note();
    printf("threads %d, OpenBLAS core %s%s%s\n", be->n_threads, openblas_get_corename(), note ? "; " : "",
           note ? note : "");
    const int T = 2048, D = 576, Hq = 9, Hkv = 3, hd = 64, F = 1536, V = 49152;
    float *x = rnd(be, (size_t)T * D, 1, 1), *w = rnd(be, D, 1, 2), *y = rnd(be, (size_t)T * D, 1, 3);
    float *rstd = be->alloc(be, T * 4), *dw = be->alloc(be, D * 4), *dx = be->alloc(be, (size_t)T * D * 4);
    float *W = rnd(be, (size_t)F * D, 0.05, 4), *H = rnd(be, (size_t)T * F, 1, 5);
    float *G = rnd(be, (size_t)T * F, 1, 6), *U = rnd(be, (size_t)T * F, 1, 7), *dG = be->alloc(be, (size_t)T * F * 4);
    float *dU = be->alloc(be, (size_t)T * F * 4);

    /* matmuls of one MLP projection: x[T,D] W[F,D]^T, and its two backward products */
    double fl = 2.0 * T * D * F;
    TIME("matmul fwd  [2048,576]x[1536,576]^T", fl,
         be->matmul(be, 0, 1, T, F, D, 1, x, D, 0, W, D, 0, 0, H, F, 0, 1));
    TIME("matmul dX   [2048,1536]x[1536,576]", fl,
         be->matmul(be, 0, 0, T, D, F, 1, H, F, 0, W, D, 0, 0, dx, D, 0, 1));
    TIME("matmul dW   [2048,1536]^Tx[2048,576] +=", fl,
         be->matmul(be, 1, 0, F, D, T, 1, H, F, 0, x, D, 0, 1, W, D, 0, 1));

    /* decode-shaped linear: M rows (live sequences) against one MLP weight,
       fp32 weights next to bf16 weights (sampling.dtype: bf16) */
    uint16_t *Wh = be->alloc(be, (size_t)F * D * 2);
    TIME("cast_bf16 [1536,576]", 0, be->cast_bf16(be, Wh, W, (size_t)F * D));
    int Ms[] = {1, 16, 64, 2048};
    for (int mi = 0; mi < 4; mi++) {
        char lab[96];
        int M = Ms[mi];
        snprintf(lab, sizeof lab, "linear fp32 [%d,576]x[1536,576]^T", M);
        TIME(lab, 2.0 * M * D * F, be->matmul(be, 0, 1, M, F, D, 1, x, D, 0, W, D, 0, 0, H, F, 0, 1));
        snprintf(lab, sizeof lab, "linear bf16 [%d,576]x[1536,576]^T", M);
        TIME(lab, 2.0 * M * D * F, be->matmul_bf16(be, M, F, D, x, Wh, 0, H));
    }
    be->free(be, Wh);
    /* memory-bound: one row against the LM head [49152, 576] (113 MB fp32,
       57 MB bf16: more than the last-level cache), GB/s of weights read */
    {
        float *L = rnd(be, (size_t)V * D, 0.05, 40), *lo = be->alloc(be, (size_t)V * 16 * 4);
        uint16_t *Lh = be->alloc(be, (size_t)V * D * 2);
        be->cast_bf16(be, Lh, L, (size_t)V * D);
        for (int M = 1; M <= 16; M *= 16) {
            char lab[96];
            double t0 = now_seconds();
            for (int r = 0; r < 10; r++) be->matmul(be, 0, 1, M, V, D, 1, x, D, 0, L, D, 0, 0, lo, V, 0, 1);
            double t1 = now_seconds();
            for (int r = 0; r < 10; r++) be->matmul_bf16(be, M, V, D, x, Lh, 0, lo);
            double t2 = now_seconds();
            snprintf(lab, sizeof lab, "lm head [%d,576]x[49152,576]^T", M);
            printf("%-44s fp32 %6.2f ms (%5.1f GB/s)   bf16 %6.2f ms (%5.1f GB/s)\n", lab, (t1 - t0) * 100,
                   V * D * 4.0 * 10 / (t1 - t0) * 1e-9, (t2 - t1) * 100, V * D * 2.0 * 10 / (t2 - t1) * 1e-9);
        }
        be->free(be, L), be->free(be, lo), be->free(be, Lh);
    }

    TIME("rmsnorm fwd [2048,576]", 0, be->rmsnorm_forward(be, y, NULL, rstd, NULL, x, w, T, D, 1e-5f));
    TIME("rmsnorm bwd [2048,576]", 0, be->rmsnorm_backward(be, dx, NULL, dw, y, NULL, x, w, rstd, T, D, 0.0f));
    TIME("swiglu fwd  [2048,1536]", 0, be->swiglu_forward(be, H, G, U, (size_t)T * F));
    TIME("swiglu bwd  [2048,1536]", 0, be->swiglu_backward(be, dG, dU, H, G, U, (size_t)T * F));
    int32_t *pos = be->alloc(be, T * 4), *ids = be->alloc(be, T * 4);
    for (int t = 0; t < T; t++) pos[t] = t, ids[t] = (int32_t)(rng_u64(9, t) % V);
    float *q = rnd(be, (size_t)T * Hq * hd, 1, 10), *k = rnd(be, (size_t)T * Hkv * hd, 1, 11);
    float *v = rnd(be, (size_t)T * Hkv * hd, 1, 12), *o = be->alloc(be, (size_t)T * Hq * hd * 4);
    float *dO = rnd(be, (size_t)T * Hq * hd, 1, 13), *lse = be->alloc(be, (size_t)T * Hq * 4);
    float *dq = be->alloc(be, (size_t)T * Hq * hd * 4), *dk = be->alloc(be, (size_t)T * Hkv * hd * 4);
    float *dv = be->alloc(be, (size_t)T * Hkv * hd * 4);
    TIME("rope fwd    q [2048,9,64]", 0, be->rope_forward(be, q, pos, T, Hq, hd, 10000.0f));
    float *table = rnd(be, (size_t)V * D, 0.02, 14);
    TIME("embedding fwd [2048,576]", 0, be->embedding_forward(be, x, table, ids, T, D));
    TIME("embedding bwd [2048,576] into [49152,576]", 0, be->embedding_backward(be, table, y, ids, T, D));

    float sc = 1.0f / sqrtf((float)hd);
    int lens[2] = {2048, 256};
    for (int li = 0; li < 2; li++) {
        int B = T / lens[li];
        int32_t *cu = be->alloc(be, (B + 1) * 4);
        for (int b = 0; b <= B; b++) cu[b] = b * lens[li];
        /* causal flops: QK^T and PV each 2*hd per (query, key<=query) pair */
        double pairs = (double)B * lens[li] * (lens[li] + 1) / 2.0 * Hq;
        char lab[96];
        snprintf(lab, sizeof lab, "attention fwd %dx%d tokens", B, lens[li]);
        TIME(lab, 4.0 * hd * pairs, be->attention_forward(be, o, lse, q, k, v, cu, B, T, Hq, Hkv, hd, sc));
        snprintf(lab, sizeof lab, "attention bwd %dx%d tokens", B, lens[li]);
        TIME(lab, 10.0 * hd * pairs,
             be->attention_backward(be, dq, dk, dv, dO, q, k, v, o, lse, cu, B, T, Hq, Hkv, hd, sc));
        be->free(be, cu);
    }

    float *logits = rnd(be, (size_t)T * V, 2, 15), *lp = be->alloc(be, T * 4), *ent = be->alloc(be, T * 4);
    float *lse_z = be->alloc(be, T * 4);
    float *dl = rnd(be, T, 1, 16), *de = rnd(be, T, 1, 17);
    int32_t *tg = be->alloc(be, T * 4);
    for (int t = 0; t < T; t++) tg[t] = (int32_t)(rng_u64(18, t) % V);
    TIME("logprob fwd [2048,49152] (+entropy)", 0, be->logprob_forward(be, lp, ent, lse_z, logits, tg, T, V));
    TIME("logprob bwd [2048,49152] in place", 0, be->logprob_backward(be, logits, NULL, dl, de, lse_z, ent, tg, T, V));
    TIME("lm head matmul [2048,576]x[49152,576]^T", 2.0 * T * D * V,
         be->matmul(be, 0, 1, T, V, D, 1, x, D, 0, table, D, 0, 0, logits, V, 0, 1));
    size_t np = 134515008;
    float *g = rnd(be, np / 16, 1, 19);
    TIME("sumsq 8.4M", 0, (void)be->sumsq(be, g, np / 16));
    float *pp = rnd(be, np / 16, 1, 20), *m = be->alloc(be, np / 16 * 4), *vv = be->alloc(be, np / 16 * 4);
    TIME("adamw 8.4M", 0, be->adamw(be, pp, g, m, vv, np / 16, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1));
    if (be->sync(be)) { fprintf(stderr, "bench_ops: %s\n", be->err); return 1; }
    return 0;
}
