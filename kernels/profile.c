/* kernels/profile.c: per-op profiler. backend_profile_wrap(inner) returns a
 * backend whose every op forwards to inner with the same arguments (a NULL op
 * of inner stays NULL, so callers' "is this op there" tests still hold).
 *
 * Timing method: with profiling on, each op is bracketed by inner->sync and
 * the host monotonic clock (sync; t0; op; sync; t1), so the time of an op is
 * its own execution on the device plus one launch and one sync round trip
 * (a few microseconds on a GPU). The syncs serialise the host with the device
 * and remove all overlap between ops, so a profiled step is slower than an
 * unprofiled one: take throughput numbers with profiling off (the wrapper then
 * costs one extra indirect call per op) and read the table for the split.
 * Host work between ops (the model's own loops) is in no op's time. Counters
 * are not atomic: ops must be issued from one host thread while profiling.
 *
 * Counts per call, computed from the op's shape arguments:
 * - bytes: the minimum traffic, each tensor the op reads or writes touched
 *   once (read + write for in-place and accumulated tensors, C read only
 *   when beta != 0; copies count the bytes copied, twice for copy_d2d: read
 *   and write). Real kernels move more (re-reads, tiles); GB/s is therefore a
 *   lower bound of the achieved bandwidth.
 * - flops: the products only (2 per multiply-add) of matmul / gemm_bf16 /
 *   matmul_bf16 (2*M*N*K per product) and of attention (forward: Q K^T and
 *   P V, 4*hd flops per query-key pair and query head; backward: 5 products,
 *   10*hd; causal pairs n(n+1)/2 per sequence). Attention reads its
 *   sequence offsets (cu_seqlens; attention_cached: slot and pos) back from
 *   the device for this, after the op's second sync, outside its time.
 *   Other ops have no flop count ("-" in the table): their cost is memory.
 */
#include "profile.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* every member from alloc to the end of struct backend is a function pointer:
   one counter slot per member, found by its offset */
#define N_SLOTS ((sizeof(backend) - offsetof(backend, alloc)) / sizeof(void (*)(void)))
#define SLOT(op) ((offsetof(backend, op) - offsetof(backend, alloc)) / sizeof(void (*)(void)))

typedef struct prof {
    backend be;     /* what callers hold; be.impl points back here */
    backend *inner; /* does the work */
    int on;
    const char *name[N_SLOTS];
    profile_stat stat[N_SLOTS];
} prof;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* the first error of inner becomes the wrapper's (errors are sticky) */
static void err_take(prof *p) {
    if (!p->be.err[0] && p->inner->err[0]) memcpy(p->be.err, p->inner->err, sizeof p->be.err);
}

static double op_begin(prof *p) {
    p->inner->sync(p->inner); /* earlier ops are not this op's time */
    return now();
}

static double op_time(prof *p, double t0) {
    p->inner->sync(p->inner);
    return now() - t0;
}

static void op_add(prof *p, size_t slot, const char *name, double sec, double bytes, double flops) {
    p->name[slot] = name;
    p->stat[slot].calls++;
    p->stat[slot].sec += sec;
    p->stat[slot].bytes += bytes;
    p->stat[slot].flops += flops;
}

/* n int32 from the device (zeros if it cannot be read); caller frees */
static int32_t *read_i32(prof *p, const int32_t *dev, int n) {
    int32_t *h = calloc(n > 0 ? n : 1, sizeof *h);
    if (h && n > 0) p->inner->copy_d2h(p->inner, h, dev, (size_t)n * sizeof *h);
    return h;
}

/* causal query-key pairs of the packed batch: sum over sequences of n(n+1)/2 */
static double causal_pairs(prof *p, const int32_t *cu_seqlens, int B) {
    int32_t *cu = read_i32(p, cu_seqlens, B + 1);
    double s = 0;
    for (int b = 0; cu && b < B; b++) {
        double n = cu[b + 1] - cu[b];
        s += n * (n + 1) / 2;
    }
    free(cu);
    return s;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* attention_cached: rows = 0: the query-key pairs, sum over queries of
   pos[t] + 1; rows = 1: the cache positions read at least once, per slot 1 +
   its largest pos */
static double cached_count(prof *p, const int32_t *slot, const int32_t *pos, int T, int rows) {
    int32_t *s = read_i32(p, slot, T), *q = read_i32(p, pos, T);
    int64_t *k = malloc((T > 0 ? T : 1) * sizeof *k);
    double n = 0;
    if (s && q && k) {
        for (int t = 0; t < T; t++) k[t] = ((int64_t)s[t] << 32) | (uint32_t)q[t], n += rows ? 0 : q[t] + 1.0;
        qsort(k, T, sizeof *k, cmp_i64);
        for (int t = 0; rows && t < T; t++)
            if (t == T - 1 || k[t + 1] >> 32 != k[t] >> 32) n += (int32_t)(uint32_t)k[t] + 1.0;
    }
    free(s), free(q), free(k);
    return n;
}

/* One wrapper per op. OP(name, (parameters), (arguments after be), bytes,
   flops): forwards to inner; with profiling on, times the call and adds the
   byte and flop expressions (evaluated after the op, outside its time). The
   static assertion stops the build when backend.h changes the op's type. */
#define ARGS(...) __VA_ARGS__
#define CHECK_TYPE(op)                                                                                      \
    _Static_assert(__builtin_types_compatible_p(__typeof__(&prof_##op), __typeof__(((backend *)0)->op)), \
                   "profile.c: the wrapper of " #op " does not match backend.h")
#define OP(op, params, args, bytes, flops)                      \
    static void prof_##op params {                              \
        prof *p = be->impl;                                     \
        if (!p->on) {                                           \
            p->inner->op(p->inner, ARGS args);                  \
        } else {                                                \
            double t0_ = op_begin(p);                           \
            p->inner->op(p->inner, ARGS args);                  \
            double dt_ = op_time(p, t0_);                       \
            op_add(p, SLOT(op), #op, dt_, (bytes), (flops));    \
        }                                                       \
        err_take(p);                                            \
    }                                                           \
    CHECK_TYPE(op);

/* ---- memory: alloc, free, sync, destroy, bind_thread forward untimed ---- */
static void *prof_alloc(backend *be, size_t bytes) {
    prof *p = be->impl;
    void *r = p->inner->alloc(p->inner, bytes);
    err_take(p);
    return r;
}
CHECK_TYPE(alloc);
static void prof_free(backend *be, void *ptr) {
    prof *p = be->impl;
    p->inner->free(p->inner, ptr);
    err_take(p);
}
CHECK_TYPE(free);
static int prof_sync(backend *be) {
    prof *p = be->impl;
    int rc = p->inner->sync(p->inner);
    err_take(p);
    return rc || be->err[0] ? -1 : 0;
}
CHECK_TYPE(sync);
static void prof_destroy(backend *be) {
    prof *p = be->impl;
    p->inner->destroy(p->inner);
    free(p);
}
CHECK_TYPE(destroy);
static void prof_bind_thread(backend *be) {
    prof *p = be->impl;
    p->inner->bind_thread(p->inner);
    err_take(p);
}
CHECK_TYPE(bind_thread);

OP(copy_h2d, (backend *be, void *dst, const void *src, size_t n), (dst, src, n), n, 0)
OP(copy_d2h, (backend *be, void *dst, const void *src, size_t n), (dst, src, n), n, 0)
OP(copy_d2d, (backend *be, void *dst, const void *src, size_t n), (dst, src, n), 2.0 * n, 0)
OP(zero, (backend *be, void *ptr, size_t n), (ptr, n), n, 0)

/* ---- compute ---- */
OP(matmul,
   (backend *be, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, long sA,
    const float *B, int ldb, long sB, float beta, float *C, int ldc, long sC, int batch),
   (transA, transB, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch),
   4.0 * ((sA ? batch : 1) * (double)M * K + (sB ? batch : 1) * (double)K * N +
          (beta != 0 ? 2.0 : 1.0) * batch * M * N),
   2.0 * M * N * K * batch)
OP(cast_bf16, (backend *be, uint16_t *dst, const float *src, size_t n), (dst, src, n), 6.0 * n, 0)
OP(matmul_bf16, (backend *be, int M, int N, int K, const float *x, const uint16_t *W, float beta, float *y),
   (M, N, K, x, W, beta, y), 4.0 * M * K + 2.0 * N * K + (beta != 0 ? 8.0 : 4.0) * M * N, 2.0 * M * N * K)
OP(gemm_bf16,
   (backend *be, int transA, int transB, int M, int N, int K, const uint16_t *A, int lda, const uint16_t *B,
    int ldb, float beta, float *C, uint16_t *C16, int ldc),
   (transA, transB, M, N, K, A, lda, B, ldb, beta, C, C16, ldc),
   2.0 * M * K + 2.0 * K * N + (C16 ? 2.0 : beta != 0 ? 8.0 : 4.0) * M * N, 2.0 * M * N * K)
OP(add, (backend *be, float *out, const float *a, const float *b, size_t n), (out, a, b, n), 12.0 * n, 0)
OP(scale, (backend *be, float *x, float s, size_t n), (x, s, n), 8.0 * n, 0)
OP(bias_forward, (backend *be, float *x, const float *bias, int T, int N), (x, bias, T, N),
   4.0 * (2.0 * T * N + N), 0)
OP(bias_backward, (backend *be, float *dbias, const float *dy, int T, int N), (dbias, dy, T, N),
   4.0 * ((double)T * N + 2.0 * N), 0)
OP(embedding_forward, (backend *be, float *out, const float *table, const int32_t *ids, int T, int D),
   (out, table, ids, T, D), 4.0 * (2.0 * T * D + T), 0)
OP(embedding_backward, (backend *be, float *dtable, const float *dout, const int32_t *ids, int T, int D),
   (dtable, dout, ids, T, D), 4.0 * (3.0 * T * D + T), 0)
OP(rmsnorm_forward,
   (backend *be, float *out, uint16_t *out16, float *rstd, float *xcopy, const float *x, const float *w, int T,
    int D, float eps),
   (out, out16, rstd, xcopy, x, w, T, D, eps),
   4.0 * ((double)T * D + D + T) + (out ? 4.0 * T * D : 0) + (out16 ? 2.0 * T * D : 0) +
       (xcopy ? 4.0 * T * D : 0), 0)
/* reads dout, x, w, rstd; dx written (beta 0) or accumulated, dx16 written, dw accumulated */
OP(rmsnorm_backward,
   (backend *be, float *dx, uint16_t *dx16, float *dw, const float *dout, const uint16_t *dout16, const float *x,
    const float *w, const float *rstd, int T, int D, float beta),
   (dx, dx16, dw, dout, dout16, x, w, rstd, T, D, beta),
   (dout16 ? 2.0 : 4.0) * T * D + 4.0 * ((double)T * D + 3.0 * D + T) + (beta != 0 ? 8.0 : 4.0) * T * D +
       (dx16 ? 2.0 * T * D : 0), 0)
/* ops that share a signature: one macro per family */
#define ROPE(op)                                                                                \
    OP(op, (backend *be, float *x, const int32_t *pos, int T, int H, int hd, float theta),   \
       (x, pos, T, H, hd, theta), 4.0 * (2.0 * T * H * hd + T), 0)
ROPE(rope_forward)
ROPE(rope_backward)

/* attention forward: reads q, k, v, writes out, lse; backward: reads dout, q,
   k, v, out, lse, writes dq, dk, dv (+ the B+1 offsets of both) */
#define ATT_FWD(op)                                                                                                 \
    OP(op,                                                                                                          \
       (backend *be, float *out, float *lse, const float *q, const float *k, const float *v,                        \
        const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv, int hd, float scale),                             \
       (out, lse, q, k, v, cu_seqlens, B, T, Hq, Hkv, hd, scale),                                                   \
       4.0 * ((double)T * (2 * Hq * hd + 2 * Hkv * hd + Hq) + B + 1), 4.0 * Hq * hd * causal_pairs(p, cu_seqlens, B))
#define ATT_BWD(op)                                                                                                \
    OP(op,                                                                                                         \
       (backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,           \
        const float *v, const float *out, const float *lse, const int32_t *cu_seqlens, int B, int T, int Hq,       \
        int Hkv, int hd, float scale),                                                                             \
       (dq, dk, dv, dout, q, k, v, out, lse, cu_seqlens, B, T, Hq, Hkv, hd, scale),                                \
       4.0 * ((double)T * (3 * Hq * hd + 4 * Hkv * hd + Hq) + B + 1),                                              \
       10.0 * Hq * hd * causal_pairs(p, cu_seqlens, B))
ATT_FWD(attention_forward)
ATT_BWD(attention_backward)
/* bf16: the same counts at 2 bytes per bf16 element (qkv, out16, dout16) */
OP(attention_forward_bf16,
   (backend *be, uint16_t *out16, float *lse, const uint16_t *qkv, const int32_t *cu_seqlens, int B, int T, int Hq,
    int Hkv, int hd, float scale),
   (out16, lse, qkv, cu_seqlens, B, T, Hq, Hkv, hd, scale),
   2.0 * T * (2 * Hq * hd + 2 * Hkv * hd) + 4.0 * ((double)T * Hq + B + 1),
   4.0 * Hq * hd * causal_pairs(p, cu_seqlens, B))
/* backward: reads dout16, qkv, out16, lse, pos; writes the stacked dqkv16 */
OP(attention_backward_bf16,
   (backend *be, uint16_t *dqkv16, const uint16_t *dout16, const uint16_t *qkv, const uint16_t *out16,
    const float *lse, const int32_t *pos, float theta, const int32_t *cu_seqlens, int B, int T, int Hq, int Hkv,
    int hd, float scale),
   (dqkv16, dout16, qkv, out16, lse, pos, theta, cu_seqlens, B, T, Hq, Hkv, hd, scale),
   2.0 * T * (4 * Hq * hd + 4 * Hkv * hd) + 4.0 * ((double)T * (Hq + 1) + B + 1),
   10.0 * Hq * hd * causal_pairs(p, cu_seqlens, B))
/* stacked rows of W = (Hq + 2 Hkv) hd: forward reads and writes them (bf16)
   and the biases; backward reads dq, dk, dv (fp32), writes the rows */
OP(rope_forward_bf16,
   (backend *be, uint16_t *qkv, const float *bq, const float *bk, const float *bv, const int32_t *pos, int T,
    int Hq, int Hkv, int hd, float theta),
   (qkv, bq, bk, bv, pos, T, Hq, Hkv, hd, theta),
   4.0 * (double)T * (Hq + 2 * Hkv) * hd + 4.0 * T + (bq ? 4.0 * (Hq + 2 * Hkv) * hd : 0), 0)

/* KV cache (elt_t: float or uint16_t bf16): kv_write reads k, v, slot, pos
   and writes their cache rows; attention_cached reads q, slot, pos and each
   needed cache row once, writes out */
#define KV_WRITE(op, elt_t)                                                                                  \
    OP(op,                                                                                                   \
       (backend *be, elt_t *kc, elt_t *vc, const float *k, const float *v, const int32_t *slot,              \
        const int32_t *pos, int T, int kvd, int max_seq),                                                    \
       (kc, vc, k, v, slot, pos, T, kvd, max_seq), (8.0 + 2.0 * sizeof(elt_t)) * T * kvd + 8.0 * T, 0)
#define CACHED(op, elt_t)                                                                                       \
    OP(op,                                                                                                      \
       (backend *be, float *out, const float *q, const elt_t *kc, const elt_t *vc, const int32_t *slot,         \
        const int32_t *pos, int T, int Hq, int Hkv, int hd, int max_seq, float scale),                          \
       (out, q, kc, vc, slot, pos, T, Hq, Hkv, hd, max_seq, scale),                                             \
       8.0 * T * Hq * hd + 8.0 * T + 2.0 * sizeof(elt_t) * Hkv * hd * cached_count(p, slot, pos, T, 1),        \
       4.0 * Hq * hd * cached_count(p, slot, pos, T, 0))
KV_WRITE(kv_write, float)
KV_WRITE(kv_write_bf16, uint16_t)
CACHED(attention_cached, float)
CACHED(attention_cached_bf16, uint16_t)

OP(swiglu_forward, (backend *be, float *out, const float *gate, const float *up, size_t n), (out, gate, up, n),
   12.0 * n, 0)
OP(swiglu_backward,
   (backend *be, float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n),
   (dgate, dup, dout, gate, up, n), 20.0 * n, 0)
OP(swiglu_forward_bf16, (backend *be, uint16_t *out16, const uint16_t *gu, int T, int F), (out16, gu, T, F),
   6.0 * T * F, 0)
OP(swiglu_backward_bf16, (backend *be, uint16_t *dgu16, const uint16_t *dout16, const uint16_t *gu, int T, int F),
   (dgu16, dout16, gu, T, F), 10.0 * T * F, 0)
OP(logprob_forward,
   (backend *be, float *logp, float *entropy, float *lse_out, const float *logits, const int32_t *targets, int T,
    int V),
   (logp, entropy, lse_out, logits, targets, T, V),
   4.0 * ((double)T * V + 2.0 * T + (entropy ? T : 0) + (lse_out ? T : 0)), 0)
/* logits read, then overwritten in place (d16 NULL) or d16 written */
OP(logprob_backward,
   (backend *be, float *logits, uint16_t *d16, const float *dlogp, const float *dentropy, const float *lse,
    const float *entropy, const int32_t *targets, int T, int V),
   (logits, d16, dlogp, dentropy, lse, entropy, targets, T, V),
   (d16 ? 6.0 : 8.0) * T * V + 4.0 * (3.0 * T + (dentropy ? 2.0 * T : 0)), 0)
OP(sample,
   (backend *be, int32_t *ids, float *logp, const float *logits, int n, int V, float temperature, int top_k,
    float top_p, float min_p, const double *u),
   (ids, logp, logits, n, V, temperature, top_k, top_p, min_p, u),
   4.0 * ((double)n * V + 2.0 * n) + (temperature > 0 ? 8.0 * n : 0), 0)
OP(adamw,
   (backend *be, float *p_, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2, float eps,
    float wd, int t),
   (p_, g, m, v, n, lr, b1, b2, eps, wd, t), 28.0 * n, 0)

/* sumsq returns a value (and blocks): written out */
static double prof_sumsq(backend *be, const float *x, size_t n) {
    prof *p = be->impl;
    double t0 = p->on ? op_begin(p) : 0;
    double r = p->inner->sumsq(p->inner, x, n);
    if (p->on) op_add(p, SLOT(sumsq), "sumsq", op_time(p, t0), 4.0 * n, 0);
    err_take(p);
    return r;
}
CHECK_TYPE(sumsq);

backend *backend_profile_wrap(backend *inner) {
    prof *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->inner = inner;
    backend *w = &p->be;
    w->name = inner->name;
    w->n_threads = inner->n_threads;
    w->lm_chunk_bytes = inner->lm_chunk_bytes;
    w->device = inner->device;
    w->stream = inner->stream;
    w->tf32 = inner->tf32;
    w->impl = p;
    memcpy(w->err, inner->err, sizeof w->err);
#define SET(op) w->op = inner->op ? prof_##op : NULL
    SET(alloc), SET(free), SET(copy_h2d), SET(copy_d2h), SET(copy_d2d), SET(zero), SET(sync), SET(destroy);
    SET(bind_thread), SET(matmul), SET(cast_bf16), SET(matmul_bf16), SET(gemm_bf16), SET(add), SET(scale);
    SET(bias_forward), SET(bias_backward), SET(embedding_forward), SET(embedding_backward);
    SET(rmsnorm_forward), SET(rmsnorm_backward), SET(rope_forward), SET(rope_backward);
    SET(rope_forward_bf16);
    SET(attention_forward), SET(attention_backward), SET(attention_forward_bf16), SET(attention_backward_bf16);
    SET(kv_write), SET(attention_cached), SET(kv_write_bf16), SET(attention_cached_bf16);
    SET(swiglu_forward), SET(swiglu_backward), SET(swiglu_forward_bf16), SET(swiglu_backward_bf16);
    SET(logprob_forward), SET(logprob_backward), SET(sample);
    SET(sumsq), SET(adamw);
#undef SET
    return w;
}

/* the wrapper behind be, NULL when be is no wrapper */
static prof *prof_of(backend *be) { return be && be->destroy == prof_destroy ? be->impl : NULL; }

void backend_profile_enable(backend *be, int on) {
    prof *p = prof_of(be);
    if (p) p->on = on != 0;
}

void backend_profile_reset(backend *be) {
    prof *p = prof_of(be);
    if (p) memset(p->stat, 0, sizeof p->stat);
}

profile_stat backend_profile_get(backend *be, const char *op) {
    prof *p = prof_of(be);
    profile_stat t = {0};
    for (size_t i = 0; p && i < N_SLOTS; i++) {
        if (op && p->name[i] && !strcmp(p->name[i], op)) return p->stat[i];
        if (!op) t.calls += p->stat[i].calls, t.sec += p->stat[i].sec, t.bytes += p->stat[i].bytes,
                 t.flops += p->stat[i].flops;
    }
    return t;
}

static const prof *sort_p;
static int by_time(const void *a, const void *b) {
    double x = sort_p->stat[*(const size_t *)a].sec, y = sort_p->stat[*(const size_t *)b].sec;
    return x > y ? -1 : x < y;
}

void backend_profile_report(backend *be, FILE *f) {
    prof *p = prof_of(be);
    if (!p) {
        fprintf(f, "profile: %s is not a profiled backend\n", be ? be->name : "(null)");
        return;
    }
    size_t idx[N_SLOTS], n = 0;
    double total = 0;
    long calls = 0;
    for (size_t i = 0; i < N_SLOTS; i++)
        if (p->stat[i].calls) idx[n++] = i, total += p->stat[i].sec, calls += p->stat[i].calls;
    sort_p = p;
    qsort(idx, n, sizeof *idx, by_time);
    fprintf(f, "profile (%s backend; a sync before and after each op; GB/s counts the minimum traffic):\n",
            p->inner->name);
    fprintf(f, "%-24s %8s %11s %6s %9s %8s %9s\n", "op", "calls", "total ms", "%", "GFLOP/s", "GB/s", "GB");
    double bytes = 0;
    for (size_t j = 0; j < n; j++) {
        const profile_stat *s = &p->stat[idx[j]];
        char gf[32] = "-", gb[32] = "-";
        if (s->flops > 0 && s->sec > 0) snprintf(gf, sizeof gf, "%.1f", s->flops / s->sec / 1e9);
        if (s->bytes > 0 && s->sec > 0) snprintf(gb, sizeof gb, "%.1f", s->bytes / s->sec / 1e9);
        fprintf(f, "%-24s %8ld %11.3f %6.1f %9s %8s %9.3f\n", p->name[idx[j]], s->calls, s->sec * 1e3,
                total > 0 ? 100 * s->sec / total : 0.0, gf, gb, s->bytes / 1e9);
        bytes += s->bytes;
    }
    fprintf(f, "%-24s %8ld %11.3f %6.1f %9s %8s %9.3f\n", "total", calls, total * 1e3, n ? 100.0 : 0.0, "", "",
            bytes / 1e9);
}
