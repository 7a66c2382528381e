/* tests/fuzz/fuzz_safetensors.c: libFuzzer target for the safetensors
 * reader: parse any bytes as a safetensors image and convert every (small)
 * F32/F16/BF16 tensor, so out-of-bounds reads show up under ASan. */
#include <stdint.h>
#include <stdlib.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    char err[512];
    if (st_parse(&f, data, size, "fuzz.safetensors", err, sizeof err)) return 0;
    volatile float acc = 0;
    for (int i = 0; i < f.n; i++) {
        const st_tensor *t = &f.t[i];
        if (t->n_elems == 0 || t->n_elems > (1u << 16)) continue;
        float *out = malloc(t->n_elems * sizeof(float));
        if (!out) continue;
        if (st_tensor_to_f32(&f, t, out, err, sizeof err) == 0) acc += out[t->n_elems - 1];
        free(out);
    }
    (void)acc;
    st_close(&f);
    return 0;
}
