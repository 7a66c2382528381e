/* trainer/evaluate.c: evaluation of a policy over a dataset (see evaluate.h). */
#include "evaluate.h"

#include "chat_template.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reward.h"
#include "rollout_grade.h"
#include "util.h"

backend *backend_for_device(const char *device, int index, int threads, char *err, size_t cap) {
    if (!strcmp(device, "cuda")) {
        char e2[512];
        backend *be = backend_cuda_create(index, e2, sizeof e2);
        if (!be) errf(err, cap, "device: cuda: %s", e2);
        return be;
    }
    backend *be = backend_cpu_create(threads);
    if (!be) errf(err, cap, "out of memory creating the CPU backend");
    return be;
}

/* 1 - C(n-c, k) / C(n, k): chance that k of n samples include a pass */
static double pass_at_k(int n, int c, int k) {
    if (n - c < k) return 1.0;
    double p = 1.0;
    for (int i = n - c + 1; i <= n; i++) p *= 1.0 - (double)k / i;
    return 1.0 - p;
}

void rollout_config_from(const rft_config *c, const tokenizer *tok, float temperature, uint64_t seed,
                         int32_t *stop_ids, const char **stops, rollout_config *out) {
    for (int i = 0; i < c->sampling.n_stop; i++) stops[i] = c->sampling.stop[i];
    *out = (rollout_config){.sampler = {.temperature = temperature, .top_k = c->sampling.top_k,
                                        .top_p = c->sampling.top_p, .min_p = c->sampling.min_p},
                            .max_new_tokens = c->sampling.max_new_tokens, .stop_ids = stop_ids,
                            .n_stop_ids = chat_stop_tokens(tok, stop_ids, 8), .stop_strings = stops,
                            .n_stop_strings = c->sampling.n_stop, .seed = seed,
                            .bf16 = !strcmp(c->sampling.dtype, "bf16")};
}

int eval_run(comm *cm, rollout_engine *ro, grader_runner *gr, const rft_config *cfg, const dataset *d, int max_rows,
             int k, uint64_t seed, eval_result *res, char *err, size_t cap) {
    memset(res, 0, sizeof *res);
    double t0 = now_seconds();
    int rows = max_rows > 0 && max_rows < d->n ? max_rows : d->n;
    int G = k > 0 ? k : 1, N = rows * G, NG = cfg->graders.n_graders;
    if (NG > 64) return errf(err, cap, "evaluation: at most 64 graders");
    res->rows = rows, res->k = G, res->n_graders = NG;
    rollout_prompt *pr = calloc(rows, sizeof *pr);
    completion *cs = calloc(N, sizeof *cs);
    json_t **items = calloc(rows, sizeof *items); /* each prompt's row */
    grade_result *gres = calloc((size_t)N * (NG ? NG : 1), sizeof *gres);
    int rc = -1;
    if (!pr || !cs || !items || !gres) {
        errf(err, cap, "evaluation: out of memory");
        goto done;
    }
    for (int i = 0; i < rows; i++)
        pr[i] = (rollout_prompt){.ids = d->rows[i].prompt, .n = d->rows[i].n_prompt, .id = (uint64_t)i};
    int32_t stop[8];
    const char *stops[CONFIG_MAX_STOP];
    rollout_config rc_cfg;
    rollout_config_from(cfg, ro->tok, k > 0 ? cfg->sampling.temperature : 0.0f, rng_key(seed, 0xE7A1, 0, 0), stop,
                        stops, &rc_cfg);
    for (int i = 0; i < rows; i++) items[i] = d->rows[i].json;
    if (rollout_grade_shared(cm, ro, gr, NG, pr, rows, G, &rc_cfg, items, cs, gres, NULL, err, cap)) goto done;
    long len = 0;
    for (int i = 0; i < N; i++) len += cs[i].n_tokens;
    res->mean_length = (double)len / N;
    double rsum = 0;
    long rn = 0;
    double gsum[64] = {0};
    long gn[64] = {0};
    double p1 = 0, pk = 0;
    for (int row = 0; row < rows; row++) {
        int c = 0;
        for (int j = 0; j < G; j++) {
            int i = row * G + j;
            const grade_result *g = &gres[(size_t)i * NG];
            for (int q = 0; q < NG; q++) {
                if (g[q].status == GRADE_OK) gsum[q] += g[q].score, gn[q]++;
                else if (g[q].status == GRADE_ERROR) res->grader_errors[q]++;
                else res->grader_abstain[q]++;
            }
            double r;
            int ferr = 0;
            char why[256];
            if (NG && reward_combine(&cfg->graders.reward, g, &r, &ferr, why, sizeof why) == REWARD_OK) {
                rsum += r, rn++;
                c += r >= cfg->train.pass_threshold;
            } else {
                res->n_masked++;
            }
        }
        p1 += (double)c / G;
        pk += pass_at_k(G, c, G);
    }
    res->reward_mean = rn ? rsum / rn : NAN;
    for (int q = 0; q < NG; q++) res->grader_mean[q] = gn[q] ? gsum[q] / gn[q] : NAN;
    res->pass1 = p1 / rows;
    res->passk = pk / rows;
    res->seconds = now_seconds() - t0;
    rc = 0;
done:
    if (cs)
        for (int i = 0; i < N; i++) completion_free(&cs[i]);
    free(pr), free(cs), free(items), free(gres);
    return rc;
}
