/* Resource caps (issue 8): tensor elements, total bytes, graph depth, .npy
 * elements and image pixels are configurable, and absurd sizes declared by a
 * file are refused with a clear message BEFORE anything of that size is
 * allocated — checked in a child process whose address space is capped, where
 * an attempted multi-GiB allocation would turn the expected error into
 * out-of-memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "candor/candor.h"
#include "onnx_subset.pb-c.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

/* ------------------------------------------------------ model building */

/* A chain model: x -> Relu -> ... -> Relu (depth nodes) -> y, plus optional
 * initializer "W" (float, given dims, raw data of raw_len bytes) consumed by
 * an Add at the end. Returns packed bytes (free()). */
typedef struct chain_spec {
    int depth;
    int w_ndim;
    const int64_t *w_dims;
    size_t raw_len; /* bytes of raw_data actually present */
} chain_spec;

static uint8_t *pack_chain(const chain_spec *c, size_t *size)
{
    int nn = c->depth + (c->w_ndim > 0 ? 1 : 0);
    CandorOnnx__NodeProto *nodes = calloc((size_t)nn, sizeof *nodes);
    CandorOnnx__NodeProto **np = calloc((size_t)nn, sizeof *np);
    char (*names)[32] = calloc((size_t)nn + 1, sizeof *names);
    char **ins = calloc((size_t)nn * 2, sizeof *ins);
    char **outs = calloc((size_t)nn, sizeof *outs);
    assert_non_null(nodes);
    assert_non_null(names);
    snprintf(names[0], sizeof names[0], "x");
    for (int i = 0; i < nn; i++) {
        bool add = c->w_ndim > 0 && i == nn - 1;
        candor_onnx__node_proto__init(&nodes[i]);
        snprintf(names[i + 1], sizeof names[i + 1], i == nn - 1 ? "y" : "v%d", i);
        ins[2 * i] = names[i];
        ins[2 * i + 1] = (char *)"W";
        outs[i] = names[i + 1];
        nodes[i].op_type = (char *)(add ? "Add" : "Relu");
        nodes[i].n_input = add ? 2 : 1;
        nodes[i].input = &ins[2 * i];
        nodes[i].n_output = 1;
        nodes[i].output = &outs[i];
        np[i] = &nodes[i];
    }
    CandorOnnx__TensorProto w = CANDOR_ONNX__TENSOR_PROTO__INIT, *wp = &w;
    uint8_t *raw = calloc(c->raw_len + 1, 1);
    w.name = (char *)"W";
    w.has_data_type = 1;
    w.data_type = 1; /* FLOAT */
    w.n_dims = (size_t)c->w_ndim;
    w.dims = (int64_t *)c->w_dims;
    w.has_raw_data = 1;
    w.raw_data.len = c->raw_len;
    w.raw_data.data = raw;

    CandorOnnx__TensorShapeProto__Dimension dim = CANDOR_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT,
                                            *dimp = &dim;
    dim.value_case = CANDOR_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    dim.dim_value = 4;
    CandorOnnx__TensorShapeProto shape = CANDOR_ONNX__TENSOR_SHAPE_PROTO__INIT;
    shape.n_dim = 1;
    shape.dim = &dimp;
    CandorOnnx__TypeProto__Tensor tt = CANDOR_ONNX__TYPE_PROTO__TENSOR__INIT;
    tt.has_elem_type = 1;
    tt.elem_type = 1;
    tt.shape = &shape;
    CandorOnnx__TypeProto type = CANDOR_ONNX__TYPE_PROTO__INIT;
    type.value_case = CANDOR_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type.tensor_type = &tt;
    CandorOnnx__ValueInfoProto in = CANDOR_ONNX__VALUE_INFO_PROTO__INIT, *inp = &in;
    CandorOnnx__ValueInfoProto out = CANDOR_ONNX__VALUE_INFO_PROTO__INIT, *outp = &out;
    in.name = (char *)"x";
    in.type = &type;
    out.name = (char *)"y";

    CandorOnnx__GraphProto g = CANDOR_ONNX__GRAPH_PROTO__INIT;
    g.name = (char *)"chain";
    g.n_node = (size_t)nn;
    g.node = np;
    g.n_input = 1;
    g.input = &inp;
    g.n_output = 1;
    g.output = &outp;
    if (c->w_ndim > 0) {
        g.n_initializer = 1;
        g.initializer = &wp;
    }
    CandorOnnx__OperatorSetIdProto op = CANDOR_ONNX__OPERATOR_SET_ID_PROTO__INIT, *opp = &op;
    op.has_version = 1;
    op.version = 13;
    CandorOnnx__ModelProto m = CANDOR_ONNX__MODEL_PROTO__INIT;
    m.has_ir_version = 1;
    m.ir_version = 7;
    m.graph = &g;
    m.n_opset_import = 1;
    m.opset_import = &opp;

    *size = candor_onnx__model_proto__get_packed_size(&m);
    uint8_t *bytes = malloc(*size);
    assert_non_null(bytes);
    candor_onnx__model_proto__pack(&m, bytes);
    free(raw);
    free(nodes);
    free(np);
    free(names);
    free(ins);
    free(outs);
    return bytes;
}

static cd_status load_chain(const chain_spec *c, const cd_load_options *o, cd_error *err)
{
    size_t size;
    uint8_t *bytes = pack_chain(c, &size);
    cd_model *m = NULL;
    cd_status st = cd_model_load_memory(bytes, size, NULL, o, &m, err);
    cd_model_free(m);
    free(bytes);
    return st;
}

/* Runs fn(arg) in a child whose address space is capped at cap_mib, and
 * returns the cd_status it exited with (or -1 when it died). Without the cap
 * (sanitizer builds reserve terabytes of shadow memory) it runs in-process. */
static int status_under_memory_cap(cd_status (*fn)(const void *), const void *arg, long cap_mib)
{
    if (UNDER_SANITIZER)
        return (int)fn(arg);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {(rlim_t)cap_mib << 20, (rlim_t)cap_mib << 20};
        setrlimit(RLIMIT_AS, &rl);
        _exit((int)fn(arg));
    }
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* ------------------------------------------------------------ graph depth */

static void test_graph_depth(void **state)
{
    (void)state;
    chain_spec c = {.depth = 50};
    cd_error err = {0};
    cd_load_options exact = {.max_graph_depth = 50}, tight = {.max_graph_depth = 49};
    assert_int_equal(load_chain(&c, &exact, &err), CD_OK);
    assert_int_equal(load_chain(&c, NULL, &err), CD_OK); /* default cap is far above */
    assert_int_equal(load_chain(&c, &tight, &err), CD_ERR_LIMIT);
    assert_int_equal(err.code, CD_ERR_LIMIT);
    assert_non_null(strstr(err.message, "deeper than the limit of 49"));
    assert_non_null(strstr(err.message, "depth 50"));
}

static void test_node_cap(void **state)
{
    (void)state;
    chain_spec c = {.depth = 10};
    cd_error err = {0};
    cd_load_options o = {.max_nodes = 9};
    assert_int_equal(load_chain(&c, &o, &err), CD_ERR_LIMIT);
    assert_non_null(strstr(err.message, "limit"));
    o.max_nodes = 10;
    assert_int_equal(load_chain(&c, &o, &err), CD_OK);
}

/* ------------------------------------------- tensor caps, pre-allocation */

static void test_tensor_element_and_byte_caps(void **state)
{
    (void)state;
    int64_t d4[1] = {4};
    chain_spec c = {.depth = 1, .w_ndim = 1, .w_dims = d4, .raw_len = 16};
    cd_error err = {0};
    assert_int_equal(load_chain(&c, NULL, &err), CD_OK);
    cd_load_options few = {.max_tensor_elements = 3};
    assert_int_equal(load_chain(&c, &few, &err), CD_ERR_LIMIT);
    assert_non_null(strstr(err.message, "'W'"));
    assert_non_null(strstr(err.message, "exceeds the limit of 3 elements"));
    cd_load_options small = {.max_total_bytes = 15};
    assert_int_equal(load_chain(&c, &small, &err), CD_ERR_LIMIT);
    assert_non_null(strstr(err.message, "bytes"));
}

/* 2^30 floats (4 GiB) declared with 16 bytes present: under the element cap
 * but must fail on the missing data before the tensor is allocated. */
static cd_status load_claims_4gib(const void *arg)
{
    (void)arg;
    int64_t dims[2] = {(int64_t)1 << 15, (int64_t)1 << 15};
    chain_spec c = {.depth = 1, .w_ndim = 2, .w_dims = dims, .raw_len = 16};
    cd_error err = {0};
    return load_chain(&c, NULL, &err);
}

/* Dims whose product overflows 64 bits. */
static cd_status load_overflowing_dims(const void *arg)
{
    (void)arg;
    int64_t dims[4] = {INT64_MAX / 2, INT64_MAX / 2, 3, 5};
    chain_spec c = {.depth = 1, .w_ndim = 4, .w_dims = dims, .raw_len = 16};
    cd_error err = {0};
    return load_chain(&c, NULL, &err);
}

static void test_absurd_dims_refused_before_allocation(void **state)
{
    (void)state;
    assert_int_equal(status_under_memory_cap(load_claims_4gib, NULL, 1024), CD_ERR_PARSE);
    assert_int_equal(status_under_memory_cap(load_overflowing_dims, NULL, 1024), CD_ERR_LIMIT);
    cd_error err = {0};
    int64_t dims[2] = {(int64_t)1 << 15, (int64_t)1 << 15};
    chain_spec c = {.depth = 1, .w_ndim = 2, .w_dims = dims, .raw_len = 16};
    assert_int_equal(load_chain(&c, NULL, &err), CD_ERR_PARSE);
    assert_non_null(strstr(err.message, "raw_data holds 16 bytes"));
}

/* ------------------------------------------------------------------ .npy */

static size_t npy_header(uint8_t *buf, const char *descr, const char *shape)
{
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                       descr, shape);
    int padded = ((10 + len + 1 + 63) / 64) * 64 - 10; /* header + '\n', aligned to 64 */
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(padded & 0xff);
    buf[9] = (uint8_t)(padded >> 8);
    memset(buf + 10, ' ', (size_t)padded);
    memcpy(buf + 10, dict, (size_t)len);
    buf[10 + padded - 1] = '\n';
    return 10 + (size_t)padded;
}

static cd_status npy_huge_claim(const void *arg)
{
    const char *shape = arg;
    uint8_t buf[512] = {0};
    size_t n = npy_header(buf, "<f4", shape) + 64; /* 64 bytes of data */
    cd_tensor *t = NULL;
    cd_error err = {0};
    cd_status st = cd_npy_load_memory(buf, n, &t, &err);
    cd_tensor_free(t);
    return st;
}

static void test_npy_caps(void **state)
{
    (void)state;
    uint8_t buf[512] = {0};
    size_t n = npy_header(buf, "<f4", "(3, 4)") + 48;
    cd_tensor *t = NULL;
    cd_error err = {0};
    assert_int_equal(cd_npy_load_memory(buf, n, &t, &err), CD_OK);
    cd_tensor_free(t);
    t = NULL;
    cd_npy_options o = {.max_elements = 11};
    assert_int_equal(cd_npy_load_memory_ex(buf, n, &o, false, &t, &err), CD_ERR_LIMIT);
    assert_null(t);
    assert_true(strlen(err.message) > 0);
    /* 2^30 and 2^62 elements declared, 64 bytes present. */
    int st = status_under_memory_cap(npy_huge_claim, "(32768, 32768)", 1024);
    assert_true(st == CD_ERR_PARSE || st == CD_ERR_LIMIT);
    st = status_under_memory_cap(npy_huge_claim, "(2147483648, 2147483648)", 1024);
    assert_int_equal(st, CD_ERR_LIMIT);
    st = status_under_memory_cap(npy_huge_claim, "(9223372036854775807, 9223372036854775807)",
                                 1024);
    assert_true(st == CD_ERR_PARSE || st == CD_ERR_LIMIT);
}

/* ---------------------------------------------------------------- images */

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A PNG signature + IHDR (w x h, 8-bit RGB, valid CRC) + one tiny IDAT + IEND. */
static size_t forged_png(uint8_t *buf, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t n = 0;
    memcpy(buf, sig, 8);
    n = 8;
    be32(buf + n, 13);
    memcpy(buf + n + 4, "IHDR", 4);
    be32(buf + n + 8, w);
    be32(buf + n + 12, h);
    buf[n + 16] = 8; /* depth */
    buf[n + 17] = 2; /* RGB */
    buf[n + 18] = buf[n + 19] = buf[n + 20] = 0;
    be32(buf + n + 21, (uint32_t)crc32(0, buf + n + 4, 17));
    n += 25;
    uint8_t raw[16] = {0}, z[64];
    uLongf zn = sizeof z;
    compress(z, &zn, raw, sizeof raw);
    be32(buf + n, (uint32_t)zn);
    memcpy(buf + n + 4, "IDAT", 4);
    memcpy(buf + n + 8, z, zn);
    be32(buf + n + 8 + zn, (uint32_t)crc32(0, buf + n + 4, (uInt)zn + 4));
    n += 12 + zn;
    be32(buf + n, 0);
    memcpy(buf + n + 4, "IEND", 4);
    be32(buf + n + 8, (uint32_t)crc32(0, buf + n + 4, 4));
    return n + 12;
}

static cd_status png_huge(const void *arg)
{
    const uint32_t *wh = arg;
    uint8_t buf[256];
    size_t n = forged_png(buf, wh[0], wh[1]);
    cd_image *img = NULL;
    cd_error err = {0};
    cd_status st = cd_image_load_memory(buf, n, &img, &err);
    cd_image_free(img);
    return st;
}

static void test_image_pixel_caps(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t n = forged_png(buf, 2, 2); /* too little data: a parse error, not a crash */
    cd_image *img = NULL;
    cd_error err = {0};
    cd_image_options o = {.max_pixels = 3};
    assert_int_equal(cd_image_load_memory_ex(buf, n, &o, &img, &err), CD_ERR_LIMIT);
    assert_null(img);
    assert_true(strlen(err.message) > 0);
    /* 100000 x 100000 RGB (120 GB as floats): the default cap refuses it. */
    uint32_t wh[2] = {100000, 100000};
    assert_int_equal(status_under_memory_cap(png_huge, wh, 1024), CD_ERR_LIMIT);
    /* Exactly at the default cap (2^28 pixels, 3 GiB as floats) but with no
     * data: PNG data cannot be sized before inflating, so the decoder may
     * allocate up to the cap — under a 1 GiB address-space cap that must be
     * a clean out-of-memory (or parse) error, never a crash. Lower the cap
     * (cd_image_options.max_pixels) where such allocations matter. */
    uint32_t wh2[2] = {16384, 16384};
    int st = status_under_memory_cap(png_huge, wh2, 1024);
    assert_true(st == CD_ERR_PARSE || st == CD_ERR_LIMIT || st == CD_ERR_OUT_OF_MEMORY);
}

/* ------------------------------------------------ runtime shape overflow */

/* cd_load_options.max_activation_bytes: the fast plan (a chain of in-place
 * Relus on 4 floats: one buffer, 64 bytes aligned), the gradient plan (48
 * bytes: every activation kept) and the float64 mode (3 x 48) are refused
 * with CD_ERR_LIMIT, naming the cap, before they allocate. */
static void test_activation_cap(void **state)
{
    (void)state;
    chain_spec c = {.depth = 3};
    size_t size;
    uint8_t *bytes = pack_chain(&c, &size);
    const uint64_t caps[] = {8, 100, 0};
    for (size_t i = 0; i < CD_COUNT_OF(caps); i++) {
        cd_load_options o = {.max_activation_bytes = caps[i]};
        cd_model *m = NULL;
        cd_error err = {0};
        assert_int_equal(cd_model_load_memory(bytes, size, NULL, &o, &m, &err), CD_OK);
        cd_tensor *x = tu_random(1, (int64_t[]){4}, 3, 0.5f, 1.0f), *y = NULL, *g = NULL;
        cd_session *s = NULL;
        assert_int_equal(cd_session_create(m, NULL, &s, &err), CD_OK);
        cd_status run = cd_session_run(s, 1, NULL, (const cd_tensor *const *)&x, 1, NULL, &y,
                                       &err);
        assert_int_equal(run, caps[i] == 8 ? CD_ERR_LIMIT : CD_OK);
        if (run != CD_OK)
            assert_non_null(strstr(err.message, "max_activation_bytes"));
        for (int f64 = 0; f64 < 2; f64++) {
            cd_explain_options eo = {.threads = 1, .float64 = f64};
            cd_explainer *e = NULL;
            assert_int_equal(cd_explainer_create(m, &eo, &e, &err), CD_OK);
            cd_status st = cd_explain_gradient(e, x, NULL, 1, NULL, &g, NULL, NULL, &err);
            bool over = caps[i] && (f64 ? 3 * 48 : 48) > caps[i];
            assert_int_equal(st, over ? CD_ERR_LIMIT : CD_OK);
            if (over)
                assert_non_null(strstr(err.message, "max_activation_bytes"));
            else /* y = relu(x) on positive x: the gradient is all ones */
                for (int k = 0; k < 4; k++)
                    assert_true(cd_f32(g)[k] == 1.0f);
            cd_tensor_free(g);
            g = NULL;
            cd_explainer_free(e);
        }
        cd_tensor_free(y);
        cd_tensor_free(x);
        cd_session_free(s);
        cd_model_free(m);
    }
    free(bytes);
}

static void test_runtime_shape_overflow_is_an_error(void **state)
{
    (void)state;
    /* An input whose shape differs from the declared [4]: a shape error
     * naming the expected shape, and no output handed back. */
    chain_spec c = {.depth = 3};
    size_t size;
    uint8_t *bytes = pack_chain(&c, &size);
    cd_model *m = NULL;
    cd_session *s = NULL;
    cd_error err = {0};
    assert_int_equal(cd_model_load_memory(bytes, size, NULL, NULL, &m, &err), CD_OK);
    assert_int_equal(cd_session_create(m, NULL, &s, &err), CD_OK);
    int64_t d[1] = {5};
    cd_tensor *x = NULL, *y = NULL;
    assert_int_equal(cd_tensor_create(CD_FLOAT32, 1, d, &x, &err), CD_OK);
    cd_status st = cd_session_run(s, 1, NULL, (const cd_tensor *const *)&x, 1, NULL, &y, &err);
    assert_int_equal(st, CD_ERR_SHAPE);
    assert_null(y);
    assert_non_null(strstr(err.message, "[4]"));
    cd_tensor_free(x);
    cd_session_free(s);
    cd_model_free(m);
    free(bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graph_depth),
        cmocka_unit_test(test_node_cap),
        cmocka_unit_test(test_tensor_element_and_byte_caps),
        cmocka_unit_test(test_absurd_dims_refused_before_allocation),
        cmocka_unit_test(test_npy_caps),
        cmocka_unit_test(test_image_pixel_caps),
        cmocka_unit_test(test_runtime_shape_overflow_is_an_error),
        cmocka_unit_test(test_activation_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
