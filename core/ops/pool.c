/* MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (ONNX semantics,
 * 1-D to 3-D windows; global pools any rank >= 2). Window geometry (pads,
 * auto_pad, ceil_mode, dilations) comes from cd_win_resolve (conv.c), which
 * pads lower spatial ranks to three unit dims so one loop nest serves all.
 *
 * MaxPool accepts float32, uint8 and int8 (ONNX allows integer max pooling);
 * its gradient is float32 only and routes to the first maximum of each window
 * (the element that forward selected).
 *
 * The float64 kernels (forward64/backward64, exact-gradient mode) share the
 * float32 kernels' code: the typed loops are macro templates expanded for
 * float and double. Integer MaxPool data is unchanged in that mode and goes
 * through the same byte copy. */
#include <math.h>
#include <string.h>

#include "../parallel.h"
#include "conv_ref.h"

/* Taps of one window that fall inside the input: for spatial dim i the
 * kernel offsets lo[i] <= k < hi[i] map to input start[i] + k * d[i]. */
typedef struct win_taps {
    int64_t start[CD_WIN_MAX_SP], lo[CD_WIN_MAX_SP], hi[CD_WIN_MAX_SP];
} win_taps;

static void taps_at(const cd_win_geom *g, const int64_t *o, win_taps *t)
{
    for (int i = 0; i < CD_WIN_MAX_SP; i++) {
        int64_t s = o[i] * g->s[i] - g->pb[i];
        t->start[i] = s;
        t->lo[i] = s < 0 ? (-s + g->d[i] - 1) / g->d[i] : 0;
        int64_t last = g->in[i] - 1 - s; /* largest offset k*d that stays inside */
        t->hi[i] = last < 0 ? 0 : last / g->d[i] + 1;
        if (t->hi[i] > g->k[i])
            t->hi[i] = g->k[i];
        if (t->lo[i] > t->hi[i])
            t->lo[i] = t->hi[i];
    }
}

static int64_t taps_count(const win_taps *t)
{
    return (t->hi[0] - t->lo[0]) * (t->hi[1] - t->lo[1]) * (t->hi[2] - t->lo[2]);
}

/* Iterates BODY with idx = plane-local input index of every in-range tap. */
#define TAPS_FOR(g, t, BODY)                                                                \
    for (int64_t k0 = (t)->lo[0]; k0 < (t)->hi[0]; k0++)                                    \
        for (int64_t k1 = (t)->lo[1]; k1 < (t)->hi[1]; k1++) {                              \
            int64_t row_ = (((t)->start[0] + k0 * (g)->d[0]) * (g)->in[1] + (t)->start[1] + \
                            k1 * (g)->d[1]) *                                               \
                           (g)->in[2];                                                      \
            for (int64_t k2 = (t)->lo[2]; k2 < (t)->hi[2]; k2++) {                          \
                int64_t idx = row_ + (t)->start[2] + k2 * (g)->d[2];                        \
                BODY                                                                        \
            }                                                                               \
        }

/* Iterates BODY over every output position o[] of g (pos = linear index). */
#define OUT_FOR(g, BODY)                                                                    \
    do {                                                                                    \
        int64_t o[CD_WIN_MAX_SP], pos = 0;                                                  \
        for (o[0] = 0; o[0] < (g)->out[0]; o[0]++)                                          \
            for (o[1] = 0; o[1] < (g)->out[1]; o[1]++)                                      \
                for (o[2] = 0; o[2] < (g)->out[2]; o[2]++, pos++) {                         \
                    BODY                                                                    \
                }                                                                           \
    } while (0)

typedef struct pool_plan {
    cd_win_geom g;
    int64_t planes;        /* N * C */
    int64_t in_sp, out_sp; /* spatial element counts */
} pool_plan;

static cd_status pool_plan_make(const cd_node *n, const cd_tensor *x, pool_plan *p,
                                cd_error *err)
{
    if (!x)
        return cd_node_fail(n, err, CD_ERR_PARSE, "input X is required");
    int nsp = x->ndim - 2;
    if (nsp < 1 || nsp > CD_WIN_MAX_SP)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "input rank %d (supported: 3..5, i.e. 1-D to 3-D)", x->ndim);
    const int64_t *k = NULL;
    int kc = cd_attr_ints(n, "kernel_shape", &k);
    if (kc != nsp)
        return cd_node_fail(n, err, CD_ERR_PARSE, "kernel_shape has %d values for rank-%d input",
                            kc, x->ndim);
    bool ceil_mode = cd_attr_int(n, "ceil_mode", 0) != 0;
    cd_status st = cd_win_resolve(n, nsp, x->dims + 2, k, ceil_mode, &p->g, err);
    if (st != CD_OK)
        return st;
    size_t planes, in_sp = 1, out_sp = 1;
    bool ok = cd_mul_size((size_t)x->dims[0], (size_t)x->dims[1], &planes);
    for (int i = 0; i < nsp; i++)
        ok = ok && cd_mul_size(in_sp, (size_t)p->g.in[i], &in_sp) &&
             cd_mul_size(out_sp, (size_t)p->g.out[i], &out_sp);
    if (!ok)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "pooling size overflows");
    p->planes = (int64_t)planes;
    p->in_sp = (int64_t)in_sp;
    p->out_sp = (int64_t)out_sp;
    return CD_OK;
}

static void pool_out_dims(const cd_tensor *x, const pool_plan *p, int64_t *dims)
{
    dims[0] = x->dims[0];
    dims[1] = x->dims[1];
    for (int i = 0; i < p->g.nsp; i++)
        dims[2 + i] = p->g.out[i];
}

static cd_status pool_parse(cd_node *n, cd_error *err)
{
    if (cd_attr_ints(n, "kernel_shape", &(const int64_t *){NULL}) < 0)
        return cd_node_fail(n, err, CD_ERR_PARSE, "attribute kernel_shape is required");
    return cd_win_check_attrs(n, -1, err);
}

/* MaxPool ------------------------------------------------------------------ */

/* Plane-local index of the first maximum among the window's taps, or -1 when
 * the window lies entirely in the padding. */
#define DEFINE_ARGMAX(T, NAME)                                                              \
    static int64_t NAME(const void *plane, const cd_win_geom *g, const win_taps *t)         \
    {                                                                                       \
        const T *x = plane;                                                                 \
        int64_t best = -1;                                                                  \
        T bv = 0;                                                                           \
        TAPS_FOR(g, t, {                                                                    \
            if (best < 0 || x[idx] > bv) {                                                  \
                best = idx;                                                                 \
                bv = x[idx];                                                                \
            }                                                                               \
        })                                                                                  \
        return best;                                                                        \
    }
DEFINE_ARGMAX(float, argmax_f32)
DEFINE_ARGMAX(uint8_t, argmax_u8)
DEFINE_ARGMAX(int8_t, argmax_i8)
DEFINE_ARGMAX(double, argmax_f64)

typedef int64_t (*argmax_fn)(const void *, const cd_win_geom *, const win_taps *);

static argmax_fn argmax_for(cd_dtype dt)
{
    switch (dt) {
    case CD_FLOAT32: return argmax_f32;
    case CD_UINT8: return argmax_u8;
    case CD_INT8: return argmax_i8;
    case CD_FLOAT64: return argmax_f64; /* the float64 mode's data */
    default: return NULL;
    }
}

static cd_status maxpool_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                               cd_error *err)
{
    pool_plan p;
    cd_status st = pool_plan_make(n, in[0], &p, err);
    if (st != CD_OK)
        return st;
    if (in[0]->dtype == CD_FLOAT64 || !argmax_for(in[0]->dtype))
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "element type %d (supported: float32, uint8, int8)", in[0]->dtype);
    int64_t dims[CD_MAX_DIMS];
    pool_out_dims(in[0], &p, dims);
    cd_tensor_set_shape(out[0], in[0]->dtype, in[0]->ndim, dims);
    if (n->n_outputs > 1 && out[1])
        cd_tensor_set_shape(out[1], CD_INT64, in[0]->ndim, dims);
    return CD_OK;
}

/* ONNX Indices flatten the whole input tensor; storage_order 1 linearizes the
 * spatial dims column-major (first spatial dim fastest) within each plane. */
static int64_t index_in_storage_order(const cd_win_geom *g, int64_t local, bool column_major)
{
    if (!column_major)
        return local;
    int64_t i2 = local % g->in[2], i1 = (local / g->in[2]) % g->in[1];
    int64_t i0 = local / (g->in[2] * g->in[1]);
    int64_t dims[CD_WIN_MAX_SP] = {g->in[0], g->in[1], g->in[2]};
    int64_t idx[CD_WIN_MAX_SP] = {i0, i1, i2};
    int64_t r = 0;
    for (int i = g->nsp - 1; i >= 0; i--)
        r = r * dims[i] + idx[i];
    return r;
}

static void lowest_value(cd_dtype dt, void *dst)
{
    if (dt == CD_FLOAT32)
        *(float *)dst = -INFINITY;
    else if (dt == CD_FLOAT64)
        *(double *)dst = -INFINITY;
    else if (dt == CD_INT8)
        *(int8_t *)dst = INT8_MIN;
    else
        *(uint8_t *)dst = 0;
}

/* Both precisions (and the integer types): copies the selected element's
 * bytes (argmax for the type). */
static cd_status maxpool_run(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                             cd_ctx *ctx, argmax_fn argmax)
{
    pool_plan p;
    cd_status st = pool_plan_make(n, in[0], &p, ctx->err);
    if (st != CD_OK)
        return st;
    if (!argmax)
        return cd_node_fail(n, ctx->err, CD_ERR_UNSUPPORTED, "unsupported element type");
    size_t es = cd_dtype_size(in[0]->dtype);
    int64_t *ind = n->n_outputs > 1 && out[1] ? out[1]->data : NULL;
    bool colmajor = cd_attr_int(n, "storage_order", 0) != 0;
    const char *xb = in[0]->data;
    char *yb = out[0]->data;
    for (int64_t pl = 0; pl < p.planes; pl++) {
        const char *x = xb + (size_t)(pl * p.in_sp) * es;
        char *y = yb + (size_t)(pl * p.out_sp) * es;
        int64_t *ip = ind ? ind + pl * p.out_sp : NULL;
        OUT_FOR(&p.g, {
            win_taps t;
            taps_at(&p.g, o, &t);
            int64_t best = argmax(x, &p.g, &t);
            if (best >= 0)
                memcpy(y + (size_t)pos * es, x + (size_t)best * es, es);
            else
                lowest_value(in[0]->dtype, y + (size_t)pos * es);
            if (ip)
                ip[pos] = best < 0 ? -1 : pl * p.in_sp + index_in_storage_order(&p.g, best, colmajor);
        });
    }
    return CD_OK;
}

static cd_status maxpool_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                 cd_ctx *ctx)
{
    return maxpool_run(n, in, out, ctx, in[0] ? argmax_for(in[0]->dtype) : NULL);
}

/* The float kernels below are written once as typed loops over all planes
 * and expanded for float (the float32 plan) and double (the float64 mode);
 * the entry points pick the expansion once per call. */

/* Adds gy to the first maximum of each window (the element forward chose). */
#define DEFINE_MAXPOOL_GRAD(T, NAME, ARGMAX)                                                 \
    static void NAME(const pool_plan *p, const void *xv, const void *gyv, void *gxv)         \
    {                                                                                        \
        for (int64_t pl = 0; pl < p->planes; pl++) {                                         \
            const T *x = (const T *)xv + pl * p->in_sp;                                      \
            const T *gy = (const T *)gyv + pl * p->out_sp;                                   \
            T *gx = (T *)gxv + pl * p->in_sp;                                                \
            OUT_FOR(&p->g, {                                                                 \
                win_taps t;                                                                  \
                taps_at(&p->g, o, &t);                                                       \
                int64_t best = ARGMAX(x, &p->g, &t);                                         \
                if (best >= 0)                                                               \
                    gx[best] += gy[pos];                                                     \
            });                                                                              \
        }                                                                                    \
    }
DEFINE_MAXPOOL_GRAD(float, maxpool_grad_f32, argmax_f32)
DEFINE_MAXPOOL_GRAD(double, maxpool_grad_f64, argmax_f64)
#undef DEFINE_MAXPOOL_GRAD

/* Both precisions; the float64 mode decides the first maximum on the doubles. */
static cd_status maxpool_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                  cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    bool f64 = cd_is_f64(in[0]);
    if (!gout[0] || !gin[0])
        return CD_OK;
    if (!f64 && in[0]->dtype != CD_FLOAT32)
        return cd_node_fail(n, ctx->err, CD_ERR_UNSUPPORTED, "gradient needs float32 input");
    pool_plan p;
    cd_status st = pool_plan_make(n, in[0], &p, ctx->err);
    if (st != CD_OK)
        return st;
    (f64 ? maxpool_grad_f64 : maxpool_grad_f32)(&p, in[0]->data, gout[0]->data, gin[0]->data);
    return CD_OK;
}

const cd_op_def cd_opdef_MAX_POOL = {"MaxPool", 1, pool_parse, maxpool_infer,
                                     maxpool_forward, maxpool_backward,
                                     maxpool_forward, maxpool_backward};

/* AveragePool -------------------------------------------------------------- */

/* Divisor of one window: the in-range taps, or with count_include_pad the
 * taps inside the padded extent [-pb, in + pe) (a ceil_mode window that
 * overhangs the right padding is not charged for the overhang, as in PyTorch). */
static int64_t avg_divisor(const cd_win_geom *g, const int64_t *o, const win_taps *t,
                           bool include_pad)
{
    if (!include_pad)
        return taps_count(t);
    int64_t cnt = 1;
    for (int i = 0; i < CD_WIN_MAX_SP; i++) {
        int64_t c = 0;
        for (int64_t k = 0; k < g->k[i]; k++) {
            int64_t at = o[i] * g->s[i] - g->pb[i] + k * g->d[i];
            c += at >= -g->pb[i] && at < g->in[i] + g->pe[i];
        }
        cnt *= c;
    }
    return cnt;
}

static cd_status avgpool_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                               cd_error *err)
{
    pool_plan p;
    cd_status st = pool_plan_make(n, in[0], &p, err);
    if (st != CD_OK)
        return st;
    if (in[0]->dtype != CD_FLOAT32)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "only float32 is supported");
    int64_t dims[CD_MAX_DIMS];
    pool_out_dims(in[0], &p, dims);
    cd_tensor_set_shape(out[0], CD_FLOAT32, in[0]->ndim, dims);
    return CD_OK;
}

/* One typed AveragePool pass over all planes: src -> dst. */
typedef void (*avg_pass_fn)(const pool_plan *p, const void *src, void *dst, bool include_pad);

/* Forward: window sums in double, one rounding to T. */
#define DEFINE_AVG_FORWARD(T, NAME)                                                          \
    static void NAME(const pool_plan *p, const void *xv, void *yv, bool include_pad)         \
    {                                                                                        \
        for (int64_t pl = 0; pl < p->planes; pl++) {                                         \
            const T *x = (const T *)xv + pl * p->in_sp;                                      \
            T *y = (T *)yv + pl * p->out_sp;                                                 \
            OUT_FOR(&p->g, {                                                                 \
                win_taps t;                                                                  \
                taps_at(&p->g, o, &t);                                                       \
                double s = 0;                                                                \
                TAPS_FOR(&p->g, &t, { s += x[idx]; })                                        \
                int64_t div = avg_divisor(&p->g, o, &t, include_pad);                        \
                y[pos] = div > 0 ? (T)(s / (double)div) : (T)0;                              \
            });                                                                              \
        }                                                                                    \
    }
DEFINE_AVG_FORWARD(float, avg_forward_f32)
DEFINE_AVG_FORWARD(double, avg_forward_f64)
#undef DEFINE_AVG_FORWARD

/* Backward: each tap of a window receives gy / divisor, computed in T. */
#define DEFINE_AVG_GRAD(T, NAME)                                                             \
    static void NAME(const pool_plan *p, const void *gyv, void *gxv, bool include_pad)       \
    {                                                                                        \
        for (int64_t pl = 0; pl < p->planes; pl++) {                                         \
            const T *gy = (const T *)gyv + pl * p->out_sp;                                   \
            T *gx = (T *)gxv + pl * p->in_sp;                                                \
            OUT_FOR(&p->g, {                                                                 \
                win_taps t;                                                                  \
                taps_at(&p->g, o, &t);                                                       \
                int64_t div = avg_divisor(&p->g, o, &t, include_pad);                        \
                if (div > 0) {                                                               \
                    T share = gy[pos] / (T)div;                                              \
                    TAPS_FOR(&p->g, &t, { gx[idx] += share; })                               \
                }                                                                            \
            });                                                                              \
        }                                                                                    \
    }
DEFINE_AVG_GRAD(float, avg_grad_f32)
DEFINE_AVG_GRAD(double, avg_grad_f64)
#undef DEFINE_AVG_GRAD

/* Both AveragePool kernels in both precisions: x is the input (for the
 * geometry and the type), pass the typed loop for {float32, float64}. */
static cd_status avgpool_apply(const cd_node *n, const cd_tensor *x, const cd_tensor *src,
                               cd_tensor *dst, const avg_pass_fn pass[2], cd_ctx *ctx)
{
    bool f64 = cd_is_f64(x);
    pool_plan p;
    cd_status st = pool_plan_make(n, x, &p, ctx->err);
    if (st != CD_OK)
        return st;
    bool include_pad = cd_attr_int(n, "count_include_pad", 0) != 0;
    pass[f64](&p, src->data, dst->data, include_pad);
    return CD_OK;
}

static const avg_pass_fn avg_forward_pass[2] = {avg_forward_f32, avg_forward_f64};
static const avg_pass_fn avg_grad_pass[2] = {avg_grad_f32, avg_grad_f64};

static cd_status avgpool_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                 cd_ctx *ctx)
{
    return avgpool_apply(n, in[0], in[0], out[0], avg_forward_pass, ctx);
}

static cd_status avgpool_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                  cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    if (!gout[0] || !gin[0])
        return CD_OK;
    return avgpool_apply(n, in[0], gout[0], gin[0], avg_grad_pass, ctx);
}

const cd_op_def cd_opdef_AVERAGE_POOL = {"AveragePool", 1, pool_parse, avgpool_infer,
                                         avgpool_forward, avgpool_backward,
                                         avgpool_forward, avgpool_backward};

/* Global pools ------------------------------------------------------------- */

static cd_status global_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_error *err)
{
    const cd_tensor *x = in[0];
    if (!x)
        return cd_node_fail(n, err, CD_ERR_PARSE, "input X is required");
    if (x->dtype != CD_FLOAT32)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "only float32 is supported");
    if (x->ndim < 2)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "input rank %d (needs N, C, ...)", x->ndim);
    int64_t dims[CD_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        dims[i] = i < 2 ? x->dims[i] : 1;
    cd_tensor_set_shape(out[0], CD_FLOAT32, x->ndim, dims);
    return CD_OK;
}

/* planes = N*C, sp = elements per plane; forward kernels (nonempty) check
 * the spatial extent. */
static cd_status global_sizes(const cd_node *n, const cd_tensor *x, bool nonempty,
                              int64_t *planes, int64_t *sp, cd_error *err)
{
    *planes = x->dims[0] * x->dims[1];
    *sp = 1;
    for (int i = 2; i < x->ndim; i++)
        *sp *= x->dims[i];
    if (nonempty && *sp == 0)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "empty spatial extent");
    return CD_OK;
}

typedef struct gavg_job {
    const void *x; /* float or double, as the range function */
    void *y;
    int64_t sp;
} gavg_job;

/* The typed global-pool loops, per element type T:
 * - NAME_avg: plane means in double. Four partial sums (elements i % 4)
 *   combined at the end: one running sum was bound by the add latency
 *   (SqueezeNet's 1000 x 13 x 13 head took 0.1 ms, serially). Planes are
 *   independent, so ranges of them run on the pool with the same bits for
 *   any thread count.
 * - NAME_avg_grad: every element of a plane receives gy / sp, in T.
 * - NAME_first_max: index of the first maximum of x[0..sp-1]. */
#define DEFINE_GLOBAL(T, SFX)                                                                \
    static void gavg_range_##SFX(void *arg, int64_t lo, int64_t hi)                         \
    {                                                                                        \
        const gavg_job *j = arg;                                                             \
        int64_t sp = j->sp;                                                                  \
        for (int64_t pl = lo; pl < hi; pl++) {                                               \
            const T *x = (const T *)j->x + pl * sp;                                          \
            double s[4] = {0, 0, 0, 0};                                                      \
            int64_t i = 0;                                                                   \
            for (; i + 4 <= sp; i += 4)                                                      \
                for (int q = 0; q < 4; q++)                                                  \
                    s[q] += x[i + q];                                                        \
            for (; i < sp; i++)                                                              \
                s[i % 4] += x[i];                                                            \
            ((T *)j->y)[pl] = (T)(((s[0] + s[1]) + (s[2] + s[3])) / (double)sp);             \
        }                                                                                    \
    }                                                                                        \
    static void gavg_grad_##SFX(const void *gyv, void *gxv, int64_t planes, int64_t sp)      \
    {                                                                                        \
        for (int64_t pl = 0; pl < planes; pl++) {                                            \
            T share = ((const T *)gyv)[pl] / (T)sp;                                          \
            T *gx = (T *)gxv + pl * sp;                                                      \
            for (int64_t i = 0; i < sp; i++)                                                 \
                gx[i] += share;                                                              \
        }                                                                                    \
    }                                                                                        \
    static int64_t first_max_##SFX(const void *xv, int64_t sp)                              \
    {                                                                                        \
        const T *x = xv;                                                                     \
        int64_t best = 0;                                                                    \
        for (int64_t i = 1; i < sp; i++)                                                     \
            if (x[i] > x[best])                                                              \
                best = i;                                                                    \
        return best;                                                                         \
    }
DEFINE_GLOBAL(float, f32)
DEFINE_GLOBAL(double, f64)
#undef DEFINE_GLOBAL

static cd_status gavg_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out, cd_ctx *ctx)
{
    bool f64 = cd_is_f64(in[0]);
    int64_t planes, sp;
    cd_status st = global_sizes(n, in[0], true, &planes, &sp, ctx->err);
    if (st != CD_OK)
        return st;
    gavg_job j = {in[0]->data, out[0]->data, sp};
    int64_t t = planes * sp / 32768 + 1; /* from the shape only */
    cd_pool_for(ctx->pool, planes, t < 8 ? (int)t : 8, f64 ? gavg_range_f64 : gavg_range_f32, &j);
    return CD_OK;
}

static cd_status gavg_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                               cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    bool f64 = cd_is_f64(in[0]);
    if (!gout[0] || !gin[0])
        return CD_OK;
    int64_t planes, sp;
    cd_status st = global_sizes(n, in[0], false, &planes, &sp, ctx->err);
    if (st != CD_OK)
        return st;
    (f64 ? gavg_grad_f64 : gavg_grad_f32)(gout[0]->data, gin[0]->data, planes, sp);
    return CD_OK;
}

const cd_op_def cd_opdef_GLOBAL_AVERAGE_POOL = {"GlobalAveragePool", 1, NULL, global_infer,
                                                gavg_forward, gavg_backward,
                                                gavg_forward, gavg_backward};

/* GlobalMaxPool: the first maximum of each plane; one typed call per plane,
 * the value moved as element bytes. */
static cd_status gmax_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out, cd_ctx *ctx)
{
    bool f64 = cd_is_f64(in[0]);
    int64_t planes, sp;
    cd_status st = global_sizes(n, in[0], true, &planes, &sp, ctx->err);
    if (st != CD_OK)
        return st;
    size_t es = f64 ? sizeof(double) : sizeof(float);
    for (int64_t pl = 0; pl < planes; pl++) {
        const char *x = (const char *)in[0]->data + (size_t)(pl * sp) * es;
        int64_t best = (f64 ? first_max_f64 : first_max_f32)(x, sp);
        memcpy((char *)out[0]->data + (size_t)pl * es, x + (size_t)best * es, es);
    }
    return CD_OK;
}

static cd_status gmax_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                               cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    bool f64 = cd_is_f64(in[0]);
    if (!gout[0] || !gin[0])
        return CD_OK;
    int64_t planes, sp;
    cd_status st = global_sizes(n, in[0], false, &planes, &sp, ctx->err);
    if (st != CD_OK)
        return st;
    for (int64_t pl = 0; pl < planes; pl++) {
        if (f64) {
            const double *x = cd_cf64(in[0]) + pl * sp;
            cd_f64(gin[0])[pl * sp + first_max_f64(x, sp)] += cd_cf64(gout[0])[pl];
        } else {
            const float *x = cd_cf32(in[0]) + pl * sp;
            cd_f32(gin[0])[pl * sp + first_max_f32(x, sp)] += cd_cf32(gout[0])[pl];
        }
    }
    return CD_OK;
}

const cd_op_def cd_opdef_GLOBAL_MAX_POOL = {"GlobalMaxPool", 1, NULL, global_infer,
                                            gmax_forward, gmax_backward,
                                            gmax_forward, gmax_backward};
