/* tests/faults/no_symbol.c: a shared object without rft_grader_v1 (rft must refuse it). */
#include "rft_grader.h"

RFT_GRADER_EXPORT int not_a_grader(void) { return 42; }
