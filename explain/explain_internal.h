/* Internals shared by the explain/ sources. */
#ifndef CANDOR_EXPLAIN_INTERNAL_H
#define CANDOR_EXPLAIN_INTERNAL_H

#include "candor/explain.h"
#include "core/internal.h"
#include "core/plan.h"
#include "uncertainty/stochastic.h"

#define EX_PLAN_CACHE 4

struct cd_explainer {
    const cd_model *model;
    int threads;
    int max_batch;
    bool force_loop;
    bool float64;                 /* exact mode: plans evaluated in float64 */
    bool batch_refused;           /* a batched plan failed to build once */
    cd_plan *plans[EX_PLAN_CACHE]; /* small cache keyed by input shape */
    int next_slot;
    cd_ctx ctx;
    /* MC dropout (explain/uncertain.c): the model is an MC session's derived
     * model, sites are kept out of folding/fusion, and every pass samples
     * the session's masks. In rows mode batch row r of a pass that starts
     * at row `start` of the caller's tensor is sample sample_base + start + r;
     * otherwise the whole pass is sample sample_base. */
    bool *keep_node;              /* owned, NULL without sites */
    bool has_stoch;
    cd_stochastic stoch;          /* tables borrowed from the MC session */
    uint64_t sample_base;
};

/* Turns e (created on an MC session's derived model) into a sampling
 * explainer; s is copied, its tables stay borrowed. */
cd_status ex_set_stochastic(cd_explainer *e, const cd_stochastic *s, cd_error *err);
/* Selects the samples of the following passes (see struct cd_explainer). */
void ex_select_samples(cd_explainer *e, uint64_t base, bool rows_are_samples);

/* Custom objective for ex_gradient_seeded: given the objective tensor y of
 * a pass over rows [start, start + y->dims[0]) of the caller's tensor, write
 * d(objective)/dy into seed (y's shape, zeroed). */
typedef cd_status (*ex_seed_fn)(void *ctx, const cd_tensor *y, int64_t start, cd_tensor *seed,
                                cd_error *err);
/* Input gradient (x's shape, per row) of the custom objective on the tensor
 * obj names (pre-softmax as for CD_OBJECTIVE_LOGIT). */
cd_status ex_gradient_seeded(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                             ex_seed_fn fn, void *ctx, cd_tensor **grad, cd_error *err);
/* Which of the s spatial positions of output y lie in obj's region (1 = in;
 * all when no region). *mask (s bytes) owned by the caller. */
cd_status ex_region_mask(const cd_objective *obj, const cd_tensor *y, size_t s, uint8_t **mask,
                         cd_error *err);
/* Forward value of the tensor obj names (pre-softmax), every row of x. */
cd_status ex_forward_value(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                           cd_tensor **y, cd_error *err);

/* Linear prefix (Integrated Gradients, explain/methods.c): when the tape plan
 * for x's shape starts with a Conv on the model input, with constant
 * weights, and nothing else reads the input, returns that node (else -1):
 * along a straight path its output is an affine function of the path
 * parameter, and the sum of the per-step input gradients is one transposed
 * convolution of the summed gradients at its output. */
int ex_linear_prefix(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                     cd_error *err);
/* Writes row `row` (n values) of the prefix node's output. */
typedef void (*ex_prefix_fill_fn)(void *ctx, int64_t row, float *z, size_t n);
/* Gradient of obj at the prefix node's output (its shape with x's rows),
 * running the rest of the plan on the rows fill writes; x only gives the
 * shape (its data is not read). */
cd_status ex_gradient_prefix(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                             int node, ex_prefix_fill_fn fill, void *ctx, cd_tensor **gz,
                             cd_error *err);

/* Plan for x's shape (tape: built with keep_activations) from the explainer's cache (built when missing). */
cd_status ex_get_plan(cd_explainer *e, const cd_tensor *x, bool tape, cd_plan **out,
                      cd_error *err);

/* Deterministic generator (splitmix64) for noise and masks. */
typedef struct ex_rng {
    uint64_t s;
} ex_rng;
uint64_t ex_rng_next(ex_rng *r);
double ex_rng_uniform(ex_rng *r); /* [0, 1) */
double ex_rng_normal(ex_rng *r);

/* New float32 tensor of x's shape with dim 0 replaced by rows. */
cd_status ex_batch_like(const cd_tensor *x, int64_t rows, cd_tensor **out, cd_error *err);
/* Elements per row (product of dims 1..). */
size_t ex_row_numel(const cd_tensor *x);

/* Objective on a batch of rows with a fixed target (>= 0) per row. */
cd_status ex_scores(cd_explainer *e, const cd_tensor *x, const cd_objective *obj, double *scores,
                    cd_error *err);

/* Separable Gaussian blur of each (row, channel) plane of an (N, C, H, W)
 * or (N, C, L) tensor, edge-clamped, kernel radius ceil(3 sigma). */
cd_status ex_blur(const cd_tensor *x, float sigma, cd_tensor **out, cd_error *err);

/* Bilinear resize of an (h, w) plane to (H, W) with half-pixel centres and
 * edge clamping (PyTorch interpolate, align_corners=False). */
void ex_resize_bilinear(const float *src, int h, int w, float *dst, int H, int W);

/* Methods (explain/methods.c, cam.c, perturb.c). x is batch 1, target >= 0. */
cd_status ex_gradient_methods(cd_explainer *e, const cd_tensor *x, const cd_explain_params *p,
                              cd_objective *obj, cd_explanation *out, cd_error *err);
cd_status ex_cam(cd_explainer *e, const cd_tensor *x, const cd_explain_params *p,
                 cd_objective *obj, cd_explanation *out, cd_error *err);
cd_status ex_occlusion(cd_explainer *e, const cd_tensor *x, const cd_explain_params *p,
                       cd_objective *obj, cd_explanation *out, cd_error *err);
cd_status ex_rise(cd_explainer *e, const cd_tensor *x, const cd_explain_params *p,
                  cd_objective *obj, cd_explanation *out, cd_error *err);

/* Gauss-Legendre nodes/weights on [0, 1] (n >= 1). */
void ex_gauss_legendre(int n, double *nodes, double *weights);

#endif
