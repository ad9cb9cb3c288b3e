/* Perturbation methods (occlusion, RISE), deletion/insertion faithfulness
 * curves, and the Gaussian blur they share with IG's blurred baseline. All
 * perturbed copies of the input are scored in batches of max_batch rows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "explain_internal.h"

/* Spatial layout of an (1, C, H, W) or (1, C, L) input (L: H = 1). */
typedef struct layout {
    int64_t c, h, w;
    size_t hw;
} layout;

static cd_status get_layout(const cd_tensor *x, const char *what, layout *l, cd_error *err)
{
    if (x->ndim != 3 && x->ndim != 4)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "%s needs an (N, C, H, W) or (N, C, L) input; this one has %d axes", what,
                       x->ndim);
    l->c = x->dims[1];
    l->h = x->ndim == 4 ? x->dims[2] : 1;
    l->w = x->dims[x->ndim - 1];
    l->hw = (size_t)(l->h * l->w);
    return CD_OK;
}

static cd_status map_tensor(const cd_tensor *x, cd_tensor **out, cd_error *err)
{
    int64_t dims[4] = {1, 1, x->dims[2], x->ndim == 4 ? x->dims[3] : 0};
    return cd_tensor_create(CD_FLOAT32, x->ndim, dims, out, err);
}

/* ------------------------------------------------------------ blur */

static void blur_line(const float *src, ptrdiff_t stride, int64_t n, const double *k, int r,
                      float *dst)
{
    for (int64_t i = 0; i < n; i++) {
        double acc = 0;
        for (int d = -r; d <= r; d++) {
            int64_t j = i + d < 0 ? 0 : i + d >= n ? n - 1 : i + d; /* edge clamp */
            acc += k[d + r] * src[j * stride];
        }
        dst[i] = (float)acc;
    }
}

cd_status ex_blur(const cd_tensor *x, float sigma, cd_tensor **out, cd_error *err)
{
    layout l = {0};
    cd_status st = get_layout(x, "blur", &l, err);
    if (st == CD_OK)
        st = cd_tensor_clone(x, out, err);
    if (st != CD_OK || !(sigma > 0))
        return st;
    int r = (int)ceil(3 * sigma);
    double *k = malloc((size_t)(2 * r + 1) * sizeof *k);
    float *line = malloc((size_t)(l.h > l.w ? l.h : l.w) * sizeof *line);
    if (!k || !line) {
        free(k);
        free(line);
        cd_tensor_free(*out);
        *out = NULL;
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    double total = 0;
    for (int d = -r; d <= r; d++)
        total += k[d + r] = exp(-0.5 * d * d / ((double)sigma * sigma));
    for (int d = 0; d <= 2 * r; d++)
        k[d] /= total;
    size_t planes = cd_tensor_numel(x) / l.hw;
    for (size_t pl = 0; pl < planes; pl++) {
        float *p = cd_f32(*out) + pl * l.hw;
        for (int64_t y = 0; y < l.h; y++) { /* rows */
            blur_line(p + y * l.w, 1, l.w, k, r, line);
            memcpy(p + y * l.w, line, (size_t)l.w * sizeof *line);
        }
        for (int64_t xx = 0; l.h > 1 && xx < l.w; xx++) { /* columns */
            blur_line(p + xx, (ptrdiff_t)l.w, l.h, k, r, line);
            for (int64_t y = 0; y < l.h; y++)
                p[y * l.w + xx] = line[y];
        }
    }
    free(k);
    free(line);
    return CD_OK;
}

/* ------------------------------------------------------------ batches */

/* Writes perturbed copy `index` of x into row. */
typedef void (*make_fn)(void *ctx, int64_t index, float *row);
/* Receives the objective of copy `index`. */
typedef void (*score_fn)(void *ctx, int64_t index, double score);

static cd_status score_copies(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                              int64_t total, make_fn make, score_fn take, void *ctx, int *passes,
                              cd_error *err)
{
    double *s = malloc((size_t)e->max_batch * sizeof *s);
    if (!s)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    cd_status st = CD_OK;
    size_t rn = ex_row_numel(x);
    for (int64_t start = 0; st == CD_OK && start < total; start += e->max_batch) {
        int64_t rows = total - start < e->max_batch ? total - start : e->max_batch;
        cd_tensor *batch = NULL;
        st = ex_batch_like(x, rows, &batch, err);
        for (int64_t r = 0; st == CD_OK && r < rows; r++)
            make(ctx, start + r, cd_f32(batch) + (size_t)r * rn);
        if (st == CD_OK)
            st = ex_scores(e, batch, obj, s, err);
        for (int64_t r = 0; st == CD_OK && r < rows; r++)
            take(ctx, start + r, s[r]);
        cd_tensor_free(batch);
        if (passes)
            (*passes)++;
    }
    free(s);
    return st;
}

/* ------------------------------------------------------------ occlusion */

typedef struct occ_ctx {
    const float *x;
    layout l;
    int64_t wy, wx;       /* window size (clipped to the input) */
    int64_t *ys, *xs;     /* window corners */
    int64_t nx;
    float value;
    double f0;
    double *sum, *count;
} occ_ctx;

static void occ_make(void *c, int64_t index, float *row)
{
    occ_ctx *o = c;
    int64_t y0 = o->ys[index / o->nx], x0 = o->xs[index % o->nx];
    memcpy(row, o->x, (size_t)o->l.c * o->l.hw * sizeof *row);
    for (int64_t ch = 0; ch < o->l.c; ch++)
        for (int64_t y = y0; y < y0 + o->wy; y++)
            for (int64_t xx = x0; xx < x0 + o->wx; xx++)
                row[(size_t)ch * o->l.hw + (size_t)(y * o->l.w + xx)] = o->value;
}

static void occ_take(void *c, int64_t index, double score)
{
    occ_ctx *o = c;
    int64_t y0 = o->ys[index / o->nx], x0 = o->xs[index % o->nx];
    for (int64_t y = y0; y < y0 + o->wy; y++)
        for (int64_t xx = x0; xx < x0 + o->wx; xx++) {
            o->sum[y * o->l.w + xx] += o->f0 - score;
            o->count[y * o->l.w + xx] += 1;
        }
}

/* Window corners 0, stride, 2 stride, ... plus a last one flush with the
 * end, so every position is covered. */
static int64_t corners(int64_t n, int64_t win, int64_t stride, int64_t *out)
{
    int64_t k = 0, pos = 0;
    for (; pos + win <= n; pos += stride)
        out[k++] = pos;
    if (out[k - 1] + win < n)
        out[k++] = n - win;
    return k;
}

cd_status ex_occlusion(cd_explainer *e, const cd_tensor *x, const cd_explain_params *p,
                       cd_objective *obj, cd_explanation *out, cd_error *err)
{
    occ_ctx o = {.x = cd_cf32(x), .value = p->occlusion_value, .f0 = out->score};
    cd_status st = get_layout(x, "occlusion", &o.l, err);
    if (st != CD_OK)
        return st;
    if (p->window < 1 || p->stride < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "occlusion: window and stride must be >= 1");
    o.wy = p->window < o.l.h ? p->window : o.l.h;
    o.wx = p->window < o.l.w ? p->window : o.l.w;
    o.ys = malloc((size_t)(o.l.h + 2) * sizeof *o.ys);
    o.xs = malloc((size_t)(o.l.w + 2) * sizeof *o.xs);
    o.sum = calloc(o.l.hw, sizeof *o.sum);
    o.count = calloc(o.l.hw, sizeof *o.count);
    st = o.ys && o.xs && o.sum && o.count ? map_tensor(x, &out->map, err)
                                          : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK) {
        int64_t ny = corners(o.l.h, o.wy, p->stride, o.ys);
        o.nx = corners(o.l.w, o.wx, p->stride, o.xs);
        st = score_copies(e, x, obj, ny * o.nx, occ_make, occ_take, &o, &out->passes, err);
    }
    for (size_t j = 0; st == CD_OK && j < o.l.hw; j++)
        cd_f32(out->map)[j] = (float)(o.sum[j] / o.count[j]);
    free(o.ys);
    free(o.xs);
    free(o.sum);
    free(o.count);
    return st;
}

/* ------------------------------------------------------------ RISE */

typedef struct rise_ctx {
    const float *x;
    layout l;
    int s;
    int64_t ch, cw;       /* cell size */
    double p;
    ex_rng rng;
    float *masks;         /* max_batch masks of hw values */
    float *grid, *up;
    double *sum;
} rise_ctx;

/* Mask: s x s Bernoulli(p) grid, bilinear upsample to (s+1) cells, random
 * shift in [0, cell), crop to the input. */
static void rise_make(void *c, int64_t index, float *row)
{
    rise_ctx *r = c;
    int64_t uh = (r->s + 1) * r->ch, uw = (r->s + 1) * r->cw;
    for (int i = 0; i < r->s * r->s; i++)
        r->grid[i] = ex_rng_uniform(&r->rng) < r->p ? 1.0f : 0.0f;
    int64_t dy = (int64_t)(ex_rng_uniform(&r->rng) * r->ch);
    int64_t dx = (int64_t)(ex_rng_uniform(&r->rng) * r->cw);
    ex_resize_bilinear(r->grid, r->s, r->s, r->up, (int)uh, (int)uw);
    float *m = r->masks + (size_t)index * r->l.hw; /* index within the batch */
    for (int64_t y = 0; y < r->l.h; y++)
        for (int64_t x = 0; x < r->l.w; x++)
            m[y * r->l.w + x] = r->up[(y + dy) * uw + x + dx];
    for (int64_t ch = 0; ch < r->l.c; ch++)
        for (size_t j = 0; j < r->l.hw; j++)
            row[(size_t)ch * r->l.hw + j] = r->x[(size_t)ch * r->l.hw + j] * m[j];
}

static void rise_take(void *c, int64_t index, double score)
{
    rise_ctx *r = c;
    const float *m = r->masks + (size_t)index * r->l.hw;
    for (size_t j = 0; j < r->l.hw; j++)
        r->sum[j] += score * m[j];
}

cd_status ex_rise(cd_explainer *e, const cd_tensor *x, const cd_explain_params *p,
                  cd_objective *obj, cd_explanation *out, cd_error *err)
{
    rise_ctx r = {.x = cd_cf32(x), .s = p->rise_grid, .p = p->rise_p, .rng = {p->seed ^ 0x52495345ull}};
    cd_status st = get_layout(x, "RISE", &r.l, err);
    if (st != CD_OK)
        return st;
    if (p->rise_masks < 1 || p->rise_grid < 1 || p->rise_grid > 1024 || !(p->rise_p > 0) ||
        p->rise_p > 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "RISE: masks >= 1, grid in 1..1024 and p in (0, 1]");
    if (r.l.h < 2)
        return cd_fail(err, CD_ERR_UNSUPPORTED, "RISE needs an (N, C, H, W) image input");
    r.ch = (r.l.h + r.s - 1) / r.s;
    r.cw = (r.l.w + r.s - 1) / r.s;
    size_t up = (size_t)((r.s + 1) * r.ch) * (size_t)((r.s + 1) * r.cw);
    r.masks = malloc((size_t)e->max_batch * r.l.hw * sizeof *r.masks);
    r.grid = malloc((size_t)r.s * r.s * sizeof *r.grid);
    r.up = malloc(up * sizeof *r.up);
    r.sum = calloc(r.l.hw, sizeof *r.sum);
    st = r.masks && r.grid && r.up && r.sum ? map_tensor(x, &out->map, err)
                                            : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    /* Masks are kept for one batch only: each score_copies call gets at most
     * max_batch copies, indexed from 0. */
    for (int64_t start = 0; st == CD_OK && start < p->rise_masks; start += e->max_batch) {
        int64_t rows = p->rise_masks - start < e->max_batch ? p->rise_masks - start : e->max_batch;
        st = score_copies(e, x, obj, rows, rise_make, rise_take, &r, &out->passes, err);
    }
    for (size_t j = 0; st == CD_OK && j < r.l.hw; j++)
        cd_f32(out->map)[j] = (float)(r.sum[j] / (p->rise_masks * (double)p->rise_p));
    free(r.masks);
    free(r.grid);
    free(r.up);
    free(r.sum);
    return st;
}

/* ------------------------------------------------------------ faithfulness */

void cd_faithfulness_params_default(cd_faithfulness_params *p)
{
    memset(p, 0, sizeof *p);
    p->blur_sigma = 5.0f;
}

void cd_faithfulness_free(cd_faithfulness *f)
{
    if (!f)
        return;
    free(f->deletion);
    free(f->insertion);
    f->deletion = f->insertion = NULL;
}

typedef struct rank_item {
    float v;
    int64_t i;
} rank_item;

static int by_saliency_desc(const void *a, const void *b)
{
    const rank_item *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i; /* ties: lower index first */
}

typedef struct curve_ctx {
    const float *from, *to;  /* start image, and where changed pixels come from */
    const int64_t *order;
    layout l;
    int step;
    double *curve;
} curve_ctx;

/* Copy k has its first min(k step, HW) ranked pixels taken from `to`. */
static void curve_make(void *c, int64_t k, float *row)
{
    curve_ctx *cc = c;
    size_t n = (size_t)cc->l.c * cc->l.hw;
    memcpy(row, cc->from, n * sizeof *row);
    size_t changed = (size_t)k * (size_t)cc->step;
    if (changed > cc->l.hw)
        changed = cc->l.hw;
    for (size_t r = 0; r < changed; r++)
        for (int64_t ch = 0; ch < cc->l.c; ch++) {
            size_t idx = (size_t)ch * cc->l.hw + (size_t)cc->order[r];
            row[idx] = cc->to[idx];
        }
}

static void curve_take(void *c, int64_t k, double score)
{
    ((curve_ctx *)c)->curve[k] = score;
}

static double curve_auc(const double *s, int n)
{
    double acc = 0;
    for (int i = 0; i <= n; i++)
        acc += s[i];
    return (acc - s[0] / 2 - s[n] / 2) / n;
}

static cd_status faith_objective(const cd_explainer *e, const cd_faithfulness_params *p,
                                 int target, cd_objective *obj)
{
    if (p->objective) {
        *obj = *p->objective;
        obj->target = target;
        return CD_OK;
    }
    cd_objective_default(obj);
    obj->target = target;
    obj->kind = CD_OBJECTIVE_PROB;
    const cd_model *m = e->model;
    int prod = m->values[m->outputs[0]].producer;
    bool softmax_node = prod >= 0 && m->nodes[prod].op == CD_OP_SOFTMAX;
    if (p->output_is_probability && !softmax_node)
        obj->kind = CD_OBJECTIVE_LOGIT; /* the raw output is already p */
    return CD_OK;
}

cd_status cd_explain_faithfulness(cd_explainer *e, const cd_tensor *x, const cd_tensor *saliency,
                                  int target, const cd_faithfulness_params *p,
                                  cd_faithfulness *out, cd_error *err)
{
    if (!e || !x || !saliency || !p || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_explain_faithfulness: NULL argument");
    memset(out, 0, sizeof *out);
    layout l;
    cd_status st = get_layout(x, "deletion/insertion", &l, err);
    if (st != CD_OK)
        return st;
    if (x->dims[0] != 1 || cd_tensor_numel(saliency) != l.hw)
        return cd_fail(err, CD_ERR_SHAPE, "faithfulness: x must have batch 1 and the saliency "
                                          "H x W values");
    int step = p->step > 0 ? p->step : (int)((l.hw + 49) / 50);
    int n = (int)((l.hw + (size_t)step - 1) / (size_t)step);
    cd_objective obj;
    faith_objective(e, p, target, &obj);
    rank_item *items = malloc(l.hw * sizeof *items);
    int64_t *order = malloc(l.hw * sizeof *order);
    cd_tensor *zero = NULL, *blur = NULL;
    out->deletion = malloc((size_t)(n + 1) * sizeof(double));
    out->insertion = malloc((size_t)(n + 1) * sizeof(double));
    st = items && order && out->deletion && out->insertion
             ? cd_tensor_clone(x, &zero, err)
             : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK)
        st = ex_blur(x, p->blur_sigma, &blur, err);
    if (st == CD_OK) {
        for (size_t j = 0; j < l.hw; j++)
            items[j] = (rank_item){cd_cf32(saliency)[j], (int64_t)j};
        qsort(items, l.hw, sizeof *items, by_saliency_desc);
        for (size_t j = 0; j < l.hw; j++)
            order[j] = items[j].i;
        for (size_t j = 0; j < cd_tensor_numel(zero); j++)
            cd_f32(zero)[j] = p->deletion_value;
        curve_ctx del = {cd_cf32(x), cd_cf32(zero), order, l, step, out->deletion};
        st = score_copies(e, x, &obj, n + 1, curve_make, curve_take, &del, NULL, err);
        curve_ctx ins = {cd_cf32(blur), cd_cf32(x), order, l, step, out->insertion};
        if (st == CD_OK)
            st = score_copies(e, x, &obj, n + 1, curve_make, curve_take, &ins, NULL, err);
    }
    out->n_steps = n;
    out->step = step;
    if (st == CD_OK) {
        out->deletion_auc = curve_auc(out->deletion, n);
        out->insertion_auc = curve_auc(out->insertion, n);
    } else {
        cd_faithfulness_free(out);
    }
    free(items);
    free(order);
    cd_tensor_free(zero);
    cd_tensor_free(blur);
    return st;
}
