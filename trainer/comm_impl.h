/* trainer/comm_impl.h: the transports behind comm.h (internal to comm*.c).
 * comm_mpi.c exists in every build and says so when rft was built without MPI;
 * comm_nccl.c likewise for NCCL. */
#ifndef RFT_COMM_IMPL_H
#define RFT_COMM_IMPL_H

#include "comm.h"

#define COMM_ID_BYTES 128 /* sizeof(ncclUniqueId) */

/* MPI: initialises MPI (once) and returns rank and size of MPI_COMM_WORLD */
int comm_mpi_init(int *rank, int *size, char *err, size_t err_cap);
/* the MPI transport over host memory (be must be the CPU backend) */
comm *comm_mpi_create(backend *be, char *err, size_t err_cap);
/* broadcasts n bytes from rank 0 over MPI_COMM_WORLD */
int comm_mpi_bcast(void *x, size_t n, char *err, size_t err_cap);
/* status 0: MPI_Finalize; else MPI_Abort(MPI_COMM_WORLD, status); nothing when MPI was not initialised */
void comm_mpi_end(int status);

/* NCCL: a new unique id (rank 0), and the transport over be's device memory */
int comm_nccl_id(unsigned char id[COMM_ID_BYTES], char *err, size_t err_cap);
comm *comm_nccl_create(backend *be, int rank, int size, const unsigned char id[COMM_ID_BYTES], char *err,
                       size_t err_cap);

#endif
