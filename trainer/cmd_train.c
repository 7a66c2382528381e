/* trainer/cmd_train.c: `rft train CONFIG [--set key=value ...] [--resume
 * [CHECKPOINT]] [--gpus N]`, `rft train --help-config` (the field
 * reference) and `rft train --help`. --gpus N starts N data-parallel ranks on this machine's first N
 * GPUs (comm_launch); under mpirun each process is a rank already. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "comm.h"
#include "config.h"
#include "train.h"
#include "util.h"

#define USAGE "usage: rft train CONFIG [--set section.key=value ...] [--resume [CHECKPOINT]] [--gpus N] | --help-config\n"

int cmd_train(int argc, char **argv) {
    /* under mpirun every rank parses the same arguments and reads the same
       files: rank 0 reports bad input, every rank its own run-time failure */
    int rank = 0, size = 1, local_rank, local_size;
    char e2[256];
    comm_env(&rank, &size, &local_rank, &local_size, e2, sizeof e2);
    int say = rank == 0;
    const char *path = NULL, *resume = NULL;
    int gpus = 0, bad = 0;
    char **sets = calloc(argc, sizeof *sets);
    int n_sets = 0;
    if (!sets) return RFT_EXIT_RUNTIME;
    char e1[256];
    for (int i = 1; i < argc && !bad; i++) {
        const char *set;
        int r;
        if (!strcmp(argv[i], "--help-config")) {
            config_print_reference(stdout);
            free(sets);
            return RFT_EXIT_OK;
        } else if (cli_is_help(argv[i])) {
            if (say) printf(USAGE "  --help-config   every config key with its default and range (docs/config.md)\n");
            free(sets);
            return RFT_EXIT_OK;
        } else if ((r = cli_option(argc, argv, &i, "--set", &set, e1, sizeof e1))) {
            if (r > 0) sets[n_sets++] = (char *)set;
            else bad = 1;
        } else if ((r = cli_int_option(argc, argv, &i, "--gpus", 1, CLI_MAX_GPUS, CLI_GPUS_WHAT, &gpus, e1, sizeof e1))) {
            if (r < 0) bad = 1;
        } else if (!strcmp(argv[i], "--resume")) {
            resume = i + 1 < argc && argv[i + 1][0] != '-' && path ? argv[++i] : "";
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            bad = 2;
        }
        if (bad == 1 && say) fprintf(stderr, "rft train: %s\n", e1);
    }
    if (!bad && !path) bad = 2;
    if (bad == 2 && say) fprintf(stderr, USAGE);
    rft_config cfg;
    char err[2048];
    if (!bad && config_load(path, sets, n_sets, &cfg, err, sizeof err)) {
        if (say) fprintf(stderr, "rft train: %s\n", err);
        bad = 1;
    }
    free(sets);
    if (bad) return RFT_EXIT_BADINPUT;
    int status;
    if (comm_start_ranks("train", path, cfg.device, gpus, &status)) { /* the starting process: the ranks have ended */
        config_free(&cfg);
        return status;
    }
    int rc = train_run(&cfg, resume, err, sizeof err);
    if (rc) comm_report("train", err);
    config_free(&cfg);
    return comm_exit(rc); /* under mpirun a failure ends every rank */
}
