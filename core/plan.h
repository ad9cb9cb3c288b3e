/* Execution plans: a model specialised to concrete input shapes.
 *
 * Building a plan walks the nodes in topological order, runs each op's shape
 * rule, and folds every node whose inputs are all constants (initializers,
 * Constant nodes, Shape of a known shape, and anything computed from those —
 * the Shape->Gather->Unsqueeze->Concat->Reshape chains PyTorch exports). What
 * remains are the runtime steps. Plans are per session (not shared between
 * threads) and reused for every run with the same input shapes. */
#ifndef CANDOR_PLAN_H
#define CANDOR_PLAN_H

#include "graph.h"
#include "ops/op.h"

typedef enum cd_value_kind {
    CD_VALUE_UNUSED = 0,  /* not reached by the plan */
    CD_VALUE_CONST = 1,   /* known at plan time (initializer or folded) */
    CD_VALUE_INPUT = 2,   /* bound to a caller's tensor at run time */
    CD_VALUE_RUNTIME = 3  /* produced by a runtime step */
} cd_value_kind;

typedef struct cd_plan_options {
    /* Node indices that must never be folded or skipped (stochastic sites). */
    const bool *keep_node; /* n_nodes flags, may be NULL */
} cd_plan_options;

typedef struct cd_plan {
    const cd_model *model;
    int n_values;
    cd_tensor *vals;       /* per value: shape, and data once computed/bound */
    uint8_t *kind;         /* cd_value_kind per value */
    int n_steps;
    int *steps;            /* node indices run at run time, in order */
    size_t runtime_bytes;  /* bytes held by runtime activations */
} cd_plan;

/* Builds a plan for the given input tensors (n_inputs == model->n_inputs, in
 * graph-input order; only dtype and shape are read). *out owned by caller. */
cd_status cd_plan_build(const cd_model *m, const cd_tensor *const *inputs,
                        const cd_plan_options *opts, cd_plan **out, cd_error *err);
void cd_plan_free(cd_plan *p);
/* True if the plan was built for exactly these input dtypes/shapes. */
bool cd_plan_matches(const cd_plan *p, const cd_tensor *const *inputs);
/* Binds the inputs (borrowed for the duration of the run) and runs every step. */
cd_status cd_plan_run(cd_plan *p, const cd_tensor *const *inputs, cd_ctx *ctx);

/* Reverse-mode pass over the runtime steps after cd_plan_run. seeds: gradient
 * tensors for n_seeds values (shapes as the values). Returns in grads[i] a new
 * tensor (caller frees) with d(objective)/d(value wrt[i]). */
cd_status cd_plan_backward(cd_plan *p, int n_seeds, const int *seed_values,
                           const cd_tensor *const *seeds, int n_wrt, const int *wrt,
                           cd_tensor **grads, cd_ctx *ctx);

#endif
