/* Explanations on small models built in memory: whole-model gradients
 * against finite differences, batching against one-row runs, Integrated
 * Gradients completeness, closed forms on linear models (occlusion and IG
 * equal gradient x input), faithfulness AUC arithmetic, and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "candor/explain.h"
#include "candor/model.h"
#include "candor/uncertainty.h"
#include "core/internal.h"
#include "explain/explain_internal.h"
#include "onnx_subset.pb-c.h"

/* ------------------------------------------------------------ model builder */

typedef struct mb {
    void *blocks[256];
    int n;
    CandorOnnx__ModelProto model;
    CandorOnnx__GraphProto graph;
    uint64_t rng;
} mb;

static void *mb_alloc(mb *b, size_t size)
{
    assert_true(b->n < 256);
    void *p = calloc(1, size);
    assert_non_null(p);
    return b->blocks[b->n++] = p;
}

static char *mb_str(mb *b, const char *s)
{
    return strcpy(mb_alloc(b, strlen(s) + 1), s);
}

static char **mb_list(mb *b, const char *a, const char *c, const char *d, size_t *n)
{
    char **arr = mb_alloc(b, 4 * sizeof *arr);
    *n = 0;
    if (a)
        arr[(*n)++] = mb_str(b, a);
    if (c)
        arr[(*n)++] = mb_str(b, c);
    if (d)
        arr[(*n)++] = mb_str(b, d);
    return arr;
}

static CandorOnnx__NodeProto *mb_node(mb *b, const char *op, const char *in0, const char *in1,
                                      const char *in2, const char *out)
{
    CandorOnnx__NodeProto *n = mb_alloc(b, sizeof *n);
    candor_onnx__node_proto__init(n);
    n->op_type = mb_str(b, op);
    n->name = mb_str(b, out);
    n->input = mb_list(b, in0, in1, in2, &n->n_input);
    n->output = mb_list(b, out, NULL, NULL, &n->n_output);
    n->attribute = mb_alloc(b, 4 * sizeof(void *));
    b->graph.node[b->graph.n_node++] = n;
    return n;
}

static void mb_ints(mb *b, CandorOnnx__NodeProto *n, const char *name, int count, int64_t v)
{
    CandorOnnx__AttributeProto *a = mb_alloc(b, sizeof *a);
    candor_onnx__attribute_proto__init(a);
    a->name = mb_str(b, name);
    a->has_type = 1;
    if (count == 0) { /* a single int */
        a->type = CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        a->has_i = 1;
        a->i = v;
    } else {
        a->type = CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
        a->n_ints = (size_t)count;
        a->ints = mb_alloc(b, (size_t)count * sizeof(int64_t));
        for (int i = 0; i < count; i++)
            a->ints[i] = v;
    }
    n->attribute[n->n_attribute++] = a;
}

static CandorOnnx__ValueInfoProto *mb_vi(mb *b, const char *name, int ndim, const int64_t *dims)
{
    CandorOnnx__ValueInfoProto *vi = mb_alloc(b, sizeof *vi);
    candor_onnx__value_info_proto__init(vi);
    vi->name = mb_str(b, name);
    CandorOnnx__TypeProto *tp = vi->type = mb_alloc(b, sizeof *tp);
    candor_onnx__type_proto__init(tp);
    CandorOnnx__TypeProto__Tensor *tt = mb_alloc(b, sizeof *tt);
    candor_onnx__type_proto__tensor__init(tt);
    tp->value_case = CANDOR_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = 1;
    CandorOnnx__TensorShapeProto *sh = tt->shape = mb_alloc(b, sizeof *sh);
    candor_onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)ndim;
    sh->dim = mb_alloc(b, (size_t)ndim * sizeof(void *));
    for (int i = 0; i < ndim; i++) {
        CandorOnnx__TensorShapeProto__Dimension *d = mb_alloc(b, sizeof *d);
        candor_onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] < 0) {
            d->value_case = CANDOR_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = mb_str(b, "N");
        } else {
            d->value_case = CANDOR_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        sh->dim[i] = d;
    }
    return vi;
}

/* Random float initializer, uniform in [-scale, scale). */
static void mb_weight(mb *b, const char *name, int ndim, const int64_t *dims, float scale)
{
    CandorOnnx__TensorProto *t = mb_alloc(b, sizeof *t);
    candor_onnx__tensor_proto__init(t);
    t->name = mb_str(b, name);
    t->has_data_type = 1;
    t->data_type = 1;
    t->n_dims = (size_t)ndim;
    t->dims = mb_alloc(b, (size_t)ndim * sizeof(int64_t));
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)(t->dims[i] = dims[i]);
    float *v = mb_alloc(b, n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = tu_uniform(&b->rng, -scale, scale);
    t->has_raw_data = 1;
    t->raw_data.len = n * sizeof(float);
    t->raw_data.data = (uint8_t *)v;
    b->graph.initializer[b->graph.n_initializer++] = t;
}

static const int64_t x_dims[4] = {-1, 2, 8, 8};

/* conv(2->4, 3x3, pad 1) -> act -> conv(4->4) -> act -> GAP -> Flatten ->
 * Gemm(4->3). act "Identity" makes the model affine. With dense, the model
 * is Flatten -> Gemm(128->3): no spatial layer. */
static cd_model *build_model(const char *act, bool dense, uint64_t seed)
{
    mb *b = calloc(1, sizeof *b);
    assert_non_null(b);
    b->rng = seed;
    candor_onnx__model_proto__init(&b->model);
    candor_onnx__graph_proto__init(&b->graph);
    b->model.has_ir_version = 1;
    b->model.ir_version = 8;
    b->model.graph = &b->graph;
    CandorOnnx__OperatorSetIdProto *op = mb_alloc(b, sizeof *op);
    candor_onnx__operator_set_id_proto__init(op);
    op->domain = mb_str(b, "");
    op->has_version = 1;
    op->version = 13;
    b->model.opset_import = mb_alloc(b, sizeof(void *));
    b->model.opset_import[0] = op;
    b->model.n_opset_import = 1;
    b->graph.node = mb_alloc(b, 16 * sizeof(void *));
    b->graph.initializer = mb_alloc(b, 16 * sizeof(void *));
    b->graph.input = mb_alloc(b, sizeof(void *));
    b->graph.output = mb_alloc(b, sizeof(void *));
    b->graph.input[b->graph.n_input++] = mb_vi(b, "x", 4, x_dims);
    int64_t y_dims[2] = {-1, 3};
    b->graph.output[b->graph.n_output++] = mb_vi(b, "y", 2, y_dims);
    if (dense) {
        mb_weight(b, "Wd", 2, (int64_t[]){3, 128}, 0.2f);
        mb_weight(b, "Bd", 1, (int64_t[]){3}, 0.1f);
        mb_node(b, "Flatten", "x", NULL, NULL, "flat");
        mb_ints(b, mb_node(b, "Gemm", "flat", "Wd", "Bd", "y"), "transB", 0, 1);
    } else {
        mb_weight(b, "W1", 4, (int64_t[]){4, 2, 3, 3}, 0.5f);
        mb_weight(b, "B1", 1, (int64_t[]){4}, 0.2f);
        mb_weight(b, "W2", 4, (int64_t[]){4, 4, 3, 3}, 0.4f);
        mb_weight(b, "B2", 1, (int64_t[]){4}, 0.2f);
        mb_weight(b, "Wf", 2, (int64_t[]){3, 4}, 1.0f);
        mb_weight(b, "Bf", 1, (int64_t[]){3}, 0.2f);
        CandorOnnx__NodeProto *c1 = mb_node(b, "Conv", "x", "W1", "B1", "a1");
        mb_ints(b, c1, "kernel_shape", 2, 3);
        mb_ints(b, c1, "pads", 4, 1);
        mb_node(b, act, "a1", NULL, NULL, "h1");
        CandorOnnx__NodeProto *c2 = mb_node(b, "Conv", "h1", "W2", "B2", "a2");
        mb_ints(b, c2, "kernel_shape", 2, 3);
        mb_ints(b, c2, "pads", 4, 1);
        mb_node(b, act, "a2", NULL, NULL, "h2");
        mb_node(b, "GlobalAveragePool", "h2", NULL, NULL, "g");
        mb_node(b, "Flatten", "g", NULL, NULL, "f");
        mb_ints(b, mb_node(b, "Gemm", "f", "Wf", "Bf", "y"), "transB", 0, 1);
    }
    size_t size = candor_onnx__model_proto__get_packed_size(&b->model);
    uint8_t *buf = malloc(size);
    assert_non_null(buf);
    candor_onnx__model_proto__pack(&b->model, buf);
    cd_model *m = NULL;
    cd_error err = {0};
    cd_status st = cd_model_load_memory(buf, size, NULL, NULL, &m, &err);
    if (st != CD_OK)
        fail_msg("model load: %s", err.message);
    free(buf);
    for (int i = 0; i < b->n; i++)
        free(b->blocks[i]);
    free(b);
    return m;
}

/* Asserts CD_OK, showing the library's message otherwise. */
#define OK(call)                                                                                   \
    do {                                                                                           \
        cd_status st_ = (call);                                                                    \
        if (st_ != CD_OK)                                                                          \
            fail_msg("%s: %s", #call, err.message);                                                \
    } while (0)

static cd_explainer *make_explainer(const cd_model *m, int max_batch, bool loop)
{
    cd_explain_options o = {.threads = 1, .max_batch = max_batch, .force_loop = loop};
    cd_explainer *e = NULL;
    cd_error err = {0};
    assert_int_equal(cd_explainer_create(m, &o, &e, &err), CD_OK);
    return e;
}

static cd_tensor *input(int64_t n, uint64_t seed)
{
    int64_t d[4] = {n, 2, 8, 8};
    return tu_random(4, d, seed, -1.0f, 1.0f);
}

static double score_of(cd_explainer *e, const cd_tensor *x, const cd_objective *o)
{
    double s = 0;
    cd_error err = {0};
    OK(cd_explain_scores(e, x, o, &s, NULL, &err));
    return s;
}

/* ------------------------------------------------------------ tests */

/* Input gradient vs central differences of the forward pass, for the
 * logit, probability, log-probability and entropy objectives. float32 mode:
 * step 1e-2, within 2e-3 max|g|. Float64 mode (core/plan64.c; the scores
 * are float64 too): step 2^-12, within 1e-6 max|g|; it also agrees with the
 * float32 gradient to float32 precision. */
static void gradient_vs_differences(bool f64)
{
    cd_model *m = build_model("Tanh", false, 11);
    cd_explain_options eo = {.threads = 1, .max_batch = 8, .float64 = f64};
    cd_explainer *e = NULL, *e32 = make_explainer(m, 8, false);
    cd_error err = {0};
    OK(cd_explainer_create(m, &eo, &e, &err));
    cd_tensor *x = input(1, 5);
    const float h = f64 ? 0x1p-12f : 1e-2f;
    for (int kind = 0; kind < 4; kind++) {
        cd_objective o;
        cd_objective_default(&o);
        o.kind = (cd_objective_kind)kind;
        o.target = 1;
        cd_tensor *g = NULL, *g32 = NULL;
        OK(cd_explain_gradient(e, x, &o, 1, NULL, &g, NULL, NULL, &err));
        OK(cd_explain_gradient(e32, x, &o, 1, NULL, &g32, NULL, NULL, &err));
        double gmax = 0, worst = 0, vs32 = 0;
        for (size_t i = 0; i < cd_tensor_numel(x); i++) {
            gmax = fmax(gmax, fabs(cd_f32(g)[i]));
            vs32 = fmax(vs32, fabs(cd_f32(g)[i] - cd_f32(g32)[i]));
        }
        for (size_t i = 0; i < cd_tensor_numel(x); i += f64 ? 5 : 7) {
            float keep = cd_f32(x)[i], up = keep + h, down = keep - h;
            cd_f32(x)[i] = up;
            double fp = score_of(e, x, &o);
            cd_f32(x)[i] = down;
            double fm = score_of(e, x, &o);
            cd_f32(x)[i] = keep;
            worst = fmax(worst, fabs((fp - fm) / ((double)up - down) - cd_f32(g)[i]));
        }
        if (worst > (f64 ? 1e-6 * gmax : 2e-3 * gmax + 1e-5) || vs32 > 1e-4 * gmax)
            fail_msg("%s, objective %d: gradient vs differences %.3g, vs float32 mode %.3g "
                     "(max |g| %.3g)", f64 ? "float64" : "float32", kind, worst, vs32, gmax);
        cd_tensor_free(g);
        cd_tensor_free(g32);
    }
    cd_tensor_free(x);
    cd_explainer_free(e);
    cd_explainer_free(e32);
    cd_model_free(m);
}

static void test_gradient_vs_finite_differences(void **state)
{
    (void)state;
    gradient_vs_differences(false);
    gradient_vs_differences(true);
}

/* A batch of 5 in passes of 2, and the forced one-row loop, give each row's
 * own gradient; the intermediate tensor's gradient and value come back too. */
static void test_batched_equals_rows(void **state)
{
    (void)state;
    cd_model *m = build_model("Tanh", false, 12);
    cd_explainer *eb = make_explainer(m, 2, false), *el = make_explainer(m, 8, true);
    cd_tensor *x = input(5, 9);
    cd_objective o;
    cd_objective_default(&o);
    const char *wrt[2] = {NULL, "h1"};
    cd_tensor *gb[2], *gl[2], *vb[2];
    double sb[5], sl[5];
    cd_error err = {0};
    OK(cd_explain_gradient(eb, x, &o, 2, wrt, gb, vb, sb, &err));
    OK(cd_explain_gradient(el, x, &o, 2, wrt, gl, NULL, sl, &err));
    for (int i = 0; i < 2; i++) {
        assert_true(tu_max_abs_diff(gb[i], gl[i]) < 1e-6);
        assert_int_equal(cd_tensor_dims(gb[i])[0], 5);
    }
    assert_int_equal(cd_tensor_dims(vb[1])[1], 4);
    for (int r = 0; r < 5; r++) {
        int64_t d1[4] = {1, 2, 8, 8};
        cd_tensor *row = NULL, *g1 = NULL;
        assert_int_equal(cd_tensor_from_data(CD_FLOAT32, 4, d1, cd_f32(x) + r * 128, &row, &err),
                         CD_OK);
        double s1;
        OK(cd_explain_gradient(eb, row, &o, 1, NULL, &g1, NULL, &s1, &err));
        assert_true(fabs(s1 - sb[r]) < 1e-5 && fabs(s1 - sl[r]) < 1e-5);
        for (int i = 0; i < 128; i++)
            assert_true(fabsf(cd_f32(g1)[i] - cd_f32(gb[0])[r * 128 + i]) < 1e-6f);
        cd_tensor_free(row);
        cd_tensor_free(g1);
    }
    for (int i = 0; i < 2; i++) {
        cd_tensor_free(gb[i]);
        cd_tensor_free(gl[i]);
        cd_tensor_free(vb[i]);
    }
    cd_tensor_free(x);
    cd_explainer_free(eb);
    cd_explainer_free(el);
    cd_model_free(m);
}

/* Gauss-Legendre nodes/weights: the weights sum to 1 and an n-point rule
 * integrates t^(2n-1) over [0, 1] exactly (1 / 2n). */
static void test_gauss_legendre_rule(void **state)
{
    (void)state;
    for (int n = 1; n <= 64; n++) {
        double nodes[64], w[64], sw = 0, mono = 0;
        ex_gauss_legendre(n, nodes, w);
        for (int i = 0; i < n; i++) {
            assert_true(nodes[i] > 0 && nodes[i] < 1);
            sw += w[i];
            mono += w[i] * pow(nodes[i], 2 * n - 1);
        }
        assert_true(fabs(sw - 1) < 1e-12);
        assert_true(fabs(mono - 1.0 / (2 * n)) < 1e-12);
    }
    cd_model *m = build_model("Identity", false, 3);
    cd_explainer *e = make_explainer(m, 8, false);
    cd_tensor *x = input(1, 2);
    /* On an affine model IG with any rule equals x * gradient (black
     * baseline), and its completeness delta vanishes. */
    cd_explain_params p;
    cd_explain_params_default(&p, CD_EXPLAIN_IG);
    p.steps = 5;
    cd_explanation ig = {0}, gx = {0};
    cd_error err = {0};
    OK(cd_explain(e, x, &p, &ig, &err));
    cd_explain_params_default(&p, CD_EXPLAIN_GRADXINPUT);
    OK(cd_explain(e, x, &p, &gx, &err));
    assert_true(tu_max_abs_diff(ig.map, gx.map) < 1e-5);
    assert_true(fabs(ig.completeness_delta) < 1e-4);
    cd_explanation_free(&ig);
    cd_explanation_free(&gx);
    cd_tensor_free(x);
    cd_explainer_free(e);
    cd_model_free(m);
}

/* IG with 64 Gauss-Legendre steps on a smooth (tanh) model: completeness
 * delta within 1% of |F(x) - F(x')|, for the black and blurred baselines;
 * Riemann-middle with 64 steps also within 1%. */
static void test_ig_completeness(void **state)
{
    (void)state;
    cd_model *m = build_model("Tanh", false, 21);
    cd_explainer *e = make_explainer(m, 16, false);
    cd_tensor *x = input(1, 4);
    for (int k = 0; k < 6; k++)
        for (int i = 0; i < 128; i++)
            cd_f32(x)[i] *= 1.5f; /* a larger path makes the integrand curve */
    for (int variant = 0; variant < 3; variant++) {
        cd_explain_params p;
        cd_explain_params_default(&p, CD_EXPLAIN_IG);
        p.steps = 64;
        p.objective.target = 0;
        p.baseline = variant == 1 ? CD_BASELINE_BLUR : CD_BASELINE_BLACK;
        p.blur_sigma = 1.0f;
        p.ig_rule = variant == 2 ? CD_IG_RIEMANN_MIDDLE : CD_IG_GAUSS_LEGENDRE;
        cd_explanation ex = {0};
        cd_error err = {0};
        OK(cd_explain(e, x, &p, &ex, &err));
        double span = fabs(ex.score - ex.baseline_score);
        double sum = 0;
        for (int i = 0; i < 128; i++)
            sum += cd_f32(ex.map)[i];
        /* The reported delta is what it says it is. */
        assert_true(fabs(ex.completeness_delta - (sum - (ex.score - ex.baseline_score))) <
                    1e-4 * fmax(1.0, span));
        if (!(span > 1e-3) || fabs(ex.completeness_delta) > 0.01 * span)
            fail_msg("variant %d: delta %.3g vs |F(x)-F(x')| %.3g", variant,
                     ex.completeness_delta, span);
        assert_int_equal(ex.passes, 64 / 16);
        cd_explanation_free(&ex);
    }
    cd_tensor_free(x);
    cd_explainer_free(e);
    cd_model_free(m);
}

/* IG through the linear prefix (the first Conv runs once forward and once
 * transposed, explain/methods.c) equals IG with every step's own input
 * gradient (force_loop takes the plain path), for a ReLU and a tanh model,
 * both baselines, and a step count that leaves a short last batch. */
static void test_ig_linear_prefix_matches_plain(void **state)
{
    (void)state;
    const char *acts[2] = {"Relu", "Tanh"};
    for (int a = 0; a < 2; a++) {
        cd_model *m = build_model(acts[a], false, 31 + (uint64_t)a);
        cd_explainer *fast = make_explainer(m, 6, false), *plain = make_explainer(m, 6, true);
        cd_tensor *x = input(1, 7 + (uint64_t)a);
        for (int variant = 0; variant < 2; variant++) {
            cd_explain_params p;
            cd_explain_params_default(&p, CD_EXPLAIN_IG);
            p.steps = 20; /* batches of 6, 6, 6, 2 */
            p.baseline = variant ? CD_BASELINE_BLUR : CD_BASELINE_BLACK;
            p.blur_sigma = 1.0f;
            cd_explanation f = {0}, r = {0};
            cd_error err = {0};
            OK(cd_explain(fast, x, &p, &f, &err));
            OK(cd_explain(plain, x, &p, &r, &err));
            double mx = 0;
            for (int i = 0; i < 128; i++)
                mx = fmax(mx, fabs(cd_f32(r.map)[i]));
            assert_true(mx > 1e-4);
            assert_true(tu_max_abs_diff(f.map, r.map) <= 1e-5 * mx);
            assert_true(fabs(f.completeness_delta - r.completeness_delta) <= 1e-5 * fmax(1, mx));
            assert_int_equal(f.passes, 4);
            cd_explanation_free(&f);
            cd_explanation_free(&r);
        }
        cd_tensor_free(x);
        cd_explainer_free(fast);
        cd_explainer_free(plain);
        cd_model_free(m);
    }
}

/* Affine model: occlusion with a 1x1 window and value 0 removes exactly
 * sum_c x_c g_c from the score, so it equals gradient x input summed over
 * channels. */
static void test_occlusion_closed_form(void **state)
{
    (void)state;
    cd_model *m = build_model("Identity", false, 5);
    cd_explainer *e = make_explainer(m, 7, false);
    cd_tensor *x = input(1, 8);
    cd_explain_params p;
    cd_explain_params_default(&p, CD_EXPLAIN_OCCLUSION);
    p.window = 1;
    p.stride = 1;
    cd_explanation oc = {0}, gx = {0};
    cd_error err = {0};
    OK(cd_explain(e, x, &p, &oc, &err));
    assert_int_equal(oc.passes, (64 + 6) / 7);
    cd_explain_params_default(&p, CD_EXPLAIN_GRADXINPUT);
    OK(cd_explain(e, x, &p, &gx, &err));
    cd_tensor *s2 = NULL;
    OK(cd_explain_saliency_2d(gx.map, false, &s2, &err));
    for (int j = 0; j < 64; j++)
        assert_true(fabsf(cd_f32(oc.map)[j] - cd_f32(s2)[j]) < 1e-5f);
    /* Window 3, stride 2 on 8: corners 0, 2, 4 and the flush 5; a pixel's
     * value is the mean drop of the windows covering it. */
    cd_explain_params_default(&p, CD_EXPLAIN_OCCLUSION);
    p.window = 3;
    p.stride = 2;
    cd_explanation o3 = {0};
    OK(cd_explain(e, x, &p, &o3, &err));
    int corner[4] = {0, 2, 4, 5};
    for (int y = 0; y < 8; y++)
        for (int xx = 0; xx < 8; xx++) {
            double acc = 0;
            int cnt = 0;
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++) {
                    if (y < corner[a] || y >= corner[a] + 3 || xx < corner[b] ||
                        xx >= corner[b] + 3)
                        continue;
                    double drop = 0; /* affine: the drop is the window's sum */
                    for (int yy = corner[a]; yy < corner[a] + 3; yy++)
                        for (int x2 = corner[b]; x2 < corner[b] + 3; x2++)
                            drop += cd_f32(s2)[yy * 8 + x2];
                    acc += drop;
                    cnt++;
                }
            assert_true(fabs(cd_f32(o3.map)[y * 8 + xx] - acc / cnt) < 1e-4);
        }
    cd_tensor_free(s2);
    cd_explanation_free(&oc);
    cd_explanation_free(&o3);
    cd_explanation_free(&gx);
    cd_tensor_free(x);
    cd_explainer_free(e);
    cd_model_free(m);
}

/* SmoothGrad: zero noise gives the plain gradient (and VarGrad 0); with
 * noise the result does not depend on the batch size; RISE likewise. */
static void test_smoothgrad_and_rise(void **state)
{
    (void)state;
    cd_model *m = build_model("Tanh", false, 6);
    cd_explainer *e3 = make_explainer(m, 3, false), *e8 = make_explainer(m, 8, false);
    cd_tensor *x = input(1, 3);
    cd_explain_params p;
    cd_explanation a = {0}, b = {0}, g = {0};
    cd_error err = {0};
    cd_explain_params_default(&p, CD_EXPLAIN_GRADIENT);
    OK(cd_explain(e8, x, &p, &g, &err));
    cd_explain_params_default(&p, CD_EXPLAIN_SMOOTHGRAD);
    p.noise_level = 0;
    p.samples = 4;
    OK(cd_explain(e8, x, &p, &a, &err));
    assert_true(tu_max_abs_diff(a.map, g.map) < 1e-6);
    cd_explanation_free(&a);
    p.smoothgrad_form = CD_SMOOTHGRAD_VARGRAD;
    OK(cd_explain(e8, x, &p, &a, &err));
    for (int i = 0; i < 128; i++)
        assert_true(fabsf(cd_f32(a.map)[i]) < 1e-9f);
    cd_explanation_free(&a);
    p.smoothgrad_form = CD_SMOOTHGRAD_MEAN;
    p.noise_level = 0.2f;
    p.samples = 10;
    OK(cd_explain(e3, x, &p, &a, &err));
    OK(cd_explain(e8, x, &p, &b, &err));
    assert_true(tu_max_abs_diff(a.map, b.map) < 1e-6);
    assert_true(tu_max_abs_diff(a.map, g.map) > 1e-4); /* noise did something */
    cd_explanation_free(&a);
    cd_explanation_free(&b);
    cd_explain_params_default(&p, CD_EXPLAIN_RISE);
    p.rise_masks = 20;
    p.rise_grid = 3;
    OK(cd_explain(e3, x, &p, &a, &err));
    OK(cd_explain(e8, x, &p, &b, &err));
    assert_true(tu_max_abs_diff(a.map, b.map) < 1e-6);
    assert_int_equal(cd_tensor_ndim(a.map), 4);
    assert_int_equal(cd_tensor_dims(a.map)[1], 1);
    cd_explanation_free(&a);
    cd_explanation_free(&b);
    cd_explanation_free(&g);
    cd_tensor_free(x);
    cd_explainer_free(e3);
    cd_explainer_free(e8);
    cd_model_free(m);
}

/* Grad-CAM on the small model: the default layer is the last Conv's
 * activation; the map is in [0, 1] with max 1 and equals a CAM computed
 * here from the layer gradient and value. */
/* Float64 mode (core/plan64.c): every operator has float64 kernels (a
 * backward64 wherever there is a backward); IG and Grad-CAM run in it and
 * agree with float32 mode (its gradients: test_gradient_vs_finite_differences). */
static void test_float64_mode(void **state)
{
    (void)state;
    for (int id = 0; id < CD_OP_COUNT; id++) {
        const cd_op_def *d = cd_op_get(id);
        if (!d->forward64 || (d->backward != NULL) != (d->backward64 != NULL))
            fail_msg("operator %s lacks a float64 kernel", d->name);
    }
    cd_model *m = build_model("Tanh", false, 11);
    cd_explain_options o64 = {.threads = 1, .max_batch = 8, .float64 = true};
    cd_explainer *e = NULL, *e32 = make_explainer(m, 8, false);
    cd_error err = {0};
    OK(cd_explainer_create(m, &o64, &e, &err));
    cd_tensor *x = input(1, 5);
    for (int method = CD_EXPLAIN_IG; method <= CD_EXPLAIN_GRADCAM; method++) {
        cd_explain_params p;
        cd_explain_params_default(&p, (cd_explain_method)method);
        cd_explanation a = {0}, b = {0};
        OK(cd_explain(e, x, &p, &a, &err));
        OK(cd_explain(e32, x, &p, &b, &err));
        double mx = 0, d = 0;
        for (size_t i = 0; i < cd_tensor_numel(a.map); i++) {
            mx = fmax(mx, fabs(cd_f32(b.map)[i]));
            d = fmax(d, fabs(cd_f32(a.map)[i] - cd_f32(b.map)[i]));
        }
        if (!(d <= 1e-4 * mx) || fabs(a.score - b.score) > 1e-5 * (1 + fabs(b.score)))
            fail_msg("method %d: float64 and float32 maps differ by %.3g (max %.3g)", method, d,
                     mx);
        cd_explanation_free(&a);
        cd_explanation_free(&b);
    }
    cd_tensor_free(x);
    cd_explainer_free(e);
    cd_explainer_free(e32);
    cd_model_free(m);
}

static void test_gradcam_small(void **state)
{
    (void)state;
    cd_model *m = build_model("Relu", false, 8);
    cd_explainer *e = make_explainer(m, 8, false);
    cd_tensor *x = input(1, 1);
    const char *layer = NULL;
    cd_error err = {0};
    OK(cd_explain_default_layer(e, x, &layer, &err));
    assert_string_equal(layer, "h2");
    cd_explain_params p;
    cd_explain_params_default(&p, CD_EXPLAIN_GRADCAM);
    cd_explanation ex = {0};
    OK(cd_explain(e, x, &p, &ex, &err));
    cd_objective o;
    cd_objective_default(&o);
    o.target = ex.target;
    cd_tensor *g = NULL, *A = NULL;
    OK(cd_explain_gradient(e, x, &o, 1, &layer, &g, &A, NULL, &err));
    /* Same size as the input: no upsampling, so the CAM is exact here. */
    double cam[64], lo = INFINITY, hi = -INFINITY;
    for (int j = 0; j < 64; j++) {
        double acc = 0;
        for (int k = 0; k < 4; k++) {
            double alpha = 0;
            for (int i = 0; i < 64; i++)
                alpha += cd_f32(g)[k * 64 + i] / 64.0;
            acc += alpha * cd_f32(A)[k * 64 + j];
        }
        cam[j] = fmax(acc, 0);
        lo = fmin(lo, cam[j]);
        hi = fmax(hi, cam[j]);
    }
    for (int j = 0; j < 64; j++)
        assert_true(fabs(cd_f32(ex.map)[j] - (cam[j] - lo) / (hi - lo + 1e-7)) < 1e-5);
    cd_tensor_free(g);
    cd_tensor_free(A);
    cd_explanation_free(&ex);
    cd_tensor_free(x);
    cd_explainer_free(e);
    cd_model_free(m);
}

/* Deletion/insertion: n_steps + 1 points, endpoints equal the probability
 * at x / at the baseline, AUC = (sum - s0/2 - sn/2) / n. */
static void test_faithfulness(void **state)
{
    (void)state;
    cd_model *m = build_model("Tanh", false, 9);
    cd_explainer *e = make_explainer(m, 8, false);
    cd_tensor *x = input(1, 6);
    int64_t d2[2] = {8, 8};
    cd_tensor *sal = tu_random(2, d2, 77, 0.0f, 1.0f);
    cd_faithfulness_params fp;
    cd_faithfulness_params_default(&fp);
    fp.step = 10;
    cd_faithfulness f = {0};
    cd_error err = {0};
    OK(cd_explain_faithfulness(e, x, sal, 2, &fp, &f, &err));
    assert_int_equal(f.n_steps, 7);
    cd_objective o;
    cd_objective_default(&o);
    o.kind = CD_OBJECTIVE_PROB;
    o.target = 2;
    double px = score_of(e, x, &o);
    cd_tensor *zero = input(1, 6);
    memset(cd_f32(zero), 0, 128 * sizeof(float));
    double p0 = score_of(e, zero, &o);
    assert_true(fabs(f.deletion[0] - px) < 1e-6 && fabs(f.deletion[7] - p0) < 1e-6);
    assert_true(fabs(f.insertion[7] - px) < 1e-6);
    double s = 0;
    for (int i = 0; i <= 7; i++)
        s += f.deletion[i];
    assert_true(fabs(f.deletion_auc - (s - f.deletion[0] / 2 - f.deletion[7] / 2) / 7) < 1e-9);
    cd_faithfulness_free(&f);
    cd_tensor_free(zero);
    cd_tensor_free(sal);
    cd_tensor_free(x);
    cd_explainer_free(e);
    cd_model_free(m);
}

static void test_bad_input(void **state)
{
    (void)state;
    cd_model *m = build_model("Relu", false, 1), *dense = build_model("Relu", true, 2);
    cd_explainer *e = make_explainer(m, 8, false), *ed = make_explainer(dense, 8, false);
    cd_tensor *x = input(1, 1);
    cd_explain_params p;
    cd_explanation ex = {0};
    cd_error err = {0};
    cd_explain_params_default(&p, CD_EXPLAIN_GRADCAM);
    p.layer = "no_such_layer";
    assert_int_equal(cd_explain(e, x, &p, &ex, &err), CD_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "no_such_layer"));
    assert_non_null(strstr(err.message, "'h2'")); /* candidates listed */
    cd_explain_params_default(&p, CD_EXPLAIN_GRADIENT);
    p.objective.target = 3;
    assert_int_equal(cd_explain(e, x, &p, &ex, &err), CD_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "outside the 3 classes"));
    cd_explain_params_default(&p, CD_EXPLAIN_GRADCAM);
    assert_int_equal(cd_explain(ed, x, &p, &ex, &err), CD_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.message, "spatial"));
    p.layer = "flat"; /* exists, but 2-D */
    assert_int_equal(cd_explain(ed, x, &p, &ex, &err), CD_ERR_UNSUPPORTED);
    assert_null(ex.map);
    cd_tensor_free(x);
    cd_explainer_free(e);
    cd_explainer_free(ed);
    cd_model_free(m);
    cd_model_free(dense);
}

/* ------------------------------------------------------------ MC / ensemble */

/* H[p̄] (or MI) of S sampled logit rows (S x k), float64, natural logs. */
static double mc_uncertainty(const float *z, int S, int k, bool mi)
{
    double pbar[8] = {0}, eh = 0;
    for (int t = 0; t < S; t++) {
        double mx = z[t * k], sum = 0, p[8];
        for (int c = 1; c < k; c++)
            mx = fmax(mx, z[t * k + c]);
        for (int c = 0; c < k; c++)
            sum += p[c] = exp((double)z[t * k + c] - mx);
        for (int c = 0; c < k; c++) {
            p[c] /= sum;
            pbar[c] += p[c] / S;
            eh -= p[c] * log(p[c]) / S;
        }
    }
    double h = 0;
    for (int c = 0; c < k; c++)
        h -= pbar[c] * log(pbar[c]);
    return mi ? h - eh : h;
}

/* Sampled logits (1, S, 3) of x by the MC engine / ensemble itself. */
static cd_tensor *engine_samples(cd_mc_session *mc, cd_ensemble *ens, const cd_tensor *x)
{
    cd_tensor *s = NULL;
    cd_error err = {0};
    const cd_tensor *in[1] = {x};
    if (mc)
        OK(cd_mc_sample(mc, 1, in, 1, NULL, &s, &err));
    else
        OK(cd_ensemble_sample(ens, 1, in, 1, NULL, &s, &err));
    return s;
}

/* Checks an MC/ensemble explanation against the sampling engine: each
 * per-sample gradient and the entropy / MI saliency against central
 * differences of the engine's own samples (the same masks are drawn at
 * x + h and x - h), and mean/std against the per-sample maps. */
static void check_mc_explanation(cd_mc_session *mc, cd_ensemble *ens, cd_tensor *x,
                                 cd_mc_explanation *ex)
{
    int S = ex->n_samples;
    size_t n = cd_tensor_numel(x);
    double gmax[2] = {0}, worst[2] = {0}, smax = 0, sworst = 0;
    for (size_t i = 0; i < n; i++) {
        gmax[0] = fmax(gmax[0], fabs(cd_f32(ex->entropy_saliency)[i]));
        gmax[1] = fmax(gmax[1], fabs(cd_f32(ex->mi_saliency)[i]));
        for (int t = 0; t < S; t++)
            smax = fmax(smax, fabs(cd_f32(ex->samples)[(size_t)t * n + i]));
    }
    for (size_t i = 0; i < n; i += 5) {
        float keep = cd_f32(x)[i];
        const float h = 1e-2f;
        cd_f32(x)[i] = keep + h;
        cd_tensor *zp = engine_samples(mc, ens, x);
        cd_f32(x)[i] = keep - h;
        cd_tensor *zm = engine_samples(mc, ens, x);
        cd_f32(x)[i] = keep;
        for (int mi = 0; mi < 2; mi++) {
            double fd = (mc_uncertainty(cd_f32(zp), S, 3, mi) -
                         mc_uncertainty(cd_f32(zm), S, 3, mi)) / (2.0 * h);
            const cd_tensor *g = mi ? ex->mi_saliency : ex->entropy_saliency;
            worst[mi] = fmax(worst[mi], fabs(fd - cd_cf32(g)[i]));
        }
        for (int t = 0; t < S; t++) {
            double fd = (cd_f32(zp)[t * 3 + ex->target] - cd_f32(zm)[t * 3 + ex->target]) /
                        (2.0 * h);
            sworst = fmax(sworst, fabs(fd - cd_f32(ex->samples)[(size_t)t * n + i]));
        }
        cd_tensor_free(zp);
        cd_tensor_free(zm);
    }
    if (worst[0] > 2e-3 * gmax[0] + 1e-5 || worst[1] > 2e-3 * gmax[1] + 1e-5)
        fail_msg("entropy/MI saliency vs finite differences: %.3g (max %.3g), %.3g (max %.3g)",
                 worst[0], gmax[0], worst[1], gmax[1]);
    if (sworst > 2e-3 * smax + 1e-5)
        fail_msg("per-sample gradient vs finite differences: %.3g (max %.3g)", sworst, smax);
    assert_true(gmax[0] > 0 && gmax[1] > 0);
    for (size_t i = 0; i < n; i++) {
        double m = 0, v = 0;
        for (int t = 0; t < S; t++)
            m += cd_f32(ex->samples)[(size_t)t * n + i] / S;
        for (int t = 0; t < S; t++) {
            double d = cd_f32(ex->samples)[(size_t)t * n + i] - m;
            v += d * d / S;
        }
        assert_true(fabs(cd_f32(ex->mean)[i] - m) <= 1e-6 * (fabs(m) + 1e-3));
        assert_true(fabs(cd_f32(ex->std)[i] - sqrt(v)) <= 1e-5 * (sqrt(v) + 1e-3));
    }
    /* The summaries equal the engine's at x. */
    cd_tensor *z = engine_samples(mc, ens, x);
    assert_true(fabs(ex->predictive_entropy - mc_uncertainty(cd_f32(z), S, 3, false)) < 1e-6);
    assert_true(fabs(ex->mutual_information - mc_uncertainty(cd_f32(z), S, 3, true)) < 1e-6);
    cd_tensor_free(z);
}

static void test_mc_explanations(void **state)
{
    (void)state;
    cd_model *m = build_model("Tanh", false, 21);
    cd_dropout_site site = {.name = "h1", .p = 0.3f};
    cd_mc_options mo;
    cd_mc_options_default(&mo);
    mo.samples = 5;
    mo.seed = 9;
    mo.n_sites = 1;
    mo.sites = &site;
    mo.threads = 1;
    cd_explain_options eo = {.threads = 1, .max_batch = 2}; /* samples split over passes */
    cd_explain_mc *u = NULL;
    cd_mc_session *mc = NULL;
    cd_error err = {0};
    OK(cd_explain_mc_create(1, (const cd_model *const[]){m}, &mo, &eo, &u, &err));
    OK(cd_mc_session_create(m, &mo, &mc, &err));
    assert_int_equal(cd_explain_mc_count(u), 5);
    cd_tensor *x = input(1, 31);
    cd_explain_params p;
    cd_explain_params_default(&p, CD_EXPLAIN_GRADIENT);
    cd_mc_explanation ex;
    OK(cd_explain_mc_run(u, x, &p, &ex, &err));
    assert_int_equal(ex.samples->dims[0], 5);
    check_mc_explanation(mc, NULL, x, &ex);
    /* The looped path (any method) gives the same per-sample gradients. */
    cd_explain_params_default(&p, CD_EXPLAIN_SMOOTHGRAD);
    p.samples = 1;
    p.noise_level = 0;
    cd_mc_explanation ex2;
    OK(cd_explain_mc_run(u, x, &p, &ex2, &err));
    assert_true(tu_max_abs_diff(ex.samples, ex2.samples) < 1e-5);
    cd_mc_explanation_free(&ex);
    cd_mc_explanation_free(&ex2);
    cd_explain_mc_free(u);
    cd_mc_session_free(mc);
    /* Deterministic ensemble of two different models. */
    cd_model *m2 = build_model("Tanh", false, 22);
    const cd_model *const members[2] = {m, m2};
    cd_ensemble *ens = NULL;
    OK(cd_explain_mc_create(2, members, NULL, &eo, &u, &err));
    OK(cd_ensemble_create(2, members, NULL, &ens, &err));
    cd_explain_params_default(&p, CD_EXPLAIN_GRADIENT);
    OK(cd_explain_mc_run(u, x, &p, &ex, &err));
    assert_int_equal(ex.n_samples, 2);
    check_mc_explanation(NULL, ens, x, &ex);
    cd_mc_explanation_free(&ex);
    /* A target outside the classes is refused. */
    p.objective.target = 7;
    assert_int_equal(cd_explain_mc_run(u, x, &p, &ex, &err), CD_ERR_INVALID_ARGUMENT);
    cd_explain_mc_free(u);
    cd_ensemble_free(ens);
    /* T > 1 without any site: the MC engine's error. */
    cd_mc_options none;
    cd_mc_options_default(&none);
    none.samples = 3;
    assert_int_equal(cd_explain_mc_create(1, members, &none, &eo, &u, &err),
                     CD_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "no Dropout node"));
    cd_tensor_free(x);
    cd_model_free(m);
    cd_model_free(m2);
}

/* Spearman on hand-computed cases; the randomisation check leaves the
 * model untouched and names the randomised nodes. */
static void test_sanity_check(void **state)
{
    (void)state;
    const float a[4] = {1, 2, 3, 4}, b[4] = {1, 3, 2, 4};
    assert_true(fabs(cd_spearman(a, b, 4) - 0.8) < 1e-12); /* 1 - 6*2/(4*15) */
    const float c[3] = {1, 1, 2}, d[3] = {1, 2, 3};
    /* ranks (1.5, 1.5, 3) vs (1, 2, 3): 1.5 / sqrt(1.5 * 2) */
    assert_true(fabs(cd_spearman(c, d, 3) - 1.5 / sqrt(3.0)) < 1e-12);
    assert_true(isnan(cd_spearman(c, c, 1)));
    cd_model *m = build_model("Tanh", false, 23);
    cd_explainer *e = make_explainer(m, 8, false);
    cd_tensor *x = input(1, 41);
    cd_explain_params p;
    cd_explain_params_default(&p, CD_EXPLAIN_GRADIENT);
    cd_explanation ex, again;
    cd_error err = {0};
    OK(cd_explain(e, x, &p, &ex, &err));
    cd_explain_options eo = {.threads = 1, .max_batch = 8};
    cd_sanity_result r;
    OK(cd_explain_sanity(m, &eo, x, &p, &ex, 1, 5, &r, &err));
    assert_int_equal(r.n_layers, 1);
    assert_string_equal(r.layers, "y"); /* the Gemm */
    assert_true(r.spearman >= -1 && r.spearman <= 1);
    assert_true(tu_max_abs_diff(ex.map, r.random_map) > 1e-4);
    cd_sanity_result_free(&r);
    OK(cd_explain_sanity(m, &eo, x, &p, &ex, 10, 5, &r, &err));
    assert_int_equal(r.n_layers, 3);
    assert_string_equal(r.layers, "y,a2,a1");
    cd_sanity_result_free(&r);
    OK(cd_explain(e, x, &p, &again, &err)); /* the shared model is unchanged */
    assert_true(tu_max_abs_diff(ex.map, again.map) == 0);
    assert_int_equal(cd_explain_sanity(m, &eo, x, &p, &ex, 0, 5, &r, &err),
                     CD_ERR_INVALID_ARGUMENT);
    cd_explanation_free(&ex);
    cd_explanation_free(&again);
    cd_tensor_free(x);
    cd_explainer_free(e);
    cd_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_vs_finite_differences),
        cmocka_unit_test(test_batched_equals_rows),
        cmocka_unit_test(test_gauss_legendre_rule),
        cmocka_unit_test(test_ig_completeness),
        cmocka_unit_test(test_ig_linear_prefix_matches_plain),
        cmocka_unit_test(test_occlusion_closed_form),
        cmocka_unit_test(test_smoothgrad_and_rise),
        cmocka_unit_test(test_gradcam_small),
        cmocka_unit_test(test_float64_mode),
        cmocka_unit_test(test_faithfulness),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_mc_explanations),
        cmocka_unit_test(test_sanity_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
