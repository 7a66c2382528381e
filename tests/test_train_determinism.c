/* tests/test_train_determinism.c: bitwise reproducibility of training on the
 * CPU backend. A small model (T x D around the CPU ops' 16K/32K-element
 * thresholds for going multi-threaded, n_head * head_dim != d_model) takes
 * AdamW steps (warm-up + cosine schedule, clipping) on packed batches of
 * ragged sequences drawn from the counter-based RNG; per step the batch
 * comes from (seed, rng_counter), as the trainer does.
 *   1. same seed, same threads: two runs give bitwise-identical losses,
 *      gradient norms and final parameters;
 *   2. 1 thread vs 2 threads: bitwise identical as well (the CPU backend
 *      promises thread-count independence);
 *   3. save a training checkpoint (model + optimizer + trainer state) after
 *      K steps, load it into fresh objects and continue: the later steps and
 *      the final parameters are bitwise those of the run that never stopped;
 *   4. control: resuming with the weights but a fresh optimizer (the bug the
 *      checkpoint exists to prevent) does change the next losses, so check 3
 *      can fail;
 *   5. bf16 mixed precision (model.dtype bf16): 1 vs 2 threads bitwise equal
 *      too, and different from the fp32 run.
 * Exit 1 on any failure. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "model.h"
#include "optim.h"
#include "util.h"

#define N_STEPS 5
#define K_SAVE 2
#define T_MAX 320

static int n_fail, n_check;

static void check_true(const char *what, int cond) {
    n_check++;
    if (!cond) n_fail++;
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
}

static const model_config CFG = {.vocab = 211, .d_model = 160, .n_layer = 2, .n_head = 8, .n_kv_head = 2,
                                 .head_dim = 32, .d_ff = 256, .rope_theta = 10000.0f, .rms_eps = 1e-5f,
                                 .tie_embeddings = 0, .qkv_bias = 1, .max_seq = 128};
static const optim_config OCFG = {.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                                  .grad_clip = 0.5f, .schedule = LR_COSINE, .warmup_steps = 2,
                                  .total_steps = N_STEPS, .min_lr_ratio = 0.1f};
static const uint64_t SEED = 20261127;

typedef struct trainer {
    backend *be;
    model m;
    optim o;
    uint64_t rng_counter;              /* next counter of the batch stream */
    int32_t tokens[T_MAX], targets[T_MAX], cu[8];
    float w[T_MAX], logp[T_MAX];
} trainer;

typedef struct trace {
    double loss[N_STEPS], norm[N_STEPS];
    double seconds;                    /* wall time of the run */
    float *params;                     /* final parameters [n_params] */
} trace;

static int fail_msg(const char *what, const char *err) {
    printf("FAIL %s: %s\n", what, err);
    n_check++;
    n_fail++;
    return -1;
}

static int g_mixed; /* model.dtype bf16 */

static int trainer_init(trainer *tr, int threads, int init_weights) {
    char err[512];
    memset(tr, 0, sizeof *tr);
    tr->be = backend_cpu_create(threads);
    if (model_create(&tr->m, &CFG, tr->be, T_MAX, err, sizeof err)) return fail_msg("model_create", err);
    if (model_set_mixed(&tr->m, g_mixed, err, sizeof err)) return fail_msg("model_set_mixed", err);
    if (init_weights) model_init_weights(&tr->m, SEED);
    if (optim_create(&tr->o, &tr->m, &OCFG, err, sizeof err)) return fail_msg("optim_create", err);
    return 0;
}

static void trainer_free(trainer *tr) {
    optim_free(&tr->o);
    model_free(&tr->m);
    tr->be->destroy(tr->be);
}

/* One training step on the next batch of the stream; returns the loss. */
static int trainer_step(trainer *tr, double *loss, double *norm) {
    char err[512];
    uint64_t key = rng_key(SEED, 0xba7c4, 0, 0);
    uint64_t c = tr->rng_counter;
    int n_seq = 3 + (int)(rng_u64(key, c++) % 4); /* 3..6 sequences */
    int T = 0;
    tr->cu[0] = 0;
    for (int s = 0; s < n_seq; s++) {
        int len = 12 + (int)(rng_u64(key, c++) % 40); /* T = 36..306 */
        tr->cu[s + 1] = tr->cu[s] + len;
        T += len;
    }
    for (int t = 0; t < T; t++) tr->tokens[t] = (int32_t)(rng_u64(key, c++) % CFG.vocab);
    int n_valid = 0;
    for (int s = 0; s < n_seq; s++)
        for (int t = tr->cu[s]; t < tr->cu[s + 1]; t++) {
            int last = t == tr->cu[s + 1] - 1;
            tr->targets[t] = last ? -1 : tr->tokens[t + 1];
            n_valid += !last;
        }
    /* advantage-like per-sequence weights, spread over the valid tokens */
    for (int s = 0; s < n_seq; s++) {
        double adv = rng_normal(key, c++);
        for (int t = tr->cu[s]; t < tr->cu[s + 1]; t++)
            tr->w[t] = tr->targets[t] < 0 ? 0.0f : (float)(adv / (n_valid > 0 ? n_valid : 1));
    }
    tr->rng_counter = c;
    model_batch b = {.T = T, .n_seq = n_seq, .tokens = tr->tokens, .targets = tr->targets, .cu_seqlens = tr->cu,
                     .pos = NULL};
    model_zero_grads(&tr->m);
    if (model_forward(&tr->m, &b, tr->logp, NULL, err, sizeof err)) return fail_msg("model_forward", err);
    if (model_backward(&tr->m, &b, tr->w, NULL, err, sizeof err)) return fail_msg("model_backward", err);
    double L = 0;
    for (int t = 0; t < T; t++) L -= (double)tr->w[t] * tr->logp[t];
    *loss = L;
    *norm = optim_step(&tr->o);
    if (!isfinite(*norm)) return fail_msg("optim_step", "non-finite gradient norm");
    return 0;
}

static float *params_copy(trainer *tr) {
    float *p = malloc(tr->m.n_params * sizeof(float));
    tr->be->copy_d2h(tr->be, p, tr->m.params, tr->m.n_params * sizeof(float));
    tr->be->sync(tr->be);
    return p;
}

/* N_STEPS steps without stopping */
static int run_straight(int threads, trace *out) {
    double t0 = now_seconds();
    trainer tr;
    int rc = trainer_init(&tr, threads, 1);
    for (int s = 0; !rc && s < N_STEPS; s++) rc = trainer_step(&tr, &out->loss[s], &out->norm[s]);
    out->params = rc ? NULL : params_copy(&tr);
    trainer_free(&tr);
    out->seconds = now_seconds() - t0;
    return rc;
}

/* K_SAVE steps, checkpoint, fresh objects, load (optimizer too unless
 * fresh_optim), remaining steps */
static int run_resumed(int threads, const char *path, int fresh_optim, trace *out) {
    char err[512];
    double t0 = now_seconds();
    trainer tr;
    int rc = trainer_init(&tr, threads, 1);
    for (int s = 0; !rc && s < K_SAVE; s++) rc = trainer_step(&tr, &out->loss[s], &out->norm[s]);
    if (rc) {
        trainer_free(&tr);
        return rc;
    }
    ckpt_train_state ts = {.step = K_SAVE, .seed = SEED, .rng_counter = tr.rng_counter,
                           .best_valid_reward = NAN, .best_step = -1};
    ckpt_parts parts = {.opt = &tr.o, .train = &ts};
    rc = ckpt_save(path, &tr.m, &parts, err, sizeof err);
    trainer_free(&tr);
    if (rc) return fail_msg("ckpt_save", err);

    /* a new process would start here: nothing survives but the file */
    trainer tr2;
    if (trainer_init(&tr2, threads, 0)) {
        trainer_free(&tr2);
        return -1;
    }
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    ckpt_train_state ts2;
    memset(&ts2, 0, sizeof ts2);
    if (!f) rc = fail_msg("ckpt_open", err);
    if (!rc && ckpt_load_model(f, &tr2.m, err, sizeof err)) rc = fail_msg("ckpt_load_model", err);
    if (!rc && !fresh_optim && ckpt_load_optim(f, &tr2.o, err, sizeof err)) rc = fail_msg("ckpt_load_optim", err);
    if (!rc && ckpt_load_train_state(f, &ts2, err, sizeof err)) rc = fail_msg("ckpt_load_train_state", err);
    if (f) ckpt_close(f);
    if (!rc) {
        tr2.rng_counter = ts2.rng_counter;
        if (!fresh_optim && (tr2.o.step != K_SAVE || ts2.step != K_SAVE)) {
            printf("FAIL resumed step counters: optimizer %d, trainer %lld, expected %d\n", tr2.o.step,
                   (long long)ts2.step, K_SAVE);
            n_fail++;
        }
    }
    ckpt_train_state_free(&ts2);
    for (int s = K_SAVE; !rc && s < N_STEPS; s++) rc = trainer_step(&tr2, &out->loss[s], &out->norm[s]);
    out->params = rc ? NULL : params_copy(&tr2);
    trainer_free(&tr2);
    out->seconds = now_seconds() - t0;
    return rc;
}

static int same_trace(const trace *a, const trace *b, size_t n_params, int from) {
    for (int s = from; s < N_STEPS; s++)
        if (memcmp(&a->loss[s], &b->loss[s], sizeof(double)) || memcmp(&a->norm[s], &b->norm[s], sizeof(double)))
            return 0;
    return a->params && b->params && memcmp(a->params, b->params, n_params * sizeof(float)) == 0;
}

static void print_trace(const char *label, const trace *t) {
    printf("     %-22s", label);
    for (int s = 0; s < N_STEPS; s++) printf(" %.9f", t->loss[s]);
    printf("  (%.2f s)\n", t->seconds);
}

int main(int argc, char **argv) {
    (void)argc;
    /* OpenMP threads spin-wait by default; on a loaded 2-core machine two
       spinning threads per run make this test 10-30x slower. The policy is
       read when libgomp loads, so set it and re-execute (results do not
       depend on it: that is what the test checks). */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    double t0 = now_seconds();
    char dir[] = "/tmp/rft_test_determinism_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[sizeof dir + 32];
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);

    size_t n_params;
    {
        trainer tr;
        if (trainer_init(&tr, 1, 0)) return 1;
        n_params = tr.m.n_params;
        trainer_free(&tr);
    }
    printf("model: %zu parameters, %d steps, checkpoint after %d\n", n_params, N_STEPS, K_SAVE);

    trace a = {0}, b = {0}, c = {0}, r = {0}, x = {0};
    if (run_straight(2, &a) || run_straight(2, &b)) goto done;
    print_trace("run 1 (2 threads)", &a);
    print_trace("run 2 (2 threads)", &b);
    check_true("same seed, same threads: losses, grad norms, final parameters bitwise equal", same_trace(&a, &b, n_params, 0));
    {
        trainer t0r;
        if (trainer_init(&t0r, 1, 1)) goto done;
        float *p0 = params_copy(&t0r);
        trainer_free(&t0r);
        size_t n_moved = 0;
        for (size_t i = 0; i < n_params; i++) n_moved += p0[i] != a.params[i];
        free(p0);
        printf("     %zu of %zu parameters changed by training\n", n_moved, n_params);
        check_true("training changes the parameters (the runs are not trivially equal)", n_moved > n_params / 2);
    }

    if (run_straight(1, &c)) goto done;
    print_trace("run 3 (1 thread)", &c);
    check_true("1 thread vs 2 threads: bitwise equal", same_trace(&a, &c, n_params, 0));

    if (run_resumed(2, path, 0, &r)) goto done;
    print_trace("saved + resumed", &r);
    check_true("checkpoint after step 2, load, continue: bitwise equal to never stopping", same_trace(&a, &r, n_params, 0));

    if (run_resumed(2, path, 1, &x)) goto done;
    print_trace("resumed, fresh optim", &x);
    check_true("control: resuming without optimizer state changes the next losses", x.loss[K_SAVE + 1] != a.loss[K_SAVE + 1]);

    g_mixed = 1;
    free(b.params), free(c.params);
    b.params = c.params = NULL;
    if (run_straight(2, &b) || run_straight(1, &c)) goto done;
    print_trace("bf16 (2 threads)", &b);
    print_trace("bf16 (1 thread)", &c);
    check_true("bf16 mixed precision: 1 thread vs 2 threads bitwise equal", same_trace(&b, &c, n_params, 0));
    check_true("bf16 mixed precision: differs from the fp32 run", b.loss[N_STEPS - 1] != a.loss[N_STEPS - 1]);

done:
    free(a.params);
    free(b.params);
    free(c.params);
    free(r.params);
    free(x.params);
    unlink(path);
    rmdir(dir);
    if (n_check == 0) n_fail++;
    printf("%d/%d checks passed (%.1f s)\n", n_check - n_fail, n_check, now_seconds() - t0);
    return n_fail ? 1 : 0;
}
