/* tests/test_grader_cli.c: `rft grade` end to end through $RFT_BIN: bad
 * configs (unknown grader type, missing field, plugin not found, wrong ABI
 * version, missing symbol, create() failing - in a worker and inline - and a
 * bad formula) exit 2 with a message naming the grader; bad sample files exit
 * 2 naming file:line; a good run prints one JSON object per row in order with
 * reward / sub_rewards / errors and a final summary; exceeding
 * max_error_rate exits 1 naming the grader. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static char dir[] = "/tmp/rft_test_grade_XXXXXX";
static const char *rft, *build;
static char out_text[1 << 20], err_text[1 << 16];

static void write_file(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* runs rft grade cfg.yaml --samples samples.jsonl ARGS; returns the exit status */
static int run_grade(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && %s grade cfg.yaml --samples samples.jsonl %s > out.txt 2> err.txt", dir, rft,
             args);
    int st = system(cmd);
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    slurp(path, out_text, sizeof out_text);
    snprintf(path, sizeof path, "%s/err.txt", dir);
    slurp(path, err_text, sizeof err_text);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect_bad_config(const char *graders_yaml, const char *want1, const char *want2) {
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "graders:\n%s", graders_yaml);
    write_file("cfg.yaml", cfg);
    int rc = run_grade("");
    CHECK(rc == 2, "config\n%s\nexit %d, want 2 (stderr: %s)", cfg, rc, err_text);
    CHECK(strstr(err_text, want1) && (!want2 || strstr(err_text, want2)),
          "config\n%s\nstderr '%s' lacks '%s' / '%s'", cfg, err_text, want1, want2 ? want2 : "");
    CHECK(strchr(err_text, '\n') == err_text + strlen(err_text) - 1, "not one line: %s", err_text);
}

int main(void) {
    rft = getenv("RFT_BIN");
    build = getenv("RFT_BUILD");
    if (!rft || !build || access(rft, X_OK)) {
        fprintf(stderr, "RFT_BIN/RFT_BUILD not set or rft not built: skipped\n");
        return 77;
    }
    if (!mkdtemp(dir)) return 1;
    char g[512], yaml[4096];
    write_file("samples.jsonl", "{\"item\": {\"k\": 1, \"answer\": \"hi\"}, \"output_text\": \"hi\"}\n");

    /* bad configs: exit 2, message names the grader */
    expect_bad_config("  exact:\n    type: no_such_type\n", "cfg.yaml:3: graders.exact.type: unknown grader type 'no_such_type'", NULL);
    expect_bad_config("  exact:\n    reference: x\n", "cfg.yaml:3: graders.exact: missing `type:`", NULL);
    expect_bad_config("  exact:\n    type: string_check\n    operation: eq\n    input: \"{{sample.output_text}}\"\n",
                      "grader 'exact': plugin ", "string_check.so: create failed: ");
    expect_bad_config("  mine:\n    plugin: ./libnothere.so\n",
                      "graders.mine.plugin: grader plugin './libnothere.so' not found", NULL);
    snprintf(g, sizeof g, "  old:\n    plugin: %s/tests/faults/bad_abi.so\n", build);
    expect_bad_config(g, "grader 'old': plugin ", "has ABI version 2, this rft supports version 1");
    snprintf(g, sizeof g, "  nosym:\n    plugin: %s/tests/faults/no_symbol.so\n", build);
    expect_bad_config(g, "grader 'nosym': plugin ", "does not export rft_grader_v1");
    snprintf(g, sizeof g, "  broken:\n    plugin: %s/tests/faults/fault.so\n    config: {fail_create: \"cannot read "
             "the answer key\"}\n", build);
    expect_bad_config(g, "grader 'broken': plugin ", "create failed: cannot read the answer key");
    snprintf(g, sizeof g, "  broken:\n    plugin: %s/tests/faults/fault.so\n    isolation: inline\n    config: "
             "{fail_create: \"no key\"}\n", build);
    expect_bad_config(g, "grader 'broken': plugin ", "create failed: no key");
    snprintf(g, sizeof g, "  correct:\n    plugin: %s/tests/faults/good.so\nreward:\n  formula: \"2 * corect\"\n", build);
    expect_bad_config(g, "cfg.yaml:5: reward.formula: column 5: unknown name 'corect' (graders: correct)", NULL);

    /* bad samples */
    snprintf(yaml, sizeof yaml, "graders:\n  good:\n    plugin: %s/tests/faults/good.so\n", build);
    write_file("cfg.yaml", yaml);
    write_file("samples.jsonl", "{\"item\": {}, \"output_text\": \"a\"}\n{\"item\": {}, \"output_text\": \n");
    CHECK(run_grade("") == 2 && strstr(err_text, "samples.jsonl:2: invalid JSON"), "bad JSON line: %s", err_text);
    write_file("samples.jsonl", "{\"item\": {}, \"output_text\": \"a\"}\n\n{\"item\": {}, \"text\": \"b\"}\n");
    CHECK(run_grade("") == 2 && strstr(err_text, "samples.jsonl:3: field \"output_text\" must be a string"),
          "missing field: %s", err_text);
    CHECK(run_grade("--bogus") == 2 && strstr(err_text, "unknown or incomplete option '--bogus'"), "bad option: %s",
          err_text);

    /* a good run: good (known answer), faulty (item-chosen faults), abstains */
    snprintf(yaml, sizeof yaml,
             "model: {path: ignored.h5}\n"
             "graders:\n"
             "  good:\n    plugin: %s/tests/faults/good.so\n    config: {bias: 0.5}\n"
             "  faulty:\n    plugin: %s/tests/faults/fault.so\n    timeout_ms: 300\n"
             "reward:\n  formula: \"faulty + good / 1000\"\n  max_error_rate: 0.5\n",
             build, build);
    write_file("cfg.yaml", yaml);
    write_file("samples.jsonl",
               "{\"item\": {\"k\": 1, \"answer\": \"hi\"}, \"output_text\": \"hi\"}\n"
               "{\"item\": {\"k\": 2, \"answer\": \"x\", \"fault\": \"segv\"}, \"output_text\": \"hello\"}\n"
               "{\"item\": {\"k\": 0, \"answer\": \"x\", \"fault\": \"loop\"}, \"output_text\": \"x\", \"finished\": false}\n"
               "{\"item\": {\"k\": 0, \"answer\": \"x\", \"fault\": \"abstain\"}, \"output_text\": \"x\"}\n"
               "{\"item\": {\"k\": 3, \"nums\": [0, 7], \"answer\": \"no\"}, \"output_text\": \"yes\", \"tokens\": [1, 2]}\n");
    int rc = run_grade("--json --workers 2");
    CHECK(rc == 0, "good run exit %d: %s", rc, err_text);
    json_t *rows[6] = {0};
    int nrows = 0;
    for (char *line = strtok(out_text, "\n"); line && nrows < 6; line = strtok(NULL, "\n"))
        rows[nrows++] = json_loads(line, 0, NULL);
    CHECK(nrows == 6, "want 5 rows + summary, got %d lines", nrows);
    if (nrows == 6) {
        double want_good[5] = {1002.5 + 0.5, 2005.5 + 0.5, 1.0 + 0.5, 1.5 + 0.5, 3003.5 + 7};
        /* good = len + 1000k + nums[1] + 0.5*finished + bias */
        want_good[0] = 2 + 1000 + 0.5 + 0.5, want_good[1] = 5 + 2000 + 0.5 + 0.5, want_good[2] = 1 + 0 + 0 + 0.5;
        want_good[3] = 1 + 0.5 + 0.5, want_good[4] = 3 + 3000 + 7 + 0.5 + 0.5;
        for (int i = 0; i < 5; i++) {
            json_t *sub = json_object_get(rows[i], "sub_rewards"), *errs = json_object_get(rows[i], "errors");
            CHECK(sub && json_real_value(json_object_get(sub, "good")) == want_good[i], "row %d good %g want %g", i,
                  json_number_value(json_object_get(sub, "good")), want_good[i]);
            CHECK(json_is_object(errs), "row %d errors missing", i);
            if (!sub || !errs) continue;
            const char *fe = json_string_value(json_object_get(errs, "faulty"));
            double rw = json_number_value(json_object_get(rows[i], "reward"));
            switch (i) {
            case 0:
            case 4:
                CHECK(json_number_value(json_object_get(sub, "faulty")) == (i == 0 ? 1.0 : 0.0) && !fe &&
                          rw == (i == 0 ? 1.0 : 0.0) + want_good[i] / 1000,
                      "row %d reward %g", i, rw);
                break;
            case 1:
                CHECK(json_is_null(json_object_get(rows[i], "reward")) &&
                          json_is_null(json_object_get(sub, "faulty")) && fe && !strncmp(fe, "crash: ", 7),
                      "row 1: %s", fe ? fe : "no error");
                break;
            case 2:
                CHECK(json_is_null(json_object_get(rows[i], "reward")) && fe && !strncmp(fe, "timeout: ", 9),
                      "row 2: %s", fe ? fe : "no error");
                break;
            case 3:
                CHECK(json_is_null(json_object_get(rows[i], "reward")) && !fe &&
                          json_is_null(json_object_get(sub, "faulty")),
                      "row 3 (abstain)");
                break;
            }
        }
        json_t *s = json_object_get(rows[5], "summary");
        json_t *fs = json_object_get(json_object_get(s, "graders"), "faulty");
        CHECK(s && json_integer_value(json_object_get(s, "rows")) == 5 &&
                  json_integer_value(json_object_get(s, "masked")) == 3 &&
                  json_integer_value(json_object_get(fs, "errors")) == 2 &&
                  json_integer_value(json_object_get(fs, "abstain")) == 1 &&
                  json_integer_value(json_object_get(json_object_get(fs, "error_kinds"), "crash")) == 1 &&
                  json_integer_value(json_object_get(json_object_get(fs, "error_kinds"), "timeout")) == 1,
              "summary wrong");
    }
    for (int i = 0; i < nrows; i++) json_decref(rows[i]);

    /* the text form has one line per row plus the table */
    snprintf(yaml, sizeof yaml,
             "graders:\n  good:\n    plugin: %s/tests/faults/good.so\n    config: {bias: 0.5}\n"
             "  faulty:\n    plugin: %s/tests/faults/fault.so\n"
             "reward:\n  formula: \"faulty + good / 1000\"\n  max_error_rate: 0.4\n",
             build, build);
    write_file("cfg.yaml", yaml);
    write_file("samples.jsonl", "{\"item\": {\"k\": 1, \"answer\": \"hi\"}, \"output_text\": \"hi\"}\n"
                                "{\"item\": {\"k\": 1, \"answer\": \"hi\", \"fault\": \"error\"}, \"output_text\": \"hi\"}\n");
    rc = run_grade("--inline");
    CHECK(rc == 1, "1 error of 2 is above 0.4: exit %d", rc);
    CHECK(strstr(out_text, "row 1: reward 2.003 ") && strstr(out_text, "row 2: reward masked (faulty: error error)") &&
              strstr(out_text, "faulty=error(error: deliberate error)"),
          "text output:\n%s", out_text);
    CHECK(strstr(err_text, "grader 'faulty' failed on 1 of 2 samples (50.0%), above reward.max_error_rate 0.4"),
          "error-rate message: %s", err_text);

    /* on_error: zero turns the error into 0 */
    snprintf(yaml, sizeof yaml,
             "graders:\n  good:\n    plugin: %s/tests/faults/good.so\n"
             "  faulty:\n    plugin: %s/tests/faults/fault.so\n"
             "reward:\n  weights: {faulty: 1, good: 0.001}\n  on_error: zero\n  max_error_rate: 1\n",
             build, build);
    write_file("cfg.yaml", yaml);
    rc = run_grade("--json");
    CHECK(rc == 0, "on_error zero run exit %d: %s", rc, err_text);
    CHECK(strstr(out_text, "{\"reward\":2.0025,") && strstr(out_text, "\n{\"reward\":1.0025,"), "on_error zero:\n%s",
          out_text);

    /* a dataset plus a completions file */
    snprintf(yaml, sizeof yaml, "graders:\n  f:\n    plugin: %s/tests/faults/fault.so\n", build);
    write_file("cfg.yaml", yaml);
    write_file("data.jsonl", "{\"answer\": \"hi\"}\n\n{\"answer\": \"yo\"}\n");
    write_file("samples.jsonl", "{\"output_text\": \"hi\"}\n{\"output_text\": \"yo\"}\n"
                                "{\"index\": 0, \"output_text\": \"yo\"}\n{\"item\": {\"answer\": \"x\"}, \"output_text\": \"x\"}\n");
    rc = run_grade("--data data.jsonl --json");
    CHECK(rc == 0 && strstr(out_text, "{\"reward\":1.0,\"sub_rewards\":{\"f\":1.0},\"errors\":{}}\n"
                                      "{\"reward\":1.0,\"sub_rewards\":{\"f\":1.0},\"errors\":{}}\n"
                                      "{\"reward\":0.0,\"sub_rewards\":{\"f\":0.0},\"errors\":{}}\n"
                                      "{\"reward\":1.0,"),
          "--data: exit %d\n%s%s", rc, out_text, err_text);
    write_file("samples.jsonl", "{\"index\": 2, \"output_text\": \"hi\"}\n");
    rc = run_grade("--data data.jsonl");
    CHECK(rc == 2 && strstr(err_text, "samples.jsonl:1: \"index\" 2 is not a row of the dataset (2 rows)"),
          "--data bad index: %d %s", rc, err_text);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    if (fails) {
        fprintf(stderr, "%d failures\n", fails);
        return 1;
    }
    printf("ok\n");
    return 0;
}
