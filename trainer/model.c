/* trainer/model.c: the Llama-family decoder, written once against
 * kernels/backend.h. Parameter table with Hugging Face names, deterministic
 * initialisation, packed-batch forward (per-token target log-probs and
 * entropies) and backward from per-token weights. The LM head is applied in
 * chunks of tokens so no [T, V] tensor is ever held whole; model_backward
 * recomputes each chunk's logits and turns them into gradients in place,
 * model_forward_backward (training) computes each chunk's logits once and
 * turns them into gradients as soon as the loss has weighed their
 * log-probs. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Views carved out of m->acts. Per layer l (T = max_tokens):
 *   res[l]    [T, D]   residual stream entering block l (res[L] leaves the last block)
 *   xn1       [T, D]   attention RMSNorm output,      rstd1 [T]
 *   q         [T, qd]  queries after bias and RoPE (qd = Hq*hd)
 *   k, v      [T, kvd] keys after RoPE, values (kvd = Hkv*hd)
 *   att       [T, qd]  attention output before o_proj, lse [T, Hq]
 *   mid       [T, D]   residual stream after attention
 *   xn2       [T, D]   MLP RMSNorm output,            rstd2 [T]
 *   gate, up  [T, F]   MLP projections;  h [T, F] = silu(gate) * up
 * model.dtype bf16 (model_set_mixed) adds bf16 views (NULL otherwise): the
 * inputs of the linear layers, kept for the backward's weight gradients, the
 * attention's operands and the MLP projections. The norms, the stacked GEMMs,
 * RoPE, attention and SwiGLU write them directly in place of fp32 views
 * (qkv16 from q's memory on, gu16 in gate's, the others in the first half of
 * their own view's):
 *   xn1_16 [T, D], qkv16 [T, qd + 2 kvd] (q | k | v per row, after bias and RoPE),
 *   att16 [T, qd], xn2_16 [T, D], gu16 [T, 2F] (gate | up per row), h16 [T, F]
 */
typedef struct layer_acts {
    float *xn1, *rstd1, *q, *k, *v, *att, *lse, *mid, *xn2, *rstd2, *gate, *up, *h;
    uint16_t *xn1_16, *qkv16, *att16, *xn2_16, *gu16, *h16;
} layer_acts;

typedef struct act_views {
    float **res;          /* [L+1] of [T, D] */
    layer_acts *layer;    /* [L] */
    float *xnf, *rstdf;   /* final norm output [T, D], rstd [T] */
    float *logits;        /* [chunk, V] LM-head chunk (logits, then their gradient) */
    float *logp, *ent;    /* [T] */
    float *lse;           /* [T] the LM head's log-sum-exp per token (logprob_backward reads it) */
    float *dlogp, *dent;  /* [T] = -w, -went */
    /* backward scratch */
    float *dres;          /* [T, D] gradient of the residual stream */
    float *dx;            /* [T, D] */
    float *dq, *datt;     /* [T, qd] */
    float *dk, *dv;       /* [T, kvd] */
    float *dgate, *dup, *dh; /* [T, F] */
    int32_t *tokens, *targets, *pos, *slot; /* [T] */
    int32_t *cu_seqlens;  /* [T+1] */
    int chunk;            /* tokens per LM-head chunk */
    /* model.dtype bf16 only */
    uint16_t *xnf16;      /* [T, D] LM-head input (in xnf's memory) */
    uint16_t *dy16;       /* [max(T * max(D, qd + 2 kvd), chunk * V)] an output gradient rounded to bf16 for its
                             two products (m->acts16): dlogits, d(res), d(qkv) [T, qd + 2 kvd] in turn.
                             SwiGLU's backward writes dgu16 [T, 2F] (dgate | dup per row) into the memory of
                             the fp32 view dgate, o_proj's backward datt16 [T, qd] into datt's. */
    uint16_t *ones16;     /* [T] bf16 1.0 (m->acts16): the q/k/v bias gradients' column sums as products */
    uint16_t *dxn16;      /* [T, D] (m->acts16) a norm output's gradient, written in bf16 by the products that
                             read the norm's output, for the norm's backward */
} act_views;

static int qdim(const model_config *c) { return c->n_head * c->head_dim; }
static int kvdim(const model_config *c) { return c->n_kv_head * c->head_dim; }

static int config_check(const model_config *c, char *err, size_t cap) {
#define REQ(cond, field) \
    if (!(cond)) return errf(err, cap, "model config: field %s has an invalid value", field)
    REQ(c->vocab > 0 && c->vocab <= (1 << 24), "vocab");
    REQ(c->d_model > 0 && c->d_model <= 65536, "d_model");
    REQ(c->n_layer > 0 && c->n_layer <= 1024, "n_layer");
    REQ(c->n_head > 0 && c->n_head <= 1024, "n_head");
    REQ(c->n_kv_head > 0 && c->n_kv_head <= c->n_head && c->n_head % c->n_kv_head == 0, "n_kv_head");
    REQ(c->head_dim > 0 && c->head_dim % 2 == 0 && c->head_dim <= 1024, "head_dim");
    REQ(c->d_ff > 0 && c->d_ff <= 1 << 20, "d_ff");
    REQ(c->rope_theta > 0 && isfinite(c->rope_theta), "rope_theta");
    REQ(c->rms_eps > 0 && c->rms_eps < 1, "rms_eps");
    REQ(c->tie_embeddings == 0 || c->tie_embeddings == 1, "tie_embeddings");
    REQ(c->qkv_bias == 0 || c->qkv_bias == 1, "qkv_bias");
    REQ(c->max_seq > 0 && c->max_seq <= 1 << 24, "max_seq");
#undef REQ
    return 0;
}

/* Appends one tensor to the table (or only counts it when t == NULL). */
static void table_add(model_tensor *t, int *n, size_t *off, const char *name, int ndim, int64_t d0, int64_t d1,
                      int decay) {
    if (t) {
        model_tensor *e = &t[*n];
        snprintf(e->name, sizeof e->name, "%s", name);
        e->ndim = ndim;
        e->shape[0] = d0;
        e->shape[1] = ndim == 2 ? d1 : 1;
        e->numel = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
        e->offset = *off;
        e->decay = decay;
        *off += e->numel;
    }
    (*n)++;
}

/* The parameter table in Hugging Face order. */
static void table_build(const model_config *c, model_tensor *t, int *n, size_t *total) {
    int D = c->d_model, F = c->d_ff, qd = qdim(c), kvd = kvdim(c);
    char nm[96];
    *n = 0;
    *total = 0;
    table_add(t, n, total, "model.embed_tokens.weight", 2, c->vocab, D, 1);
    for (int l = 0; l < c->n_layer; l++) {
#define P(suffix, nd, a, b, dec)                                      \
    do {                                                              \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);     \
        table_add(t, n, total, nm, nd, a, b, dec);                    \
    } while (0)
        P("input_layernorm.weight", 1, D, 0, 0);
        P("self_attn.q_proj.weight", 2, qd, D, 1);
        if (c->qkv_bias) P("self_attn.q_proj.bias", 1, qd, 0, 0);
        P("self_attn.k_proj.weight", 2, kvd, D, 1);
        if (c->qkv_bias) P("self_attn.k_proj.bias", 1, kvd, 0, 0);
        P("self_attn.v_proj.weight", 2, kvd, D, 1);
        if (c->qkv_bias) P("self_attn.v_proj.bias", 1, kvd, 0, 0);
        P("self_attn.o_proj.weight", 2, D, qd, 1);
        P("post_attention_layernorm.weight", 1, D, 0, 0);
        P("mlp.gate_proj.weight", 2, F, D, 1);
        P("mlp.up_proj.weight", 2, F, D, 1);
        P("mlp.down_proj.weight", 2, D, F, 1);
#undef P
    }
    table_add(t, n, total, "model.norm.weight", 1, D, 0, 0);
    if (!c->tie_embeddings) table_add(t, n, total, "lm_head.weight", 2, c->vocab, D, 1);
}

/* Points a model_weights at a buffer laid out like the parameter table. */
static void weights_bind(const model *m, float *base, model_weights *w) {
    const model_config *c = &m->cfg;
    int i = 0;
    w->embed = base + m->tensors[i++].offset;
    for (int l = 0; l < c->n_layer; l++) {
        layer_weights *lw = &w->layers[l];
        lw->attn_norm = base + m->tensors[i++].offset;
        lw->wq = base + m->tensors[i++].offset;
        lw->bq = c->qkv_bias ? base + m->tensors[i++].offset : NULL;
        lw->wk = base + m->tensors[i++].offset;
        lw->bk = c->qkv_bias ? base + m->tensors[i++].offset : NULL;
        lw->wv = base + m->tensors[i++].offset;
        lw->bv = c->qkv_bias ? base + m->tensors[i++].offset : NULL;
        lw->wo = base + m->tensors[i++].offset;
        lw->mlp_norm = base + m->tensors[i++].offset;
        lw->wgate = base + m->tensors[i++].offset;
        lw->wup = base + m->tensors[i++].offset;
        lw->wdown = base + m->tensors[i++].offset;
    }
    w->final_norm = base + m->tensors[i++].offset;
    w->lm_head = c->tie_embeddings ? w->embed : base + m->tensors[i++].offset;
}

/* Carves the activation views out of one allocation; with base == NULL only
 * counts the floats needed. mixed (model.dtype bf16): layers 1.. get only
 * the room their bf16 contents need: xn1, xn2, att and h half their fp32
 * size, q [T, (qd + 2 kvd) / 2] floats holding qkv16 and no k, v (NULL),
 * gate [T, F] floats holding gu16 [T, 2F], no up (NULL). Layer 0 keeps the
 * full fp32 views: they are the rollouts' scratch (model_step_cached). The
 * backward scratch keeps only what the bf16 backward uses. */
static size_t acts_carve(const model_config *c, int T, size_t chunk_bytes, int mixed, float *base, act_views *a) {
    size_t off = 0;
    int D = c->d_model, F = c->d_ff, qd = qdim(c), kvd = kvdim(c), L = c->n_layer;
#define TAKE(ptr, n)                                 \
    do {                                             \
        float *p_ = base ? base + off : NULL;        \
        if (a) ptr = p_;                             \
        off += ((size_t)(n) + 15) & ~(size_t)15;     \
    } while (0)
    for (int l = 0; l <= L; l++) TAKE(a->res[l], (size_t)T * D);
    for (int l = 0; l < L; l++) {
        layer_acts *la = a ? &a->layer[l] : NULL;
        int half = mixed && l > 0; /* bf16 only: half the floats */
#define LT(field, n) TAKE(la->field, n)
        LT(xn1, half ? ((size_t)T * D + 1) / 2 : (size_t)T * D);
        LT(rstd1, T);
        if (half) { /* qkv16 [T, qd + 2 kvd] bf16 */
            LT(q, ((size_t)T * (qd + 2 * kvd) + 1) / 2);
            if (a) la->k = la->v = NULL;
        } else { /* consecutive: qkv16 spans them */
            LT(q, (size_t)T * qd);
            LT(k, (size_t)T * kvd);
            LT(v, (size_t)T * kvd);
        }
        LT(att, half ? ((size_t)T * qd + 1) / 2 : (size_t)T * qd);
        LT(lse, (size_t)T * c->n_head);
        LT(mid, (size_t)T * D);
        LT(xn2, half ? ((size_t)T * D + 1) / 2 : (size_t)T * D);
        LT(rstd2, T);
        LT(gate, (size_t)T * F);
        if (half) {
            if (a) la->up = NULL;
        } else {
            LT(up, (size_t)T * F);
        }
        LT(h, half ? ((size_t)T * F + 1) / 2 : (size_t)T * F);
#undef LT
        if (a && mixed) { /* the bf16 contents, in place of the fp32 views */
            la->xn1_16 = (uint16_t *)la->xn1, la->xn2_16 = (uint16_t *)la->xn2, la->h16 = (uint16_t *)la->h;
            la->qkv16 = (uint16_t *)la->q, la->att16 = (uint16_t *)la->att;
            la->gu16 = (uint16_t *)la->gate; /* [T, 2F] bf16 = [T, F] fp32 bytes */
        }
    }
    int chunk = (int)(chunk_bytes / sizeof(float) / (size_t)c->vocab); /* the backend's preferred logits chunk */
    if (chunk < 16) chunk = 16;
    if (chunk > T) chunk = T;
    if (a) a->chunk = chunk;
    TAKE(a->xnf, (size_t)T * D);
    if (a && mixed) a->xnf16 = (uint16_t *)a->xnf;
    TAKE(a->rstdf, T);
    TAKE(a->logits, (size_t)chunk * c->vocab);
    TAKE(a->logp, T);
    TAKE(a->ent, T);
    TAKE(a->lse, T);
    TAKE(a->dlogp, T);
    TAKE(a->dent, T);
    TAKE(a->dres, (size_t)T * D);
    TAKE(a->dx, (size_t)T * D);
    if (mixed) { /* bf16 backward: datt and dh hold bf16 (datt16, dh16), dgate holds dgu16 [T, 2F]; no
                    fp32 dq, dk, dv (the attention backward writes d(qkv) in bf16) and no dup */
        if (a) a->dq = a->dk = a->dv = a->dup = NULL;
        TAKE(a->datt, ((size_t)T * qd + 1) / 2);
        TAKE(a->dgate, (size_t)T * F);
        TAKE(a->dh, ((size_t)T * F + 1) / 2);
    } else {
        TAKE(a->dq, (size_t)T * qd);
        TAKE(a->datt, (size_t)T * qd);
        TAKE(a->dk, (size_t)T * kvd);
        TAKE(a->dv, (size_t)T * kvd);
        TAKE(a->dgate, (size_t)T * F);
        TAKE(a->dup, (size_t)T * F);
        TAKE(a->dh, (size_t)T * F);
    }
    /* int32 arrays share the float allocation (same size, 4 bytes) */
    float *ip;
    TAKE(ip, T);
    if (a) a->tokens = (int32_t *)ip;
    TAKE(ip, T);
    if (a) a->targets = (int32_t *)ip;
    TAKE(ip, T);
    if (a) a->pos = (int32_t *)ip;
    TAKE(ip, T);
    if (a) a->slot = (int32_t *)ip;
    TAKE(ip, (size_t)T + 1);
    if (a) a->cu_seqlens = (int32_t *)ip;
#undef TAKE
    (void)ip;
    return off;
}

/* Carves the bf16 buffers of model.dtype bf16 (dy16, ones16) out of one
 * allocation of uint16; with base == NULL only counts them. Needs a->chunk
 * set. */
static size_t acts16_carve(const model_config *c, int T, int chunk, uint16_t *base, act_views *a) {
    size_t off = 0;
    int D = c->d_model, qkvd = qdim(c) + 2 * kvdim(c);
#define TAKE16(ptr, n)                               \
    do {                                             \
        uint16_t *p_ = base ? base + off : NULL;     \
        if (a) ptr = p_;                             \
        off += ((size_t)(n) + 31) & ~(size_t)31;     \
    } while (0)
    size_t dy = (size_t)T * (D > qkvd ? D : qkvd), lm = (size_t)chunk * c->vocab;
    TAKE16(a->dy16, dy > lm ? dy : lm);
    TAKE16(a->ones16, T);
    TAKE16(a->dxn16, (size_t)T * D);
#undef TAKE16
    return off;
}

static size_t lm_chunk_bytes(const backend *be) { return be->lm_chunk_bytes ? be->lm_chunk_bytes : (size_t)128 << 20; }

int model_create(model *m, const model_config *cfg, backend *be, int max_tokens, char *err, size_t cap) {
    memset(m, 0, sizeof *m);
    if (config_check(cfg, err, cap)) return -1;
    if (max_tokens <= 0) return errf(err, cap, "model: max_tokens must be positive");
    m->cfg = *cfg;
    m->be = be;
    m->max_tokens = max_tokens;

    size_t total;
    table_build(cfg, NULL, &m->n_tensors, &total);
    m->tensors = xcalloc(m->n_tensors, sizeof *m->tensors, err, cap);
    if (!m->tensors) return -1;
    table_build(cfg, m->tensors, &m->n_tensors, &m->n_params);

    m->w.layers = xcalloc(cfg->n_layer, sizeof(layer_weights), err, cap);
    m->g.layers = xcalloc(cfg->n_layer, sizeof(layer_weights), err, cap);
    act_views *a = xcalloc(1, sizeof *a, err, cap);
    if (!m->w.layers || !m->g.layers || !a) goto fail;
    m->act_views = a;
    a->res = xcalloc(cfg->n_layer + 1, sizeof(float *), err, cap);
    a->layer = xcalloc(cfg->n_layer, sizeof(layer_acts), err, cap);
    if (!a->res || !a->layer) goto fail;

    m->params = be->alloc(be, m->n_params * sizeof(float));
    if (!m->params) {
        errf(err, cap, "model: cannot allocate %zu parameters: %s", m->n_params, be->err);
        goto fail;
    }
    m->cur_params = m->params;
    weights_bind(m, m->params, &m->w);

    /* the activations are allocated at the first forward (acts_ensure), in
       the layout of the precision chosen by then (model_set_mixed) */
    acts_carve(cfg, max_tokens, lm_chunk_bytes(be), 0, NULL, a); /* the views' chunk; pointers NULL */
    return 0;
fail:
    model_free(m);
    return -1;
}

int model_alloc_grads(model *m, char *err, size_t cap) {
    if (m->grads) return 0;
    m->grads = m->be->alloc(m->be, m->n_params * sizeof(float));
    if (!m->grads) return errf(err, cap, "model: cannot allocate gradients: %s", m->be->err);
    weights_bind(m, m->grads, &m->g);
    return 0;
}

void model_free(model *m) {
    if (m->be) {
        if (m->params) m->be->free(m->be, m->params);
        if (m->grads) m->be->free(m->be, m->grads);
        if (m->acts) m->be->free(m->be, m->acts);
        if (m->wbf16) m->be->free(m->be, m->wbf16);
        if (m->acts16) m->be->free(m->be, m->acts16);
    }
    act_views *a = m->act_views;
    if (a) {
        free(a->res);
        free(a->layer);
        free(a);
    }
    free(m->w.layers);
    free(m->g.layers);
    free(m->tensors);
    memset(m, 0, sizeof *m);
}

int model_find_tensor(const model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return i;
    return -1;
}

void model_init_weights(model *m, uint64_t seed) {
    const model_config *c = &m->cfg;
    size_t maxn = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > maxn) maxn = m->tensors[i].numel;
    float *host = malloc(maxn * sizeof(float));
    if (!host) {
        snprintf(m->be->err, sizeof m->be->err, "%s:%d: out of memory", __FILE__, __LINE__);
        return;
    }
    float out_scale = 1.0f / sqrtf(2.0f * c->n_layer);
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        const char *nm = t->name;
        size_t n = t->numel;
        if (strstr(nm, "norm.weight")) {
            for (size_t j = 0; j < n; j++) host[j] = 1.0f;
        } else if (strstr(nm, ".bias")) {
            memset(host, 0, n * sizeof(float));
        } else {
            float std = 0.02f;
            if (strstr(nm, "o_proj") || strstr(nm, "down_proj")) std *= out_scale;
            uint64_t key = rng_key(seed, 0x1417, (uint64_t)i, 0);
            for (size_t j = 0; j < n; j++) host[j] = (float)(std * rng_normal(key, j));
        }
        m->be->copy_h2d(m->be, m->params + t->offset, host, n * sizeof(float));
    }
    m->be->sync(m->be);
    free(host);
}

/* Allocates m->acts (one buffer) on first use, carved for the current
   precision: model.dtype bf16's compact layout (acts_carve) when
   model_set_mixed turned it on, so the fp32 layout's memory is never
   touched then. The bf16 views live in the memory of the fp32 views they
   replace. */
static int acts_ensure(model *m, char *err, size_t cap) {
    if (m->acts) return 0;
    backend *be = m->be;
    act_views *a = m->act_views;
    size_t n = acts_carve(&m->cfg, m->max_tokens, lm_chunk_bytes(be), m->acts_mixed, NULL, NULL);
    m->acts = be->alloc(be, n * sizeof(float));
    if (!m->acts)
        return errf(err, cap, "model: cannot allocate %.1f MB of activations for %d tokens: %s", n * 4.0 / 1e6,
                    m->max_tokens, be->err);
    m->acts_floats = n;
    acts_carve(&m->cfg, m->max_tokens, lm_chunk_bytes(be), m->acts_mixed, m->acts, a);
    return 0;
}

/* the activations' layout for mixed from now on: a buffer of the other
   layout is freed and allocated again at the next forward */
static void acts_layout(model *m, int mixed) {
    if (m->acts_mixed == mixed) return;
    if (m->acts) m->be->free(m->be, m->acts);
    m->acts = NULL;
    m->acts_mixed = mixed;
}

/* Validates the batch and uploads it (tokens, targets, positions, offsets). */
static int batch_upload(model *m, const model_batch *b, char *err, size_t cap) {
    act_views *a = m->act_views;
    const model_config *c = &m->cfg;
    if (b->T <= 0 || b->T > m->max_tokens)
        return errf(err, cap, "model: batch of %d tokens (capacity %d)", b->T, m->max_tokens);
    if (b->n_seq <= 0 || b->n_seq > b->T) return errf(err, cap, "model: batch has %d sequences", b->n_seq);
    if (b->cu_seqlens[0] != 0 || b->cu_seqlens[b->n_seq] != b->T)
        return errf(err, cap, "model: cu_seqlens must start at 0 and end at T=%d", b->T);
    int32_t *pos = malloc((size_t)b->T * sizeof(int32_t));
    if (!pos) return errf(err, cap, "out of memory");
    for (int s = 0; s < b->n_seq; s++) {
        int s0 = b->cu_seqlens[s], s1 = b->cu_seqlens[s + 1];
        if (s1 <= s0) {
            free(pos);
            return errf(err, cap, "model: sequence %d is empty or offsets decrease", s);
        }
        for (int t = s0; t < s1; t++) pos[t] = b->pos ? b->pos[t] : t - s0;
    }
    for (int t = 0; t < b->T; t++) {
        if (b->tokens[t] < 0 || b->tokens[t] >= c->vocab) {
            free(pos);
            return errf(err, cap, "model: token %d at position %d is outside the vocabulary (%d)", b->tokens[t], t,
                        c->vocab);
        }
        if (b->targets[t] >= c->vocab) {
            free(pos);
            return errf(err, cap, "model: target %d at position %d is outside the vocabulary (%d)", b->targets[t],
                        t, c->vocab);
        }
        if (pos[t] < 0 || pos[t] >= c->max_seq) {
            int p = pos[t];
            free(pos);
            return errf(err, cap, "model: position %d at token %d outside [0, max_seq %d)", p, t, c->max_seq);
        }
    }
    backend *be = m->be;
    be->copy_h2d(be, a->tokens, b->tokens, (size_t)b->T * sizeof(int32_t));
    be->copy_h2d(be, a->targets, b->targets, (size_t)b->T * sizeof(int32_t));
    be->copy_h2d(be, a->pos, pos, (size_t)b->T * sizeof(int32_t));
    be->copy_h2d(be, a->cu_seqlens, b->cu_seqlens, (size_t)(b->n_seq + 1) * sizeof(int32_t));
    free(pos);
    return 0;
}

/* the bf16 copy of weight tensor W (a view into cur_params) */
static const uint16_t *w16(const model *m, const float *W) { return m->wbf16 + (W - m->cur_params); }

/* y[T, out] = x[T, in] @ W[out, in]^T (+ beta * y).
 * x16 != NULL (model.dtype bf16): x16 holds x rounded to bf16 and W's bf16
 * copy is used (gemm_bf16: exact products, fp32 sums). Otherwise, between
 * model_bf16_begin and model_bf16_end (bf16 rollouts), matmul_bf16 rounds x
 * on the fly; else fp32. */
static void linear(const model *m, float *y, const float *x, const uint16_t *x16, const float *W, int T, int out,
                   int in, float beta) {
    backend *be = m->be;
    if (x16)
        be->gemm_bf16(be, 0, 1, T, out, in, x16, in, w16(m, W), in, beta, y, NULL, out);
    else if (m->w16_on)
        be->matmul_bf16(be, T, out, in, x, w16(m, W), beta, y);
    else
        be->matmul(be, 0, 1, T, out, in, 1.0f, x, in, 0, W, in, 0, beta, y, out, 0, 1);
}

/* Backward of y[T, out] = x[T, in] @ W[out, in]^T for dy[T, out]:
 * dW += dy^T @ x; dx (= when beta 0, += when 1) dy @ W. With x16 (the
 * forward's bf16 copy of x, model.dtype bf16) both products take bf16
 * operands: dy16, dy rounded once to bf16 by the op that computed dy (the
 * norm, RoPE and SwiGLU backwards, the log-prob backward, a dx16 here);
 * with dx16 (beta 0) dx is written rounded to bf16 there instead, for an op
 * that reads it in bf16. */
static void linear_back(const model *m, float *dW, float *dx, uint16_t *dx16, const float *dy, const uint16_t *dy16,
                        const float *x, const uint16_t *x16, const float *W, int T, int out, int in, float beta) {
    backend *be = m->be;
    if (x16) {
        be->gemm_bf16(be, 1, 0, out, in, T, dy16, out, x16, in, 1.0f, dW, NULL, in);
        be->gemm_bf16(be, 0, 0, T, in, out, dy16, out, w16(m, W), in, beta, dx16 ? NULL : dx, dx16, in);
        return;
    }
    be->matmul(be, 1, 0, out, in, T, 1.0f, dy, out, 0, x, in, 0, 1.0f, dW, in, 0, 1);
    be->matmul(be, 0, 0, T, in, out, 1.0f, dy, out, 0, W, in, 0, beta, dx, in, 0, 1);
}

/* logits chunk [n, V] = xnf[t0 : t0+n] @ lm_head^T (mix: from xnf16) */
static void lm_head_chunk(model *m, int t0, int n, int mix) {
    act_views *a = m->act_views;
    const model_config *c = &m->cfg;
    size_t o = (size_t)t0 * c->d_model;
    linear(m, a->logits, a->xnf + o, mix ? a->xnf16 + o : NULL, m->w.lm_head, n, c->vocab, c->d_model, 0.0f);
}

/* wq, wk, wv adjacent in the parameter table (no biases between them): the
   stacked [wq; wk; wv] [qd + 2 kvd, D] is one operand (so are their grads) */
static int qkv_adjacent(const model_config *c, const layer_weights *w) {
    size_t D = (size_t)c->d_model;
    return w->wk == w->wq + (size_t)qdim(c) * D && w->wv == w->wk + (size_t)kvdim(c) * D;
}

/* Block input half: xn1 = norm(x); q, k, v projections (+ bias), RoPE on q, k;
   xcopy (may be NULL) = x, written by the norm as it reads x (the buffer
   o_proj then accumulates into: model_forward's mid).
   mix (model.dtype bf16): the norm writes xn1 as bf16 (xn1_16) only, the
   operand of the products and of their weight gradients; the products write
   the stacked rows qkv16 [T, qd + 2 kvd] rounded to bf16 (one GEMM over the
   stacked weights when they are adjacent), rope_forward_bf16 adds the biases
   and rotates them in place, rounding once more (the attention's operands). */
static void block_qkv(model *m, const layer_weights *w, layer_acts *la, const float *x, float *xcopy,
                      const int32_t *pos, int T, int mix) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    int D = c->d_model, qd = qdim(c), kvd = kvdim(c), Q3 = qd + 2 * kvd;
    if (mix) {
        uint16_t *x16 = la->xn1_16, *y = la->qkv16;
        be->rmsnorm_forward(be, NULL, x16, la->rstd1, xcopy, x, w->attn_norm, T, D, c->rms_eps);
        if (qkv_adjacent(c, w)) {
            be->gemm_bf16(be, 0, 1, T, Q3, D, x16, D, w16(m, w->wq), D, 0.0f, NULL, y, Q3);
        } else {
            be->gemm_bf16(be, 0, 1, T, qd, D, x16, D, w16(m, w->wq), D, 0.0f, NULL, y, Q3);
            be->gemm_bf16(be, 0, 1, T, kvd, D, x16, D, w16(m, w->wk), D, 0.0f, NULL, y + qd, Q3);
            be->gemm_bf16(be, 0, 1, T, kvd, D, x16, D, w16(m, w->wv), D, 0.0f, NULL, y + qd + kvd, Q3);
        }
        be->rope_forward_bf16(be, y, w->bq, w->bk, w->bv, pos, T, c->n_head, c->n_kv_head, c->head_dim,
                              c->rope_theta);
        return;
    }
    be->rmsnorm_forward(be, la->xn1, NULL, la->rstd1, xcopy, x, w->attn_norm, T, D, c->rms_eps);
    linear(m, la->q, la->xn1, NULL, w->wq, T, qd, D, 0.0f);
    linear(m, la->k, la->xn1, NULL, w->wk, T, kvd, D, 0.0f);
    linear(m, la->v, la->xn1, NULL, w->wv, T, kvd, D, 0.0f);
    if (c->qkv_bias) {
        be->bias_forward(be, la->q, w->bq, T, qd);
        be->bias_forward(be, la->k, w->bk, T, kvd);
        be->bias_forward(be, la->v, w->bv, T, kvd);
    }
    be->rope_forward(be, la->q, pos, T, c->n_head, c->head_dim, c->rope_theta);
    be->rope_forward(be, la->k, pos, T, c->n_kv_head, c->head_dim, c->rope_theta);
}

/* model.dtype bf16: the backward of block_qkv's products from d16 [T, qd +
   2 kvd] (attention_backward_bf16's rows, each rounded once): the bias gradients
   as products of ones16 with d16's column blocks (sums of the rounded
   gradients, fp32 accumulation), dW += d16^T xn1_16 and dx16 = bf16(d16 W),
   one product each over the stacked weights when they are adjacent (else
   three summed into dx, then rounded). */
static void qkv_backward(model *m, const layer_weights *w, const layer_weights *g, const layer_acts *la,
                         const uint16_t *d16, float *dx, uint16_t *dx16, int T) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    const act_views *a = m->act_views;
    int D = c->d_model, qd = qdim(c), kvd = kvdim(c), Q3 = qd + 2 * kvd;
    const float *W[3] = {w->wq, w->wk, w->wv};
    float *dW[3] = {g->wq, g->wk, g->wv}, *db[3] = {g->bq, g->bk, g->bv};
    int n[3] = {qd, kvd, kvd}, o[3] = {0, qd, qd + kvd};
    for (int i = 0; i < 3 && c->qkv_bias; i++) /* db[1, n] += ones[1, T] d[T, n] */
        be->gemm_bf16(be, 0, 0, 1, n[i], T, a->ones16, T, d16 + o[i], Q3, 1.0f, db[i], NULL, n[i]);
    if (qkv_adjacent(c, w)) {
        be->gemm_bf16(be, 1, 0, Q3, D, T, d16, Q3, la->xn1_16, D, 1.0f, g->wq, NULL, D);
        be->gemm_bf16(be, 0, 0, T, D, Q3, d16, Q3, w16(m, w->wq), D, 0.0f, NULL, dx16, D);
        return;
    }
    for (int i = 0; i < 3; i++) {
        be->gemm_bf16(be, 1, 0, n[i], D, T, d16 + o[i], Q3, la->xn1_16, D, 1.0f, dW[i], NULL, D);
        be->gemm_bf16(be, 0, 0, T, D, n[i], d16 + o[i], Q3, w16(m, W[i]), D, i ? 1.0f : 0.0f, dx, NULL, D);
    }
    be->cast_bf16(be, dx16, dx, (size_t)T * D);
}

/* out += att @ wo^T (mix: from att16, the bf16 attention's output) */
static void block_out(model *m, const layer_weights *w, layer_acts *la, float *out, int T, int mix) {
    const model_config *c = &m->cfg;
    linear(m, out, la->att, mix ? la->att16 : NULL, w->wo, T, c->d_model, qdim(c), 1.0f);
}

/* MLP half: xn2 = norm(x); h = silu(xn2 wgate^T) * (xn2 wup^T); out += h wdown^T.
   mix: xn2, gate, up and h are bf16 only (xn2_16, gu16, h16). gate and up
   are one GEMM over the stacked weights [wgate; wup] [2F, D] (adjacent in
   the parameter table: model_set_mixed checks), rounded by the GEMM as
   torch.autocast stores them. */
static void block_mlp(model *m, const layer_weights *w, layer_acts *la, const float *x, float *out, int copy, int T,
                      int mix) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    int D = c->d_model, F = c->d_ff;
    float *xcopy = copy ? out : NULL; /* out = x first, written by the norm as it reads x */
    if (!mix) {
        be->rmsnorm_forward(be, la->xn2, NULL, la->rstd2, xcopy, x, w->mlp_norm, T, D, c->rms_eps);
        linear(m, la->gate, la->xn2, NULL, w->wgate, T, F, D, 0.0f);
        linear(m, la->up, la->xn2, NULL, w->wup, T, F, D, 0.0f);
        be->swiglu_forward(be, la->h, la->gate, la->up, (size_t)T * F);
        linear(m, out, la->h, NULL, w->wdown, T, D, F, 1.0f);
        return;
    }
    be->rmsnorm_forward(be, NULL, la->xn2_16, la->rstd2, xcopy, x, w->mlp_norm, T, D, c->rms_eps);
    be->gemm_bf16(be, 0, 1, T, 2 * F, D, la->xn2_16, D, w16(m, w->wgate), D, 0.0f, NULL, la->gu16, 2 * F);
    be->swiglu_forward_bf16(be, la->h16, la->gu16, T, F);
    linear(m, out, la->h, la->h16, w->wdown, T, D, F, 1.0f);
}

/* the forward up to the final norm's output xnf (the LM head's input) */
static int forward_body(model *m, const model_batch *b, char *err, size_t cap) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    act_views *a = m->act_views;
    m->have_forward = 0;
    if (acts_ensure(m, err, cap) || batch_upload(m, b, err, cap)) return -1;
    int T = b->T, B = b->n_seq, D = c->d_model, mix = m->mixed;
    float scale = 1.0f / sqrtf((float)c->head_dim);

    /* model.dtype bf16: the weights' bf16 copy, cast from the master weights
       at every forward (they change with each optimizer step) */
    if (mix) be->cast_bf16(be, m->wbf16, m->cur_params, m->n_params);
    be->embedding_forward(be, a->res[0], m->w.embed, a->tokens, T, D);
    for (int l = 0; l < c->n_layer; l++) {
        layer_weights *w = &m->w.layers[l];
        layer_acts *la = &a->layer[l];
        block_qkv(m, w, la, a->res[l], la->mid, a->pos, T, mix); /* mid = res[l] (copied by the norm) */
        if (mix)
            be->attention_forward_bf16(be, la->att16, la->lse, la->qkv16, a->cu_seqlens, B, T, c->n_head,
                                       c->n_kv_head, c->head_dim, scale);
        else
            be->attention_forward(be, la->att, la->lse, la->q, la->k, la->v, a->cu_seqlens, B, T, c->n_head,
                                  c->n_kv_head, c->head_dim, scale);
        /* mid = res[l] + att @ wo^T */
        block_out(m, w, la, la->mid, T, mix);
        /* res[l+1] = mid + mlp(mid) (res[l+1] = mid copied by the MLP's norm) */
        block_mlp(m, w, la, la->mid, a->res[l + 1], 1, T, mix);
    }
    be->rmsnorm_forward(be, mix ? NULL : a->xnf, mix ? a->xnf16 : NULL, a->rstdf, NULL, a->res[c->n_layer],
                        m->w.final_norm, T, D, c->rms_eps);
    return 0;
}

int model_forward(model *m, const model_batch *b, float *logp, float *entropy, char *err, size_t cap) {
    if (forward_body(m, b, err, cap)) return -1;
    backend *be = m->be;
    const model_config *c = &m->cfg;
    act_views *a = m->act_views;
    int T = b->T, B = b->n_seq, mix = m->mixed;
    for (int t0 = 0; t0 < T; t0 += a->chunk) {
        int n = T - t0 < a->chunk ? T - t0 : a->chunk;
        lm_head_chunk(m, t0, n, mix);
        be->logprob_forward(be, a->logp + t0, a->ent + t0, a->lse + t0, a->logits, a->targets + t0, n, c->vocab);
    }
    if (logp) be->copy_d2h(be, logp, a->logp, (size_t)T * sizeof(float));
    if (entropy) be->copy_d2h(be, entropy, a->ent, (size_t)T * sizeof(float));
    if (be->sync(be)) return errf(err, cap, "model_forward: %s", be->err);
    m->have_forward = 1;
    m->fwd_T = T;
    m->fwd_B = B;
    return 0;
}

int model_logits(model *m, int t0, int n, float *out, char *err, size_t cap) {
    act_views *a = m->act_views;
    if (!m->have_forward) return errf(err, cap, "model_logits: no forward pass to read");
    if (t0 < 0 || n < 0 || t0 + n > m->fwd_T) return errf(err, cap, "model_logits: range [%d, %d) outside the batch", t0, t0 + n);
    int V = m->cfg.vocab;
    for (int s = 0; s < n; s += a->chunk) {
        int k = n - s < a->chunk ? n - s : a->chunk;
        lm_head_chunk(m, t0 + s, k, m->mixed);
        m->be->copy_d2h(m->be, out + (size_t)s * V, a->logits, (size_t)k * V * sizeof(float));
    }
    if (m->be->sync(m->be)) return errf(err, cap, "model_logits: %s", m->be->err);
    return 0;
}

/* loss = -sum w*logp - sum went*entropy over tokens [t0, t0+n): dL/dlogp = -w,
   dL/dH = -went (went may be NULL) into a->dlogp, a->dent */
static void loss_weights_upload(model *m, int t0, int n, const float *w, const float *went) {
    backend *be = m->be;
    act_views *a = m->act_views;
    be->copy_h2d(be, a->dlogp + t0, w, (size_t)n * sizeof(float));
    be->scale(be, a->dlogp + t0, -1.0f, n);
    if (went) {
        be->copy_h2d(be, a->dent + t0, went, (size_t)n * sizeof(float));
        be->scale(be, a->dent + t0, -1.0f, n);
    }
}

/* the LM head's backward for the logits chunk [n, V] of tokens [t0, t0+n)
   (in a->logits, with their lse and entropy from logprob_forward; dlogp, dent of those tokens in place): dlogits in place (or
   rounded into dy16), dW += dlogits^T xnf, dx (the final norm's output
   gradient) = dlogits W */
static void head_chunk_backward(model *m, int t0, int n, int with_dent) {
    backend *be = m->be;
    act_views *a = m->act_views;
    int D = m->cfg.d_model, V = m->cfg.vocab, mix = m->mixed;
    uint16_t *dy16 = mix ? a->dy16 : NULL;
    size_t o = (size_t)t0 * D;
    be->logprob_backward(be, a->logits, dy16, a->dlogp + t0, with_dent ? a->dent + t0 : NULL, a->lse + t0,
                         a->ent + t0, a->targets + t0, n, V);
    linear_back(m, m->g.lm_head, a->dx + o, mix ? a->dxn16 + o : NULL, a->logits, dy16, a->xnf + o,
                mix ? a->xnf16 + o : NULL, m->w.lm_head, n, V, D, 0.0f);
}

/* the backward below the LM head: from the final norm's output gradient
   (a->dx, or a->dxn16 in bf16) to the embedding's gradient */
static void backward_body(model *m, int T, int B) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    act_views *a = m->act_views;
    int D = c->d_model, F = c->d_ff, qd = qdim(c), kvd = kvdim(c);
    int mix = m->mixed;
    float scale = 1.0f / sqrtf((float)c->head_dim);
    model_weights *g = &m->g;
    /* mix: every output gradient that feeds two bf16 products is rounded into
       dy16 by the op that computes it; ops run in order, so each use of
       dy16 is finished before the next op overwrites it */
    uint16_t *dy16 = mix ? a->dy16 : NULL;
    uint16_t *dgu16 = mix ? (uint16_t *)a->dgate : NULL; /* [T, 2F] */
    /* mix: the norms' backwards read their output's gradient in bf16 (dxn16), as the products wrote it */
    const float *dxn = mix ? NULL : a->dx;
    const uint16_t *dxn16 = mix ? a->dxn16 : NULL;
    be->rmsnorm_backward(be, a->dres, dy16, g->final_norm, dxn, dxn16, a->res[c->n_layer], m->w.final_norm,
                         a->rstdf, T, D, 0.0f);

    for (int l = c->n_layer - 1; l >= 0; l--) {
        layer_weights *wl = &m->w.layers[l], *gl = &g->layers[l];
        layer_acts *la = &a->layer[l];
        const uint16_t *xn2_16 = mix ? la->xn2_16 : NULL;
        /* res[l+1] = mid + h @ wdown^T (dy16 holds dres rounded by the norm backward; mix: dh in bf16, in
           dh's memory) */
        uint16_t *dh16 = mix ? (uint16_t *)a->dh : NULL;
        linear_back(m, gl->wdown, a->dh, dh16, a->dres, dy16, la->h, mix ? la->h16 : NULL, wl->wdown, T, D, F, 0.0f);
        if (mix) { /* the stacked [wgate; wup]: one product each for dW and dx */
            be->swiglu_backward_bf16(be, dgu16, dh16, la->gu16, T, F);
            linear_back(m, gl->wgate, a->dx, a->dxn16, NULL, dgu16, NULL, xn2_16, wl->wgate, T, 2 * F, D, 0.0f);
        } else {
            be->swiglu_backward(be, a->dgate, a->dup, a->dh, la->gate, la->up, (size_t)T * F);
            linear_back(m, gl->wgate, a->dx, NULL, a->dgate, NULL, la->xn2, NULL, wl->wgate, T, F, D, 0.0f);
            linear_back(m, gl->wup, a->dx, NULL, a->dup, NULL, la->xn2, NULL, wl->wup, T, F, D, 1.0f);
        }
        /* dres += the norm's input gradient: now d(mid) */
        be->rmsnorm_backward(be, a->dres, dy16, gl->mlp_norm, dxn, dxn16, la->mid, wl->mlp_norm, la->rstd2, T, D,
                             1.0f);
        /* mid = res[l] + att @ wo^T */
        if (mix) { /* datt16 [T, qd] = bf16(dmid wo) (in datt's memory) */
            uint16_t *datt16 = (uint16_t *)a->datt;
            linear_back(m, gl->wo, NULL, datt16, NULL, dy16, NULL, la->att16, wl->wo, T, D, qd, 0.0f);
            /* d(qkv) [T, qd + 2 kvd], through RoPE, into dy16 (dmid's copy is consumed) */
            be->attention_backward_bf16(be, dy16, datt16, la->qkv16, la->att16, la->lse, a->pos, c->rope_theta,
                                        a->cu_seqlens, B, T, c->n_head, c->n_kv_head, c->head_dim, scale);
            qkv_backward(m, wl, gl, la, dy16, a->dx, a->dxn16, T);
        } else {
            linear_back(m, gl->wo, a->datt, NULL, a->dres, NULL, la->att, NULL, wl->wo, T, D, qd, 0.0f);
            be->attention_backward(be, a->dq, a->dk, a->dv, a->datt, la->q, la->k, la->v, la->att, la->lse,
                                   a->cu_seqlens, B, T, c->n_head, c->n_kv_head, c->head_dim, scale);
            be->rope_backward(be, a->dq, a->pos, T, c->n_head, c->head_dim, c->rope_theta);
            be->rope_backward(be, a->dk, a->pos, T, c->n_kv_head, c->head_dim, c->rope_theta);
            if (c->qkv_bias) {
                be->bias_backward(be, gl->bq, a->dq, T, qd);
                be->bias_backward(be, gl->bk, a->dk, T, kvd);
                be->bias_backward(be, gl->bv, a->dv, T, kvd);
            }
            linear_back(m, gl->wq, a->dx, NULL, a->dq, NULL, la->xn1, NULL, wl->wq, T, qd, D, 0.0f);
            linear_back(m, gl->wk, a->dx, NULL, a->dk, NULL, la->xn1, NULL, wl->wk, T, kvd, D, 1.0f);
            linear_back(m, gl->wv, a->dx, NULL, a->dv, NULL, la->xn1, NULL, wl->wv, T, kvd, D, 1.0f);
        }
        /* dres += the norm's input gradient: now d(res[l]) */
        be->rmsnorm_backward(be, a->dres, dy16, gl->attn_norm, dxn, dxn16, a->res[l], wl->attn_norm, la->rstd1, T,
                             D, 1.0f);
    }
    be->embedding_backward(be, g->embed, a->dres, a->tokens, T, D);
}

int model_backward(model *m, const model_batch *b, const float *w, const float *went, char *err, size_t cap) {
    backend *be = m->be;
    act_views *a = m->act_views;
    if (!m->grads) return errf(err, cap, "model_backward: gradients not allocated");
    if (!m->have_forward || b->T != m->fwd_T || b->n_seq != m->fwd_B)
        return errf(err, cap, "model_backward: call model_forward on the same batch first");
    int T = b->T;
    loss_weights_upload(m, 0, T, w, went);
    /* LM head, chunk by chunk: the logits again, then their gradient */
    for (int t0 = 0; t0 < T; t0 += a->chunk) {
        int n = T - t0 < a->chunk ? T - t0 : a->chunk;
        lm_head_chunk(m, t0, n, m->mixed);
        head_chunk_backward(m, t0, n, went != NULL);
    }
    backward_body(m, T, b->n_seq);
    if (be->sync(be)) return errf(err, cap, "model_backward: %s", be->err);
    return 0;
}

int model_forward_backward(model *m, const model_batch *b, model_loss_fn loss_fn, void *ctx, int with_went,
                           char *err, size_t cap) {
    if (!m->grads) return errf(err, cap, "model_forward_backward: gradients not allocated");
    if (forward_body(m, b, err, cap)) return -1;
    backend *be = m->be;
    act_views *a = m->act_views;
    int T = b->T, V = m->cfg.vocab;
    float *h = malloc((size_t)a->chunk * 4 * sizeof(float)); /* host: logp, entropy, w, went of a chunk */
    if (!h) return errf(err, cap, "model_forward_backward: out of memory");
    int rc = 0;
    for (int t0 = 0; t0 < T && !rc; t0 += a->chunk) {
        int n = T - t0 < a->chunk ? T - t0 : a->chunk;
        float *hl = h, *he = h + a->chunk, *hw = h + 2 * a->chunk, *hwe = h + 3 * a->chunk;
        /* the chunk's logits once: log-probs and entropies to the loss, its weights straight back */
        lm_head_chunk(m, t0, n, m->mixed);
        be->logprob_forward(be, a->logp + t0, a->ent + t0, a->lse + t0, a->logits, a->targets + t0, n, V);
        be->copy_d2h(be, hl, a->logp + t0, (size_t)n * sizeof(float));
        be->copy_d2h(be, he, a->ent + t0, (size_t)n * sizeof(float));
        if (be->sync(be)) {
            rc = errf(err, cap, "model_forward_backward: %s", be->err);
            break;
        }
        memset(hwe, 0, (size_t)n * sizeof(float));
        if (loss_fn(ctx, t0, n, hl, he, hw, hwe)) {
            rc = errf(err, cap, "model_forward_backward: the loss failed");
            break;
        }
        loss_weights_upload(m, t0, n, hw, with_went ? hwe : NULL);
        head_chunk_backward(m, t0, n, with_went);
    }
    free(h);
    if (rc) return rc;
    backward_body(m, T, b->n_seq);
    if (be->sync(be)) return errf(err, cap, "model_forward_backward: %s", be->err);
    m->have_forward = 1;
    m->fwd_T = T;
    m->fwd_B = b->n_seq;
    return 0;
}

void model_use_params(model *m, float *params) {
    m->w16_on = 0; /* the bf16 copy was cast from the buffer in use until now */
    m->cur_params = params ? params : m->params;
    weights_bind(m, m->cur_params, &m->w);
}

int model_bf16_begin(model *m, char *err, size_t cap) {
    backend *be = m->be;
    if (!be->cast_bf16 || !be->matmul_bf16) return errf(err, cap, "the %s backend has no bf16 matmul (a CUDA GPU needs compute capability 8.0 or later)", be->name);
    if (!m->wbf16) {
        m->wbf16 = be->alloc(be, m->n_params * sizeof(uint16_t));
        if (!m->wbf16) return errf(err, cap, "bf16 weights (%zu MB): %s", m->n_params * 2 >> 20, be->err);
    }
    be->cast_bf16(be, m->wbf16, m->cur_params, m->n_params);
    m->w16_on = 1;
    return 0;
}

void model_bf16_end(model *m) { m->w16_on = 0; }

int model_set_mixed(model *m, int on, char *err, size_t cap) {
    backend *be = m->be;
    m->have_forward = 0; /* a pending backward would read copies of the other kind */
    m->mixed = 0;
    if (!on) {
        acts_layout(m, 0);
        return 0;
    }
    if (!be->cast_bf16 || !be->gemm_bf16 || !be->attention_forward_bf16 || !be->attention_backward_bf16 ||
        !be->swiglu_forward_bf16 || !be->swiglu_backward_bf16 || !be->rope_forward_bf16)
        return errf(err, cap, "the %s backend has no bf16 GEMM / attention (a CUDA GPU needs compute capability 8.0 or later)", be->name);
    for (int l = 0; l < m->cfg.n_layer; l++) /* the stacked gate/up product needs [wgate; wup] adjacent */
        if (m->w.layers[l].wup != m->w.layers[l].wgate + (size_t)m->cfg.d_ff * m->cfg.d_model)
            return errf(err, cap, "model: layer %d's gate and up projections are not adjacent", l);
    if (!m->wbf16) {
        m->wbf16 = be->alloc(be, m->n_params * sizeof(uint16_t));
        if (!m->wbf16) return errf(err, cap, "bf16 weights (%zu MB): %s", m->n_params * 2 >> 20, be->err);
    }
    if (!m->acts16) {
        act_views *a = m->act_views;
        size_t n = acts16_carve(&m->cfg, m->max_tokens, a->chunk, NULL, NULL);
        m->acts16 = be->alloc(be, n * sizeof(uint16_t));
        if (!m->acts16)
            return errf(err, cap, "bf16 activations (%.1f MB for %d tokens): %s", n * 2.0 / 1e6, m->max_tokens,
                        be->err);
        acts16_carve(&m->cfg, m->max_tokens, a->chunk, m->acts16, a);
        uint16_t *one = malloc((size_t)m->max_tokens * sizeof *one);
        if (!one) return errf(err, cap, "out of memory");
        for (int t = 0; t < m->max_tokens; t++) one[t] = 0x3f80; /* bf16 1.0 */
        be->copy_h2d(be, a->ones16, one, (size_t)m->max_tokens * sizeof *one);
        free(one);
    }
    acts_layout(m, 1); /* only once bf16 is sure to run: the fp32 path needs the full layout */
    m->mixed = 1;
    return 0;
}

void model_zero_grads(model *m) {
    if (m->grads) m->be->zero(m->be, m->grads, m->n_params * sizeof(float));
}

double model_forward_flops(const model_config *c, const model_batch *b) {
    double D = c->d_model, F = c->d_ff, qd = qdim(c), kvd = kvdim(c), V = c->vocab, T = b->T;
    double per_token = 2.0 * c->n_layer * (D * qd + 2 * D * kvd + qd * D + 3 * D * F) + 2.0 * D * V;
    double attn = 0;
    for (int s = 0; s < b->n_seq; s++) {
        double n = b->cu_seqlens[s + 1] - b->cu_seqlens[s];
        attn += 2.0 * 2.0 * c->n_head * c->head_dim * n * (n + 1) / 2.0; /* QK^T and PV, causal */
    }
    return per_token * T + attn * c->n_layer;
}

int kv_cache_create(kv_cache *c, const model *m, int n_slots, int max_seq, char *err, size_t cap) {
    memset(c, 0, sizeof *c);
    if (n_slots <= 0 || max_seq <= 0) return errf(err, cap, "kv cache: need at least one slot and position");
    if (max_seq > m->cfg.max_seq) return errf(err, cap, "kv cache: %d positions exceed the model's max_seq %d", max_seq, m->cfg.max_seq);
    c->n_slots = n_slots;
    c->max_seq = max_seq;
    c->n_layer = m->cfg.n_layer;
    c->kvd = kvdim(&m->cfg);
    size_t n = (size_t)2 * c->n_layer * n_slots * max_seq * c->kvd;
    c->buf = m->be->alloc(m->be, n * sizeof(float));
    if (!c->buf) return errf(err, cap, "kv cache: cannot allocate %.1f MB: %s", n * 4.0 / 1e6, m->be->err);
    return 0;
}

void kv_cache_free(kv_cache *c, backend *be) {
    if (c->buf) be->free(be, c->buf);
    memset(c, 0, sizeof *c);
}

static size_t kv_elem_bytes(const kv_cache *c) { return c->bf16 ? sizeof(uint16_t) : sizeof(float); }

/* layer l's keys (which 0) or values (1): [n_slots, max_seq, kvd] elements */
static void *kv_layer(const kv_cache *c, int l, int which) {
    return (char *)c->buf + (size_t)(2 * l + which) * c->n_slots * c->max_seq * c->kvd * kv_elem_bytes(c);
}

void kv_cache_copy_slot(kv_cache *c, backend *be, int dst, int src, int n_pos) {
    size_t slot = (size_t)c->max_seq * c->kvd * kv_elem_bytes(c);
    for (int l = 0; l < c->n_layer; l++)
        for (int w = 0; w < 2; w++) {
            char *base = kv_layer(c, l, w);
            be->copy_d2d(be, base + dst * slot, base + src * slot, (size_t)n_pos * c->kvd * kv_elem_bytes(c));
        }
}

int model_step_cached_fn(model *m, kv_cache *c, int T, const int32_t *tokens, const int32_t *slot,
                         const int32_t *pos, int n_out, const int32_t *out_rows, model_logits_fn fn, void *ctx,
                         char *err, size_t cap) {
    backend *be = m->be;
    const model_config *cf = &m->cfg;
    act_views *a = m->act_views;
    m->have_forward = 0;
    if (T <= 0 || T > m->max_tokens) return errf(err, cap, "model_step_cached: %d tokens (capacity %d)", T, m->max_tokens);
    if (n_out < 0 || n_out > T) return errf(err, cap, "model_step_cached: %d output rows for %d tokens", n_out, T);
    for (int t = 0; t < T; t++) {
        if (tokens[t] < 0 || tokens[t] >= cf->vocab)
            return errf(err, cap, "model_step_cached: token %d outside the vocabulary (%d)", tokens[t], cf->vocab);
        if (slot[t] < 0 || slot[t] >= c->n_slots) return errf(err, cap, "model_step_cached: slot %d out of range", slot[t]);
        if (pos[t] < 0 || pos[t] >= c->max_seq)
            return errf(err, cap, "model_step_cached: position %d outside the cache (%d)", pos[t], c->max_seq);
    }
    for (int i = 0; i < n_out; i++)
        if (out_rows[i] < 0 || out_rows[i] >= T) return errf(err, cap, "model_step_cached: output row %d out of range", out_rows[i]);
    if (acts_ensure(m, err, cap)) return -1;
    int D = cf->d_model, kvd = kvdim(cf);
    float scale = 1.0f / sqrtf((float)cf->head_dim);
    be->copy_h2d(be, a->tokens, tokens, (size_t)T * sizeof(int32_t));
    be->copy_h2d(be, a->slot, slot, (size_t)T * sizeof(int32_t));
    be->copy_h2d(be, a->pos, pos, (size_t)T * sizeof(int32_t));
    /* one layer's scratch (layer 0's views) serves every layer: x lives in res[0] */
    layer_acts *la = &a->layer[0];
    float *x = a->res[0];
    be->embedding_forward(be, x, m->w.embed, a->tokens, T, D);
    for (int l = 0; l < cf->n_layer; l++) {
        layer_weights *w = &m->w.layers[l];
        block_qkv(m, w, la, x, NULL, a->pos, T, 0);
        void *kc = kv_layer(c, l, 0), *vc = kv_layer(c, l, 1);
        if (c->bf16) {
            be->kv_write_bf16(be, kc, vc, la->k, la->v, a->slot, a->pos, T, kvd, c->max_seq);
            be->attention_cached_bf16(be, la->att, la->q, kc, vc, a->slot, a->pos, T, cf->n_head, cf->n_kv_head,
                                      cf->head_dim, c->max_seq, scale);
        } else {
            be->kv_write(be, kc, vc, la->k, la->v, a->slot, a->pos, T, kvd, c->max_seq);
            be->attention_cached(be, la->att, la->q, kc, vc, a->slot, a->pos, T, cf->n_head, cf->n_kv_head,
                                 cf->head_dim, c->max_seq, scale);
        }
        block_out(m, w, la, x, T, 0);
        block_mlp(m, w, la, x, x, 0, T, 0);
    }
    /* final norm of the requested rows only, gathered into xnf[0:n_out]: one copy per run of consecutive rows
       (a decode step's rows are all one run) */
    for (int i = 0, j; i < n_out; i = j) {
        for (j = i + 1; j < n_out && out_rows[j] == out_rows[i] + (j - i);) j++;
        be->copy_d2d(be, a->dx + (size_t)i * D, x + (size_t)out_rows[i] * D, (size_t)(j - i) * D * sizeof(float));
    }
    be->rmsnorm_forward(be, a->xnf, NULL, a->rstdf, NULL, a->dx, m->w.final_norm, n_out, D, cf->rms_eps);
    for (int s = 0; s < n_out; s += a->chunk) {
        int k = n_out - s < a->chunk ? n_out - s : a->chunk;
        lm_head_chunk(m, s, k, 0);
        fn(ctx, a->logits, s, k);
    }
    if (be->sync(be)) return errf(err, cap, "model_step_cached: %s", be->err);
    return 0;
}

typedef struct logits_d2h { backend *be; float *out; int V; } logits_d2h;
static void logits_to_host(void *ctx, const float *logits, int row0, int k) {
    logits_d2h *h = ctx;
    h->be->copy_d2h(h->be, h->out + (size_t)row0 * h->V, logits, (size_t)k * h->V * sizeof(float));
}

int model_step_cached(model *m, kv_cache *c, int T, const int32_t *tokens, const int32_t *slot, const int32_t *pos,
                      int n_out, const int32_t *out_rows, float *logits, char *err, size_t cap) {
    logits_d2h h = {m->be, logits, m->cfg.vocab};
    return model_step_cached_fn(m, c, T, tokens, slot, pos, n_out, out_rows, logits_to_host, &h, err, cap);
}
