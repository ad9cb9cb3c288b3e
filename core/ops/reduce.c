/* ReduceMean over a set of axes (float32). Axes come from the `axes`
 * attribute before opset 18 and from the optional second input from opset 18
 * on; no axes means all axes, unless noop_with_empty_axes=1 (opset 18),
 * which makes the node an identity. The float64 kernels (exact-gradient
 * mode) walk the same plan over float64 data. */
#include <stdlib.h>
#include <string.h>

#include "op.h"

typedef struct reduce_plan {
    bool reduced[CD_MAX_DIMS];
    bool identity;              /* noop_with_empty_axes with no axes */
    int out_ndim;
    int64_t out_dims[CD_MAX_DIMS];
    int64_t out_stride[CD_MAX_DIMS]; /* per input axis, 0 on reduced axes */
    size_t count;               /* elements averaged into each output */
} reduce_plan;

/* Reads the axes list (attribute or input). *n_axes = -1 when none given. */
static cd_status reduce_axes(const cd_node *n, cd_tensor *const *in, int64_t *axes, int *n_axes,
                             cd_error *err)
{
    *n_axes = -1;
    if (n->opset < 18) {
        const int64_t *vals;
        int cnt = cd_attr_ints(n, "axes", &vals);
        if (cnt > CD_MAX_DIMS)
            return cd_node_fail(n, err, CD_ERR_SHAPE, "%d axes for at most %d dims", cnt,
                                CD_MAX_DIMS);
        if (cnt >= 0)
            memcpy(axes, vals, sizeof(int64_t) * (size_t)cnt);
        *n_axes = cnt;
        return CD_OK;
    }
    const cd_tensor *t = n->n_inputs > 1 ? in[1] : NULL;
    if (!t)
        return CD_OK;
    if (!t->data)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "axes must be a constant known when the plan is built");
    if (t->dtype != CD_INT64 || t->ndim > 1)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "axes must be a 1-D int64 tensor");
    size_t cnt = cd_tensor_numel_raw(t);
    if (cnt > CD_MAX_DIMS)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "%zu axes for at most %d dims", cnt,
                            CD_MAX_DIMS);
    for (size_t i = 0; i < cnt; i++)
        axes[i] = cd_tensor_int_at(t, i);
    *n_axes = (int)cnt;
    return CD_OK;
}

/* dt: the data type the caller handles (float32, or float64 in float64 mode). */
static cd_status reduce_plan_make(const cd_node *n, cd_tensor *const *in, cd_dtype dt,
                                  reduce_plan *p, cd_error *err)
{
    memset(p, 0, sizeof *p);
    if (n->n_inputs < 1 || !in[0])
        return cd_node_fail(n, err, CD_ERR_PARSE, "input data is missing");
    if (in[0]->dtype != dt)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "element type %s is not supported",
                            cd_dtype_name(in[0]->dtype));
    int64_t axes[CD_MAX_DIMS];
    int n_axes, r = in[0]->ndim;
    cd_status st = reduce_axes(n, in, axes, &n_axes, err);
    if (st != CD_OK)
        return st;
    if (n_axes <= 0 && n->opset >= 18 && cd_attr_int(n, "noop_with_empty_axes", 0) != 0)
        p->identity = true;
    for (int k = 0; k < n_axes; k++) {
        int64_t a = axes[k] < 0 ? axes[k] + r : axes[k];
        if (a < 0 || a >= r || p->reduced[a])
            return cd_node_fail(n, err, CD_ERR_SHAPE, "axis %lld is out of range or repeated "
                                "for rank %d", (long long)axes[k], r);
        p->reduced[a] = true;
    }
    for (int d = 0; d < r; d++)
        if (n_axes <= 0 && !p->identity)
            p->reduced[d] = true;
    bool keep = cd_attr_int(n, "keepdims", 1) != 0;
    int64_t stride = 1;
    p->count = 1;
    for (int d = r - 1; d >= 0; d--) {
        p->out_stride[d] = p->reduced[d] ? 0 : stride;
        if (p->reduced[d])
            p->count *= (size_t)in[0]->dims[d];
        else
            stride *= in[0]->dims[d];
    }
    for (int d = 0; d < r; d++)
        if (!p->reduced[d] || keep)
            p->out_dims[p->out_ndim++] = p->reduced[d] ? 1 : in[0]->dims[d];
    return CD_OK;
}

static cd_status reduce_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_error *err)
{
    reduce_plan p;
    cd_status st = reduce_plan_make(n, in, CD_FLOAT32, &p, err);
    if (st == CD_OK && out[0])
        cd_tensor_set_shape(out[0], CD_FLOAT32, p.out_ndim, p.out_dims);
    return st;
}

static void next_index(int nd, const int64_t *dims, const int64_t *st, int64_t *idx, size_t *off)
{
    for (int d = nd - 1; d >= 0; d--) {
        if (++idx[d] < dims[d]) {
            *off += (size_t)st[d];
            return;
        }
        *off -= (size_t)(st[d] * (dims[d] - 1));
        idx[d] = 0;
    }
}

/* The kernels serve float32 and, with f64, float64 data through these:
 * element i as double, and y[i] += x[o] * s computed in the data's type (s
 * holds a float value for float32). */
static inline double load(const void *x, size_t i, bool f64)
{
    return f64 ? ((const double *)x)[i] : ((const float *)x)[i];
}

static inline void add_scaled(void *y, size_t i, const void *x, size_t o, double s, bool f64)
{
    if (f64)
        ((double *)y)[i] += ((const double *)x)[o] * s;
    else
        ((float *)y)[i] += ((const float *)x)[o] * (float)s;
}

static cd_status reduce_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                cd_ctx *ctx)
{
    bool f64 = cd_is_f64(in[0]);
    reduce_plan p;
    cd_status st = reduce_plan_make(n, in, f64 ? CD_FLOAT64 : CD_FLOAT32, &p, ctx->err);
    if (st != CD_OK)
        return st;
    const cd_tensor *x = in[0];
    size_t cnt = cd_tensor_numel_raw(x), n_out = cd_tensor_numel_raw(out[0]);
    if (p.identity) {
        memcpy(out[0]->data, x->data, cnt * (f64 ? sizeof(double) : sizeof(float)));
        return CD_OK;
    }
    /* Accumulate in double: a mean over a large image would otherwise lose
     * several digits. */
    size_t bytes;
    if (!cd_mul_size(n_out, sizeof(double), &bytes))
        return cd_node_fail(n, ctx->err, CD_ERR_LIMIT, "output too large");
    double *acc = cd_ctx_scratch(ctx, bytes);
    if (!acc)
        return CD_ERR_OUT_OF_MEMORY;
    memset(acc, 0, bytes);
    int64_t idx[CD_MAX_DIMS] = {0};
    size_t o = 0;
    for (size_t i = 0; i < cnt; i++) {
        acc[o] += load(x->data, i, f64);
        next_index(x->ndim, x->dims, p.out_stride, idx, &o);
    }
    for (size_t k = 0; k < n_out; k++) {
        double mean = acc[k] / (double)p.count;
        if (f64)
            cd_f64(out[0])[k] = mean;
        else
            cd_f32(out[0])[k] = (float)mean;
    }
    return CD_OK;
}

/* Every input element contributes 1/count to its output. */
static cd_status reduce_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                 cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    bool f64 = cd_is_f64(in[0]);
    if (!gout[0] || !gin[0])
        return CD_OK;
    reduce_plan p;
    cd_status st = reduce_plan_make(n, in, f64 ? CD_FLOAT64 : CD_FLOAT32, &p, ctx->err);
    if (st != CD_OK)
        return st;
    const cd_tensor *x = in[0];
    const void *g = gout[0]->data;
    void *gx = gin[0]->data;
    size_t cnt = cd_tensor_numel_raw(x);
    if (p.identity) { /* count 1 and o == i: no index walk */
        for (size_t i = 0; i < cnt; i++)
            add_scaled(gx, i, g, i, 1.0, f64);
        return CD_OK;
    }
    double scale = f64 ? 1.0 / (double)p.count : (double)(1.0f / (float)p.count);
    int64_t idx[CD_MAX_DIMS] = {0};
    size_t o = 0;
    for (size_t i = 0; i < cnt; i++) {
        add_scaled(gx, i, g, o, scale, f64);
        next_index(x->ndim, x->dims, p.out_stride, idx, &o);
    }
    return CD_OK;
}

const cd_op_def cd_opdef_REDUCE_MEAN = {"ReduceMean", 1, NULL, reduce_infer, reduce_forward,
                                        reduce_backward, reduce_forward, reduce_backward};
