/* tests/faults/good.c: a well-behaved, thread-safe test grader whose score is
 * a known function of the sample and item, so tests can check every grade:
 * score = output_len + 1000 * item "k" (a number) + nums[1] (if present) +
 * 0.5 when the sample is finished + config "bias". Abstains when item "skip"
 * is true. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rft_grader.h"

typedef struct {
    const rft_host *host;
    double bias;
} good_state;

static int good_create(const char *config_json, const rft_host *host, void **state, char *err, size_t err_cap) {
    good_state *s = calloc(1, sizeof *s);
    if (!s) return RFT_ERROR;
    s->host = host;
    const char *b = strstr(config_json, "\"bias\":");
    if (b) s->bias = atof(b + 7);
    *state = s;
    return RFT_OK;
}

static int good_grade(void *state, const rft_sample *sample, const rft_item *item, double *score, char *err,
                      size_t err_cap) {
    good_state *s = state;
    const char *skip = s->host->item_get(item, "skip", NULL);
    if (skip && !strcmp(skip, "true")) return RFT_ABSTAIN;
    const char *k = s->host->item_get(item, "k", NULL);
    const char *n1 = s->host->item_get(item, "nums[1]", NULL);
    size_t len = 0;
    if (!s->host->item_json(item, &len) || len < 2) {
        snprintf(err, err_cap, "item_json failed");
        return RFT_ERROR;
    }
    *score = (double)sample->output_len + (k ? 1000.0 * atof(k) : 0) + (n1 ? atof(n1) : 0) +
             (sample->finished ? 0.5 : 0) + s->bias;
    return RFT_OK;
}

static void good_destroy(void *state) { free(state); }

static const rft_grader api = {RFT_GRADER_ABI_VERSION, "good", RFT_GRADER_THREADSAFE, good_create, good_grade,
                               good_destroy};

RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void) { return &api; }
