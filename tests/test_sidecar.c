/* Sidecar (MODEL.candor.json) parsing, errors naming the field, the
 * model-path mapping, and the public getters on a hand-built model. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "candor/image.h"
#include "core/sidecar.h"

static struct cd_sidecar *parse_ok(const char *json)
{
    struct cd_sidecar *sc = NULL;
    cd_error err;
    if (cd_sidecar_parse(json, strlen(json), "x.candor.json", &sc, &err) != CD_OK)
        fail_msg("rejected: %s", err.message);
    assert_non_null(sc);
    return sc;
}

static void test_full_sidecar(void **state)
{
    CD_UNUSED(state);
    struct cd_sidecar *sc = parse_ok(
        "{\"labels\": [\"cat\", \"dog\", \"\\u00e9l\\u00e9phant\"],\n"
        " \"preprocess\": {\"resize\": 256, \"crop\": [224, 200], \"scale\": 255,\n"
        "   \"mean\": [0.485, 0.456, 0.406], \"std\": [0.229, 0.224, 0.225], \"color\": \"rgb\",\n"
        "   \"future_option\": {\"x\": 1}},\n"
        " \"output\": {\"kind\": \"probabilities\", \"name\": \"prob\"},\n"
        " \"input\": {\"name\": \"image\"},\n"
        " \"dropout_sites\": [{\"tensor\": \"fc1_out\", \"p\": 0.1},\n"
        "                    {\"tensor\": \"conv3\", \"p\": 0.25, \"channel\": true}],\n"
        " \"unknown_top_level\": [1, 2, 3]}");
    assert_int_equal(sc->n_labels, 3);
    assert_string_equal(sc->labels[0], "cat");
    assert_string_equal(sc->labels[2], "\xc3\xa9l\xc3\xa9phant");
    const cd_preprocess *p = &sc->preprocess;
    assert_int_equal(p->resize_short, 256);
    assert_int_equal(p->resize_h, 0);
    assert_int_equal(p->crop_h, 224);
    assert_int_equal(p->crop_w, 200);
    assert_float_equal(p->scale, 255, 0);
    assert_float_equal(p->mean[1], 0.456, 1e-7);
    assert_float_equal(p->std[2], 0.225, 1e-7);
    assert_int_equal(p->color, CD_COLOR_RGB);
    assert_int_equal(sc->output_kind, CD_OUTPUT_PROBABILITIES);
    assert_string_equal(sc->output_name, "prob");
    assert_string_equal(sc->input_name, "image");
    assert_int_equal(sc->n_dropout_sites, 2);
    assert_string_equal(sc->dropout_sites[0].tensor, "fc1_out");
    assert_float_equal(sc->dropout_sites[0].p, 0.1, 1e-7);
    assert_false(sc->dropout_sites[0].channel);
    assert_true(sc->dropout_sites[1].channel);
    cd_sidecar_free(sc);
}

static void test_partial_sidecar(void **state)
{
    CD_UNUSED(state);
    struct cd_sidecar *sc = parse_ok(
        "{\"preprocess\": {\"resize\": [28, 32], \"crop\": 24, \"color\": \"gray\", "
        "\"mean\": [0.5], \"std\": [0.25]}}");
    assert_int_equal(sc->n_labels, 0);
    assert_int_equal(sc->preprocess.resize_short, 0);
    assert_int_equal(sc->preprocess.resize_h, 28);
    assert_int_equal(sc->preprocess.resize_w, 32);
    assert_int_equal(sc->preprocess.crop_h, 24);
    assert_int_equal(sc->preprocess.crop_w, 24);
    assert_int_equal(sc->preprocess.color, CD_COLOR_GRAY);
    assert_float_equal(sc->preprocess.scale, 255, 0); /* default */
    for (int c = 0; c < 3; c++) {                      /* broadcast */
        assert_float_equal(sc->preprocess.mean[c], 0.5, 0);
        assert_float_equal(sc->preprocess.std[c], 0.25, 0);
    }
    assert_int_equal(sc->output_kind, CD_OUTPUT_UNSPECIFIED);
    assert_null(sc->output_name);
    cd_sidecar_free(sc);
    sc = parse_ok("{}");
    assert_float_equal(sc->preprocess.std[0], 1, 0);
    cd_sidecar_free(sc);
}

static void test_invalid_fields(void **state)
{
    CD_UNUSED(state);
    struct {
        const char *json;
        const char *field;
    } cases[] = {
        {"[1, 2]", "top level"},
        {"{\"labels\": \"cat\"}", "labels must be"},
        {"{\"labels\": [\"cat\", 3]}", "labels[1] must be a string"},
        {"{\"preprocess\": 3}", "preprocess must be an object"},
        {"{\"preprocess\": {\"mean\": 0.5}}", "preprocess.mean must be an array of 1 or 3 numbers"},
        {"{\"preprocess\": {\"mean\": [0.5, 0.5]}}", "preprocess.mean must be an array of 1 or 3"},
        {"{\"preprocess\": {\"mean\": [\"a\", 1, 2]}}", "preprocess.mean must be"},
        {"{\"preprocess\": {\"std\": [1, 0, 1]}}", "preprocess.std must not contain 0"},
        {"{\"preprocess\": {\"resize\": -3}}", "preprocess.resize must be"},
        {"{\"preprocess\": {\"resize\": 2.5}}", "preprocess.resize must be"},
        {"{\"preprocess\": {\"resize\": [1, 2, 3]}}", "preprocess.resize must be"},
        {"{\"preprocess\": {\"resize\": \"256\"}}", "preprocess.resize must be"},
        {"{\"preprocess\": {\"resize\": 1e9}}", "preprocess.resize must be"},
        {"{\"preprocess\": {\"crop\": [0, 3]}}", "preprocess.crop must be"},
        {"{\"preprocess\": {\"scale\": 0}}", "preprocess.scale must be a positive number"},
        {"{\"preprocess\": {\"scale\": \"255\"}}", "preprocess.scale must be"},
        {"{\"preprocess\": {\"color\": \"bgr\"}}", "preprocess.color must be \"rgb\" or \"gray\""},
        {"{\"preprocess\": {\"color\": \"gray\", \"mean\": [1, 2, 3]}}", "preprocess.mean/std"},
        {"{\"output\": []}", "output must be an object"},
        {"{\"output\": {\"kind\": \"softmax\"}}", "output.kind must be"},
        {"{\"output\": {\"kind\": 1}}", "output.kind must be"},
        {"{\"output\": {\"name\": 7}}", "output.name must be a string"},
        {"{\"input\": {\"name\": null}}", "input.name must be a string"},
        {"{\"dropout_sites\": {}}", "dropout_sites must be an array"},
        {"{\"dropout_sites\": [3]}", "dropout_sites[0] must be an object"},
        {"{\"dropout_sites\": [{\"p\": 0.1}]}", "dropout_sites[0].tensor must be"},
        {"{\"dropout_sites\": [{\"tensor\": \"a\", \"p\": 0.1}, {\"tensor\": \"b\", \"p\": 1}]}",
         "dropout_sites[1].p must be a number in [0, 1)"},
        {"{\"dropout_sites\": [{\"tensor\": \"a\"}]}", "dropout_sites[0].p"},
        {"{\"dropout_sites\": [{\"tensor\": \"a\", \"p\": 0.5, \"channel\": 1}]}",
         "dropout_sites[0].channel must be true or false"},
    };
    for (size_t i = 0; i < CD_COUNT_OF(cases); i++) {
        struct cd_sidecar *sc = NULL;
        cd_error err;
        cd_status s = cd_sidecar_parse(cases[i].json, strlen(cases[i].json), "x.candor.json",
                                       &sc, &err);
        if (s != CD_ERR_PARSE)
            fail_msg("case %zu (%s) gave %s", i, cases[i].json, cd_status_name(s));
        assert_null(sc);
        if (!strstr(err.message, cases[i].field) || !strstr(err.message, "sidecar x.candor.json"))
            fail_msg("case %zu: message '%s' does not name '%s'", i, err.message, cases[i].field);
    }
}

static void test_bad_json(void **state)
{
    CD_UNUSED(state);
    const char *json = "{\n  \"labels\": [\"a\",\n  ]\n}";
    struct cd_sidecar *sc = NULL;
    cd_error err;
    assert_int_equal(cd_sidecar_parse(json, strlen(json), "m.candor.json", &sc, &err),
                     CD_ERR_PARSE);
    assert_non_null(strstr(err.message, "line 3"));
    assert_int_equal(cd_sidecar_parse("", 0, "m.candor.json", &sc, &err), CD_ERR_PARSE);
    /* Length-limited: bytes after len are not read. */
    assert_int_equal(cd_sidecar_parse("{}garbage", 2, "m", &sc, &err), CD_OK);
    cd_sidecar_free(sc);
}

static void test_paths_and_files(void **state)
{
    CD_UNUSED(state);
    struct {
        const char *model, *sidecar;
    } map[] = {{"models/x.onnx", "models/x.candor.json"},
               {"X.ONNX", "X.candor.json"},
               {"a.b/model", "a.b/model.candor.json"},
               {"dir.onnx/m.pb", "dir.onnx/m.pb.candor.json"},
               {".onnx", ".onnx.candor.json"}};
    for (size_t i = 0; i < CD_COUNT_OF(map); i++) {
        char *p = cd_sidecar_path_for_model(map[i].model);
        assert_string_equal(p, map[i].sidecar);
        free(p);
    }
    char dir[] = "/tmp/candor_sidecar_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char model[128], side[128];
    snprintf(model, sizeof model, "%s/net.onnx", dir);
    snprintf(side, sizeof side, "%s/net.candor.json", dir);
    struct cd_sidecar *sc = (struct cd_sidecar *)1;
    cd_error err;
    assert_int_equal(cd_sidecar_load_for_model(model, &sc, &err), CD_OK);
    assert_null(sc);
    assert_int_equal(cd_sidecar_load_file(side, &sc, &err), CD_ERR_IO);
    FILE *fp = fopen(side, "w");
    fputs("{\"labels\": [\"zero\", \"one\"], \"output\": {\"kind\": \"logits\"}}", fp);
    fclose(fp);
    assert_int_equal(cd_sidecar_load_for_model(model, &sc, &err), CD_OK);
    assert_non_null(sc);
    assert_int_equal(sc->n_labels, 2);
    assert_int_equal(sc->output_kind, CD_OUTPUT_LOGITS);
    cd_sidecar_free(sc);
    fp = fopen(side, "w");
    fputs("{\"labels\": 5}", fp);
    fclose(fp);
    assert_int_equal(cd_sidecar_load_for_model(model, &sc, &err), CD_ERR_PARSE);
    assert_non_null(strstr(err.message, "net.candor.json"));
    assert_non_null(strstr(err.message, "labels"));
    unlink(side);
    rmdir(dir);
}

/* A minimal model with one NCHW input value, for the getters. */
static void fake_model(struct cd_model *m, cd_value *v, int *input, int64_t c, int64_t h,
                       int64_t w)
{
    memset(m, 0, sizeof *m);
    memset(v, 0, sizeof *v);
    v->name = "x";
    v->ndim = 4;
    v->dims[0] = 1, v->dims[1] = c, v->dims[2] = h, v->dims[3] = w;
    v->is_graph_input = true;
    *input = 0;
    m->n_values = 1;
    m->values = v;
    m->n_inputs = 1;
    m->inputs = input;
}

static void test_model_getters(void **state)
{
    CD_UNUSED(state);
    struct cd_model m;
    cd_value v;
    int input;
    cd_preprocess p;
    fake_model(&m, &v, &input, 1, 28, 28);
    /* No sidecar: defaults, gray from the 1-channel input, exact resize. */
    assert_int_equal(cd_model_label_count(&m), 0);
    assert_null(cd_model_label(&m, 0));
    assert_string_equal(cd_model_output_kind(&m), "unspecified");
    assert_int_equal(cd_model_dropout_site_count(&m), 0);
    assert_int_equal(cd_model_preprocess(&m, &p), CD_OK);
    assert_int_equal(p.color, CD_COLOR_GRAY);
    assert_int_equal(p.resize_h, 28);
    assert_int_equal(p.resize_w, 28);
    assert_float_equal(p.scale, 255, 0);
    /* Sidecar with a crop: no implicit resize, its own values kept. */
    fake_model(&m, &v, &input, 3, 224, 224);
    m.sidecar = parse_ok("{\"labels\": [\"a\", \"b\"], \"preprocess\": {\"resize\": 256, "
                         "\"crop\": 224, \"mean\": [0.5]}, \"output\": {\"kind\": "
                         "\"segmentation\"}, \"dropout_sites\": [{\"tensor\": \"t\", "
                         "\"p\": 0.3, \"channel\": true}]}");
    assert_int_equal(cd_model_label_count(&m), 2);
    assert_string_equal(cd_model_label(&m, 1), "b");
    assert_null(cd_model_label(&m, 2));
    assert_null(cd_model_label(&m, -1));
    assert_string_equal(cd_model_output_kind(&m), "segmentation");
    assert_int_equal(cd_model_preprocess(&m, &p), CD_OK);
    assert_int_equal(p.color, CD_COLOR_RGB);
    assert_int_equal(p.resize_short, 256);
    assert_int_equal(p.resize_h, 0);
    assert_int_equal(p.crop_h, 224);
    assert_float_equal(p.mean[2], 0.5, 0);
    const char *t;
    float prob;
    bool ch;
    assert_int_equal(cd_model_dropout_site(&m, 0, &t, &prob, &ch, NULL), CD_OK);
    assert_string_equal(t, "t");
    assert_float_equal(prob, 0.3, 1e-7);
    assert_true(ch);
    assert_int_equal(cd_model_dropout_site(&m, 1, &t, &prob, &ch, NULL),
                     CD_ERR_INVALID_ARGUMENT);
    cd_sidecar_free(m.sidecar);
    /* Explicit color wins over the input's channel count. */
    fake_model(&m, &v, &input, 3, 32, 32);
    m.sidecar = parse_ok("{\"preprocess\": {\"color\": \"gray\"}}");
    assert_int_equal(cd_model_preprocess(&m, &p), CD_OK);
    assert_int_equal(p.color, CD_COLOR_GRAY);
    assert_int_equal(p.resize_h, 32);
    cd_sidecar_free(m.sidecar);
    /* Dynamic H/W: no implicit resize. */
    fake_model(&m, &v, &input, 3, -1, -1);
    assert_int_equal(cd_model_preprocess(&m, &p), CD_OK);
    assert_int_equal(p.resize_h, 0);
    assert_int_equal(cd_model_preprocess(NULL, &p), CD_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_sidecar),
        cmocka_unit_test(test_partial_sidecar),
        cmocka_unit_test(test_invalid_fields),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_paths_and_files),
        cmocka_unit_test(test_model_getters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
