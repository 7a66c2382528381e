/* trainer/grader_runner.c: all configured graders behind one call: checks
 * every plugin at start-up (dlopen, symbol, ABI) in the rft process, then
 * runs the isolation: process graders in a worker pool and the inline ones
 * in-process, both on the same batch. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grader.h"
#include "grader_inline.h"
#include "grader_load.h"
#include "grader_pool.h"
#include "util.h"

struct grader_runner {
    int n;
    grader_inline *inl;
    grader_pool *pool;
};

grader_runner *grader_runner_create(const grader_spec *specs, int n_specs, int workers, char *err, size_t err_cap) {
    grader_runner *r = xcalloc(1, sizeof *r, err, err_cap);
    int *in_idx = xcalloc(n_specs + 1, sizeof *in_idx, err, err_cap);
    int *pr_idx = xcalloc(n_specs + 1, sizeof *pr_idx, err, err_cap);
    if (!r || !in_idx || !pr_idx) goto fail;
    r->n = n_specs;
    int n_in = 0, n_pr = 0;
    for (int g = 0; g < n_specs; g++) {
        if (specs[g].isolation == GRADER_ISOLATION_INLINE) {
            in_idx[n_in++] = g;
        } else {
            /* load it here once so a bad plugin is a clear start-up error */
            grader_instance gi;
            if (grader_instance_open(&gi, specs[g].name, specs[g].path, err, err_cap)) goto fail;
            grader_instance_close(&gi);
            pr_idx[n_pr++] = g;
        }
    }
    if (n_in && !(r->inl = grader_inline_create(specs, in_idx, n_in, workers, err, err_cap))) goto fail;
    if (n_pr && !(r->pool = grader_pool_create(specs, pr_idx, n_pr, workers, err, err_cap))) goto fail;
    free(in_idx), free(pr_idx);
    return r;
fail:
    free(in_idx), free(pr_idx);
    grader_runner_free(r);
    return NULL;
}

typedef struct inline_call {
    grader_runner *r;
    const rft_sample *samples;
    json_t *const *items;
    int n, rc;
    grade_result *out;
    char err[256];
} inline_call;

static void *inline_thread(void *arg) {
    inline_call *c = arg;
    c->rc = grader_inline_grade(c->r->inl, c->samples, c->items, c->n, c->out, c->r->n, c->err, sizeof c->err);
    return NULL;
}

int grader_runner_grade(grader_runner *r, const rft_sample *samples, json_t *const *items, int n, grade_result *out,
                        char *err, size_t err_cap) {
    memset(out, 0, sizeof *out * (size_t)n * r->n);
    if (!r->pool) return r->inl ? grader_inline_grade(r->inl, samples, items, n, out, r->n, err, err_cap) : 0;
    /* both kinds: the inline graders run on a helper thread while this
       thread drives the pool (it must stay the thread that starts workers:
       they are tied to it by PR_SET_PDEATHSIG) */
    inline_call c = {.r = r, .samples = samples, .items = items, .n = n, .out = out};
    pthread_t tid;
    int threaded = r->inl && pthread_create(&tid, NULL, inline_thread, &c) == 0;
    if (r->inl && !threaded) inline_thread(&c);
    int rc = grader_pool_grade_batch(r->pool, samples, items, n, out, r->n, err, err_cap);
    if (threaded) pthread_join(tid, NULL);
    if (rc) return -1;
    if (r->inl && c.rc) return errf(err, err_cap, "%s", c.err);
    return 0;
}

int grader_runner_worker_pids(const grader_runner *r, pid_t *pids, int cap) {
    return r->pool ? grader_pool_worker_pids(r->pool, pids, cap) : 0;
}

void grader_runner_free(grader_runner *r) {
    if (!r) return;
    grader_inline_free(r->inl);
    grader_pool_free(r->pool);
    free(r);
}
