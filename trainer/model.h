/* trainer/model.h: the Llama-family decoder (SmolLM2, Qwen2.5, Llama 3.x).
 * Config, parameter table with Hugging Face names, packed-batch forward that
 * returns per-token target log-probs, and backward from per-token weights.
 * Written once against kernels/backend.h; holds no backend-specific code.
 *
 * Memory: one device allocation for all parameters and one for their
 * gradients (same layout, views carved out per tensor), one for activations
 * sized for max_tokens tokens per forward.
 */
#ifndef RFT_MODEL_H
#define RFT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/backend.h"

typedef struct model_config {
    int vocab;          /* vocabulary size V */
    int d_model;        /* hidden size D */
    int n_layer;        /* number of blocks L */
    int n_head;         /* query heads Hq */
    int n_kv_head;      /* key/value heads Hkv (divides Hq) */
    int head_dim;       /* per-head size hd (usually D / Hq) */
    int d_ff;           /* MLP hidden size F */
    float rope_theta;   /* RoPE base */
    float rms_eps;      /* RMSNorm epsilon */
    int tie_embeddings; /* 1: lm_head shares embed_tokens */
    int qkv_bias;       /* 1: q/k/v projections have biases (Qwen2) */
    int max_seq;        /* longest sequence (context) the model is used with */
} model_config;

/* one parameter tensor: a view into model.params (and model.grads) */
typedef struct model_tensor {
    char name[96];      /* Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight" */
    int ndim;           /* 1 or 2 */
    int64_t shape[2];   /* [out, in] for linear weights, [n] for vectors */
    size_t numel;
    size_t offset;      /* in floats from the start of params / grads */
    int decay;          /* 1 if weight decay applies (2-D matrices) */
} model_tensor;

/* device pointers into the parameter (or gradient) buffer for one block */
typedef struct layer_weights {
    float *attn_norm;          /* [D] */
    float *wq, *wk, *wv;       /* [Hq*hd, D], [Hkv*hd, D], [Hkv*hd, D] */
    float *bq, *bk, *bv;       /* [Hq*hd], [Hkv*hd], [Hkv*hd] or NULL */
    float *wo;                 /* [D, Hq*hd] */
    float *mlp_norm;           /* [D] */
    float *wgate, *wup;        /* [F, D] */
    float *wdown;              /* [D, F] */
} layer_weights;

typedef struct model_weights {
    float *embed;              /* [V, D] */
    layer_weights *layers;     /* [L] */
    float *final_norm;         /* [D] */
    float *lm_head;            /* [V, D] (== embed when tied) */
} model_weights;

/* A packed batch on the host: n_seq sequences laid end to end, T tokens. */
typedef struct model_batch {
    int T;                     /* total tokens */
    int n_seq;                 /* sequences */
    const int32_t *tokens;     /* [T] input ids */
    const int32_t *targets;    /* [T] next-token ids; < 0 where no log-prob is wanted */
    const int32_t *cu_seqlens; /* [n_seq+1] sequence offsets */
    const int32_t *pos;        /* [T] position of each token in its sequence (NULL: derived from cu_seqlens) */
} model_batch;

typedef struct model {
    model_config cfg;
    backend *be;
    int max_tokens;            /* capacity of the activation buffers */

    int n_tensors;
    model_tensor *tensors;     /* [n_tensors] host table, HF order */
    size_t n_params;           /* floats in params */

    float *params;             /* device [n_params] */
    float *grads;              /* device [n_params] (NULL until model_alloc_grads) */
    model_weights w;           /* views into params */
    model_weights g;           /* views into grads */

    float *acts;               /* device activations, one allocation */
    size_t acts_floats;
    int acts_mixed;       /* m->acts is carved in model.dtype bf16's compact layout */
    void *act_views;           /* private: carved views (see model.c) */

    float *cur_params;         /* the buffer m->w points into (m->params or a model_use_params buffer) */
    uint16_t *wbf16;           /* device [n_params] bf16 copy of cur_params (NULL until model_bf16_begin) */
    int w16_on;                /* 1 between model_bf16_begin and model_bf16_end (wbf16 then mirrors cur_params) */
    int mixed;                 /* model.dtype bf16: forward/backward products in bf16 (model_set_mixed) */
    uint16_t *acts16;          /* device bf16 activation copies (NULL unless mixed was ever on) */

    int have_forward;          /* activations hold the batch of the last forward */
    int fwd_T, fwd_B;
} model;

/* Validates cfg (names the bad field in err), builds the parameter table and
 * allocates parameters (zeroed) and activations for max_tokens per forward. */
int model_create(model *m, const model_config *cfg, backend *be, int max_tokens, char *err, size_t err_cap);
int model_alloc_grads(model *m, char *err, size_t err_cap);
void model_free(model *m);

/* Deterministic initialisation from a seed: linear weights N(0, 0.02),
 * output projections scaled by 1/sqrt(2L), norms 1, biases 0. Same seed ->
 * bitwise same weights on every machine. */
void model_init_weights(model *m, uint64_t seed);

/* index of a tensor by HF name, -1 if absent */
int model_find_tensor(const model *m, const char *name);

/* Forward over a packed batch (T <= max_tokens). Writes host logp[T] (log-prob
 * of targets[t]; 0 where targets[t] < 0) and, when entropy != NULL, host
 * entropy[T] of the predictive distribution. Keeps the activations for
 * model_backward. Returns 0, or -1 with err. */
int model_forward(model *m, const model_batch *b, float *logp, float *entropy, char *err, size_t err_cap);

/* Full logits of token positions [t0, t0+n) of the last forward into host
 * out[n, V]. Valid after model_forward. */
int model_logits(model *m, int t0, int n, float *out, char *err, size_t err_cap);

/* Backward of loss = -sum_t w[t] * logp[t] - sum_t went[t] * entropy[t]
 * (went may be NULL) for the batch of the last model_forward; ACCUMULATES
 * into m->grads. SFT: w = 1/N on answer tokens. Policy gradient: w = the
 * per-token coefficient derived from advantages and ratios. */
int model_backward(model *m, const model_batch *b, const float *w, const float *went, char *err, size_t err_cap);

void model_zero_grads(model *m);

/* The loss's weights for tokens [t0, t0+n) of the batch, from their
 * log-probs and entropies (host, [n] each): w[i] = -dL/dlogp and went[i] =
 * -dL/dentropy (zeroed before the call), as model_backward takes them.
 * Called once per LM-head chunk, in token order. Nonzero stops the pass. */
typedef int (*model_loss_fn)(void *ctx, int t0, int n, const float *logp, const float *entropy, float *w,
                             float *went);

/* model_forward then model_backward with loss_fn's weights, in one pass over
 * the LM head: each logits chunk is computed once, its log-probs go to
 * loss_fn and the weights it returns straight into the chunk's backward
 * (the separate forward of the head and its logits are saved). For losses
 * whose per-token weights depend on the token's own log-prob (with the
 * earlier tokens'); the gradients are those of model_forward +
 * model_backward, bit for bit. with_went: apply went (else ignored). */
int model_forward_backward(model *m, const model_batch *b, model_loss_fn loss_fn, void *ctx, int with_went,
                           char *err, size_t err_cap);

/* Points the model's weight views at another device buffer laid out like
 * m->params (a frozen reference copy, say); NULL returns to m->params. */
void model_use_params(model *m, float *params);

/* ---- bf16 weights (rollouts with sampling.dtype: bf16) ----
 * model_bf16_begin casts the weights m->w points at into a bf16 copy (one
 * device allocation of n_params uint16, made on first use and kept) and makes
 * every linear layer use it (be->matmul_bf16: inputs rounded to bf16, fp32
 * accumulation; embedding lookup, norms and attention stay fp32) until
 * model_bf16_end. Call it again after the weights change. */
int model_bf16_begin(model *m, char *err, size_t err_cap);
void model_bf16_end(model *m);

/* ---- bf16 mixed precision (model.dtype: bf16) ----
 * on != 0: model_forward, model_backward and model_logits run every linear
 * layer and the LM head with bf16 operands (be->gemm_bf16: exact products,
 * fp32 accumulation; tensor cores on a GPU): the weights' bf16 copy is cast
 * from the fp32 master weights at each forward, each linear layer's input is
 * rounded once and kept for the weight gradient, each output gradient is
 * rounded before its two products. Attention runs as
 * attention_forward_bf16 / attention_backward_bf16 (bf16 operands of its
 * products, fp32 softmax statistics; tensor cores on a GPU). Master weights,
 * gradients, optimizer state, embeddings, norms, RoPE, the stored
 * activations, softmax and log-probs stay fp32 (as PyTorch's bf16 autocast
 * keeps them). Allocates the bf16 weights and
 * buffers on first use: 2 bytes x qd per token per layer (attention output)
 * and one output-gradient buffer; the other bf16 inputs reuse the memory of
 * the fp32 views they replace.
 * on == 0 returns to fp32. Rollouts (model_step_cached) are not affected:
 * sampling.dtype chooses their precision. */
int model_set_mixed(model *m, int on, char *err, size_t err_cap);

/* ---- inference with a KV cache (rollouts) ---- */

/* Keys/values of n_slots sequences of up to max_seq positions, every layer:
 * one device allocation, layer l's keys at buf + (2l) * slot_floats*n_slots,
 * values at buf + (2l+1) * ... (slot_floats = max_seq * Hkv*hd). */
typedef struct kv_cache {
    int n_slots, max_seq, n_layer, kvd;
    int bf16;                  /* 1: entries are bf16 (kv_write_bf16 / attention_cached_bf16), laid out
                                  the same with 2-byte elements in the first half of buf */
    float *buf;
} kv_cache;

int kv_cache_create(kv_cache *c, const model *m, int n_slots, int max_seq, char *err, size_t err_cap);
void kv_cache_free(kv_cache *c, backend *be);
/* copies positions [0, n_pos) of slot src into slot dst, every layer (group
 * samples share one prompt prefill) */
void kv_cache_copy_slot(kv_cache *c, backend *be, int dst, int src, int n_pos);

/* Runs T tokens through the model; token t belongs to cache slot slot[t] at
 * position pos[t] (its key/value are stored there; it attends to positions
 * 0..pos[t] of its slot, so earlier positions must already be cached or be in
 * this call before it). Writes host logits[n_out, V] of the rows listed in
 * out_rows. T <= m->max_tokens. Uses the model's activation buffers (not
 * usable together with a pending model_backward). */
int model_step_cached(model *m, kv_cache *c, int T, const int32_t *tokens, const int32_t *slot, const int32_t *pos,
                      int n_out, const int32_t *out_rows, float *logits, char *err, size_t err_cap);

/* model_step_cached without the copy to the host: as the LM head produces
 * the logits of output rows [row0, row0 + k) (chunks of up to the model's
 * LM-head chunk), fn(ctx, logits, row0, k) gets them as a DEVICE buffer
 * logits[k, V], valid during the call only (the next chunk overwrites it);
 * fn may queue backend ops on it (the rollout samples there with
 * be->sample). Rows come in order, row0 = 0, k, 2k, ... The backend is
 * synchronised (and its errors reported) before this returns. */
typedef void (*model_logits_fn)(void *ctx, const float *logits, int row0, int k);
int model_step_cached_fn(model *m, kv_cache *c, int T, const int32_t *tokens, const int32_t *slot,
                         const int32_t *pos, int n_out, const int32_t *out_rows, model_logits_fn fn, void *ctx,
                         char *err, size_t err_cap);

/* FLOPs of one forward over T tokens packed as the given batch (matmuls +
 * attention), for benchmarks. */
double model_forward_flops(const model_config *c, const model_batch *b);

#endif
