/* trainer/pg.c: advantages and the clipped policy-gradient loss (see pg.h
 * and docs/algorithms.md). Everything here is plain double arithmetic over
 * host arrays, so it is the same on every backend. */
#include "pg.h"

#include <math.h>
#include <string.h>

#define ADV_EPS 1e-4 /* as TRL: (r - mean) / (std + 1e-4) */

double pg_overlong_penalty(int len, int max_new, int buffer, double penalty) {
    if (buffer <= 0) return 0;
    int start = max_new - buffer;
    if (len <= start) return 0;
    if (len <= max_new) return -penalty * (double)(len - start) / buffer;
    return -penalty;
}

int pg_advantages(const pg_params *p, int dynamic_sampling, const double *r, const unsigned char *valid,
                  int n_groups, int G, double *adv, unsigned char *keep) {
    int zero_std = 0, N = n_groups * G;
    /* batch statistics of the valid rewards (scale: batch) */
    double bs = 0, bss = 0;
    int bn = 0;
    for (int k = 0; k < N; k++)
        if (valid[k]) bs += r[k], bn++;
    double bmean = bn ? bs / bn : 0;
    for (int k = 0; k < N; k++)
        if (valid[k]) bss += (r[k] - bmean) * (r[k] - bmean);
    double bstd = bn > 1 ? sqrt(bss / (bn - 1)) : 0;
    /* REINFORCE++-baseline: batch mean and std of the group-centred rewards */
    double cmean = 0, cstd = 0;
    if (p->algo == ALGO_REINFORCE_PP) {
        double cs = 0, css = 0;
        int cn = 0;
        for (int g = 0; g < n_groups; g++) {
            double s = 0;
            int n = 0;
            for (int i = 0; i < G; i++)
                if (valid[g * G + i]) s += r[g * G + i], n++;
            for (int i = 0; i < G; i++)
                if (valid[g * G + i]) cs += r[g * G + i] - s / n, cn++;
        }
        cmean = cn ? cs / cn : 0;
        for (int g = 0; g < n_groups; g++) {
            double s = 0;
            int n = 0;
            for (int i = 0; i < G; i++)
                if (valid[g * G + i]) s += r[g * G + i], n++;
            for (int i = 0; i < G; i++)
                if (valid[g * G + i]) {
                    double c = r[g * G + i] - s / n - cmean;
                    css += c * c;
                }
        }
        cstd = cn > 1 ? sqrt(css / (cn - 1)) : 0;
    }
    for (int g = 0; g < n_groups; g++) {
        const double *rg = r + g * G;
        double s = 0, ss = 0;
        int n = 0;
        for (int i = 0; i < G; i++)
            if (valid[g * G + i]) s += rg[i], n++;
        double mean = n ? s / n : 0;
        for (int i = 0; i < G; i++)
            if (valid[g * G + i]) ss += (rg[i] - mean) * (rg[i] - mean);
        int spread = 0;
        double first = 0;
        int have = 0;
        for (int i = 0; i < G; i++)
            if (valid[g * G + i]) {
                if (!have) first = rg[i], have = 1;
                else if (rg[i] != first) spread = 1;
            }
        if (!spread) zero_std++;
        double std = n > 1 ? sqrt(ss / (n - 1)) : 0; /* unbiased, as torch.std */
        for (int i = 0; i < G; i++) {
            int k = g * G + i;
            keep[k] = valid[k] && !(dynamic_sampling && !spread);
            if (!valid[k]) {
                adv[k] = 0;
                continue;
            }
            double c = rg[i] - mean;
            if (p->algo == ALGO_RLOO) c = n > 1 ? c * n / (n - 1) : 0; /* r_i - mean of the others */
            if (p->algo == ALGO_REINFORCE_PP) c = (c - cmean) / (cstd + ADV_EPS);
            else if (p->scale == SCALE_GROUP) c /= std + ADV_EPS;
            else if (p->scale == SCALE_BATCH) c /= bstd + ADV_EPS;
            adv[k] = c;
        }
    }
    return zero_std;
}

double pg_token_weight(const pg_params *p, const pg_seq *s, long tokens, int n_kept) {
    if (p->agg == AGG_TOKEN_MEAN) return 1.0 / tokens;
    if (p->agg == AGG_SEQ_MEAN) return 1.0 / ((double)s->n * n_kept);
    return 1.0 / ((double)p->max_new_tokens * n_kept);
}

void pg_loss_part(const pg_params *p, const pg_seq *s, double a, int t0, int t1, float *w, float *went, pg_sums *acc) {
    double seq_log_ratio = 0;
    if (p->algo == ALGO_GSPO) {
        for (int t = 0; t < s->n; t++) seq_log_ratio += s->old ? (double)s->logp[t] - s->old[t] : 0;
        seq_log_ratio /= s->n;
    }
    double A = s->adv;
    for (int t = t0; t < t1; t++) {
        double lr = p->algo == ALGO_GSPO ? seq_log_ratio : s->old ? (double)s->logp[t] - s->old[t] : 0;
        double ratio = exp(lr);
        double clipped = fmin(fmax(ratio, 1.0 - p->eps_low), 1.0 + p->eps_high);
        double obj = fmin(ratio * A, clipped * A);
        /* the unclipped branch carries the gradient unless clipping binds */
        int is_low = A < 0 && ratio < 1.0 - p->eps_low, is_high = A > 0 && ratio > 1.0 + p->eps_high;
        double dobj = is_low || is_high ? 0 : A * ratio;
        double lt = -obj, dl = -dobj; /* per-token loss and its d/dlogp */
        if (p->kl_beta > 0 && s->ref) {
            double d = (double)s->ref[t] - s->logp[t];
            double kl = exp(d) - d - 1;
            lt += p->kl_beta * kl;
            dl += p->kl_beta * (1 - exp(d));
            acc->kl += kl;
        }
        acc->loss += a * lt;
        w[t] = (float)(-a * dl);
        if (went) went[t] = (float)(a * p->entropy_coef);
        acc->low += is_low, acc->high += is_high;
        acc->ratio += ratio;
    }
    acc->tokens += t1 - t0;
}

void pg_stats_from(const pg_sums *acc, pg_stats *st) {
    memset(st, 0, sizeof *st);
    st->tokens = acc->tokens;
    st->loss = acc->loss;
    if (acc->tokens) {
        st->kl = acc->kl / acc->tokens;
        st->clip_low = (double)acc->low / acc->tokens;
        st->clip_high = (double)acc->high / acc->tokens;
        st->ratio_mean = acc->ratio / acc->tokens;
    }
}

void pg_loss(const pg_params *p, const pg_seq *seqs, int n, float *const *w, float *const *went, pg_stats *st) {
    long tokens = 0;
    int n_kept = 0;
    for (int k = 0; k < n; k++)
        if (seqs[k].keep && seqs[k].n > 0) tokens += seqs[k].n, n_kept++;
    if (p->norm_tokens > 0) tokens = p->norm_tokens;
    if (p->norm_seqs > 0) n_kept = p->norm_seqs;
    pg_sums acc = {0};
    for (int k = 0; k < n; k++) {
        const pg_seq *s = &seqs[k];
        if (!s->keep || s->n <= 0) {
            for (int t = 0; t < s->n; t++) {
                w[k][t] = 0;
                if (went) went[k][t] = 0;
            }
            continue;
        }
        pg_loss_part(p, s, pg_token_weight(p, s, tokens, n_kept), 0, s->n, w[k], went ? went[k] : NULL, &acc);
    }
    pg_stats_from(&acc, st);
}

void pg_sft_part(const pg_seq *s, long norm_tokens, int t0, int t1, float *w, double *loss) {
    for (int t = t0; t < t1; t++) {
        w[t] = (float)(1.0 / norm_tokens);
        *loss -= s->logp[t] / (double)norm_tokens;
    }
}

double pg_sft_loss(const pg_seq *seqs, int n, long norm_tokens, float *const *w) {
    long tokens = 0;
    for (int k = 0; k < n; k++) tokens += seqs[k].n;
    if (norm_tokens > 0) tokens = norm_tokens;
    double loss = 0;
    for (int k = 0; k < n; k++) pg_sft_part(&seqs[k], tokens, 0, seqs[k].n, w[k], &loss);
    return loss;
}
