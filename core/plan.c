#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

#define MAX_NODE_IO 64

void cd_plan_free(cd_plan *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_values; i++)
        cd_tensor_reset(&p->vals[i]);
    free(p->vals);
    free(p->kind);
    free(p->steps);
    free(p);
}

static cd_status bind_initializers(cd_plan *p)
{
    const cd_model *m = p->model;
    for (int v = 0; v < m->n_values; v++) {
        const cd_tensor *init = m->values[v].init;
        if (!init)
            continue;
        cd_tensor *t = &p->vals[v];
        *t = *init;
        t->owns_data = false; /* borrowed from the immutable model */
        p->kind[v] = CD_VALUE_CONST;
    }
    return CD_OK;
}

static cd_status bind_input_shapes(cd_plan *p, const cd_tensor *const *inputs, cd_error *err)
{
    const cd_model *m = p->model;
    char want[128], got[128];
    for (int i = 0; i < m->n_inputs; i++) {
        const cd_value *v = &m->values[m->inputs[i]];
        const cd_tensor *in = inputs[i];
        if (!in)
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "input '%s' was not given", v->name);
        if (v->dtype != CD_DTYPE_UNDEFINED && in->dtype != v->dtype)
            return cd_fail(err, CD_ERR_SHAPE, "input '%s' expects %s, got %s", v->name,
                           cd_dtype_name(v->dtype), cd_dtype_name(in->dtype));
        bool ok = v->ndim < 0 || v->ndim == in->ndim;
        for (int d = 0; ok && v->ndim >= 0 && d < v->ndim; d++)
            if (v->dims[d] >= 0 && v->dims[d] != in->dims[d])
                ok = false;
        if (!ok)
            return cd_fail(err, CD_ERR_SHAPE, "input '%s' expects shape %s (-1 = any), got %s",
                           v->name, cd_shape_str(v->ndim, v->dims, want, sizeof want),
                           cd_shape_str(in->ndim, in->dims, got, sizeof got));
        cd_tensor *t = &p->vals[m->inputs[i]];
        cd_tensor_set_shape(t, in->dtype, in->ndim, in->dims);
        p->kind[m->inputs[i]] = CD_VALUE_INPUT;
    }
    return CD_OK;
}

/* Shape-only view of a value for the shape rule: data only when constant. */
static cd_tensor *shape_view(cd_plan *p, int v, cd_tensor *scratch)
{
    if (v < 0 || p->kind[v] == CD_VALUE_UNUSED)
        return NULL;
    *scratch = p->vals[v];
    scratch->owns_data = false;
    if (p->kind[v] != CD_VALUE_CONST)
        scratch->data = NULL;
    return scratch;
}

static bool node_is_foldable(const cd_plan *p, const cd_node *n, const cd_plan_options *opts,
                             int node_index)
{
    if (opts && opts->keep_node && opts->keep_node[node_index])
        return false;
    if (n->op == CD_OP_SHAPE)
        return true; /* needs only the (known) shape of its input */
    for (int i = 0; i < n->n_inputs; i++) {
        int v = n->inputs[i];
        if (v >= 0 && p->kind[v] != CD_VALUE_CONST)
            return false;
    }
    return true;
}

static cd_status plan_node(cd_plan *p, int node_index, const cd_plan_options *opts,
                           cd_ctx *ctx)
{
    const cd_node *n = &p->model->nodes[node_index];
    const cd_op_def *def = cd_op_get(n->op);
    cd_tensor views[MAX_NODE_IO];
    cd_tensor *in[MAX_NODE_IO] = {0}, *out[MAX_NODE_IO] = {0};
    cd_error *err = ctx->err;
    if (n->n_inputs > MAX_NODE_IO || n->n_outputs > MAX_NODE_IO)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "more than %d inputs or outputs",
                            MAX_NODE_IO);
    for (int i = 0; i < n->n_inputs; i++) {
        int v = n->inputs[i];
        in[i] = shape_view(p, v, &views[i]);
        if (v >= 0 && !in[i])
            return cd_node_fail(n, err, CD_ERR_PARSE, "input '%s' is never produced",
                                p->model->values[v].name);
    }
    for (int j = 0; j < n->n_outputs; j++)
        if (n->outputs[j] >= 0)
            out[j] = &p->vals[n->outputs[j]];
    if (!def || !def->infer || !def->forward)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "operator %s (opset %d) is not implemented",
                            n->op_type, n->opset);
    cd_status st = def->infer(n, in, out, err);
    if (st != CD_OK)
        return st;
    bool fold = node_is_foldable(p, n, opts, node_index);
    for (int j = 0; j < n->n_outputs; j++) {
        if (!out[j])
            continue;
        size_t numel;
        if (!cd_shape_numel(out[j]->ndim, out[j]->dims, 0, &numel))
            return cd_node_fail(n, err, CD_ERR_SHAPE, "output %d has an invalid shape", j);
        st = cd_tensor_ensure(out[j], err);
        if (st != CD_OK)
            return st;
        p->kind[n->outputs[j]] = fold ? CD_VALUE_CONST : CD_VALUE_RUNTIME;
        if (!fold)
            p->runtime_bytes += cd_tensor_nbytes(out[j]);
    }
    if (fold) {
        for (int i = 0; i < n->n_inputs; i++)
            if (n->inputs[i] >= 0)
                in[i] = &p->vals[n->inputs[i]];
        st = def->forward(n, in, out, ctx);
        if (st != CD_OK)
            return st;
    } else {
        p->steps[p->n_steps++] = node_index;
    }
    return CD_OK;
}

cd_status cd_plan_build(const cd_model *m, const cd_tensor *const *inputs,
                        const cd_plan_options *opts, cd_plan **out, cd_error *err)
{
    *out = NULL;
    cd_plan *p = calloc(1, sizeof *p);
    if (!p)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    p->model = m;
    p->n_values = m->n_values;
    p->vals = calloc((size_t)m->n_values + 1, sizeof *p->vals);
    p->kind = calloc((size_t)m->n_values + 1, 1);
    p->steps = calloc((size_t)m->n_nodes + 1, sizeof *p->steps);
    if (!p->vals || !p->kind || !p->steps) {
        cd_plan_free(p);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    cd_status st = bind_initializers(p);
    if (st == CD_OK)
        st = bind_input_shapes(p, inputs, err);
    cd_ctx ctx = {.err = err, .threads = 1};
    for (int i = 0; st == CD_OK && i < m->n_nodes; i++)
        st = plan_node(p, i, opts, &ctx);
    for (int o = 0; st == CD_OK && o < m->n_outputs; o++)
        if (p->kind[m->outputs[o]] == CD_VALUE_UNUSED)
            st = cd_fail(err, CD_ERR_PARSE, "graph output '%s' is never produced",
                         m->values[m->outputs[o]].name);
    free(ctx.scratch);
    if (st != CD_OK) {
        cd_plan_free(p);
        return st;
    }
    *out = p;
    return CD_OK;
}

bool cd_plan_matches(const cd_plan *p, const cd_tensor *const *inputs)
{
    const cd_model *m = p->model;
    for (int i = 0; i < m->n_inputs; i++) {
        const cd_tensor *t = &p->vals[m->inputs[i]];
        if (!inputs[i] || inputs[i]->dtype != t->dtype ||
            !cd_shape_equal(t->ndim, t->dims, inputs[i]->ndim, inputs[i]->dims))
            return false;
    }
    return true;
}

cd_status cd_plan_run(cd_plan *p, const cd_tensor *const *inputs, cd_ctx *ctx)
{
    const cd_model *m = p->model;
    if (!cd_plan_matches(p, inputs))
        return cd_fail(ctx->err, CD_ERR_INTERNAL, "plan used with other input shapes");
    for (int i = 0; i < m->n_inputs; i++) {
        cd_tensor *t = &p->vals[m->inputs[i]];
        t->data = inputs[i]->data; /* borrowed: kernels never write their inputs */
        t->capacity = cd_tensor_nbytes(inputs[i]);
        t->owns_data = false;
    }
    cd_tensor *in[MAX_NODE_IO], *out[MAX_NODE_IO];
    for (int s = 0; s < p->n_steps; s++) {
        const cd_node *n = &m->nodes[p->steps[s]];
        for (int i = 0; i < n->n_inputs; i++)
            in[i] = n->inputs[i] >= 0 ? &p->vals[n->inputs[i]] : NULL;
        for (int j = 0; j < n->n_outputs; j++)
            out[j] = n->outputs[j] >= 0 ? &p->vals[n->outputs[j]] : NULL;
        cd_status st = cd_op_get(n->op)->forward(n, in, out, ctx);
        if (st != CD_OK)
            return st;
    }
    return CD_OK;
}

static cd_status grad_slot(cd_plan *p, cd_tensor **grads, int v, cd_error *err)
{
    if (grads[v])
        return CD_OK;
    const cd_tensor *t = &p->vals[v];
    return cd_tensor_create(CD_FLOAT32, t->ndim, t->dims, &grads[v], err);
}

cd_status cd_plan_backward(cd_plan *p, int n_seeds, const int *seed_values,
                           const cd_tensor *const *seeds, int n_wrt, const int *wrt,
                           cd_tensor **grads_out, cd_ctx *ctx)
{
    const cd_model *m = p->model;
    cd_error *err = ctx->err;
    cd_tensor **g = calloc((size_t)p->n_values + 1, sizeof *g);
    if (!g)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    cd_status st = CD_OK;
    for (int s = 0; st == CD_OK && s < n_seeds; s++) {
        int v = seed_values[s];
        st = grad_slot(p, g, v, err);
        if (st == CD_OK) {
            float *dst = g[v]->data;
            const float *src = seeds[s]->data;
            size_t cnt = cd_tensor_numel(g[v]);
            if (cd_tensor_numel(seeds[s]) != cnt)
                st = cd_fail(err, CD_ERR_SHAPE, "gradient seed for '%s' has the wrong size",
                             m->values[v].name);
            for (size_t k = 0; st == CD_OK && k < cnt; k++)
                dst[k] += src[k];
        }
    }
    cd_tensor *in[MAX_NODE_IO], *out[MAX_NODE_IO], *gout[MAX_NODE_IO], *gin[MAX_NODE_IO];
    for (int s = p->n_steps - 1; st == CD_OK && s >= 0; s--) {
        const cd_node *n = &m->nodes[p->steps[s]];
        bool any = false;
        for (int j = 0; j < n->n_outputs; j++) {
            int v = n->outputs[j];
            out[j] = v >= 0 ? &p->vals[v] : NULL;
            gout[j] = v >= 0 ? g[v] : NULL;
            any = any || gout[j];
        }
        if (!any)
            continue;
        for (int i = 0; i < n->n_inputs; i++) {
            int v = n->inputs[i];
            in[i] = v >= 0 ? &p->vals[v] : NULL;
            gin[i] = NULL;
            bool wanted = v >= 0 && p->kind[v] != CD_VALUE_CONST && p->vals[v].dtype == CD_FLOAT32;
            if (wanted && (st = grad_slot(p, g, v, err)) == CD_OK)
                gin[i] = g[v];
        }
        const cd_op_def *def = cd_op_get(n->op);
        if (st == CD_OK && !def->backward)
            st = cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "operator has no backward pass");
        if (st == CD_OK)
            st = def->backward(n, in, out, gout, gin, ctx);
    }
    for (int w = 0; w < n_wrt; w++)
        grads_out[w] = NULL;
    for (int w = 0; st == CD_OK && w < n_wrt; w++) {
        int v = wrt[w];
        if (!g[v])
            st = grad_slot(p, g, v, err); /* objective does not depend on it: zeros */
        if (st == CD_OK)
            st = cd_tensor_clone(g[v], &grads_out[w], err);
    }
    for (int v = 0; v < p->n_values; v++)
        cd_tensor_free(g[v]);
    free(g);
    if (st != CD_OK)
        for (int w = 0; w < n_wrt; w++) {
            cd_tensor_free(grads_out[w]);
            grads_out[w] = NULL;
        }
    return st;
}
