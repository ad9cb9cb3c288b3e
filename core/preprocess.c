/* Image -> model input tensor (see cd_preprocess in candor/image.h for the
 * exact order of steps). Everything runs in float on the [0, 255] scale until
 * the scale step, so 8- and 16-bit sources are treated alike. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "candor/image.h"
#include "internal.h"

/* The same cap as image decoding: a resize must not allocate more than a
 * decodable image would. */
#define PREPROCESS_MAX_PIXELS ((int64_t)1 << 28)

void cd_preprocess_default(cd_preprocess *p)
{
    memset(p, 0, sizeof *p);
    p->scale = 255.0f;
    for (int c = 0; c < 3; c++) {
        p->mean[c] = 0.0f;
        p->std[c] = 1.0f;
    }
    p->color = CD_COLOR_RGB;
}

/* Planar float buffer (C planes of H x W) used between the steps. */
typedef struct planes {
    int c, h, w;
    float *v;
} planes;

static cd_status planes_alloc(planes *p, int c, int h, int w, cd_error *err)
{
    size_t n;
    p->c = c;
    p->h = h;
    p->w = w;
    p->v = NULL;
    if (!cd_mul_size((size_t)c, (size_t)h, &n) || !cd_mul_size(n, (size_t)w, &n) ||
        !cd_mul_size(n, sizeof(float), &n))
        return cd_fail(err, CD_ERR_LIMIT, "preprocess: %dx%d image too large", w, h);
    p->v = malloc(n ? n : 1);
    if (!p->v)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "preprocess: out of memory");
    return CD_OK;
}

/* Step 1: drop alpha, convert to gray (BT.601 luma) or replicate gray. */
static cd_status convert_color(const cd_image *img, cd_color color, planes *out, cd_error *err)
{
    int oc = color == CD_COLOR_GRAY ? 1 : 3;
    cd_status s = planes_alloc(out, oc, img->height, img->width, err);
    if (s != CD_OK)
        return s;
    size_t hw = (size_t)img->height * (size_t)img->width;
    const float *px = img->pixels;
    int ic = img->channels;
    for (size_t i = 0; i < hw; i++) {
        const float *p = px + i * (size_t)ic;
        if (ic == 1) {
            for (int c = 0; c < oc; c++)
                out->v[(size_t)c * hw + i] = p[0];
        } else if (oc == 1) {
            out->v[i] = 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
        } else {
            for (int c = 0; c < 3; c++)
                out->v[(size_t)c * hw + i] = p[c];
        }
    }
    return CD_OK;
}

/* Source coordinate for output index o under half-pixel centres, clamped at
 * the low edge as PyTorch does; i0/i1 and the weight of i1. */
static void bilinear_tap(int o, int in, int out, int *i0, int *i1, float *w1)
{
    double src = ((double)o + 0.5) * (double)in / (double)out - 0.5;
    if (src < 0.0)
        src = 0.0;
    int lo = (int)src;
    if (lo > in - 1)
        lo = in - 1;
    *i0 = lo;
    *i1 = lo + 1 < in ? lo + 1 : in - 1;
    *w1 = (float)(src - lo);
}

/* Step 2: bilinear resize of every plane. */
static cd_status resize_planes(planes *p, int oh, int ow, cd_error *err)
{
    planes r;
    cd_status s = planes_alloc(&r, p->c, oh, ow, err);
    if (s != CD_OK)
        return s;
    for (int y = 0; y < oh; y++) {
        int y0, y1;
        float wy;
        bilinear_tap(y, p->h, oh, &y0, &y1, &wy);
        for (int x = 0; x < ow; x++) {
            int x0, x1;
            float wx;
            bilinear_tap(x, p->w, ow, &x0, &x1, &wx);
            for (int c = 0; c < p->c; c++) {
                const float *pl = p->v + (size_t)c * (size_t)p->h * (size_t)p->w;
                const float *r0 = pl + (size_t)y0 * (size_t)p->w;
                const float *r1 = pl + (size_t)y1 * (size_t)p->w;
                float top = r0[x0] + wx * (r0[x1] - r0[x0]);
                float bot = r1[x0] + wx * (r1[x1] - r1[x0]);
                r.v[((size_t)c * (size_t)oh + (size_t)y) * (size_t)ow + (size_t)x] =
                    top + wy * (bot - top);
            }
        }
    }
    free(p->v);
    *p = r;
    return CD_OK;
}

/* The target size of step 2, or the current size when no resize is asked. */
static cd_status resize_target(const cd_preprocess *pp, int h, int w, int *oh, int *ow,
                               cd_error *err)
{
    *oh = h;
    *ow = w;
    if (pp->resize_short > 0) {
        int64_t s = pp->resize_short;
        int64_t lo = h < w ? h : w, hi = h < w ? w : h;
        int64_t other = s * hi / lo; /* floor, as torchvision's int() */
        if (other > INT32_MAX || other < 1)
            return cd_fail(err, CD_ERR_LIMIT, "preprocess: resize to short side %d gives %lld",
                           pp->resize_short, (long long)other);
        *oh = h <= w ? (int)s : (int)other;
        *ow = h <= w ? (int)other : (int)s;
    } else if (pp->resize_h > 0 && pp->resize_w > 0) {
        *oh = pp->resize_h;
        *ow = pp->resize_w;
    } else if (pp->resize_h < 0 || pp->resize_w < 0 || pp->resize_short < 0) {
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "preprocess: negative resize size");
    }
    if ((int64_t)*oh * (int64_t)*ow > PREPROCESS_MAX_PIXELS)
        return cd_fail(err, CD_ERR_LIMIT, "preprocess: resize to %dx%d exceeds the pixel cap",
                       *oh, *ow);
    return CD_OK;
}

/* Steps 3-5 fused: crop window, then (x / scale - mean) / std into the
 * output tensor. */
static cd_status crop_normalize(const planes *p, const cd_preprocess *pp, cd_tensor **out,
                                cd_error *err)
{
    int ch = p->h, cw = p->w;
    if (pp->crop_h > 0 && pp->crop_w > 0) {
        ch = pp->crop_h;
        cw = pp->crop_w;
    }
    if (ch > p->h || cw > p->w)
        return cd_fail(err, CD_ERR_SHAPE, "preprocess: crop %dx%d is larger than the %dx%d image",
                       ch, cw, p->h, p->w);
    int top = (p->h - ch) / 2, left = (p->w - cw) / 2;
    float scale = pp->scale > 0.0f ? pp->scale : 1.0f;
    int64_t dims[4] = {1, p->c, ch, cw};
    cd_status s = cd_tensor_create(CD_FLOAT32, 4, dims, out, err);
    if (s != CD_OK)
        return s;
    float *dst = (*out)->data;
    for (int c = 0; c < p->c; c++) {
        float mean = pp->mean[c], inv_std = 1.0f / pp->std[c];
        const float *pl = p->v + (size_t)c * (size_t)p->h * (size_t)p->w;
        for (int y = 0; y < ch; y++) {
            const float *row = pl + (size_t)(y + top) * (size_t)p->w + (size_t)left;
            for (int x = 0; x < cw; x++)
                *dst++ = (row[x] / scale - mean) * inv_std;
        }
    }
    return CD_OK;
}

static cd_status check_args(const cd_image *img, const cd_preprocess *pp, cd_error *err)
{
    if (!img || !img->pixels || img->width <= 0 || img->height <= 0 ||
        (img->channels != 1 && img->channels != 3 && img->channels != 4))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "preprocess: invalid image");
    if (pp->color != CD_COLOR_RGB && pp->color != CD_COLOR_GRAY)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "preprocess: unknown color mode %d",
                       (int)pp->color);
    int nc = pp->color == CD_COLOR_GRAY ? 1 : 3;
    for (int c = 0; c < nc; c++)
        if (!(pp->std[c] != 0.0f) || !isfinite(pp->std[c]) || !isfinite(pp->mean[c]))
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                           "preprocess: std[%d] must be finite and non-zero, mean finite", c);
    if (!isfinite(pp->scale) || pp->scale < 0.0f)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "preprocess: scale must be >= 0");
    return CD_OK;
}

cd_status cd_image_to_tensor(const cd_image *img, const cd_preprocess *p, cd_tensor **out,
                             cd_error *err)
{
    cd_preprocess defaults;
    planes pl = {0, 0, 0, NULL};
    int oh, ow;
    if (!out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_image_to_tensor: out is NULL");
    *out = NULL;
    if (!p) {
        cd_preprocess_default(&defaults);
        p = &defaults;
    }
    cd_status s = check_args(img, p, err);
    if (s == CD_OK)
        s = resize_target(p, img->height, img->width, &oh, &ow, err);
    if (s == CD_OK)
        s = convert_color(img, p->color, &pl, err);
    if (s == CD_OK && (oh != pl.h || ow != pl.w))
        s = resize_planes(&pl, oh, ow, err);
    if (s == CD_OK)
        s = crop_normalize(&pl, p, out, err);
    free(pl.v);
    return s;
}
