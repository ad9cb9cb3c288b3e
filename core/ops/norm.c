/* BatchNormalization, inference form:
 *   y = scale * (x - mean) / sqrt(var + epsilon) + B
 * with per-channel parameters (axis 1). Training mode (batch statistics,
 * running-average outputs) is refused: candor runs exported, frozen models.
 * The backward pass gives gradients for X and for every parameter input.
 * The float64 kernels (exact-gradient mode) get all five inputs as float64. */
#include <math.h>
#include <string.h>

#include "op.h"

/* Opsets 1-6 carry is_test (default 0 = training) and opsets 1-8 carry
 * spatial. Models exported for inference often leave is_test unset, so a
 * node is refused only when it actually asks for training behaviour: extra
 * outputs (the batch statistics) or training_mode=1. */
static cd_status bn_parse(cd_node *n, cd_error *err)
{
    if (cd_attr_int(n, "training_mode", 0) != 0)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "training_mode=1 (normalising with batch statistics) is not "
                            "supported; export the model in inference/eval mode");
    for (int j = 1; j < n->n_outputs; j++)
        if (n->outputs[j] >= 0)
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                                "output %d (running/saved statistics) is only produced in "
                                "training mode, which is not supported", j);
    /* spatial was removed in opset 9; a stray spatial=1 is harmless, a
     * spatial=0 would silently mean something we do not do. */
    if (n->opset >= 9 && cd_attr_int(n, "spatial", 1) == 0)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "spatial=0 is not defined at opset %d", n->opset);
    return CD_OK;
}

/* Number of (channel, position) parameter slots: C when spatial (the
 * default), C * prod(dims[2:]) for opset < 9 with spatial=0. */
static cd_status bn_layout(const cd_node *n, const cd_tensor *x, size_t *outer, size_t *channels,
                           size_t *inner, bool *per_position, cd_error *err)
{
    if (x->ndim < 2)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "X must have rank >= 2 (N, C, ...), got %d",
                            x->ndim);
    *outer = (size_t)x->dims[0];
    *channels = (size_t)x->dims[1];
    *inner = 1;
    for (int d = 2; d < x->ndim; d++)
        *inner *= (size_t)x->dims[d];
    *per_position = n->opset < 9 && cd_attr_int(n, "spatial", 1) == 0;
    return CD_OK;
}

static cd_status bn_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out, cd_error *err)
{
    static const char *const names[] = {"X", "scale", "B", "mean", "var"};
    if (n->n_inputs != 5)
        return cd_node_fail(n, err, CD_ERR_PARSE, "expects 5 inputs, got %d", n->n_inputs);
    for (int i = 0; i < 5; i++)
        if (!in[i] || in[i]->dtype != CD_FLOAT32)
            return cd_node_fail(n, err, in[i] ? CD_ERR_UNSUPPORTED : CD_ERR_PARSE,
                                "input %s must be present and float32", names[i]);
    size_t outer = 0, channels = 0, inner = 0;
    bool per_position = false;
    cd_status st = bn_layout(n, in[0], &outer, &channels, &inner, &per_position, err);
    if (st != CD_OK)
        return st;
    size_t want = per_position ? channels * inner : channels;
    for (int i = 1; i < 5; i++)
        if (cd_tensor_numel_raw(in[i]) != want)
            return cd_node_fail(n, err, CD_ERR_SHAPE, "%s has %zu elements, expected %zu",
                                names[i], cd_tensor_numel_raw(in[i]), want);
    if (out[0])
        cd_tensor_set_shape(out[0], CD_FLOAT32, in[0]->ndim, in[0]->dims);
    return CD_OK;
}

typedef struct bn_view {
    size_t outer, channels, inner, params;
    bool per_position;
    float eps;
    /* float32, or float64 in float64 mode (as X) */
    const void *scale, *bias, *mean, *var;
} bn_view;

/* f64: the float64 kernels, which need every input widened (infer checked
 * the float32 plan, so a float64 X comes with float64 parameters). */
static cd_status bn_view_init(const cd_node *n, cd_tensor *const *in, bool f64, bn_view *v,
                              cd_error *err)
{
    if (f64 && (!in[0] || in[0]->dtype != CD_FLOAT64))
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "float64 kernel needs float64 X");
    cd_status st = bn_layout(n, in[0], &v->outer, &v->channels, &v->inner, &v->per_position, err);
    if (st != CD_OK)
        return st;
    v->params = v->per_position ? v->channels * v->inner : v->channels;
    v->eps = cd_attr_float(n, "epsilon", 1e-5f);
    for (int i = 1; f64 && i < 5; i++)
        if (!in[i] || in[i]->dtype != CD_FLOAT64)
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "input %d is not float64", i);
    v->scale = in[1]->data;
    v->bias = in[2]->data;
    v->mean = in[3]->data;
    v->var = in[4]->data;
    return CD_OK;
}

/* Parameter slot of element (channel c, position s). */
static size_t bn_slot(const bn_view *v, size_t c, size_t s)
{
    return v->per_position ? c * v->inner + s : c;
}

static cd_status bn_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out, cd_ctx *ctx)
{
    bn_view v = {0};
    cd_status st = bn_view_init(n, in, false, &v, ctx->err);
    if (st != CD_OK)
        return st;
    /* Fold into y = a*x + b per slot once, then stream over X. */
    size_t bytes;
    if (!cd_mul_size(v.params, 2 * sizeof(float), &bytes))
        return cd_node_fail(n, ctx->err, CD_ERR_LIMIT, "parameter count overflows");
    float *a = cd_ctx_scratch(ctx, bytes);
    if (!a)
        return CD_ERR_OUT_OF_MEMORY;
    float *b = a + v.params;
    const float *scale = v.scale, *bias = v.bias, *mean = v.mean, *var = v.var;
    for (size_t p = 0; p < v.params; p++) {
        a[p] = scale[p] / sqrtf(var[p] + v.eps);
        b[p] = bias[p] - mean[p] * a[p];
    }
    const float *x = cd_cf32(in[0]);
    float *y = cd_f32(out[0]);
    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < v.channels; c++) {
            size_t base = (o * v.channels + c) * v.inner;
            for (size_t s = 0; s < v.inner; s++) {
                size_t p = bn_slot(&v, c, s);
                y[base + s] = a[p] * x[base + s] + b[p];
            }
        }
    return CD_OK;
}

/* Float64: the formula itself, unfolded (the fold above is for speed). */
static cd_status bn_forward64(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_ctx *ctx)
{
    bn_view v = {0};
    cd_status st = bn_view_init(n, in, true, &v, ctx->err);
    if (st != CD_OK)
        return st;
    const double *scale = v.scale, *bias = v.bias, *mean = v.mean, *var = v.var;
    const double *x = cd_cf64(in[0]);
    double *y = cd_f64(out[0]);
    for (size_t o = 0; o < v.outer; o++)
        for (size_t c = 0; c < v.channels; c++) {
            size_t base = (o * v.channels + c) * v.inner;
            for (size_t s = 0; s < v.inner; s++) {
                size_t p = bn_slot(&v, c, s);
                double r = 1.0 / sqrt(var[p] + (double)v.eps);
                y[base + s] = scale[p] * (x[base + s] - mean[p]) * r + bias[p];
            }
        }
    return CD_OK;
}

/* With r = 1/sqrt(var + eps) and xh = (x - mean) * r:
 *   dX = g*scale*r, dscale = sum g*xh, dB = sum g, dmean = -sum g*scale*r,
 *   dvar = -1/2 * sum g*scale*(x - mean)*r^3.
 * One body for both element types T (SQRT: sqrtf or sqrt); the float32
 * kernel computes in float throughout. */
#define BN_BACKWARD(T, SFX, SQRT)                                                           \
    static void bn_backward_##SFX(const bn_view *v, cd_tensor *const *in,                   \
                                  cd_tensor *const *gout, cd_tensor **gin)                  \
    {                                                                                       \
        const T *x = in[0]->data, *g = gout[0]->data;                                       \
        const T *scale = v->scale, *mean = v->mean, *var = v->var, eps = (T)v->eps;         \
        T *gx = gin[0] ? gin[0]->data : NULL;                                               \
        T *gp[5] = {NULL};                                                                  \
        for (int i = 1; i < 5; i++)                                                         \
            gp[i] = gin[i] ? gin[i]->data : NULL;                                           \
        for (size_t o = 0; o < v->outer; o++)                                               \
            for (size_t c = 0; c < v->channels; c++) {                                      \
                size_t base = (o * v->channels + c) * v->inner;                             \
                for (size_t s = 0; s < v->inner; s++) {                                     \
                    size_t p = bn_slot(v, c, s);                                            \
                    T r = (T)1 / SQRT(var[p] + eps);                                        \
                    T gi = g[base + s], xc = x[base + s] - mean[p];                         \
                    if (gx)                                                                 \
                        gx[base + s] += gi * scale[p] * r;                                  \
                    if (gp[1])                                                              \
                        gp[1][p] += gi * xc * r;                                            \
                    if (gp[2])                                                              \
                        gp[2][p] += gi;                                                     \
                    if (gp[3])                                                              \
                        gp[3][p] -= gi * scale[p] * r;                                      \
                    if (gp[4])                                                              \
                        gp[4][p] -= (T)0.5 * gi * scale[p] * xc * r * r * r;                \
                }                                                                           \
            }                                                                               \
    }

BN_BACKWARD(float, f32, sqrtf)
BN_BACKWARD(double, f64, sqrt)

static cd_status bn_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                             cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    bool f64 = cd_is_f64(in[0]);
    if (!gout[0])
        return CD_OK;
    bn_view v = {0};
    cd_status st = bn_view_init(n, in, f64, &v, ctx->err);
    if (st != CD_OK)
        return st;
    if (f64)
        bn_backward_f64(&v, in, gout, gin);
    else
        bn_backward_f32(&v, in, gout, gin);
    return CD_OK;
}

const cd_op_def cd_opdef_BATCH_NORMALIZATION = {"BatchNormalization", 1, bn_parse, bn_infer,
                                                bn_forward, bn_backward, bn_forward64, bn_backward};
