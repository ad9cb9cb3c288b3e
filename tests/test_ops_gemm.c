/* Gemm and MatMul against naive triple loops written here (double
 * accumulation), including every transpose/bias form and NumPy matmul
 * promotion/broadcasting; backward against finite differences. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Gemm ---------------------------------------------------------------------- */

typedef struct gemm_case {
    int ta, tb;
    float alpha, beta;
    bool set_alpha, set_beta;
    int c_nd;           /* -1: no C */
    int64_t c_dims[2];
} gemm_case;

static void check_gemm(const gemm_case *gc, int opset)
{
    const int M = 3, N = 4, K = 5;
    cd_node n;
    cd_error err;
    int nin = gc->c_nd >= 0 ? 3 : 2;
    tu_node_make(&n, "Gemm", opset, nin, 1);
    if (gc->ta)
        assert_int_equal(cd_node_add_int(&n, "transA", 1, &err), CD_OK);
    if (gc->tb)
        assert_int_equal(cd_node_add_int(&n, "transB", 1, &err), CD_OK);
    if (gc->set_alpha)
        assert_int_equal(cd_node_add_float(&n, "alpha", gc->alpha, &err), CD_OK);
    if (gc->set_beta)
        assert_int_equal(cd_node_add_float(&n, "beta", gc->beta, &err), CD_OK);
    tu_node_bind(&n);
    int64_t da[2] = {gc->ta ? K : M, gc->ta ? M : K}, db[2] = {gc->tb ? N : K, gc->tb ? K : N};
    cd_tensor *in[3] = {tu_random(2, da, 71, -1, 1), tu_random(2, db, 72, -1, 1), NULL};
    if (gc->c_nd >= 0)
        in[2] = tu_random(gc->c_nd, gc->c_dims, 73, -1, 1);
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    assert_int_equal(out[0]->ndim, 2);
    assert_int_equal(out[0]->dims[0], M);
    assert_int_equal(out[0]->dims[1], N);
    const float *a = in[0]->data, *b = in[1]->data, *y = out[0]->data;
    double alpha = gc->set_alpha ? gc->alpha : 1.0, beta = gc->set_beta ? gc->beta : 1.0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                double av = gc->ta ? a[k * M + i] : a[i * K + k];
                double bv = gc->tb ? b[j * K + k] : b[k * N + j];
                s += av * bv;
            }
            double want = alpha * s;
            if (in[2]) {
                const float *c = in[2]->data;
                int64_t cm = gc->c_nd == 2 ? gc->c_dims[0] : 1;
                int64_t cn = gc->c_nd >= 1 ? gc->c_dims[gc->c_nd - 1] : 1;
                want += beta * c[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)];
            }
            if (fabs(y[i * N + j] - want) > 1e-5)
                fail_msg("Gemm ta=%d tb=%d c_nd=%d: y[%d,%d] = %g, expected %g", gc->ta, gc->tb,
                         gc->c_nd, i, j, y[i * N + j], want);
        }
    /* With beta = 0, C's gradient is all zeros, where gradcheck64's relative
     * test is 0/0; the forward above covers that C is ignored. */
    bool check[3] = {true, true, beta != 0};
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    for (int i = 0; i < 3; i++)
        cd_tensor_free(in[i]);
    cd_node_clear(&n);
}

static void test_gemm_forms(void **state)
{
    (void)state;
    const gemm_case cases[] = {
        {0, 0, 1, 1, false, false, -1, {0, 0}},          /* no bias */
        {0, 0, 1, 1, false, false, 2, {3, 4}},           /* matrix bias */
        {1, 0, 0.5f, 2, true, true, 1, {4}},             /* vector bias, transA */
        {0, 1, 1, 1, false, false, 0, {0, 0}},           /* scalar bias, transB */
        {1, 1, 0.25f, -0.5f, true, true, 2, {3, 1}},     /* column bias, both */
        {0, 0, 1, 1, false, false, 2, {1, 4}},           /* row bias */
        {0, 0, 1, 1, false, false, 1, {1}},              /* single-element vector */
        {1, 1, 2, 0, true, true, 2, {3, 4}},             /* beta = 0 ignores C */
    };
    for (size_t k = 0; k < CD_COUNT_OF(cases); k++) {
        check_gemm(&cases[k], 13);
        if (cases[k].c_nd >= 0)
            check_gemm(&cases[k], 6); /* old opsets: C required, same math */
    }
}

static void test_gemm_shape_error(void **state)
{
    (void)state;
    cd_node n;
    cd_error err;
    tu_node_make(&n, "Gemm", 13, 3, 1);
    tu_node_bind(&n);
    int64_t da[] = {3, 5}, db[] = {5, 4}, dc[] = {2, 4};
    cd_tensor *in[3] = {tu_random(2, da, 1, 0, 1), tu_random(2, db, 2, 0, 1),
                        tu_random(2, dc, 3, 0, 1)};
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_ERR_SHAPE);
    assert_non_null(strstr(err.message, "Gemm"));
    for (int i = 0; i < 3; i++)
        cd_tensor_free(in[i]);
    cd_node_clear(&n);
}

/* MatMul ------------------------------------------------------------------- */

/* NumPy semantics, written out: promote 1-D operands, broadcast batch dims,
 * multiply, drop promoted dims. */
static void ref_matmul(const cd_tensor *a, const cd_tensor *b, const cd_tensor *y)
{
    int an = a->ndim, bn = b->ndim;
    int64_t M = an == 1 ? 1 : a->dims[an - 2], K = a->dims[an - 1];
    int64_t N = bn == 1 ? 1 : b->dims[bn - 1];
    int abn = an > 2 ? an - 2 : 0, bbn = bn > 2 ? bn - 2 : 0;
    int nb = abn > bbn ? abn : bbn;
    int64_t bd[8];
    size_t batches = 1;
    for (int d = 0; d < nb; d++) {
        int ka = d - (nb - abn), kb = d - (nb - bbn);
        int64_t la = ka >= 0 ? a->dims[ka] : 1, lb = kb >= 0 ? b->dims[kb] : 1;
        bd[d] = la > lb ? la : lb;
        batches *= (size_t)bd[d];
    }
    const float *A = a->data, *B = b->data, *Y = y->data;
    for (size_t t = 0; t < batches; t++) {
        size_t rem = t, oa = 0, ob = 0, sa = 1, sb = 1;
        for (int d = nb - 1; d >= 0; d--) {
            size_t i = rem % (size_t)bd[d];
            rem /= (size_t)bd[d];
            int ka = d - (nb - abn), kb = d - (nb - bbn);
            int64_t la = ka >= 0 ? a->dims[ka] : 1, lb = kb >= 0 ? b->dims[kb] : 1;
            oa += (la == 1 ? 0 : i) * sa;
            ob += (lb == 1 ? 0 : i) * sb;
            sa *= (size_t)la;
            sb *= (size_t)lb;
        }
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += (double)A[oa * M * K + i * K + k] * B[ob * K * N + k * N + j];
                double got = Y[t * M * N + i * N + j];
                if (fabs(got - s) > 1e-5)
                    fail_msg("MatMul batch %zu (%lld,%lld): %g vs %g", t, (long long)i,
                             (long long)j, got, s);
            }
    }
}

static void check_matmul(int na, const int64_t *da, int nb, const int64_t *db, int ny,
                         const int64_t *dy)
{
    cd_node n;
    cd_error err;
    tu_node_make(&n, "MatMul", 13, 2, 1);
    tu_node_bind(&n);
    cd_tensor *in[2] = {tu_random(na, da, 81, -1, 1), tu_random(nb, db, 82, -1, 1)};
    cd_tensor *out[1];
    if (tu_run_node(&n, in, out, false, &err) != CD_OK)
        fail_msg("MatMul failed: %s", err.message);
    assert_int_equal(out[0]->ndim, ny);
    for (int d = 0; d < ny; d++)
        assert_int_equal(out[0]->dims[d], dy[d]);
    ref_matmul(in[0], in[1], out[0]);
    bool check[2] = {true, true};
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_tensor_free(in[0]);
    cd_tensor_free(in[1]);
    cd_node_clear(&n);
}

static void test_matmul_shapes(void **state)
{
    (void)state;
    int64_t a1[] = {3, 4}, b1[] = {4, 5}, y1[] = {3, 5};
    check_matmul(2, a1, 2, b1, 2, y1);
    int64_t a2[] = {4}, y2[] = {5};
    check_matmul(1, a2, 2, b1, 1, y2); /* 1-D A */
    int64_t b3[] = {4}, y3[] = {3};
    check_matmul(2, a1, 1, b3, 1, y3); /* 1-D B */
    check_matmul(1, a2, 1, b3, 0, NULL); /* dot product: scalar */
    int64_t a4[] = {2, 3, 4}, y4[] = {2, 3, 5};
    check_matmul(3, a4, 2, b1, 3, y4); /* folded into one GEMM */
    int64_t a5[] = {2, 1, 3, 4}, b5[] = {5, 4, 2}, y5[] = {2, 5, 3, 2};
    check_matmul(4, a5, 3, b5, 4, y5); /* batch broadcast both ways */
    int64_t b6[] = {2, 4, 5}, y6[] = {2, 3, 5};
    check_matmul(2, a1, 3, b6, 3, y6); /* A shared across B's batches */
    int64_t a7[] = {2, 3, 4}, b7[] = {2, 4, 5}, y7[] = {2, 3, 5};
    check_matmul(3, a7, 3, b7, 3, y7);
    int64_t b8[] = {2, 4, 1}, y8[] = {2, 1};
    int64_t a8[] = {4};
    check_matmul(1, a8, 3, b8, 2, y8); /* 1-D A against a batch */
}

static void test_matmul_shape_error(void **state)
{
    (void)state;
    cd_node n;
    cd_error err;
    tu_node_make(&n, "MatMul", 13, 2, 1);
    tu_node_bind(&n);
    int64_t da[] = {2, 3, 4}, db[] = {3, 4, 5};
    cd_tensor *in[2] = {tu_random(3, da, 1, 0, 1), tu_random(3, db, 2, 0, 1)};
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_ERR_SHAPE);
    cd_tensor_free(in[0]);
    cd_tensor_free(in[1]);
    cd_node_clear(&n);
}

static void test_definitions_registered(void **state)
{
    (void)state;
    assert_ptr_equal(cd_op_get(CD_OP_GEMM), &cd_opdef_GEMM);
    assert_ptr_equal(cd_op_get(CD_OP_MATMUL), &cd_opdef_MATMUL);
    assert_non_null(cd_opdef_GEMM.backward);
    assert_non_null(cd_opdef_MATMUL.backward);
    assert_non_null(cd_opdef_GEMM.forward64);
    assert_non_null(cd_opdef_GEMM.backward64);
    assert_non_null(cd_opdef_MATMUL.forward64);
    assert_non_null(cd_opdef_MATMUL.backward64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_definitions_registered),
        cmocka_unit_test(test_gemm_forms),
        cmocka_unit_test(test_gemm_shape_error),
        cmocka_unit_test(test_matmul_shapes),
        cmocka_unit_test(test_matmul_shape_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
