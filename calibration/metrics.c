/* Calibration and selective-prediction metrics with bootstrap intervals.
 * Definitions: docs/calibration.md (GUIDE section 4). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_rng.h>
#include <gsl/gsl_statistics_double.h>

#include "calibration/calib_internal.h"
#include "candor/calibration.h"
#include "core/internal.h"

static const char *const metric_names[CD_METRIC_COUNT] = {
    "accuracy", "nll", "brier", "ece", "adaptive_ece", "mce", "classwise_ece",
    "auroc", "aurc", "excess_aurc"};

const char *cd_metric_name(cd_metric_id id)
{
    return (id >= 0 && id < CD_METRIC_COUNT) ? metric_names[id] : "unknown";
}

int cd_bin_index(double p, int m)
{
    /* ceil(p*M) is the bin up to rounding; the two loops settle the exact
     * comparison against the edges j/M so p = j/M always lands in bin j. */
    if (!(p > 0.0))
        return 0;
    if (p >= 1.0)
        return m - 1;
    int j = (int)ceil(p * m);
    if (j < 1)
        j = 1;
    if (j > m)
        j = m;
    while (j > 1 && p <= (double)(j - 1) / m)
        j--;
    while (j < m && p > (double)j / m)
        j++;
    return j - 1;
}

/* Per-row summaries used by every metric: top-class confidence and whether
 * the argmax (first maximum) equals the label. */
typedef struct row_summary {
    double *conf;
    unsigned char *correct;
} row_summary;

static void summarize_rows(const double *probs, const int *labels, size_t n, int k,
                           row_summary *s)
{
    cd_calib_confidences(probs, labels, n, k, s->conf, s->correct);
}

/* A view of the dataset through an index list (identity or a bootstrap draw),
 * so resamples need no copies of the probability matrix. */
typedef struct metric_view {
    const double *probs;
    const int *labels;
    const row_summary *rows;
    const size_t *idx; /* NULL = identity */
    size_t n;
    int k;
    int bins;
} metric_view;

static size_t view_row(const metric_view *v, size_t i)
{
    return v->idx ? v->idx[i] : i;
}

/* Weighted bin gap sum (and max gap) from per-bin sums. */
static void gap_sums(const double *cnt, const double *acc, const double *conf, int m,
                     double n, double *ece, double *mce)
{
    double e = 0.0, mx = 0.0;
    for (int b = 0; b < m; b++) {
        if (cnt[b] == 0)
            continue;
        double gap = fabs(acc[b] / cnt[b] - conf[b] / cnt[b]);
        e += cnt[b] / n * gap;
        if (gap > mx)
            mx = gap;
    }
    *ece = e;
    if (mce)
        *mce = mx;
}

static void equal_width_ece(const metric_view *v, double *work, double *ece, double *mce)
{
    int m = v->bins;
    double *cnt = work, *acc = work + m, *conf = work + 2 * m;
    memset(work, 0, sizeof(double) * 3 * (size_t)m);
    for (size_t i = 0; i < v->n; i++) {
        size_t r = view_row(v, i);
        int b = cd_bin_index(v->rows->conf[r], m);
        cnt[b] += 1;
        acc[b] += v->rows->correct[r];
        conf[b] += v->rows->conf[r];
    }
    gap_sums(cnt, acc, conf, m, (double)v->n, ece, mce);
}

static double classwise_ece(const metric_view *v, double *work)
{
    int m = v->bins;
    double *cnt = work, *hit = work + m, *mass = work + 2 * m;
    double total = 0.0;
    for (int c = 0; c < v->k; c++) {
        memset(work, 0, sizeof(double) * 3 * (size_t)m);
        for (size_t i = 0; i < v->n; i++) {
            size_t r = view_row(v, i);
            double p = v->probs[r * (size_t)v->k + c];
            int b = cd_bin_index(p, m);
            cnt[b] += 1;
            hit[b] += v->labels[r] == c;
            mass[b] += p;
        }
        double e;
        gap_sums(cnt, hit, mass, m, (double)v->n, &e, NULL);
        total += e;
    }
    return total / v->k;
}

/* Sort keys: confidence, ties broken by position so every ordering-based
 * metric is deterministic (the NumPy reference uses a stable argsort). */
typedef struct conf_key {
    double conf;
    size_t pos;
    unsigned char correct;
} conf_key;

static int cmp_conf_key(const void *a, const void *b)
{
    const conf_key *x = a, *y = b;
    if (x->conf < y->conf)
        return -1;
    if (x->conf > y->conf)
        return 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static double adaptive_ece(const conf_key *sorted, size_t n, int m)
{
    size_t base = n / (size_t)m, extra = n % (size_t)m, start = 0;
    double e = 0.0;
    for (int g = 0; g < m; g++) {
        size_t len = base + ((size_t)g < extra ? 1 : 0);
        if (len == 0)
            continue;
        double acc = 0.0, conf = 0.0;
        for (size_t i = start; i < start + len; i++) {
            acc += sorted[i].correct;
            conf += sorted[i].conf;
        }
        e += (double)len / (double)n * fabs(acc / len - conf / len);
        start += len;
    }
    return e;
}

/* Mann-Whitney AUROC with average ranks for tied confidences. */
static double auroc(const conf_key *sorted, size_t n)
{
    double pos = 0, rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && sorted[j].conf == sorted[i].conf)
            j++;
        double avg_rank = 0.5 * ((double)(i + 1) + (double)j);
        for (size_t t = i; t < j; t++)
            if (sorted[t].correct) {
                pos += 1;
                rank_sum += avg_rank;
            }
        i = j;
    }
    double neg = (double)n - pos;
    if (pos == 0 || neg == 0)
        return NAN;
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}

/* AURC over distinct thresholds (tie groups enter together, so the value does
 * not depend on the order of tied samples): sum_j (|group_j|/n) * risk(conf >= t_j). */
static double aurc(const conf_key *sorted, size_t n, double *oracle)
{
    double area = 0.0, errors = 0.0, wrong_total = 0.0;
    for (size_t i = n; i > 0;) {
        size_t j = i;
        while (j > 0 && sorted[j - 1].conf == sorted[i - 1].conf)
            j--;
        for (size_t t = j; t < i; t++)
            errors += !sorted[t].correct;
        area += (double)(i - j) / (double)n * errors / (double)(n - j);
        i = j;
    }
    wrong_total = errors;
    /* Oracle: all correct predictions first; at coverage i/n the risk is
     * max(0, i - (n - e)) / i. */
    double o = 0.0, right = (double)n - wrong_total;
    for (size_t i = 1; i <= n; i++) {
        double excess = (double)i - right;
        if (excess > 0)
            o += excess / (double)i;
    }
    *oracle = o / (double)n;
    return area;
}

static void compute_view(const metric_view *v, double *work, conf_key *keys, double *val)
{
    double acc = 0, nll = 0, brier = 0;
    for (size_t i = 0; i < v->n; i++) {
        size_t r = view_row(v, i);
        const double *row = v->probs + r * (size_t)v->k;
        int y = v->labels[r];
        acc += v->rows->correct[r];
        nll -= log(row[y] > CD_NLL_CLAMP ? row[y] : CD_NLL_CLAMP);
        for (int c = 0; c < v->k; c++) {
            double d = row[c] - (c == y ? 1.0 : 0.0);
            brier += d * d;
        }
        keys[i].conf = v->rows->conf[r];
        keys[i].correct = v->rows->correct[r];
        keys[i].pos = i;
    }
    double n = (double)v->n;
    val[CD_METRIC_ACCURACY] = acc / n;
    val[CD_METRIC_NLL] = nll / n;
    val[CD_METRIC_BRIER] = brier / n;
    equal_width_ece(v, work, &val[CD_METRIC_ECE], &val[CD_METRIC_MCE]);
    val[CD_METRIC_CLASSWISE_ECE] = classwise_ece(v, work);
    qsort(keys, v->n, sizeof *keys, cmp_conf_key);
    val[CD_METRIC_ADAPTIVE_ECE] = adaptive_ece(keys, v->n, v->bins);
    val[CD_METRIC_AUROC] = auroc(keys, v->n);
    double oracle;
    val[CD_METRIC_AURC] = aurc(keys, v->n, &oracle);
    val[CD_METRIC_EXCESS_AURC] = val[CD_METRIC_AURC] - oracle;
}

cd_status cd_calib_check_inputs(const double *probs, const int *labels, size_t n, int k,
                                cd_error *err)
{
    if (!probs || !labels)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "metrics: NULL probabilities or labels");
    if (n == 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "metrics: no samples");
    if (k < 2)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "metrics: need at least 2 classes, got %d",
                       k);
    size_t total;
    if (!cd_mul_size(n, (size_t)k, &total))
        return cd_fail(err, CD_ERR_LIMIT, "metrics: n x k overflows");
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= k)
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                           "metrics: label %d of sample %zu outside [0, %d)", labels[i], i, k);
        for (int c = 0; c < k; c++)
            if (!isfinite(probs[i * (size_t)k + c]))
                return cd_fail(err, CD_ERR_NUMERIC, "metrics: non-finite probability in sample %zu",
                               i);
    }
    return CD_OK;
}

static void percentile_interval(double *vals, size_t count, double level, double *lo,
                                double *hi)
{
    size_t m = 0;
    for (size_t b = 0; b < count; b++)
        if (!isnan(vals[b]))
            vals[m++] = vals[b];
    if (m == 0) {
        *lo = *hi = NAN;
        return;
    }
    qsort(vals, m, sizeof *vals, cd_cmp_double);
    double tail = (1.0 - level) / 2.0;
    *lo = gsl_stats_quantile_from_sorted_data(vals, 1, m, tail);
    *hi = gsl_stats_quantile_from_sorted_data(vals, 1, m, 1.0 - tail);
}

/* Percentile bootstrap: B resamples of n rows with replacement from a seeded
 * mt19937, every metric recomputed on each. */
static cd_status bootstrap(const metric_view *base, int reps, double level, uint64_t seed,
                           double *work, conf_key *keys, cd_metrics *out, cd_error *err)
{
    size_t n = base->n;
    size_t *idx = malloc(n * sizeof *idx);
    double *samples = malloc((size_t)reps * CD_METRIC_COUNT * sizeof *samples);
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (!idx || !samples || !rng) {
        free(idx);
        free(samples);
        if (rng)
            gsl_rng_free(rng);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "metrics: bootstrap buffers");
    }
    gsl_rng_set(rng, (unsigned long)seed);
    metric_view v = *base;
    v.idx = idx;
    for (int b = 0; b < reps; b++) {
        for (size_t i = 0; i < n; i++)
            idx[i] = gsl_rng_uniform_int(rng, n);
        double val[CD_METRIC_COUNT];
        compute_view(&v, work, keys, val);
        for (int m = 0; m < CD_METRIC_COUNT; m++)
            samples[(size_t)m * reps + b] = val[m];
    }
    for (int m = 0; m < CD_METRIC_COUNT; m++)
        percentile_interval(samples + (size_t)m * reps, (size_t)reps, level, &out->ci_low[m],
                            &out->ci_high[m]);
    gsl_rng_free(rng);
    free(idx);
    free(samples);
    return CD_OK;
}

cd_status cd_metrics_compute(const double *probs, const int *labels, size_t n, int k,
                             const cd_metric_options *opts, cd_metrics *out, cd_error *err)
{
    cd_calib_gsl_quiet();
    cd_status st = cd_calib_check_inputs(probs, labels, n, k, err);
    if (st)
        return st;
    int bins = opts && opts->bins > 0 ? opts->bins : CD_ECE_DEFAULT_BINS;
    int reps = opts ? opts->bootstrap : 0;
    if (reps < 0)
        reps = CD_BOOTSTRAP_DEFAULT;
    double level = opts && opts->ci_level > 0 && opts->ci_level < 1 ? opts->ci_level : 0.95;
    row_summary rows = {malloc(n * sizeof(double)), malloc(n)};
    double *work = malloc(3 * (size_t)bins * sizeof(double));
    conf_key *keys = malloc(n * sizeof *keys);
    if (!rows.conf || !rows.correct || !work || !keys) {
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "metrics: buffers for %zu samples", n);
        goto done;
    }
    summarize_rows(probs, labels, n, k, &rows);
    metric_view v = {probs, labels, &rows, NULL, n, k, bins};
    compute_view(&v, work, keys, out->value);
    for (int m = 0; m < CD_METRIC_COUNT; m++)
        out->ci_low[m] = out->ci_high[m] = NAN;
    if (reps > 0)
        st = bootstrap(&v, reps, level, opts->seed, work, keys, out, err);
done:
    free(rows.conf);
    free(rows.correct);
    free(work);
    free(keys);
    return st;
}

cd_status cd_reliability_bins(const double *probs, const int *labels, size_t n, int k, int m,
                              cd_reliability_bin *bins, cd_error *err)
{
    cd_status st = cd_calib_check_inputs(probs, labels, n, k, err);
    if (st)
        return st;
    if (m < 1 || !bins)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "reliability: need at least one bin");
    double *acc = calloc((size_t)m * 2, sizeof(double));
    if (!acc)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "reliability: bins");
    for (int b = 0; b < m; b++) {
        bins[b].lo = (double)b / m;
        bins[b].hi = (double)(b + 1) / m;
        bins[b].count = 0;
    }
    for (size_t i = 0; i < n; i++) {
        const double *row = probs + i * (size_t)k;
        int best = cd_calib_argmax(row, k);
        int b = cd_bin_index(row[best], m);
        bins[b].count++;
        acc[b] += best == labels[i];
        acc[m + b] += row[best];
    }
    for (int b = 0; b < m; b++) {
        double c = (double)bins[b].count;
        bins[b].accuracy = c > 0 ? acc[b] / c : NAN;
        bins[b].confidence = c > 0 ? acc[m + b] / c : NAN;
    }
    free(acc);
    return CD_OK;
}

cd_status cd_risk_coverage(const double *probs, const int *labels, size_t n, int k,
                           double *coverage, double *risk, double *threshold, size_t *points,
                           cd_error *err)
{
    cd_status st = cd_calib_check_inputs(probs, labels, n, k, err);
    if (st)
        return st;
    conf_key *keys = malloc(n * sizeof *keys);
    row_summary rows = {malloc(n * sizeof(double)), malloc(n)};
    if (!keys || !rows.conf || !rows.correct) {
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "risk-coverage: buffers");
        goto done;
    }
    summarize_rows(probs, labels, n, k, &rows);
    for (size_t i = 0; i < n; i++)
        keys[i] = (conf_key){rows.conf[i], i, rows.correct[i]};
    qsort(keys, n, sizeof *keys, cmp_conf_key);
    size_t p = 0;
    double errors = 0;
    for (size_t i = n; i > 0;) {
        size_t j = i;
        while (j > 0 && keys[j - 1].conf == keys[i - 1].conf)
            j--;
        for (size_t t = j; t < i; t++)
            errors += !keys[t].correct;
        coverage[p] = (double)(n - j) / (double)n;
        risk[p] = errors / (double)(n - j);
        if (threshold)
            threshold[p] = keys[j].conf;
        p++;
        i = j;
    }
    *points = p;
done:
    free(keys);
    free(rows.conf);
    free(rows.correct);
    return st;
}
