/* Atomic file replacement (see atomic_file.h). POSIX only. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"

/* Temporary names are tried with an increasing counter; exclusive creation
 * makes the first free one ours, so no shared counter is needed between
 * threads. */
#define CD_ATOMIC_MAX_TRIES 1000

struct cd_atomic_file {
    FILE *fp;
    char *target;
    char *tmp;
    bool force;
};

static void free_handle(cd_atomic_file *f)
{
    free(f->target);
    free(f->tmp);
    free(f);
}

static cd_status create_temp(cd_atomic_file *f, cd_error *err)
{
    size_t len = strlen(f->target) + 64;
    f->tmp = malloc(len);
    if (!f->tmp)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int n = 0; n < CD_ATOMIC_MAX_TRIES; n++) {
        snprintf(f->tmp, len, "%s.tmp.%ld.%d", f->target, (long)getpid(), n);
        int fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0) {
            if (errno == EEXIST)
                continue;
            return cd_fail(err, CD_ERR_IO, "%s: cannot create temporary file %s: %s",
                           f->target, f->tmp, strerror(errno));
        }
        f->fp = fdopen(fd, "wb");
        if (!f->fp) {
            close(fd);
            unlink(f->tmp);
            return cd_fail(err, CD_ERR_IO, "%s: fdopen failed: %s", f->target,
                           strerror(errno));
        }
        return CD_OK;
    }
    return cd_fail(err, CD_ERR_IO, "%s: no free temporary file name", f->target);
}

cd_status cd_atomic_open(const char *path, bool force, cd_atomic_file **out, cd_error *err)
{
    *out = NULL;
    if (!path || !*path)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "empty output path");
    struct stat st;
    if (!force && stat(path, &st) == 0)
        return cd_fail(err, CD_ERR_IO, "%s: file exists (refusing to overwrite without force)",
                       path);
    cd_atomic_file *f = calloc(1, sizeof *f);
    if (!f)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    f->force = force;
    f->target = cd_strdup(path);
    if (!f->target) {
        free_handle(f);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    cd_status s = create_temp(f, err);
    if (s != CD_OK) {
        free_handle(f);
        return s;
    }
    *out = f;
    return CD_OK;
}

FILE *cd_atomic_stream(cd_atomic_file *f) { return f->fp; }

void cd_atomic_abort(cd_atomic_file *f)
{
    if (!f)
        return;
    if (f->fp)
        fclose(f->fp);
    unlink(f->tmp);
    free_handle(f);
}

/* Makes the rename itself durable; failure here is not an error for the
 * caller (the data is already in place). */
static void sync_parent_dir(const char *path)
{
    char *dir = cd_strdup(path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    const char *name = ".";
    if (slash == dir)
        name = "/";
    else if (slash) {
        *slash = '\0';
        name = dir;
    }
    int fd = open(name, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

/* Without force, link() refuses an existing target atomically, closing the
 * window between the check in open and the final rename. */
static cd_status publish(cd_atomic_file *f, cd_error *err)
{
    if (f->force) {
        if (rename(f->tmp, f->target) != 0)
            return cd_fail(err, CD_ERR_IO, "%s: rename failed: %s", f->target,
                           strerror(errno));
        return CD_OK;
    }
    if (link(f->tmp, f->target) == 0) {
        unlink(f->tmp);
        return CD_OK;
    }
    if (errno == EEXIST)
        return cd_fail(err, CD_ERR_IO, "%s: file exists (refusing to overwrite without force)",
                       f->target);
    /* Filesystems without hard links: fall back to check + rename. */
    struct stat st;
    if (stat(f->target, &st) == 0)
        return cd_fail(err, CD_ERR_IO, "%s: file exists (refusing to overwrite without force)",
                       f->target);
    if (rename(f->tmp, f->target) != 0)
        return cd_fail(err, CD_ERR_IO, "%s: rename failed: %s", f->target, strerror(errno));
    return CD_OK;
}

cd_status cd_atomic_commit(cd_atomic_file *f, cd_error *err)
{
    cd_status s = CD_OK;
    FILE *fp = f->fp;
    f->fp = NULL;
    if (ferror(fp) || fflush(fp) != 0)
        s = cd_fail(err, CD_ERR_IO, "%s: write failed: %s", f->target, strerror(errno));
    else if (fsync(fileno(fp)) != 0)
        s = cd_fail(err, CD_ERR_IO, "%s: fsync failed: %s", f->target, strerror(errno));
    if (fclose(fp) != 0 && s == CD_OK)
        s = cd_fail(err, CD_ERR_IO, "%s: close failed: %s", f->target, strerror(errno));
    if (s == CD_OK)
        s = publish(f, err);
    if (s != CD_OK)
        unlink(f->tmp);
    else
        sync_parent_dir(f->target);
    free_handle(f);
    return s;
}

cd_status cd_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *size,
                       cd_error *err)
{
    *out = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return cd_fail(err, CD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cd_fail(err, CD_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return cd_fail(err, CD_ERR_LIMIT, "%s: file is %lld bytes, above the cap %zu", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory reading %zu bytes", path, n);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(buf);
        return cd_fail(err, CD_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = '\0';
    *out = buf;
    *size = n;
    return CD_OK;
}
