#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

bool cd_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

bool cd_add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return false;
    *out = a + b;
    return true;
}

bool cd_shape_numel(int ndim, const int64_t *dims, size_t limit, size_t *out)
{
    size_t n = 1;
    if (ndim < 0 || ndim > CD_MAX_DIMS)
        return false;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0 || (uint64_t)dims[i] > SIZE_MAX)
            return false;
        if (!cd_mul_size(n, (size_t)dims[i], &n))
            return false;
    }
    if (limit && n > limit)
        return false;
    *out = n;
    return true;
}

size_t cd_dtype_size(cd_dtype dtype)
{
    switch (dtype) {
    case CD_FLOAT32: return 4;
    case CD_UINT8: return 1;
    case CD_INT8: return 1;
    case CD_INT32: return 4;
    case CD_INT64: return 8;
    case CD_BOOL: return 1;
    case CD_FLOAT16: return 2;
    case CD_FLOAT64: return 8;
    default: return 0;
    }
}

const char *cd_dtype_name(cd_dtype dtype)
{
    switch (dtype) {
    case CD_FLOAT32: return "float32";
    case CD_UINT8: return "uint8";
    case CD_INT8: return "int8";
    case CD_INT32: return "int32";
    case CD_INT64: return "int64";
    case CD_BOOL: return "bool";
    case CD_FLOAT16: return "float16";
    case CD_FLOAT64: return "float64";
    default: return "undefined";
    }
}

size_t cd_tensor_numel_raw(const cd_tensor *t)
{
    size_t n = 0;
    if (!cd_shape_numel(t->ndim, t->dims, 0, &n))
        return 0;
    return n;
}

void cd_tensor_set_shape(cd_tensor *t, cd_dtype dtype, int ndim, const int64_t *dims)
{
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim && i < CD_MAX_DIMS; i++)
        t->dims[i] = dims[i];
}

cd_status cd_tensor_ensure(cd_tensor *t, cd_error *err)
{
    size_t n, bytes;
    size_t es = cd_dtype_size(t->dtype);
    if (es == 0)
        return cd_fail(err, CD_ERR_UNSUPPORTED, "tensor of type %s cannot be stored",
                       cd_dtype_name(t->dtype));
    if (!cd_shape_numel(t->ndim, t->dims, 0, &n) || !cd_mul_size(n, es, &bytes))
        return cd_fail(err, CD_ERR_LIMIT, "tensor size overflows");
    if (t->data && t->capacity >= bytes)
        return CD_OK;
    if (t->data && !t->owns_data)
        return cd_fail(err, CD_ERR_INTERNAL, "borrowed tensor storage too small");
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes", bytes);
    if (t->owns_data)
        free(t->data);
    t->data = p;
    t->capacity = bytes;
    t->owns_data = true;
    return CD_OK;
}

void cd_tensor_reset(cd_tensor *t)
{
    if (t->owns_data)
        free(t->data);
    memset(t, 0, sizeof *t);
}

bool cd_shape_equal(int na, const int64_t *a, int nb, const int64_t *b)
{
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

const char *cd_shape_str(int ndim, const int64_t *dims, char *buf, size_t size)
{
    size_t used = 0;
    if (size == 0)
        return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf + used, size - used, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ",%lld" : "%lld",
                                 (long long)dims[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}

cd_status cd_tensor_create(cd_dtype dtype, int ndim, const int64_t *dims, cd_tensor **out,
                           cd_error *err)
{
    *out = NULL;
    if (ndim < 0 || ndim > CD_MAX_DIMS)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "tensor rank %d outside 0..%d", ndim,
                       CD_MAX_DIMS);
    if (cd_dtype_size(dtype) == 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "unsupported tensor type %d", (int)dtype);
    for (int i = 0; i < ndim; i++)
        if (dims[i] < 0)
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "negative dimension %lld",
                           (long long)dims[i]);
    cd_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    cd_tensor_set_shape(t, dtype, ndim, dims);
    cd_status st = cd_tensor_ensure(t, err);
    if (st != CD_OK) {
        free(t);
        return st;
    }
    *out = t;
    return CD_OK;
}

cd_status cd_tensor_from_data(cd_dtype dtype, int ndim, const int64_t *dims, const void *data,
                              cd_tensor **out, cd_error *err)
{
    cd_status st = cd_tensor_create(dtype, ndim, dims, out, err);
    if (st != CD_OK)
        return st;
    size_t bytes = cd_tensor_nbytes(*out);
    if (bytes)
        memcpy((*out)->data, data, bytes);
    return CD_OK;
}

cd_status cd_tensor_clone(const cd_tensor *t, cd_tensor **out, cd_error *err)
{
    return cd_tensor_from_data(t->dtype, t->ndim, t->dims, t->data, out, err);
}

void cd_tensor_free(cd_tensor *t)
{
    if (!t)
        return;
    cd_tensor_reset(t);
    free(t);
}

cd_dtype cd_tensor_dtype(const cd_tensor *t) { return t->dtype; }
int cd_tensor_ndim(const cd_tensor *t) { return t->ndim; }
const int64_t *cd_tensor_dims(const cd_tensor *t) { return t->dims; }
size_t cd_tensor_numel(const cd_tensor *t) { return cd_tensor_numel_raw(t); }
size_t cd_tensor_nbytes(const cd_tensor *t) { return cd_tensor_numel_raw(t) * cd_dtype_size(t->dtype); }
void *cd_tensor_data(cd_tensor *t) { return t->data; }
const void *cd_tensor_cdata(const cd_tensor *t) { return t->data; }
