/* Output helpers shared by the CLI commands (see cli_util.h). */
#include "cli_util.h"

#include <math.h>

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

const char *cli_label(const cd_model *m, int k, char *buf, size_t n)
{
    const char *l = k < cd_model_label_count(m) ? cd_model_label(m, k) : NULL;
    if (l)
        return l;
    snprintf(buf, n, "class %d", k);
    return buf;
}
