/* tests/test_grader_item.c: what plugins see of a row (item_get with dotted
 * paths and [index], strings unquoted, other values as compact JSON with
 * shortest round-trip numbers; item_json), the YAML -> JSON rules used for
 * grader configs, and the graders/reward section parser (defaults, built-in
 * config JSON, errors naming file:line and key). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grader_config.h"
#include "grader_item.h"

#include "check.h"

static void expect_get(const rft_host *h, rft_item *it, const char *path, const char *want) {
    size_t len = 12345;
    const char *got = h->item_get(it, path, &len);
    if (!want) {
        CHECK(got == NULL, "item_get(%s) = '%s', want NULL", path, got);
        return;
    }
    CHECK(got && !strcmp(got, want) && len == strlen(want), "item_get(%s) = '%s' (len %zu), want '%s'", path,
          got ? got : "(null)", len, want);
}

static char tmpdir[] = "/tmp/rft_test_item_XXXXXX";

static int load_cfg(const char *yaml, grader_config *c, char *err, size_t cap) {
    char path[256];
    snprintf(path, sizeof path, "%s/cfg.yaml", tmpdir);
    FILE *f = fopen(path, "w");
    fputs(yaml, f);
    fclose(f);
    return grader_config_load(path, c, err, cap);
}

static void expect_cfg_error(const char *yaml, const char *want) {
    grader_config c;
    char err[1024] = "";
    int rc = load_cfg(yaml, &c, err, sizeof err);
    CHECK(rc == -1 && strstr(err, want), "config error '%s' does not contain '%s'", err, want);
    if (rc == 0) grader_config_free(&c);
}

int main(void) {
    json_error_t je;
    json_t *row = json_loads("{\"answer\": \"42\", \"text\": \"a \\\"quoted\\\" line\\n\", \"n\": 7, \"x\": 0.1,"
                             " \"big\": 1e300, \"third\": 0.3333333333333333, \"whole\": 3.0, \"t\": true,"
                             " \"z\": null, \"nums\": [3, 1.5, \"s\", [4, 5]],"
                             " \"meta\": {\"target\": 24, \"tags\": [\"a\", \"b\"], \"deep\": [{\"k\": \"v\"}]},"
                             " \"dot.key\": 1, \"uni\": \"\\u00e9\\u4e2d\"}",
                             0, &je);
    CHECK(row != NULL, "fixture JSON: %s", je.text);
    grader_host gh;
    grader_host_init(&gh, "t");
    const rft_host *h = &gh.host;
    CHECK(h->abi_version == RFT_GRADER_ABI_VERSION, "host ABI");
    rft_item it;
    grader_item_init(&it, row);
    expect_get(h, &it, "answer", "42");
    expect_get(h, &it, "text", "a \"quoted\" line\n");
    expect_get(h, &it, "n", "7");
    expect_get(h, &it, "x", "0.1");
    expect_get(h, &it, "big", "1e+300");
    expect_get(h, &it, "third", "0.3333333333333333");
    expect_get(h, &it, "whole", "3.0");
    expect_get(h, &it, "t", "true");
    expect_get(h, &it, "z", "null");
    expect_get(h, &it, "nums", "[3,1.5,\"s\",[4,5]]");
    expect_get(h, &it, "nums[0]", "3");
    expect_get(h, &it, "nums[2]", "s");
    expect_get(h, &it, "nums.1", "1.5");
    expect_get(h, &it, "nums[-1]", "[4,5]");
    expect_get(h, &it, "nums[3][1]", "5");
    expect_get(h, &it, "nums[3].0", "4");
    expect_get(h, &it, "nums[4]", NULL);
    expect_get(h, &it, "nums[x]", NULL);
    expect_get(h, &it, "meta.target", "24");
    expect_get(h, &it, "meta.tags[1]", "b");
    expect_get(h, &it, "meta.deep[0].k", "v");
    expect_get(h, &it, "meta", "{\"target\":24,\"tags\":[\"a\",\"b\"],\"deep\":[{\"k\":\"v\"}]}");
    expect_get(h, &it, "meta.", NULL);
    expect_get(h, &it, "meta..target", NULL);
    expect_get(h, &it, "missing", NULL);
    expect_get(h, &it, "answer.x", NULL);
    expect_get(h, &it, "uni", "\xc3\xa9\xe4\xb8\xad");
    /* earlier strings stay valid while later ones are made (arena blocks never move) */
    const char *a = h->item_get(&it, "meta", NULL);
    for (int i = 0; i < 2000; i++) h->item_get(&it, "nums", NULL);
    CHECK(a && !strcmp(a, "{\"target\":24,\"tags\":[\"a\",\"b\"],\"deep\":[{\"k\":\"v\"}]}"), "arena moved a string");
    size_t len;
    const char *all = h->item_json(&it, &len);
    json_t *back = all ? json_loads(all, 0, NULL) : NULL;
    CHECK(back && json_equal(back, row) && len == strlen(all), "item_json does not round-trip: %s", all ? all : "(null)");
    CHECK(all && strncmp(all, "{\"answer\":\"42\",\"text\":", 22) == 0, "item_json keeps key order: %.40s", all);
    json_decref(back);
    grader_item_free(&it);

    /* YAML -> JSON */
    CHECK(mkdtemp(tmpdir) != NULL, "mkdtemp");
    const char *build = getenv("RFT_BUILD");
    char good[1024], yaml[4096];
    snprintf(good, sizeof good, "%s/tests/faults/good.so", build ? build : "build");
    snprintf(yaml, sizeof yaml,
             "other_section: {x: 1}\n"
             "graders:\n"
             "  mine:\n"
             "    plugin: %s\n"
             "    timeout_ms: 1500\n"
             "    memory_mb: 300\n"
             "    isolation: inline\n"
             "    config:\n"
             "      i: 12\n"
             "      neg: -3\n"
             "      f: 0.25\n"
             "      e: 1e-3\n"
             "      s: '12'\n"
             "      d: \"true\"\n"
             "      b: true\n"
             "      B: False\n"
             "      n: ~\n"
             "      n2: null\n"
             "      empty:\n"
             "      word: hello world\n"
             "      ver: 1.2.3\n"
             "      inf: .inf\n"
             "      list: [1, a, 2.5, {k: v}]\n"
             "      block: |\n"
             "        line1\n"
             "        line2\n"
             "  plain:\n"
             "    plugin: %s\n"
             "reward:\n"
             "  weights: {mine: 2, plain: 0}\n"
             "  on_error: zero\n"
             "  max_error_rate: 0.2\n"
             "  workers: 3\n",
             good, good);
    grader_config c;
    char err[1024] = "";
    int rc = load_cfg(yaml, &c, err, sizeof err);
    CHECK(rc == 0, "config: %s", err);
    if (rc == 0) {
        CHECK(c.n_graders == 2 && !strcmp(c.names[0], "mine") && !strcmp(c.names[1], "plain"), "names");
        grader_spec *g = &c.graders[0];
        CHECK(g->timeout_ms == 1500 && g->memory_mb == 300 && g->isolation == GRADER_ISOLATION_INLINE &&
                  g->type[0] == 0,
              "host keys");
        const char *want = "{\"i\":12,\"neg\":-3,\"f\":0.25,\"e\":0.001,\"s\":\"12\",\"d\":\"true\",\"b\":true,"
                           "\"B\":false,\"n\":null,\"n2\":null,\"empty\":null,\"word\":\"hello world\",\"ver\":"
                           "\"1.2.3\",\"inf\":\".inf\",\"list\":[1,\"a\",2.5,{\"k\":\"v\"}],\"block\":\"line1\\nline2\\n\"}";
        CHECK(!strcmp(g->config_json, want), "config json\n got %s\nwant %s", g->config_json, want);
        CHECK(!strcmp(c.graders[1].config_json, "{}") && c.graders[1].timeout_ms == GRADER_DEFAULT_TIMEOUT_MS &&
                  c.graders[1].memory_mb == GRADER_DEFAULT_MEMORY_MB &&
                  c.graders[1].isolation == GRADER_ISOLATION_PROCESS,
              "defaults");
        CHECK(c.reward.weights && c.reward.weights[0] == 2 && c.reward.used[0] && !c.reward.used[1] &&
                  c.reward.on_error == REWARD_ON_ERROR_ZERO && c.reward.max_error_rate == 0.2 && c.workers == 3,
              "reward section");
        grader_config_free(&c);
    }
    /* a built-in grader gets its whole mapping minus host keys */
    char sc[4096];
    if (grader_find_builtin("string_check", sc, sizeof sc, err, sizeof err) == 0) {
        rc = load_cfg("graders:\n  exact:\n    type: string_check\n    operation: eq\n    input: "
                      "\"{{sample.output_text}}\"\n    reference: \"{{item.answer}}\"\n    timeout_ms: 100\n"
                      "    config: {extra: 1}\nreward:\n  formula: exact * 2\n",
                      &c, err, sizeof err);
        CHECK(rc == 0, "builtin config: %s", err);
        if (rc == 0) {
            CHECK(!strcmp(c.graders[0].config_json, "{\"operation\":\"eq\",\"input\":\"{{sample.output_text}}\","
                                                     "\"reference\":\"{{item.answer}}\",\"extra\":1}"),
                  "builtin config json %s", c.graders[0].config_json);
            CHECK(!strcmp(c.graders[0].type, "string_check") && strstr(c.graders[0].path, "string_check.so") &&
                      c.graders[0].timeout_ms == 100 && c.reward.formula && c.reward.used[0],
                  "builtin spec");
            grader_config_free(&c);
        }
    } else {
        printf("string_check.so not built: skipping the built-in config check (%s)\n", err);
    }

    /* errors name file:line and key */
    expect_cfg_error("graders:\n  a:\n    type: nosuch\n", "cfg.yaml:3: graders.a.type: unknown grader type 'nosuch'");
    expect_cfg_error("graders:\n  a:\n    input: x\n", "cfg.yaml:3: graders.a: missing `type:`");
    expect_cfg_error("graders:\n  a:\n    plugin: /nope/libx.so\n",
                     "cfg.yaml:3: graders.a.plugin: grader plugin '/nope/libx.so' not found");
    expect_cfg_error("graders:\n  a: 3\n", "cfg.yaml:2: graders.a: expected a mapping");
    expect_cfg_error("reward: {}\n", "no `graders:` section");
    expect_cfg_error("graders:\n  a: {type: x\n", "cfg.yaml:3: YAML syntax error");
    snprintf(yaml, sizeof yaml, "graders:\n  a:\n    plugin: %s\n    timeout_ms: -5\n", good);
    expect_cfg_error(yaml, "cfg.yaml:4: graders.a.timeout_ms: expected an integer from 1");
    snprintf(yaml, sizeof yaml, "graders:\n  a:\n    plugin: %s\n    isolation: thread\n", good);
    expect_cfg_error(yaml, "cfg.yaml:4: graders.a.isolation: expected process or inline");
    snprintf(yaml, sizeof yaml, "graders:\n  a:\n    plugin: %s\n    tolerance: 3\n", good);
    expect_cfg_error(yaml, "graders.a: unknown key 'tolerance' for a plugin grader");
    snprintf(yaml, sizeof yaml, "graders:\n  a:\n    plugin: %s\n  a:\n    plugin: %s\n", good, good);
    expect_cfg_error(yaml, "cfg.yaml:4: graders.a: defined twice");
    snprintf(yaml, sizeof yaml, "graders:\n  correct:\n    plugin: %s\nreward:\n  formula: \"correct + corect\"\n",
             good);
    expect_cfg_error(yaml, "cfg.yaml:5: reward.formula: column 11: unknown name 'corect' (graders: correct)");
    snprintf(yaml, sizeof yaml, "graders:\n  a:\n    plugin: %s\nreward:\n  weights: {b: 1}\n", good);
    expect_cfg_error(yaml, "cfg.yaml:5: reward.weights: unknown grader 'b' (graders: a)");
    snprintf(yaml, sizeof yaml, "graders:\n  a:\n    plugin: %s\nreward:\n  on_error: ignore\n", good);
    expect_cfg_error(yaml, "cfg.yaml:5: reward.on_error: expected mask, zero or abort");
    snprintf(yaml, sizeof yaml, "graders:\n  a:\n    plugin: %s\nreward:\n  max_error_rate: 5\n", good);
    expect_cfg_error(yaml, "cfg.yaml:5: reward.max_error_rate: expected a number from 0 to 1");
    snprintf(yaml, sizeof yaml, "graders:\n  a:\n    plugin: %s\nreward:\n  weights: {a: 1}\n  formula: a\n", good);
    expect_cfg_error(yaml, "reward: give either weights or formula, not both");
    snprintf(yaml, sizeof yaml, "graders:\n  a:\n    plugin: %s\nreward:\n  wieghts: {a: 1}\n", good);
    expect_cfg_error(yaml, "cfg.yaml:5: reward: unknown key 'wieghts'");

    char path[300];
    snprintf(path, sizeof path, "%s/cfg.yaml", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    json_decref(row);
    if (fails) {
        fprintf(stderr, "%d failures\n", fails);
        return 1;
    }
    printf("ok\n");
    return 0;
}
