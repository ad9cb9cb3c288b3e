/* libFuzzer target: PNG/JPEG decoding (format sniffed from the bytes) and the
 * preprocessing pipeline on whatever decodes. Built twice, as fuzz_png and
 * fuzz_jpeg, with different seed corpora. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cd_image_options opts = {.max_pixels = 1u << 22};
    cd_image *img = NULL;
    cd_error err = {0};
    cd_status st = cd_image_load_memory_ex(data, size, &opts, &img, &err);
    fuzz_check_error(st, &err);
    if (st != CD_OK)
        return 0;
    if (img->width < 1 || img->height < 1 ||
        (img->channels != 1 && img->channels != 3 && img->channels != 4))
        __builtin_trap();
    size_t n = (size_t)img->width * (size_t)img->height * (size_t)img->channels;
    volatile float sink = 0;
    for (size_t i = 0; i < n; i++)
        sink += img->pixels[i];
    (void)sink;
    if ((size_t)img->width * (size_t)img->height <= 1u << 16) {
        cd_preprocess p;
        cd_preprocess_default(&p);
        p.resize_h = 7;
        p.resize_w = 5;
        p.crop_h = 4;
        p.crop_w = 4;
        p.color = size % 2 ? CD_COLOR_GRAY : CD_COLOR_RGB;
        cd_tensor *t = NULL;
        st = cd_image_to_tensor(img, &p, &t, &err);
        fuzz_check_error(st, &err);
        cd_tensor_free(t);
    }
    cd_image_free(img);
    return 0;
}
