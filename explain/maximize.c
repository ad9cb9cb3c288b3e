/* Activation maximisation: gradient ascent on the input image for a class
 * score or a channel's mean activation, with the usual regularisers (L2
 * decay, jitter, blur) that keep the image from turning into high-frequency
 * noise. Definitions in include/candor/explain.h and docs/interpretability.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain_internal.h"

void cd_maximize_params_default(cd_maximize_params *p)
{
    memset(p, 0, sizeof *p);
    p->steps = 200;
    p->lr = 0.05f;
    p->l2_decay = 0.002f;
    p->jitter = 2;
    p->blur_sigma = 0.5f;
    p->blur_every = 4;
    p->init_std = 0.1f;
    p->clip = true;
}

void cd_maximize_result_free(cd_maximize_result *r)
{
    if (!r)
        return;
    cd_tensor_free(r->image);
    free(r->score);
    free(r->prob);
    memset(r, 0, sizeof *r);
}

typedef struct max_state {
    cd_explainer *e;
    const cd_maximize_params *p;
    cd_objective obj;
    int64_t dims[4];
    float lo[64], hi[64];
    ex_rng rng;
} max_state;

static cd_status setup(max_state *s, cd_error *err)
{
    int nd = -1;
    int64_t d[CD_MAX_DIMS];
    cd_status st = cd_model_input_shape(s->e->model, 0, &nd, d, err);
    if (st != CD_OK)
        return st;
    if (nd != 4 || d[1] < 1 || d[2] < 1 || d[3] < 1 || d[1] > 64)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "activation maximisation needs a 4-D input with fixed C <= 64, H, W");
    s->dims[0] = 1;
    memcpy(s->dims + 1, d + 1, 3 * sizeof *d);
    const cd_maximize_params *p = s->p;
    if (p->steps < 1 || !(p->lr > 0) || !(p->l2_decay >= 0 && p->l2_decay < 1) ||
        p->jitter < 0 || !(p->blur_sigma >= 0) || !(p->init_std >= 0))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "maximize: need steps >= 1, lr > 0, 0 <= l2_decay < 1, jitter >= 0, "
                       "blur_sigma >= 0, init_std >= 0");
    cd_objective_default(&s->obj);
    s->obj.target = p->layer ? p->channel : p->target;
    s->obj.output = p->layer;
    if (s->obj.target < 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "maximize: %s must be >= 0",
                       p->layer ? "channel" : "target class");
    s->rng.s = p->seed;
    return cd_explain_input_range(s->e->model, (int)d[1], s->lo, s->hi, err);
}

static void clip(const max_state *s, cd_tensor *x)
{
    if (!s->p->clip)
        return;
    float *v = cd_tensor_data(x);
    size_t plane = (size_t)(s->dims[2] * s->dims[3]);
    for (size_t i = 0; i < cd_tensor_numel(x); i++) {
        size_t c = i / plane;
        v[i] = fminf(fmaxf(v[i], s->lo[c]), s->hi[c]);
    }
}

/* dst[c, (h + dy) mod H, (w + dx) mod W] = src[c, h, w] */
static void roll(const max_state *s, const float *src, int dy, int dx, float *dst)
{
    int64_t C = s->dims[1], H = s->dims[2], W = s->dims[3];
    for (int64_t c = 0; c < C; c++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t w = 0; w < W; w++) {
                int64_t h2 = ((h + dy) % H + H) % H, w2 = ((w + dx) % W + W) % W;
                dst[(c * H + h2) * W + w2] = src[(c * H + h) * W + w];
            }
}

/* Score (and the target's softmax probability in class mode) of x. */
static cd_status evaluate(max_state *s, const cd_tensor *x, double *score, double *prob,
                          cd_error *err)
{
    cd_tensor *y = NULL;
    cd_status st = ex_forward_value(s->e, x, &s->obj, &y, err);
    if (st != CD_OK)
        return st;
    int64_t k = y->ndim >= 2 ? y->dims[1] : 1, t = s->obj.target;
    size_t pos = y->ndim >= 2 ? cd_tensor_numel(y) / (size_t)k : 1;
    if (y->ndim < 2 || y->dims[0] != 1 || t >= k) {
        cd_tensor_free(y);
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "maximize: %s %lld is outside the %lld %s "
                       "of '%s'", s->p->layer ? "channel" : "class", (long long)t,
                       (long long)k, s->p->layer ? "channels" : "classes",
                       s->p->layer ? s->p->layer : "the output");
    }
    const float *v = cd_tensor_cdata(y);
    double acc = 0;
    for (size_t j = 0; j < pos; j++)
        acc += v[(size_t)t * pos + j];
    *score = acc / (double)pos;
    if (prob) {
        double mx = v[0], sum = 0;
        for (int64_t c = 1; c < k; c++)
            mx = fmax(mx, v[c]);
        for (int64_t c = 0; c < k; c++)
            sum += exp(v[c] - mx);
        *prob = exp(v[t] - mx) / sum;
    }
    cd_tensor_free(y);
    return CD_OK;
}

/* One ascent step on x (see cd_explain_maximize). */
static cd_status ascend(max_state *s, cd_tensor *x, cd_tensor *tmp, int step, cd_error *err)
{
    int j = s->p->jitter;
    int dy = j ? (int)(ex_rng_next(&s->rng) % (uint64_t)(2 * j + 1)) - j : 0;
    int dx = j ? (int)(ex_rng_next(&s->rng) % (uint64_t)(2 * j + 1)) - j : 0;
    roll(s, cd_tensor_cdata(x), dy, dx, cd_tensor_data(tmp));
    cd_tensor *g = NULL;
    cd_status st = cd_explain_gradient(s->e, tmp, &s->obj, 1, NULL, &g, NULL, NULL, err);
    if (st != CD_OK)
        return st;
    roll(s, cd_tensor_cdata(g), -dy, -dx, cd_tensor_data(tmp));
    cd_tensor_free(g);
    size_t n = cd_tensor_numel(x);
    const float *gv = cd_tensor_cdata(tmp);
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (double)gv[i] * gv[i];
    double rms = sqrt(ss / (double)n);
    float *xv = cd_tensor_data(x);
    float scale = rms > 0 ? (float)(s->p->lr / rms) : 0.0f;
    for (size_t i = 0; i < n; i++)
        xv[i] = (xv[i] + scale * gv[i]) * (1.0f - s->p->l2_decay);
    if (s->p->blur_sigma > 0 && s->p->blur_every > 0 && step % s->p->blur_every == 0) {
        cd_tensor *b = NULL;
        if ((st = ex_blur(x, s->p->blur_sigma, &b, err)) != CD_OK)
            return st;
        memcpy(xv, cd_tensor_cdata(b), n * sizeof(float));
        cd_tensor_free(b);
    }
    clip(s, x);
    return CD_OK;
}

static cd_status start_image(max_state *s, cd_tensor **x, cd_error *err)
{
    cd_status st = cd_tensor_create(CD_FLOAT32, 4, s->dims, x, err);
    if (st != CD_OK)
        return st;
    float *v = cd_tensor_data(*x);
    for (size_t i = 0; i < cd_tensor_numel(*x); i++)
        v[i] = (float)(s->p->init_std * ex_rng_normal(&s->rng));
    clip(s, *x);
    return CD_OK;
}

cd_status cd_explain_maximize(cd_explainer *e, const cd_maximize_params *p,
                              cd_maximize_result *out, cd_error *err)
{
    if (!e || !p || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_explain_maximize: NULL argument");
    memset(out, 0, sizeof *out);
    max_state s = {.e = e, .p = p};
    cd_status st = setup(&s, err);
    if (st != CD_OK)
        return st;
    out->n_points = p->steps + 1;
    out->score = calloc((size_t)out->n_points, sizeof *out->score);
    out->prob = p->layer ? NULL : calloc((size_t)out->n_points, sizeof *out->prob);
    cd_tensor *x = NULL, *tmp = NULL;
    if (!out->score || (!p->layer && !out->prob))
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK)
        st = start_image(&s, &x, err);
    if (st == CD_OK)
        st = cd_tensor_clone(x, &tmp, err);
    if (st == CD_OK)
        st = evaluate(&s, x, &out->score[0], out->prob, err);
    for (int t = 1; st == CD_OK && t <= p->steps; t++) {
        st = ascend(&s, x, tmp, t, err);
        if (st == CD_OK)
            st = evaluate(&s, x, &out->score[t], out->prob ? &out->prob[t] : NULL, err);
    }
    cd_tensor_free(tmp);
    if (st != CD_OK) {
        cd_tensor_free(x);
        cd_maximize_result_free(out);
        return st;
    }
    out->image = x;
    out->start_score = out->score[0];
    out->final_score = out->score[p->steps];
    out->ratio = out->start_score > 0 ? out->final_score / out->start_score : NAN;
    return CD_OK;
}
