/* tools/bench/bench_graders.c: grading throughput (grades/s) of the built-in
 * string_check and numeric graders, inline (in-process; 1 and 2 threads) and
 * process-isolated (1 and 2 worker processes). Goals: inline >= 200k/s,
 * isolated >= 20k/s.
 *
 *   build/bench/bench_graders [n_samples]        (default 50000) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grader.h"
#include "util.h"

static double run(const char *type, const char *config, int isolation, int workers, int n, rft_sample *samples,
                  json_t **items, int check_ones) {
    grader_spec spec;
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "%s", type);
    snprintf(spec.type, sizeof spec.type, "%s", type);
    char err[1024];
    if (grader_find_builtin(type, spec.path, sizeof spec.path, err, sizeof err)) {
        fprintf(stderr, "bench_graders: %s\n", err);
        exit(1);
    }
    spec.config_json = (char *)config;
    spec.timeout_ms = 5000;
    spec.memory_mb = 1024;
    spec.isolation = isolation;
    grader_runner *r = grader_runner_create(&spec, 1, workers, err, sizeof err);
    if (!r) {
        fprintf(stderr, "bench_graders: %s\n", err);
        exit(1);
    }
    grade_result *out = calloc(n, sizeof *out);
    /* warm-up, then best of 3 */
    grader_runner_grade(r, samples, items, n < 1000 ? n : 1000, out, err, sizeof err);
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_seconds();
        if (grader_runner_grade(r, samples, items, n, out, err, sizeof err)) {
            fprintf(stderr, "bench_graders: %s\n", err);
            exit(1);
        }
        double dt = now_seconds() - t0;
        if (dt < best) best = dt;
    }
    long ones = 0, errors = 0;
    for (int i = 0; i < n; i++) {
        ones += out[i].status == GRADE_OK && out[i].score == 1.0;
        errors += out[i].status == GRADE_ERROR;
    }
    if (errors || ones != check_ones) {
        fprintf(stderr, "bench_graders: %s: %ld errors, %ld ones (want %d): %s\n", type, errors, ones, check_ones,
                out[0].msg);
        exit(1);
    }
    free(out);
    grader_runner_free(r);
    return n / best;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 50000;
    if (n < 1) n = 50000;
    rft_sample *samples = calloc(n, sizeof *samples);
    json_t **items = calloc(n, sizeof *items);
    char(*texts)[64] = calloc(n, sizeof *texts);
    int ones = 0;
    for (int i = 0; i < n; i++) {
        int answer = i % 1000, said = (i % 3) ? answer : answer + 1;
        ones += said == answer;
        snprintf(texts[i], sizeof texts[i], "The answer is %d", said);
        samples[i] = (rft_sample){texts[i], strlen(texts[i]), NULL, 0, 1};
        char ans[64];
        snprintf(ans, sizeof ans, "The answer is %d", answer);
        items[i] = json_pack("{s:s, s:i, s:s}", "answer_text", ans, "answer", answer, "id", "bench");
    }
    const char *sc = "{\"operation\":\"eq\",\"input\":\"{{sample.output_text}}\",\"reference\":\"{{item.answer_text}}\"}";
    const char *num = "{\"input\":\"{{sample.output_text}}\",\"reference\":\"{{item.answer}}\"}";
    printf("grader        mode       workers   grades/s   (%d samples, best of 3)\n", n);
    struct {
        const char *type, *config;
    } g[2] = {{"string_check", sc}, {"numeric", num}};
    for (int k = 0; k < 2; k++) {
        for (int w = 1; w <= 2; w++)
            printf("%-13s inline     %7d %10.0f\n", g[k].type, w,
                   run(g[k].type, g[k].config, GRADER_ISOLATION_INLINE, w, n, samples, items, ones));
        for (int w = 1; w <= 2; w++)
            printf("%-13s process    %7d %10.0f\n", g[k].type, w,
                   run(g[k].type, g[k].config, GRADER_ISOLATION_PROCESS, w, n, samples, items, ones));
        fflush(stdout);
    }
    for (int i = 0; i < n; i++) json_decref(items[i]);
    free(items), free(samples), free(texts);
    return 0;
}
