/* tests/fuzz/fuzz_gguf.c: libFuzzer target for the GGUF reader: parse any
 * bytes as a GGUF image, then read every metadata value and dequantise every
 * (small) tensor, so out-of-bounds reads show up under ASan. */
#include <stdint.h>
#include <stdlib.h>

#include "gguf.h"
#include "quant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file f;
    char err[512];
    if (gguf_parse(&f, data, size, "fuzz.gguf", err, sizeof err)) return 0;
    volatile double acc = 0;
    for (uint64_t i = 0; i < f.n_kv; i++) {
        const gguf_kv *kv = &f.kv[i];
        int64_t v;
        double d;
        gguf_get_int(&f, kv->key, &v, err, sizeof err);
        gguf_get_float(&f, kv->key, &d, err, sizeof err);
        if (kv->type == GGUF_TYPE_ARRAY && kv->arr_type != GGUF_TYPE_STRING)
            for (uint64_t j = 0; j < kv->n && j < 4096; j++) acc += gguf_arr_f64(kv, j);
        if (kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_STRING)
            for (uint64_t j = 0; j < kv->n && j < 4096; j++) acc += kv->strs[j][kv->str_lens[j]];
    }
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        const gguf_tensor *t = &f.tensors[i];
        if (t->n_elems == 0 || t->n_elems > (1u << 16) || !ggml_type_can_dequantize(t->type)) continue;
        float *out = malloc(t->n_elems * sizeof(float));
        if (!out) continue;
        if (gguf_tensor_to_f32(&f, t, out, err, sizeof err) == 0) acc += out[t->n_elems - 1];
        free(out);
    }
    (void)acc;
    gguf_close(&f);
    return 0;
}
