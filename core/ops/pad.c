/* Pad: constant, reflect and edge modes, any element type, negative pads
 * (cropping). Every output coordinate maps per axis to one input coordinate
 * (or to "constant"), so forward gathers through per-axis index tables and
 * backward scatters the gradient back through the same tables.
 *
 * Forward copies element bytes of any type, so it serves the float64 mode
 * (exact gradients) as it is: data and constant_value both arrive as float64
 * there, or both keep their integer type. */
#include <string.h>

#include "op.h"

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE };

typedef struct pad_cfg {
    int mode;
    int rank;
    int64_t begin[CD_MAX_DIMS]; /* may be negative: crop */
    int64_t out_dims[CD_MAX_DIMS];
} pad_cfg;

static cd_status pad_mode(const cd_node *n, cd_error *err, int *mode)
{
    const char *m = cd_attr_string(n, "mode", "constant");
    if (strcmp(m, "constant") == 0)
        *mode = PAD_CONSTANT;
    else if (strcmp(m, "reflect") == 0)
        *mode = PAD_REFLECT;
    else if (strcmp(m, "edge") == 0)
        *mode = PAD_EDGE;
    else
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "mode '%s' is not supported (constant, reflect, edge are)", m);
    return CD_OK;
}

/* Reads an int64/int32 input that must be known at plan time. */
static cd_status const_ints(const cd_node *n, cd_error *err, const cd_tensor *t,
                            const char *what, int64_t *vals, size_t max, size_t *count)
{
    if (!t->data)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "input '%s' must be a constant known when the plan is built", what);
    if (t->dtype != CD_INT64 && t->dtype != CD_INT32)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "input '%s' must be int64, got %s",
                            what, cd_dtype_name(t->dtype));
    size_t cnt = cd_tensor_numel_raw(t);
    if (cnt > max)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "input '%s' has %zu entries (at most %zu)",
                            what, cnt, max);
    for (size_t i = 0; i < cnt; i++)
        vals[i] = cd_tensor_int_at(t, i);
    *count = cnt;
    return CD_OK;
}

/* Collects the pads as [begin_0.., end_0..] over all axes of the data. */
static cd_status pad_amounts(const cd_node *n, cd_tensor *const *in, cd_error *err,
                             int64_t *pads)
{
    int rank = in[0]->ndim;
    int64_t raw[2 * CD_MAX_DIMS], axes[CD_MAX_DIMS];
    size_t cnt = 0, n_axes = (size_t)rank;
    cd_status st;
    if (n->opset < 11) {
        const int64_t *vals;
        int c = cd_attr_ints(n, "pads", &vals);
        if (c < 0)
            c = cd_attr_ints(n, "paddings", &vals); /* the opset-1 name */
        if (c < 0 || c > 2 * CD_MAX_DIMS)
            return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "missing or oversized 'pads'");
        memcpy(raw, vals, (size_t)c * sizeof *raw);
        cnt = (size_t)c;
    } else {
        if (n->n_inputs < 2 || !in[1])
            return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "missing input 'pads'");
        if ((st = const_ints(n, err, in[1], "pads", raw, 2 * CD_MAX_DIMS, &cnt)) != CD_OK)
            return st;
        if (n->opset >= 18 && n->n_inputs >= 4 && in[3] &&
            (st = const_ints(n, err, in[3], "axes", axes, CD_MAX_DIMS, &n_axes)) != CD_OK)
            return st;
    }
    bool have_axes = n->opset >= 18 && n->n_inputs >= 4 && in[3];
    if (!have_axes)
        for (int d = 0; d < rank; d++)
            axes[d] = d;
    if (cnt != 2 * n_axes)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "pads has %zu entries, expected %zu", cnt,
                            2 * n_axes);
    memset(pads, 0, 2 * CD_MAX_DIMS * sizeof *pads);
    for (size_t k = 0; k < n_axes; k++) {
        int64_t a = axes[k] < 0 ? axes[k] + rank : axes[k];
        if (a < 0 || a >= rank)
            return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "axis %lld out of range",
                                (long long)axes[k]);
        pads[a] = raw[k];
        pads[rank + a] = raw[n_axes + k];
    }
    return CD_OK;
}

static cd_status pad_config(const cd_node *n, cd_tensor *const *in, cd_error *err, pad_cfg *c)
{
    int64_t pads[2 * CD_MAX_DIMS];
    cd_status st = pad_mode(n, err, &c->mode);
    if (st == CD_OK)
        st = pad_amounts(n, in, err, pads);
    if (st != CD_OK)
        return st;
    c->rank = in[0]->ndim;
    for (int d = 0; d < c->rank; d++) {
        int64_t len = in[0]->dims[d];
        c->begin[d] = pads[d];
        c->out_dims[d] = len + pads[d] + pads[c->rank + d];
        if (c->out_dims[d] < 0)
            return cd_node_fail(n, err, CD_ERR_SHAPE, "pads crop axis %d below zero", d);
        if (len == 0 && c->out_dims[d] > 0 && c->mode != PAD_CONSTANT)
            return cd_node_fail(n, err, CD_ERR_SHAPE,
                                "cannot %s-pad axis %d of size 0",
                                c->mode == PAD_EDGE ? "edge" : "reflect", d);
    }
    return CD_OK;
}

static cd_status pad_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                           cd_error *err)
{
    if (n->n_inputs < 1 || !in[0]) /* hostile models may omit required inputs */
        return cd_node_fail(n, err, CD_ERR_PARSE, "missing input 'data'");
    pad_cfg c;
    cd_status st = pad_config(n, in, err, &c);
    if (st != CD_OK)
        return st;
    if (n->opset >= 11 && n->n_inputs >= 3 && in[2] && in[2]->dtype != in[0]->dtype)
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT,
                            "constant_value type %s differs from data type %s",
                            cd_dtype_name(in[2]->dtype), cd_dtype_name(in[0]->dtype));
    cd_tensor_set_shape(out[0], in[0]->dtype, c.rank, c.out_dims);
    return CD_OK;
}

/* Input coordinate feeding output coordinate o on an axis of length len, or
 * -1 for the constant. */
static int64_t pad_source(int mode, int64_t o, int64_t begin, int64_t len)
{
    int64_t j = o - begin;
    if (j >= 0 && j < len)
        return j;
    if (mode == PAD_CONSTANT)
        return -1;
    if (mode == PAD_EDGE)
        return j < 0 ? 0 : len - 1;
    if (len == 1)
        return 0;
    /* Reflection without repeating the edge is periodic with 2(len-1). */
    int64_t period = 2 * (len - 1);
    j %= period;
    if (j < 0)
        j += period;
    return j < len ? j : period - j;
}

/* Per-axis tables of flat input offsets (input coordinate * stride), -1 for
 * the constant, laid out axis after axis in scratch. */
static int64_t *pad_tables(const cd_tensor *x, const pad_cfg *c, cd_ctx *ctx, int64_t **axis_tab)
{
    size_t total = 0;
    for (int d = 0; d < c->rank; d++)
        total += (size_t)c->out_dims[d];
    int64_t *tab = cd_ctx_scratch(ctx, (total ? total : 1) * sizeof *tab);
    if (!tab)
        return NULL;
    int64_t stride = 1, *p = tab + total;
    for (int d = c->rank - 1; d >= 0; d--) {
        p -= c->out_dims[d];
        axis_tab[d] = p;
        for (int64_t o = 0; o < c->out_dims[d]; o++) {
            int64_t s = pad_source(c->mode, o, c->begin[d], x->dims[d]);
            p[o] = s < 0 ? -1 : s * stride;
        }
        stride *= x->dims[d];
    }
    return tab;
}

/* Visits the output row by row (all axes but the last), handing the
 * callback the row's base input offset or -1 when the row is all constant. */
typedef void (*pad_row_fn)(size_t out_row, int64_t base, const int64_t *last_tab, size_t len,
                           void *user);

static void pad_walk(const pad_cfg *c, int64_t *const *tab, pad_row_fn fn, void *user)
{
    int last = c->rank - 1;
    size_t row_len = c->rank ? (size_t)c->out_dims[last] : 1;
    static const int64_t scalar_tab[1] = {0};
    const int64_t *last_tab = c->rank ? tab[last] : scalar_tab;
    size_t rows = 1;
    for (int d = 0; d < last; d++)
        rows *= (size_t)c->out_dims[d];
    if (row_len == 0)
        return;
    int64_t idx[CD_MAX_DIMS] = {0};
    for (size_t r = 0; r < rows; r++) {
        int64_t base = 0;
        for (int d = 0; d < last && base >= 0; d++)
            base = tab[d][idx[d]] < 0 ? -1 : base + tab[d][idx[d]];
        fn(r, base, last_tab, row_len, user);
        for (int d = last - 1; d >= 0; d--) {
            if (++idx[d] < c->out_dims[d])
                break;
            idx[d] = 0;
        }
    }
}

typedef struct pad_fwd {
    char *dst;
    const char *src;
    const unsigned char *fill; /* one element of the constant */
    size_t es;
} pad_fwd;

static void pad_row_forward(size_t out_row, int64_t base, const int64_t *last_tab, size_t len,
                            void *user)
{
    pad_fwd *f = user;
    char *dst = f->dst + out_row * len * f->es;
    for (size_t k = 0; k < len; k++) {
        if (base < 0 || last_tab[k] < 0)
            memcpy(dst + k * f->es, f->fill, f->es);
        else
            memcpy(dst + k * f->es, f->src + (size_t)(base + last_tab[k]) * f->es, f->es);
    }
}

/* The padding value as one element of the data's type. */
static void pad_fill_value(const cd_node *n, cd_tensor *const *in, unsigned char *fill)
{
    cd_dtype t = in[0]->dtype;
    size_t es = cd_dtype_size(t);
    memset(fill, 0, 8);
    if (n->opset >= 11) {
        const cd_tensor *v = n->n_inputs >= 3 ? in[2] : NULL;
        if (v && v->data && cd_tensor_numel_raw(v) > 0 && v->dtype == t)
            memcpy(fill, v->data, es);
        return;
    }
    float value = cd_attr_float(n, "value", 0.0f);
    if (t == CD_FLOAT32) {
        memcpy(fill, &value, sizeof value);
    } else if (t == CD_FLOAT64) {
        double dv = value;
        memcpy(fill, &dv, sizeof dv);
    } else if (t == CD_INT64) {
        int64_t iv = (int64_t)value;
        memcpy(fill, &iv, sizeof iv);
    } else if (t == CD_INT32) {
        int32_t iv = (int32_t)value;
        memcpy(fill, &iv, sizeof iv);
    } else if (es == 1) {
        fill[0] = (unsigned char)(int)value;
    }
}

static cd_status pad_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                             cd_ctx *ctx)
{
    pad_cfg c;
    cd_status st = pad_config(n, in, ctx->err, &c);
    if (st != CD_OK)
        return st;
    int64_t *tab[CD_MAX_DIMS];
    if (!pad_tables(in[0], &c, ctx, tab))
        return ctx->err ? ctx->err->code : CD_ERR_OUT_OF_MEMORY;
    unsigned char fill[8];
    pad_fill_value(n, in, fill);
    pad_fwd f = {out[0]->data, in[0]->data, fill, cd_dtype_size(in[0]->dtype)};
    pad_walk(&c, tab, pad_row_forward, &f);
    return CD_OK;
}

typedef struct pad_bwd {
    void *gin; /* float or double, as the row function */
    const void *gout;
} pad_bwd;

/* Adds one output row of the gradient to the input positions it came from,
 * in T (float32 plan, or double in the float64 mode). */
#define PAD_ROW_BACKWARD(T, NAME)                                                            \
    static void NAME(size_t out_row, int64_t base, const int64_t *last_tab, size_t len,      \
                     void *user)                                                             \
    {                                                                                        \
        pad_bwd *b = user;                                                                   \
        if (base < 0)                                                                        \
            return;                                                                          \
        const T *g = (const T *)b->gout + out_row * len;                                     \
        T *gin = b->gin;                                                                     \
        for (size_t k = 0; k < len; k++)                                                     \
            if (last_tab[k] >= 0)                                                            \
                gin[base + last_tab[k]] += g[k];                                             \
    }
PAD_ROW_BACKWARD(float, pad_row_backward)
PAD_ROW_BACKWARD(double, pad_row_backward64)
#undef PAD_ROW_BACKWARD

/* Reflected and edge positions feed several outputs from one input, so the
 * gradient accumulates; constant positions have no input to flow to. Both
 * precisions: float32, or float64 in the float64 mode. */
static cd_status pad_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                              cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    if (!gin[0] || !gout[0])
        return CD_OK;
    bool f64 = cd_is_f64(gout[0]); /* the data may be integer */
    cd_status chk = cd_grad_dtype_check(n, gin[0], gout[0], f64, ctx->err);
    if (chk != CD_OK)
        return chk;
    pad_cfg c;
    cd_status st = pad_config(n, in, ctx->err, &c);
    if (st != CD_OK)
        return st;
    int64_t *tab[CD_MAX_DIMS];
    if (!pad_tables(in[0], &c, ctx, tab))
        return ctx->err ? ctx->err->code : CD_ERR_OUT_OF_MEMORY;
    pad_bwd b = {gin[0]->data, gout[0]->data};
    pad_walk(&c, tab, f64 ? pad_row_backward64 : pad_row_backward, &b);
    return CD_OK;
}

/* forward64 is pad_forward: see the top of the file. */
const cd_op_def cd_opdef_PAD = {"Pad", 1, NULL, pad_infer, pad_forward, pad_backward, pad_forward,
                                pad_backward};
