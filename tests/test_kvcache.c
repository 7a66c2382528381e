/* tests/test_kvcache.c: logits computed through the KV cache (chunked
 * prefill, then one token per step, ragged sequences interleaved in one
 * batch, slots copied for shared prompts) equal a full packed forward over
 * the whole sequences, on the CPU backend (fp32, 1e-5 relative);
 * model_step_cached_fn's per-chunk device logits equal model_step_cached's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

static int failures = 0;

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static void check(const char *what, double err, double tol) {
    int ok = err <= tol && isfinite(err);
    printf("%s %-52s rel err %.2e (tol %.0e)\n", ok ? "ok  " : "FAIL", what, err, tol);
    if (!ok) failures++;
}

static void run(const model_config *cfg, const char *label) {
    char err[512];
    backend *be = backend_cpu_create(2);
    model m;
    if (model_create(&m, cfg, be, 64, err, sizeof err)) {
        printf("FAIL model_create: %s\n", err);
        failures++;
        return;
    }
    model_init_weights(&m, 42);
    /* larger weights than the default init so logits vary strongly */
    for (int i = 0; i < m.n_tensors; i++) {
        if (strstr(m.tensors[i].name, "norm")) continue;
        be->scale(be, m.params + m.tensors[i].offset, 10.0f, m.tensors[i].numel);
    }
    enum { NS = 3 };
    int len[NS] = {9, 14, 1}, V = cfg->vocab;
    int T = 0, cu[NS + 1] = {0};
    for (int s = 0; s < NS; s++) cu[s + 1] = cu[s] + len[s], T += len[s];
    int32_t tok[64], tgt[64];
    for (int t = 0; t < T; t++) tok[t] = (int32_t)(rng_u64(3, t) % V), tgt[t] = -1;
    model_batch b = {.T = T, .n_seq = NS, .tokens = tok, .targets = tgt, .cu_seqlens = cu};
    float *full = malloc((size_t)T * V * sizeof(float)), *step = malloc((size_t)T * V * sizeof(float));
    if (model_forward(&m, &b, NULL, NULL, err, sizeof err) || model_logits(&m, 0, T, full, err, sizeof err)) {
        printf("FAIL forward: %s\n", err);
        failures++;
        return;
    }
    kv_cache kv;
    if (kv_cache_create(&kv, &m, 4, 32, err, sizeof err)) {
        printf("FAIL kv_cache_create: %s\n", err);
        failures++;
        return;
    }
    /* sequence s lives in slot s+1 (slot 0 unused); prefill the first 4 tokens
       of every sequence in one call, then one token per sequence per step */
    int done[NS] = {0};
    for (int round = 0;; round++) {
        int32_t tk[64], sl[64], ps[64], rows[64], dst[64];
        int n = 0;
        for (int s = 0; s < NS; s++) {
            int take = round == 0 ? 4 : 1;
            for (int k = 0; k < take && done[s] < len[s]; k++, done[s]++) {
                tk[n] = tok[cu[s] + done[s]], sl[n] = s + 1, ps[n] = done[s];
                rows[n] = n, dst[n] = cu[s] + done[s];
                n++;
            }
        }
        if (!n) break;
        float *lg = malloc((size_t)n * V * sizeof(float));
        if (model_step_cached(&m, &kv, n, tk, sl, ps, n, rows, lg, err, sizeof err)) {
            printf("FAIL step: %s\n", err);
            failures++;
            return;
        }
        for (int i = 0; i < n; i++) memcpy(step + (size_t)dst[i] * V, lg + (size_t)i * V, V * sizeof(float));
        free(lg);
    }
    char what[128];
    snprintf(what, sizeof what, "%s: cached steps == full forward", label);
    check(what, rel_err(step, full, (size_t)T * V), 1e-5);

    /* shared prefill: copy slot 2 (sequence 1, all 14 positions) into slot 0,
       then continue both with the same token: identical logits */
    kv_cache_copy_slot(&kv, be, 0, 2, len[1]);
    int32_t tk[2] = {5, 5}, sl[2] = {0, 2}, ps[2] = {len[1], len[1]}, rows[2] = {0, 1};
    float *lg = malloc(2 * (size_t)V * sizeof(float));
    if (model_step_cached(&m, &kv, 2, tk, sl, ps, 2, rows, lg, err, sizeof err)) {
        printf("FAIL step: %s\n", err);
        failures++;
    } else {
        snprintf(what, sizeof what, "%s: copied slot continues identically", label);
        check(what, rel_err(lg, lg + V, V), 0.0);
    }
    /* bad input is rejected, not read out of bounds */
    int32_t bad_pos[1] = {32}, one_slot[1] = {0}, one_tok[1] = {1}, row0[1] = {0};
    snprintf(what, sizeof what, "%s: position past the cache rejected", label);
    check(what, model_step_cached(&m, &kv, 1, one_tok, one_slot, bad_pos, 1, row0, lg, err, sizeof err) == -1 ? 0 : 1, 0);
    free(lg);
    free(full);
    free(step);
    kv_cache_free(&kv, be);
    model_free(&m);
    be->destroy(be);
}

/* model_step_cached_fn hands over the LM head's chunks in order: a vocab
   large enough for several chunks (70000: 59 rows each), 128 output rows in
   reverse order; the chunks, copied out, equal model_step_cached's logits
   bit for bit and tile [0, 128) */
typedef struct { backend *be; float *out; int V, next, n_chunks, bad; } chunk_rec;
static void record_chunk(void *ctx, const float *logits, int row0, int k) {
    chunk_rec *r = ctx;
    if (row0 != r->next || k <= 0) r->bad++;
    r->be->copy_d2h(r->be, r->out + (size_t)row0 * r->V, logits, (size_t)k * r->V * sizeof(float));
    r->next = row0 + k;
    r->n_chunks++;
}
static void run_chunks(void) {
    enum { N = 128 };
    char err[512], what[128];
    model_config c = {.vocab = 70000, .d_model = 16, .n_layer = 1, .n_head = 2, .n_kv_head = 1, .head_dim = 8,
                      .d_ff = 24, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = 1, .max_seq = 4};
    backend *be = backend_cpu_create(2);
    be->lm_chunk_bytes = (size_t)16 << 20; /* 59 rows of this vocabulary per chunk: 128 rows make 3 */
    model m;
    kv_cache kv;
    if (model_create(&m, &c, be, N, err, sizeof err) || kv_cache_create(&kv, &m, N, 2, err, sizeof err)) {
        printf("FAIL model_create: %s\n", err);
        failures++;
        return;
    }
    model_init_weights(&m, 9);
    int32_t tok[N], sl[N], ps[N], rows[N];
    for (int t = 0; t < N; t++) tok[t] = (int32_t)(rng_u64(5, t) % c.vocab), sl[t] = t, ps[t] = 0, rows[t] = N - 1 - t;
    float *ref = malloc((size_t)N * c.vocab * sizeof(float)), *got = malloc((size_t)N * c.vocab * sizeof(float));
    chunk_rec rec = {be, got, c.vocab, 0, 0, 0};
    if (model_step_cached(&m, &kv, N, tok, sl, ps, N, rows, ref, err, sizeof err) ||
        model_step_cached_fn(&m, &kv, N, tok, sl, ps, N, rows, record_chunk, &rec, err, sizeof err)) {
        printf("FAIL step: %s\n", err);
        failures++;
    } else {
        snprintf(what, sizeof what, "step_cached_fn: %d chunks in order, = step_cached", rec.n_chunks);
        check(what, rec.bad || rec.next != N || rec.n_chunks < 2 ? 1 : rel_err(got, ref, (size_t)N * c.vocab), 0.0);
    }
    free(ref);
    free(got);
    kv_cache_free(&kv, be);
    model_free(&m);
    be->destroy(be);
}

int main(void) {
    model_config c = {.vocab = 97, .d_model = 48, .n_layer = 2, .n_head = 6, .n_kv_head = 2, .head_dim = 8,
                      .d_ff = 80, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = 1, .qkv_bias = 0,
                      .max_seq = 64};
    run(&c, "gqa tied");
    c.n_kv_head = 6, c.tie_embeddings = 0, c.qkv_bias = 1, c.head_dim = 16, c.n_head = 3, c.n_kv_head = 3;
    run(&c, "mha untied bias");
    run_chunks();
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
