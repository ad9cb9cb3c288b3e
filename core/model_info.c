/* Model introspection that needs a plan: MACs and memory for given shapes. */
#include <stdlib.h>

#include "plan.h"

const char *cd_model_node_op_type(const cd_model *m, int i)
{
    return m && i >= 0 && i < m->n_nodes ? m->nodes[i].op_type : NULL;
}

const char *cd_model_node_name(const cd_model *m, int i)
{
    return m && i >= 0 && i < m->n_nodes ? m->nodes[i].name : NULL;
}

static uint64_t prod(const cd_tensor *t, int from, int to)
{
    uint64_t r = 1;
    for (int d = from; d < to && d < t->ndim; d++)
        r *= (uint64_t)t->dims[d];
    return r;
}

/* MACs of one node from the planned shapes. */
static uint64_t node_macs(const cd_plan *p, const cd_node *n)
{
    const cd_tensor *x = n->n_inputs > 0 && n->inputs[0] >= 0 ? &p->vals[n->inputs[0]] : NULL;
    const cd_tensor *w = n->n_inputs > 1 && n->inputs[1] >= 0 ? &p->vals[n->inputs[1]] : NULL;
    const cd_tensor *y = n->n_outputs > 0 && n->outputs[0] >= 0 ? &p->vals[n->outputs[0]] : NULL;
    if (!x || !w || !y)
        return 0;
    switch (n->op) {
    case CD_OP_CONV: /* each output element: Cin/group * kernel taps */
        return prod(y, 0, y->ndim) * prod(w, 1, w->ndim);
    case CD_OP_CONV_TRANSPOSE: /* each input element scatters Cout/group * taps */
        return prod(x, 0, x->ndim) * prod(w, 1, w->ndim);
    case CD_OP_GEMM: {
        int64_t k = cd_attr_int(n, "transA", 0) ? x->dims[0] : x->dims[x->ndim - 1];
        return prod(y, 0, y->ndim) * (uint64_t)k;
    }
    case CD_OP_MATMUL:
        return prod(y, 0, y->ndim) * (uint64_t)x->dims[x->ndim - 1];
    default:
        return 0;
    }
}

cd_status cd_model_estimate_cost(const cd_model *m, int n_inputs, const int *ndims,
                                 const int64_t *const *dims, cd_model_cost *out, cd_error *err)
{
    if (!m || !out || n_inputs != m->n_inputs)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has %d input(s), %d shape(s) given",
                       m ? m->n_inputs : 0, n_inputs);
    cd_tensor *shapes = calloc((size_t)n_inputs + 1, sizeof *shapes);
    const cd_tensor **ptrs = calloc((size_t)n_inputs + 1, sizeof *ptrs);
    cd_status st = shapes && ptrs ? CD_OK : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; st == CD_OK && i < n_inputs; i++) {
        const cd_value *v = &m->values[m->inputs[i]];
        if (ndims[i] < 0 || ndims[i] > CD_MAX_DIMS)
            st = cd_fail(err, CD_ERR_INVALID_ARGUMENT, "input '%s': bad rank %d", v->name,
                         ndims[i]);
        else
            cd_tensor_set_shape(&shapes[i], v->dtype ? v->dtype : CD_FLOAT32, ndims[i], dims[i]);
        ptrs[i] = &shapes[i];
    }
    cd_plan *p = NULL;
    if (st == CD_OK)
        st = cd_plan_build(m, ptrs, NULL, &p, err);
    if (st == CD_OK) {
        cd_model_cost c = {0};
        for (int s = 0; s < p->n_steps; s++)
            c.macs += node_macs(p, &m->nodes[p->steps[s]]);
        c.activation_bytes = p->runtime_bytes;
        for (int v = 0; v < p->n_values; v++)
            if (p->kind[v] == CD_VALUE_CONST)
                c.constant_bytes += cd_tensor_nbytes(&p->vals[v]);
        c.runtime_steps = p->n_steps;
        *out = c;
    }
    cd_plan_free(p);
    free(shapes);
    free(ptrs);
    return st;
}
