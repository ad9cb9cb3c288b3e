/* Optional report sections added by `candor calibrate` (and `candor report
 * --calibration`): before/after comparisons per data split, the fitted map,
 * conformal sets and the abstention rule, each evaluated on held-out rows.
 * Schema: docs/calibration.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "calibration/calib_internal.h"
#include "calibration/calibrator.h"
#include "calibration/report_internal.h"
#include "core/internal.h"

static cJSON *section(cd_report *r, const char *name)
{
    cJSON *o = cJSON_GetObjectItemCaseSensitive(r->root, name);
    return o ? o : cJSON_AddObjectToObject(r->root, name);
}

/* Metrics (with CIs) and reliability bins of one probability matrix. */
static cd_status side_json(const double *probs, const int *labels, size_t n, int k,
                           const cd_report_options *opts, cJSON *parent, const char *key,
                           cd_error *err)
{
    int bins = opts && opts->bins > 0 ? opts->bins : CD_ECE_DEFAULT_BINS;
    int reps = opts ? opts->bootstrap : 0;
    cd_metric_options mo = {.bins = bins, .bootstrap = reps < 0 ? CD_BOOTSTRAP_DEFAULT : reps,
                            .ci_level = 0.95, .seed = opts ? opts->seed : 0};
    cd_metrics m;
    cd_status st = cd_metrics_compute(probs, labels, n, k, &mo, &m, err);
    if (st)
        return st;
    cJSON *o = cJSON_AddObjectToObject(parent, key);
    cJSON_AddItemToObject(o, "metrics", cd_report_metrics_json(&m));
    return cd_report_reliability_json(probs, labels, n, k, bins, o, "reliability", err);
}

cd_status cd_report_add_split(cd_report *r, const char *name, const double *before,
                              const double *after, const int *labels, size_t n, int k,
                              const cd_report_options *opts, cd_error *err)
{
    if (!r || !name || !before || !after)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "report: split without data");
    cJSON *cal = section(r, "calibration");
    cJSON *splits = cJSON_GetObjectItemCaseSensitive(cal, "splits");
    if (!splits)
        splits = cJSON_AddArrayToObject(cal, "splits");
    cJSON *s = cJSON_CreateObject();
    if (!s)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "report: split %s", name);
    cJSON_AddStringToObject(s, "name", name);
    cJSON_AddNumberToObject(s, "n", (double)n);
    cd_status st = side_json(before, labels, n, k, opts, s, "before", err);
    if (!st)
        st = side_json(after, labels, n, k, opts, s, "after", err);
    if (st) {
        cJSON_Delete(s);
        return st;
    }
    cJSON_AddItemToArray(splits, s);
    return CD_OK;
}

cd_status cd_report_add_calibrator(cd_report *r, const cd_calibrator *c, cd_error *err)
{
    if (!r || !c)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "report: no calibrator");
    cJSON *cal = section(r, "calibration");
    cJSON_AddStringToObject(cal, "method", cd_calib_method_name(c->method));
    cJSON_AddStringToObject(cal, "fitted_on", c->inputs_are_probs
                                                  ? "log-probabilities (logits unavailable)"
                                                  : "logits");
    cJSON_AddItemToObject(cal, "warning", c->warning[0] ? cJSON_CreateString(c->warning)
                                                        : cJSON_CreateNull());
    if (c->method == CD_CALIB_TEMPERATURE)
        cJSON_AddNumberToObject(cal, "temperature", c->params[0]);
    if (c->method == CD_CALIB_PLATT) {
        cJSON_AddNumberToObject(cal, "platt_a", c->params[0]);
        cJSON_AddNumberToObject(cal, "platt_b", c->params[1]);
    }
    cJSON_AddItemToObject(cal, "fit_nll_before", cd_report_num(c->nll_before));
    cJSON_AddItemToObject(cal, "fit_nll_after", cd_report_num(c->nll_after));
    return CD_OK;
}

static void conformal_settings(const cd_conformal_classifier *c, cJSON *o)
{
    cJSON_AddStringToObject(o, "score", cd_conformal_score_name(c->opts.score));
    cJSON_AddNumberToObject(o, "alpha", c->opts.alpha);
    cJSON_AddNumberToObject(o, "target_coverage", 1.0 - c->opts.alpha);
    cJSON_AddBoolToObject(o, "randomized",
                          c->opts.score != CD_CONFORMAL_LAC && !c->opts.deterministic);
    if (c->opts.score == CD_CONFORMAL_RAPS) {
        cJSON_AddNumberToObject(o, "lambda", c->opts.lambda);
        cJSON_AddNumberToObject(o, "k_reg", c->opts.k_reg);
    }
    cJSON_AddBoolToObject(o, "mondrian", c->opts.mondrian);
    cJSON_AddNumberToObject(o, "n_cal", (double)c->n_cal);
    cJSON_AddNumberToObject(o, "rank_k", (double)cd_conformal_rank(c->n_cal, c->opts.alpha));
    cJSON_AddItemToObject(o, "qhat", cd_report_num(c->qhat));
    /* Split conformal: 1−α <= coverage < 1−α + 1/(n+1) in expectation. */
    cJSON_AddNumberToObject(o, "coverage_upper_bound",
                            1.0 - c->opts.alpha + 1.0 / ((double)c->n_cal + 1.0));
}

cd_status cd_report_add_conformal(cd_report *r, const cd_conformal_classifier *c,
                                  const double *probs, const int *labels, size_t n,
                                  uint64_t seed, cd_error *err)
{
    if (!r || !c || !probs || !labels || n == 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "report: conformal section without data");
    size_t k = (size_t)c->k;
    unsigned char *in = malloc(n * k);
    int *size = malloc(n * sizeof(int));
    size_t *hist = calloc(k + 1, sizeof(size_t));
    cd_status st = (in && size && hist)
                       ? cd_conformal_predict(c, probs, n, seed, in, size, err)
                       : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "report: conformal sets");
    if (!st) {
        size_t covered = 0;
        double total = 0;
        for (size_t i = 0; i < n; i++) {
            covered += in[i * k + (size_t)labels[i]];
            total += size[i];
            hist[size[i]]++;
        }
        cJSON *o = section(r, "conformal");
        conformal_settings(c, o);
        cJSON_AddNumberToObject(o, "n_eval", (double)n);
        cJSON_AddNumberToObject(o, "empirical_coverage", (double)covered / (double)n);
        cJSON_AddNumberToObject(o, "mean_set_size", total / (double)n);
        cJSON *h = cJSON_AddArrayToObject(o, "set_size_histogram");
        for (size_t s = 0; s <= k; s++)
            cJSON_AddItemToArray(h, cJSON_CreateNumber((double)hist[s]));
    }
    free(in);
    free(size);
    free(hist);
    return st;
}

static const char *const kind_names[] = {"confidence", "entropy", "mi"};

cd_status cd_report_add_abstention(cd_report *r, const cd_abstention *a, const double *u,
                                   const unsigned char *correct, size_t n, cd_error *err)
{
    if (!r || !a || !u || !correct || n == 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "report: abstention without data");
    size_t accepted = 0, errors = 0;
    for (size_t i = 0; i < n; i++)
        if (cd_abstain_accept(a, u[i])) {
            accepted++;
            errors += !correct[i];
        }
    cJSON *o = section(r, "abstention");
    cJSON_AddStringToObject(o, "uncertainty", kind_names[a->kind]);
    cJSON_AddItemToObject(o, "threshold", cd_report_num(a->threshold));
    cJSON_AddNumberToObject(o, "target_risk", a->target_risk);
    cJSON_AddNumberToObject(o, "delta", a->delta);
    cJSON_AddNumberToObject(o, "confidence_level", 1.0 - a->delta);
    cJSON_AddBoolToObject(o, "feasible", a->feasible);
    cJSON *cal = cJSON_AddObjectToObject(o, "calibration");
    cJSON_AddNumberToObject(cal, "n", (double)a->n_cal);
    cJSON_AddNumberToObject(cal, "accepted", (double)a->accepted);
    cJSON_AddNumberToObject(cal, "coverage", a->coverage);
    cJSON_AddItemToObject(cal, "selective_risk",
                          cd_report_num(a->accepted ? (double)a->errors / (double)a->accepted
                                                    : NAN));
    cJSON_AddNumberToObject(cal, "risk_upper_bound", a->risk_upper);
    cJSON *ev = cJSON_AddObjectToObject(o, "evaluation");
    cJSON_AddNumberToObject(ev, "n", (double)n);
    cJSON_AddNumberToObject(ev, "accepted", (double)accepted);
    cJSON_AddNumberToObject(ev, "coverage", (double)accepted / (double)n);
    cJSON_AddNumberToObject(ev, "errors", (double)errors);
    cJSON_AddItemToObject(ev, "selective_risk",
                          cd_report_num(accepted ? (double)errors / (double)accepted : NAN));
    return CD_OK;
}

static cd_status check_section(cd_report *r, const char *sec, const char *key, cd_error *err)
{
    if (!r || !sec || !key || (strcmp(sec, "data") != 0 && strcmp(sec, "settings") != 0))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "report: fields go to \"data\" or \"settings\"");
    cJSON *o = section(r, sec);
    cJSON_DeleteItemFromObjectCaseSensitive(o, key); /* replace, never duplicate a key */
    return CD_OK;
}

cd_status cd_report_add_text(cd_report *r, const char *sec, const char *key, const char *value,
                             cd_error *err)
{
    cd_status st = check_section(r, sec, key, err);
    if (!st)
        cJSON_AddStringToObject(section(r, sec), key, value ? value : "");
    return st;
}

cd_status cd_report_add_number(cd_report *r, const char *sec, const char *key, double value,
                               cd_error *err)
{
    cd_status st = check_section(r, sec, key, err);
    if (!st)
        cJSON_AddItemToObject(section(r, sec), key, cd_report_num(value));
    return st;
}
