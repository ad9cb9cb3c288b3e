/* Heatmap rendering: the viridis colour map (perceptually uniform), a
 * heatmap with a scale bar, and overlays on the input image. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain_internal.h"

/* Viridis (van der Walt & Smith, matplotlib's default map) sampled at 17
 * evenly spaced points t = k/16, as 8-bit RGB; linear interpolation between
 * anchors stays within about one 8-bit step of the full 256-entry table. */
static const unsigned char viridis[17][3] = {
    {68, 1, 84},    {72, 24, 106},  {71, 45, 123},  {66, 64, 134},  {59, 82, 139},
    {51, 99, 141},  {44, 114, 142}, {38, 130, 142}, {33, 145, 140}, {31, 160, 136},
    {40, 174, 128}, {63, 188, 115}, {94, 201, 98},  {132, 212, 75}, {173, 220, 48},
    {216, 226, 25}, {253, 231, 37}};

void cd_explain_colormap(float t, float rgb[3])
{
    if (!(t > 0))
        t = 0; /* NaN too */
    if (t > 1)
        t = 1;
    float pos = t * 16;
    int i = (int)pos;
    if (i > 15)
        i = 15;
    float f = pos - (float)i;
    for (int c = 0; c < 3; c++)
        rgb[c] = viridis[i][c] * (1 - f) + viridis[i + 1][c] * f;
}

static cd_status plane_of(const cd_tensor *m, int64_t *h, int64_t *w, cd_error *err)
{
    if (!m || m->dtype != CD_FLOAT32 || m->ndim != 2 || m->dims[0] < 1 || m->dims[1] < 1 ||
        m->dims[0] > 65535 || m->dims[1] > 65535)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "render: need a float32 (H, W) map");
    *h = m->dims[0];
    *w = m->dims[1];
    return CD_OK;
}

/* Min-max scaled copy of the map (constant maps become 0). */
static float *scaled(const cd_tensor *m, size_t n)
{
    float *v = malloc(n * sizeof *v);
    if (!v)
        return NULL;
    const float *a = cd_cf32(m);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (isfinite(a[i])) {
            lo = fmin(lo, a[i]);
            hi = fmax(hi, a[i]);
        }
    for (size_t i = 0; i < n; i++)
        v[i] = hi > lo && isfinite(a[i]) ? (float)((a[i] - lo) / (hi - lo)) : 0.0f;
    return v;
}

#define BAR_GAP 6
#define BAR_WIDTH 12
#define STRIP_HEIGHT 32 /* 1-row maps (1-D inputs) are drawn as a strip */

cd_status cd_explain_render_heatmap(const cd_tensor *map2d, bool scale_bar, cd_image **out,
                                    cd_error *err)
{
    int64_t h = 0, w = 0;
    cd_status st = plane_of(map2d, &h, &w, err);
    if (st != CD_OK)
        return st;
    int rows = h == 1 ? STRIP_HEIGHT : (int)h;
    int width = (int)w + (scale_bar ? BAR_GAP + BAR_WIDTH : 0);
    float *v = scaled(map2d, (size_t)(h * w));
    if (!v)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    st = cd_image_create(width, rows, 3, out, err);
    for (int y = 0; st == CD_OK && y < rows; y++) {
        float *px = (*out)->pixels + (size_t)y * width * 3;
        for (int x = 0; x < w; x++)
            cd_explain_colormap(v[(h == 1 ? 0 : y) * w + x], px + 3 * x);
        for (int x = (int)w; x < width; x++) {
            float *p = px + 3 * x;
            if (x < w + BAR_GAP) {
                p[0] = p[1] = p[2] = 255; /* white gap */
                continue;
            }
            /* Bar: top = map maximum, bottom = minimum; ticks at 0, 1/2, 1. */
            float t = rows > 1 ? 1.0f - (float)y / (float)(rows - 1) : 1.0f;
            cd_explain_colormap(t, p);
            bool tick = (y == 0 || y == rows - 1 || y == rows / 2) && x >= width - 3;
            if (tick)
                p[0] = p[1] = p[2] = 0;
        }
    }
    free(v);
    return st;
}

cd_status cd_explain_render_overlay(const cd_tensor *map2d, const cd_image *base, float alpha,
                                    cd_image **out, cd_error *err)
{
    int64_t h = 0, w = 0;
    cd_status st = plane_of(map2d, &h, &w, err);
    if (st != CD_OK)
        return st;
    if (!base || base->width != w || base->height != h || (base->channels != 1 &&
                                                            base->channels < 3))
        return cd_fail(err, CD_ERR_SHAPE, "overlay: the image must be %lldx%lld gray or RGB",
                       (long long)w, (long long)h);
    if (!(alpha >= 0 && alpha <= 1))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "overlay: alpha must be in [0, 1]");
    float *v = scaled(map2d, (size_t)(h * w));
    if (!v)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    st = cd_image_create((int)w, (int)h, 3, out, err);
    for (size_t i = 0; st == CD_OK && i < (size_t)(h * w); i++) {
        float rgb[3];
        cd_explain_colormap(v[i], rgb);
        const float *b = base->pixels + i * (size_t)base->channels;
        for (int c = 0; c < 3; c++) {
            float bc = base->channels == 1 ? b[0] : b[c];
            (*out)->pixels[i * 3 + (size_t)c] = (1 - alpha) * bc + alpha * rgb[c];
        }
    }
    free(v);
    return st;
}
