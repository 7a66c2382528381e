/* trainer/sampler.h: drawing one token from a row of logits: temperature,
 * top-k, top-p, min-p or greedy, with a caller-supplied uniform number (the
 * rollout engine draws it from the completion's own counter-based stream). */
#ifndef RFT_SAMPLER_H
#define RFT_SAMPLER_H

#include <stdint.h>

typedef struct sampler_config {
    float temperature;   /* 0: greedy (argmax, lowest id on ties) */
    int top_k;           /* 0: off */
    float top_p;         /* 1: off */
    float min_p;         /* 0: off; keep p >= min_p * max p */
} sampler_config;

/* Scratch for one row: n_vocab floats + n_vocab ints. */
typedef struct sampler_scratch {
    int n_vocab;
    float *prob;   /* [V] */
    int32_t *idx;  /* [V] */
} sampler_scratch;

int sampler_scratch_init(sampler_scratch *s, int n_vocab);
void sampler_scratch_free(sampler_scratch *s);

/* Returns the sampled id and writes its log-probability under the
 * distribution actually sampled from (temperature applied, then the top-k /
 * top-p / min-p filters, renormalised; greedy: log-prob under the
 * temperature-1 softmax). u is uniform in [0, 1). */
int32_t sampler_sample(const sampler_config *c, const float *logits, int V, double u, sampler_scratch *s,
                       float *logprob);

/* The filtered, renormalised distribution (for tests): writes prob[V]. */
void sampler_distribution(const sampler_config *c, const float *logits, int V, sampler_scratch *s, double *prob);

#endif
