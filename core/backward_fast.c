/* Fast reverse-mode kernels for the tape plan (see backward_fast.h). Work is
 * cut into ranges that depend on the sizes only, and no sum crosses a range,
 * so results do not depend on the thread count. */
#include "backward_fast.h"

#include "parallel.h"

/* About one task per 32 Ki elements, at most 8 (as the forward kernels). */
static int tasks_for(int64_t elems)
{
    int64_t t = elems / 32768 + 1;
    return t < 8 ? (int)t : 8;
}

typedef struct elt_job {
    const float *x, *g;
    float *gx;
} elt_job;

static void relu_range(void *arg, int64_t lo, int64_t hi)
{
    const elt_job *j = arg;
    for (int64_t i = lo; i < hi; i++)
        j->gx[i] += j->g[i] * (j->x[i] > 0 ? 1.0f : 0.0f);
}

void cd_relu_backward_fast(const float *x, const float *g, float *gx, size_t n, cd_ctx *ctx)
{
    elt_job j = {x, g, gx};
    cd_pool_for(ctx->pool, (int64_t)n, tasks_for((int64_t)n), relu_range, &j);
}

static void add_range(void *arg, int64_t lo, int64_t hi)
{
    const elt_job *j = arg;
    for (int64_t i = lo; i < hi; i++)
        j->gx[i] += j->g[i];
}

void cd_add_into_fast(float *dst, const float *src, size_t n, cd_ctx *ctx)
{
    elt_job j = {NULL, src, dst};
    cd_pool_for(ctx->pool, (int64_t)n, tasks_for((int64_t)n), add_range, &j);
}

typedef struct pool_job {
    const float *x, *y, *gy;
    float *gx;
    const cd_win_geom *g;
} pool_job;

/* The operator's rule: the first tap (row-major window order, padding
 * skipped) holding the window's maximum, compared with a strict >. */
static int64_t first_max(const float *x, const cd_win_geom *g, int64_t oh, int64_t ow,
                         float want, bool match)
{
    int64_t H = g->in[0], W = g->in[1], best = -1;
    float bv = 0;
    for (int64_t kh = 0; kh < g->k[0]; kh++) {
        int64_t ih = oh * g->s[0] + kh * g->d[0] - g->pb[0];
        if (ih < 0 || ih >= H)
            continue;
        for (int64_t kw = 0; kw < g->k[1]; kw++) {
            int64_t iw = ow * g->s[1] + kw * g->d[1] - g->pb[1];
            if (iw < 0 || iw >= W)
                continue;
            float v = x[ih * W + iw];
            if (match && v == want)
                return ih * W + iw;
            if (!match && (best < 0 || v > bv)) {
                best = ih * W + iw;
                bv = v;
            }
        }
    }
    return best;
}

static void maxpool_bwd_range(void *arg, int64_t lo, int64_t hi)
{
    const pool_job *j = arg;
    const cd_win_geom *g = j->g;
    int64_t H = g->in[0], W = g->in[1], OH = g->out[0], OW = g->out[1];
    for (int64_t p = lo; p < hi; p++) {
        const float *x = j->x + p * H * W, *y = j->y + p * OH * OW;
        const float *gy = j->gy + p * OH * OW;
        float *gx = j->gx + p * H * W;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                /* The kept output is the maximum, so the first tap equal to
                 * it is the first maximum; a NaN never compares equal and
                 * takes the full scan. */
                int64_t best = first_max(x, g, oh, ow, y[oh * OW + ow], true);
                if (best < 0)
                    best = first_max(x, g, oh, ow, 0, false);
                if (best >= 0)
                    gx[best] += gy[oh * OW + ow];
            }
    }
}

void cd_maxpool2d_backward_fast(const float *x, const float *y, const float *gy, float *gx,
                                int64_t planes, const cd_win_geom *g, cd_ctx *ctx)
{
    pool_job j = {x, y, gy, gx, g};
    cd_pool_for(ctx->pool, planes, tasks_for(planes * g->in[0] * g->in[1]), maxpool_bwd_range,
                &j);
}
