/* Gradients of a scalar objective through a whole model: the explainer keeps
 * execution plans for the shapes it sees, runs the forward pass, seeds the
 * objective's gradient on the output and runs the plan's reverse pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/graph.h"
#include "core/parallel.h"
#include "core/plan64.h"
#include "explain_internal.h"

void cd_objective_default(cd_objective *o)
{
    memset(o, 0, sizeof *o);
    o->kind = CD_OBJECTIVE_LOGIT;
    o->target = -1;
}

cd_status cd_explainer_create(const cd_model *model, const cd_explain_options *opts,
                              cd_explainer **out, cd_error *err)
{
    if (!out || !model)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_explainer_create: NULL argument");
    *out = NULL;
    if (model->n_inputs != 1)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "explanations need a model with exactly one input (this one has %d)",
                       model->n_inputs);
    cd_dtype dt = model->values[model->inputs[0]].dtype;
    if (dt != CD_FLOAT32 && dt != CD_DTYPE_UNDEFINED)
        return cd_fail(err, CD_ERR_UNSUPPORTED, "input '%s' is %s; gradients need float32",
                       model->values[model->inputs[0]].name, cd_dtype_name(dt));
    cd_explainer *e = calloc(1, sizeof *e);
    if (!e)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    e->model = model;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    e->threads = opts && opts->threads > 0 ? opts->threads : (cores > 0 ? (int)cores : 1);
    e->max_batch = opts && opts->max_batch > 0 ? opts->max_batch : 8;
    e->force_loop = opts && opts->force_loop;
    e->float64 = opts && opts->float64;
    *out = e;
    return CD_OK;
}

void cd_explainer_free(cd_explainer *e)
{
    if (!e)
        return;
    for (int i = 0; i < EX_PLAN_CACHE; i++)
        cd_plan_free(e->plans[i]);
    cd_ctx_release(&e->ctx);
    free(e->keep_node);
    free(e);
}

cd_status ex_set_stochastic(cd_explainer *e, const cd_stochastic *s, cd_error *err)
{
    /* Sites must survive constant folding and fusion, as in the MC engine. */
    bool *keep = calloc((size_t)s->n_nodes + 1, sizeof *keep);
    if (!keep)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < s->n_nodes; i++)
        keep[i] = s->site_of_node[i] >= 0;
    free(e->keep_node);
    e->keep_node = keep;
    e->stoch = *s;
    e->has_stoch = true;
    return CD_OK;
}

void ex_select_samples(cd_explainer *e, uint64_t base, bool rows_are_samples)
{
    e->sample_base = base;
    e->stoch.rows_are_samples = rows_are_samples;
    e->stoch.sample_offset = base;
}

/* ------------------------------------------------------------ helpers */

uint64_t ex_rng_next(ex_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double ex_rng_uniform(ex_rng *r) { return (double)(ex_rng_next(r) >> 11) * 0x1.0p-53; }

double ex_rng_normal(ex_rng *r)
{
    /* Box-Muller; 1 - u keeps the log argument in (0, 1]. */
    double u = 1.0 - ex_rng_uniform(r), v = ex_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

size_t ex_row_numel(const cd_tensor *x)
{
    size_t n = 1;
    for (int d = 1; d < x->ndim; d++)
        n *= (size_t)x->dims[d];
    return n;
}

cd_status ex_batch_like(const cd_tensor *x, int64_t rows, cd_tensor **out, cd_error *err)
{
    int64_t dims[CD_MAX_DIMS];
    memcpy(dims, x->dims, sizeof dims);
    dims[0] = rows;
    return cd_tensor_create(CD_FLOAT32, x->ndim, dims, out, err);
}

/* A borrowed view of rows [start, start + rows) of x. */
static cd_tensor row_view(const cd_tensor *x, int64_t start, int64_t rows)
{
    cd_tensor v = *x;
    v.dims[0] = rows;
    v.data = (char *)x->data + (size_t)start * ex_row_numel(x) * sizeof(float);
    v.capacity = (size_t)rows * ex_row_numel(x) * sizeof(float);
    v.owns_data = false;
    return v;
}

cd_status ex_get_plan(cd_explainer *e, const cd_tensor *x, bool tape, cd_plan **out,
                      cd_error *err)
{
    const cd_tensor *in[1] = {x};
    tape = tape || e->float64; /* float64 evaluation runs node by node */
    for (int i = 0; i < EX_PLAN_CACHE; i++)
        if (e->plans[i] && e->plans[i]->keep_activations == tape &&
            cd_plan_matches(e->plans[i], in)) {
            *out = e->plans[i];
            return CD_OK;
        }
    /* Gradients need the tape (every activation kept); score-only passes
     * (occlusion, RISE, deletion/insertion) use the fast fused plan. */
    cd_plan_options po = {.keep_activations = tape, .keep_node = e->keep_node};
    cd_plan *p = NULL;
    cd_status st = cd_plan_build(e->model, in, &po, &p, err);
    if (st != CD_OK)
        return st;
    int slot = e->next_slot;
    e->next_slot = (slot + 1) % EX_PLAN_CACHE;
    cd_plan_free(e->plans[slot]);
    e->plans[slot] = p;
    *out = p;
    return CD_OK;
}

/* Lists up to 12 of the last runtime tensors (4-D ones when the model has
 * any) into buf, for "unknown name" messages. */
static void list_candidates(const cd_plan *p, char *buf, size_t size)
{
    const cd_model *m = p->model;
    int want_nd = 0;
    for (int v = 0; v < p->n_values; v++)
        if (p->kind[v] == CD_VALUE_RUNTIME && p->vals[v].ndim == 4)
            want_nd = 4;
    int ids[12], n = 0, total = 0;
    for (int s = p->n_steps - 1; s >= 0; s--) {
        const cd_node *nd = &m->nodes[p->steps[s]];
        for (int j = 0; j < nd->n_outputs; j++) {
            int v = nd->outputs[j];
            if (v < 0 || (want_nd && p->vals[v].ndim != want_nd))
                continue;
            total++;
            if (n < 12)
                ids[n++] = v;
        }
    }
    size_t len = 0;
    buf[0] = '\0';
    for (int i = n - 1; i >= 0 && len < size; i--)
        len += (size_t)snprintf(buf + len, size - len, "%s'%s'", i == n - 1 ? "" : ", ",
                                m->values[ids[i]].name);
    if (total > n && len < size)
        snprintf(buf + len, size - len, " (the last %d of %d%s)", n, total,
                 want_nd ? " 4-D tensors" : "");
}

static cd_status resolve_tensor(const cd_plan *p, const char *name, int *id, cd_error *err)
{
    const cd_model *m = p->model;
    if (!name) {
        *id = m->inputs[0];
        return CD_OK;
    }
    int v = cd_model_find_value(m, name);
    if (v < 0 || p->kind[v] == CD_VALUE_UNUSED) {
        char cands[400];
        list_candidates(p, cands, sizeof cands);
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has no tensor named '%s'; candidates: %s",
                       name, cands);
    }
    if (p->kind[v] == CD_VALUE_CONST || p->vals[v].dtype != CD_FLOAT32)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "tensor '%s' is %s and does not depend on the input; no gradient",
                       name, p->kind[v] == CD_VALUE_CONST ? "a constant" : "not float32");
    *id = v;
    return CD_OK;
}

static int objective_value(const cd_model *m, const cd_objective *obj, cd_error *err)
{
    int v = m->outputs[0];
    if (obj->output) {
        v = cd_model_find_value(m, obj->output);
        if (v < 0) {
            cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has no tensor named '%s' (outputs: '%s'%s)",
                    obj->output, m->values[m->outputs[0]].name, m->n_outputs > 1 ? ", ..." : "");
            return -1;
        }
    }
    /* A model that ends in (Log)Softmax: its input is the pre-softmax score,
     * and the probability objectives re-apply the softmax to it. */
    int prod = m->values[v].producer;
    if (obj->kind != CD_OBJECTIVE_SUM && prod >= 0 &&
        (m->nodes[prod].op == CD_OP_SOFTMAX || m->nodes[prod].op == CD_OP_LOG_SOFTMAX))
        v = m->nodes[prod].inputs[0];
    return v;
}

/* ------------------------------------------------------------ objective */

/* Marks which spatial positions of an output belong to the region. */
cd_status ex_region_mask(const cd_objective *obj, const cd_tensor *y, size_t s, uint8_t **mask,
                         cd_error *err)
{
    *mask = malloc(s ? s : 1);
    if (!*mask)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    int sp = y->ndim - 2;
    if (obj->region_ndim > 0 && obj->region_ndim != sp) {
        free(*mask);
        *mask = NULL;
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "region has %d axes but the output has %d spatial axes", obj->region_ndim,
                       sp < 0 ? 0 : sp);
    }
    for (size_t j = 0; j < s; j++) {
        bool in = true;
        size_t rem = j;
        for (int d = sp - 1; d >= 0 && obj->region_ndim > 0; d--) {
            int64_t c = (int64_t)(rem % (size_t)y->dims[2 + d]);
            rem /= (size_t)y->dims[2 + d];
            in = in && c >= obj->region_lo[d] && c < obj->region_hi[d];
        }
        (*mask)[j] = in;
    }
    return CD_OK;
}

/* Element i of a row held as float32 (z32) or float64 (z64). */
static double row_at(const float *z32, const double *z64, size_t i)
{
    return z64 ? z64[i] : (double)z32[i];
}

/* Scores one row (k classes x s positions, float32 z32 or float64 z64) and
 * writes d(score)/dz to g (zeroed by the caller; may be NULL). */
static cd_status score_row(const cd_objective *obj, const float *z32, const double *z64,
                           int64_t k, size_t s, const uint8_t *mask, const char *oname,
                           int *target, double *score, double *g, double *tmp, cd_error *err)
{
    if (obj->kind == CD_OBJECTIVE_SUM) {
        double acc = 0;
        for (int64_t c = 0; c < k; c++)
            for (size_t j = 0; j < s; j++)
                if (mask[j]) {
                    acc += row_at(z32, z64, (size_t)c * s + j);
                    if (g)
                        g[(size_t)c * s + j] = 1.0;
                }
        *score = acc;
        return CD_OK;
    }
    for (int64_t c = 0; c < k; c++) {
        double acc = 0;
        for (size_t j = 0; j < s; j++)
            if (mask[j])
                acc += row_at(z32, z64, (size_t)c * s + j);
        tmp[c] = acc;
    }
    int t = *target;
    if (t < 0) {
        t = 0;
        for (int64_t c = 1; c < k; c++)
            if (tmp[c] > tmp[t])
                t = (int)c;
        *target = t;
    }
    if (t >= k && obj->kind != CD_OBJECTIVE_ENTROPY)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "target class %d is outside the %lld classes of output '%s'", t,
                       (long long)k, oname);
    if (obj->kind == CD_OBJECTIVE_LOGIT) {
        *score = tmp[t];
        for (size_t j = 0; g && j < s; j++)
            g[(size_t)t * s + j] = mask[j] ? 1.0 : 0.0;
        return CD_OK;
    }
    if (s != 1)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "probability/entropy objectives need an (N, classes) output; '%s' has "
                       "spatial axes", oname);
    double mx = tmp[0], sum = 0, h = 0;
    for (int64_t c = 1; c < k; c++)
        mx = fmax(mx, tmp[c]);
    for (int64_t c = 0; c < k; c++)
        sum += exp(tmp[c] - mx);
    for (int64_t c = 0; c < k; c++) {
        tmp[c] = exp(tmp[c] - mx) / sum; /* now probabilities */
        if (tmp[c] > 0)
            h -= tmp[c] * log(tmp[c]);
    }
    double pt = t < k ? tmp[t] : 0;
    for (int64_t c = 0; c < k; c++) {
        double d = 0, delta = c == t ? 1.0 : 0.0;
        if (obj->kind == CD_OBJECTIVE_PROB)
            d = pt * (delta - tmp[c]);
        else if (obj->kind == CD_OBJECTIVE_LOG_PROB)
            d = delta - tmp[c];
        else
            d = tmp[c] > 0 ? -tmp[c] * (log(tmp[c]) + h) : 0;
        if (g)
            g[c] = d;
    }
    if (obj->kind == CD_OBJECTIVE_PROB)
        *score = pt;
    else if (obj->kind == CD_OBJECTIVE_LOG_PROB)
        *score = pt > 0 ? log(pt) : -INFINITY;
    else
        *score = h;
    return CD_OK;
}

/* Scores every row of y (y64: the same values in float64, or NULL); seed
 * (y's shape, float32 or float64, may be NULL) receives d/dy.
 * *batch_mismatch is set when y's first axis is not the batch. */
static cd_status eval_objective(const cd_objective *obj, const cd_tensor *y,
                                const cd_tensor *y64, const char *oname, int64_t n,
                                int *targets, double *scores, cd_tensor *seed,
                                bool *batch_mismatch, cd_error *err)
{
    char sh[96];
    if (y->dtype != CD_FLOAT32)
        return cd_fail(err, CD_ERR_UNSUPPORTED, "output '%s' is %s, not float32", oname,
                       cd_dtype_name(y->dtype));
    if (y->ndim < 1 || y->dims[0] != n) {
        *batch_mismatch = true;
        return cd_fail(err, CD_ERR_SHAPE, "output '%s' has shape %s; expected batch %lld first",
                       oname, cd_shape_str(y->ndim, y->dims, sh, sizeof sh), (long long)n);
    }
    int64_t k = y->ndim >= 2 ? y->dims[1] : 1;
    size_t s = 1;
    for (int d = 2; d < y->ndim; d++)
        s *= (size_t)y->dims[d];
    uint8_t *mask = NULL;
    size_t row = (size_t)k * s;
    double *tmp = malloc(((size_t)k + 1) * sizeof *tmp);
    double *g = seed ? malloc((row ? row : 1) * sizeof *g) : NULL;
    cd_status st = tmp && (g || !seed) ? ex_region_mask(obj, y, s, &mask, err)
                                       : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t b = 0; st == CD_OK && b < n; b++) {
        size_t off = (size_t)b * row;
        if (g)
            memset(g, 0, row * sizeof *g);
        st = score_row(obj, y64 ? NULL : cd_cf32(y) + off, y64 ? cd_cf64(y64) + off : NULL, k,
                       s, mask, oname, &targets[b], &scores[b], g, tmp, err);
        for (size_t i = 0; st == CD_OK && g && i < row; i++) {
            if (seed->dtype == CD_FLOAT64)
                cd_f64(seed)[off + i] = g[i];
            else
                cd_f32(seed)[off + i] = (float)g[i];
        }
    }
    free(mask);
    free(tmp);
    free(g);
    return st;
}

/* ------------------------------------------------------------ passes */

typedef struct pass_io {
    const cd_objective *obj;
    int n_wrt;
    const char *const *wrt;
    cd_tensor **grads;  /* n_wrt slots or NULL */
    cd_tensor **values; /* n_wrt slots or NULL */
    double *scores;
    int *targets;
    ex_seed_fn seed_fn; /* custom objective (scores/targets unused) */
    void *seed_ctx;
    int64_t start;      /* first row of this pass in the caller's tensor */
    /* Linear prefix (ex_gradient_prefix): the plan's first step, Conv node
     * prefix_node, is skipped; prefix_fill writes its output rows instead. */
    bool prefix;
    int prefix_node;
    ex_prefix_fill_fn prefix_fill;
    void *prefix_ctx;
} pass_io;

/* One forward (and backward when grads) pass over x as one batch, on plan
 * p (the steps already shifted past a linear prefix when io->prefix). */
static cd_status pass_body(cd_explainer *e, cd_plan *p, const cd_tensor *x, const pass_io *io,
                           bool *batch_problem, cd_error *err)
{
    const cd_model *m = e->model;
    int vo = objective_value(m, io->obj, err);
    if (vo < 0)
        return CD_ERR_INVALID_ARGUMENT;
    cd_status st = CD_OK;
    int ids[16];
    if (io->n_wrt > 16)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "at most 16 tensors per gradient call");
    for (int i = 0; i < io->n_wrt && st == CD_OK; i++)
        st = resolve_tensor(p, io->wrt ? io->wrt[i] : NULL, &ids[i], err);
    if (st != CD_OK)
        return st;
    e->ctx.err = err;
    e->ctx.threads = e->threads;
    e->ctx.stochastic = e->has_stoch ? &e->stoch : NULL;
    if (e->has_stoch && e->stoch.rows_are_samples)
        e->stoch.sample_offset = e->sample_base + (uint64_t)io->start;
    const cd_tensor *in[1] = {x};
    st = e->float64 ? cd_plan_run64(p, in, &e->ctx) : cd_plan_run(p, in, &e->ctx);
    if (st != CD_OK)
        return st;
    if (p->kind[vo] == CD_VALUE_UNUSED)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "tensor '%s' is not computed",
                       m->values[vo].name);
    const cd_tensor *y = &p->vals[vo];
    /* float64 mode: the objective and its seed from the float64 output. A
     * custom seed function sees the output rounded to float32. */
    const cd_tensor *y64 = e->float64 && !io->seed_fn ? cd_plan_value64(p, vo) : NULL;
    cd_tensor *seed = NULL;
    if (io->grads && (st = cd_tensor_create(y64 ? CD_FLOAT64 : CD_FLOAT32, y->ndim, y->dims,
                                            &seed, err)) != CD_OK)
        return st;
    if (io->seed_fn) {
        if (y->dtype != CD_FLOAT32 || y->ndim < 1 || y->dims[0] != x->dims[0]) {
            *batch_problem = true;
            st = cd_fail(err, CD_ERR_SHAPE, "output '%s' has no batch axis", m->values[vo].name);
        } else if (seed) {
            st = io->seed_fn(io->seed_ctx, y, io->start, seed, err);
        }
    } else {
        st = eval_objective(io->obj, y, y64, m->values[vo].name, x->dims[0], io->targets,
                            io->scores, seed, batch_problem, err);
    }
    if (st == CD_OK && io->values)
        for (int i = 0; i < io->n_wrt && st == CD_OK; i++)
            st = cd_tensor_clone(&p->vals[ids[i]], &io->values[i], err);
    if (st == CD_OK && io->grads && e->float64) {
        const cd_tensor *seeds[1] = {seed};
        cd_tensor *g64[16] = {0};
        st = cd_plan_backward64(p, 1, &vo, seeds, io->n_wrt, ids, g64, &e->ctx);
        for (int i = 0; i < io->n_wrt; i++) {
            io->grads[i] = NULL;
            if (st == CD_OK)
                st = cd_tensor_narrow(g64[i], &io->grads[i], err);
            cd_tensor_free(g64[i]);
        }
    } else if (st == CD_OK && io->grads) {
        const cd_tensor *seeds[1] = {seed};
        st = cd_plan_backward(p, 1, &vo, seeds, io->n_wrt, ids, io->grads, &e->ctx);
    }
    cd_tensor_free(seed);
    return st;
}

static cd_status one_pass(cd_explainer *e, const cd_tensor *x, const pass_io *io,
                          bool *batch_problem, cd_error *err)
{
    const cd_model *m = e->model;
    int vo = objective_value(m, io->obj, err);
    if (vo < 0)
        return CD_ERR_INVALID_ARGUMENT;
    /* Gradients and intermediate values (a pre-softmax score included) need
     * the plan that keeps every activation. */
    bool tape = io->grads || io->values || !m->values[vo].is_graph_output || io->prefix ||
                e->float64;
    cd_plan *p = NULL;
    cd_status st = ex_get_plan(e, x, tape, &p, err);
    if (st != CD_OK) {
        *batch_problem = true;
        return st;
    }
    if (!io->prefix)
        return pass_body(e, p, x, io, batch_problem, err);
    /* The prefix step's output rows come from prefix_fill; the steps stay
     * shifted past it through the backward pass too, so the reverse pass
     * stops at that output. */
    if (p->n_steps < 2 || p->steps[0] != io->prefix_node)
        return cd_fail(err, CD_ERR_INTERNAL, "linear prefix: the plan does not start with it");
    cd_tensor *z = &p->vals[m->nodes[io->prefix_node].outputs[0]];
    size_t rn = ex_row_numel(z);
    for (int64_t r = 0; r < x->dims[0]; r++)
        io->prefix_fill(io->prefix_ctx, io->start + r, cd_f32(z) + (size_t)r * rn, rn);
    p->steps++;
    p->n_steps--;
    st = pass_body(e, p, x, io, batch_problem, err);
    p->steps--;
    p->n_steps++;
    return st;
}

/* Copies a chunk's per-row result into the full-batch tensor *dst (created
 * on the first chunk). */
static cd_status gather_rows(cd_tensor **dst, cd_tensor *part, int64_t start, int64_t rows,
                             int64_t n, const char *name, cd_error *err)
{
    if (part->ndim < 1 || part->dims[0] != rows)
        return cd_fail(err, CD_ERR_SHAPE,
                       "tensor '%s' has no batch axis, so batches cannot be split; give at "
                       "most max_batch rows", name ? name : "input");
    if (!*dst) {
        cd_status st = ex_batch_like(part, n, dst, err);
        if (st != CD_OK)
            return st;
        (*dst)->dtype = part->dtype;
    }
    size_t rn = ex_row_numel(part);
    memcpy(cd_f32(*dst) + (size_t)start * rn, part->data, (size_t)rows * rn * sizeof(float));
    return CD_OK;
}

/* Runs x in chunks of max_batch rows (one row at a time once a batched plan
 * has been refused) and assembles per-row results. */
static cd_status run_rows(cd_explainer *e, const cd_tensor *x, const pass_io *io, cd_error *err)
{
    int64_t n = x->dims[0];
    for (int i = 0; i < io->n_wrt; i++) {
        if (io->grads)
            io->grads[i] = NULL;
        if (io->values)
            io->values[i] = NULL;
    }
    cd_tensor *g[16] = {0}, *v[16] = {0};
    pass_io sub = *io;
    sub.grads = io->grads ? g : NULL;
    sub.values = io->values ? v : NULL;
    cd_status st = CD_OK;
    int64_t start = 0;
    cd_error over = {0}; /* a batched plan refused for its size (CD_ERR_LIMIT) */
    while (st == CD_OK && start < n) {
        int64_t chunk = e->force_loop || e->batch_refused ? 1 : e->max_batch;
        int64_t rows = n - start < chunk ? n - start : chunk;
        cd_tensor view = row_view(x, start, rows);
        sub.scores = io->scores + start;
        sub.targets = io->targets + start;
        sub.start = start;
        bool batch_problem = false;
        st = one_pass(e, &view, &sub, &batch_problem, err);
        if (st != CD_OK && batch_problem && rows > 1) {
            e->batch_refused = true; /* e.g. a Reshape to a constant batch of 1 */
            if (st == CD_ERR_LIMIT && err)
                over = *err; /* one row at a time may fit */
            st = CD_OK;
            continue;
        }
        /* A model that cannot take one row either: the size was the problem. */
        if (st != CD_OK && batch_problem && over.code == CD_ERR_LIMIT && err) {
            *err = over;
            st = over.code;
        }
        for (int i = 0; st == CD_OK && i < io->n_wrt; i++) {
            const char *nm = io->wrt ? io->wrt[i] : NULL;
            if (rows == n) { /* single chunk: hand the tensors over */
                if (io->grads)
                    io->grads[i] = g[i], g[i] = NULL;
                if (io->values)
                    io->values[i] = v[i], v[i] = NULL;
                continue;
            }
            if (io->grads)
                st = gather_rows(&io->grads[i], g[i], start, rows, n, nm, err);
            if (st == CD_OK && io->values)
                st = gather_rows(&io->values[i], v[i], start, rows, n, nm, err);
        }
        for (int i = 0; i < io->n_wrt; i++) {
            cd_tensor_free(g[i]);
            cd_tensor_free(v[i]);
            g[i] = v[i] = NULL;
        }
        start += rows;
    }
    if (st != CD_OK)
        for (int i = 0; i < io->n_wrt; i++) {
            if (io->grads) {
                cd_tensor_free(io->grads[i]);
                io->grads[i] = NULL;
            }
            if (io->values) {
                cd_tensor_free(io->values[i]);
                io->values[i] = NULL;
            }
        }
    return st;
}

static cd_status check_x(const cd_explainer *e, const cd_tensor *x, cd_error *err)
{
    if (!e || !x)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "explain: NULL explainer or input");
    if (x->dtype != CD_FLOAT32 || x->ndim < 1 || x->dims[0] < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "explain: the input must be a float32 tensor with a batch axis");
    return CD_OK;
}

static cd_status with_targets(cd_explainer *e, const cd_tensor *x, pass_io *io, int *targets,
                              double *scores, cd_error *err)
{
    int64_t n = x->dims[0];
    int *t = malloc((size_t)n * sizeof *t);
    double *s = malloc((size_t)n * sizeof *s);
    if (!t || !s) {
        free(t);
        free(s);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (int64_t b = 0; b < n; b++)
        t[b] = io->obj->target;
    io->targets = t;
    io->scores = s;
    cd_status st = run_rows(e, x, io, err);
    if (st == CD_OK && targets)
        memcpy(targets, t, (size_t)n * sizeof *t);
    if (st == CD_OK && scores)
        memcpy(scores, s, (size_t)n * sizeof *s);
    free(t);
    free(s);
    return st;
}

cd_status cd_explain_scores(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                            double *scores, int *targets, cd_error *err)
{
    cd_status st = check_x(e, x, err);
    if (st != CD_OK)
        return st;
    cd_objective def;
    cd_objective_default(&def);
    pass_io io = {.obj = obj ? obj : &def};
    return with_targets(e, x, &io, targets, scores, err);
}

cd_status ex_scores(cd_explainer *e, const cd_tensor *x, const cd_objective *obj, double *scores,
                    cd_error *err)
{
    return cd_explain_scores(e, x, obj, scores, NULL, err);
}

cd_status cd_explain_gradient(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                              int n_wrt, const char *const *wrt, cd_tensor **grads,
                              cd_tensor **values, double *scores, cd_error *err)
{
    cd_status st = check_x(e, x, err);
    if (st != CD_OK)
        return st;
    if (n_wrt < 1 || n_wrt > 16 || !grads)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "cd_explain_gradient: between 1 and 16 tensors, and grads non-NULL");
    cd_objective def;
    cd_objective_default(&def);
    pass_io io = {.obj = obj ? obj : &def, .n_wrt = n_wrt, .wrt = wrt, .grads = grads,
                  .values = values};
    return with_targets(e, x, &io, NULL, scores, err);
}

cd_status ex_gradient_seeded(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                             ex_seed_fn fn, void *ctx, cd_tensor **grad, cd_error *err)
{
    cd_status st = check_x(e, x, err);
    if (st != CD_OK)
        return st;
    pass_io io = {.obj = obj, .n_wrt = 1, .grads = grad, .seed_fn = fn, .seed_ctx = ctx};
    return with_targets(e, x, &io, NULL, NULL, err);
}

cd_status ex_forward_value(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                           cd_tensor **y, cd_error *err)
{
    cd_status st = check_x(e, x, err);
    if (st != CD_OK)
        return st;
    int vo = objective_value(e->model, obj, err);
    if (vo < 0)
        return CD_ERR_INVALID_ARGUMENT;
    const char *name[1] = {e->model->values[vo].name};
    /* Any objective fills the scores; the value is what the caller wants. */
    cd_objective sum = *obj;
    sum.kind = CD_OBJECTIVE_SUM;
    sum.region_ndim = 0;
    pass_io io = {.obj = &sum, .n_wrt = 1, .wrt = name, .values = y};
    return with_targets(e, x, &io, NULL, NULL, err);
}

int ex_linear_prefix(cd_explainer *e, const cd_tensor *x, const cd_objective *obj, cd_error *err)
{
    const cd_model *m = e->model;
    cd_plan *p = NULL;
    if (e->float64 || e->has_stoch || e->force_loop || e->batch_refused ||
        check_x(e, x, err) != CD_OK ||
        ex_get_plan(e, x, true, &p, err) != CD_OK || p->n_steps < 2)
        return -1; /* a refused plan is reported again by the ordinary path */
    int first = p->steps[0], in = m->inputs[0];
    const cd_node *n = &m->nodes[first];
    if (n->op != CD_OP_CONV || n->n_outputs != 1 || n->inputs[0] != in ||
        m->values[n->outputs[0]].is_graph_output || objective_value(m, obj, err) == n->outputs[0])
        return -1;
    for (int i = 1; i < n->n_inputs; i++)
        if (n->inputs[i] >= 0 && p->kind[n->inputs[i]] != CD_VALUE_CONST)
            return -1;
    for (int s = 1; s < p->n_steps; s++) {
        const cd_node *o = &m->nodes[p->steps[s]];
        for (int i = 0; i < o->n_inputs; i++)
            if (o->inputs[i] == in)
                return -1;
    }
    return first;
}

cd_status ex_gradient_prefix(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                             int node, ex_prefix_fill_fn fill, void *ctx, cd_tensor **gz,
                             cd_error *err)
{
    cd_status st = check_x(e, x, err);
    if (st != CD_OK)
        return st;
    const char *name[1] = {e->model->values[e->model->nodes[node].outputs[0]].name};
    pass_io io = {.obj = obj, .n_wrt = 1, .wrt = name, .grads = gz, .prefix = true,
                  .prefix_node = node, .prefix_fill = fill, .prefix_ctx = ctx};
    return with_targets(e, x, &io, NULL, NULL, err);
}
