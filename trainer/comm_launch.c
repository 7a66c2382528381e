/* trainer/comm_launch.c: `rft train --gpus N` on one machine: the starting
 * process forks N ranks (rank r on GPU r) and waits; the ranks share one
 * pipe over which rank 0 hands out the NCCL id (comm_create). When a rank
 * fails the others are killed (they would wait in a collective for ever);
 * checkpoints are written whole or not at all, so nothing written is lost.
 * SIGINT / SIGTERM reach every rank (one process group); the ranks agree to
 * stop after the same step. */
#define _GNU_SOURCE
#include "comm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

int comm_launch(int n, int *status, char *err, size_t cap) {
    *status = 0;
    if (n < 1 || n > 1024) return errf(err, cap, "--gpus %d: expected 1 to 1024", n);
    int fd[2];
    if (pipe(fd)) return errf(err, cap, "pipe: %s", strerror(errno));
    pid_t *pid = calloc(n, sizeof *pid);
    if (!pid) return errf(err, cap, "out of memory");
    fflush(NULL);
    for (int r = 0; r < n; r++) {
        pid[r] = fork();
        if (pid[r] < 0) {
            errf(err, cap, "fork: %s", strerror(errno));
            for (int q = 0; q < r; q++) kill(pid[q], SIGKILL);
            for (int q = 0; q < r; q++) waitpid(pid[q], NULL, 0);
            free(pid);
            return -1;
        }
        if (pid[r] == 0) {
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
    /* the ranks take the terminal's signals themselves; this process only waits */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    int left = n, failed = 0;
    while (left > 0) {
        int st;
        pid_t p = waitpid(-1, &st, 0);
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
        if (code && !failed) {
            failed = 1;
            *status = code;
            if (left && code != 2) /* bad input: rank 0 has said what */
                fprintf(stderr, "rft train: rank %d exited with status %d; stopping the other ranks\n", r, code);
            for (int q = 0; q < n; q++)
                if (pid[q]) kill(pid[q], SIGKILL);
        }
    }
    free(pid);
    return 1;
}
