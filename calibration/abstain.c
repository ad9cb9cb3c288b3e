/* Risk-controlled abstention: pick the loosest uncertainty threshold whose
 * selective error has an exact Clopper-Pearson upper bound <= the target. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calibration/calib_internal.h"
#include "core/internal.h"

/* Number of candidate thresholds (coverage levels 1/G, 2/G, ..., 1). */
#define CD_ABSTAIN_GRID 20

/* log P(Binomial(m, p) <= e), summed in log space so large m stays exact. */
static double log_binomial_cdf(size_t e, size_t m, double p)
{
    double lp = log(p), lq = log1p(-p), mx = -INFINITY, sum = 0.0;
    double base = lgamma((double)m + 1.0);
    for (size_t i = 0; i <= e; i++) {
        double t = base - lgamma((double)i + 1.0) - lgamma((double)(m - i) + 1.0) +
                   (double)i * lp + (double)(m - i) * lq;
        if (t > mx) {
            sum = sum * exp(mx - t) + 1.0;
            mx = t;
        } else {
            sum += exp(t - mx);
        }
    }
    return mx + log(sum);
}

/* The upper bound p solves P(Binomial(m, p) <= e) = delta, i.e. the
 * (1 - delta) quantile of Beta(e + 1, m - e). gsl_cdf_beta_Pinv fails to
 * converge (and aborts through GSL's error handler) for some large m at
 * small delta, so the root is found by bisection on the binomial CDF, which
 * is monotone decreasing in p. */
double cd_clopper_pearson_upper(size_t e, size_t m, double delta)
{
    if (m == 0 || e >= m)
        return 1.0;
    if (e == 0)
        return 1.0 - pow(delta, 1.0 / (double)m); /* closed form */
    double lo = (double)e / (double)m, hi = 1.0, target = log(delta);
    for (int it = 0; it < 200 && hi - lo > 1e-15; it++) {
        double mid = 0.5 * (lo + hi);
        if (log_binomial_cdf(e, m, mid) > target)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* Certainty: larger = more certain, whatever the kind. */
static double certainty(cd_uncertainty_kind kind, double u)
{
    return kind == CD_UNC_CONFIDENCE ? u : -u;
}

int cd_abstain_accept(const cd_abstention *a, double u)
{
    return a->feasible && certainty(a->kind, u) >= certainty(a->kind, a->threshold);
}

typedef struct cert_item {
    double c;
    unsigned char correct;
} cert_item;

static int cmp_desc(const void *x, const void *y)
{
    double a = ((const cert_item *)x)->c, b = ((const cert_item *)y)->c;
    return (a < b) - (a > b);
}

cd_status cd_abstention_fit(const double *u, const unsigned char *correct, size_t n,
                            cd_uncertainty_kind kind, double target_risk, double delta,
                            cd_abstention *out, cd_error *err)
{
    cd_calib_gsl_quiet();
    if (!u || !correct || !out || n == 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "abstention: no calibration data");
    if (!(target_risk > 0 && target_risk < 1) || !(delta > 0 && delta < 1))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "abstention: target %g and delta %g must lie in (0, 1)", target_risk,
                       delta);
    cert_item *items = malloc(n * sizeof *items);
    if (!items)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "abstention: %zu points", n);
    for (size_t i = 0; i < n; i++) {
        if (isnan(u[i])) {
            free(items);
            return cd_fail(err, CD_ERR_NUMERIC, "abstention: uncertainty of point %zu is NaN", i);
        }
        items[i] = (cert_item){certainty(kind, u[i]), correct[i]};
    }
    qsort(items, n, sizeof *items, cmp_desc);
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->target_risk = target_risk;
    out->delta = delta;
    out->n_cal = n;
    out->risk_upper = 1.0;
    out->threshold = certainty(kind, INFINITY); /* accept nothing until a threshold passes */
    /* Candidates: the thresholds at coverage g/G (g = 1..G), each tie group
     * kept whole. A union bound over the G candidates (each tested at
     * delta/G, as in Geifman & El-Yaniv's selection with guaranteed risk)
     * keeps the chance that the chosen one violates the target <= delta. */
    size_t grid = n < CD_ABSTAIN_GRID ? n : CD_ABSTAIN_GRID;
    double level = delta / (double)grid;
    size_t end = 0, errors = 0;
    for (size_t g = 1; g <= grid; g++) {
        size_t want = (g * n + grid - 1) / grid;
        if (want <= end)
            continue;
        while (end < want || (end < n && items[end].c == items[end - 1].c))
            errors += !items[end++].correct;
        double bound = cd_clopper_pearson_upper(errors, end, level);
        if (bound > target_risk)
            continue;
        out->feasible = 1;
        out->threshold = certainty(kind, items[end - 1].c);
        out->accepted = end;
        out->errors = errors;
        out->risk_upper = bound;
    }
    out->coverage = (double)out->accepted / (double)n;
    free(items);
    return CD_OK;
}
