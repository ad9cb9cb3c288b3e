/* Conv and ConvTranspose: forward against naive loops written here (ONNX
 * semantics worked out independently of core/ops/conv.c), the fast kernel
 * against the library's reference kernel on random shapes, and backward
 * against central finite differences. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops/conv_ref.h"
#include "core/parallel.h"
#include "core/plan64.h"
#include "testutil.h"

/* The case tables below list fields positionally and leave the trailing
 * ConvTranspose-only fields zero; that is intended. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

typedef struct conv_case {
    int nsp;
    int64_t batch, c, m, group;
    int64_t in[3], k[3], s[3], d[3];
    int64_t pads[6];        /* begins then ends, nsp each */
    const char *auto_pad;   /* NULL = attribute absent */
    bool bias;
    bool omit_kernel_shape; /* infer the kernel from W */
    /* ConvTranspose only */
    int64_t opad[3];
    int64_t oshape[3];      /* oshape[0] > 0: pass output_shape */
} conv_case;

/* Test-side geometry ------------------------------------------------------- */

typedef struct tgeom {
    int64_t in[3], out[3], k[3], s[3], d[3], pb[3];
} tgeom;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Output size and leading pads of a Conv, per the ONNX operator text. */
static void conv_geom(const conv_case *c, tgeom *g)
{
    for (int i = 0; i < 3; i++) {
        bool real = i < c->nsp;
        g->in[i] = real ? c->in[i] : 1;
        g->k[i] = real ? c->k[i] : 1;
        g->s[i] = real && c->s[i] ? c->s[i] : 1;
        g->d[i] = real && c->d[i] ? c->d[i] : 1;
        int64_t ek = (g->k[i] - 1) * g->d[i] + 1;
        if (!real) {
            g->out[i] = 1;
            g->pb[i] = 0;
        } else if (c->auto_pad && strncmp(c->auto_pad, "SAME", 4) == 0) {
            g->out[i] = ceil_div(g->in[i], g->s[i]);
            int64_t total = (g->out[i] - 1) * g->s[i] + ek - g->in[i];
            if (total < 0)
                total = 0;
            bool upper = strcmp(c->auto_pad, "SAME_UPPER") == 0;
            g->pb[i] = upper ? total / 2 : (total + 1) / 2;
        } else if (c->auto_pad && strcmp(c->auto_pad, "VALID") == 0) {
            g->out[i] = (g->in[i] - ek) / g->s[i] + 1;
            g->pb[i] = 0;
        } else {
            g->pb[i] = c->pads[i];
            g->out[i] = (g->in[i] + c->pads[i] + c->pads[c->nsp + i] - ek) / g->s[i] + 1;
        }
    }
}

/* y[b, m, o] = B[m] + sum_{c in group, kk} W[m, c, kk] x[b, g*cg + c, o*s - pb + kk*d]. */
static void naive_conv(const conv_case *c, const tgeom *g, const float *x, const float *w,
                       const float *b, float *y)
{
    int64_t cg = c->c / c->group, mg = c->m / c->group;
    int64_t isp = g->in[0] * g->in[1] * g->in[2], osp = g->out[0] * g->out[1] * g->out[2];
    int64_t ksp = g->k[0] * g->k[1] * g->k[2];
    for (int64_t n = 0; n < c->batch; n++)
        for (int64_t m = 0; m < c->m; m++)
            for (int64_t p = 0; p < osp; p++) {
                int64_t o[3] = {p / (g->out[1] * g->out[2]), (p / g->out[2]) % g->out[1],
                                p % g->out[2]};
                double acc = b ? b[m] : 0.0;
                for (int64_t ci = 0; ci < cg; ci++)
                    for (int64_t kk = 0; kk < ksp; kk++) {
                        int64_t kv[3] = {kk / (g->k[1] * g->k[2]), (kk / g->k[2]) % g->k[1],
                                         kk % g->k[2]};
                        int64_t at[3];
                        bool inside = true;
                        for (int i = 0; i < 3; i++) {
                            at[i] = o[i] * g->s[i] - g->pb[i] + kv[i] * g->d[i];
                            inside = inside && at[i] >= 0 && at[i] < g->in[i];
                        }
                        if (!inside)
                            continue;
                        int64_t ch = (m / mg) * cg + ci;
                        acc += (double)w[(m * cg + ci) * ksp + kk] *
                               x[(n * c->c + ch) * isp + (at[0] * g->in[1] + at[1]) * g->in[2] +
                                 at[2]];
                    }
                y[(n * c->m + m) * osp + p] = (float)acc;
            }
}

static void add_common_attrs(cd_node *n, const conv_case *c)
{
    cd_error err;
    int64_t s[3], d[3];
    for (int i = 0; i < c->nsp; i++) {
        s[i] = c->s[i] ? c->s[i] : 1;
        d[i] = c->d[i] ? c->d[i] : 1;
    }
    if (!c->omit_kernel_shape)
        assert_int_equal(cd_node_add_ints(n, "kernel_shape", c->k, (size_t)c->nsp, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "strides", s, (size_t)c->nsp, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "dilations", d, (size_t)c->nsp, &err), CD_OK);
    if (c->auto_pad)
        assert_int_equal(cd_node_add_string(n, "auto_pad", c->auto_pad, &err), CD_OK);
    else
        assert_int_equal(cd_node_add_ints(n, "pads", c->pads, 2 * (size_t)c->nsp, &err), CD_OK);
    if (c->group != 1)
        assert_int_equal(cd_node_add_int(n, "group", c->group, &err), CD_OK);
}

static void make_conv_node(cd_node *n, const char *op, const conv_case *c)
{
    cd_error err;
    assert_int_equal(cd_node_init(n, op, 13, c->bias ? 3 : 2, 1, &err), CD_OK);
    add_common_attrs(n, c);
    if (strcmp(op, "ConvTranspose") == 0) {
        if (c->opad[0] || c->opad[1] || c->opad[2])
            assert_int_equal(cd_node_add_ints(n, "output_padding", c->opad, (size_t)c->nsp, &err),
                             CD_OK);
        if (c->oshape[0] > 0)
            assert_int_equal(cd_node_add_ints(n, "output_shape", c->oshape, (size_t)c->nsp, &err),
                             CD_OK);
    }
    if (cd_node_bind(n, &err) != CD_OK)
        fail_msg("bind: %s", err.message);
}

/* Random X, W (Conv layout [M, C/G, k...]) and B for a case. */
static void make_inputs(const conv_case *c, bool transpose, uint64_t seed, cd_tensor **in)
{
    int64_t xd[5] = {c->batch, c->c}, wd[5];
    wd[0] = transpose ? c->c : c->m;
    wd[1] = transpose ? c->m / c->group : c->c / c->group;
    for (int i = 0; i < c->nsp; i++) {
        xd[2 + i] = c->in[i];
        wd[2 + i] = c->k[i];
    }
    in[0] = tu_random(2 + c->nsp, xd, seed, -1.f, 1.f);
    in[1] = tu_random(2 + c->nsp, wd, seed + 1, -1.f, 1.f);
    int64_t bd[1] = {c->m};
    in[2] = c->bias ? tu_random(1, bd, seed + 2, -1.f, 1.f) : NULL;
}

static void free_inputs(cd_tensor **in)
{
    for (int i = 0; i < 3; i++)
        cd_tensor_free(in[i]);
}

static void check_conv_case(const conv_case *c, uint64_t seed)
{
    cd_node n;
    make_conv_node(&n, "Conv", c);
    cd_tensor *in[3], *out[1];
    make_inputs(c, false, seed, in);
    cd_error err;
    if (tu_run_node(&n, in, out, false, &err) != CD_OK)
        fail_msg("conv forward: %s", err.message);
    tgeom g;
    conv_geom(c, &g);
    assert_int_equal(out[0]->ndim, 2 + c->nsp);
    assert_int_equal(out[0]->dims[1], c->m);
    for (int i = 0; i < c->nsp; i++)
        assert_int_equal(out[0]->dims[2 + i], g.out[i]);
    cd_tensor *want = NULL;
    assert_int_equal(cd_tensor_create(CD_FLOAT32, out[0]->ndim, out[0]->dims, &want, NULL), CD_OK);
    naive_conv(c, &g, in[0]->data, in[1]->data, in[2] ? in[2]->data : NULL, want->data);
    double diff = tu_max_abs_diff(out[0], want);
    if (diff > 1e-4)
        fail_msg("conv nsp=%d group=%lld: max diff %g", c->nsp, (long long)c->group, diff);
    cd_tensor_free(want);
    cd_tensor_free(out[0]);
    free_inputs(in);
    cd_node_clear(&n);
}

static const conv_case conv_cases[] = {
    /* 2-D basics, stride, asymmetric pads, dilation */
    {2, 2, 3, 4, 1, {7, 6}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, NULL, true},
    {2, 1, 2, 3, 1, {9, 7}, {3, 2}, {2, 3}, {1, 1}, {1, 0, 2, 1}, NULL, false},
    {2, 1, 3, 2, 1, {10, 9}, {3, 3}, {2, 1}, {2, 3}, {2, 1, 0, 3}, NULL, true},
    /* groups and depthwise (with multiplier) */
    {2, 2, 4, 6, 2, {6, 5}, {3, 2}, {1, 2}, {1, 1}, {0, 1, 1, 0}, NULL, true},
    {2, 1, 4, 4, 4, {6, 6}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, NULL, true},
    {2, 2, 3, 6, 3, {7, 7}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}, NULL, false},
    /* auto_pad */
    {2, 1, 2, 3, 1, {7, 6}, {3, 4}, {2, 2}, {1, 1}, {0}, "SAME_UPPER", true},
    {2, 1, 2, 3, 1, {7, 6}, {3, 4}, {2, 3}, {2, 1}, {0}, "SAME_LOWER", false},
    {2, 1, 2, 3, 1, {7, 6}, {3, 2}, {2, 1}, {1, 1}, {0}, "VALID", true},
    /* 1-D and 3-D */
    {1, 2, 3, 4, 1, {11}, {3}, {2}, {2}, {1, 2}, NULL, true},
    {1, 1, 4, 4, 2, {8}, {5}, {1}, {1}, {2, 2}, NULL, false},
    {3, 1, 2, 3, 1, {5, 4, 6}, {2, 3, 2}, {1, 2, 1}, {1, 1, 2}, {1, 0, 1, 0, 1, 1}, NULL, true},
    {3, 2, 4, 4, 2, {4, 5, 4}, {3, 3, 3}, {2, 1, 1}, {1, 1, 1}, {1, 1, 1, 1, 1, 1}, NULL, false},
    /* 1x1 direct path, and a kernel inferred from W */
    {2, 2, 5, 3, 1, {4, 6}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, NULL, true},
    {2, 1, 4, 2, 2, {5, 5}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, NULL, false, true},
    {2, 1, 3, 2, 1, {6, 5}, {2, 3}, {1, 1}, {1, 1}, {0, 1, 0, 1}, NULL, true, true},
    /* 1x1 with stride: not the direct path */
    {2, 1, 3, 2, 1, {6, 5}, {1, 1}, {2, 2}, {1, 1}, {0, 0, 0, 0}, NULL, true},
};

static void test_conv_forward_vs_naive(void **state)
{
    (void)state;
    for (size_t i = 0; i < CD_COUNT_OF(conv_cases); i++)
        check_conv_case(&conv_cases[i], 100 + i);
}

/* ncnn pattern: the im2col+sgemm kernel against the library's own naive
 * reference on randomly drawn shapes. */
static void test_conv_fast_vs_reference_random(void **state)
{
    (void)state;
    uint64_t rng = 7;
    for (int trial = 0; trial < 40; trial++) {
        conv_case c = {0};
        c.nsp = 1 + (int)tu_uniform(&rng, 0, 3);
        c.group = 1 + (int64_t)tu_uniform(&rng, 0, 3);
        c.c = c.group * (1 + (int64_t)tu_uniform(&rng, 0, 3));
        c.m = c.group * (1 + (int64_t)tu_uniform(&rng, 0, 3));
        c.batch = 1 + (int64_t)tu_uniform(&rng, 0, 2);
        c.bias = tu_uniform(&rng, 0, 1) < 0.5f;
        for (int i = 0; i < c.nsp; i++) {
            c.k[i] = 1 + (int64_t)tu_uniform(&rng, 0, 3);
            c.s[i] = 1 + (int64_t)tu_uniform(&rng, 0, 2);
            c.d[i] = 1 + (int64_t)tu_uniform(&rng, 0, 2);
            c.pads[i] = (int64_t)tu_uniform(&rng, 0, 3);
            c.pads[c.nsp + i] = (int64_t)tu_uniform(&rng, 0, 3);
            c.in[i] = (c.k[i] - 1) * c.d[i] + 1 + (int64_t)tu_uniform(&rng, 0, c.nsp == 3 ? 3 : 6);
        }
        cd_node n;
        make_conv_node(&n, "Conv", &c);
        cd_tensor *in[3], *out[1];
        make_inputs(&c, false, 500 + (uint64_t)trial, in);
        cd_error err;
        if (tu_run_node(&n, in, out, false, &err) != CD_OK)
            fail_msg("trial %d: %s", trial, err.message);
        cd_win_geom g;
        assert_int_equal(cd_win_resolve(&n, c.nsp, c.in, c.k, false, &g, &err), CD_OK);
        cd_tensor *ref = NULL;
        assert_int_equal(cd_tensor_create(CD_FLOAT32, out[0]->ndim, out[0]->dims, &ref, NULL),
                         CD_OK);
        cd_conv_ref(in[0]->data, in[1]->data, in[2] ? in[2]->data : NULL, ref->data, c.batch, c.c,
                    c.m, c.group, &g);
        double diff = tu_max_abs_diff(out[0], ref);
        if (diff > 1e-4)
            fail_msg("trial %d (nsp %d, group %lld): diff %g", trial, c.nsp, (long long)c.group,
                     diff);
        cd_tensor_free(ref);
        cd_tensor_free(out[0]);
        free_inputs(in);
        cd_node_clear(&n);
    }
}

/* ConvTranspose ------------------------------------------------------------ */

/* Output size and leading pad of a ConvTranspose per the ONNX text: explicit
 * output_shape or SAME fix the size (pads split with SAME_UPPER's odd element
 * at the end, otherwise at the start; never negative); else pads fix it. */
static void convt_geom(const conv_case *c, tgeom *g)
{
    for (int i = 0; i < 3; i++) {
        bool real = i < c->nsp;
        g->in[i] = real ? c->in[i] : 1;
        g->k[i] = real ? c->k[i] : 1;
        g->s[i] = real && c->s[i] ? c->s[i] : 1;
        g->d[i] = real && c->d[i] ? c->d[i] : 1;
        if (!real) {
            g->out[i] = 1;
            g->pb[i] = 0;
            continue;
        }
        int64_t full = g->s[i] * (g->in[i] - 1) + c->opad[i] + (g->k[i] - 1) * g->d[i] + 1;
        bool same = c->auto_pad && strncmp(c->auto_pad, "SAME", 4) == 0;
        if (c->oshape[0] > 0 || same) {
            g->out[i] = c->oshape[0] > 0 ? c->oshape[i] : g->in[i] * g->s[i];
            int64_t total = full > g->out[i] ? full - g->out[i] : 0;
            bool upper = c->auto_pad && strcmp(c->auto_pad, "SAME_UPPER") == 0;
            g->pb[i] = upper ? total / 2 : total - total / 2;
        } else {
            g->pb[i] = c->pads[i];
            g->out[i] = full - c->pads[i] - c->pads[c->nsp + i];
        }
    }
}

/* Scatter form: every x[b, c, i] * W[c, m, kk] lands on y[b, g*mg+m, i*s - pb + kk*d]. */
static void naive_convt(const conv_case *c, const tgeom *g, const float *x, const float *w,
                        const float *b, float *y)
{
    int64_t cg = c->c / c->group, mg = c->m / c->group;
    int64_t isp = g->in[0] * g->in[1] * g->in[2], osp = g->out[0] * g->out[1] * g->out[2];
    int64_t ksp = g->k[0] * g->k[1] * g->k[2];
    for (int64_t n = 0; n < c->batch; n++)
        for (int64_t m = 0; m < c->m; m++)
            for (int64_t p = 0; p < osp; p++)
                y[(n * c->m + m) * osp + p] = b ? b[m] : 0.0f;
    for (int64_t n = 0; n < c->batch; n++)
        for (int64_t ch = 0; ch < c->c; ch++)
            for (int64_t p = 0; p < isp; p++) {
                int64_t iv[3] = {p / (g->in[1] * g->in[2]), (p / g->in[2]) % g->in[1],
                                 p % g->in[2]};
                float xv = x[(n * c->c + ch) * isp + p];
                for (int64_t m = 0; m < mg; m++)
                    for (int64_t kk = 0; kk < ksp; kk++) {
                        int64_t kv[3] = {kk / (g->k[1] * g->k[2]), (kk / g->k[2]) % g->k[1],
                                         kk % g->k[2]};
                        int64_t at[3];
                        bool inside = true;
                        for (int i = 0; i < 3; i++) {
                            at[i] = iv[i] * g->s[i] - g->pb[i] + kv[i] * g->d[i];
                            inside = inside && at[i] >= 0 && at[i] < g->out[i];
                        }
                        if (!inside)
                            continue;
                        int64_t om = (ch / cg) * mg + m;
                        y[(n * c->m + om) * osp + (at[0] * g->out[1] + at[1]) * g->out[2] + at[2]] +=
                            xv * w[(ch * mg + m) * ksp + kk];
                    }
            }
}

static const conv_case convt_cases[] = {
    {2, 1, 1, 2, 1, {3, 3}, {3, 3}, {1, 1}, {1, 1}, {0, 0, 0, 0}, NULL, false},
    {2, 2, 3, 4, 1, {4, 3}, {3, 3}, {3, 2}, {1, 1}, {1, 2, 1, 0}, NULL, true, false, {1, 1}},
    {2, 1, 4, 6, 2, {3, 4}, {2, 3}, {2, 2}, {2, 1}, {0, 1, 1, 0}, NULL, true},
    {2, 1, 4, 4, 4, {5, 5}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}, NULL, true}, /* depthwise */
    {2, 1, 2, 3, 1, {3, 3}, {3, 3}, {2, 2}, {1, 1}, {0}, "SAME_UPPER", true},
    {2, 1, 2, 3, 1, {3, 4}, {3, 2}, {2, 3}, {1, 1}, {0}, "SAME_LOWER", false},
    {2, 1, 1, 2, 1, {3, 3}, {3, 3}, {3, 2}, {1, 1}, {0}, NULL, false, false, {0}, {10, 8}},
    {2, 1, 2, 2, 1, {3, 3}, {3, 3}, {3, 2}, {1, 1}, {0}, NULL, true, false, {1, 1}, {9, 6}},
    {1, 2, 2, 3, 1, {5}, {3}, {2}, {2}, {1, 0}, NULL, true, false, {1}},
    {3, 1, 2, 2, 2, {2, 3, 2}, {2, 2, 3}, {2, 1, 2}, {1, 1, 1}, {0, 1, 0, 0, 0, 1}, NULL, true},
    {2, 2, 3, 2, 1, {4, 5}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, NULL, true}, /* direct */
};

static void test_convtranspose_forward_vs_naive(void **state)
{
    (void)state;
    for (size_t ci = 0; ci < CD_COUNT_OF(convt_cases); ci++) {
        const conv_case *c = &convt_cases[ci];
        cd_node n;
        make_conv_node(&n, "ConvTranspose", c);
        cd_tensor *in[3], *out[1];
        make_inputs(c, true, 900 + ci, in);
        cd_error err;
        if (tu_run_node(&n, in, out, false, &err) != CD_OK)
            fail_msg("case %zu: %s", ci, err.message);
        tgeom g;
        convt_geom(c, &g);
        for (int i = 0; i < c->nsp; i++)
            if (out[0]->dims[2 + i] != g.out[i])
                fail_msg("case %zu dim %d: %lld, expected %lld", ci, i,
                         (long long)out[0]->dims[2 + i], (long long)g.out[i]);
        cd_tensor *want = NULL;
        assert_int_equal(cd_tensor_create(CD_FLOAT32, out[0]->ndim, out[0]->dims, &want, NULL),
                         CD_OK);
        naive_convt(c, &g, in[0]->data, in[1]->data, in[2] ? in[2]->data : NULL, want->data);
        double diff = tu_max_abs_diff(out[0], want);
        if (diff > 1e-4)
            fail_msg("convtranspose case %zu: max diff %g", ci, diff);
        cd_tensor_free(want);
        cd_tensor_free(out[0]);
        free_inputs(in);
        cd_node_clear(&n);
    }
}

/* Gradients ---------------------------------------------------------------- */

static void gradcheck_case(const char *op, const conv_case *c, uint64_t seed)
{
    cd_node n;
    make_conv_node(&n, op, c);
    cd_tensor *in[3];
    make_inputs(c, strcmp(op, "ConvTranspose") == 0, seed, in);
    bool check[3] = {true, true, c->bias};
    double worst = tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-3);
    if (!(worst <= 1.0))
        fail_msg("%s gradcheck (nsp %d, group %lld): normalised error %g", op, c->nsp,
                 (long long)c->group, worst);
    free_inputs(in);
    cd_node_clear(&n);
}

static const conv_case grad_cases[] = {
    {2, 2, 2, 2, 1, {5, 4}, {3, 2}, {2, 1}, {1, 2}, {1, 0, 0, 1}, NULL, true},
    {2, 1, 4, 4, 2, {4, 4}, {2, 2}, {1, 1}, {1, 1}, {1, 1, 0, 0}, NULL, true},
    {2, 1, 3, 3, 3, {4, 5}, {3, 3}, {1, 2}, {1, 1}, {0}, "SAME_UPPER", false},
    {1, 2, 2, 3, 1, {7}, {3}, {2}, {2}, {2, 1}, NULL, true},
    {3, 1, 2, 2, 1, {3, 4, 3}, {2, 2, 2}, {1, 2, 1}, {1, 1, 1}, {1, 0, 0, 0, 1, 1}, NULL, true},
    {2, 2, 3, 2, 1, {3, 4}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, NULL, true}, /* direct */
    /* depthwise with multiplier 2, batch 2, SAME_LOWER with stride */
    {2, 2, 2, 4, 2, {5, 4}, {3, 2}, {2, 1}, {1, 1}, {0}, "SAME_LOWER", true},
    {2, 1, 2, 3, 1, {6, 5}, {2, 2}, {1, 2}, {2, 1}, {0}, "VALID", false},
    /* 1x1 with stride and pads: not the direct path */
    {2, 1, 3, 2, 1, {5, 4}, {1, 1}, {2, 2}, {1, 1}, {1, 0, 0, 1}, NULL, true},
    /* 3-D with groups, dilation and batch 2; 1-D depthwise SAME_UPPER strided */
    {3, 2, 4, 2, 2, {3, 4, 4}, {2, 2, 2}, {1, 1, 2}, {1, 2, 1}, {0, 1, 0, 1, 0, 1}, NULL, true},
    {1, 1, 3, 3, 3, {8}, {4}, {3}, {1}, {0}, "SAME_UPPER", true},
};

static void test_conv_gradcheck(void **state)
{
    (void)state;
    for (size_t i = 0; i < CD_COUNT_OF(grad_cases); i++)
        gradcheck_case("Conv", &grad_cases[i], 300 + i);
}

static const conv_case convt_grad_cases[] = {
    {2, 2, 2, 2, 1, {3, 3}, {3, 2}, {2, 3}, {1, 1}, {1, 0, 0, 1}, NULL, true, false, {1, 1}},
    {2, 1, 4, 2, 2, {3, 3}, {2, 3}, {2, 1}, {2, 1}, {0, 0, 1, 1}, NULL, true},
    {2, 1, 1, 2, 1, {2, 3}, {3, 3}, {2, 2}, {1, 1}, {0}, NULL, false, false, {0}, {6, 8}},
    {1, 1, 2, 3, 1, {4}, {3}, {2}, {1}, {0}, "SAME_LOWER", true},
    {3, 1, 2, 2, 1, {2, 2, 3}, {2, 2, 2}, {2, 1, 1}, {1, 1, 1}, {0, 0, 1, 1, 0, 0}, NULL, true},
    {2, 1, 3, 2, 1, {3, 4}, {1, 1}, {1, 1}, {1, 1}, {0, 0, 0, 0}, NULL, true}, /* direct */
    /* depthwise, batch 2, SAME_UPPER strided */
    {2, 2, 3, 3, 3, {3, 3}, {3, 3}, {2, 2}, {1, 1}, {0}, "SAME_UPPER", true},
    /* groups with output_padding and dilation, batch 2 */
    {2, 2, 4, 6, 2, {3, 2}, {2, 2}, {2, 3}, {2, 1}, {1, 0, 0, 1}, NULL, false, false, {1, 2}},
    {2, 1, 2, 2, 1, {3, 2}, {2, 3}, {2, 1}, {1, 1}, {0}, "VALID", true},
    /* 3-D with groups and output_padding; strided 1x1 (not direct) */
    {3, 1, 2, 4, 2, {2, 2, 2}, {2, 1, 2}, {2, 2, 1}, {1, 1, 2}, {0, 0, 0, 0, 0, 1}, NULL, true,
     false, {1, 1, 0}},
    {2, 1, 2, 3, 1, {3, 3}, {1, 1}, {2, 2}, {1, 1}, {0, 0, 0, 0}, NULL, true, false, {1, 0}},
};

static void test_convtranspose_gradcheck(void **state)
{
    (void)state;
    for (size_t i = 0; i < CD_COUNT_OF(convt_grad_cases); i++)
        gradcheck_case("ConvTranspose", &convt_grad_cases[i], 700 + i);
}

/* Float64 kernels on products large enough for their dgemm to be cut into
 * ranges (of rows and of columns, with and without transposes), run
 * serially and on a 2-thread pool into outputs prefilled with NaN (the
 * executor reuses buffers unzeroed): bit-identical for both thread counts
 * and within float32 rounding of the float32 kernels (out, dX, dW, dB). */
static void widen_all(cd_tensor **t32, cd_tensor **t64, int count)
{
    cd_error err;
    for (int i = 0; i < count; i++) {
        t64[i] = NULL;
        if (t32[i])
            assert_int_equal(cd_tensor_widen(t32[i], &t64[i], &err), CD_OK);
    }
}

static void expect_near_f32(const cd_tensor *a64, const cd_tensor *b32, const char *op,
                            const char *what)
{
    size_t cnt = cd_tensor_numel(b32);
    const double *a = a64->data;
    const float *b = b32->data;
    double mx = 0;
    for (size_t i = 0; i < cnt; i++)
        mx = fmax(mx, fabs((double)b[i]));
    for (size_t i = 0; i < cnt; i++)
        if (!(fabs(a[i] - b[i]) <= 1e-5 * (1 + mx)))
            fail_msg("%s %s element %zu: float64 %.9g float32 %.9g", op, what, i, a[i],
                     (double)b[i]);
}

static void check_f64_large(const char *op, const conv_case *c, uint64_t seed)
{
    cd_node n;
    make_conv_node(&n, op, c);
    const cd_op_def *def = cd_op_get(n.op);
    int nin = n.n_inputs;
    cd_tensor *in[3], *out32[1], *gy[1], *g32[3] = {0}, *res[2][4] = {{0}};
    make_inputs(c, strcmp(op, "ConvTranspose") == 0, seed, in);
    cd_error err;
    if (tu_run_node(&n, in, out32, true, &err) != CD_OK)
        fail_msg("%s forward: %s", op, err.message);
    gy[0] = tu_random(out32[0]->ndim, out32[0]->dims, seed + 5, -1.f, 1.f);
    for (int i = 0; i < nin; i++)
        assert_int_equal(cd_tensor_create(CD_FLOAT32, in[i]->ndim, in[i]->dims, &g32[i], NULL),
                         CD_OK);
    cd_ctx ctx = {.err = &err, .threads = 1};
    assert_int_equal(def->backward(&n, in, out32, gy, g32, &ctx), CD_OK);
    cd_ctx_release(&ctx);
    for (int run = 0; run < 2; run++) {
        cd_tensor *in64[3], *gy64[1], **r = res[run];
        widen_all(in, in64, nin);
        widen_all(gy, gy64, 1);
        assert_int_equal(cd_tensor_create(CD_FLOAT64, out32[0]->ndim, out32[0]->dims, &r[0],
                                          NULL),
                         CD_OK);
        double *y = r[0]->data;
        for (size_t i = 0; i < cd_tensor_numel(r[0]); i++)
            y[i] = NAN;
        for (int i = 0; i < nin; i++)
            assert_int_equal(
                cd_tensor_create(CD_FLOAT64, in[i]->ndim, in[i]->dims, &r[1 + i], NULL), CD_OK);
        cd_ctx c64 = {.err = &err, .threads = run ? 2 : 1};
        assert_int_equal(cd_ctx_ensure_pool(&c64), CD_OK);
        if (def->forward64(&n, in64, r, &c64) != CD_OK ||
            def->backward64(&n, in64, r, gy64, r + 1, &c64) != CD_OK)
            fail_msg("%s float64: %s", op, err.message);
        cd_ctx_release(&c64);
        cd_tensor_free(gy64[0]);
        for (int i = 0; i < nin; i++)
            cd_tensor_free(in64[i]);
    }
    static const char *const what[] = {"output", "dX", "dW", "dB"};
    for (int i = 0; i <= nin; i++) {
        size_t bytes = cd_tensor_numel(res[0][i]) * sizeof(double);
        if (memcmp(res[0][i]->data, res[1][i]->data, bytes) != 0)
            fail_msg("%s %s: 1 and 2 threads differ", op, what[i]);
        expect_near_f32(res[0][i], i ? g32[i - 1] : out32[0], op, what[i]);
    }
    for (int i = 0; i < 4; i++) {
        cd_tensor_free(res[0][i]);
        cd_tensor_free(res[1][i]);
    }
    for (int i = 0; i < nin; i++)
        cd_tensor_free(g32[i]);
    cd_tensor_free(gy[0]);
    cd_tensor_free(out32[0]);
    free_inputs(in);
    cd_node_clear(&n);
}

static void test_f64_large_products(void **state)
{
    (void)state;
    /* Conv: wide planes (column cuts), then a 7x7 plane with many channels
     * (row cuts); ConvTranspose the same way round. */
    static const conv_case conv[] = {
        {2, 2, 16, 32, 1, {32, 32}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, NULL, true},
        {2, 1, 64, 64, 1, {7, 7}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, NULL, true},
        {2, 1, 64, 32, 2, {14, 14}, {3, 3}, {2, 2}, {1, 1}, {1, 0, 1, 1}, NULL, false},
    };
    static const conv_case convt[] = {
        {2, 1, 32, 16, 1, {16, 16}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}, NULL, true, false,
         {1, 1}},
        {2, 1, 64, 64, 1, {7, 7}, {3, 3}, {1, 1}, {1, 1}, {1, 1, 1, 1}, NULL, true},
    };
    for (size_t i = 0; i < CD_COUNT_OF(conv); i++)
        check_f64_large("Conv", &conv[i], 40 + i);
    for (size_t i = 0; i < CD_COUNT_OF(convt); i++)
        check_f64_large("ConvTranspose", &convt[i], 60 + i);
}

/* Errors ------------------------------------------------------------------- */

static void expect_infer_error(cd_node *n, cd_tensor **in, const char *needle)
{
    cd_tensor *out[1] = {0};
    cd_error err = {0};
    cd_status st = tu_run_node(n, in, out, false, &err);
    assert_int_not_equal(st, CD_OK);
    if (!strstr(err.message, needle) || !strstr(err.message, "Conv"))
        fail_msg("message '%s' lacks '%s'", err.message, needle);
}

static void test_conv_errors(void **state)
{
    (void)state;
    conv_case c = {2, 1, 4, 4, 1, {5, 5}, {3, 3}, {1, 1}, {1, 1}, {0, 0, 0, 0}, NULL, false};
    cd_node n;
    cd_tensor *in[3];
    /* W built for group 2 but the node says group 1 */
    conv_case wg = c;
    wg.group = 2;
    make_conv_node(&n, "Conv", &c);
    make_inputs(&wg, false, 1, in);
    expect_infer_error(&n, in, "group");
    free_inputs(in);
    cd_node_clear(&n);
    /* kernel larger than the padded input */
    conv_case big = c;
    big.k[0] = big.k[1] = 7;
    make_conv_node(&n, "Conv", &big);
    make_inputs(&big, false, 2, in);
    expect_infer_error(&n, in, "exceeds");
    free_inputs(in);
    cd_node_clear(&n);
    /* unknown auto_pad is refused at bind time */
    cd_error err;
    assert_int_equal(cd_node_init(&n, "Conv", 13, 2, 1, &err), CD_OK);
    assert_int_equal(cd_node_add_string(&n, "auto_pad", "SIDEWAYS", &err), CD_OK);
    assert_int_not_equal(cd_node_bind(&n, &err), CD_OK);
    assert_non_null(strstr(err.message, "SIDEWAYS"));
    cd_node_clear(&n);
}

/* While core/ops/stubs.c still holds weak placeholders, a test linked from a
 * static archive must reference the real definitions itself, or the linker
 * may satisfy the registry with the stubs. */
const cd_op_def *const conv_defs_used[] = {&cd_opdef_CONV, &cd_opdef_CONV_TRANSPOSE};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_forward_vs_naive),
        cmocka_unit_test(test_conv_fast_vs_reference_random),
        cmocka_unit_test(test_convtranspose_forward_vs_naive),
        cmocka_unit_test(test_conv_gradcheck),
        cmocka_unit_test(test_convtranspose_gradcheck),
        cmocka_unit_test(test_f64_large_products),
        cmocka_unit_test(test_conv_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
