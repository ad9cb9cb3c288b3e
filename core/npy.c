/* NumPy .npy reading and writing.
 *
 * Format (numpy.lib.format): magic "\x93NUMPY", major, minor version, header
 * length (uint16 LE for 1.0, uint32 LE for 2.0/3.0), then an ASCII (3.0:
 * UTF-8) Python dict literal {'descr': ..., 'fortran_order': ...,
 * 'shape': (...)} padded with spaces and a final newline, then the raw data.
 * The header comes from the file, so it is parsed strictly: exactly those
 * three keys, integer shapes checked for overflow, sizes capped before any
 * allocation, and the data length must match exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "candor/image.h"
#include "atomic_file.h"
#include "internal.h"

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_DEFAULT_MAX_ELEMENTS ((uint64_t)1 << 31)
/* numpy itself refuses headers above 10 KiB unless told otherwise; a
 * megabyte leaves room for anything legitimate. */
#define NPY_MAX_HEADER_LEN ((size_t)1 << 20)

typedef struct npy_header {
    cd_dtype dtype;
    bool swap; /* file byte order differs from the host's */
    int ndim;
    int64_t dims[CD_MAX_DIMS];
    size_t numel;
    size_t nbytes;
} npy_header;

typedef struct cursor {
    const char *s;
    size_t n, i;
    const char *name; /* file name (or "<memory>") for messages */
} cursor;

static bool host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* ------------------------------------------------------ header parsing */

static void skip_ws(cursor *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' ||
                           c->s[c->i] == '\r'))
        c->i++;
}

static bool accept(cursor *c, char ch)
{
    skip_ws(c);
    if (c->i < c->n && c->s[c->i] == ch) {
        c->i++;
        return true;
    }
    return false;
}

/* Reads a quoted Python string (no escapes: none are valid in the keys and
 * type codes we accept) into buf. */
static bool parse_string(cursor *c, char *buf, size_t cap)
{
    skip_ws(c);
    if (c->i >= c->n || (c->s[c->i] != '\'' && c->s[c->i] != '"'))
        return false;
    char quote = c->s[c->i++];
    size_t len = 0;
    while (c->i < c->n && c->s[c->i] != quote) {
        if (c->s[c->i] == '\\' || len + 1 >= cap)
            return false;
        buf[len++] = c->s[c->i++];
    }
    if (c->i >= c->n)
        return false;
    c->i++;
    buf[len] = '\0';
    return true;
}

static bool parse_word(cursor *c, const char *word)
{
    size_t len = strlen(word);
    skip_ws(c);
    if (c->n - c->i < len || memcmp(c->s + c->i, word, len) != 0)
        return false;
    c->i += len;
    return true;
}

static bool parse_dim(cursor *c, int64_t *out)
{
    int64_t v = 0;
    size_t start;
    skip_ws(c);
    start = c->i;
    while (c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
        int d = c->s[c->i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        c->i++;
    }
    if (c->i == start)
        return false;
    if (c->i < c->n && c->s[c->i] == 'L') /* Python 2 long suffix in old files */
        c->i++;
    *out = v;
    return true;
}

/* "()", "(n,)", "(n, m)", "(n, m,)": a one-element tuple needs its comma. */
static cd_status parse_shape(cursor *c, npy_header *h, cd_error *err)
{
    if (!accept(c, '('))
        return cd_fail(err, CD_ERR_PARSE, "%s: .npy header: shape must be a tuple", c->name);
    h->ndim = 0;
    bool trailing_comma = false;
    while (!accept(c, ')')) {
        int64_t d;
        if (h->ndim > 0 && !trailing_comma)
            return cd_fail(err, CD_ERR_PARSE, "%s: .npy header: malformed shape tuple",
                           c->name);
        if (!parse_dim(c, &d))
            return cd_fail(err, CD_ERR_PARSE,
                           "%s: .npy header: shape entries must be non-negative integers "
                           "fitting in 64 bits",
                           c->name);
        if (h->ndim == CD_MAX_DIMS)
            return cd_fail(err, CD_ERR_UNSUPPORTED, "%s: .npy array has more than %d dimensions",
                           c->name, CD_MAX_DIMS);
        h->dims[h->ndim++] = d;
        trailing_comma = accept(c, ',');
    }
    if (h->ndim == 1 && !trailing_comma)
        return cd_fail(err, CD_ERR_PARSE, "%s: .npy header: shape (n) is not a tuple", c->name);
    return CD_OK;
}

static cd_status parse_descr(cursor *c, npy_header *h, cd_error *err)
{
    char d[16];
    if (!parse_string(c, d, sizeof d))
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "%s: .npy descr must be a simple type string (structured arrays are "
                       "not supported)",
                       c->name);
    static const struct {
        const char *code;
        cd_dtype dtype;
    } types[] = {{"f4", CD_FLOAT32}, {"f8", CD_FLOAT64}, {"u1", CD_UINT8}, {"i1", CD_INT8},
                 {"i4", CD_INT32},   {"i8", CD_INT64},   {"b1", CD_BOOL}};
    char order = d[0];
    if ((order != '<' && order != '>' && order != '|' && order != '=') || strlen(d) != 3)
        return cd_fail(err, CD_ERR_UNSUPPORTED, "%s: unsupported .npy type '%s'", c->name, d);
    for (size_t k = 0; k < CD_COUNT_OF(types); k++) {
        if (strcmp(d + 1, types[k].code) != 0)
            continue;
        h->dtype = types[k].dtype;
        bool file_le = order == '<' || (order != '>' && host_is_little_endian());
        h->swap = cd_dtype_size(h->dtype) > 1 && file_le != host_is_little_endian();
        return CD_OK;
    }
    return cd_fail(err, CD_ERR_UNSUPPORTED,
                   "%s: unsupported .npy type '%s' (supported: f4 f8 u1 i1 i4 i8 b1)", c->name,
                   d);
}

static cd_status parse_entry(cursor *c, npy_header *h, unsigned *seen, cd_error *err)
{
    char key[32];
    if (!parse_string(c, key, sizeof key) || !accept(c, ':'))
        return cd_fail(err, CD_ERR_PARSE, "%s: .npy header: expected 'key': value", c->name);
    unsigned bit = !strcmp(key, "descr") ? 1u : !strcmp(key, "fortran_order") ? 2u
                 : !strcmp(key, "shape") ? 4u : 0u;
    if (bit == 0)
        return cd_fail(err, CD_ERR_PARSE, "%s: .npy header: unexpected key '%s'", c->name, key);
    if (*seen & bit)
        return cd_fail(err, CD_ERR_PARSE, "%s: .npy header: duplicate key '%s'", c->name, key);
    *seen |= bit;
    if (bit == 1)
        return parse_descr(c, h, err);
    if (bit == 4)
        return parse_shape(c, h, err);
    if (parse_word(c, "False"))
        return CD_OK;
    if (parse_word(c, "True"))
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "%s: Fortran-order .npy arrays are not supported (save with "
                       "np.ascontiguousarray)",
                       c->name);
    return cd_fail(err, CD_ERR_PARSE, "%s: .npy header: fortran_order must be True or False",
                   c->name);
}

static cd_status parse_dict(cursor *c, const cd_npy_options *opts, npy_header *h,
                            cd_error *err)
{
    unsigned seen = 0;
    cd_status s;
    if (!accept(c, '{'))
        return cd_fail(err, CD_ERR_PARSE, "%s: .npy header is not a dict", c->name);
    while (!accept(c, '}')) {
        if ((s = parse_entry(c, h, &seen, err)) != CD_OK)
            return s;
        if (!accept(c, ',')) {
            if (!accept(c, '}'))
                return cd_fail(err, CD_ERR_PARSE, "%s: .npy header: expected ',' or '}'",
                               c->name);
            break;
        }
    }
    skip_ws(c);
    if (c->i != c->n)
        return cd_fail(err, CD_ERR_PARSE, "%s: .npy header: trailing characters after dict",
                       c->name);
    if (seen != 7)
        return cd_fail(err, CD_ERR_PARSE,
                       "%s: .npy header must have keys 'descr', 'fortran_order' and 'shape'",
                       c->name);
    uint64_t cap = opts && opts->max_elements ? opts->max_elements : NPY_DEFAULT_MAX_ELEMENTS;
    size_t limit = cap > SIZE_MAX ? SIZE_MAX : (size_t)cap;
    char shape[160];
    if (!cd_shape_numel(h->ndim, h->dims, 0, &h->numel) ||
        !cd_mul_size(h->numel, cd_dtype_size(h->dtype), &h->nbytes))
        return cd_fail(err, CD_ERR_LIMIT, "%s: .npy shape %s overflows", c->name,
                       cd_shape_str(h->ndim, h->dims, shape, sizeof shape));
    if (h->numel > limit)
        return cd_fail(err, CD_ERR_LIMIT, "%s: .npy shape %s has %zu elements, above the cap %zu",
                       c->name, cd_shape_str(h->ndim, h->dims, shape, sizeof shape), h->numel,
                       limit);
    return CD_OK;
}

/* Reads the fixed preamble: returns the header length and where it starts. */
static cd_status parse_preamble(const uint8_t *b, size_t n, const char *name,
                                size_t *header_start, size_t *header_len, cd_error *err)
{
    if (n < 10 || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return cd_fail(err, CD_ERR_PARSE, "%s: not a .npy file (bad magic)", name);
    int major = b[6];
    if (major == 1) {
        *header_start = 10;
        *header_len = (size_t)b[8] | (size_t)b[9] << 8;
    } else if (major == 2 || major == 3) {
        if (n < 12)
            return cd_fail(err, CD_ERR_PARSE, "%s: truncated .npy preamble", name);
        *header_start = 12;
        *header_len = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 |
                      (size_t)b[11] << 24;
    } else {
        return cd_fail(err, CD_ERR_UNSUPPORTED, "%s: .npy format version %d.%d not supported",
                       name, major, b[7]);
    }
    if (*header_len > NPY_MAX_HEADER_LEN)
        return cd_fail(err, CD_ERR_PARSE, "%s: .npy header length %zu is absurd", name,
                       *header_len);
    return CD_OK;
}

static cd_status parse_header_text(const char *text, size_t len, const char *name,
                                   const cd_npy_options *opts, npy_header *h, cd_error *err)
{
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\0')
            return cd_fail(err, CD_ERR_PARSE, "%s: .npy header contains a NUL byte", name);
    cursor c = {text, len, 0, name};
    memset(h, 0, sizeof *h);
    return parse_dict(&c, opts, h, err);
}

/* ------------------------------------------------------- conversions */

static void swap_bytes(void *data, size_t numel, size_t size)
{
    uint8_t *p = data;
    for (size_t i = 0; i < numel; i++, p += size)
        for (size_t a = 0, b = size - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

static float element_as_float(const void *data, cd_dtype dtype, size_t i)
{
    switch (dtype) {
    case CD_FLOAT32: return ((const float *)data)[i];
    case CD_FLOAT64: return (float)((const double *)data)[i];
    case CD_UINT8: return (float)((const uint8_t *)data)[i];
    case CD_INT8: return (float)((const int8_t *)data)[i];
    case CD_INT32: return (float)((const int32_t *)data)[i];
    case CD_INT64: return (float)((const int64_t *)data)[i];
    case CD_BOOL: return ((const uint8_t *)data)[i] ? 1.0f : 0.0f;
    default: return 0.0f;
    }
}

static cd_status to_float32(cd_tensor **t, cd_error *err)
{
    if ((*t)->dtype == CD_FLOAT32)
        return CD_OK;
    cd_tensor *f = NULL;
    cd_status s = cd_tensor_create(CD_FLOAT32, (*t)->ndim, (*t)->dims, &f, err);
    if (s != CD_OK)
        return s;
    size_t n = cd_tensor_numel(*t);
    float *dst = f->data;
    for (size_t i = 0; i < n; i++)
        dst[i] = element_as_float((*t)->data, (*t)->dtype, i);
    cd_tensor_free(*t);
    *t = f;
    return CD_OK;
}

/* Data bytes must all be 0/1 for bool, as numpy writes them. */
static cd_status finish_tensor(cd_tensor **t, const npy_header *h, bool to_f32,
                               const char *name, cd_error *err)
{
    if (h->swap)
        swap_bytes((*t)->data, h->numel, cd_dtype_size(h->dtype));
    if (h->dtype == CD_BOOL) {
        const uint8_t *b = (*t)->data;
        for (size_t i = 0; i < h->numel; i++)
            if (b[i] > 1)
                return cd_fail(err, CD_ERR_PARSE, "%s: .npy bool element %zu is %u, not 0/1",
                               name, i, b[i]);
    }
    return to_f32 ? to_float32(t, err) : CD_OK;
}

/* ------------------------------------------------------------- loading */

cd_status cd_npy_load_memory_ex(const void *bytes, size_t size, const cd_npy_options *opts,
                                bool to_f32, cd_tensor **out, cd_error *err)
{
    const char *name = "<memory>";
    size_t start = 0, len = 0, data_off, data_len;
    npy_header h;
    cd_status s;
    if (!out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_npy_load_memory: out is NULL");
    *out = NULL;
    if (!bytes && size)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_npy_load_memory: bytes is NULL");
    const uint8_t *b = bytes;
    if ((s = parse_preamble(b, size, name, &start, &len, err)) != CD_OK)
        return s;
    if (!cd_add_size(start, len, &data_off) || data_off > size)
        return cd_fail(err, CD_ERR_PARSE, "%s: truncated .npy header", name);
    if ((s = parse_header_text((const char *)b + start, len, name, opts, &h, err)) != CD_OK)
        return s;
    data_len = size - data_off;
    if (data_len != h.nbytes)
        return cd_fail(err, CD_ERR_PARSE, "%s: .npy data is %zu bytes, expected %zu", name,
                       data_len, h.nbytes);
    if ((s = cd_tensor_from_data(h.dtype, h.ndim, h.dims, b + data_off, out, err)) != CD_OK)
        return s;
    if ((s = finish_tensor(out, &h, to_f32, name, err)) != CD_OK) {
        cd_tensor_free(*out);
        *out = NULL;
    }
    return s;
}

cd_status cd_npy_load_memory(const void *bytes, size_t size, cd_tensor **out, cd_error *err)
{
    return cd_npy_load_memory_ex(bytes, size, NULL, false, out, err);
}

static bool read_exact(FILE *fp, void *buf, size_t n)
{
    return fread(buf, 1, n, fp) == n;
}

/* Size of the rest of the file from the current position, without reading it. */
static bool remaining_bytes(FILE *fp, size_t *out)
{
    long here = ftell(fp);
    if (here < 0 || fseek(fp, 0, SEEK_END) != 0)
        return false;
    long end = ftell(fp);
    if (end < here || fseek(fp, here, SEEK_SET) != 0)
        return false;
    *out = (size_t)(end - here);
    return true;
}

static cd_status load_stream(FILE *fp, const char *path, const cd_npy_options *opts,
                             bool to_f32, cd_tensor **out, cd_error *err)
{
    uint8_t pre[12];
    size_t got = fread(pre, 1, sizeof pre, fp), start = 0, len = 0, data_len;
    npy_header h;
    cd_status s = parse_preamble(pre, got, path, &start, &len, err);
    if (s != CD_OK)
        return s;
    char *text = malloc(len ? len : 1);
    if (!text)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    /* The first 12 bytes may already hold the start of a 1.0 header. */
    size_t have = got - start;
    memcpy(text, pre + start, have < len ? have : len);
    if (have < len && !read_exact(fp, text + have, len - have))
        s = cd_fail(err, CD_ERR_PARSE, "%s: truncated .npy header", path);
    if (s == CD_OK)
        s = parse_header_text(text, len, path, opts, &h, err);
    free(text);
    if (s != CD_OK)
        return s;
    if (fseek(fp, (long)(start + len), SEEK_SET) != 0 || !remaining_bytes(fp, &data_len))
        return cd_fail(err, CD_ERR_IO, "%s: cannot seek", path);
    if (data_len != h.nbytes)
        return cd_fail(err, CD_ERR_PARSE, "%s: .npy data is %zu bytes, expected %zu", path,
                       data_len, h.nbytes);
    if ((s = cd_tensor_create(h.dtype, h.ndim, h.dims, out, err)) != CD_OK)
        return s;
    if (!read_exact(fp, (*out)->data, h.nbytes))
        s = cd_fail(err, CD_ERR_IO, "%s: read failed", path);
    if (s == CD_OK)
        s = finish_tensor(out, &h, to_f32, path, err);
    if (s != CD_OK) {
        cd_tensor_free(*out);
        *out = NULL;
    }
    return s;
}

cd_status cd_npy_load_ex(const char *path, const cd_npy_options *opts, bool to_f32,
                         cd_tensor **out, cd_error *err)
{
    if (!out || !path)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_npy_load: NULL argument");
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return cd_fail(err, CD_ERR_IO, "%s: cannot open", path);
    cd_status s = load_stream(fp, path, opts, to_f32, out, err);
    fclose(fp);
    return s;
}

cd_status cd_npy_load(const char *path, cd_tensor **out, cd_error *err)
{
    return cd_npy_load_ex(path, NULL, false, out, err);
}

cd_status cd_npy_load_f32(const char *path, cd_tensor **out, cd_error *err)
{
    return cd_npy_load_ex(path, NULL, true, out, err);
}

/* ------------------------------------------------------------- saving */

static const char *descr_for(cd_dtype dtype)
{
    bool le = host_is_little_endian();
    switch (dtype) {
    case CD_FLOAT32: return le ? "<f4" : ">f4";
    case CD_FLOAT64: return le ? "<f8" : ">f8";
    case CD_INT32: return le ? "<i4" : ">i4";
    case CD_INT64: return le ? "<i8" : ">i8";
    case CD_UINT8: return "|u1";
    case CD_INT8: return "|i1";
    case CD_BOOL: return "|b1";
    default: return NULL;
    }
}

/* Builds preamble + dict + padding so the data starts on a 64-byte
 * boundary, as numpy does. Returns the total header size in *size. */
static cd_status build_header(const cd_tensor *t, const char *descr, char *buf, size_t cap,
                              size_t *size, cd_error *err)
{
    char dict[512];
    int used = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                        descr);
    for (int i = 0; i < t->ndim; i++)
        used += snprintf(dict + used, sizeof dict - (size_t)used, "%lld,%s",
                         (long long)t->dims[i], i + 1 < t->ndim ? " " : "");
    used += snprintf(dict + used, sizeof dict - (size_t)used, "), }");
    size_t total = 10 + (size_t)used + 1;
    total = (total + 63) / 64 * 64;
    if (total > cap || total - 10 > 65535)
        return cd_fail(err, CD_ERR_INTERNAL, ".npy header too long");
    size_t hlen = total - 10;
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)used);
    memset(buf + 10 + used, ' ', total - 10 - (size_t)used - 1);
    buf[total - 1] = '\n';
    *size = total;
    return CD_OK;
}

cd_status cd_npy_save_ex(const char *path, const cd_tensor *t, bool force, cd_error *err)
{
    if (!path || !t)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_npy_save: NULL argument");
    const char *descr = descr_for(t->dtype);
    if (!descr)
        return cd_fail(err, CD_ERR_UNSUPPORTED, "%s: cannot save %s tensors as .npy", path,
                       cd_dtype_name(t->dtype));
    size_t nbytes = cd_tensor_nbytes(t), hsize = 0;
    if (nbytes && !t->data)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "%s: tensor has no data", path);
    char header[640];
    cd_status s = build_header(t, descr, header, sizeof header, &hsize, err);
    if (s != CD_OK)
        return s;
    cd_atomic_file *f;
    if ((s = cd_atomic_open(path, force, &f, err)) != CD_OK)
        return s;
    FILE *fp = cd_atomic_stream(f);
    if (fwrite(header, 1, hsize, fp) != hsize || fwrite(t->data, 1, nbytes, fp) != nbytes) {
        cd_atomic_abort(f);
        return cd_fail(err, CD_ERR_IO, "%s: write failed", path);
    }
    return cd_atomic_commit(f, err);
}

cd_status cd_npy_save(const char *path, const cd_tensor *t, cd_error *err)
{
    return cd_npy_save_ex(path, t, true, err);
}
