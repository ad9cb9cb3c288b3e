/* Fast reverse-mode kernels used by cd_plan_backward (core/plan.c) in place
 * of the operators' generic backward functions, which stay the reference
 * (tests/test_grad_fast.c compares the two). Not installed. */
#ifndef CANDOR_BACKWARD_FAST_H
#define CANDOR_BACKWARD_FAST_H

#include "ops/conv_ref.h"

/* gx[i] += g[i] * (x[i] > 0), in fixed ranges on ctx's pool. */
void cd_relu_backward_fast(const float *x, const float *g, float *gx, size_t n, cd_ctx *ctx);

/* MaxPool (2-D, float, planes images of g->in; y the forward output) backward:
 * gx receives each output's gradient at its window's first maximum (padding
 * never wins), as the MaxPool operator's backward does. Planes in fixed
 * ranges on the pool. */
void cd_maxpool2d_backward_fast(const float *x, const float *y, const float *gy, float *gx,
                                int64_t planes, const cd_win_geom *g, cd_ctx *ctx);

/* dst[i] += src[i], in fixed ranges on the pool. */
void cd_add_into_fast(float *dst, const float *src, size_t n, cd_ctx *ctx);

#endif
