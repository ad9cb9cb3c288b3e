/* Element-wise arithmetic: Add, Sub, Mul, Div (NumPy broadcasting; float32,
 * float64 and integer types for shape-arithmetic subgraphs), variadic Sum,
 * and the unary Sqrt and Exp. Gradients are float32 (float64 in the float64
 * mode's *64 kernels); a gradient of a broadcast operand is the sum of the
 * output gradient over the axes along which that operand was repeated. */
#include <math.h>
#include <string.h>

#include "op.h"

/* Broadcast walk --------------------------------------------------------- */

/* Three operands: 0 = output (contiguous), 1 = a, 2 = b. Strides are in
 * elements, 0 along axes where the operand is repeated. Adjacent axes that
 * are laid out alike in every operand are merged, so equal shapes walk as a
 * single row and the per-row callback runs long inner loops. */
typedef struct bc_walk {
    int nd;
    int64_t dims[CD_MAX_DIMS];
    int64_t st[3][CD_MAX_DIMS];
} bc_walk;

typedef void (*bc_row_fn)(void *ctx, const size_t *off, int64_t n, const int64_t *step);

/* Strides of an operand with shape (nx, dx) right-aligned against out dims. */
static void operand_strides(int nd, const int64_t *dims, int nx, const int64_t *dx, int64_t *st)
{
    int64_t s = 1;
    for (int d = nd - 1; d >= 0; d--) {
        int k = d - (nd - nx);
        int64_t len = k >= 0 ? dx[k] : 1;
        st[d] = (len == 1 && dims[d] != 1) ? 0 : s;
        s *= len;
    }
}

static void bc_init(bc_walk *w, int nd, const int64_t *dims, int na, const int64_t *da, int nb,
                    const int64_t *db)
{
    if (nd == 0) { /* scalars walk as one element */
        w->nd = 1;
        w->dims[0] = 1;
        for (int k = 0; k < 3; k++)
            w->st[k][0] = 1;
        return;
    }
    int64_t st[3][CD_MAX_DIMS];
    operand_strides(nd, dims, nd, dims, st[0]);
    operand_strides(nd, dims, na, da, st[1]);
    operand_strides(nd, dims, nb, db, st[2]);
    /* Merge axis d into the axis after it when every operand steps through
     * them as one run (or repeats along both). */
    int m = 0;
    w->dims[0] = dims[nd - 1];
    for (int k = 0; k < 3; k++)
        w->st[k][0] = st[k][nd - 1];
    for (int d = nd - 2; d >= 0; d--) {
        if (dims[d] == 1)
            continue; /* size-1 axes never advance */
        bool merge = true;
        for (int k = 0; k < 3 && merge; k++)
            merge = st[k][d] == w->st[k][m] * w->dims[m] || (st[k][d] == 0 && w->st[k][m] == 0);
        if (merge && w->dims[m] != 1) {
            w->dims[m] *= dims[d];
            continue;
        }
        if (w->dims[m] != 1) /* a size-1 block is simply replaced */
            m++;
        w->dims[m] = dims[d];
        for (int k = 0; k < 3; k++)
            w->st[k][m] = st[k][d];
    }
    /* Stored innermost-first above; flip to outermost-first. */
    w->nd = m + 1;
    for (int i = 0, j = m; i < j; i++, j--) {
        int64_t t = w->dims[i];
        w->dims[i] = w->dims[j];
        w->dims[j] = t;
        for (int k = 0; k < 3; k++) {
            t = w->st[k][i];
            w->st[k][i] = w->st[k][j];
            w->st[k][j] = t;
        }
    }
}

/* Calls row() once per run of the innermost axis. */
static void bc_run(const bc_walk *w, bc_row_fn row, void *ctx)
{
    int last = w->nd - 1;
    int64_t n = w->dims[last];
    int64_t step[3] = {w->st[0][last], w->st[1][last], w->st[2][last]};
    int64_t idx[CD_MAX_DIMS] = {0};
    size_t off[3] = {0, 0, 0};
    size_t rows = 1;
    for (int d = 0; d < last; d++)
        rows *= (size_t)w->dims[d];
    if (n == 0)
        return;
    for (size_t r = 0; r < rows; r++) {
        row(ctx, off, n, step);
        for (int d = last - 1; d >= 0; d--) {
            if (++idx[d] < w->dims[d]) {
                for (int k = 0; k < 3; k++)
                    off[k] += (size_t)w->st[k][d];
                break;
            }
            for (int k = 0; k < 3; k++)
                off[k] -= (size_t)(w->st[k][d] * (w->dims[d] - 1));
            idx[d] = 0;
        }
    }
}

/* Operand shapes ---------------------------------------------------------- */

/* Effective shape of B. Opset >= 7 broadcasts multidirectionally, which is
 * B's own shape. Opsets 1-6 broadcast B onto A only when broadcast=1, with
 * B's dims aligned at `axis` (default: as a suffix); padding B with trailing
 * 1s turns that into the same right-aligned rule. */
static cd_status legacy_b_shape(const cd_node *n, const cd_tensor *a, const cd_tensor *b, int *nb,
                                int64_t *db, cd_error *err)
{
    *nb = b->ndim;
    memcpy(db, b->dims, sizeof(int64_t) * (size_t)b->ndim);
    if (n->opset >= 7)
        return CD_OK;
    char sa[96], sb[96];
    if (cd_attr_int(n, "broadcast", 0) == 0) {
        if (!cd_shape_equal(a->ndim, a->dims, b->ndim, b->dims))
            return cd_node_fail(n, err, CD_ERR_SHAPE,
                                "shapes %s and %s differ and broadcast=0 (opset %d)",
                                cd_shape_str(a->ndim, a->dims, sa, sizeof sa),
                                cd_shape_str(b->ndim, b->dims, sb, sizeof sb), n->opset);
        return CD_OK;
    }
    if (!cd_node_attr(n, "axis"))
        return CD_OK;
    int64_t axis = cd_attr_int(n, "axis", 0);
    if (axis < 0)
        axis += a->ndim;
    if (axis < 0 || axis + b->ndim > a->ndim)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "broadcast axis %lld does not fit B %s into A %s",
                            (long long)cd_attr_int(n, "axis", 0),
                            cd_shape_str(b->ndim, b->dims, sb, sizeof sb),
                            cd_shape_str(a->ndim, a->dims, sa, sizeof sa));
    while (*nb < a->ndim - axis)
        db[(*nb)++] = 1;
    return CD_OK;
}

static bool dtype_is_arith(cd_dtype t)
{
    return t == CD_FLOAT32 || t == CD_FLOAT64 || t == CD_INT64 || t == CD_INT32 ||
           t == CD_INT8 || t == CD_UINT8;
}

/* Shape of out and the walk over (out, a, b) for a binary node. */
static cd_status binary_walk(const cd_node *n, const cd_tensor *a, const cd_tensor *b, int *nd,
                             int64_t *dims, bc_walk *w, cd_error *err)
{
    int nb;
    int64_t db[CD_MAX_DIMS];
    cd_status st = legacy_b_shape(n, a, b, &nb, db, err);
    if (st != CD_OK)
        return st;
    char sa[96], sb[96];
    bool ok = cd_broadcast_shape(a->ndim, a->dims, nb, db, nd, dims);
    if (ok && n->opset < 7) /* legacy rule: B never enlarges A */
        ok = cd_shape_equal(*nd, dims, a->ndim, a->dims);
    if (!ok)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "shapes %s and %s do not broadcast",
                            cd_shape_str(a->ndim, a->dims, sa, sizeof sa),
                            cd_shape_str(b->ndim, b->dims, sb, sizeof sb));
    if (w)
        bc_init(w, *nd, dims, a->ndim, a->dims, nb, db);
    return CD_OK;
}

/* Add, Sub, Mul, Div -------------------------------------------------------- */

static cd_status binary_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_error *err)
{
    if (n->n_inputs != 2 || !in[0] || !in[1])
        return cd_node_fail(n, err, CD_ERR_PARSE, "expects 2 inputs, got %d", n->n_inputs);
    if (in[0]->dtype != in[1]->dtype)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "input types differ (%s vs %s)",
                            cd_dtype_name(in[0]->dtype), cd_dtype_name(in[1]->dtype));
    if (!dtype_is_arith(in[0]->dtype))
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "element type %s is not supported",
                            cd_dtype_name(in[0]->dtype));
    int nd;
    int64_t dims[CD_MAX_DIMS];
    cd_status st = binary_walk(n, in[0], in[1], &nd, dims, NULL, err);
    if (st == CD_OK && out[0])
        cd_tensor_set_shape(out[0], in[0]->dtype, nd, dims);
    return st;
}

typedef struct bin_args {
    int op;
    void *o;
    const void *a, *b;
} bin_args;

/* Integer arithmetic goes through uint64_t so that overflow wraps instead of
 * being undefined; the narrowing conversion back is implementation-defined
 * (two's complement on every supported compiler). */
#define F_ADD(T, x, y) ((x) + (y))
#define F_SUB(T, x, y) ((x) - (y))
#define F_MUL(T, x, y) ((x) * (y))
#define F_DIV(T, x, y) ((x) / (y))
#define I_ADD(T, x, y) ((T)((uint64_t)(x) + (uint64_t)(y)))
#define I_SUB(T, x, y) ((T)((uint64_t)(x) - (uint64_t)(y)))
#define I_MUL(T, x, y) ((T)((uint64_t)(x) * (uint64_t)(y)))
/* Truncating division; the one overflowing case (MIN / -1) wraps. Zero
 * divisors are rejected before the walk. */
#define I_DIV(T, x, y) ((y) == (T)-1 ? (T)(0 - (uint64_t)(x)) : (T)((x) / (y)))
#define U_DIV(T, x, y) ((T)((x) / (y)))

#define BIN_LOOP(T, OP)                                                                       \
    do {                                                                                      \
        if (sa == 1 && sb == 1)                                                               \
            for (int64_t i = 0; i < n; i++)                                                   \
                o[i] = OP(T, a[i], b[i]);                                                     \
        else if (sa == 1 && sb == 0) { /* per-channel scale/shift: vectorises */              \
            T y = b[0];                                                                       \
            for (int64_t i = 0; i < n; i++)                                                   \
                o[i] = OP(T, a[i], y);                                                        \
        } else if (sa == 0 && sb == 1) {                                                      \
            T x = a[0];                                                                       \
            for (int64_t i = 0; i < n; i++)                                                   \
                o[i] = OP(T, x, b[i]);                                                        \
        } else if (sb == 0) {                                                                 \
            T y = b[0];                                                                       \
            for (int64_t i = 0; i < n; i++)                                                   \
                o[i] = OP(T, a[i * sa], y);                                                   \
        } else                                                                                \
            for (int64_t i = 0; i < n; i++)                                                   \
                o[i] = OP(T, a[i * sa], b[i * sb]);                                           \
    } while (0)

#define BIN_ROW(NAME, T, ADD, SUB, MUL, DIV)                                                  \
    static void NAME(void *vc, const size_t *off, int64_t n, const int64_t *step)             \
    {                                                                                         \
        const bin_args *c = vc;                                                               \
        T *o = (T *)c->o + off[0];                                                            \
        const T *a = (const T *)c->a + off[1], *b = (const T *)c->b + off[2];                 \
        int64_t sa = step[1], sb = step[2];                                                   \
        switch (c->op) {                                                                      \
        case CD_OP_ADD: BIN_LOOP(T, ADD); break;                                              \
        case CD_OP_SUB: BIN_LOOP(T, SUB); break;                                              \
        case CD_OP_MUL: BIN_LOOP(T, MUL); break;                                              \
        default: BIN_LOOP(T, DIV); break;                                                     \
        }                                                                                     \
    }

BIN_ROW(row_f32, float, F_ADD, F_SUB, F_MUL, F_DIV)
BIN_ROW(row_f64, double, F_ADD, F_SUB, F_MUL, F_DIV)
BIN_ROW(row_i64, int64_t, I_ADD, I_SUB, I_MUL, I_DIV)
BIN_ROW(row_i32, int32_t, I_ADD, I_SUB, I_MUL, I_DIV)
BIN_ROW(row_i8, int8_t, I_ADD, I_SUB, I_MUL, I_DIV)
BIN_ROW(row_u8, uint8_t, I_ADD, I_SUB, I_MUL, U_DIV)

static bc_row_fn binary_row(cd_dtype t)
{
    switch (t) {
    case CD_FLOAT32: return row_f32;
    case CD_FLOAT64: return row_f64;
    case CD_INT64: return row_i64;
    case CD_INT32: return row_i32;
    case CD_INT8: return row_i8;
    case CD_UINT8: return row_u8;
    default: return NULL;
    }
}

static bool has_zero(const cd_tensor *t)
{
    size_t cnt = cd_tensor_numel_raw(t);
    for (size_t i = 0; i < cnt; i++)
        if (cd_tensor_int_at(t, i) == 0)
            return true;
    return false;
}

static cd_status binary_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                cd_ctx *ctx)
{
    int nd;
    int64_t dims[CD_MAX_DIMS];
    bc_walk w = {0};
    cd_status st = binary_walk(n, in[0], in[1], &nd, dims, &w, ctx->err);
    if (st != CD_OK)
        return st;
    bc_row_fn row = binary_row(in[0]->dtype);
    if (!row || in[1]->dtype != in[0]->dtype || out[0]->dtype != in[0]->dtype)
        return cd_node_fail(n, ctx->err, CD_ERR_UNSUPPORTED, "element type %s is not supported",
                            cd_dtype_name(in[0]->dtype));
    bool is_int = in[0]->dtype != CD_FLOAT32 && in[0]->dtype != CD_FLOAT64;
    if (n->op == CD_OP_DIV && is_int && has_zero(in[1]))
        return cd_node_fail(n, ctx->err, CD_ERR_INVALID_ARGUMENT, "integer division by zero");
    bin_args args = {n->op, out[0]->data, in[0]->data, in[1]->data};
    bc_run(&w, row, &args);
    return CD_OK;
}

typedef struct bin_grad_args {
    int op;
    const void *g, *a, *b; /* float or double, as the row function */
    void *ga, *gb;         /* either may be NULL */
} bin_grad_args;

/* d(a op b)/da and /db, accumulated at each operand's own (possibly
 * repeated) offset: repeated offsets sum the gradient over broadcast axes.
 * One row function per element type (float32 plan, float64 mode). */
#define BIN_GRAD_ROW(NAME, T)                                                                 \
    static void NAME(void *vc, const size_t *off, int64_t n, const int64_t *step)             \
    {                                                                                         \
        const bin_grad_args *c = vc;                                                          \
        const T *g = (const T *)c->g + off[0];                                                \
        const T *a = c->a ? (const T *)c->a + off[1] : NULL;                                  \
        const T *b = c->b ? (const T *)c->b + off[2] : NULL;                                  \
        T *ga = c->ga ? (T *)c->ga + off[1] : NULL, *gb = c->gb ? (T *)c->gb + off[2] : NULL; \
        int64_t sa = step[1], sb = step[2];                                                   \
        for (int64_t i = 0; i < n; i++) {                                                     \
            T gi = g[i];                                                                      \
            switch (c->op) {                                                                  \
            case CD_OP_ADD:                                                                   \
            case CD_OP_SUM:                                                                   \
                if (ga) ga[i * sa] += gi;                                                     \
                if (gb) gb[i * sb] += gi;                                                     \
                break;                                                                        \
            case CD_OP_SUB:                                                                   \
                if (ga) ga[i * sa] += gi;                                                     \
                if (gb) gb[i * sb] -= gi;                                                     \
                break;                                                                        \
            case CD_OP_MUL:                                                                   \
                if (ga) ga[i * sa] += gi * b[i * sb];                                         \
                if (gb) gb[i * sb] += gi * a[i * sa];                                         \
                break;                                                                        \
            default: {                                                                        \
                T y = b[i * sb];                                                              \
                if (ga) ga[i * sa] += gi / y;                                                 \
                if (gb) gb[i * sb] -= gi * a[i * sa] / (y * y);                               \
            }                                                                                 \
            }                                                                                 \
        }                                                                                     \
    }
BIN_GRAD_ROW(grad_row_f32, float)
BIN_GRAD_ROW(grad_row_f64, double)
#undef BIN_GRAD_ROW

/* The gradient pass for X's element type `want` (float32, or float64 in
 * the float64 mode). */
static cd_status binary_grads(const cd_node *n, cd_tensor *const *in, cd_tensor *const *gout,
                              cd_tensor **gin, cd_dtype want, bc_row_fn row, cd_ctx *ctx)
{
    if (!gout[0] || (!gin[0] && !gin[1]))
        return CD_OK;
    if (in[0]->dtype != want)
        return cd_node_fail(n, ctx->err, CD_ERR_UNSUPPORTED, "gradients need %s, got %s",
                            cd_dtype_name(want), cd_dtype_name(in[0]->dtype));
    int nd;
    int64_t dims[CD_MAX_DIMS];
    bc_walk w = {0};
    cd_status st = binary_walk(n, in[0], in[1], &nd, dims, &w, ctx->err);
    if (st != CD_OK)
        return st;
    bin_grad_args args = {n->op, gout[0]->data, in[0]->data, in[1]->data,
                          gin[0] ? gin[0]->data : NULL, gin[1] ? gin[1]->data : NULL};
    bc_run(&w, row, &args);
    return CD_OK;
}

static cd_status binary_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                 cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    bool f64 = cd_is_f64(in[0]);
    return binary_grads(n, in, gout, gin, f64 ? CD_FLOAT64 : CD_FLOAT32,
                        f64 ? grad_row_f64 : grad_row_f32, ctx);
}

/* binary_forward already computes float64 (and integer) tensors, which is
 * all the float64 mode hands it. */
#define BINARY(id, name)                                                                      \
    const cd_op_def cd_opdef_##id = {name, 1, NULL, binary_infer, binary_forward,             \
                                     binary_backward, binary_forward, binary_backward};
BINARY(ADD, "Add")
BINARY(SUB, "Sub")
BINARY(MUL, "Mul")
BINARY(DIV, "Div")
#undef BINARY

/* Sum (variadic) ----------------------------------------------------------- */

static cd_status sum_shape(const cd_node *n, cd_tensor *const *in, int *nd, int64_t *dims,
                           cd_error *err)
{
    if (n->n_inputs < 1)
        return cd_node_fail(n, err, CD_ERR_PARSE, "needs at least one input");
    *nd = 0;
    char sa[96], sb[96];
    for (int i = 0; i < n->n_inputs; i++) {
        if (!in[i])
            return cd_node_fail(n, err, CD_ERR_PARSE, "input %d is missing", i);
        if (in[i]->dtype != CD_FLOAT32)
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "input %d is %s; only float32 is "
                                "supported", i, cd_dtype_name(in[i]->dtype));
        /* Opsets before 8 required equal shapes; broadcasting them anyway
         * accepts every valid old model. */
        int64_t prev[CD_MAX_DIMS];
        int np = *nd;
        memcpy(prev, dims, sizeof prev);
        if (!cd_broadcast_shape(np, prev, in[i]->ndim, in[i]->dims, nd, dims))
            return cd_node_fail(n, err, CD_ERR_SHAPE, "input %d shape %s does not broadcast "
                                "with %s", i, cd_shape_str(in[i]->ndim, in[i]->dims, sb,
                                                           sizeof sb),
                                cd_shape_str(np, prev, sa, sizeof sa));
    }
    return CD_OK;
}

static cd_status sum_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out, cd_error *err)
{
    int nd;
    int64_t dims[CD_MAX_DIMS] = {0};
    cd_status st = sum_shape(n, in, &nd, dims, err);
    if (st == CD_OK && out[0])
        cd_tensor_set_shape(out[0], CD_FLOAT32, nd, dims);
    return st;
}

/* Y = 0, then Y += X_i through the broadcast walk, for the element type
 * whose add row is given (float32, or float64 in the float64 mode). */
static cd_status sum_accumulate(const cd_node *n, cd_tensor *const *in, cd_tensor *y,
                                bc_row_fn add_row, size_t elem)
{
    memset(y->data, 0, cd_tensor_numel_raw(y) * elem);
    for (int i = 0; i < n->n_inputs; i++) {
        bc_walk w;
        bc_init(&w, y->ndim, y->dims, y->ndim, y->dims, in[i]->ndim, in[i]->dims);
        bin_args args = {CD_OP_ADD, y->data, y->data, in[i]->data};
        bc_run(&w, add_row, &args);
    }
    return CD_OK;
}

static cd_status sum_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out, cd_ctx *ctx)
{
    CD_UNUSED(ctx);
    if (cd_is_f64(in[0]))
        return sum_accumulate(n, in, out[0], row_f64, sizeof(double));
    return sum_accumulate(n, in, out[0], row_f32, sizeof(float));
}

/* Each input receives the output gradient summed over its broadcast axes. */
static cd_status sum_grads(const cd_node *n, cd_tensor *const *in, const cd_tensor *g,
                           cd_tensor **gin, bc_row_fn grad_row)
{
    if (!g)
        return CD_OK;
    for (int i = 0; i < n->n_inputs; i++) {
        if (!gin[i])
            continue;
        bc_walk w;
        bc_init(&w, g->ndim, g->dims, g->ndim, g->dims, in[i]->ndim, in[i]->dims);
        bin_grad_args args = {CD_OP_SUM, g->data, NULL, NULL, NULL, gin[i]->data};
        bc_run(&w, grad_row, &args);
    }
    return CD_OK;
}

static cd_status sum_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                              cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(ctx);
    CD_UNUSED(out);
    return sum_grads(n, in, gout[0], gin, cd_is_f64(in[0]) ? grad_row_f64 : grad_row_f32);
}

const cd_op_def cd_opdef_SUM = {"Sum", 1, NULL, sum_infer, sum_forward, sum_backward,
                                sum_forward, sum_backward};

/* Sqrt, Exp ---------------------------------------------------------------- */

static cd_status unary_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                             cd_error *err)
{
    if (n->n_inputs < 1 || !in[0])
        return cd_node_fail(n, err, CD_ERR_PARSE, "expects 1 input");
    if (in[0]->dtype != CD_FLOAT32)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "element type %s is not supported",
                            cd_dtype_name(in[0]->dtype));
    if (out[0])
        cd_tensor_set_shape(out[0], CD_FLOAT32, in[0]->ndim, in[0]->dims);
    return CD_OK;
}

/* y = sqrt(x) or exp(x), in T with T's libm functions. */
#define UNARY_LOOP(T, SQRT, EXP)                                                              \
    do {                                                                                      \
        const T *x = in[0]->data;                                                             \
        T *y = out[0]->data;                                                                  \
        if (n->op == CD_OP_SQRT)                                                              \
            for (size_t i = 0; i < cnt; i++)                                                  \
                y[i] = SQRT(x[i]);                                                            \
        else                                                                                  \
            for (size_t i = 0; i < cnt; i++)                                                  \
                y[i] = EXP(x[i]);                                                             \
    } while (0)

/* Both precisions: float32, or float64 in the float64 mode. */
static cd_status unary_run(const cd_node *n, cd_tensor *const *in, cd_tensor **out, bool f64)
{
    size_t cnt = cd_tensor_numel_raw(in[0]);
    if (f64)
        UNARY_LOOP(double, sqrt, exp);
    else
        UNARY_LOOP(float, sqrtf, expf);
    return CD_OK;
}
#undef UNARY_LOOP

static cd_status unary_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                               cd_ctx *ctx)
{
    CD_UNUSED(ctx);
    return unary_run(n, in, out, cd_is_f64(in[0]));
}

/* Both derivatives are cheapest in terms of the output y. */
#define UNARY_GRAD_LOOP(T)                                                                    \
    do {                                                                                      \
        const T *y = out[0]->data, *g = gout[0]->data;                                        \
        T *gx = gin[0]->data;                                                                 \
        if (n->op == CD_OP_SQRT)                                                              \
            for (size_t i = 0; i < cnt; i++)                                                  \
                gx[i] += g[i] * (T)0.5 / y[i];                                                \
        else                                                                                  \
            for (size_t i = 0; i < cnt; i++)                                                  \
                gx[i] += g[i] * y[i];                                                         \
    } while (0)

static cd_status unary_grad(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                            cd_tensor *const *gout, cd_tensor **gin, bool f64)
{
    if (!gout[0] || !gin[0])
        return CD_OK;
    size_t cnt = cd_tensor_numel_raw(in[0]);
    if (f64)
        UNARY_GRAD_LOOP(double);
    else
        UNARY_GRAD_LOOP(float);
    return CD_OK;
}
#undef UNARY_GRAD_LOOP

static cd_status unary_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(ctx);
    return unary_grad(n, in, out, gout, gin, cd_is_f64(in[0]));
}

const cd_op_def cd_opdef_SQRT = {"Sqrt", 1, NULL, unary_infer, unary_forward, unary_backward,
                                 unary_forward, unary_backward};
const cd_op_def cd_opdef_EXP = {"Exp", 1, NULL, unary_infer, unary_forward, unary_backward,
                                unary_forward, unary_backward};
