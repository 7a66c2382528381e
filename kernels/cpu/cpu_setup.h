/* kernels/cpu/cpu_setup.h: the OpenBLAS core-type fix of DESIGN.md's platform
 * notes. Debian's DYNAMIC_ARCH OpenBLAS can detect an old core ("Prescott")
 * on VMs whose CPU has AVX-512; OPENBLAS_CORETYPE is read only when the
 * library loads, so main() calls cpu_openblas_reexec(argv) first thing. */
#ifndef RFT_CPU_SETUP_H
#define RFT_CPU_SETUP_H

/* The core type to force when OpenBLAS detected `detected` on a CPU with these
 * features: "SkylakeX" (AVX-512 F/BW/VL) or "Haswell" (AVX2 + FMA) when
 * `detected` is a known pre-AVX2 core; NULL when nothing should change
 * (including unknown names). Pure function. */
const char *cpu_openblas_better_core(const char *detected, int has_avx512, int has_avx2);

/* If OPENBLAS_CORETYPE is unset and OpenBLAS runs older kernels than the CPU
 * supports: sets OPENBLAS_CORETYPE and RFT_OPENBLAS_FIXED=<detected core> and
 * re-executes /proc/self/exe with argv (does not return on success). Returns 0
 * when nothing had to be done, -1 when the re-exec failed (the program goes on
 * with the slow kernels; cpu_openblas_note says so). Prints nothing. Call
 * before any thread is started. For tests, RFT_OPENBLAS_TEST_DETECTED=<name>
 * makes it act as if OpenBLAS had detected <name>. */
int cpu_openblas_reexec(char **argv);

/* One info line for the user about the core type, or NULL when there is
 * nothing to say, e.g. "OpenBLAS core Prescott -> SkylakeX (set
 * OPENBLAS_CORETYPE to override)". */
const char *cpu_openblas_note(void);

/* 1 when matmul_bf16 runs a vector kernel (AVX512_BF16, or AVX2 + FMA); 0
 * when it falls back to a portable loop (~5x slower than the fp32 decode
 * path: sampling.dtype bf16 does not pay on such a CPU). */
int cpu_has_bf16_kernel(void);

#endif
