/* kernels/cuda/cuda_embed_sort.cu: stable sort of token positions by token
 * id (cub::DeviceRadixSort, kept in its own file: it is the one heavy
 * template instantiation of the backend), used by the deterministic
 * embedding backward. Keys, values and cub's temporary storage share the
 * backend's scratch buffer. */
#include "cuda_internal.h"

#ifndef RFT_CUDA_EMU
#include <cub/device/device_radix_sort.cuh>
#endif

static __global__ void iota_kernel(int32_t *v, int T) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < T; i += gridDim.x * blockDim.x) v[i] = i;
}

int cuda_sort_ids(backend *be, const int32_t *ids, int T, const int32_t **keys, const int32_t **vals) {
    cuda_impl *im = CUDA_IMPL(be);
    size_t tmp_bytes = 0;
#ifndef RFT_CUDA_EMU
    if (CU_CHECK(be, cub::DeviceRadixSort::SortPairs(NULL, tmp_bytes, (const int32_t *)NULL, (int32_t *)NULL,
                                                     (const int32_t *)NULL, (int32_t *)NULL, T, 0, 32, im->stream)))
        return -1;
#endif
    size_t arr = (((size_t)T * sizeof(int32_t)) + 255) & ~(size_t)255;
    char *s = (char *)cuda_scratch(be, 3 * arr + tmp_bytes + 256);
    if (!s) return -1;
    int32_t *k_out = (int32_t *)s, *v_in = (int32_t *)(s + arr), *v_out = (int32_t *)(s + 2 * arr);
    void *tmp = s + 3 * arr;
    LAUNCH(iota_kernel, cuda_grid((size_t)T, 256, 4096), 256, 0, im->stream, v_in, T);
    CU_LAUNCHED(be, "iota_kernel");
#ifndef RFT_CUDA_EMU
    if (CU_CHECK(be, cub::DeviceRadixSort::SortPairs(tmp, tmp_bytes, ids, k_out, (const int32_t *)v_in, v_out, T, 0,
                                                     32, im->stream)))
        return -1;
#else
    (void)tmp;
    emu_sort_pairs(ids, k_out, v_in, v_out, T);
#endif
    *keys = k_out;
    *vals = v_out;
    return 0;
}
