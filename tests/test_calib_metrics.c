/* Calibration metrics against an independent NumPy/scikit-learn reference
 * (tools/calib_reference.py) on generated fixtures of >= 10,000 rows with
 * ties, exact bin edges, empty bins, argmax ties, K = 2, 3 and 100. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "candor/calibration.h"
#include "testutil.h"

typedef struct fixture {
    size_t n;
    int k;
    double *p;
    int *y;
} fixture;

static void fixture_alloc(fixture *f, size_t n, int k)
{
    f->n = n;
    f->k = k;
    f->p = malloc(n * (size_t)k * sizeof(double));
    f->y = malloc(n * sizeof(int));
    assert_non_null(f->p);
    assert_non_null(f->y);
}

static void fixture_free(fixture *f)
{
    free(f->p);
    free(f->y);
}

static int sample_label(gsl_rng *r, const double *q, int k)
{
    double u = gsl_rng_uniform(r), c = 0;
    for (int j = 0; j < k; j++) {
        c += q[j];
        if (u < c && q[j] > 0)
            return j;
    }
    for (int j = k - 1; j >= 0; j--)
        if (q[j] > 0)
            return j;
    return 0;
}

/* Labels from a distorted (sharpened/flattened) copy of p so the model is
 * miscalibrated; zero-probability classes are never drawn. */
static void draw_labels(fixture *f, gsl_rng *r, double power)
{
    double *q = malloc((size_t)f->k * sizeof(double));
    for (size_t i = 0; i < f->n; i++) {
        double s = 0;
        for (int c = 0; c < f->k; c++)
            s += q[c] = pow(f->p[i * f->k + c], power);
        for (int c = 0; c < f->k; c++)
            q[c] /= s;
        f->y[i] = sample_label(r, q, f->k);
    }
    free(q);
}

/* K = 2 on a 1/30 grid: many ties, confidences exactly on the 1/15 edges,
 * and bins below 0.5 necessarily empty. */
static void make_binary_grid(fixture *f, gsl_rng *r)
{
    fixture_alloc(f, 12000, 2);
    for (size_t i = 0; i < f->n; i++) {
        double p1 = (double)gsl_rng_uniform_int(r, 31) / 30.0;
        f->p[2 * i + 1] = p1;
        f->p[2 * i] = 1.0 - p1;
    }
    draw_labels(f, r, 1.5);
}

/* K = 100 softmax rows, 10% duplicated rows (tied confidences). */
static void make_k100(fixture *f, gsl_rng *r)
{
    fixture_alloc(f, 10000, 100);
    for (size_t i = 0; i < f->n; i++) {
        double *row = f->p + i * 100;
        if (i > 0 && gsl_rng_uniform(r) < 0.1) {
            memcpy(row, f->p + gsl_rng_uniform_int(r, i) * 100, 100 * sizeof(double));
            continue;
        }
        double scale = 1.0 + 4.0 * gsl_rng_uniform(r);
        for (int c = 0; c < 100; c++)
            row[c] = scale * gsl_ran_gaussian(r, 1.0);
        cd_softmax_rows(row, 1, 100, row);
    }
    draw_labels(f, r, 0.7);
}

/* K = 3 prototypes with exact argmax ties and edge values. */
static void make_k3_prototypes(fixture *f, gsl_rng *r)
{
    static const double proto[][3] = {{0.6, 0.3, 0.1}, {1.0 / 3, 1.0 / 3, 1.0 / 3},
                                      {0.5, 0.5, 0.0}, {0.2, 0.4, 0.4},
                                      {0.0, 0.0, 1.0}, {0.8, 0.1, 0.1},
                                      {0.1, 0.7, 0.2}};
    fixture_alloc(f, 10500, 3);
    for (size_t i = 0; i < f->n; i++)
        memcpy(f->p + 3 * i, proto[gsl_rng_uniform_int(r, 7)], 3 * sizeof(double));
    draw_labels(f, r, 1.0);
}

static const char *binary_dir(void)
{
    const char *d = getenv("CANDOR_BINARY_DIR");
    return d ? d : ".";
}

static void write_csv(const fixture *f, const char *path)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int c = 0; c < f->k; c++)
        fprintf(fp, "p%d,", c);
    fprintf(fp, "label\n");
    for (size_t i = 0; i < f->n; i++) {
        for (int c = 0; c < f->k; c++)
            fprintf(fp, "%.17g,", f->p[i * f->k + c]);
        fprintf(fp, "%d\n", f->y[i]);
    }
    fclose(fp);
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    size_t got = fread(buf, 1, (size_t)len, fp);
    buf[got] = 0;
    fclose(fp);
    return buf;
}

/* Runs the reference; returns NULL (and skips) when it is unavailable. */
static cJSON *run_reference(const fixture *f, const char *name, int bins)
{
    char csv[1024], js[1024], cmd[4096];
    snprintf(csv, sizeof csv, "%s/calib_fixture_%s.csv", binary_dir(), name);
    snprintf(js, sizeof js, "%s/calib_fixture_%s_%d.json", binary_dir(), name, bins);
    write_csv(f, csv);
    const char *src = getenv("CANDOR_SOURCE_DIR");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tools/calib_reference.py %s %d > %s",
             src ? src : "..", csv, bins, js);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "reference failed (status %d): is python3-sklearn installed?\n", rc);
        return NULL;
    }
    char *text = slurp(js);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    return root;
}

static void compare(const fixture *f, const char *name, int bins)
{
    cJSON *ref = run_reference(f, name, bins);
    if (!ref) {
        skip();
        return;
    }
    cd_metrics m;
    cd_error err;
    cd_metric_options opts = {.bins = bins};
    assert_int_equal(cd_metrics_compute(f->p, f->y, f->n, f->k, &opts, &m, &err), CD_OK);
    for (int id = 0; id < CD_METRIC_COUNT; id++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(ref, cd_metric_name(id));
        assert_non_null(v);
        if (cJSON_IsNull(v)) {
            assert_true(isnan(m.value[id]));
            continue;
        }
        double diff = fabs(m.value[id] - v->valuedouble);
        if (diff > 1e-9)
            fprintf(stderr, "%s %s: candor %.15g reference %.15g\n", name, cd_metric_name(id),
                    m.value[id], v->valuedouble);
        assert_true(diff <= 1e-9);
    }
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(ref, "nll_sklearn");
    assert_true(fabs(m.value[CD_METRIC_NLL] - sk->valuedouble) <= 1e-9);
    sk = cJSON_GetObjectItemCaseSensitive(ref, "brier_sklearn");
    if (sk)
        assert_true(fabs(m.value[CD_METRIC_BRIER] - sk->valuedouble) <= 1e-9);
    cJSON_Delete(ref);
}

static void test_binary_grid(void **state)
{
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 11);
    fixture f;
    make_binary_grid(&f, r);
    compare(&f, "k2", 15);
    compare(&f, "k2", 10);
    fixture_free(&f);
    gsl_rng_free(r);
}

static void test_k100(void **state)
{
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 12);
    fixture f;
    make_k100(&f, r);
    compare(&f, "k100", 15);
    fixture_free(&f);
    gsl_rng_free(r);
}

static void test_k3(void **state)
{
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 13);
    fixture f;
    make_k3_prototypes(&f, r);
    compare(&f, "k3", 15);
    compare(&f, "k3", 20);
    fixture_free(&f);
    gsl_rng_free(r);
}

/* Bin edges: p = j/M belongs to bin j (1-based), 0 to the first bin. */
static void test_bin_edges(void **state)
{
    (void)state;
    for (int m = 1; m <= 40; m++)
        for (int j = 1; j <= m; j++) {
            double p = (double)j / m;
            assert_int_equal(cd_bin_index(p, m), j - 1);
            assert_int_equal(cd_bin_index(nextafter(p, 2.0), m), j < m ? j : m - 1);
        }
    assert_int_equal(cd_bin_index(0.0, 15), 0);
}

/* Bootstrap: deterministic for a seed, and the accuracy interval width
 * matches the normal approximation 2 * 1.96 * sqrt(a(1-a)/n) within 15%. */
static void test_bootstrap(void **state)
{
    (void)state;
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 14);
    fixture f;
    make_binary_grid(&f, r);
    cd_metric_options opts = {.bins = 15, .bootstrap = 400, .seed = 7};
    cd_metrics a, b;
    cd_error err;
    assert_int_equal(cd_metrics_compute(f.p, f.y, f.n, 2, &opts, &a, &err), CD_OK);
    assert_int_equal(cd_metrics_compute(f.p, f.y, f.n, 2, &opts, &b, &err), CD_OK);
    for (int id = 0; id < CD_METRIC_COUNT; id++) {
        assert_true(a.ci_low[id] == b.ci_low[id] && a.ci_high[id] == b.ci_high[id]);
        assert_true(a.ci_low[id] <= a.ci_high[id]);
    }
    double acc = a.value[CD_METRIC_ACCURACY];
    double expect = 2 * 1.959964 * sqrt(acc * (1 - acc) / f.n);
    double width = a.ci_high[CD_METRIC_ACCURACY] - a.ci_low[CD_METRIC_ACCURACY];
    assert_true(fabs(width - expect) < 0.15 * expect);
    assert_true(a.ci_low[CD_METRIC_NLL] < a.value[CD_METRIC_NLL]);
    assert_true(a.ci_high[CD_METRIC_NLL] > a.value[CD_METRIC_NLL]);
    fixture_free(&f);
    gsl_rng_free(r);
}

static void test_bad_input(void **state)
{
    (void)state;
    double p[4] = {0.5, 0.5, 0.2, 0.8};
    int y[2] = {0, 2};
    cd_metrics m;
    cd_error err;
    assert_int_equal(cd_metrics_compute(p, y, 2, 2, NULL, &m, &err), CD_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "sample 1"));
    y[1] = 1;
    p[2] = NAN;
    assert_int_equal(cd_metrics_compute(p, y, 2, 2, NULL, &m, &err), CD_ERR_NUMERIC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bin_edges),   cmocka_unit_test(test_binary_grid),
        cmocka_unit_test(test_k3),          cmocka_unit_test(test_k100),
        cmocka_unit_test(test_bootstrap),   cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
