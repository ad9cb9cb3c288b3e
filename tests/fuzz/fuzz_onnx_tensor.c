/* libFuzzer target: a serialized TensorProto (.pb files of the ONNX test
 * folders) converted to a tensor. */
#include "fuzz_common.h"

cd_status cd_onnx_read_tensor_memory(const void *bytes, size_t size, const char *what,
                                     cd_tensor **out, int *onnx_type, cd_error *err);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cd_tensor *t = NULL;
    cd_error err = {0};
    int type = 0;
    cd_status st = cd_onnx_read_tensor_memory(data, size, "fuzz", &t, &type, &err);
    fuzz_check_error(st, &err);
    if (st == CD_OK) {
        /* Reading every byte lets ASan catch a buffer smaller than claimed. */
        const uint8_t *p = cd_tensor_cdata(t);
        size_t n = cd_tensor_nbytes(t);
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < n; i++)
            sink ^= p[i];
        (void)sink;
        cd_tensor_free(t);
    }
    return 0;
}
