/* kernels/cpu/backend_cpu.c: the CPU backend object: memory (host memory,
 * 64-byte aligned), the op table, thread setup. Ops live in the other files
 * of kernels/cpu/. */
#define _GNU_SOURCE
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_internal.h"

void cpu_error(backend *be, const char *file, int line, const char *fmt, ...) {
    if (be->err[0]) return; /* keep the first error */
    int n = snprintf(be->err, sizeof be->err, "%s:%d: ", file, line);
    if (n < 0 || (size_t)n >= sizeof be->err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(be->err + n, sizeof be->err - (size_t)n, fmt, ap);
    va_end(ap);
}

static void *cpu_alloc(backend *be, size_t bytes) {
    void *p = NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) {
        if (!be->err[0]) snprintf(be->err, sizeof be->err, "%s:%d: out of memory allocating %zu bytes", __FILE__, __LINE__, bytes);
        return NULL;
    }
    memset(p, 0, n);
    return p;
}
static void cpu_free(backend *be, void *p) { (void)be; free(p); }
static void cpu_copy(backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memmove(dst, src, bytes);
}
static void cpu_zero(backend *be, void *p, size_t bytes) {
    (void)be;
    if (bytes) memset(p, 0, bytes);
}
static int cpu_sync(backend *be) { return be->err[0] ? -1 : 0; }
/* the backend's two scratch buffers (be->impl): grown on demand, kept until
   destroy, so per-call temporaries of ops cost no malloc / page faults */
typedef struct cpu_state {
    void *scratch[2];
    size_t cap[2];
} cpu_state;

static void *scratch_slot(backend *be, int i, size_t bytes) {
    cpu_state *st = be->impl;
    if (bytes > st->cap[i]) {
        free(st->scratch[i]);
        st->cap[i] = 0;
        if (posix_memalign(&st->scratch[i], 64, bytes) != 0) {
            st->scratch[i] = NULL;
            cpu_error(be, __FILE__, __LINE__, "out of memory allocating %zu bytes of scratch", bytes);
            return NULL;
        }
        st->cap[i] = bytes;
    }
    return st->scratch[i];
}
void *cpu_scratch(backend *be, size_t bytes) { return scratch_slot(be, 0, bytes); }
void *cpu_scratch2(backend *be, size_t bytes) { return scratch_slot(be, 1, bytes); }

static void cpu_destroy(backend *be) {
    cpu_state *st = be->impl;
    if (st) free(st->scratch[0]), free(st->scratch[1]);
    free(st);
    free(be);
}

backend *backend_cpu_create(int n_threads) {
    backend *be = calloc(1, sizeof *be);
    if (!be) return NULL;
    be->impl = calloc(1, sizeof(cpu_state));
    if (!be->impl) {
        free(be);
        return NULL;
    }
    if (n_threads <= 0) n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads <= 0) n_threads = 1;
    be->name = "cpu";
    be->n_threads = n_threads;
    /* 128 MB of logits per LM-head chunk (682 tokens of SmolLM2's vocabulary):
       each chunk's weight-gradient product re-reads and re-writes the whole
       [V, D] gradient, so few large chunks beat cache-sized ones (SmolLM2,
       2048 tokens, 2 threads: bf16 280 -> 313 tokens/s, fp32 201 -> 214, for
       +180 / +110 MB of peak memory; 16 MB was the old size) */
    be->lm_chunk_bytes = (size_t)128 << 20;
    omp_set_num_threads(n_threads);
    cpu_openblas_setup(n_threads);
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->copy_h2d = cpu_copy;
    be->copy_d2h = cpu_copy;
    be->copy_d2d = cpu_copy;
    be->zero = cpu_zero;
    be->sync = cpu_sync;
    be->destroy = cpu_destroy;
    be->matmul = cpu_matmul;
    be->cast_bf16 = cpu_cast_bf16;
    be->matmul_bf16 = cpu_matmul_bf16;
    be->gemm_bf16 = cpu_gemm_bf16;
    be->add = cpu_add;
    be->scale = cpu_scale;
    be->bias_forward = cpu_bias_forward;
    be->bias_backward = cpu_bias_backward;
    be->embedding_forward = cpu_embedding_forward;
    be->embedding_backward = cpu_embedding_backward;
    be->rmsnorm_forward = cpu_rmsnorm_forward;
    be->rmsnorm_backward = cpu_rmsnorm_backward;
    be->rope_forward = cpu_rope_forward;
    be->rope_backward = cpu_rope_backward;
    be->rope_forward_bf16 = cpu_rope_forward_bf16;
    be->attention_forward = cpu_attention_forward;
    be->attention_backward = cpu_attention_backward;
    be->attention_forward_bf16 = cpu_attention_forward_bf16;
    be->attention_backward_bf16 = cpu_attention_backward_bf16;
    be->swiglu_forward = cpu_swiglu_forward;
    be->swiglu_backward = cpu_swiglu_backward;
    be->swiglu_forward_bf16 = cpu_swiglu_forward_bf16;
    be->swiglu_backward_bf16 = cpu_swiglu_backward_bf16;
    be->logprob_forward = cpu_logprob_forward;
    be->logprob_backward = cpu_logprob_backward;
    be->kv_write = cpu_kv_write;
    be->attention_cached = cpu_attention_cached;
    be->kv_write_bf16 = cpu_kv_write_bf16;
    be->attention_cached_bf16 = cpu_attention_cached_bf16;
    be->sumsq = cpu_sumsq;
    be->adamw = cpu_adamw;
    return be;
}
