/* libFuzzer target: model sidecar JSON (labels, preprocessing, output kind,
 * dropout sites). */
#include "fuzz_common.h"

struct cd_sidecar;
cd_status cd_sidecar_parse(const char *json, size_t len, const char *name,
                           struct cd_sidecar **out, cd_error *err);
void cd_sidecar_free(struct cd_sidecar *sc);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cd_sidecar *sc = NULL;
    cd_error err = {0};
    cd_status st = cd_sidecar_parse((const char *)data, size, "fuzz.candor.json", &sc, &err);
    fuzz_check_error(st, &err);
    cd_sidecar_free(sc);
    return 0;
}
