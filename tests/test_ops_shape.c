/* Shape and data-movement operators (core/ops/shape_ops.c) and Pad
 * (core/ops/pad.c): forward against naive index arithmetic written here,
 * opset conventions, error paths, and finite-difference backward checks.
 * tu_gradcheck also checks the float64 kernels (forward64 against the float
 * forward, backward64 against float64 differences), so every operator here
 * goes through it at least once. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void bind_or_fail(cd_node *n)
{
    cd_error err;
    if (cd_node_bind(n, &err) != CD_OK)
        fail_msg("bind failed: %s", err.message);
}

static void init_node(cd_node *n, const char *op, int opset, int n_in)
{
    cd_error err;
    assert_int_equal(cd_node_init(n, op, opset, n_in, 1, &err), CD_OK);
}

static cd_tensor *run1(cd_node *n, cd_tensor **in)
{
    cd_error err;
    cd_tensor *out[1] = {NULL};
    if (tu_run_node(n, in, out, true, &err) != CD_OK)
        fail_msg("%s failed: %s", n->op_type, err.message);
    return out[0];
}

static cd_status run_status(cd_node *n, cd_tensor **in, bool consts, cd_error *err)
{
    cd_tensor *out[1] = {NULL};
    cd_status st = tu_run_node(n, in, out, consts, err);
    cd_tensor_free(out[0]);
    return st;
}

static void expect_dims(const cd_tensor *t, int ndim, const int64_t *dims)
{
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        assert_int_equal(t->dims[d], dims[d]);
}

static void expect_same_payload(const cd_tensor *a, const cd_tensor *b)
{
    assert_int_equal(cd_tensor_nbytes(a), cd_tensor_nbytes(b));
    assert_memory_equal(a->data, b->data, cd_tensor_nbytes(a));
}

static void gradcheck_ok(cd_node *n, cd_tensor **in, const bool *check)
{
    double worst = tu_gradcheck(n, in, check, 1e-2f, 1e-3, 1e-3);
    if (worst > 1.0)
        fail_msg("%s gradcheck: %g", n->op_type, worst);
}

/* For nodes without a float32 input (integer payloads, Constant) or whose
 * backward64 is NULL (Shape): tu_gradcheck then compares forward64's
 * outputs with the float forward's. */
static void forward64_ok(cd_node *n, cd_tensor **in)
{
    static const bool none[8] = {false};
    assert_true(n->n_inputs <= 8);
    gradcheck_ok(n, in, none);
}

/* Runs the float64 kernel of n directly: out[0] gets dtype `to` and dims. */
static cd_status run64(cd_node *n, cd_tensor **in, cd_dtype to, int ndim, const int64_t *dims,
                       cd_tensor **out, cd_error *err)
{
    assert_int_equal(cd_tensor_create(to, ndim, dims, out, err), CD_OK);
    cd_ctx ctx = {.err = err, .threads = 1};
    cd_status st = cd_op_get(n->op)->forward64(n, in, out, &ctx);
    free(ctx.scratch);
    return st;
}

/* Concat ----------------------------------------------------------------- */

/* Concat of [2,3,4]-shaped tensors, each with 1 + k entries on axis: the
 * backward's row offsets differ with the axis. */
static void check_concat_axis(int64_t axis)
{
    int a = (int)(axis < 0 ? axis + 3 : axis);
    cd_tensor *x[3];
    for (int k = 0; k < 3; k++) {
        int64_t d[3] = {2, 3, 4};
        d[a] = 1 + k;
        x[k] = tu_random(3, d, 40 + (uint64_t)k, -1, 1);
    }
    cd_node n;
    cd_error err;
    init_node(&n, "Concat", 13, 3);
    cd_node_add_int(&n, "axis", axis, &err);
    bind_or_fail(&n);
    gradcheck_ok(&n, x, (const bool[]){true, false, true});
    cd_node_clear(&n);
    for (int k = 0; k < 3; k++)
        cd_tensor_free(x[k]);
}

static void test_concat(void **state)
{
    (void)state;
    int64_t da[3] = {2, 1, 3}, db[3] = {2, 4, 3}, dc[3] = {2, 2, 3};
    cd_tensor *a = tu_random(3, da, 1, -1, 1), *b = tu_random(3, db, 2, -1, 1),
              *c = tu_random(3, dc, 3, -1, 1);
    cd_node n;
    init_node(&n, "Concat", 13, 3);
    cd_error err;
    cd_node_add_int(&n, "axis", -2, &err);
    bind_or_fail(&n);
    cd_tensor *in[3] = {a, b, c};
    cd_tensor *y = run1(&n, in);
    expect_dims(y, 3, (const int64_t[]){2, 7, 3});
    const float *yp = y->data;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 7; j++)
            for (int k = 0; k < 3; k++) {
                float want = j < 1   ? cd_cf32(a)[(i * 1 + j) * 3 + k]
                             : j < 5 ? cd_cf32(b)[(i * 4 + j - 1) * 3 + k]
                                     : cd_cf32(c)[(i * 2 + j - 5) * 3 + k];
                assert_true(yp[(i * 7 + j) * 3 + k] == want);
            }
    cd_tensor_free(y);
    gradcheck_ok(&n, in, (const bool[]){true, true, true});
    /* mismatched non-axis dims are a shape error */
    int64_t dbad[3] = {3, 1, 3};
    cd_tensor *bad = tu_random(3, dbad, 4, 0, 1);
    in[1] = bad;
    assert_int_equal(run_status(&n, in, true, &err), CD_ERR_SHAPE);
    cd_node_clear(&n);
    /* integer payloads */
    init_node(&n, "Concat", 13, 2);
    cd_node_add_int(&n, "axis", 0, &err);
    bind_or_fail(&n);
    int64_t two = 2, one = 1;
    cd_tensor *i1 = tu_tensor_i64(1, &two, (const int64_t[]){7, -8});
    cd_tensor *i2 = tu_tensor_i64(1, &one, (const int64_t[]){1LL << 40});
    cd_tensor *iin[2] = {i1, i2};
    y = run1(&n, iin);
    assert_int_equal(y->dtype, CD_INT64);
    const int64_t *ip = y->data;
    assert_true(ip[0] == 7 && ip[1] == -8 && ip[2] == (1LL << 40));
    cd_tensor_free(y);
    forward64_ok(&n, iin);
    cd_node_clear(&n);
    cd_tensor_free(i1);
    cd_tensor_free(i2);
    cd_tensor_free(bad);
    cd_tensor_free(a);
    cd_tensor_free(b);
    cd_tensor_free(c);
    check_concat_axis(0);
    check_concat_axis(1);
    check_concat_axis(-1);
}

/* Flatten / Reshape / Squeeze / Unsqueeze / Identity ------------------------ */

static void check_flatten(int64_t axis, int64_t rows, int64_t cols)
{
    int64_t d[4] = {2, 3, 4, 5};
    cd_tensor *x = tu_random(4, d, 5, -1, 1);
    cd_node n;
    cd_error err;
    init_node(&n, "Flatten", 13, 1);
    if (axis != 1)
        cd_node_add_int(&n, "axis", axis, &err);
    bind_or_fail(&n);
    cd_tensor *in[1] = {x};
    cd_tensor *y = run1(&n, in);
    expect_dims(y, 2, (const int64_t[]){rows, cols});
    expect_same_payload(y, x);
    cd_tensor_free(y);
    gradcheck_ok(&n, in, (const bool[]){true});
    cd_node_clear(&n);
    cd_tensor_free(x);
}

static void test_flatten(void **state)
{
    (void)state;
    check_flatten(1, 2, 60);
    check_flatten(0, 1, 120);
    check_flatten(4, 120, 1);
    check_flatten(-1, 24, 5);
    check_flatten(-4, 1, 120);
}

static cd_tensor *reshape(int opset, cd_tensor *x, const int64_t *shape, int count,
                          bool allowzero, cd_status *st)
{
    cd_node n;
    cd_error err;
    int64_t cnt = count;
    init_node(&n, "Reshape", opset, opset < 5 ? 1 : 2);
    if (opset < 5)
        cd_node_add_ints(&n, "shape", shape, (size_t)count, &err);
    if (allowzero)
        cd_node_add_int(&n, "allowzero", 1, &err);
    bind_or_fail(&n);
    cd_tensor *s = opset < 5 ? NULL : tu_tensor_i64(1, &cnt, shape);
    cd_tensor *in[2] = {x, s}, *out[1] = {NULL};
    *st = tu_run_node(&n, in, out, true, &err);
    if (*st == CD_OK)
        gradcheck_ok(&n, in, (const bool[]){true, false});
    cd_tensor_free(s);
    cd_node_clear(&n);
    return out[0];
}

static void test_reshape(void **state)
{
    (void)state;
    int64_t d[3] = {2, 3, 4};
    cd_tensor *x = tu_random(3, d, 6, -1, 1);
    cd_status st;
    cd_tensor *y = reshape(13, x, (const int64_t[]){0, -1}, 2, false, &st);
    assert_int_equal(st, CD_OK);
    expect_dims(y, 2, (const int64_t[]){2, 12});
    expect_same_payload(y, x);
    cd_tensor_free(y);
    y = reshape(4, x, (const int64_t[]){4, 0, 2}, 3, false, &st); /* attribute form */
    assert_int_equal(st, CD_OK);
    expect_dims(y, 3, (const int64_t[]){4, 3, 2});
    cd_tensor_free(y);
    y = reshape(13, x, (const int64_t[]){-1, 5}, 2, false, &st);
    assert_int_equal(st, CD_ERR_SHAPE);
    y = reshape(13, x, (const int64_t[]){-1, -1}, 2, false, &st);
    assert_int_equal(st, CD_ERR_SHAPE);
    cd_tensor_free(x);
    /* allowzero: a 0 means an empty dim, not "copy" */
    int64_t dz[3] = {0, 3, 4};
    cd_tensor *z = tu_random(3, dz, 7, 0, 1);
    y = reshape(14, z, (const int64_t[]){3, 4, 0}, 3, true, &st);
    assert_int_equal(st, CD_OK);
    expect_dims(y, 3, (const int64_t[]){3, 4, 0});
    cd_tensor_free(y);
    y = reshape(14, z, (const int64_t[]){3, 4, 0}, 3, false, &st);
    assert_int_equal(st, CD_ERR_SHAPE); /* 0 would copy dim 2 (= 4): 48 != 0 */
    cd_tensor_free(z);
    /* a shape that is not a plan-time constant is refused clearly */
    cd_node n;
    cd_error err;
    init_node(&n, "Reshape", 13, 2);
    bind_or_fail(&n);
    int64_t one = 1;
    cd_tensor *x2 = tu_random(3, d, 8, 0, 1), *s = tu_tensor_i64(1, &one, (const int64_t[]){-1});
    cd_tensor *in[2] = {x2, s};
    assert_int_equal(run_status(&n, in, false, &err), CD_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "constant"));
    gradcheck_ok(&n, in, (const bool[]){true, false});
    cd_node_clear(&n);
    cd_tensor_free(x2);
    cd_tensor_free(s);
}

static cd_tensor *squeeze_like(const char *op, int opset, cd_tensor *x, const int64_t *axes,
                               int count, cd_status *st)
{
    cd_node n;
    cd_error err;
    int64_t cnt = count;
    bool as_input = opset >= 13 && axes;
    init_node(&n, op, opset, as_input ? 2 : 1);
    if (!as_input && axes)
        cd_node_add_ints(&n, "axes", axes, (size_t)count, &err);
    bind_or_fail(&n);
    cd_tensor *a = as_input ? tu_tensor_i64(1, &cnt, axes) : NULL;
    cd_tensor *in[2] = {x, a}, *out[1] = {NULL};
    *st = tu_run_node(&n, in, out, true, &err);
    if (*st == CD_OK)
        gradcheck_ok(&n, in, (const bool[]){true, false});
    cd_tensor_free(a);
    cd_node_clear(&n);
    return out[0];
}

static void test_squeeze_unsqueeze(void **state)
{
    (void)state;
    int64_t d[4] = {1, 3, 1, 2};
    cd_tensor *x = tu_random(4, d, 9, -1, 1);
    cd_status st;
    cd_tensor *y = squeeze_like("Squeeze", 11, x, (const int64_t[]){-2}, 1, &st);
    assert_int_equal(st, CD_OK);
    expect_dims(y, 3, (const int64_t[]){1, 3, 2});
    expect_same_payload(y, x);
    cd_tensor_free(y);
    y = squeeze_like("Squeeze", 13, x, (const int64_t[]){0, 2}, 2, &st);
    assert_int_equal(st, CD_OK);
    expect_dims(y, 2, (const int64_t[]){3, 2});
    cd_tensor_free(y);
    y = squeeze_like("Squeeze", 13, x, NULL, 0, &st); /* no axes: all size-1 dims */
    assert_int_equal(st, CD_OK);
    expect_dims(y, 2, (const int64_t[]){3, 2});
    cd_tensor_free(y);
    y = squeeze_like("Squeeze", 13, x, (const int64_t[]){1}, 1, &st);
    assert_int_equal(st, CD_ERR_SHAPE);
    y = squeeze_like("Unsqueeze", 11, x, (const int64_t[]){0, -1}, 2, &st);
    assert_int_equal(st, CD_OK);
    expect_dims(y, 6, (const int64_t[]){1, 1, 3, 1, 2, 1});
    cd_tensor_free(y);
    y = squeeze_like("Unsqueeze", 13, x, (const int64_t[]){5, 1}, 2, &st); /* unsorted */
    assert_int_equal(st, CD_OK);
    expect_dims(y, 6, (const int64_t[]){1, 1, 3, 1, 2, 1});
    expect_same_payload(y, x);
    cd_tensor_free(y);
    y = squeeze_like("Unsqueeze", 13, x, (const int64_t[]){1, -5}, 2, &st); /* same axis */
    assert_int_equal(st, CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(x);
}

static void test_identity_constant(void **state)
{
    (void)state;
    cd_node n;
    cd_error err;
    int64_t d[2] = {2, 3};
    cd_tensor *x = tu_random(2, d, 10, -1, 1);
    init_node(&n, "Identity", 13, 1);
    bind_or_fail(&n);
    cd_tensor *in[1] = {x};
    cd_tensor *y = run1(&n, in);
    expect_same_payload(y, x);
    cd_tensor_free(y);
    gradcheck_ok(&n, in, (const bool[]){true});
    int64_t three = 3;
    cd_tensor *ix = tu_tensor_i64(1, &three, (const int64_t[]){4, -5, 1LL << 50});
    cd_tensor *iin[1] = {ix};
    forward64_ok(&n, iin); /* integer payload: unchanged */
    cd_tensor_free(ix);
    cd_node_clear(&n);
    /* value tensor: the output is a copy */
    cd_tensor *v = NULL;
    cd_tensor_clone(x, &v, &err);
    init_node(&n, "Constant", 13, 0);
    cd_node_add_tensor(&n, "value", v, &err);
    bind_or_fail(&n);
    y = run1(&n, NULL);
    expect_dims(y, 2, d);
    expect_same_payload(y, x);
    assert_ptr_not_equal(y->data, v->data);
    cd_tensor_free(y);
    forward64_ok(&n, NULL);
    cd_node_clear(&n);
    init_node(&n, "Constant", 13, 0);
    cd_node_add_floats(&n, "value_floats", (const float[]){1.5f, -2}, 2, &err);
    bind_or_fail(&n);
    y = run1(&n, NULL);
    expect_dims(y, 1, (const int64_t[]){2});
    assert_true(cd_cf32(y)[0] == 1.5f && cd_cf32(y)[1] == -2);
    cd_tensor_free(y);
    forward64_ok(&n, NULL);
    cd_node_clear(&n);
    /* float64 mode widens the float32 value exactly */
    init_node(&n, "Constant", 13, 0);
    cd_node_add_float(&n, "value_float", 0.1f, &err);
    bind_or_fail(&n);
    assert_int_equal(run64(&n, NULL, CD_FLOAT64, 0, NULL, &y, &err), CD_OK);
    assert_true(*cd_cf64(y) == (double)0.1f);
    cd_tensor_free(y);
    forward64_ok(&n, NULL);
    cd_node_clear(&n);
    init_node(&n, "Constant", 13, 0);
    cd_node_add_int(&n, "value_int", -7, &err);
    bind_or_fail(&n);
    y = run1(&n, NULL);
    assert_int_equal(y->ndim, 0);
    assert_int_equal(y->dtype, CD_INT64);
    assert_true(*(const int64_t *)y->data == -7);
    cd_tensor_free(y);
    forward64_ok(&n, NULL);
    cd_node_clear(&n);
    cd_tensor_free(x);
}

/* Shape ------------------------------------------------------------------ */

static void check_shape(int opset, const int64_t *start, const int64_t *end, int64_t lo,
                        int64_t hi)
{
    int64_t d[4] = {2, 3, 5, 7};
    cd_tensor *x = tu_random(4, d, 1, 0, 1);
    cd_node n;
    cd_error err;
    init_node(&n, "Shape", opset, 1);
    if (start)
        cd_node_add_int(&n, "start", *start, &err);
    if (end)
        cd_node_add_int(&n, "end", *end, &err);
    bind_or_fail(&n);
    cd_tensor *in[1] = {x};
    /* Shape needs only the input's dims, not its values */
    cd_tensor *out[1] = {NULL};
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    assert_int_equal(out[0]->dtype, CD_INT64);
    assert_int_equal(out[0]->dims[0], hi - lo);
    for (int64_t k = lo; k < hi; k++)
        assert_int_equal(((const int64_t *)out[0]->data)[k - lo], d[k]);
    cd_tensor_free(out[0]);
    forward64_ok(&n, in);
    cd_node_clear(&n);
    cd_tensor_free(x);
}

static void test_shape(void **state)
{
    (void)state;
    const int64_t one = 1, m1 = -1, big = 10, mbig = -10, three = 3;
    check_shape(13, NULL, NULL, 0, 4);
    check_shape(13, &one, NULL, 0, 4); /* start only exists from opset 15 */
    check_shape(15, &one, NULL, 1, 4);
    check_shape(15, NULL, &m1, 0, 3);
    check_shape(15, &mbig, &big, 0, 4);
    check_shape(15, &three, &one, 3, 3);
}

/* Transpose -------------------------------------------------------------- */

static void test_transpose(void **state)
{
    (void)state;
    int64_t d[4] = {2, 3, 4, 5};
    cd_tensor *x = tu_random(4, d, 12, -1, 1);
    const int64_t perm[4] = {2, 0, 3, 1};
    cd_node n;
    cd_error err;
    init_node(&n, "Transpose", 13, 1);
    cd_node_add_ints(&n, "perm", perm, 4, &err);
    bind_or_fail(&n);
    cd_tensor *in[1] = {x};
    cd_tensor *y = run1(&n, in);
    expect_dims(y, 4, (const int64_t[]){4, 2, 5, 3});
    const float *xp = x->data, *yp = y->data;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++)
            for (int c = 0; c < 4; c++)
                for (int e = 0; e < 5; e++)
                    assert_true(yp[((c * 2 + a) * 5 + e) * 3 + b] ==
                                xp[((a * 3 + b) * 4 + c) * 5 + e]);
    cd_tensor_free(y);
    gradcheck_ok(&n, in, (const bool[]){true});
    cd_node_clear(&n);
    /* default: reverse the axes; int64 payload */
    int64_t d2[2] = {2, 3};
    cd_tensor *m = tu_tensor_i64(2, d2, (const int64_t[]){1, 2, 3, 4, 5, 6});
    init_node(&n, "Transpose", 13, 1);
    bind_or_fail(&n);
    in[0] = m;
    y = run1(&n, in);
    expect_dims(y, 2, (const int64_t[]){3, 2});
    const int64_t want[6] = {1, 4, 2, 5, 3, 6};
    assert_memory_equal(y->data, want, sizeof want);
    cd_tensor_free(y);
    forward64_ok(&n, in);
    in[0] = x; /* reversed axes of a float tensor */
    gradcheck_ok(&n, in, (const bool[]){true});
    cd_node_clear(&n);
    init_node(&n, "Transpose", 13, 1);
    cd_node_add_ints(&n, "perm", (const int64_t[]){0, 3, 1, 2}, 4, &err);
    bind_or_fail(&n);
    gradcheck_ok(&n, in, (const bool[]){true});
    cd_node_clear(&n);
    cd_tensor_free(m);
    cd_tensor_free(x);
}

/* Gather ----------------------------------------------------------------- */

static void test_gather(void **state)
{
    (void)state;
    int64_t d[3] = {2, 4, 3}, di[2] = {2, 3};
    cd_tensor *x = tu_random(3, d, 13, -1, 1);
    const int32_t idx32[6] = {0, -1, 2, 1, 1, -4};
    cd_tensor *idx = NULL;
    cd_error err;
    cd_tensor_from_data(CD_INT32, 2, di, idx32, &idx, &err);
    cd_node n;
    init_node(&n, "Gather", 13, 2);
    cd_node_add_int(&n, "axis", -2, &err);
    bind_or_fail(&n);
    cd_tensor *in[2] = {x, idx};
    cd_tensor *y = run1(&n, in);
    expect_dims(y, 4, (const int64_t[]){2, 2, 3, 3});
    const float *xp = x->data, *yp = y->data;
    for (int a = 0; a < 2; a++)
        for (int k = 0; k < 6; k++) {
            int j = idx32[k] < 0 ? idx32[k] + 4 : idx32[k];
            for (int c = 0; c < 3; c++)
                assert_true(yp[(a * 6 + k) * 3 + c] == xp[(a * 4 + j) * 3 + c]);
        }
    cd_tensor_free(y);
    /* index 1 appears twice: its gradient is the sum */
    gradcheck_ok(&n, in, (const bool[]){true, false});
    int32_t *ip = idx->data;
    ip[2] = 4;
    assert_int_equal(run_status(&n, in, true, &err), CD_ERR_INVALID_ARGUMENT);
    cd_node_clear(&n);
    /* int64 data, scalar int64 index on axis 0 */
    int64_t three = 3;
    cd_tensor *v = tu_tensor_i64(1, &three, (const int64_t[]){10, 20, 30});
    cd_tensor *s = tu_tensor_i64(0, NULL, (const int64_t[]){-1});
    init_node(&n, "Gather", 13, 2);
    bind_or_fail(&n);
    cd_tensor *in2[2] = {v, s};
    y = run1(&n, in2);
    assert_int_equal(y->ndim, 0);
    assert_true(*(const int64_t *)y->data == 30);
    cd_tensor_free(y);
    forward64_ok(&n, in2);
    /* float data, axis 0 and the last axis, int64 indices with repeats */
    int64_t dk = 4;
    cd_tensor *k64 = tu_tensor_i64(1, &dk, (const int64_t[]){1, -1, 0, 1});
    in[1] = k64;
    gradcheck_ok(&n, in, (const bool[]){true, false});
    cd_node_clear(&n);
    init_node(&n, "Gather", 13, 2);
    cd_node_add_int(&n, "axis", 2, &err);
    bind_or_fail(&n);
    gradcheck_ok(&n, in, (const bool[]){true, false});
    in[1] = s; /* scalar index: the axis is dropped */
    gradcheck_ok(&n, in, (const bool[]){true, false});
    cd_node_clear(&n);
    cd_tensor_free(k64);
    cd_tensor_free(v);
    cd_tensor_free(s);
    cd_tensor_free(idx);
    cd_tensor_free(x);
}

/* Cast ------------------------------------------------------------------- */

static void cast_node(cd_node *n, cd_dtype to)
{
    cd_error err;
    init_node(n, "Cast", 13, 1);
    cd_node_add_int(n, "to", to, &err);
    bind_or_fail(n);
}

static cd_tensor *cast(cd_tensor *x, cd_dtype to)
{
    cd_node n;
    cast_node(&n, to);
    cd_tensor *in[1] = {x};
    cd_tensor *y = run1(&n, in);
    cd_node_clear(&n);
    return y;
}

/* float32 inputs are checked too: their gradient is zero through an integer
 * or float64 output (not differentiated), the identity into float32. */
static void cast_check64(cd_tensor *x, cd_dtype to)
{
    cd_node n;
    cast_node(&n, to);
    cd_tensor *in[1] = {x};
    gradcheck_ok(&n, in, (const bool[]){x->dtype == CD_FLOAT32});
    cd_node_clear(&n);
}

/* Float64 mode's Cast rule (shape_ops.c, cast_forward64): a float32 target
 * is float64 here and keeps the double values; integer targets convert the
 * double values. */
static void test_cast_float64_mode(void **state)
{
    (void)state;
    int64_t four = 4, one = 1;
    const double vals[4] = {0.1, 2.9999999999, -2.5, 1e10};
    cd_tensor *x = NULL, *y = NULL;
    cd_error err;
    assert_int_equal(cd_tensor_from_data(CD_FLOAT64, 1, &four, vals, &x, &err), CD_OK);
    cd_node n;
    init_node(&n, "Cast", 13, 1);
    cd_node_add_int(&n, "to", CD_FLOAT32, &err);
    bind_or_fail(&n);
    cd_tensor *in[1] = {x};
    assert_int_equal(run64(&n, in, CD_FLOAT64, 1, &four, &y, &err), CD_OK);
    assert_memory_equal(y->data, vals, sizeof vals); /* copied, not rounded */
    cd_tensor_free(y);
    /* the caller must give a float32 target a float64 buffer */
    assert_int_equal(run64(&n, in, CD_FLOAT32, 1, &four, &y, &err), CD_ERR_INTERNAL);
    cd_tensor_free(y);
    /* int64 -> float32: the double value, which float32 would round */
    cd_tensor *i = tu_tensor_i64(1, &one, (const int64_t[]){(1 << 24) + 1});
    in[0] = i;
    assert_int_equal(run64(&n, in, CD_FLOAT64, 1, &one, &y, &err), CD_OK);
    assert_true(*cd_cf64(y) == 16777217.0);
    cd_tensor_free(y);
    cd_tensor_free(i);
    cd_node_clear(&n);
    init_node(&n, "Cast", 13, 1);
    cd_node_add_int(&n, "to", CD_INT32, &err);
    bind_or_fail(&n);
    in[0] = x;
    assert_int_equal(run64(&n, in, CD_INT32, 1, &four, &y, &err), CD_OK);
    const int32_t want[4] = {0, 2, -2, 2147483647}; /* 2.9999999999 is 3 in float32 */
    assert_memory_equal(y->data, want, sizeof want);
    cd_tensor_free(y);
    cd_node_clear(&n);
    cd_tensor_free(x);
}

static void test_cast(void **state)
{
    (void)state;
    int64_t five = 5;
    const float vals[5] = {1.75f, -2.5f, 0.0f, 300.0f, -0.75f};
    cd_tensor *x = tu_tensor_f32(1, &five, vals);
    cd_tensor *y = cast(x, CD_INT32);
    const int32_t want32[5] = {1, -2, 0, 300, 0}; /* truncation toward zero */
    assert_memory_equal(y->data, want32, sizeof want32);
    cd_tensor_free(y);
    y = cast(x, CD_BOOL);
    const uint8_t wantb[5] = {1, 1, 0, 1, 1};
    assert_memory_equal(y->data, wantb, sizeof wantb);
    cd_tensor_free(y);
    y = cast(x, CD_FLOAT64);
    for (int i = 0; i < 5; i++)
        assert_true(((const double *)y->data)[i] == (double)vals[i]);
    cd_tensor *back = cast(y, CD_FLOAT32);
    expect_same_payload(back, x);
    cd_tensor_free(back);
    cd_tensor_free(y);
    /* float16 bit patterns from the IEEE 754 binary16 definition */
    const float hv[6] = {1.0f, -2.0f, 65504.0f, 0.1f, 5.9604645e-8f, 1e-9f};
    const uint16_t hbits[6] = {0x3C00, 0xC000, 0x7BFF, 0x2E66, 0x0001, 0x0000};
    int64_t six = 6;
    cd_tensor *h = tu_tensor_f32(1, &six, hv);
    y = cast(h, CD_FLOAT16);
    assert_memory_equal(y->data, hbits, sizeof hbits);
    back = cast(y, CD_FLOAT32);
    assert_true(cd_cf32(back)[0] == 1.0f && cd_cf32(back)[2] == 65504.0f);
    assert_true(fabsf(cd_cf32(back)[3] - 0.0999755859375f) == 0);
    cd_tensor_free(back);
    cd_tensor_free(y);
    cd_tensor_free(h);
    /* int64 -> float, float -> uint8 */
    int64_t two = 2;
    cd_tensor *i = tu_tensor_i64(1, &two, (const int64_t[]){-3, 1 << 20});
    y = cast(i, CD_FLOAT32);
    assert_true(cd_cf32(y)[0] == -3.0f && cd_cf32(y)[1] == 1048576.0f);
    cd_tensor_free(y);
    cd_tensor_free(i);
    /* unsupported target types are refused at bind time */
    cd_node n;
    cd_error err;
    init_node(&n, "Cast", 13, 1);
    cd_node_add_int(&n, "to", 8 /* STRING */, &err);
    assert_int_equal(cd_node_bind(&n, &err), CD_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "not supported"));
    cd_node_clear(&n);
    /* float -> float passes the gradient */
    init_node(&n, "Cast", 13, 1);
    cd_node_add_int(&n, "to", CD_FLOAT32, &err);
    bind_or_fail(&n);
    cd_tensor *in[1] = {x};
    gradcheck_ok(&n, in, (const bool[]){true});
    cd_node_clear(&n);
    /* the float64 kernels on every kind of cast */
    cast_check64(x, CD_FLOAT64);
    cast_check64(x, CD_FLOAT16);
    cast_check64(x, CD_INT32);
    cast_check64(x, CD_UINT8);
    cast_check64(x, CD_BOOL);
    cd_tensor *xd = cast(x, CD_FLOAT64), *xh = cast(x, CD_FLOAT16), *xi = cast(x, CD_INT64);
    cast_check64(xd, CD_FLOAT32);
    cast_check64(xh, CD_FLOAT32);
    cast_check64(xi, CD_FLOAT32);
    cast_check64(xi, CD_INT8);
    cd_tensor_free(xd);
    cd_tensor_free(xh);
    cd_tensor_free(xi);
    cd_tensor_free(x);
}

/* Every operator of shape_ops.c has both float64 kernels (Shape's backward,
 * in both modes, touches nothing: its int64 output carries no gradient). */
static void test_float64_kernels(void **state)
{
    (void)state;
    const int ids[] = {CD_OP_CONCAT,   CD_OP_FLATTEN,   CD_OP_RESHAPE,  CD_OP_TRANSPOSE,
                       CD_OP_SQUEEZE,  CD_OP_UNSQUEEZE, CD_OP_IDENTITY, CD_OP_CONSTANT,
                       CD_OP_SHAPE,    CD_OP_GATHER,    CD_OP_CAST};
    for (size_t i = 0; i < CD_COUNT_OF(ids); i++) {
        const cd_op_def *d = cd_op_get(ids[i]);
        assert_non_null(d->forward64);
        assert_non_null(d->backward64);
    }
}

/* Pad -------------------------------------------------------------------- */

/* Reference source index written as numpy describes reflect/edge: reflect
 * bounces back and forth without repeating the border. */
static int ref_source(const char *mode, int o, int begin, int len)
{
    int j = o - begin;
    if (j >= 0 && j < len)
        return j;
    if (strcmp(mode, "constant") == 0)
        return -1;
    if (strcmp(mode, "edge") == 0)
        return j < 0 ? 0 : len - 1;
    if (len == 1)
        return 0;
    while (j < 0 || j >= len)
        j = j < 0 ? -j : 2 * (len - 1) - j;
    return j;
}

/* Pads a [3, 4] float tensor and compares with the reference. */
static void check_pad(int opset, const char *mode, const int64_t *pads, float value)
{
    int64_t d[2] = {3, 4};
    cd_tensor *x = tu_random(2, d, 21, -1, 1);
    cd_node n;
    cd_error err;
    init_node(&n, "Pad", opset, opset < 11 ? 1 : 3);
    cd_node_add_string(&n, "mode", mode, &err);
    if (opset < 11) {
        cd_node_add_ints(&n, "pads", pads, 4, &err);
        cd_node_add_float(&n, "value", value, &err);
    }
    bind_or_fail(&n);
    int64_t four = 4;
    cd_tensor *p = tu_tensor_i64(1, &four, pads);
    cd_tensor *cv = tu_tensor_f32(0, NULL, &value);
    cd_tensor *in[3] = {x, p, cv};
    cd_tensor *y = run1(&n, in);
    int64_t oh = 3 + pads[0] + pads[2], ow = 4 + pads[1] + pads[3];
    expect_dims(y, 2, (const int64_t[]){oh, ow});
    for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++) {
            int si = ref_source(mode, i, (int)pads[0], 3), sj = ref_source(mode, j, (int)pads[1], 4);
            float want = si < 0 || sj < 0 ? value : cd_cf32(x)[si * 4 + sj];
            if (cd_cf32(y)[i * ow + j] != want)
                fail_msg("pad %s opset %d at (%d,%d): got %g want %g", mode, opset, i, j,
                         cd_cf32(y)[i * ow + j], want);
        }
    cd_tensor_free(y);
    gradcheck_ok(&n, in, (const bool[]){true, false, false});
    cd_node_clear(&n);
    cd_tensor_free(p);
    cd_tensor_free(cv);
    cd_tensor_free(x);
}

static void test_pad_modes(void **state)
{
    (void)state;
    static const char *const modes[3] = {"constant", "reflect", "edge"};
    const int64_t pads[][4] = {{1, 2, 0, 3}, {2, 5, 4, 7}, {-1, 1, 0, -2}, {0, 0, 0, 0}};
    for (int m = 0; m < 3; m++)
        for (size_t k = 0; k < sizeof pads / sizeof pads[0]; k++) {
            check_pad(13, modes[m], pads[k], 1.5f);
            check_pad(2, modes[m], pads[k], -0.5f);
        }
}

static void test_pad_conventions(void **state)
{
    (void)state;
    cd_node n;
    cd_error err;
    /* opset 18 axes: pad only the last axis; int64 data with constant_value */
    init_node(&n, "Pad", 18, 4);
    bind_or_fail(&n);
    int64_t d[2] = {2, 2}, two = 2, one = 1;
    cd_tensor *x = tu_tensor_i64(2, d, (const int64_t[]){1, 2, 3, 4});
    cd_tensor *p = tu_tensor_i64(1, &two, (const int64_t[]){1, 0});
    cd_tensor *cv = tu_tensor_i64(0, NULL, (const int64_t[]){9});
    cd_tensor *axes = tu_tensor_i64(1, &one, (const int64_t[]){-1});
    cd_tensor *in[4] = {x, p, cv, axes};
    cd_tensor *y = run1(&n, in);
    expect_dims(y, 2, (const int64_t[]){2, 3});
    const int64_t want[6] = {9, 1, 2, 9, 3, 4};
    assert_memory_equal(y->data, want, sizeof want);
    cd_tensor_free(y);
    /* pads unknown at plan time */
    assert_int_equal(run_status(&n, in, false, &err), CD_ERR_UNSUPPORTED);
    /* cropping past zero */
    int64_t *pp = p->data;
    pp[0] = -2;
    pp[1] = -1;
    assert_int_equal(run_status(&n, in, true, &err), CD_ERR_SHAPE);
    cd_node_clear(&n);
    init_node(&n, "Pad", 13, 2);
    cd_node_add_string(&n, "mode", "wrap", &err);
    bind_or_fail(&n);
    in[2] = NULL;
    assert_int_equal(run_status(&n, in, true, &err), CD_ERR_UNSUPPORTED);
    cd_node_clear(&n);
    cd_tensor_free(x);
    cd_tensor_free(p);
    cd_tensor_free(cv);
    cd_tensor_free(axes);
}

/* Rank 3, opset 18 axes, reflect with a crop (float64 kernels checked inside
 * the gradcheck); integer data keeps its type in float64 mode, so forward64
 * must give the float32 forward's bytes. */
static void test_pad_rank3_and_float64(void **state)
{
    (void)state;
    int64_t d[3] = {3, 2, 4}, two = 2, four = 4;
    cd_tensor *x = tu_random(3, d, 23, -1, 1);
    cd_tensor *p = tu_tensor_i64(1, &four, (const int64_t[]){1, 2, 2, -1});
    cd_tensor *axes = tu_tensor_i64(1, &two, (const int64_t[]){0, -1});
    cd_tensor *in[4] = {x, p, NULL, axes};
    cd_node n;
    cd_error err;
    init_node(&n, "Pad", 18, 4);
    cd_node_add_string(&n, "mode", "reflect", &err);
    bind_or_fail(&n);
    cd_tensor *y = run1(&n, in);
    expect_dims(y, 3, (const int64_t[]){6, 2, 5});
    cd_tensor_free(y);
    gradcheck_ok(&n, in, (const bool[]){true, false, false, false});
    cd_node_clear(&n);
    cd_tensor_free(x);

    init_node(&n, "Pad", 18, 4);
    bind_or_fail(&n);
    int64_t vals[24];
    for (int i = 0; i < 24; i++)
        vals[i] = i - 7;
    x = tu_tensor_i64(3, d, vals);
    cd_tensor *cv = tu_tensor_i64(0, NULL, (const int64_t[]){-99});
    cd_tensor *in2[4] = {x, p, cv, axes};
    y = run1(&n, in2);
    cd_tensor *y64 = NULL;
    assert_int_equal(cd_tensor_create(CD_INT64, y->ndim, y->dims, &y64, NULL), CD_OK);
    memset(y64->data, 0x5A, cd_tensor_nbytes(y64));
    cd_ctx ctx = {.err = &err, .threads = 1};
    assert_int_equal(cd_opdef_PAD.forward64(&n, in2, &y64, &ctx), CD_OK);
    expect_same_payload(y, y64);
    free(ctx.scratch);
    cd_tensor_free(y);
    cd_tensor_free(y64);
    cd_tensor_free(cv);
    cd_node_clear(&n);
    cd_tensor_free(x);
    cd_tensor_free(p);
    cd_tensor_free(axes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_flatten),
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_squeeze_unsqueeze),
        cmocka_unit_test(test_identity_constant),
        cmocka_unit_test(test_shape),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_cast),
        cmocka_unit_test(test_cast_float64_mode),
        cmocka_unit_test(test_float64_kernels),
        cmocka_unit_test(test_pad_modes),
        cmocka_unit_test(test_pad_conventions),
        cmocka_unit_test(test_pad_rank3_and_float64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
