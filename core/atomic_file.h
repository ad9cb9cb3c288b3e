/* Atomic file replacement: write everything to a temporary file in the
 * target's folder, fsync it, then rename it over the target. Readers never
 * see a half-written file, and a failed write leaves the old file intact.
 *
 * Usage:
 *   cd_atomic_file *f;
 *   if (cd_atomic_open(path, force, &f, err) != CD_OK) return ...;
 *   fwrite(..., cd_atomic_stream(f));
 *   if (failed) { cd_atomic_abort(f); return ...; }
 *   return cd_atomic_commit(f, err);   // consumes f in every case
 */
#ifndef CANDOR_ATOMIC_FILE_H
#define CANDOR_ATOMIC_FILE_H

#include <stdbool.h>
#include <stdio.h>

#include "internal.h"

typedef struct cd_atomic_file cd_atomic_file;

/* Creates "<path>.tmp.<pid>.<n>" next to path (exclusive create, first free n).
 * With force false, fails with CD_ERR_IO when path already exists (checked
 * again, race-free, at commit). *out is consumed by commit or abort. */
cd_status cd_atomic_open(const char *path, bool force, cd_atomic_file **out, cd_error *err);
/* The stream to write into (binary mode). Owned by f; do not fclose it. */
FILE *cd_atomic_stream(cd_atomic_file *f);
/* Flushes, fsyncs and renames the temporary over the target, then frees f.
 * On any failure the temporary is removed and the target is untouched. */
cd_status cd_atomic_commit(cd_atomic_file *f, cd_error *err);
/* Discards the temporary file and frees f. Accepts NULL. */
void cd_atomic_abort(cd_atomic_file *f);

/* The reading counterpart used by the image and sidecar loaders: reads a
 * whole file into a new buffer (*out, free() it; one extra NUL byte is
 * appended and not counted in *size). Files above max_bytes fail with
 * CD_ERR_LIMIT before anything is allocated. */
cd_status cd_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *size,
                       cd_error *err);

#endif
