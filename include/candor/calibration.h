/* candor — calibration metrics, calibration fitting, conformal prediction,
 * risk-controlled abstention and calibration reports.
 *
 * Everything here works on plain arrays so it can audit any model's scores:
 * probabilities or logits are row-major double arrays of n rows x k classes,
 * labels are int class indices in [0, k). Definitions follow docs/calibration.md
 * (and GUIDE section 4); every function is reentrant (no global state).
 * Ownership: arrays passed in are borrowed; objects returned through out
 * pointers belong to the caller and are released with their _free function. */
#ifndef CANDOR_CALIBRATION_H
#define CANDOR_CALIBRATION_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Probabilities below this are clamped before taking logs (NLL, in nats). */
#define CD_NLL_CLAMP 1e-12
#define CD_ECE_DEFAULT_BINS 15
#define CD_BOOTSTRAP_DEFAULT 1000

/* ------------------------------------------------------------------ metrics */

typedef enum cd_metric_id {
    CD_METRIC_ACCURACY = 0,
    CD_METRIC_NLL,           /* nats, p clamped at 1e-12 */
    CD_METRIC_BRIER,         /* summed over classes, range [0, 2] */
    CD_METRIC_ECE,           /* equal-width bins ((m-1)/M, m/M] */
    CD_METRIC_ADAPTIVE_ECE,  /* M equal-mass groups of sorted confidence */
    CD_METRIC_MCE,           /* max gap over non-empty equal-width bins */
    CD_METRIC_CLASSWISE_ECE, /* mean over classes of one-vs-rest ECE */
    CD_METRIC_AUROC,         /* confidence separating correct from wrong (NaN if one group is empty) */
    CD_METRIC_AURC,          /* area under the risk-coverage curve */
    CD_METRIC_EXCESS_AURC,   /* AURC minus the oracle's AURC */
    CD_METRIC_COUNT
} cd_metric_id;

/* Stable machine name of a metric, e.g. "adaptive_ece". */
CD_API const char *cd_metric_name(cd_metric_id id);

typedef struct cd_metrics {
    double value[CD_METRIC_COUNT];
    /* Bootstrap percentile interval (NaN when not computed). */
    double ci_low[CD_METRIC_COUNT];
    double ci_high[CD_METRIC_COUNT];
} cd_metrics;

typedef struct cd_metric_options {
    int bins;            /* ECE bins M (0 = 15) */
    int bootstrap;       /* resamples B for CIs (0 = none, negative = 1000) */
    double ci_level;     /* e.g. 0.95 (0 = 0.95) */
    uint64_t seed;       /* GSL mt19937 seed for the bootstrap */
} cd_metric_options;

/* Computes every metric (and CIs if requested) on n rows of k probabilities.
 * Rows are used as given (not renormalised). */
CD_API cd_status cd_metrics_compute(const double *probs, const int *labels, size_t n, int k,
                                    const cd_metric_options *opts, cd_metrics *out,
                                    cd_error *err);

/* One equal-width reliability bin ((m-1)/M, m/M]; empty bins have count 0 and
 * accuracy/confidence NaN. */
typedef struct cd_reliability_bin {
    double lo, hi;
    size_t count;
    double accuracy;   /* fraction correct in the bin */
    double confidence; /* mean top-class probability in the bin */
} cd_reliability_bin;

/* Fills bins[0..m-1] from the top-class confidence. */
CD_API cd_status cd_reliability_bins(const double *probs, const int *labels, size_t n, int k,
                                     int m, cd_reliability_bin *bins, cd_error *err);

/* Risk-coverage curve at each distinct confidence threshold, most confident
 * first: coverage[j] = fraction with confidence >= t_j, risk[j] = error rate
 * among them. *points receives the count (<= n). Arrays of n entries are
 * supplied by the caller; threshold may be NULL. */
CD_API cd_status cd_risk_coverage(const double *probs, const int *labels, size_t n, int k,
                                  double *coverage, double *risk, double *threshold,
                                  size_t *points, cd_error *err);

/* Equal-width bin index (0-based) of p under ((m-1)/M, m/M]; 0 maps to bin 0. */
CD_API int cd_bin_index(double p, int m);

/* ------------------------------------------------------------------ fitting */

typedef enum cd_calib_method {
    CD_CALIB_NONE = 0,
    CD_CALIB_TEMPERATURE, /* softmax(z / T) */
    CD_CALIB_VECTOR,      /* softmax(w * z + b) */
    CD_CALIB_MATRIX,      /* softmax(W z + b), L2 pull of (W, b) toward (I, 0) */
    CD_CALIB_HISTOGRAM,   /* one-vs-rest equal-width histogram binning, renormalised */
    CD_CALIB_ISOTONIC,    /* one-vs-rest isotonic (PAV), renormalised */
    CD_CALIB_PLATT        /* K = 2 only: p1 = sigmoid(a * (z1 - z0) + b) */
} cd_calib_method;

CD_API const char *cd_calib_method_name(cd_calib_method m);
/* Parses "temperature", "vector", ... ; returns CD_CALIB_NONE if unknown. */
CD_API cd_calib_method cd_calib_method_parse(const char *name);

typedef struct cd_calibrator cd_calibrator;

typedef struct cd_fit_options {
    cd_calib_method method;
    int bins;              /* histogram bins (0 = 15) */
    double l2;             /* matrix scaling penalty lambda (negative = default 1e-4) */
    int inputs_are_probs;  /* 1: rows are probabilities, not logits (logs are taken;
                              the calibrator records a warning) */
} cd_fit_options;

/* Fits a calibrator on n rows. For temperature/vector/matrix/Platt the rows
 * should be logits; for histogram/isotonic either (softmax is applied to logits). */
CD_API cd_status cd_calibrator_fit(const double *scores, const int *labels, size_t n, int k,
                                   const cd_fit_options *opts, cd_calibrator **out,
                                   cd_error *err);
CD_API void cd_calibrator_free(cd_calibrator *c);
CD_API cd_calib_method cd_calibrator_method(const cd_calibrator *c);
CD_API int cd_calibrator_classes(const cd_calibrator *c);
/* 1 when the calibrator expects probabilities (it was fitted on them), 0 for logits. */
CD_API int cd_calibrator_inputs_are_probs(const cd_calibrator *c);
/* Temperature for CD_CALIB_TEMPERATURE, NaN otherwise. */
CD_API double cd_calibrator_temperature(const cd_calibrator *c);
/* A warning recorded during fitting (e.g. fitted on probabilities), or NULL. */
CD_API const char *cd_calibrator_warning(const cd_calibrator *c);
/* Maps n rows of the same kind used for fitting (logits or probabilities) to
 * calibrated probabilities out (n x k, caller-owned; may not alias scores). */
CD_API cd_status cd_calibrator_apply(const cd_calibrator *c, const double *scores, size_t n,
                                     double *out, cd_error *err);
/* JSON save (atomic: temp file + rename) and load. */
CD_API cd_status cd_calibrator_save(const cd_calibrator *c, const char *path, cd_error *err);
CD_API cd_status cd_calibrator_load(const char *path, cd_calibrator **out, cd_error *err);

/* Row-wise softmax of n x k logits into out (may alias). */
CD_API void cd_softmax_rows(const double *logits, size_t n, int k, double *out);

/* Pool-adjacent-violators: isotonic (non-decreasing) least-squares fit of y
 * (already ordered by x) with weights w (NULL = 1) into fit. */
CD_API cd_status cd_isotonic_pav(const double *y, const double *w, size_t n, double *fit,
                                 cd_error *err);

/* ---------------------------------------------------------------- conformal */

/* k = ceil((n+1)(1-alpha)); products within 1e-9 of an integer are taken as
 * that integer so decimal alphas behave as written. */
CD_API size_t cd_conformal_rank(size_t n, double alpha);
/* q̂ = k-th smallest of scores[0..n-1] (+inf when k > n), by selection (no sort,
 * scores untouched). */
CD_API cd_status cd_conformal_quantile(const double *scores, size_t n, double alpha,
                                       double *qhat, cd_error *err);

typedef enum cd_conformal_score {
    CD_CONFORMAL_LAC = 0, /* 1 - pi_y */
    CD_CONFORMAL_APS,     /* cumulative sorted mass, randomized by default */
    CD_CONFORMAL_RAPS     /* APS + lambda * max(0, rank - k_reg) */
} cd_conformal_score;

CD_API const char *cd_conformal_score_name(cd_conformal_score s);

typedef struct cd_conformal_options {
    cd_conformal_score score;
    double alpha;
    int deterministic;  /* APS/RAPS: 1 = non-randomized (U = 1) form */
    double lambda;      /* RAPS penalty */
    int k_reg;          /* RAPS free ranks */
    int mondrian;       /* 1 = class-conditional thresholds */
    uint64_t seed;      /* for U ~ Unif(0,1) */
} cd_conformal_options;

typedef struct cd_conformal_classifier {
    cd_conformal_options opts;
    int k;
    size_t n_cal;
    double qhat;        /* marginal threshold */
    double *class_qhat; /* k thresholds when mondrian (owned), else NULL */
} cd_conformal_classifier;

/* Calibrates on n rows of probabilities. */
CD_API cd_status cd_conformal_fit(const double *probs, const int *labels, size_t n, int k,
                                  const cd_conformal_options *opts,
                                  cd_conformal_classifier *out, cd_error *err);
/* The n calibration scores cd_conformal_fit uses (same U sequence), e.g. to
 * store them so q̂ can be recomputed for another alpha. */
CD_API cd_status cd_conformal_scores(const double *probs, const int *labels, size_t n, int k,
                                     const cd_conformal_options *opts, double *scores,
                                     cd_error *err);
CD_API void cd_conformal_clear(cd_conformal_classifier *c);
/* Prediction sets for n rows: in_set[i*k + y] = 1 when y is in row i's set;
 * set_size (optional) receives the sizes. rng_seed drives test-time U. */
CD_API cd_status cd_conformal_predict(const cd_conformal_classifier *c, const double *probs,
                                      size_t n, uint64_t rng_seed, unsigned char *in_set,
                                      int *set_size, cd_error *err);
/* Nonconformity score of label y for one row, given U (U = 1 for the
 * non-randomized form; ignored for LAC). */
CD_API double cd_conformal_class_score(const double *row, int k, int y,
                                       const cd_conformal_options *opts, double u);

typedef enum cd_regression_score {
    CD_REGRESSION_ABSOLUTE = 0, /* |y - mu| -> mu +- q */
    CD_REGRESSION_NORMALIZED,   /* |y - mu| / sigma -> mu +- q sigma */
    CD_REGRESSION_CQR           /* max(lo - y, y - hi) -> [lo - q, hi + q] */
} cd_regression_score;

/* Regression scores for n points. a/b: mu and sigma (normalized), mu and
 * ignored (absolute), q_lo and q_hi (CQR). */
CD_API cd_status cd_regression_scores(cd_regression_score s, const double *y, const double *a,
                                      const double *b, size_t n, double *scores,
                                      cd_error *err);
/* Interval for one point from q̂. */
CD_API void cd_regression_interval(cd_regression_score s, double a, double b, double qhat,
                                   double *lo, double *hi);

/* -------------------------------------------------------------- abstention */

typedef enum cd_uncertainty_kind {
    CD_UNC_CONFIDENCE = 0, /* higher = more certain */
    CD_UNC_ENTROPY,        /* higher = less certain */
    CD_UNC_MI              /* higher = less certain */
} cd_uncertainty_kind;

typedef struct cd_abstention {
    cd_uncertainty_kind kind;
    double threshold;     /* predict when certain enough (see cd_abstain_accept) */
    double target_risk;
    double delta;         /* 1 - confidence of the bound */
    size_t n_cal;
    size_t accepted;      /* calibration points accepted at the threshold */
    size_t errors;        /* errors among them */
    double coverage;      /* accepted / n_cal */
    double risk_upper;    /* Clopper-Pearson upper bound at the threshold */
    int feasible;         /* 0 when no threshold meets the target (abstain always) */
} cd_abstention;

/* Chooses the threshold on calibration values u (uncertainty of the given
 * kind) and correctness flags: among the thresholds at coverage g/20
 * (g = 1..20), the loosest whose one-sided Clopper-Pearson upper bound of
 * the selective error, at level delta/20 (union bound over the candidates),
 * is <= target_risk. risk_upper reports that bound. */
CD_API cd_status cd_abstention_fit(const double *u, const unsigned char *correct, size_t n,
                                   cd_uncertainty_kind kind, double target_risk,
                                   double delta, cd_abstention *out, cd_error *err);
/* 1 when a prediction with uncertainty value u is accepted, 0 = abstain. */
CD_API int cd_abstain_accept(const cd_abstention *a, double u);
/* Exact one-sided (1-delta) Clopper-Pearson upper bound for e errors in m
 * (the (1-delta) quantile of Beta(e+1, m-e)), by bisection to 1e-15. */
CD_API double cd_clopper_pearson_upper(size_t e, size_t m, double delta);

/* RAPS parameters tuned as Angelopoulos et al. (2021) suggest, on a tuning
 * part of the calibration data that must NOT be reused for the q̂ fit
 * (exchangeability): k_reg = the ⌈(n+1)(1−α)⌉-th smallest true-label rank
 * (1-based); λ from the grid {0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.5} giving the
 * smallest mean set size when q̂ is fitted on the first half of the tuning
 * rows and sets are built on the second half (ties: the smaller λ). */
CD_API cd_status cd_conformal_tune_raps(const double *probs, const int *labels, size_t n, int k,
                                        double alpha, uint64_t seed, double *lambda,
                                        int *k_reg, cd_error *err);

/* ---------------------------------------------------- calibration bundle */

/* Everything `candor calibrate` fits, as saved in one calibration file: the
 * scaling map, optionally conformal sets (with the calibration scores, so q̂
 * can be recomputed for another alpha) and an abstention rule. */
typedef struct cd_calibration_bundle {
    cd_calibrator *calibrator;        /* owned; never NULL in a loaded bundle */
    int has_conformal;
    cd_conformal_classifier conformal;
    double *conformal_scores;         /* n_cal scores (owned, may be NULL) */
    int *conformal_labels;            /* n_cal labels (owned, may be NULL) */
    int has_abstention;
    cd_abstention abstention;
    char *provenance_json;            /* JSON object text (settings, data fingerprint) or NULL */
} cd_calibration_bundle;

/* Saves atomically; refuses an existing file unless force (CD_ERR_IO). */
CD_API cd_status cd_calibration_bundle_save(const cd_calibration_bundle *b, const char *path,
                                            int force, cd_error *err);
/* Loads a calibration file; a file with only the scaling map (as written by
 * cd_calibrator_save) gives has_conformal = has_abstention = 0. */
CD_API cd_status cd_calibration_bundle_load(const char *path, cd_calibration_bundle *out,
                                            cd_error *err);
CD_API void cd_calibration_bundle_clear(cd_calibration_bundle *b);
/* Recomputes the conformal thresholds for another alpha from the saved
 * calibration scores (CD_ERR_INVALID_ARGUMENT when the file has none). */
CD_API cd_status cd_calibration_bundle_set_alpha(cd_calibration_bundle *b, double alpha,
                                                 cd_error *err);

/* ------------------------------------------------------------------ reports */

typedef struct cd_predictions {
    size_t n;
    int k;
    char **class_names;  /* k names from the CSV header (owned) */
    double *probs;       /* n x k probabilities (owned; softmax of logits if is_logits) */
    double *logits;      /* n x k logits when the input held logits, else NULL */
    int *labels;         /* n labels (owned) */
    int renormalized;    /* rows were rescaled to sum to 1 */
    char sha256[65];     /* hex digest of the input file */
    char *source;        /* input path (owned) */
} cd_predictions;

typedef struct cd_csv_options {
    const char *label_column; /* NULL = "label" */
    int logits;               /* columns hold logits */
    int renormalize;          /* rescale rows not summing to 1 (else refused) */
    double sum_tolerance;     /* 0 = 1e-3 */
} cd_csv_options;

/* Reads a predictions CSV strictly; errors name the row (1-based, header = row 1). */
CD_API cd_status cd_predictions_read_csv(const char *path, const cd_csv_options *opts,
                                         cd_predictions *out, cd_error *err);
CD_API void cd_predictions_clear(cd_predictions *p);

typedef struct cd_report_options {
    int bins;          /* 0 = 15 */
    int bootstrap;     /* 0 = none, negative = 1000 */
    uint64_t seed;
    const char *command_line; /* recorded verbatim in the report (may be NULL) */
} cd_report_options;

/* The report model (JSON object) built from predictions; rendered to JSON and
 * HTML by the functions below. Opaque; free with cd_report_free. */
typedef struct cd_report cd_report;

CD_API cd_status cd_report_build(const cd_predictions *p, const cd_report_options *opts,
                                 cd_report **out, cd_error *err);
CD_API void cd_report_free(cd_report *r);
/* Writes atomically (temp file in the same directory + rename). */
CD_API cd_status cd_report_write_json(const cd_report *r, const char *path, cd_error *err);
CD_API cd_status cd_report_write_html(const cd_report *r, const char *path, cd_error *err);

/* Optional report sections (schema in docs/calibration.md). */
/* Adds before/after-calibration metrics (with CIs as opts says) and
 * reliability bins for one data split under "calibration.splits". */
CD_API cd_status cd_report_add_split(cd_report *r, const char *name, const double *before,
                                     const double *after, const int *labels, size_t n, int k,
                                     const cd_report_options *opts, cd_error *err);
/* Records the fitted map (method, parameters summary, warning). */
CD_API cd_status cd_report_add_calibrator(cd_report *r, const cd_calibrator *c, cd_error *err);
/* Conformal section: settings, q̂, and on the n evaluation rows (probs after
 * calibration) the empirical coverage against 1−α and the set-size histogram. */
CD_API cd_status cd_report_add_conformal(cd_report *r, const cd_conformal_classifier *c,
                                         const double *probs, const int *labels, size_t n,
                                         uint64_t seed, cd_error *err);
/* Abstention section: the rule and, on n evaluation rows (u of the rule's
 * kind, correctness flags), the achieved coverage and selective risk. */
CD_API cd_status cd_report_add_abstention(cd_report *r, const cd_abstention *a, const double *u,
                                          const unsigned char *correct, size_t n,
                                          cd_error *err);
/* Adds a text or number field to the "data" or "settings" object. */
CD_API cd_status cd_report_add_text(cd_report *r, const char *section, const char *key,
                                    const char *value, cd_error *err);
CD_API cd_status cd_report_add_number(cd_report *r, const char *section, const char *key,
                                      double value, cd_error *err);

/* Writes size bytes to path atomically (temp file + rename); no partial file
 * is left behind on failure. */
CD_API cd_status cd_write_file_atomic(const char *path, const void *data, size_t size,
                                      cd_error *err);
/* SHA-256 of a file as 64 hex chars + NUL. */
CD_API cd_status cd_sha256_file(const char *path, char hex[65], cd_error *err);
/* SHA-256 of size bytes in memory. */
CD_API void cd_sha256_memory(const void *data, size_t size, char hex[65]);
/* Makes GSL report errors through return codes instead of aborting the
 * process (gsl_set_error_handler_off). GSL's handler is process-wide: every
 * calibration entry point calls this, and candor checks GSL return codes. */
CD_API void cd_calib_gsl_quiet(void);

#ifdef __cplusplus
}
#endif
#endif
