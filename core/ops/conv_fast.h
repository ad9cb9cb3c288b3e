/* Fast convolution paths and fused epilogues, used by the execution plan
 * (core/plan.c) and tested against the naive reference (conv_ref.h) in
 * tests/test_conv_fast.c. Not installed.
 *
 * A cd_conv_kernel is a Conv node specialised at plan time to one input
 * shape: the algorithm is chosen once (1x1 with weights packed for candor's
 * own micro-kernel or straight to sgemm, im2col+sgemm,
 * direct depthwise, cache-blocked Winograd F(4x4,3x3) or F(2x2,3x3)),
 * weights are copied (optionally with a BatchNormalization folded in) and
 * pre-transformed, and the epilogue
 * (bias, residual add, activation) is applied while the output is hot. */
#ifndef CANDOR_CONV_FAST_H
#define CANDOR_CONV_FAST_H

#include "conv_ref.h"

typedef enum cd_act {
    CD_ACT_NONE = 0,
    CD_ACT_RELU,
    CD_ACT_CLIP,       /* min(max(x, lo), hi) */
    CD_ACT_LEAKY_RELU, /* x >= 0 ? x : alpha x */
    CD_ACT_HARD_SWISH,
    CD_ACT_SIGMOID,
    CD_ACT_HARD_SIGMOID /* min(max(alpha x + beta, 0), 1) */
} cd_act;

/* y = act(y + bias[map] + residual) element-wise, in that order. */
typedef struct cd_epilogue {
    cd_act act;
    float lo, hi, alpha, beta;
} cd_epilogue;

typedef enum cd_conv_algo {
    CD_CONV_AUTO = 0,
    CD_CONV_IM2COL,    /* im2col + sgemm (any geometry) */
    CD_CONV_GEMM_1X1,  /* 1x1, stride 1, no padding: the image is the column matrix */
    CD_CONV_DEPTHWISE, /* group == channels == maps, direct loops */
    CD_CONV_WINOGRAD,  /* 3x3, stride 1, dilation 1, 2-D, group 1: F(2x2, 3x3) (conv_wino4.c) */
    CD_CONV_WINOGRAD4, /* same geometry: F(4x4, 3x3); both cache-blocked */
    CD_CONV_AUTO_EXACT, /* like AUTO, but never F(4x4) (see cd_conv_kernel_create) */
    CD_CONV_PACK1X1,    /* 1x1, stride 1, no padding, group 1: own packed kernel (conv_pack1x1.c) */
    CD_CONV_DIRECT,     /* 2-D, group 1, channels * kernel <= CD_DIRECT_MAX_K: conv_direct.c */
    CD_CONV_IM2COL_PACK, /* 2-D, group 1: im2col, then the packed 1x1 kernel on the columns */
    CD_CONV_ROWVEC /* 2-D, group 1, dilation 1, horizontal stride 1 or 2, AVX-512 builds:
                    * conv_rowvec.c */
} cd_conv_algo;

typedef struct cd_conv_kernel cd_conv_kernel;

/* Specialises Conv node n for input shape in[0] and weights in[1] (and bias
 * in[2] when the node has one; data required). bn_scale/bn_shift (maps
 * values each, may be NULL) fold a following BatchNormalization:
 * w' = w * scale[m], b' = b * scale[m] + shift[m]. algo CD_CONV_AUTO picks
 * the fastest applicable path; CD_CONV_AUTO_EXACT the same but with F(2x2)
 * where AUTO would take F(4x4): F(4x4)'s transforms (points +-2) round
 * visibly differently (resnet18's outputs move ~1e-5), which is harmless for
 * predictions but flips ReLU decisions near zero, and gradients through a
 * flipped ReLU move by up to a few % locally; F(2x2)'s transforms use only
 * 0/+-1 (and 1/2 on the weights) and left every gradient-precision number
 * unchanged, so the forward convs of plans kept for backward passes use it. Any other value forces that algorithm (fails with
 * CD_ERR_UNSUPPORTED if it does not apply). */
cd_status cd_conv_kernel_create(const cd_node *n, cd_tensor *const *in, const float *bn_scale,
                                const float *bn_shift, const cd_epilogue *ep, cd_conv_algo algo,
                                cd_conv_kernel **out, cd_error *err);
void cd_conv_kernel_free(cd_conv_kernel *k);
/* The input gradient of Conv node n (weights in[1], input shape in[0]) as a
 * forward kernel: run on dY (n's output shape) it writes dX. Stride 1 only
 * (CD_ERR_UNSUPPORTED otherwise); see conv.c. */
cd_status cd_conv_kernel_create_input_grad(const cd_node *n, cd_tensor *const *in,
                                           cd_conv_kernel **out, cd_error *err);
cd_conv_algo cd_conv_kernel_algo(const cd_conv_kernel *k);
/* Runs on x (the shape given at creation) into y; residual (y's shape) may be
 * NULL. Scratch comes from ctx. */
cd_status cd_conv_kernel_run(const cd_conv_kernel *k, const float *x, const float *residual,
                             float *y, cd_ctx *ctx);

/* Applies ep to maps x sp values of y (bias and residual may be NULL). */
void cd_epilogue_apply(const cd_epilogue *ep, float *y, const float *bias, const float *res,
                       int64_t maps, int64_t sp);

/* Kernels (conv_fast.c). x: [channels, in...] of one image. */
/* pad: cd_dw_scratch_floats(g) floats of scratch. Windows up to
 * CD_DW_MAX_TAPS elements, horizontal stride up to CD_DW_MAX_STRIDE. */
/* Direct convolution for few input channels (conv_direct.c): x one image
 * [channels][H][W], y its [maps][OH][OW] (res the same or NULL), 2-D, group
 * 1, channels * kernel elements K <= CD_DIRECT_MAX_K; u the weights
 * [maps][K] packed by cd_conv_direct_pack into cd_conv_direct_packed_floats
 * floats. The output is cut into cd_conv_direct_blocks(g) fixed pixel
 * blocks (from the shape alone); each call computes one, epilogue included. */
#define CD_DIRECT_MAX_K 160
size_t cd_conv_direct_packed_floats(int64_t K, int64_t maps);
void cd_conv_direct_pack(const float *w, int64_t K, int64_t maps, float *u);
int64_t cd_conv_direct_blocks(const cd_win_geom *g);
/* scratch: cd_conv_direct_scratch_floats() floats per concurrent call. */
size_t cd_conv_direct_scratch_floats(void);
void cd_conv_direct_block(const float *x, const float *u, const float *bias, const float *res,
                          const cd_epilogue *ep, float *y, int64_t channels, int64_t maps,
                          const cd_win_geom *g, int64_t block, float *scratch);
/* Row-vectorised direct convolution (conv_rowvec.c): the same x, y, res
 * and K as above, any channels, window widths up to CD_ROWVEC_MAX_KW,
 * dilation 1, horizontal stride 1 or 2 (cd_conv_rowvec_applies: false
 * without AVX-512, where nothing else here is usable). u: the weights
 * packed by cd_conv_rowvec_pack into cd_conv_rowvec_packed_floats floats.
 * Each call computes output rows [oh0, oh1) of all maps, epilogue included;
 * no scratch. */
#define CD_ROWVEC_MAX_KW 16
bool cd_conv_rowvec_applies(const cd_win_geom *g);
size_t cd_conv_rowvec_packed_floats(int64_t K, int64_t maps);
void cd_conv_rowvec_pack(const float *w, int64_t K, int64_t maps, float *u);
void cd_conv_rowvec_rows(const float *x, const float *u, const float *bias, const float *res,
                         const cd_epilogue *ep, float *y, int64_t channels, int64_t maps,
                         const cd_win_geom *g, int64_t oh0, int64_t oh1);
#define CD_DW_MAX_TAPS 256
#define CD_DW_MAX_STRIDE 16
size_t cd_dw_scratch_floats(const cd_win_geom *g);
void cd_conv_depthwise(const float *x, const float *w, const float *bias, const float *res,
                       const cd_epilogue *ep, float *y, int64_t channels, const cd_win_geom *g,
                       float *pad);
/* Winograd F(4x4, 3x3) and F(2x2, 3x3), cache-blocked (conv_wino4.c). The
 * plan holds the shape and the work split (tile blocks x map blocks), chosen
 * from the shape alone so results are the same for any thread count. */
typedef struct cd_wino4_plan {
    cd_win_geom g;
    int m, pos;                                 /* output tile m x m: F(m x m, 3x3), (m+2)^2 */
    int64_t batch, channels, maps, maps_padded; /* maps rounded up to the 32-map panels */
    int64_t th, tw, tiles;                      /* 4x4 tiles per column / row, in all images */
    int64_t tile_block, n_tile_blocks, map_block, n_map_blocks;
    bool shared_input;                     /* input transformed once for all map blocks */
    int64_t channel_chunk, n_channel_chunks; /* units of that transform */
} cd_wino4_plan;
struct cd_pool;
/* tile: 4 for F(4x4, 3x3), 2 for F(2x2, 3x3) (fewer transformed-weight
 * bytes, more multiplies). */
void cd_wino4_plan_init(cd_wino4_plan *p, int64_t batch, int64_t channels, int64_t maps,
                        const cd_win_geom *g, int tile);
/* Transformed, packed weights (w: [maps][channels][3][3]) into u. */
size_t cd_wino4_weight_floats(const cd_wino4_plan *p);
void cd_wino4_weights(const cd_wino4_plan *p, const float *w, float *u);
/* Scratch floats cd_wino4_run needs with a pool of `workers` threads. */
size_t cd_wino4_scratch_floats(const cd_wino4_plan *p, int workers);
/* x: [batch, channels, H, W] -> y: [batch, maps, OH, OW] with epilogue ep
 * (bias and res, y's shape, may be NULL). */
void cd_wino4_run(struct cd_pool *pool, const cd_wino4_plan *p, const float *u, const float *x,
                  const float *bias, const float *res, const cd_epilogue *ep, float *y,
                  float *scratch);

/* Packed 1x1 convolution (conv_pack1x1.c): y[m][p] = sum_c w[m][c] x[c][p]
 * per image, weights packed once into map groups of up to 12. The plan holds
 * the work split (images x pixel blocks x map chunks), chosen from the shape
 * alone so results are the same for any thread count. */
typedef struct cd_pack1x1_plan {
    int64_t batch, channels, maps, sp; /* sp: pixels per image */
    bool maps_mode;                    /* small planes: maps in vector lanes */
    int64_t groups;                    /* map groups of <= 12, widths within one (maps
                                          mode: 32-map panels) */
    int64_t pix_block, n_pix_blocks;   /* pixels per block (a multiple of 32), per image */
    int64_t n_map_chunks;              /* contiguous runs of groups */
} cd_pack1x1_plan;
void cd_pack1x1_plan_init(cd_pack1x1_plan *p, int64_t batch, int64_t channels, int64_t maps,
                          int64_t sp);
/* Packed weights (w: [maps][channels]) into u. */
size_t cd_pack1x1_weight_floats(const cd_pack1x1_plan *p);
void cd_pack1x1_weights(const cd_pack1x1_plan *p, const float *w, float *u);
/* Scratch floats cd_pack1x1_run needs with a pool of `workers` threads. */
size_t cd_pack1x1_scratch_floats(const cd_pack1x1_plan *p, int workers);
/* x: [batch, channels, sp] -> y: [batch, maps, sp] with epilogue ep (bias
 * and res, y's shape, may be NULL). */
void cd_pack1x1_run(struct cd_pool *pool, const cd_pack1x1_plan *p, const float *u,
                    const float *x, const float *bias, const float *res, const cd_epilogue *ep,
                    float *y, float *scratch);

/* im2col for 2-D geometry (spatial dim 2 unit): col[(c*KH+kh)*KW+kw][oh*OW+ow]. */
void cd_im2col_2d(const float *img, int64_t channels, const cd_win_geom *g, float *col);
/* The same with rows ld floats apart (ld >= OH*OW): batched convolutions put
 * several images' columns side by side. */
void cd_im2col_2d_ld(const float *img, int64_t channels, const cd_win_geom *g, float *col,
                     int64_t ld);
/* Stride 1 with rows keeping their width (OW == W): cd_im2col_2d copies
 * shifted planes, and cd_im2col_2d_cols can fill any range of columns. */
bool cd_im2col_2d_shifted(const cd_win_geom *g);
/* Columns (output positions) [p0, p1) of cd_im2col_2d's matrix, for
 * geometries where cd_im2col_2d_shifted holds. */
void cd_im2col_2d_cols(const float *img, int64_t channels, const cd_win_geom *g, float *col,
                       int64_t p0, int64_t p1);
/* The adjoint of cd_im2col_2d: img[c, window(pos) + k] += col[(c*K + k), pos]
 * (2-D geometries only). Used by the Conv backward pass. */
void cd_col2im_2d_add(const float *col, int64_t channels, const cd_win_geom *g, float *img);
/* MaxPool over planes images of g->in[0] x g->in[1] (padding never wins). */
void cd_maxpool_2d(const float *x, float *y, int64_t planes, const cd_win_geom *g);

#endif
