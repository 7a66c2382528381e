/* trainer/cmd_grade.c: `rft grade CONFIG --samples FILE [--json]`: runs the
 * configured graders and reward on given completions, without a model, and
 * prints per row the reward, each grader's sub-reward and error, then a
 * summary (mean per grader, errors by kind, latency). Exit 0 when every row
 * was graded, 1 when reward.max_error_rate is exceeded (or on_error: abort
 * met an error), 2 for bad input. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "grader.h"
#include "grader_config.h"
#include "grader_item.h"
#include "reward.h"
#include "util.h"

#define GRADE_CHUNK 4096

typedef struct sample_row {
    json_t *item;
    char *text;
    size_t text_len;
    int32_t *tokens;
    size_t n_tokens;
    int finished;
} sample_row;

typedef struct grader_stats {
    long ok, abstain, errors, kinds[GRADE_KIND_COUNT];
    double sum, lat_sum, lat_max;
    long lat_n;
} grader_stats;

static int usage_error(const char *msg) {
    fprintf(stderr, "rft grade: %s\nusage: rft grade CONFIG --samples FILE [--data DATASET] [--json] [--workers N] [--inline]\n", msg);
    return RFT_EXIT_BADINPUT;
}

/* the dataset of --data: one JSON object per non-empty line */
static int load_dataset(const char *path, json_t **out, char *err, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return errf(err, cap, "%s: cannot open: %s", path, strerror(errno));
    json_t *rows = json_array();
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        if (line[strspn(line, " \t\r\n")] == 0) continue;
        json_error_t je;
        json_t *row = json_loadb(line, (size_t)len, 0, &je);
        if (!row || !json_is_object(row)) {
            rc = row ? errf(err, cap, "%s:%d: a dataset row must be a JSON object", path, lineno)
                     : errf(err, cap, "%s:%d: invalid JSON at column %d: %s", path, lineno, je.column, je.text);
            json_decref(row);
            break;
        }
        json_array_append_new(rows, row);
    }
    free(line);
    fclose(f);
    *out = rows;
    return rc;
}

/* JSONL: {"item": {...}, "output_text": "...", "tokens": [...]?, "finished": bool?}; with a
   dataset, "item" may be replaced by "index" (0-based dataset row; default: the
   row's own position among the samples) */
static int load_samples(const char *path, json_t *dataset, sample_row **out, int *n_out, char *err, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return errf(err, cap, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int n = 0, rcap = 0, lineno = 0, rc = 0;
    sample_row *rows = NULL;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        size_t sp = strspn(line, " \t");
        if (line[sp] == 0) continue;
        json_error_t je;
        json_t *row = json_loadb(line, (size_t)len, 0, &je);
        if (!row) {
            rc = errf(err, cap, "%s:%d: invalid JSON at column %d: %s", path, lineno, je.column, je.text);
            break;
        }
        json_t *item = json_object_get(row, "item"), *text = json_object_get(row, "output_text");
        json_t *tokens = json_object_get(row, "tokens"), *fin = json_object_get(row, "finished");
        json_t *index = json_object_get(row, "index");
        if (dataset && json_is_object(row) && !item) {
            json_int_t k = index ? json_integer_value(index) : n;
            if ((index && !json_is_integer(index)) || k < 0 || (size_t)k >= json_array_size(dataset)) {
                json_decref(row);
                rc = errf(err, cap, "%s:%d: \"index\" %lld is not a row of the dataset (%zu rows)", path, lineno,
                          (long long)k, json_array_size(dataset));
                break;
            }
            item = json_array_get(dataset, (size_t)k);
        }
        const char *bad = !json_is_object(row)                   ? "the row must be a JSON object"
                          : !json_is_object(item)                ? "field \"item\" must be an object (the dataset row)"
                          : !json_is_string(text)                ? "field \"output_text\" must be a string"
                          : tokens && !json_is_array(tokens)     ? "field \"tokens\" must be an array of integers"
                          : fin && !json_is_boolean(fin)         ? "field \"finished\" must be true or false"
                                                                 : NULL;
        if (bad) {
            json_decref(row);
            rc = errf(err, cap, "%s:%d: %s", path, lineno, bad);
            break;
        }
        if (n == rcap) {
            rcap = rcap ? rcap * 2 : 256;
            sample_row *q = realloc(rows, sizeof *rows * rcap);
            if (!q) {
                json_decref(row);
                rc = errf(err, cap, "out of memory");
                break;
            }
            rows = q;
        }
        sample_row *r = &rows[n];
        memset(r, 0, sizeof *r);
        r->item = json_incref(item);
        r->text_len = json_string_length(text);
        r->text = malloc(r->text_len + 1);
        if (r->text) memcpy(r->text, json_string_value(text), r->text_len + 1);
        r->finished = fin ? json_is_true(fin) : 1;
        if (tokens && json_array_size(tokens)) {
            r->n_tokens = json_array_size(tokens);
            r->tokens = malloc(sizeof *r->tokens * r->n_tokens);
            for (size_t t = 0; r->tokens && t < r->n_tokens; t++) {
                json_t *tk = json_array_get(tokens, t);
                if (!json_is_integer(tk)) {
                    bad = "field \"tokens\" must be an array of integers";
                    break;
                }
                r->tokens[t] = (int32_t)json_integer_value(tk);
            }
        }
        n++;
        json_decref(row);
        if (bad) {
            rc = errf(err, cap, "%s:%d: %s", path, lineno, bad);
            break;
        }
        if (!r->text || (r->n_tokens && !r->tokens)) {
            rc = errf(err, cap, "out of memory");
            break;
        }
    }
    free(line);
    fclose(f);
    if (rc == 0 && n == 0) rc = errf(err, cap, "%s: no samples (expected JSON Lines of {\"item\": {...}, \"output_text\": \"...\"})", path);
    *out = rows, *n_out = n;
    return rc;
}

static void free_samples(sample_row *rows, int n) {
    for (int i = 0; i < n; i++) {
        json_decref(rows[i].item);
        free(rows[i].text);
        free(rows[i].tokens);
    }
    free(rows);
}

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* latencies to 4 significant digits: the clock is not more precise than that */
static json_t *jlat(double ms) {
    char b[32];
    snprintf(b, sizeof b, "%.4g", ms);
    return jnum(strtod(b, NULL));
}

static void print_json(json_t *o) {
    char *s = grader_json_compact(o, NULL);
    if (s) puts(s);
    free(s);
}

int cmd_grade(int argc, char **argv) {
    const char *config = NULL, *samples_path = NULL, *data_path = NULL;
    int as_json = 0, workers = -1, force_inline = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--samples") && i + 1 < argc) samples_path = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) data_path = argv[++i];
        else if (!strcmp(argv[i], "--json")) as_json = 1;
        else if (!strcmp(argv[i], "--inline")) force_inline = 1;
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc) {
            char *end;
            long w = strtol(argv[++i], &end, 10);
            if (*end || w < 1 || w > 1024) return usage_error("--workers takes a number from 1 to 1024");
            workers = (int)w;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: rft grade CONFIG --samples FILE [--data DATASET] [--json] [--workers N] [--inline]\n"
                   "  FILE: JSON Lines of {\"item\": {...dataset row...}, \"output_text\": \"...\"}\n"
                   "  --data      a dataset (JSONL); sample rows without \"item\" use its row \"index\"\n"
                   "              (0-based; default: the sample's own position)\n"
                   "  --json      one JSON object per row, then {\"summary\": ...}\n"
                   "  --workers N grader worker processes (default: reward.workers, else one per core)\n"
                   "  --inline    run every grader in-process (no isolation; for debugging)\n");
            return RFT_EXIT_OK;
        } else if (argv[i][0] == '-') {
            char msg[300];
            snprintf(msg, sizeof msg, "unknown or incomplete option '%s'", argv[i]);
            return usage_error(msg);
        } else if (!config) config = argv[i];
        else return usage_error("more than one CONFIG given");
    }
    if (!config) return usage_error("missing CONFIG");
    if (!samples_path) return usage_error("missing --samples FILE");

    char err[2048];
    grader_config cfg;
    if (grader_config_load(config, &cfg, err, sizeof err)) {
        fprintf(stderr, "rft grade: %s\n", err);
        return RFT_EXIT_BADINPUT;
    }
    sample_row *rows = NULL;
    int n = 0;
    json_t *dataset = NULL;
    if ((data_path && load_dataset(data_path, &dataset, err, sizeof err)) ||
        load_samples(samples_path, dataset, &rows, &n, err, sizeof err)) {
        fprintf(stderr, "rft grade: %s\n", err);
        free_samples(rows, n);
        json_decref(dataset);
        grader_config_free(&cfg);
        return RFT_EXIT_BADINPUT;
    }
    json_decref(dataset); /* the rows keep their items */
    if (force_inline)
        for (int g = 0; g < cfg.n_graders; g++) cfg.graders[g].isolation = GRADER_ISOLATION_INLINE;
    if (workers < 0) workers = cfg.workers;
    if (workers <= 0) { /* one per core, but no more than there are rows */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        workers = (int)(cores < 1 ? 1 : cores);
        if (workers > n) workers = n;
    }
    int ng = cfg.n_graders, status = RFT_EXIT_OK;
    grader_runner *runner = grader_runner_create(cfg.graders, ng, workers, err, sizeof err);
    if (!runner) {
        fprintf(stderr, "rft grade: %s: %s\n", config, err);
        free_samples(rows, n);
        grader_config_free(&cfg);
        return RFT_EXIT_BADINPUT;
    }
    grade_result *res = calloc((size_t)n * ng, sizeof *res);
    grader_stats *st = calloc(ng, sizeof *st);
    rft_sample *smp = calloc(GRADE_CHUNK, sizeof *smp);
    json_t **items = calloc(GRADE_CHUNK, sizeof *items);
    if (!res || !st || !smp || !items) {
        fprintf(stderr, "rft grade: out of memory\n");
        status = RFT_EXIT_RUNTIME;
        goto done;
    }
    double t0 = now_seconds();
    for (int lo = 0; lo < n; lo += GRADE_CHUNK) {
        int m = n - lo < GRADE_CHUNK ? n - lo : GRADE_CHUNK;
        for (int i = 0; i < m; i++) {
            sample_row *r = &rows[lo + i];
            smp[i] = (rft_sample){r->text, r->text_len, r->tokens, r->n_tokens, r->finished};
            items[i] = r->item;
        }
        if (grader_runner_grade(runner, smp, items, m, res + (size_t)lo * ng, err, sizeof err)) {
            fprintf(stderr, "rft grade: %s\n", err);
            status = RFT_EXIT_RUNTIME;
            goto done;
        }
    }
    double wall = now_seconds() - t0;

    /* rows */
    long rewarded = 0, formula_errors = 0;
    double reward_sum = 0;
    for (int i = 0; i < n; i++) {
        grade_result *row = res + (size_t)i * ng;
        double reward = 0;
        int ferr = 0;
        char why[256] = "";
        int rc = reward_combine(&cfg.reward, row, &reward, &ferr, why, sizeof why);
        formula_errors += ferr;
        if (rc == REWARD_OK) rewarded++, reward_sum += reward;
        for (int g = 0; g < ng; g++) {
            grade_result *r = &row[g];
            if (r->status == GRADE_OK) st[g].ok++, st[g].sum += r->score;
            else if (r->status == GRADE_ABSTAIN) st[g].abstain++;
            else st[g].errors++, st[g].kinds[r->kind]++;
            st[g].lat_sum += r->seconds, st[g].lat_n++;
            if (r->seconds > st[g].lat_max) st[g].lat_max = r->seconds;
        }
        if (as_json) {
            json_t *o = json_object(), *sub = json_object(), *errs = json_object();
            json_object_set_new(o, "reward", rc == REWARD_OK ? json_real(reward) : json_null());
            for (int g = 0; g < ng; g++) {
                json_object_set_new(sub, cfg.names[g], row[g].status == GRADE_OK ? json_real(row[g].score) : json_null());
                if (row[g].status == GRADE_ERROR) {
                    char e[200];
                    snprintf(e, sizeof e, "%s: %s", grade_kind_name(row[g].kind), row[g].msg);
                    json_object_set_new(errs, cfg.names[g], json_string(e));
                }
            }
            json_object_set_new(o, "sub_rewards", sub);
            json_object_set_new(o, "errors", errs);
            print_json(o);
            json_decref(o);
        } else {
            if (rc == REWARD_OK) printf("row %d: reward %.6g ", i + 1, reward);
            else printf("row %d: reward masked (%s) ", i + 1, why);
            for (int g = 0; g < ng; g++) {
                grade_result *r = &row[g];
                if (r->status == GRADE_OK) printf(" %s=%.6g", cfg.names[g], r->score);
                else if (r->status == GRADE_ABSTAIN) printf(" %s=abstain", cfg.names[g]);
                else printf(" %s=error(%s: %s)", cfg.names[g], grade_kind_name(r->kind), r->msg);
            }
            printf("\n");
        }
    }

    /* the policy */
    char policy[1024] = "";
    if (reward_check_errors(&cfg.reward, res, n, (int)formula_errors, policy, sizeof policy))
        status = RFT_EXIT_RUNTIME;

    /* summary */
    if (as_json) {
        json_t *s = json_object(), *gs = json_object();
        json_object_set_new(s, "rows", json_integer(n));
        json_object_set_new(s, "rewarded", json_integer(rewarded));
        json_object_set_new(s, "masked", json_integer(n - rewarded));
        json_object_set_new(s, "reward_mean", rewarded ? jnum(reward_sum / rewarded) : json_null());
        json_object_set_new(s, "formula_errors", json_integer(formula_errors));
        for (int g = 0; g < ng; g++) {
            json_t *o = json_object(), *k = json_object();
            json_object_set_new(o, "mean", st[g].ok ? jnum(st[g].sum / st[g].ok) : json_null());
            json_object_set_new(o, "ok", json_integer(st[g].ok));
            json_object_set_new(o, "abstain", json_integer(st[g].abstain));
            json_object_set_new(o, "errors", json_integer(st[g].errors));
            for (int kk = 1; kk < GRADE_KIND_COUNT; kk++)
                if (st[g].kinds[kk]) json_object_set_new(k, grade_kind_name(kk), json_integer(st[g].kinds[kk]));
            json_object_set_new(o, "error_kinds", k);
            json_object_set_new(o, "latency_ms_mean", jlat(st[g].lat_n ? 1e3 * st[g].lat_sum / st[g].lat_n : 0));
            json_object_set_new(o, "latency_ms_max", jlat(1e3 * st[g].lat_max));
            json_object_set_new(gs, cfg.names[g], o);
        }
        json_object_set_new(s, "graders", gs);
        json_object_set_new(s, "seconds", jlat(wall));
        json_object_set_new(s, "stopped", policy[0] ? json_string(policy) : json_null());
        json_t *top = json_object();
        json_object_set_new(top, "summary", s);
        print_json(top);
        json_decref(top);
    } else {
        printf("\nrows %d  rewarded %ld  masked %ld", n, rewarded, n - rewarded);
        if (rewarded) printf("  reward mean %.6g", reward_sum / rewarded);
        if (formula_errors) printf("  formula errors %ld", formula_errors);
        printf("  (%.3f s)\n", wall);
        int w = 6;
        for (int g = 0; g < ng; g++)
            if ((int)strlen(cfg.names[g]) > w) w = (int)strlen(cfg.names[g]);
        printf("%-*s %10s %7s %7s %7s  %-10s %s\n", w, "grader", "mean", "ok", "abstain", "errors", "latency ms",
               "errors by kind");
        for (int g = 0; g < ng; g++) {
            char kinds[256] = "";
            size_t used = 0;
            for (int kk = 1; kk < GRADE_KIND_COUNT; kk++)
                if (st[g].kinds[kk] && used < sizeof kinds - 40)
                    used += (size_t)snprintf(kinds + used, sizeof kinds - used, "%s%s=%ld", used ? " " : "",
                                             grade_kind_name(kk), st[g].kinds[kk]);
            char mean[32];
            if (st[g].ok) snprintf(mean, sizeof mean, "%.6g", st[g].sum / st[g].ok);
            else snprintf(mean, sizeof mean, "-");
            char lat[48];
            snprintf(lat, sizeof lat, "%.3g/%.3g", st[g].lat_n ? 1e3 * st[g].lat_sum / st[g].lat_n : 0,
                     1e3 * st[g].lat_max);
            printf("%-*s %10s %7ld %7ld %7ld  %-10s %s\n", w, cfg.names[g], mean, st[g].ok, st[g].abstain,
                   st[g].errors, lat, kinds[0] ? kinds : "-");
        }
        printf("(latency: mean/max per grade)\n");
    }
    fflush(stdout);
    if (policy[0]) fprintf(stderr, "rft grade: %s\n", policy);
done:
    grader_runner_free(runner);
    free(res), free(st), free(smp), free(items);
    free_samples(rows, n);
    grader_config_free(&cfg);
    return status;
}
