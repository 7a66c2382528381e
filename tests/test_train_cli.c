/* tests/test_train_cli.c: `rft train`, `rft eval` and `rft sample` end to end
 * through $RFT_BIN on a tiny model made with `rft init` (d_model 32, 2
 * layers, a 284-token byte-level BPE, tests/fixtures/tiny_bpe_tokenizer.json) and the small configs
 * and datasets in tests/fixtures/train_* (helpers: tests/train_cli_common.h):
 *   1. resume is bitwise: 3 steps + `--resume` to 6 (crossing an epoch) gives
 *      the metrics.jsonl records (all keys but timing keys and tokens_per_s) and
 *      every /model, /optimizer and /trainer dataset of the final checkpoint
 *      (config_text aside) of an uninterrupted 6-step run; for grpo with
 *      ppo_epochs 2, mini_batches 2, kl_beta > 0, and for sft. The split uses
 *      --set train.max_steps=3; with a constant learning rate that is the
 *      same trajectory (a decaying schedule depends on max_steps: there the
 *      equivalent split is an interrupted run, tests/test_train_faults.c);
 *   2. bad input exits 2 with one stderr line naming file:line and key
 *      (config keys, types, ranges, sections, --set, model file, dataset
 *      rows, grader type), and a second run into an out_dir that holds
 *      checkpoints refuses without touching them;
 *   3. rft eval --json (documented keys; equals the valid_reward_mean the
 *      trainer logged for the same checkpoint; --compare) and rft sample
 *      --json (token ids, finish reasons; an empty prompt exits 2);
 *   4. the DESIGN.md metric names in an RL run's metrics.jsonl, samples.jsonl
 *      records with prompt, completion, reward, sub_rewards; the step count
 *      from n_epochs, each record's epoch, pass@k during training;
 *   5. model.dtype bf16: resume is bitwise too, the run differs from fp32's,
 *      an fp32 checkpoint resumes in bf16;
 *   6. utf8_sanitize, which keeps completions that end inside a UTF-8
 *      character in samples.jsonl and `rft sample --json`;
 *   7. the command line: numeric options are parsed strictly (a bad value
 *      exits 2 with one line naming the option and the value), --opt=VALUE
 *      works like --opt VALUE, an option without its value says so, -h /
 *      --help of every command prints its usage to stdout and exits 0, rft
 *      --version, and rft eval evaluates every row unless --n (whatever
 *      train.eval_max_rows says).
 * Exit 1 on any failure, 77 when $RFT_BIN is missing. */
#define _GNU_SOURCE
#include "train_cli_common.h"

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
    char so[600];
    path_in(so, sizeof so, "train_stdout.txt");
    char *o = slurp(so);
    check(strstr(o, "outputs:") && strstr(o, a) && strstr(o, "step-000006.h5") &&
              (strcmp(name, "grpo") || (strstr(o, "valid_reward_mean: start") && strstr(o, "best.h5"))),
          "%s: the end summary names the outputs, the final checkpoint (and start/final valid reward)", name);
    free(o);
    const char *three[] = {"train.max_steps=3", NULL};
    rc = train(cfg, b, three, NULL, &err);
    check(rc == 0, "%s: first 3 steps (rc %d) %s", name, rc, rc ? last_line(err) : "");
    free(err);
    rc = train(cfg, b, NULL, "", &err);
    check(rc == 0 && strstr(err, "step 4/6") && !strstr(err, "step 3/6"),
          "%s: --resume continues at step 4 of 6 (rc %d) %s", name, rc, rc ? last_line(err) : "");
    int n_notes = 0;
    for (const char *q = err; (q = strstr(q, "note: resuming with")); q++) n_notes++;
    check(strstr(err, "note: resuming with train.max_steps changed: 3 -> 6") && n_notes == 1,
          "%s: the resumed run notes the one setting that differs from the checkpoint's (max_steps 3 -> 6; %d notes)",
          name, n_notes);
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

/* model.dtype bf16: resume is bitwise in bf16 too; the run differs from the
   fp32 one (control: the setting took effect); an fp32 run resumes in bf16
   (checkpoints hold fp32 master weights whatever the precision) */
static void test_bf16_training(void) {
    char *base = slurp("tests/fixtures/train_grpo.yaml"), cfg[512];
    const char *from = "  path: MODEL\n";
    char *p = strstr(base, from);
    check(p != NULL, "bf16: the base config has a model.path line");
    if (!p) return;
    size_t n = strlen(base) + 64;
    char *text = malloc(n);
    snprintf(text, n, "%.*s%s  dtype: bf16\n%s", (int)(p - base), base, from, p + strlen(from));
    path_in(cfg, sizeof cfg, "train_grpo_bf16.yaml");
    write_text(cfg, text);
    free(text), free(base);
    test_resume("grpo_bf16", cfg);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/grpo_straight/checkpoints/step-000006.h5", dir);
    snprintf(b, sizeof b, "%s/grpo_bf16_straight/checkpoints/step-000006.h5", dir);
    check(same_checkpoint_q(a, b, 1) < 0, "bf16: the bf16 run's step-6 checkpoint differs from the fp32 run's");
    char out[600], *err = NULL;
    snprintf(out, sizeof out, "%s/fp32_then_bf16", dir);
    const char *three[] = {"train.max_steps=3", NULL};
    int rc = train("tests/fixtures/train_grpo.yaml", out, three, NULL, &err);
    free(err);
    rc = rc ? rc : train(cfg, out, NULL, "", &err);
    check(rc == 0 && strstr(err, "step 4/6"), "bf16: an fp32 run's checkpoint resumes in bf16 (rc %d) %s", rc,
          rc ? last_line(err) : "");
    free(err);
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

/* ---- 3. eval and sample ---- */

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

    /* eval bad input: a config without graders, a bad dataset row */
    rc = run_rft(&out, &err, "eval", "tests/fixtures/train_sft.yaml", "--set", mset, NULL);
    expect_bad("rft eval with a config without graders", rc, err, "train_sft.yaml", "graders", NULL);
    free(out), free(err);
    char bad[600];
    path_in(bad, sizeof bad, "eval_bad.jsonl");
    write_text(bad, "{\"messages\": [{\"role\": \"user\", \"content\": \"1+1\"}], \"answer\": \"2\"}\n"
                    "{\"messages\": [{\"role\": \"user\", \"content\": \"1+2\"}]}\n");
    rc = run_rft(&out, &err, "eval", "tests/fixtures/train_grpo.yaml", "--data", bad, "--set", mset, NULL);
    char loc[700];
    snprintf(loc, sizeof loc, "%s:2:", bad);
    expect_bad("rft eval --data with a row lacking {{item.answer}}", rc, err, loc, "answer", NULL);
    free(out), free(err);

    /* sample */
    rc = run_rft(&out, &err, "sample", "--model", model_path, "--prompt", "12+30", "--n", "3", "--max-new-tokens", "6",
                 "--json", "--seed", "5", "--threads", "1", NULL);
    int lines = 0, good = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        json_t *x = json_loads(line, JSON_ALLOW_NUL, NULL);
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
    /* bf16 rollouts: greedy completions of a trained model mostly agree with fp32 */
    char *o32 = NULL, *o16 = NULL, *e32 = NULL, *e16 = NULL;
    int r32 = run_rft(&o32, &e32, "sample", "--model", best, "--prompt", "12+30", "--n", "1", "--temperature", "0",
                      "--max-new-tokens", "8", "--json", NULL);
    int r16 = run_rft(&o16, &e16, "sample", "--model", best, "--prompt", "12+30", "--n", "1", "--temperature", "0",
                      "--max-new-tokens", "8", "--json", "--dtype", "bf16", NULL);
    json_t *j32 = r32 ? NULL : json_loads(o32, 0, NULL), *j16 = r16 ? NULL : json_loads(o16, 0, NULL);
    json_t *t32 = json_object_get(j32, "tokens"), *t16 = json_object_get(j16, "tokens");
    check(r32 == 0 && r16 == 0 && json_array_size(t16) >= 1 &&
              json_integer_value(json_array_get(t16, 0)) == json_integer_value(json_array_get(t32, 0)),
          "rft sample --dtype bf16: runs, first greedy token equals fp32's (rc %d/%d) %s%s", r32, r16, r32 ? e32 : "",
          r16 ? e16 : "");
    json_decref(j32), json_decref(j16);
    free(o32), free(o16), free(e32), free(e16);
    rc = run_rft(&out, &err, "sample", "--model", model_path, "--prompt", "hi", "--dtype", "fp16", NULL);
    expect_bad("rft sample --dtype fp16", rc, err, "--dtype", NULL, NULL);
    free(out), free(err);
}

/* ---- 7. the command line ---- */

/* rft ARGS... (NULL-terminated) must exit 2 with one stderr line holding needle */
static void cli_bad(const char *needle, ...) {
    char *argv[24], what[2048] = "rft", op[512], ep[512];
    int n = 0;
    argv[n++] = (char *)rft;
    va_list ap;
    va_start(ap, needle);
    for (const char *a; n < 23 && (a = va_arg(ap, const char *));) {
        argv[n++] = (char *)a;
        snprintf(what + strlen(what), sizeof what - strlen(what), " %s", a);
    }
    va_end(ap);
    argv[n] = NULL;
    path_in(op, sizeof op, "stdout.txt");
    path_in(ep, sizeof ep, "stderr.txt");
    int rc = wait_status(spawn(argv, op, ep));
    char *err = slurp(ep);
    expect_bad(what, rc, err, needle, NULL, NULL);
    free(err);
}

static void test_command_line(void) {
    const char *cfg = "tests/fixtures/train_grpo.yaml";
    char mset[600], mset_eq[700], init_out[600];
    snprintf(mset, sizeof mset, "model.path=%s", model_path);
    snprintf(mset_eq, sizeof mset_eq, "--set=model.path=%s", model_path);
    path_in(init_out, sizeof init_out, "cli_init.h5");
    /* eval: strict numbers, the --gpus message of train, --opt=VALUE, a missing value */
    cli_bad("--n abc: expected", "eval", cfg, "--set", mset, "--n", "abc", NULL);
    cli_bad("--n 2x: expected", "eval", cfg, "--set", mset, "--n", "2x", NULL);
    cli_bad("--n -1: expected", "eval", cfg, "--set", mset, "--n", "-1", NULL);
    cli_bad("--samples xyz: expected", "eval", cfg, "--set", mset, "--samples", "xyz", NULL);
    cli_bad("--samples 2000: expected", "eval", cfg, "--set", mset, "--samples", "2000", NULL);
    cli_bad("--n  2: expected", "eval", cfg, "--set", mset, "--n", " 2", NULL); /* plain decimals only */
    cli_bad("--n +2: expected", "eval", cfg, "--set", mset, "--n", "+2", NULL);
    cli_bad("--temperature 0x1: expected", "sample", "--model", model_path, "--prompt", "hi", "--temperature", "0x1",
            NULL);
    const char *gpus[] = {"0", "-1", "abc", "2000"};
    for (int i = 0; i < 4; i++) {
        char want[100], eq[100];
        snprintf(want, sizeof want, "rft eval: --gpus %s: expected a number of GPUs from 1 to 1024", gpus[i]);
        cli_bad(want, "eval", cfg, "--set", mset, "--gpus", gpus[i], NULL);
        snprintf(eq, sizeof eq, "--gpus=%s", gpus[i]);
        cli_bad(want, "eval", cfg, "--set", mset, eq, NULL);
    }
    cli_bad("rft eval: --gpus: needs a value", "eval", cfg, "--set", mset, "--gpus", NULL);
    cli_bad("rft eval: --set: needs a value", "eval", cfg, "--set", NULL);
    cli_bad("rft eval: --n: needs a value", "eval", cfg, "--n", NULL);
    cli_bad("--gpus needs device: cuda", "eval", cfg, "--gpus=1", NULL); /* --gpus=1 taken */
    {
        char *out, *err;
        int rc = run_rft(&out, &err, "eval", cfg, mset_eq, "--n=2", "--samples=2", "--json", NULL);
        json_t *o = json_loads(out, 0, NULL);
        check(rc == 0 && json_integer_value(json_object_get(o, "rows")) == 2 &&
                  json_integer_value(json_object_get(o, "samples_per_row")) == 2,
              "rft eval --set=K=V --n=2 --samples=2: rows 2, 2 samples per row (rc %d) %s", rc, rc ? err : "");
        json_decref(o);
        free(out), free(err);
        /* every row of the data unless --n: train.eval_max_rows (training's evaluations) does not apply */
        rc = run_rft(&out, &err, "eval", cfg, "--set", mset, "--set", "train.eval_max_rows=2", "--json", NULL);
        o = json_loads(out, 0, NULL);
        check(rc == 0 && json_integer_value(json_object_get(o, "rows")) == 4,
              "rft eval with train.eval_max_rows=2: all 4 valid rows (rc %d) %s", rc, rc ? err : "");
        json_decref(o);
        free(out), free(err);
    }
    /* train: the same --gpus parsing */
    cli_bad("rft train: --gpus 0: expected a number of GPUs from 1 to 1024", "train", cfg, "--gpus=0", NULL);
    cli_bad("rft train: --gpus: needs a value", "train", cfg, "--gpus", NULL);
    cli_bad("rft train: --set: needs a value", "train", cfg, "--set", NULL);
    cli_bad("--gpus needs device: cuda", "train", cfg, "--gpus=1", NULL);
    /* sample: integer options take integers */
    cli_bad("--n 2.5: expected", "sample", "--model", model_path, "--prompt", "hi", "--n", "2.5", NULL);
    cli_bad("--n abc: expected", "sample", "--model", model_path, "--prompt", "hi", "--n=abc", NULL);
    cli_bad("--max-new-tokens 1e2: expected", "sample", "--model", model_path, "--prompt", "hi", "--max-new-tokens", "1e2", NULL);
    cli_bad("--seed -1: expected", "sample", "--model", model_path, "--prompt", "hi", "--seed=-1", NULL);
    cli_bad("--temperature hot: expected", "sample", "--model", model_path, "--prompt", "hi", "--temperature=hot", NULL);
    cli_bad("rft sample: --max-new-tokens: needs a value", "sample", "--model", model_path, "--prompt", "hi",
            "--max-new-tokens", NULL);
    /* init: --seed and --rope-theta were read with no check */
    const char *tk = "tests/fixtures/tiny_bpe_tokenizer.json";
    cli_bad("--seed xyz: expected", "init", init_out, "--tokenizer", tk, "--d-model", "32", "--n-layer", "2", "--n-head",
            "2", "--d-ff", "64", "--seed", "xyz", NULL);
    cli_bad("--seed -1: expected", "init", init_out, "--tokenizer", tk, "--d-model", "32", "--n-layer", "2", "--n-head",
            "2", "--d-ff", "64", "--seed=-1", NULL);
    cli_bad("--rope-theta abc: expected", "init", init_out, "--tokenizer", tk, "--d-model", "32", "--n-layer", "2",
            "--n-head", "2", "--d-ff", "64", "--rope-theta", "abc", NULL);
    cli_bad("rft init: --d-model: needs a value", "init", init_out, "--tokenizer", tk, "--d-model", NULL);
    check(!file_exists(init_out), "rft init with bad options wrote nothing");
    /* -h / --help: the usage on stdout, exit 0, for every command; bad usage still exits 2 */
    const char *cmds[] = {"train", "eval", "sample", "init", "grade", "convert", "inspect"};
    for (int i = 0; i < 7; i++)
        for (int h = 0; h < 2; h++) {
            char *out, *err, want[64];
            int rc = run_rft(&out, &err, cmds[i], h ? "--help" : "-h", NULL);
            snprintf(want, sizeof want, "usage: rft %s ", cmds[i]);
            check(rc == 0 && !strncmp(out, want, strlen(want)) && !err[0],
                  "rft %s %s: usage on stdout, nothing on stderr, exit 0 (rc %d)", cmds[i], h ? "--help" : "-h", rc);
            free(out), free(err);
        }
    {
        char *out, *err;
        int rc = run_rft(&out, &err, "eval", "--help", NULL);
        check(rc == 0 && strstr(out, "every row") && strstr(out, "eval_max_rows"),
              "rft eval --help says which rows it evaluates");
        free(out), free(err);
        rc = run_rft(&out, &err, "eval", NULL);
        check(rc == 2 && !out[0] && strstr(err, "usage: rft eval"), "rft eval without CONFIG: usage on stderr, exit 2");
        free(out), free(err);
        char *vout, *verr;
        rc = run_rft(&out, &err, "--version", NULL);
        int rc2 = run_rft(&vout, &verr, "version", NULL);
        check(rc == 0 && rc2 == 0 && !strncmp(out, "rft ", 4) && !strcmp(out, vout),
              "rft --version prints what rft version prints (rc %d): %s", rc, out);
        free(out), free(err), free(vout), free(verr);
    }
}

/* ---- 4. metrics ---- */

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
        json_t *o = json_loads(line, JSON_ALLOW_NUL, NULL);
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

/* the effective configuration: written to out_dir/config.yaml and into every checkpoint, and re-loadable: a run
   from it repeats the original bit for bit */
static void test_effective_config(void) {
    char cfg[600], ck[700], out[600], ma[700], mb[700];
    snprintf(cfg, sizeof cfg, "%s/grpo_straight/config.yaml", dir);
    snprintf(ck, sizeof ck, "%s/grpo_straight/checkpoints/step-000006.h5", dir);
    char *text = slurp(cfg);
    /* /trainer/config_text of the checkpoint */
    char *stored = NULL;
    hid_t f;
    H5E_BEGIN_TRY { f = H5Fopen(ck, H5F_ACC_RDONLY, H5P_DEFAULT); }
    H5E_END_TRY;
    if (f >= 0) {
        hid_t d;
        H5E_BEGIN_TRY { d = H5Dopen2(f, "trainer/config_text", H5P_DEFAULT); }
        H5E_END_TRY;
        if (d >= 0) {
            hid_t t = H5Dget_type(d);
            if (H5Tis_variable_str(t) > 0) {
                hid_t mt = H5Tcopy(H5T_C_S1);
                H5Tset_size(mt, H5T_VARIABLE);
                char *v = NULL;
                if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) >= 0 && v) stored = strdup(v);
                free(v);
                H5Tclose(mt);
            } else {
                size_t n = H5Tget_size(t);
                hid_t sp = H5Dget_space(d);
                hssize_t np = H5Sget_simple_extent_npoints(sp);
                size_t total = n * (size_t)(np > 0 ? np : 1);
                stored = calloc(total + 1, 1);
                hid_t mt = H5Tget_native_type(t, H5T_DIR_ASCEND);
                if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, stored) < 0) stored[0] = 0;
                H5Tclose(mt), H5Sclose(sp);
            }
            H5Tclose(t), H5Dclose(d);
        }
        H5Fclose(f);
    }
    check(text[0] && stored && !strcmp(text, stored) && strstr(text, "ppo_epochs: 2") && strstr(text, "graders:"),
          "out_dir/config.yaml is the effective configuration, equal to the checkpoint's /trainer/config_text");
    free(stored);
    /* a run from config.yaml (only out_dir changed) equals the original */
    snprintf(out, sizeof out, "%s/from_effective", dir);
    char *err;
    int rc = train(cfg, out, NULL, NULL, &err);
    check(rc == 0, "rft train config.yaml (the effective configuration) runs (rc %d) %s", rc, rc ? last_line(err) : "");
    free(err);
    snprintf(ma, sizeof ma, "%s/grpo_straight/metrics.jsonl", dir);
    snprintf(mb, sizeof mb, "%s/metrics.jsonl", out);
    check(same_metrics(ma, mb, 7), "the run from the effective configuration repeats the original's metrics");
    free(text);
}

int main(void) {
    double t0 = now_seconds();
    int rc = tt_setup("traincli");
    if (rc) return rc;
    test_utf8();
    test_command_line();
    test_resume("grpo", "tests/fixtures/train_grpo.yaml");
    test_resume("sft", "tests/fixtures/train_sft.yaml");
    test_bf16_training();
    test_metrics();
    test_effective_config();
    test_epochs();
    test_eval_sample();
    test_bad_input();
    return tt_finish(t0);
}
