/* Add/Sub/Mul/Div/Sum/Sqrt/Exp: forward against naive per-element loops with
 * explicit broadcast indexing written here, and backward against finite
 * differences. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Flat offset in x (shape right-aligned to out) of output element `flat`. */
static size_t bcast_offset(int out_nd, const int64_t *out_dims, size_t flat, int x_nd,
                           const int64_t *x_dims)
{
    size_t off = 0, xstride = 1;
    for (int d = out_nd - 1; d >= 0; d--) {
        size_t i = flat % (size_t)out_dims[d];
        flat /= (size_t)out_dims[d];
        int k = d - (out_nd - x_nd);
        if (k < 0)
            continue;
        size_t len = (size_t)x_dims[k];
        if (len != 1)
            off += i * xstride;
        xstride *= len;
    }
    return off;
}

static double ref_binary(const char *op, double a, double b)
{
    if (!strcmp(op, "Add")) return a + b;
    if (!strcmp(op, "Sub")) return a - b;
    if (!strcmp(op, "Mul")) return a * b;
    return a / b;
}

static void check_binary_f32(const char *op, int na, const int64_t *da, int nb,
                             const int64_t *db, int nexp, const int64_t *dexp)
{
    cd_node n;
    tu_node_make(&n, op, 14, 2, 1);
    tu_node_bind(&n);
    cd_tensor *in[2] = {tu_random(na, da, 11, 0.5f, 2.0f), tu_random(nb, db, 12, 0.5f, 2.0f)};
    cd_tensor *out[1];
    cd_error err;
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    assert_int_equal(out[0]->ndim, nexp);
    for (int d = 0; d < nexp; d++)
        assert_int_equal(out[0]->dims[d], dexp[d]);
    const float *a = in[0]->data, *b = in[1]->data, *y = out[0]->data;
    size_t cnt = cd_tensor_numel(out[0]);
    for (size_t i = 0; i < cnt; i++) {
        double want = ref_binary(op, a[bcast_offset(nexp, dexp, i, na, da)],
                                 b[bcast_offset(nexp, dexp, i, nb, db)]);
        assert_true(fabs(y[i] - want) <= 1e-6 * (1 + fabs(want)));
    }
    /* Gradients of both operands, including the reduction over broadcast axes. */
    bool check[2] = {true, true};
    double e = tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-2);
    assert_true(e <= 1.0);
    cd_tensor_free(out[0]);
    cd_tensor_free(in[0]);
    cd_tensor_free(in[1]);
    cd_node_clear(&n);
}

static void test_binary_broadcast(void **state)
{
    (void)state;
    static const char *ops[] = {"Add", "Sub", "Mul", "Div"};
    for (int k = 0; k < 4; k++) {
        int64_t a1[] = {2, 3, 4}, b1[] = {3, 1}, e1[] = {2, 3, 4};
        check_binary_f32(ops[k], 3, a1, 2, b1, 3, e1);
        int64_t a2[] = {1, 3, 1, 5}, b2[] = {2, 1, 4, 1}, e2[] = {2, 3, 4, 5};
        check_binary_f32(ops[k], 4, a2, 4, b2, 4, e2);
        int64_t a3[] = {2, 3}, e3[] = {2, 3};
        check_binary_f32(ops[k], 2, a3, 0, NULL, 2, e3); /* tensor op scalar */
        check_binary_f32(ops[k], 0, NULL, 2, a3, 2, e3); /* scalar op tensor */
        int64_t a4[] = {4, 5}, e4[] = {4, 5};
        check_binary_f32(ops[k], 2, a4, 2, a4, 2, e4); /* same shape */
        int64_t a5[] = {2, 1, 3}, b5[] = {1, 4, 1}, e5[] = {2, 4, 3};
        check_binary_f32(ops[k], 3, a5, 3, b5, 3, e5);
        int64_t a6[] = {3, 1}, b6[] = {1}, e6[] = {3, 1};
        check_binary_f32(ops[k], 2, a6, 1, b6, 2, e6);
        int64_t a7[] = {5}, b7[] = {2, 3, 1}, e7[] = {2, 3, 5};
        check_binary_f32(ops[k], 1, a7, 3, b7, 3, e7);
    }
}

static void test_binary_shape_errors(void **state)
{
    (void)state;
    cd_node n;
    tu_node_make(&n, "Add", 14, 2, 1);
    tu_node_bind(&n);
    int64_t da[] = {2, 3}, db[] = {4};
    cd_tensor *in[2] = {tu_random(2, da, 1, 0, 1), tu_random(1, db, 2, 0, 1)};
    cd_tensor *out[1];
    cd_error err;
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_ERR_SHAPE);
    assert_non_null(strstr(err.message, "Add"));
    cd_tensor_free(in[1]);
    int64_t vals[] = {1};
    in[1] = tu_tensor_i64(1, (int64_t[]){1}, vals);
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_ERR_SHAPE); /* mixed types */
    cd_tensor_free(in[0]);
    cd_tensor_free(in[1]);
    cd_node_clear(&n);
}

static void test_int64_arith(void **state)
{
    (void)state;
    static const char *ops[] = {"Add", "Sub", "Mul", "Div"};
    int64_t av[] = {7, -7, 12, 100, 5, -9}, bv[] = {2, -3, 5};
    int64_t da[] = {2, 3}, db[] = {3};
    for (int k = 0; k < 4; k++) {
        cd_node n;
        tu_node_make(&n, ops[k], 13, 2, 1);
        tu_node_bind(&n);
        cd_tensor *in[2] = {tu_tensor_i64(2, da, av), tu_tensor_i64(1, db, bv)};
        cd_tensor *out[1];
        cd_error err;
        assert_int_equal(tu_run_node(&n, in, out, true, &err), CD_OK);
        assert_int_equal(out[0]->dtype, CD_INT64);
        const int64_t *y = out[0]->data;
        for (int i = 0; i < 6; i++) {
            int64_t a = av[i], b = bv[i % 3], want;
            switch (k) {
            case 0: want = a + b; break;
            case 1: want = a - b; break;
            case 2: want = a * b; break;
            default: want = a / b; break; /* C truncation, as ONNX Runtime */
            }
            assert_int_equal(y[i], want);
        }
        cd_tensor_free(out[0]);
        cd_tensor_free(in[0]);
        cd_tensor_free(in[1]);
        cd_node_clear(&n);
    }
}

static void test_int_division_by_zero(void **state)
{
    (void)state;
    cd_node n;
    tu_node_make(&n, "Div", 13, 2, 1);
    tu_node_bind(&n);
    int64_t av[] = {4, 5}, bv[] = {2, 0}, d[] = {2};
    cd_tensor *in[2] = {tu_tensor_i64(1, d, av), tu_tensor_i64(1, d, bv)};
    cd_tensor *out[1];
    cd_error err;
    assert_int_equal(tu_run_node(&n, in, out, true, &err), CD_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "division by zero"));
    cd_tensor_free(in[0]);
    cd_tensor_free(in[1]);
    cd_node_clear(&n);
}

/* Opset 6 broadcasting: B aligned at `axis` inside A. */
static void test_legacy_axis_broadcast(void **state)
{
    (void)state;
    cd_node n;
    cd_error err;
    tu_node_make(&n, "Add", 6, 2, 1);
    assert_int_equal(cd_node_add_int(&n, "broadcast", 1, &err), CD_OK);
    assert_int_equal(cd_node_add_int(&n, "axis", 1, &err), CD_OK);
    tu_node_bind(&n);
    int64_t da[] = {2, 3, 4, 5}, db[] = {3, 4};
    cd_tensor *in[2] = {tu_random(4, da, 3, -1, 1), tu_random(2, db, 4, -1, 1)};
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    const float *a = in[0]->data, *b = in[1]->data, *y = out[0]->data;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 5; l++) {
                    int idx = ((i * 3 + j) * 4 + k) * 5 + l;
                    assert_float_equal(y[idx], a[idx] + b[j * 4 + k], 1e-6);
                }
    bool check[2] = {true, true};
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_node_clear(&n);
    /* broadcast=0 (the opset 6 default) requires equal shapes. */
    tu_node_make(&n, "Mul", 6, 2, 1);
    tu_node_bind(&n);
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_ERR_SHAPE);
    cd_node_clear(&n);
    cd_tensor_free(in[0]);
    cd_tensor_free(in[1]);
}

static void test_sum_variadic(void **state)
{
    (void)state;
    cd_node n;
    tu_node_make(&n, "Sum", 13, 3, 1);
    tu_node_bind(&n);
    int64_t d0[] = {2, 3}, d1[] = {3}, d2[] = {2, 1};
    cd_tensor *in[3] = {tu_random(2, d0, 5, -1, 1), tu_random(1, d1, 6, -1, 1),
                        tu_random(2, d2, 7, -1, 1)};
    cd_tensor *out[1];
    cd_error err;
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    const float *a = in[0]->data, *b = in[1]->data, *c = in[2]->data, *y = out[0]->data;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            assert_float_equal(y[i * 3 + j], a[i * 3 + j] + b[j] + c[i], 1e-6);
    bool check[3] = {true, true, true};
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    for (int i = 0; i < 3; i++)
        cd_tensor_free(in[i]);
    cd_node_clear(&n);

    tu_node_make(&n, "Sum", 8, 1, 1); /* a single input is a copy */
    tu_node_bind(&n);
    in[0] = tu_random(2, d0, 8, -1, 1);
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    assert_true(tu_max_abs_diff(in[0], out[0]) == 0);
    bool check1[1] = {true};
    assert_true(tu_gradcheck(&n, in, check1, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_tensor_free(in[0]);
    cd_node_clear(&n);

    /* No input has the output's shape: (2,1,4) + (3,1) -> (2,3,4). */
    tu_node_make(&n, "Sum", 13, 2, 1);
    tu_node_bind(&n);
    int64_t e0[] = {2, 1, 4}, e1[] = {3, 1};
    in[0] = tu_random(3, e0, 9, -1, 1);
    in[1] = tu_random(2, e1, 10, -1, 1);
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    assert_int_equal(cd_tensor_numel(out[0]), 24);
    a = in[0]->data;
    b = in[1]->data;
    y = out[0]->data;
    for (int i = 0; i < 24; i++)
        assert_float_equal(y[i], a[(i / 12) * 4 + i % 4] + b[(i / 4) % 3], 1e-6);
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_tensor_free(in[0]);
    cd_tensor_free(in[1]);
    cd_node_clear(&n);
}

static void check_unary(const char *op, float lo, float hi, double (*ref)(double))
{
    cd_node n;
    tu_node_make(&n, op, 13, 1, 1);
    tu_node_bind(&n);
    int64_t d[] = {3, 7};
    cd_tensor *in[1] = {tu_random(2, d, 9, lo, hi)};
    cd_tensor *out[1];
    cd_error err;
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    const float *x = in[0]->data, *y = out[0]->data;
    for (int i = 0; i < 21; i++)
        assert_true(fabs(y[i] - ref(x[i])) <= 1e-6 * (1 + fabs(ref(x[i]))));
    bool check[1] = {true};
    assert_true(tu_gradcheck(&n, in, check, 1e-3f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_tensor_free(in[0]);
    cd_node_clear(&n);
}

static void test_sqrt_exp(void **state)
{
    (void)state;
    check_unary("Sqrt", 0.5f, 4.0f, sqrt);
    check_unary("Exp", -2.0f, 2.0f, exp);
}

/* The registry must hand out these files' definitions (not the weak
 * placeholders); naming them here also makes the linker pull them from the
 * static library. */
static void test_definitions_registered(void **state)
{
    (void)state;
    const cd_op_def *defs[] = {&cd_opdef_ADD, &cd_opdef_SUB, &cd_opdef_MUL, &cd_opdef_DIV,
                               &cd_opdef_SUM, &cd_opdef_SQRT, &cd_opdef_EXP};
    const int ids[] = {CD_OP_ADD, CD_OP_SUB, CD_OP_MUL, CD_OP_DIV, CD_OP_SUM, CD_OP_SQRT,
                       CD_OP_EXP};
    for (size_t i = 0; i < CD_COUNT_OF(defs); i++) {
        assert_ptr_equal(cd_op_get(ids[i]), defs[i]);
        assert_non_null(defs[i]->forward);
        assert_non_null(defs[i]->backward);
        assert_non_null(defs[i]->forward64);
        assert_non_null(defs[i]->backward64);
        assert_true(defs[i]->min_opset <= 6);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_definitions_registered),
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_binary_shape_errors),
        cmocka_unit_test(test_int64_arith),
        cmocka_unit_test(test_int_division_by_zero),
        cmocka_unit_test(test_legacy_axis_broadcast),
        cmocka_unit_test(test_sum_variadic),
        cmocka_unit_test(test_sqrt_exp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
