/* trainer/grader_load.c: plugin loading (dlopen, rft_grader_v1, ABI check),
 * create(), the checked grade() call, and the search for built-in grader
 * plugins. */
#define _GNU_SOURCE
#include "grader_load.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#ifndef RFT_GRADER_DIR
#define RFT_GRADER_DIR ""
#endif

const char *grade_kind_name(int kind) {
    static const char *names[GRADE_KIND_COUNT] = {"none",  "error",    "crash", "timeout", "exit",
                                                  "oom",   "protocol", "nan",   "status",  "fork"};
    return kind >= 0 && kind < GRADE_KIND_COUNT ? names[kind] : "unknown";
}

void grade_result_error(grade_result *r, int kind, const char *fmt, ...) {
    r->status = GRADE_ERROR;
    r->kind = kind;
    r->score = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
}

/* ---- built-in plugin search ---- */
static int exe_dir(char *dir, size_t cap) {
    char buf[GRADER_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash) return -1;
    *slash = 0;
    snprintf(dir, cap, "%s", buf);
    return 0;
}

/* the candidate directories, NUL-separated in buf; returns the count */
static int search_dirs(char dirs[][GRADER_PATH_MAX], int cap) {
    int n = 0;
    const char *env = getenv("RFT_GRADER_PATH");
    if (env && *env) {
        const char *p = env;
        while (*p && n < cap) {
            size_t len = strcspn(p, ":");
            if (len && len < GRADER_PATH_MAX) {
                memcpy(dirs[n], p, len);
                dirs[n++][len] = 0;
            }
            p += len;
            if (*p == ':') p++;
        }
    }
    char ed[GRADER_PATH_MAX];
    if (exe_dir(ed, sizeof ed) == 0) {
        if (n < cap) snprintf(dirs[n++], GRADER_PATH_MAX, "%.4000s/graders", ed);
        if (n < cap) snprintf(dirs[n++], GRADER_PATH_MAX, "%.4000s/../lib/rft/graders", ed);
    }
    if (n < cap && RFT_GRADER_DIR[0]) snprintf(dirs[n++], GRADER_PATH_MAX, "%s", RFT_GRADER_DIR);
    return n;
}

static int valid_type_name(const char *t) {
    if (!*t) return 0;
    for (const char *p = t; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') || *p == '_'))
            return 0;
    return 1;
}

int grader_find_builtin(const char *type, char *path, size_t path_cap, char *err, size_t err_cap) {
    char dirs[8][GRADER_PATH_MAX];
    int nd = search_dirs(dirs, 8);
    if (valid_type_name(type)) {
        for (int i = 0; i < nd; i++) {
            char cand[GRADER_PATH_MAX + 80];
            snprintf(cand, sizeof cand, "%.4000s/%.60s.so", dirs[i], type);
            struct stat st;
            if (stat(cand, &st) == 0 && S_ISREG(st.st_mode)) {
                char *real = realpath(cand, NULL);
                snprintf(path, path_cap, "%s", real ? real : cand);
                free(real);
                return 0;
            }
        }
    }
    /* not found: list the types we can see (sorted), from the first directory that has any */
    char names[64][64];
    int nn = 0;
    for (int i = 0; i < nd && nn == 0; i++) {
        DIR *d = opendir(dirs[i]);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)) && nn < 64) {
            size_t len = strlen(e->d_name);
            if (len < 4 || len - 3 >= 64 || strcmp(e->d_name + len - 3, ".so")) continue;
            snprintf(names[nn++], 64, "%.*s", (int)(len - 3), e->d_name);
        }
        closedir(d);
    }
    qsort(names, nn, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    char list[512] = "";
    for (int i = 0; i < nn; i++)
        if (strlen(list) + strlen(names[i]) + 2 < sizeof list) strcat(strcat(list, " "), names[i]);
    if (list[0])
        return errf(err, err_cap, "unknown grader type '%s' (built-in types:%s)", type, list);
    return errf(err, err_cap,
                "unknown grader type '%s' (no built-in grader plugins found: set RFT_GRADER_PATH to the directory "
                "holding string_check.so etc.)",
                type);
}

/* ---- loading ---- */
int grader_instance_open(grader_instance *g, const char *name, const char *path, char *err, size_t err_cap) {
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    snprintf(g->path, sizeof g->path, "%s", path);
    grader_host_init(&g->host, name);
    dlerror();
    g->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!g->dl) {
        const char *e = dlerror();
        return errf(err, err_cap, "grader '%s': cannot load plugin %s: %s", name, path, e ? e : "dlopen failed");
    }
    dlerror();
    const rft_grader *(*entry)(void) = (const rft_grader *(*)(void))dlsym(g->dl, "rft_grader_v1");
    if (!entry) {
        dlclose(g->dl);
        g->dl = NULL;
        return errf(err, err_cap,
                    "grader '%s': plugin %s does not export rft_grader_v1 (build it from rft_grader.h and define "
                    "the entry point with RFT_GRADER_EXPORT)",
                    name, path);
    }
    const rft_grader *api = entry();
    if (!api) {
        dlclose(g->dl);
        g->dl = NULL;
        return errf(err, err_cap, "grader '%s': plugin %s: rft_grader_v1() returned NULL", name, path);
    }
    if (api->abi_version != RFT_GRADER_ABI_VERSION) {
        unsigned v = api->abi_version;
        dlclose(g->dl);
        g->dl = NULL;
        return errf(err, err_cap, "grader '%s': plugin %s has ABI version %u, this rft supports version %d", name, path,
                    v, RFT_GRADER_ABI_VERSION);
    }
    if (!api->create || !api->grade) {
        dlclose(g->dl);
        g->dl = NULL;
        return errf(err, err_cap, "grader '%s': plugin %s: rft_grader has a NULL %s function", name, path,
                    !api->create ? "create" : "grade");
    }
    g->api = api;
    return 0;
}

int grader_instance_create(grader_instance *g, const char *config_json, char *err, size_t err_cap) {
    char perr[512] = "";
    void *state = NULL;
    int st = g->api->create(config_json ? config_json : "{}", &g->host.host, &state, perr, sizeof perr);
    perr[sizeof perr - 1] = 0;
    if (st != RFT_OK)
        return errf(err, err_cap, "grader '%s': plugin %s: create failed: %s", g->name, g->path,
                    perr[0] ? perr : "(no message)");
    g->state = state;
    g->created = 1;
    return 0;
}

void grader_instance_grade(grader_instance *g, const rft_sample *s, rft_item *item, grade_result *r) {
    char perr[256];
    perr[0] = 0;
    double score = NAN;
    grader_item_reset(item);
    double t0 = now_seconds();
    int st = g->api->grade(g->state, s, item, &score, perr, sizeof perr);
    r->seconds = (float)(now_seconds() - t0);
    perr[sizeof perr - 1] = 0;
    r->msg[0] = 0;
    r->kind = GRADE_KIND_NONE;
    switch (st) {
    case RFT_OK:
        if (!isfinite(score)) {
            grade_result_error(r, GRADE_KIND_NAN, "score is %s", isnan(score) ? "NaN" : "infinite");
        } else {
            r->status = GRADE_OK;
            r->score = score;
        }
        break;
    case RFT_ABSTAIN:
        r->status = GRADE_ABSTAIN;
        r->score = 0;
        break;
    case RFT_ERROR: grade_result_error(r, GRADE_KIND_ERROR, "%s", perr[0] ? perr : "(no message)"); break;
    default:
        grade_result_error(r, GRADE_KIND_STATUS, "grade() returned %d (not RFT_OK, RFT_ABSTAIN or RFT_ERROR)", st);
    }
}

void grader_instance_close(grader_instance *g) {
    if (g->created && g->api->destroy) g->api->destroy(g->state);
    g->created = 0;
    g->state = NULL;
    if (g->dl) dlclose(g->dl);
    g->dl = NULL;
    g->api = NULL;
}
