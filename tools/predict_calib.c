/* Calibrated predictions for `candor predict --calibration FILE`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "predict_calib.h"
#include "cli_util.h"

struct predict_calib {
    cd_calibration_bundle b;
    char *path;
};

int predict_calib_load(const char *path, double alpha, predict_calib **out)
{
    cd_error err = {0};
    predict_calib *pc = calloc(1, sizeof *pc);
    if (!pc)
        return cli_fail("predict: out of memory");
    cd_status st = cd_calibration_bundle_load(path, &pc->b, &err);
    if (!st && alpha > 0) {
        if (!pc->b.has_conformal)
            st = cli_set_error(&err, CD_ERR_INVALID_ARGUMENT,
                               "%s has no conformal part: --alpha needs one", path);
        else
            st = cd_calibration_bundle_set_alpha(&pc->b, alpha, &err);
    }
    pc->path = strdup(path);
    if (st || !pc->path) {
        predict_calib_free(pc);
        return st ? cli_fail_err("predict", &err) : cli_fail("predict: out of memory");
    }
    const char *warn = cd_calibrator_warning(pc->b.calibrator);
    if (warn)
        fprintf(stderr, "candor predict: calibration warning: %s\n", warn);
    *out = pc;
    return 0;
}

void predict_calib_free(predict_calib *pc)
{
    if (!pc)
        return;
    cd_calibration_bundle_clear(&pc->b);
    free(pc->path);
    free(pc);
}

/* Scores of the kind the calibrator was fitted on: logits, or probabilities
 * (softmax of logits when the model emits logits). */
static void calibrator_inputs(const predict_calib *pc, const float *y, int k,
                              bool outputs_are_probs, double *scores)
{
    for (int c = 0; c < k; c++)
        scores[c] = y[c];
    if (cd_calibrator_inputs_are_probs(pc->b.calibrator) && !outputs_are_probs)
        cd_softmax_rows(scores, 1, k, scores);
}

static uint64_t name_seed(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a: a per-input, reproducible U */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

typedef struct row_result {
    int top[64], n_top;
    int set_size;
    int accept; /* -1 = no abstention rule */
} row_result;

static void rank_top(const double *p, int k, int top, row_result *r)
{
    r->n_top = top < k ? top : k;
    if (r->n_top > 64)
        r->n_top = 64;
    for (int t = 0; t < r->n_top; t++) {
        int best = -1;
        for (int c = 0; c < k; c++) {
            bool used = false;
            for (int u = 0; u < t; u++)
                used |= r->top[u] == c;
            if (!used && (best < 0 || p[c] > p[best]))
                best = c;
        }
        r->top[t] = best;
    }
}

static void print_json(const predict_calib *pc, const cd_model *m, const char *name,
                       const double *p, int k, const unsigned char *set, const row_result *r,
                       bool first)
{
    char buf[32];
    printf("%s{\"input\":", first ? "" : ",\n");
    cli_json_str(stdout, name);
    printf(",\"calibration\":");
    cli_json_str(stdout, pc->path);
    printf(",\"method\":\"%s\",\"top\":[", cd_calib_method_name(cd_calibrator_method(pc->b.calibrator)));
    for (int t = 0; t < r->n_top; t++) {
        printf("%s{\"class\":%d,\"label\":", t ? "," : "", r->top[t]);
        cli_json_str(stdout, cli_label(m, r->top[t], buf, sizeof buf));
        printf(",\"probability\":%.6g}", p[r->top[t]]);
    }
    printf("],\"probabilities\":[");
    for (int c = 0; c < k; c++)
        printf(c ? ",%.6g" : "%.6g", p[c]);
    printf("]");
    if (pc->b.has_conformal) {
        printf(",\"alpha\":%.6g,\"prediction_set\":[", pc->b.conformal.opts.alpha);
        for (int c = 0, n = 0; c < k; c++)
            if (set[c]) {
                printf("%s{\"class\":%d,\"label\":", n++ ? "," : "", c);
                cli_json_str(stdout, cli_label(m, c, buf, sizeof buf));
                printf("}");
            }
        printf("]");
    }
    if (r->accept >= 0)
        printf(",\"abstain\":%s,\"decision\":\"%s\"", r->accept ? "false" : "true",
               r->accept ? "predict" : "abstain - refer");
    printf("}");
}

static void print_human(const predict_calib *pc, const cd_model *m, const char *name,
                        const double *p, int k, const unsigned char *set, const row_result *r)
{
    char buf[32];
    printf("%s  (calibrated: %s)\n", name,
           cd_calib_method_name(cd_calibrator_method(pc->b.calibrator)));
    for (int t = 0; t < r->n_top; t++)
        printf("  %-24s %6.2f%%\n", cli_label(m, r->top[t], buf, sizeof buf), 100.0 * p[r->top[t]]);
    if (pc->b.has_conformal) {
        printf("  prediction set (%.0f%% coverage): {", 100.0 * (1.0 - pc->b.conformal.opts.alpha));
        for (int c = 0, n = 0; c < k; c++)
            if (set[c])
                printf("%s%s", n++ ? ", " : "", cli_label(m, c, buf, sizeof buf));
        printf("}\n");
    }
    if (r->accept == 0 && !pc->b.abstention.feasible)
        printf("  decision: abstain \xe2\x80\x94 refer (no threshold met the target risk %.4g on "
               "the calibration data)\n", pc->b.abstention.target_risk);
    else if (r->accept == 0)
        printf("  decision: abstain \xe2\x80\x94 refer (%s not past the threshold %.4f)\n",
               pc->b.abstention.kind == CD_UNC_CONFIDENCE ? "confidence" : "uncertainty",
               pc->b.abstention.threshold);
    else if (r->accept == 1)
        printf("  decision: predict %s\n", cli_label(m, r->top[0], buf, sizeof buf));
}

/* The abstention rule's uncertainty of one calibrated row (MI needs samples:
 * NaN, which cd_abstain_accept never accepts). */
static double uncertainty(const cd_abstention *a, const double *p, int k)
{
    double best = p[0], h = 0;
    for (int c = 0; c < k; c++) {
        best = p[c] > best ? p[c] : best;
        h -= p[c] > 0 ? p[c] * log(p[c]) : 0;
    }
    return a->kind == CD_UNC_CONFIDENCE ? best : a->kind == CD_UNC_ENTROPY ? h : NAN;
}

int predict_calib_print(const predict_calib *pc, const cd_model *m, const char *path,
                        const float *outputs, long long rows, int k, bool outputs_are_probs,
                        int top, bool json, bool *first)
{
    if (k != cd_calibrator_classes(pc->b.calibrator))
        return cli_fail("predict: %s: the model gives %d classes but %s was fitted for %d", path,
                        k, pc->path, cd_calibrator_classes(pc->b.calibrator));
    double *scores = malloc(2 * (size_t)k * sizeof(double));
    unsigned char *set = calloc((size_t)k, 1);
    if (!scores || !set) {
        free(scores);
        free(set);
        return cli_fail("predict: out of memory");
    }
    double *p = scores + k;
    int rc = 0;
    for (long long r = 0; r < rows && !rc; r++) {
        char name[4096];
        snprintf(name, sizeof name, rows > 1 ? "%s[%lld]" : "%s", path, r);
        cd_error err = {0};
        calibrator_inputs(pc, outputs + r * k, k, outputs_are_probs, scores);
        row_result res = {.accept = -1};
        cd_status st = cd_calibrator_apply(pc->b.calibrator, scores, 1, p, &err);
        if (!st && pc->b.has_conformal)
            st = cd_conformal_predict(&pc->b.conformal, p, 1,
                                      pc->b.conformal.opts.seed + name_seed(name), set,
                                      &res.set_size, &err);
        if (st) {
            rc = cli_fail("predict: %s: %s", name, err.message);
            break;
        }
        rank_top(p, k, top, &res);
        if (pc->b.has_abstention)
            res.accept = cd_abstain_accept(&pc->b.abstention, uncertainty(&pc->b.abstention, p, k));
        if (json)
            print_json(pc, m, name, p, k, set, &res, *first);
        else
            print_human(pc, m, name, p, k, set, &res);
        *first = false;
    }
    free(scores);
    free(set);
    return rc;
}
