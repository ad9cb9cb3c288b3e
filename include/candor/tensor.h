/* candor — tensors.
 *
 * A cd_tensor is an n-dimensional array in C (row-major) order. Element types
 * follow ONNX's TensorProto data type numbers. Tensors returned by candor are
 * owned by the caller and released with cd_tensor_free. */
#ifndef CANDOR_TENSOR_H
#define CANDOR_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CD_MAX_DIMS 8

typedef enum cd_dtype {
    CD_DTYPE_UNDEFINED = 0,
    CD_FLOAT32 = 1,
    CD_UINT8 = 2,
    CD_INT8 = 3,
    CD_INT32 = 6,
    CD_INT64 = 7,
    CD_BOOL = 9,
    CD_FLOAT16 = 10,
    CD_FLOAT64 = 11
} cd_dtype;

typedef struct cd_tensor cd_tensor;

/* Size in bytes of one element of dtype, 0 for unknown types. */
CD_API size_t cd_dtype_size(cd_dtype dtype);
/* Short name of dtype ("float32", "int64", ...). Never NULL. */
CD_API const char *cd_dtype_name(cd_dtype dtype);

/* Creates a zero-filled tensor. ndim may be 0 (a scalar). Dimensions must be
 * >= 0 and the element count must not overflow. *out is owned by the caller. */
CD_API cd_status cd_tensor_create(cd_dtype dtype, int ndim, const int64_t *dims,
                                  cd_tensor **out, cd_error *err);
/* Creates a tensor that copies count elements of dtype from data. */
CD_API cd_status cd_tensor_from_data(cd_dtype dtype, int ndim, const int64_t *dims,
                                     const void *data, cd_tensor **out, cd_error *err);
/* Deep copy. *out is owned by the caller. */
CD_API cd_status cd_tensor_clone(const cd_tensor *t, cd_tensor **out, cd_error *err);
/* Releases a tensor. Accepts NULL. */
CD_API void cd_tensor_free(cd_tensor *t);

CD_API cd_dtype cd_tensor_dtype(const cd_tensor *t);
CD_API int cd_tensor_ndim(const cd_tensor *t);
/* Pointer to ndim dimensions, valid as long as the tensor. */
CD_API const int64_t *cd_tensor_dims(const cd_tensor *t);
CD_API size_t cd_tensor_numel(const cd_tensor *t);
CD_API size_t cd_tensor_nbytes(const cd_tensor *t);
/* Element storage, owned by the tensor. */
CD_API void *cd_tensor_data(cd_tensor *t);
CD_API const void *cd_tensor_cdata(const cd_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
