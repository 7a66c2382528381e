/* kernels/cpu/cpu_setup.c: OpenBLAS thread count, and the core-type trap of
 * DESIGN.md's platform notes: Debian's DYNAMIC_ARCH OpenBLAS may pick
 * "Prescott" kernels on VMs whose CPUID hides AVX-512/AVX2 support from its
 * detection. OPENBLAS_CORETYPE is read when the library loads, so the fix has
 * to happen before that: rft's main() re-executes itself once with the right
 * value (cpu_openblas_reexec). A core type the user set is never overridden. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

extern char *openblas_get_corename(void);
extern void openblas_set_num_threads(int);

void cpu_openblas_setup(int n_threads) { openblas_set_num_threads(n_threads); }
