/* candor — explanations: gradients through whole models, saliency methods,
 * faithfulness metrics and heatmap rendering.
 *
 * Gradients run the model's reverse pass over the execution plan (every
 * activation stays in the plan, so the plan is the tape). Many samples
 * (SmoothGrad noise, IG steps, occlusion windows, RISE masks) go through
 * the model as one batch of up to max_batch rows; a model whose graph
 * cannot take a larger batch (a Reshape to a constant batch of 1, say) is
 * run one row at a time instead, with identical results.
 *
 * Exact definitions follow docs/explain.md. Ownership: every tensor returned
 * is owned by the caller (cd_tensor_free); an explainer borrows its model.
 * Thread safety: one explainer per thread, any number per model. */
#ifndef CANDOR_EXPLAIN_H
#define CANDOR_EXPLAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "image.h"
#include "model.h"
#include "tensor.h"
#include "uncertainty.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ objective */

/* The scalar whose gradient is taken, per batch row b. For an output of
 * shape (N, K) with logits z_b:
 *   LOGIT     z_b[c]              (the pre-softmax score; when the output is
 *                                  produced by a Softmax node its input is
 *                                  used, so this is always pre-softmax)
 *   PROB      softmax(z_b)[c]
 *   LOG_PROB  log softmax(z_b)[c]
 *   ENTROPY   -sum_k p_k ln p_k of softmax(z_b) (target unused)
 *   SUM       sum of every element of row b (regression heads)
 * For outputs with more axes, (N, K, S1, ...), LOGIT is the sum of
 * z_b[c, s] over the region (every position when no region is given);
 * the other kinds need a 2-D output. The objective of a batch is the sum
 * of its rows' objectives, so row b's input gradient is the gradient of
 * row b's objective. */
typedef enum cd_objective_kind {
    CD_OBJECTIVE_LOGIT = 0,
    CD_OBJECTIVE_PROB = 1,
    CD_OBJECTIVE_LOG_PROB = 2,
    CD_OBJECTIVE_ENTROPY = 3,
    CD_OBJECTIVE_SUM = 4
} cd_objective_kind;

typedef struct cd_objective {
    cd_objective_kind kind;
    int target;         /* class index; -1 = each row's argmax */
    const char *output; /* tensor name; NULL = the model's first output */
    /* Optional region for outputs with spatial axes: [lo, hi) per spatial
     * axis; region_ndim = 0 means everything. */
    int region_ndim;
    int64_t region_lo[CD_MAX_DIMS - 2];
    int64_t region_hi[CD_MAX_DIMS - 2];
} cd_objective;

/* Pre-softmax score of the argmax class of the model's first output. */
CD_API void cd_objective_default(cd_objective *o);

/* ------------------------------------------------------------ explainer */

typedef struct cd_explainer cd_explainer;

typedef struct cd_explain_options {
    int threads;    /* 0 = all cores */
    int max_batch;  /* rows per pass, default 8 */
    bool force_loop; /* never batch (testing the fallback) */
    /* Exact mode: every pass (forward, objective, backward) is evaluated in
     * float64 on the model's float32 weights, so ReLU/Clip/MaxPool
     * decisions and gradients are those of float64 arithmetic rather than
     * float32's (which can take the other branch at a pre-activation
     * within rounding of its kink). Results are returned as float32
     * tensors (rounded once). Slower: a plain float64 kernel per operator,
     * BLAS dgemm for Conv/Gemm/MatMul. Custom seed functions (MC entropy
     * and mutual information) see the output rounded to float32. */
    bool float64;
} cd_explain_options;

/* The model must have exactly one float32 input. *out owned by caller. */
CD_API cd_status cd_explainer_create(const cd_model *model, const cd_explain_options *opts,
                                     cd_explainer **out, cd_error *err);
CD_API void cd_explainer_free(cd_explainer *e);

/* Objective value per row of x (scores: N values) and the class used per
 * row (targets: N values, may be NULL). */
CD_API cd_status cd_explain_scores(cd_explainer *e, const cd_tensor *x, const cd_objective *obj,
                                   double *scores, int *targets, cd_error *err);

/* Gradient of the objective summed over the rows of x with respect to the
 * tensors named in wrt (a NULL name = the model input). grads[i] receives
 * a tensor of that tensor's shape; values[i] (when values is non-NULL) its
 * forward value; scores (N values, may be NULL) the per-row objective.
 * An unknown name fails with CD_ERR_INVALID_ARGUMENT and lists candidates. */
CD_API cd_status cd_explain_gradient(cd_explainer *e, const cd_tensor *x,
                                     const cd_objective *obj, int n_wrt,
                                     const char *const *wrt, cd_tensor **grads,
                                     cd_tensor **values, double *scores, cd_error *err);

/* ------------------------------------------------------------ methods */

typedef enum cd_explain_method {
    CD_EXPLAIN_GRADIENT = 0,
    CD_EXPLAIN_GRADXINPUT,
    CD_EXPLAIN_SMOOTHGRAD,
    CD_EXPLAIN_IG,
    CD_EXPLAIN_GRADCAM,
    CD_EXPLAIN_GRADCAM_PP,
    CD_EXPLAIN_OCCLUSION,
    CD_EXPLAIN_RISE
} cd_explain_method;

typedef enum cd_smoothgrad_form {
    CD_SMOOTHGRAD_MEAN = 0,    /* (1/n) sum g_i */
    CD_SMOOTHGRAD_SQUARED = 1, /* (1/n) sum g_i^2 */
    CD_SMOOTHGRAD_VARGRAD = 2  /* (1/n) sum (g_i - mean)^2 */
} cd_smoothgrad_form;

typedef enum cd_ig_rule {
    CD_IG_RIEMANN_MIDDLE = 0,
    CD_IG_GAUSS_LEGENDRE = 1
} cd_ig_rule;

typedef enum cd_baseline_kind {
    CD_BASELINE_BLACK = 0,  /* all zeros in input-tensor space */
    CD_BASELINE_BLUR = 1,   /* Gaussian blur of x (blur_sigma pixels) */
    CD_BASELINE_CUSTOM = 2  /* baseline tensor given by the caller */
} cd_baseline_kind;

typedef struct cd_explain_params {
    cd_explain_method method;
    cd_objective objective;  /* target -1 = argmax of x */
    uint64_t seed;           /* SmoothGrad noise, RISE masks */
    /* SmoothGrad */
    int samples;             /* default 25 */
    float noise_level;       /* s in sigma = s (max x - min x), default 0.15 */
    cd_smoothgrad_form smoothgrad_form;
    /* Integrated Gradients */
    int steps;               /* default 32 */
    cd_ig_rule ig_rule;      /* default Gauss-Legendre */
    cd_baseline_kind baseline;
    const cd_tensor *baseline_tensor; /* CUSTOM: shape of x */
    float blur_sigma;        /* BLUR baseline, default 5 pixels */
    /* Grad-CAM / Grad-CAM++ */
    const char *layer;       /* NULL = automatic (see docs/explain.md) */
    /* Occlusion */
    int window;              /* default 16 (spatial size, square) */
    int stride;              /* default 8 */
    float occlusion_value;   /* baseline value, default 0 */
    /* RISE */
    int rise_masks;          /* N, default 4000 */
    int rise_grid;           /* s, default 7 */
    float rise_p;            /* default 0.5 */
} cd_explain_params;

CD_API void cd_explain_params_default(cd_explain_params *p, cd_explain_method method);
/* "gradient", "gradxinput", "smoothgrad", "ig", "gradcam", "gradcam++",
 * "occlusion", "rise"; parse returns -1 for an unknown name. */
CD_API const char *cd_explain_method_name(cd_explain_method m);
CD_API int cd_explain_method_parse(const char *name);

typedef struct cd_explanation {
    /* Raw signed map. Gradient-type methods (gradient, gradxinput,
     * smoothgrad, ig): the input's shape. Grad-CAM, occlusion, RISE:
     * (1, 1, H, W) for an (1, C, H, W) input (CAMs normalised to [0, 1]). */
    cd_tensor *map;
    int target;           /* class explained */
    double score;         /* objective at x */
    /* Integrated Gradients only */
    double baseline_score;     /* F(x') */
    double completeness_delta; /* sum IG - (F(x) - F(x')) */
    /* Grad-CAM only: the layer used (owned by the model) */
    const char *layer;
    int passes;           /* forward(+backward) batches run */
} cd_explanation;

/* Explains the single example x (batch 1). out->map is owned by the caller
 * (cd_explanation_free). */
CD_API cd_status cd_explain(cd_explainer *e, const cd_tensor *x, const cd_explain_params *p,
                            cd_explanation *out, cd_error *err);
CD_API void cd_explanation_free(cd_explanation *ex);

/* Name of the tensor Grad-CAM uses by default: the last (N, C, H, W) Conv
 * output with H*W > 1, followed forward through the chain of shape-keeping
 * element-wise nodes (activations, BatchNormalization, Add/Sub/Mul/Div,
 * Dropout, Identity) that is its only consumer. Owned by the model. */
CD_API cd_status cd_explain_default_layer(cd_explainer *e, const cd_tensor *x,
                                          const char **name, cd_error *err);

/* Reduces a (1, C, H, W) map to an (H, W) saliency for ranking and display:
 * sum_c |a_c| when absolute (gradient-type maps), sum_c a_c otherwise (CAM,
 * occlusion and RISE maps have C = 1 and are kept as they are). A (1, C, L)
 * map becomes (1, L). *out is a new tensor. */
CD_API cd_status cd_explain_saliency_2d(const cd_tensor *map, bool absolute, cd_tensor **out,
                                        cd_error *err);

/* ------------------------------------------------------------ uncertainty */

/* Explanations under MC dropout and/or over a deep ensemble. Each of the
 * n_models members is sampled T = mc->samples times with mc's sites (the
 * same sites, masks and sample numbering as cd_mc_sample/cd_ensemble_sample:
 * member m uses sample indices m*T .. m*T+T-1). mc == NULL: every member is
 * run once, deterministically. Models are borrowed. *out owned by caller. */
typedef struct cd_explain_mc cd_explain_mc;
CD_API cd_status cd_explain_mc_create(int n_models, const cd_model *const *models,
                                      const cd_mc_options *mc, const cd_explain_options *eo,
                                      cd_explain_mc **out, cd_error *err);
CD_API void cd_explain_mc_free(cd_explain_mc *u);
/* S = members x T. */
CD_API int cd_explain_mc_count(const cd_explain_mc *u);

typedef struct cd_mc_explanation {
    int n_samples;       /* S */
    int target;          /* class explained (see cd_explain_mc_run) */
    cd_tensor *samples;  /* (S, map dims 1..): the method's map for each sample,
                            each computed with that sample's dropout masks */
    cd_tensor *mean;     /* map shape: mean over the S samples */
    cd_tensor *std;      /* map shape: population std (divisor S) */
    double *scores;      /* S objective values (the method's objective) */
    /* Saliency of uncertainty (input's shape; NULL for SUM objectives):
     * d H[p̄]/dx and d MI/dx with p̄ the mean of the S sampled softmax
     * vectors (per position and summed over the region for dense outputs).
     * The gradient flows through all S samples, each with its own masks. */
    cd_tensor *entropy_saliency;
    cd_tensor *mi_saliency;
    double predictive_entropy; /* H[p̄] (summed over the region) */
    double expected_entropy;   /* (1/S) sum_s H[p_s] */
    double mutual_information; /* predictive - expected (not clamped) */
    const char *layer;         /* Grad-CAM layer used */
} cd_mc_explanation;

/* Explains the single example x (batch 1) with method p under every sample.
 * The target is p->objective.target when >= 0, otherwise the argmax of p̄
 * (dense outputs: of p̄ summed over the region). */
CD_API cd_status cd_explain_mc_run(cd_explain_mc *u, const cd_tensor *x,
                                   const cd_explain_params *p, cd_mc_explanation *out,
                                   cd_error *err);
CD_API void cd_mc_explanation_free(cd_mc_explanation *ex);

/* ------------------------------------------------------------ sanity check */

/* Model-randomisation sanity check (Adebayo et al. 2018, cascading from the
 * top): the weights of the last `layers` parameterised nodes (nodes with at
 * least one float32 initializer input; every such input is replaced) are
 * redrawn from N(0, s^2), s the population std of the original tensor (a
 * tensor with s = 0 keeps scale 0.01), from a splitmix64 stream seeded with
 * seed. The model is not modified: a copy with new initializers is used. */
typedef struct cd_sanity_result {
    int n_layers;          /* nodes randomised (fewer when the model has fewer) */
    char *layers;          /* their names, comma-separated, last node first (owned) */
    double spearman;       /* rank correlation of the two 2-D saliencies (average ranks for ties) */
    cd_tensor *random_map; /* raw map of the randomised model (owned) */
} cd_sanity_result;

/* Explains x with p (its target fixed to ex->target) on the randomised copy
 * and compares cd_explain_saliency_2d of both maps (absolute for
 * gradient-type methods). ex is the explanation of the original model. */
CD_API cd_status cd_explain_sanity(const cd_model *model, const cd_explain_options *eo,
                                   const cd_tensor *x, const cd_explain_params *p,
                                   const cd_explanation *ex, int layers, uint64_t seed,
                                   cd_sanity_result *out, cd_error *err);
CD_API void cd_sanity_result_free(cd_sanity_result *r);
/* Spearman rank correlation of two float arrays of n values (average ranks
 * for ties; NaN when either is constant). */
CD_API double cd_spearman(const float *a, const float *b, size_t n);

/* ------------------------------------------------------------ faithfulness */

typedef struct cd_faithfulness_params {
    int step;               /* pixels changed per step (all channels); 0 = ceil(HW/50) */
    float deletion_value;   /* deletion baseline value, default 0 */
    float blur_sigma;       /* insertion start = blur of x, default 5 pixels */
    bool output_is_probability; /* the output is already softmaxed */
    /* Score recorded along the curves: NULL = the softmax probability of the
     * target (Petsiuk et al.); otherwise this objective with its target set
     * to the explained class (e.g. a region sum for segmentation). */
    const cd_objective *objective;
} cd_faithfulness_params;

CD_API void cd_faithfulness_params_default(cd_faithfulness_params *p);

typedef struct cd_faithfulness {
    int n_steps;            /* curves have n_steps + 1 points */
    int step;
    double *deletion;       /* score (see cd_faithfulness_params.objective) */
    double *insertion;
    double deletion_auc;    /* (sum s - s_0/2 - s_n/2) / n_steps */
    double insertion_auc;
} cd_faithfulness;

/* Deletion and insertion curves (Petsiuk et al. 2018) for the (H, W)
 * saliency (from cd_explain_saliency_2d) and class target of x. */
CD_API cd_status cd_explain_faithfulness(cd_explainer *e, const cd_tensor *x,
                                         const cd_tensor *saliency, int target,
                                         const cd_faithfulness_params *p,
                                         cd_faithfulness *out, cd_error *err);
CD_API void cd_faithfulness_free(cd_faithfulness *f);

/* ------------------------------------------------------------ rendering */

/* Colours an (H, W) map with viridis after min-max scaling to [0, 1] and
 * adds a scale bar (a vertical viridis ramp, bottom = min, top = max) on the
 * right. *out is a new RGB image owned by the caller. */
CD_API cd_status cd_explain_render_heatmap(const cd_tensor *map2d, bool scale_bar,
                                           cd_image **out, cd_error *err);
/* Blends the coloured map over base (RGB or gray of the map's size):
 * pixel = (1 - alpha) base + alpha colour. */
CD_API cd_status cd_explain_render_overlay(const cd_tensor *map2d, const cd_image *base,
                                           float alpha, cd_image **out, cd_error *err);
/* Viridis colour of t in [0, 1] (clamped) as 0..255 RGB. */
CD_API void cd_explain_colormap(float t, float rgb[3]);

/* ------------------------------------------------------------ feature maps,
 * activation maximisation, adversarial robustness (docs/interpretability.md) */

/* Valid model-input range of each of the first `channels` input channels
 * implied by the model's preprocessing (cd_model_preprocess): the 8-bit
 * pixel range [0, 255], divided by scale (when scale > 0 and != 1), then
 * (v - mean[c]) / std[c]. Gray inputs use mean[0]/std[0]. lo and hi receive
 * `channels` values each. Attacks and activation maximisation clip to it so
 * that every result is an image the preprocessing could have produced. */
CD_API cd_status cd_explain_input_range(const cd_model *model, int channels, float *lo,
                                        float *hi, cd_error *err);

/* The activations of one layer for one example and its most active channels. */
typedef struct cd_feature_maps {
    cd_tensor *tensor;  /* the layer's value, exactly what cd_session_run returns for
                           that name: (1, C, ...) */
    int n_channels;     /* C */
    int n_top;          /* channels ranked (min(top, C)) */
    int *channels;      /* n_top indices, highest mean activation first (ties: lower index) */
    double *means;      /* their mean over the spatial positions */
    float lo, hi;       /* shared colour range: min and max over the ranked channels */
    int height, width;  /* spatial plane drawn per channel (H, W; (1, L) for 3-D, (1, 1) for 2-D) */
} cd_feature_maps;

/* Runs the model on x (batch 1) through a plain session (threads: 0 = all
 * cores) and ranks the channels (axis 1) of the tensor named layer by their
 * mean activation; top <= 0 ranks every channel. An unknown layer fails
 * with CD_ERR_INVALID_ARGUMENT. out owns its arrays (cd_feature_maps_free). */
CD_API cd_status cd_feature_maps_compute(const cd_model *model, const cd_tensor *x,
                                         const char *layer, int top, int threads,
                                         cd_feature_maps *out, cd_error *err);
/* Grid image of the ranked channels: ceil(sqrt(n)) columns, each plane
 * upscaled (nearest) to at least min_cell pixels (0 = 64), viridis on the
 * shared range [lo, hi], the channel index written above each cell, and a
 * scale bar labelled with hi (top) and lo (bottom) on the right. */
CD_API cd_status cd_feature_maps_render(const cd_feature_maps *fm, int min_cell, cd_image **out,
                                        cd_error *err);
CD_API void cd_feature_maps_free(cd_feature_maps *fm);

/* Activation maximisation by gradient ascent on the input (Erhan et al.
 * 2009; regularisers after Yosinski et al. 2015). Objective: the
 * pre-softmax score of class `target` (layer NULL) or the mean over
 * positions of channel `channel` of the tensor `layer`. Start: seeded
 * N(0, init_std^2) noise in model-input space (0 = the dataset mean after
 * normalisation). Each step: roll the image by a random shift in
 * [-jitter, jitter] pixels per axis (circularly), take the gradient there
 * and roll it back; x += lr * g / rms(g) (a normalised step, so lr is in
 * input units); x *= (1 - l2_decay) (decay towards 0); every blur_every
 * steps a Gaussian blur of sigma blur_sigma; clip to cd_explain_input_range
 * when clip. The score of the (unshifted) image is recorded at the start
 * and after every step. */
typedef struct cd_maximize_params {
    int target;          /* class (used when layer is NULL) */
    const char *layer;   /* channel mode: tensor name */
    int channel;
    int steps;           /* default 200 */
    float lr;            /* default 0.05 */
    float l2_decay;      /* default 0.002 */
    int jitter;          /* default 2 pixels */
    float blur_sigma;    /* default 0.5 pixels (0 = off) */
    int blur_every;      /* default 4 */
    float init_std;      /* default 0.1 */
    bool clip;           /* default true */
    uint64_t seed;       /* default 0 */
} cd_maximize_params;

CD_API void cd_maximize_params_default(cd_maximize_params *p);

typedef struct cd_maximize_result {
    cd_tensor *image;    /* (1, C, H, W) in model-input space */
    int n_points;        /* steps + 1 */
    double *score;       /* objective after each step (index 0 = start) */
    double *prob;        /* class mode: softmax probability of the target; NULL otherwise */
    double start_score, final_score;
    double ratio;        /* final / start when start > 0, else NaN */
} cd_maximize_result;

/* The explainer's model must take a 4-D float input with fixed C, H, W.
 * Deterministic for a given seed and parameters. */
CD_API cd_status cd_explain_maximize(cd_explainer *e, const cd_maximize_params *p,
                                     cd_maximize_result *out, cd_error *err);
CD_API void cd_maximize_result_free(cd_maximize_result *r);

/* Untargeted L-infinity attacks on the cross-entropy -ln softmax(z)[label]
 * of the pre-softmax score z (Goodfellow et al. 2015; Madry et al. 2018):
 *   FGSM  x' = clip(x + eps sign(grad))             (sign(0) = 0)
 *   PGD   x_0 = x (+ U(-eps, eps) noise with random_start), then steps of
 *         x_{t+1} = clip(proj_eps(x_t + alpha sign(grad_t)))
 * clip is to [clip_lo[c], clip_hi[c]] per input channel (NULL: no clip). */
typedef enum cd_attack_kind { CD_ATTACK_FGSM = 0, CD_ATTACK_PGD = 1 } cd_attack_kind;

typedef struct cd_attack_params {
    cd_attack_kind kind;
    float eps;             /* L-inf radius in model-input units */
    int steps;             /* PGD iterations, default 10 */
    float alpha;           /* PGD step, 0 = 2.5 eps / steps */
    bool random_start;     /* PGD, default false */
    uint64_t seed;
    const float *clip_lo;  /* dims[1] values each, or NULL */
    const float *clip_hi;
} cd_attack_params;

CD_API void cd_attack_params_default(cd_attack_params *p, cd_attack_kind kind);
/* Attacks every row of x (N, C, ...) with its label (N values). *adv is a
 * new tensor of x's shape owned by the caller. */
CD_API cd_status cd_attack(cd_explainer *e, const cd_tensor *x, const int *labels,
                           const cd_attack_params *p, cd_tensor **adv, cd_error *err);

/* Rank AUROC (Mann-Whitney, average ranks for ties): the probability that a
 * positive scores higher than a negative, ties counting 1/2. NaN when
 * either group is empty. */
CD_API double cd_auroc(const double *negatives, size_t n_neg, const double *positives,
                       size_t n_pos);

/* ------------------------------------------------------------ global explanations,
 * TCAV and surrogate rules (docs/interpretability.md) */

/* Class-average saliency and channel importance over a dataset. For each
 * class k, over the rows i of x labelled k (S_k, |S_k| = counts[k]):
 *   class_saliency[k]       = (1/|S_k|) sum_i sum_c |d z_k(x_i) / d x_i[c]|
 *                             (H x W; z_k the pre-softmax score of class k)
 *   channel_importance[k,c] = (1/|S_k|) sum_i (1/P) sum_p |g_c,p a_c,p|
 *                             with a = the layer's value on x_i, g = d z_k / d a,
 *                             p over the layer's P positions per channel.
 * A class without rows keeps zero maps. Owned by the caller. */
typedef struct cd_global_result {
    int n_classes;
    int64_t *counts;               /* rows per class */
    cd_tensor *class_saliency;     /* (K, H, W) float32 */
    const char *layer;             /* importance layer (owned by the model) or NULL */
    cd_tensor *channel_importance; /* (K, C) float32, or NULL without importance */
} cd_global_result;

/* x: float32 (N, C, H, W); labels: N classes in [0, n_classes). importance:
 * also rank the channels of `layer` (NULL = cd_explain_default_layer). Rows
 * are explained in chunks of 64 (memory stays bounded). */
CD_API cd_status cd_global_explain(cd_explainer *e, const cd_tensor *x, const int *labels,
                                   int n_classes, const char *layer, bool importance,
                                   cd_global_result *out, cd_error *err);
CD_API void cd_global_result_free(cd_global_result *r);

/* TCAV (Kim et al. 2018). The layer's activations (flattened) on concept and
 * random examples train an L2-regularised logistic regression (concept = 1;
 * rows centred and scaled by their overall RMS; accelerated gradient
 * descent, max_iter steps); the CAV is its unit-length weight vector. The
 * TCAV score of a CAV is the fraction of `inputs` whose directional
 * derivative d z_target / d a . CAV is positive. `runs` concept CAVs (each
 * from `subset` concept and `subset` random rows drawn without replacement)
 * are compared with `runs` null CAVs (two disjoint random subsets of
 * `subset` rows) by a two-sided Welch t-test (GSL's t distribution). A
 * concept is significant only when p < alpha. */
typedef struct cd_tcav_params {
    const char *layer; /* NULL = cd_explain_default_layer */
    int target;        /* class whose score is differentiated */
    int runs;          /* concept and null runs each, >= 10 (default 20) */
    int subset;        /* rows per side per run; 0 = min(n_concept, n_random) / 2 */
    double l2;         /* default 0.01 */
    int max_iter;      /* default 300 */
    double alpha;      /* significance level, default 0.05 */
    uint64_t seed;     /* subsets (splitmix64) */
} cd_tcav_params;

CD_API void cd_tcav_params_default(cd_tcav_params *p);

typedef struct cd_tcav_result {
    const char *layer;     /* owned by the model */
    int runs, subset;
    double *scores;        /* runs concept-CAV TCAV scores (owned) */
    double *null_scores;   /* runs random-vs-random TCAV scores (owned) */
    double score_mean, score_std; /* sample std (divisor runs - 1) */
    double null_mean, null_std;
    double t, dof, p_value;       /* Welch t, Welch-Satterthwaite dof, two-sided p */
    bool significant;             /* p_value < alpha */
    double cav_accuracy;          /* mean training accuracy of the concept CAVs */
    cd_tensor *cav;               /* first concept CAV, the layer's shape with batch 1 (owned) */
} cd_tcav_result;

/* inputs: rows of the target class; concept, random: example rows (model
 * input shape). *out owned by the caller (cd_tcav_result_free). */
CD_API cd_status cd_tcav(cd_explainer *e, const cd_tensor *inputs, const cd_tensor *concept,
                         const cd_tensor *random, const cd_tcav_params *p, cd_tcav_result *out,
                         cd_error *err);
CD_API void cd_tcav_result_free(cd_tcav_result *r);

/* Interpretable features for a surrogate model, an (N, F) float32 tensor:
 *   POOLED  the mean over positions of each channel of tensor `layer` (NULL =
 *           cd_explain_default_layer) on x: F = C
 *   GRID    the mean of x (all channels) over cell (i, j) of a grid x grid
 *           partition of H x W, rows [i H / G, (i+1) H / G) and columns alike
 *           (integer division): F = G^2, row-major
 * *layer_used (may be NULL) receives the pooled layer's name (owned by the
 * model). *features owned by the caller. */
typedef enum cd_surrogate_kind { CD_SURROGATE_POOLED = 0, CD_SURROGATE_GRID = 1 } cd_surrogate_kind;
CD_API cd_status cd_surrogate_features(cd_explainer *e, const cd_tensor *x, cd_surrogate_kind kind,
                                       const char *layer, int grid, cd_tensor **features,
                                       const char **layer_used, cd_error *err);
/* GRID features without a model. */
CD_API cd_status cd_surrogate_grid_features(const cd_tensor *x, int grid, cd_tensor **out,
                                            cd_error *err);

/* CART classification tree, Gini impurity, scikit-learn's
 * DecisionTreeClassifier(splitter="best") semantics: a node is a leaf when
 * it is pure, at max_depth, or has < min_samples_split or < 2 min_samples_leaf
 * rows; otherwise the split maximising the impurity decrease over every
 * feature (in index order; the first best wins) and every threshold halfway
 * between consecutive distinct sorted values (values within 1e-7 count as
 * equal) with >= min_samples_leaf rows on each side. Rows go left when
 * x[feature] <= threshold. Nodes are numbered depth-first, left first. */
typedef struct cd_tree_params {
    int max_depth;         /* 0 = unlimited; default 4 */
    int min_samples_leaf;  /* default 1 */
    int min_samples_split; /* default 2 */
} cd_tree_params;

typedef struct cd_tree_node {
    int feature;       /* -1 at a leaf */
    double threshold;
    int left, right;   /* child node indices, -1 at a leaf */
    int depth;
    int klass;         /* majority class of its training rows (ties: lowest index) */
    int64_t n_samples; /* training rows reaching the node */
    double impurity;   /* Gini */
} cd_tree_node;

typedef struct cd_tree {
    int n_nodes, n_features, n_classes;
    cd_tree_node *nodes; /* malloc'ed */
    double *counts;      /* n_nodes x n_classes training class counts (malloc'ed) */
} cd_tree;

CD_API void cd_tree_params_default(cd_tree_params *p);
/* X: n x n_features row-major; y: n labels in [0, n_classes). *out owned by
 * the caller (cd_tree_free). */
CD_API cd_status cd_tree_fit(const float *X, size_t n, int n_features, const int *y,
                             int n_classes, const cd_tree_params *p, cd_tree **out,
                             cd_error *err);
/* Index of the leaf a row reaches / its predicted class. */
CD_API int cd_tree_apply(const cd_tree *t, const float *row);
CD_API int cd_tree_predict(const cd_tree *t, const float *row);
CD_API void cd_tree_free(cd_tree *t);

#ifdef __cplusplus
}
#endif
#endif
