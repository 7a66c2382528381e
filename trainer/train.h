/* trainer/train.h: the training loop of `rft train`: GRPO-family policy
 * gradient (rollouts, grading, advantages, clipped updates) or SFT, with
 * periodic evaluation, metrics.jsonl / samples.jsonl, atomic checkpoints and
 * bitwise-exact resume. */
#ifndef RFT_TRAIN_H
#define RFT_TRAIN_H

#include <stddef.h>

#include "config.h"

/* Runs the configured training. resume: NULL (fresh run; an out_dir that
 * already holds checkpoints is an error), "" (the latest checkpoint in
 * out_dir) or a checkpoint path. Returns an exit status (RFT_EXIT_*) with the
 * one-line reason in err when it is not 0. quiet suppresses the progress line. */
int train_run(rft_config *cfg, const char *resume, char *err, size_t err_cap);

#endif
