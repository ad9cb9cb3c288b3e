/* Deep ensembles: K members with one signature, each an MC session; their
 * samples are stacked member-major into K*T samples per input. Members run
 * one after another with the whole thread budget each: the kernels already
 * use every thread, and running members side by side would only multiply
 * the memory held at once. */
#include <stdlib.h>
#include <string.h>

#include "uncertainty/mc_internal.h"

struct cd_ensemble {
    int k, T;
    cd_mc_session **members;
};

int cd_ensemble_size(const cd_ensemble *e) { return e ? e->k : 0; }

void cd_ensemble_free(cd_ensemble *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->k; i++)
        cd_mc_session_free(e->members[i]);
    free(e->members);
    free(e);
}

static bool shapes_disagree(int na, const int64_t *a, int nb, const int64_t *b)
{
    if (na < 0 || nb < 0)
        return false; /* unknown rank: checked again on the first run */
    if (na != nb)
        return true;
    for (int d = 0; d < na; d++)
        if (a[d] >= 0 && b[d] >= 0 && a[d] != b[d])
            return true;
    return false;
}

/* Compares member m's declared signature with member 0's. */
static cd_status check_signature(const cd_model *a, const cd_model *b, int m, cd_error *err)
{
    if (cd_model_input_count(a) != cd_model_input_count(b) ||
        cd_model_output_count(a) != cd_model_output_count(b))
        return cd_fail(err, CD_ERR_SHAPE,
                       "ensemble member %d has %d input(s) and %d output(s), member 0 has %d and %d",
                       m, cd_model_input_count(b), cd_model_output_count(b),
                       cd_model_input_count(a), cd_model_output_count(a));
    char sa[128], sb[128];
    for (int side = 0; side < 2; side++) {
        int cnt = side ? cd_model_output_count(a) : cd_model_input_count(a);
        for (int i = 0; i < cnt; i++) {
            int na, nb;
            int64_t da[CD_MAX_DIMS], db[CD_MAX_DIMS];
            cd_status st = side ? cd_model_output_shape(a, i, &na, da, err)
                                : cd_model_input_shape(a, i, &na, da, err);
            if (st == CD_OK)
                st = side ? cd_model_output_shape(b, i, &nb, db, err)
                          : cd_model_input_shape(b, i, &nb, db, err);
            if (st != CD_OK)
                return st;
            bool dtype_bad = !side && cd_model_input_dtype(a, i) != cd_model_input_dtype(b, i);
            if (dtype_bad || shapes_disagree(na, da, nb, db))
                return cd_fail(err, CD_ERR_SHAPE,
                               "ensemble member %d: %s %d '%s' has shape %s, member 0 has %s", m,
                               side ? "output" : "input", i,
                               side ? cd_model_output_name(b, i) : cd_model_input_name(b, i),
                               cd_shape_str(nb, db, sb, sizeof sb),
                               cd_shape_str(na, da, sa, sizeof sa));
        }
    }
    return CD_OK;
}

cd_status cd_ensemble_create(int n_models, const cd_model *const *models,
                             const cd_mc_options *opts, cd_ensemble **out, cd_error *err)
{
    if (!out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_ensemble_create: out is NULL");
    *out = NULL;
    if (n_models < 1 || !models)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "an ensemble needs at least one model");
    for (int m = 0; m < n_models; m++) {
        if (!models[m])
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "ensemble member %d is NULL", m);
        cd_status st = check_signature(models[0], models[m], m, err);
        if (st != CD_OK)
            return st;
    }
    cd_ensemble *e = calloc(1, sizeof *e);
    if (!e || !(e->members = calloc((size_t)n_models, sizeof *e->members))) {
        free(e);
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    }
    e->T = opts ? opts->samples : 1;
    for (int m = 0; m < n_models; m++) {
        cd_status st = cd_mc_session_create(models[m], opts, &e->members[m], err);
        if (st != CD_OK) {
            if (n_models > 1)
                cd_error_prefix(err, st, "ensemble member %d", m);
            cd_ensemble_free(e);
            return st;
        }
        e->k++;
        mc_session_set_sample_base(e->members[m], (uint64_t)m * (uint64_t)e->T);
    }
    *out = e;
    return CD_OK;
}

/* Stacks member samples (N, T, ...) into (N, K*T, ...), member-major. */
static cd_status stack_members(cd_ensemble *e, cd_tensor **parts, cd_tensor **out, cd_error *err)
{
    const cd_tensor *p0 = parts[0];
    char s0[128], sm[128];
    for (int m = 1; m < e->k; m++)
        if (!cd_shape_equal(p0->ndim, p0->dims, parts[m]->ndim, parts[m]->dims))
            return cd_fail(err, CD_ERR_SHAPE,
                           "ensemble member %d produced samples of shape %s, member 0 %s", m,
                           cd_shape_str(parts[m]->ndim, parts[m]->dims, sm, sizeof sm),
                           cd_shape_str(p0->ndim, p0->dims, s0, sizeof s0));
    int64_t dims[CD_MAX_DIMS];
    memcpy(dims, p0->dims, sizeof dims);
    dims[1] = (int64_t)e->k * e->T;
    cd_status st = cd_tensor_create(CD_FLOAT32, p0->ndim, dims, out, err);
    if (st != CD_OK)
        return st;
    size_t block = cd_tensor_numel(p0) / (size_t)p0->dims[0]; /* one row of one member */
    float *dst = (*out)->data;
    for (int64_t r = 0; r < p0->dims[0]; r++)
        for (int m = 0; m < e->k; m++)
            memcpy(dst + ((size_t)r * e->k + m) * block,
                   (const float *)parts[m]->data + (size_t)r * block, block * sizeof(float));
    return CD_OK;
}

cd_status cd_ensemble_sample(cd_ensemble *e, int n_inputs, const cd_tensor *const *inputs,
                             int n_outputs, const int *output_indices, cd_tensor **samples,
                             cd_error *err)
{
    if (!e || !samples || n_outputs < 1)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_ensemble_sample: invalid arguments");
    for (int j = 0; j < n_outputs; j++)
        samples[j] = NULL;
    cd_tensor **parts = calloc((size_t)e->k * (size_t)n_outputs, sizeof *parts);
    cd_tensor **col = calloc((size_t)e->k, sizeof *col);
    cd_status st = parts && col ? CD_OK : cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    for (int m = 0; m < e->k && st == CD_OK; m++) {
        st = cd_mc_sample(e->members[m], n_inputs, inputs, n_outputs, output_indices,
                          parts + (size_t)m * n_outputs, err);
        if (st != CD_OK && e->k > 1)
            cd_error_prefix(err, st, "ensemble member %d", m);
    }
    for (int j = 0; j < n_outputs && st == CD_OK; j++) {
        for (int m = 0; m < e->k; m++)
            col[m] = parts[(size_t)m * n_outputs + j];
        st = stack_members(e, col, &samples[j], err);
    }
    for (size_t i = 0; parts && i < (size_t)e->k * (size_t)n_outputs; i++)
        cd_tensor_free(parts[i]);
    free(parts);
    free(col);
    if (st != CD_OK)
        for (int j = 0; j < n_outputs; j++) {
            cd_tensor_free(samples[j]);
            samples[j] = NULL;
        }
    return st;
}
