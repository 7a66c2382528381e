/* trainer/grader_pool.h: process-isolated grading (isolation: process, the
 * default). A pool of worker processes, each holding every pool grader;
 * requests (sample + item) go to the workers over sockets, several in flight
 * per worker. A worker that crashes, exits, hangs past timeout_ms, runs out
 * of memory, leaves children or corrupts its channel costs the one grade it
 * was doing (an error of that grader, with its kind) and is replaced. */
#ifndef RFT_GRADER_POOL_H
#define RFT_GRADER_POOL_H

#include "grader.h"

typedef struct grader_pool grader_pool;

/* Starts `workers` worker processes (<= 0: one per core) holding
   specs[idx[0..n-1]]. Fails (naming the grader) if a plugin's create() fails
   or a worker cannot start. */
grader_pool *grader_pool_create(const grader_spec *specs, const int *idx, int n, int workers, char *err,
                                size_t err_cap);
/* Grades n samples with every pool grader concurrently across the workers;
   the result of spec idx[j] for sample i goes to out[i * stride + idx[j]].
   -1 only when rft itself fails (a replacement worker cannot start). */
int grader_pool_grade_batch(grader_pool *p, const rft_sample *samples, json_t *const *items, int n,
                            grade_result *out, int stride, char *err, size_t err_cap);
int grader_pool_worker_pids(const grader_pool *p, pid_t *pids, int cap);
/* how many workers were replaced since creation */
long grader_pool_restarts(const grader_pool *p);
void grader_pool_free(grader_pool *p);

#endif
