/* trainer/cli.h: the rft subcommands. Each lives in trainer/cmd_<name>.c and
 * returns an exit status (RFT_EXIT_*); only main() exits. Below them, the
 * option parsing they share (trainer/cli.c): an option's value given as
 * `--flag VALUE` or `--flag=VALUE`, numbers parsed strictly. The parsers
 * return errors as one line in err ("--gpus 0: expected a number of GPUs
 * from 1 to 1024"); the command prints it after its "rft NAME: ". */
#ifndef RFT_CLI_H
#define RFT_CLI_H

#include <stddef.h>
#include <stdint.h>

int cmd_inspect(int argc, char **argv);   /* cmd_inspect.c */
int cmd_convert(int argc, char **argv);   /* cmd_convert.c */
int cmd_grade(int argc, char **argv);     /* cmd_grade.c */
int cmd_sample(int argc, char **argv);    /* cmd_sample.c */
int cmd_train(int argc, char **argv);     /* cmd_train.c */
int cmd_init(int argc, char **argv);      /* cmd_init.c */
int cmd_eval(int argc, char **argv);      /* cmd_eval.c */

/* arg is -h or --help */
int cli_is_help(const char *arg);

/* Option `flag` at argv[*i], with its value as the next argument or after
 * '=' (--flag=VALUE). Returns 1 with *val set (and *i on the value's
 * argument), 0 when argv[*i] is not this option, -1 with err ("--flag: needs
 * a value") when it is but no value follows. */
int cli_option(int argc, char **argv, int *i, const char *flag, const char **val, char *err, size_t cap);

/* The value s of option flag as an integer in [lo, hi]. Returns 0, or -1
 * with err "FLAG S: expected WHAT" (what NULL: "an integer from LO to HI"). */
int cli_parse_int(const char *flag, const char *s, long lo, long hi, const char *what, long *out, char *err, size_t cap);
/* ... as a finite number in [lo, hi] (what NULL: "a number from LO to HI") */
int cli_parse_double(const char *flag, const char *s, double lo, double hi, const char *what, double *out, char *err,
                     size_t cap);
/* ... as a seed: an integer from 0 to 2^64-1 ("expected a non-negative integer") */
int cli_parse_seed(const char *flag, const char *s, uint64_t *out, char *err, size_t cap);

/* cli_option, then cli_parse_int into *out (an int): 1 taken, 0 not this
   option, -1 err (no value, or a bad one) */
int cli_int_option(int argc, char **argv, int *i, const char *flag, long lo, long hi, const char *what, int *out,
                   char *err, size_t cap);

/* ... cli_parse_double into *out */
int cli_double_option(int argc, char **argv, int *i, const char *flag, double lo, double hi, const char *what,
                      double *out, char *err, size_t cap);

/* --gpus N of train and eval: a number of GPUs from 1 to 1024 */
#define CLI_MAX_GPUS 1024
#define CLI_GPUS_WHAT "a number of GPUs from 1 to 1024"

#endif
