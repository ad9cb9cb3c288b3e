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

cd_status cd_calibrator_save(const cd_calibrator *c, const char *path, cd_error *err)
{
    if (!c || !path)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "calibration save: NULL argument");
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "calibration save");
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
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "calibration save: JSON text");
    cd_status st = cd_write_file_atomic(path, text, strlen(text), err);
    cJSON_free(text);
    return st;
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
    int nb = cJSON_IsNumber(bins) ? (int)bins->valuedouble : 0;
    if (m == CD_CALIB_HISTOGRAM && (nb < 1 || nb > 100000))
        return cd_fail(err, CD_ERR_PARSE, "%s: field 'bins' must be 1..100000", path);
    int probs = cJSON_IsString(input) && strcmp(input->valuestring, "probabilities") == 0;
    cd_calibrator *c = cd_calibrator_new(m, (int)k->valuedouble, probs, nb);
    if (!c)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "%s: calibrator", path);
    const char *warn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "warning"));
    if (warn)
        snprintf(c->warning, sizeof c->warning, "%s", warn);
    cd_status st = read_method_fields(c, root, path, err);
    if (st) {
        cd_calibrator_free(c);
        return st;
    }
    *out = c;
    return CD_OK;
}

cd_status cd_calibrator_load(const char *path, cd_calibrator **out, cd_error *err)
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
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root)
        return cd_fail(err, CD_ERR_PARSE, "%s: not valid JSON", path);
    cd_status st = parse_calibrator(root, path, out, err);
    cJSON_Delete(root);
    return st;
}
