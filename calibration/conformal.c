/* Split conformal prediction: LAC, APS and RAPS sets for classification
 * (marginal or class-conditional), absolute / normalised / CQR intervals for
 * regression. q̂ is the exact k-th order statistic, k = ceil((n+1)(1-alpha)). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_rng.h>

#include "calibration/calib_internal.h"
#include "core/internal.h"

size_t cd_conformal_rank(size_t n, double alpha)
{
    /* (n+1)(1-alpha) is usually meant as an exact decimal product (n = 99,
     * alpha = 0.1 -> 90); snapping values within 1e-9 of an integer keeps
     * binary rounding from bumping k by one. */
    double x = ((double)n + 1.0) * (1.0 - alpha);
    double r = nearbyint(x);
    if (fabs(x - r) <= 1e-9 * (x > 1 ? x : 1))
        x = r;
    double k = ceil(x);
    return k < 1 ? 1 : (size_t)k;
}

static void swap_d(double *a, double *b)
{
    double t = *a;
    *a = *b;
    *b = t;
}

/* k-th smallest (0-based kth) of v[0..n-1], reordering v. Quickselect with a
 * median-of-three pivot and a three-way partition, so heavy ties (common for
 * LAC scores of confident models) stay linear. */
static double select_kth(double *v, size_t n, size_t kth)
{
    size_t lo = 0, hi = n; /* search in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        double a = v[lo], b = v[mid], c = v[hi - 1];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (v[i] < pivot)
                swap_d(&v[lt++], &v[i++]);
            else if (v[i] > pivot)
                swap_d(&v[i], &v[--gt]);
            else
                i++;
        }
        if (kth < lt)
            hi = lt;
        else if (kth >= gt)
            lo = gt;
        else
            return pivot;
    }
    return v[lo];
}

cd_status cd_conformal_quantile(const double *scores, size_t n, double alpha, double *qhat,
                                cd_error *err)
{
    if (!(alpha > 0 && alpha < 1))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "conformal: alpha %g not in (0, 1)", alpha);
    size_t k = cd_conformal_rank(n, alpha);
    if (k > n || n == 0) { /* k >= 1 implies n == 0 lands here; said so for gcc -O3 */
        *qhat = INFINITY;
        return CD_OK;
    }
    double *buf = malloc(n * sizeof(double));
    if (!buf)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "conformal: %zu scores", n);
    for (size_t i = 0; i < n; i++) {
        if (isnan(scores[i])) {
            free(buf);
            return cd_fail(err, CD_ERR_NUMERIC, "conformal: score %zu is NaN", i);
        }
        buf[i] = scores[i];
    }
    *qhat = select_kth(buf, n, k - 1);
    free(buf);
    return CD_OK;
}

const char *cd_conformal_score_name(cd_conformal_score s)
{
    switch (s) {
    case CD_CONFORMAL_LAC: return "lac";
    case CD_CONFORMAL_APS: return "aps";
    case CD_CONFORMAL_RAPS: return "raps";
    }
    return "unknown";
}

/* Rank o(y) (1-based, descending probability, ties by lower index first) and
 * the mass of the labels ranked before y. O(k). */
static void rank_of(const double *row, int k, int y, int *rank, double *before)
{
    int r = 1;
    double mass = 0.0;
    for (int j = 0; j < k; j++)
        if (row[j] > row[y] || (row[j] == row[y] && j < y)) {
            r++;
            mass += row[j];
        }
    *rank = r;
    *before = mass;
}

double cd_conformal_class_score(const double *row, int k, int y,
                                const cd_conformal_options *opts, double u)
{
    if (opts->score == CD_CONFORMAL_LAC)
        return 1.0 - row[y];
    int rank;
    double before;
    rank_of(row, k, y, &rank, &before);
    double s = before + u * row[y];
    if (opts->score == CD_CONFORMAL_RAPS && rank > opts->k_reg)
        s += opts->lambda * (double)(rank - opts->k_reg);
    return s;
}

static double draw_u(const cd_conformal_options *o, gsl_rng *rng)
{
    if (o->score == CD_CONFORMAL_LAC || o->deterministic)
        return 1.0;
    return gsl_rng_uniform(rng);
}

void cd_conformal_clear(cd_conformal_classifier *c)
{
    if (!c)
        return;
    free(c->class_qhat);
    c->class_qhat = NULL;
}

static cd_status mondrian_thresholds(const double *scores, const int *labels, size_t n,
                                     cd_conformal_classifier *c, double *buf, cd_error *err)
{
    c->class_qhat = malloc((size_t)c->k * sizeof(double));
    if (!c->class_qhat)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "conformal: class thresholds");
    for (int y = 0; y < c->k; y++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (labels[i] == y)
                buf[m++] = scores[i];
        cd_status st = cd_conformal_quantile(buf, m, c->opts.alpha, &c->class_qhat[y], err);
        if (st)
            return st;
    }
    return CD_OK;
}

/* Validates arguments and fills scores[0..n-1] (U drawn from a generator
 * seeded with opts->seed, one per row in order). */
cd_status cd_conformal_scores(const double *probs, const int *labels, size_t n, int k,
                              const cd_conformal_options *opts, double *scores, cd_error *err)
{
    cd_calib_gsl_quiet();
    cd_status st = cd_calib_check_inputs(probs, labels, n, k, err);
    if (st)
        return st;
    if (!opts || !scores || !(opts->alpha > 0 && opts->alpha < 1))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "conformal: alpha must be in (0, 1)");
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!rng)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "conformal: random generator");
    gsl_rng_set(rng, (unsigned long)opts->seed);
    for (size_t i = 0; i < n; i++)
        scores[i] = cd_conformal_class_score(probs + i * (size_t)k, k, labels[i], opts,
                                             draw_u(opts, rng));
    gsl_rng_free(rng);
    return CD_OK;
}

cd_status cd_conformal_fit(const double *probs, const int *labels, size_t n, int k,
                           const cd_conformal_options *opts, cd_conformal_classifier *out,
                           cd_error *err)
{
    cd_calib_gsl_quiet();
    if (!out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "conformal: NULL output");
    memset(out, 0, sizeof *out);
    double *scores = malloc((n ? 2 * n : 1) * sizeof(double));
    if (!scores)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "conformal: %zu scores", n);
    cd_status st = cd_conformal_scores(probs, labels, n, k, opts, scores, err);
    if (st) {
        free(scores);
        return st;
    }
    out->opts = *opts;
    out->k = k;
    out->n_cal = n;
    st = cd_conformal_quantile(scores, n, opts->alpha, &out->qhat, err);
    if (!st && opts->mondrian)
        st = mondrian_thresholds(scores, labels, n, out, scores + n, err);
    free(scores);
    if (st)
        cd_conformal_clear(out);
    return st;
}

static double threshold_for(const cd_conformal_classifier *c, int y)
{
    return c->class_qhat ? c->class_qhat[y] : c->qhat;
}

/* Non-randomized APS/RAPS: labels in descending order up to and including
 * the first whose cumulative score reaches q̂ — never empty. */
static int greedy_set(const cd_conformal_classifier *c, const double *row,
                      unsigned char *in_set)
{
    int k = c->k, size = 0;
    /* Walk labels by rank without sorting: rank_of gives each label's place. */
    int *by_rank = malloc((size_t)k * sizeof(int));
    double *score = malloc((size_t)k * sizeof(double));
    if (!by_rank || !score) {
        free(by_rank);
        free(score);
        return -1;
    }
    for (int y = 0; y < k; y++) {
        int r;
        double before;
        rank_of(row, k, y, &r, &before);
        by_rank[r - 1] = y;
        score[y] = cd_conformal_class_score(row, k, y, &c->opts, 1.0);
    }
    for (int r = 0; r < k; r++) {
        int y = by_rank[r];
        in_set[y] = 1;
        size++;
        if (score[y] >= threshold_for(c, y))
            break;
    }
    free(by_rank);
    free(score);
    return size;
}

cd_status cd_conformal_predict(const cd_conformal_classifier *c, const double *probs, size_t n,
                               uint64_t rng_seed, unsigned char *in_set, int *set_size,
                               cd_error *err)
{
    cd_calib_gsl_quiet();
    if (!c || !probs || !in_set)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "conformal predict: NULL argument");
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!rng)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "conformal predict: rng");
    gsl_rng_set(rng, (unsigned long)rng_seed);
    int k = c->k;
    int greedy = c->opts.score != CD_CONFORMAL_LAC && c->opts.deterministic && !c->class_qhat;
    for (size_t i = 0; i < n; i++) {
        const double *row = probs + i * (size_t)k;
        unsigned char *set = in_set + i * (size_t)k;
        memset(set, 0, (size_t)k);
        int size = 0;
        if (greedy) {
            size = greedy_set(c, row, set);
            if (size < 0) {
                gsl_rng_free(rng);
                return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "conformal predict: row %zu", i);
            }
        } else {
            double u = draw_u(&c->opts, rng); /* one U per test point, shared by its labels */
            for (int y = 0; y < k; y++)
                if (cd_conformal_class_score(row, k, y, &c->opts, u) <= threshold_for(c, y)) {
                    set[y] = 1;
                    size++;
                }
        }
        if (set_size)
            set_size[i] = size;
    }
    gsl_rng_free(rng);
    return CD_OK;
}

/* ------------------------------------------------------------- regression */

cd_status cd_regression_scores(cd_regression_score s, const double *y, const double *a,
                               const double *b, size_t n, double *scores, cd_error *err)
{
    if (!y || !a || !scores || (s != CD_REGRESSION_ABSOLUTE && !b))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "conformal regression: NULL argument");
    for (size_t i = 0; i < n; i++) {
        switch (s) {
        case CD_REGRESSION_ABSOLUTE:
            scores[i] = fabs(y[i] - a[i]);
            break;
        case CD_REGRESSION_NORMALIZED:
            if (!(b[i] > 0))
                return cd_fail(err, CD_ERR_NUMERIC,
                               "conformal regression: sigma of point %zu is %g (must be > 0)", i,
                               b[i]);
            scores[i] = fabs(y[i] - a[i]) / b[i];
            break;
        case CD_REGRESSION_CQR:
            scores[i] = fmax(a[i] - y[i], y[i] - b[i]);
            break;
        }
        if (isnan(scores[i]))
            return cd_fail(err, CD_ERR_NUMERIC, "conformal regression: NaN score at point %zu", i);
    }
    return CD_OK;
}

void cd_regression_interval(cd_regression_score s, double a, double b, double qhat, double *lo,
                            double *hi)
{
    switch (s) {
    case CD_REGRESSION_ABSOLUTE:
        *lo = a - qhat;
        *hi = a + qhat;
        break;
    case CD_REGRESSION_NORMALIZED:
        *lo = a - qhat * b;
        *hi = a + qhat * b;
        break;
    case CD_REGRESSION_CQR:
        *lo = a - qhat;
        *hi = b + qhat;
        break;
    }
}
