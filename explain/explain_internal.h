/* Internals shared by the explain/ sources. */
#ifndef CANDOR_EXPLAIN_INTERNAL_H
#define CANDOR_EXPLAIN_INTERNAL_H

#include "candor/explain.h"
#include "core/internal.h"
#include "core/plan.h"

#define EX_PLAN_CACHE 4

struct cd_explainer {
    const cd_model *model;
    int threads;
    int max_batch;
    bool force_loop;
    bool batch_refused;           /* a batched plan failed to build once */
    cd_plan *plans[EX_PLAN_CACHE]; /* small cache keyed by input shape */
    int next_slot;
    cd_ctx ctx;
};

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
