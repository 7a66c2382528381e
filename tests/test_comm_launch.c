/* tests/test_comm_launch.c: the `--gpus N` launcher (trainer/comm_launch.c)
 * without GPUs: comm_launch forks ranks that here play scripted parts
 * (exit codes, delays, hanging) instead of training, and the starting
 * process's verdict is checked:
 *   1. every rank gets RFT_RANK / RFT_WORLD_SIZE / RFT_LOCAL_RANK and the
 *      shared pipe (RFT_COMM_FD); all exit 0 -> status 0;
 *   2. rank 0 fails -> its status, the others (hanging) killed at once;
 *   3. rank 1 fails first, rank 0 fails 0.5 s later -> rank 0's status;
 *   4. rank 1 fails, rank 0 hangs (as in a collective) -> rank 1's status
 *      after the 10 s grace, rank 0 killed;
 *   5. SIGTERM to the starting process reaches every rank;
 *   6. more ranks than CUDA_VISIBLE_DEVICES shows -> refused (-2) before
 *      any fork (its entries counted as CUDA does: up to the first invalid
 *      one, so "-1" shows none). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "comm.h"
#include "util.h"

static int n_fail, n_check;

static void check(int ok, const char *what, double seconds, int status) {
    n_check++;
    n_fail += !ok;
    printf("%s %s (status %d, %.1f s)\n", ok ? "ok  " : "FAIL", what, status, seconds);
    fflush(stdout);
}

static int fcntl_ok(int fd) { return fcntl(fd, F_GETFD) != -1; }

static volatile sig_atomic_t got_term;
static void on_term(int sig) {
    (void)sig;
    got_term = 1;
}

/* the part rank r plays in scenario s; never returns */
static void play(int s, int r) {
    switch (s) {
    case 1: {
        const char *rank = getenv("RFT_RANK"), *size = getenv("RFT_WORLD_SIZE"), *local = getenv("RFT_LOCAL_RANK");
        int ok = rank && size && local && atoi(rank) == r && atoi(size) == 3 && atoi(local) == r &&
                 getenv("RFT_COMM_FD") && fcntl_ok(atoi(getenv("RFT_COMM_FD")));
        _exit(ok ? 0 : 9);
    }
    case 2:
        if (r == 0) usleep(200000), _exit(2);
        pause(); /* waits for ever */
        _exit(0);
    case 3:
        if (r == 1) _exit(5);
        usleep(500000);
        _exit(2);
    case 4:
        if (r == 1) _exit(5);
        pause();
        _exit(0);
    case 5:
        signal(SIGTERM, on_term);
        while (!got_term) pause();
        _exit(40 + r);
    }
    _exit(99);
}

/* runs scenario s with n ranks; returns the launcher's status, *dt its seconds */
static int run(int s, int n, double *dt, int signal_after_ms) {
    double t0 = now_seconds();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int status;
        char err[256];
        int r = comm_launch(n, &status, err, sizeof err);
        if (r == 0) play(s, atoi(getenv("RFT_RANK")));
        _exit(r == 1 ? status : 100 - r); /* -1 -> 101, -2 -> 102 */
    }
    if (signal_after_ms) {
        usleep(signal_after_ms * 1000);
        kill(pid, SIGTERM);
    }
    int st;
    waitpid(pid, &st, 0);
    *dt = now_seconds() - t0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(void) {
    double dt;
    setenv("CUDA_VISIBLE_DEVICES", "0,1,2", 1);
    int st = run(1, 3, &dt, 0);
    check(st == 0, "3 ranks see their rank, the size and the shared pipe; all exit 0 -> 0", dt, st);
    st = run(2, 3, &dt, 0);
    check(st == 2 && dt < 5, "rank 0 fails with 2 -> 2 at once, the hanging ranks killed", dt, st);
    st = run(3, 2, &dt, 0);
    check(st == 2 && dt < 5, "rank 1 fails with 5, rank 0 with 2 half a second later -> rank 0's 2", dt, st);
    st = run(4, 2, &dt, 0);
    check(st == 5 && dt > 9 && dt < 20, "rank 1 fails with 5, rank 0 hangs -> 5 after the 10 s grace", dt, st);
    st = run(5, 2, &dt, 300);
    check(st == 40 && dt < 5, "SIGTERM to the launcher reaches the ranks (rank 0 exits 40 on it)", dt, st);
    setenv("CUDA_VISIBLE_DEVICES", "0", 1);
    st = run(1, 2, &dt, 0);
    check(st == 102, "2 ranks where CUDA_VISIBLE_DEVICES shows 1 GPU: refused before forking", dt, st);
    setenv("CUDA_VISIBLE_DEVICES", "-1", 1); /* CUDA reads up to the first invalid entry: no GPU */
    st = run(1, 1, &dt, 0);
    check(st == 102, "1 rank where CUDA_VISIBLE_DEVICES=-1 hides every GPU: refused before forking", dt, st);
    setenv("CUDA_VISIBLE_DEVICES", "GPU-0a1b,1,x,2", 1); /* a UUID and an index, then an invalid entry */
    st = run(1, 3, &dt, 0);
    check(st == 102, "3 ranks where CUDA_VISIBLE_DEVICES=GPU-0a1b,1,x,2 shows 2 GPUs: refused before forking", dt, st);
    printf("%s: %d of %d checks failed\n", n_fail ? "FAILED" : "PASSED", n_fail, n_check);
    return n_fail ? 1 : 0;
}
