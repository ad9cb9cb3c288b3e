/* Sidecar parsing (docs/sidecar.md) and the public metadata getters.
 *
 * The schema is small and fixed, so each field has its own check and every
 * type error names the file and the JSON path of the field. Unknown keys are
 * ignored so newer sidecars still load in older candor versions. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "sidecar.h"
#include "atomic_file.h"
#include "graph.h"

#define SIDECAR_MAX_BYTES ((size_t)64 << 20)
/* Largest resize / crop side accepted from a file. */
#define SIDECAR_MAX_SIDE 65536

typedef struct parse_ctx {
    const char *name;
    cd_error *err;
} parse_ctx;

static cd_status field_error(parse_ctx *c, const char *field, const char *what)
{
    return cd_fail(c->err, CD_ERR_PARSE, "sidecar %s: %s %s", c->name, field, what);
}

static cd_status copy_string(parse_ctx *c, const cJSON *item, const char *field, char **out)
{
    if (!cJSON_IsString(item) || !item->valuestring)
        return field_error(c, field, "must be a string");
    *out = cd_strdup(item->valuestring);
    if (!*out)
        return cd_fail(c->err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    return CD_OK;
}

/* --------------------------------------------------------------- labels */

static cd_status parse_labels(parse_ctx *c, const cJSON *arr, struct cd_sidecar *sc)
{
    if (!cJSON_IsArray(arr))
        return field_error(c, "labels", "must be an array of strings");
    int n = cJSON_GetArraySize(arr);
    sc->labels = calloc(n > 0 ? (size_t)n : 1, sizeof *sc->labels);
    if (!sc->labels)
        return cd_fail(c->err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        char field[48];
        snprintf(field, sizeof field, "labels[%d]", sc->n_labels);
        cd_status s = copy_string(c, item, field, &sc->labels[sc->n_labels]);
        if (s != CD_OK)
            return s;
        sc->n_labels++;
    }
    return CD_OK;
}

/* ----------------------------------------------------------- preprocess */

static bool positive_side(const cJSON *v, int *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!(d >= 1.0 && d <= SIDECAR_MAX_SIDE) || d != floor(d))
        return false;
    *out = (int)d;
    return true;
}

/* An integer n, or [H, W]. For an integer, *h = n and *w = 0. */
static cd_status parse_size(parse_ctx *c, const cJSON *v, const char *field, int *h, int *w)
{
    *w = 0;
    if (positive_side(v, h))
        return CD_OK;
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 &&
        positive_side(cJSON_GetArrayItem(v, 0), h) && positive_side(cJSON_GetArrayItem(v, 1), w))
        return CD_OK;
    return field_error(c, field,
                       "must be a positive integer or an array [H, W] of positive integers "
                       "(at most 65536)");
}

/* An array of 1 or 3 finite numbers; one number is used for every channel. */
static cd_status parse_triple(parse_ctx *c, const cJSON *v, const char *field, bool nonzero,
                              float out[3], int *count)
{
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
    if (n != 1 && n != 3)
        return field_error(c, field, "must be an array of 1 or 3 numbers");
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
            return field_error(c, field, "must be an array of 1 or 3 numbers");
        if (nonzero && x->valuedouble == 0.0)
            return field_error(c, field, "must not contain 0");
        out[i] = (float)x->valuedouble;
    }
    for (int i = n; i < 3; i++)
        out[i] = out[0];
    *count = n;
    return CD_OK;
}

static cd_status parse_color(parse_ctx *c, const cJSON *v, cd_color *out)
{
    if (cJSON_IsString(v) && !strcmp(v->valuestring, "rgb")) {
        *out = CD_COLOR_RGB;
        return CD_OK;
    }
    if (cJSON_IsString(v) && !strcmp(v->valuestring, "gray")) {
        *out = CD_COLOR_GRAY;
        return CD_OK;
    }
    return field_error(c, "preprocess.color", "must be \"rgb\" or \"gray\"");
}

static cd_status parse_scale(parse_ctx *c, const cJSON *v, float *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0.0) || !isfinite(v->valuedouble))
        return field_error(c, "preprocess.scale", "must be a positive number (the divisor)");
    *out = (float)v->valuedouble;
    return CD_OK;
}

static cd_status parse_preprocess(parse_ctx *c, const cJSON *obj, struct cd_sidecar *sc)
{
    cd_preprocess *p = &sc->preprocess;
    const cJSON *v;
    cd_status s = CD_OK;
    int n_mean = 0, n_std = 0;
    if (!cJSON_IsObject(obj))
        return field_error(c, "preprocess", "must be an object");
    if (s == CD_OK && (v = cJSON_GetObjectItemCaseSensitive(obj, "resize"))) {
        int h, w;
        s = parse_size(c, v, "preprocess.resize", &h, &w);
        p->resize_short = w ? 0 : h;
        p->resize_h = w ? h : 0;
        p->resize_w = w;
        sc->has_resize = true;
    }
    if (s == CD_OK && (v = cJSON_GetObjectItemCaseSensitive(obj, "crop"))) {
        int h, w;
        s = parse_size(c, v, "preprocess.crop", &h, &w);
        p->crop_h = h;
        p->crop_w = w ? w : h;
        sc->has_crop = true;
    }
    if (s == CD_OK && (v = cJSON_GetObjectItemCaseSensitive(obj, "scale"))) {
        s = parse_scale(c, v, &p->scale);
        sc->has_scale = true;
    }
    if (s == CD_OK && (v = cJSON_GetObjectItemCaseSensitive(obj, "mean"))) {
        s = parse_triple(c, v, "preprocess.mean", false, p->mean, &n_mean);
        sc->has_mean = true;
    }
    if (s == CD_OK && (v = cJSON_GetObjectItemCaseSensitive(obj, "std"))) {
        s = parse_triple(c, v, "preprocess.std", true, p->std, &n_std);
        sc->has_std = true;
    }
    if (s == CD_OK && (v = cJSON_GetObjectItemCaseSensitive(obj, "color"))) {
        s = parse_color(c, v, &p->color);
        sc->has_color = true;
    }
    if (s == CD_OK && p->color == CD_COLOR_GRAY && (n_mean == 3 || n_std == 3))
        s = field_error(c, "preprocess.mean/std",
                        "must have 1 number when preprocess.color is \"gray\"");
    return s;
}

/* ------------------------------------------------ output, input, sites */

static cd_status parse_output(parse_ctx *c, const cJSON *obj, struct cd_sidecar *sc)
{
    static const char *const kinds[] = {"logits", "probabilities", "regression",
                                        "segmentation"};
    const cJSON *v;
    if (!cJSON_IsObject(obj))
        return field_error(c, "output", "must be an object");
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "kind"))) {
        for (size_t k = 0; k < CD_COUNT_OF(kinds) && cJSON_IsString(v); k++)
            if (!strcmp(v->valuestring, kinds[k]))
                sc->output_kind = (cd_output_kind)(k + 1);
        if (sc->output_kind == CD_OUTPUT_UNSPECIFIED)
            return field_error(c, "output.kind",
                               "must be \"logits\", \"probabilities\", \"regression\" or "
                               "\"segmentation\"");
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "name")))
        return copy_string(c, v, "output.name", &sc->output_name);
    return CD_OK;
}

static cd_status parse_input(parse_ctx *c, const cJSON *obj, struct cd_sidecar *sc)
{
    const cJSON *v;
    if (!cJSON_IsObject(obj))
        return field_error(c, "input", "must be an object");
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "name")))
        return copy_string(c, v, "input.name", &sc->input_name);
    return CD_OK;
}

static cd_status parse_site(parse_ctx *c, const cJSON *obj, int k, cd_sidecar_site *site)
{
    char field[64];
    const cJSON *v;
    snprintf(field, sizeof field, "dropout_sites[%d]", k);
    if (!cJSON_IsObject(obj))
        return field_error(c, field, "must be an object");
    snprintf(field, sizeof field, "dropout_sites[%d].tensor", k);
    v = cJSON_GetObjectItemCaseSensitive(obj, "tensor");
    if (!v || !cJSON_IsString(v) || !*v->valuestring)
        return field_error(c, field, "must be a non-empty string (required)");
    cd_status s = copy_string(c, v, field, &site->tensor);
    if (s != CD_OK)
        return s;
    snprintf(field, sizeof field, "dropout_sites[%d].p", k);
    v = cJSON_GetObjectItemCaseSensitive(obj, "p");
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.0 && v->valuedouble < 1.0))
        return field_error(c, field, "must be a number in [0, 1) (required)");
    site->p = (float)v->valuedouble;
    snprintf(field, sizeof field, "dropout_sites[%d].channel", k);
    v = cJSON_GetObjectItemCaseSensitive(obj, "channel");
    if (v && !cJSON_IsBool(v))
        return field_error(c, field, "must be true or false");
    site->channel = v && cJSON_IsTrue(v);
    return CD_OK;
}

static cd_status parse_sites(parse_ctx *c, const cJSON *arr, struct cd_sidecar *sc)
{
    if (!cJSON_IsArray(arr))
        return field_error(c, "dropout_sites", "must be an array of objects");
    int n = cJSON_GetArraySize(arr);
    sc->dropout_sites = calloc(n > 0 ? (size_t)n : 1, sizeof *sc->dropout_sites);
    if (!sc->dropout_sites)
        return cd_fail(c->err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        cd_status s = parse_site(c, item, sc->n_dropout_sites,
                                 &sc->dropout_sites[sc->n_dropout_sites]);
        sc->n_dropout_sites++; /* counted even on failure so free() sees the tensor copy */
        if (s != CD_OK)
            return s;
    }
    return CD_OK;
}

/* ---------------------------------------------------------------- entry */

static cd_status parse_root(parse_ctx *c, const cJSON *root, struct cd_sidecar *sc)
{
    const cJSON *v;
    cd_status s = CD_OK;
    if (!cJSON_IsObject(root))
        return cd_fail(c->err, CD_ERR_PARSE, "sidecar %s: top level must be a JSON object",
                       c->name);
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "labels")))
        s = parse_labels(c, v, sc);
    if (s == CD_OK && (v = cJSON_GetObjectItemCaseSensitive(root, "preprocess")))
        s = parse_preprocess(c, v, sc);
    if (s == CD_OK && (v = cJSON_GetObjectItemCaseSensitive(root, "output")))
        s = parse_output(c, v, sc);
    if (s == CD_OK && (v = cJSON_GetObjectItemCaseSensitive(root, "input")))
        s = parse_input(c, v, sc);
    if (s == CD_OK && (v = cJSON_GetObjectItemCaseSensitive(root, "dropout_sites")))
        s = parse_sites(c, v, sc);
    return s;
}

/* Line and column of a byte offset, for JSON syntax errors. */
static void locate(const char *json, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (json[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

cd_status cd_sidecar_parse(const char *json, size_t len, const char *name,
                           struct cd_sidecar **out, cd_error *err)
{
    parse_ctx c = {name ? name : "<memory>", err};
    const char *end = NULL;
    *out = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        int line, col;
        size_t off = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        locate(json, off, &line, &col);
        return cd_fail(err, CD_ERR_PARSE, "sidecar %s: invalid JSON near line %d, column %d",
                       c.name, line, col);
    }
    struct cd_sidecar *sc = calloc(1, sizeof *sc);
    cd_status s = sc ? CD_OK : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (s == CD_OK) {
        cd_preprocess_default(&sc->preprocess);
        sc->path = cd_strdup(c.name);
        s = sc->path ? parse_root(&c, root, sc) : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    cJSON_Delete(root);
    if (s != CD_OK) {
        cd_sidecar_free(sc);
        return s;
    }
    *out = sc;
    return CD_OK;
}

cd_status cd_sidecar_load_file(const char *path, struct cd_sidecar **out, cd_error *err)
{
    uint8_t *buf;
    size_t n;
    if (!path || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_sidecar_load_file: NULL argument");
    *out = NULL;
    cd_status s = cd_read_file(path, SIDECAR_MAX_BYTES, &buf, &n, err);
    if (s != CD_OK)
        return s;
    s = cd_sidecar_parse((const char *)buf, n, path, out, err);
    free(buf);
    return s;
}

char *cd_sidecar_path_for_model(const char *model_path)
{
    static const char suffix[] = ".candor.json";
    size_t n = strlen(model_path);
    const char *base = strrchr(model_path, '/');
    base = base ? base + 1 : model_path;
    size_t keep = n;
    if (n - (size_t)(base - model_path) > 5 && strcasecmp(model_path + n - 5, ".onnx") == 0)
        keep = n - 5;
    char *p = malloc(keep + sizeof suffix);
    if (!p)
        return NULL;
    memcpy(p, model_path, keep);
    memcpy(p + keep, suffix, sizeof suffix);
    return p;
}

cd_status cd_sidecar_load_for_model(const char *model_path, struct cd_sidecar **out,
                                    cd_error *err)
{
    if (!model_path || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_sidecar_load_for_model: NULL argument");
    *out = NULL;
    char *path = cd_sidecar_path_for_model(model_path);
    if (!path)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    struct stat st;
    cd_status s = CD_OK;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            s = cd_fail(err, CD_ERR_IO, "sidecar %s: %s", path, strerror(errno));
    } else {
        s = cd_sidecar_load_file(path, out, err);
    }
    free(path);
    return s;
}

void cd_sidecar_free(struct cd_sidecar *sc)
{
    if (!sc)
        return;
    for (int i = 0; i < sc->n_labels; i++)
        free(sc->labels[i]);
    free(sc->labels);
    for (int i = 0; i < sc->n_dropout_sites; i++)
        free(sc->dropout_sites[i].tensor);
    free(sc->dropout_sites);
    free(sc->output_name);
    free(sc->input_name);
    free(sc->path);
    free(sc);
}

const char *cd_output_kind_name(cd_output_kind kind)
{
    switch (kind) {
    case CD_OUTPUT_LOGITS: return "logits";
    case CD_OUTPUT_PROBABILITIES: return "probabilities";
    case CD_OUTPUT_REGRESSION: return "regression";
    case CD_OUTPUT_SEGMENTATION: return "segmentation";
    default: return "unspecified";
    }
}

/* ------------------------------------------------------ public getters */

int cd_model_label_count(const cd_model *model)
{
    return model && model->sidecar ? model->sidecar->n_labels : 0;
}

const char *cd_model_label(const cd_model *model, int k)
{
    if (k < 0 || k >= cd_model_label_count(model))
        return NULL;
    return model->sidecar->labels[k];
}

const char *cd_model_output_kind(const cd_model *model)
{
    return cd_output_kind_name(model && model->sidecar ? model->sidecar->output_kind
                                                       : CD_OUTPUT_UNSPECIFIED);
}

const char *cd_model_output_hint(const cd_model *model)
{
    return model && model->sidecar ? model->sidecar->output_name : NULL;
}

const char *cd_model_input_hint(const cd_model *model)
{
    return model && model->sidecar ? model->sidecar->input_name : NULL;
}

int cd_model_dropout_site_count(const cd_model *model)
{
    return model && model->sidecar ? model->sidecar->n_dropout_sites : 0;
}

cd_status cd_model_dropout_site(const cd_model *model, int k, const char **tensor, float *p,
                                bool *channel, cd_error *err)
{
    if (k < 0 || k >= cd_model_dropout_site_count(model))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "dropout site %d out of range (%d sites)",
                       k, cd_model_dropout_site_count(model));
    const cd_sidecar_site *site = &model->sidecar->dropout_sites[k];
    if (tensor)
        *tensor = site->tensor;
    if (p)
        *p = site->p;
    if (channel)
        *channel = site->channel;
    return CD_OK;
}

/* The value the preprocessed image feeds: the sidecar's input.name when it
 * names a value, else the first graph input; NULL when there is none. */
static const cd_value *image_input(const cd_model *m)
{
    int id = -1;
    if (m->sidecar && m->sidecar->input_name)
        id = cd_model_find_value(m, m->sidecar->input_name);
    if (id < 0 && m->n_inputs > 0)
        id = m->inputs[0];
    return id >= 0 && id < m->n_values ? &m->values[id] : NULL;
}

cd_status cd_model_preprocess(const cd_model *model, cd_preprocess *out)
{
    if (!model || !out)
        return CD_ERR_INVALID_ARGUMENT;
    const struct cd_sidecar *sc = model->sidecar;
    if (sc)
        *out = sc->preprocess;
    else
        cd_preprocess_default(out);
    const cd_value *in = image_input(model);
    if (!in || in->ndim != 4)
        return CD_OK;
    if (!(sc && sc->has_color) && (in->dims[1] == 1 || in->dims[1] == 3))
        out->color = in->dims[1] == 1 ? CD_COLOR_GRAY : CD_COLOR_RGB;
    bool sized = sc && (sc->has_resize || sc->has_crop);
    if (!sized && in->dims[2] > 0 && in->dims[3] > 0 && in->dims[2] <= SIDECAR_MAX_SIDE &&
        in->dims[3] <= SIDECAR_MAX_SIDE) {
        out->resize_h = (int)in->dims[2];
        out->resize_w = (int)in->dims[3];
    }
    return CD_OK;
}
