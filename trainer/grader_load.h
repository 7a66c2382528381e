/* trainer/grader_load.h: loading a grader plugin (dlopen, rft_grader_v1, ABI
 * check), creating its state, and calling grade() with the host's checks
 * (status range, finite score). Used in-process and inside worker processes. */
#ifndef RFT_GRADER_LOAD_H
#define RFT_GRADER_LOAD_H

#include "grader.h"
#include "grader_item.h"

typedef struct grader_instance {
    char name[GRADER_NAME_MAX];
    char path[GRADER_PATH_MAX];
    void *dl;                 /* dlopen handle */
    const rft_grader *api;
    grader_host host;
    void *state;              /* from create() */
    int created;
} grader_instance;

/* dlopen + symbol + ABI check; no plugin code beyond rft_grader_v1() runs. */
int grader_instance_open(grader_instance *g, const char *name, const char *path, char *err, size_t err_cap);
/* create() with config_json. */
int grader_instance_create(grader_instance *g, const char *config_json, char *err, size_t err_cap);
/* One grade() call with the host's checks; item is reset first. */
void grader_instance_grade(grader_instance *g, const rft_sample *s, rft_item *item, grade_result *r);
/* destroy() (if created) and dlclose. */
void grader_instance_close(grader_instance *g);

/* Fills r as an error of `kind` with a printf message. */
void grade_result_error(grade_result *r, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
