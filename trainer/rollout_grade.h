/* trainer/rollout_grade.h: rollouts and their grading, overlapped. The
 * rollout engine generates on a second thread while the calling thread (the
 * one that owns the grader runner: its worker processes are tied to it)
 * grades completions as they finish, in batches of whatever has finished
 * since the last batch. On a GPU the host would otherwise sit idle in the
 * decode loop's waits; on the CPU the graders' work fills the cores the
 * decode leaves. The completions and grades are those of rollout_generate
 * followed by grader_runner_grade: grading does not depend on the batches. */
#ifndef RFT_ROLLOUT_GRADE_H
#define RFT_ROLLOUT_GRADE_H

#include <jansson.h>

#include "comm.h"
#include "grader.h"
#include "rollout.h"

typedef struct rollout_grade_times {
    double sampling;     /* seconds from the start until the last completion finished */
    double grading;      /* seconds of grading left after that (the part not hidden by sampling) */
    double grading_busy; /* seconds spent in grader_runner_grade in all */
    int graded_early;    /* completions graded before the last one finished */
} rollout_grade_times;

/* Generates group_size completions for each of n_prompts prompts into
 * out[n_prompts * G] (as rollout_generate) and grades each with every grader
 * of gr into gres[i * n_graders + g] (as grader_runner_grade; gr may be NULL
 * when n_graders is 0), item prompt_items[i / G]. Returns 0, or -1 with err
 * (the completions are then freed). tm may be NULL. */
int rollout_grade(rollout_engine *ro, grader_runner *gr, int n_graders, const rollout_prompt *prompts, int n_prompts,
                  int G, const rollout_config *cfg, json_t *const *prompt_items, completion *out, grade_result *gres,
                  rollout_grade_times *tm, char *err, size_t err_cap);

/* rollout_grade across the ranks of cm: each rank generates and grades a
 * contiguous share of the prompts, then every rank receives all N
 * completions and grades (completions are keyed by prompt id and sample, so
 * they are those of one rank doing all). tm holds this rank's times. With one
 * rank it is rollout_grade. On failure every completion is freed. */
int rollout_grade_shared(comm *cm, rollout_engine *ro, grader_runner *gr, int n_graders,
                         const rollout_prompt *prompts, int n_prompts, int G, const rollout_config *cfg,
                         json_t *const *prompt_items, completion *out, grade_result *gres, rollout_grade_times *tm,
                         char *err, size_t err_cap);

#endif
