/* trainer/grader.h: grading as the trainer sees it: a configured grader
 * (grader_spec), the outcome of one grade (grade_result), and the runner that
 * grades a batch of samples with every grader, in worker processes
 * (isolation: process, the default) or in-process (isolation: inline). */
#ifndef RFT_GRADER_MAIN_H
#define RFT_GRADER_MAIN_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include "rft_grader.h"

enum { GRADE_OK = 0, GRADE_ABSTAIN = 1, GRADE_ERROR = 2 };

/* why a grade is an error (grade_kind_name gives the word used in logs) */
enum {
    GRADE_KIND_NONE = 0,
    GRADE_KIND_ERROR,    /* grade() returned RFT_ERROR */
    GRADE_KIND_CRASH,    /* killed by a signal (segfault, abort, ...) */
    GRADE_KIND_TIMEOUT,  /* ran past timeout_ms */
    GRADE_KIND_EXIT,     /* called exit()/_exit() inside grade() */
    GRADE_KIND_OOM,      /* ran out of memory (memory_mb) */
    GRADE_KIND_PROTOCOL, /* corrupted the worker's reply channel */
    GRADE_KIND_NAN,      /* returned RFT_OK with a NaN or infinite score */
    GRADE_KIND_STATUS,   /* returned a value other than RFT_OK/RFT_ABSTAIN/RFT_ERROR */
    GRADE_KIND_FORK,     /* left a child process running */
    GRADE_KIND_COUNT
};
const char *grade_kind_name(int kind);

typedef struct grade_result {
    double score;  /* valid when status == GRADE_OK */
    int status;    /* GRADE_OK, GRADE_ABSTAIN, GRADE_ERROR */
    int kind;      /* GRADE_KIND_* when status == GRADE_ERROR */
    float seconds; /* wall time of the grade() call (or until the failure was seen) */
    char msg[124]; /* error message (NUL-terminated, may be empty) */
} grade_result;

enum { GRADER_ISOLATION_PROCESS = 0, GRADER_ISOLATION_INLINE = 1 };

#define GRADER_NAME_MAX 64
#define GRADER_PATH_MAX 4096

/* One configured grader (a `graders:` entry). */
typedef struct grader_spec {
    char name[GRADER_NAME_MAX];  /* the YAML key */
    char type[GRADER_NAME_MAX];  /* built-in type, "" for a user plugin */
    char path[GRADER_PATH_MAX];  /* the plugin file (resolved) */
    char *config_json;           /* JSON passed to create(); malloc'd */
    int timeout_ms;              /* per grade() call, process isolation only (default 5000) */
    int memory_mb;               /* per worker address-space budget (default 1024) */
    int isolation;               /* GRADER_ISOLATION_* */
} grader_spec;

#define GRADER_DEFAULT_TIMEOUT_MS 5000
#define GRADER_DEFAULT_MEMORY_MB 1024

/* Finds the plugin of built-in `type` (<dir>/<type>.so) in, in order:
   $RFT_GRADER_PATH (colon-separated), <dir of the executable>/graders,
   <dir of the executable>/../lib/rft/graders, the build tree (RFT_GRADER_DIR).
   -1 with "unknown grader type 'x' (built-in types: ...)" if absent. */
int grader_find_builtin(const char *type, char *path, size_t path_cap, char *err, size_t err_cap);

/* ---- the runner: all configured graders, process-isolated or inline ----
   One grader_runner_grade call at a time per runner (it is not re-entrant).
   Create and call it from one long-lived thread (the main thread): worker
   processes die with the thread that started them (PR_SET_PDEATHSIG), and
   replacements are started from the calling thread. */
typedef struct grader_runner grader_runner;

/* Loads every grader (dlopen, ABI check, create). workers <= 0: one per core.
   Start-up failures name the grader and plugin. */
grader_runner *grader_runner_create(const grader_spec *specs, int n_specs, int workers, char *err, size_t err_cap);

/* Grades n samples (items[i] is the dataset row of samples[i]) with every
   grader: out[i * n_specs + g]. Grader failures are results, not errors; -1
   only for a failure of rft itself (cannot start a worker, out of memory). */
int grader_runner_grade(grader_runner *r, const rft_sample *samples, json_t *const *items, int n, grade_result *out,
                        char *err, size_t err_cap);

/* The pids of the live worker processes (for tests); returns the count. */
int grader_runner_worker_pids(const grader_runner *r, pid_t *pids, int cap);

void grader_runner_free(grader_runner *r);

#endif
