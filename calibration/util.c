/* Small shared helpers: comparators, softmax, atomic file writes. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_errno.h>

#include "calibration/calib_internal.h"
#include "core/internal.h"

int cd_calib_argmax(const double *row, int k)
{
    int best = 0;
    for (int c = 1; c < k; c++)
        if (row[c] > row[best])
            best = c;
    return best;
}

void cd_calib_confidences(const double *probs, const int *labels, size_t n, int k, double *conf,
                          unsigned char *correct)
{
    for (size_t i = 0; i < n; i++) {
        const double *row = probs + i * (size_t)k;
        int best = cd_calib_argmax(row, k);
        conf[i] = row[best];
        correct[i] = best == labels[i];
    }
}

int cd_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void cd_softmax_rows(const double *logits, size_t n, int k, double *out)
{
    for (size_t i = 0; i < n; i++) {
        const double *z = logits + i * (size_t)k;
        double *p = out + i * (size_t)k;
        double mx = z[0];
        for (int c = 1; c < k; c++)
            if (z[c] > mx)
                mx = z[c];
        double s = 0;
        for (int c = 0; c < k; c++) {
            p[c] = exp(z[c] - mx);
            s += p[c];
        }
        for (int c = 0; c < k; c++)
            p[c] /= s;
    }
}

/* The temp file lives next to the target so rename() stays atomic (same
 * file system); a reader never sees a half-written report. */
cd_status cd_write_file_atomic(const char *path, const void *data, size_t size, cd_error *err)
{
    if (!path || (!data && size))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "write: NULL path or data");
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "write: %s", path);
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        cd_status st = cd_fail(err, CD_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    int ok = fwrite(data, 1, size, f) == size;
    /* Durable before the rename, so a power cut cannot leave an empty target. */
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        cd_status st = cd_fail(err, CD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        remove(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    return CD_OK;
}

/* GSL's default error handler calls abort(): a library must never take the
 * process down on bad numbers, so every calibration entry point switches it
 * off and checks the GSL return codes instead. The handler is process-wide
 * state owned by GSL; setting it to "off" is idempotent, so concurrent calls
 * race only to write the same value. A host that installed its own handler
 * on purpose gets it replaced: documented in docs/calibration.md. */
void cd_calib_gsl_quiet(void)
{
    gsl_set_error_handler_off();
}
