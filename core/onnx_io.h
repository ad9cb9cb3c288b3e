/* ONNX protobuf <-> candor internals: TensorProto conversion and file
 * reading shared by the model loader (core/onnx_load.c), the tensor reader
 * (core/onnx_tensor.c) and the conformance runner. Not installed. */
#ifndef CANDOR_ONNX_IO_H
#define CANDOR_ONNX_IO_H

#include "internal.h"
#include "onnx_subset.pb-c.h"

/* Defaults of cd_load_options (see include/candor/model.h). */
#define CD_ONNX_DEFAULT_MAX_ELEMENTS ((uint64_t)1 << 31)
#define CD_ONNX_DEFAULT_MAX_BYTES ((uint64_t)8 << 30)
#define CD_ONNX_DEFAULT_MAX_NODES 1000000u
#define CD_ONNX_DEFAULT_MAX_DEPTH 100000u

/* Where a tensor comes from and what it may cost. One per load; the running
 * byte total is shared by every tensor converted during that load. */
typedef struct cd_onnx_source {
    const char *file;      /* file name used in messages ("<memory>" if none) */
    const char *base_dir;  /* folder for external data; NULL refuses it */
    uint64_t max_elements; /* per tensor */
    uint64_t max_bytes;    /* all tensors together */
    uint64_t total_bytes;  /* bytes converted so far (updated) */
} cd_onnx_source;

/* Fills src with the defaults for file/base_dir (both may be NULL). */
void cd_onnx_source_init(cd_onnx_source *src, const char *file, const char *base_dir);

/* Converts a TensorProto into a new tensor owned by the caller.
 * what names the tensor in error messages (e.g. "initializer 'W'").
 * float16/bfloat16 become float32 and int16/uint16 become int32 (lossless
 * widenings: candor has no kernels for the narrow types); other types keep
 * their ONNX type. External data is read from src->base_dir. Every size is
 * overflow-checked and compared with the bytes actually present. */
cd_status cd_onnx_tensor_from_proto(const CandorOnnx__TensorProto *tp, const char *what,
                                    cd_onnx_source *src, cd_tensor **out, cd_error *err);

/* Maps an ONNX TensorProto data type to the cd_dtype a tensor of that type is
 * stored as (after the widenings above), or CD_DTYPE_UNDEFINED. */
cd_dtype cd_onnx_storage_dtype(int onnx_type);
/* Maps an ONNX data type to the same-named cd_dtype (no widening), or
 * CD_DTYPE_UNDEFINED when candor has no such type. For declared types. */
cd_dtype cd_onnx_declared_dtype(int onnx_type);
/* Short name of an ONNX data type ("float16", "string", ...). Never NULL. */
const char *cd_onnx_type_name(int onnx_type);

/* Reads a whole file into a new malloc'd buffer (*bytes owned by the caller).
 * Missing/unreadable files give CD_ERR_IO with the path and strerror. */
cd_status cd_onnx_read_file(const char *path, uint8_t **bytes, size_t *size, cd_error *err);

/* Reads a serialized TensorProto (.pb file as in the ONNX test folders) into
 * a new tensor owned by the caller. *onnx_type (may be NULL) receives the
 * tensor's original ONNX data type, so callers can tell a float16 file from
 * a float32 one. External data is refused. */
cd_status cd_onnx_read_tensor_file(const char *path, cd_tensor **out, int *onnx_type,
                                   cd_error *err);
cd_status cd_onnx_read_tensor_memory(const void *bytes, size_t size, const char *what,
                                     cd_tensor **out, int *onnx_type, cd_error *err);

#endif
