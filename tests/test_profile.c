/* tests/test_profile.c: the per-op profiler (kernels/profile.c) on the CPU
 * backend. A small model (2 layers, q/k/v biases, 3 ragged sequences, 3
 * LM-head chunks) runs forward + backward on a plain backend and on a
 * profiled one, in fp32 and in bf16 mixed precision: log-probs, entropies and
 * every gradient must be bitwise equal, and the call count of each op must be
 * the count the model's structure issues. Then the byte and flop counts of
 * matmul, gemm_bf16, attention_forward and attention_cached against their
 * formulas, NULL ops staying NULL, and an error recorded by the inner
 * backend showing through the wrapper's sync. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model.h"
#include "profile.h"

enum { V = 96, L = 2, CHUNK = 16, NSEQ = 3 };
static const int seq_len[NSEQ] = {11, 17, 12}; /* T = 40: LM-head chunks of 16, 16, 8 */

static void tiny(model_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab = V, c->d_model = 64, c->n_layer = L, c->n_head = 4, c->n_kv_head = 2, c->head_dim = 16;
    c->d_ff = 128, c->rope_theta = 10000.0f, c->rms_eps = 1e-5f, c->tie_embeddings = 1, c->qkv_bias = 1;
    c->max_seq = 64;
}

typedef struct run_out {
    float *logp, *ent, *grads; /* [T], [T], [n_params] */
    size_t n_params;
} run_out;

/* one zero_grads + forward + backward of the fixed batch on be; 0 ok */
static int run_model(backend *be, int mixed, run_out *o) {
    model_config cfg;
    tiny(&cfg);
    int T = 0, cu[NSEQ + 1] = {0};
    for (int s = 0; s < NSEQ; s++) T += seq_len[s], cu[s + 1] = T;
    int32_t tok[64], tgt[64];
    float w[64];
    for (int t = 0; t < T; t++) tok[t] = (t * 37 + 5) % V, tgt[t] = t % 7 == 3 ? -1 : (t * 11 + 2) % V, w[t] = 0.1f + 0.01f * t;
    model_batch b = {.T = T, .n_seq = NSEQ, .tokens = tok, .targets = tgt, .cu_seqlens = cu, .pos = NULL};
    char err[512];
    model m;
    be->lm_chunk_bytes = (size_t)CHUNK * V * sizeof(float);
    if (model_create(&m, &cfg, be, T, err, sizeof err) || model_alloc_grads(&m, err, sizeof err) ||
        model_set_mixed(&m, mixed, err, sizeof err)) {
        CHECK(0, "model: %s", err);
        return -1;
    }
    model_init_weights(&m, 42);
    o->n_params = m.n_params;
    o->logp = malloc(T * sizeof(float)), o->ent = malloc(T * sizeof(float));
    o->grads = malloc(m.n_params * sizeof(float));
    if (be->sync(be)) CHECK(0, "init: %s", be->err);
    backend_profile_reset(be); /* no-op on the plain backend */
    model_zero_grads(&m);
    int rc = model_forward(&m, &b, o->logp, o->ent, err, sizeof err);
    if (!rc) rc = model_backward(&m, &b, w, NULL, err, sizeof err);
    CHECK(!rc, "forward/backward: %s", err);
    be->copy_d2h(be, o->grads, m.grads, m.n_params * sizeof(float));
    CHECK(!be->sync(be), "grads: %s", be->err);
    model_free(&m);
    return rc;
}

/* calls of each op in one zero_grads + forward (logp and entropy read back)
   + backward (no entropy weights) of the model above, from model.c's order:
   C LM-head chunks, qkv biases on */
static void check_counts(backend *pb, int mixed) {
    /* linear / linear_back calls (bf16: gate and up are one stacked product) */
    const long C = 3, lin_fwd = (mixed ? 6 : 7) * L + C, lin_back = (mixed ? 6 : 7) * L + C;
    struct { const char *op; long n; } want[] = {
        {"zero", 1},
        {"copy_h2d", 4 + 1},                     /* batch_upload: tokens, targets, pos, offsets; dlogp */
        {"copy_d2h", 2 + 1},                     /* logp, entropy; and the test's gradient read */
        {"embedding_forward", 1},
        {"rmsnorm_forward", 2 * L + 1},
        {"bias_forward", mixed ? 0 : 3 * L},    /* bf16: rope_forward_bf16 adds the biases */
        {"rope_forward", mixed ? 0 : 2 * L},
        {"rope_forward_bf16", mixed ? L : 0},
        {mixed ? "attention_forward_bf16" : "attention_forward", L},
        {mixed ? "swiglu_forward_bf16" : "swiglu_forward", L},
        {"logprob_forward", C},
        {"scale", 1},
        {"logprob_backward", C},
        {"rmsnorm_backward", 2 * L + 1},
        {mixed ? "swiglu_backward_bf16" : "swiglu_backward", L},
        {mixed ? "attention_backward_bf16" : "attention_backward", L},
        {"rope_backward", mixed ? 0 : 2 * L},
        {"bias_backward", mixed ? 0 : 3 * L},   /* bf16: products with a ones row */
        {"embedding_backward", 1},
        /* fp32: one matmul per linear, two per linear_back (the LM head's
           forward is recomputed in backward: lm_head_chunk in both) */
        {"matmul", mixed ? 0 : lin_fwd + C + 2 * lin_back},
        /* bf16: the same as gemm_bf16, plus per layer the three bias
           gradients (q/k/v are not adjacent with biases between them: one
           product per projection); the casts: the weights', and per layer
           the attention norm's output gradient, which those three dx
           products sum in fp32 (every other gradient is rounded by the op
           that computes it) */
        {"gemm_bf16", mixed ? lin_fwd + C + 2 * lin_back + 3 * L : 0},
        {"cast_bf16", mixed ? 1 + L : 0},
    };
    long total = 0;
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        profile_stat s = backend_profile_get(pb, want[i].op);
        CHECK(s.calls == want[i].n, "%s %s: %ld calls, the model issues %ld", mixed ? "bf16" : "fp32", want[i].op,
              s.calls, want[i].n);
        CHECK(s.calls == 0 || (s.sec > 0 && s.bytes > 0), "%s: time %g bytes %g", want[i].op, s.sec, s.bytes);
        total += want[i].n;
    }
    profile_stat all = backend_profile_get(pb, NULL);
    CHECK(all.calls == total, "%s: %ld calls in all, %ld expected (an op outside the table was called)",
          mixed ? "bf16" : "fp32", all.calls, total);
}

static void check_model(int mixed) {
    backend *plain = backend_cpu_create(2), *pb = backend_profile_wrap(backend_cpu_create(2));
    CHECK(plain && pb, "backends");
    if (!plain || !pb) return;
    backend_profile_enable(pb, 1);
    run_out a, b;
    if (!run_model(plain, mixed, &a) && !run_model(pb, mixed, &b)) {
        int T = 40;
        CHECK(!memcmp(a.logp, b.logp, T * sizeof(float)), "%s logp differ through the wrapper", mixed ? "bf16" : "fp32");
        CHECK(!memcmp(a.ent, b.ent, T * sizeof(float)), "%s entropy differ", mixed ? "bf16" : "fp32");
        CHECK(!memcmp(a.grads, b.grads, a.n_params * sizeof(float)), "%s gradients differ", mixed ? "bf16" : "fp32");
        check_counts(pb, mixed);
        printf("%s: forward+backward bitwise equal through the wrapper, %ld op calls counted\n",
               mixed ? "bf16" : "fp32", backend_profile_get(pb, NULL).calls);
        backend_profile_report(pb, stdout);
        free(a.logp), free(a.ent), free(a.grads), free(b.logp), free(b.ent), free(b.grads);
    }
    plain->destroy(plain);
    pb->destroy(pb);
}

/* bytes and flops of matmul, gemm_bf16, attention_forward, attention_cached
   against the formulas */
static void check_formulas(void) {
    backend *pb = backend_profile_wrap(backend_cpu_create(1));
    backend_profile_enable(pb, 1);
    int M = 5, N = 7, K = 3, batch = 2;
    float *A = pb->alloc(pb, batch * M * K * 4), *B = pb->alloc(pb, batch * K * N * 4);
    float *Cm = pb->alloc(pb, batch * M * N * 4);
    pb->matmul(pb, 0, 0, M, N, K, 1.0f, A, K, M * K, B, N, K * N, 1.0f, Cm, N, M * N, batch);
    profile_stat s = backend_profile_get(pb, "matmul");
    /* A, B read, C read and written (beta 1), each of the 2 products */
    CHECK(s.calls == 1 && s.flops == 2.0 * M * N * K * batch && s.bytes == 4.0 * batch * (M * K + K * N + 2 * M * N),
          "matmul: %ld calls, %g flops (want %d), %g bytes", s.calls, s.flops, 2 * M * N * K * batch, s.bytes);
    uint16_t *A16 = pb->alloc(pb, M * K * 2), *B16 = pb->alloc(pb, N * K * 2);
    pb->gemm_bf16(pb, 0, 1, M, N, K, A16, K, B16, K, 0.0f, Cm, NULL, N);
    s = backend_profile_get(pb, "gemm_bf16");
    CHECK(s.flops == 2.0 * M * N * K && s.bytes == 2.0 * (M * K + N * K) + 4.0 * M * N,
          "gemm_bf16: %g flops, %g bytes", s.flops, s.bytes);
    uint16_t *C16 = pb->alloc(pb, M * N * 2); /* a bf16 output: 2 bytes per element written */
    pb->gemm_bf16(pb, 0, 1, M, N, K, A16, K, B16, K, 0.0f, NULL, C16, N);
    s = backend_profile_get(pb, "gemm_bf16");
    CHECK(s.calls == 2 && s.bytes == 2.0 * (2.0 * (M * K + N * K) + 3.0 * M * N), "gemm_bf16 C16: %g bytes",
          s.bytes);
    pb->free(pb, C16);

    /* attention over 2 sequences of 3 and 5 tokens: 6 + 15 causal pairs */
    int Hq = 2, Hkv = 1, hd = 4, T = 8, cuh[3] = {0, 3, 8};
    float *q = pb->alloc(pb, T * Hq * hd * 4), *k = pb->alloc(pb, T * Hkv * hd * 4), *v = pb->alloc(pb, T * Hkv * hd * 4);
    float *o = pb->alloc(pb, T * Hq * hd * 4), *lse = pb->alloc(pb, T * Hq * 4);
    int32_t *cu = pb->alloc(pb, sizeof cuh);
    pb->copy_h2d(pb, cu, cuh, sizeof cuh);
    pb->attention_forward(pb, o, lse, q, k, v, cu, 2, T, Hq, Hkv, hd, 0.5f);
    s = backend_profile_get(pb, "attention_forward");
    CHECK(s.flops == 4.0 * Hq * hd * 21, "attention_forward: %g flops, want %d", s.flops, 4 * Hq * hd * 21);
    /* cached attention: queries at (slot, pos) (0, 2), (0, 4), (1, 1): 3 + 5 + 2
       query-key pairs; the cache rows read: 5 of slot 0, 2 of slot 1 */
    int slh[3] = {0, 0, 1}, poh[3] = {2, 4, 1}, max_seq = 8;
    int32_t *sl = pb->alloc(pb, sizeof slh), *po = pb->alloc(pb, sizeof poh);
    float *kc = pb->alloc(pb, 2 * max_seq * Hkv * hd * 4), *vc = pb->alloc(pb, 2 * max_seq * Hkv * hd * 4);
    pb->copy_h2d(pb, sl, slh, sizeof slh), pb->copy_h2d(pb, po, poh, sizeof poh);
    pb->attention_cached(pb, o, q, kc, vc, sl, po, 3, Hq, Hkv, hd, max_seq, 0.5f);
    s = backend_profile_get(pb, "attention_cached");
    CHECK(s.flops == 4.0 * Hq * hd * 10 && s.bytes == 4.0 * 2 * 3 * Hq * hd + 8 * 3 + 2 * 4.0 * Hkv * hd * 7,
          "attention_cached: %g flops, %g bytes", s.flops, s.bytes);
    CHECK(!pb->sync(pb), "sync after good ops: %s", pb->err);

    /* an error the inner backend records (offsets that do not end at T) is
       the wrapper's too, profiling on or off, and stays */
    CHECK(pb->sample == NULL, "the CPU backend's NULL sample op must stay NULL");
    backend_profile_enable(pb, 0);
    pb->attention_forward(pb, o, lse, q, k, v, cu, 2, T + 1, Hq, Hkv, hd, 0.5f);
    CHECK(pb->sync(pb) == -1 && strstr(pb->err, "cu_seqlens"), "inner error through the wrapper: \"%s\"", pb->err);
    CHECK(pb->sync(pb) == -1, "the error is sticky");
    pb->destroy(pb);

    backend *in = backend_cpu_create(1), *pe = backend_profile_wrap(in);
    float *x = pe->alloc(pe, 64);
    backend_profile_enable(pe, 1);
    snprintf(in->err, sizeof in->err, "x.c:1: injected");
    pe->zero(pe, x, 64); /* any op: the wrapper takes the error after it */
    CHECK(!strcmp(pe->err, "x.c:1: injected"), "injected error after an op: \"%s\"", pe->err);
    CHECK(pe->sync(pe) == -1, "sync reports the injected error");
    pe->destroy(pe);
}

/* every op of the inner backend is wrapped (a new op in backend.h without a
   wrapper would be NULL here), NULL ones stay NULL, the scalar fields copied */
static void check_table(void) {
    backend *in = backend_cpu_create(1), *pb = backend_profile_wrap(in);
    enum { N = (sizeof(backend) - offsetof(backend, alloc)) / sizeof(void (*)(void)) };
    void (*fi[N])(void), (*fw[N])(void);
    memcpy(fi, (char *)in + offsetof(backend, alloc), sizeof fi);
    memcpy(fw, (char *)pb + offsetof(backend, alloc), sizeof fw);
    int wrapped = 0;
    for (int i = 0; i < N; i++) {
        CHECK(!fi[i] == !fw[i], "op slot %d: inner %s, wrapper %s", i, fi[i] ? "set" : "NULL", fw[i] ? "set" : "NULL");
        CHECK(!fi[i] || fi[i] != fw[i], "op slot %d forwards without the wrapper", i);
        wrapped += fw[i] != NULL;
    }
    CHECK(pb->n_threads == in->n_threads && pb->lm_chunk_bytes == in->lm_chunk_bytes && !strcmp(pb->name, in->name),
          "scalar fields differ");
    printf("table: %d of %d ops wrapped (the rest NULL in the CPU backend)\n", wrapped, N);
    pb->destroy(pb);
}

int main(void) {
    check_table();
    check_model(0);
    check_model(1);
    check_formulas();
    printf("%s\n", fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}
