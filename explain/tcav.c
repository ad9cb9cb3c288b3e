/* Testing with Concept Activation Vectors (Kim et al. 2018).
 *
 * A CAV is the normal of a linear classifier (L2-regularised logistic
 * regression, fitted here by accelerated gradient descent with GSL's BLAS)
 * that separates a layer's activations on concept examples from those on
 * random examples. A class's TCAV score is the fraction of its inputs whose
 * class score grows along the CAV (positive directional derivative). Its
 * significance: `runs` CAVs from concept-vs-random subsets are compared
 * with `runs` CAVs from random-vs-random splits by a two-sided Welch t-test.
 * Definitions and defaults: docs/interpretability.md. */
#include <gsl/gsl_blas.h>
#include <gsl/gsl_cdf.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "explain_internal.h"

void cd_tcav_params_default(cd_tcav_params *p)
{
    memset(p, 0, sizeof *p);
    p->target = 0;
    p->runs = 20;
    p->subset = 0;
    p->l2 = 0.01;
    p->max_iter = 300;
    p->alpha = 0.05;
    p->seed = 0;
}

void cd_tcav_result_free(cd_tcav_result *r)
{
    if (!r)
        return;
    free(r->scores);
    free(r->null_scores);
    cd_tensor_free(r->cav);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------ activations */

/* Activations of layer over x's rows as an n x d row-major double matrix. */
static cd_status activations(cd_explainer *e, const cd_tensor *x, const char *layer,
                             gsl_matrix **out, cd_error *err)
{
    cd_objective obj;
    cd_objective_default(&obj);
    obj.output = layer;
    obj.kind = CD_OBJECTIVE_SUM;
    cd_tensor *a = NULL;
    cd_status st = ex_forward_value(e, x, &obj, &a, err);
    if (st != CD_OK)
        return st;
    size_t n = (size_t)a->dims[0], d = ex_row_numel(a);
    *out = gsl_matrix_alloc(n, d);
    if (!*out)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory for %zu x %zu activations", n, d);
    for (size_t i = 0; st == CD_OK && i < n * d; i++)
        (*out)->data[i] = ((const float *)a->data)[i];
    cd_tensor_free(a);
    return st;
}

/* Gradients of the target's pre-softmax score w.r.t. the layer, n x d. */
static cd_status class_gradients(cd_explainer *e, const cd_tensor *x, const char *layer,
                                 int target, gsl_matrix **out, int64_t *shape, int *ndim,
                                 cd_error *err)
{
    cd_objective obj;
    cd_objective_default(&obj);
    obj.target = target;
    const char *wrt[1] = {layer};
    cd_tensor *g = NULL;
    cd_status st = cd_explain_gradient(e, x, &obj, 1, wrt, &g, NULL, NULL, err);
    if (st != CD_OK)
        return st;
    size_t n = (size_t)g->dims[0], d = ex_row_numel(g);
    *ndim = g->ndim;
    memcpy(shape, g->dims, sizeof g->dims);
    *out = gsl_matrix_alloc(n, d);
    if (!*out)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory for %zu x %zu gradients", n, d);
    for (size_t i = 0; st == CD_OK && i < n * d; i++)
        (*out)->data[i] = ((const float *)g->data)[i];
    cd_tensor_free(g);
    return st;
}

/* ------------------------------------------------------------ classifier */

static double sigmoid(double z)
{
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/* Largest eigenvalue of X^T X by power iteration (an upper-bound-ish
 * estimate; 1.1x margin taken by the caller). */
static double gram_norm(const gsl_matrix *X, gsl_vector *v, gsl_vector *u)
{
    gsl_vector_set_all(v, 1.0 / sqrt((double)v->size));
    double lam = 0;
    for (int it = 0; it < 50; it++) {
        gsl_blas_dgemv(CblasNoTrans, 1.0, X, v, 0.0, u);
        gsl_blas_dgemv(CblasTrans, 1.0, X, u, 0.0, v);
        double nv = gsl_blas_dnrm2(v);
        if (nv == 0)
            return 0;
        lam = nv;
        gsl_vector_scale(v, 1.0 / nv);
    }
    return lam;
}

typedef struct lr_work {
    gsl_vector *w, *w_prev, *yk, *grad, *z, *r, *tmp_d;
} lr_work;

static void lr_free(lr_work *k)
{
    gsl_vector *v[] = {k->w, k->w_prev, k->yk, k->grad, k->z, k->r, k->tmp_d};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i])
            gsl_vector_free(v[i]);
}

static bool lr_alloc(lr_work *k, size_t n, size_t d)
{
    memset(k, 0, sizeof *k);
    k->w = gsl_vector_calloc(d);
    k->w_prev = gsl_vector_calloc(d);
    k->yk = gsl_vector_calloc(d);
    k->grad = gsl_vector_alloc(d);
    k->tmp_d = gsl_vector_alloc(d);
    k->z = gsl_vector_alloc(n);
    k->r = gsl_vector_alloc(n);
    return k->w && k->w_prev && k->yk && k->grad && k->tmp_d && k->z && k->r;
}

/* Fits min_w,b (1/n) sum log(1 + exp(z_i)) - s_i z_i + (l2/2)|w|^2 with
 * z = X w + b on the centred, RMS-scaled rows X (s_i = 1 for the first
 * n_pos rows). Writes w (unit length) into cav and the training accuracy. */
static void fit_cav(gsl_matrix *X, size_t n_pos, const cd_tcav_params *p, lr_work *k,
                    double *cav, double *accuracy)
{
    size_t n = X->size1, d = X->size2;
    /* Centre (absorbs most of the intercept) and scale by the overall RMS
     * so that l2 means the same at every layer; the CAV direction in the
     * original coordinates is unchanged by either. */
    double ss = 0;
    for (size_t j = 0; j < d; j++) {
        double m = 0;
        for (size_t i = 0; i < n; i++)
            m += gsl_matrix_get(X, i, j);
        m /= (double)n;
        for (size_t i = 0; i < n; i++) {
            double v = gsl_matrix_get(X, i, j) - m;
            gsl_matrix_set(X, i, j, v);
            ss += v * v;
        }
    }
    double rms = sqrt(ss / (double)(n * d));
    if (rms > 0)
        gsl_matrix_scale(X, 1.0 / rms);
    double L = 1.1 * (gram_norm(X, k->tmp_d, k->z) / (4.0 * (double)n) + 0.25) + p->l2;
    double step = 1.0 / L, b = 0, b_prev = 0, by = 0, t = 1;
    gsl_vector_set_zero(k->w);
    gsl_vector_set_zero(k->w_prev);
    gsl_vector_set_zero(k->yk);
    for (int it = 0; it < p->max_iter; it++) {
        /* Gradient at the look-ahead point (yk, by). */
        gsl_blas_dgemv(CblasNoTrans, 1.0, X, k->yk, 0.0, k->z);
        double gb = 0;
        for (size_t i = 0; i < n; i++) {
            double r = sigmoid(gsl_vector_get(k->z, i) + by) - (i < n_pos ? 1.0 : 0.0);
            gsl_vector_set(k->r, i, r / (double)n);
            gb += r / (double)n;
        }
        gsl_vector_memcpy(k->grad, k->yk);
        gsl_blas_dgemv(CblasTrans, 1.0, X, k->r, p->l2, k->grad);
        gsl_vector_memcpy(k->w_prev, k->w);
        b_prev = b;
        gsl_vector_memcpy(k->w, k->yk);
        gsl_blas_daxpy(-step, k->grad, k->w);
        b = by - step * gb;
        double t_next = (1 + sqrt(1 + 4 * t * t)) / 2, mom = (t - 1) / t_next;
        t = t_next;
        gsl_vector_memcpy(k->yk, k->w);
        gsl_vector_sub(k->w_prev, k->w); /* w_prev := w_prev - w */
        gsl_blas_daxpy(-mom, k->w_prev, k->yk);
        by = b + mom * (b - b_prev);
        if (gsl_blas_dnrm2(k->grad) < 1e-7)
            break;
    }
    gsl_blas_dgemv(CblasNoTrans, 1.0, X, k->w, 0.0, k->z);
    size_t right = 0;
    for (size_t i = 0; i < n; i++)
        right += ((gsl_vector_get(k->z, i) + b > 0) == (i < n_pos));
    *accuracy = (double)right / (double)n;
    double nw = gsl_blas_dnrm2(k->w);
    for (size_t j = 0; j < d; j++)
        cav[j] = nw > 0 ? gsl_vector_get(k->w, j) / nw : 0;
}

/* ------------------------------------------------------------ runs */

/* Fisher-Yates shuffle of 0..n-1 into perm. */
static void shuffle(size_t *perm, size_t n, ex_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(ex_rng_uniform(rng) * (double)i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

static void copy_rows(gsl_matrix *dst, size_t at, const gsl_matrix *src, const size_t *rows,
                      size_t m)
{
    for (size_t i = 0; i < m; i++)
        memcpy(dst->data + (at + i) * dst->tda, src->data + rows[i] * src->tda,
               src->size2 * sizeof(double));
}

/* Fraction of the rows of G with a positive dot product with cav. */
static double tcav_score(const gsl_matrix *G, const double *cav)
{
    size_t pos = 0;
    for (size_t i = 0; i < G->size1; i++) {
        double s = 0;
        for (size_t j = 0; j < G->size2; j++)
            s += gsl_matrix_get(G, i, j) * cav[j];
        pos += s > 0;
    }
    return (double)pos / (double)G->size1;
}

static void mean_std(const double *v, int n, double *mean, double *sd)
{
    double m = 0, s = 0;
    for (int i = 0; i < n; i++)
        m += v[i];
    m /= n;
    for (int i = 0; i < n; i++)
        s += (v[i] - m) * (v[i] - m);
    *mean = m;
    *sd = n > 1 ? sqrt(s / (n - 1)) : 0; /* sample std (divisor n - 1) */
}

/* Two-sided Welch t-test of the concept scores against the null scores. */
static void welch(cd_tcav_result *r)
{
    int n = r->runs;
    mean_std(r->scores, n, &r->score_mean, &r->score_std);
    mean_std(r->null_scores, n, &r->null_mean, &r->null_std);
    double va = r->score_std * r->score_std / n, vb = r->null_std * r->null_std / n;
    if (va + vb == 0) { /* both constant: equal means or certainly different */
        r->t = r->score_mean == r->null_mean ? 0 : INFINITY;
        r->dof = 2.0 * n - 2;
        r->p_value = r->score_mean == r->null_mean ? 1.0 : 0.0;
        return;
    }
    r->t = (r->score_mean - r->null_mean) / sqrt(va + vb);
    r->dof = (va + vb) * (va + vb) / (va * va / (n - 1) + vb * vb / (n - 1));
    r->p_value = 2.0 * gsl_cdf_tdist_Q(fabs(r->t), r->dof);
    if (r->p_value > 1)
        r->p_value = 1;
}

typedef struct tcav_data {
    gsl_matrix *Ac, *Ar, *G, *X;
    size_t *pc, *pr;
    double *cav;
    lr_work k;
} tcav_data;

static cd_status do_runs(tcav_data *t, const cd_tcav_params *p, size_t m, cd_tcav_result *r)
{
    ex_rng rng = {p->seed ^ 0x7CA5ull};
    double acc_sum = 0, acc;
    for (int run = 0; run < p->runs; run++) {
        /* Concept run: m concept rows vs m random rows. */
        shuffle(t->pc, t->Ac->size1, &rng);
        shuffle(t->pr, t->Ar->size1, &rng);
        copy_rows(t->X, 0, t->Ac, t->pc, m);
        copy_rows(t->X, m, t->Ar, t->pr, m);
        fit_cav(t->X, m, p, &t->k, t->cav, &acc);
        acc_sum += acc;
        r->scores[run] = tcav_score(t->G, t->cav);
        if (run == 0)
            for (size_t j = 0; j < t->G->size2; j++)
                cd_f32(r->cav)[j] = (float)t->cav[j];
        /* Null run: two disjoint random subsets of m rows each. */
        shuffle(t->pr, t->Ar->size1, &rng);
        copy_rows(t->X, 0, t->Ar, t->pr, m);
        copy_rows(t->X, m, t->Ar, t->pr + m, m);
        fit_cav(t->X, m, p, &t->k, t->cav, &acc);
        r->null_scores[run] = tcav_score(t->G, t->cav);
    }
    r->cav_accuracy = acc_sum / p->runs;
    welch(r);
    r->significant = r->p_value < p->alpha;
    return CD_OK;
}

static void tcav_data_free(tcav_data *t)
{
    gsl_matrix *ms[] = {t->Ac, t->Ar, t->G, t->X};
    for (size_t i = 0; i < 4; i++)
        if (ms[i])
            gsl_matrix_free(ms[i]);
    free(t->pc);
    free(t->pr);
    free(t->cav);
    lr_free(&t->k);
}

static cd_status check_params(const cd_tcav_params *p, const cd_tensor *inputs,
                              const cd_tensor *concept, const cd_tensor *random, cd_error *err)
{
    if (!inputs || !concept || !random)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_tcav: NULL tensor");
    if (p->runs < 10)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_tcav: at least 10 runs (got %d)",
                       p->runs);
    if (p->l2 < 0 || p->max_iter < 1 || !(p->alpha > 0 && p->alpha < 1))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_tcav: l2 >= 0, max_iter >= 1 and "
                       "alpha in (0, 1)");
    if (random->ndim < 1 || random->dims[0] < 4 || concept->ndim < 1 || concept->dims[0] < 2)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_tcav: need >= 2 concept and >= 4 "
                       "random examples");
    return CD_OK;
}

cd_status cd_tcav(cd_explainer *e, const cd_tensor *inputs, const cd_tensor *concept,
                  const cd_tensor *random, const cd_tcav_params *params, cd_tcav_result *out,
                  cd_error *err)
{
    cd_tcav_params def;
    cd_tcav_params_default(&def);
    const cd_tcav_params *p = params ? params : &def;
    if (!e || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_tcav: NULL argument");
    memset(out, 0, sizeof *out);
    cd_status st = check_params(p, inputs, concept, random, err);
    if (st != CD_OK)
        return st;
    const char *layer = NULL;
    cd_tensor one = *inputs;
    one.dims[0] = 1;
    int v = p->layer ? cd_model_find_value(e->model, p->layer) : -1;
    if (p->layer && v < 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has no tensor named '%s'", p->layer);
    if (p->layer)
        layer = e->model->values[v].name;
    else if ((st = cd_explain_default_layer(e, &one, &layer, err)) != CD_OK)
        return st;
    tcav_data t = {0};
    int64_t shape[CD_MAX_DIMS];
    int ndim = 0;
    st = class_gradients(e, inputs, layer, p->target, &t.G, shape, &ndim, err);
    if (st == CD_OK)
        st = activations(e, concept, layer, &t.Ac, err);
    if (st == CD_OK)
        st = activations(e, random, layer, &t.Ar, err);
    size_t nc = t.Ac ? t.Ac->size1 : 0, nr = t.Ar ? t.Ar->size1 : 0;
    /* Half of each pool by default: every run then sees another part of the
     * concept set too, which keeps the concept runs from all sharing one
     * sample (their scores would be correlated and the t-test overconfident). */
    size_t m = p->subset > 0 ? (size_t)p->subset : (nc < nr ? nc : nr) / 2;
    if (st == CD_OK && (m < 2 || m > nc || 2 * m > nr))
        st = cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_tcav: subset %zu needs <= %zu concept and "
                     ">= %zu random examples (have %zu and %zu)", m, nc, 2 * m, nc, nr);
    size_t d = t.G ? t.G->size2 : 0;
    if (st == CD_OK) {
        t.X = gsl_matrix_alloc(2 * m, d);
        t.pc = malloc(nc * sizeof *t.pc);
        t.pr = malloc(nr * sizeof *t.pr);
        t.cav = malloc(d * sizeof *t.cav);
        out->scores = calloc((size_t)p->runs, sizeof *out->scores);
        out->null_scores = calloc((size_t)p->runs, sizeof *out->null_scores);
        shape[0] = 1;
        if (!t.X || !t.pc || !t.pr || !t.cav || !out->scores || !out->null_scores ||
            !lr_alloc(&t.k, 2 * m, d))
            st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
        else
            st = cd_tensor_create(CD_FLOAT32, ndim, shape, &out->cav, err);
    }
    out->layer = layer;
    out->runs = p->runs;
    out->subset = (int)m;
    if (st == CD_OK)
        st = do_runs(&t, p, m, out);
    tcav_data_free(&t);
    if (st != CD_OK)
        cd_tcav_result_free(out);
    return st;
}
