/* Conformal prediction and abstention: exact rank k = ceil((n+1)(1-alpha))
 * against integer arithmetic, q̂ against a sort, coverage averaged over 200
 * random calibration/test splits, Clopper-Pearson identities and the
 * abstention guarantee in distribution. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_rng.h>
#include <gsl/gsl_sf_log.h>

#include "candor/calibration.h"
#include "testutil.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* alpha = a/1000: k = ceil((n+1)(1000-a)/1000) in exact integers. */
static void test_rank_exact(void **state)
{
    (void)state;
    int alphas[] = {10, 50, 100, 200, 250, 333, 500};
    for (size_t n = 1; n <= 300; n++)
        for (size_t j = 0; j < sizeof alphas / sizeof alphas[0]; j++) {
            size_t num = (n + 1) * (size_t)(1000 - alphas[j]);
            size_t k = (num + 999) / 1000;
            assert_int_equal(cd_conformal_rank(n, alphas[j] / 1000.0), k);
        }
}

/* n = 9, 19, 99 at alpha = 0.1 -> k = 9, 18, 90; alpha = 0.05 -> 10 (> 9, so
 * +inf), 19, 95. Scores are a shuffled 1..n so q̂ = k. */
static void test_quantile_small_n(void **state)
{
    (void)state;
    size_t ns[] = {9, 19, 99};
    size_t k10[] = {9, 18, 90}, k05[] = {10, 19, 95};
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    for (int t = 0; t < 3; t++) {
        size_t n = ns[t];
        double s[99];
        for (size_t i = 0; i < n; i++)
            s[i] = (double)(i + 1);
        gsl_ran_shuffle(r, s, n, sizeof(double));
        double q;
        cd_error err;
        assert_int_equal(cd_conformal_quantile(s, n, 0.1, &q, &err), CD_OK);
        assert_true(q == (double)k10[t]);
        assert_int_equal(cd_conformal_quantile(s, n, 0.05, &q, &err), CD_OK);
        if (k05[t] > n)
            assert_true(isinf(q) && q > 0);
        else
            assert_true(q == (double)k05[t]);
    }
    gsl_rng_free(r);
}

/* Selection equals sorting on large inputs with heavy ties. */
static void test_quantile_vs_sort(void **state)
{
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    size_t n = 100001;
    double *s = malloc(n * sizeof(double)), *sorted = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        s[i] = (double)gsl_rng_uniform_int(r, 50) / 7.0;
    memcpy(sorted, s, n * sizeof(double));
    qsort(sorted, n, sizeof(double), cmp_d);
    double alphas[] = {0.01, 0.1, 0.37, 0.9};
    for (int j = 0; j < 4; j++) {
        double q;
        cd_error err;
        assert_int_equal(cd_conformal_quantile(s, n, alphas[j], &q, &err), CD_OK);
        assert_true(q == sorted[cd_conformal_rank(n, alphas[j]) - 1]);
    }
    free(s);
    free(sorted);
    gsl_rng_free(r);
}

/* Fixture: K = 10 softmax rows, labels drawn from a flattened copy so the
 * model is overconfident (coverage must not rely on calibration). */
static void make_classification(size_t n, int k, gsl_rng *r, double *p, int *y)
{
    double *q = malloc((size_t)k * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double *row = p + i * (size_t)k;
        for (int c = 0; c < k; c++)
            row[c] = 2.5 * gsl_ran_gaussian(r, 1.0);
        for (int c = 0; c < k; c++)
            q[c] = 0.6 * row[c];
        cd_softmax_rows(row, 1, k, row);
        cd_softmax_rows(q, 1, k, q);
        double u = gsl_rng_uniform(r), acc = 0;
        y[i] = k - 1;
        for (int c = 0; c < k; c++)
            if (u < (acc += q[c])) {
                y[i] = c;
                break;
            }
    }
    free(q);
}

static double split_coverage(const double *p, const int *y, size_t total, int k,
                             const cd_conformal_options *o, gsl_rng *r, size_t *perm,
                             double *mean_size)
{
    size_t n_cal = total / 2, n_test = total - n_cal;
    double *cal_p = malloc(n_cal * k * sizeof(double)), *test_p = malloc(n_test * k * sizeof(double));
    int *cal_y = malloc(n_cal * sizeof(int)), *test_y = malloc(n_test * sizeof(int));
    unsigned char *in_set = malloc(n_test * k);
    int *size = malloc(n_test * sizeof(int));
    gsl_ran_shuffle(r, perm, total, sizeof(size_t));
    for (size_t i = 0; i < total; i++) {
        size_t src = perm[i];
        if (i < n_cal) {
            memcpy(cal_p + i * k, p + src * k, k * sizeof(double));
            cal_y[i] = y[src];
        } else {
            memcpy(test_p + (i - n_cal) * k, p + src * k, k * sizeof(double));
            test_y[i - n_cal] = y[src];
        }
    }
    cd_conformal_options oo = *o;
    oo.seed = gsl_rng_get(r);
    cd_conformal_classifier c;
    cd_error err;
    assert_int_equal(cd_conformal_fit(cal_p, cal_y, n_cal, k, &oo, &c, &err), CD_OK);
    assert_int_equal(cd_conformal_predict(&c, test_p, n_test, gsl_rng_get(r), in_set, size, &err),
                     CD_OK);
    double covered = 0, sz = 0;
    for (size_t i = 0; i < n_test; i++) {
        covered += in_set[i * k + test_y[i]];
        sz += size[i];
    }
    *mean_size = sz / n_test;
    cd_conformal_clear(&c);
    free(cal_p);
    free(test_p);
    free(cal_y);
    free(test_y);
    free(in_set);
    free(size);
    return covered / n_test;
}

static void test_classification_coverage(void **state)
{
    (void)state;
    size_t total = 2000;
    int k = 10;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 2024);
    double *p = malloc(total * k * sizeof(double));
    int *y = malloc(total * sizeof(int));
    size_t *perm = malloc(total * sizeof(size_t));
    make_classification(total, k, r, p, y);
    for (size_t i = 0; i < total; i++)
        perm[i] = i;
    cd_conformal_options opts[] = {
        {.score = CD_CONFORMAL_LAC, .alpha = 0.1},
        {.score = CD_CONFORMAL_APS, .alpha = 0.1},
        {.score = CD_CONFORMAL_RAPS, .alpha = 0.1, .lambda = 0.01, .k_reg = 2},
        {.score = CD_CONFORMAL_LAC, .alpha = 0.1, .mondrian = 1},
    };
    for (size_t m = 0; m < sizeof opts / sizeof opts[0]; m++) {
        double cov = 0, size = 0;
        for (int s = 0; s < 200; s++) {
            double sz;
            cov += split_coverage(p, y, total, k, &opts[m], r, perm, &sz);
            size += sz;
        }
        cov /= 200;
        fprintf(stderr, "%s%s: mean coverage %.4f, mean set size %.3f\n",
                cd_conformal_score_name(opts[m].score), opts[m].mondrian ? " (mondrian)" : "",
                cov, size / 200);
        assert_true(cov >= 0.895 && cov <= 0.915);
    }
    /* Non-randomized APS is conservative and never empty. */
    cd_conformal_options det = {.score = CD_CONFORMAL_APS, .alpha = 0.1, .deterministic = 1};
    double cov = 0, sz;
    for (int s = 0; s < 50; s++)
        cov += split_coverage(p, y, total, k, &det, r, perm, &sz);
    assert_true(cov / 50 >= 0.895);
    free(p);
    free(y);
    free(perm);
    gsl_rng_free(r);
}

/* Regression: y = mu + sigma * N(0,1) with heteroscedastic sigma; the CQR
 * quantiles are deliberately too narrow (+-1 sigma). */
static void test_regression_coverage(void **state)
{
    (void)state;
    size_t total = 2000, n_cal = 1000;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 77);
    double *x = malloc(total * 5 * sizeof(double));
    double *y = x + total, *mu = x + 2 * total, *sig = x + 3 * total, *sc = x + 4 * total;
    for (size_t i = 0; i < total; i++) {
        double t = gsl_rng_uniform(r);
        mu[i] = sin(6 * t);
        sig[i] = 0.1 + t;
        y[i] = mu[i] + sig[i] * gsl_ran_gaussian(r, 1.0);
    }
    size_t *perm = malloc(total * sizeof(size_t));
    for (size_t i = 0; i < total; i++)
        perm[i] = i;
    cd_regression_score kinds[] = {CD_REGRESSION_ABSOLUTE, CD_REGRESSION_NORMALIZED,
                                   CD_REGRESSION_CQR};
    const char *names[] = {"absolute", "normalized", "cqr"};
    double *a = malloc(total * sizeof(double)), *b = malloc(total * sizeof(double));
    double *yy = malloc(total * sizeof(double));
    for (int kind = 0; kind < 3; kind++) {
        double cov = 0;
        for (int s = 0; s < 200; s++) {
            gsl_ran_shuffle(r, perm, total, sizeof(size_t));
            for (size_t i = 0; i < total; i++) {
                size_t j = perm[i];
                yy[i] = y[j];
                a[i] = kinds[kind] == CD_REGRESSION_CQR ? mu[j] - sig[j] : mu[j];
                b[i] = kinds[kind] == CD_REGRESSION_CQR ? mu[j] + sig[j] : sig[j];
            }
            cd_error err;
            double q;
            assert_int_equal(cd_regression_scores(kinds[kind], yy, a, b, n_cal, sc, &err), CD_OK);
            assert_int_equal(cd_conformal_quantile(sc, n_cal, 0.1, &q, &err), CD_OK);
            size_t hit = 0;
            for (size_t i = n_cal; i < total; i++) {
                double lo, hi;
                cd_regression_interval(kinds[kind], a[i], b[i], q, &lo, &hi);
                hit += yy[i] >= lo && yy[i] <= hi;
            }
            cov += (double)hit / (double)(total - n_cal);
        }
        cov /= 200;
        fprintf(stderr, "regression %s: mean coverage %.4f\n", names[kind], cov);
        assert_true(cov >= 0.895 && cov <= 0.915);
    }
    free(a);
    free(b);
    free(yy);
    free(x);
    free(perm);
    gsl_rng_free(r);
}

/* Clopper-Pearson: e = 0 has the closed form 1 - delta^(1/m); in general the
 * bound p solves P(Binomial(m, p) <= e) = delta. */
static void test_clopper_pearson(void **state)
{
    (void)state;
    for (size_t m = 1; m < 500; m += 37)
        assert_true(fabs(cd_clopper_pearson_upper(0, m, 0.05) - (1 - pow(0.05, 1.0 / m))) < 1e-10);
    size_t cases[][2] = {{3, 50}, {10, 200}, {97, 1000}};
    for (int i = 0; i < 3; i++) {
        double p = cd_clopper_pearson_upper(cases[i][0], cases[i][1], 0.1);
        assert_true(fabs(gsl_cdf_binomial_P((unsigned)cases[i][0], p, (unsigned)cases[i][1]) - 0.1) <
                    1e-8);
    }
    assert_true(cd_clopper_pearson_upper(5, 5, 0.1) == 1.0);
}

/* Over 300 independent calibration/test draws, the selective error on a
 * large test set exceeds the target in at most ~delta of them, the chosen
 * threshold passes its own bound, and entropy thresholds work the same way. */
static void test_abstention_guarantee(void **state)
{
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 99);
    size_t n = 2000, n_test = 20000;
    double *conf = malloc((n + n_test) * sizeof(double));
    unsigned char *ok = malloc(n + n_test);
    int violations = 0, infeasible = 0, trials = 300;
    double target = 0.1, delta = 0.1, cov_sum = 0;
    for (int t = 0; t < trials; t++) {
        for (size_t i = 0; i < n + n_test; i++) {
            conf[i] = gsl_rng_uniform(r);
            /* P(wrong) = 0.4 (1 - conf)^2 falls with confidence */
            ok[i] = gsl_rng_uniform(r) >= 0.4 * (1 - conf[i]) * (1 - conf[i]);
        }
        cd_abstention a;
        cd_error err;
        assert_int_equal(cd_abstention_fit(conf, ok, n, CD_UNC_CONFIDENCE, target, delta, &a, &err),
                         CD_OK);
        if (!a.feasible) {
            infeasible++;
            continue;
        }
        assert_true(a.risk_upper <= target);
        assert_true(cd_clopper_pearson_upper(a.errors, a.accepted, delta) <= target);
        size_t acc = 0, wrong = 0;
        for (size_t i = n; i < n + n_test; i++)
            if (cd_abstain_accept(&a, conf[i])) {
                acc++;
                wrong += !ok[i];
            }
        cov_sum += a.coverage;
        if (acc && (double)wrong / acc > target)
            violations++;
    }
    fprintf(stderr, "abstention: %d/%d violations, %d infeasible, mean coverage %.3f\n",
            violations, trials, infeasible, cov_sum / trials);
    assert_true(violations <= (int)(delta * trials) + 10);
    assert_true(infeasible <= trials / 20);
    assert_true(cov_sum / trials > 0.05);
    /* Entropy: lower is more certain, so -conf behaves like conf. */
    double *ent = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        ent[i] = -conf[i];
    cd_abstention a1, a2;
    cd_error err;
    assert_int_equal(cd_abstention_fit(conf, ok, n, CD_UNC_CONFIDENCE, target, delta, &a1, &err), CD_OK);
    assert_int_equal(cd_abstention_fit(ent, ok, n, CD_UNC_ENTROPY, target, delta, &a2, &err), CD_OK);
    assert_int_equal(a1.accepted, a2.accepted);
    assert_true(a2.threshold == -a1.threshold);
    assert_true(cd_abstain_accept(&a2, a2.threshold) && !cd_abstain_accept(&a2, a2.threshold + 1e-9));
    free(ent);
    free(conf);
    free(ok);
    gsl_rng_free(r);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* RAPS tuning: k_reg is the ⌈(n+1)(1−α)⌉-th smallest true-label rank
 * (checked against a sort of ranks counted here), λ comes from the grid,
 * and with the tuning rows held apart from the q̂ fit the coverage over 200
 * random splits stays in [0.895, 0.915]. */
static void test_raps_tuning(void **state)
{
    (void)state;
    size_t total = 2000, n_tune = 200;
    int k = 10;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 77);
    double *p = malloc(total * k * sizeof(double));
    int *y = malloc(total * sizeof(int));
    size_t *perm = malloc(total * sizeof(size_t));
    make_classification(total, k, r, p, y);
    double lambda;
    int k_reg;
    cd_error err;
    assert_int_equal(cd_conformal_tune_raps(p, y, n_tune, k, 0.1, 3, &lambda, &k_reg, &err),
                     CD_OK);
    double *ranks = malloc(n_tune * sizeof(double));
    for (size_t i = 0; i < n_tune; i++) {
        int rank = 1;
        for (int c = 0; c < k; c++)
            rank += p[i * k + c] > p[i * k + y[i]] || (p[i * k + c] == p[i * k + y[i]] && c < y[i]);
        ranks[i] = rank;
    }
    qsort(ranks, n_tune, sizeof(double), cmp_dbl);
    size_t kth = (size_t)ceil((n_tune + 1) * 0.9 - 1e-9); /* 181 */
    assert_int_equal(k_reg, (int)ranks[kth - 1]);
    assert_true(lambda == 0 || lambda == 0.001 || lambda == 0.01 || lambda == 0.05 ||
                lambda == 0.1 || lambda == 0.2 || lambda == 0.5);
    fprintf(stderr, "RAPS tuned: k_reg %d, lambda %g\n", k_reg, lambda);
    /* Coverage with tuning inside each split's calibration half. */
    for (size_t i = 0; i < total; i++)
        perm[i] = i;
    double cov = 0;
    size_t n_cal = total / 2;
    double *cp = malloc(total * k * sizeof(double));
    int *cy = malloc(total * sizeof(int));
    unsigned char *in = malloc(total * k);
    for (int s = 0; s < 200; s++) {
        gsl_ran_shuffle(r, perm, total, sizeof(size_t));
        for (size_t i = 0; i < total; i++) {
            memcpy(cp + i * k, p + perm[i] * k, k * sizeof(double));
            cy[i] = y[perm[i]];
        }
        cd_conformal_options o = {.score = CD_CONFORMAL_RAPS, .alpha = 0.1, .seed = gsl_rng_get(r)};
        assert_int_equal(cd_conformal_tune_raps(cp, cy, n_tune, k, 0.1, o.seed, &o.lambda,
                                                &o.k_reg, &err), CD_OK);
        cd_conformal_classifier c;
        assert_int_equal(cd_conformal_fit(cp + n_tune * k, cy + n_tune, n_cal - n_tune, k, &o,
                                          &c, &err), CD_OK);
        size_t n_test = total - n_cal;
        assert_int_equal(cd_conformal_predict(&c, cp + n_cal * k, n_test, gsl_rng_get(r), in,
                                              NULL, &err), CD_OK);
        double hit = 0;
        for (size_t i = 0; i < n_test; i++)
            hit += in[i * k + cy[n_cal + i]];
        cov += hit / n_test;
        cd_conformal_clear(&c);
    }
    cov /= 200;
    fprintf(stderr, "tuned RAPS: mean coverage %.4f\n", cov);
    assert_true(cov >= 0.895 && cov <= 0.915);
    assert_int_equal(cd_conformal_tune_raps(p, y, 3, k, 0.1, 0, &lambda, &k_reg, &err),
                     CD_ERR_INVALID_ARGUMENT);
    free(cp);
    free(cy);
    free(in);
    free(ranks);
    free(p);
    free(y);
    free(perm);
    gsl_rng_free(r);
}

/* The calibration file: scaling map + conformal (with scores) + abstention
 * survive a save/load; --alpha recomputes q̂ as the k-th smallest stored
 * score (checked by sorting here); an existing file is kept without force. */
static void test_bundle_roundtrip(void **state)
{
    (void)state;
    size_t n = 500;
    int k = 4;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 5);
    double *z = malloc(n * k * sizeof(double)), *p = malloc(n * k * sizeof(double));
    int *y = malloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++) {
        y[i] = (int)gsl_rng_uniform_int(r, k);
        for (int c = 0; c < k; c++)
            z[i * k + c] = 3.0 * gsl_ran_gaussian(r, 1.0) + (c == y[i] ? 2.0 : 0.0);
    }
    cd_error err;
    cd_calibration_bundle b = {0};
    cd_fit_options fo = {.method = CD_CALIB_TEMPERATURE, .l2 = -1};
    assert_int_equal(cd_calibrator_fit(z, y, n, k, &fo, &b.calibrator, &err), CD_OK);
    assert_int_equal(cd_calibrator_apply(b.calibrator, z, n, p, &err), CD_OK);
    cd_conformal_options co = {.score = CD_CONFORMAL_APS, .alpha = 0.1, .seed = 9, .mondrian = 1};
    b.conformal_scores = malloc(n * sizeof(double));
    b.conformal_labels = malloc(n * sizeof(int));
    memcpy(b.conformal_labels, y, n * sizeof(int));
    assert_int_equal(cd_conformal_scores(p, y, n, k, &co, b.conformal_scores, &err), CD_OK);
    assert_int_equal(cd_conformal_fit(p, y, n, k, &co, &b.conformal, &err), CD_OK);
    b.has_conformal = 1;
    double *conf = malloc(n * sizeof(double));
    unsigned char *ok = malloc(n);
    for (size_t i = 0; i < n; i++) {
        int best = 0;
        for (int c = 1; c < k; c++)
            best = p[i * k + c] > p[i * k + best] ? c : best;
        conf[i] = p[i * k + best];
        ok[i] = best == y[i];
    }
    assert_int_equal(cd_abstention_fit(conf, ok, n, CD_UNC_CONFIDENCE, 0.2, 0.1, &b.abstention,
                                       &err), CD_OK);
    b.has_abstention = 1;
    char path[] = "/tmp/candor_bundle_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(cd_calibration_bundle_save(&b, path, 0, &err), CD_ERR_IO);
    assert_int_equal(cd_calibration_bundle_save(&b, path, 1, &err), CD_OK);
    cd_calibration_bundle l;
    assert_int_equal(cd_calibration_bundle_load(path, &l, &err), CD_OK);
    assert_true(fabs(cd_calibrator_temperature(l.calibrator) -
                     cd_calibrator_temperature(b.calibrator)) < 1e-12);
    assert_true(l.has_conformal && l.has_abstention);
    assert_true(l.conformal.opts.score == CD_CONFORMAL_APS && l.conformal.opts.mondrian);
    assert_true(fabs(l.conformal.qhat - b.conformal.qhat) < 1e-12);
    for (int c = 0; c < k; c++)
        assert_true(fabs(l.conformal.class_qhat[c] - b.conformal.class_qhat[c]) < 1e-12 ||
                     (isinf(l.conformal.class_qhat[c]) && isinf(b.conformal.class_qhat[c])));
    assert_true(fabs(l.abstention.threshold - b.abstention.threshold) < 1e-12 ||
                (!b.abstention.feasible && !l.abstention.feasible));
    assert_int_equal(l.abstention.feasible, b.abstention.feasible);
    /* Another alpha: q̂ = k-th smallest stored score, k = ceil((n+1)(1-alpha)). */
    assert_int_equal(cd_calibration_bundle_set_alpha(&l, 0.25, &err), CD_OK);
    double *sorted = malloc(n * sizeof(double));
    memcpy(sorted, b.conformal_scores, n * sizeof(double));
    qsort(sorted, n, sizeof(double), cmp_dbl);
    size_t kth = (size_t)ceil((n + 1) * 0.75 - 1e-9);
    assert_true(l.conformal.qhat == sorted[kth - 1]);
    assert_true(l.conformal.opts.alpha == 0.25);
    cd_calibration_bundle_clear(&l);
    cd_calibration_bundle_clear(&b);
    remove(path);
    free(sorted);
    free(conf);
    free(ok);
    free(z);
    free(p);
    free(y);
    gsl_rng_free(r);
}

/* GSL errors come back as codes instead of aborting the process. */
static void test_gsl_handler_off(void **state)
{
    (void)state;
    cd_calib_gsl_quiet();
    gsl_sf_result res;
    assert_int_equal(gsl_sf_log_e(-1.0, &res), GSL_EDOM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_exact),
        cmocka_unit_test(test_quantile_small_n),
        cmocka_unit_test(test_quantile_vs_sort),
        cmocka_unit_test(test_classification_coverage),
        cmocka_unit_test(test_regression_coverage),
        cmocka_unit_test(test_clopper_pearson),
        cmocka_unit_test(test_abstention_guarantee),
        cmocka_unit_test(test_raps_tuning),
        cmocka_unit_test(test_bundle_roundtrip),
        cmocka_unit_test(test_gsl_handler_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
