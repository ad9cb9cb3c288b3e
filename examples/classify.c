/* classify: load an ONNX classifier, run it with MC dropout on an image
 * (PNG/JPEG) or a .npy tensor and print the top-3 classes with their spread.
 *   classify MODEL.onnx INPUT [SAMPLES]            (SAMPLES default 30) */
#include <candor/candor.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const cd_error *err) {
    fprintf(stderr, "classify: %s: %s\n", cd_status_name(err->code), err->message);
    return 1;
}

static cd_status load_input(const cd_model *m, const char *path, cd_tensor **x, cd_error *err) {
    const char *dot = strrchr(path, '.');
    if (dot && strcmp(dot, ".npy") == 0) return cd_npy_load_f32(path, x, err);
    cd_image *img = NULL;
    cd_preprocess pre;
    cd_status st = cd_image_load(path, &img, err);
    if (st == CD_OK && (st = cd_model_preprocess(m, &pre)) == CD_OK)
        st = cd_image_to_tensor(img, &pre, x, err); /* the sidecar's preprocessing */
    cd_image_free(img);
    return st;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: classify MODEL INPUT [SAMPLES]\n"); return 2; }
    cd_error err = {0};
    cd_model *m = NULL; cd_mc_session *mc = NULL; cd_tensor *x = NULL, *s = NULL;
    cd_class_summary sum = {0};
    cd_mc_options o;
    cd_mc_options_default(&o);
    o.samples = argc > 3 ? atoi(argv[3]) : 30;
    int rc = 1;
    if (cd_model_load(argv[1], NULL, &m, &err) || load_input(m, argv[2], &x, &err) ||
        cd_mc_session_create(m, &o, &mc, &err) ||
        cd_mc_sample(mc, 1, (const cd_tensor *const *)&x, 1, NULL, &s, &err))
        goto done;
    /* s is (N=1, T, K); logits become probabilities before summarising. */
    int k = (int)cd_tensor_dims(s)[cd_tensor_ndim(s) - 1];
    if (strcmp(cd_model_output_kind(m), "probabilities") != 0 && cd_softmax_axis(s, -1, &err))
        goto done;
    if (cd_summarize_classification(cd_tensor_data(s), o.samples, k, 0.95, &sum, &err)) goto done;
    for (int r = 0; r < 3 && r < k; r++) {
        int best = -1; /* r-th largest mean probability, by repeated selection */
        for (int c = 0; c < k; c++)
            if (sum.mean[c] >= 0 && (best < 0 || sum.mean[c] > sum.mean[best])) best = c;
        const char *label = cd_model_label(m, best);
        printf("%d %-12s p=%.4f std=%.4f 95%%=[%.4f, %.4f]\n", best, label ? label : "?",
               sum.mean[best], sum.std[best], sum.lower[best], sum.upper[best]);
        sum.mean[best] = -1.0; /* taken */
    }
    printf("samples=%d entropy=%.4f mutual_information=%.4f agreement=%.3f\n", o.samples,
           sum.predictive_entropy, sum.mutual_information, sum.agreement);
    rc = 0;
done:
    if (rc) fail(&err);
    cd_class_summary_free(&sum); cd_tensor_free(s); cd_tensor_free(x);
    cd_mc_session_free(mc); cd_model_free(m);
    return rc;
}
