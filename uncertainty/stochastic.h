/* Stochastic execution (MC dropout): the counter-based generator and the
 * dropout kernels used by core/ops/dropout.c when ctx->stochastic is set.
 *
 * The random draw for an element is a pure function of (seed, sample index,
 * site key, element index), so results never depend on thread count, batch
 * composition or the order in which inputs are processed. */
#ifndef CANDOR_STOCHASTIC_H
#define CANDOR_STOCHASTIC_H

#include <stdbool.h>
#include <stdint.h>

#include "core/graph.h"
#include "core/ops/op.h"

/* What the dropout kernel needs to sample masks for the model being run.
 * Everything is borrowed from the MC session that built it. */
struct cd_stochastic {
    uint64_t seed;
    uint64_t sample_offset;  /* sample number of batch row 0 (or of the run) */
    bool rows_are_samples;   /* batched suffix: row b of a site holds sample offset+b;
                                otherwise the whole tensor is sample offset */
    const cd_node *nodes;    /* node array of the model being run */
    int n_nodes;
    const int *site_of_node; /* n_nodes entries: site index or -1 */
    const float *site_p;     /* per site: drop probability in [0, 1) */
    const bool *site_channel;/* per site: drop whole channels (axis 1) */
    const uint64_t *site_key;/* per site: stable key (hash of the site's name) */
};
typedef struct cd_stochastic cd_stochastic;

/* Uniform double in [0, 1) for the 4-word counter. */
double cd_rng_uniform(uint64_t seed, uint64_t sample, uint64_t site, uint64_t element);
/* 64-bit FNV-1a of a string: the stable key of a named site. */
uint64_t cd_site_key(const char *name);

/* Site index of node n under s, or -1 when n is not a stochastic site. */
int cd_stochastic_site(const cd_stochastic *s, const cd_node *n);

/* Samples inverted dropout: y = x * keep / (1 - p), keep = (u >= p).
 * mask (may be NULL; bool or float32) receives keep. x and y may alias. */
cd_status cd_stochastic_dropout(const cd_stochastic *s, int site, const cd_node *n,
                                const cd_tensor *x, cd_tensor *y, cd_tensor *mask,
                                cd_error *err);
/* Vector-Jacobian product of the same mask: gx += gy * keep / (1 - p). */
cd_status cd_stochastic_dropout_backward(const cd_stochastic *s, int site, const cd_node *n,
                                         const cd_tensor *gy, cd_tensor *gx, cd_error *err);

/* Float64 mode (core/plan64.h): x, y, gy, gx and a non-bool mask are
 * float64. Same draws, masks and scale (1 / (1 - p) rounded to float32) as
 * the float32 kernels for the same sample, so the two modes evaluate the
 * same sampled network. */
cd_status cd_stochastic_dropout64(const cd_stochastic *s, int site, const cd_node *n,
                                  const cd_tensor *x, cd_tensor *y, cd_tensor *mask,
                                  cd_error *err);
cd_status cd_stochastic_dropout_backward64(const cd_stochastic *s, int site, const cd_node *n,
                                           const cd_tensor *gy, cd_tensor *gx, cd_error *err);

#endif
