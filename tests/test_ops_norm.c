/* BatchNormalization (inference form, old and new opsets) and ReduceMean
 * (attribute and input axes): forward against the formulas evaluated here
 * in double, backward against finite differences. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* BatchNormalization --------------------------------------------------------- */

/* X (2, 3, 2, 2); parameters of `params` elements (C, or C*H*W when
 * per-position). */
static void check_bn(cd_node *n, bool per_position, double eps)
{
    const int N = 2, C = 3, S = 4;
    int64_t dx[] = {N, C, 2, 2};
    int64_t dp_c[] = {C}, dp_pos[] = {C, 2, 2};
    int np = per_position ? 3 : 1;
    const int64_t *dp = per_position ? dp_pos : dp_c;
    cd_tensor *in[5] = {tu_random(4, dx, 91, -2, 2), tu_random(np, dp, 92, 0.5f, 1.5f),
                        tu_random(np, dp, 93, -1, 1), tu_random(np, dp, 94, -0.5f, 0.5f),
                        tu_random(np, dp, 95, 0.5f, 2.0f)};
    cd_tensor *out[1];
    cd_error err;
    if (tu_run_node(n, in, out, false, &err) != CD_OK)
        fail_msg("BatchNormalization failed: %s", err.message);
    const float *x = in[0]->data, *sc = in[1]->data, *b = in[2]->data, *m = in[3]->data,
                *v = in[4]->data, *y = out[0]->data;
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++)
            for (int s = 0; s < S; s++) {
                int e = (i * C + c) * S + s, p = per_position ? c * S + s : c;
                double want = sc[p] * (x[e] - m[p]) / sqrt(v[p] + eps) + b[p];
                if (fabs(y[e] - want) > 1e-5 * (1 + fabs(want)))
                    fail_msg("BN element %d: %g vs %g", e, y[e], want);
            }
    bool check[5] = {true, true, true, true, true};
    assert_true(tu_gradcheck(n, in, check, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    for (int i = 0; i < 5; i++)
        cd_tensor_free(in[i]);
}

static void test_batchnorm_forms(void **state)
{
    (void)state;
    cd_node n;
    cd_error err;
    tu_node_make(&n, "BatchNormalization", 15, 5, 1); /* default epsilon 1e-5 */
    tu_node_bind(&n);
    check_bn(&n, false, 1e-5);
    cd_node_clear(&n);

    tu_node_make(&n, "BatchNormalization", 9, 5, 1);
    assert_int_equal(cd_node_add_float(&n, "epsilon", 0.01f, &err), CD_OK);
    assert_int_equal(cd_node_add_float(&n, "momentum", 0.9f, &err), CD_OK);
    tu_node_bind(&n);
    check_bn(&n, false, (double)0.01f);
    cd_node_clear(&n);

    /* Opset 6 as PyTorch exported it: is_test=1, momentum: accepted. */
    tu_node_make(&n, "BatchNormalization", 6, 5, 1);
    assert_int_equal(cd_node_add_int(&n, "is_test", 1, &err), CD_OK);
    assert_int_equal(cd_node_add_float(&n, "momentum", 0.9f, &err), CD_OK);
    assert_int_equal(cd_node_add_int(&n, "spatial", 1, &err), CD_OK);
    tu_node_bind(&n);
    check_bn(&n, false, 1e-5);
    cd_node_clear(&n);

    /* Opset 7 spatial=0: one parameter per (channel, position). */
    tu_node_make(&n, "BatchNormalization", 7, 5, 1);
    assert_int_equal(cd_node_add_int(&n, "spatial", 0, &err), CD_OK);
    tu_node_bind(&n);
    check_bn(&n, true, 1e-5);
    cd_node_clear(&n);
}

static void test_batchnorm_refuses_training(void **state)
{
    (void)state;
    cd_node n;
    cd_error err;
    tu_node_make(&n, "BatchNormalization", 15, 5, 1);
    assert_int_equal(cd_node_add_int(&n, "training_mode", 1, &err), CD_OK);
    assert_int_equal(cd_node_bind(&n, &err), CD_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "training_mode"));
    cd_node_clear(&n);
    /* Requesting the running statistics outputs is training too. */
    tu_node_make(&n, "BatchNormalization", 9, 5, 3);
    assert_int_equal(cd_node_bind(&n, &err), CD_ERR_UNSUPPORTED);
    cd_node_clear(&n);
    /* Wrong parameter length is a shape error naming the input. */
    tu_node_make(&n, "BatchNormalization", 15, 5, 1);
    tu_node_bind(&n);
    int64_t dx[] = {2, 3, 4}, dp[] = {3}, bad[] = {4};
    cd_tensor *in[5] = {tu_random(3, dx, 1, 0, 1), tu_random(1, dp, 2, 0, 1),
                        tu_random(1, bad, 3, 0, 1), tu_random(1, dp, 4, 0, 1),
                        tu_random(1, dp, 5, 0, 1)};
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_ERR_SHAPE);
    assert_non_null(strstr(err.message, "B has 4 elements"));
    for (int i = 0; i < 5; i++)
        cd_tensor_free(in[i]);
    cd_node_clear(&n);
}

/* ReduceMean ------------------------------------------------------------------ */

/* x (2, 3, 4); `mask` bit a set = axis a reduced. */
static void check_reduce_values(const cd_tensor *x, const cd_tensor *y, unsigned mask)
{
    const float *xs = x->data, *ys = y->data;
    int64_t d[3] = {2, 3, 4};
    int64_t od[3];
    for (int a = 0; a < 3; a++)
        od[a] = (mask >> a) & 1 ? 1 : d[a];
    assert_int_equal(cd_tensor_numel(y), (size_t)(od[0] * od[1] * od[2]));
    for (int i = 0; i < od[0]; i++)
        for (int j = 0; j < od[1]; j++)
            for (int k = 0; k < od[2]; k++) {
                double s = 0;
                int cnt = 0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 3; b++)
                        for (int c = 0; c < 4; c++) {
                            if ((!(mask & 1) && a != i) || (!(mask & 2) && b != j) ||
                                (!(mask & 4) && c != k))
                                continue;
                            s += xs[(a * 3 + b) * 4 + c];
                            cnt++;
                        }
                float got = ys[(i * od[1] + j) * od[2] + k];
                assert_float_equal(got, s / cnt, 1e-6);
            }
}

static void check_reduce(cd_node *n, cd_tensor **in, unsigned mask, int want_nd,
                         const int64_t *want_dims)
{
    cd_tensor *out[1];
    cd_error err;
    if (tu_run_node(n, in, out, true, &err) != CD_OK)
        fail_msg("ReduceMean failed: %s", err.message);
    assert_int_equal(out[0]->ndim, want_nd);
    for (int d = 0; d < want_nd; d++)
        assert_int_equal(out[0]->dims[d], want_dims[d]);
    check_reduce_values(in[0], out[0], mask);
    bool check[2] = {true, false};
    assert_true(tu_gradcheck(n, in, check, 1e-2f, 1e-4, 1e-3) <= 1.0);
    cd_tensor_free(out[0]);
}

static void test_reduce_mean_attr_axes(void **state)
{
    (void)state;
    cd_error err;
    int64_t d[] = {2, 3, 4};
    cd_tensor *in[1] = {tu_random(3, d, 101, -1, 1)};
    cd_node n;

    tu_node_make(&n, "ReduceMean", 13, 1, 1); /* defaults: all axes, keepdims */
    tu_node_bind(&n);
    int64_t k1[] = {1, 1, 1};
    check_reduce(&n, in, 7, 3, k1);
    cd_node_clear(&n);

    tu_node_make(&n, "ReduceMean", 13, 1, 1);
    int64_t ax[] = {1};
    assert_int_equal(cd_node_add_ints(&n, "axes", ax, 1, &err), CD_OK);
    assert_int_equal(cd_node_add_int(&n, "keepdims", 0, &err), CD_OK);
    tu_node_bind(&n);
    int64_t k2[] = {2, 4};
    check_reduce(&n, in, 2, 2, k2);
    cd_node_clear(&n);

    tu_node_make(&n, "ReduceMean", 11, 1, 1);
    int64_t ax3[] = {-1, 0};
    assert_int_equal(cd_node_add_ints(&n, "axes", ax3, 2, &err), CD_OK);
    tu_node_bind(&n);
    int64_t k3[] = {1, 3, 1};
    check_reduce(&n, in, 5, 3, k3);
    cd_node_clear(&n);

    tu_node_make(&n, "ReduceMean", 13, 1, 1);
    int64_t bad[] = {3};
    assert_int_equal(cd_node_add_ints(&n, "axes", bad, 1, &err), CD_OK);
    tu_node_bind(&n);
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_ERR_SHAPE);
    cd_node_clear(&n);
    cd_tensor_free(in[0]);
}

static void test_reduce_mean_input_axes(void **state)
{
    (void)state;
    cd_error err;
    int64_t d[] = {2, 3, 4}, one[] = {2};
    int64_t axv[] = {2, -3};
    cd_tensor *in[2] = {tu_random(3, d, 102, -1, 1), tu_tensor_i64(1, one, axv)};
    cd_node n;

    tu_node_make(&n, "ReduceMean", 18, 2, 1);
    tu_node_bind(&n);
    int64_t k1[] = {1, 3, 1};
    check_reduce(&n, in, 5, 3, k1);
    cd_node_clear(&n);

    /* Omitted axes: all axes; with noop_with_empty_axes: identity. */
    cd_tensor *no_axes[2] = {in[0], NULL};
    tu_node_make(&n, "ReduceMean", 18, 2, 1);
    assert_int_equal(cd_node_add_int(&n, "keepdims", 0, &err), CD_OK);
    tu_node_bind(&n);
    check_reduce(&n, no_axes, 7, 0, NULL);
    cd_node_clear(&n);

    tu_node_make(&n, "ReduceMean", 18, 2, 1);
    assert_int_equal(cd_node_add_int(&n, "noop_with_empty_axes", 1, &err), CD_OK);
    tu_node_bind(&n);
    check_reduce(&n, no_axes, 0, 3, d);
    cd_node_clear(&n);

    /* Axes only known at run time cannot be planned. */
    tu_node_make(&n, "ReduceMean", 18, 2, 1);
    tu_node_bind(&n);
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_ERR_UNSUPPORTED);
    cd_node_clear(&n);
    cd_tensor_free(in[0]);
    cd_tensor_free(in[1]);
}

static void test_definitions_registered(void **state)
{
    (void)state;
    assert_ptr_equal(cd_op_get(CD_OP_BATCH_NORMALIZATION), &cd_opdef_BATCH_NORMALIZATION);
    assert_ptr_equal(cd_op_get(CD_OP_REDUCE_MEAN), &cd_opdef_REDUCE_MEAN);
    assert_non_null(cd_opdef_BATCH_NORMALIZATION.backward);
    assert_non_null(cd_opdef_REDUCE_MEAN.backward);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_definitions_registered),
        cmocka_unit_test(test_batchnorm_forms),
        cmocka_unit_test(test_batchnorm_refuses_training),
        cmocka_unit_test(test_reduce_mean_attr_axes),
        cmocka_unit_test(test_reduce_mean_input_axes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
