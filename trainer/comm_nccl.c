/* trainer/comm_nccl.c: the NCCL transport: sums and gathers over the CUDA
 * backend's device memory, queued on the backend's stream after the ops that
 * produced the data. libnccl.so.2 is opened when a run with GPU ranks starts
 * (dlopen), so rft itself depends on neither its library nor its header:
 * single-GPU and CPU runs work where NCCL is not installed. The few types
 * and constants used are NCCL 2's stable ABI, declared below as nccl.h
 * declares them. Built without CUDA, each entry point says so. */
#define _GNU_SOURCE
#include "comm_impl.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifdef RFT_HAVE_CUDA
#include <cuda_runtime.h>
#include <dlfcn.h>

/* from nccl.h (NCCL 2.x) */
typedef struct ncclComm *ncclComm_t;
typedef struct {
    char internal[128];
} ncclUniqueId;
typedef int ncclResult_t; /* an enum there; 0 = ncclSuccess */
typedef int ncclDataType_t;
typedef int ncclRedOp_t;
enum { ncclSuccess = 0, ncclSum = 0, ncclUint8 = 1, ncclFloat32 = 7, ncclFloat64 = 8 };

_Static_assert(sizeof(ncclUniqueId) == COMM_ID_BYTES, "ncclUniqueId size");

/* the entry points rft uses, from libnccl.so.2 */
static struct {
    int loaded;
    ncclResult_t (*get_unique_id)(ncclUniqueId *);
    ncclResult_t (*comm_init_rank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*all_reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*all_gather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*comm_destroy)(ncclComm_t);
    const char *(*get_error_string)(ncclResult_t);
} nccl;

static int nccl_load(char *err, size_t cap) {
    if (nccl.loaded) return 0;
    char first[512];
    void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    snprintf(first, sizeof first, "%s", h ? "" : dlerror());
#ifdef RFT_NCCL_DIR
    if (!h) h = dlopen(RFT_NCCL_DIR "/libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) return errf(err, cap, "several GPU ranks need NCCL: %s; %s", first, dlerror());
#endif
    if (!h) return errf(err, cap, "several GPU ranks need NCCL (put libnccl.so.2 on LD_LIBRARY_PATH): %s", first);
#define SYM(field, name)                                                                                  \
    if (!(*(void **)&nccl.field = dlsym(h, name))) return errf(err, cap, "libnccl.so.2: %s", dlerror());
    SYM(get_unique_id, "ncclGetUniqueId")
    SYM(comm_init_rank, "ncclCommInitRank")
    SYM(all_reduce, "ncclAllReduce")
    SYM(all_gather, "ncclAllGather")
    SYM(comm_destroy, "ncclCommDestroy")
    SYM(get_error_string, "ncclGetErrorString")
#undef SYM
    nccl.loaded = 1;
    return 0;
}

/* evaluates an NCCL call; on failure writes "file:line: call: message" into err */
#define NCCL_CHECK(err, cap, call)                                                                         \
    ({                                                                                                     \
        ncclResult_t r_ = (call);                                                                          \
        r_ == ncclSuccess ? 0 : errf(err, cap, "%s:%d: %s: %s", __FILE__, __LINE__, #call, nccl.get_error_string(r_)); \
    })

int comm_nccl_id(unsigned char id[COMM_ID_BYTES], char *err, size_t cap) {
    if (nccl_load(err, cap)) return -1;
    ncclUniqueId u;
    if (NCCL_CHECK(err, cap, nccl.get_unique_id(&u))) return -1;
    memcpy(id, &u, sizeof u);
    return 0;
}

static ncclComm_t nccl_of(comm *c) { return (ncclComm_t)c->impl; }

static int nccl_allreduce(comm *c, void *x, size_t n, int f64) {
    return NCCL_CHECK(c->err, sizeof c->err,
                      nccl.all_reduce(x, x, n, f64 ? ncclFloat64 : ncclFloat32, ncclSum, nccl_of(c),
                                      (cudaStream_t)c->be->stream));
}

static int nccl_allgather(comm *c, const void *x, void *all, size_t bytes) {
    return NCCL_CHECK(c->err, sizeof c->err,
                      nccl.all_gather(x, all, bytes, ncclUint8, nccl_of(c), (cudaStream_t)c->be->stream));
}

/* After a failure the communicator is left to the process's end: ncclCommAbort
   needs every rank to call it (NCCL 2.x docs; it can wait on peers that sit in
   a collective for ever), and the failing rank must exit so that the launcher
   (or mpirun) ends the others. */
static void nccl_destroy(comm *c, int failed) {
    if (c->impl && !failed) nccl.comm_destroy(nccl_of(c));
    free(c); /* MPI, when it carried the id, ends in comm_exit */
}

comm *comm_nccl_create(backend *be, int rank, int size, const unsigned char id[COMM_ID_BYTES], char *err, size_t cap) {
    if (strcmp(be->name, "cuda") || !be->stream) {
        errf(err, cap, "the NCCL transport needs the CUDA backend");
        return NULL;
    }
    if (nccl_load(err, cap)) return NULL;
    comm *c = calloc(1, sizeof *c);
    if (!c) {
        errf(err, cap, "out of memory");
        return NULL;
    }
    *c = (comm){.rank = rank, .size = size, .kind = "nccl", .be = be, .allreduce = nccl_allreduce,
                .allgather = nccl_allgather, .destroy = nccl_destroy};
    be->bind_thread(be); /* NCCL binds the communicator to the current device */
    if (be->err[0]) {
        errf(err, cap, "%s", be->err);
        free(c);
        return NULL;
    }
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclComm_t nc = NULL;
    if (NCCL_CHECK(err, cap, nccl.comm_init_rank(&nc, size, u, rank))) {
        free(c);
        return NULL;
    }
    c->impl = nc;
    return c;
}

#else /* built without CUDA */

int comm_nccl_id(unsigned char id[COMM_ID_BYTES], char *err, size_t cap) {
    (void)id;
    return errf(err, cap, "GPU ranks need the CUDA backend; this rft was built without it");
}
comm *comm_nccl_create(backend *be, int rank, int size, const unsigned char id[COMM_ID_BYTES], char *err, size_t cap) {
    (void)be, (void)rank, (void)size, (void)id;
    errf(err, cap, "GPU ranks need the CUDA backend; this rft was built without it");
    return NULL;
}
#endif
