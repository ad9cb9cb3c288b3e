/* Gradient-based attributions: vanilla gradient, gradient x input,
 * SmoothGrad (mean, squared, VarGrad) and Integrated Gradients, plus the
 * entry point that dispatches every method. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "explain_internal.h"

static const char *const method_names[] = {"gradient", "gradxinput", "smoothgrad", "ig",
                                           "gradcam",  "gradcam++",  "occlusion",  "rise"};

const char *cd_explain_method_name(cd_explain_method m)
{
    return (unsigned)m < CD_COUNT_OF(method_names) ? method_names[m] : "unknown";
}

int cd_explain_method_parse(const char *name)
{
    for (size_t i = 0; name && i < CD_COUNT_OF(method_names); i++)
        if (strcmp(name, method_names[i]) == 0)
            return (int)i;
    return -1;
}

void cd_explain_params_default(cd_explain_params *p, cd_explain_method method)
{
    memset(p, 0, sizeof *p);
    p->method = method;
    cd_objective_default(&p->objective);
    /* RISE follows Petsiuk et al.: it weighs masks by the class probability. */
    if (method == CD_EXPLAIN_RISE)
        p->objective.kind = CD_OBJECTIVE_PROB;
    p->samples = 25;
    p->noise_level = 0.15f;
    p->steps = 32;
    p->ig_rule = CD_IG_GAUSS_LEGENDRE;
    p->blur_sigma = 5.0f;
    p->window = 16;
    p->stride = 8;
    p->rise_masks = 4000;
    p->rise_grid = 7;
    p->rise_p = 0.5f;
}

void cd_explanation_free(cd_explanation *ex)
{
    if (ex) {
        cd_tensor_free(ex->map);
        ex->map = NULL;
    }
}

/* ------------------------------------------------------------ quadrature */

void ex_gauss_legendre(int n, double *nodes, double *weights)
{
    /* Newton's method on P_n from the Tricomi-style initial guess; P_n and
     * P_n' come from the three-term recurrence. */
    for (int i = 0; i < n; i++) {
        double x = cos(M_PI * (i + 0.75) / (n + 0.5)), dp = 1;
        for (int it = 0; it < 100; it++) {
            double p0 = 1, p1 = x;
            for (int k = 2; k <= n; k++) {
                double p2 = ((2.0 * k - 1) * x * p1 - (k - 1.0) * p0) / k;
                p0 = p1;
                p1 = p2;
            }
            if (n == 1)
                p0 = 1;
            dp = n * (x * p1 - p0) / (x * x - 1);
            double dx = p1 / dp;
            x -= dx;
            if (fabs(dx) < 1e-15)
                break;
        }
        /* Map [-1, 1] to [0, 1]: node (x + 1)/2, weight halves. */
        nodes[i] = (1.0 - x) / 2; /* ascending order */
        weights[i] = 1.0 / ((1 - x * x) * dp * dp);
    }
}

static void ig_rule(const cd_explain_params *p, double *nodes, double *weights)
{
    if (p->ig_rule == CD_IG_GAUSS_LEGENDRE) {
        ex_gauss_legendre(p->steps, nodes, weights);
        return;
    }
    for (int k = 0; k < p->steps; k++) {
        nodes[k] = (k + 0.5) / p->steps;
        weights[k] = 1.0 / p->steps;
    }
}

/* ------------------------------------------------------------ helpers */

/* Fills a chunk's rows: row r of batch = x + noise or a path point. */
typedef void (*fill_fn)(void *ctx, int64_t index, float *row, size_t n);
/* Receives the gradient of one row. */
typedef void (*take_fn)(void *ctx, int64_t index, const float *grad, size_t n);

/* Runs `total` synthetic rows through the model in batches of max_batch and
 * hands each row's input gradient to take. */
static cd_status grad_rows(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                           int64_t total, fill_fn fill, take_fn take, void *ctx, int *passes,
                           cd_error *err)
{
    size_t rn = ex_row_numel(x);
    for (int64_t start = 0; start < total; start += e->max_batch) {
        int64_t rows = total - start < e->max_batch ? total - start : e->max_batch;
        cd_tensor *batch = NULL, *g = NULL;
        cd_status st = ex_batch_like(x, rows, &batch, err);
        if (st != CD_OK)
            return st;
        for (int64_t r = 0; r < rows; r++)
            fill(ctx, start + r, cd_f32(batch) + (size_t)r * rn, rn);
        st = cd_explain_gradient(e, batch, obj, 1, NULL, &g, NULL, NULL, err);
        if (st == CD_OK)
            for (int64_t r = 0; r < rows; r++)
                take(ctx, start + r, cd_cf32(g) + (size_t)r * rn, rn);
        cd_tensor_free(batch);
        cd_tensor_free(g);
        if (st != CD_OK)
            return st;
        (*passes)++;
    }
    return CD_OK;
}

/* ------------------------------------------------------------ SmoothGrad */

typedef struct sg_ctx {
    const float *x;
    double sigma;
    ex_rng rng;
    double *sum, *sum2;
} sg_ctx;

static void sg_fill(void *c, int64_t index, float *row, size_t n)
{
    sg_ctx *s = c;
    (void)index; /* rows are filled in order, so the stream is reproducible */
    for (size_t i = 0; i < n; i++)
        row[i] = s->x[i] + (float)(s->sigma * ex_rng_normal(&s->rng));
}

static void sg_take(void *c, int64_t index, const float *g, size_t n)
{
    sg_ctx *s = c;
    (void)index;
    for (size_t i = 0; i < n; i++) {
        s->sum[i] += g[i];
        s->sum2[i] += (double)g[i] * g[i];
    }
}

static cd_status smoothgrad(cd_explainer *e, const cd_tensor *x, const cd_explain_params *p,
                            const cd_objective *obj, cd_explanation *out, cd_error *err)
{
    size_t n = cd_tensor_numel(x);
    const float *xv = cd_cf32(x);
    float lo = xv[0], hi = xv[0];
    for (size_t i = 1; i < n; i++) {
        lo = fminf(lo, xv[i]);
        hi = fmaxf(hi, xv[i]);
    }
    if (p->samples < 1 || !(p->noise_level >= 0))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "smoothgrad: samples >= 1, noise >= 0");
    sg_ctx c = {.x = xv, .sigma = (double)p->noise_level * ((double)hi - lo),
                .rng = {p->seed ^ 0x5347ull}};
    c.sum = calloc(n, sizeof *c.sum);
    c.sum2 = calloc(n, sizeof *c.sum2);
    cd_status st = c.sum && c.sum2 ? cd_tensor_clone(x, &out->map, err)
                                   : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK)
        st = grad_rows(e, x, obj, p->samples, sg_fill, sg_take, &c, &out->passes, err);
    for (size_t i = 0; st == CD_OK && i < n; i++) {
        double m = c.sum[i] / p->samples, m2 = c.sum2[i] / p->samples;
        double v = p->smoothgrad_form == CD_SMOOTHGRAD_MEAN      ? m
                   : p->smoothgrad_form == CD_SMOOTHGRAD_SQUARED ? m2
                                                                 : fmax(0.0, m2 - m * m);
        cd_f32(out->map)[i] = (float)v;
    }
    free(c.sum);
    free(c.sum2);
    return st;
}

/* ------------------------------------------------------------ IG */

typedef struct ig_ctx {
    const float *x, *base;
    const double *nodes, *weights;
    double *acc;
} ig_ctx;

static void ig_fill(void *c, int64_t k, float *row, size_t n)
{
    ig_ctx *s = c;
    double a = s->nodes[k];
    for (size_t i = 0; i < n; i++)
        row[i] = (float)(s->base[i] + a * ((double)s->x[i] - s->base[i]));
}

static void ig_take(void *c, int64_t k, const float *g, size_t n)
{
    ig_ctx *s = c;
    for (size_t i = 0; i < n; i++)
        s->acc[i] += s->weights[k] * g[i];
}

static cd_status make_baseline(const cd_tensor *x, const cd_explain_params *p, cd_tensor **out,
                               cd_error *err)
{
    if (p->baseline == CD_BASELINE_BLUR)
        return ex_blur(x, p->blur_sigma, out, err);
    if (p->baseline == CD_BASELINE_CUSTOM) {
        const cd_tensor *b = p->baseline_tensor;
        if (!b || b->dtype != CD_FLOAT32 || !cd_shape_equal(b->ndim, b->dims, x->ndim, x->dims))
            return cd_fail(err, CD_ERR_SHAPE, "ig: the custom baseline must be float32 with the "
                                              "input's shape");
        return cd_tensor_clone(b, out, err);
    }
    return cd_tensor_create(CD_FLOAT32, x->ndim, x->dims, out, err);
}

/* ---- IG through a linear prefix (ex_linear_prefix): the prefix Conv's
 * output along the path is zb + a (zx - zb) (zb, zx: its outputs on the
 * baseline and the input), so each step's rows start after it, and
 * sum_k w_k dF/dx(x_k) = J^T sum_k w_k dF/dz(z_k) is one transposed Conv of
 * the summed gradients: the Conv's forward and backward run once, not once
 * per step. Exact in exact arithmetic; float32 rounding differs from the
 * plain path only in the summation order. */

typedef struct igp_ctx {
    const float *zb, *zx;
    const double *nodes;
} igp_ctx;

static void igp_fill(void *c, int64_t k, float *z, size_t n)
{
    const igp_ctx *s = c;
    double a = s->nodes[k];
    for (size_t i = 0; i < n; i++)
        z[i] = (float)(s->zb[i] + a * ((double)s->zx[i] - s->zb[i]));
}

/* Runs Conv node n (weights from plan p) on the batch-1 tensor x into a new
 * *y, or its input gradient for the output gradient gy into the new *y. */
static cd_status prefix_conv(cd_explainer *e, const cd_plan *p, const cd_node *n,
                             const cd_tensor *x, const cd_tensor *gy, cd_tensor **y,
                             cd_error *err)
{
    const cd_tensor *z = &p->vals[n->outputs[0]];
    int64_t dims[CD_MAX_DIMS];
    memcpy(dims, gy ? x->dims : z->dims, sizeof dims);
    dims[0] = 1;
    cd_status st = cd_tensor_create(CD_FLOAT32, gy ? x->ndim : z->ndim, dims, y, err);
    if (st != CD_OK)
        return st;
    cd_tensor *in[3] = {(cd_tensor *)x, NULL, NULL}, *out[1] = {*y};
    for (int i = 1; i < n->n_inputs && i < 3; i++)
        in[i] = n->inputs[i] >= 0 ? &p->vals[n->inputs[i]] : NULL;
    e->ctx.err = err;
    e->ctx.threads = e->threads;
    if ((st = cd_ctx_ensure_pool(&e->ctx)) != CD_OK)
        return st;
    const cd_op_def *def = cd_op_get(n->op);
    if (!gy)
        return def->forward(n, in, out, &e->ctx);
    cd_tensor *gout[1] = {(cd_tensor *)gy}, *gin[3] = {*y, NULL, NULL};
    return def->backward(n, in, out, gout, gin, &e->ctx);
}

/* acc (x's numel) += sum_k weights[k] dF/dx at the path points, through the
 * linear prefix node. */
static cd_status ig_prefix_rows(cd_explainer *e, const cd_tensor *x, const cd_tensor *base,
                                const cd_objective *obj, int node, int steps, const double *nodes,
                                const double *weights, double *acc, int *passes, cd_error *err)
{
    const cd_node *n = &e->model->nodes[node];
    int64_t b = steps < e->max_batch ? steps : e->max_batch;
    cd_tensor *shape = NULL, *zx = NULL, *zb = NULL, *gsum = NULL, *gx = NULL;
    cd_plan *p = NULL;
    cd_status st = ex_batch_like(x, b, &shape, err);
    if (st == CD_OK)
        st = ex_get_plan(e, shape, true, &p, err);
    if (st == CD_OK)
        st = prefix_conv(e, p, n, x, NULL, &zx, err);
    if (st == CD_OK)
        st = prefix_conv(e, p, n, base, NULL, &zb, err);
    if (st == CD_OK)
        st = cd_tensor_clone(zx, &gsum, err);
    size_t zn = st == CD_OK ? cd_tensor_numel(zx) : 0;
    double *accz = calloc(zn + 1, sizeof *accz);
    if (st == CD_OK && !accz)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    igp_ctx c = {zb ? cd_cf32(zb) : NULL, zx ? cd_cf32(zx) : NULL, nodes};
    for (int64_t start = 0; st == CD_OK && start < steps; start += e->max_batch) {
        int64_t rows = steps - start < e->max_batch ? steps - start : e->max_batch;
        cd_tensor *chunk = NULL, *gz = NULL;
        st = ex_batch_like(x, rows, &chunk, err);
        /* Rows are numbered from the chunk: shift the nodes to match. */
        igp_ctx cc = c;
        cc.nodes = nodes + start;
        if (st == CD_OK)
            st = ex_gradient_prefix(e, chunk, obj, node, igp_fill, &cc, &gz, err);
        for (int64_t r = 0; st == CD_OK && r < rows; r++)
            for (size_t i = 0; i < zn; i++)
                accz[i] += weights[start + r] * cd_cf32(gz)[(size_t)r * zn + i];
        cd_tensor_free(chunk);
        cd_tensor_free(gz);
        if (st == CD_OK)
            (*passes)++;
    }
    for (size_t i = 0; st == CD_OK && i < zn; i++)
        cd_f32(gsum)[i] = (float)accz[i];
    if (st == CD_OK)
        st = prefix_conv(e, p, n, x, gsum, &gx, err);
    for (size_t i = 0; st == CD_OK && i < cd_tensor_numel(x); i++)
        acc[i] = cd_cf32(gx)[i];
    free(accz);
    cd_tensor *all[] = {shape, zx, zb, gsum, gx};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        cd_tensor_free(all[i]);
    return st;
}

static cd_status integrated_gradients(cd_explainer *e, const cd_tensor *x,
                                      const cd_explain_params *p, const cd_objective *obj,
                                      cd_explanation *out, cd_error *err)
{
    if (p->steps < 1 || p->steps > 4096)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "ig: steps must be in 1..4096");
    size_t n = cd_tensor_numel(x);
    cd_tensor *base = NULL;
    double *nodes = malloc((size_t)p->steps * sizeof *nodes);
    double *weights = malloc((size_t)p->steps * sizeof *weights);
    double *acc = calloc(n, sizeof *acc);
    cd_status st = nodes && weights && acc ? make_baseline(x, p, &base, err)
                                           : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK) {
        ig_rule(p, nodes, weights);
        ig_ctx c = {cd_cf32(x), cd_cf32(base), nodes, weights, acc};
        int64_t b = p->steps < e->max_batch ? p->steps : e->max_batch;
        cd_tensor *shape = NULL;
        int node = -1;
        st = ex_batch_like(x, b, &shape, err);
        if (st == CD_OK)
            node = ex_linear_prefix(e, shape, obj, err);
        cd_tensor_free(shape);
        if (st == CD_OK && node >= 0)
            st = ig_prefix_rows(e, x, base, obj, node, p->steps, nodes, weights, acc,
                                &out->passes, err);
        else if (st == CD_OK)
            st = grad_rows(e, x, obj, p->steps, ig_fill, ig_take, &c, &out->passes, err);
    }
    if (st == CD_OK)
        st = ex_scores(e, base, obj, &out->baseline_score, err);
    if (st == CD_OK)
        st = cd_tensor_clone(x, &out->map, err);
    double total = 0;
    for (size_t i = 0; st == CD_OK && i < n; i++) {
        double v = ((double)cd_cf32(x)[i] - cd_cf32(base)[i]) * acc[i];
        cd_f32(out->map)[i] = (float)v;
        total += v;
    }
    out->completeness_delta = total - (out->score - out->baseline_score);
    cd_tensor_free(base);
    free(nodes);
    free(weights);
    free(acc);
    return st;
}

/* ------------------------------------------------------------ dispatch */

cd_status ex_gradient_methods(cd_explainer *e, const cd_tensor *x, const cd_explain_params *p,
                              cd_objective *obj, cd_explanation *out, cd_error *err)
{
    if (p->method == CD_EXPLAIN_SMOOTHGRAD)
        return smoothgrad(e, x, p, obj, out, err);
    if (p->method == CD_EXPLAIN_IG)
        return integrated_gradients(e, x, p, obj, out, err);
    cd_status st = cd_explain_gradient(e, x, obj, 1, NULL, &out->map, NULL, NULL, err);
    out->passes = 1;
    if (st == CD_OK && p->method == CD_EXPLAIN_GRADXINPUT)
        for (size_t i = 0; i < cd_tensor_numel(x); i++)
            cd_f32(out->map)[i] *= cd_cf32(x)[i];
    return st;
}

cd_status cd_explain(cd_explainer *e, const cd_tensor *x, const cd_explain_params *p,
                     cd_explanation *out, cd_error *err)
{
    if (!e || !x || !p || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_explain: NULL argument");
    memset(out, 0, sizeof *out);
    if (x->dtype != CD_FLOAT32 || x->ndim < 2 || x->dims[0] != 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "cd_explain: x must be a float32 tensor with batch 1");
    cd_objective obj = p->objective;
    /* Fix the class on the clean input so every perturbed row explains it. */
    int target = -1;
    cd_status st = cd_explain_scores(e, x, &obj, &out->score, &target, err);
    if (st != CD_OK)
        return st;
    obj.target = target;
    out->target = target;
    switch (p->method) {
    case CD_EXPLAIN_GRADIENT:
    case CD_EXPLAIN_GRADXINPUT:
    case CD_EXPLAIN_SMOOTHGRAD:
    case CD_EXPLAIN_IG: st = ex_gradient_methods(e, x, p, &obj, out, err); break;
    case CD_EXPLAIN_GRADCAM:
    case CD_EXPLAIN_GRADCAM_PP: st = ex_cam(e, x, p, &obj, out, err); break;
    case CD_EXPLAIN_OCCLUSION: st = ex_occlusion(e, x, p, &obj, out, err); break;
    case CD_EXPLAIN_RISE: st = ex_rise(e, x, p, &obj, out, err); break;
    default: st = cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_explain: unknown method %d", p->method);
    }
    if (st != CD_OK)
        cd_explanation_free(out);
    return st;
}
