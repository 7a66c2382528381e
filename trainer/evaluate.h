/* trainer/evaluate.h: grading a model's completions over a dataset: greedy
 * (one completion per prompt) or k samples per prompt, every configured
 * grader, the combined reward, per-grader means, error counts, pass@1 and
 * pass@k (unbiased estimator). Used by the trainer's periodic evaluation and
 * by `rft eval`. */
#ifndef RFT_EVALUATE_H
#define RFT_EVALUATE_H

#include "config.h"
#include "dataset.h"
#include "comm.h"
#include "grader.h"
#include "rollout.h"

typedef struct eval_result {
    int rows;              /* prompts evaluated */
    int k;                 /* completions per prompt */
    int n_graders;
    double reward_mean;    /* over completions with an unmasked reward */
    long n_masked;         /* completions whose reward was masked */
    double grader_mean[64];   /* per grader, over its OK grades */
    long grader_errors[64];   /* per grader: errors */
    long grader_abstain[64];
    double pass1, passk;   /* pass@1 and pass@k (k = completions per prompt) */
    double mean_length;    /* completion tokens */
    double seconds;
} eval_result;

/* Rollout settings from cfg's sampling section for tok's model: the chat
 * end-of-turn ids and the configured stop strings end a completion; the
 * sampler takes the given temperature. out points into stop_ids[8] and
 * stops[CONFIG_MAX_STOP], which the caller keeps alive. */
/* The compute backend a config's `device` names: "cuda" (GPU 0; NULL with a
 * message in err when there is none) or "cpu" with `threads` threads. */
backend *backend_for_device(const char *device, int index, int threads, char *err, size_t err_cap);

void rollout_config_from(const rft_config *cfg, const tokenizer *tok, float temperature, uint64_t seed,
                         int32_t *stop_ids, const char **stops, rollout_config *out);

/* Evaluates the first max_rows rows of d (0: all). k = 0: greedy, one
 * completion; k > 0: k samples at the configured temperature. cm (NULL: one
 * rank) splits the rows across ranks; every rank gets the whole result. Completions are
 * keyed by (seed, row) so repeated evaluations see the same randomness. */
int eval_run(comm *cm, rollout_engine *ro, grader_runner *gr, const rft_config *cfg, const dataset *d, int max_rows,
             int k, uint64_t seed, eval_result *res, char *err, size_t err_cap);

#endif
