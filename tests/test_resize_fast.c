/* Resize's plane fast path (core/ops/resize.c: float32, only H and W
 * resized, planes spread over candor's pool) on random shapes and scales:
 * bilinear half_pixel against a separable reference written here from the
 * ONNX formula (x_in = (x_out + 0.5) / scale - 0.5, neighbours clamped to the
 * edge), nearest asymmetric/floor against its index rule, and bit-identical
 * results with one and two threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops/op.h"
#include "core/parallel.h"
#include "testutil.h"

static void make_node(cd_node *n, bool linear)
{
    cd_error err;
    assert_int_equal(cd_node_init(n, "Resize", 13, 3, 1, &err), CD_OK);
    assert_int_equal(cd_node_add_string(n, "mode", linear ? "linear" : "nearest", &err), CD_OK);
    assert_int_equal(cd_node_add_string(n, "coordinate_transformation_mode",
                                        linear ? "half_pixel" : "asymmetric", &err),
                     CD_OK);
    assert_int_equal(cd_node_add_string(n, "nearest_mode", "floor", &err), CD_OK);
    assert_int_equal(cd_node_bind(n, &err), CD_OK);
}

/* Runs the node on ctx with `threads` threads (a pool when > 1). */
static cd_tensor *run(cd_node *n, cd_tensor *x, cd_tensor *scales, int threads)
{
    cd_error err = {0};
    cd_tensor *in[3] = {x, NULL, scales};
    cd_tensor *y = calloc(1, sizeof *y);
    cd_tensor *out[1] = {y};
    const cd_op_def *def = cd_op_get(n->op);
    assert_int_equal(def->infer(n, in, out, &err), CD_OK);
    assert_int_equal(cd_tensor_ensure(y, &err), CD_OK);
    cd_ctx ctx = {.err = &err, .threads = threads};
    assert_int_equal(cd_ctx_ensure_pool(&ctx), CD_OK);
    if (def->forward(n, in, out, &ctx) != CD_OK)
        fail_msg("resize: %s", err.message);
    cd_ctx_release(&ctx);
    return y;
}

static int64_t clampi(int64_t v, int64_t len) { return v < 0 ? 0 : v >= len ? len - 1 : v; }

/* Value of output (oh, ow) of one plane. */
static double reference(const float *x, int64_t H, int64_t W, double sh, double sw, int64_t oh,
                        int64_t ow, bool linear)
{
    if (!linear)
        return x[clampi((int64_t)floor(oh / sh), H) * W + clampi((int64_t)floor(ow / sw), W)];
    double yh = (oh + 0.5) / sh - 0.5, yw = (ow + 0.5) / sw - 0.5;
    int64_t h0 = (int64_t)floor(yh), w0 = (int64_t)floor(yw);
    double rh = yh - h0, rw = yw - w0;
    double v = 0;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            v += (a ? rh : 1 - rh) * (b ? rw : 1 - rw) *
                 x[clampi(h0 + a, H) * W + clampi(w0 + b, W)];
    return v;
}

static void test_planes_match_reference(void **state)
{
    (void)state;
    static const float choices[] = {0.5f, 0.75f, 1.0f, 1.5f, 2.0f, 3.0f};
    uint64_t st = 12345;
    for (int round = 0; round < 40; round++) {
        bool linear = round % 2 == 0;
        int64_t xd[4] = {1 + (int64_t)tu_uniform(&st, 0, 2.99f), 1 + (int64_t)tu_uniform(&st, 0, 6.99f),
                         2 + (int64_t)tu_uniform(&st, 0, 12.99f), 2 + (int64_t)tu_uniform(&st, 0, 12.99f)};
        float sv[4] = {1, 1, choices[(int)tu_uniform(&st, 0, 5.99f)],
                       choices[(int)tu_uniform(&st, 0, 5.99f)]};
        int64_t four = 4;
        cd_tensor *scales = tu_tensor_f32(1, &four, sv);
        cd_tensor *x = tu_random(4, xd, (uint64_t)round + 1, -2, 2);
        cd_node n;
        make_node(&n, linear);
        cd_tensor *y1 = run(&n, x, scales, 1), *y2 = run(&n, x, scales, 2);
        int64_t OH = y1->dims[2], OW = y1->dims[3], H = xd[2], W = xd[3];
        assert_int_equal(OH, (int64_t)floor(H * (double)sv[2]));
        assert_int_equal(OW, (int64_t)floor(W * (double)sv[3]));
        assert_memory_equal(y1->data, y2->data, cd_tensor_numel(y1) * sizeof(float));
        const float *xv = x->data, *yv = y1->data;
        for (int64_t q = 0; q < xd[0] * xd[1]; q++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double want = reference(xv + q * H * W, H, W, sv[2], sv[3], oh, ow, linear);
                    double got = yv[(q * OH + oh) * OW + ow];
                    if (fabs(got - want) > 1e-6 * (1 + fabs(want)))
                        fail_msg("round %d plane %lld (%lld,%lld): got %.8g want %.8g", round,
                                 (long long)q, (long long)oh, (long long)ow, got, want);
                }
        cd_tensor *all[] = {scales, x, y1, y2};
        for (size_t i = 0; i < 4; i++)
            cd_tensor_free(all[i]);
        cd_node_clear(&n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planes_match_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
