/* tests/faults/fault.c: a fault-injection grader plugin. Each grade does the
 * fault named by config "mode" or, if absent, by the item's "fault" field;
 * without a fault it scores 1 when output_text equals item "answer", else 0.
 * Faults: segv abort exit0 exit3 loop sleep oom garbage_stdout garbage_fd
 * close_stdio fork_linger fork_orphan exit_with_child nan inf status error
 * abstain. config {"fail_create": "msg"} makes create() fail; config
 * {"helper": "yes"} starts a helper child process in create() that lives
 * until destroy() (allowed: not a lingering child). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rft_grader.h"

typedef struct {
    const rft_host *host;
    char mode[64];
    pid_t helper;
} fault_state;

/* tiny JSON lookup of a string value: "key": "value" (enough for tests) */
static int json_str(const char *json, const char *key, char *out, size_t cap) {
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p) return 0;
    p = strchr(p + strlen(pat), '"');
    if (!p) return 0;
    const char *e = strchr(p + 1, '"');
    if (!e || (size_t)(e - p - 1) >= cap) return 0;
    memcpy(out, p + 1, e - p - 1);
    out[e - p - 1] = 0;
    return 1;
}

static int fault_create(const char *config_json, const rft_host *host, void **state, char *err, size_t err_cap) {
    char msg[200];
    if (json_str(config_json, "fail_create", msg, sizeof msg)) {
        snprintf(err, err_cap, "%s", msg);
        return RFT_ERROR;
    }
    fault_state *s = calloc(1, sizeof *s);
    if (!s) return RFT_ERROR;
    s->host = host;
    json_str(config_json, "mode", s->mode, sizeof s->mode);
    if (json_str(config_json, "helper", msg, sizeof msg)) {
        /* the child names itself, then says so: create() returns only once
           the helper is visible as rft_helper (a loaded machine may not run
           the child for a while) */
        int fd[2];
        if (pipe(fd)) {
            free(s);
            return RFT_ERROR;
        }
        s->helper = fork();
        if (s->helper == 0) {
            prctl(PR_SET_NAME, "rft_helper");
            if (write(fd[1], "r", 1) != 1) _exit(1);
            for (;;) pause();
        }
        char c;
        close(fd[1]);
        if (s->helper < 0 || read(fd[0], &c, 1) != 1) {
            close(fd[0]);
            free(s);
            return RFT_ERROR;
        }
        close(fd[0]);
    }
    *state = s;
    return RFT_OK;
}

static volatile int sink;
static int active; /* calls in progress, over every state of this plugin */

static int fault_grade_inner(void *state, const rft_sample *sample, const rft_item *item, double *score, char *err,
                             size_t err_cap);

/* this plugin is not thread-safe: rft must never enter it twice at once (not
   even on two states); a concurrent entry is reported as an error */
static int fault_grade(void *state, const rft_sample *sample, const rft_item *item, double *score, char *err,
                       size_t err_cap) {
    if (__atomic_fetch_add(&active, 1, __ATOMIC_SEQ_CST) != 0) {
        __atomic_fetch_sub(&active, 1, __ATOMIC_SEQ_CST);
        snprintf(err, err_cap, "called concurrently although not thread-safe");
        return RFT_ERROR;
    }
    for (int i = 0; i < 200; i++) sink++; /* widen the window a race would need */
    int rc = fault_grade_inner(state, sample, item, score, err, err_cap);
    __atomic_fetch_sub(&active, 1, __ATOMIC_SEQ_CST);
    return rc;
}

static int fault_grade_inner(void *state, const rft_sample *sample, const rft_item *item, double *score, char *err,
                             size_t err_cap) {
    fault_state *s = state;
    const char *mode = s->mode;
    if (!mode[0]) mode = s->host->item_get(item, "fault", NULL);
    if (!mode) mode = "";
    if (!strcmp(mode, "segv")) {
        volatile int *p = NULL;
        sink = *p;
    } else if (!strcmp(mode, "abort")) {
        abort();
    } else if (!strcmp(mode, "exit0")) {
        exit(0);
    } else if (!strcmp(mode, "exit3")) {
        exit(3);
    } else if (!strcmp(mode, "loop")) {
        for (;;) sink++;
    } else if (!strcmp(mode, "sleep")) {
        sleep(100);
    } else if (!strcmp(mode, "oom")) {
        for (;;) { /* grow until malloc fails, then use the NULL like careless code */
            char *p = malloc(8 << 20);
            memset(p, 1, 8 << 20);
        }
    } else if (!strcmp(mode, "garbage_stdout")) {
        for (int i = 0; i < 3; i++) {
            fputs("garbage \x01\x02\xff RFTR not a reply\n", stdout);
            fputs("more garbage on stderr\n", stderr);
        }
        fflush(stdout);
    } else if (!strcmp(mode, "garbage_fd")) {
        static const char junk[] = "JUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNKJUNK";
        for (int fd = 0; fd < 1024; fd++) (void)!write(fd, junk, sizeof junk);
    } else if (!strcmp(mode, "close_stdio")) {
        close(0), close(1), close(2);
    } else if (!strcmp(mode, "fork_linger")) {
        if (fork() == 0) {
            prctl(PR_SET_NAME, "rft_linger");
            sleep(1000);
            _exit(0);
        }
    } else if (!strcmp(mode, "fork_orphan")) {
        if (fork() == 0) {
            setsid();
            if (fork() == 0) {
                prctl(PR_SET_NAME, "rft_linger");
                sleep(1000);
                _exit(0);
            }
            _exit(0);
        }
        usleep(20000);
    } else if (!strcmp(mode, "exit_with_child")) { /* the child keeps rft's socket open */
        if (fork() == 0) {
            prctl(PR_SET_NAME, "rft_linger");
            sleep(1000);
            _exit(0);
        }
        exit(5);
    } else if (!strcmp(mode, "nan")) {
        *score = 0.0 / 0.0;
        return RFT_OK;
    } else if (!strcmp(mode, "inf")) {
        *score = 1.0 / 0.0;
        return RFT_OK;
    } else if (!strcmp(mode, "status")) {
        return 7;
    } else if (!strcmp(mode, "error")) {
        snprintf(err, err_cap, "deliberate error");
        return RFT_ERROR;
    } else if (!strcmp(mode, "abstain")) {
        return RFT_ABSTAIN;
    }
    const char *answer = s->host->item_get(item, "answer", NULL);
    *score = answer && !strcmp(answer, sample->output_text) ? 1.0 : 0.0;
    return RFT_OK;
}

static void fault_destroy(void *state) {
    fault_state *s = state;
    if (s->helper > 0) {
        kill(s->helper, SIGKILL);
        waitpid(s->helper, NULL, 0);
    }
    free(s);
}

static const rft_grader api = {RFT_GRADER_ABI_VERSION, "fault", 0, fault_create, fault_grade, fault_destroy};

RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void) { return &api; }
