/* Adversarial robustness: FGSM and PGD (L-infinity, untargeted) on the
 * cross-entropy of the true label, the valid input range implied by the
 * preprocessing, and a rank AUROC for telling attacked inputs from clean
 * ones by an uncertainty score. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain_internal.h"

cd_status cd_explain_input_range(const cd_model *model, int channels, float *lo, float *hi,
                                 cd_error *err)
{
    if (!model || !lo || !hi || channels < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_explain_input_range: bad argument");
    cd_preprocess pp;
    cd_model_preprocess(model, &pp);
    /* scale 0 or 1 leaves the 8-bit values alone (cd_image_to_tensor). */
    double top = pp.scale > 0 && pp.scale != 1 ? 255.0 / pp.scale : 255.0;
    for (int c = 0; c < channels; c++) {
        int k = pp.color == CD_COLOR_GRAY || c > 2 ? 0 : c;
        double sd = pp.std[k] != 0 ? pp.std[k] : 1.0;
        double a = (0.0 - pp.mean[k]) / sd, b = (top - pp.mean[k]) / sd;
        lo[c] = (float)fmin(a, b);
        hi[c] = (float)fmax(a, b);
    }
    return CD_OK;
}

void cd_attack_params_default(cd_attack_params *p, cd_attack_kind kind)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->eps = 0.1f;
    p->steps = 10;
}

/* d(-ln softmax(z)[y])/dz = softmax(z) - onehot(y), per row. */
typedef struct ce_ctx {
    const int *labels;
} ce_ctx;

static cd_status ce_seed(void *vctx, const cd_tensor *y, int64_t start, cd_tensor *seed,
                         cd_error *err)
{
    const ce_ctx *ctx = vctx;
    if (y->ndim != 2)
        return cd_fail(err, CD_ERR_UNSUPPORTED,
                       "attacks need an (N, classes) output; this one has %d axes", y->ndim);
    int64_t k = y->dims[1];
    const float *z = cd_tensor_cdata(y);
    float *g = cd_tensor_data(seed);
    for (int64_t b = 0; b < y->dims[0]; b++) {
        int lab = ctx->labels[start + b];
        if (lab < 0 || lab >= k)
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "label %d of row %lld is outside the "
                           "%lld classes", lab, (long long)(start + b), (long long)k);
        const float *zr = z + b * k;
        double mx = zr[0], sum = 0;
        for (int64_t c = 1; c < k; c++)
            mx = fmax(mx, zr[c]);
        for (int64_t c = 0; c < k; c++)
            sum += exp(zr[c] - mx);
        for (int64_t c = 0; c < k; c++)
            g[b * k + c] = (float)(exp(zr[c] - mx) / sum - (c == lab ? 1.0 : 0.0));
    }
    return CD_OK;
}

static float sign_of(float g) { return g > 0 ? 1.0f : g < 0 ? -1.0f : 0.0f; }

/* One signed step of size step from cur, projected on the eps ball around x
 * (when eps > 0) and clipped to the valid range. */
static void signed_step(const cd_tensor *x, const cd_tensor *grad, float step, float eps,
                        const cd_attack_params *p, cd_tensor *cur)
{
    const float *xv = cd_tensor_cdata(x), *gv = cd_tensor_cdata(grad);
    float *cv = cd_tensor_data(cur);
    int64_t n = cd_tensor_dims(x)[0], c = cd_tensor_ndim(x) > 1 ? cd_tensor_dims(x)[1] : 1;
    size_t plane = cd_tensor_numel(x) / (size_t)(n * c);
    for (size_t i = 0; i < cd_tensor_numel(x); i++) {
        float v = cv[i] + step * sign_of(gv[i]);
        if (eps > 0)
            v = fminf(fmaxf(v, xv[i] - eps), xv[i] + eps);
        if (p->clip_lo && p->clip_hi) {
            size_t ch = (i / plane) % (size_t)c;
            v = fminf(fmaxf(v, p->clip_lo[ch]), p->clip_hi[ch]);
        }
        cv[i] = v;
    }
}

static cd_status ce_gradient(cd_explainer *e, const cd_tensor *x, const int *labels,
                             cd_tensor **grad, cd_error *err)
{
    cd_objective obj;
    cd_objective_default(&obj);
    ce_ctx ctx = {labels};
    return ex_gradient_seeded(e, x, &obj, ce_seed, &ctx, grad, err);
}

/* PGD's random start: uniform noise in the eps ball, clipped. */
static void random_start(const cd_tensor *x, const cd_attack_params *p, cd_tensor *cur)
{
    ex_rng rng = {p->seed ^ 0x5047445241ull};
    cd_tensor *noise = NULL;
    if (cd_tensor_clone(x, &noise, NULL) != CD_OK)
        return;
    float *nv = cd_tensor_data(noise);
    for (size_t i = 0; i < cd_tensor_numel(x); i++)
        nv[i] = (float)(2.0 * ex_rng_uniform(&rng) - 1.0);
    float *cv = cd_tensor_data(cur);
    for (size_t i = 0; i < cd_tensor_numel(x); i++)
        cv[i] += p->eps * nv[i];
    signed_step(x, noise, 0.0f, p->eps, p, cur); /* a zero step: project and clip */
    cd_tensor_free(noise);
}

cd_status cd_attack(cd_explainer *e, const cd_tensor *x, const int *labels,
                    const cd_attack_params *p, cd_tensor **adv, cd_error *err)
{
    if (!e || !x || !labels || !p || !adv)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_attack: NULL argument");
    *adv = NULL;
    if (!(p->eps >= 0) || !isfinite(p->eps))
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "attack: eps must be >= 0 (got %g)",
                       (double)p->eps);
    if (p->kind == CD_ATTACK_PGD && p->steps < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "attack: PGD needs steps >= 1");
    cd_tensor *cur = NULL, *g = NULL;
    cd_status st = cd_tensor_clone(x, &cur, err);
    if (st != CD_OK)
        return st;
    if (p->kind == CD_ATTACK_FGSM) {
        st = ce_gradient(e, x, labels, &g, err);
        if (st == CD_OK)
            signed_step(x, g, p->eps, 0.0f, p, cur);
    } else {
        float alpha = p->alpha > 0 ? p->alpha : 2.5f * p->eps / (float)p->steps;
        if (p->random_start)
            random_start(x, p, cur);
        for (int t = 0; st == CD_OK && t < p->steps; t++) {
            cd_tensor_free(g);
            g = NULL;
            st = ce_gradient(e, cur, labels, &g, err);
            if (st == CD_OK)
                signed_step(x, g, alpha, p->eps, p, cur);
        }
    }
    cd_tensor_free(g);
    if (st != CD_OK) {
        cd_tensor_free(cur);
        return st;
    }
    *adv = cur;
    return CD_OK;
}

/* ------------------------------------------------------------ AUROC */

typedef struct scored {
    double v;
    int pos;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    double x = ((const scored *)a)->v, y = ((const scored *)b)->v;
    return (x > y) - (x < y);
}

double cd_auroc(const double *negatives, size_t n_neg, const double *positives, size_t n_pos)
{
    if (!n_neg || !n_pos || !negatives || !positives)
        return NAN;
    size_t n = n_neg + n_pos;
    scored *s = malloc(n * sizeof *s);
    if (!s)
        return NAN;
    for (size_t i = 0; i < n_neg; i++)
        s[i] = (scored){negatives[i], 0};
    for (size_t i = 0; i < n_pos; i++)
        s[n_neg + i] = (scored){positives[i], 1};
    qsort(s, n, sizeof *s, cmp_scored);
    /* Sum of the positives' average ranks (1-based), ties sharing a rank. */
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[j].v == s[i].v)
            j++;
        double avg = 0.5 * (double)(i + 1 + j);
        for (size_t k = i; k < j; k++)
            rank_sum += s[k].pos ? avg : 0;
        i = j;
    }
    free(s);
    double u = rank_sum - 0.5 * (double)n_pos * (double)(n_pos + 1);
    return u / ((double)n_pos * (double)n_neg);
}
