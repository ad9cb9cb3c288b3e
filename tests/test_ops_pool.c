/* MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool: forward against
 * naive loops written here, Indices layout, a few PyTorch-derived values for
 * the ceil_mode rules, and backward against central finite differences. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* The case tables list fields positionally and leave trailing flags zero. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

typedef struct pool_case {
    int nsp;
    int64_t batch, c;
    int64_t in[3], k[3], s[3], d[3];
    int64_t pads[6];
    const char *auto_pad;
    bool ceil_mode, include_pad;
} pool_case;

typedef struct tgeom {
    int64_t in[3], out[3], k[3], s[3], d[3], pb[3], pe[3];
} tgeom;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* ONNX pooling output size: floor or ceil of (padded - window)/stride + 1; in
 * ceil mode a last window starting in the right padding is dropped. */
static void pool_geom(const pool_case *c, tgeom *g)
{
    for (int i = 0; i < 3; i++) {
        bool real = i < c->nsp;
        g->in[i] = real ? c->in[i] : 1;
        g->k[i] = real ? c->k[i] : 1;
        g->s[i] = real && c->s[i] ? c->s[i] : 1;
        g->d[i] = real && c->d[i] ? c->d[i] : 1;
        g->pb[i] = g->pe[i] = 0;
        int64_t ek = (g->k[i] - 1) * g->d[i] + 1;
        if (!real) {
            g->out[i] = 1;
        } else if (c->auto_pad && strncmp(c->auto_pad, "SAME", 4) == 0) {
            g->out[i] = ceil_div(g->in[i], g->s[i]);
            int64_t total = (g->out[i] - 1) * g->s[i] + ek - g->in[i];
            total = total < 0 ? 0 : total;
            g->pb[i] = strcmp(c->auto_pad, "SAME_UPPER") == 0 ? total / 2 : (total + 1) / 2;
            g->pe[i] = total - g->pb[i];
        } else {
            if (!c->auto_pad) {
                g->pb[i] = c->pads[i];
                g->pe[i] = c->pads[c->nsp + i];
            }
            int64_t span = g->in[i] + g->pb[i] + g->pe[i] - ek;
            g->out[i] = (c->ceil_mode ? ceil_div(span, g->s[i]) : span / g->s[i]) + 1;
            if (c->ceil_mode && (g->out[i] - 1) * g->s[i] >= g->in[i] + g->pb[i])
                g->out[i]--;
        }
    }
}

/* For output position p of one plane: max (and its plane index) and the
 * average with the chosen divisor. */
static void naive_window(const tgeom *g, const float *x, int64_t p, bool include_pad,
                         float *mx, int64_t *arg, float *avg)
{
    int64_t o[3] = {p / (g->out[1] * g->out[2]), (p / g->out[2]) % g->out[1], p % g->out[2]};
    double sum = 0;
    int64_t valid = 0, padded = 1;
    *arg = -1;
    for (int i = 0; i < 3; i++) {
        int64_t cnt = 0;
        for (int64_t k = 0; k < g->k[i]; k++) {
            int64_t at = o[i] * g->s[i] - g->pb[i] + k * g->d[i];
            cnt += at >= -g->pb[i] && at < g->in[i] + g->pe[i];
        }
        padded *= cnt;
    }
    for (int64_t k0 = 0; k0 < g->k[0]; k0++)
        for (int64_t k1 = 0; k1 < g->k[1]; k1++)
            for (int64_t k2 = 0; k2 < g->k[2]; k2++) {
                int64_t kv[3] = {k0, k1, k2}, at[3];
                bool inside = true;
                for (int i = 0; i < 3; i++) {
                    at[i] = o[i] * g->s[i] - g->pb[i] + kv[i] * g->d[i];
                    inside = inside && at[i] >= 0 && at[i] < g->in[i];
                }
                if (!inside)
                    continue;
                int64_t idx = (at[0] * g->in[1] + at[1]) * g->in[2] + at[2];
                if (*arg < 0 || x[idx] > *mx) {
                    *mx = x[idx];
                    *arg = idx;
                }
                sum += x[idx];
                valid++;
            }
    *avg = (float)(sum / (double)(include_pad ? padded : valid));
}

static void add_pool_attrs(cd_node *n, const pool_case *c)
{
    cd_error err;
    int64_t s[3], d[3];
    for (int i = 0; i < c->nsp; i++) {
        s[i] = c->s[i] ? c->s[i] : 1;
        d[i] = c->d[i] ? c->d[i] : 1;
    }
    assert_int_equal(cd_node_add_ints(n, "kernel_shape", c->k, (size_t)c->nsp, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "strides", s, (size_t)c->nsp, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "dilations", d, (size_t)c->nsp, &err), CD_OK);
    if (c->auto_pad)
        assert_int_equal(cd_node_add_string(n, "auto_pad", c->auto_pad, &err), CD_OK);
    else
        assert_int_equal(cd_node_add_ints(n, "pads", c->pads, 2 * (size_t)c->nsp, &err), CD_OK);
    assert_int_equal(cd_node_add_int(n, "ceil_mode", c->ceil_mode, &err), CD_OK);
}

static void make_pool_node(cd_node *n, const char *op, const pool_case *c, int n_out)
{
    cd_error err;
    assert_int_equal(cd_node_init(n, op, 19, 1, n_out, &err), CD_OK);
    add_pool_attrs(n, c);
    if (strcmp(op, "AveragePool") == 0)
        assert_int_equal(cd_node_add_int(n, "count_include_pad", c->include_pad, &err), CD_OK);
    if (cd_node_bind(n, &err) != CD_OK)
        fail_msg("bind: %s", err.message);
}

static cd_tensor *pool_input(const pool_case *c, uint64_t seed)
{
    int64_t dims[5] = {c->batch, c->c};
    for (int i = 0; i < c->nsp; i++)
        dims[2 + i] = c->in[i];
    return tu_random(2 + c->nsp, dims, seed, -2.f, 2.f);
}

static const pool_case pool_cases[] = {
    {2, 2, 3, {7, 6}, {3, 3}, {2, 2}, {1, 1}, {1, 1, 1, 1}},
    {2, 1, 2, {8, 9}, {3, 2}, {2, 3}, {1, 1}, {0, 1, 2, 0}},
    {2, 1, 2, {9, 9}, {2, 3}, {1, 2}, {2, 2}, {1, 0, 0, 2}},
    {2, 1, 1, {4, 4}, {3, 3}, {2, 2}, {1, 1}, {0}, NULL, true},
    {2, 1, 2, {6, 7}, {3, 2}, {2, 2}, {1, 1}, {1, 1, 1, 1}, NULL, true, true},
    {2, 1, 2, {5, 6}, {3, 2}, {2, 2}, {1, 1}, {1, 0, 1, 1}, NULL, false, true},
    {2, 1, 2, {7, 6}, {3, 2}, {2, 2}, {1, 1}, {0}, "SAME_UPPER"},
    {2, 1, 2, {7, 6}, {2, 3}, {2, 1}, {1, 1}, {0}, "SAME_LOWER", false, true},
    {2, 1, 2, {7, 6}, {3, 2}, {2, 1}, {1, 1}, {0}, "VALID"},
    {1, 2, 3, {11}, {3}, {2}, {2}, {1, 2}, NULL, true},
    {1, 1, 2, {6}, {3}, {2}, {1}, {1, 1}, NULL, true, true},
    {3, 1, 2, {5, 4, 6}, {2, 3, 2}, {2, 1, 2}, {1, 1, 2}, {1, 0, 1, 0, 1, 1}, NULL, true},
    {3, 2, 1, {4, 5, 4}, {2, 2, 2}, {2, 2, 2}, {1, 1, 1}, {0, 1, 0, 1, 0, 1}, NULL, false, true},
};

static void check_pool_case(const pool_case *c, uint64_t seed)
{
    tgeom g;
    pool_geom(c, &g);
    cd_tensor *x = pool_input(c, seed);
    int64_t planes = c->batch * c->c, isp = g.in[0] * g.in[1] * g.in[2];
    int64_t osp = g.out[0] * g.out[1] * g.out[2];
    cd_node mp, ap;
    make_pool_node(&mp, "MaxPool", c, 2);
    make_pool_node(&ap, "AveragePool", c, 1);
    cd_tensor *in[1] = {x}, *mo[2], *ao[1];
    cd_error err;
    if (tu_run_node(&mp, in, mo, false, &err) != CD_OK || tu_run_node(&ap, in, ao, false, &err))
        fail_msg("pool forward: %s", err.message);
    for (int i = 0; i < c->nsp; i++) {
        assert_int_equal(mo[0]->dims[2 + i], g.out[i]);
        assert_int_equal(ao[0]->dims[2 + i], g.out[i]);
    }
    assert_int_equal(mo[1]->dtype, CD_INT64);
    const float *xv = x->data, *my = mo[0]->data, *ay = ao[0]->data;
    const int64_t *ind = mo[1]->data;
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t p = 0; p < osp; p++) {
            float mx = 0, avg;
            int64_t arg;
            naive_window(&g, xv + pl * isp, p, c->include_pad, &mx, &arg, &avg);
            int64_t at = pl * osp + p;
            if (my[at] != mx || ind[at] != pl * isp + arg)
                fail_msg("maxpool plane %lld pos %lld: %g/%lld vs %g/%lld", (long long)pl,
                         (long long)p, my[at], (long long)ind[at], mx,
                         (long long)(pl * isp + arg));
            if (fabsf(ay[at] - avg) > 1e-5f)
                fail_msg("avgpool plane %lld pos %lld: %g vs %g", (long long)pl, (long long)p,
                         ay[at], avg);
        }
    cd_tensor_free(mo[0]);
    cd_tensor_free(mo[1]);
    cd_tensor_free(ao[0]);
    cd_tensor_free(x);
    cd_node_clear(&mp);
    cd_node_clear(&ap);
}

static void test_pool_forward_vs_naive(void **state)
{
    (void)state;
    for (size_t i = 0; i < CD_COUNT_OF(pool_cases); i++)
        check_pool_case(&pool_cases[i], 40 + i);
}

/* storage_order = 1: Indices count the spatial dims column-major within each
 * (n, c) plane (ONNX's maxpool_with_argmax test: input 5x5, kernel 2, stride 2
 * gives maxima at (1,1),(1,3),(3,1),(3,3) -> 6, 16, 8, 18). */
static void test_maxpool_indices_column_major(void **state)
{
    (void)state;
    int64_t dims[4] = {2, 1, 5, 5};
    float vals[50];
    for (int i = 0; i < 50; i++)
        vals[i] = (float)(i % 25 + 1);
    cd_tensor *x = tu_tensor_f32(4, dims, vals);
    cd_node n;
    cd_error err;
    pool_case c = {2, 2, 1, {5, 5}, {2, 2}, {2, 2}, {1, 1}, {0, 0, 0, 0}};
    assert_int_equal(cd_node_init(&n, "MaxPool", 12, 1, 2, &err), CD_OK);
    add_pool_attrs(&n, &c);
    assert_int_equal(cd_node_add_int(&n, "storage_order", 1, &err), CD_OK);
    assert_int_equal(cd_node_bind(&n, &err), CD_OK);
    cd_tensor *in[1] = {x}, *out[2];
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    const int64_t want[8] = {6, 16, 8, 18, 31, 41, 33, 43};
    const float wantv[4] = {7, 9, 17, 19};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(((int64_t *)out[1]->data)[i], want[i]);
        assert_true(((float *)out[0]->data)[i] == wantv[i % 4]);
    }
    /* forward64's Indices must match these too (checked inside gradcheck) */
    const bool check[1] = {true};
    assert_true(tu_gradcheck(&n, in, check, 1e-2f, 1e-3, 1e-3) <= 1.0);
    cd_tensor_free(out[0]);
    cd_tensor_free(out[1]);
    cd_tensor_free(x);
    cd_node_clear(&n);
}

static void test_maxpool_uint8(void **state)
{
    (void)state;
    pool_case c = {2, 1, 2, {6, 5}, {3, 3}, {2, 1}, {1, 1}, {1, 1, 1, 1}};
    tgeom g;
    pool_geom(&c, &g);
    int64_t dims[4] = {1, 2, 6, 5};
    cd_tensor *x = NULL;
    assert_int_equal(cd_tensor_create(CD_UINT8, 4, dims, &x, NULL), CD_OK);
    uint64_t rng = 3;
    uint8_t *xb = x->data;
    float xf[60];
    for (int i = 0; i < 60; i++) {
        xb[i] = (uint8_t)tu_uniform(&rng, 0, 256);
        xf[i] = xb[i];
    }
    cd_node n;
    make_pool_node(&n, "MaxPool", &c, 1);
    cd_tensor *in[1] = {x}, *out[1];
    cd_error err;
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    assert_int_equal(out[0]->dtype, CD_UINT8);
    int64_t osp = g.out[0] * g.out[1];
    for (int64_t pl = 0; pl < 2; pl++)
        for (int64_t p = 0; p < osp; p++) {
            float mx = 0, avg;
            int64_t arg;
            naive_window(&g, xf + pl * 30, p, false, &mx, &arg, &avg);
            assert_int_equal(((uint8_t *)out[0]->data)[pl * osp + p], (uint8_t)mx);
        }
    /* Float64 mode leaves integer data as it is: forward64 gives the same bytes. */
    cd_tensor *o64 = NULL;
    assert_int_equal(cd_tensor_create(CD_UINT8, 4, out[0]->dims, &o64, NULL), CD_OK);
    memset(o64->data, 0xAB, cd_tensor_numel(o64));
    cd_ctx ctx = {.err = &err, .threads = 1};
    assert_int_equal(cd_opdef_MAX_POOL.forward64(&n, in, &o64, &ctx), CD_OK);
    assert_memory_equal(o64->data, out[0]->data, cd_tensor_numel(o64));
    cd_tensor_free(o64);
    cd_tensor_free(out[0]);
    cd_tensor_free(x);
    cd_node_clear(&n);
}

/* Values computed with PyTorch 1.13:
 *   nn.AvgPool1d(3, 2, padding=1, ceil_mode=True, count_include_pad=True)(ones(1,1,6))
 *     = [0.6667, 1.0, 1.0, 0.5]  (the overhanging last window is not charged)
 *   nn.MaxPool1d(2, 2, padding=1, ceil_mode=True)(zeros(1,1,5)).shape[-1] = 3
 *     (a window starting in the right padding is dropped) */
static void test_pool_ceil_mode_matches_pytorch(void **state)
{
    (void)state;
    int64_t d6[3] = {1, 1, 6}, d5[3] = {1, 1, 5};
    const float ones[6] = {1, 1, 1, 1, 1, 1}, zeros[5] = {0};
    cd_tensor *x6 = tu_tensor_f32(3, d6, ones), *x5 = tu_tensor_f32(3, d5, zeros);
    pool_case a = {1, 1, 1, {6}, {3}, {2}, {1}, {1, 1}, NULL, true, true};
    pool_case m = {1, 1, 1, {5}, {2}, {2}, {1}, {1, 1}, NULL, true};
    cd_node an, mn;
    make_pool_node(&an, "AveragePool", &a, 1);
    make_pool_node(&mn, "MaxPool", &m, 1);
    cd_tensor *out[1];
    cd_error err;
    assert_int_equal(tu_run_node(&an, &x6, out, false, &err), CD_OK);
    assert_int_equal(out[0]->dims[2], 4);
    const float want[4] = {2.0f / 3.0f, 1.0f, 1.0f, 0.5f};
    for (int i = 0; i < 4; i++)
        assert_float_equal(((float *)out[0]->data)[i], want[i], 1e-6);
    cd_tensor_free(out[0]);
    assert_int_equal(tu_run_node(&mn, &x5, out, false, &err), CD_OK);
    assert_int_equal(out[0]->dims[2], 3);
    cd_tensor_free(out[0]);
    cd_tensor_free(x6);
    cd_tensor_free(x5);
    cd_node_clear(&an);
    cd_node_clear(&mn);
}

/* Global pools ------------------------------------------------------------- */

static void test_global_pools_vs_naive(void **state)
{
    (void)state;
    const int64_t shapes[3][5] = {{2, 3, 7}, {2, 3, 4, 5}, {1, 2, 3, 2, 4}};
    for (int si = 0; si < 3; si++) {
        int nd = 3 + si;
        cd_tensor *x = tu_random(nd, shapes[si], 60 + (uint64_t)si, -3.f, 3.f);
        int64_t planes = shapes[si][0] * shapes[si][1], sp = 1;
        for (int i = 2; i < nd; i++)
            sp *= shapes[si][i];
        const char *ops[2] = {"GlobalAveragePool", "GlobalMaxPool"};
        for (int oi = 0; oi < 2; oi++) {
            cd_node n;
            cd_error err;
            assert_int_equal(cd_node_init(&n, ops[oi], 13, 1, 1, &err), CD_OK);
            assert_int_equal(cd_node_bind(&n, &err), CD_OK);
            cd_tensor *in[1] = {x}, *out[1];
            assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
            assert_int_equal(out[0]->ndim, nd);
            for (int i = 2; i < nd; i++)
                assert_int_equal(out[0]->dims[i], 1);
            for (int64_t pl = 0; pl < planes; pl++) {
                const float *xp = (const float *)x->data + pl * sp;
                double s = 0;
                float mx = xp[0];
                for (int64_t i = 0; i < sp; i++) {
                    s += xp[i];
                    mx = xp[i] > mx ? xp[i] : mx;
                }
                float want = oi == 0 ? (float)(s / (double)sp) : mx;
                assert_float_equal(((float *)out[0]->data)[pl], want, 1e-5);
            }
            cd_tensor_free(out[0]);
            cd_node_clear(&n);
        }
        cd_tensor_free(x);
    }
}

/* Gradients ---------------------------------------------------------------- */

/* Distinct values 0.05 apart in random order, so a +-eps (eps = 0.01)
 * perturbation never changes which element a max window selects. */
static cd_tensor *tie_free_input(int ndim, const int64_t *dims, uint64_t seed)
{
    cd_tensor *t = tu_random(ndim, dims, seed, 0.f, 1.f);
    size_t n = cd_tensor_numel(t);
    float *v = t->data;
    for (size_t i = 0; i < n; i++)
        v[i] = 0.05f * (float)i - 0.025f * (float)n;
    uint64_t rng = seed;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)tu_uniform(&rng, 0, (float)(i + 1));
        j = j > i ? i : j;
        float tmp = v[i];
        v[i] = v[j];
        v[j] = tmp;
    }
    return t;
}

static void gradcheck_or_fail(cd_node *n, cd_tensor *x, const char *what)
{
    bool check[1] = {true};
    cd_tensor *in[1] = {x};
    double worst = tu_gradcheck(n, in, check, 1e-2f, 1e-3, 1e-3);
    if (!(worst <= 1.0))
        fail_msg("%s gradcheck: normalised error %g", what, worst);
}

static const pool_case grad_cases[] = {
    {2, 2, 2, {5, 6}, {3, 2}, {2, 2}, {1, 1}, {1, 0, 1, 1}, NULL, true, true},
    {2, 1, 2, {6, 5}, {2, 2}, {1, 2}, {2, 1}, {0, 1, 1, 0}},
    {2, 1, 1, {5, 5}, {3, 3}, {2, 2}, {1, 1}, {0}, "SAME_LOWER"},
    {1, 2, 2, {9}, {3}, {2}, {2}, {2, 1}, NULL, true},
    {3, 1, 2, {3, 4, 4}, {2, 2, 3}, {1, 2, 2}, {1, 1, 1}, {1, 0, 0, 0, 1, 1}, NULL, false, true},
    {3, 1, 1, {5, 5, 4}, {2, 2, 2}, {2, 1, 1}, {2, 1, 1}, {0, 1, 0, 1, 0, 1}, NULL, true, true},
    {1, 1, 2, {10}, {3}, {3}, {2}, {2, 2}, NULL, true, true},
    {2, 1, 2, {7, 6}, {3, 2}, {2, 1}, {1, 1}, {0}, "SAME_UPPER"},
    {2, 1, 1, {6, 7}, {2, 3}, {1, 2}, {2, 1}, {0}, "VALID"},
};

static void test_pool_gradcheck(void **state)
{
    (void)state;
    for (size_t i = 0; i < CD_COUNT_OF(grad_cases); i++) {
        const pool_case *c = &grad_cases[i];
        int64_t dims[5] = {c->batch, c->c};
        for (int d = 0; d < c->nsp; d++)
            dims[2 + d] = c->in[d];
        cd_tensor *x = tie_free_input(2 + c->nsp, dims, 80 + i);
        cd_node mp, ap;
        make_pool_node(&mp, "MaxPool", c, 1 + (int)(i % 2)); /* odd cases: with Indices */
        make_pool_node(&ap, "AveragePool", c, 1);
        gradcheck_or_fail(&mp, x, "MaxPool");
        gradcheck_or_fail(&ap, x, "AveragePool");
        cd_node_clear(&mp);
        cd_node_clear(&ap);
        cd_tensor_free(x);
    }
}

static void test_global_pool_gradcheck(void **state)
{
    (void)state;
    const int64_t dims[2][5] = {{2, 3, 4, 3}, {1, 2, 2, 3, 2}};
    for (int si = 0; si < 2; si++) {
        cd_tensor *x = tie_free_input(4 + si, dims[si], 90 + (uint64_t)si);
        const char *ops[2] = {"GlobalAveragePool", "GlobalMaxPool"};
        for (int oi = 0; oi < 2; oi++) {
            cd_node n;
            cd_error err;
            assert_int_equal(cd_node_init(&n, ops[oi], 13, 1, 1, &err), CD_OK);
            assert_int_equal(cd_node_bind(&n, &err), CD_OK);
            gradcheck_or_fail(&n, x, ops[oi]);
            cd_node_clear(&n);
        }
        cd_tensor_free(x);
    }
}

/* Ties: backward64 routes each window's gradient to its first maximum, the
 * element the float32 backward picks (values and gradients exactly
 * representable, so both precisions see the same ties and sums). */
static void test_maxpool_ties_f64(void **state)
{
    (void)state;
    const pool_case c = {2, 1, 1, {4, 5}, {3, 3}, {1, 2}, {1, 1}, {1, 1, 0, 1}, NULL, true};
    int64_t dims[4] = {1, 1, 4, 5};
    float v[20];
    for (int i = 0; i < 20; i++)
        v[i] = (float)((i * 7) % 3); /* values 0, 1, 2: many tied maxima */
    cd_tensor *x = tu_tensor_f32(4, dims, v), *in[1] = {x}, *out[1];
    cd_node n;
    cd_error err;
    make_pool_node(&n, "MaxPool", &c, 1);
    assert_int_equal(tu_run_node(&n, in, out, false, &err), CD_OK);
    size_t no = cd_tensor_numel(out[0]);
    cd_tensor *gy = tu_random(out[0]->ndim, out[0]->dims, 5, 0.f, 1.f), *gx = NULL;
    cd_tensor *x64 = NULL, *y64 = NULL, *gy64 = NULL, *gx64 = NULL;
    assert_int_equal(cd_tensor_create(CD_FLOAT32, 4, dims, &gx, NULL), CD_OK);
    assert_int_equal(cd_tensor_create(CD_FLOAT64, 4, dims, &x64, NULL), CD_OK);
    assert_int_equal(cd_tensor_create(CD_FLOAT64, 4, dims, &gx64, NULL), CD_OK);
    assert_int_equal(cd_tensor_create(CD_FLOAT64, 4, out[0]->dims, &y64, NULL), CD_OK);
    assert_int_equal(cd_tensor_create(CD_FLOAT64, 4, out[0]->dims, &gy64, NULL), CD_OK);
    for (int i = 0; i < 20; i++)
        ((double *)x64->data)[i] = v[i];
    for (size_t i = 0; i < no; i++) /* eighths: sums agree in both precisions */
        ((double *)gy64->data)[i] = ((float *)gy->data)[i] = (float)(i % 5 + 1) * 0.125f;
    cd_ctx ctx = {.err = &err, .threads = 1};
    assert_int_equal(cd_opdef_MAX_POOL.backward(&n, in, out, &gy, &gx, &ctx), CD_OK);
    assert_int_equal(cd_opdef_MAX_POOL.forward64(&n, &x64, &y64, &ctx), CD_OK);
    assert_int_equal(cd_opdef_MAX_POOL.backward64(&n, &x64, &y64, &gy64, &gx64, &ctx), CD_OK);
    for (size_t i = 0; i < no; i++)
        assert_true(((double *)y64->data)[i] == ((float *)out[0]->data)[i]);
    for (int i = 0; i < 20; i++)
        assert_true(((double *)gx64->data)[i] == ((float *)gx->data)[i]);
    free(ctx.scratch);
    cd_tensor *all[] = {x, out[0], gy, gx, x64, y64, gy64, gx64};
    for (size_t i = 0; i < CD_COUNT_OF(all); i++)
        cd_tensor_free(all[i]);
    cd_node_clear(&n);
}

static void test_pool_errors(void **state)
{
    (void)state;
    cd_node n;
    cd_error err;
    /* kernel_shape is required */
    assert_int_equal(cd_node_init(&n, "MaxPool", 12, 1, 1, &err), CD_OK);
    assert_int_not_equal(cd_node_bind(&n, &err), CD_OK);
    assert_non_null(strstr(err.message, "kernel_shape"));
    cd_node_clear(&n);
    /* kernel_shape rank must match the input */
    pool_case c = {2, 1, 1, {4, 4}, {2, 2}, {1, 1}, {1, 1}, {0, 0, 0, 0}};
    make_pool_node(&n, "AveragePool", &c, 1);
    int64_t dims[3] = {1, 1, 4};
    cd_tensor *x = tu_random(3, dims, 1, 0, 1), *out[1];
    assert_int_not_equal(tu_run_node(&n, &x, out, false, &err), CD_OK);
    assert_non_null(strstr(err.message, "AveragePool"));
    cd_tensor_free(x);
    cd_node_clear(&n);
}

/* While core/ops/stubs.c still holds weak placeholders, a test linked from a
 * static archive must reference the real definitions itself, or the linker
 * may satisfy the registry with the stubs. */
const cd_op_def *const pool_defs_used[] = {&cd_opdef_MAX_POOL, &cd_opdef_AVERAGE_POOL,
                                           &cd_opdef_GLOBAL_AVERAGE_POOL,
                                           &cd_opdef_GLOBAL_MAX_POOL};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_forward_vs_naive),
        cmocka_unit_test(test_maxpool_indices_column_major),
        cmocka_unit_test(test_maxpool_uint8),
        cmocka_unit_test(test_pool_ceil_mode_matches_pytorch),
        cmocka_unit_test(test_global_pools_vs_naive),
        cmocka_unit_test(test_pool_gradcheck),
        cmocka_unit_test(test_global_pool_gradcheck),
        cmocka_unit_test(test_maxpool_ties_f64),
        cmocka_unit_test(test_pool_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
