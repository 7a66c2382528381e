/* trainer/optim.h: AdamW over a model's parameter buffer (decoupled weight
 * decay on 2-D tensors only, bias correction), gradient clipping by global
 * norm, and learning-rate schedules with warm-up. Optimizer state (m, v) is
 * one device allocation each, laid out like model.params. */
#ifndef RFT_OPTIM_H
#define RFT_OPTIM_H

#include "model.h"

typedef enum { LR_CONSTANT = 0, LR_LINEAR = 1, LR_COSINE = 2 } lr_schedule;

typedef struct optim_config {
    float lr;           /* peak learning rate */
    float beta1, beta2; /* 0.9, 0.999 */
    float eps;          /* 1e-8 */
    float weight_decay; /* applied to tensors with decay = 1 */
    float grad_clip;    /* max global L2 norm; <= 0 disables */
    lr_schedule schedule;
    int warmup_steps;   /* linear warm-up from 0 over this many steps */
    int total_steps;    /* for linear/cosine decay */
    float min_lr_ratio; /* floor of the decay as a fraction of lr (0 = decay to 0) */
} optim_config;

typedef struct optim {
    optim_config cfg;
    model *m;
    float *mom;         /* device [n_params] first moment */
    float *var;         /* device [n_params] second moment */
    int step;           /* optimizer steps taken so far */
} optim;

int optim_create(optim *o, model *m, const optim_config *cfg, char *err, size_t err_cap);
void optim_free(optim *o);

/* learning rate used for step number `step` (1-based) */
float optim_lr(const optim_config *cfg, int step);

/* One update from m->grads: clip by global norm, AdamW on every tensor.
 * Returns the global gradient norm before clipping (NaN/inf if the gradients
 * are not finite, in which case nothing is updated and step is unchanged). */
double optim_step(optim *o);

#endif
