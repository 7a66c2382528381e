/* trainer/cli.h: the rft subcommands. Each lives in trainer/cmd_<name>.c and
 * returns an exit status (RFT_EXIT_*); only main() exits. */
#ifndef RFT_CLI_H
#define RFT_CLI_H

int cmd_inspect(int argc, char **argv);   /* cmd_inspect.c */
int cmd_convert(int argc, char **argv);   /* cmd_convert.c */
int cmd_grade(int argc, char **argv);     /* cmd_grade.c */
int cmd_sample(int argc, char **argv);    /* cmd_sample.c */
int cmd_train(int argc, char **argv);     /* cmd_train.c */
int cmd_init(int argc, char **argv);      /* cmd_init.c */
int cmd_eval(int argc, char **argv);      /* cmd_eval.c */


#endif
