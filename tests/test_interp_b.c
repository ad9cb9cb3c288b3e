/* Surrogate trees and grid features (explain/surrogate.c) against naive
 * references written here: an exhaustive search for the best Gini split,
 * recursive checks of every node's class counts, leaf rules and limits,
 * and grid cell means summed pixel by pixel. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "candor/explain.h"

static uint64_t g_s;
static double urand(void)
{
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_s >> 11) * 0x1.0p-53;
}

/* Random data with some structure: y depends on two features plus noise;
 * values are rounded to a few levels so that ties occur. */
static void make_data(size_t n, int f, int k, float *X, int *y, uint64_t seed)
{
    g_s = seed;
    for (size_t i = 0; i < n; i++) {
        for (int j = 0; j < f; j++)
            X[i * f + j] = (float)floor(urand() * 8) / 4.0f;
        int c = (X[i * f] > 1.0f) + 2 * (X[i * f + 1] > 0.9f);
        y[i] = urand() < 0.15 ? (int)(urand() * k) : c % k;
    }
}

static double gini_of(const int *y, const size_t *rows, size_t n, int k)
{
    double cnt[16] = {0};
    for (size_t i = 0; i < n; i++)
        cnt[y[rows[i]]] += 1;
    double s = 0;
    for (int c = 0; c < k; c++)
        s += (cnt[c] / (double)n) * (cnt[c] / (double)n);
    return 1 - s;
}

/* The weighted child impurity of the best admissible split of rows, by
 * trying every threshold between distinct values; INFINITY if none. */
static double best_child_impurity(const float *X, const int *y, const size_t *rows, size_t n,
                                  int f, int k, int min_leaf)
{
    double best = INFINITY;
    size_t *l = malloc(n * sizeof *l), *r = malloc(n * sizeof *r);
    for (int j = 0; j < f; j++)
        for (size_t a = 0; a < n; a++)
            for (size_t b = 0; b < n; b++) {
                float lo = X[rows[a] * f + j], hi = X[rows[b] * f + j];
                if (!(hi > lo))
                    continue;
                double thr = lo / 2.0 + hi / 2.0;
                size_t nl = 0, nr = 0;
                for (size_t i = 0; i < n; i++) {
                    if (X[rows[i] * f + j] <= thr)
                        l[nl++] = rows[i];
                    else
                        r[nr++] = rows[i];
                }
                if (nl < (size_t)min_leaf || nr < (size_t)min_leaf)
                    continue;
                double g = (nl * gini_of(y, l, nl, k) + nr * gini_of(y, r, nr, k)) / (double)n;
                if (g < best)
                    best = g;
            }
    free(l);
    free(r);
    return best;
}

/* Checks node id over rows: counts, majority, limits, and that an internal
 * node's split is as good as the exhaustive best. */
static void check_node(const cd_tree *t, int id, const float *X, const int *y, size_t *rows,
                       size_t n, int f, int k, const cd_tree_params *p)
{
    const cd_tree_node *nd = &t->nodes[id];
    assert_int_equal(nd->n_samples, (int64_t)n);
    double cnt[16] = {0};
    for (size_t i = 0; i < n; i++)
        cnt[y[rows[i]]] += 1;
    int maj = 0;
    for (int c = 0; c < k; c++) {
        assert_true(t->counts[(size_t)id * k + c] == cnt[c]);
        if (cnt[c] > cnt[maj])
            maj = c;
    }
    assert_int_equal(nd->klass, maj);
    double g = gini_of(y, rows, n, k);
    assert_true(fabs(nd->impurity - g) < 1e-12);
    double best = best_child_impurity(X, y, rows, n, f, k, p->min_samples_leaf);
    bool must_leaf = nd->depth >= p->max_depth || g <= 0 || n < (size_t)p->min_samples_split ||
                     isinf(best);
    if (nd->feature < 0) {
        assert_true(must_leaf || n < 2 * (size_t)p->min_samples_leaf);
        return;
    }
    assert_false(must_leaf);
    size_t nl = 0;
    for (size_t i = 0; i < n; i++) /* partition as the tree does */
        if (X[rows[i] * f + nd->feature] <= nd->threshold) {
            size_t tmp = rows[nl];
            rows[nl++] = rows[i];
            rows[i] = tmp;
        }
    double got = (nl * gini_of(y, rows, nl, k) + (n - nl) * gini_of(y, rows + nl, n - nl, k)) /
                 (double)n;
    assert_true(got <= best + 1e-12);
    assert_true(nl >= (size_t)p->min_samples_leaf && n - nl >= (size_t)p->min_samples_leaf);
    assert_int_equal(t->nodes[nd->left].depth, nd->depth + 1);
    assert_int_equal(nd->left, id + 1); /* depth-first, left first */
    check_node(t, nd->left, X, y, rows, nl, f, k, p);
    check_node(t, nd->right, X, y, rows + nl, n - nl, f, k, p);
}

static void fit_and_check(size_t n, int f, int k, int depth, int min_leaf, uint64_t seed)
{
    float *X = malloc(n * f * sizeof *X);
    int *y = malloc(n * sizeof *y);
    size_t *rows = malloc(n * sizeof *rows);
    make_data(n, f, k, X, y, seed);
    cd_tree_params p;
    cd_tree_params_default(&p);
    p.max_depth = depth;
    p.min_samples_leaf = min_leaf;
    cd_tree *t = NULL;
    cd_error err;
    assert_int_equal(cd_tree_fit(X, n, f, y, k, &p, &t, &err), CD_OK);
    for (size_t i = 0; i < n; i++)
        rows[i] = i;
    check_node(t, 0, X, y, rows, n, f, k, &p);
    /* Every training row reaches a leaf whose rule it satisfies. */
    for (size_t i = 0; i < n; i++) {
        int leaf = cd_tree_apply(t, X + i * f);
        assert_true(t->nodes[leaf].feature < 0);
        assert_int_equal(cd_tree_predict(t, X + i * f), t->nodes[leaf].klass);
    }
    cd_tree_free(t);
    free(X);
    free(y);
    free(rows);
}

static void test_tree_vs_exhaustive(void **state)
{
    CD_UNUSED(state);
    fit_and_check(60, 3, 4, 3, 1, 1);
    fit_and_check(80, 4, 3, 4, 5, 2);
    fit_and_check(40, 2, 2, 6, 3, 3);
}

static void test_tree_separable(void **state)
{
    CD_UNUSED(state);
    /* y = x > 0.5 exactly: one split at the midpoint of the closest pair. */
    float X[6] = {0.1f, 0.2f, 0.4f, 0.7f, 0.9f, 1.0f};
    int y[6] = {0, 0, 0, 1, 1, 1};
    cd_tree *t = NULL;
    cd_error err;
    assert_int_equal(cd_tree_fit(X, 6, 1, y, 2, NULL, &t, &err), CD_OK);
    assert_int_equal(t->n_nodes, 3);
    assert_int_equal(t->nodes[0].feature, 0);
    assert_true(fabs(t->nodes[0].threshold - (0.4 / 2 + 0.7 / 2)) < 1e-7);
    assert_int_equal(t->nodes[1].klass, 0);
    assert_int_equal(t->nodes[2].klass, 1);
    cd_tree_free(t);
    /* Constant features cannot be split: a single leaf. */
    float C[4] = {1, 1, 1, 1};
    int yc[4] = {0, 1, 0, 1};
    assert_int_equal(cd_tree_fit(C, 4, 1, yc, 2, NULL, &t, &err), CD_OK);
    assert_int_equal(t->n_nodes, 1);
    cd_tree_free(t);
    /* Bad labels fail with a message naming the row. */
    int bad[4] = {0, 1, 2, 0};
    assert_int_equal(cd_tree_fit(C, 4, 1, bad, 2, NULL, &t, &err), CD_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "row 2"));
}

static void test_grid_features(void **state)
{
    CD_UNUSED(state);
    int64_t dims[4] = {2, 3, 10, 7};
    cd_tensor *x = tu_random(4, dims, 5, -1, 1), *f = NULL;
    cd_error err;
    int G = 3;
    assert_int_equal(cd_surrogate_grid_features(x, G, &f, &err), CD_OK);
    assert_int_equal(cd_tensor_dims(f)[1], G * G);
    const float *v = cd_tensor_cdata(x), *g = cd_tensor_cdata(f);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < G; i++)
            for (int j = 0; j < G; j++) {
                double s = 0;
                int cnt = 0;
                for (int c = 0; c < 3; c++)
                    for (int r = 0; r < 10; r++)
                        for (int q = 0; q < 7; q++)
                            if (r >= i * 10 / G && r < (i + 1) * 10 / G && q >= j * 7 / G &&
                                q < (j + 1) * 7 / G) { /* documented cell bounds */
                                s += v[((b * 3 + c) * 10 + r) * 7 + q];
                                cnt++;
                            }
                assert_true(fabs(g[b * G * G + i * G + j] - s / cnt) < 1e-5);
            }
    cd_tensor_free(f);
    assert_int_equal(cd_surrogate_grid_features(x, 8, &f, &err), CD_ERR_INVALID_ARGUMENT);
    cd_tensor_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_vs_exhaustive),
        cmocka_unit_test(test_tree_separable),
        cmocka_unit_test(test_grid_features),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
