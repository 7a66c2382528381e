/* kernels/profile.h: a per-op profiler for any backend (kernels/profile.c).
 *
 *   backend *pb = backend_profile_wrap(be);   // pb forwards every op to be
 *   ... model_create(&m, &cfg, pb, ...) ...   // profiling is off: plain forwarding
 *   backend_profile_enable(pb, 1);            // from now on: a sync around each op
 *   ... a training step ...
 *   backend_profile_report(pb, stdout);       // ops by total time, GFLOP/s, GB/s
 *   pb->destroy(pb);                          // destroys be too
 */
#ifndef RFT_PROFILE_H
#define RFT_PROFILE_H

#include <stdio.h>

#include "backend.h"

/* A backend whose every op forwards to inner (NULL ops stay NULL); takes
   ownership of inner. Profiling starts off. NULL on out of memory. */
backend *backend_profile_wrap(backend *inner);
/* on != 0: time each op between two syncs of inner and count its calls,
   bytes and flops; 0: plain forwarding (the counts are kept) */
void backend_profile_enable(backend *wrapped, int on);
void backend_profile_reset(backend *wrapped);
/* the table of the ops called since the last reset, by total time */
void backend_profile_report(backend *wrapped, FILE *f);

/* one op's counters (for tests): calls, seconds, minimum bytes, flops; the
   zero record for an op never called or a name that is no op; op NULL: the
   sum over all ops */
typedef struct profile_stat {
    long calls;
    double sec, bytes, flops;
} profile_stat;
profile_stat backend_profile_get(backend *wrapped, const char *op);

#endif
