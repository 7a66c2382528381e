/* trainer/comm.c: rank discovery, the choice of transport, the one-rank
 * transport and the host-side collectives built on the transports'
 * device-memory primitives (see comm.h). */
#include "comm.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm_impl.h"
#include "util.h"

/* ---- the environment ---- */

/* *out = the variable's integer value; 0 when unset, 1 when set, -1 malformed */
static int env_int(const char *name, int *out, char *err, size_t cap) {
    const char *s = getenv(name);
    if (!s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1 << 20) {
        errf(err, cap, "environment variable %s: '%s' is not a rank number", name, s);
        return -1;
    }
    *out = (int)v;
    return 1;
}

int comm_env(int *rank, int *size, int *local_rank, int *local_size, char *err, size_t cap) {
    /* rft's own launcher first, then Open MPI's and MPICH's (hydra) variables */
    static const char *const sets[][4] = {
        {"RFT_RANK", "RFT_WORLD_SIZE", "RFT_LOCAL_RANK", "RFT_LOCAL_SIZE"},
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
        {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"}};
    *rank = 0, *size = 1, *local_rank = 0, *local_size = 1;
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        int r = 0, s = 1, l = -1, ls = 1;
        int hr = env_int(sets[i][0], &r, err, cap), hs = env_int(sets[i][1], &s, err, cap);
        int hl = env_int(sets[i][2], &l, err, cap), hls = env_int(sets[i][3], &ls, err, cap);
        if (hr < 0 || hs < 0 || hl < 0 || hls < 0) return -1;
        if (!hr && !hs) continue;
        if (!hr || !hs || s < 1 || r >= s)
            return errf(err, cap, "environment variables %s=%s, %s=%s: not a rank of a run", sets[i][0],
                        getenv(sets[i][0]) ? getenv(sets[i][0]) : "(unset)", sets[i][1],
                        getenv(sets[i][1]) ? getenv(sets[i][1]) : "(unset)");
        *rank = r, *size = s;
        *local_rank = hl > 0 ? l : r;
        *local_size = hls > 0 && ls >= 1 ? ls : s;
        return 0;
    }
    return 0;
}

/* ---- one rank ---- */

static int single_allreduce(comm *c, void *x, size_t n, int f64) {
    (void)c, (void)x, (void)n, (void)f64;
    return 0;
}
static int single_allgather(comm *c, const void *x, void *all, size_t bytes) {
    if (bytes && all != x) c->be->copy_d2d(c->be, all, x, bytes);
    return 0;
}

/* ---- choosing a transport ---- */

static int read_full(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, (char *)buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        got += (size_t)k;
    }
    return 0;
}

comm *comm_create(backend *be, char *err, size_t cap) {
    int rank, size, local, local_size;
    if (comm_env(&rank, &size, &local, &local_size, err, cap)) return NULL;
    int is_cuda = !strcmp(be->name, "cuda");
    const char *fd_s = getenv("RFT_COMM_FD"); /* set by comm_launch */
    comm *c = NULL;
    if (fd_s) {
        /* rft's launcher: rank 0 makes the NCCL id and writes it once for each
           other rank into the pipe all ranks share (128-byte writes are atomic) */
        if (!is_cuda) {
            errf(err, cap, "rft train --gpus needs device: cuda");
            return NULL;
        }
        int fd = atoi(fd_s);
        unsigned char id[COMM_ID_BYTES];
        if (rank == 0) {
            if (comm_nccl_id(id, err, cap)) return NULL;
            for (int r = 1; r < size; r++)
                if (write(fd, id, sizeof id) != (ssize_t)sizeof id) {
                    errf(err, cap, "rank 0: writing the NCCL id to the other ranks: %s", strerror(errno));
                    return NULL;
                }
        } else if (read_full(fd, id, sizeof id)) {
            errf(err, cap, "rank %d: no NCCL id from rank 0 (did it fail to start?)", rank);
            return NULL;
        }
        close(fd);
        unsetenv("RFT_COMM_FD"); /* not for the grader workers */
        c = comm_nccl_create(be, rank, size, id, err, cap);
    } else if (size > 1) {
        /* launched by mpirun / mpiexec */
        int mr, ms;
        if (comm_mpi_init(&mr, &ms, err, cap)) return NULL;
        if (mr != rank || ms != size) {
            errf(err, cap, "MPI gives rank %d of %d, the environment %d of %d", mr, ms, rank, size);
            return NULL;
        }
        if (is_cuda) {
            unsigned char id[COMM_ID_BYTES] = {0};
            if (rank == 0 && comm_nccl_id(id, err, cap)) return NULL;
            if (comm_mpi_bcast(id, sizeof id, err, cap)) return NULL;
            c = comm_nccl_create(be, rank, size, id, err, cap);
        } else {
            c = comm_mpi_create(be, err, cap);
        }
    } else {
        c = calloc(1, sizeof *c);
        if (!c) {
            errf(err, cap, "out of memory");
            return NULL;
        }
        *c = (comm){.rank = 0, .size = 1, .kind = "single", .be = be, .allreduce = single_allreduce,
                    .allgather = single_allgather};
    }
    return c;
}

void comm_free(comm *c, int failed) {
    if (!c) return;
    backend *be = c->be;
    void *st = c->stage;
    /* the transport first: after a failure a freed device buffer would wait
       for a collective that may never complete */
    if (c->destroy) c->destroy(c, failed);
    else free(c);
    if (st && !failed) be->free(be, st);
}

int comm_exit(int status) {
    comm_mpi_end(status);
    return status;
}

void comm_report(const char *cmd, const char *msg) {
    int rank, size, lr, ls;
    char e[256];
    if (comm_env(&rank, &size, &lr, &ls, e, sizeof e) || size == 1) {
        fprintf(stderr, "rft %s: %s\n", cmd, msg);
        return;
    }
    if (rank) sleep(3);
    fprintf(stderr, "rft %s: rank %d: %s\n", cmd, rank, msg);
}

int comm_threads(int threads) {
    int rank, size, lr, ls;
    char e[256];
    if (threads > 0 || comm_env(&rank, &size, &lr, &ls, e, sizeof e) || ls <= 1) return threads;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    return ncpu > ls ? (int)(ncpu / ls) : 1;
}

/* ---- collectives ---- */

static int fail(comm *c, char *err, size_t cap) {
    return errf(err, cap, "%s (rank %d of %d, %s)", c->err[0] ? c->err : "collective failed", c->rank, c->size,
                c->kind);
}

/* device staging buffer of at least bytes */
static void *stage(comm *c, size_t bytes, char *err, size_t cap) {
    if (bytes > c->stage_bytes) {
        if (c->stage) c->be->free(c->be, c->stage);
        c->stage_bytes = 0;
        c->stage = c->be->alloc(c->be, bytes);
        if (!c->stage) {
            errf(err, cap, "allocating %zu bytes for a collective: %s", bytes, c->be->err);
            return NULL;
        }
        c->stage_bytes = bytes;
    }
    return c->stage;
}

int comm_sum_device(comm *c, float *x, size_t n, char *err, size_t cap) {
    return c->allreduce(c, x, n, 0) ? fail(c, err, cap) : 0;
}

int comm_sum(comm *c, double *x, int n, char *err, size_t cap) {
    if (c->size == 1) return 0; /* the sum of one */
    size_t bytes = (size_t)n * sizeof(double);
    void *d = stage(c, bytes, err, cap);
    if (!d) return -1;
    c->be->copy_h2d(c->be, d, x, bytes);
    if (c->allreduce(c, d, (size_t)n, 1)) return fail(c, err, cap);
    c->be->copy_d2h(c->be, x, d, bytes);
    return c->be->sync(c->be) ? errf(err, cap, "%s", c->be->err) : 0;
}

int comm_gather(comm *c, const void *mine, size_t n, char **all, size_t *counts, char *err, size_t cap) {
    *all = NULL;
    /* the sizes first, then every rank's bytes padded to the largest */
    int P = c->size;
    size_t head = (size_t)P * sizeof(uint64_t) * 2;
    char *d = stage(c, head, err, cap);
    if (!d) return -1;
    uint64_t n64 = n, *cnt = malloc((size_t)P * sizeof *cnt);
    if (!cnt) return errf(err, cap, "out of memory");
    c->be->copy_h2d(c->be, d, &n64, sizeof n64);
    if (c->allgather(c, d, d + sizeof(uint64_t) * P, sizeof n64)) {
        free(cnt);
        return fail(c, err, cap);
    }
    c->be->copy_d2h(c->be, cnt, d + sizeof(uint64_t) * P, (size_t)P * sizeof *cnt);
    if (c->be->sync(c->be)) { /* a device that failed copies nothing: cnt is unset */
        free(cnt);
        return errf(err, cap, "%s", c->be->err);
    }
    size_t mx = 1;
    for (int r = 0; r < P; r++) mx = cnt[r] > mx ? (size_t)cnt[r] : mx;
    d = stage(c, mx * (P + 1), err, cap);
    char *h = d ? malloc(mx * P) : NULL;
    if (!d || !h) {
        free(cnt), free(h);
        return d ? errf(err, cap, "out of memory") : -1;
    }
    if (n) c->be->copy_h2d(c->be, d, mine, n);
    if (c->allgather(c, d, d + mx, mx)) {
        free(cnt), free(h);
        return fail(c, err, cap);
    }
    c->be->copy_d2h(c->be, h, d + mx, mx * P);
    size_t off = 0;
    for (int r = 0; r < P; r++) {
        counts[r] = (size_t)cnt[r];
        memmove(h + off, h + (size_t)r * mx, counts[r]);
        off += counts[r];
    }
    free(cnt);
    *all = h;
    return c->be->sync(c->be) ? errf(err, cap, "%s", c->be->err) : 0;
}
