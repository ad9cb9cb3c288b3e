/* Surrogate rules: interpretable features of a model's inputs and a CART
 * decision tree (Gini impurity) that distils the model's predictions into
 * readable if-then rules. The split search follows scikit-learn's
 * DecisionTreeClassifier with splitter="best" (see docs/interpretability.md)
 * so that the two can be compared on the same features. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "explain_internal.h"

/* Two feature values closer than this are the same value (scikit-learn's
 * FEATURE_THRESHOLD): no threshold is placed between them. */
#define TREE_FEATURE_EPS 1e-7f

/* ------------------------------------------------------------ features */

static cd_status resolve_layer(cd_explainer *e, const cd_tensor *x, const char *layer,
                               const char **name, cd_error *err)
{
    if (!layer)
        return cd_explain_default_layer(e, x, name, err);
    int v = cd_model_find_value(e->model, layer);
    if (v < 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has no tensor named '%s'", layer);
    *name = e->model->values[v].name;
    return CD_OK;
}

/* Mean over the positions of each channel of an (N, C, ...) value. */
static cd_status pooled_features(const cd_tensor *a, const char *name, cd_tensor **out,
                                 cd_error *err)
{
    if (a->ndim < 2)
        return cd_fail(err, CD_ERR_SHAPE, "layer '%s' has %d axes; pooled features need "
                       "(N, C, ...)", name, a->ndim);
    int64_t n = a->dims[0], c = a->dims[1];
    size_t pos = ex_row_numel(a) / (size_t)c;
    int64_t dims[2] = {n, c};
    cd_status st = cd_tensor_create(CD_FLOAT32, 2, dims, out, err);
    if (st != CD_OK)
        return st;
    const float *src = cd_f32((cd_tensor *)a);
    float *dst = cd_f32(*out);
    for (int64_t i = 0; i < n * c; i++) {
        double s = 0;
        for (size_t p = 0; p < pos; p++)
            s += src[(size_t)i * pos + p];
        dst[i] = (float)(s / (double)pos);
    }
    return CD_OK;
}

cd_status cd_surrogate_grid_features(const cd_tensor *x, int grid, cd_tensor **out,
                                     cd_error *err)
{
    if (!x || !out || x->dtype != CD_FLOAT32 || x->ndim != 4)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "grid features need a float32 (N, C, H, W) input");
    int64_t n = x->dims[0], c = x->dims[1], h = x->dims[2], w = x->dims[3];
    if (grid < 1 || grid > h || grid > w)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "grid %d must lie in [1, min(H, W) = %lld]",
                       grid, (long long)(h < w ? h : w));
    int64_t dims[2] = {n, (int64_t)grid * grid};
    cd_status st = cd_tensor_create(CD_FLOAT32, 2, dims, out, err);
    if (st != CD_OK)
        return st;
    const float *src = x->data;
    float *dst = cd_f32(*out);
    for (int64_t b = 0; b < n; b++)
        for (int gi = 0; gi < grid; gi++)
            for (int gj = 0; gj < grid; gj++) {
                /* Cell (gi, gj): rows [gi H / G, (gi + 1) H / G), columns alike. */
                int64_t r0 = gi * h / grid, r1 = (gi + 1) * h / grid;
                int64_t c0 = gj * w / grid, c1 = (gj + 1) * w / grid;
                double s = 0;
                for (int64_t ch = 0; ch < c; ch++)
                    for (int64_t r = r0; r < r1; r++)
                        for (int64_t q = c0; q < c1; q++)
                            s += src[((b * c + ch) * h + r) * w + q];
                dst[b * grid * grid + gi * grid + gj] =
                    (float)(s / (double)(c * (r1 - r0) * (c1 - c0)));
            }
    return CD_OK;
}

cd_status cd_surrogate_features(cd_explainer *e, const cd_tensor *x, cd_surrogate_kind kind,
                                const char *layer, int grid, cd_tensor **features,
                                const char **layer_used, cd_error *err)
{
    if (!e || !x || !features)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_surrogate_features: NULL argument");
    *features = NULL;
    if (layer_used)
        *layer_used = NULL;
    if (kind == CD_SURROGATE_GRID)
        return cd_surrogate_grid_features(x, grid, features, err);
    if (kind != CD_SURROGATE_POOLED)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "unknown surrogate feature kind %d", kind);
    const char *name = NULL;
    cd_tensor one = *x;
    one.dims[0] = 1; /* the default layer is found on a single row */
    cd_status st = resolve_layer(e, &one, layer, &name, err);
    if (st != CD_OK)
        return st;
    cd_objective obj;
    cd_objective_default(&obj);
    obj.output = name;
    obj.kind = CD_OBJECTIVE_SUM;
    cd_tensor *a = NULL;
    st = ex_forward_value(e, x, &obj, &a, err);
    if (st == CD_OK)
        st = pooled_features(a, name, features, err);
    cd_tensor_free(a);
    if (st == CD_OK && layer_used)
        *layer_used = name;
    return st;
}

/* ------------------------------------------------------------ CART */

void cd_tree_params_default(cd_tree_params *p)
{
    p->max_depth = 4;
    p->min_samples_leaf = 1;
    p->min_samples_split = 2;
}

typedef struct tree_builder {
    const float *X;
    const int *y;
    int n_features, n_classes;
    cd_tree_params p;
    cd_tree *t;
    int cap;
    /* scratch */
    struct fv { float v; int y; size_t row; } *sorted;
    double *left, *right; /* class counts */
} tree_builder;

static int cmp_fv(const void *a, const void *b)
{
    float x = ((const struct fv *)a)->v, y = ((const struct fv *)b)->v;
    if (x != y)
        return x < y ? -1 : 1;
    /* Stable order for equal values: by row (deterministic across libcs). */
    size_t r = ((const struct fv *)a)->row, s = ((const struct fv *)b)->row;
    return r < s ? -1 : r > s;
}

static double gini(const double *counts, int k, double n)
{
    if (n <= 0)
        return 0;
    double sq = 0;
    for (int c = 0; c < k; c++)
        sq += counts[c] * counts[c];
    return 1.0 - sq / (n * n);
}

static double sum_sq(const double *counts, int k)
{
    double s = 0;
    for (int c = 0; c < k; c++)
        s += counts[c] * counts[c];
    return s;
}

typedef struct split {
    int feature;
    double threshold;
    double proxy; /* sum_sq(left)/n_left + sum_sq(right)/n_right: larger is better */
} split;

/* Best threshold on feature f over rows idx[0..n): scikit-learn's
 * BestSplitter for one feature (midpoints between distinct sorted values,
 * both children at least min_samples_leaf rows). */
static void best_on_feature(tree_builder *b, const size_t *idx, size_t n, int f, split *best)
{
    int k = b->n_classes;
    for (size_t i = 0; i < n; i++) {
        b->sorted[i].v = b->X[idx[i] * (size_t)b->n_features + (size_t)f];
        b->sorted[i].y = b->y[idx[i]];
        b->sorted[i].row = idx[i];
    }
    qsort(b->sorted, n, sizeof *b->sorted, cmp_fv);
    if (b->sorted[n - 1].v <= b->sorted[0].v + TREE_FEATURE_EPS)
        return; /* constant feature */
    memset(b->left, 0, (size_t)k * sizeof(double));
    memset(b->right, 0, (size_t)k * sizeof(double));
    for (size_t i = 0; i < n; i++)
        b->right[b->sorted[i].y] += 1;
    size_t min_leaf = (size_t)b->p.min_samples_leaf;
    for (size_t pos = 1; pos < n; pos++) {
        b->left[b->sorted[pos - 1].y] += 1;
        b->right[b->sorted[pos - 1].y] -= 1;
        if (b->sorted[pos].v <= b->sorted[pos - 1].v + TREE_FEATURE_EPS)
            continue;
        if (pos < min_leaf || n - pos < min_leaf)
            continue;
        double proxy = sum_sq(b->left, k) / (double)pos + sum_sq(b->right, k) / (double)(n - pos);
        if (proxy > best->proxy) {
            double lo = b->sorted[pos - 1].v, hi = b->sorted[pos].v;
            double thr = lo / 2.0 + hi / 2.0;
            if (thr == hi || isinf(thr))
                thr = lo;
            best->proxy = proxy;
            best->feature = f;
            best->threshold = thr;
        }
    }
}

static cd_status add_node(tree_builder *b, int depth, const size_t *idx, size_t n, int *id,
                          cd_error *err)
{
    cd_tree *t = b->t;
    int k = b->n_classes;
    if (t->n_nodes == b->cap) {
        int cap = b->cap ? b->cap * 2 : 64;
        cd_tree_node *nodes = realloc(t->nodes, (size_t)cap * sizeof *nodes);
        if (nodes)
            t->nodes = nodes;
        double *counts = nodes ? realloc(t->counts, (size_t)cap * (size_t)k * sizeof *counts)
                               : NULL;
        if (!counts)
            return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory for tree nodes");
        t->counts = counts;
        b->cap = cap;
    }
    *id = t->n_nodes++;
    cd_tree_node *nd = &t->nodes[*id];
    double *cnt = &t->counts[(size_t)*id * (size_t)k];
    memset(cnt, 0, (size_t)k * sizeof *cnt);
    for (size_t i = 0; i < n; i++)
        cnt[b->y[idx[i]]] += 1;
    nd->feature = -1;
    nd->threshold = 0;
    nd->left = nd->right = -1;
    nd->depth = depth;
    nd->n_samples = (int64_t)n;
    nd->impurity = gini(cnt, k, (double)n);
    nd->klass = 0;
    for (int c = 1; c < k; c++) /* ties: the lowest class, as numpy's argmax */
        if (cnt[c] > cnt[nd->klass])
            nd->klass = c;
    return CD_OK;
}

/* Grows the subtree of rows idx[0..n) depth-first, left child first (the
 * node numbering of scikit-learn's DepthFirstTreeBuilder). idx is
 * reordered in place. */
static cd_status grow(tree_builder *b, int depth, size_t *idx, size_t n, cd_error *err)
{
    int id = 0;
    cd_status st = add_node(b, depth, idx, n, &id, err);
    if (st != CD_OK)
        return st;
    bool leaf = (b->p.max_depth > 0 && depth >= b->p.max_depth) ||
                n < (size_t)b->p.min_samples_split || n < 2 * (size_t)b->p.min_samples_leaf ||
                b->t->nodes[id].impurity <= 1e-7;
    split best = {.feature = -1, .proxy = -INFINITY};
    for (int f = 0; !leaf && f < b->n_features; f++)
        best_on_feature(b, idx, n, f, &best);
    if (leaf || best.feature < 0)
        return CD_OK;
    /* Partition: rows with x <= threshold first. */
    size_t nl = 0;
    for (size_t i = 0; i < n; i++)
        if (b->X[idx[i] * (size_t)b->n_features + (size_t)best.feature] <= best.threshold) {
            size_t tmp = idx[nl];
            idx[nl++] = idx[i];
            idx[i] = tmp;
        }
    b->t->nodes[id].feature = best.feature;
    b->t->nodes[id].threshold = best.threshold;
    b->t->nodes[id].left = b->t->n_nodes;
    if ((st = grow(b, depth + 1, idx, nl, err)) != CD_OK)
        return st;
    b->t->nodes[id].right = b->t->n_nodes;
    return grow(b, depth + 1, idx + nl, n - nl, err);
}

cd_status cd_tree_fit(const float *X, size_t n, int n_features, const int *y, int n_classes,
                      const cd_tree_params *p, cd_tree **out, cd_error *err)
{
    if (!X || !y || !out || n < 1 || n_features < 1 || n_classes < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT,
                       "cd_tree_fit: need rows, features, labels and classes");
    *out = NULL;
    cd_tree_params def;
    cd_tree_params_default(&def);
    tree_builder b = {.X = X, .y = y, .n_features = n_features, .n_classes = n_classes,
                      .p = p ? *p : def};
    if (b.p.min_samples_leaf < 1 || b.p.min_samples_split < 2 || b.p.max_depth < 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "tree settings: min_samples_leaf >= 1, "
                       "min_samples_split >= 2, max_depth >= 0 (0 = unlimited)");
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= n_classes)
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "label %d of row %zu outside [0, %d)",
                           y[i], i, n_classes);
    size_t rows_bytes;
    if (!cd_mul_size(n, sizeof *b.sorted, &rows_bytes))
        return cd_fail(err, CD_ERR_LIMIT, "cd_tree_fit: too many rows");
    b.t = calloc(1, sizeof *b.t);
    size_t *idx = malloc(n * sizeof *idx);
    b.sorted = malloc(rows_bytes);
    b.left = calloc((size_t)n_classes * 2, sizeof(double));
    cd_status st = CD_OK;
    if (!b.t || !idx || !b.sorted || !b.left) {
        st = cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    } else {
        b.right = b.left + n_classes;
        b.t->n_features = n_features;
        b.t->n_classes = n_classes;
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        st = grow(&b, 0, idx, n, err);
    }
    free(idx);
    free(b.sorted);
    free(b.left);
    if (st != CD_OK) {
        cd_tree_free(b.t);
        return st;
    }
    *out = b.t;
    return CD_OK;
}

int cd_tree_apply(const cd_tree *t, const float *row)
{
    int i = 0;
    while (t->nodes[i].feature >= 0)
        i = row[t->nodes[i].feature] <= t->nodes[i].threshold ? t->nodes[i].left
                                                               : t->nodes[i].right;
    return i;
}

int cd_tree_predict(const cd_tree *t, const float *row)
{
    return t->nodes[cd_tree_apply(t, row)].klass;
}

void cd_tree_free(cd_tree *t)
{
    if (!t)
        return;
    free(t->nodes);
    free(t->counts);
    free(t);
}
