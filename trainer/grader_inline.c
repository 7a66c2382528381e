/* trainer/grader_inline.c: in-process grading (isolation: inline). Work is
 * cut into tasks (grader, range of samples); a thread-safe grader's samples
 * are split into many tasks, a non-thread-safe grader's form one task, so it
 * is never called concurrently. Threads pull tasks from an atomic counter. */
#define _GNU_SOURCE
#include "grader_inline.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "grader_load.h"
#include "util.h"

struct grader_inline {
    int n;
    int *idx;                  /* [n] spec index of each grader */
    grader_instance *inst;     /* [n] */
    int threads;
};

typedef struct inline_task {
    int a, b;       /* graders order[a..b) */
    int lo, hi;     /* samples [lo, hi) */
} inline_task;

typedef struct inline_job {
    grader_inline *gi;
    const rft_sample *samples;
    json_t *const *items;
    grade_result *out;
    int stride;
    inline_task *tasks;
    int n_tasks;
    int *order;     /* local grader indices, plugins that are not thread-safe grouped */
    atomic_int next;
} inline_job;

grader_inline *grader_inline_create(const grader_spec *specs, const int *idx, int n, int threads, char *err,
                                    size_t err_cap) {
    grader_inline *gi = xcalloc(1, sizeof *gi, err, err_cap);
    if (!gi) return NULL;
    gi->n = n;
    gi->idx = xcalloc(n ? n : 1, sizeof *gi->idx, err, err_cap);
    gi->inst = xcalloc(n ? n : 1, sizeof *gi->inst, err, err_cap);
    if (!gi->idx || !gi->inst) {
        grader_inline_free(gi);
        return NULL;
    }
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    gi->threads = threads < 1 ? 1 : threads;
    for (int j = 0; j < n; j++) {
        const grader_spec *s = &specs[idx[j]];
        gi->idx[j] = idx[j];
        if (grader_instance_open(&gi->inst[j], s->name, s->path, err, err_cap) ||
            grader_instance_create(&gi->inst[j], s->config_json, err, err_cap)) {
            grader_inline_free(gi);
            return NULL;
        }
    }
    return gi;
}

static void run_tasks(inline_job *job) {
    rft_item item;
    grader_item_init(&item, NULL);
    for (;;) {
        int t = atomic_fetch_add(&job->next, 1);
        if (t >= job->n_tasks) break;
        inline_task *task = &job->tasks[t];
        for (int k = task->a; k < task->b; k++) {
            grader_instance *g = &job->gi->inst[job->order[k]];
            int spec = job->gi->idx[job->order[k]];
            for (int i = task->lo; i < task->hi; i++) {
                item.row = job->items[i];
                grader_instance_grade(g, &job->samples[i], &item, &job->out[(size_t)i * job->stride + spec]);
            }
        }
    }
    grader_item_free(&item);
}

static void *thread_main(void *arg) {
    run_tasks(arg);
    return NULL;
}

int grader_inline_grade(grader_inline *gi, const rft_sample *samples, json_t *const *items, int n, grade_result *out,
                        int stride, char *err, size_t err_cap) {
    if (n <= 0 || gi->n == 0) return 0;
    /* tasks: a thread-safe grader in chunks, the others whole */
    int threads = gi->threads;
    if ((long)n * gi->n < 256) threads = 1; /* not worth a thread */
    int chunk = n / (threads * 4);
    if (chunk < 64) chunk = 64;
    int cap = 0;
    for (int j = 0; j < gi->n; j++)
        cap += (gi->inst[j].api->flags & RFT_GRADER_THREADSAFE) ? (n + chunk - 1) / chunk : 1;
    inline_job job = {.gi = gi, .samples = samples, .items = items, .out = out, .stride = stride};
    job.tasks = xmalloc(sizeof *job.tasks * cap, err, err_cap);
    job.order = xmalloc(sizeof *job.order * gi->n, err, err_cap);
    if (!job.tasks || !job.order) {
        free(job.tasks), free(job.order);
        return -1;
    }
    int no = 0;
    for (int j = 0; j < gi->n; j++) {
        if (!(gi->inst[j].api->flags & RFT_GRADER_THREADSAFE)) continue;
        job.order[no] = j;
        for (int lo = 0; lo < n; lo += chunk)
            job.tasks[job.n_tasks++] = (inline_task){no, no + 1, lo, lo + chunk < n ? lo + chunk : n};
        no++;
    }
    for (int j = 0; j < gi->n; j++) { /* one task per plugin that is not thread-safe */
        const rft_grader *api = gi->inst[j].api;
        if (api->flags & RFT_GRADER_THREADSAFE) continue;
        int seen = 0;
        for (int k = 0; k < j; k++) seen |= gi->inst[k].api == api;
        if (seen) continue;
        int a0 = no;
        for (int k = j; k < gi->n; k++)
            if (gi->inst[k].api == api) job.order[no++] = k;
        job.tasks[job.n_tasks++] = (inline_task){a0, no, 0, n};
    }
    atomic_init(&job.next, 0);
    if (threads > job.n_tasks) threads = job.n_tasks;
    pthread_t tid[64];
    int started = 0;
    for (int t = 1; t < threads && t < 64; t++) {
        if (pthread_create(&tid[started], NULL, thread_main, &job) != 0) break; /* fewer threads is fine */
        started++;
    }
    run_tasks(&job);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    free(job.tasks);
    free(job.order);
    return 0;
}

void grader_inline_free(grader_inline *gi) {
    if (!gi) return;
    if (gi->inst)
        for (int j = 0; j < gi->n; j++) grader_instance_close(&gi->inst[j]);
    free(gi->inst);
    free(gi->idx);
    free(gi);
}
