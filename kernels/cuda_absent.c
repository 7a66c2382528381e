/* kernels/cuda_absent.c: backend_cuda_create for builds without the CUDA backend. */
#include <stdio.h>

#include "backend.h"

backend *backend_cuda_create(int device, char *err, size_t err_cap) {
    (void)device;
    snprintf(err, err_cap, "this rft was built without the CUDA backend (configure with -DRFT_CUDA=ON)");
    return NULL;
}
