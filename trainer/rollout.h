/* trainer/rollout.h: the rollout engine: batched autoregressive sampling with
 * a preallocated KV cache. Prompts are prefilled together (one prefill per
 * prompt, shared by its group_size samples through slot copies), then every
 * live sequence advances one token per decode step; finished sequences leave
 * the batch and their slots take new prompts, so work follows live tokens.
 * Each completion draws from its own counter-based random stream keyed by
 * (seed, prompt id, sample index) and position, so it does not depend on the
 * batch around it, the thread count or a resume. */
#ifndef RFT_ROLLOUT_H
#define RFT_ROLLOUT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

enum { ROLLOUT_LENGTH = 0, ROLLOUT_STOP = 1 };

typedef struct rollout_config {
    sampler_config sampler;
    int max_new_tokens;
    const int32_t *stop_ids;         /* token ids that end a completion (kept as its last token) */
    int n_stop_ids;
    const char *const *stop_strings; /* texts that end a completion (text cut before them) */
    int n_stop_strings;
    uint64_t seed;
    int bf16;                        /* 1: linear layers use bf16 copies of the weights (model_bf16_begin) */
    /* optional: called (on the generating thread) as soon as out[i] is
       complete (tokens, text, finish final), once per completion */
    void (*on_finish)(void *ctx, int i);
    void *finish_ctx;
} rollout_config;

typedef struct rollout_prompt {
    const int32_t *ids;  /* prompt token ids */
    int n;
    uint64_t id;         /* stable id of the prompt (dataset row), keys its random streams */
} rollout_prompt;

typedef struct completion {
    int prompt;          /* index into the prompts array */
    int sample;          /* 0 .. group_size-1 */
    int32_t *tokens;     /* [n_tokens] sampled ids (a stop token is included) */
    float *logprobs;     /* [n_tokens] log-prob of each under the sampling distribution */
    int n_tokens;
    char *text;          /* decoded completion, NUL-terminated, cut at a stop string */
    size_t text_len;
    int finish;          /* ROLLOUT_STOP or ROLLOUT_LENGTH */
} completion;

typedef struct rollout_engine {
    model *m;
    const tokenizer *tok; /* for text and stop strings; may be NULL (then no text) */
    kv_cache kv;
    int n_slots;
    int max_seq;
    float *logits;        /* host [n_slots, V] */
    sampler_scratch *scratch; /* [n_threads] */
    int n_scratch;
} rollout_engine;

/* n_slots sequences of up to max_seq tokens (prompt + completion) at once. */
int rollout_create(rollout_engine *r, model *m, const tokenizer *tok, int n_slots, int max_seq, char *err,
                   size_t err_cap);
void rollout_free(rollout_engine *r);

/* Generates group_size completions for each prompt into out[n_prompts *
 * group_size] (prompt-major). An empty prompt, or one that leaves no room
 * for a single new token within max_seq, is an error naming it; nothing is
 * truncated. Free each completion with completion_free. */
int rollout_generate(rollout_engine *r, const rollout_prompt *prompts, int n_prompts, int group_size,
                     const rollout_config *cfg, completion *out, char *err, size_t err_cap);

void completion_free(completion *c);

#endif
