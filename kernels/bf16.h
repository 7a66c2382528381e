/* kernels/bf16.h: rft's one fp32 <-> bf16 rule, for C (trainer, CPU backend)
 * and CUDA (host and device code). fp32 -> bf16 rounds to nearest even
 * (x + 0x7fff + lsb, top 16 bits; overflow rounds to infinity); a NaN keeps
 * its sign and upper payload with the quiet bit set. bf16 -> fp32 is exact.
 * cast_bf16, kv_write_bf16, the bf16 matmuls' input rounding and the GGUF /
 * safetensors / HF exports all use it, so their bits agree everywhere. */
#ifndef RFT_BF16_H
#define RFT_BF16_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define RFT_BF16_FN static inline __host__ __device__
#else
#define RFT_BF16_FN static inline
#endif

RFT_BF16_FN uint16_t fp32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

RFT_BF16_FN float bf16_to_fp32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

#undef RFT_BF16_FN
#endif
