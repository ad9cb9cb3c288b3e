/* Model-randomisation sanity check (Adebayo et al. 2018): a saliency method
 * that ignores the model's weights gives the same map when the top layers
 * are randomised. The shared model is never touched: the check runs on a
 * shallow copy whose value array is new and whose randomised initializers
 * are new tensors (the same "derived model" idea as uncertainty/sites.c,
 * minus the node rewiring: nodes, names and every other initializer are
 * borrowed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "explain_internal.h"

typedef struct randomised {
    cd_model m;          /* values array owned; everything else borrowed */
    cd_tensor **owned;   /* new initializers */
    int n_owned;
} randomised;

static void randomised_free(randomised *r)
{
    for (int i = 0; i < r->n_owned; i++)
        cd_tensor_free(r->owned[i]);
    free(r->owned);
    free(r->m.values);
    memset(r, 0, sizeof *r);
}

/* Float32 initializer inputs of node n (the node's parameters). */
static bool is_param(const cd_model *m, const cd_node *n, int k)
{
    int v = n->inputs[k];
    return v >= 0 && m->values[v].init && m->values[v].init->dtype == CD_FLOAT32 &&
           m->values[v].init->data;
}

static bool has_params(const cd_model *m, const cd_node *n)
{
    for (int k = 0; k < n->n_inputs; k++)
        if (is_param(m, n, k))
            return true;
    return false;
}

/* Redraws initializer value v: N(0, s^2), s the original's population std. */
static cd_status redraw(randomised *r, int v, ex_rng *rng, cd_error *err)
{
    const cd_tensor *src = r->m.values[v].init;
    cd_tensor *t = NULL;
    cd_status st = cd_tensor_clone(src, &t, err);
    if (st != CD_OK)
        return st;
    r->owned[r->n_owned++] = t;
    size_t n = cd_tensor_numel(t);
    double sum = 0, sum2 = 0;
    for (size_t i = 0; i < n; i++) {
        sum += cd_cf32(src)[i];
        sum2 += (double)cd_cf32(src)[i] * cd_cf32(src)[i];
    }
    double mean = n ? sum / n : 0, sd = n ? sqrt(fmax(0.0, sum2 / n - mean * mean)) : 0;
    if (!(sd > 0))
        sd = 0.01; /* constant tensors (biases of 0) still get randomised */
    for (size_t i = 0; i < n; i++)
        cd_f32(t)[i] = (float)(sd * ex_rng_normal(rng));
    r->m.values[v].init = t;
    return CD_OK;
}

static cd_status append_name(char **list, const char *name, cd_error *err)
{
    size_t old = *list ? strlen(*list) : 0, add = strlen(name) + 2;
    char *s = realloc(*list, old + add + 1);
    if (!s)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    snprintf(s + old, add + 1, "%s%s", old ? "," : "", name);
    *list = s;
    return CD_OK;
}

static cd_status build_randomised(const cd_model *orig, int layers, uint64_t seed,
                                  randomised *r, cd_sanity_result *out, cd_error *err)
{
    r->m = *orig;
    r->m.values = malloc(((size_t)orig->n_values + 1) * sizeof *r->m.values);
    r->owned = calloc((size_t)orig->n_values + 1, sizeof *r->owned);
    if (!r->m.values || !r->owned)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(r->m.values, orig->values, (size_t)orig->n_values * sizeof *orig->values);
    bool *done = calloc((size_t)orig->n_values + 1, sizeof *done);
    if (!done)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    ex_rng rng = {seed ^ 0x53414e49ull};
    cd_status st = CD_OK;
    for (int i = orig->n_nodes - 1; i >= 0 && st == CD_OK && out->n_layers < layers; i--) {
        const cd_node *n = &orig->nodes[i];
        if (!has_params(orig, n))
            continue;
        for (int k = 0; k < n->n_inputs && st == CD_OK; k++)
            if (is_param(orig, n, k) && !done[n->inputs[k]]) {
                done[n->inputs[k]] = true;
                st = redraw(r, n->inputs[k], &rng, err);
            }
        if (st == CD_OK)
            st = append_name(&out->layers, n->name, err);
        out->n_layers++;
    }
    free(done);
    if (st == CD_OK && out->n_layers == 0)
        st = cd_fail(err, CD_ERR_UNSUPPORTED,
                     "sanity check: the model has no node with float32 weights to randomise");
    return st;
}

void cd_sanity_result_free(cd_sanity_result *r)
{
    if (!r)
        return;
    free(r->layers);
    cd_tensor_free(r->random_map);
    memset(r, 0, sizeof *r);
}

/* Average ranks (1-based) of v, ties sharing the mean of their positions. */
static void ranks(const float *v, size_t n, size_t *idx, double *rank)
{
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    /* Shell sort of indices by value: no global state for a qsort context. */
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++)
            for (size_t j = i; j >= gap && v[idx[j - gap]] > v[idx[j]]; j -= gap) {
                size_t t = idx[j];
                idx[j] = idx[j - gap];
                idx[j - gap] = t;
            }
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && v[idx[j + 1]] == v[idx[i]])
            j++;
        for (size_t k = i; k <= j; k++)
            rank[idx[k]] = (i + j) / 2.0 + 1;
        i = j + 1;
    }
}

double cd_spearman(const float *a, const float *b, size_t n)
{
    size_t *idx = malloc((n + 1) * sizeof *idx);
    double *ra = malloc((n + 1) * sizeof *ra), *rb = malloc((n + 1) * sizeof *rb);
    double r = NAN;
    if (idx && ra && rb && n > 1) {
        ranks(a, n, idx, ra);
        ranks(b, n, idx, rb);
        /* Pearson correlation of the ranks (exact with ties). */
        double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
        for (size_t i = 0; i < n; i++) {
            ma += ra[i] / n;
            mb += rb[i] / n;
        }
        for (size_t i = 0; i < n; i++) {
            sab += (ra[i] - ma) * (rb[i] - mb);
            saa += (ra[i] - ma) * (ra[i] - ma);
            sbb += (rb[i] - mb) * (rb[i] - mb);
        }
        if (saa > 0 && sbb > 0)
            r = sab / sqrt(saa * sbb);
    }
    free(idx);
    free(ra);
    free(rb);
    return r;
}

static bool gradient_type(cd_explain_method m)
{
    return m == CD_EXPLAIN_GRADIENT || m == CD_EXPLAIN_GRADXINPUT ||
           m == CD_EXPLAIN_SMOOTHGRAD || m == CD_EXPLAIN_IG;
}

/* Spearman of the 2-D saliencies of two maps (the raw maps when they have
 * no 2-D form, e.g. 1-D inputs). */
static cd_status compare(const cd_tensor *a, const cd_tensor *b, cd_explain_method method,
                         double *rho, cd_error *err)
{
    cd_tensor *sa = NULL, *sb = NULL;
    bool two_d = a->ndim == 4 || a->ndim == 3;
    cd_status st = CD_OK;
    if (two_d) {
        st = cd_explain_saliency_2d(a, gradient_type(method), &sa, err);
        if (st == CD_OK)
            st = cd_explain_saliency_2d(b, gradient_type(method), &sb, err);
    }
    if (st == CD_OK) {
        const cd_tensor *x = two_d ? sa : a, *y = two_d ? sb : b;
        *rho = cd_spearman(cd_cf32(x), cd_cf32(y), cd_tensor_numel(x));
    }
    cd_tensor_free(sa);
    cd_tensor_free(sb);
    return st;
}

cd_status cd_explain_sanity(const cd_model *model, const cd_explain_options *eo,
                            const cd_tensor *x, const cd_explain_params *p,
                            const cd_explanation *ex, int layers, uint64_t seed,
                            cd_sanity_result *out, cd_error *err)
{
    if (!model || !x || !p || !ex || !ex->map || !out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_explain_sanity: NULL argument");
    memset(out, 0, sizeof *out);
    if (layers < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "sanity check: the number of randomised layers must be >= 1 (got %d)",
                       layers);
    randomised r = {0};
    cd_explainer *e = NULL;
    cd_explanation rex = {0};
    cd_explain_params rp = *p;
    rp.objective.target = ex->target; /* explain the same class */
    cd_status st = build_randomised(model, layers, seed, &r, out, err);
    if (st == CD_OK)
        st = cd_explainer_create(&r.m, eo, &e, err);
    if (st == CD_OK)
        st = cd_explain(e, x, &rp, &rex, err);
    if (st == CD_OK)
        st = compare(ex->map, rex.map, p->method, &out->spearman, err);
    if (st == CD_OK) {
        out->random_map = rex.map;
        rex.map = NULL;
    }
    cd_explanation_free(&rex);
    cd_explainer_free(e);
    randomised_free(&r);
    if (st != CD_OK)
        cd_sanity_result_free(out);
    return st;
}
