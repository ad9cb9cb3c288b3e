/* mkdtemp is POSIX. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

float tu_uniform(uint64_t *state, float lo, float hi)
{
    double u = (double)(splitmix(state) >> 11) / 9007199254740992.0;
    return (float)(lo + (hi - lo) * u);
}

cd_tensor *tu_random(int ndim, const int64_t *dims, uint64_t seed, float lo, float hi)
{
    cd_tensor *t = NULL;
    if (cd_tensor_create(CD_FLOAT32, ndim, dims, &t, NULL) != CD_OK)
        return NULL;
    float *p = t->data;
    size_t n = cd_tensor_numel(t);
    for (size_t i = 0; i < n; i++)
        p[i] = tu_uniform(&seed, lo, hi);
    return t;
}

cd_tensor *tu_tensor_f32(int ndim, const int64_t *dims, const float *vals)
{
    cd_tensor *t = NULL;
    cd_tensor_from_data(CD_FLOAT32, ndim, dims, vals, &t, NULL);
    return t;
}

cd_tensor *tu_tensor_i64(int ndim, const int64_t *dims, const int64_t *vals)
{
    cd_tensor *t = NULL;
    cd_tensor_from_data(CD_INT64, ndim, dims, vals, &t, NULL);
    return t;
}

void tu_node_make(cd_node *n, const char *op, int opset, int nin, int nout)
{
    cd_error err;
    assert_int_equal(cd_node_init(n, op, opset, nin, nout, &err), CD_OK);
}

void tu_node_bind(cd_node *n)
{
    cd_error err;
    cd_status st = cd_node_bind(n, &err);
    if (st != CD_OK)
        fail_msg("bind failed: %s", err.message);
}

cd_status tu_run_node(cd_node *n, cd_tensor **in, cd_tensor **out, bool const_inputs,
                      cd_error *err)
{
    const cd_op_def *def = cd_op_get(n->op);
    if (!def)
        return cd_fail(err, CD_ERR_INTERNAL, "node not bound");
    cd_tensor shape_in[16];
    cd_tensor *in_view[16] = {0};
    for (int i = 0; i < n->n_inputs; i++) {
        if (!in[i])
            continue;
        shape_in[i] = *in[i];
        shape_in[i].owns_data = false;
        if (!const_inputs)
            shape_in[i].data = NULL;
        in_view[i] = &shape_in[i];
    }
    for (int j = 0; j < n->n_outputs; j++)
        out[j] = calloc(1, sizeof(cd_tensor));
    cd_status st = def->infer(n, in_view, out, err);
    if (st != CD_OK)
        goto fail;
    for (int j = 0; j < n->n_outputs; j++) {
        st = cd_tensor_ensure(out[j], err);
        if (st != CD_OK)
            goto fail;
    }
    cd_ctx ctx = {.err = err, .threads = 1};
    st = def->forward(n, in, out, &ctx);
    free(ctx.scratch);
    if (st == CD_OK)
        return CD_OK;
fail:
    for (int j = 0; j < n->n_outputs; j++) {
        cd_tensor_free(out[j]);
        out[j] = NULL;
    }
    return st;
}

static double weighted_sum(cd_tensor **out, cd_tensor **w, int n_out)
{
    double s = 0;
    for (int j = 0; j < n_out; j++) {
        if (!w[j])
            continue;
        const float *o = out[j]->data, *ww = w[j]->data;
        size_t n = cd_tensor_numel(out[j]);
        for (size_t i = 0; i < n; i++)
            s += (double)o[i] * ww[i];
    }
    return s;
}

static double objective(cd_node *n, cd_tensor **in, cd_tensor **w)
{
    cd_tensor *out[8] = {0};
    cd_error err;
    if (tu_run_node(n, in, out, true, &err) != CD_OK) {
        fprintf(stderr, "gradcheck forward failed: %s\n", err.message);
        return NAN;
    }
    double s = weighted_sum(out, w, n->n_outputs);
    for (int j = 0; j < n->n_outputs; j++)
        cd_tensor_free(out[j]);
    return s;
}

/* ---- float64 kernels (forward64/backward64), checked inside tu_gradcheck */

static cd_tensor *widen_or_view(const cd_tensor *t)
{
    cd_tensor *d = NULL;
    if (t->dtype == CD_FLOAT32) {
        if (cd_tensor_create(CD_FLOAT64, t->ndim, t->dims, &d, NULL) != CD_OK)
            fail_msg("out of memory");
        size_t n = cd_tensor_numel(t);
        for (size_t i = 0; i < n; i++)
            ((double *)d->data)[i] = ((const float *)t->data)[i];
        return d;
    }
    if (cd_tensor_clone(t, &d, NULL) != CD_OK)
        fail_msg("out of memory");
    return d;
}

/* Output tensors for forward64 shaped as the float32 run's (float32 ->
 * float64), filled with NaN. */
static void alloc_out64(const cd_node *n, cd_tensor **out32, cd_tensor **out64)
{
    for (int j = 0; j < n->n_outputs; j++) {
        out64[j] = NULL;
        if (!out32[j])
            continue;
        cd_dtype dt = out32[j]->dtype == CD_FLOAT32 ? CD_FLOAT64 : out32[j]->dtype;
        if (cd_tensor_create(dt, out32[j]->ndim, out32[j]->dims, &out64[j], NULL) != CD_OK)
            fail_msg("out of memory");
        /* Reused buffers are not zeroed: an element a kernel leaves unwritten
         * shows up as NaN. */
        size_t cnt = cd_tensor_numel(out64[j]);
        for (size_t i = 0; dt == CD_FLOAT64 && i < cnt; i++)
            ((double *)out64[j]->data)[i] = NAN;
    }
}

static double objective64(cd_node *n, cd_tensor **in64, cd_tensor **out32, cd_tensor **w64)
{
    const cd_op_def *def = cd_op_get(n->op);
    cd_tensor *out[8] = {0};
    cd_error err;
    alloc_out64(n, out32, out);
    cd_ctx ctx = {.err = &err, .threads = 1};
    double s = NAN;
    if (def->forward64(n, in64, out, &ctx) == CD_OK) {
        s = 0;
        for (int j = 0; j < n->n_outputs; j++) {
            if (!w64[j])
                continue;
            const double *o = out[j]->data, *ww = w64[j]->data;
            size_t cnt = cd_tensor_numel(out[j]);
            for (size_t i = 0; i < cnt; i++)
                s += o[i] * ww[i];
        }
    } else {
        fprintf(stderr, "gradcheck64: forward64 failed: %s\n", err.message);
    }
    free(ctx.scratch);
    for (int j = 0; j < n->n_outputs; j++)
        cd_tensor_free(out[j]);
    return s;
}

/* forward64 against the float32 forward (|a - b| <= 1e-5 (1 + max|b|):
 * float32 rounding, not a precision claim), then backward64 against
 * central differences taken in float64 on forward64 with step
 * h = 1e-6 max(1, |x|): |analytic - numeric| <= 1e-6 (max(|a|, |n|) + 1e-2 G),
 * G the largest |analytic| of that input (issue 6, acceptance 1's float64
 * form; the 1e-2 G floor absorbs the differences' own rounding,
 * ~1e-16 |L| / h). Ops without float64 kernels
 * return 0. */
static double gradcheck64(cd_node *n, cd_tensor **in, cd_tensor **out32, cd_tensor **w,
                          const bool *check)
{
    const cd_op_def *def = cd_op_get(n->op);
    if (!def->forward64)
        return 0;
    cd_tensor *in64[16] = {0}, *out64[8] = {0}, *w64[8] = {0}, *gin[16] = {0};
    cd_error err;
    double worst = 0;
    for (int i = 0; i < n->n_inputs; i++)
        if (in[i])
            in64[i] = widen_or_view(in[i]);
    alloc_out64(n, out32, out64);
    cd_ctx ctx = {.err = &err, .threads = 1};
    if (def->forward64(n, in64, out64, &ctx) != CD_OK) {
        fprintf(stderr, "gradcheck64: forward64 failed: %s\n", err.message);
        worst = INFINITY;
        goto done;
    }
    for (int j = 0; j < n->n_outputs; j++) {
        if (!out32[j])
            continue;
        size_t cnt = cd_tensor_numel(out32[j]);
        if (out32[j]->dtype != CD_FLOAT32) {
            if (memcmp(out32[j]->data, out64[j]->data, cnt * cd_dtype_size(out32[j]->dtype))) {
                fprintf(stderr, "gradcheck64: output %d (integer) differs from float32's\n", j);
                worst = INFINITY;
            }
            continue;
        }
        const float *b = out32[j]->data;
        const double *a = out64[j]->data;
        double mx = 0;
        for (size_t i = 0; i < cnt; i++)
            mx = fmax(mx, fabs((double)b[i]));
        for (size_t i = 0; i < cnt; i++) {
            double e = fabs(a[i] - b[i]) / (1e-5 * (1 + mx));
            if (!(e <= 1.0)) {
                fprintf(stderr, "gradcheck64: output %d element %zu float64 %.9g float32 %.9g\n",
                        j, i, a[i], (double)b[i]);
                worst = INFINITY;
                goto done;
            }
        }
        if (w[j])
            w64[j] = widen_or_view(w[j]);
    }
    if (!def->backward64)
        goto done;
    for (int i = 0; i < n->n_inputs; i++)
        if (check[i] && in[i] && in[i]->dtype == CD_FLOAT32 &&
            cd_tensor_create(CD_FLOAT64, in[i]->ndim, in[i]->dims, &gin[i], NULL) != CD_OK)
            fail_msg("out of memory");
    if (def->backward64(n, in64, out64, w64, gin, &ctx) != CD_OK) {
        fprintf(stderr, "gradcheck64: backward64 failed: %s\n", err.message);
        worst = INFINITY;
        goto done;
    }
    for (int i = 0; i < n->n_inputs; i++) {
        if (!gin[i])
            continue;
        double *x = in64[i]->data;
        const double *g = gin[i]->data;
        size_t cnt = cd_tensor_numel(in64[i]);
        double gmax = 0;
        for (size_t k = 0; k < cnt; k++)
            gmax = fmax(gmax, fabs(g[k]));
        for (size_t k = 0; k < cnt; k++) {
            double saved = x[k], h = 1e-6 * fmax(1.0, fabs(saved));
            x[k] = saved + h;
            double fp = objective64(n, in64, out32, w64);
            x[k] = saved - h;
            double fm = objective64(n, in64, out32, w64);
            x[k] = saved;
            double num = (fp - fm) / (2 * h), ana = g[k];
            double tol = 1e-6 * (fmax(fabs(ana), fabs(num)) + 1e-2 * gmax);
            double e = ana == num ? 0 : fabs(ana - num) / tol; /* 0 == 0 is exact */
            if (!(e <= worst))
                worst = isnan(e) ? INFINITY : fmax(worst, e);
            if (e > 1.0 && worst == e)
                fprintf(stderr, "gradcheck64: input %d element %zu analytic %.12g numeric %.12g\n",
                        i, k, ana, num);
        }
    }
done:
    free(ctx.scratch);
    for (int i = 0; i < 16; i++) {
        cd_tensor_free(in64[i]);
        cd_tensor_free(gin[i]);
    }
    for (int j = 0; j < 8; j++) {
        cd_tensor_free(out64[j]);
        cd_tensor_free(w64[j]);
    }
    return worst;
}

double tu_gradcheck(cd_node *n, cd_tensor **in, const bool *check, float eps, double atol,
                    double rtol)
{
    const cd_op_def *def = cd_op_get(n->op);
    cd_tensor *out[8] = {0}, *w[8] = {0}, *gin[16] = {0};
    cd_error err;
    double worst = 0;
    if (tu_run_node(n, in, out, true, &err) != CD_OK) {
        fprintf(stderr, "gradcheck: forward failed: %s\n", err.message);
        return INFINITY;
    }
    for (int j = 0; j < n->n_outputs; j++)
        if (out[j] && out[j]->dtype == CD_FLOAT32)
            w[j] = tu_random(out[j]->ndim, out[j]->dims, 1000 + (uint64_t)j, -1.f, 1.f);
    for (int i = 0; i < n->n_inputs; i++)
        if (check[i] && in[i])
            cd_tensor_create(CD_FLOAT32, in[i]->ndim, in[i]->dims, &gin[i], NULL);
    cd_ctx ctx = {.err = &err, .threads = 1};
    if (!def->backward || def->backward(n, in, out, w, gin, &ctx) != CD_OK) {
        fprintf(stderr, "gradcheck: backward failed: %s\n",
                def->backward ? err.message : "no backward");
        worst = INFINITY;
        goto done;
    }
    for (int i = 0; i < n->n_inputs; i++) {
        if (!gin[i])
            continue;
        float *x = in[i]->data;
        const float *g = gin[i]->data;
        size_t cnt = cd_tensor_numel(in[i]);
        for (size_t k = 0; k < cnt; k++) {
            float saved = x[k];
            x[k] = saved + eps;
            double fp = objective(n, in, w);
            x[k] = saved - eps;
            double fm = objective(n, in, w);
            x[k] = saved;
            double num = (fp - fm) / (2.0 * (double)eps);
            double ana = g[k];
            double tol = atol + rtol * fmax(fabs(ana), fabs(num));
            double e = fabs(ana - num) / tol;
            if (!(e <= worst))
                worst = isnan(e) ? INFINITY : fmax(worst, e);
            if (e > 1.0 && worst == e)
                fprintf(stderr, "gradcheck: input %d element %zu analytic %.6g numeric %.6g\n",
                        i, k, ana, num);
        }
    }
    /* The operator's float64 kernels, on the same node and inputs. */
    worst = fmax(worst, gradcheck64(n, in, out, w, check));
done:
    free(ctx.scratch);
    for (int j = 0; j < n->n_outputs; j++) {
        cd_tensor_free(out[j]);
        cd_tensor_free(w[j]);
    }
    for (int i = 0; i < n->n_inputs; i++)
        cd_tensor_free(gin[i]);
    return worst;
}

double tu_max_abs_diff(const cd_tensor *a, const cd_tensor *b)
{
    size_t n = cd_tensor_numel(a);
    assert_int_equal(n, cd_tensor_numel(b));
    const float *pa = a->data, *pb = b->data;
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)pa[i] - pb[i]);
        if (!(d <= m))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

/* The scratch folder's path; the tests run one group per process. */
static char g_scratch[256];

int tu_scratch_create(const char *prefix)
{
    snprintf(g_scratch, sizeof g_scratch, "/tmp/%s_XXXXXX", prefix);
    return mkdtemp(g_scratch) ? 0 : -1;
}

int tu_scratch_remove(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_scratch);
    return system(cmd) == 0 ? 0 : -1;
}

const char *tu_scratch_dir(void)
{
    return g_scratch;
}

const char *tu_scratch_path(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_scratch, name);
    return buf[k];
}

int tu_run_python(const char *code)
{
    const char *script = tu_scratch_path("script.py");
    FILE *fp = fopen(script, "w");
    assert_non_null(fp);
    fputs(code, fp);
    fclose(fp);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cd '%s' && /usr/bin/python3 '%s'", g_scratch, script);
    return system(cmd);
}
