/* trainer/config.c: the run configuration. One table lists every field of
 * every section (key, type, bounds, default, meaning); loading, `--set`
 * overrides, rendering and the printed reference all walk that table. The
 * graders/reward sections are handed to grader_config_parse. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util.h"

typedef enum { F_INT, F_FLOAT, F_BOOL, F_STR, F_ENUM, F_STRLIST, F_U64 } field_type;

typedef struct field {
    const char *key;     /* "section.key" ("" section for top level) */
    field_type type;
    size_t off;          /* offset in rft_config */
    size_t size;         /* F_STR: buffer size */
    double lo, hi;       /* bounds for numbers */
    const char *const *names; /* F_ENUM: value names, NULL-terminated */
    const char *def;     /* default, as YAML text */
    const char *doc;
} field;

static const char *const ALGOS[] = {"grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp", "sft", NULL};
static const char *const SCALES[] = {"group", "batch", "none", NULL};
static const char *const AGGS[] = {"token_mean", "seq_mean", "seq_sum_norm", NULL};
/* string fields with a fixed set of values (checked where the value is read, so errors carry the line) */
static const char *const DEVICES[] = {"cpu", "cuda", NULL};
static const char *const TEMPLATES[] = {"auto", "chatml", "llama3", "raw", NULL};
static const char *const DTYPES[] = {"fp32", "bf16", NULL};
static const char *const SCHEDULES[] = {"constant", "linear", "cosine", NULL};
/* sentinels meaning "the algorithm's default" */
#define DEF_BY_ALGO "auto"

#define O(f) offsetof(rft_config, f)
#define S(f) sizeof(((rft_config *)0)->f)
static const field FIELDS[] = {
    {"device", F_STR, O(device), S(device), 0, 0, DEVICES, "cpu", "cpu | cuda"},
    {"threads", F_INT, O(threads), 0, 0, 4096, NULL, "0", "CPU threads; 0 = all cores"},
    {"model.path", F_STR, O(model.path), S(model.path), 0, 0, NULL, "", "policy to start from: .h5 checkpoint, .gguf file or Hugging Face directory (required)"},
    {"model.chat_template", F_STR, O(model.chat_template), S(model.chat_template), 0, 0, TEMPLATES, "auto", "auto (from the model) | chatml | llama3 | raw"},
    {"model.dtype", F_STR, O(model.dtype), S(model.dtype), 0, 0, DTYPES, "fp32", "training precision: fp32 | bf16 (bf16 operands for every linear layer, attention and the LM head, fp32 sums, master weights and optimizer state; tensor cores on a GPU, AVX512_BF16 on a CPU that has it: ~1.5x fp32's speed on a Zen 4). fp32 on a GPU uses TF32 tensor cores (RFT_CUDA_TF32=0: plain fp32)"},
    {"data.train", F_STR, O(data.train), S(data.train), 0, 0, NULL, "", "training JSONL (OpenAI RFT format; required)"},
    {"data.valid", F_STR, O(data.valid), S(data.valid), 0, 0, NULL, "", "validation JSONL (optional)"},
    {"data.max_prompt_tokens", F_INT, O(data.max_prompt_tokens), 0, 1, 1 << 20, NULL, "512", "longer prompts are an error naming the row"},
    {"sampling.group_size", F_INT, O(sampling.group_size), 0, 1, 1024, NULL, "8", "completions per prompt"},
    {"sampling.max_new_tokens", F_INT, O(sampling.max_new_tokens), 0, 1, 1 << 20, NULL, "128", "completion length limit"},
    {"sampling.temperature", F_FLOAT, O(sampling.temperature), 0, 0, 100, NULL, "1.0", "0 = greedy"},
    {"sampling.top_p", F_FLOAT, O(sampling.top_p), 0, 1e-6, 1, NULL, "1.0", "nucleus sampling; 1 = off"},
    {"sampling.top_k", F_INT, O(sampling.top_k), 0, 0, 1 << 24, NULL, "0", "0 = off"},
    {"sampling.min_p", F_FLOAT, O(sampling.min_p), 0, 0, 1, NULL, "0.0", "0 = off"},
    {"sampling.dtype", F_STR, O(sampling.dtype), S(sampling.dtype), 0, 0, DTYPES, "fp32", "rollout precision: fp32 | bf16 (bf16 weights, matmul inputs and KV cache, fp32 sums; ~1.5-2x faster decode; the loss still uses fp32 log-probs)"},
    {"sampling.stop", F_STRLIST, O(sampling.stop), S(sampling.stop[0]), 0, CONFIG_MAX_STOP, NULL, "[]", "stop strings (the end-of-turn token always stops)"},
    {"algorithm.name", F_ENUM, O(algorithm.name), 0, 0, 0, ALGOS, "grpo", "grpo | dr_grpo | dapo | gspo | rloo | reinforce_pp | sft"},
    {"algorithm.scale_rewards", F_ENUM, O(algorithm.scale_rewards), 0, 0, 0, SCALES, DEF_BY_ALGO, "group | batch | none (auto: by algorithm, see docs/algorithms.md)"},
    {"algorithm.loss_agg", F_ENUM, O(algorithm.loss_agg), 0, 0, 0, AGGS, DEF_BY_ALGO, "token_mean | seq_mean | seq_sum_norm (auto: by algorithm)"},
    {"algorithm.eps_low", F_FLOAT, O(algorithm.eps_low), 0, 0, 1, NULL, DEF_BY_ALGO, "clip range below 1 (auto: 3e-4 for gspo, else 0.2)"},
    {"algorithm.eps_high", F_FLOAT, O(algorithm.eps_high), 0, 0, 10, NULL, DEF_BY_ALGO, "clip range above 1 (auto: 0.28 for dapo, 4e-4 for gspo, else eps_low)"},
    {"algorithm.kl_beta", F_FLOAT, O(algorithm.kl_beta), 0, 0, 100, NULL, "0.0", "k3 KL penalty to the initial policy"},
    {"algorithm.dynamic_sampling", F_BOOL, O(algorithm.dynamic_sampling), 0, 0, 1, NULL, DEF_BY_ALGO, "drop groups whose rewards are all equal (auto: on for dapo)"},
    {"algorithm.overlong_buffer", F_INT, O(algorithm.overlong_buffer), 0, -1, 1 << 20, NULL, "-1", "DAPO soft overlong penalty over the last N tokens (-1 auto: 20% of max_new_tokens for dapo, else 0)"},
    {"algorithm.overlong_penalty", F_FLOAT, O(algorithm.overlong_penalty), 0, 0, 100, NULL, "1.0", "penalty reached at max_new_tokens"},
    {"algorithm.ppo_epochs", F_INT, O(algorithm.ppo_epochs), 0, 1, 64, NULL, "1", "passes over each step's rollouts"},
    {"algorithm.mini_batches", F_INT, O(algorithm.mini_batches), 0, 1, 4096, NULL, "1", "optimizer steps per pass"},
    {"algorithm.mask_truncated", F_BOOL, O(algorithm.mask_truncated), 0, 0, 1, NULL, "false", "completions cut at max_new_tokens get no gradient"},
    {"algorithm.entropy_coef", F_FLOAT, O(algorithm.entropy_coef), 0, -10, 10, NULL, "0.0", "entropy bonus coefficient"},
    {"train.n_epochs", F_INT, O(train.n_epochs), 0, 1, 1 << 20, NULL, "1", "passes over the train set"},
    {"train.max_steps", F_INT, O(train.max_steps), 0, 0, 1 << 30, NULL, "0", "stop after this many steps; 0 = n_epochs"},
    {"train.batch_size", F_INT, O(train.batch_size), 0, 1, 1 << 20, NULL, "8", "prompts per step"},
    {"train.learning_rate", F_FLOAT, O(train.learning_rate), 0, 0, 10, NULL, "1e-5", "peak learning rate"},
    {"train.lr_schedule", F_STR, O(train.lr_schedule), S(train.lr_schedule), 0, 0, SCHEDULES, "constant", "constant | linear | cosine"},
    {"train.warmup_steps", F_INT, O(train.warmup_steps), 0, 0, 1 << 30, NULL, "0", "linear warm-up steps"},
    {"train.min_lr_ratio", F_FLOAT, O(train.min_lr_ratio), 0, 0, 1, NULL, "0.0", "floor of the decay, fraction of the peak"},
    {"train.weight_decay", F_FLOAT, O(train.weight_decay), 0, 0, 10, NULL, "0.0", "AdamW decoupled decay (matrices only)"},
    {"train.beta1", F_FLOAT, O(train.beta1), 0, 0, 0.999999, NULL, "0.9", "AdamW beta1"},
    {"train.beta2", F_FLOAT, O(train.beta2), 0, 0, 0.999999999, NULL, "0.999", "AdamW beta2"},
    {"train.adam_eps", F_FLOAT, O(train.adam_eps), 0, 1e-30, 1, NULL, "1e-8", "AdamW epsilon"},
    {"train.grad_clip", F_FLOAT, O(train.grad_clip), 0, 0, 1e9, NULL, "1.0", "max global gradient norm; 0 = off"},
    {"train.seed", F_U64, O(train.seed), 0, 0, 0, NULL, "0", "data order, sampling and initialisation"},
    {"train.eval_interval", F_INT, O(train.eval_interval), 0, 0, 1 << 30, NULL, "0", "evaluate every N steps; 0 = at start and end only"},
    {"train.eval_samples", F_INT, O(train.eval_samples), 0, 0, 1024, NULL, "0", "0 = greedy; k = k samples per prompt (pass@k)"},
    {"train.eval_max_rows", F_INT, O(train.eval_max_rows), 0, 0, 1 << 30, NULL, "0", "rft train's evaluations: the first N valid rows; 0 = all (rft eval: every row, or --n N)"},
    {"train.pass_threshold", F_FLOAT, O(train.pass_threshold), 0, -1e9, 1e9, NULL, "1.0", "a completion passes (pass@1, pass@k) when its reward >= this"},
    {"train.checkpoint_interval", F_INT, O(train.checkpoint_interval), 0, 0, 1 << 30, NULL, "0", "checkpoint every N steps; 0 = at the end only"},
    {"train.keep_checkpoints", F_INT, O(train.keep_checkpoints), 0, 1, 1 << 20, NULL, "2", "step checkpoints kept (best and final are extra)"},
    {"train.out_dir", F_STR, O(train.out_dir), S(train.out_dir), 0, 0, NULL, "out/run", "metrics, samples and checkpoints"},
    {"train.max_bad_steps", F_INT, O(train.max_bad_steps), 0, 1, 1 << 20, NULL, "3", "consecutive non-finite steps before stopping"},
    {"train.log_samples", F_INT, O(train.log_samples), 0, 0, 1 << 20, NULL, "2", "completions written to samples.jsonl per step"},
    {"train.max_tokens_per_pass", F_INT, O(train.max_tokens_per_pass), 0, 16, 1 << 24, NULL, "2048", "tokens per forward/backward micro-batch"},
};
#undef O
#undef S
#define N_FIELDS (int)(sizeof FIELDS / sizeof FIELDS[0])

static const char *const SECTIONS[] = {"model", "data", "sampling", "algorithm", "train", NULL};

/* ---- scalar parsing ---- */

/* Sets one field from text; "auto" (DEF_BY_ALGO) leaves the -1 sentinel. */
static int field_set(rft_config *c, const field *f, const char *v, char *why, size_t cap) {
    char *p = (char *)c + f->off, *end;
    switch (f->type) {
    case F_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (end == v || *end || errno) return errf(why, cap, "'%s' is not an integer", v);
        if (x < f->lo || x > f->hi) return errf(why, cap, "%ld is outside [%g, %g]", x, f->lo, f->hi);
        *(int *)p = (int)x;
        return 0;
    }
    case F_U64: {
        errno = 0;
        if (v[0] == '-') return errf(why, cap, "'%s' must be a non-negative integer", v);
        unsigned long long x = strtoull(v, &end, 10);
        if (end == v || *end || errno) return errf(why, cap, "'%s' is not a non-negative integer", v);
        *(uint64_t *)p = x;
        return 0;
    }
    case F_FLOAT: {
        if (!strcmp(v, DEF_BY_ALGO) && f->def && !strcmp(f->def, DEF_BY_ALGO)) {
            *(float *)p = -1;
            return 0;
        }
        errno = 0;
        double x = strtod(v, &end);
        if (end == v || *end || errno || !isfinite(x)) return errf(why, cap, "'%s' is not a number", v);
        if (x < f->lo || x > f->hi) return errf(why, cap, "%g is outside [%g, %g]", x, f->lo, f->hi);
        *(float *)p = (float)x;
        return 0;
    }
    case F_BOOL:
        if (!strcmp(v, DEF_BY_ALGO) && f->def && !strcmp(f->def, DEF_BY_ALGO)) *(int *)p = -1;
        else if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "yes") || !strcmp(v, "on")) *(int *)p = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "no") || !strcmp(v, "off")) *(int *)p = 0;
        else return errf(why, cap, "'%s' is not true or false", v);
        return 0;
    case F_STR:
        if (strlen(v) >= f->size) return errf(why, cap, "value is longer than %zu bytes", f->size - 1);
        if (f->names) {
            int i = 0;
            while (f->names[i] && strcmp(v, f->names[i])) i++;
            if (!f->names[i]) {
                char list[256] = "";
                for (int j = 0; f->names[j]; j++) {
                    strncat(list, j ? ", " : "", sizeof list - strlen(list) - 1);
                    strncat(list, f->names[j], sizeof list - strlen(list) - 1);
                }
                return errf(why, cap, "'%s' is not one of %s", v, list);
            }
        }
        strcpy(p, v);
        return 0;
    case F_ENUM:
        if (!strcmp(v, DEF_BY_ALGO) && f->def && !strcmp(f->def, DEF_BY_ALGO)) {
            *(int *)p = -1;
            return 0;
        }
        for (int i = 0; f->names[i]; i++)
            if (!strcmp(v, f->names[i])) {
                *(int *)p = i;
                return 0;
            }
        {
            char list[256] = "";
            for (int i = 0; f->names[i]; i++) {
                strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
                strncat(list, f->names[i], sizeof list - strlen(list) - 1);
            }
            return errf(why, cap, "'%s' is not one of %s", v, list);
        }
    case F_STRLIST: { /* from --set: comma-separated; "[]" empty */
        rft_config *cc = c;
        cc->sampling.n_stop = 0;
        if (!strcmp(v, "[]") || !v[0]) return 0;
        const char *s = v;
        while (*s) {
            const char *e = strchr(s, ',');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            if (cc->sampling.n_stop >= CONFIG_MAX_STOP) return errf(why, cap, "at most %d entries", CONFIG_MAX_STOP);
            if (n >= f->size || n == 0) return errf(why, cap, "entries must be 1 to %zu bytes", f->size - 1);
            memcpy(cc->sampling.stop[cc->sampling.n_stop], s, n);
            cc->sampling.stop[cc->sampling.n_stop++][n] = 0;
            s = e ? e + 1 : s + n;
        }
        return 0;
    }
    }
    return errf(why, cap, "internal: unknown field type");
}

static const field *field_find(const char *key) {
    for (int i = 0; i < N_FIELDS; i++)
        if (!strcmp(FIELDS[i].key, key)) return &FIELDS[i];
    return NULL;
}

void config_defaults(rft_config *c) {
    memset(c, 0, sizeof *c);
    char why[256];
    for (int i = 0; i < N_FIELDS; i++) field_set(c, &FIELDS[i], FIELDS[i].def, why, sizeof why);
}

/* ---- YAML ---- */

static int line_of(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static int is_section(const char *k) {
    for (int i = 0; SECTIONS[i]; i++)
        if (!strcmp(SECTIONS[i], k)) return 1;
    return 0;
}

static int yaml_field(rft_config *c, yaml_document_t *doc, const char *path, const char *key, yaml_node_t *v,
                      char *err, size_t cap) {
    const field *f = field_find(key);
    if (!f) return errf(err, cap, "%s:%d: %s: unknown key", path, line_of(v) > 1 ? line_of(v) : 1, key);
    char why[512];
    if (f->type == F_STRLIST) {
        if (v->type != YAML_SEQUENCE_NODE) return errf(err, cap, "%s:%d: %s: expected a list of strings", path, line_of(v), key);
        c->sampling.n_stop = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(doc, *it);
            if (e->type != YAML_SCALAR_NODE) return errf(err, cap, "%s:%d: %s: entries must be strings", path, line_of(e), key);
            const char *s = (const char *)e->data.scalar.value;
            size_t n = e->data.scalar.length;
            if (c->sampling.n_stop >= CONFIG_MAX_STOP)
                return errf(err, cap, "%s:%d: %s: at most %d entries", path, line_of(e), key, CONFIG_MAX_STOP);
            if (n == 0 || n >= f->size || strlen(s) != n)
                return errf(err, cap, "%s:%d: %s: entries must be 1 to %zu bytes", path, line_of(e), key, f->size - 1);
            memcpy(c->sampling.stop[c->sampling.n_stop++], s, n + 1);
        }
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE) return errf(err, cap, "%s:%d: %s: expected a single value", path, line_of(v), key);
    if (strlen((const char *)v->data.scalar.value) != v->data.scalar.length)
        return errf(err, cap, "%s:%d: %s: value contains a NUL byte", path, line_of(v), key);
    if (field_set(c, f, (const char *)v->data.scalar.value, why, sizeof why))
        return errf(err, cap, "%s:%d: %s: %s", path, line_of(v), key, why);
    return 0;
}

/* Fills the "auto" fields from the algorithm, then checks cross-field rules. */
static int config_finish(rft_config *c, char *err, size_t cap) {
    algo_name a = c->algorithm.name;
    if ((int)c->algorithm.scale_rewards < 0)
        c->algorithm.scale_rewards = a == ALGO_DR_GRPO || a == ALGO_RLOO ? SCALE_NONE
                                     : a == ALGO_REINFORCE_PP         ? SCALE_BATCH /* whitened over the batch */
                                                                      : SCALE_GROUP;
    if ((int)c->algorithm.loss_agg < 0)
        c->algorithm.loss_agg = a == ALGO_DAPO || a == ALGO_REINFORCE_PP || a == ALGO_SFT ? AGG_TOKEN_MEAN
                                : a == ALGO_DR_GRPO || a == ALGO_RLOO                   ? AGG_SEQ_SUM_NORM
                                                                                        : AGG_SEQ_MEAN;
    if (c->algorithm.eps_low < 0) c->algorithm.eps_low = a == ALGO_GSPO ? 3e-4f : 0.2f;
    if (c->algorithm.eps_high < 0) c->algorithm.eps_high = a == ALGO_DAPO ? 0.28f : a == ALGO_GSPO ? 4e-4f : c->algorithm.eps_low;
    if (c->algorithm.overlong_buffer < 0) c->algorithm.overlong_buffer = a == ALGO_DAPO ? c->sampling.max_new_tokens / 5 : 0;
    if (c->algorithm.overlong_buffer > c->sampling.max_new_tokens)
        return errf(err, cap, "%s: algorithm.overlong_buffer: %d exceeds sampling.max_new_tokens %d", c->path,
                    c->algorithm.overlong_buffer, c->sampling.max_new_tokens);
    if (c->algorithm.dynamic_sampling < 0) c->algorithm.dynamic_sampling = a == ALGO_DAPO;
    if (a == ALGO_GSPO && c->algorithm.loss_agg == AGG_TOKEN_MEAN)
        return errf(err, cap, "%s: algorithm.loss_agg: gspo uses a sequence-level ratio; use seq_mean or seq_sum_norm", c->path);
    if (a == ALGO_RLOO && c->sampling.group_size < 2)
        return errf(err, cap, "%s: sampling.group_size: rloo needs at least 2 completions per prompt", c->path);
    if (strcmp(c->device, "cpu") && strcmp(c->device, "cuda"))
        return errf(err, cap, "%s: device: '%s' is not cpu or cuda", c->path, c->device);
    if (strcmp(c->model.dtype, "fp32") && strcmp(c->model.dtype, "bf16"))
        return errf(err, cap, "%s: model.dtype: '%s' is not fp32 or bf16", c->path, c->model.dtype);
    if (strcmp(c->model.chat_template, "auto") && strcmp(c->model.chat_template, "chatml") &&
        strcmp(c->model.chat_template, "llama3") && strcmp(c->model.chat_template, "raw"))
        return errf(err, cap, "%s: model.chat_template: '%s' is not auto, chatml, llama3 or raw", c->path, c->model.chat_template);
    if (strcmp(c->train.lr_schedule, "constant") && strcmp(c->train.lr_schedule, "linear") &&
        strcmp(c->train.lr_schedule, "cosine"))
        return errf(err, cap, "%s: train.lr_schedule: '%s' is not constant, linear or cosine", c->path, c->train.lr_schedule);
    if (!c->model.path[0]) return errf(err, cap, "%s: model.path: required", c->path);
    if (!c->data.train[0]) return errf(err, cap, "%s: data.train: required", c->path);
    if (a != ALGO_SFT && !c->have_graders) return errf(err, cap, "%s: graders: required for algorithm %s", c->path, algo_str(a));
    return 0;
}

int config_load(const char *path, char *const *sets, int n_sets, rft_config *c, char *err, size_t cap) {
    config_defaults(c);
    snprintf(c->path, sizeof c->path, "%s", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return errf(err, cap, "%s: %s", path, strerror(errno));
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, fp);
    if (!yaml_parser_load(&parser, &doc)) {
        errf(err, cap, "%s:%d: YAML error: %s", path, (int)parser.problem_mark.line + 1,
             parser.problem ? parser.problem : "malformed document");
        yaml_parser_delete(&parser);
        fclose(fp);
        return -1;
    }
    yaml_parser_delete(&parser);
    fclose(fp);
    int rc = -1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *graders = NULL, *reward = NULL;
    if (!root || root->type != YAML_MAPPING_NODE) {
        errf(err, cap, "%s:1: the configuration must be a mapping of sections", path);
        goto out;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&doc, p->key), *v = yaml_document_get_node(&doc, p->value);
        if (k->type != YAML_SCALAR_NODE) {
            errf(err, cap, "%s:%d: keys must be plain names", path, line_of(k));
            goto out;
        }
        const char *ks = (const char *)k->data.scalar.value;
        if (!strcmp(ks, "graders")) {
            graders = v;
        } else if (!strcmp(ks, "reward")) {
            reward = v;
        } else if (is_section(ks)) {
            if (v->type != YAML_MAPPING_NODE) {
                if (v->type == YAML_SCALAR_NODE && !v->data.scalar.length) continue; /* empty section */
                errf(err, cap, "%s:%d: %s: expected a mapping", path, line_of(v), ks);
                goto out;
            }
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
                yaml_node_t *k2 = yaml_document_get_node(&doc, q->key), *v2 = yaml_document_get_node(&doc, q->value);
                if (k2->type != YAML_SCALAR_NODE) {
                    errf(err, cap, "%s:%d: %s: keys must be plain names", path, line_of(k2), ks);
                    goto out;
                }
                char full[256];
                snprintf(full, sizeof full, "%s.%s", ks, (const char *)k2->data.scalar.value);
                if (!field_find(full)) {
                    errf(err, cap, "%s:%d: %s: unknown key", path, line_of(k2), full);
                    goto out;
                }
                if (yaml_field(c, &doc, path, full, v2, err, cap)) goto out;
            }
        } else if (field_find(ks)) {
            if (yaml_field(c, &doc, path, ks, v, err, cap)) goto out;
        } else {
            errf(err, cap, "%s:%d: %s: unknown section (model, data, sampling, algorithm, train, graders, reward, device, threads)",
                 path, line_of(k), ks);
            goto out;
        }
    }
    if (graders) {
        if (grader_config_parse(&doc, graders, reward, path, &c->graders, err, cap)) goto out;
        c->have_graders = 1;
        c->graders_json = grader_yaml_to_json(&doc, graders);
        c->reward_json = reward ? grader_yaml_to_json(&doc, reward) : NULL;
    } else if (reward) {
        errf(err, cap, "%s:%d: reward: needs a graders section", path, line_of(reward));
        goto out;
    }
    for (int i = 0; i < n_sets; i++) {
        const char *eq = strchr(sets[i], '=');
        char key[256], why[512];
        if (!eq || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof key) {
            errf(err, cap, "--set %s: expected section.key=value", sets[i]);
            goto out;
        }
        memcpy(key, sets[i], eq - sets[i]);
        key[eq - sets[i]] = 0;
        const field *f = field_find(key);
        if (!f) {
            errf(err, cap, "--set %s: unknown key%s", key,
                 !strncmp(key, "graders", 7) || !strncmp(key, "reward", 6) ? " (graders and reward are set in the file)" : "");
            goto out;
        }
        if (field_set(c, f, eq + 1, why, sizeof why)) {
            errf(err, cap, "--set %s: %s", key, why);
            goto out;
        }
    }
    if (config_finish(c, err, cap)) goto out;
    rc = 0;
out:
    yaml_document_delete(&doc);
    if (rc) config_free(c);
    return rc;
}

/* ---- rendering ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += k;
            return;
        }
        size_t nc = (b->cap + k + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) return;
        b->p = np;
        b->cap = nc;
    }
}

/* a YAML double-quoted scalar */
static void sb_quoted(sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') sb_printf(b, "\\%c", ch);
        else if (ch == '\n') sb_printf(b, "\\n");
        else if (ch == '\t') sb_printf(b, "\\t");
        else if (ch < 0x20) sb_printf(b, "\\x%02x", ch);
        else sb_printf(b, "%c", ch);
    }
    sb_printf(b, "\"");
}

static void field_render(sbuf *b, const rft_config *c, const field *f) {
    const char *p = (const char *)c + f->off;
    switch (f->type) {
    case F_INT: sb_printf(b, "%d", *(const int *)p); break;
    case F_U64: sb_printf(b, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case F_FLOAT: sb_printf(b, "%.9g", *(const float *)p); break;
    case F_BOOL: sb_printf(b, "%s", *(const int *)p ? "true" : "false"); break;
    case F_STR: sb_quoted(b, p); break;
    case F_ENUM: sb_printf(b, "%s", f->names[*(const int *)p]); break;
    case F_STRLIST:
        sb_printf(b, "[");
        for (int i = 0; i < c->sampling.n_stop; i++) {
            if (i) sb_printf(b, ", ");
            sb_quoted(b, c->sampling.stop[i]);
        }
        sb_printf(b, "]");
        break;
    }
}

char *config_render(const rft_config *c) {
    sbuf b = {0};
    sb_printf(&b, "# effective configuration of %s\n", c->path);
    for (int i = 0; i < N_FIELDS; i++)
        if (!strchr(FIELDS[i].key, '.')) {
            sb_printf(&b, "%s: ", FIELDS[i].key);
            field_render(&b, c, &FIELDS[i]);
            sb_printf(&b, "\n");
        }
    for (int s = 0; SECTIONS[s]; s++) {
        sb_printf(&b, "%s:\n", SECTIONS[s]);
        size_t sl = strlen(SECTIONS[s]);
        for (int i = 0; i < N_FIELDS; i++)
            if (!strncmp(FIELDS[i].key, SECTIONS[s], sl) && FIELDS[i].key[sl] == '.') {
                sb_printf(&b, "  %s: ", FIELDS[i].key + sl + 1);
                field_render(&b, c, &FIELDS[i]);
                sb_printf(&b, "\n");
            }
    }
    if (c->have_graders) {
        /* JSON is YAML: the graders and reward sections as flow mappings */
        char *gs = json_dumps(c->graders_json, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
        sb_printf(&b, "graders: %s\n", gs ? gs : "{}");
        free(gs);
        if (c->reward_json) {
            char *rs = json_dumps(c->reward_json, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
            sb_printf(&b, "reward: %s\n", rs ? rs : "{}");
            free(rs);
        }
    }
    return b.p;
}

void config_print_reference(FILE *f) {
    fprintf(f, "%-34s %-8s %-12s %s\n", "key", "type", "default", "meaning");
    static const char *tn[] = {"int", "float", "bool", "string", "enum", "list", "int"};
    for (int i = 0; i < N_FIELDS; i++)
        fprintf(f, "%-34s %-8s %-12s %s\n", FIELDS[i].key, tn[FIELDS[i].type], FIELDS[i].def[0] ? FIELDS[i].def : "\"\"",
                FIELDS[i].doc);
    fprintf(f, "%-34s %-8s %-12s %s\n", "graders", "mapping", "", "see docs/graders.md");
    fprintf(f, "%-34s %-8s %-12s %s\n", "reward", "mapping", "", "see docs/graders.md");
}

void config_free(rft_config *c) {
    if (c->have_graders) grader_config_free(&c->graders);
    if (c->graders_json) json_decref(c->graders_json);
    if (c->reward_json) json_decref(c->reward_json);
    c->graders_json = c->reward_json = NULL;
    c->have_graders = 0;
}

const char *algo_str(algo_name a) { return a >= 0 && a <= ALGO_SFT ? ALGOS[a] : "?"; }
