/* trainer/pg.h: the policy-gradient mathematics of one step, on the host:
 * reward shaping (DAPO overlong penalty), advantages (grpo, dr_grpo, rloo,
 * reinforce_pp; scale_rewards group | batch | none; dynamic sampling), and
 * the clipped surrogate loss with its per-token weights for model_backward
 * (token or sequence ratio, k3 KL to the reference policy, entropy bonus,
 * aggregation token_mean | seq_mean | seq_sum_norm). The formulas are
 * written out in docs/algorithms.md and checked against a NumPy
 * implementation (tools/ref_pg.py). */
#ifndef RFT_PG_H
#define RFT_PG_H

#include "config.h"

typedef struct pg_params {
    algo_name algo;
    scale_mode scale;
    loss_agg agg;
    float eps_low, eps_high;
    float kl_beta;
    float entropy_coef;
    int max_new_tokens;       /* seq_sum_norm's constant length */
    /* Normalisers of the aggregation: kept tokens and kept sequences of the
       whole optimizer mini-batch when pg_loss sees only part of it (one
       forward/backward micro-batch); 0: counted from the seqs given. */
    long norm_tokens;
    int norm_seqs;
} pg_params;

/* Advantages of n_groups groups of G samples (sample i of group g at g*G+i).
 * valid[k] = 0 marks a masked reward (grader error/abstain): it takes no part
 * in baselines and gets advantage 0. keep[k] (output) is 0 for masked samples
 * and, with dynamic_sampling, for every sample of a group whose valid rewards
 * are all equal. Returns the number of groups with zero reward spread. */
int pg_advantages(const pg_params *p, int dynamic_sampling, const double *reward, const unsigned char *valid,
                  int n_groups, int G, double *adv, unsigned char *keep);

/* DAPO soft overlong penalty added to the reward of a completion of length
 * len (0 when buffer is 0). */
double pg_overlong_penalty(int len, int max_new_tokens, int buffer, double penalty);

/* One completion as the loss sees it. */
typedef struct pg_seq {
    int n;               /* completion tokens */
    const float *logp;   /* [n] under the current policy */
    const float *old;    /* [n] under the policy that sampled (NULL: = logp) */
    const float *ref;    /* [n] under the reference policy (NULL when kl_beta = 0) */
    double adv;          /* advantage */
    int keep;            /* 0: no gradient, not counted by the aggregation */
} pg_seq;

typedef struct pg_stats {
    double loss;          /* the aggregated loss */
    double kl;            /* token mean of k3 over kept tokens (0 without ref) */
    double clip_low;      /* fraction of kept tokens clipped below (A < 0, ratio < 1 - eps_low) */
    double clip_high;     /* fraction clipped above (A > 0, ratio > 1 + eps_high) */
    double ratio_mean;
    long tokens;          /* kept tokens */
} pg_stats;

/* Loss over n sequences (one optimizer mini-batch) and, for each kept token,
 * w[k][t] = -d loss / d logp and went[k][t] = -d loss / d entropy (the
 * weights of model_backward); dropped sequences get zeros. */
void pg_loss(const pg_params *p, const pg_seq *seqs, int n, float *const *w, float *const *went, pg_stats *st);

/* The same loss a piece at a time (model_forward_backward's LM-head chunks):
 * pg_loss is pg_loss_part over each kept sequence's tokens [0, n) with
 * a = pg_token_weight(p, s, tokens, n_kept) (the mini-batch's normalisers),
 * summed into one pg_sums in token order, then pg_stats_from. A token's
 * terms depend on its own log-prob only, except for gspo, whose ratio is the
 * sequence's: there every logp[0, n) must be known. w, went (may be NULL)
 * index s's tokens. */
typedef struct pg_sums {
    double loss, kl, ratio; /* sums of a * loss term, k3, ratio */
    long low, high, tokens; /* clipped low / high, tokens seen */
} pg_sums;
double pg_token_weight(const pg_params *p, const pg_seq *s, long tokens, int n_kept);
void pg_loss_part(const pg_params *p, const pg_seq *s, double a, int t0, int t1, float *w, float *went, pg_sums *acc);
void pg_stats_from(const pg_sums *acc, pg_stats *st);

/* SFT: mean negative log-likelihood over all answer tokens of the mini-batch
 * (norm_tokens of them; 0: counted from seqs); w[k][t] = 1 / norm_tokens.
 * Returns this part's contribution to the loss. */
double pg_sft_loss(const pg_seq *seqs, int n, long norm_tokens, float *const *w);
/* tokens [t0, t1) of one sequence: w[t] = 1 / norm_tokens, *loss -= logp[t] / norm_tokens in order */
void pg_sft_part(const pg_seq *s, long norm_tokens, int t0, int t1, float *w, double *loss);

#endif
