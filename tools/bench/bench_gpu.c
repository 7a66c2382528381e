/* tools/bench/bench_gpu.c: GPU benchmark of the CUDA backend. Prints one JSON
 * line per measurement (tools/gpu_check.sh turns them into a table):
 *   - matmul TFLOP/s through be->matmul, TF32 and plain fp32 cuBLAS math, at
 *     4096^3 and at the SmolLM2-135M training shapes (16K tokens);
 *   - bf16 GEMM TFLOP/s through be->gemm_bf16 (operands already bf16, as in
 *     model.dtype bf16 training) at the same shapes; its 4096^3 rate is the
 *     peak the MFU is measured against;
 *   - training forward+backward tokens/s of the SmolLM2-135M shape at seqs x
 *     seqlen tokens per step (model_forward_backward, as the trainer runs it), in fp32 (TF32 matmuls) and in bf16 mixed
 *     precision (model.dtype bf16), the AdamW step, achieved TFLOP/s (3x
 *     forward FLOPs: matmuls + causal attention) and MFU against the measured
 *     4096^3 bf16 GEMM rate (and the TF32 one);
 *   - attention forward and backward, fp32 (CUDA cores) and bf16 (tensor
 *     cores) ops, at the SmolLM2-135M shape (seqs x seqlen, 9 / 3 heads,
 *     hd 64): ms and TFLOP/s counting the causal half only (forward 2
 *     products, backward 5: 4 and 10 x hd flops per query-key pair and head);
 *   - decode tokens/s of the rollout engine (rollout_generate, greedy) at
 *     several batch sizes, fp32 and bf16 weights, with the bytes of weights +
 *     cache + logits per step over the step time.
 * Timing: be->sync before and after, host monotonic clock, median of reps
 * after warm-up. Exit 77 when there is no CUDA device.
 * --profile: the training and decode runs go through kernels/profile.c
 * (profiling off while timed); after each training run's timed steps, two
 * more steps (forward, backward, AdamW) run profiled, a sync around each op,
 * and their per-op table follows that run's JSON line, below a line
 * "profile: train <dtype> ..." (tools/gpu_check.sh shows the bf16 one).
 * --attention-only: the bf16 attention pair alone (gpu_check.sh runs it
 * again with RFT_CUDA_ATTN=wmma, with and without RFT_CUDA_TC_MIN_BLOCKS=1:
 * the other kernels and their other register bound); --attention-fp32: the
 * fp32 pair alone (labelled "fp32" under RFT_CUDA_TF32=0: the CUDA-core
 * kernels, else "tf32": the tensor-core ones, as in the full run).
 *
 *   bench_gpu [--seqs 16] [--seqlen 1024] [--steps 5] [--decode 1,64,256]
 *             [--prompt 64] [--gen 32] [--skip-matmul] [--skip-train] [--profile] [--attention-only]
 *             [--attention-fp32]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "optim.h"
#include "profile.h"
#include "rollout.h"
#include "util.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static float *dev_random(backend *be, size_t n, float sd, uint64_t key) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = (float)(sd * (2.0 * rng_uniform(key, i) - 1.0));
    float *d = be->alloc(be, n * sizeof(float));
    if (d) be->copy_h2d(be, d, h, n * sizeof(float));
    free(h);
    return d;
}

/* C[M,N] = op(A) op(B) through be->matmul (fp32 / TF32), or with bf16
   through be->gemm_bf16 on operands cast to bf16 once (the products of
   model.dtype bf16 training); median TFLOP/s over reps */
static double bench_matmul(backend *be, const char *label, int tA, int tB, int M, int N, int K, int bf16) {
    float *A = dev_random(be, (size_t)M * K, 1, 1), *B = dev_random(be, (size_t)K * N, 1, 2);
    float *C = be->alloc(be, (size_t)M * N * sizeof(float));
    uint16_t *A16 = bf16 ? be->alloc(be, (size_t)M * K * sizeof(uint16_t)) : NULL;
    uint16_t *B16 = bf16 ? be->alloc(be, (size_t)N * K * sizeof(uint16_t)) : NULL;
    if (!A || !B || !C || (bf16 && (!A16 || !B16))) {
        fprintf(stderr, "bench_gpu: %s\n", be->err);
        exit(1);
    }
    if (bf16) be->cast_bf16(be, A16, A, (size_t)M * K), be->cast_bf16(be, B16, B, (size_t)N * K);
    int lda = tA ? M : K, ldb = tB ? K : N;
    enum { REPS = 9, INNER = 5 };
    double t[REPS];
    for (int r = -2; r < REPS; r++) { /* two warm-up rounds */
        be->sync(be);
        double t0 = now_seconds();
        for (int i = 0; i < INNER; i++) {
            if (bf16) be->gemm_bf16(be, tA, tB, M, N, K, A16, lda, B16, ldb, 0.0f, C, NULL, N);
            else be->matmul(be, tA, tB, M, N, K, 1.0f, A, lda, 0, B, ldb, 0, 0.0f, C, N, 0, 1);
        }
        be->sync(be);
        if (r >= 0) t[r] = (now_seconds() - t0) / INNER;
    }
    if (be->sync(be)) {
        fprintf(stderr, "bench_gpu: %s\n", be->err);
        exit(1);
    }
    double s = median(t, REPS), tf = 2.0 * M * N * K / s / 1e12;
    printf("{\"bench\": \"matmul\", \"label\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"ms\": %.4f, \"tflops\": %.2f}\n",
           label, M, N, K, s * 1e3, tf);
    fflush(stdout);
    be->free(be, A), be->free(be, B), be->free(be, C);
    if (A16) be->free(be, A16), be->free(be, B16);
    return tf;
}

/* attention_forward and attention_backward (bf16: the _bf16 ops) on seqs
   packed sequences of seqlen tokens, median ms of each and TFLOP/s */
static void bench_attention(backend *be, int bf16, int seqs, int seqlen, int Hq, int Hkv, int hd) {
    int T = seqs * seqlen;
    size_t nq = (size_t)T * Hq * hd, nk = (size_t)T * Hkv * hd;
    float *q = dev_random(be, nq, 1, 3), *k = dev_random(be, nk, 1, 4), *v = dev_random(be, nk, 1, 5);
    float *dO = dev_random(be, nq, 1, 6), *o = be->alloc(be, nq * sizeof(float));
    float *lse = be->alloc(be, (size_t)T * Hq * sizeof(float)), *dq = be->alloc(be, nq * sizeof(float));
    float *dk = be->alloc(be, nk * sizeof(float)), *dv = be->alloc(be, nk * sizeof(float));
    int32_t *cuh = malloc((seqs + 1) * sizeof(int32_t)), *cu = be->alloc(be, (seqs + 1) * sizeof(int32_t));
    if (!q || !k || !v || !dO || !o || !lse || !dq || !dk || !dv || !cuh || !cu) {
        fprintf(stderr, "bench_gpu: attention: %s\n", be->err);
        exit(1);
    }
    for (int b = 0; b <= seqs; b++) cuh[b] = b * seqlen;
    be->copy_h2d(be, cu, cuh, (seqs + 1) * sizeof(int32_t));
    float sc = 1.0f / sqrtf((float)hd);
    /* bf16: q, k, v as the stacked bf16 rows q | k | v (the random q, k, v
       widths laid out as one [T, qd + 2 kvd] tensor), O and dO bf16; the
       backward writes the stacked gradient rows through RoPE^T (positions
       0..seqlen-1 per sequence) */
    size_t nw = nq + 2 * nk;
    uint16_t *qkv16 = NULL, *o16 = NULL, *dO16 = NULL, *dqkv16 = NULL;
    int32_t *pos = NULL;
    if (bf16) {
        float *w = dev_random(be, nw, 1, 7);
        qkv16 = be->alloc(be, nw * 2), o16 = be->alloc(be, nq * 2), dO16 = be->alloc(be, nq * 2);
        dqkv16 = be->alloc(be, nw * 2), pos = be->alloc(be, (size_t)T * sizeof(int32_t));
        int32_t *ph = malloc((size_t)T * sizeof(int32_t));
        if (!w || !qkv16 || !o16 || !dO16 || !dqkv16 || !pos || !ph) {
            fprintf(stderr, "bench_gpu: attention: %s\n", be->err);
            exit(1);
        }
        for (int t = 0; t < T; t++) ph[t] = t % seqlen;
        be->copy_h2d(be, pos, ph, (size_t)T * sizeof(int32_t));
        free(ph);
        be->cast_bf16(be, qkv16, w, nw);
        be->cast_bf16(be, dO16, dO, nq);
        be->free(be, w);
    }
    enum { REPS = 7 };
    double tf[REPS], tb[REPS];
    for (int r = -2; r < REPS; r++) { /* two warm-up rounds */
        be->sync(be);
        double t0 = now_seconds();
        if (bf16) be->attention_forward_bf16(be, o16, lse, qkv16, cu, seqs, T, Hq, Hkv, hd, sc);
        else be->attention_forward(be, o, lse, q, k, v, cu, seqs, T, Hq, Hkv, hd, sc);
        be->sync(be);
        double t1 = now_seconds();
        if (bf16)
            be->attention_backward_bf16(be, dqkv16, dO16, qkv16, o16, lse, pos, 10000.0f, cu, seqs, T, Hq, Hkv, hd, sc);
        else
            be->attention_backward(be, dq, dk, dv, dO, q, k, v, o, lse, cu, seqs, T, Hq, Hkv, hd, sc);
        be->sync(be);
        if (r >= 0) tf[r] = t1 - t0, tb[r] = now_seconds() - t1;
    }
    if (be->sync(be)) {
        fprintf(stderr, "bench_gpu: attention: %s\n", be->err);
        exit(1);
    }
    double pairs = (double)seqs * seqlen * (seqlen + 1) / 2 * Hq, f = median(tf, REPS), b = median(tb, REPS);
    printf("{\"bench\": \"attention\", \"label\": \"%s %dx%d Hq%d Hkv%d hd%d\", \"fwd_ms\": %.3f, \"bwd_ms\": %.3f, "
           "\"fwd_tflops\": %.2f, \"bwd_tflops\": %.2f}\n",
           bf16 ? "bf16" : be->tf32 ? "tf32" : "fp32", seqs, seqlen, Hq, Hkv, hd, f * 1e3, b * 1e3, 4.0 * hd * pairs / f / 1e12,
           10.0 * hd * pairs / b / 1e12);
    fflush(stdout);
    be->free(be, q); be->free(be, k); be->free(be, v); be->free(be, dO); be->free(be, o); be->free(be, lse);
    be->free(be, dq); be->free(be, dk); be->free(be, dv); be->free(be, cu);
    if (bf16) be->free(be, qkv16), be->free(be, o16), be->free(be, dO16), be->free(be, dqkv16), be->free(be, pos);
    free(cuh);
}

static void smollm2(model_config *c, int max_seq) {
    memset(c, 0, sizeof *c);
    c->vocab = 49152, c->d_model = 576, c->n_layer = 30, c->n_head = 9, c->n_kv_head = 3, c->head_dim = 64;
    c->d_ff = 1536, c->tie_embeddings = 1, c->rope_theta = 100000.0f, c->rms_eps = 1e-5f, c->max_seq = max_seq;
}

/* the loss weights of the benchmark: every token 1 / T (ctx: that float) */
static int const_loss(void *ctx, int t0, int n, const float *logp, const float *ent, float *w, float *went) {
    for (int i = 0; i < n; i++) w[i] = *(const float *)ctx;
    return 0;
}

/* one training step as the trainer runs it: forward + backward in one pass
   over the LM head (model_forward_backward), AdamW; *tfb, *to: their
   seconds. separate: model_forward then model_backward (the head's logits
   computed twice), for comparison. */
static void train_step(backend *be, model *m, optim *o, const model_batch *b, float wt, int separate, const float *w,
                       double *tfb, double *to) {
    char err[512];
    be->sync(be);
    double t0 = now_seconds();
    model_zero_grads(m);
    if (separate ? model_forward(m, b, NULL, NULL, err, sizeof err) || model_backward(m, b, w, NULL, err, sizeof err)
                 : model_forward_backward(m, b, const_loss, &wt, 0, err, sizeof err)) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        exit(1);
    }
    double t2 = now_seconds();
    double norm = optim_step(o);
    be->sync(be);
    double t3 = now_seconds();
    if (!isfinite(norm)) {
        fprintf(stderr, "bench_gpu: gradient norm %g\n", norm);
        exit(1);
    }
    *tfb = t2 - t0, *to = t3 - t2;
}

/* profile: be is a kernels/profile.c wrapper; the table of two profiled
   steps follows the JSON line */
static void bench_train(backend *be, int seqs, int seqlen, int steps, int mixed, double peak_bf16, double peak_tf32,
                        int profile, int separate) {
    model_config cfg;
    smollm2(&cfg, seqlen);
    char err[512];
    model m;
    int T = seqs * seqlen;
    if (model_create(&m, &cfg, be, T, err, sizeof err) || model_alloc_grads(&m, err, sizeof err)) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        exit(1);
    }
    if (model_set_mixed(&m, mixed, err, sizeof err)) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        exit(1);
    }
    model_init_weights(&m, 1234);
    optim_config oc = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                       .grad_clip = 1.0f, .schedule = LR_CONSTANT};
    optim o;
    if (optim_create(&o, &m, &oc, err, sizeof err)) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        exit(1);
    }
    int32_t *tok = malloc(T * sizeof *tok), *tgt = malloc(T * sizeof *tgt), *cu = malloc((seqs + 1) * sizeof *cu);
    float *w = malloc(T * sizeof *w);
    for (int t = 0; t < T; t++) {
        tok[t] = (int32_t)(rng_u64(7, t) % cfg.vocab);
        tgt[t] = (int32_t)(rng_u64(8, t) % cfg.vocab);
        w[t] = 1.0f / T;
    }
    for (int s = 0; s <= seqs; s++) cu[s] = s * seqlen;
    model_batch b = {.T = T, .n_seq = seqs, .tokens = tok, .targets = tgt, .cu_seqlens = cu, .pos = NULL};
    double flops = 3.0 * model_forward_flops(&cfg, &b);
    double *tfb = malloc((steps + 1) * sizeof(double)), *to = malloc((steps + 1) * sizeof(double));
    for (int s = 0; s < steps + 1; s++) /* step 0 warms up */
        train_step(be, &m, &o, &b, 1.0f / T, separate, w, &tfb[s], &to[s]);
    double fb = median(tfb + 1, steps), op = median(to + 1, steps);
    double tfs = flops / fb / 1e12;
    /* fwd_ms: null (the forward and backward are one pass over the LM head) */
    printf("{\"bench\": \"train\", \"impl\": \"rft-cuda\", \"head\": \"%s\", \"dtype\": \"%s\", \"shape\": \"smollm2-135m\", "
           "\"params\": %zu, \"tokens\": %d, \"seqs\": %d, \"seqlen\": %d, \"fwd_ms\": null, \"fwd_bwd_ms\": %.2f, "
           "\"adamw_ms\": %.2f, \"tokens_per_s\": %.0f, \"tflops\": %.2f, \"mfu_vs_bf16_gemm\": %.3f, "
           "\"mfu_vs_tf32_gemm\": %.3f}\n",
           separate ? "separate" : "fused", mixed ? "bf16" : "fp32", m.n_params, T, seqs, seqlen, fb * 1e3, op * 1e3, T / fb, tfs,
           peak_bf16 > 0 ? tfs / peak_bf16 : 0.0, peak_tf32 > 0 ? tfs / peak_tf32 : 0.0);
    if (profile) {
        enum { PROFILED = 2 };
        double pfb, po, wall = 0;
        backend_profile_reset(be);
        backend_profile_enable(be, 1);
        for (int s = 0; s < PROFILED; s++) train_step(be, &m, &o, &b, 1.0f / T, separate, w, &pfb, &po), wall += pfb + po;
        backend_profile_enable(be, 0);
        printf("profile: train %s smollm2-135m %d tok/step, %d profiled steps: %.1f ms per step (%.1f ms "
               "unprofiled), %.1f ms of it in ops\n",
               mixed ? "bf16" : "fp32", T, PROFILED, wall / PROFILED * 1e3, (fb + op) * 1e3,
               backend_profile_get(be, NULL).sec / PROFILED * 1e3);
        backend_profile_report(be, stdout);
    }
    fflush(stdout);
    optim_free(&o);
    model_free(&m);
    free(tok), free(tgt), free(cu), free(w), free(tfb), free(to);
}

/* Rollout engine (rollout_generate, greedy, no stop) on the SmolLM2 shape:
   batch prompts of `prompt` random tokens, gen new tokens each, fp32 or bf16
   weights (sampling.dtype). A prefill-only run (1 new token) and the full run:
   decode step = (full - prefill) / (gen - 1). Bytes per step: weights + the
   cache read at the mean context + the logits. */
static void bench_decode(backend *be, int batch, int prompt, int gen, int bf16) {
    model_config cfg;
    int max_seq = prompt + gen;
    smollm2(&cfg, max_seq);
    char err[512];
    model m;
    int cap = batch * prompt > batch ? batch * prompt : batch;
    if (model_create(&m, &cfg, be, cap, err, sizeof err)) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        exit(1);
    }
    model_init_weights(&m, 99);
    rollout_engine r;
    if (rollout_create(&r, &m, NULL, batch, max_seq, err, sizeof err)) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        exit(1);
    }
    int V = cfg.vocab;
    int32_t *ids = malloc((size_t)batch * prompt * sizeof(int32_t));
    rollout_prompt *pr = malloc((size_t)batch * sizeof *pr);
    completion *out = calloc((size_t)batch, sizeof *out);
    for (int b = 0; b < batch; b++) {
        for (int t = 0; t < prompt; t++) ids[(size_t)b * prompt + t] = (int32_t)(rng_u64(5 + b, t) % V);
        pr[b] = (rollout_prompt){.ids = ids + (size_t)b * prompt, .n = prompt, .id = (uint64_t)b};
    }
    rollout_config rc = {.sampler = {.temperature = 0}, .max_new_tokens = gen, .seed = 1, .bf16 = bf16};
    rollout_config rc1 = rc;
    rc1.max_new_tokens = 1;
    double tp = 1e30, tt = 1e30;
    for (int rep = 0; rep < 3; rep++) { /* the first run warms up (allocations, cuBLAS heuristics) */
        for (int pass = 0; pass < 2; pass++) {
            be->sync(be);
            double t0 = now_seconds();
            if (rollout_generate(&r, pr, batch, 1, pass ? &rc : &rc1, out, err, sizeof err)) {
                fprintf(stderr, "bench_gpu: decode: %s\n", err);
                exit(1);
            }
            double dt = now_seconds() - t0;
            for (int b = 0; b < batch; b++) completion_free(&out[b]);
            if (rep == 0) continue;
            if (pass) tt = dt < tt ? dt : tt;
            else tp = dt < tp ? dt : tp;
        }
    }
    double step = (tt - tp) / (gen - 1);
    double ctx = prompt + gen / 2.0;
    double bytes = (double)m.n_params * (bf16 ? 2 : 4) +
                   2.0 * cfg.n_layer * batch * ctx * cfg.n_kv_head * cfg.head_dim * 4 + (double)batch * V * 4;
    printf("{\"bench\": \"decode\", \"impl\": \"rft-cuda\", \"dtype\": \"%s\", \"batch\": %d, \"prompt\": %d, "
           "\"gen\": %d, \"prefill_s\": %.4f, \"total_s\": %.4f, \"step_ms\": %.3f, \"tokens_per_s\": %.0f, "
           "\"total_tokens_per_s\": %.0f, \"gb_per_s\": %.1f}\n",
           bf16 ? "bf16" : "fp32", batch, prompt, gen, tp, tt, step * 1e3, batch / step, batch * gen / tt,
           bytes / step / 1e9);
    fflush(stdout);
    rollout_free(&r);
    model_free(&m);
    free(ids), free(pr), free(out);
}

int main(int argc, char **argv) {
    int seqs = 16, seqlen = 1024, steps = 5, prompt = 64, gen = 32, skip_mm = 0, skip_train = 0, profile = 0;
    int attn_only = 0;
    const char *decode = "1,64,256";
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--seqs")) seqs = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seqlen")) seqlen = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--decode")) decode = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--prompt")) prompt = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--gen")) gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--skip-matmul")) skip_mm = 1;
        else if (!strcmp(argv[i], "--skip-train")) skip_train = 1;
        else if (!strcmp(argv[i], "--profile")) profile = 1;
        else if (!strcmp(argv[i], "--attention-only")) attn_only = 1;
        else if (!strcmp(argv[i], "--attention-fp32")) attn_only = 2;
        else {
            fprintf(stderr, "usage: bench_gpu [--seqs B] [--seqlen N] [--steps S] [--decode 1,64,256] [--prompt P] "
                            "[--gen G] [--skip-matmul] [--skip-train] [--profile] [--attention-only] [--attention-fp32]\n");
            return 2;
        }
    }
    if (seqs <= 0 || seqlen <= 0 || steps <= 0 || prompt <= 0 || gen <= 0) {
        fprintf(stderr, "bench_gpu: bad arguments\n");
        return 2;
    }
    char err[512];
    double peak = 0, peak16 = 0;
    if (attn_only) { /* one attention pair alone (tools/gpu_check.sh times the kernel variants with it) */
        backend *be = backend_cuda_create(0, err, sizeof err);
        if (!be) {
            printf("SKIPPED: %s\n", err);
            return 77;
        }
        bench_attention(be, attn_only == 1, seqs, seqlen, 9, 3, 64);
        int rc = be->sync(be);
        be->destroy(be);
        return rc ? 1 : 0;
    }
    if (!skip_mm) {
        setenv("RFT_CUDA_TF32", "0", 1);
        backend *be32 = backend_cuda_create(0, err, sizeof err);
        if (!be32) {
            printf("SKIPPED: %s\n", err);
            return 77;
        }
        bench_matmul(be32, "fp32 4096^3", 0, 0, 4096, 4096, 4096, 0);
        be32->destroy(be32);
    }
    setenv("RFT_CUDA_TF32", "1", 1);
    backend *be = backend_cuda_create(0, err, sizeof err);
    if (!be) {
        printf("SKIPPED: %s\n", err);
        return 77;
    }
    if (!skip_mm) {
        peak = bench_matmul(be, "tf32 4096^3", 0, 0, 4096, 4096, 4096, 0);
        int T = seqs * seqlen;
        bench_matmul(be, "tf32 x@W^T [T,576]x[1536,576]", 0, 1, T, 1536, 576, 0);
        bench_matmul(be, "tf32 dW=dy^T@x [1536,T]x[T,576]", 1, 0, 1536, 576, T, 0);
        bench_matmul(be, "tf32 dx=dy@W [T,1536]x[1536,576]", 0, 0, T, 576, 1536, 0);
        bench_matmul(be, "tf32 lm_head [4096,576]x[49152,576]", 0, 1, 4096, 49152, 576, 0);
        peak16 = bench_matmul(be, "bf16 4096^3", 0, 0, 4096, 4096, 4096, 1);
        bench_matmul(be, "bf16 x@W^T [T,576]x[1536,576]", 0, 1, T, 1536, 576, 1);
        bench_matmul(be, "bf16 dW=dy^T@x [1536,T]x[T,576]", 1, 0, 1536, 576, T, 1);
        bench_matmul(be, "bf16 dx=dy@W [T,1536]x[1536,576]", 0, 0, T, 576, 1536, 1);
        bench_matmul(be, "bf16 lm_head [4096,576]x[49152,576]", 0, 1, 4096, 49152, 576, 1);
        bench_attention(be, 0, seqs, seqlen, 9, 3, 64);
        bench_attention(be, 1, seqs, seqlen, 9, 3, 64);
    }
    if (profile && !(be = backend_profile_wrap(be))) { /* after the op benchmarks: those run unwrapped */
        fprintf(stderr, "bench_gpu: out of memory\n");
        return 1;
    }
    if (!skip_train) {
        bench_train(be, seqs, seqlen, steps, 0, peak16, peak, profile, 0);
        bench_train(be, seqs, seqlen, steps, 1, peak16, peak, profile, 0);
        bench_train(be, seqs, seqlen, steps, 1, peak16, peak, 0, 1); /* the head's logits twice: what one pass saves */
    }
    for (const char *p = decode; p && *p;) {
        int bsz = atoi(p);
        if (bsz > 0) bench_decode(be, bsz, prompt, gen, 0), bench_decode(be, bsz, prompt, gen, 1);
        p = strchr(p, ',');
        if (p) p++;
    }
    int rc = be->sync(be);
    if (rc) fprintf(stderr, "bench_gpu: %s\n", be->err);
    be->destroy(be);
    return rc ? 1 : 0;
}
