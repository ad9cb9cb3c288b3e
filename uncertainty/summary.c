/* Per-input summaries of sampled predictions (GUIDE section 4). All sums are
 * accumulated in float64. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "candor/uncertainty.h"

/* Entropy in nats of K probabilities; 0 ln 0 = 0. */
static double entropy_f32(const float *p, int k, size_t stride)
{
    double h = 0.0;
    for (int i = 0; i < k; i++) {
        double v = p[(size_t)i * stride];
        if (v > 0.0)
            h -= v * log(v);
    }
    return h;
}

static double entropy_f64(const double *p, int k)
{
    double h = 0.0;
    for (int i = 0; i < k; i++)
        if (p[i] > 0.0)
            h -= p[i] * log(p[i]);
    return h;
}

static int argmax_f32(const float *p, int k, size_t stride)
{
    int best = 0;
    for (int i = 1; i < k; i++)
        if (p[(size_t)i * stride] > p[(size_t)best * stride])
            best = i;
    return best;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentile q in [0, 1] of sorted v[0..n-1]: position h = (n-1) q, linear
 * interpolation between the order statistics around it (NumPy "linear"). */
static double percentile_sorted(const double *v, int n, double q)
{
    double h = (n - 1) * q;
    int lo = (int)floor(h);
    if (lo >= n - 1)
        return v[n - 1];
    return v[lo] + (h - lo) * (v[lo + 1] - v[lo]);
}

void cd_class_summary_free(cd_class_summary *s)
{
    if (!s)
        return;
    free(s->mean);
    free(s->std);
    free(s->lower);
    free(s->upper);
    memset(s, 0, sizeof *s);
}

static cd_status check_level(double level, cd_error *err)
{
    if (!(level > 0.0 && level < 1.0))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "interval level %g is outside (0, 1)", level);
    return CD_OK;
}

/* Per-class mean, std and percentiles. */
static cd_status class_moments(const float *probs, int s, int k, cd_class_summary *out,
                               cd_error *err)
{
    double *col = malloc((size_t)s * sizeof *col);
    if (!col)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    double qlo = (1.0 - out->level) / 2.0, qhi = (1.0 + out->level) / 2.0;
    for (int c = 0; c < k; c++) {
        double sum = 0.0;
        for (int i = 0; i < s; i++) {
            col[i] = probs[(size_t)i * k + c];
            sum += col[i];
        }
        double mean = sum / s, ss = 0.0;
        for (int i = 0; i < s; i++)
            ss += (col[i] - mean) * (col[i] - mean);
        out->mean[c] = mean;
        out->std[c] = sqrt(ss / s);
        qsort(col, (size_t)s, sizeof *col, cmp_double);
        out->lower[c] = percentile_sorted(col, s, qlo);
        out->upper[c] = percentile_sorted(col, s, qhi);
    }
    free(col);
    return CD_OK;
}

/* Entropies, agreement and variation ratio. */
static cd_status class_disagreement(const float *probs, int s, int k, cd_class_summary *out,
                                    cd_error *err)
{
    int *votes = calloc((size_t)k, sizeof *votes);
    if (!votes)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    int top = 0;
    for (int c = 1; c < k; c++)
        if (out->mean[c] > out->mean[top])
            top = c;
    double expected = 0.0;
    for (int i = 0; i < s; i++) {
        const float *p = probs + (size_t)i * k;
        expected += entropy_f32(p, k, 1);
        votes[argmax_f32(p, k, 1)]++;
    }
    int modal = 0;
    for (int c = 0; c < k; c++)
        if (votes[c] > modal)
            modal = votes[c];
    out->top_class = top;
    out->predictive_entropy = entropy_f64(out->mean, k);
    out->expected_entropy = expected / s;
    double mi = out->predictive_entropy - out->expected_entropy;
    out->mutual_information = mi > 0.0 ? mi : 0.0;
    out->variation_ratio = 1.0 - (double)modal / s;
    out->agreement = (double)votes[top] / s;
    free(votes);
    return CD_OK;
}

cd_status cd_summarize_classification(const float *probs, int n_samples, int n_classes,
                                      double level, cd_class_summary *out, cd_error *err)
{
    if (!out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_summarize_classification: out is NULL");
    memset(out, 0, sizeof *out);
    if (!probs || n_samples < 1 || n_classes < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "cd_summarize_classification: need at least one sample and one class "
                       "(got %d samples, %d classes)", n_samples, n_classes);
    cd_status st = check_level(level, err);
    if (st != CD_OK)
        return st;
    size_t k = (size_t)n_classes;
    out->n_samples = n_samples;
    out->n_classes = n_classes;
    out->level = level;
    out->mean = calloc(k, sizeof(double));
    out->std = calloc(k, sizeof(double));
    out->lower = calloc(k, sizeof(double));
    out->upper = calloc(k, sizeof(double));
    if (!out->mean || !out->std || !out->lower || !out->upper)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK)
        st = class_moments(probs, n_samples, n_classes, out, err);
    if (st == CD_OK)
        st = class_disagreement(probs, n_samples, n_classes, out, err);
    if (st != CD_OK)
        cd_class_summary_free(out);
    return st;
}

/* ---------------------------------------------------------- regression */

/* Inverse of the standard normal CDF Φ(x) = erfc(-x/√2)/2 by bisection then
 * Newton steps: slow-ish but exact to double precision, and called rarely. */
double cd_normal_quantile(double q)
{
    if (!(q > 0.0 && q < 1.0))
        return q == 0.0 ? -INFINITY : q == 1.0 ? INFINITY : NAN;
    double lo = -40.0, hi = 40.0;
    for (int i = 0; i < 200 && hi - lo > 1e-15; i++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * erfc(-mid / sqrt(2.0)) < q)
            lo = mid;
        else
            hi = mid;
    }
    double x = 0.5 * (lo + hi);
    for (int i = 0; i < 3; i++) {
        double pdf = exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
        if (pdf <= 0.0)
            break;
        x -= (0.5 * erfc(-x / sqrt(2.0)) - q) / pdf;
    }
    return x;
}

void cd_regression_summary_free(cd_regression_summary *s)
{
    if (!s)
        return;
    free(s->mean);
    free(s->std);
    free(s->lower);
    free(s->upper);
    free(s->aleatoric_var);
    free(s->epistemic_var);
    memset(s, 0, sizeof *s);
}

cd_status cd_summarize_regression(const float *means, const float *log_vars, int n_samples,
                                  int n_outputs, double level, cd_regression_summary *out,
                                  cd_error *err)
{
    if (!out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_summarize_regression: out is NULL");
    memset(out, 0, sizeof *out);
    if (!means || n_samples < 1 || n_outputs < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "cd_summarize_regression: need at least one sample and one output");
    cd_status st = check_level(level, err);
    if (st != CD_OK)
        return st;
    size_t d = (size_t)n_outputs;
    double **arrays[] = {&out->mean, &out->std, &out->lower, &out->upper, &out->aleatoric_var,
                         &out->epistemic_var};
    for (size_t a = 0; a < CD_COUNT_OF(arrays); a++)
        if (!(*arrays[a] = calloc(d, sizeof(double)))) {
            cd_regression_summary_free(out);
            return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
        }
    out->n_samples = n_samples;
    out->n_outputs = n_outputs;
    out->level = level;
    double z = cd_normal_quantile((1.0 + level) / 2.0);
    for (size_t j = 0; j < d; j++) {
        double mu = 0.0, second = 0.0, alea = 0.0;
        for (int i = 0; i < n_samples; i++) {
            double m = means[(size_t)i * d + j];
            double v = log_vars ? exp((double)log_vars[(size_t)i * d + j]) : 0.0;
            mu += m;
            second += v + m * m;
            alea += v;
        }
        mu /= n_samples;
        alea /= n_samples;
        double total = second / n_samples - mu * mu;
        if (total < alea) /* rounding: the epistemic part is never negative */
            total = alea;
        out->mean[j] = mu;
        out->std[j] = sqrt(total);
        out->aleatoric_var[j] = alea;
        out->epistemic_var[j] = total - alea;
        out->lower[j] = mu - z * out->std[j];
        out->upper[j] = mu + z * out->std[j];
    }
    return CD_OK;
}

/* ---------------------------------------------------------------- dense */

void cd_dense_maps_free(cd_dense_maps *m)
{
    if (!m)
        return;
    cd_tensor_free(m->entropy);
    cd_tensor_free(m->expected_entropy);
    cd_tensor_free(m->mutual_information);
    cd_tensor_free(m->winning_std);
    cd_tensor_free(m->winning_class);
    memset(m, 0, sizeof *m);
}

/* One pixel: p points at sample 0, class 0; classes hw apart, samples chw. */
static void dense_pixel(const float *p, int s, int c, size_t hw, double *mean, float *maps[4],
                        int64_t *win, size_t at)
{
    size_t chw = (size_t)c * hw;
    double expected = 0.0;
    for (int k = 0; k < c; k++)
        mean[k] = 0.0;
    for (int i = 0; i < s; i++) {
        const float *ps = p + (size_t)i * chw;
        for (int k = 0; k < c; k++)
            mean[k] += ps[(size_t)k * hw];
        expected += entropy_f32(ps, c, hw);
    }
    int top = 0;
    for (int k = 0; k < c; k++) {
        mean[k] /= s;
        if (mean[k] > mean[top])
            top = k;
    }
    double ss = 0.0;
    for (int i = 0; i < s; i++) {
        double dv = p[(size_t)i * chw + (size_t)top * hw] - mean[top];
        ss += dv * dv;
    }
    double h = entropy_f64(mean, c), eh = expected / s, mi = h - eh;
    maps[0][at] = (float)h;
    maps[1][at] = (float)eh;
    maps[2][at] = (float)(mi > 0.0 ? mi : 0.0);
    maps[3][at] = (float)sqrt(ss / s);
    win[at] = top;
}

cd_status cd_summarize_dense(const cd_tensor *samples, cd_dense_maps *out, cd_error *err)
{
    if (!out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_summarize_dense: out is NULL");
    memset(out, 0, sizeof *out);
    if (!samples || samples->ndim != 4 || samples->dtype != CD_FLOAT32 || samples->dims[0] < 1 ||
        samples->dims[1] < 1)
        return cd_fail(err, CD_ERR_SHAPE,
                       "cd_summarize_dense: samples must be float32 (S, C, H, W) with S, C >= 1");
    int s = (int)samples->dims[0], c = (int)samples->dims[1];
    int64_t hw_dims[2] = {samples->dims[2], samples->dims[3]};
    size_t hw = (size_t)hw_dims[0] * (size_t)hw_dims[1];
    cd_tensor **f32[4] = {&out->entropy, &out->expected_entropy, &out->mutual_information,
                          &out->winning_std};
    cd_status st = CD_OK;
    for (int i = 0; i < 4 && st == CD_OK; i++)
        st = cd_tensor_create(CD_FLOAT32, 2, hw_dims, f32[i], err);
    if (st == CD_OK)
        st = cd_tensor_create(CD_INT64, 2, hw_dims, &out->winning_class, err);
    double *mean = st == CD_OK ? malloc((size_t)c * sizeof *mean) : NULL;
    if (st == CD_OK && !mean)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st != CD_OK) {
        cd_dense_maps_free(out);
        return st;
    }
    float *maps[4];
    for (int i = 0; i < 4; i++)
        maps[i] = (*f32[i])->data;
    const float *p = samples->data;
    for (size_t at = 0; at < hw; at++)
        dense_pixel(p + at, s, c, hw, mean, maps, out->winning_class->data, at);
    free(mean);
    return CD_OK;
}

/* ---------------------------------------------------------------- softmax */

cd_status cd_softmax_axis(cd_tensor *t, int axis, cd_error *err)
{
    if (!t || t->dtype != CD_FLOAT32 || t->ndim < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_softmax_axis: need a float32 tensor");
    if (axis < 0)
        axis += t->ndim;
    if (axis < 0 || axis >= t->ndim)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_softmax_axis: axis out of range");
    size_t outer = 1, inner = 1, n = (size_t)t->dims[axis];
    for (int d = 0; d < axis; d++)
        outer *= (size_t)t->dims[d];
    for (int d = axis + 1; d < t->ndim; d++)
        inner *= (size_t)t->dims[d];
    float *v = t->data;
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < inner; i++) {
            float *x = v + o * n * inner + i;
            double mx = -INFINITY, sum = 0.0;
            for (size_t k = 0; k < n; k++)
                mx = x[k * inner] > mx ? x[k * inner] : mx;
            for (size_t k = 0; k < n; k++)
                sum += exp((double)x[k * inner] - mx);
            for (size_t k = 0; k < n; k++)
                x[k * inner] = (float)(exp((double)x[k * inner] - mx) / sum);
        }
    return CD_OK;
}
