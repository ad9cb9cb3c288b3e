/* MC dropout engine: sampling statistics, prefix/suffix equivalence,
 * determinism across threads and batch compositions, ensembles, errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "candor/uncertainty.h"
#include "core/plan64.h"
#include "uncertainty/stochastic.h"

/* ------------------------------------------------ programmatic models */

#define MAXV 32
#define MAXN 16

typedef struct tmodel {
    cd_model m;
} tmodel;

static tmodel *tm_new(void)
{
    tmodel *t = calloc(1, sizeof *t);
    t->m.values = calloc(MAXV, sizeof(cd_value));
    t->m.nodes = calloc(MAXN, sizeof(cd_node));
    t->m.inputs = calloc(MAXV, sizeof(int));
    t->m.outputs = calloc(MAXV, sizeof(int));
    t->m.opset = 13;
    return t;
}

/* Adds a value; init (may be NULL) is owned by the model. */
static int tm_value(tmodel *t, const char *name, cd_tensor *init)
{
    int v = t->m.n_values++;
    assert_true(v < MAXV);
    cd_value *val = &t->m.values[v];
    val->name = cd_strdup(name);
    val->init = init;
    val->ndim = -1;
    val->producer = -1;
    return v;
}

static int tm_input(tmodel *t, const char *name)
{
    int v = tm_value(t, name, NULL);
    t->m.values[v].dtype = CD_FLOAT32;
    t->m.values[v].is_graph_input = true;
    t->m.inputs[t->m.n_inputs++] = v;
    return v;
}

static void tm_output(tmodel *t, int v)
{
    t->m.values[v].is_graph_output = true;
    t->m.outputs[t->m.n_outputs++] = v;
}

static cd_node *tm_node(tmodel *t, const char *op, const char *name, int nin, const int *in,
                        int out)
{
    cd_error err;
    cd_node *n = &t->m.nodes[t->m.n_nodes];
    assert_int_equal(cd_node_init(n, op, 13, nin, 1, &err), CD_OK);
    free(n->name);
    n->name = cd_strdup(name);
    for (int i = 0; i < nin; i++)
        n->inputs[i] = in[i];
    n->outputs[0] = out;
    t->m.values[out].producer = t->m.n_nodes++;
    return n;
}

static void tm_bind_all(tmodel *t)
{
    cd_error err;
    for (int i = 0; i < t->m.n_nodes; i++)
        assert_int_equal(cd_node_bind(&t->m.nodes[i], &err), CD_OK);
}

static void tm_free(tmodel *t)
{
    for (int v = 0; v < t->m.n_values; v++) {
        free(t->m.values[v].name);
        cd_tensor_free(t->m.values[v].init);
    }
    for (int i = 0; i < t->m.n_nodes; i++)
        cd_node_clear(&t->m.nodes[i]);
    free(t->m.values);
    free(t->m.nodes);
    free(t->m.inputs);
    free(t->m.outputs);
    free(t);
}

/* x(1,F) -> Gemm -> h -> Relu -> r -> [optional Dropout node "drop"] -> Gemm
 * -> logits -> Softmax -> probs. Outputs: logits, probs. */
enum { F_IN = 16, F_HID = 32, N_CLS = 5 };

static tmodel *mlp(uint64_t seed, bool graph_dropout, float ratio, int n_cls)
{
    tmodel *t = tm_new();
    int x = tm_input(t, "x");
    int64_t w1d[2] = {F_IN, F_HID}, b1d[1] = {F_HID}, w2d[2] = {F_HID, n_cls}, b2d[1] = {n_cls};
    int w1 = tm_value(t, "W1", tu_random(2, w1d, seed, -0.5f, 0.5f));
    int b1 = tm_value(t, "b1", tu_random(1, b1d, seed + 1, -0.1f, 0.3f));
    int w2 = tm_value(t, "W2", tu_random(2, w2d, seed + 2, -1.0f, 1.0f));
    int b2 = tm_value(t, "b2", tu_random(1, b2d, seed + 3, -0.1f, 0.1f));
    int h = tm_value(t, "h", NULL), r = tm_value(t, "r", NULL);
    int logits = tm_value(t, "logits", NULL), probs = tm_value(t, "probs", NULL);
    tm_node(t, "Gemm", "fc1", 3, (int[]){x, w1, b1}, h);
    tm_node(t, "Relu", "relu", 1, (int[]){h}, r);
    int head_in = r;
    if (graph_dropout) {
        int64_t none[1] = {0};
        int ratio_v = tm_value(t, "ratio", tu_tensor_f32(0, none, &ratio));
        int d = tm_value(t, "r_dropped", NULL);
        tm_node(t, "Dropout", "drop", 2, (int[]){r, ratio_v}, d);
        head_in = d;
    }
    tm_node(t, "Gemm", "fc2", 3, (int[]){head_in, w2, b2}, logits);
    tm_node(t, "Softmax", "softmax", 1, (int[]){logits}, probs);
    tm_output(t, logits);
    tm_output(t, probs);
    tm_bind_all(t);
    return t;
}

/* x(1,n) -> Dropout site declared on x by the caller -> graph output y via
 * Identity. */
static tmodel *identity_model(int ndim, const int64_t *dims)
{
    CD_UNUSED(ndim);
    CD_UNUSED(dims);
    tmodel *t = tm_new();
    int x = tm_input(t, "x");
    int y = tm_value(t, "y", NULL);
    tm_node(t, "Identity", "id", 1, (int[]){x}, y);
    tm_output(t, y);
    tm_bind_all(t);
    return t;
}

static cd_mc_session *mc_make(const cd_model *m, int T, uint64_t seed, int n_sites,
                              const cd_dropout_site *sites, int threads, bool loop)
{
    cd_mc_options o;
    cd_mc_options_default(&o);
    o.samples = T;
    o.seed = seed;
    o.n_sites = n_sites;
    o.sites = sites;
    o.threads = threads;
    o.force_loop = loop;
    cd_mc_session *mc = NULL;
    cd_error err = {0};
    cd_status st = cd_mc_session_create(m, &o, &mc, &err);
    if (st != CD_OK)
        print_error("mc create: %s\n", err.message);
    assert_int_equal(st, CD_OK);
    return mc;
}

static cd_tensor *mc_run(cd_mc_session *mc, const cd_tensor *x, int out_index)
{
    cd_tensor *s = NULL;
    cd_error err = {0};
    cd_status st = cd_mc_sample(mc, 1, &x, 1, &out_index, &s, &err);
    if (st != CD_OK)
        print_error("mc sample: %s\n", err.message);
    assert_int_equal(st, CD_OK);
    return s;
}

/* Deterministic reference through a plain session. */
static cd_tensor *det_run(const cd_model *m, const cd_tensor *x, int out_index)
{
    cd_session *s = NULL;
    cd_error err = {0};
    cd_session_options so = {.threads = 1};
    assert_int_equal(cd_session_create(m, &so, &s, &err), CD_OK);
    const char *name = m->values[m->outputs[out_index]].name;
    cd_tensor *y = NULL;
    cd_status st = cd_session_run(s, 1, NULL, &x, 1, &name, &y, &err);
    if (st != CD_OK)
        print_error("run: %s\n", err.message);
    assert_int_equal(st, CD_OK);
    cd_session_free(s);
    return y;
}

/* ------------------------------------------------------------- tests */

static void test_p_zero_is_deterministic(void **state)
{
    CD_UNUSED(state);
    tmodel *t = mlp(11, true, 0.0f, N_CLS);
    int64_t xd[2] = {1, F_IN};
    cd_tensor *x = tu_random(2, xd, 5, -1, 1);
    cd_dropout_site site = {"h", 0.0f, false}; /* declared site, p = 0 */
    cd_mc_session *mc = mc_make(&t->m, 7, 3, 1, &site, 1, false);
    assert_int_equal(cd_mc_site_count(mc), 2); /* graph Dropout + declared */
    for (int out = 0; out < 2; out++) {
        cd_tensor *det = det_run(&t->m, x, out);
        cd_tensor *s = mc_run(mc, x, out);
        assert_int_equal(cd_tensor_ndim(s), 3);
        assert_int_equal(cd_tensor_dims(s)[1], 7);
        const float *a = cd_tensor_cdata(s), *d = cd_tensor_cdata(det);
        for (int k = 0; k < 7; k++)
            assert_memory_equal(a + (size_t)k * N_CLS, d, N_CLS * sizeof(float));
        cd_tensor_free(s);
        cd_tensor_free(det);
    }
    cd_mc_stats stats;
    cd_mc_get_stats(mc, &stats);
    assert_true(stats.batched);
    assert_int_equal(stats.prefix_steps, 1); /* fc1 only: the site sits on h */
    cd_mc_session_free(mc);
    cd_tensor_free(x);
    tm_free(t);
}

static void check_drop_rate(float p, bool channel)
{
    int64_t xd[4] = {1, 1000, 25, 40}; /* 10^6 elements */
    tmodel *t = identity_model(4, xd);
    cd_tensor *x = tu_random(4, xd, 9, 1.0f, 2.0f);
    cd_dropout_site site = {"x", p, channel};
    cd_mc_session *mc = mc_make(&t->m, 2, 42, 1, &site, 2, false);
    cd_tensor *s = mc_run(mc, x, 0);
    const float *y = cd_tensor_cdata(s), *xs = cd_tensor_cdata(x);
    size_t n = cd_tensor_numel(x), dropped = 0, chan_mixed = 0;
    float scale = (float)(1.0 / (1.0 - (double)p));
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < n; i++) {
            float v = y[(size_t)k * n + i];
            if (v == 0.0f)
                dropped++;
            else
                assert_true(v == xs[i] * scale);
            if (channel && i % 1000 != 0 && (v == 0.0f) != (y[(size_t)k * n + i - 1] == 0.0f))
                chan_mixed++;
        }
    double rate = (double)dropped / (2.0 * (double)n);
    if (!channel)
        assert_true(fabs(rate - p) <= 0.005 * p);
    else
        assert_int_equal(chan_mixed, 0);
    cd_tensor_free(s);
    cd_mc_session_free(mc);
    cd_tensor_free(x);
    tm_free(t);
}

static void test_drop_rate(void **state)
{
    CD_UNUSED(state);
    check_drop_rate(0.5f, false);
    check_drop_rate(0.3f, false);
    check_drop_rate(0.5f, true);
}

/* Mean of a linear suffix (dropout -> Gemm) converges to the deterministic
 * output: check within 5 standard errors computed from the samples. */
static void test_linear_suffix_mean(void **state)
{
    CD_UNUSED(state);
    tmodel *t = mlp(21, false, 0.0f, N_CLS);
    int64_t xd[2] = {1, F_IN};
    cd_tensor *x = tu_random(2, xd, 6, -1, 1);
    cd_dropout_site site = {"r", 0.4f, false};
    const int T = 4000;
    cd_mc_session *mc = mc_make(&t->m, T, 8, 1, &site, 0, false);
    cd_tensor *s = mc_run(mc, x, 0);
    cd_tensor *det = det_run(&t->m, x, 0);
    const float *a = cd_tensor_cdata(s), *d = cd_tensor_cdata(det);
    bool any_diff = false;
    for (int c = 0; c < N_CLS; c++) {
        double sum = 0, sq = 0;
        for (int k = 0; k < T; k++) {
            double v = a[(size_t)k * N_CLS + c];
            sum += v;
            sq += v * v;
            any_diff = any_diff || v != d[c];
        }
        double mean = sum / T, var = sq / T - mean * mean;
        double se = sqrt(var / T);
        assert_true(fabs(mean - d[c]) <= 5 * se + 1e-6);
    }
    assert_true(any_diff);
    cd_tensor_free(s);
    cd_tensor_free(det);
    cd_mc_session_free(mc);
    cd_tensor_free(x);
    tm_free(t);
}

/* Threads 1 vs 2 and an input alone vs inside a batch of inputs:
 * bit-identical samples, hence summaries; batched vs one-at-a-time suffix:
 * the same masks (equal up to float rounding). */
static void test_bit_identical(void **state)
{
    CD_UNUSED(state);
    tmodel *t = mlp(31, true, 0.3f, N_CLS);
    int64_t xd3[2] = {3, F_IN}, xd1[2] = {1, F_IN};
    cd_tensor *x3 = tu_random(2, xd3, 7, -1, 1);
    cd_tensor *x1 = tu_tensor_f32(2, xd1, (const float *)cd_tensor_cdata(x3) + 2 * F_IN);
    cd_dropout_site site = {"h", 0.2f, false};
    const int T = 33;
    cd_mc_session *a = mc_make(&t->m, T, 77, 1, &site, 1, false);
    cd_mc_session *b = mc_make(&t->m, T, 77, 1, &site, 2, true);
    cd_mc_session *c = mc_make(&t->m, T, 77, 1, &site, 2, false);
    cd_tensor *sa = mc_run(a, x1, 1);
    cd_tensor *sb = mc_run(b, x1, 1);
    cd_tensor *sc = mc_run(c, x3, 1);
    cd_mc_stats st;
    cd_mc_get_stats(b, &st);
    assert_false(st.batched);
    cd_mc_get_stats(a, &st);
    assert_true(st.batched);
    size_t per = (size_t)T * N_CLS;
    assert_int_equal(cd_tensor_numel(sc), 3 * per);
    /* One batch of T vs T runs of batch 1 use different BLAS paths (GEMM vs
     * GEMV blocking), so only rounding may differ; the masks are the same. */
    const float *la = cd_tensor_cdata(sa), *lb = cd_tensor_cdata(sb);
    for (size_t i = 0; i < per; i++)
        assert_true(fabsf(la[i] - lb[i]) <= 1e-6f + 1e-5f * fabsf(lb[i]));
    assert_memory_equal(cd_tensor_cdata(sa), (const float *)cd_tensor_cdata(sc) + 2 * per,
                        per * sizeof(float));
    /* the samples do vary */
    const float *pa = cd_tensor_cdata(sa);
    assert_true(memcmp(pa, pa + N_CLS, N_CLS * sizeof(float)) != 0);
    cd_class_summary s1, s2;
    cd_error err;
    assert_int_equal(cd_summarize_classification(pa, T, N_CLS, 0.95, &s1, &err), CD_OK);
    assert_int_equal(cd_summarize_classification((const float *)cd_tensor_cdata(sc) + 2 * per, T,
                                                 N_CLS, 0.95, &s2, &err),
                     CD_OK);
    assert_memory_equal(s1.mean, s2.mean, N_CLS * sizeof(double));
    assert_true(s1.mutual_information == s2.mutual_information);
    cd_class_summary_free(&s1);
    cd_class_summary_free(&s2);
    /* A different seed gives different samples. */
    cd_mc_session *d = mc_make(&t->m, T, 78, 1, &site, 1, false);
    cd_tensor *sd = mc_run(d, x1, 1);
    assert_true(memcmp(cd_tensor_cdata(sd), pa, per * sizeof(float)) != 0);
    cd_tensor_free(sd);
    cd_mc_session_free(d);
    cd_tensor_free(sa);
    cd_tensor_free(sb);
    cd_tensor_free(sc);
    cd_mc_session_free(a);
    cd_mc_session_free(b);
    cd_mc_session_free(c);
    cd_tensor_free(x1);
    cd_tensor_free(x3);
    tm_free(t);
}

static void test_ensemble_of_copies(void **state)
{
    CD_UNUSED(state);
    tmodel *t = mlp(41, false, 0.0f, N_CLS);
    int64_t xd[2] = {2, F_IN};
    cd_tensor *x = tu_random(2, xd, 3, -1, 1);
    const cd_model *members[3] = {&t->m, &t->m, &t->m};
    cd_ensemble *e = NULL;
    cd_error err = {0};
    assert_int_equal(cd_ensemble_create(3, members, NULL, &e, &err), CD_OK);
    assert_int_equal(cd_ensemble_size(e), 3);
    int out = 1;
    cd_tensor *s = NULL;
    assert_int_equal(cd_ensemble_sample(e, 1, (const cd_tensor *const *)&x, 1, &out, &s, &err),
                     CD_OK);
    assert_int_equal(cd_tensor_dims(s)[0], 2);
    assert_int_equal(cd_tensor_dims(s)[1], 3);
    cd_mc_session *single = mc_make(&t->m, 1, 0, 0, NULL, 1, false);
    cd_tensor *ref = mc_run(single, x, 1);
    const float *ps = cd_tensor_cdata(s), *pr = cd_tensor_cdata(ref);
    for (int r = 0; r < 2; r++) {
        for (int m = 0; m < 3; m++)
            assert_memory_equal(ps + ((size_t)r * 3 + m) * N_CLS, pr + (size_t)r * N_CLS,
                                N_CLS * sizeof(float));
        cd_class_summary sum;
        assert_int_equal(cd_summarize_classification(ps + (size_t)r * 3 * N_CLS, 3, N_CLS, 0.9,
                                                     &sum, &err),
                         CD_OK);
        assert_true(sum.mutual_information == 0.0);
        assert_true(sum.agreement == 1.0 && sum.variation_ratio == 0.0);
        for (int c = 0; c < N_CLS; c++)
            assert_true(fabs(sum.mean[c] - pr[(size_t)r * N_CLS + c]) < 1e-7);
        cd_class_summary_free(&sum);
    }
    cd_tensor_free(ref);
    cd_mc_session_free(single);
    cd_tensor_free(s);
    cd_ensemble_free(e);
    cd_tensor_free(x);
    tm_free(t);
}

/* Ensemble x MC: K members x T samples, members use disjoint sample indices. */
static void test_ensemble_with_mc(void **state)
{
    CD_UNUSED(state);
    tmodel *t = mlp(51, true, 0.5f, N_CLS);
    int64_t xd[2] = {1, F_IN};
    cd_tensor *x = tu_random(2, xd, 4, -1, 1);
    const cd_model *members[2] = {&t->m, &t->m};
    cd_mc_options o;
    cd_mc_options_default(&o);
    o.samples = 4;
    o.seed = 9;
    cd_ensemble *e = NULL;
    cd_error err = {0};
    assert_int_equal(cd_ensemble_create(2, members, &o, &e, &err), CD_OK);
    cd_tensor *s = NULL;
    int out = 0;
    assert_int_equal(cd_ensemble_sample(e, 1, (const cd_tensor *const *)&x, 1, &out, &s, &err),
                     CD_OK);
    assert_int_equal(cd_tensor_dims(s)[1], 8);
    cd_mc_session *single = mc_make(&t->m, 4, 9, 0, NULL, 1, false);
    cd_tensor *ref = mc_run(single, x, 0);
    const float *ps = cd_tensor_cdata(s);
    /* member 0 = the single session; member 1 draws other masks */
    assert_memory_equal(ps, cd_tensor_cdata(ref), 4 * N_CLS * sizeof(float));
    assert_true(memcmp(ps, ps + 4 * N_CLS, 4 * N_CLS * sizeof(float)) != 0);
    cd_tensor_free(ref);
    cd_mc_session_free(single);
    cd_tensor_free(s);
    cd_ensemble_free(e);
    cd_tensor_free(x);
    tm_free(t);
}

static void expect_create_error(const cd_model *m, int T, float p, const char *site,
                                const char *needle)
{
    cd_mc_options o;
    cd_mc_options_default(&o);
    o.samples = T;
    cd_dropout_site s = {site, p, false};
    o.n_sites = site ? 1 : 0;
    o.sites = &s;
    cd_mc_session *mc = NULL;
    cd_error err = {0};
    assert_int_equal(cd_mc_session_create(m, &o, &mc, &err), CD_ERR_INVALID_ARGUMENT);
    assert_null(mc);
    if (!strstr(err.message, needle))
        print_error("message '%s' lacks '%s'\n", err.message, needle);
    assert_non_null(strstr(err.message, needle));
}

static void test_bad_inputs(void **state)
{
    CD_UNUSED(state);
    tmodel *t = mlp(61, false, 0.0f, N_CLS);
    expect_create_error(&t->m, 0, 0.1f, "r", "at least 1");
    expect_create_error(&t->m, 5, 1.0f, "r", "outside [0, 1)");
    expect_create_error(&t->m, 5, -0.1f, "r", "outside [0, 1)");
    expect_create_error(&t->m, 5, 0.1f, "fc3", "names no tensor or node");
    expect_create_error(&t->m, 5, 0.1f, "fc", "'h'"); /* candidates resembling the name */
    expect_create_error(&t->m, 5, 0.0f, NULL, "no Dropout node");
    /* a node name resolves to its output */
    cd_dropout_site s = {"relu", 0.1f, false};
    cd_mc_session *mc = mc_make(&t->m, 2, 0, 1, &s, 1, false);
    assert_string_equal(cd_mc_site_name(mc, 0), "relu");
    cd_mc_session_free(mc);
    /* mismatched ensemble: different class counts */
    tmodel *u = mlp(62, false, 0.0f, N_CLS + 1);
    t->m.values[t->m.outputs[0]].ndim = 2;
    t->m.values[t->m.outputs[0]].dims[0] = 1;
    t->m.values[t->m.outputs[0]].dims[1] = N_CLS;
    u->m.values[u->m.outputs[0]].ndim = 2;
    u->m.values[u->m.outputs[0]].dims[0] = 1;
    u->m.values[u->m.outputs[0]].dims[1] = N_CLS + 1;
    const cd_model *members[2] = {&t->m, &u->m};
    cd_ensemble *e = NULL;
    cd_error err = {0};
    assert_int_equal(cd_ensemble_create(2, members, NULL, &e, &err), CD_ERR_SHAPE);
    assert_non_null(strstr(err.message, "member 1"));
    /* undeclared shapes disagreeing at run time */
    t->m.values[t->m.outputs[0]].ndim = -1;
    u->m.values[u->m.outputs[0]].ndim = -1;
    assert_int_equal(cd_ensemble_create(2, members, NULL, &e, &err), CD_OK);
    int64_t xd[2] = {1, F_IN};
    cd_tensor *x = tu_random(2, xd, 1, -1, 1), *out = NULL;
    assert_int_equal(cd_ensemble_sample(e, 1, (const cd_tensor *const *)&x, 1, NULL, &out, &err),
                     CD_ERR_SHAPE);
    assert_null(out);
    assert_non_null(strstr(err.message, "member 1"));
    cd_ensemble_free(e);
    cd_tensor_free(x);
    tm_free(u);
    tm_free(t);
}

/* ------------------------------------------ float64 mode's MC dropout */

static cd_tensor *new_tensor(cd_dtype dt, const cd_tensor *like)
{
    cd_tensor *t = NULL;
    assert_int_equal(cd_tensor_create(dt, like->ndim, like->dims, &t, NULL), CD_OK);
    return t;
}

static cd_tensor *widened(const cd_tensor *t)
{
    cd_tensor *d = new_tensor(CD_FLOAT64, t);
    for (size_t i = 0; i < cd_tensor_numel(t); i++)
        cd_f64(d)[i] = cd_cf32(t)[i];
    return d;
}

/* One Dropout node declared a site by a hand-made cd_stochastic: forward64
 * and backward64 must draw the float kernels' mask and use their scale, so
 * (float)y64 == y32 and (float)gx64 == gx32 exactly (a float32 product is
 * exact in float64). opset 7 has a float mask (float64 in this mode). */
static void check_mc_dropout64(int opset, bool channel, bool rows_are_samples)
{
    cd_node n;
    tu_node_make(&n, "Dropout", opset, 1, 2);
    tu_node_bind(&n);
    const int site_of[1] = {0};
    const float p[1] = {0.35f};
    const bool ch[1] = {channel};
    const uint64_t key[1] = {cd_site_key("drop")};
    cd_stochastic s = {.seed = 77, .sample_offset = 5, .rows_are_samples = rows_are_samples,
                       .nodes = &n, .n_nodes = 1, .site_of_node = site_of, .site_p = p,
                       .site_channel = ch, .site_key = key};
    int64_t d[4] = {3, 4, 2, 3};
    cd_tensor *x = tu_random(4, d, 91, -1, 1), *gy = tu_random(4, d, 92, -1, 1);
    cd_tensor *x64 = widened(x), *gy64 = widened(gy);
    cd_dtype m32 = opset >= 10 ? CD_BOOL : CD_FLOAT32, m64 = opset >= 10 ? CD_BOOL : CD_FLOAT64;
    cd_tensor *out32[2] = {new_tensor(CD_FLOAT32, x), new_tensor(m32, x)};
    cd_tensor *out64[2] = {new_tensor(CD_FLOAT64, x), new_tensor(m64, x)};
    cd_tensor *gx32 = new_tensor(CD_FLOAT32, x), *gx64 = new_tensor(CD_FLOAT64, x);
    cd_error err;
    cd_ctx ctx = {.err = &err, .threads = 1, .stochastic = &s};
    const cd_op_def *def = cd_op_get(n.op);
    assert_int_equal(def->forward(&n, &x, out32, &ctx), CD_OK);
    assert_int_equal(def->forward64(&n, &x64, out64, &ctx), CD_OK);
    cd_tensor *gy32s[1] = {gy}, *gy64s[1] = {gy64};
    assert_int_equal(def->backward(&n, &x, out32, gy32s, &gx32, &ctx), CD_OK);
    assert_int_equal(def->backward64(&n, &x64, out64, gy64s, &gx64, &ctx), CD_OK);
    const float scale = (float)(1.0 / (1.0 - (double)p[0]));
    size_t cnt = cd_tensor_numel(x), kept = 0;
    for (size_t i = 0; i < cnt; i++) {
        bool keep32 = m32 == CD_BOOL ? ((const uint8_t *)out32[1]->data)[i] != 0
                                     : cd_cf32(out32[1])[i] == 1.0f;
        bool keep64 = m64 == CD_BOOL ? ((const uint8_t *)out64[1]->data)[i] != 0
                                     : cd_cf64(out64[1])[i] == 1.0;
        assert_true(keep32 == keep64);
        if (m64 == CD_FLOAT64)
            assert_true(cd_cf64(out64[1])[i] == (keep64 ? 1.0 : 0.0));
        kept += keep64;
        double want = keep64 ? (double)cd_cf32(x)[i] * scale : 0.0;
        assert_true(cd_cf64(out64[0])[i] == want);
        assert_true((float)cd_cf64(out64[0])[i] == cd_cf32(out32[0])[i]);
        assert_true(cd_cf64(gx64)[i] == (keep64 ? (double)cd_cf32(gy)[i] * scale : 0.0));
        assert_true((float)cd_cf64(gx64)[i] == cd_cf32(gx32)[i]);
    }
    assert_true(kept > 0 && kept < cnt); /* a real draw, not all kept or dropped */
    /* a float32 tensor handed to the float64 kernel is refused */
    assert_int_equal(def->forward64(&n, &x, out64, &ctx), CD_ERR_UNSUPPORTED);
    for (int j = 0; j < 2; j++) {
        cd_tensor_free(out32[j]);
        cd_tensor_free(out64[j]);
    }
    cd_tensor_free(gx32);
    cd_tensor_free(gx64);
    cd_tensor_free(x);
    cd_tensor_free(x64);
    cd_tensor_free(gy);
    cd_tensor_free(gy64);
    cd_node_clear(&n);
}

static void test_mc_dropout_float64(void **state)
{
    CD_UNUSED(state);
    check_mc_dropout64(13, false, false);
    check_mc_dropout64(13, true, true);
    check_mc_dropout64(10, false, true);
    check_mc_dropout64(7, true, false);
}

/* A whole plan in float64 mode (core/plan64.c) with an MC site:
 * x(2,3,4) -> Dropout "drop" -> Transpose -> Reshape(2,-1) ---> Concat -> y
 *        \-> Flatten ---------------------------------------/
 * y and dy/dx (seed w) of cd_plan_run64/cd_plan_backward64 round to the
 * float32 plan's: the same masks are drawn in both modes. */
static void test_mc_plan_float64(void **state)
{
    CD_UNUSED(state);
    tmodel *t = tm_new();
    int x = tm_input(t, "x");
    int64_t two = 2;
    int shape = tm_value(t, "shape", tu_tensor_i64(1, &two, (const int64_t[]){2, -1}));
    int d = tm_value(t, "d", NULL), tr = tm_value(t, "t", NULL), r = tm_value(t, "r", NULL);
    int f = tm_value(t, "f", NULL), y = tm_value(t, "y", NULL);
    cd_error err;
    tm_node(t, "Dropout", "drop", 1, (int[]){x}, d);
    cd_node *n = tm_node(t, "Transpose", "tr", 1, (int[]){d}, tr);
    assert_int_equal(cd_node_add_ints(n, "perm", (const int64_t[]){0, 2, 1}, 3, &err), CD_OK);
    tm_node(t, "Reshape", "re", 2, (int[]){tr, shape}, r);
    tm_node(t, "Flatten", "fl", 1, (int[]){x}, f);
    n = tm_node(t, "Concat", "cat", 2, (int[]){r, f}, y);
    assert_int_equal(cd_node_add_int(n, "axis", 1, &err), CD_OK);
    tm_output(t, y);
    tm_bind_all(t);
    const int site_of[5] = {0, -1, -1, -1, -1};
    const float p[1] = {0.4f};
    const bool ch[1] = {false}, keep_node[5] = {true};
    const uint64_t key[1] = {cd_site_key("drop")};
    cd_stochastic s = {.seed = 3, .sample_offset = 11, .nodes = t->m.nodes, .n_nodes = 5,
                       .site_of_node = site_of, .site_p = p, .site_channel = ch,
                       .site_key = key};
    int64_t xd[3] = {2, 3, 4}, yd[2] = {2, 24};
    cd_tensor *xt = tu_random(3, xd, 17, -1, 1), *w = tu_random(2, yd, 18, -1, 1);
    const cd_tensor *ins[1] = {xt};
    cd_plan_options po = {.keep_node = keep_node, .keep_activations = true};
    cd_plan *plan = NULL;
    assert_int_equal(cd_plan_build(&t->m, ins, &po, &plan, &err), CD_OK);
    cd_ctx ctx = {.err = &err, .threads = 1, .stochastic = &s};
    const cd_tensor *seeds[1] = {w};
    cd_tensor *g32 = NULL, *g64 = NULL, *y32 = NULL;
    assert_int_equal(cd_plan_run(plan, ins, &ctx), CD_OK);
    assert_int_equal(cd_tensor_clone(&plan->vals[y], &y32, &err), CD_OK);
    assert_int_equal(cd_plan_backward(plan, 1, &y, seeds, 1, &x, &g32, &ctx), CD_OK);
    cd_status st = cd_plan_run64(plan, ins, &ctx);
    if (st != CD_OK)
        fail_msg("cd_plan_run64: %s", err.message);
    const cd_tensor *y64 = cd_plan_value64(plan, y);
    assert_non_null(y64);
    assert_int_equal(y64->dtype, CD_FLOAT64);
    size_t dropped = 0;
    for (size_t i = 0; i < 48; i++) {
        assert_true((float)cd_cf64(y64)[i] == cd_cf32(y32)[i]);
        dropped += cd_cf64(y64)[i] == 0.0;
    }
    assert_true(dropped > 0);
    assert_int_equal(cd_plan_backward64(plan, 1, &y, seeds, 1, &x, &g64, &ctx), CD_OK);
    for (size_t i = 0; i < 24; i++)
        assert_true(fabs(cd_cf64(g64)[i] - cd_cf32(g32)[i]) <= 1e-6);
    cd_tensor_free(g32);
    cd_tensor_free(g64);
    cd_tensor_free(y32);
    cd_plan_free(plan);
    cd_tensor_free(xt);
    cd_tensor_free(w);
    tm_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_p_zero_is_deterministic),
        cmocka_unit_test(test_drop_rate),
        cmocka_unit_test(test_linear_suffix_mean),
        cmocka_unit_test(test_bit_identical),
        cmocka_unit_test(test_ensemble_of_copies),
        cmocka_unit_test(test_ensemble_with_mc),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_mc_dropout_float64),
        cmocka_unit_test(test_mc_plan_float64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
