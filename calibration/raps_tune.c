/* RAPS defaults tuned on data, following Angelopoulos et al. (2021),
 * "Uncertainty Sets for Image Classifiers using Conformal Prediction":
 * k_reg from a quantile of the true-label ranks, lambda by a small grid that
 * minimises the mean set size. The caller must keep the tuning rows out of
 * the final q̂ fit so the coverage guarantee still holds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calibration/calib_internal.h"
#include "core/internal.h"

static const double lambda_grid[] = {0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.5};
#define LAMBDA_GRID_SIZE (sizeof lambda_grid / sizeof lambda_grid[0])

/* 1-based rank of label y in the row (descending probability, ties: lower
 * index first), as the conformal scores use it. */
static int true_rank(const double *row, int k, int y)
{
    int r = 1;
    for (int j = 0; j < k; j++)
        if (row[j] > row[y] || (row[j] == row[y] && j < y))
            r++;
    return r;
}

/* k_reg: the smallest number of top labels that holds the true label for
 * the ⌈(n+1)(1−α)⌉-th smallest rank, i.e. what plain top-k would need for
 * 1−α coverage; RAPS leaves those ranks unpenalised. */
static cd_status tune_k_reg(const double *probs, const int *labels, size_t n, int k,
                            double alpha, int *k_reg, cd_error *err)
{
    double *ranks = malloc(n * sizeof(double));
    if (!ranks)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "RAPS tuning: %zu ranks", n);
    for (size_t i = 0; i < n; i++)
        ranks[i] = true_rank(probs + i * (size_t)k, k, labels[i]);
    double q;
    cd_status st = cd_conformal_quantile(ranks, n, alpha, &q, err);
    free(ranks);
    if (st)
        return st;
    *k_reg = isfinite(q) ? (int)q : k; /* too few rows: no free ranks beyond all labels */
    return CD_OK;
}

/* Mean set size on rows [half, n) with q̂ fitted on rows [0, half). */
static cd_status mean_set_size(const double *probs, const int *labels, size_t n, int k,
                               const cd_conformal_options *o, double *size, cd_error *err)
{
    size_t half = n / 2;
    cd_conformal_classifier c;
    cd_status st = cd_conformal_fit(probs, labels, half, k, o, &c, err);
    if (st)
        return st;
    size_t m = n - half;
    unsigned char *in = malloc(m * (size_t)k);
    int *sz = malloc(m * sizeof(int));
    if (!in || !sz)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "RAPS tuning: sets for %zu rows", m);
    else
        st = cd_conformal_predict(&c, probs + half * (size_t)k, m, o->seed + 1, in, sz, err);
    if (!st) {
        double total = 0;
        for (size_t i = 0; i < m; i++)
            total += sz[i];
        *size = total / (double)m;
    }
    free(in);
    free(sz);
    cd_conformal_clear(&c);
    return st;
}

cd_status cd_conformal_tune_raps(const double *probs, const int *labels, size_t n, int k,
                                 double alpha, uint64_t seed, double *lambda, int *k_reg,
                                 cd_error *err)
{
    cd_calib_gsl_quiet();
    if (!lambda || !k_reg)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "RAPS tuning: NULL output");
    if (n < 4)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "RAPS tuning needs at least 4 rows, got %zu", n);
    cd_status st = cd_calib_check_inputs(probs, labels, n, k, err);
    if (!st)
        st = tune_k_reg(probs, labels, n, k, alpha, k_reg, err);
    if (st)
        return st;
    cd_conformal_options o = {.score = CD_CONFORMAL_RAPS, .alpha = alpha, .k_reg = *k_reg,
                              .seed = seed};
    double best = INFINITY;
    *lambda = lambda_grid[0];
    for (size_t g = 0; g < LAMBDA_GRID_SIZE; g++) {
        o.lambda = lambda_grid[g];
        double size;
        st = mean_set_size(probs, labels, n, k, &o, &size, err);
        if (st)
            return st;
        if (size < best) { /* strict: ties keep the smaller lambda */
            best = size;
            *lambda = lambda_grid[g];
        }
    }
    return CD_OK;
}
