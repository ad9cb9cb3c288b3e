/* Resize: output shapes for the opset 10/11/13 input conventions, nearest
 * rounding modes worked out by hand, linear interpolation against closed-form
 * values (a linear ramp is reproduced exactly), PyTorch F.interpolate values,
 * and finite-difference checks of the backward pass. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct rs_node_opts {
    int opset;
    const char *mode, *coord, *nearest;
} rs_node_opts;

/* Builds a bound Resize node with 2 (opset 10) or 4 inputs. */
static void make_resize(cd_node *n, rs_node_opts o)
{
    cd_error err;
    assert_int_equal(cd_node_init(n, "Resize", o.opset, o.opset < 11 ? 2 : 4, 1, &err), CD_OK);
    if (o.mode)
        assert_int_equal(cd_node_add_string(n, "mode", o.mode, &err), CD_OK);
    if (o.coord)
        assert_int_equal(
            cd_node_add_string(n, "coordinate_transformation_mode", o.coord, &err), CD_OK);
    if (o.nearest)
        assert_int_equal(cd_node_add_string(n, "nearest_mode", o.nearest, &err), CD_OK);
    assert_int_equal(cd_node_bind(n, &err), CD_OK);
}

/* Runs Resize with either scales (count floats) or sizes (count ints). */
static cd_tensor *run_resize(cd_node *n, cd_tensor *x, const float *scales,
                             const int64_t *sizes, int count)
{
    cd_error err;
    int64_t cnt = count;
    cd_tensor *sc = scales ? tu_tensor_f32(1, &cnt, scales) : NULL;
    cd_tensor *sz = sizes ? tu_tensor_i64(1, &cnt, sizes) : NULL;
    cd_tensor *in[4] = {x, NULL, sc, sz}, *out[1] = {NULL};
    if (n->opset < 11)
        in[1] = sc;
    cd_status st = tu_run_node(n, in, out, true, &err);
    if (st != CD_OK)
        fail_msg("resize failed: %s", err.message);
    cd_tensor_free(sc);
    cd_tensor_free(sz);
    return out[0];
}

static void expect_values(const cd_tensor *t, const float *want, size_t count, double tol)
{
    assert_int_equal(cd_tensor_numel(t), count);
    const float *got = t->data;
    for (size_t i = 0; i < count; i++)
        if (fabs((double)got[i] - want[i]) > tol)
            fail_msg("element %zu: got %.7g want %.7g", i, got[i], want[i]);
}

/* 1-D signal [1,2,3,4] as a [1,4] tensor. */
static cd_tensor *ramp4(void)
{
    static const float v[4] = {1, 2, 3, 4};
    int64_t d[2] = {1, 4};
    return tu_tensor_f32(2, d, v);
}

static void test_nearest_modes_by_hand(void **state)
{
    (void)state;
    cd_tensor *x = ramp4();
    cd_node n;
    const float up[2] = {1, 2}, down[2] = {1, 0.5f};
    /* half_pixel x2: sources -0.25, 0.25, 0.75, 1.25, ... */
    make_resize(&n, (rs_node_opts){13, "nearest", NULL, NULL});
    cd_tensor *y = run_resize(&n, x, up, NULL, 2);
    expect_values(y, (const float[]){1, 1, 2, 2, 3, 3, 4, 4}, 8, 0);
    cd_tensor_free(y);
    /* half_pixel x0.5: sources 0.5 and 2.5, exactly half-way. */
    y = run_resize(&n, x, down, NULL, 2);
    expect_values(y, (const float[]){1, 3}, 2, 0);
    cd_tensor_free(y);
    cd_node_clear(&n);
    make_resize(&n, (rs_node_opts){13, "nearest", NULL, "round_prefer_ceil"});
    y = run_resize(&n, x, down, NULL, 2);
    expect_values(y, (const float[]){2, 4}, 2, 0);
    cd_tensor_free(y);
    cd_node_clear(&n);
    /* asymmetric + ceil x2: sources 0, 0.5, 1, 1.5, ... -> 0,1,1,2,2,3,3,3 */
    make_resize(&n, (rs_node_opts){13, "nearest", "asymmetric", "ceil"});
    y = run_resize(&n, x, up, NULL, 2);
    expect_values(y, (const float[]){1, 2, 2, 3, 3, 4, 4, 4}, 8, 0);
    cd_tensor_free(y);
    cd_node_clear(&n);
    /* opset 10: asymmetric; 4 * 0.6 -> 2 outputs, sources 0 and 1.667, and
     * downsampling rounds up. */
    make_resize(&n, (rs_node_opts){10, "nearest", NULL, NULL});
    y = run_resize(&n, x, (const float[]){1, 0.6f}, NULL, 2);
    expect_values(y, (const float[]){1, 3}, 2, 0);
    cd_tensor_free(y);
    cd_node_clear(&n);
    /* tf_half_pixel_for_nn x2: sources 0.25, 0.75, 1.25 ... round_prefer_floor */
    make_resize(&n, (rs_node_opts){13, "nearest", "tf_half_pixel_for_nn", NULL});
    y = run_resize(&n, x, up, NULL, 2);
    expect_values(y, (const float[]){1, 2, 2, 3, 3, 4, 4, 4}, 8, 0);
    cd_tensor_free(y);
    cd_node_clear(&n);
    cd_tensor_free(x);
}

/* Bilinear interpolation reproduces f(i,j) = a*i + b*j + c exactly at the
 * mapped (border-clamped) source coordinate. */
static double ramp_at(double i, double j) { return 0.75 * i - 1.5 * j + 2.0; }

static void check_ramp(const char *coord, int64_t out_h, int64_t out_w)
{
    const int64_t in_h = 3, in_w = 5;
    int64_t dims[4] = {1, 2, in_h, in_w};
    cd_tensor *x = tu_random(4, dims, 1, 0, 1);
    float *xp = x->data;
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < in_h; i++)
            for (int j = 0; j < in_w; j++)
                xp[(c * in_h + i) * in_w + j] = (float)ramp_at(i, j) + (float)c;
    cd_node n;
    make_resize(&n, (rs_node_opts){13, "linear", coord, NULL});
    const int64_t sizes[4] = {1, 2, out_h, out_w};
    cd_tensor *y = run_resize(&n, x, NULL, sizes, 4);
    assert_int_equal(y->dims[2], out_h);
    assert_int_equal(y->dims[3], out_w);
    bool align = strcmp(coord, "align_corners") == 0;
    const float *yp = y->data;
    for (int c = 0; c < 2; c++)
        for (int64_t i = 0; i < out_h; i++)
            for (int64_t j = 0; j < out_w; j++) {
                double si, sj;
                if (align) {
                    si = out_h == 1 ? 0 : (double)i * (in_h - 1) / (double)(out_h - 1);
                    sj = out_w == 1 ? 0 : (double)j * (in_w - 1) / (double)(out_w - 1);
                } else {
                    si = ((double)i + 0.5) * in_h / (double)out_h - 0.5;
                    sj = ((double)j + 0.5) * in_w / (double)out_w - 0.5;
                }
                si = fmin(fmax(si, 0), in_h - 1);
                sj = fmin(fmax(sj, 0), in_w - 1);
                double want = ramp_at(si, sj) + c;
                double got = yp[(c * out_h + i) * out_w + j];
                if (fabs(got - want) > 1e-5)
                    fail_msg("%s %lldx%lld at (%d,%lld,%lld): got %.7g want %.7g", coord,
                             (long long)out_h, (long long)out_w, c, (long long)i, (long long)j,
                             got, want);
            }
    cd_tensor_free(y);
    cd_tensor_free(x);
    cd_node_clear(&n);
}

static void test_linear_reproduces_ramp(void **state)
{
    (void)state;
    check_ramp("align_corners", 7, 9);
    check_ramp("align_corners", 2, 3);
    check_ramp("half_pixel", 7, 12);
    check_ramp("half_pixel", 2, 2);
    check_ramp("pytorch_half_pixel", 6, 11);
}

/* The 3x3 input and the values below come from PyTorch 1.13
 * F.interpolate(x, size=(5, 4), mode=...). */
static const float torch_in[9] = {0.5f, -1.25f, 2.0f, 3.5f, 0.25f, -0.75f, 1.0f, 4.0f, -2.5f};

static void check_torch(rs_node_opts o, const int64_t *size, const float *want, size_t count)
{
    int64_t dims[4] = {1, 1, 3, 3};
    cd_tensor *x = tu_tensor_f32(4, dims, torch_in);
    cd_node n;
    make_resize(&n, o);
    const int64_t sizes[4] = {1, 1, size[0], size[1]};
    cd_tensor *y = run_resize(&n, x, NULL, sizes, 4);
    expect_values(y, want, count, 2e-6);
    cd_tensor_free(y);
    cd_tensor_free(x);
    cd_node_clear(&n);
}

static void test_matches_pytorch(void **state)
{
    (void)state;
    static const float bilinear[20] = {
        0.5f,        -0.59375f,   -0.03125f,    2.0f,        1.70000005f, 0.231250063f,
        -0.0687499717f, 0.899999917f, 3.49999976f, 1.46875f, -0.124999896f, -0.750000119f,
        1.99999976f, 2.31250024f, 0.887500167f, -1.80000019f, 1.0f,       2.875f,
        1.5625f,     -2.5f};
    static const float bilinear_ac[20] = {
        0.5f,   -0.666666687f, -0.166666538f, 2.0f, 2.0f,  0.333333284f, -0.124999955f,
        0.625f, 3.5f,          1.33333325f,   -0.0833333731f, -0.75f, 2.25f, 2.16666675f,
        0.874999881f, -1.625f, 1.0f,          3.0f, 1.83333302f,  -2.5f};
    static const float bicubic[20] = {
        0.32727465f,  -1.21715522f, -0.252274454f, 2.52656174f,  2.04368472f,
        -0.154897824f, -0.524017096f, 1.20233798f, 3.73327637f,  1.5310061f,
        -0.467407107f, -0.821777523f, 2.15247989f, 2.99799705f,  1.02074373f,
        -2.35434341f, 0.501601815f, 3.83485413f,  2.22295737f,  -3.17245173f};
    static const float nearest[20] = {0.5f, 0.5f, -1.25f, 2.0f,  0.5f, 0.5f, -1.25f,
                                      2.0f, 3.5f, 3.5f,   0.25f, -0.75f, 3.5f, 3.5f,
                                      0.25f, -0.75f, 1.0f, 1.0f, 4.0f, -2.5f};
    static const float down[4] = {0.71875f, 0.765625f, 1.984375f, -0.78125f};
    const int64_t s54[2] = {5, 4}, s22[2] = {2, 2};
    check_torch((rs_node_opts){13, "linear", "half_pixel", NULL}, s54, bilinear, 20);
    check_torch((rs_node_opts){13, "linear", "pytorch_half_pixel", NULL}, s54, bilinear, 20);
    check_torch((rs_node_opts){13, "linear", "align_corners", NULL}, s54, bilinear_ac, 20);
    check_torch((rs_node_opts){13, "cubic", "half_pixel", NULL}, s54, bicubic, 20);
    check_torch((rs_node_opts){13, "nearest", "asymmetric", "floor"}, s54, nearest, 20);
    check_torch((rs_node_opts){13, "linear", "pytorch_half_pixel", NULL}, s22, down, 4);
}

static void test_trilinear_matches_pytorch(void **state)
{
    (void)state;
    static const float x3[8] = {0, -2, 1, 9, 6, -5, 12, 1.75f};
    static const float want[27] = {
        0.0f,  -1.0f,       -2.0f,       0.5f,   2.0f,        3.5f,        1.0f,
        5.0f,  8.99999905f, 3.0f,        -0.25f, -3.5f,       4.75f,       2.84375f,
        0.9375f, 6.5f,      5.9375f,     5.37499952f, 6.0f,   0.5f,        -4.99999952f,
        9.0f,  3.6875f,     -1.62499988f, 11.999999f, 6.87499952f, 1.74999976f};
    int64_t dims[5] = {1, 1, 2, 2, 2};
    cd_tensor *x = tu_tensor_f32(5, dims, x3);
    cd_node n;
    make_resize(&n, (rs_node_opts){13, "linear", NULL, NULL});
    const float scales[5] = {1, 1, 1.5f, 1.5f, 1.5f};
    cd_tensor *y = run_resize(&n, x, scales, NULL, 5);
    assert_int_equal(y->ndim, 5);
    expect_values(y, want, 27, 3e-6);
    cd_tensor_free(y);
    cd_tensor_free(x);
    cd_node_clear(&n);
}

static void test_shapes_and_conventions(void **state)
{
    (void)state;
    int64_t dims[4] = {2, 3, 5, 7};
    cd_tensor *x = tu_random(4, dims, 3, -1, 1);
    cd_node n;
    /* scales: floor(in * scale) */
    make_resize(&n, (rs_node_opts){13, "nearest", NULL, NULL});
    cd_tensor *y = run_resize(&n, x, (const float[]){1, 1, 0.5f, 2.3f}, NULL, 4);
    assert_int_equal(y->dims[0], 2);
    assert_int_equal(y->dims[1], 3);
    assert_int_equal(y->dims[2], 2);
    assert_int_equal(y->dims[3], 16);
    cd_tensor_free(y);
    /* both scales and sizes, or neither, is an error; empty means absent */
    cd_error err;
    int64_t four = 4, zero = 0;
    cd_tensor *sc = tu_tensor_f32(1, &four, (const float[]){1, 1, 2, 2});
    cd_tensor *sz = tu_tensor_i64(1, &four, (const int64_t[]){2, 3, 4, 4});
    cd_tensor *empty = tu_tensor_f32(1, &zero, NULL);
    cd_tensor *in[4] = {x, NULL, sc, sz}, *out[1];
    assert_int_equal(tu_run_node(&n, in, out, true, &err), CD_ERR_INVALID_ARGUMENT);
    in[2] = empty; /* opset 11 style: scales present but empty */
    assert_int_equal(tu_run_node(&n, in, out, true, &err), CD_OK);
    assert_int_equal(out[0]->dims[2], 4);
    cd_tensor_free(out[0]);
    /* sizes unknown at plan time: refused with a clear error */
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "sizes"));
    cd_node_clear(&n);
    make_resize(&n, (rs_node_opts){13, "linear", "tf_crop_and_resize", NULL});
    cd_node_clear(&n);
    cd_tensor_free(sc);
    cd_tensor_free(sz);
    cd_tensor_free(empty);
    cd_tensor_free(x);
}

/* tf_crop_and_resize: samples outside the crop take extrapolation_value. */
static void test_crop_and_resize(void **state)
{
    (void)state;
    cd_error err;
    cd_node n;
    assert_int_equal(cd_node_init(&n, "Resize", 13, 4, 1, &err), CD_OK);
    cd_node_add_string(&n, "mode", "linear", &err);
    cd_node_add_string(&n, "coordinate_transformation_mode", "tf_crop_and_resize", &err);
    cd_node_add_float(&n, "extrapolation_value", 10.0f, &err);
    assert_int_equal(cd_node_bind(&n, &err), CD_OK);
    int64_t d[2] = {1, 5}, two = 2, four = 4;
    cd_tensor *x = tu_tensor_f32(2, d, (const float[]){0, 1, 2, 3, 4});
    /* roi along w: [0.5, 1.5] of (in-1)=4 -> source 2 .. 6, out 3 -> 2, 4, 6 */
    cd_tensor *roi = tu_tensor_f32(1, &four, (const float[]){0, 0.5f, 1, 1.5f});
    cd_tensor *sizes = tu_tensor_i64(1, &two, (const int64_t[]){1, 3});
    cd_tensor *in[4] = {x, roi, NULL, sizes}, *out[1];
    assert_int_equal(tu_run_node(&n, in, out, true, &err), CD_OK);
    expect_values(out[0], (const float[]){2, 4, 10}, 3, 1e-6);
    cd_tensor_free(out[0]);
    cd_tensor_free(x);
    cd_tensor_free(roi);
    cd_tensor_free(sizes);
    cd_node_clear(&n);
}

static void gradcheck_case(rs_node_opts o, const float *scales, int64_t h, int64_t w)
{
    int64_t dims[4] = {1, 2, h, w}, four = 4;
    cd_tensor *x = tu_random(4, dims, 11, -1, 1);
    cd_tensor *sc = tu_tensor_f32(1, &four, scales);
    cd_node n;
    make_resize(&n, o);
    cd_tensor *in[4] = {x, o.opset < 11 ? sc : NULL, sc, NULL};
    const bool check[4] = {true, false, false, false};
    double worst = tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-3);
    if (worst > 1.0)
        fail_msg("gradcheck %s/%s: %g", o.mode, o.coord ? o.coord : "default", worst);
    cd_tensor_free(x);
    cd_tensor_free(sc);
    cd_node_clear(&n);
}

static void test_backward(void **state)
{
    (void)state;
    const float up[4] = {1, 1, 2.5f, 1.75f}, down[4] = {1, 1, 0.5f, 0.6f};
    gradcheck_case((rs_node_opts){13, "linear", NULL, NULL}, up, 3, 4);
    gradcheck_case((rs_node_opts){13, "linear", "align_corners", NULL}, up, 3, 4);
    gradcheck_case((rs_node_opts){13, "linear", NULL, NULL}, down, 5, 6);
    gradcheck_case((rs_node_opts){13, "nearest", NULL, NULL}, up, 3, 4);
    gradcheck_case((rs_node_opts){13, "nearest", "asymmetric", "floor"}, down, 5, 6);
    gradcheck_case((rs_node_opts){13, "cubic", NULL, NULL}, up, 3, 4);
    gradcheck_case((rs_node_opts){10, "linear", NULL, NULL}, up, 3, 4);
}

/* Float64 kernels over every mode and convention the float32 kernel has
 * (forward64 against forward and backward64 against float64 differences,
 * inside tu_gradcheck), each also through the float32 gradcheck. */

typedef struct rs_extra {
    const char *mode, *coord, *nearest, *policy;
    float cubic_a, extrapolation; /* 0: attribute left out */
    bool exclude_outside;
    int n_axes;
    int64_t axes[CD_MAX_DIMS];
} rs_extra;

static void make_resize_ex(cd_node *n, int opset, const rs_extra *e)
{
    cd_error err;
    assert_int_equal(cd_node_init(n, "Resize", opset, opset < 11 ? 2 : 4, 1, &err), CD_OK);
    if (e->mode)
        assert_int_equal(cd_node_add_string(n, "mode", e->mode, &err), CD_OK);
    if (e->coord)
        assert_int_equal(
            cd_node_add_string(n, "coordinate_transformation_mode", e->coord, &err), CD_OK);
    if (e->nearest)
        assert_int_equal(cd_node_add_string(n, "nearest_mode", e->nearest, &err), CD_OK);
    if (e->policy)
        assert_int_equal(cd_node_add_string(n, "keep_aspect_ratio_policy", e->policy, &err),
                         CD_OK);
    if (e->cubic_a != 0)
        assert_int_equal(cd_node_add_float(n, "cubic_coeff_a", e->cubic_a, &err), CD_OK);
    if (e->extrapolation != 0)
        assert_int_equal(cd_node_add_float(n, "extrapolation_value", e->extrapolation, &err),
                         CD_OK);
    if (e->exclude_outside)
        assert_int_equal(cd_node_add_int(n, "exclude_outside", 1, &err), CD_OK);
    if (e->n_axes)
        assert_int_equal(cd_node_add_ints(n, "axes", e->axes, (size_t)e->n_axes, &err), CD_OK);
    assert_int_equal(cd_node_bind(n, &err), CD_OK);
}

/* x of rank nd and dims; scales (count floats) or sizes (count ints), roi
 * (2 * count floats) optional. */
static void gradcheck_ex(int opset, const rs_extra *e, int nd, const int64_t *dims,
                         const float *scales, const int64_t *sizes, const float *roi, int count)
{
    int64_t cnt = count, rcnt = 2 * (int64_t)count;
    cd_tensor *x = tu_random(nd, dims, 17, -1, 1);
    cd_tensor *sc = scales ? tu_tensor_f32(1, &cnt, scales) : NULL;
    cd_tensor *sz = sizes ? tu_tensor_i64(1, &cnt, sizes) : NULL;
    cd_tensor *r = roi ? tu_tensor_f32(1, &rcnt, roi) : NULL;
    cd_tensor *in[4] = {x, r, sc, sz};
    if (opset < 11)
        in[1] = sc;
    cd_node n;
    make_resize_ex(&n, opset, e);
    const bool check[4] = {true, false, false, false};
    double worst = tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-3);
    if (!(worst <= 1.0))
        fail_msg("gradcheck opset %d %s/%s/%s: %g", opset, e->mode ? e->mode : "nearest",
                 e->coord ? e->coord : "default", e->nearest ? e->nearest : "default", worst);
    cd_node_clear(&n);
    cd_tensor_free(x);
    cd_tensor_free(sc);
    cd_tensor_free(sz);
    cd_tensor_free(r);
}

static void test_float64_conventions(void **state)
{
    (void)state;
    const int64_t d4[4] = {1, 2, 3, 4}, d5[5] = {1, 1, 3, 2, 4}, d1[1] = {5};
    const float up[4] = {1, 1, 2.5f, 1.75f}, down[4] = {1, 1, 0.5f, 0.6f};
    const float mixed[4] = {1, 1, 1.5f, 0.75f};
    /* every coordinate transformation, linear and nearest */
    static const char *const coords[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                         "asymmetric", "tf_half_pixel_for_nn"};
    for (int k = 0; k < 5; k++) {
        rs_extra lin = {.mode = "linear", .coord = coords[k]};
        rs_extra nn = {.mode = "nearest", .coord = coords[k]};
        gradcheck_ex(13, &lin, 4, d4, up, NULL, NULL, 4);
        gradcheck_ex(13, &lin, 4, d4, mixed, NULL, NULL, 4);
        gradcheck_ex(13, &nn, 4, d4, mixed, NULL, NULL, 4);
    }
    /* pytorch_half_pixel and align_corners with an output length of 1 */
    const int64_t to1[4] = {1, 2, 1, 5};
    rs_extra pt = {.mode = "linear", .coord = "pytorch_half_pixel"};
    rs_extra ac = {.mode = "linear", .coord = "align_corners"};
    gradcheck_ex(13, &pt, 4, d4, NULL, to1, NULL, 4);
    gradcheck_ex(13, &ac, 4, d4, NULL, to1, NULL, 4);
    /* every nearest rounding mode, up and down */
    static const char *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                           "ceil"};
    for (int k = 0; k < 4; k++) {
        rs_extra e = {.mode = "nearest", .coord = "asymmetric", .nearest = nearests[k]};
        gradcheck_ex(13, &e, 4, d4, up, NULL, NULL, 4);
        gradcheck_ex(13, &e, 4, d4, down, NULL, NULL, 4);
    }
    /* opset 10: asymmetric, nearest truncating up and ceiling down */
    gradcheck_ex(10, &(rs_extra){.mode = "nearest"}, 4, d4, up, NULL, NULL, 4);
    gradcheck_ex(10, &(rs_extra){.mode = "nearest"}, 4, d4, down, NULL, NULL, 4);
    gradcheck_ex(10, &(rs_extra){.mode = "linear"}, 4, d4, mixed, NULL, NULL, 4);
    /* cubic: default, another coefficient with exclude_outside */
    rs_extra cub = {.mode = "cubic", .coord = "align_corners"};
    gradcheck_ex(13, &cub, 4, d4, mixed, NULL, NULL, 4);
    cub = (rs_extra){.mode = "cubic", .cubic_a = -0.5f, .exclude_outside = true};
    gradcheck_ex(13, &cub, 4, d4, up, NULL, NULL, 4);
    gradcheck_ex(13, &cub, 4, d4, down, NULL, NULL, 4);
    /* tf_crop_and_resize: roi partly outside, extrapolation_value */
    const float roi[8] = {0, 0, 0.2f, -0.3f, 1, 1, 1.3f, 0.8f};
    const int64_t crop[4] = {1, 2, 4, 5};
    rs_extra tf = {.mode = "linear", .coord = "tf_crop_and_resize", .extrapolation = 2.5f};
    gradcheck_ex(13, &tf, 4, d4, NULL, crop, roi, 4);
    tf.mode = "nearest";
    gradcheck_ex(13, &tf, 4, d4, NULL, crop, roi, 4);
    /* opset 18 axes with a keep_aspect_ratio_policy */
    const int64_t hw[2] = {5, 9};
    rs_extra ax = {.mode = "linear", .policy = "not_larger", .n_axes = 2, .axes = {2, -1}};
    gradcheck_ex(18, &ax, 4, d4, NULL, hw, NULL, 2);
    ax.policy = "not_smaller";
    gradcheck_ex(18, &ax, 4, d4, NULL, hw, NULL, 2);
    /* 5-D (the generic walk in float32 too) and 1-D */
    const float s5[5] = {1, 1, 2, 1.5f, 0.75f};
    gradcheck_ex(13, &ac, 5, d5, s5, NULL, NULL, 5);
    gradcheck_ex(13, &(rs_extra){.mode = "cubic"}, 5, d5, s5, NULL, NULL, 5);
    const int64_t s1[1] = {8};
    gradcheck_ex(13, &(rs_extra){.mode = "linear"}, 1, d1, NULL, s1, NULL, 1);
    gradcheck_ex(13, &(rs_extra){.mode = "nearest"}, 1, d1, NULL, s1, NULL, 1);
}

/* Integer data keeps its type in float64 mode: forward64 copies the same
 * elements as forward (nearest is the only mode for it). */
static void test_float64_integer_nearest(void **state)
{
    (void)state;
    int64_t d[4] = {1, 2, 3, 4}, four = 4;
    cd_tensor *x = NULL;
    assert_int_equal(cd_tensor_create(CD_UINT8, 4, d, &x, NULL), CD_OK);
    for (int i = 0; i < 24; i++)
        ((uint8_t *)x->data)[i] = (uint8_t)(i * 11);
    cd_tensor *sz = tu_tensor_i64(1, &four, (const int64_t[]){1, 2, 5, 7});
    cd_tensor *in[4] = {x, NULL, NULL, sz}, *out[1];
    cd_node n;
    cd_error err;
    make_resize(&n, (rs_node_opts){13, "nearest", "asymmetric", "ceil"});
    assert_int_equal(tu_run_node(&n, in, out, true, &err), CD_OK);
    cd_tensor *y64 = NULL;
    assert_int_equal(cd_tensor_create(CD_UINT8, 4, out[0]->dims, &y64, NULL), CD_OK);
    memset(y64->data, 0xEE, cd_tensor_numel(y64));
    cd_ctx ctx = {.err = &err, .threads = 1};
    assert_int_equal(cd_opdef_RESIZE.forward64(&n, in, &y64, &ctx), CD_OK);
    assert_memory_equal(y64->data, out[0]->data, cd_tensor_numel(y64));
    free(ctx.scratch);
    cd_tensor_free(y64);
    cd_tensor_free(out[0]);
    cd_tensor_free(x);
    cd_tensor_free(sz);
    cd_node_clear(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nearest_modes_by_hand),
        cmocka_unit_test(test_linear_reproduces_ramp),
        cmocka_unit_test(test_matches_pytorch),
        cmocka_unit_test(test_trilinear_matches_pytorch),
        cmocka_unit_test(test_shapes_and_conventions),
        cmocka_unit_test(test_crop_and_resize),
        cmocka_unit_test(test_backward),
        cmocka_unit_test(test_float64_conventions),
        cmocka_unit_test(test_float64_integer_nearest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
