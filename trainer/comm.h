/* trainer/comm.h: the ranks of a data-parallel run and their collectives
 * (DESIGN.md "Scale"). One process per rank; every rank holds the whole model
 * and optimizer, takes its share of a step's prompts and token passes, and
 * the gradients are summed across ranks before each optimizer update, so all
 * ranks apply the same update and stay identical.
 *
 * How a process learns its rank (comm_env):
 * - `rft train --gpus N` starts N ranks itself (comm_launch): RFT_RANK,
 *   RFT_WORLD_SIZE, RFT_LOCAL_RANK, RFT_LOCAL_SIZE and RFT_COMM_FD (a pipe that carries
 *   rank 0's NCCL id to the others).
 * - mpirun / mpiexec: Open MPI's OMPI_COMM_WORLD_* or MPICH's PMI_* variables.
 * - neither: one rank; every collective is a no-op.
 *
 * Transports (comm_create picks by the backend):
 * - CPU backend: MPI over host memory (the CPU backend's device memory).
 * - CUDA backend: NCCL over device memory, on the backend's stream; MPI (when
 *   launched by it) only carries the NCCL id.
 *
 * Collectives are called by every rank in the same order with the same
 * sizes; a rank that fails leaves the others waiting, so the launcher (or
 * mpirun) ends the job when any rank exits with an error. */
#ifndef RFT_COMM_H
#define RFT_COMM_H

#include <stddef.h>

#include "../kernels/backend.h"

typedef struct comm comm;

struct comm {
    int rank, size;        /* this process's rank, number of ranks */
    const char *kind;      /* "single", "mpi", "nccl" */
    backend *be;           /* whose device memory the primitives work on */
    /* primitives over device memory of be; 0 ok, -1 with err set */
    int (*allreduce)(comm *c, void *x, size_t n, int f64); /* x[n] = sum over ranks (fp32, or fp64 when f64), in place */
    int (*allgather)(comm *c, const void *x, void *all, size_t bytes); /* all[size * bytes]: rank r's x at r * bytes */
    void (*destroy)(comm *c, int failed); /* failed: abort, do not drain (peers may be gone) */
    void *impl;            /* the transport's state */
    void *stage;           /* device staging buffer of the host-side collectives */
    size_t stage_bytes;
    char err[512];         /* the transport's last failure */
};

/* The rank, the number of ranks, the rank within this machine and the
 * number of ranks on this machine that the environment gives this process
 * (0, 1, 0, 1 when it gives none). Returns -1 with err when the variables are
 * malformed. */
int comm_env(int *rank, int *size, int *local_rank, int *local_size, char *err, size_t err_cap);

/* Joins the ranks comm_env describes, with transport for be. Returns NULL with
 * err when they cannot be joined (a run launched by mpirun when rft was built
 * without MPI, a CUDA run without NCCL, a transport failure). */
comm *comm_create(backend *be, char *err, size_t err_cap);
/* failed: the run ends in an error, and other ranks may be waiting in a
   collective that will never complete: the transport is aborted, not drained */
void comm_free(comm *c, int failed);
/* The end of a rank's process (call it last, with the exit status): under
 * MPI, status 0 finalizes MPI and any other status aborts the whole job with
 * it (MPI_Finalize would wait for ranks that wait for this one). Returns
 * status. */
int comm_exit(int status);

/* Says a command's failure ("rft CMD: msg" on stderr) as a rank should: with
 * several ranks, prefixed with the rank, and ranks other than 0 first wait
 * 3 s, so an error every rank meets (the same files) is said once, by rank
 * 0, which ends the job first, while one only this rank meets is still said. */
void comm_report(const char *cmd, const char *msg);

/* The CPU threads of a rank: `threads` as configured, or when it is 0 (all
   cores) the machine's cores divided among the ranks on it */
int comm_threads(int threads);

/* sums x[n] (fp32, device memory of c->be) over the ranks, in place */
int comm_sum_device(comm *c, float *x, size_t n, char *err, size_t err_cap);
/* sums x[n] (host) over the ranks, in place */
int comm_sum(comm *c, double *x, int n, char *err, size_t err_cap);
/* every rank passes n bytes (n may differ between ranks); *all receives the
 * concatenation in rank order (malloc'd, caller frees) and counts[size] each
 * rank's n */
int comm_gather(comm *c, const void *mine, size_t n, char **all, size_t *counts, char *err, size_t err_cap);

/* `rft train --gpus N`: forks N rank processes that return from this call
 * (returns 0 in each, with the RFT_* variables set); the starting process
 * waits for them and returns 1 with *status the job's exit status (0 when
 * all succeed; see comm_launch.c). -1 with err when the ranks cannot be
 * started; -2 with err when the machine shows fewer than N GPUs (bad input). */
int comm_launch(int n, int *status, char *err, size_t err_cap);

/* `rft CMD CONFIG --gpus N` (n = 0: no --gpus): checks device (the
 * configuration's, "cuda" required) and starts the ranks. Returns 0 in a
 * rank (or with n = 0): go on; 1 in the starting process once the ranks have
 * ended (or the start was refused, said on stderr naming path), with
 * *exit_status the command's exit status. */
int comm_start_ranks(const char *cmd, const char *path, const char *device, int n, int *exit_status);

#endif
