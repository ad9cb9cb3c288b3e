/* Sessions: per-thread execution state over a shared immutable model. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel.h"
#include "plan.h"
#include "session.h"

cd_status cd_session_create(const cd_model *model, const cd_session_options *opts,
                            cd_session **out, cd_error *err)
{
    if (!out)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_session_create: out is NULL");
    *out = NULL;
    if (!model)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_session_create: model is NULL");
    cd_session *s = calloc(1, sizeof *s);
    if (!s)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    s->model = model;
    s->threads = opts && opts->threads > 0 ? opts->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (s->threads < 1)
        s->threads = 1;
    *out = s;
    return CD_OK;
}

void cd_session_free(cd_session *s)
{
    if (!s)
        return;
    cd_plan_free(s->plan);
    cd_ctx_release(&s->ctx);
    free(s);
}

/* Orders the caller's inputs as the graph inputs. */
static cd_status order_inputs(const cd_model *m, int n_inputs, const char *const *names,
                              const cd_tensor *const *inputs, const cd_tensor **ordered,
                              cd_error *err)
{
    if (n_inputs != m->n_inputs)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has %d input(s), %d given",
                       m->n_inputs, n_inputs);
    for (int i = 0; i < m->n_inputs; i++)
        ordered[i] = NULL;
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i])
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "input %d is NULL", i);
        int slot = i;
        if (names && names[i]) {
            slot = -1;
            for (int k = 0; k < m->n_inputs; k++)
                if (strcmp(m->values[m->inputs[k]].name, names[i]) == 0)
                    slot = k;
            if (slot < 0)
                return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has no input named '%s'",
                               names[i]);
        }
        if (ordered[slot])
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "input '%s' given twice",
                           m->values[m->inputs[slot]].name);
        ordered[slot] = inputs[i];
    }
    return CD_OK;
}

cd_status cd_session_prepare(cd_session *s, const cd_tensor *const *ordered,
                             const cd_plan_options *opts, cd_error *err)
{
    if (s->plan && !opts && !s->plan->keep_activations && cd_plan_matches(s->plan, ordered))
        return CD_OK;
    cd_plan_free(s->plan);
    s->plan = NULL;
    return cd_plan_build(s->model, ordered, opts, &s->plan, err);
}

static cd_status collect_outputs(cd_session *s, int n_outputs, const char *const *names,
                                 cd_tensor **outputs, cd_error *err)
{
    const cd_model *m = s->model;
    for (int j = 0; j < n_outputs; j++) {
        int v;
        if (names && names[j]) {
            v = cd_model_find_value(m, names[j]);
            if (v < 0)
                return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has no tensor named '%s'",
                               names[j]);
        } else {
            if (j >= m->n_outputs)
                return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has only %d output(s)",
                               m->n_outputs);
            v = m->outputs[j];
        }
        const cd_tensor *t = &s->plan->vals[v];
        if (s->plan->kind[v] == CD_VALUE_UNUSED || (!t->data && cd_tensor_numel(t) > 0))
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "tensor '%s' is not computed by the graph",
                           m->values[v].name);
        cd_status st = cd_tensor_clone(&s->plan->vals[v], &outputs[j], err);
        if (st != CD_OK)
            return st;
    }
    return CD_OK;
}

/* Intermediate tensors only survive a run in a plan that keeps activations;
 * graph outputs survive in the fast plan too. Also validates the names. */
static cd_status needs_intermediates(const cd_model *m, int n_outputs, const char *const *names,
                                     bool *keep, cd_error *err)
{
    *keep = false;
    for (int j = 0; names && j < n_outputs; j++) {
        if (!names[j])
            continue;
        int v = cd_model_find_value(m, names[j]);
        if (v < 0)
            return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "model has no tensor named '%s'",
                           names[j]);
        bool is_output = false;
        for (int o = 0; o < m->n_outputs; o++)
            is_output = is_output || m->outputs[o] == v;
        if (!is_output)
            *keep = true;
    }
    return CD_OK;
}

/* Reuses the cached plan when it fits the inputs and the mode. */
static cd_status prepare_for(cd_session *s, const cd_tensor *const *ordered, bool keep,
                             cd_error *err)
{
    if (s->plan && s->plan->keep_activations == keep && cd_plan_matches(s->plan, ordered))
        return CD_OK;
    if (!keep)
        return cd_session_prepare(s, ordered, NULL, err);
    cd_plan_options opts = {.keep_activations = true};
    return cd_session_prepare(s, ordered, &opts, err);
}

cd_status cd_session_run(cd_session *s, int n_inputs, const char *const *input_names,
                         const cd_tensor *const *inputs, int n_outputs,
                         const char *const *output_names, cd_tensor **outputs, cd_error *err)
{
    if (!s || (n_inputs > 0 && !inputs) || (n_outputs > 0 && !outputs) || n_inputs < 0 ||
        n_outputs < 0)
        return cd_fail(err, CD_ERR_INVALID_ARGUMENT, "cd_session_run: invalid arguments");
    for (int j = 0; j < n_outputs; j++)
        outputs[j] = NULL;
    const cd_model *m = s->model;
    const cd_tensor **ordered = calloc((size_t)m->n_inputs + 1, sizeof *ordered);
    if (!ordered)
        return cd_fail(err, CD_ERR_OUT_OF_MEMORY, "out of memory");
    cd_status st = order_inputs(m, n_inputs, input_names, inputs, ordered, err);
    bool keep = false;
    if (st == CD_OK)
        st = needs_intermediates(m, n_outputs, output_names, &keep, err);
    if (st == CD_OK)
        st = prepare_for(s, ordered, keep, err);
    if (st == CD_OK) {
        s->ctx.err = err;
        s->ctx.threads = s->threads;
        st = cd_plan_run(s->plan, ordered, &s->ctx);
    }
    if (st == CD_OK)
        st = collect_outputs(s, n_outputs, output_names, outputs, err);
    free(ordered);
    if (st != CD_OK)
        for (int j = 0; j < n_outputs; j++) {
            cd_tensor_free(outputs[j]);
            outputs[j] = NULL;
        }
    return st;
}
