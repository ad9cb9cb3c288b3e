/* Dataset loading for the global-interpretability and surrogate commands. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "calib_data.h"
#include "core/atomic_file.h"
#include "inputs.h"
#include "interp_data.h"

/* Row r of an (N, H, W) / (N, C, H, W) array as a (1, C, H, W) input. */
static cd_status array_row(const cd_model *m, const cd_tensor *a, size_t r, cd_tensor **out,
                           cd_error *err)
{
    const int64_t *d = cd_tensor_dims(a);
    int nd = cd_tensor_ndim(a);
    int c = nd == 4 ? (int)d[1] : 1, h = (int)d[nd - 2], w = (int)d[nd - 1];
    size_t plane = (size_t)h * (size_t)w, row = plane * (size_t)c;
    cd_dtype dt = cd_tensor_dtype(a);
    const void *src = cd_tensor_cdata(a);
    if (dt != CD_UINT8) {
        int64_t dims[4] = {1, c, h, w};
        cd_status st = cd_tensor_create(CD_FLOAT32, 4, dims, out, err);
        float *x = st ? NULL : cd_tensor_data(*out);
        for (size_t i = 0; x && i < row; i++)
            x[i] = dt == CD_FLOAT32 ? ((const float *)src)[r * row + i]
                                    : (float)((const double *)src)[r * row + i];
        return st;
    }
    if (c != 1 && c != 3)
        return cli_set_error(err, CD_ERR_SHAPE, "uint8 image rows need 1 or 3 channels, got %d",
                             c);
    cd_image *img = NULL;
    cd_status st = cd_image_create(w, h, c, &img, err);
    if (st)
        return st;
    const uint8_t *u = src;
    for (int ch = 0; ch < c; ch++) /* CHW -> HWC */
        for (size_t p = 0; p < plane; p++)
            img->pixels[p * (size_t)c + (size_t)ch] = u[r * row + (size_t)ch * plane + p];
    cd_preprocess pp;
    cd_model_preprocess(m, &pp);
    st = cd_image_to_tensor(img, &pp, out, err);
    cd_image_free(img);
    return st;
}

/* Appends row i (a (1, C, H, W) tensor) to *x, created for n rows. */
static cd_status put_row(cd_tensor **x, size_t n, size_t i, cd_tensor *row, cd_error *err)
{
    if (!*x) {
        int64_t dims[CD_MAX_DIMS];
        int nd = cd_tensor_ndim(row);
        memcpy(dims, cd_tensor_dims(row), (size_t)nd * sizeof *dims);
        if (nd != 4)
            return cli_set_error(err, CD_ERR_SHAPE, "inputs must be (1, C, H, W), got %d axes",
                                 nd);
        dims[0] = (int64_t)n;
        cd_status st = cd_tensor_create(CD_FLOAT32, nd, dims, x, err);
        if (st)
            return st;
    }
    size_t rb = cd_tensor_nbytes(*x) / n;
    if (cd_tensor_nbytes(row) != rb)
        return cli_set_error(err, CD_ERR_SHAPE, "row %zu has another shape than row 0", i);
    memcpy((char *)cd_tensor_data(*x) + i * rb, cd_tensor_cdata(row), rb);
    return CD_OK;
}

static cd_status load_rows(const cd_model *m, const cd_tensor *array, char **paths, size_t n,
                           const char *cmd, cd_tensor **x, cd_error *err)
{
    *x = NULL;
    cd_status st = CD_OK;
    time_t last = time(NULL);
    for (size_t i = 0; !st && i < n; i++) {
        cd_tensor *row = NULL;
        st = array ? array_row(m, array, i, &row, err)
                   : inputs_load_tensor(m, paths[i], &row, err);
        if (!st)
            st = put_row(x, n, i, row, err);
        cd_tensor_free(row);
        if (cmd && (time(NULL) != last || i + 1 == n)) {
            last = time(NULL);
            fprintf(stderr, "%s: loaded %zu/%zu rows\n", cmd, i + 1, n);
        }
    }
    if (st) {
        cd_tensor_free(*x);
        *x = NULL;
    }
    return st;
}

cd_status interp_load_labelled(const cd_model *m, const char *data, const char *labels_path,
                               int k, const char *cmd, cd_tensor **x, int **labels,
                               cd_error *err)
{
    calib_dataset d;
    *x = NULL;
    *labels = NULL;
    cd_status st = calib_data_load(m, data, labels_path, k, &d, err);
    if (st)
        return st;
    st = load_rows(m, d.array, d.paths, d.n, cmd, x, err);
    if (!st) {
        *labels = d.labels;
        d.labels = NULL;
    }
    calib_data_free(&d);
    return st;
}

cd_status interp_open(const char *path, int threads, int batch, const char *data,
                      const char *labels_path, const char *cmd, cd_model **m,
                      cd_explainer **e, cd_tensor **x, int **labels, cd_error *err)
{
    cd_explain_options eo = {.threads = threads, .max_batch = batch};
    cd_status st = cd_model_load(path, NULL, m, err);
    if (!st)
        st = cd_explainer_create(*m, &eo, e, err);
    if (!st)
        st = interp_load_labelled(*m, data, labels_path, 0, cmd, x, labels, err);
    return st;
}

int interp_class_count(const cd_model *m, const int *v, size_t n)
{
    int nd = 0, k = cd_model_label_count(m);
    int64_t dims[CD_MAX_DIMS];
    if (cd_model_output_shape(m, 0, &nd, dims, NULL) == CD_OK && nd == 2 && dims[1] > 1)
        k = (int)dims[1];
    for (size_t i = 0; i < n; i++)
        if (v[i] + 1 > k)
            k = v[i] + 1;
    return k;
}

cd_status interp_load_examples(const cd_model *m, const char *path, cd_tensor **x,
                               cd_error *err)
{
    struct stat sb;
    *x = NULL;
    if (stat(path, &sb) != 0)
        return cli_set_error(err, CD_ERR_IO, "cannot read %s", path);
    if (!S_ISDIR(sb.st_mode)) {
        if (!inputs_is_npy(path))
            return cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "%s: expected a folder of "
                                 "images or an .npy array of rows", path);
        cd_tensor *a = NULL;
        cd_status st = cd_npy_load(path, &a, err);
        if (st)
            return st;
        int nd = cd_tensor_ndim(a);
        cd_dtype dt = cd_tensor_dtype(a);
        if ((nd != 3 && nd != 4) || (dt != CD_UINT8 && dt != CD_FLOAT32 && dt != CD_FLOAT64) ||
            cd_tensor_dims(a)[0] < 1)
            st = cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "%s: need an (N,H,W) or (N,C,H,W) "
                               "uint8/float array, got %d-D %s", path, nd, cd_dtype_name(dt));
        else
            st = load_rows(m, a, NULL, (size_t)cd_tensor_dims(a)[0], NULL, x, err);
        cd_tensor_free(a);
        return st;
    }
    input_list l;
    char *argv[1] = {(char *)path};
    if (inputs_collect(1, argv, &l) != 0)
        return cli_set_error(err, CD_ERR_IO, "cannot list %s", path);
    cd_status st = l.count == 0 ? cli_set_error(err, CD_ERR_INVALID_ARGUMENT,
                                                "%s holds no images or .npy files", path)
                                : load_rows(m, NULL, l.paths, (size_t)l.count, NULL, x, err);
    inputs_free(&l);
    return st;
}

cd_status interp_write_text(const char *path, const char *text, cd_error *err)
{
    cd_atomic_file *af = NULL;
    cd_status st = cd_atomic_open(path, true, &af, err);
    if (st)
        return st;
    if (fputs(text, cd_atomic_stream(af)) < 0) {
        cd_atomic_abort(af);
        return cli_set_error(err, CD_ERR_IO, "cannot write %s", path);
    }
    return cd_atomic_commit(af, err);
}

cd_status interp_write_json(const char *path, const cJSON *doc, cd_error *err)
{
    char *text = cJSON_Print(doc);
    if (!text)
        return cli_set_error(err, CD_ERR_OUT_OF_MEMORY, "out of memory printing %s", path);
    size_t n = strlen(text);
    char *nl = realloc(text, n + 2);
    if (nl) {
        text = nl;
        strcpy(text + n, "\n");
    }
    cd_status st = interp_write_text(path, text, err);
    free(text);
    return st;
}

cd_status interp_make_dir(const char *dir, cd_error *err)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return cli_set_error(err, CD_ERR_IO, "cannot create folder %s: %s", dir,
                             strerror(errno));
    return CD_OK;
}

const char *interp_path(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
    return buf;
}
