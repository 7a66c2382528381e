/* tests/test_train_emu.c: `rft train` with `device: cuda` end to end, on the
 * emulated GPU (emu_rft: rft linked against kernels/cuda compiled with
 * cuda_emu.h; tests/cuda_emu.cmake), against the same run on the CPU: the
 * trainer's device paths (uploads, the LM-head chunks' host round trips,
 * on-device sampling in the rollouts, the optimizer on the device,
 * checkpoints written from device memory) on every CI run, where the op
 * tests check the kernels one by one. GRPO with a KL term and two PPO
 * epochs on the bundled quickstart policy and task, 4 prompts x 4 samples,
 * 2 steps, RFT_CUDA_TF32=0 (plain fp32 on the device):
 *   1. cuda vs cpu: the same completions (samples.jsonl byte for byte: the
 *      sampler draws the same tokens from logits that differ by float
 *      rounding), every metric within 1e-3 relative;
 *   2. checkpoints are device-independent: a cpu run's step-1 checkpoint
 *      resumed on cuda gives the cuda run's metrics, and a cuda run's
 *      resumed on cpu the cpu run's (1e-3);
 *   3. model.dtype bf16 with sampling.dtype bf16 (the rollouts' bf16 weights
 *      refreshed after each update, the mixed-precision step, the tensor-core
 *      attention): cuda vs cpu, the same completions in both steps, metrics
 *      within 5e-2 relative + 1e-3 (a bf16 rounding that falls the other
 *      way on one backend moves everything downstream; seen: 1.8e-2 on the
 *      gradient norm, 2.7e-2 on the KL);
 *   4. fp32 as a user gets it on a device (TF32 on, the default: the
 *      matmuls and the attention on TF32 tensor cores): the same completions,
 *      metrics within 2e-2 relative + 2e-4;
 *   5. rft eval --json on the validation rows: the cuda run's report equals
 *      the cpu run's (the time taken aside).
 * Skipped (77) when RFT_EMU_BIN (set by cuda_emu.cmake) is absent. */
#define _GNU_SOURCE
#include "train_cli_common.h"

#define TOL 1e-3
/* TF32 rounds the products' inputs to 10 mantissa bits (the emulation does
   so in cuBLAS's TF32 mode too): the KL and gradient norm move by ~5e-3
   relative, the GRPO loss at step 2 (a near-cancelling sum, ~2e-4) by ~1e-4 */
#define TF32_TOL 2e-2
#define TF32_ATOL 2e-4

static const char *CFG_TEXT =
    "threads: 1\n"
    "model: {path: data/quickstart/policy.h5}\n"
    "data: {train: data/quickstart/train.jsonl, max_prompt_tokens: 64}\n"
    "sampling: {group_size: 4, max_new_tokens: 16, temperature: 1.0}\n"
    "algorithm: {name: grpo, kl_beta: 0.05, ppo_epochs: 2}\n"
    "train: {batch_size: 4, max_steps: 2, learning_rate: 1e-3, lr_schedule: constant,\n"
    "        warmup_steps: 0, checkpoint_interval: 1}\n"
    "graders:\n"
    "  correct: {type: numeric, input: \"{{sample.output_text}}\", reference: \"{{item.answer}}\",\n"
    "            extract: \"tag:answer\"}\n"
    "  format: {type: regex, input: \"{{sample.output_text}}\",\n"
    "           pattern: \"^([-+=,0-9]+ )?<answer>-?[0-9]+</answer>$\"}\n"
    "reward: {weights: {correct: 1.0, format: 0.1}}\n";

/* every record of a and b: the same keys (timing aside), numbers within tol
   relative (+ atol), everything else equal; *worst the largest
   relative difference seen */
static int close_metrics(const char *pa, const char *pb, double tol, double atol, int *nrec, double *worst) {
    char *ta = slurp(pa), *tb = slurp(pb);
    char *sa = NULL, *sb = NULL;
    int ok = 1, n = 0;
    *worst = 0;
    for (char *la = strtok_r(ta, "\n", &sa), *lb = strtok_r(tb, "\n", &sb); ok && (la || lb);
         la = strtok_r(NULL, "\n", &sa), lb = strtok_r(NULL, "\n", &sb), n++) {
        json_t *a = la ? json_loads(la, 0, NULL) : NULL, *b = lb ? json_loads(lb, 0, NULL) : NULL;
        if (!a || !b) {
            printf("     record %d: missing or not JSON in one file\n", n);
            ok = 0;
        }
        const char *k;
        json_t *va;
        json_object_foreach(a, k, va) {
            if (!ok || !strncmp(k, "timing/", 7) || !strcmp(k, "tokens_per_s")) continue;
            json_t *vb = json_object_get(b, k);
            if (json_is_number(va) && json_is_number(vb)) {
                double x = json_number_value(va), y = json_number_value(vb);
                double d = fabs(x - y), m = fmax(fabs(x), fabs(y));
                if (m > 0 && d / m > *worst) *worst = d / m;
                if (!(d <= tol * m + atol)) {
                    printf("     record %d, %s: %.9g vs %.9g\n", n, k, x, y);
                    ok = 0;
                }
            } else if (!vb || !json_equal(va, vb)) {
                printf("     record %d, %s differs\n", n, k);
                ok = 0;
            }
        }
        if (ok && json_object_size(a) != json_object_size(b)) {
            printf("     record %d: %zu keys vs %zu\n", n, json_object_size(a), json_object_size(b));
            ok = 0;
        }
        json_decref(a), json_decref(b);
    }
    free(ta), free(tb);
    *nrec = n;
    return ok;
}

static int run_train(const char *cfg, const char *out, const char *device, const char *steps, int resume) {
    char dev[64];
    snprintf(dev, sizeof dev, "device=%s", device);
    const char *more[] = {dev, steps, NULL};
    char *err = NULL;
    int rc = train(cfg, out, more, resume ? "" : NULL, &err);
    if (rc) printf("     %s: %s\n", out, last_line(err));
    free(err);
    return rc;
}

int main(void) {
    double t0 = now_seconds();
    const char *emu = getenv("RFT_EMU_BIN");
    if (!emu || access(emu, X_OK) != 0) {
        printf("RFT_EMU_BIN not set or not executable (no emulated CUDA build): skipped\n");
        return 77;
    }
    setenv("RFT_BIN", emu, 1);
    /* plain fp32 on the device (the fp32 attention's TF32 kernels would move the loss by ~2e-3; the op
       tests check them): what is compared here is the trainer's device paths */
    setenv("RFT_CUDA_TF32", "0", 1);
    rft = emu;
    snprintf(dir, sizeof dir, "/tmp/rft_train_emu_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(model_path, sizeof model_path, "data/quickstart/policy.h5");
    char cfg[512], out[4][512], met[4][600], smp[2][600];
    path_in(cfg, sizeof cfg, "emu.yaml");
    write_text(cfg, CFG_TEXT);
    const char *names[4] = {"cpu", "cuda", "cpu_then_cuda", "cuda_then_cpu"};
    for (int i = 0; i < 4; i++) {
        snprintf(out[i], sizeof out[i], "%s/%s", dir, names[i]);
        snprintf(met[i], sizeof met[i], "%s/metrics.jsonl", out[i]);
    }
    for (int i = 0; i < 2; i++) snprintf(smp[i], sizeof smp[i], "%s/samples.jsonl", out[i]);

    /* 1. cuda vs cpu */
    int rc = run_train(cfg, out[0], "cpu", "train.max_steps=2", 0);
    check(rc == 0, "cpu: 2 steps (rc %d)", rc);
    double t1 = now_seconds();
    rc = run_train(cfg, out[1], "cuda", "train.max_steps=2", 0);
    check(rc == 0, "cuda (emulated): 2 steps (rc %d, %.1f s)", rc, now_seconds() - t1);
    char *sa = slurp(smp[0]), *sb = slurp(smp[1]);
    check(sa[0] && !strcmp(sa, sb), "cuda vs cpu: samples.jsonl byte for byte (%zu bytes)", strlen(sa));
    free(sa), free(sb);
    int n;
    double worst;
    int ok = close_metrics(met[1], met[0], TOL, 1e-6, &n, &worst);
    check(ok && n >= 2, "cuda vs cpu: %d metric records within %g (largest difference %.2e)", n, TOL, worst);

    /* 2. a checkpoint of one device resumed on the other */
    for (int i = 2; i < 4; i++) {
        const char *first = i == 2 ? "cpu" : "cuda", *then = i == 2 ? "cuda" : "cpu";
        rc = run_train(cfg, out[i], first, "train.max_steps=1", 0);
        if (!rc) rc = run_train(cfg, out[i], then, "train.max_steps=2", 1);
        check(rc == 0, "%s: 1 step on %s, --resume on %s (rc %d)", names[i], first, then, rc);
        ok = close_metrics(met[i], met[i == 2 ? 1 : 0], TOL, 1e-6, &n, &worst);
        check(ok && n >= 2, "%s: metrics equal a straight %s run's, %d records within %g (largest %.2e)", names[i],
              then, n, TOL, worst);
    }

    /* 3. bf16 */
    char o16[2][512], m16[2][600], s16[2][600];
    for (int i = 0; i < 2; i++) {
        snprintf(o16[i], sizeof o16[i], "%s/bf16_%s", dir, i ? "cuda" : "cpu");
        snprintf(m16[i], sizeof m16[i], "%s/metrics.jsonl", o16[i]);
        snprintf(s16[i], sizeof s16[i], "%s/samples.jsonl", o16[i]);
        const char *more[] = {i ? "device=cuda" : "device=cpu", "model.dtype=bf16", "sampling.dtype=bf16", NULL};
        char *err = NULL;
        t1 = now_seconds();
        rc = train(cfg, o16[i], more, NULL, &err);
        check(rc == 0, "bf16 %s: 2 steps (rc %d, %.1f s) %s", i ? "cuda" : "cpu", rc, now_seconds() - t1,
              rc ? last_line(err) : "");
        free(err);
    }
    sa = slurp(s16[0]), sb = slurp(s16[1]);
    check(sa[0] && !strcmp(sa, sb), "bf16 cuda vs cpu: samples.jsonl byte for byte (%zu bytes)", strlen(sa));
    free(sa), free(sb);
    ok = close_metrics(m16[1], m16[0], 5e-2, 1e-3, &n, &worst);
    check(ok && n >= 2, "bf16 cuda vs cpu: %d metric records within 5e-2 (largest difference %.2e)", n, worst);

    /* 4. the default fp32 path on a device: TF32 tensor cores for the matmuls and attention */
    {
        char o32[512], m32[600], s32[600];
        snprintf(o32, sizeof o32, "%s/tf32_cuda", dir);
        snprintf(m32, sizeof m32, "%s/metrics.jsonl", o32);
        snprintf(s32, sizeof s32, "%s/samples.jsonl", o32);
        setenv("RFT_CUDA_TF32", "1", 1);
        t1 = now_seconds();
        rc = run_train(cfg, o32, "cuda", "train.max_steps=2", 0);
        setenv("RFT_CUDA_TF32", "0", 1);
        check(rc == 0, "tf32 cuda: 2 steps (rc %d, %.1f s)", rc, now_seconds() - t1);
        sa = slurp(smp[0]), sb = slurp(s32);
        check(sa[0] && !strcmp(sa, sb), "tf32 cuda vs cpu: samples.jsonl byte for byte (%zu bytes)", strlen(sa));
        free(sa), free(sb);
        ok = close_metrics(m32, met[0], TF32_TOL, TF32_ATOL, &n, &worst);
        check(ok && n >= 2, "tf32 cuda vs cpu: %d metric records within %g + %g (largest relative difference %.2e)", n,
              TF32_TOL, TF32_ATOL, worst);
    }

    /* 5. rft eval */
    char *ev[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        char *err = NULL;
        rc = run_rft(&ev[i], &err, "eval", cfg, "--data", "data/quickstart/valid.jsonl", "--n", "16", "--samples", "2",
                     "--json", "--set", i ? "device=cuda" : "device=cpu", NULL);
        check(rc == 0, "rft eval --json on %s (rc %d) %s", i ? "cuda" : "cpu", rc, rc ? last_line(err) : "");
        free(err);
    }
    json_t *ja = json_loads(ev[0], 0, NULL), *jb = json_loads(ev[1], 0, NULL);
    if (ja) json_object_del(ja, "seconds");
    if (jb) json_object_del(jb, "seconds");
    check(ja && jb && json_equal(ja, jb) && json_object_get(ja, "reward_mean"),
          "rft eval --json: cuda's report equals cpu's (time aside): %.200s", ev[0]);
    json_decref(ja), json_decref(jb);
    free(ev[0]), free(ev[1]);
    return tt_finish(t0);
}
