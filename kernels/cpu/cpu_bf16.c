/* kernels/cpu/cpu_bf16.c: bf16 weights for rollouts and bf16 mixed-precision
 * training. cast_bf16 rounds fp32 to bfloat16 (nearest even); gemm_bf16 (the
 * training products, at the end of this file) is the reference of the GPU's
 * tensor-core GEMM; matmul_bf16 is the forward linear
 * y[M,N] = bf16(x)[M,K] @ W[N,K]^T (+ y) with bf16 weights and fp32
 * accumulation. With AVX512_BF16 (vdpbf16ps: 32 bf16 products per
 * instruction, twice the multiply-adds of an fp32 FMA) and half the weight
 * bytes of fp32, decode steps run up to ~2x faster, whether they are bound by
 * memory (few rows) or by arithmetic (many rows).
 *
 * Bits: every output is one 16-lane vdpbf16ps chain over K in order, reduced
 * by a fixed tree, so it depends on (its row of x, its row of W, K) only,
 * never on M, the tiling or the thread count: a completion does not depend on
 * the batch around it, as in the fp32 decode path (cpu_linalg.c). Without
 * AVX512_BF16 a portable loop computes the same products (bf16 x bf16 is
 * exact in fp32) summed in fp32 in K order; its bits differ from the vector
 * path's but not with M either. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

void cpu_cast_bf16(backend *be, uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) num_threads(be->n_threads) if (n > 65536)
    for (size_t i = 0; i < n; i++) dst[i] = fp32_to_bf16(src[i]);
}

/* Rows of x converted to bf16 at a time: one tile is reused, from L2, for
   every weight row a thread owns (decode steps are a single tile). */
#define BF_TILE_M 64
#define BF_NB 4 /* weight rows per block */
#define BF_MB 6 /* rows of x per block: 4 x 6 accumulators */

/* K rounded up to the vector width (32 bf16): padded rows of the x tile */
static int bf_ldx(int K) { return (K + 31) & ~31; }

/* xb[m, ldx] = bf16(x[m, K]), zero padded to ldx */
static void bf_convert_rows(void *tile, int ldx, const void *xv, int m, int K) {
    uint16_t *xb = tile;
    const float *x = xv;
    for (int i = 0; i < m; i++) {
        uint16_t *d = xb + (size_t)i * ldx;
        const float *s = x + (size_t)i * K;
        for (int k = 0; k < K; k++) d[k] = fp32_to_bf16(s[k]);
        for (int k = K; k < ldx; k++) d[k] = 0;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CPU_HAVE_BF16_KERNEL 1
#define BF_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

/* The 4 horizontal sums of a, b, c, d, each by the same fixed tree: lanes
   i, i+8 then i+4, i+12 are added first, then the four 128-bit lanes' partial
   sums in pairs. A vector's sum does not depend on its three neighbours. */
BF_TARGET static inline __m128 bf_reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2))); /* [a 8 | b 8] */
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2))); /* [c 8 | d 8] */
    __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1))); /* [a 4 | b 4 | c 4 | d 4] */
    s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 0, 3, 2))); /* lanes 0,1 += 2,3 */
    s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(2, 3, 0, 1))); /* lane 0 += 1 */
    /* lane 0 of each 128-bit lane holds a, b, c, d's sums */
    __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(idx, s));
}

/* y[mb, nb] (ldy) = xb[mb, K] W[nb, K]^T (+ y): xb bf16 rows of stride ldx
   (zero padded), W bf16 rows of stride K (the tail is loaded masked). */
BF_TARGET __attribute__((always_inline)) static inline void bf_block(int mb, int nb, int K, const uint16_t *xb,
                                                                      int ldx, const uint16_t *W, float beta,
                                                                      float *y, int ldy, int prefetch) {
    __m512 acc[BF_NB][BF_MB];
    for (int i = 0; i < BF_NB; i++)
        for (int j = 0; j < BF_MB; j++) acc[i][j] = _mm512_setzero_ps();
    /* the same step for whole 32-element chunks (unmasked loads) and the tail */
#define BF_STEP(LOADW)                                                                                     \
    do {                                                                                                   \
        __m512bh w[BF_NB];                                                                                 \
        for (int i = 0; i < BF_NB; i++) w[i] = (__m512bh)(i < nb ? LOADW(W + (size_t)i * K + k) : _mm512_setzero_si512()); \
        if (prefetch) /* the next block's weight rows (streamed from memory) while this one computes */    \
            for (int i = 0; i < BF_NB; i++) _mm_prefetch((const char *)(W + (size_t)(BF_NB + i) * K + k), _MM_HINT_T0); \
        for (int j = 0; j < mb; j++) {                                                                     \
            __m512bh a = (__m512bh)_mm512_loadu_si512(xb + (size_t)j * ldx + k);                            \
            for (int i = 0; i < nb; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], a, w[i]);                  \
        }                                                                                                  \
    } while (0)
#define BF_LOAD_FULL(p) _mm512_loadu_si512(p)
#define BF_LOAD_TAIL(p) _mm512_maskz_loadu_epi16(msk, p)
    int k = 0;
    for (; k + 32 <= K; k += 32) BF_STEP(BF_LOAD_FULL);
    if (k < K) {
        __mmask32 msk = (__mmask32)((1u << (K - k)) - 1);
        BF_STEP(BF_LOAD_TAIL);
    }
#undef BF_STEP
#undef BF_LOAD_FULL
#undef BF_LOAD_TAIL
    for (int j = 0; j < mb; j++) {
        float s[4];
        _mm_storeu_ps(s, bf_reduce4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
        float *c = y + (size_t)j * ldy;
        for (int i = 0; i < nb; i++) c[i] = beta == 0.0f ? s[i] : s[i] + c[i];
    }
}

/* one block of BF_NB weight rows (nb valid) against all m rows of the tile */
BF_TARGET static void bf_panel(int m, int nb, int K, const void *tile, int ldx, const uint16_t *W, float beta,
                               float *y, int ldy) {
    const uint16_t *xb = tile;
    int r = 0;
    if (nb == BF_NB) {
        for (; r + BF_MB <= m; r += BF_MB)
            bf_block(BF_MB, BF_NB, K, xb + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy, r == 0);
        switch (m - r) { /* constant mb: each case compiles to its own unrolled loop */
        case 1: bf_block(1, BF_NB, K, xb + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy, r == 0); break;
        case 2: bf_block(2, BF_NB, K, xb + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy, r == 0); break;
        case 3: bf_block(3, BF_NB, K, xb + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy, r == 0); break;
        case 4: bf_block(4, BF_NB, K, xb + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy, r == 0); break;
        case 5: bf_block(5, BF_NB, K, xb + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy, r == 0); break;
        default: break;
        }
    } else {
        for (; r < m; r++) bf_block(1, nb, K, xb + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy, r == 0);
    }
}

BF_TARGET static void bf_convert_rows_avx(void *tile, int ldx, const void *xv, int m, int K) {
    uint16_t *xb = tile;
    const float *x = xv;
    for (int i = 0; i < m; i++) {
        uint16_t *d = xb + (size_t)i * ldx;
        const float *s = x + (size_t)i * K;
        int k = 0;
        for (; k + 16 <= K; k += 16)
            _mm256_storeu_si256((__m256i *)(d + k), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(s + k)));
        for (; k < K; k++) d[k] = fp32_to_bf16(s[k]);
        for (; k < ldx; k++) d[k] = 0;
    }
}

static int bf16_kernel_ok(void) {
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512bf16");
    }
    return ok;
}
#else
#define CPU_HAVE_BF16_KERNEL 0
#endif

int cpu_bf16_best_path(void);

/* AVX2 + FMA (CPUs without AVX512_BF16): W rows widened to fp32 on the fly
   (zero-extend, shift left 16: exact), x rows pre-rounded to bf16 and kept
   as fp32, blocks of 3 weight rows x 4 rows of x (12 accumulators + 3 weight
   registers + 1 x register = the 16 ymm registers). Half the weight bytes of
   fp32 at about fp32 FMA speed. Each output is one 8-lane FMA chain over K
   and a fixed tree: independent of M and the threads, as elsewhere. */
#if defined(__x86_64__) && defined(__GNUC__)
#define CPU_HAVE_BF16_AVX2 1
#define A2_NB 3
#define A2_MB 4
#define A2_TARGET __attribute__((target("avx2,fma")))

A2_TARGET static inline __m256 a2_widen(const uint16_t *w) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w)), 16));
}

A2_TARGET static inline float a2_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

A2_TARGET __attribute__((always_inline)) static inline void a2_block(int mb, int nb, int K, const float *xf, int ldx,
                                                                      const uint16_t *W, float beta, float *y,
                                                                      int ldy) {
    __m256 acc[A2_NB][A2_MB];
    for (int i = 0; i < A2_NB; i++)
        for (int j = 0; j < A2_MB; j++) acc[i][j] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 w[A2_NB];
        for (int i = 0; i < nb; i++) w[i] = a2_widen(W + (size_t)i * K + k);
        for (int j = 0; j < mb; j++) {
            __m256 a = _mm256_loadu_ps(xf + (size_t)j * ldx + k);
            for (int i = 0; i < nb; i++) acc[i][j] = _mm256_fmadd_ps(w[i], a, acc[i][j]);
        }
    }
    if (k < K) { /* tail: weights copied zero-padded (x rows are zero-padded already) */
        __m256 w[A2_NB];
        for (int i = 0; i < nb; i++) {
            uint16_t t[8] = {0};
            memcpy(t, W + (size_t)i * K + k, (size_t)(K - k) * sizeof(uint16_t));
            w[i] = a2_widen(t);
        }
        for (int j = 0; j < mb; j++) {
            __m256 a = _mm256_loadu_ps(xf + (size_t)j * ldx + k);
            for (int i = 0; i < nb; i++) acc[i][j] = _mm256_fmadd_ps(w[i], a, acc[i][j]);
        }
    }
    for (int j = 0; j < mb; j++)
        for (int i = 0; i < nb; i++) {
            float s = a2_sum(acc[i][j]), *c = y + (size_t)j * ldy + i;
            *c = beta == 0.0f ? s : s + *c;
        }
}

A2_TARGET static void a2_panel(int m, int nb, int K, const void *tile, int ldx, const uint16_t *W, float beta, float *y,
                               int ldy) {
    const float *xf = tile;
    int r = 0;
    if (nb == A2_NB) {
        for (; r + A2_MB <= m; r += A2_MB) a2_block(A2_MB, A2_NB, K, xf + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy);
        switch (m - r) {
        case 1: a2_block(1, A2_NB, K, xf + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy); break;
        case 2: a2_block(2, A2_NB, K, xf + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy); break;
        case 3: a2_block(3, A2_NB, K, xf + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy); break;
        default: break;
        }
    } else {
        for (; r < m; r++) a2_block(1, nb, K, xf + (size_t)r * ldx, ldx, W, beta, y + (size_t)r * ldy, ldy);
    }
}

static int a2_ok(void) {
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return ok;
}
#else
#define CPU_HAVE_BF16_AVX2 0
#endif

/* xf[m, ldx] = bf16-rounded x[m, K] as fp32, zero padded to ldx */
static void bf_round_rows_f32(void *tile, int ldx, const void *xv, int m, int K) {
    float *xf = tile;
    const float *x = xv;
    for (int i = 0; i < m; i++) {
        float *d = xf + (size_t)i * ldx;
        const float *s = x + (size_t)i * K;
        for (int k = 0; k < K; k++) {
            uint32_t u = (uint32_t)fp32_to_bf16(s[k]) << 16;
            memcpy(&d[k], &u, 4);
        }
        for (int k = K; k < ldx; k++) d[k] = 0.0f;
    }
}

/* tiles from rows that are bf16 already (gemm_bf16): xb[m, ldx] = x[m, K]
   zero padded (AVX512_BF16 and portable paths), or widened to fp32 (AVX2) */
static void bf_copy_rows16(void *tile, int ldx, const void *xv, int m, int K) {
    uint16_t *xb = tile;
    const uint16_t *x = xv;
    for (int i = 0; i < m; i++) {
        memcpy(xb + (size_t)i * ldx, x + (size_t)i * K, (size_t)K * sizeof(uint16_t));
        memset(xb + (size_t)i * ldx + K, 0, (size_t)(ldx - K) * sizeof(uint16_t));
    }
}
static void bf_widen_rows16(void *tile, int ldx, const void *xv, int m, int K) {
    float *xf = tile;
    const uint16_t *x = xv;
    for (int i = 0; i < m; i++) {
        for (int k = 0; k < K; k++) xf[(size_t)i * ldx + k] = bf16_to_fp32(x[(size_t)i * K + k]);
        for (int k = K; k < ldx; k++) xf[(size_t)i * ldx + k] = 0.0f;
    }
}

int cpu_has_bf16_kernel(void) { return cpu_bf16_best_path() > 0; }

/* portable: one output = 16 fp32 lanes over K (lane j takes k = j mod 16),
   then a fixed tree; the products are exact (bf16 x bf16 fits fp32). Plain C
   the compiler vectorises (AVX2 / NEON): no AVX512_BF16 needed. */
static float bf_dot_portable(const uint16_t *a, const uint16_t *w, int K) {
    float acc[16] = {0};
    int k = 0;
    for (; k + 16 <= K; k += 16)
        for (int j = 0; j < 16; j++) acc[j] += bf16_to_fp32(a[k + j]) * bf16_to_fp32(w[k + j]);
    for (int j = 0; k + j < K; j++) acc[j] += bf16_to_fp32(a[k + j]) * bf16_to_fp32(w[k + j]);
    for (int h = 8; h >= 1; h /= 2)
        for (int j = 0; j < h; j++) acc[j] += acc[j + h];
    return acc[0];
}

static void bf_panel_portable(int m, int nb, int K, const void *tile, int ldx, const uint16_t *W, float beta,
                              float *y, int ldy) {
    const uint16_t *xb = tile;
    for (int i = 0; i < m; i++)
        for (int n = 0; n < nb; n++) {
            float s = bf_dot_portable(xb + (size_t)i * ldx, W + (size_t)n * K, K);
            float *c = y + (size_t)i * ldy + n;
            *c = beta == 0.0f ? s : s + *c;
        }
}

/* a path of matmul_bf16: how a tile of x is stored (bf16, or bf16-rounded
   fp32) and the kernel over a panel of nb weight rows */
typedef struct bf_path {
    int nb;      /* weight rows per panel */
    int x_bytes; /* bytes per element of x: 4 (fp32, rounded into the tile) or 2 (bf16 already) */
    void (*tile)(void *tile, int ldx, const void *x, int m, int K);
    void (*panel)(int m, int nb, int K, const void *tile, int ldx, const uint16_t *W, float beta, float *y, int ldy);
} bf_path;

int cpu_bf16_best_path(void) {
#if CPU_HAVE_BF16_KERNEL
    if (bf16_kernel_ok()) return 2;
#endif
#if CPU_HAVE_BF16_AVX2
    if (a2_ok()) return 1;
#endif
    return 0;
}

void cpu_matmul_bf16(backend *be, int M, int N, int K, const float *x, const uint16_t *W, float beta, float *y) {
    cpu_matmul_bf16_path(be, M, N, K, x, W, beta, y, cpu_bf16_best_path());
}

/* path 2 (AVX512_BF16), 1 (AVX2) or 0 (portable) for x given as fp32
   (rounded into the tile) or, x16, as bf16 already */
static bf_path bf_path_of(int path, int x16) {
    bf_path P = {BF_NB, x16 ? 2 : 4, x16 ? bf_copy_rows16 : bf_convert_rows, bf_panel_portable};
#if CPU_HAVE_BF16_KERNEL
    if (path == 2) P = (bf_path){BF_NB, P.x_bytes, x16 ? bf_copy_rows16 : bf_convert_rows_avx, bf_panel};
#endif
#if CPU_HAVE_BF16_AVX2
    if (path == 1) P = (bf_path){A2_NB, P.x_bytes, x16 ? bf_widen_rows16 : bf_round_rows_f32, a2_panel};
#endif
    return P;
}

/* K = 0: C[M,N] (row stride ldc) = beta C, not read when beta == 0 (as in BLAS) */
static void bf_empty_k(float *C, int M, int N, int ldc, float beta) {
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) C[(size_t)r * ldc + c] = beta == 0.0f ? 0.0f : C[(size_t)r * ldc + c];
}

/* y[M,N] = x[M,K] W[N,K]^T (+ y) on path P: the loop every path shares.
   y16 != NULL (y NULL, beta 0): each thread computes its columns of a tile
   into its fp32 strip [BF_TILE_M, its blocks * nb] and stores them rounded
   to bf16 into y16[M,N], row by row. */
static void bf_run(backend *be, int M, int N, int K, const void *x, const uint16_t *W, float beta, float *y,
                   uint16_t *y16, bf_path P) {
    int ldx = bf_ldx(K), nblk = (N + P.nb - 1) / P.nb;
    int nt = be->n_threads > 0 ? be->n_threads : 1;
    int strip = ((nblk + nt - 1) / nt) * P.nb; /* the widest thread's columns (y16) */
    /* bytes per thread: the x tile (bf16 rows, or fp32 rows on AVX2), then the y16 strip */
    size_t tile = (size_t)BF_TILE_M * ldx * sizeof(float) + (y16 ? (size_t)BF_TILE_M * strip * sizeof(float) : 0);
    char *tiles = cpu_scratch(be, (size_t)nt * tile); /* [threads][BF_TILE_M, ldx] (+ [BF_TILE_M, strip]) */
    if (!tiles) return;
    /* every thread converts each tile of x itself (M x K conversions against
       M x N x K / threads products) and takes a contiguous range of weight
       rows, streaming its share of W once per tile */
#pragma omp parallel num_threads(nt) if ((long)N * K * ((M < BF_TILE_M ? M : BF_TILE_M) + 4) > 1000000)
    {
        int it = omp_get_thread_num(), nth = omp_get_num_threads();
        int b0 = (int)((long)nblk * it / nth), b1 = (int)((long)nblk * (it + 1) / nth); /* this thread's blocks */
        int c0 = b0 * P.nb, c1 = b1 * P.nb < N ? b1 * P.nb : N, w = c1 - c0;         /* and columns */
        void *buf = tiles + (size_t)it * tile;
        float *pan = (float *)((char *)buf + (size_t)BF_TILE_M * ldx * sizeof(float)); /* y16: [m, w] */
        for (int m0 = 0; m0 < M && b0 < b1; m0 += BF_TILE_M) {
            int m = M - m0 < BF_TILE_M ? M - m0 : BF_TILE_M;
            P.tile(buf, ldx, (const char *)x + (size_t)m0 * K * P.x_bytes, m, K);
            for (int b = b0; b < b1; b++) {
                int n0 = b * P.nb, nb = N - n0 < P.nb ? N - n0 : P.nb;
                if (y16)
                    P.panel(m, nb, K, buf, ldx, W + (size_t)n0 * K, 0.0f, pan + (n0 - c0), w);
                else
                    P.panel(m, nb, K, buf, ldx, W + (size_t)n0 * K, beta, y + (size_t)m0 * N + n0, N);
            }
            if (y16)
                for (int i = 0; i < m; i++) {
                    uint16_t *dst = y16 + (size_t)(m0 + i) * N + c0;
                    const float *src = pan + (size_t)i * w;
                    for (int j = 0; j < w; j++) dst[j] = fp32_to_bf16(src[j]);
                }
        }
    }
}

void cpu_matmul_bf16_path(backend *be, int M, int N, int K, const float *x, const uint16_t *W, float beta, float *y,
                          int path) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        bf_empty_k(y, M, N, N, beta);
        return;
    }
    if (path > cpu_bf16_best_path()) path = cpu_bf16_best_path();
    bf_run(be, M, N, K, x, W, beta, y, NULL, bf_path_of(path, 0));
}

void cpu_widen_bf16(float *w, const uint16_t *a, int rows, int cols, size_t ld, int nt) {
#pragma omp parallel for schedule(static) num_threads(nt) if ((long)rows * cols > 65536)
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) w[(size_t)r * cols + c] = bf16_to_fp32(a[(size_t)r * ld + c]);
}

#if CPU_HAVE_BF16_KERNEL
/* One full 32 x 32 block of 16-bit values, transposed in registers: row i
   of the block in register i, then five butterfly stages, stage b swapping
   bit b of the row index with bit b of the column index (each a pair of
   two-register permutes), so every load and store is a whole 64-byte row.
   About twice the scalar loop's speed in a SmolLM2 bf16 step (its share of the
   step 6% -> 3%, perf); the values are moved, not changed. */
__attribute__((target("avx512f,avx512bw"))) static void bf_transpose32(uint16_t *dst, size_t ldd, const uint16_t *src,
                                                                     size_t lds) {
    static uint16_t idx[5][2][32]; /* per stage: the permutes making rows i and i + b */
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        for (int s = 0; s < 5; s++)
            for (int c = 0; c < 32; c++) {
                int b = 16 >> s;
                idx[s][0][c] = (uint16_t)(c & b ? 32 + c - b : c);
                idx[s][1][c] = (uint16_t)(c & b ? 32 + c : c + b);
            }
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    __m512i r[32];
#pragma GCC unroll 32
    for (int i = 0; i < 32; i++) r[i] = _mm512_loadu_si512(src + (size_t)i * lds);
#pragma GCC unroll 5
    for (int s = 0; s < 5; s++) {
        int b = 16 >> s;
        __m512i lo = _mm512_loadu_si512(idx[s][0]), hi = _mm512_loadu_si512(idx[s][1]);
#pragma GCC unroll 32
        for (int i = 0; i < 32; i++)
            if (!(i & b)) {
                __m512i x = r[i], y = r[i + b];
                r[i] = _mm512_permutex2var_epi16(x, lo, y);
                r[i + b] = _mm512_permutex2var_epi16(x, hi, y);
            }
    }
#pragma GCC unroll 32
    for (int i = 0; i < 32; i++) _mm512_storeu_si512(dst + (size_t)i * ldd, r[i]);
}

static int bf_transpose_simd(void) {
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    }
    return ok;
}
#endif

/* dst[cols, rows] = src[rows, cols]^T (src row stride ld), in 32 x 32 blocks
   (whole blocks in registers where the CPU has AVX512BW) */
static void bf_transpose(uint16_t *dst, const uint16_t *src, int rows, int cols, int ld, int nt) {
    int nbr = (rows + 31) / 32, nbc = (cols + 31) / 32;
#if CPU_HAVE_BF16_KERNEL
    int simd = bf_transpose_simd();
#else
    int simd = 0;
#endif
#pragma omp parallel for schedule(static) num_threads(nt) if ((long)rows * cols > 65536)
    for (int b = 0; b < nbr * nbc; b++) {
        int r0 = b / nbc * 32, c0 = b % nbc * 32;
        int r1 = r0 + 32 < rows ? r0 + 32 : rows, c1 = c0 + 32 < cols ? c0 + 32 : cols;
#if CPU_HAVE_BF16_KERNEL
        if (simd && r1 - r0 == 32 && c1 - c0 == 32) {
            bf_transpose32(dst + (size_t)c0 * rows + r0, (size_t)rows, src + (size_t)r0 * ld + c0, (size_t)ld);
            continue;
        }
#endif
        for (int c = c0; c < c1; c++)
            for (int r = r0; r < r1; r++) dst[(size_t)c * rows + r] = src[(size_t)r * ld + c];
    }
}

/* a[rows, cols] (row stride ld) copied to a contiguous [rows, cols] */
static void bf_pack(uint16_t *dst, const uint16_t *src, int rows, int cols, int ld) {
    for (int r = 0; r < rows; r++) memcpy(dst + (size_t)r * cols, src + (size_t)r * ld, (size_t)cols * sizeof(uint16_t));
}

/* Mixed-precision training (model.dtype: bf16): C = op(A) op(B) + beta C with
   bf16 A and B: exact products, fp32 sums.
   With a vector path (AVX512_BF16, or AVX2 + FMA) both operands are brought
   to the layout of the forward linear, rows of op(A) [M, K] and rows of
   op(B)^T [N, K], contiguous, copying or transposing (in the second scratch
   buffer) what is not already so, then the matmul_bf16 kernels run on them:
   per output one dot product over K, independent of M and the threads. The
   copies cost M K + N K element moves against 2 M N K flops, no more than
   the reference's widening. Otherwise, and for a padded C, the reference:
   both operands widened exactly to fp32, then the fp32 matmul. Either way
   only the order of the fp32 sums differs from a GPU's tensor cores. */
void cpu_gemm_bf16(backend *be, int transA, int transB, int M, int N, int K, const uint16_t *A, int lda,
                   const uint16_t *B, int ldb, float beta, float *C, uint16_t *C16, int ldc) {
    cpu_gemm_bf16_path(be, transA, transB, M, N, K, A, lda, B, ldb, beta, C, C16, ldc, cpu_bf16_best_path());
}

void cpu_gemm_bf16_path(backend *be, int transA, int transB, int M, int N, int K, const uint16_t *A, int lda,
                        const uint16_t *B, int ldb, float beta, float *C, uint16_t *C16, int ldc, int path) {
    if (M <= 0 || N <= 0) return;
    if (C16 && (C || beta != 0.0f)) {
        CPU_ERR(be, "gemm_bf16: a bf16 output takes beta 0 and no fp32 output");
        return;
    }
    if (K <= 0) {
        if (C16)
            for (int r = 0; r < M; r++) memset(C16 + (size_t)r * ldc, 0, (size_t)N * sizeof(uint16_t));
        else
            bf_empty_k(C, M, N, ldc, beta);
        return;
    }
    int nt = be->n_threads > 0 ? be->n_threads : 1;
    if (path > cpu_bf16_best_path()) path = cpu_bf16_best_path();
    if (path > 0 && ldc == N) {
        int a_ok = !transA && lda == K, b_ok = transB && ldb == K; /* already [M, K] / [N, K] rows */
        size_t na = a_ok ? 0 : (size_t)M * K, nb = b_ok ? 0 : (size_t)N * K;
        uint16_t *buf = na + nb ? cpu_scratch2(be, (na + nb) * sizeof(uint16_t)) : NULL;
        if (na + nb && !buf) return;
        const uint16_t *a = A, *b = B;
        if (!a_ok) {
            if (transA) bf_transpose(buf, A, K, M, lda, nt); /* A [K, M] */
            else bf_pack(buf, A, M, K, lda);
            a = buf;
        }
        if (!b_ok) {
            if (transB) bf_pack(buf + na, B, N, K, ldb);
            else bf_transpose(buf + na, B, K, N, ldb, nt); /* B [K, N] */
            b = buf + na;
        }
        bf_run(be, M, N, K, a, b, beta, C, C16, bf_path_of(path, 1));
        return;
    }
    int ar = transA ? K : M, ac = transA ? M : K; /* A as stored [ar, ac] */
    int br = transB ? N : K, bc = transB ? K : N; /* B as stored [br, bc] */
    size_t na = (size_t)ar * ac, nb = (size_t)br * bc;
    float *wa = cpu_scratch(be, (na + nb + 16) * sizeof(float)); /* [ar, ac] then [br, bc] */
    if (!wa) return;
    float *wb = wa + ((na + 15) & ~(size_t)15);
    cpu_widen_bf16(wa, A, ar, ac, (size_t)lda, nt);
    cpu_widen_bf16(wb, B, br, bc, (size_t)ldb, nt);
    float *c32 = C16 ? cpu_scratch2(be, (size_t)M * N * sizeof(float)) : C; /* C16: fp32 [M, N], then rounded */
    if (!c32) return;
    cpu_matmul(be, transA, transB, M, N, K, 1.0f, wa, ac > 0 ? ac : 1, 0, wb, bc > 0 ? bc : 1, 0, beta, c32,
               C16 ? N : ldc, 0, 1);
    if (C16)
        for (int r = 0; r < M; r++)
            for (int c = 0; c < N; c++) C16[(size_t)r * ldc + c] = fp32_to_bf16(c32[(size_t)r * N + c]);
}
