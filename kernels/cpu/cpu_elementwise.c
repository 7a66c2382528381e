/* kernels/cpu/cpu_elementwise.c: the row-wise and elementwise ops of the CPU
 * backend: embedding lookup and scatter-add, RMSNorm, RoPE (Hugging Face
 * rotate_half convention) and SwiGLU, forward and backward. OpenMP over rows
 * or fixed chunks; every reduction has a fixed order, so results are bitwise
 * the same for any thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

/* [c0, c1) of the columns [0, D) owned by thread `it` of `nt`; boundaries are
   multiples of 16 so every thread sees the same alignment pattern. */
static void cpu_col_range(int D, int it, int nt, int *c0, int *c1) {
    int blocks = (D + 15) / 16;
    int b0 = (int)((long)blocks * it / nt), b1 = (int)((long)blocks * (it + 1) / nt);
    *c0 = b0 * 16 < D ? b0 * 16 : D;
    *c1 = b1 * 16 < D ? b1 * 16 : D;
}

/* ---- embedding ---- */

void cpu_embedding_forward(backend *be, float *out, const float *table, const int32_t *ids, int T, int D) {
    int bad = -1;
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if ((long)T * D > 32768)
    for (int t = 0; t < T; t++) {
        int32_t id = ids[t];
        if (id < 0) {
#pragma omp critical(cpu_embedding_bad)
            bad = t;
            memset(out + (size_t)t * D, 0, (size_t)D * sizeof(float));
            continue;
        }
        memcpy(out + (size_t)t * D, table + (size_t)id * D, (size_t)D * sizeof(float));
    }
    if (bad >= 0) CPU_ERR(be, "embedding_forward: negative token id at position %d", bad);
}

/* Scatter-add, race-free: each thread owns a range of columns and walks all
   tokens in order, so repeated ids accumulate in token order. */
void cpu_embedding_backward(backend *be, float *dtable, const float *dout, const int32_t *ids, int T, int D) {
    int nt = be->n_threads;
    if ((long)T * D <= 32768) nt = 1;
#pragma omp parallel num_threads(nt)
    {
        int c0, c1;
        cpu_col_range(D, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int t = 0; t < T; t++) {
            int32_t id = ids[t];
            if (id < 0) continue;
            float *dst = dtable + (size_t)id * D;
            const float *src = dout + (size_t)t * D;
#pragma omp simd
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

/* ---- RMSNorm ---- */

void cpu_rmsnorm_forward(backend *be, float *out, uint16_t *out16, float *rstd, float *xcopy, const float *x,
                         const float *w, int T, int D, float eps) {
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if ((long)T * D > 16384)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * D;
        double ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int d = 0; d < D; d++) ss += (double)xr[d] * xr[d];
        float r = (float)(1.0 / sqrt(ss / D + (double)eps));
        rstd[t] = r;
        if (xcopy) memcpy(xcopy + (size_t)t * D, xr, (size_t)D * sizeof(float));
        if (out) {
            float *o = out + (size_t)t * D;
#pragma omp simd
            for (int d = 0; d < D; d++) o[d] = (xr[d] * r) * w[d];
        }
        if (out16) {
            uint16_t *o = out16 + (size_t)t * D;
            for (int d = 0; d < D; d++) o[d] = fp32_to_bf16((xr[d] * r) * w[d]);
        }
    }
}

/* y = x r w, r = (mean x^2 + eps)^-1/2:
   dx (= or +=) r (w dy) - x r^3 / D * sum_d(w dy x);  dw += sum_t dy x r.
   dw is summed before any dx row is written (dx may alias dout when beta 0).
   dout16: widened first into the backend's scratch. */
void cpu_rmsnorm_backward(backend *be, float *dx, uint16_t *dx16, float *dw, const float *dout,
                          const uint16_t *dout16, const float *x, const float *w, const float *rstd, int T, int D,
                          float beta) {
    int nt = (long)T * D > 16384 ? be->n_threads : 1;
    if (dout16) {
        float *wide = cpu_scratch(be, ((size_t)T * D + 1) * sizeof(float));
        if (!wide) return;
        cpu_widen_bf16(wide, dout16, T, D, (size_t)D, nt);
        dout = wide;
    }
#pragma omp parallel num_threads(nt)
    {
        /* dw: column ownership, tokens in order */
        int c0, c1;
        cpu_col_range(D, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int cb = c0; cb < c1; cb += 64) {
            int ce = cb + 64 < c1 ? cb + 64 : c1;
            double acc[64] = {0};
            for (int t = 0; t < T; t++) {
                const float *xr = x + (size_t)t * D, *dy = dout + (size_t)t * D;
                float r = rstd[t];
#pragma omp simd
                for (int c = cb; c < ce; c++) acc[c - cb] += (double)(dy[c] * xr[c]) * r;
            }
            for (int c = cb; c < ce; c++) dw[c] += (float)acc[c - cb];
        }
#pragma omp barrier
#pragma omp for schedule(static)
        for (int t = 0; t < T; t++) {
            const float *xr = x + (size_t)t * D, *dy = dout + (size_t)t * D;
            float *g = dx + (size_t)t * D;
            float r = rstd[t];
            double dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int d = 0; d < D; d++) dot += (double)(w[d] * dy[d]) * xr[d];
            float c = (float)(dot * r * r * r / D);
            if (beta != 0.0f) {
#pragma omp simd
                for (int d = 0; d < D; d++) g[d] = g[d] + (r * (w[d] * dy[d]) - c * xr[d]);
            } else {
#pragma omp simd
                for (int d = 0; d < D; d++) g[d] = r * (w[d] * dy[d]) - c * xr[d];
            }
            if (dx16) {
                uint16_t *o = dx16 + (size_t)t * D;
                for (int d = 0; d < D; d++) o[d] = fp32_to_bf16(g[d]);
            }
        }
    }
}

/* ---- RoPE ----
 * Matches transformers: inv_freq[i] = 1 / theta^(float(2i)/hd) in fp32,
 * angle = float(pos) * inv_freq[i] in fp32, cos/sin in fp32;
 * out1 = x1 cos - x2 sin, out2 = x2 cos + x1 sin (x1 = x[:hd/2], x2 = x[hd/2:]).
 * The bf16 ops (model.dtype bf16) work on stacked rows q | k | v: a row is
 * widened (or gathered from dq, dk, dv) into a thread's fp32 buffer, the
 * Hq + Hkv heads of q and k (adjacent in the row) rotated there, and the
 * row rounded back once. */
typedef struct {
    float *x;                       /* fp32 [T, H, hd] in place, or NULL: the stacked rows x16 */
    int H;                          /* x: heads; x16: Hq + Hkv (the rotated heads) */
    uint16_t *x16;                  /* [T, W] stacked q | k | v rows, W = (H + Hkv) hd */
    int Hkv;
    const float *bq, *bk, *bv;      /* forward into x16 (in place): biases or NULL */
    const float *dq, *dk, *dv;      /* backward into x16: the rows come from these, else from x16 */
} rope_rows;

/* the H heads of hd dims at row[0 : H*hd] rotated by cs = cos[hd/2] | sin[hd/2] */
static void rope_heads(float *row, int H, int hd, const float *cs) {
    int half = hd / 2;
    for (int h = 0; h < H; h++) {
        float *x1 = row + (size_t)h * hd, *x2 = x1 + half;
#pragma omp simd
        for (int i = 0; i < half; i++) {
            float a = x1[i], b = x2[i], c = cs[i], s = cs[half + i];
            x1[i] = a * c - b * s;
            x2[i] = b * c + a * s;
        }
    }
}

static void cpu_rope(backend *be, const rope_rows *r, const int32_t *pos, int T, int hd, float theta, int inverse) {
    int half = hd / 2, Hq = r->H - r->Hkv, qd = Hq * hd, kvd = r->Hkv * hd;
    size_t W = r->x ? 0 : (size_t)(r->H + r->Hkv) * hd; /* stacked row width */
    if (hd % 2) { CPU_ERR(be, "rope: head_dim %d is odd", hd); return; }
    float *inv = malloc((size_t)half * sizeof(float));
    if (!inv) { CPU_ERR(be, "rope: out of memory"); return; }
    for (int i = 0; i < half; i++) inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
    int nt = (long)T * r->H * hd > 16384 ? be->n_threads : 1;
#pragma omp parallel num_threads(nt)
    {
        float *cs = malloc(((size_t)hd + W) * sizeof(float)); /* cos[half], sin[half], then a stacked row */
        if (cs) {
            float *buf = cs + hd;
#pragma omp for schedule(static)
            for (int t = 0; t < T; t++) {
                float p = (float)pos[t];
                for (int i = 0; i < half; i++) {
                    float a = p * inv[i];
                    cs[i] = cosf(a);
                    cs[half + i] = inverse ? -sinf(a) : sinf(a);
                }
                if (r->x) {
                    rope_heads(r->x + (size_t)t * r->H * hd, r->H, hd, cs);
                    continue;
                }
                uint16_t *x16 = r->x16 + (size_t)t * W;
                if (r->dq) {
                    memcpy(buf, r->dq + (size_t)t * qd, (size_t)qd * sizeof(float));
                    memcpy(buf + qd, r->dk + (size_t)t * kvd, (size_t)kvd * sizeof(float));
                    memcpy(buf + qd + kvd, r->dv + (size_t)t * kvd, (size_t)kvd * sizeof(float));
                } else {
                    for (size_t j = 0; j < W; j++) buf[j] = bf16_to_fp32(x16[j]);
                    if (r->bq) {
                        for (int j = 0; j < qd; j++) buf[j] += r->bq[j];
                        for (int j = 0; j < kvd; j++) buf[qd + j] += r->bk[j], buf[qd + kvd + j] += r->bv[j];
                    }
                }
                rope_heads(buf, r->H, hd, cs);
                for (size_t j = 0; j < W; j++) x16[j] = fp32_to_bf16(buf[j]);
            }
            free(cs);
        } else {
#pragma omp critical(cpu_rope_err)
            CPU_ERR(be, "rope: out of memory");
        }
    }
    free(inv);
}

void cpu_rope_forward(backend *be, float *x, const int32_t *pos, int T, int H, int hd, float theta) {
    cpu_rope(be, &(rope_rows){.x = x, .H = H}, pos, T, hd, theta, 0);
}
void cpu_rope_backward(backend *be, float *dx, const int32_t *pos, int T, int H, int hd, float theta) {
    cpu_rope(be, &(rope_rows){.x = dx, .H = H}, pos, T, hd, theta, 1);
}
void cpu_rope_forward_bf16(backend *be, uint16_t *qkv, const float *bq, const float *bk, const float *bv,
                           const int32_t *pos, int T, int Hq, int Hkv, int hd, float theta) {
    rope_rows r = {.H = Hq + Hkv, .x16 = qkv, .Hkv = Hkv, .bq = bq, .bk = bk, .bv = bv};
    cpu_rope(be, &r, pos, T, hd, theta, 0);
}
void cpu_rope_backward_bf16(backend *be, uint16_t *dqkv16, const float *dq, const float *dk, const float *dv,
                            const int32_t *pos, int T, int Hq, int Hkv, int hd, float theta) {
    rope_rows r = {.H = Hq + Hkv, .x16 = dqkv16, .Hkv = Hkv, .dq = dq, .dk = dk, .dv = dv};
    cpu_rope(be, &r, pos, T, hd, theta, 1);
}

/* ---- SwiGLU: out = silu(g) u, silu(g) = g sigmoid(g) ----
 * The formulas live in two chunk functions; the fp32 ops run them on the
 * tensors, the bf16 ops on stack chunks widened from bf16 (then round the
 * results), so both compute the same fp32 values. */

static void swiglu_chunk(float *o, const float *gate, const float *up, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        float s = 1.0f / (1.0f + cpu_expf(-g));
        o[i] = g * s * up[i];
    }
}

/* dgate = dy u s (1 + g (1 - s)), dup = dy g s; dgate/dup may alias dout
   (each element is read before it is written) */
static void swiglu_back_chunk(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                              size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], u = up[i], dy = dout[i];
        float s = 1.0f / (1.0f + cpu_expf(-g));
        float dg = dy * u * (s * (1.0f + g * (1.0f - s)));
        float du = dy * (g * s);
        dgate[i] = dg;
        dup[i] = du;
    }
}

static void widen16(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_fp32(src[i]);
}
static void round16(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = fp32_to_bf16(src[i]);
}

#define CHUNK_LOOP(n, ...)                                                                    \
    do {                                                                                       \
        long nc_ = (long)(((n) + CPU_CHUNK - 1) / CPU_CHUNK);                                  \
        _Pragma("omp parallel for num_threads(be->n_threads) schedule(static) if (nc_ > 4)")   \
        for (long c_ = 0; c_ < nc_; c_++) {                                                    \
            size_t i0 = (size_t)c_ * CPU_CHUNK, m = (n) - i0 < CPU_CHUNK ? (n) - i0 : CPU_CHUNK; \
            __VA_ARGS__                                                                        \
        }                                                                                      \
    } while (0)

void cpu_swiglu_forward(backend *be, float *out, const float *gate, const float *up, size_t n) {
    CHUNK_LOOP(n, { swiglu_chunk(out + i0, gate + i0, up + i0, m); });
}

void cpu_swiglu_backward(backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n) {
    CHUNK_LOOP(n, { swiglu_back_chunk(dgate + i0, dup + i0, dout + i0, gate + i0, up + i0, m); });
}

/* rows of gu [T, 2F] (gate | up), in chunks of a row */
#define ROW_LOOP(...)                                                                              \
    _Pragma("omp parallel for num_threads(be->n_threads) schedule(static) if ((long)T * F > 4 * CPU_CHUNK)") \
    for (int t = 0; t < T; t++)                                                                    \
        for (int f0 = 0; f0 < F; f0 += CPU_CHUNK) {                                                \
            int m = F - f0 < CPU_CHUNK ? F - f0 : CPU_CHUNK;                                       \
            const uint16_t *gr = gu + (size_t)t * 2 * F + f0, *ur = gr + F;                        \
            float g[CPU_CHUNK], u[CPU_CHUNK];                                                      \
            widen16(g, gr, m);                                                                     \
            widen16(u, ur, m);                                                                     \
            __VA_ARGS__                                                                            \
        }

void cpu_swiglu_forward_bf16(backend *be, uint16_t *out16, const uint16_t *gu, int T, int F) {
    ROW_LOOP({
        swiglu_chunk(g, g, u, m);
        round16(out16 + (size_t)t * F + f0, g, m);
    })
}

void cpu_swiglu_backward_bf16(backend *be, uint16_t *dgu16, const uint16_t *dout16, const uint16_t *gu, int T,
                              int F) {
    ROW_LOOP({
        float dy[CPU_CHUNK];
        widen16(dy, dout16 + (size_t)t * F + f0, m);
        swiglu_back_chunk(g, u, dy, g, u, m);
        round16(dgu16 + (size_t)t * 2 * F + f0, g, m);
        round16(dgu16 + (size_t)t * 2 * F + F + f0, u, m);
    })
}
