/* Feature maps, activation maximisation and attacks on the bundled
 * Fashion-MNIST CNN, against independent references: a naive O(n^2) AUROC,
 * the preprocessing range in closed form, the session's own tensor for the
 * feature maps and a naive channel ranking, central finite differences of
 * the cross-entropy for FGSM's signs, the eps ball for PGD, and seeded
 * reproducibility of activation maximisation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "candor/explain.h"
#include "candor/model.h"

static cd_model *load_cnn(void)
{
    const char *src = getenv("CANDOR_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/models/fmnist_cnn.onnx", src ? src : "..");
    cd_model *m = NULL;
    cd_error err = {0};
    if (cd_model_load(path, NULL, &m, &err) != CD_OK)
        fail_msg("cannot load %s: %s", path, err.message);
    return m;
}

/* n rows of calibration images, preprocessed as the sidecar says. */
static cd_tensor *calib_rows(int n, int **labels)
{
    const char *src = getenv("CANDOR_SOURCE_DIR");
    char path[1024];
    cd_error err = {0};
    cd_tensor *img = NULL, *lab = NULL;
    snprintf(path, sizeof path, "%s/models/calib/fmnist_calib_images.npy", src ? src : "..");
    assert_int_equal(cd_npy_load(path, &img, &err), CD_OK);
    snprintf(path, sizeof path, "%s/models/calib/fmnist_calib_labels.npy", src ? src : "..");
    assert_int_equal(cd_npy_load(path, &lab, &err), CD_OK);
    int64_t dims[4] = {n, 1, 28, 28};
    cd_tensor *x = NULL;
    assert_int_equal(cd_tensor_create(CD_FLOAT32, 4, dims, &x, &err), CD_OK);
    const uint8_t *p = cd_tensor_cdata(img);
    float *v = cd_tensor_data(x);
    for (size_t i = 0; i < cd_tensor_numel(x); i++)
        v[i] = ((float)p[i] / 255.0f - 0.286f) / 0.353f;
    *labels = malloc((size_t)n * sizeof **labels);
    for (int i = 0; i < n; i++)
        (*labels)[i] = (int)((const int64_t *)cd_tensor_cdata(lab))[i];
    cd_tensor_free(img);
    cd_tensor_free(lab);
    return x;
}

/* ------------------------------------------------------------ AUROC */

static void test_auroc_naive(void **state)
{
    (void)state;
    uint64_t s = 7;
    double neg[60], pos[45];
    for (int i = 0; i < 60; i++)
        neg[i] = floor(tu_uniform(&s, 0, 10)); /* integers: many ties */
    for (int i = 0; i < 45; i++)
        pos[i] = floor(tu_uniform(&s, 2, 12));
    double wins = 0;
    for (int i = 0; i < 45; i++)
        for (int j = 0; j < 60; j++)
            wins += pos[i] > neg[j] ? 1.0 : pos[i] == neg[j] ? 0.5 : 0.0;
    assert_true(fabs(cd_auroc(neg, 60, pos, 45) - wins / (45.0 * 60.0)) < 1e-12);
    double a[2] = {0, 1}, b[2] = {2, 3};
    assert_true(cd_auroc(a, 2, b, 2) == 1.0);
    assert_true(cd_auroc(b, 2, a, 2) == 0.0);
    assert_true(isnan(cd_auroc(a, 2, b, 0)));
}

static void test_input_range(void **state)
{
    (void)state;
    cd_model *m = load_cnn();
    float lo, hi;
    cd_error err = {0};
    assert_int_equal(cd_explain_input_range(m, 1, &lo, &hi, &err), CD_OK);
    /* sidecar: scale 255, mean 0.286, std 0.353 */
    assert_true(fabs(lo - (0 - 0.286) / 0.353) < 1e-6);
    assert_true(fabs(hi - (1 - 0.286) / 0.353) < 1e-6);
    cd_model_free(m);
}

/* ------------------------------------------------------------ feature maps */

static void test_feature_maps(void **state)
{
    (void)state;
    cd_model *m = load_cnn();
    int *labels = NULL;
    cd_tensor *all = calib_rows(1, &labels);
    cd_error err = {0};
    const char *layer = "/features/features.4/Relu_output_0";
    cd_feature_maps fm = {0};
    assert_int_equal(cd_feature_maps_compute(m, all, layer, 5, 1, &fm, &err), CD_OK);
    cd_session *s = NULL;
    cd_tensor *ref = NULL;
    const cd_tensor *in[1] = {all};
    assert_int_equal(cd_session_create(m, NULL, &s, &err), CD_OK);
    assert_int_equal(cd_session_run(s, 1, NULL, in, 1, &layer, &ref, &err), CD_OK);
    assert_int_equal(cd_tensor_numel(ref), cd_tensor_numel(fm.tensor));
    assert_memory_equal(cd_tensor_cdata(ref), cd_tensor_cdata(fm.tensor), cd_tensor_nbytes(ref));
    /* naive ranking: channel means, descending, ties by index */
    int c = (int)cd_tensor_dims(ref)[1];
    size_t hw = cd_tensor_numel(ref) / (size_t)c;
    const float *v = cd_tensor_cdata(ref);
    double means[256];
    for (int k = 0; k < c; k++) {
        means[k] = 0;
        for (size_t j = 0; j < hw; j++)
            means[k] += v[(size_t)k * hw + j];
        means[k] /= (double)hw;
    }
    bool used[256] = {0};
    for (int i = 0; i < 5; i++) {
        int best = -1;
        for (int k = 0; k < c; k++)
            if (!used[k] && (best < 0 || means[k] > means[best]))
                best = k;
        used[best] = true;
        assert_int_equal(fm.channels[i], best);
        assert_true(fabs(fm.means[i] - means[best]) < 1e-6);
    }
    cd_image *img = NULL;
    assert_int_equal(cd_feature_maps_render(&fm, 21, &img, &err), CD_OK);
    /* 5 channels: 3 columns x 2 rows of 14x14 maps upscaled 2x (28 px) */
    assert_int_equal(img->height, 6 + 2 * (14 + 28 + 6));
    cd_image_free(img);
    cd_feature_maps_free(&fm);
    assert_int_not_equal(cd_feature_maps_compute(m, all, "nosuch", 5, 1, &fm, &err), CD_OK);
    assert_non_null(strstr(err.message, "nosuch"));
    cd_tensor_free(ref);
    cd_session_free(s);
    cd_tensor_free(all);
    free(labels);
    cd_model_free(m);
}

/* ------------------------------------------------------------ attacks */

static double cross_entropy(cd_explainer *e, const cd_tensor *x, int label)
{
    cd_objective o;
    cd_objective_default(&o);
    o.kind = CD_OBJECTIVE_LOG_PROB;
    o.target = label;
    double s = 0;
    cd_error err = {0};
    assert_int_equal(cd_explain_scores(e, x, &o, &s, NULL, &err), CD_OK);
    return -s;
}

/* FGSM's step signs against central finite differences of the cross-entropy
 * on the row (of 16) with the highest loss: a confident row's loss moves
 * less than float32 rounding of its logits under a small pixel change.
 * (The pixel-exact comparison with PyTorch autograd is tests/cli/test_robustness.sh.) */
static void test_fgsm_signs(void **state)
{
    (void)state;
    cd_model *m = load_cnn();
    int *labels = NULL;
    cd_tensor *x = calib_rows(16, &labels);
    cd_error err = {0};
    cd_explainer *e = NULL;
    assert_int_equal(cd_explainer_create(m, NULL, &e, &err), CD_OK);
    cd_attack_params p;
    cd_attack_params_default(&p, CD_ATTACK_FGSM);
    p.eps = 0.05f; /* no clipping: every step shows its sign */
    cd_tensor *adv = NULL;
    assert_int_equal(cd_attack(e, x, labels, &p, &adv, &err), CD_OK);
    const float *xv = cd_tensor_cdata(x), *av = cd_tensor_cdata(adv);
    for (size_t i = 0; i < cd_tensor_numel(x); i++) {
        float dlt = fabsf(av[i] - xv[i]);
        assert_true(dlt < 1e-6f || fabsf(dlt - 0.05f) < 1e-6f);
    }
    int64_t d1[4] = {1, 1, 28, 28};
    int worst = 0;
    double worst_ce = -1;
    for (int b = 0; b < 16; b++) {
        cd_tensor *xb = NULL, *ab = NULL;
        cd_tensor_from_data(CD_FLOAT32, 4, d1, xv + b * 784, &xb, &err);
        cd_tensor_from_data(CD_FLOAT32, 4, d1, av + b * 784, &ab, &err);
        double c0 = cross_entropy(e, xb, labels[b]);
        assert_true(cross_entropy(e, ab, labels[b]) > c0); /* the loss rises on every row */
        if (c0 > worst_ce)
            worst_ce = c0, worst = b;
        cd_tensor_free(xb);
        cd_tensor_free(ab);
    }
    cd_tensor *r = NULL;
    assert_int_equal(cd_tensor_from_data(CD_FLOAT32, 4, d1, xv + worst * 784, &r, &err), CD_OK);
    float *rv = cd_tensor_data(r);
    const float *ar = av + worst * 784;
    int checked = 0, agree = 0;
    for (int i = 0; i < 784 && checked < 40; i++) {
        float step = ar[i] - rv[i];
        /* Background pixels (value 0) make exact ties in max-pool windows,
         * where the loss has no derivative and differences are one-sided. */
        if (fabsf(step) < 0.04f || rv[i] < -0.8f)
            continue;
        float keep = rv[i], h = 1e-2f;
        rv[i] = keep + h;
        double up = cross_entropy(e, r, labels[worst]);
        rv[i] = keep - h;
        double down = cross_entropy(e, r, labels[worst]);
        rv[i] = keep;
        if (fabs(up - down) < 1e-4) /* below float32 resolution of the loss: no evidence */
            continue;
        checked++;
        agree += (up - down) * step > 0;
    }
    fprintf(stderr, "FGSM vs finite differences (row %d, loss %.3g): %d of %d signs agree\n",
            worst, worst_ce, agree, checked);
    assert_true(checked >= 20);
    assert_true(agree >= checked - 1); /* a ReLU/max-pool kink inside +-h may flip one */
    cd_tensor_free(r);
    cd_tensor_free(adv);
    cd_explainer_free(e);
    cd_tensor_free(x);
    free(labels);
    cd_model_free(m);
}

static void test_pgd_ball(void **state)
{
    (void)state;
    cd_model *m = load_cnn();
    int *labels = NULL;
    cd_tensor *x = calib_rows(8, &labels);
    cd_error err = {0};
    cd_explainer *e = NULL;
    assert_int_equal(cd_explainer_create(m, NULL, &e, &err), CD_OK);
    float lo, hi;
    cd_explain_input_range(m, 1, &lo, &hi, &err);
    cd_attack_params p;
    cd_attack_params_default(&p, CD_ATTACK_PGD);
    p.eps = 0.1f;
    p.steps = 5;
    p.random_start = true;
    p.seed = 3;
    p.clip_lo = &lo;
    p.clip_hi = &hi;
    cd_tensor *adv = NULL, *adv2 = NULL, *fg = NULL;
    assert_int_equal(cd_attack(e, x, labels, &p, &adv, &err), CD_OK);
    assert_int_equal(cd_attack(e, x, labels, &p, &adv2, &err), CD_OK);
    assert_memory_equal(cd_tensor_cdata(adv), cd_tensor_cdata(adv2), cd_tensor_nbytes(adv));
    const float *xv = cd_tensor_cdata(x), *av = cd_tensor_cdata(adv);
    for (size_t i = 0; i < cd_tensor_numel(x); i++) {
        assert_true(fabsf(av[i] - xv[i]) <= 0.1f + 1e-6f);
        assert_true(av[i] >= lo && av[i] <= hi);
    }
    cd_attack_params f;
    cd_attack_params_default(&f, CD_ATTACK_FGSM);
    f.eps = 0.1f;
    f.clip_lo = &lo;
    f.clip_hi = &hi;
    assert_int_equal(cd_attack(e, x, labels, &f, &fg, &err), CD_OK);
    /* PGD's summed loss is at least FGSM's on these rows. */
    double lp = 0, lf = 0;
    int64_t d1[4] = {1, 1, 28, 28};
    for (int b = 0; b < 8; b++) {
        cd_tensor *pb = NULL, *fb = NULL;
        cd_tensor_from_data(CD_FLOAT32, 4, d1, av + b * 784, &pb, &err);
        cd_tensor_from_data(CD_FLOAT32, 4, d1, (const float *)cd_tensor_cdata(fg) + b * 784, &fb,
                            &err);
        lp += cross_entropy(e, pb, labels[b]);
        lf += cross_entropy(e, fb, labels[b]);
        cd_tensor_free(pb);
        cd_tensor_free(fb);
    }
    assert_true(lp >= lf);
    int bad_label[8] = {0, 0, 0, 0, 0, 0, 0, 42};
    cd_tensor *none = NULL;
    assert_int_not_equal(cd_attack(e, x, bad_label, &f, &none, &err), CD_OK);
    assert_null(none);
    cd_tensor_free(adv);
    cd_tensor_free(adv2);
    cd_tensor_free(fg);
    cd_explainer_free(e);
    cd_tensor_free(x);
    free(labels);
    cd_model_free(m);
}

/* ------------------------------------------------------------ maximisation */

static void test_maximize_reproducible(void **state)
{
    (void)state;
    cd_model *m = load_cnn();
    cd_error err = {0};
    cd_explainer *e = NULL;
    assert_int_equal(cd_explainer_create(m, NULL, &e, &err), CD_OK);
    cd_maximize_params p;
    cd_maximize_params_default(&p);
    p.target = 8;
    p.steps = 30;
    p.seed = 11;
    cd_maximize_result a = {0}, b = {0};
    assert_int_equal(cd_explain_maximize(e, &p, &a, &err), CD_OK);
    assert_int_equal(cd_explain_maximize(e, &p, &b, &err), CD_OK);
    assert_memory_equal(cd_tensor_cdata(a.image), cd_tensor_cdata(b.image),
                        cd_tensor_nbytes(a.image));
    assert_memory_equal(a.score, b.score, (size_t)a.n_points * sizeof(double));
    assert_int_equal(a.n_points, 31);
    assert_true(a.final_score > a.start_score);
    /* The recorded final score is the logit of the returned image. It comes
     * from the gradient (tape) plan and the check from the fast plan, whose
     * 3x3 convs may take different Winograd tile sizes (F(2x2) vs F(4x4),
     * conv_fast.h): equal up to float32 rounding, not bit for bit. */
    cd_objective o;
    cd_objective_default(&o);
    o.target = 8;
    double s = 0;
    assert_int_equal(cd_explain_scores(e, a.image, &o, &s, NULL, &err), CD_OK);
    assert_true(fabs(s - a.final_score) <= 1e-6 * fmax(1.0, fabs(s)));
    p.target = 99;
    cd_maximize_result c = {0};
    assert_int_not_equal(cd_explain_maximize(e, &p, &c, &err), CD_OK);
    cd_maximize_result_free(&a);
    cd_maximize_result_free(&b);
    cd_explainer_free(e);
    cd_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auroc_naive),     cmocka_unit_test(test_input_range),
        cmocka_unit_test(test_feature_maps),    cmocka_unit_test(test_fgsm_signs),
        cmocka_unit_test(test_pgd_ball),        cmocka_unit_test(test_maximize_reproducible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
