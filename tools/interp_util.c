/* Helpers shared by the feature-map, maximisation and robustness commands. */
#include "interp_util.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "core/atomic_file.h"

cd_status iu_write_file(const char *path, void (*write)(FILE *f, const void *ctx),
                        const void *ctx, cd_error *err)
{
    cd_atomic_file *af = NULL;
    cd_status st = cd_atomic_open(path, true, &af, err);
    if (st != CD_OK)
        return st;
    FILE *f = cd_atomic_stream(af);
    write(f, ctx);
    if (ferror(f)) {
        cd_atomic_abort(af);
        return cli_set_error(err, CD_ERR_IO, "cannot write '%s'", path);
    }
    return cd_atomic_commit(af, err);
}

int iu_mkdir(const char *cmd, const char *dir)
{
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return cli_fail("%s: cannot create '%s': %s", cmd, dir, strerror(errno));
    return 0;
}

cd_status iu_upscale(const cd_image *img, int min_side, cd_image **out, cd_error *err)
{
    int big = img->width > img->height ? img->width : img->height;
    int f = big >= min_side || big < 1 ? 1 : (min_side + big - 1) / big;
    cd_status st = cd_image_create(img->width * f, img->height * f, img->channels, out, err);
    if (st != CD_OK)
        return st;
    int c = img->channels;
    for (int y = 0; y < (*out)->height; y++)
        for (int x = 0; x < (*out)->width; x++)
            memcpy((*out)->pixels + ((size_t)y * (size_t)(*out)->width + (size_t)x) * (size_t)c,
                   img->pixels + ((size_t)(y / f) * (size_t)img->width + (size_t)(x / f)) * (size_t)c,
                   (size_t)c * sizeof(float));
    return CD_OK;
}

cd_status iu_input_to_image(const cd_model *m, const cd_tensor *x, size_t r, int min_side,
                            cd_image **out, cd_error *err)
{
    const int64_t *d = cd_tensor_dims(x);
    if (cd_tensor_ndim(x) != 4)
        return cli_set_error(err, CD_ERR_SHAPE, "images need a 4-D (N, C, H, W) input");
    int C = (int)d[1], H = (int)d[2], W = (int)d[3], oc = C == 3 ? 3 : 1;
    cd_preprocess pp;
    cd_model_preprocess(m, &pp);
    float mul = pp.scale > 0 && pp.scale != 1 ? pp.scale : 1.0f;
    cd_image *img = NULL;
    cd_status st = cd_image_create(W, H, oc, &img, err);
    if (st != CD_OK)
        return st;
    size_t plane = (size_t)H * (size_t)W;
    const float *v = (const float *)cd_tensor_cdata(x) + r * plane * (size_t)C;
    for (int c = 0; c < oc; c++) {
        int k = pp.color == CD_COLOR_GRAY ? 0 : c;
        float sd = pp.std[k] != 0 ? pp.std[k] : 1.0f;
        for (size_t p = 0; p < plane; p++)
            img->pixels[p * (size_t)oc + (size_t)c] =
                (v[(size_t)c * plane + p] * sd + pp.mean[k]) * mul;
    }
    st = iu_upscale(img, min_side, out, err);
    cd_image_free(img);
    return st;
}

void iu_safe_name(const char *s, char *buf, size_t size)
{
    size_t i = 0;
    for (; s && *s && i + 1 < size; s++, i++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        buf[i] = ok ? c : '_';
    }
    buf[i] = '\0';
}

void iu_stem(const char *path, char *buf, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(buf, size, "%s", base);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf)
        *dot = '\0';
}
