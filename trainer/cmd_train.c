/* trainer/cmd_train.c: `rft train CONFIG [--set key=value ...] [--resume
 * [CHECKPOINT]]` and `rft train --help-config` (the field reference). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "train.h"
#include "util.h"

int cmd_train(int argc, char **argv) {
    const char *path = NULL, *resume = NULL;
    char **sets = calloc(argc, sizeof *sets);
    int n_sets = 0;
    if (!sets) return RFT_EXIT_RUNTIME;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help-config")) {
            config_print_reference(stdout);
            free(sets);
            return RFT_EXIT_OK;
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            sets[n_sets++] = argv[++i];
        } else if (!strncmp(argv[i], "--set=", 6)) {
            sets[n_sets++] = argv[i] + 6;
        } else if (!strcmp(argv[i], "--resume")) {
            resume = i + 1 < argc && argv[i + 1][0] != '-' && path ? argv[++i] : "";
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            fprintf(stderr, "usage: rft train CONFIG [--set section.key=value ...] [--resume [CHECKPOINT]] | --help-config\n");
            free(sets);
            return RFT_EXIT_BADINPUT;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: rft train CONFIG [--set section.key=value ...] [--resume [CHECKPOINT]] | --help-config\n");
        free(sets);
        return RFT_EXIT_BADINPUT;
    }
    rft_config cfg;
    char err[2048];
    if (config_load(path, sets, n_sets, &cfg, err, sizeof err)) {
        fprintf(stderr, "rft train: %s\n", err);
        free(sets);
        return RFT_EXIT_BADINPUT;
    }
    free(sets);
    int rc = train_run(&cfg, resume, err, sizeof err);
    if (rc) fprintf(stderr, "rft train: %s\n", err);
    config_free(&cfg);
    return rc;
}
