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
/* The model's label for class k, else "class <k>" formatted into buf. */
const char *cli_label(const cd_model *m, int k, char *buf, size_t n);

#endif
