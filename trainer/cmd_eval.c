/* trainer/cmd_eval.c: `rft eval CONFIG [--model CHECKPOINT] [--data FILE]
 * [--n N] [--samples K] [--compare OTHER] [--json] [--set key=value ...]
 * [--gpus N]`: runs a model over a dataset with the configured graders and
 * prints a per-grader table, error counts and pass@k; --compare puts a
 * second model beside the first (base vs tuned). It evaluates every row of
 * the data unless --n N is given (train.eval_max_rows limits only the
 * evaluations during rft train); -h / --help describes the options. With
 * ranks (--gpus N, or mpirun: comm.h) each rank generates and grades a share
 * of the rows and rank 0 prints the whole result. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "comm.h"
#include "config.h"
#include "convert.h"
#include "dataset.h"
#include "evaluate.h"
#include "grader.h"
#include "rollout.h"
#include "util.h"

#define USAGE                                                                                                          \
    "usage: rft eval CONFIG [--model CHECKPOINT] [--data FILE] [--n N] [--samples K] [--compare OTHER] [--json] "      \
    "[--set section.key=value ...] [--gpus N]\n"

static int usage(void) {
    fprintf(stderr, USAGE);
    return RFT_EXIT_BADINPUT;
}

static void help(void) {
    printf(USAGE "  --model CHECKPOINT  the model to evaluate (.h5, .gguf or a Hugging Face directory; default: model.path)\n"
                 "  --data FILE         the rows to evaluate (JSONL; default: data.valid, else data.train)\n"
                 "  --n N               the first N rows only (default: every row of the file; train.eval_max_rows,\n"
                 "                      which limits the evaluations during rft train, does not apply)\n"
                 "  --samples K         0: greedy; K: K sampled completions per row and pass@K (default: train.eval_samples)\n"
                 "  --compare OTHER     a second model evaluated beside the first\n"
                 "  --json              one JSON object per model instead of the table\n"
                 "  --set key=value     override a config key, as in rft train\n"
                 "  --gpus N            N ranks on this machine's first N GPUs (device: cuda)\n");
}

/* Loads model `path`, evaluates, fills res. Returns an exit status. */
static int eval_one(rft_config *c, const char *path, const char *data, int n, int k, backend *be, grader_runner *gr,
                    comm *cm, eval_result *res, char *err, size_t cap) {
    model_config mc;
    char e2[1024];
    if (model_source_config(path, &mc, e2, sizeof e2)) return errf(err, cap, "%s", e2), RFT_EXIT_BADINPUT;
    int ctx = c->data.max_prompt_tokens + c->sampling.max_new_tokens;
    if (ctx > mc.max_seq) ctx = mc.max_seq;
    model m;
    tokenizer *tok = NULL;
    if (model_import(path, be, ctx > 256 ? ctx : 256, &m, &tok, e2, sizeof e2)) return errf(err, cap, "%s", e2), RFT_EXIT_BADINPUT;
    int rc = RFT_EXIT_BADINPUT;
    dataset d = {0};
    rollout_engine ro = {0};
    if (!tok) {
        errf(err, cap, "%s: the model has no tokenizer", path);
        goto out;
    }
    if (strcmp(c->model.chat_template, "auto") && tokenizer_set_chat_template(tok, c->model.chat_template, e2, sizeof e2)) {
        errf(err, cap, "%s: model.chat_template: %s", c->path, e2);
        goto out;
    }
    dataset_opts o = {.max_prompt_tokens = c->data.max_prompt_tokens, .max_seq = ctx, .graders = c->graders.graders,
                      .n_graders = c->graders.n_graders, .end_of_turn = -1};
    if (dataset_load(data, tok, &o, &d, err, cap)) goto out;
    int G = k > 0 ? k : 1, rows = n > 0 && n < d.n ? n : d.n;
    int mine = (rows + cm->size - 1) / cm->size * G; /* this rank's share of the rows */
    int slots = mine < 128 ? mine : 128;
    if (slots < G) slots = G;
    rc = RFT_EXIT_RUNTIME;
    if (rollout_create(&ro, &m, tok, slots, ctx, err, cap)) goto out;
    if (eval_run(cm, &ro, gr, c, &d, n, k, c->train.seed, res, err, cap)) goto out;
    rc = RFT_EXIT_OK;
out:
    rollout_free(&ro);
    dataset_free(&d);
    tokenizer_free(tok);
    model_free(&m);
    return rc;
}

static json_t *result_json(const rft_config *c, const char *path, const eval_result *r) {
    json_t *o = json_object(), *g = json_object();
    json_object_set_new(o, "model", json_string(path));
    json_object_set_new(o, "rows", json_integer(r->rows));
    json_object_set_new(o, "samples_per_row", json_integer(r->k));
    json_object_set_new(o, "reward_mean", isnan(r->reward_mean) ? json_null() : json_real(r->reward_mean));
    json_object_set_new(o, "masked", json_integer(r->n_masked));
    json_object_set_new(o, "pass@1", json_real(r->pass1));
    char k[32];
    snprintf(k, sizeof k, "pass@%d", r->k);
    if (r->k > 1) json_object_set_new(o, k, json_real(r->passk));
    json_object_set_new(o, "mean_length", json_real(r->mean_length));
    for (int i = 0; i < r->n_graders; i++) {
        json_t *x = json_object();
        json_object_set_new(x, "mean", isnan(r->grader_mean[i]) ? json_null() : json_real(r->grader_mean[i]));
        json_object_set_new(x, "errors", json_integer(r->grader_errors[i]));
        json_object_set_new(x, "abstained", json_integer(r->grader_abstain[i]));
        json_object_set_new(g, c->graders.names[i], x);
    }
    json_object_set_new(o, "graders", g);
    json_object_set_new(o, "seconds", json_real(r->seconds));
    return o;
}

int cmd_eval(int argc, char **argv) {
    const char *path = NULL, *model_path = NULL, *data = NULL, *other = NULL;
    int n = 0, k = -1, json = 0, n_sets = 0, gpus = 0;
    int rank = 0, size = 1, local_rank = 0, local_size = 1; /* under mpirun: rank 0 reports bad input */
    char e2[256];
    comm_env(&rank, &size, &local_rank, &local_size, e2, sizeof e2);
    char **sets = calloc(argc, sizeof *sets), e1[256];
    if (!sets) return RFT_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *set;
        if (cli_is_help(a)) {
            if (!rank) help();
            free(sets);
            return RFT_EXIT_OK;
        }
        /* r: 1 the option was taken, 0 not an option of eval, -1 a bad or missing value (e1) */
        int r = cli_option(argc, argv, &i, "--model", &model_path, e1, sizeof e1);
        if (!r) r = cli_option(argc, argv, &i, "--data", &data, e1, sizeof e1);
        if (!r) r = cli_option(argc, argv, &i, "--compare", &other, e1, sizeof e1);
        if (!r && (r = cli_option(argc, argv, &i, "--set", &set, e1, sizeof e1)) > 0) sets[n_sets++] = (char *)set;
        if (!r) r = cli_int_option(argc, argv, &i, "--n", 0, 1 << 30, "a number of rows from 0 (all) to 1073741824", &n,
                                   e1, sizeof e1);
        if (!r) r = cli_int_option(argc, argv, &i, "--samples", 0, 1024,
                                   "a number of samples per row from 0 (greedy) to 1024", &k, e1, sizeof e1);
        if (!r) r = cli_int_option(argc, argv, &i, "--gpus", 1, CLI_MAX_GPUS, CLI_GPUS_WHAT, &gpus, e1, sizeof e1);
        if (!r && !strcmp(a, "--json")) json = 1, r = 1;
        if (!r && a[0] != '-' && !path) path = a, r = 1;
        if (r < 0) {
            if (!rank) fprintf(stderr, "rft eval: %s\n", e1);
            free(sets);
            return RFT_EXIT_BADINPUT;
        }
        if (!r) {
            free(sets);
            return rank ? RFT_EXIT_BADINPUT : usage();
        }
    }
    if (!path) {
        free(sets);
        return rank ? RFT_EXIT_BADINPUT : usage();
    }
    rft_config c;
    char err[2048];
    if (config_load(path, sets, n_sets, &c, err, sizeof err)) {
        if (!rank) fprintf(stderr, "rft eval: %s\n", err);
        free(sets);
        return RFT_EXIT_BADINPUT;
    }
    free(sets);
    if (!c.have_graders) {
        if (!rank) fprintf(stderr, "rft eval: %s: graders: required\n", path);
        config_free(&c);
        return RFT_EXIT_BADINPUT;
    }
    int status;
    if (comm_start_ranks("eval", path, c.device, gpus, &status)) { /* the starting process: the ranks have ended */
        config_free(&c);
        return status;
    }
    comm_env(&rank, &size, &local_rank, &local_size, e2, sizeof e2); /* a rank now, under --gpus */
    if (!model_path) model_path = c.model.path;
    if (!data) data = c.data.valid[0] ? c.data.valid : c.data.train;
    if (k < 0) k = c.train.eval_samples;
    backend *be = backend_for_device(c.device, local_rank, comm_threads(c.threads), e2, sizeof e2);
    if (!be) {
        snprintf(err, sizeof err, "%s: %s", path, e2);
        comm_report("eval", err);
        config_free(&c);
        return comm_exit(RFT_EXIT_BADINPUT);
    }
    grader_runner *gr = grader_runner_create(c.graders.graders, c.graders.n_graders, c.graders.workers, err, sizeof err);
    comm *cm = NULL;
    int rc = RFT_EXIT_BADINPUT;
    eval_result res[2];
    const char *paths[2] = {model_path, other};
    int n_models = other ? 2 : 1;
    if (!gr) goto out;
    cm = comm_create(be, e2, sizeof e2); /* after the grader workers fork */
    if (!cm) {
        snprintf(err, sizeof err, "joining the ranks: %s", e2);
        rc = RFT_EXIT_RUNTIME;
        goto out;
    }
    for (int i = 0; i < n_models; i++) {
        rc = eval_one(&c, paths[i], data, n, k, be, gr, cm, &res[i], err, sizeof err);
        if (rc) goto out;
    }
    if (cm->rank == 0 && json) { /* rank 0 prints (every rank holds the whole result) */
        for (int i = 0; i < n_models; i++) {
            json_t *o = result_json(&c, paths[i], &res[i]);
            char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
            puts(s);
            free(s);
            json_decref(o);
        }
    } else if (cm->rank == 0) {
        printf("%s over %d rows, %s\n", data, res[0].rows, res[0].k > 1 ? "sampled" : "greedy");
        printf("%-24s", "");
        for (int i = 0; i < n_models; i++) printf(" %28.28s", paths[i]);
        printf("\n%-24s", "reward_mean");
        for (int i = 0; i < n_models; i++) printf(" %28.4f", res[i].reward_mean);
        printf("\n%-24s", "pass@1");
        for (int i = 0; i < n_models; i++) printf(" %28.4f", res[i].pass1);
        if (res[0].k > 1) {
            printf("\npass@%-19d", res[0].k);
            for (int i = 0; i < n_models; i++) printf(" %28.4f", res[i].passk);
        }
        for (int g = 0; g < c.graders.n_graders; g++) {
            printf("\n%-24.24s", c.graders.names[g]);
            for (int i = 0; i < n_models; i++) {
                char cell[64];
                snprintf(cell, sizeof cell, "%.4f (%ld err, %ld abst)", res[i].grader_mean[g], res[i].grader_errors[g],
                         res[i].grader_abstain[g]);
                printf(" %28s", cell);
            }
        }
        printf("\n%-24s", "masked rewards");
        for (int i = 0; i < n_models; i++) printf(" %28ld", res[i].n_masked);
        printf("\n%-24s", "mean length (tokens)");
        for (int i = 0; i < n_models; i++) printf(" %28.1f", res[i].mean_length);
        printf("\n");
    }
    rc = RFT_EXIT_OK;
out:
    if (rc) comm_report("eval", err);
    comm_free(cm, rc != RFT_EXIT_OK);
    if (gr) grader_runner_free(gr);
    be->destroy(be);
    config_free(&c);
    return comm_exit(rc);
}
