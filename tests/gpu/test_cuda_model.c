/* tests/gpu/test_cuda_model.c: the whole model on the CUDA backend against
 * the CPU backend, for two small configs (GQA + q/k/v bias + tied
 * embeddings; plain MHA, untied): log-probs and entropies of a forward over
 * a packed batch of sequences of different lengths, every parameter
 * gradient of a backward with per-token and entropy weights, then ten AdamW
 * steps (warm-up, clipping, weight decay; the GPU through model_forward_backward,
 * the CPU through model_forward + model_backward) from identical weights: gradient
 * norms per step and the final parameters; greedy rollouts through the KV
 * cache (3 prompts, 32 tokens each) must pick identical tokens; rollouts
 * (greedy, temperature 1 and 0.7) with on-device sampling equal those of the
 * host sampler and of the CPU backend. TF32 is
 * turned off (RFT_CUDA_TF32=0) so both sides compute in fp32; tolerance 1e-4
 * relative. The forward, backward and AdamW checks run again in bf16 mixed
 * precision (model.dtype bf16) on both sides, within 1e-2 (parameter change
 * and the gradient norm per optimizer step 5e-2; see run_config). RFT_TEST_QUICK=1 (the CPU emulation) runs 3 optimizer steps.
 * Exit 77 (SKIPPED) when there is no CUDA device or CUDA is not built. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../trainer/model.h"
#include "../../trainer/optim.h"
#include "../../trainer/rollout.h"

static int n_fail, n_check;

static double rel_err(const float *got, const float *ref, size_t n, size_t *nonfinite) {
    double num = 0, den = 0;
    *nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(ref[i])) (*nonfinite)++;
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void report(const char *what, double rel, size_t nonfinite, double tol) {
    int ok = nonfinite == 0 && rel <= tol;
    n_check++;
    if (!ok) n_fail++;
    printf("%-4s %-52s rel %.3e (tol %.0e)", ok ? "ok" : "FAIL", what, rel, tol);
    if (nonfinite) printf("  non-finite: %zu", nonfinite);
    printf("\n");
}

static void compare(const char *what, const float *got, const float *ref, size_t n, double tol) {
    size_t nf;
    double r = rel_err(got, ref, n, &nf);
    report(what, r, nf, tol);
}

/* device buffer -> new host array */
static float *fetch(backend *be, const float *p, size_t n) {
    float *h = malloc(n * sizeof(float));
    be->copy_d2h(be, h, p, n * sizeof(float));
    return h;
}

/* mixed: model.dtype bf16 on both backends (gemm_bf16 products). The fp32
   differences of the two (~3e-8 relative here) now and then put an
   activation or gradient on the other side of a bf16 rounding boundary (a
   2^-8 step), and each such flip perturbs everything downstream: the CPU
   emulation measures 4e-5 on log-probs and 1.3e-3 on gradients (vs 3e-8 and
   3e-7 in fp32), hence the bf16 tolerance of 1e-2 (5e-2 for the
   parameter change, where Adam turns tiny noisy gradients into steps of
   ~lr). Over ten steps the two trajectories drift apart as the flips
   compound (q/k/v, the attention output and several input gradients are
   stored in bf16: many rounding points): the gradient norm per step, 7e-6
   apart at step 1 in the emulation, is 2.1e-2 apart by step 7 (the norm
   peaks at ~4 there and is clipped to 0.5), so that check gets tol_change
   too; the final parameters stay within 1.5e-3. */
/* model_forward_backward's loss with fixed weights (ctx: fixed_w) */
typedef struct fixed_w {
    const float *w, *went;
} fixed_w;
static int fixed_loss(void *ctx, int t0, int n, const float *logp, const float *ent, float *w, float *went) {
    const fixed_w *f = ctx;
    memcpy(w, f->w + t0, (size_t)n * sizeof(float));
    memcpy(went, f->went + t0, (size_t)n * sizeof(float));
    return 0;
}

static int run_config(const char *label, const model_config *cfg, int mixed, backend *cpu, backend *gpu) {
    char err[512];
    const double tol = mixed ? 1e-2 : 1e-4, tol_change = mixed ? 5e-2 : 1e-3;
    enum { B = 4 };
    const int lens[B] = {40, 1, 70, 9};
    int32_t cu[B + 1] = {0};
    for (int b = 0; b < B; b++) cu[b + 1] = cu[b] + lens[b];
    const int T = cu[B];
    int32_t *tok = malloc(T * sizeof(int32_t)), *tgt = malloc(T * sizeof(int32_t));
    float *w = malloc(T * sizeof(float)), *went = malloc(T * sizeof(float));
    uint64_t s = 12345;
    for (int t = 0; t < T; t++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[t] = (int32_t)((s >> 33) % (uint64_t)cfg->vocab);
    }
    for (int b = 0; b < B; b++)
        for (int t = cu[b]; t < cu[b + 1]; t++) tgt[t] = t + 1 < cu[b + 1] ? tok[t + 1] : -1;
    for (int t = 0; t < T; t++) {
        w[t] = tgt[t] < 0 ? 0.0f : (t % 3 ? 1.0f : -0.5f) / T;
        went[t] = tgt[t] < 0 ? 0.0f : 0.01f / T;
    }
    model_batch batch = {T, B, tok, tgt, cu, NULL};

    model mc, mg;
    if (model_create(&mc, cfg, cpu, T, err, sizeof err) || model_alloc_grads(&mc, err, sizeof err)) {
        fprintf(stderr, "FATAL: cpu model: %s\n", err);
        return -1;
    }
    if (model_create(&mg, cfg, gpu, T, err, sizeof err) || model_alloc_grads(&mg, err, sizeof err)) {
        fprintf(stderr, "FATAL: cuda model: %s\n", err);
        return -1;
    }
    if (model_set_mixed(&mc, mixed, err, sizeof err) || model_set_mixed(&mg, mixed, err, sizeof err)) {
        fprintf(stderr, "FATAL: model_set_mixed: %s\n", err);
        return -1;
    }
    model_init_weights(&mc, 7);
    model_init_weights(&mg, 7);
    size_t P = mc.n_params;

    char what[128];
    float *lpc = malloc(T * sizeof(float)), *lpg = malloc(T * sizeof(float));
    float *enc = malloc(T * sizeof(float)), *eng = malloc(T * sizeof(float));
    if (model_forward(&mc, &batch, lpc, enc, err, sizeof err)) { fprintf(stderr, "FATAL: cpu forward: %s\n", err); return -1; }
    if (model_forward(&mg, &batch, lpg, eng, err, sizeof err)) { fprintf(stderr, "FATAL: cuda forward: %s\n", err); return -1; }
    snprintf(what, sizeof what, "%s forward logp T%d", label, T);
    compare(what, lpg, lpc, T, tol);
    snprintf(what, sizeof what, "%s forward entropy", label);
    compare(what, eng, enc, T, tol);

    model_zero_grads(&mc);
    model_zero_grads(&mg);
    if (model_backward(&mc, &batch, w, went, err, sizeof err)) { fprintf(stderr, "FATAL: cpu backward: %s\n", err); return -1; }
    if (model_backward(&mg, &batch, w, went, err, sizeof err)) { fprintf(stderr, "FATAL: cuda backward: %s\n", err); return -1; }
    float *gc = fetch(cpu, mc.grads, P), *gg = fetch(gpu, mg.grads, P);
    snprintf(what, sizeof what, "%s backward, all %zu gradients", label, P);
    compare(what, gg, gc, P, tol);
    for (int i = 0; i < mc.n_tensors; i++) { /* per tensor, so a wrong one is named */
        const model_tensor *e = &mc.tensors[i];
        size_t nf;
        double r = rel_err(gg + e->offset, gc + e->offset, e->numel, &nf);
        if (r > tol || nf) {
            snprintf(what, sizeof what, "%s   grad %s", label, e->name);
            report(what, r, nf, tol);
        }
    }
    free(gc);
    free(gg);

    optim_config oc = {.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                       .grad_clip = 0.5f, .schedule = LR_COSINE, .warmup_steps = 3, .total_steps = 10,
                       .min_lr_ratio = 0.1f};
    optim oc_c, oc_g;
    if (optim_create(&oc_c, &mc, &oc, err, sizeof err) || optim_create(&oc_g, &mg, &oc, err, sizeof err)) {
        fprintf(stderr, "FATAL: optim: %s\n", err);
        return -1;
    }
    double max_norm_rel = 0;
    const int n_steps = getenv("RFT_TEST_QUICK") ? 3 : 10; /* the CPU emulation runs 3 */
    for (int step = 1; step <= n_steps; step++) {
        model_zero_grads(&mc);
        model_zero_grads(&mg);
        if (model_forward(&mc, &batch, NULL, NULL, err, sizeof err) ||
            model_backward(&mc, &batch, w, went, err, sizeof err)) {
            fprintf(stderr, "FATAL: cpu step %d: %s\n", step, err);
            return -1;
        }
        /* the GPU as the trainer runs it: the LM head's forward and backward in one pass */
        fixed_w fw = {w, went};
        if (model_forward_backward(&mg, &batch, fixed_loss, &fw, 1, err, sizeof err)) {
            fprintf(stderr, "FATAL: cuda step %d: %s\n", step, err);
            return -1;
        }
        double nc = optim_step(&oc_c), ng = optim_step(&oc_g);
        double r = fabs(ng - nc) / nc;
        if (!isfinite(ng) || !isfinite(r)) r = INFINITY;
        if (r > max_norm_rel) max_norm_rel = r;
    }
    snprintf(what, sizeof what, "%s %d AdamW steps: grad norm per step", label, n_steps);
    report(what, max_norm_rel, 0, mixed ? tol_change : tol);
    float *pc = fetch(cpu, mc.params, P), *pg = fetch(gpu, mg.params, P);
    snprintf(what, sizeof what, "%s %d AdamW steps: parameters", label, n_steps);
    compare(what, pg, pc, P, tol);
    /* the update itself (params moved by ~lr): compare what changed, not just the sum */
    model mi;
    if (model_create(&mi, cfg, cpu, 1, err, sizeof err)) { fprintf(stderr, "FATAL: %s\n", err); return -1; }
    model_init_weights(&mi, 7);
    float *p0 = fetch(cpu, mi.params, P);
    for (size_t i = 0; i < P; i++) {
        pc[i] -= p0[i];
        pg[i] -= p0[i];
    }
    snprintf(what, sizeof what, "%s %d AdamW steps: parameter change", label, n_steps);
    compare(what, pg, pc, P, tol_change);
    if (cpu->sync(cpu) || gpu->sync(gpu)) {
        fprintf(stderr, "FATAL: backend error: cpu \"%s\" cuda \"%s\"\n", cpu->err, gpu->err);
        return -1;
    }
    free(p0); free(pc); free(pg);
    model_free(&mi);
    optim_free(&oc_c);
    optim_free(&oc_g);
    model_free(&mc);
    model_free(&mg);
    free(lpc); free(lpg); free(enc); free(eng); free(tok); free(tgt); free(w); free(went);
    return 0;
}

/* greedy rollouts through the KV cache: three prompts prefilled in one call,
   then 32 decode steps; token streams must be identical on both backends */
static int run_greedy(const char *label, const model_config *cfg, backend *cpu, backend *gpu) {
    enum { S = 3, GEN = 32 };
    const int plen[S] = {5, 12, 1};
    char err[512], what[128];
    model mc, mg;
    int cap = 32;
    if (model_create(&mc, cfg, cpu, cap, err, sizeof err) || model_create(&mg, cfg, gpu, cap, err, sizeof err)) {
        fprintf(stderr, "FATAL: %s\n", err);
        return -1;
    }
    model_init_weights(&mc, 11);
    model_init_weights(&mg, 11);
    /* sharper logits than the N(0, 0.02) init gives, so near-ties are rare */
    cpu->scale(cpu, mc.params, 4.0f, mc.n_params);
    gpu->scale(gpu, mg.params, 4.0f, mg.n_params);
    kv_cache kc, kg;
    int max_seq = 12 + GEN + 1;
    if (kv_cache_create(&kc, &mc, S, max_seq, err, sizeof err) || kv_cache_create(&kg, &mg, S, max_seq, err, sizeof err)) {
        fprintf(stderr, "FATAL: %s\n", err);
        return -1;
    }
    int V = cfg->vocab;
    int32_t tok[32], slot[32], pos[32], rows[S], outc[S][GEN];
    float *lc = malloc((size_t)S * V * sizeof(float)), *lg = malloc((size_t)S * V * sizeof(float));
    int T = 0;
    for (int s = 0; s < S; s++) {
        for (int p = 0; p < plen[s]; p++, T++) {
            tok[T] = (int32_t)((7 + 31 * s + 17 * p) % V);
            slot[T] = s;
            pos[T] = p;
        }
        rows[s] = T - 1;
    }
    int diff = 0, first = -1;
    for (int g = 0; g <= GEN; g++) {
        if (model_step_cached(&mc, &kc, T, tok, slot, pos, S, rows, lc, err, sizeof err) ||
            model_step_cached(&mg, &kg, T, tok, slot, pos, S, rows, lg, err, sizeof err)) {
            fprintf(stderr, "FATAL: step %d: %s\n", g, err);
            return -1;
        }
        if (g == 0) {
            size_t nf;
            double r = rel_err(lg, lc, (size_t)S * V, &nf);
            snprintf(what, sizeof what, "%s: prefill logits", label);
            report(what, r, nf, 1e-4);
        }
        if (g == GEN) break;
        for (int s = 0; s < S; s++) { /* each backend follows its own argmax */
            int bc = 0, bg = 0;
            for (int j = 1; j < V; j++) {
                if (lc[(size_t)s * V + j] > lc[(size_t)s * V + bc]) bc = j;
                if (lg[(size_t)s * V + j] > lg[(size_t)s * V + bg]) bg = j;
            }
            outc[s][g] = bc;
            if (bc != bg) {
                diff++;
                if (first < 0) first = g;
            }
        }
        /* continue from the CPU's tokens so one divergence does not cascade */
        for (int s = 0; s < S; s++) {
            tok[s] = outc[s][g];
            slot[s] = s;
            pos[s] = plen[s] + g;
            rows[s] = s;
        }
        T = S;
    }
    int distinct = 0; /* a stream of one repeated token would prove little */
    for (int i = 0; i < S * GEN; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= outc[j / GEN][j % GEN] == outc[i / GEN][i % GEN];
        distinct += !seen;
    }
    n_check++;
    if (diff || distinct < 4) n_fail++;
    printf("%-4s %-52s %d of %d tokens differ, %d distinct", diff || distinct < 4 ? "FAIL" : "ok", label, diff,
           S * GEN, distinct);
    if (diff) printf(" (first at step %d)", first);
    printf("\n");
    free(lc);
    free(lg);
    kv_cache_free(&kc, cpu);
    kv_cache_free(&kg, gpu);
    model_free(&mc);
    model_free(&mg);
    return 0;
}

/* rollout_generate on three engines: the CPU backend, the CUDA backend with
   on-device sampling (be->sample), and the CUDA backend with be->sample
   hidden (the host sampler on the same device logits). 3 prompts x group G,
   32 new tokens each, plain sampling and with top-k / top-p / min-p filters
   (on the device too). Device vs host sampling on one backend: identical
   tokens, log-probs within 1e-5 relative. CUDA vs CPU: identical tokens
   (greedy must; sampled ones may differ only where a u falls within the
   ~1e-6 logit difference of a CDF step, not expected here), log-probs within
   5e-4 relative to max(|logp|, 1). */
/* be->sample, counting the rows it samples (the rollout must use it) */
static void (*real_sample)(backend *, int32_t *, float *, const float *, int, int, float, int, float, float,
                           const double *);
static long n_sampled_rows;
static void counting_sample(backend *be, int32_t *ids, float *logp, const float *logits, int n, int V, float temp,
                            int top_k, float top_p, float min_p, const double *u) {
    n_sampled_rows += n;
    real_sample(be, ids, logp, logits, n, V, temp, top_k, top_p, min_p, u);
}

static int run_rollout(const char *label, const model_config *cfg, sampler_config sc, int G, backend *cpu,
                       backend *gpu) {
    enum { P = 3, GEN = 32 };
    const int plen[P] = {5, 12, 1};
    char err[512], what[128];
    int32_t ids[P][12];
    rollout_prompt pr[P];
    for (int s = 0; s < P; s++) {
        for (int p = 0; p < plen[s]; p++) ids[s][p] = (int32_t)((7 + 31 * s + 17 * p) % cfg->vocab);
        pr[s] = (rollout_prompt){ids[s], plen[s], (uint64_t)(100 + s)};
    }
    rollout_config rc = {.sampler = sc,
                         .max_new_tokens = GEN, .seed = 5};
    model mc, mg;
    rollout_engine ec, eg;
    int S = P * G, max_seq = 12 + GEN + 1;
    if (model_create(&mc, cfg, cpu, 32, err, sizeof err) || model_create(&mg, cfg, gpu, 32, err, sizeof err)) {
        fprintf(stderr, "FATAL: %s\n", err);
        return -1;
    }
    model_init_weights(&mc, 11);
    model_init_weights(&mg, 11);
    cpu->scale(cpu, mc.params, 4.0f, mc.n_params); /* sharp logits, as run_greedy */
    gpu->scale(gpu, mg.params, 4.0f, mg.n_params);
    if (rollout_create(&ec, &mc, NULL, S, max_seq, err, sizeof err) ||
        rollout_create(&eg, &mg, NULL, S, max_seq, err, sizeof err)) {
        fprintf(stderr, "FATAL: %s\n", err);
        return -1;
    }
    completion oc[P * 4], od[P * 4], oh[P * 4];
    real_sample = gpu->sample;
    gpu->sample = counting_sample;
    n_sampled_rows = 0;
    int fail = rollout_generate(&ec, pr, P, G, &rc, oc, err, sizeof err) ||
               rollout_generate(&eg, pr, P, G, &rc, od, err, sizeof err);
    long dev_rows = n_sampled_rows;
    gpu->sample = NULL; /* the same engine, sampling on the host */
    fail = fail || rollout_generate(&eg, pr, P, G, &rc, oh, err, sizeof err);
    gpu->sample = real_sample;
    if (fail) {
        fprintf(stderr, "FATAL: rollout: %s\n", err);
        return -1;
    }
    for (int k = 0; k < 2; k++) {
        const completion *ref = k == 0 ? oh : oc;
        /* vs cpu: the logits differ by fp32 summation order, ~1e-6 of their
           size (tens, with the sharpened weights), so logp by ~1e-4 */
        double tol = k == 0 ? 1e-5 : 5e-4, floor = k == 0 ? 1e-6 : 1.0;
        int diff = 0, n_tok = 0, distinct = 0;
        double max_rel = 0;
        for (int i = 0; i < P * G; i++) {
            const completion *a = &od[i], *b = &ref[i];
            if (a->n_tokens != b->n_tokens) diff++;
            for (int t = 0; t < a->n_tokens && t < b->n_tokens; t++) {
                n_tok++;
                if (a->tokens[t] != b->tokens[t]) {
                    diff++;
                    break; /* the rest follows another path */
                }
                double r = fabs((double)a->logprobs[t] - b->logprobs[t]) / fmax(fabs((double)b->logprobs[t]), floor);
                if (!(r <= max_rel)) max_rel = isfinite(r) ? r : INFINITY;
                int seen = 0;
                for (int j = 0; j < t; j++) seen |= a->tokens[j] == a->tokens[t];
                distinct += !seen;
            }
        }
        /* every token but each completion's first (drawn from the prefill row on the host) */
        int ok = diff == 0 && max_rel <= tol && n_tok == P * G * GEN && distinct >= 4 &&
                 dev_rows == (long)P * G * (GEN - 1);
        n_check++;
        if (!ok) n_fail++;
        snprintf(what, sizeof what, "%s: device sampling vs %s", label, k == 0 ? "host (cuda logits)" : "cpu backend");
        printf("%-4s %-52s %d of %d completions differ, logp rel %.3e (tol %.0e), %d tokens, %ld on the device\n",
               ok ? "ok" : "FAIL", what, diff, P * G, max_rel, tol, n_tok, dev_rows);
    }
    for (int i = 0; i < P * G; i++) completion_free(&oc[i]), completion_free(&od[i]), completion_free(&oh[i]);
    rollout_free(&ec);
    rollout_free(&eg);
    model_free(&mc);
    model_free(&mg);
    return 0;
}

int main(void) {
    char err[512];
    setenv("RFT_CUDA_TF32", "0", 1);
    backend *gpu = backend_cuda_create(0, err, sizeof err);
    if (!gpu) {
        if (strncmp(err, "no CUDA device", 14) == 0) printf("SKIPPED: %s\n", err);
        else printf("SKIPPED: no CUDA device (%s)\n", err);
        return 77;
    }
    backend *cpu = backend_cpu_create(0);
    model_config a = {.vocab = 301, .d_model = 96, .n_layer = 2, .n_head = 6, .n_kv_head = 2, .head_dim = 16,
                      .d_ff = 160, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = 1, .qkv_bias = 1,
                      .max_seq = 256};
    model_config b = {.vocab = 256, .d_model = 128, .n_layer = 2, .n_head = 2, .n_kv_head = 2, .head_dim = 64,
                      .d_ff = 200, .rope_theta = 100000.0f, .rms_eps = 1e-6f, .tie_embeddings = 0, .qkv_bias = 0,
                      .max_seq = 256};
    if (run_config("gqa+bias+tied", &a, 0, cpu, gpu) || run_config("mha untied", &b, 0, cpu, gpu)) n_fail++;
    if (run_config("bf16 gqa+bias+tied", &a, 1, cpu, gpu) || run_config("bf16 mha untied", &b, 1, cpu, gpu)) n_fail++;
    if (run_greedy("greedy 3x32 tokens gqa+bias+tied", &a, cpu, gpu)) n_fail++;
    const sampler_config greedy = {0.0f, 0, 1.0f, 0.0f}, t1 = {1.0f, 0, 1.0f, 0.0f}, t07 = {0.7f, 0, 1.0f, 0.0f};
    const sampler_config filt = {1.0f, 40, 0.9f, 0.02f}, topk = {0.7f, 8, 1.0f, 0.0f};
    if (run_rollout("rollout greedy 3x32", &a, greedy, 1, cpu, gpu)) n_fail++;
    if (run_rollout("rollout T1 3x2x32", &a, t1, 2, cpu, gpu)) n_fail++;
    if (run_rollout("rollout T0.7 3x2x32 mha", &b, t07, 2, cpu, gpu)) n_fail++;
    if (run_rollout("rollout T1 k40 p0.9 minp0.02 3x2x32", &a, filt, 2, cpu, gpu)) n_fail++;
    if (run_rollout("rollout T0.7 k8 3x2x32 mha", &b, topk, 2, cpu, gpu)) n_fail++;
    printf("%d of %d checks failed\n", n_fail, n_check);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return n_fail ? 1 : 0;
}
