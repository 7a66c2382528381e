/* tools/bench/bench_decode.c: rollout-engine decode throughput on the CPU
 * backend for a model shape (random weights) or a real model file: B prompts
 * of P tokens, N new tokens each (greedy, no stop token, so every sequence
 * runs to N), at several batch sizes. Also measures this machine's memory
 * bandwidth with a STREAM-like copy, and for batch 1 the achieved weight
 * traffic (fp32 parameters read once per decoded token). One JSON line per
 * batch size.
 *
 *   bench_decode [--shape smollm2|10m] [--model FILE] [--batch 1,16,64]
 *                [--prompt 64] [--new 128] [--threads K] [--dtype fp32|bf16]
 *
 * --dtype bf16 runs the rollouts on bf16 copies of the weights
 * (sampling.dtype: bf16); each run then includes casting them (once per
 * rollout_generate call, as in training) and weight traffic is 2 bytes per
 * parameter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convert.h"
#include "rollout.h"
#include "util.h"

/* CPU seconds of all threads of this process (user + system): on a loaded
   machine it compares variants where wall time cannot */
static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double stream_copy_gbs(void) {
    size_t n = (size_t)64 << 20; /* 256 MB per array */
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    if (!a || !b) return 0;
    for (size_t i = 0; i < n; i++) a[i] = (float)i, b[i] = 0;
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        double t0 = now_seconds();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) b[i] = a[i];
        double dt = now_seconds() - t0;
        if (dt < best) best = dt;
    }
    volatile float sink = b[n / 2];
    (void)sink;
    free(a), free(b);
    return 2.0 * n * sizeof(float) / best / 1e9; /* read + write */
}

int main(int argc, char **argv) {
    const char *shape = "smollm2", *model_path = NULL, *batches = "1,16,64";
    int P = 64, N = 128, threads = 0, bf16 = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--shape")) shape = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--model")) model_path = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--batch")) batches = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--prompt")) P = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--new")) N = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--dtype")) bf16 = !strcmp(argv[++i], "bf16");
        else {
            fprintf(stderr, "usage: bench_decode [--shape smollm2|10m] [--model FILE] [--batch 1,16,64] [--prompt 64] [--new 128] [--threads K] [--dtype fp32|bf16]\n");
            return 2;
        }
    }
    backend *be = backend_cpu_create(threads);
    char err[1024];
    model m;
    int maxb = 1;
    for (const char *s = batches; *s;) {
        int b = atoi(s);
        if (b > maxb) maxb = b;
        s = strchr(s, ',');
        if (!s) break;
        s++;
    }
    int cap = P * maxb > 512 ? P * maxb : 512;
    if (model_path) {
        if (model_import(model_path, be, cap, &m, NULL, err, sizeof err)) {
            fprintf(stderr, "bench_decode: %s\n", err);
            return 1;
        }
    } else {
        model_config c = {.rope_theta = 10000.0f, .rms_eps = 1e-5f, .max_seq = 2048};
        if (!strcmp(shape, "smollm2"))
            c.vocab = 49152, c.d_model = 576, c.n_layer = 30, c.n_head = 9, c.n_kv_head = 3, c.head_dim = 64, c.d_ff = 1536,
            c.tie_embeddings = 1;
        else
            c.vocab = 8192, c.d_model = 256, c.n_layer = 8, c.n_head = 8, c.n_kv_head = 4, c.head_dim = 32, c.d_ff = 768;
        if (model_create(&m, &c, be, cap, err, sizeof err)) {
            fprintf(stderr, "bench_decode: %s\n", err);
            return 1;
        }
        model_init_weights(&m, 5);
    }
    double bw = stream_copy_gbs();
    /* bytes of weights read per decode step: every matrix once (embedding rows are negligible
       unless tied, where the LM head reads the whole table) */
    double wbytes = 0;
    for (int i = 0; i < m.n_tensors; i++)
        if (strcmp(m.tensors[i].name, "model.embed_tokens.weight") || m.cfg.tie_embeddings) wbytes += m.tensors[i].numel * (bf16 ? 2.0 : 4.0);
    for (const char *s = batches; *s;) {
        int B = atoi(s);
        rollout_engine r;
        if (rollout_create(&r, &m, NULL, B, P + N, err, sizeof err)) {
            fprintf(stderr, "bench_decode: %s\n", err);
            return 1;
        }
        int32_t *ids = malloc((size_t)B * P * sizeof(int32_t));
        rollout_prompt *pr = malloc(B * sizeof *pr);
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < P; t++) ids[b * P + t] = (int32_t)(rng_u64(b, t) % m.cfg.vocab);
            pr[b] = (rollout_prompt){.ids = ids + (size_t)b * P, .n = P, .id = (uint64_t)b};
        }
        completion *out = calloc(B, sizeof *out);
        rollout_config rc = {.sampler = {.temperature = 0}, .max_new_tokens = N, .seed = 1, .bf16 = bf16};
        /* prefill alone (1 new token), then the full run: decode time = difference */
        rollout_config rc1 = rc;
        rc1.max_new_tokens = 1;
        double t0 = now_seconds(), c0 = cpu_seconds();
        if (rollout_generate(&r, pr, B, 1, &rc1, out, err, sizeof err)) {
            fprintf(stderr, "bench_decode: %s\n", err);
            return 1;
        }
        double tp = now_seconds() - t0, cp = cpu_seconds() - c0;
        for (int b = 0; b < B; b++) completion_free(&out[b]);
        t0 = now_seconds(), c0 = cpu_seconds();
        if (rollout_generate(&r, pr, B, 1, &rc, out, err, sizeof err)) {
            fprintf(stderr, "bench_decode: %s\n", err);
            return 1;
        }
        double tt = now_seconds() - t0, ct = cpu_seconds() - c0;
        long toks = 0;
        for (int b = 0; b < B; b++) toks += out[b].n_tokens, completion_free(&out[b]);
        double dec = tt - tp, dec_tps = (double)(toks - B) / dec;
        double steps_per_s = (N - 1) / dec;
        printf("{\"impl\": \"rft\", \"dtype\": \"%s\", \"params\": %zu, \"batch\": %d, \"prompt\": %d, \"new\": %d, \"threads\": %d, "
               "\"total_s\": %.3f, \"prefill_s\": %.3f, \"tokens_per_s\": %.1f, \"decode_tokens_per_s\": %.1f, "
               "\"weight_gbs\": %.1f, \"copy_gbs\": %.1f, \"decode_cpu_ms_per_step\": %.2f, \"decode_cpu_ms_per_token\": %.3f}\n",
               bf16 ? "bf16" : "fp32", m.n_params, B, P, N, be->n_threads, tt, tp, toks / tt, dec_tps, wbytes * steps_per_s / 1e9, bw,
               1e3 * (ct - cp) / (N - 1), 1e3 * (ct - cp) / (double)(toks - B));
        fflush(stdout);
        free(ids), free(pr), free(out);
        rollout_free(&r);
        s = strchr(s, ',');
        if (!s) break;
        s++;
    }
    model_free(&m);
    be->destroy(be);
    return 0;
}
