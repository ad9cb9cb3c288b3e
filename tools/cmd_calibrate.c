/* candor calibrate: runs a model over labelled data, splits it (seeded) into
 * a calibration and a test part, fits a calibration map, conformal sets and
 * an abstention rule on the calibration part, evaluates everything on both
 * parts, and writes the calibration file (+ optional report). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "calib_data.h"
#include "cli.h"
#include "mpi_shard.h"
#include "calibration/calib_internal.h"
#include "cli_util.h"

#define MAX_MEMBERS 32

static void usage(FILE *f)
{
    fprintf(f,
            "usage: candor calibrate MODEL --data D -o calib.json [options]\n\n"
            "Fits calibration (and conformal prediction sets, and optionally a\n"
            "risk-controlled abstention rule) on labelled data. D is a folder with one\n"
            "subfolder per class (sidecar label names, else sorted names = class order), a\n"
            "CSV of 'path,label' rows, or an .npy array (N,H,W or N,C,H,W; uint8 rows are\n"
            "images preprocessed as the sidecar says, float rows are model inputs) with\n"
            "--labels. The data is split (seeded) into a calibration part (fitting) and a\n"
            "test part (evaluation).\n\n"
            "options:\n"
            "  --data D              labelled data (required)\n"
            "  --labels FILE         labels for an .npy array (.npy integers or .txt lines)\n"
            "  -o, --output FILE     calibration file to write (required)\n"
            "  --force               overwrite an existing calibration file\n"
            "  --method M            temperature (default), vector, matrix, histogram,\n"
            "                        isotonic, platt (2 classes)\n"
            "  --split F             fraction used for calibration (default 0.5)\n"
            "  --seed S              split / randomisation seed (default 0)\n"
            "  --alpha A             conformal miscoverage (default 0.1)\n"
            "  --conformal S         lac (default), aps, raps or none\n"
            "  --raps-lambda L, --raps-kreg K   RAPS parameters (default: tuned on 20%% of\n"
            "                        the calibration part, which is then left out of q-hat)\n"
            "  --mondrian            class-conditional conformal thresholds\n"
            "  --abstain-target R    fit an abstention rule: selective error <= R ...\n"
            "  --abstain-confidence C  ... with confidence C (default 0.9)\n"
            "  --report FILE         HTML report      --json FILE   the report as JSON\n"
            "  --bins M              ECE bins (default 15)\n"
            "  --bootstrap B         bootstrap resamples for CIs (default 1000)\n"
            "  --batch N             rows per model run (default 64)\n"
            "  --threads N           threads (default: all cores)\n"
            "  --mc T                MC dropout with T samples (calibrates the mean probabilities)\n"
            "  --ensemble M.onnx ... more ensemble members (calibrates the mean probabilities)\n");
}

typedef struct cal_args {
    const char *model, *data, *labels, *out, *html, *json;
    cd_calib_method method;
    double split, alpha, abstain_target, abstain_conf, raps_lambda;
    int raps_kreg, conformal, mondrian, force, bins, bootstrap;
    uint64_t seed;
    calib_run_opts run;
    const char *members[MAX_MEMBERS];
    char *command_line;
} cal_args;

static int num_arg(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : NAN;
    if (!s || *end || errno || !(v >= lo && v <= hi))
        return cli_fail("calibrate: %s needs a number in [%g, %g], got '%s'", opt, lo, hi,
                        s ? s : "(missing)");
    *out = v;
    return 0;
}

static int parse_conformal(const char *s, int *out)
{
    static const char *const names[] = {"lac", "aps", "raps"};
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = i;
            return 0;
        }
    if (s && strcmp(s, "none") == 0) {
        *out = -1;
        return 0;
    }
    return cli_fail("calibrate: --conformal takes lac, aps, raps or none, got '%s'",
                    s ? s : "(missing)");
}

/* One option; returns the number of argv entries consumed, or -1 (error). */
static int parse_option(cal_args *a, int argc, char **argv, int i)
{
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    double x = 0;
    if (!strcmp(o, "--force"))
        return a->force = 1, 1;
    if (!strcmp(o, "--mondrian"))
        return a->mondrian = 1, 1;
    if (!strcmp(o, "--ensemble")) {
        int used = 1;
        while (i + used < argc && argv[i + used][0] != '-') {
            if (a->run.n_members >= MAX_MEMBERS)
                return cli_fail("calibrate: at most %d ensemble members", MAX_MEMBERS), -1;
            a->members[a->run.n_members++] = argv[i + used++];
        }
        return used > 1 ? used : (cli_fail("calibrate: --ensemble needs model files"), -1);
    }
    if (!v)
        return cli_fail("calibrate: %s needs a value", o), -1;
    if (!strcmp(o, "--data")) a->data = v;
    else if (!strcmp(o, "--labels")) a->labels = v;
    else if (!strcmp(o, "-o") || !strcmp(o, "--output")) a->out = v;
    else if (!strcmp(o, "--report")) a->html = v;
    else if (!strcmp(o, "--json")) a->json = v;
    else if (!strcmp(o, "--method")) {
        a->method = cd_calib_method_parse(v);
        if (a->method == CD_CALIB_NONE)
            return cli_fail("calibrate: unknown --method '%s'", v), -1;
    } else if (!strcmp(o, "--conformal")) {
        if (parse_conformal(v, &a->conformal))
            return -1;
    } else {
        struct { const char *name; double lo, hi; } lim[] = {
            {"--split", 0, 1}, {"--seed", 0, 4294967295.0}, {"--alpha", 0, 1},
            {"--abstain-target", 0, 1}, {"--abstain-confidence", 0, 1},
            {"--raps-lambda", 0, 1e6}, {"--raps-kreg", 0, 1e6}, {"--bins", 1, 1000},
            {"--bootstrap", 0, 1e6}, {"--batch", 1, 4096}, {"--threads", 0, 1024},
            {"--mc", 1, 100000}};
        int found = -1;
        for (int j = 0; j < (int)(sizeof lim / sizeof lim[0]); j++)
            if (!strcmp(o, lim[j].name))
                found = j;
        if (found < 0)
            return cli_fail("calibrate: unknown option '%s' (see --help)", o), -1;
        if (num_arg(o, v, lim[found].lo, lim[found].hi, &x))
            return -1;
        switch (found) {
        case 0: a->split = x; break;
        case 1: a->seed = (uint64_t)x; break;
        case 2: a->alpha = x; break;
        case 3: a->abstain_target = x; break;
        case 4: a->abstain_conf = x; break;
        case 5: a->raps_lambda = x; break;
        case 6: a->raps_kreg = (int)x; break;
        case 7: a->bins = (int)x; break;
        case 8: a->bootstrap = (int)x; break;
        case 9: a->run.batch = (int)x; break;
        case 10: a->run.threads = (int)x; break;
        default: a->run.mc_samples = (int)x; break;
        }
    }
    return 2;
}

/* Returns 0 when the arguments are usable, -1 after --help, else 2. */
static int parse_args(int argc, char **argv, cal_args *a)
{
    *a = (cal_args){.method = CD_CALIB_TEMPERATURE, .split = 0.5, .alpha = 0.1,
                    .abstain_conf = 0.9, .raps_lambda = -1, .raps_kreg = -1, .bootstrap = -1};
    for (int i = 1; i < argc;) {
        if (cli_is_help(argv[i]))
            return usage(stdout), -1;
        if (argv[i][0] != '-' || !argv[i][1]) {
            if (a->model)
                return cli_fail("calibrate: unexpected argument '%s'", argv[i]), 2;
            a->model = argv[i++];
            continue;
        }
        int used = parse_option(a, argc, argv, i);
        if (used < 0)
            return 2;
        i += used;
    }
    a->run.members = a->members;
    a->run.seed = a->seed;
    if (!a->model || !a->data || !a->out) {
        cli_fail("calibrate: MODEL, --data and -o are required");
        usage(stderr);
        return 2;
    }
    if (!(a->split > 0 && a->split < 1) || !(a->alpha > 0 && a->alpha < 1))
        return cli_fail("calibrate: --split and --alpha must lie strictly between 0 and 1"), 2;
    if (a->abstain_target != 0 && !(a->abstain_conf > 0 && a->abstain_conf < 1))
        return cli_fail("calibrate: --abstain-confidence must lie strictly between 0 and 1"), 2;
    FILE *f = a->force ? NULL : fopen(a->out, "rb");
    if (f) {
        fclose(f);
        return cli_fail("calibrate: %s already exists (use --force to overwrite)", a->out), 1;
    }
    a->command_line = cli_join_args(argc, argv);
    return 0;
}

/* ------------------------------------------------------------ the split */

/* splitmix64: a tiny, well-mixed generator; the split only needs to be
 * reproducible from the seed. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Fisher-Yates permutation of 0..n-1 (modulo bias < 2^-40 for n < 2^24). */
static size_t *permutation(size_t n, uint64_t seed)
{
    size_t *p = malloc((n ? n : 1) * sizeof(size_t));
    if (!p)
        return NULL;
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        p[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix64(&s) % i);
        size_t t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

/* One part of the data: its scores (logits or probabilities), labels,
 * probabilities before and after calibration. */
typedef struct part {
    size_t n;
    double *scores, *before, *after;
    int *labels;
} part;

static void part_free(part *p)
{
    free(p->scores);
    free(p->before);
    free(p->after);
    free(p->labels);
}

static int part_take(part *p, const double *scores, const int *labels, const size_t *idx,
                     size_t n, int k)
{
    p->n = n;
    p->scores = malloc(n * (size_t)k * sizeof(double));
    p->before = malloc(n * (size_t)k * sizeof(double));
    p->after = malloc(n * (size_t)k * sizeof(double));
    p->labels = malloc(n * sizeof(int));
    if (!p->scores || !p->before || !p->after || !p->labels)
        return -1;
    for (size_t i = 0; i < n; i++) {
        memcpy(p->scores + i * (size_t)k, scores + idx[i] * (size_t)k, (size_t)k * sizeof(double));
        p->labels[i] = labels[idx[i]];
    }
    return 0;
}

/* Probabilities of score rows: softmax of logits, or the rows themselves. */
static void to_probs(const part *p, int k, int is_probs)
{
    if (is_probs)
        memcpy(p->before, p->scores, p->n * (size_t)k * sizeof(double));
    else
        cd_softmax_rows(p->scores, p->n, k, p->before);
}

/* ---------------------------------------------------------- the fitting */

typedef struct fitted {
    cd_calibration_bundle bundle;
    size_t tune_rows; /* RAPS tuning rows (first rows of the calibration part) */
} fitted;

static cd_status fit_conformal(const cal_args *a, const part *cal, int k, fitted *f,
                               cd_error *err)
{
    cd_conformal_options co = {.score = (cd_conformal_score)a->conformal, .alpha = a->alpha,
                               .mondrian = a->mondrian, .seed = a->seed,
                               .lambda = a->raps_lambda, .k_reg = a->raps_kreg};
    const double *probs = cal->after;
    const int *labels = cal->labels;
    size_t n = cal->n;
    if (co.score == CD_CONFORMAL_RAPS && (a->raps_lambda < 0 || a->raps_kreg < 0)) {
        /* Tuning rows are kept out of the q-hat fit: reusing them would break
         * exchangeability between calibration and test scores. */
        size_t t = n / 5;
        if (t < 4 || n - t < 2)
            return cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "RAPS tuning needs at least "
                                 "22 calibration rows, got %zu (or pass --raps-lambda and "
                                 "--raps-kreg)", n);
        double lambda;
        int kreg;
        cd_status st = cd_conformal_tune_raps(probs, labels, t, k, a->alpha, a->seed, &lambda,
                                              &kreg, err);
        if (st)
            return st;
        co.lambda = a->raps_lambda >= 0 ? a->raps_lambda : lambda;
        co.k_reg = a->raps_kreg >= 0 ? a->raps_kreg : kreg;
        probs += t * (size_t)k;
        labels += t;
        n -= t;
        f->tune_rows = t;
        fprintf(stderr, "calibrate: RAPS tuned on %zu rows: lambda %g, k_reg %d\n", t,
                co.lambda, co.k_reg);
    }
    if (co.lambda < 0)
        co.lambda = 0;
    if (co.k_reg < 0)
        co.k_reg = 0;
    cd_calibration_bundle *b = &f->bundle;
    b->conformal_scores = malloc(n * sizeof(double));
    b->conformal_labels = malloc(n * sizeof(int));
    if (!b->conformal_scores || !b->conformal_labels)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(b->conformal_labels, labels, n * sizeof(int));
    cd_status st = cd_conformal_scores(probs, labels, n, k, &co, b->conformal_scores, err);
    if (!st)
        st = cd_conformal_fit(probs, labels, n, k, &co, &b->conformal, err);
    b->has_conformal = !st;
    return st;
}

static cd_status fit_abstention(const cal_args *a, const part *cal, int k, fitted *f,
                                cd_error *err)
{
    double *u = malloc(cal->n * sizeof(double));
    unsigned char *ok = malloc(cal->n);
    cd_status st = (u && ok) ? CD_OK : cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (!st) {
        cd_calib_confidences(cal->after, cal->labels, cal->n, k, u, ok);
        st = cd_abstention_fit(u, ok, cal->n, CD_UNC_CONFIDENCE, a->abstain_target,
                               1.0 - a->abstain_conf, &f->bundle.abstention, err);
        f->bundle.has_abstention = !st;
    }
    free(u);
    free(ok);
    return st;
}

/* ------------------------------------------------------------- outputs */

static char *provenance(const cal_args *a, const calib_dataset *d, const char *model_sha,
                        size_t n_cal, size_t n_test, int k, int is_probs, size_t tune_rows)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", a->model);
    cJSON_AddStringToObject(o, "model_sha256", model_sha);
    cJSON_AddStringToObject(o, "data", a->data);
    cJSON_AddStringToObject(o, "data_format", d->format);
    cJSON_AddStringToObject(o, "data_sha256", d->sha256);
    if (a->labels)
        cJSON_AddStringToObject(o, "labels", a->labels);
    cJSON_AddStringToObject(o, "classes", d->class_source ? d->class_source : "");
    cJSON_AddNumberToObject(o, "n", (double)d->n);
    cJSON_AddNumberToObject(o, "num_classes", k);
    cJSON_AddNumberToObject(o, "n_calibration", (double)n_cal);
    cJSON_AddNumberToObject(o, "n_test", (double)n_test);
    cJSON_AddNumberToObject(o, "raps_tuning_rows", (double)tune_rows);
    cJSON_AddNumberToObject(o, "split", a->split);
    cJSON_AddNumberToObject(o, "seed", (double)a->seed);
    cJSON_AddStringToObject(o, "split_rng", "splitmix64 Fisher-Yates; calibration = first part");
    cJSON_AddStringToObject(o, "scores", is_probs ? "probabilities" : "logits");
    cJSON_AddNumberToObject(o, "mc_samples", a->run.mc_samples > 1 ? a->run.mc_samples : 0);
    cJSON *m = cJSON_AddArrayToObject(o, "ensemble_members");
    for (int i = 0; i < a->run.n_members; i++)
        cJSON_AddItemToArray(m, cJSON_CreateString(a->members[i]));
    cJSON_AddStringToObject(o, "command_line", a->command_line ? a->command_line : "");
    cJSON_AddStringToObject(o, "generated_by", "candor " CANDOR_VERSION_STRING);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void class_names(const cd_model *m, int k, char **names)
{
    for (int c = 0; c < k; c++) {
        const char *l = c < cd_model_label_count(m) ? cd_model_label(m, c) : NULL;
        char buf[32];
        snprintf(buf, sizeof buf, "class %d", c);
        names[c] = strdup(l ? l : buf);
    }
}

static cd_status add_report_settings(cd_report *r, const cal_args *a, const calib_dataset *d,
                                     const char *model_sha, size_t n_cal, cd_error *err)
{
    cd_status st = cd_report_add_text(r, "data", "model", a->model, err);
    if (!st) st = cd_report_add_text(r, "data", "model_sha256", model_sha, err);
    if (!st) st = cd_report_add_text(r, "data", "data_format", d->format, err);
    if (!st) st = cd_report_add_text(r, "data", "classes", d->class_source, err);
    if (!st) st = cd_report_add_number(r, "data", "n_total", (double)d->n, err);
    if (!st) st = cd_report_add_number(r, "data", "n_calibration", (double)n_cal, err);
    if (!st) st = cd_report_add_text(r, "data", "input", "test split (held out), calibrated "
                                      "probabilities", err);
    if (!st) st = cd_report_add_text(r, "settings", "method", cd_calib_method_name(a->method), err);
    if (!st) st = cd_report_add_number(r, "settings", "split", a->split, err);
    if (!st) st = cd_report_add_number(r, "settings", "split_seed", (double)a->seed, err);
    if (!st) st = cd_report_add_number(r, "settings", "mc_samples",
                                       a->run.mc_samples > 1 ? a->run.mc_samples : 0, err);
    if (!st) st = cd_report_add_number(r, "settings", "ensemble_members",
                                       a->run.n_members ? a->run.n_members + 1 : 0, err);
    return st;
}

static cd_status write_report(const cal_args *a, const cd_model *m, const calib_dataset *d,
                              const char *model_sha, const part *cal, const part *test, int k,
                              const fitted *f, cd_error *err)
{
    char **names = calloc((size_t)k, sizeof(char *));
    if (!names)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    class_names(m, k, names);
    cd_predictions p = {.n = test->n, .k = k, .class_names = names, .probs = test->after,
                        .labels = test->labels, .source = (char *)a->data};
    memcpy(p.sha256, d->sha256, sizeof p.sha256);
    cd_report_options ro = {.bins = a->bins, .bootstrap = a->bootstrap, .seed = a->seed,
                            .command_line = a->command_line};
    cd_report *r = NULL;
    fprintf(stderr, "calibrate: building the report (bootstrap intervals)\n");
    cd_status st = cd_report_build(&p, &ro, &r, err);
    if (!st) st = cd_report_add_calibrator(r, f->bundle.calibrator, err);
    if (!st) st = cd_report_add_split(r, "calibration", cal->before, cal->after, cal->labels,
                                      cal->n, k, &ro, err);
    if (!st) st = cd_report_add_split(r, "test", test->before, test->after, test->labels,
                                      test->n, k, &ro, err);
    if (!st && f->bundle.has_conformal)
        st = cd_report_add_conformal(r, &f->bundle.conformal, test->after, test->labels,
                                     test->n, a->seed + 1, err);
    if (!st && f->bundle.has_abstention) {
        double *u = malloc(test->n * sizeof(double));
        unsigned char *ok = malloc(test->n);
        if (u && ok) {
            cd_calib_confidences(test->after, test->labels, test->n, k, u, ok);
            st = cd_report_add_abstention(r, &f->bundle.abstention, u, ok, test->n, err);
        } else {
            st = cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
        }
        free(u);
        free(ok);
    }
    if (!st) st = add_report_settings(r, a, d, model_sha, cal->n, err);
    if (!st && a->json) st = cd_report_write_json(r, a->json, err);
    if (!st && a->html) st = cd_report_write_html(r, a->html, err);
    cd_report_free(r);
    for (int c = 0; c < k; c++)
        free(names[c]);
    free(names);
    return st;
}

static void print_summary(const part *cal, const part *test, int k, const fitted *f,
                          const cal_args *a)
{
    cd_metric_options mo = {.bins = a->bins};
    cd_metrics m[4];
    const part *parts[2] = {cal, test};
    for (int i = 0; i < 4; i++)
        if (cd_metrics_compute(i % 2 ? parts[i / 2]->after : parts[i / 2]->before,
                               parts[i / 2]->labels, parts[i / 2]->n, k, &mo, &m[i], NULL))
            return;
    fprintf(stderr, "calibrate: %s; calibration split n=%zu: NLL %.4f -> %.4f, ECE %.4f -> "
                    "%.4f; test split n=%zu: NLL %.4f -> %.4f, ECE %.4f -> %.4f\n",
            cd_calib_method_name(a->method), cal->n, m[0].value[CD_METRIC_NLL],
            m[1].value[CD_METRIC_NLL], m[0].value[CD_METRIC_ECE], m[1].value[CD_METRIC_ECE],
            test->n, m[2].value[CD_METRIC_NLL], m[3].value[CD_METRIC_NLL],
            m[2].value[CD_METRIC_ECE], m[3].value[CD_METRIC_ECE]);
    double t = cd_calibrator_temperature(f->bundle.calibrator);
    if (!isnan(t))
        fprintf(stderr, "calibrate: temperature T = %.6g\n", t);
}

/* Splits, fits and writes; scores are n x k logits or probabilities. */
static cd_status calibrate(const cal_args *a, const cd_model *m, const calib_dataset *d,
                           const double *scores, int k, int is_probs, cd_error *err)
{
    size_t n_cal = (size_t)llround(a->split * (double)d->n);
    if (n_cal < 2 || n_cal >= d->n)
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "%zu rows with --split %g leave %zu "
                             "for calibration and %zu for testing; both need rows (>= 2 for "
                             "calibration)", d->n, a->split, n_cal, d->n - n_cal);
    char model_sha[65];
    cd_status st = cd_sha256_file(a->model, model_sha, err);
    size_t *perm = st ? NULL : permutation(d->n, a->seed);
    part cal = {0}, test = {0};
    fitted f = {0};
    if (!st && (!perm || part_take(&cal, scores, d->labels, perm, n_cal, k) ||
                part_take(&test, scores, d->labels, perm + n_cal, d->n - n_cal, k)))
        st = cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (!st) {
        to_probs(&cal, k, is_probs);
        to_probs(&test, k, is_probs);
        cd_fit_options fo = {.method = a->method, .l2 = -1, .inputs_are_probs = is_probs,
                             .bins = a->method == CD_CALIB_HISTOGRAM ? a->bins : 0};
        fprintf(stderr, "calibrate: fitting %s on %zu rows\n", cd_calib_method_name(a->method),
                cal.n);
        st = cd_calibrator_fit(cal.scores, cal.labels, cal.n, k, &fo, &f.bundle.calibrator, err);
    }
    if (!st && cd_calibrator_warning(f.bundle.calibrator))
        fprintf(stderr, "calibrate: warning: %s\n", cd_calibrator_warning(f.bundle.calibrator));
    if (!st)
        st = cd_calibrator_apply(f.bundle.calibrator, cal.scores, cal.n, cal.after, err);
    if (!st)
        st = cd_calibrator_apply(f.bundle.calibrator, test.scores, test.n, test.after, err);
    if (!st && a->conformal >= 0)
        st = fit_conformal(a, &cal, k, &f, err);
    if (!st && a->abstain_target > 0)
        st = fit_abstention(a, &cal, k, &f, err);
    if (!st) {
        print_summary(&cal, &test, k, &f, a);
        f.bundle.provenance_json = provenance(a, d, model_sha, cal.n, test.n, k, is_probs,
                                              f.tune_rows);
    }
    /* The report first: a failure there must not leave a calibration file.
     * If the calibration file then fails, reports this run created are
     * removed; a report that replaced an earlier one stays (it is complete,
     * and the earlier one is already gone). */
    bool had_html = a->html && access(a->html, F_OK) == 0;
    bool had_json = a->json && access(a->json, F_OK) == 0;
    if (!st && (a->html || a->json))
        st = write_report(a, m, d, model_sha, &cal, &test, k, &f, err);
    if (!st)
        st = cd_calibration_bundle_save(&f.bundle, a->out, a->force, err);
    if (st) {
        if (a->html && !had_html)
            remove(a->html);
        if (a->json && !had_json)
            remove(a->json);
    }
    cd_calibration_bundle_clear(&f.bundle);
    part_free(&cal);
    part_free(&test);
    free(perm);
    return st;
}

int cmd_calibrate(int argc, char **argv)
{
    cal_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    mpi_shard_start(); /* mpirun -n N: the model runs are sharded (docs/scale-out.md) */
    a.run.threads = mpi_shard_threads(a.run.threads);
    cd_error err = {0};
    cd_model *m = NULL;
    calib_dataset d = {0};
    double *scores = NULL;
    int k = 0, is_probs = 0;
    bool synced = false; /* all ranks went through calib_data_run's collectives */
    cd_status st = cd_model_load(a.model, NULL, &m, &err);
    int labels_k = m ? cd_model_label_count(m) : 0;
    if (!st)
        st = calib_data_load(m, a.data, a.labels, labels_k, &d, &err);
    if (!st) {
        fprintf(stderr, "calibrate: %zu labelled rows (%s; %s)\n", d.n, d.format,
                d.class_source ? d.class_source : "");
        st = calib_data_run(m, &d, &a.run, &scores, &k, &is_probs, &err);
        synced = true;
        if (mpi_shard_rank() != 0) { /* rank 0 fits and writes, from all ranks' outputs */
            free(scores);
            calib_data_free(&d);
            cd_model_free(m);
            free(a.command_line);
            return mpi_shard_finish(st ? 1 : 0);
        }
    }
    for (size_t i = 0; !st && i < d.n; i++)
        if (d.labels[i] >= k)
            st = cli_set_error(&err, CD_ERR_INVALID_ARGUMENT, "label %d of row %zu is outside "
                               "the model's %d classes", d.labels[i], i, k);
    if (!st && is_probs && (a.run.mc_samples > 1 || a.run.n_members > 0))
        fprintf(stderr, "calibrate: warning: calibrating the mean MC/ensemble probabilities "
                        "(fitted on their logarithms, not on logits)\n");
    if (!st)
        st = calibrate(&a, m, &d, scores, k, is_probs, &err);
    free(scores);
    calib_data_free(&d);
    cd_model_free(m);
    free(a.command_line);
    if (st)
        /* A rank that failed before the collectives aborts the job at exit. */
        return synced ? mpi_shard_finish(cli_fail_err("calibrate", &err))
                      : cli_fail_err("calibrate", &err);
    fprintf(stderr, "calibrate: wrote %s%s%s%s%s\n", a.out, a.html ? ", " : "",
            a.html ? a.html : "", a.json ? ", " : "", a.json ? a.json : "");
    return mpi_shard_finish(0);
}
