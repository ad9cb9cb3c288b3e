/* Grad-CAM and Grad-CAM++ on a 4-D activation, the automatic layer choice,
 * bilinear upsampling and the 2-D reduction of maps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "explain_internal.h"

void ex_resize_bilinear(const float *src, int h, int w, float *dst, int H, int W)
{
    double sy = (double)h / H, sx = (double)w / W;
    for (int y = 0; y < H; y++) {
        double fy = fmax(0.0, (y + 0.5) * sy - 0.5);
        int y0 = (int)fy, y1 = y0 + 1 < h ? y0 + 1 : h - 1;
        double ly = fy - y0;
        for (int x = 0; x < W; x++) {
            double fx = fmax(0.0, (x + 0.5) * sx - 0.5);
            int x0 = (int)fx, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
            double lx = fx - x0;
            double top = src[y0 * w + x0] * (1 - lx) + src[y0 * w + x1] * lx;
            double bot = src[y1 * w + x0] * (1 - lx) + src[y1 * w + x1] * lx;
            dst[y * W + x] = (float)(top * (1 - ly) + bot * ly);
        }
    }
}

/* Ops that keep a Conv output's shape and meaning (activations, norms,
 * residual arithmetic): Grad-CAM follows them to reach the block output. */
static bool chain_op(int op)
{
    switch (op) {
    case CD_OP_RELU: case CD_OP_LEAKY_RELU: case CD_OP_PRELU: case CD_OP_ELU:
    case CD_OP_SIGMOID: case CD_OP_TANH: case CD_OP_CLIP: case CD_OP_HARD_SIGMOID:
    case CD_OP_HARD_SWISH: case CD_OP_BATCH_NORMALIZATION: case CD_OP_ADD: case CD_OP_SUB:
    case CD_OP_MUL: case CD_OP_DIV: case CD_OP_DROPOUT: case CD_OP_IDENTITY: return true;
    default: return false;
    }
}

static bool spatial4(const cd_tensor *t) { return t->ndim == 4 && t->dims[2] * t->dims[3] > 1; }

/* The only runtime consumer of value v, or -1 (none, several, or v is a
 * graph output). */
static int sole_consumer(const cd_plan *p, int v)
{
    const cd_model *m = p->model;
    if (m->values[v].is_graph_output)
        return -1;
    int found = -1, count = 0;
    for (int s = 0; s < p->n_steps; s++) {
        const cd_node *n = &m->nodes[p->steps[s]];
        for (int i = 0; i < n->n_inputs; i++)
            if (n->inputs[i] == v) {
                count++;
                found = p->steps[s];
                break;
            }
    }
    return count == 1 ? found : -1;
}

static int default_layer_value(const cd_plan *p)
{
    const cd_model *m = p->model;
    int v = -1;
    for (int s = p->n_steps - 1; s >= 0 && v < 0; s--) {
        const cd_node *n = &m->nodes[p->steps[s]];
        if (n->op == CD_OP_CONV && n->outputs[0] >= 0 && spatial4(&p->vals[n->outputs[0]]))
            v = n->outputs[0];
    }
    while (v >= 0) {
        int c = sole_consumer(p, v);
        if (c < 0 || !chain_op(m->nodes[c].op) || m->nodes[c].outputs[0] < 0)
            break;
        const cd_tensor *a = &p->vals[v], *b = &p->vals[m->nodes[c].outputs[0]];
        if (!cd_shape_equal(a->ndim, a->dims, b->ndim, b->dims))
            break;
        v = m->nodes[c].outputs[0];
    }
    return v;
}

cd_status cd_explain_default_layer(cd_explainer *e, const cd_tensor *x, const char **name,
                                   cd_error *err)
{
    cd_plan *p = NULL;
    cd_status st = ex_get_plan(e, x, true, &p, err);
    if (st != CD_OK)
        return st;
    int v = default_layer_value(p);
    if (v < 0)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "Grad-CAM needs a spatial layer, and this model has no Conv producing an "
                       "(N, C, H, W) tensor with H*W > 1");
    *name = p->model->values[v].name;
    return CD_OK;
}

/* Channel weights: Grad-CAM alpha_k = mean g; Grad-CAM++ (Chattopadhay et
 * al. 2018, eq. 19) w_k = sum_ij a_kij relu(g_kij) with
 * a = g^2 / (2 g^2 + sum_ab A_kab g^3 + 1e-6), a = 0 where g = 0. */
static void channel_weights(const float *A, const float *g, int64_t k, size_t hw, bool plus,
                            double *w)
{
    for (int64_t c = 0; c < k; c++) {
        const float *a = A + (size_t)c * hw, *gc = g + (size_t)c * hw;
        double sum_a = 0, acc = 0;
        for (size_t j = 0; j < hw; j++)
            sum_a += a[j];
        for (size_t j = 0; j < hw; j++) {
            double gj = gc[j];
            if (!plus) {
                acc += gj;
                continue;
            }
            if (gj == 0)
                continue;
            double g2 = gj * gj, alpha = g2 / (2 * g2 + sum_a * g2 * gj + 1e-6);
            acc += alpha * fmax(gj, 0.0);
        }
        w[c] = plus ? acc : acc / (double)hw;
    }
}

static void min_max_normalise(float *v, size_t n)
{
    float lo = v[0], hi = v[0];
    for (size_t i = 1; i < n; i++) {
        lo = fminf(lo, v[i]);
        hi = fmaxf(hi, v[i]);
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((v[i] - lo) / ((double)hi - lo + 1e-7));
}

static cd_status cam_from(const cd_tensor *x, const cd_tensor *A, const cd_tensor *g, bool plus,
                          cd_tensor **out, cd_error *err)
{
    int64_t k = A->dims[1], h = A->dims[2], w = A->dims[3];
    size_t hw = (size_t)(h * w);
    double *wt = malloc((size_t)k * sizeof *wt);
    float *cam = malloc(hw * sizeof *cam);
    int64_t dims[4] = {1, 1, x->dims[2], x->dims[3]};
    cd_status st = wt && cam ? cd_tensor_create(CD_FLOAT32, 4, dims, out, err)
                             : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK) {
        channel_weights(cd_cf32(A), cd_cf32(g), k, hw, plus, wt);
        for (size_t j = 0; j < hw; j++) {
            double acc = 0;
            for (int64_t c = 0; c < k; c++)
                acc += wt[c] * cd_cf32(A)[(size_t)c * hw + j];
            cam[j] = (float)fmax(acc, 0.0);
        }
        ex_resize_bilinear(cam, (int)h, (int)w, cd_f32(*out), (int)dims[2], (int)dims[3]);
        min_max_normalise(cd_f32(*out), cd_tensor_numel(*out));
    }
    free(wt);
    free(cam);
    return st;
}

cd_status ex_cam(cd_explainer *e, const cd_tensor *x, const cd_explain_params *p,
                 cd_objective *obj, cd_explanation *out, cd_error *err)
{
    if (x->ndim != 4)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "Grad-CAM needs a spatial layer of an image model (input (N, C, H, W)); "
                       "this input has %d axes",
                       x->ndim);
    const char *layer = p->layer;
    cd_status st = layer ? CD_OK : cd_explain_default_layer(e, x, &layer, err);
    if (st != CD_OK)
        return st;
    cd_tensor *g = NULL, *A = NULL;
    st = cd_explain_gradient(e, x, obj, 1, &layer, &g, &A, NULL, err);
    if (st != CD_OK)
        return st;
    char sh[96];
    if (!spatial4(A) || A->dims[0] != 1)
        st = cd_fail(err, CD_ERR_UNSUPPORTED,
                     "layer '%s' has shape %s; Grad-CAM needs a spatial (1, C, H, W) tensor",
                     layer, cd_shape_str(A->ndim, A->dims, sh, sizeof sh));
    if (st == CD_OK)
        st = cam_from(x, A, g, p->method == CD_EXPLAIN_GRADCAM_PP, &out->map, err);
    const cd_model *m = e->model;
    int v = cd_model_find_value(m, layer);
    out->layer = v >= 0 ? m->values[v].name : NULL;
    out->passes = 1;
    cd_tensor_free(g);
    cd_tensor_free(A);
    return st;
}

cd_status cd_explain_saliency_2d(const cd_tensor *map, bool absolute, cd_tensor **out,
                                 cd_error *err)
{
    if (!map || !out || map->dtype != CD_FLOAT32 || map->ndim < 3 || map->ndim > 4 ||
        map->dims[0] != 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "saliency: need a float32 (1, C, H, W) or (1, C, L) map");
    int64_t c = map->dims[1];
    int64_t h = map->ndim == 4 ? map->dims[2] : 1, w = map->dims[map->ndim - 1];
    int64_t dims[2] = {h, w};
    cd_status st = cd_tensor_create(CD_FLOAT32, 2, dims, out, err);
    if (st != CD_OK)
        return st;
    size_t hw = (size_t)(h * w);
    float *o = cd_f32(*out);
    const float *a = cd_cf32(map);
    for (size_t j = 0; j < hw; j++) {
        double acc = 0;
        for (int64_t k = 0; k < c; k++)
            acc += absolute ? fabs(a[(size_t)k * hw + j]) : a[(size_t)k * hw + j];
        o[j] = (float)acc;
    }
    return CD_OK;
}
