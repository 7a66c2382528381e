/* trainer/grader_worker.c: the grader worker process. rft starts a worker
 * (the rft-grader-worker program, or rft itself as a fallback) with
 * RFT_GRADER_WORKER=<fd>:<parent pid> in the environment; a constructor here
 * sees that before main() and runs the worker loop instead: load and create
 * the graders named in the init record, set the memory limit, then answer
 * requests (one reply per grader per sample) until the socket closes. Crashes inside grade() are reported by signal handlers;
 * children a plugin leaves running are killed and charged to that grade. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "grader_load.h"
#include "grader_proto.h"
#include "util.h"

/* what the crash handlers need */
static int w_fd = -1;
static volatile uint32_t w_req = 0, w_grader = 0;
static volatile int w_in_grade = 0;

static int write_full(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static const char *sig_name(int sig) {
    switch (sig) {
    case SIGSEGV: return "SIGSEGV (segmentation fault)";
    case SIGBUS: return "SIGBUS (bus error)";
    case SIGABRT: return "SIGABRT (abort)";
    case SIGFPE: return "SIGFPE (arithmetic exception)";
    case SIGILL: return "SIGILL (illegal instruction)";
    case SIGSYS: return "SIGSYS (bad system call)";
    case SIGTRAP: return "SIGTRAP (trap)";
    default: return "a signal";
    }
}

/* async-signal-safe: builds the reply with plain stores and one send() */
static void crash_handler(int sig) {
    int saved = errno;
    if (w_in_grade && w_fd >= 0) {
        char buf[sizeof(gp_resp) + 128];
        gp_resp r;
        memset(&r, 0, sizeof r);
        r.magic = GP_MAGIC_RESP, r.req_id = w_req, r.grader = w_grader, r.flags = GP_FLAG_FATAL;
        r.status = GRADE_ERROR;
        const char *what = sig_name(sig);
        char msg[128];
        size_t n = 0;
        const char *pre = saved == ENOMEM ? "out of memory, then " : "killed by ";
        for (const char *p = pre; *p && n < sizeof msg - 1; p++) msg[n++] = *p;
        for (const char *p = what; *p && n < sizeof msg - 1; p++) msg[n++] = *p;
        r.kind = saved == ENOMEM ? GRADE_KIND_OOM : GRADE_KIND_CRASH;
        r.msg_len = (uint32_t)n;
        memcpy(buf, &r, sizeof r);
        memcpy(buf + sizeof r, msg, n);
        size_t len = sizeof r + n, off = 0;
        while (off < len) {
            ssize_t k = send(w_fd, buf + off, len - off, MSG_NOSIGNAL);
            if (k <= 0) break;
            off += (size_t)k;
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(128 + sig);
}

static void install_crash_handlers(void) {
    static char altstack[64 * 1024];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGSYS, SIGTRAP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = crash_handler;
        sa.sa_flags = SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

/* ---- buffered input ---- */
typedef struct rbuf {
    char *p;
    size_t len, off, cap;
} rbuf;

/* ensures n unread bytes are buffered; 0 ok, -1 EOF/error */
static int rbuf_need(rbuf *b, int fd, size_t n) {
    if (b->len - b->off >= n) return 0;
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off, b->off = 0;
    }
    if (n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < n) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q, b->cap = cap;
    }
    while (b->len < n) {
        ssize_t k = read(fd, b->p + b->len, b->cap - b->len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        b->len += (size_t)k;
    }
    return 0;
}


/* ---- output ---- */
typedef struct wbuf {
    char *p;
    size_t len, cap;
} wbuf;

static int wbuf_put(wbuf *b, const void *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static int reply(wbuf *out, uint32_t req, uint32_t g, uint32_t flags, const grade_result *r) {
    gp_resp h = {.magic = GP_MAGIC_RESP, .req_id = req, .grader = g, .flags = flags};
    h.status = r->status, h.kind = r->kind, h.seconds = r->seconds, h.score = r->score;
    size_t ml = r->status == GRADE_ERROR ? strnlen(r->msg, sizeof r->msg) : 0;
    h.msg_len = (uint32_t)ml;
    if (wbuf_put(out, &h, sizeof h) || wbuf_put(out, r->msg, ml)) return -1;
    return 0;
}

static int flush(int fd, wbuf *out) {
    if (!out->len) return 0;
    int rc = write_full(fd, out->p, out->len);
    out->len = 0;
    return rc;
}

/* ---- child processes ----
 * Children that exist when create() has finished (a helper a grader keeps for
 * all its grades) are allowed; any other child still running when grade()
 * returns, including orphans reparented to us (we are a subreaper), is killed
 * and charged to that grade. */
#define MAX_ALLOWED 64
static pid_t allowed[MAX_ALLOWED];
static int n_allowed = 0;

static int is_allowed(pid_t pid) {
    for (int i = 0; i < n_allowed; i++)
        if (allowed[i] == pid) return 1;
    return 0;
}

/* our direct children (any state), from /proc/self/task/<tid>/children when
   the kernel has it, else by scanning /proc for ppid == us */
static int list_children(pid_t *out, int cap) {
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    int have_children_file = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
            char path[300];
            snprintf(path, sizeof path, "/proc/self/task/%s/children", e->d_name);
            FILE *f = fopen(path, "r");
            if (!f) continue;
            have_children_file = 1;
            long pid;
            while (n < cap && fscanf(f, "%ld", &pid) == 1) out[n++] = (pid_t)pid;
            fclose(f);
        }
        closedir(d);
    }
    if (have_children_file) return n;
    pid_t self = getpid();
    d = opendir("/proc");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == self) out[n++] = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return n;
}

/* reaps what has exited; 1 if a child other than an allowed one may still run */
static int stray_children(void) {
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p > 0) {
            for (int i = 0; i < n_allowed; i++)
                if (allowed[i] == p) allowed[i] = allowed[--n_allowed];
            continue;
        }
        if (p < 0) return 0; /* no children at all */
        if (n_allowed == 0) return 1;
        pid_t kids[256];
        int n = list_children(kids, 256);
        for (int i = 0; i < n; i++)
            if (!is_allowed(kids[i])) return 1;
        return 0;
    }
}

/* kills stray children until none is left (killing one can orphan its own
   children onto us); returns how many were found at the first look */
static int kill_children(void) {
    int first = -1;
    for (int iter = 0; iter < 2000; iter++) {
        pid_t kids[256];
        int n = list_children(kids, 256), strays = 0;
        for (int i = 0; i < n; i++) {
            if (is_allowed(kids[i])) continue;
            strays++;
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
        }
        if (first < 0) first = strays;
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        if (strays == 0) break;
    }
    return first < 0 ? 0 : first;
}

static size_t vm_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

int grader_worker_main(int fd) {
    w_fd = fd;
    fcntl(fd, F_SETFD, FD_CLOEXEC); /* programs the graders exec do not hold rft's socket */
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    install_crash_handlers();
    rbuf in = {0};
    wbuf out = {0};
    char err[1024];

    /* init */
    if (rbuf_need(&in, fd, sizeof(gp_init))) return 0;
    gp_init ini;
    memcpy(&ini, in.p + in.off, sizeof ini);
    in.off += sizeof ini;
    if (ini.magic != GP_MAGIC_INIT || ini.n_graders > 4096) return 3;
    int ng = (int)ini.n_graders;
    grader_instance *inst = calloc(ng ? ng : 1, sizeof *inst);
    if (!inst) return 3;
    for (int g = 0; g < ng; g++) {
        if (rbuf_need(&in, fd, sizeof(gp_init_grader))) return 3;
        gp_init_grader ig;
        memcpy(&ig, in.p + in.off, sizeof ig);
        in.off += sizeof ig;
        size_t len = (size_t)ig.name_len + ig.path_len + ig.config_len;
        if (rbuf_need(&in, fd, len)) return 3;
        char *name = strndup(in.p + in.off, ig.name_len);
        char *path = strndup(in.p + in.off + ig.name_len, ig.path_len);
        char *config = strndup(in.p + in.off + ig.name_len + ig.path_len, ig.config_len);
        in.off += len;
        if (!name || !path || !config) return 3;
        gp_resp h = {.magic = GP_MAGIC_RESP, .req_id = GP_REQ_INIT, .grader = (uint32_t)g, .status = GRADE_OK};
        err[0] = 0;
        w_req = GP_REQ_INIT, w_grader = (uint32_t)g, w_in_grade = 1; /* crashes in create() are reported too */
        if (grader_instance_open(&inst[g], name, path, err, sizeof err) ||
            grader_instance_create(&inst[g], config, err, sizeof err)) {
            h.status = GRADE_ERROR, h.kind = GRADE_KIND_ERROR, h.flags = GP_FLAG_FATAL;
            h.msg_len = (uint32_t)strlen(err);
        }
        w_in_grade = 0;
        if (write_full(fd, &h, sizeof h) || write_full(fd, err, h.msg_len)) return 3;
        free(name), free(path), free(config);
        if (h.status != GRADE_OK) return 3;
    }
    /* children the graders started in create() are theirs to keep */
    n_allowed = list_children(allowed, MAX_ALLOWED);
    if (ini.memory_mb) {
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = vm_bytes() + (rlim_t)ini.memory_mb * 1024 * 1024;
        setrlimit(RLIMIT_AS, &rl);
    }

    /* requests */
    rft_item item;
    grader_item_init(&item, NULL);
    for (;;) {
        if (rbuf_need(&in, fd, sizeof(gp_req))) break;
        gp_req q;
        memcpy(&q, in.p + in.off, sizeof q);
        if (q.magic != GP_MAGIC_REQ) break;
        size_t body = q.text_len + q.n_tokens * 4 + q.item_len;
        if (rbuf_need(&in, fd, sizeof q + body)) break;
        const char *p = in.p + in.off + sizeof q;
        /* the text must be NUL-terminated for plugins: copy it */
        char *text = malloc(q.text_len + 1);
        int32_t *tokens = q.n_tokens ? malloc(q.n_tokens * 4) : NULL;
        json_t *row = json_loadb(p + q.text_len + q.n_tokens * 4, q.item_len, 0, NULL);
        if (!text || (q.n_tokens && !tokens) || !row) {
            grade_result r = {0};
            grade_result_error(&r, !row && text ? GRADE_KIND_PROTOCOL : GRADE_KIND_OOM,
                               !row && text ? "worker could not parse the item" : "worker out of memory");
            reply(&out, q.req_id, q.g_first, GP_FLAG_FATAL, &r);
            flush(fd, &out);
            break;
        }
        memcpy(text, p, q.text_len);
        text[q.text_len] = 0;
        if (q.n_tokens) memcpy(tokens, p + q.text_len, q.n_tokens * 4);
        in.off += sizeof q + body;
        rft_sample s = {.output_text = text, .output_len = q.text_len, .tokens = tokens,
                        .n_tokens = q.n_tokens, .finished = (int)q.finished};
        item.row = row;
        int fatal = 0;
        for (uint32_t g = q.g_first; g < (uint32_t)ng && !fatal; g++) {
            grade_result r = {0};
            w_req = q.req_id, w_grader = g;
            w_in_grade = 1;
            grader_instance_grade(&inst[g], &s, &item, &r);
            w_in_grade = 0;
            int left = stray_children() ? kill_children() : 0;
            if (left) grade_result_error(&r, GRADE_KIND_FORK, "left %d child process(es) running (killed)", left);
            /* every reply goes out before the next grade() starts, so a hang or
               a scribble on the socket is always charged to the right grade */
            if (reply(&out, q.req_id, g, 0, &r) || flush(fd, &out)) fatal = 1;
        }
        grader_item_reset(&item);
        json_decref(row);
        free(text);
        free(tokens);
        if (fatal) break;
    }
    /* rft closed the socket (or it broke): shut down cleanly */
    for (int g = 0; g < ng; g++) grader_instance_close(&inst[g]);
    kill_children();
    return 0;
}

/* the boot hook: runs before main() in every program linked with rftcore's
   grader pool; only acts in a process started as a worker */
__attribute__((constructor)) static void grader_worker_boot(void) {
    const char *v = getenv(GP_WORKER_ENV);
    if (!v || !*v) return;
    int fd = atoi(v); /* "fd:parent pid" */
    const char *colon = strchr(v, ':');
    long parent = colon ? atol(colon + 1) : 0;
    unsetenv(GP_WORKER_ENV);
    if (parent > 0) { /* die with rft; and if rft is already gone, do not start */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if ((long)getppid() != parent) _exit(0);
    }
    _exit(grader_worker_main(fd));
}
