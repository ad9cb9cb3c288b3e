/* Shared helpers for the libFuzzer targets (tests/fuzz/fuzz_*.c).
 *
 * Readers that only take a path (CSV, calibration JSON) get the fuzz input
 * through a per-process temporary file; everything else is fed from memory. */
#ifndef CANDOR_FUZZ_COMMON_H
#define CANDOR_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "candor/candor.h"

/* Writes data to a file unique to this process and returns its path (static
 * buffer: the targets are single-threaded), or NULL on failure. */
static const char *fuzz_temp_file(const uint8_t *data, size_t size, const char *suffix)
{
    static char path[256];
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof path, "%s/candor-fuzz-%ld%s", dir, (long)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    size_t ok = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || ok != size)
        return NULL;
    return path;
}

/* Every failure must come with a message: an empty one is a bug. */
static void fuzz_check_error(cd_status st, const cd_error *err)
{
    if (st != CD_OK && err->message[0] == '\0')
        __builtin_trap();
    if (st != CD_OK && err->code != st)
        __builtin_trap();
}

#endif
