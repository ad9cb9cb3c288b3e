/* Fast execution plans (core/plan.c): fusion and buffer reuse must not change
 * results — the fast plan is compared with the keep_activations plan, which
 * runs every node on its own through the operator kernels tested elsewhere —
 * and the steady state of a run must not allocate per image (counted by
 * interposing malloc/calloc/realloc in this executable). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "core/plan.h"
#include "core/session.h"
#include "testutil.h"

/* Allocation counter --------------------------------------------------------- */

/* Sanitizers replace malloc themselves; the count is skipped under them. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COUNT_ALLOCS 0
#else
#define COUNT_ALLOCS 1
#endif

static atomic_long n_allocs;
static atomic_bool counting;

#if COUNT_ALLOCS

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

void *malloc(size_t n)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&n_allocs, 1);
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&n_allocs, 1);
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    if (atomic_load(&counting))
        atomic_fetch_add(&n_allocs, 1);
    return __libc_realloc(p, n);
}
#endif

/* A small residual CNN built by hand ------------------------------------------ */

#define MAXV 64
#define MAXN 32

static cd_model *model_new(void)
{
    cd_model *m = calloc(1, sizeof *m);
    m->values = calloc(MAXV, sizeof(cd_value));
    m->nodes = calloc(MAXN, sizeof(cd_node));
    m->inputs = calloc(MAXV, sizeof(int));
    m->outputs = calloc(MAXV, sizeof(int));
    m->opset = 13;
    return m;
}

static int value(cd_model *m, const char *name, cd_tensor *init)
{
    int v = m->n_values++;
    assert_true(v < MAXV);
    m->values[v].name = cd_strdup(name);
    m->values[v].init = init;
    m->values[v].ndim = -1;
    m->values[v].producer = -1;
    return v;
}

static cd_node *node(cd_model *m, const char *op, int nin, const int *in, const char *out)
{
    cd_error err;
    int o = value(m, out, NULL);
    cd_node *n = &m->nodes[m->n_nodes];
    assert_int_equal(cd_node_init(n, op, 13, nin, 1, &err), CD_OK);
    free(n->name);
    n->name = cd_strdup(out);
    memcpy(n->inputs, in, (size_t)nin * sizeof *in);
    n->outputs[0] = o;
    m->values[o].producer = m->n_nodes++;
    return n;
}

static int out_of(const cd_model *m) { return m->nodes[m->n_nodes - 1].outputs[0]; }

/* The graph input "x" (float32) of a new model. */
static int graph_input(cd_model *m)
{
    int x = value(m, "x", NULL);
    m->values[x].dtype = CD_FLOAT32;
    m->values[x].is_graph_input = true;
    m->inputs[m->n_inputs++] = x;
    return x;
}

/* Makes y the graph output and binds every node. */
static cd_model *finish(cd_model *m, int y)
{
    m->values[y].is_graph_output = true;
    m->outputs[m->n_outputs++] = y;
    cd_error err;
    for (int i = 0; i < m->n_nodes; i++)
        assert_int_equal(cd_node_bind(&m->nodes[i], &err), CD_OK);
    return m;
}

static int conv(cd_model *m, int x, int cin, int cout, int k, int group, uint64_t seed,
                const char *name)
{
    cd_error err;
    char wn[64], bn[64];
    snprintf(wn, sizeof wn, "%s.w", name);
    snprintf(bn, sizeof bn, "%s.b", name);
    int64_t wd[4] = {cout, cin / group, k, k}, bd[1] = {cout};
    int w = value(m, wn, tu_random(4, wd, seed, -0.3f, 0.3f));
    int b = value(m, bn, tu_random(1, bd, seed + 1, -0.2f, 0.2f));
    cd_node *n = node(m, "Conv", 3, (int[]){x, w, b}, name);
    int64_t pads[4] = {k / 2, k / 2, k / 2, k / 2};
    assert_int_equal(cd_node_add_ints(n, "pads", pads, 4, &err), CD_OK);
    assert_int_equal(cd_node_add_int(n, "group", group, &err), CD_OK);
    return out_of(m);
}

/* x -> A: Conv3x3(16->16) -> BN -> Add(B: Conv1x1(x)) -> Relu
 *   -> Conv3x3 depthwise -> Clip(0, 6) -> Conv1x1(16->8) -> Sigmoid = y */
static cd_model *residual_net(void)
{
    cd_model *m = model_new();
    int x = graph_input(m);
    int a = conv(m, x, 16, 16, 3, 1, 10, "A");
    int64_t cd[1] = {16};
    int bnp[4];
    const char *names[4] = {"bn.scale", "bn.bias", "bn.mean", "bn.var"};
    for (int i = 0; i < 4; i++)
        bnp[i] = value(m, names[i], tu_random(1, cd, 20 + (uint64_t)i, i == 3 ? 0.5f : -0.5f,
                                               i == 3 ? 2.0f : 1.5f));
    node(m, "BatchNormalization", 5, (int[]){a, bnp[0], bnp[1], bnp[2], bnp[3]}, "bn");
    int bnv = out_of(m);
    int b = conv(m, x, 16, 16, 1, 1, 30, "B");
    node(m, "Add", 2, (int[]){bnv, b}, "add");
    node(m, "Relu", 1, (int[]){out_of(m)}, "relu");
    int dw = conv(m, out_of(m), 16, 16, 3, 16, 40, "dw");
    int64_t none[1] = {0};
    float lo = 0.0f, hi = 6.0f;
    int vlo = value(m, "lo", tu_tensor_f32(0, none, &lo)), vhi = value(m, "hi", tu_tensor_f32(0, none, &hi));
    node(m, "Clip", 3, (int[]){dw, vlo, vhi}, "clip");
    int head = conv(m, out_of(m), 16, 8, 1, 1, 50, "head");
    node(m, "Sigmoid", 1, (int[]){head}, "y");
    int y = out_of(m);
    return finish(m, y);
}

static int hard_sigmoid(cd_model *m, int x, float alpha, const char *name)
{
    cd_error err;
    cd_node *n = node(m, "HardSigmoid", 1, (int[]){x}, name);
    assert_int_equal(cd_node_add_float(n, "alpha", alpha, &err), CD_OK);
    return out_of(m);
}

/* MobileNet-v3 style, as exported at opset 13:
 * x -> Conv3x3 -> HardSigmoid(1/6, 1/2) -> Mul(hs, conv) (= HardSwish)
 *   -> squeeze-excitation: GlobalAveragePool -> Conv1x1 -> Relu -> Conv1x1
 *      -> HardSigmoid(1/6) = gate (N,C,1,1); Mul(features, gate)
 *   -> Conv1x1(16->8) -> HardSigmoid(0.2) = y */
static cd_model *se_net(void)
{
    cd_model *m = model_new();
    int x = graph_input(m);
    int c1 = conv(m, x, 16, 16, 3, 1, 60, "c1");
    int hs = hard_sigmoid(m, c1, 1.0f / 6.0f, "hs");
    node(m, "Mul", 2, (int[]){hs, c1}, "hswish");
    int feat = out_of(m);
    node(m, "GlobalAveragePool", 1, (int[]){feat}, "gap");
    int se1 = conv(m, out_of(m), 16, 16, 1, 1, 70, "se1");
    node(m, "Relu", 1, (int[]){se1}, "se_relu");
    int se2 = conv(m, out_of(m), 16, 16, 1, 1, 80, "se2");
    int gate = hard_sigmoid(m, se2, 1.0f / 6.0f, "gate");
    node(m, "Mul", 2, (int[]){feat, gate}, "scaled");
    int head = conv(m, out_of(m), 16, 8, 1, 1, 90, "head");
    int y = hard_sigmoid(m, head, 0.2f, "y");
    return finish(m, y);
}

/* SqueezeNet fire modules: x -> squeeze Conv1x1 + Relu -> [expand Conv1x1 + Relu,
 * expand Conv3x3 + Relu] -> Concat(axis) twice over, then a Conv1x1 head. The
 * second fire's Concat also gets the fire's input (the first Concat's output)
 * as its middle input when `reuse_input` is set. */
static int fire(cd_model *m, int x, int cin, int sq, int ex, int64_t axis, uint64_t seed,
                const char *name, bool reuse_input)
{
    cd_error err;
    char nm[64];
    snprintf(nm, sizeof nm, "%s.sq", name);
    int s = conv(m, x, cin, sq, 1, 1, seed, nm);
    snprintf(nm, sizeof nm, "%s.sqr", name);
    node(m, "Relu", 1, (int[]){s}, nm);
    s = out_of(m);
    snprintf(nm, sizeof nm, "%s.e1", name);
    int e1 = conv(m, s, sq, ex, 1, 1, seed + 10, nm);
    snprintf(nm, sizeof nm, "%s.e1r", name);
    node(m, "Relu", 1, (int[]){e1}, nm);
    e1 = out_of(m);
    snprintf(nm, sizeof nm, "%s.e3", name);
    int e3 = conv(m, s, sq, ex, 3, 1, seed + 20, nm);
    snprintf(nm, sizeof nm, "%s.e3r", name);
    node(m, "Relu", 1, (int[]){e3}, nm);
    e3 = out_of(m);
    snprintf(nm, sizeof nm, "%s.cat", name);
    cd_node *c = reuse_input ? node(m, "Concat", 3, (int[]){e1, x, e3}, nm)
                               : node(m, "Concat", 2, (int[]){e1, e3}, nm);
    assert_int_equal(cd_node_add_int(c, "axis", axis, &err), CD_OK);
    return out_of(m);
}

static cd_model *fire_net(bool reuse_input)
{
    cd_model *m = model_new();
    int x = graph_input(m);
    int f1 = fire(m, x, 16, 8, 12, 1, 100, "f1", false);
    int f2 = fire(m, f1, 24, 6, 10, -3, 200, "f2", reuse_input);
    int y = conv(m, f2, reuse_input ? 44 : 20, 5, 1, 1, 300, "head");
    return finish(m, y);
}

static void model_free(cd_model *m)
{
    for (int v = 0; v < m->n_values; v++) {
        free(m->values[v].name);
        cd_tensor_free(m->values[v].init);
    }
    for (int i = 0; i < m->n_nodes; i++)
        cd_node_clear(&m->nodes[i]);
    free(m->values);
    free(m->nodes);
    free(m->inputs);
    free(m->outputs);
    free(m);
}

static cd_tensor *run_plan_threads(cd_plan *p, const cd_tensor *x, int threads)
{
    cd_error err = {0};
    cd_ctx ctx = {.err = &err, .threads = threads};
    if (cd_plan_run(p, &x, &ctx) != CD_OK)
        fail_msg("run: %s", err.message);
    cd_tensor *y = NULL;
    assert_int_equal(cd_tensor_clone(&p->vals[p->model->outputs[0]], &y, &err), CD_OK);
    cd_ctx_release(&ctx);
    return y;
}

static cd_tensor *run_plan(cd_plan *p, const cd_tensor *x) { return run_plan_threads(p, x, 1); }

/* The plans under test for input x: the default (fused, arena) plan and the
 * node-by-node plan that keeps every activation, the reference. */
static void build_fast_keep(const cd_model *m, const cd_tensor *x, cd_plan **fast,
                            cd_plan **keep)
{
    cd_error err = {0};
    cd_plan_options ko = {.keep_activations = true};
    const cd_tensor *xs[1] = {x};
    assert_int_equal(cd_plan_build(m, xs, NULL, fast, &err), CD_OK);
    assert_int_equal(cd_plan_build(m, xs, &ko, keep, &err), CD_OK);
}

/* Fused + arena plan == node-by-node plan; intermediates are not kept. */
static void test_fast_plan_matches_keep(void **state)
{
    (void)state;
    cd_model *m = residual_net();
    int64_t xd[4] = {2, 16, 11, 13};
    cd_tensor *x = tu_random(4, xd, 99, -1, 1);
    cd_plan *fast = NULL, *keep = NULL;
    build_fast_keep(m, x, &fast, &keep);
    cd_tensor *yf = run_plan(fast, x), *yk = run_plan(keep, x);
    assert_true(tu_max_abs_diff(yf, yk) < 1e-5);
    /* Run twice: reused buffers must not leak state between runs. */
    cd_tensor *yf2 = run_plan(fast, x);
    assert_true(tu_max_abs_diff(yf2, yk) == 0 || tu_max_abs_diff(yf2, yf) == 0);
    /* BN, Add, Relu, Clip and Sigmoid were absorbed into their Convs. */
    assert_int_equal(fast->n_exec, 4);
    assert_int_equal(fast->n_steps, keep->n_steps);
    assert_true(fast->runtime_bytes < fast->naive_bytes);
    int relu = -1;
    for (int v = 0; v < m->n_values; v++)
        if (strcmp(m->values[v].name, "relu") == 0)
            relu = v;
    assert_null(fast->vals[relu].data);
    assert_non_null(keep->vals[relu].data);
    /* The tape is refused on a fast plan, with a message saying why. */
    int out = m->outputs[0];
    cd_tensor *g = NULL;
    cd_error err = {0};
    cd_ctx ctx = {.err = &err, .threads = 1};
    assert_int_equal(cd_plan_backward(fast, 1, &out, (const cd_tensor *const *)&yf, 1, &m->inputs[0],
                                      &g, &ctx),
                     CD_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "keep_activations"));
    cd_tensor *all[] = {x, yf, yk, yf2};
    for (size_t i = 0; i < 4; i++)
        cd_tensor_free(all[i]);
    cd_plan_free(fast);
    cd_plan_free(keep);
    model_free(m);
}

/* HardSigmoid + Mul is fused into its Conv as HardSwish, a HardSigmoid gate
 * into its Conv; same results as node by node, and the same bits with one
 * and two threads. */
static void test_hard_swish_and_gate_fusion(void **state)
{
    (void)state;
    cd_model *m = se_net();
    int64_t xd[4] = {3, 16, 9, 14};
    cd_tensor *x = tu_random(4, xd, 7, -3, 3);
    cd_plan *fast = NULL, *keep = NULL;
    build_fast_keep(m, x, &fast, &keep);
    cd_tensor *yf = run_plan(fast, x), *yk = run_plan(keep, x), *y2 = run_plan_threads(fast, x, 2);
    assert_true(tu_max_abs_diff(yf, yk) < 1e-5);
    assert_int_equal(tu_max_abs_diff(yf, y2), 0);
    /* c1(+hs+mul), gap, se1(+relu), se2(+gate), scaled, head(+y) */
    assert_int_equal(fast->n_exec, 6);
    /* keep_node keeps the HardSigmoid (and so the pair) out of the fusion */
    bool keepn[32] = {false};
    keepn[1] = true; /* "hs" */
    cd_plan_options kn = {.keep_node = keepn};
    cd_plan *part = NULL;
    cd_error err = {0};
    const cd_tensor *xs[1] = {x};
    assert_int_equal(cd_plan_build(m, xs, &kn, &part, &err), CD_OK);
    assert_int_equal(part->n_exec, 8);
    cd_tensor *yp = run_plan(part, x);
    assert_true(tu_max_abs_diff(yp, yk) < 1e-5);
    cd_tensor *all[] = {x, yf, yk, y2, yp};
    for (size_t i = 0; i < 5; i++)
        cd_tensor_free(all[i]);
    cd_plan_free(fast);
    cd_plan_free(keep);
    cd_plan_free(part);
    model_free(m);
}

/* Channel Concats at batch 1 are removed: the expand convolutions write
 * straight into their slices of the Concat's output. The results match the
 * node-by-node plan (which copies) bit for bit, with one and two threads,
 * run after run; at batch 2 the slices are not contiguous and the Concats
 * run. A Concat whose input already holds slices (nested Concats) keeps its
 * copy. */
static void test_concat_slices(void **state)
{
    (void)state;
    for (int variant = 0; variant < 2; variant++) {
        bool reuse = variant == 1;
        cd_model *m = fire_net(reuse);
        for (int64_t batch = 1; batch <= 2; batch++) {
            int64_t xd[4] = {batch, 16, 9, 11};
            cd_tensor *x = tu_random(4, xd, 3 + (uint64_t)batch, -1, 1);
            cd_plan *fast = NULL, *keep = NULL;
            build_fast_keep(m, x, &fast, &keep);
            int want = batch == 1 ? (reuse ? 1 : 2) : 0;
            assert_int_equal(fast->n_sliced_concats, want);
            cd_tensor *yk = run_plan(keep, x), *yf = run_plan(fast, x);
            cd_tensor *y2 = run_plan_threads(fast, x, 2), *yf2 = run_plan(fast, x);
            assert_true(tu_max_abs_diff(yf, yk) == 0);
            assert_true(tu_max_abs_diff(y2, yk) == 0);
            assert_true(tu_max_abs_diff(yf2, yk) == 0);
            cd_tensor *all[] = {x, yk, yf, y2, yf2};
            for (size_t i = 0; i < 5; i++)
                cd_tensor_free(all[i]);
            cd_plan_free(fast);
            cd_plan_free(keep);
        }
        model_free(m);
    }
}

/* Allocations made by one steady-state cd_session_run at batch size n. */
static long steady_allocs(const cd_model *m, int64_t n, int threads)
{
    int64_t xd[4] = {n, 16, 20, 20};
    cd_tensor *x = tu_random(4, xd, 5, -1, 1);
    cd_session_options so = {.threads = threads};
    cd_session *s = NULL;
    cd_error err = {0};
    assert_int_equal(cd_session_create(m, &so, &s, &err), CD_OK);
    cd_tensor *y = NULL;
    const cd_tensor *xs[1] = {x};
    assert_int_equal(cd_session_run(s, 1, NULL, xs, 1, NULL, &y, &err), CD_OK);
    cd_tensor_free(y);
    atomic_store(&n_allocs, 0);
    atomic_store(&counting, true);
    cd_status st = cd_session_run(s, 1, NULL, xs, 1, NULL, &y, &err);
    atomic_store(&counting, false);
    assert_int_equal(st, CD_OK);
    cd_tensor_free(y);
    cd_session_free(s);
    cd_tensor_free(x);
    return atomic_load(&n_allocs);
}

/* O(1) allocations per run, none per image. With one thread, 256 images
 * cost exactly what 1 does (the input ordering array and the output clone).
 * With two, OpenBLAS's threaded sgemm mallocs a job buffer per large call:
 * per layer, not per image, so 64 and 256 images allocate the same. */
static void test_steady_state_allocations(void **state)
{
    (void)state;
    if (!COUNT_ALLOCS)
        skip();
    cd_model *m = residual_net();
    long one = steady_allocs(m, 1, 1), many = steady_allocs(m, 256, 1);
    long t64 = steady_allocs(m, 64, 2), t256 = steady_allocs(m, 256, 2);
    print_message("steady-state allocations per run: 1 thread: batch 1 %ld, batch 256 %ld; "
                  "2 threads: batch 64 %ld, batch 256 %ld\n", one, many, t64, t256);
    assert_int_equal(one, many);
    assert_true(one <= 4);
    assert_int_equal(t64, t256);
    assert_true(t256 < 64);
    model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_plan_matches_keep),
        cmocka_unit_test(test_hard_swish_and_gate_fusion),
        cmocka_unit_test(test_concat_slices),
        cmocka_unit_test(test_steady_state_allocations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
