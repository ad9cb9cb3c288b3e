/* Rendering and saving of dense uncertainty maps: the fixed colour range
 * (ends of viridis at lo and hi, matplotlib's published endpoint colours),
 * the scale bar, overlays (alpha 0 = input, 1 = colour), the files written by
 * cd_dense_maps_save read back unchanged, and clear errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "candor/image.h"
#include "candor/uncertainty.h"

/* matplotlib viridis(0.0) and viridis(1.0) rounded to 8 bits. */
static const float VIRIDIS_LO[3] = {68, 1, 84}, VIRIDIS_HI[3] = {253, 231, 37};

static const float *px(const cd_image *img, int x, int y)
{
    return img->pixels + ((size_t)y * img->width + x) * img->channels;
}

static void assert_rgb(const float *p, const float *want)
{
    for (int c = 0; c < 3; c++)
        assert_true(fabsf(p[c] - want[c]) <= 0.5f);
}

static void test_fixed_range_and_legend(void **state)
{
    CD_UNUSED(state);
    /* 4 x 5 map: column 0 at lo, column 1 at hi, column 2 beyond hi
     * (clamped), column 3 NaN (drawn at lo). */
    int64_t d[2] = {4, 5};
    float v[20];
    for (int y = 0; y < 4; y++) {
        v[y * 5 + 0] = 0.0f;
        v[y * 5 + 1] = 2.0f;
        v[y * 5 + 2] = 9.0f;
        v[y * 5 + 3] = NAN;
        v[y * 5 + 4] = 1.0f;
    }
    cd_tensor *m = tu_tensor_f32(2, d, v);
    cd_image *img = NULL;
    cd_error err;
    assert_int_equal(cd_render_map(m, 0.0, 2.0, false, &img, &err), CD_OK);
    assert_int_equal(img->width, 5);
    assert_int_equal(img->height, 4);
    assert_rgb(px(img, 0, 0), VIRIDIS_LO);
    assert_rgb(px(img, 1, 2), VIRIDIS_HI);
    assert_rgb(px(img, 2, 3), VIRIDIS_HI);
    assert_rgb(px(img, 3, 1), VIRIDIS_LO);
    cd_image_free(img);

    /* With a legend: wider, same map pixels, bar top = hi colour, bottom = lo. */
    assert_int_equal(cd_render_map(m, 0.0, 2.0, true, &img, &err), CD_OK);
    assert_true(img->width > 5 + 12);
    assert_int_equal(img->height, 4);
    assert_rgb(px(img, 1, 0), VIRIDIS_HI);
    int bar = -1; /* first column right of the map whose top pixel is the hi colour */
    for (int x = 5; x < img->width && bar < 0; x++)
        if (fabsf(px(img, x, 0)[0] - VIRIDIS_HI[0]) <= 0.5f &&
            fabsf(px(img, x, 0)[2] - VIRIDIS_HI[2]) <= 0.5f)
            bar = x;
    assert_true(bar > 5);
    assert_rgb(px(img, bar, 3), VIRIDIS_LO);
    cd_image_free(img);

    assert_int_equal(cd_render_map(m, 1.0, 1.0, true, &img, &err), CD_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "range"));
    cd_tensor_free(m);
}

static void test_overlay(void **state)
{
    CD_UNUSED(state);
    int64_t d[2] = {3, 2};
    float v[6] = {0, 1, 0.5f, 0.25f, 1, 0};
    cd_tensor *m = tu_tensor_f32(2, d, v);
    cd_image *base = NULL, *a0 = NULL, *a1 = NULL, *full = NULL;
    cd_error err;
    assert_int_equal(cd_image_create(2, 3, 3, &base, &err), CD_OK);
    for (int i = 0; i < 18; i++)
        base->pixels[i] = (float)(i * 13 % 256);
    assert_int_equal(cd_render_map_overlay(m, 0, 1, base, 0.0f, &a0, &err), CD_OK);
    assert_int_equal(cd_render_map_overlay(m, 0, 1, base, 1.0f, &a1, &err), CD_OK);
    assert_int_equal(cd_render_map(m, 0, 1, false, &full, &err), CD_OK);
    for (int i = 0; i < 18; i++) {
        assert_true(fabsf(a0->pixels[i] - base->pixels[i]) <= 1e-4f);
        assert_true(fabsf(a1->pixels[i] - full->pixels[i]) <= 1e-4f);
    }
    cd_image_free(a0);
    cd_image_free(a1);
    cd_image_free(full);
    cd_image *small = NULL;
    assert_int_equal(cd_image_create(1, 3, 3, &small, &err), CD_OK);
    assert_int_equal(cd_render_map_overlay(m, 0, 1, small, 0.5f, &a0, &err), CD_ERR_SHAPE);
    assert_int_equal(cd_render_map_overlay(m, 0, 1, base, 1.5f, &a0, &err),
                     CD_ERR_INVALID_ARGUMENT);
    cd_image_free(small);
    cd_image_free(base);
    cd_tensor_free(m);
}

static void test_save_reads_back(void **state)
{
    CD_UNUSED(state);
    int64_t d[4] = {5, 3, 4, 6}; /* S, C, H, W */
    cd_tensor *s = tu_random(4, d, 11, -2, 2);
    cd_error err;
    assert_int_equal(cd_softmax_axis(s, 1, &err), CD_OK);
    cd_dense_maps maps;
    assert_int_equal(cd_summarize_dense(s, &maps, &err), CD_OK);
    char dir[] = "/tmp/candor_maps_XXXXXX", prefix[256], path[300];
    assert_non_null(mkdtemp(dir));
    snprintf(prefix, sizeof prefix, "%s/x", dir);
    assert_int_equal(cd_dense_maps_save(&maps, 3, prefix, NULL, 0.5f, &err), CD_OK);
    const char *names[4] = {"entropy", "expected_entropy", "mutual_information", "winning_std"};
    const cd_tensor *want[4] = {maps.entropy, maps.expected_entropy, maps.mutual_information,
                                maps.winning_std};
    for (int i = 0; i < 4; i++) {
        cd_tensor *got = NULL;
        snprintf(path, sizeof path, "%s.%s.npy", prefix, names[i]);
        assert_int_equal(cd_npy_load(path, &got, &err), CD_OK);
        assert_int_equal(cd_tensor_ndim(got), 2);
        assert_int_equal(cd_tensor_dims(got)[0], 4);
        assert_int_equal(cd_tensor_dims(got)[1], 6);
        assert_memory_equal(cd_tensor_cdata(got), cd_tensor_cdata(want[i]), 24 * sizeof(float));
        cd_tensor_free(got);
        cd_image *img = NULL;
        snprintf(path, sizeof path, "%s.%s.png", prefix, names[i]);
        assert_int_equal(cd_image_load(path, &img, &err), CD_OK);
        assert_int_equal(img->height, 4);
        assert_true(img->width > 6);
        cd_image_free(img);
        unlink(path);
        snprintf(path, sizeof path, "%s.%s.npy", prefix, names[i]);
        unlink(path);
    }
    cd_tensor *cls = NULL;
    snprintf(path, sizeof path, "%s.argmax.npy", prefix);
    assert_int_equal(cd_npy_load(path, &cls, &err), CD_OK);
    assert_int_equal(cd_tensor_dtype(cls), CD_INT64);
    assert_memory_equal(cd_tensor_cdata(cls), cd_tensor_cdata(maps.winning_class),
                        24 * sizeof(int64_t));
    cd_tensor_free(cls);
    unlink(path);
    snprintf(path, sizeof path, "%s.argmax.png", prefix);
    unlink(path);
    rmdir(dir);

    /* The documented ranges: [0, ln C] and [0, 1/2]. */
    double lo, hi;
    cd_dense_map_range("mutual_information", 3, &lo, &hi);
    assert_true(lo == 0.0 && fabs(hi - log(3.0)) < 1e-15);
    cd_dense_map_range("winning_std", 3, &lo, &hi);
    assert_true(lo == 0.0 && hi == 0.5);
    cd_dense_maps_free(&maps);
    cd_tensor_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_range_and_legend),
        cmocka_unit_test(test_overlay),
        cmocka_unit_test(test_save_reads_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
