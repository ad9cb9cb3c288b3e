/* libFuzzer target: the ONNX loader (protobuf parse, tensor conversion,
 * graph build, topological sort, operator binding) on arbitrary bytes. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Caps well below the fuzzer's RSS limit so a huge declared tensor is a
     * CD_ERR_LIMIT, not an out-of-memory report. */
    cd_load_options opts = {.max_tensor_elements = 1u << 22, .max_total_bytes = 64u << 20,
                            .max_nodes = 100000};
    cd_model *m = NULL;
    cd_error err = {0};
    cd_status st = cd_model_load_memory(data, size, NULL, &opts, &m, &err);
    fuzz_check_error(st, &err);
    if (st == CD_OK) {
        /* Touch the public getters: they must cope with whatever loaded. */
        for (int i = 0; i < cd_model_input_count(m); i++) {
            int nd;
            int64_t dims[CD_MAX_DIMS];
            (void)cd_model_input_name(m, i);
            (void)cd_model_input_shape(m, i, &nd, dims, NULL);
        }
        for (int i = 0; i < cd_model_node_count(m); i++)
            (void)cd_model_node_op_type(m, i);
        (void)cd_model_parameter_count(m);
        cd_model_free(m);
    }
    return 0;
}
