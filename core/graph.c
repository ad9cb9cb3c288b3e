#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "ops/op.h"

const cd_attr *cd_node_attr(const cd_node *n, const char *name)
{
    for (int i = 0; i < n->n_attrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0)
            return &n->attrs[i];
    return NULL;
}

int64_t cd_attr_int(const cd_node *n, const char *name, int64_t def)
{
    const cd_attr *a = cd_node_attr(n, name);
    return a && a->type == CD_ATTR_INT ? a->i : def;
}

float cd_attr_float(const cd_node *n, const char *name, float def)
{
    const cd_attr *a = cd_node_attr(n, name);
    if (!a)
        return def;
    if (a->type == CD_ATTR_FLOAT)
        return a->f;
    if (a->type == CD_ATTR_INT)
        return (float)a->i;
    return def;
}

const char *cd_attr_string(const cd_node *n, const char *name, const char *def)
{
    const cd_attr *a = cd_node_attr(n, name);
    return a && a->type == CD_ATTR_STRING && a->s ? a->s : def;
}

int cd_attr_ints(const cd_node *n, const char *name, const int64_t **vals)
{
    const cd_attr *a = cd_node_attr(n, name);
    if (!a || a->type != CD_ATTR_INTS)
        return -1;
    *vals = a->ints;
    return (int)a->count;
}

int cd_attr_floats(const cd_node *n, const char *name, const float **vals)
{
    const cd_attr *a = cd_node_attr(n, name);
    if (!a || a->type != CD_ATTR_FLOATS)
        return -1;
    *vals = a->floats;
    return (int)a->count;
}

const cd_tensor *cd_attr_tensor(const cd_node *n, const char *name)
{
    const cd_attr *a = cd_node_attr(n, name);
    return a && a->type == CD_ATTR_TENSOR ? a->t : NULL;
}

cd_status cd_node_init(cd_node *n, const char *op_type, int opset, int n_inputs, int n_outputs,
                       cd_error *err)
{
    memset(n, 0, sizeof *n);
    n->op = -1;
    n->opset = opset;
    n->op_type = cd_strdup(op_type);
    n->domain = cd_strdup("");
    n->name = cd_strdup(op_type);
    n->n_inputs = n_inputs;
    n->n_outputs = n_outputs;
    n->inputs = calloc((size_t)(n_inputs > 0 ? n_inputs : 1), sizeof(int));
    n->outputs = calloc((size_t)(n_outputs > 0 ? n_outputs : 1), sizeof(int));
    if (!n->op_type || !n->domain || !n->name || !n->inputs || !n->outputs) {
        cd_node_clear(n);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory building node");
    }
    for (int i = 0; i < n_inputs; i++)
        n->inputs[i] = i;
    for (int i = 0; i < n_outputs; i++)
        n->outputs[i] = n_inputs + i;
    return CD_OK;
}

static cd_attr *add_attr(cd_node *n, const char *name, cd_attr_type type, cd_error *err)
{
    cd_attr *grown = realloc(n->attrs, (size_t)(n->n_attrs + 1) * sizeof *grown);
    if (!grown) {
        cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    n->attrs = grown;
    cd_attr *a = &n->attrs[n->n_attrs];
    memset(a, 0, sizeof *a);
    a->name = cd_strdup(name);
    if (!a->name) {
        cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
        return NULL;
    }
    a->type = type;
    n->n_attrs++;
    return a;
}

cd_status cd_node_add_int(cd_node *n, const char *name, int64_t v, cd_error *err)
{
    cd_attr *a = add_attr(n, name, CD_ATTR_INT, err);
    if (!a)
        return CD_ERR_OUT_OF_MEMORY;
    a->i = v;
    return CD_OK;
}

cd_status cd_node_add_float(cd_node *n, const char *name, float v, cd_error *err)
{
    cd_attr *a = add_attr(n, name, CD_ATTR_FLOAT, err);
    if (!a)
        return CD_ERR_OUT_OF_MEMORY;
    a->f = v;
    return CD_OK;
}

cd_status cd_node_add_string(cd_node *n, const char *name, const char *v, cd_error *err)
{
    cd_attr *a = add_attr(n, name, CD_ATTR_STRING, err);
    if (!a)
        return CD_ERR_OUT_OF_MEMORY;
    a->s = cd_strdup(v);
    return a->s ? CD_OK : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
}

cd_status cd_node_add_ints(cd_node *n, const char *name, const int64_t *v, size_t count,
                           cd_error *err)
{
    cd_attr *a = add_attr(n, name, CD_ATTR_INTS, err);
    if (!a)
        return CD_ERR_OUT_OF_MEMORY;
    a->ints = malloc((count ? count : 1) * sizeof *a->ints);
    if (!a->ints)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (count)
        memcpy(a->ints, v, count * sizeof *a->ints);
    a->count = count;
    return CD_OK;
}

cd_status cd_node_add_floats(cd_node *n, const char *name, const float *v, size_t count,
                             cd_error *err)
{
    cd_attr *a = add_attr(n, name, CD_ATTR_FLOATS, err);
    if (!a)
        return CD_ERR_OUT_OF_MEMORY;
    a->floats = malloc((count ? count : 1) * sizeof *a->floats);
    if (!a->floats)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (count)
        memcpy(a->floats, v, count * sizeof *a->floats);
    a->count = count;
    return CD_OK;
}

cd_status cd_node_add_tensor(cd_node *n, const char *name, cd_tensor *t, cd_error *err)
{
    cd_attr *a = add_attr(n, name, CD_ATTR_TENSOR, err);
    if (!a) {
        cd_tensor_free(t);
        return CD_ERR_OUT_OF_MEMORY;
    }
    a->t = t;
    return CD_OK;
}

cd_status cd_node_bind(cd_node *n, cd_error *err)
{
    if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "node '%s': operator %s of domain '%s' is not supported", n->name,
                       n->op_type, n->domain);
    int id = cd_op_lookup(n->op_type);
    if (id < 0)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "node '%s': operator %s (opset %d) is not supported", n->name, n->op_type,
                       n->opset);
    const cd_op_def *def = cd_op_get(id);
    if (n->opset < def->min_opset)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "node '%s': operator %s at opset %d is not supported (needs opset >= %d)",
                       n->name, n->op_type, n->opset, def->min_opset);
    n->op = id;
    if (def->parse)
        return def->parse(n, err);
    return CD_OK;
}

void cd_node_clear(cd_node *n)
{
    if (!n)
        return;
    free(n->name);
    free(n->op_type);
    free(n->domain);
    free(n->inputs);
    free(n->outputs);
    for (int i = 0; i < n->n_attrs; i++) {
        cd_attr *a = &n->attrs[i];
        free(a->name);
        free(a->s);
        free(a->floats);
        free(a->ints);
        cd_tensor_free(a->t);
    }
    free(n->attrs);
    free(n->params);
    memset(n, 0, sizeof *n);
}

int cd_model_find_value(const cd_model *m, const char *name)
{
    for (int i = 0; i < m->n_values; i++)
        if (strcmp(m->values[i].name, name) == 0)
            return i;
    return -1;
}
