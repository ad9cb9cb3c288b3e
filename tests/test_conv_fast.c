/* Fast convolution kernels (core/ops/conv_fast.h) against the naive reference
 * cd_conv_ref on random shapes, one batch of cases per algorithm (the ncnn
 * pattern). The fused epilogue (folded BatchNormalization, bias, residual,
 * activation) is recomputed here from its definition on top of the
 * reference output. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops/conv_fast.h"
#include "core/parallel.h"
#include "testutil.h"

typedef struct shape {
    int64_t batch, c, m, group, h, w, kh, kw, s, d, pad;
    bool bias;
    int64_t pad_extra; /* added to the end pads (asymmetric padding) */
} shape;

static int64_t rnd(uint64_t *st, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(tu_uniform(st, 0.0f, 0.999f) * (float)(hi - lo + 1));
}

/* A random shape the forced algorithm applies to. */
static shape random_shape(cd_conv_algo algo, uint64_t *st)
{
    shape s = {.batch = rnd(st, 1, 3), .c = rnd(st, 1, 12), .m = rnd(st, 1, 12), .group = 1,
               .h = rnd(st, 5, 17), .w = rnd(st, 5, 17), .kh = rnd(st, 1, 3), .kw = rnd(st, 1, 3),
               .s = rnd(st, 1, 2), .d = rnd(st, 1, 2), .pad = rnd(st, 0, 2),
               .bias = rnd(st, 0, 1) == 1};
    switch (algo) {
    case CD_CONV_GEMM_1X1: s.kh = s.kw = s.s = s.d = 1, s.pad = 0; break;
    case CD_CONV_PACK1X1: /* odd channel/map counts, tiny to multi-block planes */
        s.kh = s.kw = s.s = s.d = 1, s.pad = 0;
        s.c = rnd(st, 1, 70), s.m = rnd(st, 1, 70);
        if (rnd(st, 0, 3) == 0) /* 1x1 .. 4x4 planes: one short sub-block */
            s.h = rnd(st, 1, 4), s.w = rnd(st, 1, 4);
        else if (rnd(st, 0, 2) == 0) /* several pixel blocks per image */
            s.h = rnd(st, 20, 48), s.w = rnd(st, 20, 48);
        break;
    case CD_CONV_IM2COL:
        if (rnd(st, 0, 2) == 0) { /* "same" stride-1 geometry: im2col's shifted-plane path */
            s.s = 1, s.kw = 2 * rnd(st, 0, 2) + 1, s.pad = (s.kw - 1) * s.d / 2;
            s.kh = rnd(st, 1, 3); /* rows need not keep their height */
        }
        break;
    case CD_CONV_DEPTHWISE: /* MobileNets use 3x3 and 5x5 windows, stride 1 and 2 */
        s.m = s.c, s.group = s.c, s.kh = rnd(st, 1, 5), s.kw = rnd(st, 1, 5);
        s.pad = rnd(st, 0, 3), s.h = rnd(st, 9, 20), s.w = rnd(st, 9, 20);
        if (rnd(st, 0, 1)) /* the unrolled 3x3 / 5x5 kernels */
            s.kh = s.kw = rnd(st, 0, 1) ? 3 : 5;
        if (rnd(st, 0, 2) == 0) { /* output rows around the 8- and 16-float chunk widths */
            static const int64_t ow[] = {7, 8, 9, 15, 16, 17, 31, 32, 33};
            int64_t o = ow[rnd(st, 0, 8)], ext = (s.kw - 1) * s.d + 1 - 2 * s.pad;
            s.w = (o - 1) * s.s + ext; /* input width giving o outputs (>= 1 here) */
        }
        break;
    case CD_CONV_WINOGRAD:
    case CD_CONV_WINOGRAD4:
        s.kh = s.kw = 3, s.s = s.d = 1, s.pad = rnd(st, 0, 1);
        s.c = rnd(st, 1, 40), s.m = rnd(st, 1, 40);
        break;
    case CD_CONV_IM2COL_PACK: /* any 2-D window; planes from one pixel to several
                               * 32-pixel sub-blocks, long column matrices */
        s.c = rnd(st, 1, 40), s.m = rnd(st, 1, 40);
        if (rnd(st, 0, 2) == 0)
            s.h = rnd(st, 12, 30), s.w = rnd(st, 12, 30);
        break;
    case CD_CONV_DIRECT: /* channels * window <= 160; 8-map groups plus a tail;
                          * one to many 64-pixel blocks, some crossing output rows */
        s.c = rnd(st, 1, 3), s.m = rnd(st, 1, 20), s.pad_extra = rnd(st, 0, 1);
        if (rnd(st, 0, 3) == 0) /* resnet's 7x7 first layer (K up to 147) */
            s.kh = s.kw = 7, s.pad = rnd(st, 0, 3);
        else if (rnd(st, 0, 2) == 0) /* more channels: K up to 17 * 9 = 153 */
            s.c = rnd(st, 4, 17), s.kh = s.kw = 3;
        s.h = rnd(st, 3, 40), s.w = rnd(st, 3, 40);
        s.h = s.h > (s.kh - 1) * s.d + 1 ? s.h : (s.kh - 1) * s.d + 1; /* >= 1 output */
        s.w = s.w > (s.kw - 1) * s.d + 1 ? s.w : (s.kw - 1) * s.d + 1;
        break;
    case CD_CONV_ROWVEC: /* few channels; 3x3 and 5x5 mostly, widths up to 7; stride 1
                          * or 2; map blocks of 16 and 8 with tails; rows from one
                          * partial 16-column chunk to several, left/right padding */
        s.c = rnd(st, 1, 4), s.m = rnd(st, 1, 40), s.d = 1, s.pad_extra = rnd(st, 0, 1);
        s.kh = rnd(st, 1, 7), s.kw = rnd(st, 1, 7), s.pad = rnd(st, 0, 3);
        if (rnd(st, 0, 1))
            s.kh = s.kw = rnd(st, 0, 1) ? 3 : 5;
        s.h = rnd(st, 1, 24), s.w = rnd(st, 1, 70);
        s.h = s.h + 2 * s.pad > s.kh ? s.h : s.kh; /* >= 1 output */
        s.w = s.w + 2 * s.pad > s.kw ? s.w : s.kw;
        break;
    default: break;
    }
    return s;
}

static void make_node(cd_node *n, const shape *s)
{
    cd_error err;
    int64_t k[2] = {s->kh, s->kw}, st[2] = {s->s, s->s}, d[2] = {s->d, s->d};
    int64_t p[4] = {s->pad, s->pad, s->pad + s->pad_extra, s->pad + s->pad_extra};
    assert_int_equal(cd_node_init(n, "Conv", 13, s->bias ? 3 : 2, 1, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "kernel_shape", k, 2, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "strides", st, 2, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "dilations", d, 2, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "pads", p, 4, &err), CD_OK);
    assert_int_equal(cd_node_add_int(n, "group", s->group, &err), CD_OK);
    assert_int_equal(cd_node_bind(n, &err), CD_OK);
}

/* Winograd's extra error allowance relative to conv(|x|, |w|): F(4x4, 3x3)
 * with points 0, +-1, +-2 reached 3.9e-6 (~65 float32 epsilons) over these
 * cases, F(2x2, 3x3) less; the allowance leaves 2.5x margin. */
#define WINO_REL 1e-5

static cd_tensor *abs_copy(const cd_tensor *t)
{
    cd_tensor *c = tu_random(t->ndim, t->dims, 0, 0, 0);
    const float *src = t->data;
    float *dst = c->data;
    for (size_t i = 0; i < cd_tensor_numel(t); i++)
        dst[i] = fabsf(src[i]);
    return c;
}

static float act_ref(const cd_epilogue *ep, float v)
{
    switch (ep->act) {
    case CD_ACT_RELU: return v < 0 ? 0 : v;
    case CD_ACT_CLIP: return v < ep->lo ? ep->lo : v > ep->hi ? ep->hi : v;
    case CD_ACT_LEAKY_RELU: return v < 0 ? ep->alpha * v : v;
    case CD_ACT_HARD_SWISH: {
        float g = v / 6.0f + 0.5f;
        return v * (g < 0 ? 0 : g > 1 ? 1 : g);
    }
    case CD_ACT_SIGMOID: return (float)(1.0 / (1.0 + exp(-(double)v)));
    case CD_ACT_HARD_SIGMOID: {
        double h = (double)ep->alpha * v + ep->beta;
        return (float)(h < 0 ? 0 : h > 1 ? 1 : h);
    }
    default: return v;
    }
}

static cd_epilogue random_epilogue(uint64_t *st)
{
    cd_epilogue ep = {.act = (cd_act)rnd(st, 0, 6), .lo = -0.5f, .hi = 1.5f, .alpha = 0.1f,
                      .beta = 0.5f};
    if (ep.act == CD_ACT_HARD_SIGMOID)
        ep.alpha = 1.0f / 6.0f;
    return ep;
}

/* One case of shape s with epilogue ep, folded BN and residual as given:
 * returns max |fast - ref| / (1e-4 * (1 + |ref|)), i.e. <= 1 is within
 * tolerance. */
static double check_shape_ep(cd_conv_algo algo, shape s, uint64_t seed, cd_epilogue ep,
                             bool use_bn, bool use_res)
{
    cd_node n;
    make_node(&n, &s);
    int64_t xd[4] = {s.batch, s.c, s.h, s.w}, wd[4] = {s.m, s.c / s.group, s.kh, s.kw};
    int64_t md[1] = {s.m};
    cd_tensor *x = tu_random(4, xd, seed + 1, -1, 1), *w = tu_random(4, wd, seed + 2, -1, 1);
    cd_tensor *b = s.bias ? tu_random(1, md, seed + 3, -1, 1) : NULL;
    cd_tensor *scale = tu_random(1, md, seed + 4, 0.5f, 1.5f);
    cd_tensor *shift = tu_random(1, md, seed + 5, -0.5f, 0.5f);
    cd_tensor *in[3] = {x, w, b};
    cd_error err = {0};
    cd_win_geom g;
    int64_t hw[2] = {s.h, s.w}, k[2] = {s.kh, s.kw};
    assert_int_equal(cd_win_resolve(&n, 2, hw, k, false, &g, &err), CD_OK);
    int64_t yd[4] = {s.batch, s.m, g.out[0], g.out[1]};
    cd_tensor *ref = tu_random(4, yd, 0, 0, 0), *fast = tu_random(4, yd, 1, 9, 9);
    cd_tensor *res = tu_random(4, yd, seed + 6, -1, 1);
    cd_conv_ref(x->data, w->data, b ? b->data : NULL, ref->data, s.batch, s.c, s.m, s.group, &g);
    /* Winograd rounds in its transforms, so its error scales with the
     * magnitude of the summed products, not of their sum (which may cancel
     * to ~0): mag = conv(|x|, |w|) + |b| bounds that (Higham-style), and
     * Winograd algorithms get WINO_REL * mag more slack per output. */
    cd_tensor *mag = tu_random(4, yd, 0, 0, 0);
    bool wino = algo == CD_CONV_WINOGRAD || algo == CD_CONV_WINOGRAD4;
    if (wino) {
        cd_tensor *ax = abs_copy(x), *aw = abs_copy(w), *ab = b ? abs_copy(b) : NULL;
        cd_conv_ref(ax->data, aw->data, ab ? ab->data : NULL, mag->data, s.batch, s.c, s.m,
                    s.group, &g);
        cd_tensor_free(ax);
        cd_tensor_free(aw);
        cd_tensor_free(ab);
    }
    cd_conv_kernel *kern = NULL;
    cd_status rc = cd_conv_kernel_create(&n, in, use_bn ? scale->data : NULL,
                                         use_bn ? shift->data : NULL, &ep, algo, &kern, &err);
    if (rc != CD_OK)
        fail_msg("create: %s", err.message);
    assert_int_equal(cd_conv_kernel_algo(kern), algo);
    cd_ctx ctx = {.err = &err, .threads = 1};
    assert_int_equal(cd_conv_kernel_run(kern, x->data, use_res ? res->data : NULL, fast->data,
                                        &ctx),
                     CD_OK);
    /* Two threads on candor's pool give the same bits (work split by shape). */
    cd_tensor *fast2 = tu_random(4, yd, 2, 7, 7);
    cd_ctx ctx2 = {.err = &err, .threads = 2};
    assert_int_equal(cd_ctx_ensure_pool(&ctx2), CD_OK);
    assert_int_equal(cd_conv_kernel_run(kern, x->data, use_res ? res->data : NULL, fast2->data,
                                        &ctx2),
                     CD_OK);
    assert_memory_equal(fast->data, fast2->data, cd_tensor_numel(fast) * sizeof(float));
    cd_ctx_release(&ctx2);
    cd_tensor_free(fast2);
    int64_t sp = g.out[0] * g.out[1];
    const float *r = ref->data, *f = fast->data, *rs = res->data;
    const float *sc = scale->data, *sh = shift->data;
    double worst = 0;
    for (size_t i = 0; i < cd_tensor_numel(ref); i++) {
        int64_t m = (int64_t)(i / (size_t)sp) % s.m;
        float v = use_bn ? r[i] * sc[m] + sh[m] : r[i];
        v = act_ref(&ep, v + (use_res ? rs[i] : 0.0f));
        double slack = wino ? WINO_REL * ((const float *)mag->data)[i] * (use_bn ? sc[m] : 1.0f)
                            : 0.0;
        double e = fabs((double)f[i] - v) / (1e-4 * (1.0 + fabs(v)) + slack);

        if (e > worst)
            worst = e;
    }
    if (worst > 1)
        print_error("algo %d seed %llu: shape b%lld c%lld m%lld g%lld %lldx%lld k%lldx%lld s%lld "
                    "d%lld p%lld act %d bn %d res %d: error ratio %g\n",
                    (int)algo, (unsigned long long)seed, (long long)s.batch, (long long)s.c,
                    (long long)s.m, (long long)s.group, (long long)s.h, (long long)s.w,
                    (long long)s.kh, (long long)s.kw, (long long)s.s, (long long)s.d,
                    (long long)s.pad, (int)ep.act, use_bn, use_res, worst);
    cd_conv_kernel_free(kern);
    free(ctx.scratch);
    cd_tensor *all[] = {x, w, b, scale, shift, ref, fast, res, mag};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        cd_tensor_free(all[i]);
    cd_node_clear(&n);
    return worst;
}

/* check_shape_ep with epilogue, BN and residual drawn from st. */
static double check_shape(cd_conv_algo algo, shape s, uint64_t seed, uint64_t st)
{
    cd_epilogue ep = random_epilogue(&st);
    bool use_bn = rnd(&st, 0, 1) == 1, use_res = rnd(&st, 0, 1) == 1;
    return check_shape_ep(algo, s, seed, ep, use_bn, use_res);
}

/* One random case of the shapes random_shape draws for algo. */
static double check_case(cd_conv_algo algo, uint64_t seed)
{
    uint64_t st = seed * 7919 + 17;
    shape s = random_shape(algo, &st);
    return check_shape(algo, s, seed, st);
}

/* Depthwise has more kernel branches (chunk widths, 3x3/5x5/any window). */
static uint64_t n_cases(cd_conv_algo algo) { return algo == CD_CONV_DEPTHWISE ? 200 : 80; }

static void check_algo(cd_conv_algo algo)
{
    for (uint64_t seed = 1; seed <= n_cases(algo); seed++)
        assert_true(check_case(algo, seed) <= 1.0);
}

static void test_im2col(void **state) { (void)state; check_algo(CD_CONV_IM2COL); }
static void test_gemm_1x1(void **state) { (void)state; check_algo(CD_CONV_GEMM_1X1); }
static void test_pack1x1(void **state)
{
    (void)state;
    check_algo(CD_CONV_PACK1X1);
    /* Edges: group widths 12/11, a single map or channel, exactly 16 / 32
     * pixels, 17 and 33 (one past a sub-block), many channels (32-pixel
     * blocks, the cap), 7x7 with many maps (map chunks), batch 4. */
    static const shape edge[] = {
        {.batch = 1, .c = 1, .m = 1, .h = 1, .w = 1},
        {.batch = 2, .c = 13, .m = 24, .h = 4, .w = 4},
        {.batch = 1, .c = 7, .m = 23, .h = 4, .w = 8},
        {.batch = 1, .c = 9, .m = 12, .h = 17, .w = 1},
        {.batch = 3, .c = 5, .m = 37, .h = 3, .w = 11},
        {.batch = 1, .c = 1100, .m = 13, .h = 5, .w = 9},
        {.batch = 1, .c = 96, .m = 200, .h = 7, .w = 7, .bias = true},
        {.batch = 4, .c = 24, .m = 40, .h = 14, .w = 14, .bias = true},
        {.batch = 1, .c = 16, .m = 96, .h = 60, .w = 61},
        /* maps mode (small planes, maps in vector lanes): whole and
         * partial 32-map panels, one panel split by pixels, batch 2 */
        {.batch = 1, .c = 160, .m = 960, .h = 7, .w = 7},
        {.batch = 1, .c = 37, .m = 60, .h = 7, .w = 7, .bias = true},
        {.batch = 2, .c = 20, .m = 32, .h = 5, .w = 5},
        {.batch = 1, .c = 3, .m = 64, .h = 1, .w = 1}};
    /* The mode is the one the comments above claim. */
    cd_pack1x1_plan pl;
    cd_pack1x1_plan_init(&pl, 1, 160, 960, 49);
    assert_true(pl.maps_mode);
    cd_pack1x1_plan_init(&pl, 1, 37, 60, 49);
    assert_true(pl.maps_mode);
    cd_pack1x1_plan_init(&pl, 1, 37, 50, 49); /* 50 of 64 maps waste as much */
    assert_false(pl.maps_mode);
    cd_pack1x1_plan_init(&pl, 1, 24, 144, 56 * 56);
    assert_false(pl.maps_mode);
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) {
        shape s = edge[i];
        s.group = 1, s.kh = s.kw = s.s = s.d = 1;
        for (uint64_t seed = 0; seed < 4; seed++)
            assert_true(check_shape(CD_CONV_PACK1X1, s, 3000 * i + seed, seed * 41 + i) <= 1.0);
    }
}

/* The packed 1x1 kernel's outputs with epilogue (bias, residual, act) must
 * be bit for bit those of a plain run followed by cd_epilogue_apply: its
 * fused stores (none/ReLU/Clip) claim the same arithmetic. Inputs include
 * exact zeros, -0 and values at the Clip bounds so ties take the same side. */
static void check_pack1x1_bits(int64_t c, int64_t m, int64_t sp, cd_act act, bool bias,
                               bool res, uint64_t seed)
{
    cd_pack1x1_plan pl;
    cd_pack1x1_plan_init(&pl, 2, c, m, sp);
    int64_t xd[1] = {2 * c * sp}, wd[1] = {m * c}, yd[1] = {2 * m * sp}, bd[1] = {m};
    cd_tensor *x = tu_random(1, xd, seed + 1, -1, 1), *w = tu_random(1, wd, seed + 2, -1, 1);
    cd_tensor *b = tu_random(1, bd, seed + 3, -1, 1), *r = tu_random(1, yd, seed + 4, -1, 1);
    float *xv = x->data, *bv = b->data, *rv = r->data;
    for (int64_t i = 0; i < 2 * c * sp; i += 7) /* some all-zero sums */
        xv[i] = 0.0f;
    bv[0] = -0.0f, bv[m - 1] = 0.5f, rv[0] = -0.5f;
    cd_tensor *u = tu_random(1, (int64_t[]){(int64_t)cd_pack1x1_weight_floats(&pl)}, 0, 0, 0);
    cd_pack1x1_weights(&pl, w->data, u->data);
    float *scratch = calloc(cd_pack1x1_scratch_floats(&pl, 2), sizeof(float));
    cd_tensor *want = tu_random(1, yd, 5, 0, 0), *got = tu_random(1, yd, 6, 3, 3);
    cd_epilogue ep = {.act = act, .lo = -0.5f, .hi = 0.5f};
    cd_pack1x1_run(NULL, &pl, u->data, x->data, NULL, NULL, NULL, want->data, scratch);
    for (int64_t n = 0; n < 2; n++)
        cd_epilogue_apply(&ep, (float *)want->data + n * m * sp, bias ? bv : NULL,
                          res ? rv + n * m * sp : NULL, m, sp);
    cd_error err = {0};
    cd_pool *pool = NULL;
    assert_int_equal(cd_pool_create(2, &pool, &err), CD_OK);
    for (int threads = 1; threads <= 2; threads++) {
        cd_pack1x1_run(threads == 2 ? pool : NULL, &pl, u->data, x->data, bias ? bv : NULL,
                       res ? rv : NULL, &ep, got->data, scratch);
        assert_memory_equal(got->data, want->data, (size_t)(2 * m * sp) * sizeof(float));
    }
    cd_pool_free(pool);
    free(scratch);
    cd_tensor *all[] = {x, w, b, r, u, want, got};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        cd_tensor_free(all[i]);
}

/* Every epilogue the packed 1x1 kernel fuses into its stores (no
 * activation, ReLU, Clip; with and without bias and residual), in pixel
 * mode (whole, 16-pixel and packed partial sub-blocks) and maps mode (7x7
 * planes), against cd_conv_ref (with 1 and 2 threads giving the same bits)
 * and bit for bit against the unfused pass. */
static void test_pack1x1_fused(void **state)
{
    (void)state;
    static const cd_act acts[] = {CD_ACT_NONE, CD_ACT_RELU, CD_ACT_CLIP, CD_ACT_HARD_SWISH};
    static const shape shapes[] = {
        {.batch = 2, .c = 19, .m = 30, .h = 9, .w = 9},   /* 81 = 2 x 32 + 17: packed tail */
        {.batch = 1, .c = 24, .m = 25, .h = 6, .w = 8},   /* 48 = 32 + 16 */
        {.batch = 1, .c = 40, .m = 60, .h = 7, .w = 7},   /* maps mode */
        {.batch = 2, .c = 16, .m = 200, .h = 7, .w = 7}}; /* maps mode, map chunks */
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) { /* modes as claimed */
        cd_pack1x1_plan pl;
        cd_pack1x1_plan_init(&pl, shapes[i].batch, shapes[i].c, shapes[i].m,
                             shapes[i].h * shapes[i].w);
        assert_int_equal(pl.maps_mode, i >= 2);
    }
    uint64_t seed = 0;
    for (size_t a = 0; a < sizeof acts / sizeof *acts; a++)
        for (int flags = 0; flags < 4; flags++)
            for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
                shape s = shapes[i];
                s.group = 1, s.kh = s.kw = s.s = s.d = 1, s.bias = flags & 1;
                cd_epilogue ep = {.act = acts[a], .lo = -0.5f, .hi = 1.5f};
                seed++;
                assert_true(check_shape_ep(CD_CONV_PACK1X1, s, 7000 + seed, ep, false,
                                           (flags & 2) != 0) <= 1.0);
                check_pack1x1_bits(s.c, s.m, s.h * s.w, acts[a], flags & 1, (flags & 2) != 0,
                                   9000 + seed);
            }
}

static void test_depthwise(void **state) { (void)state; check_algo(CD_CONV_DEPTHWISE); }
static void test_direct(void **state) { (void)state; check_algo(CD_CONV_DIRECT); }
static void test_im2col_pack(void **state) { (void)state; check_algo(CD_CONV_IM2COL_PACK); }

/* The row kernel exists in AVX-512 builds only (elsewhere it never applies). */
static bool rowvec_built(void)
{
    cd_win_geom g = {.nsp = 2, .k = {3, 3, 1}, .s = {2, 2, 1}, .d = {1, 1, 1}};
    return cd_conv_rowvec_applies(&g);
}

/* The row-vectorised kernel on random shapes, then on fixed ones with every
 * epilogue: the MobileNets' first layers at full size (224 -> 112, 16 and 32
 * maps, batch 2), 5x5 and 7x7 windows with asymmetric padding, 24 maps (a
 * 16 block and an 8 block), tails of 16-column chunks, planes narrower than
 * one chunk, stride 1, one channel and four. */
static void test_rowvec(void **state)
{
    (void)state;
    if (!rowvec_built())
        skip();
    check_algo(CD_CONV_ROWVEC);
    static const shape fixed[] = {
        {.batch = 2, .c = 3, .m = 16, .h = 224, .w = 224, .kh = 3, .kw = 3, .s = 2, .pad = 1},
        {.batch = 2, .c = 3, .m = 32, .h = 224, .w = 224, .kh = 3, .kw = 3, .s = 2, .pad = 1},
        {.batch = 2, .c = 3, .m = 24, .h = 33, .w = 35, .kh = 5, .kw = 5, .s = 2, .pad = 2,
         .pad_extra = 1},
        {.batch = 1, .c = 1, .m = 8, .h = 9, .w = 17, .kh = 3, .kw = 3, .s = 2},
        {.batch = 2, .c = 4, .m = 16, .h = 31, .w = 47, .kh = 3, .kw = 3, .s = 1, .pad = 1},
        {.batch = 1, .c = 2, .m = 32, .h = 4, .w = 4, .kh = 3, .kw = 3, .s = 2, .pad = 1},
        {.batch = 2, .c = 3, .m = 20, .h = 41, .w = 67, .kh = 7, .kw = 7, .s = 2, .pad = 3},
        {.batch = 2, .c = 4, .m = 8, .h = 18, .w = 66, .kh = 3, .kw = 3, .s = 2, .pad = 0,
         .pad_extra = 1},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        for (int act = CD_ACT_NONE; act <= CD_ACT_HARD_SIGMOID; act++) {
            shape s = fixed[i];
            s.group = 1, s.d = 1, s.bias = act % 2 == 0;
            cd_epilogue ep = {.act = (cd_act)act, .lo = 0.0f, .hi = 6.0f, .alpha = 0.1f,
                              .beta = 0.5f};
            if (act == CD_ACT_HARD_SIGMOID)
                ep.alpha = 1.0f / 6.0f;
            uint64_t seed = 100 * i + (uint64_t)act;
            assert_true(check_shape_ep(CD_CONV_ROWVEC, s, seed, ep, act % 3 == 0, act % 2 == 1) <=
                        1.0);
        }
}
static void test_winograd(void **state) { (void)state; check_algo(CD_CONV_WINOGRAD); }
/* F(4x4, 3x3) and F(2x2, 3x3) (the same blocked code with 2x2 output tiles)
 * on shapes that reach every branch of their work split: several
 * map panels and map blocks (maps > 64, not multiples of 32; several map
 * blocks share one input transform done in channel chunks), tile blocks of
 * whole rows and of partial rows (rows wider than a block), one-tile-wide
 * rows, outputs smaller than one tile, blocks spanning batch items, many
 * channels (small blocks), asymmetric padding; each with random epilogues,
 * and 1 vs 2 threads compared bit for bit inside check_shape. */
static void test_winograd4(void **state)
{
    (void)state;
    check_algo(CD_CONV_WINOGRAD4);
    static const shape edge[] = {
        {.batch = 2, .c = 64, .m = 64, .h = 14, .w = 14, .pad = 1},
        {.batch = 1, .c = 256, .m = 96, .h = 9, .w = 9, .pad = 1},
        {.batch = 1, .c = 40, .m = 130, .h = 30, .w = 70, .pad = 1},
        {.batch = 3, .c = 17, .m = 33, .h = 7, .w = 5},
        {.batch = 1, .c = 5, .m = 200, .h = 3, .w = 3, .pad = 1},
        {.batch = 1, .c = 300, .m = 40, .h = 6, .w = 6, .pad = 2},
        {.batch = 1, .c = 16, .m = 32, .h = 13, .w = 11, .pad_extra = 1},
        {.batch = 2, .c = 19, .m = 45, .h = 12, .w = 11, .pad = 1, .pad_extra = 1},
        {.batch = 1, .c = 16, .m = 32, .h = 5, .w = 300, .pad = 1},
        {.batch = 1, .c = 20, .m = 40, .h = 100, .w = 3},
        {.batch = 4, .c = 128, .m = 128, .h = 7, .w = 7, .pad = 1},
        {.batch = 1, .c = 33, .m = 256, .h = 10, .w = 9, .pad = 1},
        {.batch = 2, .c = 48, .m = 192, .h = 13, .w = 13, .pad = 1},
    };
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) {
        shape s = edge[i];
        s.group = 1, s.kh = s.kw = 3, s.s = s.d = 1, s.bias = i % 2 == 0;
        for (uint64_t seed = 1; seed <= 3; seed++) {
            assert_true(check_shape(CD_CONV_WINOGRAD4, s, 1000 * i + seed, seed * 31 + i) <= 1.0);
            assert_true(check_shape(CD_CONV_WINOGRAD, s, 2000 * i + seed, seed * 37 + i) <= 1.0);
        }
    }
}

/* CD_CONV_AUTO takes F(4x4, 3x3) on a resnet-like layer and F(2x2, 3x3) on
 * 7x7 maps (4 tiles of 4x4); CD_CONV_AUTO_EXACT (plans kept for backward
 * passes) takes F(2x2) where AUTO takes F(4x4); thin products take the
 * direct kernel, other stride-1 windows im2col + sgemm, strided ones im2col
 * + the packed kernel. */
static void test_winograd4_selection(void **state)
{
    (void)state;
    struct {
        int64_t c, m, hw, ks;
        cd_conv_algo algo, want;
        int64_t stride;
    } cases[] = {{64, 64, 56, 3, CD_CONV_AUTO, CD_CONV_WINOGRAD4, 1},
                 {64, 64, 7, 3, CD_CONV_AUTO, CD_CONV_WINOGRAD, 1},
                 {64, 64, 7, 3, CD_CONV_AUTO_EXACT, CD_CONV_WINOGRAD, 1},
                 {64, 64, 56, 3, CD_CONV_AUTO_EXACT, CD_CONV_WINOGRAD, 1},
                 /* thin products (K = channels * window <= 160; first
                  * layers: K = 27, resnet's 7x7 K = 147): the direct kernel */
                 {3, 64, 56, 3, CD_CONV_AUTO_EXACT, CD_CONV_DIRECT, 1},
                 {3, 64, 56, 3, CD_CONV_AUTO, CD_CONV_DIRECT, 1},
                 {3, 64, 56, 7, CD_CONV_AUTO, CD_CONV_DIRECT, 1},
                 {17, 8, 56, 3, CD_CONV_AUTO, CD_CONV_DIRECT, 1}, /* K = 153 */
                 {18, 8, 56, 3, CD_CONV_AUTO, CD_CONV_IM2COL, 1}, /* K = 162 */
                 {3, 4, 56, 3, CD_CONV_AUTO, CD_CONV_IM2COL, 1},  /* under 8 maps */
                 {64, 8, 56, 3, CD_CONV_AUTO, CD_CONV_IM2COL, 1}, /* Winograd: 32+ maps */
                 /* 1x1 stride 1 (mobilenet_v2's expand / project layers):
                  * the packed kernel for fast and tape plans alike. */
                 {32, 16, 112, 1, CD_CONV_AUTO, CD_CONV_PACK1X1, 1},
                 {160, 960, 7, 1, CD_CONV_AUTO, CD_CONV_PACK1X1, 1},
                 {96, 576, 14, 1, CD_CONV_AUTO_EXACT, CD_CONV_PACK1X1, 1},
                 /* strided windows (resnet18's stride-2 3x3 convs): im2col
                  * + the packed kernel; strided 1x1 stays on sgemm, thin
                  * products on the direct kernel */
                 {64, 128, 56, 3, CD_CONV_AUTO, CD_CONV_IM2COL_PACK, 2},
                 {256, 512, 14, 3, CD_CONV_AUTO_EXACT, CD_CONV_IM2COL_PACK, 2},
                 {64, 128, 56, 1, CD_CONV_AUTO, CD_CONV_IM2COL, 2},
                 {3, 64, 224, 7, CD_CONV_AUTO, CD_CONV_DIRECT, 2},
                 /* the MobileNets' first layers (3 -> 16 / 32 maps, 3x3
                  * stride 2): the row kernel where it is built; 64 maps
                  * (squeezenet) stay on the direct one */
                 {3, 16, 224, 3, CD_CONV_AUTO, CD_CONV_ROWVEC, 2},
                 {3, 32, 224, 3, CD_CONV_AUTO_EXACT, CD_CONV_ROWVEC, 2},
                 {3, 64, 224, 3, CD_CONV_AUTO, CD_CONV_DIRECT, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        shape s = {.batch = 1, .c = cases[i].c, .m = cases[i].m, .group = 1, .h = cases[i].hw,
                   .w = cases[i].hw, .kh = cases[i].ks, .kw = cases[i].ks,
                   .s = cases[i].stride, .d = 1,
                   .pad = cases[i].ks / 2};
        cd_node n;
        make_node(&n, &s);
        int64_t xd[4] = {1, s.c, s.h, s.w}, wd[4] = {s.m, s.c, s.kh, s.kw};
        cd_tensor *x = tu_random(4, xd, 1, -1, 1), *w = tu_random(4, wd, 2, -1, 1);
        cd_tensor *in[2] = {x, w};
        cd_error err = {0};
        cd_conv_kernel *k = NULL;
        assert_int_equal(cd_conv_kernel_create(&n, in, NULL, NULL, NULL, cases[i].algo, &k, &err),
                         CD_OK);
        cd_conv_algo want = cases[i].want;
        if (want == CD_CONV_ROWVEC && !rowvec_built())
            want = CD_CONV_DIRECT;
        assert_int_equal(cd_conv_kernel_algo(k), want);
        cd_conv_kernel_free(k);
        cd_tensor_free(x);
        cd_tensor_free(w);
        cd_node_clear(&n);
    }
}

/* A forced algorithm that does not fit the geometry is refused, naming the node. */
static void test_refuses_inapplicable(void **state)
{
    (void)state;
    shape s = {.batch = 1, .c = 4, .m = 4, .group = 1, .h = 8, .w = 8, .kh = 3, .kw = 3,
               .s = 2, .d = 1, .pad = 1};
    cd_node n;
    make_node(&n, &s);
    int64_t xd[4] = {1, 4, 8, 8}, wd[4] = {4, 4, 3, 3};
    cd_tensor *x = tu_random(4, xd, 1, -1, 1), *w = tu_random(4, wd, 2, -1, 1);
    cd_tensor *in[2] = {x, w};
    cd_error err = {0};
    cd_conv_kernel *k = NULL;
    assert_int_equal(cd_conv_kernel_create(&n, in, NULL, NULL, NULL, CD_CONV_WINOGRAD, &k, &err),
                     CD_ERR_UNSUPPORTED);
    assert_null(k);
    assert_non_null(strstr(err.message, "Conv"));
    assert_int_equal(cd_conv_kernel_create(&n, in, NULL, NULL, NULL, CD_CONV_AUTO, &k, &err),
                     CD_OK);
    assert_int_equal(cd_conv_kernel_algo(k), CD_CONV_IM2COL);
    cd_conv_kernel_free(k);
    cd_tensor_free(x);
    cd_tensor_free(w);
    cd_node_clear(&n);
}

/* A bound 2-D MaxPool node with these kernel, strides, dilations and pads
 * (begin h, w, end h, w): the window geometry the tests resolve. */
static void maxpool_node(cd_node *n, const int64_t *k, const int64_t *s2, const int64_t *d,
                         const int64_t *pads)
{
    cd_error err = {0};
    assert_int_equal(cd_node_init(n, "MaxPool", 13, 1, 1, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "kernel_shape", k, 2, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "strides", s2, 2, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "dilations", d, 2, &err), CD_OK);
    assert_int_equal(cd_node_add_ints(n, "pads", pads, 4, &err), CD_OK);
    assert_int_equal(cd_node_bind(n, &err), CD_OK);
}

/* The reference fold: taps in row-major window order, a value replacing the
 * running max when greater or NaN (ONNX's reference MaxPool keeps the first
 * of equal values and propagates NaN). */
static float ref_window_max(const float *xp, const int64_t *hw, const int64_t *k,
                            const int64_t *s2, const int64_t *d, const int64_t *pads, int64_t oh,
                            int64_t ow)
{
    float best = -INFINITY;
    for (int64_t a = 0; a < k[0]; a++)
        for (int64_t b = 0; b < k[1]; b++) {
            int64_t ih = oh * s2[0] - pads[0] + a * d[0];
            int64_t iw = ow * s2[1] - pads[1] + b * d[1];
            if (ih < 0 || ih >= hw[0] || iw < 0 || iw >= hw[1])
                continue;
            float v = xp[ih * hw[1] + iw];
            if (v > best || isnan(v))
                best = v;
        }
    return best;
}

/* cd_maxpool_2d against a naive max over the in-range taps of each window,
 * bit for bit: widths up to 72 reach the 8- and 16-wide stride-1/2 paths and their
 * shifted last chunks, stride 3 the generic path; some inputs hold NaNs and
 * signed zeros (which of -0/+0 wins, and NaN propagation, must match). */
static void test_maxpool(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        uint64_t st = seed;
        /* Seeds past 120: rows 1-4 wide with begin pads up to 3, so the
         * left edge can be wider than the whole output row (fuzz finding). */
        bool narrow = seed > 120;
        int64_t k[2] = {rnd(&st, 1, 4), rnd(&st, 1, 4)}, s2[2] = {rnd(&st, 1, 3), rnd(&st, 1, 3)};
        int64_t d[2] = {rnd(&st, 1, 2), rnd(&st, 1, 2)};
        int64_t hw[2] = {rnd(&st, 6, 20), narrow ? rnd(&st, 1, 4) : rnd(&st, 6, 72)};
        int64_t pads[4] = {rnd(&st, 0, 1), narrow ? rnd(&st, 0, 3) : rnd(&st, 0, 1), rnd(&st, 0, 1),
                           rnd(&st, 0, 1)};
        bool ceil_mode = rnd(&st, 0, 1) == 1;
        int specials = (int)rnd(&st, 0, 2); /* 0: none, 1: signed zeros, 2: zeros and NaNs */
        cd_node n;
        cd_error err = {0};
        maxpool_node(&n, k, s2, d, pads);
        cd_win_geom g;
        if (cd_win_resolve(&n, 2, hw, k, ceil_mode, &g, &err) != CD_OK) {
            cd_node_clear(&n); /* window larger than the padded input */
            continue;
        }
        int64_t planes = 3, xd[3] = {planes, hw[0], hw[1]}, yd[3] = {planes, g.out[0], g.out[1]};
        cd_tensor *x = tu_random(3, xd, seed, -1, 1), *y = tu_random(3, yd, 0, 0, 0);
        float *xw = x->data;
        for (int64_t i = 0; specials && i < planes * hw[0] * hw[1]; i++) {
            int64_t r = rnd(&st, 0, 15);
            if (r < 4) /* many ties between -0 and +0: all of a window's values <= 0 */
                xw[i] = r % 2 ? -0.0f : 0.0f;
            else if (r < 12)
                xw[i] = -fabsf(xw[i]);
            else if (r >= 12 && r <= 13 && specials == 2) /* two NaNs: which one wins shows */
                xw[i] = r == 12 ? NAN : -NAN;
        }
        cd_maxpool_2d(x->data, y->data, planes, &g);
        const float *xv = x->data, *yv = y->data;
        for (int64_t p = 0; p < planes; p++)
            for (int64_t oh = 0; oh < g.out[0]; oh++)
                for (int64_t ow = 0; ow < g.out[1]; ow++) {
                    float want = ref_window_max(xv + p * hw[0] * hw[1], hw, k, s2, d, pads, oh, ow);
                    float got = yv[(p * g.out[0] + oh) * g.out[1] + ow];
                    if (memcmp(&want, &got, sizeof got) != 0)
                        fail_msg("seed %llu plane %lld (%lld,%lld): %g, want %g",
                                 (unsigned long long)seed, (long long)p, (long long)oh,
                                 (long long)ow, got, want);
                }
        cd_tensor_free(x);
        cd_tensor_free(y);
        cd_node_clear(&n);
    }
}

/* cd_col2im_2d_add is the adjoint of cd_im2col_2d: <im2col(x), c> = <x, col2im(c)>
 * for random 2-D geometries (strides, dilations, asymmetric pads). */
static void test_col2im_adjoint(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 60; seed++) {
        uint64_t st = seed;
        int64_t k[2] = {rnd(&st, 1, 3), rnd(&st, 1, 3)}, s2[2] = {rnd(&st, 1, 3), rnd(&st, 1, 2)};
        int64_t d[2] = {rnd(&st, 1, 2), rnd(&st, 1, 2)}, hw[2] = {rnd(&st, 6, 12), rnd(&st, 6, 12)};
        int64_t pads[4] = {rnd(&st, 0, 2), rnd(&st, 0, 1), rnd(&st, 0, 1), rnd(&st, 0, 2)};
        cd_node n;
        cd_error err = {0};
        maxpool_node(&n, k, s2, d, pads);
        cd_win_geom g;
        assert_int_equal(cd_win_resolve(&n, 2, hw, k, false, &g, &err), CD_OK);
        int64_t ch = 3, xd[3] = {ch, hw[0], hw[1]};
        int64_t cd2[2] = {ch * k[0] * k[1], g.out[0] * g.out[1]};
        cd_tensor *x = tu_random(3, xd, seed, -1, 1), *c = tu_random(2, cd2, seed + 99, -1, 1);
        cd_tensor *colx = tu_random(2, cd2, 0, 0, 0), *img = tu_random(3, xd, 0, 0, 0);
        cd_im2col_2d(x->data, ch, &g, colx->data);
        cd_col2im_2d_add(c->data, ch, &g, img->data);
        double lhs = 0, rhs = 0;
        const float *a = colx->data, *b = c->data, *xv = x->data, *iv = img->data;
        for (size_t i = 0; i < cd_tensor_numel(c); i++)
            lhs += (double)a[i] * b[i];
        for (size_t i = 0; i < cd_tensor_numel(x); i++)
            rhs += (double)xv[i] * iv[i];
        assert_true(fabs(lhs - rhs) <= 1e-4 * (1 + fabs(lhs)));
        cd_tensor_free(x);
        cd_tensor_free(c);
        cd_tensor_free(colx);
        cd_tensor_free(img);
        cd_node_clear(&n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_im2col),     cmocka_unit_test(test_gemm_1x1),
        cmocka_unit_test(test_pack1x1),    cmocka_unit_test(test_pack1x1_fused),
        cmocka_unit_test(test_depthwise),  cmocka_unit_test(test_direct),
        cmocka_unit_test(test_im2col_pack), cmocka_unit_test(test_rowvec),
        cmocka_unit_test(test_winograd),
        cmocka_unit_test(test_winograd4),  cmocka_unit_test(test_winograd4_selection),
        cmocka_unit_test(test_refuses_inapplicable), cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_col2im_adjoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
