/* Explanations under MC dropout and over ensembles: every sample's map is
 * computed with that sample's dropout masks (the explainer runs the MC
 * session's derived model with its counter-based masks, so a backward pass
 * replays exactly the forward pass's mask), then reduced to a mean and a
 * per-pixel std; and the saliency of predictive entropy and of mutual
 * information, whose gradient flows through all S samples at once. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain_internal.h"
#include "uncertainty/mc_internal.h"

typedef struct mc_member {
    cd_mc_session *mc; /* NULL: deterministic member */
    cd_explainer *e;
    uint64_t base;     /* sample index of this member's first sample */
} mc_member;

struct cd_explain_mc {
    int n;
    int T; /* samples per member */
    mc_member *m;
};

void cd_explain_mc_free(cd_explain_mc *u)
{
    if (!u)
        return;
    for (int i = 0; i < u->n; i++) {
        cd_explainer_free(u->m[i].e);
        cd_mc_session_free(u->m[i].mc);
    }
    free(u->m);
    free(u);
}

int cd_explain_mc_count(const cd_explain_mc *u) { return u ? u->n * u->T : 0; }

static cd_status make_member(const cd_model *model, const cd_mc_options *mc,
                             const cd_explain_options *eo, int index, mc_member *out,
                             cd_error *err)
{
    if (!mc)
        return cd_explainer_create(model, eo, &out->e, err);
    cd_status st = cd_mc_session_create(model, mc, &out->mc, err);
    if (st == CD_OK)
        st = cd_explainer_create(mc_session_derived(out->mc), eo, &out->e, err);
    if (st != CD_OK)
        return st;
    cd_stochastic s;
    mc_session_stochastic(out->mc, &s);
    out->base = (uint64_t)index * (uint64_t)mc_session_samples(out->mc);
    return ex_set_stochastic(out->e, &s, err);
}

cd_status cd_explain_mc_create(int n_models, const cd_model *const *models,
                               const cd_mc_options *mc, const cd_explain_options *eo,
                               cd_explain_mc **out, cd_error *err)
{
    if (!out || n_models < 1 || !models)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_explain_mc_create: need >= 1 model");
    *out = NULL;
    if (mc && mc->samples < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "the number of MC samples must be at least 1 (got %d)", mc->samples);
    cd_explain_mc *u = calloc(1, sizeof *u);
    if (!u || !(u->m = calloc((size_t)n_models, sizeof *u->m))) {
        free(u);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    u->T = mc ? mc->samples : 1;
    cd_status st = CD_OK;
    for (int i = 0; i < n_models && st == CD_OK; i++, u->n++)
        st = make_member(models[i], mc, eo, i, &u->m[i], err);
    if (st != CD_OK) {
        cd_explain_mc_free(u);
        return st;
    }
    *out = u;
    return CD_OK;
}

void cd_mc_explanation_free(cd_mc_explanation *ex)
{
    if (!ex)
        return;
    cd_tensor_free(ex->samples);
    cd_tensor_free(ex->mean);
    cd_tensor_free(ex->std);
    cd_tensor_free(ex->entropy_saliency);
    cd_tensor_free(ex->mi_saliency);
    free(ex->scores);
    memset(ex, 0, sizeof *ex);
}

/* ------------------------------------------------------------ sampled logits */

/* The S sampled pre-softmax outputs: row t holds k classes x s positions. */
typedef struct mc_logits {
    int S;
    int64_t k;
    size_t s;
    float *z;       /* S x k x s */
    uint8_t *mask;  /* s: positions in the region */
    double *pbar;   /* k x s: mean softmax over samples */
} mc_logits;

static void mc_logits_free(mc_logits *l)
{
    free(l->z);
    free(l->mask);
    free(l->pbar);
}

/* x repeated T times along the batch axis. */
static cd_status tile(const cd_tensor *x, int T, cd_tensor **out, cd_error *err)
{
    cd_status st = ex_batch_like(x, T, out, err);
    size_t n = ex_row_numel(x);
    for (int t = 0; st == CD_OK && t < T; t++)
        memcpy(cd_f32(*out) + (size_t)t * n, cd_cf32(x), n * sizeof(float));
    return st;
}

/* Softmax over the k classes of position j of a k x s row, into p. */
static void softmax_at(const float *z, int64_t k, size_t s, size_t j, double *p)
{
    double mx = z[j], sum = 0;
    for (int64_t c = 1; c < k; c++)
        mx = fmax(mx, z[(size_t)c * s + j]);
    for (int64_t c = 0; c < k; c++)
        sum += p[c] = exp(z[(size_t)c * s + j] - mx);
    for (int64_t c = 0; c < k; c++)
        p[c] /= sum;
}

static double entropy_of(const double *p, int64_t k)
{
    double h = 0;
    for (int64_t c = 0; c < k; c++)
        if (p[c] > 0)
            h -= p[c] * log(p[c]);
    return h;
}

static cd_status copy_member_logits(mc_logits *l, const cd_tensor *y, int t0, int T,
                                    cd_error *err)
{
    int64_t k = y->ndim >= 2 ? y->dims[1] : 1;
    size_t s = 1;
    for (int d = 2; d < y->ndim; d++)
        s *= (size_t)y->dims[d];
    if (y->dtype != CD_FLOAT32 || y->ndim < 1 || y->dims[0] != T)
        return cd_fail(err, CD_ERR_SHAPE, "sampled output has no batch axis of %d samples", T);
    if (!l->z) {
        l->k = k;
        l->s = s;
        l->z = malloc((size_t)l->S * (size_t)k * s * sizeof(float));
        if (!l->z)
            return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    } else if (k != l->k || s != l->s) {
        return cd_fail(err, CD_ERR_SHAPE,
                       "ensemble members disagree on the output shape (%lld x %zu vs %lld x %zu)",
                       (long long)k, s, (long long)l->k, l->s);
    }
    memcpy(l->z + (size_t)t0 * (size_t)k * s, y->data, (size_t)T * (size_t)k * s * sizeof(float));
    return CD_OK;
}

/* Runs every member's T samples forward (one batched pass per member). */
static cd_status sample_logits(cd_explain_mc *u, const cd_tensor *x, const cd_objective *obj,
                               mc_logits *l, cd_error *err)
{
    cd_tensor *xt = NULL;
    cd_status st = tile(x, u->T, &xt, err);
    for (int i = 0; st == CD_OK && i < u->n; i++) {
        cd_tensor *y = NULL;
        ex_select_samples(u->m[i].e, u->m[i].base, true);
        st = ex_forward_value(u->m[i].e, xt, obj, &y, err);
        if (st == CD_OK)
            st = copy_member_logits(l, y, i * u->T, u->T, err);
        if (st == CD_OK && !l->mask)
            st = ex_region_mask(obj, y, l->s, &l->mask, err);
        cd_tensor_free(y);
    }
    cd_tensor_free(xt);
    return st;
}

/* p̄, H[p̄], expected entropy and MI summed over the region's positions. */
static cd_status summarise(mc_logits *l, cd_mc_explanation *out, cd_error *err)
{
    size_t ks = (size_t)l->k * l->s;
    l->pbar = calloc(ks, sizeof *l->pbar);
    double *p = malloc((size_t)l->k * sizeof *p), *pb = malloc((size_t)l->k * sizeof *pb);
    if (!l->pbar || !p || !pb) {
        free(p);
        free(pb);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    double eh = 0, h = 0;
    for (int t = 0; t < l->S; t++)
        for (size_t j = 0; j < l->s; j++) {
            softmax_at(l->z + (size_t)t * ks, l->k, l->s, j, p);
            for (int64_t c = 0; c < l->k; c++)
                l->pbar[(size_t)c * l->s + j] += p[c] / l->S;
            if (l->mask[j])
                eh += entropy_of(p, l->k) / l->S;
        }
    for (size_t j = 0; j < l->s; j++) {
        for (int64_t c = 0; c < l->k && l->mask[j]; c++)
            pb[c] = l->pbar[(size_t)c * l->s + j];
        if (l->mask[j])
            h += entropy_of(pb, l->k);
    }
    out->predictive_entropy = h;
    out->expected_entropy = eh;
    out->mutual_information = h - eh;
    free(p);
    free(pb);
    return CD_OK;
}

/* The class explained: as given, else the argmax of p̄ summed over the
 * region (lowest index on ties). */
static cd_status pick_target(const mc_logits *l, int given, int *target, cd_error *err)
{
    if (given >= 0) {
        if (given >= l->k)
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                           "target class %d is outside the %lld classes of the output", given,
                           (long long)l->k);
        *target = given;
        return CD_OK;
    }
    double best = -1;
    for (int64_t c = 0; c < l->k; c++) {
        double m = 0;
        for (size_t j = 0; j < l->s; j++)
            if (l->mask[j])
                m += l->pbar[(size_t)c * l->s + j];
        if (m > best) {
            best = m;
            *target = (int)c;
        }
    }
    return CD_OK;
}

/* ------------------------------------------------------------ per-sample maps */

static cd_status new_samples(cd_mc_explanation *out, const cd_tensor *map, cd_error *err)
{
    int64_t dims[CD_MAX_DIMS];
    memcpy(dims, map->dims, sizeof dims);
    dims[0] = out->n_samples;
    return cd_tensor_create(CD_FLOAT32, map->ndim, dims, &out->samples, err);
}

/* Gradient-type methods without inner loops: the member's T samples are the
 * rows of one batch (row t uses sample base + t). */
static cd_status batched_gradients(cd_explain_mc *u, int i, const cd_tensor *x,
                                   const cd_explain_params *p, const cd_objective *obj,
                                   cd_mc_explanation *out, cd_error *err)
{
    cd_tensor *xt = NULL, *g = NULL;
    mc_member *m = &u->m[i];
    ex_select_samples(m->e, m->base, true);
    cd_status st = tile(x, u->T, &xt, err);
    if (st == CD_OK)
        st = cd_explain_gradient(m->e, xt, obj, 1, NULL, &g, NULL, out->scores + i * u->T, err);
    if (st == CD_OK && !out->samples)
        st = new_samples(out, x, err);
    size_t n = ex_row_numel(x);
    for (int t = 0; st == CD_OK && t < u->T; t++) {
        float *dst = cd_f32(out->samples) + (size_t)(i * u->T + t) * n;
        for (size_t j = 0; j < n; j++)
            dst[j] = cd_cf32(g)[(size_t)t * n + j] *
                     (p->method == CD_EXPLAIN_GRADXINPUT ? cd_cf32(x)[j] : 1.0f);
    }
    cd_tensor_free(xt);
    cd_tensor_free(g);
    return st;
}

/* Any method, one sample at a time: every pass of the method uses the
 * sample's masks for all its rows. */
static cd_status looped_method(cd_explain_mc *u, int i, const cd_tensor *x,
                               const cd_explain_params *p, cd_mc_explanation *out,
                               cd_error *err)
{
    mc_member *m = &u->m[i];
    cd_status st = CD_OK;
    for (int t = 0; st == CD_OK && t < u->T; t++) {
        cd_explanation ex = {0};
        ex_select_samples(m->e, m->base + (uint64_t)t, false);
        st = cd_explain(m->e, x, p, &ex, err);
        if (st == CD_OK && !out->samples)
            st = new_samples(out, ex.map, err);
        if (st == CD_OK && cd_tensor_numel(ex.map) * (size_t)out->n_samples !=
                               cd_tensor_numel(out->samples))
            st = cd_fail(err, CD_ERR_SHAPE, "ensemble members give maps of different sizes");
        if (st == CD_OK) {
            size_t n = cd_tensor_numel(ex.map);
            memcpy(cd_f32(out->samples) + (size_t)(i * u->T + t) * n, ex.map->data,
                   n * sizeof(float));
            out->scores[i * u->T + t] = ex.score;
            out->layer = ex.layer;
        }
        cd_explanation_free(&ex);
    }
    return st;
}

static cd_status mean_std(cd_mc_explanation *out, cd_error *err)
{
    const cd_tensor *s = out->samples;
    int64_t dims[CD_MAX_DIMS];
    memcpy(dims, s->dims, sizeof dims);
    dims[0] = 1;
    cd_status st = cd_tensor_create(CD_FLOAT32, s->ndim, dims, &out->mean, err);
    if (st == CD_OK)
        st = cd_tensor_create(CD_FLOAT32, s->ndim, dims, &out->std, err);
    size_t n = st == CD_OK ? cd_tensor_numel(out->mean) : 0;
    for (size_t j = 0; j < n; j++) {
        double sum = 0, sum2 = 0;
        for (int t = 0; t < out->n_samples; t++) {
            double v = cd_cf32(s)[(size_t)t * n + j];
            sum += v;
            sum2 += v * v;
        }
        double mean = sum / out->n_samples;
        double var = fmax(0.0, sum2 / out->n_samples - mean * mean);
        /* Two-pass variance where it matters: a tiny spread on a large mean. */
        if (var < 1e-6 * mean * mean) {
            var = 0;
            for (int t = 0; t < out->n_samples; t++) {
                double d = cd_cf32(s)[(size_t)t * n + j] - mean;
                var += d * d / out->n_samples;
            }
        }
        cd_f32(out->mean)[j] = (float)mean;
        cd_f32(out->std)[j] = (float)sqrt(var);
    }
    return st;
}

/* ------------------------------------------------------------ entropy / MI */

typedef struct unc_seed {
    const mc_logits *l;
    bool mi;   /* objective MI instead of H[p̄] */
    double *p; /* k scratch */
} unc_seed;

/* d/dz_t of H[p̄] = (1/S) p_t ⊙ (Σ_c p_tc ln p̄_c − ln p̄), plus for MI the
 * derivative of −(1/S) H[p_t]: (1/S) p_t ⊙ (ln p_t + H[p_t]); per region
 * position, over the class axis. */
static cd_status unc_seed_fn(void *ctx, const cd_tensor *y, int64_t start, cd_tensor *seed,
                             cd_error *err)
{
    (void)start;
    unc_seed *u = ctx;
    const mc_logits *l = u->l;
    size_t ks = (size_t)l->k * l->s;
    if (cd_tensor_numel(y) != (size_t)y->dims[0] * ks)
        return cd_fail(err, CD_ERR_SHAPE, "sampled output changed shape");
    for (int64_t r = 0; r < y->dims[0]; r++)
        for (size_t j = 0; j < l->s; j++) {
            if (!l->mask[j])
                continue;
            softmax_at(cd_cf32(y) + (size_t)r * ks, l->k, l->s, j, u->p);
            double cross = 0, h = entropy_of(u->p, l->k);
            for (int64_t c = 0; c < l->k; c++)
                if (u->p[c] > 0)
                    cross += u->p[c] * log(l->pbar[(size_t)c * l->s + j]);
            for (int64_t c = 0; c < l->k; c++) {
                double pc = u->p[c];
                if (pc <= 0)
                    continue;
                double d = pc * (cross - log(l->pbar[(size_t)c * l->s + j]));
                if (u->mi)
                    d += pc * (log(pc) + h);
                cd_f32(seed)[(size_t)r * ks + (size_t)c * l->s + j] = (float)(d / l->S);
            }
        }
    return CD_OK;
}

/* Input gradient of H[p̄] (or MI): the sum over every member's sample rows. */
static cd_status uncertainty_saliency(cd_explain_mc *u, const cd_tensor *x,
                                      const cd_objective *obj, const mc_logits *l, bool mi,
                                      cd_tensor **out, cd_error *err)
{
    unc_seed sctx = {l, mi, malloc((size_t)l->k * sizeof(double))};
    cd_tensor *xt = NULL;
    cd_status st = sctx.p ? tile(x, u->T, &xt, err)
                          : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st == CD_OK)
        st = cd_tensor_create(CD_FLOAT32, x->ndim, x->dims, out, err);
    size_t n = ex_row_numel(x);
    for (int i = 0; st == CD_OK && i < u->n; i++) {
        cd_tensor *g = NULL;
        ex_select_samples(u->m[i].e, u->m[i].base, true);
        st = ex_gradient_seeded(u->m[i].e, xt, obj, unc_seed_fn, &sctx, &g, err);
        for (int t = 0; st == CD_OK && t < u->T; t++)
            for (size_t j = 0; j < n; j++)
                cd_f32(*out)[j] += cd_cf32(g)[(size_t)t * n + j];
        cd_tensor_free(g);
    }
    free(sctx.p);
    cd_tensor_free(xt);
    return st;
}

/* ------------------------------------------------------------ entry point */

static cd_status run(cd_explain_mc *u, const cd_tensor *x, const cd_explain_params *p,
                     cd_mc_explanation *out, cd_error *err)
{
    mc_logits l = {.S = out->n_samples};
    cd_objective obj = p->objective;
    cd_status st = sample_logits(u, x, &obj, &l, err);
    if (st == CD_OK)
        st = summarise(&l, out, err);
    if (st == CD_OK)
        st = pick_target(&l, obj.kind == CD_OBJECTIVE_SUM ? 0 : obj.target, &out->target, err);
    obj.target = out->target;
    cd_explain_params pp = *p;
    pp.objective = obj;
    bool batched = p->method == CD_EXPLAIN_GRADIENT || p->method == CD_EXPLAIN_GRADXINPUT;
    for (int i = 0; st == CD_OK && i < u->n; i++)
        st = batched ? batched_gradients(u, i, x, p, &obj, out, err)
                     : looped_method(u, i, x, &pp, out, err);
    if (st == CD_OK)
        st = mean_std(out, err);
    /* Entropy needs class probabilities; a SUM (regression) head has none. */
    cd_objective logit = obj;
    logit.kind = CD_OBJECTIVE_LOGIT;
    if (st == CD_OK && obj.kind != CD_OBJECTIVE_SUM && l.k > 1) {
        st = uncertainty_saliency(u, x, &logit, &l, false, &out->entropy_saliency, err);
        if (st == CD_OK)
            st = uncertainty_saliency(u, x, &logit, &l, true, &out->mi_saliency, err);
    }
    mc_logits_free(&l);
    return st;
}

cd_status cd_explain_mc_run(cd_explain_mc *u, const cd_tensor *x, const cd_explain_params *p,
                            cd_mc_explanation *out, cd_error *err)
{
    if (!u || !x || !p || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_explain_mc_run: NULL argument");
    memset(out, 0, sizeof *out);
    if (x->dtype != CD_FLOAT32 || x->ndim < 2 || x->dims[0] != 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "cd_explain_mc_run: x must be a float32 tensor with batch 1");
    out->n_samples = u->n * u->T;
    out->scores = calloc((size_t)out->n_samples, sizeof *out->scores);
    cd_status st = out->scores ? run(u, x, p, out, err)
                               : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    if (st != CD_OK)
        cd_mc_explanation_free(out);
    return st;
}
