/* trainer/grader_pool.c: the worker-process pool behind isolation: process.
 * Workers are started with posix_spawn of rft-grader-worker (or, if it
 * cannot be found, of this same program) with RFT_GRADER_WORKER set (see
 * grader_worker.c), each in its own process group, talking over one AF_UNIX
 * stream socket placed at a fixed high fd,
 * with stdin from /dev/null and stdout sent to rft's stderr, so nothing a
 * plugin prints or closes reaches the protocol. The parent keeps up to
 * `window` requests in flight per worker, answers arrive strictly in order,
 * and the oldest unanswered (sample, grader) is the one charged when the
 * worker dies, hangs past its grader's timeout_ms, or sends garbage. */
#define _GNU_SOURCE
#include "grader_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "grader_load.h"
#include "grader_proto.h"
#include "util.h"

extern char **environ;

#define POOL_WINDOW_MAX 32
#define POOL_INIT_TIMEOUT_S 60.0
#define POOL_MSG_MAX 4096

typedef struct pool_worker {
    pid_t pid;
    int fd;
    int pidfd; /* readable when the worker exits (-1 without pidfd_open) */
    char *out; /* unsent request bytes */
    size_t out_len, out_off, out_cap;
    char *in;  /* received, unparsed reply bytes */
    size_t in_len, in_cap;
    int q[POOL_WINDOW_MAX]; /* samples in flight, oldest first */
    int q_head, q_len;
    double progress; /* when the oldest in-flight grade started (as far as we know) */
} pool_worker;

struct grader_pool {
    int n;            /* graders */
    int *idx;         /* [n] spec index */
    char **name, **path, **config;
    int *timeout_ms;  /* [n] */
    uint32_t memory_mb;
    int n_workers;
    pool_worker *w;
    char **envp;
    char worker_path[GRADER_PATH_MAX]; /* the program exec'd as a worker */
    long restarts;
    /* the batch being graded */
    const rft_sample *samples;
    json_t *const *items;
    grade_result *out;
    int stride;
    int *next_g;      /* [n_samples] first pool grader not yet answered */
    char **item_json; /* [n_samples] serialized rows, made on first send */
    size_t *item_len;
    int *pending;     /* stack of samples waiting for a worker */
    int n_pending;
    int done;
};

/* ---- helpers ---- */
static int buf_put(char **buf, size_t *len, size_t *cap, const void *s, size_t n) {
    if (n == 0) return 0;
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < *len + n) c *= 2;
        char *q = realloc(*buf, c);
        if (!q) return -1;
        *buf = q, *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    return 0;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* waits up to grace seconds for the worker to exit by itself, then kills its
   whole process group; returns the wait status */
static int worker_reap(pool_worker *w, double grace) {
    int st = 0;
    if (w->fd >= 0) close(w->fd);
    if (w->pidfd >= 0) close(w->pidfd);
    w->fd = w->pidfd = -1;
    if (w->pid <= 0) return 0;
    double t0 = now_seconds();
    pid_t r;
    for (;;) {
        r = waitpid(w->pid, &st, WNOHANG);
        if (r == w->pid || (r < 0 && errno != EINTR)) break;
        if (now_seconds() - t0 >= grace) {
            kill(-w->pid, SIGKILL);
            kill(w->pid, SIGKILL);
            while ((r = waitpid(w->pid, &st, 0)) < 0 && errno == EINTR) {
            }
            break;
        }
        sleep_ms(1);
    }
    kill(-w->pid, SIGKILL); /* anything left in its group */
    w->pid = -1;
    return st;
}

static int build_env(grader_pool *p, char *err, size_t cap) {
    size_t n = 0;
    while (environ && environ[n]) n++;
    p->envp = calloc(n + 4, sizeof *p->envp);
    if (!p->envp) return errf(err, cap, "out of memory");
    size_t k = 0;
    int have_blas = 0, have_omp = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strncmp(environ[i], GP_WORKER_ENV "=", strlen(GP_WORKER_ENV) + 1)) continue;
        if (!strncmp(environ[i], "OPENBLAS_NUM_THREADS=", 21)) have_blas = 1;
        if (!strncmp(environ[i], "OMP_NUM_THREADS=", 16)) have_omp = 1;
        p->envp[k++] = environ[i];
    }
    /* fd:parent pid (the worker dies with the thread that started it) */
    static char worker_var[64];
    snprintf(worker_var, sizeof worker_var, "%s=%d:%ld", GP_WORKER_ENV, GP_WORKER_FD, (long)getpid());
    p->envp[k++] = worker_var;
    /* a worker needs no BLAS/OpenMP thread pools */
    if (!have_blas) p->envp[k++] = "OPENBLAS_NUM_THREADS=1";
    if (!have_omp) p->envp[k++] = "OMP_NUM_THREADS=1";
    p->envp[k] = NULL;
    return 0;
}

#ifndef RFT_GRADER_WORKER_BIN
#define RFT_GRADER_WORKER_BIN ""
#endif

/* the worker program: $RFT_GRADER_WORKER_BIN, rft-grader-worker next to this
   program or in ../libexec/rft, the build tree's, else this program itself
   (its grader_worker.c constructor turns it into a worker) */
static void find_worker(grader_pool *p) {
    char cand[4][GRADER_PATH_MAX];
    int n = 0;
    const char *env = getenv("RFT_GRADER_WORKER_BIN");
    if (env && *env) snprintf(cand[n++], GRADER_PATH_MAX, "%s", env);
    char exe[GRADER_PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(cand[n++], GRADER_PATH_MAX, "%.4000s/rft-grader-worker", exe);
            snprintf(cand[n++], GRADER_PATH_MAX, "%.4000s/../libexec/rft/rft-grader-worker", exe);
        }
    }
    if (RFT_GRADER_WORKER_BIN[0]) snprintf(cand[n++], GRADER_PATH_MAX, "%s", RFT_GRADER_WORKER_BIN);
    for (int i = 0; i < n; i++)
        if (access(cand[i], X_OK) == 0) {
            snprintf(p->worker_path, sizeof p->worker_path, "%.4000s", cand[i]);
            return;
        }
    snprintf(p->worker_path, sizeof p->worker_path, "/proc/self/exe");
}

/* fork + exec a worker and send it the init record (does not wait for it) */
static int worker_spawn(grader_pool *p, pool_worker *w, char *err, size_t cap) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return errf(err, cap, "grader pool: socketpair: %s", strerror(errno));
    if (sv[1] == GP_WORKER_FD) { /* dup2 onto itself would keep close-on-exec */
        int t = fcntl(sv[1], F_DUPFD_CLOEXEC, GP_WORKER_FD + 1);
        close(sv[1]);
        sv[1] = t;
    }
    /* posix_spawn (vfork-like in glibc): cheap even when rft holds a large
       model in memory, and no code of ours runs between fork and exec */
    char *argv[] = {"rft-grader-worker", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], GP_WORKER_FD);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, 2, 1); /* a grader's stdout goes to rft's stderr */
    posix_spawnattr_init(&at);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    int sigs[] = {SIGCHLD, SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGALRM, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaddset(&dfl, sigs[i]);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setpgroup(&at, 0); /* its own process group: killed as a whole */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawn(&pid, p->worker_path, &fa, &at, argv, p->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc) {
        close(sv[0]), close(sv[1]);
        return errf(err, cap, "grader pool: cannot start the worker program %s: %s", p->worker_path, strerror(rc));
    }
    setpgid(pid, pid); /* also here: no race with a kill(-pid) */
    close(sv[1]);
    memset(w, 0, sizeof *w);
    w->pid = pid;
    w->fd = sv[0];
#ifdef SYS_pidfd_open
    /* a worker's exit is seen at once even if a child of it keeps the socket open */
    w->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (w->pidfd >= 0) fcntl(w->pidfd, F_SETFD, FD_CLOEXEC);
#else
    w->pidfd = -1;
#endif
    /* init record (blocking send; the worker reads it at start-up) */
    char *buf = NULL;
    size_t len = 0, bcap = 0;
    gp_init ini = {.magic = GP_MAGIC_INIT, .n_graders = (uint32_t)p->n, .memory_mb = p->memory_mb};
    int bad = buf_put(&buf, &len, &bcap, &ini, sizeof ini);
    for (int g = 0; g < p->n && !bad; g++) {
        gp_init_grader ig = {(uint32_t)strlen(p->name[g]), (uint32_t)strlen(p->path[g]),
                             (uint32_t)strlen(p->config[g]), 0};
        bad |= buf_put(&buf, &len, &bcap, &ig, sizeof ig);
        bad |= buf_put(&buf, &len, &bcap, p->name[g], ig.name_len);
        bad |= buf_put(&buf, &len, &bcap, p->path[g], ig.path_len);
        bad |= buf_put(&buf, &len, &bcap, p->config[g], ig.config_len);
    }
    size_t off = 0;
    while (!bad && off < len) {
        ssize_t k = send(w->fd, buf + off, len - off, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break; /* it died; worker_ready reports how */
        off += (size_t)k;
    }
    free(buf);
    if (bad) return errf(err, cap, "out of memory");
    fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) | O_NONBLOCK);
    return 0;
}

static void describe_status(int st, char *buf, size_t cap) {
    if (WIFEXITED(st))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, cap, "ended (status 0x%x)", st);
}

/* reads the init replies: one per grader, OK or the create() error */
static int worker_ready(grader_pool *p, pool_worker *w, char *err, size_t cap) {
    double t0 = now_seconds();
    int g = 0;
    while (g < p->n) {
        while (w->in_len >= sizeof(gp_resp)) {
            gp_resp h;
            memcpy(&h, w->in, sizeof h);
            if (h.magic != GP_MAGIC_RESP || h.req_id != GP_REQ_INIT || h.grader != (uint32_t)g ||
                h.msg_len > POOL_MSG_MAX) {
                worker_reap(w, 0);
                return errf(err, cap, "grader '%s': worker sent a malformed reply during create()", p->name[g]);
            }
            if (w->in_len < sizeof h + h.msg_len) break;
            char msg[POOL_MSG_MAX + 1];
            memcpy(msg, w->in + sizeof h, h.msg_len);
            msg[h.msg_len] = 0;
            memmove(w->in, w->in + sizeof h + h.msg_len, w->in_len - sizeof h - h.msg_len);
            w->in_len -= sizeof h + h.msg_len;
            if (h.status != GRADE_OK) {
                worker_reap(w, 1.0);
                if (h.kind == GRADE_KIND_ERROR) return errf(err, cap, "%s", msg);
                return errf(err, cap, "grader '%s': plugin %s: create() %s", p->name[g], p->path[g], msg);
            }
            g++;
        }
        if (g == p->n) break;
        double left = POOL_INIT_TIMEOUT_S - (now_seconds() - t0);
        if (left <= 0) {
            worker_reap(w, 0);
            return errf(err, cap, "grader '%s': plugin %s: create() did not finish within %.0f s", p->name[g],
                        p->path[g], POOL_INIT_TIMEOUT_S);
        }
        struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno != EINTR) return errf(err, cap, "grader pool: poll: %s", strerror(errno));
        if (pr <= 0) continue;
        char tmp[8192];
        ssize_t k = read(w->fd, tmp, sizeof tmp);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) {
            int st = worker_reap(w, 2.0);
            char how[128];
            describe_status(st, how, sizeof how);
            if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
                return errf(err, cap, "grader pool: cannot start a worker process (exec of %s failed)", p->worker_path);
            return errf(err, cap, "grader '%s': plugin %s: worker process %s while loading or creating it",
                        p->name[g], p->path[g], how);
        }
        if (buf_put(&w->in, &w->in_len, &w->in_cap, tmp, (size_t)k)) return errf(err, cap, "out of memory");
    }
    return 0;
}

static void worker_free_bufs(pool_worker *w) {
    free(w->out), free(w->in);
    w->out = w->in = NULL;
    w->out_len = w->out_off = w->out_cap = w->in_len = w->in_cap = 0;
}

static int worker_restart(grader_pool *p, pool_worker *w, char *err, size_t cap) {
    worker_free_bufs(w);
    p->restarts++;
    if (worker_spawn(p, w, err, cap) || worker_ready(p, w, err, cap)) return -1;
    return 0;
}

grader_pool *grader_pool_create(const grader_spec *specs, const int *idx, int n, int workers, char *err,
                                size_t err_cap) {
    grader_pool *p = xcalloc(1, sizeof *p, err, err_cap);
    if (!p) return NULL;
    if (workers <= 0) workers = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (workers < 1) workers = 1;
    p->n = n;
    p->n_workers = workers;
    p->idx = calloc(n + 1, sizeof *p->idx);
    p->name = calloc(n + 1, sizeof *p->name);
    p->path = calloc(n + 1, sizeof *p->path);
    p->config = calloc(n + 1, sizeof *p->config);
    p->timeout_ms = calloc(n + 1, sizeof *p->timeout_ms);
    p->w = calloc(workers, sizeof *p->w);
    if (!p->idx || !p->name || !p->path || !p->config || !p->timeout_ms || !p->w) goto oom;
    for (int i = 0; i < workers; i++) p->w[i].fd = p->w[i].pidfd = -1, p->w[i].pid = -1;
    for (int j = 0; j < n; j++) {
        const grader_spec *s = &specs[idx[j]];
        p->idx[j] = idx[j];
        p->name[j] = strdup(s->name);
        p->path[j] = strdup(s->path);
        p->config[j] = strdup(s->config_json ? s->config_json : "{}");
        if (!p->name[j] || !p->path[j] || !p->config[j]) goto oom;
        p->timeout_ms[j] = s->timeout_ms > 0 ? s->timeout_ms : GRADER_DEFAULT_TIMEOUT_MS;
        uint32_t mb = s->memory_mb > 0 ? (uint32_t)s->memory_mb : GRADER_DEFAULT_MEMORY_MB;
        if (mb > p->memory_mb) p->memory_mb = mb;
    }
    if (build_env(p, err, err_cap)) goto fail;
    find_worker(p);
    for (int i = 0; i < workers; i++)
        if (worker_spawn(p, &p->w[i], err, err_cap)) goto fail;
    for (int i = 0; i < workers; i++)
        if (worker_ready(p, &p->w[i], err, err_cap)) goto fail;
    return p;
oom:
    errf(err, err_cap, "out of memory");
fail:
    grader_pool_free(p);
    return NULL;
}

/* ---- one batch ---- */
static int send_request(grader_pool *p, pool_worker *w, int i) {
    if (!p->item_json[i]) {
        p->item_json[i] = grader_json_compact(p->items[i] ? p->items[i] : json_object(), &p->item_len[i]);
        if (!p->item_json[i]) return -1;
    }
    const rft_sample *s = &p->samples[i];
    gp_req h = {.magic = GP_MAGIC_REQ,
                .req_id = (uint32_t)i,
                .g_first = (uint32_t)p->next_g[i],
                .finished = (uint32_t)(s->finished != 0),
                .text_len = s->output_text ? s->output_len : 0,
                .n_tokens = s->tokens ? s->n_tokens : 0,
                .item_len = p->item_len[i]};
    if (buf_put(&w->out, &w->out_len, &w->out_cap, &h, sizeof h) ||
        buf_put(&w->out, &w->out_len, &w->out_cap, s->output_text ? s->output_text : "", h.text_len) ||
        buf_put(&w->out, &w->out_len, &w->out_cap, s->tokens, h.n_tokens * 4) ||
        buf_put(&w->out, &w->out_len, &w->out_cap, p->item_json[i], h.item_len))
        return -1;
    return 0;
}

static void flush_out(pool_worker *w) {
    while (w->out_off < w->out_len) {
        ssize_t k = send(w->fd, w->out + w->out_off, w->out_len - w->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break; /* full (EAGAIN) or dead: the read side notices */
        w->out_off += (size_t)k;
    }
    if (w->out_off == w->out_len) w->out_off = w->out_len = 0;
}

static void finish_grade(grader_pool *p, pool_worker *w) {
    int i = w->q[w->q_head];
    p->next_g[i]++;
    if (p->next_g[i] == p->n) {
        w->q_head = (w->q_head + 1) % POOL_WINDOW_MAX;
        w->q_len--;
        p->done++;
    }
}

enum { FAIL_EOF, FAIL_TIMEOUT, FAIL_PROTOCOL, FAIL_FATAL };

/* the worker is gone or untrustworthy: charge the oldest unanswered grade,
   requeue the rest, start a replacement */
static int worker_fail(grader_pool *p, pool_worker *w, int why, char *err, size_t cap) {
    double now = now_seconds();
    int st = worker_reap(w, why == FAIL_EOF || why == FAIL_FATAL ? 1.0 : 0.0);
    if (why != FAIL_FATAL && w->q_len > 0) {
        int i = w->q[w->q_head], g = p->next_g[i];
        grade_result *r = &p->out[(size_t)i * p->stride + p->idx[g]];
        memset(r, 0, sizeof *r);
        if (why == FAIL_TIMEOUT) {
            grade_result_error(r, GRADE_KIND_TIMEOUT, "no result within %d ms (worker killed)", p->timeout_ms[g]);
        } else if (why == FAIL_PROTOCOL) {
            grade_result_error(r, GRADE_KIND_PROTOCOL,
                               "corrupted the worker's reply channel (wrote to file descriptor %d?)", GP_WORKER_FD);
        } else if (WIFEXITED(st)) {
            grade_result_error(r, GRADE_KIND_EXIT, "worker exited with status %d inside grade() (exit() called?)",
                               WEXITSTATUS(st));
        } else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
            grade_result_error(r, GRADE_KIND_OOM, "worker killed by SIGKILL (out of memory?)");
        } else if (WIFSIGNALED(st)) {
            grade_result_error(r, GRADE_KIND_CRASH, "worker killed by signal %d (%s)", WTERMSIG(st),
                               strsignal(WTERMSIG(st)));
        } else {
            grade_result_error(r, GRADE_KIND_CRASH, "worker ended unexpectedly (status 0x%x)", st);
        }
        r->seconds = (float)(now - w->progress);
        finish_grade(p, w);
    }
    while (w->q_len > 0) {
        p->pending[p->n_pending++] = w->q[w->q_head];
        w->q_head = (w->q_head + 1) % POOL_WINDOW_MAX;
        w->q_len--;
    }
    w->q_head = 0;
    return worker_restart(p, w, err, cap);
}

/* parses the complete replies in w->in; FAIL_* on trouble, -1 if fine */
static int parse_replies(grader_pool *p, pool_worker *w) {
    size_t off = 0;
    int rc = -1;
    while (w->in_len - off >= sizeof(gp_resp)) {
        gp_resp h;
        memcpy(&h, w->in + off, sizeof h);
        if (h.magic != GP_MAGIC_RESP || h.msg_len > POOL_MSG_MAX || w->q_len == 0) {
            rc = FAIL_PROTOCOL;
            break;
        }
        if (w->in_len - off < sizeof h + h.msg_len) break;
        int i = w->q[w->q_head];
        int g = p->next_g[i];
        if (h.req_id != (uint32_t)i || h.grader != (uint32_t)g || h.status < GRADE_OK || h.status > GRADE_ERROR ||
            h.kind < 0 || h.kind >= GRADE_KIND_COUNT) {
            rc = FAIL_PROTOCOL;
            break;
        }
        grade_result *r = &p->out[(size_t)i * p->stride + p->idx[g]];
        memset(r, 0, sizeof *r);
        r->status = h.status;
        r->kind = h.kind;
        r->score = h.score;
        r->seconds = h.seconds;
        size_t ml = h.msg_len < sizeof r->msg - 1 ? h.msg_len : sizeof r->msg - 1;
        memcpy(r->msg, w->in + off + sizeof h, ml);
        r->msg[ml] = 0;
        if (r->status == GRADE_OK && !isfinite(r->score)) grade_result_error(r, GRADE_KIND_NAN, "score is not finite");
        off += sizeof h + h.msg_len;
        finish_grade(p, w);
        w->progress = now_seconds();
        if (h.flags & GP_FLAG_FATAL) {
            rc = FAIL_FATAL;
            break;
        }
    }
    memmove(w->in, w->in + off, w->in_len - off);
    w->in_len -= off;
    return rc;
}

/* reads what is available; FAIL_* on trouble, -1 if fine */
static int read_replies(grader_pool *p, pool_worker *w) {
    for (;;) {
        char tmp[16384];
        ssize_t k = read(w->fd, tmp, sizeof tmp);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (k <= 0) {
            int rc = parse_replies(p, w);
            return rc >= 0 ? rc : FAIL_EOF;
        }
        if (buf_put(&w->in, &w->in_len, &w->in_cap, tmp, (size_t)k)) return FAIL_PROTOCOL;
        if (k < (ssize_t)sizeof tmp) break;
    }
    return parse_replies(p, w);
}

static int worker_alive(pool_worker *w) {
    int st;
    return w->pid > 0 && waitpid(w->pid, &st, WNOHANG) == 0;
}

int grader_pool_grade_batch(grader_pool *p, const rft_sample *samples, json_t *const *items, int n,
                            grade_result *out, int stride, char *err, size_t err_cap) {
    if (n <= 0 || p->n == 0) return 0;
    int rc = -1;
    p->samples = samples, p->items = items, p->out = out, p->stride = stride;
    p->next_g = calloc(n, sizeof *p->next_g);
    p->item_json = calloc(n, sizeof *p->item_json);
    p->item_len = calloc(n, sizeof *p->item_len);
    p->pending = malloc(sizeof *p->pending * n);
    struct pollfd *pfd = malloc(sizeof *pfd * 2 * p->n_workers);
    int *pw = malloc(sizeof *pw * 2 * p->n_workers);
    if (!p->next_g || !p->item_json || !p->item_len || !p->pending || !pfd || !pw) {
        errf(err, err_cap, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) p->pending[i] = n - 1 - i;
    p->n_pending = n;
    p->done = 0;
    for (int k = 0; k < p->n_workers; k++) p->w[k].q_head = p->w[k].q_len = 0;

    while (p->done < n) {
        /* dispatch: keep up to `window` requests in flight per worker */
        int window = (p->n_pending + p->n_workers * 2 - 1) / (p->n_workers * 2);
        if (window < 1) window = 1;
        if (window > POOL_WINDOW_MAX) window = POOL_WINDOW_MAX;
        for (int k = 0; k < p->n_workers; k++) {
            pool_worker *w = &p->w[k];
            if (w->q_len == 0 && p->n_pending > 0 && !worker_alive(w)) { /* died while idle */
                worker_reap(w, 0);
                if (worker_restart(p, w, err, err_cap)) goto done;
            }
            while (w->q_len < window && p->n_pending > 0) {
                int i = p->pending[--p->n_pending];
                if (send_request(p, w, i)) {
                    errf(err, err_cap, "out of memory");
                    goto done;
                }
                if (w->q_len == 0) w->progress = now_seconds();
                w->q[(w->q_head + w->q_len) % POOL_WINDOW_MAX] = i;
                w->q_len++;
            }
            if (w->out_len) flush_out(w);
        }
        /* wait for replies or the earliest deadline */
        int np = 0;
        double now = now_seconds(), first = 1e300;
        for (int k = 0; k < p->n_workers; k++) {
            pool_worker *w = &p->w[k];
            if (w->q_len == 0) continue;
            int g = p->next_g[w->q[w->q_head]];
            double dl = w->progress + p->timeout_ms[g] / 1000.0;
            if (dl < first) first = dl;
            pfd[np] = (struct pollfd){.fd = w->fd, .events = POLLIN | (w->out_len ? POLLOUT : 0)};
            pw[np++] = k;
            if (w->pidfd >= 0) {
                pfd[np] = (struct pollfd){.fd = w->pidfd, .events = POLLIN};
                pw[np++] = k;
            }
        }
        if (np == 0) continue;
        double wait_s = first - now;
        int wait_ms = wait_s <= 0 ? 0 : (int)ceil(wait_s * 1000.0);
        int pr = poll(pfd, np, wait_ms);
        if (pr < 0 && errno != EINTR) {
            errf(err, err_cap, "grader pool: poll: %s", strerror(errno));
            goto done;
        }
        for (int j = 0; j < np && pr > 0; j++) {
            pool_worker *w = &p->w[pw[j]];
            if (!pfd[j].revents || (pfd[j].fd != w->fd && pfd[j].fd != w->pidfd)) continue; /* replaced meanwhile */
            if (pfd[j].fd == w->pidfd) { /* the worker exited: take its last replies, then charge the rest */
                int why = read_replies(p, w);
                if (why < 0 && w->q_len > 0) why = FAIL_EOF;
                if (why >= 0 && worker_fail(p, w, why, err, err_cap)) goto done;
                continue;
            }
            if (pfd[j].revents & POLLOUT) flush_out(w);
            if (pfd[j].revents & (POLLIN | POLLHUP | POLLERR)) {
                int why = read_replies(p, w);
                if (why >= 0 && worker_fail(p, w, why, err, err_cap)) goto done;
            }
        }
        /* deadlines: drain once more, then charge the grade that hangs */
        now = now_seconds();
        for (int k = 0; k < p->n_workers; k++) {
            pool_worker *w = &p->w[k];
            if (w->q_len == 0) continue;
            int g = p->next_g[w->q[w->q_head]];
            if (now < w->progress + p->timeout_ms[g] / 1000.0) continue;
            int why = read_replies(p, w);
            if (why >= 0) {
                if (worker_fail(p, w, why, err, err_cap)) goto done;
                continue;
            }
            if (w->q_len == 0) continue;
            g = p->next_g[w->q[w->q_head]];
            if (now_seconds() >= w->progress + p->timeout_ms[g] / 1000.0 &&
                worker_fail(p, w, FAIL_TIMEOUT, err, err_cap))
                goto done;
        }
    }
    rc = 0;
done:
    if (p->item_json)
        for (int i = 0; i < n; i++) free(p->item_json[i]);
    free(p->item_json), free(p->item_len), free(p->next_g), free(p->pending);
    p->item_json = NULL, p->item_len = NULL, p->next_g = NULL, p->pending = NULL;
    free(pfd), free(pw);
    if (rc) { /* leave the workers in a clean state for a later batch */
        for (int k = 0; k < p->n_workers; k++) {
            pool_worker *w = &p->w[k];
            if (w->q_len || w->out_len || w->in_len) {
                worker_reap(w, 0);
                char e2[256];
                worker_restart(p, w, e2, sizeof e2);
            }
        }
    }
    for (int k = 0; k < p->n_workers; k++) p->w[k].q_len = 0;
    return rc;
}

int grader_pool_worker_pids(const grader_pool *p, pid_t *pids, int cap) {
    int n = 0;
    for (int k = 0; k < p->n_workers && n < cap; k++)
        if (p->w[k].pid > 0) pids[n++] = p->w[k].pid;
    return n;
}

long grader_pool_restarts(const grader_pool *p) { return p->restarts; }

void grader_pool_free(grader_pool *p) {
    if (!p) return;
    if (p->w) {
        for (int k = 0; k < p->n_workers; k++)
            if (p->w[k].fd >= 0) close(p->w[k].fd), p->w[k].fd = -1; /* EOF: workers exit */
        for (int k = 0; k < p->n_workers; k++) {
            worker_reap(&p->w[k], 2.0);
            worker_free_bufs(&p->w[k]);
        }
    }
    for (int j = 0; j < p->n; j++) {
        if (p->name) free(p->name[j]);
        if (p->path) free(p->path[j]);
        if (p->config) free(p->config[j]);
    }
    free(p->name), free(p->path), free(p->config), free(p->timeout_ms), free(p->idx), free(p->w), free(p->envp);
    free(p);
}

/* keeps grader_worker.o (and its boot constructor) in every program that
   can start workers */
int (*const grader_pool_worker_entry)(int) = grader_worker_main;
