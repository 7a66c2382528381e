/* tests/check.h: the failure counter and CHECK(cond, fmt, ...) macro shared
 * by the tests: a failed check prints "FAIL file:line: message" to stderr
 * and counts; main() returns fails ? 1 : 0. */
#ifndef RFT_TESTS_CHECK_H
#define RFT_TESTS_CHECK_H

#include <stdio.h>

static int fails = 0;
#define CHECK(c, ...)                                                   \
    do {                                                                \
        if (!(c)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);        \
            fprintf(stderr, __VA_ARGS__);                               \
            fprintf(stderr, "\n");                                      \
            fails++;                                                    \
        }                                                               \
    } while (0)

#endif
