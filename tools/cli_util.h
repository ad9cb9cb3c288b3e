/* Small output helpers shared by the CLI commands: JSON strings and numbers,
 * and class names for printing. */
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
/* The model's label for class k, else "class <k>" formatted into buf. */
const char *cli_label(const cd_model *m, int k, char *buf, size_t n);

#endif
