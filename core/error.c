#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *cd_status_name(cd_status status)
{
    switch (status) {
    case CD_OK: return "ok";
    case CD_ERR_INVALID_ARGUMENT: return "invalid-argument";
    case CD_ERR_IO: return "io";
    case CD_ERR_PARSE: return "parse";
    case CD_ERR_UNSUPPORTED: return "unsupported";
    case CD_ERR_SHAPE: return "shape";
    case CD_ERR_OUT_OF_MEMORY: return "out-of-memory";
    case CD_ERR_LIMIT: return "limit";
    case CD_ERR_NUMERIC: return "numeric";
    case CD_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

void cd_error_clear(cd_error *err)
{
    if (!err)
        return;
    err->code = CD_OK;
    err->message[0] = '\0';
}

cd_status cd_fail(cd_error *err, cd_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

cd_status cd_error_prefix(cd_error *err, cd_status code, const char *fmt, ...)
{
    if (!err)
        return code;
    char prefix[CD_ERROR_MESSAGE_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[CD_ERROR_MESSAGE_SIZE];
    memcpy(old, err->message, sizeof old);
    old[sizeof old - 1] = '\0';
    snprintf(err->message, sizeof err->message, "%s: %s", prefix, old);
    if (err->code == CD_OK)
        err->code = code;
    return err->code;
}

char *cd_strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
