/* tests/test_grader_pool.c: process isolation under fault injection. 1000
 * samples graded by a known-answer grader (good.so) and a fault-injection
 * grader (fault.so) whose item picks one failure from the isolation list
 * (segfault, abort, exit(0)/exit(3), infinite loop, sleep past the timeout,
 * allocation past the memory limit, garbage on stdout/stderr, garbage on
 * every fd, closing fds 0-2, lingering children, NaN/inf, out-of-range
 * status). The batch must finish, each fault must be an error of the fault
 * grader with the right kind (or a correct score where the fault is
 * harmless), every good grade must be exact, and afterwards only the pool's
 * workers may be alive. Also checks inline mode, threaded, on the same data. */
#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grader.h"
#include "util.h"

static int failures = 0;
#define CHECK(c, ...)                                                                                                  \
    do {                                                                                                               \
        if (!(c)) {                                                                                                    \
            failures++;                                                                                                \
            if (failures < 30) {                                                                                       \
                fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                                        \
                fprintf(stderr, __VA_ARGS__);                                                                          \
                fprintf(stderr, "\n");                                                                                 \
            }                                                                                                          \
        }                                                                                                              \
    } while (0)

typedef struct {
    const char *mode;
    int status, kind; /* expected for the fault grader; kind NONE + OK: normal score */
} fault_case;

static const fault_case cases[] = {
    {"segv", GRADE_ERROR, GRADE_KIND_CRASH},        {"abort", GRADE_ERROR, GRADE_KIND_CRASH},
    {"exit0", GRADE_ERROR, GRADE_KIND_EXIT},        {"exit3", GRADE_ERROR, GRADE_KIND_EXIT},
    {"loop", GRADE_ERROR, GRADE_KIND_TIMEOUT},      {"sleep", GRADE_ERROR, GRADE_KIND_TIMEOUT},
    {"oom", GRADE_ERROR, GRADE_KIND_OOM},           {"garbage_stdout", GRADE_OK, GRADE_KIND_NONE},
    {"garbage_fd", GRADE_ERROR, GRADE_KIND_PROTOCOL}, {"close_stdio", GRADE_OK, GRADE_KIND_NONE},
    {"fork_linger", GRADE_ERROR, GRADE_KIND_FORK},  {"fork_orphan", GRADE_ERROR, GRADE_KIND_FORK},
    {"nan", GRADE_ERROR, GRADE_KIND_NAN},           {"inf", GRADE_ERROR, GRADE_KIND_NAN},
    {"status", GRADE_ERROR, GRADE_KIND_STATUS},     {"error", GRADE_ERROR, GRADE_KIND_ERROR},
    {"abstain", GRADE_ABSTAIN, GRADE_KIND_NONE},      {"exit_with_child", GRADE_ERROR, GRADE_KIND_EXIT},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* processes whose parent is us (not zombies), and processes named rft_linger / rft_helper */
static int helpers = 0, zombies = 0;
static void count_procs(int *children, int *lingering) {
    *children = *lingering = helpers = zombies = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (!rp || sscanf(rp + 1, " %c %d", &state, &ppid) != 2) continue;
        if (state == 'Z') {
            zombies += ppid == getpid();
            continue;
        }
        if (ppid == getpid()) (*children)++;
        if (strstr(buf, "(rft_linger)")) (*lingering)++;
        if (strstr(buf, "(rft_helper)")) helpers++;
    }
    if (d) closedir(d);
}

static void make_spec(grader_spec *s, const char *name, const char *file, const char *config, int isolation) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    const char *build = getenv("RFT_BUILD");
    snprintf(s->path, sizeof s->path, "%s/tests/faults/%s", build ? build : "build", file);
    s->config_json = strdup(config);
    s->timeout_ms = 1000;
    s->memory_mb = 64;
    s->isolation = isolation;
}

static double good_expected(int i, const char *text) {
    return (double)strlen(text) + 1000.0 * (i % 7) + (i % 5) + ((i % 3) != 0 ? 0.5 : 0) + 0.25;
}

static int count_fds(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d && readdir(d)) n++;
    if (d) closedir(d);
    return n;
}

int main(void) {
    char err[1024];
    int fds_at_start = count_fds();
    const int n = 1000;
    char(*texts)[32] = calloc(n, sizeof *texts);
    rft_sample *samples = calloc(n, sizeof *samples);
    json_t **items = calloc(n, sizeof *items);
    int *mode = calloc(n, sizeof *mode); /* -1: no fault */
    for (int i = 0; i < n; i++) {
        snprintf(texts[i], sizeof texts[i], "out%d", i * 37 % 1000);
        samples[i] = (rft_sample){texts[i], strlen(texts[i]), NULL, 0, (i % 3) != 0};
        items[i] = json_pack("{s:i, s:[i,i,i], s:s}", "k", i % 7, "nums", 1, i % 5, 3, "answer",
                             (i % 2) ? texts[i] : "nope");
        mode[i] = -1;
        if (i % 16 == 5) { /* 63 faults, every kind about 4 times */
            mode[i] = (i / 16) % N_CASES;
            json_object_set_new(items[i], "fault", json_string(cases[mode[i]].mode));
        }
    }
    grader_spec specs[2];
    make_spec(&specs[0], "good", "good.so", "{\"bias\": 0.25}", GRADER_ISOLATION_PROCESS);
    make_spec(&specs[1], "faulty", "fault.so", "{}", GRADER_ISOLATION_PROCESS);
    grader_runner *r = grader_runner_create(specs, 2, 2, err, sizeof err);
    if (!r) {
        fprintf(stderr, "runner: %s\n", err);
        return 1;
    }
    grade_result *out = calloc((size_t)n * 2, sizeof *out);
    double t0 = now_seconds();
    int rc = grader_runner_grade(r, samples, items, n, out, err, sizeof err);
    double dt = now_seconds() - t0;
    CHECK(rc == 0, "grade batch failed: %s", err);
    int counted[GRADE_KIND_COUNT] = {0};
    for (int i = 0; i < n; i++) {
        grade_result *g = &out[i * 2], *f = &out[i * 2 + 1];
        CHECK(g->status == GRADE_OK && g->score == good_expected(i, texts[i]),
              "sample %d: good grader status %d score %g (want %g) %s", i, g->status, g->score,
              good_expected(i, texts[i]), g->msg);
        if (mode[i] < 0 || cases[mode[i]].status == GRADE_OK) {
            CHECK(f->status == GRADE_OK && f->score == ((i % 2) ? 1.0 : 0.0),
                  "sample %d (%s): fault grader status %d kind %s score %g: %s", i,
                  mode[i] < 0 ? "no fault" : cases[mode[i]].mode, f->status, grade_kind_name(f->kind), f->score,
                  f->msg);
        } else {
            CHECK(f->status == cases[mode[i]].status && f->kind == cases[mode[i]].kind,
                  "sample %d (%s): got status %d kind %s (%s), want status %d kind %s", i, cases[mode[i]].mode,
                  f->status, grade_kind_name(f->kind), f->msg, cases[mode[i]].status,
                  grade_kind_name(cases[mode[i]].kind));
            if (f->status == GRADE_ERROR) counted[f->kind]++;
        }
    }
    int errors = 0;
    for (int i = 0; i < n; i++) errors += out[i * 2 + 1].status == GRADE_ERROR;
    int expect_errors = 0;
    for (int i = 0; i < n; i++) expect_errors += mode[i] >= 0 && cases[mode[i]].status == GRADE_ERROR;
    CHECK(errors == expect_errors, "fault grader errors %d, want %d", errors, expect_errors);
    pid_t pids[16];
    int np = grader_runner_worker_pids(r, pids, 16);
    int children, lingering;
    count_procs(&children, &lingering);
    CHECK(np == 2 && children == 2, "after the batch: %d workers, %d child processes (want 2, 2)", np, children);
    CHECK(lingering == 0, "%d lingering grandchildren survived", lingering);
    CHECK(zombies == 0, "%d unreaped workers", zombies);
    printf("process pool: %d samples x 2 graders with %d faults in %.2f s; errors by kind:", n, expect_errors, dt);
    for (int k = 1; k < GRADE_KIND_COUNT; k++)
        if (counted[k]) printf(" %s=%d", grade_kind_name(k), counted[k]);
    printf("\n");

    /* a second batch on the same pool still works */
    memset(out, 0, sizeof *out * n * 2);
    for (int i = 0; i < n; i++) json_object_del(items[i], "fault");
    rc = grader_runner_grade(r, samples, items, n, out, err, sizeof err);
    CHECK(rc == 0, "second batch failed: %s", err);
    for (int i = 0; i < n; i++)
        CHECK(out[i * 2].status == GRADE_OK && out[i * 2].score == good_expected(i, texts[i]) &&
                  out[i * 2 + 1].status == GRADE_OK && out[i * 2 + 1].score == ((i % 2) ? 1.0 : 0.0),
              "second batch sample %d wrong", i);
    grader_runner_free(r);
    count_procs(&children, &lingering);
    CHECK(children == 0 && zombies == 0, "%d child processes (%d zombies) left after free", children, zombies);
    CHECK(count_fds() == fds_at_start, "file descriptors leaked: %d open, %d at start", count_fds(), fds_at_start);

    /* a helper process started in create() is allowed to live on */
    {
        grader_spec hs;
        make_spec(&hs, "helped", "fault.so", "{\"helper\": \"yes\"}", GRADER_ISOLATION_PROCESS);
        r = grader_runner_create(&hs, 1, 2, err, sizeof err);
        CHECK(r != NULL, "helper runner: %s", err);
        if (r) {
            memset(out, 0, sizeof *out * n * 2);
            rc = grader_runner_grade(r, samples, items, 100, out, err, sizeof err);
            CHECK(rc == 0, "helper batch failed: %s", err);
            for (int i = 0; i < 100; i++)
                CHECK(out[i].status == GRADE_OK && out[i].score == ((i % 2) ? 1.0 : 0.0), "helper sample %d: %s %s",
                      i, grade_kind_name(out[i].kind), out[i].msg);
            count_procs(&children, &lingering);
            CHECK(helpers == 2, "%d helper processes alive during the run, want 2 (one per worker)", helpers);
            grader_runner_free(r);
            /* a worker killed at free takes its helper down with its process
               group; on a loaded machine that can take a moment */
            for (int tries = 0; tries < 200; tries++) {
                count_procs(&children, &lingering);
                if (helpers == 0 && children == 0) break;
                usleep(10000);
            }
            CHECK(helpers == 0 && children == 0, "after free: %d helpers, %d children", helpers, children);
        }
        free(hs.config_json);
    }

    /* mixed: the good grader inline (helper thread), the fault grader in workers */
    specs[0].isolation = GRADER_ISOLATION_INLINE;
    r = grader_runner_create(specs, 2, 2, err, sizeof err);
    CHECK(r != NULL, "mixed runner: %s", err);
    if (r) {
        json_object_set_new(items[3], "fault", json_string("segv"));
        memset(out, 0, sizeof *out * n * 2);
        rc = grader_runner_grade(r, samples, items, 200, out, err, sizeof err);
        CHECK(rc == 0, "mixed batch failed: %s", err);
        for (int i = 0; i < 200; i++) {
            CHECK(out[i * 2].status == GRADE_OK && out[i * 2].score == good_expected(i, texts[i]),
                  "mixed sample %d good wrong", i);
            CHECK(i == 3 ? out[i * 2 + 1].kind == GRADE_KIND_CRASH
                         : out[i * 2 + 1].status == GRADE_OK && out[i * 2 + 1].score == ((i % 2) ? 1.0 : 0.0),
                  "mixed sample %d fault grader: %s", i, out[i * 2 + 1].msg);
        }
        json_object_del(items[3], "fault");
        grader_runner_free(r);
    }
    specs[0].isolation = GRADER_ISOLATION_PROCESS;

    /* workers started by re-executing this program (the fallback when
       rft-grader-worker is not found): a crash and good grades */
    setenv("RFT_GRADER_WORKER_BIN", "/proc/self/exe", 1);
    r = grader_runner_create(specs, 2, 1, err, sizeof err);
    CHECK(r != NULL, "self-exec runner: %s", err);
    if (r) {
        json_object_set_new(items[7], "fault", json_string("abort"));
        memset(out, 0, sizeof *out * n * 2);
        rc = grader_runner_grade(r, samples, items, 20, out, err, sizeof err);
        CHECK(rc == 0, "self-exec batch failed: %s", err);
        for (int i = 0; i < 20; i++) {
            CHECK(out[i * 2].status == GRADE_OK && out[i * 2].score == good_expected(i, texts[i]),
                  "self-exec sample %d good wrong", i);
            if (i == 7)
                CHECK(out[i * 2 + 1].status == GRADE_ERROR && out[i * 2 + 1].kind == GRADE_KIND_CRASH,
                      "self-exec abort: %s", grade_kind_name(out[i * 2 + 1].kind));
            else
                CHECK(out[i * 2 + 1].status == GRADE_OK, "self-exec sample %d fault grader: %s", i, out[i * 2 + 1].msg);
        }
        json_object_del(items[7], "fault");
        grader_runner_free(r);
    }
    unsetenv("RFT_GRADER_WORKER_BIN");

    /* inline, threaded: the same good grades, and the in-process checks */
    /* (a second instance of the fault plugin: the plugin is not thread-safe,
       so its two graders must never run at the same time) */
    grader_spec specs3[3];
    memcpy(specs3, specs, sizeof specs);
    make_spec(&specs3[2], "faulty2", "fault.so", "{}", GRADER_ISOLATION_INLINE);
    specs3[0].isolation = specs3[1].isolation = GRADER_ISOLATION_INLINE;
    grade_result *out3 = calloc((size_t)n * 3, sizeof *out3);
    r = grader_runner_create(specs3, 3, 2, err, sizeof err);
    CHECK(r != NULL, "inline runner: %s", err);
    if (r) {
        const char *soft[] = {"nan", "inf", "status", "error", "abstain", NULL};
        for (int i = 0; i < n; i++)
            if (i % 10 == 3) json_object_set_new(items[i], "fault", json_string(soft[(i / 10) % 5]));
        rc = grader_runner_grade(r, samples, items, n, out3, err, sizeof err);
        CHECK(rc == 0, "inline batch failed: %s", err);
        for (int i = 0; i < n; i++) {
            CHECK(out3[i * 3].status == GRADE_OK && out3[i * 3].score == good_expected(i, texts[i]),
                  "inline sample %d good wrong", i);
            CHECK(out3[i * 3 + 2].status == out3[i * 3 + 1].status && out3[i * 3 + 2].score == out3[i * 3 + 1].score,
                  "inline sample %d: the two fault graders differ (%s / %s)", i, out3[i * 3 + 1].msg,
                  out3[i * 3 + 2].msg);
            grade_result *f = &out3[i * 3 + 1];
            if (i % 10 == 3) {
                int m = (i / 10) % 5;
                int want_kind[] = {GRADE_KIND_NAN, GRADE_KIND_NAN, GRADE_KIND_STATUS, GRADE_KIND_ERROR, 0};
                if (m == 4)
                    CHECK(f->status == GRADE_ABSTAIN, "inline sample %d: abstain expected", i);
                else
                    CHECK(f->status == GRADE_ERROR && f->kind == want_kind[m], "inline sample %d (%s): kind %s", i,
                          soft[m], grade_kind_name(f->kind));
            } else {
                CHECK(f->status == GRADE_OK && f->score == ((i % 2) ? 1.0 : 0.0), "inline sample %d fault wrong: %s", i,
                      f->msg);
            }
        }
        grader_runner_free(r);
    }
    free(out3);
    free(specs3[2].config_json);
    for (int i = 0; i < n; i++) json_decref(items[i]);
    free(specs[0].config_json), free(specs[1].config_json);
    free(out), free(items), free(samples), free(texts), free(mode);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
