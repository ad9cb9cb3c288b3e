/* Float64 evaluation of an execution plan (the exact-gradient mode).
 *
 * A float32 network has a gradient that is discontinuous at every ReLU,
 * Clip and MaxPool decision; where a pre-activation lies within float32
 * rounding of its kink, two float32 engines (or float32 and the exact
 * value) may take different branches and their gradients then differ by
 * that unit's whole contribution. This mode evaluates the same plan with
 * every float tensor widened to float64 (weights are the model's float32
 * values, exactly), forward and reverse, through each operator's
 * forward64/backward64 kernels, so its branch decisions and gradients are
 * those of float64 arithmetic (docs/explain.md, "Precision").
 *
 * Needs a plan built with keep_activations (node-by-node steps). The
 * float64 values live beside the plan; after cd_plan_run64 the plan's own
 * float32 buffers hold the float64 values rounded to float32, so callers
 * that read p->vals see the same (rounded) numbers. */
#ifndef CANDOR_PLAN64_H
#define CANDOR_PLAN64_H

#include "plan.h"

/* Runs every step in float64. inputs: float32 (or integer) tensors as for
 * cd_plan_run. Fails with CD_ERR_UNSUPPORTED naming the node when an
 * operator has no float64 kernel. */
cd_status cd_plan_run64(cd_plan *p, const cd_tensor *const *inputs, cd_ctx *ctx);

/* Value v after cd_plan_run64: float64 for values that are float32 in the
 * plan, unchanged for integer ones; NULL before a run. Borrowed. */
const cd_tensor *cd_plan_value64(const cd_plan *p, int v);

/* Reverse pass in float64 after cd_plan_run64, as cd_plan_backward: seeds
 * (float64 or float32, the values' shapes), and grads[i] receives a new
 * float64 tensor (caller frees) with d(objective)/d(value wrt[i]). */
cd_status cd_plan_backward64(cd_plan *p, int n_seeds, const int *seed_values,
                             const cd_tensor *const *seeds, int n_wrt, const int *wrt,
                             cd_tensor **grads, cd_ctx *ctx);

/* Frees the float64 state (called by cd_plan_free). */
void cd_plan64_free(cd_plan *p);

/* New float64 tensor with t's shape and values (float32 or float64 t). */
cd_status cd_tensor_widen(const cd_tensor *t, cd_tensor **out, cd_error *err);
/* New float32 tensor with t's shape and values rounded (float64 t). */
cd_status cd_tensor_narrow(const cd_tensor *t, cd_tensor **out, cd_error *err);

#endif
