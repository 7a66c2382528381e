/* tests/test_ops.c: every op of the CPU backend against a naive
 * double-precision reference (forward) and against central finite
 * differences of a scalar loss computed in double from that reference
 * (backward), on random shapes with odd sizes; plus thread-count
 * independence (1 vs 2 threads bitwise equal), run-to-run determinism, and the
 * OpenBLAS core-type choice. One line per check; exit 1 on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/cpu_internal.h"
#include "cpu/cpu_setup.h"
#include "util.h"

static int n_fail, n_check;
static uint64_t g_key = 12345;
static uint64_t g_ctr;

static void check(const char *what, double err, double tol) {
    int ok = err <= tol; /* NaN fails */
    n_check++;
    if (!ok) n_fail++;
    printf("%s %-58s err %.3e tol %.1e\n", ok ? "ok  " : "FAIL", what, err, tol);
}
static void check_true(const char *what, int cond) {
    n_check++;
    if (!cond) n_fail++;
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
}

static double randn(void) { return rng_normal(g_key, g_ctr++); }
static float *randf(size_t n, double sd) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * randn());
    return x;
}
static double *todouble(const float *x, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}
static float *copyf(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}
/* ||a - b|| / ||b|| (absolute when b == 0) */
static double relerr(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static int same(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

/* ---------- finite differences ----------
 * loss(ctx) is a double-precision function of the double arrays the caller
 * registered; fd_check perturbs `x` at `ncoord` coordinates (all when
 * ncoord >= n) and compares with the analytic gradient `g` (fp32). */
typedef double (*loss_fn)(void *ctx);
static double fd_check(void *ctx, loss_fn loss, double *x, size_t n, const float *g, size_t ncoord) {
    double h = 1e-5, num = 0, den = 0;
    size_t m = ncoord >= n ? n : ncoord;
    for (size_t c = 0; c < m; c++) {
        size_t i = m == n ? c : (size_t)(rng_uniform(g_key, g_ctr++) * n);
        double x0 = x[i];
        x[i] = x0 + h;
        double lp = loss(ctx);
        x[i] = x0 - h;
        double lm = loss(ctx);
        x[i] = x0;
        double fd = (lp - lm) / (2 * h), d = g[i] - fd;
        num += d * d;
        den += fd * fd;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* the same at the listed coordinates */
static double fd_check_at(void *ctx, loss_fn loss, double *x, const size_t *idx, size_t m, const float *g) {
    double h = 1e-5, num = 0, den = 0;
    for (size_t c = 0; c < m; c++) {
        size_t i = idx[c];
        double x0 = x[i];
        x[i] = x0 + h;
        double lp = loss(ctx);
        x[i] = x0 - h;
        double lm = loss(ctx);
        x[i] = x0;
        double fd = (lp - lm) / (2 * h), d = g[i] - fd;
        num += d * d;
        den += fd * fd;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ================= matmul ================= */

static void test_matmul(backend *be) {
    /* the last four are single products with few rows: the decode path
       (row-times-weights kernel for A @ B^T) and its tails */
    int shapes[][3] = {{7, 5, 33}, {1, 13, 4}, {33, 48, 100}, {64, 1, 7},
                       {1, 37, 129}, {7, 53, 100}, {64, 29, 70}, {6, 4, 16}};
    for (int si = 0; si < 8; si++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int acc = 0; acc < 2; acc++) {
                    int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2], batch = si == 2 || si >= 4 ? 1 : 3;
                    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
                    int lda = ac + 3, ldb = bc + 1, ldc = N + 2;
                    long sA = (long)ar * lda + 5, sB = (long)br * ldb + 2, sC = (long)M * ldc + 7;
                    float *A = randf(sA * batch, 1), *Bm = randf(sB * batch, 1), *C = randf(sC * batch, 1);
                    double *ref = todouble(C, sC * batch);
                    float alpha = 0.7f, beta = acc ? 1.0f : 0.0f;
                    for (int b = 0; b < batch; b++)
                        for (int i = 0; i < M; i++)
                            for (int j = 0; j < N; j++) {
                                double s = 0;
                                for (int k = 0; k < K; k++) {
                                    double a = ta ? A[b * sA + (long)k * lda + i] : A[b * sA + (long)i * lda + k];
                                    double bb = tb ? Bm[b * sB + (long)j * ldb + k] : Bm[b * sB + (long)k * ldb + j];
                                    s += a * bb;
                                }
                                double *r = &ref[b * sC + (long)i * ldc + j];
                                *r = alpha * s + (acc ? *r : 0.0);
                            }
                    be->matmul(be, ta, tb, M, N, K, alpha, A, lda, sA, Bm, ldb, sB, beta, C, ldc, sC, batch);
                    char name[128];
                    snprintf(name, sizeof name, "matmul M%d N%d K%d tA%d tB%d batch%d %s", M, N, K, ta, tb, batch,
                             acc ? "beta=1" : "beta=0");
                    check(name, relerr(C, ref, sC * batch), 1e-6);
                    free(A); free(Bm); free(C); free(ref);
                }
}

/* A row of x @ W^T is bitwise the same computed alone or among other rows
   (decode: a completion must not depend on the batch around it). */
static void test_matmul_row_independence(backend *be) {
    int N = 300, K = 576, M = 7;
    float *X = randf((size_t)M * K, 1), *W = randf((size_t)N * K, 1);
    float *all = calloc((size_t)M * N, sizeof(float)), *one = calloc(N, sizeof(float));
    be->matmul(be, 0, 1, M, N, K, 1.0f, X, K, 0, W, K, 0, 0.0f, all, N, 0, 1);
    int same = 1;
    for (int r = 0; r < M; r++) {
        be->matmul(be, 0, 1, 1, N, K, 1.0f, X + (size_t)r * K, K, 0, W, K, 0, 0.0f, one, N, 0, 1);
        same &= !memcmp(one, all + (size_t)r * N, N * sizeof(float));
    }
    check("matmul x@W^T: each of 7 rows alone == within the batch (bitwise)", same ? 0.0 : 1.0, 0.0);
    free(X), free(W), free(all), free(one);
}

/* ================= bf16 weights ================= */

/* reference rounding: fp32 -> bf16 (nearest even) via double arithmetic, not
   the bit trick under test: the two bf16 neighbours of x, pick the closer,
   ties to the even mantissa */
static uint16_t bf16_ref(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if (isnan(x)) return (uint16_t)((u >> 16) | 0x40);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1); /* truncation and the next one away from 0 */
    uint32_t ul = (uint32_t)lo << 16, uh = (uint32_t)hi << 16;
    float fl, fh;
    memcpy(&fl, &ul, 4);
    memcpy(&fh, &uh, 4);
    if ((u & 0xffff) == 0) return lo;
    if ((lo & 0x7fff) == 0x7f7f && (u & 0xffff) >= 0x8000) /* rounds past the largest finite: infinity */
        return (uint16_t)((lo & 0x8000) | 0x7f80);
    double dl = fabs((double)x - fl), dh = fabs((double)fh - x);
    if (dl < dh) return lo;
    if (dh < dl) return hi;
    return (lo & 1) ? hi : lo;
}
static double bf16_val(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_bf16(backend *be1, backend *be2) {
    /* cast: random normals at several scales, exact ties, specials */
    size_t n = 200003;
    float *x = randf(n, 1);
    for (size_t i = 0; i < n; i += 7) x[i] *= 1e-30f;
    for (size_t i = 3; i < n; i += 11) x[i] *= 1e30f;
    uint32_t special[] = {0x3f808000u, 0x3f818000u, 0xbf808000u, 0x7f7fffffu, 0xff7fffffu, 0x7f800000u,
                          0xff800000u, 0x7fc00001u, 0xffa00000u, 0x00000001u, 0x80008000u, 0x00000000u,
                          0x80000000u, 0x7f7f8000u, 0x3f7fffffu};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) memcpy(&x[i], &special[i], 4);
    uint16_t *h1 = malloc(n * 2), *h2 = malloc(n * 2);
    be1->cast_bf16(be1, h1, x, n);
    be2->cast_bf16(be2, h2, x, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t r = bf16_ref(x[i]);
        if (isnan(x[i]) ? !isnan(bf16_val(h1[i])) : h1[i] != r) {
            if (bad < 5) printf("  cast_bf16: x %a (0x%08x) -> 0x%04x, want 0x%04x\n", x[i], ((uint32_t *)x)[i], h1[i], r);
            bad++;
        }
    }
    check("cast_bf16: 200003 values incl. ties, inf, NaN, denormals (bitwise)", (double)bad, 0);
    check_true("cast_bf16: 1 thread == 2 threads (bitwise)", same(h1, h2, n * 2));
    free(x), free(h1), free(h2);

    /* matmul: against a double reference over the bf16-rounded operands
       (products exact; only fp32 accumulation differs) */
    int shapes[][3] = {{1, 1, 1}, {1, 97, 33}, {7, 576, 576}, {64, 97, 1536}, {13, 5, 31},
                       {65, 37, 64}, {300, 40, 100}, {6, 4, 32}, {2, 1, 577}};
    for (int si = 0; si < 9; si++)
        for (int acc = 0; acc < 2; acc++) {
            int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
            float *X = randf((size_t)M * K, 1), *Wf = randf((size_t)N * K, 0.05), *Y = randf((size_t)M * N, 1);
            uint16_t *W = malloc((size_t)N * K * 2);
            be1->cast_bf16(be1, W, Wf, (size_t)N * K);
            double *ref = todouble(Y, (size_t)M * N);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int k = 0; k < K; k++) s += bf16_val(bf16_ref(X[(size_t)i * K + k])) * bf16_val(W[(size_t)j * K + k]);
                    ref[(size_t)i * N + j] = s + (acc ? ref[(size_t)i * N + j] : 0.0);
                }
            float *Y2 = copyf(Y, (size_t)M * N), *Y3 = copyf(Y, (size_t)M * N), *Y4 = copyf(Y, (size_t)M * N);
            be1->matmul_bf16(be1, M, N, K, X, W, acc ? 1.0f : 0.0f, Y);
            cpu_matmul_bf16_path(be2, M, N, K, X, W, acc ? 1.0f : 0.0f, Y3, 0);
            cpu_matmul_bf16_path(be2, M, N, K, X, W, acc ? 1.0f : 0.0f, Y4, 1);
            be2->matmul_bf16(be2, M, N, K, X, W, acc ? 1.0f : 0.0f, Y2);
            char name[128];
            snprintf(name, sizeof name, "matmul_bf16 M%d N%d K%d %s", M, N, K, acc ? "beta=1" : "beta=0");
            check(name, relerr(Y, ref, (size_t)M * N), 1e-6);
            snprintf(name, sizeof name, "matmul_bf16 M%d N%d K%d portable path %s", M, N, K, acc ? "beta=1" : "beta=0");
            check(name, relerr(Y3, ref, (size_t)M * N), 1e-6);
            snprintf(name, sizeof name, "matmul_bf16 M%d N%d K%d AVX2 path %s", M, N, K, acc ? "beta=1" : "beta=0");
            check(name, relerr(Y4, ref, (size_t)M * N), 1e-6);
            snprintf(name, sizeof name, "matmul_bf16 M%d N%d K%d: 1 thread == 2 threads (bitwise)", M, N, K);
            check_true(name, same(Y, Y2, (size_t)M * N * sizeof(float)));
            /* rows computed alone equal the same rows within the batch */
            if (!acc) {
                int ok = 1;
                float *one = malloc((size_t)N * sizeof(float));
                for (int r = 0; r < M; r += (M > 8 ? M / 5 : 1)) {
                    be2->matmul_bf16(be2, 1, N, K, X + (size_t)r * K, W, 0.0f, one);
                    ok &= same(one, Y2 + (size_t)r * N, (size_t)N * sizeof(float));
                    cpu_matmul_bf16_path(be2, 1, N, K, X + (size_t)r * K, W, 0.0f, one, 0);
                    ok &= same(one, Y3 + (size_t)r * N, (size_t)N * sizeof(float));
                    cpu_matmul_bf16_path(be2, 1, N, K, X + (size_t)r * K, W, 0.0f, one, 1);
                    ok &= same(one, Y4 + (size_t)r * N, (size_t)N * sizeof(float));
                }
                snprintf(name, sizeof name, "matmul_bf16 M%d N%d K%d: a row alone == within the batch (3 paths)", M, N, K);
                check_true(name, ok);
                free(one);
            }
            free(X), free(Wf), free(Y), free(Y2), free(Y3), free(Y4), free(W), free(ref);
        }
}

/* gemm_bf16 (model.dtype: bf16 training): C = op(A) op(B) + beta C with bf16
   A and B in every transpose combination, padded row strides, beta 0 and 1,
   K = 0, against a double reference over the bf16 values. The error of each
   output is bounded by fp32 accumulation alone: ~K * 2^-24 of sum_k |a_k b_k|
   (+ |beta c|); a wrong or missing term is O(1) of that sum. Each path, 1
   and 2 threads bitwise equal; beta 0 never reads C (NaN there). */
static void test_gemm_bf16(backend *be1, backend *be2) {
    int shapes[][3] = {{7, 5, 33}, {1, 13, 4}, {33, 48, 100}, {64, 1, 7}, {5, 9, 0}, {70, 130, 576}};
    for (int si = 0; si < 6; si++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int acc = 0; acc < 2; acc++) {
                    int M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
                    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
                    int lda = ac + 3, ldb = bc + 1, ldc = N + 2;
                    size_t na = (size_t)ar * lda + 1, nb = (size_t)br * ldb + 1, nc = (size_t)M * ldc;
                    uint16_t *A = malloc(na * 2), *B = malloc(nb * 2);
                    for (size_t i = 0; i < na; i++) A[i] = bf16_ref((float)randn());
                    for (size_t i = 0; i < nb; i++) B[i] = bf16_ref((float)randn());
                    float *C0 = randf(nc, 1), *C1 = copyf(C0, nc), *C2 = copyf(C0, nc);
                    double *ref = malloc((size_t)M * N * sizeof(double)), *mag = malloc((size_t)M * N * sizeof(double));
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < N; j++) {
                            double s = acc ? C0[(size_t)i * ldc + j] : 0.0, m = fabs(s);
                            for (int k = 0; k < K; k++) {
                                double a = bf16_val(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                                double b = bf16_val(tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                                s += a * b, m += fabs(a * b);
                            }
                            ref[(size_t)i * N + j] = s, mag[(size_t)i * N + j] = m;
                        }
                    /* every path (AVX512_BF16, AVX2, reference), 1 and 2 threads, C with and without padding */
                    for (int path = 2; path >= 0; path--)
                        for (int pad = 0; pad < 2; pad++) {
                            int l = pad ? ldc : N;
                            double err = 0;
                            int same12 = 1;
                            for (size_t i = 0; i < nc; i++) C1[i] = C2[i] = acc ? C0[i] : NAN;
                            if (!pad && acc) /* C0 re-laid out with row stride N */
                                for (int i = 0; i < M; i++)
                                    for (int j = 0; j < N; j++) C1[(size_t)i * N + j] = C2[(size_t)i * N + j] = C0[(size_t)i * ldc + j];
                            cpu_gemm_bf16_path(be1, ta, tb, M, N, K, A, lda, B, ldb, acc ? 1.0f : 0.0f, C1, NULL, l, path);
                            cpu_gemm_bf16_path(be2, ta, tb, M, N, K, A, lda, B, ldb, acc ? 1.0f : 0.0f, C2, NULL, l, path);
                            for (int i = 0; i < M; i++)
                                for (int j = 0; j < N; j++) {
                                    float c1 = C1[(size_t)i * l + j], c2 = C2[(size_t)i * l + j];
                                    double md = mag[(size_t)i * N + j];
                                    double e = fabs(c1 - ref[(size_t)i * N + j]) / (md > 0 ? md : 1);
                                    err = isnan(e) ? INFINITY : e > err ? e : err;
                                    same12 &= !memcmp(&c1, &c2, sizeof c1);
                                }
                            char name[160];
                            snprintf(name, sizeof name, "gemm_bf16 M%d N%d K%d tA%d tB%d %s path %d%s", M, N, K, ta, tb,
                                     acc ? "beta=1" : "beta=0", path, pad ? " ldc+2" : "");
                            check(name, same12 ? err : INFINITY, 2.0 * (K + 1) * 0x1p-24); /* 1 == 2 threads bitwise */
                            if (!acc) { /* C16: the same fp32 results rounded to bf16; the padding untouched */
                                uint16_t *H = malloc(nc * 2);
                                for (size_t i = 0; i < nc; i++) H[i] = 0xfffe; /* poison (a NaN) */
                                cpu_gemm_bf16_path(be2, ta, tb, M, N, K, A, lda, B, ldb, 0.0f, NULL, H, l, path);
                                int ok16 = 1;
                                for (int i = 0; i < M; i++)
                                    for (int j = 0; j < l; j++) {
                                        size_t o = (size_t)i * l + j;
                                        ok16 &= j < N ? H[o] == bf16_ref(C1[o]) : H[o] == 0xfffe;
                                    }
                                snprintf(name, sizeof name, "gemm_bf16 C16 = bf16(C) M%d N%d K%d tA%d tB%d path %d%s", M, N,
                                         K, ta, tb, path, pad ? " ldc+2" : "");
                                check_true(name, ok16);
                                free(H);
                            }
                        }
                    free(A), free(B), free(C0), free(C1), free(C2), free(ref), free(mag);
                }
}

/* ================= embedding ================= */

static void test_embedding(backend *be1, backend *be2) {
    int Vv = 11, T = 40, D = 100;
    float *table = randf((size_t)Vv * D, 1), *out = randf((size_t)T * D, 1);
    int32_t *ids = malloc(T * sizeof(int32_t));
    for (int t = 0; t < T; t++) ids[t] = (t * 7 + 3) % Vv; /* repeats */
    ids[5] = ids[6] = ids[7] = 2;
    be2->embedding_forward(be2, out, table, ids, T, D);
    int exact = 1;
    for (int t = 0; t < T; t++) exact &= same(out + (size_t)t * D, table + (size_t)ids[t] * D, D * sizeof(float));
    check_true("embedding_forward copies rows exactly", exact);

    float *dout = randf((size_t)T * D, 1), *dt = randf((size_t)Vv * D, 1);
    double *ref = todouble(dt, (size_t)Vv * D);
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++) ref[(size_t)ids[t] * D + d] += dout[(size_t)t * D + d];
    be2->embedding_backward(be2, dt, dout, ids, T, D);
    check("embedding_backward scatter-add, repeated ids, accumulate", relerr(dt, ref, (size_t)Vv * D), 1e-6);

    /* big enough to run threaded; 1 vs 2 threads */
    int T2 = 700, D2 = 100;
    int32_t *ids2 = malloc(T2 * sizeof(int32_t));
    for (int t = 0; t < T2; t++) ids2[t] = (t * 13) % 17;
    float *dout2 = randf((size_t)T2 * D2, 1), *a = randf(17 * D2, 1), *b = copyf(a, 17 * D2);
    be1->embedding_backward(be1, a, dout2, ids2, T2, D2);
    be2->embedding_backward(be2, b, dout2, ids2, T2, D2);
    check_true("embedding_backward bitwise equal with 1 and 2 threads", same(a, b, 17 * D2 * sizeof(float)));
    free(table); free(out); free(ids); free(dout); free(dt); free(ref); free(ids2); free(dout2); free(a); free(b);
}

/* ================= RMSNorm ================= */

typedef struct { int T, D; double *x, *w, *R, eps; } rms_ctx;
static void rms_ref(const rms_ctx *c, double *y, double *rstd) {
    for (int t = 0; t < c->T; t++) {
        double ss = 0;
        for (int d = 0; d < c->D; d++) ss += c->x[t * c->D + d] * c->x[t * c->D + d];
        double r = 1 / sqrt(ss / c->D + c->eps);
        if (rstd) rstd[t] = r;
        for (int d = 0; d < c->D; d++) y[t * c->D + d] = c->x[t * c->D + d] * r * c->w[d];
    }
}
static double rms_loss(void *p) {
    rms_ctx *c = p;
    double *y = malloc(sizeof(double) * c->T * c->D), L = 0;
    rms_ref(c, y, NULL);
    for (int i = 0; i < c->T * c->D; i++) L += c->R[i] * y[i];
    free(y);
    return L;
}

static void test_rmsnorm(backend *be1, backend *be2) {
    int shapes[][2] = {{1, 5}, {7, 48}, {33, 100}, {64, 576}};
    for (int si = 0; si < 4; si++) {
        int T = shapes[si][0], D = shapes[si][1];
        size_t n = (size_t)T * D;
        float eps = 1e-5f;
        float *x = randf(n, 1), *w = randf(D, 1), *y = malloc(n * 4), *rstd = malloc(T * 4);
        float *R = randf(n, 1), *dx = malloc(n * 4), *dw = randf(D, 1), *dw0 = copyf(dw, D);
        rms_ctx c = {T, D, todouble(x, n), todouble(w, D), todouble(R, n), eps};
        double *yr = malloc(n * 8), *rr = malloc(T * 8);
        rms_ref(&c, yr, rr);
        be2->rmsnorm_forward(be2, y, NULL, rstd, NULL, x, w, T, D, eps);
        char name[128];
        snprintf(name, sizeof name, "rmsnorm_forward T%d D%d", T, D);
        check(name, relerr(y, yr, n), 1e-6);
        snprintf(name, sizeof name, "rmsnorm_forward rstd T%d D%d", T, D);
        check(name, relerr(rstd, rr, T), 1e-6);
        be2->rmsnorm_backward(be2, dx, NULL, dw, R, NULL, x, w, rstd, T, D, 0.0f);
        for (int d = 0; d < D; d++) dw[d] -= dw0[d]; /* accumulated */
        size_t nc = T * D > 2000 ? 300 : n;
        snprintf(name, sizeof name, "rmsnorm_backward dx vs finite diff T%d D%d", T, D);
        check(name, fd_check(&c, rms_loss, c.x, n, dx, nc), 1e-4);
        snprintf(name, sizeof name, "rmsnorm_backward dw vs finite diff T%d D%d", T, D);
        check(name, fd_check(&c, rms_loss, c.w, D, dw, nc), 1e-4);
        free(x); free(w); free(y); free(rstd); free(R); free(dx); free(dw); free(dw0);
        free(c.x); free(c.w); free(c.R); free(yr); free(rr);
    }
    /* threads */
    int T = 300, D = 576;
    size_t n = (size_t)T * D;
    float *x = randf(n, 1), *w = randf(D, 1), *dy = randf(n, 1);
    float *y1 = malloc(n * 4), *y2 = malloc(n * 4), *r1 = malloc(T * 4), *r2 = malloc(T * 4);
    float *dx1 = malloc(n * 4), *dx2 = malloc(n * 4), *dw1 = calloc(D, 4), *dw2 = calloc(D, 4);
    be1->rmsnorm_forward(be1, y1, NULL, r1, NULL, x, w, T, D, 1e-6f);
    be2->rmsnorm_forward(be2, y2, NULL, r2, NULL, x, w, T, D, 1e-6f);
    be1->rmsnorm_backward(be1, dx1, NULL, dw1, dy, NULL, x, w, r1, T, D, 0.0f);
    be2->rmsnorm_backward(be2, dx2, NULL, dw2, dy, NULL, x, w, r2, T, D, 0.0f);
    check_true("rmsnorm forward+backward bitwise equal with 1 and 2 threads",
               same(y1, y2, n * 4) && same(r1, r2, T * 4) && same(dx1, dx2, n * 4) && same(dw1, dw2, D * 4));
    { /* out16: the fp32 output's bf16 rounding, with or without the fp32 output */
        uint16_t *h1 = malloc(n * 2), *h2 = malloc(n * 2);
        int ok = 1;
        float *xc = malloc(n * 4);
        be2->rmsnorm_forward(be2, y1, h1, r1, NULL, x, w, T, D, 1e-6f);
        be1->rmsnorm_forward(be1, NULL, h2, r1, xc, x, w, T, D, 1e-6f);
        for (size_t i = 0; i < n; i++) ok &= h1[i] == bf16_ref(y2[i]) && h2[i] == h1[i] && y1[i] == y2[i];
        check_true("rmsnorm out16 = bf16(out) bitwise, with and without out", ok);
        check_true("rmsnorm_forward xcopy = x bitwise", same(xc, x, n * 4));
        free(xc);
        /* backward, beta 1: dx += the gradient (bitwise the sum of the beta 0
           result and the old dx), dw accumulates the same; dx16 = bf16(new dx) */
        float *acc = randf(n, 1), *acc0 = copyf(acc, n), *dw3 = calloc(D, 4);
        be2->rmsnorm_backward(be2, acc, h1, dw3, dy, NULL, x, w, r2, T, D, 1.0f);
        ok = same(dw3, dw2, D * 4);
        for (size_t i = 0; i < n; i++) ok &= acc[i] == acc0[i] + dx2[i] && h1[i] == bf16_ref(acc[i]);
        check_true("rmsnorm_backward beta 1 accumulates into dx bitwise, dx16 = bf16(dx)", ok);
        /* beta 0 with dx aliasing dout (dw read before dx is written) */
        float *al = copyf(dy, n), *dw4 = calloc(D, 4);
        be2->rmsnorm_backward(be2, al, h2, dw4, al, NULL, x, w, r2, T, D, 0.0f);
        ok = same(al, dx2, n * 4) && same(dw4, dw2, D * 4);
        for (size_t i = 0; i < n; i++) ok &= h2[i] == bf16_ref(dx2[i]);
        check_true("rmsnorm_backward dx aliasing dout, dx16 = bf16(dx)", ok);
        /* dout16: bitwise the fp32 op on the widened bf16 gradient */
        uint16_t *dy16 = malloc(n * 2);
        float *dyr = malloc(n * 4), *dx5 = malloc(n * 4), *dx6 = malloc(n * 4);
        float *dw5 = calloc(D, 4), *dw6 = calloc(D, 4);
        for (size_t i = 0; i < n; i++) dy16[i] = bf16_ref(dy[i]), dyr[i] = bf16_val(dy16[i]);
        be2->rmsnorm_backward(be2, dx5, NULL, dw5, dyr, NULL, x, w, r2, T, D, 0.0f);
        be1->rmsnorm_backward(be1, dx6, NULL, dw6, NULL, dy16, x, w, r2, T, D, 0.0f);
        check_true("rmsnorm_backward dout16 = fp32 op on bf16(dout) bitwise",
                   same(dx5, dx6, n * 4) && same(dw5, dw6, D * 4));
        free(dy16), free(dyr), free(dx5), free(dx6), free(dw5), free(dw6);
        free(acc), free(acc0), free(dw3), free(al), free(dw4);
        free(h1), free(h2);
    }
    free(x); free(w); free(dy); free(y1); free(y2); free(r1); free(r2); free(dx1); free(dx2); free(dw1); free(dw2);
}

/* ================= RoPE ================= */

typedef struct { int T, H, hd, hf_angles; double *x, *R; const int32_t *pos; float theta; } rope_ctx;
static void rope_ref(const rope_ctx *c, double *y) {
    int half = c->hd / 2;
    for (int t = 0; t < c->T; t++)
        for (int i = 0; i < half; i++) {
            double a;
            if (c->hf_angles) { /* transformers: fp32 inv_freq and fp32 product */
                float inv = 1.0f / powf(c->theta, (float)(2 * i) / (float)c->hd);
                a = (float)c->pos[t] * inv;
            } else {
                a = c->pos[t] * pow(c->theta, -2.0 * i / c->hd);
            }
            double cs = cos(a), sn = sin(a);
            for (int h = 0; h < c->H; h++) {
                size_t o = ((size_t)t * c->H + h) * c->hd;
                double x1 = c->x[o + i], x2 = c->x[o + half + i];
                y[o + i] = x1 * cs - x2 * sn;
                y[o + half + i] = x2 * cs + x1 * sn;
            }
        }
}
static double rope_loss(void *p) {
    rope_ctx *c = p;
    size_t n = (size_t)c->T * c->H * c->hd;
    double *y = malloc(n * 8), L = 0;
    rope_ref(c, y);
    for (size_t i = 0; i < n; i++) L += c->R[i] * y[i];
    free(y);
    return L;
}

static void test_rope(backend *be1, backend *be2) {
    int shapes[][3] = {{1, 1, 2}, {7, 3, 8}, {33, 6, 64}};
    for (int si = 0; si < 3; si++) {
        int T = shapes[si][0], H = shapes[si][1], hd = shapes[si][2];
        size_t n = (size_t)T * H * hd;
        int32_t *pos = malloc(T * 4);
        for (int t = 0; t < T; t++) pos[t] = (t * 5) % 40; /* several sequences: positions restart */
        float *x = randf(n, 1), *y = copyf(x, n), *R = randf(n, 1), *g = copyf(R, n);
        rope_ctx c = {T, H, hd, 0, todouble(x, n), todouble(R, n), pos, 10000.0f};
        double *yr = malloc(n * 8);
        rope_ref(&c, yr);
        be2->rope_forward(be2, y, pos, T, H, hd, c.theta);
        char name[128];
        snprintf(name, sizeof name, "rope_forward vs exact angles T%d H%d hd%d (pos<40)", T, H, hd);
        check(name, relerr(y, yr, n), 1e-5);
        be2->rope_backward(be2, g, pos, T, H, hd, c.theta);
        snprintf(name, sizeof name, "rope_backward vs finite diff T%d H%d hd%d", T, H, hd);
        check(name, fd_check(&c, rope_loss, c.x, n, g, 300), 1e-5);
        free(pos); free(x); free(y); free(R); free(g); free(c.x); free(c.R); free(yr);
    }
    /* large positions: the angle is formed in fp32 as transformers does */
    int T = 50, H = 3, hd = 64;
    size_t n = (size_t)T * H * hd;
    int32_t *pos = malloc(T * 4);
    for (int t = 0; t < T; t++) pos[t] = 1000 + 97 * t;
    float *x = randf(n, 1), *y = copyf(x, n), *y2 = copyf(x, n);
    rope_ctx c = {T, H, hd, 1, todouble(x, n), NULL, pos, 500000.0f};
    double *yr = malloc(n * 8);
    rope_ref(&c, yr);
    be2->rope_forward(be2, y, pos, T, H, hd, c.theta);
    check("rope_forward vs transformers fp32 angles, pos up to 5753", relerr(y, yr, n), 2e-6);
    be2->rope_backward(be2, y, pos, T, H, hd, c.theta);
    check("rope_backward(rope_forward(x)) == x", relerr(y, c.x, n), 1e-6);
    be1->rope_forward(be1, y2, pos, T, H, hd, c.theta);
    be1->rope_backward(be1, y2, pos, T, H, hd, c.theta);
    check_true("rope bitwise equal with 1 and 2 threads", same(y, y2, n * 4));
    free(pos); free(x); free(y); free(y2); free(c.x); free(yr);
}

/* rows[T, qd + 2 kvd] = bf16(q[t] | k[t] | v[t]) */
static void stack_rows16(uint16_t *rows, const float *q, const float *k, const float *v, int T, int qd, int kvd) {
    int W = qd + 2 * kvd;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < W; j++)
            rows[(size_t)t * W + j] = fp32_to_bf16(j < qd ? q[(size_t)t * qd + j]
                                                  : j < qd + kvd ? k[(size_t)t * kvd + j - qd]
                                                                 : v[(size_t)t * kvd + j - qd - kvd]);
}

/* rope_forward_bf16 and cpu_rope_backward_bf16 (the last step of the bf16
   attention backward; model.dtype bf16) on stacked rows
   q | k | v: bitwise what the fp32 ops give on the widened values (+ bias),
   rounded once; v untouched by RoPE; 1 and 2 threads bitwise equal */
static void test_rope_bf16(backend *be1, backend *be2) {
    int shapes[][4] = {{1, 1, 1, 2}, {37, 3, 1, 8}, {70, 9, 3, 64}, {20, 4, 4, 128}}; /* T, Hq, Hkv, hd */
    for (int si = 0; si < 4; si++) {
        int T = shapes[si][0], Hq = shapes[si][1], Hkv = shapes[si][2], hd = shapes[si][3];
        int qd = Hq * hd, kvd = Hkv * hd, W = qd + 2 * kvd;
        size_t n = (size_t)T * W;
        int32_t *pos = malloc(T * 4);
        for (int t = 0; t < T; t++) pos[t] = 3000 + (t * 7) % 50;
        float *x = randf(n, 1), *b = randf(W, 1), *dq = randf((size_t)T * qd, 1), *dk = randf((size_t)T * kvd, 1),
              *dv = randf((size_t)T * kvd, 1);
        float *q = malloc((size_t)T * qd * 4), *k = malloc((size_t)T * kvd * 4 + 4);
        float *v = malloc((size_t)T * kvd * 4 + 4);
        uint16_t *h[2], *want = malloc(n * 2 + 2);
        for (int withb = 0; withb < 2; withb++) {
            for (int c = 0; c < 2; c++) {
                h[c] = malloc(n * 2 + 2);
                for (size_t i = 0; i < n; i++) h[c][i] = fp32_to_bf16(x[i]);
                backend *be = c ? be2 : be1;
                be->rope_forward_bf16(be, h[c], withb ? b : NULL, withb ? b + qd : NULL, withb ? b + qd + kvd : NULL,
                                      pos, T, Hq, Hkv, hd, 10000.0f);
            }
            for (int t = 0; t < T; t++)
                for (int j = 0; j < W; j++) {
                    float val = bf16_to_fp32(fp32_to_bf16(x[(size_t)t * W + j])) + (withb ? b[j] : 0.0f);
                    if (j < qd) q[(size_t)t * qd + j] = val;
                    else if (j < qd + kvd) k[(size_t)t * kvd + j - qd] = val;
                    else v[(size_t)t * kvd + j - qd - kvd] = val;
                }
            be2->rope_forward(be2, q, pos, T, Hq, hd, 10000.0f);
            be2->rope_forward(be2, k, pos, T, Hkv, hd, 10000.0f);
            stack_rows16(want, q, k, v, T, qd, kvd);
            char name[160];
            snprintf(name, sizeof name, "rope_forward_bf16 = bf16(rope_forward(x%s)) bitwise, T%d Hq%d Hkv%d hd%d",
                     withb ? " + bias" : "", T, Hq, Hkv, hd);
            check_true(name, same(h[1], want, n * 2));
            snprintf(name, sizeof name, "rope_forward_bf16 1 and 2 threads bitwise, T%d Hq%d Hkv%d hd%d%s", T, Hq,
                     Hkv, hd, withb ? " bias" : "");
            check_true(name, same(h[0], h[1], n * 2));
            free(h[0]), free(h[1]);
        }
        /* backward: dq, dk, dv unchanged, rows = bf16(rope_backward(dq) | rope_backward(dk) | dv) */
        float *dq0 = copyf(dq, (size_t)T * qd), *dk0 = copyf(dk, (size_t)T * kvd);
        for (int c = 0; c < 2; c++) {
            h[c] = malloc(n * 2 + 2);
            memset(h[c], 0xff, n * 2);
            cpu_rope_backward_bf16(c ? be2 : be1, h[c], dq, dk, dv, pos, T, Hq, Hkv, hd, 10000.0f);
        }
        char name[160];
        snprintf(name, sizeof name, "rope_backward_bf16 leaves dq, dk unchanged, T%d Hq%d Hkv%d hd%d", T, Hq, Hkv, hd);
        check_true(name, same(dq, dq0, (size_t)T * qd * 4) && same(dk, dk0, (size_t)T * kvd * 4));
        be2->rope_backward(be2, dq0, pos, T, Hq, hd, 10000.0f);
        be2->rope_backward(be2, dk0, pos, T, Hkv, hd, 10000.0f);
        stack_rows16(want, dq0, dk0, dv, T, qd, kvd);
        snprintf(name, sizeof name, "rope_backward_bf16 = bf16(rope_backward(dq) | .. | dv) bitwise, T%d Hq%d Hkv%d "
                 "hd%d", T, Hq, Hkv, hd);
        check_true(name, same(h[1], want, n * 2) && same(h[0], h[1], n * 2));
        free(h[0]), free(h[1]), free(dq0), free(dk0);
        free(pos), free(x), free(b), free(dq), free(dk), free(dv), free(q), free(k), free(v), free(want);
    }
}

/* ================= SwiGLU ================= */

typedef struct { size_t n; double *g, *u, *R; } swi_ctx;
static double silu(double g) { return g / (1 + exp(-g)); }
static double swi_loss(void *p) {
    swi_ctx *c = p;
    double L = 0;
    for (size_t i = 0; i < c->n; i++) L += c->R[i] * silu(c->g[i]) * c->u[i];
    return L;
}

static void test_swiglu(backend *be1, backend *be2) {
    size_t sizes[] = {1, 7, 333};
    for (int si = 0; si < 3; si++) {
        size_t n = sizes[si];
        float *g = randf(n, 3), *u = randf(n, 1), *y = malloc(n * 4), *R = randf(n, 1);
        float *dg = malloc(n * 4), *du = malloc(n * 4);
        swi_ctx c = {n, todouble(g, n), todouble(u, n), todouble(R, n)};
        double *yr = malloc(n * 8);
        for (size_t i = 0; i < n; i++) yr[i] = silu(c.g[i]) * c.u[i];
        be2->swiglu_forward(be2, y, g, u, n);
        char name[128];
        snprintf(name, sizeof name, "swiglu_forward n%zu", n);
        check(name, relerr(y, yr, n), 1e-6);
        be2->swiglu_backward(be2, dg, du, R, g, u, n);
        snprintf(name, sizeof name, "swiglu_backward dgate vs finite diff n%zu", n);
        check(name, fd_check(&c, swi_loss, c.g, n, dg, n), 1e-5);
        snprintf(name, sizeof name, "swiglu_backward dup vs finite diff n%zu", n);
        check(name, fd_check(&c, swi_loss, c.u, n, du, n), 1e-5);
        free(g); free(u); free(y); free(R); free(dg); free(du); free(c.g); free(c.u); free(c.R); free(yr);
    }
    /* extreme gates and threads */
    size_t n = 100003;
    float *g = randf(n, 20), *u = randf(n, 1), *dy = randf(n, 1);
    float *y1 = malloc(n * 4), *y2 = malloc(n * 4), *a1 = malloc(n * 4), *a2 = malloc(n * 4), *b1 = malloc(n * 4),
          *b2 = malloc(n * 4);
    g[0] = -200; g[1] = 200; g[2] = 0;
    double *yr = malloc(n * 8);
    for (size_t i = 0; i < n; i++) yr[i] = silu(g[i]) * u[i];
    be1->swiglu_forward(be1, y1, g, u, n);
    be2->swiglu_forward(be2, y2, g, u, n);
    check("swiglu_forward n100003 gates sd 20 incl. +-200", relerr(y2, yr, n), 1e-6);
    be1->swiglu_backward(be1, a1, b1, dy, g, u, n);
    be2->swiglu_backward(be2, a2, b2, dy, g, u, n);
    check_true("swiglu forward+backward bitwise equal with 1 and 2 threads",
               same(y1, y2, n * 4) && same(a1, a2, n * 4) && same(b1, b2, n * 4));
    for (int fi = 0; fi < 2; fi++) { /* the bf16 ops, rows of gu [T, 2F] = gate | up: the fp32 ops on the
                                          widened bf16 inputs, results rounded, bitwise (1 and 2 threads) */
        int F = fi ? 5000 : 7, T = (int)(n / F); /* 5000: rows longer than a chunk */
        size_t nn = (size_t)T * F;
        uint16_t *gu = malloc(nn * 4), *h1 = malloc(nn * 2), *h2 = malloc(nn * 2), *d1 = malloc(nn * 4),
                 *d2 = malloc(nn * 4), *dy16 = malloc(nn * 2);
        float *dyr = malloc(nn * 4); /* dy rounded: the bf16 backward's input */
        for (size_t i = 0; i < nn; i++) dy16[i] = bf16_ref(dy[i]), dyr[i] = bf16_val(dy16[i]);
        for (int t = 0; t < T; t++)
            for (int f = 0; f < F; f++) {
                size_t i = (size_t)t * F + f, o = (size_t)t * 2 * F + f;
                gu[o] = bf16_ref(g[i]), gu[o + F] = bf16_ref(u[i]), g[i] = bf16_val(gu[o]), u[i] = bf16_val(gu[o + F]);
            }
        be1->swiglu_forward(be1, y1, g, u, nn);
        be1->swiglu_backward(be1, a1, b1, dyr, g, u, nn);
        be1->swiglu_forward_bf16(be1, h1, gu, T, F);
        be2->swiglu_forward_bf16(be2, h2, gu, T, F);
        int ok = 1;
        for (size_t i = 0; i < nn; i++) ok &= h1[i] == bf16_ref(y1[i]) && h2[i] == h1[i];
        char name[128];
        snprintf(name, sizeof name, "swiglu_forward_bf16 = bf16(swiglu_forward(bf16 gate, up)) bitwise, F%d", F);
        check_true(name, ok);
        be1->swiglu_backward_bf16(be1, d1, dy16, gu, T, F);
        be2->swiglu_backward_bf16(be2, d2, dy16, gu, T, F);
        ok = 1;
        for (int t = 0; t < T; t++)
            for (int f = 0; f < F; f++) {
                size_t i = (size_t)t * F + f, o = (size_t)t * 2 * F + f;
                ok &= d1[o] == bf16_ref(a1[i]) && d1[o + F] == bf16_ref(b1[i]) && d2[o] == d1[o] && d2[o + F] == d1[o + F];
            }
        snprintf(name, sizeof name, "swiglu_backward_bf16 = bf16(swiglu_backward(bf16 gate, up, dy)) bitwise, F%d", F);
        check_true(name, ok);
        free(gu), free(h1), free(h2), free(d1), free(d2), free(dy16), free(dyr);
    }
    free(g); free(u); free(dy); free(y1); free(y2); free(a1); free(a2); free(b1); free(b2); free(yr);
}

/* ================= attention ================= */

typedef struct {
    int B, T, Hq, Hkv, hd;
    const int32_t *cu;
    double scale, *q, *k, *v, *R;
} att_ctx;
/* naive causal GQA attention in double; lse may be NULL */
static void att_ref(const att_ctx *c, double *out, double *lse) {
    int G = c->Hq / c->Hkv, hd = c->hd;
    double *s = malloc(sizeof(double) * (c->T + 1));
    for (int b = 0; b < c->B; b++)
        for (int t = c->cu[b]; t < c->cu[b + 1]; t++)
            for (int h = 0; h < c->Hq; h++) {
                const double *qr = c->q + ((size_t)t * c->Hq + h) * hd;
                double m = -INFINITY;
                for (int j = c->cu[b]; j <= t; j++) {
                    const double *kr = c->k + ((size_t)j * c->Hkv + h / G) * hd;
                    double d = 0;
                    for (int e = 0; e < hd; e++) d += qr[e] * kr[e];
                    s[j - c->cu[b]] = d * c->scale;
                    if (s[j - c->cu[b]] > m) m = s[j - c->cu[b]];
                }
                double sum = 0;
                for (int j = c->cu[b]; j <= t; j++) sum += exp(s[j - c->cu[b]] - m);
                double *o = out + ((size_t)t * c->Hq + h) * hd;
                for (int e = 0; e < hd; e++) o[e] = 0;
                for (int j = c->cu[b]; j <= t; j++) {
                    double p = exp(s[j - c->cu[b]] - m) / sum;
                    const double *vr = c->v + ((size_t)j * c->Hkv + h / G) * hd;
                    for (int e = 0; e < hd; e++) o[e] += p * vr[e];
                }
                if (lse) lse[(size_t)t * c->Hq + h] = m + log(sum);
            }
    free(s);
}
static double att_loss(void *p) {
    att_ctx *c = p;
    size_t n = (size_t)c->T * c->Hq * c->hd;
    double *o = malloc(n * 8), L = 0;
    att_ref(c, o, NULL);
    for (size_t i = 0; i < n; i++) L += c->R[i] * o[i];
    free(o);
    return L;
}

/* the bf16 ops' arithmetic (backend.h) in double: q, k, v, dO rounded to
   bf16; P rounded as exp(s - m_tile) (m_tile the running row max over 64-key
   tiles), then times exp(m_tile - m); dS rounded; the output rounded at the
   end; everything else exact. out, lse, and the gradients dq, dk, dv (dO =
   c->R) given the forward results fo (bf16 values), flse the backward op
   reads (as the op: D = rowsum(bf16(dO) * fo), P = exp(s - flse); a bf16
   rounding magnifies any difference in them) */
static double bfr(double x) { return bf16_to_fp32(fp32_to_bf16((float)x)); }
static void att_ref_bf16(const att_ctx *c, double *out, double *lse, double *dq, double *dk, double *dv,
                         const float *fo, const float *flse) {
    int G = c->Hq / c->Hkv, hd = c->hd;
    size_t nq = (size_t)c->T * c->Hq * hd, nk = (size_t)c->T * c->Hkv * hd;
    double *s = malloc(sizeof(double) * (c->T + 1)), *qb = malloc(nq * 8), *ob = malloc(nq * 8);
    double *kb = malloc(nk * 8), *vb = malloc(nk * 8);
    for (size_t i = 0; i < nq; i++) { qb[i] = bfr(c->q[i]); ob[i] = bfr(c->R[i]); }
    for (size_t i = 0; i < nk; i++) { kb[i] = bfr(c->k[i]); vb[i] = bfr(c->v[i]); dk[i] = dv[i] = 0; }
    for (int b = 0; b < c->B; b++)
        for (int t = c->cu[b]; t < c->cu[b + 1]; t++)
            for (int h = 0; h < c->Hq; h++) {
                size_t row = (size_t)t * c->Hq + h;
                int n = t - c->cu[b] + 1; /* keys of this row: sequence positions 0..n-1 */
                const double *kr = kb + ((size_t)c->cu[b] * c->Hkv + h / G) * hd;
                const double *vr = vb + ((size_t)c->cu[b] * c->Hkv + h / G) * hd;
                double m = -INFINITY;
                for (int j = 0; j < n; j++) {
                    double d = 0;
                    for (int e = 0; e < hd; e++) d += qb[row * hd + e] * kr[(size_t)j * c->Hkv * hd + e];
                    s[j] = d * c->scale;
                    if (s[j] > m) m = s[j];
                }
                double l = 0, mt = -INFINITY, *o = out + row * hd;
                for (int e = 0; e < hd; e++) o[e] = 0;
                for (int j = 0; j < n; j++) {
                    if (j % 64 == 0)
                        for (int i = j; i < n && i < j + 64; i++) mt = s[i] > mt ? s[i] : mt;
                    double p = bfr(exp(s[j] - mt)) * exp(mt - m);
                    l += exp(s[j] - m);
                    for (int e = 0; e < hd; e++) o[e] += p * vr[(size_t)j * c->Hkv * hd + e];
                }
                double D = 0;
                for (int e = 0; e < hd; e++) {
                    o[e] = bfr(o[e] / l);
                    D += ob[row * hd + e] * fo[row * hd + e];
                    dq[row * hd + e] = 0;
                }
                lse[row] = m + log(l);
                for (int j = 0; j < n; j++) {
                    double P = exp(s[j] - flse[row]), dP = 0;
                    size_t kv = (size_t)j * c->Hkv * hd;
                    for (int e = 0; e < hd; e++) dP += ob[row * hd + e] * vr[kv + e];
                    double Pb = bfr(P), dS = bfr(P * (dP - D));
                    double *dkr = dk + ((size_t)c->cu[b] * c->Hkv + h / G) * hd + kv;
                    double *dvr = dv + ((size_t)c->cu[b] * c->Hkv + h / G) * hd + kv;
                    for (int e = 0; e < hd; e++) {
                        dvr[e] += Pb * ob[row * hd + e];
                        dkr[e] += c->scale * dS * qb[row * hd + e];
                        dq[row * hd + e] += c->scale * dS * kr[kv + e];
                    }
                }
            }
    free(s); free(qb); free(ob); free(kb); free(vb);
}

/* x[T, H, hd] in double through RoPE^T (rope_backward) at positions pos,
   the angles formed in fp32 as the ops form them */
static void rope_back_ref(double *x, const int32_t *pos, int T, int H, int hd, float theta) {
    int half = hd / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            float inv = 1.0f / powf(theta, (float)(2 * i) / (float)hd), a = (float)pos[t] * inv;
            double c = cos((double)a), sn = -sin((double)a);
            for (int h = 0; h < H; h++) {
                double *x1 = x + ((size_t)t * H + h) * hd + i, *x2 = x1 + half, u = *x1, w = *x2;
                *x1 = u * c - w * sn;
                *x2 = w * c + u * sn;
            }
        }
}

/* the bf16 ops on the inputs of an fp32 case rounded to bf16 (q, k, v
   stacked into rows q | k | v; o, lse, dq, dk, dv: the fp32 op's results):
   against att_ref_bf16 (3e-4: fp32 vs double only, but a value within an
   fp32 error of a bf16 rounding boundary rounds the other way, 2^-8
   relative: ~1e-5..1e-4 here, 1e-3 for a missed rounding), within 1e-2 of
   the fp32 ops but not equal to them (> 1e-5: the rounding happens; lse by
   rms absolute difference), bitwise equal with 1 and 2 threads. The
   backward's dq, dk, dv come through RoPE^T (positions restarting per
   sequence, + 37) and rounded, in the stacked rows: the references get the
   same RoPE^T (and the double one the rounding). */
static void test_attention_bf16(backend *be1, backend *be2, const att_ctx *c, const float *q, const float *k,
                                const float *v, const float *R, const float *const f32[5], const char *shape) {
    int B = c->B, T = c->T, Hq = c->Hq, Hkv = c->Hkv, hd = c->hd;
    size_t nq = (size_t)T * Hq * hd, nk = (size_t)T * Hkv * hd, nl = (size_t)T * Hq;
    size_t n[5] = {nq, nl, nq, nk, nk};
    const char *what[5] = {"out", "lse", "dq", "dk", "dv"};
    float scale = (float)c->scale;
    int qd = Hq * hd, kvd = Hkv * hd, W = qd + 2 * kvd;
    uint16_t *qkv = malloc((size_t)T * W * 2 + 2), *dO16 = malloc(nq * 2 + 2), *o16 = malloc(nq * 2 + 2);
    uint16_t *d16 = malloc((size_t)T * W * 2 + 2);
    int32_t *pos = malloc((T + 1) * sizeof(int32_t));
    for (int b = 0; b < B; b++)
        for (int r = c->cu[b]; r < c->cu[b + 1]; r++) pos[r] = r - c->cu[b] + 37;
    stack_rows16(qkv, q, k, v, T, qd, kvd);
    for (size_t j = 0; j < nq; j++) dO16[j] = fp32_to_bf16(R[j]);
    double *ref[5];
    for (int i = 0; i < 5; i++) ref[i] = malloc(n[i] * 8);
    float *res[2][5];
    for (int t = 0; t < 2; t++) {
        backend *be = t ? be2 : be1;
        for (int i = 0; i < 5; i++) {
            res[t][i] = malloc(n[i] * 4 + 4);
            for (size_t j = 0; j < n[i]; j++) res[t][i][j] = NAN;
        }
        memset(o16, 0xff, nq * 2); /* NaN */
        memset(d16, 0xff, (size_t)T * W * 2);
        be->attention_forward_bf16(be, o16, res[t][1], qkv, c->cu, B, T, Hq, Hkv, hd, scale);
        be->attention_backward_bf16(be, d16, dO16, qkv, o16, res[t][1], pos, 10000.0f, c->cu, B, T, Hq, Hkv, hd,
                                    scale);
        for (size_t j = 0; j < nq; j++) res[t][0][j] = bf16_to_fp32(o16[j]);
        for (int r = 0; r < T; r++) /* the stacked rows, unstacked into dq, dk, dv */
            for (int j = 0; j < W; j++) {
                float x = bf16_to_fp32(d16[(size_t)r * W + j]);
                if (j < qd) res[t][2][(size_t)r * qd + j] = x;
                else if (j < qd + kvd) res[t][3][(size_t)r * kvd + j - qd] = x;
                else res[t][4][(size_t)r * kvd + j - qd - kvd] = x;
            }
    }
    free(qkv), free(dO16), free(o16), free(d16);
    att_ref_bf16(c, ref[0], ref[1], ref[2], ref[3], ref[4], res[1][0], res[1][1]);
    rope_back_ref(ref[2], pos, T, Hq, hd, 10000.0f);
    rope_back_ref(ref[3], pos, T, Hkv, hd, 10000.0f);
    for (int i = 2; i < 5; i++)
        for (size_t j = 0; j < n[i]; j++) ref[i][j] = bfr(ref[i][j]);
    /* the fp32 op's dq, dk through RoPE^T too */
    float *f32dq = copyf(f32[2], nq), *f32dk = copyf(f32[3], nk);
    be2->rope_backward(be2, f32dq, pos, T, Hq, hd, 10000.0f);
    be2->rope_backward(be2, f32dk, pos, T, Hkv, hd, 10000.0f);
    const float *f32rope[5] = {f32[0], f32[1], f32dq, f32dk, f32[4]}; /* the fp32 op's results, as the bf16 op's */
    free(pos);
    char name[200];
    int eq = 1;
    for (int i = 0; i < 5; i++) {
        double *f = todouble(f32rope[i], n[i]);
        snprintf(name, sizeof name, "attention bf16 %s vs double bf16 ref %s", what[i], shape);
        check(name, relerr(res[1][i], ref[i], n[i]), i == 1 ? 1e-6 : 3e-4);
        /* lse: the rms absolute difference (a log: lse near 0 makes the relative one meaningless) */
        double d = 0;
        if (i == 1) {
            for (size_t j = 0; j < n[i]; j++) d += (res[1][i][j] - f[j]) * (res[1][i][j] - f[j]) / n[i];
            d = sqrt(d);
        } else {
            d = relerr(res[1][i], f, n[i]);
        }
        /* (one key per row: dq = dk = 0 on both, the bf16 D being over the same rounded values as dP) */
        double fn = 0;
        for (size_t j = 0; j < n[i]; j++) fn += fabs(f[j]);
        snprintf(name, sizeof name, "attention bf16 %s vs fp32 op (rounds: > 1e-5) %s", what[i], shape);
        check(name, d > 1e-5 || fn == 0 ? d : 1.0, 1e-2);
        eq = eq && same(res[0][i], res[1][i], n[i] * 4);
        free(f);
    }
    snprintf(name, sizeof name, "attention bf16 fwd+bwd bitwise equal with 1 and 2 threads %s", shape);
    check_true(name, eq);
    free(f32dq), free(f32dk);
    for (int i = 0; i < 5; i++) {
        free(ref[i]);
        free(res[0][i]);
        free(res[1][i]);
    }
}

static void test_attention_case(backend *be1, backend *be2, int B, const int *lens, int Hq, int Hkv, int hd,
                                size_t ncoord) {
    int32_t *cu = malloc((B + 1) * 4);
    cu[0] = 0;
    for (int b = 0; b < B; b++) cu[b + 1] = cu[b] + lens[b];
    int T = cu[B];
    size_t nq = (size_t)T * Hq * hd, nk = (size_t)T * Hkv * hd;
    float *q = randf(nq, 1), *k = randf(nk, 1), *v = randf(nk, 1), *R = randf(nq, 1);
    float *o = malloc(nq * 4), *lse = malloc((size_t)T * Hq * 4);
    float *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
    att_ctx c = {B, T, Hq, Hkv, hd, cu, 1.0 / sqrt(hd), todouble(q, nq), todouble(k, nk), todouble(v, nk),
                 todouble(R, nq)};
    double *orf = malloc(nq * 8), *lr = malloc((size_t)T * Hq * 8);
    att_ref(&c, orf, lr);
    float scale = (float)(1.0 / sqrt(hd));
    be2->attention_forward(be2, o, lse, q, k, v, cu, B, T, Hq, Hkv, hd, scale);
    char shape[96], name[160];
    int off = snprintf(shape, sizeof shape, "B%d T%d Hq%d Hkv%d hd%d lens", B, T, Hq, Hkv, hd);
    for (int b = 0; b < B && off < 80; b++) off += snprintf(shape + off, sizeof shape - off, "%s%d", b ? "," : " ", lens[b]);
    snprintf(name, sizeof name, "attention_forward out %s", shape);
    check(name, relerr(o, orf, nq), 1e-5);
    snprintf(name, sizeof name, "attention_forward lse %s", shape);
    check(name, relerr(lse, lr, (size_t)T * Hq), 1e-6);
    be2->attention_backward(be2, dq, dk, dv, R, q, k, v, o, lse, cu, B, T, Hq, Hkv, hd, scale);
    snprintf(name, sizeof name, "attention_backward dq vs finite diff %s", shape);
    check(name, fd_check(&c, att_loss, c.q, nq, dq, ncoord), 1e-4);
    snprintf(name, sizeof name, "attention_backward dk vs finite diff %s", shape);
    check(name, fd_check(&c, att_loss, c.k, nk, dk, ncoord), 1e-4);
    snprintf(name, sizeof name, "attention_backward dv vs finite diff %s", shape);
    check(name, fd_check(&c, att_loss, c.v, nk, dv, ncoord), 1e-4);
    /* 1 vs 2 threads, and two runs with 2 threads */
    float *o1 = malloc(nq * 4), *l1 = malloc((size_t)T * Hq * 4), *dq1 = malloc(nq * 4), *dk1 = malloc(nk * 4),
          *dv1 = malloc(nk * 4);
    be1->attention_forward(be1, o1, l1, q, k, v, cu, B, T, Hq, Hkv, hd, scale);
    be1->attention_backward(be1, dq1, dk1, dv1, R, q, k, v, o1, l1, cu, B, T, Hq, Hkv, hd, scale);
    snprintf(name, sizeof name, "attention fwd+bwd bitwise equal with 1 and 2 threads %s", shape);
    check_true(name, same(o, o1, nq * 4) && same(lse, l1, (size_t)T * Hq * 4) && same(dq, dq1, nq * 4) &&
                         same(dk, dk1, nk * 4) && same(dv, dv1, nk * 4));
    be2->attention_backward(be2, dq1, dk1, dv1, R, q, k, v, o, lse, cu, B, T, Hq, Hkv, hd, scale);
    snprintf(name, sizeof name, "attention_backward bitwise repeatable %s", shape);
    check_true(name, same(dq, dq1, nq * 4) && same(dk, dk1, nk * 4) && same(dv, dv1, nk * 4));
    const float *f32[5] = {o, lse, dq, dk, dv};
    test_attention_bf16(be1, be2, &c, q, k, v, R, f32, shape);
    free(o1); free(l1); free(dq1); free(dk1); free(dv1);
    free(cu); free(q); free(k); free(v); free(R); free(o); free(lse); free(dq); free(dk); free(dv);
    free(c.q); free(c.k); free(c.v); free(c.R); free(orf); free(lr);
}

static void test_attention(backend *be1, backend *be2) {
    int l1[] = {1}, l2[] = {7}, l3[] = {5, 1, 33}, l4[] = {33, 1, 7, 2}, l5[] = {130, 1, 70}, l6[] = {300, 2, 520}, l7[] = {1000};
    test_attention_case(be1, be2, 1, l1, 2, 1, 4, 1000000);
    test_attention_case(be1, be2, 1, l2, 3, 3, 8, 1000000);
    test_attention_case(be1, be2, 3, l3, 6, 2, 8, 1000000);
    test_attention_case(be1, be2, 4, l4, 3, 3, 16, 300);
    test_attention_case(be1, be2, 3, l5, 6, 2, 64, 40); /* crosses the 64-row tiles */
    test_attention_case(be1, be2, 3, l6, 2, 1, 8, 40);  /* several backward chunks per sequence */
    test_attention_case(be1, be2, 1, l7, 2, 1, 16, 8);  /* 16 key tiles: the bf16 ops' tile-wise max */
}

/* ================= cached attention (rollout decode) ================= */

/* attention_cached of a ragged batch against a double reference, both
   paths; each token's output alone == within the batch and with 1 or 2
   threads (bitwise) */
static void test_attention_cached_case(backend *be1, backend *be2, int Hq, int Hkv, int hd) {
    enum { S = 4, MAXS = 161, T = 9 };
    int kvd = Hkv * hd, n_of[T] = {1, 15, 16, 17, 33, 130, 161, 64, 2};
    int32_t slot[T], pos[T];
    for (int t = 0; t < T; t++) slot[t] = t % S, pos[t] = n_of[t] - 1;
    float *kc = randf((size_t)S * MAXS * kvd, 1.0), *vc = randf((size_t)S * MAXS * kvd, 1.0);
    float *q = randf((size_t)T * Hq * hd, 1.5), scale = 1.0f / sqrtf((float)hd);
    size_t no = (size_t)T * Hq * hd;
    double *ref = malloc(no * sizeof(double)), *sc = malloc(MAXS * sizeof(double));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < Hq; h++) {
            int g = h / (Hq / Hkv), n = pos[t] + 1;
            const float *qr = q + ((size_t)t * Hq + h) * hd;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < n; j++) {
                const float *kr = kc + ((size_t)slot[t] * MAXS + j) * kvd + g * hd;
                double d = 0;
                for (int e = 0; e < hd; e++) d += (double)qr[e] * kr[e];
                sc[j] = d * scale, mx = sc[j] > mx ? sc[j] : mx;
            }
            for (int j = 0; j < n; j++) sc[j] = exp(sc[j] - mx), sum += sc[j];
            for (int e = 0; e < hd; e++) {
                double a = 0;
                for (int j = 0; j < n; j++) a += sc[j] * vc[((size_t)slot[t] * MAXS + j) * kvd + g * hd + e];
                ref[((size_t)t * Hq + h) * hd + e] = a / sum;
            }
        }
    float *o = malloc(no * 4), *o1 = malloc(no * 4), *op = malloc(no * 4), *alone = malloc(no * 4);
    be2->attention_cached(be2, o, q, kc, vc, slot, pos, T, Hq, Hkv, hd, MAXS, scale);
    be1->attention_cached(be1, o1, q, kc, vc, slot, pos, T, Hq, Hkv, hd, MAXS, scale);
    cpu_attention_cached_path(be2, op, q, kc, vc, slot, pos, T, Hq, Hkv, hd, MAXS, scale, 0);
    for (int t = 0; t < T; t++)
        be2->attention_cached(be2, alone + (size_t)t * Hq * hd, q + (size_t)t * Hq * hd, kc, vc, slot + t, pos + t, 1,
                              Hq, Hkv, hd, MAXS, scale);
    char name[128];
    snprintf(name, sizeof name, "attention_cached Hq%d Hkv%d hd%d n 1..161", Hq, Hkv, hd);
    check(name, relerr(o, ref, no), 1e-6);
    snprintf(name, sizeof name, "attention_cached Hq%d Hkv%d hd%d portable path", Hq, Hkv, hd);
    check(name, relerr(op, ref, no), 1e-6);
    snprintf(name, sizeof name, "attention_cached Hq%d Hkv%d hd%d: alone == in batch, 1 == 2 threads", Hq, Hkv, hd);
    check_true(name, same(o, o1, no * 4) && same(o, alone, no * 4));

    /* bf16 cache: kv_write_bf16 stores the cast_bf16 bits; attention over it
       equals (bitwise, both paths) attention over an fp32 cache holding the
       same rounded values */
    {
        size_t nc = (size_t)S * MAXS * kvd;
        uint16_t *kh = calloc(nc, 2), *vh = calloc(nc, 2), *kw = malloc(nc * 2), *vw = malloc(nc * 2);
        float *kr = malloc(nc * 4), *vr = malloc(nc * 4);
        int32_t *wslot = malloc((size_t)S * MAXS * 4), *wpos = malloc((size_t)S * MAXS * 4);
        for (int r = 0; r < S * MAXS; r++) wslot[r] = r / MAXS, wpos[r] = r % MAXS;
        be2->kv_write_bf16(be2, kh, vh, kc, vc, wslot, wpos, S * MAXS, kvd, MAXS); /* every row, in order */
        be2->cast_bf16(be2, kw, kc, nc);
        be2->cast_bf16(be2, vw, vc, nc);
        for (size_t i = 0; i < nc; i++) {
            uint32_t a = (uint32_t)kh[i] << 16, b = (uint32_t)vh[i] << 16;
            memcpy(&kr[i], &a, 4), memcpy(&vr[i], &b, 4);
        }
        float *ob = malloc(no * 4), *obp = malloc(no * 4), *orf = malloc(no * 4), *orp = malloc(no * 4);
        be2->attention_cached_bf16(be2, ob, q, kh, vh, slot, pos, T, Hq, Hkv, hd, MAXS, scale);
        cpu_attention_cached_bf16_path(be2, obp, q, kh, vh, slot, pos, T, Hq, Hkv, hd, MAXS, scale, 0);
        be2->attention_cached(be2, orf, q, kr, vr, slot, pos, T, Hq, Hkv, hd, MAXS, scale);
        cpu_attention_cached_path(be2, orp, q, kr, vr, slot, pos, T, Hq, Hkv, hd, MAXS, scale, 0);
        snprintf(name, sizeof name, "attention_cached_bf16 Hq%d Hkv%d hd%d: cache bits == cast_bf16, output == fp32 "
                                    "cache of the same values (both paths)", Hq, Hkv, hd);
        if (!same(kh, kw, nc * 2) || !same(vh, vw, nc * 2)) printf("  cache bits differ from cast_bf16\n");
        if (!same(ob, orf, no * 4)) printf("  AVX-512 path: bf16 cache != fp32 cache of the same values\n");
        if (!same(obp, orp, no * 4)) printf("  portable path: bf16 cache != fp32 cache of the same values\n");
        check_true(name, same(kh, kw, nc * 2) && same(vh, vw, nc * 2) && same(ob, orf, no * 4) && same(obp, orp, no * 4));
        snprintf(name, sizeof name, "attention_cached_bf16 Hq%d Hkv%d hd%d vs fp32 cache (bf16 rounding)", Hq, Hkv, hd);
        check(name, relerr(ob, ref, no), 1e-2);
        free(kh); free(vh); free(kw); free(vw); free(kr); free(vr); free(wslot); free(wpos);
        free(ob); free(obp); free(orf); free(orp);
    }
    free(kc); free(vc); free(q); free(ref); free(sc); free(o); free(o1); free(op); free(alone);
}

static void test_attention_cached(backend *be1, backend *be2) {
    test_attention_cached_case(be1, be2, 9, 3, 64); /* SmolLM2-135M */
    test_attention_cached_case(be1, be2, 4, 2, 16);
    test_attention_cached_case(be1, be2, 8, 1, 128);
    test_attention_cached_case(be1, be2, 6, 6, 48);
    test_attention_cached_case(be1, be2, 4, 2, 40); /* not a multiple of 16: portable only */
    /* the softmax's exp: every 251st float of [-87.34, 88.38] against the exact value */
    size_t n = 0, cap = 40000000;
    float *x = malloc(cap * 4), *y = malloc(cap * 4);
    for (uint32_t u = 0x80000000u; u < 0xC2AEAC50u && n < cap; u += 251) memcpy(&x[n++], &u, 4); /* -0 .. -87.336 */
    for (uint32_t u = 0x00000000u; u < 0x42B0C0A5u && n < cap; u += 251) memcpy(&x[n++], &u, 4); /* 0 .. 88.376 */
    cpu_kv_exp(y, x, n);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = exp((double)x[i]), ulp = (double)nextafterf((float)e, INFINITY) - (float)e;
        double u = fabs(y[i] - e) / ulp;
        worst = u > worst || u != u ? u : worst;
    }
    float sp[5] = {-INFINITY, NAN, -100.0f, 0.0f, -1e-30f}, ys[5];
    cpu_kv_exp(ys, sp, 5);
    char name[128];
    snprintf(name, sizeof name, "attention_cached exp: %zu floats in [-87.34, 88.38], ulps", n);
    check(name, worst, 2.0);
    check_true("attention_cached exp: -inf -> 0, NaN -> NaN, -100 -> 0, 0 -> 1, -1e-30 -> 1",
               ys[0] == 0 && ys[1] != ys[1] && ys[2] == 0 && ys[3] == 1 && ys[4] == 1);
    free(x);
    free(y);
}

/* ================= logprob ================= */

typedef struct { int T, V; const int32_t *tg; double *z, *a, *b; } lp_ctx;
static void lp_ref(const lp_ctx *c, double *logp, double *ent, double *lse) {
    for (int t = 0; t < c->T; t++) {
        const double *z = c->z + (size_t)t * c->V;
        double m = z[0], s = 0, e = 0;
        for (int j = 0; j < c->V; j++) m = z[j] > m ? z[j] : m;
        for (int j = 0; j < c->V; j++) s += exp(z[j] - m);
        double l = m + log(s);
        for (int j = 0; j < c->V; j++) e -= exp(z[j] - l) * (z[j] - l);
        int ok = c->tg[t] >= 0;
        logp[t] = ok ? z[c->tg[t]] - l : 0;
        ent[t] = ok ? e : 0;
        if (lse) lse[t] = ok ? l : 0;
    }
}
static double lp_loss(void *p) {
    lp_ctx *c = p;
    double *lp = malloc(c->T * 8), *en = malloc(c->T * 8), L = 0;
    lp_ref(c, lp, en, NULL);
    for (int t = 0; t < c->T; t++) L += c->a[t] * lp[t] + (c->b ? c->b[t] * en[t] : 0);
    free(lp); free(en);
    return L;
}

static void test_logprob(backend *be1, backend *be2) {
    int shapes[][2] = {{1, 5}, {7, 100}, {9, 3001}, {2, 1500}}; /* V > 1024: several chunks per row */
    double scales[] = {1, 3, 1, 30};
    for (int si = 0; si < 4; si++)
        for (int ent = 0; ent < 2; ent++) {
            int T = shapes[si][0], V = shapes[si][1];
            size_t n = (size_t)T * V;
            float *z = randf(n, scales[si]);
            int32_t *tg = malloc(T * 4);
            for (int t = 0; t < T; t++) tg[t] = (t % 3 == 2) ? -1 : (int)((t * 7919u) % V);
            float *lp = malloc(T * 4), *en = malloc(T * 4), *ls = malloc(T * 4), *a = randf(T, 1), *b = randf(T, 1);
            lp_ctx c = {T, V, tg, todouble(z, n), todouble(a, T), ent ? todouble(b, T) : NULL};
            double *lpr = malloc(T * 8), *enr = malloc(T * 8), *lsr = malloc(T * 8);
            lp_ref(&c, lpr, enr, lsr);
            be2->logprob_forward(be2, lp, en, ls, z, tg, T, V);
            char name[128];
            if (!ent) {
                snprintf(name, sizeof name, "logprob_forward logp T%d V%d logit sd %g, ignored rows", T, V, scales[si]);
                check(name, relerr(lp, lpr, T), 2e-6);
                snprintf(name, sizeof name, "logprob_forward entropy T%d V%d logit sd %g", T, V, scales[si]);
                check(name, relerr(en, enr, T), 2e-6);
                snprintf(name, sizeof name, "logprob_forward lse T%d V%d logit sd %g", T, V, scales[si]);
                check(name, relerr(ls, lsr, T), 1e-6);
            }
            float *g = copyf(z, n);
            be2->logprob_backward(be2, g, NULL, a, ent ? b : NULL, ls, en, tg, T, V); /* the forward's lse, H */
            snprintf(name, sizeof name, "logprob_backward vs finite diff T%d V%d %s", T, V,
                     ent ? "dlogp+dentropy" : "dlogp only");
            /* all coordinates when affordable: with peaked rows (sd 30) most
               gradients are ~0 and a random sample would only see those */
            check(name, fd_check(&c, lp_loss, c.z, n, g, n <= 3000 ? n : 400), 1e-4);
            size_t at[64], na = 0; /* every row's target logit and its first logit */
            for (int t = 0; t < T && na < 62; t++) {
                at[na++] = (size_t)t * V;
                if (tg[t] >= 0) at[na++] = (size_t)t * V + tg[t];
            }
            snprintf(name, sizeof name, "logprob_backward at target logits vs finite diff T%d V%d %s", T, V,
                     ent ? "dlogp+dentropy" : "dlogp only");
            check(name, fd_check_at(&c, lp_loss, c.z, at, na, g), 1e-4);
            int zero = 1;
            for (int t = 0; t < T; t++)
                if (tg[t] < 0)
                    for (int j = 0; j < V; j++) zero &= g[(size_t)t * V + j] == 0.0f;
            snprintf(name, sizeof name, "logprob_backward rows with target < 0 are zero T%d V%d", T, V);
            check_true(name, zero);
            free(z); free(tg); free(lp); free(en); free(ls); free(a); free(b); free(g);
            free(c.z); free(c.a); free(c.b); free(lpr); free(enr); free(lsr);
        }
    /* threads */
    int T = 16, V = 5000;
    size_t n = (size_t)T * V;
    float *z = randf(n, 4), *z2 = copyf(z, n), *a = randf(T, 1), *b = randf(T, 1);
    int32_t *tg = malloc(T * 4);
    for (int t = 0; t < T; t++) tg[t] = t * 311;
    float r1[3][16], r2[3][16];
    be1->logprob_forward(be1, r1[0], r1[1], r1[2], z, tg, T, V);
    be2->logprob_forward(be2, r2[0], r2[1], r2[2], z, tg, T, V);
    float *z3 = copyf(z, n);
    tg[3] = -1; /* an ignored row: a zero gradient row in either form */
    be1->logprob_backward(be1, z, NULL, a, b, r1[2], r1[1], tg, T, V);
    be2->logprob_backward(be2, z2, NULL, a, b, r2[2], r2[1], tg, T, V);
    check_true("logprob forward+backward bitwise equal with 1 and 2 threads",
               same(r1, r2, sizeof r1) && same(z, z2, n * 4));
    uint16_t *d16 = malloc(n * 2);
    memset(d16, 0xff, n * 2); /* poison */
    be2->logprob_backward(be2, z3, d16, a, b, r2[2], r2[1], tg, T, V);
    int ok16 = 1;
    for (size_t i = 0; i < n; i++) ok16 &= d16[i] == bf16_ref(z[i]);
    check_true("logprob_backward d16 = bf16(the in-place gradient) bitwise, ignored row zero", ok16);
    free(z3), free(d16);
    free(z); free(z2); free(a); free(b); free(tg);
}

/* ================= sumsq / adamw ================= */

static void test_optim(backend *be1, backend *be2) {
    size_t sizes[] = {0, 1, 100003, (1u << 20) + 7};
    for (int si = 0; si < 4; si++) {
        size_t n = sizes[si];
        float *x = randf(n, 1);
        double ref = 0;
        for (size_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
        double s1 = be1->sumsq(be1, x, n), s2 = be2->sumsq(be2, x, n);
        char name[96];
        snprintf(name, sizeof name, "sumsq n%zu", n);
        check(name, n ? fabs(s2 - ref) / ref : fabs(s2), 1e-12);
        snprintf(name, sizeof name, "sumsq n%zu bitwise equal with 1 and 2 threads", n);
        check_true(name, s1 == s2);
        free(x);
    }
    size_t n = 50001;
    float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    float *p = randf(n, 0.02), *m = calloc(n, 4), *v = calloc(n, 4), *p2 = copyf(p, n), *m2 = calloc(n, 4),
          *v2 = calloc(n, 4);
    float *p0 = copyf(p, n);
    double *pr = todouble(p, n), *mr = calloc(n, 8), *vr = calloc(n, 8);
    for (int t = 1; t <= 5; t++) {
        float *g = randf(n, 0.01 * t);
        g[0] = 0; /* v stays 0 on this coordinate: eps path */
        for (size_t i = 0; i < n; i++) {
            double gi = g[i];
            mr[i] = b1 * mr[i] + (1 - (double)b1) * gi;
            vr[i] = b2 * vr[i] + (1 - (double)b2) * gi * gi;
            double mh = mr[i] / (1 - pow(b1, t)), vh = vr[i] / (1 - pow(b2, t));
            pr[i] -= lr * (mh / (sqrt(vh) + eps) + wd * pr[i]);
        }
        be2->adamw(be2, p, g, m, v, n, lr, b1, b2, eps, wd, t);
        be1->adamw(be1, p2, g, m2, v2, n, lr, b1, b2, eps, wd, t);
        free(g);
    }
    /* compare the change p - p0 (the parameter itself would hide errors in the update) */
    check("adamw 5 steps: m", relerr(m, mr, n), 1e-6);
    check("adamw 5 steps: v", relerr(v, vr, n), 1e-6);
    check("adamw 5 steps: p", relerr(p, pr, n), 1e-6);
    for (size_t i = 0; i < n; i++) pr[i] -= p0[i], p0[i] = p[i] - p0[i];
    check("adamw 5 steps: p - p0 (|p| ~ 0.02, update ~ 5e-3)", relerr(p0, pr, n), 1e-5);
    check_true("adamw bitwise equal with 1 and 2 threads", same(p, p2, n * 4) && same(m, m2, n * 4) && same(v, v2, n * 4));
    free(p0);
    free(p); free(m); free(v); free(p2); free(m2); free(v2); free(pr); free(mr); free(vr);
}

/* ================= OpenBLAS core type ================= */

static void test_openblas_pick(void) {
    const char *r;
    r = cpu_openblas_better_core("Prescott", 1, 1);
    check_true("openblas: Prescott on an AVX-512 CPU -> SkylakeX", r && !strcmp(r, "SkylakeX"));
    r = cpu_openblas_better_core("Sandybridge", 0, 1);
    check_true("openblas: Sandybridge on an AVX2 CPU -> Haswell", r && !strcmp(r, "Haswell"));
    r = cpu_openblas_better_core("Nehalem", 0, 0);
    check_true("openblas: Nehalem on a CPU without AVX2 -> unchanged", r == NULL);
    r = cpu_openblas_better_core("Cooperlake", 1, 1);
    check_true("openblas: Cooperlake -> unchanged", r == NULL);
    r = cpu_openblas_better_core("Haswell", 1, 1);
    check_true("openblas: Haswell on an AVX-512 CPU -> unchanged (AVX2 kernels are as fast here)", r == NULL);
    r = cpu_openblas_better_core("SomeFutureCore", 1, 1);
    check_true("openblas: unknown core name -> unchanged", r == NULL);
}

int main(void) {
    backend *be1 = backend_cpu_create(1), *be2 = backend_cpu_create(2);
    if (!be1 || !be2) { fprintf(stderr, "test_ops: backend_cpu_create failed\n"); return 1; }
    test_matmul(be2);
    test_matmul_row_independence(be2);
    test_bf16(be1, be2);
    test_gemm_bf16(be1, be2);
    test_embedding(be1, be2);
    test_rmsnorm(be1, be2);
    test_rope(be1, be2);
    test_rope_bf16(be1, be2);
    test_swiglu(be1, be2);
    test_attention(be1, be2);
    test_attention_cached(be1, be2);
    test_logprob(be1, be2);
    test_optim(be1, be2);
    test_openblas_pick();
    check_true("no backend error recorded (1 thread)", be1->sync(be1) == 0);
    check_true("no backend error recorded (2 threads)", be2->sync(be2) == 0);
    if (be1->err[0]) printf("  be1: %s\n", be1->err);
    if (be2->err[0]) printf("  be2: %s\n", be2->err);
    printf("%d checks, %d failed\n", n_check, n_fail);
    be1->destroy(be1);
    be2->destroy(be2);
    return n_fail ? 1 : 0;
}
