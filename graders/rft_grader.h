/* rft_grader.h: the rft grader plugin ABI, version 1. This header is the whole
 * contract between rft and a grader: a plugin is built from it alone (no link
 * against rft) and exports one symbol, rft_grader_v1.
 *
 *   cc -shared -fPIC $(pkg-config --cflags rft-grader) mine.c -o libmine.so
 *
 * Life cycle (per process that loads the plugin; with process isolation each
 * worker loads it once):
 *   1. rft dlopen()s the plugin and calls rft_grader_v1().
 *   2. It checks abi_version == RFT_GRADER_ABI_VERSION.
 *   3. create() once per configured grader with its YAML `config:` as JSON.
 *   4. grade() once per sampled completion (concurrently on one state only if
 *      flags has RFT_GRADER_THREADSAFE).
 *   5. destroy() at shutdown.
 */
#ifndef RFT_GRADER_H
#define RFT_GRADER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RFT_GRADER_ABI_VERSION 1

/* Return codes of create() and grade(). */
enum {
    RFT_OK = 0,       /* *score holds a finite value */
    RFT_ABSTAIN = 1,  /* the grader does not apply to this sample: masked out, not a zero */
    RFT_ERROR = -1    /* failure; a message is in err (NUL-terminated, at most err_cap bytes) */
};

/* flags */
#define RFT_GRADER_THREADSAFE 1u /* grade() may run concurrently on one state */

/* One dataset row (a JSON object), opaque to plugins: read it through the host. */
typedef struct rft_item rft_item;

/* Log levels for rft_host.log */
enum { RFT_LOG_DEBUG = 0, RFT_LOG_INFO = 1, RFT_LOG_WARN = 2, RFT_LOG_ERROR = 3 };

/* What rft offers a plugin. Valid from create() to destroy(). */
typedef struct rft_host {
    uint32_t abi_version; /* RFT_GRADER_ABI_VERSION of the host */
    /* Field of the row by dotted path: "answer", "meta.target", "nums[2]".
       Strings come back unquoted (the raw UTF-8, not JSON-escaped); numbers,
       booleans, null, arrays and objects come back as compact JSON text.
       *len (if len != NULL) receives the length in bytes; the text is also
       NUL-terminated. NULL if the path is absent. Valid until grade() returns. */
    const char *(*item_get)(const rft_item *item, const char *path, size_t *len);
    /* The whole row as compact JSON. Valid until grade() returns. */
    const char *(*item_json)(const rft_item *item, size_t *len);
    /* A message for rft's log, tagged with the grader's name. */
    void (*log)(const struct rft_host *host, int level, const char *msg);
} rft_host;

/* One sampled completion. */
typedef struct rft_sample {
    const char *output_text; /* UTF-8, NUL-terminated */
    size_t output_len;       /* bytes, excluding the NUL */
    const int32_t *tokens;   /* completion token ids (may be NULL in `rft grade` without a model) */
    size_t n_tokens;
    int finished;            /* 1 stopped by a stop token/string, 0 cut at max_new_tokens */
} rft_sample;

typedef struct rft_grader {
    uint32_t abi_version; /* must be RFT_GRADER_ABI_VERSION */
    const char *name;     /* short name for logs, e.g. "countdown" */
    uint32_t flags;       /* RFT_GRADER_THREADSAFE or 0 */
    /* config_json: the grader's `config:` mapping from the YAML, as JSON
       ("{}" when absent). Store what you need in *state. Return RFT_OK, or
       RFT_ERROR with a message in err: rft then stops at start-up naming the
       plugin. */
    int (*create)(const char *config_json, const rft_host *host, void **state, char *err, size_t err_cap);
    /* Grade one sample of one item. Return RFT_OK with a finite *score
       (usually in [0, 1]; any finite value is allowed), RFT_ABSTAIN, or
       RFT_ERROR with a message in err. NaN/inf scores and other return values
       are counted as errors of this grader. */
    int (*grade)(void *state, const rft_sample *sample, const rft_item *item, double *score, char *err,
                 size_t err_cap);
    /* Free the state. May be NULL. */
    void (*destroy)(void *state);
} rft_grader;

/* The exported entry point. Define it with RFT_GRADER_EXPORT so it stays
   visible under -fvisibility=hidden. */
#if defined(__GNUC__)
#define RFT_GRADER_EXPORT __attribute__((visibility("default")))
#else
#define RFT_GRADER_EXPORT
#endif
RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void);

#ifdef __cplusplus
}
#endif
#endif
