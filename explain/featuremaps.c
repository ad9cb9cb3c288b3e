/* Feature maps: one layer's activations for one example, its channels ranked
 * by mean activation, and a labelled grid image on one shared colour scale
 * (a shared scale keeps the channels comparable, which is the point of
 * looking at them side by side). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "explain_internal.h"

/* ------------------------------------------------------------ tiny font */

/* 3x5 glyphs for channel indices and "%.3g" numbers; each row is 3 bits,
 * most significant bit on the left. */
static const char font_chars[] = "0123456789.-+e";
static const unsigned char font_rows[][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
    {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 2, 2}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7},
    {0, 0, 0, 0, 2}, {0, 0, 7, 0, 0}, {0, 2, 7, 2, 0}, {0, 6, 7, 4, 3}};

/* Writes text in black at (x, y), each font pixel an s x s block; unknown
 * characters and pixels outside the image are skipped. Returns the width. */
static int draw_text(cd_image *img, int x, int y, int s, const char *text)
{
    int x0 = x;
    for (; *text; text++, x += 4 * s) {
        const char *at = strchr(font_chars, *text);
        if (!at || !*at)
            continue;
        const unsigned char *g = font_rows[at - font_chars];
        for (int r = 0; r < 5 * s; r++)
            for (int c = 0; c < 3 * s; c++) {
                int px = x + c, py = y + r;
                if (!(g[r / s] & (4 >> (c / s))) || px < 0 || py < 0 || px >= img->width ||
                    py >= img->height)
                    continue;
                float *p = img->pixels + ((size_t)py * (size_t)img->width + (size_t)px) * 3;
                p[0] = p[1] = p[2] = 0.0f;
            }
    }
    return x - x0;
}

/* ------------------------------------------------------------ compute */

void cd_feature_maps_free(cd_feature_maps *fm)
{
    if (!fm)
        return;
    cd_tensor_free(fm->tensor);
    free(fm->channels);
    free(fm->means);
    memset(fm, 0, sizeof *fm);
}

/* Runs the model once and returns the named tensor, the same way `candor
 * run --output NAME=...` does. */
static cd_status layer_value(const cd_model *model, const cd_tensor *x, const char *layer,
                             int threads, cd_tensor **out, cd_error *err)
{
    cd_session_options so = {.threads = threads};
    cd_session *s = NULL;
    cd_status st = cd_session_create(model, &so, &s, err);
    if (st != CD_OK)
        return st;
    const cd_tensor *in[1] = {x};
    const char *names[1] = {layer};
    st = cd_session_run(s, 1, NULL, in, 1, names, out, err);
    cd_session_free(s);
    return st;
}

static cd_status check_maps(const cd_tensor *t, const char *layer, cd_error *err)
{
    char sh[96];
    if (t->dtype != CD_FLOAT32 || t->ndim < 2 || t->ndim > 4 || t->dims[0] != 1 ||
        t->dims[1] < 1)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "feature maps need a float32 (1, C[, H[, W]]) tensor; '%s' is %s %s",
                       layer, cd_dtype_name(t->dtype),
                       cd_shape_str(t->ndim, t->dims, sh, sizeof sh));
    return CD_OK;
}

/* Ranks channels by mean (descending; ties keep the lower index first). */
static void rank_channels(const double *mean, int c, int *order)
{
    for (int i = 0; i < c; i++)
        order[i] = i;
    for (int i = 1; i < c; i++) { /* insertion sort: stable, C is small */
        int v = order[i], j = i;
        while (j > 0 && mean[order[j - 1]] < mean[v]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
}

static cd_status fill_ranking(cd_feature_maps *fm, int top, cd_error *err)
{
    const cd_tensor *t = fm->tensor;
    int c = (int)t->dims[1];
    size_t s = cd_tensor_numel(t) / (size_t)c;
    fm->n_channels = c;
    fm->height = t->ndim == 4 ? (int)t->dims[2] : 1;
    fm->width = t->ndim == 4 ? (int)t->dims[3] : t->ndim == 3 ? (int)t->dims[2] : 1;
    fm->n_top = top > 0 && top < c ? top : c;
    double *mean = malloc((size_t)c * sizeof *mean);
    int *order = malloc((size_t)c * sizeof *order);
    fm->means = malloc((size_t)fm->n_top * sizeof *fm->means);
    fm->channels = malloc((size_t)fm->n_top * sizeof *fm->channels);
    if (!mean || !order || !fm->means || !fm->channels) {
        free(mean);
        free(order);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    const float *v = cd_tensor_cdata(t);
    for (int k = 0; k < c; k++) {
        double acc = 0;
        for (size_t j = 0; j < s; j++)
            acc += v[(size_t)k * s + j];
        mean[k] = s ? acc / (double)s : 0;
    }
    rank_channels(mean, c, order);
    fm->lo = INFINITY;
    fm->hi = -INFINITY;
    for (int i = 0; i < fm->n_top; i++) {
        int k = order[i];
        fm->channels[i] = k;
        fm->means[i] = mean[k];
        for (size_t j = 0; j < s; j++) {
            fm->lo = fminf(fm->lo, v[(size_t)k * s + j]);
            fm->hi = fmaxf(fm->hi, v[(size_t)k * s + j]);
        }
    }
    free(mean);
    free(order);
    return CD_OK;
}

/* Fails for an unknown layer, listing the node outputs (the last 12) that
 * could be meant. */
static cd_status check_layer_name(const cd_model *m, const char *layer, cd_error *err)
{
    if (cd_model_find_value(m, layer) >= 0)
        return CD_OK;
    char list[600] = "";
    size_t len = 0;
    int first = m->n_nodes > 12 ? m->n_nodes - 12 : 0;
    for (int i = first; i < m->n_nodes && len < sizeof list; i++)
        for (int j = 0; j < m->nodes[i].n_outputs && len < sizeof list; j++) {
            int v = m->nodes[i].outputs[j];
            if (v >= 0 && m->nodes[i].op != CD_OP_CONSTANT)
                len += (size_t)snprintf(list + len, sizeof list - len, "%s'%s'",
                                        len ? ", " : "", m->values[v].name);
        }
    return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                   "model has no tensor named '%s'; node outputs (the last %d nodes): %s", layer,
                   m->n_nodes - first, list);
}

cd_status cd_feature_maps_compute(const cd_model *model, const cd_tensor *x, const char *layer,
                                  int top, int threads, cd_feature_maps *out, cd_error *err)
{
    if (!model || !x || !layer || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_feature_maps_compute: NULL argument");
    memset(out, 0, sizeof *out);
    if (cd_tensor_ndim(x) < 1 || cd_tensor_dims(x)[0] != 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "feature maps take one example (batch 1)");
    cd_status st = check_layer_name(model, layer, err);
    if (st == CD_OK)
        st = layer_value(model, x, layer, threads, &out->tensor, err);
    if (st == CD_OK)
        st = check_maps(out->tensor, layer, err);
    if (st == CD_OK)
        st = fill_ranking(out, top, err);
    if (st != CD_OK)
        cd_feature_maps_free(out);
    return st;
}

/* ------------------------------------------------------------ render */

#define FM_PAD 6
#define FM_TEXT 2                   /* font scale */
#define FM_LABEL (5 * FM_TEXT + 4)  /* label band above a cell */
#define FM_BAR 14                   /* scale bar width */

static void put_rgb(cd_image *img, int x, int y, const float rgb[3])
{
    float *p = img->pixels + ((size_t)y * (size_t)img->width + (size_t)x) * 3;
    p[0] = rgb[0];
    p[1] = rgb[1];
    p[2] = rgb[2];
}

static float unit(float v, float lo, float hi)
{
    if (!isfinite(v))
        return 0.0f;
    return hi > lo ? (v - lo) / (hi - lo) : 0.5f;
}

/* Draws ranked channel i into its cell at (x0, y0), each value f x f pixels. */
static void draw_cell(const cd_feature_maps *fm, int i, int f, int x0, int y0, cd_image *img)
{
    char label[16];
    snprintf(label, sizeof label, "%d", fm->channels[i]);
    draw_text(img, x0, y0, FM_TEXT, label);
    y0 += FM_LABEL;
    size_t s = (size_t)fm->height * (size_t)fm->width;
    const float *v = (const float *)cd_tensor_cdata(fm->tensor) + (size_t)fm->channels[i] * s;
    for (int r = 0; r < fm->height * f; r++)
        for (int c = 0; c < fm->width * f; c++) {
            float rgb[3];
            cd_explain_colormap(unit(v[(size_t)(r / f) * (size_t)fm->width + (size_t)(c / f)],
                                     fm->lo, fm->hi),
                                rgb);
            put_rgb(img, x0 + c, y0 + r, rgb);
        }
}

/* Vertical ramp (top = hi) with its two end values written beside it. */
static void draw_scale(const cd_feature_maps *fm, int x0, int y0, int h, cd_image *img)
{
    for (int r = 0; r < h; r++) {
        float rgb[3];
        cd_explain_colormap(h > 1 ? 1.0f - (float)r / (float)(h - 1) : 1.0f, rgb);
        for (int c = 0; c < FM_BAR; c++)
            put_rgb(img, x0 + c, y0 + r, rgb);
    }
    char buf[32];
    snprintf(buf, sizeof buf, "%.3g", (double)fm->hi);
    draw_text(img, x0 + FM_BAR + 4, y0, FM_TEXT, buf);
    snprintf(buf, sizeof buf, "%.3g", (double)fm->lo);
    draw_text(img, x0 + FM_BAR + 4, y0 + h - 5 * FM_TEXT, FM_TEXT, buf);
}

cd_status cd_feature_maps_render(const cd_feature_maps *fm, int min_cell, cd_image **out,
                                 cd_error *err)
{
    if (!fm || !fm->tensor || !out || fm->n_top < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_feature_maps_render: no feature maps");
    *out = NULL;
    int big = fm->height > fm->width ? fm->height : fm->width;
    int want = min_cell > 0 ? min_cell : 64;
    int f = big >= want ? 1 : (want + big - 1) / big;
    int cols = (int)ceil(sqrt((double)fm->n_top)), rows = (fm->n_top + cols - 1) / cols;
    int cw = fm->width * f, ch = fm->height * f;
    if (cw > 4096 || ch > 4096 || (int64_t)cols * cw > 16384 || (int64_t)rows * ch > 16384)
        return cd_fail(err, CD_ERR_LIMIT, "feature-map grid too large (%d x %d cells of %dx%d)",
                       cols, rows, cw, ch);
    int text_w = 10 * 4 * FM_TEXT; /* room for "%.3g" of a negative exponent */
    int gw = FM_PAD + cols * (cw + FM_PAD), gh = FM_PAD + rows * (FM_LABEL + ch + FM_PAD);
    cd_image *img = NULL;
    cd_status st = cd_image_create(gw + FM_BAR + 4 + text_w + FM_PAD, gh, 3, &img, err);
    if (st != CD_OK)
        return st;
    for (size_t i = 0; i < (size_t)img->width * (size_t)img->height * 3; i++)
        img->pixels[i] = 255.0f;
    for (int i = 0; i < fm->n_top; i++)
        draw_cell(fm, i, f, FM_PAD + (i % cols) * (cw + FM_PAD),
                  FM_PAD + (i / cols) * (FM_LABEL + ch + FM_PAD), img);
    draw_scale(fm, gw, FM_PAD + FM_LABEL, gh - 2 * FM_PAD - FM_LABEL, img);
    *out = img;
    return CD_OK;
}
