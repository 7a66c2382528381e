/* tools/bench/bench_model.c: forward+backward throughput of the model on the
 * CPU backend. Prints tokens/s, achieved GFLOP/s (3x forward FLOPs: matmuls
 * + causal attention) and peak RSS, one line of JSON per shape, so
 * tools/bench/run_model_bench.sh can put it next to PyTorch.
 *
 *   bench_model [--shape smollm2|10m|tiny] [--seqs B] [--seqlen N] [--steps S] [--threads K]
 *               [--dtype fp32|bf16] [--profile] [--lm-chunk-mb N] [--separate]
 * A step is model_forward_backward (the LM head's forward and backward in
 * one pass, as the trainer runs it); --separate: model_forward then
 * model_backward (the head's logits computed twice; fwd_s / bwd_s split).
 * --dtype bf16: model.dtype bf16 (bf16 GEMM operands, fp32 everything else).
 * --profile: the backend is wrapped by kernels/profile.c (profiling off
 * during the timed steps); after them, two more steps run profiled (a sync
 * around each op) and the per-op table follows the JSON line.
 * --lm-chunk-mb N: LM-head logits chunks of N MB instead of the CPU's 128 MB
 * (1024: the CUDA backend's chunk on an 80 GB card), so the profile's bytes
 * are a GPU step's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "model.h"
#include "profile.h"
#include "util.h"

/* the loss weights of the benchmark: every token 1 / T (ctx: that float) */
static int const_loss(void *ctx, int t0, int n, const float *logp, const float *ent, float *w, float *went) {
    for (int i = 0; i < n; i++) w[i] = *(const float *)ctx;
    return 0;
}

static int shape_config(const char *name, model_config *c) {
    memset(c, 0, sizeof *c);
    c->rope_theta = 10000.0f;
    c->rms_eps = 1e-5f;
    c->max_seq = 8192;
    if (!strcmp(name, "smollm2")) { /* SmolLM2-135M */
        c->vocab = 49152, c->d_model = 576, c->n_layer = 30, c->n_head = 9, c->n_kv_head = 3, c->head_dim = 64,
        c->d_ff = 1536, c->tie_embeddings = 1;
    } else if (!strcmp(name, "10m")) { /* ~10.5M parameters */
        c->vocab = 8192, c->d_model = 256, c->n_layer = 8, c->n_head = 8, c->n_kv_head = 4, c->head_dim = 32,
        c->d_ff = 768, c->tie_embeddings = 0;
    } else if (!strcmp(name, "tiny")) {
        c->vocab = 512, c->d_model = 128, c->n_layer = 4, c->n_head = 4, c->n_kv_head = 2, c->head_dim = 32,
        c->d_ff = 384, c->tie_embeddings = 1;
    } else {
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *shape = "10m";
    int seqs = 4, seqlen = 512, steps = 3, threads = 0;
    const char *dtype = "fp32";
    int profile = 0, chunk_mb = 0, separate = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--shape")) shape = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--seqs")) seqs = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seqlen")) seqlen = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--dtype")) dtype = argv[++i];
        else if (!strcmp(argv[i], "--profile")) profile = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--lm-chunk-mb")) chunk_mb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--separate")) separate = 1;
        else {
            fprintf(stderr, "usage: bench_model [--shape smollm2|10m|tiny] [--seqs B] [--seqlen N] [--steps S] [--threads K] "
                            "[--dtype fp32|bf16] [--profile] [--lm-chunk-mb N] [--separate]\n");
            return 2;
        }
    }
    model_config cfg;
    if (shape_config(shape, &cfg) || seqs <= 0 || seqlen <= 0 || steps <= 0 || chunk_mb < 0 ||
        (strcmp(dtype, "fp32") && strcmp(dtype, "bf16"))) {
        fprintf(stderr, "bench_model: bad arguments\n");
        return 2;
    }
    backend *be = backend_cpu_create(threads);
    if (chunk_mb) be->lm_chunk_bytes = (size_t)chunk_mb << 20;
    if (profile && !(be = backend_profile_wrap(be))) {
        fprintf(stderr, "bench_model: out of memory\n");
        return 1;
    }
    char err[512];
    model m;
    int T = seqs * seqlen;
    if (model_create(&m, &cfg, be, T, err, sizeof err) || model_alloc_grads(&m, err, sizeof err)) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    if (model_set_mixed(&m, !strcmp(dtype, "bf16"), err, sizeof err)) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    model_init_weights(&m, 1234);
    int32_t *tok = malloc(T * sizeof *tok), *tgt = malloc(T * sizeof *tgt), *cu = malloc((seqs + 1) * sizeof *cu);
    float *logp = malloc(T * sizeof *logp), *w = malloc(T * sizeof *w);
    for (int t = 0; t < T; t++) {
        tok[t] = (int32_t)(rng_u64(7, t) % cfg.vocab);
        tgt[t] = (int32_t)(rng_u64(8, t) % cfg.vocab);
        w[t] = 1.0f / T;
    }
    for (int s = 0; s <= seqs; s++) cu[s] = s * seqlen;
    model_batch b = {.T = T, .n_seq = seqs, .tokens = tok, .targets = tgt, .cu_seqlens = cu, .pos = NULL};
    double flops = 3.0 * model_forward_flops(&cfg, &b);
    double best = 1e30, tf = 0, tb = 0, tprof = 0;
    enum { PROFILED = 2 };
    for (int s = 0; s < steps + 1 + (profile ? PROFILED : 0); s++) { /* first step warms up; profiled ones last */
        if (s == steps + 1) backend_profile_enable(be, 1);
        double t0 = now_seconds();
        model_zero_grads(&m);
        float wt = 1.0f / T;
        if (separate ? model_forward(&m, &b, logp, NULL, err, sizeof err)
                     : model_forward_backward(&m, &b, const_loss, &wt, 0, err, sizeof err)) {
            fprintf(stderr, "bench_model: %s\n", err);
            return 1;
        }
        double t1 = now_seconds();
        if (separate && model_backward(&m, &b, w, NULL, err, sizeof err)) {
            fprintf(stderr, "bench_model: %s\n", err);
            return 1;
        }
        double t2 = now_seconds();
        if (s > steps) tprof += t2 - t0;
        else if (s > 0 && t2 - t0 < best) best = t2 - t0, tf = t1 - t0, tb = t2 - t1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\": \"rft\", \"head\": \"%s\", \"dtype\": \"%s\", \"shape\": \"%s\", \"params\": %zu, "
           "\"tokens\": %d, \"threads\": %d, \"step_s\": %.4f, ",
           separate ? "separate" : "fused", dtype, shape, m.n_params, T, be->n_threads, best);
    if (separate) printf("\"fwd_s\": %.4f, \"bwd_s\": %.4f, ", tf, tb);
    printf("\"tokens_per_s\": %.1f, \"gflops\": %.1f, \"peak_rss_mb\": %.0f}\n", T / best, flops / best / 1e9,
           ru.ru_maxrss / 1024.0);
    if (profile) {
        printf("%d profiled steps (zero_grads + forward + backward): %.1f ms per step (%.1f ms unprofiled), "
               "%.1f ms of it in ops\n",
               PROFILED, tprof / PROFILED * 1e3, best * 1e3, backend_profile_get(be, NULL).sec / PROFILED * 1e3);
        backend_profile_report(be, stdout);
    }
    model_free(&m);
    be->destroy(be);
    free(tok), free(tgt), free(cu), free(logp), free(w);
    return 0;
}
