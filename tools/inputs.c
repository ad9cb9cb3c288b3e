#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "inputs.h"

static bool has_ext(const char *name, const char *const *exts)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return false;
    for (; *exts; exts++)
        if (strcasecmp(dot, *exts) == 0)
            return true;
    return false;
}

static int push(input_list *l, char *path)
{
    char **grown = realloc(l->paths, (size_t)(l->count + 1) * sizeof *grown);
    if (!grown) {
        free(path);
        return -1;
    }
    l->paths = grown;
    l->paths[l->count++] = path;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int collect_dir(const char *dir, input_list *out)
{
    static const char *const exts[] = {".png", ".jpg", ".jpeg", ".npy", NULL};
    DIR *d = opendir(dir);
    if (!d)
        return cli_fail("cannot open folder '%s'", dir) ? -1 : -1;
    int start = out->count;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !has_ext(e->d_name, exts))
            continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p || (snprintf(p, n, "%s/%s", dir, e->d_name), push(out, p) != 0)) {
            closedir(d);
            return -1;
        }
    }
    closedir(d);
    qsort(out->paths + start, (size_t)(out->count - start), sizeof(char *), cmp_str);
    return 0;
}

int inputs_collect(int argc, char **argv, input_list *out)
{
    out->paths = NULL;
    out->count = 0;
    for (int i = 0; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            if (collect_dir(argv[i], out) != 0)
                return -1;
        } else if (push(out, strdup(argv[i])) != 0) {
            return -1;
        }
    }
    return 0;
}

void inputs_free(input_list *l)
{
    for (int i = 0; i < l->count; i++)
        free(l->paths[i]);
    free(l->paths);
    l->paths = NULL;
    l->count = 0;
}

bool inputs_is_npy(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char magic[6] = {0};
    bool npy = false;
    if (f) {
        npy = fread(magic, 1, 6, f) == 6 && memcmp(magic, "\x93NUMPY", 6) == 0;
        fclose(f);
    }
    return npy;
}

cd_status inputs_load_tensor(const cd_model *m, const char *path, cd_tensor **out, cd_error *err)
{
    int ndim = -1;
    int64_t dims[CD_MAX_DIMS];
    if (cd_model_input_count(m) < 1)
        return cli_set_error(err, CD_ERR_INVALID_ARGUMENT, "model has no inputs");
    cd_model_input_shape(m, 0, &ndim, dims, NULL);
    if (inputs_is_npy(path)) {
        cd_status st = cd_npy_load_f32(path, out, err);
        if (st != CD_OK)
            return st;
        if (ndim == 4 && cd_tensor_ndim(*out) == 3) { /* (C,H,W) -> (1,C,H,W) */
            const int64_t *d = cd_tensor_dims(*out);
            int64_t nd[4] = {1, d[0], d[1], d[2]};
            cd_tensor *t = NULL;
            st = cd_tensor_from_data(CD_FLOAT32, 4, nd, cd_tensor_cdata(*out), &t, err);
            cd_tensor_free(*out);
            *out = t;
        }
        return st;
    }
    cd_image *img = NULL;
    cd_status st = cd_image_load(path, &img, err);
    if (st != CD_OK)
        return st;
    cd_preprocess pp;
    st = cd_model_preprocess(m, &pp);
    if (st == CD_OK && ndim == 4) {
        if (dims[1] == 1)
            pp.color = CD_COLOR_GRAY;
        else if (dims[1] == 3)
            pp.color = CD_COLOR_RGB;
        bool sized = pp.resize_short > 0 || (pp.resize_h > 0 && pp.resize_w > 0);
        bool cropped = pp.crop_h > 0 && pp.crop_w > 0;
        if (!sized && !cropped && dims[2] > 0 && dims[3] > 0 &&
            (dims[2] != img->height || dims[3] != img->width)) {
            pp.resize_h = (int)dims[2];
            pp.resize_w = (int)dims[3];
        }
    }
    if (st == CD_OK)
        st = cd_image_to_tensor(img, &pp, out, err);
    cd_image_free(img);
    return st;
}

void softmax_rows(float *v, size_t rows, size_t k)
{
    for (size_t r = 0; r < rows; r++) {
        float *x = v + r * k;
        float mx = -INFINITY;
        for (size_t i = 0; i < k; i++)
            mx = fmaxf(mx, x[i]);
        double sum = 0;
        for (size_t i = 0; i < k; i++)
            sum += exp((double)x[i] - mx);
        for (size_t i = 0; i < k; i++)
            x[i] = (float)(exp((double)x[i] - mx) / sum);
    }
}
