/* kernels/cpu/cpu_setup.c: OpenBLAS thread count, and the core-type trap of
 * DESIGN.md's platform notes: Debian's DYNAMIC_ARCH OpenBLAS may pick
 * "Prescott" kernels on VMs whose CPUID hides AVX-512/AVX2 support from its
 * detection. OPENBLAS_CORETYPE is read when the library loads, so the fix has
 * to happen before that: rft's main() re-executes itself once with the right
 * value (cpu_openblas_reexec). A core type the user set is never overridden. */
#define _GNU_SOURCE
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cpu_internal.h"
#include "cpu_setup.h"

extern char *openblas_get_corename(void);
extern void openblas_set_num_threads(int);

/* OpenBLAS's thread count is process-wide. rft calls BLAS only with one
   thread (inside its own OpenMP regions, cpu_linalg.c): OpenBLAS threads
   would compete for cores with OpenMP threads that spin while they wait. */
static int cpu_blas_nthreads = -1;
void cpu_blas_threads(int n) {
    if (n != cpu_blas_nthreads) {
        openblas_set_num_threads(n);
        cpu_blas_nthreads = n;
    }
}

void cpu_openblas_setup(int n_threads) {
    (void)n_threads;
    cpu_blas_threads(1);
}

/* OpenBLAS core names whose kernels predate AVX2 */
static const char *const cpu_old_cores[] = {
    "Katmai", "Coppermine", "Northwood", "Prescott", "Banias", "Atom", "Core2", "Penryn", "Dunnington", "Nehalem",
    "Sandybridge", "Opteron", "Opteron(SSE3)", "Opteron_SSE3", "Barcelona", "Bobcat", "Bulldozer", "Piledriver",
    "Steamroller", "Nano", "Generic", "Unknown",
};

const char *cpu_openblas_better_core(const char *detected, int has_avx512, int has_avx2) {
    if (!detected) return NULL;
    int old = 0;
    for (size_t i = 0; i < sizeof cpu_old_cores / sizeof cpu_old_cores[0]; i++)
        if (!strcasecmp(detected, cpu_old_cores[i])) old = 1;
    if (!old) return NULL;
    if (has_avx512) return "SkylakeX";
    if (has_avx2) return "Haswell";
    return NULL;
}

static void cpu_features(int *avx512, int *avx2) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    *avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512vl");
    *avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    *avx512 = *avx2 = 0;
#endif
}

static const char *cpu_better_here(const char **detected) {
    int avx512, avx2;
    cpu_features(&avx512, &avx2);
    *detected = openblas_get_corename();
    return cpu_openblas_better_core(*detected, avx512, avx2);
}

int cpu_openblas_reexec(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("RFT_OPENBLAS_FIXED")) return 0;
    const char *detected, *better = cpu_better_here(&detected);
    const char *pretend = getenv("RFT_OPENBLAS_TEST_DETECTED"); /* tests: act as if OpenBLAS detected this */
    if (pretend && *pretend) {
        int avx512, avx2;
        cpu_features(&avx512, &avx2);
        detected = pretend;
        better = cpu_openblas_better_core(detected, avx512, avx2);
    }
    if (!better) return 0;
    if (setenv("RFT_OPENBLAS_FIXED", detected, 1) != 0 || setenv("OPENBLAS_CORETYPE", better, 1) != 0) return -1;
    fflush(NULL); /* whatever the caller printed must not be lost by exec */
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: go on as before */
    unsetenv("RFT_OPENBLAS_FIXED");
    return -1;
}

const char *cpu_openblas_note(void) {
    static char note[256];
    const char *set = getenv("OPENBLAS_CORETYPE"), *fixed = getenv("RFT_OPENBLAS_FIXED");
    const char *detected, *better = cpu_better_here(&detected);
    if (set && fixed) { /* we re-executed with OPENBLAS_CORETYPE */
        if (better)
            snprintf(note, sizeof note,
                     "OpenBLAS ignored OPENBLAS_CORETYPE=%s and still runs %s kernels (slow matmuls); is it built "
                     "with DYNAMIC_ARCH?",
                     set, detected);
        else
            snprintf(note, sizeof note, "OpenBLAS core %s -> %s (set OPENBLAS_CORETYPE to override)", fixed,
                     detected);
        return note;
    }
    if (set || !better) return NULL; /* the user's choice, or nothing to fix */
    snprintf(note, sizeof note,
             "OpenBLAS runs %s kernels on a CPU that has %s: matmuls are several times slower than they could be; "
             "run with OPENBLAS_CORETYPE=%s",
             detected, strcmp(better, "SkylakeX") ? "AVX2" : "AVX-512", better);
    return note;
}
