/* trainer/rollout.c: the rollout engine (see rollout.h). One loop: admit
 * prompts into free slots (prefill once per prompt, copy its KV to the group's
 * other slots, draw every sample's first token from the shared logits), then
 * one decode step for every live sequence; finished sequences free their
 * slots for the next prompts.
 *
 * Decode-step sampling runs on the device when the backend has `sample`
 * (CUDA; every sampler setting: temperature, top-k, top-p, min-p, greedy):
 * the step's logits stay on the device, each row's u (the same draw from the
 * completion's stream) goes up, ids and log-probs come back (n * 16 bytes
 * instead of n * V * 4).
 * The CPU backend has no `sample` and samples on the host as before; the
 * first token of each group sample (G draws from one prefill row, once per
 * prompt) is always drawn on the host. */
#include "rollout.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct slot_state {
    int active;
    int out;        /* index into out[] */
    int prompt;     /* index into prompts[] */
    int n_prompt;
    int32_t pending; /* last sampled token, not yet run through the model */
    size_t text_cap;
} slot_state;

int rollout_create(rollout_engine *r, model *m, const tokenizer *tok, int n_slots, int max_seq, char *err,
                   size_t cap) {
    memset(r, 0, sizeof *r);
    if (n_slots <= 0) return errf(err, cap, "rollout: need at least one slot");
    if (n_slots > m->max_tokens)
        return errf(err, cap, "rollout: %d slots exceed the model's %d tokens per step", n_slots, m->max_tokens);
    if (max_seq > m->cfg.max_seq) max_seq = m->cfg.max_seq;
    r->m = m;
    r->tok = tok;
    r->n_slots = n_slots;
    r->max_seq = max_seq;
    if (kv_cache_create(&r->kv, m, n_slots, max_seq, err, cap)) return -1;
    r->logits = xmalloc((size_t)n_slots * m->cfg.vocab * sizeof(float), err, cap);
    r->n_scratch = omp_get_max_threads();
    r->scratch = xcalloc(r->n_scratch, sizeof(sampler_scratch), err, cap);
    if (!r->logits || !r->scratch) {
        rollout_free(r);
        return -1;
    }
    for (int i = 0; i < r->n_scratch; i++)
        if (sampler_scratch_init(&r->scratch[i], m->cfg.vocab)) {
            rollout_free(r);
            return errf(err, cap, "rollout: out of memory");
        }
    return 0;
}

void rollout_free(rollout_engine *r) {
    if (r->m) kv_cache_free(&r->kv, r->m->be);
    free(r->logits);
    if (r->scratch)
        for (int i = 0; i < r->n_scratch; i++) sampler_scratch_free(&r->scratch[i]);
    free(r->scratch);
    memset(r, 0, sizeof *r);
}

void completion_free(completion *c) {
    free(c->tokens);
    free(c->logprobs);
    free(c->text);
    memset(c, 0, sizeof *c);
}

static int is_stop_id(const rollout_config *cfg, int32_t id) {
    for (int i = 0; i < cfg->n_stop_ids; i++)
        if (cfg->stop_ids[i] == id) return 1;
    return 0;
}

/* Appends token id to completion c; returns 1 when the completion is finished. */
static int completion_push(rollout_engine *r, const rollout_config *cfg, completion *c, slot_state *s, int32_t id,
                           float lp) {
    c->tokens[c->n_tokens] = id;
    c->logprobs[c->n_tokens] = lp;
    c->n_tokens++;
    if (is_stop_id(cfg, id)) {
        c->finish = ROLLOUT_STOP;
        return 1;
    }
    if (r->tok && !tokenizer_is_special(r->tok, id)) {
        size_t n = 0;
        const char *b = tokenizer_token_bytes(r->tok, id, &n);
        if (b && n) {
            if (c->text_len + n + 1 > s->text_cap) {
                size_t nc = (c->text_len + n + 1) * 2;
                char *t = realloc(c->text, nc);
                if (!t) { /* keep what we have; finish the completion rather than crash */
                    c->finish = ROLLOUT_LENGTH;
                    return 1;
                }
                c->text = t;
                s->text_cap = nc;
            }
            size_t old = c->text_len;
            memcpy(c->text + old, b, n);
            c->text_len += n;
            c->text[c->text_len] = 0;
            /* earliest stop string that ends inside the new bytes */
            size_t cut = (size_t)-1;
            for (int k = 0; k < cfg->n_stop_strings; k++) {
                size_t sl = strlen(cfg->stop_strings[k]);
                if (!sl || sl > c->text_len) continue;
                size_t from = old + 1 > sl ? old + 1 - sl : 0;
                for (size_t p = from; p + sl <= c->text_len; p++)
                    if (!memcmp(c->text + p, cfg->stop_strings[k], sl)) {
                        if (p < cut) cut = p;
                        break;
                    }
            }
            if (cut != (size_t)-1) {
                c->text_len = cut;
                c->text[cut] = 0;
                c->finish = ROLLOUT_STOP;
                return 1;
            }
        }
    }
    if (c->n_tokens >= cfg->max_new_tokens || s->n_prompt + c->n_tokens >= r->max_seq) {
        c->finish = ROLLOUT_LENGTH;
        return 1;
    }
    return 0;
}

/* the uniform number for position pos of sample `sample` of prompt p: each
   completion draws from its own stream keyed by (seed, prompt id, sample) */
static double draw_u(const rollout_config *cfg, const rollout_prompt *p, int sample, int pos) {
    return rng_uniform(rng_key(cfg->seed, p->id, (uint64_t)sample, 0x5EED), pos);
}

/* device buffers of on-device sampling, rows [0, S) */
typedef struct dev_sample {
    backend *be;
    int V;
    sampler_config c;
    double *u;      /* device [S] */
    int32_t *ids;   /* device [S] */
    float *logp;    /* device [S] */
} dev_sample;

/* model_logits_fn: sample the chunk's rows where they are */
static void sample_chunk(void *ctx, const float *logits, int row0, int k) {
    dev_sample *d = ctx;
    const sampler_config *c = &d->c;
    d->be->sample(d->be, d->ids + row0, d->logp + row0, logits, k, d->V, c->temperature, c->top_k, c->top_p,
                  c->min_p, c->temperature > 0 ? d->u + row0 : NULL);
}

int rollout_generate(rollout_engine *r, const rollout_prompt *prompts, int n_prompts, int G,
                     const rollout_config *cfg, completion *out, char *err, size_t cap) {
    model *m = r->m;
    int V = m->cfg.vocab, S = r->n_slots;
    if (G <= 0 || G > S) return errf(err, cap, "rollout: group_size %d must be in [1, %d slots]", G, S);
    if (cfg->max_new_tokens <= 0) return errf(err, cap, "rollout: max_new_tokens must be positive");
    for (int i = 0; i < n_prompts; i++) {
        if (prompts[i].n <= 0) return errf(err, cap, "rollout: prompt %d is empty", i);
        if (prompts[i].n + 1 > r->max_seq)
            return errf(err, cap, "rollout: prompt %d has %d tokens; the context holds %d (prompt + at least one new token)",
                        i, prompts[i].n, r->max_seq);
        for (int t = 0; t < prompts[i].n; t++)
            if (prompts[i].ids[t] < 0 || prompts[i].ids[t] >= V)
                return errf(err, cap, "rollout: prompt %d token %d (id %d) is outside the vocabulary", i, t,
                            prompts[i].ids[t]);
    }
    memset(out, 0, (size_t)n_prompts * G * sizeof *out);
    for (int i = 0; i < n_prompts * G; i++) {
        out[i].prompt = i / G;
        out[i].sample = i % G;
        out[i].tokens = malloc((size_t)cfg->max_new_tokens * sizeof(int32_t));
        out[i].logprobs = malloc((size_t)cfg->max_new_tokens * sizeof(float));
        out[i].text = calloc(1, 1);
        if (!out[i].tokens || !out[i].logprobs || !out[i].text) {
            for (int j = 0; j <= i; j++) completion_free(&out[j]);
            return errf(err, cap, "rollout: out of memory");
        }
    }
    slot_state *st = calloc(S, sizeof *st);
    int32_t *tk = malloc((size_t)m->max_tokens * sizeof(int32_t)), *sl = malloc((size_t)m->max_tokens * sizeof(int32_t));
    int32_t *ps = malloc((size_t)m->max_tokens * sizeof(int32_t)), *rows = malloc((size_t)m->max_tokens * sizeof(int32_t));
    int32_t *row_slot = malloc((size_t)S * sizeof(int32_t)), *group_slots = malloc((size_t)S * sizeof(int32_t));
    double *u = malloc((size_t)S * sizeof(double));
    int32_t *back = malloc((size_t)2 * S * sizeof(int32_t)); /* ids, then logp bits, from the device */
    dev_sample dv = {0};
    int rc = -1;
    if (!u || !back || !st || !tk || !sl || !ps || !rows || !row_slot || !group_slots) {
        errf(err, cap, "rollout: out of memory");
        goto done;
    }
    if (m->be->sample) {
        dv = (dev_sample){.be = m->be, .V = V, .c = cfg->sampler};
        dv.u = m->be->alloc(m->be, (size_t)S * (sizeof(double) + sizeof(int32_t) + sizeof(float)));
        if (!dv.u) {
            errf(err, cap, "rollout: %s", m->be->err);
            goto done;
        }
        dv.ids = (int32_t *)(dv.u + S);
        dv.logp = (float *)(dv.ids + S);
    }
    if (cfg->bf16 && model_bf16_begin(m, err, cap)) goto done;
    /* bf16 rollouts keep a bf16 KV cache too where the backend has the ops
       (the buffer is sized for fp32; bf16 uses its first half) */
    r->kv.bf16 = cfg->bf16 && m->be->kv_write_bf16 && m->be->attention_cached_bf16;
    int next = 0, n_active = 0;
    while (next < n_prompts || n_active > 0) {
        /* ---- admission: prefill prompts while G slots are free, as many
           prompts per model call as fit in its token capacity ---- */
        int n_free = S - n_active;
        while (next < n_prompts && n_free >= G) {
            int nb = 0, T = 0, first_prompt = next;
            while (next < n_prompts && n_free >= G && (nb == 0 || T + prompts[next].n <= m->max_tokens)) {
                int ng = 0;
                for (int s = 0; s < S && ng < G; s++)
                    if (!st[s].active) {
                        group_slots[nb * G + ng++] = s;
                        st[s].active = 1; /* claimed */
                    }
                T += prompts[next].n;
                nb++, next++, n_free -= G;
                if (T > m->max_tokens) break; /* a long prompt is prefilled alone, in chunks */
            }
            if (nb == 1) {
                const rollout_prompt *p = &prompts[first_prompt];
                for (int t0 = 0; t0 < p->n; t0 += m->max_tokens) {
                    int n = p->n - t0 < m->max_tokens ? p->n - t0 : m->max_tokens;
                    for (int t = 0; t < n; t++) tk[t] = p->ids[t0 + t], sl[t] = group_slots[0], ps[t] = t0 + t;
                    rows[0] = n - 1;
                    if (model_step_cached(m, &r->kv, n, tk, sl, ps, t0 + n == p->n, rows, r->logits, err, cap)) goto done;
                }
            } else {
                int n = 0;
                for (int b = 0; b < nb; b++) {
                    const rollout_prompt *p = &prompts[first_prompt + b];
                    for (int t = 0; t < p->n; t++, n++) tk[n] = p->ids[t], sl[n] = group_slots[b * G], ps[n] = t;
                    rows[b] = n - 1;
                }
                if (model_step_cached(m, &r->kv, n, tk, sl, ps, nb, rows, r->logits, err, cap)) goto done;
            }
            for (int b = 0; b < nb; b++) {
                int pi = first_prompt + b;
                const rollout_prompt *p = &prompts[pi];
                int *gs = group_slots + b * G;
                for (int k = 1; k < G; k++) kv_cache_copy_slot(&r->kv, m->be, gs[k], gs[0], p->n);
                for (int k = 0; k < G; k++) {
                    int s = gs[k];
                    st[s] = (slot_state){.active = 1, .out = pi * G + k, .prompt = pi, .n_prompt = p->n, .text_cap = 1};
                    completion *c = &out[st[s].out];
                    float lp;
                    int32_t id = sampler_sample(&cfg->sampler, r->logits + (size_t)b * V, V, draw_u(cfg, p, k, 0),
                                                &r->scratch[0], &lp);
                    if (completion_push(r, cfg, c, &st[s], id, lp)) {
                        st[s].active = 0;
                        if (cfg->on_finish) cfg->on_finish(cfg->finish_ctx, st[s].out);
                    } else
                        st[s].pending = id, n_active++;
                }
            }
            n_free = S - n_active;
        }
        if (!n_active) continue;
        /* ---- one decode step for every live sequence ---- */
        int T = 0;
        for (int s = 0; s < S; s++) {
            if (!st[s].active) continue;
            completion *c = &out[st[s].out];
            tk[T] = st[s].pending;
            sl[T] = s;
            ps[T] = st[s].n_prompt + c->n_tokens - 1;
            rows[T] = T;
            row_slot[T] = s;
            T++;
        }
        int32_t *ids = tk; /* reuse: sampled ids per row */
        float *lps = (float *)ps;
        if (dv.u) { /* on the device: u up, ids and log-probs back */
            for (int i = 0; i < T && dv.c.temperature > 0; i++) { /* the host path's draws */
                const completion *c = &out[st[row_slot[i]].out];
                u[i] = draw_u(cfg, &prompts[c->prompt], c->sample, c->n_tokens);
            }
            if (dv.c.temperature > 0) m->be->copy_h2d(m->be, dv.u, u, (size_t)T * sizeof(double));
            if (model_step_cached_fn(m, &r->kv, T, tk, sl, ps, T, rows, sample_chunk, &dv, err, cap)) goto done;
            /* ids [S] and logp [S] are adjacent on the device: one copy back */
            m->be->copy_d2h(m->be, back, dv.ids, (size_t)2 * S * sizeof(int32_t));
            memcpy(ids, back, (size_t)T * sizeof(int32_t));
            memcpy(lps, back + S, (size_t)T * sizeof(float));
            if (m->be->sync(m->be)) {
                errf(err, cap, "rollout: %s", m->be->err);
                goto done;
            }
        } else {
            if (model_step_cached(m, &r->kv, T, tk, sl, ps, T, rows, r->logits, err, cap)) goto done;
#pragma omp parallel for schedule(dynamic, 1) num_threads(r->n_scratch)
            for (int i = 0; i < T; i++) {
                slot_state *s = &st[row_slot[i]];
                completion *c = &out[s->out];
                ids[i] = sampler_sample(&cfg->sampler, r->logits + (size_t)i * V, V,
                                        draw_u(cfg, &prompts[s->prompt], c->sample, c->n_tokens),
                                        &r->scratch[omp_get_thread_num()], &lps[i]);
            }
        }
        for (int i = 0; i < T; i++) {
            slot_state *s = &st[row_slot[i]];
            if (completion_push(r, cfg, &out[s->out], s, ids[i], lps[i])) {
                s->active = 0;
                n_active--;
                if (cfg->on_finish) cfg->on_finish(cfg->finish_ctx, s->out);
            } else {
                s->pending = ids[i];
            }
        }
    }
    rc = 0;
done:
    model_bf16_end(m);
    if (dv.u) m->be->free(m->be, dv.u);
    free(u), free(back);
    if (rc)
        for (int i = 0; i < n_prompts * G; i++) completion_free(&out[i]);
    free(st), free(tk), free(sl), free(ps), free(rows), free(row_slot), free(group_slots);
    return rc;
}

