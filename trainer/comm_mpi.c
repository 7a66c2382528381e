/* trainer/comm_mpi.c: the MPI transport (host memory: the CPU backend) and
 * the NCCL id's broadcast for CUDA ranks launched by mpirun. Built without
 * MPI, each entry point says so. */
#include "comm_impl.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifdef RFT_HAVE_MPI
#include <limits.h>
#include <mpi.h>

static int mpi_fail(char *err, size_t cap, const char *what, int rc) {
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(rc, s, &n) != MPI_SUCCESS) snprintf(s, sizeof s, "error %d", rc);
    return errf(err, cap, "%s: %s", what, s);
}

int comm_mpi_init(int *rank, int *size, char *err, size_t cap) {
    int on = 0, rc, got;
    MPI_Initialized(&on);
    /* funneled: only the thread that joined makes MPI calls (the rollout
       thread and OpenMP's never do) */
    if (!on && (rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &got)) != MPI_SUCCESS)
        return mpi_fail(err, cap, "MPI_Init_thread", rc);
    /* errors come back as codes rather than aborting the job */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    return 0;
}

void comm_mpi_end(int status) {
    int on = 0, done = 0;
    MPI_Initialized(&on);
    MPI_Finalized(&done);
    if (!on || done) return;
    if (status) MPI_Abort(MPI_COMM_WORLD, status);
    MPI_Finalize();
}

int comm_mpi_bcast(void *x, size_t n, char *err, size_t cap) {
    int rc = MPI_Bcast(x, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, cap, "MPI_Bcast", rc);
}

#define MPI_CHUNK ((size_t)1 << 28) /* elements per call: MPI counts are int */

static int mpi_allreduce(comm *c, void *x, size_t n, int f64) {
    size_t es = f64 ? sizeof(double) : sizeof(float);
    for (size_t i = 0; i < n; i += MPI_CHUNK) {
        size_t k = n - i < MPI_CHUNK ? n - i : MPI_CHUNK;
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)x + i * es, (int)k, f64 ? MPI_DOUBLE : MPI_FLOAT, MPI_SUM,
                               MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(c->err, sizeof c->err, "MPI_Allreduce", rc);
    }
    return 0;
}

static int mpi_allgather(comm *c, const void *x, void *all, size_t bytes) {
    if (bytes > INT_MAX) return errf(c->err, sizeof c->err, "MPI_Allgather: %zu bytes per rank", bytes);
    int rc = MPI_Allgather(x, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(c->err, sizeof c->err, "MPI_Allgather", rc);
}

static void mpi_destroy(comm *c, int failed) {
    (void)failed; /* MPI itself ends in comm_exit */
    free(c);
}

comm *comm_mpi_create(backend *be, char *err, size_t cap) {
    if (strcmp(be->name, "cpu")) {
        errf(err, cap, "the MPI transport needs the CPU backend");
        return NULL;
    }
    comm *c = calloc(1, sizeof *c);
    if (!c) {
        errf(err, cap, "out of memory");
        return NULL;
    }
    *c = (comm){.kind = "mpi", .be = be, .allreduce = mpi_allreduce, .allgather = mpi_allgather, .destroy = mpi_destroy};
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    return c;
}

#else /* built without MPI */

static int no_mpi(char *err, size_t cap) {
    return errf(err, cap, "launched by mpirun (several ranks), but this rft was built without MPI "
                          "(install libopenmpi-dev and rebuild)");
}
int comm_mpi_init(int *rank, int *size, char *err, size_t cap) {
    (void)rank, (void)size;
    return no_mpi(err, cap);
}
void comm_mpi_end(int status) { (void)status; }
int comm_mpi_bcast(void *x, size_t n, char *err, size_t cap) {
    (void)x, (void)n;
    return no_mpi(err, cap);
}
comm *comm_mpi_create(backend *be, char *err, size_t cap) {
    (void)be;
    no_mpi(err, cap);
    return NULL;
}
#endif
