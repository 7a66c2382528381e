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

void pg_loss(const pg_params *p, const pg_seq *seqs, int n, float *const *w, float *const *went, pg_stats *st) {
    memset(st, 0, sizeof *st);
    long tokens = 0;
    int n_kept = 0;
    for (int k = 0; k < n; k++)
        if (seqs[k].keep && seqs[k].n > 0) tokens += seqs[k].n, n_kept++;
    long kept_here = tokens;
    if (p->norm_tokens > 0) tokens = p->norm_tokens;
    if (p->norm_seqs > 0) n_kept = p->norm_seqs;
    double loss = 0, kl_sum = 0, ratio_sum = 0;
    long low = 0, high = 0;
    for (int k = 0; k < n; k++) {
        const pg_seq *s = &seqs[k];
        if (!s->keep || s->n <= 0) {
            for (int t = 0; t < s->n; t++) {
                w[k][t] = 0;
                if (went) went[k][t] = 0;
            }
            continue;
        }
        double a; /* aggregation weight of each token of this sequence */
        if (p->agg == AGG_TOKEN_MEAN) a = 1.0 / tokens;
        else if (p->agg == AGG_SEQ_MEAN) a = 1.0 / ((double)s->n * n_kept);
        else a = 1.0 / ((double)p->max_new_tokens * n_kept);
        double seq_log_ratio = 0;
        if (p->algo == ALGO_GSPO) {
            for (int t = 0; t < s->n; t++) seq_log_ratio += s->old ? (double)s->logp[t] - s->old[t] : 0;
            seq_log_ratio /= s->n;
        }
        double A = s->adv;
        for (int t = 0; t < s->n; t++) {
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
                kl_sum += kl;
            }
            loss += a * lt;
            w[k][t] = (float)(-a * dl);
            if (went) went[k][t] = (float)(a * p->entropy_coef);
            low += is_low, high += is_high;
            ratio_sum += ratio;
        }
    }
    st->tokens = kept_here;
    st->loss = loss;
    if (kept_here) {
        st->kl = kl_sum / kept_here;
        st->clip_low = (double)low / kept_here;
        st->clip_high = (double)high / kept_here;
        st->ratio_mean = ratio_sum / kept_here;
    }
}

double pg_sft_loss(const pg_seq *seqs, int n, long norm_tokens, float *const *w) {
    long tokens = 0;
    for (int k = 0; k < n; k++) tokens += seqs[k].n;
    if (norm_tokens > 0) tokens = norm_tokens;
    double loss = 0;
    for (int k = 0; k < n; k++)
        for (int t = 0; t < seqs[k].n; t++) {
            w[k][t] = (float)(1.0 / tokens);
            loss -= seqs[k].logp[t] / (double)tokens;
        }
    return loss;
}
