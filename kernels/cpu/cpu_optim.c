/* kernels/cpu/cpu_optim.c: optimizer ops of the CPU backend: sum of squares
 * (for the global gradient norm; fixed blocks summed in order, so the result
 * does not depend on the thread count) and the AdamW step (PyTorch's
 * single-tensor AdamW order of operations). */
#include <math.h>
#include <stdlib.h>

#include "cpu_internal.h"

#define SUMSQ_BLOCK 16384

double cpu_sumsq(backend *be, const float *x, size_t n) {
    if (n == 0) return 0.0;
    long nb = (long)((n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK);
    double stackbuf[64];
    double *part = nb <= 64 ? stackbuf : malloc((size_t)nb * sizeof(double));
    if (!part) { CPU_ERR(be, "sumsq: out of memory"); return NAN; }
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if (nb > 4)
    for (long b = 0; b < nb; b++) {
        size_t i0 = (size_t)b * SUMSQ_BLOCK, i1 = i0 + SUMSQ_BLOCK < n ? i0 + SUMSQ_BLOCK : n;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (size_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
        part[b] = s;
    }
    double s = 0;
    for (long b = 0; b < nb; b++) s += part[b];
    if (part != stackbuf) free(part);
    return s;
}

/* torch.optim.AdamW (foreach=False):
 *   p *= 1 - lr wd;  m += (g - m)(1 - b1);  v = v b2 + (1 - b2) g^2
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * scalars computed in double (as Python does), elementwise in fp32. */
void cpu_adamw(backend *be, float *p, const float *g, float *m, float *v, size_t n, float lr, float b1, float b2,
               float eps, float wd, int t) {
    if (t < 1) { CPU_ERR(be, "adamw: step %d < 1", t); return; }
    double bc1 = 1.0 - pow((double)b1, t), bc2 = 1.0 - pow((double)b2, t);
    const float decay = (float)(1.0 - (double)lr * wd);
    const float omb1 = (float)(1.0 - (double)b1), omb2 = (float)(1.0 - (double)b2);
    const float step = (float)((double)lr / bc1), bc2s = (float)sqrt(bc2);
    long nc = (long)((n + CPU_CHUNK - 1) / CPU_CHUNK);
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if (nc > 4)
    for (long c = 0; c < nc; c++) {
        size_t i0 = (size_t)c * CPU_CHUNK, i1 = i0 + CPU_CHUNK < n ? i0 + CPU_CHUNK : n;
#pragma omp simd
        for (size_t i = i0; i < i1; i++) {
            float gi = g[i];
            float pi = p[i] * decay;
            float mi = m[i] + (gi - m[i]) * omb1;
            float vi = v[i] * b2 + omb2 * (gi * gi);
            float den = sqrtf(vi) / bc2s + eps;
            m[i] = mi;
            v[i] = vi;
            p[i] = pi - step * (mi / den);
        }
    }
}
