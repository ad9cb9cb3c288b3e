/* candor report: a calibration report from a CSV of predictions. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
            "  --seed S             bootstrap seed (default 0)\n");
}

typedef struct report_args {
    const char *predictions, *html, *json;
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
    long v;
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

static char *join_args(int argc, char **argv)
{
    size_t len = strlen("candor") + 1;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    strcpy(s, "candor");
    for (int i = 0; i < argc; i++) {
        strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

int cmd_report(int argc, char **argv)
{
    report_args a = {0};
    a.rep.bootstrap = -1; /* default: CD_BOOTSTRAP_DEFAULT */
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    cd_error err = {0};
    cd_predictions p;
    if (cd_predictions_read_csv(a.predictions, &a.csv, &p, &err))
        return cli_fail_err("report", &err);
    fprintf(stderr, "candor report: %zu samples, %d classes; computing metrics%s\n", p.n, p.k,
            a.rep.bootstrap != 0 ? " and bootstrap intervals" : "");
    char *cmdline = join_args(argc, argv);
    a.rep.command_line = cmdline;
    cd_report *r = NULL;
    cd_status st = cd_report_build(&p, &a.rep, &r, &err);
    /* Each output is written atomically (temp file + rename): a failure
     * never leaves a partial file behind. */
    if (!st && a.json)
        st = cd_report_write_json(r, a.json, &err);
    if (!st && a.html)
        st = cd_report_write_html(r, a.html, &err);
    cd_report_free(r);
    cd_predictions_clear(&p);
    free(cmdline);
    if (st)
        return cli_fail_err("report", &err);
    if (a.html)
        fprintf(stderr, "candor report: wrote %s\n", a.html);
    if (a.json)
        fprintf(stderr, "candor report: wrote %s\n", a.json);
    return 0;
}
