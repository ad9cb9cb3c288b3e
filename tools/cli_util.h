/* Small helpers shared by the CLI commands: JSON strings and numbers, class
 * names for printing, option values, the command line. */
#ifndef CANDOR_CLI_UTIL_H
#define CANDOR_CLI_UTIL_H

#include <stddef.h>
#include <stdio.h>

#include "cli.h"

/* Writes s as a JSON string literal: quotes and backslashes escaped, control
 * characters as \u00XX. NULL writes "". */
void cli_json_str(FILE *f, const char *s);
/* Writes v with 9 significant digits, or null when it is not finite (JSON has
 * no NaN or infinity). */
void cli_json_num(FILE *f, double v);
/* Option values: the whole of s must be a base-10 integer in [lo, hi], or a
 * finite float >= lo; *out is written only on success. */
bool cli_parse_int(const char *s, long lo, long hi, int *out);
bool cli_parse_float(const char *s, float lo, float *out);
/* "candor" and argv[0..argc-1] joined by spaces, for reports that record
 * the command line; malloc'ed (caller frees), NULL when out of memory. */
char *cli_join_args(int argc, char **argv);
struct option;
/* Applies one option's value to ctx; false when the value is bad. */
typedef bool (*cli_apply_fn)(int opt, const char *value, void *ctx);
/* The option loop of commands that apply options one by one: getopt_long
 * over argv with short options "ho:" and opts (optind reset). Returns 1
 * after -h/--help (help on stdout); 2 after an unknown option or a value
 * apply rejects ("candor: CMD: bad value 'V' for OPT", then help on
 * stderr); 0 once every option was applied (operands start at optind). */
int cli_apply_options(int argc, char **argv, const struct option *opts, const char *cmd,
                      void (*help)(FILE *), cli_apply_fn apply, void *ctx);
/* The model's label for class k, else "class <k>" formatted into buf. */
const char *cli_label(const cd_model *m, int k, char *buf, size_t n);

#endif
