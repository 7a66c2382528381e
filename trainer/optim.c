/* trainer/optim.c: AdamW over the model's parameter buffer, global-norm
 * gradient clipping (torch.nn.utils.clip_grad_norm_ semantics) and the
 * learning-rate schedules. */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "util.h"

int optim_create(optim *o, model *m, const optim_config *cfg, char *err, size_t cap) {
    memset(o, 0, sizeof *o);
    if (!(cfg->lr >= 0) || !isfinite(cfg->lr)) return errf(err, cap, "optimizer: learning_rate must be >= 0");
    if (!(cfg->beta1 >= 0 && cfg->beta1 < 1)) return errf(err, cap, "optimizer: beta1 must be in [0, 1)");
    if (!(cfg->beta2 >= 0 && cfg->beta2 < 1)) return errf(err, cap, "optimizer: beta2 must be in [0, 1)");
    if (!(cfg->eps > 0)) return errf(err, cap, "optimizer: eps must be > 0");
    if (!(cfg->weight_decay >= 0)) return errf(err, cap, "optimizer: weight_decay must be >= 0");
    if (cfg->warmup_steps < 0) return errf(err, cap, "optimizer: warmup_steps must be >= 0");
    if (model_alloc_grads(m, err, cap)) return -1;
    o->cfg = *cfg;
    o->m = m;
    backend *be = m->be;
    o->mom = be->alloc(be, m->n_params * sizeof(float));
    o->var = be->alloc(be, m->n_params * sizeof(float));
    if (!o->mom || !o->var) {
        optim_free(o);
        return errf(err, cap, "optimizer: cannot allocate state: %s", be->err);
    }
    return 0;
}

void optim_free(optim *o) {
    if (o->m) {
        backend *be = o->m->be;
        if (o->mom) be->free(be, o->mom);
        if (o->var) be->free(be, o->var);
    }
    memset(o, 0, sizeof *o);
}

float optim_lr(const optim_config *c, int step) {
    if (c->warmup_steps > 0 && step <= c->warmup_steps) return c->lr * (float)step / (float)c->warmup_steps;
    if (c->schedule == LR_CONSTANT) return c->lr;
    int decay = c->total_steps - c->warmup_steps;
    double p = decay > 0 ? (double)(step - c->warmup_steps) / decay : 1.0;
    if (p > 1) p = 1;
    if (p < 0) p = 0;
    double f = c->schedule == LR_LINEAR ? 1.0 - p : 0.5 * (1.0 + cos(M_PI * p));
    return (float)(c->lr * (c->min_lr_ratio + (1.0 - c->min_lr_ratio) * f));
}

double optim_step(optim *o) {
    model *m = o->m;
    backend *be = m->be;
    double norm = sqrt(be->sumsq(be, m->grads, m->n_params));
    if (!isfinite(norm)) return norm;
    if (o->cfg.grad_clip > 0) {
        double coef = o->cfg.grad_clip / (norm + 1e-6);
        if (coef < 1.0) be->scale(be, m->grads, (float)coef, m->n_params);
    }
    int t = o->step + 1;
    float lr = optim_lr(&o->cfg, t);
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *e = &m->tensors[i];
        be->adamw(be, m->params + e->offset, m->grads + e->offset, o->mom + e->offset, o->var + e->offset, e->numel,
                  lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps, e->decay ? o->cfg.weight_decay : 0.0f, t);
    }
    o->step = t;
    return norm;
}
