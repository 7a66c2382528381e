/* trainer/dataset.h: training and validation rows in the OpenAI RFT JSONL
 * format: each line an object with `messages` (chat turns ending with a user
 * turn) or `prompt` (raw text), plus any fields the graders read. For sft,
 * rows carry the answer as a final assistant turn or a `completion` string.
 * Every row is validated and tokenized at load; errors name file:line and
 * the field. Epoch order is a seeded permutation. */
#ifndef RFT_DATASET_H
#define RFT_DATASET_H

#include <jansson.h>
#include <stdint.h>

#include "grader.h"
#include "tokenizer.h"

typedef struct data_row {
    json_t *json;        /* the whole row (graders read it) */
    int line;            /* 1-based line in the file */
    int32_t *prompt;     /* [n_prompt] prompt ids (chat template applied) */
    int n_prompt;
    int32_t *answer;     /* [n_answer] sft target ids (incl. end-of-turn), or NULL */
    int n_answer;
} data_row;

typedef struct dataset {
    char path[1024];
    data_row *rows;
    int n;
} dataset;

typedef struct dataset_opts {
    int need_answer;          /* sft: every row must carry an answer */
    int max_prompt_tokens;    /* longer prompts are an error */
    int max_seq;              /* prompt (+ answer) + 1 must fit */
    const grader_spec *graders; /* templates {{item.x}} checked against each row */
    int n_graders;
    int32_t end_of_turn;      /* appended to sft answers (-1: none) */
} dataset_opts;

/* Loads and validates path. -1 with "path:line: field: why". */
int dataset_load(const char *path, const tokenizer *tok, const dataset_opts *o, dataset *d, char *err, size_t err_cap);
void dataset_free(dataset *d);

/* perm[n]: the order of rows in epoch `epoch` for seed (Fisher-Yates with
   the counter-based rng; the same on every machine). */
void dataset_epoch_order(int n, uint64_t seed, int epoch, int32_t *perm);

#endif
