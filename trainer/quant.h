/* trainer/quant.h: ggml tensor element types (as stored in GGUF files), their
 * block sizes, and dequantisation of F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q4_K and Q6_K to fp32; fp32 -> F16/BF16 conversion for export. */
#ifndef RFT_QUANT_H
#define RFT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/bf16.h"

/* ggml_type numbers (ggml.h / gguf-py GGMLQuantizationType) */
enum {
    GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6, GGML_TYPE_Q5_1 = 7, GGML_TYPE_Q8_0 = 8, GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10, GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12, GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14, GGML_TYPE_Q8_K = 15, GGML_TYPE_I8 = 24, GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26, GGML_TYPE_I64 = 27, GGML_TYPE_F64 = 28, GGML_TYPE_BF16 = 30,
};

/* name ("Q4_K") of a ggml type, or NULL when unknown */
const char *ggml_type_name(int type);
/* elements per block and bytes per block; 0 when the type is unknown */
int ggml_type_block(int type, size_t *block_elems, size_t *block_bytes);
/* 1 if quant_dequantize supports the type */
int ggml_type_can_dequantize(int type);
/* bytes of n elements of the type (n must be a multiple of the block);
   returns -1 when unknown or n is not a whole number of blocks */
int ggml_row_bytes(int type, uint64_t n, uint64_t *bytes);

/* Dequantise n elements (a whole number of blocks) of `type` at src into
   out[n]. Returns 0, or -1 with err for an unsupported type. */
int quant_dequantize(int type, const void *src, size_t n, float *out, char *err, size_t err_cap);

/* IEEE half / bfloat16 conversions (round to nearest even, NaN kept NaN) */
float fp16_to_fp32(uint16_t h);
/* n little-endian halves at src -> out[n] (F16C when compiled in) */
void fp16_to_fp32_row(const void *src, float *out, size_t n);
uint16_t fp32_to_fp16(float f);
/* fp32_to_bf16, bf16_to_fp32: kernels/bf16.h */

#endif
