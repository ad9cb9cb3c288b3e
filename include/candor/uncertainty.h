/* candor — uncertainty: MC dropout, deep ensembles and their summaries.
 *
 * MC dropout turns the model's Dropout nodes (and any sites the caller or the
 * sidecar declares on other tensors) into random masks and runs the model T
 * times. The deterministic part before the first stochastic site runs once
 * per input; the T samples run through the rest as one batch of T (or one
 * at a time when that part cannot be batched). Randomness is keyed by
 * (seed, sample, site, element): the same seed gives bit-identical samples
 * whatever the thread count, the batch or the order of inputs.
 *
 * Ownership: sessions and ensembles borrow their models (which must outlive
 * them); option structs and site names are copied at creation; every tensor
 * returned is owned by the caller (cd_tensor_free); summaries own their
 * arrays (release with the matching *_free function).
 *
 * Thread safety: a cd_mc_session / cd_ensemble is per-thread state like a
 * cd_session; any number of them may share one cd_model. See
 * docs/uncertainty.md for the exact definitions. */
#ifndef CANDOR_UNCERTAINTY_H
#define CANDOR_UNCERTAINTY_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "image.h"
#include "model.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ sampling */

/* A declared stochastic site: dropout inserted after the tensor `name` (or
 * after the first output of the node `name`); naming an existing Dropout node
 * overrides its probability. channel = drop whole feature maps (axis 1,
 * Dropout2d) instead of single elements. */
typedef struct cd_dropout_site {
    const char *name;
    float p;      /* in [0, 1) */
    bool channel;
} cd_dropout_site;

typedef struct cd_mc_options {
    int samples;                 /* T >= 1 (default 1) */
    uint64_t seed;               /* default 0 */
    int n_sites;                 /* declared sites (copied) */
    const cd_dropout_site *sites;
    bool ignore_sidecar_sites;   /* do not add the sidecar's "dropout_sites" */
    bool ignore_graph_dropout;   /* leave the graph's Dropout nodes deterministic */
    int threads;                 /* 0 = all cores */
    bool force_loop;             /* run the suffix one sample at a time (testing) */
} cd_mc_options;

CD_API void cd_mc_options_default(cd_mc_options *o);

typedef struct cd_mc_session cd_mc_session;

/* Creates an MC session over model (borrowed, must outlive the session).
 * Fails with CD_ERR_INVALID_ARGUMENT for T < 1, p outside [0, 1), a site
 * naming no tensor or node (the message lists candidates), or T > 1 on a
 * model without any stochastic site. *out is owned by the caller. */
CD_API cd_status cd_mc_session_create(const cd_model *model, const cd_mc_options *opts,
                                      cd_mc_session **out, cd_error *err);
CD_API void cd_mc_session_free(cd_mc_session *mc);

/* Number of stochastic sites and site k's name, probability, channel flag. */
CD_API int cd_mc_site_count(const cd_mc_session *mc);
CD_API const char *cd_mc_site_name(const cd_mc_session *mc, int k);
CD_API float cd_mc_site_p(const cd_mc_session *mc, int k);

/* How the last cd_mc_sample ran (for benchmarks and docs). */
typedef struct cd_mc_stats {
    int prefix_steps;  /* runtime nodes run once per input */
    int suffix_steps;  /* runtime nodes run per sample batch */
    bool batched;      /* suffix ran as one batch of T (false: T runs of batch 1) */
} cd_mc_stats;
CD_API void cd_mc_get_stats(const cd_mc_session *mc, cd_mc_stats *out);

/* Draws T samples for each of the N rows of the inputs (every input tensor
 * has the same leading dimension N; rows are independent examples).
 * inputs: n_inputs tensors in graph-input order (read only).
 * samples: n_outputs slots receiving new float32 tensors of shape
 *   (N, T, d1, ..., dk) where the model's output for one row has shape
 *   (1, d1, ..., dk); an output whose leading dimension is not 1 keeps it:
 *   (N, T, d0, ..., dk). output_indices selects graph outputs (NULL = the
 *   first n_outputs). Sample t of every row uses sample index t, so a row's
 *   samples do not depend on the other rows. */
CD_API cd_status cd_mc_sample(cd_mc_session *mc, int n_inputs, const cd_tensor *const *inputs,
                              int n_outputs, const int *output_indices, cd_tensor **samples,
                              cd_error *err);

/* ----------------------------------------------------------- ensembles */

typedef struct cd_ensemble cd_ensemble;

/* K members with identical input and output signatures (counts, dtypes and
 * declared shapes; output shapes are checked again on the first run). Each
 * member gets its own MC session with opts (NULL = T 1, no sites); member m
 * uses sample indices m*T .. m*T+T-1. Members run one after another, each
 * with the full thread budget. Models are borrowed. */
CD_API cd_status cd_ensemble_create(int n_models, const cd_model *const *models,
                                    const cd_mc_options *opts, cd_ensemble **out,
                                    cd_error *err);
CD_API void cd_ensemble_free(cd_ensemble *e);
CD_API int cd_ensemble_size(const cd_ensemble *e);
/* As cd_mc_sample with K*T samples per row: (N, K*T, ...), member-major. */
CD_API cd_status cd_ensemble_sample(cd_ensemble *e, int n_inputs,
                                    const cd_tensor *const *inputs, int n_outputs,
                                    const int *output_indices, cd_tensor **samples,
                                    cd_error *err);

/* ----------------------------------------------------------- summaries */

/* In-place softmax of a float32 tensor along axis (negative counts from the
 * end), for turning sampled logits into probabilities. */
CD_API cd_status cd_softmax_axis(cd_tensor *t, int axis, cd_error *err);

/* Summary of S sampled probability vectors over K classes (float64 math,
 * natural logarithms, 0 ln 0 = 0). Arrays are owned by the summary. */
typedef struct cd_class_summary {
    int n_samples, n_classes;
    double level;              /* interval level, e.g. 0.95 */
    double *mean;              /* K: mean probability p̄ */
    double *std;               /* K: population std (divisor S) of the sampled p_k */
    double *lower, *upper;     /* K: percentiles (1-level)/2 and (1+level)/2, linear
                                  interpolation between order statistics (NumPy default) */
    int top_class;             /* argmax of p̄ (lowest index on ties) */
    double predictive_entropy; /* H[p̄] */
    double expected_entropy;   /* mean_s H[p_s]  (aleatoric) */
    double mutual_information; /* H[p̄] - mean_s H[p_s], clamped at 0 (epistemic) */
    double variation_ratio;    /* 1 - (count of the modal sampled top-1) / S */
    double agreement;          /* fraction of samples whose top-1 is top_class */
} cd_class_summary;

/* probs: S x K row-major sampled probabilities. level in (0, 1). */
CD_API cd_status cd_summarize_classification(const float *probs, int n_samples, int n_classes,
                                             double level, cd_class_summary *out,
                                             cd_error *err);
CD_API void cd_class_summary_free(cd_class_summary *s);

/* Regression over S samples of D outputs: means S x D, log_vars S x D (the
 * log-variance head, or NULL). total var = mean_s(σ_s² + μ_s²) − μ*² with
 * σ_s² = exp(log_var) (0 without a head); aleatoric = mean_s σ_s²;
 * epistemic = total − aleatoric (population variance of μ_s). The interval
 * is μ* ± z σ* with z the standard normal quantile at (1+level)/2. */
typedef struct cd_regression_summary {
    int n_samples, n_outputs;
    double level;
    double *mean, *std, *lower, *upper, *aleatoric_var, *epistemic_var; /* D each */
} cd_regression_summary;
CD_API cd_status cd_summarize_regression(const float *means, const float *log_vars,
                                         int n_samples, int n_outputs, double level,
                                         cd_regression_summary *out, cd_error *err);
CD_API void cd_regression_summary_free(cd_regression_summary *s);

/* Dense (segmentation) maps from samples of shape (S, C, H, W) holding
 * probabilities: per pixel predictive entropy, expected entropy, mutual
 * information and the std (divisor S) of the winning class of p̄. Each map
 * is a new (H, W) float32 tensor owned by the caller. */
typedef struct cd_dense_maps {
    cd_tensor *entropy, *expected_entropy, *mutual_information, *winning_std;
    cd_tensor *winning_class; /* (H, W) int64: argmax of p̄ */
} cd_dense_maps;
CD_API cd_status cd_summarize_dense(const cd_tensor *samples, cd_dense_maps *out,
                                    cd_error *err);
CD_API void cd_dense_maps_free(cd_dense_maps *m);

/* The fixed colour range of a dense map: [0, ln C] for "entropy",
 * "expected_entropy" and "mutual_information" (the values they can reach
 * with C classes), [0, 0.5] for "winning_std" (the largest std of a
 * probability). A fixed range keeps maps of different inputs comparable. */
CD_API void cd_dense_map_range(const char *name, int n_classes, double *lo, double *hi);

/* Colours an (H, W) float32 map with viridis on [lo, hi] (values outside are
 * clamped, non-finite ones drawn at lo). With legend, a scale bar (top = hi,
 * bottom = lo) labelled with hi, the midpoint and lo is added on the right.
 * *out is a new RGB image owned by the caller. */
CD_API cd_status cd_render_map(const cd_tensor *map2d, double lo, double hi, bool legend,
                               cd_image **out, cd_error *err);
/* The coloured map blended over base (gray, RGB or RGBA of W x H, alpha
 * channel ignored): pixel = (1 - alpha) base + alpha colour. */
CD_API cd_status cd_render_map_overlay(const cd_tensor *map2d, double lo, double hi,
                                       const cd_image *base, float alpha, cd_image **out,
                                       cd_error *err);
/* Writes the maps of one input, each file atomically (replacing old ones):
 *   PREFIX.{entropy,expected_entropy,mutual_information,winning_std}.npy
 *       (H, W) float32, and .png with a legend, coloured on
 *       cd_dense_map_range;
 *   PREFIX.argmax.npy (H, W) int64 and PREFIX.argmax.png (class palette);
 *   with base (the input image at W x H; NULL = none):
 *   PREFIX.<map>.overlay.png for the four float maps. */
CD_API cd_status cd_dense_maps_save(const cd_dense_maps *m, int n_classes, const char *prefix,
                                    const cd_image *base, float alpha, cd_error *err);

/* Standard normal quantile (inverse CDF) for 0 < q < 1. */
CD_API double cd_normal_quantile(double q);

#ifdef __cplusplus
}
#endif
#endif
