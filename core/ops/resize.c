/* Resize (opset 10, 11, 13, 18 input conventions): nearest, linear and cubic
 * interpolation over any number of axes.
 *
 * Every mode is separable: each output coordinate on an axis reads a few
 * input coordinates ("taps") with weights, and an output element is the
 * weighted sum over the tensor product of its per-axis taps. Forward gathers
 * through the taps; backward scatters the gradient through the same taps
 * (the transpose of the same linear map). The coordinate arithmetic follows
 * the ONNX reference implementation (onnx/backend/test/case/node/resize.py)
 * step for step in double precision, so that nearest rounding decisions at
 * exact half-way points agree with it.
 *
 * The float64 kernels (exact-gradient mode) use the same taps; there the
 * scales input arrives as float64 and integer data (nearest) as it is. */
#include <math.h>
#include <string.h>

#include "../parallel.h"
#include "op.h"

enum { RS_NEAREST, RS_LINEAR, RS_CUBIC };
enum {
    CT_HALF_PIXEL,
    CT_PYTORCH_HALF_PIXEL,
    CT_ALIGN_CORNERS,
    CT_ASYMMETRIC,
    CT_TF_HALF_PIXEL_FOR_NN,
    CT_TF_CROP_AND_RESIZE
};
/* NM_SIMPLE is opset 10's rule: truncate when upsampling, ceil when
 * downsampling (what ONNX Runtime does for the pre-11 operator). */
enum { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL, NM_SIMPLE };

#define RS_MAX_TAPS 4

typedef struct rs_cfg {
    int rank;
    int mode, coord, nearest;
    double cubic_a, extrapolation;
    bool exclude_outside;
    int64_t in_dims[CD_MAX_DIMS], out_dims[CD_MAX_DIMS];
    double scale[CD_MAX_DIMS];
    double roi_start[CD_MAX_DIMS], roi_end[CD_MAX_DIMS];
} rs_cfg;

typedef struct rs_tap {
    int count;
    bool outside; /* tf_crop_and_resize sample outside the image */
    int64_t idx[RS_MAX_TAPS];
    double w[RS_MAX_TAPS];
} rs_tap;

/* Attribute parsing ------------------------------------------------------ */

static int lookup(const char *s, const char *const *names, int count)
{
    for (int i = 0; i < count; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static cd_status rs_modes(const cd_node *n, cd_error *err, rs_cfg *c)
{
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    static const char *const coords[] = {"half_pixel",           "pytorch_half_pixel",
                                         "align_corners",        "asymmetric",
                                         "tf_half_pixel_for_nn", "tf_crop_and_resize"};
    static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                           "ceil"};
    const char *m = cd_attr_string(n, "mode", "nearest");
    c->mode = lookup(m, modes, 3);
    if (c->mode < 0)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "mode '%s' is not supported", m);
    if (n->opset < 11) {
        c->coord = CT_ASYMMETRIC;
        c->nearest = NM_SIMPLE;
        if (c->mode == RS_CUBIC)
            return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "cubic needs opset >= 11");
    } else {
        const char *ct = cd_attr_string(n, "coordinate_transformation_mode", "half_pixel");
        const char *nm = cd_attr_string(n, "nearest_mode", "round_prefer_floor");
        c->coord = lookup(ct, coords, 6);
        c->nearest = lookup(nm, nearests, 4);
        if (c->coord < 0)
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                                "coordinate_transformation_mode '%s' is not supported", ct);
        if (c->nearest < 0)
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "nearest_mode '%s' is not supported",
                                nm);
    }
    c->cubic_a = cd_attr_float(n, "cubic_coeff_a", -0.75f);
    c->exclude_outside = cd_attr_int(n, "exclude_outside", 0) != 0;
    c->extrapolation = cd_attr_float(n, "extrapolation_value", 0.0f);
    if (cd_attr_int(n, "antialias", 0) != 0)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "antialias=1 is not supported");
    return CD_OK;
}

/* Output shape ----------------------------------------------------------- */

static bool present(cd_tensor *const *in, int n_inputs, int i)
{
    return i < n_inputs && in[i] && cd_tensor_numel_raw(in[i]) > 0;
}

static cd_status need_const(const cd_node *n, cd_error *err, const cd_tensor *t, const char *what)
{
    if (!t->data)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "input '%s' must be a constant known when the plan is built", what);
    return CD_OK;
}

/* The axes that scales/sizes/roi describe (opset 18 'axes'), else all. */
static cd_status rs_axes(const cd_node *n, cd_error *err, int rank, int *axes, int *count)
{
    const int64_t *vals;
    int cnt = n->opset >= 18 ? cd_attr_ints(n, "axes", &vals) : -1;
    if (cnt < 0) {
        for (int d = 0; d < rank; d++)
            axes[d] = d;
        *count = rank;
        return CD_OK;
    }
    if (cnt > rank)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "too many axes");
    for (int k = 0; k < cnt; k++) {
        int64_t a = vals[k] < 0 ? vals[k] + rank : vals[k];
        if (a < 0 || a >= rank)
            return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "axis %lld out of range",
                                (long long)vals[k]);
        axes[k] = (int)a;
    }
    *count = cnt;
    return CD_OK;
}

/* f64: float64 mode, where the float32 scales arrive widened. */
static cd_status rs_from_scales(const cd_node *n, const cd_tensor *s, const int *axes, int na,
                                bool f64, cd_error *err, rs_cfg *c)
{
    cd_status st = need_const(n, err, s, "scales");
    if (st != CD_OK)
        return st;
    if (s->dtype != (f64 ? CD_FLOAT64 : CD_FLOAT32) || cd_tensor_numel_raw(s) != (size_t)na)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "scales must be %s with %d entries",
                            f64 ? "float64 (float64 mode)" : "float32", na);
    for (int k = 0; k < na; k++) {
        int d = axes[k];
        double sc = f64 ? ((const double *)s->data)[k] : ((const float *)s->data)[k];
        if (!(sc > 0) || !isfinite(sc))
            return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "scale %g must be > 0", sc);
        double len = sc * (double)c->in_dims[d];
        if (len > 9.0e15)
            return cd_node_fail(n, err, CD_ERR_LIMIT, "output size overflows");
        c->scale[d] = sc;
        c->out_dims[d] = (int64_t)len; /* floor: len >= 0 */
    }
    return CD_OK;
}

static cd_status rs_from_sizes(const cd_node *n, const cd_tensor *s, const int *axes, int na,
                               cd_error *err, rs_cfg *c)
{
    cd_status st = need_const(n, err, s, "sizes");
    if (st != CD_OK)
        return st;
    if (s->dtype != CD_INT64 || cd_tensor_numel_raw(s) != (size_t)na)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "sizes must be int64 with %d entries", na);
    const char *policy = cd_attr_string(n, "keep_aspect_ratio_policy", "stretch");
    bool stretch = n->opset < 18 || strcmp(policy, "stretch") == 0;
    bool not_larger = strcmp(policy, "not_larger") == 0;
    if (!stretch && !not_larger && strcmp(policy, "not_smaller") != 0)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "keep_aspect_ratio_policy '%s'", policy);
    double common = not_larger ? INFINITY : 0;
    for (int k = 0; k < na; k++) {
        int d = axes[k];
        int64_t sz = ((const int64_t *)s->data)[k];
        if (sz < 0 || c->in_dims[d] <= 0)
            return cd_node_fail(n, err, CD_ERR_SHAPE, "cannot resize axis %d of size %lld to %lld",
                                d, (long long)c->in_dims[d], (long long)sz);
        c->out_dims[d] = sz;
        c->scale[d] = (double)sz / (double)c->in_dims[d];
        common = not_larger ? fmin(common, c->scale[d]) : fmax(common, c->scale[d]);
    }
    for (int k = 0; k < na && !stretch; k++) {
        int d = axes[k];
        c->scale[d] = common;
        c->out_dims[d] = (int64_t)floor(common * (double)c->in_dims[d] + 0.5);
    }
    return CD_OK;
}

static cd_status rs_roi(const cd_node *n, const cd_tensor *roi, const int *axes, int na,
                        cd_error *err, rs_cfg *c)
{
    cd_status st = need_const(n, err, roi, "roi");
    if (st != CD_OK)
        return st;
    if ((roi->dtype != CD_FLOAT32 && roi->dtype != CD_FLOAT64) ||
        cd_tensor_numel_raw(roi) != 2 * (size_t)na)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "roi must hold %d floats", 2 * na);
    for (int k = 0; k < na; k++) {
        bool f32 = roi->dtype == CD_FLOAT32;
        const float *rf = roi->data;
        const double *rd = roi->data;
        c->roi_start[axes[k]] = f32 ? rf[k] : rd[k];
        c->roi_end[axes[k]] = f32 ? rf[na + k] : rd[na + k];
    }
    return CD_OK;
}

/* Resolves modes, scales and output dims. Needs scales/sizes (and roi for
 * tf_crop_and_resize) to carry data. f64: float64 mode. */
static cd_status rs_config(const cd_node *n, cd_tensor *const *in, bool f64, cd_error *err,
                           rs_cfg *c)
{
    memset(c, 0, sizeof *c);
    cd_status st = rs_modes(n, err, c);
    if (st != CD_OK)
        return st;
    c->rank = in[0]->ndim;
    for (int d = 0; d < c->rank; d++) {
        c->in_dims[d] = c->out_dims[d] = in[0]->dims[d];
        c->scale[d] = 1.0;
        c->roi_start[d] = 0.0;
        c->roi_end[d] = 1.0;
    }
    int axes[CD_MAX_DIMS], na = 0;
    if ((st = rs_axes(n, err, c->rank, axes, &na)) != CD_OK)
        return st;
    if (n->opset < 11) {
        if (!present(in, n->n_inputs, 1))
            return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "missing input 'scales'");
        return rs_from_scales(n, in[1], axes, na, f64, err, c);
    }
    bool has_scales = present(in, n->n_inputs, 2), has_sizes = present(in, n->n_inputs, 3);
    if (has_scales == has_sizes)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT,
                            "exactly one of 'scales' and 'sizes' must be given");
    st = has_scales ? rs_from_scales(n, in[2], axes, na, f64, err, c)
                    : rs_from_sizes(n, in[3], axes, na, err, c);
    if (st == CD_OK && c->coord == CT_TF_CROP_AND_RESIZE && present(in, n->n_inputs, 1))
        st = rs_roi(n, in[1], axes, na, err, c);
    return st;
}

static cd_status resize_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_error *err)
{
    if (n->n_inputs < 1 || !in[0]) /* hostile models may omit required inputs */
        return cd_node_fail(n, err, CD_ERR_PARSE, "missing input 'data'");
    rs_cfg c;
    cd_status st = rs_config(n, in, false, err, &c);
    if (st != CD_OK)
        return st;
    if (c.mode != RS_NEAREST && in[0]->dtype != CD_FLOAT32)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "%s interpolation of %s data is not supported (float32 only)",
                            c.mode == RS_LINEAR ? "linear" : "cubic",
                            cd_dtype_name(in[0]->dtype));
    cd_tensor_set_shape(out[0], in[0]->dtype, c.rank, c.out_dims);
    return CD_OK;
}

/* Taps ------------------------------------------------------------------- */

/* Input coordinate of output coordinate x on axis d; false when the sample
 * lies outside the crop (tf_crop_and_resize only). */
static bool rs_source_coord(const rs_cfg *c, int d, int64_t x_out, double *x_in)
{
    double x = (double)x_out, scale = c->scale[d];
    double in_w = (double)c->in_dims[d], out_w = scale * in_w;
    switch (c->coord) {
    case CT_ALIGN_CORNERS:
        *x_in = out_w == 1 ? 0.0 : x * (in_w - 1) / (out_w - 1);
        return true;
    case CT_ASYMMETRIC: *x_in = x / scale; return true;
    case CT_TF_HALF_PIXEL_FOR_NN: *x_in = (x + 0.5) / scale; return true;
    case CT_PYTORCH_HALF_PIXEL:
        *x_in = out_w == 1 ? -0.5 : (x + 0.5) / scale - 0.5;
        return true;
    case CT_TF_CROP_AND_RESIZE: {
        double span = c->roi_end[d] - c->roi_start[d];
        double v = out_w == 1 ? span * (in_w - 1) / 2 : x * span * (in_w - 1) / (out_w - 1);
        v += c->roi_start[d] * (in_w - 1);
        *x_in = v;
        return !(v < 0 || v > in_w - 1);
    }
    default: *x_in = (x + 0.5) / scale - 0.5; return true;
    }
}

static void cubic_weights(double r, double a, double *w)
{
    double p = r + 1, q = 1 - r, s = 2 - r;
    w[0] = ((a * p - 5 * a) * p + 8 * a) * p - 4 * a;
    w[1] = ((a + 2) * r - (a + 3)) * r * r + 1;
    w[2] = ((a + 2) * q - (a + 3)) * q * q + 1;
    w[3] = ((a * s - 5 * a) * s + 8 * a) * s - 4 * a;
}

/* Weights for taps base, base+1 (nearest/linear) or base-1..base+2 (cubic),
 * where ratio in (0, 1] is the distance of the coordinate from base. */
static int rs_weights(const rs_cfg *c, double ratio, bool integral, bool down, double *w)
{
    if (c->mode == RS_CUBIC) {
        cubic_weights(ratio, c->cubic_a, w);
        return 4;
    }
    if (c->mode == RS_LINEAR) {
        w[0] = 1 - ratio;
        w[1] = ratio;
        return 2;
    }
    bool upper;
    if (integral)
        upper = true;
    else if (c->nearest == NM_ROUND_PREFER_FLOOR)
        upper = ratio > 0.5;
    else if (c->nearest == NM_ROUND_PREFER_CEIL)
        upper = ratio >= 0.5;
    else if (c->nearest == NM_FLOOR)
        upper = false;
    else if (c->nearest == NM_CEIL)
        upper = true;
    else
        upper = down;
    w[0] = upper ? 0 : 1;
    w[1] = upper ? 1 : 0;
    return 2;
}

static void rs_make_tap(const rs_cfg *c, int d, int64_t x_out, rs_tap *t)
{
    double x;
    int64_t len = c->in_dims[d];
    memset(t, 0, sizeof *t);
    if (!rs_source_coord(c, d, x_out, &x)) {
        t->outside = true;
        return;
    }
    /* The coordinate's left neighbour, with the ratio in (0, 1]: an integral
     * coordinate is reached from one step to its left with ratio 1. */
    double fl = floor(x);
    bool integral = fl == x;
    int64_t base = (int64_t)fl - (integral ? 1 : 0);
    double ratio = integral ? 1.0 : x - fl;
    double w[RS_MAX_TAPS], sum = 0;
    int k = rs_weights(c, ratio, integral, c->scale[d] < 1.0, w);
    int64_t first = c->mode == RS_CUBIC ? base - 1 : base;
    for (int i = 0; i < k; i++) {
        int64_t j = first + i;
        if (c->exclude_outside && (j < 0 || j >= len))
            w[i] = 0;
        sum += w[i];
    }
    for (int i = 0; i < k; i++) {
        int64_t j = first + i;
        double wi = c->exclude_outside && sum != 0 ? w[i] / sum : w[i];
        if (wi == 0)
            continue; /* zero taps cost time and would touch clamped cells */
        j = j < 0 ? 0 : (j >= len ? len - 1 : j);
        t->idx[t->count] = j;
        t->w[t->count] = wi;
        t->count++;
    }
}

/* Per-axis tap tables laid out in scratch; tabs[d][x] for output coord x. */
static cd_status rs_tables(const rs_cfg *c, cd_ctx *ctx, rs_tap **tabs)
{
    size_t total = 0;
    for (int d = 0; d < c->rank; d++)
        total += (size_t)c->out_dims[d];
    rs_tap *p = cd_ctx_scratch(ctx, (total ? total : 1) * sizeof *p);
    if (!p)
        return CD_ERR_OUT_OF_MEMORY;
    for (int d = 0; d < c->rank; d++) {
        tabs[d] = p;
        for (int64_t x = 0; x < c->out_dims[d]; x++)
            rs_make_tap(c, d, x, &p[x]);
        p += c->out_dims[d];
    }
    return CD_OK;
}

/* Kernels ---------------------------------------------------------------- */

typedef struct rs_run {
    const rs_cfg *c;
    rs_tap *tabs[CD_MAX_DIMS];
    size_t in_stride[CD_MAX_DIMS];
    int64_t at[CD_MAX_DIMS]; /* current output coordinate */
    const float *x;
    float *gx;
    const double *x64; /* float64 mode instead of x/gx */
    double *gx64;
} rs_run;

/* Input element off as double, and the gradient update at off: x/gx in the
 * float32 plan (the update rounded to float), x64/gx64 in the float64 mode. */
static inline double rs_load(const rs_run *r, size_t off)
{
    return r->x64 ? r->x64[off] : (double)r->x[off];
}

static inline void rs_add(const rs_run *r, size_t off, double v)
{
    if (r->gx64)
        r->gx64[off] += v;
    else
        r->gx[off] += (float)v;
}

static double rs_gather(const rs_run *r, int d, size_t base)
{
    const rs_tap *t = &r->tabs[d][r->at[d]];
    double s = 0;
    for (int k = 0; k < t->count; k++) {
        size_t off = base + (size_t)t->idx[k] * r->in_stride[d];
        s += t->w[k] * (d + 1 == r->c->rank ? rs_load(r, off) : rs_gather(r, d + 1, off));
    }
    return s;
}

static void rs_scatter(const rs_run *r, int d, size_t base, double g)
{
    const rs_tap *t = &r->tabs[d][r->at[d]];
    for (int k = 0; k < t->count; k++) {
        size_t off = base + (size_t)t->idx[k] * r->in_stride[d];
        if (d + 1 == r->c->rank)
            rs_add(r, off, t->w[k] * g);
        else
            rs_scatter(r, d + 1, off, g * t->w[k]);
    }
}

/* Whether the current output element lies outside a tf_crop_and_resize crop. */
static bool rs_outside(const rs_run *r)
{
    for (int d = 0; d < r->c->rank; d++)
        if (r->tabs[d][r->at[d]].outside)
            return true;
    return false;
}

/* Input offset of the single tap of a nearest sample. */
static size_t rs_nearest_offset(const rs_run *r)
{
    size_t off = 0;
    for (int d = 0; d < r->c->rank; d++)
        off += (size_t)r->tabs[d][r->at[d]].idx[0] * r->in_stride[d];
    return off;
}

static void rs_next(rs_run *r)
{
    for (int d = r->c->rank - 1; d >= 0; d--) {
        if (++r->at[d] < r->c->out_dims[d])
            return;
        r->at[d] = 0;
    }
}

static cd_status rs_prepare(const cd_node *n, cd_tensor *const *in, bool f64, cd_ctx *ctx,
                            rs_cfg *c, rs_run *r)
{
    cd_status st = rs_config(n, in, f64, ctx->err, c);
    if (st != CD_OK)
        return st;
    memset(r, 0, sizeof *r);
    r->c = c;
    size_t s = 1;
    for (int d = c->rank - 1; d >= 0; d--) {
        r->in_stride[d] = s;
        s *= (size_t)c->in_dims[d];
    }
    if (cd_tensor_numel_raw(in[0]) == 0) {
        for (int d = 0; d < c->rank; d++)
            if (c->out_dims[d] > 0 && c->in_dims[d] == 0)
                return cd_node_fail(n, ctx->err, CD_ERR_SHAPE, "cannot resize an empty axis");
    }
    return rs_tables(c, ctx, r->tabs);
}

/* Fast path for the common image case: float32, only the last two axes
 * resized, no sample outside the input. Each output row then combines the
 * taps of its row with the taps of every column, and planes are independent,
 * so they are spread over candor's pool (block count from the shape only).
 * The sums are the generic walk's, in the same order and in double, so the
 * result is bit-identical to it (tests/test_resize_fast.c). */
typedef struct rs_plane_job {
    const rs_run *r;
    float *y;
    int64_t planes, per_task;
} rs_plane_job;

static bool rs_plane_path(const rs_cfg *c, const rs_run *r)
{
    if (c->rank < 2)
        return false;
    for (int d = 0; d < c->rank; d++)
        for (int64_t x = 0; x < c->out_dims[d]; x++) {
            const rs_tap *t = &r->tabs[d][x];
            if (t->outside)
                return false;
            if (d < c->rank - 2 && (t->count != 1 || t->idx[0] != x || t->w[0] != 1.0))
                return false;
        }
    return true;
}

static void rs_plane_task(void *arg, int task)
{
    const rs_plane_job *j = arg;
    const rs_cfg *c = j->r->c;
    int dh = c->rank - 2, dw = c->rank - 1;
    int64_t H = c->in_dims[dh], W = c->in_dims[dw], OH = c->out_dims[dh], OW = c->out_dims[dw];
    int64_t lo = task * j->per_task, hi = lo + j->per_task < j->planes ? lo + j->per_task : j->planes;
    for (int64_t q = lo; q < hi; q++) {
        const float *x = j->r->x + q * H * W;
        float *y = j->y + q * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            const rs_tap *th = &j->r->tabs[dh][oh];
            for (int64_t ow = 0; ow < OW; ow++) {
                const rs_tap *tw = &j->r->tabs[dw][ow];
                double s = 0;
                for (int a = 0; a < th->count; a++) {
                    const float *xr = x + th->idx[a] * W;
                    double inner = 0;
                    for (int b = 0; b < tw->count; b++)
                        inner += tw->w[b] * (double)xr[tw->idx[b]];
                    s += th->w[a] * inner;
                }
                y[oh * OW + ow] = (float)s;
            }
        }
    }
}

#define RS_MAX_TASKS 32

static void rs_planes(const rs_cfg *c, const rs_run *r, float *y, cd_ctx *ctx)
{
    int64_t planes = 1;
    for (int d = 0; d < c->rank - 2; d++)
        planes *= c->out_dims[d];
    if (planes == 0)
        return;
    int64_t tasks = planes < RS_MAX_TASKS ? planes : RS_MAX_TASKS;
    rs_plane_job j = {r, y, planes, (planes + tasks - 1) / tasks};
    cd_pool_run(ctx->pool, (int)((planes + j.per_task - 1) / j.per_task), rs_plane_task, &j);
}

/* Nearest on any element type: one tap per axis, copy the bytes. */
static void rs_copy_nearest(rs_run *r, const cd_tensor *x, cd_tensor *y)
{
    size_t es = cd_dtype_size(x->dtype), total = cd_tensor_numel_raw(y);
    for (size_t o = 0; o < total; o++, rs_next(r))
        memcpy((char *)y->data + o * es, (const char *)x->data + rs_nearest_offset(r) * es, es);
}

/* Both precisions: float32, or float64 in the float64 mode (where the plane
 * fast path, float32 only, is not taken). The mode is passed, not read off
 * the data: integer data keeps its type, while scales and roi are float64
 * in the float64 mode. */
static cd_status resize_run(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                            cd_ctx *ctx, bool f64)
{
    rs_cfg c;
    rs_run r;
    if (f64 && in[0] && in[0]->dtype == CD_FLOAT32)
        return cd_node_fail(n, ctx->err, CD_ERR_UNSUPPORTED, "float64 kernel got float32 data");
    cd_status st = rs_prepare(n, in, f64, ctx, &c, &r);
    if (st != CD_OK)
        return st;
    if (in[0]->dtype != (f64 ? CD_FLOAT64 : CD_FLOAT32)) {
        rs_copy_nearest(&r, in[0], out[0]); /* integer data keeps its type */
        return CD_OK;
    }
    if (f64) {
        r.x64 = cd_cf64(in[0]);
    } else {
        r.x = cd_cf32(in[0]);
        if (rs_plane_path(&c, &r)) {
            rs_planes(&c, &r, cd_f32(out[0]), ctx);
            return CD_OK;
        }
    }
    size_t total = cd_tensor_numel_raw(out[0]);
    for (size_t o = 0; o < total; o++, rs_next(&r)) {
        double v = rs_outside(&r) ? c.extrapolation : c.rank ? rs_gather(&r, 0, 0) : rs_load(&r, 0);
        if (f64)
            cd_f64(out[0])[o] = v;
        else
            cd_f32(out[0])[o] = (float)v;
    }
    return CD_OK;
}

static cd_status resize_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                cd_ctx *ctx)
{
    return resize_run(n, in, out, ctx, false);
}

static cd_status resize_forward64(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                  cd_ctx *ctx)
{
    return resize_run(n, in, out, ctx, true);
}

/* The transpose of the forward's linear map; roi/scales/sizes carry no
 * gradient. */
static cd_status resize_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                 cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    if (!gin[0] || !gout[0])
        return CD_OK;
    bool f64 = cd_is_f64(gout[0]);
    cd_status chk = cd_grad_dtype_check(n, gin[0], gout[0], f64, ctx->err);
    if (chk != CD_OK)
        return chk;
    rs_cfg c;
    rs_run r;
    cd_status st = rs_prepare(n, in, f64, ctx, &c, &r);
    if (st != CD_OK)
        return st;
    if (f64)
        r.gx64 = cd_f64(gin[0]);
    else
        r.gx = cd_f32(gin[0]);
    size_t total = cd_tensor_numel_raw(gout[0]);
    for (size_t o = 0; o < total; o++, rs_next(&r)) {
        if (rs_outside(&r))
            continue;
        double g = f64 ? cd_cf64(gout[0])[o] : (double)cd_cf32(gout[0])[o];
        if (c.rank)
            rs_scatter(&r, 0, 0, g);
        else
            rs_add(&r, 0, g);
    }
    return CD_OK;
}

const cd_op_def cd_opdef_RESIZE = {"Resize", 10, NULL, resize_infer, resize_forward,
                                   resize_backward, resize_forward64, resize_backward};
