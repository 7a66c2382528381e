/* tests/test_grader_countdown.c: the example countdown grader run by
 * `rft grade --json` in worker processes on the 240 TinyZero-scored cases of
 * tests/fixtures/countdown_cases.jsonl (tools/ref_countdown.py): every
 * row's reward must equal the reference score. (The copyable harness runs
 * the same cases in-process: the example_countdown test.) */
#define _GNU_SOURCE
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    const char *rft = getenv("RFT_BIN"), *build = getenv("RFT_BUILD");
    if (!rft || !build || access(rft, X_OK)) return 77;
    char dir[] = "/tmp/rft_test_countdown_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/cfg.yaml", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "graders:\n  countdown:\n    plugin: %s/examples/countdown.so\n    config: {format_score: 0.1}\n"
               "reward:\n  weights: {countdown: 1}\n", build);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s grade %s --samples tests/fixtures/countdown_cases.jsonl --json --workers 2 > %s/out.jsonl",
             rft, path, dir);
    int st = system(cmd);
    if (st != 0) {
        fprintf(stderr, "rft grade failed (%d)\n", st);
        return 1;
    }
    snprintf(path, sizeof path, "%s/out.jsonl", dir);
    FILE *out = fopen(path, "r"), *ref = fopen("tests/fixtures/countdown_cases.jsonl", "r");
    if (!out || !ref) return 1;
    char a[65536], b[65536];
    int n = 0, bad = 0;
    while (fgets(b, sizeof b, ref)) {
        if (!fgets(a, sizeof a, out)) {
            fprintf(stderr, "rft printed fewer rows than the fixture has\n");
            return 1;
        }
        json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
        double got = json_number_value(json_object_get(ja, "reward"));
        double want = json_number_value(json_object_get(jb, "expect"));
        if (!json_is_number(json_object_get(ja, "reward")) || fabs(got - want) > 1e-12) {
            if (bad++ < 10) fprintf(stderr, "case %d: reward %s, want %g (%s)", n + 1, a, want, b);
        }
        n++;
        json_decref(ja), json_decref(jb);
    }
    if (!fgets(a, sizeof a, out) || !strstr(a, "\"summary\"")) {
        fprintf(stderr, "no summary line\n");
        bad++;
    }
    fclose(out), fclose(ref);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    printf("%d cases, %d wrong\n", n, bad);
    return bad ? 1 : 0;
}
