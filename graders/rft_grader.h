/* rft_grader.h: the rft grader plugin ABI, version 1.
 *
 * This header is the whole contract between rft and a grader. A grader is a
 * shared object built from this header alone (no link against rft, no other
 * rft file) that exports one symbol, rft_grader_v1. rft loads it with
 * dlopen(), so any language that can produce a C-ABI shared object works.
 *
 * ---------------------------------------------------------------------------
 * A complete grader (score 1 when the completion contains the item's answer):
 *
 *   #include <stdio.h>
 *   #include <string.h>
 *   #include "rft_grader.h"
 *
 *   static int create(const char *config_json, const rft_host *host,
 *                     void **state, char *err, size_t err_cap) {
 *       *state = (void *)host;          // keep what grade() needs
 *       return RFT_OK;
 *   }
 *   static int grade(void *state, const rft_sample *s, const rft_item *item,
 *                    double *score, char *err, size_t err_cap) {
 *       const rft_host *host = state;
 *       const char *answer = host->item_get(item, "answer", NULL);
 *       if (!answer) { snprintf(err, err_cap, "item has no answer"); return RFT_ERROR; }
 *       *score = strstr(s->output_text, answer) ? 1.0 : 0.0;
 *       return RFT_OK;
 *   }
 *   static const rft_grader g = {RFT_GRADER_ABI_VERSION, "contains",
 *                                RFT_GRADER_THREADSAFE, create, grade, NULL};
 *   RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void) { return &g; }
 *
 * Build it:
 *   cc -O2 -shared -fPIC $(pkg-config --cflags rft-grader) mine.c -o libmine.so
 * or with CMake:
 *   find_package(rft REQUIRED)
 *   add_library(mine MODULE mine.c)
 *   target_link_libraries(mine PRIVATE rft::grader)    # include path only
 * Use it (the YAML config):
 *   graders:
 *     mine:
 *       plugin: ./libmine.so          # relative to the config file, then the cwd
 *       config: {tolerance: 0.01}     # handed to create() as JSON
 *       timeout_ms: 2000              # per grade() call (default 5000)
 *       memory_mb: 512                # per worker process (default 1024)
 *       isolation: process            # process (default) or inline
 * Test it without a model: `rft grade CONFIG --samples cases.jsonl`, or the
 * stand-alone harness graders/examples/grader_test.c.
 * ---------------------------------------------------------------------------
 *
 * Life cycle. In every process that runs the grader:
 *   1. rft dlopen()s the plugin (RTLD_NOW | RTLD_LOCAL) and calls
 *      rft_grader_v1(), which must return a pointer to a static rft_grader.
 *   2. rft checks abi_version == RFT_GRADER_ABI_VERSION; a mismatch, a
 *      missing symbol or a NULL create/grade is a start-up error naming the
 *      plugin (the run does not start).
 *   3. create() once per configured grader that uses the plugin (the same
 *      .so may be configured several times with different configs; each gets
 *      its own state). A failing create() is a start-up error naming the
 *      grader and carrying your message.
 *   4. grade() once per sampled completion.
 *   5. destroy() at shutdown (not called if the process is killed).
 *
 * Processes. With `isolation: process` (the default) graders run in a pool of
 * worker processes (one per core unless `reward.workers` says otherwise),
 * each of which loads the plugin and calls create() itself, so create() runs
 * once per worker, and again in every replacement worker. With
 * `isolation: inline` the plugin runs inside the rft process: faster, but a
 * crash takes rft down.
 *
 * Threads. Within one worker process grade() is never called concurrently.
 * Inline, grade() is called from several threads at once on the same state
 * only if `flags` has RFT_GRADER_THREADSAFE; otherwise calls on one state are
 * serialised (different graders may still run in parallel). create() and
 * destroy() are never called concurrently with anything on the same state.
 *
 * What isolation protects against. In a worker, each of these costs only the
 * grade in progress, which becomes an error of this grader with a kind (shown
 * by `rft grade` and counted in grader_errors/<name>); the worker is replaced
 * and training goes on:
 *   crash     segfault, abort, any fatal signal
 *   exit      exit()/_exit() inside grade()
 *   timeout   grade() running longer than timeout_ms (the worker is killed)
 *   oom       allocation past memory_mb (the worker's address-space limit,
 *             counted on top of what the worker uses after create())
 *   protocol  bytes written onto rft's private reply channel
 *   fork      a child process started during grade() still running when it
 *             returns (killed; helper processes started in create() may
 *             live on)
 * and in every mode:
 *   nan       RFT_OK with a NaN or infinite score
 *   status    a return value other than RFT_OK, RFT_ABSTAIN, RFT_ERROR
 *   error     RFT_ERROR (your message is kept)
 * Writing to stdout/stderr is harmless: in a worker both go to rft's stderr
 * (never to rft's stdout), and closing fds 0-2 does not disturb rft.
 *
 * Rewards. Scores are usually in [0, 1]; any finite value is allowed. The
 * reward of a sample combines the graders' scores (reward.weights or
 * reward.formula in the YAML). RFT_ABSTAIN and errors mask the sample out of
 * the policy gradient (they are not zeros), unless `reward.on_error: zero`
 * (errors only). Past `reward.max_error_rate` errors in a step, the run stops
 * with a message naming the grader.
 *
 * Versioning. The entry point carries the version in its name. A future ABI
 * adds a new symbol (rft_grader_v2) and may keep loading v1 plugins; the
 * structs below never change within version 1.
 */
#ifndef RFT_GRADER_H
#define RFT_GRADER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this header; put it in rft_grader.abi_version. */
#define RFT_GRADER_ABI_VERSION 1

/* Return codes of create() and grade(). */
enum {
    RFT_OK = 0,       /* success; from grade(): *score holds a finite value */
    RFT_ABSTAIN = 1,  /* grade() only: the grader does not apply to this sample (e.g. a
                         format check on an item without that format). The sample is
                         masked out of the reward, not scored 0. */
    RFT_ERROR = -1    /* failure; write a message into err (NUL-terminated, at most
                         err_cap bytes including the NUL; snprintf does this) */
};

/* rft_grader.flags */
#define RFT_GRADER_THREADSAFE 1u /* grade() may run concurrently on one state (inline mode) */

/* One dataset row (a JSON object from the JSONL dataset: `prompt` or
   `messages` plus any other fields). Opaque: read it through rft_host. The
   pointer is valid only during the grade() call that received it. */
typedef struct rft_item rft_item;

/* Log levels for rft_host.log. */
enum { RFT_LOG_DEBUG = 0, RFT_LOG_INFO = 1, RFT_LOG_WARN = 2, RFT_LOG_ERROR = 3 };

/* What rft offers a plugin. The pointer given to create() stays valid until
   destroy() returns: keep it in your state. All functions may be called from
   any thread that rft calls grade() on. */
typedef struct rft_host {
    uint32_t abi_version; /* RFT_GRADER_ABI_VERSION of the host */
    /* A field of the row by path: "answer", "meta.target", "nums[2]" (also
       "nums.2"; negative indices count from the end: "nums[-1]"). Keys that
       contain '.' or '[' cannot be addressed.
       Strings come back unquoted (the raw UTF-8, not JSON-escaped). Numbers,
       booleans, null, arrays and objects come back as compact JSON text
       (numbers in their shortest round-trip form: 0.1 -> "0.1", 3.0 ->
       "3.0", 7 -> "7"; true -> "true"; [1,2] -> "[1,2]").
       Returns NULL if the path is absent or malformed. *len (if len != NULL)
       receives the length in bytes; the text is also NUL-terminated (a
       string containing NUL bytes is cut short by strlen but not by *len).
       The text is owned by rft and valid until the current grade() returns;
       do not free it. Call only inside grade() with the item it received. */
    const char *(*item_get)(const rft_item *item, const char *path, size_t *len);
    /* The whole row as compact JSON (same rules as item_get, key order as in
       the dataset). Valid until grade() returns. */
    const char *(*item_json)(const rft_item *item, size_t *len);
    /* A message for rft's log (stderr), tagged with the grader's name. Debug
       messages are shown only when RFT_GRADER_DEBUG is set in the
       environment. Usable from create() on. */
    void (*log)(const struct rft_host *host, int level, const char *msg);
} rft_host;

/* One sampled completion. All pointers are valid only during grade(). */
typedef struct rft_sample {
    const char *output_text; /* the completion, UTF-8, NUL-terminated (without the prompt) */
    size_t output_len;       /* bytes, excluding the NUL */
    const int32_t *tokens;   /* completion token ids; NULL (n_tokens 0) in `rft grade`
                                unless the samples file gives "tokens" */
    size_t n_tokens;
    int finished;            /* 1 stopped by a stop token/string, 0 cut at max_new_tokens */
} rft_sample;

/* The plugin's description; return a pointer to a static instance from
   rft_grader_v1(). */
typedef struct rft_grader {
    uint32_t abi_version; /* must be RFT_GRADER_ABI_VERSION */
    const char *name;     /* short name for logs, e.g. "countdown" */
    uint32_t flags;       /* RFT_GRADER_THREADSAFE or 0 */
    /* Make the state of one configured grader.
       config_json: the grader's `config:` mapping from the YAML as a JSON
       object ("{}" when absent). YAML scalars convert as: unquoted integers
       and decimals -> numbers; true/false -> booleans; null, ~ or empty ->
       null; everything else, and every quoted or block scalar, -> strings;
       sequences -> arrays; mappings -> objects. (Built-in graders receive
       their whole YAML mapping minus rft's own keys: type, plugin, config,
       timeout_ms, memory_mb, isolation.) The text is valid only during the
       call: copy what you keep.
       host: see rft_host; valid until destroy().
       Store your state in *state (may stay NULL). Return RFT_OK, or
       RFT_ERROR with a message in err: rft then refuses to start, naming the
       grader and the plugin. Validate the config here, not in grade(). */
    int (*create)(const char *config_json, const rft_host *host, void **state, char *err, size_t err_cap);
    /* Grade one sample of one item. Return RFT_OK with a finite *score,
       RFT_ABSTAIN, or RFT_ERROR with a message in err (err_cap >= 128).
       NaN/inf scores and other return values are counted as errors of this
       grader. Keep it fast and side-effect free: it may be re-run on another
       worker if a worker dies, and it runs under timeout_ms. */
    int (*grade)(void *state, const rft_sample *sample, const rft_item *item, double *score, char *err,
                 size_t err_cap);
    /* Free the state. May be NULL. */
    void (*destroy)(void *state);
} rft_grader;

/* The exported entry point. Define it with RFT_GRADER_EXPORT so it stays
   visible when building with -fvisibility=hidden. It is called once per
   process after dlopen() and must not fail or have side effects. */
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
