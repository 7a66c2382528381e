/* trainer/reward.h: combining the graders' scores into one reward per sample:
 * a weighted sum (`reward.weights`) or a formula (`reward.formula`: numbers,
 * grader names, + - * / ^, parentheses, unary minus, min max abs floor ceil
 * exp sqrt log clip), compiled once at start-up to a small stack program;
 * plus the masking and error-rate policy (on_error, max_error_rate). */
#ifndef RFT_REWARD_H
#define RFT_REWARD_H

#include <stddef.h>

#include "grader.h"

/* ---- formulas ---- */
typedef struct reward_formula reward_formula;

/* Compiles text; names[0..n_names-1] are the grader names it may use. Errors
   read "column 12: unknown name 'corect' (graders: correct, format)". */
reward_formula *reward_formula_parse(const char *text, const char *const *names, int n_names, char *err,
                                     size_t err_cap);
/* Evaluates with values[name index]. -1 with a message for division by zero,
   log/sqrt outside their domain or a non-finite result. */
int reward_formula_eval(const reward_formula *f, const double *values, double *out, char *err, size_t err_cap);
/* 1 if the formula refers to name index i */
int reward_formula_uses(const reward_formula *f, int i);
void reward_formula_free(reward_formula *f);

/* ---- combination ---- */
enum { REWARD_ON_ERROR_MASK = 0, REWARD_ON_ERROR_ZERO, REWARD_ON_ERROR_ABORT };
#define REWARD_DEFAULT_MAX_ERROR_RATE 0.05

typedef struct reward_spec {
    int n;                   /* graders */
    const char **names;      /* [n] borrowed */
    double *weights;         /* [n] for a weighted sum (NULL with a formula) */
    reward_formula *formula; /* or NULL */
    unsigned char *used;     /* [n] 1 if the grader enters the reward */
    int on_error;            /* REWARD_ON_ERROR_* */
    double max_error_rate;   /* per grader, over one batch */
} reward_spec;

/* weights all 1 (the plain sum), on_error mask, the default error rate */
int reward_spec_default(reward_spec *s, const char **names, int n, char *err, size_t err_cap);
void reward_spec_free(reward_spec *s);

enum { REWARD_OK = 0, REWARD_MASKED = 1 };

/* One sample: results[g] for every grader. REWARD_OK with *reward, or
   REWARD_MASKED with the reason in why ("correct: abstained", "format: timeout
   error", "reward.formula: division by zero"). *formula_error is set to 1
   when the formula itself failed. */
int reward_combine(const reward_spec *s, const grade_result *results, double *reward, int *formula_error, char *why,
                   size_t why_cap);

/* A whole batch (results[i * s->n + g]): reward[i] and valid[i] (1 = use
   the reward, 0 = masked). Returns the number of samples whose formula failed
   (for reward_check_errors). */
int reward_batch(const reward_spec *s, const grade_result *results, int n, double *reward, unsigned char *valid);

/* The policy over a batch of n samples (results[i * s->n + g]): -1 with a
   message naming the grader when on_error is abort and a grade failed, or a
   grader's error rate exceeds max_error_rate. n_formula_errors counts the
   samples whose formula failed (checked against the same rate). */
int reward_check_errors(const reward_spec *s, const grade_result *results, int n, int n_formula_errors, char *err,
                        size_t err_cap);

#endif
