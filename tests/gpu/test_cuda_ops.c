/* tests/gpu/test_cuda_ops.c: every op of the CUDA backend against the CPU
 * backend (the reference) on fresh random inputs of several shapes, odd
 * sizes and long sequences included. Outputs are poisoned (NaN bit pattern)
 * on both backends before each run, so unwritten elements fail. Each result
 * is compared by ||gpu - cpu|| / ||cpu|| (NaN anywhere fails), all in plain
 * fp32 (RFT_CUDA_TF32=0): 1e-5 for matmuls, 1e-4 or tighter for the rest;
 * then the matmuls again on a TF32 backend within 2e-3 (TF32 keeps 10
 * mantissa bits; if the tensor cores truncate rather than round, the error
 * is biased and reaches ~1e-3).
 * Exit 77 (SKIPPED) when there is no CUDA device or CUDA is not built.
 * RFT_TEST_SEED=n changes the random inputs (default: from the clock);
 * RFT_TEST_ONLY=attention stops after the attention checks (the
 * compute-sanitizer racecheck run of tools/gpu_check.sh). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "quant.h" /* fp32_to_bf16 / bf16_to_fp32: the reference bf16 rule */
#include "sampler.h" /* the host sampler: the reference for sample */

static backend *cpu, *gpu;
static int n_fail, n_check;
static uint64_t rng_state;

static uint64_t rnd_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rnd_uniform(float lo, float hi) { return lo + (hi - lo) * (float)((rnd_u64() >> 40) * 0x1.0p-24); }
static int rnd_int(int n) { return (int)(rnd_u64() % (uint64_t)n); }

/* a float tensor held on the host and on both backends */
typedef struct {
    size_t n;
    float *h;  /* host input values (or results after fetch) */
    float *c;  /* CPU backend */
    float *g;  /* CUDA backend */
} ten;

static void *be_alloc(backend *be, size_t bytes) {
    void *p = be->alloc(be, bytes);
    if (!p) {
        fprintf(stderr, "FATAL: %s alloc of %zu bytes: %s\n", be->name, bytes, be->err);
        exit(1);
    }
    return p;
}

static void poison_dev(backend *be, void *p, size_t bytes) {
    unsigned char *tmp = malloc(bytes);
    memset(tmp, 0xff, bytes); /* 0xffffffff is a NaN */
    be->copy_h2d(be, p, tmp, bytes);
    free(tmp);
}

/* random values in [lo, hi) on both backends */
static ten t_rand(size_t n, float lo, float hi) {
    ten t = {n, malloc(n * sizeof(float) + 4), NULL, NULL};
    for (size_t i = 0; i < n; i++) t.h[i] = rnd_uniform(lo, hi);
    t.c = be_alloc(cpu, n * sizeof(float));
    t.g = be_alloc(gpu, n * sizeof(float));
    cpu->copy_h2d(cpu, t.c, t.h, n * sizeof(float));
    gpu->copy_h2d(gpu, t.g, t.h, n * sizeof(float));
    return t;
}
/* an output: poisoned on both backends */
static ten t_out(size_t n) {
    ten t = {n, malloc(n * sizeof(float) + 4), NULL, NULL};
    t.c = be_alloc(cpu, n * sizeof(float));
    t.g = be_alloc(gpu, n * sizeof(float));
    poison_dev(cpu, t.c, n * sizeof(float));
    poison_dev(gpu, t.g, n * sizeof(float));
    return t;
}
static void t_poison(ten *t) {
    poison_dev(cpu, t->c, t->n * sizeof(float));
    poison_dev(gpu, t->g, t->n * sizeof(float));
}
/* reload the host values on both backends (for in-place ops) */
static void t_reset(ten *t) {
    cpu->copy_h2d(cpu, t->c, t->h, t->n * sizeof(float));
    gpu->copy_h2d(gpu, t->g, t->h, t->n * sizeof(float));
}
static void t_free(ten *t) {
    cpu->free(cpu, t->c);
    gpu->free(gpu, t->g);
    free(t->h);
}
static int32_t *i_up(backend *be, const int32_t *h, size_t n) {
    int32_t *p = be_alloc(be, n * sizeof(int32_t) + 4);
    be->copy_h2d(be, p, h, n * sizeof(int32_t));
    return p;
}

/* ||g - c|| / ||c|| over the first n elements of both backends' copies */
static void check(const char *what, const ten *t, size_t n, double tol) {
    float *hc = malloc(n * sizeof(float) + 4), *hg = malloc(n * sizeof(float) + 4);
    cpu->copy_d2h(cpu, hc, t->c, n * sizeof(float));
    gpu->copy_d2h(gpu, hg, t->g, n * sizeof(float));
    int sc = cpu->sync(cpu), sg = gpu->sync(gpu);
    double num = 0, den = 0;
    size_t nan_c = 0, nan_g = 0, first_bad = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(hc[i])) nan_c++;
        if (!isfinite(hg[i])) {
            if (first_bad == (size_t)-1) first_bad = i;
            nan_g++;
        }
        double d = (double)hg[i] - hc[i];
        num += d * d;
        den += (double)hc[i] * hc[i];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    int ok = sc == 0 && sg == 0 && nan_c == 0 && nan_g == 0 && rel <= tol;
    n_check++;
    if (!ok) n_fail++;
    printf("%-4s %-44s rel %.3e (tol %.0e)", ok ? "ok" : "FAIL", what, rel, tol);
    if (nan_c || nan_g) printf("  non-finite: cpu %zu, cuda %zu (first at %zu)", nan_c, nan_g, first_bad);
    if (sc) printf("  cpu error: %s", cpu->err);
    if (sg) printf("  cuda error: %s", gpu->err);
    printf("\n");
    free(hc);
    free(hg);
}

/* ---- ops ---- */

/* an op's bf16 output (out16) on both backends: each must be the bf16
   rounding (fp32_to_bf16) of that backend's own fp32 output t, bit for bit;
   then the fp32 outputs are compared as usual. d16c / d16g: [n] bf16 */
static void check_out16(const char *what, const ten *t, const uint16_t *d16c, const uint16_t *d16g, size_t n) {
    float *hc = malloc(n * sizeof(float)), *hg = malloc(n * sizeof(float));
    uint16_t *bc = malloc(n * 2), *bg = malloc(n * 2);
    cpu->copy_d2h(cpu, hc, t->c, n * sizeof(float));
    gpu->copy_d2h(gpu, hg, t->g, n * sizeof(float));
    cpu->copy_d2h(cpu, bc, d16c, n * 2);
    gpu->copy_d2h(gpu, bg, d16g, n * 2);
    int ok = cpu->sync(cpu) == 0 && gpu->sync(gpu) == 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += bc[i] != fp32_to_bf16(hc[i]) || bg[i] != fp32_to_bf16(hg[i]);
    n_check++;
    if (!ok || bad) n_fail++;
    printf("%-4s %-44s %zu of %zu differ\n", ok && !bad ? "ok" : "FAIL", what, bad, n);
    free(hc), free(hg), free(bc), free(bg);
}

/* bf16 values h[n] on a backend */
static uint16_t *b16_up(backend *be, const uint16_t *h, size_t n) {
    uint16_t *p = be_alloc(be, n * 2 + 4);
    be->copy_h2d(be, p, h, n * 2);
    return p;
}
/* both backends' bf16 outputs (c16 on the CPU, g16 on the GPU, [n], n <=
   w->n) widened into the fp32 tensor w, for check() */
static void widen16(ten *w, const uint16_t *c16, const uint16_t *g16, size_t n) {
    uint16_t *hb = malloc(n * 2 + 2);
    for (int b = 0; b < 2; b++) {
        backend *be = b ? gpu : cpu;
        be->copy_d2h(be, hb, b ? g16 : c16, n * 2);
        be->sync(be);
        for (size_t i = 0; i < n; i++) w->h[i] = bf16_to_fp32(hb[i]);
        be->copy_h2d(be, b ? w->g : w->c, w->h, n * sizeof(float));
    }
    free(hb);
}

static double mm_tol = 1e-5;
static const char *mm_mode = "fp32";

static void test_matmul(int tA, int tB, int M, int N, int K, int pad, float alpha, float beta, int batch) {
    int rA = tA ? K : M, cA = tA ? M : K, rB = tB ? N : K, cB = tB ? K : N;
    int lda = cA + pad, ldb = cB + pad, ldc = N + pad;
    long sA = (long)rA * lda + 3, sB = (long)rB * ldb + 5, sC = (long)M * ldc + 7;
    ten A = t_rand((size_t)sA * batch, -1, 1), B = t_rand((size_t)sB * batch, -1, 1);
    ten C = beta != 0 ? t_rand((size_t)sC * batch, -1, 1) : t_out((size_t)sC * batch);
    cpu->matmul(cpu, tA, tB, M, N, K, alpha, A.c, lda, sA, B.c, ldb, sB, beta, C.c, ldc, sC, batch);
    gpu->matmul(gpu, tA, tB, M, N, K, alpha, A.g, lda, sA, B.g, ldb, sB, beta, C.g, ldc, sC, batch);
    /* compare only the elements C holds (padding stays as it was) */
    ten R = t_out((size_t)M * N * batch);
    for (int b = 0; b < batch; b++)
        for (int r = 0; r < M; r++) {
            cpu->copy_d2d(cpu, R.c + ((size_t)b * M + r) * N, C.c + b * sC + (long)r * ldc, N * sizeof(float));
            gpu->copy_d2d(gpu, R.g + ((size_t)b * M + r) * N, C.g + b * sC + (long)r * ldc, N * sizeof(float));
        }
    char name[128];
    snprintf(name, sizeof name, "matmul %s %c%c %dx%dx%d pad%d b%.0f x%d", mm_mode, tA ? 'T' : 'N', tB ? 'T' : 'N', M,
             N, K, pad, beta, batch);
    check(name, &R, R.n, mm_tol);
    t_free(&A);
    t_free(&B);
    t_free(&C);
    t_free(&R);
}

static void test_elementwise(size_t n) {
    char name[128];
    ten a = t_rand(n, -2, 2), b = t_rand(n, -2, 2), o = t_out(n);
    cpu->add(cpu, o.c, a.c, b.c, n);
    gpu->add(gpu, o.g, a.g, b.g, n);
    snprintf(name, sizeof name, "add n=%zu", n);
    check(name, &o, n, 1e-6);
    cpu->add(cpu, a.c, a.c, b.c, n); /* aliasing out == a */
    gpu->add(gpu, a.g, a.g, b.g, n);
    snprintf(name, sizeof name, "add in place n=%zu", n);
    check(name, &a, n, 1e-6);
    cpu->scale(cpu, b.c, -0.37f, n);
    gpu->scale(gpu, b.g, -0.37f, n);
    snprintf(name, sizeof name, "scale n=%zu", n);
    check(name, &b, n, 1e-6);

    ten gt = t_rand(n, -6, 6), up = t_rand(n, -2, 2), dy = t_rand(n, -1, 1), dg = t_out(n), du = t_out(n);
    t_poison(&o);
    cpu->swiglu_forward(cpu, o.c, gt.c, up.c, n);
    gpu->swiglu_forward(gpu, o.g, gt.g, up.g, n);
    snprintf(name, sizeof name, "swiglu_forward n=%zu", n);
    check(name, &o, n, 1e-4);
    cpu->swiglu_backward(cpu, dg.c, du.c, dy.c, gt.c, up.c, n);
    gpu->swiglu_backward(gpu, dg.g, du.g, dy.g, gt.g, up.g, n);
    snprintf(name, sizeof name, "swiglu_backward dgate n=%zu", n);
    check(name, &dg, n, 1e-4);
    snprintf(name, sizeof name, "swiglu_backward dup n=%zu", n);
    check(name, &du, n, 1e-4);
    /* the bf16 ops on rows of gu [T, 2F] = bf16 gate | up: outputs compared widened (tol 1e-2); F 48: the
       8-column kernels */
    for (int F = n >= 48 ? 48 : n >= 37 ? 37 : 1; F; F = F == 48 ? 37 : 0) {
        int T = (int)(n / F);
        size_t nn = (size_t)T * F;
        uint16_t *hb = malloc(nn * 4), *gu[2], *o16[2], *d16[2], *dy16[2];
        for (int t = 0; t < T; t++)
            for (int f = 0; f < F; f++) {
                hb[(size_t)t * 2 * F + f] = fp32_to_bf16(gt.h[(size_t)t * F + f]);
                hb[(size_t)t * 2 * F + F + f] = fp32_to_bf16(up.h[(size_t)t * F + f]);
            }
        backend *bes[2] = {cpu, gpu};
        for (int b = 0; b < 2; b++) {
            gu[b] = be_alloc(bes[b], nn * 4), o16[b] = be_alloc(bes[b], nn * 2), d16[b] = be_alloc(bes[b], nn * 4);
            bes[b]->copy_h2d(bes[b], gu[b], hb, nn * 4);
            poison_dev(bes[b], o16[b], nn * 2), poison_dev(bes[b], d16[b], nn * 4);
            bes[b]->swiglu_forward_bf16(bes[b], o16[b], gu[b], T, F);
        }
        for (size_t i = 0; i < nn; i++) hb[i] = fp32_to_bf16(dy.h[i]);
        for (int b = 0; b < 2; b++) {
            dy16[b] = b16_up(bes[b], hb, nn);
            bes[b]->swiglu_backward_bf16(bes[b], d16[b], dy16[b], gu[b], T, F);
        }
        ten w = t_out(2 * nn);
        for (int k = 0; k < 2; k++) { /* out16 [nn], then dgu16 [2 nn] */
            size_t cnt = k ? 2 * nn : nn;
            for (int b = 0; b < 2; b++) {
                bes[b]->copy_d2h(bes[b], hb, k ? d16[b] : o16[b], cnt * 2);
                bes[b]->sync(bes[b]);
                for (size_t i = 0; i < cnt; i++) w.h[i] = bf16_to_fp32(hb[i]);
                bes[b]->copy_h2d(bes[b], b ? w.g : w.c, w.h, cnt * sizeof(float));
            }
            snprintf(name, sizeof name, "%s T%d F%d", k ? "swiglu_backward_bf16 dgu16" : "swiglu_forward_bf16", T, F);
            check(name, &w, cnt, 1e-2);
        }
        t_free(&w);
        for (int b = 0; b < 2; b++) {
            bes[b]->free(bes[b], gu[b]), bes[b]->free(bes[b], o16[b]);
            bes[b]->free(bes[b], d16[b]), bes[b]->free(bes[b], dy16[b]);
        }
        free(hb);
    }

    /* copies: zero a middle range, d2d a range */
    size_t z0 = n / 3, zn = n / 4;
    cpu->zero(cpu, up.c + z0, zn * sizeof(float));
    gpu->zero(gpu, up.g + z0, zn * sizeof(float));
    cpu->copy_d2d(cpu, up.c, dy.c + 1, (n / 5) * sizeof(float));
    gpu->copy_d2d(gpu, up.g, dy.g + 1, (n / 5) * sizeof(float));
    snprintf(name, sizeof name, "zero + copy_d2d n=%zu", n);
    check(name, &up, n, 0);

    double sc = cpu->sumsq(cpu, gt.c, n), sg = gpu->sumsq(gpu, gt.g, n);
    double rel = fabs(sg - sc) / sc;
    int ok = isfinite(sg) && rel < 1e-9;
    n_check++;
    if (!ok) n_fail++;
    printf("%-4s %-44s rel %.3e (tol 1e-09)  cpu %.10g cuda %.10g\n", ok ? "ok" : "FAIL", "sumsq", rel, sc, sg);
    t_free(&a); t_free(&b); t_free(&o); t_free(&gt); t_free(&up); t_free(&dy); t_free(&dg); t_free(&du);
}

static void test_bias(int T, int N) {
    char name[128];
    ten x = t_rand((size_t)T * N, -1, 1), bias = t_rand(N, -1, 1), db = t_rand(N, -1, 1);
    cpu->bias_forward(cpu, x.c, bias.c, T, N);
    gpu->bias_forward(gpu, x.g, bias.g, T, N);
    snprintf(name, sizeof name, "bias_forward %dx%d", T, N);
    check(name, &x, x.n, 1e-6);
    cpu->bias_backward(cpu, db.c, x.c, T, N); /* accumulates onto random values */
    gpu->bias_backward(gpu, db.g, x.g, T, N);
    snprintf(name, sizeof name, "bias_backward %dx%d (+=)", T, N);
    check(name, &db, N, 1e-5);
    t_free(&x); t_free(&bias); t_free(&db);
}

static void test_embedding(int V, int T, int D) {
    char name[128];
    int32_t *ids = malloc(T * sizeof(int32_t));
    for (int t = 0; t < T; t++) ids[t] = t % 7 == 3 ? 1 : rnd_int(V); /* many repeats of id 1 */
    int32_t *ic = i_up(cpu, ids, T), *ig = i_up(gpu, ids, T);
    ten table = t_rand((size_t)V * D, -1, 1), out = t_out((size_t)T * D), dout = t_rand((size_t)T * D, -1, 1);
    cpu->embedding_forward(cpu, out.c, table.c, ic, T, D);
    gpu->embedding_forward(gpu, out.g, table.g, ig, T, D);
    snprintf(name, sizeof name, "embedding_forward V%d T%d D%d", V, T, D);
    check(name, &out, out.n, 0);
    cpu->embedding_backward(cpu, table.c, dout.c, ic, T, D);
    gpu->embedding_backward(gpu, table.g, dout.g, ig, T, D);
    snprintf(name, sizeof name, "embedding_backward V%d T%d D%d (+=)", V, T, D);
    check(name, &table, table.n, 1e-5);
    t_free(&table); t_free(&out); t_free(&dout);
    cpu->free(cpu, ic); gpu->free(gpu, ig); free(ids);
}

static void test_rmsnorm(int T, int D) {
    char name[128];
    ten x = t_rand((size_t)T * D, -3, 3), w = t_rand(D, 0.5f, 1.5f), out = t_out((size_t)T * D), rstd = t_out(T);
    ten dy = t_rand((size_t)T * D, -1, 1), dx = t_out((size_t)T * D), dw = t_rand(D, -1, 1);
    for (int i = 0; i < D; i++) x.h[(size_t)(T / 2) * D + i] *= 1e-3f; /* one tiny row */
    t_reset(&x);
    size_t n = (size_t)T * D;
    uint16_t *o16c = be_alloc(cpu, n * 2), *o16g = be_alloc(gpu, n * 2);
    poison_dev(gpu, o16g, n * 2);
    cpu->rmsnorm_forward(cpu, out.c, o16c, rstd.c, NULL, x.c, w.c, T, D, 1e-5f);
    gpu->rmsnorm_forward(gpu, out.g, o16g, rstd.g, NULL, x.g, w.g, T, D, 1e-5f);
    snprintf(name, sizeof name, "rmsnorm_forward out %dx%d", T, D);
    check(name, &out, out.n, 1e-5);
    snprintf(name, sizeof name, "rmsnorm_forward out16 %dx%d", T, D);
    check_out16(name, &out, o16c, o16g, n);
    poison_dev(gpu, o16g, n * 2); /* out16 alone, with the copy of x */
    ten xc = t_out(n);
    cpu->rmsnorm_forward(cpu, NULL, o16c, rstd.c, xc.c, x.c, w.c, T, D, 1e-5f);
    gpu->rmsnorm_forward(gpu, NULL, o16g, rstd.g, xc.g, x.g, w.g, T, D, 1e-5f);
    snprintf(name, sizeof name, "rmsnorm_forward out16 only %dx%d", T, D);
    check_out16(name, &out, o16c, o16g, n);
    snprintf(name, sizeof name, "rmsnorm_forward xcopy = x %dx%d", T, D);
    check(name, &xc, n, 0);
    t_free(&xc);
    cpu->free(cpu, o16c), gpu->free(gpu, o16g);
    snprintf(name, sizeof name, "rmsnorm_forward rstd %dx%d", T, D);
    check(name, &rstd, rstd.n, 1e-5);
    cpu->rmsnorm_backward(cpu, dx.c, NULL, dw.c, dy.c, NULL, x.c, w.c, rstd.c, T, D, 0.0f);
    gpu->rmsnorm_backward(gpu, dx.g, NULL, dw.g, dy.g, NULL, x.g, w.g, rstd.g, T, D, 0.0f);
    snprintf(name, sizeof name, "rmsnorm_backward dx %dx%d", T, D);
    check(name, &dx, dx.n, 1e-5);
    snprintf(name, sizeof name, "rmsnorm_backward dw %dx%d (+=)", T, D);
    check(name, &dw, dw.n, 1e-5);
    /* beta 0 in place: dx written over dout (each element read before it is written) */
    ten al = t_out(n);
    memcpy(al.h, dy.h, n * sizeof(float));
    t_reset(&al);
    cpu->rmsnorm_backward(cpu, al.c, NULL, dw.c, al.c, NULL, x.c, w.c, rstd.c, T, D, 0.0f);
    gpu->rmsnorm_backward(gpu, al.g, NULL, dw.g, al.g, NULL, x.g, w.g, rstd.g, T, D, 0.0f);
    snprintf(name, sizeof name, "rmsnorm_backward dx = dout in place %dx%d", T, D);
    check(name, &al, n, 1e-5);
    snprintf(name, sizeof name, "rmsnorm_backward dw in place %dx%d (+=)", T, D);
    check(name, &dw, dw.n, 1e-5);
    t_free(&al);
    /* beta 1: dx accumulated onto the residual stream's gradient, dx16 its bf16 copy */
    ten acc = t_rand(n, -1, 1);
    uint16_t *x16c = be_alloc(cpu, n * 2), *x16g = be_alloc(gpu, n * 2);
    poison_dev(gpu, x16g, n * 2);
    cpu->rmsnorm_backward(cpu, acc.c, x16c, dw.c, dy.c, NULL, x.c, w.c, rstd.c, T, D, 1.0f);
    gpu->rmsnorm_backward(gpu, acc.g, x16g, dw.g, dy.g, NULL, x.g, w.g, rstd.g, T, D, 1.0f);
    snprintf(name, sizeof name, "rmsnorm_backward dx beta 1 (+=) %dx%d", T, D);
    check(name, &acc, n, 1e-5);
    snprintf(name, sizeof name, "rmsnorm_backward dx16 beta 1 %dx%d", T, D);
    check_out16(name, &acc, x16c, x16g, n);
    /* dout16: the gradient in bf16 (model.dtype bf16) */
    uint16_t *hb = malloc(n * 2 + 2);
    for (size_t i = 0; i < n; i++) hb[i] = fp32_to_bf16(dy.h[i]);
    uint16_t *d16c = b16_up(cpu, hb, n), *d16g = b16_up(gpu, hb, n);
    t_poison(&dx);
    cpu->rmsnorm_backward(cpu, dx.c, NULL, dw.c, NULL, d16c, x.c, w.c, rstd.c, T, D, 0.0f);
    gpu->rmsnorm_backward(gpu, dx.g, NULL, dw.g, NULL, d16g, x.g, w.g, rstd.g, T, D, 0.0f);
    snprintf(name, sizeof name, "rmsnorm_backward dx from dout16 %dx%d", T, D);
    check(name, &dx, n, 1e-5);
    snprintf(name, sizeof name, "rmsnorm_backward dw from dout16 %dx%d (+=)", T, D);
    check(name, &dw, dw.n, 1e-5);
    cpu->free(cpu, d16c), gpu->free(gpu, d16g), free(hb);
    cpu->free(cpu, x16c), gpu->free(gpu, x16g);
    t_free(&acc);
    t_free(&x); t_free(&w); t_free(&out); t_free(&rstd); t_free(&dy); t_free(&dx); t_free(&dw);
}

static void test_rope(int T, int H, int hd, int maxpos) {
    char name[128];
    int32_t *pos = malloc(T * sizeof(int32_t));
    for (int t = 0; t < T; t++) pos[t] = t < 4 ? t : rnd_int(maxpos);
    int32_t *pc = i_up(cpu, pos, T), *pg = i_up(gpu, pos, T);
    ten x = t_rand((size_t)T * H * hd, -1, 1);
    cpu->rope_forward(cpu, x.c, pc, T, H, hd, 10000.0f);
    gpu->rope_forward(gpu, x.g, pg, T, H, hd, 10000.0f);
    snprintf(name, sizeof name, "rope_forward T%d H%d hd%d pos<%d", T, H, hd, maxpos);
    check(name, &x, x.n, 1e-5);
    t_reset(&x);
    cpu->rope_backward(cpu, x.c, pc, T, H, hd, 100000.0f);
    gpu->rope_backward(gpu, x.g, pg, T, H, hd, 100000.0f);
    snprintf(name, sizeof name, "rope_backward T%d H%d hd%d", T, H, hd);
    check(name, &x, x.n, 1e-5);
    t_free(&x);
    cpu->free(cpu, pc); gpu->free(gpu, pg); free(pos);
}

/* rope_forward_bf16 (with and without biases) on stacked rows q | k | v: the
   same fp32 arithmetic, rounded once (an fp32 contraction may move a value
   across a rounding boundary: 1e-3); its backward is checked with the
   attention's */
static void test_rope_bf16(int T, int Hq, int Hkv, int hd, int maxpos) {
    char name[160];
    int qd = Hq * hd, kvd = Hkv * hd, W = qd + 2 * kvd;
    size_t n = (size_t)T * W;
    int32_t *pos = malloc(T * sizeof(int32_t));
    for (int t = 0; t < T; t++) pos[t] = t < 4 ? t : rnd_int(maxpos);
    int32_t *pc = i_up(cpu, pos, T), *pg = i_up(gpu, pos, T);
    ten b = t_rand(W, -1, 1), w = t_out(n);
    uint16_t *h = malloc(n * 2 + 2);
    for (size_t i = 0; i < n; i++) h[i] = fp32_to_bf16(rnd_uniform(-2, 2));
    for (int withb = 0; withb < 2; withb++) {
        uint16_t *xc = b16_up(cpu, h, n), *xg = b16_up(gpu, h, n);
        cpu->rope_forward_bf16(cpu, xc, withb ? b.c : NULL, withb ? b.c + qd : NULL, withb ? b.c + qd + kvd : NULL,
                               pc, T, Hq, Hkv, hd, 10000.0f);
        gpu->rope_forward_bf16(gpu, xg, withb ? b.g : NULL, withb ? b.g + qd : NULL, withb ? b.g + qd + kvd : NULL,
                               pg, T, Hq, Hkv, hd, 10000.0f);
        widen16(&w, xc, xg, n);
        snprintf(name, sizeof name, "rope_forward_bf16%s T%d Hq%d Hkv%d hd%d", withb ? " +bias" : "", T, Hq, Hkv, hd);
        check(name, &w, n, 1e-3);
        cpu->free(cpu, xc), gpu->free(gpu, xg);
    }
    t_free(&b), t_free(&w);
    cpu->free(cpu, pc); gpu->free(gpu, pg); free(pos); free(h);
}

/* attention forward and backward, fp32 ops (tol 1e-4) and the bf16 ops
   against the CPU backend's bf16 ops (which round the same operands: only the
   summation order differs; tol_bf16) */
static const double tol_attn_bf16 = 5e-4;
/* the fp32 pair's tolerance (1e-4; TF32 kernels: 1e-3, the TF32 bound) and whether the bf16 pair runs too */
static double attn_tol = 1e-4;
static int attn_with_bf16 = 1;

/* the bf16 pair on test_attention's q, k, v (rounded into stacked rows q | k |
   v), dO rounded; o and lse are reused as widened outputs, tmp [lse->n] */
static void test_attention_bf16(ten *o, ten *lse, const ten *q, const ten *k, const ten *v, const ten *dout,
                                float *tmp, const int32_t *cu, int32_t *cc, int32_t *cg, int B, int T, int Hq,
                                int Hkv, int hd, float scale, const char *shape) {
    char name[160];
    int qd = Hq * hd, kvd = Hkv * hd, W = qd + 2 * kvd;
    uint16_t *h16 = malloc((size_t)T * W * 2 + 2), *hdo = malloc(o->n * 2 + 2), *ho = malloc(o->n * 2 + 2);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < W; j++)
            h16[(size_t)t * W + j] = fp32_to_bf16(j < qd ? q->h[(size_t)t * qd + j]
                                                 : j < qd + kvd ? k->h[(size_t)t * kvd + j - qd]
                                                                : v->h[(size_t)t * kvd + j - qd - kvd]);
    for (size_t i = 0; i < o->n; i++) hdo[i] = fp32_to_bf16(dout->h[i]);
    uint16_t *qkvc = b16_up(cpu, h16, (size_t)T * W), *qkvg = b16_up(gpu, h16, (size_t)T * W);
    uint16_t *doc = b16_up(cpu, hdo, o->n), *dog = b16_up(gpu, hdo, o->n);
    uint16_t *o16c = be_alloc(cpu, o->n * 2 + 4), *o16g = be_alloc(gpu, o->n * 2 + 4);
    poison_dev(cpu, o16c, o->n * 2), poison_dev(gpu, o16g, o->n * 2);
    t_poison(lse);
    cpu->attention_forward_bf16(cpu, o16c, lse->c, qkvc, cc, B, T, Hq, Hkv, hd, scale);
    gpu->attention_forward_bf16(gpu, o16g, lse->g, qkvg, cg, B, T, Hq, Hkv, hd, scale);
    widen16(o, o16c, o16g, o->n);
    snprintf(name, sizeof name, "attn_bf16 fwd out %s", shape);
    check(name, o, o->n, tol_attn_bf16);
    snprintf(name, sizeof name, "attn_bf16 fwd lse %s", shape);
    check(name, lse, lse->n, tol_attn_bf16 / 10);
    cpu->copy_d2h(cpu, ho, o16c, o->n * 2);
    gpu->copy_h2d(gpu, o16g, ho, o->n * 2);
    cpu->copy_d2h(cpu, tmp, lse->c, lse->n * sizeof(float));
    gpu->copy_h2d(gpu, lse->g, tmp, lse->n * sizeof(float));
    /* the backward through RoPE^T into the stacked rows: positions restart per sequence (+ 37) */
    int32_t *ph = malloc((T + 1) * sizeof(int32_t));
    for (int b = 0; b < B; b++)
        for (int t = cu[b]; t < cu[b + 1]; t++) ph[t] = t - cu[b] + 37;
    int32_t *pc = i_up(cpu, ph, T), *pg = i_up(gpu, ph, T);
    uint16_t *d16c = be_alloc(cpu, (size_t)T * W * 2 + 4), *d16g = be_alloc(gpu, (size_t)T * W * 2 + 4);
    poison_dev(cpu, d16c, (size_t)T * W * 2), poison_dev(gpu, d16g, (size_t)T * W * 2);
    cpu->attention_backward_bf16(cpu, d16c, doc, qkvc, o16c, lse->c, pc, 10000.0f, cc, B, T, Hq, Hkv, hd, scale);
    gpu->attention_backward_bf16(gpu, d16g, dog, qkvg, o16g, lse->g, pg, 10000.0f, cg, B, T, Hq, Hkv, hd, scale);
    ten dw = t_out((size_t)T * W + 1);
    widen16(&dw, d16c, d16g, (size_t)T * W);
    snprintf(name, sizeof name, "attn_bf16 bwd d(qkv) rows %s", shape);
    check(name, &dw, (size_t)T * W, tol_attn_bf16);
    t_free(&dw);
    cpu->free(cpu, pc), gpu->free(gpu, pg), cpu->free(cpu, d16c), gpu->free(gpu, d16g), free(ph);
    free(h16), free(hdo), free(ho);
    cpu->free(cpu, qkvc), gpu->free(gpu, qkvg), cpu->free(cpu, doc), gpu->free(gpu, dog);
    cpu->free(cpu, o16c), gpu->free(gpu, o16g);
}

static void test_attention(int B, const int *lens, int Hq, int Hkv, int hd) {
    char name[160], shape[96];
    int32_t *cu = malloc((B + 1) * sizeof(int32_t));
    cu[0] = 0;
    for (int b = 0; b < B; b++) cu[b + 1] = cu[b] + lens[b];
    int T = cu[B];
    int n = snprintf(shape, sizeof shape, "B%d T%d Hq%d Hkv%d hd%d", B, T, Hq, Hkv, hd);
    if (B <= 4) {
        n += snprintf(shape + n, sizeof shape - n, " [");
        for (int b = 0; b < B; b++) n += snprintf(shape + n, sizeof shape - n, b ? ",%d" : "%d", lens[b]);
        snprintf(shape + n, sizeof shape - n, "]");
    }
    int32_t *cc = i_up(cpu, cu, B + 1), *cg = i_up(gpu, cu, B + 1);
    float scale = 1.0f / sqrtf((float)hd);
    ten q = t_rand((size_t)T * Hq * hd, -2, 2), k = t_rand((size_t)T * Hkv * hd, -2, 2),
        v = t_rand((size_t)T * Hkv * hd, -1, 1);
    ten o = t_out((size_t)T * Hq * hd), lse = t_out((size_t)T * Hq), dout = t_rand((size_t)T * Hq * hd, -1, 1);
    ten dq = t_out(q.n), dk = t_out(k.n), dv = t_out(v.n);
    cpu->attention_forward(cpu, o.c, lse.c, q.c, k.c, v.c, cc, B, T, Hq, Hkv, hd, scale);
    gpu->attention_forward(gpu, o.g, lse.g, q.g, k.g, v.g, cg, B, T, Hq, Hkv, hd, scale);
    snprintf(name, sizeof name, "attn %s fwd out %s", mm_mode, shape);
    check(name, &o, o.n, attn_tol);
    snprintf(name, sizeof name, "attn %s fwd lse %s", mm_mode, shape);
    check(name, &lse, lse.n, attn_tol);
    /* backward from the CPU's forward results on both, so only the backward is compared */
    float *tmp = malloc(o.n * sizeof(float));
    cpu->copy_d2h(cpu, tmp, o.c, o.n * sizeof(float));
    gpu->copy_h2d(gpu, o.g, tmp, o.n * sizeof(float));
    cpu->copy_d2h(cpu, tmp, lse.c, lse.n * sizeof(float));
    gpu->copy_h2d(gpu, lse.g, tmp, lse.n * sizeof(float));
    cpu->attention_backward(cpu, dq.c, dk.c, dv.c, dout.c, q.c, k.c, v.c, o.c, lse.c, cc, B, T, Hq, Hkv, hd, scale);
    gpu->attention_backward(gpu, dq.g, dk.g, dv.g, dout.g, q.g, k.g, v.g, o.g, lse.g, cg, B, T, Hq, Hkv, hd, scale);
    snprintf(name, sizeof name, "attn %s bwd dq %s", mm_mode, shape);
    check(name, &dq, dq.n, attn_tol);
    snprintf(name, sizeof name, "attn %s bwd dk %s", mm_mode, shape);
    check(name, &dk, dk.n, attn_tol);
    snprintf(name, sizeof name, "attn %s bwd dv %s", mm_mode, shape);
    check(name, &dv, dv.n, attn_tol);
    if (attn_with_bf16)
        test_attention_bf16(&o, &lse, &q, &k, &v, &dout, tmp, cu, cc, cg, B, T, Hq, Hkv, hd, scale, shape);
    free(tmp);
    t_free(&q); t_free(&k); t_free(&v); t_free(&o); t_free(&lse); t_free(&dout); t_free(&dq); t_free(&dk);
    t_free(&dv);
    cpu->free(cpu, cc); gpu->free(gpu, cg); free(cu);
}

/* the bf16 attention pair's other kernels, each in a backend of its own
   (the environment is read when a backend is created): the wmma kernels
   (RFT_CUDA_ATTN=wmma) and their hd-64 register variant (and
   RFT_CUDA_TC_MIN_BLOCKS=1: the same code under another register
   allocation, so bitwise the same results). The default mma.sync kernels
   multiply the same bf16 operands in the same k order, so (in the
   emulation) their S and P equal the wmma kernels'; l is summed in another
   order, so an output can round to the other bf16 neighbour, and that moves
   D and the backward's results downstream: the pair's contract tolerance
   (5e-4, as against the CPU backend); seen in the emulation: 0 to 8e-5 */
static backend *backend_with_env(const char *k1, const char *v1, const char *k2, const char *v2) {
    char err[512];
    setenv(k1, v1, 1);
    if (k2) setenv(k2, v2, 1);
    backend *be = backend_cuda_create(0, err, sizeof err);
    unsetenv(k1);
    if (k2) unsetenv(k2);
    if (!be) {
        printf("FAIL backend with %s=%s: %s\n", k1, v1, err);
        n_fail++, n_check++;
    }
    return be;
}

static void test_attention_variant(void) {
    backend *gw = backend_with_env("RFT_CUDA_ATTN", "wmma", NULL, NULL);
    backend *gw1 = backend_with_env("RFT_CUDA_ATTN", "wmma", "RFT_CUDA_TC_MIN_BLOCKS", "1");
    if (!gw || !gw1) {
        if (gw) gw->destroy(gw);
        if (gw1) gw1->destroy(gw1);
        return;
    }
    const int B = 2, lens[2] = {130, 70}, Hq = 4, Hkv = 2, hd = 64, T = 200, W = (Hq + 2 * Hkv) * hd;
    int32_t cu[3] = {0, lens[0], lens[0] + lens[1]};
    size_t nw = (size_t)T * W, nq = (size_t)T * Hq * hd, nl = (size_t)T * Hq;
    int32_t pos[200];
    for (int b = 0; b < B; b++)
        for (int t = cu[b]; t < cu[b + 1]; t++) pos[t] = t - cu[b];
    uint16_t *h = malloc((nw + nq) * 2);
    for (size_t i = 0; i < nw + nq; i++) h[i] = fp32_to_bf16(rnd_uniform(-2, 2));
    /* per backend: o [nq] and d(qkv) [nw] bf16, then lse [nl] fp32, as 16-bit halves */
    size_t n16 = nq + nw + 2 * nl;
    uint16_t *res[3];
    for (int v = 0; v < 3; v++) {
        backend *be = v == 0 ? gpu : v == 1 ? gw : gw1;
        uint16_t *qkv = b16_up(be, h, nw), *dO = b16_up(be, h + nw, nq), *o = be_alloc(be, nq * 2 + 4);
        uint16_t *d = be_alloc(be, nw * 2 + 4);
        float *lse = be_alloc(be, nl * 4);
        int32_t *c = i_up(be, cu, 3), *p = i_up(be, pos, T);
        poison_dev(be, o, nq * 2), poison_dev(be, d, nw * 2), poison_dev(be, lse, nl * 4);
        be->attention_forward_bf16(be, o, lse, qkv, c, B, T, Hq, Hkv, hd, 0.125f);
        be->attention_backward_bf16(be, d, dO, qkv, o, lse, p, 10000.0f, c, B, T, Hq, Hkv, hd, 0.125f);
        res[v] = malloc(n16 * 2);
        be->copy_d2h(be, res[v], o, nq * 2);
        be->copy_d2h(be, res[v] + nq, d, nw * 2);
        be->copy_d2h(be, res[v] + nq + nw, lse, nl * 4);
        if (be->sync(be)) printf("  error: %s\n", be->err);
        be->free(be, qkv), be->free(be, dO), be->free(be, o), be->free(be, d), be->free(be, lse);
        be->free(be, c), be->free(be, p);
    }
    size_t diff = 0;
    for (size_t i = 0; i < n16; i++) diff += res[1][i] != res[2][i];
    n_check++;
    if (diff) n_fail++;
    printf("%-4s %-44s %zu of %zu values differ\n", diff ? "FAIL" : "ok",
           "attn_bf16 hd64 wmma minb1 = wmma (bitwise)", diff, n16);
    /* mma vs wmma: ||a - b|| / ||b|| over o and d(qkv) widened, and over lse */
    double num[2] = {0, 0}, den[2] = {0, 0};
    int finite = 1;
    for (size_t i = 0; i < nq + nw + nl; i++) {
        double a, b;
        if (i < nq + nw) {
            a = bf16_to_fp32(res[0][i]), b = bf16_to_fp32(res[1][i]);
        } else {
            float fa, fb;
            memcpy(&fa, res[0] + nq + nw + 2 * (i - nq - nw), 4);
            memcpy(&fb, res[1] + nq + nw + 2 * (i - nq - nw), 4);
            a = fa, b = fb;
        }
        if (!isfinite(a) || !isfinite(b)) finite = 0;
        num[i >= nq + nw] += (a - b) * (a - b), den[i >= nq + nw] += b * b;
    }
    double rel = sqrt(num[0] / den[0]), rel_lse = sqrt(num[1] / den[1]);
    int bad = !finite || !(rel <= 5e-4) || !(rel_lse <= 1e-6);
    n_check++;
    if (bad) n_fail++;
    printf("%-4s %-44s o, d(qkv) rel %.3e (tol 5e-4), lse rel %.3e (tol 1e-6)%s\n", bad ? "FAIL" : "ok",
           "attn_bf16 hd64 mma = wmma", rel, rel_lse, finite ? "" : ", non-finite values");
    free(res[0]), free(res[1]), free(res[2]), free(h);
    gw->destroy(gw), gw1->destroy(gw1);
}

/* kv_write a prefill of each slot, then attention_cached for those prefill
   tokens and for one decode token per slot. Cache positions never written
   stay poisoned: reading past pos[t] would show up as NaN. */
static void test_kvcache(int S, const int *lens, int Hq, int Hkv, int hd, int max_seq) {
    char name[160];
    int kvd = Hkv * hd, T = 0;
    for (int s = 0; s < S; s++) T += lens[s];
    int32_t *slot = malloc((T + S) * sizeof(int32_t)), *pos = malloc((T + S) * sizeof(int32_t));
    for (int s = 0, t = 0; s < S; s++)
        for (int p = 0; p < lens[s]; p++, t++) { slot[t] = s; pos[t] = p; }
    for (int s = 0; s < S; s++) { slot[T + s] = s; pos[T + s] = lens[s]; } /* decode step */
    int32_t *sc = i_up(cpu, slot, T + S), *sg = i_up(gpu, slot, T + S), *pc = i_up(cpu, pos, T + S),
            *pg = i_up(gpu, pos, T + S);
    ten kc = t_out((size_t)S * max_seq * kvd), vc = t_out((size_t)S * max_seq * kvd);
    ten k = t_rand((size_t)(T + S) * kvd, -2, 2), v = t_rand((size_t)(T + S) * kvd, -1, 1);
    ten q = t_rand((size_t)(T + S) * Hq * hd, -2, 2), o = t_out((size_t)(T + S) * Hq * hd);
    float scale = 1.0f / sqrtf((float)hd);
    cpu->kv_write(cpu, kc.c, vc.c, k.c, v.c, sc, pc, T, kvd, max_seq);
    gpu->kv_write(gpu, kc.g, vc.g, k.g, v.g, sg, pg, T, kvd, max_seq);
    cpu->attention_cached(cpu, o.c, q.c, kc.c, vc.c, sc, pc, T, Hq, Hkv, hd, max_seq, scale);
    gpu->attention_cached(gpu, o.g, q.g, kc.g, vc.g, sg, pg, T, Hq, Hkv, hd, max_seq, scale);
    snprintf(name, sizeof name, "attention_cached prefill S%d T%d Hq%d Hkv%d hd%d", S, T, Hq, Hkv, hd);
    check(name, &o, (size_t)T * Hq * hd, 1e-4);
    size_t ko = (size_t)T * kvd, qo = (size_t)T * Hq * hd;
    cpu->kv_write(cpu, kc.c, vc.c, k.c + ko, v.c + ko, sc + T, pc + T, S, kvd, max_seq);
    gpu->kv_write(gpu, kc.g, vc.g, k.g + ko, v.g + ko, sg + T, pg + T, S, kvd, max_seq);
    cpu->attention_cached(cpu, o.c + qo, q.c + qo, kc.c, vc.c, sc + T, pc + T, S, Hq, Hkv, hd, max_seq, scale);
    gpu->attention_cached(gpu, o.g + qo, q.g + qo, kc.g, vc.g, sg + T, pg + T, S, Hq, Hkv, hd, max_seq, scale);
    snprintf(name, sizeof name, "attention_cached decode S%d Hq%d Hkv%d hd%d", S, Hq, Hkv, hd);
    check(name, &o, o.n, 1e-4);
    t_free(&kc); t_free(&vc); t_free(&k); t_free(&v); t_free(&q); t_free(&o);
    cpu->free(cpu, sc); gpu->free(gpu, sg); cpu->free(cpu, pc); gpu->free(gpu, pg); free(slot); free(pos);
}

static void test_logprob(int T, int V) {
    char name[128];
    int32_t *tg = malloc(T * sizeof(int32_t));
    for (int t = 0; t < T; t++) tg[t] = t % 5 == 2 ? -1 : rnd_int(V);
    int32_t *tc = i_up(cpu, tg, T), *tgg = i_up(gpu, tg, T);
    ten z = t_rand((size_t)T * V, -8, 8);
    for (int t = 0; t < T; t += 3) z.h[(size_t)t * V + rnd_int(V)] = 40.0f; /* peaked rows */
    t_reset(&z);
    ten lp = t_out(T), ent = t_out(T), lse = t_out(T), dlp = t_rand(T, -1, 1), dent = t_rand(T, -1, 1);
    cpu->logprob_forward(cpu, lp.c, ent.c, lse.c, z.c, tc, T, V);
    gpu->logprob_forward(gpu, lp.g, ent.g, lse.g, z.g, tgg, T, V);
    snprintf(name, sizeof name, "logprob_forward logp T%d V%d", T, V);
    check(name, &lp, T, 1e-5);
    snprintf(name, sizeof name, "logprob_forward entropy T%d V%d", T, V);
    check(name, &ent, T, 1e-5);
    snprintf(name, sizeof name, "logprob_forward lse T%d V%d", T, V);
    check(name, &lse, T, 1e-5);
    /* d16: the gradient rounded to bf16 (the GPU kernel leaves logits as they are) */
    uint16_t *d16c = be_alloc(cpu, z.n * 2), *d16g = be_alloc(gpu, z.n * 2);
    poison_dev(gpu, d16g, z.n * 2);
    /* each backend's backward takes its own forward's lse and entropy */
    cpu->logprob_backward(cpu, z.c, d16c, dlp.c, dent.c, lse.c, ent.c, tc, T, V);
    gpu->logprob_backward(gpu, z.g, d16g, dlp.g, dent.g, lse.g, ent.g, tgg, T, V);
    t_reset(&z);
    cpu->logprob_backward(cpu, z.c, NULL, dlp.c, dent.c, lse.c, ent.c, tc, T, V);
    gpu->logprob_backward(gpu, z.g, NULL, dlp.g, dent.g, lse.g, ent.g, tgg, T, V);
    snprintf(name, sizeof name, "logprob_backward (+entropy) T%d V%d", T, V);
    check(name, &z, z.n, 1e-4);
    snprintf(name, sizeof name, "logprob_backward d16 (+entropy) T%d V%d", T, V);
    check_out16(name, &z, d16c, d16g, z.n);
    cpu->free(cpu, d16c), gpu->free(gpu, d16g);
    t_reset(&z);
    cpu->logprob_backward(cpu, z.c, NULL, dlp.c, NULL, lse.c, NULL, tc, T, V);
    gpu->logprob_backward(gpu, z.g, NULL, dlp.g, NULL, lse.g, NULL, tgg, T, V);
    snprintf(name, sizeof name, "logprob_backward (no entropy) T%d V%d", T, V);
    check(name, &z, z.n, 1e-4);
    t_free(&z); t_free(&lp); t_free(&ent); t_free(&lse); t_free(&dlp); t_free(&dent);
    cpu->free(cpu, tc); gpu->free(gpu, tgg); free(tg);
}

static void test_adamw(size_t n) {
    char name[128];
    ten p = t_rand(n, -1, 1), m = t_rand(n, -0.1f, 0.1f), v = t_rand(n, 0, 0.01f);
    for (int t = 1; t <= 3; t++) {
        ten g = t_rand(n, -1, 1);
        cpu->adamw(cpu, p.c, g.c, m.c, v.c, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
        gpu->adamw(gpu, p.g, g.g, m.g, v.g, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, t);
        t_free(&g);
    }
    snprintf(name, sizeof name, "adamw 3 steps p n=%zu", n);
    check(name, &p, n, 1e-6);
    snprintf(name, sizeof name, "adamw 3 steps m n=%zu", n);
    check(name, &m, n, 1e-6);
    snprintf(name, sizeof name, "adamw 3 steps v n=%zu", n);
    check(name, &v, n, 1e-6);
    t_free(&p); t_free(&m); t_free(&v);
}

/* ---- bf16 ----
 * Checked against a plain reference (trainer/quant.c's fp32_to_bf16: round to
 * nearest even, NaN -> quiet NaN with its sign; products in double) and, once
 * the CPU backend has the ops, against it too. */

static void report(const char *what, int ok, double rel, double tol, const char *extra) {
    n_check++;
    if (!ok) n_fail++;
    printf("%-4s %-44s rel %.3e (tol %.0e)%s\n", ok ? "ok" : "FAIL", what, rel, tol, extra);
}

/* n bf16 values fetched from be, compared bit for bit with ref; guard values
   after them must still hold the poison. Returns the mismatch count. */
static size_t bf16_mismatches(backend *be, const uint16_t *d, const uint16_t *ref, size_t n, size_t guard,
                              uint16_t poison, size_t *first) {
    uint16_t *h = malloc((n + guard) * sizeof(uint16_t));
    be->copy_d2h(be, h, d, (n + guard) * sizeof(uint16_t));
    size_t bad = be->sync(be) ? n + guard : 0;
    *first = (size_t)-1;
    for (size_t i = 0; i < n + guard && !be->err[0]; i++)
        if (h[i] != (i < n ? ref[i] : poison)) {
            if (*first == (size_t)-1) *first = i;
            bad++;
        }
    free(h);
    return bad;
}

/* cast_bf16 over special values (signed zeros, infinities, quiet and
   signalling NaNs, exact ties both ways, overflow to infinity, subnormals),
   random bit patterns and random values; bitwise, with two poison patterns
   so an unwritten element cannot match by chance, and a guard after dst */
static const uint32_t bf16_special[] = {
    0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff812345u,
    0x7fffffffu, 0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu, 0xbf818000u, 0x7f7fffffu, 0xff7fffffu,
    0x7f7f7fffu, 0x00000001u, 0x00008000u, 0x00018000u, 0x807fffffu, 0x00800000u, 0x7f7f8000u, 0x477fff80u};
#define N_BF16_SPECIAL (sizeof bf16_special / sizeof bf16_special[0])

static void test_cast_bf16(size_t n) {
    const uint32_t *special = bf16_special;
    const size_t ns = N_BF16_SPECIAL, guard = 8;
    float *src = malloc(n * sizeof(float));
    uint16_t *ref = malloc(n * sizeof(uint16_t)), *pois = malloc((n + guard) * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) {
        uint32_t u = i < ns ? special[i] : i % 2 ? (uint32_t)rnd_u64() : 0;
        if (i < ns || i % 2) memcpy(&src[i], &u, 4);
        else src[i] = rnd_uniform(-70000.0f, 70000.0f) * (i % 4 ? 1.0f : 1e-30f);
        ref[i] = fp32_to_bf16(src[i]);
    }
    backend *bes[2] = {gpu, cpu->cast_bf16 ? cpu : NULL};
    for (int b = 0; b < 2; b++) {
        backend *be = bes[b];
        if (!be) continue;
        float *ds = be_alloc(be, n * sizeof(float));
        uint16_t *dd = be_alloc(be, (n + guard) * sizeof(uint16_t));
        be->copy_h2d(be, ds, src, n * sizeof(float));
        size_t bad = 0, first = (size_t)-1;
        static const uint16_t poisons[2] = {0xffffu, 0x0000u};
        for (int p = 0; p < 2; p++) {
            for (size_t i = 0; i < n + guard; i++) pois[i] = poisons[p];
            be->copy_h2d(be, dd, pois, (n + guard) * sizeof(uint16_t));
            be->cast_bf16(be, dd, ds, n);
            size_t f;
            bad += bf16_mismatches(be, dd, ref, n, guard, poisons[p], &f);
            if (first == (size_t)-1) first = f;
        }
        char name[128], extra[640] = "";
        snprintf(name, sizeof name, "cast_bf16 %s vs reference n=%zu", be->name, n);
        if (bad && first < n) {
            uint32_t u;
            memcpy(&u, &src[first], 4);
            snprintf(extra, sizeof extra, "  %zu bits differ (first at %zu: 0x%08x -> 0x%04x)", bad, first, u,
                     ref[first]);
        } else if (bad) {
            snprintf(extra, sizeof extra, "  %zu bad (guard overwritten or error: %s)", bad, be->err);
        }
        report(name, bad == 0, (double)bad / n, 0, extra);
        be->free(be, ds);
        be->free(be, dd);
    }
    free(src);
    free(ref);
    free(pois);
}

/* y[M,N] = bf16(x) W^T + beta y on be; y is poisoned (beta 0) or holds y0
   (beta 1), followed by a poisoned guard that must stay untouched. The result
   goes to out[M*N]; returns 0, or -1 when the guard changed or be failed. */
static int run_matmul_bf16(backend *be, int M, int N, int K, const float *x, const uint16_t *wb, float beta,
                           const float *y0, float *out) {
    size_t ny = (size_t)M * N, guard = 16;
    float *dx = be_alloc(be, (size_t)M * K * sizeof(float)), *dy = be_alloc(be, (ny + guard) * sizeof(float));
    uint16_t *dw = be_alloc(be, (size_t)N * K * sizeof(uint16_t));
    be->copy_h2d(be, dx, x, (size_t)M * K * sizeof(float));
    be->copy_h2d(be, dw, wb, (size_t)N * K * sizeof(uint16_t));
    poison_dev(be, dy, (ny + guard) * sizeof(float));
    if (beta != 0) be->copy_h2d(be, dy, y0, ny * sizeof(float));
    be->matmul_bf16(be, M, N, K, dx, dw, beta, dy);
    float *h = malloc((ny + guard) * sizeof(float));
    be->copy_d2h(be, h, dy, (ny + guard) * sizeof(float));
    int rc = be->sync(be);
    for (size_t i = ny; i < ny + guard && rc == 0; i++) {
        uint32_t u;
        memcpy(&u, &h[i], 4);
        if (u != 0xffffffffu) rc = -1;
    }
    memcpy(out, h, ny * sizeof(float));
    free(h);
    be->free(be, dx);
    be->free(be, dy);
    be->free(be, dw);
    return rc;
}

static void test_matmul_bf16(int M, int N, int K, float beta) {
    size_t ny = (size_t)M * N;
    float *x = malloc((size_t)M * K * sizeof(float)), *y0 = calloc(ny ? ny : 1, sizeof(float));
    float *out = malloc(ny * sizeof(float)), *outc = malloc(ny * sizeof(float));
    uint16_t *wb = malloc((size_t)N * K * sizeof(uint16_t));
    double *ref = malloc(ny * sizeof(double)), *mag = malloc(ny * sizeof(double)), *xr = malloc((size_t)K * sizeof(double));
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = rnd_uniform(-2, 2);
    for (size_t i = 0; i < (size_t)N * K; i++) wb[i] = fp32_to_bf16(rnd_uniform(-1, 1));
    for (size_t i = 0; i < ny; i++) y0[i] = rnd_uniform(-1, 1);
    for (int m = 0; m < M; m++) {
        for (int k = 0; k < K; k++) xr[k] = bf16_to_fp32(fp32_to_bf16(x[(size_t)m * K + k]));
        for (int n = 0; n < N; n++) {
            const uint16_t *w = wb + (size_t)n * K;
            double s = beta != 0 ? y0[(size_t)m * N + n] : 0.0, a = fabs(s);
            for (int k = 0; k < K; k++) s += xr[k] * bf16_to_fp32(w[k]), a += fabs(xr[k] * bf16_to_fp32(w[k]));
            ref[(size_t)m * N + n] = s;
            mag[(size_t)m * N + n] = a;
        }
    }
    /* error of each output over sum_k |x_k w_k| (+ |beta y0|): the products
       are exact, so only fp32 accumulation is left, bounded by ~K * 2^-24 of
       that sum whatever the summation order (a plain relative error blows up
       when a short dot product cancels). A wrong or missing term is O(1). */
    double tol = 2.0 * (K + 1) * 0x1p-24;
    char name[128], extra[640] = "";
    int rc = run_matmul_bf16(gpu, M, N, K, x, wb, beta, y0, out);
    double err = 0;
    for (size_t i = 0; i < ny && !rc; i++) {
        double e = fabs((double)out[i] - ref[i]) / (mag[i] > 0 ? mag[i] : 1);
        err = isnan(e) ? INFINITY : e > err ? e : err; /* NaN fails */
    }
    if (rc) err = INFINITY, snprintf(extra, sizeof extra, "  guard overwritten or error: %s", gpu->err);
    if (cpu->matmul_bf16) { /* and against the CPU backend's op */
        int rcc = run_matmul_bf16(cpu, M, N, K, x, wb, beta, y0, outc);
        double ec = rcc ? INFINITY : 0;
        for (size_t i = 0; i < ny && !rcc; i++) {
            double e = fabs((double)out[i] - outc[i]) / (mag[i] > 0 ? mag[i] : 1) / 2; /* two fp32 sums */
            ec = isnan(e) ? INFINITY : e > ec ? e : ec;
        }
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "  vs cpu %.3e", ec);
        if (ec > err) err = ec;
    }
    snprintf(name, sizeof name, "matmul_bf16 %s %dx%dx%d b%.0f", gpu->name, M, N, K, beta);
    report(name, err <= tol, err, tol, extra);
    free(x); free(y0); free(out); free(outc); free(wb); free(ref); free(mag); free(xr);
}

/* gemm_bf16 (model.dtype: bf16): C = op(A) op(B) + beta C, bf16 A and B as
   stored (random bf16 bit patterns of normal values), padded row strides;
   against the CPU backend's op (exact products, fp32 sums on both: only the
   order of the sums differs). */
static void test_gemm_bf16(int tA, int tB, int M, int N, int K, int pad, float beta) {
    int rA = tA ? K : M, cA = tA ? M : K, rB = tB ? N : K, cB = tB ? K : N;
    int lda = cA + pad, ldb = cB + pad, ldc = N + pad;
    size_t na = (size_t)rA * lda + 1, nb = (size_t)rB * ldb + 1, nc = (size_t)M * ldc;
    uint16_t *ha = malloc(na * 2), *hb = malloc(nb * 2);
    for (size_t i = 0; i < na; i++) ha[i] = fp32_to_bf16(rnd_uniform(-1, 1));
    for (size_t i = 0; i < nb; i++) hb[i] = fp32_to_bf16(rnd_uniform(-1, 1));
    uint16_t *ac = be_alloc(cpu, na * 2), *ag = be_alloc(gpu, na * 2), *bc = be_alloc(cpu, nb * 2),
             *bg = be_alloc(gpu, nb * 2);
    cpu->copy_h2d(cpu, ac, ha, na * 2);
    gpu->copy_h2d(gpu, ag, ha, na * 2);
    cpu->copy_h2d(cpu, bc, hb, nb * 2);
    gpu->copy_h2d(gpu, bg, hb, nb * 2);
    ten C = beta != 0 ? t_rand(nc, -1, 1) : t_out(nc);
    cpu->gemm_bf16(cpu, tA, tB, M, N, K, ac, lda, bc, ldb, beta, C.c, NULL, ldc);
    gpu->gemm_bf16(gpu, tA, tB, M, N, K, ag, lda, bg, ldb, beta, C.g, NULL, ldc);
    char name[128];
    snprintf(name, sizeof name, "gemm_bf16 %c%c %dx%dx%d pad%d b%.0f", tA ? 'T' : 'N', tB ? 'T' : 'N', M, N, K, pad,
             beta);
    ten R = t_out((size_t)M * N); /* the rows of C (a beta-0 output's padding stays poisoned) */
    for (int r = 0; r < M; r++) {
        cpu->copy_d2d(cpu, R.c + (size_t)r * N, C.c + (size_t)r * ldc, N * sizeof(float));
        gpu->copy_d2d(gpu, R.g + (size_t)r * N, C.g + (size_t)r * ldc, N * sizeof(float));
    }
    check(name, &R, R.n, 1e-5);
    if (beta == 0.0f) { /* C16: bf16 output; each element within one bf16 rounding of the CPU's, padding untouched */
        uint16_t *c16 = be_alloc(cpu, nc * 2), *g16 = be_alloc(gpu, nc * 2);
        uint16_t *hc = malloc(nc * 2), *hg = malloc(nc * 2);
        poison_dev(gpu, g16, nc * 2);
        cpu->gemm_bf16(cpu, tA, tB, M, N, K, ac, lda, bc, ldb, 0.0f, NULL, c16, ldc);
        gpu->gemm_bf16(gpu, tA, tB, M, N, K, ag, lda, bg, ldb, 0.0f, NULL, g16, ldc);
        cpu->copy_d2h(cpu, hc, c16, nc * 2);
        gpu->copy_d2h(gpu, hg, g16, nc * 2);
        int ok = cpu->sync(cpu) == 0 && gpu->sync(gpu) == 0;
        size_t bad = 0;
        for (int r = 0; r < M; r++)
            for (int c = 0; c < ldc; c++) {
                size_t o = (size_t)r * ldc + c;
                float x = bf16_to_fp32(hc[o]), y = bf16_to_fp32(hg[o]);
                /* one rounding of either value, plus the fp32 sums' own difference (a few ulps of
                   sum_k |a b| ~ K / 4 for operands in [-1, 1]: cancellation leaves small results) */
                bad += c < N ? !(fabsf(x - y) <= 0x1p-8f * (fabsf(x) + fabsf(y)) + 4.0f * K * 0x1p-24f)
                             : hg[o] != 0xffff;
            }
        n_check++;
        if (!ok || bad) n_fail++;
        printf("%-4s %-44s %zu of %zu beyond one bf16 rounding (or padding written)\n", ok && !bad ? "ok" : "FAIL",
               "gemm_bf16 C16", bad, nc);
        cpu->free(cpu, c16), gpu->free(gpu, g16), free(hc), free(hg);
    }
    t_free(&R);
    t_free(&C);
    cpu->free(cpu, ac), gpu->free(gpu, ag), cpu->free(cpu, bc), gpu->free(gpu, bg);
    free(ha), free(hb);
}

/* logits z[n, V] and u[n] uploaded, ids[n] and logp[n] allocated: the sample
   op's device buffers; id_h[n], lp_h[n] and a host sampler scratch beside them */
typedef struct {
    float *z, *lp;
    double *u;
    int32_t *id;
    int32_t *id_h;
    float *lp_h;
    sampler_scratch sc;
} smp_dev;
static smp_dev smp_up(const float *z, const double *u, int n, int V) {
    smp_dev d = {be_alloc(gpu, (size_t)n * V * sizeof(float)), be_alloc(gpu, (size_t)n * sizeof(float)),
                 be_alloc(gpu, (size_t)n * sizeof(double)), be_alloc(gpu, (size_t)n * sizeof(int32_t)),
                 malloc((size_t)n * sizeof(int32_t)), malloc((size_t)n * sizeof(float)), {0}};
    if (!d.id_h || !d.lp_h || sampler_scratch_init(&d.sc, V)) {
        fprintf(stderr, "FATAL: out of memory\n");
        exit(1);
    }
    gpu->copy_h2d(gpu, d.z, z, (size_t)n * V * sizeof(float));
    gpu->copy_h2d(gpu, d.u, u, (size_t)n * sizeof(double));
    return d;
}
static void smp_free(smp_dev *d) {
    gpu->free(gpu, d->z);
    gpu->free(gpu, d->lp);
    gpu->free(gpu, d->u);
    gpu->free(gpu, d->id);
    free(d->id_h);
    free(d->lp_h);
    sampler_scratch_free(&d->sc);
}

/* sample: ids and log-probs against the host sampler (trainer/sampler.c) on
   the same logits and u. Greedy: ids equal (ties included: even rows get
   their maximum copied to two other ids, the lowest must win), logp within
   1e-6 relative (to max(|logp|, 1e-6): a peaked row's logp is ~-1e-12). Sampled (temperature 1 and 0.7): every id must be a valid
   inverse-CDF answer for its u under the host's distribution up to 1e-12
   (cumulative mass before it <= u < mass through it), logp of ids equal to
   the host's within 1e-5, and over all random-u rows of all shapes >= 99%
   of ids equal to the host's (test_sample_rate; a u within ~1e-15 of a CDF
   step may pick the neighbour: summation order). Rows 0 and n-1 use u = 0
   and u = 1 - 2^-53 (counted apart: near 1 the step is the tail's). */
static int smp_same, smp_rows, smp_edge_same, smp_edge_rows;
static void test_sample(int n, int V) {
    char name[96];
    float *z = malloc((size_t)n * V * sizeof(float));
    double *u = malloc((size_t)n * sizeof(double)), *pd = malloc((size_t)V * sizeof(double));
    for (int r = 0; r < n; r++) {
        float sc = 1.0f + 2.0f * (r % 4); /* flat to peaked rows */
        float *row = z + (size_t)r * V;
        int best = 0;
        for (int j = 0; j < V; j++) {
            row[j] = sc * rnd_uniform(-4.0f, 4.0f);
            if (row[j] > row[best]) best = j;
        }
        if (V >= 3 && r % 2 == 0) row[rnd_int(V)] = row[best], row[rnd_int(V)] = row[best];
        u[r] = (double)(rnd_u64() >> 11) * 0x1.0p-53;
    }
    u[0] = 0.0;
    if (n > 1) u[n - 1] = 0x1.fffffffffffffp-1;
    smp_dev d = smp_up(z, u, n, V);
    float *zg = d.z, *lpg = d.lp;
    double *ug = d.u;
    int32_t *idg = d.id;
    int32_t *id_h = d.id_h;
    float *lp_h = d.lp_h;
    sampler_scratch *sc = &d.sc;
    static const float temps[] = {0.0f, 1.0f, 0.7f};
    for (int k = 0; k < 3; k++) {
        float temp = temps[k];
        sampler_config c = {.temperature = temp, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f};
        poison_dev(gpu, idg, (size_t)n * sizeof(int32_t));
        poison_dev(gpu, lpg, (size_t)n * sizeof(float));
        gpu->sample(gpu, idg, lpg, zg, n, V, temp, 0, 1.0f, 0.0f, temp > 0 ? ug : NULL);
        gpu->copy_d2h(gpu, id_h, idg, (size_t)n * sizeof(int32_t));
        gpu->copy_d2h(gpu, lp_h, lpg, (size_t)n * sizeof(float));
        int sg = gpu->sync(gpu), same = 0, invalid = 0, first_diff = -1;
        double max_rel = 0;
        for (int r = 0; r < n; r++) {
            float lc;
            const float *row = z + (size_t)r * V;
            int32_t ic = sampler_sample(&c, row, V, u[r], sc, &lc), ig = id_h[r];
            int edge = r == 0 || r == n - 1;
            if (temp > 0) {
                if (edge) smp_edge_rows++, smp_edge_same += ic == ig;
                else smp_rows++, smp_same += ic == ig;
                /* valid inverse-CDF answer under the host's distribution */
                sampler_distribution(&c, row, V, sc, pd);
                double before = 0;
                for (int j = 0; j < ig && j < V; j++) before += pd[j];
                if (ig < 0 || ig >= V || !(pd[ig] > 0) || before > u[r] + 1e-12 || u[r] >= before + pd[ig] + 1e-12)
                    invalid++;
            }
            if (ic != ig) {
                if (first_diff < 0) first_diff = r;
                continue;
            }
            same++;
            double rel = fabs((double)lp_h[r] - lc) / fmax(fabs((double)lc), 1e-6);
            if (!(rel <= max_rel)) max_rel = isfinite(rel) ? rel : INFINITY;
        }
        double tol = temp > 0 ? 1e-5 : 1e-6;
        int ok = sg == 0 && max_rel <= tol && invalid == 0 && (temp > 0 || same == n);
        n_check++;
        if (!ok) n_fail++;
        snprintf(name, sizeof name, "sample T%.1f n%d V%d", temp, n, V);
        printf("%-4s %-44s ids equal %d/%d, logp rel %.3e (tol %.0e)", ok ? "ok" : "FAIL", name, same, n, max_rel,
               tol);
        if (invalid) printf("  %d ids outside their u's CDF step", invalid);
        if (first_diff >= 0) printf("  first differing row %d", first_diff);
        if (sg) printf("  cuda error: %s", gpu->err);
        printf("\n");
    }
    smp_free(&d);
    free(z); free(u); free(pd);
}

static void test_sample_rate(const char *what, int same, int rows, int edge_same, int edge_rows) {
    double rate = rows ? (double)same / rows : 0;
    int ok = rows > 0 && rate >= 0.99;
    n_check++;
    if (!ok) n_fail++;
    printf("%-4s %-44s %d/%d random-u rows (%.2f%%, need 99%%); u = 0, 1-2^-53 rows: %d/%d\n", ok ? "ok" : "FAIL",
           what, same, rows, 100 * rate, edge_same, edge_rows);
}

/* The host's mass before id i in its order: (prob desc, id asc) when it
   sorts (top_k in (0, V) or top_p in (0, 1)), else id order; pd[V] is its
   filtered distribution (sampler_distribution). */
static double smp_mass_before(const sampler_config *c, const double *pd, int V, int i) {
    int sorted = (c->top_k > 0 && c->top_k < V) || (c->top_p > 0 && c->top_p < 1);
    double before = 0;
    for (int j = 0; j < V; j++)
        if (sorted ? pd[j] > pd[i] || (pd[j] == pd[i] && j < i) : j < i) before += pd[j];
    return before;
}

/* sample with filters (top-k, top-p, min-p) against the host sampler on the
   same logits and u, the rules of test_sample: every id inside its u's step
   of the host's running mass (in the host's order, up to 1e-12), log-probs
   of equal ids within 1e-5 relative, >= 99% of random-u ids equal (rate
   line). Rows by r % 5: continuous logits (flat to peaked); 6 levels only
   (thousands of exactly equal logits, every cut falls inside a tie); all
   equal but 3 ids (one level holds the rest); continuous with the maximum
   copied to 3 ids and a block of V/4 equal logits; 2^m <= 8 equal logits
   and the rest at -200 (prob exactly 0), u = 0.5: probs 2^-m, so the
   running mass meets top_p * mass (top_p 0.5: the cut keeps the id that
   reaches it) and u * mass (the draw takes the next id) exactly. Settings: top_k in {1, 2, 50, V-1, V, V+5}, top_p in {0.1, 0.5, 0.9,
   1}, min_p in {0, 0.05, 0.5} at
   temperatures 1 and 0.7: all combinations (with RFT_TEST_QUICK, as in the
   emulation, V = 49152 gets each value alone and top-k 50 with each other
   filter: the emulation is slow there). */
static int flt_same, flt_rows, flt_edge_same, flt_edge_rows;
static void test_sample_filter(int n, int V) {
    float *z = malloc((size_t)n * V * sizeof(float));
    double *u = malloc((size_t)n * sizeof(double)), *pd = malloc((size_t)V * sizeof(double));
    for (int r = 0; r < n; r++) {
        float sc = 1.0f + 2.0f * (r / 5 % 3), *row = z + (size_t)r * V;
        int best = 0, pow2 = V >= 8 ? 8 : V >= 4 ? 4 : 2;
        for (int j = 0; j < V; j++) {
            switch (r % 5) {
            case 0: row[j] = sc * rnd_uniform(-4.0f, 4.0f); break;
            case 1: row[j] = 0.5f * sc * (float)rnd_int(6); break;
            case 2: row[j] = 0.0f; break;
            case 3: row[j] = j >= V / 2 && j < V / 2 + V / 4 ? 1.0f : sc * rnd_uniform(-4.0f, 4.0f); break;
            default: row[j] = j % (V / pow2) == 0 && j / (V / pow2) < pow2 ? 0.0f : -200.0f;
            }
            if (row[j] > row[best]) best = j;
        }
        if (r % 5 == 2) row[rnd_int(V)] = 2.0f, row[rnd_int(V)] = 1.0f, row[rnd_int(V)] = 1.0f;
        if (r % 5 == 3) row[rnd_int(V)] = row[best], row[rnd_int(V)] = row[best];
        u[r] = r % 5 == 4 ? 0.5 : (double)(rnd_u64() >> 11) * 0x1.0p-53;
    }
    u[0] = 0.0;
    if (n > 1) u[n - 1] = 0x1.fffffffffffffp-1;
    smp_dev d = smp_up(z, u, n, V);
    int32_t *id_h = d.id_h;
    float *lp_h = d.lp_h;
    sampler_scratch *sc = &d.sc;
    const int ks[] = {0, 1, 2, 50, V - 1, V, V + 5};
    const float ps[] = {1.0f, 0.1f, 0.5f, 0.9f}, mps[] = {0.0f, 0.05f, 0.5f}, temps[] = {1.0f, 0.7f};
    int n_cfg = 0, bad_cfg = 0, all = 0, all_same = 0, invalid_all = 0;
    double worst = 0;
    char first_bad[700] = "";
    for (int ti = 0; ti < 2; ti++)
        for (int ki = 0; ki < 7; ki++)
            for (int pi = 0; pi < 4; pi++)
                for (int mi = 0; mi < 3; mi++) {
                    if (ki == 0 && pi == 0 && mi == 0) continue; /* no filter: test_sample */
                    /* V = 49152 in the emulation: one setting at a time, and top-k 50 with each other filter */
                    if (V > 1000 && getenv("RFT_TEST_QUICK") && (ki != 0) + (pi != 0) + (mi != 0) > (ki == 3 ? 2 : 1))
                        continue;
                    sampler_config c = {.temperature = temps[ti], .top_k = ks[ki], .top_p = ps[pi], .min_p = mps[mi]};
                    poison_dev(gpu, d.id, (size_t)n * sizeof(int32_t));
                    poison_dev(gpu, d.lp, (size_t)n * sizeof(float));
                    gpu->sample(gpu, d.id, d.lp, d.z, n, V, c.temperature, c.top_k, c.top_p, c.min_p, d.u);
                    gpu->copy_d2h(gpu, id_h, d.id, (size_t)n * sizeof(int32_t));
                    gpu->copy_d2h(gpu, lp_h, d.lp, (size_t)n * sizeof(float));
                    int sg = gpu->sync(gpu), invalid = 0, same = 0;
                    double max_rel = 0;
                    for (int r = 0; r < n; r++) {
                        float lc;
                        const float *row = z + (size_t)r * V;
                        int32_t ic = sampler_sample(&c, row, V, u[r], sc, &lc), ig = id_h[r];
                        if (r == 0 || r == n - 1) flt_edge_rows++, flt_edge_same += ic == ig;
                        else flt_rows++, flt_same += ic == ig;
                        sampler_distribution(&c, row, V, sc, pd);
                        double before = ig >= 0 && ig < V ? smp_mass_before(&c, pd, V, ig) : 0;
                        if (ig < 0 || ig >= V || !(pd[ig] > 0) || before > u[r] + 1e-12 ||
                            u[r] >= before + pd[ig] + 1e-12)
                            invalid++;
                        if (ic != ig) continue;
                        same++;
                        double rel = fabs((double)lp_h[r] - lc) / fmax(fabs((double)lc), 1e-6);
                        /* a top-p or min-p cut that falls within float rounding of a token's mass may keep it
                           on one side and not on the other: the same id, drawn from a distribution
                           renormalised over one more or one less token. Such a row is held to the host's
                           log-prob with the cut moved by 1e-6 relative either way. */
                        for (int side = -1; side <= 1 && !(rel <= 1e-5); side += 2) {
                            sampler_config c2 = c;
                            c2.top_p = c.top_p < 1.0f ? c.top_p * (1.0f + side * 1e-6f) : c.top_p;
                            c2.min_p = c.min_p * (1.0f + side * 1e-6f);
                            float l2;
                            if (sampler_sample(&c2, row, V, u[r], sc, &l2) == ig)
                                rel = fmin(rel, fabs((double)lp_h[r] - l2) / fmax(fabs((double)l2), 1e-6));
                        }
                        if (!(rel <= max_rel)) max_rel = isfinite(rel) ? rel : INFINITY;
                    }
                    n_cfg++, all += n, all_same += same, invalid_all += invalid;
                    if (max_rel > worst) worst = max_rel;
                    if (sg || invalid || !(max_rel <= 1e-5)) {
                        if (!bad_cfg++)
                            snprintf(first_bad, sizeof first_bad, "T%.1f k%d p%.2f minp%.2f: %d invalid, logp rel %.2e%s%s",
                                     (double)c.temperature, c.top_k, (double)c.top_p, (double)c.min_p, invalid, max_rel,
                                     sg ? ", cuda error: " : "", sg ? gpu->err : "");
                    }
                }
    n_check++;
    if (bad_cfg) n_fail++;
    char name[96];
    snprintf(name, sizeof name, "sample filters n%d V%d", n, V);
    printf("%-4s %-44s %d settings, ids equal %d/%d, %d outside their u's step, logp rel %.3e (tol 1e-5)%s%s\n",
           bad_cfg ? "FAIL" : "ok", name, n_cfg, all_same, all, invalid_all, worst, bad_cfg ? "; first bad: " : "",
           first_bad);
    smp_free(&d);
    free(z); free(u); free(pd);
}

/* sample draws follow softmax(z / T): N rows of the same logits (V = 8,
   T = 0.7), each with its own u from a fixed stream, chi-square of the id
   counts against the host sampler's distribution; df 7, fails above 24.32
   (p = 0.001; deterministic: the u stream is fixed). */
static void test_sample_chi2(int N) {
    enum { V = 8 };
    static const float row[V] = {0.0f, 1.0f, -1.0f, 2.0f, 0.5f, -1.5f, 1.5f, 0.0f};
    const float temp = 0.7f;
    float *z = malloc((size_t)N * V * sizeof(float));
    double *u = malloc((size_t)N * sizeof(double));
    uint64_t keep = rng_state;
    rng_state = 0x5A3D1E;
    for (int r = 0; r < N; r++) {
        memcpy(z + (size_t)r * V, row, sizeof row);
        u[r] = (double)(rnd_u64() >> 11) * 0x1.0p-53;
    }
    rng_state = keep;
    smp_dev d = smp_up(z, u, N, V);
    float *zg = d.z, *lpg = d.lp;
    double *ug = d.u;
    int32_t *idg = d.id;
    gpu->sample(gpu, idg, lpg, zg, N, V, temp, 0, 1.0f, 0.0f, ug);
    int32_t *id = malloc((size_t)N * sizeof(int32_t));
    gpu->copy_d2h(gpu, id, idg, (size_t)N * sizeof(int32_t));
    int sg = gpu->sync(gpu), bad = 0;
    sampler_config c = {.temperature = temp, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f};
    sampler_scratch sc;
    double p[V], chi2 = 0;
    long cnt[V] = {0};
    if (sampler_scratch_init(&sc, V)) exit(1);
    sampler_distribution(&c, row, V, &sc, p);
    for (int r = 0; r < N; r++) {
        if (id[r] < 0 || id[r] >= V) bad++;
        else cnt[id[r]]++;
    }
    for (int j = 0; j < V; j++) chi2 += (cnt[j] - N * p[j]) * (cnt[j] - N * p[j]) / (N * p[j]);
    int ok = sg == 0 && bad == 0 && chi2 <= 24.32;
    n_check++;
    if (!ok) n_fail++;
    printf("%-4s %-44s chi2 %.2f (df 7, limit 24.32), %d ids out of range\n", ok ? "ok" : "FAIL",
           "sample distribution V8 T0.7", chi2, bad);
    if (!ok) {
        for (int j = 0; j < V; j++) printf("     id %d: %ld drawn, %.1f expected\n", j, cnt[j], N * p[j]);
    }
    sampler_scratch_free(&sc);
    smp_free(&d);
    free(z); free(u); free(id);
}

/* errors are reported, sticky, with file:line */
/* ---- bf16 KV cache (kv_write_bf16, attention_cached_bf16) ----
 * A poisoned bf16 cache (0xffff: a NaN, so a read of a never-written
 * position shows as NaN in the output) gets a prefill of every slot (many
 * tokens per slot) and then one decode token per slot (T = S). After each
 * write the whole cache is compared bit for bit with the reference
 * (fp32_to_bf16 of each written k, v; every other entry still the poison);
 * the outputs (poisoned before) against a double reference computed on the
 * bf16-rounded K/V (fp32 math on identical inputs: 1e-5), and against the
 * CPU backend's ops when it has them. */

/* one backend's run; cache bit mismatches in bad[phase], outputs [T+S, Hq, hd]
   in out. Returns be->sync's result. */
static int kvb_run(backend *be, int S, int T, int Hq, int Hkv, int hd, int max_seq, const int32_t *slot,
                   const int32_t *pos, const float *k, const float *v, const float *q, const uint16_t *ref0,
                   const uint16_t *ref1, float *out, size_t bad[2]) {
    int kvd = Hkv * hd, N = T + S;
    size_t nc = (size_t)S * max_seq * kvd, nq = (size_t)N * Hq * hd, first;
    float scale = 1.0f / sqrtf((float)hd);
    uint16_t *kc = be_alloc(be, nc * 2), *vc = be_alloc(be, nc * 2);
    int32_t *ds = i_up(be, slot, N), *dp = i_up(be, pos, N);
    float *dk = be_alloc(be, (size_t)N * kvd * 4), *dv = be_alloc(be, (size_t)N * kvd * 4);
    float *dq = be_alloc(be, nq * 4), *dout = be_alloc(be, nq * 4);
    poison_dev(be, kc, nc * 2);
    poison_dev(be, vc, nc * 2);
    poison_dev(be, dout, nq * 4);
    be->copy_h2d(be, dk, k, (size_t)N * kvd * 4);
    be->copy_h2d(be, dv, v, (size_t)N * kvd * 4);
    be->copy_h2d(be, dq, q, nq * 4);
    for (int ph = 0; ph < 2; ph++) {
        int t0 = ph ? T : 0, nt = ph ? S : T;
        be->kv_write_bf16(be, kc, vc, dk + (size_t)t0 * kvd, dv + (size_t)t0 * kvd, ds + t0, dp + t0, nt, kvd,
                          max_seq);
        bad[ph] = bf16_mismatches(be, kc, ph ? ref1 : ref0, nc, 0, 0xffff, &first) +
                  bf16_mismatches(be, vc, ph ? ref1 + nc : ref0 + nc, nc, 0, 0xffff, &first);
        size_t qo = (size_t)t0 * Hq * hd;
        be->attention_cached_bf16(be, dout + qo, dq + qo, kc, vc, ds + t0, dp + t0, nt, Hq, Hkv, hd, max_seq, scale);
    }
    be->copy_d2h(be, out, dout, nq * 4);
    int rc = be->sync(be);
    be->free(be, kc); be->free(be, vc); be->free(be, ds); be->free(be, dp);
    be->free(be, dk); be->free(be, dv); be->free(be, dq); be->free(be, dout);
    return rc;
}

/* ||a - b|| / ||b|| over n values (NaN anywhere: infinity) */
static double rel_err(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_kvcache_bf16(int S, const int *lens, int Hq, int Hkv, int hd, int max_seq) {
    int kvd = Hkv * hd, T = 0, G = Hq / Hkv;
    for (int s = 0; s < S; s++) T += lens[s];
    int N = T + S;
    size_t nc = (size_t)S * max_seq * kvd, nq = (size_t)N * Hq * hd;
    int32_t *slot = malloc(N * sizeof(int32_t)), *pos = malloc(N * sizeof(int32_t));
    for (int s = 0, t = 0; s < S; s++)
        for (int p = 0; p < lens[s]; p++, t++) { slot[t] = s; pos[t] = p; }
    for (int s = 0; s < S; s++) { slot[T + s] = s; pos[T + s] = lens[s]; } /* decode step */
    float *k = malloc((size_t)N * kvd * 4), *v = malloc((size_t)N * kvd * 4), *q = malloc(nq * 4);
    for (size_t i = 0; i < (size_t)N * kvd; i++) {
        k[i] = rnd_uniform(-2, 2);
        v[i] = rnd_uniform(-1, 1);
        if (i % 7 == 3) { /* exact ties between two bf16 values, rounding both ways */
            uint32_t u = ((uint32_t)fp32_to_bf16(k[i]) << 16) | 0x8000u;
            memcpy(&k[i], &u, 4);
        }
    }
    for (size_t i = 0; i < nq; i++) q[i] = rnd_uniform(-2, 2);
    /* reference caches (k then v, [2][nc]) after the prefill and after the decode write */
    uint16_t *ref0 = malloc(2 * nc * 2), *ref1 = malloc(2 * nc * 2);
    for (size_t i = 0; i < 2 * nc; i++) ref0[i] = 0xffff;
    for (int t = 0; t < N; t++) {
        if (t == T) memcpy(ref1, ref0, 2 * nc * 2);
        uint16_t *r = t < T ? ref0 : ref1;
        size_t row = ((size_t)slot[t] * max_seq + pos[t]) * kvd;
        for (int e = 0; e < kvd; e++) {
            r[row + e] = fp32_to_bf16(k[(size_t)t * kvd + e]);
            r[nc + row + e] = fp32_to_bf16(v[(size_t)t * kvd + e]);
        }
    }
    /* reference attention in double on the widened cache (positions 0..pos[t]) */
    double *ref = malloc(nq * sizeof(double)), *w = malloc((size_t)max_seq * sizeof(double));
    for (int t = 0; t < N; t++)
        for (int h = 0; h < Hq; h++) {
            const float *qr = q + ((size_t)t * Hq + h) * hd;
            size_t base = (size_t)slot[t] * max_seq * kvd + (size_t)(h / G) * hd;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= pos[t]; j++) {
                double a = 0;
                for (int d = 0; d < hd; d++) a += (double)qr[d] * bf16_to_fp32(ref1[base + (size_t)j * kvd + d]);
                w[j] = a / sqrt((double)hd);
                if (w[j] > mx) mx = w[j];
            }
            for (int j = 0; j <= pos[t]; j++) sum += (w[j] = exp(w[j] - mx));
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int j = 0; j <= pos[t]; j++) o += w[j] * bf16_to_fp32(ref1[nc + base + (size_t)j * kvd + d]);
                ref[((size_t)t * Hq + h) * hd + d] = o / sum;
            }
        }
    float *out[2] = {malloc(nq * 4), malloc(nq * 4)};
    backend *bes[2] = {gpu, cpu->kv_write_bf16 && cpu->attention_cached_bf16 ? cpu : NULL};
    for (int b = 0; b < 2; b++) {
        backend *be = bes[b];
        if (!be) continue;
        size_t bad[2];
        int rc = kvb_run(be, S, T, Hq, Hkv, hd, max_seq, slot, pos, k, v, q, ref0, ref1, out[b], bad);
        char name[160], extra[640] = "";
        if (rc) snprintf(extra, sizeof extra, "  error: %s", be->err);
        snprintf(name, sizeof name, "kv_write_bf16 %s S%d T%d+%d kvd%d ms%d", be->name, S, T, S, kvd, max_seq);
        report(name, !rc && !bad[0] && !bad[1], (double)(bad[0] + bad[1]) / (4 * nc), 0, extra);
        size_t np = (size_t)T * Hq * hd;
        double e0 = rc ? INFINITY : rel_err(out[b], ref, np), e1 = rc ? INFINITY : rel_err(out[b] + np, ref + np, nq - np);
        snprintf(name, sizeof name, "attention_cached_bf16 %s prefill Hq%d Hkv%d hd%d", be->name, Hq, Hkv, hd);
        report(name, e0 <= 1e-5, e0, 1e-5, extra);
        snprintf(name, sizeof name, "attention_cached_bf16 %s decode S%d", be->name, S);
        report(name, e1 <= 1e-5, e1, 1e-5, extra);
    }
    if (bes[1]) { /* the two backends against each other */
        double *oc = malloc(nq * sizeof(double));
        for (size_t i = 0; i < nq; i++) oc[i] = out[1][i];
        double e = rel_err(out[0], oc, nq);
        char name[160];
        snprintf(name, sizeof name, "attention_cached_bf16 %s vs %s", gpu->name, cpu->name);
        report(name, e <= 1e-5, e, 1e-5, "");
        free(oc);
    }
    free(slot); free(pos); free(k); free(v); free(q); free(ref0); free(ref1); free(ref); free(w);
    free(out[0]); free(out[1]);
}

/* kv_write_bf16 over the special values of cast_bf16 (NaNs keep their sign
   and become quiet, infinities, overflow, ties, subnormals), bit for bit,
   under two poison patterns */
static void test_kv_write_bf16_special(void) {
    enum { S = 2, MS = 3, T = 3, KVD = N_BF16_SPECIAL };
    static const int32_t slot[T] = {1, 0, 1}, pos[T] = {2, 0, 0};
    float k[T * KVD], v[T * KVD];
    uint16_t ref[2][2 * S * MS * KVD];
    for (int t = 0; t < T; t++)
        for (int e = 0; e < KVD; e++) {
            memcpy(&k[t * KVD + e], &bf16_special[(e + 5 * t) % KVD], 4);
            memcpy(&v[t * KVD + e], &bf16_special[(KVD - 1 - e + 7 * t) % KVD], 4);
        }
    static const uint16_t poisons[2] = {0xffffu, 0x0000u};
    const size_t nc = (size_t)S * MS * KVD;
    for (int p = 0; p < 2; p++) {
        for (size_t i = 0; i < 2 * nc; i++) ref[p][i] = poisons[p];
        for (int t = 0; t < T; t++)
            for (int e = 0; e < KVD; e++) {
                size_t r = ((size_t)slot[t] * MS + pos[t]) * KVD + e;
                ref[p][r] = fp32_to_bf16(k[t * KVD + e]);
                ref[p][nc + r] = fp32_to_bf16(v[t * KVD + e]);
            }
    }
    backend *bes[2] = {gpu, cpu->kv_write_bf16 ? cpu : NULL};
    for (int b = 0; b < 2; b++) {
        backend *be = bes[b];
        if (!be) continue;
        uint16_t *kc = be_alloc(be, nc * 2), *vc = be_alloc(be, nc * 2), pois[2 * S * MS * KVD];
        int32_t *ds = i_up(be, slot, T), *dp = i_up(be, pos, T);
        float *dk = be_alloc(be, sizeof k), *dv = be_alloc(be, sizeof v);
        be->copy_h2d(be, dk, k, sizeof k);
        be->copy_h2d(be, dv, v, sizeof v);
        size_t bad = 0, first;
        for (int p = 0; p < 2; p++) {
            for (size_t i = 0; i < nc; i++) pois[i] = poisons[p];
            be->copy_h2d(be, kc, pois, nc * 2);
            be->copy_h2d(be, vc, pois, nc * 2);
            be->kv_write_bf16(be, kc, vc, dk, dv, ds, dp, T, KVD, MS);
            bad += bf16_mismatches(be, kc, ref[p], nc, 0, poisons[p], &first);
            bad += bf16_mismatches(be, vc, ref[p] + nc, nc, 0, poisons[p], &first);
        }
        char name[128];
        snprintf(name, sizeof name, "kv_write_bf16 %s special values", be->name);
        report(name, bad == 0, (double)bad / (4 * nc), 0, "");
        be->free(be, kc); be->free(be, vc); be->free(be, ds); be->free(be, dp); be->free(be, dk); be->free(be, dv);
    }
}

static void test_errors(void) {
    char err[256];
    backend *be = backend_cuda_create(0, err, sizeof err);
    int32_t ids[3] = {0, -4, 1};
    int32_t *d = i_up(be, ids, 3);
    float *out = be_alloc(be, 3 * 8 * sizeof(float)), *tab = be_alloc(be, 2 * 8 * sizeof(float));
    be->embedding_forward(be, out, tab, d, 3, 8);
    int rc = be->sync(be);
    int ok = rc == -1 && strstr(be->err, "negative token id at position 1") && strstr(be->err, ".cu:");
    n_check++;
    if (!ok) n_fail++;
    printf("%-4s %-44s sync %d, err \"%s\"\n", ok ? "ok" : "FAIL", "negative id reported at sync", rc, be->err);
    be->destroy(be);
    /* an environment switch with a value it does not take: no backend, one line naming it */
    const char *bad[][3] = {{"RFT_CUDA_ATTN", "foo", "expected wmma or mma"},
                            {"RFT_CUDA_TF32", "off", "expected 0 or 1"},
                            {"RFT_CUDA_TC_MIN_BLOCKS", "2", "expected 1 or 3"}};
    for (int i = 0; i < 3; i++) {
        err[0] = 0;
        char *keep = getenv(bad[i][0]) ? strdup(getenv(bad[i][0])) : NULL;
        setenv(bad[i][0], bad[i][1], 1);
        backend *b = backend_cuda_create(0, err, sizeof err);
        if (keep) setenv(bad[i][0], keep, 1);
        else unsetenv(bad[i][0]);
        free(keep);
        ok = !b && strstr(err, bad[i][0]) && strstr(err, bad[i][2]) && !strchr(err, '\n');
        n_check++;
        if (!ok) n_fail++;
        printf("%-4s %-44s \"%s\"\n", ok ? "ok" : "FAIL", "bad environment switch refused", err);
        if (b) b->destroy(b);
    }
}

int main(void) {
    char err[512];
    setenv("RFT_CUDA_TF32", "0", 1);
    gpu = backend_cuda_create(0, err, sizeof err);
    if (!gpu) {
        if (strncmp(err, "no CUDA device", 14) == 0) printf("SKIPPED: %s\n", err);
        else printf("SKIPPED: no CUDA device (%s)\n", err);
        return 77;
    }
    cpu = backend_cpu_create(0);
    const char *s = getenv("RFT_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    rng_state = seed;
    printf("test_cuda_ops: seed %llu (RFT_TEST_SEED to repeat)\n", (unsigned long long)seed);

    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) test_matmul(tA, tB, 67, 45, 129, 0, 1.0f, 0.0f, 1);
    test_matmul(0, 1, 33, 70, 65, 3, 0.5f, 1.0f, 1);
    test_matmul(1, 0, 31, 17, 100, 2, 1.0f, 1.0f, 3);
    test_matmul(0, 0, 64, 96, 40, 0, -1.0f, 0.0f, 5);
    test_matmul(0, 1, 256, 192, 576, 0, 1.0f, 0.0f, 1);

    test_elementwise(1);
    test_elementwise(100003);
    test_bias(333, 97);
    test_bias(1, 1);
    test_embedding(50, 517, 129);
    test_embedding(1000, 64, 576);
    /* the backward's blocks cover 8 rows per warp-round, at most 512 blocks: 300 ends
       mid-block, 5 is under one block, 3000 = 375 blocks of one row per warp, 8205 has
       three rows per warp and a last block of 21 rows; D 7301 is past the emulated
       device's shared memory (the two-pass path) */
    test_rmsnorm(300, 577);
    test_rmsnorm(5, 64);
    test_rmsnorm(3000, 97);
    test_rmsnorm(8205, 33);
    test_rmsnorm(3, 7301);
    test_rope(200, 3, 64, 5000);
    test_rope(37, 2, 18, 40000);
    test_rope_bf16(200, 9, 3, 64, 5000);
    test_rope_bf16(37, 2, 1, 18, 40000);
    test_rope_bf16(50, 4, 4, 128, 300);

    { int l[] = {1, 70, 130}; test_attention(3, l, 4, 2, 64); }
    { int l[] = {257, 64}; test_attention(2, l, 3, 1, 40); }
    { int l[] = {0, 63, 65, 1}; test_attention(4, l, 2, 2, 80); }
    { int l[] = {190}; test_attention(1, l, 2, 1, 128); }
    { int l[] = {100, 29}; test_attention(2, l, 3, 1, 36); } /* hd % 8 != 0: bf16 tiles load one element at a time */
    test_attention_variant();
    { int l[] = {1500}; test_attention(1, l, 2, 1, 64); }
    {
        int l[40];
        for (int b = 0; b < 40; b++) l[b] = 1 + rnd_int(50);
        test_attention(40, l, 3, 3, 32);
    }
    const char *only = getenv("RFT_TEST_ONLY");
    if (only && !strcmp(only, "attention")) goto done; /* gpu_check.sh's racecheck run */

    { int l[] = {1, 33, 200}; test_kvcache(3, l, 6, 2, 64, 256); }
    { int l[] = {70, 5}; test_kvcache(2, l, 2, 2, 128, 80); }
    { int l[] = {17}; test_kvcache(1, l, 3, 1, 24, 20); }
    test_logprob(37, 32003);
    test_logprob(3, 7);
    {
        static const int Vs[] = {49152, 97, 3}, ns[] = {1, 7, 64};
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) test_sample(ns[j], Vs[i]);
        test_sample_rate("sample ids equal to the host sampler's", smp_same, smp_rows, smp_edge_same, smp_edge_rows);
        /* rows per V; fewer in the emulation (RFT_TEST_QUICK), where these cost ~10 s */
        static const int fV[] = {3, 97, 49152}, fn[] = {25, 25, 10}, fn_quick[] = {25, 10, 6};
        for (int i = 0; i < 3; i++) test_sample_filter(getenv("RFT_TEST_QUICK") ? fn_quick[i] : fn[i], fV[i]);
        test_sample_rate("sample filters: ids equal to the host's", flt_same, flt_rows, flt_edge_same, flt_edge_rows);
        test_sample_chi2(getenv("RFT_TEST_QUICK") ? 4000 : 100000);
    }
    test_adamw(100003);
    test_cast_bf16(1);
    test_cast_bf16(24);
    test_cast_bf16(100003);
    {
        static const int Ms[] = {1, 7, 64, 300}, Ns[] = {1, 97, 576}, Ks[] = {1, 33, 576, 1536};
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 3; j++)
                    for (int k = 0; k < 4; k++) test_matmul_bf16(Ms[i], Ns[j], Ks[k], (float)b);
    }
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) {
            test_gemm_bf16(tA, tB, 67, 45, 129, 0, 0.0f);
            test_gemm_bf16(tA, tB, 31, 17, 100, 3, 1.0f);
            test_gemm_bf16(tA, tB, 1, 576, 1536, 0, 1.0f);
        }
    test_gemm_bf16(0, 1, 512, 1536, 576, 0, 0.0f); /* the SmolLM2 shapes of model.dtype bf16 */
    test_gemm_bf16(1, 0, 576, 1536, 512, 0, 1.0f);
    test_gemm_bf16(0, 0, 512, 576, 1536, 0, 0.0f);
    test_gemm_bf16(0, 1, 5, 9, 0, 0, 0.0f);         /* K = 0: C = 0 */
    test_kv_write_bf16_special();
    { int l[] = {1, 33, 200}; test_kvcache_bf16(3, l, 6, 2, 64, 257); }  /* GQA 3, odd max_seq */
    { int l[] = {70, 5}; test_kvcache_bf16(2, l, 2, 2, 128, 81); }       /* GQA 1, hd 128 */
    { int l[] = {17}; test_kvcache_bf16(1, l, 3, 1, 128, 19); }          /* GQA 3, hd 128 */
    {
        int l[9];
        for (int s = 0; s < 9; s++) l[s] = 1 + rnd_int(40);
        test_kvcache_bf16(9, l, 4, 4, 64, 45); /* many slots: decode T = 9 */
    }
    test_errors();

    /* the matmuls again with TF32 tensor-core math (the backend's default) */
    setenv("RFT_CUDA_TF32", "1", 1);
    backend *fp32 = gpu;
    gpu = backend_cuda_create(0, err, sizeof err);
    if (!gpu) {
        printf("FAIL cannot create a second CUDA backend: %s\n", err);
        return 1;
    }
    mm_tol = 2e-3;
    mm_mode = "tf32";
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) test_matmul(tA, tB, 67, 45, 129, 0, 1.0f, 0.0f, 1);
    test_matmul(1, 0, 31, 17, 100, 2, 1.0f, 1.0f, 3);
    test_matmul(0, 1, 512, 384, 576, 0, 1.0f, 0.0f, 1);
    test_matmul_bf16(64, 576, 576, 0.0f); /* bf16 inputs: the math mode changes nothing */
    /* the fp32 attention pair on the TF32 tensor-core kernels (cuda_attention_tf32.cu) */
    attn_tol = 1e-3, attn_with_bf16 = 0;
    { int l[] = {1, 70, 130}; test_attention(3, l, 4, 2, 64); }
    { int l[] = {257, 64}; test_attention(2, l, 3, 1, 40); }
    { int l[] = {0, 63, 65, 1}; test_attention(4, l, 2, 2, 80); }
    { int l[] = {190}; test_attention(1, l, 2, 1, 128); }
    { int l[] = {100, 29}; test_attention(2, l, 3, 1, 34); } /* hd % 4 != 0: element loads */
    { int l[] = {1500}; test_attention(1, l, 2, 1, 64); }
    gpu->destroy(gpu);
    gpu = fp32;

done:
    printf("%d of %d checks failed\n", n_fail, n_check);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return n_fail ? 1 : 0;
}
