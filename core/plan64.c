/* Float64 evaluation of keep_activations plans (see plan64.h). */
#include <stdlib.h>
#include <string.h>

#include "plan64.h"

#define MAX_NODE_IO 64

struct cd_plan64 {
    cd_tensor *v;  /* per value: float64 storage, or a borrowed view */
    bool *widened; /* constants already widened (done once per plan) */
};

cd_status cd_tensor_widen(const cd_tensor *t, cd_tensor **out, cd_error *err)
{
    cd_status st = cd_tensor_create(CD_FLOAT64, t->ndim, t->dims, out, err);
    if (st != CD_OK)
        return st;
    size_t n = cd_tensor_numel(t);
    double *d = (*out)->data;
    if (t->dtype == CD_FLOAT64)
        memcpy(d, t->data, n * sizeof *d);
    else
        for (size_t i = 0; i < n; i++)
            d[i] = ((const float *)t->data)[i];
    return CD_OK;
}

cd_status cd_tensor_narrow(const cd_tensor *t, cd_tensor **out, cd_error *err)
{
    cd_status st = cd_tensor_create(CD_FLOAT32, t->ndim, t->dims, out, err);
    if (st != CD_OK)
        return st;
    size_t n = cd_tensor_numel(t);
    float *f = (*out)->data;
    for (size_t i = 0; i < n; i++)
        f[i] = (float)((const double *)t->data)[i];
    return CD_OK;
}

void cd_plan64_free(cd_plan *p)
{
    if (!p || !p->f64)
        return;
    for (int v = 0; v < p->n_values; v++)
        cd_tensor_reset(&p->f64->v[v]);
    free(p->f64->v);
    free(p->f64->widened);
    free(p->f64);
    p->f64 = NULL;
}

/* The value's float64 storage: float32 values get a float64 buffer of their
 * shape (kept across runs), others a view of the plan's tensor. */
static cd_status slot(cd_plan *p, int v, cd_error *err)
{
    cd_tensor *d = &p->f64->v[v];
    const cd_tensor *t = &p->vals[v];
    if (t->dtype != CD_FLOAT32) {
        if (d->owns_data)
            cd_tensor_reset(d);
        *d = *t;
        d->owns_data = false;
        return CD_OK;
    }
    size_t bytes = cd_tensor_numel(t) * sizeof(double);
    if (!d->owns_data || d->capacity < bytes) {
        cd_tensor_reset(d);
        d->data = malloc(bytes ? bytes : 1);
        if (!d->data)
            return cd_fail(err, CD_ERR_OUT_OF_MEMORY,
                           "out of memory for float64 values (%zu bytes)", bytes);
        d->capacity = bytes ? bytes : 1;
        d->owns_data = true;
    }
    cd_tensor_set_shape(d, CD_FLOAT64, t->ndim, t->dims);
    return CD_OK;
}

static void widen_into(cd_tensor *d, const cd_tensor *t)
{
    size_t n = cd_tensor_numel(t);
    double *dst = d->data;
    const float *src = t->data;
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}

static cd_status bind_value(cd_plan *p, int v, const cd_tensor *src, cd_error *err)
{
    cd_status st = slot(p, v, err);
    if (st != CD_OK)
        return st;
    if (src->dtype == CD_FLOAT32)
        widen_into(&p->f64->v[v], src);
    else
        p->f64->v[v].data = src->data; /* integer input: borrowed as it is */
    return CD_OK;
}

cd_status cd_plan_run64(cd_plan *p, const cd_tensor *const *inputs, cd_ctx *ctx)
{
    const cd_model *m = p->model;
    cd_error *err = ctx->err;
    if (!p->keep_activations)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "float64 evaluation needs a plan built with keep_activations");
    if (!cd_plan_matches(p, inputs))
        return cd_fail(err, CD_ERR_INTERNAL, "plan used with other input shapes");
    if (!p->f64) {
        /* float64 copies of every float tensor the plan holds */
        cd_status cap = cd_plan_check_cap(m, (uint64_t)p->built_bytes * 3,
                                          "the float32 and float64 activations", err);
        if (cap != CD_OK)
            return cap;
        p->f64 = calloc(1, sizeof *p->f64);
        if (!p->f64 || !(p->f64->v = calloc((size_t)p->n_values + 1, sizeof *p->f64->v)) ||
            !(p->f64->widened = calloc((size_t)p->n_values + 1, sizeof *p->f64->widened))) {
            cd_plan64_free(p);
            return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
        }
    }
    cd_status st = CD_OK;
    for (int v = 0; v < p->n_values && st == CD_OK; v++)
        if (p->kind[v] == CD_VALUE_CONST && !p->f64->widened[v] && p->vals[v].data) {
            st = bind_value(p, v, &p->vals[v], err);
            p->f64->widened[v] = st == CD_OK;
        }
    for (int i = 0; i < m->n_inputs && st == CD_OK; i++)
        if (p->kind[m->inputs[i]] != CD_VALUE_CONST)
            st = bind_value(p, m->inputs[i], inputs[i], err);
    if (st != CD_OK)
        return st;
    cd_tensor *in[MAX_NODE_IO], *out[MAX_NODE_IO];
    for (int s = 0; s < p->n_steps; s++) {
        const cd_node *n = &m->nodes[p->steps[s]];
        if (n->n_inputs > MAX_NODE_IO || n->n_outputs > MAX_NODE_IO)
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "too many inputs or outputs");
        const cd_op_def *def = cd_op_get(n->op);
        if (!def->forward64)
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                                "operator has no float64 kernel (float64 mode)");
        for (int i = 0; i < n->n_inputs; i++)
            in[i] = n->inputs[i] >= 0 ? &p->f64->v[n->inputs[i]] : NULL;
        for (int j = 0; j < n->n_outputs; j++) {
            int v = n->outputs[j];
            out[j] = NULL;
            if (v < 0)
                continue;
            if ((st = slot(p, v, err)) != CD_OK)
                return st;
            out[j] = &p->f64->v[v];
            if (out[j]->dtype != CD_FLOAT64 && !out[j]->data)
                return cd_node_fail(n, err, CD_ERR_INTERNAL, "integer output has no storage");
        }
        if ((st = def->forward64(n, in, out, ctx)) != CD_OK)
            return st;
        /* The plan's float32 buffers get the rounded values. */
        for (int j = 0; j < n->n_outputs; j++) {
            int v = n->outputs[j];
            cd_tensor *t = v >= 0 ? &p->vals[v] : NULL;
            if (!t || t->dtype != CD_FLOAT32 || !t->data)
                continue;
            size_t cnt = cd_tensor_numel(t);
            float *f = t->data;
            const double *d = p->f64->v[v].data;
            for (size_t k = 0; k < cnt; k++)
                f[k] = (float)d[k];
        }
    }
    return CD_OK;
}

const cd_tensor *cd_plan_value64(const cd_plan *p, int v)
{
    if (!p->f64 || v < 0 || v >= p->n_values || !p->f64->v[v].data)
        return NULL;
    return &p->f64->v[v];
}

static cd_status grad_slot(const cd_plan *p, cd_tensor **g, int v, cd_error *err)
{
    if (g[v])
        return CD_OK;
    const cd_tensor *t = &p->vals[v];
    return cd_tensor_create(CD_FLOAT64, t->ndim, t->dims, &g[v], err);
}

cd_status cd_plan_backward64(cd_plan *p, int n_seeds, const int *seed_values,
                             const cd_tensor *const *seeds, int n_wrt, const int *wrt,
                             cd_tensor **grads_out, cd_ctx *ctx)
{
    const cd_model *m = p->model;
    cd_error *err = ctx->err;
    if (!p->f64)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_plan_backward64 before cd_plan_run64");
    for (int w = 0; w < n_wrt; w++)
        grads_out[w] = NULL;
    cd_tensor **g = calloc((size_t)p->n_values + 1, sizeof *g);
    bool *keep = calloc((size_t)p->n_values + 1, sizeof *keep);
    bool *reaches = calloc((size_t)p->n_values + 1, sizeof *reaches);
    cd_status st = CD_OK;
    if (!g || !keep || !reaches)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK) /* nothing upstream of the asked-for values is computed */
        cd_plan_mark_gradient_paths(p, n_wrt, wrt, keep, reaches);
    for (int s = 0; st == CD_OK && s < n_seeds; s++) {
        int v = seed_values[s];
        size_t cnt = cd_tensor_numel(&p->vals[v]);
        if (cd_tensor_numel(seeds[s]) != cnt)
            st = cd_fail(err, CD_ERR_SHAPE, "gradient seed for '%s' has the wrong size",
                         m->values[v].name);
        else if ((st = grad_slot(p, g, v, err)) == CD_OK) {
            double *dst = g[v]->data;
            for (size_t k = 0; k < cnt; k++)
                dst[k] += seeds[s]->dtype == CD_FLOAT64 ? ((const double *)seeds[s]->data)[k]
                                                        : ((const float *)seeds[s]->data)[k];
        }
    }
    cd_tensor *in[MAX_NODE_IO], *out[MAX_NODE_IO], *gout[MAX_NODE_IO], *gin[MAX_NODE_IO];
    for (int s = p->n_steps - 1; st == CD_OK && s >= 0; s--) {
        const cd_node *n = &m->nodes[p->steps[s]];
        bool any = false;
        for (int j = 0; j < n->n_outputs; j++) {
            int v = n->outputs[j];
            out[j] = v >= 0 ? &p->f64->v[v] : NULL;
            gout[j] = v >= 0 ? g[v] : NULL;
            any = any || gout[j];
        }
        if (!any)
            continue;
        bool wants = false;
        for (int i = 0; i < n->n_inputs && st == CD_OK; i++) {
            int v = n->inputs[i];
            in[i] = v >= 0 ? &p->f64->v[v] : NULL;
            gin[i] = NULL;
            if (v >= 0 && reaches[v] && p->kind[v] != CD_VALUE_CONST &&
                p->vals[v].dtype == CD_FLOAT32 && (st = grad_slot(p, g, v, err)) == CD_OK) {
                gin[i] = g[v];
                wants = true;
            }
        }
        const cd_op_def *def = cd_op_get(n->op);
        if (st == CD_OK && wants && !def->backward64)
            st = cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                              "operator has no float64 backward pass (float64 mode)");
        if (st == CD_OK && wants)
            st = def->backward64(n, in, out, gout, gin, ctx);
        for (int j = 0; j < n->n_outputs; j++) {
            int v = n->outputs[j];
            if (v >= 0 && !keep[v]) {
                cd_tensor_free(g[v]);
                g[v] = NULL;
            }
        }
    }
    for (int w = 0; st == CD_OK && w < n_wrt; w++)
        if (!g[wrt[w]])
            st = grad_slot(p, g, wrt[w], err); /* objective does not depend on it: zeros */
    if (st == CD_OK)
        st = cd_plan_hand_over(g, n_wrt, wrt, grads_out, err);
    for (int v = 0; g && v < p->n_values; v++)
        cd_tensor_free(g[v]);
    free(g);
    free(keep);
    free(reaches);
    return st;
}
