/* Post-hoc calibration: temperature / vector / matrix scaling and Platt
 * (parametric, fitted by minimising NLL with GSL's BFGS and an analytic
 * gradient), histogram binning and isotonic regression (one-vs-rest,
 * renormalised). Serialisation lives in calib_json.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_multimin.h>

#include "calibration/calib_internal.h"
#include "calibration/calibrator.h"
#include "core/internal.h"

static const char *const method_names[] = {"none",      "temperature", "vector", "matrix",
                                           "histogram", "isotonic",    "platt"};

const char *cd_calib_method_name(cd_calib_method m)
{
    return (m >= 0 && (size_t)m < CD_COUNT_OF(method_names)) ? method_names[m] : "unknown";
}

cd_calib_method cd_calib_method_parse(const char *name)
{
    for (size_t i = 1; name && i < CD_COUNT_OF(method_names); i++)
        if (strcmp(name, method_names[i]) == 0)
            return (cd_calib_method)i;
    return CD_CALIB_NONE;
}

void cd_calibrator_free(cd_calibrator *c)
{
    if (!c)
        return;
    free(c->params);
    free(c->hist);
    for (int j = 0; c->iso_x && j < c->k; j++) {
        free(c->iso_x[j]);
        free(c->iso_y[j]);
    }
    free(c->iso_x);
    free(c->iso_y);
    free(c->iso_len);
    free(c);
}

cd_calib_method cd_calibrator_method(const cd_calibrator *c) { return c->method; }
int cd_calibrator_classes(const cd_calibrator *c) { return c->k; }
const char *cd_calibrator_warning(const cd_calibrator *c)
{
    return c->warning[0] ? c->warning : NULL;
}
double cd_calibrator_temperature(const cd_calibrator *c)
{
    return c->method == CD_CALIB_TEMPERATURE ? c->params[0] : NAN;
}

size_t cd_calib_param_count(cd_calib_method m, int k)
{
    switch (m) {
    case CD_CALIB_TEMPERATURE: return 1;
    case CD_CALIB_VECTOR: return 2 * (size_t)k;
    case CD_CALIB_MATRIX: return (size_t)k * (size_t)k + (size_t)k;
    case CD_CALIB_PLATT: return 2;
    default: return 0;
    }
}

/* ----------------------------------------------------- parametric scaling */

/* Scaled logits s (k_out entries) of one row z under parameters theta. The
 * optimiser works on log T so that T stays positive without constraints. */
static void scale_row(cd_calib_method m, const double *theta, const double *z, int k, double *s)
{
    switch (m) {
    case CD_CALIB_TEMPERATURE: {
        double inv_t = exp(-theta[0]);
        for (int c = 0; c < k; c++)
            s[c] = z[c] * inv_t;
        break;
    }
    case CD_CALIB_VECTOR:
        for (int c = 0; c < k; c++)
            s[c] = theta[c] * z[c] + theta[k + c];
        break;
    case CD_CALIB_MATRIX:
        for (int r = 0; r < k; r++) {
            double acc = theta[(size_t)k * k + r];
            for (int c = 0; c < k; c++)
                acc += theta[(size_t)r * k + c] * z[c];
            s[r] = acc;
        }
        break;
    case CD_CALIB_PLATT:
        s[0] = 0.0;
        s[1] = theta[0] * (z[1] - z[0]) + theta[1];
        break;
    default:
        memcpy(s, z, sizeof(double) * (size_t)k);
    }
}

/* Adds d(loss)/d(theta) given g = d(loss)/d(s) for one row. */
static void scale_row_grad(cd_calib_method m, const double *theta, const double *z, int k,
                           const double *g, double *grad)
{
    switch (m) {
    case CD_CALIB_TEMPERATURE: {
        double inv_t = exp(-theta[0]);
        for (int c = 0; c < k; c++)
            grad[0] -= g[c] * z[c] * inv_t;
        break;
    }
    case CD_CALIB_VECTOR:
        for (int c = 0; c < k; c++) {
            grad[c] += g[c] * z[c];
            grad[k + c] += g[c];
        }
        break;
    case CD_CALIB_MATRIX:
        for (int r = 0; r < k; r++) {
            for (int c = 0; c < k; c++)
                grad[(size_t)r * k + c] += g[r] * z[c];
            grad[(size_t)k * k + r] += g[r];
        }
        break;
    case CD_CALIB_PLATT:
        grad[0] += g[1] * (z[1] - z[0]);
        grad[1] += g[1];
        break;
    default:
        break;
    }
}

typedef struct fit_problem {
    cd_calib_method method;
    const double *z;
    const int *y;
    size_t n;
    int k;
    double l2;
    double *s; /* k scratch */
} fit_problem;

/* Matrix scaling penalty lambda * (||W - I||^2 + ||b||^2): pulls toward the
 * identity map so that with little data it degrades to "no calibration". */
static double penalty(const fit_problem *p, const double *theta, double *grad)
{
    if (p->method != CD_CALIB_MATRIX || p->l2 <= 0)
        return 0.0;
    double pen = 0.0;
    size_t np = cd_calib_param_count(p->method, p->k);
    for (size_t j = 0; j < np; j++) {
        size_t r = j / (size_t)p->k, c = j % (size_t)p->k;
        double target = (j < (size_t)p->k * p->k && r == c) ? 1.0 : 0.0;
        double d = theta[j] - target;
        pen += p->l2 * d * d;
        if (grad)
            grad[j] += 2.0 * p->l2 * d;
    }
    return pen;
}

/* Mean NLL of softmax(scale(theta, z)) and its gradient (grad may be NULL). */
static double nll_and_grad(const fit_problem *p, const double *theta, double *grad)
{
    size_t np = cd_calib_param_count(p->method, p->k);
    if (grad)
        memset(grad, 0, np * sizeof(double));
    double total = 0.0, inv_n = 1.0 / (double)p->n;
    for (size_t i = 0; i < p->n; i++) {
        const double *z = p->z + i * (size_t)p->k;
        scale_row(p->method, theta, z, p->k, p->s);
        double mx = p->s[0];
        for (int c = 1; c < p->k; c++)
            if (p->s[c] > mx)
                mx = p->s[c];
        double sum = 0.0;
        for (int c = 0; c < p->k; c++)
            sum += exp(p->s[c] - mx);
        double lse = mx + log(sum);
        total += lse - p->s[p->y[i]];
        if (!grad)
            continue;
        for (int c = 0; c < p->k; c++)
            p->s[c] = (exp(p->s[c] - lse) - (c == p->y[i] ? 1.0 : 0.0)) * inv_n;
        scale_row_grad(p->method, theta, z, p->k, p->s, grad);
    }
    return total * inv_n + penalty(p, theta, grad);
}

static double gsl_f(const gsl_vector *x, void *params)
{
    return nll_and_grad(params, x->data, NULL);
}

static void gsl_df(const gsl_vector *x, void *params, gsl_vector *g)
{
    nll_and_grad(params, x->data, g->data);
}

static void gsl_fdf(const gsl_vector *x, void *params, double *f, gsl_vector *g)
{
    *f = nll_and_grad(params, x->data, g->data);
}

static void identity_params(cd_calib_method m, int k, double *theta)
{
    size_t np = cd_calib_param_count(m, k);
    memset(theta, 0, np * sizeof(double));
    if (m == CD_CALIB_VECTOR)
        for (int c = 0; c < k; c++)
            theta[c] = 1.0;
    if (m == CD_CALIB_MATRIX)
        for (int c = 0; c < k; c++)
            theta[(size_t)c * k + c] = 1.0;
    if (m == CD_CALIB_PLATT)
        theta[0] = 1.0;
}

/* BFGS from the identity map; BFGS only accepts descent steps, so the fitted
 * NLL never exceeds the starting (uncalibrated) NLL. */
static cd_status fit_parametric(cd_calibrator *c, const double *z, const int *y, size_t n,
                                double l2, cd_error *err)
{
    size_t np = cd_calib_param_count(c->method, c->k);
    fit_problem prob = {c->method, z, y, n, c->k, l2, malloc(sizeof(double) * (size_t)c->k)};
    gsl_vector *x = gsl_vector_alloc(np);
    gsl_multimin_fdfminimizer *s =
        gsl_multimin_fdfminimizer_alloc(gsl_multimin_fdfminimizer_vector_bfgs2, np);
    cd_status st = CD_OK;
    if (!prob.s || !x || !s) {
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "calibration fit: %zu parameters", np);
        goto done;
    }
    identity_params(c->method, c->k, x->data);
    c->nll_before = nll_and_grad(&prob, x->data, NULL);
    gsl_multimin_function_fdf fn = {gsl_f, gsl_df, gsl_fdf, np, &prob};
    if (gsl_multimin_fdfminimizer_set(s, &fn, x, 0.1, 0.1) != GSL_SUCCESS) {
        st = cd_fail(err, CD_ERR_NUMERIC, "calibration fit: %s: GSL could not start the "
                     "minimiser (non-finite NLL?)", cd_calib_method_name(c->method));
        goto done;
    }
    for (int it = 0; it < 1000; it++) {
        if (gsl_multimin_fdfminimizer_iterate(s))
            break; /* no further progress possible: keep the best point */
        if (gsl_multimin_test_gradient(s->gradient, 1e-9) == GSL_SUCCESS)
            break;
    }
    memcpy(c->params, s->x->data, np * sizeof(double));
    c->nll_after = nll_and_grad(&prob, c->params, NULL);
    if (!(c->nll_after <= c->nll_before)) {
        identity_params(c->method, c->k, c->params);
        c->nll_after = c->nll_before;
    }
    if (c->method == CD_CALIB_TEMPERATURE)
        c->params[0] = exp(c->params[0]); /* stored as T, optimised as log T */
done:
    free(prob.s);
    if (x)
        gsl_vector_free(x);
    if (s)
        gsl_multimin_fdfminimizer_free(s);
    return st;
}

/* --------------------------------------------------- non-parametric maps */

/* One-vs-rest histogram: bin value = frequency of the class among samples
 * whose p_c falls in the bin; empty bins keep the bin midpoint. */
static cd_status fit_histogram(cd_calibrator *c, const double *p, const int *y, size_t n,
                               cd_error *err)
{
    int m = c->bins;
    double *cnt = calloc((size_t)m, sizeof(double));
    c->hist = calloc((size_t)m * (size_t)c->k, sizeof(double));
    if (!cnt || !c->hist) {
        free(cnt);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "histogram binning: %d bins", m);
    }
    for (int k = 0; k < c->k; k++) {
        double *v = c->hist + (size_t)k * m;
        memset(cnt, 0, sizeof(double) * (size_t)m);
        for (size_t i = 0; i < n; i++) {
            int b = cd_bin_index(p[i * (size_t)c->k + k], m);
            cnt[b] += 1;
            v[b] += y[i] == k;
        }
        for (int b = 0; b < m; b++)
            v[b] = cnt[b] > 0 ? v[b] / cnt[b] : (b + 0.5) / m;
    }
    free(cnt);
    return CD_OK;
}

cd_status cd_isotonic_pav(const double *y, const double *w, size_t n, double *fit,
                          cd_error *err)
{
    /* Blocks on a stack: value, weight, length; merge while the last two
     * violate monotonicity. */
    double *val = malloc(n * sizeof(double)), *wt = malloc(n * sizeof(double));
    size_t *len = malloc(n * sizeof(size_t));
    if (!val || !wt || !len) {
        free(val);
        free(wt);
        free(len);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "isotonic: %zu points", n);
    }
    size_t top = 0;
    for (size_t i = 0; i < n; i++) {
        val[top] = y[i];
        wt[top] = w ? w[i] : 1.0;
        len[top] = 1;
        top++;
        while (top > 1 && val[top - 2] > val[top - 1]) {
            double wsum = wt[top - 2] + wt[top - 1];
            val[top - 2] = (val[top - 2] * wt[top - 2] + val[top - 1] * wt[top - 1]) / wsum;
            wt[top - 2] = wsum;
            len[top - 2] += len[top - 1];
            top--;
        }
    }
    size_t pos = 0;
    for (size_t b = 0; b < top; b++)
        for (size_t j = 0; j < len[b]; j++)
            fit[pos++] = val[b];
    free(val);
    free(wt);
    free(len);
    return CD_OK;
}

typedef struct xy_pair {
    double x, y;
} xy_pair;

static int cmp_pair_x(const void *a, const void *b)
{
    return cd_cmp_double(&((const xy_pair *)a)->x, &((const xy_pair *)b)->x);
}

/* Fits class k's isotonic map: tied x are pooled first (weights = counts),
 * then PAV; stored as interpolation knots (x_j, fit_j). */
static cd_status fit_isotonic_class(cd_calibrator *c, int k, const double *p, const int *y,
                                    size_t n, xy_pair *pairs, double *wx, double *wy,
                                    double *ww, cd_error *err)
{
    for (size_t i = 0; i < n; i++)
        pairs[i] = (xy_pair){p[i * (size_t)c->k + k], y[i] == k ? 1.0 : 0.0};
    qsort(pairs, n, sizeof *pairs, cmp_pair_x);
    size_t u = 0;
    for (size_t i = 0; i < n; i++) {
        if (u > 0 && pairs[i].x == wx[u - 1]) {
            wy[u - 1] += pairs[i].y;
            ww[u - 1] += 1;
            continue;
        }
        wx[u] = pairs[i].x;
        wy[u] = pairs[i].y;
        ww[u] = 1;
        u++;
    }
    for (size_t j = 0; j < u; j++)
        wy[j] /= ww[j];
    c->iso_x[k] = malloc(u * sizeof(double));
    c->iso_y[k] = malloc(u * sizeof(double));
    if (!c->iso_x[k] || !c->iso_y[k])
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "isotonic: class %d", k);
    memcpy(c->iso_x[k], wx, u * sizeof(double));
    c->iso_len[k] = u;
    return cd_isotonic_pav(wy, ww, u, c->iso_y[k], err);
}

static cd_status fit_isotonic(cd_calibrator *c, const double *p, const int *y, size_t n,
                              cd_error *err)
{
    c->iso_x = calloc((size_t)c->k, sizeof(double *));
    c->iso_y = calloc((size_t)c->k, sizeof(double *));
    c->iso_len = calloc((size_t)c->k, sizeof(size_t));
    xy_pair *pairs = malloc(n * sizeof *pairs);
    double *buf = malloc(3 * n * sizeof(double));
    cd_status st = CD_OK;
    if (!c->iso_x || !c->iso_y || !c->iso_len || !pairs || !buf)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "isotonic: %zu samples", n);
    for (int k = 0; st == CD_OK && k < c->k; k++)
        st = fit_isotonic_class(c, k, p, y, n, pairs, buf, buf + n, buf + 2 * n, err);
    free(pairs);
    free(buf);
    return st;
}

/* Piecewise-linear interpolation through the knots, flat outside. */
static double interp(const double *x, const double *y, size_t len, double v)
{
    if (len == 0)
        return v;
    if (v <= x[0])
        return y[0];
    if (v >= x[len - 1])
        return y[len - 1];
    size_t lo = 0, hi = len - 1;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (x[mid] <= v)
            lo = mid;
        else
            hi = mid;
    }
    double t = (v - x[lo]) / (x[hi] - x[lo]);
    return y[lo] + t * (y[hi] - y[lo]);
}

/* ------------------------------------------------------------ public API */

/* Inputs as the fit/apply functions need them: logits (log-probabilities
 * when only probabilities exist) for the parametric maps, probabilities for
 * the binning maps. Returns a new n x k array. */
static double *prepare_inputs(const cd_calibrator *c, const double *scores, size_t n,
                              int want_logits)
{
    size_t total = n * (size_t)c->k;
    double *out = malloc(total * sizeof(double));
    if (!out)
        return NULL;
    if (want_logits && c->inputs_are_probs) {
        for (size_t i = 0; i < total; i++)
            out[i] = log(scores[i] > CD_NLL_CLAMP ? scores[i] : CD_NLL_CLAMP);
    } else if (!want_logits && !c->inputs_are_probs) {
        cd_softmax_rows(scores, n, c->k, out);
    } else {
        memcpy(out, scores, total * sizeof(double));
    }
    return out;
}

static int is_parametric(cd_calib_method m)
{
    return m == CD_CALIB_TEMPERATURE || m == CD_CALIB_VECTOR || m == CD_CALIB_MATRIX ||
           m == CD_CALIB_PLATT;
}

cd_calibrator *cd_calibrator_new(cd_calib_method m, int k, int inputs_are_probs, int bins)
{
    cd_calibrator *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->method = m;
    c->k = k;
    c->inputs_are_probs = inputs_are_probs;
    c->bins = bins > 0 ? bins : CD_ECE_DEFAULT_BINS;
    c->nll_before = c->nll_after = NAN;
    size_t np = cd_calib_param_count(m, k);
    if (np) {
        c->params = calloc(np, sizeof(double));
        if (!c->params) {
            free(c);
            return NULL;
        }
    }
    return c;
}

static cd_status check_fit_args(const double *scores, const int *labels, size_t n, int k,
                                const cd_fit_options *opts, cd_error *err)
{
    if (!opts || opts->method == CD_CALIB_NONE)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "calibration fit: no method given");
    if (opts->method == CD_CALIB_PLATT && k != 2)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "calibration fit: Platt scaling needs 2 classes, got %d", k);
    if (opts->method == CD_CALIB_MATRIX && k > 1000)
        return cd_fail(err, CD_ERR_LIMIT, "calibration fit: matrix scaling with %d classes", k);
    return cd_calib_check_inputs(scores, labels, n, k, err);
}

cd_status cd_calibrator_fit(const double *scores, const int *labels, size_t n, int k,
                            const cd_fit_options *opts, cd_calibrator **out, cd_error *err)
{
    cd_calib_gsl_quiet();
    cd_status st = check_fit_args(scores, labels, n, k, opts, err);
    if (st)
        return st;
    cd_calibrator *c = cd_calibrator_new(opts->method, k, opts->inputs_are_probs, opts->bins);
    if (!c)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "calibration fit: calibrator");
    c->l2 = opts->l2 >= 0 ? opts->l2 : 1e-4;
    if (opts->inputs_are_probs && is_parametric(opts->method))
        snprintf(c->warning, sizeof c->warning,
                 "%s scaling fitted on log-probabilities: logits were unavailable, so the "
                 "result may differ from scaling the model's true logits",
                 cd_calib_method_name(opts->method));
    double *in = prepare_inputs(c, scores, n, is_parametric(opts->method));
    if (!in) {
        cd_calibrator_free(c);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "calibration fit: inputs");
    }
    if (is_parametric(opts->method))
        st = fit_parametric(c, in, labels, n, c->l2, err);
    else if (opts->method == CD_CALIB_HISTOGRAM)
        st = fit_histogram(c, in, labels, n, err);
    else
        st = fit_isotonic(c, in, labels, n, err);
    free(in);
    if (st) {
        cd_calibrator_free(c);
        return st;
    }
    *out = c;
    return CD_OK;
}

/* Renormalises a row; falls back to the uncalibrated row when every class
 * was mapped to 0 (no information to rescale). */
static void renormalise(double *row, const double *orig, int k)
{
    double s = 0;
    for (int j = 0; j < k; j++)
        s += row[j];
    if (s > 0) {
        for (int j = 0; j < k; j++)
            row[j] /= s;
    } else {
        memcpy(row, orig, sizeof(double) * (size_t)k);
    }
}

static void apply_row(const cd_calibrator *c, const double *in, double *out)
{
    int k = c->k;
    if (is_parametric(c->method)) {
        /* Temperature is stored as T but scale_row takes log T. */
        double log_t = c->method == CD_CALIB_TEMPERATURE ? log(c->params[0]) : 0.0;
        const double *theta = c->method == CD_CALIB_TEMPERATURE ? &log_t : c->params;
        scale_row(c->method, theta, in, k, out);
        cd_softmax_rows(out, 1, k, out);
        return;
    }
    for (int j = 0; j < k; j++) {
        if (c->method == CD_CALIB_HISTOGRAM)
            out[j] = c->hist[(size_t)j * c->bins + cd_bin_index(in[j], c->bins)];
        else
            out[j] = interp(c->iso_x[j], c->iso_y[j], c->iso_len[j], in[j]);
    }
    renormalise(out, in, k);
}

cd_status cd_calibrator_apply(const cd_calibrator *c, const double *scores, size_t n,
                              double *out, cd_error *err)
{
    if (!c || !scores || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "calibration apply: NULL argument");
    double *in = prepare_inputs(c, scores, n, is_parametric(c->method));
    if (!in)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "calibration apply: %zu rows", n);
    for (size_t i = 0; i < n; i++)
        apply_row(c, in + i * (size_t)c->k, out + i * (size_t)c->k);
    free(in);
    return CD_OK;
}

int cd_calibrator_inputs_are_probs(const cd_calibrator *c)
{
    return c ? c->inputs_are_probs : 0;
}
