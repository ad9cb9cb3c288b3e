/* Gemm (Y = alpha * op(A) op(B) + beta * C) and MatMul (NumPy matmul:
 * 1-D promotion and batch broadcasting), both on OpenBLAS's cblas_sgemm,
 * with their vector-Jacobian products. */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "../parallel.h"
#include "op.h"

static bool fits_blas(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* Gemm ------------------------------------------------------------------------ */

typedef struct gemm_dims {
    int m, n, k;
    bool ta, tb;
    float alpha, beta;
    /* C's element strides along M and N (0 where C is broadcast). */
    int64_t c_rs, c_cs;
} gemm_dims;

/* C broadcasts unidirectionally to (M, N): right-aligned, each dim 1 or equal. */
static bool gemm_c_strides(const cd_tensor *c, int64_t m, int64_t n, int64_t *rs, int64_t *cs)
{
    int64_t cm = c->ndim >= 2 ? c->dims[c->ndim - 2] : 1;
    int64_t cn = c->ndim >= 1 ? c->dims[c->ndim - 1] : 1;
    if (c->ndim > 2 || (cm != 1 && cm != m) || (cn != 1 && cn != n))
        return false;
    *cs = cn == 1 ? 0 : 1;
    *rs = cm == 1 ? 0 : cn;
    return true;
}

static const cd_tensor *gemm_c(const cd_node *n, cd_tensor *const *in)
{
    return n->n_inputs > 2 ? in[2] : NULL;
}

static cd_status gemm_dims_get(const cd_node *n, cd_tensor *const *in, gemm_dims *g,
                               cd_error *err)
{
    if (n->n_inputs < 2 || !in[0] || !in[1])
        return cd_node_fail(n, err, CD_ERR_PARSE, "inputs A and B are required");
    const cd_tensor *a = in[0], *b = in[1], *c = gemm_c(n, in);
    for (int i = 0; i < n->n_inputs && i < 3; i++)
        if (in[i] && in[i]->dtype != CD_FLOAT32)
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "input %d is %s; only float32 is "
                                "supported", i, cd_dtype_name(in[i]->dtype));
    if (a->ndim != 2 || b->ndim != 2)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "A and B must be 2-D (ranks %d and %d)",
                            a->ndim, b->ndim);
    g->ta = cd_attr_int(n, "transA", 0) != 0;
    g->tb = cd_attr_int(n, "transB", 0) != 0;
    g->alpha = cd_attr_float(n, "alpha", 1.0f);
    g->beta = cd_attr_float(n, "beta", 1.0f);
    int64_t m = g->ta ? a->dims[1] : a->dims[0], ka = g->ta ? a->dims[0] : a->dims[1];
    int64_t kb = g->tb ? b->dims[1] : b->dims[0], nn = g->tb ? b->dims[0] : b->dims[1];
    if (ka != kb)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "inner dimensions differ (%lld vs %lld)",
                            (long long)ka, (long long)kb);
    if (!fits_blas(m) || !fits_blas(nn) || !fits_blas(ka))
        return cd_node_fail(n, err, CD_ERR_LIMIT, "matrix dimensions exceed BLAS int range");
    g->m = (int)m;
    g->n = (int)nn;
    g->k = (int)ka;
    g->c_rs = g->c_cs = 0;
    char sc[96];
    if (c && !gemm_c_strides(c, m, nn, &g->c_rs, &g->c_cs))
        return cd_node_fail(n, err, CD_ERR_SHAPE, "C %s does not broadcast to (%lld, %lld)",
                            cd_shape_str(c->ndim, c->dims, sc, sizeof sc), (long long)m,
                            (long long)nn);
    return CD_OK;
}

static cd_status gemm_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                            cd_error *err)
{
    gemm_dims g = {0};
    cd_status st = gemm_dims_get(n, in, &g, err);
    if (st != CD_OK)
        return st;
    int64_t dims[2] = {g.m, g.n};
    if (out[0])
        cd_tensor_set_shape(out[0], CD_FLOAT32, 2, dims);
    return CD_OK;
}

static cd_status gemm_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_ctx *ctx)
{
    gemm_dims g = {0};
    cd_status st = gemm_dims_get(n, in, &g, ctx->err);
    if (st != CD_OK)
        return st;
    const cd_tensor *c = gemm_c(n, in);
    float *y = cd_f32(out[0]);
    float beta = 0.0f;
    if (c && g.beta != 0.0f) {
        const float *cv = cd_cf32(c);
        for (int i = 0; i < g.m; i++)
            for (int j = 0; j < g.n; j++)
                y[(size_t)i * (size_t)g.n + (size_t)j] = g.beta * cv[i * g.c_rs + j * g.c_cs];
        beta = 1.0f;
    }
    if (g.m == 0 || g.n == 0)
        return CD_OK;
    if (g.k == 0) { /* BLAS leaves Y alone for k = 0 only when beta = 1 */
        if (beta == 0.0f)
            memset(y, 0, (size_t)g.m * (size_t)g.n * sizeof(float));
        return CD_OK;
    }
    cd_sgemm(ctx, g.ta, g.tb, g.m, g.n, g.k, g.alpha, cd_cf32(in[0]), g.ta ? g.m : g.k,
             cd_cf32(in[1]), g.tb ? g.k : g.n, beta, y, g.n);
    return CD_OK;
}

/* With G = dL/dY and op(X) = X or X^T:
 *   d op(A) = alpha * G op(B)^T,   d op(B) = alpha * op(A)^T G,
 *   dC = beta * G summed over the axes along which C was broadcast.
 * A transposed operand receives the transpose, which BLAS computes by
 * swapping the factors' roles. */
static void gemm_grad_a(cd_ctx *ctx, const gemm_dims *g, const float *b, const float *gy,
                        float *ga)
{
    int ldb = g->tb ? g->k : g->n;
    if (!g->ta)
        cd_sgemm(ctx, false, !g->tb, g->m, g->k, g->n, g->alpha, gy, g->n, b, ldb, 1.0f, ga,
                 g->k);
    else
        cd_sgemm(ctx, g->tb, true, g->k, g->m, g->n, g->alpha, b, ldb, gy, g->n, 1.0f, ga, g->m);
}

static void gemm_grad_b(cd_ctx *ctx, const gemm_dims *g, const float *a, const float *gy,
                        float *gb)
{
    int lda = g->ta ? g->m : g->k;
    if (!g->tb)
        cd_sgemm(ctx, !g->ta, false, g->k, g->n, g->m, g->alpha, a, lda, gy, g->n, 1.0f, gb,
                 g->n);
    else
        cd_sgemm(ctx, true, g->ta, g->n, g->k, g->m, g->alpha, gy, g->n, a, lda, 1.0f, gb, g->k);
}

static cd_status gemm_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                               cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    if (!gout[0])
        return CD_OK;
    gemm_dims g = {0};
    cd_status st = gemm_dims_get(n, in, &g, ctx->err);
    if (st != CD_OK)
        return st;
    const float *gy = cd_cf32(gout[0]);
    bool nonempty = g.m > 0 && g.n > 0 && g.k > 0;
    if (gin[0] && nonempty)
        gemm_grad_a(ctx, &g, cd_cf32(in[1]), gy, cd_f32(gin[0]));
    if (gin[1] && nonempty)
        gemm_grad_b(ctx, &g, cd_cf32(in[0]), gy, cd_f32(gin[1]));
    if (n->n_inputs > 2 && gin[2] && gemm_c(n, in)) {
        float *gc = cd_f32(gin[2]);
        for (int i = 0; i < g.m; i++)
            for (int j = 0; j < g.n; j++)
                gc[i * g.c_rs + j * g.c_cs] += g.beta * gy[(size_t)i * (size_t)g.n + (size_t)j];
    }
    return CD_OK;
}

const cd_op_def cd_opdef_GEMM = {"Gemm", 1, NULL, gemm_infer, gemm_forward, gemm_backward};

/* MatMul ------------------------------------------------------------------------ */

/* A (..., M, K) x B (..., K, N) -> (..., M, N). A 1-D A is (1, K) with M
 * dropped from the result, a 1-D B is (K, 1) with N dropped. Batch dims
 * broadcast; each operand's batch stride is 0 where it repeats. */
typedef struct matmul_plan {
    int m, n, k;
    int batch_nd;
    int64_t batch[CD_MAX_DIMS];
    int64_t a_st[CD_MAX_DIMS], b_st[CD_MAX_DIMS]; /* in matrices */
    size_t batches;
    int out_nd;
    int64_t out_dims[CD_MAX_DIMS];
} matmul_plan;

static void batch_strides(int nd, const int64_t *batch, int nx, const int64_t *dx, int64_t *st)
{
    CD_UNUSED(batch);
    int64_t s = 1;
    for (int d = nd - 1; d >= 0; d--) {
        int k = d - (nd - nx);
        int64_t len = k >= 0 ? dx[k] : 1;
        st[d] = len == 1 ? 0 : s;
        s *= len;
    }
}

static cd_status matmul_plan_make(const cd_node *n, cd_tensor *const *in, matmul_plan *p,
                                  cd_error *err)
{
    if (n->n_inputs != 2 || !in[0] || !in[1])
        return cd_node_fail(n, err, CD_ERR_PARSE, "expects inputs A and B");
    const cd_tensor *a = in[0], *b = in[1];
    if (a->dtype != CD_FLOAT32 || b->dtype != CD_FLOAT32)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "only float32 is supported");
    if (a->ndim < 1 || b->ndim < 1)
        return cd_node_fail(n, err, CD_ERR_SHAPE, "inputs must have rank >= 1");
    int64_t m = a->ndim == 1 ? 1 : a->dims[a->ndim - 2], ka = a->dims[a->ndim - 1];
    int64_t kb = b->ndim == 1 ? b->dims[0] : b->dims[b->ndim - 2];
    int64_t nn = b->ndim == 1 ? 1 : b->dims[b->ndim - 1];
    char sa[96], sb[96];
    int na = a->ndim > 2 ? a->ndim - 2 : 0, nb = b->ndim > 2 ? b->ndim - 2 : 0;
    if (ka != kb || !cd_broadcast_shape(na, a->dims, nb, b->dims, &p->batch_nd, p->batch))
        return cd_node_fail(n, err, CD_ERR_SHAPE, "shapes %s and %s do not multiply",
                            cd_shape_str(a->ndim, a->dims, sa, sizeof sa),
                            cd_shape_str(b->ndim, b->dims, sb, sizeof sb));
    if (!fits_blas(m) || !fits_blas(nn) || !fits_blas(ka))
        return cd_node_fail(n, err, CD_ERR_LIMIT, "matrix dimensions exceed BLAS int range");
    p->m = (int)m;
    p->n = (int)nn;
    p->k = (int)ka;
    batch_strides(p->batch_nd, p->batch, na, a->dims, p->a_st);
    batch_strides(p->batch_nd, p->batch, nb, b->dims, p->b_st);
    p->batches = 1;
    p->out_nd = 0;
    for (int d = 0; d < p->batch_nd; d++) {
        p->batches *= (size_t)p->batch[d];
        p->out_dims[p->out_nd++] = p->batch[d];
    }
    if (a->ndim > 1)
        p->out_dims[p->out_nd++] = m;
    if (b->ndim > 1)
        p->out_dims[p->out_nd++] = nn;
    return CD_OK;
}

static cd_status matmul_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_error *err)
{
    matmul_plan p = {0};
    cd_status st = matmul_plan_make(n, in, &p, err);
    if (st == CD_OK && out[0])
        cd_tensor_set_shape(out[0], CD_FLOAT32, p.out_nd, p.out_dims);
    return st;
}

/* Matrix offsets (in matrices) of A and B for batch number t. */
static void batch_offsets(const matmul_plan *p, size_t t, size_t *oa, size_t *ob)
{
    *oa = *ob = 0;
    for (int d = p->batch_nd - 1; d >= 0; d--) {
        size_t i = t % (size_t)p->batch[d];
        t /= (size_t)p->batch[d];
        *oa += i * (size_t)p->a_st[d];
        *ob += i * (size_t)p->b_st[d];
    }
}

/* True when B is one matrix shared by every batch and A's batches are
 * distinct and contiguous: the whole product is then a single GEMM with
 * M' = batches * M. */
static bool matmul_foldable(const matmul_plan *p, const cd_tensor *a, const cd_tensor *b)
{
    if (b->ndim > 2)
        return false;
    size_t a_mats = 1;
    for (int d = 0; d < a->ndim - 2; d++)
        a_mats *= (size_t)a->dims[d];
    return a_mats == p->batches && (size_t)p->m * p->batches <= INT_MAX;
}

static cd_status matmul_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                cd_ctx *ctx)
{
    matmul_plan p = {0};
    cd_status st = matmul_plan_make(n, in, &p, ctx->err);
    if (st != CD_OK)
        return st;
    const float *a = cd_cf32(in[0]), *b = cd_cf32(in[1]);
    float *y = cd_f32(out[0]);
    size_t sa = (size_t)p.m * p.k, sb = (size_t)p.k * p.n, sy = (size_t)p.m * p.n;
    if (sy * p.batches == 0)
        return CD_OK;
    if (p.k == 0) {
        memset(y, 0, sy * p.batches * sizeof(float));
        return CD_OK;
    }
    if (matmul_foldable(&p, in[0], in[1])) {
        cd_sgemm(ctx, false, false, (int64_t)p.m * (int64_t)p.batches, p.n, p.k, 1.0f, a, p.k, b,
                 p.n, 0.0f, y, p.n);
        return CD_OK;
    }
    for (size_t t = 0; t < p.batches; t++) {
        size_t oa, ob;
        batch_offsets(&p, t, &oa, &ob);
        cd_sgemm(ctx, false, false, p.m, p.n, p.k, 1.0f, a + oa * sa, p.k, b + ob * sb, p.n,
                 0.0f, y + t * sy, p.n);
    }
    return CD_OK;
}

/* dA_t += G_t B_t^T and dB_t += A_t^T G_t for every batch t; a repeated
 * operand accumulates over all batches that used it. */
static cd_status matmul_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                 cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    if (!gout[0] || (!gin[0] && !gin[1]))
        return CD_OK;
    matmul_plan p = {0};
    cd_status st = matmul_plan_make(n, in, &p, ctx->err);
    if (st != CD_OK)
        return st;
    if (p.m == 0 || p.n == 0 || p.k == 0 || p.batches == 0)
        return CD_OK;
    const float *a = cd_cf32(in[0]), *b = cd_cf32(in[1]), *g = cd_cf32(gout[0]);
    float *ga = gin[0] ? cd_f32(gin[0]) : NULL, *gb = gin[1] ? cd_f32(gin[1]) : NULL;
    size_t sa = (size_t)p.m * p.k, sb = (size_t)p.k * p.n, sy = (size_t)p.m * p.n;
    bool fold = matmul_foldable(&p, in[0], in[1]);
    size_t loops = fold ? 1 : p.batches;
    int m = fold ? p.m * (int)p.batches : p.m; /* folded: one tall GEMM */
    for (size_t t = 0; t < loops; t++) {
        size_t oa = 0, ob = 0;
        if (!fold)
            batch_offsets(&p, t, &oa, &ob);
        if (ga)
            cd_sgemm(ctx, false, true, m, p.k, p.n, 1.0f, g + t * sy, p.n, b + ob * sb, p.n, 1.0f,
                     ga + oa * sa, p.k);
        if (gb)
            cd_sgemm(ctx, true, false, p.k, p.n, m, 1.0f, a + oa * sa, p.k, g + t * sy, p.n, 1.0f,
                     gb + ob * sb, p.n);
    }
    return CD_OK;
}

const cd_op_def cd_opdef_MATMUL = {"MatMul", 1, NULL, matmul_infer, matmul_forward,
                                   matmul_backward};
