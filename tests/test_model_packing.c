/* tests/test_model_packing.c: packing invariance of the model on the CPU
 * backend. Sequences are independent, so the log-probs, entropies, logits and
 * gradients of one packed batch must equal those of the same sequences split
 * over several smaller batches (gradients accumulated over the pieces). The
 * vocabulary is large enough that the big batch spans three LM-head chunks
 * (model.c holds at most ~4M logits at a time) while each piece fits in one,
 * so chunk offsets in forward, model_logits and backward are exercised
 * against the unchunked path. The big batch passes explicit positions, the
 * pieces pos = NULL (derived from cu_seqlens). Tolerance 1e-5 relative
 * (only summation order differs). Exit 1 on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

static int n_fail, n_check;

static void check(const char *what, double err, double tol) {
    int ok = err <= tol; /* NaN fails */
    n_check++;
    if (!ok) n_fail++;
    printf("%s %-60s rel err %.3e (tol %.0e)\n", ok ? "ok  " : "FAIL", what, err, tol);
}

static double relerr(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#define N_SEQ 9
#define N_PIECES 3

int main(void) {
    char err[512];
    model_config cfg = {.vocab = 20011, .d_model = 16, .n_layer = 1, .n_head = 2, .n_kv_head = 1, .head_dim = 8,
                        .d_ff = 32, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = 0, .qkv_bias = 1,
                        .max_seq = 128};
    uint64_t key = rng_key(7, 8, 9, 0);
    int lens[N_SEQ], T = 0;
    for (int s = 0; s < N_SEQ; s++) {
        lens[s] = 30 + (int)(rng_u64(key, 1000 + s) % 40); /* a piece of 3 stays under one chunk (209) */
        T += lens[s];
    }
    /* pieces: sequences [0,3), [3,6), [6,9) */
    backend *be = backend_cpu_create(2);
    model m;
    if (model_create(&m, &cfg, be, T, err, sizeof err) || model_alloc_grads(&m, err, sizeof err)) {
        printf("FAIL model_create: %s\n", err);
        return 1;
    }
    model_init_weights(&m, 5);
    /* biases and norms away from their init values so their gradients are generic */
    {
        float *p = malloc(m.n_params * sizeof(float));
        be->copy_d2h(be, p, m.params, m.n_params * sizeof(float));
        be->sync(be);
        for (int i = 0; i < m.n_tensors; i++) {
            const model_tensor *t = &m.tensors[i];
            float s = strstr(t->name, ".bias") || strstr(t->name, "norm.weight") ? 0.1f : 0.0f;
            for (size_t j = 0; j < t->numel; j++) p[t->offset + j] += s * (float)rng_normal(key, 5000 + t->offset + j);
        }
        be->copy_h2d(be, m.params, p, m.n_params * sizeof(float));
        free(p);
    }

    int32_t *tokens = malloc(T * sizeof(int32_t)), *targets = malloc(T * sizeof(int32_t)), *pos = malloc(T * sizeof(int32_t));
    float *w = malloc(T * sizeof(float)), *went = malloc(T * sizeof(float));
    int32_t cu[N_SEQ + 1] = {0};
    for (int s = 0; s < N_SEQ; s++) cu[s + 1] = cu[s] + lens[s];
    for (int s = 0; s < N_SEQ; s++)
        for (int t = cu[s]; t < cu[s + 1]; t++) {
            tokens[t] = (int32_t)(rng_u64(key, 3 * t) % cfg.vocab);
            pos[t] = t - cu[s];
        }
    for (int t = 0; t < T; t++) {
        int last = 0;
        for (int s = 0; s < N_SEQ; s++) last |= t == cu[s + 1] - 1;
        targets[t] = last ? -1 : tokens[t + 1];
        if (t % 17 == 5) targets[t] = -1;
        w[t] = (float)(0.1 * rng_normal(key, 3 * t + 1));
        went[t] = (float)(0.1 * rng_normal(key, 3 * t + 2));
    }
    printf("T=%d tokens in %d sequences, V=%d (the LM head runs in chunks of ~%d tokens)\n", T, N_SEQ, cfg.vocab,
           (1 << 22) / cfg.vocab);

    size_t V = cfg.vocab;
    float *lp_big = malloc(T * sizeof(float)), *ent_big = malloc(T * sizeof(float));
    float *lp_sub = malloc(T * sizeof(float)), *ent_sub = malloc(T * sizeof(float));
    float *g_big = malloc(m.n_params * sizeof(float)), *g_sub = malloc(m.n_params * sizeof(float));
    float *lg_big = malloc((size_t)T * V * sizeof(float)), *lg_sub = malloc((size_t)T * V * sizeof(float));

    /* one packed batch, explicit positions */
    model_batch big = {.T = T, .n_seq = N_SEQ, .tokens = tokens, .targets = targets, .cu_seqlens = cu, .pos = pos};
    model_zero_grads(&m);
    if (model_forward(&m, &big, lp_big, ent_big, err, sizeof err) || model_logits(&m, 0, T, lg_big, err, sizeof err) ||
        model_backward(&m, &big, w, went, err, sizeof err)) {
        printf("FAIL big batch: %s\n", err);
        return 1;
    }
    /* a logits range straddling the first chunk boundary */
    int chunk = (1 << 22) / cfg.vocab, r0 = chunk - 3, rn = 7;
    float *lg_rng = malloc((size_t)rn * V * sizeof(float));
    if (r0 + rn <= T && model_logits(&m, r0, rn, lg_rng, err, sizeof err)) {
        printf("FAIL model_logits range: %s\n", err);
        return 1;
    }
    be->copy_d2h(be, g_big, m.grads, m.n_params * sizeof(float));
    be->sync(be);

    /* the same sequences in three pieces, pos derived, gradients accumulated */
    model_zero_grads(&m);
    for (int p = 0; p < N_PIECES; p++) {
        int s0 = p * N_SEQ / N_PIECES, s1 = (p + 1) * N_SEQ / N_PIECES, t0 = cu[s0];
        int32_t cup[N_SEQ + 1];
        for (int s = s0; s <= s1; s++) cup[s - s0] = cu[s] - t0;
        model_batch pb = {.T = cu[s1] - t0, .n_seq = s1 - s0, .tokens = tokens + t0, .targets = targets + t0,
                          .cu_seqlens = cup, .pos = NULL};
        if (model_forward(&m, &pb, lp_sub + t0, ent_sub + t0, err, sizeof err) ||
            model_logits(&m, 0, pb.T, lg_sub + (size_t)t0 * V, err, sizeof err) ||
            model_backward(&m, &pb, w + t0, went + t0, err, sizeof err)) {
            printf("FAIL piece %d: %s\n", p, err);
            return 1;
        }
    }
    be->copy_d2h(be, g_sub, m.grads, m.n_params * sizeof(float));
    be->sync(be);

    check("log-probs: one batch vs three", relerr(lp_big, lp_sub, T), 1e-5);
    check("entropies: one batch vs three", relerr(ent_big, ent_sub, T), 1e-5);
    check("logits [T, V]: one batch vs three", relerr(lg_big, lg_sub, (size_t)T * V), 1e-5);
    if (r0 + rn <= T) check("logits of rows across a chunk boundary", relerr(lg_rng, lg_sub + (size_t)r0 * V, (size_t)rn * V), 1e-5);
    double worst = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        const model_tensor *t = &m.tensors[i];
        char what[160];
        snprintf(what, sizeof what, "gradient %s", t->name);
        double e = relerr(g_big + t->offset, g_sub + t->offset, t->numel);
        check(what, e, 1e-5);
        if (e > worst || isnan(e)) worst = e;
    }
    printf("worst gradient rel err %.3e\n", worst);

    free(tokens);
    free(targets);
    free(pos);
    free(w);
    free(went);
    free(lp_big);
    free(ent_big);
    free(lp_sub);
    free(ent_sub);
    free(g_big);
    free(g_sub);
    free(lg_big);
    free(lg_sub);
    free(lg_rng);
    model_free(&m);
    be->destroy(be);
    printf("%d/%d checks passed\n", n_check - n_fail, n_check);
    return n_fail ? 1 : 0;
}
