/* tools/bench/bench_gguf.c: dequantisation throughput per ggml type (random
 * blocks with finite scales, 16M elements each) and, when RFT_SMOLLM2_GGUF is
 * set, the time to import the real SmolLM2-135M Q4_1 GGUF (parse, dequantise,
 * un-permute, tokenizer) and to export it as HF bf16 and GGUF f16.
 *   usage: bench_gguf [OUT_DIR]   (exports go to OUT_DIR, default /tmp) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"
#include "quant.h"
#include "safetensors.h"
#include "util.h"

int main(int argc, char **argv) {
    const int types[] = {GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
                         GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    const size_t n = 1u << 24;
    float *out = malloc(n * sizeof(float));
    uint8_t *src = malloc(n * 2 + 4096);
    char err[512];
    printf("%-6s %10s %10s\n", "type", "Melem/s", "GB/s out");
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        size_t be_, bb;
        ggml_type_block(types[k], &be_, &bb);
        size_t nb = n / be_;
        uint64_t key = rng_key(1, k, 0, 0);
        for (size_t i = 0; i < nb * bb; i++) src[i] = (uint8_t)rng_u64(key, i);
        /* finite fp16 scales: patch every 16-bit scale field to 0x2000 (~0.0078) */
        for (size_t b = 0; b < nb; b++) {
            uint8_t *p = src + b * bb;
            if (types[k] == GGML_TYPE_F16 || types[k] == GGML_TYPE_BF16) break;
            if (types[k] == GGML_TYPE_Q6_K) p[208] = 0, p[209] = 0x20;
            else p[0] = 0, p[1] = 0x20;
            if (types[k] == GGML_TYPE_Q4_1 || types[k] == GGML_TYPE_Q5_1 || types[k] == GGML_TYPE_Q4_K) p[2] = 0, p[3] = 0x20;
        }
        if (types[k] == GGML_TYPE_F16)
            for (size_t i = 0; i < n; i++) ((uint16_t *)(void *)src)[i] &= 0xbfff;  /* no inf/nan */
        double best = 1e30;
        for (int r = 0; r < 3; r++) {
            double t0 = now_seconds();
            if (quant_dequantize(types[k], src, n, out, err, sizeof err)) {
                fprintf(stderr, "%s\n", err);
                return 1;
            }
            double t = now_seconds() - t0;
            if (t < best) best = t;
        }
        printf("%-6s %10.0f %10.2f\n", ggml_type_name(types[k]), n / best / 1e6, n * 4.0 / best / 1e9);
    }
    free(out);
    free(src);
    const char *path = getenv("RFT_SMOLLM2_GGUF");
    if (!path || access(path, R_OK)) {
        printf("RFT_SMOLLM2_GGUF not set: real-model import not timed\n");
        return 0;
    }
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    backend *be = backend_cpu_create(2);
    model m;
    tokenizer *tok = NULL;
    double t0 = now_seconds();
    if (model_import(path, be, 1, &m, &tok, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("import %s: %.2f s (%zu parameters)\n", path, now_seconds() - t0, m.n_params);
    char out_dir[600], out_gguf[600];
    snprintf(out_dir, sizeof out_dir, "%s/bench_gguf_hf", dir);
    snprintf(out_gguf, sizeof out_gguf, "%s/bench_gguf.gguf", dir);
    t0 = now_seconds();
    if (hf_model_save(&m, tok, out_dir, ST_BF16, 0, err, sizeof err)) fprintf(stderr, "%s\n", err);
    printf("export HF bf16 -> %s: %.2f s\n", out_dir, now_seconds() - t0);
    t0 = now_seconds();
    if (gguf_model_save(&m, tok, out_gguf, GGML_TYPE_F16, err, sizeof err)) fprintf(stderr, "%s\n", err);
    printf("export GGUF f16 -> %s: %.2f s\n", out_gguf, now_seconds() - t0);
    if (tok) tokenizer_free(tok);
    model_free(&m);
    be->destroy(be);
    return 0;
}
