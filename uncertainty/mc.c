/* MC-dropout sessions: run the deterministic prefix once per input, then the
 * stochastic suffix as one batch of T samples (or T runs of batch 1 when the
 * suffix cannot be batched).
 *
 * Two plans per input shape:
 *  - `full`: the whole derived model for batch 1. Only its prefix steps (the
 *    nodes not downstream of any site) run per input; the rest of it is
 *    used once, to learn the deterministic output shapes.
 *  - `suffix`: a sub-model of the downstream nodes whose graph inputs are the
 *    boundary tensors (runtime values the suffix reads from the prefix),
 *    tiled T times along axis 0. Constants folded in `full` are lent to the
 *    suffix as initializers, so nothing is folded twice. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "candor/image.h"
#include "core/parallel.h"
#include "uncertainty/mc_internal.h"

struct cd_mc_session {
    const cd_model *orig;
    int T;
    uint64_t seed, sample_base;
    int threads;
    bool force_loop;
    mc_derived d;
    int *site_of_node;   /* derived nodes: site index or -1 */
    bool *downstream;    /* derived nodes downstream of (or at) a site */
    float *site_p;
    bool *site_channel;
    uint64_t *site_key;
    /* per input shape */
    cd_plan *full;
    int *all_steps, n_all_steps, *prefix_steps, n_prefix_steps;
    cd_model sub;        /* suffix model (arrays owned) */
    int *sub_site_of_node;
    cd_plan *suffix;
    int suffix_batch;    /* T (batched) or 1 (loop) */
    int n_bound;
    cd_tensor **bound;   /* suffix inputs, owned */
    cd_ctx ctx;
    cd_mc_stats stats;
};

void cd_mc_options_default(cd_mc_options *o)
{
    memset(o, 0, sizeof *o);
    o->samples = 1;
}

int cd_mc_site_count(const cd_mc_session *mc) { return mc ? mc->d.n_sites : 0; }

const char *cd_mc_site_name(const cd_mc_session *mc, int k)
{
    return mc && k >= 0 && k < mc->d.n_sites ? mc->d.sites[k].name : NULL;
}

float cd_mc_site_p(const cd_mc_session *mc, int k)
{
    return mc && k >= 0 && k < mc->d.n_sites ? mc->d.sites[k].p : -1.0f;
}

void cd_mc_get_stats(const cd_mc_session *mc, cd_mc_stats *out)
{
    if (mc && out)
        *out = mc->stats;
}

void mc_session_set_sample_base(cd_mc_session *mc, uint64_t base) { mc->sample_base = base; }
const cd_model *mc_session_model(const cd_mc_session *mc) { return mc->orig; }
const cd_model *mc_session_derived(const cd_mc_session *mc) { return &mc->d.m; }
int mc_session_samples(const cd_mc_session *mc) { return mc->T; }

void mc_session_stochastic(const cd_mc_session *mc, cd_stochastic *out)
{
    cd_stochastic s = {.seed = mc->seed,
                       .nodes = mc->d.m.nodes,
                       .n_nodes = mc->d.m.n_nodes,
                       .site_of_node = mc->site_of_node,
                       .site_p = mc->site_p,
                       .site_channel = mc->site_channel,
                       .site_key = mc->site_key};
    *out = s;
}

/* Drops everything that depends on the input shape. */
static void reset_shape_state(cd_mc_session *mc)
{
    cd_plan_free(mc->suffix);
    mc->suffix = NULL;
    for (int i = 0; i < mc->n_bound; i++)
        cd_tensor_free(mc->bound[i]);
    free(mc->bound);
    mc->bound = NULL;
    mc->n_bound = 0;
    free(mc->sub.values);
    free(mc->sub.nodes);
    free(mc->sub.inputs);
    free(mc->sub.outputs);
    memset(&mc->sub, 0, sizeof mc->sub);
    free(mc->sub_site_of_node);
    mc->sub_site_of_node = NULL;
    cd_plan_free(mc->full);
    mc->full = NULL;
    free(mc->all_steps);
    free(mc->prefix_steps);
    mc->all_steps = mc->prefix_steps = NULL;
}

void cd_mc_session_free(cd_mc_session *mc)
{
    if (!mc)
        return;
    reset_shape_state(mc);
    mc_derived_free(&mc->d);
    free(mc->site_of_node);
    free(mc->downstream);
    free(mc->site_p);
    free(mc->site_channel);
    free(mc->site_key);
    cd_ctx_release(&mc->ctx);
    free(mc);
}

/* Collects declared sites: the caller's, then the sidecar's (unless told
 * not to, or the caller already declared the same name). */
static cd_status gather_declared(const cd_model *m, const cd_mc_options *o,
                                 cd_dropout_site **out, int *count, cd_error *err)
{
    int n_side = o->ignore_sidecar_sites ? 0 : cd_model_dropout_site_count(m);
    cd_dropout_site *all = calloc((size_t)(o->n_sites + n_side) + 1, sizeof *all);
    if (!all)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    int n = 0;
    for (int i = 0; i < o->n_sites; i++)
        all[n++] = o->sites[i];
    for (int k = 0; k < n_side; k++) {
        cd_dropout_site s = {0};
        cd_status st = cd_model_dropout_site(m, k, &s.name, &s.p, &s.channel, err);
        if (st != CD_OK) {
            free(all);
            return st;
        }
        bool dup = false;
        for (int i = 0; i < o->n_sites; i++)
            dup = dup || (o->sites[i].name && s.name && strcmp(o->sites[i].name, s.name) == 0);
        if (!dup)
            all[n++] = s;
    }
    *out = all;
    *count = n;
    return CD_OK;
}

/* Marks the nodes at or downstream of a site, and the per-node site table. */
static cd_status mark_downstream(cd_mc_session *mc, cd_error *err)
{
    const cd_model *m = &mc->d.m;
    mc->site_of_node = malloc(((size_t)m->n_nodes + 1) * sizeof(int));
    mc->downstream = calloc((size_t)m->n_nodes + 1, sizeof(bool));
    bool *stoch = calloc((size_t)m->n_values + 1, sizeof(bool));
    int ns = mc->d.n_sites;
    mc->site_p = calloc((size_t)ns + 1, sizeof(float));
    mc->site_channel = calloc((size_t)ns + 1, sizeof(bool));
    mc->site_key = calloc((size_t)ns + 1, sizeof(uint64_t));
    if (!mc->site_of_node || !mc->downstream || !stoch || !mc->site_p || !mc->site_channel ||
        !mc->site_key) {
        free(stoch);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int i = 0; i < m->n_nodes; i++)
        mc->site_of_node[i] = -1;
    for (int s = 0; s < ns; s++) {
        mc->site_of_node[mc->d.sites[s].node] = s;
        mc->site_p[s] = mc->d.sites[s].p;
        mc->site_channel[s] = mc->d.sites[s].channel;
        mc->site_key[s] = mc->d.sites[s].key;
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const cd_node *n = &m->nodes[i];
        bool down = mc->site_of_node[i] >= 0;
        for (int k = 0; k < n->n_inputs && !down; k++)
            down = n->inputs[k] >= 0 && stoch[n->inputs[k]];
        mc->downstream[i] = down;
        for (int k = 0; down && k < n->n_outputs; k++)
            if (n->outputs[k] >= 0)
                stoch[n->outputs[k]] = true;
    }
    free(stoch);
    return CD_OK;
}

cd_status cd_mc_session_create(const cd_model *model, const cd_mc_options *opts,
                               cd_mc_session **out, cd_error *err)
{
    if (!out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_mc_session_create: out is NULL");
    *out = NULL;
    cd_mc_options def;
    cd_mc_options_default(&def);
    const cd_mc_options *o = opts ? opts : &def;
    if (!model)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_mc_session_create: model is NULL");
    if (o->samples < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "the number of MC samples must be at least 1 (got %d)", o->samples);
    if (o->n_sites < 0 || (o->n_sites > 0 && !o->sites))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_mc_session_create: bad site list");
    cd_mc_session *mc = calloc(1, sizeof *mc);
    if (!mc)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    mc->orig = model;
    mc->T = o->samples;
    mc->seed = o->seed;
    mc->force_loop = o->force_loop;
    mc->threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (mc->threads < 1)
        mc->threads = 1;
    cd_dropout_site *declared = NULL;
    int n_declared = 0;
    cd_status st = gather_declared(model, o, &declared, &n_declared, err);
    if (st == CD_OK)
        st = mc_derive(model, n_declared, declared, o->ignore_graph_dropout, &mc->d, err);
    free(declared);
    if (st == CD_OK)
        st = mark_downstream(mc, err);
    if (st == CD_OK && mc->T > 1 && mc->d.n_sites == 0)
        st = cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                     "%d MC samples asked but the model has no Dropout node and no site was "
                     "declared: every sample would be the same (declare one, e.g. "
                     "--dropout TENSOR:0.1)", mc->T);
    if (st != CD_OK) {
        cd_mc_session_free(mc);
        return st;
    }
    *out = mc;
    return CD_OK;
}

/* ------------------------------------------------------- per-shape plans */

static cd_status build_full(cd_mc_session *mc, const cd_tensor *const *inputs, cd_error *err)
{
    const cd_model *m = &mc->d.m;
    bool *keep = calloc((size_t)m->n_nodes + 1, sizeof(bool));
    if (!keep)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < m->n_nodes; i++)
        keep[i] = mc->site_of_node[i] >= 0;
    /* The prefix runs a subset of the steps and the suffix reads boundary
     * tensors out of p->vals: both need every activation in its own buffer. */
    cd_plan_options po = {.keep_node = keep, .keep_activations = true};
    cd_status st = cd_plan_build(m, inputs, &po, &mc->full, err);
    free(keep);
    if (st != CD_OK)
        return st;
    cd_plan *p = mc->full;
    mc->all_steps = malloc(((size_t)p->n_steps + 1) * sizeof(int));
    mc->prefix_steps = malloc(((size_t)p->n_steps + 1) * sizeof(int));
    if (!mc->all_steps || !mc->prefix_steps)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    mc->n_all_steps = p->n_steps;
    memcpy(mc->all_steps, p->steps, (size_t)p->n_steps * sizeof(int));
    mc->n_prefix_steps = 0;
    for (int s = 0; s < p->n_steps; s++)
        if (!mc->downstream[p->steps[s]])
            mc->prefix_steps[mc->n_prefix_steps++] = p->steps[s];
    return CD_OK;
}

/* Runs the full plan's steps in list (n of them). */
static cd_status run_steps(cd_mc_session *mc, const int *list, int n,
                           const cd_tensor *const *inputs)
{
    cd_plan *p = mc->full;
    memcpy(p->steps, list, (size_t)n * sizeof(int));
    p->n_steps = n;
    mc->ctx.stochastic = NULL;
    return cd_plan_run(p, inputs, &mc->ctx);
}

/* Values the suffix reads but does not compute, and the suffix's nodes. */
static cd_status build_sub_model(cd_mc_session *mc, cd_error *err)
{
    const cd_model *m = &mc->d.m;
    const cd_plan *full = mc->full;
    cd_model *sub = &mc->sub;
    *sub = *m;
    sub->values = malloc(((size_t)m->n_values + 1) * sizeof *sub->values);
    sub->nodes = malloc(((size_t)m->n_nodes + 1) * sizeof *sub->nodes);
    sub->inputs = malloc(((size_t)m->n_values + 1) * sizeof(int));
    sub->outputs = malloc(((size_t)m->n_outputs + 1) * sizeof(int));
    mc->sub_site_of_node = malloc(((size_t)m->n_nodes + 1) * sizeof(int));
    bool *made = calloc((size_t)m->n_values + 1, sizeof(bool));
    if (!sub->values || !sub->nodes || !sub->inputs || !sub->outputs || !mc->sub_site_of_node ||
        !made) {
        free(made);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    memcpy(sub->values, m->values, (size_t)m->n_values * sizeof *m->values);
    memcpy(sub->outputs, m->outputs, (size_t)m->n_outputs * sizeof(int));
    sub->n_nodes = 0;
    sub->n_inputs = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        if (!mc->downstream[i])
            continue;
        mc->sub_site_of_node[sub->n_nodes] = mc->site_of_node[i];
        sub->nodes[sub->n_nodes++] = m->nodes[i];
        for (int k = 0; k < m->nodes[i].n_outputs; k++)
            if (m->nodes[i].outputs[k] >= 0)
                made[m->nodes[i].outputs[k]] = true;
    }
    bool *seen = calloc((size_t)m->n_values + 1, sizeof(bool));
    if (!seen) {
        free(made);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    /* Every value the suffix needs from outside: node inputs, then graph
     * outputs the prefix computes. */
    for (int i = 0; i <= sub->n_nodes; i++) {
        int cnt = i < sub->n_nodes ? sub->nodes[i].n_inputs : m->n_outputs;
        for (int k = 0; k < cnt; k++) {
            int v = i < sub->n_nodes ? sub->nodes[i].inputs[k] : m->outputs[k];
            if (v < 0 || made[v] || seen[v])
                continue;
            seen[v] = true;
            cd_value *val = &sub->values[v];
            if (full->kind[v] == CD_VALUE_CONST) {
                val->init = &full->vals[v]; /* lent by the full plan */
                continue;
            }
            val->init = NULL;
            val->is_graph_input = true;
            val->dtype = CD_DTYPE_UNDEFINED; /* any shape: it gets the batch of T */
            val->ndim = -1;
            sub->inputs[sub->n_inputs++] = v;
        }
    }
    free(seen);
    free(made);
    return CD_OK;
}

/* Shape templates for the suffix inputs with `batch` copies along axis 0. */
static cd_status make_bound(cd_mc_session *mc, int batch, cd_error *err)
{
    for (int i = 0; i < mc->n_bound; i++)
        cd_tensor_free(mc->bound[i]);
    free(mc->bound);
    mc->n_bound = mc->sub.n_inputs;
    mc->bound = calloc((size_t)mc->n_bound + 1, sizeof *mc->bound);
    if (!mc->bound)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < mc->n_bound; i++) {
        const cd_tensor *src = &mc->full->vals[mc->sub.inputs[i]];
        int64_t dims[CD_MAX_DIMS];
        memcpy(dims, src->dims, sizeof dims);
        if (batch > 1) {
            if (src->ndim < 1 || src->dims[0] != 1)
                return cd_fail(err, CD_ERR_UNSUPPORTED, "boundary tensor '%s' has no batch axis",
                               mc->sub.values[mc->sub.inputs[i]].name);
            dims[0] = batch;
        }
        cd_status st = cd_tensor_create(src->dtype, src->ndim, dims, &mc->bound[i], err);
        if (st != CD_OK)
            return st;
    }
    return CD_OK;
}

/* A batched suffix is valid when every site sees T rows and every output is
 * (T, d1..dk) for a deterministic output (1, d1..dk). */
static bool batched_shapes_ok(const cd_mc_session *mc)
{
    const cd_plan *p = mc->suffix;
    for (int i = 0; i < mc->sub.n_nodes; i++) {
        if (mc->sub_site_of_node[i] < 0)
            continue;
        const cd_tensor *x = &p->vals[mc->sub.nodes[i].inputs[0]];
        if (x->ndim < 1 || x->dims[0] != mc->T)
            return false;
    }
    for (int o = 0; o < mc->sub.n_outputs; o++) {
        const cd_tensor *det = &mc->full->vals[mc->sub.outputs[o]];
        const cd_tensor *got = &p->vals[mc->sub.outputs[o]];
        if (det->ndim < 1 || det->dims[0] != 1 || got->ndim != det->ndim || got->dims[0] != mc->T)
            return false;
        for (int d = 1; d < det->ndim; d++)
            if (got->dims[d] != det->dims[d])
                return false;
    }
    return true;
}

static cd_status build_suffix_plan(cd_mc_session *mc, int batch, cd_error *err)
{
    cd_status st = make_bound(mc, batch, err);
    if (st != CD_OK)
        return st;
    bool *keep = calloc((size_t)mc->sub.n_nodes + 1, sizeof(bool));
    if (!keep)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < mc->sub.n_nodes; i++)
        keep[i] = mc->sub_site_of_node[i] >= 0;
    cd_plan_options po = {.keep_node = keep};
    st = cd_plan_build(&mc->sub, (const cd_tensor *const *)mc->bound, &po, &mc->suffix, err);
    free(keep);
    return st;
}

/* Prefers one batch of T; falls back to batch 1 when the suffix cannot take
 * it (a literal batch-1 Reshape, a site on a weight, ...). */
static cd_status prepare_suffix(cd_mc_session *mc, cd_error *err)
{
    cd_status st = build_sub_model(mc, err);
    if (st != CD_OK)
        return st;
    if (mc->T > 1 && !mc->force_loop) {
        cd_error quiet = {0};
        st = build_suffix_plan(mc, mc->T, &quiet);
        if (st == CD_OK && batched_shapes_ok(mc)) {
            mc->suffix_batch = mc->T;
            return CD_OK;
        }
        cd_plan_free(mc->suffix);
        mc->suffix = NULL;
    }
    mc->suffix_batch = 1;
    return build_suffix_plan(mc, 1, err);
}

static cd_status prepare(cd_mc_session *mc, const cd_tensor *const *inputs, cd_error *err)
{
    if (mc->full && cd_plan_matches(mc->full, inputs))
        return CD_OK;
    reset_shape_state(mc);
    cd_status st = build_full(mc, inputs, err);
    if (st == CD_OK && mc->d.n_sites > 0)
        st = prepare_suffix(mc, err);
    if (st != CD_OK)
        reset_shape_state(mc);
    return st;
}

/* ---------------------------------------------------------------- running */

/* Copies the prefix's boundary values into the suffix inputs, `batch` times. */
static void fill_bound(cd_mc_session *mc)
{
    for (int i = 0; i < mc->n_bound; i++) {
        const cd_tensor *src = &mc->full->vals[mc->sub.inputs[i]];
        size_t bytes = cd_tensor_nbytes(src);
        char *dst = mc->bound[i]->data;
        for (int b = 0; b < mc->suffix_batch; b++)
            memcpy(dst + (size_t)b * bytes, src->data, bytes);
    }
}

static cd_stochastic suffix_stochastic(const cd_mc_session *mc, uint64_t offset, bool rows)
{
    cd_stochastic s = {.seed = mc->seed,
                       .sample_offset = offset,
                       .rows_are_samples = rows,
                       .nodes = mc->sub.nodes,
                       .n_nodes = mc->sub.n_nodes,
                       .site_of_node = mc->sub_site_of_node,
                       .site_p = mc->site_p,
                       .site_channel = mc->site_channel,
                       .site_key = mc->site_key};
    return s;
}

/* Copies output value v of plan p (T or 1 samples) into dst at sample t0. */
static void copy_samples(const cd_plan *p, int v, float *dst, size_t per_sample, int t0)
{
    const cd_tensor *t = &p->vals[v];
    size_t n = cd_tensor_numel(t);
    memcpy(dst + (size_t)t0 * per_sample, t->data, n * sizeof(float));
}

/* One example (batch-1 inputs): T samples of each chosen output into dst[j]. */
static cd_status sample_row(cd_mc_session *mc, const cd_tensor *const *inputs, int n_outputs,
                            const int *outs, float **dst, const size_t *per, cd_error *err)
{
    mc->ctx.err = err;
    mc->ctx.threads = mc->threads;
    const cd_model *m = &mc->d.m;
    if (mc->d.n_sites == 0) { /* deterministic: every sample is the same */
        cd_status st = run_steps(mc, mc->all_steps, mc->n_all_steps, inputs);
        for (int j = 0; st == CD_OK && j < n_outputs; j++)
            for (int t = 0; t < mc->T; t++)
                copy_samples(mc->full, m->outputs[outs[j]], dst[j], per[j], t);
        return st;
    }
    cd_status st = run_steps(mc, mc->prefix_steps, mc->n_prefix_steps, inputs);
    if (st != CD_OK)
        return st;
    fill_bound(mc);
    bool batched = mc->suffix_batch > 1;
    int runs = batched ? 1 : mc->T;
    for (int r = 0; r < runs && st == CD_OK; r++) {
        cd_stochastic s = suffix_stochastic(mc, mc->sample_base + (uint64_t)r, batched);
        mc->ctx.stochastic = &s;
        st = cd_plan_run(mc->suffix, (const cd_tensor *const *)mc->bound, &mc->ctx);
        mc->ctx.stochastic = NULL;
        for (int j = 0; st == CD_OK && j < n_outputs; j++)
            copy_samples(mc->suffix, m->outputs[outs[j]], dst[j], per[j], r);
    }
    return st;
}

/* Views row r of each input (leading dim 1), borrowing the caller's data. */
static void row_views(int n_inputs, const cd_tensor *const *inputs, int64_t r, cd_tensor *views,
                      const cd_tensor **ptrs)
{
    for (int i = 0; i < n_inputs; i++) {
        views[i] = *inputs[i];
        views[i].dims[0] = 1;
        size_t bytes = cd_tensor_nbytes(&views[i]);
        views[i].data = (char *)inputs[i]->data + (size_t)r * bytes;
        views[i].owns_data = false;
        views[i].capacity = bytes;
        ptrs[i] = &views[i];
    }
}

static cd_status check_inputs(const cd_mc_session *mc, int n_inputs,
                              const cd_tensor *const *inputs, int64_t *rows, cd_error *err)
{
    if (n_inputs != mc->orig->n_inputs)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has %d input(s), %d given",
                       mc->orig->n_inputs, n_inputs);
    *rows = -1;
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs || !inputs[i] || inputs[i]->ndim < 1 || !inputs[i]->data)
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                           "input %d is missing or has no batch axis", i);
        if (*rows >= 0 && inputs[i]->dims[0] != *rows)
            return cd_fail(err, CD_ERR_SHAPE, "inputs disagree in their number of rows");
        *rows = inputs[i]->dims[0];
    }
    if (*rows < 0)
        *rows = 1;
    return CD_OK;
}

/* Allocates (N, T, per-sample shape) outputs after the first row ran. */
static cd_status alloc_samples(cd_mc_session *mc, int64_t rows, int n_outputs, const int *outs,
                               cd_tensor **samples, size_t *per, cd_error *err)
{
    const cd_model *m = &mc->d.m;
    for (int j = 0; j < n_outputs; j++) {
        const cd_tensor *det = &mc->full->vals[m->outputs[outs[j]]];
        if (det->dtype != CD_FLOAT32)
            return cd_fail(err, CD_ERR_UNSUPPORTED, "output '%s' is %s; MC sampling needs float32",
                           m->values[m->outputs[outs[j]]].name, cd_dtype_name(det->dtype));
        int64_t dims[CD_MAX_DIMS + 1] = {rows, mc->T};
        int skip = det->ndim >= 1 && det->dims[0] == 1 ? 1 : 0;
        int nd = 2 + det->ndim - skip;
        if (nd > CD_MAX_DIMS)
            return cd_fail(err, CD_ERR_UNSUPPORTED, "output '%s' has too many dimensions",
                           m->values[m->outputs[outs[j]]].name);
        for (int d = skip; d < det->ndim; d++)
            dims[2 + d - skip] = det->dims[d];
        per[j] = cd_tensor_numel(det);
        cd_status st = cd_tensor_create(CD_FLOAT32, nd, dims, &samples[j], err);
        if (st != CD_OK)
            return st;
    }
    return CD_OK;
}

static cd_status resolve_outputs(const cd_mc_session *mc, int n_outputs, const int *idx,
                                 int *outs, cd_error *err)
{
    for (int j = 0; j < n_outputs; j++) {
        outs[j] = idx ? idx[j] : j;
        if (outs[j] < 0 || outs[j] >= mc->orig->n_outputs)
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "output index %d out of range (%d outputs)",
                           outs[j], mc->orig->n_outputs);
    }
    return CD_OK;
}

static cd_status sample_all(cd_mc_session *mc, int n_inputs, const cd_tensor *const *inputs,
                            int64_t rows, int n_outputs, const int *outs, cd_tensor **samples,
                            cd_tensor *views, const cd_tensor **ptrs, float **dst, size_t *per,
                            cd_error *err)
{
    cd_status st = CD_OK;
    for (int64_t r = 0; r < rows && st == CD_OK; r++) {
        row_views(n_inputs, inputs, r, views, ptrs);
        st = prepare(mc, ptrs, err);
        if (st == CD_OK && r == 0)
            st = alloc_samples(mc, rows, n_outputs, outs, samples, per, err);
        for (int j = 0; st == CD_OK && j < n_outputs; j++)
            dst[j] = (float *)samples[j]->data + (size_t)r * (size_t)mc->T * per[j];
        if (st == CD_OK)
            st = sample_row(mc, ptrs, n_outputs, outs, dst, per, err);
    }
    return st;
}

cd_status cd_mc_sample(cd_mc_session *mc, int n_inputs, const cd_tensor *const *inputs,
                       int n_outputs, const int *output_indices, cd_tensor **samples,
                       cd_error *err)
{
    if (!mc || !samples || n_outputs < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_mc_sample: invalid arguments");
    for (int j = 0; j < n_outputs; j++)
        samples[j] = NULL;
    int64_t rows = 0;
    cd_status st = check_inputs(mc, n_inputs, inputs, &rows, err);
    if (st != CD_OK)
        return st;
    size_t n_in = (size_t)n_inputs + 1, n_out = (size_t)n_outputs + 1;
    cd_tensor *views = calloc(n_in, sizeof *views);
    const cd_tensor **ptrs = calloc(n_in, sizeof *ptrs);
    int *outs = calloc(n_out, sizeof *outs);
    float **dst = calloc(n_out, sizeof *dst);
    size_t *per = calloc(n_out, sizeof *per);
    if (!views || !ptrs || !outs || !dst || !per)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK)
        st = resolve_outputs(mc, n_outputs, output_indices, outs, err);
    if (st == CD_OK)
        st = sample_all(mc, n_inputs, inputs, rows, n_outputs, outs, samples, views, ptrs, dst,
                        per, err);
    if (st == CD_OK) {
        mc->stats.prefix_steps = mc->d.n_sites ? mc->n_prefix_steps : mc->n_all_steps;
        mc->stats.suffix_steps = mc->suffix ? mc->suffix->n_steps : 0;
        mc->stats.batched = mc->suffix_batch > 1;
    }
    free(views);
    free(ptrs);
    free(outs);
    free(dst);
    free(per);
    if (st != CD_OK)
        for (int j = 0; j < n_outputs; j++) {
            cd_tensor_free(samples[j]);
            samples[j] = NULL;
        }
    return st;
}
