/* trainer/config.h: the run configuration: one YAML file (libyaml) with the
 * sections model, data, sampling, algorithm, train, graders and reward, plus
 * `--set section.key=value` overrides. Every field has a documented default
 * (config.c's field table is the reference, printed by `rft train --help-config`);
 * unknown keys, wrong types and out-of-range values are errors naming the
 * file, line and key. The effective configuration is rendered back to YAML
 * (config_render) for the log and every checkpoint. */
#ifndef RFT_CONFIG_H
#define RFT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "grader_config.h"

typedef enum { ALGO_GRPO, ALGO_DR_GRPO, ALGO_DAPO, ALGO_GSPO, ALGO_RLOO, ALGO_REINFORCE_PP, ALGO_SFT } algo_name;
typedef enum { SCALE_GROUP, SCALE_BATCH, SCALE_NONE } scale_mode;
typedef enum { AGG_TOKEN_MEAN, AGG_SEQ_MEAN, AGG_SEQ_SUM_NORM } loss_agg;

#define CONFIG_MAX_STOP 8

typedef struct rft_config {
    char path[1024];          /* the YAML file */
    char device[16];          /* cpu | cuda */
    int threads;              /* CPU threads, 0 = all cores */
    struct {
        char path[1024];      /* .h5 checkpoint, .gguf or Hugging Face directory */
        char chat_template[16]; /* auto | chatml | llama3 | raw */
        char dtype[8];        /* fp32 | bf16 */
    } model;
    struct {
        char train[1024];
        char valid[1024];
        int max_prompt_tokens;
    } data;
    struct {
        int group_size;
        int max_new_tokens;
        float temperature, top_p, min_p;
        int top_k;
        char stop[CONFIG_MAX_STOP][64];
        int n_stop;
        char dtype[8];        /* fp32 | bf16: precision of the rollout matmuls */
    } sampling;
    struct {
        algo_name name;
        scale_mode scale_rewards;
        loss_agg loss_agg;
        float eps_low, eps_high;
        float kl_beta;
        int dynamic_sampling;
        int overlong_buffer;      /* DAPO soft overlong penalty: last N tokens before max_new_tokens */
        float overlong_penalty;   /* penalty at max_new_tokens */
        int ppo_epochs;
        int mini_batches;
        int mask_truncated;
        float entropy_coef;
    } algorithm;
    struct {
        int n_epochs;
        int max_steps;            /* 0: n_epochs over the train set */
        int batch_size;           /* prompts per step */
        float learning_rate;
        char lr_schedule[16];     /* constant | linear | cosine */
        int warmup_steps;
        float min_lr_ratio;
        float weight_decay;
        float beta1, beta2, adam_eps;
        float grad_clip;
        uint64_t seed;
        int eval_interval;        /* steps; 0: only at start and end */
        int eval_samples;         /* 0: greedy; k > 0: k samples per prompt (pass@k) */
        int eval_max_rows;        /* 0: the whole valid set */
        float pass_threshold;     /* a completion passes (pass@k) when its reward >= this */
        int checkpoint_interval;  /* steps; 0: only at the end */
        int keep_checkpoints;
        char out_dir[1024];
        int max_bad_steps;        /* consecutive NaN/inf steps before stopping */
        int log_samples;          /* completions written to samples.jsonl per step */
        int max_tokens_per_pass;  /* tokens per forward/backward micro-batch */
    } train;
    grader_config graders;
    int have_graders;
    json_t *graders_json;     /* the graders / reward sections as given, for config_render */
    json_t *reward_json;
} rft_config;

/* Defaults for every field. */
void config_defaults(rft_config *c);

/* Loads path, then applies the overrides ("section.key=value"). Errors read
   "path:line: section.key: why" (or "--set section.key: why"). */
int config_load(const char *path, char *const *sets, int n_sets, rft_config *c, char *err, size_t err_cap);

/* The effective configuration as YAML (malloc'ed), re-loadable by config_load. */
char *config_render(const rft_config *c);

/* The field reference (key, type, default, meaning) as text. */
void config_print_reference(FILE *f);

void config_free(rft_config *c);

const char *algo_str(algo_name a);

#endif
