/* The calibration report model: one cJSON tree (schema in
 * docs/calibration.md) that is written as JSON and rendered as HTML, so both
 * outputs always carry the same numbers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "calibration/calib_internal.h"
#include "calibration/report_internal.h"
#include "candor/candor.h"
#include "core/internal.h"

/* Longest risk-coverage curve kept in the report (evenly thinned). */
#define RC_MAX_POINTS 400

static const char *const metric_labels[CD_METRIC_COUNT] = {
    "Accuracy",
    "NLL (nats, p clamped at 1e-12)",
    "Brier score (sum over classes, range [0, 2])",
    "ECE (equal-width bins)",
    "Adaptive ECE (equal-mass bins)",
    "MCE (max gap, non-empty bins)",
    "Classwise ECE (mean over classes)",
    "AUROC of confidence, correct vs wrong",
    "AURC (area under risk-coverage)",
    "Excess AURC (AURC minus oracle)"};

static const char *const metric_lower_better[CD_METRIC_COUNT] = {
    "higher", "lower", "lower", "lower", "lower", "lower", "lower", "higher", "lower", "lower"};

void cd_report_free(cd_report *r)
{
    if (!r)
        return;
    cJSON_Delete(r->root);
    free(r);
}

/* NaN/inf are not JSON numbers: they become null. */
cJSON *cd_report_num(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

cJSON *cd_report_metrics_json(const cd_metrics *m)
{
    cJSON *arr = cJSON_CreateArray();
    for (int id = 0; id < CD_METRIC_COUNT; id++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", cd_metric_name(id));
        cJSON_AddStringToObject(o, "label", metric_labels[id]);
        cJSON_AddStringToObject(o, "better", metric_lower_better[id]);
        cJSON_AddItemToObject(o, "value", cd_report_num(m->value[id]));
        cJSON_AddItemToObject(o, "ci_low", cd_report_num(m->ci_low[id]));
        cJSON_AddItemToObject(o, "ci_high", cd_report_num(m->ci_high[id]));
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* Reliability bins plus the confidence histogram split into correct/wrong. */
cd_status cd_report_reliability_json(const double *probs, const int *labels, size_t n, int k,
                                     int bins, cJSON *parent, const char *key, cd_error *err)
{
    cd_reliability_bin *b = malloc((size_t)bins * sizeof *b);
    if (!b)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "report: bins");
    cd_status st = cd_reliability_bins(probs, labels, n, k, bins, b, err);
    if (st) {
        free(b);
        return st;
    }
    cJSON *arr = cJSON_AddArrayToObject(parent, key);
    for (int i = 0; i < bins; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "lo", b[i].lo);
        cJSON_AddNumberToObject(o, "hi", b[i].hi);
        cJSON_AddNumberToObject(o, "count", (double)b[i].count);
        cJSON_AddItemToObject(o, "accuracy", cd_report_num(b[i].accuracy));
        cJSON_AddItemToObject(o, "confidence", cd_report_num(b[i].confidence));
        double correct = b[i].count ? b[i].accuracy * (double)b[i].count : 0.0;
        cJSON_AddNumberToObject(o, "correct", nearbyint(correct));
        cJSON_AddItemToArray(arr, o);
    }
    free(b);
    return CD_OK;
}

static cd_status build_risk_coverage(const cd_predictions *p, cJSON *root, cd_error *err)
{
    double *cov = malloc(p->n * sizeof(double)), *risk = malloc(p->n * sizeof(double));
    double *thr = malloc(p->n * sizeof(double));
    size_t pts = 0;
    cd_status st = (cov && risk && thr)
                       ? cd_risk_coverage(p->probs, p->labels, p->n, p->k, cov, risk, thr, &pts,
                                          err)
                       : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "report: risk-coverage");
    if (!st) {
        cJSON *o = cJSON_AddObjectToObject(root, "risk_coverage");
        cJSON *c = cJSON_AddArrayToObject(o, "coverage");
        cJSON *r = cJSON_AddArrayToObject(o, "risk");
        cJSON *t = cJSON_AddArrayToObject(o, "threshold");
        size_t step = pts > RC_MAX_POINTS ? (pts + RC_MAX_POINTS - 1) / RC_MAX_POINTS : 1;
        for (size_t i = 0; i < pts; i++) {
            if (i % step != 0 && i != pts - 1)
                continue; /* thinned for size; the last point (full coverage) is kept */
            cJSON_AddItemToArray(c, cJSON_CreateNumber(cov[i]));
            cJSON_AddItemToArray(r, cJSON_CreateNumber(risk[i]));
            cJSON_AddItemToArray(t, cJSON_CreateNumber(thr[i]));
        }
        cJSON_AddNumberToObject(o, "distinct_thresholds", (double)pts);
    }
    free(cov);
    free(risk);
    free(thr);
    return st;
}

/* One-vs-rest ECE of class c (the classwise ECE term before averaging). */
static double class_ece(const cd_predictions *p, int c, int bins, double *work)
{
    memset(work, 0, 3 * (size_t)bins * sizeof(double));
    for (size_t i = 0; i < p->n; i++) {
        double v = p->probs[i * (size_t)p->k + c];
        int b = cd_bin_index(v, bins);
        work[b] += 1;
        work[bins + b] += p->labels[i] == c;
        work[2 * bins + b] += v;
    }
    double e = 0;
    for (int b = 0; b < bins; b++)
        if (work[b] > 0)
            e += work[b] / (double)p->n * fabs(work[bins + b] / work[b] - work[2 * bins + b] / work[b]);
    return e;
}

static cd_status build_per_class(const cd_predictions *p, int bins, cJSON *root, cd_error *err)
{
    size_t k = (size_t)p->k;
    double *acc = calloc(5 * k + 3 * (size_t)bins, sizeof(double));
    if (!acc)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "report: per-class table");
    double *support = acc, *predicted = acc + k, *hits = acc + 2 * k, *mass = acc + 3 * k;
    double *conf_pred = acc + 4 * k, *work = acc + 5 * k;
    for (size_t i = 0; i < p->n; i++) {
        const double *row = p->probs + i * k;
        int best = cd_calib_argmax(row, p->k);
        support[p->labels[i]] += 1;
        predicted[best] += 1;
        hits[best] += best == p->labels[i];
        mass[p->labels[i]] += row[p->labels[i]];
        conf_pred[best] += row[best];
    }
    cJSON *arr = cJSON_AddArrayToObject(root, "per_class");
    for (size_t c = 0; c < k; c++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", (double)c);
        cJSON_AddStringToObject(o, "name", p->class_names[c]);
        cJSON_AddNumberToObject(o, "support", support[c]);
        cJSON_AddNumberToObject(o, "predicted", predicted[c]);
        cJSON_AddItemToObject(o, "precision", cd_report_num(hits[c] / predicted[c]));
        cJSON_AddItemToObject(o, "recall", cd_report_num(hits[c] / support[c]));
        cJSON_AddItemToObject(o, "mean_true_class_probability", cd_report_num(mass[c] / support[c]));
        cJSON_AddItemToObject(o, "mean_confidence_when_predicted",
                              cd_report_num(conf_pred[c] / predicted[c]));
        cJSON_AddNumberToObject(o, "one_vs_rest_ece", class_ece(p, (int)c, bins, work));
        cJSON_AddItemToArray(arr, o);
    }
    free(acc);
    return CD_OK;
}

static void build_header(const cd_predictions *p, const cd_report_options *o, int bins,
                         int reps, cJSON *root)
{
    cJSON_AddStringToObject(root, "format", "candor-calibration-report");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "generated_by", "candor " CANDOR_VERSION_STRING);
    if (o && o->command_line)
        cJSON_AddStringToObject(root, "command_line", o->command_line);
    cJSON *d = cJSON_AddObjectToObject(root, "data");
    cJSON_AddStringToObject(d, "source", p->source ? p->source : "");
    cJSON_AddStringToObject(d, "sha256", p->sha256);
    cJSON_AddNumberToObject(d, "n", (double)p->n);
    cJSON_AddNumberToObject(d, "num_classes", p->k);
    cJSON_AddStringToObject(d, "input", p->logits ? "logits (softmax applied)" : "probabilities");
    cJSON_AddBoolToObject(d, "renormalized", p->renormalized);
    cJSON *names = cJSON_AddArrayToObject(d, "class_names");
    for (int c = 0; c < p->k; c++)
        cJSON_AddItemToArray(names, cJSON_CreateString(p->class_names[c]));
    cJSON *s = cJSON_AddObjectToObject(root, "settings");
    cJSON_AddNumberToObject(s, "bins", bins);
    cJSON_AddStringToObject(s, "binning", "equal-width ((m-1)/M, m/M]; adaptive: equal-mass");
    cJSON_AddNumberToObject(s, "bootstrap", reps);
    cJSON_AddStringToObject(s, "ci", reps > 0 ? "95% percentile bootstrap" : "none");
    cJSON_AddNumberToObject(s, "seed", o ? (double)o->seed : 0);
    cJSON_AddStringToObject(s, "rng", "gsl_rng_mt19937");
    cJSON_AddNumberToObject(s, "nll_clamp", CD_NLL_CLAMP);
    cJSON_AddStringToObject(s, "argmax_ties", "lowest class index");
    cJSON_AddStringToObject(s, "aurc_ties", "tied confidences enter the curve together");
}

cd_status cd_report_build(const cd_predictions *p, const cd_report_options *opts,
                          cd_report **out, cd_error *err)
{
    if (!p || !p->probs || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "report: no predictions");
    int bins = opts && opts->bins > 0 ? opts->bins : CD_ECE_DEFAULT_BINS;
    int reps = opts ? opts->bootstrap : 0;
    if (reps < 0)
        reps = CD_BOOTSTRAP_DEFAULT;
    cd_metric_options mo = {.bins = bins, .bootstrap = reps, .ci_level = 0.95,
                            .seed = opts ? opts->seed : 0};
    cd_metrics m;
    cd_status st = cd_metrics_compute(p->probs, p->labels, p->n, p->k, &mo, &m, err);
    if (st)
        return st;
    cd_report *r = calloc(1, sizeof *r);
    if (!r || !(r->root = cJSON_CreateObject())) {
        free(r);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "report");
    }
    build_header(p, opts, bins, reps, r->root);
    cJSON_AddItemToObject(r->root, "metrics", cd_report_metrics_json(&m));
    st = cd_report_reliability_json(p->probs, p->labels, p->n, p->k, bins, r->root,
                                        "reliability", err);
    if (!st)
        st = build_risk_coverage(p, r->root, err);
    if (!st)
        st = build_per_class(p, bins, r->root, err);
    if (st) {
        cd_report_free(r);
        return st;
    }
    *out = r;
    return CD_OK;
}

cd_status cd_report_write_json(const cd_report *r, const char *path, cd_error *err)
{
    char *text = cJSON_Print(r->root);
    if (!text)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "report: JSON text");
    size_t len = strlen(text);
    text[len] = 0;
    cd_status st = cd_write_file_atomic(path, text, len, err);
    cJSON_free(text);
    return st;
}
