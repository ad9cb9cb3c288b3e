/* Dropout, opsets 1 to 13+.
 *
 * Deterministic inference (ctx->stochastic == NULL) makes Dropout the
 * identity with an all-true mask, whatever ratio or training_mode say: candor
 * never draws random numbers unless the stochastic layer (MC dropout) asks it
 * to. The attribute/input forms differ by opset:
 *   opset 1-6:  ratio attribute, is_test attribute; mask has X's type
 *   opset 7-9:  ratio attribute;                     mask has X's type
 *   opset 10-11: ratio attribute;                    mask is bool
 *   opset 12+:  ratio = optional input 1, training_mode = optional input 2
 *               (both scalars), seed attribute;      mask is bool
 *
 * Float64 mode (core/plan64.c) runs the same code with float64 for X, Y, a
 * non-bool mask and the ratio input: each entry point passes its float type
 * (ft) down, and MC sites draw the float32 path's masks and scale. */
#include <string.h>

#include "op.h"
#include "uncertainty/stochastic.h"

/* The settings a stochastic kernel would need, read for any opset. */
typedef struct dropout_settings {
    float ratio;
    bool training; /* the model itself asks for training behaviour */
} dropout_settings;

static const cd_tensor *optional_input(const cd_node *n, cd_tensor *const *in, int i)
{
    return i < n->n_inputs ? in[i] : NULL;
}

static cd_status dropout_settings_get(const cd_node *n, cd_tensor *const *in, cd_dtype ft,
                                      dropout_settings *s, cd_error *err)
{
    s->ratio = 0.5f;
    s->training = false;
    if (n->opset < 12) {
        s->ratio = cd_attr_float(n, "ratio", 0.5f);
        /* Before opset 7 is_test defaults to 0 (training), but exporters left
         * it unset on inference graphs; only an explicit 0 counts. */
        s->training = n->opset < 7 && cd_node_attr(n, "is_test") && cd_attr_int(n, "is_test", 0) == 0;
    } else {
        const cd_tensor *r = optional_input(n, in, 1), *t = optional_input(n, in, 2);
        if (r && r->data) {
            if (r->dtype != ft || cd_tensor_numel_raw(r) != 1)
                return cd_node_fail(n, err, CD_ERR_SHAPE, "ratio must be a %s scalar",
                                    cd_dtype_name(ft));
            /* float64 mode widened a float32 ratio: narrowing is exact */
            s->ratio = ft == CD_FLOAT64 ? (float)*cd_cf64(r) : *cd_cf32(r);
        }
        if (t && t->data) {
            if (t->dtype != CD_BOOL || cd_tensor_numel_raw(t) != 1)
                return cd_node_fail(n, err, CD_ERR_SHAPE, "training_mode must be a bool scalar");
            s->training = cd_tensor_int_at(t, 0) != 0;
        }
    }
    if (!(s->ratio >= 0.0f && s->ratio < 1.0f))
        return cd_node_fail(n, err, CD_ERR_INVALID_ARGUMENT, "ratio %g is outside [0, 1)",
                            (double)s->ratio);
    return CD_OK;
}

static cd_status dropout_infer(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                               cd_error *err)
{
    if (n->n_inputs < 1 || !in[0])
        return cd_node_fail(n, err, CD_ERR_PARSE, "input data is missing");
    if (in[0]->dtype != CD_FLOAT32)
        return cd_node_fail(n, err, CD_ERR_UNSUPPORTED, "element type %s is not supported",
                            cd_dtype_name(in[0]->dtype));
    dropout_settings s;
    cd_status st = dropout_settings_get(n, in, CD_FLOAT32, &s, err);
    if (st != CD_OK)
        return st;
    if (out[0])
        cd_tensor_set_shape(out[0], in[0]->dtype, in[0]->ndim, in[0]->dims);
    if (n->n_outputs > 1 && out[1])
        cd_tensor_set_shape(out[1], n->opset >= 10 ? CD_BOOL : in[0]->dtype, in[0]->ndim,
                            in[0]->dims);
    return CD_OK;
}

static void fill_mask_all_kept(cd_tensor *mask, size_t cnt)
{
    if (mask->dtype == CD_BOOL) {
        memset(mask->data, 1, cnt);
    } else if (mask->dtype == CD_FLOAT64) {
        for (size_t i = 0; i < cnt; i++)
            cd_f64(mask)[i] = 1.0;
    } else {
        for (size_t i = 0; i < cnt; i++)
            cd_f32(mask)[i] = 1.0f;
    }
}

static cd_status dropout_run(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                             cd_ctx *ctx, cd_dtype ft)
{
    dropout_settings s;
    cd_status st = dropout_settings_get(n, in, ft, &s, ctx->err);
    if (st != CD_OK)
        return st;
    if (in[0]->dtype != ft || out[0]->dtype != ft)
        return cd_node_fail(n, ctx->err, CD_ERR_UNSUPPORTED, "data of type %s (expected %s)",
                            cd_dtype_name(in[0]->dtype), cd_dtype_name(ft));
    cd_tensor *mask = n->n_outputs > 1 ? out[1] : NULL;
    size_t cnt = cd_tensor_numel_raw(in[0]);
    /* MC mode: a node the stochastic layer declared a site samples its mask
     * from the counter-based generator (uncertainty/stochastic.c); the
     * site's rate is the node's ratio unless the user overrode it. Other
     * Dropout nodes stay deterministic. */
    int site = cd_stochastic_site(ctx->stochastic, n);
    if (site >= 0 && ft == CD_FLOAT64)
        return cd_stochastic_dropout64(ctx->stochastic, site, n, in[0], out[0], mask, ctx->err);
    if (site >= 0)
        return cd_stochastic_dropout(ctx->stochastic, site, n, in[0], out[0], mask, ctx->err);
    /* Deterministic: identity, every element kept. */
    if (out[0]->data != in[0]->data)
        memcpy(out[0]->data, in[0]->data, cnt * cd_dtype_size(ft));
    if (mask)
        fill_mask_all_kept(mask, cnt);
    return CD_OK;
}

static cd_status dropout_forward(const cd_node *n, cd_tensor *const *in, cd_tensor **out,
                                 cd_ctx *ctx)
{
    return dropout_run(n, in, out, ctx, cd_is_f64(in[0]) ? CD_FLOAT64 : CD_FLOAT32);
}

/* Deterministic mode is the identity, so its Jacobian is too; a sampled
 * site scales by its mask. ratio and training_mode are not differentiable. */
static cd_status dropout_grad(const cd_node *n, cd_tensor *const *in, cd_tensor *const *gout,
                              cd_tensor **gin, cd_ctx *ctx, cd_dtype ft)
{
    if (!gout[0] || !gin[0])
        return CD_OK;
    if (gout[0]->dtype != ft || gin[0]->dtype != ft)
        return cd_node_fail(n, ctx->err, CD_ERR_UNSUPPORTED, "gradients of type %s (expected %s)",
                            cd_dtype_name(gout[0]->dtype), cd_dtype_name(ft));
    int site = cd_stochastic_site(ctx->stochastic, n);
    /* the same mask, recomputed from its counters */
    if (site >= 0 && ft == CD_FLOAT64)
        return cd_stochastic_dropout_backward64(ctx->stochastic, site, n, gout[0], gin[0],
                                                ctx->err);
    if (site >= 0)
        return cd_stochastic_dropout_backward(ctx->stochastic, site, n, gout[0], gin[0],
                                              ctx->err);
    size_t cnt = cd_tensor_numel_raw(in[0]);
    if (ft == CD_FLOAT64) {
        for (size_t i = 0; i < cnt; i++)
            cd_f64(gin[0])[i] += cd_cf64(gout[0])[i];
        return CD_OK;
    }
    for (size_t i = 0; i < cnt; i++)
        cd_f32(gin[0])[i] += cd_cf32(gout[0])[i];
    return CD_OK;
}

static cd_status dropout_backward(const cd_node *n, cd_tensor *const *in, cd_tensor *const *out,
                                  cd_tensor *const *gout, cd_tensor **gin, cd_ctx *ctx)
{
    CD_UNUSED(out);
    return dropout_grad(n, in, gout, gin, ctx, cd_is_f64(in[0]) ? CD_FLOAT64 : CD_FLOAT32);
}

const cd_op_def cd_opdef_DROPOUT = {"Dropout", 1, NULL, dropout_infer, dropout_forward,
                                    dropout_backward, dropout_forward, dropout_backward};
