/* Calibration JSON (docs/calibration.md, "Calibration file"):
 * { "format": "candor-calibration", "version": 1, "method": "...",
 *   "num_classes": K, "input": "logits"|"probabilities", ... method fields } */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "calibration/calibrator.h"
#include "core/internal.h"

static cJSON *number_array(const double *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static void add_method_fields(const cd_calibrator *c, cJSON *root)
{
    int k = c->k;
    switch (c->method) {
    case CD_CALIB_TEMPERATURE:
        cJSON_AddNumberToObject(root, "temperature", c->params[0]);
        break;
    case CD_CALIB_VECTOR:
        cJSON_AddItemToObject(root, "w", number_array(c->params, (size_t)k));
        cJSON_AddItemToObject(root, "b", number_array(c->params + k, (size_t)k));
        break;
    case CD_CALIB_MATRIX:
        cJSON_AddItemToObject(root, "W", number_array(c->params, (size_t)k * k));
        cJSON_AddItemToObject(root, "b", number_array(c->params + (size_t)k * k, (size_t)k));
        cJSON_AddNumberToObject(root, "l2", c->l2);
        break;
    case CD_CALIB_PLATT:
        cJSON_AddNumberToObject(root, "a", c->params[0]);
        cJSON_AddNumberToObject(root, "b", c->params[1]);
        break;
    case CD_CALIB_HISTOGRAM:
        cJSON_AddNumberToObject(root, "bins", c->bins);
        cJSON_AddItemToObject(root, "values", number_array(c->hist, (size_t)k * c->bins));
        break;
    case CD_CALIB_ISOTONIC: {
        cJSON *classes = cJSON_AddArrayToObject(root, "classes");
        for (int j = 0; j < k; j++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToObject(o, "x", number_array(c->iso_x[j], c->iso_len[j]));
            cJSON_AddItemToObject(o, "y", number_array(c->iso_y[j], c->iso_len[j]));
            cJSON_AddItemToArray(classes, o);
        }
        break;
    }
    default:
        break;
    }
}

static cJSON *calibrator_json(const cd_calibrator *c)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON_AddStringToObject(root, "format", "candor-calibration");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "method", cd_calib_method_name(c->method));
    cJSON_AddNumberToObject(root, "num_classes", c->k);
    cJSON_AddStringToObject(root, "input", c->inputs_are_probs ? "probabilities" : "logits");
    if (c->warning[0])
        cJSON_AddStringToObject(root, "warning", c->warning);
    if (!isnan(c->nll_before)) {
        cJSON_AddNumberToObject(root, "fit_nll_before", c->nll_before);
        cJSON_AddNumberToObject(root, "fit_nll_after", c->nll_after);
    }
    add_method_fields(c, root);
    return root;
}

static cd_status save_json(cJSON *root, const char *path, cd_error *err)
{
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "calibration save: JSON text");
    cd_status st = cd_write_file_atomic(path, text, strlen(text), err);
    cJSON_free(text);
    return st;
}

cd_status cd_calibrator_save(const cd_calibrator *c, const char *path, cd_error *err)
{
    if (!c || !path)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "calibration save: NULL argument");
    cJSON *root = calibrator_json(c);
    if (!root)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "calibration save");
    return save_json(root, path, err);
}

/* Reads exactly n numbers from array field name into dst. */
static cd_status read_numbers(const cJSON *root, const char *name, double *dst, size_t n,
                              const char *path, cd_error *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!cJSON_IsArray(a) || (size_t)cJSON_GetArraySize(a) != n)
        return cd_fail(err, CD_ERR_PARSE, "%s: field '%s' must be an array of %zu numbers", path,
                       name, n);
    size_t i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a)
    {
        if (!cJSON_IsNumber(v))
            return cd_fail(err, CD_ERR_PARSE, "%s: field '%s'[%zu] is not a number", path, name,
                           i);
        dst[i++] = v->valuedouble;
    }
    return CD_OK;
}

static cd_status read_number(const cJSON *root, const char *name, double *dst, const char *path,
                             cd_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!cJSON_IsNumber(v))
        return cd_fail(err, CD_ERR_PARSE, "%s: missing number field '%s'", path, name);
    *dst = v->valuedouble;
    return CD_OK;
}

static cd_status read_isotonic(cd_calibrator *c, const cJSON *root, const char *path,
                               cd_error *err)
{
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(root, "classes");
    if (!cJSON_IsArray(classes) || cJSON_GetArraySize(classes) != c->k)
        return cd_fail(err, CD_ERR_PARSE, "%s: 'classes' must hold %d entries", path, c->k);
    c->iso_x = calloc((size_t)c->k, sizeof(double *));
    c->iso_y = calloc((size_t)c->k, sizeof(double *));
    c->iso_len = calloc((size_t)c->k, sizeof(size_t));
    if (!c->iso_x || !c->iso_y || !c->iso_len)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: isotonic tables", path);
    for (int j = 0; j < c->k; j++) {
        const cJSON *o = cJSON_GetArrayItem(classes, j);
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, "x");
        size_t len = cJSON_IsArray(x) ? (size_t)cJSON_GetArraySize(x) : 0;
        c->iso_x[j] = malloc((len ? len : 1) * sizeof(double));
        c->iso_y[j] = malloc((len ? len : 1) * sizeof(double));
        if (!c->iso_x[j] || !c->iso_y[j])
            return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: isotonic class %d", path, j);
        c->iso_len[j] = len;
        cd_status st = read_numbers(o, "x", c->iso_x[j], len, path, err);
        if (!st)
            st = read_numbers(o, "y", c->iso_y[j], len, path, err);
        if (st)
            return st;
    }
    return CD_OK;
}

static cd_status read_method_fields(cd_calibrator *c, const cJSON *root, const char *path,
                                    cd_error *err)
{
    size_t k = (size_t)c->k;
    cd_status st = CD_OK;
    switch (c->method) {
    case CD_CALIB_TEMPERATURE:
        st = read_number(root, "temperature", &c->params[0], path, err);
        if (!st && !(c->params[0] > 0))
            st = cd_fail(err, CD_ERR_PARSE, "%s: temperature must be > 0", path);
        return st;
    case CD_CALIB_VECTOR:
        st = read_numbers(root, "w", c->params, k, path, err);
        return st ? st : read_numbers(root, "b", c->params + k, k, path, err);
    case CD_CALIB_MATRIX:
        st = read_numbers(root, "W", c->params, k * k, path, err);
        return st ? st : read_numbers(root, "b", c->params + k * k, k, path, err);
    case CD_CALIB_PLATT:
        st = read_number(root, "a", &c->params[0], path, err);
        return st ? st : read_number(root, "b", &c->params[1], path, err);
    case CD_CALIB_HISTOGRAM:
        c->hist = malloc(k * (size_t)c->bins * sizeof(double));
        if (!c->hist)
            return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: histogram", path);
        return read_numbers(root, "values", c->hist, k * (size_t)c->bins, path, err);
    case CD_CALIB_ISOTONIC:
        return read_isotonic(c, root, path, err);
    default:
        return cd_fail(err, CD_ERR_UNSUPPORTED, "%s: unknown method", path);
    }
}

/* Array field name must hold exactly n entries: checked before anything is
 * allocated for it, so a file cannot make the loader allocate for a size it
 * only declares ("num_classes": 20000 with method "matrix" would be 3 GB of
 * weights in a 100-byte file; fuzzing found it). */
static cd_status check_count(const cJSON *root, const char *name, size_t n, const char *path,
                             cd_error *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!cJSON_IsArray(a) || (size_t)cJSON_GetArraySize(a) != n)
        return cd_fail(err, CD_ERR_PARSE, "%s: field '%s' must be an array of %zu entries",
                       path, name, n);
    return CD_OK;
}

/* The declared sizes against the arrays present, per method. */
static cd_status check_declared_sizes(const cJSON *root, cd_calib_method m, size_t k, size_t nb,
                                      const char *path, cd_error *err)
{
    cd_status st = CD_OK;
    switch (m) {
    case CD_CALIB_VECTOR:
        st = check_count(root, "w", k, path, err);
        return st ? st : check_count(root, "b", k, path, err);
    case CD_CALIB_MATRIX:
        st = check_count(root, "W", k * k, path, err); /* k <= 1e6: no overflow */
        return st ? st : check_count(root, "b", k, path, err);
    case CD_CALIB_HISTOGRAM:
        return check_count(root, "values", k * nb, path, err);
    case CD_CALIB_ISOTONIC:
        return check_count(root, "classes", k, path, err);
    default:
        return CD_OK;
    }
}

static cd_status parse_calibrator(const cJSON *root, const char *path, cd_calibrator **out,
                                  cd_error *err)
{
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(root, "method");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "num_classes");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, "input");
    const cJSON *bins = cJSON_GetObjectItemCaseSensitive(root, "bins");
    cd_calib_method m = cd_calib_method_parse(cJSON_GetStringValue(method));
    if (m == CD_CALIB_NONE)
        return cd_fail(err, CD_ERR_PARSE, "%s: field 'method' missing or unknown", path);
    if (!cJSON_IsNumber(k) || k->valuedouble < 2 || k->valuedouble > 1e6)
        return cd_fail(err, CD_ERR_PARSE, "%s: field 'num_classes' must be 2..1000000", path);
    /* Range-checked before the conversion: an out-of-range double -> int is UB. */
    double bins_v = cJSON_IsNumber(bins) ? bins->valuedouble : 0;
    int nb = bins_v >= 1 && bins_v <= 100000 ? (int)bins_v : 0;
    if (m == CD_CALIB_HISTOGRAM && (nb < 1 || nb > 100000))
        return cd_fail(err, CD_ERR_PARSE, "%s: field 'bins' must be 1..100000", path);
    cd_status st = check_declared_sizes(root, m, (size_t)k->valuedouble, (size_t)nb, path, err);
    if (st)
        return st;
    int probs = cJSON_IsString(input) && strcmp(input->valuestring, "probabilities") == 0;
    cd_calibrator *c = cd_calibrator_new(m, (int)k->valuedouble, probs, nb);
    if (!c)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: calibrator", path);
    const char *warn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "warning"));
    if (warn)
        snprintf(c->warning, sizeof c->warning, "%s", warn);
    st = read_method_fields(c, root, path, err);
    if (st) {
        cd_calibrator_free(c);
        return st;
    }
    *out = c;
    return CD_OK;
}

static cd_status read_json_file(const char *path, cJSON **out, cd_error *err)
{
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f)
        return cd_fail(err, CD_ERR_IO, "cannot open calibration file %s", path ? path : "(null)");
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *t = realloc(text, cap);
            if (!t) {
                free(text);
                fclose(f);
                return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: reading", path);
            }
            text = t;
        }
        size_t got = fread(text + len, 1, 4096, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    text[len] = 0;
    *out = cJSON_Parse(text);
    free(text);
    if (!*out)
        return cd_fail(err, CD_ERR_PARSE, "%s: not valid JSON", path);
    return CD_OK;
}

cd_status cd_calibrator_load(const char *path, cd_calibrator **out, cd_error *err)
{
    cJSON *root = NULL;
    cd_status st = read_json_file(path, &root, err);
    if (st)
        return st;
    st = parse_calibrator(root, path, out, err);
    cJSON_Delete(root);
    return st;
}

/* ------------------------------------------------------ calibration bundle */

static const char *const unc_kind_names[] = {"confidence", "entropy", "mi"};

static cJSON *conformal_json(const cd_calibration_bundle *b)
{
    const cd_conformal_classifier *c = &b->conformal;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "score", cd_conformal_score_name(c->opts.score));
    cJSON_AddNumberToObject(o, "alpha", c->opts.alpha);
    cJSON_AddBoolToObject(o, "randomized", c->opts.score != CD_CONFORMAL_LAC &&
                                               !c->opts.deterministic);
    cJSON_AddNumberToObject(o, "lambda", c->opts.lambda);
    cJSON_AddNumberToObject(o, "k_reg", c->opts.k_reg);
    cJSON_AddBoolToObject(o, "mondrian", c->opts.mondrian);
    cJSON_AddNumberToObject(o, "seed", (double)c->opts.seed);
    cJSON_AddNumberToObject(o, "n_cal", (double)c->n_cal);
    /* +inf (k > n) is not a JSON number: null means "every label". */
    cJSON_AddItemToObject(o, "qhat", isfinite(c->qhat) ? cJSON_CreateNumber(c->qhat)
                                                       : cJSON_CreateNull());
    if (c->class_qhat) {
        cJSON *a = cJSON_AddArrayToObject(o, "class_qhat");
        for (int y = 0; y < c->k; y++)
            cJSON_AddItemToArray(a, isfinite(c->class_qhat[y])
                                        ? cJSON_CreateNumber(c->class_qhat[y])
                                        : cJSON_CreateNull());
    }
    if (b->conformal_scores) {
        cJSON_AddItemToObject(o, "scores", number_array(b->conformal_scores, c->n_cal));
        cJSON *l = cJSON_AddArrayToObject(o, "labels");
        for (size_t i = 0; b->conformal_labels && i < c->n_cal; i++)
            cJSON_AddItemToArray(l, cJSON_CreateNumber(b->conformal_labels[i]));
    }
    return o;
}

static cJSON *abstention_json(const cd_abstention *a)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "uncertainty", unc_kind_names[a->kind]);
    cJSON_AddItemToObject(o, "threshold", isfinite(a->threshold)
                                              ? cJSON_CreateNumber(a->threshold)
                                              : cJSON_CreateNull());
    cJSON_AddNumberToObject(o, "target_risk", a->target_risk);
    cJSON_AddNumberToObject(o, "delta", a->delta);
    cJSON_AddNumberToObject(o, "n_cal", (double)a->n_cal);
    cJSON_AddNumberToObject(o, "accepted", (double)a->accepted);
    cJSON_AddNumberToObject(o, "errors", (double)a->errors);
    cJSON_AddNumberToObject(o, "coverage", a->coverage);
    cJSON_AddNumberToObject(o, "risk_upper", a->risk_upper);
    cJSON_AddBoolToObject(o, "feasible", a->feasible);
    return o;
}

cd_status cd_calibration_bundle_save(const cd_calibration_bundle *b, const char *path,
                                     int force, cd_error *err)
{
    if (!b || !b->calibrator || !path)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "calibration save: NULL argument");
    FILE *exists = force ? NULL : fopen(path, "rb");
    if (exists) {
        fclose(exists);
        return cd_fail(err, CD_ERR_IO, "%s already exists (use --force to overwrite)", path);
    }
    cJSON *root = calibrator_json(b->calibrator);
    if (!root)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "calibration save");
    if (b->has_conformal)
        cJSON_AddItemToObject(root, "conformal", conformal_json(b));
    if (b->has_abstention)
        cJSON_AddItemToObject(root, "abstention", abstention_json(&b->abstention));
    if (b->provenance_json) {
        cJSON *prov = cJSON_Parse(b->provenance_json);
        if (!cJSON_IsObject(prov)) {
            cJSON_Delete(prov);
            cJSON_Delete(root);
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                           "calibration save: provenance is not a JSON object");
        }
        cJSON_AddItemToObject(root, "provenance", prov);
    }
    return save_json(root, path, err);
}

/* A number or null (= +inf, "every label"). */
static cd_status read_threshold(const cJSON *o, const char *name, double *dst,
                                const char *path, cd_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (cJSON_IsNull(v)) {
        *dst = INFINITY;
        return CD_OK;
    }
    if (!cJSON_IsNumber(v))
        return cd_fail(err, CD_ERR_PARSE, "%s: missing number field '%s'", path, name);
    *dst = v->valuedouble;
    return CD_OK;
}

static cd_status read_conformal_scores(cd_calibration_bundle *b, const cJSON *o,
                                       const char *path, cd_error *err)
{
    const cJSON *scores = cJSON_GetObjectItemCaseSensitive(o, "scores");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(o, "labels");
    if (!scores)
        return CD_OK; /* optional: then alpha cannot be changed */
    size_t n = b->conformal.n_cal;
    b->conformal_scores = malloc((n ? n : 1) * sizeof(double));
    b->conformal_labels = malloc((n ? n : 1) * sizeof(int));
    if (!b->conformal_scores || !b->conformal_labels)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: conformal scores", path);
    cd_status st = read_numbers(o, "scores", b->conformal_scores, n, path, err);
    if (st)
        return st;
    if (!cJSON_IsArray(labels) || (size_t)cJSON_GetArraySize(labels) != n)
        return cd_fail(err, CD_ERR_PARSE, "%s: conformal.labels must hold %zu labels", path, n);
    size_t i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, labels)
    {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= b->conformal.k)
            return cd_fail(err, CD_ERR_PARSE, "%s: conformal.labels[%zu] is not a class index",
                           path, i);
        b->conformal_labels[i++] = (int)v->valuedouble;
    }
    return CD_OK;
}

static cd_status read_conformal(cd_calibration_bundle *b, const cJSON *o, const char *path,
                                cd_error *err)
{
    cd_conformal_classifier *c = &b->conformal;
    const char *score = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "score"));
    const cJSON *n_cal = cJSON_GetObjectItemCaseSensitive(o, "n_cal");
    c->k = cd_calibrator_classes(b->calibrator);
    if (!score)
        return cd_fail(err, CD_ERR_PARSE, "%s: conformal.score missing", path);
    if (strcmp(score, "lac") == 0)
        c->opts.score = CD_CONFORMAL_LAC;
    else if (strcmp(score, "aps") == 0)
        c->opts.score = CD_CONFORMAL_APS;
    else if (strcmp(score, "raps") == 0)
        c->opts.score = CD_CONFORMAL_RAPS;
    else
        return cd_fail(err, CD_ERR_PARSE, "%s: conformal.score '%s' unknown", path, score);
    double k_reg = 0, seed = 0;
    cd_status st = read_number(o, "alpha", &c->opts.alpha, path, err);
    if (!st)
        st = read_number(o, "lambda", &c->opts.lambda, path, err);
    if (!st)
        st = read_number(o, "k_reg", &k_reg, path, err);
    if (!st)
        st = read_number(o, "seed", &seed, path, err);
    if (!st)
        st = read_threshold(o, "qhat", &c->qhat, path, err);
    if (st)
        return st;
    if (!(c->opts.alpha > 0 && c->opts.alpha < 1) || !cJSON_IsNumber(n_cal) ||
        n_cal->valuedouble < 0 || n_cal->valuedouble > 1e12 || !(k_reg >= 0 && k_reg <= 1e6) ||
        !(seed >= 0 && seed < 1.8e19))
        return cd_fail(err, CD_ERR_PARSE,
                       "%s: conformal.alpha, n_cal, k_reg or seed out of range", path);
    c->opts.k_reg = (int)k_reg;
    c->opts.seed = (uint64_t)seed;
    c->n_cal = (size_t)n_cal->valuedouble;
    c->opts.deterministic = !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "randomized"));
    c->opts.mondrian = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "mondrian"));
    const cJSON *cq = cJSON_GetObjectItemCaseSensitive(o, "class_qhat");
    if (c->opts.mondrian) {
        if (!cJSON_IsArray(cq) || cJSON_GetArraySize(cq) != c->k)
            return cd_fail(err, CD_ERR_PARSE, "%s: conformal.class_qhat must hold %d values",
                           path, c->k);
        c->class_qhat = malloc((size_t)c->k * sizeof(double));
        if (!c->class_qhat)
            return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: class thresholds", path);
        for (int y = 0; y < c->k; y++) {
            const cJSON *v = cJSON_GetArrayItem(cq, y);
            c->class_qhat[y] = cJSON_IsNumber(v) ? v->valuedouble : INFINITY;
        }
    }
    return read_conformal_scores(b, o, path, err);
}

static cd_status read_abstention(cd_abstention *a, const cJSON *o, const char *path,
                                 cd_error *err)
{
    const char *kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "uncertainty"));
    int found = -1;
    for (int i = 0; kind && i < 3; i++)
        if (strcmp(kind, unc_kind_names[i]) == 0)
            found = i;
    if (found < 0)
        return cd_fail(err, CD_ERR_PARSE, "%s: abstention.uncertainty must be confidence, "
                       "entropy or mi", path);
    a->kind = (cd_uncertainty_kind)found;
    double v[4];
    const char *names[] = {"target_risk", "delta", "coverage", "risk_upper"};
    cd_status st = read_threshold(o, "threshold", &a->threshold, path, err);
    for (int i = 0; !st && i < 4; i++)
        st = read_number(o, names[i], &v[i], path, err);
    if (st)
        return st;
    a->target_risk = v[0];
    a->delta = v[1];
    a->coverage = v[2];
    a->risk_upper = v[3];
    a->feasible = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "feasible"));
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "n_cal");
    a->n_cal = cJSON_IsNumber(n) && n->valuedouble >= 0 && n->valuedouble <= 1e12
                   ? (size_t)n->valuedouble
                   : 0;
    return CD_OK;
}

cd_status cd_calibration_bundle_load(const char *path, cd_calibration_bundle *out,
                                     cd_error *err)
{
    memset(out, 0, sizeof *out);
    cJSON *root = NULL;
    cd_status st = read_json_file(path, &root, err);
    if (st)
        return st;
    st = parse_calibrator(root, path, &out->calibrator, err);
    const cJSON *conf = cJSON_GetObjectItemCaseSensitive(root, "conformal");
    const cJSON *abst = cJSON_GetObjectItemCaseSensitive(root, "abstention");
    const cJSON *prov = cJSON_GetObjectItemCaseSensitive(root, "provenance");
    if (!st && conf) {
        out->has_conformal = 1;
        st = read_conformal(out, conf, path, err);
    }
    if (!st && abst) {
        out->has_abstention = 1;
        st = read_abstention(&out->abstention, abst, path, err);
    }
    if (!st && cJSON_IsObject(prov) && !(out->provenance_json = cJSON_PrintUnformatted(prov)))
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: provenance", path);
    cJSON_Delete(root);
    if (st)
        cd_calibration_bundle_clear(out);
    return st;
}

void cd_calibration_bundle_clear(cd_calibration_bundle *b)
{
    if (!b)
        return;
    cd_calibrator_free(b->calibrator);
    cd_conformal_clear(&b->conformal);
    free(b->conformal_scores);
    free(b->conformal_labels);
    /* provenance_json comes from cJSON's allocator on load, malloc when set by
     * the caller; cJSON uses malloc/free by default, so free() fits both. */
    free(b->provenance_json);
    memset(b, 0, sizeof *b);
}

cd_status cd_calibration_bundle_set_alpha(cd_calibration_bundle *b, double alpha,
                                          cd_error *err)
{
    if (!b || !b->has_conformal)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "calibration file has no conformal part");
    if (!b->conformal_scores)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "calibration file holds no conformal scores: alpha is fixed at %g",
                       b->conformal.opts.alpha);
    cd_conformal_classifier *c = &b->conformal;
    cd_status st = cd_conformal_quantile(b->conformal_scores, c->n_cal, alpha, &c->qhat, err);
    if (st)
        return st;
    c->opts.alpha = alpha;
    if (!c->class_qhat)
        return CD_OK;
    double *buf = malloc((c->n_cal ? c->n_cal : 1) * sizeof(double));
    if (!buf)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "conformal: class thresholds");
    for (int y = 0; !st && y < c->k; y++) {
        size_t m = 0;
        for (size_t i = 0; i < c->n_cal; i++)
            if (b->conformal_labels[i] == y)
                buf[m++] = b->conformal_scores[i];
        st = cd_conformal_quantile(buf, m, alpha, &c->class_qhat[y], err);
    }
    free(buf);
    return st;
}
