/* Internal helpers shared by the windowed operators (core/ops/conv.c,
 * core/ops/pool.c) and their tests: the sliding-window geometry and the
 * naive reference convolution the fast im2col+sgemm kernel is tested against.
 * Not installed. */
#ifndef CANDOR_CONV_REF_H
#define CANDOR_CONV_REF_H

#include "op.h"

/* Maximum spatial rank of Conv/ConvTranspose/pooling windows. */
#define CD_WIN_MAX_SP 3

/* Geometry of a sliding window over a (padded) input, always expressed in
 * three spatial dims: a spatial rank below 3 is padded with trailing unit
 * dims (in = out = k = s = d = 1, no padding) so every kernel is one 3-D loop
 * nest. For ConvTranspose the "input" is the transposed op's output (Y) and
 * "out" its input (X): the op is the adjoint of this forward window. */
typedef struct cd_win_geom {
    int nsp;                       /* real spatial rank (1..3) */
    int64_t in[CD_WIN_MAX_SP];     /* input spatial size */
    int64_t out[CD_WIN_MAX_SP];    /* number of window positions */
    int64_t k[CD_WIN_MAX_SP];      /* kernel size */
    int64_t s[CD_WIN_MAX_SP];      /* stride */
    int64_t d[CD_WIN_MAX_SP];      /* dilation */
    int64_t pb[CD_WIN_MAX_SP];     /* padding before */
    int64_t pe[CD_WIN_MAX_SP];     /* padding after */
} cd_win_geom;

/* Resolves strides/dilations/pads/auto_pad attributes of n for a forward
 * window (Conv, MaxPool, AveragePool) over spatial input sizes in[0..nsp-1]
 * with kernel k[0..nsp-1]. ceil_mode selects ceil rounding of the output size
 * (the last window must start inside the input or the left padding). Fails
 * with a message naming the node on bad attributes or an empty output. */
cd_status cd_win_resolve(const cd_node *n, int nsp, const int64_t *in, const int64_t *k,
                         bool ceil_mode, cd_win_geom *g, cd_error *err);

/* Validates the common window attributes (auto_pad value, counts of
 * strides/dilations/pads for rank nsp, positivity). nsp < 0 skips counts. */
cd_status cd_win_check_attrs(const cd_node *n, int nsp, cd_error *err);

/* Naive reference Conv (ONNX semantics) on float32 NCHW-style data:
 * x [N, C, in...], w [M, C/group, k...], b [M] or NULL, y [N, M, out...]
 * (y is overwritten). Used to test the fast kernel; slow on purpose. */
void cd_conv_ref(const float *x, const float *w, const float *b, float *y, int64_t batch,
                 int64_t channels, int64_t maps, int64_t group, const cd_win_geom *g);

#endif
