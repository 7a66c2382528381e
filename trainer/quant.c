/* trainer/quant.c: ggml block formats -> fp32 (the dequantisation formulas of
 * ggml-quants.c: dequantize_row_q4_0 ... dequantize_row_q6_K), element type
 * table, and fp16 / bf16 conversions. Block layouts are read byte by byte
 * (little-endian), so no struct packing or alignment is assumed. */
#include "quant.h"

#include <string.h>

#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#endif

#include "util.h"

typedef struct type_info {
    int type;
    const char *name;
    size_t blck, bytes;
} type_info;

static const type_info TYPES[] = {
    {GGML_TYPE_F32, "F32", 1, 4},         {GGML_TYPE_F16, "F16", 1, 2},
    {GGML_TYPE_Q4_0, "Q4_0", 32, 18},     {GGML_TYPE_Q4_1, "Q4_1", 32, 20},
    {GGML_TYPE_Q5_0, "Q5_0", 32, 22},     {GGML_TYPE_Q5_1, "Q5_1", 32, 24},
    {GGML_TYPE_Q8_0, "Q8_0", 32, 34},     {GGML_TYPE_Q8_1, "Q8_1", 32, 40},
    {GGML_TYPE_Q2_K, "Q2_K", 256, 84},    {GGML_TYPE_Q3_K, "Q3_K", 256, 110},
    {GGML_TYPE_Q4_K, "Q4_K", 256, 144},   {GGML_TYPE_Q5_K, "Q5_K", 256, 176},
    {GGML_TYPE_Q6_K, "Q6_K", 256, 210},   {GGML_TYPE_Q8_K, "Q8_K", 256, 292},
    {16, "IQ2_XXS", 256, 66},             {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98},             {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},               {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82},               {23, "IQ4_XS", 256, 136},
    {GGML_TYPE_I8, "I8", 1, 1},           {GGML_TYPE_I16, "I16", 1, 2},
    {GGML_TYPE_I32, "I32", 1, 4},         {GGML_TYPE_I64, "I64", 1, 8},
    {GGML_TYPE_F64, "F64", 1, 8},         {29, "IQ1_M", 256, 56},
    {GGML_TYPE_BF16, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},
};

static const type_info *type_find(int type) {
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
        if (TYPES[i].type == type) return &TYPES[i];
    return NULL;
}

const char *ggml_type_name(int type) {
    const type_info *t = type_find(type);
    return t ? t->name : NULL;
}

int ggml_type_block(int type, size_t *block_elems, size_t *block_bytes) {
    const type_info *t = type_find(type);
    if (!t) return 0;
    if (block_elems) *block_elems = t->blck;
    if (block_bytes) *block_bytes = t->bytes;
    return 1;
}

int ggml_type_can_dequantize(int type) {
    switch (type) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q6_K: return 1;
    default: return 0;
    }
}

int ggml_row_bytes(int type, uint64_t n, uint64_t *bytes) {
    const type_info *t = type_find(type);
    if (!t || n % t->blck) return -1;
    uint64_t blocks = n / t->blck;
    if (blocks > UINT64_MAX / t->bytes) return -1;
    *bytes = blocks * t->bytes;
    return 0;
}

/* ---- fp16 / bf16 ---- */

float fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);  /* inf / nan */
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));  /* nan */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);                      /* overflow -> inf */
    if (ax < 0x38800000u) {                                                       /* subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign;                              /* < half the smallest subnormal */
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;  /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ax - 0x38000000u;  /* rebias exponent 127 -> 15 (in place) */
    uint32_t lsb = (r >> 13) & 1;
    r += 0xfff + lsb;
    return (uint16_t)(sign | (r >> 13));
}

void fp16_to_fp32_row(const void *src, float *out, size_t n) {
    const uint8_t *s = src;
    size_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(s + 2 * i))));
#endif
    for (; i < n; i++) out[i] = fp16_to_fp32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
}

/* ---- block dequantisation (one block each) ---- */

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline float rdh(const uint8_t *p) { return fp16_to_fp32(rd16(p)); }

/* Q4_0: d(f16) qs[16]: x = (nibble - 8) * d; low nibbles are elements 0..15 */
static void deq_q4_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0xf) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

/* Q4_1: d m (f16) qs[16]: x = nibble * d + m */
static void deq_q4_1(const uint8_t *b, float *y) {
    float d = rdh(b), m = rdh(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 0xf) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

/* Q5_0: d(f16) qh(u32) qs[16]: 5th bit of element j is bit j of qh */
static void deq_q5_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int xh0 = ((qh >> j) << 4) & 0x10, xh1 = (qh >> (j + 12)) & 0x10;
        y[j] = (float)(((qs[j] & 0xf) | xh0) - 16) * d;
        y[j + 16] = (float)(((qs[j] >> 4) | xh1) - 16) * d;
    }
}

/* Q5_1: d m (f16) qh(u32) qs[16]: x = q * d + m */
static void deq_q5_1(const uint8_t *b, float *y) {
    float d = rdh(b), m = rdh(b + 2);
    uint32_t qh = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int xh0 = ((qh >> j) << 4) & 0x10, xh1 = (qh >> (j + 12)) & 0x10;
        y[j] = (float)((qs[j] & 0xf) | xh0) * d + m;
        y[j + 16] = (float)((qs[j] >> 4) | xh1) * d + m;
    }
}

/* Q8_0: d(f16) qs[32] (int8): x = q * d */
static void deq_q8_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* 6-bit scale and min j of a Q4_K block's 12 packed bytes */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_K: d dmin (f16) scales[12] qs[128], 256 elements in 8 sub-blocks of 32:
   x = d*sc_j * q - dmin*m_j */
static void deq_q4_k(const uint8_t *b, float *y) {
    float d = rdh(b), dmin = rdh(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    int is = 0;
    for (int j = 0; j < 256; j += 64) {
        uint8_t sc, m;
        scale_min_k4(is + 0, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xf) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        q += 32;
        is += 2;
    }
}

/* Q6_K: ql[128] qh[64] scales[16] (int8) d (f16), 16 sub-blocks of 16:
   x = d*scale * (q6 - 32) */
static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = rdh(b + 208);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 0xf) | ((qh[l] >> 0) & 3) << 4) - 32;
            int q2 = (int)((ql[l + 32] & 0xf) | ((qh[l] >> 2) & 3) << 4) - 32;
            int q3 = (int)((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            y[l] = d * (float)sc[is + 0] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

int quant_dequantize(int type, const void *src, size_t n, float *out, char *err, size_t err_cap) {
    const uint8_t *s = src;
    const type_info *t = type_find(type);
    if (!t || !ggml_type_can_dequantize(type))
        return errf(err, err_cap, "unsupported tensor type %s (%d): rft reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K",
                    t ? t->name : "unknown", type);
    if (n % t->blck) return errf(err, err_cap, "%zu elements is not a whole number of %s blocks of %zu", n, t->name, t->blck);
    size_t nb = n / t->blck;
    switch (type) {
    case GGML_TYPE_F32: memcpy(out, s, n * 4); break;
    case GGML_TYPE_F16: fp16_to_fp32_row(s, out, n); break;
    case GGML_TYPE_BF16: for (size_t i = 0; i < n; i++) out[i] = bf16_to_fp32(rd16(s + 2 * i)); break;
    case GGML_TYPE_Q4_0: for (size_t i = 0; i < nb; i++) deq_q4_0(s + i * 18, out + i * 32); break;
    case GGML_TYPE_Q4_1: for (size_t i = 0; i < nb; i++) deq_q4_1(s + i * 20, out + i * 32); break;
    case GGML_TYPE_Q5_0: for (size_t i = 0; i < nb; i++) deq_q5_0(s + i * 22, out + i * 32); break;
    case GGML_TYPE_Q5_1: for (size_t i = 0; i < nb; i++) deq_q5_1(s + i * 24, out + i * 32); break;
    case GGML_TYPE_Q8_0: for (size_t i = 0; i < nb; i++) deq_q8_0(s + i * 34, out + i * 32); break;
    case GGML_TYPE_Q4_K: for (size_t i = 0; i < nb; i++) deq_q4_k(s + i * 144, out + i * 256); break;
    case GGML_TYPE_Q6_K: for (size_t i = 0; i < nb; i++) deq_q6_k(s + i * 210, out + i * 256); break;
    }
    return 0;
}
