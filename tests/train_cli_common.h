/* tests/train_cli_common.h: helpers shared by tests/test_train_cli.c and
 * tests/test_train_faults.c, which run $RFT_BIN (train, eval, sample, init,
 * inspect) as child processes on a tiny model made with `rft init`: process
 * spawning with captured output, metrics.jsonl comparison (timing keys
 * aside), bitwise comparison of every HDF5 dataset of two checkpoints, and
 * the one-line bad-input check. Included by exactly one .c per test. */
#ifndef RFT_TRAIN_CLI_COMMON_H
#define RFT_TRAIN_CLI_COMMON_H
#pragma GCC diagnostic ignored "-Wunused-function"
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
    char model[600], out[800];
} sets;

/* starts [pre...] rft train CFG with model.path, train.out_dir and up to 4
   more --set's (NULL = none), --resume when resume; stdout / stderr into
   train_stdout.txt / train_stderr.txt of the test directory */
static pid_t train_spawn(const char *const *pre, const char *cfg, const char *out_dir, const char *const *more,
                         int resume) {
    static sets s;
    snprintf(s.model, sizeof s.model, "model.path=%s", model_path);
    snprintf(s.out, sizeof s.out, "train.out_dir=%s", out_dir);
    char *argv[40];
    int n = 0;
    for (int i = 0; pre && pre[i] && i < 8; i++) argv[n++] = (char *)pre[i];
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
    return spawn(argv, op, ep);
}

/* rft train CFG with model.path, train.out_dir and up to 4 more --set's (NULL = none); resume: NULL (fresh) or "" */
static int train(const char *cfg, const char *out_dir, const char *const *more, const char *resume, char **err) {
    int rc = wait_status(train_spawn(NULL, cfg, out_dir, more, resume != NULL));
    char ep[512];
    path_in(ep, sizeof ep, "train_stderr.txt");
    if (err) *err = slurp(ep);
    return rc;
}

/* the largest "step" in a metrics.jsonl (-1: none) */
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

/* expects exit 2, one stderr line containing every non-NULL needle */
static void expect_bad(const char *what, int rc, const char *err, const char *n1, const char *n2, const char *n3) {
    int ok = rc == 2 && one_line(err) && (!n1 || strstr(err, n1)) && (!n2 || strstr(err, n2)) && (!n3 || strstr(err, n3));
    char e[600];
    snprintf(e, sizeof e, "%s", err);
    e[strcspn(e, "\n")] = 0;
    check(ok, "%s -> exit 2, one line (rc %d): %s", what, rc, e);
}

/* a temporary directory and the tiny model; returns 0, 77 (no $RFT_BIN) or 1 */
static int tt_setup(const char *tag) {
    rft = getenv("RFT_BIN");
    if (!rft || access(rft, X_OK) != 0) {
        printf("RFT_BIN not set or not executable: skipped\n");
        return 77;
    }
    snprintf(dir, sizeof dir, "/tmp/rft_%s_XXXXXX", tag);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    path_in(model_path, sizeof model_path, "tiny.h5");
    char *out, *err;
    int rc = run_rft(&out, &err, "init", model_path, "--tokenizer", "tests/fixtures/tiny_bpe_tokenizer.json",
                     "--tokenizer-config", "tests/fixtures/tiny_bpe_tokenizer_config.json", "--d-model", "32", "--n-layer", "2",
                     "--n-head", "2", "--d-ff", "64", "--max-seq", "64", "--seed", "1", NULL);
    check(rc == 0, "rft init: a tiny model (rc %d) %s", rc, err);
    free(out), free(err);
    return rc ? 1 : 0;
}

static int tt_finish(double t0) {
    rm_rf(dir);
    printf("%s: %d of %d checks failed (%.1f s)\n", n_fail ? "FAILED" : "PASSED", n_fail, n_check, now_seconds() - t0);
    return n_fail ? 1 : 0;
}

#endif
