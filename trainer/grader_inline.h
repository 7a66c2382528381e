/* trainer/grader_inline.h: graders run inside the rft process
 * (isolation: inline): fast, no protection. Thread-safe plugins
 * (RFT_GRADER_THREADSAFE) are called from several threads at once; the others
 * one call at a time. */
#ifndef RFT_GRADER_INLINE_H
#define RFT_GRADER_INLINE_H

#include "grader.h"

typedef struct grader_inline grader_inline;

/* Loads and creates specs[idx[0..n-1]]; threads <= 0: one per core. */
grader_inline *grader_inline_create(const grader_spec *specs, const int *idx, int n, int threads, char *err,
                                    size_t err_cap);
/* Grades n samples with each of its graders: the result of spec idx[j] for
   sample i goes to out[i * stride + idx[j]]. -1 only on out-of-memory. */
int grader_inline_grade(grader_inline *gi, const rft_sample *samples, json_t *const *items, int n, grade_result *out,
                        int stride, char *err, size_t err_cap);
void grader_inline_free(grader_inline *gi);

#endif
