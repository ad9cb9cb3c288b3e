/* Shape and data-movement operators: Concat, Flatten, Reshape, Transpose,
 * Squeeze, Unsqueeze, Identity, Constant, Shape, Gather, Cast.
 *
 * Data movement works on raw bytes (cd_dtype_size) so every element type is
 * handled by the same code; that includes float64 mode (core/plan64.c), where
 * float32 tensors arrive as float64 and every output has its own buffer, so
 * the byte kernels serve as forward64 unchanged. Backward passes are written
 * once for both gradient types (float32 in the float plan, float64 in
 * float64 mode) and get two entry points from GRAD_ENTRY_POINTS. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "op.h"

/* Shared helpers -------------------------------------------------------- */

/* Maps a possibly negative axis into [0, rank). */
static cd_status norm_axis(const cd_node *n, cd_error *err, int64_t axis, int rank, int *out)
{
    if (axis < -rank || axis >= rank)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "axis %lld out of range for rank %d",
                            (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return CD_OK;
}

static size_t prod_dims(const int64_t *dims, int from, int to)
{
    size_t p = 1;
    for (int i = from; i < to; i++)
        p *= (size_t)dims[i];
    return p;
}

/* Copies the element bytes of src into dst (same element count). The two may
 * share storage when a planner runs a view-like op in place. */
static void copy_payload(cd_tensor *dst, const cd_tensor *src)
{
    size_t bytes = cd_tensor_numel_raw(src) * cd_dtype_size(src->dtype);
    if (bytes && dst->data != src->data)
        memmove(dst->data, src->data, bytes);
}

/* gt is the gradient type of the entry point: float32, or float64 in float64
 * mode. Checking it once lets grad_add trust the pointers. */
static cd_status need_grad(const cd_node *n, cd_error *err, const cd_tensor *g, cd_dtype gt)
{
    if (g && g->dtype != gt)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "gradients of type %s are not supported",
                            cd_dtype_name(g->dtype));
    return CD_OK;
}

/* gin[at + k] += gout[from + k] for k < cnt, both of the checked type. */
static void grad_add(cd_tensor *gin, size_t at, const cd_tensor *gout, size_t from, size_t cnt)
{
    if (gin->dtype == CD_FLOAT64) {
        double *gi = cd_f64(gin) + at;
        const double *go = cd_cf64(gout) + from;
        for (size_t k = 0; k < cnt; k++)
            gi[k] += go[k];
        return;
    }
    float *gi = cd_f32(gin) + at;
    const float *go = cd_cf32(gout) + from;
    for (size_t k = 0; k < cnt; k++)
        gi[k] += go[k];
}

/* Defines name##_backward (float32) and name##_backward64 (float64) over
 * name##_grad, which takes the gradient type as its last argument. */
#define GRAD_ENTRY_POINTS(name)                                                              \
    static cd_status name##_backward(const cd_node *n, cd_tensor *const *in,                \
                                     cd_tensor *const *out, cd_tensor *const *gout,         \
                                     cd_tensor **gin, cd_ctx *ctx)                          \
    {                                                                                        \
        return name##_grad(n, in, out, gout, gin, ctx, CD_FLOAT32);                         \
    }                                                                                        \
    static cd_status name##_backward64(const cd_node *n, cd_tensor *const *in,              \
                                       cd_tensor *const *out, cd_tensor *const *gout,       \
                                       cd_tensor **gin, cd_ctx *ctx)                        \
    {                                                                                        \
        return name##_grad(n, in, out, gout, gin, ctx, CD_FLOAT64);                         \
    }

/* gin += gout for ops whose Jacobian is the identity on the flat payload. */
static cd_status copy_grad(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                           cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx, cd_dtype gt)
{
    CD_UNUSED(in);
    CD_UNUSED(out);
    if (!gin[0] || !gout[0])
        return CD_OK;
    cd_status st = need_grad(n, ctx->err, gin[0], gt);
    if (st == CD_OK)
        st = need_grad(n, ctx->err, gout[0], gt);
    if (st != CD_OK)
        return st;
    grad_add(gin[0], 0, gout[0], 0, cd_tensor_numel_raw(gin[0]));
    return CD_OK;
}

GRAD_ENTRY_POINTS(copy)

/* Ops whose inputs carry no gradient (Shape, Constant, casts to integers);
 * it touches nothing, so it serves float64 mode too. */
static cd_status backward_none(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                               cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(n);
    CD_UNUSED(in);
    CD_UNUSED(out);
    CD_UNUSED(gout);
    CD_UNUSED(gin);
    CD_UNUSED(ctx);
    return CD_OK;
}

/* Reads a plan-time constant integer list (1-D int64/int32 tensor). */
static cd_status const_int_list(const cd_node *n, cd_error *err, const cd_tensor *t,
                                const char *what, int64_t *vals, int max, int *count)
{
    if (!t->data)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "input '%s' must be a constant known when the plan is built", what);
    if (t->dtype != CD_INT64 && t->dtype != CD_INT32)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "input '%s' must be int64, got %s",
                            what, cd_dtype_name(t->dtype));
    if (t->ndim > 1)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "input '%s' must be 1-D", what);
    size_t cnt = cd_tensor_numel_raw(t);
    if (cnt > (size_t)max)
        return cd_node_fail(n, err, CD_ERR_LIMIT, "input '%s' has %zu entries (at most %d)", what,
                            cnt, max);
    for (size_t i = 0; i < cnt; i++)
        vals[i] = cd_tensor_int_at(t, i);
    *count = (int)cnt;
    return CD_OK;
}

/* Concat ---------------------------------------------------------------- */

static cd_status concat_axis(const cd_node *n, cd_error *err, int rank, int *axis)
{
    /* opset 1 made the axis optional with default 1; opset 4 requires it. */
    const cd_attr *a = cd_node_attr(n, "axis");
    if (!a && n->opset >= 4)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "missing required attribute 'axis'");
    return norm_axis(n, err, a ? a->i : 1, rank, axis);
}

static cd_status concat_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_error *err)
{
    if (n->n_inputs < 1 || !in[0])
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "needs at least one input");
    int axis = 0;
    cd_status st = concat_axis(n, err, in[0]->ndim, &axis);
    if (st != CD_OK)
        return st;
    int64_t dims[CD_MAX_DIMS];
    memcpy(dims, in[0]->dims, sizeof dims);
    for (int i = 1; i < n->n_inputs; i++) {
        const cd_tensor *t = in[i];
        if (!t)
            return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "input %d is missing", i);
        if (t->dtype != in[0]->dtype || t->ndim != in[0]->ndim)
            return cd_node_fail(n, err, CD_ERR_SHAPE, "input %d differs in type or rank", i);
        for (int d = 0; d < t->ndim; d++)
            if (d != axis && t->dims[d] != dims[d])
                return cd_node_fail(n, err, CD_ERR_SHAPE,
                                    "input %d dim %d is %lld, expected %lld", i, d,
                                    (long long)t->dims[d], (long long)dims[d]);
        dims[axis] += t->dims[axis];
    }
    cd_tensor_set_shape(out[0], in[0]->dtype, in[0]->ndim, dims);
    return CD_OK;
}

static cd_status concat_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                cd_ctx *ctx)
{
    int axis = 0;
    cd_status st = concat_axis(n, ctx->err, in[0]->ndim, &axis);
    if (st != CD_OK)
        return st;
    size_t es = cd_dtype_size(out[0]->dtype);
    size_t outer = prod_dims(out[0]->dims, 0, axis);
    size_t inner = prod_dims(out[0]->dims, axis + 1, out[0]->ndim) * es;
    size_t out_row = (size_t)out[0]->dims[axis] * inner;
    size_t offset = 0;
    char *dst = out[0]->data;
    for (int i = 0; i < n->n_inputs; i++) {
        size_t row = (size_t)in[i]->dims[axis] * inner;
        const char *src = in[i]->data;
        for (size_t o = 0; o < outer && row; o++)
            memcpy(dst + o * out_row + offset, src + o * row, row);
        offset += row;
    }
    return CD_OK;
}

static cd_status concat_grad(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                             cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx, cd_dtype gt)
{
    if (!gout[0])
        return CD_OK;
    int axis = 0;
    cd_status st = concat_axis(n, ctx->err, in[0]->ndim, &axis);
    if (st == CD_OK)
        st = need_grad(n, ctx->err, gout[0], gt);
    if (st != CD_OK)
        return st;
    size_t outer = prod_dims(out[0]->dims, 0, axis);
    size_t inner = prod_dims(out[0]->dims, axis + 1, out[0]->ndim);
    size_t out_row = (size_t)out[0]->dims[axis] * inner;
    size_t offset = 0;
    for (int i = 0; i < n->n_inputs; i++) {
        size_t row = (size_t)in[i]->dims[axis] * inner;
        if (gin[i]) {
            if ((st = need_grad(n, ctx->err, gin[i], gt)) != CD_OK)
                return st;
            for (size_t o = 0; o < outer; o++)
                grad_add(gin[i], o * row, gout[0], o * out_row + offset, row);
        }
        offset += row;
    }
    return CD_OK;
}

GRAD_ENTRY_POINTS(concat)

const cd_op_def cd_opdef_CONCAT = {"Concat", 1, NULL, concat_infer, concat_forward,
                                   concat_backward, concat_forward, concat_backward64};

/* Flatten --------------------------------------------------------------- */

static cd_status flatten_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                               cd_error *err)
{
    if (n->n_inputs < 1 || !in[0]) /* hostile models may omit required inputs */
        return cd_node_fail(n, err, CD_ERR_PARSE, "missing input 'data'");
    int rank = in[0]->ndim;
    int64_t axis = cd_attr_int(n, "axis", 1);
    if (axis < -rank || axis > rank)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "axis %lld out of range for rank %d",
                            (long long)axis, rank);
    if (axis < 0)
        axis += rank;
    int64_t dims[2] = {1, 1};
    for (int d = 0; d < rank; d++)
        dims[d < axis ? 0 : 1] *= in[0]->dims[d];
    cd_tensor_set_shape(out[0], in[0]->dtype, 2, dims);
    return CD_OK;
}

/* Forward of every op that only reinterprets the shape; also their forward64,
 * where the payload is always copied (own output buffers). */
static cd_status view_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_ctx *ctx)
{
    CD_UNUSED(n);
    CD_UNUSED(ctx);
    copy_payload(out[0], in[0]);
    return CD_OK;
}

const cd_op_def cd_opdef_FLATTEN = {"Flatten", 1, NULL, flatten_infer, view_forward,
                                    copy_backward, view_forward, copy_backward64};

/* Reshape --------------------------------------------------------------- */

static cd_status reshape_target(const cd_node *n, cd_tensor *const *in, cd_error *err,
                                int64_t *shape, int *rank)
{
    if (n->opset < 5) {
        const int64_t *vals;
        int cnt = cd_attr_ints(n, "shape", &vals);
        if (cnt < 0)
            return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "missing attribute 'shape'");
        if (cnt > CD_MAX_DIMS)
            return cd_node_fail(n, err, CD_ERR_LIMIT, "target rank %d exceeds %d", cnt,
                                CD_MAX_DIMS);
        memcpy(shape, vals, (size_t)cnt * sizeof *shape);
        *rank = cnt;
        return CD_OK;
    }
    if (n->n_inputs < 2 || !in[1])
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "missing input 'shape'");
    return const_int_list(n, err, in[1], "shape", shape, CD_MAX_DIMS, rank);
}

static cd_status reshape_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                               cd_error *err)
{
    if (n->n_inputs < 1 || !in[0]) /* hostile models may omit required inputs */
        return cd_node_fail(n, err, CD_ERR_PARSE, "missing input 'data'");
    int64_t shape[CD_MAX_DIMS];
    int rank;
    cd_status st = reshape_target(n, in, err, shape, &rank);
    if (st != CD_OK)
        return st;
    bool allowzero = cd_attr_int(n, "allowzero", 0) != 0;
    int infer_at = -1;
    size_t known = 1, total = cd_tensor_numel_raw(in[0]);
    for (int d = 0; d < rank; d++) {
        if (shape[d] == 0 && !allowzero) {
            if (d >= in[0]->ndim)
                return cd_node_fail(n, err, CD_ERR_SHAPE, "shape[%d] = 0 copies a missing dim",
                                    d);
            shape[d] = in[0]->dims[d];
        }
        if (shape[d] == -1) {
            if (infer_at >= 0)
                return cd_node_fail(n, err, CD_ERR_SHAPE, "more than one -1 in shape");
            infer_at = d;
            continue;
        }
        if (shape[d] < 0)
            return cd_node_fail(n, err, CD_ERR_SHAPE, "invalid shape[%d] = %lld", d,
                                (long long)shape[d]);
        if (!cd_mul_size(known, (size_t)shape[d], &known))
            return cd_node_fail(n, err, CD_ERR_LIMIT, "target shape overflows");
    }
    if (infer_at >= 0) {
        if (known == 0 || total % known != 0)
            return cd_node_fail(n, err, CD_ERR_SHAPE, "cannot infer -1: %zu elements over %zu",
                                total, known);
        shape[infer_at] = (int64_t)(total / known);
        known = total;
    }
    if (known != total) {
        char a[96], b[96];
        return cd_node_fail(n, err, CD_ERR_SHAPE, "cannot reshape %s into %s",
                            cd_shape_str(in[0]->ndim, in[0]->dims, a, sizeof a),
                            cd_shape_str(rank, shape, b, sizeof b));
    }
    cd_tensor_set_shape(out[0], in[0]->dtype, rank, shape);
    return CD_OK;
}

const cd_op_def cd_opdef_RESHAPE = {"Reshape", 1, NULL, reshape_infer, view_forward,
                                    copy_backward, view_forward, copy_backward64};

/* Transpose ------------------------------------------------------------- */

static cd_status transpose_perm(const cd_node *n, cd_error *err, int rank, int *perm)
{
    const int64_t *vals;
    int cnt = cd_attr_ints(n, "perm", &vals);
    if (cnt < 0) {
        for (int d = 0; d < rank; d++)
            perm[d] = rank - 1 - d;
        return CD_OK;
    }
    if (cnt != rank)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "perm has %d entries for rank %d",
                            cnt, rank);
    bool seen[CD_MAX_DIMS] = {false};
    for (int d = 0; d < rank; d++) {
        if (vals[d] < 0 || vals[d] >= rank || seen[vals[d]])
            return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "perm is not a permutation");
        seen[vals[d]] = true;
        perm[d] = (int)vals[d];
    }
    return CD_OK;
}

static cd_status transpose_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                 cd_error *err)
{
    if (n->n_inputs < 1 || !in[0]) /* hostile models may omit required inputs */
        return cd_node_fail(n, err, CD_ERR_PARSE, "missing input 'data'");
    int perm[CD_MAX_DIMS];
    int rank = in[0]->ndim;
    cd_status st = transpose_perm(n, err, rank, perm);
    if (st != CD_OK)
        return st;
    int64_t dims[CD_MAX_DIMS];
    for (int d = 0; d < rank; d++)
        dims[d] = in[0]->dims[perm[d]];
    cd_tensor_set_shape(out[0], in[0]->dtype, rank, dims);
    return CD_OK;
}

/* For each output position (row-major odometer over out_dims) calls visit
 * with the flat output index and the matching flat input index, where
 * in_strides[d] is the input stride of output axis d. */
typedef void (*strided_visit)(size_t o, size_t i, void *user);

static void walk_strided(int rank, const int64_t *out_dims, const size_t *in_strides,
                         strided_visit visit, void *user)
{
    size_t total = prod_dims(out_dims, 0, rank);
    int64_t idx[CD_MAX_DIMS] = {0};
    size_t src = 0;
    for (size_t o = 0; o < total; o++) {
        visit(o, src, user);
        for (int d = rank - 1; d >= 0; d--) {
            src += in_strides[d];
            if (++idx[d] < out_dims[d])
                break;
            src -= in_strides[d] * (size_t)out_dims[d];
            idx[d] = 0;
        }
    }
}

typedef struct byte_move {
    char *dst;
    const char *src;
    size_t es;
} byte_move;

static void visit_copy(size_t o, size_t i, void *user)
{
    byte_move *m = user;
    memcpy(m->dst + o * m->es, m->src + i * m->es, m->es);
}

typedef struct grad_move {
    void *gin;
    const void *gout;
} grad_move;

static void visit_grad32(size_t o, size_t i, void *user)
{
    grad_move *m = user;
    ((float *)m->gin)[i] += ((const float *)m->gout)[o];
}

static void visit_grad64(size_t o, size_t i, void *user)
{
    grad_move *m = user;
    ((double *)m->gin)[i] += ((const double *)m->gout)[o];
}

static void transpose_strides(const cd_tensor *x, const int *perm, size_t *strides)
{
    size_t in_strides[CD_MAX_DIMS];
    size_t s = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        in_strides[d] = s;
        s *= (size_t)x->dims[d];
    }
    for (int d = 0; d < x->ndim; d++)
        strides[d] = in_strides[perm[d]];
}

static cd_status transpose_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                   cd_ctx *ctx)
{
    int perm[CD_MAX_DIMS];
    cd_status st = transpose_perm(n, ctx->err, in[0]->ndim, perm);
    if (st != CD_OK)
        return st;
    size_t strides[CD_MAX_DIMS];
    transpose_strides(in[0], perm, strides);
    byte_move m = {out[0]->data, in[0]->data, cd_dtype_size(in[0]->dtype)};
    walk_strided(out[0]->ndim, out[0]->dims, strides, visit_copy, &m);
    return CD_OK;
}

static cd_status transpose_grad(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx,
                                cd_dtype gt)
{
    if (!gin[0] || !gout[0])
        return CD_OK;
    int perm[CD_MAX_DIMS];
    cd_status st = transpose_perm(n, ctx->err, in[0]->ndim, perm);
    if (st == CD_OK)
        st = need_grad(n, ctx->err, gin[0], gt);
    if (st == CD_OK)
        st = need_grad(n, ctx->err, gout[0], gt);
    if (st != CD_OK)
        return st;
    /* Same walk as forward, with the data flowing back along it. */
    size_t strides[CD_MAX_DIMS];
    transpose_strides(in[0], perm, strides);
    grad_move m = {gin[0]->data, gout[0]->data};
    walk_strided(out[0]->ndim, out[0]->dims, strides,
                 gt == CD_FLOAT64 ? visit_grad64 : visit_grad32, &m);
    return CD_OK;
}

GRAD_ENTRY_POINTS(transpose)

const cd_op_def cd_opdef_TRANSPOSE = {"Transpose", 1, NULL, transpose_infer, transpose_forward,
                                      transpose_backward, transpose_forward,
                                      transpose_backward64};

/* Squeeze / Unsqueeze --------------------------------------------------- */

/* Axes from the attribute (opset < 13) or the second input (opset >= 13).
 * *count = -1 when no axes were given. */
static cd_status squeeze_axes(const cd_node *n, cd_tensor *const *in, cd_error *err,
                              int64_t *axes, int *count)
{
    *count = -1;
    if (n->opset < 13) {
        const int64_t *vals;
        int cnt = cd_attr_ints(n, "axes", &vals);
        if (cnt > CD_MAX_DIMS)
            return cd_node_fail(n, err, CD_ERR_LIMIT, "too many axes (%d)", cnt);
        if (cnt >= 0)
            memcpy(axes, vals, (size_t)cnt * sizeof *axes);
        *count = cnt;
        return CD_OK;
    }
    if (n->n_inputs < 2 || !in[1])
        return CD_OK;
    return const_int_list(n, err, in[1], "axes", axes, CD_MAX_DIMS, count);
}

static cd_status squeeze_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                               cd_error *err)
{
    if (n->n_inputs < 1 || !in[0]) /* hostile models may omit required inputs */
        return cd_node_fail(n, err, CD_ERR_PARSE, "missing input 'data'");
    int64_t axes[CD_MAX_DIMS];
    int cnt, rank = in[0]->ndim;
    cd_status st = squeeze_axes(n, in, err, axes, &cnt);
    if (st != CD_OK)
        return st;
    bool drop[CD_MAX_DIMS] = {false};
    for (int k = 0; k < cnt; k++) {
        int a = 0;
        if ((st = norm_axis(n, err, axes[k], rank, &a)) != CD_OK)
            return st;
        if (in[0]->dims[a] != 1)
            return cd_node_fail(n, err, CD_ERR_SHAPE, "cannot squeeze axis %d of size %lld", a,
                                (long long)in[0]->dims[a]);
        drop[a] = true;
    }
    int64_t dims[CD_MAX_DIMS];
    int r = 0;
    for (int d = 0; d < rank; d++)
        if (!(cnt < 0 ? in[0]->dims[d] == 1 : drop[d]))
            dims[r++] = in[0]->dims[d];
    cd_tensor_set_shape(out[0], in[0]->dtype, r, dims);
    return CD_OK;
}

const cd_op_def cd_opdef_SQUEEZE = {"Squeeze", 1, NULL, squeeze_infer, view_forward,
                                    copy_backward, view_forward, copy_backward64};

static cd_status unsqueeze_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                 cd_error *err)
{
    if (n->n_inputs < 1 || !in[0]) /* hostile models may omit required inputs */
        return cd_node_fail(n, err, CD_ERR_PARSE, "missing input 'data'");
    int64_t axes[CD_MAX_DIMS];
    int cnt;
    cd_status st = squeeze_axes(n, in, err, axes, &cnt);
    if (st != CD_OK)
        return st;
    if (cnt < 0)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "missing axes");
    int rank = in[0]->ndim + cnt;
    if (rank > CD_MAX_DIMS)
        return cd_node_fail(n, err, CD_ERR_LIMIT, "output rank %d exceeds %d", rank,
                            CD_MAX_DIMS);
    bool insert[CD_MAX_DIMS] = {false};
    for (int k = 0; k < cnt; k++) {
        int a = 0;
        if ((st = norm_axis(n, err, axes[k], rank, &a)) != CD_OK)
            return st;
        if (insert[a])
            return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "axis %d repeated", a);
        insert[a] = true;
    }
    int64_t dims[CD_MAX_DIMS];
    for (int d = 0, src = 0; d < rank; d++)
        dims[d] = insert[d] ? 1 : in[0]->dims[src++];
    cd_tensor_set_shape(out[0], in[0]->dtype, rank, dims);
    return CD_OK;
}

const cd_op_def cd_opdef_UNSQUEEZE = {"Unsqueeze", 1, NULL, unsqueeze_infer, view_forward,
                                      copy_backward, view_forward, copy_backward64};

/* Identity -------------------------------------------------------------- */

static cd_status identity_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                cd_error *err)
{
    if (!in[0])
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "missing input");
    cd_tensor_set_shape(out[0], in[0]->dtype, in[0]->ndim, in[0]->dims);
    return CD_OK;
}

const cd_op_def cd_opdef_IDENTITY = {"Identity", 1, NULL, identity_infer, view_forward,
                                     copy_backward, view_forward, copy_backward64};

/* Constant -------------------------------------------------------------- */

/* Describes the Constant's payload without copying it: dtype, shape and a
 * pointer to the attribute's storage. */
typedef struct const_payload {
    cd_dtype dtype;
    int ndim;
    int64_t dims[1];
    const void *data;
    const int64_t *tdims;
} const_payload;

static cd_status constant_payload(const cd_node *n, cd_error *err, const_payload *p)
{
    static const char *const refused[] = {"sparse_value", "value_string", "value_strings"};
    for (size_t k = 0; k < CD_COUNT_OF(refused); k++)
        if (cd_node_attr(n, refused[k]))
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "attribute '%s' is not supported",
                                refused[k]);
    const cd_attr *a;
    memset(p, 0, sizeof *p);
    if ((a = cd_node_attr(n, "value")) != NULL && a->t) {
        p->dtype = a->t->dtype;
        p->ndim = a->t->ndim;
        p->tdims = a->t->dims;
        p->data = a->t->data;
    } else if ((a = cd_node_attr(n, "value_float")) != NULL) {
        *p = (const_payload){CD_FLOAT32, 0, {0}, &a->f, NULL};
    } else if ((a = cd_node_attr(n, "value_int")) != NULL) {
        *p = (const_payload){CD_INT64, 0, {0}, &a->i, NULL};
    } else if ((a = cd_node_attr(n, "value_floats")) != NULL) {
        *p = (const_payload){CD_FLOAT32, 1, {(int64_t)a->count}, a->floats, NULL};
    } else if ((a = cd_node_attr(n, "value_ints")) != NULL) {
        *p = (const_payload){CD_INT64, 1, {(int64_t)a->count}, a->ints, NULL};
    } else {
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "no value attribute");
    }
    if (!p->tdims)
        p->tdims = p->dims;
    if (cd_dtype_size(p->dtype) == 0)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "constant of type %s",
                            cd_dtype_name(p->dtype));
    return CD_OK;
}

static cd_status constant_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                cd_error *err)
{
    CD_UNUSED(in);
    const_payload p;
    cd_status st = constant_payload(n, err, &p);
    if (st == CD_OK)
        cd_tensor_set_shape(out[0], p.dtype, p.ndim, p.tdims);
    return st;
}

/* Writes the payload into out[0]; wide (float64 mode) widens a float32
 * payload into the float64 output. */
static cd_status constant_write(const cd_node *n, cd_tensor **out, cd_ctx *ctx, bool wide)
{
    const_payload p;
    cd_status st = constant_payload(n, ctx->err, &p);
    if (st != CD_OK)
        return st;
    size_t cnt = cd_tensor_numel_raw(out[0]);
    if (wide && p.dtype == CD_FLOAT32) {
        if (out[0]->dtype != CD_FLOAT64)
            return cd_node_fail(n, ctx->err, CD_ERR_INTERNAL,
                                "float64 mode gave a %s output for a float constant",
                                cd_dtype_name(out[0]->dtype));
        const float *src = p.data;
        double *dst = cd_f64(out[0]);
        for (size_t i = 0; i < cnt; i++)
            dst[i] = src[i];
        return CD_OK;
    }
    if (cnt)
        memcpy(out[0]->data, p.data, cnt * cd_dtype_size(p.dtype));
    return CD_OK;
}

static cd_status constant_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                  cd_ctx *ctx)
{
    CD_UNUSED(in);
    return constant_write(n, out, ctx, false);
}

static cd_status constant_forward64(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                    cd_ctx *ctx)
{
    CD_UNUSED(in);
    return constant_write(n, out, ctx, true);
}

const cd_op_def cd_opdef_CONSTANT = {"Constant", 1, NULL, constant_infer, constant_forward,
                                     backward_none, constant_forward64, backward_none};

/* Shape ----------------------------------------------------------------- */

/* The [start, end) slice of the input's dims (opset 15 start/end). */
static void shape_range(const cd_node *n, int rank, int *start, int *end)
{
    int64_t s = 0, e = rank;
    if (n->opset >= 15) {
        s = cd_attr_int(n, "start", 0);
        e = cd_attr_int(n, "end", rank);
    }
    if (s < 0)
        s += rank;
    if (e < 0)
        e += rank;
    s = s < 0 ? 0 : (s > rank ? rank : s);
    e = e < 0 ? 0 : (e > rank ? rank : e);
    *start = (int)s;
    *end = (int)(e > s ? e : s);
}

static cd_status shape_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                             cd_error *err)
{
    if (n->n_inputs < 1 || !in[0]) /* hostile models may omit required inputs */
        return cd_node_fail(n, err, CD_ERR_PARSE, "missing input 'data'");
    CD_UNUSED(err);
    int s, e;
    shape_range(n, in[0]->ndim, &s, &e);
    int64_t len = e - s;
    cd_tensor_set_shape(out[0], CD_INT64, 1, &len);
    return CD_OK;
}

static cd_status shape_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                               cd_ctx *ctx)
{
    CD_UNUSED(ctx);
    int s, e;
    shape_range(n, in[0]->ndim, &s, &e);
    int64_t *o = out[0]->data;
    for (int d = s; d < e; d++)
        o[d - s] = in[0]->dims[d];
    return CD_OK;
}

/* shape_forward reads only dims, so it is its own forward64. backward64 is
 * NULL: the int64 output never carries a gradient in float64 mode. */
const cd_op_def cd_opdef_SHAPE = {"Shape", 1, NULL, shape_infer, shape_forward, backward_none,
                                  shape_forward, backward_none};

/* Gather ---------------------------------------------------------------- */

static cd_status gather_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_error *err)
{
    const cd_tensor *x = in[0], *idx = in[1];
    if (!x || !idx)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "needs data and indices");
    if (idx->dtype != CD_INT64 && idx->dtype != CD_INT32)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "indices must be int32/int64, got %s",
                            cd_dtype_name(idx->dtype));
    int axis = 0;
    cd_status st = norm_axis(n, err, cd_attr_int(n, "axis", 0), x->ndim, &axis);
    if (st != CD_OK)
        return st;
    int rank = x->ndim - 1 + idx->ndim;
    if (rank > CD_MAX_DIMS)
        return cd_node_fail(n, err, CD_ERR_LIMIT, "output rank %d exceeds %d", rank,
                            CD_MAX_DIMS);
    int64_t dims[CD_MAX_DIMS];
    int r = 0;
    for (int d = 0; d < axis; d++)
        dims[r++] = x->dims[d];
    for (int d = 0; d < idx->ndim; d++)
        dims[r++] = idx->dims[d];
    for (int d = axis + 1; d < x->ndim; d++)
        dims[r++] = x->dims[d];
    cd_tensor_set_shape(out[0], x->dtype, rank, dims);
    return CD_OK;
}

/* Geometry shared by forward and backward: data viewed as
 * [outer, axis_len, inner], output as [outer, n_idx, inner]. */
typedef struct gather_geom {
    size_t outer, inner, n_idx;
    int64_t axis_len;
} gather_geom;

static cd_status gather_geometry(const cd_node *n, cd_tensor *const *in, cd_error *err,
                                 gather_geom *g)
{
    int axis = 0;
    cd_status st = norm_axis(n, err, cd_attr_int(n, "axis", 0), in[0]->ndim, &axis);
    if (st != CD_OK)
        return st;
    g->outer = prod_dims(in[0]->dims, 0, axis);
    g->inner = prod_dims(in[0]->dims, axis + 1, in[0]->ndim);
    g->axis_len = in[0]->dims[axis];
    g->n_idx = cd_tensor_numel_raw(in[1]);
    return CD_OK;
}

/* Index k of the indices tensor, wrapped and range-checked. */
static cd_status gather_index(const cd_node *n, cd_error *err, const cd_tensor *idx, size_t k,
                              int64_t len, size_t *out)
{
    int64_t v = cd_tensor_int_at(idx, k);
    if (v < -len || v >= len)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT,
                            "index %lld out of range for axis of size %lld", (long long)v,
                            (long long)len);
    *out = (size_t)(v < 0 ? v + len : v);
    return CD_OK;
}

static cd_status gather_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                cd_ctx *ctx)
{
    gather_geom g;
    cd_status st = gather_geometry(n, in, ctx->err, &g);
    if (st != CD_OK)
        return st;
    size_t es = cd_dtype_size(in[0]->dtype);
    size_t chunk = g.inner * es;
    const char *src = in[0]->data;
    char *dst = out[0]->data;
    for (size_t k = 0; k < g.n_idx; k++) {
        size_t j = 0;
        if ((st = gather_index(n, ctx->err, in[1], k, g.axis_len, &j)) != CD_OK)
            return st;
        for (size_t o = 0; o < g.outer && chunk; o++)
            memcpy(dst + (o * g.n_idx + k) * chunk,
                   src + (o * (size_t)g.axis_len + j) * chunk, chunk);
    }
    return CD_OK;
}

static cd_status gather_grad(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                             cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx, cd_dtype gt)
{
    CD_UNUSED(out);
    if (!gin[0] || !gout[0])
        return CD_OK;
    gather_geom g;
    cd_status st = gather_geometry(n, in, ctx->err, &g);
    if (st == CD_OK)
        st = need_grad(n, ctx->err, gin[0], gt);
    if (st == CD_OK)
        st = need_grad(n, ctx->err, gout[0], gt);
    if (st != CD_OK)
        return st;
    /* Repeated indices each add their share: scatter-add. */
    for (size_t k = 0; k < g.n_idx; k++) {
        size_t j = 0;
        if ((st = gather_index(n, ctx->err, in[1], k, g.axis_len, &j)) != CD_OK)
            return st;
        for (size_t o = 0; o < g.outer; o++)
            grad_add(gin[0], (o * (size_t)g.axis_len + j) * g.inner, gout[0],
                     (o * g.n_idx + k) * g.inner, g.inner);
    }
    return CD_OK;
}

GRAD_ENTRY_POINTS(gather)

const cd_op_def cd_opdef_GATHER = {"Gather", 1, NULL, gather_infer, gather_forward,
                                   gather_backward, gather_forward, gather_backward64};

/* Cast ------------------------------------------------------------------ */

static bool cast_supported(int64_t t)
{
    switch (t) {
    case CD_FLOAT32: case CD_FLOAT64: case CD_FLOAT16: case CD_INT64: case CD_INT32:
    case CD_UINT8: case CD_INT8: case CD_BOOL:
        return true;
    default:
        return false;
    }
}

static bool is_float_type(cd_dtype t)
{
    return t == CD_FLOAT32 || t == CD_FLOAT64 || t == CD_FLOAT16;
}

/* IEEE 754 binary16 <-> binary32, round to nearest even. */
static float half_to_float(uint16_t h)
{
    int sign = (h >> 15) & 1, expo = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v;
    if (expo == 0)
        v = ldexpf((float)mant, -24);
    else if (expo == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexpf((float)(mant | 0x400), expo - 25);
    return sign ? -v : v;
}

static uint16_t float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t expo = (x >> 23) & 0xff, mant = x & 0x7fffff;
    if (expo == 0xff)
        return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    int e = (int)expo - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        /* Subnormal half (or zero): shift the full significand into place. */
        if (e < -10)
            return sign;
        uint32_t m = mant | 0x800000;
        int shift = 14 - e;
        uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
        half++; /* may carry into the exponent, which is the correct rounding */
    return (uint16_t)(sign | half);
}

static double load_float(const cd_tensor *t, size_t i)
{
    switch (t->dtype) {
    case CD_FLOAT32: return ((const float *)t->data)[i];
    case CD_FLOAT64: return ((const double *)t->data)[i];
    case CD_FLOAT16: return half_to_float(((const uint16_t *)t->data)[i]);
    default: return (double)cd_tensor_int_at(t, i);
    }
}

/* Float to integer conversion that never invokes undefined behaviour: NaN
 * becomes 0 and out-of-range values saturate (ONNX leaves these undefined). */
static int64_t float_to_int(double v, double lo, double hi)
{
    if (isnan(v))
        return 0;
    if (v <= lo)
        return (int64_t)lo;
    if (v >= hi)
        return (int64_t)hi;
    return (int64_t)v;
}

static void store_int(cd_tensor *t, size_t i, int64_t v)
{
    switch (t->dtype) {
    case CD_INT64: ((int64_t *)t->data)[i] = v; break;
    case CD_INT32: ((int32_t *)t->data)[i] = (int32_t)(uint32_t)(uint64_t)v; break;
    case CD_INT8: ((int8_t *)t->data)[i] = (int8_t)(uint8_t)(uint64_t)v; break;
    case CD_UINT8: ((uint8_t *)t->data)[i] = (uint8_t)(uint64_t)v; break;
    case CD_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
    default: break;
    }
}

static void cast_element(const cd_tensor *x, cd_tensor *y, size_t i)
{
    if (y->dtype == CD_FLOAT32 || y->dtype == CD_FLOAT64 || y->dtype == CD_FLOAT16) {
        double v = load_float(x, i);
        if (y->dtype == CD_FLOAT32)
            ((float *)y->data)[i] = (float)v;
        else if (y->dtype == CD_FLOAT64)
            ((double *)y->data)[i] = v;
        else
            ((uint16_t *)y->data)[i] = float_to_half((float)v);
        return;
    }
    if (!is_float_type(x->dtype)) {
        store_int(y, i, cd_tensor_int_at(x, i));
        return;
    }
    double v = load_float(x, i);
    if (y->dtype == CD_BOOL)
        store_int(y, i, v != 0.0);
    else if (y->dtype == CD_INT64)
        store_int(y, i, float_to_int(v, -9223372036854775808.0, 9223372036854774784.0));
    else if (y->dtype == CD_INT32)
        store_int(y, i, float_to_int(v, -2147483648.0, 2147483647.0));
    else if (y->dtype == CD_INT8)
        store_int(y, i, float_to_int(v, -128.0, 127.0));
    else
        store_int(y, i, float_to_int(v, 0.0, 255.0));
}

static cd_status cast_check(const cd_node *n, cd_error *err)
{
    const cd_attr *a = cd_node_attr(n, "to");
    if (!a || a->type != CD_ATTR_INT)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "missing integer attribute 'to'");
    if (!cast_supported(a->i))
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "cast to ONNX type %lld is not supported (float, double, float16, "
                            "int64, int32, int8, uint8, bool are)",
                            (long long)a->i);
    return CD_OK;
}

static cd_status cast_parse(cd_node *n, cd_error *err) { return cast_check(n, err); }

static cd_status cast_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                            cd_error *err)
{
    cd_status st = cast_check(n, err);
    if (st != CD_OK)
        return st;
    if (!cast_supported(in[0]->dtype))
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "cast from %s is not supported",
                            cd_dtype_name(in[0]->dtype));
    cd_tensor_set_shape(out[0], (cd_dtype)cd_attr_int(n, "to", 0), in[0]->ndim, in[0]->dims);
    return CD_OK;
}

static cd_status cast_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_ctx *ctx)
{
    CD_UNUSED(n);
    CD_UNUSED(ctx);
    size_t cnt = cd_tensor_numel_raw(in[0]);
    if (in[0]->dtype == out[0]->dtype) {
        copy_payload(out[0], in[0]);
        return CD_OK;
    }
    for (size_t i = 0; i < cnt; i++)
        cast_element(in[0], out[0], i);
    return CD_OK;
}

/* Float64 mode represents every float32 tensor as float64, so the caller
 * allocates the output of a Cast to float32 as float64. The rule that
 * follows, with cast_forward doing the work on the types it is given:
 *   to float32 from an integer: converted into doubles (exact below 2^53;
 *     the float32 plan's buffer gets them rounded, as the float kernel would);
 *   to float32 from a float (float64 here, or float16): copied or widened,
 *     never rounded to float32, so float64 mode stays float64 throughout;
 *   to an integer, bool or float16 from a float: as the float kernel does
 *     (truncation, saturation, NaN -> 0, v != 0, half rounding), applied to
 *     the double values, which may differ from float32's where float32
 *     rounding crosses an integer;
 *   integer to integer: unchanged. */
static cd_status cast_forward64(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                cd_ctx *ctx)
{
    cd_dtype to = (cd_dtype)cd_attr_int(n, "to", 0);
    if (out[0]->dtype != (to == CD_FLOAT32 ? CD_FLOAT64 : to))
        return cd_node_fail(n, ctx->err, CD_ERR_INTERNAL,
                            "float64 mode gave a %s output for a cast to %s",
                            cd_dtype_name(out[0]->dtype), cd_dtype_name(to));
    return cast_forward(n, in, out, ctx);
}

/* Float-to-float casts pass the gradient through (rounded to the gradient's
 * type); anything through an integer type has zero gradient. */
static cd_status cast_grad(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                           cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx, cd_dtype gt)
{
    if (!gin[0] || !gout[0] || !is_float_type(in[0]->dtype) || !is_float_type(out[0]->dtype))
        return CD_OK;
    cd_status st = need_grad(n, ctx->err, gin[0], gt);
    if (st != CD_OK)
        return st;
    if (!is_float_type(gout[0]->dtype))
        return cd_node_fail(n, ctx->err, CD_ERR_UNSUPPORTED, "gradient of type %s",
                            cd_dtype_name(gout[0]->dtype));
    size_t cnt = cd_tensor_numel_raw(gin[0]);
    if (gt == CD_FLOAT64) {
        double *gi = cd_f64(gin[0]);
        for (size_t i = 0; i < cnt; i++)
            gi[i] += load_float(gout[0], i);
        return CD_OK;
    }
    float *gi = cd_f32(gin[0]);
    for (size_t i = 0; i < cnt; i++)
        gi[i] += (float)load_float(gout[0], i);
    return CD_OK;
}

GRAD_ENTRY_POINTS(cast)

const cd_op_def cd_opdef_CAST = {"Cast", 6, cast_parse, cast_infer, cast_forward, cast_backward,
                                 cast_forward64, cast_backward64};
