/* trainer/main.c: the rft program: dispatches to the subcommands in cli.h. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "cli.h"
#include "../kernels/cpu/cpu_setup.h"
#include "util.h"

static int cmd_version(int argc, char **argv) {
    (void)argc, (void)argv;
    printf("rft 0.1.0\n");
    return RFT_EXIT_OK;
}

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
} command;

static const command commands[] = {
    {"version", cmd_version, "rft version | --version            print the version"},
    {"inspect", cmd_inspect, "rft inspect FILE                   config, parameter count and tensors of a model file"},
    {"grade", cmd_grade, "rft grade CONFIG --samples FILE    run the graders on given completions, no model"},
    {"train", cmd_train, "rft train CONFIG [--set k=v ...] [--resume [CKPT]] [--gpus N]   RFT (GRPO family) or SFT training"},
    {"eval", cmd_eval, "rft eval CONFIG [--model CKPT] [--data FILE] [--n N] [--compare OTHER] [--json] [--gpus N]"},
    {"init", cmd_init, "rft init OUT.h5 --tokenizer T.json --d-model D ...   a freshly initialised model"},
    {"sample", cmd_sample, "rft sample --model M --prompt TEXT   completions from a model (--n, --temperature, --json ...)"},
    {"convert", cmd_convert, "rft convert IN OUT                 gguf | hf-dir | .h5 -> .h5 | hf-dir | .gguf"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: rft COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) fprintf(f, "  %s\n", commands[i].usage);
}

int main(int argc, char **argv) {
    /* Idle OpenMP threads spin briefly, then sleep. Every worker thread of
       rft is an OpenMP thread (OpenBLAS runs single-threaded inside rft's
       regions, kernels/cpu/cpu_linalg.c), so a short spin takes no core from
       anyone, while sleeping at once between the hundreds of parallel regions
       of a decode step costs a futex wake-up each (decode 1.5-2x slower on
       these VMs with OMP_WAIT_POLICY=passive). The spin is kept short (libgomp
       spins 300000 rounds by default): on a machine loaded by other jobs,
       long spins burn the time slices of threads waiting for a descheduled
       partner. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins. */
    int set_spin = !getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT");
    if (set_spin) setenv("GOMP_SPINCOUNT", "10000", 1);
    /* DESIGN.md platform notes: run OpenBLAS with the kernels this CPU
       supports (re-executes when it must, carrying the environment) */
    cpu_openblas_reexec(argv);
    if (set_spin) { /* libgomp reads its settings when it loads: run again with them */
        fflush(NULL);
        execv("/proc/self/exe", argv); /* on failure go on with libgomp's defaults */
    }
    if (argc < 2) {
        usage(stderr);
        return RFT_EXIT_BADINPUT;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return RFT_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "rft: unknown command '%s' (try rft --help)\n", argv[1]);
    return RFT_EXIT_BADINPUT;
}
