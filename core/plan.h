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

/* Plans whose activations would exceed this are refused with CD_ERR_LIMIT
 * before anything is allocated (absurd shapes from hostile models), unless
 * the model was loaded with another cd_load_options.max_activation_bytes. */
#define CD_PLAN_MAX_ACTIVATION_BYTES ((size_t)256 << 30)
/* The cap for plans of model m, in bytes. */
uint64_t cd_plan_activation_cap(const cd_model *m);
/* CD_ERR_LIMIT naming what needs `bytes` when it exceeds m's cap. */
cd_status cd_plan_check_cap(const cd_model *m, uint64_t bytes, const char *what, cd_error *err);

typedef struct cd_plan_options {
    /* Node indices that must never be folded, skipped or fused (stochastic
     * sites). */
    const bool *keep_node; /* n_nodes flags, may be NULL */
    /* false (the default, and what opts == NULL means): the fast inference
     * plan. Conv nodes absorb a following BatchNormalization, residual Add
     * and activation; activations share one arena by liveness (buffers are
     * reused, element-wise and view ops run in place). After a run only the
     * graph outputs (and constants/inputs) have data in p->vals; every other
     * runtime value has its shape but data == NULL, and cd_plan_backward
     * refuses the plan.
     * true: every node runs on its own and every activation keeps its own
     * buffer in p->vals after a run — needed by cd_plan_backward (the tape),
     * by callers reading intermediate tensors, and by callers that edit
     * p->steps (MC dropout suffix plans). Conv still uses the fast kernels. */
    bool keep_activations;
} cd_plan_options;

struct cd_exec;
struct cd_plan64;
struct cd_conv_kernel;

typedef struct cd_plan {
    const cd_model *model;
    int n_values;
    cd_tensor *vals;       /* per value: shape, and data once computed/bound */
    uint8_t *kind;         /* cd_value_kind per value */
    int n_steps;
    int *steps;            /* node indices run at run time, in order */
    size_t runtime_bytes;  /* bytes held by runtime activations (the arena in fast mode) */
    size_t naive_bytes;    /* sum of all runtime activation sizes (no reuse) */
    size_t built_bytes;    /* allocated while building (folded values, the tape's) */
    bool keep_activations; /* as built (cd_plan_options) */
    int n_sliced_concats;  /* fast mode: Concat steps skipped (inputs written in place) */
    /* Private to plan.c: the executed program and its storage. */
    int n_exec;
    struct cd_exec *exec;          /* fast mode: fused steps in run order */
    struct cd_conv_kernel **node_conv; /* per node: specialised Conv or NULL */
    cd_tensor *rt;                 /* fast mode: per-value run-time views into the arena */
    void *arena;
    /* keep_activations mode, built by the first cd_plan_backward: per node,
     * a Conv's input gradient as a forward kernel (stride 1) and a 2-D
     * MaxPool's geometry (NULL = generic backward); a grow-only buffer. */
    bool no_fast_backward; /* set by tests: operators' generic backward only */
    bool bwd_ready;
    struct cd_conv_kernel **node_dconv;
    struct cd_win_geom **node_dpool;
    float *bwd_tmp;
    size_t bwd_tmp_floats;
    /* Gradient tensors released by one backward pass, reused by the next
     * (fresh large allocations cost a page fault per page). */
    cd_tensor *grad_cache[4];
    /* Float64 evaluation state (core/plan64.c), NULL until first used. */
    struct cd_plan64 *f64;
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

/* Reverse-mode pass over the runtime steps after cd_plan_run. Needs a plan
 * built with keep_activations (CD_ERR_INVALID_ARGUMENT otherwise). seeds: gradient
 * tensors for n_seeds values (shapes as the values). Returns in grads[i] a new
 * tensor (caller frees) with d(objective)/d(value wrt[i]). */
cd_status cd_plan_backward(cd_plan *p, int n_seeds, const int *seed_values,
                           const cd_tensor *const *seeds, int n_wrt, const int *wrt,
                           cd_tensor **grads, cd_ctx *ctx);

/* Shared by the float32 and float64 reverse passes (plan.c, plan64.c).
 * keep[v]: asked for (a wrt value); reaches[v]: v depends on an asked-for
 * value, so a gradient must be carried into it (n_values flags each). */
void cd_plan_mark_gradient_paths(const cd_plan *p, int n_wrt, const int *wrt, bool *keep,
                                 bool *reaches);
/* Moves g[wrt[w]] (all set) into grads_out[w]; a value asked for twice is
 * cloned for all but its last slot. On failure grads_out is all NULL. */
cd_status cd_plan_hand_over(cd_tensor **g, int n_wrt, const int *wrt, cd_tensor **grads_out,
                            cd_error *err);

#endif
