/* Conv and ConvTranspose (ONNX semantics, 1-D to 3-D, float32).
 *
 * Both are lowered onto one primitive pair: im2col (gather the receptive
 * field of every output position into a column matrix) and col2im (its
 * adjoint, scatter-add). Conv forward is W * im2col(X); ConvTranspose is the
 * adjoint of a Conv from Y-space to X-space, so its forward is col2im(W^T X)
 * and its backward reuses im2col. Every product is an OpenBLAS sgemm done per
 * group and per batch item on scratch from the session.
 *
 * The float64 kernels (forward64/backward64, the exact-gradient mode) follow
 * the same lowering with dgemm and none of the fast paths. Conv backward and
 * both ConvTranspose kernels are one body for the two element types, over an
 * element kit (conv_elem).
 *
 * Also holds the window geometry shared with core/ops/pool.c and a naive
 * reference Conv the tests compare the fast path against (conv_ref.h). */
#include <cblas.h>
#include <limits.h>
#include <stdatomic.h>
#include <string.h>

#include <stdlib.h>

#include "../parallel.h"
#include "conv_fast.h"

/* Window geometry --------------------------------------------------------- */

static bool auto_pad_known(const char *ap)
{
    return strcmp(ap, "NOTSET") == 0 || strcmp(ap, "VALID") == 0 ||
           strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0;
}

/* Reads an ints attribute of exactly count values into v (default def for
 * every value when absent). */
static cd_status read_ints(const cd_node *n, const char *name, int count, int64_t def,
                           int64_t *v, cd_error *err)
{
    const int64_t *vals = NULL;
    int got = cd_attr_ints(n, name, &vals);
    if (got < 0) {
        for (int i = 0; i < count; i++)
            v[i] = def;
        return CD_OK;
    }
    if (got != count)
        return cd_node_fail(n, err, CD_ERR_PARSE, "attribute %s has %d values, expected %d",
                            name, got, count);
    memcpy(v, vals, (size_t)count * sizeof *v);
    return CD_OK;
}

/* Kernel sizes, strides, dilations and pads beyond this are refused: no real
 * model comes near, and it keeps every window computation far from int64
 * overflow (a fuzzed MaxPool with kernel 2^63-1 otherwise looped "forever"). */
#define WIN_ATTR_MAX ((int64_t)1 << 24)

cd_status cd_win_check_attrs(const cd_node *n, int nsp, cd_error *err)
{
    const char *ap = cd_attr_string(n, "auto_pad", "NOTSET");
    if (!auto_pad_known(ap))
        return cd_node_fail(n, err, CD_ERR_PARSE, "unknown auto_pad '%s'", ap);
    static const char *const positive[] = {"strides", "dilations", "kernel_shape"};
    for (size_t a = 0; a < CD_COUNT_OF(positive); a++) {
        const int64_t *v = NULL;
        int cnt = cd_attr_ints(n, positive[a], &v);
        if (cnt > CD_WIN_MAX_SP || (nsp >= 0 && cnt >= 0 && cnt != nsp))
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                                "attribute %s has %d values for spatial rank %d (1..3 supported)",
                                positive[a], cnt, nsp);
        for (int i = 0; i < cnt; i++)
            if (v[i] < 1 || v[i] > WIN_ATTR_MAX)
                return cd_node_fail(n, err, CD_ERR_PARSE,
                                    "attribute %s[%d] = %lld must be in 1..%lld", positive[a], i,
                                    (long long)v[i], (long long)WIN_ATTR_MAX);
    }
    const int64_t *p = NULL;
    int cnt = cd_attr_ints(n, "pads", &p);
    if (cnt >= 0 && (cnt > 2 * CD_WIN_MAX_SP || cnt % 2 != 0 || (nsp >= 0 && cnt != 2 * nsp)))
        return cd_node_fail(n, err, CD_ERR_PARSE, "attribute pads has %d values", cnt);
    for (int i = 0; i < cnt; i++)
        if (p[i] > WIN_ATTR_MAX || p[i] < -WIN_ATTR_MAX)
            return cd_node_fail(n, err, CD_ERR_PARSE, "attribute pads[%d] = %lld is absurd", i,
                                (long long)p[i]);
    return CD_OK;
}

static void geom_fill_unit(cd_win_geom *g, int from)
{
    for (int i = from; i < CD_WIN_MAX_SP; i++) {
        g->in[i] = g->out[i] = g->k[i] = g->s[i] = g->d[i] = 1;
        g->pb[i] = g->pe[i] = 0;
    }
}

/* Reads strides, dilations and the kernel into g (spatial dims 0..nsp-1). */
static cd_status geom_read_common(const cd_node *n, int nsp, const int64_t *k, cd_win_geom *g,
                                  cd_error *err)
{
    cd_status st = cd_win_check_attrs(n, nsp, err);
    if (st != CD_OK)
        return st;
    memset(g, 0, sizeof *g);
    g->nsp = nsp;
    geom_fill_unit(g, nsp);
    if ((st = read_ints(n, "strides", nsp, 1, g->s, err)) != CD_OK ||
        (st = read_ints(n, "dilations", nsp, 1, g->d, err)) != CD_OK)
        return st;
    for (int i = 0; i < nsp; i++) {
        if (k[i] < 1 || k[i] > WIN_ATTR_MAX)
            return cd_node_fail(n, err, CD_ERR_SHAPE, "kernel size %lld in spatial dim %d",
                                (long long)k[i], i);
        g->k[i] = k[i];
    }
    return CD_OK;
}

static int64_t effective_kernel(const cd_win_geom *g, int i) { return (g->k[i] - 1) * g->d[i] + 1; }

cd_status cd_win_resolve(const cd_node *n, int nsp, const int64_t *in, const int64_t *k,
                         bool ceil_mode, cd_win_geom *g, cd_error *err)
{
    cd_status st = geom_read_common(n, nsp, k, g, err);
    if (st != CD_OK)
        return st;
    const char *ap = cd_attr_string(n, "auto_pad", "NOTSET");
    int64_t pads[2 * CD_WIN_MAX_SP];
    if ((st = read_ints(n, "pads", 2 * nsp, 0, pads, err)) != CD_OK)
        return st;
    bool same = strncmp(ap, "SAME_", 5) == 0;
    for (int i = 0; i < nsp; i++) {
        int64_t eff = effective_kernel(g, i);
        g->in[i] = in[i];
        if (same) {
            /* Output covers ceil(in / stride) positions; the padding needed
             * for that is split with the odd element at the end (UPPER) or at
             * the beginning (LOWER). */
            g->out[i] = (in[i] + g->s[i] - 1) / g->s[i];
            int64_t total = (g->out[i] - 1) * g->s[i] + eff - in[i];
            if (total < 0)
                total = 0;
            g->pb[i] = strcmp(ap, "SAME_UPPER") == 0 ? total / 2 : total - total / 2;
            g->pe[i] = total - g->pb[i];
            continue;
        }
        bool valid = strcmp(ap, "VALID") == 0;
        g->pb[i] = valid ? 0 : pads[i];
        g->pe[i] = valid ? 0 : pads[i + nsp];
        if (g->pb[i] < 0 || g->pe[i] < 0)
            return cd_node_fail(n, err, CD_ERR_PARSE, "negative pads in spatial dim %d", i);
        int64_t span = in[i] + g->pb[i] + g->pe[i] - eff;
        if (span < 0)
            return cd_node_fail(n, err, CD_ERR_SHAPE,
                                "window %lld exceeds padded input %lld in spatial dim %d",
                                (long long)eff, (long long)(in[i] + g->pb[i] + g->pe[i]), i);
        g->out[i] = span / g->s[i] + 1;
        if (ceil_mode && span % g->s[i] != 0) {
            g->out[i]++;
            /* ONNX/PyTorch rule: the last window must start inside the input
             * or the left padding, never entirely in the right padding. */
            if ((g->out[i] - 1) * g->s[i] >= in[i] + g->pb[i])
                g->out[i]--;
        }
    }
    return CD_OK;
}

/* Sizes shared by both ops ------------------------------------------------ */

typedef struct conv_plan {
    cd_win_geom g;
    int64_t batch, group;
    int64_t cg, mg;        /* per group: Conv in/out channels, ConvTranspose X/Y channels */
    int64_t ksize;         /* kernel elements (product of k) */
    int64_t in_sp, out_sp; /* spatial element counts of geometry in/out */
    size_t col_elems;      /* rows * out_sp of the column matrix */
    bool direct;           /* 1x1, stride 1, no padding: the image is its own column matrix */
} conv_plan;

/* Computes spatial counts and checks that every sgemm dimension fits an int. */
static cd_status plan_sizes(const cd_node *n, conv_plan *p, int64_t col_channels, cd_error *err)
{
    size_t k = 1, in_sp = 1, out_sp = 1, rows = 0, col = 0;
    bool ok = true;
    for (int i = 0; i < CD_WIN_MAX_SP; i++) {
        ok = ok && p->g.out[i] >= 1 && p->g.in[i] >= 1;
        ok = ok && cd_mul_size(k, (size_t)p->g.k[i], &k) &&
             cd_mul_size(in_sp, (size_t)p->g.in[i], &in_sp) &&
             cd_mul_size(out_sp, (size_t)p->g.out[i], &out_sp);
    }
    if (!ok)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "empty or overflowing spatial size");
    ok = cd_mul_size((size_t)col_channels, k, &rows) && cd_mul_size(rows, out_sp, &col) &&
         rows <= INT_MAX && out_sp <= INT_MAX && in_sp <= INT_MAX &&
         (size_t)p->mg <= INT_MAX && (size_t)p->cg <= INT_MAX;
    if (!ok)
        return cd_node_fail(n, err, CD_ERR_LIMIT, "convolution too large for the BLAS interface");
    p->ksize = (int64_t)k;
    p->in_sp = (int64_t)in_sp;
    p->out_sp = (int64_t)out_sp;
    p->col_elems = col;
    p->direct = k == 1;
    for (int i = 0; i < CD_WIN_MAX_SP; i++)
        p->direct = p->direct && p->g.s[i] == 1 && p->g.pb[i] == 0 && p->g.pe[i] == 0 &&
                    p->g.in[i] == p->g.out[i];
    return CD_OK;
}

/* dt: CD_FLOAT32 for the float kernels, CD_FLOAT64 for the float64 ones. */
static cd_status check_float_rank(const cd_node *n, const cd_tensor *x, const cd_tensor *w,
                                  const cd_tensor *b, cd_dtype dt, cd_error *err)
{
    if (!x || !w)
        return cd_node_fail(n, err, CD_ERR_PARSE, "inputs X and W are required");
    if (x->dtype != dt || w->dtype != dt || (b && b->dtype != dt))
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "%s",
                            dt == CD_FLOAT32 ? "only float32 is supported"
                                             : "float64 kernel given non-float64 X, W or B");
    if (x->ndim < 3 || x->ndim > 2 + CD_WIN_MAX_SP)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                            "input rank %d (supported: 3..5, i.e. 1-D to 3-D)", x->ndim);
    if (w->ndim != x->ndim)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "W rank %d differs from X rank %d", w->ndim,
                            x->ndim);
    if (b && b->ndim != 1)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "bias must be 1-D");
    return CD_OK;
}

/* Kernel spatial sizes from W (dims 2..), cross-checked with kernel_shape. */
static cd_status kernel_from_w(const cd_node *n, const cd_tensor *w, int64_t *k, cd_error *err)
{
    int nsp = w->ndim - 2;
    const int64_t *ks = NULL;
    int cnt = cd_attr_ints(n, "kernel_shape", &ks);
    for (int i = 0; i < nsp; i++) {
        k[i] = w->dims[2 + i];
        if (cnt >= 0 && (cnt != nsp || ks[i] != k[i]))
            return cd_node_fail(n, err, CD_ERR_SHAPE, "kernel_shape disagrees with W's shape");
    }
    return CD_OK;
}

static cd_status plan_group(const cd_node *n, int64_t *group, cd_error *err)
{
    *group = cd_attr_int(n, "group", 1);
    if (*group < 1)
        return cd_node_fail(n, err, CD_ERR_PARSE, "group = %lld must be >= 1", (long long)*group);
    return CD_OK;
}

/* Conv: X [N, C, in...], W [M, C/G, k...], B [M]. */
static cd_status conv_plan_make(const cd_node *n, cd_tensor *const *in, conv_plan *p,
                                cd_dtype dt, cd_error *err)
{
    const cd_tensor *x = in[0], *w = in[1], *b = n->n_inputs > 2 ? in[2] : NULL;
    cd_status st = check_float_rank(n, x, w, b, dt, err);
    if (st != CD_OK || (st = plan_group(n, &p->group, err)) != CD_OK)
        return st;
    int64_t c = x->dims[1], m = w->dims[0];
    if (c % p->group != 0 || m % p->group != 0 || w->dims[1] * p->group != c)
        return cd_node_fail(n, err, CD_ERR_SHAPE,
                            "channels do not fit groups: X has %lld, W is [%lld,%lld,...], "
                            "group %lld",
                            (long long)c, (long long)m, (long long)w->dims[1],
                            (long long)p->group);
    if (b && b->dims[0] != m)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "bias has %lld values for %lld maps",
                            (long long)b->dims[0], (long long)m);
    int64_t k[CD_WIN_MAX_SP];
    if ((st = kernel_from_w(n, w, k, err)) != CD_OK ||
        (st = cd_win_resolve(n, x->ndim - 2, x->dims + 2, k, false, &p->g, err)) != CD_OK)
        return st;
    p->batch = x->dims[0];
    p->cg = c / p->group;
    p->mg = m / p->group;
    return plan_sizes(n, p, p->cg, err);
}

/* ConvTranspose output size and pads (ONNX ConvTranspose-11 rules): explicit
 * output_shape or SAME auto_pad fix the output and derive the pads (SAME_UPPER
 * puts the odd element at the end), otherwise the pads fix the output. */
static cd_status transpose_geom(const cd_node *n, const cd_tensor *x, const int64_t *k,
                                cd_win_geom *g, cd_error *err)
{
    int nsp = x->ndim - 2;
    cd_status st = geom_read_common(n, nsp, k, g, err);
    if (st != CD_OK)
        return st;
    int64_t pads[2 * CD_WIN_MAX_SP], opad[CD_WIN_MAX_SP];
    if ((st = read_ints(n, "pads", 2 * nsp, 0, pads, err)) != CD_OK ||
        (st = read_ints(n, "output_padding", nsp, 0, opad, err)) != CD_OK)
        return st;
    const int64_t *oshape = NULL;
    int ocnt = cd_attr_ints(n, "output_shape", &oshape);
    if (ocnt >= 0 && ocnt != nsp && ocnt != nsp + 2)
        return cd_node_fail(n, err, CD_ERR_PARSE, "output_shape has %d values", ocnt);
    if (ocnt == nsp + 2)
        oshape += 2; /* some exporters write the full shape */
    const char *ap = cd_attr_string(n, "auto_pad", "NOTSET");
    bool same = strncmp(ap, "SAME_", 5) == 0, upper = strcmp(ap, "SAME_UPPER") == 0;
    for (int i = 0; i < nsp; i++) {
        int64_t xin = x->dims[2 + i];
        if (opad[i] < 0)
            return cd_node_fail(n, err, CD_ERR_PARSE, "negative output_padding");
        int64_t full = g->s[i] * (xin - 1) + opad[i] + effective_kernel(g, i);
        g->out[i] = xin;
        if (ocnt >= 0 || same) {
            int64_t y = ocnt >= 0 ? oshape[i] : xin * g->s[i];
            /* A requested output larger than the full transposed result is
             * zero-extended at the end (never negative padding), as
             * ONNX Runtime does. */
            int64_t total = full > y ? full - y : 0;
            g->pb[i] = upper ? total / 2 : total - total / 2;
            g->pe[i] = total - g->pb[i];
            g->in[i] = y;
        } else {
            bool valid = strcmp(ap, "VALID") == 0;
            g->pb[i] = valid ? 0 : pads[i];
            g->pe[i] = valid ? 0 : pads[i + nsp];
            if (g->pb[i] < 0 || g->pe[i] < 0)
                return cd_node_fail(n, err, CD_ERR_PARSE, "negative pads");
            g->in[i] = full - g->pb[i] - g->pe[i];
        }
        if (g->in[i] < 1)
            return cd_node_fail(n, err, CD_ERR_SHAPE, "empty output in spatial dim %d", i);
    }
    return CD_OK;
}

/* ConvTranspose: X [N, C, in...], W [C, M/G, k...], B [M], Y [N, M, out...].
 * Geometry in = Y spatial, out = X spatial; cg = C/G (X side), mg = M/G. */
static cd_status convt_plan_make(const cd_node *n, cd_tensor *const *in, conv_plan *p,
                                 cd_dtype dt, cd_error *err)
{
    const cd_tensor *x = in[0], *w = in[1], *b = n->n_inputs > 2 ? in[2] : NULL;
    cd_status st = check_float_rank(n, x, w, b, dt, err);
    if (st != CD_OK || (st = plan_group(n, &p->group, err)) != CD_OK)
        return st;
    int64_t c = x->dims[1];
    if (w->dims[0] != c || c % p->group != 0)
        return cd_node_fail(n, err, CD_ERR_SHAPE,
                            "W's first dim %lld must equal X's channels %lld (divisible by "
                            "group %lld)",
                            (long long)w->dims[0], (long long)c, (long long)p->group);
    p->cg = c / p->group;
    p->mg = w->dims[1];
    if (b && b->dims[0] != p->mg * p->group)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "bias has %lld values for %lld maps",
                            (long long)b->dims[0], (long long)(p->mg * p->group));
    int64_t k[CD_WIN_MAX_SP];
    if ((st = kernel_from_w(n, w, k, err)) != CD_OK ||
        (st = transpose_geom(n, x, k, &p->g, err)) != CD_OK)
        return st;
    p->batch = x->dims[0];
    return plan_sizes(n, p, p->mg, err);
}

/* im2col / col2im ---------------------------------------------------------- */

/* Calls body(row, position, source index or -1) for every column entry; the
 * shared walk keeps im2col and col2im exact adjoints of each other. */
#define WIN_WALK(g, channels, BODY)                                                         \
    do {                                                                                    \
        int64_t row_ = 0;                                                                   \
        for (int64_t c_ = 0; c_ < (channels); c_++)                                         \
            for (int64_t k0 = 0; k0 < (g)->k[0]; k0++)                                      \
                for (int64_t k1 = 0; k1 < (g)->k[1]; k1++)                                  \
                    for (int64_t k2 = 0; k2 < (g)->k[2]; k2++, row_++) {                    \
                        int64_t pos_ = 0;                                                   \
                        for (int64_t o0 = 0; o0 < (g)->out[0]; o0++) {                      \
                            int64_t i0 = o0 * (g)->s[0] - (g)->pb[0] + k0 * (g)->d[0];      \
                            bool in0 = i0 >= 0 && i0 < (g)->in[0];                          \
                            for (int64_t o1 = 0; o1 < (g)->out[1]; o1++) {                  \
                                int64_t i1 = o1 * (g)->s[1] - (g)->pb[1] + k1 * (g)->d[1];  \
                                bool in1 = in0 && i1 >= 0 && i1 < (g)->in[1];               \
                                int64_t base_ = ((c_ * (g)->in[0] + i0) * (g)->in[1] + i1) *  \
                                                (g)->in[2];                                 \
                                for (int64_t o2 = 0; o2 < (g)->out[2]; o2++, pos_++) {      \
                                    int64_t i2 = o2 * (g)->s[2] - (g)->pb[2] + k2 * (g)->d[2]; \
                                    bool ok_ = in1 && i2 >= 0 && i2 < (g)->in[2];           \
                                    int64_t src_ = ok_ ? base_ + i2 : -1;                   \
                                    BODY                                                    \
                                }                                                           \
                            }                                                               \
                        }                                                                   \
                    }                                                                       \
    } while (0)

/* The element-wise primitives once per element type T: im2col, col2im_add,
 * add_bias, sum_bias_grad for float and the same names with 64 for double.
 * Bias gradients are summed in double for both types. */
#define CONV_PRIMITIVES(T, SFX)                                                             \
    /* col[(c*K + k), pos] = img[c, window(pos) + k] (0 in the padding). */                 \
    static void im2col##SFX(const T *img, int64_t channels, const cd_win_geom *g,           \
                            int64_t out_sp, T *col)                                         \
    {                                                                                       \
        WIN_WALK(g, channels, { col[row_ * out_sp + pos_] = src_ >= 0 ? img[src_] : 0; });  \
    }                                                                                       \
                                                                                            \
    /* img[c, window(pos) + k] += col[(c*K + k), pos]: the adjoint of im2col. */            \
    static void col2im_add##SFX(const T *col, int64_t channels, const cd_win_geom *g,       \
                                int64_t out_sp, T *img)                                     \
    {                                                                                       \
        WIN_WALK(g, channels, {                                                             \
            if (src_ >= 0)                                                                  \
                img[src_] += col[row_ * out_sp + pos_];                                     \
        });                                                                                 \
    }                                                                                       \
                                                                                            \
    static void add_bias##SFX(void *yv, const void *bv, int64_t maps, int64_t sp)           \
    {                                                                                       \
        T *y = yv;                                                                          \
        const T *b = bv;                                                                    \
        for (int64_t m = 0; m < maps; m++)                                                  \
            for (int64_t i = 0; i < sp; i++)                                                \
                y[m * sp + i] += b[m];                                                      \
    }                                                                                       \
                                                                                            \
    static void sum_bias_grad##SFX(const void *gyv, void *gbv, int64_t maps, int64_t sp)    \
    {                                                                                       \
        const T *gy = gyv;                                                                  \
        T *gb = gbv;                                                                        \
        for (int64_t m = 0; m < maps; m++) {                                                \
            double s = 0;                                                                   \
            for (int64_t i = 0; i < sp; i++)                                                \
                s += gy[m * sp + i];                                                        \
            gb[m] += (T)s;                                                                  \
        }                                                                                   \
    }

CONV_PRIMITIVES(float, )
CONV_PRIMITIVES(double, 64)

static void sgemm(cd_ctx *ctx, bool ta, bool tb, int64_t m, int64_t nn, int64_t k,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                  int64_t ldc)
{
    cd_sgemm(ctx, ta, tb, m, nn, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

/* copies * elems values of size bytes each from the session's scratch. */
static void *scratch_values(cd_ctx *ctx, size_t elems, size_t copies, size_t size)
{
    size_t bytes;
    if (!cd_mul_size(elems, copies, &bytes) || !cd_mul_size(bytes, size, &bytes)) {
        cd_fail(ctx->err, CD_ERR_LIMIT, "convolution scratch size overflows");
        return NULL;
    }
    return cd_ctx_scratch(ctx, bytes);
}

static float *scratch_floats(cd_ctx *ctx, size_t elems, size_t copies)
{
    return scratch_values(ctx, elems, copies, sizeof(float));
}

/* im2col runs on the pool in channel ranges (each range writes its own
 * rows); tasks only when there is enough work to pay for waking the workers:
 * about one per 32 Ki floats, at most 8. The epilogue runs inside the sgemm
 * blocks (epilogue_block), except on the batched path (epilogue_range). */
static int tasks_for(int64_t elems)
{
    int64_t t = elems / 32768 + 1;
    return t < 8 ? (int)t : 8;
}

/* Float64 primitives (forward64/backward64) --------------------------------
 *
 * The exact-gradient mode takes no fast path: im2col/col2im over the same
 * window walk as the float kernels, and OpenBLAS dgemm. */

/* Channel ranges of one image on the pool: each range owns its rows of the
 * column matrix and its planes of the image, so col2im needs no locking. */
typedef struct col64_job {
    const conv_plan *p;
    const double *src;
    double *dst;
    bool to_col; /* im2col, else col2im_add */
} col64_job;

static void col64_range(void *arg, int64_t lo, int64_t hi)
{
    const col64_job *j = arg;
    const conv_plan *p = j->p;
    size_t img = (size_t)(lo * p->in_sp), col = (size_t)(lo * p->ksize * p->out_sp);
    if (j->to_col)
        im2col64(j->src + img, hi - lo, &p->g, p->out_sp, j->dst + col);
    else
        col2im_add64(j->src + col, hi - lo, &p->g, p->out_sp, j->dst + img);
}

static void col64_run(cd_ctx *ctx, const conv_plan *p, int64_t channels, const double *src,
                      double *dst, bool to_col)
{
    col64_job j = {p, src, dst, to_col};
    int64_t elems = channels * p->ksize * p->out_sp;
    cd_pool_for(ctx->pool, channels, tasks_for(elems), col64_range, &j);
}

/* C = op(A) op(B) + beta C cut into ranges of op(A)'s rows or op(B)'s
 * columns (the longer), the cut chosen from the shape alone so that the bits
 * do not depend on the thread count (as cd_sgemm); each range is one
 * single-threaded dgemm. */
typedef struct dgemm_job {
    bool ta, tb, rows;
    int64_t m, n, k, lda, ldb, ldc, per;
    const double *a, *b;
    double beta;
    double *c;
} dgemm_job;

static void dgemm_task(void *arg, int task)
{
    const dgemm_job *j = arg;
    int64_t lo = (int64_t)task * j->per, len = j->rows ? j->m : j->n;
    len = len - lo < j->per ? len - lo : j->per;
    const double *a = j->a, *b = j->b;
    double *c = j->c;
    int64_t m = j->m, n = j->n;
    if (j->rows) {
        a += j->ta ? lo : lo * j->lda;
        c += lo * j->ldc;
        m = len;
    } else {
        b += j->tb ? lo * j->ldb : lo;
        c += lo;
        n = len;
    }
    cblas_dgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans,
                j->tb ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)j->k, 1.0, a,
                (int)j->lda, b, (int)j->ldb, j->beta, c, (int)j->ldc);
}

/* About one range per 2^20 multiply-adds (smaller ones do not repay a pool
 * round trip), at most 8, each at least 32 long. Untyped pointers: this is
 * the double kit's gemm (below). */
static void dgemm64(cd_ctx *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                    const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                    int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    dgemm_job j = {ta, tb, n < m, m, n, k, lda, ldb, ldc, 0, a, b, beta, c};
    int64_t len = j.rows ? m : n;
    double ranges = (double)m * (double)n * (double)k / 1048576.0 + 1;
    int64_t t = ranges < 8 ? (int64_t)ranges : 8;
    t = t < len / 32 ? t : len / 32;
    t = t > 1 ? t : 1;
    j.per = (len + t - 1) / t;
    cd_pool_run(ctx->pool, (int)((len + j.per - 1) / j.per), dgemm_task, &j);
}

/* Element kits ---------------------------------------------------------------
 *
 * The generic kernels (Conv backward, ConvTranspose forward and backward,
 * float32 and float64 alike) are written once over untyped pointers; a kit
 * gives the element size and the primitives that differ by type. Float keeps
 * what the float32 kernels always did (cd_sgemm, serial window walks, the
 * 2-D col2im); double uses dgemm64 and the pooled walks. Each call covers a
 * whole product or image, so the indirection costs nothing measurable. */
typedef struct conv_elem {
    cd_dtype dtype;
    size_t size;
    /* C = op(A) op(B) + beta C (beta 0 or 1) */
    void (*gemm)(cd_ctx *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a,
                 int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc);
    /* im2col of channels images of geometry p->g, and its adjoint (adds into img) */
    void (*im2col)(cd_ctx *ctx, const conv_plan *p, int64_t channels, const void *img,
                   void *col);
    void (*col2im_add)(cd_ctx *ctx, const conv_plan *p, int64_t channels, const void *col,
                       void *img);
    void (*add_bias)(void *y, const void *b, int64_t maps, int64_t sp);
    void (*sum_bias_grad)(const void *gy, void *gb, int64_t maps, int64_t sp);
} conv_elem;

static void gemm_f32(cd_ctx *ctx, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                     const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                     int64_t ldc)
{
    sgemm(ctx, ta, tb, m, n, k, a, lda, b, ldb, (float)beta, c, ldc);
}

static void im2col_f32(cd_ctx *ctx, const conv_plan *p, int64_t channels, const void *img,
                       void *col)
{
    (void)ctx;
    im2col(img, channels, &p->g, p->out_sp, col);
}

/* The 2-D scatter adds in the order of the generic walk: the same bits. */
static void col2im_add_f32(cd_ctx *ctx, const conv_plan *p, int64_t channels, const void *col,
                           void *img)
{
    (void)ctx;
    if (p->g.nsp == 2)
        cd_col2im_2d_add(col, channels, &p->g, img);
    else
        col2im_add(col, channels, &p->g, p->out_sp, img);
}

static void im2col_f64(cd_ctx *ctx, const conv_plan *p, int64_t channels, const void *img,
                       void *col)
{
    col64_run(ctx, p, channels, img, col, true);
}

static void col2im_add_f64(cd_ctx *ctx, const conv_plan *p, int64_t channels, const void *col,
                           void *img)
{
    col64_run(ctx, p, channels, col, img, false);
}

static const conv_elem elem_f32 = {CD_FLOAT32,     sizeof(float), gemm_f32,     im2col_f32,
                                   col2im_add_f32, add_bias,      sum_bias_grad};
static const conv_elem elem_f64 = {CD_FLOAT64,     sizeof(double), dgemm64,        im2col_f64,
                                   col2im_add_f64, add_bias64,     sum_bias_grad64};

/* Element i of an array of the kit's type. */
static void *el(const conv_elem *e, void *base, int64_t i)
{
    return (char *)base + (size_t)i * e->size;
}

static const void *cel(const conv_elem *e, const void *base, int64_t i)
{
    return (const char *)base + (size_t)i * e->size;
}

/* Conv --------------------------------------------------------------------- */

static cd_status conv_parse(cd_node *n, cd_error *err)
{
    int64_t group;
    cd_status st = plan_group(n, &group, err);
    return st != CD_OK ? st : cd_win_check_attrs(n, -1, err);
}

static cd_status conv_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                            cd_error *err)
{
    conv_plan p;
    cd_status st = conv_plan_make(n, in, &p, CD_FLOAT32, err);
    if (st != CD_OK)
        return st;
    int64_t dims[CD_MAX_DIMS] = {p.batch, p.mg * p.group};
    for (int i = 0; i < p.g.nsp; i++)
        dims[2 + i] = p.g.out[i];
    cd_tensor_set_shape(out[0], CD_FLOAT32, 2 + p.g.nsp, dims);
    return CD_OK;
}

/* Conv kernels (conv_fast.h) ----------------------------------------------- */

struct cd_conv_kernel {
    conv_plan p;
    cd_conv_algo algo;
    const float *w, *bias; /* [M][cg*K] and [M] (NULL = none); may point to own_* */
    float *own_w, *own_bias, *u; /* plan-owned copies (BN folded), Winograd weights */
    cd_epilogue ep;
    cd_wino4_plan w4; /* CD_CONV_WINOGRAD and CD_CONV_WINOGRAD4 only */
    cd_pack1x1_plan pk; /* CD_CONV_PACK1X1 only */
};

static bool algo_applies(const conv_plan *p, cd_conv_algo a)
{
    switch (a) {
    case CD_CONV_IM2COL: return true;
    case CD_CONV_GEMM_1X1: return p->direct;
    case CD_CONV_PACK1X1: return p->direct && p->group == 1;
    case CD_CONV_DIRECT:
        return p->group == 1 && p->g.nsp <= 2 && p->g.k[2] == 1 && p->g.in[2] == 1 &&
               p->cg * p->ksize <= CD_DIRECT_MAX_K;
    case CD_CONV_IM2COL_PACK:
        return p->group == 1 && p->g.nsp <= 2 && p->g.k[2] == 1 && p->g.in[2] == 1;
    case CD_CONV_ROWVEC: return p->group == 1 && cd_conv_rowvec_applies(&p->g);
    case CD_CONV_DEPTHWISE:
        return p->cg == 1 && p->mg == 1 && p->g.k[2] == 1 && p->g.in[2] == 1 &&
               p->ksize <= CD_DW_MAX_TAPS && p->g.s[1] <= CD_DW_MAX_STRIDE;
    case CD_CONV_WINOGRAD:
    case CD_CONV_WINOGRAD4:
        return p->group == 1 && p->g.nsp == 2 && p->g.k[0] == 3 && p->g.k[1] == 3 &&
               p->g.s[0] == 1 && p->g.s[1] == 1 && p->g.d[0] == 1 && p->g.d[1] == 1;
    default: return false;
    }
}

/* Winograd (conv_wino4.c) where it measured faster than im2col+sgemm (one
 * thread, per-layer timing on the AVX-512 development machine,
 * docs/performance.md). It does 4x (F(4x4,3x3)) or 2.25x (F(2x2,3x3)) fewer
 * multiplies but transforms every input and output tile, so it needs enough
 * input channels for the products to outweigh the transforms (3 and 8
 * channels lost, 16 tied, 32 and more won 1.4-3.4x), and at least 32 maps,
 * since maps are padded to 32-map panels (8 maps lost). */
static bool wino_wins(const conv_plan *p) { return p->cg >= 16 && p->mg >= 32; }

/* F(4x4,3x3) reads 36 transformed weights per map and channel, F(2x2,3x3)
 * 16. With fewer than 16 4x4 tiles (7x7 maps at batch 1: 4) the weight
 * stream dominates and F(2x2) won (512 maps: 1.5 ms against 2.4 ms; 128
 * maps: 0.12 against 0.14 ms); from 16 tiles on (14x14, squeezenet's 13x13)
 * F(4x4) won or tied. */
static cd_conv_algo wino_variant(const conv_plan *p)
{
    int64_t tiles4 = p->batch * ((p->g.out[0] + 3) / 4) * ((p->g.out[1] + 3) / 4);
    return tiles4 < 16 ? CD_CONV_WINOGRAD : CD_CONV_WINOGRAD4;
}

/* The packed 1x1 kernel (conv_pack1x1.c) against sgemm on the image: it
 * computes whole 16- or 32-pixel rows per image, so planes under 32 pixels
 * (mobilenet_v3's squeeze-excitation convs on 1x1 planes: 16x the work)
 * stay on sgemm, which batches small planes across images. */
static bool pack1x1_wins(const conv_plan *p) { return p->out_sp >= 32; }

/* The direct kernel (conv_direct.c) against im2col + sgemm for products
 * with K = channels * kernel <= CD_DIRECT_MAX_K: squeezenet's first conv
 * (3 -> 64 maps, 3x3 stride 2, 111x111 out, K = 27) took 0.62-0.66 ms
 * against 0.7-1.2 ms for im2col + sgemm (zeroing C, packing) + epilogue
 * alone; resnet18's (3 -> 64, 7x7 stride 2, 112x112, K = 147) 3.0-3.1 ms
 * against 5.2 ms, one thread (docs/performance.md). It needs planes of a
 * few 64-pixel blocks and enough maps to fill its 8-map kernel; 1x1
 * windows (resnet18's stride-2 downsample, K = 64: 0.25-0.31 against 0.22
 * ms) gain nothing from its gather and stay on sgemm. */
static bool direct_wins(const conv_plan *p)
{
    return p->out_sp >= 256 && p->mg >= 8 && p->ksize > 1;
}

/* The row-vectorised kernel (conv_rowvec.c) against the direct one, for
 * the MobileNets' first layers (3 -> 16 / 32 maps, 3x3 stride 2, 112x112
 * out, K = 27, HardSwish / Clip fused): 0.18-0.20 against 0.23-0.26 ms and
 * 0.39-0.45 against 0.50-0.53 ms, one thread (docs/performance.md).
 * Squeezenet's (64 maps, ReLU, which the direct kernel fuses too) tied or
 * lost (0.69-0.77 against 0.67-0.69 ms), as did resnet18's 7x7 (K = 147:
 * 3.0 against 2.6 ms), so it takes stride-2 rows with short windows and
 * 8..32 maps only. */
static bool rowvec_wins(const conv_plan *p)
{
    return p->g.s[1] == 2 && p->cg * p->ksize <= 32 && p->out_sp >= 256 && p->mg >= 8 &&
           p->mg <= 32;
}

/* im2col + the packed 1x1 kernel (conv_pack1x1.c) on the column matrix
 * against im2col + sgemm, for strided 2-D windows the kernels above do not
 * take (resnet18's stride-2 3x3 convs, K = 576..2304): the packed kernel
 * runs near the FMA peak with its epilogue fused and packs the weights
 * once, where sgemm packs both operands per call: 1.45-1.5 ms against
 * 1.7-2.2 ms, one thread (docs/performance.md). The column matrix is one
 * image's, as for sgemm. Stride 1 stays on sgemm, which fills "same"
 * columns block by block inside its product (the U-Net's 3x3 convs with
 * 16 maps were slower here), as do planes under 32 pixels (see
 * pack1x1_wins) and 1-D convs (tiny). */
static bool im2col_pack_wins(const conv_plan *p)
{
    return p->g.nsp == 2 && p->ksize > 1 && p->out_sp >= 32 && (p->g.s[0] > 1 || p->g.s[1] > 1);
}

/* plan_time: algorithms that transform or pack the weights once (Winograd,
 * packed 1x1) are allowed; the operator entry point runs once per call and
 * takes the copy-free paths. */
static cd_conv_algo pick_algo(const conv_plan *p, bool plan_time)
{
    if (plan_time && algo_applies(p, CD_CONV_PACK1X1) && pack1x1_wins(p))
        return CD_CONV_PACK1X1;
    if (algo_applies(p, CD_CONV_GEMM_1X1))
        return CD_CONV_GEMM_1X1;
    if (algo_applies(p, CD_CONV_DEPTHWISE))
        return CD_CONV_DEPTHWISE;
    if (plan_time && algo_applies(p, CD_CONV_WINOGRAD4) && wino_wins(p))
        return wino_variant(p);
    if (plan_time && algo_applies(p, CD_CONV_ROWVEC) && rowvec_wins(p))
        return CD_CONV_ROWVEC;
    if (plan_time && algo_applies(p, CD_CONV_DIRECT) && direct_wins(p))
        return CD_CONV_DIRECT;
    if (plan_time && algo_applies(p, CD_CONV_IM2COL_PACK) && im2col_pack_wins(p))
        return CD_CONV_IM2COL_PACK;
    return CD_CONV_IM2COL;
}

/* Copies weights and bias scaled by a folded BatchNormalization. */
static cd_status fold_bn(cd_conv_kernel *k, const float *scale, const float *shift,
                         cd_error *err)
{
    int64_t maps = k->p.mg * k->p.group, per = k->p.cg * k->p.ksize;
    k->own_w = malloc((size_t)(maps * per) * sizeof(float));
    k->own_bias = malloc((size_t)maps * sizeof(float));
    if (!k->own_w || !k->own_bias)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory folding BatchNormalization");
    for (int64_t m = 0; m < maps; m++) {
        for (int64_t i = 0; i < per; i++)
            k->own_w[m * per + i] = k->w[m * per + i] * scale[m];
        k->own_bias[m] = (k->bias ? k->bias[m] : 0.0f) * scale[m] + shift[m];
    }
    k->w = k->own_w;
    k->bias = k->own_bias;
    return CD_OK;
}

/* Allocates k->u for the transformed weights' floats, size-checked (what:
 * names them in the error). */
static cd_status alloc_transformed(const cd_node *n, cd_conv_kernel *k, size_t floats,
                                   const char *what, cd_error *err)
{
    size_t bytes;
    if (!cd_mul_size(floats, sizeof(float), &bytes))
        return cd_node_fail(n, err, CD_ERR_LIMIT, "%s too large", what);
    k->u = malloc(bytes > 0 ? bytes : 1);
    if (!k->u)
        return cd_node_fail(n, err, CD_ERR_OUT_OF_MEMORY, "out of memory for %s", what);
    return CD_OK;
}

/* Runs read only u: a BN-folded copy of the weights would be dead weight. */
static void drop_plain_weights(cd_conv_kernel *k)
{
    free(k->own_w);
    k->own_w = NULL;
    k->w = NULL;
}

/* Plans the F(4x4, 3x3) split and transforms the weights once. */
static cd_status wino4_init(const cd_node *n, cd_conv_kernel *k, cd_error *err)
{
    const conv_plan *p = &k->p;
    cd_wino4_plan_init(&k->w4, p->batch, p->cg, p->mg, &p->g,
                       k->algo == CD_CONV_WINOGRAD ? 2 : 4);
    size_t floats = (size_t)k->w4.pos;
    if (!cd_mul_size(floats, (size_t)k->w4.maps_padded, &floats) ||
        !cd_mul_size(floats, (size_t)p->cg, &floats))
        return cd_node_fail(n, err, CD_ERR_LIMIT, "Winograd weights too large");
    cd_status st = alloc_transformed(n, k, floats, "Winograd weights", err);
    if (st != CD_OK)
        return st;
    cd_wino4_weights(&k->w4, k->w, k->u);
    drop_plain_weights(k);
    return CD_OK;
}

/* Plans the packed 1x1 split and packs the weights once; for
 * CD_CONV_IM2COL_PACK the "image" is one image's column matrix. */
static cd_status pack1x1_init(const cd_node *n, cd_conv_kernel *k, cd_error *err)
{
    const conv_plan *p = &k->p;
    if (k->algo == CD_CONV_IM2COL_PACK)
        cd_pack1x1_plan_init(&k->pk, 1, p->cg * p->ksize, p->mg, p->out_sp);
    else
        cd_pack1x1_plan_init(&k->pk, p->batch, p->cg, p->mg, p->out_sp);
    cd_status st =
        alloc_transformed(n, k, cd_pack1x1_weight_floats(&k->pk), "packed 1x1 weights", err);
    if (st != CD_OK)
        return st;
    cd_pack1x1_weights(&k->pk, k->w, k->u);
    drop_plain_weights(k);
    return CD_OK;
}

/* Packs the row kernel's weights once, 16 maps interleaved per tap
 * (cd_conv_rowvec_pack). */
static cd_status rowvec_init(const cd_node *n, cd_conv_kernel *k, cd_error *err)
{
    const conv_plan *p = &k->p;
    cd_status st = alloc_transformed(n, k, cd_conv_rowvec_packed_floats(p->cg * p->ksize, p->mg),
                                     "packed row-kernel weights", err);
    if (st != CD_OK)
        return st;
    cd_conv_rowvec_pack(k->w, p->cg * p->ksize, p->mg, k->u);
    drop_plain_weights(k);
    return CD_OK;
}

/* Packs the direct kernel's weights once, 8 maps interleaved per channel
 * tap (cd_conv_direct_pack). */
static cd_status direct_init(const cd_node *n, cd_conv_kernel *k, cd_error *err)
{
    const conv_plan *p = &k->p;
    cd_status st = alloc_transformed(n, k, cd_conv_direct_packed_floats(p->cg * p->ksize, p->mg),
                                     "packed direct weights", err);
    if (st != CD_OK)
        return st;
    cd_conv_direct_pack(k->w, p->cg * p->ksize, p->mg, k->u);
    drop_plain_weights(k);
    return CD_OK;
}

/* Plan-time weight preparation of the algorithms that have one. */
static cd_status algo_init(const cd_node *n, cd_conv_kernel *k, cd_error *err)
{
    if (k->algo == CD_CONV_WINOGRAD || k->algo == CD_CONV_WINOGRAD4)
        return wino4_init(n, k, err);
    if (k->algo == CD_CONV_PACK1X1 || k->algo == CD_CONV_IM2COL_PACK)
        return pack1x1_init(n, k, err);
    if (k->algo == CD_CONV_DIRECT)
        return direct_init(n, k, err);
    if (k->algo == CD_CONV_ROWVEC)
        return rowvec_init(n, k, err);
    return CD_OK;
}

static cd_status kernel_init(cd_conv_kernel *k, const cd_node *n, cd_tensor *const *in,
                             const float *bn_scale, const float *bn_shift, const cd_epilogue *ep,
                             cd_conv_algo algo, bool plan_time, cd_error *err)
{
    memset(k, 0, sizeof *k);
    cd_status st = conv_plan_make(n, in, &k->p, CD_FLOAT32, err);
    if (st != CD_OK)
        return st;
    const cd_tensor *b = n->n_inputs > 2 ? in[2] : NULL;
    k->w = cd_cf32(in[1]);
    k->bias = b ? cd_cf32(b) : NULL;
    if (ep)
        k->ep = *ep;
    if (!k->w || (b && !k->bias))
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "weights must be known to specialise");
    if (algo == CD_CONV_AUTO || algo == CD_CONV_AUTO_EXACT) {
        cd_conv_algo auto_kind = algo;
        algo = pick_algo(&k->p, plan_time);
        /* Tape plans: F(2x2) only (see CD_CONV_AUTO_EXACT in conv_fast.h). */
        if (auto_kind == CD_CONV_AUTO_EXACT && algo == CD_CONV_WINOGRAD4)
            algo = CD_CONV_WINOGRAD;
    }
    k->algo = algo;
    if (!algo_applies(&k->p, k->algo))
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "convolution algorithm %d does not apply",
                            (int)k->algo);
    if (bn_scale && (st = fold_bn(k, bn_scale, bn_shift, err)) != CD_OK)
        return st;
    return algo_init(n, k, err);
}

static void kernel_release(cd_conv_kernel *k)
{
    free(k->own_w);
    free(k->own_bias);
    free(k->u);
}

cd_status cd_conv_kernel_create(const cd_node *n, cd_tensor *const *in, const float *bn_scale,
                                const float *bn_shift, const cd_epilogue *ep, cd_conv_algo algo,
                                cd_conv_kernel **out, cd_error *err)
{
    *out = NULL;
    cd_conv_kernel *k = malloc(sizeof *k);
    if (!k)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    cd_status st = kernel_init(k, n, in, bn_scale, bn_shift, ep, algo, true, err);
    if (st != CD_OK) {
        cd_conv_kernel_free(k);
        return st;
    }
    *out = k;
    return CD_OK;
}

void cd_conv_kernel_free(cd_conv_kernel *k)
{
    if (!k)
        return;
    kernel_release(k);
    free(k);
}

cd_conv_algo cd_conv_kernel_algo(const cd_conv_kernel *k) { return k->algo; }

typedef struct gemm_side_job {
    const conv_plan *p;
    const cd_conv_kernel *k;
    const float *x, *res;
    float *col, *y;
    const float *bias;
} gemm_side_job;

static void im2col_range(void *arg, int64_t lo, int64_t hi)
{
    const gemm_side_job *j = arg;
    const conv_plan *p = j->p;
    if (p->g.k[2] == 1 && p->g.in[2] == 1)
        cd_im2col_2d(j->x + lo * p->in_sp, hi - lo, &p->g, j->col + lo * p->ksize * p->out_sp);
    else
        im2col(j->x + lo * p->in_sp, hi - lo, &p->g, p->out_sp, j->col + lo * p->ksize * p->out_sp);
}

/* The epilogue over maps [lo, hi) as a pass of its own (the batched path,
 * whose product is scattered before it). */
static void epilogue_range(void *arg, int64_t lo, int64_t hi)
{
    const gemm_side_job *j = arg;
    int64_t sp = j->p->out_sp;
    cd_epilogue_apply(&j->k->ep, j->y + lo * sp, j->bias ? j->bias + lo : NULL,
                      j->res ? j->res + lo * sp : NULL, hi - lo, sp);
}

/* Columns [c0, c1) of the im2col matrix, filled by the thread about to
 * multiply them. */
static void im2col_block(void *arg, int64_t r0, int64_t r1, int64_t c0, int64_t c1)
{
    const gemm_side_job *j = arg;
    (void)r0, (void)r1;
    cd_im2col_2d_cols(j->x, j->p->cg, &j->p->g, j->col, c0, c1);
}

/* The epilogue of one sgemm block of maps x positions, applied by the thread
 * that computed it while it is in cache (element-wise: the same bits as a
 * separate pass). */
static void epilogue_block(void *arg, int64_t r0, int64_t r1, int64_t c0, int64_t c1)
{
    const gemm_side_job *j = arg;
    int64_t sp = j->p->out_sp;
    for (int64_t m = r0; m < r1; m++)
        cd_epilogue_apply(&j->k->ep, j->y + m * sp + c0, j->bias ? j->bias + m : NULL,
                          j->res ? j->res + m * sp + c0 : NULL, 1, c1 - c0);
}

/* Small maps in a batch: the column matrices of nb items side by side, so
 * that one sgemm has N = nb * out_sp columns (a 7x7 map alone gives N = 49,
 * where sgemm runs at about 2/3 of its speed; ~1000 columns are near its
 * best), then the product is scattered to [item][map][pos]. nb depends on
 * the shape only. Group 1 only. */
#define GEMM_BATCH_COLS 1024

static bool gemm_batches(const conv_plan *p)
{
    return p->group == 1 && p->batch > 1 && p->out_sp * 2 <= GEMM_BATCH_COLS &&
           p->g.k[2] == 1 && p->g.in[2] == 1; /* 1-D and 2-D: cd_im2col_2d_ld */
}

typedef struct im2col_ld_job {
    const conv_plan *p;
    const float *x;
    float *col;
    int64_t ld; /* row stride of the shared column matrix */
} im2col_ld_job;

static void im2col_ld_range(void *arg, int64_t lo, int64_t hi)
{
    const im2col_ld_job *j = arg;
    const conv_plan *p = j->p;
    cd_im2col_2d_ld(j->x + lo * p->in_sp, hi - lo, &p->g, j->col + lo * p->ksize * j->ld, j->ld);
}

static cd_status run_gemm_batched(const cd_conv_kernel *k, const float *xall, const float *res,
                                  float *yall, cd_ctx *ctx)
{
    const conv_plan *p = &k->p;
    bool direct = k->algo == CD_CONV_GEMM_1X1;
    int64_t kdim = p->cg * p->ksize, sp = p->out_sp, nb = GEMM_BATCH_COLS / sp;
    nb = nb < p->batch ? nb : p->batch;
    size_t one = (size_t)kdim * (size_t)sp; /* one item's column matrix */
    float *col = scratch_floats(ctx, one * (size_t)nb + (size_t)(p->mg * sp * nb), 1);
    if (!col)
        return ctx->err->code;
    float *prod = col + one * (size_t)nb;
    for (int64_t b0 = 0; b0 < p->batch; b0 += nb) {
        int64_t cnt = p->batch - b0 < nb ? p->batch - b0 : nb, n = cnt * sp;
        for (int64_t i = 0; i < cnt; i++) {
            const float *x = xall + (b0 + i) * p->cg * p->in_sp;
            im2col_ld_job j = {p, x, col + i * sp, n};
            if (direct)
                for (int64_t r = 0; r < kdim; r++) /* 1x1: the image is its columns */
                    memcpy(col + r * n + i * sp, x + r * sp, (size_t)sp * sizeof(float));
            else
                cd_pool_for(ctx->pool, p->cg, tasks_for((int64_t)one), im2col_ld_range, &j);
        }
        sgemm(ctx, false, false, p->mg, n, kdim, k->w, kdim, col, n, 0.0f, prod, n);
        for (int64_t i = 0; i < cnt; i++) {
            int64_t yoff = (b0 + i) * p->mg * sp;
            for (int64_t m = 0; m < p->mg; m++)
                memcpy(yall + yoff + m * sp, prod + m * n + i * sp, (size_t)sp * sizeof(float));
            gemm_side_job j = {p, k, NULL, res ? res + yoff : NULL, NULL, yall + yoff, k->bias};
            if (k->ep.act != CD_ACT_NONE || j.bias || j.res)
                cd_pool_for(ctx->pool, p->mg, tasks_for(p->mg * sp), epilogue_range, &j);
        }
    }
    return CD_OK;
}

/* im2col (or the image itself for 1x1) then sgemm, per batch item and group. */
static cd_status run_gemm(const cd_conv_kernel *k, const float *xall, const float *res,
                          float *yall, cd_ctx *ctx)
{
    const conv_plan *p = &k->p;
    if (gemm_batches(p))
        return run_gemm_batched(k, xall, res, yall, ctx);
    bool direct = k->algo == CD_CONV_GEMM_1X1;
    float *col = direct ? NULL : scratch_floats(ctx, p->col_elems, 1);
    if (!direct && !col)
        return ctx->err->code;
    int64_t kdim = p->cg * p->ksize, m_all = p->mg * p->group, c_all = p->cg * p->group;
    for (int64_t bi = 0; bi < p->batch; bi++)
        for (int64_t gi = 0; gi < p->group; gi++) {
            const float *x = xall + (bi * c_all + gi * p->cg) * p->in_sp;
            int64_t yoff = (bi * m_all + gi * p->mg) * p->out_sp;
            gemm_side_job j = {p, k, x, res ? res + yoff : NULL, col, yall + yoff,
                               k->bias ? k->bias + gi * p->mg : NULL};
            /* Column blocks fill their own columns of the im2col matrix
             * right before their product (in cache, no pool round trip). */
            bool cols = !direct && cd_im2col_2d_shifted(&p->g) &&
                        !cd_sgemm_splits_rows(p->mg, p->out_sp);
            if (!direct && !cols)
                cd_pool_for(ctx->pool, p->cg, tasks_for((int64_t)p->col_elems), im2col_range, &j);
            bool epi = k->ep.act != CD_ACT_NONE || j.bias || j.res;
            cd_gemm_hooks hooks = {cols ? im2col_block : NULL, epi ? epilogue_block : NULL, &j};
            cd_sgemm_then(ctx, false, false, p->mg, p->out_sp, kdim, 1.0f,
                          k->w + gi * p->mg * kdim, kdim, direct ? x : col, p->out_sp, 0.0f,
                          yall + yoff, p->out_sp, &hooks);
        }
    return CD_OK;
}

/* Depthwise planes are independent, so they are spread over the pool in
 * blocks; each block pads into its own slice of scratch. The block count
 * comes from the shape only (results never depend on the threads anyway:
 * no sum crosses planes). */
typedef struct dw_job {
    const cd_conv_kernel *k;
    const float *x, *res;
    float *y, *pad;
    int64_t per_task, planes;
    size_t pad_floats;
} dw_job;

#define DW_MAX_TASKS 32

static void dw_task(void *arg, int task)
{
    const dw_job *j = arg;
    const conv_plan *p = &j->k->p;
    int64_t c = p->group, lo = task * j->per_task;
    int64_t hi = lo + j->per_task < j->planes ? lo + j->per_task : j->planes;
    float *pad = j->pad + (size_t)task * j->pad_floats;
    /* Runs of planes within one batch item share weight/bias offsets. */
    for (int64_t q = lo; q < hi;) {
        int64_t ch = q % c, run = c - ch < hi - q ? c - ch : hi - q;
        cd_conv_depthwise(j->x + q * p->in_sp, j->k->w + ch * p->ksize,
                          j->k->bias ? j->k->bias + ch : NULL,
                          j->res ? j->res + q * p->out_sp : NULL, &j->k->ep,
                          j->y + q * p->out_sp, run, &p->g, pad);
        q += run;
    }
}

static cd_status run_depthwise(const cd_conv_kernel *k, const float *x, const float *residual,
                               float *y, cd_ctx *ctx)
{
    const conv_plan *p = &k->p;
    int64_t planes = p->batch * p->group;
    if (planes <= 0)
        return CD_OK; /* nothing to compute (plans skip such nodes anyway) */
    int64_t tasks = planes < DW_MAX_TASKS ? planes : DW_MAX_TASKS;
    dw_job j = {k, x, residual, y, NULL, (planes + tasks - 1) / tasks, planes,
                cd_dw_scratch_floats(&p->g)};
    tasks = (planes + j.per_task - 1) / j.per_task;
    j.pad = scratch_floats(ctx, j.pad_floats, (size_t)tasks);
    if (!j.pad)
        return ctx->err->code;
    cd_pool_run(ctx->pool, (int)tasks, dw_task, &j);
    return CD_OK;
}

typedef struct direct_job {
    const cd_conv_kernel *k;
    const float *x, *res;
    float *y, *scratch;
    int64_t blocks;          /* per image */
    int64_t units, per;      /* blocks of all images; blocks per range */
    atomic_llong next_range; /* ranges are pulled by the pool's threads */
} direct_job;

/* One pool thread: its own scratch slot, ranges pulled until none is left. */
static void direct_task(void *arg, int task)
{
    direct_job *j = arg;
    const conv_plan *p = &j->k->p;
    float *s = j->scratch + (size_t)task * cd_conv_direct_scratch_floats();
    for (;;) {
        int64_t lo = (int64_t)atomic_fetch_add(&j->next_range, 1) * j->per;
        if (lo >= j->units)
            break;
        int64_t hi = lo + j->per < j->units ? lo + j->per : j->units;
        for (int64_t u = lo; u < hi; u++) {
            int64_t b = u / j->blocks, off = b * p->mg * p->out_sp;
            cd_conv_direct_block(j->x + b * p->cg * p->in_sp, j->k->u, j->k->bias,
                                 j->res ? j->res + off : NULL, &j->k->ep, j->y + off, p->cg,
                                 p->mg, &p->g, u % j->blocks, s);
        }
    }
}

/* Pixel blocks of all images in at most 64 ranges (the cut depends on the
 * shape only; every block is computed whole by one thread, so the bits do
 * not depend on which), pulled by the pool's threads, each with one slot of
 * scratch. */
static cd_status run_direct(const cd_conv_kernel *k, const float *x, const float *residual,
                            float *y, cd_ctx *ctx)
{
    const conv_plan *p = &k->p;
    direct_job j = {k, x, residual, y, NULL, cd_conv_direct_blocks(&p->g), 0, 0, 0};
    j.units = p->batch * j.blocks;
    if (j.units <= 0)
        return CD_OK;
    int64_t ranges = j.units < 64 ? j.units : 64, threads = cd_pool_threads(ctx->pool);
    j.per = (j.units + ranges - 1) / ranges;
    ranges = (j.units + j.per - 1) / j.per;
    int tasks = (int)(threads < ranges ? threads : ranges);
    j.scratch = scratch_floats(ctx, cd_conv_direct_scratch_floats(), (size_t)tasks);
    if (!j.scratch)
        return ctx->err->code;
    atomic_init(&j.next_range, 0);
    cd_pool_run(ctx->pool, tasks, direct_task, &j);
    return CD_OK;
}

typedef struct rowvec_job {
    const cd_conv_kernel *k;
    const float *x, *res;
    float *y;
} rowvec_job;

/* Output rows [lo, hi) counted over all images (image b's rows are
 * b * OH .. b * OH + OH - 1). */
static void rowvec_range(void *arg, int64_t lo, int64_t hi)
{
    const rowvec_job *j = arg;
    const conv_plan *p = &j->k->p;
    int64_t OH = p->g.out[0];
    for (int64_t r = lo; r < hi;) {
        int64_t b = r / OH, oh = r % OH, end = hi - r < OH - oh ? oh + hi - r : OH;
        int64_t off = b * p->mg * p->out_sp;
        cd_conv_rowvec_rows(j->x + b * p->cg * p->in_sp, j->k->u, j->k->bias,
                            j->res ? j->res + off : NULL, &j->k->ep, j->y + off, p->cg, p->mg,
                            &p->g, oh, end);
        r += end - oh;
    }
}

/* Rows of all images in at most 64 equal ranges (a cut from the shape
 * alone; rows are computed whole, so the bits never depend on it). */
static cd_status run_rowvec(const cd_conv_kernel *k, const float *x, const float *residual,
                            float *y, cd_ctx *ctx)
{
    const conv_plan *p = &k->p;
    rowvec_job j = {k, x, residual, y};
    int64_t rows = p->batch * p->g.out[0];
    if (rows > 0)
        cd_pool_for(ctx->pool, rows, rows < 64 ? (int)rows : 64, rowvec_range, &j);
    return CD_OK;
}

/* Image by image: its column matrix on the pool (channel ranges), then the
 * packed kernel over it with the epilogue fused. */
static cd_status run_im2col_pack(const cd_conv_kernel *k, const float *xall,
                                 const float *residual, float *yall, cd_ctx *ctx)
{
    const conv_plan *p = &k->p;
    size_t pf = cd_pack1x1_scratch_floats(&k->pk, cd_pool_threads(ctx->pool));
    float *col = scratch_floats(ctx, p->col_elems + pf, 1);
    if (!col)
        return ctx->err->code;
    for (int64_t bi = 0; bi < p->batch; bi++) {
        int64_t yoff = bi * p->mg * p->out_sp;
        gemm_side_job j = {p, k, xall + bi * p->cg * p->in_sp, NULL, col, NULL, NULL};
        cd_pool_for(ctx->pool, p->cg, tasks_for((int64_t)p->col_elems), im2col_range, &j);
        cd_pack1x1_run(ctx->pool, &k->pk, k->u, col, k->bias, residual ? residual + yoff : NULL,
                       &k->ep, yall + yoff, col + p->col_elems);
    }
    return CD_OK;
}

cd_status cd_conv_kernel_run(const cd_conv_kernel *k, const float *x, const float *residual,
                             float *y, cd_ctx *ctx)
{
    if (k->algo == CD_CONV_IM2COL_PACK)
        return run_im2col_pack(k, x, residual, y, ctx);
    if (k->algo == CD_CONV_DEPTHWISE)
        return run_depthwise(k, x, residual, y, ctx);
    if (k->algo == CD_CONV_WINOGRAD || k->algo == CD_CONV_WINOGRAD4) {
        int workers = cd_pool_threads(ctx->pool);
        float *s = scratch_floats(ctx, cd_wino4_scratch_floats(&k->w4, workers), 1);
        if (!s)
            return ctx->err->code;
        cd_wino4_run(ctx->pool, &k->w4, k->u, x, k->bias, residual, &k->ep, y, s);
        return CD_OK;
    }
    if (k->algo == CD_CONV_DIRECT)
        return run_direct(k, x, residual, y, ctx);
    if (k->algo == CD_CONV_ROWVEC)
        return run_rowvec(k, x, residual, y, ctx);
    if (k->algo == CD_CONV_PACK1X1) {
        int workers = cd_pool_threads(ctx->pool);
        float *s = scratch_floats(ctx, cd_pack1x1_scratch_floats(&k->pk, workers), 1);
        if (!s)
            return ctx->err->code;
        cd_pack1x1_run(ctx->pool, &k->pk, k->u, x, k->bias, residual, &k->ep, y, s);
        return CD_OK;
    }
    return run_gemm(k, x, residual, y, ctx);
}

/* The operator entry point specialises without copies (no Winograd, whose
 * weight transform belongs to plan time). */
static cd_status conv_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_ctx *ctx)
{
    cd_conv_kernel k;
    cd_status st = kernel_init(&k, n, in, NULL, NULL, NULL, CD_CONV_AUTO, false, ctx->err);
    if (st == CD_OK)
        st = cd_conv_kernel_run(&k, cd_cf32(in[0]), NULL, cd_f32(out[0]), ctx);
    kernel_release(&k);
    return st;
}

/* Input gradient of a stride-1 Conv as a forward convolution, so that every
 * fast forward path (1x1 GEMM, depthwise, im2col, Winograd when picked)
 * serves the backward pass too and nothing goes through col2im:
 * dX = conv(dY, W~) with W~[g][c][m][t] = W[g][m][c][K-1-t] (in/out swapped
 * per group, every spatial axis flipped: reversing a row-major multi-index
 * reverses the flat index) and pads (k-1)d - pb before, (k-1)d - pe after.
 * Strided convs, and pads beyond the dilated window, are refused with
 * CD_ERR_UNSUPPORTED: they keep conv_backward's GEMM + col2im. */
cd_status cd_conv_kernel_create_input_grad(const cd_node *n, cd_tensor *const *in,
                                           cd_conv_kernel **out, cd_error *err)
{
    *out = NULL;
    conv_plan f;
    cd_status st = conv_plan_make(n, in, &f, CD_FLOAT32, err);
    if (st != CD_OK)
        return st;
    conv_plan t = f;
    for (int i = 0; i < CD_WIN_MAX_SP; i++) {
        int64_t span = (f.g.k[i] - 1) * f.g.d[i];
        if (f.g.s[i] != 1 || f.g.pb[i] > span || f.g.pe[i] > span)
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                                "input gradient as a convolution needs stride 1");
        t.g.in[i] = f.g.out[i];
        t.g.out[i] = f.g.in[i];
        t.g.pb[i] = span - f.g.pb[i];
        t.g.pe[i] = span - f.g.pe[i];
    }
    t.cg = f.mg;
    t.mg = f.cg;
    if ((st = plan_sizes(n, &t, t.cg, err)) != CD_OK)
        return st;
    cd_conv_kernel *k = calloc(1, sizeof *k);
    size_t wn = (size_t)(f.group * f.mg * f.cg * f.ksize);
    if (!k || !(k->own_w = malloc(wn * sizeof(float)))) {
        cd_conv_kernel_free(k);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory for a backward kernel");
    }
    k->p = t;
    const float *w = cd_cf32(in[1]);
    int64_t kk = f.ksize;
    for (int64_t gi = 0; gi < f.group; gi++)
        for (int64_t c = 0; c < f.cg; c++)
            for (int64_t m = 0; m < f.mg; m++) {
                float *dst = k->own_w + ((gi * f.cg + c) * f.mg + m) * kk;
                const float *src = w + ((gi * f.mg + m) * f.cg + c) * kk;
                for (int64_t i = 0; i < kk; i++)
                    dst[i] = src[kk - 1 - i];
            }
    k->w = k->own_w;
    k->algo = pick_algo(&k->p, true);
    if ((st = algo_init(n, k, err)) != CD_OK) {
        cd_conv_kernel_free(k);
        return st;
    }
    *out = k;
    return CD_OK;
}

/* dW += dY col^T, dcol = W^T dY then col2im into dX, dB += sum dY, for
 * either element type (e). */
static cd_status conv_backward_any(const cd_node *n, cd_tensor *const *in,
                                   cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx,
                                   const conv_elem *e)
{
    if (!gout[0])
        return CD_OK;
    conv_plan p;
    cd_status st = conv_plan_make(n, in, &p, e->dtype, ctx->err);
    if (st != CD_OK)
        return st;
    void *gx = gin[0] ? gin[0]->data : NULL, *gw = gin[1] ? gin[1]->data : NULL;
    void *gb = n->n_inputs > 2 && gin[2] ? gin[2]->data : NULL;
    /* col (for dW) and dcol (for dX), only what is asked for. */
    size_t copies = (size_t)(gw != NULL) + (size_t)(gx != NULL);
    void *col = p.direct || !copies ? NULL : scratch_values(ctx, p.col_elems, copies, e->size);
    if (!p.direct && copies && !col)
        return ctx->err->code;
    void *dcol = col && gw ? el(e, col, (int64_t)p.col_elems) : col;
    int64_t kdim = p.cg * p.ksize, m_all = p.mg * p.group, c_all = p.cg * p.group;
    for (int64_t bi = 0; bi < p.batch; bi++)
        for (int64_t gi = 0; gi < p.group; gi++) {
            int64_t xoff = (bi * c_all + gi * p.cg) * p.in_sp;
            const void *x = cel(e, in[0]->data, xoff);
            const void *w = cel(e, in[1]->data, gi * p.mg * kdim);
            const void *gy = cel(e, gout[0]->data, (bi * m_all + gi * p.mg) * p.out_sp);
            if (gw) {
                if (!p.direct)
                    e->im2col(ctx, &p, p.cg, x, col);
                e->gemm(ctx, false, true, p.mg, kdim, p.out_sp, gy, p.out_sp, p.direct ? x : col,
                        p.out_sp, 1.0, el(e, gw, gi * p.mg * kdim), kdim);
            }
            if (gx && p.direct)
                e->gemm(ctx, true, false, kdim, p.out_sp, p.mg, w, kdim, gy, p.out_sp, 1.0,
                        el(e, gx, xoff), p.in_sp);
            else if (gx) {
                e->gemm(ctx, true, false, kdim, p.out_sp, p.mg, w, kdim, gy, p.out_sp, 0.0, dcol,
                        p.out_sp);
                e->col2im_add(ctx, &p, p.cg, dcol, el(e, gx, xoff));
            }
            if (gb)
                e->sum_bias_grad(gy, el(e, gb, gi * p.mg), p.mg, p.out_sp);
        }
    return CD_OK;
}

static cd_status conv_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                               cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    return conv_backward_any(n, in, gout, gin, ctx, cd_is_f64(in[0]) ? &elem_f64 : &elem_f32);
}

/* Float64 Conv: Y_g = W_g im2col(X_g) + B per batch item and group (the
 * float32 forward is the fast kernels above). */
static cd_status conv_forward64(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                cd_ctx *ctx)
{
    conv_plan p;
    cd_status st = conv_plan_make(n, in, &p, CD_FLOAT64, ctx->err);
    if (st != CD_OK)
        return st;
    const cd_tensor *b = n->n_inputs > 2 ? in[2] : NULL;
    double *col = p.direct ? NULL : scratch_values(ctx, p.col_elems, 1, sizeof(double));
    if (!p.direct && !col)
        return ctx->err->code;
    int64_t kdim = p.cg * p.ksize, m_all = p.mg * p.group, c_all = p.cg * p.group;
    for (int64_t bi = 0; bi < p.batch; bi++)
        for (int64_t gi = 0; gi < p.group; gi++) {
            const double *x = cd_cf64(in[0]) + (bi * c_all + gi * p.cg) * p.in_sp;
            double *y = cd_f64(out[0]) + (bi * m_all + gi * p.mg) * p.out_sp;
            if (!p.direct)
                col64_run(ctx, &p, p.cg, x, col, true);
            dgemm64(ctx, false, false, p.mg, p.out_sp, kdim, cd_cf64(in[1]) + gi * p.mg * kdim,
                    kdim, p.direct ? x : col, p.out_sp, 0.0, y, p.out_sp);
            if (b)
                add_bias64(y, cd_cf64(b) + gi * p.mg, p.mg, p.out_sp);
        }
    return CD_OK;
}

const cd_op_def cd_opdef_CONV = {"Conv", 1, conv_parse, conv_infer, conv_forward, conv_backward,
                                 conv_forward64, conv_backward};

/* ConvTranspose ------------------------------------------------------------ */

static cd_status convt_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                             cd_error *err)
{
    conv_plan p;
    cd_status st = convt_plan_make(n, in, &p, CD_FLOAT32, err);
    if (st != CD_OK)
        return st;
    int64_t dims[CD_MAX_DIMS] = {p.batch, p.mg * p.group};
    for (int i = 0; i < p.g.nsp; i++)
        dims[2 + i] = p.g.in[i];
    cd_tensor_set_shape(out[0], CD_FLOAT32, 2 + p.g.nsp, dims);
    return CD_OK;
}

/* Y_g = col2im(W_g^T X_g) + B, for either element type (e). */
static cd_status convt_forward_any(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                   cd_ctx *ctx, const conv_elem *e)
{
    conv_plan p;
    cd_status st = convt_plan_make(n, in, &p, e->dtype, ctx->err);
    if (st != CD_OK)
        return st;
    const cd_tensor *b = n->n_inputs > 2 ? in[2] : NULL;
    void *col = p.direct ? NULL : scratch_values(ctx, p.col_elems, 1, e->size);
    if (!p.direct && !col)
        return ctx->err->code;
    int64_t kdim = p.mg * p.ksize, m_all = p.mg * p.group, c_all = p.cg * p.group;
    for (int64_t bi = 0; bi < p.batch; bi++)
        for (int64_t gi = 0; gi < p.group; gi++) {
            const void *x = cel(e, in[0]->data, (bi * c_all + gi * p.cg) * p.out_sp);
            const void *w = cel(e, in[1]->data, gi * p.cg * kdim);
            void *y = el(e, out[0]->data, (bi * m_all + gi * p.mg) * p.in_sp);
            if (p.direct) {
                e->gemm(ctx, true, false, kdim, p.out_sp, p.cg, w, kdim, x, p.out_sp, 0.0, y,
                        p.in_sp);
            } else {
                e->gemm(ctx, true, false, kdim, p.out_sp, p.cg, w, kdim, x, p.out_sp, 0.0, col,
                        p.out_sp);
                memset(y, 0, (size_t)(p.mg * p.in_sp) * e->size);
                e->col2im_add(ctx, &p, p.mg, col, y);
            }
            if (b)
                e->add_bias(y, cel(e, b->data, gi * p.mg), p.mg, p.in_sp);
        }
    return CD_OK;
}

/* With colY = im2col(dY_g): dX_g += W_g colY, dW_g += X_g colY^T,
 * dB += sum dY, for either element type (e). */
static cd_status convt_backward_any(const cd_node *n, cd_tensor *const *in,
                                    cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx,
                                    const conv_elem *e)
{
    if (!gout[0])
        return CD_OK;
    conv_plan p;
    cd_status st = convt_plan_make(n, in, &p, e->dtype, ctx->err);
    if (st != CD_OK)
        return st;
    void *gx = gin[0] ? gin[0]->data : NULL, *gw = gin[1] ? gin[1]->data : NULL;
    void *gb = n->n_inputs > 2 && gin[2] ? gin[2]->data : NULL;
    bool need_col = !p.direct && (gx || gw);
    void *col = need_col ? scratch_values(ctx, p.col_elems, 1, e->size) : NULL;
    if (need_col && !col)
        return ctx->err->code;
    int64_t kdim = p.mg * p.ksize, m_all = p.mg * p.group, c_all = p.cg * p.group;
    for (int64_t bi = 0; bi < p.batch; bi++)
        for (int64_t gi = 0; gi < p.group; gi++) {
            int64_t xoff = (bi * c_all + gi * p.cg) * p.out_sp;
            const void *w = cel(e, in[1]->data, gi * p.cg * kdim);
            const void *gy = cel(e, gout[0]->data, (bi * m_all + gi * p.mg) * p.in_sp);
            const void *cy = p.direct ? gy : col;
            if (need_col)
                e->im2col(ctx, &p, p.mg, gy, col);
            if (gx)
                e->gemm(ctx, false, false, p.cg, p.out_sp, kdim, w, kdim, cy, p.out_sp, 1.0,
                        el(e, gx, xoff), p.out_sp);
            if (gw)
                e->gemm(ctx, false, true, p.cg, kdim, p.out_sp, cel(e, in[0]->data, xoff),
                        p.out_sp, cy, p.out_sp, 1.0, el(e, gw, gi * p.cg * kdim), kdim);
            if (gb)
                e->sum_bias_grad(gy, el(e, gb, gi * p.mg), p.mg, p.in_sp);
        }
    return CD_OK;
}

static cd_status convt_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                               cd_ctx *ctx)
{
    return convt_forward_any(n, in, out, ctx, cd_is_f64(in[0]) ? &elem_f64 : &elem_f32);
}

static cd_status convt_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    return convt_backward_any(n, in, gout, gin, ctx, cd_is_f64(in[0]) ? &elem_f64 : &elem_f32);
}

const cd_op_def cd_opdef_CONV_TRANSPOSE = {"ConvTranspose", 1, conv_parse, convt_infer,
                                           convt_forward, convt_backward, convt_forward,
                                           convt_backward};

/* Reference ---------------------------------------------------------------- */

/* Deliberately written without im2col or the shared window walk. */
static float ref_tap(const float *xc, const float *wc, const cd_win_geom *g, const int64_t *o)
{
    float acc = 0.0f;
    for (int64_t k0 = 0; k0 < g->k[0]; k0++)
        for (int64_t k1 = 0; k1 < g->k[1]; k1++)
            for (int64_t k2 = 0; k2 < g->k[2]; k2++) {
                int64_t i0 = o[0] * g->s[0] - g->pb[0] + k0 * g->d[0];
                int64_t i1 = o[1] * g->s[1] - g->pb[1] + k1 * g->d[1];
                int64_t i2 = o[2] * g->s[2] - g->pb[2] + k2 * g->d[2];
                if (i0 < 0 || i0 >= g->in[0] || i1 < 0 || i1 >= g->in[1] || i2 < 0 ||
                    i2 >= g->in[2])
                    continue;
                acc += wc[(k0 * g->k[1] + k1) * g->k[2] + k2] *
                       xc[(i0 * g->in[1] + i1) * g->in[2] + i2];
            }
    return acc;
}

void cd_conv_ref(const float *x, const float *w, const float *b, float *y, int64_t batch,
                 int64_t channels, int64_t maps, int64_t group, const cd_win_geom *g)
{
    int64_t cg = channels / group, mg = maps / group;
    int64_t in_sp = g->in[0] * g->in[1] * g->in[2];
    int64_t ksz = g->k[0] * g->k[1] * g->k[2];
    for (int64_t bi = 0; bi < batch; bi++)
        for (int64_t m = 0; m < maps; m++) {
            int64_t o[3];
            for (o[0] = 0; o[0] < g->out[0]; o[0]++)
                for (o[1] = 0; o[1] < g->out[1]; o[1]++)
                    for (o[2] = 0; o[2] < g->out[2]; o[2]++) {
                        float acc = b ? b[m] : 0.0f;
                        for (int64_t c = 0; c < cg; c++) {
                            const float *xc = x + (bi * channels + (m / mg) * cg + c) * in_sp;
                            acc += ref_tap(xc, w + (m * cg + c) * ksz, g, o);
                        }
                        *y++ = acc;
                    }
        }
}
