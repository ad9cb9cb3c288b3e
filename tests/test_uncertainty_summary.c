/* Summaries of sampled predictions against NumPy (same samples saved as
 * .npy) and closed-form identities. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "candor/image.h"
#include "candor/uncertainty.h"

#define S 37
#define K 6

/* Random probability vectors: softmax of scaled uniforms (some peaked). */
static cd_tensor *random_probs(int n_rows, int k, uint64_t seed, float scale)
{
    int64_t d[2] = {n_rows, k};
    cd_tensor *t = tu_random(2, d, seed, -scale, scale);
    cd_error err;
    assert_int_equal(cd_softmax_axis(t, -1, &err), CD_OK);
    return t;
}

static void test_entropy_identity(void **state)
{
    CD_UNUSED(state);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        cd_tensor *p = random_probs(S, K, seed, (float)seed * 0.5f);
        cd_class_summary s;
        cd_error err;
        assert_int_equal(cd_summarize_classification(cd_tensor_cdata(p), S, K, 0.95, &s, &err),
                         CD_OK);
        assert_true(s.mutual_information >= 0.0);
        assert_true(fabs(s.predictive_entropy - (s.expected_entropy + s.mutual_information)) <=
                    1e-6);
        double total = 0;
        for (int c = 0; c < K; c++) {
            total += s.mean[c];
            assert_true(s.lower[c] <= s.mean[c] + 1e-12 && s.mean[c] <= s.upper[c] + 1e-12);
        }
        assert_true(fabs(total - 1.0) < 1e-6);
        cd_class_summary_free(&s);
        cd_tensor_free(p);
    }
}

static bool have_numpy(void)
{
    return system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
}

/* NumPy reference for one (S, K) sample matrix, written to ref.npy as
 * [mean K, std K, lo K, hi K, H, EH, MI, VR, agreement]. */
static const char *numpy_class_ref =
    "import numpy as np,sys\n"
    "p=np.load(sys.argv[1]).astype(np.float64); lv=float(sys.argv[3])\n"
    "m=p.mean(0); sd=p.std(0)\n"
    "lo=np.percentile(p,100*(1-lv)/2,axis=0); hi=np.percentile(p,100*(1+lv)/2,axis=0)\n"
    "H=lambda q: -np.sum(np.where(q>0,q*np.log(np.where(q>0,q,1)),0),axis=-1)\n"
    "h=H(m); eh=H(p).mean(); mi=max(h-eh,0.0)\n"
    "votes=np.bincount(p.argmax(1),minlength=p.shape[1])\n"
    "vr=1-votes.max()/p.shape[0]; ag=votes[m.argmax()]/p.shape[0]\n"
    "np.save(sys.argv[2],np.concatenate([m,sd,lo,hi,[h,eh,mi,vr,ag]]))\n";

static cd_tensor *run_numpy(const char *script, const char *in_path, const char *extra)
{
    char dir[] = "/tmp/cd_test_summaryXXXXXX";
    assert_non_null(mkdtemp(dir));
    char spath[256], out[256], cmd[1024];
    snprintf(spath, sizeof spath, "%s/ref.py", dir);
    snprintf(out, sizeof out, "%s/ref.npy", dir);
    FILE *f = fopen(spath, "w");
    assert_non_null(f);
    fputs(script, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s %s", spath, in_path, out, extra);
    assert_int_equal(system(cmd), 0);
    cd_tensor *r = NULL;
    cd_error err;
    assert_int_equal(cd_npy_load(out, &r, &err), CD_OK);
    remove(spath);
    remove(out);
    remove(dir);
    return r;
}

static void test_classification_vs_numpy(void **state)
{
    CD_UNUSED(state);
    if (!have_numpy())
        skip();
    const double levels[2] = {0.95, 0.8};
    for (int li = 0; li < 2; li++) {
        cd_tensor *p = random_probs(S, K, 100 + li, 3.0f);
        char in[] = "/tmp/cd_samplesXXXXXX.npy";
        int fd = mkstemps(in, 4);
        assert_true(fd >= 0);
        cd_error err;
        assert_int_equal(cd_npy_save(in, p, &err), CD_OK);
        char lv[32];
        snprintf(lv, sizeof lv, "%.17g", levels[li]);
        cd_tensor *ref = run_numpy(numpy_class_ref, in, lv);
        remove(in);
        const double *r = cd_tensor_cdata(ref);
        cd_class_summary s;
        assert_int_equal(cd_summarize_classification(cd_tensor_cdata(p), S, K, levels[li], &s,
                                                     &err),
                         CD_OK);
        for (int c = 0; c < K; c++) {
            assert_true(fabs(s.mean[c] - r[c]) < 1e-12);
            assert_true(fabs(s.std[c] - r[K + c]) < 1e-12);
            assert_true(fabs(s.lower[c] - r[2 * K + c]) < 1e-12);
            assert_true(fabs(s.upper[c] - r[3 * K + c]) < 1e-12);
        }
        const double *tail = r + 4 * K;
        assert_true(fabs(s.predictive_entropy - tail[0]) < 1e-12);
        assert_true(fabs(s.expected_entropy - tail[1]) < 1e-12);
        assert_true(fabs(s.mutual_information - tail[2]) < 1e-12);
        assert_true(fabs(s.variation_ratio - tail[3]) < 1e-12);
        assert_true(fabs(s.agreement - tail[4]) < 1e-12);
        cd_class_summary_free(&s);
        cd_tensor_free(ref);
        cd_tensor_free(p);
        close(fd);
    }
}

static const char *numpy_dense_ref =
    "import numpy as np,sys\n"
    "p=np.load(sys.argv[1]).astype(np.float64)\n"
    "m=p.mean(0)\n"
    "H=lambda q,ax: -np.sum(np.where(q>0,q*np.log(np.where(q>0,q,1)),0),axis=ax)\n"
    "h=H(m,0); eh=H(p,1).mean(0); mi=np.maximum(h-eh,0)\n"
    "w=m.argmax(0); sd=np.take_along_axis(p,w[None,None],1)[:,0].std(0)\n"
    "np.save(sys.argv[2],np.stack([h,eh,mi,sd,w]))\n";

static void test_dense_vs_numpy(void **state)
{
    CD_UNUSED(state);
    if (!have_numpy())
        skip();
    int64_t d[4] = {9, 4, 5, 7};
    cd_tensor *p = tu_random(4, d, 55, -3, 3);
    cd_error err;
    assert_int_equal(cd_softmax_axis(p, 1, &err), CD_OK);
    char in[] = "/tmp/cd_denseXXXXXX.npy";
    int fd = mkstemps(in, 4);
    assert_true(fd >= 0);
    assert_int_equal(cd_npy_save(in, p, &err), CD_OK);
    cd_tensor *ref = run_numpy(numpy_dense_ref, in, "");
    remove(in);
    close(fd);
    cd_dense_maps maps;
    assert_int_equal(cd_summarize_dense(p, &maps, &err), CD_OK);
    const double *r = cd_tensor_cdata(ref);
    size_t hw = 35;
    const float *got[4] = {cd_tensor_cdata(maps.entropy), cd_tensor_cdata(maps.expected_entropy),
                           cd_tensor_cdata(maps.mutual_information),
                           cd_tensor_cdata(maps.winning_std)};
    const int64_t *win = cd_tensor_cdata(maps.winning_class);
    for (size_t i = 0; i < hw; i++) {
        for (int k = 0; k < 4; k++)
            assert_true(fabs(got[k][i] - r[k * hw + i]) < 1e-6);
        assert_int_equal(win[i], (int64_t)r[4 * hw + i]);
    }
    cd_dense_maps_free(&maps);
    cd_tensor_free(ref);
    cd_tensor_free(p);
}

static void test_regression(void **state)
{
    CD_UNUSED(state);
    /* Φ^{-1}(0.975) = 1.959963984540054 (tables). */
    assert_true(fabs(cd_normal_quantile(0.975) - 1.959963984540054) < 1e-12);
    assert_true(fabs(cd_normal_quantile(0.5)) < 1e-14);
    float mu[4 * 2] = {1, 10, 2, 10, 3, 10, 6, 10};
    float lv[4 * 2] = {0, (float)log(4.0), 0, (float)log(4.0), 0, (float)log(4.0), 0,
                       (float)log(4.0)};
    cd_regression_summary s;
    cd_error err;
    assert_int_equal(cd_summarize_regression(mu, lv, 4, 2, 0.95, &s, &err), CD_OK);
    /* dim 0: μ* = 3, epistemic = mean((μ-3)^2) = (4+1+0+9)/4 = 3.5, aleatoric 1 */
    assert_true(fabs(s.mean[0] - 3.0) < 1e-12);
    assert_true(fabs(s.epistemic_var[0] - 3.5) < 1e-6);
    assert_true(fabs(s.aleatoric_var[0] - 1.0) < 1e-6);
    assert_true(fabs(s.std[0] - sqrt(4.5)) < 1e-6);
    assert_true(fabs(s.upper[0] - (3.0 + 1.959963984540054 * sqrt(4.5))) < 1e-6);
    /* dim 1: identical means, only the aleatoric part */
    assert_true(fabs(s.epistemic_var[1]) < 1e-9 && fabs(s.std[1] - 2.0) < 1e-6);
    cd_regression_summary_free(&s);
    assert_int_equal(cd_summarize_regression(mu, NULL, 4, 2, 0.95, &s, &err), CD_OK);
    assert_true(fabs(s.std[0] - sqrt(3.5)) < 1e-6);
    cd_regression_summary_free(&s);
    assert_int_equal(cd_summarize_regression(mu, NULL, 4, 2, 1.0, &s, &err),
                     CD_ERR_INVALID_ARGUMENT);
    assert_int_equal(cd_summarize_classification(mu, 0, 2, 0.9, &(cd_class_summary){0}, &err),
                     CD_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entropy_identity),
        cmocka_unit_test(test_classification_vs_numpy),
        cmocka_unit_test(test_dense_vs_numpy),
        cmocka_unit_test(test_regression),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
