/* Gradient-based attributions: vanilla gradient, gradient x input,
 * SmoothGrad (mean, squared, VarGrad) and Integrated Gradients, plus the
 * entry point that dispatches every method. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
