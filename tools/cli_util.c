/* Output helpers shared by the CLI commands (see cli_util.h). */
#include "cli_util.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void cli_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

void cli_json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

int cli_apply_options(int argc, char **argv, const struct option *opts, const char *cmd,
                      void (*help)(FILE *), cli_apply_fn apply, void *ctx)
{
    int c, li = -1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, &li)) != -1) {
        if (c == 'h') {
            help(stdout);
            return 1;
        }
        if (c == '?' || !apply(c, optarg, ctx)) {
            if (c != '?' && li >= 0)
                cli_fail("%s: bad value '%s' for --%s", cmd, optarg ? optarg : "",
                         opts[li].name);
            else if (c != '?')
                cli_fail("%s: bad value '%s' for -%c", cmd, optarg ? optarg : "", c);
            help(stderr);
            return 2;
        }
        li = -1; /* getopt_long sets it for long options only */
    }
    return 0;
}

const char *cli_label(const cd_model *m, int k, char *buf, size_t n)
{
    const char *l = k < cd_model_label_count(m) ? cd_model_label(m, k) : NULL;
    if (l)
        return l;
    snprintf(buf, n, "class %d", k);
    return buf;
}

bool cli_parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

bool cli_parse_float(const char *s, float lo, float *out)
{
    char *end;
    float v = strtof(s, &end);
    if (*end || end == s || !isfinite(v) || v < lo)
        return false;
    *out = v;
    return true;
}

char *cli_join_args(int argc, char **argv)
{
    size_t len = strlen("candor") + 1;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    strcpy(s, "candor");
    for (int i = 0; i < argc; i++) {
        strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

