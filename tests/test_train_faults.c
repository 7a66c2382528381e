/* tests/test_train_faults.c: `rft train` when things go wrong, through
 * $RFT_BIN on the tiny model of tests/test_train_cli.c (helpers:
 * tests/train_cli_common.h):
 *   1. divergence (learning_rate 10, no clipping): non-finite steps are
 *      skipped and logged (metrics stay in the record as null), the run stops
 *      after train.max_bad_steps with exit 1 and a message, and every
 *      checkpoint left loads with finite weights;
 *   2. grader failures: a plugin (tests/faults) that crashes on every sample
 *      costs grades, not the run (grader_errors/<g>, on_error zero); errors
 *      above reward.max_error_rate stop the run with exit 1 naming it;
 *   3. SIGINT mid-run (cosine schedule with warm-up): exit 1, a checkpoint,
 *      and `--resume` finishes with the metrics and weights of a run that was
 *      never interrupted; SIGTERM the same (sent twice 20 ms apart to a
 *      run with the --gpus launcher's variables: one request); SIGKILL (a
 *      crash, checkpoint every step): `--resume` from the newest complete
 *      checkpoint replays the steps logged after it and ends bitwise equal
 *      as well.
 * Exit 1 on any failure, 77 when $RFT_BIN is missing. */
#define _GNU_SOURCE
#include "train_cli_common.h"

/* ---- 1. divergence ---- */

static void test_divergence(void) {
    char out[600], ck[700], met[700];
    snprintf(out, sizeof out, "%s/diverge", dir);
    const char *more[] = {"train.learning_rate=10", "train.grad_clip=0", "train.max_steps=20", NULL};
    char *err;
    int rc = train("tests/fixtures/train_grpo.yaml", out, more, NULL, &err);
    const char *ll = last_line(err);
    check(rc == 1 && strstr(ll, "max_bad_steps") && strstr(ll, out),
          "learning_rate 10: the run stops with exit 1 naming train.max_bad_steps and the checkpoints (rc %d): %s", rc, ll);
    int skipped_lines = 0;
    for (const char *p = err; (p = strstr(p, ": non-finite loss or gradient")); p++) skipped_lines++;
    check(skipped_lines == 3, "3 (train.max_bad_steps) 'non-finite loss or gradient' lines on stderr (%d)", skipped_lines);
    free(err);
    /* metrics: the last 3 records are marked skipped, and the run did not reach step 20 */
    snprintf(met, sizeof met, "%s/metrics.jsonl", out);
    char *text = slurp(met);
    int n_rec = 0, n_skip = 0, last_step = -1, tail_skips = 0, missing = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        n_rec++;
        /* a non-finite metric is written as null, never dropped */
        const char *keys[] = {"reward", "loss", "kl", "entropy", "grad_norm", "clip_ratio/low_mean"};
        for (int i = 0; i < 6 && json_integer_value(json_object_get(o, "step")) > 0; i++) {
            json_t *v = json_object_get(o, keys[i]);
            if (!v || !(json_is_null(v) || isfinite(json_real_value(v)))) {
                if (missing++ < 3) printf("     step %d: %s missing\n", (int)json_integer_value(json_object_get(o, "step")), keys[i]);
            }
        }
        int sk = json_is_true(json_object_get(o, "skipped"));
        /* a skipped RL step says how many of its ppo_epochs x mini_batches = 4 updates were dropped */
        if (sk && json_integer_value(json_object_get(o, "skipped_updates")) + json_integer_value(json_object_get(o, "applied_updates")) != 4)
            if (missing++ < 3) printf("     step %d: skipped_updates + applied_updates != 4\n", (int)json_integer_value(json_object_get(o, "step")));
        n_skip += sk;
        tail_skips = sk ? tail_skips + 1 : 0;
        last_step = (int)json_integer_value(json_object_get(o, "step"));
        json_decref(o);
    }
    free(text);
    check(n_skip >= 3 && tail_skips == 3 && last_step < 20,
          "metrics.jsonl: %d skipped records, the last 3 in a row, stopped at step %d", n_skip, last_step);
    check(!missing, "diverging run: every step record keeps reward, loss, kl, entropy, grad_norm, clip_ratio (null when "
                    "not finite), skipped steps count skipped/applied updates (%d problems)", missing);
    /* every checkpoint left loads with finite weights */
    int n_ck = 0, good = 0;
    for (int s = 1; s <= 20; s++) {
        snprintf(ck, sizeof ck, "%s/checkpoints/step-%06d.h5", out, s);
        if (!file_exists(ck)) continue;
        n_ck++;
        char *o;
        int r2 = run_rft(&o, &err, "inspect", ck, NULL);
        long nv = model_finite(ck);
        good += r2 == 0 && nv > 29000;
        if (r2 != 0 || nv <= 0) printf("     %s: inspect rc %d, finite values %ld: %s\n", ck, r2, nv, err);
        free(o), free(err);
    }
    check(n_ck > 0 && good == n_ck, "%d checkpoints left, %d pass rft inspect with finite weights", n_ck, good);
    char tmpname[700];
    snprintf(tmpname, sizeof tmpname, "%s/checkpoints", out);
    /* no temporary files left behind */
    char cmd[800];
    snprintf(cmd, sizeof cmd, "ls %s | grep -v '^step-[0-9]*\\.h5$' | grep -q .", tmpname);
    check(system(cmd) != 0, "no stray files in %s", tmpname);
}

/* ---- 2. grader failures during training ---- */

/* the grpo fixture plus a fault-injection grader (tests/faults/fault.c) with the given mode and error policy */
static void fault_config(const char *path, const char *plugin, const char *mode, const char *on_error, const char *rate) {
    char *base = slurp("tests/fixtures/train_grpo.yaml");
    const char *from = "reward:\n  weights: {correct: 1.0, format: 0.1, close: 1.0}\n";
    char *p = strstr(base, from);
    if (!p) {
        printf("FAIL internal: reward section not found in train_grpo.yaml\n");
        exit(1);
    }
    FILE *f = fopen(path, "wb");
    fprintf(f, "%.*s  crash:\n    plugin: %s\n    config: {mode: %s}\n"
               "reward:\n  weights: {correct: 1.0, format: 0.1, close: 1.0, crash: 1.0}\n  on_error: %s\n"
               "  max_error_rate: %s\n%s",
            (int)(p - base), base, plugin, mode, on_error, rate, p + strlen(from));
    fclose(f);
    free(base);
}

static void test_grader_faults(void) {
    const char *build = getenv("RFT_BUILD");
    char plugin[600];
    snprintf(plugin, sizeof plugin, "%s/tests/faults/fault.so", build ? build : "build");
    if (access(plugin, R_OK)) {
        printf("skip grader fault checks: %s not built\n", plugin);
        return;
    }
    char cfg[600], out[600], met[700];
    const char *two[] = {"train.max_steps=2", NULL};
    /* a grader that crashes its worker on every sample, on_error zero, no error limit: training goes on */
    path_in(cfg, sizeof cfg, "fault_segv.yaml");
    fault_config(cfg, plugin, "segv", "zero", "1.0");
    snprintf(out, sizeof out, "%s/fault_segv", dir);
    char *err;
    int rc = train(cfg, out, two, NULL, &err);
    check(rc == 0, "a grader that segfaults on every sample (on_error zero): the run finishes (rc %d) %s", rc,
          rc ? last_line(err) : "");
    free(err);
    snprintf(met, sizeof met, "%s/metrics.jsonl", out);
    char *text = slurp(met);
    int steps = 0, good = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        if (json_integer_value(json_object_get(o, "step")) > 0) {
            steps++;
            json_t *m = json_object_get(o, "rewards/crash/mean");
            good += json_integer_value(json_object_get(o, "grader_errors/crash")) == 8 && m && json_is_null(m) &&
                    json_is_number(json_object_get(o, "reward"));
        }
        json_decref(o);
    }
    free(text);
    check(steps == 2 && good == 2, "each step logs grader_errors/crash 8 (of 8 samples), rewards/crash/mean null, a reward");
    /* a grader that returns errors, on_error mask, max_error_rate 0.05: the run stops naming the grader */
    path_in(cfg, sizeof cfg, "fault_error.yaml");
    fault_config(cfg, plugin, "error", "mask", "0.05");
    snprintf(out, sizeof out, "%s/fault_error", dir);
    rc = train(cfg, out, two, NULL, &err);
    const char *ll = last_line(err);
    check(rc == 1 && strstr(ll, "'crash'") && strstr(ll, "max_error_rate"),
          "grader errors above reward.max_error_rate: exit 1 naming the grader (rc %d): %s", rc, ll);
    free(err);
}

/* ---- 3. signals ---- */

#define SIG_STEPS 120

static void test_sigint(void) {
    char a[600], b[600], ma[700], mb[700], ca[700], cb[700];
    snprintf(a, sizeof a, "%s/sig_straight", dir);
    snprintf(b, sizeof b, "%s/sig_interrupted", dir);
    /* a decaying schedule with warm-up, SIG_STEPS steps, checkpoints only at the end */
    char ms[64];
    const char *base[] = {"train.lr_schedule=cosine", "train.warmup_steps=5", "train.checkpoint_interval=0",
                          "train.eval_interval=0", NULL};
    sets s;
    snprintf(s.model, sizeof s.model, "model.path=%s", model_path);
    snprintf(s.out, sizeof s.out, "train.out_dir=%s", b);
    snprintf(ms, sizeof ms, "train.max_steps=%d", SIG_STEPS);
    char *argv[] = {(char *)rft, "train", "tests/fixtures/train_grpo.yaml", "--set", s.model, "--set", s.out,
                    "--set", ms, "--set", (char *)base[0], "--set", (char *)base[1], "--set", (char *)base[2],
                    "--set", (char *)base[3], NULL};
    char op[600], ep[600];
    path_in(op, sizeof op, "sig_stdout.txt");
    path_in(ep, sizeof ep, "sig_stderr.txt");
    snprintf(mb, sizeof mb, "%s/metrics.jsonl", b);
    pid_t pid = spawn(argv, op, ep);
    double t0 = now_seconds();
    while (max_step_logged(mb) < 2 && now_seconds() - t0 < 20) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGINT);
    int rc = wait_status(pid);
    char *err = slurp(ep);
    const char *ll = last_line(err);
    int stopped = max_step_logged(mb);
    check(rc == 1 && strstr(ll, "interrupted") && strstr(ll, "--resume") && stopped >= 2 && stopped < SIG_STEPS,
          "SIGINT after step 2 is logged: exit 1, stopped at step %d (rc %d): %s", stopped, rc, ll);
    free(err);
    snprintf(cb, sizeof cb, "%s/checkpoints/step-%06d.h5", b, stopped);
    check(file_exists(cb) && model_finite(cb) > 29000, "the interrupted run wrote %s", cb);
    /* resume to the end */
    const char *more[] = {base[0], base[1], base[2], base[3]};
    char *argv2[] = {(char *)rft, "train", "tests/fixtures/train_grpo.yaml", "--set", s.model, "--set", s.out,
                     "--set", ms, "--set", (char *)more[0], "--set", (char *)more[1], "--set", (char *)more[2],
                     "--set", (char *)more[3], "--resume", NULL};
    rc = wait_status(spawn(argv2, op, ep));
    err = slurp(ep);
    check(rc == 0 && max_step_logged(mb) == SIG_STEPS, "--resume after SIGINT runs to step %d (rc %d) %s", SIG_STEPS, rc,
          rc ? last_line(err) : "");
    free(err);
    /* the same run, never interrupted */
    snprintf(s.out, sizeof s.out, "train.out_dir=%s", a);
    rc = wait_status(spawn(argv, op, ep));
    check(rc == 0, "the uninterrupted %d-step run (rc %d)", SIG_STEPS, rc);
    snprintf(ma, sizeof ma, "%s/metrics.jsonl", a);
    check(same_metrics(ma, mb, SIG_STEPS + 1), "interrupted + resumed metrics equal the uninterrupted run's (%d records: eval at 0)", SIG_STEPS + 1);
    snprintf(ca, sizeof ca, "%s/checkpoints/step-%06d.h5", a, SIG_STEPS);
    snprintf(cb, sizeof cb, "%s/checkpoints/step-%06d.h5", b, SIG_STEPS);
    int n = same_checkpoint(ca, cb);
    check(n > 20, "interrupted + resumed final checkpoint bitwise equal to the uninterrupted one (%d datasets)", n);

    /* SIGTERM is handled the same way */
    char t[600], mt[700];
    snprintf(t, sizeof t, "%s/sig_term", dir);
    snprintf(s.out, sizeof s.out, "train.out_dir=%s", t);
    snprintf(mt, sizeof mt, "%s/metrics.jsonl", t);
    setenv("RFT_RANK", "0", 1), setenv("RFT_WORLD_SIZE", "1", 1); /* as the launcher starts a rank */
    pid = spawn(argv, op, ep);
    unsetenv("RFT_RANK"), unsetenv("RFT_WORLD_SIZE");
    t0 = now_seconds();
    while (max_step_logged(mt) < 1 && now_seconds() - t0 < 20) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    /* twice, 20 ms apart, to a run with the launcher's variables (a one-rank --gpus run without NCCL): a `--gpus`
       rank gets a group's signal directly and again from the launcher; one request */
    kill(pid, SIGTERM);
    struct timespec gap = {0, 20000000};
    nanosleep(&gap, NULL);
    kill(pid, SIGTERM);
    rc = wait_status(pid);
    err = slurp(ep);
    ll = last_line(err);
    stopped = max_step_logged(mt);
    snprintf(cb, sizeof cb, "%s/checkpoints/step-%06d.h5", t, stopped);
    check(rc == 1 && strstr(ll, "interrupted") && stopped >= 1 && stopped < SIG_STEPS && file_exists(cb),
          "SIGTERM twice 20 ms apart: one stop request, exit 1 and a checkpoint at step %d (rc %d): %s", stopped, rc, ll);
    free(err);

    /* SIGKILL (a crash) with a checkpoint every step: --resume from the newest complete checkpoint replays the
       logged steps after it and still ends bitwise where the uninterrupted run ended */
    char k[600], mk[700];
    snprintf(k, sizeof k, "%s/sig_kill", dir);
    snprintf(s.out, sizeof s.out, "train.out_dir=%s", k);
    snprintf(mk, sizeof mk, "%s/metrics.jsonl", k);
    char *argv3[20] = {(char *)rft, "train", "tests/fixtures/train_grpo.yaml", "--set", s.model, "--set", s.out,
                     "--set", ms, "--set", (char *)base[0], "--set", (char *)base[1], "--set", "train.checkpoint_interval=1",
                     "--set", (char *)base[3], NULL};
    pid = spawn(argv3, op, ep);
    t0 = now_seconds();
    while (max_step_logged(mk) < 5 && now_seconds() - t0 < 20) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    rc = wait_status(pid);
    int killed_at = max_step_logged(mk);
    check(rc == 128 + SIGKILL && killed_at >= 5 && killed_at < SIG_STEPS, "SIGKILL after step %d", killed_at);
    argv3[17] = "--resume";
    argv3[18] = NULL;
    rc = wait_status(spawn(argv3, op, ep));
    err = slurp(ep);
    check(rc == 0 && max_step_logged(mk) == SIG_STEPS, "--resume after SIGKILL runs to step %d (rc %d) %s", SIG_STEPS, rc,
          rc ? last_line(err) : "");
    free(err);
    check(same_metrics(ma, mk, SIG_STEPS + 1), "killed + resumed metrics equal the uninterrupted run's");
    snprintf(cb, sizeof cb, "%s/checkpoints/step-%06d.h5", k, SIG_STEPS);
    n = same_checkpoint(ca, cb);
    check(n > 20, "killed + resumed final checkpoint bitwise equal to the uninterrupted one (%d datasets)", n);
    /* keep_checkpoints 10: exactly the newest 10 step checkpoints are left */
    int kept = 0, newest = 1;
    for (int st = 1; st <= SIG_STEPS; st++) {
        snprintf(cb, sizeof cb, "%s/checkpoints/step-%06d.h5", k, st);
        if (file_exists(cb)) kept++, newest &= st > SIG_STEPS - 10;
    }
    check(kept == 10 && newest, "keep_checkpoints 10: the newest 10 step checkpoints are kept (%d kept)", kept);
    char cmd[900];
    snprintf(cmd, sizeof cmd, "ls %s/checkpoints | grep -q '\\.tmp'", k);
    check(system(cmd) != 0, "the resumed run removed the killed writer's temporary checkpoint file");
}

int main(void) {
    double t0 = now_seconds();
    int rc = tt_setup("trainfaults");
    if (rc) return rc;
    test_divergence();
    test_grader_faults();
    test_sigint();
    return tt_finish(t0);
}
