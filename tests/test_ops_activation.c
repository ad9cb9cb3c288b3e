/* Activations and Dropout: forward against closed forms / naive loops
 * written here (in double), opset-dependent Softmax semantics, and backward
 * against finite differences with inputs kept away from kinks. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Values in [-r, r] at least `gap` away from every kink in `kinks`. */
static cd_tensor *random_away_within(int ndim, const int64_t *dims, uint64_t seed, float r,
                                     const float *kinks, int n_kinks, float gap)
{
    cd_tensor *t = tu_random(ndim, dims, seed, -r, r);
    float *p = t->data;
    size_t cnt = cd_tensor_numel(t);
    for (size_t i = 0; i < cnt; i++)
        for (int k = 0; k < n_kinks; k++)
            if (fabsf(p[i] - kinks[k]) < gap)
                p[i] = kinks[k] + (p[i] >= kinks[k] ? gap : -gap);
    return t;
}

static cd_tensor *random_away_from(int ndim, const int64_t *dims, uint64_t seed,
                                   const float *kinks, int n_kinks, float gap)
{
    return random_away_within(ndim, dims, seed, 2.0f, kinks, n_kinks, gap);
}

static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

typedef double (*ref_fn)(double x, double alpha, double beta);
static double r_relu(double x, double a, double b) { (void)a; (void)b; return x > 0 ? x : 0; }
static double r_leaky(double x, double a, double b) { (void)b; return x > 0 ? x : a * x; }
static double r_elu(double x, double a, double b) { (void)b; return x > 0 ? x : a * (exp(x) - 1); }
static double r_sigmoid(double x, double a, double b) { (void)a; (void)b; return ref_sigmoid(x); }
static double r_tanh(double x, double a, double b) { (void)a; (void)b; return tanh(x); }
static double r_hsig(double x, double a, double b) { return fmax(0, fmin(1, a * x + b)); }
static double r_hswish(double x, double a, double b)
{ (void)a; (void)b; return x * fmax(0, fmin(1, x / 6 + 0.5)); }

/* alpha/beta < 0 means "attribute not set": the spec default is expected. */
static void check_pointwise(const char *op, int opset, float alpha, float beta, double def_a,
                            double def_b, ref_fn ref, const float *kinks, int n_kinks)
{
    cd_node n;
    cd_error err;
    tu_node_make(&n, op, opset, 1, 1);
    if (alpha >= 0)
        assert_int_equal(cd_node_add_float(&n, "alpha", alpha, &err), CD_OK);
    if (beta >= 0)
        assert_int_equal(cd_node_add_float(&n, "beta", beta, &err), CD_OK);
    tu_node_bind(&n);
    double a = alpha >= 0 ? alpha : def_a, b = beta >= 0 ? beta : def_b;
    int64_t d[] = {2, 3, 5};
    cd_tensor *in[1] = {random_away_from(3, d, 21, kinks, n_kinks, 0.05f)};
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    const float *x = in[0]->data, *y = out[0]->data;
    for (int i = 0; i < 30; i++) {
        double want = ref(x[i], a, b);
        if (fabs(y[i] - want) > 1e-6 * (1 + fabs(want)))
            fail_msg("%s(%g) = %g, expected %g", op, x[i], y[i], want);
    }
    bool check[1] = {true};
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_tensor_free(in[0]);
    cd_node_clear(&n);
}

static void test_pointwise(void **state)
{
    (void)state;
    const float zero[] = {0.0f};
    check_pointwise("Relu", 14, -1, -1, 0, 0, r_relu, zero, 1);
    check_pointwise("Relu", 6, -1, -1, 0, 0, r_relu, zero, 1);
    check_pointwise("LeakyRelu", 16, -1, -1, 0.01, 0, r_leaky, zero, 1);
    check_pointwise("LeakyRelu", 6, 0.2f, -1, 0, 0, r_leaky, zero, 1);
    check_pointwise("Elu", 6, -1, -1, 1.0, 0, r_elu, zero, 1);
    check_pointwise("Elu", 6, 0.7f, -1, 0, 0, r_elu, zero, 1);
    check_pointwise("Sigmoid", 13, -1, -1, 0, 0, r_sigmoid, NULL, 0);
    check_pointwise("Tanh", 13, -1, -1, 0, 0, r_tanh, NULL, 0);
    const float hs_default[] = {-2.5f, 2.5f};
    check_pointwise("HardSigmoid", 6, -1, -1, 0.2, 0.5, r_hsig, hs_default, 2);
    const float hs_custom[] = {-1.2f, 0.8f}; /* where 0.5x + 0.6 hits 0 and 1 */
    check_pointwise("HardSigmoid", 6, 0.5f, 0.6f, 0, 0, r_hsig, hs_custom, 2);
    const float hswish[] = {-3.0f, 3.0f};
    check_pointwise("HardSwish", 14, -1, -1, 0, 0, r_hswish, hswish, 2);
}

/* Gradients over [-6, 6]: the saturated ends of HardSigmoid and HardSwish
 * and the flat tails of Sigmoid, Tanh and Elu, for both element types. */
static void gradcheck_wide(const char *op, int opset, float alpha, const float *kinks,
                           int n_kinks)
{
    cd_node n;
    cd_error err;
    tu_node_make(&n, op, opset, 1, 1);
    if (alpha >= 0)
        assert_int_equal(cd_node_add_float(&n, "alpha", alpha, &err), CD_OK);
    tu_node_bind(&n);
    int64_t d[] = {4, 10};
    cd_tensor *in[1] = {random_away_within(2, d, 23, 6.0f, kinks, n_kinks, 0.05f)};
    bool check[1] = {true};
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(in[0]);
    cd_node_clear(&n);
}

static void test_pointwise_wide(void **state)
{
    (void)state;
    const float zero[] = {0.0f}, hsig[] = {-2.5f, 2.5f}, hswish[] = {-3.0f, 3.0f};
    gradcheck_wide("HardSigmoid", 6, -1, hsig, 2);
    gradcheck_wide("HardSwish", 14, -1, hswish, 2);
    gradcheck_wide("Sigmoid", 13, -1, NULL, 0);
    gradcheck_wide("Tanh", 13, -1, NULL, 0);
    gradcheck_wide("Elu", 6, 0.7f, zero, 1);
    gradcheck_wide("LeakyRelu", 16, 0.3f, zero, 1);
    gradcheck_wide("Relu", 14, -1, zero, 1);
}

/* Extreme inputs: the sigmoid must neither overflow nor lose its tails. */
static void test_sigmoid_extremes(void **state)
{
    (void)state;
    cd_node n;
    cd_error err;
    tu_node_make(&n, "Sigmoid", 13, 1, 1);
    tu_node_bind(&n);
    float v[] = {-100.0f, -20.0f, 0.0f, 20.0f, 100.0f};
    int64_t d[] = {5};
    cd_tensor *in[1] = {tu_tensor_f32(1, d, v)};
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    const float *y = out[0]->data;
    for (int i = 0; i < 5; i++)
        assert_true(fabs(y[i] - ref_sigmoid(v[i])) <= 1e-6 * ref_sigmoid(v[i]) + 1e-30);
    cd_tensor_free(out[0]);
    cd_tensor_free(in[0]);
    cd_node_clear(&n);
}

static void test_prelu(void **state)
{
    (void)state;
    cd_error err;
    const float zero[] = {0.0f};
    /* Opset 16: slope (3,1,1) broadcasts unidirectionally to (2,3,2,2). */
    cd_node n;
    tu_node_make(&n, "PRelu", 16, 2, 1);
    tu_node_bind(&n);
    int64_t dx[] = {2, 3, 2, 2}, ds[] = {3, 1, 1};
    cd_tensor *in[2] = {random_away_from(4, dx, 31, zero, 1, 0.05f), tu_random(3, ds, 32, 0.1f, 0.5f)};
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    const float *x = in[0]->data, *s = in[1]->data, *y = out[0]->data;
    for (int i = 0; i < 24; i++) {
        int c = (i / 4) % 3;
        assert_float_equal(y[i], x[i] > 0 ? x[i] : s[c] * x[i], 1e-6);
    }
    bool check[2] = {true, true};
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_tensor_free(in[1]);
    cd_node_clear(&n);

    /* Opset 6: a 1-D slope of length C applies per channel (axis 1). */
    tu_node_make(&n, "PRelu", 6, 2, 1);
    tu_node_bind(&n);
    int64_t dc[] = {3};
    in[1] = tu_random(1, dc, 33, 0.1f, 0.5f);
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    s = in[1]->data;
    y = out[0]->data;
    for (int i = 0; i < 24; i++) {
        int c = (i / 4) % 3;
        assert_float_equal(y[i], x[i] > 0 ? x[i] : s[c] * x[i], 1e-6);
    }
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_node_clear(&n);

    /* Opset 16: the same (3) slope against a trailing 2 does not broadcast. */
    tu_node_make(&n, "PRelu", 16, 2, 1);
    tu_node_bind(&n);
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_ERR_SHAPE);
    cd_node_clear(&n);
    cd_tensor_free(in[0]);
    cd_tensor_free(in[1]);
}

static void check_clip_values(const cd_tensor *x, const cd_tensor *y, double lo, double hi)
{
    const float *xs = x->data, *ys = y->data;
    for (size_t i = 0; i < cd_tensor_numel(x); i++)
        assert_float_equal(ys[i], fmin(fmax(xs[i], lo), hi), 0);
}

static void test_clip(void **state)
{
    (void)state;
    cd_error err;
    cd_node n;
    int64_t d[] = {4, 5};
    const float kinks[] = {-0.5f, 0.8f};
    cd_tensor *x = random_away_from(2, d, 41, kinks, 2, 0.05f);
    cd_tensor *out[1];

    /* Opset 6: bounds are attributes. */
    tu_node_make(&n, "Clip", 6, 1, 1);
    assert_int_equal(cd_node_add_float(&n, "min", -0.5f, &err), CD_OK);
    assert_int_equal(cd_node_add_float(&n, "max", 0.8f, &err), CD_OK);
    tu_node_bind(&n);
    cd_tensor *in1[1] = {x};
    assert_int_equal(tu_run_node(&n, in1, out, false, &err), CD_OK);
    check_clip_values(x, out[0], -0.5, 0.8);
    bool check1[1] = {true};
    assert_true(tu_gradcheck(&n, in1, check1, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_node_clear(&n);

    /* Opset 13: bounds are inputs; gradients flow to x, min and max. */
    tu_node_make(&n, "Clip", 13, 3, 1);
    tu_node_bind(&n);
    float lo = -0.5f, hi = 0.8f;
    cd_tensor *in3[3] = {x, tu_tensor_f32(0, NULL, &lo), tu_tensor_f32(0, NULL, &hi)};
    assert_int_equal(tu_run_node(&n, in3, out, false, &err), CD_OK);
    check_clip_values(x, out[0], -0.5, 0.8);
    bool check3[3] = {true, true, true};
    assert_true(tu_gradcheck(&n, in3, check3, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    /* Omitted min: only the upper bound applies. */
    cd_tensor *only_max[3] = {x, NULL, in3[2]};
    assert_int_equal(tu_run_node(&n, only_max, out, false, &err), CD_OK);
    check_clip_values(x, out[0], -INFINITY, 0.8);
    assert_true(tu_gradcheck(&n, only_max, check3, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    /* min > max: everything becomes max (spec), and so does the gradient. */
    cd_tensor *swapped[3] = {x, in3[2], in3[1]};
    assert_int_equal(tu_run_node(&n, swapped, out, false, &err), CD_OK);
    for (int i = 0; i < 20; i++)
        assert_float_equal(((float *)out[0]->data)[i], -0.5f, 0);
    /* (Only max: gradcheck64's relative test is 0/0 on all-zero gradients.) */
    bool check_max[3] = {false, false, true};
    assert_true(tu_gradcheck(&n, swapped, check_max, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_node_clear(&n);

    /* Opset 13 without bounds: the identity. */
    tu_node_make(&n, "Clip", 13, 1, 1);
    tu_node_bind(&n);
    assert_int_equal(tu_run_node(&n, in1, out, false, &err), CD_OK);
    check_clip_values(x, out[0], -INFINITY, INFINITY);
    assert_true(tu_gradcheck(&n, in1, check1, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_node_clear(&n);

    /* Opset 13, int8 with only min given (two inputs). */
    tu_node_make(&n, "Clip", 13, 2, 1);
    tu_node_bind(&n);
    int8_t xv[] = {-128, -5, 0, 7, 127}, lov = -4;
    cd_tensor *xi = NULL, *li = NULL;
    int64_t d5[] = {5};
    assert_int_equal(cd_tensor_from_data(CD_INT8, 1, d5, xv, &xi, &err), CD_OK);
    assert_int_equal(cd_tensor_from_data(CD_INT8, 0, NULL, &lov, &li, &err), CD_OK);
    cd_tensor *ini[2] = {xi, li};
    assert_int_equal(tu_run_node(&n, ini, out, true, &err), CD_OK);
    const int8_t *yi = out[0]->data;
    for (int i = 0; i < 5; i++)
        assert_int_equal(yi[i], xv[i] < lov ? lov : xv[i]);
    cd_tensor_free(out[0]);
    cd_tensor_free(xi);
    cd_tensor_free(li);
    cd_node_clear(&n);
    cd_tensor_free(in3[1]);
    cd_tensor_free(in3[2]);
    cd_tensor_free(x);
}

/* Naive softmax over the elements idx[0..len) of x, in double. */
static void ref_softmax(const float *x, const size_t *idx, size_t len, bool log_out, double *out)
{
    double m = -INFINITY, s = 0;
    for (size_t k = 0; k < len; k++)
        m = fmax(m, x[idx[k]]);
    for (size_t k = 0; k < len; k++)
        s += exp(x[idx[k]] - m);
    for (size_t k = 0; k < len; k++)
        out[k] = log_out ? x[idx[k]] - m - log(s) : exp(x[idx[k]] - m) / s;
}

/* x has shape (2, 3, 4). `flat_from` >= 0: old semantics, normalise over all
 * elements sharing the index prefix before flat_from. Otherwise normalise
 * along `axis` only. */
static void check_softmax(const char *op, int opset, bool set_axis, int64_t axis, int flat_from,
                          int along, float scale)
{
    cd_node n;
    cd_error err;
    tu_node_make(&n, op, opset, 1, 1);
    if (set_axis)
        assert_int_equal(cd_node_add_int(&n, "axis", axis, &err), CD_OK);
    tu_node_bind(&n);
    int64_t d[] = {2, 3, 4};
    cd_tensor *in[1] = {tu_random(3, d, 51, -scale, scale)};
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    const float *x = in[0]->data, *y = out[0]->data;
    bool log_out = !strcmp(op, "LogSoftmax");
    /* Group elements: two elements share a slice when they agree on every
     * coordinate that is not normalised over. */
    for (int e = 0; e < 24; e++) {
        int c[3] = {e / 12, (e / 4) % 3, e % 4};
        size_t idx[24], len = 0, self = 0;
        for (int f = 0; f < 24; f++) {
            int cf[3] = {f / 12, (f / 4) % 3, f % 4};
            bool same = true;
            for (int a = 0; a < 3; a++) {
                bool normalised = flat_from >= 0 ? a >= flat_from : a == along;
                if (!normalised && cf[a] != c[a])
                    same = false;
            }
            if (same) {
                if (f == e)
                    self = len;
                idx[len++] = (size_t)f;
            }
        }
        double r[24];
        ref_softmax(x, idx, len, log_out, r);
        if (fabs(y[e] - r[self]) > 1e-5 * (1 + fabs(r[self])))
            fail_msg("%s opset %d element %d: %g vs %g", op, opset, e, y[e], r[self]);
    }
    bool check[1] = {true};
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-2) <= 1.0);
    cd_tensor_free(out[0]);
    cd_tensor_free(in[0]);
    cd_node_clear(&n);
}

static void test_softmax_opsets(void **state)
{
    (void)state;
    static const char *ops[] = {"Softmax", "LogSoftmax"};
    for (int k = 0; k < 2; k++) {
        /* opset < 13: coerce to 2-D at axis (default 1), normalise the rest. */
        check_softmax(ops[k], 11, false, 0, 1, -1, 2.0f);
        check_softmax(ops[k], 11, true, 0, 0, -1, 2.0f);
        check_softmax(ops[k], 11, true, 2, 2, -1, 2.0f);
        check_softmax(ops[k], 1, true, -2, 1, -1, 2.0f);
        /* opset >= 13: a single axis, default -1. */
        check_softmax(ops[k], 13, false, 0, -1, 2, 2.0f);
        check_softmax(ops[k], 13, true, 1, -1, 1, 2.0f);
        check_softmax(ops[k], 13, true, 0, -1, 0, 2.0f);
        check_softmax(ops[k], 13, true, -2, -1, 1, 2.0f);
    }
}

/* Large logits must not overflow (the max is subtracted first). */
static void test_softmax_large(void **state)
{
    (void)state;
    cd_node n;
    cd_error err;
    tu_node_make(&n, "Softmax", 13, 1, 1);
    tu_node_bind(&n);
    float v[] = {10000.0f, 10001.0f, 10002.0f, 10003.0f};
    int64_t d[] = {1, 4};
    cd_tensor *in[1] = {tu_tensor_f32(2, d, v)};
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    double s = 1 + exp(1) + exp(2) + exp(3);
    for (int i = 0; i < 4; i++)
        assert_float_equal(((float *)out[0]->data)[i], exp(i) / s, 1e-6);
    cd_tensor_free(out[0]);
    cd_node_clear(&n);
    tu_node_make(&n, "LogSoftmax", 13, 1, 1);
    tu_node_bind(&n);
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    for (int i = 0; i < 4; i++)
        assert_float_equal(((float *)out[0]->data)[i], i - log(s), 1e-5);
    cd_tensor_free(out[0]);
    cd_tensor_free(in[0]);
    cd_node_clear(&n);
}

static void test_softmax_bad_axis(void **state)
{
    (void)state;
    cd_node n;
    cd_error err;
    tu_node_make(&n, "Softmax", 13, 1, 1);
    assert_int_equal(cd_node_add_int(&n, "axis", 3, &err), CD_OK);
    tu_node_bind(&n);
    int64_t d[] = {2, 3, 4};
    cd_tensor *in[1] = {tu_random(3, d, 1, 0, 1)};
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_ERR_SHAPE);
    assert_non_null(strstr(err.message, "axis"));
    cd_tensor_free(in[0]);
    cd_node_clear(&n);
}

/* Dropout ---------------------------------------------------------------------- */

static void run_dropout(int opset, int n_in, cd_tensor **in, cd_dtype want_mask)
{
    cd_node n;
    cd_error err;
    tu_node_make(&n, "Dropout", opset, n_in, 2);
    if (opset < 12)
        assert_int_equal(cd_node_add_float(&n, "ratio", 0.3f, &err), CD_OK);
    tu_node_bind(&n);
    cd_tensor *out[2];
    assert_int_equal(tu_run_node(&n, in, out, true, &err), CD_OK);
    assert_true(tu_max_abs_diff(in[0], out[0]) == 0);
    assert_int_equal(out[1]->dtype, want_mask);
    size_t cnt = cd_tensor_numel(in[0]);
    for (size_t i = 0; i < cnt; i++) {
        if (want_mask == CD_BOOL)
            assert_int_equal(((uint8_t *)out[1]->data)[i], 1);
        else
            assert_float_equal(((float *)out[1]->data)[i], 1.0f, 0);
    }
    bool check[3] = {true, false, false};
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-4, 1e-3) <= 1.0);
    cd_tensor_free(out[0]);
    cd_tensor_free(out[1]);
    cd_node_clear(&n);
}

static void test_dropout_deterministic(void **state)
{
    (void)state;
    int64_t d[] = {3, 4};
    cd_tensor *x = tu_random(2, d, 61, -1, 1);
    cd_tensor *in1[1] = {x};
    run_dropout(7, 1, in1, CD_FLOAT32); /* opsets 7-9: mask has X's type */
    run_dropout(10, 1, in1, CD_BOOL);
    float ratio = 0.25f;
    uint8_t train = 1;
    cd_tensor *r = tu_tensor_f32(0, NULL, &ratio), *t = NULL;
    assert_int_equal(cd_tensor_from_data(CD_BOOL, 0, NULL, &train, &t, NULL), CD_OK);
    cd_tensor *in3[3] = {x, r, t};
    run_dropout(13, 3, in3, CD_BOOL);
    /* A ratio outside [0, 1) is rejected with a message naming the node. */
    ratio = 1.5f;
    cd_tensor_free(r);
    in3[1] = r = tu_tensor_f32(0, NULL, &ratio);
    cd_node n;
    cd_error err;
    tu_node_make(&n, "Dropout", 13, 2, 1);
    tu_node_bind(&n);
    cd_tensor *out[1];
    assert_int_equal(tu_run_node(&n, in3, out, true, &err), CD_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "Dropout"));
    cd_node_clear(&n);
    cd_tensor_free(r);
    cd_tensor_free(t);
    cd_tensor_free(x);
}

static void test_definitions_registered(void **state)
{
    (void)state;
    const cd_op_def *defs[] = {&cd_opdef_RELU,     &cd_opdef_LEAKY_RELU,  &cd_opdef_PRELU,
                               &cd_opdef_ELU,      &cd_opdef_SIGMOID,     &cd_opdef_TANH,
                               &cd_opdef_CLIP,     &cd_opdef_HARD_SIGMOID, &cd_opdef_HARD_SWISH,
                               &cd_opdef_SOFTMAX,  &cd_opdef_LOG_SOFTMAX, &cd_opdef_DROPOUT};
    const int ids[] = {CD_OP_RELU, CD_OP_LEAKY_RELU, CD_OP_PRELU, CD_OP_ELU,
                       CD_OP_SIGMOID, CD_OP_TANH, CD_OP_CLIP, CD_OP_HARD_SIGMOID,
                       CD_OP_HARD_SWISH, CD_OP_SOFTMAX, CD_OP_LOG_SOFTMAX, CD_OP_DROPOUT};
    for (size_t i = 0; i < CD_COUNT_OF(defs); i++) {
        assert_ptr_equal(cd_op_get(ids[i]), defs[i]);
        assert_non_null(defs[i]->backward);
        if (ids[i] != CD_OP_DROPOUT) { /* the float64 mode's kernels */
            assert_non_null(defs[i]->forward64);
            assert_non_null(defs[i]->backward64);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_definitions_registered),
        cmocka_unit_test(test_pointwise),
        cmocka_unit_test(test_pointwise_wide),
        cmocka_unit_test(test_sigmoid_extremes),
        cmocka_unit_test(test_prelu),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_softmax_opsets),
        cmocka_unit_test(test_softmax_large),
        cmocka_unit_test(test_softmax_bad_axis),
        cmocka_unit_test(test_dropout_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
