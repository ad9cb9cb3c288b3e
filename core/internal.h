/* candor internals shared by core/, uncertainty/, calibration/, explain/.
 * Not installed. */
#ifndef CANDOR_INTERNAL_H
#define CANDOR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "candor/error.h"
#include "candor/tensor.h"

#define CD_UNUSED(x) ((void)(x))
#define CD_COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

struct cd_tensor {
    cd_dtype dtype;
    int ndim;
    int64_t dims[CD_MAX_DIMS];
    void *data;      /* NULL while only the shape is known */
    size_t capacity; /* bytes available at data */
    bool owns_data;  /* free(data) on release */
};

/* Fills err (if non-NULL) with code and a printf-style message; returns code. */
cd_status cd_fail(cd_error *err, cd_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Prepends "context: " to an existing error message (keeps the code). */
cd_status cd_error_prefix(cd_error *err, cd_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Overflow-checked size arithmetic: return false on overflow. */
bool cd_mul_size(size_t a, size_t b, size_t *out);
bool cd_add_size(size_t a, size_t b, size_t *out);
/* Element count of dims; false when a dim is negative or the product overflows
 * (or exceeds limit when limit != 0). */
bool cd_shape_numel(int ndim, const int64_t *dims, size_t limit, size_t *out);

/* Tensor helpers used inside the library. */
size_t cd_tensor_numel_raw(const cd_tensor *t);
/* Sets dtype/shape without touching data. */
void cd_tensor_set_shape(cd_tensor *t, cd_dtype dtype, int ndim, const int64_t *dims);
/* Makes sure t->data holds at least its numel elements (owned storage).
 * Reuses existing capacity; zero-fills new storage. */
cd_status cd_tensor_ensure(cd_tensor *t, cd_error *err);
/* Releases owned data and resets the struct (the struct itself is not freed). */
void cd_tensor_reset(cd_tensor *t);
bool cd_shape_equal(int na, const int64_t *a, int nb, const int64_t *b);
/* Formats a shape as "[1,3,224,224]" into buf. Returns buf. */
const char *cd_shape_str(int ndim, const int64_t *dims, char *buf, size_t size);

char *cd_strdup(const char *s);

#endif
