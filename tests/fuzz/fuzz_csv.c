/* libFuzzer target: the predictions CSV reader behind `candor report`, then
 * the report model (metrics, bins, curves; no bootstrap) on what it read. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_temp_file(data, size, ".csv");
    if (!path)
        return 0;
    /* The first byte picks the reader options so both modes get coverage. */
    cd_csv_options o = {0};
    o.logits = size > 0 && (data[0] & 1);
    o.renormalize = size > 0 && (data[0] & 2);
    cd_predictions p;
    cd_error err = {0};
    cd_status st = cd_predictions_read_csv(path, &o, &p, &err);
    fuzz_check_error(st, &err);
    if (st == CD_OK) {
        if (p.n < 2000 && p.k < 200) {
            cd_report_options ro = {.bins = 10, .bootstrap = 0};
            cd_report *r = NULL;
            st = cd_report_build(&p, &ro, &r, &err);
            fuzz_check_error(st, &err);
            cd_report_free(r);
        }
        cd_predictions_clear(&p);
    }
    unlink(path);
    return 0;
}
