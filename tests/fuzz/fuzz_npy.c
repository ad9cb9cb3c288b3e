/* libFuzzer target: .npy parsing, native types and the float32 conversion. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cd_npy_options opts = {.max_elements = 1u << 22};
    for (int to_f32 = 0; to_f32 < 2; to_f32++) {
        cd_tensor *t = NULL;
        cd_error err = {0};
        cd_status st = cd_npy_load_memory_ex(data, size, &opts, to_f32, &t, &err);
        fuzz_check_error(st, &err);
        if (st != CD_OK)
            continue;
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
