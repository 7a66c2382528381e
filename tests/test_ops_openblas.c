/* tests/test_ops_openblas.c: the OpenBLAS core-type fix end to end. The
 * process pretends OpenBLAS detected "Prescott" (RFT_OPENBLAS_TEST_DETECTED),
 * calls cpu_openblas_reexec, and the re-executed copy checks that OpenBLAS
 * loaded the forced core, that the info note names both cores, and that a core
 * type the user set is left alone. Skips (77) on CPUs without AVX2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cpu/cpu_setup.h"

extern char *openblas_get_corename(void);

static int fails;
static void check(const char *what, int ok) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) fails++;
}

int main(int argc, char **argv) {
    (void)argc;
    if (!getenv("RFT_TEST_OPENBLAS_CHILD")) {
        /* a user-set core type is never overridden */
        setenv("OPENBLAS_CORETYPE", "Haswell", 1);
        setenv("RFT_OPENBLAS_TEST_DETECTED", "Prescott", 1);
        unsetenv("RFT_OPENBLAS_FIXED");
        check("user-set OPENBLAS_CORETYPE: no re-exec", cpu_openblas_reexec(argv) == 0);
        check("user-set OPENBLAS_CORETYPE: no note", cpu_openblas_note() == NULL);
        if (fails) return 1;
        unsetenv("OPENBLAS_CORETYPE");
        setenv("RFT_TEST_OPENBLAS_CHILD", "1", 1);
        int r = cpu_openblas_reexec(argv); /* does not return when it re-executes */
        if (r == 0) {
            printf("skip: this CPU has no AVX2/AVX-512, nothing to fix\n");
            return 77;
        }
        check("re-exec of /proc/self/exe", 0);
        return 1;
    }
    const char *ct = getenv("OPENBLAS_CORETYPE"), *fixed = getenv("RFT_OPENBLAS_FIXED");
    const char *core = openblas_get_corename();
    printf("child: OPENBLAS_CORETYPE=%s RFT_OPENBLAS_FIXED=%s corename=%s\n", ct ? ct : "(unset)",
           fixed ? fixed : "(unset)", core ? core : "(null)");
    check("re-executed with OPENBLAS_CORETYPE set to SkylakeX or Haswell",
          ct && (!strcmp(ct, "SkylakeX") || !strcmp(ct, "Haswell")));
    check("RFT_OPENBLAS_FIXED names the detected core", fixed && !strcmp(fixed, "Prescott"));
    check("OpenBLAS loaded the forced core", ct && core && !strcasecmp(core, ct));
    const char *note = cpu_openblas_note();
    printf("note: %s\n", note ? note : "(null)");
    char want[64];
    snprintf(want, sizeof want, "Prescott -> %s", ct ? ct : "?");
    check("note says what was changed", note && strstr(note, want) && strstr(note, "OPENBLAS_CORETYPE"));
    check("no second re-exec", cpu_openblas_reexec(argv) == 0);
    return fails ? 1 : 0;
}
