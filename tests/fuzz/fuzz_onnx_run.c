/* libFuzzer target: a fuzzed model that loads is planned and run on small
 * inputs, exercising shape inference, constant folding and the kernels'
 * checks of what inference promised; a model with one float32 input whose
 * run succeeds also gets an input gradient, in float32 and in float64 (the
 * reverse passes and the float64 kernels). */
#include <string.h>

#include "fuzz_common.h"

#define MAX_INPUT_ELEMENTS 4096

/* A zero-filled input of the declared shape, dynamic dims set to 1; NULL when
 * the input is too big or of a type we do not synthesize. */
static cd_tensor *make_input(const cd_model *m, int i)
{
    int nd = -1;
    int64_t dims[CD_MAX_DIMS];
    if (cd_model_input_shape(m, i, &nd, dims, NULL) != CD_OK || nd < 0)
        return NULL;
    uint64_t n = 1;
    for (int d = 0; d < nd; d++) {
        if (dims[d] < 0)
            dims[d] = 1;
        if (dims[d] > MAX_INPUT_ELEMENTS)
            return NULL;
        n *= (uint64_t)dims[d];
        if (n > MAX_INPUT_ELEMENTS)
            return NULL;
    }
    cd_dtype dt = cd_model_input_dtype(m, i);
    if (dt == CD_DTYPE_UNDEFINED)
        dt = CD_FLOAT32;
    cd_tensor *t = NULL;
    if (cd_tensor_create(dt, nd, dims, &t, NULL) != CD_OK)
        return NULL;
    if (dt == CD_FLOAT32) {
        float *p = cd_tensor_data(t);
        for (uint64_t k = 0; k < n; k++)
            p[k] = (float)((int)(k % 7) - 3) * 0.25f;
    }
    return t;
}

/* The input gradient of the default objective: on success a tensor comes
 * back, on failure a message and none. */
static void gradient(const cd_model *m, const cd_tensor *x, bool f64)
{
    cd_explain_options eo = {.threads = 1, .max_batch = 1, .float64 = f64};
    cd_explainer *e = NULL;
    cd_error err = {0};
    if (cd_explainer_create(m, &eo, &e, &err) != CD_OK)
        return;
    cd_tensor *g = NULL;
    cd_status st = cd_explain_gradient(e, x, NULL, 1, NULL, &g, NULL, NULL, &err);
    fuzz_check_error(st, &err);
    if ((st == CD_OK) != (g != NULL))
        __builtin_trap();
    cd_tensor_free(g);
    cd_explainer_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Activations capped well under the 2 GiB RSS limit of tests/fuzz/run.sh
     * (a Pad with huge pads asked for 9 GiB). */
    cd_load_options opts = {.max_tensor_elements = 1u << 16, .max_total_bytes = 4u << 20,
                            .max_nodes = 64, .max_activation_bytes = 256u << 20};
    cd_model *m = NULL;
    cd_error err = {0};
    if (cd_model_load_memory(data, size, NULL, &opts, &m, &err) != CD_OK)
        return 0;
    int n_in = cd_model_input_count(m), n_out = cd_model_output_count(m);
    cd_tensor *in[8] = {0}, *out[8] = {0};
    cd_session *s = NULL;
    cd_session_options so = {.threads = 1};
    bool ready = n_in <= 8 && n_out >= 1 && n_out <= 8;
    for (int i = 0; ready && i < n_in; i++)
        ready = (in[i] = make_input(m, i)) != NULL;
    cd_status st = CD_ERR_INVALID_ARGUMENT;
    if (ready && cd_session_create(m, &so, &s, &err) == CD_OK) {
        st = cd_session_run(s, n_in, NULL, (const cd_tensor *const *)in, n_out, NULL, out, &err);
        fuzz_check_error(st, &err);
        for (int j = 0; j < n_out; j++) {
            if (st == CD_OK && !out[j])
                __builtin_trap();
            if (st != CD_OK && out[j])
                __builtin_trap();
            cd_tensor_free(out[j]);
        }
    }
    if (st == CD_OK && n_in == 1 && cd_tensor_dtype(in[0]) == CD_FLOAT32)
        for (int f64 = 0; f64 < 2; f64++)
            gradient(m, in[0], f64);
    cd_session_free(s);
    for (int i = 0; i < 8; i++)
        cd_tensor_free(in[i]);
    cd_model_free(m);
    return 0;
}
