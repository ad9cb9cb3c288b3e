/* The operator table: one entry per cd_op_id, in enum order. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op.h"

static const cd_op_def *const op_table[] = {
#define CD_OP_ENTRY(id, name) &cd_opdef_##id,
    CD_OP_LIST(CD_OP_ENTRY)
#undef CD_OP_ENTRY
};

static const char *const op_names[] = {
#define CD_OP_NAME(id, name) name,
    CD_OP_LIST(CD_OP_NAME)
#undef CD_OP_NAME
};

_Static_assert(CD_COUNT_OF(op_table) == CD_OP_COUNT, "op table out of sync with enum");
_Static_assert(CD_COUNT_OF(op_names) == CD_OP_COUNT, "op names out of sync with enum");

const cd_op_def *cd_op_get(int id)
{
    if (id < 0 || id >= CD_OP_COUNT)
        return NULL;
    return op_table[id];
}

int cd_op_lookup(const char *op_type)
{
    for (int i = 0; i < CD_OP_COUNT; i++)
        if (strcmp(op_names[i], op_type) == 0)
            return i;
    return -1;
}

cd_status cd_node_fail(const cd_node *n, cd_error *err, cd_status code, const char *fmt, ...)
{
    if (!err)
        return code;
    char detail[CD_ERROR_MESSAGE_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    snprintf(err->message, sizeof err->message, "node '%s' (%s): %s", n->name ? n->name : "?",
             n->op_type ? n->op_type : "?", detail);
    err->code = code;
    return code;
}

cd_status cd_grad_dtype_check(const cd_node *n, const cd_tensor *gx, const cd_tensor *gy, bool f64,
                              cd_error *err)
{
    cd_dtype want = f64 ? CD_FLOAT64 : CD_FLOAT32;
    if (gx->dtype == want && gy->dtype == want)
        return CD_OK;
    return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "%s",
                        f64 ? "float64 gradients need float64 data"
                            : "gradients are supported for float32 only");
}

int64_t cd_tensor_int_at(const cd_tensor *t, size_t i)
{
    switch (t->dtype) {
    case CD_INT64: return ((const int64_t *)t->data)[i];
    case CD_INT32: return ((const int32_t *)t->data)[i];
    case CD_UINT8:
    case CD_BOOL: return ((const uint8_t *)t->data)[i];
    case CD_INT8: return ((const int8_t *)t->data)[i];
    case CD_FLOAT32: return (int64_t)((const float *)t->data)[i];
    case CD_FLOAT64: return (int64_t)((const double *)t->data)[i];
    default: return 0;
    }
}

bool cd_broadcast_shape(int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                        int64_t *out)
{
    int n = na > nb ? na : nb;
    if (n > CD_MAX_DIMS)
        return false;
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : a[i - (n - na)];
        int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
        if (da == db || db == 1)
            out[i] = da;
        else if (da == 1)
            out[i] = db;
        else
            return false;
    }
    *nout = n;
    return true;
}

void *cd_ctx_scratch(cd_ctx *ctx, size_t bytes)
{
    if (ctx->scratch_size >= bytes && ctx->scratch)
        return ctx->scratch;
    void *p = realloc(ctx->scratch, bytes ? bytes : 1);
    if (!p) {
        cd_fail(ctx->err, CD_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes of scratch",
                bytes);
        return NULL;
    }
    ctx->scratch = p;
    ctx->scratch_size = bytes;
    return p;
}
