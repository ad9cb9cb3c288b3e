/* ONNX loader tests.
 *
 * Real models: every model of the ONNX backend corpus either loads or is
 * refused as unsupported, and what loads matches the `onnx` Python package's
 * view of it (inputs without initializers, outputs, declared shapes/dtypes,
 * opset, node count, parameter count); every tensor file of the corpus's
 * first data sets decodes to the same bytes as onnx.numpy_helper.
 * Bad input: missing, truncated and garbage files, unsupported ops, cycles,
 * dangling inputs, huge or inconsistent initializers, external data that
 * escapes the model folder, opset and limit checks — each with its code.
 * Hand-built models are assembled with the generated protobuf-c code. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/onnx_io.h"
#include "testutil.h"

#define PY "/usr/bin/python3"

/* ------------------------------------------------------------------------ */
/* Paths and scratch folders */

static const char *corpus_dir(char *buf, size_t size)
{
    const char *env = getenv("CANDOR_ONNX_TESTS");
    if (env && env[0])
        return env;
    const char *src = getenv("CANDOR_SOURCE_DIR");
    snprintf(buf, size, "%s/../shared/onnx-tests", src ? src : ".");
    return buf;
}

static bool have_python_onnx(void)
{
    return system(PY " -c 'import onnx, numpy' >/dev/null 2>&1") == 0;
}

/* New empty scratch folder (caller removes it with remove_tree). */
static void make_scratch(char *buf, size_t size)
{
    const char *bin = getenv("CANDOR_BINARY_DIR");
    snprintf(buf, size, "%s/loader_XXXXXX", bin && bin[0] ? bin : "/tmp");
    assert_non_null(mkdtemp(buf));
}

static void remove_tree(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* ------------------------------------------------------------------------ */
/* A tiny ModelProto builder over the generated protobuf-c structs. All
 * memory comes from an arena freed with mb_free. */

#define MB_CAP 16

typedef struct mb {
    void *blocks[512];
    int n_blocks;
    CandorOnnx__ModelProto model;
    CandorOnnx__GraphProto graph;
} mb;

static void *mb_alloc(mb *b, size_t size)
{
    assert_true(b->n_blocks < (int)CD_COUNT_OF(b->blocks));
    void *p = calloc(1, size);
    assert_non_null(p);
    b->blocks[b->n_blocks++] = p;
    return p;
}

static char *mb_str(mb *b, const char *s)
{
    char *d = mb_alloc(b, strlen(s) + 1);
    strcpy(d, s);
    return d;
}

static mb *mb_new(int64_t opset)
{
    mb *b = calloc(1, sizeof *b);
    assert_non_null(b);
    candor_onnx__model_proto__init(&b->model);
    candor_onnx__graph_proto__init(&b->graph);
    b->model.has_ir_version = 1;
    b->model.ir_version = 8;
    b->model.producer_name = mb_str(b, "candor-test");
    b->model.graph = &b->graph;
    b->model.opset_import = mb_alloc(b, MB_CAP * sizeof(void *));
    if (opset > 0) {
        CandorOnnx__OperatorSetIdProto *op = mb_alloc(b, sizeof *op);
        candor_onnx__operator_set_id_proto__init(op);
        op->domain = mb_str(b, "");
        op->has_version = 1;
        op->version = opset;
        b->model.opset_import[b->model.n_opset_import++] = op;
    }
    b->graph.node = mb_alloc(b, MB_CAP * sizeof(void *));
    b->graph.initializer = mb_alloc(b, MB_CAP * sizeof(void *));
    b->graph.input = mb_alloc(b, MB_CAP * sizeof(void *));
    b->graph.output = mb_alloc(b, MB_CAP * sizeof(void *));
    return b;
}

static void mb_free(mb *b)
{
    for (int i = 0; i < b->n_blocks; i++)
        free(b->blocks[i]);
    free(b);
}

/* ins/outs: space-separated names; "-" stands for an omitted ("") name. */
static char **mb_names(mb *b, const char *list, size_t *count)
{
    char **arr = mb_alloc(b, MB_CAP * sizeof(char *));
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", list);
    *count = 0;
    for (char *tok = strtok(tmp, " "); tok; tok = strtok(NULL, " "))
        arr[(*count)++] = mb_str(b, strcmp(tok, "-") == 0 ? "" : tok);
    return arr;
}

static CandorOnnx__NodeProto *mb_node(mb *b, const char *op, const char *name, const char *ins,
                                      const char *outs)
{
    CandorOnnx__NodeProto *n = mb_alloc(b, sizeof *n);
    candor_onnx__node_proto__init(n);
    n->op_type = mb_str(b, op);
    n->name = mb_str(b, name);
    n->input = mb_names(b, ins, &n->n_input);
    n->output = mb_names(b, outs, &n->n_output);
    n->attribute = mb_alloc(b, MB_CAP * sizeof(void *));
    b->graph.node[b->graph.n_node++] = n;
    return n;
}

static CandorOnnx__AttributeProto *mb_attr(mb *b, CandorOnnx__NodeProto *n, const char *name,
                                           CandorOnnx__AttributeProto__AttributeType type)
{
    CandorOnnx__AttributeProto *a = mb_alloc(b, sizeof *a);
    candor_onnx__attribute_proto__init(a);
    a->name = mb_str(b, name);
    a->has_type = 1;
    a->type = type;
    n->attribute[n->n_attribute++] = a;
    return a;
}

/* dims: -1 becomes the symbolic dimension "N". ndim < 0: no shape. */
static CandorOnnx__ValueInfoProto *mb_value_info(mb *b, const char *name, int elem, int ndim,
                                                 const int64_t *dims)
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
    tt->elem_type = elem;
    if (ndim < 0)
        return vi;
    CandorOnnx__TensorShapeProto *sh = tt->shape = mb_alloc(b, sizeof *sh);
    candor_onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)ndim;
    sh->dim = mb_alloc(b, (size_t)(ndim + 1) * sizeof(void *));
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

static void mb_input(mb *b, const char *name, int ndim, const int64_t *dims)
{
    b->graph.input[b->graph.n_input++] = mb_value_info(b, name, 1, ndim, dims);
}

static void mb_output(mb *b, const char *name, int ndim, const int64_t *dims)
{
    b->graph.output[b->graph.n_output++] = mb_value_info(b, name, 1, ndim, dims);
}

/* A float32 tensor with raw_data (n values, little-endian on this host). */
static CandorOnnx__TensorProto *mb_tensor_f32(mb *b, const char *name, int ndim,
                                              const int64_t *dims, const float *vals)
{
    CandorOnnx__TensorProto *t = mb_alloc(b, sizeof *t);
    candor_onnx__tensor_proto__init(t);
    t->name = mb_str(b, name);
    t->has_data_type = 1;
    t->data_type = 1;
    t->n_dims = (size_t)ndim;
    t->dims = mb_alloc(b, (size_t)(ndim + 1) * sizeof(int64_t));
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        t->dims[i] = dims[i];
        n *= (size_t)(dims[i] > 0 && dims[i] < 1000000 ? dims[i] : 0);
    }
    if (vals) {
        t->has_raw_data = 1;
        t->raw_data.len = n * sizeof(float);
        t->raw_data.data = mb_alloc(b, t->raw_data.len + 1);
        memcpy(t->raw_data.data, vals, t->raw_data.len);
    }
    return t;
}

static CandorOnnx__TensorProto *mb_init_f32(mb *b, const char *name, int ndim,
                                            const int64_t *dims, const float *vals)
{
    CandorOnnx__TensorProto *t = mb_tensor_f32(b, name, ndim, dims, vals);
    b->graph.initializer[b->graph.n_initializer++] = t;
    return t;
}

static uint8_t *mb_pack(mb *b, size_t *size)
{
    *size = candor_onnx__model_proto__get_packed_size(&b->model);
    uint8_t *buf = mb_alloc(b, *size + 1);
    assert_int_equal(candor_onnx__model_proto__pack(&b->model, buf), *size);
    return buf;
}

/* Loads the builder's model from memory; returns status, fills err. */
static cd_status mb_load(mb *b, const char *base_dir, const cd_load_options *opts,
                         cd_model **out, cd_error *err)
{
    size_t size = 0;
    uint8_t *bytes = mb_pack(b, &size);
    cd_error_clear(err);
    return cd_model_load_memory(bytes, size, base_dir, opts, out, err);
}

static void expect_error(mb *b, const char *base_dir, const cd_load_options *opts,
                         cd_status code, const char *needle1, const char *needle2)
{
    cd_model *m = NULL;
    cd_error err;
    cd_status st = mb_load(b, base_dir, opts, &m, &err);
    if (st != code || (needle1 && !strstr(err.message, needle1)) ||
        (needle2 && !strstr(err.message, needle2)))
        fail_msg("expected %s containing '%s'/'%s', got %s: %s", cd_status_name(code),
                 needle1 ? needle1 : "", needle2 ? needle2 : "", cd_status_name(st),
                 err.message);
    assert_null(m);
}

/* ------------------------------------------------------------------------ */
/* Hand-built models */

static const int64_t dims_n4[2] = {-1, 4};

/* Nodes listed out of order, an initializer repeated as a graph input, an
 * unnamed node, a symbolic batch dimension. */
static void test_valid_small_model(void **state)
{
    (void)state;
    mb *b = mb_new(13);
    int64_t wd[2] = {1, 4};
    float w[4] = {1, 2, 3, 4};
    mb_init_f32(b, "W", 2, wd, w);
    mb_input(b, "x", 2, dims_n4);
    mb_input(b, "W", 2, wd); /* an initializer listed as input: not a model input */
    mb_node(b, "Relu", "", "s", "y");   /* consumes the Add below: listed first */
    mb_node(b, "Add", "add", "x W", "s");
    mb_output(b, "y", 2, dims_n4);
    cd_model *m = NULL;
    cd_error err;
    cd_status st = mb_load(b, NULL, NULL, &m, &err);
    if (st != CD_OK)
        fail_msg("load failed: %s", err.message);
    assert_int_equal(cd_model_opset(m), 13);
    assert_string_equal(cd_model_producer(m), "candor-test");
    assert_int_equal(cd_model_node_count(m), 2);
    assert_int_equal(cd_model_input_count(m), 1);
    assert_string_equal(cd_model_input_name(m, 0), "x");
    assert_null(cd_model_input_name(m, 1));
    assert_int_equal(cd_model_output_count(m), 1);
    assert_string_equal(cd_model_output_name(m, 0), "y");
    assert_int_equal(cd_model_input_dtype(m, 0), CD_FLOAT32);
    int ndim = 0;
    int64_t dims[CD_MAX_DIMS];
    assert_int_equal(cd_model_input_shape(m, 0, &ndim, dims, &err), CD_OK);
    assert_int_equal(ndim, 2);
    assert_int_equal(dims[0], -1);
    assert_int_equal(dims[1], 4);
    assert_int_equal(cd_model_output_shape(m, 0, &ndim, dims, &err), CD_OK);
    assert_int_equal(ndim, 2);
    assert_int_equal(cd_model_input_shape(m, 3, &ndim, dims, &err), CD_ERR_INVALID_ARGUMENT);
    assert_int_equal(cd_model_parameter_count(m), 4);
    /* Topological order: Add before Relu; the unnamed node got a name. */
    assert_string_equal(m->nodes[0].op_type, "Add");
    assert_string_equal(m->nodes[1].op_type, "Relu");
    assert_string_equal(m->nodes[1].name, "Relu_0");
    assert_int_equal(m->nodes[0].op, CD_OP_ADD);
    int s = cd_model_find_value(m, "s");
    assert_true(s >= 0);
    assert_int_equal(m->values[s].producer, 0);
    int wv = cd_model_find_value(m, "W");
    assert_non_null(m->values[wv].init);
    assert_false(m->values[wv].is_graph_input);
    assert_true(m->values[cd_model_find_value(m, "y")].is_graph_output);
    const float *wp = m->values[wv].init->data;
    assert_true(wp[0] == 1.0f && wp[3] == 4.0f);
    cd_model_free(m);
    mb_free(b);
}

/* Every attribute kind candor's operators read is converted. */
static void test_attributes(void **state)
{
    (void)state;
    mb *b = mb_new(13);
    int64_t d4[4] = {1, 1, 4, 4};
    mb_input(b, "x", 4, d4);
    CandorOnnx__NodeProto *c = mb_node(b, "Constant", "const", "", "k");
    int64_t kd[1] = {3};
    float kv[3] = {0.5f, -1.5f, 2.0f};
    mb_attr(b, c, "value", CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR)->t =
        mb_tensor_f32(b, "kval", 1, kd, kv);
    CandorOnnx__NodeProto *lr = mb_node(b, "LeakyRelu", "lr", "x", "a");
    CandorOnnx__AttributeProto *alpha =
        mb_attr(b, lr, "alpha", CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    alpha->has_f = 1;
    alpha->f = 0.25f;
    CandorOnnx__NodeProto *tr = mb_node(b, "Transpose", "tr", "a", "t");
    CandorOnnx__AttributeProto *perm =
        mb_attr(b, tr, "perm", CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t pv[4] = {0, 1, 3, 2};
    perm->n_ints = 4;
    perm->ints = pv;
    CandorOnnx__NodeProto *ap = mb_node(b, "AveragePool", "pool", "t", "p");
    CandorOnnx__AttributeProto *ks =
        mb_attr(b, ap, "kernel_shape", CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t kdv[2] = {2, 2};
    ks->n_ints = 2;
    ks->ints = kdv;
    CandorOnnx__AttributeProto *pad =
        mb_attr(b, ap, "auto_pad", CANDOR_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    pad->has_s = 1;
    pad->s.len = 6;
    pad->s.data = (uint8_t *)mb_str(b, "NOTSET");
    mb_output(b, "p", -1, NULL);
    mb_output(b, "k", -1, NULL);
    cd_model *m = NULL;
    cd_error err;
    if (mb_load(b, NULL, NULL, &m, &err) != CD_OK)
        fail_msg("load failed: %s", err.message);
    const cd_node *n = NULL;
    for (int i = 0; i < m->n_nodes; i++)
        if (strcmp(m->nodes[i].name, "const") == 0)
            n = &m->nodes[i];
    assert_non_null(n);
    assert_int_equal(n->op, CD_OP_CONSTANT);
    const cd_tensor *kt = cd_attr_tensor(n, "value");
    assert_non_null(kt);
    assert_int_equal(kt->ndim, 1);
    assert_true(((const float *)kt->data)[1] == -1.5f);
    for (int i = 0; i < m->n_nodes; i++) {
        const cd_node *x = &m->nodes[i];
        if (strcmp(x->name, "lr") == 0)
            assert_true(cd_attr_float(x, "alpha", 0) == 0.25f);
        if (strcmp(x->name, "tr") == 0) {
            const int64_t *p = NULL;
            assert_int_equal(cd_attr_ints(x, "perm", &p), 4);
            assert_int_equal(p[2], 3);
        }
        if (strcmp(x->name, "pool") == 0)
            assert_string_equal(cd_attr_string(x, "auto_pad", ""), "NOTSET");
    }
    /* Declared output without a shape: rank unknown. */
    int ndim = 0;
    int64_t dims[CD_MAX_DIMS];
    assert_int_equal(cd_model_output_shape(m, 0, &ndim, dims, &err), CD_OK);
    assert_int_equal(ndim, -1);
    cd_model_free(m);
    mb_free(b);
}

static void test_unsupported_op(void **state)
{
    (void)state;
    mb *b = mb_new(13);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "FrobnicateWidely", "frob1", "x", "y");
    mb_output(b, "y", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_UNSUPPORTED, "FrobnicateWidely", "frob1");
    mb_free(b);
}

static void test_cycle(void **state)
{
    (void)state;
    mb *b = mb_new(13);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Add", "a1", "x v2", "v1");
    mb_node(b, "Relu", "r1", "v1", "v2");
    mb_output(b, "v2", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_PARSE, "cycle", "node '");
    mb_free(b);
    /* A node consuming its own output. */
    b = mb_new(13);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Add", "selfish", "x z", "z");
    mb_output(b, "z", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_PARSE, "cycle", "'selfish'");
    mb_free(b);
}

static void test_dangling_input(void **state)
{
    (void)state;
    mb *b = mb_new(13);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Add", "adder", "x ghost", "y");
    mb_output(b, "y", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_PARSE, "'adder'", "'ghost'");
    mb_free(b);
    /* A graph output nobody produces. */
    b = mb_new(13);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Relu", "r", "x", "y");
    mb_output(b, "nowhere", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_PARSE, "'nowhere'", NULL);
    mb_free(b);
    /* The same value produced twice. */
    b = mb_new(13);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Relu", "r1", "x", "y");
    mb_node(b, "Relu", "r2", "x", "y");
    mb_output(b, "y", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_PARSE, "'y'", "already defined");
    mb_free(b);
    /* An omitted first output: malformed for candor's operators, but only
     * reported as unsupported for operators candor lacks (GRU allows it). */
    b = mb_new(13);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Relu", "r0", "x", "-");
    mb_node(b, "Relu", "r1", "x", "y");
    mb_output(b, "y", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_PARSE, "'r0'", "first output");
    mb_free(b);
    b = mb_new(13);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "GRU", "g0", "x", "- h");
    mb_output(b, "h", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_UNSUPPORTED, "GRU", NULL);
    mb_free(b);
}

static void test_bad_initializers(void **state)
{
    (void)state;
    /* Dimensions whose product overflows 64 bits. */
    mb *b = mb_new(13);
    int64_t huge[3] = {(int64_t)1 << 40, (int64_t)1 << 40, 1 << 20};
    mb_init_f32(b, "H", 3, huge, NULL);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Add", "a", "x H", "y");
    mb_output(b, "y", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_LIMIT, "'H'", "limit");
    mb_free(b);
    /* Large but representable: over the per-tensor cap before any allocation. */
    b = mb_new(13);
    int64_t big[2] = {1 << 20, 1 << 20};
    mb_init_f32(b, "B", 2, big, NULL);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Add", "a", "x B", "y");
    mb_output(b, "y", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_LIMIT, "'B'", NULL);
    mb_free(b);
    /* raw_data shorter than the shape needs. */
    b = mb_new(13);
    int64_t d3[1] = {3};
    float v[3] = {1, 2, 3};
    CandorOnnx__TensorProto *t = mb_init_f32(b, "S", 1, d3, v);
    t->raw_data.len = 8;
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Add", "a", "x S", "y");
    mb_output(b, "y", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_PARSE, "raw_data", "'S'");
    mb_free(b);
    /* Negative dimension. */
    b = mb_new(13);
    int64_t neg[1] = {-3};
    mb_init_f32(b, "N", 1, neg, NULL);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Add", "a", "x N", "y");
    mb_output(b, "y", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_PARSE, "negative", NULL);
    mb_free(b);
    /* Total weight cap from the options. */
    b = mb_new(13);
    int64_t d16[1] = {16};
    float z[16] = {0};
    mb_init_f32(b, "A", 1, d16, z);
    mb_init_f32(b, "B2", 1, d16, z);
    mb_input(b, "x", 1, d16);
    mb_node(b, "Add", "a", "A B2", "y");
    mb_output(b, "y", 1, d16);
    cd_load_options opts = {.max_total_bytes = 100};
    expect_error(b, NULL, &opts, CD_ERR_LIMIT, "bytes", NULL);
    cd_load_options fine = {.max_tensor_elements = 16, .max_total_bytes = 128, .max_nodes = 1};
    cd_model *m = NULL;
    cd_error err;
    if (mb_load(b, NULL, &fine, &m, &err) != CD_OK)
        fail_msg("load within limits failed: %s", err.message);
    cd_model_free(m);
    mb_free(b);
}

static void test_limits_and_opsets(void **state)
{
    (void)state;
    mb *b = mb_new(13);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Relu", "r1", "x", "y1");
    mb_node(b, "Relu", "r2", "y1", "y2");
    mb_output(b, "y2", 2, dims_n4);
    cd_load_options one_node = {.max_nodes = 1};
    expect_error(b, NULL, &one_node, CD_ERR_LIMIT, "nodes", NULL);
    mb_free(b);

    b = mb_new(0); /* no default-domain import at all */
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Relu", "r1", "x", "y");
    mb_output(b, "y", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_PARSE, "opset", NULL);
    mb_free(b);

    b = mb_new(99);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Relu", "r1", "x", "y");
    mb_output(b, "y", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_UNSUPPORTED, "opset 99", NULL);
    mb_free(b);

    /* A node of a domain the model does not import. */
    b = mb_new(13);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Relu", "r1", "x", "y")->domain = mb_str(b, "com.example");
    mb_output(b, "y", 2, dims_n4);
    expect_error(b, NULL, NULL, CD_ERR_PARSE, "com.example", NULL);
    mb_free(b);
}

/* ------------------------------------------------------------------------ */
/* External data */

static mb *external_model(const char *location, const char *offset, const char *length)
{
    mb *b = mb_new(13);
    int64_t d4[1] = {4};
    CandorOnnx__TensorProto *t = mb_init_f32(b, "E", 1, d4, NULL);
    t->has_data_location = 1;
    t->data_location = CANDOR_ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    t->external_data = mb_alloc(b, 4 * sizeof(void *));
    const char *keys[3] = {"location", "offset", "length"};
    const char *vals[3] = {location, offset, length};
    for (int i = 0; i < 3; i++) {
        if (!vals[i])
            continue;
        CandorOnnx__StringStringEntryProto *e = mb_alloc(b, sizeof *e);
        candor_onnx__string_string_entry_proto__init(e);
        e->key = mb_str(b, keys[i]);
        e->value = mb_str(b, vals[i]);
        t->external_data[t->n_external_data++] = e;
    }
    mb_input(b, "x", 1, d4);
    mb_node(b, "Add", "a", "x E", "y");
    mb_output(b, "y", 1, d4);
    return b;
}

static void test_external_data(void **state)
{
    (void)state;
    char dir[1024], path[1200], outside[1024], secret[1200];
    make_scratch(dir, sizeof dir);
    make_scratch(outside, sizeof outside);
    /* weights.bin: 2 bytes of padding, then 4 floats. */
    float w[4] = {1.5f, -2.0f, 3.25f, 8.0f};
    uint8_t blob[2 + sizeof w] = {0xAA, 0xBB};
    memcpy(blob + 2, w, sizeof w);
    snprintf(path, sizeof path, "%s/weights.bin", dir);
    write_file(path, blob, sizeof blob);
    snprintf(secret, sizeof secret, "%s/secret.bin", outside);
    write_file(secret, blob, sizeof blob);

    /* Through cd_model_load: the folder comes from the model path. */
    mb *b = external_model("weights.bin", "2", "16");
    size_t size = 0;
    uint8_t *bytes = mb_pack(b, &size);
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    write_file(path, bytes, size);
    cd_model *m = NULL;
    cd_error err;
    if (cd_model_load(path, NULL, &m, &err) != CD_OK)
        fail_msg("external data load failed: %s", err.message);
    const cd_tensor *e = m->values[cd_model_find_value(m, "E")].init;
    assert_memory_equal(e->data, w, sizeof w);
    cd_model_free(m);
    /* From memory without a folder: refused. */
    expect_error(b, NULL, NULL, CD_ERR_UNSUPPORTED, "external", NULL);
    mb_free(b);
    /* Beyond the end of the file. */
    b = external_model("weights.bin", "4", NULL);
    expect_error(b, dir, NULL, CD_ERR_PARSE, "beyond the end", NULL);
    mb_free(b);
    b = external_model("weights.bin", "0", "12");
    expect_error(b, dir, NULL, CD_ERR_PARSE, "length", NULL);
    mb_free(b);

    /* Escapes: '..', absolute paths, and a symlink pointing outside. */
    char rel[1200];
    const char *base = strrchr(outside, '/') + 1;
    snprintf(rel, sizeof rel, "../%s/secret.bin", base);
    b = external_model(rel, NULL, NULL);
    expect_error(b, dir, NULL, CD_ERR_PARSE, "escapes", NULL);
    mb_free(b);
    b = external_model(secret, NULL, NULL); /* absolute */
    expect_error(b, dir, NULL, CD_ERR_PARSE, "escapes", NULL);
    mb_free(b);
    char link[1200];
    snprintf(link, sizeof link, "%s/link.bin", dir);
    assert_int_equal(symlink(secret, link), 0);
    b = external_model("link.bin", "2", NULL);
    expect_error(b, dir, NULL, CD_ERR_PARSE, "outside", NULL);
    mb_free(b);
    b = external_model("missing.bin", NULL, NULL);
    expect_error(b, dir, NULL, CD_ERR_IO, "missing.bin", NULL);
    mb_free(b);
    remove_tree(dir);
    remove_tree(outside);
}

/* A sidecar next to the model is attached; a malformed one fails the load. */
static void test_sidecar_hook(void **state)
{
    (void)state;
    char dir[1024], path[1200], json[1200];
    make_scratch(dir, sizeof dir);
    mb *b = mb_new(13);
    mb_input(b, "x", 2, dims_n4);
    mb_node(b, "Relu", "r", "x", "y");
    mb_output(b, "y", 2, dims_n4);
    size_t size = 0;
    uint8_t *bytes = mb_pack(b, &size);
    snprintf(path, sizeof path, "%s/net.onnx", dir);
    write_file(path, bytes, size);
    cd_model *m = NULL;
    cd_error err;
    assert_int_equal(cd_model_load(path, NULL, &m, &err), CD_OK);
    assert_null(m->sidecar);
    cd_model_free(m);
    snprintf(json, sizeof json, "%s/net.candor.json", dir);
    const char *ok = "{\"labels\": [\"a\", \"b\"]}";
    write_file(json, ok, strlen(ok));
    assert_int_equal(cd_model_load(path, NULL, &m, &err), CD_OK);
    assert_non_null(m->sidecar);
    cd_model_free(m);
    write_file(json, "{\"labels\": 3", 13);
    assert_int_equal(cd_model_load(path, NULL, &m, &err), CD_ERR_PARSE);
    assert_non_null(strstr(err.message, "net.candor.json"));
    assert_null(m);
    mb_free(b);
    remove_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* Tensor conversion details: float16, typed fields */

static void test_tensor_types(void **state)
{
    (void)state;
    cd_onnx_source src;
    cd_onnx_source_init(&src, "unit", NULL);
    CandorOnnx__TensorProto tp;
    cd_tensor *t = NULL;
    cd_error err;
    int64_t d6[1] = {6};

    /* float16 raw bits: 1, -2, 65504, 2^-24 (subnormal), +Inf, -0. */
    uint8_t half[12] = {0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x7c, 0x00, 0x80};
    candor_onnx__tensor_proto__init(&tp);
    tp.has_data_type = 1;
    tp.data_type = 10;
    tp.n_dims = 1;
    tp.dims = d6;
    tp.has_raw_data = 1;
    tp.raw_data.len = sizeof half;
    tp.raw_data.data = half;
    assert_int_equal(cd_onnx_tensor_from_proto(&tp, "h", &src, &t, &err), CD_OK);
    assert_int_equal(t->dtype, CD_FLOAT32);
    const float *f = t->data;
    assert_true(f[0] == 1.0f && f[1] == -2.0f && f[2] == 65504.0f);
    assert_true(f[3] == ldexpf(1.0f, -24));
    assert_true(isinf(f[4]) && f[4] > 0);
    assert_true(f[5] == 0.0f && signbit(f[5]));
    cd_tensor_free(t);

    /* The same halves through int32_data. */
    int32_t h32[6] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000};
    tp.has_raw_data = 0;
    tp.n_int32_data = 6;
    tp.int32_data = h32;
    assert_int_equal(cd_onnx_tensor_from_proto(&tp, "h", &src, &t, &err), CD_OK);
    assert_true(((const float *)t->data)[2] == 65504.0f);
    cd_tensor_free(t);

    /* int8 and bool via int32_data; int16 widened to int32. */
    int32_t small[6] = {-128, 127, 0, 5, -1, 3};
    tp.int32_data = small;
    tp.data_type = 3;
    assert_int_equal(cd_onnx_tensor_from_proto(&tp, "i8", &src, &t, &err), CD_OK);
    assert_int_equal(t->dtype, CD_INT8);
    assert_int_equal(((const int8_t *)t->data)[0], -128);
    cd_tensor_free(t);
    tp.data_type = 9;
    assert_int_equal(cd_onnx_tensor_from_proto(&tp, "b", &src, &t, &err), CD_OK);
    assert_int_equal(t->dtype, CD_BOOL);
    assert_int_equal(((const uint8_t *)t->data)[4], 1);
    assert_int_equal(((const uint8_t *)t->data)[2], 0);
    cd_tensor_free(t);
    tp.data_type = 5;
    assert_int_equal(cd_onnx_tensor_from_proto(&tp, "i16", &src, &t, &err), CD_OK);
    assert_int_equal(t->dtype, CD_INT32);
    assert_int_equal(((const int32_t *)t->data)[4], -1);
    cd_tensor_free(t);

    /* int64_data / double_data, with a count mismatch. */
    int64_t i64[6] = {INT64_MIN, -1, 0, 1, 2, INT64_MAX};
    tp.n_int32_data = 0;
    tp.data_type = 7;
    tp.n_int64_data = 6;
    tp.int64_data = i64;
    assert_int_equal(cd_onnx_tensor_from_proto(&tp, "i64", &src, &t, &err), CD_OK);
    assert_memory_equal(t->data, i64, sizeof i64);
    cd_tensor_free(t);
    tp.n_int64_data = 5;
    assert_int_equal(cd_onnx_tensor_from_proto(&tp, "i64", &src, &t, &err), CD_ERR_PARSE);
    assert_non_null(strstr(err.message, "int64_data"));
    assert_null(t);
    double dd[6] = {0.1, -0.2, 1e300, 0, 1, 2};
    tp.data_type = 11;
    tp.n_double_data = 6;
    tp.double_data = dd;
    assert_int_equal(cd_onnx_tensor_from_proto(&tp, "f64", &src, &t, &err), CD_OK);
    assert_int_equal(t->dtype, CD_FLOAT64);
    assert_memory_equal(t->data, dd, sizeof dd);
    cd_tensor_free(t);

    /* Strings and types candor lacks are refused as unsupported. */
    tp.data_type = 8;
    assert_int_equal(cd_onnx_tensor_from_proto(&tp, "s", &src, &t, &err), CD_ERR_UNSUPPORTED);
    tp.data_type = 13;
    assert_int_equal(cd_onnx_tensor_from_proto(&tp, "u64", &src, &t, &err), CD_ERR_UNSUPPORTED);
    /* A scalar (rank 0) holds one element. */
    float one = 7.0f;
    candor_onnx__tensor_proto__init(&tp);
    tp.has_data_type = 1;
    tp.data_type = 1;
    tp.n_float_data = 1;
    tp.float_data = &one;
    assert_int_equal(cd_onnx_tensor_from_proto(&tp, "scalar", &src, &t, &err), CD_OK);
    assert_int_equal(t->ndim, 0);
    assert_true(((const float *)t->data)[0] == 7.0f);
    cd_tensor_free(t);
}

/* ------------------------------------------------------------------------ */
/* Files: missing, truncated, garbage */

static void test_bad_files(void **state)
{
    (void)state;
    char corpus[1024], path[1200], dir[1024];
    const char *root = corpus_dir(corpus, sizeof corpus);
    cd_model *m = NULL;
    cd_error err;
    cd_error_clear(&err);
    assert_int_equal(cd_model_load("/nonexistent/dir/model.onnx", NULL, &m, &err), CD_ERR_IO);
    assert_non_null(strstr(err.message, "/nonexistent/dir/model.onnx"));
    assert_non_null(strstr(err.message, strerror(ENOENT)));
    assert_null(m);

    make_scratch(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/node/test_conv_with_strides_padding/model.onnx", root);
    uint8_t *bytes = NULL;
    size_t size = 0;
    if (cd_onnx_read_file(path, &bytes, &size, &err) != CD_OK) {
        remove_tree(dir);
        skip();
    }
    /* Truncated at every length: always refused as a parse error, never a
     * crash, and the message names the file when loaded from disk. */
    for (size_t cut = 1; cut < size; cut++) {
        cd_error_clear(&err);
        cd_status st = cd_model_load_memory(bytes, cut, NULL, NULL, &m, &err);
        if (st == CD_OK)
            fail_msg("truncated model (%zu of %zu bytes) loaded", cut, size);
        assert_int_equal(st, CD_ERR_PARSE);
        assert_null(m);
    }
    char tpath[1200];
    snprintf(tpath, sizeof tpath, "%s/truncated.onnx", dir);
    write_file(tpath, bytes, size / 2);
    assert_int_equal(cd_model_load(tpath, NULL, &m, &err), CD_ERR_PARSE);
    assert_non_null(strstr(err.message, tpath));
    assert_non_null(strstr(err.message, "not a valid ONNX model"));
    /* Garbage bytes. */
    uint64_t s = 42;
    for (size_t i = 0; i < size; i++)
        bytes[i] = (uint8_t)(tu_uniform(&s, 0, 256));
    snprintf(tpath, sizeof tpath, "%s/garbage.onnx", dir);
    write_file(tpath, bytes, size);
    assert_int_equal(cd_model_load(tpath, NULL, &m, &err), CD_ERR_PARSE);
    assert_non_null(strstr(err.message, "garbage.onnx"));
    /* An empty file parses as an empty message: no graph. */
    snprintf(tpath, sizeof tpath, "%s/empty.onnx", dir);
    write_file(tpath, bytes, 0);
    assert_int_equal(cd_model_load(tpath, NULL, &m, &err), CD_ERR_PARSE);
    assert_null(m);
    free(bytes);
    remove_tree(dir);
}

/* ------------------------------------------------------------------------ */
/* The corpus against the onnx Python package */

static const char *const py_models =
    "import onnx, os, sys\n"
    "import numpy as np\n"
    "root = sys.argv[1]\n"
    "ok = {1, 2, 3, 6, 7, 9, 10, 11}\n"
    "def info(vi):\n"
    "    t = vi.type\n"
    "    if t.WhichOneof('value') != 'tensor_type':\n"
    "        return None\n"
    "    tt = t.tensor_type\n"
    "    dt = tt.elem_type if tt.elem_type in ok else 0\n"
    "    if not tt.HasField('shape'):\n"
    "        return '%d -1' % dt\n"
    "    dims = [d.dim_value if d.HasField('dim_value') else -1 for d in tt.shape.dim]\n"
    "    return '%d %d %s' % (dt, len(dims), ' '.join(map(str, dims)))\n"
    "for sub in ('node', 'pytorch-converted', 'pytorch-operator'):\n"
    "    for name in sorted(os.listdir(os.path.join(root, sub))):\n"
    "        p = os.path.join(root, sub, name, 'model.onnx')\n"
    "        if not os.path.exists(p):\n"
    "            continue\n"
    "        m = onnx.load(p)\n"
    "        g = m.graph\n"
    "        inits = {t.name for t in g.initializer}\n"
    "        opset = [o.version for o in m.opset_import if o.domain in ('', 'ai.onnx')]\n"
    "        params = sum(int(np.prod(t.dims)) for t in g.initializer if t.data_type in (1, 10, 11, 16))\n"
    "        print('M', sub + '/' + name)\n"
    "        print('O', opset[0] if opset else -1, len(g.node), params)\n"
    "        for vi in g.input:\n"
    "            if vi.name not in inits:\n"
    "                print('I', info(vi) or 'x', vi.name)\n"
    "        for vi in g.output:\n"
    "            print('U', info(vi) or 'x', vi.name)\n"
    "        print('E')\n";

/* Runs a Python script (text) with argv[1..]; returns the popen stream. */
static FILE *run_python(const char *script, const char *dir, const char *args)
{
    char spath[1200], cmd[4096];
    snprintf(spath, sizeof spath, "%s/ref.py", dir);
    write_file(spath, script, strlen(script));
    snprintf(cmd, sizeof cmd, PY " '%s' %s", spath, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    return p;
}

typedef struct expect_io {
    char name[256];
    int dtype, ndim;
    int64_t dims[CD_MAX_DIMS];
    bool tensor;
} expect_io;

static void parse_io(const char *line, expect_io *e)
{
    memset(e, 0, sizeof *e);
    const char *p = line + 2;
    char *end;
    if (*p == 'x') {
        e->tensor = false;
        snprintf(e->name, sizeof e->name, "%s", p + 2);
        return;
    }
    e->tensor = true;
    e->dtype = (int)strtol(p, &end, 10);
    e->ndim = (int)strtol(end, &end, 10);
    for (int i = 0; i < e->ndim && i < CD_MAX_DIMS; i++)
        e->dims[i] = strtoll(end, &end, 10);
    while (*end == ' ')
        end++;
    snprintf(e->name, sizeof e->name, "%s", end);
}

static void check_io(const cd_model *m, const char *model, const expect_io *e, bool input,
                     int index)
{
    const char *name = input ? cd_model_input_name(m, index) : cd_model_output_name(m, index);
    if (!name || strcmp(name, e->name) != 0)
        fail_msg("%s: %s %d is '%s', onnx says '%s'", model, input ? "input" : "output", index,
                 name ? name : "(none)", e->name);
    int id = input ? m->inputs[index] : m->outputs[index];
    const cd_value *v = &m->values[id];
    if (!e->tensor || v->init)
        return;
    int ndim = 0;
    int64_t dims[CD_MAX_DIMS];
    cd_error err;
    cd_status st = input ? cd_model_input_shape(m, index, &ndim, dims, &err)
                         : cd_model_output_shape(m, index, &ndim, dims, &err);
    assert_int_equal(st, CD_OK);
    if (ndim != e->ndim || !cd_shape_equal(ndim < 0 ? 0 : ndim, dims, e->ndim < 0 ? 0 : e->ndim,
                                           e->dims))
        fail_msg("%s: shape of '%s' differs from onnx's", model, e->name);
    if ((int)v->dtype != e->dtype)
        fail_msg("%s: dtype of '%s' is %d, onnx says %d", model, e->name, v->dtype, e->dtype);
}

/* Parents before children: every input produced earlier in the order. */
static void check_topological(const cd_model *m, const char *model)
{
    for (int i = 0; i < m->n_nodes; i++)
        for (int k = 0; k < m->nodes[i].n_inputs; k++) {
            int v = m->nodes[i].inputs[k];
            if (v >= 0 && m->values[v].producer >= i)
                fail_msg("%s: node %d reads a value produced later", model, i);
        }
}

static void test_corpus_models(void **state)
{
    (void)state;
    char corpus[1024], dir[1024], line[2048], path[2048], model[1024] = "";
    const char *root = corpus_dir(corpus, sizeof corpus);
    if (!have_python_onnx())
        skip();
    make_scratch(dir, sizeof dir);
    char args[1200];
    snprintf(args, sizeof args, "'%s'", root);
    FILE *p = run_python(py_models, dir, args);
    int loaded = 0, unsupported = 0, in_i = 0, out_i = 0;
    cd_model *m = NULL;
    long long opset = 0, nodes = 0, params = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == 'M') {
            snprintf(model, sizeof model, "%s", line + 2);
            snprintf(path, sizeof path, "%s/%s/model.onnx", root, model);
            cd_error err;
            cd_status st = cd_model_load(path, NULL, &m, &err);
            if (st == CD_ERR_UNSUPPORTED)
                unsupported++;
            else if (st != CD_OK)
                fail_msg("%s: %s: %s", model, cd_status_name(st), err.message);
            else
                loaded++;
            in_i = out_i = 0;
        } else if (line[0] == 'O' && m) {
            assert_int_equal(sscanf(line + 2, "%lld %lld %lld", &opset, &nodes, &params), 3);
            if (cd_model_opset(m) != opset || cd_model_node_count(m) != nodes ||
                (long long)cd_model_parameter_count(m) != params)
                fail_msg("%s: opset/nodes/params %d/%d/%llu, onnx says %lld/%lld/%lld", model,
                         cd_model_opset(m), cd_model_node_count(m),
                         (unsigned long long)cd_model_parameter_count(m), opset, nodes, params);
            check_topological(m, model);
        } else if ((line[0] == 'I' || line[0] == 'U') && m) {
            expect_io e;
            parse_io(line, &e);
            check_io(m, model, &e, line[0] == 'I', line[0] == 'I' ? in_i++ : out_i++);
        } else if (line[0] == 'E' && m) {
            assert_int_equal(in_i, cd_model_input_count(m));
            assert_int_equal(out_i, cd_model_output_count(m));
            cd_model_free(m);
            m = NULL;
        }
    }
    assert_int_equal(pclose(p), 0);
    print_message("corpus: %d models loaded, %d refused as unsupported\n", loaded, unsupported);
    assert_true(loaded + unsupported > 1000);
    remove_tree(dir);
}

static const char *const py_tensors =
    "import onnx, os, sys, glob\n"
    "from onnx import numpy_helper\n"
    "import numpy as np\n"
    "root, out = sys.argv[1], sys.argv[2]\n"
    "wide = {np.float16: np.float32, np.int16: np.int32, np.uint16: np.int32}\n"
    "files = sorted(glob.glob(os.path.join(root, '*', '*', 'test_data_set_0', '*.pb')))\n"
    "for i, f in enumerate(files):\n"
    "    t = onnx.TensorProto()\n"
    "    try:\n"
    "        t.ParseFromString(open(f, 'rb').read())\n"
    "        a = numpy_helper.to_array(t)\n"
    "    except Exception:\n"
    "        continue\n"
    "    if t.data_type == 0 or t.data_location == 1:\n"
    "        continue\n"
    "    if t.data_type in (8, 12, 13, 14, 15, 16):\n"
    "        print('R', t.data_type, f)\n"
    "        continue\n"
    "    a = np.array(a, dtype=wide.get(a.dtype.type, a.dtype.type), order='C')\n"
    "    b = os.path.join(out, '%d.bin' % i)\n"
    "    a.tofile(b)\n"
    "    print('T', t.data_type, a.ndim, ' '.join(map(str, a.shape)), b, f)\n";

static void test_corpus_tensors(void **state)
{
    (void)state;
    char corpus[1024], dir[1024], line[4096], args[2400];
    const char *root = corpus_dir(corpus, sizeof corpus);
    if (!have_python_onnx())
        skip();
    make_scratch(dir, sizeof dir);
    snprintf(args, sizeof args, "'%s' '%s'", root, dir);
    FILE *p = run_python(py_tensors, dir, args);
    int checked = 0, refused = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = '\0';
        cd_tensor *t = NULL;
        cd_error err;
        char *end = NULL;
        int type = (int)strtol(line + 2, &end, 10), got_type = -1;
        if (line[0] == 'R') {
            const char *f = end + 1;
            assert_int_equal(cd_onnx_read_tensor_file(f, &t, &got_type, &err),
                             CD_ERR_UNSUPPORTED);
            assert_int_equal(got_type, type);
            refused++;
            continue;
        }
        int ndim = (int)strtol(end, &end, 10);
        int64_t dims[CD_MAX_DIMS] = {0};
        for (int i = 0; i < ndim; i++)
            dims[i] = strtoll(end, &end, 10);
        char bin[1200], pb[2048];
        assert_int_equal(sscanf(end, " %1199s %2047s", bin, pb), 2);
        cd_status st = cd_onnx_read_tensor_file(pb, &t, &got_type, &err);
        if (st != CD_OK)
            fail_msg("%s: %s", pb, err.message);
        assert_int_equal(got_type, type);
        if (!cd_shape_equal(t->ndim, t->dims, ndim, dims))
            fail_msg("%s: shape differs from numpy's", pb);
        uint8_t *ref = NULL;
        size_t n = 0;
        assert_int_equal(cd_onnx_read_file(bin, &ref, &n, &err), CD_OK);
        if (n != cd_tensor_nbytes(t) || (n && memcmp(ref, t->data, n) != 0))
            fail_msg("%s: contents differ from numpy's (%zu vs %zu bytes)", pb, n,
                     cd_tensor_nbytes(t));
        free(ref);
        cd_tensor_free(t);
        checked++;
    }
    assert_int_equal(pclose(p), 0);
    print_message("corpus tensors: %d decoded identically, %d refused\n", checked, refused);
    assert_true(checked > 1000);
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_small_model),
        cmocka_unit_test(test_attributes),
        cmocka_unit_test(test_unsupported_op),
        cmocka_unit_test(test_cycle),
        cmocka_unit_test(test_dangling_input),
        cmocka_unit_test(test_bad_initializers),
        cmocka_unit_test(test_limits_and_opsets),
        cmocka_unit_test(test_external_data),
        cmocka_unit_test(test_sidecar_hook),
        cmocka_unit_test(test_tensor_types),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_corpus_models),
        cmocka_unit_test(test_corpus_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
