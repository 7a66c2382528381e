/* tests/test_train_ranks.c: data-parallel training (DESIGN.md "Scale",
 * trainer/comm.h) on the CPU: `mpiexec -n W rft train` against one process,
 * on the tiny model of tests/train_cli_common.h.
 *   1. GRPO (ppo_epochs 2, mini_batches 2, kl_beta > 0: the old and reference
 *      passes too) with 2 and 3 ranks (3 ranks on a batch of 2 prompts: one
 *      rank generates nothing and gets a share of the passes only): the
 *      completions, rewards and advantages (samples.jsonl, byte for byte) and
 *      every reward and validation metric equal the one-process run's; loss,
 *      grad norm, KL, entropy within 1e-4 relative (the ranks' gradients are
 *      summed in another order); the final weights within 1e-4 of the
 *      largest (AdamW turns the order-of-sums noise of near-zero gradients
 *      into whole steps). A control run with another seed differs by far more.
 *      gspo (the two-pass path: forward, loss, backward) with 2 ranks too.
 *   2. SFT with 2 ranks: loss, grad norm, valid_loss, the final weights.
 *   3. Resume under 2 ranks: 3 steps + --resume to 6 gives the metrics and
 *      the final checkpoint of an uninterrupted 2-rank run bit for bit.
 *   4. Bad input under 2 ranks: exit 2 and the error said once (by rank 0).
 *   5. One rank failing alone (rank 0 cannot open metrics.jsonl) ends the
 *      job with its status (the other rank does not wait for ever in a
 *      collective; 60 s limit).
 *   6. SIGTERM to the ranks mid-run: they stop after the same step, rank 0
 *      writes the checkpoint (the others wait for it), exit 1; --resume
 *      under 2 ranks ends with the metrics and checkpoint of a 2-rank run
 *      never interrupted, bit for bit.
 *   7. Ranks resuming from different checkpoints (mpiexec's A : B form)
 *      refuse to start, naming the rank and the steps; so do ranks given
 *      different settings.
 *   8. rft eval --json (sampled, 3 per row) under 2 and 3 ranks prints
 *      what one process prints ("seconds" aside), once.
 * Exit 77 (skipped) when rft was built without MPI or $RFT_MPIEXEC is unset. */
#define _GNU_SOURCE
#include "train_cli_common.h"

#include <dirent.h>

static const char *mpiexec;

static int train_ranks_wait(pid_t pid, char **err);
static pid_t train_ranks_start(int W, const char *cfg, const char *out_dir, const char *const *more, int resume);

/* rft train CFG under `mpiexec -n W` (W = 1: a plain process) with model.path,
   train.out_dir and up to 4 more --set's; resume: --resume */
static int train_ranks(int W, const char *cfg, const char *out_dir, const char *const *more, int resume, char **err) {
    return train_ranks_wait(train_ranks_start(W, cfg, out_dir, more, resume), err);
}

static pid_t train_ranks_start(int W, const char *cfg, const char *out_dir, const char *const *more, int resume) {
    char nw[16];
    snprintf(nw, sizeof nw, "%d", W);
    const char *pre[] = {mpiexec, "-n", nw, NULL};
    return train_spawn(W > 1 ? pre : NULL, cfg, out_dir, more, resume);
}

/* waits at most 60 s (a rank left waiting would hang the test) for the job
   started as pid; *err: its stderr */
static int train_ranks_wait(pid_t pid, char **err) {
    char ep[512];
    path_in(ep, sizeof ep, "train_stderr.txt");
    int rc = -1, st;
    for (int i = 0; i < 1200 && rc < 0; i++) { /* at most 60 s: a rank left waiting would hang the test */
        if (waitpid(pid, &st, WNOHANG) == pid) rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        else usleep(50000);
    }
    if (rc < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        rc = 124;
    }
    if (err) *err = slurp(ep);
    return rc;
}

/* metrics of two runs: keys in `exact` equal, every other number within
   rel * max(|a|, |b|) + 1e-7 (timing keys and tokens_per_s aside); returns
   the largest relative difference seen on the inexact keys, or -1 when the
   records do not correspond or an exact key differs */
static double compare_metrics(const char *pa, const char *pb, int expect, const char *const *exact, double rel) {
    char *ta = slurp(pa), *tb = slurp(pb), *sa, *sb;
    double worst = 0;
    int n = 0;
    char *la = strtok_r(ta, "\n", &sa), *lb = strtok_r(tb, "\n", &sb);
    for (; la && lb; la = strtok_r(NULL, "\n", &sa), lb = strtok_r(NULL, "\n", &sb), n++) {
        json_t *a = json_loads(la, 0, NULL), *b = json_loads(lb, 0, NULL);
        const char *k;
        json_t *va;
        if (!a || !b || json_object_size(a) != json_object_size(b)) worst = -1;
        if (a && b)
            json_object_foreach(a, k, va) {
                json_t *vb = json_object_get(b, k);
                if (!strncmp(k, "timing/", 7) || !strcmp(k, "tokens_per_s")) continue;
                int is_exact = 0;
                for (int i = 0; exact[i]; i++) is_exact |= !strncmp(k, exact[i], strlen(exact[i]));
                if (!vb || json_typeof(va) != json_typeof(vb)) {
                    printf("     record %d: %s missing or of another type\n", n, k);
                    worst = -1;
                } else if (json_is_number(va)) {
                    double x = json_number_value(va), y = json_number_value(vb);
                    double d = fabs(x - y), m = fmax(fabs(x), fabs(y));
                    if (is_exact && x != y) {
                        printf("     record %d: %s %.9g vs %.9g\n", n, k, x, y);
                        worst = -1;
                    } else if (!is_exact && worst >= 0) {
                        if (d > rel * m + 1e-7) printf("     record %d: %s %.9g vs %.9g\n", n, k, x, y);
                        double r = d > 1e-7 ? d / m : 0;
                        worst = d > rel * m + 1e-7 ? -1 : fmax(worst, r);
                    }
                } else if (!json_equal(va, vb)) {
                    printf("     record %d: %s differs\n", n, k);
                    worst = -1;
                }
            }
        json_decref(a), json_decref(b);
    }
    if (la || lb || n != expect) {
        printf("     %d corresponding records (expected %d; %s)\n", n, expect, la || lb ? "lengths differ" : "");
        worst = -1;
    }
    free(ta), free(tb);
    return worst;
}

/* largest |a - b| over the /model float datasets of two checkpoints, over the
   largest |a| (or -1 when they do not correspond) */
static double model_rel_diff(const char *pa, const char *pb) {
    hid_t fa, fb;
    H5E_BEGIN_TRY {
        fa = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT);
        fb = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    }
    H5E_END_TRY;
    hid_t ga = fa >= 0 ? H5Gopen2(fa, "model", H5P_DEFAULT) : -1, gb = fb >= 0 ? H5Gopen2(fb, "model", H5P_DEFAULT) : -1;
    H5G_info_t gi = {0}, gj = {0};
    double dmax = 0, amax = 0;
    int bad = ga < 0 || gb < 0 || H5Gget_info(ga, &gi) < 0 || H5Gget_info(gb, &gj) < 0 || gi.nlinks != gj.nlinks ||
              gi.nlinks == 0;
    for (hsize_t i = 0; !bad && i < gi.nlinks; i++) {
        char name[256];
        H5Lget_name_by_idx(ga, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
        hid_t da = H5Dopen2(ga, name, H5P_DEFAULT), db;
        H5E_BEGIN_TRY { db = H5Dopen2(gb, name, H5P_DEFAULT); }
        H5E_END_TRY;
        hid_t sa = H5Dget_space(da), sb = db >= 0 ? H5Dget_space(db) : -1;
        hssize_t na = H5Sget_simple_extent_npoints(sa), nb = sb >= 0 ? H5Sget_simple_extent_npoints(sb) : -1;
        float *x = malloc((size_t)(na > 0 ? na : 1) * sizeof *x), *y = malloc((size_t)(na > 0 ? na : 1) * sizeof *y);
        bad = na != nb || H5Dread(da, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0 ||
              H5Dread(db, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) < 0;
        for (hssize_t j = 0; !bad && j < na; j++) {
            dmax = fmax(dmax, fabs((double)x[j] - y[j]));
            amax = fmax(amax, fabs((double)x[j]));
        }
        free(x), free(y);
        if (sb >= 0) H5Sclose(sb);
        if (db >= 0) H5Dclose(db);
        H5Sclose(sa), H5Dclose(da);
    }
    if (ga >= 0) H5Gclose(ga);
    if (gb >= 0) H5Gclose(gb);
    if (fa >= 0) H5Fclose(fa);
    if (fb >= 0) H5Fclose(fb);
    return bad ? -1 : dmax / amax;
}

/* sends sig to every process whose parent is pid (mpiexec's ranks); returns how many */
static int signal_children(pid_t pid, int sig) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) {
        char p[300], buf[512];
        snprintf(p, sizeof p, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = 0;
        char *rp = strrchr(buf, ')'); /* "pid (comm) state ppid ..." */
        int ppid = -1;
        if (rp && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == pid && kill(atoi(e->d_name), sig) == 0) n++;
    }
    if (d) closedir(d);
    return n;
}

static const char *const rl_exact[] = {"step", "epoch", "reward", "rewards/", "valid", "frac_reward_zero_std",
                                       "completions/", "grader_errors/", "learning_rate", NULL};

/* the 1-rank run of cfg into dir/<name>_1, then W ranks into dir/<name>_W, compared */
static void test_vs_one(const char *name, const char *cfg, int W, int records, const char *const *exact,
                        const char *const *more) {
    char one[512], many[512], a[600], b[600];
    snprintf(one, sizeof one, "%s/%s_1", dir, name);
    snprintf(many, sizeof many, "%s/%s_%d", dir, name, W);
    char *err = NULL;
    int rc = access(one, F_OK) == 0 ? 0 : train_ranks(1, cfg, one, more, 0, &err);
    check(rc == 0, "%s: one process (rc %d) %s", name, rc, rc ? last_line(err) : "");
    free(err), err = NULL;
    double t = now_seconds();
    rc = train_ranks(W, cfg, many, more, 0, &err);
    check(rc == 0 && strstr(err, "ranks (mpi)"), "%s: %d ranks under %s (rc %d, %.1f s) %s", name, W, mpiexec, rc,
          now_seconds() - t, rc ? last_line(err) : "");
    free(err);
    snprintf(a, sizeof a, "%s/metrics.jsonl", one);
    snprintf(b, sizeof b, "%s/metrics.jsonl", many);
    double worst = compare_metrics(a, b, records, exact, 1e-4);
    check(worst >= 0, "%s, %d ranks: %d metric records; reward and valid metrics equal, the others within 1e-4 "
                      "(largest relative difference %.2g)", name, W, records, worst);
    snprintf(a, sizeof a, "%s/samples.jsonl", one);
    snprintf(b, sizeof b, "%s/samples.jsonl", many);
    char *sa = slurp(a), *sb = slurp(b);
    check(!strcmp(sa, sb), "%s, %d ranks: samples.jsonl equal byte for byte (%zu bytes)", name, W, strlen(sa));
    free(sa), free(sb);
    snprintf(a, sizeof a, "%s/checkpoints/step-000006.h5", one);
    snprintf(b, sizeof b, "%s/checkpoints/step-000006.h5", many);
    double d = model_rel_diff(a, b);
    check(d >= 0 && d <= 1e-4, "%s, %d ranks: final weights within 1e-4 of the largest (%.2g)", name, W, d);
}

int main(int argc, char **argv) {
    (void)argc;
    if (!getenv("OMP_WAIT_POLICY")) { /* see test_train_determinism.c */
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    double t0 = now_seconds();
    mpiexec = getenv("RFT_MPIEXEC");
    if (!mpiexec || !*mpiexec) {
        printf("rft was built without MPI (RFT_MPIEXEC unset): skipped\n");
        return 77;
    }
    /* Open MPI: allowed as root (CI), more ranks than cores */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    int rc = tt_setup("ranks");
    if (rc) return rc;
    {
        /* mpiexec itself must work here (a machine without a usable network
           stack or ssh client cannot start it): else skip, saying why */
        char *argv[] = {(char *)mpiexec, "-n", "2", "/bin/true", NULL}, op[512], ep[512];
        path_in(op, sizeof op, "probe_stdout.txt");
        path_in(ep, sizeof ep, "probe_stderr.txt");
        int prc = train_ranks_wait(spawn(argv, op, ep), NULL);
        if (prc) {
            char *e = slurp(ep);
            printf("%s -n 2 /bin/true fails here (rc %d): skipped\n%s\n", mpiexec, prc, e);
            free(e);
            rm_rf(dir);
            return 77;
        }
    }

    /* 1. GRPO, 2 and 3 ranks */
    test_vs_one("grpo", "tests/fixtures/train_grpo.yaml", 2, 7, rl_exact, NULL);
    test_vs_one("grpo", "tests/fixtures/train_grpo.yaml", 3, 7, rl_exact, NULL);
    {
        /* control: another seed moves the weights beyond the bound */
        char ctl[512], a[600], b[600];
        snprintf(ctl, sizeof ctl, "%s/grpo_seed", dir);
        const char *seed[] = {"train.seed=8", NULL};
        char *err = NULL;
        rc = train_ranks(1, "tests/fixtures/train_grpo.yaml", ctl, seed, 0, &err);
        free(err);
        snprintf(a, sizeof a, "%s/grpo_1/checkpoints/step-000006.h5", dir);
        snprintf(b, sizeof b, "%s/checkpoints/step-000006.h5", ctl);
        double d = model_rel_diff(a, b);
        check(rc == 0 && d > 1e-3, "control: another seed's final weights differ by %.2g of the largest", d);
    }
    /* gspo: the trainer's two-pass path (its ratio is the sequence's), split the same way */
    static const char *const gspo[] = {"algorithm.name=gspo", NULL};
    test_vs_one("gspo", "tests/fixtures/train_grpo.yaml", 2, 7, rl_exact, gspo);
    /* 2. SFT */
    static const char *const sft_exact[] = {"step", "epoch", "learning_rate", NULL};
    test_vs_one("sft", "tests/fixtures/train_sft.yaml", 2, 7, sft_exact, NULL);

    /* 3. resume under 2 ranks */
    {
        char a[512], b[512], ma[600], mb[600];
        snprintf(a, sizeof a, "%s/grpo_2", dir);
        snprintf(b, sizeof b, "%s/grpo_2_resumed", dir);
        const char *three[] = {"train.max_steps=3", NULL};
        char *err = NULL;
        rc = train_ranks(2, "tests/fixtures/train_grpo.yaml", b, three, 0, &err);
        free(err), err = NULL;
        rc = rc ? rc : train_ranks(2, "tests/fixtures/train_grpo.yaml", b, NULL, 1, &err);
        check(rc == 0 && strstr(err, "step 4/6"), "2 ranks: 3 steps, then --resume to 6 (rc %d) %s", rc,
              rc ? last_line(err) : "");
        free(err);
        snprintf(ma, sizeof ma, "%s/metrics.jsonl", a);
        snprintf(mb, sizeof mb, "%s/metrics.jsonl", b);
        check(same_metrics(ma, mb, 7), "2 ranks: the resumed run's metrics equal the uninterrupted run's");
        snprintf(ma, sizeof ma, "%s/checkpoints/step-000006.h5", a);
        snprintf(mb, sizeof mb, "%s/checkpoints/step-000006.h5", b);
        int n = same_checkpoint(ma, mb);
        check(n > 20, "2 ranks: resumed final checkpoint bitwise equal to the uninterrupted one (%d datasets)", n);
    }
    /* 4. bad input: exit 2, said once */
    {
        char o[512];
        snprintf(o, sizeof o, "%s/bad", dir);
        const char *bad[] = {"train.batch_size=0", NULL};
        char *err = NULL;
        rc = train_ranks(2, "tests/fixtures/train_grpo.yaml", o, bad, 0, &err);
        int said = 0;
        for (const char *q = err; (q = strstr(q, "rft train:")); q++) said++;
        check(rc == 2 && said == 1 && strstr(err, "train.batch_size"),
              "2 ranks, train.batch_size=0: exit 2, the error said once (rc %d, %d times)", rc, said);
        free(err);
        const char *nodata[] = {"data.train=/nonexistent/train.jsonl", NULL};
        rc = train_ranks(2, "tests/fixtures/train_grpo.yaml", o, nodata, 0, &err);
        said = 0;
        for (const char *q = err; (q = strstr(q, "rft train:")); q++) said++;
        check(rc == 2 && said == 1 && strstr(err, "/nonexistent/train.jsonl"),
              "2 ranks, a missing dataset: exit 2, the error said once (rc %d, %d times)", rc, said);
        free(err);
    }
    /* 5. one rank fails alone */
    {
        char o[512], m[600];
        snprintf(o, sizeof o, "%s/one_fails", dir);
        snprintf(m, sizeof m, "%s/metrics.jsonl", o);
        mkdir(o, 0755);
        mkdir(m, 0755); /* rank 0 writes metrics.jsonl: it fails, rank 1 goes on to the first collective */
        char *err = NULL;
        double t = now_seconds();
        rc = train_ranks(2, "tests/fixtures/train_grpo.yaml", o, NULL, 0, &err);
        check(rc == 1 && strstr(err, "rank 0:") && strstr(err, "metrics.jsonl"),
              "2 ranks, rank 0 cannot open metrics.jsonl: the job ends with exit 1 in %.1f s, rank 0 names the file "
              "(rc %d)", now_seconds() - t, rc);
        free(err);
    }
    /* 6. SIGTERM mid-run */
    {
        enum { STEPS = 30 };
        char a[512], b[512], ma[600], mb[600], ms[64];
        snprintf(a, sizeof a, "%s/sig_straight", dir);
        snprintf(b, sizeof b, "%s/sig_interrupted", dir);
        snprintf(ms, sizeof ms, "train.max_steps=%d", STEPS);
        const char *more[] = {ms, "train.checkpoint_interval=0", "train.eval_interval=0", NULL};
        char *err = NULL;
        snprintf(mb, sizeof mb, "%s/metrics.jsonl", b);
        pid_t pid = train_ranks_start(2, "tests/fixtures/train_grpo.yaml", b, more, 0);
        double ts = now_seconds();
        while (max_step_logged(mb) < 2 && now_seconds() - ts < 30) usleep(2000);
        int n_sig = signal_children(pid, SIGTERM); /* the ranks, as a terminal's Ctrl-C reaches them */
        rc = train_ranks_wait(pid, &err);
        int stopped = max_step_logged(mb);
        check(n_sig == 2 && rc == 1 && strstr(err, "interrupted after step") && strstr(err, "--resume") && stopped >= 2 &&
                  stopped < STEPS,
              "SIGTERM to both ranks after step 2: exit 1, stopped at step %d, rank 0 says how to resume (rc %d, %d "
              "signalled)", stopped, rc, n_sig);
        free(err);
        char ck[700];
        snprintf(ck, sizeof ck, "%s/checkpoints/step-%06d.h5", b, stopped);
        check(model_finite(ck) > 20000, "the interrupted 2-rank run wrote %s", ck);
        rc = train_ranks(2, "tests/fixtures/train_grpo.yaml", b, more, 1, &err);
        check(rc == 0 && max_step_logged(mb) == STEPS, "2 ranks: --resume runs to step %d (rc %d) %s", STEPS, rc,
              rc ? last_line(err) : "");
        free(err);
        rc = train_ranks(2, "tests/fixtures/train_grpo.yaml", a, more, 0, &err);
        free(err);
        snprintf(ma, sizeof ma, "%s/metrics.jsonl", a);
        check(rc == 0 && same_metrics(ma, mb, STEPS + 1),
              "2 ranks: interrupted + resumed metrics equal the uninterrupted run's (%d records)", STEPS + 1);
        snprintf(ma, sizeof ma, "%s/checkpoints/step-%06d.h5", a, STEPS);
        snprintf(mb, sizeof mb, "%s/checkpoints/step-%06d.h5", b, STEPS);
        int n = same_checkpoint(ma, mb);
        check(n > 20, "2 ranks: interrupted + resumed final checkpoint bitwise equal (%d datasets)", n);
    }
    /* 7. ranks resuming from different checkpoints */
    {
        char o[512], c2[700], c3[700], model[600], out[800];
        snprintf(o, sizeof o, "%s/mismatch", dir);
        snprintf(c2, sizeof c2, "%s/grpo_2/checkpoints/step-000002.h5", dir);
        snprintf(c3, sizeof c3, "%s/grpo_2/checkpoints/step-000003.h5", dir);
        snprintf(model, sizeof model, "model.path=%s", model_path);
        snprintf(out, sizeof out, "train.out_dir=%s", o);
        char *argv[] = {(char *)mpiexec, "-n", "1", (char *)rft, "train", "tests/fixtures/train_grpo.yaml", "--set", model,
                        "--set", out, "--resume", c2, ":", "-n", "1", (char *)rft, "train",
                        "tests/fixtures/train_grpo.yaml", "--set", model, "--set", out, "--resume", c3, NULL};
        char op[512], ep[512];
        path_in(op, sizeof op, "train_stdout.txt");
        path_in(ep, sizeof ep, "train_stderr.txt");
        char *err = NULL;
        rc = train_ranks_wait(spawn(argv, op, ep), &err);
        check(rc == 1 && strstr(err, "rank 1 holds other weights") && strstr(err, "step 3 vs 2"),
              "ranks resuming from steps 2 and 3: exit 1 naming rank 1 and the steps (rc %d)", rc);
        free(err);
        char *argv2[] = {(char *)mpiexec, "-n", "1", (char *)rft, "train", "tests/fixtures/train_grpo.yaml", "--set",
                         model, "--set", out, ":", "-n", "1", (char *)rft, "train", "tests/fixtures/train_grpo.yaml",
                         "--set", model, "--set", out, "--set", "sampling.group_size=2", NULL};
        rm_rf(o);
        rc = train_ranks_wait(spawn(argv2, op, ep), &err);
        check(rc == 1 && strstr(err, "rank 1 runs another configuration"),
              "ranks given group sizes 4 and 2: exit 1 naming rank 1 (rc %d)", rc);
        free(err);
    }
    /* 8. rft eval under ranks */
    {
        char ck[600], op[512], ep[512];
        snprintf(ck, sizeof ck, "%s/grpo_1/checkpoints/step-000006.h5", dir);
        path_in(op, sizeof op, "eval_stdout.txt");
        path_in(ep, sizeof ep, "eval_stderr.txt");
        char *one = NULL;
        for (int W = 1; W <= 3; W++) {
            char nw[8];
            snprintf(nw, sizeof nw, "%d", W);
            char *argv[] = {(char *)mpiexec, "-n", nw, (char *)rft, "eval", "tests/fixtures/train_grpo.yaml", "--model", ck,
                            "--samples", "3", "--json", NULL};
            rc = wait_status(spawn(W > 1 ? argv : argv + 3, op, ep));
            char *out = slurp(op);
            json_t *o = json_loads(out, 0, NULL);
            int lines = 0;
            for (const char *q = out; (q = strchr(q, '\n')); q++) lines++;
            if (o) json_object_del(o, "seconds");
            char *txt = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : strdup("(no JSON)");
            json_decref(o);
            free(out);
            if (W == 1) {
                check(rc == 0 && strstr(txt, "\"rows\""), "rft eval, one process (rc %d): %.120s", rc, txt);
                one = txt;
                continue;
            }
            check(rc == 0 && lines == 1 && !strcmp(txt, one), "rft eval under %d ranks: the same JSON, printed once "
                  "(rc %d, %d lines)", W, rc, lines);
            free(txt);
        }
        free(one);
    }
    return tt_finish(t0);
}
