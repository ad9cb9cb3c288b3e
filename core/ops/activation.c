/* Activations: Relu, LeakyRelu, PRelu, Elu, Sigmoid, Tanh, Clip, HardSigmoid,
 * HardSwish, Softmax, LogSoftmax. Each has its shape rule, forward kernel and
 * vector-Jacobian product. Float32 throughout, except Clip, which also clamps
 * integer tensors (forward only); the *64 kernels are the float64 mode's
 * (op.h), with the float32 kernels' branches at every kink. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "op.h"

static cd_status same_shape_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                  cd_error *err)
{
    if (n->n_inputs < 1 || !in[0])
        return cd_node_fail(n, err, CD_ERR_PARSE, "input X is missing");
    if (in[0]->dtype != CD_FLOAT32)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "element type %s is not supported",
                            cd_dtype_name(in[0]->dtype));
    if (out[0])
        cd_tensor_set_shape(out[0], in[0]->dtype, in[0]->ndim, in[0]->dims);
    return CD_OK;
}

/* Point-wise activations ------------------------------------------------------ */

/* The scalar helpers for float (float32 plan) and double (float64 mode).
 * Sigmoid: both branches only ever exponentiate a non-positive number.
 * Unit clamp, min(max(v, 0), 1) by comparisons: GCC leaves fminf/fmaxf as
 * libm calls (15% of MobileNet-v3's time), while this vectorises. A NaN
 * passes through both comparisons unchanged, as in NumPy's np.clip. */
#define SCALAR_HELPERS(T, SIGMOID, CLAMP, EXP)                                               \
    static T SIGMOID(T x)                                                                     \
    {                                                                                         \
        if (x >= 0)                                                                           \
            return (T)1 / ((T)1 + EXP(-x));                                                   \
        T e = EXP(x);                                                                         \
        return e / ((T)1 + e);                                                                \
    }                                                                                         \
    static inline T CLAMP(T v)                                                                \
    {                                                                                         \
        v = v < (T)0 ? (T)0 : v;                                                              \
        return v > (T)1 ? (T)1 : v;                                                           \
    }
SCALAR_HELPERS(float, sigmoidf, unit_clamp, expf)
SCALAR_HELPERS(double, sigmoid64, unit_clamp64, exp)
#undef SCALAR_HELPERS

/* Attribute defaults follow the ONNX operator spec. */
static float attr_alpha(const cd_node *n)
{
    switch (n->op) {
    case CD_OP_LEAKY_RELU: return cd_attr_float(n, "alpha", 0.01f);
    case CD_OP_ELU: return cd_attr_float(n, "alpha", 1.0f);
    case CD_OP_HARD_SIGMOID: return cd_attr_float(n, "alpha", 0.2f);
    default: return 0;
    }
}

/* The point-wise formulas, written once for float and double: y[i] from x[i]
 * over cnt elements, with the element type's libm functions. */
#define POINTWISE_LOOPS(T, EXPM1, TANH, SIGMOID, CLAMP)                                       \
    const T *x = in[0]->data;                                                                 \
    T *y = out[0]->data;                                                                      \
    switch (n->op) {                                                                          \
    case CD_OP_RELU:                                                                          \
        for (size_t i = 0; i < cnt; i++)                                                      \
            y[i] = x[i] > 0 ? x[i] : (T)0;                                                    \
        break;                                                                                \
    case CD_OP_LEAKY_RELU:                                                                    \
        for (size_t i = 0; i < cnt; i++)                                                      \
            y[i] = x[i] >= 0 ? x[i] : alpha * x[i];                                           \
        break;                                                                                \
    case CD_OP_ELU:                                                                           \
        for (size_t i = 0; i < cnt; i++)                                                      \
            y[i] = x[i] > 0 ? x[i] : alpha * EXPM1(x[i]);                                     \
        break;                                                                                \
    case CD_OP_SIGMOID:                                                                       \
        for (size_t i = 0; i < cnt; i++)                                                      \
            y[i] = SIGMOID(x[i]);                                                             \
        break;                                                                                \
    case CD_OP_TANH:                                                                          \
        for (size_t i = 0; i < cnt; i++)                                                      \
            y[i] = TANH(x[i]);                                                                \
        break;                                                                                \
    case CD_OP_HARD_SIGMOID:                                                                  \
        for (size_t i = 0; i < cnt; i++)                                                      \
            y[i] = CLAMP(alpha * x[i] + beta);                                                \
        break;                                                                                \
    case CD_OP_HARD_SWISH:                                                                    \
        for (size_t i = 0; i < cnt; i++)                                                      \
            y[i] = x[i] * CLAMP(x[i] / (T)6 + (T)0.5);                                        \
        break;                                                                                \
    default:                                                                                  \
        return cd_node_fail(n, ctx->err, CD_ERR_INTERNAL, "not a point-wise activation");     \
    }

/* Both precisions; alpha and beta stay the float attributes' values in the
 * float64 mode too (exactly widened where they meet a double). */
static cd_status pointwise_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                   cd_ctx *ctx)
{
    bool f64 = cd_is_f64(in[0]);
    size_t cnt = cd_tensor_numel_raw(in[0]);
    float alpha = attr_alpha(n), beta = cd_attr_float(n, "beta", 0.5f);
    if (f64) {
        POINTWISE_LOOPS(double, expm1, tanh, sigmoid64, unit_clamp64)
    } else {
        POINTWISE_LOOPS(float, expm1f, tanhf, sigmoidf, unit_clamp)
    }
    return CD_OK;
}
#undef POINTWISE_LOOPS

/* dy/dx at one element, from the input x and the output y. Both element
 * types take the same branches at the kinks. */
#define POINTWISE_SLOPE(NAME, T)                                                              \
    static T NAME(int op, T x, T y, T alpha, T beta)                                          \
    {                                                                                         \
        switch (op) {                                                                         \
        case CD_OP_RELU: return x > 0 ? (T)1 : (T)0;                                          \
        case CD_OP_LEAKY_RELU: return x >= 0 ? (T)1 : alpha;                                  \
        case CD_OP_ELU: return x > 0 ? (T)1 : y + alpha;                                      \
        case CD_OP_SIGMOID: return y * ((T)1 - y);                                            \
        case CD_OP_TANH: return (T)1 - y * y;                                                 \
        case CD_OP_HARD_SIGMOID: {                                                            \
            T v = alpha * x + beta;                                                           \
            return v > 0 && v < 1 ? alpha : (T)0;                                             \
        }                                                                                     \
        default: { /* HardSwish: x * (x/6 + 1/2) inside the ramp */                           \
            T v = x / (T)6 + (T)0.5;                                                          \
            return v <= 0 ? (T)0 : v >= 1 ? (T)1 : x / (T)3 + (T)0.5;                         \
        }                                                                                     \
        }                                                                                     \
    }
POINTWISE_SLOPE(pointwise_slope, float)
POINTWISE_SLOPE(pointwise_slope64, double)
#undef POINTWISE_SLOPE

/* gx += g * slope, in T. */
#define POINTWISE_GRAD_LOOP(T, SLOPE)                                                         \
    do {                                                                                      \
        const T *x = in[0]->data, *y = out[0]->data, *g = gout[0]->data;                      \
        T *gx = gin[0]->data;                                                                 \
        for (size_t i = 0; i < cnt; i++)                                                      \
            gx[i] += g[i] * SLOPE(n->op, x[i], y[i], alpha, beta);                            \
    } while (0)

static cd_status pointwise_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                    cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(ctx);
    bool f64 = cd_is_f64(in[0]);
    if (!gout[0] || !gin[0])
        return CD_OK;
    size_t cnt = cd_tensor_numel_raw(in[0]);
    float alpha = attr_alpha(n), beta = cd_attr_float(n, "beta", 0.5f);
    if (f64)
        POINTWISE_GRAD_LOOP(double, pointwise_slope64);
    else
        POINTWISE_GRAD_LOOP(float, pointwise_slope);
    return CD_OK;
}
#undef POINTWISE_GRAD_LOOP

#define POINTWISE(id, name, opset)                                                            \
    const cd_op_def cd_opdef_##id = {name, opset, NULL, same_shape_infer, pointwise_forward,  \
                                     pointwise_backward, pointwise_forward, pointwise_backward};
POINTWISE(RELU, "Relu", 1)
POINTWISE(LEAKY_RELU, "LeakyRelu", 1)
POINTWISE(ELU, "Elu", 1)
POINTWISE(SIGMOID, "Sigmoid", 1)
POINTWISE(TANH, "Tanh", 1)
POINTWISE(HARD_SIGMOID, "HardSigmoid", 1)
POINTWISE(HARD_SWISH, "HardSwish", 14)
#undef POINTWISE

/* PRelu ----------------------------------------------------------------------- */

/* Element strides of slope inside X's index space (0 where slope repeats).
 * Opset >= 7 broadcasts slope unidirectionally (right-aligned) to X. Before
 * that, a 1-D slope of length C applied per channel (axis 1), which PyTorch
 * exporters relied on. */
static cd_status prelu_strides(const cd_node *n, const cd_tensor *x, const cd_tensor *s,
                               int64_t *st, cd_error *err)
{
    char sx[96], ss[96];
    int nd = x->ndim;
    bool channel = n->opset < 7 && s->ndim == 1 && nd >= 2 && s->dims[0] == x->dims[1] &&
                   s->dims[0] != 1;
    if (channel) {
        for (int d = 0; d < nd; d++)
            st[d] = d == 1 ? 1 : 0;
        return CD_OK;
    }
    bool ok = s->ndim <= nd;
    int64_t stride = 1;
    for (int d = nd - 1; ok && d >= 0; d--) {
        int k = d - (nd - s->ndim);
        int64_t len = k >= 0 ? s->dims[k] : 1;
        ok = len == 1 || len == x->dims[d];
        st[d] = len == 1 ? 0 : stride;
        stride *= len;
    }
    if (!ok)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "slope %s does not broadcast to X %s",
                            cd_shape_str(s->ndim, s->dims, ss, sizeof ss),
                            cd_shape_str(x->ndim, x->dims, sx, sizeof sx));
    return CD_OK;
}

static cd_status prelu_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                             cd_error *err)
{
    if (n->n_inputs != 2 || !in[1])
        return cd_node_fail(n, err, CD_ERR_PARSE, "expects inputs X and slope");
    cd_status st = same_shape_infer(n, in, out, err);
    if (st != CD_OK)
        return st;
    if (in[1]->dtype != CD_FLOAT32)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "slope must be float32");
    int64_t strides[CD_MAX_DIMS];
    return prelu_strides(n, in[0], in[1], strides, err);
}

/* Advances a row-major index over dims and the matching strided offset. */
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

/* y = x or slope * x, in T. */
#define PRELU_LOOP(T)                                                                         \
    do {                                                                                      \
        const T *x = in[0]->data, *s = in[1]->data;                                           \
        T *y = out[0]->data;                                                                  \
        for (size_t i = 0; i < cnt; i++) {                                                    \
            y[i] = x[i] >= 0 ? x[i] : s[so] * x[i];                                           \
            next_index(in[0]->ndim, in[0]->dims, st, idx, &so);                               \
        }                                                                                     \
    } while (0)

/* Both precisions: in the float64 mode the slope arrives as float64 too. */
static cd_status prelu_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out, cd_ctx *ctx)
{
    bool f64 = cd_is_f64(in[0]);
    int64_t st[CD_MAX_DIMS], idx[CD_MAX_DIMS] = {0};
    cd_status status = prelu_strides(n, in[0], in[1], st, ctx->err);
    if (status != CD_OK)
        return status;
    size_t cnt = cd_tensor_numel_raw(in[0]), so = 0;
    if (f64)
        PRELU_LOOP(double);
    else
        PRELU_LOOP(float);
    return CD_OK;
}
#undef PRELU_LOOP

/* gx = g or g * slope; the slope collects g * x where x < 0 (in T). */
#define PRELU_GRAD_LOOP(T)                                                                    \
    do {                                                                                      \
        const T *x = in[0]->data, *s = in[1]->data, *g = gout[0]->data;                       \
        T *gx = gin[0] ? gin[0]->data : NULL, *gs = gin[1] ? gin[1]->data : NULL;             \
        for (size_t i = 0; i < cnt; i++) {                                                    \
            bool neg = x[i] < 0;                                                              \
            if (gx)                                                                           \
                gx[i] += neg ? g[i] * s[so] : g[i];                                           \
            if (gs && neg)                                                                    \
                gs[so] += g[i] * x[i];                                                        \
            next_index(in[0]->ndim, in[0]->dims, st, idx, &so);                               \
        }                                                                                     \
    } while (0)

static cd_status prelu_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    bool f64 = cd_is_f64(in[0]);
    if (!gout[0] || (!gin[0] && !gin[1]))
        return CD_OK;
    int64_t st[CD_MAX_DIMS], idx[CD_MAX_DIMS] = {0};
    cd_status status = prelu_strides(n, in[0], in[1], st, ctx->err);
    if (status != CD_OK)
        return status;
    size_t cnt = cd_tensor_numel_raw(in[0]), so = 0;
    if (f64)
        PRELU_GRAD_LOOP(double);
    else
        PRELU_GRAD_LOOP(float);
    return CD_OK;
}
#undef PRELU_GRAD_LOOP

const cd_op_def cd_opdef_PRELU = {"PRelu", 1, NULL, prelu_infer, prelu_forward, prelu_backward,
                                  prelu_forward, prelu_backward};

/* Clip -------------------------------------------------------------------------- */

static bool clip_dtype_ok(cd_dtype t)
{
    return t == CD_FLOAT32 || t == CD_INT64 || t == CD_INT32 || t == CD_INT8 || t == CD_UINT8;
}

/* Opset >= 11 takes min and max as optional scalar inputs 1 and 2. */
static const cd_tensor *clip_bound(const cd_node *n, cd_tensor *const *in, int i)
{
    if (n->opset < 11 || i >= n->n_inputs)
        return NULL;
    return in[i];
}

static cd_status clip_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                            cd_error *err)
{
    if (n->n_inputs < 1 || !in[0])
        return cd_node_fail(n, err, CD_ERR_PARSE, "input X is missing");
    if (!clip_dtype_ok(in[0]->dtype) || (n->opset < 11 && in[0]->dtype != CD_FLOAT32))
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "element type %s is not supported",
                            cd_dtype_name(in[0]->dtype));
    for (int i = 1; i <= 2; i++) {
        const cd_tensor *b = clip_bound(n, in, i);
        if (b && (b->dtype != in[0]->dtype || cd_tensor_numel_raw(b) != 1))
            return cd_node_fail(n, err, CD_ERR_SHAPE, "%s must be a scalar of X's type",
                                i == 1 ? "min" : "max");
    }
    if (out[0])
        cd_tensor_set_shape(out[0], in[0]->dtype, in[0]->ndim, in[0]->dims);
    return CD_OK;
}

/* Writes the bounds as T into lo/hi: the given input, the opset < 11
 * attribute, or the type's full range when omitted. */
#define CLIP_BOUNDS(T, LOWEST, HIGHEST)                                                       \
    T lo = LOWEST, hi = HIGHEST;                                                              \
    {                                                                                         \
        const cd_tensor *bmin = clip_bound(n, in, 1), *bmax = clip_bound(n, in, 2);           \
        if (bmin)                                                                             \
            lo = *(const T *)bmin->data;                                                      \
        if (bmax)                                                                             \
            hi = *(const T *)bmax->data;                                                      \
        if (n->opset < 11) {                                                                  \
            lo = (T)cd_attr_float(n, "min", (float)lo);                                       \
            hi = (T)cd_attr_float(n, "max", (float)hi);                                       \
        }                                                                                     \
    }

/* min(max(x, lo), hi): when lo > hi every element becomes hi, as the spec
 * requires. */
#define CLIP_LOOP(T, LOWEST, HIGHEST)                                                         \
    do {                                                                                      \
        CLIP_BOUNDS(T, LOWEST, HIGHEST)                                                       \
        const T *x = in[0]->data;                                                             \
        T *y = out[0]->data;                                                                  \
        for (size_t i = 0; i < cnt; i++) {                                                    \
            T v = x[i] < lo ? lo : x[i];                                                      \
            y[i] = v > hi ? hi : v;                                                           \
        }                                                                                     \
    } while (0)

/* Float64 (the float64 mode's form of float32 X) and the integer types. */
static cd_status clip_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_ctx *ctx)
{
    size_t cnt = cd_tensor_numel_raw(in[0]);
    switch (in[0]->dtype) {
    case CD_FLOAT32: CLIP_LOOP(float, -FLT_MAX, FLT_MAX); break;
    case CD_FLOAT64: CLIP_LOOP(double, -INFINITY, INFINITY); break;
    case CD_INT64: CLIP_LOOP(int64_t, INT64_MIN, INT64_MAX); break;
    case CD_INT32: CLIP_LOOP(int32_t, INT32_MIN, INT32_MAX); break;
    case CD_INT8: CLIP_LOOP(int8_t, INT8_MIN, INT8_MAX); break;
    case CD_UINT8: CLIP_LOOP(uint8_t, 0, UINT8_MAX); break;
    default:
        return cd_node_fail(n, ctx->err, CD_ERR_UNSUPPORTED, "element type %s is not supported",
                            cd_dtype_name(in[0]->dtype));
    }
    return CD_OK;
}

/* Each output element comes from exactly one of x, min or max (the same
 * choice the forward makes); its gradient goes there. x == min or x == max
 * counts as x (as PyTorch's clamp). */
#define CLIP_GRAD_LOOP(T, LOWEST, HIGHEST)                                                    \
    do {                                                                                      \
        CLIP_BOUNDS(T, LOWEST, HIGHEST)                                                       \
        const T *x = in[0]->data, *g = gout[0]->data;                                         \
        T *gx = gin[0] ? gin[0]->data : NULL;                                                 \
        T *gmin = n->n_inputs > 1 && clip_bound(n, in, 1) && gin[1] ? gin[1]->data : NULL;    \
        T *gmax = n->n_inputs > 2 && clip_bound(n, in, 2) && gin[2] ? gin[2]->data : NULL;    \
        size_t cnt = cd_tensor_numel_raw(in[0]);                                              \
        for (size_t i = 0; i < cnt; i++) {                                                    \
            bool below = x[i] < lo;                                                           \
            T v = below ? lo : x[i];                                                          \
            if (v > hi) {                                                                     \
                if (gmax)                                                                     \
                    gmax[0] += g[i];                                                          \
            } else if (below) {                                                               \
                if (gmin)                                                                     \
                    gmin[0] += g[i];                                                          \
            } else if (gx) {                                                                  \
                gx[i] += g[i];                                                                \
            }                                                                                 \
        }                                                                                     \
    } while (0)

/* Both precisions (the float64 mode's X, bounds and gradients are float64). */
static cd_status clip_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                               cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    bool f64 = cd_is_f64(in[0]);
    if (!gout[0])
        return CD_OK;
    if (in[0]->dtype != (f64 ? CD_FLOAT64 : CD_FLOAT32))
        return cd_node_fail(n, ctx->err, CD_ERR_UNSUPPORTED, "gradients need %s",
                            f64 ? "float64" : "float32");
    if (f64)
        CLIP_GRAD_LOOP(double, -INFINITY, INFINITY);
    else
        CLIP_GRAD_LOOP(float, -FLT_MAX, FLT_MAX);
    return CD_OK;
}

const cd_op_def cd_opdef_CLIP = {"Clip", 1, NULL, clip_infer, clip_forward, clip_backward,
                                 clip_forward, clip_backward};

/* Softmax, LogSoftmax --------------------------------------------------------- */

/* The normalised slices as (outer, len, inner): element (o, k, i) sits at
 * (o*len + k)*inner + i. Opset < 13 coerces X to 2-D at `axis` (default 1)
 * and normalises over everything from axis on; opset >= 13 normalises along
 * the single axis (default -1). */
static cd_status softmax_layout(const cd_node *n, const cd_tensor *x, size_t *outer, size_t *len,
                                size_t *inner, cd_error *err)
{
    int r = x->ndim;
    bool new_rule = n->opset >= 13;
    int64_t axis = cd_attr_int(n, "axis", new_rule ? -1 : 1);
    int64_t a = axis < 0 ? axis + r : axis;
    if (r == 0) {
        *outer = *len = *inner = 1;
        return CD_OK;
    }
    /* Old opsets allow axis == r (an empty trailing block). */
    if (a < 0 || a > r || (new_rule && a == r))
        return cd_node_fail(n, err, CD_ERR_SHAPE, "axis %lld is out of range for rank %d",
                            (long long)axis, r);
    *outer = *len = *inner = 1;
    for (int d = 0; d < r; d++) {
        size_t v = (size_t)x->dims[d];
        if (d < a)
            *outer *= v;
        else if (d == a || !new_rule)
            *len *= v;
        else
            *inner *= v;
    }
    return CD_OK;
}

static cd_status softmax_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                               cd_error *err)
{
    cd_status st = same_shape_infer(n, in, out, err);
    size_t o = 0, l = 0, i = 0;
    return st != CD_OK ? st : softmax_layout(n, in[0], &o, &l, &i, err);
}

/* The slice kernels for element type T (float: float32 plan, double: the
 * float64 mode), one slice of len elements stride apart.
 * Forward: subtract the max before exponentiating so that nothing
 * overflows; accumulate the normaliser in double. For LogSoftmax,
 * (x - m) - log(sum), not x - (m + log(sum)): the latter rounds the large
 * m + log(sum) to float first and loses digits.
 * Backward:  Softmax:    gx = y * (g - <g, y>),
 *            LogSoftmax: gx = g - softmax * sum(g), with softmax = exp(y). */
#define SOFTMAX_SLICES(T, SFX, MAX, EXP)                                                      \
    static void softmax_slice_##SFX(const void *xv, const void *unused, void *yv, size_t len, \
                                    size_t stride, bool log_out)                              \
    {                                                                                         \
        CD_UNUSED(unused);                                                                    \
        const T *x = xv;                                                                      \
        T *y = yv;                                                                            \
        T m = -INFINITY;                                                                      \
        for (size_t k = 0; k < len; k++)                                                      \
            m = MAX(m, x[k * stride]);                                                        \
        double sum = 0;                                                                       \
        for (size_t k = 0; k < len; k++)                                                      \
            sum += exp((double)x[k * stride] - m);                                            \
        if (log_out) {                                                                        \
            double ls = log(sum);                                                             \
            for (size_t k = 0; k < len; k++)                                                  \
                y[k * stride] = (T)(((double)x[k * stride] - m) - ls);                        \
        } else {                                                                              \
            for (size_t k = 0; k < len; k++)                                                  \
                y[k * stride] = (T)(exp((double)x[k * stride] - m) / sum);                    \
        }                                                                                     \
    }                                                                                         \
    static void softmax_slice_grad_##SFX(const void *yv, const void *gv, void *gxv,           \
                                         size_t len, size_t stride, bool log_out)             \
    {                                                                                         \
        const T *y = yv, *g = gv;                                                             \
        T *gx = gxv;                                                                          \
        double acc = 0;                                                                       \
        for (size_t k = 0; k < len; k++)                                                      \
            acc += log_out ? g[k * stride] : (double)g[k * stride] * y[k * stride];           \
        for (size_t k = 0; k < len; k++) {                                                    \
            size_t j = k * stride;                                                            \
            if (log_out)                                                                      \
                gx[j] += g[j] - EXP(y[j]) * (T)acc;                                           \
            else                                                                              \
                gx[j] += y[j] * (g[j] - (T)acc);                                              \
        }                                                                                     \
    }
SOFTMAX_SLICES(float, f32, fmaxf, expf)
SOFTMAX_SLICES(double, f64, fmax, exp)
#undef SOFTMAX_SLICES

/* One typed slice pass: forward reads x (a) into y (dst), backward reads
 * y (a) and g (b) into gx (dst). */
typedef void (*softmax_pass_fn)(const void *a, const void *b, void *dst, size_t len,
                                size_t stride, bool log_out);

static const softmax_pass_fn softmax_fwd[2] = {softmax_slice_f32, softmax_slice_f64};
static const softmax_pass_fn softmax_bwd[2] = {softmax_slice_grad_f32, softmax_slice_grad_f64};

/* Runs pass[f64] (x float64 or not) over every slice of x's layout: one
 * typed call per slice. */
static cd_status softmax_apply(const cd_node *n, const cd_tensor *x, const void *a, const void *b,
                               void *dst, const softmax_pass_fn pass[2], cd_ctx *ctx)
{
    bool f64 = cd_is_f64(x);
    size_t outer = 0, len = 0, inner = 0;
    cd_status st = softmax_layout(n, x, &outer, &len, &inner, ctx->err);
    if (st != CD_OK)
        return st;
    size_t es = f64 ? sizeof(double) : sizeof(float);
    bool log_out = n->op == CD_OP_LOG_SOFTMAX;
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) {
            size_t at = (o * len * inner + i) * es;
            pass[f64]((const char *)a + at, b ? (const char *)b + at : NULL, (char *)dst + at,
                      len, inner, log_out);
        }
    return CD_OK;
}

static cd_status softmax_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                 cd_ctx *ctx)
{
    return softmax_apply(n, in[0], in[0]->data, NULL, out[0]->data, softmax_fwd, ctx);
}

static cd_status softmax_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                  cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    if (!gout[0] || !gin[0])
        return CD_OK;
    return softmax_apply(n, in[0], out[0]->data, gout[0]->data, gin[0]->data, softmax_bwd, ctx);
}

const cd_op_def cd_opdef_SOFTMAX = {"Softmax", 1, NULL, softmax_infer, softmax_forward,
                                    softmax_backward, softmax_forward, softmax_backward};
const cd_op_def cd_opdef_LOG_SOFTMAX = {"LogSoftmax", 1, NULL, softmax_infer, softmax_forward,
                                        softmax_backward, softmax_forward, softmax_backward};
