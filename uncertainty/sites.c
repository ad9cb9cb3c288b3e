/* Stochastic sites: the graph's Dropout nodes and user-declared sites, the
 * latter realised as synthetic Dropout nodes in a derived model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uncertainty/mc_internal.h"

void mc_derived_free(mc_derived *d)
{
    if (!d)
        return;
    for (int i = 0; i < d->m.n_nodes; i++) {
        if (d->synthetic && d->synthetic[i])
            cd_node_clear(&d->m.nodes[i]);
        else
            free(d->m.nodes[i].inputs);
    }
    for (int v = d->n_orig_values; v < d->m.n_values; v++)
        free(d->m.values[v].name);
    for (int s = 0; s < d->n_sites; s++)
        free(d->sites[s].name);
    free(d->sites);
    free(d->m.nodes);
    free(d->m.values);
    free(d->m.inputs);
    free(d->m.outputs);
    free(d->synthetic);
    memset(d, 0, sizeof *d);
}

/* Appends up to a few names resembling want (else the last tensors of the
 * graph, where sites usually go) to buf. */
static void candidate_names(const cd_model *m, const char *want, char *buf, size_t size)
{
    int shown = 0;
    size_t used = strlen(buf);
    for (int pass = 0; pass < 2 && shown == 0; pass++)
        for (int i = m->n_nodes - 1; i >= 0 && shown < 6; i--) {
            const cd_node *n = &m->nodes[i];
            const char *name = n->n_outputs > 0 && n->outputs[0] >= 0
                                   ? m->values[n->outputs[0]].name
                                   : n->name;
            if (pass == 0 && !strstr(name, want) && !strstr(n->name, want))
                continue;
            int w = snprintf(buf + used, size - used, "%s'%s' (output of %s '%s')",
                             shown ? ", " : "", name, n->op_type, n->name);
            if (w < 0 || (size_t)w >= size - used)
                return;
            used += (size_t)w;
            shown++;
        }
}

static cd_status unknown_site(const cd_model *m, const char *name, cd_error *err)
{
    char cands[360] = "";
    candidate_names(m, name, cands, sizeof cands);
    return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                   "dropout site '%s' names no tensor or node of the model; candidates: %s", name,
                   cands[0] ? cands : "(the graph has no nodes)");
}

static int find_node(const cd_model *m, const char *name)
{
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].name && strcmp(m->nodes[i].name, name) == 0)
            return i;
    return -1;
}

/* A declared site resolved against the original model: either a tensor to
 * insert dropout after (value >= 0) or an existing Dropout node to override. */
typedef struct resolved {
    int value;
    int dropout_node;
} resolved;

static cd_status resolve_site(const cd_model *m, const cd_dropout_site *s, resolved *r,
                              cd_error *err)
{
    if (!s->name || !s->name[0])
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "dropout site without a name");
    if (!(s->p >= 0.0f && s->p < 1.0f))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "dropout site '%s': probability %g is outside [0, 1)", s->name,
                       (double)s->p);
    r->value = cd_model_find_value(m, s->name);
    r->dropout_node = -1;
    if (r->value >= 0)
        return CD_OK;
    int node = find_node(m, s->name);
    if (node < 0)
        return unknown_site(m, s->name, err);
    const cd_node *n = &m->nodes[node];
    if (n->op == CD_OP_DROPOUT) {
        r->dropout_node = node;
        return CD_OK;
    }
    if (n->n_outputs < 1 || n->outputs[0] < 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "dropout site '%s': node has no output",
                       s->name);
    r->value = n->outputs[0];
    return CD_OK;
}

/* The drop ratio an ONNX Dropout node carries: attribute (opset < 12) or
 * constant second input (opset >= 12), default 0.5. */
static cd_status graph_ratio(const cd_model *m, const cd_node *n, float *p, cd_error *err)
{
    *p = 0.5f;
    const cd_attr *a = cd_node_attr(n, "ratio");
    if (a) {
        *p = cd_attr_float(n, "ratio", 0.5f);
    } else if (n->n_inputs > 1 && n->inputs[1] >= 0) {
        const cd_tensor *t = m->values[n->inputs[1]].init;
        int prod = m->values[n->inputs[1]].producer;
        if (!t && prod >= 0 && prod < m->n_nodes && m->nodes[prod].op == CD_OP_CONSTANT)
            t = cd_attr_tensor(&m->nodes[prod], "value"); /* PyTorch's Constant ratio */
        if (!t && prod >= 0 && prod < m->n_nodes && m->nodes[prod].op == CD_OP_CONSTANT &&
            cd_node_attr(&m->nodes[prod], "value_float")) {
            *p = cd_attr_float(&m->nodes[prod], "value_float", 0.5f);
        } else if (!t || !t->data || cd_tensor_numel(t) != 1)
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED,
                                "MC dropout needs a constant scalar ratio input");
        else if (t->dtype == CD_FLOAT32)
            *p = *(const float *)t->data;
        else if (t->dtype == CD_FLOAT64)
            *p = (float)*(const double *)t->data;
        else
            return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "ratio of type %s",
                                cd_dtype_name(t->dtype));
    }
    if (!(*p >= 0.0f && *p < 1.0f))
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "ratio %g is outside [0, 1)",
                            (double)*p);
    return CD_OK;
}

static cd_status add_site(mc_derived *d, const char *name, int node, float p, bool channel,
                          cd_error *err)
{
    mc_site *s = &d->sites[d->n_sites];
    s->name = cd_strdup(name);
    if (!s->name)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    s->node = node;
    s->p = p;
    s->channel = channel;
    s->key = cd_site_key(name);
    d->n_sites++;
    return CD_OK;
}

/* Makes the synthetic Dropout node reading value v and writing new_v. */
static cd_status make_site_node(mc_derived *d, int at, const cd_model *orig, int v, int new_v,
                                int opset, cd_error *err)
{
    cd_node *n = &d->m.nodes[at];
    cd_status st = cd_node_init(n, "Dropout", opset >= 13 ? opset : 13, 1, 1, err);
    if (st != CD_OK)
        return st;
    d->synthetic[at] = true;
    size_t len = strlen(orig->values[v].name) + 32;
    char *name = malloc(len);
    if (!name)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    snprintf(name, len, "candor_dropout:%s", orig->values[v].name);
    free(n->name);
    n->name = name;
    n->inputs[0] = v;
    n->outputs[0] = new_v;
    return cd_node_bind(n, err);
}

static cd_status alloc_derived(mc_derived *d, const cd_model *orig, int n_new, int n_sites_max,
                               cd_error *err)
{
    d->n_orig_values = orig->n_values;
    d->m = *orig; /* scalars and borrowed strings; arrays replaced below */
    d->m.n_values = orig->n_values + n_new;
    d->m.n_nodes = orig->n_nodes + n_new;
    d->m.values = calloc((size_t)d->m.n_values + 1, sizeof *d->m.values);
    d->m.nodes = calloc((size_t)d->m.n_nodes + 1, sizeof *d->m.nodes);
    d->m.inputs = calloc((size_t)orig->n_inputs + 1, sizeof(int));
    d->m.outputs = calloc((size_t)orig->n_outputs + 1, sizeof(int));
    d->synthetic = calloc((size_t)d->m.n_nodes + 1, sizeof(bool));
    d->sites = calloc((size_t)n_sites_max + 1, sizeof *d->sites);
    if (!d->m.values || !d->m.nodes || !d->m.inputs || !d->m.outputs || !d->synthetic ||
        !d->sites) {
        d->m.n_nodes = 0; /* nothing to clear yet */
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    memcpy(d->m.values, orig->values, (size_t)orig->n_values * sizeof *orig->values);
    memcpy(d->m.inputs, orig->inputs, (size_t)orig->n_inputs * sizeof(int));
    memcpy(d->m.outputs, orig->outputs, (size_t)orig->n_outputs * sizeof(int));
    return CD_OK;
}

/* Copies original node i with its own (rewired) inputs array: every use of a
 * site tensor reads the site's dropped value instead. */
static cd_status copy_node(mc_derived *d, int at, const cd_node *src, const int *redirect,
                           cd_error *err)
{
    cd_node *n = &d->m.nodes[at];
    *n = *src;
    n->inputs = calloc((size_t)src->n_inputs + 1, sizeof(int));
    if (!n->inputs) {
        n->n_inputs = 0;
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int k = 0; k < src->n_inputs; k++) {
        int v = src->inputs[k];
        n->inputs[k] = v >= 0 && redirect[v] >= 0 ? redirect[v] : v;
    }
    return CD_OK;
}

/* Adds the new value for site tensor v (same type and shape). */
static cd_status add_site_value(mc_derived *d, const cd_model *orig, int v, int new_v,
                                cd_error *err)
{
    cd_value *nv = &d->m.values[new_v];
    *nv = orig->values[v];
    nv->init = NULL;
    nv->is_graph_input = false;
    size_t len = strlen(orig->values[v].name) + 16;
    nv->name = malloc(len);
    if (!nv->name)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    snprintf(nv->name, len, "%s:dropout", orig->values[v].name);
    d->m.values[v].is_graph_output = false;
    return CD_OK;
}

/* Lays out nodes: synthetic nodes for sites on inputs/initializers first,
 * then each original node followed by the synthetic nodes of its outputs. */
static cd_status build_nodes(mc_derived *d, const cd_model *orig, const int *site_value,
                             int n_new, const int *redirect, int *new_index, cd_error *err)
{
    int at = 0;
    cd_status st = CD_OK;
    for (int pass = -1; st == CD_OK && pass < orig->n_nodes; pass++) {
        if (pass >= 0) {
            new_index[pass] = at;
            st = copy_node(d, at++, &orig->nodes[pass], redirect, err);
        }
        for (int s = 0; st == CD_OK && s < n_new; s++) {
            int v = site_value[s], prod = -1;
            for (int i = 0; i < orig->n_nodes && prod < 0; i++)
                for (int k = 0; k < orig->nodes[i].n_outputs; k++)
                    if (orig->nodes[i].outputs[k] == v)
                        prod = i;
            if (prod != pass)
                continue;
            st = add_site_value(d, orig, v, orig->n_values + s, err);
            if (st == CD_OK)
                st = make_site_node(d, at, orig, v, orig->n_values + s, orig->opset, err);
            d->m.values[orig->n_values + s].producer = at;
            at++;
        }
    }
    d->m.n_nodes = at;
    return st;
}

static cd_status collect_sites(mc_derived *d, const cd_model *orig, int n_declared,
                               const cd_dropout_site *declared, const resolved *res,
                               const int *new_index, bool skip_graph, cd_error *err)
{
    cd_status st = CD_OK;
    for (int i = 0; st == CD_OK && i < orig->n_nodes; i++) {
        const cd_node *n = &orig->nodes[i];
        if (n->op != CD_OP_DROPOUT)
            continue;
        int over = -1;
        for (int s = 0; s < n_declared; s++)
            if (res[s].dropout_node == i)
                over = s;
        if (over >= 0) {
            st = add_site(d, n->name, new_index[i], declared[over].p, declared[over].channel, err);
        } else if (!skip_graph) {
            float p;
            st = graph_ratio(orig, n, &p, err);
            if (st == CD_OK)
                st = add_site(d, n->name, new_index[i], p, false, err);
        }
    }
    for (int s = 0; st == CD_OK && s < n_declared; s++) {
        if (res[s].value < 0)
            continue;
        int node = -1;
        for (int i = 0; i < d->m.n_nodes; i++)
            if (d->synthetic[i] && d->m.nodes[i].inputs[0] == res[s].value)
                node = i;
        st = add_site(d, declared[s].name, node, declared[s].p, declared[s].channel, err);
    }
    return st;
}

static cd_status derive(const cd_model *orig, int n_declared, const cd_dropout_site *declared,
                        bool skip_graph, mc_derived *d, resolved *res, int *site_value,
                        int *redirect, int *new_index, cd_error *err)
{
    int n_new = 0;
    for (int s = 0; s < n_declared; s++) {
        cd_status st = resolve_site(orig, &declared[s], &res[s], err);
        if (st != CD_OK)
            return st;
        for (int t = 0; t < s; t++)
            if ((res[t].value >= 0 && res[t].value == res[s].value) ||
                (res[t].dropout_node >= 0 && res[t].dropout_node == res[s].dropout_node))
                return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "dropout site '%s' declared twice",
                               declared[s].name);
        if (res[s].value >= 0) {
            redirect[res[s].value] = orig->n_values + n_new;
            site_value[n_new++] = res[s].value;
        }
    }
    cd_status st = alloc_derived(d, orig, n_new, orig->n_nodes + n_declared, err);
    if (st == CD_OK)
        st = build_nodes(d, orig, site_value, n_new, redirect, new_index, err);
    for (int v = 0; st == CD_OK && v < orig->n_values; v++)
        if (d->m.values[v].producer >= 0 && d->m.values[v].producer < orig->n_nodes)
            d->m.values[v].producer = new_index[d->m.values[v].producer];
    for (int o = 0; st == CD_OK && o < orig->n_outputs; o++) {
        int v = orig->outputs[o];
        if (redirect[v] >= 0) {
            d->m.outputs[o] = redirect[v];
            d->m.values[redirect[v]].is_graph_output = true;
        }
    }
    if (st == CD_OK)
        st = collect_sites(d, orig, n_declared, declared, res, new_index, skip_graph, err);
    return st;
}

cd_status mc_derive(const cd_model *orig, int n_declared, const cd_dropout_site *declared,
                    bool skip_graph, mc_derived *out, cd_error *err)
{
    memset(out, 0, sizeof *out);
    resolved *res = calloc((size_t)n_declared + 1, sizeof *res);
    int *site_value = calloc((size_t)n_declared + 1, sizeof(int));
    int *redirect = malloc(((size_t)orig->n_values + 1) * sizeof(int));
    int *new_index = calloc((size_t)orig->n_nodes + 1, sizeof(int));
    cd_status st = CD_OK;
    if (!res || !site_value || !redirect || !new_index)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int v = 0; st == CD_OK && v < orig->n_values; v++)
        redirect[v] = -1;
    if (st == CD_OK)
        st = derive(orig, n_declared, declared, skip_graph, out, res, site_value, redirect,
                    new_index, err);
    free(res);
    free(site_value);
    free(redirect);
    free(new_index);
    if (st != CD_OK)
        mc_derived_free(out);
    return st;
}
