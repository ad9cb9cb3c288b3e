/* Fast backward paths of the tape plan against the operators' generic
 * backward functions (which tests/test_ops_*.c check against finite
 * differences), on random shapes:
 *   - Conv input gradient as a forward kernel on dY with flipped, in/out
 *     swapped weights (cd_conv_kernel_create_input_grad), stride 1, any
 *     padding up to the dilated window, dilation, groups, depthwise, 1x1;
 *   - ReLU and 2-D MaxPool backward (core/backward_fast.h), MaxPool with
 *     ties, padding, strides, dilation and ceil_mode.
 * Every fast path gives the same bits on 1 and 2 threads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backward_fast.h"
#include "core/ops/conv_fast.h"
#include "core/parallel.h"
#include "testutil.h"

static int64_t rnd(uint64_t *st, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(tu_uniform(st, 0.0f, 0.999f) * (float)(hi - lo + 1));
}

static cd_tensor *zeros(int nd, const int64_t *dims) { return tu_random(nd, dims, 0, 0, 0); }

/* Runs the generic backward of node n for the input gradient only. */
static void generic_input_grad(cd_node *n, cd_tensor **in, cd_tensor *y, cd_tensor *gy,
                               cd_tensor *gx)
{
    cd_error err = {0};
    cd_ctx ctx = {.err = &err, .threads = 1};
    cd_tensor *out[1] = {y}, *gout[1] = {gy}, *gin[3] = {gx, NULL, NULL};
    cd_status st = cd_op_get(n->op)->backward(n, in, out, gout, gin, &ctx);
    if (st != CD_OK)
        fail_msg("generic backward: %s", err.message);
    free(ctx.scratch);
}

/* f1 (one thread) and f2 (two threads) both equal ref bit for bit. */
static void assert_same_bits(const cd_tensor *ref, const cd_tensor *f1, const cd_tensor *f2)
{
    assert_memory_equal(ref->data, f1->data, cd_tensor_nbytes(ref));
    assert_memory_equal(ref->data, f2->data, cd_tensor_nbytes(ref));
}

/* Frees a case's n tensors and its node. */
static void free_case(cd_tensor **all, size_t n, cd_node *node)
{
    for (size_t i = 0; i < n; i++)
        cd_tensor_free(all[i]);
    cd_node_clear(node);
}

/* --------------------------------------------------------------- Conv */

/* One random stride-1 Conv: fast input gradient vs conv_backward. Returns
 * max |fast - ref| / (1e-4 (1 + |ref|)). */
static double conv_case(uint64_t seed)
{
    uint64_t st = seed * 104729 + 3;
    int nsp = rnd(&st, 0, 4) == 0 ? 1 : 2;
    int64_t batch = rnd(&st, 1, 3), group = 1, c = rnd(&st, 1, 10), m = rnd(&st, 1, 10);
    int kind = (int)rnd(&st, 0, 3); /* 0 plain, 1 grouped, 2 depthwise, 3 1x1 */
    if (kind == 1) {
        group = rnd(&st, 2, 3);
        c = group * rnd(&st, 1, 4);
        m = group * rnd(&st, 1, 4);
    } else if (kind == 2) {
        group = c = m = rnd(&st, 1, 12);
    }
    int64_t k[2], d[2], sp[2], pads[4];
    for (int i = 0; i < nsp; i++) {
        k[i] = kind == 3 ? 1 : rnd(&st, 1, 5);
        d[i] = kind == 3 ? 1 : rnd(&st, 1, 2);
        sp[i] = rnd(&st, 3, 15) + (k[i] - 1) * d[i];
        pads[i] = rnd(&st, 0, (k[i] - 1) * d[i]);
        pads[i + nsp] = rnd(&st, 0, (k[i] - 1) * d[i]);
    }
    int64_t ones[2] = {1, 1};
    cd_node n;
    cd_error err = {0};
    tu_node_make(&n, "Conv", 13, 2, 1);
    assert_int_equal(cd_node_add_ints(&n, "kernel_shape", k, (size_t)nsp, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(&n, "strides", ones, (size_t)nsp, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(&n, "dilations", d, (size_t)nsp, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(&n, "pads", pads, (size_t)(2 * nsp), &err), CD_OK);
    assert_int_equal(cd_node_add_int(&n, "group", group, &err), CD_OK);
    tu_node_bind(&n);
    int64_t xd[4] = {batch, c, sp[0], sp[1]}, wd[4] = {m, c / group, k[0], k[1]};
    cd_tensor *x = tu_random(2 + nsp, xd, seed + 1, -1, 1);
    cd_tensor *w = tu_random(2 + nsp, wd, seed + 2, -1, 1);
    cd_tensor *in[2] = {x, w}, *y = NULL;
    assert_int_equal(tu_run_node(&n, in, &y, false, &err), CD_OK);
    cd_tensor *gy = tu_random(y->ndim, y->dims, seed + 3, -1, 1);
    cd_tensor *ref = zeros(x->ndim, x->dims), *fast = tu_random(x->ndim, x->dims, 9, 5, 5);
    cd_tensor *fast2 = tu_random(x->ndim, x->dims, 9, 7, 7);
    generic_input_grad(&n, in, y, gy, ref);
    cd_conv_kernel *kern = NULL;
    if (cd_conv_kernel_create_input_grad(&n, in, &kern, &err) != CD_OK)
        fail_msg("seed %llu: %s", (unsigned long long)seed, err.message);
    cd_ctx ctx = {.err = &err, .threads = 1}, ctx2 = {.err = &err, .threads = 2};
    assert_int_equal(cd_ctx_ensure_pool(&ctx2), CD_OK);
    assert_int_equal(cd_conv_kernel_run(kern, gy->data, NULL, fast->data, &ctx), CD_OK);
    assert_int_equal(cd_conv_kernel_run(kern, gy->data, NULL, fast2->data, &ctx2), CD_OK);
    assert_memory_equal(fast->data, fast2->data, cd_tensor_nbytes(fast));
    double worst = 0;
    const float *r = ref->data, *f = fast->data;
    for (size_t i = 0; i < cd_tensor_numel(ref); i++)
        worst = fmax(worst, fabs((double)f[i] - r[i]) / (1e-4 * (1.0 + fabs(r[i]))));
    if (worst > 1)
        print_error("seed %llu: nsp %d b%lld c%lld m%lld g%lld k%lldx%lld d%lld,%lld: ratio %g\n",
                    (unsigned long long)seed, nsp, (long long)batch, (long long)c, (long long)m,
                    (long long)group, (long long)k[0], (long long)(nsp > 1 ? k[1] : 1),
                    (long long)d[0], (long long)(nsp > 1 ? d[1] : 1), worst);
    cd_conv_kernel_free(kern);
    free(ctx.scratch);
    cd_ctx_release(&ctx2);
    cd_tensor *all[] = {x, w, y, gy, ref, fast, fast2};
    free_case(all, sizeof all / sizeof *all, &n);
    return worst;
}

static void test_conv_input_grad(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 150; seed++)
        assert_true(conv_case(seed) <= 1.0);
}

/* Strided convs are refused (the plan keeps GEMM + col2im for them). */
static void test_conv_input_grad_strided_refused(void **state)
{
    (void)state;
    int64_t k[2] = {3, 3}, s[2] = {2, 2};
    cd_node n;
    cd_error err = {0};
    tu_node_make(&n, "Conv", 13, 2, 1);
    assert_int_equal(cd_node_add_ints(&n, "kernel_shape", k, 2, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(&n, "strides", s, 2, &err), CD_OK);
    tu_node_bind(&n);
    int64_t xd[4] = {1, 2, 9, 9}, wd[4] = {3, 2, 3, 3};
    cd_tensor *x = tu_random(4, xd, 1, -1, 1), *w = tu_random(4, wd, 2, -1, 1);
    cd_tensor *in[2] = {x, w};
    cd_conv_kernel *kern = NULL;
    assert_int_equal(cd_conv_kernel_create_input_grad(&n, in, &kern, &err), CD_ERR_UNSUPPORTED);
    assert_null(kern);
    cd_tensor_free(x);
    cd_tensor_free(w);
    cd_node_clear(&n);
}

/* --------------------------------------------------------------- ReLU */

static void test_relu(void **state)
{
    (void)state;
    int64_t dims[2] = {3, 50001}; /* several pool ranges */
    cd_tensor *x = tu_random(2, dims, 11, -1, 1), *gy = tu_random(2, dims, 12, -2, 2);
    float *xv = x->data;
    for (size_t i = 0; i < 1000; i++)
        xv[i * 37] = 0.0f; /* the kink itself: slope 0, as the operator */
    cd_node n;
    cd_error err = {0};
    tu_node_make(&n, "Relu", 13, 1, 1);
    tu_node_bind(&n);
    cd_tensor *in[1] = {x}, *y = NULL;
    assert_int_equal(tu_run_node(&n, in, &y, false, &err), CD_OK);
    /* Both add into a non-zero gradient (a value with two consumers). */
    cd_tensor *ref = tu_random(2, dims, 13, -1, 1), *f1 = tu_random(2, dims, 13, -1, 1);
    cd_tensor *f2 = tu_random(2, dims, 13, -1, 1);
    generic_input_grad(&n, in, y, gy, ref);
    cd_ctx ctx = {.err = &err, .threads = 1}, ctx2 = {.err = &err, .threads = 2};
    assert_int_equal(cd_ctx_ensure_pool(&ctx2), CD_OK);
    cd_relu_backward_fast(x->data, gy->data, f1->data, cd_tensor_numel(x), &ctx);
    cd_relu_backward_fast(x->data, gy->data, f2->data, cd_tensor_numel(x), &ctx2);
    assert_same_bits(ref, f1, f2);
    cd_ctx_release(&ctx2);
    cd_tensor *all[] = {x, gy, y, ref, f1, f2};
    free_case(all, sizeof all / sizeof *all, &n);
}

/* --------------------------------------------------------------- MaxPool */

static void maxpool_case(uint64_t seed)
{
    uint64_t st = seed * 7727 + 5;
    int64_t k[2] = {rnd(&st, 1, 4), rnd(&st, 1, 4)}, s[2] = {rnd(&st, 1, 3), rnd(&st, 1, 3)};
    int64_t d[2] = {rnd(&st, 1, 2), rnd(&st, 1, 2)}, pads[4];
    for (int i = 0; i < 4; i++)
        pads[i] = rnd(&st, 0, (k[i % 2] - 1)); /* ONNX: pads below the kernel */
    int64_t ceil = rnd(&st, 0, 1);
    cd_node n;
    cd_error err = {0};
    tu_node_make(&n, "MaxPool", 12, 1, 1);
    assert_int_equal(cd_node_add_ints(&n, "kernel_shape", k, 2, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(&n, "strides", s, 2, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(&n, "dilations", d, 2, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(&n, "pads", pads, 4, &err), CD_OK);
    assert_int_equal(cd_node_add_int(&n, "ceil_mode", ceil, &err), CD_OK);
    tu_node_bind(&n);
    int64_t xd[4] = {rnd(&st, 1, 2), rnd(&st, 1, 5), rnd(&st, 8, 20), rnd(&st, 8, 20)};
    cd_tensor *x = tu_random(4, xd, seed + 1, -1, 1);
    float *xv = x->data;
    for (size_t i = 0; i < cd_tensor_numel(x); i++)
        xv[i] = roundf(xv[i] * 3.0f); /* 7 levels: many ties in a window */
    cd_tensor *in[1] = {x}, *y = NULL;
    assert_int_equal(tu_run_node(&n, in, &y, false, &err), CD_OK);
    cd_tensor *gy = tu_random(4, y->dims, seed + 2, -1, 1);
    cd_tensor *ref = zeros(4, xd), *f1 = zeros(4, xd), *f2 = zeros(4, xd);
    generic_input_grad(&n, in, y, gy, ref);
    cd_win_geom g;
    assert_int_equal(cd_win_resolve(&n, 2, xd + 2, k, ceil != 0, &g, &err), CD_OK);
    cd_ctx ctx = {.err = &err, .threads = 1}, ctx2 = {.err = &err, .threads = 2};
    assert_int_equal(cd_ctx_ensure_pool(&ctx2), CD_OK);
    cd_maxpool2d_backward_fast(x->data, y->data, gy->data, f1->data, xd[0] * xd[1], &g, &ctx);
    cd_maxpool2d_backward_fast(x->data, y->data, gy->data, f2->data, xd[0] * xd[1], &g, &ctx2);
    assert_same_bits(ref, f1, f2);
    cd_ctx_release(&ctx2);
    cd_tensor *all[] = {x, y, gy, ref, f1, f2};
    free_case(all, sizeof all / sizeof *all, &n);
}

static void test_maxpool(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 60; seed++)
        maxpool_case(seed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_input_grad),
        cmocka_unit_test(test_conv_input_grad_strided_refused),
        cmocka_unit_test(test_relu),
        cmocka_unit_test(test_maxpool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
