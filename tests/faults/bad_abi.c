/* tests/faults/bad_abi.c: a plugin that claims ABI version 2 (rft must refuse it). */
#include "rft_grader.h"

static int c(const char *j, const rft_host *h, void **s, char *e, size_t n) { return RFT_OK; }
static int g(void *s, const rft_sample *x, const rft_item *i, double *sc, char *e, size_t n) { return RFT_OK; }
static const rft_grader api = {2, "bad_abi", 0, c, g, 0};
RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void) { return &api; }
