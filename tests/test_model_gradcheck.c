/* tests/test_model_gradcheck.c: model_backward against central finite
 * differences of the model's own forward, for EVERY element of every
 * parameter tensor, on two tiny random configs (untied + q/k/v biases + GQA;
 * tied, no bias, n_head * head_dim != d_model, one kv head) and a packed
 * batch of ragged sequences with ignored targets. Two scalar losses:
 *   L_w   = -sum_t w[t] logp[t]              (policy-gradient / SFT path)
 *   L_ent = -sum_t went[t] entropy[t]        (entropy bonus path)
 * Weights start from model_init_weights(seed) and are then spread out
 * (linear weights ~ 1/sqrt(in), norms 1 + N(0, 0.1), biases N(0, 0.1)) so
 * attention and the predictive distribution are far from uniform and the
 * loss differences stand well above float32 noise.
 * Per tensor: ||fd - analytic|| / ||analytic|| <= 2e-2 (fp32 forward noise
 * ~1e-3 here; a wrong backward gives O(1)); and the worst element's
 * |fd - analytic| <= 5e-3 + 5e-2 |analytic|. Exit 1 on any failure. */
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
    printf("%s %-66s %.3e (tol %.0e)\n", ok ? "ok  " : "FAIL", what, err, tol);
}

typedef struct gc_case {
    const char *label;
    model_config cfg;
    int n_seq;
    int lens[4];
} gc_case;

/* loss of the current parameters: -sum w logp - sum went H, in double */
static double loss_of(model *m, const model_batch *b, const float *w, const float *went, float *logp, float *ent) {
    char err[256];
    if (model_forward(m, b, logp, ent, err, sizeof err)) {
        printf("FAIL model_forward: %s\n", err);
        exit(1);
    }
    double L = 0;
    for (int t = 0; t < b->T; t++) L -= (double)w[t] * logp[t] + (double)went[t] * ent[t];
    return L;
}

static void spread_weights(model *m, uint64_t seed) {
    backend *be = m->be;
    float *p = malloc(m->n_params * sizeof(float));
    be->copy_d2h(be, p, m->params, m->n_params * sizeof(float));
    be->sync(be);
    uint64_t key = rng_key(seed, 77, 0, 0);
    uint64_t ctr = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        float *x = p + t->offset;
        if (strstr(t->name, "norm.weight")) {
            for (size_t j = 0; j < t->numel; j++) x[j] = (float)(1.0 + 0.1 * rng_normal(key, ctr++));
        } else if (strstr(t->name, ".bias")) {
            for (size_t j = 0; j < t->numel; j++) x[j] = (float)(0.1 * rng_normal(key, ctr++));
        } else if (!strcmp(t->name, "model.embed_tokens.weight")) {
            /* tied: also the LM head; 0.3 keeps logits O(1) */
            for (size_t j = 0; j < t->numel; j++) x[j] *= 0.3f / 0.02f;
        } else {
            /* init std is 0.02 (0.02/sqrt(2L) for o_proj/down_proj): rescale to ~1/sqrt(in) */
            double sd = 0;
            for (size_t j = 0; j < t->numel; j++) sd += (double)x[j] * x[j];
            sd = sqrt(sd / t->numel);
            float s = (float)(1.0 / sqrt((double)t->shape[1]) / sd);
            for (size_t j = 0; j < t->numel; j++) x[j] *= s;
        }
    }
    be->copy_h2d(be, m->params, p, m->n_params * sizeof(float));
    be->sync(be);
    free(p);
}

/* Runs the finite-difference check of one loss (w, went) on every element. */
static void gradcheck(model *m, const model_batch *b, const float *w, const float *went, const char *label) {
    backend *be = m->be;
    char err[256];
    int T = b->T;
    float *logp = malloc(T * sizeof(float)), *ent = malloc(T * sizeof(float));
    float *g = malloc(m->n_params * sizeof(float));
    float *p = malloc(m->n_params * sizeof(float));
    be->copy_d2h(be, p, m->params, m->n_params * sizeof(float));

    loss_of(m, b, w, went, logp, ent);
    model_zero_grads(m);
    if (model_backward(m, b, w, went, err, sizeof err)) {
        printf("FAIL model_backward: %s\n", err);
        exit(1);
    }
    be->copy_d2h(be, g, m->grads, m->n_params * sizeof(float));
    be->sync(be);

    const float h = 1e-2f;
    double worst_t = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        double num = 0, den = 0, worst_e = 0;
        for (size_t j = 0; j < t->numel; j++) {
            size_t k = t->offset + j;
            float x0 = p[k], xp = x0 + h, xm = x0 - h;
            be->copy_h2d(be, m->params + k, &xp, sizeof(float));
            double Lp = loss_of(m, b, w, went, logp, ent);
            be->copy_h2d(be, m->params + k, &xm, sizeof(float));
            double Lm = loss_of(m, b, w, went, logp, ent);
            be->copy_h2d(be, m->params + k, &x0, sizeof(float));
            double fd = (Lp - Lm) / ((double)xp - (double)xm);
            double an = g[k], d = fd - an;
            num += d * d;
            den += an * an;
            double e = fabs(d) / (5e-3 + 5e-2 * fabs(an)); /* <= 1 passes */
            if (e > worst_e || isnan(e)) worst_e = e;
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        char what[200];
        snprintf(what, sizeof what, "%s %s (||fd-an||/||an||, %zu el)", label, t->name, t->numel);
        check(what, rel, 2e-2);
        snprintf(what, sizeof what, "%s %s worst element (|d| / (5e-3 + 5e-2|an|))", label, t->name);
        check(what, worst_e, 1.0);
        if (den == 0) {
            /* every tensor gets gradient on these batches: all-zero means a path is cut */
            snprintf(what, sizeof what, "%s %s gradient is identically zero", label, t->name);
            check(what, 1.0, 0.0);
        }
        if (rel > worst_t || isnan(rel)) worst_t = rel;
    }
    printf("     %s: worst tensor rel err %.3e\n", label, worst_t);
    free(logp);
    free(ent);
    free(g);
    free(p);
}

static void run(const gc_case *c, uint64_t seed) {
    char err[256];
    backend *be = backend_cpu_create(1);
    model m;
    int T = 0;
    for (int s = 0; s < c->n_seq; s++) T += c->lens[s];
    if (model_create(&m, &c->cfg, be, T, err, sizeof err) || model_alloc_grads(&m, err, sizeof err)) {
        printf("FAIL %s: %s\n", c->label, err);
        n_fail++;
        be->destroy(be);
        return;
    }
    model_init_weights(&m, seed);
    spread_weights(&m, seed);

    int32_t *tokens = malloc(T * sizeof(int32_t)), *targets = malloc(T * sizeof(int32_t));
    int32_t cu[5] = {0};
    float *w = malloc(T * sizeof(float)), *went = malloc(T * sizeof(float)), *zero = calloc(T, sizeof(float));
    uint64_t key = rng_key(seed, 78, 0, 0);
    int V = c->cfg.vocab;
    for (int s = 0; s < c->n_seq; s++) cu[s + 1] = cu[s] + c->lens[s];
    for (int t = 0; t < T; t++) {
        tokens[t] = (int32_t)(rng_u64(key, 4 * t) % V);
        targets[t] = (int32_t)(rng_u64(key, 4 * t + 1) % V);
        w[t] = (float)(0.5 * rng_normal(key, 4 * t + 2));
        went[t] = (float)(0.5 * rng_normal(key, 4 * t + 3));
    }
    /* next-token targets inside sequences, the last of each sequence ignored
       except in sequence 1 (explicit continuation); token 1 ignored too */
    for (int s = 0; s < c->n_seq; s++) {
        for (int t = cu[s]; t < cu[s + 1] - 1; t++) targets[t] = tokens[t + 1];
        if (s != 1) targets[cu[s + 1] - 1] = -1;
    }
    targets[1] = -1;
    model_batch b = {.T = T, .n_seq = c->n_seq, .tokens = tokens, .targets = targets, .cu_seqlens = cu, .pos = NULL};

    printf("== %s: V=%d D=%d L=%d Hq=%d Hkv=%d hd=%d F=%d tied=%d bias=%d, T=%d in %d sequences, %zu parameters\n",
           c->label, V, c->cfg.d_model, c->cfg.n_layer, c->cfg.n_head, c->cfg.n_kv_head, c->cfg.head_dim,
           c->cfg.d_ff, c->cfg.tie_embeddings, c->cfg.qkv_bias, T, c->n_seq, m.n_params);
    char label[96];
    snprintf(label, sizeof label, "%s L_w", c->label);
    gradcheck(&m, &b, w, zero, label);
    snprintf(label, sizeof label, "%s L_ent", c->label);
    gradcheck(&m, &b, zero, went, label);

    free(tokens);
    free(targets);
    free(w);
    free(went);
    free(zero);
    model_free(&m);
    be->destroy(be);
}

int main(void) {
    double t0 = now_seconds();
    gc_case cases[] = {
        {"qwen2-like", {.vocab = 29, .d_model = 16, .n_layer = 2, .n_head = 4, .n_kv_head = 2, .head_dim = 4,
                        .d_ff = 24, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = 0, .qkv_bias = 1,
                        .max_seq = 32},
         3, {4, 7, 2}},
        {"llama-tied", {.vocab = 31, .d_model = 12, .n_layer = 1, .n_head = 3, .n_kv_head = 1, .head_dim = 6,
                        .d_ff = 20, .rope_theta = 500000.0f, .rms_eps = 1e-6f, .tie_embeddings = 1, .qkv_bias = 0,
                        .max_seq = 32},
         3, {1, 8, 5}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run(&cases[i], 1000 + i);
    printf("%d/%d checks passed (%.1f s)\n", n_check - n_fail, n_check, now_seconds() - t0);
    return n_fail ? 1 : 0;
}
