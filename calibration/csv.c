/* Strict reader for prediction CSVs (`candor report`): a header naming the
 * class columns plus one label column, then one row per sample. Every
 * error names the 1-based line (the header is line 1) and the column. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibration/calib_internal.h"
#include "core/internal.h"

void cd_predictions_clear(cd_predictions *p)
{
    if (!p)
        return;
    for (int c = 0; p->class_names && c < p->k; c++)
        free(p->class_names[c]);
    free(p->class_names);
    free(p->probs);
    free(p->logits);
    free(p->labels);
    free(p->source);
    memset(p, 0, sizeof *p);
}

/* Splits line in place at commas (no quoting: class names and numbers never
 * need it); trims spaces and a trailing CR. Returns the field count, or -1
 * when there are more than max fields. */
static int split_fields(char *line, char **fields, int max)
{
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = 0;
    int n = 0;
    char *s = line;
    for (;;) {
        if (n == max)
            return -1;
        char *comma = strchr(s, ',');
        if (comma)
            *comma = 0;
        while (*s == ' ' || *s == '\t')
            s++;
        char *e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            *--e = 0;
        fields[n++] = s;
        if (!comma)
            return n;
        s = comma + 1;
    }
}

typedef struct growable {
    double *probs;
    int *labels;
    size_t n, cap;
} growable;

static cd_status grow(growable *g, int k, cd_error *err)
{
    if (g->n < g->cap)
        return CD_OK;
    size_t cap = g->cap ? g->cap * 2 : 1024, bytes;
    if (!cd_mul_size(cap, (size_t)k * sizeof(double), &bytes))
        return cd_fail(err, CD_ERR_LIMIT, "predictions: too many rows");
    double *p = realloc(g->probs, bytes);
    if (p)
        g->probs = p;
    int *l = realloc(g->labels, cap * sizeof(int));
    if (l)
        g->labels = l;
    if (!p || !l)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "predictions: %zu rows", cap);
    g->cap = cap;
    return CD_OK;
}

typedef struct csv_layout {
    int columns;   /* fields per row */
    int label_col; /* index of the label column */
    int k;
} csv_layout;

static cd_status parse_header(char *line, const char *label_name, const char *path,
                              char **fields, int max, csv_layout *lay, cd_predictions *out,
                              cd_error *err)
{
    int nf = split_fields(line, fields, max);
    if (nf < 0)
        return cd_fail(err, CD_ERR_LIMIT, "%s: line 1: more than %d columns", path, max - 1);
    lay->columns = nf;
    lay->label_col = -1;
    for (int i = 0; i < nf; i++) {
        if (fields[i][0] == 0)
            return cd_fail(err, CD_ERR_PARSE, "%s: line 1: column %d has an empty name", path,
                           i + 1);
        if (strcmp(fields[i], label_name) == 0) {
            if (lay->label_col >= 0)
                return cd_fail(err, CD_ERR_PARSE, "%s: line 1: label column '%s' appears twice",
                               path, label_name);
            lay->label_col = i;
        }
    }
    if (lay->label_col < 0)
        return cd_fail(err, CD_ERR_PARSE, "%s: line 1: no label column '%s' in the header", path,
                       label_name);
    lay->k = nf - 1;
    if (lay->k < 2)
        return cd_fail(err, CD_ERR_PARSE, "%s: line 1: need at least 2 class columns, found %d",
                       path, lay->k);
    out->k = lay->k;
    out->class_names = calloc((size_t)lay->k, sizeof(char *));
    if (!out->class_names)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: header", path);
    for (int i = 0, c = 0; i < nf; i++)
        if (i != lay->label_col && !(out->class_names[c++] = cd_strdup(fields[i])))
            return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: header", path);
    return CD_OK;
}

static cd_status parse_label(const char *s, const cd_predictions *out, const char *path,
                             size_t line, int *label, cd_error *err)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s && *end == 0 && errno == 0) {
        if (v < 0 || v >= out->k)
            return cd_fail(err, CD_ERR_PARSE,
                           "%s: line %zu: label %ld outside the class range 0..%d", path, line, v,
                           out->k - 1);
        *label = (int)v;
        return CD_OK;
    }
    for (int c = 0; c < out->k; c++)
        if (strcmp(s, out->class_names[c]) == 0) {
            *label = c;
            return CD_OK;
        }
    return cd_fail(err, CD_ERR_PARSE,
                   "%s: line %zu: label '%s' is neither a class index 0..%d nor a class column name",
                   path, line, s, out->k - 1);
}

/* Parses one data row into row (k values) and label. */
static cd_status parse_row(char *line, size_t lineno, const csv_layout *lay,
                           const cd_csv_options *o, const char *path, char **fields, int max,
                           cd_predictions *out, double *row, int *label, cd_error *err)
{
    int nf = split_fields(line, fields, max);
    if (nf != lay->columns)
        return cd_fail(err, CD_ERR_PARSE, "%s: line %zu: %s columns (%d, header has %d)", path,
                       lineno, nf < 0 || nf > lay->columns ? "extra" : "missing",
                       nf < 0 ? max : nf, lay->columns);
    for (int i = 0, c = 0; i < nf; i++) {
        if (i == lay->label_col)
            continue;
        char *end;
        double v = strtod(fields[i], &end);
        if (fields[i][0] == 0 || *end != 0)
            return cd_fail(err, CD_ERR_PARSE, "%s: line %zu: column '%s': '%s' is not a number",
                           path, lineno, out->class_names[c], fields[i]);
        if (!isfinite(v))
            return cd_fail(err, CD_ERR_NUMERIC, "%s: line %zu: column '%s' is %s", path, lineno,
                           out->class_names[c], fields[i]);
        if (!o->logits && (v < 0 || v > 1))
            return cd_fail(err, CD_ERR_PARSE,
                           "%s: line %zu: column '%s': probability %s outside [0, 1]", path,
                           lineno, out->class_names[c], fields[i]);
        row[c++] = v;
    }
    return parse_label(fields[lay->label_col], out, path, lineno, label, err);
}

/* Probabilities must sum to 1 within the tolerance unless renormalising. */
static cd_status check_sum(double *row, int k, const cd_csv_options *o, double tol,
                           const char *path, size_t lineno, int *renormalized, cd_error *err)
{
    double s = 0;
    for (int c = 0; c < k; c++)
        s += row[c];
    if (fabs(s - 1.0) <= tol)
        return CD_OK;
    if (!o->renormalize || !(s > 0))
        return cd_fail(err, CD_ERR_PARSE,
                       "%s: line %zu: probabilities sum to %.6g, not 1 (tolerance %g; "
                       "--renormalize rescales rows, --logits reads logits)",
                       path, lineno, s, tol);
    for (int c = 0; c < k; c++)
        row[c] /= s;
    *renormalized = 1;
    return CD_OK;
}

static cd_status read_rows(FILE *f, const char *path, const cd_csv_options *o,
                           cd_predictions *out, cd_error *err)
{
    enum { MAX_FIELDS = 100001 };
    char **fields = malloc(MAX_FIELDS * sizeof(char *));
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    growable g = {0};
    csv_layout lay = {0};
    double tol = o->sum_tolerance > 0 ? o->sum_tolerance : 1e-3;
    cd_status st = fields ? CD_OK : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s", path);
    while (!st && getline(&line, &cap, f) != -1) {
        lineno++;
        if (lineno == 1) {
            st = parse_header(line, o->label_column ? o->label_column : "label", path, fields,
                              MAX_FIELDS, &lay, out, err);
            continue;
        }
        if (line[0] == '\n' || (line[0] == '\r' && line[1] == '\n') || line[0] == 0)
            continue; /* blank lines (e.g. a trailing one) carry no sample */
        if ((st = grow(&g, lay.k, err)))
            break;
        double *row = g.probs + g.n * (size_t)lay.k;
        st = parse_row(line, lineno, &lay, o, path, fields, MAX_FIELDS, out, row, &g.labels[g.n],
                       err);
        if (!st && !o->logits)
            st = check_sum(row, lay.k, o, tol, path, lineno, &out->renormalized, err);
        g.n++;
    }
    if (!st && lineno == 0)
        st = cd_fail(err, CD_ERR_PARSE, "%s: empty file (expected a header line)", path);
    else if (!st && g.n == 0)
        st = cd_fail(err, CD_ERR_PARSE, "%s: no data rows after the header", path);
    free(line);
    free(fields);
    out->n = g.n;
    out->labels = g.labels;
    if (o->logits)
        out->logits = g.probs;
    else
        out->probs = g.probs;
    return st;
}

cd_status cd_predictions_read_csv(const char *path, const cd_csv_options *opts,
                                  cd_predictions *out, cd_error *err)
{
    cd_csv_options defaults = {0};
    const cd_csv_options *o = opts ? opts : &defaults;
    memset(out, 0, sizeof *out);
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f)
        return cd_fail(err, CD_ERR_IO, "cannot open %s: %s", path ? path : "(null)",
                       strerror(errno));
    cd_status st = read_rows(f, path, o, out, err);
    fclose(f);
    if (!st && o->logits) {
        size_t total = out->n * (size_t)out->k;
        out->probs = malloc(total * sizeof(double));
        if (!out->probs)
            st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: probabilities", path);
        else
            cd_softmax_rows(out->logits, out->n, out->k, out->probs);
    }
    if (!st && !(out->source = cd_strdup(path)))
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s", path);
    if (!st)
        st = cd_sha256_file(path, out->sha256, err);
    if (st)
        cd_predictions_clear(out);
    return st;
}
