/* Gemm (Y = alpha * op(A) op(B) + beta * C) and MatMul (NumPy matmul:
 * 1-D promotion and batch broadcasting), both on OpenBLAS's cblas_sgemm,
 * with their vector-Jacobian products. The kernels take the element type:
 * float32, or float64 in the float64 mode (cblas_dgemm; op.h). */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "../parallel.h"
#include "op.h"

static bool fits_blas(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* C = alpha op(A) op(B) + beta C (row-major) in element type t; a, b, c point
 * at float or double accordingly. alpha and beta are float attributes (or 0
 * and 1), so narrowing them back for cd_sgemm is exact. */
static void gemm_t(cd_ctx *ctx, cd_dtype t, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                   double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                   double beta, void *c, int64_t ldc)
{
    if (t == CD_FLOAT32) {
        cd_sgemm(ctx, ta, tb, m, n, k, (float)alpha, a, lda, b, ldb, (float)beta, c, ldc);
        return;
    }
    cd_blas_single_thread(); /* as for cd_sgemm: one thread setting, no oversubscription */
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* Element i of an array of t. */
static const void *elem(const void *p, size_t i, cd_dtype t)
{
    return (const char *)p + i * cd_dtype_size(t);
}

static void *elem_mut(void *p, size_t i, cd_dtype t)
{
    return (char *)p + i * cd_dtype_size(t);
}

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

/* `want` is the element type the kernel handles (float32 or float64). */
static cd_status gemm_dims_get(const cd_node *n, cd_tensor *const *in, gemm_dims *g,
                               cd_dtype want, cd_error *err)
{
    if (n->n_inputs < 2 || !in[0] || !in[1])
        return cd_node_fail(n, err, CD_ERR_PARSE, "inputs A and B are required");
    const cd_tensor *a = in[0], *b = in[1], *c = gemm_c(n, in);
    for (int i = 0; i < n->n_inputs && i < 3; i++)
        if (in[i] && in[i]->dtype != want)
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "input %d is %s; only %s is "
                                "supported", i, cd_dtype_name(in[i]->dtype), cd_dtype_name(want));
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
    cd_status st = gemm_dims_get(n, in, &g, CD_FLOAT32, err);
    if (st != CD_OK)
        return st;
    int64_t dims[2] = {g.m, g.n};
    if (out[0])
        cd_tensor_set_shape(out[0], CD_FLOAT32, 2, dims);
    return CD_OK;
}

static cd_status gemm_run(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                          cd_dtype t, cd_ctx *ctx)
{
    gemm_dims g = {0};
    cd_status st = gemm_dims_get(n, in, &g, t, ctx->err);
    if (st != CD_OK)
        return st;
    const cd_tensor *c = gemm_c(n, in);
    void *y = out[0]->data;
    size_t mn = (size_t)g.m * (size_t)g.n;
    float beta = 0.0f;
    if (c && g.beta != 0.0f) {
        const void *cv = c->data;
        for (int i = 0; i < g.m; i++) {
            size_t row = (size_t)i * (size_t)g.n;
            if (t == CD_FLOAT32)
                for (int j = 0; j < g.n; j++)
                    ((float *)y)[row + j] = g.beta * ((const float *)cv)[i * g.c_rs + j * g.c_cs];
            else
                for (int j = 0; j < g.n; j++)
                    ((double *)y)[row + j] = g.beta * ((const double *)cv)[i * g.c_rs + j * g.c_cs];
        }
        beta = 1.0f;
    }
    if (g.m == 0 || g.n == 0)
        return CD_OK;
    if (g.k == 0) { /* BLAS leaves Y alone for k = 0 only when beta = 1 */
        if (beta == 0.0f)
            memset(y, 0, mn * cd_dtype_size(t));
        return CD_OK;
    }
    gemm_t(ctx, t, g.ta, g.tb, g.m, g.n, g.k, g.alpha, in[0]->data, g.ta ? g.m : g.k,
           in[1]->data, g.tb ? g.k : g.n, beta, y, g.n);
    return CD_OK;
}

static cd_status gemm_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                              cd_ctx *ctx)
{
    return gemm_run(n, in, out, cd_is_f64(in[0]) ? CD_FLOAT64 : CD_FLOAT32, ctx);
}

/* With G = dL/dY and op(X) = X or X^T:
 *   d op(A) = alpha * G op(B)^T,   d op(B) = alpha * op(A)^T G,
 *   dC = beta * G summed over the axes along which C was broadcast.
 * A transposed operand receives the transpose, which BLAS computes by
 * swapping the factors' roles. */
static void gemm_grad_a(cd_ctx *ctx, cd_dtype t, const gemm_dims *g, const void *b,
                        const void *gy, void *ga)
{
    int ldb = g->tb ? g->k : g->n;
    if (!g->ta)
        gemm_t(ctx, t, false, !g->tb, g->m, g->k, g->n, g->alpha, gy, g->n, b, ldb, 1.0, ga,
               g->k);
    else
        gemm_t(ctx, t, g->tb, true, g->k, g->m, g->n, g->alpha, b, ldb, gy, g->n, 1.0, ga, g->m);
}

static void gemm_grad_b(cd_ctx *ctx, cd_dtype t, const gemm_dims *g, const void *a,
                        const void *gy, void *gb)
{
    int lda = g->ta ? g->m : g->k;
    if (!g->tb)
        gemm_t(ctx, t, !g->ta, false, g->k, g->n, g->m, g->alpha, a, lda, gy, g->n, 1.0, gb,
               g->n);
    else
        gemm_t(ctx, t, true, g->ta, g->n, g->k, g->m, g->alpha, gy, g->n, a, lda, 1.0, gb, g->k);
}

static cd_status gemm_grads(const cd_node *n, cd_tensor *const *in, cd_tensor *const *gout,
                            cd_tensor **gin, cd_dtype t, cd_ctx *ctx)
{
    if (!gout[0])
        return CD_OK;
    gemm_dims g = {0};
    cd_status st = gemm_dims_get(n, in, &g, t, ctx->err);
    if (st != CD_OK)
        return st;
    const void *gy = gout[0]->data;
    bool nonempty = g.m > 0 && g.n > 0 && g.k > 0;
    if (gin[0] && nonempty)
        gemm_grad_a(ctx, t, &g, in[1]->data, gy, gin[0]->data);
    if (gin[1] && nonempty)
        gemm_grad_b(ctx, t, &g, in[0]->data, gy, gin[1]->data);
    if (n->n_inputs > 2 && gin[2] && gemm_c(n, in)) {
        void *gc = gin[2]->data;
        for (int i = 0; i < g.m; i++) {
            size_t row = (size_t)i * (size_t)g.n;
            if (t == CD_FLOAT32)
                for (int j = 0; j < g.n; j++)
                    ((float *)gc)[i * g.c_rs + j * g.c_cs] += g.beta * ((const float *)gy)[row + j];
            else
                for (int j = 0; j < g.n; j++)
                    ((double *)gc)[i * g.c_rs + j * g.c_cs] +=
                        g.beta * ((const double *)gy)[row + j];
        }
    }
    return CD_OK;
}

static cd_status gemm_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                               cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    return gemm_grads(n, in, gout, gin, cd_is_f64(in[0]) ? CD_FLOAT64 : CD_FLOAT32, ctx);
}

const cd_op_def cd_opdef_GEMM = {"Gemm", 1, NULL, gemm_infer, gemm_forward, gemm_backward,
                                 gemm_forward, gemm_backward};

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

/* `want` is the element type the kernel handles (float32 or float64). */
static cd_status matmul_plan_make(const cd_node *n, cd_tensor *const *in, matmul_plan *p,
                                  cd_dtype want, cd_error *err)
{
    if (n->n_inputs != 2 || !in[0] || !in[1])
        return cd_node_fail(n, err, CD_ERR_PARSE, "expects inputs A and B");
    const cd_tensor *a = in[0], *b = in[1];
    if (a->dtype != want || b->dtype != want)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "only %s is supported",
                            cd_dtype_name(want));
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
    cd_status st = matmul_plan_make(n, in, &p, CD_FLOAT32, err);
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

static cd_status matmul_run(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                            cd_dtype t, cd_ctx *ctx)
{
    matmul_plan p = {0};
    cd_status st = matmul_plan_make(n, in, &p, t, ctx->err);
    if (st != CD_OK)
        return st;
    const void *a = in[0]->data, *b = in[1]->data;
    void *y = out[0]->data;
    size_t sa = (size_t)p.m * p.k, sb = (size_t)p.k * p.n, sy = (size_t)p.m * p.n;
    if (sy * p.batches == 0)
        return CD_OK;
    if (p.k == 0) {
        memset(y, 0, sy * p.batches * cd_dtype_size(t));
        return CD_OK;
    }
    if (matmul_foldable(&p, in[0], in[1])) {
        gemm_t(ctx, t, false, false, (int64_t)p.m * (int64_t)p.batches, p.n, p.k, 1.0, a, p.k, b,
               p.n, 0.0, y, p.n);
        return CD_OK;
    }
    for (size_t i = 0; i < p.batches; i++) {
        size_t oa, ob;
        batch_offsets(&p, i, &oa, &ob);
        gemm_t(ctx, t, false, false, p.m, p.n, p.k, 1.0, elem(a, oa * sa, t), p.k,
               elem(b, ob * sb, t), p.n, 0.0, elem_mut(y, i * sy, t), p.n);
    }
    return CD_OK;
}

static cd_status matmul_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                cd_ctx *ctx)
{
    return matmul_run(n, in, out, cd_is_f64(in[0]) ? CD_FLOAT64 : CD_FLOAT32, ctx);
}

/* dA_t += G_t B_t^T and dB_t += A_t^T G_t for every batch t; a repeated
 * operand accumulates over all batches that used it. */
static cd_status matmul_grads(const cd_node *n, cd_tensor *const *in, cd_tensor *const *gout,
                              cd_tensor **gin, cd_dtype t, cd_ctx *ctx)
{
    if (!gout[0] || (!gin[0] && !gin[1]))
        return CD_OK;
    matmul_plan p = {0};
    cd_status st = matmul_plan_make(n, in, &p, t, ctx->err);
    if (st != CD_OK)
        return st;
    if (p.m == 0 || p.n == 0 || p.k == 0 || p.batches == 0)
        return CD_OK;
    const void *a = in[0]->data, *b = in[1]->data, *g = gout[0]->data;
    void *ga = gin[0] ? gin[0]->data : NULL, *gb = gin[1] ? gin[1]->data : NULL;
    size_t sa = (size_t)p.m * p.k, sb = (size_t)p.k * p.n, sy = (size_t)p.m * p.n;
    bool fold = matmul_foldable(&p, in[0], in[1]);
    size_t loops = fold ? 1 : p.batches;
    int m = fold ? p.m * (int)p.batches : p.m; /* folded: one tall GEMM */
    for (size_t i = 0; i < loops; i++) {
        size_t oa = 0, ob = 0;
        if (!fold)
            batch_offsets(&p, i, &oa, &ob);
        const void *gi = elem(g, i * sy, t);
        if (ga)
            gemm_t(ctx, t, false, true, m, p.k, p.n, 1.0, gi, p.n, elem(b, ob * sb, t), p.n, 1.0,
                   elem_mut(ga, oa * sa, t), p.k);
        if (gb)
            gemm_t(ctx, t, true, false, p.k, p.n, m, 1.0, elem(a, oa * sa, t), p.k, gi, p.n, 1.0,
                   elem_mut(gb, ob * sb, t), p.n);
    }
    return CD_OK;
}

static cd_status matmul_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                 cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    return matmul_grads(n, in, gout, gin, cd_is_f64(in[0]) ? CD_FLOAT64 : CD_FLOAT32, ctx);
}

const cd_op_def cd_opdef_MATMUL = {"MatMul", 1, NULL, matmul_infer, matmul_forward,
                                   matmul_backward, matmul_forward, matmul_backward};
