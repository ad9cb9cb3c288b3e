/* Global (dataset-level) explanations: class-average saliency maps and
 * channel importance at a layer. Each class's rows are explained for that
 * class's pre-softmax score, in chunks so that memory stays bounded on
 * large datasets. Definitions: docs/interpretability.md. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "explain_internal.h"

/* Rows per gradient call: bounds the gradient and activation tensors held
 * at once (the explainer splits each call into max_batch passes). */
#define GLOBAL_CHUNK 64

void cd_global_result_free(cd_global_result *r)
{
    if (!r)
        return;
    free(r->counts);
    cd_tensor_free(r->class_saliency);
    cd_tensor_free(r->channel_importance);
    memset(r, 0, sizeof *r);
}

/* Copies rows idx[0..n) of x into a new (n, ...) tensor. */
static cd_status gather(const cd_tensor *x, const size_t *idx, size_t n, cd_tensor **out,
                        cd_error *err)
{
    cd_status st = ex_batch_like(x, (int64_t)n, out, err);
    if (st != CD_OK)
        return st;
    size_t rn = ex_row_numel(x);
    for (size_t i = 0; i < n; i++)
        memcpy(cd_f32(*out) + i * rn, (const float *)x->data + idx[i] * rn, rn * sizeof(float));
    return CD_OK;
}

/* Adds the chunk's per-row saliency sum_c |g| into sal (H x W) and, when a
 * layer is given, per-channel mean_positions |g * a| into imp (C). */
static void accumulate(const cd_tensor *gx, const cd_tensor *ga, const cd_tensor *va,
                       double *sal, double *imp)
{
    int64_t n = gx->dims[0], c = gx->dims[1];
    size_t hw = ex_row_numel(gx) / (size_t)c;
    const float *g = gx->data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < c; ch++)
            for (size_t p = 0; p < hw; p++)
                sal[p] += fabsf(g[((size_t)(b * c + ch)) * hw + p]);
    if (!ga)
        return;
    int64_t lc = ga->dims[1];
    size_t pos = ex_row_numel(ga) / (size_t)lc;
    const float *gg = ga->data, *aa = va->data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t ch = 0; ch < lc; ch++) {
            double s = 0;
            size_t base = (size_t)(b * lc + ch) * pos;
            for (size_t p = 0; p < pos; p++)
                s += fabs((double)gg[base + p] * (double)aa[base + p]);
            imp[ch] += s / (double)pos;
        }
}

/* Explains the rows idx[0..n) (all of class k) in chunks. */
static cd_status explain_class(cd_explainer *e, const cd_tensor *x, const size_t *idx, size_t n,
                               int k, const char *layer, double *sal, double *imp,
                               cd_error *err)
{
    cd_objective obj;
    cd_objective_default(&obj);
    obj.target = k;
    const char *wrt[2] = {NULL, layer};
    int n_wrt = layer ? 2 : 1;
    cd_status st = CD_OK;
    for (size_t first = 0; st == CD_OK && first < n; first += GLOBAL_CHUNK) {
        size_t m = n - first < GLOBAL_CHUNK ? n - first : GLOBAL_CHUNK;
        cd_tensor *xb = NULL, *g[2] = {0}, *v[2] = {0};
        st = gather(x, idx + first, m, &xb, err);
        if (st == CD_OK)
            st = cd_explain_gradient(e, xb, &obj, n_wrt, wrt, g, layer ? v : NULL, NULL, err);
        if (st == CD_OK && layer && (g[1]->ndim < 2 || g[1]->dims[0] != (int64_t)m))
            st = cd_fail(err, CD_ERR_SHAPE, "layer '%s' has no (N, C, ...) layout", layer);
        if (st == CD_OK)
            accumulate(g[0], layer ? g[1] : NULL, layer ? v[1] : NULL, sal, imp);
        cd_tensor_free(xb);
        for (int i = 0; i < 2; i++) {
            cd_tensor_free(g[i]);
            cd_tensor_free(v[i]);
        }
    }
    return st;
}

/* Channels of the layer (axis 1), from one forward pass of row 0. */
static cd_status layer_channels(cd_explainer *e, const cd_tensor *x, const char *layer,
                                int64_t *c, cd_error *err)
{
    cd_tensor one = *x;
    one.dims[0] = 1;
    cd_objective obj;
    cd_objective_default(&obj);
    obj.output = layer;
    obj.kind = CD_OBJECTIVE_SUM;
    cd_tensor *a = NULL;
    cd_status st = ex_forward_value(e, &one, &obj, &a, err);
    if (st == CD_OK && a->ndim < 2)
        st = cd_fail(err, CD_ERR_SHAPE, "layer '%s' has %d axes; channel importance needs "
                     "(N, C, ...)", layer, a->ndim);
    if (st == CD_OK)
        *c = a->dims[1];
    cd_tensor_free(a);
    return st;
}

static cd_status check_args(const cd_explainer *e, const cd_tensor *x, const int *labels,
                            int n_classes, cd_error *err)
{
    if (!e || !x || !labels)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_global_explain: NULL argument");
    if (x->dtype != CD_FLOAT32 || x->ndim != 4 || x->dims[0] < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "cd_global_explain: x must be a float32 (N, C, H, W) tensor");
    if (n_classes < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_global_explain: n_classes < 1");
    for (int64_t i = 0; i < x->dims[0]; i++)
        if (labels[i] < 0 || labels[i] >= n_classes)
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "label %d of row %lld outside [0, %d)",
                           labels[i], (long long)i, n_classes);
    return CD_OK;
}

static cd_status alloc_result(cd_global_result *out, const cd_tensor *x, int k, int64_t lc,
                              cd_error *err)
{
    int64_t sd[3] = {k, x->dims[2], x->dims[3]}, id[2] = {k, lc};
    out->n_classes = k;
    out->counts = calloc((size_t)k, sizeof *out->counts);
    if (!out->counts)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    cd_status st = cd_tensor_create(CD_FLOAT32, 3, sd, &out->class_saliency, err);
    if (st == CD_OK && lc > 0)
        st = cd_tensor_create(CD_FLOAT32, 2, id, &out->channel_importance, err);
    return st;
}

cd_status cd_global_explain(cd_explainer *e, const cd_tensor *x, const int *labels,
                            int n_classes, const char *layer, bool importance,
                            cd_global_result *out, cd_error *err)
{
    if (!out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_global_explain: NULL result");
    memset(out, 0, sizeof *out);
    cd_status st = check_args(e, x, labels, n_classes, err);
    if (st != CD_OK)
        return st;
    const char *lname = NULL;
    int64_t lc = 0;
    if (importance) {
        cd_tensor one = *x;
        one.dims[0] = 1;
        int v = layer ? cd_model_find_value(e->model, layer) : -1;
        if (layer && v < 0)
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has no tensor named '%s'", layer);
        if (layer)
            lname = e->model->values[v].name;
        else if ((st = cd_explain_default_layer(e, &one, &lname, err)) != CD_OK)
            return st;
        if ((st = layer_channels(e, x, lname, &lc, err)) != CD_OK)
            return st;
    }
    size_t n = (size_t)x->dims[0], hw = (size_t)(x->dims[2] * x->dims[3]);
    size_t *idx = malloc(n * sizeof *idx);
    double *sal = calloc(hw, sizeof *sal), *imp = calloc(lc > 0 ? (size_t)lc : 1, sizeof *imp);
    if (!idx || !sal || !imp)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK)
        st = alloc_result(out, x, n_classes, lc, err);
    out->layer = lname;
    for (int k = 0; st == CD_OK && k < n_classes; k++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (labels[i] == k)
                idx[m++] = i;
        out->counts[k] = (int64_t)m;
        memset(sal, 0, hw * sizeof *sal);
        memset(imp, 0, (size_t)(lc > 0 ? lc : 1) * sizeof *imp);
        if (m > 0)
            st = explain_class(e, x, idx, m, k, lname, sal, imp, err);
        /* An empty class keeps all-zero maps (its count says so). */
        for (size_t p = 0; st == CD_OK && p < hw; p++)
            cd_f32(out->class_saliency)[(size_t)k * hw + p] = m ? (float)(sal[p] / (double)m) : 0;
        for (int64_t c = 0; st == CD_OK && c < lc; c++)
            cd_f32(out->channel_importance)[k * lc + c] = m ? (float)(imp[c] / (double)m) : 0;
    }
    free(idx);
    free(sal);
    free(imp);
    if (st != CD_OK)
        cd_global_result_free(out);
    return st;
}
