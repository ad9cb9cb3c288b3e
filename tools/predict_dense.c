/* candor predict --mc on dense (N, C, H, W) outputs: per-pixel entropy,
 * mutual information and winning-class std (cd_summarize_dense), printed as
 * a short summary and, with --maps DIR, written as .npy and PNG maps
 * (cd_dense_maps_save), optionally over the input image (--overlay). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inputs.h"
#include "predict_dense.h"
#include "cli_util.h"

typedef struct map_stats {
    double mean, max;
} map_stats;

static map_stats stats_of(const cd_tensor *t)
{
    const float *v = cd_tensor_cdata(t);
    size_t n = cd_tensor_numel(t);
    map_stats s = {0.0, 0.0};
    for (size_t i = 0; i < n; i++) {
        s.mean += v[i];
        s.max = i == 0 || v[i] > s.max ? v[i] : s.max;
    }
    s.mean /= n ? (double)n : 1.0;
    return s;
}

/* The file stem of path (no folder, no extension), plus "_ROW" for rows of
 * a batched input. */
static void stem_of(const char *path, int64_t row, int64_t rows, char *buf, size_t n)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    int len = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    if (rows > 1)
        snprintf(buf, n, "%.*s_%lld", len, base, (long long)row);
    else
        snprintf(buf, n, "%.*s", len, base);
}

/* Nearest-neighbour resample of img to w x h (the overlay needs the map's
 * size; the input image may be larger before the model's resize). */
static cd_status resample(const cd_image *img, int w, int h, cd_image **out, cd_error *err)
{
    cd_status st = cd_image_create(w, h, img->channels == 1 ? 1 : 3, out, err);
    if (st != CD_OK)
        return st;
    int oc = (*out)->channels;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int sy = (int)((y + 0.5) * img->height / h), sx = (int)((x + 0.5) * img->width / w);
            const float *s = img->pixels + ((size_t)sy * img->width + sx) * img->channels;
            float *d = (*out)->pixels + ((size_t)y * w + x) * oc;
            for (int c = 0; c < oc; c++)
                d[c] = s[c];
        }
    return CD_OK;
}

/* A (1 or 3, H, W) tensor row as an image, each channel min-max scaled to
 * [0, 255] (a .npy input is already normalised; this undoes it for display). */
static cd_status image_of_tensor(const cd_tensor *x, int64_t row, cd_image **out, cd_error *err)
{
    const int64_t *d = cd_tensor_dims(x);
    if (cd_tensor_ndim(x) != 4 || (d[1] != 1 && d[1] != 3)) {
        err->code = CD_ERR_SHAPE;
        snprintf(err->message, sizeof err->message,
                 "--overlay needs an image input or a (N, 1 or 3, H, W) tensor");
        return CD_ERR_SHAPE;
    }
    int c = (int)d[1], h = (int)d[2], w = (int)d[3];
    size_t hw = (size_t)h * w;
    const float *v = (const float *)cd_tensor_cdata(x) + (size_t)row * c * hw;
    cd_status st = cd_image_create(w, h, c, out, err);
    for (int ch = 0; st == CD_OK && ch < c; ch++) {
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < hw; i++)
            if (isfinite(v[ch * hw + i])) {
                lo = fmin(lo, v[ch * hw + i]);
                hi = fmax(hi, v[ch * hw + i]);
            }
        for (size_t i = 0; i < hw; i++) {
            double t = hi > lo && isfinite(v[ch * hw + i]) ? (v[ch * hw + i] - lo) / (hi - lo) : 0;
            (*out)->pixels[i * c + ch] = (float)(255.0 * t);
        }
    }
    return st;
}

/* The overlay base for one row at the map size w x h. */
static cd_status overlay_base(const char *path, const cd_tensor *x, int64_t row, int w, int h,
                              cd_image **out, cd_error *err)
{
    cd_image *img = NULL;
    cd_status st = inputs_is_npy(path) ? image_of_tensor(x, row, &img, err)
                                       : cd_image_load(path, &img, err);
    if (st == CD_OK && (img->width != w || img->height != h)) {
        cd_image *r = NULL;
        st = resample(img, w, h, &r, err);
        cd_image_free(img);
        img = r;
    }
    if (st != CD_OK) {
        cd_image_free(img);
        img = NULL;
    }
    *out = img;
    return st;
}

static void print_human(const dense_ctx *c, const char *name, const cd_dense_maps *m,
                        int64_t s, int64_t classes, const char *prefix)
{
    const int64_t *d = cd_tensor_dims(m->entropy);
    map_stats h = stats_of(m->entropy), mi = stats_of(m->mutual_information),
              sd = stats_of(m->winning_std);
    printf("%s  (%lld sample(s): %d model(s) x %d MC; %lld classes, %lld x %lld pixels)\n", name,
           (long long)s, c->o->n_models, c->o->T, (long long)classes, (long long)d[0],
           (long long)d[1]);
    printf("  entropy      mean %.4f  max %.4f nats (at most ln %lld = %.4f)\n", h.mean, h.max,
           (long long)classes, log((double)classes));
    printf("  mutual info  mean %.4f  max %.4f nats (epistemic)\n", mi.mean, mi.max);
    printf("  winning std  mean %.4f  max %.4f\n", sd.mean, sd.max);
    if (prefix)
        printf("  maps: %s.{entropy,expected_entropy,mutual_information,winning_std,argmax}"
               ".{npy,png}%s\n", prefix, c->o->overlay ? " + .overlay.png" : "");
}

static void print_json(const dense_ctx *c, const char *name, const cd_dense_maps *m,
                       int64_t s, int64_t classes, const char *prefix)
{
    const int64_t *d = cd_tensor_dims(m->entropy);
    const char *names[4] = {"entropy", "expected_entropy", "mutual_information", "winning_std"};
    const cd_tensor *maps[4] = {m->entropy, m->expected_entropy, m->mutual_information,
                                m->winning_std};
    printf("%s{\"input\":", *c->first_json ? "" : ",\n");
    *c->first_json = false;
    cli_json_str(stdout, name);
    printf(",\"kind\":\"segmentation\",\"samples\":%lld,\"members\":%d,\"mc_samples\":%d,"
           "\"seed\":%llu,\"classes\":%lld,\"height\":%lld,\"width\":%lld",
           (long long)s, c->o->n_models, c->o->T, (unsigned long long)c->o->seed,
           (long long)classes, (long long)d[0], (long long)d[1]);
    for (int i = 0; i < 4; i++) {
        map_stats st = stats_of(maps[i]);
        double lo, hi;
        cd_dense_map_range(names[i], (int)classes, &lo, &hi);
        printf(",\"%s\":{\"mean\":%.9g,\"max\":%.9g,\"range\":[%g,%.9g]", names[i], st.mean,
               st.max, lo, hi);
        if (prefix) {
            char path[4200];
            snprintf(path, sizeof path, "%s.%s.npy", prefix, names[i]);
            printf(",\"npy\":");
            cli_json_str(stdout, path);
            snprintf(path, sizeof path, "%s.%s.png", prefix, names[i]);
            printf(",\"png\":");
            cli_json_str(stdout, path);
        }
        printf("}");
    }
    printf("}");
}

int predict_dense_row(const dense_ctx *c, const char *path, const char *name, int64_t row,
                      int64_t rows, const float *probs, const int64_t dims[4])
{
    cd_error err;
    cd_tensor *t = NULL;
    cd_dense_maps m = {0};
    cd_image *base = NULL;
    char prefix[4096], stem[1024];
    bool write = c->o->maps_dir != NULL;
    stem_of(path, row, rows, stem, sizeof stem);
    if (write && (size_t)snprintf(prefix, sizeof prefix, "%s/%s", c->o->maps_dir, stem) >=
                     sizeof prefix)
        return cli_fail("predict: --maps path too long");
    cd_status st = cd_tensor_from_data(CD_FLOAT32, 4, dims, probs, &t, &err);
    if (st == CD_OK)
        st = cd_summarize_dense(t, &m, &err);
    if (st == CD_OK && write && c->o->overlay)
        st = overlay_base(path, c->input, row, (int)dims[3], (int)dims[2], &base, &err);
    if (st == CD_OK && write)
        st = cd_dense_maps_save(&m, (int)dims[1], prefix, base, c->o->overlay_alpha, &err);
    if (st == CD_OK && c->o->json)
        print_json(c, name, &m, dims[0], dims[1], write ? prefix : NULL);
    else if (st == CD_OK)
        print_human(c, name, &m, dims[0], dims[1], write ? prefix : NULL);
    if (st != CD_OK)
        fprintf(stderr, "candor predict: error (%s): %s: %s\n", cd_status_name(err.code), path,
                err.message);
    cd_image_free(base);
    cd_dense_maps_free(&m);
    cd_tensor_free(t);
    return st == CD_OK ? 0 : 1;
}
