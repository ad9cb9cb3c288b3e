/* candor report: a calibration report from a CSV of predictions. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mpi_shard.h"
#include "calibration/calib_internal.h"
#include "cli_util.h"

static void report_usage(FILE *f)
{
    fprintf(f,
            "usage: candor report --predictions P.csv -o report.html [options]\n\n"
            "Calibration report (metrics with bootstrap CIs, reliability diagram, confidence\n"
            "histogram, risk-coverage curve, per-class table) from a CSV of model outputs.\n"
            "The CSV has a header: one column per class (probabilities, or logits with\n"
            "--logits) and a label column holding class indices 0..K-1 or class column names.\n\n"
            "options:\n"
            "  --predictions FILE   input CSV (required)\n"
            "  -o, --output FILE    HTML report (required unless --json is given)\n"
            "  --json FILE          the same content as JSON\n"
            "  --label-column NAME  label column name (default: label)\n"
            "  --logits             class columns hold logits (softmax is applied)\n"
            "  --renormalize        rescale probability rows that do not sum to 1 (+-1e-3)\n"
            "  --bins M             equal-width ECE bins (default 15)\n"
            "  --bootstrap B        bootstrap resamples for 95%% CIs (default 1000, 0 = none)\n"
            "  --seed S             bootstrap seed (default 0)\n"
            "  --calibration FILE   apply a calibration file (candor calibrate): adds metrics\n"
            "                       and reliability before/after calibration, and the file's\n"
            "                       conformal sets and abstention rule evaluated on this data;\n"
            "                       the main metrics and plots are then after calibration\n");
}

typedef struct report_args {
    const char *predictions, *html, *json, *calibration;
    cd_csv_options csv;
    cd_report_options rep;
} report_args;

static int parse_long(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || *end || errno || v < lo || v > hi)
        return cli_fail("report: %s needs an integer in [%ld, %ld], got '%s'", opt, lo, hi,
                        s ? s : "(missing)");
    *out = v;
    return 0;
}

/* Returns 0 on success, else the exit status. */
static int parse_args(int argc, char **argv, report_args *a)
{
    long v = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (cli_is_help(o)) {
            report_usage(stdout);
            return -1;
        } else if (strcmp(o, "--predictions") == 0) {
            a->predictions = next;
        } else if (strcmp(o, "-o") == 0 || strcmp(o, "--output") == 0) {
            a->html = next;
        } else if (strcmp(o, "--calibration") == 0) {
            a->calibration = next;
        } else if (strcmp(o, "--json") == 0) {
            a->json = next;
        } else if (strcmp(o, "--label-column") == 0) {
            a->csv.label_column = next;
        } else if (strcmp(o, "--bins") == 0) {
            if (parse_long(o, next, 1, 1000, &v))
                return 2;
            a->rep.bins = (int)v;
        } else if (strcmp(o, "--bootstrap") == 0) {
            if (parse_long(o, next, 0, 1000000, &v))
                return 2;
            a->rep.bootstrap = (int)v;
        } else if (strcmp(o, "--seed") == 0) {
            if (parse_long(o, next, 0, 2147483647L, &v))
                return 2;
            a->rep.seed = (uint64_t)v;
        } else if (strcmp(o, "--logits") == 0) {
            a->csv.logits = 1;
            takes = 0;
        } else if (strcmp(o, "--renormalize") == 0) {
            a->csv.renormalize = 1;
            takes = 0;
        } else {
            fprintf(stderr, "candor report: unknown option '%s'\n", o);
            report_usage(stderr);
            return 2;
        }
        if (takes && !next) {
            cli_fail("report: %s needs a value", o);
            return 2;
        }
        i += takes;
    }
    if (!a->predictions || (!a->html && !a->json)) {
        cli_fail("report: --predictions and -o (or --json) are required");
        report_usage(stderr);
        return 2;
    }
    return 0;
}

/* Confidence and correctness of calibrated rows, for the abstention section. */
static int confidences(const double *p, const int *labels, size_t n, int k, double **conf,
                       unsigned char **ok)
{
    *conf = malloc(n * sizeof(double));
    *ok = malloc(n);
    if (!*conf || !*ok)
        return -1;
    cd_calib_confidences(p, labels, n, k, *conf, *ok);
    return 0;
}

/* Sections from a calibration file evaluated on this data; p->probs already
 * holds the calibrated probabilities and before the uncalibrated ones. */
static cd_status add_calibration(cd_report *r, const cd_calibration_bundle *b,
                                 const cd_predictions *p, const double *before,
                                 const report_args *a, cd_error *err)
{
    cd_status st = cd_report_add_calibrator(r, b->calibrator, err);
    if (!st)
        st = cd_report_add_split(r, "data", before, p->probs, p->labels, p->n, p->k, &a->rep,
                                 err);
    if (!st && b->has_conformal)
        st = cd_report_add_conformal(r, &b->conformal, p->probs, p->labels, p->n,
                                     a->rep.seed + 1, err);
    if (!st && b->has_abstention) {
        if (b->abstention.kind != CD_UNC_CONFIDENCE)
            return cd_report_add_text(r, "settings", "abstention",
                                      "not evaluated: the rule needs MC/ensemble uncertainty",
                                      err);
        double *u = NULL;
        unsigned char *ok = NULL;
        st = confidences(p->probs, p->labels, p->n, p->k, &u, &ok)
                 ? cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory")
                 : cd_report_add_abstention(r, &b->abstention, u, ok, p->n, err);
        free(u);
        free(ok);
    }
    if (!st)
        st = cd_report_add_text(r, "settings", "calibration_file", a->calibration, err);
    return st;
}

/* Replaces p->probs by calibrated probabilities; *before keeps the old ones. */
static cd_status apply_calibration(const cd_calibration_bundle *b, cd_predictions *p,
                                   double **before, cd_error *err)
{
    const cd_calibrator *c = b->calibrator;
    if (cd_calibrator_classes(c) != p->k)
        return cli_set_error(err, CD_ERR_SHAPE, "the calibration file is for %d classes, the "
                             "CSV has %d", cd_calibrator_classes(c), p->k);
    if (!cd_calibrator_inputs_are_probs(c) && !p->logits)
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "the calibration file maps logits: "
                             "give a CSV of logits with --logits");
    double *after = malloc(p->n * (size_t)p->k * sizeof(double));
    if (!after)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    const double *in = cd_calibrator_inputs_are_probs(c) ? p->probs : p->logits;
    cd_status st = cd_calibrator_apply(c, in, p->n, after, err);
    if (st) {
        free(after);
        return st;
    }
    *before = p->probs;
    p->probs = after;
    return CD_OK;
}

int cmd_report(int argc, char **argv)
{
    report_args a = {0};
    a.rep.bootstrap = -1; /* default: CD_BOOTSTRAP_DEFAULT */
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    /* mpirun -n N: one CSV, reported by rank 0 alone (docs/scale-out.md). */
    if (mpi_shard_start() && mpi_shard_rank() != 0)
        return mpi_shard_finish(0);
    cd_error err = {0};
    cd_predictions p;
    if (cd_predictions_read_csv(a.predictions, &a.csv, &p, &err))
        return mpi_shard_finish(cli_fail_err("report", &err));
    fprintf(stderr, "candor report: %zu samples, %d classes; computing metrics%s\n", p.n, p.k,
            a.rep.bootstrap != 0 ? " and bootstrap intervals" : "");
    char *cmdline = cli_join_args(argc, argv);
    a.rep.command_line = cmdline;
    cd_report *r = NULL;
    cd_calibration_bundle bundle = {0};
    double *before = NULL;
    cd_status st = CD_OK;
    if (a.calibration) {
        st = cd_calibration_bundle_load(a.calibration, &bundle, &err);
        if (!st)
            st = apply_calibration(&bundle, &p, &before, &err);
    }
    if (!st)
        st = cd_report_build(&p, &a.rep, &r, &err);
    if (!st && a.calibration)
        st = add_calibration(r, &bundle, &p, before, &a, &err);
    if (!st && a.calibration)
        st = cd_report_add_text(r, "data", "input", "calibrated probabilities", &err);
    /* Each output is written atomically (temp file + rename): a failure
     * never leaves a partial file behind. */
    if (!st && a.json)
        st = cd_report_write_json(r, a.json, &err);
    if (!st && a.html)
        st = cd_report_write_html(r, a.html, &err);
    cd_report_free(r);
    cd_calibration_bundle_clear(&bundle);
    free(before); /* the uncalibrated rows (p.probs now holds the calibrated ones) */
    cd_predictions_clear(&p);
    free(cmdline);
    if (st)
        return mpi_shard_finish(cli_fail_err("report", &err));
    if (a.html)
        fprintf(stderr, "candor report: wrote %s\n", a.html);
    if (a.json)
        fprintf(stderr, "candor report: wrote %s\n", a.json);
    return mpi_shard_finish(0);
}
