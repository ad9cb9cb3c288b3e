/* libFuzzer target: calibration JSON files (cd_calibrator_load), then the
 * loaded calibrator applied to a few rows. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_temp_file(data, size, ".json");
    if (!path)
        return 0;
    cd_calibrator *c = NULL;
    cd_error err = {0};
    cd_status st = cd_calibrator_load(path, &c, &err);
    fuzz_check_error(st, &err);
    if (st == CD_OK) {
        int k = cd_calibrator_classes(c);
        if (k >= 1 && k <= 1000) {
            size_t n = 3;
            double *in = calloc(n * (size_t)k, sizeof *in);
            double *out = calloc(n * (size_t)k, sizeof *out);
            for (size_t i = 0; in && i < n * (size_t)k; i++)
                in[i] = (double)(i % 5) / (double)(k + 4);
            if (in && out) {
                st = cd_calibrator_apply(c, in, n, out, &err);
                fuzz_check_error(st, &err);
            }
            free(in);
            free(out);
        }
        cd_calibrator_free(c);
    }
    unlink(path);
    return 0;
}
