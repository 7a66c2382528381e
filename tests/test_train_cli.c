/* tests/test_train_cli.c: `rft train`, `rft eval` and `rft sample` end to end
 * through $RFT_BIN on a tiny model made with `rft init` (d_model 32, 2
 * layers, the quickstart's 284-token byte-level BPE) and the small configs
 * and datasets in tests/fixtures/train_*:
 *   1. resume is bitwise: 3 steps + `--resume` to 6 (crossing an epoch) gives
 *      the metrics.jsonl records (all keys but timing keys and tokens_per_s) and
 *      every /model, /optimizer and /trainer dataset of the final checkpoint
 *      (config_text aside) of an uninterrupted 6-step run; for grpo with
 *      ppo_epochs 2, mini_batches 2, kl_beta > 0, and for sft. The split uses
 *      --set train.max_steps=3; with a constant learning rate that is the
 *      same trajectory (a decaying schedule depends on max_steps: there the
 *      equivalent split is an interrupted run, test 4);
 *   2. bad input exits 2 with one stderr line naming file:line and key
 *      (config keys, types, ranges, sections, --set, model file, dataset
 *      rows, grader type), and a second run into an out_dir that holds
 *      checkpoints refuses without touching them;
 *   3. divergence (learning_rate 10, no clipping): non-finite steps are
 *      skipped and logged, the run stops after train.max_bad_steps with exit
 *      1 and a message, and every checkpoint left loads with finite weights;
 *   4. SIGINT mid-run (cosine schedule with warm-up): exit 1, a checkpoint,
 *      and `--resume` finishes with the metrics and weights of a run that was
 *      never interrupted; SIGTERM the same; SIGKILL (a crash, checkpoint
 *      every step): `--resume` from the newest complete checkpoint replays
 *      the steps logged after it and ends bitwise equal as well;
 *   5. rft eval --json (documented keys; equals the valid_reward_mean the
 *      trainer logged for the same checkpoint) and rft sample --json (token
 *      ids, finish reasons; an empty prompt exits 2);
 *   6. the DESIGN.md metric names in an RL run's metrics.jsonl, and
 *      samples.jsonl records with prompt, completion, reward, sub_rewards;
 *   7. grader failures: a plugin (tests/faults) that crashes on every sample
 *      costs grades, not the run (grader_errors/<g>, on_error zero); errors
 *      above reward.max_error_rate stop the run with exit 1 naming it.
 * Exit 1 on any failure, 77 when $RFT_BIN is missing. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static int n_fail, n_check;
static const char *rft;
static char dir[256], model_path[512];

static void check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int cond, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    n_check++;
    if (!cond) n_fail++;
    printf("%s ", cond ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

/* ---- processes and files ---- */

static pid_t spawn(char *const *argv, const char *out, const char *errp) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0) _exit(126);
        dup2(o, 1), dup2(e, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int wait_status(pid_t pid) {
    int st = 0;
    if (waitpid(pid, &st, 0) < 0) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path) {
    size_t n;
    char e[256];
    char *s = read_file(path, &n, e, sizeof e);
    return s ? s : strdup("");
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void path_in(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

/* Runs rft with up to 30 arguments; stdout/stderr into *out / *err (malloc'ed, may be NULL). */
static int run_rft(char **out, char **err, const char *a0, ...) {
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)rft;
    va_list ap;
    va_start(ap, a0);
    for (const char *a = a0; a && n < 31; a = va_arg(ap, const char *)) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    char op[512], ep[512];
    path_in(op, sizeof op, "stdout.txt");
    path_in(ep, sizeof ep, "stderr.txt");
    int rc = wait_status(spawn(argv, op, ep));
    if (out) *out = slurp(op);
    if (err) *err = slurp(ep);
    return rc;
}

/* the text is exactly one line, ending in a newline */
static int one_line(const char *s) {
    const char *nl = strchr(s, '\n');
    return nl && nl > s && nl[1] == 0;
}

static const char *last_line(char *s) {
    size_t n = strlen(s);
    while (n && s[n - 1] == '\n') s[--n] = 0;
    char *p = strrchr(s, '\n');
    return p ? p + 1 : s;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

/* "--set" "model.path=..." etc. are built into these buffers */
typedef struct sets {
    char model[600], out[600], extra[4][200];
} sets;

/* rft train CFG with model.path, train.out_dir and up to 4 more --set's (NULL = none); resume: NULL (fresh) or "" */
static int train(const char *cfg, const char *out_dir, const char *const *more, const char *resume, char **err) {
    sets s;
    snprintf(s.model, sizeof s.model, "model.path=%s", model_path);
    snprintf(s.out, sizeof s.out, "train.out_dir=%s", out_dir);
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)rft;
    argv[n++] = "train";
    argv[n++] = (char *)cfg;
    argv[n++] = "--set", argv[n++] = s.model;
    argv[n++] = "--set", argv[n++] = s.out;
    for (int i = 0; more && more[i] && i < 4; i++) argv[n++] = "--set", argv[n++] = (char *)more[i];
    if (resume) argv[n++] = "--resume";
    argv[n] = NULL;
    char op[512], ep[512];
    path_in(op, sizeof op, "train_stdout.txt");
    path_in(ep, sizeof ep, "train_stderr.txt");
    int rc = wait_status(spawn(argv, op, ep));
    if (err) *err = slurp(ep);
    return rc;
}

/* ---- metrics.jsonl ---- */

/* the records of a JSONL file, each with the timing keys removed, as sorted compact text; returns count */
static int load_records(const char *path, char **recs, int cap) {
    char *text = slurp(path);
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        if (!o) {
            recs[n++] = strdup("<invalid JSON>");
            continue;
        }
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(o, tmp, k, v) if (!strncmp(k, "timing/", 7) || !strcmp(k, "tokens_per_s"))
            json_object_del(o, k);
        recs[n++] = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(o);
    }
    free(text);
    return n;
}

static int same_metrics(const char *a, const char *b, int expect_records) {
    static char *ra[1024], *rb[1024];
    int na = load_records(a, ra, 1024), nb = load_records(b, rb, 1024);
    int ok = na == nb && na == expect_records;
    if (!ok) printf("     %s: %d records, %s: %d, expected %d\n", a, na, b, nb, expect_records);
    for (int i = 0; ok && i < na; i++)
        if (strcmp(ra[i], rb[i])) {
            printf("     record %d differs:\n       %s\n       %s\n", i, ra[i], rb[i]);
            ok = 0;
        }
    for (int i = 0; i < na; i++) free(ra[i]);
    for (int i = 0; i < nb; i++) free(rb[i]);
    return ok;
}

/* ---- checkpoints: every dataset bitwise ---- */

typedef struct h5cmp {
    hid_t other;
    int n, bad;
    const char *skip;
    int quiet;
} h5cmp;

static int read_raw(hid_t d, unsigned char **buf, size_t *len) {
    hid_t t = H5Dget_type(d), nt = H5Tget_native_type(t, H5T_DIR_ASCEND), sp = H5Dget_space(d);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    size_t ts = H5Tget_size(nt);
    int vlen = H5Tis_variable_str(nt) > 0 || H5Tget_class(nt) == H5T_VLEN;
    *len = (size_t)np * ts;
    *buf = calloc(*len + 1, 1);
    int rc = vlen || np < 0 || H5Dread(d, nt, H5S_ALL, H5S_ALL, H5P_DEFAULT, *buf) < 0 ? -1 : 0;
    H5Sclose(sp), H5Tclose(nt), H5Tclose(t);
    return rc;
}

static herr_t cmp_cb(hid_t obj, const char *name, const H5O_info_t *info, void *op) {
    h5cmp *c = op;
    if (info->type != H5O_TYPE_DATASET || (c->skip && strstr(name, c->skip))) return 0;
    c->n++;
    hid_t a = H5Dopen2(obj, name, H5P_DEFAULT), b;
    H5E_BEGIN_TRY { b = H5Dopen2(c->other, name, H5P_DEFAULT); }
    H5E_END_TRY;
    unsigned char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int ok = a >= 0 && b >= 0 && !read_raw(a, &x, &nx) && !read_raw(b, &y, &ny) && nx == ny && !memcmp(x, y, nx);
    if (!ok) {
        if (c->bad < 5 && !c->quiet) printf("     dataset %s differs (or is missing / unreadable)\n", name);
        c->bad++;
    }
    free(x), free(y);
    if (a >= 0) H5Dclose(a);
    if (b >= 0) H5Dclose(b);
    return 0;
}

/* every dataset of a (config_text aside) equals b's bitwise, and b has no others; returns datasets compared or -1 */
static int same_checkpoint_q(const char *pa, const char *pb, int quiet) {
    hid_t a, b;
    H5E_BEGIN_TRY {
        a = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT);
        b = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    }
    H5E_END_TRY;
    if (a < 0 || b < 0) {
        printf("     cannot open %s or %s\n", pa, pb);
        if (a >= 0) H5Fclose(a);
        if (b >= 0) H5Fclose(b);
        return -1;
    }
    h5cmp c1 = {.other = b, .skip = "config_text", .quiet = quiet}, c2 = {.other = a, .skip = "config_text", .quiet = quiet};
    H5Ovisit2(a, H5_INDEX_NAME, H5_ITER_NATIVE, cmp_cb, &c1, H5O_INFO_BASIC);
    H5Ovisit2(b, H5_INDEX_NAME, H5_ITER_NATIVE, cmp_cb, &c2, H5O_INFO_BASIC);
    H5Fclose(a), H5Fclose(b);
    return c1.bad || c2.bad || c1.n != c2.n ? -1 : c1.n;
}
static int same_checkpoint(const char *pa, const char *pb) { return same_checkpoint_q(pa, pb, 0); }

/* all float datasets under /model are finite; returns the count of values read or -1 */
static long model_finite(const char *path) {
    hid_t f;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); }
    H5E_END_TRY;
    if (f < 0) return -1;
    hid_t g = H5Gopen2(f, "model", H5P_DEFAULT);
    H5G_info_t gi;
    long total = 0;
    if (g < 0 || H5Gget_info(g, &gi) < 0) total = -1;
    for (hsize_t i = 0; total >= 0 && i < gi.nlinks; i++) {
        char name[256];
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
        hid_t d = H5Dopen2(g, name, H5P_DEFAULT), sp = H5Dget_space(d);
        hssize_t np = H5Sget_simple_extent_npoints(sp);
        float *v = malloc((size_t)np * sizeof(float));
        if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) total = -1;
        for (hssize_t j = 0; total >= 0 && j < np; j++)
            if (!isfinite(v[j])) total = -1;
        if (total >= 0) total += np;
        free(v);
        H5Sclose(sp), H5Dclose(d);
    }
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    return total;
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* ---- utf8_sanitize (the JSON writers' guard against partial characters) ---- */

static void test_utf8(void) {
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"abc", "abc"},
        {"\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9"},                       /* é t é */
        {"a\xc3", "a\xef\xbf\xbd"},                                     /* cut inside a character */
        {"\xe2\x82", "\xef\xbf\xbd\xef\xbf\xbd"},                         /* two bytes of a 3-byte character */
        {"\xf0\x9f\x98\x80!", "\xf0\x9f\x98\x80!"},                       /* U+1F600 */
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                         /* overlong '/' */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},       /* a surrogate */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"\xff", "\xef\xbf\xbd"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n;
        char *o = utf8_sanitize(cases[i].in, strlen(cases[i].in), &n);
        if (!o || n != strlen(cases[i].out) || strcmp(o, cases[i].out)) {
            printf("     utf8_sanitize case %zu: got '%s'\n", i, o ? o : "(null)");
            bad++;
        }
        free(o);
    }
    check(!bad, "utf8_sanitize: valid text unchanged, partial/overlong/surrogate/out-of-range bytes -> U+FFFD");
}

/* ---- 1. resume ---- */

static void test_resume(const char *name, const char *cfg) {
    char a[512], b[512], ma[600], mb[600], ca[600], cb[600];
    snprintf(a, sizeof a, "%s/%s_straight", dir, name);
    snprintf(b, sizeof b, "%s/%s_resumed", dir, name);
    char *err = NULL;
    int rc = train(cfg, a, NULL, NULL, &err);
    check(rc == 0, "%s: 6 steps uninterrupted (rc %d) %s", name, rc, rc ? last_line(err) : "");
    free(err);
    const char *three[] = {"train.max_steps=3", NULL};
    rc = train(cfg, b, three, NULL, &err);
    check(rc == 0, "%s: first 3 steps (rc %d) %s", name, rc, rc ? last_line(err) : "");
    free(err);
    rc = train(cfg, b, NULL, "", &err);
    check(rc == 0 && strstr(err, "step 4/6") && !strstr(err, "step 3/6"),
          "%s: --resume continues at step 4 of 6 (rc %d) %s", name, rc, rc ? last_line(err) : "");
    free(err);
    snprintf(ma, sizeof ma, "%s/metrics.jsonl", a);
    snprintf(mb, sizeof mb, "%s/metrics.jsonl", b);
    check(same_metrics(ma, mb, 7), "%s: metrics.jsonl of the resumed run equals the uninterrupted one (7 records)", name);
    snprintf(ca, sizeof ca, "%s/checkpoints/step-000006.h5", a);
    snprintf(cb, sizeof cb, "%s/checkpoints/step-000006.h5", b);
    int n = same_checkpoint(ca, cb);
    check(n > 20, "%s: final checkpoints bitwise equal: model, optimizer moments, trainer state (%d datasets)", name, n);
    /* intermediate checkpoint too: step 5 exists in both and is equal */
    snprintf(ca, sizeof ca, "%s/checkpoints/step-000005.h5", a);
    snprintf(cb, sizeof cb, "%s/checkpoints/step-000005.h5", b);
    n = same_checkpoint(ca, cb);
    check(n > 20, "%s: step-5 checkpoints bitwise equal (%d datasets)", name, n);
    /* control: the comparison sees a difference between step 5 and step 6 */
    snprintf(cb, sizeof cb, "%s/checkpoints/step-000006.h5", b);
    check(same_checkpoint_q(ca, cb, 1) < 0, "%s: control: step 5 and step 6 checkpoints differ", name);
}

/* ---- 2. bad input ---- */

static char *base_grpo;

/* base config with `from` replaced by `to` written to dir/name; returns the 1-based line of `marker` in `to` */
static int variant(const char *name, const char *from, const char *to, const char *marker, char *path, size_t cap) {
    const char *p = strstr(base_grpo, from);
    if (!p) {
        printf("FAIL internal: '%s' not in the base config\n", from);
        exit(1);
    }
    size_t n = strlen(base_grpo) + strlen(to) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%.*s%s%s", (int)(p - base_grpo), base_grpo, to, p + strlen(from));
    path_in(path, cap, name);
    write_text(path, s);
    int line = 1;
    for (const char *q = base_grpo; q < p; q++) line += *q == '\n';
    const char *m = strstr(to, marker);
    for (const char *q = to; m && q < m; q++) line += *q == '\n';
    free(s);
    return line;
}

/* expects exit 2, one stderr line containing every non-NULL needle */
static void expect_bad(const char *what, int rc, const char *err, const char *n1, const char *n2, const char *n3) {
    int ok = rc == 2 && one_line(err) && (!n1 || strstr(err, n1)) && (!n2 || strstr(err, n2)) && (!n3 || strstr(err, n3));
    char e[600];
    snprintf(e, sizeof e, "%s", err);
    e[strcspn(e, "\n")] = 0;
    check(ok, "%s -> exit 2, one line (rc %d): %s", what, rc, e);
}

static void bad_config(const char *what, const char *from, const char *to, const char *marker, const char *key,
                       const char *why) {
    char path[512], loc[600];
    int line = variant("bad.yaml", from, to, marker, path, sizeof path);
    snprintf(loc, sizeof loc, "%s:%d:", path, line);
    char *err;
    char out[600];
    snprintf(out, sizeof out, "%s/bad_out", dir);
    int rc = train(path, out, NULL, NULL, &err);
    expect_bad(what, rc, err, loc, key, why);
    free(err);
}

static void bad_set(const char *what, const char *set, const char *n1, const char *n2) {
    char out[600];
    snprintf(out, sizeof out, "%s/bad_out", dir);
    const char *more[] = {set, NULL};
    char *err;
    int rc = train("tests/fixtures/train_grpo.yaml", out, more, NULL, &err);
    expect_bad(what, rc, err, n1, n2, NULL);
    free(err);
}

/* a train set made of the fixture's first rows plus `row` at line 3 */
static void bad_row(const char *what, const char *row, const char *field, const char *extra_set) {
    char data[512], set[600], loc[600], out[600];
    path_in(data, sizeof data, "bad.jsonl");
    char text[4096];
    snprintf(text, sizeof text,
             "{\"messages\": [{\"role\": \"user\", \"content\": \"1+2\"}], \"answer\": \"3\"}\n"
             "{\"messages\": [{\"role\": \"user\", \"content\": \"4+5\"}], \"answer\": \"9\"}\n%s\n"
             "{\"messages\": [{\"role\": \"user\", \"content\": \"7-1\"}], \"answer\": \"6\"}\n",
             row);
    write_text(data, text);
    snprintf(set, sizeof set, "data.train=%s", data);
    snprintf(loc, sizeof loc, "%s:3:", data);
    snprintf(out, sizeof out, "%s/bad_out", dir);
    const char *more[] = {set, extra_set, NULL};
    char *err;
    int rc = train("tests/fixtures/train_grpo.yaml", out, more, NULL, &err);
    expect_bad(what, rc, err, loc, field, NULL);
    free(err);
}

static void test_bad_input(void) {
    base_grpo = slurp("tests/fixtures/train_grpo.yaml");
    bad_config("unknown key", "  batch_size: 2\n", "  batch_sise: 2\n", "batch", "train.batch_sise", "unknown key");
    bad_config("wrong type", "  batch_size: 2\n", "  batch_size: two\n", "batch", "train.batch_size", "integer");
    bad_config("wrong type (bool)", "  ppo_epochs: 2\n", "  ppo_epochs: 2\n  mask_truncated: maybe\n", "mask",
               "algorithm.mask_truncated", "maybe");
    bad_config("out-of-range value", "  learning_rate: 1e-2\n", "  learning_rate: 1e6\n", "learn", "train.learning_rate",
               "outside");
    bad_config("out-of-range group_size", "  group_size: 4\n", "  group_size: 0\n", "group", "sampling.group_size",
               "outside");
    bad_config("bad enum", "  name: grpo\n", "  name: ppo\n", "name", "algorithm.name", "ppo");
    bad_config("unknown section", "sampling:\n", "sampler:\n  x: 1\nsampling:\n", "sampler", "sampler",
               "unknown section");
    bad_config("section not a mapping", "sampling:\n  group_size: 4\n", "sampling: 4\nsampling2:\n  group_size: 4\n",
               "sampling", "sampling", "mapping");
    bad_config("bad string choice", "  lr_schedule: constant\n", "  lr_schedule: cosinee\n", "lr_", "train.lr_schedule",
               "cosinee");
    bad_config("unknown grader type", "    type: regex\n", "    type: regexx\n", "type", "graders.format.type", "regexx");
    {
        /* libyaml reports an unclosed flow sequence where it notices it (the next line): file and "YAML" only */
        char path[512], out[600];
        variant("bad.yaml", "  batch_size: 2\n", "  batch_size: [2\n", "batch", path, sizeof path);
        snprintf(out, sizeof out, "%s/bad_out", dir);
        char *err;
        int rc = train(path, out, NULL, NULL, &err);
        expect_bad("YAML syntax error", rc, err, path, "YAML", NULL);
        free(err);
    }
    {
        /* a built-in grader's create() failure: names the grader, the key and the plugin (no file:line: the
           check is the plugin's) */
        char path[512], out[600];
        variant("bad.yaml", "    input: \"{{sample.output_text}}\"\n    pattern:", "    pattern:", "pattern", path,
                sizeof path);
        snprintf(out, sizeof out, "%s/bad_out", dir);
        char *err;
        int rc = train(path, out, NULL, NULL, &err);
        expect_bad("grader without input", rc, err, "format", "input", NULL);
        free(err);
    }

    bad_set("--set without =", "train.batch_size", "--set", "train.batch_size");
    bad_set("--set unknown key", "train.nope=3", "--set", "train.nope");
    bad_set("--set wrong type", "train.batch_size=lots", "train.batch_size", "lots");
    bad_set("--set out of range", "train.max_bad_steps=0", "train.max_bad_steps", "outside");
    bad_set("--set bad string choice", "model.chat_template=chatlm", "model.chat_template", "chatlm");
    bad_set("--set unknown section", "trainer.seed=1", "--set", "trainer.seed");

    /* missing files */
    {
        char out[600], err_model[600];
        snprintf(out, sizeof out, "%s/bad_out", dir);
        snprintf(err_model, sizeof err_model, "model.path=%s/no_such_model.h5", dir);
        const char *more[] = {err_model, NULL};
        char *err;
        /* train() puts model.path first; the later --set wins */
        int rc = train("tests/fixtures/train_grpo.yaml", out, more, NULL, &err);
        expect_bad("missing model file", rc, err, "no_such_model.h5", NULL, NULL);
        free(err);
        const char *more2[] = {"data.train=tests/fixtures/no_such_data.jsonl", NULL};
        rc = train("tests/fixtures/train_grpo.yaml", out, more2, NULL, &err);
        expect_bad("missing train file", rc, err, "no_such_data.jsonl", NULL, NULL);
        free(err);
        char *o;
        rc = run_rft(&o, &err, "train", "tests/fixtures/no_such_config.yaml", NULL);
        expect_bad("missing config file", rc, err, "no_such_config.yaml", NULL, NULL);
        free(o), free(err);
    }

    /* dataset rows (line 3 of bad.jsonl) */
    bad_row("invalid JSON row", "{\"messages\": [", "invalid JSON", NULL);
    bad_row("row without messages", "{\"answer\": \"3\"}", "messages", NULL);
    bad_row("last turn not from the user",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"1\"}, {\"role\": \"assistant\", \"content\": \"2\"}], "
            "\"answer\": \"2\"}",
            "user", NULL);
    bad_row("unknown role", "{\"messages\": [{\"role\": \"robot\", \"content\": \"1\"}], \"answer\": \"2\"}", "robot",
            NULL);
    bad_row("prompt too long",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"1+2+3+4+5+6+7+8+9+10+11+12+13+14+15+16+17+18+19+20+21+"
            "22+23+24+25+26+27+28+29+30\"}], \"answer\": \"465\"}",
            "max_prompt_tokens", NULL);
    bad_row("row lacking a field a grader reads ({{item.answer}})",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"2+2\"}], \"solution\": \"4\"}", "answer", NULL);
    bad_row("content not a string", "{\"messages\": [{\"role\": \"user\", \"content\": 5}], \"answer\": \"5\"}",
            "content", NULL);

    /* nothing already written is lost: a second fresh run into a used out_dir */
    {
        char out[600], ck[700], met[700];
        snprintf(out, sizeof out, "%s/used_out", dir);
        const char *two[] = {"train.max_steps=2", NULL};
        char *err;
        int rc = train("tests/fixtures/train_grpo.yaml", out, two, NULL, &err);
        check(rc == 0, "a 2-step run to fill an out_dir (rc %d)", rc);
        free(err);
        snprintf(ck, sizeof ck, "%s/checkpoints/step-000002.h5", out);
        snprintf(met, sizeof met, "%s/metrics.jsonl", out);
        char *ck_before = NULL, *met_before = slurp(met);
        size_t ck_len = 0;
        char e2[256];
        ck_before = read_file(ck, &ck_len, e2, sizeof e2);
        rc = train("tests/fixtures/train_grpo.yaml", out, two, NULL, &err);
        expect_bad("fresh run into an out_dir with checkpoints", rc, err, "--resume", out, NULL);
        free(err);
        size_t ck_len2 = 0;
        char *ck_after = read_file(ck, &ck_len2, e2, sizeof e2), *met_after = slurp(met);
        check(ck_before && ck_after && ck_len == ck_len2 && !memcmp(ck_before, ck_after, ck_len) &&
                  !strcmp(met_before, met_after) && strlen(met_after) > 0,
              "the refused run left the checkpoint and metrics.jsonl as they were");
        free(ck_before), free(ck_after), free(met_before), free(met_after);
        /* --resume from a model that is not a training checkpoint (no optimizer / trainer state) */
        char rs[700];
        snprintf(rs, sizeof rs, "%s/resumed_from_model", dir);
        sets s2;
        snprintf(s2.model, sizeof s2.model, "model.path=%s", model_path);
        snprintf(s2.out, sizeof s2.out, "train.out_dir=%s", rs);
        rc = run_rft(NULL, &err, "train", "tests/fixtures/train_grpo.yaml", "--set", s2.model, "--set", s2.out, "--resume",
                     model_path, NULL);
        expect_bad("--resume from a model without optimizer/trainer state", rc, err, model_path, "training checkpoint", NULL);
        free(err);
        /* --resume into an out_dir without checkpoints */
        char fresh[700];
        snprintf(fresh, sizeof fresh, "%s/fresh_out", dir);
        rc = train("tests/fixtures/train_grpo.yaml", fresh, NULL, "", &err);
        expect_bad("--resume with no checkpoint in out_dir", rc, err, "--resume", fresh, NULL);
        free(err);
    }
    free(base_grpo);
}

/* ---- 3. divergence ---- */

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
    for (const char *p = err; (p = strstr(p, "update skipped")); p++) skipped_lines++;
    check(skipped_lines == 3, "3 (train.max_bad_steps) 'update skipped' lines on stderr (%d)", skipped_lines);
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
        n_skip += sk;
        tail_skips = sk ? tail_skips + 1 : 0;
        last_step = (int)json_integer_value(json_object_get(o, "step"));
        json_decref(o);
    }
    free(text);
    check(n_skip >= 3 && tail_skips == 3 && last_step < 20,
          "metrics.jsonl: %d skipped records, the last 3 in a row, stopped at step %d", n_skip, last_step);
    check(!missing, "diverging run: every step record keeps reward, loss, kl, entropy, grad_norm, clip_ratio (null when "
                    "not finite; %d missing)", missing);
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

/* ---- grader failures during training ---- */

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

/* ---- 4. SIGINT ---- */

#define SIG_STEPS 120

static int max_step_logged(const char *met) {
    char *text = slurp(met);
    int best = -1;
    for (char *p = text; (p = strstr(p, "\"step\":")); p += 7) {
        int s = atoi(p + 7);
        if (s > best) best = s;
    }
    free(text);
    return best;
}

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
    pid = spawn(argv, op, ep);
    t0 = now_seconds();
    while (max_step_logged(mt) < 1 && now_seconds() - t0 < 20) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGTERM);
    rc = wait_status(pid);
    err = slurp(ep);
    ll = last_line(err);
    stopped = max_step_logged(mt);
    snprintf(cb, sizeof cb, "%s/checkpoints/step-%06d.h5", t, stopped);
    check(rc == 1 && strstr(ll, "interrupted") && stopped >= 1 && stopped < SIG_STEPS && file_exists(cb),
          "SIGTERM: exit 1 and a checkpoint at step %d (rc %d): %s", stopped, rc, ll);
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
    char cmd[900];
    snprintf(cmd, sizeof cmd, "ls %s/checkpoints | grep -q '\\.tmp'", k);
    if (system(cmd) == 0)
        printf("note: the killed run's temporary checkpoint file is still in %s/checkpoints (never cleaned up)\n", k);
}

/* ---- 5. eval and sample ---- */

static void test_eval_sample(void) {
    /* the grpo resume test's straight run left best.h5 and its valid_reward_mean in metrics.jsonl */
    char best[600], met[600];
    snprintf(best, sizeof best, "%s/grpo_straight/best.h5", dir);
    snprintf(met, sizeof met, "%s/grpo_straight/metrics.jsonl", dir);
    char *text = slurp(met);
    double best_logged = -INFINITY;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *v = json_object_get(o, "valid_reward_mean");
        if (v && json_real_value(v) > best_logged) best_logged = json_real_value(v);
        json_decref(o);
    }
    free(text);
    char *out, *err;
    char mset[600];
    snprintf(mset, sizeof mset, "model.path=%s", model_path);
    int rc = run_rft(&out, &err, "eval", "tests/fixtures/train_grpo.yaml", "--model", best, "--json", "--set", mset, NULL);
    json_t *o = json_loads(out, 0, NULL);
    const char *keys[] = {"model", "rows", "samples_per_row", "reward_mean", "masked", "pass@1", "mean_length", "graders",
                          "seconds"};
    int have = 0;
    for (int i = 0; i < 9; i++) have += json_object_get(o, keys[i]) != NULL;
    check(rc == 0 && o && have == 9, "rft eval --json: exit 0, keys model rows samples_per_row reward_mean masked "
                                     "pass@1 mean_length graders seconds (%d of 9; rc %d) %s",
          have, rc, rc ? err : "");
    double rm = json_real_value(json_object_get(o, "reward_mean"));
    check(json_integer_value(json_object_get(o, "rows")) == 4 && fabs(rm - best_logged) <= 1e-8 * (1 + fabs(rm)),
          "rft eval of best.h5: reward_mean %.9g equals the best valid_reward_mean the trainer logged (%.9g)", rm,
          best_logged);
    json_t *g = json_object_get(o, "graders");
    double sum = 0;
    int ng = 0;
    const char *gn[] = {"correct", "format", "close"};
    const double gw[] = {1.0, 0.1, 1.0};
    for (int i = 0; i < 3; i++) {
        json_t *x = json_object_get(g, gn[i]);
        if (x && json_object_get(x, "mean") && json_object_get(x, "errors") && json_object_get(x, "abstained"))
            sum += gw[i] * json_real_value(json_object_get(x, "mean")), ng++;
    }
    check(ng == 3 && fabs(sum - rm) < 1e-12, "per-grader means (mean, errors, abstained) combine to reward_mean (%.9g vs %.9g)",
          sum, rm);
    json_decref(o);
    free(out), free(err);

    rc = run_rft(&out, &err, "eval", "tests/fixtures/train_grpo.yaml", "--json", "--samples", "3", "--n", "2", "--set",
                 mset, NULL);
    o = json_loads(out, 0, NULL);
    check(rc == 0 && json_integer_value(json_object_get(o, "rows")) == 2 &&
              json_integer_value(json_object_get(o, "samples_per_row")) == 3 && json_object_get(o, "pass@3"),
          "rft eval --samples 3 --n 2: rows 2, samples_per_row 3, pass@3 (rc %d) %s", rc, rc ? err : "");
    json_decref(o);
    free(out), free(err);

    /* --compare: one JSON line per model, in order */
    rc = run_rft(&out, &err, "eval", "tests/fixtures/train_grpo.yaml", "--json", "--model", model_path, "--compare", best,
                 "--set", mset, NULL);
    {
        char *nl = strchr(out, '\n');
        json_t *x = nl ? json_loadb(out, nl - out, 0, NULL) : NULL, *y = nl ? json_loads(nl + 1, 0, NULL) : NULL;
        double ry = json_real_value(json_object_get(y, "reward_mean"));
        check(rc == 0 && x && y && !strcmp(json_string_value(json_object_get(x, "model")), model_path) &&
                  !strcmp(json_string_value(json_object_get(y, "model")), best) && fabs(ry - best_logged) <= 1e-8 * (1 + fabs(ry)),
              "rft eval --compare --json: two records (base, tuned), the tuned one equal to the logged best (rc %d) %s", rc,
              rc ? err : "");
        json_decref(x), json_decref(y);
    }
    free(out), free(err);

    rc = run_rft(&out, &err, "eval", "tests/fixtures/train_grpo.yaml", "--json", "--model", "/nonexistent/m.h5", "--set",
                 mset, NULL);
    expect_bad("rft eval with a missing model", rc, err, "/nonexistent/m.h5", NULL, NULL);
    free(out), free(err);

    /* sample */
    rc = run_rft(&out, &err, "sample", "--model", model_path, "--prompt", "12+30", "--n", "3", "--max-new-tokens", "6",
                 "--json", "--seed", "5", "--threads", "1", NULL);
    int lines = 0, good = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        json_t *x = json_loads(line, 0, NULL);
        json_t *t = json_object_get(x, "tokens");
        const char *fr = json_string_value(json_object_get(x, "finish_reason"));
        size_t nt = json_array_size(t);
        int ok = x && json_is_array(t) && nt >= 1 && nt <= 6 && fr && json_is_string(json_object_get(x, "text")) &&
                 json_array_size(json_object_get(x, "logprobs")) == nt &&
                 (!strcmp(fr, "length") ? nt == 6 : !strcmp(fr, "stop"));
        for (size_t i = 0; ok && i < nt; i++) {
            json_int_t id = json_integer_value(json_array_get(t, i));
            ok = json_is_integer(json_array_get(t, i)) && id >= 0 && id < 284;
        }
        good += ok;
        json_decref(x);
    }
    check(rc == 0 && lines == 3 && good == 3,
          "rft sample --json --n 3: 3 records with token ids in [0, 284), logprobs, text, finish_reason (%d lines, %d "
          "good, rc %d) %s",
          lines, good, rc, rc ? err : "");
    free(out), free(err);
    rc = run_rft(&out, &err, "sample", "--model", model_path, "--prompt", "", "--json", NULL);
    expect_bad("rft sample with an empty prompt", rc, err, "prompt", NULL, NULL);
    free(out), free(err);
}

/* ---- 6. metrics ---- */

static void test_metrics(void) {
    char met[600], smp[600];
    snprintf(met, sizeof met, "%s/grpo_straight/metrics.jsonl", dir);
    snprintf(smp, sizeof smp, "%s/grpo_straight/samples.jsonl", dir);
    const char *step_keys[] = {"reward", "reward_std", "rewards/correct/mean", "rewards/format/mean", "rewards/close/mean",
                               "frac_reward_zero_std", "kl", "entropy", "clip_ratio/low_mean", "clip_ratio/high_mean",
                               "completions/mean_length", "completions/clipped_ratio", "grader_errors/correct",
                               "grader_errors/format", "grader_errors/close", "timing/sampling", "timing/grading",
                               "timing/training", "timing/step", "tokens_per_s", "loss", "grad_norm", "learning_rate"};
    const char *eval_keys[] = {"valid_reward_mean", "valid/correct/mean", "valid/format/mean", "valid/close/mean",
                               "timing/eval"};
    const int NS = sizeof step_keys / sizeof *step_keys, NE = sizeof eval_keys / sizeof *eval_keys;
    char *text = slurp(met);
    int n_step = 0, n_eval = 0, bad = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        int step = (int)json_integer_value(json_object_get(o, "step"));
        if (step > 0) {
            n_step++;
            for (int i = 0; i < NS; i++) {
                json_t *v = json_object_get(o, step_keys[i]);
                if (!json_is_number(v)) {
                    if (bad++ < 5) printf("     step %d: %s missing or not a number\n", step, step_keys[i]);
                }
            }
            double r = json_real_value(json_object_get(o, "reward"));
            double kl = json_real_value(json_object_get(o, "kl"));
            if (!(r >= 0 && r <= 2.1 && kl >= 0 && isfinite(kl))) {
                if (bad++ < 5) printf("     step %d: reward %g or kl %g out of range\n", step, r, kl);
            }
        }
        if (json_object_get(o, "valid_reward_mean")) {
            n_eval++;
            for (int i = 0; i < NE; i++)
                if (!json_is_number(json_object_get(o, eval_keys[i])))
                    if (bad++ < 5) printf("     step %d: %s missing\n", step, eval_keys[i]);
        }
        json_decref(o);
    }
    free(text);
    check(n_step == 6 && n_eval == 3 && !bad,
          "metrics.jsonl: 6 step records with the DESIGN.md names, 3 eval records (steps 0, 3, 6) with valid_* keys "
          "(%d, %d, %d problems)",
          n_step, n_eval, bad);
    text = slurp(smp);
    int n_s = 0, good = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        n_s++;
        json_t *sub = json_object_get(o, "sub_rewards");
        good += o && json_object_get(o, "prompt") && json_is_string(json_object_get(o, "completion")) &&
                json_is_number(json_object_get(o, "reward")) && json_is_object(sub) && json_object_get(sub, "correct") &&
                json_object_get(sub, "format") && json_object_get(sub, "close") && json_object_get(o, "step");
        json_decref(o);
    }
    free(text);
    check(n_s == 18 && good == n_s,
          "samples.jsonl: log_samples 3 x 6 steps = 18 records with prompt, completion, reward, sub_rewards (%d, %d good)",
          n_s, good);
}

/* max_steps 0: n_epochs x ceil(rows / batch_size) steps; the epoch of each record; eval_samples -> valid/pass@k */
static void test_epochs(void) {
    char out[600], met[700];
    snprintf(out, sizeof out, "%s/epochs", dir);
    const char *more[] = {"train.max_steps=0", "train.n_epochs=2", "train.batch_size=4", "train.eval_samples=3"};
    char *err;
    int rc = train("tests/fixtures/train_grpo.yaml", out, more, NULL, &err);
    /* 8 rows, 4 per step: 2 steps per epoch, 4 in all; epoch 1 starts exactly at step 3 */
    check(rc == 0 && strstr(err, ", 4 steps,") && strstr(err, "step 4/4"),
          "max_steps 0, n_epochs 2, 8 rows, batch_size 4: 4 steps (rc %d) %s", rc, rc ? last_line(err) : "");
    free(err);
    snprintf(met, sizeof met, "%s/metrics.jsonl", out);
    char *text = slurp(met);
    const int want_epoch[5] = {-1, 0, 0, 1, 1};
    int bad = 0, n = 0, passk = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        int st = (int)json_integer_value(json_object_get(o, "step"));
        if (st >= 1 && st <= 4) {
            n++;
            json_t *e = json_object_get(o, "epoch");
            if (!json_is_integer(e) || json_integer_value(e) != want_epoch[st]) {
                if (bad++ < 3) printf("     step %d: epoch %lld, expected %d\n", st, (long long)json_integer_value(e), want_epoch[st]);
            }
        }
        if (json_object_get(o, "valid_reward_mean"))
            passk += json_is_number(json_object_get(o, "valid/pass@3")) && json_is_number(json_object_get(o, "valid/pass@1"));
        json_decref(o);
    }
    free(text);
    check(n == 4 && !bad, "the epoch of each step record is the epoch of its prompts (0 0 1 1)");
    check(passk == 3, "eval_samples 3: valid/pass@1 and valid/pass@3 in the 3 evaluation records (steps 0, 3, 4; %d)",
          passk);
}

int main(void) {
    rft = getenv("RFT_BIN");
    if (!rft || access(rft, X_OK) != 0) {
        printf("RFT_BIN not set or not executable: skipped\n");
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/rft_traincli_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    double t0 = now_seconds();
    path_in(model_path, sizeof model_path, "tiny.h5");
    char *out, *err;
    int rc = run_rft(&out, &err, "init", model_path, "--tokenizer", "data/quickstart/tokenizer.json",
                     "--tokenizer-config", "data/quickstart/tokenizer_config.json", "--d-model", "32", "--n-layer", "2",
                     "--n-head", "2", "--d-ff", "64", "--max-seq", "64", "--seed", "1", NULL);
    check(rc == 0, "rft init: a tiny model (rc %d) %s", rc, err);
    free(out), free(err);
    if (rc) return 1;

    test_utf8();
    test_resume("grpo", "tests/fixtures/train_grpo.yaml");
    test_resume("sft", "tests/fixtures/train_sft.yaml");
    test_metrics();
    test_epochs();
    test_eval_sample();
    test_bad_input();
    test_divergence();
    test_grader_faults();
    test_sigint();

    rm_rf(dir);
    printf("%s: %d of %d checks failed (%.1f s)\n", n_fail ? "FAILED" : "PASSED", n_fail, n_check, now_seconds() - t0);
    return n_fail ? 1 : 0;
}
