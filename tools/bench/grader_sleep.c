/* tools/bench/grader_sleep.c: a benchmark grader plugin that stands for an
 * expensive verifier (running tests, a solver, a remote check): each grade
 * sleeps config "ms" milliseconds, then scores 1 when the output contains
 * config "needle" (default "<answer>"), else 0. Thread-safe. Used by
 * tools/bench/run_overlap_bench.sh to measure how much grading time the
 * trainer hides behind generation. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rft_grader.h"

typedef struct {
    long ms;
    char needle[64];
} sleep_state;

static int sleep_create(const char *config_json, const rft_host *host, void **state, char *err, size_t err_cap) {
    (void)host;
    sleep_state *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_cap, "out of memory");
        return RFT_ERROR;
    }
    const char *m = strstr(config_json, "\"ms\":");
    s->ms = m ? atol(m + 5) : 10;
    snprintf(s->needle, sizeof s->needle, "<answer>");
    const char *n = strstr(config_json, "\"needle\":");
    if (n && (n = strchr(n + 9, '"'))) {
        const char *e = strchr(n + 1, '"');
        if (e && (size_t)(e - n - 1) < sizeof s->needle) memcpy(s->needle, n + 1, e - n - 1), s->needle[e - n - 1] = 0;
    }
    *state = s;
    return RFT_OK;
}

static int sleep_grade(void *state, const rft_sample *sample, const rft_item *item, double *score, char *err,
                       size_t err_cap) {
    (void)item, (void)err, (void)err_cap;
    sleep_state *s = state;
    struct timespec ts = {s->ms / 1000, (s->ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    *score = memmem(sample->output_text, sample->output_len, s->needle, strlen(s->needle)) ? 1.0 : 0.0;
    return RFT_OK;
}

static void sleep_destroy(void *state) { free(state); }

static const rft_grader api = {RFT_GRADER_ABI_VERSION, "sleep", RFT_GRADER_THREADSAFE, sleep_create, sleep_grade,
                               sleep_destroy};

RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void) { return &api; }
