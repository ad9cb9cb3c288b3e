/* The candor command-line tool: one file per subcommand (tools/cmd_*.c). */
#ifndef CANDOR_CLI_H
#define CANDOR_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "candor/candor.h"

/* Each subcommand: returns the process exit status (0 ok, 1 failure, 2 usage). */
int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_global(int argc, char **argv);
int cmd_surrogate(int argc, char **argv);
int cmd_robustness(int argc, char **argv);

/* Prints "candor: <message>" on stderr and returns 1. */
int cli_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Prints "candor <cmd>: <err->message>" on stderr and returns 1. */
int cli_fail_err(const char *cmd, const cd_error *err);
/* Fills err like the library does; returns code. */
cd_status cli_set_error(cd_error *err, cd_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* True when arg is -h or --help. */
bool cli_is_help(const char *arg);

#endif
