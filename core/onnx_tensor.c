/* TensorProto -> cd_tensor. Everything here treats the file as hostile:
 * element counts and byte sizes are overflow-checked, compared with the
 * configured caps and with the bytes actually present, and external data may
 * only come from files inside the model's folder. */
#define _XOPEN_SOURCE 700 /* realpath, fseeko, fileno */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnx_io.h"

enum {
    T_UNDEFINED = 0, T_FLOAT = 1, T_UINT8 = 2, T_INT8 = 3, T_UINT16 = 4, T_INT16 = 5,
    T_INT32 = 6, T_INT64 = 7, T_STRING = 8, T_BOOL = 9, T_FLOAT16 = 10, T_DOUBLE = 11,
    T_UINT32 = 12, T_UINT64 = 13, T_COMPLEX64 = 14, T_COMPLEX128 = 15, T_BFLOAT16 = 16
};

void cd_onnx_source_init(cd_onnx_source *src, const char *file, const char *base_dir)
{
    memset(src, 0, sizeof *src);
    src->file = file ? file : "<memory>";
    src->base_dir = base_dir;
    src->max_elements = CD_ONNX_DEFAULT_MAX_ELEMENTS;
    src->max_bytes = CD_ONNX_DEFAULT_MAX_BYTES;
}

cd_dtype cd_onnx_storage_dtype(int onnx_type)
{
    switch (onnx_type) {
    case T_FLOAT:
    case T_FLOAT16:
    case T_BFLOAT16: return CD_FLOAT32;
    case T_UINT8: return CD_UINT8;
    case T_INT8: return CD_INT8;
    case T_UINT16:
    case T_INT16:
    case T_INT32: return CD_INT32;
    case T_INT64: return CD_INT64;
    case T_BOOL: return CD_BOOL;
    case T_DOUBLE: return CD_FLOAT64;
    default: return CD_DTYPE_UNDEFINED;
    }
}

cd_dtype cd_onnx_declared_dtype(int onnx_type)
{
    switch (onnx_type) {
    case T_FLOAT: return CD_FLOAT32;
    case T_UINT8: return CD_UINT8;
    case T_INT8: return CD_INT8;
    case T_INT32: return CD_INT32;
    case T_INT64: return CD_INT64;
    case T_BOOL: return CD_BOOL;
    case T_FLOAT16: return CD_FLOAT16;
    case T_DOUBLE: return CD_FLOAT64;
    default: return CD_DTYPE_UNDEFINED;
    }
}

const char *cd_onnx_type_name(int onnx_type)
{
    static const char *const names[] = {
        "undefined", "float32", "uint8",  "int8",   "uint16",    "int16",
        "int32",     "int64",   "string", "bool",   "float16",   "float64",
        "uint32",    "uint64",  "complex64", "complex128", "bfloat16"};
    if (onnx_type < 0 || (size_t)onnx_type >= CD_COUNT_OF(names))
        return "unknown";
    return names[onnx_type];
}

/* Bytes per element in raw_data / external data, 0 for unsupported types. */
static size_t file_elem_size(int onnx_type)
{
    switch (onnx_type) {
    case T_UINT8:
    case T_INT8:
    case T_BOOL: return 1;
    case T_UINT16:
    case T_INT16:
    case T_FLOAT16:
    case T_BFLOAT16: return 2;
    case T_FLOAT:
    case T_INT32: return 4;
    case T_INT64:
    case T_DOUBLE: return 8;
    default: return 0;
    }
}

/* ONNX stores raw data little-endian whatever the host; assembling bytes
 * keeps this portable (compilers turn it into a plain load on x86/ARM). */
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static float bits_to_float(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE half -> float, exact for every value (subnormals, Inf, NaN). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0x1f)
        return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent != 0)
        return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    float f = (float)mantissa * 0x1p-24f; /* zero or subnormal */
    return sign ? -f : f;
}

static float bfloat16_to_float(uint16_t h) { return bits_to_float((uint32_t)h << 16); }

/* Decodes n little-endian elements of onnx_type from src into dst (storage
 * type cd_onnx_storage_dtype(onnx_type)). */
static void decode_raw(int onnx_type, const uint8_t *src, size_t n, void *dst)
{
    size_t es = file_elem_size(onnx_type);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = src + i * es;
        switch (onnx_type) {
        case T_FLOAT: ((float *)dst)[i] = bits_to_float(le32(p)); break;
        case T_UINT8: ((uint8_t *)dst)[i] = p[0]; break;
        case T_INT8: ((int8_t *)dst)[i] = (int8_t)p[0]; break;
        case T_BOOL: ((uint8_t *)dst)[i] = p[0] != 0; break;
        case T_UINT16: ((int32_t *)dst)[i] = le16(p); break;
        case T_INT16: ((int32_t *)dst)[i] = (int16_t)le16(p); break;
        case T_INT32: ((int32_t *)dst)[i] = (int32_t)le32(p); break;
        case T_INT64: ((int64_t *)dst)[i] = (int64_t)le64(p); break;
        case T_FLOAT16: ((float *)dst)[i] = half_to_float(le16(p)); break;
        case T_BFLOAT16: ((float *)dst)[i] = bfloat16_to_float(le16(p)); break;
        case T_DOUBLE: {
            uint64_t u = le64(p);
            memcpy((double *)dst + i, &u, sizeof u);
            break;
        }
        default: break;
        }
    }
}

/* Narrow types travel in int32_data, one element per int32. */
static void decode_int32_field(int onnx_type, const int32_t *src, size_t n, void *dst)
{
    for (size_t i = 0; i < n; i++) {
        int32_t v = src[i];
        switch (onnx_type) {
        case T_UINT8: ((uint8_t *)dst)[i] = (uint8_t)v; break;
        case T_INT8: ((int8_t *)dst)[i] = (int8_t)v; break;
        case T_BOOL: ((uint8_t *)dst)[i] = v != 0; break;
        case T_UINT16: ((int32_t *)dst)[i] = (uint16_t)v; break;
        case T_INT16: ((int32_t *)dst)[i] = (int16_t)v; break;
        case T_INT32: ((int32_t *)dst)[i] = v; break;
        case T_FLOAT16: ((float *)dst)[i] = half_to_float((uint16_t)v); break;
        case T_BFLOAT16: ((float *)dst)[i] = bfloat16_to_float((uint16_t)v); break;
        default: break;
        }
    }
}

/* Copies the typed repeated field that holds onnx_type's elements. */
static cd_status decode_typed(const CandorOnnx__TensorProto *tp, const char *what,
                              const cd_onnx_source *src, size_t n, void *dst, cd_error *err)
{
    size_t have;
    const char *field;
    switch (tp->data_type) {
    case T_FLOAT: have = tp->n_float_data; field = "float_data"; break;
    case T_INT64: have = tp->n_int64_data; field = "int64_data"; break;
    case T_DOUBLE: have = tp->n_double_data; field = "double_data"; break;
    default: have = tp->n_int32_data; field = "int32_data"; break;
    }
    if (have != n)
        return cd_fail(err, CD_ERR_PARSE, "%s: %s: %s holds %zu values, expected %zu", src->file,
                       what, field, have, n);
    if (n == 0) /* empty tensor: the repeated field pointer may be NULL */
        return CD_OK;
    switch (tp->data_type) {
    case T_FLOAT: memcpy(dst, tp->float_data, n * sizeof(float)); break;
    case T_INT64: memcpy(dst, tp->int64_data, n * sizeof(int64_t)); break;
    case T_DOUBLE: memcpy(dst, tp->double_data, n * sizeof(double)); break;
    default: decode_int32_field(tp->data_type, tp->int32_data, n, dst); break;
    }
    return CD_OK;
}

/* Parses a non-negative decimal integer (external data offset/length). */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = (uint64_t)v;
    return true;
}

/* A relative path without ".." components, so it cannot name anything above
 * the model's folder lexically; symlinks are checked after realpath. */
static bool location_is_confined(const char *loc)
{
    if (loc[0] == '/' || loc[0] == '\\' || strchr(loc, '\\') || strchr(loc, ':'))
        return false;
    for (const char *p = loc; *p;) {
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return false;
        p += len;
        while (*p == '/')
            p++;
    }
    return true;
}

/* Resolves location inside base_dir into a new malloc'd real path. */
static cd_status resolve_external_path(const cd_onnx_source *src, const char *what,
                                       const char *loc, char **out, cd_error *err)
{
    if (!src->base_dir)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "%s: %s: external data '%s' needs the model's folder (none given)",
                       src->file, what, loc);
    if (!location_is_confined(loc))
        return cd_fail(err, CD_ERR_PARSE,
                       "%s: %s: external data location '%s' escapes the model folder "
                       "(absolute paths and '..' are refused)",
                       src->file, what, loc);
    size_t len = strlen(src->base_dir) + strlen(loc) + 2;
    char *joined = malloc(len);
    char *real_base = realpath(src->base_dir, NULL);
    if (!joined || !real_base) {
        free(joined);
        free(real_base);
        return cd_fail(err, CD_ERR_IO, "%s: model folder '%s': %s", src->file, src->base_dir,
                       strerror(errno));
    }
    snprintf(joined, len, "%s/%s", src->base_dir, loc);
    char *real = realpath(joined, NULL);
    int saved = errno;
    free(joined);
    if (!real) {
        free(real_base);
        return cd_fail(err, CD_ERR_IO, "%s: %s: external data file '%s': %s", src->file, what,
                       loc, strerror(saved));
    }
    size_t nb = strlen(real_base);
    bool inside = strncmp(real, real_base, nb) == 0 && (real[nb] == '/' || nb == 1);
    free(real_base);
    if (!inside) {
        free(real);
        return cd_fail(err, CD_ERR_PARSE,
                       "%s: %s: external data location '%s' resolves outside the model folder",
                       src->file, what, loc);
    }
    *out = real;
    return CD_OK;
}

/* Reads the bytes of an external-data tensor (expected bytes long). */
static cd_status read_external(const CandorOnnx__TensorProto *tp, const char *what,
                               const cd_onnx_source *src, size_t expected, uint8_t **out,
                               cd_error *err)
{
    const char *loc = NULL;
    uint64_t offset = 0, length = expected;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const char *k = tp->external_data[i]->key, *v = tp->external_data[i]->value;
        if (!k)
            continue;
        bool ok = true;
        if (strcmp(k, "location") == 0)
            loc = v;
        else if (strcmp(k, "offset") == 0)
            ok = parse_u64(v, &offset);
        else if (strcmp(k, "length") == 0)
            ok = parse_u64(v, &length);
        if (!ok)
            return cd_fail(err, CD_ERR_PARSE, "%s: %s: external data %s '%s' is not a number",
                           src->file, what, k, v ? v : "");
    }
    if (!loc || !loc[0])
        return cd_fail(err, CD_ERR_PARSE, "%s: %s: external data without a location",
                       src->file, what);
    if (length != expected)
        return cd_fail(err, CD_ERR_PARSE,
                       "%s: %s: external data length %llu does not match the %zu bytes its "
                       "shape needs", src->file, what, (unsigned long long)length, expected);
    char *path = NULL;
    cd_status st = resolve_external_path(src, what, loc, &path, err);
    if (st != CD_OK)
        return st;
    uint8_t *buf = NULL;
    FILE *f = fopen(path, "rb");
    struct stat sb;
    if (!f || fstat(fileno(f), &sb) != 0) {
        st = cd_fail(err, CD_ERR_IO, "%s: %s: external data file '%s': %s", src->file, what,
                     loc, strerror(errno));
    } else if (offset > (uint64_t)sb.st_size || length > (uint64_t)sb.st_size - offset ||
               offset > (uint64_t)LLONG_MAX) {
        st = cd_fail(err, CD_ERR_PARSE,
                     "%s: %s: external data [%llu, +%llu) lies beyond the end of '%s' (%lld "
                     "bytes)", src->file, what, (unsigned long long)offset,
                     (unsigned long long)length, loc, (long long)sb.st_size);
    } else if (!(buf = malloc(expected ? expected : 1))) {
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", src->file, what);
    } else if (fseeko(f, (off_t)offset, SEEK_SET) != 0 ||
               fread(buf, 1, expected, f) != expected) {
        st = cd_fail(err, CD_ERR_IO, "%s: %s: reading external data '%s' failed", src->file,
                     what, loc);
    }
    if (f)
        fclose(f);
    free(path);
    if (st != CD_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return CD_OK;
}

/* Validates dims/type against the caps; fills the shape and sizes. */
static cd_status check_shape(const CandorOnnx__TensorProto *tp, const char *what,
                             cd_onnx_source *src, cd_tensor *t, size_t *n, size_t *bytes,
                             cd_error *err)
{
    int type = tp->has_data_type ? tp->data_type : T_UNDEFINED;
    if (type == T_UNDEFINED)
        return cd_fail(err, CD_ERR_PARSE, "%s: %s: data_type is missing", src->file, what);
    cd_dtype dt = cd_onnx_storage_dtype(type);
    if (dt == CD_DTYPE_UNDEFINED)
        return cd_fail(err, CD_ERR_UNSUPPORTED, "%s: %s: tensors of type %s are not supported",
                       src->file, what, cd_onnx_type_name(type));
    if (tp->has_segment)
        return cd_fail(err, CD_ERR_UNSUPPORTED, "%s: %s: segmented tensors are not supported",
                       src->file, what);
    if (tp->n_dims > CD_MAX_DIMS)
        return cd_fail(err, CD_ERR_UNSUPPORTED, "%s: %s: rank %zu exceeds candor's limit of %d",
                       src->file, what, tp->n_dims, CD_MAX_DIMS);
    for (size_t i = 0; i < tp->n_dims; i++)
        if (tp->dims[i] < 0)
            return cd_fail(err, CD_ERR_PARSE, "%s: %s: dimension %zu is negative (%lld)",
                           src->file, what, i, (long long)tp->dims[i]);
    t->dtype = dt;
    t->ndim = (int)tp->n_dims;
    for (size_t i = 0; i < tp->n_dims; i++)
        t->dims[i] = tp->dims[i];
    char shape[128];
    if (!cd_shape_numel(t->ndim, t->dims, 0, n) || (uint64_t)*n > src->max_elements)
        return cd_fail(err, CD_ERR_LIMIT, "%s: %s: shape %s exceeds the limit of %llu elements",
                       src->file, what, cd_shape_str(t->ndim, t->dims, shape, sizeof shape),
                       (unsigned long long)src->max_elements);
    if (!cd_mul_size(*n, cd_dtype_size(dt), bytes) ||
        (uint64_t)*bytes > src->max_bytes - (src->total_bytes < src->max_bytes
                                                  ? src->total_bytes : src->max_bytes))
        return cd_fail(err, CD_ERR_LIMIT,
                       "%s: %s: tensor data exceeds the limit of %llu bytes of weights",
                       src->file, what, (unsigned long long)src->max_bytes);
    return CD_OK;
}

static bool is_external(const CandorOnnx__TensorProto *tp)
{
    return tp->has_data_location &&
           tp->data_location == CANDOR_ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
}

/* Checks that the data the shape needs is really there — raw_data of the
 * right length, a typed field of the right count, or an external file long
 * enough (read into *ext, caller frees) — so an absurd declared shape fails
 * before the tensor is allocated. */
static cd_status check_data_present(const CandorOnnx__TensorProto *tp, const char *what,
                                    const cd_onnx_source *src, size_t n, uint8_t **ext,
                                    cd_error *err)
{
    size_t es = file_elem_size(tp->data_type), need, have;
    const char *field;
    if (!cd_mul_size(n, es, &need))
        return cd_fail(err, CD_ERR_LIMIT, "%s: %s: size overflows", src->file, what);
    if (is_external(tp))
        return read_external(tp, what, src, need, ext, err);
    if (tp->has_raw_data && (tp->raw_data.len > 0 || n == 0)) {
        if (tp->raw_data.len != need)
            return cd_fail(err, CD_ERR_PARSE,
                           "%s: %s: raw_data holds %zu bytes, expected %zu (%zu %s elements)",
                           src->file, what, tp->raw_data.len, need, n,
                           cd_onnx_type_name(tp->data_type));
        return CD_OK;
    }
    switch (tp->data_type) {
    case T_FLOAT: have = tp->n_float_data; field = "float_data"; break;
    case T_INT64: have = tp->n_int64_data; field = "int64_data"; break;
    case T_DOUBLE: have = tp->n_double_data; field = "double_data"; break;
    default: have = tp->n_int32_data; field = "int32_data"; break;
    }
    if (have != n)
        return cd_fail(err, CD_ERR_PARSE, "%s: %s: %s holds %zu values, expected %zu", src->file,
                       what, field, have, n);
    return CD_OK;
}

/* Fills t->data (already allocated for n elements) from the proto, whose
 * sizes check_data_present has validated; ext holds external bytes. */
static cd_status fill_data(const CandorOnnx__TensorProto *tp, const char *what,
                           const cd_onnx_source *src, size_t n, const uint8_t *ext,
                           cd_tensor *t, cd_error *err)
{
    if (is_external(tp)) {
        decode_raw(tp->data_type, ext, n, t->data);
        return CD_OK;
    }
    if (tp->has_raw_data && (tp->raw_data.len > 0 || n == 0)) {
        decode_raw(tp->data_type, tp->raw_data.data, n, t->data);
        return CD_OK;
    }
    return decode_typed(tp, what, src, n, t->data, err);
}

cd_status cd_onnx_tensor_from_proto(const CandorOnnx__TensorProto *tp, const char *what,
                                    cd_onnx_source *src, cd_tensor **out, cd_error *err)
{
    *out = NULL;
    cd_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", src->file, what);
    size_t n = 0, bytes = 0;
    uint8_t *ext = NULL;
    cd_status st = check_shape(tp, what, src, t, &n, &bytes, err);
    if (st == CD_OK)
        st = check_data_present(tp, what, src, n, &ext, err);
    if (st == CD_OK && (st = cd_tensor_ensure(t, err)) != CD_OK)
        cd_error_prefix(err, st, "%s: %s", src->file, what);
    if (st == CD_OK)
        st = fill_data(tp, what, src, n, ext, t, err);
    free(ext);
    if (st != CD_OK) {
        cd_tensor_free(t);
        return st;
    }
    src->total_bytes += bytes;
    *out = t;
    return CD_OK;
}

cd_status cd_onnx_read_file(const char *path, uint8_t **bytes, size_t *size, cd_error *err)
{
    *bytes = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    struct stat sb;
    if (!f)
        return cd_fail(err, CD_ERR_IO, "%s: %s", path, strerror(errno));
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return cd_fail(err, CD_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX - 1) {
        fclose(f);
        return cd_fail(err, CD_ERR_LIMIT, "%s: file too large", path);
    }
    size_t n = (size_t)sb.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: out of memory reading %zu bytes", path,
                       n);
    }
    size_t got = fread(buf, 1, n, f);
    int failed = ferror(f);
    fclose(f);
    if (got != n || failed) {
        free(buf);
        return cd_fail(err, CD_ERR_IO, "%s: read error", path);
    }
    *bytes = buf;
    *size = n;
    return CD_OK;
}

cd_status cd_onnx_read_tensor_memory(const void *bytes, size_t size, const char *what,
                                     cd_tensor **out, int *onnx_type, cd_error *err)
{
    *out = NULL;
    if (onnx_type)
        *onnx_type = T_UNDEFINED;
    CandorOnnx__TensorProto *tp = candor_onnx__tensor_proto__unpack(NULL, size, bytes);
    if (!tp)
        return cd_fail(err, CD_ERR_PARSE, "%s: not a valid ONNX TensorProto (protobuf parse "
                       "failed)", what);
    if (onnx_type)
        *onnx_type = tp->has_data_type ? tp->data_type : T_UNDEFINED;
    cd_onnx_source src;
    cd_onnx_source_init(&src, what, NULL);
    char label[256];
    snprintf(label, sizeof label, "tensor '%s'", tp->name ? tp->name : "");
    cd_status st = cd_onnx_tensor_from_proto(tp, label, &src, out, err);
    candor_onnx__tensor_proto__free_unpacked(tp, NULL);
    return st;
}

cd_status cd_onnx_read_tensor_file(const char *path, cd_tensor **out, int *onnx_type,
                                   cd_error *err)
{
    uint8_t *bytes = NULL;
    size_t size = 0;
    *out = NULL;
    cd_status st = cd_onnx_read_file(path, &bytes, &size, err);
    if (st != CD_OK)
        return st;
    st = cd_onnx_read_tensor_memory(bytes, size, path, out, onnx_type, err);
    free(bytes);
    return st;
}
