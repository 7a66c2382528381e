/* trainer/comm_launch.c: `rft train --gpus N` on one machine: the starting
 * process forks N ranks (rank r on GPU r) and waits; the ranks share one
 * pipe over which rank 0 hands out the NCCL id (comm_create).
 * - A rank that fails ends the job: when it is rank 0 (which says what
 *   failed) the others are killed at once; when it is another rank, rank 0
 *   gets 10 s to end on its own (if it failed too, its message is the one to
 *   see), then everything left is killed (it would wait in a collective for
 *   ever). Checkpoints are written whole or not at all: nothing written is
 *   lost. The exit status is rank 0's when it failed, else the first
 *   failing rank's.
 * - SIGINT / SIGTERM sent to this process are passed on to the ranks, which
 *   agree to stop after the same step; a terminal's Ctrl-C reaches them
 *   directly (one process group) and once more from here, which a rank
 *   takes as one request (a repeat within 2 s). Ranks die with this process
 *   (PR_SET_PDEATHSIG). */
#define _GNU_SOURCE
#include "comm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

static pid_t *g_ranks;
static int g_n;

/* SIGINT / SIGTERM to the launcher: to every rank still running */
static void pass_on(int sig) {
    for (int r = 0; r < g_n; r++)
        if (g_ranks[r] > 0) kill(g_ranks[r], sig);
}

static void kill_all(pid_t *pid, int n) {
    for (int q = 0; q < n; q++)
        if (pid[q] > 0) kill(pid[q], SIGKILL);
}

/* GPUs this process may use, without initialising CUDA (a forked child
   could not use it then): CUDA_VISIBLE_DEVICES' entries up to the first
   invalid one (CUDA ignores the rest: "-1" hides every GPU), else the
   driver's /proc/driver/nvidia/gpus entries; -1 when neither tells */
static int visible_gpus(void) {
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    if (v) {
        int n = 0;
        for (const char *p = v; *p; n++) {
            const char *e = p + strcspn(p, ",");
            int ok = e > p && (!strncmp(p, "GPU-", 4) || !strncmp(p, "MIG-", 4) || strspn(p, "0123456789") == (size_t)(e - p));
            if (!ok) break;
            p = *e ? e + 1 : e;
        }
        return n;
    }
    DIR *d = opendir("/proc/driver/nvidia/gpus");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

int comm_launch(int n, int *status, char *err, size_t cap) {
    *status = 0;
    if (n < 1 || n > 1024) return errf(err, cap, "--gpus %d: expected 1 to 1024", n);
    int have = visible_gpus();
    if (have >= 0 && have < n) {
        errf(err, cap, "--gpus %d: this machine shows %d GPU%s%s", n, have, have == 1 ? "" : "s",
             getenv("CUDA_VISIBLE_DEVICES") ? " (CUDA_VISIBLE_DEVICES)" : "");
        return -2;
    }
    int fd[2];
    if (pipe2(fd, O_CLOEXEC)) return errf(err, cap, "pipe: %s", strerror(errno)); /* not inherited by grader workers */
    pid_t *pid = calloc(n, sizeof *pid);
    if (!pid) return errf(err, cap, "out of memory");
    pid_t parent = getpid();
    fflush(NULL);
    for (int r = 0; r < n; r++) {
        pid[r] = fork();
        if (pid[r] < 0) {
            errf(err, cap, "fork: %s", strerror(errno));
            kill_all(pid, r);
            for (int q = 0; q < r; q++) waitpid(pid[q], NULL, 0);
            free(pid);
            close(fd[0]), close(fd[1]);
            return -1;
        }
        if (pid[r] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(1); /* the launcher died before the line above */
            char v[32];
            snprintf(v, sizeof v, "%d", r);
            setenv("RFT_RANK", v, 1);
            setenv("RFT_LOCAL_RANK", v, 1);
            snprintf(v, sizeof v, "%d", n);
            setenv("RFT_WORLD_SIZE", v, 1);
            setenv("RFT_LOCAL_SIZE", v, 1);
            close(fd[r == 0 ? 0 : 1]); /* rank 0 writes the id, the others read it */
            snprintf(v, sizeof v, "%d", fd[r == 0 ? 1 : 0]);
            setenv("RFT_COMM_FD", v, 1);
            free(pid);
            return 0;
        }
    }
    close(fd[0]), close(fd[1]);
    g_ranks = pid, g_n = n;
    struct sigaction sa = {0};
    sa.sa_handler = pass_on;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int left = n, failed = 0, killed = 0;
    double deadline = 0;
    while (left > 0) {
        int st;
        pid_t p = waitpid(-1, &st, failed && !killed ? WNOHANG : 0);
        if (p == 0) { /* another rank failed first: rank 0 has until the deadline */
            if (now_seconds() > deadline) {
                kill_all(pid, n);
                killed = 1;
            } else {
                usleep(20000);
            }
            continue;
        }
        if (p < 0) {
            if (errno == EINTR) continue;
            break;
        }
        int r = 0;
        while (r < n && pid[r] != p) r++;
        if (r == n) continue;
        pid[r] = 0;
        left--;
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        if (!code || killed) continue;
        if (r == 0) { /* rank 0 has said what failed */
            *status = code;
            kill_all(pid, n);
            killed = 1;
        } else if (!failed) {
            *status = code;
            deadline = now_seconds() + 10.0;
        }
        failed = 1;
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    g_ranks = NULL, g_n = 0;
    free(pid);
    return 1;
}

int comm_start_ranks(const char *cmd, const char *path, const char *device, int n, int *exit_status) {
    if (!n) return 0;
    if (strcmp(device, "cuda")) {
        fprintf(stderr, "rft %s: --gpus needs device: cuda (%s has device: %s; add --set device=cuda)\n", cmd, path,
                device);
        *exit_status = RFT_EXIT_BADINPUT;
        return 1;
    }
    char err[512];
    int status, r = comm_launch(n, &status, err, sizeof err);
    if (!r) return 0; /* a rank */
    if (r < 0) fprintf(stderr, "rft %s: %s\n", cmd, err);
    *exit_status = r == -2 ? RFT_EXIT_BADINPUT : r < 0 ? RFT_EXIT_RUNTIME : status;
    return 1;
}
