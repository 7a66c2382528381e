/* trainer/rollout_grade.c: rollouts on a second thread, grading of finished
 * completions on the calling thread (see rollout_grade.h).
 *
 * The generating thread never shares a completion it is still writing: when
 * completion i finishes, rollout_generate's on_finish hook copies its text
 * and tokens (a few KB) into this module's own snapshot and queues i. The
 * grading thread takes every queued index at once, grades those snapshots
 * and scatters the results to their rows. So a failing rollout, which frees
 * the completions, can never pull memory from under a grade in progress. */
#define _GNU_SOURCE
#include "rollout_grade.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct snapshot {
    char *text;
    size_t text_len;
    int32_t *tokens;
    int n_tokens;
    int finished; /* ROLLOUT_STOP */
} snapshot;

typedef struct overlap {
    /* the generating thread's job */
    rollout_engine *ro;
    const rollout_prompt *prompts;
    int n_prompts, G;
    rollout_config cfg; /* the caller's, with on_finish set */
    completion *out;
    int rc;
    char err[1024];
    double t_end;       /* when rollout_generate returned */
    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    snapshot *snap;     /* [N] */
    int *queue;         /* [N] finished indices in finishing order */
    int n_queued;
    int done;           /* rollout_generate has returned */
    int oom;            /* a snapshot could not be allocated */
} overlap;

/* rollout_config.on_finish, on the generating thread */
static void on_finish(void *ctx, int i) {
    overlap *o = ctx;
    const completion *c = &o->out[i];
    snapshot s = {.text = malloc(c->text_len + 1), .text_len = c->text_len,
                  .tokens = malloc((c->n_tokens ? c->n_tokens : 1) * sizeof(int32_t)), .n_tokens = c->n_tokens,
                  .finished = c->finish == ROLLOUT_STOP};
    if (s.text) memcpy(s.text, c->text, c->text_len + 1);
    if (s.tokens) memcpy(s.tokens, c->tokens, (size_t)c->n_tokens * sizeof(int32_t));
    pthread_mutex_lock(&o->mu);
    if (!s.text || !s.tokens) {
        free(s.text), free(s.tokens);
        o->oom = 1;
    } else {
        o->snap[i] = s;
        o->queue[o->n_queued++] = i;
    }
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static void *generate_thread(void *arg) {
    overlap *o = arg;
    backend *be = o->ro->m->be;
    if (be->bind_thread) be->bind_thread(be);
    o->rc = rollout_generate(o->ro, o->prompts, o->n_prompts, o->G, &o->cfg, o->out, o->err, sizeof o->err);
    pthread_mutex_lock(&o->mu);
    o->t_end = now_seconds();
    o->done = 1;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

int rollout_grade(rollout_engine *ro, grader_runner *gr, int NG, const rollout_prompt *prompts, int n_prompts, int G,
                  const rollout_config *cfg, json_t *const *prompt_items, completion *out, grade_result *gres,
                  rollout_grade_times *tm, char *err, size_t cap) {
    rollout_grade_times t = {0};
    double t0 = now_seconds();
    int N = n_prompts * G;
    if (NG <= 0 || !gr || N <= 0) { /* nothing to overlap */
        int rc = rollout_generate(ro, prompts, n_prompts, G, cfg, out, err, cap);
        t.sampling = now_seconds() - t0;
        if (tm) *tm = t;
        return rc;
    }
    overlap o = {.ro = ro, .prompts = prompts, .n_prompts = n_prompts, .G = G, .cfg = *cfg, .out = out};
    o.cfg.on_finish = on_finish;
    o.cfg.finish_ctx = &o;
    o.snap = calloc(N, sizeof *o.snap);
    o.queue = calloc(N, sizeof *o.queue);
    int *batch = calloc(N, sizeof *batch);
    rft_sample *smp = calloc(N, sizeof *smp);
    json_t **items = calloc(N, sizeof *items);
    grade_result *res = calloc((size_t)N * NG, sizeof *res);
    if (!o.snap || !o.queue || !batch || !smp || !items || !res) {
        free(o.snap), free(o.queue), free(batch), free(smp), free(items), free(res);
        return errf(err, cap, "rollout: out of memory");
    }
    pthread_mutex_init(&o.mu, NULL);
    pthread_cond_init(&o.cv, NULL);
    pthread_t tid;
    int rc = -1, grade_failed = 0;
    int e = pthread_create(&tid, NULL, generate_thread, &o);
    if (e) {
        errf(err, cap, "%s:%d: pthread_create: %s", __FILE__, __LINE__, strerror(e));
        goto out;
    }
    int taken = 0;
    for (;;) {
        pthread_mutex_lock(&o.mu);
        while (o.n_queued == taken && !o.done) pthread_cond_wait(&o.cv, &o.mu);
        int k = o.n_queued - taken, done = o.done;
        memcpy(batch, o.queue + taken, (size_t)k * sizeof *batch);
        pthread_mutex_unlock(&o.mu);
        taken += k;
        if (!k && done) break;
        if (grade_failed || !k) continue; /* after a failure: only wait for the generating thread */
        for (int j = 0; j < k; j++) {
            const snapshot *s = &o.snap[batch[j]];
            smp[j] = (rft_sample){.output_text = s->text, .output_len = s->text_len, .tokens = s->tokens,
                                  .n_tokens = (size_t)s->n_tokens, .finished = s->finished};
            items[j] = prompt_items[batch[j] / G];
        }
        double tg = now_seconds();
        if (grader_runner_grade(gr, smp, items, k, res, err, cap)) {
            grade_failed = 1;
            continue;
        }
        t.grading_busy += now_seconds() - tg;
        if (!done) t.graded_early += k;
        for (int j = 0; j < k; j++)
            memcpy(gres + (size_t)batch[j] * NG, res + (size_t)j * NG, (size_t)NG * sizeof *res);
    }
    pthread_join(tid, NULL);
    t.sampling = o.t_end - t0;
    t.grading = now_seconds() - o.t_end;
    if (o.rc) {
        errf(err, cap, "%s", o.err); /* rollout_generate freed the completions */
    } else if (grade_failed || o.oom || taken != N) {
        if (!grade_failed) errf(err, cap, "rollout: out of memory (%d of %d completions graded)", taken, N);
        for (int i = 0; i < N; i++) completion_free(&out[i]);
    } else {
        rc = 0;
    }
out:
    for (int i = 0; i < N; i++) free(o.snap[i].text), free(o.snap[i].tokens);
    pthread_mutex_destroy(&o.mu);
    pthread_cond_destroy(&o.cv);
    free(o.snap), free(o.queue), free(batch), free(smp), free(items), free(res);
    if (tm) *tm = t;
    return rc;
}

/* ---- across ranks ---- */

/* one completion and its grades as bytes: {n_tokens, finish, has_text,
   text_len} (int64 each), tokens, logprobs, text, NG grade_results */
typedef struct wire_head {
    int64_t n_tokens, finish, has_text, text_len;
} wire_head;

static size_t wire_size(const completion *c, int NG) {
    return sizeof(wire_head) + (size_t)c->n_tokens * (sizeof(int32_t) + sizeof(float)) + c->text_len +
           (size_t)NG * sizeof(grade_result);
}

int rollout_grade_shared(comm *cm, rollout_engine *ro, grader_runner *gr, int NG, const rollout_prompt *prompts,
                         int n_prompts, int G, const rollout_config *cfg, json_t *const *prompt_items,
                         completion *out, grade_result *gres, rollout_grade_times *tm, char *err, size_t cap) {
    if (!cm || !strcmp(cm->kind, "single")) /* (one NCCL rank takes the path below: gpu_check exercises it) */
        return rollout_grade(ro, gr, NG, prompts, n_prompts, G, cfg, prompt_items, out, gres, tm, err, cap);
    /* this rank's prompts: a contiguous share [p0, p1) */
    int p0 = (int)((long)n_prompts * cm->rank / cm->size), p1 = (int)((long)n_prompts * (cm->rank + 1) / cm->size);
    int N = n_prompts * G, i0 = p0 * G, i1 = p1 * G;
    if (p1 > p0 && rollout_grade(ro, gr, NG, prompts + p0, p1 - p0, G, cfg, prompt_items + p0, out + i0,
                                 gres + (size_t)i0 * NG, tm, err, cap))
        return -1; /* the other ranks wait in the gather below until the launcher ends them */
    if (p1 == p0 && tm) memset(tm, 0, sizeof *tm);
    for (int i = i0; i < i1; i++) out[i].prompt = i / G; /* index into all the prompts */
    /* every rank's completions and grades to every rank */
    size_t bytes = 0;
    for (int i = i0; i < i1; i++) bytes += wire_size(&out[i], NG);
    char *mine = malloc(bytes ? bytes : 1), *all = NULL, *p = mine;
    size_t *counts = calloc(cm->size, sizeof *counts);
    int rc = -1;
    if (!mine || !counts) {
        errf(err, cap, "out of memory");
        goto done;
    }
    for (int i = i0; i < i1; i++) {
        completion *c = &out[i];
        wire_head h = {c->n_tokens, c->finish, c->text != NULL, (int64_t)c->text_len};
        memcpy(p, &h, sizeof h), p += sizeof h;
        memcpy(p, c->tokens, (size_t)c->n_tokens * sizeof(int32_t)), p += (size_t)c->n_tokens * sizeof(int32_t);
        memcpy(p, c->logprobs, (size_t)c->n_tokens * sizeof(float)), p += (size_t)c->n_tokens * sizeof(float);
        memcpy(p, c->text, c->text_len), p += c->text_len;
        memcpy(p, gres + (size_t)i * NG, (size_t)NG * sizeof(grade_result)), p += (size_t)NG * sizeof(grade_result);
    }
    if (comm_gather(cm, mine, bytes, &all, counts, err, cap)) goto done;
    /* unpack the other ranks' completions; rank r's prompts are its share,
       its bytes [p, end) (checked: ranks that disagree on the step's shape,
       e.g. another configuration, must not read past them) */
    p = all;
    for (int r = 0; r < cm->size; r++) {
        int a = (int)((long)n_prompts * r / cm->size) * G, z = (int)((long)n_prompts * (r + 1) / cm->size) * G;
        const char *end = p + counts[r];
        if (r == cm->rank) {
            p += counts[r];
            continue;
        }
        int bad = 0;
        for (int i = a; i < z && !bad; i++) {
            completion *c = &out[i];
            wire_head h;
            bad = (size_t)(end - p) < sizeof h;
            if (bad) break;
            memcpy(&h, p, sizeof h), p += sizeof h;
            bad = h.n_tokens < 0 || h.text_len < 0 || h.n_tokens > (int64_t)(end - p) ||
                  (size_t)(end - p) < (size_t)h.n_tokens * (sizeof(int32_t) + sizeof(float)) + (size_t)h.text_len +
                                          (size_t)NG * sizeof(grade_result);
            if (bad) break;
            *c = (completion){.prompt = i / G, .sample = i % G, .n_tokens = (int)h.n_tokens, .finish = (int)h.finish,
                              .text_len = (size_t)h.text_len};
            c->tokens = malloc((size_t)h.n_tokens * sizeof(int32_t) + 1);
            c->logprobs = malloc((size_t)h.n_tokens * sizeof(float) + 1);
            c->text = h.has_text ? malloc((size_t)h.text_len + 1) : NULL;
            if (!c->tokens || !c->logprobs || (h.has_text && !c->text)) {
                errf(err, cap, "out of memory");
                goto done;
            }
            memcpy(c->tokens, p, (size_t)h.n_tokens * sizeof(int32_t)), p += (size_t)h.n_tokens * sizeof(int32_t);
            memcpy(c->logprobs, p, (size_t)h.n_tokens * sizeof(float)), p += (size_t)h.n_tokens * sizeof(float);
            if (c->text) memcpy(c->text, p, c->text_len), c->text[c->text_len] = 0;
            p += c->text_len;
            memcpy(gres + (size_t)i * NG, p, (size_t)NG * sizeof(grade_result)), p += (size_t)NG * sizeof(grade_result);
        }
        if (bad || p != end) {
            errf(err, cap, "rank %d sent completions this rank cannot read (do all ranks run the same configuration?)",
                 r);
            goto done;
        }
    }
    rc = 0;
done:
    if (rc)
        for (int i = 0; i < N; i++) completion_free(&out[i]);
    free(mine), free(all), free(counts);
    return rc;
}
