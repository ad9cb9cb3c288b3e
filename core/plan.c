#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backward_fast.h"
#include "ops/conv_fast.h"
#include "parallel.h"
#include "plan.h"
#include "plan64.h"

#define MAX_NODE_IO 64
#define ARENA_ALIGN 64

/* One executed step of a fast plan: a node run through its operator, or a
 * Conv run through its specialised kernel (with absorbed BN/Add/activation,
 * in which case vout is the last absorbed node's output). */
typedef struct cd_exec {
    int node;
    int n_in, n_out;
    const int *vin, *vout;     /* value ids, -1 = omitted */
    int conv_io[3];            /* storage for a Conv's {x, residual} and {y} */
    cd_tensor **tin, **tout;   /* resolved tensors (run-time views) */
    cd_conv_kernel *conv;
    cd_win_geom *pool;         /* 2-D float MaxPool without Indices: fast kernel */
    bool skip;                 /* Concat whose inputs were written in place */
} cd_exec;

/* The OpenBLAS pthreads build exports this; declared here because cblas.h
 * of other BLAS builds may not. One thread setting governs every sgemm. */
void openblas_set_num_threads(int num_threads);

/* Address for tensors with no elements (read-only: nothing is ever stored). */
static const max_align_t empty_storage;

void cd_plan_free(cd_plan *p)
{
    if (!p)
        return;
    cd_plan64_free(p);
    for (int i = 0; i < p->n_values; i++)
        cd_tensor_reset(&p->vals[i]);
    for (int e = 0; p->exec && e < p->n_exec; e++) {
        free(p->exec[e].tin);
        free(p->exec[e].pool);
        cd_conv_kernel_free(p->exec[e].conv);
    }
    if (p->node_conv)
        for (int i = 0; i < p->model->n_nodes; i++)
            cd_conv_kernel_free(p->node_conv[i]);
    free(p->node_conv);
    for (int i = 0; p->node_dconv && i < p->model->n_nodes; i++)
        cd_conv_kernel_free(p->node_dconv[i]);
    for (int i = 0; p->node_dpool && i < p->model->n_nodes; i++)
        free(p->node_dpool[i]);
    free(p->node_dconv);
    free(p->node_dpool);
    free(p->bwd_tmp);
    for (size_t i = 0; i < CD_COUNT_OF(p->grad_cache); i++)
        cd_tensor_free(p->grad_cache[i]);
    free(p->exec);
    free(p->rt);
    free(p->arena);
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

/* True when value v is read directly by an operator argument that decides
 * output shapes (Reshape's shape, Resize's scales/sizes, Pad's pads, axes
 * inputs). Such graph inputs are bound by value at plan time. */
static bool feeds_shape_argument(const cd_model *m, int v)
{
    for (int i = 0; i < m->n_nodes; i++) {
        const cd_node *n = &m->nodes[i];
        for (int k = 1; k < n->n_inputs; k++) {
            if (n->inputs[k] != v)
                continue;
            switch (n->op) {
            case CD_OP_RESHAPE:
            case CD_OP_RESIZE:
            case CD_OP_PAD:
            case CD_OP_SQUEEZE:
            case CD_OP_UNSQUEEZE:
            case CD_OP_REDUCE_MEAN:
                return true;
            default:
                break;
            }
        }
    }
    return false;
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
        if (in->data && feeds_shape_argument(m, m->inputs[i])) {
            /* Its values decide output shapes: bind them now as a constant;
             * cd_plan_matches then also compares the values. */
            cd_status st = cd_tensor_ensure(t, err);
            if (st != CD_OK)
                return st;
            memcpy(t->data, in->data, cd_tensor_nbytes(in));
            p->kind[m->inputs[i]] = CD_VALUE_CONST;
        }
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

/* How many leading inputs the operator cannot do without (the rest are
 * optional). Checked before any shape rule runs, so kernels may rely on them. */
static int required_inputs(const cd_node *n)
{
    switch (n->op) {
    case CD_OP_CONSTANT: return 0;
    case CD_OP_SUM:
    case CD_OP_CONCAT: return n->n_inputs > 0 ? n->n_inputs : 1;
    case CD_OP_CONV:
    case CD_OP_CONV_TRANSPOSE:
    case CD_OP_GEMM:
    case CD_OP_MATMUL:
    case CD_OP_ADD:
    case CD_OP_SUB:
    case CD_OP_MUL:
    case CD_OP_DIV:
    case CD_OP_PRELU:
    case CD_OP_GATHER: return 2;
    case CD_OP_RESHAPE: return n->opset >= 5 ? 2 : 1;
    case CD_OP_BATCH_NORMALIZATION: return 5;
    default: return 1;
    }
}

static bool all_outputs_empty(const cd_node *n, cd_tensor *const *out)
{
    bool any = false;
    for (int j = 0; j < n->n_outputs; j++) {
        if (!out[j])
            continue;
        size_t numel = 1;
        if (!cd_shape_numel(out[j]->ndim, out[j]->dims, 0, &numel) || numel > 0)
            return false;
        any = true;
    }
    return any;
}

uint64_t cd_plan_activation_cap(const cd_model *m)
{
    return m->max_activation_bytes ? m->max_activation_bytes : CD_PLAN_MAX_ACTIVATION_BYTES;
}

cd_status cd_plan_check_cap(const cd_model *m, uint64_t bytes, const char *what, cd_error *err)
{
    uint64_t cap = cd_plan_activation_cap(m);
    if (bytes <= cap)
        return CD_OK;
    return cd_fail(err, CD_ERR_LIMIT,
                   "%s need %.3g MiB for these input shapes (limit %.3g MiB, "
                   "max_activation_bytes): refusing before allocating",
                   what, (double)bytes / 1048576.0, (double)cap / 1048576.0);
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
    int need = required_inputs(n);
    if (n->n_inputs < need)
        return cd_node_fail(n, err, CD_ERR_PARSE, "needs %d inputs, has %d", need, n->n_inputs);
    for (int i = 0; i < need; i++)
        if (n->inputs[i] < 0)
            return cd_node_fail(n, err, CD_ERR_PARSE, "required input %d is missing", i);
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
    for (int j = 0; j < n->n_outputs; j++)
        if (out[j] && out[j]->dtype == CD_DTYPE_UNDEFINED)
            return cd_node_fail(n, err, CD_ERR_PARSE, "has %d outputs, but %s produces no output %d",
                                n->n_outputs, n->op_type, j);
    /* Nothing to compute when every output is empty (a zero batch, say):
     * the values are known now, and no kernel sees the degenerate shape. */
    bool empty = all_outputs_empty(n, out);
    bool fold = empty || node_is_foldable(p, n, opts, node_index);
    for (int j = 0; j < n->n_outputs; j++) {
        if (!out[j])
            continue;
        size_t numel;
        if (!cd_shape_numel(out[j]->ndim, out[j]->dims, 0, &numel))
            return cd_node_fail(n, err, CD_ERR_SHAPE, "output %d has an invalid shape", j);
        /* Fast plans place runtime values in the arena later (and check the
         * cap there); values allocated now are counted against it now. */
        if (fold || p->keep_activations) {
            p->built_bytes += cd_tensor_nbytes(out[j]);
            if ((st = cd_plan_check_cap(p->model, p->built_bytes, "the activations kept for "
                                        "gradients (every tensor)", err)) != CD_OK ||
                (st = cd_tensor_ensure(out[j], err)) != CD_OK)
                return st;
        }
        p->kind[n->outputs[j]] = fold ? CD_VALUE_CONST : CD_VALUE_RUNTIME;
        if (!fold)
            p->naive_bytes += cd_tensor_nbytes(out[j]);
    }
    if (empty)
        return CD_OK;
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

/* Fast plans: Conv specialisation and fusion --------------------------------- */

static bool is_const(const cd_plan *p, int v) { return v >= 0 && p->kind[v] == CD_VALUE_CONST; }

/* Conv nodes whose weights (and bias) are known get a specialised kernel. */
static bool conv_specialisable(const cd_plan *p, const cd_node *n)
{
    return n->op == CD_OP_CONV && n->n_inputs >= 2 && is_const(p, n->inputs[1]) &&
           (n->n_inputs < 3 || n->inputs[2] < 0 || is_const(p, n->inputs[2])) &&
           p->vals[n->inputs[0]].dtype == CD_FLOAT32;
}

/* Node views for a shape-rule-like call: constants with data, others shape only. */
static void node_inputs(cd_plan *p, const cd_node *n, cd_tensor *views, cd_tensor **in)
{
    for (int i = 0; i < n->n_inputs; i++)
        in[i] = shape_view(p, n->inputs[i], &views[i]);
}

static cd_status make_conv(cd_plan *p, int node, const float *scale, const float *shift,
                           const cd_epilogue *ep, cd_conv_kernel **k, cd_error *err)
{
    const cd_node *n = &p->model->nodes[node];
    cd_tensor views[3], *in[3] = {0};
    if (n->n_inputs > 3)
        return cd_node_fail(n, err, CD_ERR_PARSE, "Conv has %d inputs", n->n_inputs);
    node_inputs(p, n, views, in);
    /* Plans kept for backward passes stay on exact (non-Winograd) paths. */
    return cd_conv_kernel_create(n, in, scale, shift, ep,
                                 p->keep_activations ? CD_CONV_AUTO_EXACT : CD_CONV_AUTO, k, err);
}

typedef struct fuse_info {
    int *uses;     /* per value: runtime consumers (+1 for a graph output) */
    int *consumer; /* per value: step index of the last consumer seen */
    bool *absorbed; /* per step: already taken into a fused Conv */
} fuse_info;

/* The single runtime consumer of v that may be absorbed, or NULL. */
static const cd_node *sole_consumer(const cd_plan *p, const fuse_info *fi, int v,
                                    const cd_plan_options *opts, int *step)
{
    if (v < 0 || fi->uses[v] != 1 || fi->consumer[v] < 0)
        return NULL;
    *step = fi->consumer[v];
    if (fi->absorbed[*step])
        return NULL;
    int node = p->steps[*step];
    if (opts && opts->keep_node && opts->keep_node[node])
        return NULL;
    const cd_node *c = &p->model->nodes[node];
    for (int j = 1; j < c->n_outputs; j++)
        if (c->outputs[j] >= 0)
            return NULL;
    return c->n_outputs >= 1 && c->outputs[0] >= 0 ? c : NULL;
}

/* scale = gamma / sqrt(var + eps), shift = beta - mean * scale (per map). */
static bool bn_foldable(const cd_plan *p, const cd_node *bn, int maps, float *scale, float *shift)
{
    if (bn->op != CD_OP_BATCH_NORMALIZATION || bn->n_inputs != 5)
        return false;
    for (int i = 1; i < 5; i++)
        if (!is_const(p, bn->inputs[i]) || p->vals[bn->inputs[i]].dtype != CD_FLOAT32 ||
            cd_tensor_numel_raw(&p->vals[bn->inputs[i]]) != (size_t)maps)
            return false;
    if (bn->opset < 9 && cd_attr_int(bn, "spatial", 1) == 0)
        return false;
    const float *g = cd_cf32(&p->vals[bn->inputs[1]]), *b = cd_cf32(&p->vals[bn->inputs[2]]);
    const float *mean = cd_cf32(&p->vals[bn->inputs[3]]), *var = cd_cf32(&p->vals[bn->inputs[4]]);
    double eps = cd_attr_float(bn, "epsilon", 1e-5f);
    for (int m = 0; m < maps; m++) {
        double sc = g[m] / sqrt((double)var[m] + eps);
        scale[m] = (float)sc;
        shift[m] = (float)(b[m] - mean[m] * sc);
    }
    return true;
}

/* Clip bounds known at plan time (attributes before opset 11, inputs after). */
static bool clip_bounds(const cd_plan *p, const cd_node *c, float *lo, float *hi)
{
    *lo = -FLT_MAX;
    *hi = FLT_MAX;
    if (c->opset < 11) {
        *lo = cd_attr_float(c, "min", *lo);
        *hi = cd_attr_float(c, "max", *hi);
        return true;
    }
    for (int i = 1; i < c->n_inputs && i < 3; i++) {
        int v = c->inputs[i];
        if (v < 0)
            continue;
        if (!is_const(p, v) || p->vals[v].dtype != CD_FLOAT32 || !p->vals[v].data)
            return false;
        *(i == 1 ? lo : hi) = cd_cf32(&p->vals[v])[0];
    }
    return true;
}

static bool act_of(const cd_plan *p, const cd_node *c, cd_epilogue *ep)
{
    switch (c->op) {
    case CD_OP_RELU: ep->act = CD_ACT_RELU; return true;
    case CD_OP_SIGMOID: ep->act = CD_ACT_SIGMOID; return true;
    case CD_OP_HARD_SWISH: ep->act = CD_ACT_HARD_SWISH; return true;
    case CD_OP_LEAKY_RELU:
        ep->act = CD_ACT_LEAKY_RELU;
        ep->alpha = cd_attr_float(c, "alpha", 0.01f);
        return true;
    case CD_OP_CLIP: ep->act = CD_ACT_CLIP; return clip_bounds(p, c, &ep->lo, &ep->hi);
    case CD_OP_HARD_SIGMOID:
        ep->act = CD_ACT_HARD_SIGMOID;
        ep->alpha = cd_attr_float(c, "alpha", 0.2f);
        ep->beta = cd_attr_float(c, "beta", 0.5f);
        return true;
    default: return false;
    }
}

static bool absorbable(const cd_plan *p, const fuse_info *fi, int step,
                       const cd_plan_options *opts)
{
    int node = p->steps[step];
    const cd_node *c = &p->model->nodes[node];
    return !fi->absorbed[step] && !(opts && opts->keep_node && opts->keep_node[node]) &&
           c->n_outputs == 1 && c->outputs[0] >= 0;
}

/* HardSwish as exported at opsets < 14: v -> HardSigmoid(alpha 1/6, beta 1/2)
 * -> Mul(v, that), where v has exactly those two consumers. Returns the Mul's
 * step (and the HardSigmoid's in *hs_step), or -1. */
static int hard_swish_pair(const cd_plan *p, const fuse_info *fi, int v, int from,
                           const cd_plan_options *opts, int *hs_step)
{
    int mul = v >= 0 && fi->uses[v] == 2 ? fi->consumer[v] : -1;
    if (mul < 0 || !absorbable(p, fi, mul, opts))
        return -1;
    const cd_node *m = &p->model->nodes[p->steps[mul]];
    if (m->op != CD_OP_MUL || m->n_inputs != 2)
        return -1;
    for (int s = from + 1; s < mul; s++) {
        const cd_node *h = &p->model->nodes[p->steps[s]];
        if (h->op != CD_OP_HARD_SIGMOID || h->inputs[0] != v || !absorbable(p, fi, s, opts))
            continue;
        int hs = h->outputs[0];
        bool pair = (m->inputs[0] == v && m->inputs[1] == hs) ||
                    (m->inputs[1] == v && m->inputs[0] == hs);
        if (!pair || fi->uses[hs] != 1 ||
            fabsf(cd_attr_float(h, "alpha", 0.2f) - 1.0f / 6.0f) > 1e-7f ||
            cd_attr_float(h, "beta", 0.5f) != 0.5f)
            return -1;
        *hs_step = s;
        return mul;
    }
    return -1;
}

/* The other operand of Add c when it has exactly v's shape, else -1. */
static int residual_of(const cd_plan *p, const cd_node *c, int v)
{
    if (c->op != CD_OP_ADD || c->n_inputs != 2)
        return -1;
    int other = c->inputs[0] == v ? c->inputs[1] : c->inputs[0];
    if (other < 0 || other == v || is_const(p, other))
        return -1;
    const cd_tensor *a = &p->vals[v], *b = &p->vals[other];
    return b->dtype == CD_FLOAT32 && cd_shape_equal(a->ndim, a->dims, b->ndim, b->dims) ? other
                                                                                       : -1;
}

/* Greedily absorbs Conv -> [BatchNormalization] -> [Add residual] -> [activation]
 * into step s's exec entry e, which runs at the last absorbed step *at. */
static cd_status fuse_conv(cd_plan *p, fuse_info *fi, int s, const cd_plan_options *opts,
                           bool *absorbed, cd_exec *e, int *at, cd_error *err)
{
    const cd_node *n = &p->model->nodes[p->steps[s]];
    int v = n->outputs[0], step = -1, maps = (int)p->vals[v].dims[1];
    float *bn = malloc(2 * (size_t)maps * sizeof *bn);
    if (!bn)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    bool have_bn = false;
    cd_epilogue ep = {0};
    int res = -1;
    *at = s;
    const cd_node *c = sole_consumer(p, fi, v, opts, &step);
    if (c && c->inputs[0] == v && bn_foldable(p, c, maps, bn, bn + maps)) {
        have_bn = true;
        absorbed[step] = true, *at = step, v = c->outputs[0];
        c = sole_consumer(p, fi, v, opts, &step);
    }
    if (c && (res = residual_of(p, c, v)) >= 0) {
        absorbed[step] = true, *at = step, v = c->outputs[0];
        c = sole_consumer(p, fi, v, opts, &step);
    }
    int hs_step = -1, mul_step = c ? -1 : hard_swish_pair(p, fi, v, *at, opts, &hs_step);
    if (mul_step >= 0) {
        ep.act = CD_ACT_HARD_SWISH;
        absorbed[hs_step] = absorbed[mul_step] = true, *at = mul_step;
        v = p->model->nodes[p->steps[mul_step]].outputs[0];
    } else if (c && c->inputs[0] == v && act_of(p, c, &ep)) {
        absorbed[step] = true, *at = step, v = c->outputs[0];
    }
    cd_status st = make_conv(p, p->steps[s], have_bn ? bn : NULL, have_bn ? bn + maps : NULL, &ep,
                             &e->conv, err);
    free(bn);
    e->node = p->steps[s];
    e->conv_io[0] = n->inputs[0];
    e->conv_io[1] = res;
    e->conv_io[2] = v;
    e->vin = e->conv_io, e->n_in = 2;
    e->vout = e->conv_io + 2, e->n_out = 1;
    return st;
}

static cd_status fuse_info_init(cd_plan *p, fuse_info *fi, cd_error *err)
{
    const cd_model *m = p->model;
    fi->uses = calloc((size_t)p->n_values + 1, sizeof(int));
    fi->consumer = malloc(((size_t)p->n_values + 1) * sizeof(int));
    if (!fi->uses || !fi->consumer)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int v = 0; v < p->n_values; v++)
        fi->consumer[v] = -1;
    for (int o = 0; o < m->n_outputs; o++)
        fi->uses[m->outputs[o]]++;
    for (int s = 0; s < p->n_steps; s++) {
        const cd_node *n = &m->nodes[p->steps[s]];
        for (int i = 0; i < n->n_inputs; i++)
            if (n->inputs[i] >= 0) {
                fi->uses[n->inputs[i]]++;
                fi->consumer[n->inputs[i]] = s;
            }
    }
    return CD_OK;
}

/* 2-D float MaxPool without the Indices output runs on cd_maxpool_2d. */
static cd_status fast_pool(const cd_plan *p, const cd_node *n, cd_win_geom **out, cd_error *err)
{
    *out = NULL;
    const cd_tensor *x = n->n_inputs == 1 && n->inputs[0] >= 0 ? &p->vals[n->inputs[0]] : NULL;
    if (n->op != CD_OP_MAX_POOL || !x || x->dtype != CD_FLOAT32 || x->ndim != 4 ||
        (n->n_outputs > 1 && n->outputs[1] >= 0))
        return CD_OK;
    const int64_t *k = NULL;
    if (cd_attr_ints(n, "kernel_shape", &k) != 2)
        return CD_OK; /* the operator reports the problem */
    cd_win_geom g;
    if (cd_win_resolve(n, 2, x->dims + 2, k, cd_attr_int(n, "ceil_mode", 0) != 0, &g, err) !=
        CD_OK)
        return err->code;
    if (!(*out = malloc(sizeof g)))
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    **out = g;
    return CD_OK;
}

/* Builds p->exec: fused Conv groups placed at their last absorbed step,
 * other steps as they are. */
static cd_status build_exec(cd_plan *p, const cd_plan_options *opts, cd_error *err)
{
    fuse_info fi = {0};
    int ns = p->n_steps;
    bool *absorbed = calloc((size_t)ns + 1, sizeof *absorbed);
    cd_exec *slot = calloc((size_t)ns + 1, sizeof *slot);
    bool *used = calloc((size_t)ns + 1, sizeof *used);
    fi.absorbed = absorbed;
    cd_status st = absorbed && slot && used ? fuse_info_init(p, &fi, err)
                                            : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int s = 0; st == CD_OK && s < ns; s++) {
        const cd_node *n = &p->model->nodes[p->steps[s]];
        if (absorbed[s])
            continue;
        int at = s;
        cd_exec e = {0};
        if (conv_specialisable(p, n) && !(opts && opts->keep_node && opts->keep_node[p->steps[s]])) {
            st = fuse_conv(p, &fi, s, opts, absorbed, &e, &at, err);
        } else {
            e.node = p->steps[s];
            e.n_in = n->n_inputs, e.vin = n->inputs;
            e.n_out = n->n_outputs, e.vout = n->outputs;
            st = fast_pool(p, n, &e.pool, err);
        }
        slot[at] = e;
        used[at] = true;
    }
    p->exec = calloc((size_t)ns + 1, sizeof *p->exec);
    if (st == CD_OK && !p->exec)
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int s = 0; p->exec && s < ns; s++)
        if (used[s]) {
            p->exec[p->n_exec] = slot[s];
            if (slot[s].conv) { /* re-point into the moved struct */
                p->exec[p->n_exec].vin = p->exec[p->n_exec].conv_io;
                p->exec[p->n_exec].vout = p->exec[p->n_exec].conv_io + 2;
            }
            p->n_exec++;
        } else if (slot[s].conv) {
            cd_conv_kernel_free(slot[s].conv);
        }
    free(fi.uses);
    free(fi.consumer);
    free(absorbed);
    free(slot);
    free(used);
    return st;
}

/* Memory planning -------------------------------------------------------------- */

/* Element-wise and view operators whose kernels tolerate out == in. */
static bool runs_in_place(const cd_node *n)
{
    switch (n->op) {
    case CD_OP_RELU: case CD_OP_LEAKY_RELU: case CD_OP_ELU: case CD_OP_SIGMOID:
    case CD_OP_TANH: case CD_OP_HARD_SIGMOID: case CD_OP_HARD_SWISH: case CD_OP_CLIP:
    case CD_OP_ADD: case CD_OP_SUB: case CD_OP_MUL: case CD_OP_DIV:
    case CD_OP_FLATTEN: case CD_OP_RESHAPE: case CD_OP_SQUEEZE: case CD_OP_UNSQUEEZE:
    case CD_OP_IDENTITY:
        return true;
    default:
        return false;
    }
}

typedef struct mem_buf {
    size_t size, offset;
    int first, last; /* exec indices */
    int parent;      /* >= 0: lives at byte sub of buffer parent (Concat slices) */
    size_t sub;
    bool has_slices; /* some buffer lives inside this one */
} mem_buf;

typedef struct mem_plan {
    int *def, *last, *buf; /* per value */
    mem_buf *bufs;
    int n_bufs;
} mem_plan;

/* Pass 1: lifetimes of the values the program produces. */
static void measure_lifetimes(const cd_plan *p, mem_plan *mp)
{
    const cd_model *m = p->model;
    for (int v = 0; v < p->n_values; v++)
        mp->def[v] = mp->last[v] = -1, mp->buf[v] = -1;
    for (int e = 0; e < p->n_exec; e++) {
        const cd_exec *x = &p->exec[e];
        for (int i = 0; i < x->n_in; i++)
            if (x->vin[i] >= 0)
                mp->last[x->vin[i]] = e;
        for (int j = 0; j < x->n_out; j++)
            if (x->vout[j] >= 0 && mp->def[x->vout[j]] < 0)
                mp->def[x->vout[j]] = e;
    }
    for (int o = 0; o < m->n_outputs; o++)
        mp->last[m->outputs[o]] = p->n_exec; /* outputs outlive the run */
}

/* An input of exec entry e whose buffer the output may take over. */
static int in_place_donor(const cd_plan *p, const mem_plan *mp, int e, int out)
{
    const cd_exec *x = &p->exec[e];
    if (x->conv || !runs_in_place(&p->model->nodes[x->node]))
        return -1;
    int lim = p->model->nodes[x->node].op == CD_OP_CLIP ? 1 : x->n_in;
    for (int i = 0; i < lim && i < 2; i++) {
        int v = x->vin[i];
        if (v < 0 || mp->buf[v] < 0 || mp->last[v] != e || mp->def[v] < 0)
            continue;
        if (cd_tensor_nbytes(&p->vals[v]) == cd_tensor_nbytes(&p->vals[out]) &&
            p->vals[v].dtype == p->vals[out].dtype)
            return v;
    }
    return -1;
}

/* Pass 2a: one buffer per value, shared with an in-place donor. */
static void assign_buffers(const cd_plan *p, mem_plan *mp)
{
    for (int e = 0; e < p->n_exec; e++) {
        const cd_exec *x = &p->exec[e];
        for (int j = 0; j < x->n_out; j++) {
            int v = x->vout[j];
            if (v < 0 || mp->def[v] != e || p->kind[v] != CD_VALUE_RUNTIME)
                continue;
            int donor = j == 0 ? in_place_donor(p, mp, e, v) : -1;
            int b = donor >= 0 ? mp->buf[donor] : mp->n_bufs++;
            if (donor < 0)
                mp->bufs[b] = (mem_buf){cd_tensor_nbytes(&p->vals[v]), 0, e, e, -1, 0, false};
            mp->buf[v] = b;
            int last = mp->last[v] < e ? e : mp->last[v];
            if (last > mp->bufs[b].last)
                mp->bufs[b].last = last;
        }
    }
}

/* Whether every input of Concat entry e may live inside output buffer ob:
 * runtime values produced by the program, each in a buffer of its own size
 * that holds nothing read after e (so only this Concat reads it) and is not
 * already a slice or holding slices, no two inputs in one buffer. */
static bool concat_inputs_sliceable(const cd_plan *p, const mem_plan *mp, int e, int ob)
{
    const cd_exec *x = &p->exec[e];
    for (int i = 0; i < x->n_in; i++) {
        int v = x->vin[i], b = v >= 0 ? mp->buf[v] : -1;
        if (b < 0 || b == ob || p->kind[v] != CD_VALUE_RUNTIME || mp->def[v] < 0)
            return false;
        const mem_buf *mb = &mp->bufs[b];
        if (mb->last != e || mb->parent >= 0 || mb->has_slices ||
            mb->size != cd_tensor_nbytes(&p->vals[v]))
            return false;
        for (int j = 0; j < i; j++)
            if (mp->buf[x->vin[j]] == b)
                return false;
    }
    return true;
}

/* Pass 2b: a Concat whose inputs are contiguous ranges of its output — every
 * dimension before the axis is 1, as for the channel Concat of SqueezeNet's
 * fire modules at batch 1 — gets its inputs' buffers placed inside its own
 * buffer, which then lives from the first input's producer on. The
 * producers write straight into the output and the Concat step is skipped. */
static void slice_concats(cd_plan *p, mem_plan *mp)
{
    for (int e = 0; e < p->n_exec; e++) {
        cd_exec *x = &p->exec[e];
        const cd_node *n = &p->model->nodes[x->node];
        int o = x->n_out == 1 ? x->vout[0] : -1, axis = 0;
        if (x->conv || n->op != CD_OP_CONCAT || o < 0 || mp->buf[o] < 0 || mp->def[o] != e)
            continue;
        const cd_tensor *ot = &p->vals[o];
        const cd_attr *a = cd_node_attr(n, "axis");
        int64_t ax = a ? a->i : 1;
        axis = (int)(ax < 0 ? ax + ot->ndim : ax);
        if (axis < 0 || axis >= ot->ndim)
            continue;
        bool contiguous = true;
        for (int d = 0; d < axis; d++)
            contiguous = contiguous && ot->dims[d] == 1;
        int ob = mp->buf[o];
        if (!contiguous || !concat_inputs_sliceable(p, mp, e, ob))
            continue;
        size_t sub = 0;
        for (int i = 0; i < x->n_in; i++) {
            mem_buf *mb = &mp->bufs[mp->buf[x->vin[i]]];
            mb->parent = ob;
            mb->sub = sub;
            sub += mb->size;
            if (mb->first < mp->bufs[ob].first)
                mp->bufs[ob].first = mb->first;
        }
        mp->bufs[ob].has_slices = true;
        x->skip = true;
        p->n_sliced_concats++;
    }
}

static size_t align_up(size_t n) { return (n + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN; }

/* Pass 2c: offsets, largest first, each at the lowest gap free of every
 * placed buffer alive at the same time; Concat slices then sit at their
 * place inside their parent. Returns the arena size. */
static size_t place_buffers(mem_plan *mp, int *order)
{
    int nb = 0;
    for (int i = 0; i < mp->n_bufs; i++)
        if (mp->bufs[i].parent < 0)
            order[nb++] = i;
    for (int i = 1; i < nb; i++) /* insertion sort by size, descending */
        for (int j = i; j > 0 && mp->bufs[order[j]].size > mp->bufs[order[j - 1]].size; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    size_t total = 0;
    for (int i = 0; i < nb; i++) {
        mem_buf *b = &mp->bufs[order[i]];
        size_t off = 0;
        bool moved = true;
        while (moved) { /* restart after each bump: placed buffers are unsorted */
            moved = false;
            for (int k = 0; k < i; k++) {
                const mem_buf *o = &mp->bufs[order[k]];
                bool live = o->first <= b->last && b->first <= o->last;
                if (live && off < o->offset + align_up(o->size) && o->offset < off + align_up(b->size)) {
                    off = o->offset + align_up(o->size);
                    moved = true;
                }
            }
        }
        b->offset = off;
        if (off + align_up(b->size) > total)
            total = off + align_up(b->size);
    }
    for (int i = 0; i < mp->n_bufs; i++)
        if (mp->bufs[i].parent >= 0)
            mp->bufs[i].offset = mp->bufs[mp->bufs[i].parent].offset + mp->bufs[i].sub;
    return total;
}

/* Resolves every exec entry's tensors: constants from p->vals, the rest
 * from the run-time views in p->rt. */
static cd_status resolve_tensors(cd_plan *p, cd_error *err)
{
    for (int e = 0; e < p->n_exec; e++) {
        cd_exec *x = &p->exec[e];
        x->tin = calloc((size_t)(x->n_in + x->n_out) + 1, sizeof *x->tin);
        if (!x->tin)
            return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
        x->tout = x->tin + x->n_in;
        for (int i = 0; i < x->n_in; i++) {
            int v = x->vin[i];
            x->tin[i] = v < 0 ? NULL : is_const(p, v) ? &p->vals[v] : &p->rt[v];
        }
        for (int j = 0; j < x->n_out; j++)
            x->tout[j] = x->vout[j] < 0 ? NULL : &p->rt[x->vout[j]];
    }
    return CD_OK;
}

static cd_status plan_memory(cd_plan *p, cd_error *err)
{
    const cd_model *m = p->model;
    mem_plan mp = {0};
    size_t nv = (size_t)p->n_values + 1;
    mp.def = malloc(nv * sizeof(int));
    mp.last = malloc(nv * sizeof(int));
    mp.buf = malloc(nv * sizeof(int));
    mp.bufs = calloc(nv, sizeof *mp.bufs);
    int *order = malloc(nv * sizeof(int));
    p->rt = calloc(nv, sizeof *p->rt);
    cd_status st = mp.def && mp.last && mp.buf && mp.bufs && order && p->rt
                       ? CD_OK
                       : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK) {
        measure_lifetimes(p, &mp);
        assign_buffers(p, &mp);
        slice_concats(p, &mp);
        p->runtime_bytes = place_buffers(&mp, order);
        st = cd_plan_check_cap(m, p->runtime_bytes, "the activations of this model", err);
    }
    if (st == CD_OK) {
        p->arena = p->runtime_bytes ? aligned_alloc(ARENA_ALIGN, p->runtime_bytes) : NULL;
        if (p->runtime_bytes && !p->arena)
            st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory for %zu bytes of activations",
                         p->runtime_bytes);
    }
    for (int v = 0; st == CD_OK && v < p->n_values; v++) {
        p->rt[v] = p->vals[v];
        p->rt[v].owns_data = false;
        if (p->kind[v] != CD_VALUE_RUNTIME)
            continue;
        /* All-empty runtime values leave no arena (and no offset to add). */
        bool placed = mp.buf[v] >= 0 && p->arena;
        /* Empty values get a valid address that is never written, so kernels
         * may form x + 0 without touching a NULL pointer. */
        p->rt[v].data =
            placed ? (char *)p->arena + mp.bufs[mp.buf[v]].offset : (void *)&empty_storage;
        p->rt[v].capacity = cd_tensor_nbytes(&p->vals[v]);
    }
    /* Graph outputs keep their (never reused) arena slot visible in p->vals. */
    for (int o = 0; st == CD_OK && o < m->n_outputs; o++) {
        int v = m->outputs[o];
        if (p->kind[v] == CD_VALUE_RUNTIME) {
            p->vals[v].data = p->rt[v].data;
            p->vals[v].capacity = p->rt[v].capacity;
            p->vals[v].owns_data = false;
        }
    }
    if (st == CD_OK)
        st = resolve_tensors(p, err);
    free(mp.def);
    free(mp.last);
    free(mp.buf);
    free(mp.bufs);
    free(order);
    return st;
}

/* keep_activations plans: specialise Conv nodes only, per node; 2-D
 * MaxPools get their geometry (fast kernels forward and backward). */
static cd_status specialise_convs(cd_plan *p, const cd_plan_options *opts, cd_error *err)
{
    p->node_conv = calloc((size_t)p->model->n_nodes + 1, sizeof *p->node_conv);
    p->node_dpool = calloc((size_t)p->model->n_nodes + 1, sizeof *p->node_dpool);
    if (!p->node_conv || !p->node_dpool)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int s = 0; s < p->n_steps; s++) {
        int node = p->steps[s];
        if (opts && opts->keep_node && opts->keep_node[node])
            continue;
        cd_status pst = fast_pool(p, &p->model->nodes[node], &p->node_dpool[node], err);
        if (pst != CD_OK)
            return pst;
        if (!conv_specialisable(p, &p->model->nodes[node]) ||
            (opts && opts->keep_node && opts->keep_node[node]))
            continue;
        cd_status st = make_conv(p, node, NULL, NULL, NULL, &p->node_conv[node], err);
        if (st != CD_OK)
            return st;
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
    p->keep_activations = opts && opts->keep_activations;
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
    if (st == CD_OK && p->keep_activations) {
        p->runtime_bytes = p->naive_bytes;
        st = specialise_convs(p, opts, err);
    } else if (st == CD_OK) {
        st = build_exec(p, opts, err);
        if (st == CD_OK)
            st = plan_memory(p, err);
    }
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
        if (p->kind[m->inputs[i]] == CD_VALUE_CONST &&
            (!inputs[i]->data ||
             memcmp(t->data, inputs[i]->data, cd_tensor_nbytes(inputs[i])) != 0))
            return false;
    }
    return true;
}

typedef struct maxpool_job {
    const float *x;
    float *y;
    const cd_win_geom *g;
} maxpool_job;

static void maxpool_range(void *arg, int64_t lo, int64_t hi)
{
    const maxpool_job *j = arg;
    int64_t in = j->g->in[0] * j->g->in[1], out = j->g->out[0] * j->g->out[1];
    cd_maxpool_2d(j->x + lo * in, j->y + lo * out, hi - lo, j->g);
}

/* Planes are independent: ranges of them on the pool (about one task per
 * 32 Ki input floats, at most 8; the cut depends on the shape only). */
static cd_status maxpool_2d(const cd_tensor *x, cd_tensor *y, const cd_win_geom *g, cd_ctx *ctx)
{
    int64_t planes = x->dims[0] * x->dims[1];
    int64_t elems = planes * g->in[0] * g->in[1], t = elems / 32768 + 1;
    maxpool_job j = {cd_cf32(x), cd_f32(y), g};
    cd_pool_for(ctx->pool, planes, t < 8 ? (int)t : 8, maxpool_range, &j);
    return CD_OK;
}

static cd_status run_maxpool(const cd_exec *x, cd_ctx *ctx)
{
    return maxpool_2d(x->tin[0], x->tout[0], x->pool, ctx);
}

static cd_status run_exec(cd_plan *p, cd_ctx *ctx)
{
    const cd_model *m = p->model;
    for (int e = 0; e < p->n_exec; e++) {
        const cd_exec *x = &p->exec[e];
        cd_status st;
        if (x->skip)
            continue; /* a Concat whose inputs were written into its output */
        if (x->conv)
            st = cd_conv_kernel_run(x->conv, cd_cf32(x->tin[0]),
                                    x->tin[1] ? cd_cf32(x->tin[1]) : NULL, cd_f32(x->tout[0]),
                                    ctx);
        else if (x->pool)
            st = run_maxpool(x, ctx);
        else
            st = cd_op_get(m->nodes[x->node].op)->forward(&m->nodes[x->node], x->tin, x->tout,
                                                          ctx);
        if (st != CD_OK)
            return st;
    }
    return CD_OK;
}

/* keep_activations: node by node over p->steps (callers may edit the list). */
static cd_status run_steps(cd_plan *p, cd_ctx *ctx)
{
    const cd_model *m = p->model;
    cd_tensor *in[MAX_NODE_IO], *out[MAX_NODE_IO];
    for (int s = 0; s < p->n_steps; s++) {
        const cd_node *n = &m->nodes[p->steps[s]];
        for (int i = 0; i < n->n_inputs; i++)
            in[i] = n->inputs[i] >= 0 ? &p->vals[n->inputs[i]] : NULL;
        for (int j = 0; j < n->n_outputs; j++)
            out[j] = n->outputs[j] >= 0 ? &p->vals[n->outputs[j]] : NULL;
        const cd_conv_kernel *k = p->node_conv ? p->node_conv[p->steps[s]] : NULL;
        const cd_win_geom *pg = p->node_dpool ? p->node_dpool[p->steps[s]] : NULL;
        cd_status st = k    ? cd_conv_kernel_run(k, cd_cf32(in[0]), NULL, cd_f32(out[0]), ctx)
                       : pg ? maxpool_2d(in[0], out[0], pg, ctx)
                            : cd_op_get(n->op)->forward(n, in, out, ctx);
        if (st != CD_OK)
            return st;
    }
    return CD_OK;
}

cd_status cd_plan_run(cd_plan *p, const cd_tensor *const *inputs, cd_ctx *ctx)
{
    const cd_model *m = p->model;
    if (!cd_plan_matches(p, inputs))
        return cd_fail(ctx->err, CD_ERR_INTERNAL, "plan used with other input shapes");
    for (int i = 0; i < m->n_inputs; i++) {
        if (p->kind[m->inputs[i]] == CD_VALUE_CONST)
            continue; /* bound by value when the plan was built */
        cd_tensor *t = p->rt ? &p->rt[m->inputs[i]] : &p->vals[m->inputs[i]];
        t->data = inputs[i]->data; /* borrowed: kernels never write their inputs */
        t->capacity = cd_tensor_nbytes(inputs[i]);
        t->owns_data = false;
        if (p->rt)
            p->vals[m->inputs[i]] = *t;
    }
    cd_blas_single_thread();
    cd_status pst = cd_ctx_ensure_pool(ctx);
    if (pst != CD_OK)
        return pst;
    return p->keep_activations ? run_steps(p, ctx) : run_exec(p, ctx);
}

/* Fast backward paths (core/backward_fast.h), prepared once per plan: Conv
 * nodes with constant weights get their input gradient as a forward kernel
 * (stride 1; others keep the generic GEMM + col2im), 2-D MaxPools their
 * geometry. */
static cd_status bwd_prepare(cd_plan *p, cd_error *err)
{
    const cd_model *m = p->model;
    p->node_dconv = calloc((size_t)m->n_nodes + 1, sizeof *p->node_dconv);
    if (!p->node_dconv)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    cd_tensor *in[MAX_NODE_IO];
    for (int s = 0; s < p->n_steps; s++) {
        int node = p->steps[s];
        const cd_node *n = &m->nodes[node];
        cd_status st = CD_OK;
        if (p->node_conv && p->node_conv[node]) {
            for (int i = 0; i < n->n_inputs; i++)
                in[i] = n->inputs[i] >= 0 ? &p->vals[n->inputs[i]] : NULL;
            cd_error quiet = {0}; /* "not stride 1" only means: generic path */
            st = cd_conv_kernel_create_input_grad(n, in, &p->node_dconv[node], &quiet);
            if (st == CD_ERR_UNSUPPORTED)
                st = CD_OK;
            else if (st != CD_OK)
                return cd_fail(err, st, "%s", quiet.message);
        }
        if (st != CD_OK)
            return st;
    }
    p->bwd_ready = true;
    return CD_OK;
}

static float *bwd_tmp(cd_plan *p, size_t floats, cd_error *err)
{
    if (floats > p->bwd_tmp_floats) {
        float *t = malloc(floats * sizeof *t);
        if (!t) {
            cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory for a gradient buffer");
            return NULL;
        }
        free(p->bwd_tmp);
        p->bwd_tmp = t;
        p->bwd_tmp_floats = floats;
    }
    return p->bwd_tmp;
}

/* Runs node's fast backward when one applies (*done); fresh[i]: gin[i] was
 * just created (all zeros), so it may be overwritten instead of added to. */
static cd_status fast_backward(cd_plan *p, int node, cd_tensor *const *in, cd_tensor *const *out,
                               cd_tensor *const *gout, cd_tensor **gin, const bool *fresh,
                               cd_ctx *ctx, bool *done)
{
    const cd_node *n = &p->model->nodes[node];
    *done = false;
    if (!gout[0] || !gin[0])
        return CD_OK;
    const cd_conv_kernel *k = p->node_dconv[node];
    if (k && (n->n_inputs < 2 || !gin[1]) && (n->n_inputs < 3 || !gin[2])) {
        *done = true;
        size_t cnt = cd_tensor_numel(gin[0]);
        float *dst = fresh[0] ? cd_f32(gin[0]) : bwd_tmp(p, cnt, ctx->err);
        if (!dst)
            return ctx->err->code;
        cd_status st = cd_conv_kernel_run(k, cd_cf32(gout[0]), NULL, dst, ctx);
        if (st == CD_OK && !fresh[0])
            cd_add_into_fast(cd_f32(gin[0]), dst, cnt, ctx);
        return st;
    }
    if (p->node_dpool && p->node_dpool[node]) {
        *done = true;
        const cd_win_geom *g = p->node_dpool[node];
        cd_maxpool2d_backward_fast(cd_cf32(in[0]), cd_cf32(out[0]), cd_cf32(gout[0]), cd_f32(gin[0]),
                                   in[0]->dims[0] * in[0]->dims[1], g, ctx);
        return CD_OK;
    }
    if (n->op == CD_OP_RELU && in[0]->dtype == CD_FLOAT32) {
        *done = true;
        cd_relu_backward_fast(cd_cf32(in[0]), cd_cf32(gout[0]), cd_f32(gin[0]),
                              cd_tensor_numel(in[0]), ctx);
    }
    return CD_OK;
}

/* A zeroed gradient tensor for value v: a cached one of the same byte size
 * when there is one. */
static cd_status grad_slot(cd_plan *p, cd_tensor **grads, int v, cd_error *err)
{
    if (grads[v])
        return CD_OK;
    const cd_tensor *t = &p->vals[v];
    size_t bytes = cd_tensor_numel(t) * sizeof(float);
    for (size_t i = 0; i < CD_COUNT_OF(p->grad_cache); i++) {
        cd_tensor *c = p->grad_cache[i];
        if (c && c->capacity == bytes) {
            p->grad_cache[i] = NULL;
            cd_tensor_set_shape(c, CD_FLOAT32, t->ndim, t->dims);
            memset(c->data, 0, bytes);
            grads[v] = c;
            return CD_OK;
        }
    }
    return cd_tensor_create(CD_FLOAT32, t->ndim, t->dims, &grads[v], err);
}

/* Frees *g, or keeps it for grad_slot (replacing the smallest cached one). */
static void grad_release(cd_plan *p, cd_tensor **g)
{
    cd_tensor *t = *g;
    *g = NULL;
    if (!t || !t->owns_data) {
        cd_tensor_free(t);
        return;
    }
    size_t low = 0;
    for (size_t i = 0; i < CD_COUNT_OF(p->grad_cache); i++) {
        if (!p->grad_cache[i]) {
            low = i;
            break;
        }
        if (p->grad_cache[i]->capacity < p->grad_cache[low]->capacity)
            low = i;
    }
    cd_tensor *old = p->grad_cache[low];
    if (old && old->capacity >= t->capacity) {
        cd_tensor_free(t);
        return;
    }
    cd_tensor_free(old);
    p->grad_cache[low] = t;
}

/* keep[v]: gradient asked for. reaches[v]: v depends on some asked-for value,
 * so the reverse pass must carry a gradient into it (others are skipped —
 * Grad-CAM at a late layer never computes the early convolutions' input
 * gradients). */
void cd_plan_mark_gradient_paths(const cd_plan *p, int n_wrt, const int *wrt, bool *keep,
                                 bool *reaches)
{
    const cd_model *m = p->model;
    for (int w = 0; w < n_wrt; w++)
        if (wrt[w] >= 0 && wrt[w] < p->n_values)
            keep[wrt[w]] = reaches[wrt[w]] = true;
    for (int s = 0; s < p->n_steps; s++) {
        const cd_node *n = &m->nodes[p->steps[s]];
        bool any = false;
        for (int i = 0; i < n->n_inputs; i++)
            any = any || (n->inputs[i] >= 0 && reaches[n->inputs[i]]);
        for (int j = 0; any && j < n->n_outputs; j++)
            if (n->outputs[j] >= 0)
                reaches[n->outputs[j]] = true;
    }
}

cd_status cd_plan_hand_over(cd_tensor **g, int n_wrt, const int *wrt, cd_tensor **grads_out,
                            cd_error *err)
{
    cd_status st = CD_OK;
    for (int w = 0; w < n_wrt; w++)
        grads_out[w] = NULL;
    for (int w = 0; st == CD_OK && w < n_wrt; w++) {
        int v = wrt[w];
        bool again = false; /* the same value asked for twice: the later ones copy */
        for (int u = w + 1; u < n_wrt; u++)
            again = again || wrt[u] == v;
        if (again)
            st = cd_tensor_clone(g[v], &grads_out[w], err);
        else
            grads_out[w] = g[v], g[v] = NULL; /* handed over, not copied */
    }
    if (st != CD_OK)
        for (int w = 0; w < n_wrt; w++) {
            cd_tensor_free(grads_out[w]);
            grads_out[w] = NULL;
        }
    return st;
}

cd_status cd_plan_backward(cd_plan *p, int n_seeds, const int *seed_values,
                           const cd_tensor *const *seeds, int n_wrt, const int *wrt,
                           cd_tensor **grads_out, cd_ctx *ctx)
{
    const cd_model *m = p->model;
    cd_error *err = ctx->err;
    if (!p->keep_activations)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "cd_plan_backward needs a plan built with keep_activations "
                       "(this plan reuses activation buffers)");
    cd_tensor **g = calloc((size_t)p->n_values + 1, sizeof *g);
    bool *keep = calloc((size_t)p->n_values + 1, sizeof *keep);
    bool *reaches = calloc((size_t)p->n_values + 1, sizeof *reaches);
    if (!g || !keep || !reaches) {
        free(g);
        free(keep);
        free(reaches);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    cd_plan_mark_gradient_paths(p, n_wrt, wrt, keep, reaches);
    cd_status st = p->bwd_ready ? CD_OK : bwd_prepare(p, err);
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
    bool fresh[MAX_NODE_IO];
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
            fresh[i] = v >= 0 && !g[v];
            bool wanted = v >= 0 && reaches[v] && p->kind[v] != CD_VALUE_CONST &&
                          p->vals[v].dtype == CD_FLOAT32;
            if (wanted && (st = grad_slot(p, g, v, err)) == CD_OK)
                gin[i] = g[v];
        }
        const cd_op_def *def = cd_op_get(n->op);
        bool done = false;
        if (st == CD_OK && !p->no_fast_backward)
            st = fast_backward(p, p->steps[s], in, out, gout, gin, fresh, ctx, &done);
        if (st == CD_OK && !done && !def->backward)
            st = cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "operator has no backward pass");
        if (st == CD_OK && !done)
            st = def->backward(n, in, out, gout, gin, ctx);
        /* Each value has one producer: its gradient is complete and, unless
         * asked for, no longer needed. */
        for (int j = 0; j < n->n_outputs; j++) {
            int v = n->outputs[j];
            if (v >= 0 && !keep[v])
                grad_release(p, &g[v]);
        }
    }
    for (int w = 0; st == CD_OK && w < n_wrt; w++)
        if (!g[wrt[w]])
            st = grad_slot(p, g, wrt[w], err); /* objective does not depend on it: zeros */
    if (st == CD_OK)
        st = cd_plan_hand_over(g, n_wrt, wrt, grads_out, err);
    else
        for (int w = 0; w < n_wrt; w++)
            grads_out[w] = NULL;
    for (int v = 0; v < p->n_values; v++)
        grad_release(p, &g[v]);
    free(g);
    free(keep);
    free(reaches);
    return st;
}
