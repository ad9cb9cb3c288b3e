/* Labelled data for `candor calibrate` and running models over it. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "calib_data.h"
#include "inputs.h"
#include "mpi_shard.h"

/* --------------------------------------------------------------- helpers */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool has_ext(const char *name, const char *ext)
{
    size_t n = strlen(name), e = strlen(ext);
    return n > e && strcasecmp(name + n - e, ext) == 0;
}

static bool is_input_file(const char *name)
{
    return name[0] != '.' && (has_ext(name, ".png") || has_ext(name, ".jpg") ||
                              has_ext(name, ".jpeg") || has_ext(name, ".npy"));
}

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Appends to a growing array of strings; -1 when out of memory. */
static int push_str(char ***arr, size_t *n, size_t *cap, char *s)
{
    if (!s)
        return -1;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        char **g = realloc(*arr, c * sizeof *g);
        if (!g) {
            free(s);
            return -1;
        }
        *arr = g;
        *cap = c;
    }
    (*arr)[(*n)++] = s;
    return 0;
}

/* Labels are appended in order: index n grows the array every 64 entries. */
static int push_label(int **arr, size_t n, int v)
{
    if (n % 64 == 0) {
        int *g = realloc(*arr, (n + 64) * sizeof(int));
        if (!g)
            return -1;
        *arr = g;
    }
    (*arr)[n] = v;
    return 0;
}

/* A label given as text: a class index, or a sidecar label name. */
static int parse_label(const cd_model *m, const char *s, int k, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s && !*end && !errno) {
        *out = v >= INT_MIN && v <= INT_MAX ? (int)v : -1;
        return (k <= 0 || (v >= 0 && v < k)) && v >= 0 ? 0 : -1;
    }
    for (int c = 0; c < cd_model_label_count(m); c++)
        if (strcmp(cd_model_label(m, c), s) == 0) {
            *out = c;
            return 0;
        }
    return -2;
}

/* The fingerprint of a set of files: SHA-256 over lines "sha256  name  label"
 * in data order, so renaming, relabelling or editing any file changes it. */
static cd_status fingerprint_files(calib_dataset *d, const char *base, cd_error *err)
{
    size_t cap = d->n * 160 + 1, len = 0;
    char *text = malloc(cap);
    if (!text)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; i < d->n; i++) {
        char hex[65];
        cd_status st = cd_sha256_file(d->paths[i], hex, err);
        if (st) {
            free(text);
            return st;
        }
        const char *name = d->paths[i];
        if (strncmp(name, base, strlen(base)) == 0 && name[strlen(base)] == '/')
            name += strlen(base) + 1; /* relative: the fingerprint survives a move */
        size_t need = strlen(name) + 100;
        if (len + need >= cap) {
            cap = (cap + need) * 2;
            char *g = realloc(text, cap);
            if (!g) {
                free(text);
                return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
            }
            text = g;
        }
        len += (size_t)snprintf(text + len, cap - len, "%s  %s  %d\n", hex, name, d->labels[i]);
    }
    cd_sha256_memory(text, len, d->sha256);
    free(text);
    return CD_OK;
}

/* ---------------------------------------------------------- image folders */

/* Class of a subfolder: its position among the sidecar labels when every
 * subfolder name is a label, else its position in sorted order. */
static cd_status folder_classes(const cd_model *m, char **subs, size_t n_sub, int k, int *cls,
                                calib_dataset *d, cd_error *err)
{
    bool all_named = cd_model_label_count(m) > 0;
    for (size_t s = 0; s < n_sub && all_named; s++) {
        int c;
        all_named = parse_label(m, subs[s], k, &c) == 0 && !isdigit((unsigned char)subs[s][0]);
        cls[s] = c;
    }
    if (all_named) {
        d->class_source = strdup("subfolder names matched to the sidecar labels");
        return CD_OK;
    }
    if (k > 0 && n_sub > (size_t)k)
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT,
                             "%zu class subfolders but the model has %d classes", n_sub, k);
    for (size_t s = 0; s < n_sub; s++)
        cls[s] = (int)s;
    d->class_source = strdup("sorted subfolder names = class indices 0..K-1");
    return CD_OK;
}

static cd_status list_subdirs(const char *dir, char ***subs, size_t *n, cd_error *err)
{
    DIR *dp = opendir(dir);
    if (!dp)
        return cli_set_error(err, CD_ERR_IO, "cannot open folder %s: %s", dir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    int oom = 0;
    while (!oom && (e = readdir(dp))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = join_path(dir, e->d_name);
        bool sub = p && is_dir(p);
        free(p);
        if (sub)
            oom = push_str(subs, n, &cap, strdup(e->d_name));
    }
    closedir(dp);
    if (oom)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (*n == 0)
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT,
                             "%s: no class subfolders (expected one subfolder per class)", dir);
    qsort(*subs, *n, sizeof(char *), cmp_str);
    return CD_OK;
}

static cd_status load_folder(const cd_model *m, const char *dir, int k, calib_dataset *d,
                             cd_error *err)
{
    char **subs = NULL;
    size_t n_sub = 0, cap = 0;
    cd_status st = list_subdirs(dir, &subs, &n_sub, err);
    int *cls = st ? NULL : malloc(n_sub * sizeof(int));
    if (!st && !cls)
        st = cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (!st)
        st = folder_classes(m, subs, n_sub, k, cls, d, err);
    for (size_t s = 0; !st && s < n_sub; s++) {
        char *sub = join_path(dir, subs[s]);
        DIR *dp = sub ? opendir(sub) : NULL;
        if (!dp) {
            st = cli_set_error(err, CD_ERR_IO, "cannot open folder %s/%s", dir, subs[s]);
            free(sub);
            break;
        }
        size_t start = d->n;
        struct dirent *e;
        while (!st && (e = readdir(dp))) {
            if (!is_input_file(e->d_name))
                continue;
            if (push_str(&d->paths, &d->n, &cap, join_path(sub, e->d_name)) ||
                push_label(&d->labels, d->n - 1, cls[s]))
                st = cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
        }
        closedir(dp);
        free(sub);
        if (d->n > start)
            qsort(d->paths + start, d->n - start, sizeof(char *), cmp_str);
    }
    for (size_t s = 0; s < n_sub; s++)
        free(subs[s]);
    free(subs);
    free(cls);
    if (!st && d->n == 0)
        st = cli_set_error(err, CD_ERR_INVALID_ARGUMENT,
                           "%s: the class subfolders hold no images (.png/.jpg/.npy)", dir);
    if (!st)
        st = fingerprint_files(d, dir, err);
    d->format = "folder";
    return st;
}

/* ------------------------------------------------------------------ CSV */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = 0;
    return s;
}

/* One CSV line "path,label" (the first line may be the header path,label). */
static cd_status csv_line(const cd_model *m, const char *csv, const char *dir, char *line,
                          size_t lineno, int k, calib_dataset *d, size_t *cap, cd_error *err)
{
    char *comma = strrchr(line, ',');
    if (!comma)
        return cli_set_error(err, CD_ERR_PARSE, "%s line %zu: expected 'path,label'", csv,
                             lineno);
    *comma = 0;
    char *path = trim(line), *lab = trim(comma + 1);
    if (lineno == 1 && strcasecmp(path, "path") == 0 && strcasecmp(lab, "label") == 0)
        return CD_OK;
    int y;
    int r = parse_label(m, lab, k, &y);
    if (r == -2 || !*lab)
        return cli_set_error(err, CD_ERR_PARSE, "%s line %zu: label '%s' is neither a class "
                             "index nor a sidecar label", csv, lineno, lab);
    if (r)
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "%s line %zu: label %s outside the "
                             "model's classes [0, %d)", csv, lineno, lab, k);
    if (!*path)
        return cli_set_error(err, CD_ERR_PARSE, "%s line %zu: empty path", csv, lineno);
    char *full = path[0] == '/' ? strdup(path) : join_path(dir, path);
    if (push_str(&d->paths, &d->n, cap, full) || push_label(&d->labels, d->n - 1, y))
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (access(d->paths[d->n - 1], R_OK) != 0)
        return cli_set_error(err, CD_ERR_IO, "%s line %zu: cannot read %s", csv, lineno,
                             d->paths[d->n - 1]);
    return CD_OK;
}

static cd_status load_csv(const cd_model *m, const char *csv, int k, calib_dataset *d,
                          cd_error *err)
{
    FILE *f = fopen(csv, "r");
    if (!f)
        return cli_set_error(err, CD_ERR_IO, "cannot open %s: %s", csv, strerror(errno));
    char *dir = strdup(csv), *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash)
        *slash = 0;
    else if (dir)
        strcpy(dir, ".");
    char line[8192];
    size_t lineno = 0, cap = 0;
    cd_status st = dir ? CD_OK : cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    while (!st && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f))
            st = cli_set_error(err, CD_ERR_PARSE, "%s line %zu: too long", csv, lineno);
        else if (*trim(line))
            st = csv_line(m, csv, dir, line, lineno, k, d, &cap, err);
    }
    fclose(f);
    if (!st && d->n == 0)
        st = cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "%s: no data rows", csv);
    if (!st)
        st = fingerprint_files(d, dir, err);
    free(dir);
    d->format = "csv";
    d->class_source = strdup("labels from the CSV (class index or sidecar label)");
    return st;
}

/* ------------------------------------------------------------------ .npy */

static cd_status read_labels_txt(const cd_model *m, const char *path, int k, calib_dataset *d,
                                 cd_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cli_set_error(err, CD_ERR_IO, "cannot open labels file %s: %s", path,
                             strerror(errno));
    char line[1024];
    size_t lineno = 0, n = 0;
    cd_status st = CD_OK;
    while (!st && fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line);
        if (!*s)
            continue;
        int y, r = parse_label(m, s, k, &y);
        if (r == -2)
            st = cli_set_error(err, CD_ERR_PARSE, "%s line %zu: label '%s' is neither a class "
                               "index nor a sidecar label", path, lineno, s);
        else if (r)
            st = cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "%s line %zu: label %s outside "
                               "the model's classes [0, %d)", path, lineno, s, k);
        else if (push_label(&d->labels, n, y))
            st = cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
        else
            n++;
    }
    fclose(f);
    d->n = n;
    return st;
}

static cd_status read_labels_npy(const char *path, int k, calib_dataset *d, cd_error *err)
{
    cd_tensor *t = NULL;
    cd_status st = cd_npy_load(path, &t, err);
    if (st)
        return st;
    cd_dtype dt = cd_tensor_dtype(t);
    size_t n = cd_tensor_numel(t);
    if (cd_tensor_ndim(t) != 1 ||
        (dt != CD_INT64 && dt != CD_INT32 && dt != CD_UINT8 && dt != CD_INT8)) {
        cd_tensor_free(t);
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "labels file %s: need a 1-D integer "
                             "array, got %d-D %s", path, cd_tensor_ndim(t), cd_dtype_name(dt));
    }
    d->labels = malloc((n ? n : 1) * sizeof(int));
    const void *p = cd_tensor_cdata(t);
    for (size_t i = 0; d->labels && !st && i < n; i++) {
        long long v = dt == CD_INT64   ? ((const int64_t *)p)[i]
                      : dt == CD_INT32 ? ((const int32_t *)p)[i]
                      : dt == CD_UINT8 ? ((const uint8_t *)p)[i]
                                       : ((const int8_t *)p)[i];
        if (v < 0 || (k > 0 && v >= k))
            st = cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "labels file %s: label %lld at "
                               "row %zu outside the model's classes [0, %d)", path, v, i, k);
        d->labels[i] = (int)v;
    }
    cd_tensor_free(t);
    if (!d->labels)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    d->n = n;
    return st;
}

static cd_status load_npy(const cd_model *m, const char *path, const char *labels, int k,
                          calib_dataset *d, cd_error *err)
{
    d->format = "npy";
    if (!labels)
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT,
                             "%s is an array: give its labels with --labels FILE (.npy or .txt)",
                             path);
    cd_status st = cd_npy_load(path, &d->array, err);
    if (st)
        return st;
    int nd = cd_tensor_ndim(d->array);
    cd_dtype dt = cd_tensor_dtype(d->array);
    if ((nd != 3 && nd != 4) || (dt != CD_UINT8 && dt != CD_FLOAT32 && dt != CD_FLOAT64))
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "%s: need an (N,H,W) or (N,C,H,W) "
                             "uint8/float array, got %d-D %s", path, nd, cd_dtype_name(dt));
    st = has_ext(labels, ".npy") ? read_labels_npy(labels, k, d, err)
                                 : read_labels_txt(m, labels, k, d, err);
    if (st)
        return st;
    size_t n = (size_t)cd_tensor_dims(d->array)[0];
    if (d->n != n)
        return cli_set_error(err, CD_ERR_SHAPE, "%s holds %zu labels but %s holds %zu rows",
                             labels, d->n, path, n);
    if (n == 0)
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "%s: no rows", path);
    char h1[65], h2[65], both[200];
    if ((st = cd_sha256_file(path, h1, err)) || (st = cd_sha256_file(labels, h2, err)))
        return st;
    /* One fingerprint for the pair: SHA-256 of "sha(data)\nsha(labels)\n". */
    int len = snprintf(both, sizeof both, "%s\n%s\n", h1, h2);
    cd_sha256_memory(both, (size_t)len, d->sha256);
    d->class_source = strdup("labels file class indices");
    return CD_OK;
}

cd_status calib_data_load(const cd_model *m, const char *data, const char *labels, int k,
                          calib_dataset *out, cd_error *err)
{
    memset(out, 0, sizeof *out);
    cd_status st;
    if (is_dir(data))
        st = load_folder(m, data, k, out, err);
    else if (inputs_is_npy(data))
        st = load_npy(m, data, labels, k, out, err);
    else if (access(data, R_OK) != 0)
        st = cli_set_error(err, CD_ERR_IO, "cannot read data %s: %s", data, strerror(errno));
    else
        st = load_csv(m, data, k, out, err);
    if (!st && labels && !out->array)
        st = cli_set_error(err, CD_ERR_INVALID_ARGUMENT,
                           "--labels is only for .npy arrays (folders and CSVs carry labels)");
    if (st)
        calib_data_free(out);
    return st;
}

void calib_data_free(calib_dataset *d)
{
    for (size_t i = 0; d->paths && i < d->n; i++)
        free(d->paths[i]);
    free(d->paths);
    free(d->labels);
    free(d->class_source);
    cd_tensor_free(d->array);
    memset(d, 0, sizeof *d);
}

/* ---------------------------------------------------------- model input */

/* The sidecar preprocessing, adjusted to the model input as
 * inputs_load_tensor does for image files: color from the channel count,
 * an exact resize when the sidecar gives no size and H x W differ. */
static void model_preprocess(const cd_model *m, int h, int w, cd_preprocess *pp)
{
    int ndim = -1;
    int64_t dims[CD_MAX_DIMS];
    cd_model_preprocess(m, pp);
    if (cd_model_input_shape(m, 0, &ndim, dims, NULL) != CD_OK || ndim != 4)
        return;
    if (dims[1] == 1)
        pp->color = CD_COLOR_GRAY;
    else if (dims[1] == 3)
        pp->color = CD_COLOR_RGB;
    bool sized = pp->resize_short > 0 || (pp->resize_h > 0 && pp->resize_w > 0);
    bool cropped = pp->crop_h > 0 && pp->crop_w > 0;
    if (!sized && !cropped && dims[2] > 0 && dims[3] > 0 && (dims[2] != h || dims[3] != w)) {
        pp->resize_h = (int)dims[2];
        pp->resize_w = (int)dims[3];
    }
}

static double array_value(const cd_tensor *t, size_t i)
{
    switch (cd_tensor_dtype(t)) {
    case CD_UINT8: return ((const uint8_t *)cd_tensor_cdata(t))[i];
    case CD_FLOAT32: return ((const float *)cd_tensor_cdata(t))[i];
    default: return ((const double *)cd_tensor_cdata(t))[i];
    }
}

/* Row r of the array as a (1, C, H, W) float32 model input. uint8 rows are
 * 8-bit images and go through the sidecar preprocessing (as PNG files
 * would); float rows are taken as already preprocessed model inputs. */
static cd_status array_row(const cd_model *m, const cd_tensor *a, size_t r, cd_tensor **out,
                           cd_error *err)
{
    const int64_t *d = cd_tensor_dims(a);
    int nd = cd_tensor_ndim(a);
    int c = nd == 4 ? (int)d[1] : 1, h = (int)d[nd - 2], w = (int)d[nd - 1];
    size_t plane = (size_t)h * (size_t)w, row = plane * (size_t)c, base = r * row;
    if (cd_tensor_dtype(a) != CD_UINT8) {
        int64_t dims[4] = {1, c, h, w};
        cd_status st = cd_tensor_create(CD_FLOAT32, 4, dims, out, err);
        float *x = st ? NULL : cd_tensor_data(*out);
        for (size_t i = 0; x && i < row; i++)
            x[i] = (float)array_value(a, base + i);
        return st;
    }
    if (c != 1 && c != 3 && c != 4)
        return cli_set_error(err, CD_ERR_SHAPE, "uint8 image rows need 1, 3 or 4 channels, "
                             "got %d", c);
    cd_image *img = NULL;
    cd_status st = cd_image_create(w, h, c, &img, err);
    if (st)
        return st;
    for (int ch = 0; ch < c; ch++) /* CHW -> HWC */
        for (size_t p = 0; p < plane; p++)
            img->pixels[p * (size_t)c + (size_t)ch] =
                (float)array_value(a, base + (size_t)ch * plane + p);
    cd_preprocess pp;
    model_preprocess(m, h, w, &pp);
    st = cd_image_to_tensor(img, &pp, out, err);
    cd_image_free(img);
    return st;
}

static cd_status load_row(const cd_model *m, const calib_dataset *d, size_t i, cd_tensor **out,
                          cd_error *err)
{
    if (d->array)
        return array_row(m, d->array, i, out, err);
    cd_status st = inputs_load_tensor(m, d->paths[i], out, err);
    if (st && !strstr(err->message, d->paths[i])) {
        char msg[sizeof err->message];
        snprintf(msg, sizeof msg, "%s: %s", d->paths[i], err->message);
        snprintf(err->message, sizeof err->message, "%s", msg);
    }
    return st;
}

/* Stacks rows [first, first + count) into one (count, C, H, W) tensor. */
static cd_status load_batch(const cd_model *m, const calib_dataset *d, size_t first,
                            size_t count, cd_tensor **out, cd_error *err)
{
    *out = NULL;
    for (size_t j = 0; j < count; j++) {
        cd_tensor *x = NULL;
        cd_status st = load_row(m, d, first + j, &x, err);
        if (st) {
            cd_tensor_free(*out);
            *out = NULL;
            return st;
        }
        if (!*out) {
            int64_t dims[CD_MAX_DIMS];
            int nd = cd_tensor_ndim(x);
            memcpy(dims, cd_tensor_dims(x), (size_t)nd * sizeof(int64_t));
            dims[0] = (int64_t)count;
            st = cd_tensor_create(CD_FLOAT32, nd, dims, out, err);
        } else if (cd_tensor_numel(x) * count != cd_tensor_numel(*out)) {
            st = cli_set_error(err, CD_ERR_SHAPE, "row %zu has another shape than row %zu",
                               first + j, first);
        }
        if (!st)
            memcpy((char *)cd_tensor_data(*out) + j * cd_tensor_nbytes(x), cd_tensor_cdata(x),
                   cd_tensor_nbytes(x));
        cd_tensor_free(x);
        if (st) {
            cd_tensor_free(*out);
            *out = NULL;
            return st;
        }
    }
    return CD_OK;
}

/* ------------------------------------------------------------- running */

typedef struct runner {
    const cd_model *model;
    cd_session *session;
    cd_mc_session *mc;
    cd_ensemble *ens;
    const cd_model **members; /* loaded ensemble members (index 0 = the model) */
    int n_models;
    bool probs_out;           /* the model's output already holds probabilities */
} runner;

static cd_status runner_open(runner *r, const cd_model *m, const calib_run_opts *o,
                             cd_error *err)
{
    memset(r, 0, sizeof *r);
    r->model = m;
    r->probs_out = strcmp(cd_model_output_kind(m), "probabilities") == 0;
    cd_mc_options mo;
    cd_mc_options_default(&mo);
    mo.samples = o->mc_samples > 1 ? o->mc_samples : 1;
    mo.seed = o->seed;
    mo.threads = o->threads;
    /* A plain ensemble (no --mc) uses each member deterministically. */
    mo.ignore_graph_dropout = mo.ignore_sidecar_sites = o->mc_samples <= 1;
    if (o->n_members > 0) {
        r->members = calloc((size_t)o->n_members + 1, sizeof *r->members);
        if (!r->members)
            return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
        r->members[r->n_models++] = m;
        for (int i = 0; i < o->n_members; i++) {
            cd_model *mm = NULL;
            cd_status st = cd_model_load(o->members[i], NULL, &mm, err);
            if (st)
                return st;
            r->members[r->n_models++] = mm;
        }
        return cd_ensemble_create(r->n_models, r->members, &mo, &r->ens, err);
    }
    if (o->mc_samples > 1)
        return cd_mc_session_create(m, &mo, &r->mc, err);
    cd_session_options so = {.threads = o->threads};
    return cd_session_create(m, &so, &r->session, err);
}

static void runner_close(runner *r)
{
    cd_session_free(r->session);
    cd_mc_session_free(r->mc);
    cd_ensemble_free(r->ens);
    for (int i = 1; i < r->n_models; i++)
        cd_model_free((cd_model *)r->members[i]);
    free(r->members);
}

/* Mean over the S samples of (b, S, K) sampled outputs, softmax first unless
 * the outputs are probabilities already. */
static cd_status mean_probs(cd_tensor *s, bool probs_out, size_t b, int k, double *dst,
                            cd_error *err)
{
    const int64_t *d = cd_tensor_dims(s);
    if (cd_tensor_ndim(s) != 3 || (size_t)d[0] != b || d[2] != k)
        return cli_set_error(err, CD_ERR_SHAPE, "sampled outputs are not (batch, samples, K)");
    cd_status st = probs_out ? CD_OK : cd_softmax_axis(s, -1, err);
    if (st)
        return st;
    size_t S = (size_t)d[1];
    const float *p = cd_tensor_cdata(s);
    for (size_t i = 0; i < b; i++)
        for (int c = 0; c < k; c++) {
            double acc = 0;
            for (size_t t = 0; t < S; t++)
                acc += p[(i * S + t) * (size_t)k + (size_t)c];
            dst[i * (size_t)k + (size_t)c] = acc / (double)S;
        }
    return CD_OK;
}

/* Runs one batch; on the first call *k is 0 and is set from the output. */
static cd_status run_batch(runner *r, const cd_tensor *x, size_t b, double **scores, size_t n,
                           size_t first, int *k, cd_error *err)
{
    cd_tensor *y = NULL;
    cd_status st;
    if (r->ens)
        st = cd_ensemble_sample(r->ens, 1, &x, 1, NULL, &y, err);
    else if (r->mc)
        st = cd_mc_sample(r->mc, 1, &x, 1, NULL, &y, err);
    else
        st = cd_session_run(r->session, 1, NULL, &x, 1, NULL, &y, err);
    if (st)
        return st;
    int nd = cd_tensor_ndim(y);
    const int64_t *d = cd_tensor_dims(y);
    int64_t kk = d[nd - 1];
    bool sampled = r->ens || r->mc;
    if (nd != (sampled ? 3 : 2) || (size_t)d[0] != b || kk < 2 || kk > 100000)
        st = cli_set_error(err, CD_ERR_SHAPE, "the model output is not (batch, classes) with "
                           "2..100000 classes");
    else if (*k && kk != *k)
        st = cli_set_error(err, CD_ERR_SHAPE, "output width changed from %d to %lld", *k,
                           (long long)kk);
    if (!st && !*k) {
        *k = (int)kk;
        *scores = malloc(n * (size_t)kk * sizeof(double));
        if (!*scores)
            st = cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory for %zu x %d outputs",
                               n, *k);
    }
    double *dst = st ? NULL : *scores + first * (size_t)kk;
    if (!st && sampled)
        st = mean_probs(y, r->probs_out, b, *k, dst, err);
    else if (!st)
        for (size_t i = 0; i < b * (size_t)kk; i++)
            dst[i] = ((const float *)cd_tensor_cdata(y))[i];
    cd_tensor_free(y);
    return st;
}

/* With several ranks: the failure check (naming the first failing rank on
 * rank 0), then this rank's rows [first, first + count) of scores go to rank
 * 0, which ends up with all n rows in order; the others free theirs. */
static cd_status gather_scores(const calib_dataset *d, size_t first, size_t count,
                               cd_status st, double **scores, int *k, cd_error *err)
{
    char why[sizeof err->message + 64];
    if (st)
        snprintf(why, sizeof why, "(%s) %s", cd_status_name(st), err->message);
    if (mpi_shard_failures(st ? why : NULL, why, sizeof why)) {
        if (mpi_shard_rank() == 0)
            cli_set_error(err, st ? st : CD_ERR_IO, "%s", why);
        return st ? st : CD_ERR_IO;
    }
    char *all = NULL;
    size_t len = 0, row = (size_t)*k * sizeof(double);
    const char *mine = *scores ? (const char *)*scores + first * row : NULL;
    if (mpi_shard_gather(mine, count * row, &all, &len))
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "gathering the model outputs failed");
    if (mpi_shard_rank() == 0 && len != d->n * row)
        st = cli_set_error(err, CD_ERR_SHAPE, "the ranks' model outputs have different widths");
    else if (mpi_shard_rank() == 0)
        memcpy(*scores, all, len);
    free(all);
    if (mpi_shard_rank() != 0) {
        free(*scores);
        *scores = NULL;
    }
    return st;
}

cd_status calib_data_run(const cd_model *m, const calib_dataset *d, const calib_run_opts *o,
                         double **scores, int *k, int *is_probs, cd_error *err)
{
    *scores = NULL;
    *k = 0;
    int ndim = -1;
    int64_t dims[CD_MAX_DIMS];
    cd_model_input_shape(m, 0, &ndim, dims, NULL);
    size_t batch = o->batch > 0 ? (size_t)o->batch : 64;
    if (ndim >= 1 && dims[0] > 0)
        batch = (size_t)dims[0] == 1 ? 1 : batch; /* fixed batch 1: run one row at a time */
    runner r;
    cd_status st = runner_open(&r, m, o, err);
    *is_probs = r.ens || r.mc || r.probs_out;
    /* mpirun -n N: this rank's whole batches (the serial run's batches, so
     * the numbers do not depend on N; docs/scale-out.md). */
    size_t from = 0, count = 0;
    mpi_shard_range_units(d->n, batch, &from, &count);
    mpi_progress prog;
    mpi_progress_begin(&prog, "calibrate: ran the model on %zu/%zu rows", d->n, false);
    for (size_t first = from; !st && first < from + count; first += batch) {
        size_t b = from + count - first < batch ? from + count - first : batch;
        cd_tensor *x = NULL;
        st = load_batch(m, d, first, b, &x, err);
        if (!st)
            st = run_batch(&r, x, b, scores, d->n, first, k, err);
        cd_tensor_free(x);
        if (!st)
            mpi_progress_step(&prog, first + b - from);
    }
    mpi_progress_end(&prog);
    runner_close(&r);
    if (mpi_shard_size() > 1)
        st = gather_scores(d, from, count, st, scores, k, err);
    for (size_t i = 0; !st && *scores && i < d->n * (size_t)*k; i++)
        if (!isfinite((*scores)[i]))
            st = cli_set_error(err, CD_ERR_NUMERIC, "the model produced NaN/Inf for row %zu",
                               i / (size_t)*k);
    if (st) {
        free(*scores);
        *scores = NULL;
    }
    return st;
}
