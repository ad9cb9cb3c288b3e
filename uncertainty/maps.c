/* Dense uncertainty maps on disk: fixed-range viridis PNGs with a labelled
 * scale bar, overlays on the input image, and the .npy arrays.
 *
 * Maps are coloured on a fixed range (the bounds the quantity can reach)
 * rather than min-max scaled, so the maps of different inputs can be
 * compared by eye: a dark entropy map means a confident model, not merely a
 * uniformly unsure one. The colour map itself is explain/'s viridis. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "candor/explain.h"
#include "core/internal.h"
#include "candor/uncertainty.h"

/* ------------------------------------------------------------ tiny font */

/* 3x5 glyphs for the characters "%.3g" produces; each row is 3 bits, the
 * high bit on the left. */
static const char glyph_chars[] = "0123456789.-+e";
static const unsigned char glyphs[][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
    {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7},
    {0, 0, 0, 0, 2}, {0, 0, 7, 0, 0}, {0, 2, 7, 2, 0}, {7, 5, 7, 4, 7}};

#define GLYPH_W 3
#define GLYPH_H 5
#define LABEL_CHARS 9

/* Draws text in black at (x, y), each font pixel a scale x scale block;
 * characters outside the font and pixels outside the image are skipped. */
static void draw_text(cd_image *img, int x, int y, int scale, const char *text)
{
    for (; *text; text++, x += (GLYPH_W + 1) * scale) {
        const char *at = strchr(glyph_chars, *text);
        if (!at || !*at)
            continue;
        const unsigned char *g = glyphs[at - glyph_chars];
        for (int r = 0; r < GLYPH_H * scale; r++)
            for (int c = 0; c < GLYPH_W * scale; c++) {
                int px = x + c, py = y + r;
                if (!(g[r / scale] >> (GLYPH_W - 1 - c / scale) & 1) || px < 0 || py < 0 ||
                    px >= img->width || py >= img->height)
                    continue;
                float *p = img->pixels + ((size_t)py * img->width + px) * 3;
                p[0] = p[1] = p[2] = 0;
            }
    }
}

/* ------------------------------------------------------------ rendering */

static cd_status plane_of(const cd_tensor *m, double lo, double hi, cd_error *err)
{
    if (!m || m->dtype != CD_FLOAT32 || m->ndim != 2 || m->dims[0] < 1 || m->dims[1] < 1 ||
        m->dims[0] > 32767 || m->dims[1] > 32767)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "map rendering needs a float32 (H, W) map of at most 32767 x 32767");
    if (!(hi > lo) || !isfinite(lo) || !isfinite(hi))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "map range [%g, %g] is empty", lo, hi);
    return CD_OK;
}

/* Colour of value v on [lo, hi]; non-finite values are drawn at lo. */
static void colour_of(float v, double lo, double hi, float rgb[3])
{
    float t = isfinite(v) ? (float)((v - lo) / (hi - lo)) : 0.0f;
    cd_explain_colormap(t, rgb);
}

#define BAR_GAP 6
#define BAR_WIDTH 12
#define LABEL_GAP 3

/* The scale bar (top = hi, bottom = lo) at column x0 with tick labels. */
static void draw_legend(cd_image *img, int x0, double lo, double hi)
{
    int rows = img->height, scale = rows >= 96 ? 2 : 1;
    for (int y = 0; y < rows; y++)
        for (int x = x0; x < x0 + BAR_WIDTH; x++) {
            float t = rows > 1 ? 1.0f - (float)y / (float)(rows - 1) : 1.0f;
            cd_explain_colormap(t, img->pixels + ((size_t)y * img->width + x) * 3);
        }
    int text_h = GLYPH_H * scale, tx = x0 + BAR_WIDTH + LABEL_GAP;
    char buf[32];
    snprintf(buf, sizeof buf, "%.3g", hi);
    draw_text(img, tx, 0, scale, buf);
    snprintf(buf, sizeof buf, "%.3g", lo);
    draw_text(img, tx, rows - text_h, scale, buf);
    if (rows >= 3 * (text_h + 2)) {
        snprintf(buf, sizeof buf, "%.3g", 0.5 * (lo + hi));
        draw_text(img, tx, (rows - text_h) / 2, scale, buf);
    }
}

cd_status cd_render_map(const cd_tensor *map2d, double lo, double hi, bool legend,
                        cd_image **out, cd_error *err)
{
    cd_status st = plane_of(map2d, lo, hi, err);
    if (st != CD_OK)
        return st;
    int h = (int)map2d->dims[0], w = (int)map2d->dims[1];
    int scale = h >= 96 ? 2 : 1;
    int width = w + (legend ? BAR_GAP + BAR_WIDTH + LABEL_GAP +
                                  LABEL_CHARS * (GLYPH_W + 1) * scale : 0);
    st = cd_image_create(width, h, 3, out, err);
    if (st != CD_OK)
        return st;
    cd_image *img = *out;
    const float *v = map2d->data;
    for (size_t i = 0; i < (size_t)width * h * 3; i++)
        img->pixels[i] = 255; /* white legend background */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            colour_of(v[(size_t)y * w + x], lo, hi, img->pixels + ((size_t)y * width + x) * 3);
    if (legend)
        draw_legend(img, w + BAR_GAP, lo, hi);
    return CD_OK;
}

cd_status cd_render_map_overlay(const cd_tensor *map2d, double lo, double hi,
                                const cd_image *base, float alpha, cd_image **out,
                                cd_error *err)
{
    cd_status st = plane_of(map2d, lo, hi, err);
    if (st != CD_OK)
        return st;
    int h = (int)map2d->dims[0], w = (int)map2d->dims[1];
    if (!base || base->width != w || base->height != h ||
        (base->channels != 1 && base->channels != 3 && base->channels != 4))
        return cd_fail(err, CD_ERR_SHAPE, "overlay: the base image must be %dx%d (W x H)", w, h);
    if (!(alpha >= 0 && alpha <= 1))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "overlay: alpha %g is outside [0, 1]",
                       alpha);
    st = cd_image_create(w, h, 3, out, err);
    for (size_t i = 0; st == CD_OK && i < (size_t)w * h; i++) {
        float rgb[3];
        colour_of(((const float *)map2d->data)[i], lo, hi, rgb);
        const float *b = base->pixels + i * (size_t)base->channels;
        for (int c = 0; c < 3; c++) {
            float bc = base->channels == 1 ? b[0] : b[c];
            (*out)->pixels[i * 3 + (size_t)c] = (1 - alpha) * bc + alpha * rgb[c];
        }
    }
    return st;
}

/* ------------------------------------------------------------- saving */

/* Categorical colours for the argmax map (class k uses entry k mod 12). */
static const unsigned char class_palette[12][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
    {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127},
    {188, 189, 34},  {23, 190, 207}, {0, 0, 0},      {255, 255, 255}};

static cd_status save_argmax_png(const char *path, const cd_tensor *cls, cd_error *err)
{
    int h = (int)cls->dims[0], w = (int)cls->dims[1];
    cd_image *img = NULL;
    cd_status st = cd_image_create(w, h, 3, &img, err);
    const int64_t *c = cls->data;
    for (size_t i = 0; st == CD_OK && i < (size_t)w * h; i++)
        for (int ch = 0; ch < 3; ch++)
            img->pixels[i * 3 + (size_t)ch] = class_palette[c[i] % 12][ch];
    if (st == CD_OK)
        st = cd_image_save_png(path, img, true, err);
    cd_image_free(img);
    return st;
}

static cd_status join(char *buf, size_t n, const char *prefix, const char *suffix,
                      cd_error *err)
{
    if ((size_t)snprintf(buf, n, "%s.%s", prefix, suffix) >= n)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "map path %s.%s is too long", prefix,
                       suffix);
    return CD_OK;
}

/* One float map: NAME.npy, NAME.png (legend) and, with base, NAME.overlay.png. */
static cd_status save_one(const char *prefix, const char *name, const cd_tensor *map,
                          double lo, double hi, const cd_image *base, float alpha,
                          cd_error *err)
{
    char path[4096], suffix[64];
    cd_image *img = NULL;
    snprintf(suffix, sizeof suffix, "%s.npy", name);
    cd_status st = join(path, sizeof path, prefix, suffix, err);
    if (st == CD_OK)
        st = cd_npy_save_ex(path, map, true, err);
    snprintf(suffix, sizeof suffix, "%s.png", name);
    if (st == CD_OK)
        st = join(path, sizeof path, prefix, suffix, err);
    if (st == CD_OK)
        st = cd_render_map(map, lo, hi, true, &img, err);
    if (st == CD_OK)
        st = cd_image_save_png(path, img, true, err);
    cd_image_free(img);
    img = NULL;
    if (st != CD_OK || !base)
        return st;
    snprintf(suffix, sizeof suffix, "%s.overlay.png", name);
    st = join(path, sizeof path, prefix, suffix, err);
    if (st == CD_OK)
        st = cd_render_map_overlay(map, lo, hi, base, alpha, &img, err);
    if (st == CD_OK)
        st = cd_image_save_png(path, img, true, err);
    cd_image_free(img);
    return st;
}

void cd_dense_map_range(const char *name, int n_classes, double *lo, double *hi)
{
    *lo = 0.0;
    /* Entropies and MI lie in [0, ln C]; a probability's std in [0, 1/2]. */
    *hi = name && strcmp(name, "winning_std") == 0 ? 0.5
                                                   : log(n_classes > 1 ? n_classes : 2);
}

cd_status cd_dense_maps_save(const cd_dense_maps *m, int n_classes, const char *prefix,
                             const cd_image *base, float alpha, cd_error *err)
{
    if (!m || !prefix || !m->entropy || !m->expected_entropy || !m->mutual_information ||
        !m->winning_std || !m->winning_class || n_classes < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_dense_maps_save: incomplete maps");
    const char *names[4] = {"entropy", "expected_entropy", "mutual_information", "winning_std"};
    const cd_tensor *maps[4] = {m->entropy, m->expected_entropy, m->mutual_information,
                                m->winning_std};
    cd_status st = CD_OK;
    for (int i = 0; i < 4 && st == CD_OK; i++) {
        double lo, hi;
        cd_dense_map_range(names[i], n_classes, &lo, &hi);
        st = save_one(prefix, names[i], maps[i], lo, hi, base, alpha, err);
    }
    char path[4096];
    if (st == CD_OK)
        st = join(path, sizeof path, prefix, "argmax.npy", err);
    if (st == CD_OK)
        st = cd_npy_save_ex(path, m->winning_class, true, err);
    if (st == CD_OK)
        st = join(path, sizeof path, prefix, "argmax.png", err);
    if (st == CD_OK)
        st = save_argmax_png(path, m->winning_class, err);
    return st;
}
